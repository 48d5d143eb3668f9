//! Explained deadlines and attainment reports, on the Clevr pack.

use chrono::{DateTime, Utc};
use pb::TicketStatus as S;
use servicelevel::api::pb;
use tonic::Request;

use crate::fixtures::*;
use crate::harness::*;

const TO: chrono_tz::Tz = chrono_tz::America::Toronto;

fn responded() -> pb::ticket_event::Kind {
    pb::ticket_event::Kind::AgentResponse(())
}

async fn clevr_org(s: &TestServer, holidays: &[&str]) {
    import_pack(s, "clevr").await;
    let mut support = binding("support", "clevr-support");
    support.extra_holidays = holidays.iter().map(|h| h.to_string()).collect();
    create_org(
        s,
        "northwind",
        organization("America/Toronto", "", "clevr", vec![support], vec![]),
    )
    .await;
}

fn spans(list: &[pb::TimeInterval]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    list.iter()
        .map(|i| {
            (
                from_ts(&i.start_time).expect("start"),
                from_ts(&i.end_time).expect("end"),
            )
        })
        .collect()
}

/// A sev-2 first response over a weekend, a holiday, DST and a pause, explained.
async fn a_deadline_is_explained(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 6, 16, 0)).await;
    clevr_org(&s, &["2026-03-09"]).await;
    let t = create_ticket(
        &s,
        ticket(
            "northwind",
            "T-1",
            "incident",
            "sev-2",
            local(TO, 2026, 3, 6, 16, 0),
        ),
    )
    .await;
    s.set_now(local(TO, 2026, 3, 10, 9, 30));
    record(
        &s,
        &t.name,
        event(
            local(TO, 2026, 3, 10, 8, 30),
            status(S::RequiresDeliverables),
        ),
    )
    .await
    .expect("paused");
    let after = record(
        &s,
        &t.name,
        event(local(TO, 2026, 3, 10, 9, 0), status(S::Processing)),
    )
    .await
    .expect("resumed");
    // 4 business hours on Mon-Fri 08:00-18:30 Toronto: Friday 16:00-18:30 (2 h 30), the
    // weekend closed (DST starts on the Sunday), Monday the organisation's holiday,
    // Tuesday (EDT) 08:00-08:30 (30 min), paused 08:30-09:00, then 09:00-10:00: due
    // Tuesday 10:00 EDT.
    assert_eq!(
        deadline(&after, "first_response"),
        Some(local(TO, 2026, 3, 10, 10, 0))
    );
    let e = s
        .deadlines
        .clone()
        .explain_deadline(Request::new(pb::ExplainDeadlineRequest {
            ticket: t.name.clone(),
            metric: "first_response".into(),
            instance: None,
        }))
        .await
        .expect("explained")
        .into_inner();
    assert_eq!(e.policy, "policies/clevr");
    assert_eq!(e.policy_version, 1);
    assert_eq!(
        e.source,
        "Within 4 hours (reading: Four hours of support time.)"
    );
    assert_eq!(e.rule_kind, "business_minutes");
    assert_eq!(e.rule, "240 business minutes on calendar slot support");
    assert_eq!(e.calendar_slot, "support");
    assert_eq!(e.calendar, "calendars/clevr-support");
    assert_eq!(
        spans(&e.counted),
        vec![
            (local(TO, 2026, 3, 6, 16, 0), local(TO, 2026, 3, 6, 18, 30)),
            (local(TO, 2026, 3, 10, 8, 0), local(TO, 2026, 3, 10, 8, 30)),
            (local(TO, 2026, 3, 10, 9, 0), local(TO, 2026, 3, 10, 10, 0)),
        ]
    );
    assert_eq!(
        e.counted_duration.as_ref().map(|d| d.seconds),
        Some(4 * 3600)
    );
    assert_eq!(
        spans(&e.paused),
        vec![(local(TO, 2026, 3, 10, 8, 30), local(TO, 2026, 3, 10, 9, 0))]
    );
    assert_eq!(e.holidays_skipped, vec!["2026-03-09".to_string()]);
    assert_eq!(
        e.closed_days_skipped,
        vec!["2026-03-07".to_string(), "2026-03-08".to_string()]
    );
    assert_eq!(from_ts(&e.until_time), Some(local(TO, 2026, 3, 10, 10, 0)));
    assert_eq!(
        from_ts(&e.clock.expect("clock").deadline_time),
        Some(local(TO, 2026, 3, 10, 10, 0))
    );

    // Errors name what is wrong.
    let bad = s
        .deadlines
        .clone()
        .explain_deadline(Request::new(pb::ExplainDeadlineRequest {
            ticket: t.name.clone(),
            metric: "no_such_metric".into(),
            instance: None,
        }))
        .await;
    expect_code(bad, tonic::Code::NotFound);
    let bad = s
        .deadlines
        .clone()
        .explain_deadline(Request::new(pb::ExplainDeadlineRequest {
            ticket: "tickets/".into(),
            metric: "Not A Metric".into(),
            instance: Some(-1),
        }))
        .await;
    let status = expect_code(bad, tonic::Code::InvalidArgument);
    assert_eq!(
        violations(&status),
        vec![
            "ticket".to_string(),
            "metric".to_string(),
            "instance".to_string()
        ]
    );
    s.stop().await;
}

/// Met, breached (late, and still running) and cancelled promises, per month and quarter.
async fn attainment_is_reported_per_period(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 2, 8, 0)).await;
    clevr_org(&s, &[]).await;
    // Four sev-2 tickets on Monday 2026-03-02, 4 business hours each (Mon-Fri 08:00-18:30):
    // A received 08:00, answered 09:00 -> met in 1 h;
    // B received 08:00, answered 11:00 -> met in 3 h;
    // C received 08:00, due 12:00, answered 13:00 -> breached, stopped after 5 h;
    // D received 08:00, due 12:00, never answered -> breached at 12:00, still running.
    let mut names = Vec::new();
    for (i, answered) in [Some(9), Some(11), Some(13), None].into_iter().enumerate() {
        let t = create_ticket(
            &s,
            ticket(
                "northwind",
                &format!("A-{i}"),
                "incident",
                "sev-2",
                local(TO, 2026, 3, 2, 8, 0),
            ),
        )
        .await;
        names.push((t.name.clone(), answered));
    }
    s.set_now(local(TO, 2026, 3, 2, 14, 0));
    for (name, answered) in &names {
        if let Some(h) = answered {
            record(&s, name, event(local(TO, 2026, 3, 2, *h, 0), responded()))
                .await
                .expect("answered");
        }
    }
    // One sev-1 in April, answered within its business hour: met in 30 min.
    s.set_now(local(TO, 2026, 4, 1, 10, 0));
    let april = create_ticket(
        &s,
        ticket(
            "northwind",
            "B-1",
            "incident",
            "sev-1",
            local(TO, 2026, 4, 1, 9, 0),
        ),
    )
    .await;
    record(
        &s,
        &april.name,
        event(local(TO, 2026, 4, 1, 9, 30), responded()),
    )
    .await
    .expect("answered");

    let report = |period: pb::AttainmentPeriod, metric: &str| {
        let s = &s;
        let metric = metric.to_string();
        async move {
            s.deadlines
                .clone()
                .report_attainment(Request::new(pb::ReportAttainmentRequest {
                    organization: "organizations/northwind".into(),
                    metric,
                    period: period as i32,
                    start_date: "2026-01-01".into(),
                    end_date: "2027-01-01".into(),
                }))
                .await
                .expect("report")
                .into_inner()
        }
    };
    let monthly = report(pb::AttainmentPeriod::Month, "first_response").await;
    let lines: Vec<_> = monthly
        .lines
        .iter()
        .map(|l| {
            (
                l.priority.as_str(),
                l.period_start_date.as_str(),
                l.met,
                l.breached,
                l.cancelled,
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            ("sev-1", "2026-04-01", 1, 0, 0),
            ("sev-2", "2026-03-01", 2, 2, 0),
        ]
    );
    let march = &monthly.lines[1];
    assert_eq!(march.attainment_rate, Some(0.5));
    // Times to stop of A, B and C: 1 h, 3 h, 5 h -> median (rank 2) 3 h, p90 (rank 3) 5 h.
    assert_eq!(
        march.median_time_to_stop.as_ref().map(|d| d.seconds),
        Some(3 * 3600)
    );
    assert_eq!(
        march.p90_time_to_stop.as_ref().map(|d| d.seconds),
        Some(5 * 3600)
    );
    // By quarter, March and April fall in different quarters; sev-1 and sev-2 stay apart.
    let quarterly = report(pb::AttainmentPeriod::Quarter, "first_response").await;
    let periods: Vec<_> = quarterly
        .lines
        .iter()
        .map(|l| (l.priority.as_str(), l.period_start_date.as_str(), l.met))
        .collect();
    assert_eq!(
        periods,
        vec![("sev-1", "2026-04-01", 1), ("sev-2", "2026-01-01", 2)]
    );
    // A range that must be refused.
    let bad = s
        .deadlines
        .clone()
        .report_attainment(Request::new(pb::ReportAttainmentRequest {
            start_date: "2026-03-01".into(),
            end_date: "2026-02-01".into(),
            ..Default::default()
        }))
        .await;
    let status = expect_code(bad, tonic::Code::InvalidArgument);
    assert_eq!(violations(&status), vec!["end_date".to_string()]);
    s.stop().await;
}

fn first_response_moves<'a>(p: &'a pb::ChangePreview, ticket: &str) -> Vec<&'a pb::PreviewedClock> {
    p.largest_moves
        .iter()
        .filter(|c| c.ticket == ticket && c.metric == "first_response")
        .collect()
}

/// A calendar change previewed: which deadlines move and by how much; nothing changes.
async fn a_calendar_change_is_previewed(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 2, 13, 0)).await;
    clevr_org(&s, &[]).await;
    let a = create_ticket(
        &s,
        ticket(
            "northwind",
            "P-A",
            "incident",
            "sev-2",
            local(TO, 2026, 3, 2, 12, 0),
        ),
    )
    .await;
    let b = create_ticket(
        &s,
        ticket(
            "northwind",
            "P-B",
            "incident",
            "sev-2",
            local(TO, 2026, 3, 2, 8, 0),
        ),
    )
    .await;
    let preview = s
        .calendars
        .clone()
        .preview_calendar_update(Request::new(pb::PreviewCalendarUpdateRequest {
            update: Some(pb::UpdateCalendarRequest {
                name: "calendars/clevr-support".into(),
                definition: Some(weekdays("America/Toronto", &[("08:00", "14:00")], &[])),
                ..Default::default()
            }),
        }))
        .await
        .expect("preview")
        .into_inner();
    assert_eq!(preview.tickets_examined, 2);
    // A: received Monday 12:00, 4 business hours. Now (13:00) 1 h is used; on the new
    // hours 13:00-14:00 counts 1 h more and Tuesday 08:00-10:00 the last 2 h: due Tuesday
    // 10:00 instead of Monday 16:00, 18 h later.
    let moved = first_response_moves(&preview, &a.name);
    assert_eq!(moved.len(), 1, "{preview:?}");
    assert_eq!(
        from_ts(&moved[0].current_deadline_time),
        Some(local(TO, 2026, 3, 2, 16, 0))
    );
    assert_eq!(
        from_ts(&moved[0].new_deadline_time),
        Some(local(TO, 2026, 3, 3, 10, 0))
    );
    assert!(
        preview
            .max_later
            .as_ref()
            .is_some_and(|d| d.seconds >= 18 * 3600)
    );
    // B breached at 12:00, before the change takes effect: its first response stays.
    assert!(first_response_moves(&preview, &b.name).is_empty());
    // A calendar change applies from now on, so it cannot breach a running clock now.
    assert_eq!(preview.newly_breached_count, 0);
    // Nothing was changed.
    let cal = s
        .calendars
        .clone()
        .get_calendar(Request::new(pb::GetCalendarRequest {
            name: "calendars/clevr-support".into(),
            version: 0,
        }))
        .await
        .expect("calendar")
        .into_inner();
    assert_eq!(cal.version, 1);
    assert_eq!(
        deadline(&get(&s, &a.name).await, "first_response"),
        Some(local(TO, 2026, 3, 2, 16, 0))
    );
    s.stop().await;
}

/// A policy change previewed: a shorter target breaches a running clock at once.
async fn a_policy_change_is_previewed(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 2, 11, 0)).await;
    clevr_org(&s, &[]).await;
    let a = create_ticket(
        &s,
        ticket(
            "northwind",
            "Q-A",
            "incident",
            "sev-2",
            local(TO, 2026, 3, 2, 8, 0),
        ),
    )
    .await;
    let policy = s
        .policies
        .clone()
        .get_policy(Request::new(pb::GetPolicyRequest {
            name: "policies/clevr".into(),
            version: 0,
        }))
        .await
        .expect("policy")
        .into_inner();
    let mut def = policy.definition.expect("definition");
    // sev-2 first response: 4 business hours -> 2.
    let first = def
        .clocks
        .iter_mut()
        .find(|c| c.metric == "first_response")
        .expect("first_response");
    let sev2 = first
        .targets
        .iter_mut()
        .find(|t| {
            t.applies
                .as_ref()
                .is_some_and(|a| a.priorities.iter().any(|p| p == "sev-2"))
        })
        .expect("sev-2 target");
    sev2.duration = Some(business_minutes("support", 120));
    let preview = s
        .policies
        .clone()
        .preview_policy_update(Request::new(pb::PreviewPolicyUpdateRequest {
            update: Some(pb::UpdatePolicyRequest {
                name: "policies/clevr".into(),
                definition: Some(def),
                ..Default::default()
            }),
        }))
        .await
        .expect("preview")
        .into_inner();
    // Received 08:00: due 12:00 today, 10:00 under the change; it is 11:00 now, so the
    // clock would be breached: 2 h earlier.
    assert_eq!(preview.tickets_examined, 1);
    assert_eq!(preview.newly_breached_count, 1);
    let breached = &preview.newly_breached[0];
    assert_eq!(breached.ticket, a.name);
    assert_eq!(breached.metric, "first_response");
    assert_eq!(
        from_ts(&breached.new_deadline_time),
        Some(local(TO, 2026, 3, 2, 10, 0))
    );
    assert_eq!(
        preview.max_earlier.as_ref().map(|d| d.seconds),
        Some(2 * 3600)
    );
    assert_eq!(preview.clocks_moved, 1);
    s.stop().await;
}

crate::on_both_stores!(
    a_deadline_is_explained,
    attainment_is_reported_per_period,
    a_calendar_change_is_previewed,
    a_policy_change_is_previewed,
);
