//! The gRPC transport of `DeadlineService`: what is due, breached or at risk, why a
//! deadline is what it is, and attainment.

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use super::Api;
use super::convert::{self as cv};
use super::error::{AppResult, Check};
use super::pb;
use crate::api::error::respond;
use crate::domain::names::{MetricName, PriorityLabel};
use crate::store::{ClockFilter, ClockQuery, ResourceKind, Store};

impl<S: Store> Api<S> {
    /// A deadline query; `c` holds what the caller already checked, so every bad field
    /// of the request is reported at once.
    async fn clocks(
        &self,
        mut c: Check,
        query: Option<ClockQuery>,
        filter: Option<&pb::ClockFilter>,
        page_size: i32,
        page_token: &str,
        as_of: DateTime<Utc>,
    ) -> AppResult<pb::ListClocksResponse> {
        let size = cv::page_size(&mut c, "page_size", page_size);
        let f = filter.cloned().unwrap_or_default();
        let organization = if f.organization.is_empty() {
            Some(None)
        } else {
            cv::resource_name(
                &mut c,
                "filter.organization",
                &f.organization,
                ResourceKind::Organization,
            )
            .map(|o| Some(o.to_string()))
        };
        let metric = cv::optional(&mut c, "filter.metric", &f.metric, MetricName::parse);
        let priority = cv::optional(&mut c, "filter.priority", &f.priority, PriorityLabel::parse);
        let (((size, organization), (metric, priority)), query) =
            c.finish(size.zip(organization).zip(metric.zip(priority)).zip(query))?;
        let filter = ClockFilter {
            organization,
            metric: metric.map(|m| m.to_string()),
            priority: priority.map(|p| p.to_string()),
        };
        let (page, next) = self.app.clocks(&query, &filter, size, page_token).await?;
        Ok(pb::ListClocksResponse {
            clocks: page
                .into_iter()
                .map(|r| pb::ClockSummary {
                    ticket: format!("tickets/{}", r.ticket_id),
                    organization: format!("organizations/{}", r.organization),
                    metric: r.metric,
                    priority: r.priority.unwrap_or_default(),
                    instance: r.instance as i32,
                    deadline_time: cv::opt_timestamp(r.deadline),
                    warning_time: cv::opt_timestamp(r.warning),
                    start_time: Some(cv::timestamp(r.started_at)),
                    kind: cv::kind_to_pb(&r.kind) as i32,
                })
                .collect(),
            next_page_token: next,
            as_of_time: Some(cv::timestamp(as_of)),
        })
    }
}

#[tonic::async_trait]
impl<S: Store> pb::deadline_service_server::DeadlineService for Api<S> {
    async fn explain_deadline(
        &self,
        req: Request<pb::ExplainDeadlineRequest>,
    ) -> Result<Response<pb::DeadlineExplanation>, Status> {
        super::OrgScope::of(&req)
            .allow_ticket(&self.app, &req.get_ref().ticket)
            .await?;
        let r = req.into_inner();
        super::note("ticket", &r.ticket);
        let mut c = Check::new();
        let id = cv::ticket_id(&mut c, "ticket", &r.ticket);
        let metric = c.ok("metric", MetricName::parse(&r.metric));
        let instance = match r.instance {
            None => Some(None),
            Some(i) if i >= 0 => Some(Some(i as u32)),
            Some(_) => {
                c.fail("instance", "must not be negative");
                None
            }
        };
        let parsed = c.finish(id.zip(metric).zip(instance));
        respond(
            async {
                let ((id, metric), instance) = parsed?;
                self.app
                    .explain_deadline(&id, metric.as_str(), instance)
                    .await
                    .map(|x| super::reports::explanation_to_pb(&x))
            }
            .await,
        )
    }

    async fn report_attainment(
        &self,
        req: Request<pb::ReportAttainmentRequest>,
    ) -> Result<Response<pb::ReportAttainmentResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let r = req.into_inner();
        respond(
            async {
                let (filter, period, from, to) = super::reports::attainment_request(&r)?;
                self.app
                    .report_attainment(filter, period, from, to)
                    .await
                    .map(super::reports::attainment_to_pb)
            }
            .await,
        )
    }

    async fn list_due_clocks(
        &self,
        req: Request<pb::ListDueClocksRequest>,
    ) -> Result<Response<pb::ListClocksResponse>, Status> {
        let filter = req.get_ref().filter.as_ref();
        super::OrgScope::of(&req).allow(filter.map_or("", |f| f.organization.as_str()))?;
        let r = req.into_inner();
        let result = async {
            let mut c = Check::new();
            let from = cv::required_instant(&mut c, "from_time", r.from_time.as_ref());
            let to = cv::required_instant(&mut c, "to_time", r.to_time.as_ref());
            if let (Some(f), Some(t)) = (from, to)
                && t < f
            {
                c.fail("to_time", "must not be before from_time");
            }
            let query = from.zip(to).map(|(from, to)| ClockQuery::Due { from, to });
            self.clocks(
                c,
                query,
                r.filter.as_ref(),
                r.page_size,
                &r.page_token,
                self.app.now(),
            )
            .await
        }
        .await;
        respond(result)
    }

    async fn list_breached_clocks(
        &self,
        req: Request<pb::ListBreachedClocksRequest>,
    ) -> Result<Response<pb::ListClocksResponse>, Status> {
        let filter = req.get_ref().filter.as_ref();
        super::OrgScope::of(&req).allow(filter.map_or("", |f| f.organization.as_str()))?;
        let r = req.into_inner();
        let now = self.app.now();
        respond(
            self.clocks(
                Check::new(),
                Some(ClockQuery::Breached { now }),
                r.filter.as_ref(),
                r.page_size,
                &r.page_token,
                now,
            )
            .await,
        )
    }

    async fn list_at_risk_clocks(
        &self,
        req: Request<pb::ListAtRiskClocksRequest>,
    ) -> Result<Response<pb::ListClocksResponse>, Status> {
        let filter = req.get_ref().filter.as_ref();
        super::OrgScope::of(&req).allow(filter.map_or("", |f| f.organization.as_str()))?;
        let r = req.into_inner();
        let now = self.app.now();
        respond(
            self.clocks(
                Check::new(),
                Some(ClockQuery::AtRisk { now }),
                r.filter.as_ref(),
                r.page_size,
                &r.page_token,
                now,
            )
            .await,
        )
    }
}
