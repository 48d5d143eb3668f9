//! Building calendars, policies, organisations and tickets through the API.

use chrono::{DateTime, LocalResult, TimeZone, Utc};
use chrono_tz::Tz;
use servicelevel::api::pb;
use tonic::Request;

use crate::harness::{TestServer, from_ts, ts};

pub fn local(zone: Tz, y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    match zone.with_ymd_and_hms(y, m, d, h, mi, 0) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        other => panic!("{y}-{m}-{d} {h}:{mi} is not a unique local time in {zone}: {other:?}"),
    }
}

pub fn window(open: &str, close: &str) -> pb::OpeningWindow {
    pb::OpeningWindow {
        open: open.into(),
        close: close.into(),
    }
}

/// Monday to Friday with the same windows.
pub fn weekdays(zone: &str, windows: &[(&str, &str)], holidays: &[&str]) -> pb::CalendarDefinition {
    pb::CalendarDefinition {
        time_zone: zone.into(),
        always_open: false,
        weekly_hours: (1..=5)
            .map(|d| pb::DayHours {
                day: d,
                windows: windows.iter().map(|(o, c)| window(o, c)).collect(),
            })
            .collect(),
        holidays: holidays.iter().map(|h| h.to_string()).collect(),
        overrides: vec![],
    }
}

pub fn always_open(zone: &str) -> pb::CalendarDefinition {
    pb::CalendarDefinition {
        time_zone: zone.into(),
        always_open: true,
        ..Default::default()
    }
}

pub fn rid(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

pub async fn create_calendar(
    s: &TestServer,
    id: &str,
    def: pb::CalendarDefinition,
) -> pb::Calendar {
    s.calendars
        .clone()
        .create_calendar(Request::new(pb::CreateCalendarRequest {
            calendar_id: id.into(),
            calendar: Some(pb::Calendar {
                display_name: id.into(),
                definition: Some(def),
                ..Default::default()
            }),
            request_id: rid("cal"),
        }))
        .await
        .expect("calendar created")
        .into_inner()
}

pub async fn create_policy(s: &TestServer, id: &str, def: pb::PolicyDefinition) -> pb::Policy {
    s.policies
        .clone()
        .create_policy(Request::new(pb::CreatePolicyRequest {
            policy_id: id.into(),
            policy: Some(pb::Policy {
                display_name: id.into(),
                definition: Some(def),
                ..Default::default()
            }),
            request_id: rid("pol"),
        }))
        .await
        .expect("policy created")
        .into_inner()
}

pub fn binding(slot: &str, calendar: &str) -> pb::CalendarBinding {
    pb::CalendarBinding {
        slot: slot.into(),
        calendar: format!("calendars/{calendar}"),
        ..Default::default()
    }
}

pub fn contact(id: &str, role: &str) -> pb::Contact {
    pb::Contact {
        contact_id: id.into(),
        display_name: id.into(),
        role: role.into(),
        ..Default::default()
    }
}

pub fn organization(
    zone: &str,
    plan: &str,
    policy: &str,
    calendars: Vec<pb::CalendarBinding>,
    contacts: Vec<pb::Contact>,
) -> pb::Organization {
    pb::Organization {
        display_name: "Acme".into(),
        time_zone: zone.into(),
        plan: plan.into(),
        policy: format!("policies/{policy}"),
        calendars,
        contacts,
        ..Default::default()
    }
}

pub async fn create_org(s: &TestServer, id: &str, org: pb::Organization) -> pb::Organization {
    s.organizations
        .clone()
        .create_organization(Request::new(pb::CreateOrganizationRequest {
            organization_id: id.into(),
            organization: Some(org),
            request_id: rid("org"),
        }))
        .await
        .expect("organization created")
        .into_inner()
}

pub fn ticket(
    org: &str,
    external: &str,
    request_type: &str,
    priority: &str,
    received: DateTime<Utc>,
) -> pb::Ticket {
    pb::Ticket {
        organization: format!("organizations/{org}"),
        source_system: "crm".into(),
        external_id: external.into(),
        request_type: request_type.into(),
        priority: priority.into(),
        received_time: ts(received),
        ..Default::default()
    }
}

/// Moves the server's clock up to `t` if it is behind: nothing can be reported before it
/// happens (the server refuses instants ahead of its clock).
pub fn reach(s: &TestServer, t: &Option<prost_types::Timestamp>) {
    use servicelevel::time::Clock as _;
    if let Some(t) = from_ts(t)
        && t > s.clock.now()
    {
        s.set_now(t);
    }
}

pub async fn create_ticket(s: &TestServer, t: pb::Ticket) -> pb::Ticket {
    reach(s, &t.received_time);
    s.tickets
        .clone()
        .create_ticket(Request::new(pb::CreateTicketRequest {
            ticket: Some(t),
            request_id: rid("tkt"),
        }))
        .await
        .expect("ticket created")
        .into_inner()
}

pub fn status(s: pb::TicketStatus) -> pb::ticket_event::Kind {
    pb::ticket_event::Kind::StatusChange(pb::StatusChange {
        status: s as i32,
        reason: String::new(),
    })
}

pub fn event(at: DateTime<Utc>, kind: pb::ticket_event::Kind) -> pb::TicketEvent {
    pb::TicketEvent {
        occurred_time: ts(at),
        kind: Some(kind),
        request_id: rid("ev"),
        ..Default::default()
    }
}

pub async fn record(
    s: &TestServer,
    ticket: &str,
    e: pb::TicketEvent,
) -> Result<pb::Ticket, tonic::Status> {
    reach(s, &e.occurred_time);
    s.tickets
        .clone()
        .record_event(Request::new(pb::RecordEventRequest {
            ticket: ticket.into(),
            event: Some(e),
        }))
        .await
        .map(|r| r.into_inner())
}

pub async fn get(s: &TestServer, ticket: &str) -> pb::Ticket {
    s.tickets
        .clone()
        .get_ticket(Request::new(pb::GetTicketRequest {
            name: ticket.into(),
            view: pb::TicketView::Full as i32,
        }))
        .await
        .expect("ticket found")
        .into_inner()
}

/// The latest clock of a metric.
pub fn clock<'a>(t: &'a pb::Ticket, metric: &str) -> &'a pb::Clock {
    t.clocks
        .iter()
        .rev()
        .find(|c| c.metric == metric)
        .unwrap_or_else(|| {
            panic!(
                "ticket has no clock {metric}: {:?}",
                t.clocks.iter().map(|c| &c.metric).collect::<Vec<_>>()
            )
        })
}

pub fn deadline(t: &pb::Ticket, metric: &str) -> Option<DateTime<Utc>> {
    from_ts(&clock(t, metric).deadline_time)
}

pub fn state(t: &pb::Ticket, metric: &str) -> pb::ClockState {
    pb::ClockState::try_from(clock(t, metric).state).unwrap_or(pb::ClockState::Unspecified)
}

// ---------------------------------------------------------------- policy pieces

pub fn on_received() -> pb::Trigger {
    pb::Trigger {
        kind: Some(pb::trigger::Kind::Received(())),
    }
}

pub fn on_cycle() -> pb::Trigger {
    pb::Trigger {
        kind: Some(pb::trigger::Kind::CycleStarted(())),
    }
}

pub fn entered(s: pb::TicketStatus) -> pb::Trigger {
    pb::Trigger {
        kind: Some(pb::trigger::Kind::EnteredStatus(s as i32)),
    }
}

pub fn left(s: pb::TicketStatus) -> pb::Trigger {
    pb::Trigger {
        kind: Some(pb::trigger::Kind::LeftStatus(s as i32)),
    }
}

pub fn on_event(e: pb::EventSignal) -> pb::Trigger {
    pb::Trigger {
        kind: Some(pb::trigger::Kind::Event(e as i32)),
    }
}

pub fn on_custom(name: &str) -> pb::Trigger {
    pb::Trigger {
        kind: Some(pb::trigger::Kind::CustomEvent(name.into())),
    }
}

pub fn on_due(metric: &str) -> pb::Trigger {
    pb::Trigger {
        kind: Some(pb::trigger::Kind::TargetDue(metric.into())),
    }
}

pub fn on_stopped_unresolved(metric: &str) -> pb::Trigger {
    pb::Trigger {
        kind: Some(pb::trigger::Kind::TargetStoppedUnresolved(metric.into())),
    }
}

pub fn wall(minutes: i32) -> pb::Duration {
    pb::Duration {
        kind: Some(pb::duration::Kind::WallClock(pb::WallClockDuration {
            minutes,
        })),
    }
}

pub fn calendar_days(days: i32) -> pb::Duration {
    pb::Duration {
        kind: Some(pb::duration::Kind::CalendarDays(pb::CalendarDaysDuration {
            days,
        })),
    }
}

pub fn business_minutes(calendar: &str, minutes: i32) -> pb::Duration {
    pb::Duration {
        kind: Some(pb::duration::Kind::BusinessMinutes(
            pb::BusinessMinutesDuration {
                calendar: calendar.into(),
                minutes,
            },
        )),
    }
}

pub fn business_days(calendar: &str, days: i32, mode: pb::BusinessDayMode) -> pb::Duration {
    pb::Duration {
        kind: Some(pb::duration::Kind::BusinessDays(pb::BusinessDaysDuration {
            calendar: calendar.into(),
            days,
            mode: mode as i32,
        })),
    }
}

pub fn scheduled() -> pb::Duration {
    pb::Duration {
        kind: Some(pb::duration::Kind::ScheduledTime(
            pb::ScheduledTimeDuration {},
        )),
    }
}

pub fn next_week(calendar: &str) -> pb::Duration {
    pb::Duration {
        kind: Some(pb::duration::Kind::NextWeek(pb::NextWeekDuration {
            calendar: calendar.into(),
        })),
    }
}

pub fn by_open_hours(calendar: &str, inside: pb::Duration, outside: pb::Duration) -> pb::Duration {
    pb::Duration {
        kind: Some(pb::duration::Kind::ByOpenHours(Box::new(
            pb::ByOpenHoursDuration {
                calendar: calendar.into(),
                inside: Some(Box::new(inside)),
                outside: Some(Box::new(outside)),
            },
        ))),
    }
}

pub fn by_estimate(buckets: &[(i32, pb::Duration)]) -> pb::Duration {
    pb::Duration {
        kind: Some(pb::duration::Kind::ByEstimate(pb::ByEstimateDuration {
            buckets: buckets
                .iter()
                .map(|(up_to_minutes, d)| pb::EstimateBucket {
                    up_to_minutes: *up_to_minutes,
                    duration: Some(d.clone()),
                })
                .collect(),
        })),
    }
}

pub fn target(
    plans: &[&str],
    priorities: &[&str],
    types: &[&str],
    duration: pb::Duration,
) -> pb::Target {
    pb::Target {
        applies: Some(pb::Applicability {
            plans: plans.iter().map(|s| s.to_string()).collect(),
            priorities: priorities.iter().map(|s| s.to_string()).collect(),
            request_types: types.iter().map(|s| s.to_string()).collect(),
        }),
        duration: Some(duration),
        ..Default::default()
    }
}

/// A first response due an hour (wall time) after the ticket is received.
pub fn first_response_within_an_hour() -> pb::ClockDefinition {
    promise(
        "first_response",
        vec![on_received()],
        vec![],
        vec![target(&[], &[], &[], wall(60))],
    )
}

pub fn promise(
    metric: &str,
    start: Vec<pb::Trigger>,
    stop: Vec<pb::Trigger>,
    targets: Vec<pb::Target>,
) -> pb::ClockDefinition {
    pb::ClockDefinition {
        metric: metric.into(),
        kind: pb::ClockKind::Promise as i32,
        start,
        stop,
        targets,
        ..Default::default()
    }
}

/// Imports a pack built into the server.
pub async fn import_pack(s: &TestServer, name: &str) -> pb::ImportPackResponse {
    servicelevel::api::pb::pack_service_client::PackServiceClient::new(
        crate::harness::connect(s.addr).await,
    )
    .import_pack(Request::new(pb::ImportPackRequest {
        source: Some(pb::import_pack_request::Source::EmbeddedPack(name.into())),
        request_id: rid("pack"),
        ..Default::default()
    }))
    .await
    .unwrap_or_else(|e| panic!("pack {name} imports: {e}"))
    .into_inner()
}

/// A small deterministic generator (xorshift), so a failing run can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
