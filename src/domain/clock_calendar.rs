//! The calendar a clock counts on: real time, or a calendar whose definition changes over
//! time (versions with an effective-from instant).
//!
//! A calendar change moves the deadlines of clocks still running from its effective
//! instant on, and nothing before it: open time before the change is counted on the old
//! version, open time after it on the new one.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::business_time::{BusinessCalendar, TimeError};

/// Calendar versions in force one after the other. The first one applies to all time
/// before the second one's effective instant.
#[derive(Debug, Clone)]
pub struct VersionedCalendar {
    versions: Vec<(DateTime<Utc>, Arc<BusinessCalendar>)>,
}

impl VersionedCalendar {
    /// One version for all time.
    pub fn single(calendar: Arc<BusinessCalendar>) -> Self {
        VersionedCalendar {
            versions: vec![(DateTime::<Utc>::MIN_UTC, calendar)],
        }
    }

    /// Versions with their effective instants, in any order; the earliest applies to all
    /// time before it too. `None` when there is none.
    pub fn new(mut versions: Vec<(DateTime<Utc>, Arc<BusinessCalendar>)>) -> Option<Self> {
        versions.sort_by_key(|(t, _)| *t);
        let first = versions.first_mut()?;
        first.0 = DateTime::<Utc>::MIN_UTC;
        Some(VersionedCalendar { versions })
    }

    fn index_at(&self, t: DateTime<Utc>) -> usize {
        self.versions
            .partition_point(|(from, _)| *from <= t)
            .saturating_sub(1)
    }

    /// The version in force at `t`.
    pub fn at(&self, t: DateTime<Utc>) -> &BusinessCalendar {
        &self.versions[self.index_at(t)].1
    }

    /// Where the version in force at `t` ends, if a later one follows.
    fn end_of_version_at(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.versions
            .get(self.index_at(t) + 1)
            .map(|(from, _)| *from)
    }

    pub fn elapsed(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<TimeDelta, TimeError> {
        let mut total = TimeDelta::zero();
        let mut cursor = from;
        while cursor < to {
            let end = self.end_of_version_at(cursor).map_or(to, |e| e.min(to));
            total += self.at(cursor).elapsed(cursor, end)?;
            cursor = end;
        }
        Ok(total)
    }

    pub fn add(&self, start: DateTime<Utc>, d: TimeDelta) -> Result<DateTime<Utc>, TimeError> {
        let mut cursor = start;
        let mut left = d;
        loop {
            let cal = self.at(cursor);
            match self.end_of_version_at(cursor) {
                None => return cal.add(cursor, left),
                Some(end) => {
                    let here = cal.elapsed(cursor, end)?;
                    if here >= left {
                        return cal.add(cursor, left);
                    }
                    left -= here;
                    cursor = end;
                }
            }
        }
    }

    pub fn is_open(&self, t: DateTime<Utc>) -> Result<bool, TimeError> {
        self.at(t).is_open(t)
    }

    /// `t` if open, else the next opening, looking into later versions when the one in
    /// force has no opening left before it ends.
    pub fn next_open(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>, TimeError> {
        let mut cursor = t;
        loop {
            let found = self.at(cursor).next_open(cursor);
            match self.end_of_version_at(cursor) {
                Some(end) if found.as_ref().is_ok_and(|f| *f >= end) || found.is_err() => {
                    cursor = end
                }
                _ => return found,
            }
        }
    }

    /// The open intervals in `[from, to)` across versions.
    pub fn open_intervals(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<super::business_time::OpenInterval>, TimeError> {
        let mut out = Vec::new();
        let mut cursor = from;
        while cursor < to {
            let end = self.end_of_version_at(cursor).map_or(to, |e| e.min(to));
            out.extend(self.at(cursor).open_intervals(cursor, end)?);
            cursor = end;
        }
        Ok(out)
    }
}

/// What a clock counts: every second (wall-clock and calendar-day promises), or the open
/// time of a calendar.
#[derive(Debug, Clone)]
pub enum ClockCalendar {
    RealTime,
    Calendar(Arc<VersionedCalendar>),
}

impl ClockCalendar {
    /// The same calendar (the same versions, not merely equal ones).
    pub fn same(&self, other: &ClockCalendar) -> bool {
        match (self, other) {
            (ClockCalendar::RealTime, ClockCalendar::RealTime) => true,
            (ClockCalendar::Calendar(a), ClockCalendar::Calendar(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub fn elapsed(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<TimeDelta, TimeError> {
        match self {
            ClockCalendar::RealTime => Ok((to - from).max(TimeDelta::zero())),
            ClockCalendar::Calendar(c) => c.elapsed(from, to),
        }
    }

    pub fn add(&self, start: DateTime<Utc>, d: TimeDelta) -> Result<DateTime<Utc>, TimeError> {
        match self {
            ClockCalendar::RealTime => start.checked_add_signed(d).ok_or(TimeError::BeyondRange),
            ClockCalendar::Calendar(c) => c.add(start, d),
        }
    }

    pub fn next_open(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>, TimeError> {
        match self {
            ClockCalendar::RealTime => Ok(t),
            ClockCalendar::Calendar(c) => c.next_open(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{CalendarSpec, Hours, Window};
    use chrono::TimeZone;

    fn weekdays(close: &str) -> Arc<BusinessCalendar> {
        let day = vec![Window::parse(&format!("09:00-{close}")).expect("valid")];
        let week = std::array::from_fn(|i| if i < 5 { day.clone() } else { Vec::new() });
        let spec = CalendarSpec::new(chrono_tz::UTC, Hours::Weekly(week), [], []).expect("valid");
        Arc::new(BusinessCalendar::compile(&spec).expect("compiles"))
    }

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn a_change_counts_from_its_effective_instant_only() {
        // 09:00-17:00 until Wednesday 2026-03-11 12:00, 09:00-13:00 from then on.
        let v = VersionedCalendar::new(vec![
            (t(1, 0), weekdays("17:00")),
            (t(11, 12), weekdays("13:00")),
        ])
        .expect("versions");
        // Monday 9 09:00 to Friday 13 23:00: Mon, Tue 8 h each, Wed 3 h before noon and
        // 1 h after, Thu, Fri 4 h each = 28 h.
        assert_eq!(v.elapsed(t(9, 9), t(13, 23)), Ok(TimeDelta::hours(28)));
        // 20 h from Monday 09:00: 16 h Mon-Tue, 3 h Wed morning, then 1 h of the new
        // hours: Wednesday 13:00.
        assert_eq!(v.add(t(9, 9), TimeDelta::hours(20)), Ok(t(11, 13)));
        assert_eq!(v.add(t(9, 9), TimeDelta::hours(21)), Ok(t(12, 10)));
    }

    #[test]
    fn real_time_is_plain_arithmetic() {
        let r = ClockCalendar::RealTime;
        assert_eq!(r.add(t(1, 0), TimeDelta::hours(5)), Ok(t(1, 5)));
        assert_eq!(r.elapsed(t(1, 5), t(1, 0)), Ok(TimeDelta::zero()));
    }
}
