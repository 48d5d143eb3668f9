//! Traces and metrics: spans exported over OTLP to a receiver in this process, continuing
//! the caller's `traceparent`; the Prometheus endpoint scraped after calls, due actions
//! and ledger writes.
//!
//! The span export is the process's global subscriber, installed by the first trace test
//! (as `main` installs it): a per-server dispatcher loses spans, because tracing closes a
//! parent through the default dispatcher of the thread that drops its last child, and the
//! SQLite driver drops children on its own worker threads. Other tests' spans reach the
//! receiver too; each assertion picks its own by trace id or ticket.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use servicelevel::api::pb;
use servicelevel::api::pb::alert_service_client::AlertServiceClient;
use servicelevel::api::pb::hours_service_client::HoursServiceClient;
use servicelevel::metrics::Metrics;
use servicelevel::server::ServeOptions;
use servicelevel::telemetry::{TraceConfig, Tracing, sink};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Request;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::fixtures::*;
use crate::harness::*;

const NY: chrono_tz::Tz = chrono_tz::America::New_York;

/// The service name the exported resource carries.
const SERVICE: &str = "servicelevel-under-test";

/// The receiver and the exporter of the process, on a runtime of their own (they outlive
/// every test's runtime), with the OpenTelemetry layer installed globally.
struct Exported {
    received: sink::Received,
    tracing: Tracing,
}

fn exported() -> &'static Exported {
    static EXPORTED: OnceLock<Exported> = OnceLock::new();
    EXPORTED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let (addr, received) = sink::start(true).await.expect("receiver starts");
                    let mut config = TraceConfig::new(format!("http://{addr}"));
                    config.service_name = Some(SERVICE.into());
                    config.scheduled_delay = Duration::from_millis(50);
                    config.max_queue_size = 65_536;
                    let tracing = Tracing::start(&config).expect("exporter starts");
                    tx.send((received, tracing)).expect("handed over");
                    std::future::pending::<()>().await;
                });
            })
            .expect("receiver thread");
        let (received, tracing) = rx.recv().expect("receiver and exporter");
        tracing_subscriber::registry()
            .with(tracing.layer())
            .try_init()
            .expect("the only global subscriber of the suite");
        Exported { received, tracing }
    })
}

/// A trace id and span id of a caller, fresh for each test.
fn caller() -> (String, String) {
    let trace = uuid::Uuid::now_v7().simple().to_string();
    let span = uuid::Uuid::now_v7().simple().to_string()[16..].to_string();
    (trace, span)
}

/// An always-open calendar, a policy with a 60-minute first response warned at 50 %, and
/// organisation `acme` on plan `gold`.
async fn desk(s: &TestServer) {
    create_calendar(s, "office", always_open("America/New_York")).await;
    let mut first = promise(
        "first_response",
        vec![on_received()],
        vec![on_event(pb::EventSignal::AgentResponded)],
        vec![target(&[], &[], &[], wall(60))],
    );
    first.targets[0].warning_percentages = vec![50];
    create_policy(
        s,
        "desk",
        pb::PolicyDefinition {
            clocks: vec![first],
            ..Default::default()
        },
    )
    .await;
    create_org(
        s,
        "acme",
        organization(
            "America/New_York",
            "gold",
            "desk",
            vec![binding("office", "office")],
            vec![],
        ),
    )
    .await;
}

/// Waits until the ticket has `n` events servicelevel recorded itself (the runner works
/// in the background).
async fn system_events(s: &TestServer, ticket: &str, n: usize) {
    let mut got = 0;
    for _ in 0..250 {
        got = get(s, ticket)
            .await
            .events
            .iter()
            .filter(|e| e.recorded_by == "servicelevel")
            .count();
        if got >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("expected {n} system events on {ticket}, got {got}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(span, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn with_traceparent<T>(msg: T, (trace, span): &(String, String)) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-{span}-01").parse().expect("ascii"),
    );
    r.metadata_mut()
        .insert("tracestate", "vendor=opaque".parse().expect("ascii"));
    r
}

async fn calls_continue_the_callers_trace(db: Db) {
    let db_kind = db;
    let exported = exported();
    let caller = caller();
    let (trace_id, caller_span) = (&caller.0, &caller.1);
    let s = TestServer::start(db, local(NY, 2026, 3, 12, 10, 0)).await;
    desk(&s).await;

    // CreateTicket and RecordEvent with the caller's traceparent.
    let created = s
        .tickets
        .clone()
        .create_ticket(with_traceparent(
            pb::CreateTicketRequest {
                ticket: Some(ticket(
                    "acme",
                    &rid("T"),
                    "task",
                    "",
                    local(NY, 2026, 3, 12, 10, 0),
                )),
                request_id: rid("tkt"),
            },
            &caller,
        ))
        .await
        .expect("created")
        .into_inner();
    s.tickets
        .clone()
        .record_event(with_traceparent(
            pb::RecordEventRequest {
                ticket: created.name.clone(),
                event: Some(event(
                    local(NY, 2026, 3, 12, 10, 5),
                    status(pb::TicketStatus::Confirmed),
                )),
            },
            &caller,
        ))
        .await
        .expect("recorded");
    // A call without one starts a trace of its own; a refused one records its code.
    let _ = get(&s, &created.name).await;
    let bad_name = rid("not-a-ticket");
    expect_code(
        s.tickets
            .clone()
            .get_ticket(with_traceparent(
                pb::GetTicketRequest {
                    name: bad_name.clone(),
                    ..Default::default()
                },
                &caller,
            ))
            .await,
        tonic::Code::InvalidArgument,
    );
    // The runner records the warning at 10:30: a due action, in a trace of its own.
    s.set_now(local(NY, 2026, 3, 12, 10, 31));
    system_events(&s, &created.name, 1).await;

    let id = created.name.trim_start_matches("tickets/").to_string();
    exported.tracing.flush(Duration::from_secs(5)).await;
    let ours = |spans: &[Span]| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| {
                hex(&s.trace_id) == *trace_id
                    || str_attr(s, "ticket").is_some_and(|t| t == created.name || t == id)
            })
            .cloned()
            .collect()
    };
    let all = exported
        .received
        .wait_for(Duration::from_secs(10), |spans| {
            let ours = ours(spans);
            [
                "servicelevel.v1.TicketService/CreateTicket",
                "servicelevel.v1.TicketService/RecordEvent",
                "sla.action",
                "due.run",
            ]
            .iter()
            .all(|n| !named(&ours, n).is_empty())
                && named(&ours, "servicelevel.v1.TicketService/GetTicket").len() >= 2
        })
        .await;
    let spans = ours(&all);
    let summary: Vec<(String, String, String)> = spans
        .iter()
        .map(|s| (s.name.clone(), hex(&s.trace_id), hex(&s.parent_span_id)))
        .collect();
    assert!(
        exported
            .received
            .service_names()
            .iter()
            .all(|n| n == SERVICE),
        "{:?}",
        exported.received.service_names()
    );
    assert!(
        exported.received.resources().iter().all(|r| r
            .iter()
            .any(|(k, v)| k == "service.version" && v == env!("CARGO_PKG_VERSION"))),
        "service.version on every resource: {:?}",
        exported.received.resources()
    );

    // The RPC spans continue the caller's trace, as children of its span.
    let record = named(&spans, "servicelevel.v1.TicketService/RecordEvent");
    assert_eq!(record.len(), 1, "one RecordEvent span: {summary:#?}");
    let record = record[0];
    assert_eq!(hex(&record.trace_id), *trace_id);
    assert_eq!(hex(&record.parent_span_id), *caller_span);
    assert_eq!(record.kind, 2, "a server span");
    // OpenTelemetry's RPC conventions (v1.37, the default).
    assert_eq!(str_attr(record, "rpc.system"), Some("grpc"));
    assert_eq!(
        str_attr(record, "rpc.service"),
        Some("servicelevel.v1.TicketService")
    );
    assert_eq!(str_attr(record, "rpc.method"), Some("RecordEvent"));
    assert_eq!(int_attr(record, "rpc.grpc.status_code"), Some(0));
    assert_eq!(str_attr(record, "rpc.response.status_code"), None);
    assert_eq!(str_attr(record, "ticket"), Some(created.name.as_str()));
    assert_eq!(record.trace_state, "vendor=opaque");

    let create = named(&spans, "servicelevel.v1.TicketService/CreateTicket");
    assert_eq!(create.len(), 1, "{summary:#?}");
    assert_eq!(hex(&create[0].trace_id), *trace_id);
    assert_eq!(hex(&create[0].parent_span_id), *caller_span);
    assert_eq!(
        str_attr(create[0], "organization"),
        Some("organizations/acme")
    );
    assert_eq!(int_attr(create[0], "rpc.grpc.status_code"), Some(0));

    let refused: Vec<&Span> = all
        .iter()
        .filter(|s| str_attr(s, "ticket") == Some(bad_name.as_str()))
        .collect();
    assert_eq!(refused.len(), 1, "the refused call");
    assert_eq!(hex(&refused[0].trace_id), *trace_id);
    assert_eq!(hex(&refused[0].parent_span_id), *caller_span);
    assert_eq!(int_attr(refused[0], "rpc.grpc.status_code"), Some(3));
    let own = named(&spans, "servicelevel.v1.TicketService/GetTicket")
        .into_iter()
        .find(|g| hex(&g.trace_id) != *trace_id)
        .expect("the call without traceparent");
    assert!(own.parent_span_id.is_empty(), "a root span: {own:#?}");

    // Database work inside the RPC, as its children.
    let db: Vec<&Span> = all
        .iter()
        .filter(|s| s.name.starts_with("db.") && s.parent_span_id == record.span_id)
        .collect();
    let names: Vec<&str> = db.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "db.begin",
        "db.lock_ticket",
        "db.append_event",
        "db.save_derived",
        "db.commit",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(db.iter().all(|s| s.trace_id == record.trace_id));
    // Calls to the database: client spans with the database conventions.
    let (system, address) = match db_kind {
        Db::Sqlite => ("sqlite", None),
        Db::Postgres => ("postgresql", Some(5432)),
    };
    for span in &db {
        assert_eq!(span.kind, 3, "a client span: {}", span.name);
        assert_eq!(str_attr(span, "db.system.name"), Some(system));
        assert_eq!(
            str_attr(span, "db.operation.name"),
            span.name.strip_prefix("db.")
        );
        assert!(str_attr(span, "db.namespace").is_some_and(|n| !n.is_empty()));
        if address.is_some() {
            assert!(str_attr(span, "server.address").is_some());
            assert!(
                int_attr(span, "server.port").is_some(),
                "{:?}",
                span.attributes
            );
        }
    }
    // No database span outside a request or due action (the runner's polling, say).
    for s in all.iter().filter(|s| s.name.starts_with("db.")) {
        assert!(!s.parent_span_id.is_empty(), "a root database span: {s:#?}");
    }

    // The due action: a span for the runner's settling of the ticket, and one for the
    // warning it recorded, both carrying the ticket.
    let action = named(&spans, "sla.action");
    assert_eq!(action.len(), 1, "{summary:#?}");
    let action = action[0];
    assert_eq!(str_attr(action, "ticket"), Some(id.as_str()));
    assert_eq!(str_attr(action, "action"), Some("warning"));
    assert_eq!(str_attr(action, "metric"), Some("first_response"));
    assert_eq!(int_attr(action, "lag_ms"), Some(60_000));
    let run = all
        .iter()
        .find(|s| s.span_id == action.parent_span_id)
        .expect("the action's parent span");
    assert_eq!(run.name, "due.run");
    assert_eq!(str_attr(run, "ticket"), Some(id.as_str()));
    assert_ne!(hex(&run.trace_id), *trace_id);
    // It links to the call that created the ticket, in the caller's trace.
    let create = named(&spans, "servicelevel.v1.TicketService/CreateTicket");
    assert_eq!(create.len(), 1, "{summary:#?}");
    let links: Vec<(String, String)> = run
        .links
        .iter()
        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
        .collect();
    assert_eq!(links, vec![(trace_id.clone(), hex(&create[0].span_id))]);
    assert!(
        all.iter()
            .any(|s| s.name == "db.append_event" && s.parent_span_id == action.span_id),
        "the action's write is its child"
    );
    s.stop().await;
}

/// `GET /metrics` over plain HTTP/1.1: the status line and the body.
async fn scrape(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    request(addr, path, "*/*").await
}

/// `GET /metrics` asking for `accept`.
async fn scrape_accepting(addr: std::net::SocketAddr, accept: &str) -> (String, String) {
    request(addr, "/metrics", accept).await
}

async fn request(addr: std::net::SocketAddr, path: &str, accept: &str) -> (String, String) {
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics endpoint");
    conn.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("request sent");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.expect("response");
    let raw = String::from_utf8(raw).expect("utf-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn expect_sample(text: &str, series: &str, value: f64) {
    assert_eq!(sample(text, series), Some(value), "{series} in:\n{text}");
}

async fn metrics_are_scraped(db: Db) {
    let metrics = Metrics::new();
    let (addr, endpoint) = servicelevel::metrics::spawn_http(
        "127.0.0.1:0".parse().expect("address"),
        std::sync::Arc::clone(&metrics),
    )
    .await
    .expect("metrics endpoint");
    let options = ServeOptions {
        metrics: Some(metrics),
        ..test_options()
    };
    let t0: DateTime<Utc> = local(NY, 2026, 3, 12, 10, 0);
    let s = TestServer::start_with(db, t0, options).await;
    desk(&s).await;
    let a = create_ticket(&s, ticket("acme", "M-1", "task", "", t0)).await;
    // Warning due 10:30, deadline 11:00: the runner records each 2 s late, as the test
    // clock jumps there.
    s.set_now(t0 + TimeDelta::minutes(30) + TimeDelta::seconds(2));
    system_events(&s, &a.name, 1).await;
    s.set_now(t0 + TimeDelta::minutes(50));
    let b = create_ticket(
        &s,
        ticket("acme", "M-2", "task", "", t0 + TimeDelta::minutes(50)),
    )
    .await;
    s.set_now(t0 + TimeDelta::minutes(60) + TimeDelta::seconds(2));
    system_events(&s, &a.name, 2).await;
    let _ = get(&s, &b.name).await;
    expect_code(
        s.tickets
            .clone()
            .get_ticket(Request::new(pb::GetTicketRequest {
                name: "nonsense".into(),
                ..Default::default()
            }))
            .await,
        tonic::Code::InvalidArgument,
    );
    // 50 then 30 minutes on a 60-minute monthly allowance, overage billed: 20 over.
    let mut h = HoursServiceClient::new(connect(s.addr).await);
    h.create_plan(Request::new(pb::CreatePlanRequest {
        plan_id: "gold".into(),
        plan: Some(pb::Plan {
            display_name: "Gold".into(),
            buckets: vec![pb::BucketTerms {
                bucket: "support".into(),
                period_unit: pb::PeriodUnit::Month as i32,
                allowance_minutes: 60,
                overage: Some(pb::OverageRule {
                    kind: Some(pb::overage_rule::Kind::Bill(pb::BillRate {
                        rate_minor_units_per_hour: 12_000,
                        currency: "USD".into(),
                    })),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        request_id: rid("plan"),
    }))
    .await
    .expect("plan");
    h.set_hours_contract(Request::new(pb::SetHoursContractRequest {
        contract: Some(pb::HoursContract {
            organization: "organizations/acme".into(),
            start_date: "2026-01-01".into(),
            assignments: vec![pb::PlanAssignment {
                plan: "plans/gold".into(),
                effective_date: "2026-01-01".into(),
            }],
            ..Default::default()
        }),
        request_id: rid("contract"),
    }))
    .await
    .expect("contract");
    for minutes in [50, 30] {
        h.record_usage(Request::new(pb::RecordUsageRequest {
            organization: "organizations/acme".into(),
            bucket: "support".into(),
            minutes,
            service_time: ts(t0),
            request_id: rid("use"),
            ..Default::default()
        }))
        .await
        .expect("usage");
    }
    // A live alert stream.
    let mut alerts = AlertServiceClient::new(connect(s.addr).await);
    let _stream = alerts
        .watch_alerts(Request::new(pb::WatchAlertsRequest {
            from_now: true,
            ..Default::default()
        }))
        .await
        .expect("stream")
        .into_inner();

    let (status, text) = scrape(addr, "/metrics").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let m = "servicelevel.v1.TicketService";
    expect_sample(
        &text,
        &format!("servicelevel_rpc_requests_total{{method=\"{m}/CreateTicket\",code=\"OK\"}}"),
        2.0,
    );
    expect_sample(
        &text,
        &format!(
            "servicelevel_rpc_requests_total{{method=\"{m}/GetTicket\",code=\"INVALID_ARGUMENT\"}}"
        ),
        1.0,
    );
    expect_sample(
        &text,
        &format!(
            "servicelevel_rpc_duration_seconds_bucket{{method=\"{m}/CreateTicket\",code=\"OK\",le=\"+Inf\"}}"
        ),
        2.0,
    );
    expect_sample(
        &text,
        &format!(
            "servicelevel_rpc_duration_seconds_count{{method=\"{m}/CreateTicket\",code=\"OK\"}}"
        ),
        2.0,
    );
    assert!(
        sample(
            &text,
            &format!(
                "servicelevel_rpc_duration_seconds_sum{{method=\"{m}/CreateTicket\",code=\"OK\"}}"
            )
        )
        .is_some_and(|v| v > 0.0)
    );
    // A running and a breached clock.
    expect_sample(
        &text,
        "servicelevel_clocks_active{metric=\"first_response\",state=\"running\"}",
        1.0,
    );
    expect_sample(
        &text,
        "servicelevel_clocks_active{metric=\"first_response\",state=\"breached\"}",
        1.0,
    );
    expect_sample(
        &text,
        "servicelevel_clock_warnings_total{metric=\"first_response\",tier=\"gold\"}",
        1.0,
    );
    expect_sample(
        &text,
        "servicelevel_clock_breaches_total{metric=\"first_response\",tier=\"gold\"}",
        1.0,
    );
    // Each action recorded 2 s after its due instant.
    for action in ["warning", "breach"] {
        expect_sample(
            &text,
            &format!("servicelevel_due_action_lag_seconds_bucket{{action=\"{action}\",le=\"1\"}}"),
            0.0,
        );
        expect_sample(
            &text,
            &format!(
                "servicelevel_due_action_lag_seconds_bucket{{action=\"{action}\",le=\"2.5\"}}"
            ),
            1.0,
        );
        expect_sample(
            &text,
            &format!("servicelevel_due_action_lag_seconds_sum{{action=\"{action}\"}}"),
            2.0,
        );
    }
    expect_sample(
        &text,
        "servicelevel_hours_consumed_minutes_total{bucket=\"support\"}",
        80.0,
    );
    expect_sample(
        &text,
        "servicelevel_hours_overage_minutes_total{bucket=\"support\"}",
        20.0,
    );
    // The same in base units, under the names that replace those.
    expect_sample(
        &text,
        "servicelevel_usage_billable_seconds_total{bucket=\"support\"}",
        4800.0,
    );
    expect_sample(
        &text,
        "servicelevel_usage_overage_seconds_total{bucket=\"support\"}",
        1200.0,
    );
    // The policy's metric on every known tier, at zero before anything happened there.
    expect_sample(
        &text,
        "servicelevel_clock_breaches_total{metric=\"first_response\",tier=\"none\"}",
        0.0,
    );
    expect_sample(
        &text,
        &format!(
            "servicelevel_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        ),
        1.0,
    );
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    expect_sample(&text, "servicelevel_alert_watchers", 1.0);
    expect_sample(&text, "servicelevel_alerts_outbox_backlog", 0.0);
    expect_sample(&text, "servicelevel_store_gauges_up", 1.0);
    expect_sample(&text, "servicelevel_db_pool_max_connections", 8.0);
    assert!(sample(&text, "servicelevel_db_pool_connections{state=\"idle\"}").is_some());
    // Tracing is off here: no span counters.
    assert!(!text.contains("servicelevel_trace_spans"));
    // Every line is a comment or `name{labels} value`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        assert!(value.parse::<f64>().is_ok(), "{line}");
        assert!(
            series.starts_with("servicelevel_") || series.starts_with("process_"),
            "{line}"
        );
    }
    // OpenMetrics for a scraper that asks for it.
    let (status, open) = scrape_accepting(addr, "application/openmetrics-text;version=1.0.0").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(open.contains("# TYPE servicelevel_rpc_requests counter"));
    let (status, _) = scrape(addr, "/other").await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    endpoint.abort();
    s.stop().await;
}

/// The real binary, configured only by the standard variables, exports its spans with
/// the conventional attributes over OTLP/gRPC and over OTLP/HTTP with protobuf, in plain
/// text and over TLS (a collector certificate from `OTEL_EXPORTER_OTLP_CERTIFICATE`'s
/// CA), following the RPC conventions `OTEL_SEMCONV_STABILITY_OPT_IN` chooses: v1.37's
/// by default, the stable ones with `rpc`, both with `rpc/dup`.
async fn a_process_exports_over_both_protocols(db: Db) {
    use servicelevel::telemetry::Protocol;
    use std::process::{Command, Stdio};
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs");
    let read = |name: &str| std::fs::read(certs.join(name)).expect("test certificate");
    for (protocol, opt_in, tls) in [
        ("grpc", "", false),
        ("http/protobuf", "rpc/dup", false),
        ("grpc", "rpc", true),
        ("http/protobuf", "", true),
    ] {
        let kind = if protocol == "grpc" {
            Protocol::Grpc
        } else {
            Protocol::HttpProtobuf
        };
        let identity = tls.then(|| (read("server.crt"), read("server.key")));
        let (sink, received) = sink::start_with(kind, true, identity)
            .await
            .expect("receiver");
        let scheme = if tls { "https" } else { "http" };
        let fresh = fresh_database(db).await;
        let port = crate::replicas::free_port();
        let _process = crate::replicas::Replica(
            Command::new(env!("CARGO_BIN_EXE_servicelevel"))
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .env("SERVICELEVEL_DATABASE_URL", &fresh.url)
                .env("SERVICELEVEL_MIGRATION_DATABASE_URL", &fresh.direct_url)
                .env("RUST_LOG", "warn")
                .env(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("{scheme}://localhost:{}", sink.port()),
                )
                // The test CA: the collector's certificate is not a public one.
                .env("OTEL_EXPORTER_OTLP_CERTIFICATE", certs.join("ca.crt"))
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
                .env("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
                .env("OTEL_SERVICE_NAME", "servicelevel-process")
                .env("OTEL_BSP_SCHEDULE_DELAY", "50")
                .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .env_remove("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .stdout(Stdio::null())
                .spawn()
                .expect("servicelevel starts"),
        );
        let channel = {
            let mut channel = None;
            for _ in 0..300 {
                if let Ok(ch) =
                    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                        .expect("endpoint")
                        .connect()
                        .await
                {
                    channel = Some(ch);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            channel.expect("the process listens")
        };
        CalendarServiceClient::new(channel.clone())
            .create_calendar(Request::new(pb::CreateCalendarRequest {
                calendar_id: "office".into(),
                calendar: Some(pb::Calendar {
                    display_name: "Office".into(),
                    definition: Some(always_open("UTC")),
                    ..Default::default()
                }),
                request_id: rid("cal"),
            }))
            .await
            .expect("created");
        let create = "servicelevel.v1.CalendarService/CreateCalendar";
        let spans = received
            .wait_for(Duration::from_secs(15), |spans| {
                let call = spans.iter().find(|s| s.name == create);
                call.is_some_and(|c| spans.iter().any(|s| s.parent_span_id == c.span_id))
            })
            .await;
        let call = spans
            .iter()
            .find(|s| s.name == create)
            .unwrap_or_else(|| panic!("{protocol} (TLS {tls}): no {create} span in {spans:#?}"));
        assert_eq!(call.kind, 2, "{protocol}: a server span");
        if opt_in == "rpc" {
            assert_eq!(str_attr(call, "rpc.system.name"), Some("grpc"));
            assert_eq!(str_attr(call, "rpc.method"), Some(create));
            assert_eq!(str_attr(call, "rpc.response.status_code"), Some("OK"));
            assert_eq!(str_attr(call, "rpc.system"), None, "the old ones left out");
            assert_eq!(int_attr(call, "rpc.grpc.status_code"), None);
        } else if opt_in.is_empty() {
            assert_eq!(str_attr(call, "rpc.system"), Some("grpc"));
            assert_eq!(
                str_attr(call, "rpc.service"),
                Some("servicelevel.v1.CalendarService")
            );
            assert_eq!(str_attr(call, "rpc.method"), Some("CreateCalendar"));
            assert_eq!(int_attr(call, "rpc.grpc.status_code"), Some(0));
            assert_eq!(str_attr(call, "rpc.system.name"), None);
        } else {
            // Both sets; rpc.method, which both name, carries the stable value.
            assert_eq!(str_attr(call, "rpc.system"), Some("grpc"));
            assert_eq!(int_attr(call, "rpc.grpc.status_code"), Some(0));
            assert_eq!(str_attr(call, "rpc.system.name"), Some("grpc"));
            assert_eq!(str_attr(call, "rpc.method"), Some(create));
            assert_eq!(str_attr(call, "rpc.response.status_code"), Some("OK"));
        }
        let db_span = spans
            .iter()
            .find(|s| s.parent_span_id == call.span_id && s.name.starts_with("db."))
            .unwrap_or_else(|| panic!("{protocol}: no database span under the call"));
        assert_eq!(db_span.kind, 3, "a client span");
        assert!(str_attr(db_span, "db.system.name").is_some());
        assert!(str_attr(db_span, "db.operation.name").is_some());
        let resources = received.resources();
        assert!(
            resources.iter().all(|r| {
                r.contains(&("service.name".into(), "servicelevel-process".into()))
                    && r.contains(&("service.version".into(), env!("CARGO_PKG_VERSION").into()))
            }),
            "{resources:?}"
        );
        drop(_process);
        fresh.remove().await;
    }
}

crate::on_both_stores!(
    calls_continue_the_callers_trace,
    metrics_are_scraped,
    a_process_exports_over_both_protocols
);
