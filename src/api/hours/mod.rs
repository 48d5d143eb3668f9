//! The gRPC transport of prepaid hours (`HoursService`): requests are parsed into domain
//! values (`convert::hours`), the use cases are `app::hours`, answers are rendered as proto.
//! One file per resource: plans, hours contracts, ledger writes, ledger reads.

mod contracts;
mod ledger;
mod plans;
mod statements;

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api::Api;
use crate::api::convert::{self as cv};
use crate::api::error::{AppError, AppResult, Check};
use crate::api::pb;
use crate::domain::ledger::BucketName;
use crate::domain::names::{ExternalId, ResourceId};
use crate::store::{ResourceKind, Store};

// ---------------------------------------------------------------- the shell

pub(super) fn actor(client: &str) -> AppResult<ExternalId> {
    ExternalId::parse(client).map_err(|e| AppError::Internal(e.to_string()))
}

/// The account of a ledger write and its request id.
pub(super) struct Account {
    pub org: ResourceId,
    pub bucket: BucketName,
    pub request_id: String,
}

/// Organisation, bucket and request id of a ledger write, parsed.
pub(super) fn account(
    c: &mut Check,
    organization: &str,
    bucket: &str,
    request_id: &str,
) -> Option<Account> {
    let org = cv::resource_name(c, "organization", organization, ResourceKind::Organization);
    let bucket = c.ok("bucket", BucketName::parse(bucket));
    let request_id = cv::request_id(c, "request_id", request_id);
    let ((org, bucket), request_id) = org.zip(bucket).zip(request_id)?;
    Some(Account {
        org,
        bucket,
        request_id,
    })
}

pub(super) type StatementStream = Pin<Box<dyn Stream<Item = Result<pb::Statement, Status>> + Send>>;

#[tonic::async_trait]
impl<S: Store> pb::hours_service_server::HoursService for Api<S> {
    async fn create_plan(
        &self,
        req: Request<pb::CreatePlanRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        plans::create_plan(self, req).await
    }

    async fn get_plan(
        &self,
        req: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        plans::get_plan(self, req).await
    }

    async fn list_plans(
        &self,
        req: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        plans::list_plans(self, req).await
    }

    async fn update_plan(
        &self,
        req: Request<pb::UpdatePlanRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        plans::update_plan(self, req).await
    }

    async fn set_hours_contract(
        &self,
        req: Request<pb::SetHoursContractRequest>,
    ) -> Result<Response<pb::HoursContract>, Status> {
        contracts::set_hours_contract(self, req).await
    }

    async fn get_hours_contract(
        &self,
        req: Request<pb::GetHoursContractRequest>,
    ) -> Result<Response<pb::HoursContract>, Status> {
        contracts::get_hours_contract(self, req).await
    }

    async fn record_usage(
        &self,
        req: Request<pb::RecordUsageRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        ledger::record_usage(self, req).await
    }

    async fn hold_minutes(
        &self,
        req: Request<pb::HoldMinutesRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        ledger::hold_minutes(self, req).await
    }

    async fn capture_hold(
        &self,
        req: Request<pb::CaptureHoldRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        ledger::capture_hold(self, req).await
    }

    async fn release_hold(
        &self,
        req: Request<pb::ReleaseHoldRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        ledger::release_hold(self, req).await
    }

    async fn adjust_balance(
        &self,
        req: Request<pb::AdjustBalanceRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        ledger::adjust_balance(self, req).await
    }

    async fn reverse_entry(
        &self,
        req: Request<pb::ReverseEntryRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        ledger::reverse_entry(self, req).await
    }

    async fn lock_period(
        &self,
        req: Request<pb::LockPeriodRequest>,
    ) -> Result<Response<pb::LedgerWriteResponse>, Status> {
        ledger::lock_period(self, req).await
    }

    async fn get_balance(
        &self,
        req: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::Balance>, Status> {
        statements::get_balance(self, req).await
    }

    async fn list_ledger_entries(
        &self,
        req: Request<pb::ListLedgerEntriesRequest>,
    ) -> Result<Response<pb::ListLedgerEntriesResponse>, Status> {
        statements::list_ledger_entries(self, req).await
    }

    async fn get_statement(
        &self,
        req: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::Statement>, Status> {
        statements::get_statement(self, req).await
    }

    type ExportStatementsStream = StatementStream;

    async fn export_statements(
        &self,
        req: Request<pb::ExportStatementsRequest>,
    ) -> Result<Response<Self::ExportStatementsStream>, Status> {
        statements::export_statements(self, req).await
    }
}
