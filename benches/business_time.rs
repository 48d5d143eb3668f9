//! `cargo bench --bench business_time`
//!
//! The workload of issue 2: Clevr-like desk in America/Toronto, Mon-Fri 08:00-12:00 and
//! 13:00-18:30, 21 statutory holidays over 2026-2027; 100,000 starts uniform over 2026
//! (whole minutes, seeded) and durations uniform in 1..2400 minutes. The same `add`
//! workload runs through `ule-hours` and `workclock`, after checking that all three give
//! the same deadlines.

use std::hint::black_box;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use servicelevel::domain::{BusinessCalendar, BusinessDayMode, CalendarSpec, Hours, Window};

const HOLIDAYS: [(i32, u32, u32); 21] = [
    (2026, 1, 1),
    (2026, 2, 16),
    (2026, 4, 3),
    (2026, 5, 18),
    (2026, 7, 1),
    (2026, 9, 7),
    (2026, 10, 12),
    (2026, 12, 25),
    (2026, 12, 26),
    (2026, 12, 28),
    (2027, 1, 1),
    (2027, 2, 15),
    (2027, 3, 26),
    (2027, 5, 24),
    (2027, 7, 1),
    (2027, 9, 6),
    (2027, 10, 11),
    (2027, 12, 25),
    (2027, 12, 26),
    (2027, 12, 27),
    (2027, 12, 28),
];
const WORKLOAD: usize = 100_000;

/// SplitMix64: a seeded generator so every run benchmarks the same inputs.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Workload {
    starts: Vec<DateTime<Utc>>,
    minutes: Vec<i64>,
}

fn workload() -> Workload {
    let mut rng = SplitMix(2026);
    let year_start = NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .expect("valid");
    let minutes_in_2026 = 365 * 24 * 60;
    let starts = (0..WORKLOAD)
        .map(|_| year_start + TimeDelta::minutes(rng.below(minutes_in_2026) as i64))
        .collect();
    let minutes = (0..WORKLOAD).map(|_| 1 + rng.below(2399) as i64).collect();
    Workload { starts, minutes }
}

fn ours() -> BusinessCalendar {
    let day = vec![
        Window::parse("08:00-12:00").expect("valid"),
        Window::parse("13:00-18:30").expect("valid"),
    ];
    let week = [
        day.clone(),
        day.clone(),
        day.clone(),
        day.clone(),
        day,
        Vec::new(),
        Vec::new(),
    ];
    let holidays = HOLIDAYS
        .iter()
        .map(|&(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).expect("valid"));
    let spec = CalendarSpec::new(
        chrono_tz::America::Toronto,
        Hours::Weekly(week),
        holidays,
        [],
    )
    .expect("valid calendar");
    BusinessCalendar::compile(&spec).expect("compiles")
}

fn ule() -> ule_hours::Schedule {
    let mut b = ule_hours::Schedule::builder("America/Toronto")
        .expect("zone")
        .mon_fri("08:00-12:00, 13:00-18:30")
        .expect("windows");
    for &(y, m, d) in &HOLIDAYS {
        b = b.closed_on(jiff::civil::date(y as i16, m as i8, d as i8));
    }
    b.build()
}

fn workclock() -> workclock::Schedule {
    use jiff::civil::time;
    use workclock::{Break, Holidays, Weekdays, WorkDay};
    workclock::Schedule::builder()
        .time_zone("America/Toronto")
        .rule(WorkDay::new(
            time(8, 0, 0, 0),
            time(18, 30, 0, 0),
            Weekdays::MON_TO_FRI,
        ))
        .rule(Break::new(
            time(12, 0, 0, 0),
            time(13, 0, 0, 0),
            Weekdays::MON_TO_FRI,
        ))
        .rule(Holidays::new(HOLIDAYS.iter().map(|&(y, m, d)| {
            jiff::civil::date(y as i16, m as i8, d as i8)
        })))
        .build()
        .expect("schedule")
}

fn ts(t: DateTime<Utc>) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.timestamp()).expect("in range")
}

/// All three engines must give the same deadline for every input of the workload (every
/// duration is above zero, where their rules coincide).
fn check_agreement(
    w: &Workload,
    c: &BusinessCalendar,
    u: &ule_hours::Schedule,
    k: &workclock::Schedule,
) {
    let mut disagreements = 0;
    for (s, m) in w.starts.iter().zip(&w.minutes) {
        let a = c.add(*s, TimeDelta::minutes(*m)).map(ts).expect("ours");
        let b = u
            .add(ts(*s), jiff::SignedDuration::from_mins(*m))
            .expect("ule-hours");
        let d = k
            .add(ts(*s), jiff::SignedDuration::from_mins(*m))
            .expect("workclock");
        if a != b || a != d {
            if disagreements < 5 {
                eprintln!("start {s} + {m} min: ours {a}, ule-hours {b}, workclock {d}");
            }
            disagreements += 1;
        }
    }
    assert_eq!(disagreements, 0, "the three engines disagree");
    eprintln!(
        "agreement: servicelevel, ule-hours and workclock give the same {} deadlines",
        w.starts.len()
    );
}

fn bench(c: &mut Criterion) {
    let w = workload();
    let cal = ours();
    let (u, k) = (ule(), workclock());
    check_agreement(&w, &cal, &u, &k);
    let n = w.starts.len();
    let durations: Vec<TimeDelta> = w.minutes.iter().map(|m| TimeDelta::minutes(*m)).collect();
    let ends: Vec<DateTime<Utc>> = w
        .starts
        .iter()
        .zip(&durations)
        .map(|(s, d)| *s + *d)
        .collect();
    let jstarts: Vec<jiff::Timestamp> = w.starts.iter().map(|s| ts(*s)).collect();
    let jdurations: Vec<jiff::SignedDuration> = w
        .minutes
        .iter()
        .map(|m| jiff::SignedDuration::from_mins(*m))
        .collect();

    let mut g = c.benchmark_group("business_time");
    let mut i = 0usize;
    let mut next = move || {
        i = (i + 1) % n;
        i
    };
    g.bench_function("add/servicelevel", |b| {
        b.iter(|| {
            let j = next();
            black_box(cal.add(black_box(w.starts[j]), black_box(durations[j])))
        })
    });
    g.bench_function("add/ule-hours", |b| {
        b.iter(|| {
            let j = next();
            black_box(u.add(black_box(jstarts[j]), black_box(jdurations[j])))
        })
    });
    g.bench_function("add/workclock", |b| {
        b.iter(|| {
            let j = next();
            black_box(k.add(black_box(jstarts[j]), black_box(jdurations[j])))
        })
    });
    g.bench_function("elapsed/servicelevel", |b| {
        b.iter(|| {
            let j = next();
            black_box(cal.elapsed(black_box(w.starts[j]), black_box(ends[j])))
        })
    });
    for (name, d) in [
        ("add_1h", TimeDelta::hours(1)),
        ("add_10500h", TimeDelta::hours(10_500)),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let j = next();
                black_box(cal.add(black_box(w.starts[j]), black_box(d)))
            })
        });
    }
    for n_days in [1u32, 1_000] {
        g.bench_function(format!("add_business_days_{n_days}"), |b| {
            b.iter(|| {
                let j = next();
                black_box(cal.add_business_days(
                    black_box(w.starts[j]),
                    black_box(n_days),
                    BusinessDayMode::SameTime,
                ))
            })
        });
    }
    let spec = cal.spec().clone();
    g.bench_function("compile", |b| {
        b.iter(|| black_box(BusinessCalendar::compile(black_box(&spec))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
