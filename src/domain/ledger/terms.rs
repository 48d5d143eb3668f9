//! Contract terms: what each bucket grants, how leftovers and overage are treated, and
//! which activities are free. Terms are versioned data with effective instants; a change
//! applies from its instant and never rewrites entries already posted.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::names::{ActivityKind, BucketName, Currency};
use super::period::{PeriodUnit, in_range, start_of_day};
use super::{LedgerError, TermsViolation};
use crate::domain::names::PlanName;

/// The most minutes one allowance, cap or usage may hold: about 19 years of minutes, far
/// beyond any contract, and small enough that sums of them never overflow.
pub const MAX_MINUTES: u32 = 10_000_000;
/// The highest overage rate accepted, in minor units per hour.
pub const MAX_RATE: i64 = 1_000_000_000;
/// The longest grace window accepted: a year.
pub const MAX_GRACE_HOURS: u32 = 24 * 366;
/// The grace window when a plan names none.
pub const DEFAULT_GRACE_HOURS: u32 = 72;

/// What happens to minutes left unused when a period closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Rollover {
    /// Unused minutes expire.
    #[default]
    None,
    /// All unused minutes carry over.
    All,
    /// At most `minutes` carry over in total; the rest expire.
    Capped { minutes: u32 },
    /// Each period's minutes may be used in that period and the `periods` after it.
    Expiring { periods: u32 },
}

/// What happens to billable minutes beyond the allowance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Overage {
    /// Counted apart from the allowance and billed at a rate per hour.
    Bill {
        rate_minor_units_per_hour: i64,
        currency: Currency,
    },
    /// Usage that would go beyond the allowance is refused whole.
    #[default]
    Reject,
}

/// The window a free activity's frequency cap counts in, by the organisation's local date
/// of each occurrence's service instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    /// Monday to Sunday, ISO 8601 weeks.
    PerIsoWeek,
    PerMonth,
    /// January-March, April-June, July-September, October-December.
    PerCalendarQuarter,
    /// The account period.
    PerPeriod,
}

/// An activity recorded but not deducted, up to a cap per occurrence and a number of
/// occurrences per window. Time beyond the cap, and occurrences beyond the number, are
/// deducted like any other usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeActivity {
    pub kind: ActivityKind,
    pub per_occurrence_cap_minutes: u32,
    pub frequency: Frequency,
    #[serde(default = "one")]
    pub max_per_frequency: u32,
}

fn one() -> u32 {
    1
}

fn default_grace() -> u32 {
    DEFAULT_GRACE_HOURS
}

/// One bucket's terms within a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketTerms {
    pub bucket: BucketName,
    /// Month or year; the anchor is the contract's start date, not the plan's.
    pub period: PeriodUnit,
    pub allowance_minutes: u32,
    #[serde(default)]
    pub rollover: Rollover,
    #[serde(default)]
    pub overage: Overage,
    /// Each usage's deducted minutes are rounded up to a multiple of this; 1 is none.
    #[serde(default = "one")]
    pub rounding_increment_minutes: u32,
    #[serde(default)]
    pub free_activities: Vec<FreeActivity>,
    /// Each deducting usage must reference a ticket whose work the organisation's main
    /// stakeholder authorised.
    #[serde(default)]
    pub requires_authorisation: bool,
    /// When these terms start mid-period, the period's allowance is shared by time
    /// between the old and new terms; otherwise the new allowance starts next period.
    #[serde(default)]
    pub prorate_mid_period: bool,
    /// How long after its end a period still accepts usage before it closes.
    #[serde(default = "default_grace")]
    pub grace_hours: u32,
}

impl BucketTerms {
    /// Terms with the defaults: no rollover, overage refused, no rounding, no free
    /// activities, no authorisation, no proration, a 72-hour grace window.
    pub fn new(bucket: BucketName, period: PeriodUnit, allowance_minutes: u32) -> Self {
        BucketTerms {
            bucket,
            period,
            allowance_minutes,
            rollover: Rollover::None,
            overage: Overage::Reject,
            rounding_increment_minutes: 1,
            free_activities: Vec::new(),
            requires_authorisation: false,
            prorate_mid_period: false,
            grace_hours: DEFAULT_GRACE_HOURS,
        }
    }

    pub fn free_activity(&self, kind: &ActivityKind) -> Option<&FreeActivity> {
        self.free_activities.iter().find(|f| &f.kind == kind)
    }

    fn check(&self, path: &str, errors: &mut Vec<TermsViolation>) {
        let mut e = |field: &str, reason: String| {
            errors.push(TermsViolation {
                path: format!("{path}.{field}"),
                reason,
            })
        };
        if self.allowance_minutes > MAX_MINUTES {
            e(
                "allowance_minutes",
                format!("must be at most {MAX_MINUTES}"),
            );
        }
        if let Rollover::Capped { minutes } = self.rollover
            && minutes > MAX_MINUTES
        {
            e("rollover.minutes", format!("must be at most {MAX_MINUTES}"));
        }
        if let Rollover::Expiring { periods } = self.rollover
            && periods > 1200
        {
            e("rollover.periods", "must be at most 1200".to_string());
        }
        if let Overage::Bill {
            rate_minor_units_per_hour: rate,
            ..
        } = self.overage
            && !(0..=MAX_RATE).contains(&rate)
        {
            e(
                "overage.rate_minor_units_per_hour",
                format!("must be between 0 and {MAX_RATE}"),
            );
        }
        if !(1..=1440).contains(&self.rounding_increment_minutes) {
            e(
                "rounding_increment_minutes",
                "must be between 1 (no rounding) and 1440".to_string(),
            );
        }
        if self.grace_hours > MAX_GRACE_HOURS {
            e("grace_hours", format!("must be at most {MAX_GRACE_HOURS}"));
        }
        for (i, f) in self.free_activities.iter().enumerate() {
            if self.free_activities[..i].iter().any(|o| o.kind == f.kind) {
                e(
                    &format!("free_activities[{i}].kind"),
                    "this activity kind is listed twice".to_string(),
                );
            }
            if !(1..=MAX_MINUTES).contains(&f.per_occurrence_cap_minutes) {
                e(
                    &format!("free_activities[{i}].per_occurrence_cap_minutes"),
                    format!("must be between 1 and {MAX_MINUTES}"),
                );
            }
            if f.max_per_frequency == 0 {
                e(
                    &format!("free_activities[{i}].max_per_frequency"),
                    "must be at least 1".to_string(),
                );
            }
        }
    }
}

/// A named bundle of bucket terms, such as `tier-3`: meetings 60 min a month, training
/// 120 min a year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub name: PlanName,
    pub buckets: Vec<BucketTerms>,
}

impl Plan {
    pub fn bucket(&self, name: &BucketName) -> Option<&BucketTerms> {
        self.buckets.iter().find(|b| &b.bucket == name)
    }

    /// Every problem with the plan, each naming its field.
    pub fn check(&self) -> Result<(), LedgerError> {
        let mut errors = Vec::new();
        self.check_into("", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LedgerError::InvalidTerms(errors))
        }
    }

    fn check_into(&self, prefix: &str, errors: &mut Vec<TermsViolation>) {
        // Sizes first: no pairwise work on an oversized plan.
        let n = self.buckets.len();
        let too_many_activities = self
            .buckets
            .iter()
            .position(|b| b.free_activities.len() > crate::domain::limits::FREE_ACTIVITIES);
        if n > crate::domain::limits::PLAN_BUCKETS || too_many_activities.is_some() {
            let (path, count, max) = match too_many_activities {
                Some(i) if n <= crate::domain::limits::PLAN_BUCKETS => (
                    format!("{prefix}buckets[{i}].free_activities"),
                    self.buckets[i].free_activities.len(),
                    crate::domain::limits::FREE_ACTIVITIES,
                ),
                _ => (
                    format!("{prefix}buckets"),
                    n,
                    crate::domain::limits::PLAN_BUCKETS,
                ),
            };
            errors.push(TermsViolation {
                path,
                reason: crate::domain::limits::too_many(count, max),
            });
            return;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, b) in self.buckets.iter().enumerate() {
            let path = format!("{prefix}buckets[{i}]");
            if !seen.insert(&b.bucket) {
                errors.push(TermsViolation {
                    path: format!("{path}.bucket"),
                    reason: "this bucket is listed twice".to_string(),
                });
            }
            b.check(&path, errors);
        }
    }
}

/// A plan in force from an instant until the next version's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsVersion {
    pub effective_from: DateTime<Utc>,
    pub plan: Plan,
}

impl TermsVersion {
    /// A plan in force from the start of a local date in the organisation's zone: "moves to
    /// tier-4 from 1 April".
    pub fn from_date(zone: Tz, date: NaiveDate, plan: Plan) -> Result<Self, LedgerError> {
        let effective_from =
            start_of_day(zone, date).ok_or_else(|| LedgerError::OutOfRange(date.to_string()))?;
        Ok(TermsVersion {
            effective_from,
            plan,
        })
    }
}

/// The plans an organisation has been on, one after the other. Before the first
/// version's instant no terms are in force; the organisation moving between plans and a
/// plan's own terms changing are both just a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<TermsVersion>", into = "Vec<TermsVersion>")]
pub struct TermsHistory {
    versions: Vec<TermsVersion>,
}

impl TermsHistory {
    /// Versions in any order. Refused, with every problem named by its field: two versions
    /// at the same instant, an invalid plan, or a bucket whose period unit changes between
    /// versions (its periods would overlap).
    pub fn new(mut versions: Vec<TermsVersion>) -> Result<Self, LedgerError> {
        versions.sort_by_key(|v| v.effective_from);
        let mut errors = Vec::new();
        if versions.is_empty() {
            errors.push(TermsViolation {
                path: "versions".to_string(),
                reason: "at least one version is needed".to_string(),
            });
        }
        for (i, v) in versions.iter().enumerate() {
            let path = format!("versions[{i}]");
            if !in_range(v.effective_from) {
                errors.push(TermsViolation {
                    path: format!("{path}.effective_from"),
                    reason: "must be between 1900 and 9000".to_string(),
                });
            }
            if i > 0 && versions[i - 1].effective_from == v.effective_from {
                errors.push(TermsViolation {
                    path: format!("{path}.effective_from"),
                    reason: "another version starts at the same instant".to_string(),
                });
            }
            v.plan.check_into(&format!("{path}.plan."), &mut errors);
            for (j, b) in v.plan.buckets.iter().enumerate() {
                let earlier = versions[..i]
                    .iter()
                    .filter_map(|o| o.plan.bucket(&b.bucket))
                    .next_back();
                if earlier.is_some_and(|o| o.period != b.period) {
                    errors.push(TermsViolation {
                        path: format!("{path}.plan.buckets[{j}].period"),
                        reason: "a bucket keeps its period unit across versions".to_string(),
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(TermsHistory { versions })
        } else {
            Err(LedgerError::InvalidTerms(errors))
        }
    }

    /// One plan for all time from `effective_from`.
    pub fn single(effective_from: DateTime<Utc>, plan: Plan) -> Result<Self, LedgerError> {
        TermsHistory::new(vec![TermsVersion {
            effective_from,
            plan,
        }])
    }

    /// This history with one more version.
    pub fn with(&self, version: TermsVersion) -> Result<Self, LedgerError> {
        let mut versions = self.versions.clone();
        versions.push(version);
        TermsHistory::new(versions)
    }

    pub fn versions(&self) -> &[TermsVersion] {
        &self.versions
    }

    /// The plan in force at `t`.
    pub fn plan_at(&self, t: DateTime<Utc>) -> Option<&Plan> {
        let i = self.versions.partition_point(|v| v.effective_from <= t);
        i.checked_sub(1).map(|i| &self.versions[i].plan)
    }

    /// One bucket's terms in force at `t`.
    pub fn bucket_at(&self, bucket: &BucketName, t: DateTime<Utc>) -> Option<&BucketTerms> {
        self.plan_at(t).and_then(|p| p.bucket(bucket))
    }
}

impl TryFrom<Vec<TermsVersion>> for TermsHistory {
    type Error = LedgerError;
    fn try_from(v: Vec<TermsVersion>) -> Result<Self, LedgerError> {
        TermsHistory::new(v)
    }
}

impl From<TermsHistory> for Vec<TermsVersion> {
    fn from(h: TermsHistory) -> Self {
        h.versions
    }
}

/// What an organisation's hour accounts are computed against: its zone (period boundaries
/// are local midnights there), the contract's start date (the periods' anchor) and its
/// terms history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    pub zone: Tz,
    pub start: NaiveDate,
    pub terms: TermsHistory,
}

/// One bucket's terms over time: `(from, terms)`, where `None` means the plan in force from
/// `from` has no such bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BucketTimeline {
    pub versions: Vec<(DateTime<Utc>, Option<BucketTerms>)>,
}

impl BucketTimeline {
    pub fn new(history: &TermsHistory, bucket: &BucketName) -> Self {
        BucketTimeline {
            versions: history
                .versions()
                .iter()
                .map(|v| (v.effective_from, v.plan.bucket(bucket).cloned()))
                .collect(),
        }
    }

    pub fn at(&self, t: DateTime<Utc>) -> Option<&BucketTerms> {
        let i = self.versions.partition_point(|(from, _)| *from <= t);
        i.checked_sub(1).and_then(|i| self.versions[i].1.as_ref())
    }

    /// The first instant the bucket has terms.
    pub fn first(&self) -> Option<(DateTime<Utc>, &BucketTerms)> {
        self.versions
            .iter()
            .find_map(|(from, t)| t.as_ref().map(|t| (*from, t)))
    }

    /// The allowance of the period `[start, end)`. The terms in force at its start set
    /// the rate; a change inside it that prorates switches the rate from its instant, one
    /// that does not leaves the rate for this period alone. The total is the time-weighted
    /// sum, rounded down to whole minutes once, so a period without changes gets its
    /// allowance exactly.
    pub fn allowance(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
        let total = (end - start).num_seconds();
        if total <= 0 {
            return 0;
        }
        let mut rate = i128::from(self.at(start).map_or(0, |t| t.allowance_minutes));
        let mut cursor = start;
        let mut sum: i128 = 0;
        for (from, terms) in &self.versions {
            if *from <= start || *from >= end {
                continue;
            }
            sum += rate * i128::from((*from - cursor).num_seconds());
            cursor = *from;
            // A bucket dropped mid-period keeps what it was given: nothing says to
            // prorate it away.
            if let Some(t) = terms
                && t.prorate_mid_period
            {
                rate = i128::from(t.allowance_minutes);
            }
        }
        sum += rate * i128::from((end - cursor).num_seconds());
        i64::try_from(sum / i128::from(total)).unwrap_or(i64::MAX)
    }
}
