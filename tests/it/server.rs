//! Health, reflection, shutdown, and the transition table end to end.

use std::time::Duration;

use pb::TicketStatus as S;
use servicelevel::api::pb;
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::fixtures::*;
use crate::harness::*;

async fn health_follows_the_database_and_shutdown(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    let mut health = HealthClient::new(connect(s.addr).await);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    let status = health
        .check(Request::new(check("")))
        .await
        .expect("health answers")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let status = health
        .check(Request::new(check("servicelevel.v1.TicketService")))
        .await
        .expect("health answers")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    // The database goes away: NOT_SERVING within the probe interval.
    s.store.close().await;
    let mut flipped = false;
    for _ in 0..60 {
        let status = health
            .check(Request::new(check("")))
            .await
            .expect("health answers")
            .into_inner()
            .status;
        if status == ServingStatus::NotServing as i32 {
            flipped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        flipped,
        "health turned NOT_SERVING with the database unreachable"
    );
    // And calls that need the database say UNAVAILABLE, not INTERNAL.
    let st = expect_code(
        s.calendars
            .clone()
            .get_calendar(Request::new(pb::GetCalendarRequest {
                name: "calendars/any".into(),
                version: 0,
            }))
            .await,
        Code::Unavailable,
    );
    assert!(!st.message().is_empty());
    s.stop().await;
}

async fn shutdown_turns_health_not_serving_first(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    let mut health = HealthClient::new(connect(s.addr).await);
    let mut watch = health
        .watch(Request::new(HealthCheckRequest {
            service: String::new(),
        }))
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("stream").expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let stopping = tokio::spawn(s.stop());
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a status before the stream ends");
    if let Ok(Some(m)) = next {
        assert_eq!(m.status, ServingStatus::NotServing as i32);
    }
    stopping.await.expect("stopped");
}

async fn reflection_lists_the_services(db: Db) {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    let mut client = ServerReflectionClient::new(connect(s.addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let resp = stream.message().await.expect("stream").expect("a response");
    let names: Vec<String> = match resp.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected {other:?}"),
    };
    for svc in [
        "servicelevel.v1.TicketService",
        "servicelevel.v1.DeadlineService",
        "servicelevel.v1.CalendarService",
        "servicelevel.v1.OrganizationService",
        "servicelevel.v1.PolicyService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&svc.to_string()), "{svc} not in {names:?}");
    }
    s.stop().await;
}

/// Every (from, to) pair of the base table, through the API.
async fn every_transition_legal_and_illegal(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    create_policy(
        &s,
        "plain",
        pb::PolicyDefinition {
            clocks: vec![promise(
                "first_response",
                vec![on_received()],
                vec![],
                vec![target(&[], &[], &[], wall(60))],
            )],
            ..Default::default()
        },
    )
    .await;
    create_org(&s, "acme", organization("UTC", "", "plain", vec![], vec![])).await;
    let all = [
        S::New,
        S::Confirmed,
        S::Processing,
        S::RequiresDeliverables,
        S::OutOfScope,
        S::Escalated,
        S::Scheduled,
        S::SubmittedForReview,
        S::Resolved,
        S::Closed,
        S::Cancelled,
    ];
    let open = |x: S| !matches!(x, S::Resolved | S::Closed | S::Cancelled);
    let mut n = 0;
    for from in all {
        for to in all {
            n += 1;
            let t = create_ticket(
                &s,
                ticket(
                    "acme",
                    &format!("X-{n}"),
                    "task",
                    "",
                    utc(2026, 3, 9, 10, 0),
                ),
            )
            .await;
            if from != S::New {
                record(&s, &t.name, event(utc(2026, 3, 9, 10, 1), status(from)))
                    .await
                    .expect("reachable");
            }
            let legal = to != S::New
                && to != from
                && (open(from) || (from == S::Resolved && to == S::Closed));
            let r = record(&s, &t.name, event(utc(2026, 3, 9, 10, 2), status(to))).await;
            match (legal, r) {
                (true, Ok(after)) => assert_eq!(after.status, to as i32, "{from:?} -> {to:?}"),
                (false, Err(st)) => assert_eq!(
                    st.code(),
                    Code::FailedPrecondition,
                    "{from:?} -> {to:?}: {st:?}"
                ),
                (legal, r) => panic!("{from:?} -> {to:?}: legal = {legal}, got {r:?}"),
            }
        }
    }
    // Reopen: only from RESOLVED or CLOSED, to PROCESSING with a new cycle.
    let t = create_ticket(
        &s,
        ticket("acme", "R-1", "task", "", utc(2026, 3, 9, 10, 0)),
    )
    .await;
    let st = record(
        &s,
        &t.name,
        event(utc(2026, 3, 9, 10, 1), pb::ticket_event::Kind::Reopen(())),
    )
    .await
    .expect_err("a NEW ticket cannot reopen");
    assert_eq!(st.code(), Code::FailedPrecondition);
    record(
        &s,
        &t.name,
        event(utc(2026, 3, 9, 10, 2), status(S::Closed)),
    )
    .await
    .expect("closed");
    let t = record(
        &s,
        &t.name,
        event(utc(2026, 3, 9, 10, 3), pb::ticket_event::Kind::Reopen(())),
    )
    .await
    .expect("reopened");
    assert_eq!((t.status, t.cycle), (S::Processing as i32, 1));
    s.stop().await;
}

crate::on_both_stores!(
    health_follows_the_database_and_shutdown,
    shutdown_turns_health_not_serving_first,
    reflection_lists_the_services,
    every_transition_legal_and_illegal,
);
