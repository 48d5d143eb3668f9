//! Ledger entries: every movement of an hour account, immutable once posted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::names::{ActivityKind, Currency};
use super::period::PeriodKey;
use crate::domain::names::{ExternalId, ShortText};

/// What an entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// The period's allowance (or a change to it after a plan change).
    Grant,
    /// Usage attributed to its period.
    Consume,
    /// Minutes reserved for a booked meeting.
    Hold,
    /// A held meeting's actual duration, consumed.
    Capture,
    /// Held minutes given back: cancelled, the unused rest of a capture, or the period
    /// closed.
    Release,
    /// Unused minutes carried into the next period, as a lot.
    Rollover,
    /// Unused minutes lost at a period's close. Every close posts exactly one, even of 0
    /// minutes: it is what marks the period closed.
    Expire,
    /// A manual correction, or usage for a closed period posted in the open one.
    Adjust,
    /// Undoes one earlier consume, capture or adjust.
    Reversal,
}

/// How one usage splits. All minutes are whole; the amount is in minor units of the
/// currency. A reversal carries its original's line negated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageLine {
    /// Minutes the work took, as recorded.
    pub raw_minutes: i64,
    /// Minutes recorded but not deducted (within a free activity's caps).
    pub non_deducted_minutes: i64,
    /// The rest, rounded up to the increment: what the usage costs.
    pub billable_minutes: i64,
    /// The billable minutes covered by the allowance.
    pub from_allowance: i64,
    /// The billable minutes beyond the allowance.
    pub overage_minutes: i64,
    /// `rate x overage_minutes / 60`, rounded half up.
    pub overage_amount: i64,
    pub currency: Option<Currency>,
}

impl UsageLine {
    pub fn negated(&self) -> UsageLine {
        UsageLine {
            raw_minutes: -self.raw_minutes,
            non_deducted_minutes: -self.non_deducted_minutes,
            billable_minutes: -self.billable_minutes,
            from_allowance: -self.from_allowance,
            overage_minutes: -self.overage_minutes,
            overage_amount: -self.overage_amount,
            currency: self.currency.clone(),
        }
    }
}

/// A lot of carried-over minutes: the period they were granted in, and the last period
/// they may be used in (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub origin: PeriodKey,
    pub expires: Option<PeriodKey>,
}

/// One posted movement of one account (organisation and bucket). Entries are numbered
/// 1, 2, 3... per account; the number doubles as the optimistic-concurrency check (two
/// writers deciding from the same state both produce the same next number, and the store's
/// unique key lets only one in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub kind: EntryKind,
    /// The account period the entry is posted in (for late usage and corrections of closed
    /// periods, the open period, not the service period).
    pub period: PeriodKey,
    pub recorded_at: DateTime<Utc>,
    /// Change to the period's allowance balance: positive adds minutes, negative draws on
    /// them.
    #[serde(default)]
    pub minutes: i64,
    /// Change to the period's held minutes.
    #[serde(default)]
    pub held_minutes: i64,
    #[serde(default)]
    pub usage: Option<UsageLine>,
    /// When the work happened (usage, holds, and what corrects them).
    #[serde(default)]
    pub service_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub activity: Option<ActivityKind>,
    #[serde(default)]
    pub ticket: Option<ExternalId>,
    #[serde(default)]
    pub hold: Option<ExternalId>,
    /// For a rollover: the lot it carries.
    #[serde(default)]
    pub lot: Option<Lot>,
    /// For closing entries: the period whose close they belong to.
    #[serde(default)]
    pub closes: Option<PeriodKey>,
    #[serde(default)]
    pub reverses: Option<u64>,
    #[serde(default)]
    pub reason: Option<ShortText>,
    /// Who asked for it; `None` for what the ledger posts by itself (grants, closes).
    #[serde(default)]
    pub actor: Option<ExternalId>,
}

impl Entry {
    /// A bare entry of `kind`; the rest is filled in by whoever posts it.
    pub(super) fn new(
        seq: u64,
        kind: EntryKind,
        period: PeriodKey,
        recorded_at: DateTime<Utc>,
    ) -> Entry {
        Entry {
            seq,
            kind,
            period,
            recorded_at,
            minutes: 0,
            held_minutes: 0,
            usage: None,
            service_at: None,
            activity: None,
            ticket: None,
            hold: None,
            lot: None,
            closes: None,
            reverses: None,
            reason: None,
            actor: None,
        }
    }
}
