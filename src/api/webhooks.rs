//! The gRPC transport of `WebhookService`: alert webhook subscriptions and their
//! deliveries (`app::webhooks`).

use tonic::{Request, Response, Status};

use super::catalog::{field_mask, key, new_id, secret_hash};
use super::convert::{self as cv};
use super::error::{AppError, AppResult, Check, respond};
use super::pb;
use super::{Api, OrgScope, client_of};
use crate::app::answer::Idempotency;
use crate::app::fingerprint::Fingerprint;
use crate::app::webhooks::SubscriptionView;
use crate::domain::names::ResourceId;
use crate::store::{ResourceKind, Store};

fn render(v: &SubscriptionView) -> AppResult<pb::WebhookSubscription> {
    Ok(cv::subscription_to_pb(v))
}

fn subscription_id(c: &mut Check, field: &str, name: &str) -> Option<ResourceId> {
    cv::resource_name(c, field, name, ResourceKind::Subscription)
}

impl<S: Store> Api<S> {
    /// For a caller restricted to organisations, a subscription of another organisation
    /// (or of all of them) does not exist (NOT_FOUND, as for one that does not).
    async fn allow_subscription(&self, orgs: &OrgScope, name: &str) -> AppResult<()> {
        if orgs.allows_everything() {
            return Ok(());
        }
        let id = name.strip_prefix("webhookSubscriptions/").unwrap_or(name);
        let id = id.split('/').next().unwrap_or(id);
        let Ok(id) = ResourceId::parse(id) else {
            return Ok(());
        };
        match self.app.subscription(&id).await {
            Ok(v)
                if v.spec
                    .organization
                    .as_ref()
                    .is_some_and(|o| orgs.allows(o.as_str())) =>
            {
                Ok(())
            }
            Ok(_) | Err(AppError::NotFound(_)) => {
                Err(AppError::NotFound(format!("webhookSubscriptions/{id}")))
            }
            Err(e) => Err(e),
        }
    }
}

#[tonic::async_trait]
impl<S: Store> pb::webhook_service_server::WebhookService for Api<S> {
    async fn create_webhook_subscription(
        &self,
        req: Request<pb::CreateWebhookSubscriptionRequest>,
    ) -> Result<Response<pb::WebhookSubscription>, Status> {
        let org = req
            .get_ref()
            .webhook_subscription
            .as_ref()
            .map(|s| s.organization.clone())
            .unwrap_or_default();
        OrgScope::of(&req).allow(&org)?;
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let id = new_id(
            &mut c,
            "webhook_subscription_id",
            &r.webhook_subscription_id,
        );
        let sub = cv::subscription(
            &mut c,
            "webhook_subscription",
            r.webhook_subscription.as_ref(),
        );
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(sub).zip(rid));
        respond(
            async {
                let ((id, (display, spec)), rid) = parsed?;
                let idem = Idempotency::new(key(&client, "CreateWebhookSubscription", rid));
                let fp = Fingerprint::new()
                    .with("webhook_subscription_id", &id)
                    .with("display_name", &display)
                    .with("webhook_subscription", &spec)
                    .with(
                        "secrets",
                        &r.secrets.iter().map(|s| secret_hash(s)).collect::<Vec<_>>(),
                    );
                self.app
                    .create_subscription((&idem, &fp), &id, &display, &spec, &r.secrets, &render)
                    .await
            }
            .await,
        )
    }

    async fn get_webhook_subscription(
        &self,
        req: Request<pb::GetWebhookSubscriptionRequest>,
    ) -> Result<Response<pb::WebhookSubscription>, Status> {
        let orgs = OrgScope::of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_subscription(&orgs, &r.name).await?;
                let mut c = Check::new();
                let id = subscription_id(&mut c, "name", &r.name);
                let id = c.finish(id)?;
                Ok(cv::subscription_to_pb(&self.app.subscription(&id).await?))
            }
            .await,
        )
    }

    async fn list_webhook_subscriptions(
        &self,
        req: Request<pb::ListWebhookSubscriptionsRequest>,
    ) -> Result<Response<pb::ListWebhookSubscriptionsResponse>, Status> {
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
                    .list_subscriptions(
                        org.as_ref(),
                        &|o| match o {
                            Some(o) => orgs.allows(o.as_str()),
                            None => orgs.allows_everything(),
                        },
                        size,
                        &r.page_token,
                        r.show_deleted,
                    )
                    .await?;
                Ok(pb::ListWebhookSubscriptionsResponse {
                    webhook_subscriptions: items.iter().map(cv::subscription_to_pb).collect(),
                    next_page_token: next,
                })
            }
            .await,
        )
    }

    async fn update_webhook_subscription(
        &self,
        req: Request<pb::UpdateWebhookSubscriptionRequest>,
    ) -> Result<Response<pb::WebhookSubscription>, Status> {
        let orgs = OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        let sub = r.webhook_subscription.clone().unwrap_or_default();
        respond(
            async {
                self.allow_subscription(&orgs, &sub.name).await?;
                let mut c = Check::new();
                let id = subscription_id(&mut c, "webhook_subscription.name", &sub.name);
                let fields = field_mask(
                    &mut c,
                    r.update_mask.as_ref(),
                    "webhook_subscription.",
                    &cv::SUBSCRIPTION_FIELDS,
                    &cv::SUBSCRIPTION_IGNORED,
                );
                let before = c.count();
                let patch = fields.as_ref().map(|f| {
                    cv::subscription_patch(&mut c, "webhook_subscription", &sub, f.as_deref())
                });
                let patch = patch.filter(|_| c.count() == before);
                let rid = cv::request_id(&mut c, "request_id", &r.request_id);
                let expected = cv::expected_version(&mut c, "expected_version", r.expected_version);
                let (((id, patch), rid), expected) =
                    c.finish(id.zip(patch).zip(rid).zip(expected))?;
                let idem = Idempotency::new(key(&client, "UpdateWebhookSubscription", rid));
                let fp = Fingerprint::new()
                    .with("name", &id)
                    .with("update_mask", &fields)
                    .with("webhook_subscription", &patch)
                    .with("expected_version", &expected);
                self.app
                    .update_subscription((&idem, &fp), &id, &patch, expected, &render)
                    .await
            }
            .await,
        )
    }

    async fn delete_webhook_subscription(
        &self,
        req: Request<pb::DeleteWebhookSubscriptionRequest>,
    ) -> Result<Response<pb::WebhookSubscription>, Status> {
        let orgs = OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_subscription(&orgs, &r.name).await?;
                let mut c = Check::new();
                let id = subscription_id(&mut c, "name", &r.name);
                let rid = cv::request_id(&mut c, "request_id", &r.request_id);
                let (id, rid) = c.finish(id.zip(rid))?;
                let idem = Idempotency::new(key(&client, "DeleteWebhookSubscription", rid));
                let fp = Fingerprint::new().with("name", &id);
                self.app
                    .delete_subscription((&idem, &fp), &id, &render)
                    .await
            }
            .await,
        )
    }

    async fn add_webhook_subscription_secret(
        &self,
        req: Request<pb::AddWebhookSubscriptionSecretRequest>,
    ) -> Result<Response<pb::WebhookSubscription>, Status> {
        let orgs = OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_subscription(&orgs, &r.name).await?;
                let mut c = Check::new();
                let id = subscription_id(&mut c, "name", &r.name);
                if r.secret.is_empty() {
                    c.fail("secret", "is required");
                }
                let rid = cv::request_id(&mut c, "request_id", &r.request_id);
                let (id, rid) = c.finish(id.zip(rid))?;
                let idem = Idempotency::new(key(&client, "AddWebhookSubscriptionSecret", rid));
                let fp = Fingerprint::new()
                    .with("name", &id)
                    .with("secret", &secret_hash(&r.secret));
                self.app
                    .add_subscription_secret((&idem, &fp), &id, &r.secret, &render)
                    .await
            }
            .await,
        )
    }

    async fn remove_webhook_subscription_secret(
        &self,
        req: Request<pb::RemoveWebhookSubscriptionSecretRequest>,
    ) -> Result<Response<pb::WebhookSubscription>, Status> {
        let orgs = OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_subscription(&orgs, &r.name).await?;
                let mut c = Check::new();
                let id = subscription_id(&mut c, "name", &r.name);
                if r.fingerprint.is_empty() || r.fingerprint.len() > 64 {
                    c.fail(
                        "fingerprint",
                        "must be a secret's fingerprint, as the subscription shows it",
                    );
                }
                let rid = cv::request_id(&mut c, "request_id", &r.request_id);
                let (id, rid) = c.finish(id.zip(rid))?;
                let idem = Idempotency::new(key(&client, "RemoveWebhookSubscriptionSecret", rid));
                let fp = Fingerprint::new()
                    .with("name", &id)
                    .with("fingerprint", &r.fingerprint);
                self.app
                    .remove_subscription_secret((&idem, &fp), &id, &r.fingerprint, &render)
                    .await
            }
            .await,
        )
    }

    async fn list_webhook_deliveries(
        &self,
        req: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        let orgs = OrgScope::of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_subscription(&orgs, &r.parent).await?;
                let mut c = Check::new();
                let id = subscription_id(&mut c, "parent", &r.parent);
                let size = cv::page_size(&mut c, "page_size", r.page_size);
                let states = cv::webhook_states(&mut c, "states", &r.states);
                let ((id, size), states) = c.finish(id.zip(size).zip(states))?;
                let (rows, next) = self
                    .app
                    .webhook_deliveries(&id, &states, size, &r.page_token)
                    .await?;
                Ok(pb::ListWebhookDeliveriesResponse {
                    deliveries: rows.iter().map(cv::webhook_to_pb).collect(),
                    next_page_token: next,
                })
            }
            .await,
        )
    }

    async fn get_webhook_delivery(
        &self,
        req: Request<pb::GetWebhookDeliveryRequest>,
    ) -> Result<Response<pb::WebhookDelivery>, Status> {
        let orgs = OrgScope::of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_subscription(&orgs, &r.name).await?;
                let mut c = Check::new();
                let name = cv::webhook_name(&mut c, "name", &r.name);
                let (sub, alert) = c.finish(name)?;
                Ok(cv::webhook_to_pb(
                    &self.app.webhook_delivery(&sub, alert).await?,
                ))
            }
            .await,
        )
    }

    async fn replay_webhook_delivery(
        &self,
        req: Request<pb::ReplayWebhookDeliveryRequest>,
    ) -> Result<Response<pb::WebhookDelivery>, Status> {
        let orgs = OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        respond(
            async {
                self.allow_subscription(&orgs, &r.name).await?;
                let mut c = Check::new();
                let name = cv::webhook_name(&mut c, "name", &r.name);
                let rid = cv::request_id(&mut c, "request_id", &r.request_id);
                let ((sub, alert), rid) = c.finish(name.zip(rid))?;
                let idem = Idempotency::new(key(&client, "ReplayWebhookDelivery", rid));
                let fp = Fingerprint::new()
                    .with("subscription", &sub)
                    .with("alert_id", &alert);
                self.app
                    .replay_webhook((&idem, &fp), &sub, alert, &|row| Ok(cv::webhook_to_pb(row)))
                    .await
            }
            .await,
        )
    }
}
