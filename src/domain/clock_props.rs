//! The fold's defining promises, as properties over the five packs' real policies and
//! random ticket timelines: the clocks depend only on when things happened, never on the
//! order a CRM delivered them; every write folds once; and a change after a clock ended
//! never alters it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::domain::business_time::BusinessCalendar;
use crate::domain::calendar::CalendarSpec;
use crate::domain::clock_calendar::VersionedCalendar;
use crate::domain::names::{
    CustomEventName, ExternalId, PlanName, RequestType, ResourceId, RoleName, ShortText,
};
use crate::domain::organization::{CalendarBinding, Contact, Organization};
use crate::domain::pack;
use crate::domain::status::Status;
use crate::domain::ticket::{ActionKind, Actor, Event, EventKind, SystemAction, Ticket};

const PACKS: [&str; 5] = [
    "concinnity",
    "priority-matrix",
    "contently",
    "clevr",
    "24social",
];

/// A pack's policy with the calendars its slots default to, ready to fold tickets on.
struct World {
    policy: Policy,
    org: Organization,
    cals: ClockCalendars,
    plans: Vec<PlanName>,
    request_types: Vec<RequestType>,
}

fn world(name: &str) -> World {
    let text = pack::embedded(name).expect("embedded pack");
    let p = pack::parse(text).expect("the pack parses");
    let zone = p
        .calendars
        .first()
        .map_or(chrono_tz::America::New_York, |c| c.spec.zone());
    let slots = p
        .calendars
        .iter()
        .map(|c| {
            let compiled = BusinessCalendar::compile(&c.spec).expect("compiles");
            (
                c.slot.clone(),
                Arc::new(VersionedCalendar::single(Arc::new(compiled))),
            )
        })
        .collect();
    let cals = ClockCalendars {
        zone: Arc::new(
            BusinessCalendar::compile(&CalendarSpec::always_open(zone)).expect("compiles"),
        ),
        slots,
    };
    let mut plans: Vec<PlanName> = Vec::new();
    let mut request_types = vec![RequestType::parse("other").expect("valid")];
    for t in p.policy.clocks.iter().flat_map(|c| &c.targets) {
        for plan in &t.applies.plans {
            if !plans.contains(plan) {
                plans.push(plan.clone());
            }
        }
        for r in &t.applies.request_types {
            if !request_types.contains(r) {
                request_types.push(r.clone());
            }
        }
    }
    let role = p.policy.work_authorisation_role.clone();
    let org = Organization {
        display_name: ShortText::parse("Props").expect("valid"),
        zone,
        plan: None,
        policy: ResourceId::parse("p").expect("valid"),
        calendars: Vec::<CalendarBinding>::new(),
        external_ids: vec![],
        contacts: vec![Contact {
            id: ExternalId::parse("boss").expect("valid"),
            name: ShortText::parse("Boss").expect("valid"),
            role: role.or_else(|| RoleName::parse("main_stakeholder").ok()),
            effective_from: None,
            effective_until: None,
        }],
    };
    World {
        policy: p.policy,
        org,
        cals,
        plans,
        request_types,
    }
}

/// One step of a generated timeline, before it is checked against the fold.
#[derive(Debug, Clone)]
enum Step {
    Status(usize),
    Reopen,
    Priority(usize),
    Estimate(u32),
    Schedule(i64),
    AgentResponded,
    CustomerReplied,
    TriageCompleted,
    WorkAuthorised,
    Approved,
    EngineeringEngaged,
}

const STATUSES: [Status; 8] = [
    Status::Confirmed,
    Status::Processing,
    Status::RequiresDeliverables,
    Status::Escalated,
    Status::SubmittedForReview,
    Status::Resolved,
    Status::Closed,
    Status::Cancelled,
];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..STATUSES.len()).prop_map(Step::Status),
        1 => Just(Step::Reopen),
        4 => (0usize..6).prop_map(Step::Priority),
        3 => (1u32..1500).prop_map(Step::Estimate),
        1 => (0i64..20_000).prop_map(Step::Schedule),
        2 => Just(Step::AgentResponded),
        1 => Just(Step::CustomerReplied),
        1 => Just(Step::TriageCompleted),
        1 => Just(Step::WorkAuthorised),
        1 => Just(Step::Approved),
        1 => Just(Step::EngineeringEngaged),
    ]
}

/// A generated case: a pack, a ticket, and (step, minutes after the previous) pairs.
#[derive(Debug, Clone)]
struct Case {
    pack: usize,
    received_minutes: i64,
    priority: usize,
    plan: usize,
    request_type: usize,
    steps: Vec<(Step, i64)>,
    /// Where each free event goes in the delivery order (see `delivery`).
    shuffle: Vec<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..PACKS.len(),
        // From 2026-03-01 to 2026-11-30: both DST changes of every pack's zone.
        0i64..(274 * 24 * 60),
        0usize..6,
        0usize..6,
        0usize..4,
        proptest::collection::vec((step(), 1i64..2880), 0..14),
        proptest::collection::vec(0usize..1000, 14),
    )
        .prop_map(
            |(pack, received_minutes, priority, plan, request_type, steps, shuffle)| Case {
                pack,
                received_minutes,
                priority,
                plan,
                request_type,
                steps,
                shuffle,
            },
        )
}

fn pick<T: Clone>(list: &[T], i: usize) -> Option<T> {
    (!list.is_empty()).then(|| list[i % list.len()].clone())
}

fn ticket(w: &World, c: &Case, received: DateTime<Utc>) -> Ticket {
    Ticket {
        id: "t".into(),
        organization: ResourceId::parse("o").expect("valid"),
        source_system: ExternalId::parse("crm").expect("valid"),
        external_id: ExternalId::parse("1").expect("valid"),
        request_type: pick(&w.request_types, c.request_type).expect("one at least"),
        priority: pick(&w.policy.priorities, c.priority),
        received_at: received,
        requested_by: None,
        estimate_minutes: None,
        scheduled_at: None,
        policy: ResourceId::parse("p").expect("valid"),
        policy_version: 1,
        plan: pick(&w.plans, c.plan),
    }
}

fn kind_of(w: &World, s: &Step, received: DateTime<Utc>) -> Option<EventKind> {
    Some(match s {
        Step::Status(i) => EventKind::StatusChanged {
            to: STATUSES[*i],
            reason: None,
        },
        Step::Reopen => EventKind::Reopened,
        Step::Priority(i) => EventKind::PriorityChanged {
            to: pick(&w.policy.priorities, *i)?,
        },
        Step::Estimate(m) => EventKind::EstimateSet { minutes: *m },
        Step::Schedule(m) => EventKind::ScheduledTimeSet {
            at: received + TimeDelta::minutes(*m),
        },
        Step::AgentResponded => EventKind::AgentResponded,
        Step::CustomerReplied => EventKind::CustomerReplied,
        Step::TriageCompleted => EventKind::TriageCompleted,
        Step::WorkAuthorised => EventKind::WorkAuthorised,
        Step::Approved => EventKind::Approved,
        Step::EngineeringEngaged => EventKind::Custom {
            name: CustomEventName::parse("engineering_engaged").expect("valid"),
        },
    })
}

fn ctx<'a>(w: &'a World, t: &'a Ticket) -> FoldContext<'a> {
    FoldContext {
        ticket: t,
        policy: &w.policy,
        organization: &w.org,
        calendars: &w.cals,
    }
}

/// The case's timeline: each step kept only where it is legal at its place (the
/// timeline is built in time order, so that is the fold of the prefix with it).
fn timeline(w: &World, t: &Ticket, c: &Case) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    let mut when = t.received_at;
    for (s, gap) in &c.steps {
        when += TimeDelta::minutes(*gap);
        let Some(kind) = kind_of(w, s, t.received_at) else {
            continue;
        };
        let e = Event {
            seq: events.len() as i64 + 1,
            occurred_at: when,
            kind,
            actor: Actor {
                client: "crm".into(),
                contact: Some(ExternalId::parse("boss").expect("valid")),
            },
            request_id: format!("e{}", events.len() + 1),
        };
        events.push(e);
        if fold(ctx(w, t), &events, when).is_err() {
            events.pop();
        }
    }
    events
}

/// Whether an event's legality can depend on events delivered before it: status moves,
/// reopens and approvals (a guard counts approvals) arrive in their order; every other
/// event may arrive at any point, late or early.
fn ordered(e: &Event) -> bool {
    matches!(
        e.kind,
        EventKind::StatusChanged { .. } | EventKind::Reopened | EventKind::Approved
    )
}

/// A delivery order: the ordered events in time order, each free event placed at a
/// random position among them.
fn delivery(events: &[Event], shuffle: &[usize]) -> Vec<Event> {
    let mut out: Vec<Event> = events.iter().filter(|e| ordered(e)).cloned().collect();
    for (i, e) in events.iter().filter(|e| !ordered(e)).enumerate() {
        let at = shuffle.get(i).copied().unwrap_or(0) % (out.len() + 1);
        out.insert(at, e.clone());
    }
    out
}

/// What a store does on one write: append the event under the next sequence number (if
/// any: creating the ticket writes none), fold once, then record what is missing and
/// retract what is wrong. Returns the state.
fn write(
    w: &World,
    t: &Ticket,
    log: &mut Vec<Event>,
    e: Option<&Event>,
    now: DateTime<Utc>,
) -> Result<TicketState, Rejected> {
    if let Some(e) = e {
        let mut e = e.clone();
        e.seq = log.len() as i64 + 1;
        log.push(e);
    }
    let state = match fold(ctx(w, t), log, now) {
        Ok(s) => s,
        Err(r) => {
            log.pop();
            return Err(r);
        }
    };
    let system = Actor {
        client: "servicelevel".into(),
        contact: None,
    };
    for seq in &state.wrong {
        let n = log.len() as i64 + 1;
        log.push(Event {
            seq: n,
            occurred_at: now,
            kind: EventKind::Retracted {
                seq: *seq,
                reason: ShortText::parse("wrong").expect("valid"),
            },
            actor: system.clone(),
            request_id: format!("sl:retract:{seq}"),
        });
    }
    for a in &state.missing {
        let n = log.len() as i64 + 1;
        log.push(Event {
            seq: n,
            occurred_at: a.at,
            kind: a.event_kind(),
            actor: system.clone(),
            request_id: format!("sl:{n}"),
        });
    }
    Ok(state)
}

fn folds() -> u64 {
    FOLDS.with(std::cell::Cell::get)
}

/// What the properties compare of a state: everything but the bookkeeping of recorded
/// events.
fn outcome(s: &TicketState) -> (Status, u32, Vec<ClockView>, Vec<SystemAction>) {
    (s.status, s.cycle, s.clocks.clone(), s.reached.clone())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_delivery_order_folds_once_per_write_to_the_same_clocks(c in case()) {
        let w = world(PACKS[c.pack]);
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 5, 0, 0).single().expect("valid");
        let received = start + TimeDelta::minutes(c.received_minutes);
        let t = ticket(&w, &c, received);
        let events = timeline(&w, &t, &c);
        let last = events.last().map_or(received, |e| e.occurred_at);
        let now = last + TimeDelta::days(3);
        let in_order = fold(ctx(&w, &t), &events, now).expect("the timeline is legal");

        let order = delivery(&events, &c.shuffle);
        let mut log: Vec<Event> = Vec::new();
        let before = folds();
        let mut last_state = write(&w, &t, &mut log, None, now).expect("no events is legal");
        for e in &order {
            last_state = write(&w, &t, &mut log, Some(e), now)
                .map_err(|r| TestCaseError::fail(format!("{e:?} refused: {r}")))?;
        }
        // One fold for the new ticket, then exactly one per write.
        prop_assert_eq!(folds() - before, 1 + order.len() as u64);
        prop_assert_eq!(outcome(&last_state), outcome(&in_order));
        // Settled: what was recorded and retracted along the way is exactly what the
        // clocks reach now.
        let settled = fold(ctx(&w, &t), &log, now).expect("legal");
        prop_assert!(settled.missing.is_empty(), "missing {:?}", settled.missing);
        prop_assert!(settled.wrong.is_empty(), "wrong {:?}", settled.wrong);
        prop_assert_eq!(outcome(&settled), outcome(&in_order));
    }

    #[test]
    fn a_change_after_a_clock_ended_never_alters_it(c in case()) {
        let w = world(PACKS[c.pack]);
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 5, 0, 0).single().expect("valid");
        let received = start + TimeDelta::minutes(c.received_minutes);
        let t = ticket(&w, &c, received);
        let events = timeline(&w, &t, &c);
        let now = events.last().map_or(received, |e| e.occurred_at) + TimeDelta::days(3);
        let full = fold(ctx(&w, &t), &events, now).expect("legal");
        let by_key: BTreeMap<(String, u32), &ClockView> = full
            .clocks
            .iter()
            .map(|v| ((v.metric.to_string(), v.instance), v))
            .collect();
        for v in full.clocks.iter().filter(|v| !v.active || v.state == ClockState::Breached) {
            // When its outcome became final: its end, or the breach taking effect.
            let breach = full
                .reached
                .iter()
                .find(|a| {
                    a.metric == v.metric && a.instance == v.instance && a.what == ActionKind::Breach
                })
                .map(|a| a.at);
            let settled = match (v.ended_at, breach) {
                (Some(e), Some(b)) => e.min(b),
                (e, b) => e.or(b).expect("an end or a breach"),
            };
            // Without the priority, estimate and schedule changes that came after it.
            let without: Vec<Event> = events
                .iter()
                .filter(|e| {
                    e.occurred_at <= settled
                        || !matches!(
                            e.kind,
                            EventKind::PriorityChanged { .. }
                                | EventKind::EstimateSet { .. }
                                | EventKind::ScheduledTimeSet { .. }
                        )
                })
                .cloned()
                .collect();
            let alt = fold(ctx(&w, &t), &without, now).expect("still legal");
            let same = alt
                .clocks
                .iter()
                .find(|a| a.metric == v.metric && a.instance == v.instance)
                .expect("the clock is still there");
            let key = (v.metric.to_string(), v.instance);
            prop_assert_eq!(by_key[&key].state, same.state);
            prop_assert_eq!(v.deadline, same.deadline);
            prop_assert_eq!(v.breached_at, same.breached_at);
            prop_assert_eq!(v.target_index, same.target_index);
            prop_assert_eq!(v.budget, same.budget);
            prop_assert_eq!(v.ended_at, same.ended_at);
        }
    }
}

/// The count the memo must reproduce: every pause walked from the start.
fn after_running_fresh(
    cal: &ClockCalendar,
    start: DateTime<Utc>,
    pauses: &[(DateTime<Utc>, Option<DateTime<Utc>>)],
    amount: TimeDelta,
) -> Result<Option<DateTime<Utc>>, TimeError> {
    if amount <= TimeDelta::zero() {
        return Ok(Some(start));
    }
    let mut cursor = start;
    let mut left = amount;
    for (from, to) in pauses {
        let from = (*from).max(cursor);
        let here = cal.elapsed(cursor, from)?;
        if here >= left {
            return cal.add(cursor, left).map(Some);
        }
        left -= here;
        match to {
            None => return Ok(None),
            Some(to) => cursor = cursor.max(*to),
        }
    }
    cal.add(cursor, left).map(Some)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// However its pauses grew (each one first open, then closed) and whatever amounts
    /// were asked between, the memoised count of running time gives what a fresh count
    /// over all the pauses gives, on a business calendar across DST and in real time.
    #[test]
    fn running_time_counted_once_is_counted_right(
        start_min in 0i64..(60 * 24 * 400),
        gaps in proptest::collection::vec((0i64..6000, 0i64..6000), 0..10),
        amounts in proptest::collection::vec(-10i64..30000, 1..6),
        business in any::<bool>(),
    ) {
        let w = world("concinnity");
        let cal = if business {
            ClockCalendar::Calendar(Arc::clone(w.cals.slots.values().next().expect("a slot")))
        } else {
            ClockCalendar::RealTime
        };
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("valid")
            + TimeDelta::minutes(start_min);
        let mut inst = Instance::new(0, 0, 0, start, Vec::new());
        let mut t = start - TimeDelta::minutes(600);
        let check = |inst: &Instance| -> Result<(), TestCaseError> {
            for a in &amounts {
                let amount = TimeDelta::minutes(*a);
                prop_assert_eq!(
                    after_running(&cal, inst, amount),
                    after_running_fresh(&cal, inst.start, &inst.pauses, amount)
                );
            }
            Ok(())
        };
        check(&inst)?;
        for (gap, len) in gaps {
            let from = t + TimeDelta::minutes(gap);
            inst.pauses.push((from, None));
            check(&inst)?;
            t = from + TimeDelta::minutes(len);
            if let Some(p) = inst.pauses.last_mut() {
                p.1 = Some(t);
            }
            check(&inst)?;
        }
    }
}
