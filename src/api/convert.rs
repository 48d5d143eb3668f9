//! Requests become domain values here, once (parse, don't validate); domain values become
//! responses here. Field paths in errors are spelled as the proto spells them.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

use super::error::{AppError, AppResult, Check};
use super::pb;
use crate::app::catalog::{OrganizationField, OrganizationPatch};
use crate::domain::calendar::{CalendarSpec, Hours, Window, parse_zone};
use crate::domain::clock::{ClockState, ClockView, EndReason, NotStartedReason};
use crate::domain::limits;
use crate::domain::names::{
    CustomEventName, ExternalId, MetricName, PlanName, PriorityLabel, RequestType, ResourceId,
    RoleName, ShortText, SlotName,
};
use crate::domain::organization::{CalendarBinding, Contact, ExternalRef, Organization};
use crate::domain::policy::{
    Applicability, ApprovalGuard, BusinessDays, ClockDefinition, ClockKind, DueAction,
    DurationRule, EstimateBucket, EventSignal, MAX_DAYS, MAX_MINUTES, Policy, Target, Trigger,
};
use crate::domain::status::Status;
use crate::domain::ticket::{Actor, EventKind};
use crate::store::{NewEvent, ResourceKind, ResourceVersion, StoredEvent};

/// The longest `request_id` accepted.
pub const MAX_REQUEST_ID: usize = 128;
/// Instants outside this range are refused at the edge (the engine's range).
const FIRST_INSTANT_S: i64 = 0;
const END_INSTANT_S: i64 = 4_102_444_800;

// ---------------------------------------------------------------- scalars

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn opt_timestamp(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(timestamp)
}

pub fn duration(d: TimeDelta) -> prost_types::Duration {
    let seconds = d.num_seconds();
    let nanos = (d - TimeDelta::seconds(seconds))
        .num_nanoseconds()
        .unwrap_or(0);
    prost_types::Duration {
        seconds,
        nanos: i32::try_from(nanos).unwrap_or(0),
    }
}

/// A wire timestamp as an instant, truncated to microseconds (what both stores keep),
/// within 1970-2099.
pub fn instant(c: &mut Check, field: &str, t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        c.fail(field, "nanos must be between 0 and 999,999,999");
        return None;
    }
    if !(FIRST_INSTANT_S..END_INSTANT_S).contains(&t.seconds) {
        c.fail(
            field,
            "must be between 1970-01-01T00:00:00Z and 2099-12-31T23:59:59Z",
        );
        return None;
    }
    DateTime::from_timestamp(t.seconds, (t.nanos as u32 / 1000) * 1000).or_else(|| {
        c.fail(field, "not a valid instant");
        None
    })
}

pub fn required_instant(
    c: &mut Check,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    match t {
        Some(t) => instant(c, field, t),
        None => {
            c.fail(field, "is required");
            None
        }
    }
}

pub fn optional_instant(
    c: &mut Check,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<Option<DateTime<Utc>>> {
    match t {
        None => Some(None),
        Some(t) => instant(c, field, t).map(Some),
    }
}

/// An optimistic-concurrency precondition: 0 for none, else the version a write needs.
pub fn expected_version(c: &mut Check, field: &str, v: i32) -> Option<Option<u32>> {
    match u32::try_from(v) {
        Ok(0) => Some(None),
        Ok(v) => Some(Some(v)),
        Err(_) => {
            c.fail(field, "must not be negative (0: no check)");
            None
        }
    }
}

pub fn request_id(c: &mut Check, field: &str, id: &str) -> Option<String> {
    if id.is_empty() {
        c.fail(
            field,
            "is required: a unique key per request makes retries safe (AIP-155)",
        );
        None
    } else if id.chars().count() > MAX_REQUEST_ID {
        c.fail(field, format!("is longer than {MAX_REQUEST_ID} characters"));
        None
    } else if id.chars().any(char::is_control) {
        c.fail(field, "has control characters");
        None
    } else {
        Some(id.to_string())
    }
}

/// `collection/id` into the id.
pub fn resource_name(
    c: &mut Check,
    field: &str,
    name: &str,
    kind: ResourceKind,
) -> Option<ResourceId> {
    let prefix = kind.collection();
    match name.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
        Some(id) => c.ok(field, ResourceId::parse(id)),
        None if name.is_empty() => {
            c.fail(field, format!("is required: \"{prefix}/{{id}}\""));
            None
        }
        None => {
            c.fail(field, format!("must look like \"{prefix}/{{id}}\""));
            None
        }
    }
}

pub fn name_of(kind: ResourceKind, id: &ResourceId) -> String {
    format!("{}/{}", kind.collection(), id)
}

pub fn ticket_id(c: &mut Check, field: &str, name: &str) -> Option<String> {
    match name.strip_prefix("tickets/") {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') =>
        {
            Some(id.to_string())
        }
        _ => {
            c.fail(field, "must look like \"tickets/{id}\"");
            None
        }
    }
}

fn date(c: &mut Check, field: &str, s: &str) -> Option<NaiveDate> {
    c.ok(
        field,
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| "must be a date YYYY-MM-DD"),
    )
}

pub fn plain_date(c: &mut Check, field: &str, s: &str) -> Option<NaiveDate> {
    date(c, field, s)
}

fn zone(c: &mut Check, field: &str, s: &str) -> Option<Tz> {
    c.ok(field, parse_zone(s))
}

fn optional<T, E: std::fmt::Display>(
    c: &mut Check,
    field: &str,
    s: &str,
    p: impl Fn(&str) -> Result<T, E>,
) -> Option<Option<T>> {
    if s.is_empty() {
        Some(None)
    } else {
        c.ok(field, p(s)).map(Some)
    }
}

fn status(c: &mut Check, field: &str, v: i32) -> Option<Status> {
    match pb::TicketStatus::try_from(v) {
        Ok(pb::TicketStatus::Unspecified) => {
            c.fail(field, "is required");
            None
        }
        Ok(s) => Some(status_from_pb(s)),
        Err(_) => {
            c.fail(field, format!("unknown status value {v}"));
            None
        }
    }
}

pub fn status_from_pb(s: pb::TicketStatus) -> Status {
    match s {
        pb::TicketStatus::Unspecified | pb::TicketStatus::New => Status::New,
        pb::TicketStatus::Confirmed => Status::Confirmed,
        pb::TicketStatus::Processing => Status::Processing,
        pb::TicketStatus::RequiresDeliverables => Status::RequiresDeliverables,
        pb::TicketStatus::OutOfScope => Status::OutOfScope,
        pb::TicketStatus::Escalated => Status::Escalated,
        pb::TicketStatus::Scheduled => Status::Scheduled,
        pb::TicketStatus::SubmittedForReview => Status::SubmittedForReview,
        pb::TicketStatus::Resolved => Status::Resolved,
        pb::TicketStatus::Closed => Status::Closed,
        pb::TicketStatus::Cancelled => Status::Cancelled,
    }
}

pub fn status_to_pb(s: Status) -> pb::TicketStatus {
    match s {
        Status::New => pb::TicketStatus::New,
        Status::Confirmed => pb::TicketStatus::Confirmed,
        Status::Processing => pb::TicketStatus::Processing,
        Status::RequiresDeliverables => pb::TicketStatus::RequiresDeliverables,
        Status::OutOfScope => pb::TicketStatus::OutOfScope,
        Status::Escalated => pb::TicketStatus::Escalated,
        Status::Scheduled => pb::TicketStatus::Scheduled,
        Status::SubmittedForReview => pb::TicketStatus::SubmittedForReview,
        Status::Resolved => pb::TicketStatus::Resolved,
        Status::Closed => pb::TicketStatus::Closed,
        Status::Cancelled => pb::TicketStatus::Cancelled,
    }
}

/// Every resource's display name.
pub fn display_name(c: &mut Check, field: &str, s: &str) -> Option<ShortText> {
    c.ok(field, ShortText::parse(s))
}

/// A page size: 0 means 50, more than 1000 means 1000, negative is an error.
pub fn page_size(c: &mut Check, field: &str, n: i32) -> Option<u32> {
    match n {
        0 => Some(50),
        n if n < 0 => {
            c.fail(field, "must not be negative");
            None
        }
        n => Some(n.min(1000) as u32),
    }
}

/// `items`, or none (with a violation on `field`) when there are more than `max`:
/// nothing is parsed of an oversized list, so its size bounds the work (see
/// `domain::limits`).
pub fn limited<'a, T>(c: &mut Check, field: &str, items: &'a [T], max: usize) -> &'a [T] {
    if items.len() > max {
        c.fail(field, limits::too_many(items.len(), max));
        &[]
    } else {
        items
    }
}

// ---------------------------------------------------------------- calendars

fn windows(c: &mut Check, field: &str, ws: &[pb::OpeningWindow]) -> Option<Vec<Window>> {
    let mut out = Vec::new();
    let mut ok = ws.len() <= limits::WINDOWS_PER_DAY;
    for (i, w) in limited(c, field, ws, limits::WINDOWS_PER_DAY)
        .iter()
        .enumerate()
    {
        let f = format!("{field}[{i}]");
        let open = c.ok(format!("{f}.open"), w.open.parse());
        let close = c.ok(format!("{f}.close"), w.close.parse());
        match (open, close) {
            (Some(o), Some(cl)) => match c.ok(f, Window::new(o, cl)) {
                Some(w) => out.push(w),
                None => ok = false,
            },
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn weekly(c: &mut Check, field: &str, days: &[pb::DayHours]) -> Option<[Vec<Window>; 7]> {
    let mut week: [Vec<Window>; 7] = Default::default();
    let mut seen = [false; 7];
    let mut ok = days.len() <= limits::WEEKDAYS;
    for (i, d) in limited(c, field, days, limits::WEEKDAYS).iter().enumerate() {
        let f = format!("{field}[{i}]");
        let day = match pb::Weekday::try_from(d.day) {
            Ok(pb::Weekday::Unspecified) | Err(_) => {
                c.fail(format!("{f}.day"), "must be a weekday");
                ok = false;
                continue;
            }
            Ok(w) => (w as i32 - 1) as usize,
        };
        if std::mem::replace(&mut seen[day], true) {
            c.fail(format!("{f}.day"), "this weekday is listed twice");
            ok = false;
        }
        match windows(c, &format!("{f}.windows"), &d.windows) {
            Some(w) => week[day] = w,
            None => ok = false,
        }
    }
    ok.then_some(week)
}

pub fn calendar_definition(
    c: &mut Check,
    field: &str,
    d: Option<&pb::CalendarDefinition>,
) -> Option<CalendarSpec> {
    let Some(d) = d else {
        c.fail(field, "is required");
        return None;
    };
    let tz = zone(c, &format!("{field}.time_zone"), &d.time_zone);
    let mut holidays = Vec::new();
    let listed = limited(
        c,
        &format!("{field}.holidays"),
        &d.holidays,
        limits::HOLIDAYS,
    );
    for (i, h) in listed.iter().enumerate() {
        holidays.extend(date(c, &format!("{field}.holidays[{i}]"), h));
    }
    let mut overrides = Vec::new();
    let listed = limited(
        c,
        &format!("{field}.overrides"),
        &d.overrides,
        limits::OVERRIDES,
    );
    for (i, o) in listed.iter().enumerate() {
        let f = format!("{field}.overrides[{i}]");
        let day = date(c, &format!("{f}.date"), &o.date);
        let ws = windows(c, &format!("{f}.windows"), &o.windows);
        if let (Some(day), Some(ws)) = (day, ws) {
            overrides.push((day, ws));
        }
    }
    let hours = if d.always_open {
        if !d.weekly_hours.is_empty() {
            c.fail(
                format!("{field}.weekly_hours"),
                "must be empty when always_open is set",
            );
        }
        Some(Hours::AlwaysOpen)
    } else {
        weekly(c, &format!("{field}.weekly_hours"), &d.weekly_hours).map(Hours::Weekly)
    };
    let (tz, hours) = (tz?, hours?);
    if !c.is_clean() {
        return None;
    }
    c.ok(field, CalendarSpec::new(tz, hours, holidays, overrides))
}

fn hm(w: &Window) -> pb::OpeningWindow {
    pb::OpeningWindow {
        open: w.open().to_string(),
        close: w.close().to_string(),
    }
}

fn weekly_to_pb(days: &[Vec<Window>; 7]) -> Vec<pb::DayHours> {
    days.iter()
        .enumerate()
        .filter(|(_, ws)| !ws.is_empty())
        .map(|(i, ws)| pb::DayHours {
            day: i as i32 + 1,
            windows: ws.iter().map(hm).collect(),
        })
        .collect()
}

pub fn calendar_definition_to_pb(s: &CalendarSpec) -> pb::CalendarDefinition {
    let (always_open, weekly_hours) = match s.hours() {
        Hours::AlwaysOpen => (true, Vec::new()),
        Hours::Weekly(days) => (false, weekly_to_pb(days)),
    };
    pb::CalendarDefinition {
        time_zone: s.zone().name().to_string(),
        always_open,
        weekly_hours,
        holidays: s.holidays().iter().map(|d| d.to_string()).collect(),
        overrides: s
            .overrides()
            .iter()
            .map(|(d, ws)| pb::DateOverride {
                date: d.to_string(),
                windows: ws.iter().map(hm).collect(),
            })
            .collect(),
    }
}

pub fn calendar_to_pb(v: &ResourceVersion) -> AppResult<pb::Calendar> {
    let spec: CalendarSpec =
        serde_json::from_str(&v.body).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(pb::Calendar {
        name: name_of(ResourceKind::Calendar, &v.id),
        display_name: v.display_name.clone(),
        definition: Some(calendar_definition_to_pb(&spec)),
        version: v.version as i32,
        effective_time: Some(timestamp(v.effective_at)),
        archived: v.archived,
        create_time: Some(timestamp(v.created_at)),
        recomputation: None,
    })
}

// ---------------------------------------------------------------- organisations

fn bindings(
    c: &mut Check,
    field: &str,
    list: &[pb::CalendarBinding],
) -> Option<Vec<CalendarBinding>> {
    let before = c.count();
    let mut calendars = Vec::new();
    let bindings = limited(c, field, list, limits::BINDINGS);
    for (i, b) in bindings.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let slot = c.ok(format!("{f}.slot"), SlotName::parse(&b.slot));
        let calendar = resource_name(
            c,
            &format!("{f}.calendar"),
            &b.calendar,
            ResourceKind::Calendar,
        );
        let tz = optional(c, &format!("{f}.time_zone"), &b.time_zone, parse_zone);
        let hours = if b.weekly_hours.is_empty() {
            Some(None)
        } else {
            weekly(c, &format!("{f}.weekly_hours"), &b.weekly_hours).map(|w| Some(Hours::Weekly(w)))
        };
        let mut extra = Vec::new();
        let listed = limited(
            c,
            &format!("{f}.extra_holidays"),
            &b.extra_holidays,
            limits::HOLIDAYS,
        );
        for (k, h) in listed.iter().enumerate() {
            extra.extend(date(c, &format!("{f}.extra_holidays[{k}]"), h));
        }
        let mut overrides = BTreeMap::new();
        let listed = limited(
            c,
            &format!("{f}.overrides"),
            &b.overrides,
            limits::OVERRIDES,
        );
        for (k, o) in listed.iter().enumerate() {
            let g = format!("{f}.overrides[{k}]");
            let day = date(c, &format!("{g}.date"), &o.date);
            let ws = windows(c, &format!("{g}.windows"), &o.windows);
            let (Some(day), Some(ws)) = (day, ws) else {
                continue;
            };
            if extra.contains(&day) {
                c.fail(
                    format!("{g}.date"),
                    "is also one of extra_holidays: a date is either closed or opens with these windows",
                );
                continue;
            }
            let Some(ws) = c.ok(
                format!("{g}.windows"),
                CalendarSpec::checked_override(day, ws),
            ) else {
                continue;
            };
            match overrides.entry(day) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    c.fail(format!("{g}.date"), "two overrides for this date");
                }
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(ws);
                }
            }
        }
        if let (Some(slot), Some(calendar), Some(zone), Some(hours)) = (slot, calendar, tz, hours) {
            calendars.push(CalendarBinding {
                slot,
                calendar,
                zone,
                hours,
                extra_holidays: extra,
                overrides,
            });
        }
    }
    (c.count() == before).then_some(calendars)
}

fn external_refs(
    c: &mut Check,
    field: &str,
    list: &[pb::ExternalReference],
) -> Option<Vec<ExternalRef>> {
    let before = c.count();
    let mut external_ids = Vec::new();
    let listed = limited(c, field, list, limits::EXTERNAL_IDS);
    for (i, e) in listed.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let system = c.ok(format!("{f}.system"), ExternalId::parse(&e.system));
        let id = c.ok(format!("{f}.id"), ExternalId::parse(&e.id));
        if let (Some(system), Some(id)) = (system, id) {
            external_ids.push(ExternalRef { system, id });
        }
    }
    (c.count() == before).then_some(external_ids)
}

fn contacts(c: &mut Check, field: &str, list: &[pb::Contact]) -> Option<Vec<Contact>> {
    let before = c.count();
    let mut contacts = Vec::new();
    let listed = limited(c, field, list, limits::CONTACTS);
    for (i, ct) in listed.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let id = c.ok(format!("{f}.contact_id"), ExternalId::parse(&ct.contact_id));
        let name = display_name(c, &format!("{f}.display_name"), &ct.display_name);
        let role = optional(c, &format!("{f}.role"), &ct.role, RoleName::parse);
        let from = optional_instant(
            c,
            &format!("{f}.effective_from_time"),
            ct.effective_from_time.as_ref(),
        );
        let until = optional_instant(
            c,
            &format!("{f}.effective_until_time"),
            ct.effective_until_time.as_ref(),
        );
        if let (Some(id), Some(name), Some(role), Some(from), Some(until)) =
            (id, name, role, from, until)
        {
            contacts.push(Contact {
                id,
                name,
                role,
                effective_from: from,
                effective_until: until,
            });
        }
    }
    (c.count() == before).then_some(contacts)
}

pub fn organization(
    c: &mut Check,
    field: &str,
    o: Option<&pb::Organization>,
) -> Option<Organization> {
    let Some(o) = o else {
        c.fail(field, "is required");
        return None;
    };
    let patch = organization_patch(c, field, o, &OrganizationField::ALL);
    if !c.is_clean() {
        return None;
    }
    let org = patch.into_whole()?;
    if let Err(errors) = org.check() {
        for e in errors {
            c.fail(format!("{field}.{}", e.path), e.reason);
        }
        return None;
    }
    Some(org)
}

/// The fields of `o` an update mask names, parsed; the others are left unset.
pub fn organization_patch(
    c: &mut Check,
    field: &str,
    o: &pb::Organization,
    fields: &[OrganizationField],
) -> OrganizationPatch {
    let mut p = OrganizationPatch::default();
    for f in fields {
        match f {
            OrganizationField::DisplayName => {
                p.display_name = display_name(c, &format!("{field}.display_name"), &o.display_name)
            }
            OrganizationField::TimeZone => {
                p.zone = zone(c, &format!("{field}.time_zone"), &o.time_zone)
            }
            OrganizationField::Plan => {
                p.plan = optional(c, &format!("{field}.plan"), &o.plan, PlanName::parse)
            }
            OrganizationField::Policy => {
                p.policy = resource_name(
                    c,
                    &format!("{field}.policy"),
                    &o.policy,
                    ResourceKind::Policy,
                )
            }
            OrganizationField::Calendars => {
                p.calendars = bindings(c, &format!("{field}.calendars"), &o.calendars)
            }
            OrganizationField::ExternalIds => {
                p.external_ids = external_refs(c, &format!("{field}.external_ids"), &o.external_ids)
            }
            OrganizationField::Contacts => {
                p.contacts = contacts(c, &format!("{field}.contacts"), &o.contacts)
            }
        }
    }
    p
}

pub fn organization_to_pb(v: &ResourceVersion) -> AppResult<pb::Organization> {
    let o: Organization =
        serde_json::from_str(&v.body).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(pb::Organization {
        name: name_of(ResourceKind::Organization, &v.id),
        display_name: o.display_name.to_string(),
        time_zone: o.zone.name().to_string(),
        plan: o.plan.map(String::from).unwrap_or_default(),
        policy: name_of(ResourceKind::Policy, &o.policy),
        calendars: o
            .calendars
            .iter()
            .map(|b| pb::CalendarBinding {
                slot: b.slot.to_string(),
                calendar: name_of(ResourceKind::Calendar, &b.calendar),
                time_zone: b.zone.map(|z| z.name().to_string()).unwrap_or_default(),
                weekly_hours: match &b.hours {
                    Some(Hours::Weekly(days)) => weekly_to_pb(days),
                    _ => Vec::new(),
                },
                extra_holidays: b.extra_holidays.iter().map(|d| d.to_string()).collect(),
                overrides: b
                    .overrides
                    .iter()
                    .map(|(d, ws)| pb::DateOverride {
                        date: d.to_string(),
                        windows: ws.iter().map(hm).collect(),
                    })
                    .collect(),
            })
            .collect(),
        external_ids: o
            .external_ids
            .iter()
            .map(|e| pb::ExternalReference {
                system: e.system.to_string(),
                id: e.id.to_string(),
            })
            .collect(),
        contacts: o
            .contacts
            .iter()
            .map(|ct| pb::Contact {
                contact_id: ct.id.to_string(),
                display_name: ct.name.to_string(),
                role: ct.role.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                effective_from_time: opt_timestamp(ct.effective_from),
                effective_until_time: opt_timestamp(ct.effective_until),
            })
            .collect(),
        version: v.version as i32,
        archived: v.archived,
        create_time: Some(timestamp(v.created_at)),
        recomputation: None,
    })
}

// ---------------------------------------------------------------- policies

fn positive(c: &mut Check, field: &str, v: i32, max: u32, unit: &str) -> Option<u32> {
    match u32::try_from(v) {
        Ok(v) if (1..=max).contains(&v) => Some(v),
        _ => {
            c.fail(field, format!("must be between 1 and {max} {unit}"));
            None
        }
    }
}

fn duration_rule(
    c: &mut Check,
    field: &str,
    d: Option<&pb::Duration>,
    depth: usize,
) -> Option<DurationRule> {
    use pb::duration::Kind;
    let Some(kind) = d.and_then(|d| d.kind.as_ref()) else {
        c.fail(field, "is required: one of wall_clock, calendar_days, business_minutes, business_days, scheduled_time, next_week, by_open_hours, by_estimate");
        return None;
    };
    if depth >= 3 {
        c.fail(field, "durations nest at most 3 deep");
        return None;
    }
    let slot = |c: &mut Check, f: String, s: &str| c.ok(f, SlotName::parse(s));
    match kind {
        Kind::WallClock(w) => Some(DurationRule::WallClock {
            minutes: positive(
                c,
                &format!("{field}.wall_clock.minutes"),
                w.minutes,
                MAX_MINUTES,
                "minutes",
            )?,
        }),
        Kind::CalendarDays(w) => Some(DurationRule::CalendarDays {
            days: positive(
                c,
                &format!("{field}.calendar_days.days"),
                w.days,
                MAX_DAYS,
                "days",
            )?,
        }),
        Kind::BusinessMinutes(w) => {
            let calendar = slot(c, format!("{field}.business_minutes.calendar"), &w.calendar);
            let minutes = positive(
                c,
                &format!("{field}.business_minutes.minutes"),
                w.minutes,
                MAX_MINUTES,
                "minutes",
            );
            Some(DurationRule::BusinessMinutes {
                calendar: calendar?,
                minutes: minutes?,
            })
        }
        Kind::BusinessDays(w) => {
            let calendar = slot(c, format!("{field}.business_days.calendar"), &w.calendar);
            let days = positive(
                c,
                &format!("{field}.business_days.days"),
                w.days,
                MAX_DAYS,
                "days",
            );
            let mode = match pb::BusinessDayMode::try_from(w.mode) {
                Ok(pb::BusinessDayMode::SameTime) => Some(BusinessDays::SameTime),
                Ok(pb::BusinessDayMode::EndOfDay) => Some(BusinessDays::EndOfDay),
                _ => {
                    c.fail(
                        format!("{field}.business_days.mode"),
                        "must be SAME_TIME or END_OF_DAY",
                    );
                    None
                }
            };
            Some(DurationRule::BusinessDays {
                calendar: calendar?,
                days: days?,
                mode: mode?,
            })
        }
        Kind::ScheduledTime(_) => Some(DurationRule::ScheduledTime),
        Kind::NextWeek(w) => Some(DurationRule::NextWeek {
            calendar: slot(c, format!("{field}.next_week.calendar"), &w.calendar)?,
        }),
        Kind::ByOpenHours(w) => {
            let f = format!("{field}.by_open_hours");
            let calendar = slot(c, format!("{f}.calendar"), &w.calendar);
            let inside = duration_rule(c, &format!("{f}.inside"), w.inside.as_deref(), depth + 1);
            let outside =
                duration_rule(c, &format!("{f}.outside"), w.outside.as_deref(), depth + 1);
            Some(DurationRule::ByOpenHours {
                calendar: calendar?,
                inside: Box::new(inside?),
                outside: Box::new(outside?),
            })
        }
        Kind::ByEstimate(w) => {
            let f = format!("{field}.by_estimate.buckets");
            if w.buckets.is_empty() {
                c.fail(f.clone(), "at least one bucket is needed");
            }
            let mut buckets = Vec::new();
            let mut prev = 0;
            let listed = limited(c, &f, &w.buckets, limits::ESTIMATE_BUCKETS);
            for (i, b) in listed.iter().enumerate() {
                let up_to = positive(
                    c,
                    &format!("{f}[{i}].up_to_minutes"),
                    b.up_to_minutes,
                    MAX_MINUTES,
                    "minutes",
                );
                if let Some(u) = up_to
                    && u <= prev
                {
                    c.fail(format!("{f}[{i}].up_to_minutes"), "buckets must ascend");
                }
                prev = up_to.unwrap_or(prev);
                let d = duration_rule(
                    c,
                    &format!("{f}[{i}].duration"),
                    b.duration.as_ref(),
                    depth + 1,
                );
                if let (Some(up_to_minutes), Some(duration)) = (up_to, d) {
                    buckets.push(EstimateBucket {
                        up_to_minutes,
                        duration,
                    });
                }
            }
            (buckets.len() == w.buckets.len() && !buckets.is_empty())
                .then_some(DurationRule::ByEstimate { buckets })
        }
    }
}

fn trigger(c: &mut Check, field: &str, t: &pb::Trigger) -> Option<Trigger> {
    use pb::trigger::Kind;
    let metric = |c: &mut Check, s: &str| c.ok(field, MetricName::parse(s));
    match t.kind.as_ref() {
        None => {
            c.fail(field, "is required");
            None
        }
        Some(Kind::Received(())) => Some(Trigger::Received),
        Some(Kind::CycleStarted(())) => Some(Trigger::CycleStarted),
        Some(Kind::EnteredStatus(s)) => {
            status(c, &format!("{field}.entered_status"), *s).map(Trigger::EnteredStatus)
        }
        Some(Kind::LeftStatus(s)) => {
            status(c, &format!("{field}.left_status"), *s).map(Trigger::LeftStatus)
        }
        Some(Kind::Event(e)) => {
            let signal = match pb::EventSignal::try_from(*e) {
                Ok(pb::EventSignal::AgentResponded) => EventSignal::AgentResponded,
                Ok(pb::EventSignal::CustomerReplied) => EventSignal::CustomerReplied,
                Ok(pb::EventSignal::WorkAuthorised) => EventSignal::WorkAuthorised,
                Ok(pb::EventSignal::Approved) => EventSignal::Approved,
                Ok(pb::EventSignal::TriageCompleted) => EventSignal::TriageCompleted,
                Ok(pb::EventSignal::Reopened) => EventSignal::Reopened,
                _ => {
                    c.fail(format!("{field}.event"), "unknown or unset event signal");
                    return None;
                }
            };
            Some(Trigger::Event(signal))
        }
        Some(Kind::CustomEvent(n)) => c
            .ok(format!("{field}.custom_event"), CustomEventName::parse(n))
            .map(|n| Trigger::Event(EventSignal::Custom(n))),
        Some(Kind::TargetDue(m)) => metric(c, m).map(Trigger::TargetDue),
        Some(Kind::TargetStoppedUnresolved(m)) => {
            metric(c, m).map(Trigger::TargetStoppedUnresolved)
        }
    }
}

fn triggers(c: &mut Check, field: &str, ts: &[pb::Trigger]) -> Option<Vec<Trigger>> {
    let parsed: Vec<Option<Trigger>> = limited(c, field, ts, limits::TRIGGERS)
        .iter()
        .enumerate()
        .map(|(i, t)| trigger(c, &format!("{field}[{i}]"), t))
        .collect();
    parsed.into_iter().collect()
}

fn list<T, E: std::fmt::Display>(
    c: &mut Check,
    field: &str,
    items: &[String],
    max: usize,
    p: impl Fn(&str) -> Result<T, E>,
) -> Option<Vec<T>> {
    let parsed: Vec<Option<T>> = limited(c, field, items, max)
        .iter()
        .enumerate()
        .map(|(i, s)| c.ok(format!("{field}[{i}]"), p(s)))
        .collect();
    parsed.into_iter().collect()
}

fn target(c: &mut Check, field: &str, t: &pb::Target) -> Option<Target> {
    let applies = t.applies.clone().unwrap_or_default();
    let plans = list(
        c,
        &format!("{field}.applies.plans"),
        &applies.plans,
        limits::APPLICABILITY,
        PlanName::parse,
    );
    let priorities = list(
        c,
        &format!("{field}.applies.priorities"),
        &applies.priorities,
        limits::APPLICABILITY,
        PriorityLabel::parse,
    );
    let types = list(
        c,
        &format!("{field}.applies.request_types"),
        &applies.request_types,
        limits::APPLICABILITY,
        RequestType::parse,
    );
    let duration = duration_rule(c, &format!("{field}.duration"), t.duration.as_ref(), 0);
    let mut warnings = Vec::new();
    let listed = limited(
        c,
        &format!("{field}.warning_percentages"),
        &t.warning_percentages,
        limits::WARNINGS,
    );
    for (i, w) in listed.iter().enumerate() {
        match u8::try_from(*w) {
            Ok(p) if (1..=99).contains(&p) && warnings.last().is_none_or(|l| *l < p) => {
                warnings.push(p)
            }
            _ => c.fail(
                format!("{field}.warning_percentages[{i}]"),
                "warnings are ascending percentages between 1 and 99",
            ),
        }
    }
    let on_due = match t.on_due.as_ref().and_then(|d| d.kind.as_ref()) {
        None => Some(DueAction::None),
        Some(pb::due_action::Kind::EscalateToLevel(l)) => match u32::try_from(*l) {
            Ok(level) if level >= 1 => Some(DueAction::Escalate { level }),
            _ => {
                c.fail(
                    format!("{field}.on_due.escalate_to_level"),
                    "must be 1 or more",
                );
                None
            }
        },
        Some(pb::due_action::Kind::MoveTo(m)) => {
            let s = status(c, &format!("{field}.on_due.move_to.status"), m.status);
            let reason = c.ok(
                format!("{field}.on_due.move_to.reason"),
                ShortText::parse(&m.reason),
            );
            match (s, reason) {
                (Some(status), Some(reason)) => Some(DueAction::MoveTo { status, reason }),
                _ => None,
            }
        }
    };
    if t.source.chars().count() > 4096 {
        c.fail(format!("{field}.source"), "is longer than 4096 characters");
    }
    Some(Target {
        applies: Applicability {
            plans: plans?,
            priorities: priorities?,
            request_types: types?,
        },
        duration: duration?,
        warnings,
        on_due: on_due?,
        source: t.source.clone(),
    })
}

pub fn policy_definition(
    c: &mut Check,
    field: &str,
    d: Option<&pb::PolicyDefinition>,
) -> Option<Policy> {
    let Some(d) = d else {
        c.fail(field, "is required");
        return None;
    };
    let priorities = list(
        c,
        &format!("{field}.priorities"),
        &d.priorities,
        limits::PRIORITIES,
        PriorityLabel::parse,
    );
    let mut clocks = Vec::new();
    let listed = limited(c, &format!("{field}.clocks"), &d.clocks, limits::CLOCKS);
    for (i, cd) in listed.iter().enumerate() {
        let f = format!("{field}.clocks[{i}]");
        let metric = c.ok(format!("{f}.metric"), MetricName::parse(&cd.metric));
        let kind = match pb::ClockKind::try_from(cd.kind) {
            Ok(pb::ClockKind::Promise) => Some(ClockKind::Promise),
            Ok(pb::ClockKind::Timer) => Some(ClockKind::Timer),
            _ => {
                c.fail(format!("{f}.kind"), "must be PROMISE or TIMER");
                None
            }
        };
        let start = triggers(c, &format!("{f}.start"), &cd.start);
        let stop = triggers(c, &format!("{f}.stop"), &cd.stop);
        let cancel = triggers(c, &format!("{f}.cancel"), &cd.cancel);
        let pauses: Vec<Option<Status>> = limited(
            c,
            &format!("{f}.pause_statuses"),
            &cd.pause_statuses,
            limits::PAUSE_STATUSES,
        )
        .iter()
        .enumerate()
        .map(|(k, s)| status(c, &format!("{f}.pause_statuses[{k}]"), *s))
        .collect();
        let pauses: Option<Vec<Status>> = pauses.into_iter().collect();
        let pause_statuses = match (cd.no_pause, pauses) {
            (true, Some(p)) if !p.is_empty() => {
                c.fail(format!("{f}.no_pause"), "contradicts pause_statuses");
                None
            }
            (true, Some(_)) => Some(Vec::new()),
            (false, Some(p)) if p.is_empty() => Some(vec![Status::RequiresDeliverables]),
            (_, p) => p,
        };
        let targets: Vec<Option<Target>> =
            limited(c, &format!("{f}.targets"), &cd.targets, limits::TARGETS)
                .iter()
                .enumerate()
                .map(|(k, t)| target(c, &format!("{f}.targets[{k}]"), t))
                .collect();
        let targets: Option<Vec<Target>> = targets.into_iter().collect();
        if let (
            Some(metric),
            Some(kind),
            Some(start),
            Some(stop),
            Some(cancel),
            Some(pause_statuses),
            Some(targets),
        ) = (metric, kind, start, stop, cancel, pause_statuses, targets)
        {
            clocks.push(ClockDefinition {
                metric,
                kind,
                start,
                stop,
                cancel,
                pause_statuses,
                targets,
            });
        }
    }
    let mut guards = Vec::new();
    let listed = limited(
        c,
        &format!("{field}.approval_guards"),
        &d.approval_guards,
        limits::APPROVAL_GUARDS,
    );
    for (i, g) in listed.iter().enumerate() {
        let f = format!("{field}.approval_guards[{i}]");
        let to = status(c, &format!("{f}.to"), g.to);
        let role = c.ok(format!("{f}.role"), RoleName::parse(&g.role));
        if let (Some(to), Some(role)) = (to, role) {
            guards.push(ApprovalGuard {
                to,
                role,
                waived_when_requested_by_role: g.waived_when_requested_by_role,
            });
        }
    }
    let auth_role = optional(
        c,
        &format!("{field}.work_authorisation_role"),
        &d.work_authorisation_role,
        RoleName::parse,
    );
    if !c.is_clean() {
        return None;
    }
    let policy = Policy {
        priorities: priorities?,
        clocks,
        approval_guards: guards,
        work_authorisation_role: auth_role?,
    };
    if let Err(errors) = policy.check() {
        for e in errors {
            let path = e
                .path
                .replace(".warnings[", ".warning_percentages[")
                .replace(".on_due.status", ".on_due.move_to.status");
            c.fail(format!("{field}.{path}"), e.reason);
        }
        return None;
    }
    Some(policy)
}

fn duration_to_pb(r: &DurationRule) -> pb::Duration {
    use pb::duration::Kind;
    let kind = match r {
        DurationRule::WallClock { minutes } => Kind::WallClock(pb::WallClockDuration {
            minutes: *minutes as i32,
        }),
        DurationRule::CalendarDays { days } => {
            Kind::CalendarDays(pb::CalendarDaysDuration { days: *days as i32 })
        }
        DurationRule::BusinessMinutes { calendar, minutes } => {
            Kind::BusinessMinutes(pb::BusinessMinutesDuration {
                calendar: calendar.to_string(),
                minutes: *minutes as i32,
            })
        }
        DurationRule::BusinessDays {
            calendar,
            days,
            mode,
        } => Kind::BusinessDays(pb::BusinessDaysDuration {
            calendar: calendar.to_string(),
            days: *days as i32,
            mode: match mode {
                BusinessDays::SameTime => pb::BusinessDayMode::SameTime as i32,
                BusinessDays::EndOfDay => pb::BusinessDayMode::EndOfDay as i32,
            },
        }),
        DurationRule::ScheduledTime => Kind::ScheduledTime(pb::ScheduledTimeDuration {}),
        DurationRule::NextWeek { calendar } => Kind::NextWeek(pb::NextWeekDuration {
            calendar: calendar.to_string(),
        }),
        DurationRule::ByOpenHours {
            calendar,
            inside,
            outside,
        } => Kind::ByOpenHours(Box::new(pb::ByOpenHoursDuration {
            calendar: calendar.to_string(),
            inside: Some(Box::new(duration_to_pb(inside))),
            outside: Some(Box::new(duration_to_pb(outside))),
        })),
        DurationRule::ByEstimate { buckets } => Kind::ByEstimate(pb::ByEstimateDuration {
            buckets: buckets
                .iter()
                .map(|b| pb::EstimateBucket {
                    up_to_minutes: b.up_to_minutes as i32,
                    duration: Some(duration_to_pb(&b.duration)),
                })
                .collect(),
        }),
    };
    pb::Duration { kind: Some(kind) }
}

fn trigger_to_pb(t: &Trigger) -> pb::Trigger {
    use pb::trigger::Kind;
    let kind = match t {
        Trigger::Received => Kind::Received(()),
        Trigger::CycleStarted => Kind::CycleStarted(()),
        Trigger::EnteredStatus(s) => Kind::EnteredStatus(status_to_pb(*s) as i32),
        Trigger::LeftStatus(s) => Kind::LeftStatus(status_to_pb(*s) as i32),
        Trigger::Event(EventSignal::Custom(n)) => Kind::CustomEvent(n.to_string()),
        Trigger::Event(e) => Kind::Event(
            (match e {
                EventSignal::AgentResponded => pb::EventSignal::AgentResponded,
                EventSignal::CustomerReplied => pb::EventSignal::CustomerReplied,
                EventSignal::WorkAuthorised => pb::EventSignal::WorkAuthorised,
                EventSignal::Approved => pb::EventSignal::Approved,
                EventSignal::TriageCompleted => pb::EventSignal::TriageCompleted,
                EventSignal::Reopened | EventSignal::Custom(_) => pb::EventSignal::Reopened,
            }) as i32,
        ),
        Trigger::TargetDue(m) => Kind::TargetDue(m.to_string()),
        Trigger::TargetStoppedUnresolved(m) => Kind::TargetStoppedUnresolved(m.to_string()),
    };
    pb::Trigger { kind: Some(kind) }
}

pub fn policy_definition_to_pb(p: &Policy) -> pb::PolicyDefinition {
    pb::PolicyDefinition {
        priorities: p.priorities.iter().map(|l| l.to_string()).collect(),
        clocks: p
            .clocks
            .iter()
            .map(|cd| pb::ClockDefinition {
                metric: cd.metric.to_string(),
                kind: match cd.kind {
                    ClockKind::Promise => pb::ClockKind::Promise as i32,
                    ClockKind::Timer => pb::ClockKind::Timer as i32,
                },
                start: cd.start.iter().map(trigger_to_pb).collect(),
                stop: cd.stop.iter().map(trigger_to_pb).collect(),
                cancel: cd.cancel.iter().map(trigger_to_pb).collect(),
                pause_statuses: cd
                    .pause_statuses
                    .iter()
                    .map(|s| status_to_pb(*s) as i32)
                    .collect(),
                no_pause: cd.pause_statuses.is_empty(),
                targets: cd
                    .targets
                    .iter()
                    .map(|t| pb::Target {
                        applies: Some(pb::Applicability {
                            plans: t.applies.plans.iter().map(|p| p.to_string()).collect(),
                            priorities: t
                                .applies
                                .priorities
                                .iter()
                                .map(|p| p.to_string())
                                .collect(),
                            request_types: t
                                .applies
                                .request_types
                                .iter()
                                .map(|p| p.to_string())
                                .collect(),
                        }),
                        duration: Some(duration_to_pb(&t.duration)),
                        warning_percentages: t.warnings.iter().map(|w| i32::from(*w)).collect(),
                        on_due: Some(pb::DueAction {
                            kind: match &t.on_due {
                                DueAction::None => None,
                                DueAction::Escalate { level } => {
                                    Some(pb::due_action::Kind::EscalateToLevel(*level as i32))
                                }
                                DueAction::MoveTo { status, reason } => {
                                    Some(pb::due_action::Kind::MoveTo(pb::MoveToStatus {
                                        status: status_to_pb(*status) as i32,
                                        reason: reason.to_string(),
                                    }))
                                }
                            },
                        }),
                        source: t.source.clone(),
                    })
                    .collect(),
            })
            .collect(),
        approval_guards: p
            .approval_guards
            .iter()
            .map(|g| pb::ApprovalGuard {
                to: status_to_pb(g.to) as i32,
                role: g.role.to_string(),
                waived_when_requested_by_role: g.waived_when_requested_by_role,
            })
            .collect(),
        work_authorisation_role: p
            .work_authorisation_role
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default(),
    }
}

pub fn policy_to_pb(v: &ResourceVersion) -> AppResult<pb::Policy> {
    let p: Policy = serde_json::from_str(&v.body).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(pb::Policy {
        name: name_of(ResourceKind::Policy, &v.id),
        display_name: v.display_name.clone(),
        definition: Some(policy_definition_to_pb(&p)),
        version: v.version as i32,
        archived: v.archived,
        create_time: Some(timestamp(v.created_at)),
    })
}

// ---------------------------------------------------------------- events and tickets

pub fn event(
    c: &mut Check,
    field: &str,
    e: Option<&pb::TicketEvent>,
    client: &str,
) -> Option<NewEvent> {
    use pb::ticket_event::Kind;
    let Some(e) = e else {
        c.fail(field, "is required");
        return None;
    };
    let occurred = required_instant(
        c,
        &format!("{field}.occurred_time"),
        e.occurred_time.as_ref(),
    );
    let contact = optional(
        c,
        &format!("{field}.contact_id"),
        &e.contact_id,
        ExternalId::parse,
    );
    let rid = request_id(c, &format!("{field}.request_id"), &e.request_id);
    let kind = match e.kind.as_ref() {
        None => {
            c.fail(field, "names no event: set one of status_change, agent_response, customer_reply, priority_change, estimate_change, schedule_change, work_authorisation, approval, triage_completion, reopen, custom");
            None
        }
        Some(Kind::StatusChange(s)) => {
            let to = status(c, &format!("{field}.status_change.status"), s.status);
            let reason = optional(
                c,
                &format!("{field}.status_change.reason"),
                &s.reason,
                ShortText::parse,
            );
            match (to, reason) {
                (Some(to), Some(reason)) => Some(EventKind::StatusChanged { to, reason }),
                _ => None,
            }
        }
        Some(Kind::AgentResponse(())) => Some(EventKind::AgentResponded),
        Some(Kind::CustomerReply(())) => Some(EventKind::CustomerReplied),
        Some(Kind::PriorityChange(p)) => c
            .ok(
                format!("{field}.priority_change.priority"),
                PriorityLabel::parse(&p.priority),
            )
            .map(|to| EventKind::PriorityChanged { to }),
        Some(Kind::EstimateChange(m)) => positive(
            c,
            &format!("{field}.estimate_change.estimate_minutes"),
            m.estimate_minutes,
            MAX_MINUTES,
            "minutes",
        )
        .map(|minutes| EventKind::EstimateSet { minutes }),
        Some(Kind::ScheduleChange(s)) => required_instant(
            c,
            &format!("{field}.schedule_change.scheduled_time"),
            s.scheduled_time.as_ref(),
        )
        .map(|at| EventKind::ScheduledTimeSet { at }),
        Some(Kind::WorkAuthorisation(())) => Some(EventKind::WorkAuthorised),
        Some(Kind::Approval(())) => Some(EventKind::Approved),
        Some(Kind::TriageCompletion(())) => Some(EventKind::TriageCompleted),
        Some(Kind::Reopen(())) => Some(EventKind::Reopened),
        Some(Kind::Custom(n)) => c
            .ok(
                format!("{field}.custom.name"),
                CustomEventName::parse(&n.name),
            )
            .map(|name| EventKind::Custom { name }),
        Some(
            Kind::ClockWarning(_)
            | Kind::ClockBreach(_)
            | Kind::ActionTaken(_)
            | Kind::Retraction(_),
        ) => {
            c.fail(
                field,
                "clock warnings, breaches, actions and retractions are recorded by servicelevel only",
            );
            None
        }
    };
    Some(NewEvent {
        occurred_at: occurred?,
        kind: kind?,
        actor: Actor {
            client: client.to_string(),
            contact: contact?,
        },
        request_id: rid?,
    })
}

/// An event's kind; `occurred_at` is the due instant of system events recorded before
/// they carried one.
pub fn event_kind_to_pb(k: &EventKind, occurred_at: DateTime<Utc>) -> pb::ticket_event::Kind {
    let due = |d: &Option<DateTime<Utc>>| Some(timestamp(d.unwrap_or(occurred_at)));
    use pb::ticket_event::Kind;
    match k {
        EventKind::StatusChanged { to, reason } => Kind::StatusChange(pb::StatusChange {
            status: status_to_pb(*to) as i32,
            reason: reason.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        }),
        EventKind::AgentResponded => Kind::AgentResponse(()),
        EventKind::CustomerReplied => Kind::CustomerReply(()),
        EventKind::PriorityChanged { to } => Kind::PriorityChange(pb::PriorityChange {
            priority: to.to_string(),
        }),
        EventKind::EstimateSet { minutes } => Kind::EstimateChange(pb::EstimateChange {
            estimate_minutes: *minutes as i32,
        }),
        EventKind::ScheduledTimeSet { at } => Kind::ScheduleChange(pb::ScheduleChange {
            scheduled_time: Some(timestamp(*at)),
        }),
        EventKind::WorkAuthorised => Kind::WorkAuthorisation(()),
        EventKind::Approved => Kind::Approval(()),
        EventKind::TriageCompleted => Kind::TriageCompletion(()),
        EventKind::Reopened => Kind::Reopen(()),
        EventKind::Custom { name } => Kind::Custom(pb::CustomEvent {
            name: name.to_string(),
        }),
        EventKind::ClockWarning {
            metric,
            instance,
            level,
            due_at,
        } => Kind::ClockWarning(pb::ClockWarningEvent {
            metric: metric.to_string(),
            instance: *instance as i32,
            level: i32::from(*level),
            due_time: due(due_at),
        }),
        EventKind::ClockBreached {
            metric,
            instance,
            due_at,
        } => Kind::ClockBreach(pb::ClockBreachEvent {
            metric: metric.to_string(),
            instance: *instance as i32,
            due_time: due(due_at),
        }),
        EventKind::ActionTaken {
            metric,
            instance,
            action,
            due_at,
        } => Kind::ActionTaken(pb::ActionTakenEvent {
            metric: metric.to_string(),
            instance: *instance as i32,
            due_time: due(due_at),
            action: match action {
                DueAction::Escalate { level } => Some(
                    pb::action_taken_event::Action::EscalatedToLevel(*level as i32),
                ),
                DueAction::MoveTo { status, reason } => {
                    Some(pb::action_taken_event::Action::MovedTo(pb::StatusChange {
                        status: status_to_pb(*status) as i32,
                        reason: reason.to_string(),
                    }))
                }
                DueAction::None => None,
            },
        }),
        EventKind::Retracted { seq, reason } => Kind::Retraction(pb::RetractionEvent {
            sequence: *seq,
            reason: reason.to_string(),
        }),
    }
}

fn not_started_code(r: &NotStartedReason) -> pb::NotStartedCode {
    match r {
        NotStartedReason::NoTargetForPriority(_) => pb::NotStartedCode::NoTarget,
        NotStartedReason::NeedsQuote { .. } => pb::NotStartedCode::NeedsQuote,
        NotStartedReason::NoEstimate => pb::NotStartedCode::NoEstimate,
        NotStartedReason::NoScheduledTime => pb::NotStartedCode::NoScheduledTime,
        NotStartedReason::CalendarNotBound(_) => pb::NotStartedCode::CalendarNotBound,
        NotStartedReason::OutOfRange => pb::NotStartedCode::OutOfRange,
    }
}

pub fn event_to_pb(e: &StoredEvent) -> pb::TicketEvent {
    pb::TicketEvent {
        occurred_time: Some(timestamp(e.event.occurred_at)),
        contact_id: e
            .event
            .actor
            .contact
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        kind: Some(event_kind_to_pb(&e.event.kind, e.event.occurred_at)),
        request_id: e.event.request_id.clone(),
        sequence: e.event.seq,
        recorded_by: e.event.actor.client.clone(),
        record_time: Some(timestamp(e.recorded_at)),
    }
}

fn state_to_pb(s: ClockState) -> pb::ClockState {
    match s {
        ClockState::NotStarted => pb::ClockState::NotStarted,
        ClockState::Running => pb::ClockState::Running,
        ClockState::Paused => pb::ClockState::Paused,
        ClockState::Met => pb::ClockState::Met,
        ClockState::Breached => pb::ClockState::Breached,
        ClockState::Cancelled => pb::ClockState::Cancelled,
        ClockState::Fired => pb::ClockState::Fired,
        ClockState::Stopped => pb::ClockState::Stopped,
    }
}

pub fn kind_to_pb(k: &str) -> pb::ClockKind {
    match k {
        "timer" => pb::ClockKind::Timer,
        _ => pb::ClockKind::Promise,
    }
}

pub fn clock_to_pb(v: &ClockView, policy: &Policy) -> pb::Clock {
    let source = policy
        .clock(&v.metric)
        .and_then(|d| v.target_index.and_then(|i| d.targets.get(i)))
        .map(|t| t.source.clone())
        .unwrap_or_default();
    pb::Clock {
        metric: v.metric.to_string(),
        kind: match v.kind {
            ClockKind::Promise => pb::ClockKind::Promise as i32,
            ClockKind::Timer => pb::ClockKind::Timer as i32,
        },
        cycle: v.cycle as i32,
        instance: v.instance as i32,
        state: state_to_pb(v.state) as i32,
        active: v.active,
        paused: v.paused,
        not_started_reason: v
            .not_started
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default(),
        not_started_code: v
            .not_started
            .as_ref()
            .map_or(pb::NotStartedCode::Unspecified, not_started_code)
            as i32,
        start_time: Some(timestamp(v.started_at)),
        end_time: opt_timestamp(v.ended_at),
        end_reason: match &v.end_reason {
            None => String::new(),
            Some(EndReason::Stopped { by, .. }) => format!("stopped: {by}"),
            Some(EndReason::Cancelled { by }) => format!("cancelled: {by}"),
            Some(EndReason::Fired) => "fired".to_string(),
        },
        deadline_time: opt_timestamp(v.deadline),
        deadline_if_resumed_time: opt_timestamp(v.deadline_if_resumed),
        budget: v.budget.map(duration),
        elapsed: Some(duration(v.elapsed)),
        remaining: v.remaining.map(duration),
        paused_duration: Some(duration(v.paused_time)),
        pauses: v
            .pauses
            .iter()
            .map(|(a, b)| pb::TimeInterval {
                start_time: Some(timestamp(*a)),
                end_time: opt_timestamp(*b),
            })
            .collect(),
        warnings: v
            .warnings
            .iter()
            .map(|(p, at)| pb::ClockWarning {
                percentage: i32::from(*p),
                time: opt_timestamp(*at),
            })
            .collect(),
        warning_level: i32::from(v.warning_level),
        breach_time: opt_timestamp(v.breached_at),
        target_index: v.target_index.map_or(-1, |i| i as i32),
        source,
    }
}

/// A ticket as the API shows it.
pub fn ticket_to_pb(v: &crate::app::tickets::TicketView) -> pb::Ticket {
    let (r, state, policy, as_of) = (&v.record, &v.state, &*v.policy, v.as_of);
    let t = &r.ticket;
    let mut events: Vec<&StoredEvent> = v
        .events
        .as_ref()
        .map(|e| e.iter().collect())
        .unwrap_or_default();
    events.sort_by_key(|e| (e.event.occurred_at, e.event.seq));
    pb::Ticket {
        name: format!("tickets/{}", t.id),
        organization: name_of(ResourceKind::Organization, &t.organization),
        source_system: t.source_system.to_string(),
        external_id: t.external_id.to_string(),
        request_type: t.request_type.to_string(),
        priority: state
            .priority
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        received_time: Some(timestamp(t.received_at)),
        requested_by: t
            .requested_by
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        estimate_minutes: state.estimate_minutes.map_or(0, |m| m as i32),
        scheduled_time: opt_timestamp(state.scheduled_at),
        policy: name_of(ResourceKind::Policy, &t.policy),
        policy_version: t.policy_version as i32,
        plan: t.plan.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        status: status_to_pb(state.status) as i32,
        cycle: state.cycle as i32,
        clocks: state
            .clocks
            .iter()
            .map(|c| clock_to_pb(c, policy))
            .collect(),
        events: events.into_iter().map(event_to_pb).collect(),
        as_of_time: Some(timestamp(as_of)),
        create_time: Some(timestamp(r.created_at)),
    }
}

pub fn preview_to_pb(p: &crate::app::preview::ChangePreview) -> pb::ChangePreview {
    let clock = |c: &crate::app::preview::PreviewedClock| pb::PreviewedClock {
        ticket: format!("tickets/{}", c.ticket),
        organization: name_of(ResourceKind::Organization, &c.organization),
        metric: c.metric.clone(),
        instance: c.instance as i32,
        current_deadline_time: opt_timestamp(c.before),
        new_deadline_time: opt_timestamp(c.after),
        newly_breached: c.newly_breached,
    };
    pb::ChangePreview {
        tickets_examined: p.tickets_examined as i64,
        clocks_moved: p.clocks_moved as i64,
        max_earlier: Some(duration(p.max_earlier)),
        max_later: Some(duration(p.max_later)),
        newly_breached: p.newly_breached.iter().map(clock).collect(),
        largest_moves: p.largest_moves.iter().map(clock).collect(),
        truncated: p.truncated,
        newly_breached_count: p.newly_breached_count as i64,
    }
}
