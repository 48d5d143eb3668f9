//! `cargo bench --bench ledger`
//!
//! One write to an hour account: `decide` a `RecordUsage` and `apply` what it posts, on a
//! `customer_success` account (monthly, 600 minutes, overage billed at 8,500 GBP an hour,
//! 15-minute rounding) that already holds 10, 1,000 or 10,000 entries in the current
//! period; and the same with a free activity (`weekly_review`, 30 minutes once per ISO
//! week) at 10,000 entries, every tenth of them a weekly review.
//!
//! Each write grows the account by one entry, so the timed writes run on a fresh fold of
//! the prepared entries (folded outside the timing) that is replaced after `n / 20` writes:
//! the account never grows by more than 5% of its size.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use servicelevel::domain::ledger::{
    ActivityKind, BucketName, BucketTerms, Command, Contract, Currency, Entry, FreeActivity,
    Frequency, Ledger, Overage, PeriodUnit, Plan, TermsHistory, TermsVersion, Usage,
};
use servicelevel::domain::names::{ExternalId, PlanName};

const ZONE: chrono_tz::Tz = chrono_tz::Europe::London;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 20, 12, 0, 0)
        .single()
        .expect("valid instant")
}

fn bucket() -> BucketName {
    BucketName::parse("customer_success").expect("valid bucket")
}

fn review() -> ActivityKind {
    ActivityKind::parse("weekly_review").expect("valid kind")
}

fn contract(free: bool) -> Contract {
    let start = NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date");
    let mut terms = BucketTerms::new(bucket(), PeriodUnit::Month, 600);
    terms.rounding_increment_minutes = 15;
    terms.overage = Overage::Bill {
        rate_minor_units_per_hour: 8_500,
        currency: Currency::parse("GBP").expect("valid currency"),
    };
    if free {
        terms.free_activities.push(FreeActivity {
            kind: review(),
            per_occurrence_cap_minutes: 30,
            frequency: Frequency::PerIsoWeek,
            max_per_frequency: 1,
        });
    }
    let plan = Plan {
        name: PlanName::parse("bench").expect("valid plan"),
        buckets: vec![terms],
    };
    let version = TermsVersion::from_date(ZONE, start, plan).expect("in range");
    Contract {
        zone: ZONE,
        start,
        terms: TermsHistory::new(vec![version]).expect("valid terms"),
    }
}

fn usage(k: usize, activity: Option<ActivityKind>) -> Command {
    let minutes = i64::try_from(k % 10_000).expect("small") + 1;
    Command::RecordUsage(Usage {
        minutes: 20,
        activity,
        service_at: now() - TimeDelta::minutes(minutes),
        ticket: None,
        actor: ExternalId::parse("agent").expect("valid id"),
        reason: None,
    })
}

/// The entries of an account with `n` entries in the current period (the grants and
/// closes of the periods before it come first).
fn entries(contract: &Contract, n: usize, free: bool) -> Vec<Entry> {
    let mut ledger = Ledger::new(contract, bucket(), Vec::new()).expect("bucket exists");
    let current = ledger.period_at(now()).expect("in range");
    let mut in_current = 0;
    let mut k = 0;
    while in_current < n {
        let activity = (free && k % 10 == 0).then(review);
        let posted = ledger.decide(&usage(k, activity), now()).expect("decided");
        in_current += posted.iter().filter(|e| e.period == current).count();
        ledger.apply(posted).expect("folds");
        k += 1;
    }
    ledger.entries().to_vec()
}

fn write(c: &mut Criterion, name: &str, n: usize, free: bool) {
    let contract = contract(free);
    let prepared = entries(&contract, n, free);
    let fresh = || Ledger::new(&contract, bucket(), prepared.clone()).expect("folds");
    let per_fold = (n / 20).max(1);
    let activity = free.then(review);
    c.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut ledger = fresh();
            let mut used = 0;
            for i in 0..iters {
                if used == per_fold {
                    ledger = fresh();
                    used = 0;
                }
                let command = usage(usize::try_from(i).unwrap_or(0), activity.clone());
                let t = Instant::now();
                let posted = ledger.decide(black_box(&command), now()).expect("decided");
                ledger.apply(black_box(posted)).expect("folds");
                total += t.elapsed();
                used += 1;
            }
            total
        })
    });
}

fn bench(c: &mut Criterion) {
    for n in [10, 1_000, 10_000] {
        write(c, "record_usage", n, false);
    }
    write(c, "record_usage_free_activity", 10_000, true);
}

criterion_group!(benches, bench);
criterion_main!(benches);
