//! Alert webhook subscriptions and their deliveries, both ways.

use super::{display_name, limited, name_of, opt_timestamp, resource_name, timestamp};
use crate::api::error::Check;
use crate::api::pb;
use crate::app::webhooks::{SubscriptionPatch, SubscriptionView};
use crate::domain::names::{ResourceId, ShortText};
use crate::domain::webhook::{AlertKind, SubscriptionSpec};
use crate::store::{ResourceKind, WebhookRow, WebhookState};

/// The fields of a subscription an update mask may name.
pub const SUBSCRIPTION_FIELDS: [&str; 4] = ["display_name", "alert_kinds", "url", "enabled"];

/// Output-only or fixed fields: ignored in a mask (AIP-203).
pub const SUBSCRIPTION_IGNORED: [&str; 8] = [
    "name",
    "organization",
    "disabled_reason",
    "failing_since_time",
    "secrets",
    "version",
    "deleted",
    "create_time",
];

pub fn alert_kind_to_pb(k: AlertKind) -> pb::AlertKind {
    match k {
        AlertKind::Warning => pb::AlertKind::Warning,
        AlertKind::Breach => pb::AlertKind::Breach,
        AlertKind::Escalation => pb::AlertKind::Escalation,
        AlertKind::Move => pb::AlertKind::Move,
        AlertKind::Retraction => pb::AlertKind::Retraction,
    }
}

/// At least one kind, each once.
fn alert_kinds(c: &mut Check, field: &str, v: &[i32]) -> Option<Vec<AlertKind>> {
    let before = c.count();
    let mut out: Vec<AlertKind> = Vec::new();
    for (i, k) in limited(c, field, v, AlertKind::ALL.len() * 2)
        .iter()
        .enumerate()
    {
        let kind = match pb::AlertKind::try_from(*k) {
            Ok(pb::AlertKind::Warning) => Some(AlertKind::Warning),
            Ok(pb::AlertKind::Breach) => Some(AlertKind::Breach),
            Ok(pb::AlertKind::Escalation) => Some(AlertKind::Escalation),
            Ok(pb::AlertKind::Move) => Some(AlertKind::Move),
            Ok(pb::AlertKind::Retraction) => Some(AlertKind::Retraction),
            Ok(pb::AlertKind::Unspecified) | Err(_) => {
                c.fail(
                    format!("{field}[{i}]"),
                    "must be ALERT_KIND_WARNING, _BREACH, _ESCALATION, _MOVE or _RETRACTION",
                );
                None
            }
        };
        if let Some(k) = kind
            && !out.contains(&k)
        {
            out.push(k);
        }
    }
    if c.count() == before && out.is_empty() {
        c.fail(field, "name at least one alert kind");
    }
    out.sort();
    (c.count() == before).then_some(out)
}

fn url(c: &mut Check, field: &str, u: &str) -> Option<String> {
    if u.is_empty() {
        c.fail(field, "is required");
        return None;
    }
    // Checked against the server's destination policy by the use case.
    Some(u.to_string())
}

/// A new subscription: its display name and spec.
pub fn subscription(
    c: &mut Check,
    field: &str,
    s: Option<&pb::WebhookSubscription>,
) -> Option<(ShortText, SubscriptionSpec)> {
    let Some(s) = s else {
        c.fail(field, "is required");
        return None;
    };
    let display = display_name(c, &format!("{field}.display_name"), &s.display_name);
    let organization = if s.organization.is_empty() {
        Some(None)
    } else {
        resource_name(
            c,
            &format!("{field}.organization"),
            &s.organization,
            ResourceKind::Organization,
        )
        .map(Some)
    };
    let kinds = alert_kinds(c, &format!("{field}.alert_kinds"), &s.alert_kinds);
    let url = url(c, &format!("{field}.url"), &s.url);
    let (((display, organization), kinds), url) = display.zip(organization).zip(kinds).zip(url)?;
    Some((
        display,
        SubscriptionSpec {
            organization,
            kinds,
            url,
            // A new subscription runs; `enabled: false` on create is not a state to start in.
            enabled: true,
        },
    ))
}

/// The fields an update sets (`None`: all).
pub fn subscription_patch(
    c: &mut Check,
    field: &str,
    s: &pb::WebhookSubscription,
    fields: Option<&[String]>,
) -> SubscriptionPatch {
    let wants = |f: &str| fields.is_none_or(|fs| fs.iter().any(|x| x == f));
    SubscriptionPatch {
        display_name: if wants("display_name") {
            display_name(c, &format!("{field}.display_name"), &s.display_name)
        } else {
            None
        },
        kinds: if wants("alert_kinds") {
            alert_kinds(c, &format!("{field}.alert_kinds"), &s.alert_kinds)
        } else {
            None
        },
        url: if wants("url") {
            url(c, &format!("{field}.url"), &s.url)
        } else {
            None
        },
        enabled: wants("enabled").then_some(s.enabled),
    }
}

pub fn subscription_to_pb(v: &SubscriptionView) -> pb::WebhookSubscription {
    let state = v.state.as_ref();
    let disabled_reason = state
        .and_then(|s| s.disabled_reason.clone())
        .unwrap_or_default();
    pb::WebhookSubscription {
        name: name_of(ResourceKind::Subscription, &v.version.id),
        display_name: v.version.display_name.clone(),
        organization: v
            .spec
            .organization
            .as_ref()
            .map(|o| name_of(ResourceKind::Organization, o))
            .unwrap_or_default(),
        alert_kinds: v
            .spec
            .kinds
            .iter()
            .map(|k| alert_kind_to_pb(*k) as i32)
            .collect(),
        url: v.spec.url.clone(),
        enabled: v.spec.enabled && disabled_reason.is_empty(),
        disabled_reason,
        failing_since_time: opt_timestamp(state.and_then(|s| s.failing_since)),
        secrets: v
            .secrets
            .iter()
            .map(|s| pb::WebhookSecret {
                fingerprint: s.fingerprint.clone(),
                create_time: Some(timestamp(s.created_at)),
            })
            .collect(),
        version: v.version.version as i32,
        deleted: v.version.archived,
        create_time: Some(timestamp(v.version.created_at)),
    }
}

pub fn webhook_states(c: &mut Check, field: &str, v: &[i32]) -> Option<Vec<WebhookState>> {
    let before = c.count();
    let mut out: Vec<WebhookState> = Vec::new();
    for (i, s) in limited(c, field, v, WebhookState::ALL.len())
        .iter()
        .enumerate()
    {
        let state = match pb::WebhookDeliveryState::try_from(*s) {
            Ok(pb::WebhookDeliveryState::Pending) => Some(WebhookState::Pending),
            Ok(pb::WebhookDeliveryState::Delivered) => Some(WebhookState::Delivered),
            Ok(pb::WebhookDeliveryState::Dead) => Some(WebhookState::Dead),
            Ok(pb::WebhookDeliveryState::Unspecified) | Err(_) => {
                c.fail(
                    format!("{field}[{i}]"),
                    "must be WEBHOOK_DELIVERY_STATE_PENDING, _DELIVERED or _DEAD",
                );
                None
            }
        };
        if let Some(s) = state
            && !out.contains(&s)
        {
            out.push(s);
        }
    }
    (c.count() == before).then_some(out)
}

pub fn webhook_to_pb(r: &WebhookRow) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        name: format!(
            "webhookSubscriptions/{}/deliveries/{}",
            r.subscription, r.alert_id
        ),
        alert_id: r.alert_id,
        ticket: format!("tickets/{}", r.ticket_id),
        kind: AlertKind::parse(&r.kind)
            .map(alert_kind_to_pb)
            .unwrap_or(pb::AlertKind::Unspecified) as i32,
        state: match r.state {
            WebhookState::Pending => pb::WebhookDeliveryState::Pending,
            WebhookState::Delivered => pb::WebhookDeliveryState::Delivered,
            WebhookState::Dead => pb::WebhookDeliveryState::Dead,
        } as i32,
        attempts: i32::try_from(r.attempts).unwrap_or(i32::MAX),
        last_status: r
            .last_status
            .and_then(|s| i32::try_from(s).ok())
            .unwrap_or(0),
        last_error: r.last_error.clone().unwrap_or_default(),
        record_time: Some(timestamp(r.recorded_at)),
        next_attempt_time: (r.state == WebhookState::Pending).then(|| timestamp(r.next_at)),
        done_time: opt_timestamp(r.done_at),
        payload: r.payload.clone(),
        webhook_id: format!("msg_{}_{}", r.subscription, r.alert_id),
    }
}

/// `webhookSubscriptions/{subscription}/deliveries/{alert}` into its two ids.
pub fn webhook_name(c: &mut Check, field: &str, name: &str) -> Option<(ResourceId, i64)> {
    let parsed = name
        .strip_prefix("webhookSubscriptions/")
        .and_then(|rest| rest.split_once("/deliveries/"))
        .and_then(|(s, a)| Some((s, a.parse::<i64>().ok()?)));
    match parsed {
        Some((sub, alert)) => c.ok(field, ResourceId::parse(sub)).map(|s| (s, alert)),
        None => {
            c.fail(
                field,
                "must be webhookSubscriptions/{subscription}/deliveries/{alert}",
            );
            None
        }
    }
}
