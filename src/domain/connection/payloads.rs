//! What a provider's delivery holds: its id (unique per connection, what retries are
//! deduplicated on) and a snapshot of one ticket at the source. A HubSpot delivery is a
//! batch: it is split into one delivery per event, each with its `eventId`.
//!
//! Bodies read (docs/integrations.md has the templates to paste):
//! - zendesk: the trigger's JSON body (`ticket_id`, `status`, `priority`, `type`,
//!   `created_at`, `updated_at`, `requester`), or an event subscription's
//!   (`detail` with the ticket's `id`, `status`, `priority`, `type`, `created_at`,
//!   `updated_at`);
//! - hubspot: `ticket.creation` and `ticket.propertyChange` events (`hs_pipeline_stage`
//!   is the status, `hs_ticket_priority` the priority, `hs_ticket_category` the request
//!   type; other properties change nothing here);
//! - jira: `jira:issue_created` / `jira:issue_updated` (the issue's key, `status.name`,
//!   `priority.name`, `issuetype.name`, `created`, `updated`);
//! - freshdesk: the automation's JSON body (`ticket_id`, `status`, `priority`, `type`,
//!   `requester`, and `updated_at` if the rule sends it; otherwise the delivery's arrival
//!   is the snapshot's time: Freshdesk says nothing better);
//! - generic: `external_id`, `status`, `priority`, `request_type`, `received_time`,
//!   `updated_time` (required), `requested_by`.

use chrono::{DateTime, NaiveDateTime, TimeZone as _, Utc};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::Provider;
use super::signatures::{Signed, hex};
use crate::domain::names::ExternalId;

/// The longest delivery id kept as sent; a longer one is kept as its hash.
pub const MAX_DELIVERY_ID: usize = 100;
/// The most events a HubSpot batch may hold (HubSpot sends at most 100).
pub const MAX_BATCH_EVENTS: usize = 1_000;

/// One delivery to keep in the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub body: Vec<u8>,
}

/// A ticket as the source showed it at `at`: the source's own values, not yet mapped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub external_id: Option<ExternalId>,
    pub at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub request_type: Option<String>,
    pub requested_by: Option<ExternalId>,
    /// The source deleted the ticket, or the event is about something servicelevel does
    /// not follow: nothing to apply.
    pub ignored: Option<String>,
}

/// Why a delivery cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

fn err(s: impl Into<String>) -> PayloadError {
    PayloadError(s.into())
}

fn body_hash(body: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(body)))
}

/// A provider's id for a delivery, or the body's hash when it sends none (or one too
/// long or unprintable to keep).
fn delivery_id(given: Option<&str>, body: &[u8]) -> String {
    match given.map(str::trim) {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_DELIVERY_ID
                && id.chars().all(|c| c.is_ascii_graphic()) =>
        {
            id.to_string()
        }
        _ => body_hash(body),
    }
}

/// The deliveries a request holds.
pub fn split(provider: Provider, d: &Signed<'_>) -> Result<Vec<Delivery>, PayloadError> {
    let one = |header: Option<&str>| {
        Ok(vec![Delivery {
            id: delivery_id(header, d.body),
            body: d.body.to_vec(),
        }])
    };
    match provider {
        Provider::Zendesk => one(d.header("x-zendesk-webhook-invocation-id")),
        Provider::Jira => one(d.header("x-atlassian-webhook-identifier")),
        Provider::Freshdesk => one(None),
        Provider::Generic => one(d.header("webhook-id")),
        Provider::Hubspot => {
            let Ok(Value::Array(events)) = serde_json::from_slice::<Value>(d.body) else {
                // Kept whole, to fail with its reason when applied.
                return one(None);
            };
            if events.len() > MAX_BATCH_EVENTS {
                return Err(err(format!(
                    "a HubSpot batch of {} events: at most {MAX_BATCH_EVENTS}",
                    events.len()
                )));
            }
            events
                .iter()
                .map(|e| {
                    let body = serde_json::to_vec(e).map_err(|e| err(e.to_string()))?;
                    let id = match &e["eventId"] {
                        Value::Number(n) => Some(n.to_string()),
                        Value::String(s) => Some(s.clone()),
                        _ => None,
                    };
                    Ok(Delivery {
                        id: delivery_id(id.as_deref(), &body),
                        body,
                    })
                })
                .collect()
        }
    }
}

/// A text field: absent, null, empty and Zendesk's "-" placeholder all mean none.
fn text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s != "-").then_some(s)
}

/// An instant as sources write them: RFC 3339, Jira's `2026-03-09T10:00:00.000+0000`,
/// or milliseconds since the epoch.
pub fn instant(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        Value::String(s) => {
            let s = s.trim();
            DateTime::parse_from_rfc3339(s)
                .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                        .ok()
                        .map(|t| t.and_utc())
                })
                .or_else(|| {
                    s.parse::<i64>()
                        .ok()
                        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
                })
        }
        _ => None,
    }
}

fn external(field: &str, v: Option<String>) -> Result<Option<ExternalId>, PayloadError> {
    v.map(|s| ExternalId::parse(&s).map_err(|e| err(format!("{field}: {e}"))))
        .transpose()
}

/// Reads one delivery's snapshot. `arrived` is when it arrived, the snapshot's time for a
/// source that sends none.
pub fn read(
    provider: Provider,
    body: &[u8],
    arrived: DateTime<Utc>,
) -> Result<Snapshot, PayloadError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| err(format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(err("the body is not a JSON object"));
    }
    let s = match provider {
        Provider::Zendesk => zendesk(&v)?,
        Provider::Hubspot => hubspot(&v)?,
        Provider::Jira => jira(&v)?,
        Provider::Freshdesk => {
            let mut s = flat(
                &v,
                "ticket_id",
                "type",
                "updated_at",
                "created_at",
                "requester",
            )?;
            s.at = s.at.or(Some(arrived));
            s
        }
        Provider::Generic => flat(
            &v,
            "external_id",
            "request_type",
            "updated_time",
            "received_time",
            "requested_by",
        )?,
    };
    if s.ignored.is_none() {
        if s.external_id.is_none() {
            return Err(err("the ticket's id is missing"));
        }
        if s.at.is_none() {
            return Err(err(
                "the time of the ticket's state is missing or unreadable",
            ));
        }
    }
    Ok(s)
}

/// A body with the ticket's fields at the top.
fn flat(
    v: &Value,
    id: &str,
    kind: &str,
    at: &str,
    created: &str,
    requester: &str,
) -> Result<Snapshot, PayloadError> {
    Ok(Snapshot {
        external_id: external(id, text(&v[id]))?,
        at: instant(&v[at]),
        created_at: instant(&v[created]),
        status: text(&v["status"]),
        priority: text(&v["priority"]),
        request_type: text(&v[kind]),
        requested_by: external(requester, text(&v[requester]))?,
        ignored: None,
    })
}

fn zendesk(v: &Value) -> Result<Snapshot, PayloadError> {
    let detail = &v["detail"];
    if detail.is_object() {
        let mut s = flat(
            detail,
            "id",
            "type",
            "updated_at",
            "created_at",
            "requester_id",
        )?;
        s.at = s.at.or_else(|| instant(&v["time"]));
        if v["type"].as_str().is_some_and(|t| {
            t.ends_with("ticket.soft_deleted") || t.ends_with("ticket.permanently_deleted")
        }) {
            s.ignored = Some("the ticket was deleted at the source".into());
        }
        return Ok(s);
    }
    flat(
        v,
        "ticket_id",
        "type",
        "updated_at",
        "created_at",
        "requester",
    )
}

fn hubspot(v: &Value) -> Result<Snapshot, PayloadError> {
    let kind = v["subscriptionType"].as_str().unwrap_or_default();
    let mut s = Snapshot {
        external_id: external("objectId", text(&v["objectId"]))?,
        at: instant(&v["occurredAt"]),
        ..Snapshot::default()
    };
    match kind {
        "ticket.creation" => s.created_at = s.at,
        "ticket.propertyChange" => {
            let value = text(&v["propertyValue"]);
            match v["propertyName"].as_str().unwrap_or_default() {
                "hs_pipeline_stage" => s.status = value,
                "hs_ticket_priority" => s.priority = value,
                "hs_ticket_category" => s.request_type = value,
                other => {
                    s.ignored = Some(format!("the property {other:?} is not followed"));
                }
            }
        }
        "ticket.deletion" => s.ignored = Some("the ticket was deleted at the source".into()),
        other => {
            return Err(err(format!(
                "subscriptionType {other:?}: only ticket.creation, ticket.propertyChange and ticket.deletion are read"
            )));
        }
    }
    Ok(s)
}

fn jira(v: &Value) -> Result<Snapshot, PayloadError> {
    let event = v["webhookEvent"].as_str().unwrap_or_default();
    let issue = &v["issue"];
    let fields = &issue["fields"];
    let mut s = Snapshot {
        external_id: external("issue.key", text(&issue["key"]))?,
        at: instant(&fields["updated"]).or_else(|| instant(&v["timestamp"])),
        created_at: instant(&fields["created"]),
        status: text(&fields["status"]["name"]),
        priority: text(&fields["priority"]["name"]),
        request_type: text(&fields["issuetype"]["name"]),
        requested_by: external(
            "issue.fields.reporter",
            text(&fields["reporter"]["emailAddress"])
                .or_else(|| text(&fields["reporter"]["accountId"])),
        )?,
        ignored: None,
    };
    match event {
        "jira:issue_created" | "jira:issue_updated" => {}
        "jira:issue_deleted" => s.ignored = Some("the issue was deleted at the source".into()),
        other => {
            return Err(err(format!(
                "webhookEvent {other:?}: only jira:issue_created, jira:issue_updated and jira:issue_deleted are read"
            )));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .with_timezone(&Utc)
    }

    fn signed<'a>(h: &'a [(String, String)], body: &'a [u8]) -> Signed<'a> {
        Signed {
            method: "POST",
            url: "https://x",
            headers: h,
            body,
        }
    }

    #[test]
    fn hubspot_batches_split_per_event() {
        let body = br#"[{"eventId":11,"subscriptionType":"ticket.creation","objectId":5,"occurredAt":1764950400000},
                        {"eventId":"12","subscriptionType":"ticket.propertyChange","objectId":5,"propertyName":"hs_pipeline_stage","propertyValue":"2","occurredAt":1764950460000}]"#;
        let parts = split(Provider::Hubspot, &signed(&[], body)).expect("splits");
        assert_eq!(
            parts.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["11", "12"]
        );
        let s = read(Provider::Hubspot, &parts[1].body, Utc::now()).expect("reads");
        assert_eq!(s.status.as_deref(), Some("2"));
        assert_eq!(s.external_id.map(|e| e.to_string()), Some("5".to_string()));
        assert_eq!(s.at, Some(at("2025-12-05T16:01:00Z")));
        let created = read(Provider::Hubspot, &parts[0].body, Utc::now()).expect("reads");
        assert_eq!(created.created_at, created.at);
        let not_a_batch = split(Provider::Hubspot, &signed(&[], b"{}")).expect("kept whole");
        assert_eq!(not_a_batch.len(), 1);
        assert!(not_a_batch[0].id.starts_with("sha256:"));
    }

    #[test]
    fn delivery_ids_fall_back_to_the_body_hash() {
        let h = vec![(
            "x-atlassian-webhook-identifier".to_string(),
            "3c2f-1".to_string(),
        )];
        let d = split(Provider::Jira, &signed(&h, b"{}")).expect("one");
        assert_eq!(d[0].id, "3c2f-1");
        let fresh = split(Provider::Freshdesk, &signed(&h, b"{}")).expect("one");
        assert_eq!(
            fresh[0].id,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let long = vec![("webhook-id".to_string(), "x".repeat(101))];
        assert!(
            split(Provider::Generic, &signed(&long, b"{}")).expect("one")[0]
                .id
                .starts_with("sha256:")
        );
    }

    #[test]
    fn zendesk_trigger_and_event_bodies() {
        let trigger = br#"{"ticket_id":"4711","status":"Open","priority":"-","type":"Incident",
            "created_at":"2026-03-09T15:30:00Z","updated_at":"2026-03-09T15:40:00Z","requester":"ann@acme.example"}"#;
        let s = read(Provider::Zendesk, trigger, Utc::now()).expect("reads");
        assert_eq!(s.status.as_deref(), Some("Open"));
        assert_eq!(s.priority, None, "Zendesk's '-' is no priority");
        assert_eq!(s.at, Some(at("2026-03-09T15:40:00Z")));
        assert_eq!(s.created_at, Some(at("2026-03-09T15:30:00Z")));
        let event = br#"{"type":"zen:event-type:ticket.status_changed","time":"2026-03-09T15:41:00Z",
            "detail":{"id":"4711","status":"SOLVED","priority":"HIGH","type":"INCIDENT","created_at":"2026-03-09T15:30:00Z"}}"#;
        let s = read(Provider::Zendesk, event, Utc::now()).expect("reads");
        assert_eq!(s.status.as_deref(), Some("SOLVED"));
        assert_eq!(s.at, Some(at("2026-03-09T15:41:00Z")));
    }

    #[test]
    fn jira_issues() {
        let body = br#"{"timestamp":1764950400000,"webhookEvent":"jira:issue_updated",
            "issue":{"key":"SD-12","fields":{"status":{"name":"In Progress"},"priority":{"name":"High"},
            "issuetype":{"name":"Incident"},"created":"2026-03-09T10:00:00.000+0000","updated":"2026-03-09T11:00:00.000+0100"}}}"#;
        let s = read(Provider::Jira, body, Utc::now()).expect("reads");
        assert_eq!(
            s.external_id.map(|e| e.to_string()),
            Some("SD-12".to_string())
        );
        assert_eq!(s.at, Some(at("2026-03-09T10:00:00Z")));
        assert_eq!(s.request_type.as_deref(), Some("Incident"));
        let other = br#"{"webhookEvent":"comment_created","issue":{"key":"SD-12"}}"#;
        assert!(read(Provider::Jira, other, Utc::now()).is_err());
    }

    #[test]
    fn freshdesk_without_a_time_takes_the_arrival() {
        let body =
            br#"{"ticket_id":"88","status":"Pending","priority":"Urgent","type":"Question"}"#;
        let arrived = at("2026-03-09T12:00:00Z");
        let s = read(Provider::Freshdesk, body, arrived).expect("reads");
        assert_eq!(s.at, Some(arrived));
    }

    #[test]
    fn generic_needs_its_time_and_id() {
        let arrived = Utc::now();
        assert!(read(Provider::Generic, br#"{"external_id":"a"}"#, arrived).is_err());
        assert!(
            read(
                Provider::Generic,
                br#"{"updated_time":"2026-03-09T12:00:00Z"}"#,
                arrived
            )
            .is_err()
        );
        assert!(read(Provider::Generic, b"[1]", arrived).is_err());
        assert!(read(Provider::Generic, b"not json", arrived).is_err());
        let ok = read(
            Provider::Generic,
            br#"{"external_id":"a","status":"open","updated_time":"2026-03-09T12:00:00Z"}"#,
            arrived,
        )
        .expect("reads");
        assert_eq!(ok.status.as_deref(), Some("open"));
    }
}
