//! What can be asked of an hour account, and `decide`: the entries each request posts.
//!
//! `decide` is pure: from the account (contract terms and posted entries), a command and
//! the current instant it returns the entries to append, numbered from the account's next
//! number, or an error and nothing. Before the command's own entries it returns what has
//! fallen due by `now`: each period's grant (and any change to it after a plan change), and
//! the closing entries of each period that has closed. Those are keyed by period and
//! derived from the entries, so deciding again after they are stored never repeats them.

use chrono::{DateTime, Utc};

use super::LedgerError;
use super::account::{HoldState, HoldStatus, Ledger, State};
use super::entry::{Entry, EntryKind, Lot, UsageLine};
use super::names::ActivityKind;
use super::period::{PeriodKey, in_range};
use super::terms::{BucketTerms, Frequency, MAX_MINUTES, Overage, Rollover};
use crate::domain::names::{ExternalId, RoleName, ShortText};
use crate::domain::organization::Organization;

/// How many periods ahead a meeting can be booked: three years of monthly periods.
pub const MAX_PERIODS_AHEAD: i64 = 36;

/// The contact role that authorises work against contracted hours.
pub const MAIN_STAKEHOLDER: &str = "main_stakeholder";

/// Whether `authoriser` held the main stakeholder role at `at`: what makes a ticket's work
/// authorised for a bucket that requires it.
pub fn authorised_by_main_stakeholder(
    org: &Organization,
    authoriser: &ExternalId,
    at: DateTime<Utc>,
) -> bool {
    let Ok(role) = RoleName::parse(MAIN_STAKEHOLDER) else {
        return false;
    };
    org.contact(authoriser).is_some_and(|c| c.holds(&role, at))
}

/// The ticket a usage is for, and whether its work was authorised by the organisation's
/// main stakeholder (the API works that out from the ticket's events and the contacts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRef {
    pub id: ExternalId,
    pub authorised_by_main_stakeholder: bool,
}

/// Work done, to be recorded against the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub minutes: u32,
    pub activity: Option<ActivityKind>,
    /// When the work happened: it decides the period, not when it is recorded.
    pub service_at: DateTime<Utc>,
    pub ticket: Option<TicketRef>,
    pub actor: ExternalId,
    pub reason: Option<ShortText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    RecordUsage(Usage),
    /// Reserve minutes for a booked meeting at `service_at`.
    Hold {
        hold: ExternalId,
        minutes: u32,
        service_at: DateTime<Utc>,
        activity: Option<ActivityKind>,
        ticket: Option<TicketRef>,
        actor: ExternalId,
    },
    /// The meeting took `minutes`: consume them; the rest of the hold is released.
    Capture {
        hold: ExternalId,
        minutes: u32,
        actor: ExternalId,
    },
    /// The meeting is cancelled.
    Release {
        hold: ExternalId,
        actor: ExternalId,
        reason: Option<ShortText>,
    },
    /// Add (positive) or remove (negative) minutes in the current period.
    Adjust {
        minutes: i64,
        reason: ShortText,
        actor: ExternalId,
    },
    Reverse {
        entry: u64,
        reason: ShortText,
        actor: ExternalId,
    },
    /// Post only what has fallen due: the job's path, and what a read runs first.
    ClosePeriods,
    /// The billing job closes a period (and any before it) that has ended, without waiting
    /// for its grace window.
    Lock {
        period: PeriodKey,
        actor: ExternalId,
    },
}

fn round_up(minutes: i64, increment: i64) -> i64 {
    if increment <= 1 {
        return minutes;
    }
    (minutes + increment - 1) / increment * increment
}

/// `rate x minutes / 60`, rounded half up, in integers.
pub fn overage_amount(rate_per_hour: i64, minutes: i64) -> i64 {
    let n = i128::from(rate_per_hour) * i128::from(minutes);
    i64::try_from((2 * n + 60) / 120).unwrap_or(i64::MAX)
}

fn check_minutes(field: &str, minutes: i64, min: i64) -> Result<(), LedgerError> {
    if minutes < min || minutes > i64::from(MAX_MINUTES) {
        return Err(LedgerError::InvalidMinutes {
            field: field.to_string(),
            reason: format!("must be between {min} and {MAX_MINUTES}"),
        });
    }
    Ok(())
}

fn check_instant(field: &str, t: DateTime<Utc>) -> Result<(), LedgerError> {
    if in_range(t) {
        Ok(())
    } else {
        Err(LedgerError::OutOfRange(format!("{field} {t}")))
    }
}

/// Deducting usage needs a ticket authorised by the main stakeholder when the bucket says
/// so. Free activities are exempt: the contract defines them as meetings held with the
/// main stakeholder.
fn authorise(
    terms: &BucketTerms,
    activity: Option<&ActivityKind>,
    ticket: Option<&TicketRef>,
) -> Result<(), LedgerError> {
    if !terms.requires_authorisation || activity.is_some_and(|a| terms.free_activity(a).is_some()) {
        return Ok(());
    }
    match ticket {
        None => Err(LedgerError::NotAuthorised(format!(
            "bucket {} records usage only against a ticket authorised by the main stakeholder",
            terms.bucket
        ))),
        Some(t) if !t.authorised_by_main_stakeholder => Err(LedgerError::NotAuthorised(format!(
            "ticket {} was not authorised by the organisation's main stakeholder",
            t.id
        ))),
        Some(_) => Ok(()),
    }
}

fn text(s: &str) -> Option<ShortText> {
    ShortText::parse(s).ok()
}

impl Ledger {
    /// The entries `command` posts at `now`, after whatever has fallen due.
    pub fn decide(&self, command: &Command, now: DateTime<Utc>) -> Result<Vec<Entry>, LedgerError> {
        check_instant("now", now)?;
        let mut w = Writer {
            ledger: self,
            state: self.state.clone(),
            out: Vec::new(),
            now,
        };
        let mut touched = None;
        let mut lock = None;
        match command {
            Command::RecordUsage(u) => {
                check_instant("service_at", u.service_at)?;
                touched = Some(self.period_at(u.service_at)?);
            }
            Command::Hold { service_at, .. } => {
                check_instant("service_at", *service_at)?;
                let p = self.period_at(*service_at)?;
                // A booking grants every period up to its own: bound how far ahead.
                let ahead =
                    self.state.clock.index(p) - self.state.clock.index(self.period_at(now)?);
                if ahead > MAX_PERIODS_AHEAD {
                    return Err(LedgerError::OutOfRange(format!(
                        "a booking more than {MAX_PERIODS_AHEAD} periods ahead ({service_at})"
                    )));
                }
                touched = Some(p);
            }
            Command::Lock { period, actor } => {
                let period = self.period_starting(period.start())?;
                if now < self.state.clock.end_utc(period)? {
                    return Err(LedgerError::PeriodNotEnded(period));
                }
                lock = Some((period, actor));
            }
            _ => {}
        }
        w.settle(touched, lock)?;
        w.run(command)?;
        Ok(w.out)
    }
}

/// `decide`'s workspace: the account as it will be once the entries decided so far are
/// posted.
struct Writer<'a> {
    ledger: &'a Ledger,
    state: State,
    out: Vec<Entry>,
    now: DateTime<Utc>,
}

impl Writer<'_> {
    fn entry(&self, kind: EntryKind, period: PeriodKey) -> Entry {
        Entry::new(self.state.next_seq, kind, period, self.now)
    }

    fn post(&mut self, e: Entry) -> Result<(), LedgerError> {
        self.state.apply(&e)?;
        self.out.push(e);
        Ok(())
    }

    fn terms_at(&self, t: DateTime<Utc>) -> Result<&BucketTerms, LedgerError> {
        self.ledger
            .timeline
            .at(t)
            .ok_or_else(|| LedgerError::NoTerms {
                bucket: self.ledger.bucket.clone(),
                at: t,
            })
    }

    /// The open period usage recorded now goes to. A server whose clock lags one that has
    /// already closed the current period still posts after the close, never into it.
    fn current(&self) -> Result<PeriodKey, LedgerError> {
        let mut q = self.state.clock.key_at(self.now)?;
        if let Some(c) = self.state.closed_through
            && q <= c
        {
            q = self.state.clock.next(c)?;
        }
        if q < self.ledger.first {
            return Err(LedgerError::NoTerms {
                bucket: self.ledger.bucket.clone(),
                at: self.now,
            });
        }
        Ok(q)
    }

    /// Grants and closes every period from the first open one to the current one (or the
    /// one a command touches, if later), in order.
    fn settle(
        &mut self,
        touched: Option<PeriodKey>,
        lock: Option<(PeriodKey, &ExternalId)>,
    ) -> Result<(), LedgerError> {
        let clock = self.state.clock;
        let current = clock.key_at(self.now)?;
        let last = touched.map_or(current, |t| t.max(current));
        let mut p = match self.state.closed_through {
            Some(c) => clock.next(c)?,
            None => self.ledger.first,
        };
        // Periods close in order: once one is not due, none after it is.
        let mut closing = true;
        while p <= last {
            self.grant(p)?;
            let locked = lock.filter(|(through, _)| p <= *through);
            if closing && (locked.is_some() || self.now >= self.ledger.closes_at(p)?) {
                self.close(p, locked.map(|(_, actor)| actor))?;
            } else {
                closing = false;
            }
            p = clock.next(p)?;
        }
        Ok(())
    }

    /// Brings the period's grants to its allowance under the terms as now known. Taking
    /// minutes back (a downgrade that prorates) stops at what is left unused: minutes
    /// already consumed stay consumed.
    fn grant(&mut self, p: PeriodKey) -> Result<(), LedgerError> {
        let clock = self.state.clock;
        let due = self
            .ledger
            .timeline
            .allowance(clock.start_utc(p)?, clock.end_utc(p)?);
        let (granted, own) = self
            .state
            .period(p)
            .map_or((0, 0), |s| (s.lines.granted, s.own));
        let mut delta = due - granted;
        if delta < 0 {
            delta = -(-delta).min(own);
        }
        if delta != 0 {
            let mut e = self.entry(EntryKind::Grant, p);
            e.minutes = delta;
            e.reason = text(if granted == 0 {
                "allowance for the period"
            } else {
                "allowance changed by a plan change"
            });
            self.post(e)?;
        }
        Ok(())
    }

    /// Posts a period's closing entries: releases of holds still open, the rollover of
    /// each lot that carries over, and the one expiry that marks the period closed.
    fn close(&mut self, p: PeriodKey, locked_by: Option<&ExternalId>) -> Result<(), LedgerError> {
        let clock = self.state.clock;
        // In booking order, so the entries do not depend on how hold ids sort.
        let open_holds: Vec<(ExternalId, i64)> = self
            .state
            .open_holds
            .range((p, 0)..=(p, u64::MAX))
            .filter_map(|(_, id)| Some((id.clone(), self.state.holds.get(id)?.remaining)))
            .collect();
        for (id, m) in open_holds {
            let mut e = self.entry(EntryKind::Release, p);
            e.held_minutes = -m;
            e.hold = Some(id);
            e.reason = text("the period closed before the hold was captured");
            self.post(e)?;
        }
        let end = clock.end_utc(p)?;
        let rule = self
            .ledger
            .timeline
            .at(end - chrono::TimeDelta::seconds(1))
            .map_or(Rollover::None, |t| t.rollover);
        let next = clock.next(p)?;
        let index = clock.index(p);
        let (rolls, expired) = match self.state.period(p) {
            Some(s) => carry_over(s, p, index, rule, |n| clock.nth(n))?,
            None => (Vec::new(), 0),
        };
        for (lot, minutes) in rolls {
            let mut e = self.entry(EntryKind::Rollover, next);
            e.minutes = minutes;
            e.lot = Some(lot);
            e.closes = Some(p);
            self.post(e)?;
        }
        let mut e = self.entry(EntryKind::Expire, p);
        e.minutes = -expired;
        e.closes = Some(p);
        e.reason = text(if locked_by.is_some() {
            "period locked by billing"
        } else {
            "period closed after its grace window"
        });
        e.actor = locked_by.cloned();
        self.post(e)
    }

    fn run(&mut self, command: &Command) -> Result<(), LedgerError> {
        match command {
            Command::RecordUsage(u) => self.record_usage(u),
            Command::Hold {
                hold,
                minutes,
                service_at,
                activity,
                ticket,
                actor,
            } => self.hold(
                hold,
                *minutes,
                *service_at,
                activity.as_ref(),
                ticket.as_ref(),
                actor,
            ),
            Command::Capture {
                hold,
                minutes,
                actor,
            } => self.capture(hold, *minutes, actor),
            Command::Release {
                hold,
                actor,
                reason,
            } => {
                let h = self.open_hold(hold)?;
                let mut e = self.entry(EntryKind::Release, h.period);
                e.held_minutes = -h.remaining;
                e.hold = Some(hold.clone());
                e.reason = reason.clone().or_else(|| text("cancelled"));
                e.actor = Some(actor.clone());
                self.post(e)
            }
            Command::Adjust {
                minutes,
                reason,
                actor,
            } => {
                check_minutes("minutes", minutes.checked_abs().unwrap_or(i64::MAX), 1)?;
                let q = self.current()?;
                if *minutes < 0 {
                    self.need(q, -*minutes)?;
                }
                let mut e = self.entry(EntryKind::Adjust, q);
                e.minutes = *minutes;
                e.reason = Some(reason.clone());
                e.actor = Some(actor.clone());
                self.post(e)
            }
            Command::Reverse {
                entry,
                reason,
                actor,
            } => self.reverse(*entry, reason, actor),
            Command::ClosePeriods | Command::Lock { .. } => Ok(()),
        }
    }

    /// Refuses to draw more than can be promised: the allowance balance never goes below
    /// zero, and held minutes are promised already.
    fn need(&self, p: PeriodKey, minutes: i64) -> Result<(), LedgerError> {
        let available = self.state.available(p, 0);
        if minutes > available {
            return Err(LedgerError::InsufficientBalance {
                period: p,
                needed: minutes,
                available,
            });
        }
        Ok(())
    }

    /// How many occurrences of `kind` already took free minutes in the window of
    /// `service_at`: usage not reversed, and bookings still held (other than `except`).
    fn occurrences(
        &self,
        kind: &ActivityKind,
        f: Frequency,
        service_at: DateTime<Utc>,
        except: Option<&ExternalId>,
    ) -> Result<u32, LedgerError> {
        self.state.occurrences(kind, f, service_at, except)
    }

    /// Splits `raw` minutes: the free part (within a free activity's caps), the rest
    /// rounded up to the increment, and of that what the allowance covers (up to
    /// `available`) and the overage. Under `reject`, any overage refuses the whole usage.
    fn split(
        &self,
        terms: &BucketTerms,
        raw: i64,
        activity: Option<&ActivityKind>,
        service_at: DateTime<Utc>,
        except: Option<&ExternalId>,
        available: i64,
    ) -> Result<UsageLine, LedgerError> {
        let mut free = 0;
        if let Some(kind) = activity
            && let Some(f) = terms.free_activity(kind)
            && self.occurrences(kind, f.frequency, service_at, except)? < f.max_per_frequency
        {
            free = raw.min(i64::from(f.per_occurrence_cap_minutes));
        }
        let billable = round_up(raw - free, i64::from(terms.rounding_increment_minutes));
        let from_allowance = billable.min(available);
        let overage = billable - from_allowance;
        let (amount, currency) = match &terms.overage {
            Overage::Bill {
                rate_minor_units_per_hour,
                currency,
            } => (
                overage_amount(*rate_minor_units_per_hour, overage),
                Some(currency.clone()),
            ),
            Overage::Reject if overage > 0 => {
                return Err(LedgerError::OverageRejected {
                    bucket: self.ledger.bucket.clone(),
                    billable,
                    available,
                });
            }
            Overage::Reject => (0, None),
        };
        Ok(UsageLine {
            raw_minutes: raw,
            non_deducted_minutes: free,
            billable_minutes: billable,
            from_allowance,
            overage_minutes: overage,
            overage_amount: amount,
            currency,
        })
    }

    fn record_usage(&mut self, u: &Usage) -> Result<(), LedgerError> {
        check_minutes("minutes", i64::from(u.minutes), 1)?;
        if u.service_at > self.now {
            return Err(LedgerError::ServiceInFuture(u.service_at));
        }
        let terms = self.terms_at(u.service_at)?;
        authorise(terms, u.activity.as_ref(), u.ticket.as_ref())?;
        let service_period = self.state.clock.key_at(u.service_at)?;
        // A closed statement never changes: usage for a closed period is posted in the
        // open one, as an adjustment that names its service instant.
        let late = self.state.is_closed(service_period);
        let (kind, p) = if late {
            (EntryKind::Adjust, self.current()?)
        } else {
            (EntryKind::Consume, service_period)
        };
        let available = self.state.available(p, 0);
        let line = self.split(
            terms,
            i64::from(u.minutes),
            u.activity.as_ref(),
            u.service_at,
            None,
            available,
        )?;
        let mut e = self.entry(kind, p);
        e.minutes = -line.from_allowance;
        e.usage = Some(line);
        e.service_at = Some(u.service_at);
        e.activity = u.activity.clone();
        e.ticket = u.ticket.as_ref().map(|t| t.id.clone());
        e.actor = Some(u.actor.clone());
        e.reason = u.reason.clone().or_else(|| {
            if late {
                text(&format!(
                    "usage at {} in period {service_period}, closed when recorded",
                    u.service_at.to_rfc3339()
                ))
            } else {
                None
            }
        });
        self.post(e)
    }

    fn hold(
        &mut self,
        hold: &ExternalId,
        minutes: u32,
        service_at: DateTime<Utc>,
        activity: Option<&ActivityKind>,
        ticket: Option<&TicketRef>,
        actor: &ExternalId,
    ) -> Result<(), LedgerError> {
        check_minutes("minutes", i64::from(minutes), 1)?;
        if self.state.holds.contains_key(hold) {
            return Err(LedgerError::HoldExists(hold.clone()));
        }
        let terms = self.terms_at(service_at)?;
        authorise(terms, activity, ticket)?;
        let p = self.state.clock.key_at(service_at)?;
        if self.state.is_closed(p) {
            return Err(LedgerError::PeriodClosed(p));
        }
        // The booking is planned as if the meeting took place now: under `reject` it must
        // fit in what is not yet promised, so two bookings cannot promise the same hour.
        let available = self.state.available(p, 0);
        let line = self.split(
            terms,
            i64::from(minutes),
            activity,
            service_at,
            None,
            available,
        )?;
        let mut e = self.entry(EntryKind::Hold, p);
        e.held_minutes = line.billable_minutes;
        e.usage = Some(line);
        e.service_at = Some(service_at);
        e.activity = activity.cloned();
        e.ticket = ticket.map(|t| t.id.clone());
        e.hold = Some(hold.clone());
        e.actor = Some(actor.clone());
        self.post(e)
    }

    fn open_hold(&self, hold: &ExternalId) -> Result<HoldState, LedgerError> {
        let h = self
            .state
            .holds
            .get(hold)
            .ok_or_else(|| LedgerError::UnknownHold(hold.clone()))?;
        if h.status != HoldStatus::Open {
            return Err(LedgerError::HoldNotOpen {
                hold: hold.clone(),
                status: h.status,
            });
        }
        Ok(h.clone())
    }

    fn capture(
        &mut self,
        hold: &ExternalId,
        minutes: u32,
        actor: &ExternalId,
    ) -> Result<(), LedgerError> {
        check_minutes("minutes", i64::from(minutes), 1)?;
        let h = self.open_hold(hold)?;
        let terms = self.terms_at(h.service_at)?;
        let available = self.state.available(h.period, h.remaining);
        let line = self.split(
            terms,
            i64::from(minutes),
            h.activity.as_ref(),
            h.service_at,
            Some(hold),
            available,
        )?;
        let captured = h.remaining.min(line.billable_minutes);
        let mut e = self.entry(EntryKind::Capture, h.period);
        e.minutes = -line.from_allowance;
        e.held_minutes = -captured;
        e.usage = Some(line);
        e.service_at = Some(h.service_at);
        e.activity = h.activity.clone();
        e.ticket = h.ticket.clone();
        e.hold = Some(hold.clone());
        e.actor = Some(actor.clone());
        self.post(e)?;
        let rest = h.remaining - captured;
        if rest > 0 {
            let mut e = self.entry(EntryKind::Release, h.period);
            e.held_minutes = -rest;
            e.hold = Some(hold.clone());
            e.reason = text("the rest of the hold after capture");
            e.actor = Some(actor.clone());
            self.post(e)?;
        }
        Ok(())
    }

    fn reverse(
        &mut self,
        seq: u64,
        reason: &ShortText,
        actor: &ExternalId,
    ) -> Result<(), LedgerError> {
        let Some(r) = self.state.records.get(&seq).cloned() else {
            return Err(
                match self
                    .ledger
                    .entry(seq)
                    .or_else(|| self.out.iter().find(|e| e.seq == seq))
                {
                    Some(e) => LedgerError::NotReversible { seq, kind: e.kind },
                    None => LedgerError::UnknownEntry(seq),
                },
            );
        };
        if let Some(by) = r.reversed_by {
            return Err(LedgerError::AlreadyReversed { seq, by });
        }
        // A closed statement never changes: the reversal of an entry in a closed period is
        // posted in the open one.
        let p = if self.state.is_closed(r.period) {
            self.current()?
        } else {
            r.period
        };
        if r.minutes > 0 {
            self.need(p, r.minutes)?;
        }
        let mut e = self.entry(EntryKind::Reversal, p);
        e.minutes = -r.minutes;
        e.usage = r.usage.as_ref().map(UsageLine::negated);
        e.service_at = r.service_at;
        e.activity = r.activity.clone();
        e.ticket = r.ticket.clone();
        e.hold = r.hold.clone();
        e.reverses = Some(seq);
        e.reason = Some(reason.clone());
        e.actor = Some(actor.clone());
        self.post(e)
    }
}

/// What a closing period hands on: `(lot, minutes)` to roll into the next period, and the
/// minutes that expire. A lot past its last period always expires; the others follow the
/// rollover rule in force at the period's end, in consumption order (so a cap keeps the
/// minutes that would be used first).
fn carry_over(
    s: &super::account::PeriodState,
    p: PeriodKey,
    index: i64,
    rule: Rollover,
    nth: impl Fn(i64) -> Result<PeriodKey, LedgerError>,
) -> Result<(Vec<(Lot, i64)>, i64), LedgerError> {
    let mut lots: Vec<(Lot, i64)> = s
        .order()
        .into_iter()
        .map(|slot| match slot {
            super::account::Slot::Own => (
                Lot {
                    origin: p,
                    expires: None,
                },
                s.own,
            ),
            super::account::Slot::Carried(i) => (s.carried[i].lot, s.carried[i].minutes),
        })
        .filter(|(_, m)| *m > 0)
        .collect();
    let mut expired = 0;
    let mut rolls = Vec::new();
    let mut cap = match rule {
        Rollover::Capped { minutes } => i64::from(minutes),
        _ => i64::MAX,
    };
    for (lot, m) in lots.drain(..) {
        if lot.expires.is_some_and(|e| e <= p) {
            expired += m;
            continue;
        }
        let carried = match rule {
            Rollover::None => None,
            Rollover::All | Rollover::Capped { .. } => Some(lot),
            Rollover::Expiring { periods } => match lot.expires {
                Some(_) => Some(lot),
                None if periods == 0 => None,
                None => Some(Lot {
                    origin: lot.origin,
                    expires: Some(nth(index + i64::from(periods))?),
                }),
            },
        };
        match carried {
            Some(lot) => {
                let keep = m.min(cap);
                cap -= keep;
                if keep > 0 {
                    rolls.push((lot, keep));
                }
                expired += m - keep;
            }
            None => expired += m,
        }
    }
    Ok((rolls, expired))
}
