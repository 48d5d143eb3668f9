//! Why a deadline is what it is: the open time a clock counted from its start to its
//! deadline (or its end), the open time its pauses took out, and the dates the calendar
//! skipped as holidays or closed days.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};

use super::business_time::{OpenInterval, TimeError};
use super::calendar::Hours;
use super::clock::{ClockCalendars, ClockView};
use super::clock_calendar::VersionedCalendar;
use super::names::SlotName;
use super::policy::DurationRule;

/// Most intervals and dates listed; a longer clock is reported truncated.
pub const MAX_LISTED: usize = 1000;

/// What a clock counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The calendar slot the clock counts open time on; `None` for real time.
    pub counted_on: Option<SlotName>,
    /// Where the explanation ends: the clock's end, else its deadline, else (paused, or no
    /// deadline yet) `as_of`.
    pub until: DateTime<Utc>,
    /// Open time counted towards the budget, in order.
    pub counted: Vec<OpenInterval>,
    /// Open time that passed while the clock was paused (not counted).
    pub paused: Vec<OpenInterval>,
    /// Dates the calendar would have opened on by its weekday but are holidays.
    pub holidays_skipped: Vec<NaiveDate>,
    /// Other dates without any opening (weekends, a closed weekday).
    pub closed_days_skipped: Vec<NaiveDate>,
    /// Whether a list was cut at [`MAX_LISTED`].
    pub truncated: bool,
}

/// The calendar slot a rule counts on; `None` for rules in real time.
pub fn counted_on(rule: &DurationRule) -> Option<&SlotName> {
    match rule {
        DurationRule::BusinessMinutes { calendar, .. }
        | DurationRule::BusinessDays { calendar, .. }
        | DurationRule::NextWeek { calendar } => Some(calendar),
        DurationRule::WallClock { .. }
        | DurationRule::CalendarDays { .. }
        | DurationRule::ScheduledTime
        | DurationRule::ByOpenHours { .. }
        | DurationRule::ByEstimate { .. } => None,
    }
}

/// Explains `view` as of `as_of`. A clock without a rule (not started) explains nothing
/// but its pauses.
pub fn explain(
    view: &ClockView,
    calendars: &ClockCalendars,
    as_of: DateTime<Utc>,
) -> Result<Explanation, TimeError> {
    let slot = view.rule.as_ref().and_then(counted_on).cloned();
    let calendar = slot.as_ref().and_then(|s| calendars.slots.get(s));
    let until = view
        .ended_at
        .or(view.deadline)
        .or(view.deadline_if_resumed)
        .unwrap_or(as_of)
        .max(view.started_at);
    let from = view.started_at;
    let open = |a: DateTime<Utc>, b: DateTime<Utc>| -> Result<Vec<OpenInterval>, TimeError> {
        match calendar {
            Some(c) => c.open_intervals(a, b),
            None if a < b => Ok(vec![OpenInterval { start: a, end: b }]),
            None => Ok(Vec::new()),
        }
    };
    // Pauses as spans within [from, until): an open pause lasts until `as_of`, and a
    // paused clock's projection resumes then.
    let pauses: Vec<(DateTime<Utc>, DateTime<Utc>)> = view
        .pauses
        .iter()
        .map(|(a, b)| ((*a).max(from), b.unwrap_or(as_of).min(until)))
        .filter(|(a, b)| a < b)
        .collect();
    let mut counted = Vec::new();
    let mut paused = Vec::new();
    if view.rule.is_some() {
        let mut cursor = from;
        for (a, b) in &pauses {
            counted.extend(open(cursor, *a)?);
            paused.extend(open(*a, *b)?);
            cursor = cursor.max(*b);
        }
        counted.extend(open(cursor, until)?);
    }
    let (holidays_skipped, closed_days_skipped, days_cut) = match calendar {
        Some(c) => skipped_days(c, from, until)?,
        None => (Vec::new(), Vec::new(), false),
    };
    let truncated = days_cut || counted.len() > MAX_LISTED || paused.len() > MAX_LISTED;
    counted.truncate(MAX_LISTED);
    paused.truncate(MAX_LISTED);
    Ok(Explanation {
        counted_on: slot,
        until,
        counted,
        paused,
        holidays_skipped,
        closed_days_skipped,
        truncated,
    })
}

/// Local dates in `[from, until]` without any opening: holidays (whose weekday has hours)
/// and other closed days. Each date is judged by the calendar version in force at its
/// start of range or later, where the version changes within the range.
fn skipped_days(
    c: &VersionedCalendar,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(Vec<NaiveDate>, Vec<NaiveDate>, bool), TimeError> {
    let first = c.at(from).local_date(from)?;
    let last = c.at(until).local_date(until)?;
    let (mut holidays, mut closed) = (Vec::new(), Vec::new());
    let mut date = first;
    let mut n = 0;
    while date <= last {
        n += 1;
        if n > MAX_LISTED * 2 {
            return Ok((holidays, closed, true));
        }
        // The version in force during the date: its noon, or the range's ends.
        let probe = local_noon(c, date).unwrap_or(from).clamp(from, until);
        let spec = c.at(probe).spec();
        if let Hours::Weekly(week) = spec.hours()
            && spec.windows_on(date).is_empty()
        {
            let weekday_open = !week[date.weekday().num_days_from_monday() as usize].is_empty();
            if spec.holidays().contains(&date) && weekday_open {
                holidays.push(date);
            } else {
                closed.push(date);
            }
        }
        match date.succ_opt() {
            Some(d) => date = d,
            None => break,
        }
    }
    let cut = holidays.len() > MAX_LISTED || closed.len() > MAX_LISTED;
    holidays.truncate(MAX_LISTED);
    closed.truncate(MAX_LISTED);
    Ok((holidays, closed, cut))
}

fn local_noon(c: &VersionedCalendar, date: NaiveDate) -> Option<DateTime<Utc>> {
    // Any version's zone serves to find the date's middle; versions rarely change zone,
    // and the result is only used to pick the version.
    let zone = c.at(DateTime::<Utc>::MIN_UTC).zone();
    date.and_hms_opt(12, 0, 0)?
        .and_local_timezone(zone)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// Total open time in intervals.
pub fn total(intervals: &[OpenInterval]) -> TimeDelta {
    intervals.iter().map(OpenInterval::duration).sum()
}
