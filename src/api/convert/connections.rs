//! Connections and their inbox deliveries, both ways.

use std::collections::HashMap;

use super::{
    display_name, limited, name_of, opt_timestamp, resource_name, status, status_to_pb, timestamp,
};
use crate::api::error::Check;
use crate::api::pb;
use crate::app::connections::{ConnectionPatch, ConnectionView};
use crate::domain::connection::{ConnectionSpec, Mapping, Provider, public_base_url};
use crate::domain::limits;
use crate::domain::names::{ExternalId, PriorityLabel, RequestType, ShortText};
use crate::store::{DeliveryState, InboxRow, ResourceKind};

/// The fields of a connection an update mask may name.
pub const CONNECTION_FIELDS: [&str; 4] = [
    "display_name",
    "source_system",
    "public_base_url",
    "mapping",
];

/// Output-only or fixed fields: ignored in a mask (AIP-203).
pub const CONNECTION_IGNORED: [&str; 8] = [
    "name",
    "organization",
    "provider",
    "secrets",
    "webhook_path",
    "version",
    "archived",
    "create_time",
];

pub fn provider(c: &mut Check, field: &str, v: i32) -> Option<Provider> {
    match pb::Provider::try_from(v) {
        Ok(pb::Provider::Zendesk) => Some(Provider::Zendesk),
        Ok(pb::Provider::Hubspot) => Some(Provider::Hubspot),
        Ok(pb::Provider::Jira) => Some(Provider::Jira),
        Ok(pb::Provider::Freshdesk) => Some(Provider::Freshdesk),
        Ok(pb::Provider::Generic) => Some(Provider::Generic),
        Ok(pb::Provider::Unspecified) | Err(_) => {
            c.fail(
                field,
                "must be one of PROVIDER_ZENDESK, PROVIDER_HUBSPOT, PROVIDER_JIRA, PROVIDER_FRESHDESK, PROVIDER_GENERIC",
            );
            None
        }
    }
}

fn provider_to_pb(p: Provider) -> pb::Provider {
    match p {
        Provider::Zendesk => pb::Provider::Zendesk,
        Provider::Hubspot => pb::Provider::Hubspot,
        Provider::Jira => pb::Provider::Jira,
        Provider::Freshdesk => pb::Provider::Freshdesk,
        Provider::Generic => pb::Provider::Generic,
    }
}

/// A map's entries in key order (a map's order on the wire means nothing), at most
/// `limits::MAPPING_ENTRIES` of them.
fn entries<'a, V>(
    c: &mut Check,
    field: &str,
    m: &'a HashMap<String, V>,
) -> Vec<(&'a String, &'a V)> {
    let mut sorted: Vec<(&String, &V)> = m.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    limited(c, field, &sorted, limits::MAPPING_ENTRIES).to_vec()
}

pub fn mapping(c: &mut Check, field: &str, m: Option<&pb::Mapping>) -> Option<Mapping> {
    let Some(m) = m else {
        return Some(Mapping::default());
    };
    let before = c.count();
    let mut out = Mapping::default();
    for (k, v) in entries(c, &format!("{field}.statuses"), &m.statuses) {
        if let Some(s) = status(c, &format!("{field}.statuses[{k:?}]"), *v) {
            out.statuses.insert(k.clone(), s);
        }
    }
    for (k, v) in entries(c, &format!("{field}.priorities"), &m.priorities) {
        if let Some(p) = c.ok(
            format!("{field}.priorities[{k:?}]"),
            PriorityLabel::parse(v),
        ) {
            out.priorities.insert(k.clone(), p);
        }
    }
    for (k, v) in entries(c, &format!("{field}.request_types"), &m.request_types) {
        if let Some(t) = c.ok(
            format!("{field}.request_types[{k:?}]"),
            RequestType::parse(v),
        ) {
            out.request_types.insert(k.clone(), t);
        }
    }
    if !m.default_request_type.is_empty() {
        out.default_request_type = c.ok(
            format!("{field}.default_request_type"),
            RequestType::parse(&m.default_request_type),
        );
    }
    if c.count() != before {
        return None;
    }
    match out.normalised() {
        Ok(m) => Some(m),
        Err(e) => {
            c.fail(field, e);
            None
        }
    }
}

fn source_system(c: &mut Check, field: &str, s: &str, p: Option<Provider>) -> Option<ExternalId> {
    if s.is_empty() {
        return p.and_then(|p| ExternalId::parse(p.as_str()).ok());
    }
    c.ok(field, ExternalId::parse(s))
}

fn base_url(c: &mut Check, field: &str, s: &str) -> Option<Option<String>> {
    if s.is_empty() {
        return Some(None);
    }
    c.ok(field, public_base_url(s)).map(Some)
}

/// A new connection: its display name and what it says.
pub fn connection(
    c: &mut Check,
    field: &str,
    conn: Option<&pb::Connection>,
) -> Option<(ShortText, ConnectionSpec)> {
    let Some(conn) = conn else {
        c.fail(field, "is required");
        return None;
    };
    let display = display_name(c, &format!("{field}.display_name"), &conn.display_name);
    let organization = resource_name(
        c,
        &format!("{field}.organization"),
        &conn.organization,
        ResourceKind::Organization,
    );
    let provider = provider(c, &format!("{field}.provider"), conn.provider);
    let source = source_system(
        c,
        &format!("{field}.source_system"),
        &conn.source_system,
        provider,
    );
    let url = base_url(
        c,
        &format!("{field}.public_base_url"),
        &conn.public_base_url,
    );
    let mapping = mapping(c, &format!("{field}.mapping"), conn.mapping.as_ref());
    let ((((display, organization), provider), (source_system, public_base_url)), mapping) =
        display
            .zip(organization)
            .zip(provider)
            .zip(source.zip(url))
            .zip(mapping)?;
    Some((
        display,
        ConnectionSpec {
            organization,
            provider,
            source_system,
            public_base_url,
            mapping,
        },
    ))
}

/// The masked fields of an update (`None`: all four).
pub fn connection_patch(
    c: &mut Check,
    field: &str,
    conn: &pb::Connection,
    fields: Option<&[String]>,
) -> ConnectionPatch {
    let all = CONNECTION_FIELDS.map(String::from);
    let fields = fields.unwrap_or(&all);
    let has = |f: &str| fields.iter().any(|x| x == f);
    ConnectionPatch {
        display_name: has("display_name")
            .then(|| display_name(c, &format!("{field}.display_name"), &conn.display_name))
            .flatten(),
        source_system: has("source_system")
            .then(|| {
                source_system(
                    c,
                    &format!("{field}.source_system"),
                    &conn.source_system,
                    None,
                )
            })
            .flatten(),
        public_base_url: has("public_base_url")
            .then(|| {
                base_url(
                    c,
                    &format!("{field}.public_base_url"),
                    &conn.public_base_url,
                )
            })
            .flatten(),
        mapping: has("mapping")
            .then(|| mapping(c, &format!("{field}.mapping"), conn.mapping.as_ref()))
            .flatten(),
    }
}

fn mapping_to_pb(m: &Mapping) -> pb::Mapping {
    pb::Mapping {
        statuses: m
            .statuses
            .iter()
            .map(|(k, v)| (k.clone(), status_to_pb(*v) as i32))
            .collect(),
        priorities: m
            .priorities
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        request_types: m
            .request_types
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        default_request_type: m
            .default_request_type
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_default(),
    }
}

pub fn connection_to_pb(v: &ConnectionView) -> pb::Connection {
    let name = name_of(ResourceKind::Connection, &v.version.id);
    pb::Connection {
        webhook_path: format!("/webhooks/v1/{}", v.version.id),
        name,
        display_name: v.version.display_name.clone(),
        organization: name_of(ResourceKind::Organization, &v.spec.organization),
        provider: provider_to_pb(v.spec.provider) as i32,
        source_system: v.spec.source_system.to_string(),
        public_base_url: v.spec.public_base_url.clone().unwrap_or_default(),
        mapping: Some(mapping_to_pb(&v.spec.mapping)),
        secrets: v
            .secrets
            .iter()
            .map(|s| pb::ConnectionSecret {
                fingerprint: s.fingerprint.clone(),
                create_time: Some(timestamp(s.created_at)),
            })
            .collect(),
        version: v.version.version as i32,
        archived: v.version.archived,
        create_time: Some(timestamp(v.version.created_at)),
    }
}

pub fn delivery_state(c: &mut Check, field: &str, v: i32) -> Option<DeliveryState> {
    match pb::InboxDeliveryState::try_from(v) {
        Ok(pb::InboxDeliveryState::Pending) => Some(DeliveryState::Pending),
        Ok(pb::InboxDeliveryState::Applied) => Some(DeliveryState::Applied),
        Ok(pb::InboxDeliveryState::Stale) => Some(DeliveryState::Stale),
        Ok(pb::InboxDeliveryState::Ignored) => Some(DeliveryState::Ignored),
        Ok(pb::InboxDeliveryState::Failed) => Some(DeliveryState::Failed),
        Ok(pb::InboxDeliveryState::Unspecified) | Err(_) => {
            c.fail(field, "must be a delivery state other than UNSPECIFIED");
            None
        }
    }
}

/// A list of states, at most one of each.
pub fn delivery_states(c: &mut Check, field: &str, v: &[i32]) -> Option<Vec<DeliveryState>> {
    let before = c.count();
    let mut out: Vec<DeliveryState> = Vec::new();
    for (i, s) in limited(c, field, v, DeliveryState::ALL.len())
        .iter()
        .enumerate()
    {
        if let Some(s) = delivery_state(c, &format!("{field}[{i}]"), *s)
            && !out.contains(&s)
        {
            out.push(s);
        }
    }
    (c.count() == before).then_some(out)
}

fn state_to_pb(s: DeliveryState) -> pb::InboxDeliveryState {
    match s {
        DeliveryState::Pending => pb::InboxDeliveryState::Pending,
        DeliveryState::Applied => pb::InboxDeliveryState::Applied,
        DeliveryState::Stale => pb::InboxDeliveryState::Stale,
        DeliveryState::Ignored => pb::InboxDeliveryState::Ignored,
        DeliveryState::Failed => pb::InboxDeliveryState::Failed,
    }
}

pub fn delivery_to_pb(r: &InboxRow) -> pb::InboxDelivery {
    pb::InboxDelivery {
        name: format!(
            "connections/{}/deliveries/{}",
            r.key.connection, r.key.delivery_id
        ),
        delivery_id: r.key.delivery_id.clone(),
        state: state_to_pb(r.state) as i32,
        reason: r.reason.clone().unwrap_or_default(),
        receive_time: Some(timestamp(r.received_at)),
        external_id: r.external_id.clone().unwrap_or_default(),
        source_time: opt_timestamp(r.source_at),
        ticket: r
            .ticket_id
            .as_ref()
            .map(|t| format!("tickets/{t}"))
            .unwrap_or_default(),
        attempts: i32::try_from(r.attempts).unwrap_or(i32::MAX),
        done_time: opt_timestamp(r.done_at),
        body: r.body.clone(),
    }
}

/// `connections/{connection}/deliveries/{delivery_id}` into its two ids.
pub fn delivery_name(
    c: &mut Check,
    field: &str,
    name: &str,
) -> Option<(crate::domain::names::ResourceId, String)> {
    let parsed = name
        .strip_prefix("connections/")
        .and_then(|rest| rest.split_once("/deliveries/"))
        .filter(|(_, id)| !id.is_empty() && id.len() <= 128);
    match parsed {
        Some((conn, id)) => c
            .ok(field, crate::domain::names::ResourceId::parse(conn))
            .map(|conn| (conn, id.to_string())),
        None => {
            c.fail(
                field,
                "must be connections/{connection}/deliveries/{delivery_id}",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn keys(m: &BTreeMap<String, crate::domain::status::Status>) -> Vec<String> {
        m.keys().cloned().collect()
    }

    #[test]
    fn mappings_parse_with_every_bad_entry_named() {
        let mut c = Check::new();
        let m = pb::Mapping {
            statuses: HashMap::from([
                ("Open".to_string(), pb::TicketStatus::Processing as i32),
                ("Pending".to_string(), 0),
            ]),
            priorities: HashMap::from([("Urgent".to_string(), "sev 1".to_string())]),
            ..pb::Mapping::default()
        };
        assert_eq!(mapping(&mut c, "connection.mapping", Some(&m)), None);
        let e = c.finish(Some(())).expect_err("two violations");
        let text = e.to_string();
        assert!(
            text.contains("connection.mapping.statuses[\"Pending\"]"),
            "{text}"
        );
        assert!(
            text.contains("connection.mapping.priorities[\"Urgent\"]"),
            "{text}"
        );
        let mut c = Check::new();
        let ok = pb::Mapping {
            statuses: HashMap::from([("Open".to_string(), pb::TicketStatus::Processing as i32)]),
            ..pb::Mapping::default()
        };
        let parsed = mapping(&mut c, "m", Some(&ok)).expect("parses");
        assert_eq!(keys(&parsed.statuses), ["open"]);
    }
}
