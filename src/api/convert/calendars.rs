//! Calendars: opening hours, holidays and overrides, both ways.

use super::{date, limited, name_of, timestamp, zone};
use crate::api::error::{AppError, AppResult, Check};
use crate::api::pb;
use crate::domain::calendar::{CalendarSpec, Hours, Window};
use crate::domain::limits;
use crate::store::{ResourceKind, ResourceVersion};

pub(super) fn windows(c: &mut Check, field: &str, ws: &[pb::OpeningWindow]) -> Option<Vec<Window>> {
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

pub(super) fn weekly(
    c: &mut Check,
    field: &str,
    days: &[pb::DayHours],
) -> Option<[Vec<Window>; 7]> {
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

pub(super) fn hm(w: &Window) -> pb::OpeningWindow {
    pb::OpeningWindow {
        open: w.open().to_string(),
        close: w.close().to_string(),
    }
}

pub(super) fn weekly_to_pb(days: &[Vec<Window>; 7]) -> Vec<pb::DayHours> {
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
