//! The fold's indexes against what they replace: after random usages, bookings, captures,
//! releases, reversals and closes, a frequency cap's count from the index must equal a
//! pass over every entry and booking (the way `decide` used to count), the open holds must
//! be the holds whose status is open, the fold of the same entries from scratch must be the
//! same state, and a copy of the ledger kept aside must not move.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::account::{HoldStatus, State};
use super::tests::{bill, bucket, d, gbp, id, kind, plan, text};
use super::*;

const REVIEW: &str = "review";

/// The count as a pass over the whole fold.
fn scan(
    s: &State,
    kind: &ActivityKind,
    f: Frequency,
    service_at: DateTime<Utc>,
    except: Option<&ExternalId>,
) -> Result<u32, LedgerError> {
    let w = s.window(f, service_at)?;
    let mut n = 0u32;
    for r in s.records.values() {
        if r.reversed_by.is_none()
            && r.activity.as_ref() == Some(kind)
            && r.usage.as_ref().is_some_and(|u| u.non_deducted_minutes > 0)
            && let Some(t) = r.service_at
            && s.window(f, t)? == w
        {
            n += 1;
        }
    }
    for (id, h) in s.holds.iter() {
        if h.status == HoldStatus::Open
            && Some(id) != except
            && h.activity.as_ref() == Some(kind)
            && h.free > 0
            && s.window(f, h.service_at)? == w
        {
            n += 1;
        }
    }
    Ok(n)
}

const FREQUENCIES: [Frequency; 4] = [
    Frequency::PerIsoWeek,
    Frequency::PerMonth,
    Frequency::PerCalendarQuarter,
    Frequency::PerPeriod,
];

fn check_indexes(s: &State, extra: &[DateTime<Utc>]) {
    let mut instants: Vec<DateTime<Utc>> = extra.to_vec();
    instants.extend(s.records.values().filter_map(|r| r.service_at));
    instants.extend(s.holds.values().map(|h| h.service_at));
    let mut excepts: Vec<Option<&ExternalId>> = vec![None];
    excepts.extend(s.holds.keys().map(Some));
    for k in [kind(REVIEW), kind("other")] {
        for f in FREQUENCIES {
            for &t in &instants {
                for &except in &excepts {
                    assert_eq!(
                        s.occurrences(&k, f, t, except),
                        scan(s, &k, f, t, except),
                        "{k} {f:?} at {t} except {except:?}"
                    );
                }
            }
        }
    }
    let open: Vec<(PeriodKey, u64, ExternalId)> = s
        .open_holds
        .iter()
        .map(|((p, seq), id)| (*p, *seq, id.clone()))
        .collect();
    let mut want: Vec<(PeriodKey, u64, ExternalId)> = s
        .holds
        .iter()
        .filter(|(_, h)| h.status == HoldStatus::Open)
        .map(|(id, h)| (h.period, h.seq, id.clone()))
        .collect();
    want.sort();
    assert_eq!(open, want, "the open holds");
}

#[derive(Debug, Clone)]
enum Step {
    Advance(i64),
    Use {
        minutes: u32,
        back: i64,
        review: bool,
    },
    Hold {
        slot: u8,
        minutes: u32,
        ahead: i64,
        review: bool,
    },
    Capture {
        slot: u8,
        minutes: u32,
    },
    Release {
        slot: u8,
    },
    Reverse(u64),
    Close,
    /// Keep a copy of the ledger aside, so its maps' bases are shared.
    Fork,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1i64..=24 * 12).prop_map(Step::Advance),
        6 => (1u32..=90, 0i64..=60 * 24 * 20, any::<bool>())
            .prop_map(|(minutes, back, review)| Step::Use { minutes, back, review }),
        3 => (0u8..4, 1u32..=90, -60 * 24 * 3..=60 * 24 * 20i64, any::<bool>())
            .prop_map(|(slot, minutes, ahead, review)| Step::Hold { slot, minutes, ahead, review }),
        2 => (0u8..4, 1u32..=90).prop_map(|(slot, minutes)| Step::Capture { slot, minutes }),
        1 => (0u8..4).prop_map(|slot| Step::Release { slot }),
        2 => any::<u64>().prop_map(Step::Reverse),
        1 => Just(Step::Close),
        1 => Just(Step::Fork),
    ]
}

fn contract(zone: Tz, f: Frequency, max: u32) -> Contract {
    let mut terms = BucketTerms::new(bucket("hours"), PeriodUnit::Month, 240);
    terms.rounding_increment_minutes = 15;
    terms.overage = bill(6_000, gbp());
    terms.grace_hours = 24;
    terms.free_activities = vec![FreeActivity {
        kind: kind(REVIEW),
        per_occurrence_cap_minutes: 30,
        frequency: f,
        max_per_frequency: max,
    }];
    let start = d(2026, 1, 15);
    let v = TermsVersion::from_date(zone, start, plan("p", vec![terms])).expect("in range");
    Contract {
        zone,
        start,
        terms: TermsHistory::new(vec![v]).expect("valid terms"),
    }
}

fn command(s: &Step, now: DateTime<Utc>, next_seq: u64) -> Option<Command> {
    let review = |r: bool| r.then(|| kind(REVIEW));
    let hold = |slot: u8| id(&format!("h{slot}"));
    Some(match *s {
        Step::Use {
            minutes,
            back,
            review: r,
        } => Command::RecordUsage(Usage {
            minutes,
            activity: review(r),
            service_at: now - TimeDelta::minutes(back),
            ticket: None,
            actor: id("agent"),
            reason: None,
        }),
        Step::Hold {
            slot,
            minutes,
            ahead,
            review: r,
        } => Command::Hold {
            hold: hold(slot),
            minutes,
            service_at: now + TimeDelta::minutes(ahead),
            activity: review(r),
            ticket: None,
            actor: id("agent"),
        },
        Step::Capture { slot, minutes } => Command::Capture {
            hold: hold(slot),
            minutes,
            actor: id("agent"),
        },
        Step::Release { slot } => Command::Release {
            hold: hold(slot),
            actor: id("agent"),
            reason: None,
        },
        Step::Reverse(n) => Command::Reverse {
            entry: n % next_seq + 1,
            reason: text("a mistake"),
            actor: id("agent"),
        },
        Step::Close => Command::ClosePeriods,
        Step::Advance(_) | Step::Fork => return None,
    })
}

fn zones() -> impl Strategy<Value = Tz> {
    prop_oneof![
        Just(chrono_tz::Europe::London),
        Just(chrono_tz::Australia::Lord_Howe),
        Just(chrono_tz::Pacific::Kiritimati),
        Just(chrono_tz::America::Sao_Paulo),
    ]
}

fn frequencies() -> impl Strategy<Value = Frequency> {
    prop_oneof![
        Just(Frequency::PerIsoWeek),
        Just(Frequency::PerMonth),
        Just(Frequency::PerCalendarQuarter),
        Just(Frequency::PerPeriod),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_indexes_count_what_a_pass_over_the_fold_counts(
        zone in zones(),
        f in frequencies(),
        max in 1u32..=2,
        steps in proptest::collection::vec(step(), 1..70),
    ) {
        let contract = contract(zone, f, max);
        let mut ledger = Ledger::new(&contract, bucket("hours"), Vec::new()).expect("bucket");
        let mut now = DateTime::parse_from_rfc3339("2026-01-20T09:00:00Z")
            .expect("valid instant")
            .with_timezone(&Utc);
        let mut forks: Vec<(Ledger, Vec<Entry>)> = Vec::new();
        for s in &steps {
            match s {
                Step::Advance(h) => now += TimeDelta::hours(*h),
                Step::Fork => forks.push((ledger.clone(), ledger.entries().to_vec())),
                _ => {}
            }
            let Some(c) = command(s, now, ledger.next_seq()) else {
                continue;
            };
            if let Ok(entries) = ledger.decide(&c, now) {
                ledger.apply(entries).expect("decided entries fold");
            }
            check_indexes(&ledger.state, &[now]);
        }
        let refolded = Ledger::new(&contract, bucket("hours"), ledger.entries().to_vec())
            .expect("folds");
        prop_assert_eq!(&refolded.state, &ledger.state);
        prop_assert_eq!(&refolded.period_entries, &ledger.period_entries);
        for (fork, entries) in &forks {
            let again = Ledger::new(&contract, bucket("hours"), entries.clone()).expect("folds");
            prop_assert_eq!(&again.state, &fork.state);
            prop_assert_eq!(&again.period_entries, &fork.period_entries);
        }
    }
}

/// Stored entries whose service instant has no period (altered: `decide` refuses such an
/// instant) still fold, and a cap per period reports the same error as a pass would.
#[test]
fn an_occurrence_at_an_instant_with_no_window_is_counted_as_a_pass_counts() {
    let zone = chrono_tz::Europe::London;
    let contract = contract(zone, Frequency::PerPeriod, 2);
    let mut ledger = Ledger::new(&contract, bucket("hours"), Vec::new()).expect("bucket");
    let now = DateTime::parse_from_rfc3339("2026-01-20T09:00:00Z")
        .expect("valid instant")
        .with_timezone(&Utc);
    let review = |minutes: u32, back: i64| {
        Command::RecordUsage(Usage {
            minutes,
            activity: Some(kind(REVIEW)),
            service_at: now - TimeDelta::minutes(back),
            ticket: None,
            actor: id("agent"),
            reason: None,
        })
    };
    for (m, back) in [(20, 60), (20, 30)] {
        let e = ledger.decide(&review(m, back), now).expect("decided");
        ledger.apply(e).expect("folds");
    }
    let mut entries = ledger.entries().to_vec();
    let far = DateTime::parse_from_rfc3339("9500-01-01T00:00:00Z")
        .expect("valid instant")
        .with_timezone(&Utc);
    let usage = entries
        .iter_mut()
        .find(|e| e.kind == EntryKind::Consume)
        .expect("a usage");
    usage.service_at = Some(far);
    let altered = Ledger::new(&contract, bucket("hours"), entries).expect("still folds");
    check_indexes(&altered.state, &[now]);
    assert!(matches!(
        altered
            .state
            .occurrences(&kind(REVIEW), Frequency::PerPeriod, now, None),
        Err(LedgerError::OutOfRange(_))
    ));
    assert_eq!(
        altered
            .state
            .occurrences(&kind(REVIEW), Frequency::PerMonth, now, None),
        Ok(1)
    );
    // Reversing it takes it out of the count.
    let mut altered = altered;
    let e = altered
        .decide(
            &Command::Reverse {
                entry: usage_seq(&altered),
                reason: text("a mistake"),
                actor: id("agent"),
            },
            now,
        )
        .expect("decided");
    altered.apply(e).expect("folds");
    check_indexes(&altered.state, &[now]);
    assert_eq!(
        altered
            .state
            .occurrences(&kind(REVIEW), Frequency::PerPeriod, now, None),
        Ok(1)
    );
}

fn usage_seq(l: &Ledger) -> u64 {
    l.entries()
        .iter()
        .find(|e| e.kind == EntryKind::Consume)
        .map(|e| e.seq)
        .expect("a usage")
}
