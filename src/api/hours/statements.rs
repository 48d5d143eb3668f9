//! `HoursService` reads of the ledger: balances, entries and statements.

use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use super::StatementStream;
use crate::api::Api;
use crate::api::convert::{self as cv};
use crate::api::convert::{balance_to_pb, entry_to_pb, statement_to_pb};
use crate::api::error::Check;
use crate::api::error::respond;
use crate::api::pb;
use crate::domain::ledger::BucketName;
use crate::store::{ResourceKind, Store};

pub(super) async fn get_balance<S: Store>(
    api: &Api<S>,
    req: Request<pb::GetBalanceRequest>,
) -> Result<Response<pb::Balance>, Status> {
    crate::api::OrgScope::of(&req).allow(&req.get_ref().organization)?;
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
            let b = api.app.balance(&org, &bucket, as_of).await?;
            Ok(balance_to_pb(&b))
        }
        .await,
    )
}

pub(super) async fn list_ledger_entries<S: Store>(
    api: &Api<S>,
    req: Request<pb::ListLedgerEntriesRequest>,
) -> Result<Response<pb::ListLedgerEntriesResponse>, Status> {
    crate::api::OrgScope::of(&req).allow(&req.get_ref().organization)?;
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
            let (rows, next_page_token) = api
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

pub(super) async fn get_statement<S: Store>(
    api: &Api<S>,
    req: Request<pb::GetStatementRequest>,
) -> Result<Response<pb::Statement>, Status> {
    crate::api::OrgScope::of(&req).allow(&req.get_ref().organization)?;
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
            crate::api::note("organization", &org);
            api.app
                .statement(&org, date, r.include_entries)
                .await
                .map(|v| statement_to_pb(&v))
        }
        .await,
    )
}

pub(super) async fn export_statements<S: Store>(
    api: &Api<S>,
    req: Request<pb::ExportStatementsRequest>,
) -> Result<Response<StatementStream>, Status> {
    // A client restricted to organisations gets theirs only.
    let orgs = crate::api::OrgScope::of(&req);
    let r = req.into_inner();
    let mut c = Check::new();
    let date = cv::plain_date(&mut c, "date", &r.date);
    let date = c.finish(date).map_err(Status::from)?;
    let rx = api
        .app
        .export_statements(date, r.include_entries, move |org| orgs.allows(org));
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|r| r.map(|v| statement_to_pb(&v)).map_err(Status::from)),
    )))
}
