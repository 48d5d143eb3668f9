//! Hand-computed cases (reasoning beside each), properties, and a cross-check against a
//! slow day-by-day oracle that uses chrono-tz directly.

use super::*;
use crate::domain::calendar::{WallClock, Window, parse_zone};
use chrono::{LocalResult, NaiveDateTime, Offset, TimeZone};
use proptest::prelude::*;

const MON_FRI: [usize; 5] = [0, 1, 2, 3, 4];

fn tz(name: &str) -> Tz {
    parse_zone(name).expect("known zone")
}

/// The instant of a local wall time; panics on a time that does not exist or is repeated,
/// so every test states its instants unambiguously.
fn at(zone: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    match tz(zone).with_ymd_and_hms(y, mo, d, h, mi, 0) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        other => panic!("{y}-{mo}-{d} {h}:{mi} in {zone} is not unique: {other:?}"),
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn windows(list: &[&str]) -> Vec<Window> {
    list.iter()
        .map(|s| Window::parse(s).expect("valid window"))
        .collect()
}

fn weekly(zone: &str, days: &[usize], list: &[&str]) -> [Vec<Window>; 7] {
    let _ = tz(zone);
    let mut week: [Vec<Window>; 7] = Default::default();
    for d in days {
        week[*d] = windows(list);
    }
    week
}

fn calendar(
    zone: &str,
    days: &[usize],
    list: &[&str],
    holidays: &[NaiveDate],
    overrides: &[(NaiveDate, &[&str])],
) -> BusinessCalendar {
    let spec = CalendarSpec::new(
        tz(zone),
        Hours::Weekly(weekly(zone, days, list)),
        holidays.iter().copied(),
        overrides.iter().map(|(d, w)| (*d, windows(w))),
    )
    .expect("valid calendar");
    BusinessCalendar::compile(&spec).expect("compiles")
}

/// Clevr's desk: Mon-Fri 08:00-18:30 Toronto.
fn clevr() -> BusinessCalendar {
    calendar("America/Toronto", &MON_FRI, &["08:00-18:30"], &[], &[])
}

fn always(zone: &str) -> BusinessCalendar {
    BusinessCalendar::compile(&CalendarSpec::always_open(tz(zone))).expect("compiles")
}

fn mins(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

const TO: &str = "America/Toronto";

// ---------------------------------------------------------------- durations

#[test]
fn adding_nothing_is_the_start_even_when_closed() {
    let c = clevr();
    let saturday = at(TO, 2026, 3, 14, 11, 0);
    assert_eq!(c.add(saturday, TimeDelta::zero()), Ok(saturday));
    let tuesday = at(TO, 2026, 3, 10, 10, 0);
    assert_eq!(c.add(tuesday, TimeDelta::zero()), Ok(tuesday));
}

#[test]
fn a_closed_start_counts_from_the_next_opening() {
    // Saturday 11:00: nothing counts until Monday 08:00, so one hour lands on Monday 09:00.
    let c = clevr();
    assert_eq!(
        c.add(at(TO, 2026, 3, 14, 11, 0), mins(60)),
        Ok(at(TO, 2026, 3, 16, 9, 0))
    );
}

#[test]
fn a_deadline_that_uses_a_window_up_lands_on_its_close() {
    // Friday 16:00 + 150 min: 16:00-18:30 is exactly 150 min, so the deadline is Friday
    // 18:30, the earliest instant at which 150 min have elapsed, not Monday 08:00.
    let c = clevr();
    assert_eq!(
        c.add(at(TO, 2026, 3, 13, 16, 0), mins(150)),
        Ok(at(TO, 2026, 3, 13, 18, 30))
    );
    // One more minute spills into Monday.
    assert_eq!(
        c.add(at(TO, 2026, 3, 13, 16, 0), mins(151)),
        Ok(at(TO, 2026, 3, 16, 8, 1))
    );
}

#[test]
fn lunch_breaks_are_skipped() {
    // 08:00-12:00, 13:00-18:30: Monday 11:30 + 60 min = 30 min before lunch, 30 after.
    let c = calendar(TO, &MON_FRI, &["08:00-12:00", "13:00-18:30"], &[], &[]);
    assert_eq!(
        c.add(at(TO, 2026, 3, 9, 11, 30), mins(60)),
        Ok(at(TO, 2026, 3, 9, 13, 30))
    );
    // Starting inside the break counts from 13:00.
    assert_eq!(
        c.add(at(TO, 2026, 3, 9, 12, 30), mins(30)),
        Ok(at(TO, 2026, 3, 9, 13, 30))
    );
}

#[test]
fn elapsed_counts_only_open_time() {
    let c = clevr();
    // Friday 17:00 to Monday 10:00: 1 h 30 on Friday + 2 h on Monday.
    assert_eq!(
        c.elapsed(at(TO, 2026, 3, 13, 17, 0), at(TO, 2026, 3, 16, 10, 0)),
        Ok(mins(210))
    );
    // Backwards or equal: zero.
    assert_eq!(
        c.elapsed(at(TO, 2026, 3, 16, 10, 0), at(TO, 2026, 3, 13, 17, 0)),
        Ok(TimeDelta::zero())
    );
    // A whole week: 5 x 10 h 30.
    assert_eq!(
        c.elapsed(at(TO, 2026, 6, 1, 0, 0), at(TO, 2026, 6, 8, 0, 0)),
        Ok(mins(5 * 630))
    );
}

#[test]
fn holidays_close_whole_local_dates() {
    // Good Friday 2026-04-03 closed: Thursday 18:00 + 60 min = 30 min Thursday, then Monday.
    let c = calendar(TO, &MON_FRI, &["08:00-18:30"], &[date(2026, 4, 3)], &[]);
    assert_eq!(
        c.add(at(TO, 2026, 4, 2, 18, 0), mins(60)),
        Ok(at(TO, 2026, 4, 6, 8, 30))
    );
}

#[test]
fn overrides_make_half_days_and_working_saturdays() {
    // Christmas Eve (Thursday) is a half day 08:00-12:00; Saturday 2026-12-26 works 10:00-14:00.
    let c = calendar(
        TO,
        &MON_FRI,
        &["08:00-18:30"],
        &[date(2026, 12, 25)],
        &[
            (date(2026, 12, 24), &["08:00-12:00"]),
            (date(2026, 12, 26), &["10:00-14:00"]),
        ],
    );
    // Thursday 11:00 + 3 h: 1 h Thursday (to 12:00), Friday closed, 2 h Saturday from 10:00.
    assert_eq!(
        c.add(at(TO, 2026, 12, 24, 11, 0), mins(180)),
        Ok(at(TO, 2026, 12, 26, 12, 0))
    );
    assert_eq!(c.is_open(at(TO, 2026, 12, 24, 13, 0)), Ok(false));
    assert_eq!(c.is_open(at(TO, 2026, 12, 26, 13, 0)), Ok(true));
}

#[test]
fn twenty_four_seven_is_plain_addition() {
    let c = always(TO);
    let s = at(TO, 2026, 3, 7, 10, 0);
    assert_eq!(c.add(s, TimeDelta::hours(24)), Ok(s + TimeDelta::hours(24)));
    assert_eq!(
        c.elapsed(s, s + TimeDelta::hours(30)),
        Ok(TimeDelta::hours(30))
    );
}

#[test]
fn long_durations_cost_nothing_extra_and_stay_exact() {
    // 10,500 h on 10.5 h/day is 1,000 business days: from Monday 2026-01-05 08:00 that is
    // 200 weeks later, Monday 2029-11-05 08:00, but 1,000 days of open time end exactly at a
    // close, so the deadline is the Friday before at 18:30 (the earliest instant).
    let c = clevr();
    let start = at(TO, 2026, 1, 5, 8, 0);
    assert_eq!(
        c.add(start, TimeDelta::hours(10_500)),
        Ok(at(TO, 2029, 11, 2, 18, 30))
    );
    assert_eq!(
        c.elapsed(start, at(TO, 2029, 11, 2, 18, 30)),
        Ok(TimeDelta::hours(10_500))
    );
}

// ---------------------------------------------------------------- business days

fn both(c: &BusinessCalendar, start: DateTime<Utc>, n: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        c.add_business_days(start, n, BusinessDayMode::SameTime)
            .expect("in range"),
        c.add_business_days(start, n, BusinessDayMode::EndOfDay)
            .expect("in range"),
    )
}

#[test]
fn business_day_required_cases() {
    let c = clevr();
    // Tue 10:00: D = Tue, T = Wed; Wed is open at 10:00.
    assert_eq!(
        both(&c, at(TO, 2026, 3, 10, 10, 0), 1),
        (at(TO, 2026, 3, 11, 10, 0), at(TO, 2026, 3, 11, 18, 30))
    );
    // Sat 11:00: the clock starts Mon 08:00, so D = Mon, T = Tue at 08:00.
    assert_eq!(
        both(&c, at(TO, 2026, 3, 14, 11, 0), 1),
        (at(TO, 2026, 3, 17, 8, 0), at(TO, 2026, 3, 17, 18, 30))
    );
    // Thu 19:00: closed, the clock starts Fri 08:00, T = Mon.
    assert_eq!(
        both(&c, at(TO, 2026, 3, 12, 19, 0), 1),
        (at(TO, 2026, 3, 16, 8, 0), at(TO, 2026, 3, 16, 18, 30))
    );
    // Mon 08:00 is open: D = Mon, T = Tue.
    assert_eq!(
        both(&c, at(TO, 2026, 3, 9, 8, 0), 1),
        (at(TO, 2026, 3, 10, 8, 0), at(TO, 2026, 3, 10, 18, 30))
    );
}

#[test]
fn business_days_skip_holidays() {
    // Thu 2026-04-02 10:00 with Good Friday closed: T is Monday 04-06.
    let c = calendar(TO, &MON_FRI, &["08:00-18:30"], &[date(2026, 4, 3)], &[]);
    assert_eq!(
        both(&c, at(TO, 2026, 4, 2, 10, 0), 1),
        (at(TO, 2026, 4, 6, 10, 0), at(TO, 2026, 4, 6, 18, 30))
    );
}

#[test]
fn same_time_inside_a_lunch_break_takes_the_break_start_or_first_opening() {
    let c = calendar(TO, &MON_FRI, &["08:00-12:00", "13:00-18:30"], &[], &[]);
    // Mon 12:30 is closed: s' = Mon 13:00, T = Tue, 13:00 is open on Tue.
    assert_eq!(
        c.add_business_days(at(TO, 2026, 3, 9, 12, 30), 1, BusinessDayMode::SameTime),
        Ok(at(TO, 2026, 3, 10, 13, 0))
    );
    // Friday has only a morning (override): Thu 15:00 + 1 -> Fri; 15:00 is after Friday's
    // last close 12:00, so the last close at or before 15:00: Fri 12:00.
    let c = calendar(
        TO,
        &MON_FRI,
        &["08:00-12:00", "13:00-18:30"],
        &[],
        &[(date(2026, 3, 13), &["08:00-12:00"])],
    );
    assert_eq!(
        c.add_business_days(at(TO, 2026, 3, 12, 15, 0), 1, BusinessDayMode::SameTime),
        Ok(at(TO, 2026, 3, 13, 12, 0))
    );
    // Friday opening only 10:00-12:00: Thu 08:30 + 1 -> no close at or before 08:30 on Fri,
    // so Friday's first opening 10:00.
    let c = calendar(
        TO,
        &MON_FRI,
        &["08:00-18:30"],
        &[],
        &[(date(2026, 3, 13), &["10:00-12:00"])],
    );
    assert_eq!(
        c.add_business_days(at(TO, 2026, 3, 12, 8, 30), 1, BusinessDayMode::SameTime),
        Ok(at(TO, 2026, 3, 13, 10, 0))
    );
}

#[test]
fn business_day_on_24x7_across_spring_forward_is_23_real_hours() {
    // Sat 2026-03-07 10:00 EST -> Sun 2026-03-08 10:00 EDT.
    let c = always(TO);
    let start = at(TO, 2026, 3, 7, 10, 0);
    let due = c
        .add_business_days(start, 1, BusinessDayMode::SameTime)
        .expect("in range");
    assert_eq!(due, at(TO, 2026, 3, 8, 10, 0));
    assert_eq!(due - start, TimeDelta::hours(23));
    // EndOfDay is the next local midnight, Monday 00:00.
    assert_eq!(
        c.add_business_days(start, 1, BusinessDayMode::EndOfDay),
        Ok(at(TO, 2026, 3, 9, 0, 0))
    );
}

#[test]
fn a_thousand_business_days() {
    // 1,000 business days on Mon-Fri without holidays are exactly 200 weeks.
    let c = clevr();
    assert_eq!(
        c.add_business_days(at(TO, 2026, 1, 6, 10, 0), 1_000, BusinessDayMode::SameTime),
        Ok(at(TO, 2029, 11, 6, 10, 0))
    );
}

#[test]
fn zero_business_days_is_an_error() {
    assert_eq!(
        clevr().add_business_days(at(TO, 2026, 1, 6, 10, 0), 0, BusinessDayMode::SameTime),
        Err(TimeError::ZeroBusinessDays)
    );
}

#[test]
fn first_opening_of_next_week() {
    // Contently's "the following week": from Wednesday 2026-03-11 the next ISO week starts
    // Monday 03-16; with Monday a holiday, its first business day is Tuesday 08:00.
    let c = calendar(TO, &MON_FRI, &["08:00-18:30"], &[date(2026, 3, 16)], &[]);
    assert_eq!(
        c.first_opening_on_or_after(date(2026, 3, 16)),
        Ok(at(TO, 2026, 3, 17, 8, 0))
    );
    assert_eq!(
        c.first_opening_on_or_after(date(2026, 3, 11)),
        Ok(at(TO, 2026, 3, 11, 8, 0))
    );
}

// ---------------------------------------------------------------- calendar days

#[test]
fn calendar_days_keep_the_wall_time() {
    let c = clevr();
    // Sat 10:00 EST + 1 date = Sun 10:00 EDT, 23 real hours.
    assert_eq!(
        c.add_calendar_days(at(TO, 2026, 3, 7, 10, 0), 1),
        Ok(at(TO, 2026, 3, 8, 10, 0))
    );
    // 02:30 does not exist on 2026-03-08: moved forward by the 1 h gap to 03:30 EDT.
    assert_eq!(
        c.add_calendar_days(at(TO, 2026, 3, 7, 2, 30), 1),
        Ok(utc(2026, 3, 8, 7, 30))
    );
    // 01:30 exists twice on 2026-11-01: the earlier instant (EDT, 05:30Z).
    assert_eq!(
        c.add_calendar_days(at(TO, 2026, 10, 31, 1, 30), 1),
        Ok(utc(2026, 11, 1, 5, 30))
    );
    // 24social's "7 days" lead time: same wall time a week later.
    assert_eq!(
        c.add_calendar_days(at(TO, 2026, 10, 28, 9, 0), 7),
        Ok(at(TO, 2026, 11, 4, 9, 0))
    );
}

// ---------------------------------------------------------------- DST

#[test]
fn toronto_spring_forward() {
    // Open every day 00:00-24:00 (as windows, not the 24x7 shortcut): Sunday 2026-03-08 has
    // 23 real hours, so Sat 12:00 + 36 h of open time = Mon 01:00 (12 + 23 + 1).
    let c = calendar(TO, &[0, 1, 2, 3, 4, 5, 6], &["00:00-24:00"], &[], &[]);
    assert_eq!(
        c.add(at(TO, 2026, 3, 7, 12, 0), TimeDelta::hours(36)),
        Ok(at(TO, 2026, 3, 9, 1, 0))
    );
    // A window 02:00-04:00 on that Sunday opens at 03:00 EDT (02:00 moved by the gap) and
    // lasts 1 real hour.
    let c = calendar(TO, &[6], &["02:00-04:00"], &[], &[]);
    assert_eq!(
        c.elapsed(at(TO, 2026, 3, 8, 0, 0), at(TO, 2026, 3, 9, 0, 0)),
        Ok(TimeDelta::hours(1))
    );
    assert_eq!(
        c.next_open(at(TO, 2026, 3, 8, 0, 0)),
        Ok(utc(2026, 3, 8, 7, 0))
    );
}

#[test]
fn toronto_fall_back() {
    // Sunday 2026-11-01 lasts 25 real hours.
    let c = calendar(TO, &[6], &["00:00-24:00"], &[], &[]);
    assert_eq!(
        c.elapsed(utc(2026, 10, 31, 0, 0), utc(2026, 11, 3, 0, 0)),
        Ok(TimeDelta::hours(25))
    );
    // A window 01:00-03:00 starts at the first 01:00 (EDT) and lasts 3 real hours.
    let c = calendar(TO, &[6], &["01:00-03:00"], &[], &[]);
    assert_eq!(
        c.elapsed(utc(2026, 10, 31, 0, 0), utc(2026, 11, 3, 0, 0)),
        Ok(TimeDelta::hours(3))
    );
    assert_eq!(
        c.next_open(utc(2026, 10, 31, 0, 0)),
        Ok(utc(2026, 11, 1, 5, 0))
    );
    // A holiday on the fall-back day closes all 25 hours of it.
    let c = calendar(
        TO,
        &[0, 1, 2, 3, 4, 5, 6],
        &["00:00-24:00"],
        &[date(2026, 11, 1)],
        &[],
    );
    assert_eq!(
        c.elapsed(at(TO, 2026, 10, 31, 0, 0), at(TO, 2026, 11, 3, 0, 0)),
        Ok(TimeDelta::hours(48))
    );
    assert_eq!(
        c.next_open(utc(2026, 11, 1, 12, 0)),
        Ok(at(TO, 2026, 11, 2, 0, 0))
    );
}

#[test]
fn london_spring_forward_and_fall_back() {
    const L: &str = "Europe/London";
    // 2026-03-29: 01:00 GMT becomes 02:00 BST. A Sunday window 00:30-02:30 lasts 1 real hour.
    let c = calendar(L, &[6], &["00:30-02:30"], &[], &[]);
    assert_eq!(
        c.elapsed(utc(2026, 3, 28, 0, 0), utc(2026, 3, 30, 0, 0)),
        Ok(TimeDelta::hours(1))
    );
    // 2026-10-25: 02:00 BST becomes 01:00 GMT. The same window lasts 3 real hours
    // (00:30 BST = 23:30Z to 02:30 GMT = 02:30Z).
    assert_eq!(
        c.elapsed(utc(2026, 10, 24, 0, 0), utc(2026, 10, 26, 0, 0)),
        Ok(TimeDelta::hours(3))
    );
    // 24social's operations desk, Mon-Fri 09:00-17:30 London, across the October change:
    // Friday 2026-10-23 17:00 + 1 h = 30 min Friday + 30 min Monday, Monday 09:30 GMT.
    let c = calendar(L, &MON_FRI, &["09:00-17:30"], &[], &[]);
    assert_eq!(
        c.add(at(L, 2026, 10, 23, 17, 0), mins(60)),
        Ok(utc(2026, 10, 26, 9, 30))
    );
}

#[test]
fn a_zone_without_dst() {
    // Tokyo, +09:00 all year: Mon-Fri 09:00-18:00, Friday 17:00 + 2 h = Monday 10:00 = 01:00Z.
    let c = calendar("Asia/Tokyo", &MON_FRI, &["09:00-18:00"], &[], &[]);
    assert_eq!(
        c.add(at("Asia/Tokyo", 2026, 3, 6, 17, 0), mins(120)),
        Ok(utc(2026, 3, 9, 1, 0))
    );
}

#[test]
fn half_hour_offsets() {
    // Kolkata, +05:30: 09:00-17:30 local is 03:30Z-12:00Z.
    let c = calendar("Asia/Kolkata", &MON_FRI, &["09:00-17:30"], &[], &[]);
    assert_eq!(
        c.next_open(utc(2026, 3, 9, 0, 0)),
        Ok(utc(2026, 3, 9, 3, 30))
    );
    assert_eq!(
        c.add(utc(2026, 3, 9, 11, 0), mins(90)),
        Ok(utc(2026, 3, 10, 4, 0))
    );
    // Lord Howe moves its clocks by 30 minutes: on Sunday 2026-04-05, 02:00 LHDT (+11)
    // becomes 01:30 LHST (+10:30), so that day lasts 24 h 30.
    let c = calendar("Australia/Lord_Howe", &[6], &["00:00-24:00"], &[], &[]);
    assert_eq!(
        c.elapsed(utc(2026, 4, 3, 0, 0), utc(2026, 4, 7, 0, 0)),
        Ok(mins(24 * 60 + 30))
    );
}

// ---------------------------------------------------------------- explain, range

#[test]
fn open_intervals_explain_a_deadline() {
    let c = clevr();
    let from = at(TO, 2026, 3, 13, 17, 0);
    let to = c.add(from, mins(90 + 630 + 120)).expect("in range");
    assert_eq!(to, at(TO, 2026, 3, 17, 10, 0));
    let got: Vec<(DateTime<Utc>, DateTime<Utc>)> = c
        .open_intervals(from, to)
        .expect("in range")
        .map(|i| (i.start, i.end))
        .collect();
    assert_eq!(
        got,
        vec![
            (at(TO, 2026, 3, 13, 17, 0), at(TO, 2026, 3, 13, 18, 30)),
            (at(TO, 2026, 3, 16, 8, 0), at(TO, 2026, 3, 16, 18, 30)),
            (at(TO, 2026, 3, 17, 8, 0), at(TO, 2026, 3, 17, 10, 0)),
        ]
    );
    // Touching intervals come out merged: a 24x7 week is one interval.
    let a = always(TO);
    let n = a
        .open_intervals(at(TO, 2026, 3, 2, 0, 0), at(TO, 2026, 3, 16, 0, 0))
        .expect("in range")
        .count();
    assert_eq!(n, 1);
}

#[test]
fn out_of_range_is_a_typed_error() {
    let c = clevr();
    let before = utc(1969, 12, 31, 23, 59);
    assert_eq!(c.add(before, mins(1)), Err(TimeError::OutOfRange(before)));
    let late = at(TO, 2099, 12, 30, 10, 0);
    assert_eq!(
        c.add(late, TimeDelta::hours(100)),
        Err(TimeError::BeyondRange)
    );
    assert_eq!(c.add(late, TimeDelta::MAX), Err(TimeError::BeyondRange));
    assert_eq!(c.add(late, mins(-1)), Err(TimeError::NegativeDuration));
    assert_eq!(
        c.add_business_days(late, u32::MAX, BusinessDayMode::EndOfDay),
        Err(TimeError::BeyondRange)
    );
    let end = utc(2100, 1, 1, 0, 0);
    assert_eq!(c.is_open(end), Err(TimeError::OutOfRange(end)));
}

#[test]
fn a_calendar_open_on_one_day_only_runs_out() {
    let c = calendar(TO, &[], &[], &[], &[(date(2026, 6, 6), &["10:00-12:00"])]);
    let start = at(TO, 2026, 1, 1, 0, 0);
    assert_eq!(c.add(start, mins(120)), Ok(at(TO, 2026, 6, 6, 12, 0)));
    assert_eq!(c.add(start, mins(121)), Err(TimeError::BeyondRange));
    assert_eq!(
        c.next_open(at(TO, 2026, 6, 7, 0, 0)),
        Err(TimeError::BeyondRange)
    );
}

// ---------------------------------------------------------------- oracle

/// A local wall time to an instant, with chrono-tz directly: earlier instant in a fold;
/// in a gap, the offset from before the gap (which moves the time forward by the gap).
fn oracle_resolve(zone: Tz, local: NaiveDateTime) -> Nanos {
    let t = match zone.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            let before = zone
                .from_local_datetime(&(local - TimeDelta::hours(26)))
                .earliest()
                .expect("a day before a gap exists");
            let offset = i64::from(before.offset().fix().local_minus_utc());
            (local - TimeDelta::seconds(offset)).and_utc()
        }
    };
    t.timestamp_nanos_opt().expect("in range")
}

/// All open intervals of local dates `first..=last`, day by day: the slow, obvious way.
fn oracle_intervals(spec: &CalendarSpec, first: NaiveDate, last: NaiveDate) -> Vec<(Nanos, Nanos)> {
    let mut out: Vec<(Nanos, Nanos)> = Vec::new();
    let mut prev_end = Nanos::MIN;
    let mut day = first;
    while day <= last {
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight");
        let mut raw: Vec<(Nanos, Nanos)> = spec
            .windows_on(day)
            .iter()
            .map(|w| {
                let a = midnight + TimeDelta::seconds(i64::from(w.open().seconds()));
                let b = midnight + TimeDelta::seconds(i64::from(w.close().seconds()));
                (
                    oracle_resolve(spec.zone(), a),
                    oracle_resolve(spec.zone(), b),
                )
            })
            .filter(|(a, b)| b > a)
            .collect();
        raw.sort_unstable();
        let mut merged: Vec<(Nanos, Nanos)> = Vec::new();
        for (a, b) in raw {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        for (a, b) in merged {
            let a = a.max(prev_end);
            if b > a {
                out.push((a, b));
                prev_end = b;
            }
        }
        day = day.succ_opt().expect("next day");
    }
    out
}

fn oracle_elapsed(ivs: &[(Nanos, Nanos)], from: Nanos, to: Nanos) -> Nanos {
    ivs.iter()
        .map(|&(a, b)| (b.min(to) - a.max(from)).max(0))
        .sum()
}

fn oracle_add(ivs: &[(Nanos, Nanos)], start: Nanos, d: Nanos) -> Option<Nanos> {
    if d == 0 {
        return Some(start);
    }
    let mut left = d;
    for &(a, b) in ivs {
        let a = a.max(start);
        if b <= a {
            continue;
        }
        if b - a >= left {
            return Some(a + left);
        }
        left -= b - a;
    }
    None
}

const ZONES: [&str; 10] = [
    "America/Toronto",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "America/Santiago",
    "America/Sao_Paulo",
    "Pacific/Chatham",
    "America/St_Johns",
    "UTC",
];

fn arb_window() -> impl Strategy<Value = (u32, u32)> {
    (0u32..=96, 1u32..=48).prop_map(|(q, len)| {
        let open = q * 900;
        (open, (open + len * 900).min(86_400))
    })
}

fn arb_day() -> impl Strategy<Value = Vec<Window>> {
    proptest::collection::vec(arb_window(), 0..4).prop_map(|raw| {
        let mut ws: Vec<Window> = Vec::new();
        let mut sorted = raw;
        sorted.sort_unstable();
        for (o, c) in sorted {
            let o = ws.last().map_or(o, |w| o.max(w.close().seconds()));
            if let (Ok(o), Ok(c)) = (WallClock::from_seconds(o), WallClock::from_seconds(c))
                && let Ok(w) = Window::new(o, c)
            {
                ws.push(w);
            }
        }
        ws
    })
}

/// Random calendars: a zone, windows per weekday (with lunch breaks, midnight-touching
/// windows), holidays and overrides within 2025-2027, or 24x7.
fn arb_calendar() -> impl Strategy<Value = CalendarSpec> {
    let dates = (0i64..1095).prop_map(|d| date(2025, 1, 1) + TimeDelta::days(d));
    (
        0..ZONES.len(),
        proptest::collection::vec(arb_day(), 7),
        proptest::collection::vec(dates.clone(), 0..12),
        proptest::collection::vec((dates, arb_day()), 0..6),
        0u8..10,
    )
        .prop_filter_map("never open", |(z, days, holidays, overrides, kind)| {
            let zone = tz(ZONES[z]);
            if kind == 0 {
                return Some(CalendarSpec::always_open(zone));
            }
            let mut week: [Vec<Window>; 7] = Default::default();
            for (i, d) in days.into_iter().enumerate() {
                week[i] = d;
            }
            let overrides: Vec<(NaiveDate, Vec<Window>)> = overrides
                .into_iter()
                .filter(|(d, _)| !holidays.contains(d))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .collect();
            CalendarSpec::new(zone, Hours::Weekly(week), holidays, overrides).ok()
        })
}

fn instant_in(days_from_2025: i64, minute: i64) -> DateTime<Utc> {
    utc(2025, 1, 1, 0, 0) + TimeDelta::days(days_from_2025) + TimeDelta::minutes(minute)
}

fn ns(t: DateTime<Utc>) -> Nanos {
    t.timestamp_nanos_opt().expect("in range")
}

proptest! {
    /// add, elapsed, is_open and next_open agree with the day-by-day oracle.
    #[test]
    fn matches_the_oracle(
        spec in arb_calendar(),
        day in 0i64..1000,
        minute in 0i64..1440,
        d_min in 0i64..(60 * 24 * 21),
        span_min in 0i64..(60 * 24 * 21),
    ) {
        let c = BusinessCalendar::compile(&spec).expect("compiles");
        let start = instant_in(day, minute);
        let ivs = oracle_intervals(&spec, date(2024, 12, 20), date(2028, 1, 10));
        let d = mins(d_min);
        if let Some(want) = oracle_add(&ivs, ns(start), d_min * 60 * NS_PER_SEC) {
            prop_assert_eq!(c.add(start, d).map(ns), Ok(want));
        }
        let to = start + mins(span_min);
        prop_assert_eq!(
            c.elapsed(start, to).map(|e| e.num_nanoseconds()),
            Ok(Some(oracle_elapsed(&ivs, ns(start), ns(to))))
        );
        let open = ivs.iter().any(|&(a, b)| a <= ns(start) && ns(start) < b);
        prop_assert_eq!(c.is_open(start), Ok(open));
        if let Some(next) = ivs.iter().find(|&&(_, b)| b > ns(start)).map(|&(a, _)| a.max(ns(start))) {
            prop_assert_eq!(c.next_open(start).map(ns), Ok(next));
        }
        let listed: Vec<(Nanos, Nanos)> = c
            .open_intervals(start, to)
            .expect("in range")
            .map(|i| (ns(i.start), ns(i.end)))
            .collect();
        let total: Nanos = listed.iter().map(|(a, b)| b - a).sum();
        prop_assert_eq!(total, oracle_elapsed(&ivs, ns(start), ns(to)));
        prop_assert!(listed.windows(2).all(|p| p[0].1 < p[1].0), "sorted, disjoint, merged");
    }

    #[test]
    fn elapsed_inverts_add(spec in arb_calendar(), day in 0i64..1000, minute in 0i64..1440, d in 0i64..(60 * 24 * 400)) {
        let c = BusinessCalendar::compile(&spec).expect("compiles");
        let s = instant_in(day, minute);
        if let Ok(due) = c.add(s, mins(d)) {
            prop_assert_eq!(c.elapsed(s, due), Ok(mins(d)));
            if d > 0 {
                prop_assert_eq!(c.is_open(due - TimeDelta::nanoseconds(1)), Ok(true));
            }
        }
    }

    #[test]
    fn add_is_monotone_and_additive(
        spec in arb_calendar(),
        day in 0i64..1000,
        minute in 0i64..1440,
        shift in 0i64..5000,
        a in 0i64..20_000,
        b in 0i64..20_000,
    ) {
        let c = BusinessCalendar::compile(&spec).expect("compiles");
        let s = instant_in(day, minute);
        let s2 = s + mins(shift);
        if let (Ok(x), Ok(y), Ok(z)) = (c.add(s, mins(a)), c.add(s2, mins(a)), c.add(s, mins(a + b))) {
            prop_assert!(x <= y, "monotone in the start");
            prop_assert!(x <= z, "monotone in the duration");
            prop_assert_eq!(c.add(x, mins(b)), Ok(z));
        }
    }

    #[test]
    fn twenty_four_seven_equals_plain_addition(z in 0..ZONES.len(), day in 0i64..1000, minute in 0i64..1440, d in 0i64..1_000_000) {
        let zone = tz(ZONES[z]);
        let fast = BusinessCalendar::compile(&CalendarSpec::always_open(zone)).expect("compiles");
        let mut week: [Vec<Window>; 7] = Default::default();
        for w in &mut week {
            *w = windows(&["00:00-24:00"]);
        }
        let spec = CalendarSpec::new(zone, Hours::Weekly(week), [], []).expect("valid");
        let slow = BusinessCalendar::compile(&spec).expect("compiles");
        let s = instant_in(day, minute);
        prop_assert_eq!(fast.add(s, mins(d)), Ok(s + mins(d)));
        prop_assert_eq!(slow.add(s, mins(d)), Ok(s + mins(d)));
        prop_assert_eq!(slow.elapsed(s, s + mins(d)), Ok(mins(d)));
    }

    #[test]
    fn business_days_are_monotone(spec in arb_calendar(), day in 0i64..1000, minute in 0i64..1440, n in 1u32..300) {
        let c = BusinessCalendar::compile(&spec).expect("compiles");
        let s = instant_in(day, minute);
        for mode in [BusinessDayMode::SameTime, BusinessDayMode::EndOfDay] {
            if let (Ok(a), Ok(b)) = (c.add_business_days(s, n, mode), c.add_business_days(s, n + 1, mode)) {
                prop_assert!(a < b, "n + 1 business days end later");
                prop_assert!(a > s);
            }
        }
        if let (Ok(same), Ok(end)) = (
            c.add_business_days(s, n, BusinessDayMode::SameTime),
            c.add_business_days(s, n, BusinessDayMode::EndOfDay),
        ) {
            prop_assert!(same <= end);
        }
    }

    /// Any zone, any windows, any instant: an answer or a typed error, never a panic.
    #[test]
    fn nothing_panics(
        z in 0..chrono_tz::TZ_VARIANTS.len(),
        days in proptest::collection::vec(arb_day(), 7),
        secs in (-3_000_000_000i64)..6_000_000_000i64,
        d in proptest::num::i64::ANY,
        n in proptest::num::u32::ANY,
        k in 0u32..100_000,
    ) {
        let mut week: [Vec<Window>; 7] = Default::default();
        for (i, w) in days.into_iter().enumerate() {
            week[i] = w;
        }
        let zone = chrono_tz::TZ_VARIANTS[z];
        let spec = match CalendarSpec::new(zone, Hours::Weekly(week), [], []) {
            Ok(s) => s,
            Err(_) => CalendarSpec::always_open(zone),
        };
        if let Ok(c) = BusinessCalendar::compile(&spec) {
            let t = DateTime::from_timestamp(secs, 0).unwrap_or_default();
            let _ = c.add(t, TimeDelta::nanoseconds(d));
            let _ = c.add(t, TimeDelta::seconds(i64::from(k)));
            let _ = c.elapsed(t, t + TimeDelta::seconds(i64::from(k)));
            let _ = c.add_business_days(t, n, BusinessDayMode::SameTime);
            let _ = c.add_business_days(t, k.max(1), BusinessDayMode::EndOfDay);
            let _ = c.add_calendar_days(t, k);
            let _ = c.next_open(t);
            let _ = c.is_open(t);
            if let Ok(it) = c.open_intervals(t, t + TimeDelta::days(3)) {
                let _ = it.count();
            }
        }
    }
}
