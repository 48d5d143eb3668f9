//! Connections (webhooks in): the resource an organisation's helpdesk posts to, with its
//! secrets. A connection is a catalogue resource (versioned, archivable); its secrets are
//! kept beside it, at most two at once (a rotation), and never shown: the API shows each
//! one's fingerprint and when it was added.

use sha2::{Digest as _, Sha256};

use super::answer::Answer;
use super::catalog::{Idempotent, at_version, json};
use super::error::{AppError, AppResult};
use super::{App, page, parse_body};
use crate::domain::connection::signatures::{hex, secret_key};
use crate::domain::connection::{ConnectionSpec, Mapping};
use crate::domain::names::{ExternalId, ResourceId, ShortText};
use crate::store::{ResourceKind, ResourceVersion, SecretRow, Store, StoreTx as _};

/// Secrets a connection holds at once: the current one and, during a rotation, the next.
pub const MAX_SECRETS: usize = 2;

/// A connection as the API shows it.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    pub version: ResourceVersion,
    pub spec: ConnectionSpec,
    pub secrets: Vec<SecretInfo>,
}

/// What is shown of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub fingerprint: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Renders a connection as the transport stores and returns it.
pub type RenderConnection<'a, A> = &'a (dyn Fn(&ConnectionView) -> AppResult<A> + Sync);

/// A secret's fingerprint: enough to tell secrets apart, nothing to sign with.
pub fn fingerprint(key: &[u8]) -> String {
    format!("sha256:{}", &hex(&Sha256::digest(key))[..16])
}

/// The fields of a connection an update may change; the organisation and the provider
/// are fixed at creation (a provider's secrets mean nothing to another).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConnectionPatch {
    pub display_name: Option<ShortText>,
    pub source_system: Option<ExternalId>,
    /// `Some(None)` clears it.
    pub public_base_url: Option<Option<String>>,
    pub mapping: Option<Mapping>,
}

/// `secrets` with `row` added, unless `owner` (a resource name) holds it already or holds
/// [`MAX_SECRETS`].
pub(super) fn with_secret(
    mut secrets: Vec<SecretRow>,
    row: SecretRow,
    owner: &str,
) -> AppResult<Vec<SecretRow>> {
    if secrets.iter().any(|s| s.fingerprint == row.fingerprint) {
        return Err(AppError::AlreadyExists(format!(
            "{owner} already has secret {}",
            row.fingerprint
        )));
    }
    if secrets.len() >= MAX_SECRETS {
        return Err(AppError::FailedPrecondition(format!(
            "{owner} holds {MAX_SECRETS} secrets already: remove the old one first"
        )));
    }
    secrets.push(row);
    Ok(secrets)
}

/// `secrets` without the one of fingerprint `fp`, which `owner` must hold, and never the
/// last one (without a secret nothing is accepted or signed: add the successor first).
pub(super) fn without_secret(
    secrets: Vec<SecretRow>,
    fp: &str,
    owner: &str,
) -> AppResult<Vec<SecretRow>> {
    if !secrets.iter().any(|s| s.fingerprint == fp) {
        return Err(AppError::NotFound(format!("secret {fp} of {owner}")));
    }
    if secrets.len() == 1 {
        return Err(AppError::FailedPrecondition(format!(
            "{fp} is the only secret of {owner}: add its successor first"
        )));
    }
    Ok(secrets
        .into_iter()
        .filter(|s| s.fingerprint != fp)
        .collect())
}

fn view(version: ResourceVersion, secrets: &[SecretRow]) -> AppResult<ConnectionView> {
    Ok(ConnectionView {
        spec: parse_body(&version)?,
        version,
        secrets: secrets
            .iter()
            .map(|s| SecretInfo {
                fingerprint: s.fingerprint.clone(),
                created_at: s.created_at,
            })
            .collect(),
    })
}

impl<S: Store> App<S> {
    fn secret_rows(
        &self,
        spec: &ConnectionSpec,
        field: &str,
        texts: &[String],
    ) -> AppResult<Vec<SecretRow>> {
        let now = self.now();
        let mut rows: Vec<SecretRow> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let key = secret_key(spec.provider, text)
                .map_err(|e| AppError::invalid(format!("{field}[{i}]"), e))?;
            let fp = fingerprint(&key);
            if rows.iter().any(|r| r.fingerprint == fp) {
                return Err(AppError::invalid(
                    format!("{field}[{i}]"),
                    "the same secret is given twice",
                ));
            }
            rows.push(SecretRow {
                fingerprint: fp,
                secret: key,
                created_at: now,
            });
        }
        Ok(rows)
    }

    /// Creates a connection for a live organisation with its first secrets (one or two).
    pub async fn create_connection<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        id: &ResourceId,
        display_name: &ShortText,
        spec: &ConnectionSpec,
        secrets: &[String],
        render: RenderConnection<'_, A>,
    ) -> AppResult<A> {
        if let Some(answer) = self.replay(idem, fingerprint).await? {
            return Ok(answer);
        }
        if secrets.is_empty() || secrets.len() > MAX_SECRETS {
            return Err(AppError::invalid(
                "secrets",
                format!(
                    "give 1 to {MAX_SECRETS} secrets: a connection without one accepts nothing"
                ),
            ));
        }
        let rows = self.secret_rows(spec, "secrets", secrets)?;
        self.require_live(
            ResourceKind::Organization,
            &spec.organization,
            "connection.organization",
        )
        .await?;
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fingerprint).await? {
            return Ok(answer);
        }
        let v = tx
            .create_resource(
                ResourceKind::Connection,
                id,
                display_name.as_str(),
                &json(spec)?,
                self.now(),
            )
            .await?;
        for row in &rows {
            tx.insert_secret(spec.organization.as_str(), id.as_str(), row)
                .await?;
        }
        let answer = render(&view(v, &rows)?)?;
        self.finish(tx, &idem.key, &answer).await?;
        Ok(answer)
    }

    /// Changes what `patch` sets, at the `expected` version if one is given.
    pub async fn update_connection<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        id: &ResourceId,
        patch: &ConnectionPatch,
        expected: Option<u32>,
        render: RenderConnection<'_, A>,
    ) -> AppResult<A> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fingerprint).await? {
            return Ok(answer);
        }
        let current = tx.get_resource(ResourceKind::Connection, id, None).await?;
        if current.archived {
            return Err(AppError::FailedPrecondition(format!(
                "connections/{id} is archived; archived resources do not change"
            )));
        }
        at_version(&current, expected)?;
        let mut spec: ConnectionSpec = parse_body(&current)?;
        if let Some(s) = &patch.source_system {
            spec.source_system = s.clone();
        }
        if let Some(u) = &patch.public_base_url {
            spec.public_base_url = u.clone();
        }
        if let Some(m) = &patch.mapping {
            spec.mapping = m.clone();
        }
        let name = patch
            .display_name
            .as_ref()
            .map(|n| n.as_str())
            .unwrap_or(&current.display_name);
        let now = self.now();
        let v = tx
            .add_version(ResourceKind::Connection, id, name, &json(&spec)?, now, now)
            .await?;
        let secrets = tx.secrets_of(id.as_str()).await?;
        let answer = render(&view(v, &secrets)?)?;
        self.finish(tx, &idem.key, &answer).await?;
        Ok(answer)
    }

    /// Archives a connection: its URL answers 404 from then on, its inbox stays listable.
    pub async fn archive_connection<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        id: &ResourceId,
        render: RenderConnection<'_, A>,
    ) -> AppResult<A> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fingerprint).await? {
            return Ok(answer);
        }
        let v = tx.archive_resource(ResourceKind::Connection, id).await?;
        let secrets = tx.secrets_of(id.as_str()).await?;
        let answer = render(&view(v, &secrets)?)?;
        self.finish(tx, &idem.key, &answer).await?;
        Ok(answer)
    }

    /// Adds a secret (the next one of a rotation); a connection holds at most two.
    pub async fn add_connection_secret<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        id: &ResourceId,
        secret: &str,
        render: RenderConnection<'_, A>,
    ) -> AppResult<A> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fingerprint).await? {
            return Ok(answer);
        }
        let v = tx.get_resource(ResourceKind::Connection, id, None).await?;
        if v.archived {
            return Err(AppError::FailedPrecondition(format!(
                "connections/{id} is archived"
            )));
        }
        let spec: ConnectionSpec = parse_body(&v)?;
        let row = self
            .secret_rows(&spec, "secret", std::slice::from_ref(&secret.to_string()))
            .map_err(|e| match e {
                AppError::InvalidArgument(mut v) => {
                    for x in &mut v {
                        x.field = "secret".into();
                    }
                    AppError::InvalidArgument(v)
                }
                e => e,
            })?
            .remove(0);
        let current = tx.secrets_of(id.as_str()).await?;
        let secrets = with_secret(current, row.clone(), &format!("connections/{id}"))?;
        tx.insert_secret(spec.organization.as_str(), id.as_str(), &row)
            .await?;
        let answer = render(&view(v, &secrets)?)?;
        self.finish(tx, &idem.key, &answer).await?;
        Ok(answer)
    }

    /// Removes a secret, never the last one (a connection without one accepts nothing:
    /// add the new secret first).
    pub async fn remove_connection_secret<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        id: &ResourceId,
        secret_fingerprint: &str,
        render: RenderConnection<'_, A>,
    ) -> AppResult<A> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fingerprint).await? {
            return Ok(answer);
        }
        let v = tx.get_resource(ResourceKind::Connection, id, None).await?;
        let secrets = tx.secrets_of(id.as_str()).await?;
        let left = without_secret(secrets, secret_fingerprint, &format!("connections/{id}"))?;
        tx.delete_secret(id.as_str(), secret_fingerprint).await?;
        let answer = render(&view(v, &left)?)?;
        self.finish(tx, &idem.key, &answer).await?;
        Ok(answer)
    }

    pub async fn connection(&self, id: &ResourceId) -> AppResult<ConnectionView> {
        let v = self
            .store
            .get_resource(ResourceKind::Connection, id, None)
            .await?;
        let secrets = self.store.connection_secrets(id.as_str()).await?;
        view(v, &secrets)
    }

    /// A page of connections (of one organisation, or of those `allowed`), in id order.
    pub async fn list_connections(
        &self,
        organization: Option<&ResourceId>,
        allowed: &(dyn Fn(&ResourceId) -> bool + Sync),
        size: u32,
        page_token: &str,
        show_archived: bool,
    ) -> AppResult<(Vec<ConnectionView>, String)> {
        let query = format!(
            "connections:{show_archived}:{}",
            organization.map(|o| o.as_str()).unwrap_or("")
        );
        let mut after: Option<String> = page::decode(&query, page_token)?;
        let mut out = Vec::new();
        // Filtered pages may come back short; the next token continues after the last
        // connection looked at (AIP-158 lets a page hold fewer than asked).
        let rows = self
            .store
            .list_resources(
                ResourceKind::Connection,
                after.as_deref(),
                size + 1,
                show_archived,
            )
            .await?;
        let more = rows.len() > size as usize;
        for v in rows.into_iter().take(size as usize) {
            after = Some(v.id.to_string());
            let spec: ConnectionSpec = parse_body(&v)?;
            if organization.is_some_and(|o| *o != spec.organization) || !allowed(&spec.organization)
            {
                continue;
            }
            let secrets = self.store.connection_secrets(v.id.as_str()).await?;
            out.push(view(v, &secrets)?);
        }
        let next = match (more, after) {
            (true, Some(at)) => page::encode(&query, &at),
            _ => String::new(),
        };
        Ok((out, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_short_and_stable() {
        assert_eq!(fingerprint(b"secret"), "sha256:2bb80d537b1da3e3");
        assert_ne!(fingerprint(b"secret"), fingerprint(b"secret2"));
    }
}
