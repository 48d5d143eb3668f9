//! The due-time runner, retractions and the live alert stream.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use pb::TicketStatus as S;
use servicelevel::api::pb;
use servicelevel::api::pb::alert_service_client::AlertServiceClient;
use tonic::Request;

use crate::fixtures::*;
use crate::harness::*;

const NY: chrono_tz::Tz = chrono_tz::America::New_York;

/// A desk with a 60-minute first response (warning at 50 %) and Concinnity's review
/// auto-close: 5 business days EndOfDay on Mon-Fri 09:00-17:00 New York.
async fn desk(s: &TestServer) {
    create_calendar(
        s,
        "office",
        weekdays("America/New_York", &[("09:00", "17:00")], &[]),
    )
    .await;
    let mut first = promise(
        "first_response",
        vec![on_received()],
        vec![on_event(pb::EventSignal::AgentResponded)],
        vec![target(&[], &[], &[], wall(60))],
    );
    first.targets[0].warning_percentages = vec![50];
    let mut review = promise(
        "review_autoclose",
        vec![entered(S::SubmittedForReview)],
        vec![left(S::SubmittedForReview)],
        vec![target(
            &[],
            &[],
            &[],
            business_days("office", 5, pb::BusinessDayMode::EndOfDay),
        )],
    );
    review.kind = pb::ClockKind::Timer as i32;
    review.no_pause = true;
    review.targets[0].on_due = Some(pb::DueAction {
        kind: Some(pb::due_action::Kind::MoveTo(pb::MoveToStatus {
            status: S::Closed as i32,
            reason: "auto_closed".into(),
        })),
    });
    create_policy(
        s,
        "desk",
        pb::PolicyDefinition {
            clocks: vec![first, review],
            ..Default::default()
        },
    )
    .await;
    create_org(
        s,
        "acme",
        organization(
            "America/New_York",
            "",
            "desk",
            vec![binding("office", "office")],
            vec![],
        ),
    )
    .await;
}

/// The ticket's events of servicelevel's own (kind name, occurred time), once `n` are
/// there (the runner works in the background).
async fn system_events(s: &TestServer, ticket: &str, n: usize) -> Vec<(String, DateTime<Utc>)> {
    let mut got = Vec::new();
    for _ in 0..200 {
        let t = get(s, ticket).await;
        got = t
            .events
            .iter()
            .filter(|e| e.recorded_by == "servicelevel")
            .map(|e| {
                let kind = match &e.kind {
                    Some(pb::ticket_event::Kind::ClockWarning(w)) => {
                        format!("warning:{}:{}", w.metric, w.level)
                    }
                    Some(pb::ticket_event::Kind::ClockBreach(b)) => format!("breach:{}", b.metric),
                    Some(pb::ticket_event::Kind::ActionTaken(a)) => format!("action:{}", a.metric),
                    Some(pb::ticket_event::Kind::Retraction(r)) => {
                        format!("retraction:{}", r.sequence)
                    }
                    other => format!("{other:?}"),
                };
                (kind, from_ts(&e.occurred_time).expect("time"))
            })
            .collect();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("expected {n} system events on {ticket}, got {got:?}")
}

async fn the_runner_acts_at_due_instants_and_catches_up_after_a_restart(db: Db) {
    let mut s = TestServer::start(db, local(NY, 2026, 3, 12, 10, 0)).await;
    desk(&s).await;
    // Received Thursday 10:00: warning at 10:30, first response due 11:00.
    let t = create_ticket(
        &s,
        ticket("acme", "R-1", "task", "", local(NY, 2026, 3, 12, 10, 0)),
    )
    .await;
    s.set_now(local(NY, 2026, 3, 12, 10, 45));
    let got = system_events(&s, &t.name, 1).await;
    assert_eq!(
        got,
        vec![(
            "warning:first_response:50".into(),
            local(NY, 2026, 3, 12, 10, 30)
        )]
    );
    // Submitted for review at 10:50; the auto-close is due at the end of the 5th business
    // day after Thursday: Fri, Mon, Tue, Wed, Thu -> Thursday 03-19 17:00.
    record(
        &s,
        &t.name,
        event(
            local(NY, 2026, 3, 12, 10, 50),
            status(S::SubmittedForReview),
        ),
    )
    .await
    .expect("submitted");
    // The service is down from 10:55 and comes back a week later: it catches up, stamping
    // each action with its own due instant, not the time it caught up.
    s.pause().await;
    s.set_now(local(NY, 2026, 3, 20, 8, 0));
    s.restart().await;
    let got = system_events(&s, &t.name, 3).await;
    assert_eq!(
        got,
        vec![
            (
                "warning:first_response:50".into(),
                local(NY, 2026, 3, 12, 10, 30)
            ),
            (
                "breach:first_response".into(),
                local(NY, 2026, 3, 12, 11, 0)
            ),
            (
                "action:review_autoclose".into(),
                local(NY, 2026, 3, 19, 17, 0)
            ),
        ]
    );
    let after = get(&s, &t.name).await;
    assert_eq!(after.status, S::Closed as i32);
    assert_eq!(state(&after, "review_autoclose"), pb::ClockState::Fired);
    // Nothing more is recorded however often the runner looks again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(system_events(&s, &t.name, 3).await.len(), 3);
    s.stop().await;
}

async fn late_events_retract_what_they_show_wrong(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 12, 10, 0)).await;
    desk(&s).await;
    let t = create_ticket(
        &s,
        ticket("acme", "R-2", "task", "", local(NY, 2026, 3, 12, 10, 0)),
    )
    .await;
    record(
        &s,
        &t.name,
        event(
            local(NY, 2026, 3, 12, 10, 5),
            pb::ticket_event::Kind::AgentResponse(()),
        ),
    )
    .await
    .expect("answered");
    record(
        &s,
        &t.name,
        event(local(NY, 2026, 3, 12, 11, 0), status(S::SubmittedForReview)),
    )
    .await
    .expect("submitted");
    // A week later the runner auto-closes it at Thursday 03-19 17:00.
    s.set_now(local(NY, 2026, 3, 20, 9, 0));
    let got = system_events(&s, &t.name, 1).await;
    assert_eq!(
        got,
        vec![(
            "action:review_autoclose".into(),
            local(NY, 2026, 3, 19, 17, 0)
        )]
    );
    assert_eq!(get(&s, &t.name).await.status, S::Closed as i32);
    // The CRM now sends what happened on Wednesday: the customer asked for changes, the
    // ticket went back to PROCESSING. The auto-close was wrong: it is retracted (not
    // deleted, not reopened), and the ticket is PROCESSING again.
    let after = record(
        &s,
        &t.name,
        event(local(NY, 2026, 3, 18, 15, 0), status(S::Processing)),
    )
    .await
    .expect("late event");
    assert_eq!(after.status, S::Processing as i32);
    let got = system_events(&s, &t.name, 2).await;
    assert_eq!(got[0].0, "action:review_autoclose");
    assert!(got[1].0.starts_with("retraction:"), "{got:?}");
    let full = get(&s, &t.name).await;
    assert_eq!(
        full.events
            .iter()
            .filter(|e| e.recorded_by == "servicelevel")
            .count(),
        2
    );
    s.stop().await;
}

async fn collect(
    client: &mut AlertServiceClient<tonic::transport::Channel>,
    cursor: &str,
    n: usize,
) -> Vec<pb::Alert> {
    let mut stream = client
        .watch_alerts(Request::new(pb::WatchAlertsRequest {
            cursor: cursor.into(),
            ..Default::default()
        }))
        .await
        .expect("stream")
        .into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
            Ok(Ok(Some(a))) => out.push(a),
            other => panic!("stream ended after {} of {n}: {other:?}", out.len()),
        }
    }
    out
}

async fn a_reconnecting_alert_client_misses_nothing_and_sees_nothing_twice(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 12, 9, 0)).await;
    desk(&s).await;
    let mut alerts = AlertServiceClient::new(connect(s.addr).await);
    // Six tickets received a minute apart: each warns at +30 and breaches at +60.
    for i in 0..6 {
        create_ticket(
            &s,
            ticket(
                "acme",
                &format!("A-{i}"),
                "task",
                "",
                local(NY, 2026, 3, 12, 9, i),
            ),
        )
        .await;
    }
    // Their warnings: read three, then the client disconnects.
    s.set_now(local(NY, 2026, 3, 12, 9, 40));
    let first = collect(&mut alerts, "", 3).await;
    // While it is away, the breaches happen.
    s.set_now(local(NY, 2026, 3, 12, 11, 0));
    // It comes back with its last cursor: the other 3 warnings and the 6 breaches, in
    // order, none twice.
    let rest = collect(&mut alerts, &first[2].cursor, 9).await;
    let all: Vec<pb::Alert> = first.into_iter().chain(rest).collect();
    let from_scratch = collect(&mut alerts, "", 12).await;
    assert_eq!(all, from_scratch);
    let kinds: Vec<i32> = all.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == pb::AlertKind::Warning as i32)
            .count(),
        6
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == pb::AlertKind::Breach as i32)
            .count(),
        6
    );
    let mut cursors: Vec<&String> = all.iter().map(|a| &a.cursor).collect();
    cursors.dedup();
    assert_eq!(cursors.len(), 12, "no alert twice");
    // Each alert carries its event, stamped with the instant the clock reached it.
    let breach = all
        .iter()
        .find(|a| a.kind == pb::AlertKind::Breach as i32)
        .expect("a breach");
    assert!(from_ts(&breach.event.as_ref().expect("event").occurred_time).is_some());
    let _ = TimeDelta::zero();
    s.stop().await;
}

crate::on_both_stores!(
    the_runner_acts_at_due_instants_and_catches_up_after_a_restart,
    late_events_retract_what_they_show_wrong,
    a_reconnecting_alert_client_misses_nothing_and_sees_nothing_twice,
);
