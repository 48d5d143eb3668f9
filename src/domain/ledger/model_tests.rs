//! A model-based property test: random sequences of usages, holds, captures, releases,
//! adjustments, reversals, plan changes, locks and the passing of time, run against the
//! ledger and against a deliberately plain model that keeps balances directly (no entries,
//! no fold), with the proration computed hour by hour. After every step the statements of
//! every period must match exactly, a closed statement must not have changed, re-folding
//! the entries from scratch must give the same account, and the closing entries must be
//! posted once.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::tests::{bill, bucket, d, gbp, id, kind, plan, text};
use super::*;

const REVIEW: &str = "review";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UseKind {
    Consume,
    Capture,
    LateUsage,
    Manual,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct MLine {
    raw: i64,
    nd: i64,
    billable: i64,
    fa: i64,
    over: i64,
    amount: i64,
}

impl MLine {
    fn neg(self) -> MLine {
        MLine {
            raw: -self.raw,
            nd: -self.nd,
            billable: -self.billable,
            fa: -self.fa,
            over: -self.over,
            amount: -self.amount,
        }
    }
}

/// A posted usage or manual adjustment, as the model remembers it.
#[derive(Debug, Clone)]
struct MUse {
    kind: UseKind,
    period: i64,
    minutes: i64,
    /// (lot origin, minutes) taken.
    took: Vec<(i64, i64)>,
    line: Option<MLine>,
    review: bool,
    service: Option<DateTime<Utc>>,
    reversed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MHoldStatus {
    Open,
    Captured,
    Released,
}

#[derive(Debug, Clone)]
struct MHold {
    period: i64,
    service: DateTime<Utc>,
    remaining: i64,
    free: i64,
    review: bool,
    status: MHoldStatus,
}

#[derive(Debug, Clone, Default)]
struct MPeriod {
    /// Lots by origin period: (last usable period, minutes). The period's own minutes are
    /// the lot of its own origin, never expiring by date: the newest lot without an
    /// expiry, so "earliest-expiring, then oldest, first" puts it last.
    lots: BTreeMap<i64, (Option<i64>, i64)>,
    granted: i64,
    rolled_in: i64,
    consumed: i64,
    expired: i64,
    adjustments: i64,
    nd: i64,
    overage: i64,
    amount: i64,
    raw: i64,
    billable: i64,
    held: i64,
    closed: bool,
}

impl MPeriod {
    fn balance(&self) -> i64 {
        self.lots.values().map(|l| l.1).sum()
    }

    fn order(&self) -> Vec<i64> {
        let mut o: Vec<i64> = self.lots.keys().copied().collect();
        o.sort_by_key(|origin| {
            let last = self.lots[origin].0;
            (last.is_none(), last, *origin)
        });
        o
    }

    fn add(&mut self, l: MLine, review: bool) {
        self.raw += l.raw;
        self.billable += l.billable;
        self.overage += l.over;
        self.amount += l.amount;
        if review {
            self.nd += l.nd;
        }
    }
}

#[derive(Debug, Clone)]
struct Model {
    clock: PeriodClock,
    versions: Vec<(DateTime<Utc>, BucketTerms)>,
    first: i64,
    periods: BTreeMap<i64, MPeriod>,
    uses: Vec<MUse>,
    holds: BTreeMap<String, MHold>,
    closed_through: Option<i64>,
    now: DateTime<Utc>,
}

type Outcome = Result<(), &'static str>;

impl Model {
    fn terms_at(&self, t: DateTime<Utc>) -> Option<BucketTerms> {
        self.versions
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .map(|(_, terms)| terms.clone())
    }

    fn idx(&self, t: DateTime<Utc>) -> i64 {
        self.clock.index(self.clock.key_at(t).expect("in range"))
    }

    fn start(&self, i: i64) -> DateTime<Utc> {
        self.clock
            .start_utc(self.clock.nth(i).expect("in range"))
            .expect("in range")
    }

    fn closed(&self, i: i64) -> bool {
        self.closed_through.is_some_and(|c| i <= c)
    }

    /// Hour by hour: the terms in force at the period's start set the rate, and each
    /// prorating change inside it takes over from its hour on.
    fn allowance(&self, i: i64) -> i64 {
        let (s, e) = (self.start(i), self.start(i + 1));
        let hours = (e - s).num_hours();
        let at_start = self
            .terms_at(s)
            .map_or(0, |t| i64::from(t.allowance_minutes));
        let mut sum = 0;
        for h in 0..hours {
            let t = s + TimeDelta::hours(h);
            let rate = self
                .versions
                .iter()
                .rev()
                .find(|(from, terms)| s < *from && *from <= t && terms.prorate_mid_period)
                .map_or(at_start, |(_, terms)| i64::from(terms.allowance_minutes));
            sum += rate;
        }
        sum / hours
    }

    fn closes_at(&self, i: i64) -> DateTime<Utc> {
        let end = self.start(i + 1);
        let grace = self
            .terms_at(end - TimeDelta::seconds(1))
            .map_or(72, |t| t.grace_hours);
        end + TimeDelta::hours(i64::from(grace))
    }

    fn p(&mut self, i: i64) -> &mut MPeriod {
        self.periods.entry(i).or_default()
    }

    fn available(&self, i: i64, own_hold: i64) -> i64 {
        self.periods
            .get(&i)
            .map_or(0, |p| (p.balance() - (p.held - own_hold)).max(0))
    }

    fn draw(&mut self, i: i64, minutes: i64) -> Vec<(i64, i64)> {
        let p = self.p(i);
        assert!(p.balance() >= minutes, "the model draws only what is there");
        let mut left = minutes;
        let mut took = Vec::new();
        for origin in p.order() {
            let lot = p.lots.get_mut(&origin).expect("listed");
            let take = lot.1.min(left);
            if take > 0 {
                lot.1 -= take;
                left -= take;
                took.push((origin, take));
            }
        }
        took
    }

    fn own(&mut self, i: i64) -> &mut i64 {
        &mut self.p(i).lots.entry(i).or_insert((None, 0)).1
    }

    fn settle(&mut self, touched: Option<i64>, lock: Option<i64>) {
        let current = self.idx(self.now);
        let last = touched.map_or(current, |t| t.max(current));
        let mut i = self.closed_through.map_or(self.first, |c| c + 1);
        let mut closing = true;
        while i <= last {
            self.grant(i);
            if closing && (lock.is_some_and(|l| i <= l) || self.now >= self.closes_at(i)) {
                self.close(i);
            } else {
                closing = false;
            }
            i += 1;
        }
    }

    fn grant(&mut self, i: i64) {
        let due = self.allowance(i);
        let granted = self.p(i).granted;
        let own = *self.own(i);
        let mut delta = due - granted;
        if delta < 0 {
            delta = -(-delta).min(own);
        }
        self.p(i).granted += delta;
        *self.own(i) += delta;
    }

    fn close(&mut self, i: i64) {
        let mut released = 0;
        for h in self.holds.values_mut() {
            if h.period == i && h.status == MHoldStatus::Open {
                released += h.remaining;
                h.remaining = 0;
                h.status = MHoldStatus::Released;
            }
        }
        self.p(i).held -= released;
        let rule = self
            .terms_at(self.start(i + 1) - TimeDelta::seconds(1))
            .map_or(Rollover::None, |t| t.rollover);
        let p = self.p(i).clone();
        let mut cap = match rule {
            Rollover::Capped { minutes } => i64::from(minutes),
            _ => i64::MAX,
        };
        let mut expired = 0;
        for origin in p.order() {
            let (last, m) = p.lots[&origin];
            if m == 0 {
                continue;
            }
            let keep_last = if last.is_some_and(|l| l <= i) {
                None
            } else {
                match rule {
                    Rollover::None => None,
                    Rollover::All | Rollover::Capped { .. } => Some(last),
                    Rollover::Expiring { periods } => match last {
                        Some(l) => Some(Some(l)),
                        None if periods == 0 => None,
                        None => Some(Some(i + i64::from(periods))),
                    },
                }
            };
            match keep_last {
                Some(l) => {
                    let keep = m.min(cap);
                    cap -= keep;
                    expired += m - keep;
                    if keep > 0 {
                        let next = self.p(i + 1);
                        next.lots.insert(origin, (l, keep));
                        next.rolled_in += keep;
                    }
                }
                None => expired += m,
            }
        }
        let p = self.p(i);
        p.expired += expired;
        p.lots.clear();
        p.closed = true;
        self.closed_through = Some(i);
    }

    fn window(&self, f: Frequency, t: DateTime<Utc>) -> (i64, i64) {
        let date = t.with_timezone(&self.clock.zone).date_naive();
        match f {
            Frequency::PerIsoWeek => (
                i64::from(date.iso_week().year()),
                i64::from(date.iso_week().week()),
            ),
            Frequency::PerMonth => (i64::from(date.year()), i64::from(date.month())),
            Frequency::PerCalendarQuarter => (
                i64::from(date.year()),
                100 + i64::from((date.month() - 1) / 3),
            ),
            Frequency::PerPeriod => (0, self.idx(t)),
        }
    }

    fn split(
        &self,
        terms: &BucketTerms,
        raw: i64,
        review: bool,
        service: DateTime<Utc>,
        except: Option<&str>,
        available: i64,
    ) -> Result<MLine, &'static str> {
        let mut free = 0;
        if review && let Some(f) = terms.free_activities.first() {
            let w = self.window(f.frequency, service);
            let used = self
                .uses
                .iter()
                .filter(|u| !u.reversed && u.review && u.line.is_some_and(|l| l.nd > 0))
                .filter(|u| u.service.is_some_and(|s| self.window(f.frequency, s) == w))
                .count()
                + self
                    .holds
                    .iter()
                    .filter(|(hid, h)| {
                        h.status == MHoldStatus::Open
                            && Some(hid.as_str()) != except
                            && h.review
                            && h.free > 0
                            && self.window(f.frequency, h.service) == w
                    })
                    .count();
            if used < f.max_per_frequency as usize {
                free = raw.min(i64::from(f.per_occurrence_cap_minutes));
            }
        }
        let rest = raw - free;
        let inc = i64::from(terms.rounding_increment_minutes);
        let billable = if rest % inc == 0 {
            rest
        } else {
            rest + inc - rest % inc
        };
        let fa = billable.min(available);
        let over = billable - fa;
        let amount = match terms.overage {
            Overage::Reject if over > 0 => return Err("overage"),
            Overage::Reject => 0,
            Overage::Bill {
                rate_minor_units_per_hour: rate,
                ..
            } => {
                let (q, r) = ((rate * over) / 60, (rate * over) % 60);
                if 2 * r >= 60 { q + 1 } else { q }
            }
        };
        Ok(MLine {
            raw,
            nd: free,
            billable,
            fa,
            over,
            amount,
        })
    }

    fn authorise(terms: &BucketTerms, review: bool, ticket: u8) -> Outcome {
        let exempt = review && !terms.free_activities.is_empty();
        if terms.requires_authorisation && !exempt && ticket != 1 {
            return Err("auth");
        }
        Ok(())
    }

    fn record(
        &mut self,
        minutes: u32,
        service: DateTime<Utc>,
        review: bool,
        ticket: u8,
    ) -> Outcome {
        if service > self.now {
            return Err("future");
        }
        let terms = self.terms_at(service).ok_or("no_terms")?;
        Self::authorise(&terms, review, ticket)?;
        let sp = self.idx(service);
        let late = self.closed(sp);
        let target = if late { self.idx(self.now) } else { sp };
        let line = self.split(
            &terms,
            i64::from(minutes),
            review,
            service,
            None,
            self.available(target, 0),
        )?;
        let took = self.draw(target, line.fa);
        let p = self.p(target);
        p.add(line, review);
        if late {
            p.adjustments -= line.fa;
        } else {
            p.consumed += line.fa;
        }
        self.uses.push(MUse {
            kind: if late {
                UseKind::LateUsage
            } else {
                UseKind::Consume
            },
            period: target,
            minutes: -line.fa,
            took,
            line: Some(line),
            review,
            service: Some(service),
            reversed: false,
        });
        Ok(())
    }

    fn hold(
        &mut self,
        hid: &str,
        minutes: u32,
        service: DateTime<Utc>,
        review: bool,
        ticket: u8,
    ) -> Outcome {
        if self.holds.contains_key(hid) {
            return Err("hold_exists");
        }
        let terms = self.terms_at(service).ok_or("no_terms")?;
        Self::authorise(&terms, review, ticket)?;
        let i = self.idx(service);
        if self.closed(i) {
            return Err("closed");
        }
        let line = self.split(
            &terms,
            i64::from(minutes),
            review,
            service,
            None,
            self.available(i, 0),
        )?;
        self.p(i).held += line.billable;
        self.holds.insert(
            hid.to_string(),
            MHold {
                period: i,
                service,
                remaining: line.billable,
                free: line.nd,
                review,
                status: MHoldStatus::Open,
            },
        );
        Ok(())
    }

    fn open_hold(&self, hid: &str) -> Result<MHold, &'static str> {
        let h = self.holds.get(hid).ok_or("unknown_hold")?;
        if h.status != MHoldStatus::Open {
            return Err("hold_not_open");
        }
        Ok(h.clone())
    }

    fn capture(&mut self, hid: &str, minutes: u32) -> Outcome {
        let h = self.open_hold(hid)?;
        let terms = self.terms_at(h.service).ok_or("no_terms")?;
        let avail = self.available(h.period, h.remaining);
        let line = self.split(
            &terms,
            i64::from(minutes),
            h.review,
            h.service,
            Some(hid),
            avail,
        )?;
        let took = self.draw(h.period, line.fa);
        let p = self.p(h.period);
        p.consumed += line.fa;
        p.add(line, h.review);
        p.held -= h.remaining;
        if let Some(s) = self.holds.get_mut(hid) {
            s.remaining = 0;
            s.status = MHoldStatus::Captured;
        }
        self.uses.push(MUse {
            kind: UseKind::Capture,
            period: h.period,
            minutes: -line.fa,
            took,
            line: Some(line),
            review: h.review,
            service: Some(h.service),
            reversed: false,
        });
        Ok(())
    }

    fn release(&mut self, hid: &str) -> Outcome {
        let h = self.open_hold(hid)?;
        self.p(h.period).held -= h.remaining;
        if let Some(s) = self.holds.get_mut(hid) {
            s.remaining = 0;
            s.status = MHoldStatus::Released;
        }
        Ok(())
    }

    fn adjust(&mut self, minutes: i64) -> Outcome {
        let q = self.idx(self.now);
        if q < self.first {
            return Err("no_terms");
        }
        if minutes < 0 && -minutes > self.available(q, 0) {
            return Err("insufficient");
        }
        let took = if minutes >= 0 {
            *self.own(q) += minutes;
            Vec::new()
        } else {
            self.draw(q, -minutes)
        };
        self.p(q).adjustments += minutes;
        self.uses.push(MUse {
            kind: UseKind::Manual,
            period: q,
            minutes,
            took,
            line: None,
            review: false,
            service: None,
            reversed: false,
        });
        Ok(())
    }

    fn reverse(&mut self, pick: usize) -> Outcome {
        if self.uses.is_empty() {
            return Err("unknown_entry");
        }
        let k = pick % self.uses.len();
        let u = self.uses[k].clone();
        if u.reversed {
            return Err("already_reversed");
        }
        let posting = if self.closed(u.period) {
            self.idx(self.now)
        } else {
            u.period
        };
        let back = -u.minutes;
        if back < 0 && -back > self.available(posting, 0) {
            return Err("insufficient");
        }
        let same = posting == u.period;
        if same && !u.took.is_empty() {
            for (origin, m) in &u.took {
                self.p(posting).lots.get_mut(origin).expect("still there").1 += m;
            }
        } else if back >= 0 {
            *self.own(posting) += back;
        } else {
            self.draw(posting, -back);
        }
        let p = self.p(posting);
        if same && matches!(u.kind, UseKind::Consume | UseKind::Capture) {
            p.consumed -= back;
        } else {
            p.adjustments += back;
        }
        if let Some(l) = u.line {
            p.add(l.neg(), u.review);
        }
        self.uses[k].reversed = true;
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Step {
    Advance(i64),
    Use {
        minutes: u32,
        back: i64,
        review: bool,
        ticket: u8,
    },
    Hold {
        slot: usize,
        minutes: u32,
        ahead: i64,
        review: bool,
        ticket: u8,
    },
    Capture {
        slot: usize,
        minutes: u32,
    },
    Release {
        slot: usize,
    },
    Adjust(i64),
    Reverse(usize),
    ChangePlan {
        terms: BucketTerms,
        after_hours: i64,
    },
    Lock,
    Close,
}

fn terms_strategy() -> impl Strategy<Value = BucketTerms> {
    let rollover = prop_oneof![
        1 => Just(Rollover::None),
        1 => Just(Rollover::All),
        1 => (0u32..=90).prop_map(|minutes| Rollover::Capped { minutes }),
        2 => (0u32..=2).prop_map(|periods| Rollover::Expiring { periods }),
    ];
    let overage = prop_oneof![
        Just(Overage::Reject),
        (0i64..=12_000).prop_map(|rate| bill(rate, gbp())),
    ];
    let frequency = prop_oneof![
        Just(Frequency::PerIsoWeek),
        Just(Frequency::PerMonth),
        Just(Frequency::PerCalendarQuarter),
        Just(Frequency::PerPeriod),
    ];
    let free = proptest::option::of((
        prop_oneof![Just(15u32), Just(30), Just(45)],
        frequency,
        1u32..=2,
    ));
    (
        0u32..=16,
        prop_oneof![Just(1u32), Just(15), Just(30)],
        rollover,
        overage,
        prop_oneof![Just(0u32), Just(24), Just(72)],
        any::<bool>(),
        prop_oneof![3 => Just(false), 1 => Just(true)],
        free,
    )
        .prop_map(
            |(a, rounding, rollover, overage, grace, prorate, auth, free)| {
                let mut t = BucketTerms::new(bucket("hours"), PeriodUnit::Month, a * 15);
                t.rounding_increment_minutes = rounding;
                t.rollover = rollover;
                t.overage = overage;
                t.grace_hours = grace;
                t.prorate_mid_period = prorate;
                t.requires_authorisation = auth;
                t.free_activities = free
                    .map(|(cap, frequency, max)| FreeActivity {
                        kind: kind(REVIEW),
                        per_occurrence_cap_minutes: cap,
                        frequency,
                        max_per_frequency: max,
                    })
                    .into_iter()
                    .collect();
                t
            },
        )
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => prop_oneof![1i64..=24, 1i64..=24 * 20].prop_map(Step::Advance),
        6 => (1u32..=150, prop_oneof![3 => 0i64..=60 * 24 * 4, 1 => 0i64..=60 * 24 * 45], any::<bool>(), 0u8..3)
            .prop_map(|(minutes, back, review, ticket)| Step::Use { minutes, back, review, ticket }),
        3 => (0usize..3, 1u32..=120, prop_oneof![-60 * 24 * 5..=60 * 24 * 10i64, 0..=60 * 24 * 40i64], any::<bool>(), 0u8..3)
            .prop_map(|(slot, minutes, ahead, review, ticket)| Step::Hold { slot, minutes, ahead, review, ticket }),
        2 => (0usize..3, 1u32..=150).prop_map(|(slot, minutes)| Step::Capture { slot, minutes }),
        1 => (0usize..3).prop_map(|slot| Step::Release { slot }),
        2 => prop_oneof![-120i64..=-1, 1i64..=120].prop_map(Step::Adjust),
        2 => any::<usize>().prop_map(Step::Reverse),
        1 => (terms_strategy(), 0i64..=24 * 40)
            .prop_map(|(terms, after_hours)| Step::ChangePlan { terms, after_hours }),
        1 => Just(Step::Lock),
        1 => Just(Step::Close),
    ]
}

fn error_kind(e: &LedgerError) -> &'static str {
    match e {
        LedgerError::OverageRejected { .. } => "overage",
        LedgerError::InsufficientBalance { .. } => "insufficient",
        LedgerError::UnknownHold(_) => "unknown_hold",
        LedgerError::HoldNotOpen { .. } => "hold_not_open",
        LedgerError::HoldExists(_) => "hold_exists",
        LedgerError::NotAuthorised(_) => "auth",
        LedgerError::NoTerms { .. } => "no_terms",
        LedgerError::PeriodClosed(_) => "closed",
        LedgerError::AlreadyReversed { .. } => "already_reversed",
        LedgerError::UnknownEntry(_) => "unknown_entry",
        LedgerError::ServiceInFuture(_) => "future",
        _ => "other",
    }
}

/// The statement lines the model and the ledger must agree on.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    granted: i64,
    rolled_in: i64,
    consumed: i64,
    expired: i64,
    adjustments: i64,
    closing: i64,
    non_deducted: i64,
    overage: i64,
    amount: i64,
    raw: i64,
    billable: i64,
    held: i64,
    available: i64,
    closed: bool,
}

fn model_row(m: &Model, i: i64) -> Row {
    let p = m.periods.get(&i).cloned().unwrap_or_default();
    let closing = p.granted + p.rolled_in - p.consumed - p.expired + p.adjustments;
    let available = if p.closed {
        0
    } else {
        (p.balance() - p.held).max(0)
    };
    Row {
        granted: p.granted,
        rolled_in: p.rolled_in,
        consumed: p.consumed,
        expired: p.expired,
        adjustments: p.adjustments,
        closing,
        non_deducted: p.nd,
        overage: p.overage,
        amount: p.amount,
        raw: p.raw,
        billable: p.billable,
        held: p.held,
        available,
        closed: p.closed,
    }
}

fn ledger_row(s: &Statement) -> Row {
    Row {
        granted: s.granted,
        rolled_in: s.rolled_in,
        consumed: s.consumed_from_allowance,
        expired: s.expired,
        adjustments: s.adjustments,
        closing: s.closing,
        non_deducted: s.non_deducted.get(&kind(REVIEW)).copied().unwrap_or(0),
        overage: s.overage_minutes,
        amount: s.overage_amount.get(&gbp()).copied().unwrap_or(0),
        raw: s.raw_minutes,
        billable: s.billable_minutes,
        held: s.held,
        available: s.available,
        closed: s.closed,
    }
}

fn ticket_ref(t: u8) -> Option<TicketRef> {
    match t {
        0 => None,
        n => Some(TicketRef {
            id: id(&format!("T-{n}")),
            authorised_by_main_stakeholder: n == 1,
        }),
    }
}

fn run_case(
    zone: Tz,
    anchor_day: u32,
    start_hours: i64,
    initial: BucketTerms,
    steps: Vec<Step>,
) -> Result<(), TestCaseError> {
    let anchor = d(2026, 1, anchor_day);
    let from = start_of_day(zone, anchor).expect("in range");
    let mut history = TermsHistory::single(from, plan("p0", vec![initial.clone()])).expect("valid");
    let contract = |h: &TermsHistory| Contract {
        zone,
        start: anchor,
        terms: h.clone(),
    };
    let mut ledger = Ledger::new(&contract(&history), bucket("hours"), Vec::new()).expect("bucket");
    let clock = ledger.clock();
    let mut model = Model {
        clock,
        versions: vec![(from, initial)],
        first: clock.index(ledger.first_period()),
        periods: BTreeMap::new(),
        uses: Vec::new(),
        holds: BTreeMap::new(),
        closed_through: None,
        now: from + TimeDelta::hours(start_hours),
    };
    let mut generation = [0u32; 3];
    let mut closed_statements: BTreeMap<PeriodKey, Statement> = BTreeMap::new();
    for (n, step) in steps.into_iter().enumerate() {
        let now = model.now;
        let hold_id = |slot: usize, g: &[u32; 3]| format!("h{slot}-{}", g[slot]);
        let mut trial = model.clone();
        let (command, outcome) = match step {
            Step::Advance(h) => {
                model.now += TimeDelta::hours(h);
                continue;
            }
            Step::ChangePlan { terms, after_hours } => {
                let last = model.versions.last().map_or(from, |v| v.0);
                let at = (now + TimeDelta::hours(after_hours)).max(last + TimeDelta::hours(1));
                history = history
                    .with(TermsVersion {
                        effective_from: at,
                        plan: plan(&format!("p{n}"), vec![terms.clone()]),
                    })
                    .expect("valid");
                model.versions.push((at, terms));
                ledger = Ledger::new(
                    &contract(&history),
                    bucket("hours"),
                    ledger.entries().to_vec(),
                )
                .expect("the entries fold under the new history");
                continue;
            }
            Step::Use {
                minutes,
                back,
                review,
                ticket,
            } => {
                let service = now - TimeDelta::minutes(back);
                let touched = trial.idx(service);
                trial.settle(Some(touched), None);
                let outcome = trial.record(minutes, service, review, ticket);
                let c = Command::RecordUsage(Usage {
                    minutes,
                    activity: review.then(|| kind(REVIEW)),
                    service_at: service,
                    ticket: ticket_ref(ticket),
                    actor: id("agent"),
                    reason: None,
                });
                (c, outcome)
            }
            Step::Hold {
                slot,
                minutes,
                ahead,
                review,
                ticket,
            } => {
                generation[slot] += 1;
                let hid = hold_id(slot, &generation);
                let service = now + TimeDelta::minutes(ahead);
                let touched = trial.idx(service);
                trial.settle(Some(touched), None);
                let outcome = trial.hold(&hid, minutes, service, review, ticket);
                let c = Command::Hold {
                    hold: id(&hid),
                    minutes,
                    service_at: service,
                    activity: review.then(|| kind(REVIEW)),
                    ticket: ticket_ref(ticket),
                    actor: id("agent"),
                };
                (c, outcome)
            }
            Step::Capture { slot, minutes } => {
                let hid = hold_id(slot, &generation);
                trial.settle(None, None);
                let outcome = trial.capture(&hid, minutes);
                let c = Command::Capture {
                    hold: id(&hid),
                    minutes,
                    actor: id("agent"),
                };
                (c, outcome)
            }
            Step::Release { slot } => {
                let hid = hold_id(slot, &generation);
                trial.settle(None, None);
                let outcome = trial.release(&hid);
                let c = Command::Release {
                    hold: id(&hid),
                    actor: id("agent"),
                    reason: None,
                };
                (c, outcome)
            }
            Step::Adjust(minutes) => {
                trial.settle(None, None);
                let outcome = trial.adjust(minutes);
                let c = Command::Adjust {
                    minutes,
                    reason: text("correction"),
                    actor: id("ops"),
                };
                (c, outcome)
            }
            Step::Reverse(pick) => {
                trial.settle(None, None);
                let reversible: Vec<u64> = ledger
                    .entries()
                    .iter()
                    .filter(|e| {
                        matches!(
                            e.kind,
                            EntryKind::Consume | EntryKind::Capture | EntryKind::Adjust
                        )
                    })
                    .map(|e| e.seq)
                    .collect();
                prop_assert_eq!(reversible.len(), model.uses.len(), "reversible entries");
                let seq = if reversible.is_empty() {
                    10_000
                } else {
                    reversible[pick % reversible.len()]
                };
                let outcome = trial.reverse(pick);
                let c = Command::Reverse {
                    entry: seq,
                    reason: text("correction"),
                    actor: id("ops"),
                };
                (c, outcome)
            }
            Step::Lock => {
                let target = trial.idx(now) - 1;
                trial.settle(None, Some(target));
                let c = Command::Lock {
                    period: clock.nth(target).expect("in range"),
                    actor: id("billing"),
                };
                (c, Ok(()))
            }
            Step::Close => {
                trial.settle(None, None);
                (Command::ClosePeriods, Ok(()))
            }
        };
        let decided = ledger.decide(&command, now);
        match (&decided, outcome) {
            (Ok(entries), Ok(())) => {
                ledger.apply(entries.clone()).expect("decided entries fold");
                model = trial;
            }
            (Err(e), Err(want)) => prop_assert_eq!(error_kind(e), want, "step {}: {}", n, e),
            (got, want) => {
                return Err(TestCaseError::fail(format!(
                    "step {n} {command:?}: ledger {got:?}, model {want:?}"
                )));
            }
        }
        // Statements match, period by period.
        let last = model
            .periods
            .keys()
            .next_back()
            .copied()
            .unwrap_or(model.first)
            .max(model.idx(now))
            + 1;
        for i in model.first..=last {
            let key = clock.nth(i).expect("in range");
            let s = ledger
                .statement(key)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(
                ledger_row(&s),
                model_row(&model, i),
                "step {} period {} after {:?}",
                n,
                key,
                command
            );
            prop_assert!(s.non_deducted.keys().all(|k| k.as_str() == REVIEW));
            prop_assert!(s.overage_amount.keys().all(|c| *c == gbp()));
            // A closed statement never changes.
            if s.closed {
                let before = closed_statements.entry(key).or_insert_with(|| s.clone());
                prop_assert_eq!(&*before, &s, "closed statement {} changed", key);
            }
        }
        // Re-folding from scratch gives the same account.
        let refolded = Ledger::new(
            &contract(&history),
            bucket("hours"),
            ledger.entries().to_vec(),
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(refolded.next_seq(), ledger.next_seq());
        // What falls due is posted once: deciding again after posting it adds nothing.
        let due = ledger
            .decide(&Command::ClosePeriods, now)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut after = ledger.clone();
        after
            .apply(due)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            after
                .decide(&Command::ClosePeriods, now)
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .is_empty()
        );
    }
    Ok(())
}

fn zone_strategy() -> impl Strategy<Value = Tz> {
    prop_oneof![
        Just(chrono_tz::UTC),
        Just(chrono_tz::Europe::London),
        Just(chrono_tz::Pacific::Kiritimati),
        Just(chrono_tz::Pacific::Pago_Pago),
        Just(chrono_tz::America::Santiago),
    ]
}

proptest! {
    #[test]
    fn the_ledger_matches_a_plain_model(
        zone in zone_strategy(),
        anchor_day in 1u32..=31,
        start_hours in 0i64..=24 * 20,
        initial in terms_strategy(),
        steps in proptest::collection::vec(step_strategy(), 1..60),
    ) {
        run_case(zone, anchor_day, start_hours, initial, steps)?;
    }
}
