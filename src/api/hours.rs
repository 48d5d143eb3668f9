//! Prepaid hours over gRPC: plans, hours contracts, ledger writes and statements.
//!
//! Every write locks its account row, decides on the account's fold (kept in memory
//! between writes and brought up to date from the entries posted since), appends what the
//! ledger decided, and stores the answer under the request's idempotency key, in one
//! transaction. Reads first post the period closes that have fallen due, exactly once.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, NaiveDate, Utc};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::app::{App, Reader, parse_body};
use super::catalog::{json, key};
use super::convert::{self as cv};
use super::error::{ApiError, ApiResult, Check};
use super::fingerprint::Fingerprint;
use super::page;
use super::pb;
use super::{Api, client_of};
use crate::domain::catalog::Dated;
use crate::domain::hours::{HoursContractSpec, PlanAssignment, plan_name};
use crate::domain::ledger::{
    ActivityKind, BucketName, BucketTerms, Command, Contract, Currency, Entry, EntryKind,
    ErrorClass, FreeActivity, Frequency, Ledger, LedgerError, Overage, PeriodKey, PeriodUnit, Plan,
    Rollover, Statement, TicketRef, Usage, authorised_by_main_stakeholder,
};
use crate::domain::limits;
use crate::domain::names::{ExternalId, ResourceId, ShortText};
use crate::domain::organization::Organization;
use crate::domain::ticket::EventKind;
use crate::store::{IdempotencyKey, ResourceKind, Store, StoreError, StoreTx};

/// An organisation's hours context: the organisation, its contract and the ledger
/// contract assembled from its plans.
pub struct HoursContext {
    pub organization: Organization,
    pub contract: Contract,
    pub buckets: Vec<BucketName>,
}

/// Caches of the hours side of [`App`]: contexts by catalogue epoch, and each account's
/// fold with the epoch it was built under.
#[derive(Default)]
pub struct HoursCache {
    contexts: Mutex<HashMap<ResourceId, (i64, Arc<HoursContext>)>>,
    ledgers: Mutex<HashMap<(ResourceId, BucketName), (i64, Ledger)>>,
}

/// Most cached account folds; beyond it the cache starts over.
const MAX_LEDGERS: usize = 10_000;

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        let message = e.to_string();
        match (e.class(), e) {
            (_, LedgerError::InvalidTerms(v)) => ApiError::InvalidArgument(
                v.into_iter()
                    .map(|v| super::error::Violation {
                        field: v.path,
                        description: v.reason,
                    })
                    .collect(),
            ),
            (_, LedgerError::InvalidMinutes { field, reason }) => ApiError::invalid(field, reason),
            (ErrorClass::InvalidArgument, _) => {
                ApiError::InvalidArgument(vec![super::error::Violation {
                    field: "request".into(),
                    description: message,
                }])
            }
            (ErrorClass::NotFound, _) => ApiError::NotFound(message),
            (ErrorClass::AlreadyExists, _) => ApiError::AlreadyExists(message),
            (ErrorClass::FailedPrecondition, _) => ApiError::FailedPrecondition(message),
            (ErrorClass::Internal, _) => ApiError::Internal(message),
        }
    }
}

// ---------------------------------------------------------------- parsing

fn positive_u32(c: &mut Check, field: &str, v: i32) -> Option<u32> {
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

fn plan(c: &mut Check, field: &str, id: &ResourceId, buckets: &[pb::BucketTerms]) -> Option<Plan> {
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

fn plan_to_pb(v: &crate::store::ResourceVersion) -> ApiResult<pb::Plan> {
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

fn contract_to_pb(v: &crate::store::ResourceVersion) -> ApiResult<pb::HoursContract> {
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

fn balance_of(
    org: &ResourceId,
    s: &Statement,
    as_of: DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> pb::Balance {
    pb::Balance {
        organization: cv::name_of(ResourceKind::Organization, org),
        bucket: s.bucket.as_str().to_string(),
        period_start: s.period.to_string(),
        period_end: s.ends_at.with_timezone(&zone).date_naive().to_string(),
        granted: s.granted,
        rolled_in: s.rolled_in,
        consumed_from_allowance: s.consumed_from_allowance,
        held: s.held,
        available: s.available,
        overage_minutes: s.overage_minutes,
        balance: s.closing,
        closed: s.closed,
        as_of_time: Some(cv::timestamp(as_of)),
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

// ---------------------------------------------------------------- the shell

fn actor(client: &str) -> ApiResult<ExternalId> {
    ExternalId::parse(client).map_err(|e| ApiError::Internal(e.to_string()))
}

impl<S: Store> App<S> {
    /// The organisation's hours context, cached while the catalogue is unchanged, and the
    /// catalogue epoch it is valid for (what the ledger cache is keyed on too).
    async fn hours_context(
        &self,
        reader: &mut Reader<'_, S>,
        org: &ResourceId,
    ) -> ApiResult<(i64, Arc<HoursContext>)> {
        let epoch = reader.catalog_epoch().await?;
        if let Some((at, ctx)) = self
            .hours
            .contexts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(org)
            && *at == epoch
        {
            return Ok((epoch, Arc::clone(ctx)));
        }
        let org_v = reader
            .resource_opt(ResourceKind::Organization, org)
            .await?
            .ok_or_else(|| ApiError::NotFound(cv::name_of(ResourceKind::Organization, org)))?;
        let organization: Organization = parse_body(&org_v)?;
        let contract_v = reader
            .resource_opt(ResourceKind::HoursContract, org)
            .await?
            .ok_or_else(|| {
                ApiError::FailedPrecondition(format!(
                    "{} has no hours contract: SetHoursContract first",
                    cv::name_of(ResourceKind::Organization, org)
                ))
            })?;
        let spec: HoursContractSpec = parse_body(&contract_v)?;
        let mut plans: BTreeMap<ResourceId, Vec<Dated<Plan>>> = BTreeMap::new();
        for id in spec.plans() {
            let versions = reader.versions(ResourceKind::Plan, id).await?;
            let dated = versions
                .iter()
                .map(|v| {
                    Ok(Dated {
                        effective_at: v.effective_at,
                        value: parse_body(v)?,
                    })
                })
                .collect::<ApiResult<Vec<_>>>()?;
            plans.insert(id.clone(), dated);
        }
        let contract = spec.contract(organization.zone, &plans)?;
        let buckets = HoursContractSpec::buckets(&plans).into_iter().collect();
        let ctx = Arc::new(HoursContext {
            organization,
            contract,
            buckets,
        });
        let mut cache = self
            .hours
            .contexts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache.insert(org.clone(), (epoch, Arc::clone(&ctx)));
        Ok((epoch, ctx))
    }

    fn cached_ledger(&self, org: &ResourceId, bucket: &BucketName) -> Option<(i64, Ledger)> {
        self.hours
            .ledgers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(org.clone(), bucket.clone()))
    }

    fn keep_ledger(&self, org: &ResourceId, epoch: i64, ledger: Ledger) {
        let mut cache = self
            .hours
            .ledgers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_LEDGERS {
            cache.clear();
        }
        cache.insert((org.clone(), ledger.bucket().clone()), (epoch, ledger));
    }

    /// The account's fold as of `next_seq` entries: the cached one brought up to date,
    /// or folded from all entries.
    async fn ledger(
        &self,
        reader: &mut Reader<'_, S>,
        ctx: &HoursContext,
        epoch: i64,
        org: &ResourceId,
        bucket: &BucketName,
        next_seq: u64,
    ) -> ApiResult<Ledger> {
        if let Some((at, mut ledger)) = self.cached_ledger(org, bucket)
            && at == epoch
            && ledger.next_seq() <= next_seq
        {
            if ledger.next_seq() < next_seq {
                let more = reader
                    .account_entries(org, bucket.as_str(), ledger.next_seq())
                    .await?;
                ledger.apply(more)?;
            }
            return Ok(ledger);
        }
        let entries = reader.account_entries(org, bucket.as_str(), 1).await?;
        Ok(Ledger::new(&ctx.contract, bucket.clone(), entries)?)
    }

    /// One ledger write: lock the account, decide, append, answer.
    async fn ledger_write(
        &self,
        key: IdempotencyKey,
        fp: Fingerprint,
        org: &ResourceId,
        bucket: &BucketName,
        command: impl FnOnce(&HoursContext, &Ledger) -> ApiResult<Command>,
    ) -> ApiResult<pb::LedgerWriteResponse> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self
            .claim::<pb::LedgerWriteResponse>(&mut tx, &key, &fp)
            .await?
        {
            return Ok(answer);
        }
        let next_seq = tx.lock_account(org, bucket.as_str()).await?;
        let mut reader = Reader::Tx(&mut tx);
        let (epoch, ctx) = self.hours_context(&mut reader, org).await?;
        let mut ledger = self
            .ledger(&mut reader, &ctx, epoch, org, bucket, next_seq)
            .await?;
        let command = command(&ctx, &ledger)?;
        let now = self.now();
        let entries = ledger.decide(&command, now)?;
        tx.append_entries(org, bucket.as_str(), &entries).await?;
        ledger.apply(entries.clone())?;
        let period = match entries.last() {
            Some(e) => e.period,
            None => ledger.period_at(now)?,
        };
        let statement = ledger.summary(period)?;
        let answer = pb::LedgerWriteResponse {
            entries: entries.iter().map(entry_to_pb).collect(),
            balance: Some(balance_of(org, &statement, now, ctx.organization.zone)),
        };
        // Back into the cache before the commit releases the account's lock, so the next
        // writer finds it. Should the commit fail, the cached fold is ahead of the stored
        // entries, and the next writer sees that from the account's number and refolds.
        self.keep_ledger(org, epoch, ledger);
        self.finish(tx, &key, &answer).await?;
        self.metrics.ledger_entries(bucket.as_str(), &entries);
        Ok(answer)
    }

    /// The account as of now, with the period closes that fell due posted first.
    async fn settled_ledger(
        &self,
        org: &ResourceId,
        bucket: &BucketName,
    ) -> ApiResult<(Arc<HoursContext>, Ledger)> {
        let now = self.now();
        let mut reader = Reader::Pool(&self.store);
        let (epoch, ctx) = self.hours_context(&mut reader, org).await?;
        if !ctx.buckets.contains(bucket) {
            return Err(ApiError::NotFound(format!(
                "bucket {bucket}: the hours contract of {} has no such bucket",
                cv::name_of(ResourceKind::Organization, org)
            )));
        }
        let next_seq = self
            .store
            .account_next_seq(org, bucket.as_str())
            .await?
            .unwrap_or(1);
        let ledger = self
            .ledger(&mut reader, &ctx, epoch, org, bucket, next_seq)
            .await?;
        if ledger.decide(&Command::ClosePeriods, now)?.is_empty() {
            let copy = ledger.clone();
            self.keep_ledger(org, epoch, ledger);
            return Ok((ctx, copy));
        }
        // Closes fell due: post them, once, under the account's lock.
        self.keep_ledger(org, epoch, ledger);
        let mut tx = self.store.begin().await?;
        let next_seq = tx.lock_account(org, bucket.as_str()).await?;
        let mut reader = Reader::Tx(&mut tx);
        let (epoch, ctx) = self.hours_context(&mut reader, org).await?;
        let mut ledger = self
            .ledger(&mut reader, &ctx, epoch, org, bucket, next_seq)
            .await?;
        let entries = ledger.decide(&Command::ClosePeriods, now)?;
        tx.append_entries(org, bucket.as_str(), &entries).await?;
        ledger.apply(entries)?;
        let copy = ledger.clone();
        self.keep_ledger(org, epoch, ledger);
        tx.commit().await?;
        Ok((ctx, copy))
    }

    async fn statement(
        &self,
        org: &ResourceId,
        date: NaiveDate,
        with_entries: bool,
    ) -> ApiResult<pb::Statement> {
        let now = self.now();
        let (_, ctx) = self
            .hours_context(&mut Reader::Pool(&self.store), org)
            .await?;
        let mut buckets = Vec::new();
        for bucket in &ctx.buckets {
            let (_, ledger) = self.settled_ledger(org, bucket).await?;
            let Some(period) = ledger.clock().rule.period_of(date) else {
                continue;
            };
            if period < ledger.first_period() {
                continue;
            }
            let s = if with_entries {
                ledger.statement(period)?
            } else {
                ledger.summary(period)?
            };
            buckets.push(bucket_statement(&s, with_entries, ctx.organization.zone));
        }
        Ok(pb::Statement {
            organization: cv::name_of(ResourceKind::Organization, org),
            date: date.to_string(),
            buckets,
            as_of_time: Some(cv::timestamp(now)),
        })
    }

    /// The ticket a usage or hold names, checked against the organisation; nothing is
    /// read without one (the write itself reads the hours context, in its transaction).
    async fn usage_ticket(
        &self,
        org: &ResourceId,
        ticket: Option<String>,
    ) -> ApiResult<Option<TicketRef>> {
        let Some(ticket) = ticket else {
            return Ok(None);
        };
        let (_, ctx) = self
            .hours_context(&mut Reader::Pool(&self.store), org)
            .await?;
        self.ticket_ref(&ctx, org, &ticket).await.map(Some)
    }

    /// Whether a ticket's work was authorised by the organisation's main stakeholder.
    async fn ticket_ref(
        &self,
        ctx: &HoursContext,
        org: &ResourceId,
        ticket: &str,
    ) -> ApiResult<TicketRef> {
        // Another organisation's ticket is answered as one that does not exist: the
        // answer must not tell whose it is.
        let not_found = || {
            ApiError::NotFound(format!(
                "tickets/{ticket} in {}",
                cv::name_of(ResourceKind::Organization, org)
            ))
        };
        match self.store.get_ticket(ticket).await {
            Ok(r) if &r.ticket.organization == org => {}
            Ok(_) | Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        }
        let events = self.store.ticket_events(ticket).await?;
        let authorised = events.iter().any(|e| {
            matches!(e.event.kind, EventKind::WorkAuthorised)
                && e.event.actor.contact.as_ref().is_some_and(|c| {
                    authorised_by_main_stakeholder(&ctx.organization, c, e.event.occurred_at)
                })
        });
        Ok(TicketRef {
            id: ExternalId::parse(ticket).map_err(|e| ApiError::Internal(e.to_string()))?,
            authorised_by_main_stakeholder: authorised,
        })
    }
}

/// Organisation, bucket and request id of a ledger write.
fn target(
    c: &mut Check,
    organization: &str,
    bucket: &str,
    request_id: &str,
) -> (Option<ResourceId>, Option<BucketName>, Option<String>) {
    (
        cv::resource_name(c, "organization", organization, ResourceKind::Organization),
        c.ok("bucket", BucketName::parse(bucket)),
        cv::request_id(c, "request_id", request_id),
    )
}

fn opt<T, E: std::fmt::Display>(
    c: &mut Check,
    field: &str,
    s: &str,
    p: impl Fn(&str) -> Result<T, E>,
) -> Option<Option<T>> {
    if s.is_empty() {
        Some(None)
    } else {
        c.ok(field, p(s)).map(Some)
    }
}

fn respond<M>(r: ApiResult<M>) -> Result<Response<M>, Status> {
    r.map(Response::new).map_err(Status::from)
}

type StatementStream = Pin<Box<dyn Stream<Item = Result<pb::Statement, Status>> + Send>>;

#[tonic::async_trait]
impl<S: Store> pb::hours_service_server::HoursService for Api<S> {
    async fn create_plan(
        &self,
        req: Request<pb::CreatePlanRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let id = c.ok("plan_id", ResourceId::parse(&r.plan_id));
        let p = r.plan.clone().unwrap_or_default();
        let display = cv::display_name(&mut c, "plan.display_name", &p.display_name);
        let parsed_plan = id
            .as_ref()
            .and_then(|id| plan(&mut c, "plan.buckets", id, &p.buckets));
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(display).zip(parsed_plan).zip(rid));
        respond(
            async {
                let (((id, display), plan), rid) = parsed?;
                let fp = Fingerprint::new()
                    .with("plan_id", &r.plan_id)
                    .with("plan", &r.plan);
                self.app
                    .create_resource(
                        (key(&client, "CreatePlan", rid), fp),
                        ResourceKind::Plan,
                        &id,
                        display.as_str(),
                        json(&plan)?,
                        plan_to_pb,
                    )
                    .await
            }
            .await,
        )
    }

    async fn get_plan(
        &self,
        req: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        let r = req.into_inner();
        respond(
            async {
                let mut c = Check::new();
                let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Plan);
                let version = match r.version {
                    0 => Some(None),
                    v if v > 0 => Some(Some(v as u32)),
                    _ => {
                        c.fail("version", "must not be negative");
                        None
                    }
                };
                let (id, version) = c.finish(id.zip(version))?;
                plan_to_pb(
                    &self
                        .app
                        .store
                        .get_resource(ResourceKind::Plan, &id, version)
                        .await?,
                )
            }
            .await,
        )
    }

    async fn list_plans(
        &self,
        req: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        let r = req.into_inner();
        respond(
            self.app
                .list(
                    ResourceKind::Plan,
                    r.page_size,
                    &r.page_token,
                    false,
                    plan_to_pb,
                )
                .await
                .map(|(plans, next_page_token)| pb::ListPlansResponse {
                    plans,
                    next_page_token,
                }),
        )
    }

    async fn update_plan(
        &self,
        req: Request<pb::UpdatePlanRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Plan);
        let parsed_plan = id
            .as_ref()
            .and_then(|id| plan(&mut c, "buckets", id, &r.buckets));
        if !r.display_name.is_empty() {
            cv::display_name(&mut c, "display_name", &r.display_name);
        }
        let effective = cv::optional_instant(&mut c, "effective_time", r.effective_time.as_ref());
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let expected = cv::expected_version(&mut c, "expected_version", r.expected_version);
        let parsed = c.finish(id.zip(parsed_plan).zip(effective).zip(rid).zip(expected));
        respond(
            async {
                let ((((id, plan), effective), rid), expected) = parsed?;
                let fp = Fingerprint::new()
                    .with("name", &r.name)
                    .with("display_name", &r.display_name)
                    .with("buckets", &r.buckets)
                    .with("effective_time", &r.effective_time)
                    .with("expected_version", &r.expected_version);
                let body = json(&plan)?;
                self.app
                    .update_resource(
                        (key(&client, "UpdatePlan", rid), fp),
                        (ResourceKind::Plan, &id),
                        Some(&r.display_name),
                        |current| {
                            super::catalog::at_version(current, expected)?;
                            Ok(body)
                        },
                        effective,
                        plan_to_pb,
                    )
                    .await
            }
            .await,
        )
    }

    async fn set_hours_contract(
        &self,
        req: Request<pb::SetHoursContractRequest>,
    ) -> Result<Response<pb::HoursContract>, Status> {
        let contract = req.get_ref().contract.as_ref();
        super::OrgScope::of(&req).allow(contract.map_or("", |c| c.organization.as_str()))?;
        let client = client_of(&req);
        let r = req.into_inner();
        let contract = r.contract.clone().unwrap_or_default();
        let mut c = Check::new();
        let org = cv::resource_name(
            &mut c,
            "contract.organization",
            &contract.organization,
            ResourceKind::Organization,
        );
        let start = cv::plain_date(&mut c, "contract.start_date", &contract.start_date);
        let mut assignments = Vec::new();
        let listed = cv::limited(
            &mut c,
            "contract.assignments",
            &contract.assignments,
            limits::ASSIGNMENTS,
        );
        for (i, a) in listed.iter().enumerate() {
            let plan = cv::resource_name(
                &mut c,
                &format!("contract.assignments[{i}].plan"),
                &a.plan,
                ResourceKind::Plan,
            );
            let date = cv::plain_date(
                &mut c,
                &format!("contract.assignments[{i}].effective_date"),
                &a.effective_date,
            );
            if let (Some(plan), Some(effective_date)) = (plan, date) {
                assignments.push(PlanAssignment {
                    plan,
                    effective_date,
                });
            }
        }
        let spec = match start {
            Some(start) if c.is_clean() => match HoursContractSpec::new(start, assignments) {
                Ok(s) => Some(s),
                Err(v) => {
                    for v in v {
                        c.fail(format!("contract.{}", v.path), v.reason);
                    }
                    None
                }
            },
            _ => None,
        };
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(org.zip(spec).zip(rid));
        respond(
            async {
                let ((org, spec), rid) = parsed?;
                super::note("organization", &org);
                let org_v = self
                    .app
                    .require_live(ResourceKind::Organization, &org, "contract.organization")
                    .await?;
                let organization: Organization = parse_body(&org_v)?;
                let mut plans = BTreeMap::new();
                for id in spec.plans() {
                    let versions = self
                        .app
                        .store
                        .resource_versions(ResourceKind::Plan, id)
                        .await
                        .map_err(|e| match e {
                            StoreError::NotFound(_) => ApiError::FailedPrecondition(format!(
                                "contract.assignments: {} does not exist",
                                cv::name_of(ResourceKind::Plan, id)
                            )),
                            e => e.into(),
                        })?;
                    let dated = versions
                        .iter()
                        .map(|v| {
                            Ok(Dated {
                                effective_at: v.effective_at,
                                value: parse_body::<Plan>(v)?,
                            })
                        })
                        .collect::<ApiResult<Vec<_>>>()?;
                    plans.insert(id.clone(), dated);
                }
                // The contract must assemble: plans whose buckets change period units
                // between them are refused now rather than at the first usage.
                spec.contract(organization.zone, &plans)?;
                let fp = Fingerprint::new().with("contract", &r.contract);
                let key = key(&client, "SetHoursContract", rid);
                let body = json(&spec)?;
                let mut tx = self.app.store.begin().await?;
                if let Some(answer) = self
                    .app
                    .claim::<pb::HoursContract>(&mut tx, &key, &fp)
                    .await?
                {
                    return Ok(answer);
                }
                let now = self.app.now();
                let v = match tx
                    .get_resource(ResourceKind::HoursContract, &org, None)
                    .await
                {
                    Ok(_) => {
                        tx.add_version(
                            ResourceKind::HoursContract,
                            &org,
                            org.as_str(),
                            &body,
                            now,
                            now,
                        )
                        .await?
                    }
                    Err(StoreError::NotFound(_)) => {
                        tx.create_resource(
                            ResourceKind::HoursContract,
                            &org,
                            org.as_str(),
                            &body,
                            now,
                        )
                        .await?
                    }
                    Err(e) => return Err(e.into()),
                };
                let answer = contract_to_pb(&v)?;
                self.app.finish(tx, &key, &answer).await?;
                Ok(answer)
            }
            .await,
        )
    }

    async fn get_hours_contract(
        &self,
        req: Request<pb::GetHoursContractRequest>,
    ) -> Result<Response<pb::HoursContract>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let r = req.into_inner();
        respond(
            async {
                let mut c = Check::new();
                let org = cv::resource_name(
                    &mut c,
                    "organization",
                    &r.organization,
                    ResourceKind::Organization,
                );
                let org = c.finish(org)?;
                let v = self
                    .app
                    .store
                    .get_resource(ResourceKind::HoursContract, &org, None)
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound(_) => {
                            ApiError::NotFound(format!("hours contract of organizations/{org}"))
                        }
                        e => e.into(),
                    })?;
                contract_to_pb(&v)
            }
            .await,
        )
    }

    async fn record_usage(
        &self,
        req: Request<pb::RecordUsageRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let (org, bucket, rid) = target(&mut c, &r.organization, &r.bucket, &r.request_id);
        let minutes = positive_u32(&mut c, "minutes", r.minutes);
        let activity = opt(
            &mut c,
            "activity_kind",
            &r.activity_kind,
            ActivityKind::parse,
        );
        let service = cv::required_instant(&mut c, "service_time", r.service_time.as_ref());
        let ticket = if r.ticket.is_empty() {
            Some(None)
        } else {
            cv::ticket_id(&mut c, "ticket", &r.ticket).map(Some)
        };
        let _contact = opt(&mut c, "contact_id", &r.contact_id, ExternalId::parse);
        let reason = opt(&mut c, "reason", &r.reason, ShortText::parse);
        let parsed = c.finish(
            org.zip(bucket)
                .zip(rid)
                .zip(minutes.zip(activity))
                .zip(service.zip(ticket))
                .zip(reason),
        );
        respond(
            async {
                let (((((org, bucket), rid), (minutes, activity)), (service_at, ticket)), reason) =
                    parsed?;
                super::note("organization", &org);
                let ticket = self.app.usage_ticket(&org, ticket).await?;
                let fp = Fingerprint::new()
                    .with("organization", &r.organization)
                    .with("bucket", &r.bucket)
                    .with("minutes", &r.minutes)
                    .with("activity_kind", &r.activity_kind)
                    .with("service_time", &r.service_time)
                    .with("ticket", &r.ticket)
                    .with("contact_id", &r.contact_id)
                    .with("reason", &r.reason);
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        key(&client, "RecordUsage", rid),
                        fp,
                        &org,
                        &bucket,
                        move |_, _| {
                            Ok(Command::RecordUsage(Usage {
                                minutes,
                                activity,
                                service_at,
                                ticket,
                                actor,
                                reason,
                            }))
                        },
                    )
                    .await
            }
            .await,
        )
    }

    async fn hold_minutes(
        &self,
        req: Request<pb::HoldMinutesRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let (org, bucket, rid) = target(&mut c, &r.organization, &r.bucket, &r.request_id);
        let hold = c.ok("hold_id", ExternalId::parse(&r.hold_id));
        let minutes = positive_u32(&mut c, "minutes", r.minutes);
        let service = cv::required_instant(&mut c, "service_time", r.service_time.as_ref());
        let activity = opt(
            &mut c,
            "activity_kind",
            &r.activity_kind,
            ActivityKind::parse,
        );
        let ticket = if r.ticket.is_empty() {
            Some(None)
        } else {
            cv::ticket_id(&mut c, "ticket", &r.ticket).map(Some)
        };
        let parsed = c.finish(
            org.zip(bucket)
                .zip(rid)
                .zip(hold.zip(minutes))
                .zip(service.zip(activity))
                .zip(ticket),
        );
        respond(
            async {
                let (((((org, bucket), rid), (hold, minutes)), (service_at, activity)), ticket) =
                    parsed?;
                let ticket = self.app.usage_ticket(&org, ticket).await?;
                let fp = Fingerprint::new()
                    .with("organization", &r.organization)
                    .with("bucket", &r.bucket)
                    .with("hold_id", &r.hold_id)
                    .with("minutes", &r.minutes)
                    .with("service_time", &r.service_time)
                    .with("activity_kind", &r.activity_kind)
                    .with("ticket", &r.ticket);
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        key(&client, "HoldMinutes", rid),
                        fp,
                        &org,
                        &bucket,
                        move |_, _| {
                            Ok(Command::Hold {
                                hold,
                                minutes,
                                service_at,
                                activity,
                                ticket,
                                actor,
                            })
                        },
                    )
                    .await
            }
            .await,
        )
    }

    async fn capture_hold(
        &self,
        req: Request<pb::CaptureHoldRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let (org, bucket, rid) = target(&mut c, &r.organization, &r.bucket, &r.request_id);
        let hold = c.ok("hold_id", ExternalId::parse(&r.hold_id));
        let minutes = match u32::try_from(r.minutes) {
            Ok(m) => Some(m),
            Err(_) => {
                c.fail("minutes", "must not be negative");
                None
            }
        };
        let parsed = c.finish(org.zip(bucket).zip(rid).zip(hold.zip(minutes)));
        respond(
            async {
                let (((org, bucket), rid), (hold, minutes)) = parsed?;
                let fp = Fingerprint::new()
                    .with("organization", &r.organization)
                    .with("bucket", &r.bucket)
                    .with("hold_id", &r.hold_id)
                    .with("minutes", &r.minutes);
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        key(&client, "CaptureHold", rid),
                        fp,
                        &org,
                        &bucket,
                        move |_, _| {
                            Ok(Command::Capture {
                                hold,
                                minutes,
                                actor,
                            })
                        },
                    )
                    .await
            }
            .await,
        )
    }

    async fn release_hold(
        &self,
        req: Request<pb::ReleaseHoldRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let (org, bucket, rid) = target(&mut c, &r.organization, &r.bucket, &r.request_id);
        let hold = c.ok("hold_id", ExternalId::parse(&r.hold_id));
        let reason = opt(&mut c, "reason", &r.reason, ShortText::parse);
        let parsed = c.finish(org.zip(bucket).zip(rid).zip(hold.zip(reason)));
        respond(
            async {
                let (((org, bucket), rid), (hold, reason)) = parsed?;
                let fp = Fingerprint::new()
                    .with("organization", &r.organization)
                    .with("bucket", &r.bucket)
                    .with("hold_id", &r.hold_id)
                    .with("reason", &r.reason);
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        key(&client, "ReleaseHold", rid),
                        fp,
                        &org,
                        &bucket,
                        move |_, _| {
                            Ok(Command::Release {
                                hold,
                                actor,
                                reason,
                            })
                        },
                    )
                    .await
            }
            .await,
        )
    }

    async fn adjust_balance(
        &self,
        req: Request<pb::AdjustBalanceRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let (org, bucket, rid) = target(&mut c, &r.organization, &r.bucket, &r.request_id);
        if r.minutes == 0 {
            c.fail("minutes", "must not be 0");
        }
        let reason = c.ok("reason", ShortText::parse(&r.reason));
        let parsed = c.finish(org.zip(bucket).zip(rid).zip(reason));
        respond(
            async {
                let (((org, bucket), rid), reason) = parsed?;
                let fp = Fingerprint::new()
                    .with("organization", &r.organization)
                    .with("bucket", &r.bucket)
                    .with("minutes", &r.minutes)
                    .with("reason", &r.reason);
                let actor = actor(&client)?;
                let minutes = i64::from(r.minutes);
                self.app
                    .ledger_write(
                        key(&client, "AdjustBalance", rid),
                        fp,
                        &org,
                        &bucket,
                        move |_, _| {
                            Ok(Command::Adjust {
                                minutes,
                                reason,
                                actor,
                            })
                        },
                    )
                    .await
            }
            .await,
        )
    }

    async fn reverse_entry(
        &self,
        req: Request<pb::ReverseEntryRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let (org, bucket, rid) = target(&mut c, &r.organization, &r.bucket, &r.request_id);
        let entry = match u64::try_from(r.sequence) {
            Ok(s) if s >= 1 => Some(s),
            _ => {
                c.fail("sequence", "must be 1 or more");
                None
            }
        };
        let reason = c.ok("reason", ShortText::parse(&r.reason));
        let parsed = c.finish(org.zip(bucket).zip(rid).zip(entry.zip(reason)));
        respond(
            async {
                let (((org, bucket), rid), (entry, reason)) = parsed?;
                let fp = Fingerprint::new()
                    .with("organization", &r.organization)
                    .with("bucket", &r.bucket)
                    .with("sequence", &r.sequence)
                    .with("reason", &r.reason);
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        key(&client, "ReverseEntry", rid),
                        fp,
                        &org,
                        &bucket,
                        move |_, _| {
                            Ok(Command::Reverse {
                                entry,
                                reason,
                                actor,
                            })
                        },
                    )
                    .await
            }
            .await,
        )
    }

    async fn lock_period(
        &self,
        req: Request<pb::LockPeriodRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let (org, bucket, rid) = target(&mut c, &r.organization, &r.bucket, &r.request_id);
        let start = cv::plain_date(&mut c, "period_start", &r.period_start);
        let parsed = c.finish(org.zip(bucket).zip(rid).zip(start));
        respond(
            async {
                let (((org, bucket), rid), start) = parsed?;
                let fp = Fingerprint::new()
                    .with("organization", &r.organization)
                    .with("bucket", &r.bucket)
                    .with("period_start", &r.period_start);
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        key(&client, "LockPeriod", rid),
                        fp,
                        &org,
                        &bucket,
                        move |_, ledger| {
                            let period: PeriodKey = ledger.period_starting(start)?;
                            Ok(Command::Lock { period, actor })
                        },
                    )
                    .await
            }
            .await,
        )
    }

    async fn get_balance(
        &self,
        req: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::Balance>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let r = req.into_inner();
        let mut c = Check::new();
        let org = cv::resource_name(
            &mut c,
            "organization",
            &r.organization,
            ResourceKind::Organization,
        );
        let bucket = c.ok("bucket", BucketName::parse(&r.bucket));
        let as_of = cv::optional_instant(&mut c, "as_of_time", r.as_of_time.as_ref());
        let parsed = c.finish(org.zip(bucket).zip(as_of));
        respond(
            async {
                let ((org, bucket), as_of) = parsed?;
                let (ctx, ledger) = self.app.settled_ledger(&org, &bucket).await?;
                let at = as_of.unwrap_or_else(|| self.app.now());
                let period = ledger.period_at(at)?;
                let s = ledger.summary(period)?;
                Ok(balance_of(&org, &s, at, ctx.organization.zone))
            }
            .await,
        )
    }

    async fn list_ledger_entries(
        &self,
        req: Request<pb::ListLedgerEntriesRequest>,
    ) -> Result<Response<pb::ListLedgerEntriesResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let r = req.into_inner();
        let mut c = Check::new();
        let org = cv::resource_name(
            &mut c,
            "organization",
            &r.organization,
            ResourceKind::Organization,
        );
        let bucket = c.ok("bucket", BucketName::parse(&r.bucket));
        let period = if r.period_start.is_empty() {
            Some(None)
        } else {
            cv::plain_date(&mut c, "period_start", &r.period_start).map(Some)
        };
        let size = cv::page_size(&mut c, "page_size", r.page_size);
        let parsed = c.finish(org.zip(bucket).zip(period).zip(size));
        respond(
            async {
                let (((org, bucket), period), size) = parsed?;
                let query = format!("{org}/{bucket}/{period:?}");
                let after: u64 = page::decode(&query, &r.page_token)?.unwrap_or(0);
                let period = period.map(|p| p.to_string());
                let rows = self
                    .app
                    .store
                    .entries_page(&org, bucket.as_str(), period.as_deref(), after, size + 1)
                    .await?;
                let more = rows.len() > size as usize;
                let rows: Vec<Entry> = rows.into_iter().take(size as usize).collect();
                let next = match rows.last() {
                    Some(last) if more => page::encode(&query, &last.seq),
                    _ => String::new(),
                };
                Ok(pb::ListLedgerEntriesResponse {
                    entries: rows.iter().map(entry_to_pb).collect(),
                    next_page_token: next,
                })
            }
            .await,
        )
    }

    async fn get_statement(
        &self,
        req: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::Statement>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let r = req.into_inner();
        let mut c = Check::new();
        let org = cv::resource_name(
            &mut c,
            "organization",
            &r.organization,
            ResourceKind::Organization,
        );
        let date = cv::plain_date(&mut c, "date", &r.date);
        let parsed = c.finish(org.zip(date));
        respond(
            async {
                let (org, date) = parsed?;
                super::note("organization", &org);
                self.app.statement(&org, date, r.include_entries).await
            }
            .await,
        )
    }

    type ExportStatementsStream = StatementStream;

    async fn export_statements(
        &self,
        req: Request<pb::ExportStatementsRequest>,
    ) -> Result<Response<Self::ExportStatementsStream>, Status> {
        // A client restricted to organisations gets theirs only.
        let orgs = super::OrgScope::of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let date = cv::plain_date(&mut c, "date", &r.date);
        let date = c.finish(date).map_err(Status::from)?;
        let app = Arc::clone(&self.app);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::Statement, Status>>(64);
        tokio::spawn(async move {
            let mut after: Option<String> = None;
            loop {
                let page = match app
                    .store
                    .list_resources(ResourceKind::HoursContract, after.as_deref(), 500, true)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(ApiError::from(e).into())).await;
                        return;
                    }
                };
                let Some(last) = page.last() else { return };
                after = Some(last.id.to_string());
                // A few statements are read at once (each is a handful of round trips),
                // and sent in order.
                let mut reading = std::collections::VecDeque::new();
                for v in page.iter().filter(|v| orgs.allows(v.id.as_str())) {
                    let (app, id) = (Arc::clone(&app), v.id.clone());
                    reading.push_back(tokio::spawn(async move {
                        app.statement(&id, date, r.include_entries).await
                    }));
                    if reading.len() >= EXPORT_READS_AT_ONCE && !send_next(&tx, &mut reading).await
                    {
                        return;
                    }
                }
                while !reading.is_empty() {
                    if !send_next(&tx, &mut reading).await {
                        return;
                    }
                }
                if page.len() < 500 {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Statements of an export read at once: enough to hide round trips, few enough to leave
/// the pool to other calls.
const EXPORT_READS_AT_ONCE: usize = 4;

type StatementRead = tokio::task::JoinHandle<ApiResult<pb::Statement>>;

/// Sends the oldest statement read to the export stream. False when the client went away:
/// the reads still under way are stopped.
async fn send_next(
    tx: &tokio::sync::mpsc::Sender<Result<pb::Statement, Status>>,
    reading: &mut std::collections::VecDeque<StatementRead>,
) -> bool {
    let Some(next) = reading.pop_front() else {
        return true;
    };
    let item = match next.await {
        Ok(r) => r.map_err(Status::from),
        Err(e) => Err(Status::internal(format!("a statement read failed: {e}"))),
    };
    if tx.send(item).await.is_err() {
        for read in reading.drain(..) {
            read.abort();
        }
        return false;
    }
    true
}
