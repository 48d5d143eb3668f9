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

use opentelemetry::propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_otlp::{WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
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

/// How OTLP travels to the collector (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc` (the default here, as before: collectors listen on 4317).
    Grpc,
    /// `http/protobuf` (collectors listen on 4318, path `/v1/traces`).
    HttpProtobuf,
}

impl Protocol {
    fn parse(name: &str, value: &str) -> Result<Protocol, String> {
        match value {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Err(format!(
                "{name}=http/json is not supported by this build: use http/protobuf or grpc"
            )),
            other => Err(format!(
                "{name}={other:?} is not an OTLP protocol: use grpc or http/protobuf"
            )),
        }
    }
}

/// Which OpenTelemetry RPC conventions the RPC spans follow
/// (`OTEL_SEMCONV_STABILITY_OPT_IN`, as the RPC semantic conventions' migration plan says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RpcConventions {
    /// The conventions of semconv v1.37 and before (the default): `rpc.system`,
    /// `rpc.service`, `rpc.method` (the method's own name), `rpc.grpc.status_code`.
    #[default]
    Old,
    /// `rpc`: the stable conventions: `rpc.system.name`, `rpc.method`
    /// (`package.Service/Method`), `rpc.response.status_code` (the code's name), `error.type`.
    Stable,
    /// `rpc/dup`: both (where both name the same attribute, `rpc.method`, the stable
    /// value).
    Both,
}

impl RpcConventions {
    /// From the comma-separated `OTEL_SEMCONV_STABILITY_OPT_IN` (other categories, such as
    /// `http` or `database`, are left to whoever reads them).
    pub fn from_opt_in(value: Option<&str>) -> RpcConventions {
        let items: Vec<&str> = value.unwrap_or("").split(',').map(str::trim).collect();
        if items.contains(&"rpc/dup") {
            RpcConventions::Both
        } else if items.contains(&"rpc") {
            RpcConventions::Stable
        } else {
            RpcConventions::Old
        }
    }

    pub fn old(self) -> bool {
        self != RpcConventions::Stable
    }

    pub fn stable(self) -> bool {
        self != RpcConventions::Old
    }
}

/// The propagators `OTEL_PROPAGATORS` names (default `tracecontext,baggage`): how a
/// caller's trace context is read from a call's metadata.
pub fn propagator_from(value: Option<&str>) -> Result<TextMapCompositePropagator, String> {
    let mut propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    let value = value.map(str::trim).filter(|v| !v.is_empty());
    for name in value
        .unwrap_or("tracecontext,baggage")
        .split(',')
        .map(str::trim)
    {
        match name {
            "tracecontext" => propagators.push(Box::new(TraceContextPropagator::new())),
            "baggage" => propagators.push(Box::new(BaggagePropagator::new())),
            "none" => {}
            other => {
                return Err(format!(
                    "OTEL_PROPAGATORS names {other:?}, which this build does not support: use \
                     tracecontext, baggage (the default is both) or none"
                ));
            }
        }
    }
    Ok(TextMapCompositePropagator::new(propagators))
}

static PROPAGATOR: OnceLock<TextMapCompositePropagator> = OnceLock::new();

/// Sets the process's propagators from `OTEL_PROPAGATORS`; an unknown name is an error
/// for the start-up to report. Without a call, `tracecontext,baggage`.
pub fn init_propagation_from_env() -> Result<(), String> {
    let propagator = propagator_from(std::env::var("OTEL_PROPAGATORS").ok().as_deref())?;
    let _ = PROPAGATOR.set(propagator);
    Ok(())
}

fn propagator() -> &'static TextMapCompositePropagator {
    PROPAGATOR.get_or_init(|| {
        TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ])
    })
}

/// The samplers `OTEL_TRACES_SAMPLER` may name; the SDK reads the variable (and its
/// argument), but falls back silently on a name it does not know, so the start refuses it.
const SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// Trace export settings; [`TraceConfig::from_env`] reads the standard variables.
///
/// The OpenTelemetry SDK reads most `OTEL_*` variables itself where this leaves a value
/// `None`: the endpoint, headers, timeout and compression (the OTLP exporter), the
/// service name and resource attributes (the resource detectors), the sampler.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// The collector, when the code names one (tests, the load generator); `None`: the
    /// exporter reads `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    pub protocol: Protocol,
    /// `service.name` when the code names one; `None`: `OTEL_SERVICE_NAME`, else a
    /// `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else [`SERVICE_NAME`].
    pub service_name: Option<String>,
    /// Further resource attributes (besides those of `OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    /// `None`: the SDK's, from `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`
    /// (default `parentbased_always_on`).
    pub sampler: Option<Sampler>,
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
    /// Export to `endpoint` over gRPC with the defaults: the SDK's sampler, a 2,048-span
    /// queue, batches of 512, sent within 1 s.
    pub fn new(endpoint: impl Into<String>) -> Self {
        TraceConfig {
            endpoint: Some(endpoint.into()),
            ..TraceConfig::from_sdk()
        }
    }

    /// The defaults, the endpoint and service name left to the SDK's variables.
    fn from_sdk() -> Self {
        TraceConfig {
            endpoint: None,
            protocol: Protocol::Grpc,
            service_name: None,
            resource: Vec::new(),
            sampler: None,
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

    /// From variables looked up by `var`. Tracing is off without
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`, with
    /// `OTEL_SDK_DISABLED=true` or with `OTEL_TRACES_EXPORTER=none`. Checked here, and
    /// refused when unknown: the protocol and the sampler's name. Read here, since they
    /// size servicelevel's own export queue: `OTEL_BSP_MAX_QUEUE_SIZE`,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`,
    /// `OTEL_BSP_EXPORT_TIMEOUT` (milliseconds). Everything else the SDK reads.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let set = |k: &str| {
            var(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match set("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER={other:?} is not supported: use otlp or none"
                ));
            }
        }
        if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .is_none()
        {
            return Ok(None);
        }
        let mut c = TraceConfig::from_sdk();
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(v) = set(name) {
                c.protocol = Protocol::parse(name, &v)?;
                break;
            }
        }
        if let Some(name) = set("OTEL_TRACES_SAMPLER")
            && !SAMPLERS.contains(&name.as_str())
        {
            return Err(format!(
                "OTEL_TRACES_SAMPLER={name:?} is not supported: use {}",
                SAMPLERS.join(", ")
            ));
        }
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

    /// The endpoint export goes to, as the exporter will read it (for the start-up
    /// message and the TLS decision).
    pub fn effective_endpoint(&self) -> Option<String> {
        let env = |k: &str| {
            std::env::var(k)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        self.endpoint
            .clone()
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    }
}

/// The trust roots for an `https://` collector: the public web's (webpki roots) plus the
/// CA in `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` or `OTEL_EXPORTER_OTLP_CERTIFICATE`
/// (a PEM file), when set.
fn collector_ca() -> Result<Option<Vec<u8>>, String> {
    let path = [
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
    path.map(|p| {
        std::fs::read(p.trim()).map_err(|e| format!("cannot read the collector CA {p}: {e}"))
    })
    .transpose()
}

/// The HTTP client of OTLP over HTTP: hyper with rustls (ring), trusting the webpki roots
/// and the collector CA.
fn http_client(timeout: Duration) -> Result<impl opentelemetry_http::HttpClient + 'static, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = collector_ca()? {
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("the collector CA is not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("the collector CA is not usable: {e}"))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(opentelemetry_http::hyper::HyperClient::new(
        connector, timeout, None,
    ))
}

/// The gRPC exporter's TLS: the webpki roots plus the collector CA.
fn grpc_tls() -> Result<tonic::transport::ClientTlsConfig, String> {
    let mut tls = tonic::transport::ClientTlsConfig::new().with_enabled_roots();
    if let Some(pem) = collector_ca()? {
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
    }
    Ok(tls)
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

    fn on_end(&self, mut span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        // The store's spans (`db.begin`, `db.lock_ticket`, ...) are calls to the database:
        // client spans whose operation is the store call. Their fields carry the rest
        // (`db.system.name`, `db.namespace`, `server.address`, `server.port`).
        if let Some(operation) = span.name.strip_prefix("db.") {
            let operation = operation.to_string();
            span.span_kind = opentelemetry::trace::SpanKind::Client;
            span.attributes.push(opentelemetry::KeyValue::new(
                opentelemetry_semantic_conventions::attribute::DB_OPERATION_NAME,
                operation,
            ));
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

/// The resource: `service.name` (the config's, else the SDK's from the environment,
/// else [`SERVICE_NAME`]), `service.version` (this build's), the SDK's `telemetry.sdk.*`,
/// `OTEL_RESOURCE_ATTRIBUTES`, and the config's attributes.
fn resource(c: &TraceConfig) -> Resource {
    use opentelemetry::KeyValue;
    use opentelemetry_semantic_conventions::resource::{SERVICE_NAME as NAME, SERVICE_VERSION};
    // The SDK's own detection first (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES).
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str(NAME))
        .map(|v| v.to_string())
        .filter(|n| !n.starts_with("unknown_service"));
    let name = c
        .service_name
        .clone()
        .or(named)
        .unwrap_or_else(|| SERVICE_NAME.to_string());
    let mut builder = Resource::builder_empty()
        .with_attribute(KeyValue::new(SERVICE_VERSION, env!("CARGO_PKG_VERSION")))
        .with_detectors(&[
            Box::new(TelemetryResourceDetector) as Box<dyn ResourceDetector>,
            Box::new(EnvResourceDetector::new()),
        ]);
    for (k, v) in &c.resource {
        builder = builder.with_attribute(KeyValue::new(k.clone(), v.clone()));
    }
    builder.with_service_name(name).build()
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
        let resource = resource(c);
        let endpoint = c.effective_endpoint();
        let https = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("https://"));
        let built = match c.protocol {
            Protocol::Grpc => {
                let mut b = opentelemetry_otlp::SpanExporter::builder().with_tonic();
                if let Some(e) = &c.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                if https {
                    b = b.with_tls_config(grpc_tls()?);
                }
                b.build()
            }
            Protocol::HttpProtobuf => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_http_client(http_client(c.export_timeout)?);
                if let Some(e) = &c.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                b.build()
            }
        };
        let mut exporter = built.map_err(|e| {
            format!(
                "cannot set up OTLP export to {}: {e}",
                endpoint.as_deref().unwrap_or("the collector")
            )
        })?;
        exporter.set_resource(&resource);
        let stats = Arc::new(SpanStats::default());
        let processor = QueueProcessor::start(exporter, c, Arc::clone(&stats));
        let control = processor.control.clone();
        let mut provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource);
        if let Some(sampler) = &c.sampler {
            provider = provider.with_sampler(sampler.clone());
        }
        let provider = provider.build();
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

    /// The OpenTelemetry layer, without the exporter's own transport (h2, hyper, rustls,
    /// tonic, tower, opentelemetry) and without database spans outside a request or due
    /// action.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let scope = opentelemetry::InstrumentationScope::builder("servicelevel")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer_with_scope(scope))
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
        .with_target("hyper_rustls", LevelFilter::OFF)
        .with_target("rustls", LevelFilter::OFF)
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

/// The trace context a caller sent (`traceparent`/`tracestate`, and `baggage`, as
/// `OTEL_PROPAGATORS` says), if it names a valid span.
pub fn remote_parent(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    let cx = propagator().extract(&HeaderExtractor(headers));
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
    // Stored in W3C form whatever the propagators: read it as such.
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
    let linked = cx.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
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

/// OTLP trace receivers for tests and the load generator, over gRPC and over
/// HTTP/protobuf: accept every export and keep the spans (or only count them).
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
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message as _;

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
        /// The string attributes of each resource that sent spans (when kept).
        resources: Mutex<Vec<Vec<(String, String)>>>,
    }

    impl Received {
        fn new(keep: bool) -> Self {
            Received {
                inner: Arc::new(Inner {
                    keep,
                    ..Inner::default()
                }),
            }
        }

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

        /// The string attributes of each resource that sent spans (when kept).
        pub fn resources(&self) -> Vec<Vec<(String, String)>> {
            self.inner
                .resources
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        /// The `service.name` of each resource that sent spans (when kept).
        pub fn service_names(&self) -> Vec<String> {
            self.resources()
                .iter()
                .filter_map(|r| r.iter().find(|(k, _)| k == "service.name"))
                .map(|(_, v)| v.clone())
                .collect()
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

        /// Takes one export request, however it came.
        fn record(&self, r: ExportTraceServiceRequest) {
            let inner = &self.inner;
            let mut n = 0;
            for rs in r.resource_spans {
                let spans: Vec<Span> = rs.scope_spans.into_iter().flat_map(|s| s.spans).collect();
                n += spans.len() as u64;
                if inner.keep {
                    let attributes = rs
                        .resource
                        .iter()
                        .flat_map(|res| &res.attributes)
                        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                            Value::StringValue(v) => Some((kv.key.clone(), v.clone())),
                            _ => None,
                        })
                        .collect();
                    inner
                        .resources
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(attributes);
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
        }
    }

    struct Service(Received);

    #[tonic::async_trait]
    impl TraceService for Service {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            self.0.record(request.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        }
    }

    async fn bind() -> Result<(tokio::net::TcpListener, SocketAddr), String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("OTLP sink: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("OTLP sink: {e}"))?;
        Ok((listener, addr))
    }

    /// Starts an OTLP/gRPC receiver on a free local port; `keep` keeps the spans,
    /// otherwise they are only counted. Runs until the runtime stops.
    pub async fn start(keep: bool) -> Result<(SocketAddr, Received), String> {
        start_with(super::Protocol::Grpc, keep, None).await
    }

    /// Starts an OTLP/HTTP receiver (protobuf, `POST /v1/traces`) on a free local port.
    pub async fn start_http(keep: bool) -> Result<(SocketAddr, Received), String> {
        start_with(super::Protocol::HttpProtobuf, keep, None).await
    }

    /// Starts a receiver of `protocol`, over TLS with `tls` (a PEM certificate chain and
    /// key) when given. Runs until the runtime stops.
    pub async fn start_with(
        protocol: super::Protocol,
        keep: bool,
        tls: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(SocketAddr, Received), String> {
        let (listener, addr) = bind().await?;
        let received = Received::new(keep);
        match protocol {
            super::Protocol::Grpc => serve_grpc(listener, received.clone(), tls)?,
            super::Protocol::HttpProtobuf => serve_http(listener, received.clone(), tls)?,
        }
        Ok((addr, received))
    }

    fn serve_grpc(
        listener: tokio::net::TcpListener,
        received: Received,
        tls: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), String> {
        let service =
            TraceServiceServer::new(Service(received)).max_decoding_message_size(64 * 1024 * 1024);
        let mut server = tonic::transport::Server::builder();
        if let Some((cert, key)) = tls {
            server = server
                .tls_config(
                    tonic::transport::ServerTlsConfig::new()
                        .identity(tonic::transport::Identity::from_pem(cert, key)),
                )
                .map_err(|e| format!("OTLP sink TLS: {e}"))?;
        }
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = server
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::warn!(error = %e, "OTLP sink stopped");
            }
        });
        Ok(())
    }

    /// A TLS acceptor for HTTP/1.1 (the server's own acceptor offers only h2).
    fn http1_acceptor(cert: &[u8], key: &[u8]) -> Result<tokio_rustls::TlsAcceptor, String> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject as _;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("OTLP sink certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("OTLP sink key: {e}"))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("OTLP sink TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("OTLP sink TLS: {e}"))?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    fn serve_http(
        listener: tokio::net::TcpListener,
        sink: Received,
        tls: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), String> {
        use http_body_util::BodyExt as _;
        use hyper::service::service_fn;
        let acceptor = tls
            .map(|(cert, key)| http1_acceptor(&cert, &key))
            .transpose()?;
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let sink = sink.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let ok = req.method() == hyper::Method::POST
                                && req.uri().path() == "/v1/traces";
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let decoded = body
                                .ok()
                                .filter(|_| ok)
                                .and_then(|b| ExportTraceServiceRequest::decode(b).ok());
                            match decoded {
                                Some(r) => {
                                    sink.record(r);
                                    hyper::Response::builder()
                                        .header("content-type", "application/x-protobuf")
                                        .body(http_body_util::Full::new(prost::bytes::Bytes::from(
                                            ExportTraceServiceResponse {
                                                partial_success: None,
                                            }
                                            .encode_to_vec(),
                                        )))
                                }
                                None => hyper::Response::builder()
                                    .status(hyper::StatusCode::BAD_REQUEST)
                                    .body(http_body_util::Full::new(prost::bytes::Bytes::new())),
                            }
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match acceptor {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(tls) => {
                                http.serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                    .await
                            }
                            Err(_) => return,
                        },
                        None => {
                            http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await
                        }
                    };
                });
            }
        });
        Ok(())
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
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
        ]))
        .unwrap()
        .expect("on");
        // The endpoint, service name and sampler are the SDK's to read.
        assert_eq!(c.endpoint, None);
        assert_eq!(c.service_name, None);
        assert!(c.sampler.is_none());
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.max_queue_size, 100);
        assert_eq!(c.max_export_batch_size, 100, "a batch fits the queue");
        let c = TraceConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]))
        .unwrap()
        .expect("on");
        assert_eq!(c.protocol, Protocol::Grpc, "the traces variable wins");
        for bad in [
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
        ] {
            let v = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"), bad];
            let err = TraceConfig::from_vars(vars(&v)).expect_err("refused");
            assert!(err.contains(bad.0), "{bad:?}: {err}");
        }
    }

    #[test]
    fn propagators_and_conventions_come_from_their_variables() {
        use opentelemetry::propagation::TextMapPropagator as _;
        let fields = |v: Option<&str>| -> Vec<String> {
            propagator_from(v)
                .expect("known")
                .fields()
                .map(str::to_string)
                .collect()
        };
        let mut default = fields(None);
        default.sort();
        assert_eq!(default, ["baggage", "traceparent", "tracestate"]);
        assert_eq!(fields(Some("baggage")), ["baggage"]);
        assert!(fields(Some("none")).is_empty());
        let err = propagator_from(Some("tracecontext,b3")).expect_err("b3 is not built in");
        assert!(
            err.contains("\"b3\"") && err.contains("OTEL_PROPAGATORS"),
            "{err}"
        );
        assert_eq!(RpcConventions::from_opt_in(None), RpcConventions::Old);
        assert_eq!(
            RpcConventions::from_opt_in(Some("http, rpc")),
            RpcConventions::Stable
        );
        assert_eq!(
            RpcConventions::from_opt_in(Some("rpc,rpc/dup")),
            RpcConventions::Both
        );
        assert_eq!(
            RpcConventions::from_opt_in(Some("database")),
            RpcConventions::Old
        );
    }

    #[test]
    fn human_lines_leave_out_the_otel_fields_and_colours() {
        let out = Buffer::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(log_layer_with(
            LogFormat::Human,
            move || writer.clone(),
            false,
        ));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "rpc",
                otel.name = "servicelevel.v1.TicketService/GetTicket",
                otel.kind = "server",
                ticket = "tickets/1"
            );
            let _e = span.enter();
            tracing::warn!(code = 5, "something happened");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("rpc{ticket=\"tickets/1\"}"), "{text}");
        assert!(text.contains("something happened code=5"), "{text}");
        assert!(!text.contains("otel."), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
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
