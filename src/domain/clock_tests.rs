//! Clock rules, each a test with the expected instants worked out beside it.

use super::*;
use crate::domain::calendar::{CalendarSpec, Hours, Window};
use crate::domain::names::{CustomEventName, PlanName, RequestType, ResourceId, ShortText};
use crate::domain::organization::{CalendarBinding, Contact};
use crate::domain::ticket::Actor;
use chrono::{LocalResult, TimeZone};
use chrono_tz::Tz;
use proptest::prelude::*;
use serde_json::json;

const NY: Tz = chrono_tz::America::New_York;
const TO: Tz = chrono_tz::America::Toronto;

fn at(zone: Tz, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    match zone.with_ymd_and_hms(2026, m, d, h, mi, 0) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        other => panic!("not a unique local time: {other:?}"),
    }
}

fn policy(v: serde_json::Value) -> Policy {
    let p: Policy = serde_json::from_value(v).expect("policy JSON");
    p.check().expect("valid policy");
    p
}

fn weekdays(zone: Tz, windows: &[&str], holidays: &[(u32, u32)]) -> Arc<VersionedCalendar> {
    let day: Vec<Window> = windows
        .iter()
        .map(|w| Window::parse(w).expect("valid"))
        .collect();
    let week = std::array::from_fn(|i| if i < 5 { day.clone() } else { Vec::new() });
    let holidays = holidays
        .iter()
        .map(|(m, d)| chrono::NaiveDate::from_ymd_opt(2026, *m, *d).expect("valid"));
    let spec = CalendarSpec::new(zone, Hours::Weekly(week), holidays, []).expect("valid");
    Arc::new(VersionedCalendar::single(Arc::new(
        BusinessCalendar::compile(&spec).expect("compiles"),
    )))
}

fn calendars(zone: Tz, slots: Vec<(&str, Arc<VersionedCalendar>)>) -> ClockCalendars {
    ClockCalendars {
        zone: Arc::new(
            BusinessCalendar::compile(&CalendarSpec::always_open(zone)).expect("compiles"),
        ),
        slots: slots
            .into_iter()
            .map(|(s, c)| (SlotName::parse(s).expect("valid"), c))
            .collect(),
    }
}

fn contact(id: &str, role: Option<&str>) -> Contact {
    Contact {
        id: ExternalId::parse(id).expect("valid"),
        name: ShortText::parse(id).expect("valid"),
        role: role.map(|r| RoleName::parse(r).expect("valid")),
        effective_from: None,
        effective_until: None,
    }
}

fn org(zone: Tz, contacts: Vec<Contact>) -> Organization {
    Organization {
        display_name: ShortText::parse("Acme").expect("valid"),
        zone,
        plan: None,
        policy: ResourceId::parse("p").expect("valid"),
        calendars: Vec::<CalendarBinding>::new(),
        external_ids: vec![],
        contacts,
    }
}

fn ticket(
    received: DateTime<Utc>,
    request_type: &str,
    priority: Option<&str>,
    plan: Option<&str>,
) -> Ticket {
    Ticket {
        id: "t1".into(),
        organization: ResourceId::parse("acme").expect("valid"),
        source_system: ExternalId::parse("crm").expect("valid"),
        external_id: ExternalId::parse("1").expect("valid"),
        request_type: RequestType::parse(request_type).expect("valid"),
        priority: priority.map(|p| PriorityLabel::parse(p).expect("valid")),
        received_at: received,
        requested_by: None,
        estimate_minutes: None,
        scheduled_at: None,
        policy: ResourceId::parse("p").expect("valid"),
        policy_version: 1,
        plan: plan.map(|p| PlanName::parse(p).expect("valid")),
    }
}

fn ev(seq: i64, t: DateTime<Utc>, kind: EventKind) -> Event {
    Event {
        seq,
        occurred_at: t,
        kind,
        actor: Actor {
            client: "test".into(),
            contact: None,
        },
        request_id: format!("r{seq}"),
    }
}

fn by(mut e: Event, contact: &str) -> Event {
    e.actor.contact = Some(ExternalId::parse(contact).expect("valid"));
    e
}

fn status(to: Status) -> EventKind {
    EventKind::StatusChanged { to, reason: None }
}

struct World {
    policy: Policy,
    ticket: Ticket,
    org: Organization,
    cals: ClockCalendars,
}

impl World {
    fn fold(&self, events: &[Event], as_of: DateTime<Utc>) -> Result<TicketState, Rejected> {
        fold(
            FoldContext {
                ticket: &self.ticket,
                policy: &self.policy,
                organization: &self.org,
                calendars: &self.cals,
            },
            events,
            as_of,
        )
    }

    fn clock(&self, events: &[Event], as_of: DateTime<Utc>, metric: &str) -> ClockView {
        let state = self.fold(events, as_of).expect("legal events");
        state
            .clocks
            .into_iter()
            .rfind(|c| c.metric.as_str() == metric)
            .unwrap_or_else(|| panic!("no clock {metric}"))
    }
}

/// Concinnity's task clocks (000_bd1a46f9f76fe2f5.txt), Tiers III and IV.
fn concinnity() -> Policy {
    policy(json!({
        "priorities": [],
        "clocks": [
            {
                "metric": "receipt_confirmation", "kind": "promise",
                "start": [{"on": "received"}],
                "stop": [{"on": "entered_status", "value": "CONFIRMED"}],
                "pause_statuses": ["REQUIRES_DELIVERABLES"],
                "targets": [
                    {"applies": {"plans": ["tier-3"], "request_types": ["task"]},
                     "duration": {"kind": "wall_clock", "minutes": 1440},
                     "warnings": [50, 75], "on_due": {"action": "none"},
                     "source": "Confirmed request receipt - 24 hours"},
                    {"applies": {"plans": ["tier-4"], "request_types": ["task"]},
                     "duration": {"kind": "by_open_hours", "calendar": "office",
                                  "inside": {"kind": "wall_clock", "minutes": 120},
                                  "outside": {"kind": "wall_clock", "minutes": 720}},
                     "on_due": {"action": "none"},
                     "source": "Confirmed request receipt - 2 hours during office hours, 12 hours otherwise."}
                ]
            },
            {
                "metric": "start_processing", "kind": "promise",
                "start": [{"on": "entered_status", "value": "CONFIRMED"}],
                "stop": [{"on": "entered_status", "value": "PROCESSING"}],
                "cancel": [{"on": "entered_status", "value": "OUT_OF_SCOPE"}],
                "pause_statuses": ["REQUIRES_DELIVERABLES"],
                "targets": [
                    {"applies": {"plans": ["tier-3"], "request_types": ["task"]},
                     "duration": {"kind": "business_days", "calendar": "office", "days": 3, "mode": "same_time"},
                     "on_due": {"action": "none"}}
                ]
            },
            {
                "metric": "review_autoclose", "kind": "timer",
                "start": [{"on": "entered_status", "value": "SUBMITTED_FOR_REVIEW"}],
                "stop": [{"on": "left_status", "value": "SUBMITTED_FOR_REVIEW"}],
                "pause_statuses": [],
                "targets": [
                    {"duration": {"kind": "business_days", "calendar": "office", "days": 5, "mode": "end_of_day"},
                     "on_due": {"action": "move_to", "status": "CLOSED", "reason": "auto_closed"}}
                ]
            }
        ]
    }))
}

fn concinnity_world(plan: &str, received: DateTime<Utc>) -> World {
    World {
        policy: concinnity(),
        ticket: ticket(received, "task", None, Some(plan)),
        org: org(NY, vec![]),
        cals: calendars(
            NY,
            vec![("office", weekdays(NY, &["09:00-17:00"], &[(4, 3)]))],
        ),
    }
}

#[test]
fn receipt_confirmation_met_and_breached() {
    // Tier III, received Monday 2026-03-09 10:00 New York: 24 wall-clock hours, due
    // Tuesday 10:00.
    let w = concinnity_world("tier-3", at(NY, 3, 9, 10, 0));
    let confirmed = [ev(1, at(NY, 3, 10, 9, 0), status(Status::Confirmed))];
    let c = w.clock(&confirmed, at(NY, 3, 10, 12, 0), "receipt_confirmation");
    assert_eq!(c.state, ClockState::Met);
    assert_eq!(c.deadline, Some(at(NY, 3, 10, 10, 0)));
    assert_eq!(c.elapsed, TimeDelta::hours(23));
    // Without a confirmation, at 11:00 Tuesday it is breached and still running.
    let c = w.clock(&[], at(NY, 3, 10, 11, 0), "receipt_confirmation");
    assert_eq!(c.state, ClockState::Breached);
    assert!(c.active);
    assert_eq!(c.breached_at, Some(at(NY, 3, 10, 10, 0)));
    assert_eq!(c.remaining, Some(TimeDelta::hours(-1)));
    // Exactly at the deadline the budget is used up but not exceeded, and a confirmation
    // at that very instant meets it.
    let c = w.clock(&[], at(NY, 3, 10, 10, 0), "receipt_confirmation");
    assert_eq!(c.state, ClockState::Running);
    let on_time = [ev(1, at(NY, 3, 10, 10, 0), status(Status::Confirmed))];
    assert_eq!(
        w.clock(&on_time, at(NY, 3, 11, 0, 0), "receipt_confirmation")
            .state,
        ClockState::Met
    );
}

#[test]
fn warning_levels_are_shares_of_the_budget() {
    // 24 h budget with warnings at 50 % (Monday 22:00) and 75 % (Tuesday 04:00).
    let w = concinnity_world("tier-3", at(NY, 3, 9, 10, 0));
    let c = w.clock(&[], at(NY, 3, 10, 1, 0), "receipt_confirmation");
    assert_eq!(
        c.warnings,
        vec![
            (50, Some(at(NY, 3, 9, 22, 0))),
            (75, Some(at(NY, 3, 10, 4, 0)))
        ]
    );
    assert_eq!(c.warning_level, 50);
    assert_eq!(
        w.clock(&[], at(NY, 3, 9, 21, 0), "receipt_confirmation")
            .warning_level,
        0
    );
}

#[test]
fn tier_four_depends_on_office_hours_at_receipt() {
    // Received 16:30, inside office hours (09:00-17:00): 2 wall-clock hours, 18:30 the
    // same day, even though the office closes at 17:00 (a reading marked in the pack).
    let w = concinnity_world("tier-4", at(NY, 3, 9, 16, 30));
    assert_eq!(
        w.clock(&[], at(NY, 3, 9, 17, 0), "receipt_confirmation")
            .deadline,
        Some(at(NY, 3, 9, 18, 30))
    );
    // Received 17:30, outside: 12 hours, Tuesday 05:30.
    let w = concinnity_world("tier-4", at(NY, 3, 9, 17, 30));
    assert_eq!(
        w.clock(&[], at(NY, 3, 9, 18, 0), "receipt_confirmation")
            .deadline,
        Some(at(NY, 3, 10, 5, 30))
    );
}

#[test]
fn pause_and_resume_move_a_business_day_deadline() {
    // Tier III start_processing: 3 business days SameTime from CONFIRMED.
    // Confirmed Monday 2026-03-09 10:00 -> nominal Thursday 10:00; budget = 3 x 8 h = 24 h
    // of office time. Waiting on the customer from Tuesday 10:00 to Wednesday 10:00 (8 open
    // hours) moves the deadline to Friday 10:00.
    let w = concinnity_world("tier-3", at(NY, 3, 9, 9, 0));
    let mut events = vec![
        ev(1, at(NY, 3, 9, 10, 0), status(Status::Confirmed)),
        ev(
            2,
            at(NY, 3, 10, 10, 0),
            status(Status::RequiresDeliverables),
        ),
    ];
    let paused = w.clock(&events, at(NY, 3, 10, 15, 0), "start_processing");
    assert_eq!(paused.state, ClockState::Paused);
    assert_eq!(paused.deadline, None);
    assert_eq!(paused.budget, Some(TimeDelta::hours(24)));
    // 8 h used (Monday 10:00-17:00 is 7 h, Tuesday 09:00-10:00 is 1 h): 16 h left, and
    // resumed at Tuesday 15:00 that would be 2 h Tuesday + 8 h Wed + 6 h Thu: Thu 15:00.
    assert_eq!(paused.elapsed, TimeDelta::hours(8));
    assert_eq!(paused.remaining, Some(TimeDelta::hours(16)));
    assert_eq!(paused.deadline_if_resumed, Some(at(NY, 3, 12, 15, 0)));
    events.push(ev(3, at(NY, 3, 11, 10, 0), status(Status::Confirmed)));
    let resumed = w.clock(&events, at(NY, 3, 11, 12, 0), "start_processing");
    assert_eq!(resumed.state, ClockState::Running);
    assert_eq!(resumed.deadline, Some(at(NY, 3, 13, 10, 0)));
    assert_eq!(resumed.paused_time, TimeDelta::hours(8));
    assert_eq!(
        resumed.pauses,
        vec![(at(NY, 3, 10, 10, 0), Some(at(NY, 3, 11, 10, 0)))]
    );
}

#[test]
fn a_stop_wins_over_a_pause_and_out_of_scope_cancels() {
    let mut p = concinnity();
    // Make REQUIRES_DELIVERABLES both stop and pause receipt_confirmation.
    p.clocks[0]
        .stop
        .push(Trigger::EnteredStatus(Status::RequiresDeliverables));
    let mut w = concinnity_world("tier-3", at(NY, 3, 9, 10, 0));
    w.policy = p;
    let events = [ev(
        1,
        at(NY, 3, 9, 11, 0),
        status(Status::RequiresDeliverables),
    )];
    let c = w.clock(&events, at(NY, 3, 9, 12, 0), "receipt_confirmation");
    assert_eq!(c.state, ClockState::Met);
    assert!(!c.active);
    assert!(c.pauses.is_empty());

    let w = concinnity_world("tier-3", at(NY, 3, 9, 10, 0));
    let events = [
        ev(1, at(NY, 3, 9, 11, 0), status(Status::Confirmed)),
        ev(2, at(NY, 3, 9, 12, 0), status(Status::OutOfScope)),
    ];
    let c = w.clock(&events, at(NY, 3, 20, 0, 0), "start_processing");
    assert_eq!(c.state, ClockState::Cancelled);
    assert_eq!(c.ended_at, Some(at(NY, 3, 9, 12, 0)));
}

#[test]
fn review_autoclose_fires_at_the_end_of_the_fifth_business_day() {
    // Submitted Thursday 2026-03-26 11:00; Good Friday 04-03 is a holiday in this office:
    // business days Fri 27, Mon 30, Tue 31, Wed 1, Thu 2 -> fires Thursday 04-02 17:00.
    let w = concinnity_world("tier-3", at(NY, 3, 20, 9, 0));
    let events = [ev(
        1,
        at(NY, 3, 26, 11, 0),
        status(Status::SubmittedForReview),
    )];
    let c = w.clock(&events, at(NY, 4, 2, 16, 0), "review_autoclose");
    assert_eq!(c.state, ClockState::Running);
    assert_eq!(c.deadline, Some(at(NY, 4, 2, 17, 0)));
    let c = w.clock(&events, at(NY, 4, 2, 17, 1), "review_autoclose");
    assert_eq!(c.state, ClockState::Fired);
    assert_eq!(c.ended_at, Some(at(NY, 4, 2, 17, 0)));
    // The customer answered before: the timer stops, and resubmitting starts a new one.
    let events = [
        ev(1, at(NY, 3, 26, 11, 0), status(Status::SubmittedForReview)),
        ev(2, at(NY, 3, 30, 9, 30), status(Status::Processing)),
        ev(3, at(NY, 3, 31, 9, 30), status(Status::SubmittedForReview)),
    ];
    let state = w.fold(&events, at(NY, 3, 31, 10, 0)).expect("legal");
    let reviews: Vec<(ClockState, u32)> = state
        .clocks
        .iter()
        .filter(|c| c.metric.as_str() == "review_autoclose")
        .map(|c| (c.state, c.instance))
        .collect();
    assert_eq!(
        reviews,
        vec![(ClockState::Stopped, 0), (ClockState::Running, 1)]
    );
}

/// Clevr (003_c9db4353a1f27684.txt): response and resolution by severity, on
/// Mon-Fri 08:00-18:30 Toronto.
fn clevr() -> Policy {
    policy(json!({
        "priorities": ["sev-1", "sev-2", "sev-3", "sev-4"],
        "clocks": [
            {
                "metric": "first_response", "kind": "promise",
                "start": [{"on": "received"}],
                "stop": [{"on": "event", "value": {"event": "agent_responded"}}],
                "pause_statuses": ["REQUIRES_DELIVERABLES"],
                "targets": [
                    {"applies": {"priorities": ["sev-1"]}, "duration": {"kind": "business_minutes", "calendar": "support", "minutes": 60}, "on_due": {"action": "none"}},
                    {"applies": {"priorities": ["sev-2"]}, "duration": {"kind": "business_minutes", "calendar": "support", "minutes": 240}, "on_due": {"action": "none"}},
                    {"applies": {"priorities": ["sev-3", "sev-4"]}, "duration": {"kind": "business_days", "calendar": "support", "days": 1, "mode": "same_time"}, "on_due": {"action": "none"}}
                ]
            },
            {
                "metric": "resolution", "kind": "promise",
                "start": [{"on": "cycle_started"}],
                "stop": [{"on": "entered_status", "value": "RESOLVED"}, {"on": "entered_status", "value": "CLOSED"}],
                "pause_statuses": ["REQUIRES_DELIVERABLES"],
                "targets": [
                    {"applies": {"priorities": ["sev-1"]}, "duration": {"kind": "business_days", "calendar": "support", "days": 1, "mode": "same_time"}, "warnings": [50], "on_due": {"action": "none"}},
                    {"applies": {"priorities": ["sev-2"]}, "duration": {"kind": "business_days", "calendar": "support", "days": 1, "mode": "same_time"}, "on_due": {"action": "none"}},
                    {"applies": {"priorities": ["sev-3"]}, "duration": {"kind": "business_days", "calendar": "support", "days": 2, "mode": "same_time"}, "on_due": {"action": "none"}}
                ]
            }
        ]
    }))
}

fn clevr_world(priority: &str, received: DateTime<Utc>) -> World {
    World {
        policy: clevr(),
        ticket: ticket(received, "incident", Some(priority), None),
        org: org(TO, vec![]),
        cals: calendars(TO, vec![("support", weekdays(TO, &["08:00-18:30"], &[]))]),
    }
}

#[test]
fn a_priority_change_retargets_from_the_original_start() {
    // sev-3 received Friday 2026-03-13 17:00: first response 1 business day -> Monday 17:00.
    // Raised to sev-2 on Monday 08:30: 4 business hours from the original start, Friday
    // 17:00-18:30 (1 h 30) + Monday 08:00-10:30 -> Monday 10:30.
    let w = clevr_world("sev-3", at(TO, 3, 13, 17, 0));
    assert_eq!(
        w.clock(&[], at(TO, 3, 16, 8, 0), "first_response").deadline,
        Some(at(TO, 3, 16, 17, 0))
    );
    let raised = [ev(
        1,
        at(TO, 3, 16, 8, 30),
        EventKind::PriorityChanged {
            to: PriorityLabel::parse("sev-2").expect("valid"),
        },
    )];
    let c = w.clock(&raised, at(TO, 3, 16, 9, 0), "first_response");
    assert_eq!(c.deadline, Some(at(TO, 3, 16, 10, 30)));
    assert_eq!(c.started_at, at(TO, 3, 13, 17, 0));
    assert_eq!(c.budget, Some(TimeDelta::hours(4)));
}

#[test]
fn a_clock_without_a_target_waits_and_starts_retroactively() {
    // sev-4 has no resolution target ("TBD"): the clock is not started, with the reason.
    // Raised to sev-3 on Tuesday: 2 business days from the original receipt, Monday
    // 2026-03-09 10:00 -> Wednesday 10:00.
    let w = clevr_world("sev-4", at(TO, 3, 9, 10, 0));
    let c = w.clock(&[], at(TO, 3, 10, 9, 0), "resolution");
    assert_eq!(c.state, ClockState::NotStarted);
    assert_eq!(
        c.not_started,
        Some(NotStartedReason::NoTargetForPriority(Some(
            PriorityLabel::parse("sev-4").expect("valid")
        )))
    );
    let raised = [ev(
        1,
        at(TO, 3, 10, 9, 0),
        EventKind::PriorityChanged {
            to: PriorityLabel::parse("sev-3").expect("valid"),
        },
    )];
    let c = w.clock(&raised, at(TO, 3, 10, 9, 30), "resolution");
    assert_eq!(c.state, ClockState::Running);
    assert_eq!(c.deadline, Some(at(TO, 3, 11, 10, 0)));
}

#[test]
fn a_breached_clock_stays_breached_whatever_the_retargeting() {
    // sev-1 first response 1 business hour: received Monday 10:00, due 11:00. At 11:30 it
    // is breached; lowering to sev-3 afterwards does not undo the breach.
    let w = clevr_world("sev-1", at(TO, 3, 9, 10, 0));
    let events = [
        ev(
            1,
            at(TO, 3, 9, 11, 30),
            EventKind::PriorityChanged {
                to: PriorityLabel::parse("sev-3").expect("valid"),
            },
        ),
        ev(2, at(TO, 3, 9, 12, 0), EventKind::AgentResponded),
    ];
    let c = w.clock(&events, at(TO, 3, 9, 13, 0), "first_response");
    assert_eq!(c.state, ClockState::Breached);
    assert_eq!(c.breached_at, Some(at(TO, 3, 9, 11, 0)));
    assert_eq!(c.deadline, Some(at(TO, 3, 9, 11, 0)));
}

#[test]
fn late_events_fold_in_time_order() {
    // The CRM sends the agent's response (Monday 10:40) after a customer reply recorded for
    // 10:50; arrival order does not matter, occurred_at does.
    let w = clevr_world("sev-1", at(TO, 3, 9, 10, 0));
    let in_order = [
        ev(1, at(TO, 3, 9, 10, 40), EventKind::AgentResponded),
        ev(2, at(TO, 3, 9, 10, 50), EventKind::CustomerReplied),
    ];
    let late = [
        ev(1, at(TO, 3, 9, 10, 50), EventKind::CustomerReplied),
        ev(2, at(TO, 3, 9, 10, 40), EventKind::AgentResponded),
    ];
    let a = w.fold(&in_order, at(TO, 3, 9, 12, 0)).expect("legal");
    let b = w.fold(&late, at(TO, 3, 9, 12, 0)).expect("legal");
    assert_eq!(a.clocks, b.clocks);
    assert_eq!(a.clocks[0].state, ClockState::Met);
    assert_eq!(a.clocks[0].ended_at, Some(at(TO, 3, 9, 10, 40)));
}

#[test]
fn a_late_event_that_makes_a_stored_one_illegal_is_rejected() {
    // Stored: RESOLVED at 12:00, then PROCESSING at 13:00 would need a reopen... so store
    // PROCESSING at 11:00 and RESOLVED at 12:00; a late CANCELLED at 10:30 makes the
    // stored PROCESSING at 11:00 illegal (CANCELLED is final): the stored event is named.
    let w = clevr_world("sev-2", at(TO, 3, 9, 10, 0));
    let events = [
        ev(1, at(TO, 3, 9, 11, 0), status(Status::Processing)),
        ev(2, at(TO, 3, 9, 12, 0), status(Status::Resolved)),
        ev(3, at(TO, 3, 9, 10, 30), status(Status::Cancelled)),
    ];
    let err = w.fold(&events, at(TO, 3, 9, 13, 0)).expect_err("conflict");
    assert_eq!(err.seq, 1);
    assert!(matches!(
        err.violation,
        Violation::Transition {
            from: Status::Cancelled,
            ..
        }
    ));
}

#[test]
fn illegal_transitions_and_reopen() {
    let w = clevr_world("sev-2", at(TO, 3, 9, 10, 0));
    let reopen_open = [ev(1, at(TO, 3, 9, 11, 0), EventKind::Reopened)];
    assert!(matches!(
        w.fold(&reopen_open, at(TO, 3, 9, 12, 0))
            .map_err(|e| e.violation),
        Err(Violation::Reopen(TransitionError::NotReopenable(
            Status::New
        )))
    ));
    let to_new = [ev(1, at(TO, 3, 9, 11, 0), status(Status::New))];
    assert!(w.fold(&to_new, at(TO, 3, 9, 12, 0)).is_err());
    let before = [ev(1, at(TO, 3, 9, 9, 0), status(Status::Processing))];
    assert_eq!(
        w.fold(&before, at(TO, 3, 9, 12, 0))
            .map_err(|e| e.violation),
        Err(Violation::BeforeReceived)
    );
    // Resolved, then reopened: a new cycle with a new resolution clock from the reopen.
    let events = [
        ev(1, at(TO, 3, 9, 11, 0), status(Status::Resolved)),
        ev(2, at(TO, 3, 10, 9, 0), EventKind::Reopened),
    ];
    let state = w.fold(&events, at(TO, 3, 10, 10, 0)).expect("legal");
    assert_eq!(state.status, Status::Processing);
    assert_eq!(state.cycle, 1);
    let resolutions: Vec<(u32, ClockState, Option<DateTime<Utc>>)> = state
        .clocks
        .iter()
        .filter(|c| c.metric.as_str() == "resolution")
        .map(|c| (c.cycle, c.state, c.deadline))
        .collect();
    assert_eq!(
        resolutions,
        vec![
            (0, ClockState::Met, Some(at(TO, 3, 10, 10, 0))),
            (1, ClockState::Running, Some(at(TO, 3, 11, 9, 0))),
        ]
    );
}

/// Contently (002_2ed81f82b9a6c46a.txt): triage one business day, then engineering the
/// following week.
fn contently() -> Policy {
    policy(json!({
        "priorities": [],
        "clocks": [
            {
                "metric": "escalation_triage", "kind": "promise",
                "start": [{"on": "entered_status", "value": "ESCALATED"}],
                "stop": [
                    {"on": "event", "value": {"event": "triage_completed"}},
                    {"on": "entered_status", "value": "PROCESSING"},
                    {"on": "entered_status", "value": "RESOLVED"},
                    {"on": "entered_status", "value": "CLOSED"}
                ],
                "pause_statuses": ["REQUIRES_DELIVERABLES"],
                "targets": [{"duration": {"kind": "business_days", "calendar": "business", "days": 1, "mode": "same_time"}, "on_due": {"action": "none"}}]
            },
            {
                "metric": "engineering_handoff", "kind": "promise",
                "start": [
                    {"on": "target_stopped_unresolved", "value": "escalation_triage"},
                    {"on": "target_due", "value": "escalation_triage"}
                ],
                "stop": [{"on": "event", "value": {"event": "custom", "name": "engineering_engaged"}}],
                "pause_statuses": [],
                "targets": [{"duration": {"kind": "next_week", "calendar": "business"}, "on_due": {"action": "none"}}]
            }
        ]
    }))
}

fn contently_world(received: DateTime<Utc>) -> World {
    World {
        policy: contently(),
        ticket: ticket(received, "support", None, None),
        org: org(NY, vec![]),
        cals: calendars(
            NY,
            vec![("business", weekdays(NY, &["09:00-17:00"], &[(3, 16)]))],
        ),
    }
}

#[test]
fn engineering_handoff_follows_triage_into_next_week() {
    // Escalated Wednesday 2026-03-11 10:00; triage due Thursday 10:00. Triage completed
    // Thursday 09:00 without a resolution: engineering is due at the first opening of the
    // next ISO week's first business day. Monday 03-16 is a holiday here: Tuesday 09:00.
    let w = contently_world(at(NY, 3, 11, 9, 0));
    let events = [
        ev(1, at(NY, 3, 11, 10, 0), status(Status::Escalated)),
        ev(2, at(NY, 3, 12, 9, 0), EventKind::TriageCompleted),
    ];
    let state = w.fold(&events, at(NY, 3, 12, 12, 0)).expect("legal");
    let triage = &state.clocks[0];
    assert_eq!(
        (triage.state, triage.deadline),
        (ClockState::Met, Some(at(NY, 3, 12, 10, 0)))
    );
    let handoff = &state.clocks[1];
    assert_eq!(handoff.started_at, at(NY, 3, 12, 9, 0));
    assert_eq!(handoff.deadline, Some(at(NY, 3, 17, 9, 0)));
    // Engineering engaged on Tuesday 08:00: met.
    let mut more = events.to_vec();
    more.push(ev(
        3,
        at(NY, 3, 17, 8, 0),
        EventKind::Custom {
            name: CustomEventName::parse("engineering_engaged").expect("valid"),
        },
    ));
    let c = w.clock(&more, at(NY, 3, 18, 0, 0), "engineering_handoff");
    assert_eq!(c.state, ClockState::Met);
}

#[test]
fn a_triage_falling_due_starts_the_handoff_at_its_deadline() {
    // Nobody completes triage: at its deadline (Thursday 10:00) it breaches and the
    // handoff starts then, due Tuesday 09:00 the week after.
    let w = contently_world(at(NY, 3, 11, 9, 0));
    let events = [ev(1, at(NY, 3, 11, 10, 0), status(Status::Escalated))];
    let state = w.fold(&events, at(NY, 3, 12, 11, 0)).expect("legal");
    assert_eq!(state.clocks[0].state, ClockState::Breached);
    assert_eq!(state.clocks[1].started_at, at(NY, 3, 12, 10, 0));
    assert_eq!(state.clocks[1].deadline, Some(at(NY, 3, 17, 9, 0)));
    // Before the deadline the handoff does not exist yet, and the next change is due then.
    let state = w.fold(&events, at(NY, 3, 12, 9, 0)).expect("legal");
    assert_eq!(state.clocks.len(), 1);
    assert_eq!(state.next_change_at, Some(at(NY, 3, 12, 10, 0)));
}

/// 24social (004_7d3a5ac72f4831df.txt): lead time by estimate from the main stakeholder's
/// authorisation; publishing needs the main stakeholder's approval.
fn social() -> Policy {
    policy(json!({
        "priorities": [],
        "work_authorisation_role": "main_stakeholder",
        "approval_guards": [{"to": "CLOSED", "role": "main_stakeholder", "waived_when_requested_by_role": true}],
        "clocks": [{
            "metric": "lead_time", "kind": "promise",
            "start": [{"on": "event", "value": {"event": "work_authorised"}}],
            "stop": [{"on": "entered_status", "value": "SUBMITTED_FOR_REVIEW"}],
            "pause_statuses": ["REQUIRES_DELIVERABLES"],
            "targets": [{"applies": {"request_types": ["task"]},
                "duration": {"kind": "by_estimate", "buckets": [
                    {"up_to_minutes": 180, "duration": {"kind": "wall_clock", "minutes": 1440}},
                    {"up_to_minutes": 480, "duration": {"kind": "wall_clock", "minutes": 4320}},
                    {"up_to_minutes": 960, "duration": {"kind": "calendar_days", "days": 7}}
                ]},
                "on_due": {"action": "none"}}]
        }]
    }))
}

const LONDON: Tz = chrono_tz::Europe::London;

fn social_world() -> World {
    World {
        policy: social(),
        ticket: ticket(at(LONDON, 3, 23, 9, 0), "task", None, None),
        org: org(
            LONDON,
            vec![
                contact("ann", Some("main_stakeholder")),
                contact("bob", None),
            ],
        ),
        cals: calendars(LONDON, vec![]),
    }
}

#[test]
fn lead_time_waits_for_an_estimate_and_needs_a_quote_above_16_hours() {
    let w = social_world();
    let authorised = by(
        ev(1, at(LONDON, 3, 23, 10, 0), EventKind::WorkAuthorised),
        "ann",
    );
    let c = w.clock(
        std::slice::from_ref(&authorised),
        at(LONDON, 3, 23, 11, 0),
        "lead_time",
    );
    assert_eq!(
        (c.state, c.not_started),
        (ClockState::NotStarted, Some(NotStartedReason::NoEstimate))
    );
    // 5 h estimated at 11:00: 72 real hours from the authorisation (10:00 Monday), across
    // no DST change: Thursday 10:00.
    let events = [
        authorised.clone(),
        ev(
            2,
            at(LONDON, 3, 23, 11, 0),
            EventKind::EstimateSet { minutes: 300 },
        ),
    ];
    assert_eq!(
        w.clock(&events, at(LONDON, 3, 23, 12, 0), "lead_time")
            .deadline,
        Some(at(LONDON, 3, 26, 10, 0))
    );
    // 12 h: 7 calendar days, same local time, across the 29 March clock change: Monday
    // 30 March 10:00 BST, 167 real hours later.
    let events = [
        authorised.clone(),
        ev(
            2,
            at(LONDON, 3, 23, 11, 0),
            EventKind::EstimateSet { minutes: 720 },
        ),
    ];
    let c = w.clock(&events, at(LONDON, 3, 23, 12, 0), "lead_time");
    assert_eq!(c.deadline, Some(at(LONDON, 3, 30, 10, 0)));
    assert_eq!(c.budget, Some(TimeDelta::hours(167)));
    // 20 h: no standard lead time.
    let events = [
        authorised,
        ev(
            2,
            at(LONDON, 3, 23, 11, 0),
            EventKind::EstimateSet { minutes: 1200 },
        ),
    ];
    let c = w.clock(&events, at(LONDON, 3, 23, 12, 0), "lead_time");
    assert_eq!(
        c.not_started,
        Some(NotStartedReason::NeedsQuote {
            estimate_minutes: 1200
        })
    );
    assert_eq!(c.deadline, None);
}

#[test]
fn only_the_main_stakeholder_authorises_and_approves_publishing() {
    let w = social_world();
    let by_bob = [by(
        ev(1, at(LONDON, 3, 23, 10, 0), EventKind::WorkAuthorised),
        "bob",
    )];
    assert!(matches!(
        w.fold(&by_bob, at(LONDON, 3, 23, 11, 0))
            .map_err(|e| e.violation),
        Err(Violation::NotAuthorised { .. })
    ));
    let close_unapproved = [ev(1, at(LONDON, 3, 23, 10, 0), status(Status::Closed))];
    assert!(matches!(
        w.fold(&close_unapproved, at(LONDON, 3, 23, 11, 0))
            .map_err(|e| e.violation),
        Err(Violation::ApprovalMissing {
            to: Status::Closed,
            ..
        })
    ));
    let approved_then_closed = [
        by(ev(1, at(LONDON, 3, 23, 10, 0), EventKind::Approved), "ann"),
        ev(2, at(LONDON, 3, 23, 10, 30), status(Status::Closed)),
    ];
    assert!(
        w.fold(&approved_then_closed, at(LONDON, 3, 23, 11, 0))
            .is_ok()
    );
    // Bob's approval does not count.
    let bob_approves = [
        by(ev(1, at(LONDON, 3, 23, 10, 0), EventKind::Approved), "bob"),
        ev(2, at(LONDON, 3, 23, 10, 30), status(Status::Closed)),
    ];
    assert!(w.fold(&bob_approves, at(LONDON, 3, 23, 11, 0)).is_err());
    // Requested by the main stakeholder herself: no check needed.
    let mut w = social_world();
    w.ticket.requested_by = Some(ExternalId::parse("ann").expect("valid"));
    assert!(w.fold(&close_unapproved, at(LONDON, 3, 23, 11, 0)).is_ok());
}

#[test]
fn scheduled_time_is_fixed_a_pause_hides_it_and_a_late_resume_breaches() {
    let p = policy(json!({
        "priorities": ["P6"],
        "clocks": [{
            "metric": "first_response", "kind": "promise",
            "start": [{"on": "received"}],
            "stop": [{"on": "event", "value": {"event": "agent_responded"}}],
            "pause_statuses": ["REQUIRES_DELIVERABLES"],
            "targets": [{"applies": {"priorities": ["P6"]}, "duration": {"kind": "scheduled_time"}, "on_due": {"action": "none"}}]
        }]
    }));
    let w = World {
        policy: p,
        ticket: ticket(at(NY, 3, 9, 10, 0), "task", Some("P6"), None),
        org: org(NY, vec![]),
        cals: calendars(NY, vec![]),
    };
    let c = w.clock(&[], at(NY, 3, 9, 11, 0), "first_response");
    assert_eq!(
        (c.state, c.not_started),
        (
            ClockState::NotStarted,
            Some(NotStartedReason::NoScheduledTime)
        )
    );
    // Scheduled for Saturday 02:00, outside any hours: used as given.
    let events = [
        ev(
            1,
            at(NY, 3, 9, 11, 0),
            EventKind::ScheduledTimeSet {
                at: at(NY, 3, 14, 2, 0),
            },
        ),
        ev(2, at(NY, 3, 10, 9, 0), status(Status::RequiresDeliverables)),
    ];
    // Paused like every other clock: no deadline, the scheduled time if resumed.
    let c = w.clock(&events, at(NY, 3, 11, 9, 0), "first_response");
    assert_eq!(c.state, ClockState::Paused);
    assert_eq!(c.deadline, None);
    assert_eq!(c.deadline_if_resumed, Some(at(NY, 3, 14, 2, 0)));
    // Still paused past the scheduled time: not breached while the customer holds it.
    let c = w.clock(&events, at(NY, 3, 16, 9, 0), "first_response");
    assert_eq!((c.state, c.breached_at), (ClockState::Paused, None));
    // Resumed Monday 09:00, after the scheduled time: breached at once, its deadline the
    // scheduled time, the breach taking effect at the resume.
    let mut resumed = events.to_vec();
    resumed.push(ev(3, at(NY, 3, 16, 9, 0), status(Status::Processing)));
    let state = w.fold(&resumed, at(NY, 3, 16, 9, 30)).expect("legal");
    let c = state.clocks.last().expect("a clock").clone();
    assert_eq!(c.state, ClockState::Breached);
    assert_eq!(c.deadline, Some(at(NY, 3, 14, 2, 0)));
    assert_eq!(c.breached_at, Some(at(NY, 3, 14, 2, 0)));
    let breach = state
        .reached
        .iter()
        .find(|a| a.what == ActionKind::Breach)
        .expect("breach reached");
    assert_eq!(
        (breach.at, breach.due),
        (at(NY, 3, 16, 9, 0), at(NY, 3, 14, 2, 0))
    );
}

#[test]
fn cancelling_the_ticket_cancels_its_clocks() {
    let w = clevr_world("sev-2", at(TO, 3, 9, 10, 0));
    let events = [ev(1, at(TO, 3, 9, 10, 30), status(Status::Cancelled))];
    let state = w.fold(&events, at(TO, 3, 9, 12, 0)).expect("legal");
    assert!(
        state
            .clocks
            .iter()
            .all(|c| c.state == ClockState::Cancelled && !c.active)
    );
    assert_eq!(state.next_change_at, None);
}

proptest! {
    /// The state does not depend on the order events arrive in: only on when they
    /// happened.
    #[test]
    fn arrival_order_does_not_matter(
        kinds in proptest::collection::vec(0u8..6, 1..12),
        gaps in proptest::collection::vec(1i64..600, 12),
        shuffle in proptest::collection::vec(any::<u32>(), 12),
    ) {
        let w = clevr_world("sev-2", at(TO, 3, 9, 8, 0));
        let mut t = at(TO, 3, 9, 8, 0);
        let mut events: Vec<Event> = Vec::new();
        for (i, k) in kinds.iter().enumerate() {
            t += TimeDelta::minutes(gaps[i]);
            let kind = match k {
                0 => status(Status::Processing),
                1 => status(Status::RequiresDeliverables),
                2 => EventKind::AgentResponded,
                3 => EventKind::CustomerReplied,
                4 => EventKind::PriorityChanged { to: PriorityLabel::parse("sev-1").expect("valid") },
                _ => status(Status::Escalated),
            };
            events.push(ev(i as i64, t, kind));
        }
        let as_of = t + TimeDelta::hours(30);
        let in_order = w.fold(&events, as_of);
        let mut permuted = events.clone();
        let mut keys: Vec<(u32, usize)> = shuffle.iter().copied().zip(0..).take(permuted.len()).collect();
        keys.sort();
        let reordered: Vec<Event> = keys.iter().map(|(_, i)| permuted[*i].clone()).collect();
        permuted = reordered.into_iter().enumerate().map(|(seq, mut e)| { e.seq = seq as i64; e }).collect();
        let shuffled = w.fold(&permuted, as_of);
        match (in_order, shuffled) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a.clocks, b.clocks),
            (Err(a), Err(b)) => prop_assert_eq!(a.violation, b.violation),
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a.is_ok(), b.is_ok()),
        }
    }

    /// A running clock's deadline is when its running open time reaches the budget.
    #[test]
    fn deadlines_use_up_the_budget_exactly(
        pause_at in 1i64..3000,
        pause_len in 0i64..3000,
        as_of_after in 0i64..20000,
    ) {
        let w = concinnity_world("tier-3", at(NY, 3, 9, 9, 0));
        let confirm = at(NY, 3, 9, 10, 0);
        let pause = confirm + TimeDelta::minutes(pause_at);
        let resume = pause + TimeDelta::minutes(pause_len);
        let events = [
            ev(1, confirm, status(Status::Confirmed)),
            ev(2, pause, status(Status::RequiresDeliverables)),
            ev(3, resume, status(Status::Confirmed)),
        ];
        let as_of = resume + TimeDelta::minutes(as_of_after);
        let c = w.clock(&events, as_of, "start_processing");
        if let (Some(deadline), Some(budget)) = (c.deadline, c.budget) {
            let cal = &w.cals.slots[&SlotName::parse("office").expect("valid")];
            let paused: TimeDelta = c
                .pauses
                .iter()
                .map(|(a, b)| cal.elapsed(*a, b.unwrap_or(deadline).min(deadline)).expect("in range"))
                .sum();
            prop_assert_eq!(cal.elapsed(c.started_at, deadline).expect("in range") - paused, budget);
        }
    }
}

#[test]
fn a_deadline_at_an_opening_stays_at_the_opening() {
    // sev-3 first response, 1 business day SameTime, received Saturday 2026-03-14 11:00:
    // the clock starts Monday 08:00 and is due Tuesday 08:00, not Monday 18:30 (where the
    // 10 h 30 budget is already used up).
    let w = clevr_world("sev-3", at(TO, 3, 14, 11, 0));
    let c = w.clock(&[], at(TO, 3, 16, 9, 0), "first_response");
    assert_eq!(c.deadline, Some(at(TO, 3, 17, 8, 0)));
    assert_eq!(c.budget, Some(TimeDelta::minutes(630)));
    // Waiting on the customer Monday 09:00-10:00 moves it by that hour: Tuesday 09:00.
    let events = [
        ev(1, at(TO, 3, 16, 9, 0), status(Status::RequiresDeliverables)),
        ev(2, at(TO, 3, 16, 10, 0), status(Status::Processing)),
    ];
    assert_eq!(
        w.clock(&events, at(TO, 3, 16, 11, 0), "first_response")
            .deadline,
        Some(at(TO, 3, 17, 9, 0))
    );
}

fn system(seq: i64, t: DateTime<Utc>, action: &SystemAction) -> Event {
    Event {
        seq,
        occurred_at: t,
        kind: action.event_kind(),
        actor: Actor {
            client: "servicelevel".into(),
            contact: None,
        },
        request_id: format!("system-{seq}"),
    }
}

#[test]
fn a_fired_timer_moves_the_ticket_in_the_fold_and_is_recorded_once() {
    // Submitted Thursday 2026-03-26 11:00; auto-close due Thursday 04-02 17:00 (Good
    // Friday is a holiday in this office).
    let w = concinnity_world("tier-3", at(NY, 3, 20, 9, 0));
    let submitted = ev(1, at(NY, 3, 26, 11, 0), status(Status::SubmittedForReview));
    let due = at(NY, 4, 2, 17, 0);
    let state = w
        .fold(std::slice::from_ref(&submitted), at(NY, 4, 2, 17, 1))
        .expect("legal");
    let close = state
        .reached
        .iter()
        .find(|a| matches!(a.what, ActionKind::MoveTo { .. }))
        .cloned()
        .expect("the auto-close is due");
    assert_eq!((close.at, close.due), (due, due));
    // The fold takes the action itself: what is recorded is its output.
    assert_eq!(state.status, Status::Closed);
    assert!(state.missing.contains(&close));
    // Recorded (stamped with the due instant, whenever the runner got to it): nothing
    // more to record, nothing wrong.
    let events = [submitted.clone(), system(2, due, &close)];
    let state = w.fold(&events, at(NY, 4, 3, 9, 0)).expect("legal");
    assert_eq!(state.status, Status::Closed);
    assert!(state.reached.contains(&close));
    assert!(state.missing.iter().all(|a| a != &close));
    assert!(state.wrong.is_empty());
    // A reply the CRM sends late: the customer answered Wednesday, moving the ticket back
    // to PROCESSING before the timer was due. The recorded auto-close is now wrong, and
    // the ticket is not closed.
    let late = ev(3, at(NY, 4, 1, 10, 0), status(Status::Processing));
    let events = [submitted, system(2, due, &close), late];
    let state = w.fold(&events, at(NY, 4, 3, 9, 0)).expect("legal");
    assert_eq!(state.wrong, vec![2]);
    assert_eq!(state.status, Status::Processing);
    assert!(
        state
            .reached
            .iter()
            .all(|a| !matches!(a.what, ActionKind::MoveTo { .. }))
    );
    // Once retracted, it no longer counts and is no longer wrong.
    let mut with_retraction = events.to_vec();
    with_retraction.push(ev(
        4,
        at(NY, 4, 3, 9, 0),
        EventKind::Retracted {
            seq: 2,
            reason: ShortText::parse("a late event showed it wrong").expect("valid"),
        },
    ));
    let state = w.fold(&with_retraction, at(NY, 4, 3, 9, 0)).expect("legal");
    assert!(state.wrong.is_empty());
    assert_eq!(state.status, Status::Processing);
}

#[test]
fn breaches_and_warnings_are_reached_and_checked_at_their_place() {
    // Tier III receipt confirmation: 24 h from Monday 10:00, warnings at 50 % (22:00) and
    // 75 % (Tuesday 04:00), due Tuesday 10:00.
    let w = concinnity_world("tier-3", at(NY, 3, 9, 10, 0));
    let state = w.fold(&[], at(NY, 3, 10, 10, 30)).expect("legal");
    let kinds: Vec<(ActionKind, DateTime<Utc>)> = state
        .reached
        .iter()
        .map(|a| (a.what.clone(), a.at))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ActionKind::Warning { level: 50 }, at(NY, 3, 9, 22, 0)),
            (ActionKind::Warning { level: 75 }, at(NY, 3, 10, 4, 0)),
            (ActionKind::Breach, at(NY, 3, 10, 10, 0)),
        ]
    );
    let breach = state.reached[2].clone();
    // The confirmation, recorded late, happened exactly at the deadline: the promise is
    // met and the breach recorded before it arrived is wrong.
    let events = [
        system(1, breach.at, &breach),
        ev(2, at(NY, 3, 10, 10, 0), status(Status::Confirmed)),
    ];
    let state = w.fold(&events, at(NY, 3, 10, 11, 0)).expect("legal");
    assert_eq!(state.wrong, vec![1]);
    assert_eq!(state.clocks[0].state, ClockState::Met);
    // A warning stamped at the wrong instant is wrong too.
    let mut off = state.reached.first().cloned().expect("a warning");
    off.at += TimeDelta::minutes(1);
    let state = w
        .fold(&[system(1, off.at, &off)], at(NY, 3, 10, 11, 0))
        .expect("legal");
    assert_eq!(state.wrong, vec![1]);
}

#[test]
fn an_explanation_lists_counted_time_pauses_holidays_and_closed_days() {
    // sev-2 first response, 4 business hours on Mon-Fri 08:00-18:30 Toronto, Monday
    // 2026-03-09 a holiday. Received Friday 2026-03-06 16:00 (EST): Friday 16:00-18:30
    // counts 2 h 30; Saturday and Sunday are closed (and DST starts on the Sunday);
    // Monday is the holiday; Tuesday (EDT) 08:00-08:30 counts 30 min, then
    // REQUIRES_DELIVERABLES pauses 08:30-09:00, and 09:00-10:00 counts the last hour:
    // due Tuesday 10:00 EDT.
    let mut w = clevr_world("sev-2", at(TO, 3, 6, 16, 0));
    w.cals = calendars(
        TO,
        vec![("support", weekdays(TO, &["08:00-18:30"], &[(3, 9)]))],
    );
    let events = [
        ev(
            1,
            at(TO, 3, 10, 8, 30),
            status(Status::RequiresDeliverables),
        ),
        ev(2, at(TO, 3, 10, 9, 0), status(Status::Processing)),
    ];
    let as_of = at(TO, 3, 10, 9, 30);
    let v = w.clock(&events, as_of, "first_response");
    assert_eq!(v.deadline, Some(at(TO, 3, 10, 10, 0)));
    let e = crate::domain::explain::explain(&v, &w.cals, as_of).expect("explains");
    assert_eq!(e.counted_on.as_ref().map(SlotName::as_str), Some("support"));
    let spans = |list: &[crate::domain::OpenInterval]| -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        list.iter().map(|i| (i.start, i.end)).collect()
    };
    assert_eq!(
        spans(&e.counted),
        vec![
            (at(TO, 3, 6, 16, 0), at(TO, 3, 6, 18, 30)),
            (at(TO, 3, 10, 8, 0), at(TO, 3, 10, 8, 30)),
            (at(TO, 3, 10, 9, 0), at(TO, 3, 10, 10, 0)),
        ]
    );
    assert_eq!(
        crate::domain::explain::total(&e.counted),
        TimeDelta::minutes(240)
    );
    assert_eq!(
        spans(&e.paused),
        vec![(at(TO, 3, 10, 8, 30), at(TO, 3, 10, 9, 0))]
    );
    let date = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 3, d).expect("date");
    assert_eq!(e.holidays_skipped, vec![date(9)]);
    assert_eq!(e.closed_days_skipped, vec![date(7), date(8)]);
    assert!(!e.truncated);
}

#[test]
fn an_explanation_of_a_wall_clock_promise_counts_real_time() {
    // A 24 h wall-clock promise counts every second: one interval, no skipped days.
    let w = World {
        policy: policy(json!({
            "priorities": [],
            "clocks": [{
                "metric": "receipt_confirmation", "kind": "promise",
                "start": [{"on": "received"}],
                "stop": [{"on": "entered_status", "value": "CONFIRMED"}],
                "pause_statuses": [],
                "targets": [{"applies": {}, "duration": {"kind": "wall_clock", "minutes": 1440}, "on_due": {"action": "none"}}]
            }]
        })),
        ticket: ticket(at(NY, 3, 7, 10, 0), "task", None, None),
        org: org(NY, vec![]),
        cals: calendars(NY, vec![]),
    };
    let as_of = at(NY, 3, 7, 11, 0);
    let v = w.clock(&[], as_of, "receipt_confirmation");
    let e = crate::domain::explain::explain(&v, &w.cals, as_of).expect("explains");
    assert_eq!(e.counted_on, None);
    // Saturday 10:00 EST + 24 h = Sunday 11:00 EDT (the night lost an hour).
    assert_eq!(e.until, at(NY, 3, 8, 11, 0));
    assert_eq!(e.counted.len(), 1);
    assert_eq!(
        crate::domain::explain::total(&e.counted),
        TimeDelta::hours(24)
    );
    assert!(e.holidays_skipped.is_empty() && e.closed_days_skipped.is_empty());
}

#[test]
fn a_preview_compares_deadlines_and_names_new_breaches() {
    // sev-2 first response (4 business hours) received Monday 2026-03-02 08:00 Toronto.
    // On 10:00-17:00 it is due 14:00; on 08:00-18:30, 12:00. As of 13:00, moving from the
    // first calendar to the second brings the deadline 2 h earlier and breaches it.
    let mut w = clevr_world("sev-2", at(TO, 3, 2, 8, 0));
    w.cals = calendars(TO, vec![("support", weekdays(TO, &["10:00-17:00"], &[]))]);
    let as_of = at(TO, 3, 2, 13, 0);
    let before = w.fold(&[], as_of).expect("folds");
    w.cals = calendars(TO, vec![("support", weekdays(TO, &["08:00-18:30"], &[]))]);
    let after = w.fold(&[], as_of).expect("folds");
    let moved = crate::domain::preview::compare(&before, &after);
    let first: Vec<_> = moved
        .iter()
        .filter(|m| m.metric.as_str() == "first_response")
        .collect();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].before, Some(at(TO, 3, 2, 14, 0)));
    assert_eq!(first[0].after, Some(at(TO, 3, 2, 12, 0)));
    assert_eq!(first[0].shift(), TimeDelta::hours(-2));
    assert!(first[0].newly_breached);
    // The other way round moves it later and breaches nothing new.
    let back = crate::domain::preview::compare(&after, &before);
    let first: Vec<_> = back
        .iter()
        .filter(|m| m.metric.as_str() == "first_response")
        .collect();
    assert_eq!(first[0].shift(), TimeDelta::hours(2));
    assert!(!first[0].newly_breached);
    // The same calendar moves nothing.
    assert!(crate::domain::preview::compare(&after, &after).is_empty());
}
