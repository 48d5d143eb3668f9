//! The SQL of webhooks out: each subscription's cursor and lease, and the deliveries taken
//! from the alert log, for both databases.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::{Backend, SqlTx, db_error, from_us, opt_from_us, placeholders, q, us};
use crate::store::{
    AttemptOutcome, StoreError, StoreResult, SubscriptionCursor, WebhookRow, WebhookState,
};

const COLUMNS: &str = "subscription, alert_id, organization, ticket_id, kind, record_us, \
     taken_us, payload, state, attempts, next_us, first_attempt_us, last_status, last_error, done_us";

fn webhook_row(r: &AnyRow) -> StoreResult<WebhookRow> {
    let state: String = r.try_get("state").map_err(db_error)?;
    Ok(WebhookRow {
        subscription: r.try_get("subscription").map_err(db_error)?,
        alert_id: r.try_get("alert_id").map_err(db_error)?,
        organization: r.try_get("organization").map_err(db_error)?,
        ticket_id: r.try_get("ticket_id").map_err(db_error)?,
        kind: r.try_get("kind").map_err(db_error)?,
        recorded_at: from_us(r.try_get("record_us").map_err(db_error)?)?,
        taken_at: from_us(r.try_get("taken_us").map_err(db_error)?)?,
        payload: r.try_get("payload").map_err(db_error)?,
        state: WebhookState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("webhook state {state:?}")))?,
        attempts: r.try_get("attempts").map_err(db_error)?,
        next_at: from_us(r.try_get("next_us").map_err(db_error)?)?,
        first_attempt_at: opt_from_us(r.try_get("first_attempt_us").map_err(db_error)?)?,
        last_status: r.try_get("last_status").map_err(db_error)?,
        last_error: r.try_get("last_error").map_err(db_error)?,
        done_at: opt_from_us(r.try_get("done_us").map_err(db_error)?)?,
    })
}

pub(super) async fn subscription_cursor(
    pool: &AnyPool,
    backend: Backend,
    subscription: &str,
) -> StoreResult<Option<SubscriptionCursor>> {
    let row = sqlx::query(q(
        backend,
        "SELECT cursor_tx, cursor_id, lease_owner, lease_until_us, failing_since_us, disabled_reason \
         FROM subscription_cursors WHERE subscription = ?",
    ))
    .bind(subscription)
    .fetch_optional(pool)
    .await
    .map_err(db_error)?;
    row.map(|r| {
        Ok(SubscriptionCursor {
            cursor: (
                r.try_get("cursor_tx").map_err(db_error)?,
                r.try_get("cursor_id").map_err(db_error)?,
            ),
            lease_owner: r.try_get("lease_owner").map_err(db_error)?,
            lease_until: from_us(r.try_get("lease_until_us").map_err(db_error)?)?,
            failing_since: opt_from_us(r.try_get("failing_since_us").map_err(db_error)?)?,
            disabled_reason: r.try_get("disabled_reason").map_err(db_error)?,
        })
    })
    .transpose()
}

pub(super) async fn webhooks_due(
    pool: &AnyPool,
    backend: Backend,
    subscription: &str,
    now: DateTime<Utc>,
    limit: u32,
) -> StoreResult<Vec<WebhookRow>> {
    // A ticket's head: no pending delivery of the same ticket comes before it.
    let text = format!(
        "SELECT {COLUMNS} FROM webhook_deliveries d WHERE d.subscription = ? AND d.state = 'pending' \
         AND d.next_us <= ? AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
         WHERE e.subscription = d.subscription AND e.ticket_id = d.ticket_id \
         AND e.state = 'pending' AND e.alert_id < d.alert_id) \
         ORDER BY d.alert_id LIMIT ?"
    );
    let rows = sqlx::query(AssertSqlSafe(placeholders(backend, &text)))
        .bind(subscription)
        .bind(us(now))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    rows.iter().map(webhook_row).collect()
}

pub(super) async fn webhook_next_at(
    pool: &AnyPool,
    backend: Backend,
    subscription: &str,
) -> StoreResult<Option<DateTime<Utc>>> {
    let v: Option<i64> = sqlx::query_scalar(q(
        backend,
        "SELECT MIN(next_us) FROM webhook_deliveries WHERE subscription = ? AND state = 'pending'",
    ))
    .bind(subscription)
    .fetch_one(pool)
    .await
    .map_err(db_error)?;
    opt_from_us(v)
}

pub(super) async fn webhooks_page(
    pool: &AnyPool,
    backend: Backend,
    subscription: &str,
    states: &[WebhookState],
    after: Option<i64>,
    limit: u32,
) -> StoreResult<Vec<WebhookRow>> {
    let mut text = format!("SELECT {COLUMNS} FROM webhook_deliveries WHERE subscription = ?");
    if !states.is_empty() {
        let marks = vec!["?"; states.len()].join(", ");
        text.push_str(&format!(" AND state IN ({marks})"));
    }
    if after.is_some() {
        text.push_str(" AND alert_id < ?");
    }
    text.push_str(" ORDER BY alert_id DESC LIMIT ?");
    let mut query = sqlx::query(AssertSqlSafe(placeholders(backend, &text))).bind(subscription);
    for s in states {
        query = query.bind(s.as_str());
    }
    if let Some(a) = after {
        query = query.bind(a);
    }
    let rows = query
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    rows.iter().map(webhook_row).collect()
}

pub(super) async fn webhook(
    pool: &AnyPool,
    backend: Backend,
    subscription: &str,
    alert_id: i64,
) -> StoreResult<WebhookRow> {
    let text =
        format!("SELECT {COLUMNS} FROM webhook_deliveries WHERE subscription = ? AND alert_id = ?");
    let row = sqlx::query(AssertSqlSafe(placeholders(backend, &text)))
        .bind(subscription)
        .bind(alert_id)
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    match row {
        Some(r) => webhook_row(&r),
        None => Err(StoreError::NotFound(format!(
            "webhookSubscriptions/{subscription}/deliveries/{alert_id}"
        ))),
    }
}

pub(super) async fn webhook_backlog(
    pool: &AnyPool,
    backend: Backend,
) -> StoreResult<(i64, Option<DateTime<Utc>>)> {
    let row = sqlx::query(q(
        backend,
        "SELECT COUNT(*) AS n, MIN(taken_us) AS oldest FROM webhook_deliveries WHERE state = 'pending'",
    ))
    .fetch_one(pool)
    .await
    .map_err(db_error)?;
    let n: i64 = row.try_get("n").map_err(db_error)?;
    let oldest: Option<i64> = row.try_get("oldest").map_err(db_error)?;
    Ok((n, opt_from_us(oldest)?))
}

impl SqlTx {
    pub(super) async fn webhooks_take_lease(
        &mut self,
        subscription: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        start: (i64, i64),
    ) -> StoreResult<bool> {
        sqlx::query(self.q(
            "INSERT INTO subscription_cursors (subscription, cursor_tx, cursor_id, lease_until_us) \
             VALUES (?, ?, ?, 0) ON CONFLICT (subscription) DO NOTHING",
        ))
        .bind(subscription)
        .bind(start.0)
        .bind(start.1)
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        let r = sqlx::query(self.q(
            "UPDATE subscription_cursors SET lease_owner = ?, lease_until_us = ? \
             WHERE subscription = ? AND (lease_owner IS NULL OR lease_owner = ? OR lease_until_us < ?)",
        ))
        .bind(owner)
        .bind(us(until))
        .bind(subscription)
        .bind(owner)
        .bind(us(now))
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        Ok(r.rows_affected() == 1)
    }

    pub(super) async fn webhooks_take_alerts(
        &mut self,
        subscription: &str,
        owner: &str,
        now: DateTime<Utc>,
        cursor: (i64, i64),
        rows: &[WebhookRow],
    ) -> StoreResult<bool> {
        let r = sqlx::query(self.q(
            "UPDATE subscription_cursors SET cursor_tx = ?, cursor_id = ? \
             WHERE subscription = ? AND lease_owner = ? AND lease_until_us >= ?",
        ))
        .bind(cursor.0)
        .bind(cursor.1)
        .bind(subscription)
        .bind(owner)
        .bind(us(now))
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        // The key is (organization, subscription, alert_id) on Postgres (distributable by
        // organisation), (subscription, alert_id) on SQLite: the same pairs either way, as
        // an alert has one organisation, and the key is the table's only unique index.
        for w in rows {
            sqlx::query(self.q(
                "INSERT INTO webhook_deliveries (subscription, alert_id, organization, ticket_id, kind, \
                 record_us, taken_us, payload, state, attempts, next_us) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) \
                 ON CONFLICT DO NOTHING",
            ))
            .bind(subscription)
            .bind(w.alert_id)
            .bind(w.organization.as_str())
            .bind(w.ticket_id.as_str())
            .bind(w.kind.as_str())
            .bind(us(w.recorded_at))
            .bind(us(w.taken_at))
            .bind(w.payload.as_str())
            .bind(WebhookState::Pending.as_str())
            .bind(us(w.next_at))
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        }
        Ok(true)
    }

    pub(super) async fn webhooks_finish_attempt(
        &mut self,
        subscription: &str,
        alert_id: i64,
        at: DateTime<Utc>,
        status: Option<i64>,
        error: Option<&str>,
        outcome: AttemptOutcome,
    ) -> StoreResult<()> {
        let (state, next, done) = match outcome {
            AttemptOutcome::Delivered => (WebhookState::Delivered, at, Some(us(at))),
            AttemptOutcome::Retry { next_at } => (WebhookState::Pending, next_at, None),
            AttemptOutcome::Dead => (WebhookState::Dead, at, Some(us(at))),
        };
        sqlx::query(self.q(
            "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, next_us = ?, \
             first_attempt_us = COALESCE(first_attempt_us, ?), last_status = ?, last_error = ?, \
             done_us = ? WHERE subscription = ? AND alert_id = ? AND state = 'pending'",
        ))
        .bind(state.as_str())
        .bind(us(next))
        .bind(us(at))
        .bind(status)
        .bind(error)
        .bind(done)
        .bind(subscription)
        .bind(alert_id)
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    pub(super) async fn webhooks_set_health(
        &mut self,
        subscription: &str,
        failing_since: Option<Option<DateTime<Utc>>>,
        disabled_reason: Option<Option<&str>>,
    ) -> StoreResult<()> {
        if let Some(f) = failing_since {
            sqlx::query(
                self.q(
                    "UPDATE subscription_cursors SET failing_since_us = ? WHERE subscription = ?",
                ),
            )
            .bind(f.map(us))
            .bind(subscription)
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        }
        if let Some(d) = disabled_reason {
            sqlx::query(
                self.q(
                    "UPDATE subscription_cursors SET disabled_reason = ? WHERE subscription = ?",
                ),
            )
            .bind(d)
            .bind(subscription)
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        }
        Ok(())
    }

    pub(super) async fn webhooks_replay(
        &mut self,
        subscription: &str,
        alert_id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = sqlx::query(self.q(
            "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_us = ?, \
             first_attempt_us = NULL, done_us = NULL \
             WHERE subscription = ? AND alert_id = ? AND state <> 'pending'",
        ))
        .bind(us(now))
        .bind(subscription)
        .bind(alert_id)
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        Ok(r.rows_affected() > 0)
    }
}
