//! `HoursService` plans: named bucket terms organisations are assigned.

use tonic::{Request, Response, Status};

use crate::api::catalog::{key, legacy_of};
use crate::api::convert::{self as cv};
use crate::api::convert::{plan, plan_to_pb};
use crate::api::error::respond;
use crate::api::error::{AppResult, Check};
use crate::api::pb;
use crate::api::{Api, client_of};
use crate::app::answer::Idempotency;
use crate::app::catalog::json;
use crate::app::fingerprint::Fingerprint;
use crate::domain::names::ResourceId;
use crate::store::{ResourceKind, Store};

pub(super) async fn create_plan<S: Store>(
    api: &Api<S>,
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
            api.app
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

pub(super) async fn get_plan<S: Store>(
    api: &Api<S>,
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
            plan_to_pb(&api.app.resource(ResourceKind::Plan, &id, version).await?)
        }
        .await,
    )
}

pub(super) async fn list_plans<S: Store>(
    api: &Api<S>,
    req: Request<pb::ListPlansRequest>,
) -> Result<Response<pb::ListPlansResponse>, Status> {
    let r = req.into_inner();
    respond(
        async {
            let mut c = Check::new();
            let size = cv::page_size(&mut c, "page_size", r.page_size);
            let size = c.finish(size)?;
            let (rows, next_page_token) = api
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

pub(super) async fn update_plan<S: Store>(
    api: &Api<S>,
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
            api.app
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
