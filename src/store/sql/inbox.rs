//! The SQL of connections' secrets and inboxes (webhooks in), for both databases.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::{Backend, SqlTx, db_error, from_us, opt_from_us, placeholders, q, us};
use crate::store::{DeliveryKey, DeliveryState, InboxRow, SecretRow, StoreError, StoreResult};

const INBOX_COLUMNS: &str = "organization, connection, delivery_id, received_us, body, state, \
     reason, attempts, external_id, source_us, ticket_id, done_us";

/// The last source time of a ticket never applied from (the row exists, locked).
const NEVER: i64 = i64::MIN;

fn inbox_row(r: &AnyRow) -> StoreResult<InboxRow> {
    let state: String = r.try_get("state").map_err(db_error)?;
    Ok(InboxRow {
        key: DeliveryKey {
            organization: r.try_get("organization").map_err(db_error)?,
            connection: r.try_get("connection").map_err(db_error)?,
            delivery_id: r.try_get("delivery_id").map_err(db_error)?,
        },
        received_at: from_us(r.try_get("received_us").map_err(db_error)?)?,
        body: r.try_get("body").map_err(db_error)?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery state {state:?}")))?,
        reason: r.try_get("reason").map_err(db_error)?,
        attempts: r.try_get("attempts").map_err(db_error)?,
        external_id: r.try_get("external_id").map_err(db_error)?,
        source_at: opt_from_us(r.try_get("source_us").map_err(db_error)?)?,
        ticket_id: r.try_get("ticket_id").map_err(db_error)?,
        done_at: opt_from_us(r.try_get("done_us").map_err(db_error)?)?,
    })
}

fn secret_row(r: &AnyRow) -> StoreResult<SecretRow> {
    Ok(SecretRow {
        fingerprint: r.try_get("fingerprint").map_err(db_error)?,
        secret: r.try_get("secret").map_err(db_error)?,
        created_at: from_us(r.try_get("create_us").map_err(db_error)?)?,
    })
}

const SECRETS: &str = "SELECT fingerprint, secret, create_us FROM connection_secrets \
     WHERE connection = ? ORDER BY create_us, fingerprint";

pub(super) async fn connection_secrets(
    pool: &AnyPool,
    backend: Backend,
    connection: &str,
) -> StoreResult<Vec<SecretRow>> {
    let rows = sqlx::query(q(backend, SECRETS))
        .bind(connection)
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    rows.iter().map(secret_row).collect()
}

pub(super) async fn pending_deliveries(
    pool: &AnyPool,
    backend: Backend,
    limit: u32,
) -> StoreResult<Vec<InboxRow>> {
    let text = format!(
        "SELECT {INBOX_COLUMNS} FROM inbox WHERE state = 'pending' \
         ORDER BY source_us, received_us LIMIT ?"
    );
    let rows = sqlx::query(AssertSqlSafe(placeholders(backend, &text)))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    rows.iter().map(inbox_row).collect()
}

fn state_list(states: &[DeliveryState]) -> String {
    // The states are our own words, never input: safe to write into the text.
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) async fn deliveries_page(
    pool: &AnyPool,
    backend: Backend,
    connection: &str,
    states: &[DeliveryState],
    after: Option<(i64, String)>,
    limit: u32,
) -> StoreResult<Vec<InboxRow>> {
    let mut text = format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE connection = ?");
    if !states.is_empty() {
        text.push_str(&format!(" AND state IN ({})", state_list(states)));
    }
    if after.is_some() {
        text.push_str(" AND (received_us < ? OR (received_us = ? AND delivery_id < ?))");
    }
    text.push_str(" ORDER BY received_us DESC, delivery_id DESC LIMIT ?");
    let mut query = sqlx::query(AssertSqlSafe(placeholders(backend, &text))).bind(connection);
    if let Some((at, id)) = after {
        query = query.bind(at).bind(at).bind(id);
    }
    let rows = query
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    rows.iter().map(inbox_row).collect()
}

pub(super) async fn delivery(
    pool: &AnyPool,
    backend: Backend,
    connection: &str,
    delivery_id: &str,
) -> StoreResult<InboxRow> {
    let text =
        format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE connection = ? AND delivery_id = ?");
    let row = sqlx::query(AssertSqlSafe(placeholders(backend, &text)))
        .bind(connection)
        .bind(delivery_id)
        .fetch_optional(pool)
        .await
        .map_err(db_error)?
        .ok_or_else(|| {
            StoreError::NotFound(format!("connections/{connection}/deliveries/{delivery_id}"))
        })?;
    inbox_row(&row)
}

/// `pool` is the transaction pool: with `pooled` (a transaction pooler) the delete runs
/// in a transaction of its own, so it has committed when this returns.
pub(super) async fn purge_inbox(
    pool: &AnyPool,
    pooled: bool,
    backend: Backend,
    before: DateTime<Utc>,
    limit: u32,
) -> StoreResult<u64> {
    let text = "DELETE FROM inbox WHERE (organization, connection, delivery_id) IN \
         (SELECT organization, connection, delivery_id FROM inbox \
          WHERE done_us IS NOT NULL AND done_us < ? AND state <> 'pending' LIMIT ?)";
    let query = sqlx::query(q(backend, text))
        .bind(us(before))
        .bind(i64::from(limit));
    if !pooled {
        return query
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_error);
    }
    let mut tx = pool.begin().await.map_err(db_error)?;
    let done = query.execute(&mut *tx).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(done.rows_affected())
}

pub(super) async fn inbox_backlog(
    pool: &AnyPool,
    backend: Backend,
) -> StoreResult<(i64, Option<DateTime<Utc>>)> {
    let row = sqlx::query(q(
        backend,
        "SELECT COUNT(*) AS n, MIN(received_us) AS oldest FROM inbox WHERE state = 'pending'",
    ))
    .fetch_one(pool)
    .await
    .map_err(db_error)?;
    let n: i64 = row.try_get("n").map_err(db_error)?;
    let oldest: Option<i64> = row.try_get("oldest").map_err(db_error)?;
    Ok((n, opt_from_us(oldest)?))
}

impl SqlTx {
    pub(super) async fn inbox_insert_secret(
        &mut self,
        organization: &str,
        connection: &str,
        s: &SecretRow,
    ) -> StoreResult<()> {
        sqlx::query(self.q(
            "INSERT INTO connection_secrets (organization, connection, fingerprint, secret, create_us) \
             VALUES (?, ?, ?, ?, ?)",
        ))
        .bind(organization)
        .bind(connection)
        .bind(s.fingerprint.as_str())
        .bind(s.secret.clone())
        .bind(us(s.created_at))
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)
        .map_err(|e| match e {
            StoreError::AlreadyExists(_) => StoreError::AlreadyExists(format!(
                "connections/{connection} has secret {}",
                s.fingerprint
            )),
            e => e,
        })?;
        Ok(())
    }

    pub(super) async fn inbox_delete_secret(
        &mut self,
        connection: &str,
        fingerprint: &str,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            self.q("DELETE FROM connection_secrets WHERE connection = ? AND fingerprint = ?"),
        )
        .bind(connection)
        .bind(fingerprint)
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        Ok(r.rows_affected() > 0)
    }

    pub(super) async fn inbox_secrets(&mut self, connection: &str) -> StoreResult<Vec<SecretRow>> {
        let rows = sqlx::query(self.q(SECRETS))
            .bind(connection)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db_error)?;
        rows.iter().map(secret_row).collect()
    }

    pub(super) async fn inbox_insert(&mut self, rows: &[InboxRow]) -> StoreResult<Vec<bool>> {
        let mut fresh = Vec::with_capacity(rows.len());
        for r in rows {
            let n = sqlx::query(self.q(
                "INSERT INTO inbox (organization, connection, delivery_id, received_us, body, state, \
                 reason, attempts, external_id, source_us, ticket_id, done_us) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, NULL, ?) ON CONFLICT DO NOTHING",
            ))
            .bind(r.key.organization.as_str())
            .bind(r.key.connection.as_str())
            .bind(r.key.delivery_id.as_str())
            .bind(us(r.received_at))
            .bind(r.body.clone())
            .bind(r.state.as_str())
            .bind(r.reason.clone())
            .bind(r.external_id.clone())
            .bind(r.source_at.map(us))
            .bind(r.done_at.map(us))
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            fresh.push(n == 1);
        }
        Ok(fresh)
    }

    pub(super) async fn inbox_lock(&mut self, key: &DeliveryKey) -> StoreResult<Option<InboxRow>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let text = format!(
            "SELECT {INBOX_COLUMNS} FROM inbox WHERE organization = ? AND connection = ? \
             AND delivery_id = ? AND state = 'pending'{lock}"
        );
        let row = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(key.organization.as_str())
            .bind(key.connection.as_str())
            .bind(key.delivery_id.as_str())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_error)?;
        row.as_ref().map(inbox_row).transpose()
    }

    pub(super) async fn inbox_finish(
        &mut self,
        key: &DeliveryKey,
        state: DeliveryState,
        reason: Option<&str>,
        ticket_id: Option<&str>,
        done_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(self.q(
            "UPDATE inbox SET state = ?, reason = ?, ticket_id = COALESCE(?, ticket_id), \
             done_us = ?, attempts = attempts + 1 \
             WHERE organization = ? AND connection = ? AND delivery_id = ?",
        ))
        .bind(state.as_str())
        .bind(reason)
        .bind(ticket_id)
        .bind(us(done_at))
        .bind(key.organization.as_str())
        .bind(key.connection.as_str())
        .bind(key.delivery_id.as_str())
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    pub(super) async fn inbox_replay(
        &mut self,
        connection: &str,
        delivery_id: Option<&str>,
        states: &[DeliveryState],
    ) -> StoreResult<u64> {
        let mut text = String::from(
            "UPDATE inbox SET state = 'pending', reason = NULL, done_us = NULL \
             WHERE connection = ? AND state <> 'pending'",
        );
        if delivery_id.is_some() {
            text.push_str(" AND delivery_id = ?");
        }
        if !states.is_empty() {
            text.push_str(&format!(" AND state IN ({})", state_list(states)));
        }
        let mut query =
            sqlx::query(AssertSqlSafe(placeholders(self.backend, &text))).bind(connection);
        if let Some(id) = delivery_id {
            query = query.bind(id);
        }
        query
            .execute(&mut *self.tx)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_error)
    }

    pub(super) async fn inbox_lock_source(
        &mut self,
        organization: &str,
        connection: &str,
        external_id: &str,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        sqlx::query(self.q(
            "INSERT INTO connection_tickets (organization, connection, external_id, last_source_us) \
             VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        ))
        .bind(organization)
        .bind(connection)
        .bind(external_id)
        .bind(NEVER)
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        let text = format!(
            "SELECT last_source_us FROM connection_tickets \
             WHERE organization = ? AND connection = ? AND external_id = ?{}",
            self.for_update()
        );
        let last: i64 = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(organization)
            .bind(connection)
            .bind(external_id)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(db_error)?
            .try_get("last_source_us")
            .map_err(db_error)?;
        if last == NEVER {
            Ok(None)
        } else {
            from_us(last).map(Some)
        }
    }

    pub(super) async fn inbox_set_source(
        &mut self,
        organization: &str,
        connection: &str,
        external_id: &str,
        last: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(self.q("UPDATE connection_tickets SET last_source_us = ? \
             WHERE organization = ? AND connection = ? AND external_id = ?"))
        .bind(us(last))
        .bind(organization)
        .bind(connection)
        .bind(external_id)
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
