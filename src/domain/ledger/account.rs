//! One hour account (organisation and bucket) as a fold of its entries: per period, the
//! lots of minutes left, the statement lines, the held minutes; the holds; and what each
//! entry drew, so a reversal can put it back where it came from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::LedgerError;
use super::entry::{Entry, EntryKind, Lot, UsageLine};
use super::names::{ActivityKind, BucketName, Currency};
use super::period::{PeriodClock, PeriodKey, PeriodRule};
use super::terms::{BucketTerms, BucketTimeline, Contract, DEFAULT_GRACE_HOURS};
use crate::domain::names::ExternalId;

/// A statement's lines, as sums of the period's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines {
    pub granted: i64,
    pub rolled_in: i64,
    pub consumed_from_allowance: i64,
    pub expired: i64,
    pub adjustments: i64,
    pub non_deducted: BTreeMap<ActivityKind, i64>,
    pub overage_minutes: i64,
    pub overage_amount: BTreeMap<Currency, i64>,
    pub raw_minutes: i64,
    pub billable_minutes: i64,
}

impl Lines {
    fn add_usage(&mut self, u: &UsageLine, activity: Option<&ActivityKind>) {
        self.raw_minutes += u.raw_minutes;
        self.billable_minutes += u.billable_minutes;
        self.overage_minutes += u.overage_minutes;
        if let Some(c) = &u.currency {
            *self.overage_amount.entry(c.clone()).or_default() += u.overage_amount;
        }
        if let Some(a) = activity
            && u.non_deducted_minutes != 0
        {
            *self.non_deducted.entry(a.clone()).or_default() += u.non_deducted_minutes;
        }
        // A line reversed to nothing is no line.
        self.overage_amount.retain(|_, v| *v != 0);
        self.non_deducted.retain(|_, v| *v != 0);
    }
}

/// Minutes left of one carried-over lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LotState {
    pub lot: Lot,
    pub minutes: i64,
}

/// Where a draw took minutes from: the period's own minutes (grant and adjustments) or a
/// carried lot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Own,
    Carried(usize),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PeriodState {
    pub own: i64,
    pub carried: Vec<LotState>,
    pub lines: Lines,
    pub held: i64,
    pub rolled_out: i64,
    pub closed: bool,
    pub entries: Vec<u64>,
}

impl PeriodState {
    /// Allowance minutes left, holds not counted.
    pub fn balance(&self) -> i64 {
        self.own + self.carried.iter().map(|l| l.minutes).sum::<i64>()
    }

    /// Minutes that can still be promised: the balance less what is held, leaving out
    /// `own_hold` (the hold being captured).
    pub fn available(&self, own_hold: i64) -> i64 {
        (self.balance() - (self.held - own_hold)).max(0)
    }

    /// Carried lots first, earliest-expiring first (then oldest), then the period's own.
    pub fn order(&self) -> Vec<Slot> {
        let mut carried: Vec<usize> = (0..self.carried.len()).collect();
        carried.sort_by_key(|&i| {
            let l = &self.carried[i].lot;
            (l.expires.is_none(), l.expires, l.origin, i)
        });
        carried
            .into_iter()
            .map(Slot::Carried)
            .chain(std::iter::once(Slot::Own))
            .collect()
    }

    fn slot(&mut self, s: Slot) -> Option<&mut i64> {
        match s {
            Slot::Own => Some(&mut self.own),
            Slot::Carried(i) => self.carried.get_mut(i).map(|l| &mut l.minutes),
        }
    }

    /// Takes `minutes` in consumption order; `None` (and nothing taken) if there are not
    /// that many.
    fn draw(&mut self, minutes: i64) -> Option<Vec<(Slot, i64)>> {
        if minutes < 0 || self.balance() < minutes {
            return None;
        }
        let mut left = minutes;
        let mut draws = Vec::new();
        for s in self.order() {
            if left == 0 {
                break;
            }
            let have = self.slot(s)?;
            let take = (*have).min(left);
            if take > 0 {
                *have -= take;
                left -= take;
                draws.push((s, take));
            }
        }
        Some(draws)
    }

    fn restore(&mut self, draws: &[(Slot, i64)]) -> Option<()> {
        for &(s, m) in draws {
            *self.slot(s)? += m;
        }
        Some(())
    }
}

/// A posted consume, capture or adjust: what a reversal undoes and a frequency cap counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub kind: EntryKind,
    pub period: PeriodKey,
    pub minutes: i64,
    pub draws: Vec<(Slot, i64)>,
    pub usage: Option<UsageLine>,
    pub activity: Option<ActivityKind>,
    pub service_at: Option<DateTime<Utc>>,
    pub ticket: Option<ExternalId>,
    pub hold: Option<ExternalId>,
    pub reversed_by: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    Open,
    Captured,
    Released,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HoldState {
    pub seq: u64,
    pub period: PeriodKey,
    pub service_at: DateTime<Utc>,
    pub activity: Option<ActivityKind>,
    pub ticket: Option<ExternalId>,
    /// Minutes still held.
    pub remaining: i64,
    /// The free minutes the booking was planned with, so it takes its occurrence's place
    /// under a frequency cap.
    pub free: i64,
    pub status: HoldStatus,
}

/// The fold of one account's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct State {
    pub clock: PeriodClock,
    pub periods: BTreeMap<PeriodKey, PeriodState>,
    pub records: BTreeMap<u64, Record>,
    pub holds: BTreeMap<ExternalId, HoldState>,
    pub closed_through: Option<PeriodKey>,
    pub next_seq: u64,
}

impl State {
    fn new(clock: PeriodClock) -> State {
        State {
            clock,
            periods: BTreeMap::new(),
            records: BTreeMap::new(),
            holds: BTreeMap::new(),
            closed_through: None,
            next_seq: 1,
        }
    }

    pub fn is_closed(&self, key: PeriodKey) -> bool {
        self.closed_through.is_some_and(|c| key <= c)
    }

    pub fn period(&self, key: PeriodKey) -> Option<&PeriodState> {
        self.periods.get(&key)
    }

    pub fn available(&self, key: PeriodKey, own_hold: i64) -> i64 {
        self.period(key).map_or(0, |p| p.available(own_hold))
    }

    /// Folds one more entry in, refusing any that does not follow from the ones before:
    /// entries come only from `decide`, so a refusal here means the stored list was
    /// altered.
    pub fn apply(&mut self, e: &Entry) -> Result<(), LedgerError> {
        let corrupt = |reason: &str| LedgerError::Corrupt {
            seq: e.seq,
            reason: reason.to_string(),
        };
        if e.seq != self.next_seq {
            return Err(corrupt(&format!("expected entry {}", self.next_seq)));
        }
        if self.clock.rule.key(e.period.start()) != Some(e.period) {
            return Err(corrupt("its period is not a period start of this account"));
        }
        if self.is_closed(e.period) {
            return Err(corrupt("it is posted in a closed period"));
        }
        let record = |draws: Vec<(Slot, i64)>| Record {
            kind: e.kind,
            period: e.period,
            minutes: e.minutes,
            draws,
            usage: e.usage.clone(),
            activity: e.activity.clone(),
            service_at: e.service_at,
            ticket: e.ticket.clone(),
            hold: e.hold.clone(),
            reversed_by: None,
        };
        match e.kind {
            EntryKind::Grant => {
                let p = self.periods.entry(e.period).or_default();
                if p.own + e.minutes < 0 {
                    return Err(corrupt("a grant takes back more than is left"));
                }
                p.own += e.minutes;
                p.lines.granted += e.minutes;
            }
            EntryKind::Consume | EntryKind::Capture => {
                let u = e
                    .usage
                    .as_ref()
                    .ok_or_else(|| corrupt("usage without its line"))?;
                if e.minutes != -u.from_allowance {
                    return Err(corrupt("minutes do not match the usage line"));
                }
                if e.kind == EntryKind::Capture {
                    let h = e
                        .hold
                        .as_ref()
                        .ok_or_else(|| corrupt("a capture names no hold"))?;
                    let hold = self
                        .holds
                        .get_mut(h)
                        .filter(|s| s.status == HoldStatus::Open && s.period == e.period)
                        .ok_or_else(|| corrupt("the hold is not open in this period"))?;
                    if e.held_minutes > 0 || -e.held_minutes > hold.remaining {
                        return Err(corrupt("captures more than is held"));
                    }
                    hold.remaining += e.held_minutes;
                    hold.status = HoldStatus::Captured;
                }
                let p = self.periods.entry(e.period).or_default();
                let draws = p
                    .draw(u.from_allowance)
                    .ok_or_else(|| corrupt("draws more than is left"))?;
                p.held += e.held_minutes;
                p.lines.consumed_from_allowance += u.from_allowance;
                p.lines.add_usage(u, e.activity.as_ref());
                self.records.insert(e.seq, record(draws));
            }
            EntryKind::Hold => {
                let h = e
                    .hold
                    .as_ref()
                    .ok_or_else(|| corrupt("a hold without an id"))?;
                let service_at = e
                    .service_at
                    .ok_or_else(|| corrupt("a hold without a time"))?;
                if self.holds.contains_key(h) || e.held_minutes < 0 || e.minutes != 0 {
                    return Err(corrupt("a hold id used twice, or a negative hold"));
                }
                self.periods.entry(e.period).or_default().held += e.held_minutes;
                self.holds.insert(
                    h.clone(),
                    HoldState {
                        seq: e.seq,
                        period: e.period,
                        service_at,
                        activity: e.activity.clone(),
                        ticket: e.ticket.clone(),
                        remaining: e.held_minutes,
                        free: e.usage.as_ref().map_or(0, |u| u.non_deducted_minutes),
                        status: HoldStatus::Open,
                    },
                );
            }
            EntryKind::Release => {
                let h = e
                    .hold
                    .as_ref()
                    .ok_or_else(|| corrupt("a release names no hold"))?;
                let hold = self
                    .holds
                    .get_mut(h)
                    .filter(|s| s.period == e.period && s.status != HoldStatus::Released)
                    .ok_or_else(|| corrupt("the hold is not held in this period"))?;
                if e.held_minutes > 0 || -e.held_minutes > hold.remaining || e.minutes != 0 {
                    return Err(corrupt("releases more than is held"));
                }
                hold.remaining += e.held_minutes;
                if hold.status == HoldStatus::Open {
                    hold.status = HoldStatus::Released;
                }
                self.periods.entry(e.period).or_default().held += e.held_minutes;
            }
            EntryKind::Rollover => {
                let closes = e
                    .closes
                    .ok_or_else(|| corrupt("a rollover closes no period"))?;
                let lot = e.lot.ok_or_else(|| corrupt("a rollover carries no lot"))?;
                if self.clock.next(closes)? != e.period || self.is_closed(closes) || e.minutes <= 0
                {
                    return Err(corrupt(
                        "a rollover must carry minutes into the next period",
                    ));
                }
                self.periods.entry(closes).or_default().rolled_out += e.minutes;
                let p = self.periods.entry(e.period).or_default();
                p.carried.push(LotState {
                    lot,
                    minutes: e.minutes,
                });
                p.lines.rolled_in += e.minutes;
            }
            EntryKind::Expire => {
                if e.closes != Some(e.period) || e.minutes > 0 {
                    return Err(corrupt("an expiry must close its own period"));
                }
                if let Some(c) = self.closed_through
                    && self.clock.next(c)? != e.period
                {
                    return Err(corrupt("periods close in order"));
                }
                let p = self.periods.entry(e.period).or_default();
                if p.held != 0 {
                    return Err(corrupt("a period closes with minutes still held"));
                }
                if p.balance() != -e.minutes + p.rolled_out {
                    return Err(corrupt(
                        "expired and rolled-over minutes do not add up to what was left",
                    ));
                }
                p.lines.expired -= e.minutes;
                p.own = 0;
                p.carried.iter_mut().for_each(|l| l.minutes = 0);
                p.closed = true;
                self.closed_through = Some(e.period);
            }
            EntryKind::Adjust => {
                let p = self.periods.entry(e.period).or_default();
                let draws = match &e.usage {
                    Some(u) => {
                        if e.minutes != -u.from_allowance {
                            return Err(corrupt("minutes do not match the usage line"));
                        }
                        p.lines.add_usage(u, e.activity.as_ref());
                        p.draw(u.from_allowance)
                    }
                    None if e.minutes >= 0 => {
                        p.own += e.minutes;
                        Some(Vec::new())
                    }
                    None => p.draw(-e.minutes),
                }
                .ok_or_else(|| corrupt("draws more than is left"))?;
                p.lines.adjustments += e.minutes;
                self.records.insert(e.seq, record(draws));
            }
            EntryKind::Reversal => {
                let target = e
                    .reverses
                    .ok_or_else(|| corrupt("a reversal names no entry"))?;
                let r = self
                    .records
                    .get_mut(&target)
                    .filter(|r| r.reversed_by.is_none())
                    .ok_or_else(|| corrupt("reverses nothing reversible"))?;
                if e.minutes != -r.minutes || e.usage != r.usage.as_ref().map(UsageLine::negated) {
                    return Err(corrupt("does not mirror the entry it reverses"));
                }
                r.reversed_by = Some(e.seq);
                let same_period = r.period == e.period;
                let consumed = matches!(r.kind, EntryKind::Consume | EntryKind::Capture);
                let draws = r.draws.clone();
                let p = self.periods.entry(e.period).or_default();
                let ok = if same_period && !draws.is_empty() {
                    p.restore(&draws)
                } else if e.minutes >= 0 {
                    p.own += e.minutes;
                    Some(())
                } else {
                    p.draw(-e.minutes).map(|_| ())
                };
                ok.ok_or_else(|| corrupt("draws more than is left"))?;
                // Minutes given back to a still-open period undo its consumption; given
                // back to another period (the original's is closed) they are new minutes
                // there, an adjustment.
                if same_period && consumed {
                    p.lines.consumed_from_allowance -= e.minutes;
                } else {
                    p.lines.adjustments += e.minutes;
                }
                if let Some(u) = &e.usage {
                    p.lines.add_usage(u, e.activity.as_ref());
                }
            }
        }
        self.periods
            .entry(e.period)
            .or_default()
            .entries
            .push(e.seq);
        self.next_seq += 1;
        Ok(())
    }
}

/// One hour account: the terms of its bucket over time and the fold of its entries.
/// Everything it reports is a function of the contract and the entries; it reads no clock.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub(super) bucket: BucketName,
    pub(super) timeline: BucketTimeline,
    /// The first period the bucket has terms in: periods are settled from here on.
    pub(super) first: PeriodKey,
    pub(super) state: State,
    pub(super) entries: Vec<Entry>,
}

impl Ledger {
    /// The account of `bucket` under `contract`, with its posted entries (in `seq` order,
    /// numbered from 1).
    pub fn new(
        contract: &Contract,
        bucket: BucketName,
        entries: Vec<Entry>,
    ) -> Result<Ledger, LedgerError> {
        let timeline = BucketTimeline::new(&contract.terms, &bucket);
        let (from, terms) = timeline
            .first()
            .ok_or_else(|| LedgerError::UnknownBucket(bucket.clone()))?;
        let clock = PeriodClock {
            rule: PeriodRule {
                unit: terms.period,
                anchor: contract.start,
            },
            zone: contract.zone,
        };
        let first = clock.key_at(from)?;
        let mut ledger = Ledger {
            bucket,
            timeline,
            first,
            state: State::new(clock),
            entries: Vec::new(),
        };
        ledger.apply(entries)?;
        Ok(ledger)
    }

    /// Folds in entries just posted (the ones `decide` returned, once stored).
    pub fn apply(&mut self, entries: Vec<Entry>) -> Result<(), LedgerError> {
        for e in entries {
            self.state.apply(&e)?;
            self.entries.push(e);
        }
        Ok(())
    }

    pub fn bucket(&self) -> &BucketName {
        &self.bucket
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry(&self, seq: u64) -> Option<&Entry> {
        seq.checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.entries.get(i))
    }

    /// The next entry number: what the store's unique key checks.
    pub fn next_seq(&self) -> u64 {
        self.state.next_seq
    }

    pub fn clock(&self) -> PeriodClock {
        self.state.clock
    }

    /// The period an instant falls in, by the organisation's local time.
    pub fn period_at(&self, t: DateTime<Utc>) -> Result<PeriodKey, LedgerError> {
        self.state.clock.key_at(t)
    }

    /// The period starting on a local date, refusing a date that starts none.
    pub fn period_starting(&self, date: chrono::NaiveDate) -> Result<PeriodKey, LedgerError> {
        self.state.clock.key(date)
    }

    /// The first period of the account.
    pub fn first_period(&self) -> PeriodKey {
        self.first
    }

    /// Whether a period is closed: its closing entries are posted.
    pub fn is_closed(&self, key: PeriodKey) -> bool {
        self.state.is_closed(key)
    }

    /// The last closed period, if any.
    pub fn closed_through(&self) -> Option<PeriodKey> {
        self.state.closed_through
    }

    /// Minutes that can still be promised in a period: allowance left less holds.
    pub fn available(&self, key: PeriodKey) -> i64 {
        self.state.available(key, 0)
    }

    /// The bucket's terms in force at `t`.
    pub fn terms_at(&self, t: DateTime<Utc>) -> Option<&BucketTerms> {
        self.timeline.at(t)
    }

    /// When a period closes by itself: its end plus the grace window of the terms in force
    /// at its last instant (72 hours when none are).
    pub fn closes_at(&self, key: PeriodKey) -> Result<DateTime<Utc>, LedgerError> {
        let end = self.state.clock.end_utc(key)?;
        let grace = self
            .timeline
            .at(end - chrono::TimeDelta::seconds(1))
            .map_or(DEFAULT_GRACE_HOURS, |t| t.grace_hours);
        Ok(end + chrono::TimeDelta::hours(i64::from(grace)))
    }

    /// The status of a hold, if it exists.
    pub fn hold_status(&self, hold: &ExternalId) -> Option<HoldStatus> {
        self.state.holds.get(hold).map(|h| h.status)
    }
}
