//! Tickets, events and clocks through the API.

use servicelevel::api::pb;
use tonic::Code;

use crate::fixtures::*;
use crate::harness::*;

const TO: chrono_tz::Tz = chrono_tz::America::Toronto;

/// Clevr-like desk: sev-1 first response in 1 business hour on Mon-Fri 08:00-18:30.
pub(crate) async fn desk(s: &TestServer) {
    create_calendar(
        s,
        "support",
        weekdays("America/Toronto", &[("08:00", "18:30")], &[]),
    )
    .await;
    create_policy(
        s,
        "desk",
        pb::PolicyDefinition {
            priorities: vec!["sev-1".into(), "sev-2".into()],
            clocks: vec![promise(
                "first_response",
                vec![on_received()],
                vec![on_event(pb::EventSignal::AgentResponded)],
                vec![
                    target(&[], &["sev-1"], &[], business_minutes("support", 60)),
                    target(&[], &["sev-2"], &[], business_minutes("support", 240)),
                ],
            )],
            ..Default::default()
        },
    )
    .await;
    desk_org(s, "acme").await;
}

/// Another organisation on the desk's policy and calendar.
pub(crate) async fn desk_org(s: &TestServer, id: &str) {
    create_org(
        s,
        id,
        organization(
            "America/Toronto",
            "",
            "desk",
            vec![binding("support", "support")],
            vec![],
        ),
    )
    .await;
}

async fn a_ticket_gets_its_clocks_and_events_move_them(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 13, 17, 0)).await;
    desk(&s).await;
    // Friday 17:00 sev-1: 1 h 30 left today, so 1 business hour is Friday 18:00.
    let t = create_ticket(
        &s,
        ticket(
            "acme",
            "T-1",
            "incident",
            "sev-1",
            local(TO, 2026, 3, 13, 17, 0),
        ),
    )
    .await;
    assert_eq!(
        deadline(&t, "first_response"),
        Some(local(TO, 2026, 3, 13, 18, 0))
    );
    // Lowered to sev-2 at 17:10: 4 business hours from the original start, Friday 17:00
    // to 18:30 then Monday 08:00 to 10:30.
    let t2 = record(
        &s,
        &t.name,
        event(
            local(TO, 2026, 3, 13, 17, 10),
            pb::ticket_event::Kind::PriorityChange(pb::PriorityChange {
                priority: "sev-2".into(),
            }),
        ),
    )
    .await
    .expect("recorded");
    assert_eq!(
        deadline(&t2, "first_response"),
        Some(local(TO, 2026, 3, 16, 10, 30))
    );
    // An unknown priority label is bad input and changes nothing.
    s.set_now(local(TO, 2026, 3, 13, 17, 20));
    let status = expect_code(
        s.tickets
            .clone()
            .record_event(tonic::Request::new(pb::RecordEventRequest {
                ticket: t.name.clone(),
                event: Some(event(
                    local(TO, 2026, 3, 13, 17, 20),
                    pb::ticket_event::Kind::PriorityChange(pb::PriorityChange {
                        priority: "sev-9".into(),
                    }),
                )),
            }))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violations(&status),
        vec!["event.priority_change.priority".to_string()]
    );
    // The agent responds Monday 09:00: met.
    s.set_now(local(TO, 2026, 3, 16, 9, 30));
    record(
        &s,
        &t.name,
        event(
            local(TO, 2026, 3, 16, 9, 0),
            pb::ticket_event::Kind::AgentResponse(()),
        ),
    )
    .await
    .expect("recorded");
    let full = get(&s, &t.name).await;
    assert_eq!(state(&full, "first_response"), pb::ClockState::Met);
    assert_eq!(full.events.len(), 2);
    s.stop().await;
}

async fn illegal_transitions_and_conflicting_late_events_store_nothing(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 9, 9, 0)).await;
    desk(&s).await;
    let t = create_ticket(
        &s,
        ticket(
            "acme",
            "T-2",
            "incident",
            "sev-2",
            local(TO, 2026, 3, 9, 9, 0),
        ),
    )
    .await;
    record(
        &s,
        &t.name,
        event(
            local(TO, 2026, 3, 9, 10, 0),
            status(pb::TicketStatus::Processing),
        ),
    )
    .await
    .expect("recorded");
    record(
        &s,
        &t.name,
        event(
            local(TO, 2026, 3, 9, 11, 0),
            status(pb::TicketStatus::Resolved),
        ),
    )
    .await
    .expect("recorded");
    // RESOLVED leaves only by a reopen.
    let st = expect_code(
        record(
            &s,
            &t.name,
            event(
                local(TO, 2026, 3, 9, 12, 0),
                status(pb::TicketStatus::Processing),
            ),
        )
        .await
        .map(tonic::Response::new),
        Code::FailedPrecondition,
    );
    assert!(st.message().contains("reopen"), "{}", st.message());
    // A late CANCELLED at 09:30 would make the stored PROCESSING at 10:00 illegal.
    let st = expect_code(
        record(
            &s,
            &t.name,
            event(
                local(TO, 2026, 3, 9, 9, 30),
                status(pb::TicketStatus::Cancelled),
            ),
        )
        .await
        .map(tonic::Response::new),
        Code::FailedPrecondition,
    );
    assert!(
        st.message().contains("#1"),
        "names the stored event: {}",
        st.message()
    );
    let full = get(&s, &t.name).await;
    assert_eq!(full.events.len(), 2, "nothing was stored");
    assert_eq!(full.status, pb::TicketStatus::Resolved as i32);
    s.stop().await;
}

/// One clock per kind of duration, all paused by the same two open hours, one of them
/// recorded late.
async fn pauses_move_every_kind_of_deadline(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 9, 10, 0)).await;
    create_calendar(
        &s,
        "support",
        weekdays("America/Toronto", &[("08:00", "18:30")], &[]),
    )
    .await;
    let kinds: Vec<(&str, pb::Duration)> = vec![
        ("wall_clock", wall(24 * 60)),
        ("calendar_days", calendar_days(1)),
        ("business_minutes", business_minutes("support", 240)),
        (
            "business_days",
            business_days("support", 1, pb::BusinessDayMode::SameTime),
        ),
        ("scheduled", scheduled()),
        ("next_week", next_week("support")),
        ("open_hours", by_open_hours("support", wall(120), wall(720))),
        ("estimate", by_estimate(&[(180, wall(180))])),
    ];
    create_policy(
        &s,
        "kinds",
        pb::PolicyDefinition {
            clocks: kinds
                .iter()
                .map(|(m, d)| {
                    promise(
                        m,
                        vec![on_received()],
                        vec![],
                        vec![target(&[], &[], &[], d.clone())],
                    )
                })
                .collect(),
            ..Default::default()
        },
    )
    .await;
    create_org(
        &s,
        "acme",
        organization(
            "America/Toronto",
            "",
            "kinds",
            vec![binding("support", "support")],
            vec![],
        ),
    )
    .await;
    let mut t = ticket("acme", "K-1", "task", "", local(TO, 2026, 3, 9, 10, 0));
    t.estimate_minutes = 100;
    t.scheduled_time = ts(local(TO, 2026, 3, 11, 9, 0));
    let t = create_ticket(&s, t).await;
    // Without pauses (received Monday 2026-03-09 10:00, inside 08:00-18:30):
    let before = [
        ("wall_clock", local(TO, 2026, 3, 10, 10, 0)),
        ("calendar_days", local(TO, 2026, 3, 10, 10, 0)),
        ("business_minutes", local(TO, 2026, 3, 9, 14, 0)),
        ("business_days", local(TO, 2026, 3, 10, 10, 0)),
        ("scheduled", local(TO, 2026, 3, 11, 9, 0)),
        ("next_week", local(TO, 2026, 3, 16, 8, 0)),
        ("open_hours", local(TO, 2026, 3, 9, 12, 0)),
        ("estimate", local(TO, 2026, 3, 9, 13, 0)),
    ];
    for (metric, want) in before {
        assert_eq!(
            deadline(&t, metric),
            Some(want),
            "{metric} before the pause"
        );
    }
    // The customer was asked for deliverables 11:00-13:00 Monday (two open hours). The
    // resume arrives first, the pause late: the fold puts them in time order.
    s.set_now(local(TO, 2026, 3, 9, 15, 0));
    record(
        &s,
        &t.name,
        event(
            local(TO, 2026, 3, 9, 13, 0),
            status(pb::TicketStatus::Processing),
        ),
    )
    .await
    .expect("resumed");
    let t = record(
        &s,
        &t.name,
        event(
            local(TO, 2026, 3, 9, 11, 0),
            status(pb::TicketStatus::RequiresDeliverables),
        ),
    )
    .await
    .expect("late pause");
    // Every deadline moves by the two paused hours of its own calendar's time, except
    // the scheduled one (a fixed instant); next week's opening stays an opening, two
    // open hours later.
    let after = [
        ("wall_clock", local(TO, 2026, 3, 10, 12, 0)),
        ("calendar_days", local(TO, 2026, 3, 10, 12, 0)),
        ("business_minutes", local(TO, 2026, 3, 9, 16, 0)),
        ("business_days", local(TO, 2026, 3, 10, 12, 0)),
        ("scheduled", local(TO, 2026, 3, 11, 9, 0)),
        ("next_week", local(TO, 2026, 3, 16, 10, 0)),
        ("open_hours", local(TO, 2026, 3, 9, 14, 0)),
        ("estimate", local(TO, 2026, 3, 9, 15, 0)),
    ];
    for (metric, want) in after {
        assert_eq!(deadline(&t, metric), Some(want), "{metric} after the pause");
        assert_eq!(clock(&t, metric).pauses.len(), 1, "{metric}");
    }
    s.stop().await;
}

fn list_request(
    organization: &str,
    page_size: i32,
    page_token: &str,
    view: pb::TicketView,
) -> tonic::Request<pb::ListTicketsRequest> {
    tonic::Request::new(pb::ListTicketsRequest {
        organization: organization.into(),
        page_size,
        page_token: page_token.into(),
        view: view as i32,
        ..Default::default()
    })
}

/// Lists page through every ticket once, newest received first, filter by organisation,
/// status and external id, and show each ticket's clocks as GetTicket does.
async fn tickets_are_listed_in_pages_with_their_clocks(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 13, 17, 0)).await;
    desk(&s).await;
    desk_org(&s, "globex").await;
    let mut created = Vec::new();
    for (i, org) in ["acme", "globex", "acme", "acme", "globex", "acme", "acme"]
        .iter()
        .enumerate()
    {
        let priority = if i % 2 == 0 { "sev-1" } else { "sev-2" };
        let received = local(TO, 2026, 3, 13, 9, i as u32);
        let t = create_ticket(
            &s,
            ticket(org, &format!("L-{i}"), "incident", priority, received),
        )
        .await;
        created.push(t);
    }
    let processing = &created[3].name;
    record(
        &s,
        processing,
        event(
            local(TO, 2026, 3, 13, 10, 0),
            status(pb::TicketStatus::Processing),
        ),
    )
    .await
    .expect("recorded");

    // Every ticket once, newest received first, three pages of at most 3.
    let mut listed = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = s
            .tickets
            .clone()
            .list_tickets(list_request("", 3, &token, pb::TicketView::Unspecified))
            .await
            .expect("lists")
            .into_inner();
        assert!(page.tickets.len() <= 3);
        pages += 1;
        listed.extend(page.tickets);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    let expected: Vec<&str> = created.iter().rev().map(|t| t.name.as_str()).collect();
    assert_eq!(names, expected);

    // The basic view: the clocks GetTicket shows, without events.
    for t in &listed {
        let full = get(&s, &t.name).await;
        assert!(!t.clocks.is_empty(), "{} has clocks", t.name);
        assert_eq!(t.clocks, full.clocks, "{}", t.name);
        assert_eq!(t.status, full.status);
        assert!(t.events.is_empty());
        assert!(!full.events.is_empty());
    }
    // The full view adds the events.
    let full_page = s
        .tickets
        .clone()
        .list_tickets(list_request(
            "organizations/acme",
            10,
            "",
            pb::TicketView::Full,
        ))
        .await
        .expect("lists")
        .into_inner();
    assert_eq!(full_page.tickets.len(), 5);
    assert!(full_page.next_page_token.is_empty());
    for t in &full_page.tickets {
        assert_eq!(t.organization, "organizations/acme");
        assert_eq!(t, &get(&s, &t.name).await);
    }

    // Filters.
    let by_status = s
        .tickets
        .clone()
        .list_tickets(tonic::Request::new(pb::ListTicketsRequest {
            status: pb::TicketStatus::Processing as i32,
            ..Default::default()
        }))
        .await
        .expect("lists")
        .into_inner();
    let names: Vec<&str> = by_status.tickets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec![processing.as_str()]);
    let by_external = s
        .tickets
        .clone()
        .list_tickets(tonic::Request::new(pb::ListTicketsRequest {
            source_system: "crm".into(),
            external_id: "L-4".into(),
            ..Default::default()
        }))
        .await
        .expect("lists")
        .into_inner();
    let names: Vec<&str> = by_external
        .tickets
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, vec![created[4].name.as_str()]);

    // A page token belongs to its query; bad values name their fields.
    let first = s
        .tickets
        .clone()
        .list_tickets(list_request("", 3, "", pb::TicketView::Basic))
        .await
        .expect("lists")
        .into_inner();
    expect_code(
        s.tickets
            .clone()
            .list_tickets(list_request(
                "organizations/acme",
                3,
                &first.next_page_token,
                pb::TicketView::Basic,
            ))
            .await,
        Code::InvalidArgument,
    );
    let st = expect_code(
        s.tickets
            .clone()
            .list_tickets(tonic::Request::new(pb::ListTicketsRequest {
                external_id: "L-4".into(),
                view: 99,
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );
    let mut fields = violations(&st);
    fields.sort();
    assert_eq!(fields, vec!["external_id".to_string(), "view".to_string()]);
    s.stop().await;
}

crate::on_both_stores!(
    tickets_are_listed_in_pages_with_their_clocks,
    pauses_move_every_kind_of_deadline,
    a_ticket_gets_its_clocks_and_events_move_them,
    illegal_transitions_and_conflicting_late_events_store_nothing,
);
