//! Prepaid hours: plans, bucket terms, contracts, ledger entries and statements.

use crate::api::convert::{self as cv};
use crate::api::error::{AppResult, Check};
use crate::api::pb;
use crate::app::hours::{Balance, LedgerWrite, StatementView};
use crate::app::parse_body;
use crate::domain::hours::{HoursContractSpec, plan_name};
use crate::domain::ledger::{
    ActivityKind, BucketName, BucketTerms, Currency, Entry, EntryKind, FreeActivity, Frequency,
    LedgerError, Overage, PeriodUnit, Plan, Rollover, Statement,
};
use crate::domain::limits;
use crate::domain::names::ResourceId;
use crate::store::ResourceKind;
// ---------------------------------------------------------------- parsing

pub fn positive_u32(c: &mut Check, field: &str, v: i32) -> Option<u32> {
    match u32::try_from(v) {
        Ok(v) if v >= 1 => Some(v),
        _ => {
            c.fail(field, "must be 1 or more");
            None
        }
    }
}

fn bucket_terms(c: &mut Check, field: &str, b: &pb::BucketTerms) -> Option<BucketTerms> {
    let bucket = c.ok(format!("{field}.bucket"), BucketName::parse(&b.bucket));
    let unit = match pb::PeriodUnit::try_from(b.period_unit) {
        Ok(pb::PeriodUnit::Month) => Some(PeriodUnit::Month),
        Ok(pb::PeriodUnit::Year) => Some(PeriodUnit::Year),
        _ => {
            c.fail(format!("{field}.period_unit"), "must be MONTH or YEAR");
            None
        }
    };
    let allowance = match u32::try_from(b.allowance_minutes) {
        Ok(v) => Some(v),
        Err(_) => {
            c.fail(format!("{field}.allowance_minutes"), "must not be negative");
            None
        }
    };
    use pb::rollover_rule::Kind as R;
    let rollover = match b.rollover.as_ref().and_then(|r| r.kind.as_ref()) {
        None | Some(R::None(_)) => Some(Rollover::None),
        Some(R::All(_)) => Some(Rollover::All),
        Some(R::CappedMinutes(m)) => {
            positive_u32(c, &format!("{field}.rollover.capped_minutes"), *m)
                .map(|minutes| Rollover::Capped { minutes })
        }
        Some(R::ExpiringAfterPeriods(p)) => {
            positive_u32(c, &format!("{field}.rollover.expiring_after_periods"), *p)
                .map(|periods| Rollover::Expiring { periods })
        }
    };
    use pb::overage_rule::Kind as O;
    let overage = match b.overage.as_ref().and_then(|o| o.kind.as_ref()) {
        None | Some(O::Reject(_)) => Some(Overage::Reject),
        Some(O::Bill(rate)) => {
            let currency = c.ok(
                format!("{field}.overage.bill.currency"),
                Currency::parse(&rate.currency),
            );
            if rate.rate_minor_units_per_hour < 0 {
                c.fail(
                    format!("{field}.overage.bill.rate_minor_units_per_hour"),
                    "must not be negative",
                );
            }
            currency.map(|currency| Overage::Bill {
                rate_minor_units_per_hour: rate.rate_minor_units_per_hour,
                currency,
            })
        }
    };
    let rounding = match b.rounding_increment_minutes {
        0 | 1 => Some(1),
        v => positive_u32(c, &format!("{field}.rounding_increment_minutes"), v),
    };
    let mut free = Vec::new();
    let listed = cv::limited(
        c,
        &format!("{field}.free_activities"),
        &b.free_activities,
        limits::FREE_ACTIVITIES,
    );
    for (i, f) in listed.iter().enumerate() {
        let ff = format!("{field}.free_activities[{i}]");
        let kind = c.ok(format!("{ff}.kind"), ActivityKind::parse(&f.kind));
        let cap = positive_u32(
            c,
            &format!("{ff}.per_occurrence_cap_minutes"),
            f.per_occurrence_cap_minutes,
        );
        let frequency = match pb::Frequency::try_from(f.frequency) {
            Ok(pb::Frequency::IsoWeek) => Some(Frequency::PerIsoWeek),
            Ok(pb::Frequency::Month) => Some(Frequency::PerMonth),
            Ok(pb::Frequency::Quarter) => Some(Frequency::PerCalendarQuarter),
            Ok(pb::Frequency::Period) => Some(Frequency::PerPeriod),
            _ => {
                c.fail(
                    format!("{ff}.frequency"),
                    "must be ISO_WEEK, MONTH, QUARTER or PERIOD",
                );
                None
            }
        };
        let max = positive_u32(c, &format!("{ff}.max_per_frequency"), f.max_per_frequency);
        if let (Some(kind), Some(cap), Some(frequency), Some(max)) = (kind, cap, frequency, max) {
            free.push(FreeActivity {
                kind,
                per_occurrence_cap_minutes: cap,
                frequency,
                max_per_frequency: max,
            });
        }
    }
    let grace = match b.grace_hours {
        0 => Some(crate::domain::ledger::DEFAULT_GRACE_HOURS),
        v => positive_u32(c, &format!("{field}.grace_hours"), v),
    };
    let mut t = BucketTerms::new(bucket?, unit?, allowance?);
    t.rollover = rollover?;
    t.overage = overage?;
    t.rounding_increment_minutes = rounding?;
    t.free_activities = free;
    t.requires_authorisation = b.requires_authorisation;
    t.prorate_mid_period = b.prorate_mid_period;
    t.grace_hours = grace?;
    Some(t)
}

pub fn plan(
    c: &mut Check,
    field: &str,
    id: &ResourceId,
    buckets: &[pb::BucketTerms],
) -> Option<Plan> {
    let parsed: Vec<Option<BucketTerms>> = cv::limited(c, field, buckets, limits::PLAN_BUCKETS)
        .iter()
        .enumerate()
        .map(|(i, b)| bucket_terms(c, &format!("{field}[{i}]"), b))
        .collect();
    let buckets: Vec<BucketTerms> = parsed.into_iter().collect::<Option<_>>()?;
    let plan = Plan {
        name: c.ok("plan", plan_name(id))?,
        buckets,
    };
    if let Err(LedgerError::InvalidTerms(v)) = plan.check() {
        for v in v {
            c.fail(
                format!("{field}{}", v.path.trim_start_matches("buckets")),
                v.reason,
            );
        }
        return None;
    }
    Some(plan)
}

// ---------------------------------------------------------------- rendering

pub fn plan_to_pb(v: &crate::store::ResourceVersion) -> AppResult<pb::Plan> {
    let p: Plan = parse_body(v)?;
    Ok(pb::Plan {
        name: cv::name_of(ResourceKind::Plan, &v.id),
        display_name: v.display_name.clone(),
        buckets: p.buckets.iter().map(bucket_terms_to_pb).collect(),
        version: v.version as i32,
        effective_time: Some(cv::timestamp(v.effective_at)),
        create_time: Some(cv::timestamp(v.created_at)),
    })
}

fn bucket_terms_to_pb(t: &BucketTerms) -> pb::BucketTerms {
    use pb::overage_rule::Kind as O;
    use pb::rollover_rule::Kind as R;
    pb::BucketTerms {
        bucket: t.bucket.as_str().to_string(),
        period_unit: match t.period {
            PeriodUnit::Month => pb::PeriodUnit::Month as i32,
            PeriodUnit::Year => pb::PeriodUnit::Year as i32,
        },
        allowance_minutes: t.allowance_minutes as i32,
        rollover: Some(pb::RolloverRule {
            kind: Some(match t.rollover {
                Rollover::None => R::None(true),
                Rollover::All => R::All(true),
                Rollover::Capped { minutes } => R::CappedMinutes(minutes as i32),
                Rollover::Expiring { periods } => R::ExpiringAfterPeriods(periods as i32),
            }),
        }),
        overage: Some(pb::OverageRule {
            kind: Some(match &t.overage {
                Overage::Reject => O::Reject(true),
                Overage::Bill {
                    rate_minor_units_per_hour,
                    currency,
                } => O::Bill(pb::BillRate {
                    rate_minor_units_per_hour: *rate_minor_units_per_hour,
                    currency: currency.as_str().to_string(),
                }),
            }),
        }),
        rounding_increment_minutes: t.rounding_increment_minutes as i32,
        free_activities: t
            .free_activities
            .iter()
            .map(|f| pb::FreeActivity {
                kind: f.kind.as_str().to_string(),
                per_occurrence_cap_minutes: f.per_occurrence_cap_minutes as i32,
                frequency: match f.frequency {
                    Frequency::PerIsoWeek => pb::Frequency::IsoWeek as i32,
                    Frequency::PerMonth => pb::Frequency::Month as i32,
                    Frequency::PerCalendarQuarter => pb::Frequency::Quarter as i32,
                    Frequency::PerPeriod => pb::Frequency::Period as i32,
                },
                max_per_frequency: f.max_per_frequency as i32,
            })
            .collect(),
        requires_authorisation: t.requires_authorisation,
        prorate_mid_period: t.prorate_mid_period,
        grace_hours: t.grace_hours as i32,
    }
}

pub fn contract_to_pb(v: &crate::store::ResourceVersion) -> AppResult<pb::HoursContract> {
    let spec: HoursContractSpec = parse_body(v)?;
    Ok(pb::HoursContract {
        organization: cv::name_of(ResourceKind::Organization, &v.id),
        start_date: spec.start.to_string(),
        assignments: spec
            .assignments
            .iter()
            .map(|a| pb::PlanAssignment {
                plan: cv::name_of(ResourceKind::Plan, &a.plan),
                effective_date: a.effective_date.to_string(),
            })
            .collect(),
        version: v.version as i32,
        create_time: Some(cv::timestamp(v.created_at)),
    })
}

fn entry_kind(k: EntryKind) -> pb::EntryKind {
    match k {
        EntryKind::Grant => pb::EntryKind::Grant,
        EntryKind::Consume => pb::EntryKind::Consume,
        EntryKind::Hold => pb::EntryKind::Hold,
        EntryKind::Capture => pb::EntryKind::Capture,
        EntryKind::Release => pb::EntryKind::Release,
        EntryKind::Rollover => pb::EntryKind::Rollover,
        EntryKind::Expire => pb::EntryKind::Expire,
        EntryKind::Adjust => pb::EntryKind::Adjust,
        EntryKind::Reversal => pb::EntryKind::Reversal,
    }
}

pub fn entry_to_pb(e: &Entry) -> pb::LedgerEntry {
    pb::LedgerEntry {
        sequence: e.seq as i64,
        kind: entry_kind(e.kind) as i32,
        period_start: e.period.to_string(),
        record_time: Some(cv::timestamp(e.recorded_at)),
        minutes: e.minutes,
        held_minutes: e.held_minutes,
        usage: e.usage.as_ref().map(|u| pb::UsageLine {
            raw_minutes: u.raw_minutes,
            non_deducted_minutes: u.non_deducted_minutes,
            billable_minutes: u.billable_minutes,
            from_allowance_minutes: u.from_allowance,
            overage_minutes: u.overage_minutes,
            overage_amount_minor_units: u.overage_amount,
            currency: u
                .currency
                .as_ref()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
        }),
        service_time: cv::opt_timestamp(e.service_at),
        activity_kind: e
            .activity
            .as_ref()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default(),
        ticket: e
            .ticket
            .as_ref()
            .map(|t| format!("tickets/{t}"))
            .unwrap_or_default(),
        hold_id: e.hold.as_ref().map(|h| h.to_string()).unwrap_or_default(),
        closes_period_start: e.closes.map(|p| p.to_string()).unwrap_or_default(),
        reverses: e.reverses.map_or(0, |r| r as i64),
        reason: e.reason.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        actor: e.actor.as_ref().map(|a| a.to_string()).unwrap_or_default(),
    }
}

pub fn balance_to_pb(b: &Balance) -> pb::Balance {
    let s = &b.statement;
    pb::Balance {
        organization: cv::name_of(ResourceKind::Organization, &b.organization),
        bucket: s.bucket.as_str().to_string(),
        period_start: s.period.to_string(),
        period_end: s.ends_at.with_timezone(&b.zone).date_naive().to_string(),
        granted: s.granted,
        rolled_in: s.rolled_in,
        consumed_from_allowance: s.consumed_from_allowance,
        held: s.held,
        available: s.available,
        overage_minutes: s.overage_minutes,
        balance: s.closing,
        closed: s.closed,
        as_of_time: Some(cv::timestamp(b.as_of)),
    }
}

/// The stored answer of a ledger write.
pub fn write_to_pb(w: &LedgerWrite) -> pb::LedgerWriteResponse {
    pb::LedgerWriteResponse {
        entries: w.entries.iter().map(entry_to_pb).collect(),
        balance: Some(balance_to_pb(&w.balance)),
    }
}

pub fn statement_to_pb(v: &StatementView) -> pb::Statement {
    pb::Statement {
        organization: cv::name_of(ResourceKind::Organization, &v.organization),
        date: v.date.to_string(),
        buckets: v
            .buckets
            .iter()
            .map(|s| bucket_statement(s, v.with_entries, v.zone))
            .collect(),
        as_of_time: Some(cv::timestamp(v.as_of)),
    }
}

fn bucket_statement(s: &Statement, with_entries: bool, zone: chrono_tz::Tz) -> pb::BucketStatement {
    pb::BucketStatement {
        bucket: s.bucket.as_str().to_string(),
        period_start: s.period.to_string(),
        period_end: s.ends_at.with_timezone(&zone).date_naive().to_string(),
        closes_time: Some(cv::timestamp(s.closes_at)),
        closed: s.closed,
        opening: s.opening,
        granted: s.granted,
        rolled_in: s.rolled_in,
        consumed_from_allowance: s.consumed_from_allowance,
        non_deducted: s
            .non_deducted
            .iter()
            .map(|(k, m)| pb::ActivityMinutes {
                activity_kind: k.as_str().to_string(),
                minutes: *m,
            })
            .collect(),
        overage_minutes: s.overage_minutes,
        overage_amounts: s
            .overage_amount
            .iter()
            .map(|(c, a)| pb::Money {
                currency: c.as_str().to_string(),
                minor_units: *a,
            })
            .collect(),
        expired: s.expired,
        adjustments: s.adjustments,
        closing: s.closing,
        raw_minutes: s.raw_minutes,
        billable_minutes: s.billable_minutes,
        held: s.held,
        available: s.available,
        entries: if with_entries {
            s.entries.iter().map(entry_to_pb).collect()
        } else {
            Vec::new()
        },
    }
}
