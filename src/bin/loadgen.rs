//! Load generator: drives create, record-event and deadline-query traffic against a
//! servicelevel server with N concurrent clients and prints throughput and latency
//! percentiles. `cargo run --release --bin loadgen -- --help`.
//!
//! With `--serve-db URL` it starts the server in-process on a free port first (the
//! database is migrated); otherwise it talks to `--target`.

// glibc's malloc was a fifth of the server's CPU under load (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use clap::{Parser, ValueEnum};
use servicelevel::api::pb;
use servicelevel::api::pb::calendar_service_client::CalendarServiceClient;
use servicelevel::api::pb::connection_service_client::ConnectionServiceClient;
use servicelevel::api::pb::deadline_service_client::DeadlineServiceClient;
use servicelevel::api::pb::hours_service_client::HoursServiceClient;
use servicelevel::api::pb::organization_service_client::OrganizationServiceClient;
use servicelevel::api::pb::policy_service_client::PolicyServiceClient;
use servicelevel::api::pb::ticket_service_client::TicketServiceClient;
use servicelevel::store::SqlStore;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The bearer token every call carries, when the server runs with authentication.
static TOKEN: std::sync::OnceLock<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
    std::sync::OnceLock::new();

type Authorize = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

fn authorize(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    if let Some(t) = TOKEN.get() {
        req.metadata_mut().insert("authorization", t.clone());
    }
    Ok(req)
}

/// A connection whose calls carry the token, if there is one.
type Ch = InterceptedService<Channel, Authorize>;

fn ch(c: Channel) -> Ch {
    InterceptedService::new(c, authorize as Authorize)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// RecordEvent on pre-created tickets (the hot write path).
    RecordEvent,
    /// The standard health check: an RPC through the same server stack that does no
    /// work and reads no database. Its rate is the ceiling the server, the generator and
    /// the shared cores allow any RPC here.
    Empty,
    /// CreateTicket.
    Create,
    /// ListDueClocks for the next hour.
    DueQuery,
    /// 10 % create, 80 % record-event, 10 % due-query.
    Mixed,
    /// Bulk-insert tickets with running clocks straight into the database (setup for
    /// due-query at scale), then exit.
    SeedClocks,
    /// RecordUsage, every client on the same hour account.
    UsageHot,
    /// RecordUsage spread over `--accounts` hour accounts.
    UsageSpread,
    /// Write `--seed-orgs` organisations with hours contracts and `--entries-per-org`
    /// ledger entries each straight into the database, then exit.
    SeedHours,
    /// One ExportStatements call over everything in the database, timed.
    Export,
    /// Helpdesk webhooks in: signed Standard Webhooks deliveries (ticket snapshots over
    /// `--tickets-per-client` tickets a client) POSTed over HTTP/1.1; reports the
    /// ingestion rate and, from the inbox, the delay from kept to applied.
    Webhooks,
    /// Due-time actions: tickets whose deadlines fall `--due-per-minute` a minute over
    /// `--duration` seconds; the lag from each due instant to its recorded breach, read
    /// from the alert stream.
    DueLag,
}

/// How the measured calls travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// gRPC over HTTP/2.
    Grpc,
    /// Connect with JSON over HTTP/1.1 (one keep-alive connection per client), as a CRM
    /// without a gRPC stack calls; the setup calls stay gRPC.
    ConnectJson,
}

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Load generator for servicelevel")]
struct Args {
    /// Server to drive.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// Start the server in-process on this database instead (migrated first).
    #[arg(long)]
    serve_db: Option<String>,
    /// Database for `seed-clocks` (defaults to --serve-db).
    #[arg(long)]
    db: Option<String>,
    #[arg(long, value_enum, default_value = "record-event")]
    scenario: Scenario,
    /// The protocol of the measured calls (record-event, usage-hot, usage-spread).
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Protocol,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of measured traffic.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds of unmeasured warm-up.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Total request rate (per second) across clients, open loop; 0 = as fast as possible
    /// (closed loop). With a rate, latency counts from each request's intended start, so
    /// a stall is not hidden (no coordinated omission).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Tickets each client creates before a record-event run.
    #[arg(long, default_value_t = 100)]
    tickets_per_client: usize,
    /// Tickets for `seed-clocks`.
    #[arg(long, default_value_t = 1_000_000)]
    seed_tickets: u64,
    /// Hour accounts for `usage-spread`.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// Organisations for `seed-hours`.
    #[arg(long, default_value_t = 10_000)]
    seed_orgs: usize,
    /// Ledger entries per organisation for `seed-hours`.
    #[arg(long, default_value_t = 50)]
    entries_per_org: usize,
    /// Pool size of the in-process server.
    #[arg(long, default_value_t = 16)]
    max_connections: u32,
    /// Export the in-process server's traces to an OTLP receiver started in this process
    /// (it counts the spans). Without it the `OTEL_*` variables apply (an endpoint set
    /// there exports there; none: tracing off).
    #[arg(long)]
    otlp_sink: bool,
    /// Time every span the in-process server makes (each RPC, and each store call inside
    /// it: `db.claim`, `db.lock_account`, ...) and print, per span name, how many there
    /// were and their mean wall time: where a call's time goes. Not with `--otlp-sink`.
    #[arg(long)]
    span_times: bool,
    /// Run the in-process server with authentication required, every call carrying the
    /// bearer token of a client with every scope (measures what authentication costs).
    #[arg(long)]
    auth: bool,
    /// Deadlines per minute for `due-lag`.
    #[arg(long, default_value_t = 10_000)]
    due_per_minute: u64,
    /// With `due-lag`: also deliver the breaches as alert webhooks to a receiver in this
    /// process that answers after this many milliseconds, and report the delay from each
    /// alert's recording to its arrival.
    #[arg(long)]
    webhook_receiver_ms: Option<u64>,
    /// The in-process server's inbox concurrency (`serve --inbox-concurrency`).
    #[arg(long, default_value_t = 8)]
    inbox_concurrency: usize,
    /// Seconds from the start of a `due-lag` run to the first deadline (the tickets are
    /// created in between).
    #[arg(long, default_value_t = 45)]
    lead: u64,
}

/// A client's HTTP/1.1 connection for Connect calls.
struct Http1 {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<prost::bytes::Bytes>>,
    authority: String,
}

impl Http1 {
    async fn open(target: &str) -> Result<Http1, String> {
        let authority = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Http1 { sender, authority })
    }

    /// A Connect JSON call of `message`, as the JSON a CRM would send.
    async fn call(&mut self, path: &str, message: &impl prost::Message) -> Result<(), String> {
        use http_body_util::BodyExt as _;
        let registry = registry();
        let desc = registry
            .method(path)
            .ok_or_else(|| format!("no method {path}"))?
            .input();
        let json = servicelevel::http::Registry::to_json(&desc, &message.encode_to_vec())?;
        let mut req = http::Request::post(path)
            .header("host", &self.authority)
            .header("content-type", "application/json");
        if let Some(t) = TOKEN.get() {
            req = req.header("authorization", t.as_bytes());
        }
        let req = req
            .body(http_body_util::Full::new(prost::bytes::Bytes::from(json)))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
        }
    }
}

/// The load generator's webhook connection and its Standard Webhooks secret.
const WEBHOOK_CONNECTION: &str = "lg-wh";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

impl Http1 {
    /// A signed snapshot of ticket `external_id`, as a generic source sends it.
    async fn webhook(&mut self, external_id: &str, status: &str, id: &str) -> Result<(), String> {
        use http_body_util::BodyExt as _;
        use servicelevel::domain::signing::{SigningSecret, standard};
        let now = Utc::now();
        let body = serde_json::to_vec(&serde_json::json!({
            "external_id": external_id, "status": status, "request_type": "incident",
            "updated_time": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }))
        .map_err(|e| e.to_string())?;
        let secret = SigningSecret::parse(WEBHOOK_SECRET)?;
        let signature = standard::sign(&secret, id, now.timestamp(), &body);
        let req = http::Request::post(format!("/webhooks/v1/{WEBHOOK_CONNECTION}"))
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", now.timestamp().to_string())
            .header("webhook-signature", signature)
            .body(http_body_util::Full::new(prost::bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
        }
    }
}

/// The webhook scenario's organisation and connection.
async fn setup_webhooks(channel: Ch) -> Result<(), String> {
    ok_or_exists(
        OrganizationServiceClient::new(channel.clone())
            .create_organization(desk_org(
                "lg-wh".into(),
                "Webhooks".into(),
                "Europe/London",
                "lg-setup-wh-org".into(),
            ))
            .await
            .map(|_| ()),
    )?;
    let statuses = [
        ("open", pb::TicketStatus::Processing),
        ("pending", pb::TicketStatus::RequiresDeliverables),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v as i32))
    .collect();
    ok_or_exists(
        ConnectionServiceClient::new(channel)
            .create_connection(pb::CreateConnectionRequest {
                connection_id: WEBHOOK_CONNECTION.into(),
                connection: Some(pb::Connection {
                    display_name: "Load".into(),
                    organization: "organizations/lg-wh".into(),
                    provider: pb::Provider::Generic as i32,
                    source_system: "lg-wh".into(),
                    mapping: Some(pb::Mapping {
                        statuses,
                        default_request_type: "incident".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                secrets: vec![WEBHOOK_SECRET.into()],
                request_id: "lg-setup-wh-conn".into(),
            })
            .await
            .map(|_| ()),
    )
}

/// After a webhook run: waits for the inbox to drain, then reports the delay from kept
/// to applied of the deliveries kept in the measured window.
async fn webhook_lags(
    channel: Ch,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(), String> {
    let mut c = ConnectionServiceClient::new(channel);
    let drained_from = Instant::now();
    let rows = loop {
        let mut rows = Vec::new();
        let mut token = String::new();
        loop {
            let page = c
                .list_inbox_deliveries(pb::ListInboxDeliveriesRequest {
                    parent: format!("connections/{WEBHOOK_CONNECTION}"),
                    page_size: 1000,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            rows.extend(page.deliveries);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let pending = rows
            .iter()
            .filter(|d| d.state == pb::InboxDeliveryState::Pending as i32)
            .count();
        if pending == 0 || drained_from.elapsed() > Duration::from_secs(120) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let at = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32))
    };
    let mut lags: Vec<u64> = rows
        .iter()
        .filter_map(|d| Some((at(&d.receive_time)?, at(&d.done_time)?)))
        .filter(|(r, _)| *r >= from && *r < until)
        .map(|(r, d)| (d - r).num_microseconds().unwrap_or(0).max(0) as u64)
        .collect();
    lags.sort_unstable();
    let count = |s: pb::InboxDeliveryState| rows.iter().filter(|d| d.state == s as i32).count();
    println!(
        "inbox: {} deliveries; applied={} stale={} failed={} pending={}; drained {:.1}s after the run",
        rows.len(),
        count(pb::InboxDeliveryState::Applied),
        count(pb::InboxDeliveryState::Stale),
        count(pb::InboxDeliveryState::Failed),
        count(pb::InboxDeliveryState::Pending),
        drained_from.elapsed().as_secs_f64()
    );
    println!(
        "kept-to-applied ({} in the window): p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        lags.len(),
        percentile(&lags, 0.50),
        percentile(&lags, 0.90),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0)
    );
    Ok(())
}

fn registry() -> &'static servicelevel::http::Registry {
    static REGISTRY: std::sync::OnceLock<servicelevel::http::Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        servicelevel::http::Registry::new()
            .unwrap_or_else(|_| servicelevel::http::Registry::empty())
    })
}

struct Clients {
    /// Set with `--protocol connect-json`.
    http: Option<Http1>,
    tickets: TicketServiceClient<Ch>,
    deadlines: DeadlineServiceClient<Ch>,
    hours: HoursServiceClient<Ch>,
    health: tonic_health::pb::health_client::HealthClient<Ch>,
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    })
}

fn rid(prefix: &str, run: &str, n: u64) -> String {
    format!("{prefix}-{run}-{n}")
}

/// A setup call's outcome: done now, or done by an earlier run.
fn ok_or_exists(r: Result<(), tonic::Status>) -> Result<(), String> {
    match r {
        Ok(()) => Ok(()),
        Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(s) => Err(s.to_string()),
    }
}

/// An organisation on the load generator's desk policy and support calendar.
fn desk_org(
    id: String,
    display_name: String,
    zone: &str,
    request_id: String,
) -> pb::CreateOrganizationRequest {
    pb::CreateOrganizationRequest {
        organization_id: id,
        organization: Some(pb::Organization {
            display_name,
            time_zone: zone.into(),
            policy: "policies/lg-desk".into(),
            calendars: vec![pb::CalendarBinding {
                slot: "support".into(),
                calendar: "calendars/lg-support".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        request_id,
    }
}

/// The catalogue every run uses: a support calendar, a policy with three clocks, ten
/// organisations. Creating them again is a no-op (fixed request ids).
async fn setup(channel: Ch) -> Result<(), String> {
    let mut cal = CalendarServiceClient::new(channel.clone());
    let mut pol = PolicyServiceClient::new(channel.clone());
    let mut org = OrganizationServiceClient::new(channel);
    let day = |d: i32| pb::DayHours {
        day: d,
        windows: vec![pb::OpeningWindow {
            open: "08:00".into(),
            close: "18:30".into(),
        }],
    };
    ok_or_exists(
        cal.create_calendar(pb::CreateCalendarRequest {
            calendar_id: "lg-support".into(),
            calendar: Some(pb::Calendar {
                display_name: "Load support".into(),
                definition: Some(pb::CalendarDefinition {
                    time_zone: "America/Toronto".into(),
                    weekly_hours: (1..=5).map(day).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request_id: "lg-setup-cal".into(),
        })
        .await
        .map(|_| ()),
    )?;
    let trig = |k: pb::trigger::Kind| pb::Trigger { kind: Some(k) };
    let target = |p: &str, d: pb::duration::Kind, warn: Vec<i32>| pb::Target {
        applies: Some(pb::Applicability {
            priorities: if p.is_empty() { vec![] } else { vec![p.into()] },
            ..Default::default()
        }),
        duration: Some(pb::Duration { kind: Some(d) }),
        warning_percentages: warn,
        ..Default::default()
    };
    let minutes = |m| {
        pb::duration::Kind::BusinessMinutes(pb::BusinessMinutesDuration {
            calendar: "support".into(),
            minutes: m,
        })
    };
    let days = |d| {
        pb::duration::Kind::BusinessDays(pb::BusinessDaysDuration {
            calendar: "support".into(),
            days: d,
            mode: pb::BusinessDayMode::SameTime as i32,
        })
    };
    ok_or_exists(
        pol.create_policy(pb::CreatePolicyRequest {
            policy_id: "lg-desk".into(),
            policy: Some(pb::Policy {
                display_name: "Load desk".into(),
                definition: Some(pb::PolicyDefinition {
                    priorities: vec!["sev-1".into(), "sev-2".into()],
                    clocks: vec![
                        pb::ClockDefinition {
                            metric: "first_response".into(),
                            kind: pb::ClockKind::Promise as i32,
                            start: vec![trig(pb::trigger::Kind::Received(()))],
                            stop: vec![trig(pb::trigger::Kind::Event(
                                pb::EventSignal::AgentResponded as i32,
                            ))],
                            targets: vec![
                                target("sev-1", minutes(60), vec![50]),
                                target("sev-2", minutes(240), vec![75]),
                            ],
                            ..Default::default()
                        },
                        pb::ClockDefinition {
                            metric: "resolution".into(),
                            kind: pb::ClockKind::Promise as i32,
                            start: vec![trig(pb::trigger::Kind::CycleStarted(()))],
                            stop: vec![trig(pb::trigger::Kind::EnteredStatus(
                                pb::TicketStatus::Resolved as i32,
                            ))],
                            targets: vec![target("", days(2), vec![50, 90])],
                            ..Default::default()
                        },
                        pb::ClockDefinition {
                            metric: "escalation".into(),
                            kind: pb::ClockKind::Timer as i32,
                            start: vec![trig(pb::trigger::Kind::Received(()))],
                            stop: vec![trig(pb::trigger::Kind::EnteredStatus(
                                pb::TicketStatus::Resolved as i32,
                            ))],
                            targets: vec![pb::Target {
                                on_due: Some(pb::DueAction {
                                    kind: Some(pb::due_action::Kind::EscalateToLevel(1)),
                                }),
                                ..target("", minutes(480), vec![])
                            }],
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request_id: "lg-setup-pol".into(),
        })
        .await
        .map(|_| ()),
    )?;
    for i in 0..10 {
        ok_or_exists(
            org.create_organization(desk_org(
                format!("lg-org-{i}"),
                format!("Load org {i}"),
                "America/Toronto",
                format!("lg-setup-org-{i}"),
            ))
            .await
            .map(|_| ()),
        )?;
    }
    Ok(())
}

async fn create_ticket(
    c: &mut Clients,
    run: &str,
    n: u64,
    received: DateTime<Utc>,
) -> Result<String, tonic::Status> {
    let t = c
        .tickets
        .create_ticket(pb::CreateTicketRequest {
            ticket: Some(pb::Ticket {
                organization: format!("organizations/lg-org-{}", n % 10),
                source_system: "loadgen".into(),
                external_id: format!("{run}-{n}"),
                request_type: "incident".into(),
                priority: if n.is_multiple_of(2) {
                    "sev-1"
                } else {
                    "sev-2"
                }
                .into(),
                received_time: ts(received),
                ..Default::default()
            }),
            request_id: rid("t", run, n),
        })
        .await?;
    Ok(t.into_inner().name)
}

/// A legal, endless cycle of events: every transition is allowed from the one before.
fn next_event(step: u64) -> pb::ticket_event::Kind {
    use pb::ticket_event::Kind;
    let status = |s: pb::TicketStatus| {
        Kind::StatusChange(pb::StatusChange {
            status: s as i32,
            reason: String::new(),
        })
    };
    match step % 4 {
        0 => status(pb::TicketStatus::Processing),
        1 => Kind::CustomerReply(()),
        2 => status(pb::TicketStatus::RequiresDeliverables),
        _ => Kind::AgentResponse(()),
    }
}

struct Recorder {
    latencies: Vec<u64>,
    errors: u64,
}

#[derive(Clone, Copy)]
enum Op {
    Webhook,
    Create,
    Record,
    Due,
    Usage,
    Empty,
}

/// When a client's traffic starts, when its measurements start, when it stops.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure_from: Instant,
    until: Instant,
}

async fn client_loop(
    id: usize,
    mut c: Clients,
    args: Arc<Args>,
    run: Arc<String>,
    window: Window,
    counter: Arc<AtomicU64>,
) -> Recorder {
    // Tickets received now, events recorded as they happen, as a CRM sends them. (Events
    // stamped in the past would land before the actions the due-time runner recorded
    // and retract and re-record them: a different, heavier workload.)
    let base = Utc::now();
    let mut tickets = Vec::new();
    if matches!(args.scenario, Scenario::RecordEvent | Scenario::Mixed) {
        for k in 0..args.tickets_per_client {
            let n = (id * 1_000_000 + k) as u64;
            match create_ticket(&mut c, &run, n, base).await {
                Ok(name) => tickets.push((name, 0u64)),
                Err(e) => eprintln!("setup ticket failed: {e}"),
            }
        }
    }
    let mut rec = Recorder {
        latencies: Vec::new(),
        errors: 0,
    };
    let per_client_rate = if args.rate > 0.0 {
        args.rate / args.clients as f64
    } else {
        0.0
    };
    let mut i: u64 = 0;
    let mut rng = (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // Each client starts its paced schedule when the warm-up begins.
    let Window {
        start,
        measure_from,
        until,
    } = window;
    let paced_start = Instant::now().max(start);
    loop {
        let intended = if per_client_rate > 0.0 {
            let at = paced_start + Duration::from_secs_f64(i as f64 / per_client_rate);
            let now = Instant::now();
            if at > now {
                tokio::time::sleep(at - now).await;
            }
            at
        } else {
            Instant::now()
        };
        if intended >= until {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let op = match args.scenario {
            Scenario::RecordEvent => Op::Record,
            Scenario::Empty => Op::Empty,
            Scenario::Create => Op::Create,
            Scenario::DueQuery => Op::Due,
            Scenario::Mixed => match rng % 10 {
                0 => Op::Create,
                1 => Op::Due,
                _ => Op::Record,
            },
            Scenario::UsageHot | Scenario::UsageSpread => Op::Usage,
            Scenario::Webhooks => Op::Webhook,
            Scenario::SeedClocks | Scenario::SeedHours | Scenario::Export | Scenario::DueLag => {
                break;
            }
        };
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let result = match op {
            Op::Create => create_ticket(&mut c, &run, 500_000_000 + n, base)
                .await
                .map(|_| ()),
            Op::Record if !tickets.is_empty() => {
                let k = (i as usize) % tickets.len();
                let (name, step) = &mut tickets[k];
                *step += 1;
                let at = Utc::now();
                let req = pb::RecordEventRequest {
                    ticket: name.clone(),
                    event: Some(pb::TicketEvent {
                        occurred_time: ts(at),
                        kind: Some(next_event(*step - 1)),
                        request_id: rid("e", &run, n),
                        ..Default::default()
                    }),
                };
                match &mut c.http {
                    Some(h) => h
                        .call("/servicelevel.v1.TicketService/RecordEvent", &req)
                        .await
                        .map_err(tonic::Status::unknown),
                    None => c.tickets.record_event(req).await.map(|_| ()),
                }
            }
            Op::Record => Ok(()),
            Op::Empty => c
                .health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(|_| ()),
            Op::Webhook => match &mut c.http {
                Some(h) => {
                    let k = (i as usize) % args.tickets_per_client.max(1);
                    let status =
                        ["open", "pending"][(i as usize / args.tickets_per_client.max(1)) % 2];
                    h.webhook(&format!("{run}-{id}-{k}"), status, &rid("w", &run, n))
                        .await
                        .map_err(tonic::Status::unknown)
                }
                None => Ok(()),
            },
            Op::Usage => {
                let account = if args.scenario == Scenario::UsageHot {
                    0
                } else {
                    (rng % args.accounts as u64) as usize
                };
                let req = pb::RecordUsageRequest {
                    organization: format!("organizations/lg-h-{account}"),
                    bucket: "customer_success".into(),
                    minutes: 1 + (rng % 60) as i32,
                    service_time: ts(Utc::now() - TimeDelta::minutes(1)),
                    request_id: rid("u", &run, n),
                    ..Default::default()
                };
                match &mut c.http {
                    Some(h) => h
                        .call("/servicelevel.v1.HoursService/RecordUsage", &req)
                        .await
                        .map_err(tonic::Status::unknown),
                    None => c.hours.record_usage(req).await.map(|_| ()),
                }
            }
            Op::Due => {
                let now = Utc::now();
                c.deadlines
                    .list_due_clocks(pb::ListDueClocksRequest {
                        from_time: ts(now),
                        to_time: ts(now + TimeDelta::hours(1)),
                        page_size: 50,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
            }
        };
        let done = Instant::now();
        if intended >= measure_from {
            match result {
                Ok(()) => rec.latencies.push((done - intended).as_micros() as u64),
                Err(e) => {
                    rec.errors += 1;
                    if rec.errors <= 3 {
                        eprintln!("client {id}: {e}");
                    }
                }
            }
        }
        i += 1;
    }
    rec
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn seed_clocks(url: &str, n: u64) -> Result<(), String> {
    let store = SqlStore::connect(url, 2).await.map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let now_us = Utc::now().timestamp_micros();
    let postgres = url.starts_with("postgres");
    let series = if postgres {
        format!("SELECT g FROM generate_series(1, {n}) g")
    } else {
        format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) SELECT g FROM s"
        )
    };
    let concat = |a: &str, b: &str| format!("{a} || CAST({b} AS TEXT)");
    // Deadlines spread one per second over the next 30 days: about 1,400 in any hour.
    let tickets = format!(
        "INSERT INTO tickets (id, organization, source_system, external_id, request_type, initial_priority, \
         received_us, requested_by, initial_estimate_minutes, initial_scheduled_us, policy, policy_version, plan, \
         status, cycle, priority, next_change_us, create_us, update_us) \
         SELECT {id}, {org}, 'bulk', {ext}, 'incident', 'sev-2', {now_us}, NULL, NULL, NULL, 'lg-desk', 1, NULL, \
         'PROCESSING', 0, 'sev-2', NULL, {now_us}, {now_us} FROM ({series}) q",
        id = concat("'bulk-'", "g"),
        org = concat("'lg-org-'", "g % 10"),
        ext = concat("'b'", "g"),
    );
    let clocks = format!(
        "INSERT INTO clocks (ticket_id, metric, instance, organization, priority, kind, state, active, started_us, \
         deadline_us, warning_us) SELECT {id}, 'first_response', 0, {org}, 'sev-2', 'promise', 'running', 1, \
         {now_us}, {now_us} + (g % 2592000) * CAST(1000000 AS BIGINT), NULL FROM ({series}) q",
        id = concat("'bulk-'", "g"),
        org = concat("'lg-org-'", "g % 10"),
    );
    let t = Instant::now();
    store
        .execute_raw(&tickets)
        .await
        .map_err(|e| e.to_string())?;
    store
        .execute_raw(&clocks)
        .await
        .map_err(|e| e.to_string())?;
    if postgres {
        store
            .execute_raw("ANALYZE tickets; ANALYZE clocks")
            .await
            .map_err(|e| e.to_string())?;
    }
    println!(
        "seeded {n} tickets with running clocks in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn hours_plan() -> pb::Plan {
    pb::Plan {
        display_name: "Load hours".into(),
        buckets: vec![pb::BucketTerms {
            bucket: "customer_success".into(),
            period_unit: pb::PeriodUnit::Month as i32,
            allowance_minutes: 600,
            rounding_increment_minutes: 15,
            overage: Some(pb::OverageRule {
                kind: Some(pb::overage_rule::Kind::Bill(pb::BillRate {
                    rate_minor_units_per_hour: 8_500,
                    currency: "GBP".into(),
                })),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Organisations `lg-h-0..n` on a billed 10-hour plan (billed, so nothing is refused and
/// every call writes).
async fn setup_hours(channel: Ch, n: usize) -> Result<(), String> {
    let mut h = HoursServiceClient::new(channel.clone());
    let mut org = OrganizationServiceClient::new(channel);
    ok_or_exists(
        h.create_plan(pb::CreatePlanRequest {
            plan_id: "lg-hours".into(),
            plan: Some(hours_plan()),
            request_id: "lg-setup-plan".into(),
        })
        .await
        .map(|_| ()),
    )?;
    for i in 0..n {
        ok_or_exists(
            org.create_organization(desk_org(
                format!("lg-h-{i}"),
                format!("Hours {i}"),
                "Europe/London",
                format!("lg-setup-horg-{i}"),
            ))
            .await
            .map(|_| ()),
        )?;
        h.set_hours_contract(pb::SetHoursContractRequest {
            contract: Some(pb::HoursContract {
                organization: format!("organizations/lg-h-{i}"),
                start_date: "2026-01-01".into(),
                assignments: vec![pb::PlanAssignment {
                    plan: "plans/lg-hours".into(),
                    effective_date: "2026-01-01".into(),
                }],
                ..Default::default()
            }),
            request_id: format!("lg-setup-contract-{i}"),
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Writes organisations, hours contracts and ledger entries straight into the database,
/// the entries decided by the ledger core itself, for the export benchmark.
async fn seed_hours(url: &str, orgs: usize, per_org: usize) -> Result<(), String> {
    use servicelevel::domain::catalog::Dated;
    use servicelevel::domain::hours::{HoursContractSpec, PlanAssignment};
    use servicelevel::domain::ledger::{BucketName, Command, Ledger, Usage};
    use servicelevel::domain::names::{ExternalId, ResourceId, ShortText};
    use servicelevel::domain::organization::Organization;
    use servicelevel::store::{ResourceKind, Store, StoreTx};
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let store = SqlStore::connect(url, 4).await.map_err(|e| err(&e))?;
    store.migrate().await.map_err(|e| err(&e))?;
    let now = Utc::now();
    let plan_id = ResourceId::parse("lg-seed-plan").map_err(|e| err(&e))?;
    let plan = servicelevel::domain::ledger::Plan {
        name: servicelevel::domain::names::PlanName::parse("lg-seed-plan").map_err(|e| err(&e))?,
        buckets: vec![{
            let mut b = servicelevel::domain::ledger::BucketTerms::new(
                BucketName::parse("customer_success").map_err(|e| err(&e))?,
                servicelevel::domain::ledger::PeriodUnit::Month,
                600,
            );
            b.rounding_increment_minutes = 15;
            b.overage = servicelevel::domain::ledger::Overage::Bill {
                rate_minor_units_per_hour: 8_500,
                currency: servicelevel::domain::ledger::Currency::parse("GBP")
                    .map_err(|e| err(&e))?,
            };
            b
        }],
    };
    let mut tx = store.begin().await.map_err(|e| err(&e))?;
    let plan_body = serde_json::to_string(&plan).map_err(|e| err(&e))?;
    if tx
        .get_resource(ResourceKind::Plan, &plan_id, None)
        .await
        .is_err()
    {
        tx.create_resource(ResourceKind::Plan, &plan_id, "seed plan", &plan_body, now)
            .await
            .map_err(|e| err(&e))?;
    }
    tx.commit().await.map_err(|e| err(&e))?;
    let zone = chrono_tz::Europe::London;
    let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).ok_or("date")?;
    let spec = HoursContractSpec::new(
        start,
        vec![PlanAssignment {
            plan: plan_id.clone(),
            effective_date: start,
        }],
    )
    .map_err(|_| "contract")?;
    let plans = std::collections::BTreeMap::from([(
        plan_id.clone(),
        vec![Dated {
            effective_at: now,
            value: plan.clone(),
        }],
    )]);
    let contract = spec.contract(zone, &plans).map_err(|e| err(&e))?;
    let bucket = BucketName::parse("customer_success").map_err(|e| err(&e))?;
    let actor = ExternalId::parse("seed").map_err(|e| err(&e))?;
    let t = Instant::now();
    let policy = ResourceId::parse("lg-desk").map_err(|e| err(&e))?;
    for chunk in (0..orgs).collect::<Vec<_>>().chunks(100) {
        let mut tx = store.begin().await.map_err(|e| err(&e))?;
        for i in chunk {
            let id = ResourceId::parse(&format!("lg-x-{i}")).map_err(|e| err(&e))?;
            let org = Organization {
                display_name: ShortText::parse(&format!("Export {i}")).map_err(|e| err(&e))?,
                zone,
                plan: None,
                policy: policy.clone(),
                calendars: vec![],
                external_ids: vec![],
                contacts: vec![],
            };
            let org_body = serde_json::to_string(&org).map_err(|e| err(&e))?;
            let spec_body = serde_json::to_string(&spec).map_err(|e| err(&e))?;
            tx.create_resource(ResourceKind::Organization, &id, "export", &org_body, now)
                .await
                .map_err(|e| err(&e))?;
            tx.create_resource(
                ResourceKind::HoursContract,
                &id,
                id.as_str(),
                &spec_body,
                now,
            )
            .await
            .map_err(|e| err(&e))?;
            let mut ledger = Ledger::new(&contract, bucket.clone(), vec![]).map_err(|e| err(&e))?;
            let mut all = Vec::new();
            // The grant is the first entry; then usages of the current month.
            while all.len() < per_org {
                let k = all.len() as i64;
                let entries = ledger
                    .decide(
                        &Command::RecordUsage(Usage {
                            minutes: 20,
                            activity: None,
                            service_at: now - TimeDelta::minutes(k + 1),
                            ticket: None,
                            actor: actor.clone(),
                            reason: None,
                        }),
                        now,
                    )
                    .map_err(|e| err(&e))?;
                ledger.apply(entries.clone()).map_err(|e| err(&e))?;
                all.extend(entries);
            }
            tx.lock_account(&id, bucket.as_str())
                .await
                .map_err(|e| err(&e))?;
            tx.append_entries(&id, bucket.as_str(), &all)
                .await
                .map_err(|e| err(&e))?;
        }
        tx.commit().await.map_err(|e| err(&e))?;
    }
    // As after any bulk load: the planner's statistics, before autovacuum gets to them.
    if url.starts_with("postgres") {
        store.execute_raw("ANALYZE").await.map_err(|e| err(&e))?;
    }
    println!(
        "seeded {orgs} organisations with {per_org}+ ledger entries each in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Times one export of every organisation's statement for today.
async fn export(channel: Ch) -> Result<(), String> {
    let mut h = HoursServiceClient::new(channel);
    let t = Instant::now();
    let mut stream = h
        .export_statements(pb::ExportStatementsRequest {
            date: Utc::now().date_naive().to_string(),
            include_entries: true,
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let (mut n, mut entries, mut bytes) = (0u64, 0u64, 0usize);
    let mut first = None;
    while let Some(s) = stream.message().await.map_err(|e| e.to_string())? {
        first.get_or_insert_with(|| t.elapsed());
        n += 1;
        entries += s
            .buckets
            .iter()
            .map(|b| b.entries.len() as u64)
            .sum::<u64>();
        bytes += prost::Message::encoded_len(&s);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "export: {n} statements, {entries} entries, {:.1} MB in {secs:.2} s ({:.0} statements/s, first after {:.0} ms)",
        bytes as f64 / 1e6,
        n as f64 / secs,
        first.map_or(0.0, |f| f.as_secs_f64() * 1e3)
    );
    Ok(())
}

/// A desk whose only clock is a 60-minute wall-clock promise: each ticket breaches once,
/// 60 minutes after it was received.
async fn setup_due_lag(channel: Ch) -> Result<(), String> {
    let mut pol = PolicyServiceClient::new(channel.clone());
    let mut org = OrganizationServiceClient::new(channel);
    let trig = |k: pb::trigger::Kind| pb::Trigger { kind: Some(k) };
    ok_or_exists(
        pol.create_policy(pb::CreatePolicyRequest {
            policy_id: "lg-lag".into(),
            policy: Some(pb::Policy {
                display_name: "Due-lag desk".into(),
                definition: Some(pb::PolicyDefinition {
                    clocks: vec![pb::ClockDefinition {
                        metric: "first_response".into(),
                        kind: pb::ClockKind::Promise as i32,
                        start: vec![trig(pb::trigger::Kind::Received(()))],
                        stop: vec![trig(pb::trigger::Kind::Event(
                            pb::EventSignal::AgentResponded as i32,
                        ))],
                        targets: vec![pb::Target {
                            duration: Some(pb::Duration {
                                kind: Some(pb::duration::Kind::WallClock(pb::WallClockDuration {
                                    minutes: 60,
                                })),
                            }),
                            source: "respond within an hour".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request_id: "lg-setup-lag-pol".into(),
        })
        .await
        .map(|_| ()),
    )?;
    ok_or_exists(
        org.create_organization(pb::CreateOrganizationRequest {
            organization_id: "lg-lag-org".into(),
            organization: Some(pb::Organization {
                display_name: "Due-lag org".into(),
                time_zone: "UTC".into(),
                policy: "policies/lg-lag".into(),
                ..Default::default()
            }),
            request_id: "lg-setup-lag-org".into(),
        })
        .await
        .map(|_| ()),
    )
}

/// Creates tickets whose deadlines fall evenly over `--duration` seconds from `--lead`
/// seconds on, watches the alert stream, and reports how long after each due instant
/// its breach was recorded.
async fn due_lag(
    channel: Ch,
    endpoint: &tonic::transport::Endpoint,
    args: &Args,
) -> Result<(), String> {
    use servicelevel::api::pb::alert_service_client::AlertServiceClient;
    use tokio_stream::StreamExt as _;
    setup_due_lag(channel.clone()).await?;
    let receiver = match args.webhook_receiver_ms {
        Some(ms) => Some(AlertReceiver::start(channel.clone(), Duration::from_millis(ms)).await?),
        None => None,
    };
    let n = args.due_per_minute * args.duration / 60;
    let run = uuid::Uuid::now_v7().simple().to_string()[..12].to_string();
    let first_due = Utc::now() + TimeDelta::seconds(args.lead as i64);
    let spacing_ns = (args.duration as f64 * 1e9 / n.max(1) as f64) as i64;
    let mut alerts = AlertServiceClient::new(channel)
        .watch_alerts(pb::WatchAlertsRequest {
            organization: "organizations/lg-lag-org".into(),
            from_now: true,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let created = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..args.clients {
        let ch = ch(endpoint.connect().await.map_err(|e| e.to_string())?);
        let next = Arc::clone(&next);
        let run = run.clone();
        handles.push(tokio::spawn(async move {
            let mut tickets = TicketServiceClient::new(ch);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), String>(());
                }
                let due = first_due + TimeDelta::nanoseconds(spacing_ns * i as i64);
                tickets
                    .create_ticket(pb::CreateTicketRequest {
                        ticket: Some(pb::Ticket {
                            organization: "organizations/lg-lag-org".into(),
                            source_system: "loadgen".into(),
                            external_id: format!("lag-{run}-{i}"),
                            request_type: "incident".into(),
                            received_time: ts(due - TimeDelta::minutes(60)),
                            ..Default::default()
                        }),
                        request_id: rid("lag", &run, i),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }));
    }
    for h in handles {
        h.await.map_err(|e| e.to_string())??;
    }
    let creation = created.elapsed();
    let until = Instant::now()
        + Duration::from_secs(args.lead + args.duration + 60).saturating_sub(creation);
    if Utc::now() > first_due {
        eprintln!("warning: creating the tickets took longer than --lead; early lags are inflated");
    }
    // The process's CPU from here to the last breach: the runner's work (and reading the
    // alert stream), the tickets' creation before it left out.
    let cpu_from = process_cpu_seconds();
    let mut lags_us: Vec<u64> = Vec::with_capacity(n as usize);
    while (lags_us.len() as u64) < n {
        let remaining = until.saturating_duration_since(Instant::now());
        let Ok(item) = tokio::time::timeout(remaining, alerts.next()).await else {
            break;
        };
        let Some(alert) = item else { break };
        let alert = alert.map_err(|e| e.to_string())?;
        if alert.kind != pb::AlertKind::Breach as i32 {
            continue;
        }
        let recorded = alert.record_time.as_ref();
        let due = alert.event.as_ref().and_then(|e| e.occurred_time.as_ref());
        if let (Some(r), Some(d)) = (recorded, due) {
            let lag_ns =
                (r.seconds - d.seconds) as i128 * 1_000_000_000 + (r.nanos - d.nanos) as i128;
            lags_us.push((lag_ns.max(0) / 1000) as u64);
        }
    }
    let got = lags_us.len();
    if let (Some(from), Some(to)) = (cpu_from, process_cpu_seconds()) {
        println!(
            "cpu: {:.2}s from the first due instant to the last breach, {:.0} us an action \
             (this process: server and alert reader; the database not included)",
            to - from,
            (to - from) * 1e6 / got.max(1) as f64
        );
    }
    lags_us.sort_unstable();
    let ms = |p: f64| percentile(&lags_us, p);
    println!(
        "due-lag: {n} deadlines over {}s ({} a minute), tickets created in {:.1}s",
        args.duration,
        args.due_per_minute,
        creation.as_secs_f64()
    );
    println!(
        "recorded={got} missing={} lag p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms",
        n as usize - got,
        ms(0.50),
        ms(0.90),
        ms(0.99),
        ms(1.0)
    );
    if let Some(r) = receiver {
        r.report(got, Instant::now() + Duration::from_secs(60))
            .await;
    }
    Ok(())
}

/// An alert webhook receiver in this process: answers 204 after a delay and records each
/// alert's delay from its recording to its arrival.
struct AlertReceiver {
    lags_us: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl AlertReceiver {
    async fn start(channel: Ch, delay: Duration) -> Result<AlertReceiver, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let lags_us = Arc::new(std::sync::Mutex::new(Vec::new()));
        let shared = Arc::clone(&lags_us);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let lags = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let lags = Arc::clone(&lags);
                            async move {
                                use http_body_util::BodyExt as _;
                                let arrived = Utc::now();
                                let body = req.into_body().collect().await.map(|c| c.to_bytes());
                                let recorded = body
                                    .ok()
                                    .and_then(|b| {
                                        serde_json::from_slice::<serde_json::Value>(&b).ok()
                                    })
                                    .and_then(|v| {
                                        v["data"]["recordTime"]
                                            .as_str()
                                            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                                    });
                                if let Some(r) = recorded {
                                    let lag = (arrived - r.with_timezone(&Utc))
                                        .num_microseconds()
                                        .unwrap_or(0)
                                        .max(0)
                                        as u64;
                                    if let Ok(mut l) = lags.lock() {
                                        l.push(lag);
                                    }
                                }
                                tokio::time::sleep(delay).await;
                                let mut resp = hyper::Response::new(http_body_util::Full::new(
                                    prost::bytes::Bytes::new(),
                                ));
                                *resp.status_mut() = hyper::StatusCode::NO_CONTENT;
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ok_or_exists(
            servicelevel::api::pb::webhook_service_client::WebhookServiceClient::new(channel)
                .create_webhook_subscription(pb::CreateWebhookSubscriptionRequest {
                    webhook_subscription_id: format!("lg-{}", addr.port()),
                    webhook_subscription: Some(pb::WebhookSubscription {
                        display_name: "Load receiver".into(),
                        organization: "organizations/lg-lag-org".into(),
                        alert_kinds: vec![pb::AlertKind::Breach as i32],
                        url: format!("http://{addr}/alerts"),
                        ..Default::default()
                    }),
                    secrets: vec![WEBHOOK_SECRET.into()],
                    request_id: format!("lg-setup-sub-{}", addr.port()),
                })
                .await
                .map(|_| ()),
        )?;
        Ok(AlertReceiver { lags_us })
    }

    /// Waits for `expected` deliveries (or `deadline`), then prints the delays.
    async fn report(&self, expected: usize, deadline: Instant) {
        let count = || self.lags_us.lock().map(|l| l.len()).unwrap_or(0);
        while count() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut lags = self.lags_us.lock().map(|l| l.clone()).unwrap_or_default();
        lags.sort_unstable();
        println!(
            "webhooks: delivered={} of {expected}; recorded-to-received p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms",
            lags.len(),
            percentile(&lags, 0.50),
            percentile(&lags, 0.90),
            percentile(&lags, 0.99),
            percentile(&lags, 1.0)
        );
    }
}

/// User and system CPU time of this process so far (Linux; 100 ticks a second).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime and stime are the
    // 14th and 15th of the line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

type Traces = (
    servicelevel::telemetry::Tracing,
    Option<servicelevel::telemetry::sink::Received>,
);

/// Span export for the in-process server, installed as this process's subscriber.
async fn start_traces(sink: bool) -> Result<Option<Traces>, String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (config, received) = if sink {
        let (addr, received) = servicelevel::telemetry::sink::start(false).await?;
        (
            Some(servicelevel::telemetry::TraceConfig::new(format!(
                "http://{addr}"
            ))),
            Some(received),
        )
    } else {
        (servicelevel::telemetry::TraceConfig::from_env()?, None)
    };
    let Some(config) = config else {
        return Ok(None);
    };
    let tracing = servicelevel::telemetry::Tracing::start(&config)?;
    tracing_subscriber::registry()
        .with(tracing.layer())
        .try_init()
        .map_err(|e| e.to_string())?;
    eprintln!(
        "exporting the server's traces to {}",
        config.effective_endpoint().unwrap_or_default()
    );
    Ok(Some((tracing, received)))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Arc::new(Args::parse());
    if args.scenario == Scenario::SeedHours {
        let url = args
            .db
            .clone()
            .or_else(|| args.serve_db.clone())
            .ok_or("seed-hours needs --db URL")?;
        return seed_hours(&url, args.seed_orgs, args.entries_per_org).await;
    }
    if args.scenario == Scenario::SeedClocks {
        let url = args
            .db
            .clone()
            .or_else(|| args.serve_db.clone())
            .ok_or("seed-clocks needs --db URL")?;
        return seed_clocks(&url, args.seed_tickets).await;
    }
    if args.span_times {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        tracing_subscriber::registry()
            .with(span_times::SpanTimes)
            .try_init()
            .map_err(|e| e.to_string())?;
    }
    let traces = if args.span_times {
        None
    } else {
        start_traces(args.otlp_sink).await?
    };
    let target = match &args.serve_db {
        Some(url) => {
            let store = SqlStore::connect(url, args.max_connections)
                .await
                .map_err(|e| e.to_string())?;
            store.migrate().await.map_err(|e| e.to_string())?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let security = if args.auth {
                let all = servicelevel::auth::scope::Scope::ALL
                    .map(servicelevel::auth::scope::Scope::as_str)
                    .join(",");
                let name = format!(
                    "loadgen-{}",
                    &uuid::Uuid::now_v7().simple().to_string()[..12]
                );
                let new = servicelevel::auth::admin::NewClient::parse(&name, &all, &[])?;
                let (_, token) =
                    servicelevel::auth::admin::create_client(&store, &new, Utc::now()).await?;
                let value = format!("Bearer {token}")
                    .parse()
                    .map_err(|_| "token is not ASCII".to_string())?;
                let _ = TOKEN.set(value);
                servicelevel::auth::Security::required()
            } else {
                servicelevel::auth::Security::off()
            };
            let inbox_concurrency = args.inbox_concurrency.max(1);
            tokio::spawn(async move {
                let _ = servicelevel::server::serve_secured(
                    store,
                    Arc::new(servicelevel::time::SystemClock),
                    listener,
                    std::future::pending(),
                    servicelevel::server::ServeOptions {
                        // The load tool's own receiver listens on loopback.
                        webhooks: servicelevel::app::webhooks::WebhookOptions {
                            destinations: servicelevel::domain::webhook::DestinationPolicy {
                                allow_http: true,
                                allow_private: true,
                            },
                            ..Default::default()
                        },
                        inbox: servicelevel::app::inbox::InboxOptions {
                            concurrency: inbox_concurrency,
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                    security,
                )
                .await;
            });
            format!("http://{addr}")
        }
        None => args.target.clone(),
    };
    let endpoint =
        tonic::transport::Endpoint::from_shared(target.clone()).map_err(|e| e.to_string())?;
    let mut channel = None;
    for _ in 0..100 {
        if let Ok(ch) = endpoint.connect().await {
            channel = Some(ch);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let channel = ch(channel.ok_or_else(|| format!("cannot connect to {target}"))?);
    setup(channel.clone()).await?;
    if args.scenario == Scenario::Export {
        return export(channel).await;
    }
    if args.scenario == Scenario::DueLag {
        return due_lag(channel, &endpoint, &args).await;
    }
    if matches!(args.scenario, Scenario::UsageHot | Scenario::UsageSpread) {
        let n = if args.scenario == Scenario::UsageHot {
            1
        } else {
            args.accounts
        };
        setup_hours(channel.clone(), n).await?;
    }
    if args.scenario == Scenario::Webhooks {
        setup_webhooks(channel.clone()).await?;
    }
    let run = Arc::new(uuid::Uuid::now_v7().simple().to_string()[..12].to_string());
    let counter = Arc::new(AtomicU64::new(0));
    // One HTTP/2 connection per client, as separate services would have.
    let mut channels = Vec::new();
    for _ in 0..args.clients {
        channels.push(ch(endpoint.connect().await.map_err(|e| e.to_string())?));
    }
    let start = Instant::now() + Duration::from_millis(200);
    let prep = Duration::from_secs(
        if matches!(args.scenario, Scenario::RecordEvent | Scenario::Mixed) {
            // Ticket creation before the timed run.
            5 + (args.tickets_per_client as u64 * args.clients as u64) / 300
        } else {
            0
        },
    );
    let measure_from = start + prep + Duration::from_secs(args.warmup);
    let until = measure_from + Duration::from_secs(args.duration);
    let mut handles = Vec::new();
    for (id, ch) in channels.into_iter().enumerate() {
        let http = match (args.protocol, args.scenario) {
            (_, Scenario::Webhooks) | (Protocol::ConnectJson, _) => {
                Some(Http1::open(&target).await?)
            }
            (Protocol::Grpc, _) => None,
        };
        let c = Clients {
            http,
            tickets: TicketServiceClient::new(ch.clone()),
            deadlines: DeadlineServiceClient::new(ch.clone()),
            hours: HoursServiceClient::new(ch.clone()),
            health: tonic_health::pb::health_client::HealthClient::new(ch),
        };
        handles.push(tokio::spawn(client_loop(
            id,
            c,
            Arc::clone(&args),
            Arc::clone(&run),
            Window {
                start: start + prep,
                measure_from,
                until,
            },
            Arc::clone(&counter),
        )));
    }
    // This process's CPU time over the measured window (clients, and the server when
    // in-process): what tracing costs shows here even when throughput is noisy.
    let cpu_window = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let from = process_cpu_seconds();
        tokio::time::sleep_until(until.into()).await;
        from.zip(process_cpu_seconds()).map(|(a, b)| b - a)
    });
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        let r = h.await.map_err(|e| e.to_string())?;
        all.extend(r.latencies);
        errors += r.errors;
    }
    all.sort_unstable();
    if args.scenario == Scenario::Webhooks {
        let to_utc = |i: Instant| {
            let now = Instant::now();
            Utc::now() - TimeDelta::from_std(now.saturating_duration_since(i)).unwrap_or_default()
        };
        webhook_lags(channel.clone(), to_utc(measure_from), to_utc(until)).await?;
    }
    let secs = args.duration as f64;
    if let Ok(Some(cpu)) = cpu_window.await {
        let calls = (all.len() as u64 + errors) as f64;
        println!(
            "cpu: {cpu:.2}s in the window, {:.0} us a call (ok and errors)",
            cpu * 1e6 / calls.max(1.0)
        );
    }
    if args.span_times {
        span_times::report(all.len() as u64 + errors);
    }
    if let Some((tracing, received)) = &traces {
        let stats = tracing.stats();
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        println!(
            "traces: spans exported={} dropped={} failed={} received={}",
            n(&stats.exported),
            n(&stats.dropped),
            n(&stats.failed),
            received.as_ref().map_or(0, |r| r.count())
        );
    }
    println!(
        "scenario={:?} protocol={:?} clients={} rate={} duration={}s target={}",
        args.scenario,
        args.protocol,
        args.clients,
        if args.rate > 0.0 {
            format!("{}/s", args.rate)
        } else {
            "max".into()
        },
        args.duration,
        target
    );
    println!(
        "ok={} errors={} throughput={:.0}/s p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        all.len(),
        errors,
        all.len() as f64 / secs,
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
    );
    Ok(())
}

/// `--span-times`: wall time per span name, from each span's creation to its close.
mod span_times {
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};
    use std::time::Instant;

    use tracing::span::{Attributes, Id};
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    /// Per span name: how many closed, and their total nanoseconds.
    static TIMES: Mutex<Option<HashMap<&'static str, (u64, u128)>>> = Mutex::new(None);

    struct Started(Instant);

    pub struct SpanTimes;

    impl<S> tracing_subscriber::Layer<S> for SpanTimes
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(&self, _: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(Started(Instant::now()));
            }
        }

        fn on_close(&self, id: Id, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(&id) else { return };
            let Some(started) = span.extensions().get::<Started>().map(|s| s.0) else {
                return;
            };
            let mut times = TIMES.lock().unwrap_or_else(PoisonError::into_inner);
            let e = times
                .get_or_insert_with(HashMap::new)
                .entry(span.metadata().name())
                .or_insert((0, 0));
            e.0 += 1;
            e.1 += started.elapsed().as_nanos();
        }
    }

    /// Prints the spans, most total time first, with their count per call of the run.
    pub fn report(calls: u64) {
        let times = TIMES.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(times) = times.as_ref() else { return };
        let mut rows: Vec<_> = times.iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.1));
        println!("span times (whole run, setup included): name, count, per call, mean");
        for (name, (count, total)) in rows {
            println!(
                "  {name:<32} {count:>9} {:>6.2} {:>9.1} us",
                *count as f64 / calls.max(1) as f64,
                *total as f64 / 1e3 / (*count).max(1) as f64
            );
        }
    }
}
