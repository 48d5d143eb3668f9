//! Deadline queries, batches, quotes, calendar changes on running clocks.

use chrono::TimeDelta;
use pb::TicketStatus as S;
use servicelevel::api::pb;
use tonic::{Code, Request};

use crate::fixtures::*;
use crate::harness::*;

const TO: chrono_tz::Tz = chrono_tz::America::Toronto;

async fn setup(s: &TestServer) {
    create_calendar(
        s,
        "support",
        weekdays("America/Toronto", &[("08:00", "18:30")], &[]),
    )
    .await;
    let mut fr = promise(
        "first_response",
        vec![on_received()],
        vec![on_event(pb::EventSignal::AgentResponded)],
        vec![
            target(&[], &["sev-1"], &[], business_minutes("support", 60)),
            target(&[], &["sev-2"], &[], business_minutes("support", 240)),
        ],
    );
    fr.targets[0].warning_percentages = vec![50];
    fr.targets[1].warning_percentages = vec![75];
    create_policy(
        s,
        "desk",
        pb::PolicyDefinition {
            priorities: vec!["sev-1".into(), "sev-2".into()],
            clocks: vec![
                fr,
                promise(
                    "resolution",
                    vec![on_received()],
                    vec![entered(S::Resolved)],
                    vec![target(
                        &[],
                        &[],
                        &[],
                        business_days("support", 2, pb::BusinessDayMode::EndOfDay),
                    )],
                ),
            ],
            ..Default::default()
        },
    )
    .await;
    for org in ["north", "south"] {
        create_org(
            s,
            org,
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
}

fn filter(org: &str, metric: &str) -> Option<pb::ClockFilter> {
    Some(pb::ClockFilter {
        organization: if org.is_empty() {
            String::new()
        } else {
            format!("organizations/{org}")
        },
        metric: metric.into(),
        priority: String::new(),
    })
}

async fn due_breached_and_at_risk_clocks_come_from_the_index(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 9, 8, 0)).await;
    setup(&s).await;
    // Five sev-1 tickets received 10 minutes apart from 08:00 Monday, alternating orgs:
    // first responses due 09:00, 09:10, ..., 09:40.
    let mut names = Vec::new();
    for i in 0..5 {
        let org = if i % 2 == 0 { "north" } else { "south" };
        let at = local(TO, 2026, 3, 9, 8, 10 * i);
        s.set_now(at);
        names.push(
            create_ticket(&s, ticket(org, &format!("D-{i}"), "incident", "sev-1", at))
                .await
                .name,
        );
    }
    let due =
        |from, to, f: Option<pb::ClockFilter>, size, token: String| pb::ListDueClocksRequest {
            from_time: ts(from),
            to_time: ts(to),
            filter: f,
            page_size: size,
            page_token: token,
        };
    // Due between 09:05 and 09:35: 09:10, 09:20, 09:30, paged two by two.
    let window = (local(TO, 2026, 3, 9, 9, 5), local(TO, 2026, 3, 9, 9, 35));
    let first = s
        .deadlines
        .clone()
        .list_due_clocks(Request::new(due(
            window.0,
            window.1,
            filter("", "first_response"),
            2,
            String::new(),
        )))
        .await
        .expect("lists")
        .into_inner();
    assert_eq!(first.clocks.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = s
        .deadlines
        .clone()
        .list_due_clocks(Request::new(due(
            window.0,
            window.1,
            filter("", "first_response"),
            2,
            first.next_page_token.clone(),
        )))
        .await
        .expect("lists")
        .into_inner();
    let tickets: Vec<String> = first
        .clocks
        .iter()
        .chain(&second.clocks)
        .map(|c| c.ticket.clone())
        .collect();
    assert_eq!(
        tickets,
        vec![names[1].clone(), names[2].clone(), names[3].clone()]
    );
    assert!(second.next_page_token.is_empty());
    // A token only continues its own query.
    expect_code(
        s.deadlines
            .clone()
            .list_due_clocks(Request::new(due(
                window.0,
                window.1,
                filter("north", ""),
                2,
                first.next_page_token,
            )))
            .await,
        Code::InvalidArgument,
    );
    // By organisation: north has tickets 0, 2, 4.
    let north = s
        .deadlines
        .clone()
        .list_due_clocks(Request::new(due(
            local(TO, 2026, 3, 9, 0, 0),
            local(TO, 2026, 3, 9, 10, 0),
            filter("north", "first_response"),
            50,
            String::new(),
        )))
        .await
        .expect("lists")
        .into_inner();
    assert_eq!(north.clocks.len(), 3);
    // At 09:25: responses due 09:00, 09:10, 09:20 are breached; the agent answered the
    // 09:10 one at 09:05, so two remain. The 09:30 one (started 08:30, warning at 50 %,
    // 09:00) is at risk, and so is 09:40's (warning 09:10).
    s.set_now(local(TO, 2026, 3, 9, 9, 5));
    record(
        &s,
        &names[1],
        event(
            local(TO, 2026, 3, 9, 9, 5),
            pb::ticket_event::Kind::AgentResponse(()),
        ),
    )
    .await
    .expect("answered");
    s.set_now(local(TO, 2026, 3, 9, 9, 25));
    let breached = s
        .deadlines
        .clone()
        .list_breached_clocks(Request::new(pb::ListBreachedClocksRequest {
            filter: filter("", "first_response"),
            ..Default::default()
        }))
        .await
        .expect("lists")
        .into_inner();
    let b: Vec<&str> = breached.clocks.iter().map(|c| c.ticket.as_str()).collect();
    assert_eq!(b, vec![names[0].as_str(), names[2].as_str()]);
    let risk = s
        .deadlines
        .clone()
        .list_at_risk_clocks(Request::new(pb::ListAtRiskClocksRequest {
            filter: filter("", "first_response"),
            ..Default::default()
        }))
        .await
        .expect("lists")
        .into_inner();
    let r: Vec<&str> = risk.clocks.iter().map(|c| c.ticket.as_str()).collect();
    assert_eq!(r, vec![names[3].as_str(), names[4].as_str()]);
    // Bad input on a query is named.
    let st = expect_code(
        s.deadlines
            .clone()
            .list_due_clocks(Request::new(due(
                window.1,
                window.0,
                filter("Not An Org", ""),
                -1,
                String::new(),
            )))
            .await,
        Code::InvalidArgument,
    );
    let v = violations(&st);
    for f in ["to_time", "page_size", "filter.organization"] {
        assert!(v.contains(&f.to_string()), "{f} not in {v:?}");
    }
    s.stop().await;
}

async fn a_batch_answers_each_item_on_its_own_and_retries_change_nothing(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 9, 12, 0)).await;
    setup(&s).await;
    let item = |ext: &str, org: &str, events: Vec<pb::TicketEvent>| pb::UpsertTicketItem {
        ticket: Some(ticket(
            org,
            ext,
            "incident",
            "sev-2",
            local(TO, 2026, 3, 9, 10, 0),
        )),
        events,
        request_id: format!("item-{ext}"),
    };
    let e1 = event(local(TO, 2026, 3, 9, 10, 30), status(S::Processing));
    let e2 = event(
        local(TO, 2026, 3, 9, 11, 0),
        pb::ticket_event::Kind::AgentResponse(()),
    );
    let batch = pb::BatchUpsertTicketsRequest {
        items: vec![
            item("B-1", "north", vec![e1.clone(), e2.clone()]),
            item("B-2", "nowhere", vec![]),
            item(
                "B-3",
                "south",
                vec![event(local(TO, 2026, 3, 9, 10, 30), status(S::New))],
            ),
        ],
    };
    let r = s
        .tickets
        .clone()
        .batch_upsert_tickets(Request::new(batch.clone()))
        .await
        .expect("batch answered")
        .into_inner();
    let codes: Vec<i32> = r
        .results
        .iter()
        .map(|x| x.status.as_ref().map_or(-1, |s| s.code))
        .collect();
    assert_eq!(
        codes,
        vec![0, Code::NotFound as i32, Code::FailedPrecondition as i32]
    );
    assert!(r.results[0].created);
    assert_eq!(r.results[0].events_recorded, 2);
    let t = r.results[0].ticket.clone().expect("ticket");
    assert_eq!(t.status, S::Processing as i32);
    // Item 3 created its ticket (the create is its own step), its illegal event not.
    // Retrying the whole batch, as CRM syncs do, changes nothing.
    let again = s
        .tickets
        .clone()
        .batch_upsert_tickets(Request::new(batch))
        .await
        .expect("batch answered")
        .into_inner();
    assert!(!again.results[0].created);
    assert_eq!(again.results[0].events_recorded, 0);
    let full = get(&s, &t.name).await;
    assert_eq!(full.events.len(), 2);
    // The same event id with a different event is refused, naming what differs.
    let mut changed = e2.clone();
    changed.occurred_time = ts(local(TO, 2026, 3, 9, 11, 5));
    let st = expect_code(
        s.tickets
            .clone()
            .record_event(Request::new(pb::RecordEventRequest {
                ticket: t.name.clone(),
                event: Some(changed),
            }))
            .await,
        Code::AlreadyExists,
    );
    assert!(st.message().contains("event"), "{}", st.message());
    s.stop().await;
}

async fn quotes_store_nothing(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 13, 17, 0)).await;
    setup(&s).await;
    let q = s
        .tickets
        .clone()
        .quote_deadlines(Request::new(pb::QuoteDeadlinesRequest {
            organization: "organizations/north".into(),
            request_type: "incident".into(),
            priority: "sev-2".into(),
            ..Default::default()
        }))
        .await
        .expect("quoted")
        .into_inner();
    // Friday 17:00 + 4 business hours: 1 h 30 Friday, 2 h 30 Monday -> Monday 10:30;
    // resolution 2 business days EndOfDay: Tuesday 18:30.
    let fr = q
        .clocks
        .iter()
        .find(|c| c.metric == "first_response")
        .expect("first response");
    assert_eq!(
        from_ts(&fr.deadline_time),
        Some(local(TO, 2026, 3, 16, 10, 30))
    );
    let res = q
        .clocks
        .iter()
        .find(|c| c.metric == "resolution")
        .expect("resolution");
    assert_eq!(
        from_ts(&res.deadline_time),
        Some(local(TO, 2026, 3, 17, 18, 30))
    );
    let listed = s
        .tickets
        .clone()
        .list_tickets(Request::new(pb::ListTicketsRequest::default()))
        .await
        .expect("lists")
        .into_inner();
    assert!(listed.tickets.is_empty());
    s.stop().await;
}

async fn a_calendar_change_moves_running_clocks_from_its_effective_time(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 9, 9, 0)).await;
    setup(&s).await;
    // sev-2 received Monday 09:00: 4 business hours -> 13:00.
    let t = create_ticket(
        &s,
        ticket(
            "north",
            "C-1",
            "incident",
            "sev-2",
            local(TO, 2026, 3, 9, 9, 0),
        ),
    )
    .await;
    assert_eq!(
        deadline(&t, "first_response"),
        Some(local(TO, 2026, 3, 9, 13, 0))
    );
    // At 10:00 the desk announces a lunch break 11:00-12:00 from now on: the 3 hours left
    // run 10:00-11:00 and 12:00-14:00 -> 14:00.
    s.set_now(local(TO, 2026, 3, 9, 10, 0));
    s.calendars
        .clone()
        .update_calendar(Request::new(pb::UpdateCalendarRequest {
            name: "calendars/support".into(),
            definition: Some(weekdays(
                "America/Toronto",
                &[("08:00", "11:00"), ("12:00", "18:30")],
                &[],
            )),
            request_id: rid("cal"),
            ..Default::default()
        }))
        .await
        .expect("updated");
    assert_eq!(
        deadline(&get(&s, &t.name).await, "first_response"),
        Some(local(TO, 2026, 3, 9, 14, 0))
    );
    // The background recomputation moves the index too; its progress is visible.
    let mut finished = false;
    for _ in 0..200 {
        let cal = s
            .calendars
            .clone()
            .get_calendar(Request::new(pb::GetCalendarRequest {
                name: "calendars/support".into(),
                version: 0,
            }))
            .await
            .expect("calendar")
            .into_inner();
        if let Some(r) = cal.recomputation
            && r.finish_time.is_some()
        {
            assert_eq!((r.tickets_total, r.tickets_done), (1, 1));
            finished = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(finished, "the recomputation finished");
    let due = s
        .deadlines
        .clone()
        .list_due_clocks(Request::new(pb::ListDueClocksRequest {
            from_time: ts(local(TO, 2026, 3, 9, 13, 30)),
            to_time: ts(local(TO, 2026, 3, 9, 14, 30)),
            filter: filter("", "first_response"),
            ..Default::default()
        }))
        .await
        .expect("lists")
        .into_inner();
    assert_eq!(due.clocks.len(), 1);
    assert_eq!(
        from_ts(&due.clocks[0].deadline_time),
        Some(local(TO, 2026, 3, 9, 14, 0))
    );
    let _ = TimeDelta::zero();
    s.stop().await;
}

crate::on_both_stores!(
    due_breached_and_at_risk_clocks_come_from_the_index,
    a_batch_answers_each_item_on_its_own_and_retries_change_nothing,
    quotes_store_nothing,
    a_calendar_change_moves_running_clocks_from_its_effective_time,
);
