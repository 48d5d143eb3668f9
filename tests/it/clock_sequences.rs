//! Everyday sequences a CRM sends, on the five packs: each is recorded, its consequences
//! follow at once and exactly once, and ended clocks stay as they ended.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pb::ClockState as CS;
use pb::TicketStatus as S;
use pb::ticket_event::Kind as K;
use servicelevel::api::pb;
use tonic::{Code, Request};

use crate::fixtures::*;
use crate::harness::*;
use crate::pack_scenarios::{
    NY, TO, at, at_by, clevr, ev, late, open, priority_matrix, social, system_events_of,
};

fn priority(p: &str) -> K {
    K::PriorityChange(pb::PriorityChange { priority: p.into() })
}

fn estimate(minutes: i32) -> K {
    K::EstimateChange(pb::EstimateChange {
        estimate_minutes: minutes,
    })
}

/// Lets the due-time runner look at every ticket (it polls every 20 ms in tests), then
/// returns the ticket: what it recorded is in.
async fn after_runner(s: &TestServer, name: &str) -> pb::Ticket {
    tokio::time::sleep(Duration::from_millis(300)).await;
    get(s, name).await
}

/// The `due_time` of the ticket's system event of a kind ("breach", "escalate", "warning").
fn due_times(t: &pb::Ticket, kind: &str) -> Vec<DateTime<Utc>> {
    t.events
        .iter()
        .filter_map(|e| match (&e.kind, kind) {
            (Some(K::ClockBreach(b)), "breach") => from_ts(&b.due_time),
            (Some(K::ActionTaken(a)), "escalate") => from_ts(&a.due_time),
            (Some(K::ClockWarning(w)), "warning") => from_ts(&w.due_time),
            _ => None,
        })
        .collect()
}

/// A P4 ticket received 10:00 is raised to P1 at 10:40: the P1 deadline (10:15) has
/// passed. The raise is recorded, the promise breached with deadline 10:15, the breach
/// taking effect at 10:40, recorded once.
async fn a_raise_past_the_new_deadline_is_recorded_and_breaches_once(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 11, 10, 0)).await;
    priority_matrix::setup(&s, &[("client", &[])]).await;
    let t = open(
        &s,
        "client",
        "R-1",
        "incident",
        "P4",
        local(NY, 2026, 3, 11, 10, 0),
    )
    .await;
    let t = at(&s, &t.name, local(NY, 2026, 3, 11, 10, 40), priority("P1")).await;
    assert_eq!(t.priority, "P1");
    assert_eq!(state(&t, "first_response"), CS::Breached);
    assert_eq!(
        deadline(&t, "first_response"),
        Some(local(NY, 2026, 3, 11, 10, 15))
    );
    assert_eq!(
        from_ts(&clock(&t, "first_response").breach_time),
        Some(local(NY, 2026, 3, 11, 10, 15))
    );
    s.set_now(local(NY, 2026, 3, 11, 12, 0));
    let g = after_runner(&s, &t.name).await;
    assert_eq!(
        system_events_of(&g),
        vec![ev("breach:first_response", local(NY, 2026, 3, 11, 10, 40))]
    );
    assert_eq!(
        due_times(&g, "breach"),
        vec![local(NY, 2026, 3, 11, 10, 15)]
    );
    // The same raise arriving late (it happened at 10:40, the CRM sends it at 12:00)
    // on another ticket: the same outcome, the breach at the raise's own instant.
    let u = open(
        &s,
        "client",
        "R-2",
        "incident",
        "P4",
        local(NY, 2026, 3, 11, 10, 0),
    )
    .await;
    s.set_now(local(NY, 2026, 3, 11, 12, 0));
    let u = late(&s, &u.name, local(NY, 2026, 3, 11, 10, 40), priority("P1")).await;
    assert_eq!(state(&u, "first_response"), CS::Breached);
    let g = after_runner(&s, &u.name).await;
    assert_eq!(
        system_events_of(&g),
        vec![ev("breach:first_response", local(NY, 2026, 3, 11, 10, 40))]
    );
    s.stop().await;
}

/// A P3 ticket whose first response was met at 11:00 (deadline 14:00) is later raised
/// to P1: the met clock stays met with its deadline. Cancelling a ticket whose promise
/// is already breached leaves it breached.
async fn ended_clocks_stay_as_they_ended(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 11, 10, 0)).await;
    priority_matrix::setup(&s, &[("client", &[])]).await;
    let t = open(
        &s,
        "client",
        "E-1",
        "incident",
        "P3",
        local(NY, 2026, 3, 11, 10, 0),
    )
    .await;
    at(
        &s,
        &t.name,
        local(NY, 2026, 3, 11, 11, 0),
        K::AgentResponse(()),
    )
    .await;
    let t = at(&s, &t.name, local(NY, 2026, 3, 11, 11, 30), priority("P1")).await;
    assert_eq!(state(&t, "first_response"), CS::Met);
    assert_eq!(
        deadline(&t, "first_response"),
        Some(local(NY, 2026, 3, 11, 14, 0))
    );
    assert_eq!(clock(&t, "first_response").breach_time, None);
    // P1 received 12:00, not answered by 12:15, cancelled 12:30: still breached.
    let c = open(
        &s,
        "client",
        "E-2",
        "incident",
        "P1",
        local(NY, 2026, 3, 11, 12, 0),
    )
    .await;
    let c = at(
        &s,
        &c.name,
        local(NY, 2026, 3, 11, 12, 30),
        status(S::Cancelled),
    )
    .await;
    assert_eq!(state(&c, "first_response"), CS::Breached);
    assert!(!clock(&c, "first_response").active);
    assert_eq!(
        deadline(&c, "first_response"),
        Some(local(NY, 2026, 3, 11, 12, 15))
    );
    s.stop().await;
}

/// A P3 ticket received 09:00 waits on the customer from 10:00, is raised to P1 at
/// 10:30 (its 15 minutes were used up at 09:15, before the pause: breached at once),
/// and the customer answers at 11:00: recorded, not stuck.
async fn a_raise_while_paused_does_not_block_the_next_event(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 11, 9, 0)).await;
    priority_matrix::setup(&s, &[("client", &[])]).await;
    let t = open(
        &s,
        "client",
        "P-1",
        "incident",
        "P3",
        local(NY, 2026, 3, 11, 9, 0),
    )
    .await;
    at(
        &s,
        &t.name,
        local(NY, 2026, 3, 11, 10, 0),
        status(S::RequiresDeliverables),
    )
    .await;
    let t = at(&s, &t.name, local(NY, 2026, 3, 11, 10, 30), priority("P1")).await;
    assert_eq!(state(&t, "first_response"), CS::Breached);
    assert_eq!(
        deadline(&t, "first_response"),
        Some(local(NY, 2026, 3, 11, 9, 15))
    );
    let t = at(
        &s,
        &t.name,
        local(NY, 2026, 3, 11, 11, 0),
        status(S::Processing),
    )
    .await;
    assert_eq!(t.status, S::Processing as i32);
    assert_eq!(state(&t, "first_response"), CS::Breached);
    let g = after_runner(&s, &t.name).await;
    assert_eq!(
        system_events_of(&g),
        vec![ev("breach:first_response", local(NY, 2026, 3, 11, 10, 30))]
    );
    s.stop().await;
}

/// Clevr: a Sev 2 received Tue 09:00 becomes Sev 1 at 10:30. Sev 1 escalates after one
/// business hour, so the escalation was due at 10:00: it is taken at once, at 10:30 (an
/// escalation never precedes its cause), with its due time 10:00, exactly once.
async fn a_raise_fires_an_overdue_escalation_at_once_and_once(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 10, 9, 0)).await;
    clevr::setup(&s, &[("shop", &[])]).await;
    let t = open(
        &s,
        "shop",
        "C-1",
        "incident",
        "sev-2",
        local(TO, 2026, 3, 10, 9, 0),
    )
    .await;
    assert_eq!(
        deadline(&t, "escalation"),
        Some(local(TO, 2026, 3, 10, 17, 0))
    );
    let t = at(
        &s,
        &t.name,
        local(TO, 2026, 3, 10, 10, 30),
        priority("sev-1"),
    )
    .await;
    assert_eq!(state(&t, "escalation"), CS::Fired);
    assert_eq!(state(&t, "first_response"), CS::Breached);
    // Seen at noon, before the sev-1 resolution's 50 % warning (14:15).
    s.set_now(local(TO, 2026, 3, 10, 12, 0));
    let g = after_runner(&s, &t.name).await;
    assert_eq!(
        system_events_of(&g),
        vec![
            ev("breach:first_response", local(TO, 2026, 3, 10, 10, 30)),
            ev("escalate:escalation:1", local(TO, 2026, 3, 10, 10, 30)),
        ]
    );
    assert_eq!(
        due_times(&g, "escalate"),
        vec![local(TO, 2026, 3, 10, 10, 0)]
    );
    s.stop().await;
}

/// Clevr: a Sev 3 answered Mon 12:00 (deadline Tue 09:00) is re-classified Sev 2 at
/// 14:00. The first response keeps the deadline it ended with; the escalation, still
/// running, follows Sev 2 (8 business hours from 09:00: 17:00).
async fn a_reclassification_after_the_response_leaves_it_alone(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 9, 9, 0)).await;
    clevr::setup(&s, &[("shop", &[])]).await;
    let t = open(
        &s,
        "shop",
        "C-2",
        "incident",
        "sev-3",
        local(TO, 2026, 3, 9, 9, 0),
    )
    .await;
    at(
        &s,
        &t.name,
        local(TO, 2026, 3, 9, 12, 0),
        K::AgentResponse(()),
    )
    .await;
    let t = at(&s, &t.name, local(TO, 2026, 3, 9, 14, 0), priority("sev-2")).await;
    assert_eq!(state(&t, "first_response"), CS::Met);
    assert_eq!(
        deadline(&t, "first_response"),
        Some(local(TO, 2026, 3, 10, 9, 0))
    );
    assert_eq!(
        deadline(&t, "escalation"),
        Some(local(TO, 2026, 3, 9, 17, 0))
    );
    // Sev 4 has no resolution target ("TBD"): NOT_STARTED, coded NO_TARGET.
    let f = open(
        &s,
        "shop",
        "C-3",
        "incident",
        "sev-4",
        local(TO, 2026, 3, 9, 15, 0),
    )
    .await;
    let r = clock(&f, "resolution");
    assert_eq!(state(&f, "resolution"), CS::NotStarted);
    assert_eq!(r.not_started_code, pb::NotStartedCode::NoTarget as i32);
    assert_eq!(
        clock(&f, "first_response").not_started_code,
        pb::NotStartedCode::Unspecified as i32
    );
    s.stop().await;
}

/// 24social: a task estimated at 10 h (7 days' lead time) is authorised Mon 09:00 and
/// lowered to 2 h (24 h) on Wed 09:00: its lead time was due Tue 09:00, so it is breached
/// at once. A task over 16 h needs a quote: NOT_STARTED, coded NEEDS_QUOTE.
async fn a_lowered_estimate_after_authorisation_breaches_at_once(db: Db) {
    let lon = chrono_tz::Europe::London;
    let s = TestServer::start(db, local(lon, 2026, 4, 13, 8, 0)).await;
    social::setup(&s, &[("brand", "Europe/London", &[])]).await;
    let t = social::task(
        &s,
        "brand",
        "L-1",
        600,
        "bob",
        local(lon, 2026, 4, 13, 8, 0),
    )
    .await;
    let t = social::authorise(&s, &t.name, local(lon, 2026, 4, 13, 9, 0)).await;
    assert_eq!(
        deadline(&t, "lead_time"),
        Some(local(lon, 2026, 4, 20, 9, 0))
    );
    let t = at(&s, &t.name, local(lon, 2026, 4, 15, 9, 0), estimate(120)).await;
    assert_eq!(state(&t, "lead_time"), CS::Breached);
    assert_eq!(
        deadline(&t, "lead_time"),
        Some(local(lon, 2026, 4, 14, 9, 0))
    );
    let g = after_runner(&s, &t.name).await;
    assert_eq!(
        system_events_of(&g),
        vec![ev("breach:lead_time", local(lon, 2026, 4, 15, 9, 0))]
    );
    let q = social::task(
        &s,
        "brand",
        "L-2",
        1000,
        "bob",
        local(lon, 2026, 4, 15, 10, 0),
    )
    .await;
    let q = at_by(
        &s,
        &q.name,
        local(lon, 2026, 4, 15, 11, 0),
        K::WorkAuthorisation(()),
        "ann",
    )
    .await
    .expect("authorised");
    assert_eq!(state(&q, "lead_time"), CS::NotStarted);
    assert_eq!(
        clock(&q, "lead_time").not_started_code,
        pb::NotStartedCode::NeedsQuote as i32
    );
    s.stop().await;
}

fn event_with_id(at: DateTime<Utc>, kind: K, request_id: &str) -> pb::TicketEvent {
    pb::TicketEvent {
        request_id: request_id.into(),
        ..event(at, kind)
    }
}

async fn record_as(
    s: &TestServer,
    client: &str,
    ticket: &str,
    e: pb::TicketEvent,
) -> Result<pb::Ticket, tonic::Status> {
    let mut req = Request::new(pb::RecordEventRequest {
        ticket: ticket.into(),
        event: Some(e),
    });
    req.metadata_mut().insert(
        "x-servicelevel-client",
        client.parse().expect("ascii client name"),
    );
    s.tickets
        .clone()
        .record_event(req)
        .await
        .map(|r| r.into_inner())
}

/// Event request ids are unique per ticket, whoever sends them: "comment-1" on two
/// tickets is two events; the same event again, from any client, is a retry; another
/// event under a used id on the same ticket is ALREADY_EXISTS.
async fn event_ids_are_unique_per_ticket(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 11, 9, 0)).await;
    priority_matrix::setup(&s, &[("client", &[])]).await;
    let when = local(NY, 2026, 3, 11, 9, 0);
    let a = open(&s, "client", "K-1", "incident", "P3", when).await;
    let b = open(&s, "client", "K-2", "incident", "P3", when).await;
    s.set_now(local(NY, 2026, 3, 11, 9, 30));
    let reply = |h| {
        event_with_id(
            local(NY, 2026, 3, 11, 9, h),
            K::AgentResponse(()),
            "comment-1",
        )
    };
    let first = record_as(&s, "crm", &a.name, reply(10))
        .await
        .expect("recorded on a");
    record_as(&s, "crm", &b.name, reply(10))
        .await
        .expect("the same id on another ticket is another event");
    let again = record_as(&s, "helpdesk", &a.name, reply(10))
        .await
        .expect("a retry, whoever sends it");
    assert_eq!(again, first);
    let status = expect_code(
        s.tickets
            .clone()
            .record_event(Request::new(pb::RecordEventRequest {
                ticket: a.name.clone(),
                event: Some(reply(20)),
            }))
            .await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains("comment-1"), "{status:?}");
    let a = get(&s, &a.name).await;
    let b = get(&s, &b.name).await;
    let callers = |t: &pb::Ticket| {
        t.events
            .iter()
            .filter(|e| e.request_id == "comment-1")
            .count()
    };
    assert_eq!((callers(&a), callers(&b)), (1, 1));
    s.stop().await;
}

/// A batch item whose events cannot all be recorded leaves nothing behind (no ticket,
/// no clocks, no events); the other items apply, and the failure names its field.
async fn a_failing_batch_item_leaves_nothing_behind(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 11, 9, 0)).await;
    priority_matrix::setup(&s, &[("client", &[])]).await;
    s.set_now(local(NY, 2026, 3, 11, 12, 0));
    let item = |external: &str, events: Vec<pb::TicketEvent>| pb::UpsertTicketItem {
        ticket: Some(ticket(
            "client",
            external,
            "incident",
            "P3",
            local(NY, 2026, 3, 11, 9, 0),
        )),
        request_id: rid("item"),
        events,
    };
    let processing = |h| event(local(NY, 2026, 3, 11, h, 0), status(S::Processing));
    let r = s
        .tickets
        .clone()
        .batch_upsert_tickets(Request::new(pb::BatchUpsertTicketsRequest {
            items: vec![
                item("B-1", vec![processing(10)]),
                // PROCESSING twice in a row: the second move is illegal.
                item("B-2", vec![processing(10), processing(11)]),
                item("B-3", vec![processing(10)]),
            ],
        }))
        .await
        .expect("the batch answers")
        .into_inner();
    let codes: Vec<i32> = r
        .results
        .iter()
        .map(|x| x.status.as_ref().map_or(0, |s| s.code))
        .collect();
    assert_eq!(
        codes,
        vec![0, Code::FailedPrecondition as i32, 0],
        "{:?}",
        r.results
    );
    let failed = r.results[1].status.as_ref().expect("a status");
    assert!(
        failed.message.contains("items[1].events[1]"),
        "{}",
        failed.message
    );
    assert!(r.results[1].ticket.is_none());
    let listed = s
        .tickets
        .clone()
        .list_tickets(Request::new(pb::ListTicketsRequest {
            source_system: "zendesk".into(),
            external_id: "B-2".into(),
            ..Default::default()
        }))
        .await
        .expect("lists")
        .into_inner();
    assert!(listed.tickets.is_empty(), "{:?}", listed.tickets);
    let all = s
        .tickets
        .clone()
        .list_tickets(Request::new(pb::ListTicketsRequest::default()))
        .await
        .expect("lists")
        .into_inner();
    let mut externals: Vec<&str> = all.tickets.iter().map(|t| t.external_id.as_str()).collect();
    externals.sort_unstable();
    assert_eq!(externals, vec!["B-1", "B-3"]);
    s.stop().await;
}

/// An event or a ticket reported more than five minutes ahead of the server's clock is
/// refused on its field, and nothing is stored; a little ahead is accepted.
async fn future_dated_reports_are_refused(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 11, 9, 0)).await;
    priority_matrix::setup(&s, &[("client", &[])]).await;
    let t = open(
        &s,
        "client",
        "F-1",
        "incident",
        "P3",
        local(NY, 2026, 3, 11, 9, 0),
    )
    .await;
    let ahead = local(NY, 2027, 3, 11, 9, 0);
    let status = expect_code(
        s.tickets
            .clone()
            .record_event(Request::new(pb::RecordEventRequest {
                ticket: t.name.clone(),
                event: Some(event(ahead, K::AgentResponse(()))),
            }))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&status), vec!["event.occurred_time".to_string()]);
    let status = expect_code(
        s.tickets
            .clone()
            .create_ticket(Request::new(pb::CreateTicketRequest {
                ticket: Some(ticket("client", "F-2", "incident", "P3", ahead)),
                request_id: rid("tkt"),
            }))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violations(&status),
        vec!["ticket.received_time".to_string()]
    );
    let g = get(&s, &t.name).await;
    assert!(g.events.is_empty(), "{:?}", g.events);
    assert_eq!(state(&g, "first_response"), CS::Running);
    // Two minutes ahead (a CRM clock running fast): accepted.
    let g = s
        .tickets
        .clone()
        .record_event(Request::new(pb::RecordEventRequest {
            ticket: t.name.clone(),
            event: Some(event(local(NY, 2026, 3, 11, 9, 2), K::AgentResponse(()))),
        }))
        .await
        .expect("within the skew")
        .into_inner();
    assert_eq!(state(&g, "first_response"), CS::Met);
    s.stop().await;
}

/// Clevr on Mon-Fri 08:00-18:30 Toronto; the organisation opens Saturday 2026-03-14
/// 10:00-14:00 for a launch. A sev-2 received Friday 17:00: 1 h 30 Friday, then 2 h 30
/// Saturday: due Saturday 12:30 (Monday 10:30 without the override). The preview of that
/// binding change says so before it is made.
async fn a_dated_override_on_a_binding_moves_deadlines(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 13, 17, 0)).await;
    clevr::setup(&s, &[("shop", &[])]).await;
    let t = open(
        &s,
        "shop",
        "O-1",
        "incident",
        "sev-2",
        local(TO, 2026, 3, 13, 17, 0),
    )
    .await;
    assert_eq!(
        deadline(&t, "first_response"),
        Some(local(TO, 2026, 3, 16, 10, 30))
    );
    let saturday = pb::DateOverride {
        date: "2026-03-14".into(),
        windows: vec![pb::OpeningWindow {
            open: "10:00".into(),
            close: "14:00".into(),
        }],
    };
    let with_override = |extra: Vec<String>| pb::Organization {
        name: "organizations/shop".into(),
        calendars: vec![pb::CalendarBinding {
            overrides: vec![saturday.clone()],
            extra_holidays: extra,
            ..binding("support", "clevr-support")
        }],
        ..Default::default()
    };
    let mask = || {
        Some(prost_types::FieldMask {
            paths: vec!["calendars".into()],
        })
    };
    s.set_now(local(TO, 2026, 3, 13, 17, 30));
    // The same date closed and overridden: refused, on the override's date.
    let status = expect_code(
        s.organizations
            .clone()
            .update_organization(Request::new(pb::UpdateOrganizationRequest {
                organization: Some(with_override(vec!["2026-03-14".into()])),
                update_mask: mask(),
                request_id: rid("org"),
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violations(&status),
        vec!["organization.calendars[0].overrides[0].date".to_string()]
    );
    let preview = s
        .organizations
        .clone()
        .preview_organization_update(Request::new(pb::PreviewOrganizationUpdateRequest {
            update: Some(pb::UpdateOrganizationRequest {
                organization: Some(with_override(vec![])),
                update_mask: mask(),
                ..Default::default()
            }),
        }))
        .await
        .expect("previews")
        .into_inner();
    assert_eq!(preview.tickets_examined, 1);
    assert!(preview.clocks_moved >= 1, "{preview:?}");
    let moved = preview
        .largest_moves
        .iter()
        .find(|c| c.metric == "first_response")
        .expect("the first response moves");
    assert_eq!(
        from_ts(&moved.new_deadline_time),
        Some(local(TO, 2026, 3, 14, 12, 30))
    );
    let unchanged = get(&s, &t.name).await;
    assert_eq!(
        deadline(&unchanged, "first_response"),
        Some(local(TO, 2026, 3, 16, 10, 30)),
        "a preview changes nothing"
    );
    let org = s
        .organizations
        .clone()
        .update_organization(Request::new(pb::UpdateOrganizationRequest {
            organization: Some(with_override(vec![])),
            update_mask: mask(),
            request_id: rid("org"),
            ..Default::default()
        }))
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(org.calendars[0].overrides, vec![saturday]);
    let t = get(&s, &t.name).await;
    assert_eq!(
        deadline(&t, "first_response"),
        Some(local(TO, 2026, 3, 14, 12, 30))
    );
    s.stop().await;
}

crate::on_both_stores!(
    a_raise_past_the_new_deadline_is_recorded_and_breaches_once,
    ended_clocks_stay_as_they_ended,
    a_raise_while_paused_does_not_block_the_next_event,
    a_raise_fires_an_overdue_escalation_at_once_and_once,
    a_reclassification_after_the_response_leaves_it_alone,
    a_lowered_estimate_after_authorisation_breaches_at_once,
    event_ids_are_unique_per_ticket,
    a_failing_batch_item_leaves_nothing_behind,
    future_dated_reports_are_refused,
    a_dated_override_on_a_binding_moves_deadlines,
    the_contently_handoff_pauses_from_the_packs_new_version,
);

async fn import_toml(s: &TestServer, toml: &str) -> pb::ImportPackResponse {
    pb::pack_service_client::PackServiceClient::new(connect(s.addr).await)
        .import_pack(Request::new(pb::ImportPackRequest {
            source: Some(pb::import_pack_request::Source::PackToml(toml.into())),
            request_id: rid("pack"),
            ..Default::default()
        }))
        .await
        .expect("imports")
        .into_inner()
}

/// The hand-off started by triage, then the customer is asked for deliverables.
async fn handoff_then_wait(s: &TestServer, external: &str) -> pb::Ticket {
    let t = open(
        s,
        "publisher",
        external,
        "support",
        "",
        local(NY, 2026, 3, 16, 9, 0),
    )
    .await;
    at(
        s,
        &t.name,
        local(NY, 2026, 3, 16, 10, 0),
        status(S::Escalated),
    )
    .await;
    at(
        s,
        &t.name,
        local(NY, 2026, 3, 17, 14, 0),
        K::TriageCompletion(()),
    )
    .await;
    at(
        s,
        &t.name,
        local(NY, 2026, 3, 18, 10, 0),
        status(S::RequiresDeliverables),
    )
    .await
}

/// Contently's hand-off pauses while the customer owes the next step since the pack's
/// second version. Tickets created on the first version keep it (nothing pauses their
/// hand-off) until moved; new tickets get the new version.
async fn the_contently_handoff_pauses_from_the_packs_new_version(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 16, 9, 0)).await;
    let current = servicelevel::domain::pack::embedded("contently").expect("embedded");
    let first = current.replace(
        "pause = [\"REQUIRES_DELIVERABLES\"]\n\n[[policy.clocks.targets]]\nduration = { next_week",
        "pause = []\n\n[[policy.clocks.targets]]\nduration = { next_week",
    );
    assert_ne!(
        first, current,
        "the first version differs in the hand-off only"
    );
    import_toml(&s, &first).await;
    create_org(
        &s,
        "publisher",
        organization(
            "America/New_York",
            "",
            "contently",
            vec![binding("business", "contently-business")],
            vec![],
        ),
    )
    .await;
    let old = handoff_then_wait(&s, "V-1").await;
    assert_eq!(old.policy_version, 1);
    assert_eq!(state(&old, "engineering_handoff"), CS::Running);
    let r = import_toml(&s, current).await;
    let policy = r
        .resources
        .iter()
        .find(|x| x.name == "policies/contently")
        .expect("the policy");
    assert_eq!(
        (policy.outcome, policy.version),
        (pb::ImportOutcome::NewVersion as i32, 2)
    );
    let new = handoff_then_wait(&s, "V-2").await;
    assert_eq!(new.policy_version, 2);
    assert_eq!(state(&new, "engineering_handoff"), CS::Paused);
    let old = get(&s, &old.name).await;
    assert_eq!(
        (old.policy_version, state(&old, "engineering_handoff")),
        (1, CS::Running)
    );
    s.stop().await;
}
