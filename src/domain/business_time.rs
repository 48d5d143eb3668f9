//! Business-time arithmetic on a compiled calendar, in time that does not grow with the
//! duration.
//!
//! # How it is computed
//!
//! Local time is cut into weeks starting Monday 00:00. An *ordinary* week repeats the
//! weekly windows under one UTC offset, so its open time and its business days are known
//! from the pattern alone. A week with a holiday, a dated override or a UTC offset change
//! is *exceptional*: its open intervals are converted to UTC one by one when the calendar is
//! compiled (about 2 per year for DST, plus one per holiday week).
//!
//! Every measure the engine needs (open nanoseconds, business days) is then a running
//! total over weeks: `weeks * per_ordinary_week + corrections`, where the corrections only
//! change at exceptional weeks. Both directions are binary searches over the exceptional
//! weeks plus a division:
//!
//! - the *position* of an instant is the open time from 1970 up to it;
//! - a deadline is the earliest instant whose position reaches `position(start) + d`.
//!
//! So `add` of one hour and of 10,500 hours cost the same.

use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

use super::calendar::{CalendarError, CalendarSpec, Hours, MAX_WINDOWS_PER_DAY};
use super::zone::{DAY_NS, NS_PER_SEC, Nanos, RANGE_END, RANGE_START, ZoneTable};

const WEEK_NS: Nanos = 7 * DAY_NS;
/// Local time of the grid's first day, Monday 1969-12-29 00:00 (three days before the epoch).
const GRID_START: Nanos = -3 * DAY_NS;
/// Weeks in the grid: through the week of Friday 2100-01-01, so every instant of the
/// supported range falls in it whatever the zone's offset.
const GRID_WEEKS: i64 = 6_784;

/// Why a business-time question has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("{0} is outside the supported range 1970-01-01T00:00:00Z to 2100-01-01T00:00:00Z")]
    OutOfRange(DateTime<Utc>),
    #[error("the answer lies at or after 2100-01-01T00:00:00Z, beyond the supported range")]
    BeyondRange,
    #[error("durations must not be negative")]
    NegativeDuration,
    #[error("a business-day count must be at least 1")]
    ZeroBusinessDays,
}

/// How `add_business_days` picks the instant on the target day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BusinessDayMode {
    /// The same local wall time as the clock's effective start.
    SameTime,
    /// The last close of the target day.
    EndOfDay,
}

/// A stretch of open time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenInterval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl OpenInterval {
    pub fn duration(&self) -> TimeDelta {
        self.end - self.start
    }
}

/// An open interval with the open time before it: within the week for the ordinary-week
/// pattern (local offsets from Monday 00:00), from the grid start for exceptional weeks
/// (UTC instants).
#[derive(Debug, Clone, Copy)]
struct Iv {
    start: Nanos,
    end: Nanos,
    cum: Nanos,
}

impl Iv {
    fn cum_end(&self) -> Nanos {
        self.cum + (self.end - self.start)
    }
}

#[derive(Debug)]
struct OrdinaryWeek {
    ivs: Vec<Iv>,
    /// `ivs[day_iv[d]..day_iv[d + 1]]` are weekday `d`'s (Monday = 0).
    day_iv: [usize; 8],
    open: Nanos,
    business_days: i64,
    /// Business days before weekday `d`.
    bd_prefix: [i64; 8],
}

#[derive(Debug)]
struct ExceptionalWeek {
    week: i64,
    /// `exc_ivs[day_iv[d]..day_iv[d + 1]]` are the UTC intervals of weekday `d`.
    day_iv: [usize; 8],
    open_before: Nanos,
    open: Nanos,
    bd_before: i64,
    business_days: i64,
    /// Bit `d` set when weekday `d` has open time.
    bd_flags: u8,
}

#[derive(Debug, Clone, Copy)]
enum Measure {
    Open,
    BusinessDays,
}

impl ExceptionalWeek {
    fn before(&self, m: Measure) -> i64 {
        match m {
            Measure::Open => self.open_before,
            Measure::BusinessDays => self.bd_before,
        }
    }

    fn total(&self, m: Measure) -> i64 {
        match m {
            Measure::Open => self.open,
            Measure::BusinessDays => self.business_days,
        }
    }
}

impl OrdinaryWeek {
    fn total(&self, m: Measure) -> i64 {
        match m {
            Measure::Open => self.open,
            Measure::BusinessDays => self.business_days,
        }
    }
}

/// Where a running total reaches a target.
enum Located {
    Exceptional(usize),
    /// An ordinary week and the total at its start.
    Ordinary {
        week: i64,
        base: i64,
    },
}

/// A compiled calendar: immutable, cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct BusinessCalendar {
    spec: CalendarSpec,
    zone: Arc<ZoneTable>,
    always_open: bool,
    ordinary: OrdinaryWeek,
    exceptional: Vec<ExceptionalWeek>,
    exc_ivs: Vec<Iv>,
}

fn to_nanos(t: DateTime<Utc>) -> Result<Nanos, TimeError> {
    match t.timestamp_nanos_opt() {
        Some(n) if (RANGE_START..RANGE_END).contains(&n) => Ok(n),
        _ => Err(TimeError::OutOfRange(t)),
    }
}

fn to_instant(n: Nanos) -> Result<DateTime<Utc>, TimeError> {
    if n < RANGE_END {
        Ok(DateTime::from_timestamp_nanos(n))
    } else {
        Err(TimeError::BeyondRange)
    }
}

fn day_local_start(day: i64) -> Nanos {
    GRID_START + day * DAY_NS
}

fn grid_date(day: i64) -> NaiveDate {
    let first = NaiveDate::from_ymd_opt(1969, 12, 29).unwrap_or(NaiveDate::MIN);
    u64::try_from(day)
        .ok()
        .and_then(|d| first.checked_add_days(Days::new(d)))
        .unwrap_or(first)
}

fn grid_day_of_date(date: NaiveDate) -> i64 {
    let first = NaiveDate::from_ymd_opt(1969, 12, 29).unwrap_or(NaiveDate::MIN);
    (date - first).num_days()
}

/// The open intervals of one day, at most [`MAX_WINDOWS_PER_DAY`].
#[derive(Debug, Clone, Copy)]
struct DayIvs {
    buf: [(Nanos, Nanos); MAX_WINDOWS_PER_DAY],
    len: usize,
}

impl DayIvs {
    fn as_slice(&self) -> &[(Nanos, Nanos)] {
        &self.buf[..self.len]
    }
}

impl BusinessCalendar {
    /// Compiles `spec` into tables. Takes a few milliseconds the first time a zone is used
    /// (its offsets are read once and shared), well under one after.
    pub fn compile(spec: &CalendarSpec) -> Result<Self, CalendarError> {
        let zone = ZoneTable::get(spec.zone());
        let ordinary = ordinary_week(spec);

        let mut weeks: Vec<i64> = spec
            .exception_dates()
            .map(|d| grid_day_of_date(d).div_euclid(7))
            .collect();
        for (lo, hi) in zone.transition_local_spans() {
            let first = (lo - GRID_START).div_euclid(WEEK_NS).max(0);
            let last = (hi - GRID_START).div_euclid(WEEK_NS).min(GRID_WEEKS - 1);
            weeks.extend(first..=last);
        }
        weeks.retain(|w| (0..GRID_WEEKS).contains(w));
        weeks.sort_unstable();
        weeks.dedup();

        let mut exceptional: Vec<ExceptionalWeek> = Vec::with_capacity(weeks.len());
        let mut exc_ivs: Vec<Iv> = Vec::new();
        let mut prev_end = Nanos::MIN;
        for week in weeks {
            let (open_before, bd_before) = match exceptional.last() {
                None => (week * ordinary.open, week * ordinary.business_days),
                Some(p) => {
                    let gap = week - p.week - 1;
                    (
                        p.open_before + p.open + gap * ordinary.open,
                        p.bd_before + p.business_days + gap * ordinary.business_days,
                    )
                }
            };
            let mut day_iv = [0usize; 8];
            let mut running = open_before;
            let mut bd_flags = 0u8;
            for (d, first_iv) in day_iv.iter_mut().take(7).enumerate() {
                *first_iv = exc_ivs.len();
                let day = week * 7 + d as i64;
                for (open, close) in resolved_day(spec, &zone, day).as_slice() {
                    // Time an earlier day already owns (a window closing inside a DST gap
                    // at midnight) is not counted twice.
                    let start = (*open).max(prev_end);
                    if *close > start {
                        exc_ivs.push(Iv {
                            start,
                            end: *close,
                            cum: running,
                        });
                        running += close - start;
                        prev_end = *close;
                    }
                }
                if exc_ivs.len() > *first_iv {
                    bd_flags |= 1 << d;
                }
            }
            day_iv[7] = exc_ivs.len();
            exceptional.push(ExceptionalWeek {
                week,
                day_iv,
                open_before,
                open: running - open_before,
                bd_before,
                business_days: i64::from(bd_flags.count_ones()),
                bd_flags,
            });
        }

        let calendar = BusinessCalendar {
            spec: spec.clone(),
            zone,
            always_open: matches!(spec.hours(), Hours::AlwaysOpen),
            ordinary,
            exceptional,
            exc_ivs,
        };
        if calendar.total_at_week(GRID_WEEKS, Measure::Open) == 0 {
            return Err(CalendarError::NeverOpen);
        }
        Ok(calendar)
    }

    /// The definition this calendar was compiled from.
    pub fn spec(&self) -> &CalendarSpec {
        &self.spec
    }

    pub fn zone(&self) -> Tz {
        self.zone.tz()
    }

    /// The local date of an instant in the calendar's zone.
    pub fn local_date(&self, t: DateTime<Utc>) -> Result<NaiveDate, TimeError> {
        let n = to_nanos(t)?;
        Ok(grid_date(self.grid_day(n)))
    }

    /// The deadline after `d` of open time from `start`: the earliest instant at which `d`
    /// of open time has elapsed. `add(t, 0) == t`; a start outside open time counts from the
    /// next opening; a deadline that uses a window up lands on that window's close.
    pub fn add(&self, start: DateTime<Utc>, d: TimeDelta) -> Result<DateTime<Utc>, TimeError> {
        let s = to_nanos(start)?;
        let d = d.num_nanoseconds().ok_or(TimeError::BeyondRange)?;
        if d < 0 {
            return Err(TimeError::NegativeDuration);
        }
        if d == 0 {
            return Ok(start);
        }
        if self.always_open {
            return to_instant(s.checked_add(d).ok_or(TimeError::BeyondRange)?);
        }
        let (pos, _) = self.position(s);
        let target = pos.checked_add(d).ok_or(TimeError::BeyondRange)?;
        let (iv_start, iv_cum) = self.locate_open(target)?;
        to_instant(iv_start + (target - iv_cum))
    }

    /// Open time in `[from, to)`; zero when `to <= from`.
    pub fn elapsed(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<TimeDelta, TimeError> {
        let (a, b) = (to_nanos(from)?, to_nanos(to)?);
        if b <= a {
            return Ok(TimeDelta::zero());
        }
        let open = if self.always_open {
            b - a
        } else {
            self.position(b).0 - self.position(a).0
        };
        Ok(TimeDelta::nanoseconds(open))
    }

    /// Whether `t` is open time.
    pub fn is_open(&self, t: DateTime<Utc>) -> Result<bool, TimeError> {
        let n = to_nanos(t)?;
        Ok(self.always_open || self.position(n).1)
    }

    /// `t` if it is open, else the next opening after it.
    pub fn next_open(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>, TimeError> {
        to_instant(self.next_open_nanos(to_nanos(t)?)?)
    }

    /// The `n`-th business day after the clock's effective start, `n >= 1`.
    ///
    /// The effective start `s'` is `start` if open, else the next opening; `D` is the local
    /// date of `s'` and the target `T` is the `n`-th business day (a date with open time)
    /// after `D`. `EndOfDay` is the last close of `T`. `SameTime` is the instant on `T` at
    /// the wall time of `s'` when `T` is open then; otherwise the last close of `T` at or
    /// before that time, or `T`'s first opening if none.
    pub fn add_business_days(
        &self,
        start: DateTime<Utc>,
        n: u32,
        mode: BusinessDayMode,
    ) -> Result<DateTime<Utc>, TimeError> {
        if n == 0 {
            return Err(TimeError::ZeroBusinessDays);
        }
        let effective = self.next_open_nanos(to_nanos(start)?)?;
        let local = self.zone.to_local(effective);
        let day = (local - GRID_START).div_euclid(DAY_NS);
        let time_of_day = local - day_local_start(day);
        let k = self.business_days_through(day) + i64::from(n);
        let target_day = self.kth_business_day(k)?;
        let ivs = self.day_intervals(target_day);
        let ivs = ivs.as_slice();
        let (first, last) = match (ivs.first(), ivs.last()) {
            (Some(f), Some(l)) => (*f, *l),
            // A business day has open time by definition; reaching this means the tables
            // are inconsistent, which is reported rather than answered wrongly.
            _ => return Err(TimeError::BeyondRange),
        };
        let answer = match mode {
            BusinessDayMode::EndOfDay => last.1,
            BusinessDayMode::SameTime => {
                let x = self.zone.to_utc(day_local_start(target_day) + time_of_day);
                if ivs.iter().any(|&(a, b)| a <= x && x < b) {
                    x
                } else {
                    ivs.iter()
                        .rev()
                        .map(|&(_, b)| b)
                        .find(|&b| b <= x)
                        .unwrap_or(first.0)
                }
            }
        };
        to_instant(answer)
    }

    /// The same local wall time `n` local dates later (a "7 days" promise that is not
    /// counted in business days). A wall time that does not exist on the target date is
    /// moved forward by the DST gap; one that exists twice is its earlier instant.
    pub fn add_calendar_days(
        &self,
        start: DateTime<Utc>,
        n: u32,
    ) -> Result<DateTime<Utc>, TimeError> {
        let s = to_nanos(start)?;
        if n == 0 {
            return Ok(start);
        }
        let local = self.zone.to_local(s);
        let later = i64::from(n)
            .checked_mul(DAY_NS)
            .and_then(|d| local.checked_add(d))
            .ok_or(TimeError::BeyondRange)?;
        to_instant(self.zone.to_utc(later))
    }

    /// The open intervals in `[from, to)`, clipped to it, in order.
    pub fn open_intervals(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<OpenIntervals<'_>, TimeError> {
        let (a, b) = (to_nanos(from)?, to_nanos(to)?);
        Ok(OpenIntervals {
            calendar: self,
            from: a,
            to: b,
            day: self.grid_day(a),
            last_day: self.grid_day(b.max(a)),
            current: None,
            index: 0,
            pending: None,
        })
    }

    /// The first opening of the first business day on or after `date` (Contently's
    /// "the following week": the first opening of the next week's first business day).
    pub fn first_opening_on_or_after(&self, date: NaiveDate) -> Result<DateTime<Utc>, TimeError> {
        let day = grid_day_of_date(date);
        if !(0..GRID_WEEKS * 7).contains(&day) {
            return Err(TimeError::BeyondRange);
        }
        let k = self.business_days_through(day - 1) + 1;
        let target = self.kth_business_day(k)?;
        let ivs = self.day_intervals(target);
        match ivs.as_slice().first() {
            Some(&(start, _)) => to_instant(start),
            None => Err(TimeError::BeyondRange),
        }
    }

    fn grid_day(&self, utc: Nanos) -> i64 {
        (self.zone.to_local(utc) - GRID_START).div_euclid(DAY_NS)
    }

    fn next_open_nanos(&self, t: Nanos) -> Result<Nanos, TimeError> {
        if self.always_open {
            return Ok(t);
        }
        match self.position(t) {
            (_, true) => Ok(t),
            (pos, false) => self.locate_open(pos + 1).map(|(start, _)| start),
        }
    }

    /// The index of the last exceptional week at or before `week`, if any.
    fn exceptional_at_or_before(&self, week: i64) -> Option<usize> {
        self.exceptional
            .partition_point(|e| e.week <= week)
            .checked_sub(1)
    }

    /// The running total of `m` at the start of `week`.
    fn total_at_week(&self, week: i64, m: Measure) -> i64 {
        self.total_from(self.exceptional_at_or_before(week), week, m)
    }

    /// [`Self::total_at_week`] given the last exceptional week at or before `week`.
    fn total_from(&self, last_exceptional: Option<usize>, week: i64, m: Measure) -> i64 {
        match last_exceptional {
            None => week * self.ordinary.total(m),
            Some(i) => {
                let e = &self.exceptional[i];
                if e.week == week {
                    e.before(m)
                } else {
                    e.before(m) + e.total(m) + (week - e.week - 1) * self.ordinary.total(m)
                }
            }
        }
    }

    /// The week in which the running total of `m` reaches `target` (>= 1).
    fn locate(&self, target: i64, m: Measure) -> Result<Located, TimeError> {
        let i = self.exceptional.partition_point(|e| e.before(m) < target);
        let (base_week, base) = match i.checked_sub(1).map(|j| (j, &self.exceptional[j])) {
            None => (0, 0),
            Some((j, e)) => {
                if target <= e.before(m) + e.total(m) {
                    return Ok(Located::Exceptional(j));
                }
                (e.week + 1, e.before(m) + e.total(m))
            }
        };
        let per_week = self.ordinary.total(m);
        if per_week == 0 {
            return Err(TimeError::BeyondRange);
        }
        let full_weeks = (target - base - 1) / per_week;
        let week = base_week + full_weeks;
        if week >= GRID_WEEKS {
            return Err(TimeError::BeyondRange);
        }
        Ok(Located::Ordinary {
            week,
            base: base + full_weeks * per_week,
        })
    }

    /// The UTC instant of Monday 00:00 of an ordinary week (one offset all week).
    fn ordinary_week_utc(&self, week: i64) -> Nanos {
        self.zone.to_utc(GRID_START + week * WEEK_NS)
    }

    /// Open time from the grid start to `t`, and whether `t` is open.
    fn position(&self, t: Nanos) -> (Nanos, bool) {
        let local = self.zone.to_local(t);
        let week = (local - GRID_START).div_euclid(WEEK_NS);
        let last_exceptional = self.exceptional_at_or_before(week);
        match last_exceptional {
            Some(i) if self.exceptional[i].week == week => {
                let e = &self.exceptional[i];
                let ivs = &self.exc_ivs[e.day_iv[0]..e.day_iv[7]];
                match ivs.partition_point(|iv| iv.start <= t).checked_sub(1) {
                    None => (e.open_before, false),
                    Some(k) => {
                        let iv = ivs[k];
                        (iv.cum + (t.min(iv.end) - iv.start), t < iv.end)
                    }
                }
            }
            _ => {
                let base = self.total_from(last_exceptional, week, Measure::Open);
                let s = local - (GRID_START + week * WEEK_NS);
                let ivs = &self.ordinary.ivs;
                match ivs.partition_point(|iv| iv.start <= s).checked_sub(1) {
                    None => (base, false),
                    Some(k) => {
                        let iv = ivs[k];
                        (base + iv.cum + (s.min(iv.end) - iv.start), s < iv.end)
                    }
                }
            }
        }
    }

    /// The open interval in which the running open time reaches `target` (>= 1): its UTC
    /// start and the open time before it.
    fn locate_open(&self, target: Nanos) -> Result<(Nanos, Nanos), TimeError> {
        match self.locate(target, Measure::Open)? {
            Located::Exceptional(i) => {
                let e = &self.exceptional[i];
                let ivs = &self.exc_ivs[e.day_iv[0]..e.day_iv[7]];
                let k = ivs.partition_point(|iv| iv.cum_end() < target);
                let iv = ivs.get(k).ok_or(TimeError::BeyondRange)?;
                Ok((iv.start, iv.cum))
            }
            Located::Ordinary { week, base } => {
                let r = target - base;
                let ivs = &self.ordinary.ivs;
                let k = ivs.partition_point(|iv| iv.cum_end() < r);
                let iv = ivs.get(k).ok_or(TimeError::BeyondRange)?;
                Ok((self.ordinary_week_utc(week) + iv.start, base + iv.cum))
            }
        }
    }

    /// Business days up to and including grid day `day`.
    fn business_days_through(&self, day: i64) -> i64 {
        let week = day.div_euclid(7);
        let weekday = day.rem_euclid(7) as usize;
        let last_exceptional = self.exceptional_at_or_before(week);
        let base = self.total_from(last_exceptional, week, Measure::BusinessDays);
        match last_exceptional {
            Some(i) if self.exceptional[i].week == week => {
                let mask = (1u16 << (weekday + 1)) - 1;
                base + i64::from((u16::from(self.exceptional[i].bd_flags) & mask).count_ones())
            }
            _ => base + self.ordinary.bd_prefix[weekday + 1],
        }
    }

    /// The grid day that is the `k`-th business day (k >= 1).
    fn kth_business_day(&self, k: i64) -> Result<i64, TimeError> {
        match self.locate(k, Measure::BusinessDays)? {
            Located::Exceptional(i) => {
                let e = &self.exceptional[i];
                let mut remaining = k - e.bd_before;
                for d in 0..7 {
                    if e.bd_flags & (1 << d) != 0 {
                        remaining -= 1;
                        if remaining == 0 {
                            return Ok(e.week * 7 + d);
                        }
                    }
                }
                Err(TimeError::BeyondRange)
            }
            Located::Ordinary { week, base } => {
                let r = k - base;
                let d = self.ordinary.bd_prefix[1..].partition_point(|&p| p < r);
                Ok(week * 7 + d as i64)
            }
        }
    }

    /// A grid day's open intervals in UTC.
    fn day_intervals(&self, day: i64) -> DayIvs {
        let mut out = DayIvs {
            buf: [(0, 0); MAX_WINDOWS_PER_DAY],
            len: 0,
        };
        let week = day.div_euclid(7);
        let weekday = day.rem_euclid(7) as usize;
        let mut push = |a: Nanos, b: Nanos| {
            if out.len < MAX_WINDOWS_PER_DAY {
                out.buf[out.len] = (a, b);
                out.len += 1;
            }
        };
        match self.exceptional_at_or_before(week) {
            Some(i) if self.exceptional[i].week == week => {
                let e = &self.exceptional[i];
                for iv in &self.exc_ivs[e.day_iv[weekday]..e.day_iv[weekday + 1]] {
                    push(iv.start, iv.end);
                }
            }
            _ => {
                let origin = self.ordinary_week_utc(week);
                let o = &self.ordinary;
                for iv in &o.ivs[o.day_iv[weekday]..o.day_iv[weekday + 1]] {
                    push(origin + iv.start, origin + iv.end);
                }
            }
        }
        out
    }
}

/// A grid day's windows as real intervals, sorted and merged: open time is the union of the
/// windows. Each end is converted on its own, so around a DST gap windows can shrink,
/// vanish or overlap in real time.
fn resolved_day(spec: &CalendarSpec, zone: &ZoneTable, day: i64) -> DayIvs {
    let local_midnight = day_local_start(day);
    let at = |w: super::calendar::WallClock| {
        zone.to_utc(local_midnight + i64::from(w.seconds()) * NS_PER_SEC)
    };
    let mut raw: Vec<(Nanos, Nanos)> = spec
        .windows_on(grid_date(day))
        .iter()
        .map(|w| (at(w.open()), at(w.close())))
        .filter(|(a, b)| b > a)
        .collect();
    raw.sort_unstable();
    let mut out = DayIvs {
        buf: [(0, 0); MAX_WINDOWS_PER_DAY],
        len: 0,
    };
    for (a, b) in raw {
        match out.len.checked_sub(1).map(|i| &mut out.buf[i]) {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => {
                out.buf[out.len] = (a, b);
                out.len += 1;
            }
        }
    }
    out
}

fn ordinary_week(spec: &CalendarSpec) -> OrdinaryWeek {
    let mut ivs = Vec::new();
    let mut day_iv = [0usize; 8];
    let mut bd_prefix = [0i64; 8];
    let mut cum = 0;
    for d in 0..7 {
        day_iv[d] = ivs.len();
        let midnight = d as i64 * DAY_NS;
        for w in spec.weekly_windows(d) {
            let start = midnight + i64::from(w.open().seconds()) * NS_PER_SEC;
            let end = midnight + i64::from(w.close().seconds()) * NS_PER_SEC;
            ivs.push(Iv { start, end, cum });
            cum += end - start;
        }
        bd_prefix[d + 1] = bd_prefix[d] + i64::from(ivs.len() > day_iv[d]);
    }
    day_iv[7] = ivs.len();
    OrdinaryWeek {
        ivs,
        day_iv,
        open: cum,
        business_days: bd_prefix[7],
        bd_prefix,
    }
}

/// The open intervals between two instants; see [`BusinessCalendar::open_intervals`].
#[derive(Debug)]
pub struct OpenIntervals<'a> {
    calendar: &'a BusinessCalendar,
    from: Nanos,
    to: Nanos,
    day: i64,
    last_day: i64,
    current: Option<DayIvs>,
    index: usize,
    pending: Option<(Nanos, Nanos)>,
}

impl OpenIntervals<'_> {
    /// The next interval of the calendar's days, clipped, unmerged.
    fn next_piece(&mut self) -> Option<(Nanos, Nanos)> {
        loop {
            let ivs = match self.current {
                Some(ivs) => ivs,
                None => {
                    if self.day > self.last_day || self.from >= self.to {
                        return None;
                    }
                    let ivs = self.calendar.day_intervals(self.day);
                    self.current = Some(ivs);
                    self.index = 0;
                    ivs
                }
            };
            match ivs.as_slice().get(self.index) {
                None => {
                    self.current = None;
                    self.day += 1;
                }
                Some(&(a, b)) => {
                    self.index += 1;
                    let (a, b) = (a.max(self.from), b.min(self.to));
                    if a < b {
                        return Some((a, b));
                    }
                }
            }
        }
    }
}

impl Iterator for OpenIntervals<'_> {
    type Item = OpenInterval;

    /// Intervals that touch (a window closing at 24:00 and the next day's opening at 00:00)
    /// come out as one.
    fn next(&mut self) -> Option<OpenInterval> {
        let (start, mut end) = self.pending.take().or_else(|| self.next_piece())?;
        loop {
            match self.next_piece() {
                Some((a, b)) if a == end => end = b,
                other => {
                    self.pending = other;
                    break;
                }
            }
        }
        Some(OpenInterval {
            start: DateTime::from_timestamp_nanos(start),
            end: DateTime::from_timestamp_nanos(end),
        })
    }
}

#[cfg(test)]
#[path = "business_time_tests.rs"]
mod tests;
