//! Prometheus metrics: a small registry of this service's counters, gauges and histograms,
//! rendered in the text exposition format (0.0.4), and the HTTP endpoint that serves it.
//!
//! Recording is always on and cheap (a mutex and a few additions per RPC); the endpoint is
//! off unless `SERVICELEVEL_METRICS_LISTEN` is set. Gauges that need the database (clocks,
//! outbox head, pool) are read when scraped, at most once per [`DB_GAUGES_TTL`].
//! `docs/operations.md` lists every metric.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::domain::ledger::{Entry, EntryKind};
use crate::store::{Store, StoreGauges};

/// How long the database gauges of one scrape are reused by the next.
pub const DB_GAUGES_TTL: Duration = Duration::from_secs(5);
/// How long a scrape waits for the database gauges before answering without them.
const DB_GAUGES_TIMEOUT: Duration = Duration::from_secs(3);
/// Most distinct RPC method labels; calls to further (unknown) paths count as `other`.
const MAX_METHODS: usize = 128;

/// RPC latency buckets, seconds.
const RPC_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Due-action lag buckets, seconds: from the runner's polling granularity to downtime.
const LAG_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// gRPC status code names, by number.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The name of a gRPC status code (`UNKNOWN` for numbers outside the standard range).
pub fn code_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|i| CODES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), plus the +Inf bucket last.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, n) in self.counts.iter().enumerate() {
            cumulative += n;
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// One method's calls, by status code.
#[derive(Debug)]
struct RpcMethod {
    by_code: [Option<Box<Histogram>>; 17],
}

/// Counters of the span queue in front of the OTLP exporter (see `telemetry`).
#[derive(Debug, Default)]
pub struct SpanStats {
    /// Spans handed to the exporter and accepted.
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full (the collector slow or away).
    pub dropped: AtomicU64,
    /// Spans in batches the exporter failed to deliver.
    pub failed: AtomicU64,
}

/// Where the database gauges come from at scrape time.
pub trait GaugeSource: Send + Sync + 'static {
    fn gauges(&self) -> Pin<Box<dyn Future<Output = Result<StoreGauges, String>> + Send + '_>>;
}

/// A store as a gauge source.
pub struct StoreSource<S: Store>(pub S);

impl<S: Store> GaugeSource for StoreSource<S> {
    fn gauges(&self) -> Pin<Box<dyn Future<Output = Result<StoreGauges, String>> + Send + '_>> {
        Box::pin(async move { self.0.gauges().await.map_err(|e| e.to_string()) })
    }
}

/// A live alert stream's position, for the outbox backlog.
#[derive(Debug)]
pub struct WatcherPosition {
    id: u64,
    /// The id of the last alert it delivered; [`CAUGHT_UP`] once its last read found
    /// nothing more.
    last: Arc<AtomicI64>,
    metrics: Arc<Metrics>,
}

/// A watcher position meaning "its last read reached the end of the outbox".
const CAUGHT_UP: i64 = i64::MAX;

impl WatcherPosition {
    /// Records the id of the alert just delivered.
    pub fn delivered(&self, alert_id: i64) {
        self.last.store(alert_id, Ordering::Relaxed);
    }

    /// Records that a read found nothing more to deliver.
    pub fn caught_up(&self) {
        self.last.store(CAUGHT_UP, Ordering::Relaxed);
    }
}

impl Drop for WatcherPosition {
    fn drop(&mut self) {
        self.metrics
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

type Labels2 = (String, String);

/// The registry. One per server (the tests run several servers in one process).
#[derive(Default)]
pub struct Metrics {
    rpc: Mutex<HashMap<String, RpcMethod>>,
    warnings: Mutex<BTreeMap<Labels2, u64>>,
    breaches: Mutex<BTreeMap<Labels2, u64>>,
    hours_consumed: Mutex<BTreeMap<String, u64>>,
    hours_overage: Mutex<BTreeMap<String, u64>>,
    due_lag: Mutex<BTreeMap<String, Histogram>>,
    watchers: Mutex<HashMap<u64, Arc<AtomicI64>>>,
    next_watcher: AtomicU64,
    source: Mutex<Option<Arc<dyn GaugeSource>>>,
    cache: tokio::sync::Mutex<Option<(Instant, Result<StoreGauges, String>)>>,
    spans: Mutex<Option<Arc<SpanStats>>>,
    /// TLS files read again while serving: (applied, refused); `None` without TLS files.
    tls_reloads: Mutex<Option<(u64, u64)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A label value escaped for the text format.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Sets where the database gauges are read from (the server does, at start).
    pub fn set_source(&self, source: Arc<dyn GaugeSource>) {
        *lock(&self.source) = Some(source);
    }

    /// Reports the span queue's counters (when tracing is on).
    pub fn set_span_stats(&self, stats: Arc<SpanStats>) {
        *lock(&self.spans) = Some(stats);
    }

    /// The TLS files are watched (the counters show, at zero, from then on).
    pub fn tls_reloads_watched(&self) {
        lock(&self.tls_reloads).get_or_insert((0, 0));
    }

    /// Changed TLS files read again: applied, or refused by rustls (the old ones stay).
    pub fn tls_reload(&self, applied: bool) {
        let mut r = lock(&self.tls_reloads);
        let (ok, refused) = r.get_or_insert((0, 0));
        if applied {
            *ok += 1;
        } else {
            *refused += 1;
        }
    }

    /// One finished RPC: `method` is the gRPC path (`/pkg.Service/Method`).
    pub fn rpc(&self, method: &str, code: i32, elapsed: Duration) {
        let method = method.trim_start_matches('/');
        let code = usize::try_from(code)
            .ok()
            .filter(|c| *c < CODES.len())
            .unwrap_or(2);
        let mut map = lock(&self.rpc);
        let key = if map.contains_key(method) || map.len() < MAX_METHODS {
            method
        } else {
            "other"
        };
        let series = match map.get_mut(key) {
            Some(s) => s,
            None => map.entry(key.to_string()).or_insert_with(|| RpcMethod {
                by_code: Default::default(),
            }),
        };
        series.by_code[code]
            .get_or_insert_with(|| Box::new(Histogram::new(RPC_BUCKETS)))
            .observe(elapsed.as_secs_f64());
    }

    /// A warning or breach servicelevel recorded on a clock of `metric`, for an
    /// organisation on plan `tier` (`none` without a plan).
    pub fn clock_action(&self, kind: &str, metric: &str, tier: Option<&str>) {
        let family = match kind {
            "warning" => &self.warnings,
            "breach" => &self.breaches,
            _ => return,
        };
        *lock(family)
            .entry((metric.to_string(), tier.unwrap_or("none").to_string()))
            .or_insert(0) += 1;
    }

    /// The time from an action's due instant to the runner recording it.
    pub fn due_lag(&self, action: &str, lag: chrono::TimeDelta) {
        let secs = lag.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        lock(&self.due_lag)
            .entry(action.to_string())
            .or_insert_with(|| Histogram::new(LAG_BUCKETS))
            .observe(secs.max(0.0));
    }

    /// Ledger entries committed to an hour account of `bucket`: usage consumed (billable
    /// minutes) and overage, from consumptions and captures.
    pub fn ledger_entries(&self, bucket: &str, entries: &[Entry]) {
        let (mut consumed, mut overage) = (0u64, 0u64);
        for e in entries {
            if !matches!(e.kind, EntryKind::Consume | EntryKind::Capture) {
                continue;
            }
            if let Some(u) = &e.usage {
                consumed += u64::try_from(u.billable_minutes).unwrap_or(0);
                overage += u64::try_from(u.overage_minutes).unwrap_or(0);
            }
        }
        if consumed > 0 {
            *lock(&self.hours_consumed)
                .entry(bucket.to_string())
                .or_insert(0) += consumed;
        }
        if overage > 0 {
            *lock(&self.hours_overage)
                .entry(bucket.to_string())
                .or_insert(0) += overage;
        }
    }

    /// Registers a live alert stream; dropping the position unregisters it.
    pub fn watcher(self: &Arc<Self>) -> WatcherPosition {
        let id = self.next_watcher.fetch_add(1, Ordering::Relaxed);
        let last = Arc::new(AtomicI64::new(CAUGHT_UP));
        lock(&self.watchers).insert(id, Arc::clone(&last));
        WatcherPosition {
            id,
            last,
            metrics: Arc::clone(self),
        }
    }

    async fn store_gauges(&self) -> Option<Result<StoreGauges, String>> {
        let source = lock(&self.source).clone()?;
        let mut cache = self.cache.lock().await;
        if let Some((at, g)) = cache.as_ref()
            && at.elapsed() < DB_GAUGES_TTL
        {
            return Some(g.clone());
        }
        let got = match tokio::time::timeout(DB_GAUGES_TIMEOUT, source.gauges()).await {
            Ok(r) => r,
            Err(_) => Err("the database did not answer in time".to_string()),
        };
        if let Err(e) = &got {
            tracing::warn!(error = %e, "metrics: database gauges not read");
        }
        *cache = Some((Instant::now(), got.clone()));
        Some(got)
    }

    /// The text exposition of every metric.
    pub async fn render(&self) -> String {
        let gauges = self.store_gauges().await;
        let mut out = String::with_capacity(16 * 1024);
        self.render_rpc(&mut out);
        self.render_actions(&mut out);
        self.render_hours(&mut out);
        if let Some(g) = &gauges {
            self.render_store(&mut out, g);
        }
        self.render_spans(&mut out);
        self.render_tls(&mut out);
        out
    }

    fn render_tls(&self, out: &mut String) {
        let Some((ok, refused)) = *lock(&self.tls_reloads) else {
            return;
        };
        let name = "servicelevel_tls_reloads_total";
        header(
            out,
            name,
            "counter",
            "Changed TLS files read again: applied, or refused (the current certificate stays).",
        );
        let _ = writeln!(out, "{name}{{result=\"applied\"}} {ok}");
        let _ = writeln!(out, "{name}{{result=\"refused\"}} {refused}");
    }

    fn render_rpc(&self, out: &mut String) {
        let map = lock(&self.rpc);
        let mut methods: Vec<_> = map.iter().collect();
        methods.sort_by(|a, b| a.0.cmp(b.0));
        header(
            out,
            "servicelevel_rpc_requests_total",
            "counter",
            "RPCs finished, by method and gRPC status code.",
        );
        for (m, s) in &methods {
            for (code, h) in s.by_code.iter().enumerate() {
                if let Some(h) = h {
                    let _ = writeln!(
                        out,
                        "servicelevel_rpc_requests_total{{method=\"{}\",code=\"{}\"}} {}",
                        escape(m),
                        CODES[code],
                        h.count
                    );
                }
            }
        }
        header(
            out,
            "servicelevel_rpc_duration_seconds",
            "histogram",
            "RPC latency in the server (to the response headers), by method and code.",
        );
        for (m, s) in &methods {
            for (code, h) in s.by_code.iter().enumerate() {
                if let Some(h) = h {
                    let labels = format!("method=\"{}\",code=\"{}\"", escape(m), CODES[code]);
                    h.render(out, "servicelevel_rpc_duration_seconds", &labels);
                }
            }
        }
    }

    fn render_actions(&self, out: &mut String) {
        for (name, help, family) in [
            (
                "servicelevel_clock_warnings_total",
                "Warnings servicelevel recorded, by clock metric and organisation plan (tier).",
                &self.warnings,
            ),
            (
                "servicelevel_clock_breaches_total",
                "Breaches servicelevel recorded, by clock metric and organisation plan (tier).",
                &self.breaches,
            ),
        ] {
            header(out, name, "counter", help);
            for ((metric, tier), n) in lock(family).iter() {
                let _ = writeln!(
                    out,
                    "{name}{{metric=\"{}\",tier=\"{}\"}} {n}",
                    escape(metric),
                    escape(tier)
                );
            }
        }
        header(
            out,
            "servicelevel_due_action_lag_seconds",
            "histogram",
            "From an action's due instant to the due-time runner recording it, by action.",
        );
        for (action, h) in lock(&self.due_lag).iter() {
            let labels = format!("action=\"{}\"", escape(action));
            h.render(out, "servicelevel_due_action_lag_seconds", &labels);
        }
    }

    fn render_hours(&self, out: &mut String) {
        for (name, help, family) in [
            (
                "servicelevel_hours_consumed_minutes_total",
                "Billable minutes of usage recorded on hour accounts (consumptions and captures), by bucket.",
                &self.hours_consumed,
            ),
            (
                "servicelevel_hours_overage_minutes_total",
                "Minutes of usage beyond the allowance, by bucket.",
                &self.hours_overage,
            ),
        ] {
            header(out, name, "counter", help);
            for (bucket, n) in lock(family).iter() {
                let _ = writeln!(out, "{name}{{bucket=\"{}\"}} {n}", escape(bucket));
            }
        }
    }

    fn render_store(&self, out: &mut String, g: &Result<StoreGauges, String>) {
        header(
            out,
            "servicelevel_store_gauges_up",
            "gauge",
            "1 when the database gauges below were read, 0 when the database did not answer.",
        );
        let _ = writeln!(out, "servicelevel_store_gauges_up {}", u8::from(g.is_ok()));
        let Ok(g) = g else { return };
        header(
            out,
            "servicelevel_clocks_active",
            "gauge",
            "Active clocks (running, paused, or breached and still running), by metric and state.",
        );
        for (metric, state, n) in &g.clocks {
            let _ = writeln!(
                out,
                "servicelevel_clocks_active{{metric=\"{}\",state=\"{}\"}} {n}",
                escape(metric),
                escape(state)
            );
        }
        let watchers: Vec<i64> = lock(&self.watchers)
            .values()
            .map(|w| w.load(Ordering::Relaxed))
            .collect();
        header(
            out,
            "servicelevel_alert_watchers",
            "gauge",
            "Live WatchAlerts streams on this server.",
        );
        let _ = writeln!(out, "servicelevel_alert_watchers {}", watchers.len());
        header(
            out,
            "servicelevel_alerts_outbox_backlog",
            "gauge",
            "Alert rows written after the last one the slowest live stream on this server delivered (0 without streams).",
        );
        let backlog = match (g.alert_head, watchers.iter().min()) {
            (Some(head), Some(&slowest)) if slowest != CAUGHT_UP => (head - slowest).max(0),
            _ => 0,
        };
        let _ = writeln!(out, "servicelevel_alerts_outbox_backlog {backlog}");
        if let Some(p) = &g.pool {
            header(
                out,
                "servicelevel_db_pool_connections",
                "gauge",
                "Database connections of this server's pool, by state (idle, in_use).",
            );
            let in_use = u64::from(p.open).saturating_sub(p.idle as u64);
            let _ = writeln!(
                out,
                "servicelevel_db_pool_connections{{state=\"idle\"}} {}",
                p.idle
            );
            let _ = writeln!(
                out,
                "servicelevel_db_pool_connections{{state=\"in_use\"}} {in_use}"
            );
            header(
                out,
                "servicelevel_db_pool_max_connections",
                "gauge",
                "The pool's limit (SERVICELEVEL_MAX_CONNECTIONS).",
            );
            let _ = writeln!(out, "servicelevel_db_pool_max_connections {}", p.max);
        }
    }

    fn render_spans(&self, out: &mut String) {
        let Some(s) = lock(&self.spans).clone() else {
            return;
        };
        for (name, help, v) in [
            (
                "servicelevel_trace_spans_exported_total",
                "Spans the OTLP exporter delivered.",
                &s.exported,
            ),
            (
                "servicelevel_trace_spans_dropped_total",
                "Spans dropped because the export queue was full (collector slow or unreachable).",
                &s.dropped,
            ),
            (
                "servicelevel_trace_spans_failed_total",
                "Spans in batches the OTLP exporter failed to deliver.",
                &s.failed,
            ),
        ] {
            header(out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
    }
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub async fn serve_http(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use hyper::service::service_fn;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let metrics = Arc::clone(&metrics);
                async move {
                    match (req.method(), req.uri().path()) {
                        (&hyper::Method::GET, "/metrics") => hyper::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(metrics.render().await),
                        (&hyper::Method::GET, _) => hyper::Response::builder()
                            .status(hyper::StatusCode::NOT_FOUND)
                            .body("not found: metrics are at /metrics\n".to_string()),
                        _ => hyper::Response::builder()
                            .status(hyper::StatusCode::METHOD_NOT_ALLOWED)
                            .body(String::new()),
                    }
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics endpoint: connection ended");
            }
        });
    }
}

/// Binds `addr` and serves the metrics there in the background.
pub async fn spawn_http(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("metrics listener: {e}"))?;
    Ok((bound, tokio::spawn(serve_http(listener, metrics))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| Some(l.strip_prefix(series)?.strip_prefix(' ')?.to_string()))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn renders_the_text_format() {
        let m = Metrics::new();
        let method = "/servicelevel.v1.TicketService/RecordEvent";
        m.rpc(method, 0, Duration::from_millis(3));
        m.rpc(method, 0, Duration::from_millis(30));
        m.rpc(method, 9, Duration::from_micros(200));
        m.rpc("/x.Y/Z", 99, Duration::from_millis(1));
        m.clock_action("warning", "first\"response", Some("gold"));
        m.clock_action("escalation", "first_response", None);
        m.due_lag("breach", chrono::TimeDelta::milliseconds(1500));
        assert!(!m.render().await.contains("servicelevel_tls_reloads_total"));
        m.tls_reloads_watched();
        m.tls_reload(true);
        m.tls_reload(false);
        m.tls_reload(false);
        let text = m.render().await;
        assert_eq!(
            sample(&text, "servicelevel_tls_reloads_total{result=\"applied\"}").as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, "servicelevel_tls_reloads_total{result=\"refused\"}").as_deref(),
            Some("2")
        );
        let ok = "method=\"servicelevel.v1.TicketService/RecordEvent\",code=\"OK\"";
        assert_eq!(
            sample(&text, &format!("servicelevel_rpc_requests_total{{{ok}}}")).as_deref(),
            Some("2")
        );
        for (le, n) in [
            ("0.0025", "0"),
            ("0.005", "1"),
            ("0.025", "1"),
            ("0.05", "2"),
            ("+Inf", "2"),
        ] {
            assert_eq!(
                sample(
                    &text,
                    &format!("servicelevel_rpc_duration_seconds_bucket{{{ok},le=\"{le}\"}}")
                )
                .as_deref(),
                Some(n),
                "le={le}"
            );
        }
        assert!(text.contains("code=\"FAILED_PRECONDITION\"} 1"));
        assert!(text.contains("method=\"x.Y/Z\",code=\"UNKNOWN\"} 1"));
        assert_eq!(
            sample(
                &text,
                "servicelevel_clock_warnings_total{metric=\"first\\\"response\",tier=\"gold\"}"
            )
            .as_deref(),
            Some("1")
        );
        assert!(!text.contains("escalation"));
        assert_eq!(
            sample(
                &text,
                "servicelevel_due_action_lag_seconds_sum{action=\"breach\"}"
            )
            .as_deref(),
            Some("1.5")
        );
        assert_eq!(
            sample(
                &text,
                "servicelevel_due_action_lag_seconds_bucket{action=\"breach\",le=\"1\"}"
            )
            .as_deref(),
            Some("0")
        );
        // Without a store, no database gauges; without tracing, no span counters.
        assert!(!text.contains("servicelevel_clocks_active"));
        assert!(!text.contains("servicelevel_trace_spans"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').expect("a sample");
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }

    struct Fixed(StoreGauges);

    impl GaugeSource for Fixed {
        fn gauges(&self) -> Pin<Box<dyn Future<Output = Result<StoreGauges, String>> + Send + '_>> {
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_backlog_follows_the_slowest_stream() {
        let m = Metrics::new();
        m.set_source(Arc::new(Fixed(StoreGauges {
            clocks: vec![("resolution".into(), "paused".into(), 4)],
            alert_head: Some(100),
            pool: Some(crate::store::PoolUse {
                open: 5,
                idle: 2,
                max: 16,
            }),
        })));
        let text = m.render().await;
        assert_eq!(
            sample(&text, "servicelevel_alerts_outbox_backlog").as_deref(),
            Some("0")
        );
        assert_eq!(
            sample(
                &text,
                "servicelevel_clocks_active{metric=\"resolution\",state=\"paused\"}"
            )
            .as_deref(),
            Some("4")
        );
        assert_eq!(
            sample(&text, "servicelevel_db_pool_connections{state=\"in_use\"}").as_deref(),
            Some("3")
        );
        let slow = m.watcher();
        let fast = m.watcher();
        slow.delivered(70);
        fast.caught_up();
        let text = m.render().await;
        assert_eq!(
            sample(&text, "servicelevel_alert_watchers").as_deref(),
            Some("2")
        );
        assert_eq!(
            sample(&text, "servicelevel_alerts_outbox_backlog").as_deref(),
            Some("30")
        );
        drop(slow);
        let text = m.render().await;
        assert_eq!(
            sample(&text, "servicelevel_alert_watchers").as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, "servicelevel_alerts_outbox_backlog").as_deref(),
            Some("0")
        );
    }
}
