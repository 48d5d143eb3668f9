//! `HoursService` ledger writes: usage, holds, adjustments, reversals and period locks.

use tonic::{Request, Response, Status};

use super::{Account, account, actor};
use crate::api::catalog::{key, legacy_of};
use crate::api::convert::{self as cv};
use crate::api::convert::{positive_u32, write_to_pb};
use crate::api::error::Check;
use crate::api::error::respond;
use crate::api::pb;
use crate::api::{Api, client_of};
use crate::app::answer::Idempotency;
use crate::app::error::AppResult;
use crate::app::fingerprint::Fingerprint;
use crate::domain::ledger::{ActivityKind, Command, Ledger, PeriodKey, TicketRef, Usage};
use crate::domain::names::{ExternalId, ShortText};
use crate::store::Store;

/// What every ledger write shares: its idempotency under `method` (the fingerprint is the
/// account and `meaning`), the caller as the entry's actor, the command decided on the
/// account's fold, and the answer as stored. The command may be decided twice (on the
/// fold kept in memory, then on the locked account if the kept one had moved), so it
/// clones what it puts in the command.
#[allow(clippy::too_many_arguments)]
async fn write<S: Store>(
    api: &Api<S>,
    client: &str,
    method: &'static str,
    account: Account,
    legacy: Option<Fingerprint>,
    meaning: Fingerprint,
    ticket: Option<String>,
    command: impl Fn(ExternalId, Option<TicketRef>, &Ledger) -> AppResult<Command>
    + Send
    + Sync
    + 'static,
) -> AppResult<pb::LedgerWriteResponse> {
    let Account {
        org,
        bucket,
        request_id,
    } = account;
    let idem = Idempotency {
        key: key(client, method, request_id),
        legacy,
    };
    let fp = meaning.with("organization", &org).with("bucket", &bucket);
    let actor = actor(client)?;
    api.app
        .ledger_write(
            &idem,
            &fp,
            &org,
            &bucket,
            ticket,
            move |_, ledger, ticket| command(actor.clone(), ticket, ledger),
            write_to_pb,
        )
        .await
}

pub(super) async fn record_usage<S: Store>(
    api: &Api<S>,
    req: Request<pb::RecordUsageRequest>,
) -> Result<Response<pb::LedgerWriteResponse>, Status> {
    crate::api::OrgScope::of(&req).allow(&req.get_ref().organization)?;
    let client = client_of(&req);
    let r = req.into_inner();
    let mut c = Check::new();
    let account = account(&mut c, &r.organization, &r.bucket, &r.request_id);
    let minutes = positive_u32(&mut c, "minutes", r.minutes);
    let activity = cv::optional(
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
    let _contact = cv::optional(&mut c, "contact_id", &r.contact_id, ExternalId::parse);
    let reason = cv::optional(&mut c, "reason", &r.reason, ShortText::parse);
    let parsed = c.finish(
        account
            .zip(minutes.zip(activity))
            .zip(service.zip(ticket))
            .zip(reason),
    );
    respond(
        async {
            let (((account, (minutes, activity)), (service_at, ticket)), reason) = parsed?;
            crate::api::note("organization", &account.org);
            let meaning = Fingerprint::new()
                .with("minutes", &minutes)
                .with("activity_kind", &activity)
                .with("service_time", &service_at)
                .with("ticket", &ticket)
                .with("reason", &reason);
            let legacy = legacy_of(&[
                ("organization", &r.organization),
                ("bucket", &r.bucket),
                ("minutes", &r.minutes),
                ("activity_kind", &r.activity_kind),
                ("service_time", &r.service_time),
                ("ticket", &r.ticket),
                ("contact_id", &r.contact_id),
                ("reason", &r.reason),
            ]);
            write(
                api,
                &client,
                "RecordUsage",
                account,
                legacy,
                meaning,
                ticket,
                move |actor, ticket, _| {
                    Ok(Command::RecordUsage(Usage {
                        minutes,
                        activity: activity.clone(),
                        service_at,
                        ticket,
                        actor,
                        reason: reason.clone(),
                    }))
                },
            )
            .await
        }
        .await,
    )
}

pub(super) async fn hold_minutes<S: Store>(
    api: &Api<S>,
    req: Request<pb::HoldMinutesRequest>,
) -> Result<Response<pb::LedgerWriteResponse>, Status> {
    crate::api::OrgScope::of(&req).allow(&req.get_ref().organization)?;
    let client = client_of(&req);
    let r = req.into_inner();
    let mut c = Check::new();
    let account = account(&mut c, &r.organization, &r.bucket, &r.request_id);
    let hold = c.ok("hold_id", ExternalId::parse(&r.hold_id));
    let minutes = positive_u32(&mut c, "minutes", r.minutes);
    let service = cv::required_instant(&mut c, "service_time", r.service_time.as_ref());
    let activity = cv::optional(
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
        account
            .zip(hold.zip(minutes))
            .zip(service.zip(activity))
            .zip(ticket),
    );
    respond(
        async {
            let (((account, (hold, minutes)), (service_at, activity)), ticket) = parsed?;
            let meaning = Fingerprint::new()
                .with("hold_id", &hold)
                .with("minutes", &minutes)
                .with("service_time", &service_at)
                .with("activity_kind", &activity)
                .with("ticket", &ticket);
            let legacy = legacy_of(&[
                ("organization", &r.organization),
                ("bucket", &r.bucket),
                ("hold_id", &r.hold_id),
                ("minutes", &r.minutes),
                ("service_time", &r.service_time),
                ("activity_kind", &r.activity_kind),
                ("ticket", &r.ticket),
            ]);
            write(
                api,
                &client,
                "HoldMinutes",
                account,
                legacy,
                meaning,
                ticket,
                move |actor, ticket, _| {
                    Ok(Command::Hold {
                        hold: hold.clone(),
                        minutes,
                        service_at,
                        activity: activity.clone(),
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

pub(super) async fn capture_hold<S: Store>(
    api: &Api<S>,
    req: Request<pb::CaptureHoldRequest>,
) -> Result<Response<pb::LedgerWriteResponse>, Status> {
    crate::api::OrgScope::of(&req).allow(&req.get_ref().organization)?;
    let client = client_of(&req);
    let r = req.into_inner();
    let mut c = Check::new();
    let account = account(&mut c, &r.organization, &r.bucket, &r.request_id);
    let hold = c.ok("hold_id", ExternalId::parse(&r.hold_id));
    let minutes = match u32::try_from(r.minutes) {
        Ok(m) => Some(m),
        Err(_) => {
            c.fail("minutes", "must not be negative");
            None
        }
    };
    let parsed = c.finish(account.zip(hold.zip(minutes)));
    respond(
        async {
            let (account, (hold, minutes)) = parsed?;
            let meaning = Fingerprint::new()
                .with("hold_id", &hold)
                .with("minutes", &minutes);
            let legacy = legacy_of(&[
                ("organization", &r.organization),
                ("bucket", &r.bucket),
                ("hold_id", &r.hold_id),
                ("minutes", &r.minutes),
            ]);
            write(
                api,
                &client,
                "CaptureHold",
                account,
                legacy,
                meaning,
                None,
                move |actor, _, _| {
                    Ok(Command::Capture {
                        hold: hold.clone(),
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

pub(super) async fn release_hold<S: Store>(
    api: &Api<S>,
    req: Request<pb::ReleaseHoldRequest>,
) -> Result<Response<pb::LedgerWriteResponse>, Status> {
    crate::api::OrgScope::of(&req).allow(&req.get_ref().organization)?;
    let client = client_of(&req);
    let r = req.into_inner();
    let mut c = Check::new();
    let account = account(&mut c, &r.organization, &r.bucket, &r.request_id);
    let hold = c.ok("hold_id", ExternalId::parse(&r.hold_id));
    let reason = cv::optional(&mut c, "reason", &r.reason, ShortText::parse);
    let parsed = c.finish(account.zip(hold.zip(reason)));
    respond(
        async {
            let (account, (hold, reason)) = parsed?;
            let meaning = Fingerprint::new()
                .with("hold_id", &hold)
                .with("reason", &reason);
            let legacy = legacy_of(&[
                ("organization", &r.organization),
                ("bucket", &r.bucket),
                ("hold_id", &r.hold_id),
                ("reason", &r.reason),
            ]);
            write(
                api,
                &client,
                "ReleaseHold",
                account,
                legacy,
                meaning,
                None,
                move |actor, _, _| {
                    Ok(Command::Release {
                        hold: hold.clone(),
                        actor,
                        reason: reason.clone(),
                    })
                },
            )
            .await
        }
        .await,
    )
}

pub(super) async fn adjust_balance<S: Store>(
    api: &Api<S>,
    req: Request<pb::AdjustBalanceRequest>,
) -> Result<Response<pb::LedgerWriteResponse>, Status> {
    crate::api::OrgScope::of(&req).allow(&req.get_ref().organization)?;
    let client = client_of(&req);
    let r = req.into_inner();
    let mut c = Check::new();
    let account = account(&mut c, &r.organization, &r.bucket, &r.request_id);
    if r.minutes == 0 {
        c.fail("minutes", "must not be 0");
    }
    let reason = c.ok("reason", ShortText::parse(&r.reason));
    let parsed = c.finish(account.zip(reason));
    respond(
        async {
            let (account, reason) = parsed?;
            let minutes = i64::from(r.minutes);
            let meaning = Fingerprint::new()
                .with("minutes", &r.minutes)
                .with("reason", &reason);
            let legacy = legacy_of(&[
                ("organization", &r.organization),
                ("bucket", &r.bucket),
                ("minutes", &r.minutes),
                ("reason", &r.reason),
            ]);
            write(
                api,
                &client,
                "AdjustBalance",
                account,
                legacy,
                meaning,
                None,
                move |actor, _, _| {
                    Ok(Command::Adjust {
                        minutes,
                        reason: reason.clone(),
                        actor,
                    })
                },
            )
            .await
        }
        .await,
    )
}

pub(super) async fn reverse_entry<S: Store>(
    api: &Api<S>,
    req: Request<pb::ReverseEntryRequest>,
) -> Result<Response<pb::LedgerWriteResponse>, Status> {
    crate::api::OrgScope::of(&req).allow(&req.get_ref().organization)?;
    let client = client_of(&req);
    let r = req.into_inner();
    let mut c = Check::new();
    let account = account(&mut c, &r.organization, &r.bucket, &r.request_id);
    let entry = match u64::try_from(r.sequence) {
        Ok(s) if s >= 1 => Some(s),
        _ => {
            c.fail("sequence", "must be 1 or more");
            None
        }
    };
    let reason = c.ok("reason", ShortText::parse(&r.reason));
    let parsed = c.finish(account.zip(entry.zip(reason)));
    respond(
        async {
            let (account, (entry, reason)) = parsed?;
            let meaning = Fingerprint::new()
                .with("sequence", &entry)
                .with("reason", &reason);
            let legacy = legacy_of(&[
                ("organization", &r.organization),
                ("bucket", &r.bucket),
                ("sequence", &r.sequence),
                ("reason", &r.reason),
            ]);
            write(
                api,
                &client,
                "ReverseEntry",
                account,
                legacy,
                meaning,
                None,
                move |actor, _, _| {
                    Ok(Command::Reverse {
                        entry,
                        reason: reason.clone(),
                        actor,
                    })
                },
            )
            .await
        }
        .await,
    )
}

pub(super) async fn lock_period<S: Store>(
    api: &Api<S>,
    req: Request<pb::LockPeriodRequest>,
) -> Result<Response<pb::LedgerWriteResponse>, Status> {
    crate::api::OrgScope::of(&req).allow(&req.get_ref().organization)?;
    let client = client_of(&req);
    let r = req.into_inner();
    let mut c = Check::new();
    let account = account(&mut c, &r.organization, &r.bucket, &r.request_id);
    let start = cv::plain_date(&mut c, "period_start", &r.period_start);
    let parsed = c.finish(account.zip(start));
    respond(
        async {
            let (account, start) = parsed?;
            let meaning = Fingerprint::new().with("period_start", &start);
            let legacy = legacy_of(&[
                ("organization", &r.organization),
                ("bucket", &r.bucket),
                ("period_start", &r.period_start),
            ]);
            write(
                api,
                &client,
                "LockPeriod",
                account,
                legacy,
                meaning,
                None,
                move |actor, _, ledger| {
                    let period: PeriodKey = ledger.period_starting(start)?;
                    Ok(Command::Lock { period, actor })
                },
            )
            .await
        }
        .await,
    )
}
