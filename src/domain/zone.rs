//! A time zone's UTC offsets over the supported range, as a sorted table.
//!
//! chrono-tz answers one offset question at a time with a search of its own; the engine
//! needs thousands of local <-> UTC conversions per compile and two per query, and it needs
//! one precise rule for local times that do not exist or exist twice. So each zone is read
//! once into a table of its transitions and every conversion is a binary search here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Offset, TimeZone};
use chrono_tz::Tz;

/// Nanoseconds since the Unix epoch (UTC), or of local wall-clock time read as if it were UTC.
pub(crate) type Nanos = i64;

pub(crate) const NS_PER_SEC: i64 = 1_000_000_000;
pub(crate) const DAY_NS: i64 = 86_400 * NS_PER_SEC;

/// First supported instant: 1970-01-01T00:00:00Z.
pub(crate) const RANGE_START: Nanos = 0;
/// First instant past the supported range: 2100-01-01T00:00:00Z. chrono-tz applies DST
/// rules only through 2099.
pub(crate) const RANGE_END: Nanos = 4_102_444_800 * NS_PER_SEC;

/// The scan for transitions covers the range plus a margin wider than any UTC offset, so
/// the local days at both edges are converted exactly too.
const SCAN_START_S: i64 = -14 * 86_400;
const SCAN_END_S: i64 = 4_102_444_800 + 14 * 86_400;
/// Offsets are sampled every 6 hours; tzdb has no pair of transitions that close.
const SCAN_STEP_S: i64 = 6 * 3_600;

#[derive(Debug)]
pub(crate) struct ZoneTable {
    tz: Tz,
    /// UTC instants at which the offset changes, ascending.
    transitions: Vec<Nanos>,
    /// `offsets[i]` is in force before `transitions[i]`; the last one after the last
    /// transition. Always `transitions.len() + 1` entries.
    offsets: Vec<Nanos>,
    /// For each transition, the first local time that maps with the offset after it:
    /// `transition + max(before, after)`. Local times below it map with the offset before,
    /// which puts a skipped local time (spring forward) after the gap by the gap's length
    /// and a repeated local time (fall back) on its earlier instant.
    local_keys: Vec<Nanos>,
}

impl ZoneTable {
    /// The shared table for `tz`, built on first use.
    pub(crate) fn get(tz: Tz) -> Arc<ZoneTable> {
        static CACHE: OnceLock<Mutex<HashMap<Tz, Arc<ZoneTable>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        if let Some(table) = lock(cache).get(&tz) {
            return Arc::clone(table);
        }
        // Built outside the lock: two threads may both build it, which is harmless.
        let table = Arc::new(ZoneTable::build(tz));
        Arc::clone(lock(cache).entry(tz).or_insert(table))
    }

    fn build(tz: Tz) -> ZoneTable {
        let offset_at = |s: i64| -> i64 {
            DateTime::from_timestamp(s, 0)
                .map(|t| {
                    i64::from(
                        tz.offset_from_utc_datetime(&t.naive_utc())
                            .fix()
                            .local_minus_utc(),
                    )
                })
                .unwrap_or(0)
        };
        let mut transitions = Vec::new();
        let mut offsets = vec![offset_at(SCAN_START_S) * NS_PER_SEC];
        let mut prev_s = SCAN_START_S;
        let mut prev_off = offset_at(prev_s);
        while prev_s < SCAN_END_S {
            let next_s = prev_s + SCAN_STEP_S;
            let next_off = offset_at(next_s);
            if next_off != prev_off {
                // The change lies in (prev_s, next_s]: find its first second.
                let (mut lo, mut hi) = (prev_s, next_s);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if offset_at(mid) == prev_off {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                transitions.push(hi * NS_PER_SEC);
                offsets.push(next_off * NS_PER_SEC);
            }
            prev_s = next_s;
            prev_off = next_off;
        }
        let local_keys = transitions
            .iter()
            .enumerate()
            .map(|(i, &t)| t + offsets[i].max(offsets[i + 1]))
            .collect();
        ZoneTable {
            tz,
            transitions,
            offsets,
            local_keys,
        }
    }

    pub(crate) fn tz(&self) -> Tz {
        self.tz
    }

    /// The UTC offset in force at the UTC instant `utc`.
    pub(crate) fn offset_at(&self, utc: Nanos) -> Nanos {
        self.offsets[self.transitions.partition_point(|&t| t <= utc)]
    }

    /// The local wall-clock reading at `utc`.
    pub(crate) fn to_local(&self, utc: Nanos) -> Nanos {
        utc + self.offset_at(utc)
    }

    /// The instant a local wall-clock reading denotes: in a spring-forward gap it is moved
    /// forward by the gap's length; in a fall-back fold it is the earlier instant
    /// (RFC 5545, java.time and Temporal agree).
    pub(crate) fn to_utc(&self, local: Nanos) -> Nanos {
        local - self.offsets[self.local_keys.partition_point(|&k| k <= local)]
    }

    /// The local span each transition affects, `[t + min, t + max]`, ascending.
    pub(crate) fn transition_local_spans(&self) -> impl Iterator<Item = (Nanos, Nanos)> + '_ {
        self.transitions.iter().enumerate().map(|(i, &t)| {
            let (a, b) = (self.offsets[i], self.offsets[i + 1]);
            (t + a.min(b), t + a.max(b))
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The cache holds only finished, immutable tables; a panic elsewhere cannot leave it
    // half-written, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32) -> Nanos {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .map(|t| t.and_utc().timestamp() * NS_PER_SEC)
            .expect("valid test date")
    }

    #[test]
    fn toronto_spring_forward_gap_moves_forward_by_the_gap() {
        let z = ZoneTable::get(chrono_tz::America::Toronto);
        // 2026-03-08 02:30 local does not exist; it means 03:30 EDT = 07:30Z.
        assert_eq!(z.to_utc(utc(2026, 3, 8, 2, 30)), utc(2026, 3, 8, 7, 30));
        // 01:59 is still EST (06:59Z), 03:00 is EDT (07:00Z).
        assert_eq!(z.to_utc(utc(2026, 3, 8, 1, 59)), utc(2026, 3, 8, 6, 59));
        assert_eq!(z.to_utc(utc(2026, 3, 8, 3, 0)), utc(2026, 3, 8, 7, 0));
    }

    #[test]
    fn toronto_fall_back_fold_takes_the_earlier_instant() {
        let z = ZoneTable::get(chrono_tz::America::Toronto);
        // 2026-11-01 01:30 happens twice: 05:30Z (EDT) and 06:30Z (EST).
        assert_eq!(z.to_utc(utc(2026, 11, 1, 1, 30)), utc(2026, 11, 1, 5, 30));
        assert_eq!(z.to_utc(utc(2026, 11, 1, 2, 0)), utc(2026, 11, 1, 7, 0));
        assert_eq!(z.to_local(utc(2026, 11, 1, 6, 30)), utc(2026, 11, 1, 1, 30));
    }

    #[test]
    fn offsets_match_chrono_tz_across_the_range() {
        for tz in [
            chrono_tz::America::Toronto,
            chrono_tz::Europe::London,
            chrono_tz::Asia::Kolkata,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Pacific::Kiritimati,
        ] {
            let z = ZoneTable::get(tz);
            let mut s = 0i64;
            while s < 4_102_444_800 {
                let t = DateTime::from_timestamp(s, 0).expect("in range");
                let want = i64::from(
                    tz.offset_from_utc_datetime(&t.naive_utc())
                        .fix()
                        .local_minus_utc(),
                );
                assert_eq!(
                    z.offset_at(s * NS_PER_SEC),
                    want * NS_PER_SEC,
                    "{tz} at {t}"
                );
                s += 3 * 86_400 + 3_601;
            }
        }
    }
}
