//! The statement of one account-period: every line the contract speaks of, its entries,
//! and the check that the lines add up.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::LedgerError;
use super::account::{Ledger, Lines};
use super::entry::Entry;
use super::names::{ActivityKind, BucketName, Currency};
use super::period::PeriodKey;

/// One bucket's account for one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub bucket: BucketName,
    pub period: PeriodKey,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// When the period closes by itself (its end plus the grace window).
    pub closes_at: DateTime<Utc>,
    pub closed: bool,
    /// What the period starts with: always 0, because a period owns no minutes until they
    /// are posted into it, its own as the grant and the previous period's as rolled-in lots.
    pub opening: i64,
    pub granted: i64,
    pub rolled_in: i64,
    pub consumed_from_allowance: i64,
    pub expired: i64,
    /// Manual corrections, late usage for closed periods, and reversals posted here of
    /// entries of closed periods (signed).
    pub adjustments: i64,
    /// `opening + granted + rolled_in - consumed_from_allowance - expired + adjustments`:
    /// the allowance left while the period is open; once closed, what it carried over.
    pub closing: i64,
    /// Minutes recorded but not deducted, per activity kind.
    pub non_deducted: BTreeMap<ActivityKind, i64>,
    pub overage_minutes: i64,
    /// Overage amounts in minor units, per currency (a plan change can change it).
    pub overage_amount: BTreeMap<Currency, i64>,
    /// Usage minutes as recorded, and after rounding.
    pub raw_minutes: i64,
    pub billable_minutes: i64,
    /// Minutes reserved by bookings not yet captured or released.
    pub held: i64,
    /// Allowance minutes that can still be promised: closing less held, never below 0.
    pub available: i64,
    pub entries: Vec<Entry>,
}

impl Ledger {
    /// The statement of a period as posted. Run `ClosePeriods` first so that what has
    /// fallen due is in it.
    pub fn statement(&self, period: PeriodKey) -> Result<Statement, LedgerError> {
        self.statement_with(period, true)
    }

    /// The statement's lines without its entries: what a balance needs, in time that does
    /// not grow with the period's entries.
    pub fn summary(&self, period: PeriodKey) -> Result<Statement, LedgerError> {
        self.statement_with(period, false)
    }

    fn statement_with(
        &self,
        period: PeriodKey,
        with_entries: bool,
    ) -> Result<Statement, LedgerError> {
        let period = self.period_starting(period.start())?;
        let clock = self.clock();
        let empty = super::account::PeriodState::default();
        let s = self.state.period(period).unwrap_or(&empty);
        let Lines {
            granted,
            rolled_in,
            consumed_from_allowance,
            expired,
            adjustments,
            non_deducted,
            overage_minutes,
            overage_amount,
            raw_minutes,
            billable_minutes,
        } = s.lines.clone();
        let opening = 0;
        let closing =
            opening + granted + rolled_in - consumed_from_allowance - expired + adjustments;
        // The lines are sums of entries; the lots are what each entry drew. They must
        // agree, or the fold is wrong.
        let lots = s.balance() + s.rolled_out;
        if closing != lots {
            return Err(LedgerError::Invariant {
                period,
                reason: format!("the lines close at {closing} but the lots hold {lots}"),
            });
        }
        let entries = if with_entries {
            self.period_entries(period)
                .iter()
                .filter_map(|&seq| self.entry(seq).cloned())
                .collect()
        } else {
            Vec::new()
        };
        Ok(Statement {
            bucket: self.bucket().clone(),
            period,
            starts_at: clock.start_utc(period)?,
            ends_at: clock.end_utc(period)?,
            closes_at: self.closes_at(period)?,
            closed: self.is_closed(period),
            opening,
            granted,
            rolled_in,
            consumed_from_allowance,
            expired,
            adjustments,
            closing,
            non_deducted,
            overage_minutes,
            overage_amount,
            raw_minutes,
            billable_minutes,
            held: s.held,
            available: if s.closed { 0 } else { s.available(0) },
            entries,
        })
    }
}
