//! Prepaid support hours: one ledger per organisation and bucket (`meetings`, `training`,
//! `customer_success`...), each a fold of immutable entries.
//!
//! The state of an account is a pure function of its contract (zone, start date, terms
//! history) and its posted entries ([`Ledger::new`]). Every request is
//! [`Ledger::decide`]: the entries to append, or an error and nothing. Entries are numbered
//! per account, so the store needs only to append them under a unique `(account, seq)` key
//! and retry on a conflict; nothing is ever updated or deleted. The rules, with worked
//! examples, are in `docs/hours.md`.

mod account;
mod command;
mod cow;
mod entry;
mod names;
mod period;
mod statement;
mod terms;

#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use chrono::{DateTime, NaiveDate, Utc};

pub use account::{HoldStatus, Ledger, Lines};
pub use command::{
    Command, MAIN_STAKEHOLDER, MAX_PERIODS_AHEAD, TicketRef, Usage, authorised_by_main_stakeholder,
    overage_amount,
};
pub use entry::{Entry, EntryKind, Lot, UsageLine};
pub use names::{ActivityKind, BucketName, Currency};
pub use period::{PeriodClock, PeriodKey, PeriodRule, PeriodUnit, start_of_day};
pub use statement::Statement;
pub use terms::{
    BucketTerms, Contract, DEFAULT_GRACE_HOURS, FreeActivity, Frequency, MAX_MINUTES, MAX_RATE,
    Overage, Plan, Rollover, TermsHistory, TermsVersion,
};

use crate::domain::names::ExternalId;

/// One invalid field of a plan or terms history: its path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermsViolation {
    pub path: String,
    pub reason: String,
}

/// How the API should report a ledger error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// The request is well-formed but the account's state refuses it.
    FailedPrecondition,
    /// The stored entries do not fold: a bug or tampering, never the caller's fault.
    Internal,
}

/// Why the ledger refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("invalid terms: {}", describe(.0))]
    InvalidTerms(Vec<TermsViolation>),
    #[error("{field}: {reason}")]
    InvalidMinutes { field: String, reason: String },
    #[error("{0} is outside the supported range")]
    OutOfRange(String),
    #[error("{0} does not start a period of this account")]
    NotAPeriodStart(NaiveDate),
    #[error("usage at {0} has not happened yet")]
    ServiceInFuture(DateTime<Utc>),
    #[error("the contract has no bucket {0}")]
    UnknownBucket(BucketName),
    #[error("entry {0} not found")]
    UnknownEntry(u64),
    #[error("hold {0} not found")]
    UnknownHold(ExternalId),
    #[error("hold {0} exists already")]
    HoldExists(ExternalId),
    #[error("no terms for bucket {bucket} are in force at {at}")]
    NoTerms {
        bucket: BucketName,
        at: DateTime<Utc>,
    },
    #[error("{0}")]
    NotAuthorised(String),
    #[error(
        "bucket {bucket} refuses overage: the usage needs {billable} billable minutes and {available} are available"
    )]
    OverageRejected {
        bucket: BucketName,
        billable: i64,
        available: i64,
    },
    #[error("period {period} has {available} minutes available; {needed} are needed")]
    InsufficientBalance {
        period: PeriodKey,
        needed: i64,
        available: i64,
    },
    #[error("hold {hold} is {status:?}, not open")]
    HoldNotOpen {
        hold: ExternalId,
        status: HoldStatus,
    },
    #[error("entry {seq} is a {kind:?}; only consume, capture and adjust entries can be reversed")]
    NotReversible { seq: u64, kind: EntryKind },
    #[error("entry {seq} is already reversed by entry {by}")]
    AlreadyReversed { seq: u64, by: u64 },
    #[error("period {0} is closed")]
    PeriodClosed(PeriodKey),
    #[error("period {0} has not ended")]
    PeriodNotEnded(PeriodKey),
    #[error("stored entry {seq} does not fold: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("statement of period {period} does not add up: {reason}")]
    Invariant { period: PeriodKey, reason: String },
}

fn describe(v: &[TermsViolation]) -> String {
    v.iter()
        .map(|v| format!("{}: {}", v.path, v.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl LedgerError {
    pub fn class(&self) -> ErrorClass {
        use LedgerError::*;
        match self {
            InvalidTerms(_)
            | InvalidMinutes { .. }
            | OutOfRange(_)
            | NotAPeriodStart(_)
            | ServiceInFuture(_) => ErrorClass::InvalidArgument,
            UnknownBucket(_) | UnknownEntry(_) | UnknownHold(_) => ErrorClass::NotFound,
            HoldExists(_) => ErrorClass::AlreadyExists,
            NoTerms { .. }
            | NotAuthorised(_)
            | OverageRejected { .. }
            | InsufficientBalance { .. }
            | HoldNotOpen { .. }
            | NotReversible { .. }
            | AlreadyReversed { .. }
            | PeriodClosed(_)
            | PeriodNotEnded(_) => ErrorClass::FailedPrecondition,
            Corrupt { .. } | Invariant { .. } => ErrorClass::Internal,
        }
    }
}
