//! Scenarios on the five embedded policy packs (`policies/*.toml`), imported through the
//! `ImportPack` RPC (never hand-built), with organisations binding the pack's calendar
//! slots to the pack's calendars. Every expected deadline is worked out by hand in the
//! comment above its assertion.
//!
//! Dates used: US clocks change on Sun 2026-03-08 (spring forward) and Sun 2026-11-01
//! (fall back); UK clocks on Sun 2026-03-29 and Sun 2026-10-25. 2026-03-13, 2026-04-03,
//! 2026-05-22, 2026-07-03, 2026-10-30 and 2026-11-06 are Fridays.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use pb::ClockState as CS;
use pb::TicketStatus as S;
use pb::ticket_event::Kind as K;
use servicelevel::api::pb;

use crate::fixtures::*;
use crate::harness::*;

pub(crate) const NY: chrono_tz::Tz = chrono_tz::America::New_York;
pub(crate) const TO: chrono_tz::Tz = chrono_tz::America::Toronto;
pub(crate) const LON: chrono_tz::Tz = chrono_tz::Europe::London;

// ---------------------------------------------------------------- helpers

/// Imports an embedded pack and checks it defines the calendars and the policy the
/// scenarios bind.
pub(crate) async fn import(s: &TestServer, pack: &str, calendars: &[&str]) {
    let r = import_pack(s, pack).await;
    assert_eq!(r.pack, pack);
    let names: Vec<&str> = r.resources.iter().map(|x| x.name.as_str()).collect();
    for c in calendars {
        assert!(
            names.contains(&format!("calendars/{c}").as_str()),
            "{pack} defines calendars/{c}: {names:?}"
        );
    }
    assert!(
        names.contains(&format!("policies/{pack}").as_str()),
        "{pack} defines its policy: {names:?}"
    );
}

/// Binds `slot` to `calendar`, adding the organisation's own holidays.
pub(crate) fn bound(slot: &str, calendar: &str, holidays: &[&str]) -> pb::CalendarBinding {
    pb::CalendarBinding {
        extra_holidays: holidays.iter().map(|h| h.to_string()).collect(),
        ..binding(slot, calendar)
    }
}

/// Creates a ticket the CRM received at `received`, with the server clock moved there.
pub(crate) async fn open(
    s: &TestServer,
    org: &str,
    external: &str,
    request_type: &str,
    priority: &str,
    received: DateTime<Utc>,
) -> pb::Ticket {
    s.set_now(received);
    create_ticket(s, ticket(org, external, request_type, priority, received)).await
}

/// Records an event that happens now: the server clock is moved to `when` first.
pub(crate) async fn at(s: &TestServer, name: &str, when: DateTime<Utc>, kind: K) -> pb::Ticket {
    s.set_now(when);
    record(s, name, event(when, kind))
        .await
        .unwrap_or_else(|e| panic!("event at {when} on {name}: {e}"))
}

/// Records an event by a customer contact, happening now.
pub(crate) async fn at_by(
    s: &TestServer,
    name: &str,
    when: DateTime<Utc>,
    kind: K,
    contact: &str,
) -> Result<pb::Ticket, tonic::Status> {
    s.set_now(when);
    let mut e = event(when, kind);
    e.contact_id = contact.into();
    record(s, name, e).await
}

/// Records an event that happened at `when` but arrives now (a CRM sync), without moving
/// the server clock.
pub(crate) async fn late(s: &TestServer, name: &str, when: DateTime<Utc>, kind: K) -> pb::Ticket {
    record(s, name, event(when, kind))
        .await
        .unwrap_or_else(|e| panic!("late event at {when} on {name}: {e}"))
}

pub(crate) fn span(d: &Option<prost_types::Duration>) -> Option<TimeDelta> {
    d.as_ref()
        .map(|d| TimeDelta::seconds(d.seconds) + TimeDelta::nanoseconds(i64::from(d.nanos)))
}

pub(crate) fn hm(h: i64, m: i64) -> TimeDelta {
    TimeDelta::hours(h) + TimeDelta::minutes(m)
}

pub(crate) fn warning_at(t: &pb::Ticket, metric: &str, percent: i32) -> Option<DateTime<Utc>> {
    clock(t, metric)
        .warnings
        .iter()
        .find(|w| w.percentage == percent)
        .and_then(|w| from_ts(&w.time))
}

pub(crate) fn has_clock(t: &pb::Ticket, metric: &str) -> bool {
    t.clocks.iter().any(|c| c.metric == metric)
}

pub(crate) fn instances<'a>(t: &'a pb::Ticket, metric: &str) -> Vec<&'a pb::Clock> {
    t.clocks.iter().filter(|c| c.metric == metric).collect()
}

/// A paused clock: no deadline, the open time left, and the deadline if resumed now.
pub(crate) fn assert_paused(
    t: &pb::Ticket,
    metric: &str,
    left: TimeDelta,
    if_resumed: DateTime<Utc>,
) {
    let c = clock(t, metric);
    assert_eq!(state(t, metric), CS::Paused, "{metric}: {c:?}");
    assert!(c.paused, "{metric} paused");
    assert_eq!(
        from_ts(&c.deadline_time),
        None,
        "{metric}: no deadline while paused"
    );
    assert_eq!(span(&c.remaining), Some(left), "{metric}: remaining");
    assert_eq!(
        from_ts(&c.deadline_if_resumed_time),
        Some(if_resumed),
        "{metric}: deadline if resumed now"
    );
}

pub(crate) fn describe(kind: &Option<K>) -> String {
    match kind {
        Some(K::ClockWarning(w)) => format!("warning:{}:{}", w.metric, w.level),
        Some(K::ClockBreach(b)) => format!("breach:{}", b.metric),
        Some(K::ActionTaken(a)) => match &a.action {
            Some(pb::action_taken_event::Action::EscalatedToLevel(level)) => {
                format!("escalate:{}:{level}", a.metric)
            }
            Some(pb::action_taken_event::Action::MovedTo(m)) => format!(
                "move:{}:{}:{}",
                a.metric,
                S::try_from(m.status).map_or("?", |s| s.as_str_name()),
                m.reason
            ),
            None => format!("action:{}", a.metric),
        },
        other => format!("{other:?}"),
    }
}

/// The events servicelevel recorded on a ticket, as (what, when), sorted by time then
/// name; a retraction reads `retracted <what it retracts>`.
pub(crate) fn system_events_of(t: &pb::Ticket) -> Vec<(String, DateTime<Utc>)> {
    let mut out: Vec<(String, DateTime<Utc>)> = t
        .events
        .iter()
        .filter(|e| e.recorded_by == "servicelevel")
        .map(|e| {
            let what = match &e.kind {
                Some(K::Retraction(r)) => {
                    let target = t.events.iter().find(|x| x.sequence == r.sequence);
                    format!(
                        "retracted {}",
                        target.map_or("?".to_string(), |x| describe(&x.kind))
                    )
                }
                other => describe(other),
            };
            (what, from_ts(&e.occurred_time).expect("occurred time"))
        })
        .collect();
    out.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    out
}

/// The ticket's system events once at least `n` are there: the due-time runner works in
/// the background, so this polls, for at most 10 s.
pub(crate) async fn system_events(
    s: &TestServer,
    name: &str,
    n: usize,
) -> Vec<(String, DateTime<Utc>)> {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let got = system_events_of(&get(s, name).await);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < give_up,
            "expected {n} system events on {name}, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn ev(what: &str, when: DateTime<Utc>) -> (String, DateTime<Utc>) {
    (what.to_string(), when)
}

// ---------------------------------------------------------------- concinnity

/// `concinnity`: office Mon-Fri 09:00-17:00 New York; tiers are plans; request type
/// `task`.
pub(crate) mod concinnity {
    use super::*;

    /// Imports the pack and creates organisations `(id, plan, holidays)` binding `office`
    /// to `concinnity-office`.
    pub(crate) async fn setup(s: &TestServer, orgs: &[(&str, &str, &[&str])]) {
        import(s, "concinnity", &["concinnity-office"]).await;
        for (id, plan, holidays) in orgs {
            create_org(
                s,
                id,
                organization(
                    "America/New_York",
                    plan,
                    "concinnity",
                    vec![bound("office", "concinnity-office", holidays)],
                    vec![],
                ),
            )
            .await;
        }
    }

    async fn tier3_receipt_and_start_processing_skip_the_weekend(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 13, 15, 0)).await;
        setup(
            &s,
            &[("tier-three", "tier-3", &[]), ("tier-one", "tier-1", &[])],
        )
        .await;
        let t = open(
            &s,
            "tier-three",
            "C1-1",
            "task",
            "",
            local(NY, 2026, 3, 13, 15, 0),
        )
        .await;
        // Tier III received Fri 03-13 15:00 EDT: receipt within 24 wall-clock hours, which
        // run through Saturday: Sat 03-14 15:00.
        assert_eq!(
            deadline(&t, "receipt_confirmation"),
            Some(local(NY, 2026, 3, 14, 15, 0))
        );
        assert!(!has_clock(&t, "start_processing"), "starts on CONFIRMED");
        let t1 = open(
            &s,
            "tier-one",
            "C1-2",
            "task",
            "",
            local(NY, 2026, 3, 13, 15, 0),
        )
        .await;
        // Tier I, same instant: 48 wall-clock hours, Sun 03-15 15:00.
        assert_eq!(
            deadline(&t1, "receipt_confirmation"),
            Some(local(NY, 2026, 3, 15, 15, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 13, 16, 0),
            status(S::Confirmed),
        )
        .await;
        assert_eq!(state(&t, "receipt_confirmation"), CS::Met);
        // Confirmed Fri 16:00 (open): 3 business days SameTime, D = Fri, T = Mon 16 (1),
        // Tue 17 (2), Wed 18 (3) -> Wed 03-18 16:00. Its budget is the office time in
        // between: Fri 16-17 1 h + Mon 8 h + Tue 8 h + Wed 09-16 7 h = 24 h.
        assert_eq!(
            deadline(&t, "start_processing"),
            Some(local(NY, 2026, 3, 18, 16, 0))
        );
        assert_eq!(
            span(&clock(&t, "start_processing").budget),
            Some(TimeDelta::hours(24))
        );
        let t1 = at(
            &s,
            &t1.name,
            local(NY, 2026, 3, 13, 16, 0),
            status(S::Confirmed),
        )
        .await;
        // Tier I confirmed Fri 16:00: 7 business days, Mon 16 .. Fri 20 (5), Mon 23 (6),
        // Tue 24 (7) -> Tue 03-24 16:00.
        assert_eq!(
            deadline(&t1, "start_processing"),
            Some(local(NY, 2026, 3, 24, 16, 0))
        );
        let sat = open(
            &s,
            "tier-three",
            "C1-3",
            "task",
            "",
            local(NY, 2026, 3, 14, 10, 0),
        )
        .await;
        // Received Sat 03-14 10:00: 24 wall-clock hours, Sun 03-15 10:00.
        assert_eq!(
            deadline(&sat, "receipt_confirmation"),
            Some(local(NY, 2026, 3, 15, 10, 0))
        );
        let sat = at(
            &s,
            &sat.name,
            local(NY, 2026, 3, 14, 11, 0),
            status(S::Confirmed),
        )
        .await;
        // Confirmed Sat 11:00, office closed: the clock counts from Mon 09:00, D = Mon, and
        // the third business day is Thu 03-19, at 09:00.
        assert_eq!(
            deadline(&sat, "start_processing"),
            Some(local(NY, 2026, 3, 19, 9, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 18, 15, 59),
            status(S::Processing),
        )
        .await;
        // Processing Wed 15:59, one minute before Wed 16:00: met.
        assert_eq!(state(&t, "start_processing"), CS::Met);
        s.set_now(local(NY, 2026, 3, 19, 9, 30));
        let sat = get(&s, &sat.name).await;
        // Still not processing at Thu 09:30: breached at its deadline, Thu 03-19 09:00.
        assert_eq!(state(&sat, "start_processing"), CS::Breached);
        assert_eq!(
            from_ts(&clock(&sat, "start_processing").breach_time),
            Some(local(NY, 2026, 3, 19, 9, 0))
        );
        s.stop().await;
    }

    async fn tier4_receipt_depends_on_office_hours_and_start_processing_waits_for_monday(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 13, 9, 0)).await;
        setup(&s, &[("tier-four", "tier-4", &[])]).await;
        let opening = open(
            &s,
            "tier-four",
            "C2-1",
            "task",
            "",
            local(NY, 2026, 3, 13, 9, 0),
        )
        .await;
        // Received Fri 09:00, the opening instant: inside office hours, 2 wall-clock hours
        // -> 11:00.
        assert_eq!(
            deadline(&opening, "receipt_confirmation"),
            Some(local(NY, 2026, 3, 13, 11, 0))
        );
        let late_day = open(
            &s,
            "tier-four",
            "C2-2",
            "task",
            "",
            local(NY, 2026, 3, 13, 16, 30),
        )
        .await;
        // Received Fri 16:30, inside: 2 wall-clock hours -> 18:30, after the office closed
        // (the pack's reading: wall-clock hours).
        assert_eq!(
            deadline(&late_day, "receipt_confirmation"),
            Some(local(NY, 2026, 3, 13, 18, 30))
        );
        let closing = open(
            &s,
            "tier-four",
            "C2-3",
            "task",
            "",
            local(NY, 2026, 3, 13, 17, 0),
        )
        .await;
        // Received Fri 17:00, the closing instant: windows are half-open, so the office is
        // closed and 12 wall-clock hours apply -> Sat 05:00.
        assert_eq!(
            deadline(&closing, "receipt_confirmation"),
            Some(local(NY, 2026, 3, 14, 5, 0))
        );
        let late_day = at(
            &s,
            &late_day.name,
            local(NY, 2026, 3, 13, 18, 0),
            status(S::Confirmed),
        )
        .await;
        // Confirmed Fri 18:00, before its 18:30: met.
        assert_eq!(state(&late_day, "receipt_confirmation"), CS::Met);
        // 1 business day SameTime from Fri 18:00: closed, so the clock counts from the next
        // opening, Mon 03-16 09:00; D = Mon, T = Tue 03-17 -> 09:00.
        assert_eq!(
            deadline(&late_day, "start_processing"),
            Some(local(NY, 2026, 3, 17, 9, 0))
        );
        let saturday = open(
            &s,
            "tier-four",
            "C2-4",
            "task",
            "",
            local(NY, 2026, 3, 14, 10, 0),
        )
        .await;
        // Received Sat 10:00, outside office hours: 12 wall-clock hours -> Sat 22:00.
        assert_eq!(
            deadline(&saturday, "receipt_confirmation"),
            Some(local(NY, 2026, 3, 14, 22, 0))
        );
        let saturday = at(
            &s,
            &saturday.name,
            local(NY, 2026, 3, 14, 23, 0),
            status(S::Confirmed),
        )
        .await;
        // Confirmed Sat 23:00, an hour after its 22:00: breached at 22:00.
        assert_eq!(state(&saturday, "receipt_confirmation"), CS::Breached);
        assert_eq!(
            from_ts(&clock(&saturday, "receipt_confirmation").breach_time),
            Some(local(NY, 2026, 3, 14, 22, 0))
        );
        // Start processing from Sat 23:00 counts from Mon 09:00 too: Tue 03-17 09:00.
        assert_eq!(
            deadline(&saturday, "start_processing"),
            Some(local(NY, 2026, 3, 17, 9, 0))
        );
        s.stop().await;
    }

    async fn an_organisation_holiday_moves_start_processing_and_the_review_autoclose(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 7, 2, 9, 30)).await;
        // Same plan, one organisation closes on Fri 2026-07-03 (Independence Day observed).
        setup(
            &s,
            &[
                ("holiday", "tier-2", &["2026-07-03"]),
                ("plain", "tier-2", &[]),
            ],
        )
        .await;
        let mut names = Vec::new();
        for (org, ext) in [("holiday", "C3-1"), ("plain", "C3-2")] {
            names.push(open(&s, org, ext, "task", "", local(NY, 2026, 7, 2, 9, 30)).await);
        }
        for t in names.iter_mut() {
            *t = at(
                &s,
                &t.name,
                local(NY, 2026, 7, 2, 10, 0),
                status(S::Confirmed),
            )
            .await;
        }
        // Confirmed Thu 07-02 10:00, 4 business days SameTime. With the holiday: Fri 03 is
        // closed, Mon 06 (1), Tue 07 (2), Wed 08 (3), Thu 09 (4) -> Thu 07-09 10:00.
        assert_eq!(
            deadline(&names[0], "start_processing"),
            Some(local(NY, 2026, 7, 9, 10, 0))
        );
        // Without it: Fri 03 (1), Mon 06 (2), Tue 07 (3), Wed 08 (4) -> Wed 07-08 10:00.
        assert_eq!(
            deadline(&names[1], "start_processing"),
            Some(local(NY, 2026, 7, 8, 10, 0))
        );
        for t in &names {
            at(
                &s,
                &t.name,
                local(NY, 2026, 7, 2, 11, 0),
                status(S::Processing),
            )
            .await;
        }
        let mut reviewed = Vec::new();
        for t in &names {
            reviewed.push(
                at(
                    &s,
                    &t.name,
                    local(NY, 2026, 7, 2, 15, 0),
                    status(S::SubmittedForReview),
                )
                .await,
            );
        }
        // Submitted for review Thu 07-02 15:00, auto-closed at the close of the fifth
        // business day after. With the holiday: Mon 06 (1), Tue 07, Wed 08, Thu 09,
        // Fri 10 (5) -> Fri 07-10 17:00.
        assert_eq!(
            deadline(&reviewed[0], "review_autoclose"),
            Some(local(NY, 2026, 7, 10, 17, 0))
        );
        // Without it: Fri 03 (1), Mon 06, Tue 07, Wed 08, Thu 09 (5) -> Thu 07-09 17:00.
        assert_eq!(
            deadline(&reviewed[1], "review_autoclose"),
            Some(local(NY, 2026, 7, 9, 17, 0))
        );
        // Thu 17:30: the runner closes the plain organisation's request, stamped with its
        // due instant Thu 07-09 17:00; the holiday organisation's is still in review.
        s.set_now(local(NY, 2026, 7, 9, 17, 30));
        assert_eq!(
            system_events(&s, &reviewed[1].name, 1).await,
            vec![ev(
                "move:review_autoclose:TICKET_STATUS_CLOSED:auto_closed",
                local(NY, 2026, 7, 9, 17, 0)
            )]
        );
        assert_eq!(get(&s, &reviewed[1].name).await.status, S::Closed as i32);
        let held = get(&s, &reviewed[0].name).await;
        assert_eq!(held.status, S::SubmittedForReview as i32);
        assert_eq!(state(&held, "review_autoclose"), CS::Running);
        // Fri 17:01: the holiday organisation's request is closed at Fri 07-10 17:00.
        s.set_now(local(NY, 2026, 7, 10, 17, 1));
        assert_eq!(
            system_events(&s, &reviewed[0].name, 1).await,
            vec![ev(
                "move:review_autoclose:TICKET_STATUS_CLOSED:auto_closed",
                local(NY, 2026, 7, 10, 17, 0)
            )]
        );
        let closed = get(&s, &reviewed[0].name).await;
        assert_eq!(closed.status, S::Closed as i32);
        assert_eq!(state(&closed, "review_autoclose"), CS::Fired);
        s.stop().await;
    }

    async fn dst_weeks_keep_office_hours_in_local_time(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 6, 9, 0)).await;
        setup(
            &s,
            &[("tier-three", "tier-3", &[]), ("tier-four", "tier-4", &[])],
        )
        .await;
        // Spring forward (Sun 2026-03-08).
        let t = open(
            &s,
            "tier-three",
            "C4-1",
            "task",
            "",
            local(NY, 2026, 3, 6, 9, 0),
        )
        .await;
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 6, 14, 0),
            status(S::Confirmed),
        )
        .await;
        // Confirmed Fri 03-06 14:00 EST: 3 business days SameTime, Mon 09 (1), Tue 10 (2),
        // Wed 11 (3) -> Wed 03-11 14:00, now EDT (18:00Z, not 19:00Z). Budget: Fri 3 h +
        // Mon 8 h + Tue 8 h + Wed 5 h = 24 h of office time, whatever the offset.
        assert_eq!(
            deadline(&t, "start_processing"),
            Some(local(NY, 2026, 3, 11, 14, 0))
        );
        assert_eq!(
            span(&clock(&t, "start_processing").budget),
            Some(TimeDelta::hours(24))
        );
        let night = open(
            &s,
            "tier-four",
            "C4-2",
            "task",
            "",
            local(NY, 2026, 3, 7, 23, 0),
        )
        .await;
        // Tier IV received Sat 03-07 23:00 EST (04:00Z), outside: 12 real hours -> 16:00Z,
        // which is Sun 03-08 12:00 EDT (the local night lost an hour).
        assert_eq!(
            deadline(&night, "receipt_confirmation"),
            Some(local(NY, 2026, 3, 8, 12, 0))
        );
        // Fall back (Sun 2026-11-01).
        let f = open(
            &s,
            "tier-three",
            "C4-3",
            "task",
            "",
            local(NY, 2026, 10, 29, 10, 0),
        )
        .await;
        at(
            &s,
            &f.name,
            local(NY, 2026, 10, 29, 10, 30),
            status(S::Confirmed),
        )
        .await;
        at(
            &s,
            &f.name,
            local(NY, 2026, 10, 29, 11, 0),
            status(S::Processing),
        )
        .await;
        let f = at(
            &s,
            &f.name,
            local(NY, 2026, 10, 30, 10, 0),
            status(S::SubmittedForReview),
        )
        .await;
        // Submitted Fri 10-30 10:00 EDT: the close of the fifth business day after, Mon 02
        // (1) .. Fri 06 (5) -> Fri 11-06 17:00 EST (22:00Z, not 21:00Z).
        assert_eq!(
            deadline(&f, "review_autoclose"),
            Some(local(NY, 2026, 11, 6, 17, 0))
        );
        let fall_night = open(
            &s,
            "tier-four",
            "C4-4",
            "task",
            "",
            local(NY, 2026, 10, 31, 20, 0),
        )
        .await;
        // Tier IV received Sat 10-31 20:00 EDT (00:00Z), outside: 12 real hours -> 12:00Z,
        // Sun 11-01 07:00 EST (the local night gained an hour).
        assert_eq!(
            deadline(&fall_night, "receipt_confirmation"),
            Some(local(NY, 2026, 11, 1, 7, 0))
        );
        // The runner closes the request in review at Fri 11-06 17:00 EST.
        s.set_now(local(NY, 2026, 11, 6, 17, 5));
        assert_eq!(
            system_events(&s, &f.name, 1).await,
            vec![ev(
                "move:review_autoclose:TICKET_STATUS_CLOSED:auto_closed",
                local(NY, 2026, 11, 6, 17, 0)
            )]
        );
        assert_eq!(get(&s, &f.name).await.status, S::Closed as i32);
        s.stop().await;
    }

    async fn requires_deliverables_pauses_start_processing(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 9, 9, 0)).await;
        setup(&s, &[("tier-three", "tier-3", &[])]).await;
        let t = open(
            &s,
            "tier-three",
            "C5-1",
            "task",
            "",
            local(NY, 2026, 3, 9, 9, 0),
        )
        .await;
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 9, 10, 0),
            status(S::Confirmed),
        )
        .await;
        // Confirmed Mon 03-09 10:00: 3 business days SameTime -> Thu 03-12 10:00; a budget
        // of Mon 7 h + Tue 8 h + Wed 8 h + Thu 1 h = 24 h.
        assert_eq!(
            deadline(&t, "start_processing"),
            Some(local(NY, 2026, 3, 12, 10, 0))
        );
        at(
            &s,
            &t.name,
            local(NY, 2026, 3, 10, 10, 0),
            status(S::RequiresDeliverables),
        )
        .await;
        s.set_now(local(NY, 2026, 3, 10, 15, 0));
        let t = get(&s, &t.name).await;
        // Waiting for deliverables since Tue 10:00, seen at Tue 15:00: used Mon 10-17 7 h +
        // Tue 09-10 1 h = 8 h, 16 h left. Resumed now: Tue 15-17 2 h, Wed 8 h, Thu 09-15
        // 6 h -> Thu 03-12 15:00. Paused so far: Tue 10-15, 5 h.
        assert_paused(
            &t,
            "start_processing",
            TimeDelta::hours(16),
            local(NY, 2026, 3, 12, 15, 0),
        );
        assert_eq!(
            span(&clock(&t, "start_processing").paused_duration),
            Some(TimeDelta::hours(5))
        );
        // The receipt clock had stopped at CONFIRMED: met, untouched by the pause.
        assert_eq!(state(&t, "receipt_confirmation"), CS::Met);
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 11, 10, 0),
            status(S::Confirmed),
        )
        .await;
        // Deliverables in Wed 10:00 (back to CONFIRMED; the clock does not start twice):
        // 16 h from Wed 10:00 are Wed 10-17 7 h, Thu 8 h, Fri 09-10 1 h -> Fri 03-13 10:00.
        assert_eq!(
            deadline(&t, "start_processing"),
            Some(local(NY, 2026, 3, 13, 10, 0))
        );
        assert_eq!(instances(&t, "start_processing").len(), 1);
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 13, 9, 45),
            status(S::Processing),
        )
        .await;
        // Processing Fri 09:45: met thanks to the pause (the unpaused deadline was Thu 10:00).
        assert_eq!(state(&t, "start_processing"), CS::Met);
        assert_eq!(
            span(&clock(&t, "start_processing").paused_duration),
            Some(TimeDelta::hours(8))
        );
        s.stop().await;
    }

    async fn late_crm_events_turn_a_start_processing_breach_into_met(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 16, 9, 0)).await;
        setup(&s, &[("tier-three", "tier-3", &[])]).await;
        let t = open(
            &s,
            "tier-three",
            "C6-1",
            "task",
            "",
            local(NY, 2026, 3, 16, 9, 0),
        )
        .await;
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 16, 10, 0),
            status(S::Confirmed),
        )
        .await;
        // Confirmed Mon 03-16 10:00 -> Thu 03-19 10:00 (3 business days SameTime).
        assert_eq!(
            deadline(&t, "start_processing"),
            Some(local(NY, 2026, 3, 19, 10, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 19, 15, 0),
            status(S::Processing),
        )
        .await;
        // Processing Thu 15:00, after Thu 10:00: breached, and the breach is recorded at
        // Thu 10:00.
        assert_eq!(state(&t, "start_processing"), CS::Breached);
        assert_eq!(
            system_events(&s, &t.name, 1).await,
            vec![ev("breach:start_processing", local(NY, 2026, 3, 19, 10, 0))]
        );
        // The CRM now syncs what happened on Tuesday: the request waited for deliverables
        // from Tue 03-17 10:00. Until resumed the clock is paused, and PROCESSING Thu 15:00
        // stops it with 8 h used (Mon 7 h + Tue 1 h) of 24: met. The breach is retracted.
        let t = late(
            &s,
            &t.name,
            local(NY, 2026, 3, 17, 10, 0),
            status(S::RequiresDeliverables),
        )
        .await;
        assert_eq!(state(&t, "start_processing"), CS::Met);
        // Then the deliverables, Wed 03-18 10:00 (back to CONFIRMED): paused Tue 10:00-Wed
        // 10:00 (8 office hours), so the deadline is Thu 10:00 + 8 office hours: Thu 10-17
        // 7 h + Fri 09-10 1 h -> Fri 03-20 10:00; Thu 15:00 is still met.
        let t = late(
            &s,
            &t.name,
            local(NY, 2026, 3, 18, 10, 0),
            status(S::Confirmed),
        )
        .await;
        assert_eq!(state(&t, "start_processing"), CS::Met);
        assert_eq!(
            deadline(&t, "start_processing"),
            Some(local(NY, 2026, 3, 20, 10, 0))
        );
        // One retraction, stamped when it was recorded (now, Thu 15:00); no new breach.
        assert_eq!(
            system_events(&s, &t.name, 2).await,
            vec![
                ev("breach:start_processing", local(NY, 2026, 3, 19, 10, 0)),
                ev(
                    "retracted breach:start_processing",
                    local(NY, 2026, 3, 19, 15, 0)
                ),
            ]
        );
        // A late CANCELLED on Wed 12:00 would make the stored PROCESSING on Thu illegal:
        // refused, nothing stored.
        let err = record(
            &s,
            &t.name,
            event(local(NY, 2026, 3, 18, 12, 0), status(S::Cancelled)),
        )
        .await
        .expect_err("conflicts with a stored event");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        let after = get(&s, &t.name).await;
        assert_eq!(after.status, S::Processing as i32);
        assert_eq!(state(&after, "start_processing"), CS::Met);
        s.stop().await;
    }

    async fn review_autoclose_restarts_on_a_second_review_and_fires_at_the_fifth_close(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 9, 9, 0)).await;
        setup(&s, &[("tier-three", "tier-3", &[])]).await;
        let oos = open(
            &s,
            "tier-three",
            "C7-1",
            "task",
            "",
            local(NY, 2026, 3, 9, 9, 0),
        )
        .await;
        let oos = at(
            &s,
            &oos.name,
            local(NY, 2026, 3, 9, 9, 30),
            status(S::Confirmed),
        )
        .await;
        // Confirmed Mon 03-09 09:30 -> Thu 03-12 09:30.
        assert_eq!(
            deadline(&oos, "start_processing"),
            Some(local(NY, 2026, 3, 12, 9, 30))
        );
        let oos = at(
            &s,
            &oos.name,
            local(NY, 2026, 3, 9, 11, 0),
            status(S::OutOfScope),
        )
        .await;
        // Out of scope: outside the promise, the clock is cancelled.
        assert_eq!(state(&oos, "start_processing"), CS::Cancelled);

        let t = open(
            &s,
            "tier-three",
            "C7-2",
            "task",
            "",
            local(NY, 2026, 3, 9, 12, 0),
        )
        .await;
        at(
            &s,
            &t.name,
            local(NY, 2026, 3, 9, 12, 30),
            status(S::Confirmed),
        )
        .await;
        at(
            &s,
            &t.name,
            local(NY, 2026, 3, 9, 13, 0),
            status(S::Processing),
        )
        .await;
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 12, 15, 0),
            status(S::SubmittedForReview),
        )
        .await;
        // Submitted Thu 03-12 15:00: Fri 13 (1), Mon 16, Tue 17, Wed 18, Thu 19 (5) -> the
        // close of Thu 03-19, 17:00.
        assert_eq!(
            deadline(&t, "review_autoclose"),
            Some(local(NY, 2026, 3, 19, 17, 0))
        );
        assert_eq!(
            clock(&t, "review_autoclose").kind,
            pb::ClockKind::Timer as i32
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 16, 11, 0),
            status(S::Processing),
        )
        .await;
        // The customer asks for changes Mon 03-16: the timer stops without firing.
        assert_eq!(state(&t, "review_autoclose"), CS::Stopped);
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 17, 14, 0),
            status(S::SubmittedForReview),
        )
        .await;
        // Submitted again Tue 03-17 14:00: a second instance, Wed 18 (1), Thu 19, Fri 20,
        // Mon 23, Tue 24 (5) -> Tue 03-24 17:00.
        let reviews = instances(&t, "review_autoclose");
        assert_eq!(reviews.len(), 2);
        assert_eq!(reviews[1].instance, 1);
        assert_eq!(
            deadline(&t, "review_autoclose"),
            Some(local(NY, 2026, 3, 24, 17, 0))
        );
        // Wed 03-25 08:00: the runner closed it at Tue 03-24 17:00 (not at Thu 03-19, the
        // stopped first instance's due instant).
        s.set_now(local(NY, 2026, 3, 25, 8, 0));
        assert_eq!(
            system_events(&s, &t.name, 1).await,
            vec![ev(
                "move:review_autoclose:TICKET_STATUS_CLOSED:auto_closed",
                local(NY, 2026, 3, 24, 17, 0)
            )]
        );
        let t = get(&s, &t.name).await;
        assert_eq!(t.status, S::Closed as i32);
        assert_eq!(state(&t, "review_autoclose"), CS::Fired);
        s.stop().await;
    }

    crate::on_both_stores!(
        tier3_receipt_and_start_processing_skip_the_weekend,
        tier4_receipt_depends_on_office_hours_and_start_processing_waits_for_monday,
        an_organisation_holiday_moves_start_processing_and_the_review_autoclose,
        dst_weeks_keep_office_hours_in_local_time,
        requires_deliverables_pauses_start_processing,
        late_crm_events_turn_a_start_processing_breach_into_met,
        review_autoclose_restarts_on_a_second_review_and_fires_at_the_fifth_close,
    );
}

// ---------------------------------------------------------------- priority-matrix

/// `priority-matrix`: P1-P3 wall clock, P4/P5 business days on the 8x5 `support` desk
/// (Mon-Fri 09:00-17:00 New York), P6 the user's scheduled time; first response only.
pub(crate) mod priority_matrix {
    use super::*;

    /// Imports the pack and creates organisation `id` binding both slots to the pack's
    /// calendars, with the organisation's own `holidays` on the 8x5 desk.
    pub(crate) async fn setup(s: &TestServer, orgs: &[(&str, &[&str])]) {
        import(
            s,
            "priority-matrix",
            &["priority-matrix-24x7", "priority-matrix-support"],
        )
        .await;
        for (id, holidays) in orgs {
            create_org(
                s,
                id,
                organization(
                    "America/New_York",
                    "",
                    "priority-matrix",
                    vec![
                        bound("24x7", "priority-matrix-24x7", &[]),
                        bound("support", "priority-matrix-support", holidays),
                    ],
                    vec![],
                ),
            )
            .await;
        }
    }

    async fn p1_to_p3_count_wall_clock_minutes_through_the_weekend(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 13, 23, 0)).await;
        setup(&s, &[("client", &[])]).await;
        let p3 = open(
            &s,
            "client",
            "M1-3",
            "incident",
            "P3",
            local(NY, 2026, 3, 13, 23, 0),
        )
        .await;
        // P3 received Fri 03-13 23:00: 4 hours around the clock -> Sat 03-14 03:00.
        assert_eq!(
            deadline(&p3, "first_response"),
            Some(local(NY, 2026, 3, 14, 3, 0))
        );
        let p1 = open(
            &s,
            "client",
            "M1-1",
            "incident",
            "P1",
            local(NY, 2026, 3, 14, 2, 0),
        )
        .await;
        let p2 = open(
            &s,
            "client",
            "M1-2",
            "incident",
            "P2",
            local(NY, 2026, 3, 14, 2, 0),
        )
        .await;
        // Saturday 02:00: P1 "immediate", read as 15 minutes -> 02:15; P2 30 minutes ->
        // 02:30. Nobody works 8x5 on a Saturday night, and it does not matter.
        assert_eq!(
            deadline(&p1, "first_response"),
            Some(local(NY, 2026, 3, 14, 2, 15))
        );
        assert_eq!(
            deadline(&p2, "first_response"),
            Some(local(NY, 2026, 3, 14, 2, 30))
        );
        assert_eq!(
            clock(&p1, "first_response").source,
            "Immediate response (reading: 'Immediate' is not a duration; it is read as 15 minutes around the clock (24x7 availability).)"
        );
        let p1 = at(
            &s,
            &p1.name,
            local(NY, 2026, 3, 14, 2, 10),
            K::AgentResponse(()),
        )
        .await;
        // Answered 02:10, before 02:15: met.
        assert_eq!(state(&p1, "first_response"), CS::Met);
        // 02:45, nobody answered the P2: the runner records its breach at 02:30.
        s.set_now(local(NY, 2026, 3, 14, 2, 45));
        assert_eq!(
            system_events(&s, &p2.name, 1).await,
            vec![ev("breach:first_response", local(NY, 2026, 3, 14, 2, 30))]
        );
        let p2 = at(
            &s,
            &p2.name,
            local(NY, 2026, 3, 14, 2, 50),
            K::AgentResponse(()),
        )
        .await;
        assert_eq!(state(&p2, "first_response"), CS::Breached);
        assert_eq!(system_events_of(&get(&s, &p1.name).await), vec![]);
        s.stop().await;
    }

    async fn p4_and_p5_count_business_days_on_the_8x5_desk_over_a_weekend(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 13, 16, 0)).await;
        setup(&s, &[("client", &[])]).await;
        let p4 = open(
            &s,
            "client",
            "M2-1",
            "incident",
            "P4",
            local(NY, 2026, 3, 13, 16, 0),
        )
        .await;
        // P4 received Fri 03-13 16:00 (open): 3 business days SameTime, Mon 16 (1), Tue 17
        // (2), Wed 18 (3) -> Wed 03-18 16:00; a budget of Fri 1 h + Mon 8 h + Tue 8 h +
        // Wed 7 h = 24 h of desk time.
        assert_eq!(
            deadline(&p4, "first_response"),
            Some(local(NY, 2026, 3, 18, 16, 0))
        );
        assert_eq!(
            span(&clock(&p4, "first_response").budget),
            Some(TimeDelta::hours(24))
        );
        let evening = open(
            &s,
            "client",
            "M2-2",
            "incident",
            "P4",
            local(NY, 2026, 3, 13, 17, 30),
        )
        .await;
        // P4 received Fri 17:30, after the desk closed: counted from Mon 03-16 09:00, D =
        // Mon, T = Thu 03-19 -> 09:00.
        assert_eq!(
            deadline(&evening, "first_response"),
            Some(local(NY, 2026, 3, 19, 9, 0))
        );
        let p5 = open(
            &s,
            "client",
            "M2-3",
            "incident",
            "P5",
            local(NY, 2026, 3, 14, 10, 0),
        )
        .await;
        // P5 "1 week" received Sat 03-14 10:00: counted from Mon 03-16 09:00; 5 business
        // days: Tue 17, Wed 18, Thu 19, Fri 20, Mon 23 -> Mon 03-23 09:00.
        assert_eq!(
            deadline(&p5, "first_response"),
            Some(local(NY, 2026, 3, 23, 9, 0))
        );
        let sunday = open(
            &s,
            "client",
            "M2-4",
            "incident",
            "P4",
            local(NY, 2026, 3, 15, 12, 0),
        )
        .await;
        // P4 received Sun 03-15 12:00: from Mon 09:00 as well -> Thu 03-19 09:00.
        assert_eq!(
            deadline(&sunday, "first_response"),
            Some(local(NY, 2026, 3, 19, 9, 0))
        );
        let monday = open(
            &s,
            "client",
            "M2-5",
            "incident",
            "P5",
            local(NY, 2026, 3, 16, 12, 0),
        )
        .await;
        // P5 received Mon 03-16 12:00: Tue .. Fri, Mon 23 -> Mon 03-23 12:00.
        assert_eq!(
            deadline(&monday, "first_response"),
            Some(local(NY, 2026, 3, 23, 12, 0))
        );
        let p4 = at(
            &s,
            &p4.name,
            local(NY, 2026, 3, 18, 16, 0),
            K::AgentResponse(()),
        )
        .await;
        // Answered exactly at Wed 16:00, the deadline: met (it is not past it).
        assert_eq!(state(&p4, "first_response"), CS::Met);
        let evening = at(
            &s,
            &evening.name,
            local(NY, 2026, 3, 19, 9, 1),
            K::AgentResponse(()),
        )
        .await;
        // Answered Thu 09:01, a minute after Thu 09:00: breached.
        assert_eq!(state(&evening, "first_response"), CS::Breached);
        s.stop().await;
    }

    async fn p6_waits_for_the_user_scheduled_time_and_uses_it_as_given(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 13, 10, 0)).await;
        setup(&s, &[("client", &[])]).await;
        let p6 = open(
            &s,
            "client",
            "M3-1",
            "feature",
            "P6",
            local(NY, 2026, 3, 13, 10, 0),
        )
        .await;
        // P6 without a scheduled time: the clock waits, with its reason.
        assert_eq!(state(&p6, "first_response"), CS::NotStarted);
        assert_eq!(deadline(&p6, "first_response"), None);
        assert!(
            clock(&p6, "first_response")
                .not_started_reason
                .contains("no scheduled time"),
            "{:?}",
            clock(&p6, "first_response")
        );
        let p6 = at(
            &s,
            &p6.name,
            local(NY, 2026, 3, 13, 11, 0),
            K::ScheduleChange(pb::ScheduleChange {
                scheduled_time: ts(local(NY, 2026, 3, 15, 22, 30)),
            }),
        )
        .await;
        // Scheduled for Sun 03-15 22:30, outside the 8x5 hours: due then, as given. The
        // clock counts from receipt, Fri 10:00.
        assert_eq!(
            deadline(&p6, "first_response"),
            Some(local(NY, 2026, 3, 15, 22, 30))
        );
        assert_eq!(
            from_ts(&clock(&p6, "first_response").start_time),
            Some(local(NY, 2026, 3, 13, 10, 0))
        );
        let p6 = at(
            &s,
            &p6.name,
            local(NY, 2026, 3, 14, 9, 0),
            status(S::RequiresDeliverables),
        )
        .await;
        // Waiting for the customer from Sat 09:00: paused like every clock, so no deadline
        // while paused; a scheduled time is a fixed instant that pauses do not move, so
        // resumed it is still Sun 22:30.
        assert_eq!(state(&p6, "first_response"), CS::Paused);
        assert_eq!(deadline(&p6, "first_response"), None);
        assert_eq!(
            from_ts(&clock(&p6, "first_response").deadline_if_resumed_time),
            Some(local(NY, 2026, 3, 15, 22, 30))
        );
        at(
            &s,
            &p6.name,
            local(NY, 2026, 3, 14, 11, 0),
            status(S::Processing),
        )
        .await;
        let p6 = at(
            &s,
            &p6.name,
            local(NY, 2026, 3, 14, 12, 0),
            K::ScheduleChange(pb::ScheduleChange {
                scheduled_time: ts(local(NY, 2026, 3, 16, 8, 0)),
            }),
        )
        .await;
        // Rescheduled Sat 12:00 to Mon 03-16 08:00, an hour before the desk opens: due
        // then, not moved to the 09:00 opening.
        assert_eq!(
            deadline(&p6, "first_response"),
            Some(local(NY, 2026, 3, 16, 8, 0))
        );
        let p6 = at(
            &s,
            &p6.name,
            local(NY, 2026, 3, 16, 7, 45),
            K::AgentResponse(()),
        )
        .await;
        assert_eq!(state(&p6, "first_response"), CS::Met);
        s.stop().await;
    }

    async fn an_organisation_holiday_closes_the_8x5_desk_but_not_the_24x7_targets(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 5, 22, 10, 0)).await;
        // Memorial Day, Mon 2026-05-25, is the "holiday" organisation's own closure.
        setup(&s, &[("holiday", &["2026-05-25"]), ("plain", &[])]).await;
        let p4 = open(
            &s,
            "holiday",
            "M4-1",
            "incident",
            "P4",
            local(NY, 2026, 5, 22, 10, 0),
        )
        .await;
        let plain = open(
            &s,
            "plain",
            "M4-2",
            "incident",
            "P4",
            local(NY, 2026, 5, 22, 10, 0),
        )
        .await;
        // P4 received Fri 05-22 10:00. With the holiday: Mon 25 closed, Tue 26 (1), Wed 27
        // (2), Thu 28 (3) -> Thu 05-28 10:00.
        assert_eq!(
            deadline(&p4, "first_response"),
            Some(local(NY, 2026, 5, 28, 10, 0))
        );
        // Without it: Mon 25, Tue 26, Wed 27 -> Wed 05-27 10:00.
        assert_eq!(
            deadline(&plain, "first_response"),
            Some(local(NY, 2026, 5, 27, 10, 0))
        );
        let p5 = open(
            &s,
            "holiday",
            "M4-3",
            "incident",
            "P5",
            local(NY, 2026, 5, 25, 11, 0),
        )
        .await;
        // P5 received on the holiday, Mon 05-25 11:00: counted from Tue 05-26 09:00; 5
        // business days Wed 27, Thu 28, Fri 29, Mon 06-01, Tue 06-02 -> Tue 06-02 09:00.
        assert_eq!(
            deadline(&p5, "first_response"),
            Some(local(NY, 2026, 6, 2, 9, 0))
        );
        let p1 = open(
            &s,
            "holiday",
            "M4-4",
            "incident",
            "P1",
            local(NY, 2026, 5, 25, 11, 0),
        )
        .await;
        // P1 on the holiday: 15 minutes around the clock regardless -> 11:15.
        assert_eq!(
            deadline(&p1, "first_response"),
            Some(local(NY, 2026, 5, 25, 11, 15))
        );
        s.stop().await;
    }

    async fn dst_weeks_move_wall_clock_targets_by_real_time_and_business_days_by_local_time(
        db: Db,
    ) {
        let s = TestServer::start(db, local(NY, 2026, 3, 6, 10, 0)).await;
        setup(&s, &[("client", &[])]).await;
        let p4 = open(
            &s,
            "client",
            "M5-1",
            "incident",
            "P4",
            local(NY, 2026, 3, 6, 10, 0),
        )
        .await;
        // P4 received Fri 03-06 10:00 EST: Mon 09 (1), Tue 10 (2), Wed 11 (3) -> Wed 03-11
        // 10:00, now EDT.
        assert_eq!(
            deadline(&p4, "first_response"),
            Some(local(NY, 2026, 3, 11, 10, 0))
        );
        let p3 = open(
            &s,
            "client",
            "M5-2",
            "incident",
            "P3",
            local(NY, 2026, 3, 7, 23, 0),
        )
        .await;
        // P3 received Sat 03-07 23:00 EST (04:00Z): 4 real hours -> 08:00Z, Sun 03-08
        // 04:00 EDT (02:00-03:00 does not exist that night).
        assert_eq!(
            deadline(&p3, "first_response"),
            Some(local(NY, 2026, 3, 8, 4, 0))
        );
        let p2 = open(
            &s,
            "client",
            "M5-3",
            "incident",
            "P2",
            local(NY, 2026, 3, 8, 1, 50),
        )
        .await;
        // P2 received Sun 03-08 01:50 EST (06:50Z): 30 real minutes -> 07:20Z, 03:20 EDT.
        assert_eq!(
            deadline(&p2, "first_response"),
            Some(local(NY, 2026, 3, 8, 3, 20))
        );
        let p5 = open(
            &s,
            "client",
            "M5-4",
            "incident",
            "P5",
            local(NY, 2026, 10, 30, 14, 0),
        )
        .await;
        // P5 received Fri 10-30 14:00 EDT: Mon 02 .. Fri 06 -> Fri 11-06 14:00 EST.
        assert_eq!(
            deadline(&p5, "first_response"),
            Some(local(NY, 2026, 11, 6, 14, 0))
        );
        let fall = open(
            &s,
            "client",
            "M5-5",
            "incident",
            "P3",
            local(NY, 2026, 10, 31, 23, 0),
        )
        .await;
        // P3 received Sat 10-31 23:00 EDT (03:00Z): 4 real hours -> 07:00Z, Sun 11-01
        // 02:00 EST (01:00-02:00 happened twice).
        assert_eq!(
            deadline(&fall, "first_response"),
            Some(local(NY, 2026, 11, 1, 2, 0))
        );
        s.stop().await;
    }

    async fn requires_deliverables_pauses_p1_minutes_and_p4_desk_hours(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 16, 9, 0)).await;
        setup(&s, &[("client", &[])]).await;
        let p4 = open(
            &s,
            "client",
            "M6-1",
            "incident",
            "P4",
            local(NY, 2026, 3, 16, 9, 0),
        )
        .await;
        // P4 received Mon 03-16 09:00 -> Thu 03-19 09:00, a budget of Mon, Tue, Wed = 24 h.
        assert_eq!(
            deadline(&p4, "first_response"),
            Some(local(NY, 2026, 3, 19, 9, 0))
        );
        let p1 = open(
            &s,
            "client",
            "M6-2",
            "incident",
            "P1",
            local(NY, 2026, 3, 16, 10, 0),
        )
        .await;
        at(
            &s,
            &p1.name,
            local(NY, 2026, 3, 16, 10, 5),
            status(S::RequiresDeliverables),
        )
        .await;
        s.set_now(local(NY, 2026, 3, 16, 10, 10));
        let p1 = get(&s, &p1.name).await;
        // P1 received 10:00 (due 10:15), waiting from 10:05; seen at 10:10: 10 minutes
        // left, so 10:20 if resumed now.
        assert_paused(
            &p1,
            "first_response",
            TimeDelta::minutes(10),
            local(NY, 2026, 3, 16, 10, 20),
        );
        let p1 = at(
            &s,
            &p1.name,
            local(NY, 2026, 3, 16, 10, 20),
            status(S::Processing),
        )
        .await;
        // Resumed 10:20 after 15 paused minutes: 10:15 + 15 min -> 10:30.
        assert_eq!(
            deadline(&p1, "first_response"),
            Some(local(NY, 2026, 3, 16, 10, 30))
        );
        let p1 = at(
            &s,
            &p1.name,
            local(NY, 2026, 3, 16, 10, 29),
            K::AgentResponse(()),
        )
        .await;
        assert_eq!(state(&p1, "first_response"), CS::Met);
        at(
            &s,
            &p4.name,
            local(NY, 2026, 3, 16, 13, 0),
            status(S::RequiresDeliverables),
        )
        .await;
        let p4 = at(
            &s,
            &p4.name,
            local(NY, 2026, 3, 17, 13, 0),
            status(S::Processing),
        )
        .await;
        // P4 waited Mon 13:00 - Tue 13:00 (Mon 4 h + Tue 4 h of desk time). 4 h used (Mon
        // 09-13), 20 h left from Tue 13:00: Tue 4 h, Wed 8 h, Thu 8 h -> used up at the
        // Thu 17:00 close; the nominal deadline was an opening (Thu 09:00), so the
        // deadline is the next opening: Fri 03-20 09:00.
        assert_eq!(
            deadline(&p4, "first_response"),
            Some(local(NY, 2026, 3, 20, 9, 0))
        );
        assert_eq!(
            span(&clock(&p4, "first_response").paused_duration),
            Some(TimeDelta::hours(8))
        );
        s.stop().await;
    }

    async fn late_crm_events_retract_a_breach_and_retarget_a_priority(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 13, 16, 0)).await;
        setup(&s, &[("client", &[])]).await;
        let p4 = open(
            &s,
            "client",
            "M7-1",
            "incident",
            "P4",
            local(NY, 2026, 3, 13, 16, 0),
        )
        .await;
        // P4 received Fri 03-13 16:00 -> Wed 03-18 16:00.
        assert_eq!(
            deadline(&p4, "first_response"),
            Some(local(NY, 2026, 3, 18, 16, 0))
        );
        at(
            &s,
            &p4.name,
            local(NY, 2026, 3, 13, 17, 0),
            K::CustomerReply(()),
        )
        .await;
        let p2 = open(
            &s,
            "client",
            "M7-2",
            "incident",
            "P2",
            local(NY, 2026, 3, 14, 10, 0),
        )
        .await;
        // P2 received Sat 03-14 10:00 -> 10:30.
        assert_eq!(
            deadline(&p2, "first_response"),
            Some(local(NY, 2026, 3, 14, 10, 30))
        );
        let p2 = at(
            &s,
            &p2.name,
            local(NY, 2026, 3, 14, 11, 0),
            K::CustomerReply(()),
        )
        .await;
        // At 11:00 no answer is known: breached at 10:30, recorded.
        assert_eq!(state(&p2, "first_response"), CS::Breached);
        assert_eq!(
            system_events(&s, &p2.name, 1).await,
            vec![ev("breach:first_response", local(NY, 2026, 3, 14, 10, 30))]
        );
        // The CRM syncs the agent's answer of 10:25, earlier than the stored 11:00 reply:
        // met, and the breach is retracted (at 11:00, when that became known).
        let p2 = late(
            &s,
            &p2.name,
            local(NY, 2026, 3, 14, 10, 25),
            K::AgentResponse(()),
        )
        .await;
        assert_eq!(state(&p2, "first_response"), CS::Met);
        assert_eq!(
            system_events(&s, &p2.name, 2).await,
            vec![
                ev("breach:first_response", local(NY, 2026, 3, 14, 10, 30)),
                ev(
                    "retracted breach:first_response",
                    local(NY, 2026, 3, 14, 11, 0)
                ),
            ]
        );
        // And that the P4 was raised to P3 on Fri 16:10, before the stored 17:00 reply: the
        // clock is re-targeted from its start, 4 hours from Fri 16:00 -> Fri 20:00, which
        // passed unanswered: breached at 20:00, recorded.
        let p4 = late(
            &s,
            &p4.name,
            local(NY, 2026, 3, 13, 16, 10),
            K::PriorityChange(pb::PriorityChange {
                priority: "P3".into(),
            }),
        )
        .await;
        assert_eq!(p4.priority, "P3");
        assert_eq!(
            deadline(&p4, "first_response"),
            Some(local(NY, 2026, 3, 13, 20, 0))
        );
        assert_eq!(state(&p4, "first_response"), CS::Breached);
        assert_eq!(
            system_events(&s, &p4.name, 1).await,
            vec![ev("breach:first_response", local(NY, 2026, 3, 13, 20, 0))]
        );
        s.stop().await;
    }

    /// A scheduled time is a fixed instant that pauses do not move, and a paused clock
    /// breaches nothing: a P6 clock still waiting for the customer when its scheduled time
    /// passes stays paused, and is breached at once when the customer answers, its
    /// deadline the scheduled time, the breach taking effect at the answer.
    async fn p6_paused_past_its_scheduled_time_breaches_when_resumed(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 13, 10, 0)).await;
        setup(&s, &[("client", &[])]).await;
        let mut t = ticket(
            "client",
            "M8-1",
            "feature",
            "P6",
            local(NY, 2026, 3, 13, 10, 0),
        );
        t.scheduled_time = ts(local(NY, 2026, 3, 15, 22, 30));
        let t = create_ticket(&s, t).await;
        at(
            &s,
            &t.name,
            local(NY, 2026, 3, 14, 9, 0),
            status(S::RequiresDeliverables),
        )
        .await;
        s.set_now(local(NY, 2026, 3, 16, 10, 0));
        let g = get(&s, &t.name).await;
        // Scheduled for Sun 03-15 22:30; waiting for the customer since Sat 09:00; seen
        // Mon 10:00: paused, no deadline, the scheduled time if resumed, nothing recorded.
        assert_eq!(state(&g, "first_response"), CS::Paused);
        assert_eq!(deadline(&g, "first_response"), None);
        assert_eq!(
            from_ts(&clock(&g, "first_response").deadline_if_resumed_time),
            Some(local(NY, 2026, 3, 15, 22, 30))
        );
        assert_eq!(clock(&g, "first_response").breach_time, None);
        assert_eq!(system_events_of(&g), vec![]);
        // The customer answers Mon 10:30: breached at once, deadline Sun 22:30, the breach
        // stamped 10:30 with its due time Sun 22:30.
        let g = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 16, 10, 30),
            status(S::Processing),
        )
        .await;
        assert_eq!(state(&g, "first_response"), CS::Breached);
        assert_eq!(
            deadline(&g, "first_response"),
            Some(local(NY, 2026, 3, 15, 22, 30))
        );
        assert_eq!(
            system_events(&s, &t.name, 1).await,
            vec![ev("breach:first_response", local(NY, 2026, 3, 16, 10, 30))]
        );
        let full = get(&s, &t.name).await;
        let due = full.events.iter().find_map(|e| match &e.kind {
            Some(K::ClockBreach(b)) => from_ts(&b.due_time),
            _ => None,
        });
        assert_eq!(due, Some(local(NY, 2026, 3, 15, 22, 30)));
        s.stop().await;
    }

    crate::on_both_stores!(
        p1_to_p3_count_wall_clock_minutes_through_the_weekend,
        p4_and_p5_count_business_days_on_the_8x5_desk_over_a_weekend,
        p6_waits_for_the_user_scheduled_time_and_uses_it_as_given,
        an_organisation_holiday_closes_the_8x5_desk_but_not_the_24x7_targets,
        dst_weeks_move_wall_clock_targets_by_real_time_and_business_days_by_local_time,
        requires_deliverables_pauses_p1_minutes_and_p4_desk_hours,
        late_crm_events_retract_a_breach_and_retarget_a_priority,
        p6_paused_past_its_scheduled_time_breaches_when_resumed,
    );
}

// ---------------------------------------------------------------- contently

/// `contently`: business Mon-Fri 09:00-17:00 New York; first response 2 business days,
/// escalation triage 1 business day, engineering hand-off the following week.
pub(crate) mod contently {
    use super::*;

    fn engaged() -> K {
        K::Custom(pb::CustomEvent {
            name: "engineering_engaged".into(),
        })
    }

    pub(crate) async fn setup(s: &TestServer, orgs: &[(&str, &[&str])]) {
        import(s, "contently", &["contently-business"]).await;
        for (id, holidays) in orgs {
            create_org(
                s,
                id,
                organization(
                    "America/New_York",
                    "",
                    "contently",
                    vec![bound("business", "contently-business", holidays)],
                    vec![],
                ),
            )
            .await;
        }
    }

    async fn first_response_takes_two_business_days_over_the_weekend(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 12, 14, 0)).await;
        setup(&s, &[("publisher", &[])]).await;
        let thu = open(
            &s,
            "publisher",
            "K1-1",
            "support",
            "",
            local(NY, 2026, 3, 12, 14, 0),
        )
        .await;
        // Received Thu 03-12 14:00: Fri 13 (1), Mon 16 (2) -> Mon 03-16 14:00.
        assert_eq!(
            deadline(&thu, "first_response"),
            Some(local(NY, 2026, 3, 16, 14, 0))
        );
        let fri = open(
            &s,
            "publisher",
            "K1-2",
            "support",
            "",
            local(NY, 2026, 3, 13, 9, 0),
        )
        .await;
        // Received Fri 03-13 09:00: Mon 16 (1), Tue 17 (2) -> Tue 03-17 09:00.
        assert_eq!(
            deadline(&fri, "first_response"),
            Some(local(NY, 2026, 3, 17, 9, 0))
        );
        let evening = open(
            &s,
            "publisher",
            "K1-3",
            "support",
            "",
            local(NY, 2026, 3, 13, 18, 0),
        )
        .await;
        // Received Fri 18:00, closed: counted from Mon 03-16 09:00, D = Mon, Tue 17 (1),
        // Wed 18 (2) -> Wed 03-18 09:00.
        assert_eq!(
            deadline(&evening, "first_response"),
            Some(local(NY, 2026, 3, 18, 9, 0))
        );
        let sat = open(
            &s,
            "publisher",
            "K1-4",
            "support",
            "",
            local(NY, 2026, 3, 14, 12, 0),
        )
        .await;
        // Received Sat 12:00: from Mon 09:00 too -> Wed 03-18 09:00.
        assert_eq!(
            deadline(&sat, "first_response"),
            Some(local(NY, 2026, 3, 18, 9, 0))
        );
        let thu = at(
            &s,
            &thu.name,
            local(NY, 2026, 3, 16, 14, 0),
            K::AgentResponse(()),
        )
        .await;
        // Answered at the deadline instant, Mon 14:00: met.
        assert_eq!(state(&thu, "first_response"), CS::Met);
        let fri = at(
            &s,
            &fri.name,
            local(NY, 2026, 3, 17, 9, 30),
            K::AgentResponse(()),
        )
        .await;
        // Answered Tue 09:30, after Tue 09:00: breached.
        assert_eq!(state(&fri, "first_response"), CS::Breached);
        s.stop().await;
    }

    async fn triage_falls_due_over_the_weekend_and_engineering_is_due_the_following_monday(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 12, 10, 0)).await;
        setup(&s, &[("publisher", &[])]).await;
        let t = open(
            &s,
            "publisher",
            "K2-1",
            "support",
            "",
            local(NY, 2026, 3, 12, 10, 0),
        )
        .await;
        at(
            &s,
            &t.name,
            local(NY, 2026, 3, 13, 10, 30),
            K::AgentResponse(()),
        )
        .await;
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 13, 11, 0),
            status(S::Escalated),
        )
        .await;
        // Escalated Fri 03-13 11:00: one business day SameTime -> Mon 03-16 11:00. No
        // hand-off yet.
        assert_eq!(
            deadline(&t, "escalation_triage"),
            Some(local(NY, 2026, 3, 16, 11, 0))
        );
        assert!(!has_clock(&t, "engineering_handoff"));
        // Mon 11:30: triage ran out while still running. The runner records its breach at
        // Mon 11:00, and the hand-off starts then: due the first opening of the next ISO
        // week, Mon 03-23 09:00.
        s.set_now(local(NY, 2026, 3, 16, 11, 30));
        assert_eq!(
            system_events(&s, &t.name, 1).await,
            vec![ev(
                "breach:escalation_triage",
                local(NY, 2026, 3, 16, 11, 0)
            )]
        );
        let t = get(&s, &t.name).await;
        assert_eq!(
            from_ts(&clock(&t, "engineering_handoff").start_time),
            Some(local(NY, 2026, 3, 16, 11, 0))
        );
        assert_eq!(
            deadline(&t, "engineering_handoff"),
            Some(local(NY, 2026, 3, 23, 9, 0))
        );
        assert_eq!(state(&t, "engineering_handoff"), CS::Running);
        // Mon 03-23 09:30, Engineering not connected yet: breached at 09:00.
        s.set_now(local(NY, 2026, 3, 23, 9, 30));
        assert_eq!(
            system_events(&s, &t.name, 2).await,
            vec![
                ev("breach:escalation_triage", local(NY, 2026, 3, 16, 11, 0)),
                ev("breach:engineering_handoff", local(NY, 2026, 3, 23, 9, 0)),
            ]
        );
        let t = at(&s, &t.name, local(NY, 2026, 3, 23, 9, 30), engaged()).await;
        let h = clock(&t, "engineering_handoff");
        assert_eq!(state(&t, "engineering_handoff"), CS::Breached);
        assert!(!h.active);
        assert_eq!(from_ts(&h.end_time), Some(local(NY, 2026, 3, 23, 9, 30)));
        s.stop().await;
    }

    async fn organisation_holidays_delay_triage_and_the_engineering_week(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 4, 2, 15, 0)).await;
        // The "holiday" organisation closes Good Friday 04-03 and Mon 04-13.
        setup(
            &s,
            &[("holiday", &["2026-04-03", "2026-04-13"]), ("plain", &[])],
        )
        .await;
        let t = open(
            &s,
            "holiday",
            "K3-1",
            "support",
            "",
            local(NY, 2026, 4, 2, 15, 0),
        )
        .await;
        let p = open(
            &s,
            "plain",
            "K3-2",
            "support",
            "",
            local(NY, 2026, 4, 2, 15, 0),
        )
        .await;
        // Received Thu 04-02 15:00. With the holiday: Fri 03 closed, Mon 06 (1), Tue 07 (2)
        // -> Tue 04-07 15:00. Without: Fri 03 (1), Mon 06 (2) -> Mon 04-06 15:00.
        assert_eq!(
            deadline(&t, "first_response"),
            Some(local(NY, 2026, 4, 7, 15, 0))
        );
        assert_eq!(
            deadline(&p, "first_response"),
            Some(local(NY, 2026, 4, 6, 15, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 4, 2, 16, 0),
            status(S::Escalated),
        )
        .await;
        let p = at(
            &s,
            &p.name,
            local(NY, 2026, 4, 2, 16, 0),
            status(S::Escalated),
        )
        .await;
        // Escalated Thu 16:00: 1 business day SameTime. With the holiday the next business
        // day is Mon 04-06 -> 16:00; without, Fri 04-03 16:00.
        assert_eq!(
            deadline(&t, "escalation_triage"),
            Some(local(NY, 2026, 4, 6, 16, 0))
        );
        assert_eq!(
            deadline(&p, "escalation_triage"),
            Some(local(NY, 2026, 4, 3, 16, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 4, 6, 10, 0),
            K::TriageCompletion(()),
        )
        .await;
        // Triage completed Mon 04-06 10:00, before Mon 16:00: met; no resolution, so the
        // hand-off is due the first opening of the next ISO week. Mon 04-13 is the
        // organisation's holiday: Tue 04-14 09:00.
        assert_eq!(state(&t, "escalation_triage"), CS::Met);
        assert_eq!(
            deadline(&t, "engineering_handoff"),
            Some(local(NY, 2026, 4, 14, 9, 0))
        );
        s.stop().await;
    }

    async fn dst_weeks_keep_business_hours_local(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 6, 15, 0)).await;
        setup(&s, &[("publisher", &[])]).await;
        let t = open(
            &s,
            "publisher",
            "K4-1",
            "support",
            "",
            local(NY, 2026, 3, 6, 15, 0),
        )
        .await;
        // Received Fri 03-06 15:00 EST: Mon 09 (1), Tue 10 (2) -> Tue 03-10 15:00 EDT.
        assert_eq!(
            deadline(&t, "first_response"),
            Some(local(NY, 2026, 3, 10, 15, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 6, 16, 0),
            status(S::Escalated),
        )
        .await;
        // Escalated Fri 16:00 EST -> Mon 03-09 16:00 EDT.
        assert_eq!(
            deadline(&t, "escalation_triage"),
            Some(local(NY, 2026, 3, 9, 16, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 6, 16, 30),
            K::TriageCompletion(()),
        )
        .await;
        // Triaged Fri 16:30 EST without a resolution: the following week opens Mon 03-09
        // 09:00 EDT (13:00Z).
        assert_eq!(
            deadline(&t, "engineering_handoff"),
            Some(local(NY, 2026, 3, 9, 9, 0))
        );
        let f = open(
            &s,
            "publisher",
            "K4-2",
            "support",
            "",
            local(NY, 2026, 10, 29, 11, 0),
        )
        .await;
        let f = at(
            &s,
            &f.name,
            local(NY, 2026, 10, 30, 14, 0),
            status(S::Escalated),
        )
        .await;
        // Escalated Fri 10-30 14:00 EDT -> Mon 11-02 14:00 EST (19:00Z).
        assert_eq!(
            deadline(&f, "escalation_triage"),
            Some(local(NY, 2026, 11, 2, 14, 0))
        );
        let f = at(
            &s,
            &f.name,
            local(NY, 2026, 10, 30, 15, 0),
            K::TriageCompletion(()),
        )
        .await;
        // Triaged Fri 15:00 EDT: the following week opens Mon 11-02 09:00 EST (14:00Z).
        assert_eq!(
            deadline(&f, "engineering_handoff"),
            Some(local(NY, 2026, 11, 2, 9, 0))
        );
        s.stop().await;
    }

    async fn requires_deliverables_pauses_triage_and_first_response_but_not_the_handoff(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 16, 9, 0)).await;
        setup(&s, &[("publisher", &[])]).await;
        let t = open(
            &s,
            "publisher",
            "K5-1",
            "support",
            "",
            local(NY, 2026, 3, 16, 9, 0),
        )
        .await;
        // Received Mon 03-16 09:00 -> Wed 03-18 09:00: 16 business hours (Mon, Tue).
        assert_eq!(
            deadline(&t, "first_response"),
            Some(local(NY, 2026, 3, 18, 9, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 16, 10, 0),
            status(S::Escalated),
        )
        .await;
        // Escalated Mon 10:00 -> Tue 03-17 10:00: 8 business hours.
        assert_eq!(
            deadline(&t, "escalation_triage"),
            Some(local(NY, 2026, 3, 17, 10, 0))
        );
        at(
            &s,
            &t.name,
            local(NY, 2026, 3, 16, 14, 0),
            status(S::RequiresDeliverables),
        )
        .await;
        s.set_now(local(NY, 2026, 3, 17, 9, 0));
        let t = get(&s, &t.name).await;
        // Waiting since Mon 14:00, seen Tue 09:00. Triage used Mon 10-14, 4 h left: Tue
        // 13:00 if resumed now. First response used Mon 09-14, 11 h left: Tue 09-17 8 h
        // + Wed 09-12 3 h -> Wed 12:00.
        assert_paused(
            &t,
            "escalation_triage",
            TimeDelta::hours(4),
            local(NY, 2026, 3, 17, 13, 0),
        );
        assert_paused(
            &t,
            "first_response",
            TimeDelta::hours(11),
            local(NY, 2026, 3, 18, 12, 0),
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 17, 11, 0),
            status(S::Escalated),
        )
        .await;
        // Resumed Tue 11:00 (back to ESCALATED: triage does not start twice). Triage: 4 h
        // from 11:00 -> Tue 15:00. First response: Tue 11-17 6 h + Wed 09-14 5 h -> Wed
        // 03-18 14:00.
        assert_eq!(instances(&t, "escalation_triage").len(), 1);
        assert_eq!(
            deadline(&t, "escalation_triage"),
            Some(local(NY, 2026, 3, 17, 15, 0))
        );
        assert_eq!(
            deadline(&t, "first_response"),
            Some(local(NY, 2026, 3, 18, 14, 0))
        );
        at(
            &s,
            &t.name,
            local(NY, 2026, 3, 17, 11, 30),
            K::AgentResponse(()),
        )
        .await;
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 17, 14, 0),
            K::TriageCompletion(()),
        )
        .await;
        // Triage completed Tue 14:00: met; the hand-off is due Mon 03-23 09:00.
        assert_eq!(state(&t, "first_response"), CS::Met);
        assert_eq!(state(&t, "escalation_triage"), CS::Met);
        assert_eq!(
            deadline(&t, "engineering_handoff"),
            Some(local(NY, 2026, 3, 23, 9, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 18, 10, 0),
            status(S::RequiresDeliverables),
        )
        .await;
        // Waiting for the customer again from Wed 10:00: the hand-off pauses like every
        // promise (the customer owes the next step). Its budget is the open time from
        // Tue 14:00 to Mon 09:00, 27 h; 4 h were used (Tue 14:00-17:00, Wed 09:00-10:00).
        // Resumed at once, the 23 h left end Fri 17:00: due the next opening, Mon 09:00.
        assert_eq!(state(&t, "engineering_handoff"), CS::Paused);
        assert_eq!(deadline(&t, "engineering_handoff"), None);
        assert_eq!(
            from_ts(&clock(&t, "engineering_handoff").deadline_if_resumed_time),
            Some(local(NY, 2026, 3, 23, 9, 0))
        );
        // The customer answers Fri 03-20 11:00: 23 h left from then end Wed 03-25 10:00.
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 20, 11, 0),
            status(S::Processing),
        )
        .await;
        assert_eq!(state(&t, "engineering_handoff"), CS::Running);
        assert_eq!(
            deadline(&t, "engineering_handoff"),
            Some(local(NY, 2026, 3, 25, 10, 0))
        );
        // Engaged Tue 03-24, after the old Monday deadline: met, the customer's days not
        // counted against it.
        let t = at(&s, &t.name, local(NY, 2026, 3, 24, 11, 0), engaged()).await;
        assert_eq!(state(&t, "engineering_handoff"), CS::Met);
        s.stop().await;
    }

    async fn late_triage_completion_retracts_the_breach_and_brings_engineering_forward(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 12, 10, 0)).await;
        setup(&s, &[("publisher", &[])]).await;
        let t = open(
            &s,
            "publisher",
            "K6-1",
            "support",
            "",
            local(NY, 2026, 3, 12, 10, 0),
        )
        .await;
        at(
            &s,
            &t.name,
            local(NY, 2026, 3, 13, 9, 0),
            K::AgentResponse(()),
        )
        .await;
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 13, 10, 0),
            status(S::Escalated),
        )
        .await;
        // Escalated Fri 03-13 10:00 -> Mon 03-16 10:00.
        assert_eq!(
            deadline(&t, "escalation_triage"),
            Some(local(NY, 2026, 3, 16, 10, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 17, 12, 0),
            K::CustomerReply(()),
        )
        .await;
        // Tue 03-17 12:00, nothing else known: triage breached at Mon 10:00, and the
        // hand-off started then, due Mon 03-23 09:00.
        assert_eq!(
            system_events(&s, &t.name, 1).await,
            vec![ev(
                "breach:escalation_triage",
                local(NY, 2026, 3, 16, 10, 0)
            )]
        );
        assert_eq!(
            deadline(&t, "engineering_handoff"),
            Some(local(NY, 2026, 3, 23, 9, 0))
        );
        // The CRM syncs the triage completion of Fri 03-13 16:00. Triage met, its breach
        // retracted (stamped now, Tue 12:00). The hand-off now started Fri 16:00: due the
        // next week's first opening, Mon 03-16 09:00, which has passed: breached then.
        let t = late(
            &s,
            &t.name,
            local(NY, 2026, 3, 13, 16, 0),
            K::TriageCompletion(()),
        )
        .await;
        assert_eq!(state(&t, "escalation_triage"), CS::Met);
        let handoffs = instances(&t, "engineering_handoff");
        assert_eq!(handoffs.len(), 1, "{handoffs:?}");
        assert_eq!(
            from_ts(&handoffs[0].start_time),
            Some(local(NY, 2026, 3, 13, 16, 0))
        );
        assert_eq!(
            deadline(&t, "engineering_handoff"),
            Some(local(NY, 2026, 3, 16, 9, 0))
        );
        assert_eq!(state(&t, "engineering_handoff"), CS::Breached);
        assert_eq!(
            system_events(&s, &t.name, 3).await,
            vec![
                ev("breach:engineering_handoff", local(NY, 2026, 3, 16, 9, 0)),
                ev("breach:escalation_triage", local(NY, 2026, 3, 16, 10, 0)),
                ev(
                    "retracted breach:escalation_triage",
                    local(NY, 2026, 3, 17, 12, 0)
                ),
            ]
        );
        s.stop().await;
    }

    async fn a_resolution_during_triage_needs_no_engineering_but_processing_does(db: Db) {
        let s = TestServer::start(db, local(NY, 2026, 3, 16, 9, 0)).await;
        setup(&s, &[("publisher", &[])]).await;
        let t = open(
            &s,
            "publisher",
            "K7-1",
            "support",
            "",
            local(NY, 2026, 3, 16, 9, 0),
        )
        .await;
        at(
            &s,
            &t.name,
            local(NY, 2026, 3, 16, 10, 0),
            status(S::Escalated),
        )
        .await;
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 16, 15, 0),
            status(S::Resolved),
        )
        .await;
        // Resolved Mon 15:00 during triage (due Tue 10:00): triage met with a resolution,
        // so no hand-off; the first response (due Wed 09:00) is stopped too: met.
        assert_eq!(state(&t, "escalation_triage"), CS::Met);
        assert_eq!(state(&t, "first_response"), CS::Met);
        assert!(!has_clock(&t, "engineering_handoff"));
        at(&s, &t.name, local(NY, 2026, 3, 17, 10, 0), K::Reopen(())).await;
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 17, 11, 0),
            status(S::Escalated),
        )
        .await;
        // Reopened Tue 10:00 and escalated again Tue 11:00: a second triage, Wed 03-18
        // 11:00.
        assert_eq!(instances(&t, "escalation_triage").len(), 2);
        assert_eq!(
            deadline(&t, "escalation_triage"),
            Some(local(NY, 2026, 3, 18, 11, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 17, 15, 0),
            status(S::Processing),
        )
        .await;
        // Moved to PROCESSING Tue 15:00: triage ends unresolved, the hand-off is due the
        // next week's first opening, Mon 03-23 09:00.
        assert_eq!(state(&t, "escalation_triage"), CS::Met);
        assert_eq!(
            from_ts(&clock(&t, "engineering_handoff").start_time),
            Some(local(NY, 2026, 3, 17, 15, 0))
        );
        assert_eq!(
            deadline(&t, "engineering_handoff"),
            Some(local(NY, 2026, 3, 23, 9, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(NY, 2026, 3, 19, 12, 0),
            status(S::Resolved),
        )
        .await;
        // Resolved on the way, Thu 03-19: the hand-off ends, met.
        assert_eq!(state(&t, "engineering_handoff"), CS::Met);
        s.stop().await;
    }

    crate::on_both_stores!(
        first_response_takes_two_business_days_over_the_weekend,
        triage_falls_due_over_the_weekend_and_engineering_is_due_the_following_monday,
        organisation_holidays_delay_triage_and_the_engineering_week,
        dst_weeks_keep_business_hours_local,
        requires_deliverables_pauses_triage_and_first_response_but_not_the_handoff,
        late_triage_completion_retracts_the_breach_and_brings_engineering_forward,
        a_resolution_during_triage_needs_no_engineering_but_processing_does,
    );
}

// ---------------------------------------------------------------- clevr

/// `clevr`: support Mon-Fri 08:00-18:30 Toronto (10 h 30 a day); severities sev-1..sev-4;
/// first response, resolution (sev-1 warns at 50 %), escalation timer.
pub(crate) mod clevr {
    use super::*;

    pub(crate) async fn setup(s: &TestServer, orgs: &[(&str, &[&str])]) {
        import(s, "clevr", &["clevr-support"]).await;
        for (id, holidays) in orgs {
            create_org(
                s,
                id,
                organization(
                    "America/Toronto",
                    "",
                    "clevr",
                    vec![bound("support", "clevr-support", holidays)],
                    vec![],
                ),
            )
            .await;
        }
    }

    async fn sev1_escalates_after_one_business_hour_across_the_weekend(db: Db) {
        let s = TestServer::start(db, local(TO, 2026, 3, 13, 18, 0)).await;
        setup(&s, &[("district", &[])]).await;
        let t = open(
            &s,
            "district",
            "V1-1",
            "incident",
            "sev-1",
            local(TO, 2026, 3, 13, 18, 0),
        )
        .await;
        // Sev 1 received Fri 03-13 18:00 EDT: 30 support minutes left Friday, 30 more from
        // the Mon 08:00 opening -> first response and escalation Mon 03-16 08:30.
        assert_eq!(
            deadline(&t, "first_response"),
            Some(local(TO, 2026, 3, 16, 8, 30))
        );
        assert_eq!(
            deadline(&t, "escalation"),
            Some(local(TO, 2026, 3, 16, 8, 30))
        );
        assert_eq!(clock(&t, "escalation").kind, pb::ClockKind::Timer as i32);
        // Resolution 1 business day SameTime: Mon 03-16 18:00. Budget: Fri 30 min + Mon
        // 08:00-18:00 10 h = 10 h 30; the 50 % warning after 5 h 15: Fri 30 min, then Mon
        // 08:00 + 4 h 45 = 12:45.
        assert_eq!(
            deadline(&t, "resolution"),
            Some(local(TO, 2026, 3, 16, 18, 0))
        );
        assert_eq!(span(&clock(&t, "resolution").budget), Some(hm(10, 30)));
        assert_eq!(
            warning_at(&t, "resolution", 50),
            Some(local(TO, 2026, 3, 16, 12, 45))
        );
        // Mon 13:00: the runner has recorded the missed first response and the escalation
        // to level 1, both at Mon 08:30, and the warning at 12:45.
        s.set_now(local(TO, 2026, 3, 16, 13, 0));
        assert_eq!(
            system_events(&s, &t.name, 3).await,
            vec![
                ev("breach:first_response", local(TO, 2026, 3, 16, 8, 30)),
                ev("escalate:escalation:1", local(TO, 2026, 3, 16, 8, 30)),
                ev("warning:resolution:50", local(TO, 2026, 3, 16, 12, 45)),
            ]
        );
        let t = get(&s, &t.name).await;
        assert_eq!(state(&t, "escalation"), CS::Fired);
        assert_eq!(clock(&t, "resolution").warning_level, 50);
        assert_eq!(state(&t, "resolution"), CS::Running);
        s.stop().await;
    }

    async fn sev2_to_sev4_targets_over_a_weekend(db: Db) {
        let s = TestServer::start(db, local(TO, 2026, 3, 13, 16, 0)).await;
        setup(&s, &[("district", &[])]).await;
        let sev2 = open(
            &s,
            "district",
            "V2-1",
            "incident",
            "sev-2",
            local(TO, 2026, 3, 13, 16, 0),
        )
        .await;
        // Sev 2 received Fri 03-13 16:00; Friday has 150 support minutes left (to 18:30).
        // First response 240 min: 150 Fri + 90 Mon -> Mon 03-16 09:30. Escalation 480 min:
        // 150 Fri + 330 Mon -> Mon 13:30. Resolution 1 business day SameTime -> Mon 16:00.
        assert_eq!(
            deadline(&sev2, "first_response"),
            Some(local(TO, 2026, 3, 16, 9, 30))
        );
        assert_eq!(
            deadline(&sev2, "escalation"),
            Some(local(TO, 2026, 3, 16, 13, 30))
        );
        assert_eq!(
            deadline(&sev2, "resolution"),
            Some(local(TO, 2026, 3, 16, 16, 0))
        );
        let sev3 = open(
            &s,
            "district",
            "V2-2",
            "incident",
            "sev-3",
            local(TO, 2026, 3, 14, 10, 0),
        )
        .await;
        // Sev 3 received Sat 03-14 10:00: everything counts from Mon 08:00, D = Mon. First
        // response 1 business day -> Tue 03-17 08:00; resolution and escalation 2 business
        // days -> Wed 03-18 08:00.
        assert_eq!(
            deadline(&sev3, "first_response"),
            Some(local(TO, 2026, 3, 17, 8, 0))
        );
        assert_eq!(
            deadline(&sev3, "resolution"),
            Some(local(TO, 2026, 3, 18, 8, 0))
        );
        assert_eq!(
            deadline(&sev3, "escalation"),
            Some(local(TO, 2026, 3, 18, 8, 0))
        );
        let sev4 = open(
            &s,
            "district",
            "V2-3",
            "incident",
            "sev-4",
            local(TO, 2026, 3, 14, 10, 0),
        )
        .await;
        // Sev 4, Sat 10:00: first response as sev 3 -> Tue 08:00; resolution "TBD" and no
        // escalation line: both wait, not started.
        assert_eq!(
            deadline(&sev4, "first_response"),
            Some(local(TO, 2026, 3, 17, 8, 0))
        );
        for metric in ["resolution", "escalation"] {
            assert_eq!(state(&sev4, metric), CS::NotStarted, "{metric}");
            assert!(
                clock(&sev4, metric).not_started_reason.contains("sev-4"),
                "{:?}",
                clock(&sev4, metric)
            );
        }
        let sev1 = open(
            &s,
            "district",
            "V2-4",
            "incident",
            "sev-1",
            local(TO, 2026, 3, 15, 20, 0),
        )
        .await;
        // Sev 1 received Sun 03-15 20:00: first response and escalation 60 min from the Mon
        // 08:00 opening -> 09:00; resolution, D = Mon, T = Tue 03-17 08:00; its budget is
        // Monday's 10 h 30, so the warning is at Mon 08:00 + 5 h 15 = 13:15.
        assert_eq!(
            deadline(&sev1, "first_response"),
            Some(local(TO, 2026, 3, 16, 9, 0))
        );
        assert_eq!(
            deadline(&sev1, "escalation"),
            Some(local(TO, 2026, 3, 16, 9, 0))
        );
        assert_eq!(
            deadline(&sev1, "resolution"),
            Some(local(TO, 2026, 3, 17, 8, 0))
        );
        assert_eq!(
            warning_at(&sev1, "resolution", 50),
            Some(local(TO, 2026, 3, 16, 13, 15))
        );
        s.stop().await;
    }

    async fn the_districts_good_friday_delays_sev1_and_sev3(db: Db) {
        let s = TestServer::start(db, local(TO, 2026, 4, 2, 10, 0)).await;
        // The "holiday" district closes Good Friday, 2026-04-03.
        setup(&s, &[("holiday", &["2026-04-03"]), ("plain", &[])]).await;
        let sev3 = open(
            &s,
            "holiday",
            "V3-1",
            "incident",
            "sev-3",
            local(TO, 2026, 4, 2, 10, 0),
        )
        .await;
        // Sev 3 received Thu 04-02 10:00: first response 1 business day, Fri closed -> Mon
        // 04-06 10:00; resolution and escalation 2 -> Tue 04-07 10:00.
        assert_eq!(
            deadline(&sev3, "first_response"),
            Some(local(TO, 2026, 4, 6, 10, 0))
        );
        assert_eq!(
            deadline(&sev3, "resolution"),
            Some(local(TO, 2026, 4, 7, 10, 0))
        );
        assert_eq!(
            deadline(&sev3, "escalation"),
            Some(local(TO, 2026, 4, 7, 10, 0))
        );
        let t = open(
            &s,
            "holiday",
            "V3-2",
            "incident",
            "sev-1",
            local(TO, 2026, 4, 2, 18, 0),
        )
        .await;
        let p = open(
            &s,
            "plain",
            "V3-3",
            "incident",
            "sev-1",
            local(TO, 2026, 4, 2, 18, 0),
        )
        .await;
        // Sev 1 received Thu 04-02 18:00: 30 min Thursday, 30 min on the next open day.
        // With the holiday: Mon 04-06 08:30; without: Fri 04-03 08:30.
        assert_eq!(
            deadline(&t, "escalation"),
            Some(local(TO, 2026, 4, 6, 8, 30))
        );
        assert_eq!(
            deadline(&p, "escalation"),
            Some(local(TO, 2026, 4, 3, 8, 30))
        );
        // Resolution (1 business day SameTime): Mon 04-06 18:00 with the holiday, budget
        // 30 min + 10 h = 10 h 30, warning after 5 h 15 = Mon 12:45; Fri 04-03 18:00
        // without.
        assert_eq!(
            deadline(&t, "resolution"),
            Some(local(TO, 2026, 4, 6, 18, 0))
        );
        assert_eq!(
            warning_at(&t, "resolution", 50),
            Some(local(TO, 2026, 4, 6, 12, 45))
        );
        assert_eq!(
            deadline(&p, "resolution"),
            Some(local(TO, 2026, 4, 3, 18, 0))
        );
        // Good Friday 09:00: the plain district's sev 1 was escalated at 08:30 (its first
        // response missed then too); the holiday district's timer still runs.
        s.set_now(local(TO, 2026, 4, 3, 9, 0));
        assert_eq!(
            system_events(&s, &p.name, 2).await,
            vec![
                ev("breach:first_response", local(TO, 2026, 4, 3, 8, 30)),
                ev("escalate:escalation:1", local(TO, 2026, 4, 3, 8, 30)),
            ]
        );
        let held = get(&s, &t.name).await;
        assert_eq!(state(&held, "escalation"), CS::Running);
        // Mon 04-06 09:00: escalated at Mon 08:30.
        s.set_now(local(TO, 2026, 4, 6, 9, 0));
        assert_eq!(
            system_events(&s, &t.name, 2).await,
            vec![
                ev("breach:first_response", local(TO, 2026, 4, 6, 8, 30)),
                ev("escalate:escalation:1", local(TO, 2026, 4, 6, 8, 30)),
            ]
        );
        s.stop().await;
    }

    async fn dst_weeks_in_toronto(db: Db) {
        let s = TestServer::start(db, local(TO, 2026, 3, 6, 17, 0)).await;
        setup(&s, &[("district", &[])]).await;
        let spring = open(
            &s,
            "district",
            "V4-1",
            "incident",
            "sev-2",
            local(TO, 2026, 3, 6, 17, 0),
        )
        .await;
        // Sev 2 received Fri 03-06 17:00 EST: 90 min left Friday. First response 240: 150
        // more from Mon 03-09 08:00 EDT -> 10:30 EDT. Escalation 480: 390 more -> 14:30
        // EDT. Resolution -> Mon 17:00 EDT.
        assert_eq!(
            deadline(&spring, "first_response"),
            Some(local(TO, 2026, 3, 9, 10, 30))
        );
        assert_eq!(
            deadline(&spring, "escalation"),
            Some(local(TO, 2026, 3, 9, 14, 30))
        );
        assert_eq!(
            deadline(&spring, "resolution"),
            Some(local(TO, 2026, 3, 9, 17, 0))
        );
        let fall = open(
            &s,
            "district",
            "V4-2",
            "incident",
            "sev-1",
            local(TO, 2026, 10, 30, 18, 0),
        )
        .await;
        // Sev 1 received Fri 10-30 18:00 EDT: 30 min Friday + 30 min from Mon 11-02 08:00
        // EST -> 08:30 EST (13:30Z). Resolution Mon 18:00 EST; warning after 5 h 15: Fri
        // 30 min + Mon 4 h 45 -> 12:45 EST.
        assert_eq!(
            deadline(&fall, "escalation"),
            Some(local(TO, 2026, 11, 2, 8, 30))
        );
        assert_eq!(
            deadline(&fall, "resolution"),
            Some(local(TO, 2026, 11, 2, 18, 0))
        );
        assert_eq!(
            warning_at(&fall, "resolution", 50),
            Some(local(TO, 2026, 11, 2, 12, 45))
        );
        // Mon 08:45 EST: escalated at 08:30 EST, not at 08:30 EDT an hour earlier.
        s.set_now(local(TO, 2026, 11, 2, 8, 45));
        assert_eq!(
            system_events(&s, &fall.name, 2).await,
            vec![
                ev("breach:first_response", local(TO, 2026, 11, 2, 8, 30)),
                ev("escalate:escalation:1", local(TO, 2026, 11, 2, 8, 30)),
            ]
        );
        s.stop().await;
    }

    async fn requires_deliverables_pauses_resolution_and_escalation(db: Db) {
        let s = TestServer::start(db, local(TO, 2026, 3, 16, 9, 0)).await;
        setup(&s, &[("district", &[])]).await;
        let t = open(
            &s,
            "district",
            "V5-1",
            "incident",
            "sev-1",
            local(TO, 2026, 3, 16, 9, 0),
        )
        .await;
        // Sev 1 received Mon 03-16 09:00: escalation 10:00; resolution Tue 03-17 09:00, a
        // budget of Mon 09:00-18:30 9 h 30 + Tue 08:00-09:00 1 h = 10 h 30, warning after
        // 5 h 15 -> Mon 14:15.
        assert_eq!(
            deadline(&t, "escalation"),
            Some(local(TO, 2026, 3, 16, 10, 0))
        );
        assert_eq!(
            deadline(&t, "resolution"),
            Some(local(TO, 2026, 3, 17, 9, 0))
        );
        assert_eq!(
            warning_at(&t, "resolution", 50),
            Some(local(TO, 2026, 3, 16, 14, 15))
        );
        at(
            &s,
            &t.name,
            local(TO, 2026, 3, 16, 9, 20),
            K::AgentResponse(()),
        )
        .await;
        at(
            &s,
            &t.name,
            local(TO, 2026, 3, 16, 9, 30),
            status(S::RequiresDeliverables),
        )
        .await;
        s.set_now(local(TO, 2026, 3, 16, 11, 0));
        let t = get(&s, &t.name).await;
        // Waiting since 09:30, seen 11:00. Escalation used 30 min, 30 left -> 11:30 if
        // resumed now. Resolution used 30 min, 10 h left: Mon 11:00-18:30 7 h 30 + Tue
        // 08:00 + 2 h 30 -> Tue 10:30.
        assert_paused(
            &t,
            "escalation",
            TimeDelta::minutes(30),
            local(TO, 2026, 3, 16, 11, 30),
        );
        assert_paused(
            &t,
            "resolution",
            TimeDelta::hours(10),
            local(TO, 2026, 3, 17, 10, 30),
        );
        let t = at(
            &s,
            &t.name,
            local(TO, 2026, 3, 16, 12, 0),
            status(S::Processing),
        )
        .await;
        // Resumed 12:00 after 2 h 30 paused. Escalation: 30 min -> 12:30. Resolution: 10 h
        // from 12:00, Mon 6 h 30 + Tue 3 h 30 -> Tue 11:30; the warning's remaining 4 h 45
        // -> Mon 16:45.
        assert_eq!(
            deadline(&t, "escalation"),
            Some(local(TO, 2026, 3, 16, 12, 30))
        );
        assert_eq!(
            deadline(&t, "resolution"),
            Some(local(TO, 2026, 3, 17, 11, 30))
        );
        assert_eq!(
            warning_at(&t, "resolution", 50),
            Some(local(TO, 2026, 3, 16, 16, 45))
        );
        // 12:40: the runner escalated at 12:30, the paused time not counted.
        s.set_now(local(TO, 2026, 3, 16, 12, 40));
        assert_eq!(
            system_events(&s, &t.name, 1).await,
            vec![ev("escalate:escalation:1", local(TO, 2026, 3, 16, 12, 30))]
        );
        let t = at(
            &s,
            &t.name,
            local(TO, 2026, 3, 16, 13, 0),
            status(S::Resolved),
        )
        .await;
        assert_eq!(state(&t, "resolution"), CS::Met);
        assert_eq!(state(&t, "escalation"), CS::Fired);
        s.stop().await;
    }

    async fn late_crm_events_retract_the_breach_and_the_escalation(db: Db) {
        let s = TestServer::start(db, local(TO, 2026, 3, 16, 9, 0)).await;
        setup(&s, &[("district", &[])]).await;
        let t = open(
            &s,
            "district",
            "V6-1",
            "incident",
            "sev-2",
            local(TO, 2026, 3, 16, 9, 0),
        )
        .await;
        // Sev 2 received Mon 03-16 09:00: first response 4 support hours -> 13:00;
        // escalation 8 -> 17:00; resolution 1 business day -> Tue 09:00.
        assert_eq!(
            deadline(&t, "first_response"),
            Some(local(TO, 2026, 3, 16, 13, 0))
        );
        assert_eq!(
            deadline(&t, "escalation"),
            Some(local(TO, 2026, 3, 16, 17, 0))
        );
        at(
            &s,
            &t.name,
            local(TO, 2026, 3, 16, 18, 0),
            K::CustomerReply(()),
        )
        .await;
        // Mon 18:00, nothing else known: the response was missed at 13:00 and the request
        // escalated to level 2 at 17:00.
        assert_eq!(
            system_events(&s, &t.name, 2).await,
            vec![
                ev("breach:first_response", local(TO, 2026, 3, 16, 13, 0)),
                ev("escalate:escalation:2", local(TO, 2026, 3, 16, 17, 0)),
            ]
        );
        // The CRM syncs the agent's answer at 11:00: met, breach retracted.
        let t = late(
            &s,
            &t.name,
            local(TO, 2026, 3, 16, 11, 0),
            K::AgentResponse(()),
        )
        .await;
        assert_eq!(state(&t, "first_response"), CS::Met);
        // And the resolution at 16:00, before the 17:00 escalation: the timer stopped
        // before firing, the escalation is retracted; resolution met.
        let t = late(
            &s,
            &t.name,
            local(TO, 2026, 3, 16, 16, 0),
            status(S::Resolved),
        )
        .await;
        assert_eq!(t.status, S::Resolved as i32);
        assert_eq!(state(&t, "escalation"), CS::Stopped);
        assert_eq!(state(&t, "resolution"), CS::Met);
        assert_eq!(
            system_events(&s, &t.name, 4).await,
            vec![
                ev("breach:first_response", local(TO, 2026, 3, 16, 13, 0)),
                ev("escalate:escalation:2", local(TO, 2026, 3, 16, 17, 0)),
                ev(
                    "retracted breach:first_response",
                    local(TO, 2026, 3, 16, 18, 0)
                ),
                ev(
                    "retracted escalate:escalation:2",
                    local(TO, 2026, 3, 16, 18, 0)
                ),
            ]
        );
        s.stop().await;
    }

    async fn a_sev4_raised_to_sev3_counts_from_receipt_and_a_reopen_restarts_resolution_only(
        db: Db,
    ) {
        let s = TestServer::start(db, local(TO, 2026, 3, 16, 10, 0)).await;
        setup(&s, &[("district", &[])]).await;
        let t = open(
            &s,
            "district",
            "V7-1",
            "incident",
            "sev-4",
            local(TO, 2026, 3, 16, 10, 0),
        )
        .await;
        // Sev 4 received Mon 03-16 10:00: first response Tue 10:00; resolution waits.
        assert_eq!(
            deadline(&t, "first_response"),
            Some(local(TO, 2026, 3, 17, 10, 0))
        );
        assert_eq!(state(&t, "resolution"), CS::NotStarted);
        let t = at(
            &s,
            &t.name,
            local(TO, 2026, 3, 17, 9, 0),
            K::PriorityChange(pb::PriorityChange {
                priority: "sev-3".into(),
            }),
        )
        .await;
        // Raised to sev 3 Tue 09:00: resolution and escalation count from receipt, Mon
        // 10:00, 2 business days -> Wed 03-18 10:00; first response unchanged (Tue 10:00).
        assert_eq!(
            from_ts(&clock(&t, "resolution").start_time),
            Some(local(TO, 2026, 3, 16, 10, 0))
        );
        assert_eq!(
            deadline(&t, "resolution"),
            Some(local(TO, 2026, 3, 18, 10, 0))
        );
        assert_eq!(
            deadline(&t, "escalation"),
            Some(local(TO, 2026, 3, 18, 10, 0))
        );
        assert_eq!(
            deadline(&t, "first_response"),
            Some(local(TO, 2026, 3, 17, 10, 0))
        );
        at(
            &s,
            &t.name,
            local(TO, 2026, 3, 17, 9, 30),
            K::AgentResponse(()),
        )
        .await;
        let t = at(
            &s,
            &t.name,
            local(TO, 2026, 3, 18, 9, 0),
            status(S::Resolved),
        )
        .await;
        // Resolved Wed 09:00: met; the escalation timer stops without firing.
        assert_eq!(state(&t, "resolution"), CS::Met);
        assert_eq!(state(&t, "escalation"), CS::Stopped);
        let t = at(&s, &t.name, local(TO, 2026, 3, 19, 10, 0), K::Reopen(())).await;
        // Reopened Thu 03-19 10:00: cycle 1, a new resolution clock, Fri 20 (1), Mon 23
        // (2) -> Mon 03-23 10:00. The escalation starts on receipt only: not again.
        assert_eq!(t.cycle, 1);
        let res = clock(&t, "resolution");
        assert_eq!((res.cycle, res.instance), (1, 1));
        assert_eq!(
            deadline(&t, "resolution"),
            Some(local(TO, 2026, 3, 23, 10, 0))
        );
        assert_eq!(instances(&t, "escalation").len(), 1);
        assert_eq!(state(&t, "escalation"), CS::Stopped);
        s.stop().await;
    }

    crate::on_both_stores!(
        sev1_escalates_after_one_business_hour_across_the_weekend,
        sev2_to_sev4_targets_over_a_weekend,
        the_districts_good_friday_delays_sev1_and_sev3,
        dst_weeks_in_toronto,
        requires_deliverables_pauses_resolution_and_escalation,
        late_crm_events_retract_the_breach_and_the_escalation,
        a_sev4_raised_to_sev3_counts_from_receipt_and_a_reopen_restarts_resolution_only,
    );
}

// ---------------------------------------------------------------- 24social

/// `24social`: lead time by estimate from the main stakeholder's work authorisation,
/// approval guard on CLOSED, operations Mon-Fri 09:00-17:30 London (no target uses it).
pub(crate) mod social {
    use super::*;

    /// Ann is the main stakeholder; Bob holds no role; Carol was the main stakeholder
    /// until 2026-03-01; Dave becomes it on 2026-03-24.
    fn contacts() -> Vec<pb::Contact> {
        vec![
            contact("ann", "main_stakeholder"),
            contact("bob", ""),
            pb::Contact {
                effective_until_time: ts(utc(2026, 3, 1, 0, 0)),
                ..contact("carol", "main_stakeholder")
            },
            pb::Contact {
                effective_from_time: ts(utc(2026, 3, 24, 0, 0)),
                ..contact("dave", "main_stakeholder")
            },
        ]
    }

    pub(crate) async fn setup(s: &TestServer, orgs: &[(&str, &str, &[&str])]) {
        import(s, "24social", &["24social-operations"]).await;
        for (id, zone, holidays) in orgs {
            create_org(
                s,
                id,
                organization(
                    zone,
                    "",
                    "24social",
                    vec![bound("operations", "24social-operations", holidays)],
                    contacts(),
                ),
            )
            .await;
        }
    }

    /// A task estimated at `estimate` minutes (0 for none), requested by `requester`.
    pub(crate) async fn task(
        s: &TestServer,
        org: &str,
        external: &str,
        estimate: i32,
        requester: &str,
        received: DateTime<Utc>,
    ) -> pb::Ticket {
        s.set_now(received);
        create_ticket(
            s,
            pb::Ticket {
                estimate_minutes: estimate,
                requested_by: requester.into(),
                ..ticket(org, external, "task", "", received)
            },
        )
        .await
    }

    pub(crate) async fn authorise(s: &TestServer, name: &str, when: DateTime<Utc>) -> pb::Ticket {
        at_by(s, name, when, K::WorkAuthorisation(()), "ann")
            .await
            .unwrap_or_else(|e| panic!("ann authorises {name}: {e}"))
    }

    async fn lead_time_follows_the_estimate_bucket_over_a_weekend_and_ignores_holidays(db: Db) {
        let s = TestServer::start(db, local(LON, 2026, 3, 13, 9, 0)).await;
        // The organisation closes Mon 03-16; lead times are wall-clock hours and calendar
        // days, so that changes nothing.
        setup(&s, &[("brand", "Europe/London", &["2026-03-16"])]).await;
        let received = local(LON, 2026, 3, 13, 9, 0);
        let mut tickets = Vec::new();
        for (i, estimate) in [180, 181, 480, 481, 960, 961, 0].into_iter().enumerate() {
            tickets.push(task(&s, "brand", &format!("S1-{i}"), estimate, "bob", received).await);
        }
        let bug = create_ticket(
            &s,
            pb::Ticket {
                estimate_minutes: 60,
                ..ticket("brand", "S1-bug", "bug", "", received)
            },
        )
        .await;
        assert!(
            tickets.iter().all(|t| !has_clock(t, "lead_time")),
            "no lead time before the go-ahead"
        );
        let authorised = local(LON, 2026, 3, 13, 15, 0);
        let mut got = Vec::new();
        for t in &tickets {
            got.push(authorise(&s, &t.name, authorised).await);
        }
        // Authorised Fri 03-13 15:00 GMT. Up to 180 min (3 h exactly is in the shorter
        // band): 24 h -> Sat 03-14 15:00.
        assert_eq!(
            deadline(&got[0], "lead_time"),
            Some(local(LON, 2026, 3, 14, 15, 0))
        );
        // 181 and 480 min: 72 h -> Mon 03-16 15:00 (the organisation's holiday counts).
        assert_eq!(
            deadline(&got[1], "lead_time"),
            Some(local(LON, 2026, 3, 16, 15, 0))
        );
        assert_eq!(
            deadline(&got[2], "lead_time"),
            Some(local(LON, 2026, 3, 16, 15, 0))
        );
        // 481 and 960 min: 7 calendar days -> Fri 03-20 15:00.
        assert_eq!(
            deadline(&got[3], "lead_time"),
            Some(local(LON, 2026, 3, 20, 15, 0))
        );
        assert_eq!(
            deadline(&got[4], "lead_time"),
            Some(local(LON, 2026, 3, 20, 15, 0))
        );
        // 961 min, above 16 h: needs a quote, the clock waits.
        assert_eq!(state(&got[5], "lead_time"), CS::NotStarted);
        assert_eq!(deadline(&got[5], "lead_time"), None);
        assert!(
            clock(&got[5], "lead_time")
                .not_started_reason
                .contains("needs a quote"),
            "{:?}",
            clock(&got[5], "lead_time")
        );
        // No estimate yet: waits too.
        assert_eq!(state(&got[6], "lead_time"), CS::NotStarted);
        assert!(
            clock(&got[6], "lead_time")
                .not_started_reason
                .contains("no effort estimate"),
            "{:?}",
            clock(&got[6], "lead_time")
        );
        // The bug report is not a task: the lead time does not apply at all.
        let bug = authorise(&s, &bug.name, authorised).await;
        assert!(!has_clock(&bug, "lead_time"), "{:?}", bug.clocks);
        let requoted = at(
            &s,
            &got[5].name,
            local(LON, 2026, 3, 16, 10, 0),
            K::EstimateChange(pb::EstimateChange {
                estimate_minutes: 900,
            }),
        )
        .await;
        // Re-estimated at 15 h on Mon 03-16 10:00: 7 days, counted from the go-ahead on
        // Fri 15:00 -> Fri 03-20 15:00.
        assert_eq!(
            from_ts(&clock(&requoted, "lead_time").start_time),
            Some(authorised)
        );
        assert_eq!(
            deadline(&requoted, "lead_time"),
            Some(local(LON, 2026, 3, 20, 15, 0))
        );
        s.stop().await;
    }

    async fn only_the_main_stakeholder_authorises_work_and_that_starts_the_lead_time(db: Db) {
        let s = TestServer::start(db, local(LON, 2026, 3, 23, 9, 0)).await;
        setup(&s, &[("brand", "Europe/London", &[])]).await;
        let t = task(
            &s,
            "brand",
            "S2-1",
            120,
            "bob",
            local(LON, 2026, 3, 23, 9, 0),
        )
        .await;
        for (who, at_) in [
            ("bob", local(LON, 2026, 3, 23, 10, 0)),
            ("", local(LON, 2026, 3, 23, 10, 5)),
            ("carol", local(LON, 2026, 3, 23, 10, 10)),
            ("dave", local(LON, 2026, 3, 23, 10, 15)),
        ] {
            // Bob holds no role, nobody is named, Carol's role ended 03-01, Dave's starts
            // 03-24: each refused, nothing stored.
            let err = at_by(&s, &t.name, at_, K::WorkAuthorisation(()), who)
                .await
                .expect_err("not the main stakeholder");
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{who}: {err}");
        }
        let t = get(&s, &t.name).await;
        assert!(!has_clock(&t, "lead_time"));
        assert_eq!(t.events.len(), 0, "{:?}", t.events);
        let t = authorise(&s, &t.name, local(LON, 2026, 3, 23, 11, 0)).await;
        // Ann authorises Mon 03-23 11:00; 2 h estimated: 24 h -> Tue 03-24 11:00.
        assert_eq!(
            from_ts(&clock(&t, "lead_time").start_time),
            Some(local(LON, 2026, 3, 23, 11, 0))
        );
        assert_eq!(
            deadline(&t, "lead_time"),
            Some(local(LON, 2026, 3, 24, 11, 0))
        );
        let t = authorise(&s, &t.name, local(LON, 2026, 3, 23, 12, 0)).await;
        // Authorised again at 12:00: the running clock does not restart.
        assert_eq!(instances(&t, "lead_time").len(), 1);
        assert_eq!(
            deadline(&t, "lead_time"),
            Some(local(LON, 2026, 3, 24, 11, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(LON, 2026, 3, 24, 10, 0),
            status(S::SubmittedForReview),
        )
        .await;
        assert_eq!(state(&t, "lead_time"), CS::Met);
        // From Tue 03-24 Dave is a main stakeholder too: after changes are asked for, his
        // go-ahead Wed 03-25 09:00 starts a second lead time, 24 h -> Thu 03-26 09:00.
        at(
            &s,
            &t.name,
            local(LON, 2026, 3, 24, 16, 0),
            status(S::Processing),
        )
        .await;
        let t = at_by(
            &s,
            &t.name,
            local(LON, 2026, 3, 25, 9, 0),
            K::WorkAuthorisation(()),
            "dave",
        )
        .await
        .expect("dave is the main stakeholder now");
        assert_eq!(instances(&t, "lead_time").len(), 2);
        assert_eq!(
            deadline(&t, "lead_time"),
            Some(local(LON, 2026, 3, 26, 9, 0))
        );
        s.stop().await;
    }

    async fn closing_needs_the_main_stakeholders_approval_unless_they_requested_the_change(db: Db) {
        let s = TestServer::start(db, local(LON, 2026, 3, 23, 9, 0)).await;
        setup(&s, &[("brand", "Europe/London", &[])]).await;
        let by_bob = task(
            &s,
            "brand",
            "S3-1",
            60,
            "bob",
            local(LON, 2026, 3, 23, 9, 0),
        )
        .await;
        let by_ann = task(
            &s,
            "brand",
            "S3-2",
            60,
            "ann",
            local(LON, 2026, 3, 23, 9, 0),
        )
        .await;
        let by_carol = task(
            &s,
            "brand",
            "S3-3",
            60,
            "carol",
            local(LON, 2026, 3, 23, 9, 0),
        )
        .await;
        at(
            &s,
            &by_bob.name,
            local(LON, 2026, 3, 23, 10, 0),
            status(S::Processing),
        )
        .await;
        // Requested by Bob, no approval: publishing (CLOSED) is refused.
        let err = at_by(
            &s,
            &by_bob.name,
            local(LON, 2026, 3, 23, 11, 0),
            status(S::Closed),
            "",
        )
        .await
        .expect_err("needs the main stakeholder's approval");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message().contains("approval"), "{}", err.message());
        // Bob's own approval does not count.
        at_by(
            &s,
            &by_bob.name,
            local(LON, 2026, 3, 23, 11, 30),
            K::Approval(()),
            "bob",
        )
        .await
        .expect("an approval is recorded");
        let err = record(
            &s,
            &by_bob.name,
            event(local(LON, 2026, 3, 23, 12, 0), status(S::Closed)),
        )
        .await
        .expect_err("bob is not the main stakeholder");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        // Ann's does.
        at_by(
            &s,
            &by_bob.name,
            local(LON, 2026, 3, 23, 12, 30),
            K::Approval(()),
            "ann",
        )
        .await
        .expect("approved");
        let t = at(
            &s,
            &by_bob.name,
            local(LON, 2026, 3, 23, 13, 0),
            status(S::Closed),
        )
        .await;
        assert_eq!(t.status, S::Closed as i32);
        // Reopened: a new cycle needs a new approval.
        at(
            &s,
            &by_bob.name,
            local(LON, 2026, 3, 23, 14, 0),
            K::Reopen(()),
        )
        .await;
        let err = record(
            &s,
            &by_bob.name,
            event(local(LON, 2026, 3, 23, 15, 0), status(S::Closed)),
        )
        .await
        .expect_err("the approval was for the previous cycle");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        at_by(
            &s,
            &by_bob.name,
            local(LON, 2026, 3, 23, 15, 30),
            K::Approval(()),
            "ann",
        )
        .await
        .expect("approved again");
        let t = at(
            &s,
            &by_bob.name,
            local(LON, 2026, 3, 23, 16, 0),
            status(S::Closed),
        )
        .await;
        assert_eq!((t.status, t.cycle), (S::Closed as i32, 1));
        // Requested by Ann, the main stakeholder: no check needed.
        let t = at(
            &s,
            &by_ann.name,
            local(LON, 2026, 3, 23, 16, 30),
            status(S::Closed),
        )
        .await;
        assert_eq!(t.status, S::Closed as i32);
        // Requested by Carol, whose role had ended before the request: not waived.
        let err = record(
            &s,
            &by_carol.name,
            event(local(LON, 2026, 3, 23, 17, 0), status(S::Closed)),
        )
        .await
        .expect_err("carol no longer holds the role");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        s.stop().await;
    }

    async fn lead_times_across_the_uk_clock_changes_count_in_the_organisations_zone(db: Db) {
        let s = TestServer::start(db, local(LON, 2026, 3, 23, 9, 0)).await;
        setup(
            &s,
            &[
                ("brand", "Europe/London", &[]),
                ("brand-ny", "America/New_York", &[]),
            ],
        )
        .await;
        let week = task(
            &s,
            "brand",
            "S4-1",
            720,
            "bob",
            local(LON, 2026, 3, 23, 9, 0),
        )
        .await;
        let week_ny = task(
            &s,
            "brand-ny",
            "S4-2",
            720,
            "bob",
            local(LON, 2026, 3, 23, 9, 0),
        )
        .await;
        let week = authorise(&s, &week.name, local(LON, 2026, 3, 23, 10, 0)).await;
        // 12 h task authorised Mon 03-23 10:00 GMT: 7 calendar days in London -> Mon 03-30
        // 10:00 BST (09:00Z: 167 real hours across the 03-29 change).
        assert_eq!(
            deadline(&week, "lead_time"),
            Some(local(LON, 2026, 3, 30, 10, 0))
        );
        let week_ny = authorise(&s, &week_ny.name, local(LON, 2026, 3, 23, 10, 0)).await;
        // The same for an organisation in New York: 10:00Z is 06:00 EDT there (US clocks
        // changed 03-08); 7 days in its zone -> Mon 03-30 06:00 EDT = 10:00Z = 11:00 BST.
        assert_eq!(
            deadline(&week_ny, "lead_time"),
            Some(local(NY, 2026, 3, 30, 6, 0))
        );
        let three = task(
            &s,
            "brand",
            "S4-3",
            300,
            "bob",
            local(LON, 2026, 3, 27, 9, 0),
        )
        .await;
        let three = authorise(&s, &three.name, local(LON, 2026, 3, 27, 10, 0)).await;
        // 5 h task authorised Fri 03-27 10:00 GMT (10:00Z): 72 real hours -> Mon 03-30
        // 10:00Z, 11:00 BST.
        assert_eq!(
            deadline(&three, "lead_time"),
            Some(local(LON, 2026, 3, 30, 11, 0))
        );
        let autumn = task(
            &s,
            "brand",
            "S4-4",
            720,
            "bob",
            local(LON, 2026, 10, 23, 8, 0),
        )
        .await;
        let autumn = authorise(&s, &autumn.name, local(LON, 2026, 10, 23, 9, 0)).await;
        // 12 h task authorised Fri 10-23 09:00 BST: 7 days -> Fri 10-30 09:00 GMT (169 real
        // hours across the 10-25 change).
        assert_eq!(
            deadline(&autumn, "lead_time"),
            Some(local(LON, 2026, 10, 30, 9, 0))
        );
        let day = task(
            &s,
            "brand",
            "S4-5",
            120,
            "bob",
            local(LON, 2026, 10, 24, 11, 0),
        )
        .await;
        let day = authorise(&s, &day.name, local(LON, 2026, 10, 24, 12, 0)).await;
        // 2 h task authorised Sat 10-24 12:00 BST (11:00Z): 24 real hours -> Sun 10-25
        // 11:00Z = 11:00 GMT.
        assert_eq!(
            deadline(&day, "lead_time"),
            Some(local(LON, 2026, 10, 25, 11, 0))
        );
        s.stop().await;
    }

    async fn requires_deliverables_pauses_the_lead_time(db: Db) {
        let s = TestServer::start(db, local(LON, 2026, 3, 16, 9, 0)).await;
        setup(&s, &[("brand", "Europe/London", &[])]).await;
        let t = task(
            &s,
            "brand",
            "S5-1",
            300,
            "bob",
            local(LON, 2026, 3, 16, 9, 0),
        )
        .await;
        let t = authorise(&s, &t.name, local(LON, 2026, 3, 16, 10, 0)).await;
        // 5 h task authorised Mon 03-16 10:00: 72 h -> Thu 03-19 10:00.
        assert_eq!(
            deadline(&t, "lead_time"),
            Some(local(LON, 2026, 3, 19, 10, 0))
        );
        at(
            &s,
            &t.name,
            local(LON, 2026, 3, 17, 10, 0),
            status(S::RequiresDeliverables),
        )
        .await;
        s.set_now(local(LON, 2026, 3, 17, 22, 0));
        let t = get(&s, &t.name).await;
        // Waiting for the customer from Tue 10:00, seen Tue 22:00: 24 h used, 48 h left ->
        // Thu 03-19 22:00 if resumed now; 12 h paused so far.
        assert_paused(
            &t,
            "lead_time",
            TimeDelta::hours(48),
            local(LON, 2026, 3, 19, 22, 0),
        );
        assert_eq!(
            span(&clock(&t, "lead_time").paused_duration),
            Some(TimeDelta::hours(12))
        );
        let t = at(
            &s,
            &t.name,
            local(LON, 2026, 3, 18, 10, 0),
            status(S::Processing),
        )
        .await;
        // Resumed Wed 10:00 after 24 h: Thu 10:00 + 24 h -> Fri 03-20 10:00.
        assert_eq!(
            deadline(&t, "lead_time"),
            Some(local(LON, 2026, 3, 20, 10, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(LON, 2026, 3, 20, 9, 30),
            status(S::SubmittedForReview),
        )
        .await;
        // Submitted Fri 09:30: met (the unpaused deadline, Thu 10:00, was missed).
        assert_eq!(state(&t, "lead_time"), CS::Met);
        s.stop().await;
    }

    async fn late_crm_events_land_in_place(db: Db) {
        let s = TestServer::start(db, local(LON, 2026, 3, 16, 9, 0)).await;
        setup(&s, &[("brand", "Europe/London", &[])]).await;
        let t = task(
            &s,
            "brand",
            "S6-1",
            300,
            "bob",
            local(LON, 2026, 3, 16, 9, 0),
        )
        .await;
        let t = authorise(&s, &t.name, local(LON, 2026, 3, 16, 10, 0)).await;
        // 5 h task authorised Mon 03-16 10:00 -> Thu 03-19 10:00.
        assert_eq!(
            deadline(&t, "lead_time"),
            Some(local(LON, 2026, 3, 19, 10, 0))
        );
        let t = at(
            &s,
            &t.name,
            local(LON, 2026, 3, 20, 12, 0),
            status(S::SubmittedForReview),
        )
        .await;
        // Submitted Fri 03-20 12:00: breached at Thu 10:00, recorded.
        assert_eq!(state(&t, "lead_time"), CS::Breached);
        assert_eq!(
            system_events(&s, &t.name, 1).await,
            vec![ev("breach:lead_time", local(LON, 2026, 3, 19, 10, 0))]
        );
        // The CRM syncs the wait for the customer from Tue 03-17 10:00: paused until the
        // submission, 24 h used of 72: met; the breach is retracted.
        let t = late(
            &s,
            &t.name,
            local(LON, 2026, 3, 17, 10, 0),
            status(S::RequiresDeliverables),
        )
        .await;
        assert_eq!(state(&t, "lead_time"), CS::Met);
        // Then the deliverables, Wed 03-18 12:00: 26 h paused, 48 h left from Wed 12:00 ->
        // Fri 03-20 12:00, exactly the submission: met (not past the deadline).
        let t = late(
            &s,
            &t.name,
            local(LON, 2026, 3, 18, 12, 0),
            status(S::Processing),
        )
        .await;
        assert_eq!(
            deadline(&t, "lead_time"),
            Some(local(LON, 2026, 3, 20, 12, 0))
        );
        assert_eq!(state(&t, "lead_time"), CS::Met);
        assert_eq!(
            system_events(&s, &t.name, 2).await,
            vec![
                ev("breach:lead_time", local(LON, 2026, 3, 19, 10, 0)),
                ev("retracted breach:lead_time", local(LON, 2026, 3, 20, 12, 0)),
            ]
        );
        // Publishing at Fri 13:00 is refused; then Ann's approval of Thu 16:00 arrives
        // (before the stored submission) and counts in this cycle: publishing succeeds.
        let err = record(
            &s,
            &t.name,
            event(local(LON, 2026, 3, 20, 13, 0), status(S::Closed)),
        )
        .await
        .expect_err("no approval yet");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        let mut approval = event(local(LON, 2026, 3, 19, 16, 0), K::Approval(()));
        approval.contact_id = "ann".into();
        record(&s, &t.name, approval).await.expect("late approval");
        let t = at(
            &s,
            &t.name,
            local(LON, 2026, 3, 20, 13, 0),
            status(S::Closed),
        )
        .await;
        assert_eq!(t.status, S::Closed as i32);
        // A second task, 5 h, authorised Mon 10:00, then re-estimated at 2 h by an event
        // of Mon 09:30 that arrives late: the clock starts on the 24 h bucket from Mon
        // 10:00 -> Tue 03-17 10:00. The Thu 10:00 breach is retracted, and one at Tue
        // 10:00 recorded.
        // (The CRM creates it now, Fri 13:00, with what happened on Monday.)
        let u = create_ticket(
            &s,
            pb::Ticket {
                estimate_minutes: 300,
                requested_by: "bob".into(),
                ..ticket("brand", "S6-2", "task", "", local(LON, 2026, 3, 16, 9, 0))
            },
        )
        .await;
        let mut go = event(local(LON, 2026, 3, 16, 10, 0), K::WorkAuthorisation(()));
        go.contact_id = "ann".into();
        let u = record(&s, &u.name, go).await.expect("late authorisation");
        // 72 h from Mon 10:00 -> Thu 03-19 10:00, already past at Fri 13:00: breached.
        assert_eq!(
            deadline(&u, "lead_time"),
            Some(local(LON, 2026, 3, 19, 10, 0))
        );
        assert_eq!(state(&u, "lead_time"), CS::Breached);
        let u = late(
            &s,
            &u.name,
            local(LON, 2026, 3, 16, 9, 30),
            K::EstimateChange(pb::EstimateChange {
                estimate_minutes: 120,
            }),
        )
        .await;
        assert_eq!(
            deadline(&u, "lead_time"),
            Some(local(LON, 2026, 3, 17, 10, 0))
        );
        assert_eq!(state(&u, "lead_time"), CS::Breached);
        assert_eq!(
            system_events(&s, &u.name, 2).await,
            vec![
                ev("breach:lead_time", local(LON, 2026, 3, 17, 10, 0)),
                ev("breach:lead_time", local(LON, 2026, 3, 19, 10, 0)),
                ev("retracted breach:lead_time", local(LON, 2026, 3, 20, 13, 0)),
            ]
        );
        s.stop().await;
    }

    crate::on_both_stores!(
        lead_time_follows_the_estimate_bucket_over_a_weekend_and_ignores_holidays,
        only_the_main_stakeholder_authorises_work_and_that_starts_the_lead_time,
        closing_needs_the_main_stakeholders_approval_unless_they_requested_the_change,
        lead_times_across_the_uk_clock_changes_count_in_the_organisations_zone,
        requires_deliverables_pauses_the_lead_time,
        late_crm_events_land_in_place,
    );
}
