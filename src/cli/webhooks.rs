//! The command line's webhook commands: the same use cases as `WebhookService`, on the
//! database directly. Secrets come on standard input, never as arguments.

use super::{Printed, once, secret_from_stdin};
use crate::app::App;
use crate::app::error::AppResult;
use crate::app::webhooks::{SubscriptionPatch, SubscriptionView};
use crate::config::WebhookCommand;
use crate::domain::names::{ResourceId, ShortText};
use crate::domain::webhook::{AlertKind, DestinationPolicy, SubscriptionSpec};
use crate::store::{Store, WebhookState};

fn shown(v: &SubscriptionView) -> AppResult<Printed<SubscriptionView>> {
    Ok(Printed(v.clone()))
}

fn id(s: &str) -> Result<ResourceId, String> {
    ResourceId::parse(s.strip_prefix("webhookSubscriptions/").unwrap_or(s))
        .map_err(|e| format!("{s}: {e}"))
}

/// What `show` prints.
pub fn describe(v: &SubscriptionView) -> Vec<String> {
    let state = v.state.as_ref();
    let mut out = vec![
        format!(
            "webhookSubscriptions/{}\t{}\t{}{}",
            v.version.id,
            v.spec.url,
            v.spec
                .organization
                .as_ref()
                .map(|o| format!("organizations/{o}"))
                .unwrap_or_else(|| "every organisation".into()),
            if v.version.archived { " (deleted)" } else { "" }
        ),
        format!(
            "  kinds: {}",
            v.spec
                .kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ];
    match state.and_then(|s| s.disabled_reason.as_deref()) {
        Some(why) => out.push(format!("  disabled: {why}")),
        None if !v.spec.enabled => out.push("  disabled".into()),
        None => out.push("  enabled".into()),
    }
    if let Some(since) = state.and_then(|s| s.failing_since) {
        out.push(format!("  failing since {}", since.to_rfc3339()));
    }
    for s in &v.secrets {
        out.push(format!(
            "  secret {} (added {})",
            s.fingerprint,
            s.created_at.to_rfc3339()
        ));
    }
    out
}

pub async fn run<S: Store>(app: &mut App<S>, command: WebhookCommand) -> Result<(), String> {
    let text = |e: crate::app::error::AppError| e.to_string();
    match command {
        WebhookCommand::Create {
            id: sub,
            url,
            organization,
            kinds,
            display_name,
            allow_http,
            allow_private,
            ..
        } => {
            app.webhook_destinations = DestinationPolicy {
                allow_http,
                allow_private,
            };
            let sub = id(&sub)?;
            let organization = organization
                .map(|o| {
                    ResourceId::parse(o.strip_prefix("organizations/").unwrap_or(&o))
                        .map_err(|e| format!("--org: {e}"))
                })
                .transpose()?;
            let mut parsed = kinds
                .iter()
                .map(|k| {
                    AlertKind::parse(k.trim()).ok_or_else(|| {
                        format!("--kind {k}: warning, breach, escalation, move or retraction")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            parsed.sort();
            parsed.dedup();
            let display = ShortText::parse(display_name.as_deref().unwrap_or(sub.as_str()))
                .map_err(|e| format!("--display-name: {e}"))?;
            let spec = SubscriptionSpec {
                organization,
                kinds: parsed,
                url,
                enabled: true,
            };
            let secret = secret_from_stdin()?;
            let (idem, fp) = once("CreateWebhookSubscription");
            let v = app
                .create_subscription((&idem, &fp), &sub, &display, &spec, &[secret], &shown)
                .await
                .map_err(text)?;
            describe(&v.0).iter().for_each(|l| println!("{l}"));
        }
        WebhookCommand::List { .. } => {
            let mut token = String::new();
            loop {
                let (page, next) = app
                    .list_subscriptions(None, &|_| true, 1000, &token, true)
                    .await
                    .map_err(text)?;
                for v in &page {
                    if let Some(first) = describe(v).first() {
                        println!("{first}");
                    }
                }
                if next.is_empty() {
                    break;
                }
                token = next;
            }
        }
        WebhookCommand::Show { id: sub, .. } => {
            let v = app.subscription(&id(&sub)?).await.map_err(text)?;
            describe(&v).iter().for_each(|l| println!("{l}"));
        }
        WebhookCommand::AddSecret { id: sub, .. } => {
            let secret = secret_from_stdin()?;
            let (idem, fp) = once("AddWebhookSubscriptionSecret");
            let v = app
                .add_subscription_secret((&idem, &fp), &id(&sub)?, &secret, &shown)
                .await
                .map_err(text)?;
            describe(&v.0).iter().for_each(|l| println!("{l}"));
        }
        WebhookCommand::RemoveSecret {
            id: sub,
            fingerprint,
            ..
        } => {
            let (idem, fp) = once("RemoveWebhookSubscriptionSecret");
            let v = app
                .remove_subscription_secret((&idem, &fp), &id(&sub)?, &fingerprint, &shown)
                .await
                .map_err(text)?;
            describe(&v.0).iter().for_each(|l| println!("{l}"));
        }
        WebhookCommand::Deliveries {
            id: sub,
            states,
            limit,
            ..
        } => {
            let states = states
                .iter()
                .map(|s| {
                    WebhookState::parse(s)
                        .ok_or_else(|| format!("--state {s}: pending, delivered or dead"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (rows, _) = app
                .webhook_deliveries(&id(&sub)?, &states, limit.clamp(1, 1000), "")
                .await
                .map_err(text)?;
            for r in rows {
                println!(
                    "{}\t{}\t{}\ttickets/{}\t{} attempts\t{}",
                    r.alert_id,
                    r.kind,
                    r.state.as_str(),
                    r.ticket_id,
                    r.attempts,
                    r.last_error.unwrap_or_default()
                );
            }
        }
        WebhookCommand::Replay { id: sub, alert, .. } => {
            let (idem, fp) = once("ReplayWebhookDelivery");
            let r = app
                .replay_webhook((&idem, &fp), &id(&sub)?, alert, &|r| Ok(Printed(r.clone())))
                .await
                .map_err(text)?;
            println!("alert {} is {} again", r.0.alert_id, r.0.state.as_str());
        }
        WebhookCommand::Enable { id: sub, .. } => {
            let patch = SubscriptionPatch {
                enabled: Some(true),
                ..SubscriptionPatch::default()
            };
            let (idem, fp) = once("UpdateWebhookSubscription");
            let v = app
                .update_subscription((&idem, &fp), &id(&sub)?, &patch, None, &shown)
                .await
                .map_err(text)?;
            describe(&v.0).iter().for_each(|l| println!("{l}"));
        }
        WebhookCommand::Delete { id: sub, .. } => {
            let (idem, fp) = once("DeleteWebhookSubscription");
            let v = app
                .delete_subscription((&idem, &fp), &id(&sub)?, &shown)
                .await
                .map_err(text)?;
            describe(&v.0).iter().for_each(|l| println!("{l}"));
        }
    }
    Ok(())
}

/// The database arguments of a webhook command.
pub fn database(c: &WebhookCommand) -> &crate::config::DatabaseArgs {
    match c {
        WebhookCommand::Create { database, .. }
        | WebhookCommand::List { database }
        | WebhookCommand::Show { database, .. }
        | WebhookCommand::AddSecret { database, .. }
        | WebhookCommand::RemoveSecret { database, .. }
        | WebhookCommand::Deliveries { database, .. }
        | WebhookCommand::Replay { database, .. }
        | WebhookCommand::Enable { database, .. }
        | WebhookCommand::Delete { database, .. } => database,
    }
}
