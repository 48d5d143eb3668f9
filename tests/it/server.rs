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

/// A health watch on the whole server, after its first answer, SERVING.
async fn watch_serving(
    channel: tonic::transport::Channel,
) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    let mut watch = HealthClient::new(channel)
        .watch(Request::new(HealthCheckRequest {
            service: String::new(),
        }))
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("stream").expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    watch
}

async fn shutdown_turns_health_not_serving_first(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    let mut watch = watch_serving(connect(s.addr).await).await;
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
            clocks: vec![first_response_within_an_hour()],
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

/// A child process killed if a test ends without it having exited.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A `servicelevel serve` process given SIGTERM: readiness turns NOT_SERVING first, the
/// call in flight finishes (here once the database lets it), and the process exits
/// cleanly, well before its drain timeout.
async fn sigterm_drains_a_real_process(db: Db) {
    let fresh = fresh_database(db).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut child = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_servicelevel"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--drain-timeout",
                "20",
            ])
            .env("SERVICELEVEL_DATABASE_URL", &fresh.url)
            .env("SERVICELEVEL_MIGRATION_DATABASE_URL", &fresh.direct_url)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("servicelevel starts"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut channel = None;
    for _ in 0..300 {
        if let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
        {
            channel = Some(ch);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let channel = channel.expect("the process listens (migrated, serving)");
    let mut watch = watch_serving(channel.clone()).await;

    // A call in flight, held by the database.
    let lock = WriteLock::take_on(&fresh.url, db).await;
    let mut calendars = CalendarServiceClient::new(channel);
    let in_flight = tokio::spawn(async move {
        calendars
            .create_calendar(Request::new(calendar_request("draining", "draining")))
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a status soon after SIGTERM")
        .expect("the stream is open")
        .expect("a status");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // A probe's stream would be cut at the drain timeout; this one lets go.
    drop(watch);
    assert!(
        !in_flight.is_finished(),
        "the call waits on the database, not refused"
    );
    lock.release().await;
    let created = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the call in flight finishes")
        .expect("joined")
        .expect("and succeeds")
        .into_inner();
    assert_eq!(created.name, "calendars/draining");
    // Then the process exits by itself, cleanly, long before its 20 s drain timeout.
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = child.0.try_wait().expect("waits") {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = exited.expect("the process exits within 10 s of its last call");
    assert!(status.success(), "{status:?}");
    fresh.remove().await;
}

crate::on_both_stores!(
    sigterm_drains_a_real_process,
    health_follows_the_database_and_shutdown,
    shutdown_turns_health_not_serving_first,
    reflection_lists_the_services,
    every_transition_legal_and_illegal,
    a_call_past_its_deadline_is_cancelled_with_its_work,
    calls_past_the_concurrency_limit_are_shed,
    an_oversized_request_is_refused,
);

/// Another session holds the write lock the server's writes need, until dropped.
pub(crate) struct WriteLock(sqlx::AnyConnection);

impl WriteLock {
    pub(crate) async fn take(s: &TestServer, db: Db) -> WriteLock {
        WriteLock::take_on(&s.url, db).await
    }

    async fn take_on(url: &str, db: Db) -> WriteLock {
        use sqlx::Connection as _;
        let mut conn = sqlx::AnyConnection::connect(url)
            .await
            .expect("a second session");
        let sql = match db {
            // SQLite has one writer: an open write transaction holds the others off.
            // Postgres: writes to the catalog wait, reads pass.
            Db::Sqlite => "BEGIN IMMEDIATE",
            Db::Postgres => "BEGIN; LOCK TABLE resources IN EXCLUSIVE MODE",
        };
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .expect("lock taken");
        WriteLock(conn)
    }

    pub(crate) async fn release(mut self) {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("lock released");
    }
}

fn calendar_request(id: &str, request_id: &str) -> pb::CreateCalendarRequest {
    pb::CreateCalendarRequest {
        calendar_id: id.into(),
        calendar: Some(pb::Calendar {
            display_name: id.into(),
            definition: Some(always_open("UTC")),
            ..Default::default()
        }),
        request_id: request_id.into(),
    }
}

/// A call past its deadline ends while the database still keeps it waiting, and its
/// database work goes with it: nothing is written, no connection is lost, and the same
/// request id may be retried. The deadline is the caller's (`grpc-timeout`, which the
/// tonic client also enforces itself) or the server's limit, whichever comes first.
async fn a_call_past_its_deadline_is_cancelled_with_its_work(db: Db) {
    let options = servicelevel::server::ServeOptions {
        rpc_timeout: Duration::from_secs(1),
        ..test_options()
    };
    let s = TestServer::start_with(db, utc(2026, 3, 9, 12, 0), options).await;
    let lock = WriteLock::take(&s, db).await;
    // More cancelled calls than the pool has connections: a leaked connection or an
    // abandoned open transaction would starve the calls after them.
    for i in 0..10 {
        let mut req = Request::new(calendar_request(&format!("late-{i}"), &format!("late-{i}")));
        let callers_deadline = i % 2 == 0;
        if callers_deadline {
            req.set_timeout(Duration::from_millis(200));
        }
        let outcome = tokio::time::timeout(
            Duration::from_secs(20),
            s.calendars.clone().create_calendar(req),
        )
        .await
        .expect("the call ends at its deadline, not when the lock goes");
        let st = outcome.expect_err("a call past its deadline fails");
        if callers_deadline {
            // Whichever side notices first: tonic's client says CANCELLED.
            assert!(
                matches!(st.code(), Code::DeadlineExceeded | Code::Cancelled),
                "{st:?}"
            );
        } else {
            assert_eq!(st.code(), Code::DeadlineExceeded, "{st:?}");
            assert!(st.message().contains("deadline"), "{st:?}");
        }
    }
    lock.release().await;
    for i in 0..10 {
        let id = format!("calendars/late-{i}");
        // Nothing of the cancelled call was written ...
        let st = expect_code(
            s.calendars
                .clone()
                .get_calendar(Request::new(pb::GetCalendarRequest {
                    name: id.clone(),
                    version: 0,
                }))
                .await,
            Code::NotFound,
        );
        assert!(st.message().contains("late"), "{st:?}");
        // ... and the same request id now does the work.
        let created = tokio::time::timeout(
            Duration::from_secs(20),
            s.calendars
                .clone()
                .create_calendar(Request::new(calendar_request(
                    &format!("late-{i}"),
                    &format!("late-{i}"),
                ))),
        )
        .await
        .expect("the database is free again")
        .expect("the retry succeeds")
        .into_inner();
        assert_eq!(created.name, id);
    }
    s.stop().await;
}

/// Past the concurrency limit calls are refused at once with RESOURCE_EXHAUSTED and a
/// retry hint; health checks are still answered; the calls admitted finish.
async fn calls_past_the_concurrency_limit_are_shed(db: Db) {
    let options = servicelevel::server::ServeOptions {
        max_concurrent_rpcs: 2,
        ..test_options()
    };
    let s = TestServer::start_with(db, utc(2026, 3, 9, 12, 0), options).await;
    let lock = WriteLock::take(&s, db).await;
    let admitted: Vec<_> = (0..2)
        .map(|i| {
            let mut client = s.calendars.clone();
            tokio::spawn(async move {
                // A probe below may hold a slot for a moment as these start: try again.
                loop {
                    let r = client
                        .create_calendar(Request::new(calendar_request(
                            &format!("admitted-{i}"),
                            &format!("admitted-{i}"),
                        )))
                        .await;
                    match r {
                        Err(st) if st.code() == Code::ResourceExhausted => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        r => return r,
                    }
                }
            })
        })
        .collect();
    // Once both hold their slots (they wait on the lock), a third is refused. The probes
    // run one at a time, so a refused probe means the two writers hold both slots.
    let mut refused = None;
    for _ in 0..1000 {
        let r = s
            .calendars
            .clone()
            .list_calendars(Request::new(pb::ListCalendarsRequest::default()))
            .await;
        match r {
            Err(st) if st.code() == Code::ResourceExhausted => {
                refused = Some(st);
                break;
            }
            Err(st) => panic!("a call is refused only for the limit: {st:?}"),
            // A list does not wait on the write lock, so while a slot is free it passes.
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let st = refused.expect("a third call is refused while two run");
    assert!(st.message().contains("limit of 2"), "{st:?}");
    assert_eq!(
        st.metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Probes are never shed.
    let mut health = HealthClient::new(connect(s.addr).await);
    let status = health
        .check(Request::new(HealthCheckRequest {
            service: String::new(),
        }))
        .await
        .expect("health answers at the limit")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    lock.release().await;
    for call in admitted {
        let created = call
            .await
            .expect("joined")
            .expect("an admitted call finishes")
            .into_inner();
        assert!(created.name.starts_with("calendars/admitted-"));
    }
    // The slots are back.
    s.calendars
        .clone()
        .list_calendars(Request::new(pb::ListCalendarsRequest::default()))
        .await
        .expect("a call after the load passes");
    s.stop().await;
}

/// A request over the size limit is refused before it is decoded, and writes nothing.
async fn an_oversized_request_is_refused(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    let mut big = calendar_request("big", "big");
    if let Some(c) = big.calendar.as_mut() {
        c.display_name = "x".repeat(servicelevel::server::MAX_REQUEST_BYTES + 1);
    }
    let st = s
        .calendars
        .clone()
        .create_calendar(Request::new(big))
        .await
        .expect_err("refused");
    assert_eq!(st.code(), Code::OutOfRange, "{st:?}");
    expect_code(
        s.calendars
            .clone()
            .get_calendar(Request::new(pb::GetCalendarRequest {
                name: "calendars/big".into(),
                version: 0,
            }))
            .await,
        Code::NotFound,
    );
    s.stop().await;
}
