//! The gRPC transport of `ConnectionService`: connections and their inboxes
//! (`app::connections`, `app::inbox`).

use tonic::{Request, Response, Status};

use super::catalog::{field_mask, key, new_id, secret_hash};
use super::convert::{self as cv};
use super::error::{AppError, AppResult, Check, respond};
use super::pb;
use super::{Api, OrgScope, client_of};
use crate::app::answer::Idempotency;
use crate::app::connections::ConnectionView;
use crate::app::fingerprint::Fingerprint;
use crate::domain::names::ResourceId;
use crate::store::{DeliveryState, ResourceKind, Store};

fn render(v: &ConnectionView) -> AppResult<pb::Connection> {
    Ok(cv::connection_to_pb(v))
}

fn connection_id(c: &mut Check, field: &str, name: &str) -> Option<ResourceId> {
    cv::resource_name(c, field, name, ResourceKind::Connection)
}

impl<S: Store> Api<S> {
    /// For a caller restricted to organisations, another organisation's connection does
    /// not exist (NOT_FOUND, as for one that does not). A name that does not parse is
    /// left to the handler's own check.
    async fn allow_connection(&self, orgs: &OrgScope, name: &str) -> AppResult<()> {
        if orgs.allows_everything() {
            return Ok(());
        }
        let id = name.strip_prefix("connections/").unwrap_or(name);
        let id = id.split('/').next().unwrap_or(id);
        let Ok(id) = ResourceId::parse(id) else {
            return Ok(());
        };
        match self.app.connection(&id).await {
            Ok(v) if orgs.allows(v.spec.organization.as_str()) => Ok(()),
            Ok(_) | Err(AppError::NotFound(_)) => {
                Err(AppError::NotFound(format!("connections/{id}")))
            }
            Err(e) => Err(e),
        }
    }
}

#[tonic::async_trait]
impl<S: Store> pb::connection_service_server::ConnectionService for Api<S> {
    async fn create_connection(
        &self,
        req: Request<pb::CreateConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let org = req
            .get_ref()
            .connection
            .as_ref()
            .map(|c| c.organization.clone())
            .unwrap_or_default();
        OrgScope::of(&req).allow(&org)?;
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let id = new_id(&mut c, "connection_id", &r.connection_id);
        let conn = cv::connection(&mut c, "connection", r.connection.as_ref());
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(conn).zip(rid));
        respond(
            async {
                let ((id, (display, spec)), rid) = parsed?;
                let idem = Idempotency::new(key(&client, "CreateConnection", rid));
                let fp = Fingerprint::new()
                    .with("connection_id", &id)
                    .with("display_name", &display)
                    .with("connection", &spec)
                    .with(
                        "secrets",
                        &r.secrets.iter().map(|s| secret_hash(s)).collect::<Vec<_>>(),
                    );
                self.app
                    .create_connection((&idem, &fp), &id, &display, &spec, &r.secrets, &render)
                    .await
            }
            .await,
        )
    }

    async fn get_connection(
        &self,
        req: Request<pb::GetConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let orgs = OrgScope::of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_connection(&orgs, &r.name).await?;
                let mut c = Check::new();
                let id = connection_id(&mut c, "name", &r.name);
                let id = c.finish(id)?;
                Ok(cv::connection_to_pb(&self.app.connection(&id).await?))
            }
            .await,
        )
    }

    async fn list_connections(
        &self,
        req: Request<pb::ListConnectionsRequest>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        let orgs = OrgScope::of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let size = cv::page_size(&mut c, "page_size", r.page_size);
        let org = if r.organization.is_empty() {
            Some(None)
        } else {
            cv::resource_name(
                &mut c,
                "organization",
                &r.organization,
                ResourceKind::Organization,
            )
            .map(Some)
        };
        let parsed = c.finish(size.zip(org));
        respond(
            async {
                let (size, org) = parsed?;
                if let Some(o) = &org {
                    orgs.allow(o.as_str())?;
                }
                let (items, next) = self
                    .app
                    .list_connections(
                        org.as_ref(),
                        &|o| orgs.allows(o.as_str()),
                        size,
                        &r.page_token,
                        r.show_archived,
                    )
                    .await?;
                Ok(pb::ListConnectionsResponse {
                    connections: items.iter().map(cv::connection_to_pb).collect(),
                    next_page_token: next,
                })
            }
            .await,
        )
    }

    async fn update_connection(
        &self,
        req: Request<pb::UpdateConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let orgs = OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        let conn = r.connection.clone().unwrap_or_default();
        respond(
            async {
                self.allow_connection(&orgs, &conn.name).await?;
                let mut c = Check::new();
                let id = connection_id(&mut c, "connection.name", &conn.name);
                let fields = field_mask(
                    &mut c,
                    r.update_mask.as_ref(),
                    "connection.",
                    &cv::CONNECTION_FIELDS,
                    &cv::CONNECTION_IGNORED,
                );
                let before = c.count();
                let patch = fields
                    .as_ref()
                    .map(|f| cv::connection_patch(&mut c, "connection", &conn, f.as_deref()));
                let patch = patch.filter(|_| c.count() == before);
                let rid = cv::request_id(&mut c, "request_id", &r.request_id);
                let expected = cv::expected_version(&mut c, "expected_version", r.expected_version);
                let (((id, patch), rid), expected) =
                    c.finish(id.zip(patch).zip(rid).zip(expected))?;
                let idem = Idempotency::new(key(&client, "UpdateConnection", rid));
                let fp = Fingerprint::new()
                    .with("name", &id)
                    .with("update_mask", &fields)
                    .with("connection", &patch)
                    .with("expected_version", &expected);
                self.app
                    .update_connection((&idem, &fp), &id, &patch, expected, &render)
                    .await
            }
            .await,
        )
    }

    async fn archive_connection(
        &self,
        req: Request<pb::ArchiveConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let orgs = OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_connection(&orgs, &r.name).await?;
                let mut c = Check::new();
                let id = connection_id(&mut c, "name", &r.name);
                let rid = cv::request_id(&mut c, "request_id", &r.request_id);
                let (id, rid) = c.finish(id.zip(rid))?;
                let idem = Idempotency::new(key(&client, "ArchiveConnection", rid));
                let fp = Fingerprint::new().with("name", &id);
                self.app
                    .archive_connection((&idem, &fp), &id, &render)
                    .await
            }
            .await,
        )
    }

    async fn add_connection_secret(
        &self,
        req: Request<pb::AddConnectionSecretRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let orgs = OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_connection(&orgs, &r.name).await?;
                let mut c = Check::new();
                let id = connection_id(&mut c, "name", &r.name);
                if r.secret.is_empty() {
                    c.fail("secret", "is required");
                }
                let rid = cv::request_id(&mut c, "request_id", &r.request_id);
                let (id, rid) = c.finish(id.zip(rid))?;
                let idem = Idempotency::new(key(&client, "AddConnectionSecret", rid));
                let fp = Fingerprint::new()
                    .with("name", &id)
                    .with("secret", &secret_hash(&r.secret));
                self.app
                    .add_connection_secret((&idem, &fp), &id, &r.secret, &render)
                    .await
            }
            .await,
        )
    }

    async fn remove_connection_secret(
        &self,
        req: Request<pb::RemoveConnectionSecretRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let orgs = OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_connection(&orgs, &r.name).await?;
                let mut c = Check::new();
                let id = connection_id(&mut c, "name", &r.name);
                if r.fingerprint.is_empty() || r.fingerprint.len() > 64 {
                    c.fail(
                        "fingerprint",
                        "must be a secret's fingerprint, as the connection shows it",
                    );
                }
                let rid = cv::request_id(&mut c, "request_id", &r.request_id);
                let (id, rid) = c.finish(id.zip(rid))?;
                let idem = Idempotency::new(key(&client, "RemoveConnectionSecret", rid));
                let fp = Fingerprint::new()
                    .with("name", &id)
                    .with("fingerprint", &r.fingerprint);
                self.app
                    .remove_connection_secret((&idem, &fp), &id, &r.fingerprint, &render)
                    .await
            }
            .await,
        )
    }

    async fn list_inbox_deliveries(
        &self,
        req: Request<pb::ListInboxDeliveriesRequest>,
    ) -> Result<Response<pb::ListInboxDeliveriesResponse>, Status> {
        let orgs = OrgScope::of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_connection(&orgs, &r.parent).await?;
                let mut c = Check::new();
                let id = connection_id(&mut c, "parent", &r.parent);
                let size = cv::page_size(&mut c, "page_size", r.page_size);
                let states = cv::delivery_states(&mut c, "states", &r.states);
                let ((id, size), states) = c.finish(id.zip(size).zip(states))?;
                let (rows, next) = self
                    .app
                    .deliveries(&id, &states, size, &r.page_token)
                    .await?;
                Ok(pb::ListInboxDeliveriesResponse {
                    deliveries: rows.iter().map(cv::delivery_to_pb).collect(),
                    next_page_token: next,
                })
            }
            .await,
        )
    }

    async fn get_inbox_delivery(
        &self,
        req: Request<pb::GetInboxDeliveryRequest>,
    ) -> Result<Response<pb::InboxDelivery>, Status> {
        let orgs = OrgScope::of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_connection(&orgs, &r.name).await?;
                let mut c = Check::new();
                let name = cv::delivery_name(&mut c, "name", &r.name);
                let (conn, id) = c.finish(name)?;
                Ok(cv::delivery_to_pb(&self.app.delivery(&conn, &id).await?))
            }
            .await,
        )
    }

    async fn replay_inbox_delivery(
        &self,
        req: Request<pb::ReplayInboxDeliveryRequest>,
    ) -> Result<Response<pb::InboxDelivery>, Status> {
        let orgs = OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_connection(&orgs, &r.name).await?;
                let mut c = Check::new();
                let name = cv::delivery_name(&mut c, "name", &r.name);
                let rid = cv::request_id(&mut c, "request_id", &r.request_id);
                let ((conn, id), rid) = c.finish(name.zip(rid))?;
                // The delivery as it stands now; a pending one is answered as it is.
                let before = self.app.delivery(&conn, &id).await?;
                let idem = Idempotency::new(key(&client, "ReplayInboxDelivery", rid));
                let fp = Fingerprint::new()
                    .with("connection", &conn)
                    .with("delivery_id", &id);
                self.app
                    .replay_deliveries((&idem, &fp), &conn, Some(&id), &[], &|_| {
                        let mut now = before.clone();
                        now.state = DeliveryState::Pending;
                        now.reason = None;
                        now.done_at = None;
                        Ok(cv::delivery_to_pb(&now))
                    })
                    .await
            }
            .await,
        )
    }

    async fn replay_inbox_deliveries(
        &self,
        req: Request<pb::ReplayInboxDeliveriesRequest>,
    ) -> Result<Response<pb::ReplayInboxDeliveriesResponse>, Status> {
        let orgs = OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_connection(&orgs, &r.parent).await?;
                let mut c = Check::new();
                let id = connection_id(&mut c, "parent", &r.parent);
                let states = cv::delivery_states(&mut c, "states", &r.states);
                if states
                    .as_ref()
                    .is_some_and(|s| s.contains(&DeliveryState::Pending))
                {
                    c.fail(
                        "states",
                        "PENDING deliveries are applied already: leave it out",
                    );
                }
                let rid = cv::request_id(&mut c, "request_id", &r.request_id);
                let ((id, states), rid) = c.finish(id.zip(states).zip(rid))?;
                let states = if states.is_empty() {
                    vec![DeliveryState::Failed]
                } else {
                    states
                };
                let idem = Idempotency::new(key(&client, "ReplayInboxDeliveries", rid));
                let fp = Fingerprint::new().with("parent", &id).with(
                    "states",
                    &states.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                );
                self.app
                    .replay_deliveries((&idem, &fp), &id, None, &states, &|n| {
                        Ok(pb::ReplayInboxDeliveriesResponse {
                            replayed: i64::try_from(n).unwrap_or(i64::MAX),
                        })
                    })
                    .await
            }
            .await,
        )
    }
}
