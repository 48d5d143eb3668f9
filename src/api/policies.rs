//! The gRPC transport of `PolicyService`.

use tonic::{Request, Response, Status};

use super::catalog::{key, legacy_of, new_id};
use super::convert::{self as cv};
use super::error::Check;
use super::pb;
use super::{Api, client_of};
use crate::api::error::respond;
use crate::app::answer::Idempotency;
use crate::app::catalog::{at_version, json};
use crate::app::fingerprint::Fingerprint;
use crate::store::{ResourceKind, Store};

#[tonic::async_trait]
impl<S: Store> pb::policy_service_server::PolicyService for Api<S> {
    async fn create_policy(
        &self,
        req: Request<pb::CreatePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("policy", &r.policy_id);
        let mut c = Check::new();
        let id = new_id(&mut c, "policy_id", &r.policy_id);
        let p = r.policy.as_ref();
        let display = cv::display_name(
            &mut c,
            "policy.display_name",
            p.map(|p| p.display_name.as_str()).unwrap_or(""),
        );
        let policy = cv::policy_definition(
            &mut c,
            "policy.definition",
            p.and_then(|p| p.definition.as_ref()),
        );
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(display).zip(policy).zip(rid));
        respond(
            async {
                let (((id, display), policy), rid) = parsed?;
                let idem = Idempotency {
                    key: key(&client, "CreatePolicy", rid),
                    legacy: legacy_of(&[("policy_id", &r.policy_id), ("policy", &r.policy)]),
                };
                let fp = Fingerprint::new()
                    .with("policy_id", &id)
                    .with("display_name", &display)
                    .with("definition", &policy);
                self.app
                    .create_resource(
                        (&idem, &fp),
                        ResourceKind::Policy,
                        &id,
                        display.as_str(),
                        json(&policy)?,
                        &cv::policy_to_pb,
                    )
                    .await
            }
            .await,
        )
    }

    async fn get_policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let r = req.into_inner();
        respond(
            self.get(ResourceKind::Policy, &r.name, r.version, cv::policy_to_pb)
                .await,
        )
    }

    async fn list_policies(
        &self,
        req: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let r = req.into_inner();
        respond(
            self.list(
                ResourceKind::Policy,
                r.page_size,
                &r.page_token,
                r.show_archived,
                cv::policy_to_pb,
            )
            .await
            .map(|(policies, next_page_token)| pb::ListPoliciesResponse {
                policies,
                next_page_token,
            }),
        )
    }

    async fn update_policy(
        &self,
        req: Request<pb::UpdatePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("policy", &r.name);
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Policy);
        let policy = cv::policy_definition(&mut c, "definition", r.definition.as_ref());
        if !r.display_name.is_empty() {
            cv::display_name(&mut c, "display_name", &r.display_name);
        }
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let expected = cv::expected_version(&mut c, "expected_version", r.expected_version);
        let parsed = c.finish(id.zip(policy).zip(rid).zip(expected));
        respond(
            async {
                let (((id, policy), rid), expected) = parsed?;
                let idem = Idempotency {
                    key: key(&client, "UpdatePolicy", rid),
                    legacy: legacy_of(&[
                        ("name", &r.name),
                        ("display_name", &r.display_name),
                        ("definition", &r.definition),
                        ("expected_version", &r.expected_version),
                    ]),
                };
                let fp = Fingerprint::new()
                    .with("name", &id)
                    .with("display_name", &r.display_name)
                    .with("definition", &policy)
                    .with("expected_version", &expected);
                let body = json(&policy)?;
                self.app
                    .update_resource(
                        (&idem, &fp),
                        (ResourceKind::Policy, &id),
                        Some(&r.display_name),
                        |current| {
                            at_version(current, expected)?;
                            Ok(body)
                        },
                        None,
                        &cv::policy_to_pb,
                    )
                    .await
            }
            .await,
        )
    }

    async fn preview_policy_update(
        &self,
        req: Request<pb::PreviewPolicyUpdateRequest>,
    ) -> Result<Response<pb::ChangePreview>, Status> {
        let r = req.into_inner().update.unwrap_or_default();
        super::note("policy", &r.name);
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "update.name", &r.name, ResourceKind::Policy);
        let policy = cv::policy_definition(&mut c, "update.definition", r.definition.as_ref());
        let parsed = c.finish(id.zip(policy));
        respond(
            async {
                let (id, policy) = parsed?;
                self.app
                    .preview_policy(&id, policy)
                    .await
                    .map(|p| cv::preview_to_pb(&p))
            }
            .await,
        )
    }

    async fn archive_policy(
        &self,
        req: Request<pb::ArchivePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Policy);
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(rid));
        respond(
            async {
                let (id, rid) = parsed?;
                let idem = Idempotency {
                    key: key(&client, "ArchivePolicy", rid),
                    legacy: legacy_of(&[("name", &r.name)]),
                };
                let fp = Fingerprint::new().with("name", &id);
                self.app
                    .archive((&idem, &fp), ResourceKind::Policy, &id, &cv::policy_to_pb)
                    .await
            }
            .await,
        )
    }
}
