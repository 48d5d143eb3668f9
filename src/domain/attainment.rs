//! SLA attainment: per organisation, metric, priority and period, how many promises were
//! met, breached and cancelled, the attainment rate, and the median and 90th percentile
//! of the open time they took to stop.
//!
//! A promise counts in the period it settled in, in its organisation's time zone: the
//! period it stopped or was cancelled in, or, still running past its deadline, the period
//! it breached in. The attainment rate is met / (met + breached); cancelled promises are
//! no promise kept or broken. Percentiles use the nearest rank over promises that stopped
//! (met, or breached and then stopped): a breached promise still running has no time to
//! stop yet.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;

/// The length of a report period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Month,
    Quarter,
}

impl Period {
    /// The first day of the period holding `date`.
    pub fn start_of(self, date: NaiveDate) -> NaiveDate {
        let month = match self {
            Period::Month => date.month(),
            Period::Quarter => (date.month() - 1) / 3 * 3 + 1,
        };
        NaiveDate::from_ymd_opt(date.year(), month, 1).unwrap_or(date)
    }
}

/// How a promise settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Met,
    Breached,
    Cancelled,
}

/// One settled promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub organization: String,
    pub metric: String,
    pub priority: Option<String>,
    pub outcome: Outcome,
    pub settled_at: DateTime<Utc>,
    /// Open seconds from start to stop; `None` while still running.
    pub elapsed_seconds: Option<i64>,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub organization: String,
    pub metric: String,
    pub priority: Option<String>,
    pub period_start: NaiveDate,
    pub met: u64,
    pub breached: u64,
    pub cancelled: u64,
    /// met / (met + breached); `None` when neither.
    pub attainment: Option<f64>,
    pub median_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
}

type Key = (String, String, Option<String>, NaiveDate);

/// Groups promises into report lines, in (organisation, metric, priority, period) order,
/// keeping those whose local settle date lies in `[from, to)`.
pub fn report(
    settled: impl IntoIterator<Item = Settled>,
    zone_of: impl Fn(&str) -> Tz,
    period: Period,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<Line> {
    let mut groups: BTreeMap<Key, (u64, u64, u64, Vec<i64>)> = BTreeMap::new();
    for s in settled {
        let date = s
            .settled_at
            .with_timezone(&zone_of(&s.organization))
            .date_naive();
        if date < from || date >= to {
            continue;
        }
        let key = (s.organization, s.metric, s.priority, period.start_of(date));
        let g = groups.entry(key).or_default();
        match s.outcome {
            Outcome::Met => g.0 += 1,
            Outcome::Breached => g.1 += 1,
            Outcome::Cancelled => g.2 += 1,
        }
        if s.outcome != Outcome::Cancelled
            && let Some(e) = s.elapsed_seconds
        {
            g.3.push(e);
        }
    }
    groups
        .into_iter()
        .map(
            |(
                (organization, metric, priority, period_start),
                (met, breached, cancelled, mut times),
            )| {
                times.sort_unstable();
                let kept_or_broken = met + breached;
                Line {
                    organization,
                    metric,
                    priority,
                    period_start,
                    met,
                    breached,
                    cancelled,
                    attainment: (kept_or_broken > 0).then(|| met as f64 / kept_or_broken as f64),
                    median_seconds: nearest_rank(&times, 50),
                    p90_seconds: nearest_rank(&times, 90),
                }
            },
        )
        .collect()
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `p` %
/// of the values at or below it.
pub fn nearest_rank(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1);
    sorted.get(rank as usize - 1).copied()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    fn settled(org: &str, outcome: Outcome, at: DateTime<Utc>, elapsed: Option<i64>) -> Settled {
        Settled {
            organization: org.into(),
            metric: "first_response".into(),
            priority: Some("sev-1".into()),
            outcome,
            settled_at: at,
            elapsed_seconds: elapsed,
        }
    }

    #[test]
    fn counts_rates_and_percentiles_per_period_in_local_time() {
        let ny = chrono_tz::America::New_York;
        let utc = |m, d, h| {
            Utc.with_ymd_and_hms(2026, m, d, h, 0, 0)
                .single()
                .expect("utc")
        };
        let items = vec![
            settled("acme", Outcome::Met, utc(3, 2, 15), Some(600)),
            settled("acme", Outcome::Met, utc(3, 3, 15), Some(1200)),
            settled("acme", Outcome::Breached, utc(3, 4, 15), Some(4000)),
            // Still running past its deadline: breached, no time to stop yet.
            settled("acme", Outcome::Breached, utc(3, 5, 15), None),
            settled("acme", Outcome::Cancelled, utc(3, 6, 15), Some(50)),
            // 2026-04-01 02:00 UTC is still 31 March in New York: March.
            settled("acme", Outcome::Met, utc(4, 1, 2), Some(300)),
            // 2026-04-01 05:00 UTC is 1 April 01:00 in New York: April.
            settled("acme", Outcome::Met, utc(4, 1, 5), Some(100)),
        ];
        let lines = report(
            items,
            |_| ny,
            Period::Month,
            date(2026, 1, 1),
            date(2027, 1, 1),
        );
        assert_eq!(lines.len(), 2);
        let march = &lines[0];
        assert_eq!(march.period_start, date(2026, 3, 1));
        assert_eq!((march.met, march.breached, march.cancelled), (3, 2, 1));
        assert_eq!(march.attainment, Some(3.0 / 5.0));
        // Times to stop: 300, 600, 1200, 4000 -> median (rank 2) 600, p90 (rank 4) 4000.
        assert_eq!(march.median_seconds, Some(600));
        assert_eq!(march.p90_seconds, Some(4000));
        let april = &lines[1];
        assert_eq!(april.period_start, date(2026, 4, 1));
        assert_eq!((april.met, april.breached), (1, 0));
        assert_eq!(april.attainment, Some(1.0));

        let quarters = report(
            vec![
                settled("acme", Outcome::Met, utc(2, 10, 15), Some(1)),
                settled("acme", Outcome::Met, utc(3, 10, 15), Some(2)),
                settled("acme", Outcome::Met, utc(5, 10, 15), Some(3)),
            ],
            |_| ny,
            Period::Quarter,
            date(2026, 1, 1),
            date(2026, 4, 1),
        );
        assert_eq!(quarters.len(), 1, "May is outside [Jan, Apr)");
        assert_eq!(quarters[0].period_start, date(2026, 1, 1));
        assert_eq!(quarters[0].met, 2);
    }

    #[test]
    fn only_cancelled_promises_have_no_rate() {
        let t = Utc
            .with_ymd_and_hms(2026, 3, 2, 15, 0, 0)
            .single()
            .expect("utc");
        let lines = report(
            vec![settled("acme", Outcome::Cancelled, t, Some(5))],
            |_| chrono_tz::UTC,
            Period::Month,
            date(2026, 1, 1),
            date(2027, 1, 1),
        );
        assert_eq!(lines[0].attainment, None);
        assert_eq!(lines[0].median_seconds, None);
    }

    proptest! {
        #[test]
        fn nearest_rank_is_a_member_with_enough_values_at_or_below(
            mut v in proptest::collection::vec(-1000i64..1000, 1..50),
            p in 1u32..=100,
        ) {
            v.sort_unstable();
            let x = nearest_rank(&v, p).expect("non-empty");
            prop_assert!(v.contains(&x));
            let at_or_below = v.iter().filter(|y| **y <= x).count();
            prop_assert!(at_or_below * 100 >= p as usize * v.len());
            let below = v.iter().filter(|y| **y < x).count();
            prop_assert!(below * 100 < p as usize * v.len());
        }
    }
}
