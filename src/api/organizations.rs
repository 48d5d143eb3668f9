//! The gRPC transport of `OrganizationService`.

use super::catalog::organization_update;
use crate::api::error::respond;
use tonic::{Request, Response, Status};

use super::catalog::{key, legacy_of, new_id};
use super::convert::{self as cv};
use super::error::Check;
use super::pb;
use super::{Api, client_of};
use crate::app::answer::Idempotency;
use crate::app::fingerprint::Fingerprint;
use crate::store::{ResourceKind, Store};

#[tonic::async_trait]
impl<S: Store> pb::organization_service_server::OrganizationService for Api<S> {
    async fn create_organization(
        &self,
        req: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization_id)?;
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("organization", &r.organization_id);
        let mut c = Check::new();
        let id = new_id(&mut c, "organization_id", &r.organization_id);
        let org = cv::organization(&mut c, "organization", r.organization.as_ref());
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(org).zip(rid));
        respond(
            async {
                let ((id, org), rid) = parsed?;
                let idem = Idempotency {
                    key: key(&client, "CreateOrganization", rid),
                    legacy: legacy_of(&[
                        ("organization_id", &r.organization_id),
                        ("organization", &r.organization),
                    ]),
                };
                let fp = Fingerprint::new()
                    .with("organization_id", &id)
                    .with("organization", &org);
                self.app
                    .create_organization((&idem, &fp), &id, &org, &cv::organization_to_pb)
                    .await
            }
            .await,
        )
    }

    async fn get_organization(
        &self,
        req: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().name)?;
        let r = req.into_inner();
        respond(
            async {
                let mut org = self
                    .get(
                        ResourceKind::Organization,
                        &r.name,
                        0,
                        cv::organization_to_pb,
                    )
                    .await?;
                org.recomputation = self
                    .recomputation(ResourceKind::Organization, &org.name, org.version)
                    .await?;
                Ok(org)
            }
            .await,
        )
    }

    async fn list_organizations(
        &self,
        req: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let orgs = super::OrgScope::of(&req);
        let r = req.into_inner();
        respond(
            self.list(
                ResourceKind::Organization,
                r.page_size,
                &r.page_token,
                r.show_archived,
                cv::organization_to_pb,
            )
            .await
            .map(
                |(organizations, next_page_token)| pb::ListOrganizationsResponse {
                    // A client restricted to organisations sees theirs only.
                    organizations: organizations
                        .into_iter()
                        .filter(|o| orgs.allows(&o.name))
                        .collect(),
                    next_page_token,
                },
            ),
        )
    }

    async fn update_organization(
        &self,
        req: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let org = req.get_ref().organization.as_ref();
        super::OrgScope::of(&req).allow(org.map_or("", |o| o.name.as_str()))?;
        let client = client_of(&req);
        let r = req.into_inner();
        let name = r
            .organization
            .as_ref()
            .map(|o| o.name.clone())
            .unwrap_or_default();
        super::note("organization", &name);
        let mut c = Check::new();
        let id = cv::resource_name(
            &mut c,
            "organization.name",
            &name,
            ResourceKind::Organization,
        );
        let (mask, update) = organization_update(&mut c, "", &r);
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let expected = cv::expected_version(&mut c, "expected_version", r.expected_version);
        let parsed = c.finish(id.zip(mask).zip(update).zip(rid).zip(expected));
        let result = async {
            let ((((id, mask), update), rid), expected) = parsed?;
            let idem = Idempotency {
                key: key(&client, "UpdateOrganization", rid),
                legacy: legacy_of(&[
                    ("organization", &r.organization),
                    ("update_mask", &r.update_mask),
                    ("expected_version", &r.expected_version),
                ]),
            };
            let fp = Fingerprint::new()
                .with("name", &id)
                .with("update_mask", &mask)
                .with("organization", &update)
                .with("expected_version", &expected);
            let answer = self
                .app
                .update_organization((&idem, &fp), &id, update, expected, &cv::organization_to_pb)
                .await?;
            self.recompute_organization(&id);
            Ok(answer)
        }
        .await;
        respond(result)
    }

    async fn preview_organization_update(
        &self,
        req: Request<pb::PreviewOrganizationUpdateRequest>,
    ) -> Result<Response<pb::ChangePreview>, Status> {
        let name = req
            .get_ref()
            .update
            .as_ref()
            .and_then(|u| u.organization.as_ref())
            .map(|o| o.name.clone())
            .unwrap_or_default();
        super::OrgScope::of(&req).allow(&name)?;
        let r = req.into_inner().update.unwrap_or_default();
        super::note("organization", &name);
        let mut c = Check::new();
        let id = cv::resource_name(
            &mut c,
            "update.organization.name",
            &name,
            ResourceKind::Organization,
        );
        let (_, update) = organization_update(&mut c, "update.", &r);
        let parsed = c.finish(id.zip(update));
        respond(
            async {
                let (id, update) = parsed?;
                self.app
                    .preview_organization_update(&id, "update.organization", update)
                    .await
                    .map(|p| cv::preview_to_pb(&p))
            }
            .await,
        )
    }

    async fn archive_organization(
        &self,
        req: Request<pb::ArchiveOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().name)?;
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Organization);
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(rid));
        respond(
            async {
                let (id, rid) = parsed?;
                let idem = Idempotency {
                    key: key(&client, "ArchiveOrganization", rid),
                    legacy: legacy_of(&[("name", &r.name)]),
                };
                let fp = Fingerprint::new().with("name", &id);
                self.app
                    .archive(
                        (&idem, &fp),
                        ResourceKind::Organization,
                        &id,
                        &cv::organization_to_pb,
                    )
                    .await
            }
            .await,
        )
    }
}
