//! `HoursService` hours contracts: an organisation's plan assignment.

use tonic::{Request, Response, Status};

use crate::api::catalog::{key, legacy_of};
use crate::api::convert::contract_to_pb;
use crate::api::convert::{self as cv};
use crate::api::error::Check;
use crate::api::error::respond;
use crate::api::pb;
use crate::api::{Api, client_of};
use crate::app::answer::Idempotency;
use crate::domain::hours::{HoursContractSpec, PlanAssignment};
use crate::domain::limits;
use crate::store::{ResourceKind, Store};

pub(super) async fn set_hours_contract<S: Store>(
    api: &Api<S>,
    req: Request<pb::SetHoursContractRequest>,
) -> Result<Response<pb::HoursContract>, Status> {
    let contract = req.get_ref().contract.as_ref();
    crate::api::OrgScope::of(&req).allow(contract.map_or("", |c| c.organization.as_str()))?;
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
            crate::api::note("organization", &org);
            let idem = Idempotency {
                key: key(&client, "SetHoursContract", rid),
                legacy: legacy_of(&[("contract", &r.contract)]),
            };
            api.app
                .set_hours_contract(&idem, &org, spec, &contract_to_pb)
                .await
        }
        .await,
    )
}

pub(super) async fn get_hours_contract<S: Store>(
    api: &Api<S>,
    req: Request<pb::GetHoursContractRequest>,
) -> Result<Response<pb::HoursContract>, Status> {
    crate::api::OrgScope::of(&req).allow(&req.get_ref().organization)?;
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
            contract_to_pb(&api.app.hours_contract(&org).await?)
        }
        .await,
    )
}
