//! Calls cancelled at random points (a client giving up, a deadline) leave no pooled
//! connection inside a transaction and lose or duplicate nothing once retried.
//!
//! Runs on a current-thread runtime so that a subscriber set for this thread sees every
//! event of the server's tasks: the database's notices ("there is already a transaction
//! in progress") are logged by sqlx under `sqlx::postgres::notice`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use servicelevel::api::pb;
use tonic::Request;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::fixtures::*;
use crate::harness::*;

const TO: chrono_tz::Tz = chrono_tz::America::Toronto;

/// Counts the database's notices about transactions ("there is already a transaction in
/// progress", "there is no transaction in progress") that sqlx logs.
struct Notices(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Notices {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        if !e.metadata().target().starts_with("sqlx::postgres::notice") {
            return;
        }
        let mut m = Message(String::new());
        e.record(&mut m);
        if m.0.contains("transaction in progress") {
            eprintln!("database notice: {}", m.0);
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

const CALLS: usize = 2000;
const AT_ONCE: usize = 16;

async fn cancelled_calls_leave_no_connection_in_a_transaction(db: Db) {
    let notices = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(Notices(Arc::clone(&notices)));
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = TestServer::start(db, local(TO, 2026, 3, 9, 9, 0)).await;
    crate::tickets::desk(&s).await;
    let mut tickets = Vec::new();
    for i in 0..32 {
        let t = create_ticket(
            &s,
            ticket(
                "acme",
                &format!("X-{i}"),
                "incident",
                "sev-2",
                local(TO, 2026, 3, 9, 9, 0),
            ),
        )
        .await;
        tickets.push(t.name);
    }
    s.set_now(local(TO, 2026, 3, 9, 10, 0));
    let when = local(TO, 2026, 3, 9, 9, 30);
    let reply = |id: &str| pb::TicketEvent {
        request_id: id.to_string(),
        ..event(when, pb::ticket_event::Kind::CustomerReply(()))
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut sent: Vec<(String, String)> = Vec::new();
    let mut cancelled = 0;
    for round in 0..CALLS / AT_ONCE {
        let mut calls = tokio::task::JoinSet::new();
        for k in 0..AT_ONCE {
            let ticket = tickets[(rng.next() % tickets.len() as u64) as usize].clone();
            let id = format!("c-{round}-{k}");
            sent.push((ticket.clone(), id.clone()));
            // Gives up after 0-4 ms: some calls never reach the database, some are cut
            // while it is in BEGIN, a statement or COMMIT, some complete.
            let patience = Duration::from_micros(rng.next() % 4000);
            let mut client = s.tickets.clone();
            let e = reply(&id);
            calls.spawn(async move {
                let call = client.record_event(Request::new(pb::RecordEventRequest {
                    ticket,
                    event: Some(e),
                }));
                tokio::time::timeout(patience, call).await.is_err()
            });
        }
        while let Some(r) = calls.join_next().await {
            cancelled += usize::from(r.expect("joined"));
        }
    }
    assert!(
        cancelled > CALLS / 4,
        "most calls should be cut short: {cancelled} of {CALLS}"
    );
    // Let the server finish dropping what was cancelled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some((_, schema)) = &s.fresh_cleanup() {
        let admin = postgres_url();
        let store = servicelevel::store::SqlStore::connect(&admin, 1)
            .await
            .expect("admin connects");
        // A connection left inside a transaction stays so at every look; the runner's
        // polls are busy only for moments (through PgBouncer, each inside BEGIN and
        // COMMIT on server connections every client shares), so one clear look suffices.
        let mut stuck = 0;
        for _ in 0..10 {
            stuck = store
                .count_raw(&format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{schema}' \
                     AND state <> 'idle'"
                ))
                .await
                .expect("reads pg_stat_activity");
            if stuck == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        store.close().await;
        assert_eq!(stuck, 0, "pooled connections not idle (in a transaction?)");
    }
    // Retried with their request ids, every call is recorded exactly once.
    for batch in sent.chunks(AT_ONCE) {
        let mut retries = tokio::task::JoinSet::new();
        for (ticket, id) in batch {
            let mut client = s.tickets.clone();
            let (ticket, e) = (ticket.clone(), reply(id));
            retries.spawn(async move {
                client
                    .record_event(Request::new(pb::RecordEventRequest {
                        ticket: ticket.clone(),
                        event: Some(e),
                    }))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("retry on {ticket}: {e}"))
            });
        }
        while let Some(r) = retries.join_next().await {
            r.expect("joined").unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let mut recorded = 0;
    for t in &tickets {
        let g = get(&s, t).await;
        let ids: Vec<&str> = g
            .events
            .iter()
            .filter(|e| e.request_id.starts_with("c-"))
            .map(|e| e.request_id.as_str())
            .collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "an event recorded twice on {t}");
        recorded += ids.len();
    }
    assert_eq!(recorded, sent.len());
    assert_eq!(
        notices.load(Ordering::SeqCst),
        0,
        "the database warned about transactions (a connection was reused inside one)"
    );
    s.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn sqlite_cancelled_calls_leave_no_connection_in_a_transaction() {
    cancelled_calls_leave_no_connection_in_a_transaction(Db::Sqlite).await;
}

#[tokio::test(flavor = "current_thread")]
async fn postgres_cancelled_calls_leave_no_connection_in_a_transaction() {
    cancelled_calls_leave_no_connection_in_a_transaction(Db::Postgres).await;
}
