//! Account periods: months or years counted from the contract's start date, with their
//! boundaries at local midnight in the organisation's zone.
//!
//! The period for month (or year) `n` after the anchor starts on the anchor's day of the
//! month, or on the last day of the month when the month is shorter: an account anchored
//! on 31 January has periods starting 31 Jan, 28 Feb (29 in leap years), 31 Mar, 30 Apr,
//! 31 May... Each period ends where the next one starts, so the boundary of a short month
//! falls on its last day and no day is ever skipped or counted twice.

use std::fmt;

use chrono::{
    DateTime, Datelike, LocalResult, Months, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::LedgerError;

/// How long an account period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodUnit {
    Month,
    Year,
}

/// Periods of one unit, anchored at the contract's start date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeriodRule {
    pub unit: PeriodUnit,
    pub anchor: NaiveDate,
}

/// One account period, named by the local date it starts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeriodKey {
    start: NaiveDate,
}

impl PeriodKey {
    /// The local date the period starts on.
    pub fn start(self) -> NaiveDate {
        self.start
    }
}

impl fmt::Display for PeriodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.start)
    }
}

fn last_day(year: i32, month: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = first.checked_add_months(Months::new(1))?;
    next.pred_opt().map(|d| d.day())
}

impl PeriodRule {
    /// The `n`th period after the anchor's (0 is the anchor's own; negative ones are
    /// before it).
    pub fn nth(&self, n: i64) -> Option<PeriodKey> {
        let (year, month) = match self.unit {
            PeriodUnit::Month => {
                let base = i64::from(self.anchor.year()) * 12 + i64::from(self.anchor.month0());
                let m = base.checked_add(n)?;
                (
                    i32::try_from(m.div_euclid(12)).ok()?,
                    u32::try_from(m.rem_euclid(12)).ok()? + 1,
                )
            }
            PeriodUnit::Year => (
                i32::try_from(i64::from(self.anchor.year()).checked_add(n)?).ok()?,
                self.anchor.month(),
            ),
        };
        let day = self.anchor.day().min(last_day(year, month)?);
        NaiveDate::from_ymd_opt(year, month, day).map(|start| PeriodKey { start })
    }

    /// The number of the period that contains the local date `date`.
    pub fn index_of(&self, date: NaiveDate) -> i64 {
        // The period of the date's own month (year) starts on the anchor day clamped to
        // that month; a date before that day still belongs to the previous period.
        match self.unit {
            PeriodUnit::Month => {
                let n = (i64::from(date.year()) - i64::from(self.anchor.year())) * 12
                    + i64::from(date.month0())
                    - i64::from(self.anchor.month0());
                let starts_on = last_day(date.year(), date.month())
                    .map_or(self.anchor.day(), |l| self.anchor.day().min(l));
                if date.day() < starts_on { n - 1 } else { n }
            }
            PeriodUnit::Year => {
                let n = i64::from(date.year()) - i64::from(self.anchor.year());
                let starts_on = last_day(date.year(), self.anchor.month())
                    .map_or(self.anchor.day(), |l| self.anchor.day().min(l));
                if (date.month(), date.day()) < (self.anchor.month(), starts_on) {
                    n - 1
                } else {
                    n
                }
            }
        }
    }

    /// The number of a period (0 for the anchor's).
    pub fn index(&self, key: PeriodKey) -> i64 {
        self.index_of(key.start)
    }

    /// The period that contains the local date `date`.
    pub fn period_of(&self, date: NaiveDate) -> Option<PeriodKey> {
        self.nth(self.index_of(date))
    }

    /// The period starting exactly on `date`, if one does.
    pub fn key(&self, date: NaiveDate) -> Option<PeriodKey> {
        self.period_of(date).filter(|k| k.start == date)
    }

    /// The period after `key`.
    pub fn next(&self, key: PeriodKey) -> Option<PeriodKey> {
        self.nth(self.index(key) + 1)
    }

    /// The local dates of a period: its first day, and the first day of the next one
    /// (exclusive).
    pub fn bounds(&self, key: PeriodKey) -> Option<(NaiveDate, NaiveDate)> {
        Some((key.start, self.next(key)?.start))
    }
}

/// The first instant of a local date in `zone`. When local midnight does not exist (a
/// spring-forward gap at midnight, or a whole skipped day as in Kiritimati in 1994), the
/// day starts at the first instant after the gap; when it happens twice, at the first.
pub fn start_of_day(zone: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    let midnight = date.and_time(NaiveTime::MIN);
    match zone.from_local_datetime(&midnight) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        LocalResult::None => {
            // tzdb moves clocks on whole minutes, so the first valid local minute after
            // the gap is the transition itself. No gap is longer than a day and a half.
            (1..=48 * 60).find_map(|m| {
                let local = midnight.checked_add_signed(TimeDelta::minutes(m))?;
                zone.from_local_datetime(&local)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
            })
        }
    }
}

/// Instants ledgers accept: far enough from chrono's limits that no zone offset or period
/// arithmetic can overflow.
pub(super) fn in_range(t: DateTime<Utc>) -> bool {
    let lo = NaiveDate::from_ymd_opt(1900, 1, 1).map(|d| d.and_time(NaiveTime::MIN).and_utc());
    let hi = NaiveDate::from_ymd_opt(9000, 1, 1).map(|d| d.and_time(NaiveTime::MIN).and_utc());
    matches!((lo, hi), (Some(lo), Some(hi)) if lo <= t && t < hi)
}

/// A period rule placed in a zone: the account's periods as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodClock {
    pub rule: PeriodRule,
    pub zone: Tz,
}

impl PeriodClock {
    fn out_of_range(what: impl fmt::Display) -> LedgerError {
        LedgerError::OutOfRange(what.to_string())
    }

    pub fn nth(&self, n: i64) -> Result<PeriodKey, LedgerError> {
        self.rule
            .nth(n)
            .ok_or_else(|| Self::out_of_range(format!("period {n}")))
    }

    pub fn index(&self, key: PeriodKey) -> i64 {
        self.rule.index(key)
    }

    pub fn next(&self, key: PeriodKey) -> Result<PeriodKey, LedgerError> {
        self.nth(self.index(key) + 1)
    }

    /// The first instant of a period.
    pub fn start_utc(&self, key: PeriodKey) -> Result<DateTime<Utc>, LedgerError> {
        start_of_day(self.zone, key.start).ok_or_else(|| Self::out_of_range(key))
    }

    /// The first instant after a period (the next one's first instant).
    pub fn end_utc(&self, key: PeriodKey) -> Result<DateTime<Utc>, LedgerError> {
        self.start_utc(self.next(key)?)
    }

    /// The period an instant falls in, by the organisation's local time.
    pub fn key_at(&self, t: DateTime<Utc>) -> Result<PeriodKey, LedgerError> {
        if !in_range(t) {
            return Err(Self::out_of_range(t));
        }
        let date = t.with_timezone(&self.zone).date_naive();
        let mut n = self.rule.index_of(date);
        // The local date decides, except around a fold at midnight, where an instant
        // after the boundary can still read as the previous day: the instants decide then.
        for _ in 0..4 {
            if self.start_utc(self.nth(n)?)? > t {
                n -= 1;
            } else if self.start_utc(self.nth(n + 1)?)? <= t {
                n += 1;
            } else {
                return self.nth(n);
            }
        }
        Err(Self::out_of_range(t))
    }

    /// The period starting on `date`, or an error naming the date if none does.
    pub fn key(&self, date: NaiveDate) -> Result<PeriodKey, LedgerError> {
        self.rule
            .key(date)
            .ok_or(LedgerError::NotAPeriodStart(date))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
    }

    fn monthly(anchor: NaiveDate) -> PeriodRule {
        PeriodRule {
            unit: PeriodUnit::Month,
            anchor,
        }
    }

    fn starts(rule: PeriodRule, from: i64, to: i64) -> Vec<NaiveDate> {
        (from..=to)
            .map(|n| rule.nth(n).expect("in range").start())
            .collect()
    }

    #[test]
    fn a_monthly_period_anchored_on_the_31st_ends_on_the_last_day_of_shorter_months() {
        let rule = monthly(d(2026, 1, 31));
        assert_eq!(
            starts(rule, 0, 4),
            vec![
                d(2026, 1, 31),
                d(2026, 2, 28),
                d(2026, 3, 31),
                d(2026, 4, 30),
                d(2026, 5, 31)
            ]
        );
        // 2028 is a leap year: February's boundary is the 29th.
        assert_eq!(rule.nth(25).map(|k| k.start()), Some(d(2028, 2, 29)));
        // The period starting 31 January runs to 27 February inclusive; 28 February
        // starts the next one, which runs to 30 March.
        assert_eq!(
            rule.period_of(d(2026, 2, 27)).map(|k| k.start()),
            Some(d(2026, 1, 31))
        );
        assert_eq!(
            rule.period_of(d(2026, 2, 28)).map(|k| k.start()),
            Some(d(2026, 2, 28))
        );
        assert_eq!(
            rule.period_of(d(2026, 3, 30)).map(|k| k.start()),
            Some(d(2026, 2, 28))
        );
        assert_eq!(
            rule.period_of(d(2026, 3, 31)).map(|k| k.start()),
            Some(d(2026, 3, 31))
        );
        let feb = rule.key(d(2026, 2, 28)).expect("a period start");
        assert_eq!(rule.bounds(feb), Some((d(2026, 2, 28), d(2026, 3, 31))));
        assert_eq!(rule.key(d(2026, 3, 1)), None);
    }

    #[test]
    fn anchors_on_the_29th_and_30th_clamp_the_same_way() {
        assert_eq!(
            starts(monthly(d(2026, 1, 29)), 0, 2),
            vec![d(2026, 1, 29), d(2026, 2, 28), d(2026, 3, 29)]
        );
        assert_eq!(
            starts(monthly(d(2026, 1, 30)), 0, 2),
            vec![d(2026, 1, 30), d(2026, 2, 28), d(2026, 3, 30)]
        );
        assert_eq!(
            starts(monthly(d(2027, 12, 30)), 0, 2),
            vec![d(2027, 12, 30), d(2028, 1, 30), d(2028, 2, 29)]
        );
        // Before the anchor, the same rule runs backwards.
        assert_eq!(
            starts(monthly(d(2026, 3, 31)), -1, 0),
            vec![d(2026, 2, 28), d(2026, 3, 31)]
        );
    }

    #[test]
    fn yearly_periods_anchored_on_29_february_start_on_the_28th_in_common_years() {
        let rule = PeriodRule {
            unit: PeriodUnit::Year,
            anchor: d(2024, 2, 29),
        };
        assert_eq!(
            starts(rule, 0, 4),
            vec![
                d(2024, 2, 29),
                d(2025, 2, 28),
                d(2026, 2, 28),
                d(2027, 2, 28),
                d(2028, 2, 29)
            ]
        );
        assert_eq!(rule.index_of(d(2025, 2, 27)), 0);
        assert_eq!(rule.index_of(d(2025, 2, 28)), 1);
        assert_eq!(rule.index_of(d(2024, 2, 28)), -1);
    }

    #[test]
    fn every_date_falls_in_exactly_one_period() {
        for anchor in [
            d(2026, 1, 1),
            d(2026, 1, 15),
            d(2026, 1, 29),
            d(2026, 1, 31),
        ] {
            for unit in [PeriodUnit::Month, PeriodUnit::Year] {
                let rule = PeriodRule { unit, anchor };
                let mut date = d(2024, 1, 1);
                while date < d(2029, 1, 1) {
                    let key = rule.period_of(date).expect("in range");
                    let (start, end) = rule.bounds(key).expect("in range");
                    assert!(start <= date && date < end, "{date} in {start}..{end}");
                    date = date.succ_opt().expect("in range");
                }
            }
        }
    }

    fn utc(y: i32, m: u32, day: u32, h: u32, mi: u32) -> DateTime<Utc> {
        d(y, m, day).and_hms_opt(h, mi, 0).expect("valid").and_utc()
    }

    #[test]
    fn boundaries_are_local_midnight_at_plus_14_and_minus_11() {
        let kiritimati = PeriodClock {
            rule: monthly(d(2026, 1, 1)),
            zone: chrono_tz::Pacific::Kiritimati,
        };
        let march = kiritimati.key(d(2026, 3, 1)).expect("a period start");
        // 1 March 00:00 at +14:00 is 28 February 10:00Z.
        assert_eq!(kiritimati.start_utc(march), Ok(utc(2026, 2, 28, 10, 0)));
        // 23:59 local on 28 February is 09:59Z: still February's period.
        assert_eq!(
            kiritimati
                .key_at(utc(2026, 2, 28, 9, 59))
                .map(|k| k.start()),
            Ok(d(2026, 2, 1))
        );
        assert_eq!(kiritimati.key_at(utc(2026, 2, 28, 10, 0)), Ok(march));

        let pago = PeriodClock {
            rule: monthly(d(2026, 1, 1)),
            zone: chrono_tz::Pacific::Pago_Pago,
        };
        let march = pago.key(d(2026, 3, 1)).expect("a period start");
        // 1 March 00:00 at -11:00 is 1 March 11:00Z.
        assert_eq!(pago.start_utc(march), Ok(utc(2026, 3, 1, 11, 0)));
        assert_eq!(
            pago.key_at(utc(2026, 3, 1, 10, 59)).map(|k| k.start()),
            Ok(d(2026, 2, 1))
        );
        assert_eq!(pago.key_at(utc(2026, 3, 1, 11, 0)), Ok(march));
    }

    #[test]
    fn boundaries_follow_dst() {
        // London: March is GMT at its start, April is BST at its start.
        let london = PeriodClock {
            rule: monthly(d(2026, 1, 1)),
            zone: chrono_tz::Europe::London,
        };
        let march = london.key(d(2026, 3, 1)).expect("a period start");
        assert_eq!(london.start_utc(march), Ok(utc(2026, 3, 1, 0, 0)));
        assert_eq!(london.end_utc(march), Ok(utc(2026, 3, 31, 23, 0)));
        // 23:59 BST on 31 March is 22:59Z: March. 00:00 BST on 1 April is 23:00Z.
        assert_eq!(london.key_at(utc(2026, 3, 31, 22, 59)), Ok(march));
        assert_eq!(
            london.key_at(utc(2026, 3, 31, 23, 0)).map(|k| k.start()),
            Ok(d(2026, 4, 1))
        );
        // Toronto, anchored on the 8th: the period starting on spring-forward day starts
        // at 00:00 EST (the change is at 02:00), 05:00Z; the one after at 00:00 EDT.
        let toronto = PeriodClock {
            rule: monthly(d(2026, 1, 8)),
            zone: chrono_tz::America::Toronto,
        };
        let k = toronto.key(d(2026, 3, 8)).expect("a period start");
        assert_eq!(toronto.start_utc(k), Ok(utc(2026, 3, 8, 5, 0)));
        assert_eq!(toronto.end_utc(k), Ok(utc(2026, 4, 8, 4, 0)));
    }

    #[test]
    fn a_local_midnight_inside_a_gap_starts_the_day_after_the_gap() {
        // Santiago springs forward at 24:00 on Saturday 5 September 2026: 6 September
        // 00:00 does not exist; the day starts at 01:00 -03, 04:00Z.
        assert_eq!(
            start_of_day(chrono_tz::America::Santiago, d(2026, 9, 6)),
            Some(utc(2026, 9, 6, 4, 0))
        );
        let clock = PeriodClock {
            rule: monthly(d(2026, 1, 6)),
            zone: chrono_tz::America::Santiago,
        };
        let k = clock.key(d(2026, 9, 6)).expect("a period start");
        assert_eq!(
            clock.key_at(utc(2026, 9, 6, 3, 59)).map(|k| k.start()),
            Ok(d(2026, 8, 6))
        );
        assert_eq!(clock.key_at(utc(2026, 9, 6, 4, 0)), Ok(k));
        // Kiritimati skipped 31 December 1994 entirely: that day starts when 1 January
        // 1995 does.
        assert_eq!(
            start_of_day(chrono_tz::Pacific::Kiritimati, d(1994, 12, 31)),
            start_of_day(chrono_tz::Pacific::Kiritimati, d(1995, 1, 1))
        );
    }

    #[test]
    fn santiago_fall_back_keeps_the_repeated_hour_in_the_old_period() {
        // Santiago falls back at 24:00 on Saturday 4 April 2026 to 23:00: the hour
        // 23:00-24:00 on 4 April happens twice; 5 April starts once, at 04:00Z.
        let clock = PeriodClock {
            rule: monthly(d(2026, 1, 5)),
            zone: chrono_tz::America::Santiago,
        };
        let k = clock.key(d(2026, 4, 5)).expect("a period start");
        assert_eq!(clock.start_utc(k), Ok(utc(2026, 4, 5, 4, 0)));
        assert_eq!(
            clock.key_at(utc(2026, 4, 5, 3, 30)).map(|k| k.start()),
            Ok(d(2026, 3, 5))
        );
        assert_eq!(clock.key_at(utc(2026, 4, 5, 4, 0)), Ok(k));
    }
}
