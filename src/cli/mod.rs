//! The command line's connection commands: the same use cases as `ConnectionService`,
//! on the database directly (like `pack import`), for an operator setting up a helpdesk
//! before any API client exists. Secrets come on standard input, never as arguments
//! (which other users of the machine can read).

use std::io::Read as _;

pub mod webhooks;

use crate::app::App;
use crate::app::answer::{Answer, Idempotency};
use crate::app::connections::{ConnectionPatch, ConnectionView};
use crate::app::error::AppResult;
use crate::app::fingerprint::Fingerprint;
use crate::config::ConnectionCommand;
use crate::domain::connection::{ConnectionSpec, Mapping, Provider, public_base_url};
use crate::domain::names::{ExternalId, ResourceId, ShortText};
use crate::store::{DeliveryState, IdempotencyKey, Store};

/// A command's answer where nothing retries it: stored empty.
pub(crate) struct Printed<T>(pub(crate) T);

impl<T> Answer for Printed<T> {
    fn to_bytes(&self) -> Vec<u8> {
        Vec::new()
    }

    fn from_bytes(_: &[u8]) -> Result<Self, String> {
        Err("a command line answer is not stored".into())
    }
}

pub(crate) fn once(method: &'static str) -> (Idempotency, Fingerprint) {
    (
        Idempotency::new(IdempotencyKey {
            client: "cli".into(),
            method,
            request_id: uuid::Uuid::now_v7().to_string(),
        }),
        Fingerprint::new(),
    )
}

fn shown(v: &ConnectionView) -> AppResult<Printed<ConnectionView>> {
    Ok(Printed(v.clone()))
}

fn id(s: &str) -> Result<ResourceId, String> {
    ResourceId::parse(s.strip_prefix("connections/").unwrap_or(s)).map_err(|e| format!("{s}: {e}"))
}

pub(crate) fn secret_from_stdin() -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| format!("cannot read the secret on standard input: {e}"))?;
    let s = s.trim_end_matches(['\r', '\n']).to_string();
    if s.is_empty() {
        return Err("no secret on standard input".into());
    }
    Ok(s)
}

/// A mapping file: TOML with `[statuses]`, `[priorities]`, `[request_types]` and
/// `default_request_type` (docs/integrations.md).
pub fn read_mapping(path: &std::path::Path) -> Result<Mapping, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let m: Mapping = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    m.normalised()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// What `show` prints.
pub fn describe(v: &ConnectionView) -> Vec<String> {
    let s = &v.spec;
    let mut lines = vec![
        format!(
            "connections/{}\t{}\t{} for organizations/{}{}",
            v.version.id,
            v.version.display_name,
            s.provider,
            s.organization,
            if v.version.archived {
                " (archived)"
            } else {
                ""
            }
        ),
        format!("  webhook path: /webhooks/v1/{}", v.version.id),
        format!("  source system: {}", s.source_system),
    ];
    if let Some(u) = &s.public_base_url {
        lines.push(format!("  public base URL: {u}"));
    }
    for sec in &v.secrets {
        lines.push(format!(
            "  secret {} added {}",
            sec.fingerprint,
            sec.created_at.to_rfc3339()
        ));
    }
    for (k, st) in &s.mapping.statuses {
        lines.push(format!("  status {k:?} -> {st}"));
    }
    for (k, p) in &s.mapping.priorities {
        lines.push(format!("  priority {k:?} -> {p}"));
    }
    for (k, t) in &s.mapping.request_types {
        lines.push(format!("  request type {k:?} -> {t}"));
    }
    if let Some(t) = &s.mapping.default_request_type {
        lines.push(format!("  default request type -> {t}"));
    }
    lines
}

/// Runs one connection command against `app`'s database.
pub async fn run<S: Store>(app: &App<S>, command: ConnectionCommand) -> Result<(), String> {
    let text = |e: crate::app::error::AppError| e.to_string();
    match command {
        ConnectionCommand::Create {
            id: conn,
            organization,
            provider,
            source_system,
            public_base_url: url,
            mapping,
            display_name,
            ..
        } => {
            let conn = id(&conn)?;
            let provider: Provider = provider.parse()?;
            let organization = ResourceId::parse(
                organization
                    .strip_prefix("organizations/")
                    .unwrap_or(&organization),
            )
            .map_err(|e| format!("--org: {e}"))?;
            let source_system =
                ExternalId::parse(source_system.as_deref().unwrap_or(provider.as_str()))
                    .map_err(|e| format!("--source-system: {e}"))?;
            let public_base_url = url
                .map(|u| public_base_url(&u))
                .transpose()
                .map_err(|e| format!("--public-base-url: {e}"))?;
            let mapping = match mapping {
                Some(p) => read_mapping(&p)?,
                None => Mapping::default(),
            };
            let display = ShortText::parse(display_name.as_deref().unwrap_or(conn.as_str()))
                .map_err(|e| format!("--display-name: {e}"))?;
            let spec = ConnectionSpec {
                organization,
                provider,
                source_system,
                public_base_url,
                mapping,
            };
            let secret = secret_from_stdin()?;
            let (idem, fp) = once("CreateConnection");
            let v = app
                .create_connection((&idem, &fp), &conn, &display, &spec, &[secret], &shown)
                .await
                .map_err(text)?;
            describe(&v.0).iter().for_each(|l| println!("{l}"));
        }
        ConnectionCommand::List { .. } => {
            let mut token = String::new();
            loop {
                let (page, next) = app
                    .list_connections(None, &|_| true, 1000, &token, true)
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
        ConnectionCommand::Show { id: conn, .. } => {
            let v = app.connection(&id(&conn)?).await.map_err(text)?;
            describe(&v).iter().for_each(|l| println!("{l}"));
        }
        ConnectionCommand::SetMapping {
            id: conn, mapping, ..
        } => {
            let patch = ConnectionPatch {
                mapping: Some(read_mapping(&mapping)?),
                ..ConnectionPatch::default()
            };
            let (idem, fp) = once("UpdateConnection");
            let v = app
                .update_connection((&idem, &fp), &id(&conn)?, &patch, None, &shown)
                .await
                .map_err(text)?;
            describe(&v.0).iter().for_each(|l| println!("{l}"));
        }
        ConnectionCommand::AddSecret { id: conn, .. } => {
            let secret = secret_from_stdin()?;
            let (idem, fp) = once("AddConnectionSecret");
            let v = app
                .add_connection_secret((&idem, &fp), &id(&conn)?, &secret, &shown)
                .await
                .map_err(text)?;
            describe(&v.0).iter().for_each(|l| println!("{l}"));
        }
        ConnectionCommand::RemoveSecret {
            id: conn,
            fingerprint,
            ..
        } => {
            let (idem, fp) = once("RemoveConnectionSecret");
            let v = app
                .remove_connection_secret((&idem, &fp), &id(&conn)?, &fingerprint, &shown)
                .await
                .map_err(text)?;
            describe(&v.0).iter().for_each(|l| println!("{l}"));
        }
        ConnectionCommand::Deliveries {
            id: conn,
            states,
            limit,
            ..
        } => {
            let states = states
                .iter()
                .map(|s| {
                    DeliveryState::parse(s).ok_or_else(|| {
                        format!("--state {s}: pending, applied, stale, ignored or failed")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (rows, _) = app
                .deliveries(&id(&conn)?, &states, limit.clamp(1, 1000), "")
                .await
                .map_err(text)?;
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    r.received_at.to_rfc3339(),
                    r.key.delivery_id,
                    r.state.as_str(),
                    r.external_id.unwrap_or_default(),
                    r.reason.unwrap_or_default()
                );
            }
        }
        ConnectionCommand::Replay {
            id: conn, delivery, ..
        } => {
            let (idem, fp) = once("ReplayInboxDeliveries");
            let states = if delivery.is_some() {
                Vec::new()
            } else {
                vec![DeliveryState::Failed]
            };
            let n = app
                .replay_deliveries(
                    (&idem, &fp),
                    &id(&conn)?,
                    delivery.as_deref(),
                    &states,
                    &|n| Ok(Printed(n)),
                )
                .await
                .map_err(text)?;
            println!("{} deliveries pending again", n.0);
        }
        ConnectionCommand::Archive { id: conn, .. } => {
            let (idem, fp) = once("ArchiveConnection");
            let v = app
                .archive_connection((&idem, &fp), &id(&conn)?, &shown)
                .await
                .map_err(text)?;
            describe(&v.0).iter().for_each(|l| println!("{l}"));
        }
    }
    Ok(())
}

/// The database arguments of a connection command.
pub fn database(c: &ConnectionCommand) -> &crate::config::DatabaseArgs {
    match c {
        ConnectionCommand::Create { database, .. }
        | ConnectionCommand::List { database }
        | ConnectionCommand::Show { database, .. }
        | ConnectionCommand::SetMapping { database, .. }
        | ConnectionCommand::AddSecret { database, .. }
        | ConnectionCommand::RemoveSecret { database, .. }
        | ConnectionCommand::Deliveries { database, .. }
        | ConnectionCommand::Replay { database, .. }
        | ConnectionCommand::Archive { database, .. } => database,
    }
}
