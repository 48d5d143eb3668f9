//! Two `servicelevel serve` processes on one Postgres: every due action is recorded once,
//! stamped with its due instant, whichever replica got to it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use servicelevel::api::pb;
use servicelevel::api::pb::ticket_service_client::TicketServiceClient;
use servicelevel::store::SqlStore;
use tonic::Request;

use crate::fixtures::*;
use crate::harness::*;

pub(crate) struct Replica(pub(crate) Child);

impl Drop for Replica {
    fn drop(&mut self) {
        // SIGTERM: the server drains and exits.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn replica(url: &str, port: u16) -> Replica {
    let child = Command::new(env!("CARGO_BIN_EXE_servicelevel"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--no-migrate",
        ])
        .env("SERVICELEVEL_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("servicelevel starts");
    Replica(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_record_each_due_action_once() {
    // The test server only provides a fresh schema and the catalogue; the replicas run on
    // the real clock.
    let s = TestServer::start(Db::Postgres, Utc::now()).await;
    create_calendar(&s, "office", always_open("UTC")).await;
    create_policy(
        &s,
        "fast",
        pb::PolicyDefinition {
            clocks: vec![promise(
                "first_response",
                vec![on_received()],
                vec![on_event(pb::EventSignal::AgentResponded)],
                vec![target(&[], &[], &[], wall(1))],
            )],
            ..Default::default()
        },
    )
    .await;
    create_org(&s, "acme", organization("UTC", "", "fast", vec![], vec![])).await;
    let url = s.url.clone();
    let (pa, pb_port) = (free_port(), free_port());
    let _a = replica(&url, pa);
    let _b = replica(&url, pb_port);
    let a = connect(format!("127.0.0.1:{pa}").parse().expect("addr")).await;
    let mut tickets = TicketServiceClient::new(a);
    // Thirty tickets whose one-minute first responses fall due over the next ~6 seconds.
    let now = Utc::now();
    let mut expected = Vec::new();
    for i in 0..30 {
        let received = now - TimeDelta::seconds(57) + TimeDelta::milliseconds(200 * i);
        let received =
            DateTime::from_timestamp_micros(received.timestamp_micros()).expect("in range");
        let t = tickets
            .create_ticket(Request::new(pb::CreateTicketRequest {
                ticket: Some(ticket("acme", &format!("X-{i}"), "task", "", received)),
                request_id: rid("x"),
            }))
            .await
            .expect("created")
            .into_inner();
        expected.push((t.name, received + TimeDelta::minutes(1)));
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let store = SqlStore::connect(&url, 2).await.expect("store");
    for (name, due) in &expected {
        let id = name.trim_start_matches("tickets/");
        let events = servicelevel::store::Store::ticket_events(&store, id)
            .await
            .expect("events");
        let breaches: Vec<_> = events
            .iter()
            .filter(|e| {
                matches!(
                    e.event.kind,
                    servicelevel::domain::ticket::EventKind::ClockBreached { .. }
                )
            })
            .collect();
        assert_eq!(breaches.len(), 1, "{name}: {events:?}");
        assert_eq!(
            breaches[0].event.occurred_at, *due,
            "{name} stamped with its due instant"
        );
        assert_eq!(breaches[0].event.actor.client, "servicelevel");
        let lag = breaches[0].recorded_at - *due;
        assert!(
            lag < TimeDelta::seconds(3),
            "{name} recorded {lag} after it fell due"
        );
    }
    store.close().await;
    s.stop().await;
}

use chrono::DateTime;
