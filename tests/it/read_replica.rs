//! A read replica that is a real streaming hot standby (scripts/replica-check.sh makes a
//! private primary and its standby and runs this with `--ignored`): lists read the
//! replica while its lag is within the bound, `Get*` reads the primary, and past the
//! bound lists fall back to the primary; the lag is a gauge.

use std::time::Duration;

use chrono::Utc;
use servicelevel::api::pb;
use servicelevel::server::ReadReplica;
use servicelevel::store::SqlStore;
use tonic::Request;

use crate::fixtures::*;
use crate::harness::*;

fn required(var: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!("{var} is required: scripts/replica-check.sh starts a primary and a standby and sets it")
        })
}

async fn listed(s: &TestServer) -> Vec<String> {
    s.tickets
        .clone()
        .list_tickets(Request::new(pb::ListTicketsRequest {
            organization: "organizations/acme".into(),
            page_size: 100,
            ..Default::default()
        }))
        .await
        .expect("ListTickets")
        .into_inner()
        .tickets
        .into_iter()
        .map(|t| t.name)
        .collect()
}

async fn create(s: &TestServer, external: &str) -> String {
    s.tickets
        .clone()
        .create_ticket(Request::new(pb::CreateTicketRequest {
            ticket: Some(ticket("acme", external, "task", "", Utc::now())),
            request_id: rid("t"),
        }))
        .await
        .expect("CreateTicket")
        .into_inner()
        .name
}

/// The lag gauge's value on the server's metrics, if rendered.
async fn lag_gauge(s: &TestServer) -> Option<f64> {
    let text = s.options.metrics.as_ref()?.render().await;
    text.lines()
        .find(|l| l.starts_with("servicelevel_db_replica_lag_seconds "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits until `check` holds, for at most `within`.
async fn until<F: std::future::Future<Output = bool>>(
    within: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a primary and a streaming hot standby: scripts/replica-check.sh runs it"]
async fn lists_read_the_replica_within_the_lag_bound_and_the_primary_past_it() {
    let primary = required("SERVICELEVEL_TEST_PRIMARY_URL");
    let replica_url = required("SERVICELEVEL_TEST_REPLICA_URL");
    let standby = SqlStore::connect(&replica_url, 1)
        .await
        .expect("the standby answers");
    let bound = Duration::from_secs(3);
    let s = TestServer::start_with_replica(
        &primary,
        ReadReplica {
            store: SqlStore::connect(&replica_url, 4)
                .await
                .expect("the replica's pool"),
            max_lag: bound,
            interval: Duration::from_millis(200),
        },
        Utc::now(),
    )
    .await;
    create_calendar(&s, "office", always_open("UTC")).await;
    create_policy(
        &s,
        "fast",
        pb::PolicyDefinition {
            clocks: vec![promise(
                "first_response",
                vec![on_received()],
                vec![on_event(pb::EventSignal::AgentResponded)],
                vec![target(&[], &[], &[], wall(60))],
            )],
            ..Default::default()
        },
    )
    .await;
    create_org(&s, "acme", organization("UTC", "", "fast", vec![], vec![])).await;

    // Caught up: the replica lists what the primary has, with lag 0.
    let sr = &s;
    let first = create(sr, "A-1").await;
    let fr = &first;
    assert!(
        until(Duration::from_secs(10), move || async move {
            listed(sr).await.contains(fr)
        })
        .await,
        "the replica never listed {first}"
    );
    assert!(
        until(Duration::from_secs(5), move || async move {
            lag_gauge(sr).await == Some(0.0)
        })
        .await,
        "the lag gauge never read 0 with replay running: {:?}",
        lag_gauge(&s).await
    );

    // Replay paused right after a replayed write: the next write is on the primary only.
    let recent = create(sr, "A-2").await;
    let rr = &recent;
    assert!(
        until(Duration::from_secs(10), move || async move {
            listed(sr).await.contains(rr)
        })
        .await,
        "the replica never listed {recent}"
    );
    standby
        .execute_raw("SELECT pg_wal_replay_pause()")
        .await
        .expect("replay paused");
    let paused_at = tokio::time::Instant::now();
    let fresh = create(&s, "B-1").await;
    // Get reads the primary: seen at once.
    let got = s
        .tickets
        .clone()
        .get_ticket(Request::new(pb::GetTicketRequest {
            name: fresh.clone(),
            ..Default::default()
        }))
        .await
        .expect("GetTicket reads the primary")
        .into_inner();
    assert_eq!(got.name, fresh);
    // Within the bound the list reads the paused replica: the new ticket is missing.
    let within = listed(&s).await;
    if paused_at.elapsed() < bound - Duration::from_millis(500) {
        assert!(
            !within.contains(&fresh) && within.contains(&recent),
            "within the lag bound ListTickets reads the replica: {within:?}"
        );
    }
    // Past the bound: the lag gauge rises past it and the list falls back to the primary.
    assert!(
        until(Duration::from_secs(15), move || async move {
            lag_gauge(sr).await.is_some_and(|l| l > bound.as_secs_f64())
        })
        .await,
        "the lag gauge never passed the bound: {:?}",
        lag_gauge(&s).await
    );
    let past = listed(&s).await;
    assert!(
        past.contains(&fresh),
        "past the lag bound ListTickets reads the primary: {past:?}"
    );
    // Due/breached queries follow the same routing and answer too.
    s.deadlines
        .clone()
        .list_breached_clocks(Request::new(pb::ListBreachedClocksRequest::default()))
        .await
        .expect("ListBreachedClocks past the bound");

    standby
        .execute_raw("SELECT pg_wal_replay_resume()")
        .await
        .expect("replay resumed");
    assert!(
        until(Duration::from_secs(10), move || async move {
            lag_gauge(sr).await == Some(0.0)
        })
        .await,
        "the lag gauge never came back to 0 after replay resumed: {:?}",
        lag_gauge(&s).await
    );
    standby.close().await;
    s.stop().await;
}
