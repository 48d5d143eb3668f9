//! Prometheus metrics through the `prometheus-client` crate: the registry of this
//! service's counters, gauges and histograms, the scrape-time collectors (the database
//! gauges, the export queue, TLS reloads, the process), and the HTTP endpoint that serves
//! them, as OpenMetrics text to scrapers that ask for it and as the classic text format
//! (0.0.4) to the others.
//!
//! Recording is always on and cheap (atomic additions per RPC); the endpoint is off unless
//! `SERVICELEVEL_METRICS_LISTEN` is set. Gauges that need the database (clocks, outbox
//! head, pool) are read when scraped, at most once per [`DB_GAUGES_TTL`].
//! `docs/operations.md` lists every metric.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::ledger::{Entry, EntryKind};
use crate::store::{ResourceKind, Store, StoreGauges};

/// How long the database gauges of one scrape are reused by the next.
pub const DB_GAUGES_TTL: Duration = Duration::from_secs(5);
/// How long a scrape waits for the database gauges before answering without them.
const DB_GAUGES_TIMEOUT: Duration = Duration::from_secs(3);
/// Most distinct RPC method labels; calls to further (unknown) paths count as `other`.
const MAX_METHODS: usize = 128;

/// RPC latency buckets, seconds.
const RPC_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Due-action lag buckets, seconds: from the runner's polling granularity to downtime.
const LAG_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// The content type of the classic text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics text.
pub const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// The label sets a scrape shows at zero before anything is counted in them, so that
/// `rate()` and `increase()` see a counter's first event: the clock metrics of the loaded
/// policies, the organisations' plans (tiers, and `none`), the plans' hour buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownLabels {
    pub metrics: Vec<String>,
    pub tiers: Vec<String>,
    pub buckets: Vec<String>,
}

/// What a scrape reads from the database.
#[derive(Debug, Clone, Default)]
pub struct ScrapeData {
    pub gauges: StoreGauges,
    pub known: KnownLabels,
}

/// Where the database gauges come from at scrape time.
pub trait GaugeSource: Send + Sync + 'static {
    fn gauges(&self) -> Pin<Box<dyn Future<Output = Result<ScrapeData, String>> + Send + '_>>;
}

/// A store as a gauge source.
pub struct StoreSource<S: Store>(pub S);

/// The policies' clock metrics and the plans' names and buckets, from the catalogue.
async fn known_labels<S: Store>(store: &S) -> Result<KnownLabels, String> {
    #[derive(serde::Deserialize)]
    struct Metric {
        metric: String,
    }
    #[derive(serde::Deserialize)]
    struct PolicyClocks {
        clocks: Vec<Metric>,
    }
    #[derive(serde::Deserialize)]
    struct Bucket {
        bucket: String,
    }
    #[derive(serde::Deserialize)]
    struct PlanBuckets {
        buckets: Vec<Bucket>,
    }
    const PAGE: u32 = 200;
    let mut known = KnownLabels::default();
    for kind in [ResourceKind::Policy, ResourceKind::Plan] {
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list_resources(kind, after.as_deref(), PAGE, false)
                .await
                .map_err(|e| e.to_string())?;
            for v in &page {
                if kind == ResourceKind::Policy {
                    if let Ok(p) = serde_json::from_str::<PolicyClocks>(&v.body) {
                        known.metrics.extend(p.clocks.into_iter().map(|c| c.metric));
                    }
                } else {
                    known.tiers.push(v.id.to_string());
                    if let Ok(p) = serde_json::from_str::<PlanBuckets>(&v.body) {
                        known
                            .buckets
                            .extend(p.buckets.into_iter().map(|b| b.bucket));
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.id.to_string()),
                _ => break,
            }
        }
    }
    known.tiers.push("none".into());
    for list in [&mut known.metrics, &mut known.tiers, &mut known.buckets] {
        list.sort();
        list.dedup();
    }
    Ok(known)
}

impl<S: Store> GaugeSource for StoreSource<S> {
    fn gauges(&self) -> Pin<Box<dyn Future<Output = Result<ScrapeData, String>> + Send + '_>> {
        Box::pin(async move {
            let mut gauges = self.0.gauges().await.map_err(|e| e.to_string())?;
            gauges.webhooks_out = self.0.webhook_backlog().await.ok();
            let known = known_labels(&self.0).await?;
            Ok(ScrapeData { gauges, known })
        })
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
        lock(&self.metrics.scrape.watchers).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

type Labels1 = [(&'static str, String); 1];

/// A counter family registered under `name`.
fn counters<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Counter>
where
    L: Clone
        + std::hash::Hash
        + Eq
        + std::fmt::Debug
        + prometheus_client::encoding::EncodeLabelSet
        + Send
        + Sync
        + 'static,
{
    let family = Family::<L, Counter>::default();
    registry.register(name, help, family.clone());
    family
}
type Labels2 = [(&'static str, String); 2];
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn rpc_histogram() -> Histogram {
    Histogram::new(RPC_BUCKETS)
}

fn lag_histogram() -> Histogram {
    Histogram::new(LAG_BUCKETS)
}

/// The registry. One per server (the tests run several servers in one process).
pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<Labels2, Counter>,
    rpc_duration: Histograms<Labels2>,
    methods: Mutex<HashSet<String>>,
    warnings: Family<Labels2, Counter>,
    breaches: Family<Labels2, Counter>,
    hours_consumed: Family<Labels1, Counter>,
    hours_overage: Family<Labels1, Counter>,
    /// The minutes counters these replace, kept for one release (`None`: left out).
    legacy_hours: Option<(Family<Labels1, Counter>, Family<Labels1, Counter>)>,
    due_lag: Histograms<Labels1>,
    webhook_deliveries: Family<Labels2, Counter>,
    webhook_applied: Family<Labels1, Counter>,
    webhook_lag: Histograms<Labels1>,
    webhook_out_attempts: Family<Labels1, Counter>,
    webhook_out_latency: Histograms<Labels1>,
    hours_write_group: Histogram,
    hours_writes_waiting: Gauge,
    ledger_writes_decided: Family<Labels1, Counter>,
    scrape: Arc<ScrapeCollector>,
    source: Mutex<Option<Arc<dyn GaugeSource>>>,
    cache: tokio::sync::Mutex<Option<(Instant, Result<ScrapeData, String>)>>,
    next_watcher: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::build(true)
    }
}

/// What the collector reports at each scrape: the database gauges last read, the live
/// alert streams, the export queue, TLS reloads.
#[derive(Debug, Default)]
struct ScrapeCollector {
    store: Mutex<Option<Result<StoreGauges, String>>>,
    watchers: Mutex<HashMap<u64, Arc<AtomicI64>>>,
    spans: Mutex<Option<Arc<SpanStats>>>,
    /// TLS files read again while serving: (applied, refused); `None` without TLS files.
    tls_reloads: Mutex<Option<(u64, u64)>>,
    /// The read replica's last measured lag in seconds (`Some(None)`: unknown); `None`
    /// without a read replica.
    replica_lag: Mutex<Option<Option<f64>>>,
}

type Samples<V> = [(Vec<(&'static str, String)>, V)];

/// One family of scrape-time samples: each label set with its value.
fn family<M: prometheus_client::encoding::EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    samples: impl Iterator<Item = (Vec<(&'static str, String)>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, s: &Samples<i64>) -> std::fmt::Result {
    let values = s.iter().map(|(l, v)| (l.clone(), ConstGauge::new(*v)));
    family(e, (name, help, MetricType::Gauge), values)
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    s: &Samples<u64>,
) -> std::fmt::Result {
    let values = s.iter().map(|(l, v)| (l.clone(), ConstCounter::new(*v)));
    family(e, (name, help, MetricType::Counter), values)
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let no = Vec::new;
        if let Some(g) = lock(&self.store).clone() {
            gauge(
                &mut encoder,
                "servicelevel_store_gauges_up",
                "1 when the database gauges below were read, 0 when the database did not answer.",
                &[(no(), i64::from(g.is_ok()))],
            )?;
            if let Ok(g) = g {
                let clocks: Vec<_> = g
                    .clocks
                    .iter()
                    .map(|(metric, state, n)| {
                        (
                            vec![("metric", metric.clone()), ("state", state.clone())],
                            i64::try_from(*n).unwrap_or(i64::MAX),
                        )
                    })
                    .collect();
                gauge(
                    &mut encoder,
                    "servicelevel_clocks_active",
                    "Active clocks (running, paused, or breached and still running), by metric and state.",
                    &clocks,
                )?;
                let watchers: Vec<i64> = lock(&self.watchers)
                    .values()
                    .map(|w| w.load(Ordering::Relaxed))
                    .collect();
                gauge(
                    &mut encoder,
                    "servicelevel_alert_watchers",
                    "Live WatchAlerts streams on this server.",
                    &[(no(), watchers.len() as i64)],
                )?;
                let backlog = match (g.alert_head, watchers.iter().min()) {
                    (Some(head), Some(&slowest)) if slowest != CAUGHT_UP => (head - slowest).max(0),
                    _ => 0,
                };
                gauge(
                    &mut encoder,
                    "servicelevel_alerts_outbox_backlog",
                    "Alert rows written after the last one the slowest live stream on this server delivered (0 without streams).",
                    &[(no(), backlog)],
                )?;
                let (pending, oldest) = g.webhooks_out.unwrap_or((0, None));
                gauge(
                    &mut encoder,
                    "servicelevel_webhooks_out_backlog",
                    "Alert webhook deliveries not delivered yet (pending), every subscription.",
                    &[(no(), pending)],
                )?;
                let age = oldest
                    .map(|o| (chrono::Utc::now() - o).num_seconds().max(0))
                    .unwrap_or(0);
                gauge(
                    &mut encoder,
                    "servicelevel_webhooks_out_oldest_pending_seconds",
                    "Age of the oldest pending alert webhook delivery (0 when none).",
                    &[(no(), age)],
                )?;
                if let Some(p) = &g.pool {
                    let in_use = i64::from(p.open).saturating_sub(p.idle as i64);
                    gauge(
                        &mut encoder,
                        "servicelevel_db_pool_connections",
                        "Database connections of this server's pool, by state (idle, in_use).",
                        &[
                            (vec![("state", "idle".into())], p.idle as i64),
                            (vec![("state", "in_use".into())], in_use),
                        ],
                    )?;
                    gauge(
                        &mut encoder,
                        "servicelevel_db_pool_max_connections",
                        "The pool's limit (SERVICELEVEL_MAX_CONNECTIONS).",
                        &[(no(), i64::from(p.max))],
                    )?;
                }
            }
        }
        if let Some(s) = lock(&self.spans).clone() {
            for (name, help, v) in [
                (
                    "servicelevel_trace_spans_exported",
                    "Spans the OTLP exporter delivered.",
                    &s.exported,
                ),
                (
                    "servicelevel_trace_spans_dropped",
                    "Spans dropped because the export queue was full (collector slow or unreachable).",
                    &s.dropped,
                ),
                (
                    "servicelevel_trace_spans_failed",
                    "Spans in batches the OTLP exporter failed to deliver.",
                    &s.failed,
                ),
            ] {
                counter(
                    &mut encoder,
                    name,
                    help,
                    &[(no(), v.load(Ordering::Relaxed))],
                )?;
            }
        }
        if let Some(lag) = *lock(&self.replica_lag) {
            let samples = [(no(), ConstGauge::new(lag.unwrap_or(f64::NAN)))];
            family(
                &mut encoder,
                (
                    "servicelevel_db_replica_lag_seconds",
                    "How far the read replica is behind the primary (NaN: unknown, reads go to the primary).",
                    MetricType::Gauge,
                ),
                samples.into_iter(),
            )?;
        }
        if let Some((ok, refused)) = *lock(&self.tls_reloads) {
            counter(
                &mut encoder,
                "servicelevel_tls_reloads",
                "Changed TLS files read again: applied, or refused (the current certificate stays).",
                &[
                    (vec![("result", "applied".into())], ok),
                    (vec![("result", "refused".into())], refused),
                ],
            )?;
        }
        Ok(())
    }
}

/// The `process_*` metrics, read from `/proc/self` at each scrape (Linux only; elsewhere
/// none).
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ: 100 on Linux).
const TICKS: f64 = 100.0;

impl ProcessCollector {
    fn read() -> Option<Vec<(&'static str, &'static str, MetricType, f64)>> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces) in parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        // utime, stime, num_threads, starttime: fields 14, 15, 20, 22 of stat (1-based),
        // i.e. 11, 12, 17, 19 after the state field.
        let cpu = (field(11)? + field(12)?) / TICKS;
        let threads = field(17)?;
        let start_ticks = field(19)?;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kb = |key: &str| {
            status.lines().find_map(|l| {
                let v = l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim();
                v.parse::<f64>().ok().map(|k| k * 1024.0)
            })
        };
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()?
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse::<f64>().ok());
        let mut out = vec![
            (
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                MetricType::Counter,
                cpu,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                MetricType::Gauge,
                boot + start_ticks / TICKS,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                MetricType::Gauge,
                open_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                MetricType::Gauge,
                threads,
            ),
        ];
        if let Some(v) = kb("VmRSS:") {
            out.push((
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                MetricType::Gauge,
                v,
            ));
        }
        if let Some(v) = kb("VmSize:") {
            out.push((
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                MetricType::Gauge,
                v,
            ));
        }
        if let Some(v) = max_fds {
            out.push((
                "process_max_fds",
                "Maximum number of open file descriptors.",
                MetricType::Gauge,
                v,
            ));
        }
        Some(out)
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, kind, value) in Self::read().unwrap_or_default() {
            let metric = encoder.encode_descriptor(name, help, None, kind)?;
            if matches!(kind, MetricType::Counter) {
                ConstCounter::new(value).encode(metric)?;
            } else {
                ConstGauge::new(value).encode(metric)?;
            }
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// With the series renamed in this release also exported under their old names
    /// (`SERVICELEVEL_METRICS_LEGACY_NAMES`), or not.
    pub fn with_legacy_names(legacy: bool) -> Arc<Metrics> {
        Arc::new(Metrics::build(legacy))
    }

    fn build(legacy: bool) -> Metrics {
        let mut registry = Registry::default();
        let rpc_requests = counters(
            &mut registry,
            "servicelevel_rpc_requests",
            "RPCs finished, by method and gRPC status code",
        );
        let warnings = counters(
            &mut registry,
            "servicelevel_clock_warnings",
            "Warnings servicelevel recorded, by clock metric and organisation plan (tier)",
        );
        let breaches = counters(
            &mut registry,
            "servicelevel_clock_breaches",
            "Breaches servicelevel recorded, by clock metric and organisation plan (tier)",
        );
        let hours_consumed = counters(
            &mut registry,
            "servicelevel_usage_billable_seconds",
            "Billable time of usage recorded on hour accounts (consumptions and captures), by bucket",
        );
        let hours_overage = counters(
            &mut registry,
            "servicelevel_usage_overage_seconds",
            "Time of usage beyond the allowance, by bucket",
        );
        let legacy_hours = legacy.then(|| {
            (
                counters(
                    &mut registry,
                    "servicelevel_hours_consumed_minutes",
                    "Deprecated: servicelevel_usage_billable_seconds_total / 60",
                ),
                counters(
                    &mut registry,
                    "servicelevel_hours_overage_minutes",
                    "Deprecated: servicelevel_usage_overage_seconds_total / 60",
                ),
            )
        });
        let rpc_duration = Histograms::<Labels2>::new_with_constructor(rpc_histogram);
        registry.register(
            "servicelevel_rpc_duration_seconds",
            "RPC latency in the server (to the response headers), by method and code",
            rpc_duration.clone(),
        );
        let due_lag = Histograms::<Labels1>::new_with_constructor(lag_histogram);
        registry.register(
            "servicelevel_due_action_lag_seconds",
            "From an action's due instant to the due-time runner recording it, by action",
            due_lag.clone(),
        );
        let hours_write_group = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]);
        registry.register(
            "servicelevel_ledger_write_group_size",
            "Ledger writes decided together in one transaction (group commit: one lane, one or several hour accounts)",
            hours_write_group.clone(),
        );
        let hours_writes_waiting = Gauge::default();
        registry.register(
            "servicelevel_ledger_writes_waiting",
            "Ledger writes queued on their hour account or being decided, now",
            hours_writes_waiting.clone(),
        );
        let ledger_writes_decided = counters(
            &mut registry,
            "servicelevel_ledger_writes_decided",
            "Ledger writes decided, by way: on the account fold kept in memory, written in one statement (kept), or on the locked account (locked: an account's first writes, retries, accounts another process wrote to)",
        );
        let webhook_deliveries = counters(
            &mut registry,
            "servicelevel_webhook_deliveries",
            "Webhook deliveries received, by provider and outcome (kept, or duplicate of one kept before)",
        );
        let webhook_applied = counters(
            &mut registry,
            "servicelevel_webhook_applied",
            "Webhook deliveries the inbox worker finished, by state (applied, stale, ignored, failed)",
        );
        let webhook_lag = Histograms::<Labels1>::new_with_constructor(lag_histogram);
        registry.register(
            "servicelevel_webhook_apply_lag_seconds",
            "From a webhook delivery's arrival to the inbox worker finishing it, by state",
            webhook_lag.clone(),
        );
        let webhook_out_attempts = counters(
            &mut registry,
            "servicelevel_webhooks_out_attempts",
            "Alert webhook delivery attempts, by outcome (delivered, failed: retried later, dead: dead-lettered)",
        );
        let webhook_out_latency = Histograms::<Labels1>::new_with_constructor(lag_histogram);
        registry.register(
            "servicelevel_webhooks_out_latency_seconds",
            "From an alert's recording to its webhook delivery (2xx), by outcome",
            webhook_out_latency.clone(),
        );
        let build_info = Family::<Labels1, Gauge>::default();
        build_info
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        registry.register(
            "servicelevel_build_info",
            "1, labelled with this build's version",
            build_info,
        );
        let scrape = Arc::new(ScrapeCollector::default());
        registry.register_collector(Box::new(Arc::clone(&scrape)));
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry,
            rpc_requests,
            rpc_duration,
            methods: Mutex::new(HashSet::new()),
            warnings,
            breaches,
            hours_consumed,
            hours_overage,
            legacy_hours,
            due_lag,
            webhook_deliveries,
            webhook_applied,
            webhook_lag,
            webhook_out_attempts,
            webhook_out_latency,
            hours_write_group,
            hours_writes_waiting,
            ledger_writes_decided,
            scrape,
            source: Mutex::new(None),
            cache: tokio::sync::Mutex::new(None),
            next_watcher: AtomicU64::new(0),
        }
    }

    /// Sets where the database gauges are read from (the server does, at start).
    pub fn set_source(&self, source: Arc<dyn GaugeSource>) {
        *lock(&self.source) = Some(source);
    }

    /// Reports the span queue's counters (when tracing is on).
    pub fn set_span_stats(&self, stats: Arc<SpanStats>) {
        *lock(&self.scrape.spans) = Some(stats);
    }

    /// The TLS files are watched (the counters show, at zero, from then on).
    /// Records the read replica's lag (seconds, or `None` when unknown): from then on the
    /// scrape has `servicelevel_db_replica_lag_seconds`.
    pub fn replica_lag(&self, lag: Option<f64>) {
        *lock(&self.scrape.replica_lag) = Some(lag);
    }

    pub fn tls_reloads_watched(&self) {
        lock(&self.scrape.tls_reloads).get_or_insert((0, 0));
    }

    /// Changed TLS files read again: applied, or refused by rustls (the old ones stay).
    pub fn tls_reload(&self, applied: bool) {
        let mut r = lock(&self.scrape.tls_reloads);
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
        let method = {
            let mut methods = lock(&self.methods);
            if methods.contains(method) || methods.len() < MAX_METHODS {
                methods.insert(method.to_string());
                method
            } else {
                "other"
            }
        };
        let labels = [
            ("method", method.to_string()),
            ("code", CODES[code].to_string()),
        ];
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_duration
            .get_or_create(&labels)
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
        family
            .get_or_create(&[
                ("metric", metric.to_string()),
                ("tier", tier.unwrap_or("none").to_string()),
            ])
            .inc();
    }

    /// The time from an action's due instant to the runner recording it.
    pub fn due_lag(&self, action: &str, lag: chrono::TimeDelta) {
        let secs = lag.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        self.due_lag
            .get_or_create(&[("action", action.to_string())])
            .observe(secs.max(0.0));
    }

    /// Deliveries a webhook request left: `kept` new ones, `duplicates` kept before.
    pub fn webhook_deliveries(&self, provider: &str, kept: usize, duplicates: usize) {
        for (outcome, n) in [("kept", kept), ("duplicate", duplicates)] {
            self.webhook_deliveries
                .get_or_create(&[
                    ("provider", provider.to_string()),
                    ("outcome", outcome.to_string()),
                ])
                .inc_by(n as u64);
        }
    }

    /// An alert webhook attempt, and for a delivered one how long after its alert.
    pub fn webhook_out_attempt(&self, outcome: &str, latency: Option<std::time::Duration>) {
        let labels = [("outcome", outcome.to_string())];
        self.webhook_out_attempts.get_or_create(&labels).inc();
        if let Some(l) = latency {
            self.webhook_out_latency
                .get_or_create(&labels)
                .observe(l.as_secs_f64());
        }
    }

    /// A delivery the inbox worker finished, `lag` after it arrived.
    pub fn webhook_applied(&self, state: &str, lag: chrono::TimeDelta) {
        let labels = [("state", state.to_string())];
        self.webhook_applied.get_or_create(&labels).inc();
        let secs = lag.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        self.webhook_lag
            .get_or_create(&labels)
            .observe(secs.max(0.0));
    }

    /// A group of `n` ledger writes (one lane, one or several accounts) decided in one transaction.
    pub fn account_group(&self, n: usize) {
        self.hours_write_group.observe(n as f64);
    }

    /// Ledger writes joining (`n` > 0) or leaving (answered) their account's queue.
    pub fn hours_writes_waiting(&self, n: i64) {
        self.hours_writes_waiting.inc_by(n);
    }

    /// `n` ledger writes decided `way` ("kept" or "locked").
    pub fn ledger_writes_decided(&self, way: &str, n: usize) {
        if n > 0 {
            self.ledger_writes_decided
                .get_or_create(&[("way", way.to_string())])
                .inc_by(n as u64);
        }
    }

    /// Ledger writes decided `way` so far.
    pub fn ledger_writes_decided_now(&self, way: &str) -> u64 {
        self.ledger_writes_decided
            .get_or_create(&[("way", way.to_string())])
            .get()
    }

    /// Ledger writes queued on their hour account or being decided, now.
    pub fn hours_writes_waiting_now(&self) -> i64 {
        self.hours_writes_waiting.get()
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
        let labels = [("bucket", bucket.to_string())];
        if consumed > 0 {
            self.hours_consumed
                .get_or_create(&labels)
                .inc_by(consumed * 60);
        }
        if overage > 0 {
            self.hours_overage
                .get_or_create(&labels)
                .inc_by(overage * 60);
        }
        if let Some((legacy_consumed, legacy_overage)) = &self.legacy_hours {
            if consumed > 0 {
                legacy_consumed.get_or_create(&labels).inc_by(consumed);
            }
            if overage > 0 {
                legacy_overage.get_or_create(&labels).inc_by(overage);
            }
        }
    }

    /// Registers a live alert stream; dropping the position unregisters it.
    pub fn watcher(self: &Arc<Self>) -> WatcherPosition {
        let id = self.next_watcher.fetch_add(1, Ordering::Relaxed);
        let last = Arc::new(AtomicI64::new(CAUGHT_UP));
        lock(&self.scrape.watchers).insert(id, Arc::clone(&last));
        WatcherPosition {
            id,
            last,
            metrics: Arc::clone(self),
        }
    }

    /// Reads the database gauges (or reuses the last read), and shows the known label
    /// sets at zero.
    async fn refresh(&self) {
        let Some(source) = lock(&self.source).clone() else {
            return;
        };
        let mut cache = self.cache.lock().await;
        let fresh = cache
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < DB_GAUGES_TTL);
        if !fresh {
            let got = match tokio::time::timeout(DB_GAUGES_TIMEOUT, source.gauges()).await {
                Ok(r) => r,
                Err(_) => Err("the database did not answer in time".to_string()),
            };
            if let Err(e) = &got {
                tracing::warn!(error = %e, "metrics: database gauges not read");
            }
            *cache = Some((Instant::now(), got));
        }
        let Some((_, got)) = cache.as_ref() else {
            return;
        };
        *lock(&self.scrape.store) =
            Some(got.as_ref().map(|d| d.gauges.clone()).map_err(Clone::clone));
        if let Ok(data) = got {
            for metric in &data.known.metrics {
                for tier in &data.known.tiers {
                    let labels = [("metric", metric.clone()), ("tier", tier.clone())];
                    let _ = self.warnings.get_or_create(&labels);
                    let _ = self.breaches.get_or_create(&labels);
                }
            }
            for bucket in &data.known.buckets {
                let labels = [("bucket", bucket.clone())];
                let _ = self.hours_consumed.get_or_create(&labels);
                let _ = self.hours_overage.get_or_create(&labels);
                if let Some((consumed, overage)) = &self.legacy_hours {
                    let _ = consumed.get_or_create(&labels);
                    let _ = overage.get_or_create(&labels);
                }
            }
        }
    }

    /// Every metric as OpenMetrics text.
    pub async fn render_openmetrics(&self) -> String {
        self.refresh().await;
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics: encoding failed");
        }
        out
    }

    /// Every metric in the classic text format (0.0.4).
    pub async fn render(&self) -> String {
        classic_text(&self.render_openmetrics().await)
    }
}

/// OpenMetrics text as the classic text format: counter families named with their
/// `_total` suffix, no `# UNIT` or `# EOF` lines, bucket bounds written as before
/// (`le="1"`, not `le="1.0"`), so scrapers and dashboards of earlier releases match.
fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_string(), "untyped"),
                other => (name.to_string(), other),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            continue;
        }
        let _ = writeln!(
            out,
            "{}",
            classic_bucket(line).unwrap_or_else(|| line.to_string())
        );
    }
    out
}

/// A histogram bucket sample as earlier releases wrote it: `le` last, and a whole bound
/// without `.0` (`name{method="m",le="1"} 3` for `name{le="1.0",method="m"} 3`).
fn classic_bucket(line: &str) -> Option<String> {
    let (name, rest) = line.split_once("{le=\"")?;
    let (le, rest) = rest.split_once('"')?;
    let le = le.strip_suffix(".0").unwrap_or(le);
    let (others, value) = rest.split_once('}')?;
    Some(match others.strip_prefix(',') {
        Some(others) => format!("{name}{{{others},le=\"{le}\"}}{value}"),
        None => format!("{name}{{le=\"{le}\"}}{value}"),
    })
}

/// Serves `GET /metrics` on `listener` until the task is aborted: OpenMetrics text when
/// the scraper's `Accept` names `application/openmetrics-text`, else the classic text.
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
                    let openmetrics = req
                        .headers()
                        .get_all(hyper::header::ACCEPT)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .any(|v| v.contains("application/openmetrics-text"));
                    match (req.method(), req.uri().path()) {
                        (&hyper::Method::GET, "/metrics") if openmetrics => {
                            hyper::Response::builder()
                                .header("content-type", OPENMETRICS_FORMAT)
                                .body(metrics.render_openmetrics().await)
                        }
                        (&hyper::Method::GET, "/metrics") => hyper::Response::builder()
                            .header("content-type", TEXT_FORMAT)
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
        fn gauges(&self) -> Pin<Box<dyn Future<Output = Result<ScrapeData, String>> + Send + '_>> {
            Box::pin(async move {
                Ok(ScrapeData {
                    gauges: self.0.clone(),
                    known: KnownLabels {
                        metrics: vec!["resolution".into()],
                        tiers: vec!["gold".into(), "none".into()],
                        buckets: vec!["support".into()],
                    },
                })
            })
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn known_label_sets_show_at_zero_and_the_process_and_build_are_described() {
        let m = Metrics::with_legacy_names(false);
        m.set_source(Arc::new(Fixed(StoreGauges::default())));
        let text = m.render().await;
        for series in [
            "servicelevel_clock_breaches_total{metric=\"resolution\",tier=\"gold\"}",
            "servicelevel_clock_warnings_total{metric=\"resolution\",tier=\"none\"}",
            "servicelevel_usage_billable_seconds_total{bucket=\"support\"}",
            "servicelevel_usage_overage_seconds_total{bucket=\"support\"}",
        ] {
            assert_eq!(
                sample(&text, series).as_deref(),
                Some("0"),
                "{series} in {text}"
            );
        }
        assert!(!text.contains("_minutes_total"), "no legacy names when off");
        assert_eq!(
            sample(
                &text,
                &format!(
                    "servicelevel_build_info{{version=\"{}\"}}",
                    env!("CARGO_PKG_VERSION")
                )
            )
            .as_deref(),
            Some("1")
        );
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_open_fds",
                "process_start_time_seconds",
            ] {
                let at_least = if name == "process_cpu_seconds_total" {
                    0.0
                } else {
                    1.0
                };
                assert!(
                    sample(&text, name)
                        .is_some_and(|v| v.parse::<f64>().is_ok_and(|v| v >= at_least)),
                    "{name} in {text}"
                );
            }
        }
        // The classic text has no OpenMetrics-only lines; OpenMetrics ends with # EOF.
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
        assert!(text.contains("# TYPE servicelevel_clock_breaches_total counter"));
        let om = m.render_openmetrics().await;
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE servicelevel_clock_breaches counter"));
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
            webhooks_out: None,
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
