//! Faults on a private Postgres this test starts on a free port (never the shared one):
//! the database stopped under load and started again, and a `serve` process killed with
//! SIGKILL under load. Readiness follows the database within about two seconds, calls
//! fail fast with UNAVAILABLE while it is away, everything recovers without a restart,
//! and once clients retry what was not acknowledged under the same request ids, every
//! request is recorded exactly once and every due action exactly once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use servicelevel::api::pb;
use servicelevel::api::pb::ticket_service_client::TicketServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::fixtures::*;
use crate::harness::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs a command, as the `postgres` user when we are root (initdb refuses root).
fn as_postgres(bin: &Path, args: &[&str]) -> std::process::Output {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args).output().expect("a Postgres tool runs")
}

/// A throwaway Postgres cluster of this test's own.
struct PrivatePostgres {
    bin: PathBuf,
    data: String,
    port: u16,
    dir: PathBuf,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Postgres server binaries (scripts/postgres.sh installs them)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("pg_ctl").exists())
            .max()
            .expect("a Postgres version with pg_ctl");
        let dir = std::env::temp_dir().join(format!("servicelevel-pg-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let _ = Command::new("chown")
            .args(["-R", "postgres", &dir.display().to_string()])
            .status();
        let data = dir.join("data").display().to_string();
        let out = as_postgres(
            &bin.join("initdb"),
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        assert!(out.status.success(), "initdb: {out:?}");
        let pg = PrivatePostgres {
            bin,
            data,
            port: free_port(),
            dir,
        };
        pg.up();
        pg
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        let out = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data, "-o", &opts, "-l", &log, "-w", "start"],
        );
        assert!(out.status.success(), "pg_ctl start: {out:?}");
    }

    /// Stops at once, as a crash or a failover would: connections drop.
    fn down(&self) {
        let out = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data, "-m", "immediate", "-w", "stop"],
        );
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data, "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Serve(Child, u16);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(url: &str) -> Serve {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_servicelevel"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db-acquire-timeout",
            "1s",
        ])
        .env("SERVICELEVEL_DATABASE_URL", url)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("servicelevel starts");
    Serve(child, port)
}

async fn channel(port: u16) -> Channel {
    connect(format!("127.0.0.1:{port}").parse().expect("addr")).await
}

/// Readiness as a probe sees it: the overall status ("").
async fn ready(ch: &Channel) -> bool {
    let mut h = HealthClient::new(ch.clone());
    let call = h.check(HealthCheckRequest {
        service: String::new(),
    });
    matches!(
        tokio::time::timeout(Duration::from_secs(2), call).await,
        Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
    )
}

async fn until_ready(ch: &Channel, want: bool, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if ready(ch).await == want {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A policy with a one-minute first response, an organisation on it.
async fn catalogue(ch: &Channel) {
    let mut cal = pb::calendar_service_client::CalendarServiceClient::new(ch.clone());
    cal.create_calendar(Request::new(pb::CreateCalendarRequest {
        calendar_id: "office".into(),
        calendar: Some(pb::Calendar {
            display_name: "Office".into(),
            definition: Some(always_open("UTC")),
            ..Default::default()
        }),
        request_id: "cal".into(),
    }))
    .await
    .expect("calendar");
    pb::policy_service_client::PolicyServiceClient::new(ch.clone())
        .create_policy(Request::new(pb::CreatePolicyRequest {
            policy_id: "fast".into(),
            policy: Some(pb::Policy {
                display_name: "Fast".into(),
                definition: Some(pb::PolicyDefinition {
                    clocks: vec![promise(
                        "first_response",
                        vec![on_received()],
                        vec![on_event(pb::EventSignal::AgentResponded)],
                        vec![target(&[], &[], &[], wall(1))],
                    )],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request_id: "pol".into(),
        }))
        .await
        .expect("policy");
    pb::organization_service_client::OrganizationServiceClient::new(ch.clone())
        .create_organization(Request::new(pb::CreateOrganizationRequest {
            organization_id: "acme".into(),
            organization: Some(organization("UTC", "", "fast", vec![], vec![])),
            request_id: "org".into(),
        }))
        .await
        .expect("organisation");
}

/// A ticket per id (first responses due a minute after `received`): each creation's
/// request id is the ticket's external id; a retry sends the same request.
fn create(external: &str, received: DateTime<Utc>) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        ticket: Some(ticket("acme", external, "incident", "", received)),
        request_id: format!("create-{external}"),
    }
}

/// A request sent: its external id, when its ticket was received, whether it was
/// acknowledged.
type Sent = (String, DateTime<Utc>, bool);

/// Writers creating tickets as fast as they can until told to stop; each returns the
/// request ids it sent and whether each was acknowledged, and the UNAVAILABLE answers
/// with how long they took.
async fn writers(
    ch: Channel,
    prefix: &'static str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<Sent>, Vec<Duration>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let unavailable = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..4 {
        let (ch, stop, sent, unavailable) = (
            ch.clone(),
            Arc::clone(&stop),
            Arc::clone(&sent),
            Arc::clone(&unavailable),
        );
        tasks.spawn(async move {
            let mut client = TicketServiceClient::new(ch);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let external = format!("{prefix}-{w}-{i}");
                i += 1;
                let received = Utc::now();
                let started = Instant::now();
                let r = tokio::time::timeout(
                    Duration::from_secs(5),
                    client.create_ticket(Request::new(create(&external, received))),
                )
                .await;
                let acked = matches!(r, Ok(Ok(_)));
                if let Ok(Err(s)) = &r
                    && s.code() == Code::Unavailable
                {
                    unavailable.lock().expect("lock").push(started.elapsed());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                sent.lock().expect("lock").push((external, received, acked));
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let sent = std::mem::take(&mut *sent.lock().expect("lock"));
    let unavailable = std::mem::take(&mut *unavailable.lock().expect("lock"));
    (sent, unavailable)
}

/// Retries every request not acknowledged, under its request id, until it is; then each
/// external id is exactly one ticket.
async fn replay_and_count(ch: &Channel, sent: &[Sent]) {
    let mut client = TicketServiceClient::new(ch.clone());
    for (external, received, acked) in sent {
        if *acked {
            continue;
        }
        let mut done = false;
        for _ in 0..50 {
            match client
                .create_ticket(Request::new(create(external, *received)))
                .await
            {
                Ok(_) => {
                    done = true;
                    break;
                }
                Err(s) if s.code() == Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(s) => panic!("retry of {external}: {s}"),
            }
        }
        assert!(done, "retry of {external} never went through");
    }
    for (external, _, _) in sent {
        let listed = client
            .list_tickets(Request::new(pb::ListTicketsRequest {
                organization: "organizations/acme".into(),
                source_system: "crm".into(),
                external_id: external.clone(),
                ..Default::default()
            }))
            .await
            .expect("lists")
            .into_inner();
        assert_eq!(listed.tickets.len(), 1, "{external}: exactly one ticket");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_seen_fast_and_nothing_is_lost() {
    let pg = PrivatePostgres::start();
    let server = serve(&pg.url());
    let ch = channel(server.1).await;
    assert!(
        until_ready(&ch, true, Duration::from_secs(30))
            .await
            .is_some(),
        "serving once migrated"
    );
    catalogue(&ch).await;
    let webhook = Webhook::create(&ch, server.1).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(writers(ch.clone(), "outage", Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_millis(800)).await;

    pg.down();
    let gone = until_ready(&ch, false, Duration::from_secs(10))
        .await
        .expect("readiness turns NOT_SERVING");
    assert!(
        gone <= Duration::from_millis(2_500),
        "NOT_SERVING {gone:?} after the database stopped"
    );
    // Calls fail fast while it is away, and a helpdesk's delivery is answered 503 (so
    // its vendor retries) and not kept.
    let started = Instant::now();
    assert_eq!(webhook.deliver().await, 503);
    assert!(started.elapsed() <= Duration::from_millis(2_500));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    pg.up();
    let back = until_ready(&ch, true, Duration::from_secs(15))
        .await
        .expect("SERVING again, without a restart");
    assert!(
        back <= Duration::from_secs(5),
        "SERVING {back:?} after it came back"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, unavailable) = load.await.expect("writers");
    assert!(
        !unavailable.is_empty(),
        "calls during the outage answer UNAVAILABLE"
    );
    let slowest = unavailable.iter().max().copied().unwrap_or_default();
    assert!(
        slowest <= Duration::from_millis(2_500),
        "UNAVAILABLE after {slowest:?}: calls must fail fast"
    );
    assert!(
        sent.iter().filter(|(_, _, a)| *a).count() > 10,
        "load went through"
    );
    replay_and_count(&ch, &sent).await;
    // The vendor's retry is kept once the database is back, and applied.
    assert_eq!(webhook.deliver().await, 200);
    webhook.applied(&ch).await;
    drop(server);
}

/// A generic (Standard Webhooks) connection of acme's, and one signed delivery.
struct Webhook {
    port: u16,
    id: String,
    secret: String,
    body: Vec<u8>,
}

impl Webhook {
    async fn create(ch: &Channel, port: u16) -> Webhook {
        use crate::webhooks_in::{P, mapping};
        let secret = P::Generic.secret(7);
        pb::connection_service_client::ConnectionServiceClient::new(ch.clone())
            .create_connection(Request::new(pb::CreateConnectionRequest {
                connection_id: "outage-desk".into(),
                connection: Some(pb::Connection {
                    display_name: "Desk".into(),
                    organization: "organizations/acme".into(),
                    provider: pb::Provider::Generic as i32,
                    source_system: "desk".into(),
                    mapping: Some(mapping(&[])),
                    ..Default::default()
                }),
                secrets: vec![secret.clone()],
                request_id: "conn".into(),
            }))
            .await
            .expect("connection");
        let id = "msg_outage".to_string();
        // No priority: the policy of catalogue() has none.
        let body = serde_json::to_vec(&serde_json::json!({"external_id": "out-1", "status": "Open",
            "request_type": "Incident", "updated_time": (Utc::now() - TimeDelta::seconds(30)).to_rfc3339()}))
        .expect("JSON");
        Webhook {
            port,
            id,
            secret,
            body,
        }
    }

    /// Sends the delivery, signed now; its HTTP status.
    async fn deliver(&self) -> u16 {
        use crate::webhooks_in::P;
        let url = format!("http://127.0.0.1:{}/webhooks/v1/outage-desk", self.port);
        let headers = P::Generic.sign(&self.secret, &url, &self.id, &self.body, Utc::now());
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let addr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        crate::http::send(
            addr,
            "POST",
            "/webhooks/v1/outage-desk",
            &headers,
            self.body.clone(),
        )
        .await
        .status
    }

    /// Waits until the delivery's ticket exists.
    async fn applied(&self, ch: &Channel) {
        let mut t = TicketServiceClient::new(ch.clone());
        for _ in 0..100 {
            let page = t
                .list_tickets(Request::new(pb::ListTicketsRequest {
                    organization: "organizations/acme".into(),
                    source_system: "desk".into(),
                    external_id: "out-1".into(),
                    page_size: 1,
                    ..Default::default()
                }))
                .await
                .expect("tickets")
                .into_inner();
            if !page.tickets.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the delivery kept after the outage is applied");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_nothing_and_the_runner_catches_up_once() {
    let pg = PrivatePostgres::start();
    let first = serve(&pg.url());
    let ch = channel(first.1).await;
    assert!(
        until_ready(&ch, true, Duration::from_secs(30))
            .await
            .is_some()
    );
    catalogue(&ch).await;
    // Tickets whose one-minute first responses fall due while no process runs.
    let mut t = TicketServiceClient::new(ch.clone());
    let mut due = Vec::new();
    for i in 0..10 {
        let received = Utc::now() - TimeDelta::seconds(55) + TimeDelta::milliseconds(300 * i);
        let made = t
            .create_ticket(Request::new(pb::CreateTicketRequest {
                ticket: Some(ticket(
                    "acme",
                    &format!("due-{i}"),
                    "incident",
                    "",
                    received,
                )),
                request_id: format!("due-{i}"),
            }))
            .await
            .expect("ticket")
            .into_inner();
        due.push(made.name);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(writers(ch.clone(), "killed", Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let _ = Command::new("kill")
        .args(["-KILL", &first.0.id().to_string()])
        .status();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, _) = load.await.expect("writers");
    drop(first);
    // The deadlines pass while nothing runs.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let second = serve(&pg.url());
    let ch = channel(second.1).await;
    assert!(
        until_ready(&ch, true, Duration::from_secs(30))
            .await
            .is_some()
    );
    replay_and_count(&ch, &sent).await;
    let mut t = TicketServiceClient::new(ch.clone());
    for name in &due {
        let mut breaches = 0;
        for _ in 0..50 {
            let got = t
                .get_ticket(Request::new(pb::GetTicketRequest {
                    name: name.clone(),
                    view: pb::TicketView::Full as i32,
                }))
                .await
                .expect("ticket")
                .into_inner();
            breaches = got
                .events
                .iter()
                .filter(|e| matches!(e.kind, Some(pb::ticket_event::Kind::ClockBreach(_))))
                .count();
            if breaches > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(breaches, 1, "{name}: the runner records the breach once");
    }
    drop(second);
}

/// With migrations off on a database never migrated (a migration Job that failed or did
/// not run), readiness stays NOT_SERVING; once the schema is migrated it turns SERVING by
/// itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_schema() {
    let fresh = fresh_database(Db::Sqlite).await;
    let port = free_port();
    let _server = Serve(
        Command::new(env!("CARGO_BIN_EXE_servicelevel"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--no-migrate",
            ])
            .env("SERVICELEVEL_DATABASE_URL", &fresh.url)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("servicelevel starts"),
        port,
    );
    let ch = channel(port).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(!ready(&ch).await, "not ready without a schema");
    let migrated = Command::new(env!("CARGO_BIN_EXE_servicelevel"))
        .arg("migrate")
        .env("SERVICELEVEL_DATABASE_URL", &fresh.url)
        .output()
        .expect("migrate runs");
    assert!(migrated.status.success(), "{migrated:?}");
    assert!(
        until_ready(&ch, true, Duration::from_secs(5))
            .await
            .is_some(),
        "ready once migrated, without a restart"
    );
    fresh.remove().await;
}
