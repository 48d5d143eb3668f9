//! The gRPC transport of prepaid hours (`HoursService`): plans, hours contracts, ledger
//! writes and statements, parsed into domain values and rendered as proto; the use cases
//! are `app::hours`.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use super::catalog::{key, legacy_of};
use super::convert::{self as cv};
use super::error::{AppError, AppResult, Check};
use super::pb;
use super::{Api, client_of};
use crate::app::answer::Idempotency;
use crate::app::catalog::json;
use crate::app::fingerprint::Fingerprint;
use crate::app::hours::{Balance, LedgerWrite, StatementView};
use crate::app::parse_body;
use crate::domain::hours::{HoursContractSpec, PlanAssignment, plan_name};
use crate::domain::ledger::{
    ActivityKind, BucketName, BucketTerms, Command, Currency, Entry, EntryKind, FreeActivity,
    Frequency, LedgerError, Overage, PeriodKey, PeriodUnit, Plan, Rollover, Statement, Usage,
};
use crate::domain::limits;
use crate::domain::names::{ExternalId, ResourceId, ShortText};
use crate::store::{ResourceKind, Store};

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

fn plan_to_pb(v: &crate::store::ResourceVersion) -> AppResult<pb::Plan> {
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

fn contract_to_pb(v: &crate::store::ResourceVersion) -> AppResult<pb::HoursContract> {
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

fn balance_to_pb(b: &Balance) -> pb::Balance {
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
fn write_to_pb(w: &LedgerWrite) -> pb::LedgerWriteResponse {
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

// ---------------------------------------------------------------- the shell

fn actor(client: &str) -> AppResult<ExternalId> {
    ExternalId::parse(client).map_err(|e| AppError::Internal(e.to_string()))
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

fn respond<M>(r: AppResult<M>) -> Result<Response<M>, Status> {
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
                let idem = Idempotency {
                    key: key(&client, "CreatePlan", rid),
                    legacy: legacy_of(&[("plan_id", &r.plan_id), ("plan", &r.plan)]),
                };
                let fp = Fingerprint::new()
                    .with("plan_id", &id)
                    .with("display_name", &display)
                    .with("plan", &plan);
                self.app
                    .create_resource(
                        (&idem, &fp),
                        ResourceKind::Plan,
                        &id,
                        display.as_str(),
                        json(&plan)?,
                        &plan_to_pb,
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
                plan_to_pb(&self.app.resource(ResourceKind::Plan, &id, version).await?)
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
            async {
                let mut c = Check::new();
                let size = cv::page_size(&mut c, "page_size", r.page_size);
                let size = c.finish(size)?;
                let (rows, next_page_token) = self
                    .app
                    .list(ResourceKind::Plan, size, &r.page_token, false)
                    .await?;
                Ok(pb::ListPlansResponse {
                    plans: rows.iter().map(plan_to_pb).collect::<AppResult<_>>()?,
                    next_page_token,
                })
            }
            .await,
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
                let idem = Idempotency {
                    key: key(&client, "UpdatePlan", rid),
                    legacy: legacy_of(&[
                        ("name", &r.name),
                        ("display_name", &r.display_name),
                        ("buckets", &r.buckets),
                        ("effective_time", &r.effective_time),
                        ("expected_version", &r.expected_version),
                    ]),
                };
                let fp = Fingerprint::new()
                    .with("name", &id)
                    .with("display_name", &r.display_name)
                    .with("plan", &plan)
                    .with("effective_time", &effective)
                    .with("expected_version", &expected);
                let body = json(&plan)?;
                self.app
                    .update_resource(
                        (&idem, &fp),
                        (ResourceKind::Plan, &id),
                        Some(&r.display_name),
                        |current| {
                            crate::app::catalog::at_version(current, expected)?;
                            Ok(body)
                        },
                        effective,
                        &plan_to_pb,
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
                let idem = Idempotency {
                    key: key(&client, "SetHoursContract", rid),
                    legacy: legacy_of(&[("contract", &r.contract)]),
                };
                self.app
                    .set_hours_contract(&idem, &org, spec, &contract_to_pb)
                    .await
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
                contract_to_pb(&self.app.hours_contract(&org).await?)
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
                let idem = Idempotency {
                    key: key(&client, "RecordUsage", rid.clone()),
                    legacy: legacy_of(&[
                        ("organization", &r.organization),
                        ("bucket", &r.bucket),
                        ("minutes", &r.minutes),
                        ("activity_kind", &r.activity_kind),
                        ("service_time", &r.service_time),
                        ("ticket", &r.ticket),
                        ("contact_id", &r.contact_id),
                        ("reason", &r.reason),
                    ]),
                };
                let fp = Fingerprint::new()
                    .with("organization", &org)
                    .with("bucket", &bucket)
                    .with("minutes", &minutes)
                    .with("activity_kind", &activity)
                    .with("service_time", &service_at)
                    .with("ticket", &ticket.as_ref().map(|t| t.id.as_str()))
                    .with("reason", &reason);
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        &idem,
                        &fp,
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
                        &write_to_pb,
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
                let idem = Idempotency {
                    key: key(&client, "HoldMinutes", rid.clone()),
                    legacy: legacy_of(&[
                        ("organization", &r.organization),
                        ("bucket", &r.bucket),
                        ("hold_id", &r.hold_id),
                        ("minutes", &r.minutes),
                        ("service_time", &r.service_time),
                        ("activity_kind", &r.activity_kind),
                        ("ticket", &r.ticket),
                    ]),
                };
                let fp = Fingerprint::new()
                    .with("organization", &org)
                    .with("bucket", &bucket)
                    .with("hold_id", &hold)
                    .with("minutes", &minutes)
                    .with("service_time", &service_at)
                    .with("activity_kind", &activity)
                    .with("ticket", &ticket.as_ref().map(|t| t.id.as_str()));
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        &idem,
                        &fp,
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
                        &write_to_pb,
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
                let idem = Idempotency {
                    key: key(&client, "CaptureHold", rid.clone()),
                    legacy: legacy_of(&[
                        ("organization", &r.organization),
                        ("bucket", &r.bucket),
                        ("hold_id", &r.hold_id),
                        ("minutes", &r.minutes),
                    ]),
                };
                let fp = Fingerprint::new()
                    .with("organization", &org)
                    .with("bucket", &bucket)
                    .with("hold_id", &hold)
                    .with("minutes", &minutes);
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        &idem,
                        &fp,
                        &org,
                        &bucket,
                        move |_, _| {
                            Ok(Command::Capture {
                                hold,
                                minutes,
                                actor,
                            })
                        },
                        &write_to_pb,
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
                let idem = Idempotency {
                    key: key(&client, "ReleaseHold", rid.clone()),
                    legacy: legacy_of(&[
                        ("organization", &r.organization),
                        ("bucket", &r.bucket),
                        ("hold_id", &r.hold_id),
                        ("reason", &r.reason),
                    ]),
                };
                let fp = Fingerprint::new()
                    .with("organization", &org)
                    .with("bucket", &bucket)
                    .with("hold_id", &hold)
                    .with("reason", &reason);
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        &idem,
                        &fp,
                        &org,
                        &bucket,
                        move |_, _| {
                            Ok(Command::Release {
                                hold,
                                actor,
                                reason,
                            })
                        },
                        &write_to_pb,
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
                let idem = Idempotency {
                    key: key(&client, "AdjustBalance", rid.clone()),
                    legacy: legacy_of(&[
                        ("organization", &r.organization),
                        ("bucket", &r.bucket),
                        ("minutes", &r.minutes),
                        ("reason", &r.reason),
                    ]),
                };
                let fp = Fingerprint::new()
                    .with("organization", &org)
                    .with("bucket", &bucket)
                    .with("minutes", &r.minutes)
                    .with("reason", &reason);
                let actor = actor(&client)?;
                let minutes = i64::from(r.minutes);
                self.app
                    .ledger_write(
                        &idem,
                        &fp,
                        &org,
                        &bucket,
                        move |_, _| {
                            Ok(Command::Adjust {
                                minutes,
                                reason,
                                actor,
                            })
                        },
                        &write_to_pb,
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
                let idem = Idempotency {
                    key: key(&client, "ReverseEntry", rid.clone()),
                    legacy: legacy_of(&[
                        ("organization", &r.organization),
                        ("bucket", &r.bucket),
                        ("sequence", &r.sequence),
                        ("reason", &r.reason),
                    ]),
                };
                let fp = Fingerprint::new()
                    .with("organization", &org)
                    .with("bucket", &bucket)
                    .with("sequence", &entry)
                    .with("reason", &reason);
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        &idem,
                        &fp,
                        &org,
                        &bucket,
                        move |_, _| {
                            Ok(Command::Reverse {
                                entry,
                                reason,
                                actor,
                            })
                        },
                        &write_to_pb,
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
                let idem = Idempotency {
                    key: key(&client, "LockPeriod", rid.clone()),
                    legacy: legacy_of(&[
                        ("organization", &r.organization),
                        ("bucket", &r.bucket),
                        ("period_start", &r.period_start),
                    ]),
                };
                let fp = Fingerprint::new()
                    .with("organization", &org)
                    .with("bucket", &bucket)
                    .with("period_start", &start);
                let actor = actor(&client)?;
                self.app
                    .ledger_write(
                        &idem,
                        &fp,
                        &org,
                        &bucket,
                        move |_, ledger| {
                            let period: PeriodKey = ledger.period_starting(start)?;
                            Ok(Command::Lock { period, actor })
                        },
                        &write_to_pb,
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
                let b = self.app.balance(&org, &bucket, as_of).await?;
                Ok(balance_to_pb(&b))
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
                let (rows, next_page_token) = self
                    .app
                    .entries(&org, &bucket, period, size, &r.page_token)
                    .await?;
                Ok(pb::ListLedgerEntriesResponse {
                    entries: rows.iter().map(entry_to_pb).collect(),
                    next_page_token,
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
                self.app
                    .statement(&org, date, r.include_entries)
                    .await
                    .map(|v| statement_to_pb(&v))
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
        let rx = self
            .app
            .export_statements(date, r.include_entries, move |org| orgs.allows(org));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx)
                .map(|r| r.map(|v| statement_to_pb(&v)).map_err(Status::from)),
        )))
    }
}
