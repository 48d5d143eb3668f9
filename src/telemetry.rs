//! Logs and traces: the tracing subscriber (human or JSON lines, the JSON ones carrying the
//! trace and span ids), and OTLP trace export over gRPC configured by the standard
//! `OTEL_*` variables, off when no endpoint is set.
//!
//! Spans leave through a bounded queue ([`QueueProcessor`]): ending a span never waits
//! for the collector. When the queue is full the span is dropped and counted
//! (`servicelevel_trace_spans_dropped_total`); an unreachable collector costs failed
//! exports in a background task, never RPC latency.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, oneshot};
use tonic::codegen::http;
use tracing::{Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{DynFilterFn, FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;
use crate::metrics::SpanStats;

/// The log filter when `RUST_LOG` is not set. The exporter's own warnings are left out:
/// with the collector away they come once a batch; [`QueueProcessor`] warns once a minute.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,h2=warn,opentelemetry=error";

/// The service name when neither `OTEL_SERVICE_NAME` nor a `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` names it.
pub const SERVICE_NAME: &str = "servicelevel";

/// How often at most a warning that can come with every call (a shed call, a refused
/// token) is logged; the metrics count every one.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// A rate limit for such a warning: at most one line per interval, saying how many
/// happened since the line before. An overloaded server must not also flood its logs.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    /// When the last line was written, and what happened since.
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        LogThrottle {
            interval,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// Counts one occurrence; `Some(n)` when a line is due now, `n` being the occurrences
    /// since the last line, this one included.
    pub fn hit(&self) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.1 += 1;
        if state.0.is_some_and(|t| t.elapsed() < self.interval) {
            return None;
        }
        state.0 = Some(std::time::Instant::now());
        Some(std::mem::take(&mut state.1))
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        LogThrottle::new(WARNING_INTERVAL)
    }
}

/// Trace export settings; [`TraceConfig::from_env`] reads the standard variables.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// The OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    pub service_name: String,
    /// Further resource attributes (besides those of `OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    pub sampler: Sampler,
    /// Most spans waiting for export; beyond it spans are dropped and counted.
    pub max_queue_size: usize,
    /// Most spans in one export request.
    pub max_export_batch_size: usize,
    /// How long a partly filled batch waits before it is sent.
    pub scheduled_delay: Duration,
    /// How long one export may take (retries included).
    pub export_timeout: Duration,
}

impl TraceConfig {
    /// Export to `endpoint` with the defaults: every trace sampled unless the caller's
    /// traceparent says otherwise, a 2,048-span queue, batches of 512, sent within 1 s.
    pub fn new(endpoint: impl Into<String>) -> Self {
        TraceConfig {
            endpoint: endpoint.into(),
            service_name: SERVICE_NAME.to_string(),
            resource: Vec::new(),
            sampler: Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(1),
            export_timeout: Duration::from_secs(10),
        }
    }

    /// From the process environment; `None` when tracing is off.
    pub fn from_env() -> Result<Option<Self>, String> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// From variables looked up by `var`: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (none: off), `OTEL_SDK_DISABLED`,
    /// `OTEL_TRACES_EXPORTER` (`none`: off), `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`,
    /// `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_MAX_QUEUE_SIZE`,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`,
    /// `OTEL_BSP_EXPORT_TIMEOUT` (milliseconds). `OTEL_RESOURCE_ATTRIBUTES` is read when
    /// the exporter starts.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let set = |k: &str| {
            var(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let Some(endpoint) = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        else {
            return Ok(None);
        };
        let mut c = TraceConfig::new(endpoint);
        if let Some(name) = set("OTEL_SERVICE_NAME") {
            c.service_name = name;
        } else if let Some(attrs) = set("OTEL_RESOURCE_ATTRIBUTES")
            && let Some(name) = attrs.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == "service.name").then(|| v.trim().to_string())
            })
        {
            c.service_name = name;
        }
        c.sampler = sampler(
            set("OTEL_TRACES_SAMPLER").as_deref(),
            set("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )?;
        let number = |k: &str| -> Result<Option<u64>, String> {
            set(k)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| format!("{k}={v:?} is not a whole number"))
                })
                .transpose()
        };
        if let Some(n) = number("OTEL_BSP_MAX_QUEUE_SIZE")? {
            c.max_queue_size = (n as usize).max(1);
        }
        if let Some(n) = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")? {
            c.max_export_batch_size = (n as usize).max(1);
        }
        c.max_export_batch_size = c.max_export_batch_size.min(c.max_queue_size);
        if let Some(ms) = number("OTEL_BSP_SCHEDULE_DELAY")? {
            c.scheduled_delay = Duration::from_millis(ms.max(1));
        }
        if let Some(ms) = number("OTEL_BSP_EXPORT_TIMEOUT")? {
            c.export_timeout = Duration::from_millis(ms.max(1));
        }
        Ok(Some(c))
    }
}

/// The sampler named by `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`).
fn sampler(name: Option<&str>, arg: Option<&str>) -> Result<Sampler, String> {
    let ratio = || -> Result<f64, String> {
        match arg {
            None => Ok(1.0),
            Some(a) => a
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG={a:?} is not a ratio in [0, 1]")),
        }
    };
    let parent = |s: Sampler| Sampler::ParentBased(Box::new(s));
    Ok(match name.unwrap_or("parentbased_always_on") {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => parent(Sampler::AlwaysOn),
        "parentbased_always_off" => parent(Sampler::AlwaysOff),
        "parentbased_traceidratio" => parent(Sampler::TraceIdRatioBased(ratio()?)),
        other => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER={other:?} is not supported: use always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
            ));
        }
    })
}

enum Control {
    Flush(oneshot::Sender<()>),
    FlushBlocking(std::sync::mpsc::Sender<()>),
    Shutdown(std::sync::mpsc::Sender<()>),
}

/// A span processor with a bounded queue and one export task on the Tokio runtime: full
/// batches leave at once, partial ones after the scheduled delay. `on_end` never blocks;
/// a full queue drops the span and counts it.
#[derive(Debug)]
pub struct QueueProcessor {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<Control>,
    stats: Arc<SpanStats>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

impl QueueProcessor {
    /// Starts the export task; call inside a Tokio runtime.
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        c: &TraceConfig,
        stats: Arc<SpanStats>,
    ) -> Self {
        let (spans, rx) = mpsc::channel(c.max_queue_size.max(1));
        let (control, control_rx) = mpsc::unbounded_channel();
        tokio::spawn(export_loop(
            exporter,
            rx,
            control_rx,
            Arc::clone(&stats),
            c.max_export_batch_size.max(1),
            c.scheduled_delay,
            c.export_timeout,
        ));
        QueueProcessor {
            spans,
            control,
            stats,
        }
    }

    /// Waits (blocking this thread) for an answer of the export task: on a multi-threaded
    /// runtime in place, on a current-thread one not at all (the task could not run).
    fn wait(&self, rx: std::sync::mpsc::Receiver<()>, timeout: Duration) -> OTelSdkResult {
        let wait = || {
            rx.recv_timeout(timeout)
                .map_err(|_| OTelSdkError::Timeout(timeout))
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            Ok(_) => Ok(()),
            Err(_) => wait(),
        }
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.spans.try_send(span).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (tx, rx) = std::sync::mpsc::channel();
        self.control
            .send(Control::FlushBlocking(tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        self.wait(rx, Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let (tx, rx) = std::sync::mpsc::channel();
        self.control
            .send(Control::Shutdown(tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        self.wait(rx, timeout)
    }
}

async fn export_loop<E: SpanExporter>(
    exporter: E,
    mut spans: mpsc::Receiver<SpanData>,
    mut control: mpsc::UnboundedReceiver<Control>,
    stats: Arc<SpanStats>,
    batch_size: usize,
    delay: Duration,
    timeout: Duration,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(batch_size);
    let mut tick = tokio::time::interval(delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned: Option<std::time::Instant> = None;
    let export = async |batch: &mut Vec<SpanData>, warned: &mut Option<std::time::Instant>| {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let spans = std::mem::replace(batch, Vec::with_capacity(batch_size));
        let result = match tokio::time::timeout(timeout, exporter.export(spans)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer in {timeout:?}")),
        };
        match result {
            Ok(()) => {
                stats.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failed.fetch_add(n, Ordering::Relaxed);
                // One warning a minute at most: a collector that is away stays away.
                if warned.is_none_or(|w| w.elapsed() > Duration::from_secs(60)) {
                    *warned = Some(std::time::Instant::now());
                    tracing::warn!(error = %e, spans = n, "trace export failed; spans are dropped while the collector is unreachable");
                }
            }
        }
    };
    loop {
        tokio::select! {
            biased;
            c = control.recv() => {
                let Some(c) = c else { break };
                // Everything queued before the request goes out first.
                while let Ok(s) = spans.try_recv() {
                    batch.push(s);
                    if batch.len() >= batch_size {
                        export(&mut batch, &mut warned).await;
                    }
                }
                export(&mut batch, &mut warned).await;
                match c {
                    Control::Flush(tx) => { let _ = tx.send(()); }
                    Control::FlushBlocking(tx) => { let _ = tx.send(()); }
                    Control::Shutdown(tx) => {
                        let _ = exporter.shutdown();
                        let _ = tx.send(());
                        return;
                    }
                }
            }
            s = spans.recv() => {
                let Some(s) = s else { break };
                batch.push(s);
                if batch.len() >= batch_size {
                    export(&mut batch, &mut warned).await;
                }
            }
            _ = tick.tick() => export(&mut batch, &mut warned).await,
        }
    }
    export(&mut batch, &mut warned).await;
    let _ = exporter.shutdown();
}

/// Trace export, running: the tracer provider and its queue.
#[derive(Debug, Clone)]
pub struct Tracing {
    provider: SdkTracerProvider,
    control: mpsc::UnboundedSender<Control>,
    stats: Arc<SpanStats>,
}

impl Tracing {
    /// Starts the exporter and its queue; call inside a Tokio runtime. Nothing connects
    /// yet: an unreachable collector shows as failed exports later, not as an error here.
    pub fn start(c: &TraceConfig) -> Result<Tracing, String> {
        let resource = Resource::builder_empty()
            .with_detectors(&[
                Box::new(TelemetryResourceDetector) as Box<dyn ResourceDetector>,
                Box::new(EnvResourceDetector::new()),
            ])
            .with_attributes(
                c.resource
                    .iter()
                    .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone())),
            )
            .with_service_name(c.service_name.clone())
            .build();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(c.endpoint.clone())
            .with_timeout(c.export_timeout)
            .build()
            .map_err(|e| format!("cannot set up OTLP export to {}: {e}", c.endpoint))?;
        exporter.set_resource(&resource);
        let stats = Arc::new(SpanStats::default());
        let processor = QueueProcessor::start(exporter, c, Arc::clone(&stats));
        let control = processor.control.clone();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(c.sampler.clone())
            .with_resource(resource)
            .build();
        Ok(Tracing {
            provider,
            control,
            stats,
        })
    }

    /// From the `OTEL_*` variables; `None` when no endpoint is set.
    pub fn from_env() -> Result<Option<Tracing>, String> {
        TraceConfig::from_env()?
            .map(|c| Tracing::start(&c))
            .transpose()
    }

    /// The queue's counters, for the metrics.
    pub fn stats(&self) -> Arc<SpanStats> {
        Arc::clone(&self.stats)
    }

    /// The OpenTelemetry layer, without the exporter's own transport (h2, hyper, tonic,
    /// tower, opentelemetry) and without database spans outside a request or due action.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("servicelevel"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(otel_filter())
    }

    /// Sends every span ended so far, waiting at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }

    /// Flushes and stops the exporter, in at most about 3 s (an unreachable collector
    /// must not hold up a shutdown).
    pub async fn shutdown(self) {
        self.flush(Duration::from_secs(2)).await;
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(Duration::from_secs(1))
        })
        .await;
    }
}

fn otel_filter<S>() -> impl tracing_subscriber::layer::Filter<S> + Send + Sync + 'static
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let targets = Targets::new()
        .with_default(Level::INFO)
        .with_target("servicelevel::store", Level::DEBUG)
        .with_target("sqlx", Level::WARN)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF);
    // Database spans only inside something (an RPC, a due action): the background loops'
    // polling would otherwise make a trace of its own every second.
    let inside = DynFilterFn::new(|meta, cx| !is_db_span(meta) || cx.lookup_current().is_some())
        .with_callsite_filter(|meta| {
            if is_db_span(meta) {
                tracing::subscriber::Interest::sometimes()
            } else {
                tracing::subscriber::Interest::always()
            }
        });
    targets.and(inside)
}

fn is_db_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.name().starts_with("db.")
}

/// The trace context a caller sent in `traceparent`/`tracestate`, if valid.
pub fn remote_parent(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    if !headers.contains_key("traceparent") {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the caller's span when `headers` carry a trace context.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if let Some(cx) = remote_parent(headers) {
        let _ = span.set_parent(cx);
    }
}

/// The current span as a W3C `traceparent`, when traces are on: stored with what a call
/// creates, so later work on it (the due-time runner's) can link back to the call.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Links `span` to the span a stored `traceparent` names (ignored when malformed).
pub fn link_to(span: &tracing::Span, traceparent: &str) {
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(traceparent) {
        headers.insert("traceparent", v);
    }
    if let Some(cx) = remote_parent(&headers) {
        span.add_link(cx.span().span_context().clone());
    }
}

/// The trace and span ids of the current span, when it is exported.
pub fn current_ids() -> Option<(String, String)> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// JSON lines as tracing-subscriber writes them, plus `trace_id` and `span_id` of the
/// current span when traces are exported. The OpenTelemetry context is read through the
/// subscriber's own dispatcher (captured when the layer is registered): inside an event
/// the thread's default dispatcher is not available.
struct JsonWithTrace {
    inner: format::Format<format::Json>,
    dispatch: Arc<OnceLock<tracing::dispatcher::WeakDispatch>>,
}

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let ids = ctx.lookup_current().and_then(|span| {
            let dispatch = self.dispatch.get()?.upgrade()?;
            let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
            let otel = cx.span();
            let sc = otel.span_context();
            sc.is_valid()
                .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
        });
        if let Some((trace_id, span_id)) = ids {
            let end = line.trim_end().len();
            if line[..end].ends_with('}') {
                line.truncate(end - 1);
                line.push_str(&format!(
                    ",\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}\n"
                ));
            }
        }
        writer.write_str(&line)
    }
}

/// Keeps the dispatcher a layer is registered with.
struct CaptureDispatch(Arc<OnceLock<tracing::dispatcher::WeakDispatch>>);

impl<S: Subscriber> Layer<S> for CaptureDispatch {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// The log layer: human-readable lines, or JSON lines carrying the trace and span ids
/// of the current span when traces are exported.
pub fn log_layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    log_layer_with(format, writer, ansi_on_stdout())
}

/// Colour codes only for a person at a terminal: not when standard output is a file or a
/// pipe, nor with `NO_COLOR` set.
pub fn ansi_on_stdout() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// [`log_layer`] with colour codes on or off.
pub fn log_layer_with<S, W>(
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .fmt_fields(HumanFields)
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => {
            let dispatch = Arc::new(OnceLock::new());
            tracing_subscriber::fmt::layer()
                .json()
                .event_format(JsonWithTrace {
                    inner: format::Format::default().json(),
                    dispatch: Arc::clone(&dispatch),
                })
                .with_writer(writer)
                .and_then(CaptureDispatch(dispatch))
                .boxed()
        }
    }
}

/// Span and event fields for people: `name=value` pairs, the message bare, and without
/// the `otel.*` fields that only steer the OpenTelemetry export (`otel.name`,
/// `otel.kind`, `otel.status_code`).
struct HumanFields;

impl<'w> FormatFields<'w> for HumanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut v = HumanVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }

    fn add_fields(
        &self,
        current: &'w mut tracing_subscriber::fmt::FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let mut v = HumanVisitor {
            first: current.fields.is_empty(),
            writer: current.as_writer(),
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct HumanVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl tracing::field::Visit for HumanVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("otel.") || name.starts_with("log.") {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{sep}{value:?}")
        } else {
            write!(
                self.writer,
                "{sep}{}={value:?}",
                name.strip_prefix("r#").unwrap_or(name)
            )
        };
    }
}

/// Installs the process's subscriber: logs in `format` on standard output, filtered by
/// `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]), and span export when `tracing` is given.
pub fn init(format: LogFormat, tracing: Option<&Tracing>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let logs = log_layer(format, std::io::stdout).with_filter(filter);
    let otel = tracing.map(|t| t.layer());
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init();
}

/// An OTLP trace receiver for tests and the load generator: accepts every export and
/// keeps the spans (or only counts them).
pub mod sink {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::trace::v1::Span;

    /// What a receiver got.
    #[derive(Debug, Clone, Default)]
    pub struct Received {
        inner: Arc<Inner>,
    }

    #[derive(Debug, Default)]
    struct Inner {
        keep: bool,
        spans: Mutex<Vec<Span>>,
        count: std::sync::atomic::AtomicU64,
        service_names: Mutex<Vec<String>>,
    }

    impl Received {
        /// Spans received so far (when kept).
        pub fn spans(&self) -> Vec<Span> {
            self.inner
                .spans
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        /// How many spans arrived.
        pub fn count(&self) -> u64 {
            self.inner.count.load(std::sync::atomic::Ordering::Relaxed)
        }

        /// The `service.name` of each resource that sent spans (when kept).
        pub fn service_names(&self) -> Vec<String> {
            self.inner
                .service_names
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        /// Waits until `done` holds for the spans received, polling, for at most `timeout`.
        pub async fn wait_for(
            &self,
            timeout: Duration,
            done: impl Fn(&[Span]) -> bool,
        ) -> Vec<Span> {
            let until = tokio::time::Instant::now() + timeout;
            loop {
                let spans = self.spans();
                if done(&spans) || tokio::time::Instant::now() >= until {
                    return spans;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    struct Service(Received);

    #[tonic::async_trait]
    impl TraceService for Service {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let r = request.into_inner();
            let inner = &self.0.inner;
            let mut n = 0;
            for rs in r.resource_spans {
                let spans: Vec<Span> = rs.scope_spans.into_iter().flat_map(|s| s.spans).collect();
                n += spans.len() as u64;
                if inner.keep {
                    if let Some(res) = &rs.resource {
                        for kv in &res.attributes {
                            if kv.key == "service.name"
                                && let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref())
                            {
                                use opentelemetry_proto::tonic::common::v1::any_value::Value;
                                if let Value::StringValue(s) = v {
                                    inner
                                        .service_names
                                        .lock()
                                        .unwrap_or_else(PoisonError::into_inner)
                                        .push(s.clone());
                                }
                            }
                        }
                    }
                    inner
                        .spans
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend(spans);
                }
            }
            inner
                .count
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        }
    }

    /// Starts a receiver on a free local port; `keep` keeps the spans, otherwise they are
    /// only counted. Runs until the runtime stops.
    pub async fn start(keep: bool) -> Result<(SocketAddr, Received), String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("OTLP sink: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("OTLP sink: {e}"))?;
        let received = Received {
            inner: Arc::new(Inner {
                keep,
                ..Inner::default()
            }),
        };
        let service = TraceServiceServer::new(Service(received.clone()))
            .max_decoding_message_size(64 * 1024 * 1024);
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::warn!(error = %e, "OTLP sink stopped");
            }
        });
        Ok((addr, received))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn tracing_is_off_without_an_endpoint() {
        assert!(TraceConfig::from_vars(vars(&[])).unwrap().is_none());
        assert!(
            TraceConfig::from_vars(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]))
                .unwrap()
                .is_none()
        );
        assert!(
            TraceConfig::from_vars(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_SDK_DISABLED", "true"),
            ]))
            .unwrap()
            .is_none()
        );
        assert!(
            TraceConfig::from_vars(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ]))
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn the_standard_variables_configure_export() {
        let c = TraceConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=sl-eu",
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
        ]))
        .unwrap()
        .expect("on");
        assert_eq!(c.endpoint, "http://collector:4317");
        assert_eq!(c.service_name, "sl-eu");
        let sampler = format!("{:?}", c.sampler);
        assert!(
            sampler.contains("ParentBased") && sampler.contains("TraceIdRatioBased(0.25)"),
            "{sampler}"
        );
        assert_eq!(c.max_queue_size, 100);
        assert_eq!(c.max_export_batch_size, 100, "a batch fits the queue");
        let c = TraceConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
            ("OTEL_SERVICE_NAME", "named"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored"),
        ]))
        .unwrap()
        .expect("on");
        assert_eq!(c.endpoint, "http://traces:4317");
        assert_eq!(c.service_name, "named");
        let sampler = format!("{:?}", c.sampler);
        assert!(
            sampler.contains("ParentBased") && sampler.contains("AlwaysOn"),
            "{sampler}"
        );
        for bad in [
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
        ] {
            let mut v = vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ];
            v.retain(|(k, _)| *k != bad.0);
            v.push(bad);
            assert!(TraceConfig::from_vars(vars(&v)).is_err(), "{bad:?}");
        }
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(b: &Buffer) -> Vec<serde_json::Value> {
        String::from_utf8(b.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn json_lines_carry_the_trace_and_span_ids() {
        // Nothing listens there: only the ids matter.
        let tracing = Tracing::start(&TraceConfig::new("http://127.0.0.1:9")).unwrap();
        let out = Buffer::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry()
            .with(log_layer(LogFormat::Json, move || writer.clone()))
            .with(tracing.layer());
        let ids = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("rpc", ticket = "tickets/1");
            let _g = span.enter();
            tracing::info!(seq = 3, "event recorded");
            current_ids().expect("exported span")
        });
        let got = lines(&out);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["fields"]["message"], "event recorded");
        assert_eq!(got[0]["span"]["ticket"], "tickets/1");
        assert_eq!(got[0]["trace_id"], ids.0.as_str());
        assert_eq!(got[0]["span_id"], ids.1.as_str());
        assert_eq!(ids.0.len(), 32);

        // Without export, or outside a span, the lines are as tracing-subscriber writes them.
        let out = Buffer::default();
        let writer = out.clone();
        let subscriber =
            tracing_subscriber::registry().with(log_layer(LogFormat::Json, move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("rpc");
            let _g = span.enter();
            tracing::info!("no ids");
        });
        let got = lines(&out);
        assert_eq!(got[0]["fields"]["message"], "no ids");
        assert!(got[0].get("trace_id").is_none());
    }
}
