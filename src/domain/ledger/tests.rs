//! One test per rule of the issue, the seed contracts (Concinnity Tiers I-IV, 24social),
//! and the period boundary cases at the ledger level. Numbers are worked by hand beside
//! each case; docs/hours.md repeats the same examples.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::*;
use crate::domain::names::{ExternalId, PlanName, RoleName, ShortText};

pub(super) fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
}

pub(super) fn local(zone: Tz, y: i32, m: u32, day: u32, h: u32, mi: u32) -> DateTime<Utc> {
    zone.with_ymd_and_hms(y, m, day, h, mi, 0)
        .single()
        .expect("unambiguous local time")
        .with_timezone(&Utc)
}

pub(super) fn bucket(name: &str) -> BucketName {
    BucketName::parse(name).expect("valid bucket")
}

pub(super) fn kind(name: &str) -> ActivityKind {
    ActivityKind::parse(name).expect("valid kind")
}

pub(super) fn id(s: &str) -> ExternalId {
    ExternalId::parse(s).expect("valid id")
}

pub(super) fn text(s: &str) -> ShortText {
    ShortText::parse(s).expect("valid text")
}

pub(super) fn gbp() -> Currency {
    Currency::parse("GBP").expect("valid currency")
}

fn usd() -> Currency {
    Currency::parse("USD").expect("valid currency")
}

pub(super) fn plan(name: &str, buckets: Vec<BucketTerms>) -> Plan {
    Plan {
        name: PlanName::parse(name).expect("valid plan"),
        buckets,
    }
}

pub(super) fn bill(rate: i64, currency: Currency) -> Overage {
    Overage::Bill {
        rate_minor_units_per_hour: rate,
        currency,
    }
}

fn ticket(s: &str, authorised: bool) -> Option<TicketRef> {
    Some(TicketRef {
        id: id(s),
        authorised_by_main_stakeholder: authorised,
    })
}

/// One account, deciding and applying as the store would.
struct Account {
    ledger: Ledger,
}

impl Account {
    fn new(zone: Tz, start: NaiveDate, versions: Vec<TermsVersion>, b: &str) -> Account {
        let contract = Contract {
            zone,
            start,
            terms: TermsHistory::new(versions).expect("valid terms"),
        };
        Account {
            ledger: Ledger::new(&contract, bucket(b), Vec::new()).expect("bucket exists"),
        }
    }

    fn one(zone: Tz, start: NaiveDate, terms: BucketTerms) -> Account {
        let b = terms.bucket.to_string();
        let v = TermsVersion::from_date(zone, start, plan("p", vec![terms])).expect("in range");
        Account::new(zone, start, vec![v], &b)
    }

    fn run(&mut self, c: Command, now: DateTime<Utc>) -> Result<Vec<Entry>, LedgerError> {
        let entries = self.ledger.decide(&c, now)?;
        self.ledger
            .apply(entries.clone())
            .expect("decided entries fold");
        Ok(entries)
    }

    fn ok(&mut self, c: Command, now: DateTime<Utc>) -> Vec<Entry> {
        self.run(c, now).expect("accepted")
    }

    /// A refused command posts nothing.
    fn refused(&mut self, c: Command, now: DateTime<Utc>) -> LedgerError {
        let before = self.ledger.entries().len();
        let err = self.run(c, now).expect_err("refused");
        assert_eq!(self.ledger.entries().len(), before, "nothing posted");
        err
    }

    fn use_(&mut self, minutes: u32, at: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Entry> {
        self.ok(usage(minutes, at, None, None), now)
    }

    fn statement(&self, start: NaiveDate) -> Statement {
        let k = self.ledger.period_starting(start).expect("a period start");
        self.ledger.statement(k).expect("adds up")
    }

    fn read(&mut self, start: NaiveDate, now: DateTime<Utc>) -> Statement {
        self.ok(Command::ClosePeriods, now);
        self.statement(start)
    }
}

fn usage(
    minutes: u32,
    service_at: DateTime<Utc>,
    activity: Option<&str>,
    ticket: Option<TicketRef>,
) -> Command {
    Command::RecordUsage(Usage {
        minutes,
        activity: activity.map(kind),
        service_at,
        ticket,
        actor: id("agent"),
        reason: None,
    })
}

fn hold(h: &str, minutes: u32, service_at: DateTime<Utc>) -> Command {
    Command::Hold {
        hold: id(h),
        minutes,
        service_at,
        activity: None,
        ticket: None,
        actor: id("agent"),
    }
}

fn utc(y: i32, m: u32, day: u32, h: u32) -> DateTime<Utc> {
    local(chrono_tz::UTC, y, m, day, h, 0)
}

fn monthly(allowance: u32) -> BucketTerms {
    BucketTerms::new(bucket("meetings"), PeriodUnit::Month, allowance)
}

fn kinds(entries: &[Entry]) -> Vec<EntryKind> {
    entries.iter().map(|e| e.kind).collect()
}

fn usage_line(e: &Entry) -> UsageLine {
    e.usage.clone().expect("a usage line")
}

#[test]
fn rounding_comes_before_splitting() {
    // 15-minute rounding, 40 minutes left: 50 minutes used are 60 billable, 40 from the
    // allowance and 20 overage; at 60.00/h the overage is 20.00.
    let mut terms = monthly(100);
    terms.rounding_increment_minutes = 15;
    terms.overage = bill(6000, gbp());
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), terms);
    a.use_(60, utc(2026, 3, 2, 9), utc(2026, 3, 2, 10));
    let posted = a.use_(50, utc(2026, 3, 3, 9), utc(2026, 3, 3, 10));
    let e = posted.last().expect("the usage");
    assert_eq!(e.kind, EntryKind::Consume);
    assert_eq!(
        usage_line(e),
        UsageLine {
            raw_minutes: 50,
            non_deducted_minutes: 0,
            billable_minutes: 60,
            from_allowance: 40,
            overage_minutes: 20,
            overage_amount: 2000,
            currency: Some(gbp()),
        }
    );
    assert_eq!(e.minutes, -40);
    let s = a.statement(d(2026, 3, 1));
    assert_eq!(
        (s.consumed_from_allowance, s.overage_minutes, s.closing),
        (100, 20, 0)
    );
    assert_eq!(s.overage_amount, BTreeMap::from([(gbp(), 2000)]));
    assert_eq!((s.raw_minutes, s.billable_minutes), (110, 120));
}

#[test]
fn overage_is_counted_apart_and_reject_refuses_the_whole_usage() {
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), monthly(60));
    a.use_(45, utc(2026, 3, 2, 9), utc(2026, 3, 2, 10));
    // 20 more with 15 left: refused whole, nothing posted, FAILED_PRECONDITION.
    let err = a.refused(
        usage(20, utc(2026, 3, 3, 9), None, None),
        utc(2026, 3, 3, 10),
    );
    assert!(
        matches!(
            err,
            LedgerError::OverageRejected {
                billable: 20,
                available: 15,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::FailedPrecondition);
    // 15 fit exactly.
    a.use_(15, utc(2026, 3, 3, 9), utc(2026, 3, 3, 10));
    let s = a.statement(d(2026, 3, 1));
    assert_eq!(
        (s.consumed_from_allowance, s.closing, s.overage_minutes),
        (60, 0, 0)
    );

    // Under `bill` the allowance stops at zero and the rest is overage.
    let mut terms = monthly(60);
    terms.overage = bill(9000, gbp());
    let mut b = Account::one(chrono_tz::UTC, d(2026, 3, 1), terms);
    b.use_(100, utc(2026, 3, 2, 9), utc(2026, 3, 2, 10));
    b.use_(30, utc(2026, 3, 3, 9), utc(2026, 3, 3, 10));
    let s = b.statement(d(2026, 3, 1));
    assert_eq!(
        (s.consumed_from_allowance, s.closing, s.available),
        (60, 0, 0)
    );
    // 40 and 30 minutes at 90.00/h: 60.00 and 45.00.
    assert_eq!(s.overage_minutes, 70);
    assert_eq!(s.overage_amount, BTreeMap::from([(gbp(), 10500)]));
}

#[test]
fn overage_amounts_round_half_up_per_entry() {
    // 1 minute at 100/h is 1.67 -> 2; at 90/h 1.5 -> 2; at 30/h 0.5 -> 1; at 29/h 0.48 -> 0.
    assert_eq!(overage_amount(100, 1), 2);
    assert_eq!(overage_amount(90, 1), 2);
    assert_eq!(overage_amount(30, 1), 1);
    assert_eq!(overage_amount(29, 1), 0);
    assert_eq!(overage_amount(8500, 45), 6375);
    // Per entry: three 1-minute overages at 30/h are 1 each, 3 in all (not 1.5 -> 2).
    let mut terms = monthly(0);
    terms.overage = bill(30, gbp());
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), terms);
    for h in 1..=3 {
        a.use_(1, utc(2026, 3, 2, h), utc(2026, 3, 2, 10));
    }
    assert_eq!(
        a.statement(d(2026, 3, 1)).overage_amount,
        BTreeMap::from([(gbp(), 3)])
    );
}

#[test]
fn carried_minutes_are_used_before_the_periods_own_earliest_expiring_first() {
    // 60 a month, each month's minutes usable for two more months.
    let mut terms = monthly(60);
    terms.rollover = Rollover::Expiring { periods: 2 };
    let mut a = Account::one(chrono_tz::UTC, d(2026, 1, 1), terms);
    a.ok(Command::ClosePeriods, utc(2026, 1, 2, 0));
    // January: nothing used. February: 20, taken from January's lot.
    a.use_(20, utc(2026, 2, 10, 9), utc(2026, 2, 10, 10));
    let feb = a.read(d(2026, 2, 1), utc(2026, 3, 10, 0));
    assert_eq!(
        (feb.rolled_in, feb.granted, feb.consumed_from_allowance),
        (60, 60, 20)
    );
    // February closes with 40 of January's lot (last usable in March) and its own 60
    // (last usable in April): both roll.
    assert_eq!((feb.expired, feb.closing), (0, 100));
    // March: 50 used: 40 from January's lot (expires first), 10 from February's.
    a.use_(50, utc(2026, 3, 10, 9), utc(2026, 3, 10, 10));
    let mar = a.read(d(2026, 3, 1), utc(2026, 4, 10, 0));
    assert_eq!(
        (mar.rolled_in, mar.granted, mar.consumed_from_allowance),
        (100, 60, 50)
    );
    assert_eq!((mar.expired, mar.closing), (0, 110));
    let apr = a.statement(d(2026, 4, 1));
    let lots: Vec<(NaiveDate, Option<NaiveDate>, i64)> = apr
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Rollover)
        .map(|e| {
            let lot = e.lot.expect("a lot");
            (
                lot.origin.start(),
                lot.expires.map(|k| k.start()),
                e.minutes,
            )
        })
        .collect();
    assert_eq!(
        lots,
        vec![
            (d(2026, 2, 1), Some(d(2026, 4, 1)), 50),
            (d(2026, 3, 1), Some(d(2026, 5, 1)), 60),
        ]
    );
    // April: nothing used; at its close February's 50 reach their last period and expire,
    // March's 60 and April's own 60 roll.
    let apr = a.read(d(2026, 4, 1), utc(2026, 5, 10, 0));
    assert_eq!((apr.expired, apr.closing), (50, 120));
}

#[test]
fn rollover_none_all_and_capped() {
    for (rule, expired, carried) in [
        (Rollover::None, 40, 0),
        (Rollover::All, 0, 40),
        (Rollover::Capped { minutes: 30 }, 10, 30),
    ] {
        let mut terms = monthly(60);
        terms.rollover = rule;
        let mut a = Account::one(chrono_tz::UTC, d(2026, 1, 1), terms);
        a.use_(20, utc(2026, 1, 10, 9), utc(2026, 1, 10, 10));
        let jan = a.read(d(2026, 1, 1), utc(2026, 2, 10, 0));
        assert_eq!((jan.expired, jan.closing), (expired, carried), "{rule:?}");
        let feb = a.statement(d(2026, 2, 1));
        assert_eq!(
            (feb.rolled_in, feb.granted, feb.closing),
            (carried, 60, carried + 60)
        );
    }
}

fn tier(name: &str, meetings: u32, prorate: bool) -> Plan {
    let mut m = monthly(meetings);
    m.prorate_mid_period = prorate;
    plan(name, vec![m])
}

#[test]
fn a_plan_change_prorates_by_time_share_when_the_plan_says_so() {
    // April has 30 days; tier-4 from 16 April 00:00: 15 days of each. Prorated:
    // 60 x 15/30 + 180 x 15/30 = 30 + 90 = 120.
    let z = chrono_tz::UTC;
    let versions = |prorate| {
        vec![
            TermsVersion::from_date(z, d(2026, 1, 1), tier("tier-3", 60, false)).expect("ok"),
            TermsVersion::from_date(z, d(2026, 4, 16), tier("tier-4", 180, prorate)).expect("ok"),
        ]
    };
    // The account runs on Tier III; on 2 April April's 60 are granted.
    let mut a = Account::new(z, d(2026, 1, 1), versions(true)[..1].to_vec(), "meetings");
    assert_eq!(a.read(d(2026, 4, 1), utc(2026, 4, 2, 0)).granted, 60);
    // On 10 April the move to Tier IV from 16 April is recorded: the account is refolded
    // on the new history and the grant brought to 120 by a second grant; the first is not
    // rewritten.
    let contract = Contract {
        zone: z,
        start: d(2026, 1, 1),
        terms: TermsHistory::new(versions(true)).expect("valid"),
    };
    a.ledger =
        Ledger::new(&contract, bucket("meetings"), a.ledger.entries().to_vec()).expect("folds");
    assert_eq!(a.read(d(2026, 4, 1), utc(2026, 4, 10, 0)).granted, 120);
    let grants: Vec<i64> = a
        .statement(d(2026, 4, 1))
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Grant)
        .map(|e| e.minutes)
        .collect();
    assert_eq!(grants, vec![60, 60]);
    assert_eq!(a.read(d(2026, 5, 1), utc(2026, 5, 2, 0)).granted, 180);

    // Without proration the new allowance starts with the next period.
    let mut b = Account::new(z, d(2026, 1, 1), versions(false), "meetings");
    assert_eq!(b.read(d(2026, 4, 1), utc(2026, 4, 20, 0)).granted, 60);
    assert_eq!(b.read(d(2026, 5, 1), utc(2026, 5, 2, 0)).granted, 180);

    // A prorated change in a 31-day month rounds down: 60 x 10/31 + 180 x 21/31 = 141.29.
    let v = vec![
        TermsVersion::from_date(z, d(2026, 1, 1), tier("tier-3", 60, false)).expect("ok"),
        TermsVersion::from_date(z, d(2026, 5, 11), tier("tier-4", 180, true)).expect("ok"),
    ];
    let mut c = Account::new(z, d(2026, 1, 1), v, "meetings");
    assert_eq!(c.read(d(2026, 5, 1), utc(2026, 5, 20, 0)).granted, 141);
}

#[test]
fn a_prorated_downgrade_takes_back_only_unused_minutes() {
    // Tier IV (180) to Tier III (60) from 16 April, prorated: 90 + 30 = 120 due. 150 are
    // consumed already, so only the 30 left are taken back; consumption is not rewritten.
    let z = chrono_tz::UTC;
    let mut a = Account::new(
        z,
        d(2026, 4, 1),
        vec![TermsVersion::from_date(z, d(2026, 4, 1), tier("tier-4", 180, false)).expect("ok")],
        "meetings",
    );
    a.use_(150, utc(2026, 4, 10, 9), utc(2026, 4, 10, 10));
    let contract = Contract {
        zone: z,
        start: d(2026, 4, 1),
        terms: TermsHistory::new(vec![
            TermsVersion::from_date(z, d(2026, 4, 1), tier("tier-4", 180, false)).expect("ok"),
            TermsVersion::from_date(z, d(2026, 4, 16), tier("tier-3", 60, true)).expect("ok"),
        ])
        .expect("valid"),
    };
    let mut a = Account {
        ledger: Ledger::new(&contract, bucket("meetings"), a.ledger.entries().to_vec())
            .expect("folds"),
    };
    let s = a.read(d(2026, 4, 1), utc(2026, 4, 17, 0));
    assert_eq!(
        (s.granted, s.consumed_from_allowance, s.closing),
        (150, 150, 0)
    );
}

#[test]
fn terms_apply_from_their_effective_instant() {
    // Rounding changes from none to 30 minutes at 15 March 12:00: a usage served before
    // is counted as is even when recorded after.
    let z = chrono_tz::UTC;
    let mut rounded = monthly(600);
    rounded.rounding_increment_minutes = 30;
    let v = vec![
        TermsVersion {
            effective_from: utc(2026, 3, 1, 0),
            plan: plan("a", vec![monthly(600)]),
        },
        TermsVersion {
            effective_from: utc(2026, 3, 15, 12),
            plan: plan("b", vec![rounded]),
        },
    ];
    let mut a = Account::new(z, d(2026, 3, 1), v, "meetings");
    let before = a.use_(10, utc(2026, 3, 15, 11), utc(2026, 3, 16, 0));
    let after = a.use_(10, utc(2026, 3, 15, 12), utc(2026, 3, 16, 0));
    assert_eq!(
        usage_line(before.last().expect("usage")).billable_minutes,
        10
    );
    assert_eq!(
        usage_line(after.last().expect("usage")).billable_minutes,
        30
    );
}

#[test]
fn usage_for_a_closed_period_is_posted_in_the_open_one_and_closed_statements_never_change() {
    let mut terms = monthly(60);
    terms.overage = bill(6000, gbp());
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), terms);
    a.use_(30, utc(2026, 3, 20, 9), utc(2026, 3, 20, 10));
    // March ends at 1 April 00:00; within the 72-hour grace window (until 4 April 00:00)
    // it still takes usage.
    a.use_(10, utc(2026, 3, 31, 23), utc(2026, 4, 3, 23));
    let mar = a.read(d(2026, 3, 1), utc(2026, 4, 3, 23));
    assert!(!mar.closed);
    assert_eq!(mar.consumed_from_allowance, 40);
    // At 4 April 00:00 March closes: 20 expire.
    let mar = a.read(d(2026, 3, 1), utc(2026, 4, 4, 0));
    assert!(mar.closed);
    assert_eq!((mar.expired, mar.closing), (20, 0));
    // 45 minutes served on 31 March, recorded 5 April: posted in April as an adjustment
    // that names its service instant.
    let posted = a.use_(45, utc(2026, 3, 31, 12), utc(2026, 4, 5, 9));
    let e = posted.last().expect("the usage");
    assert_eq!(e.kind, EntryKind::Adjust);
    assert_eq!(e.period.start(), d(2026, 4, 1));
    assert_eq!(e.service_at, Some(utc(2026, 3, 31, 12)));
    assert_eq!(e.minutes, -45);
    let apr = a.statement(d(2026, 4, 1));
    assert_eq!(
        (
            apr.granted,
            apr.adjustments,
            apr.consumed_from_allowance,
            apr.closing
        ),
        (60, -45, 0, 15)
    );
    assert_eq!(
        a.statement(d(2026, 3, 1)),
        mar,
        "a closed statement never changes"
    );
    // A server whose clock lags behind (3 April, before the close it did not see) still
    // posts March's usage in April.
    let lagging = a.use_(5, utc(2026, 3, 31, 13), utc(2026, 4, 3, 12));
    assert_eq!(
        lagging.last().map(|e| (e.kind, e.period.start())),
        Some((EntryKind::Adjust, d(2026, 4, 1)))
    );
    a.ok(
        Command::Reverse {
            entry: lagging.last().expect("usage").seq,
            reason: text("duplicate"),
            actor: id("ops"),
        },
        utc(2026, 4, 5, 9),
    );
    // Its reversal too lands in April.
    let seq = e.seq;
    a.ok(
        Command::Reverse {
            entry: seq,
            reason: text("wrong account"),
            actor: id("ops"),
        },
        utc(2026, 4, 5, 10),
    );
    assert_eq!(a.statement(d(2026, 4, 1)).closing, 60);
    assert_eq!(a.statement(d(2026, 3, 1)), mar);
}

#[test]
fn the_grace_window_is_set_per_plan_and_billing_can_lock_early() {
    let mut terms = monthly(60);
    terms.grace_hours = 24;
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), terms);
    assert_eq!(
        a.ledger
            .closes_at(a.ledger.period_starting(d(2026, 3, 1)).expect("ok")),
        Ok(utc(2026, 4, 2, 0))
    );
    assert!(!a.read(d(2026, 3, 1), utc(2026, 4, 1, 23)).closed);
    assert!(a.read(d(2026, 3, 1), utc(2026, 4, 2, 0)).closed);

    let mut b = Account::one(chrono_tz::UTC, d(2026, 3, 1), monthly(60));
    let mar = b.ledger.period_starting(d(2026, 3, 1)).expect("ok");
    let lock = |period| Command::Lock {
        period,
        actor: id("billing"),
    };
    let err = b.refused(lock(mar), utc(2026, 3, 31, 23));
    assert_eq!(err, LedgerError::PeriodNotEnded(mar));
    // March's grant, its close (locked by billing), April's grant.
    let posted = b.ok(lock(mar), utc(2026, 4, 1, 1));
    assert_eq!(
        kinds(&posted),
        vec![EntryKind::Grant, EntryKind::Expire, EntryKind::Grant]
    );
    assert_eq!(posted[1].actor, Some(id("billing")));
    // Locked: usage for March is now late.
    let late = b.use_(10, utc(2026, 3, 31, 12), utc(2026, 4, 1, 2));
    assert_eq!(kinds(&late), vec![EntryKind::Adjust]);
    // Locking again posts nothing.
    assert!(b.ok(lock(mar), utc(2026, 4, 1, 3)).is_empty());
}

#[test]
fn period_close_posts_once_on_first_touch_or_by_the_job() {
    let mut terms = monthly(60);
    terms.rollover = Rollover::All;
    let mut a = Account::one(chrono_tz::UTC, d(2026, 1, 1), terms);
    a.use_(20, utc(2026, 1, 10, 9), utc(2026, 1, 10, 10));
    // Nothing touches the account until 20 March: the first read posts January's close,
    // February's grant and close, March's grant, in order. Under `all` each lot rolls on.
    let read = a.ok(Command::ClosePeriods, utc(2026, 3, 20, 0));
    let summary: Vec<(EntryKind, NaiveDate, i64)> = read
        .iter()
        .map(|e| (e.kind, e.period.start(), e.minutes))
        .collect();
    assert_eq!(
        summary,
        vec![
            (EntryKind::Rollover, d(2026, 2, 1), 40),
            (EntryKind::Expire, d(2026, 1, 1), 0),
            (EntryKind::Grant, d(2026, 2, 1), 60),
            // Each lot rolls on its own, keeping its origin.
            (EntryKind::Rollover, d(2026, 3, 1), 40),
            (EntryKind::Rollover, d(2026, 3, 1), 60),
            (EntryKind::Expire, d(2026, 2, 1), 0),
            (EntryKind::Grant, d(2026, 3, 1), 60),
        ]
    );
    assert_eq!(read[0].closes.map(|k| k.start()), Some(d(2026, 1, 1)));
    // Deciding again, by the job or a read, posts nothing more.
    assert!(a.ok(Command::ClosePeriods, utc(2026, 3, 20, 0)).is_empty());
    assert!(a.ok(Command::ClosePeriods, utc(2026, 3, 25, 0)).is_empty());
    // Two deciders racing from the same state produce the same entries with the same
    // numbers: the store's unique key keeps one.
    let b = Account::one(chrono_tz::UTC, d(2026, 1, 1), monthly(60));
    let x = b
        .ledger
        .decide(&Command::ClosePeriods, utc(2026, 3, 20, 0))
        .expect("ok");
    let y = b
        .ledger
        .decide(&Command::ClosePeriods, utc(2026, 3, 20, 0))
        .expect("ok");
    assert_eq!(x, y);
}

#[test]
fn held_minutes_count_as_used_until_captured_or_released() {
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), monthly(60));
    let meeting = utc(2026, 3, 20, 14);
    a.ok(hold("m1", 45, meeting), utc(2026, 3, 2, 9));
    assert_eq!(a.statement(d(2026, 3, 1)).available, 15);
    // Two bookings cannot promise the same hour.
    let err = a.refused(hold("m2", 30, meeting), utc(2026, 3, 2, 10));
    assert!(
        matches!(err, LedgerError::OverageRejected { available: 15, .. }),
        "{err}"
    );
    // Nor can usage take held minutes.
    a.refused(
        usage(20, utc(2026, 3, 2, 8), None, None),
        utc(2026, 3, 2, 10),
    );
    // The meeting took 30: 30 consumed, the other 15 released.
    let posted = a.ok(
        Command::Capture {
            hold: id("m1"),
            minutes: 30,
            actor: id("agent"),
        },
        utc(2026, 3, 20, 15),
    );
    assert_eq!(kinds(&posted), vec![EntryKind::Capture, EntryKind::Release]);
    assert_eq!(
        (
            posted[0].minutes,
            posted[0].held_minutes,
            posted[1].held_minutes
        ),
        (-30, -30, -15)
    );
    let s = a.statement(d(2026, 3, 1));
    assert_eq!(
        (s.held, s.available, s.consumed_from_allowance),
        (0, 30, 30)
    );
    assert_eq!(a.ledger.hold_status(&id("m1")), Some(HoldStatus::Captured));
    let again = a.refused(
        Command::Capture {
            hold: id("m1"),
            minutes: 30,
            actor: id("agent"),
        },
        utc(2026, 3, 20, 16),
    );
    assert!(matches!(again, LedgerError::HoldNotOpen { .. }));
    // Cancelled bookings give their minutes back.
    a.ok(hold("m3", 30, utc(2026, 3, 25, 14)), utc(2026, 3, 21, 9));
    assert_eq!(a.statement(d(2026, 3, 1)).available, 0);
    a.ok(
        Command::Release {
            hold: id("m3"),
            actor: id("agent"),
            reason: None,
        },
        utc(2026, 3, 22, 9),
    );
    assert_eq!(a.statement(d(2026, 3, 1)).available, 30);
    // A booking never captured is released when its period closes.
    a.ok(hold("m4", 20, utc(2026, 3, 30, 14)), utc(2026, 3, 22, 9));
    let closing = a.ok(Command::ClosePeriods, utc(2026, 4, 10, 0));
    assert_eq!(closing[0].kind, EntryKind::Release);
    assert_eq!(closing[0].hold, Some(id("m4")));
    assert_eq!(a.statement(d(2026, 3, 1)).expired, 30);
}

#[test]
fn a_booking_for_next_month_holds_next_months_allowance() {
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), monthly(60));
    a.ok(hold("apr", 60, utc(2026, 4, 2, 14)), utc(2026, 3, 28, 9));
    assert_eq!(a.statement(d(2026, 4, 1)).available, 0);
    assert_eq!(a.statement(d(2026, 3, 1)).available, 60);
    a.refused(hold("apr-2", 15, utc(2026, 4, 3, 14)), utc(2026, 3, 28, 9));
    // Bookings reach at most 36 periods ahead.
    let far = a.refused(hold("far", 15, utc(2029, 4, 3, 14)), utc(2026, 3, 28, 9));
    assert_eq!(far.class(), ErrorClass::InvalidArgument);
    assert!(
        a.run(hold("far", 15, utc(2029, 3, 3, 14)), utc(2026, 3, 28, 9))
            .is_ok()
    );
}

#[test]
fn a_bucket_can_require_work_authorised_by_the_main_stakeholder() {
    let mut terms = monthly(600);
    terms.requires_authorisation = true;
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), terms);
    let t = utc(2026, 3, 2, 9);
    let none = a.refused(usage(30, t, None, None), utc(2026, 3, 2, 10));
    assert_eq!(none.class(), ErrorClass::FailedPrecondition);
    let bob = a.refused(
        usage(30, t, None, ticket("S-2", false)),
        utc(2026, 3, 2, 10),
    );
    assert!(matches!(bob, LedgerError::NotAuthorised(_)));
    let ok = a.ok(usage(30, t, None, ticket("S-1", true)), utc(2026, 3, 2, 10));
    assert_eq!(ok.last().and_then(|e| e.ticket.clone()), Some(id("S-1")));
}

#[test]
fn who_authorised_is_checked_against_the_main_stakeholder_role_at_the_time() {
    use crate::domain::names::ResourceId;
    use crate::domain::organization::{Contact, Organization};
    let contact = |cid: &str, role: &str, until: Option<DateTime<Utc>>| Contact {
        id: id(cid),
        name: text(cid),
        role: Some(RoleName::parse(role).expect("valid")),
        effective_from: None,
        effective_until: until,
    };
    let org = Organization {
        display_name: text("Brand"),
        zone: chrono_tz::Europe::London,
        plan: None,
        policy: ResourceId::parse("social").expect("valid"),
        calendars: vec![],
        external_ids: vec![],
        contacts: vec![
            contact("ann", MAIN_STAKEHOLDER, Some(utc(2026, 4, 1, 0))),
            contact("bob", "marketing", None),
        ],
    };
    assert!(authorised_by_main_stakeholder(
        &org,
        &id("ann"),
        utc(2026, 3, 2, 9)
    ));
    assert!(!authorised_by_main_stakeholder(
        &org,
        &id("ann"),
        utc(2026, 4, 2, 9)
    ));
    assert!(!authorised_by_main_stakeholder(
        &org,
        &id("bob"),
        utc(2026, 3, 2, 9)
    ));
    assert!(!authorised_by_main_stakeholder(
        &org,
        &id("eve"),
        utc(2026, 3, 2, 9)
    ));
}

#[test]
fn reversals_restore_what_was_drawn_and_corrections_need_a_reason_and_an_actor() {
    let mut terms = monthly(60);
    terms.rollover = Rollover::Expiring { periods: 1 };
    terms.overage = bill(6000, gbp());
    let mut a = Account::one(chrono_tz::UTC, d(2026, 2, 1), terms);
    a.ok(Command::ClosePeriods, utc(2026, 2, 2, 0));
    // March: 60 carried from February plus 60 of its own. 90 used: 60 carried, 30 own.
    let posted = a.use_(90, utc(2026, 3, 5, 9), utc(2026, 3, 5, 10));
    let seq = posted.last().expect("usage").seq;
    let rev = |entry| Command::Reverse {
        entry,
        reason: text("logged against the wrong client"),
        actor: id("ops"),
    };
    let r = a.ok(rev(seq), utc(2026, 3, 6, 9));
    assert_eq!(
        (r[0].kind, r[0].minutes, r[0].reverses),
        (EntryKind::Reversal, 90, Some(seq))
    );
    assert_eq!(r[0].actor, Some(id("ops")));
    let s = a.statement(d(2026, 3, 1));
    assert_eq!(
        (s.consumed_from_allowance, s.closing, s.raw_minutes),
        (0, 120, 0)
    );
    // The carried lot got its 60 back: at the close it expires (February's, last usable
    // in March), March's own 60 roll.
    let s = a.read(d(2026, 3, 1), utc(2026, 4, 10, 0));
    assert_eq!((s.expired, s.closing), (60, 60));
    let err = a.refused(rev(seq), utc(2026, 4, 10, 1));
    assert_eq!(err, LedgerError::AlreadyReversed { seq, by: r[0].seq });
    let grant = a.statement(d(2026, 3, 1)).entries[0].seq;
    assert!(matches!(
        a.refused(rev(grant), utc(2026, 4, 10, 1)),
        LedgerError::NotReversible { .. }
    ));
    assert_eq!(
        a.refused(rev(999), utc(2026, 4, 10, 1)),
        LedgerError::UnknownEntry(999)
    );
    // Overage is reversed with its amount.
    let over = a.use_(75, utc(2026, 4, 10, 9), utc(2026, 4, 10, 10));
    a.ok(rev(over.last().expect("usage").seq), utc(2026, 4, 10, 11));
    let s = a.statement(d(2026, 4, 1));
    assert_eq!(
        (s.overage_minutes, s.overage_amount.len(), s.closing),
        (0, 0, 120)
    );
}

#[test]
fn manual_adjustments_never_take_the_balance_below_zero() {
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), monthly(60));
    let adjust = |minutes| Command::Adjust {
        minutes,
        reason: text("goodwill"),
        actor: id("ops"),
    };
    a.ok(adjust(30), utc(2026, 3, 2, 9));
    let err = a.refused(adjust(-100), utc(2026, 3, 2, 10));
    assert!(matches!(
        err,
        LedgerError::InsufficientBalance {
            needed: 100,
            available: 90,
            ..
        }
    ));
    a.ok(adjust(-90), utc(2026, 3, 2, 10));
    let s = a.statement(d(2026, 3, 1));
    assert_eq!((s.granted, s.adjustments, s.closing), (60, -60, 0));
    assert!(matches!(
        a.refused(adjust(0), utc(2026, 3, 2, 11)),
        LedgerError::InvalidMinutes { .. }
    ));
}

#[test]
fn usage_is_attributed_by_service_instant_at_month_edges_in_extreme_zones() {
    for zone in [
        chrono_tz::Pacific::Kiritimati,
        chrono_tz::Pacific::Pago_Pago,
        chrono_tz::Europe::London,
        chrono_tz::America::Toronto,
    ] {
        let mut terms = monthly(600);
        terms.rollover = Rollover::All;
        let mut a = Account::one(zone, d(2026, 3, 1), terms);
        let recorded = local(zone, 2026, 4, 1, 12, 0);
        // 23:59 local on 31 March is March; 00:00 local on 1 April is April.
        let last = a.use_(10, local(zone, 2026, 3, 31, 23, 59), recorded);
        let first = a.use_(20, local(zone, 2026, 4, 1, 0, 0), recorded);
        assert_eq!(
            last.last().map(|e| e.period.start()),
            Some(d(2026, 3, 1)),
            "{zone}"
        );
        assert_eq!(
            first.last().map(|e| e.period.start()),
            Some(d(2026, 4, 1)),
            "{zone}"
        );
        assert_eq!(a.statement(d(2026, 3, 1)).consumed_from_allowance, 10);
        assert_eq!(a.statement(d(2026, 4, 1)).consumed_from_allowance, 20);
        // The period's boundaries are local midnights.
        let mar = a.statement(d(2026, 3, 1));
        assert_eq!(mar.starts_at, local(zone, 2026, 3, 1, 0, 0), "{zone}");
        assert_eq!(mar.ends_at, local(zone, 2026, 4, 1, 0, 0), "{zone}");
    }
}

#[test]
fn a_dst_change_inside_a_period_does_not_move_its_boundaries() {
    // London springs forward on 29 March 2026: March runs 00:00 GMT 1 March to 00:00 BST
    // 1 April, 743 hours. Its grace window ends 72 real hours later.
    let mut a = Account::one(chrono_tz::Europe::London, d(2026, 3, 1), monthly(60));
    let s = a.read(d(2026, 3, 1), utc(2026, 3, 2, 0));
    assert_eq!(s.starts_at, utc(2026, 3, 1, 0));
    assert_eq!(s.ends_at, utc(2026, 3, 31, 23));
    assert_eq!((s.ends_at - s.starts_at).num_hours(), 743);
    assert_eq!(s.closes_at, utc(2026, 4, 3, 23));
}

#[test]
fn free_activities_are_recorded_not_deducted_up_to_their_caps() {
    let mut terms = monthly(600);
    terms.rounding_increment_minutes = 15;
    terms.free_activities = vec![FreeActivity {
        kind: kind("weekly_review"),
        per_occurrence_cap_minutes: 30,
        frequency: Frequency::PerIsoWeek,
        max_per_frequency: 1,
    }];
    let z = chrono_tz::Europe::London;
    let mut a = Account::one(z, d(2026, 3, 1), terms);
    let review = |m, day, h| usage(m, local(z, 2026, 3, day, h, 0), Some("weekly_review"), None);
    // A 45-minute weekly review deducts 15.
    let e = a.ok(review(45, 2, 10), local(z, 2026, 3, 2, 11, 0));
    let line = usage_line(e.last().expect("usage"));
    assert_eq!((line.non_deducted_minutes, line.billable_minutes), (30, 15));
    // A second review the same ISO week is deducted whole (20 rounded to 30).
    let e = a.ok(review(20, 6, 10), local(z, 2026, 3, 6, 11, 0));
    let line = usage_line(e.last().expect("usage"));
    assert_eq!((line.non_deducted_minutes, line.billable_minutes), (0, 30));
    // Sunday 8 March is still ISO week 10; Monday 9 March starts week 11.
    let e = a.ok(review(25, 8, 10), local(z, 2026, 3, 8, 11, 0));
    assert_eq!(usage_line(e.last().expect("usage")).non_deducted_minutes, 0);
    let e = a.ok(review(25, 9, 10), local(z, 2026, 3, 9, 11, 0));
    assert_eq!(usage_line(e.last().expect("usage")).billable_minutes, 0);
    let s = a.statement(d(2026, 3, 1));
    assert_eq!(
        s.non_deducted,
        BTreeMap::from([(kind("weekly_review"), 55)])
    );
    assert_eq!(s.consumed_from_allowance, 15 + 30 + 30);
}

#[test]
fn terms_are_validated_field_by_field() {
    let mut bad = monthly(60);
    bad.rounding_increment_minutes = 0;
    bad.free_activities = vec![
        FreeActivity {
            kind: kind("weekly_review"),
            per_occurrence_cap_minutes: 0,
            frequency: Frequency::PerIsoWeek,
            max_per_frequency: 1,
        },
        FreeActivity {
            kind: kind("weekly_review"),
            per_occurrence_cap_minutes: 30,
            frequency: Frequency::PerIsoWeek,
            max_per_frequency: 0,
        },
    ];
    bad.overage = bill(-1, gbp());
    let yearly = BucketTerms::new(bucket("meetings"), PeriodUnit::Year, 60);
    let err = TermsHistory::new(vec![
        TermsVersion {
            effective_from: utc(2026, 1, 1, 0),
            plan: plan("a", vec![bad, monthly(10)]),
        },
        TermsVersion {
            effective_from: utc(2026, 2, 1, 0),
            plan: plan("b", vec![yearly]),
        },
    ])
    .expect_err("invalid");
    let LedgerError::InvalidTerms(v) = err else {
        panic!("not a terms error: {err}");
    };
    let paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "versions[0].plan.buckets[0].overage.rate_minor_units_per_hour",
            "versions[0].plan.buckets[0].rounding_increment_minutes",
            "versions[0].plan.buckets[0].free_activities[0].per_occurrence_cap_minutes",
            "versions[0].plan.buckets[0].free_activities[1].kind",
            "versions[0].plan.buckets[0].free_activities[1].max_per_frequency",
            "versions[0].plan.buckets[1].bucket",
            "versions[1].plan.buckets[0].period",
        ]
    );
}

#[test]
fn terms_and_entries_round_trip_through_json() {
    let mut terms = monthly(60);
    terms.overage = bill(8500, gbp());
    terms.rollover = Rollover::Capped { minutes: 30 };
    let json = serde_json::to_string(&terms).expect("serialises");
    assert_eq!(
        serde_json::from_str::<BucketTerms>(&json).expect("parses"),
        terms
    );
    // Omitted fields take their defaults: reject, no rounding, 72 hours of grace.
    let minimal: BucketTerms =
        serde_json::from_str(r#"{"bucket":"training","period":"year","allowance_minutes":120}"#)
            .expect("parses");
    assert_eq!(
        minimal,
        BucketTerms::new(bucket("training"), PeriodUnit::Year, 120)
    );
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), terms);
    a.use_(90, utc(2026, 3, 2, 9), utc(2026, 3, 2, 10));
    let json = serde_json::to_string(a.ledger.entries()).expect("serialises");
    let back: Vec<Entry> = serde_json::from_str(&json).expect("parses");
    assert_eq!(back, a.ledger.entries());
}

#[test]
fn altered_entries_do_not_fold() {
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), monthly(60));
    a.use_(30, utc(2026, 3, 2, 9), utc(2026, 3, 2, 10));
    let contract = Contract {
        zone: chrono_tz::UTC,
        start: d(2026, 3, 1),
        terms: TermsHistory::single(utc(2026, 3, 1, 0), plan("p", vec![monthly(60)])).expect("ok"),
    };
    let mut entries = a.ledger.entries().to_vec();
    assert!(Ledger::new(&contract, bucket("meetings"), entries.clone()).is_ok());
    entries[1].minutes = -90;
    let err = Ledger::new(&contract, bucket("meetings"), entries.clone()).expect_err("altered");
    assert_eq!(err.class(), ErrorClass::Internal);
    entries.remove(0);
    assert!(matches!(
        Ledger::new(&contract, bucket("meetings"), entries),
        Err(LedgerError::Corrupt { seq: 2, .. })
    ));
    assert!(matches!(
        Ledger::new(&contract, bucket("training"), Vec::new()),
        Err(LedgerError::UnknownBucket(_))
    ));
}

// ---------------------------------------------------------------------------------------
// Seed contracts.

/// Concinnity Digital, Tiers I-IV (000_bd1a46f9f76fe2f5.txt). Meeting hours a month and
/// training hours a year; "additional time subject to additional fees" at a rate the
/// document does not give (the order form's; 150.00 USD an hour here).
fn concinnity(tier: u8) -> Plan {
    let (meetings, training) = match tier {
        3 => (60, 120),
        4 => (180, 720),
        _ => (0, 0),
    };
    let fees = bill(15_000, usd());
    let mut m = BucketTerms::new(bucket("meetings"), PeriodUnit::Month, meetings);
    m.overage = fees.clone();
    let mut t = BucketTerms::new(bucket("training"), PeriodUnit::Year, training);
    t.overage = fees;
    plan(&format!("tier-{tier}"), vec![m, t])
}

#[test]
fn concinnity_tiers_meeting_and_training_allowances() {
    let ny = chrono_tz::America::New_York;
    // Each tier: a 90-minute meeting and a 150-minute training in March 2026.
    // (tier, meetings granted, from allowance, overage; training granted, from, overage)
    for (tier, mg, mf, mo, tg, tf, to) in [
        (1u8, 0, 0, 90, 0, 0, 150),
        (2, 0, 0, 90, 0, 0, 150),
        (3, 60, 60, 30, 120, 120, 30),
        (4, 180, 90, 0, 720, 150, 0),
    ] {
        let v = TermsVersion::from_date(ny, d(2026, 1, 15), concinnity(tier)).expect("ok");
        let contract = Contract {
            zone: ny,
            start: d(2026, 1, 15),
            terms: TermsHistory::new(vec![v]).expect("valid"),
        };
        let recorded = local(ny, 2026, 3, 20, 17, 0);
        for (b, minutes, granted, from, over) in
            [("meetings", 90, mg, mf, mo), ("training", 150, tg, tf, to)]
        {
            let mut a = Account {
                ledger: Ledger::new(&contract, bucket(b), Vec::new()).expect("bucket"),
            };
            a.use_(minutes, local(ny, 2026, 3, 20, 10, 0), recorded);
            // Monthly periods run from the 15th; the training year from 15 January.
            let start = if b == "meetings" {
                d(2026, 3, 15)
            } else {
                d(2026, 1, 15)
            };
            let s = a.statement(start);
            assert_eq!(s.granted, granted, "tier {tier} {b}");
            assert_eq!(s.consumed_from_allowance, from, "tier {tier} {b}");
            assert_eq!(s.overage_minutes, over, "tier {tier} {b}");
            // 150.00/h: 30 minutes are 75.00; 90 are 225.00; 150 are 375.00.
            let amount = overage_amount(15_000, over);
            assert_eq!(
                s.overage_amount.get(&usd()).copied().unwrap_or(0),
                amount,
                "tier {tier} {b}"
            );
            assert_eq!(s.closing, granted - from, "tier {tier} {b}");
        }
    }
}

#[test]
fn concinnity_tier_three_meeting_hour_is_monthly_and_training_yearly() {
    let ny = chrono_tz::America::New_York;
    let v = TermsVersion::from_date(ny, d(2026, 1, 15), concinnity(3)).expect("ok");
    let contract = Contract {
        zone: ny,
        start: d(2026, 1, 15),
        terms: TermsHistory::new(vec![v]).expect("valid"),
    };
    let mut m = Account {
        ledger: Ledger::new(&contract, bucket("meetings"), Vec::new()).expect("bucket"),
    };
    let mut t = Account {
        ledger: Ledger::new(&contract, bucket("training"), Vec::new()).expect("bucket"),
    };
    let now = local(ny, 2026, 7, 1, 9, 0);
    m.ok(Command::ClosePeriods, now);
    t.ok(Command::ClosePeriods, now);
    // Five monthly meeting hours granted (15 Jan, Feb, Mar, Apr, May; June's from 15 June),
    // unused ones expired; training: one grant of 120 for the year.
    let grants = |a: &Account| {
        a.ledger
            .entries()
            .iter()
            .filter(|e| e.kind == EntryKind::Grant)
            .map(|e| (e.period.start(), e.minutes))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        grants(&m),
        [1, 2, 3, 4, 5, 6].map(|mo| (d(2026, mo, 15), 60)).to_vec()
    );
    assert_eq!(grants(&t), vec![(d(2026, 1, 15), 120)]);
    assert_eq!(m.statement(d(2026, 4, 15)).expired, 60);
}

#[test]
fn concinnity_tier_three_to_four_mid_month_prorated() {
    // Moving from Tier III to Tier IV on 25 March (the period runs 15 March - 15 April,
    // 31 days; 10 before, 21 after), prorated: 60 x 10/31 + 180 x 21/31 = 141.29 -> 141.
    let ny = chrono_tz::America::New_York;
    let mut four = concinnity(4);
    four.buckets
        .iter_mut()
        .for_each(|b| b.prorate_mid_period = true);
    let contract = Contract {
        zone: ny,
        start: d(2026, 1, 15),
        terms: TermsHistory::new(vec![
            TermsVersion::from_date(ny, d(2026, 1, 15), concinnity(3)).expect("ok"),
            TermsVersion::from_date(ny, d(2026, 3, 25), four).expect("ok"),
        ])
        .expect("valid"),
    };
    let mut m = Account {
        ledger: Ledger::new(&contract, bucket("meetings"), Vec::new()).expect("bucket"),
    };
    // New York springs forward on 8 March, outside this period: days are whole.
    assert_eq!(
        m.read(d(2026, 3, 15), local(ny, 2026, 3, 26, 9, 0)).granted,
        141
    );
    assert_eq!(
        m.read(d(2026, 4, 15), local(ny, 2026, 4, 16, 9, 0)).granted,
        180
    );
}

/// 24social's Customer Success hours (004_7d3a5ac72f4831df.txt): a fixed price per
/// contracted hour, unused hours never roll over, weekly (30 min) and quarterly (3 h)
/// reviews not deducted, work only on the main stakeholder's authority. The order form's
/// hours and rate are not in the document: 10 hours a month at 85.00 GBP here.
fn social(overage: Overage) -> BucketTerms {
    let mut t = BucketTerms::new(bucket("customer_success"), PeriodUnit::Month, 600);
    t.rollover = Rollover::None;
    t.overage = overage;
    t.rounding_increment_minutes = 15;
    t.requires_authorisation = true;
    t.free_activities = vec![
        FreeActivity {
            kind: kind("weekly_review"),
            per_occurrence_cap_minutes: 30,
            frequency: Frequency::PerIsoWeek,
            max_per_frequency: 1,
        },
        FreeActivity {
            kind: kind("quarterly_review"),
            per_occurrence_cap_minutes: 180,
            frequency: Frequency::PerCalendarQuarter,
            max_per_frequency: 1,
        },
    ];
    t
}

/// March 2026 for 24social's customer "brand" (Europe/London), under either overage rule.
/// Returns the account after the month's close has been read on 4 April.
fn social_march(overage: Overage) -> Account {
    let lon = chrono_tz::Europe::London;
    let mut a = Account::one(lon, d(2026, 3, 1), social(overage.clone()));
    let at = |day: u32, h: u32| local(lon, 2026, 3, day, h, 0);
    let later = |day: u32, h: u32| local(lon, 2026, 3, day, h + 2, 0);
    // Weekly review Monday 2 March, 30 minutes: free.
    a.ok(
        usage(30, at(2, 10), Some("weekly_review"), None),
        later(2, 10),
    );
    // Ticket S-1, authorised by Ann, 250 minutes: 255 billable.
    a.ok(usage(250, at(3, 9), None, ticket("S-1", true)), later(3, 9));
    // Ticket S-2, asked for by Bob, never authorised: refused, nothing posted.
    let err = a.refused(usage(60, at(4, 9), None, ticket("S-2", false)), later(4, 9));
    assert_eq!(err.class(), ErrorClass::FailedPrecondition);
    // Work without a ticket: refused too.
    a.refused(usage(60, at(4, 9), None, None), later(4, 9));
    // Weekly review Monday 9 March runs 45 minutes: 30 free, 15 deducted.
    a.ok(
        usage(45, at(9, 10), Some("weekly_review"), None),
        later(9, 10),
    );
    // A second review that ISO week (Thursday 12), 20 minutes: deducted, 30 billable.
    a.ok(
        usage(20, at(12, 15), Some("weekly_review"), None),
        later(12, 15),
    );
    // Quarterly review Monday 16 March, 200 minutes: 180 free, 20 rounded to 30.
    a.ok(
        usage(200, at(16, 10), Some("quarterly_review"), None),
        later(16, 10),
    );
    // Ticket S-3, authorised, 200 minutes: 210 billable. 540 used, 60 left.
    a.ok(
        usage(200, at(18, 9), None, ticket("S-3", true)),
        later(18, 9),
    );
    // Ticket S-4, authorised, 100 minutes: 105 billable, 45 beyond the allowance.
    let s4 = usage(100, at(24, 9), None, ticket("S-4", true));
    match overage {
        Overage::Reject => {
            let err = a.refused(s4, later(24, 9));
            assert!(matches!(
                err,
                LedgerError::OverageRejected {
                    billable: 105,
                    available: 60,
                    ..
                }
            ));
        }
        Overage::Bill { .. } => {
            a.ok(s4, later(24, 9));
        }
    }
    // March ends at 00:00 BST on 1 April (23:00Z on 31 March); with 72 hours of grace it
    // closes at 23:00Z on 3 April. The first read after that posts the close.
    a.ok(Command::ClosePeriods, local(lon, 2026, 4, 4, 9, 0));
    a
}

#[test]
fn social_month_statement_line_by_line_under_reject() {
    let a = social_march(Overage::Reject);
    let s = a.statement(d(2026, 3, 1));
    assert!(s.closed);
    assert_eq!(s.opening, 0);
    assert_eq!(s.granted, 600);
    assert_eq!(s.rolled_in, 0);
    // 255 + 15 + 30 + 30 + 210
    assert_eq!(s.consumed_from_allowance, 540);
    assert_eq!(
        s.non_deducted,
        BTreeMap::from([(kind("quarterly_review"), 180), (kind("weekly_review"), 60)])
    );
    assert_eq!(s.overage_minutes, 0);
    assert!(s.overage_amount.is_empty());
    // The unused hour expires: unused hours never roll over.
    assert_eq!(s.expired, 60);
    assert_eq!(s.adjustments, 0);
    assert_eq!(s.closing, 0);
    assert_eq!((s.raw_minutes, s.billable_minutes), (745, 540));
    assert_eq!((s.held, s.available), (0, 0));
    // (kind, allowance minutes, (raw, non-deducted, billable))
    type Line = (EntryKind, i64, Option<(i64, i64, i64)>);
    let lines: Vec<Line> = s
        .entries
        .iter()
        .map(|e| {
            let u = e
                .usage
                .as_ref()
                .map(|u| (u.raw_minutes, u.non_deducted_minutes, u.billable_minutes));
            (e.kind, e.minutes, u)
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (EntryKind::Grant, 600, None),
            (EntryKind::Consume, 0, Some((30, 30, 0))),
            (EntryKind::Consume, -255, Some((250, 0, 255))),
            (EntryKind::Consume, -15, Some((45, 30, 15))),
            (EntryKind::Consume, -30, Some((20, 0, 30))),
            (EntryKind::Consume, -30, Some((200, 180, 30))),
            (EntryKind::Consume, -210, Some((200, 0, 210))),
            (EntryKind::Expire, -60, None),
        ]
    );
    assert_eq!(s.entries[2].ticket, Some(id("S-1")));
}

#[test]
fn social_month_statement_line_by_line_under_bill_at_the_order_form_rate() {
    let a = social_march(bill(8500, gbp()));
    let s = a.statement(d(2026, 3, 1));
    assert!(s.closed);
    assert_eq!((s.opening, s.granted, s.rolled_in), (0, 600, 0));
    // S-4's 105 billable minutes: the last 60 of the allowance, 45 overage.
    assert_eq!(s.consumed_from_allowance, 600);
    assert_eq!(s.overage_minutes, 45);
    // 85.00/h x 45 min = 63.75.
    assert_eq!(s.overage_amount, BTreeMap::from([(gbp(), 6375)]));
    assert_eq!(
        s.non_deducted,
        BTreeMap::from([(kind("quarterly_review"), 180), (kind("weekly_review"), 60)])
    );
    assert_eq!((s.expired, s.adjustments, s.closing), (0, 0, 0));
    assert_eq!((s.raw_minutes, s.billable_minutes), (845, 645));
    let last = s
        .entries
        .iter()
        .rev()
        .find(|e| e.kind == EntryKind::Consume)
        .expect("S-4");
    assert_eq!(
        last.usage,
        Some(UsageLine {
            raw_minutes: 100,
            non_deducted_minutes: 0,
            billable_minutes: 105,
            from_allowance: 60,
            overage_minutes: 45,
            overage_amount: 6375,
            currency: Some(gbp()),
        })
    );
    assert_eq!(kinds(&s.entries).last(), Some(&EntryKind::Expire));
    // April starts fresh: nothing carried.
    let apr = a.statement(d(2026, 4, 1));
    assert_eq!((apr.rolled_in, apr.granted), (0, 600));
}

#[test]
fn social_quarterly_review_is_free_once_per_calendar_quarter() {
    let lon = chrono_tz::Europe::London;
    let mut a = Account::one(lon, d(2026, 3, 1), social(Overage::Reject));
    let review = |month, day| {
        usage(
            180,
            local(lon, 2026, month, day, 10, 0),
            Some("quarterly_review"),
            None,
        )
    };
    let line = |e: Vec<Entry>| usage_line(e.last().expect("usage"));
    // 2 March (Q1): free. 30 March (still Q1): deducted. 2 April (Q2): free again.
    assert_eq!(
        line(a.ok(review(3, 2), local(lon, 2026, 3, 2, 14, 0))).billable_minutes,
        0
    );
    assert_eq!(
        line(a.ok(review(3, 30), local(lon, 2026, 3, 30, 14, 0))).billable_minutes,
        180
    );
    assert_eq!(
        line(a.ok(review(4, 2), local(lon, 2026, 4, 2, 14, 0))).billable_minutes,
        0
    );
}

#[test]
fn a_late_review_counts_against_its_own_weeks_cap() {
    // A weekly review served in March's last week but recorded after March closed is
    // posted in April, and still takes its week's free slot.
    let lon = chrono_tz::Europe::London;
    let mut a = Account::one(lon, d(2026, 3, 1), social(Overage::Reject));
    let served = local(lon, 2026, 3, 30, 10, 0);
    let e = a.ok(
        usage(30, served, Some("weekly_review"), None),
        local(lon, 2026, 4, 6, 9, 0),
    );
    let late = e.last().expect("usage");
    assert_eq!(
        (late.kind, late.period.start()),
        (EntryKind::Adjust, d(2026, 4, 1))
    );
    assert_eq!(usage_line(late).non_deducted_minutes, 30);
    // Another review that same week (Thursday 2 April) is deducted.
    let e = a.ok(
        usage(
            30,
            local(lon, 2026, 4, 2, 10, 0),
            Some("weekly_review"),
            None,
        ),
        local(lon, 2026, 4, 6, 10, 0),
    );
    assert_eq!(usage_line(e.last().expect("usage")).billable_minutes, 30);
    let apr = a.statement(d(2026, 4, 1));
    assert_eq!(
        apr.non_deducted,
        BTreeMap::from([(kind("weekly_review"), 30)])
    );
    assert_eq!(
        (apr.adjustments, apr.consumed_from_allowance, apr.closing),
        (0, 30, 570)
    );
}

#[test]
fn usage_cannot_be_recorded_before_it_happens_or_outside_the_terms() {
    let mut a = Account::one(chrono_tz::UTC, d(2026, 3, 1), monthly(60));
    let err = a.refused(
        usage(10, utc(2026, 3, 5, 9), None, None),
        utc(2026, 3, 5, 8),
    );
    assert_eq!(err.class(), ErrorClass::InvalidArgument);
    let err = a.refused(
        usage(10, utc(2026, 2, 5, 9), None, None),
        utc(2026, 3, 5, 8),
    );
    assert!(matches!(err, LedgerError::NoTerms { .. }));
}
