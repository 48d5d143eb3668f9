//! One hour account (organisation and bucket) as a fold of its entries: per period, the
//! lots of minutes left, the statement lines, the held minutes; the holds; and what each
//! entry drew, so a reversal can put it back where it came from.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};

use super::LedgerError;
use super::cow::CowMap;
use super::entry::{Entry, EntryKind, Lot, UsageLine};
use super::names::{ActivityKind, BucketName, Currency};
use super::period::{PeriodClock, PeriodKey, PeriodRule};
use super::terms::{BucketTerms, BucketTimeline, Contract, DEFAULT_GRACE_HOURS, Frequency};
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

impl Record {
    /// The activity and service instant of the free occurrence this entry is under a
    /// frequency cap: usage that took free minutes, while not reversed.
    fn free_occurrence(&self) -> Option<(&ActivityKind, DateTime<Utc>)> {
        let took_free = self
            .usage
            .as_ref()
            .is_some_and(|u| u.non_deducted_minutes > 0);
        if self.reversed_by.is_some() || !took_free {
            return None;
        }
        Some((self.activity.as_ref()?, self.service_at?))
    }
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

impl HoldState {
    /// The activity and service instant of the free occurrence this booking is under a
    /// frequency cap: one planned with free minutes, while still open.
    fn free_occurrence(&self) -> Option<(&ActivityKind, DateTime<Utc>)> {
        if self.status != HoldStatus::Open || self.free <= 0 {
            return None;
        }
        Some((self.activity.as_ref()?, self.service_at))
    }
}

/// The local-time window a frequency cap counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Window {
    IsoWeek(i32, u32),
    Month(i32, u32),
    Quarter(i32, u32),
    Period(PeriodKey),
}

/// The window of `t` under each frequency, or `None` if one of them has none.
fn windows(clock: &PeriodClock, t: DateTime<Utc>) -> Option<[Window; 4]> {
    Some([
        window(clock, Frequency::PerIsoWeek, t).ok()?,
        window(clock, Frequency::PerMonth, t).ok()?,
        window(clock, Frequency::PerCalendarQuarter, t).ok()?,
        window(clock, Frequency::PerPeriod, t).ok()?,
    ])
}

fn window(clock: &PeriodClock, f: Frequency, t: DateTime<Utc>) -> Result<Window, LedgerError> {
    let d = t.with_timezone(&clock.zone).date_naive();
    Ok(match f {
        Frequency::PerIsoWeek => Window::IsoWeek(d.iso_week().year(), d.iso_week().week()),
        Frequency::PerMonth => Window::Month(d.year(), d.month()),
        Frequency::PerCalendarQuarter => Window::Quarter(d.year(), d.month0() / 3),
        Frequency::PerPeriod => Window::Period(clock.key_at(t)?),
    })
}

/// What the indexes hold of an open hold: its place among the open holds, and its free
/// occurrence if it is one.
struct OpenHold {
    key: (PeriodKey, u64),
    occurrence: Option<(ActivityKind, DateTime<Utc>)>,
}

impl OpenHold {
    fn of(h: &HoldState) -> OpenHold {
        OpenHold {
            key: (h.period, h.seq),
            occurrence: h.free_occurrence().map(|(k, t)| (k.clone(), t)),
        }
    }
}

/// An entry or booking that counts as a free occurrence.
#[derive(Clone, Copy)]
enum Occurrence<'a> {
    Record(u64),
    Hold(&'a ExternalId),
}

/// The free occurrences of each activity kind, counted per window under every frequency,
/// as entries are folded in: what a frequency cap asks, without a pass over the entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FreeOccurrences {
    counts: CowMap<(ActivityKind, Window), u32>,
    /// Occurrences at an instant with no window (only stored entries the ledger would not
    /// have decided have one): counted one by one, as they are asked about.
    odd_records: CowMap<u64, ()>,
    odd_holds: CowMap<ExternalId, ()>,
}

impl FreeOccurrences {
    /// Counts an occurrence in (`up`) or out.
    fn count(
        &mut self,
        clock: &PeriodClock,
        o: Occurrence<'_>,
        kind: &ActivityKind,
        t: DateTime<Utc>,
        up: bool,
    ) {
        let Some(ws) = windows(clock, t) else {
            match (o, up) {
                (Occurrence::Record(seq), true) => self.odd_records.insert(seq, ()),
                (Occurrence::Record(seq), false) => self.odd_records.remove(&seq),
                (Occurrence::Hold(id), true) => self.odd_holds.insert(id.clone(), ()),
                (Occurrence::Hold(id), false) => self.odd_holds.remove(id),
            }
            return;
        };
        for w in ws {
            let key = (kind.clone(), w);
            if up {
                *self.counts.get_or_insert_default(key) += 1;
            } else if let Some(n) = self.counts.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.counts.remove(&key);
                }
            }
        }
    }

    fn compact(&mut self) {
        self.counts.compact(MAX_OVERLAY);
        self.odd_records.compact(MAX_OVERLAY);
        self.odd_holds.compact(MAX_OVERLAY);
    }
}

/// How many changes a map of the fold keeps apart from its shared base while that base has
/// another owner (a copy of the ledger): see [`CowMap::compact`].
const MAX_OVERLAY: usize = 64;

/// The fold of one account's entries. `decide` works on a copy, so everything that grows
/// with the entries is in copy-on-write maps: a copy costs what changed since the last
/// [`State::compact`], not the account's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct State {
    pub clock: PeriodClock,
    pub periods: CowMap<PeriodKey, PeriodState>,
    pub records: CowMap<u64, Record>,
    pub holds: CowMap<ExternalId, HoldState>,
    /// The holds still open, by period and booking (the hold's entry number).
    pub open_holds: CowMap<(PeriodKey, u64), ExternalId>,
    pub free: FreeOccurrences,
    pub closed_through: Option<PeriodKey>,
    pub next_seq: u64,
}

impl State {
    fn new(clock: PeriodClock) -> State {
        State {
            clock,
            periods: CowMap::new(),
            records: CowMap::new(),
            holds: CowMap::new(),
            open_holds: CowMap::new(),
            free: FreeOccurrences::default(),
            closed_through: None,
            next_seq: 1,
        }
    }

    /// Folds the maps' recent changes into their shared bases: see [`CowMap::compact`].
    fn compact(&mut self) {
        self.periods.compact(MAX_OVERLAY);
        self.records.compact(MAX_OVERLAY);
        self.holds.compact(MAX_OVERLAY);
        self.open_holds.compact(MAX_OVERLAY);
        self.free.compact();
    }

    /// The window a frequency cap counts `t` in.
    pub fn window(&self, f: Frequency, t: DateTime<Utc>) -> Result<Window, LedgerError> {
        window(&self.clock, f, t)
    }

    /// How many occurrences of `kind` already took free minutes in the window of
    /// `service_at`: usage not reversed, and bookings still held (other than `except`).
    pub fn occurrences(
        &self,
        kind: &ActivityKind,
        f: Frequency,
        service_at: DateTime<Utc>,
        except: Option<&ExternalId>,
    ) -> Result<u32, LedgerError> {
        let w = self.window(f, service_at)?;
        let mut n = self
            .free
            .counts
            .get(&(kind.clone(), w))
            .copied()
            .unwrap_or(0);
        // The ones with no window in some frequency, as a pass over all would find them:
        // entries in order, then bookings in order of their ids.
        for seq in self.free.odd_records.keys() {
            if let Some((k, t)) = self.records.get(seq).and_then(Record::free_occurrence)
                && k == kind
                && self.window(f, t)? == w
            {
                n += 1;
            }
        }
        for id in self.free.odd_holds.keys() {
            if Some(id) != except
                && let Some((k, t)) = self.holds.get(id).and_then(HoldState::free_occurrence)
                && k == kind
                && self.window(f, t)? == w
            {
                n += 1;
            }
        }
        if let Some(id) = except
            && !self.free.odd_holds.contains_key(id)
            && let Some((k, t)) = self.holds.get(id).and_then(HoldState::free_occurrence)
            && k == kind
            && self.window(f, t)? == w
        {
            n = n.saturating_sub(1);
        }
        Ok(n)
    }

    fn insert_record(&mut self, seq: u64, r: Record) {
        if let Some((kind, t)) = r.free_occurrence() {
            self.free
                .count(&self.clock, Occurrence::Record(seq), kind, t, true);
        }
        self.records.insert(seq, r);
    }

    fn insert_hold(&mut self, id: ExternalId, h: HoldState) {
        if let Some((kind, t)) = h.free_occurrence() {
            self.free
                .count(&self.clock, Occurrence::Hold(&id), kind, t, true);
        }
        if h.status == HoldStatus::Open {
            self.open_holds.insert((h.period, h.seq), id.clone());
        }
        self.holds.insert(id, h);
    }

    /// Takes out of the indexes a hold that was open (as `before` found it) and is not
    /// any more.
    fn close_hold(&mut self, id: &ExternalId, before: OpenHold) {
        self.open_holds.remove(&before.key);
        if let Some((kind, t)) = before.occurrence {
            self.free
                .count(&self.clock, Occurrence::Hold(id), &kind, t, false);
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
                let p = self.periods.get_or_insert_default(e.period);
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
                    let before = OpenHold::of(hold);
                    hold.remaining += e.held_minutes;
                    hold.status = HoldStatus::Captured;
                    self.close_hold(h, before);
                }
                let p = self.periods.get_or_insert_default(e.period);
                let draws = p
                    .draw(u.from_allowance)
                    .ok_or_else(|| corrupt("draws more than is left"))?;
                p.held += e.held_minutes;
                p.lines.consumed_from_allowance += u.from_allowance;
                p.lines.add_usage(u, e.activity.as_ref());
                self.insert_record(e.seq, record(draws));
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
                self.periods.get_or_insert_default(e.period).held += e.held_minutes;
                self.insert_hold(
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
                let before = (hold.status == HoldStatus::Open).then(|| OpenHold::of(hold));
                hold.remaining += e.held_minutes;
                if hold.status == HoldStatus::Open {
                    hold.status = HoldStatus::Released;
                }
                if let Some(before) = before {
                    self.close_hold(h, before);
                }
                self.periods.get_or_insert_default(e.period).held += e.held_minutes;
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
                self.periods.get_or_insert_default(closes).rolled_out += e.minutes;
                let p = self.periods.get_or_insert_default(e.period);
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
                let p = self.periods.get_or_insert_default(e.period);
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
                let p = self.periods.get_or_insert_default(e.period);
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
                self.insert_record(e.seq, record(draws));
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
                let occurrence = r.free_occurrence().map(|(k, t)| (k.clone(), t));
                r.reversed_by = Some(e.seq);
                let same_period = r.period == e.period;
                let consumed = matches!(r.kind, EntryKind::Consume | EntryKind::Capture);
                let draws = r.draws.clone();
                if let Some((kind, t)) = occurrence {
                    self.free
                        .count(&self.clock, Occurrence::Record(target), &kind, t, false);
                }
                let p = self.periods.get_or_insert_default(e.period);
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
    /// The numbers of each period's entries, in order: what its statement lists. Kept
    /// apart from `state`, which `decide` copies and never reads them from.
    pub(super) period_entries: BTreeMap<PeriodKey, Vec<u64>>,
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
            period_entries: BTreeMap::new(),
        };
        ledger.apply(entries)?;
        Ok(ledger)
    }

    /// Folds in entries just posted (the ones `decide` returned, once stored).
    pub fn apply(&mut self, entries: Vec<Entry>) -> Result<(), LedgerError> {
        for e in entries {
            self.state.apply(&e)?;
            self.period_entries.entry(e.period).or_default().push(e.seq);
            self.entries.push(e);
        }
        self.state.compact();
        Ok(())
    }

    pub fn bucket(&self) -> &BucketName {
        &self.bucket
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The numbers of a period's entries, in order.
    pub(super) fn period_entries(&self, key: PeriodKey) -> &[u64] {
        self.period_entries.get(&key).map_or(&[], Vec::as_slice)
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
