//! Webhooks out (docs/alerts.md): subscriptions, and the worker that delivers the alert
//! log to them.
//!
//! The alert log is the outbox: an alert is written in the same transaction as its
//! cause. Each subscription reads it from its own cursor; what it wants is taken into its
//! deliveries (cursor and deliveries in one transaction, no write in the alert's), and
//! delivered at least once, in alert order per ticket: a ticket's pending delivery holds
//! back its later ones until delivered or dead-lettered. One replica delivers a
//! subscription at a time: it holds the subscription's lease (a row it renews by a
//! conditional update); a replica that dies stops renewing, and another takes over when
//! the lease runs out. Each POST is signed with the Standard Webhooks scheme, by every
//! secret the subscription holds (two during a rotation).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::alerts::{Alert, alert};
use super::answer::Answer;
use super::catalog::{Idempotent, at_version, json};
use super::connections::{MAX_SECRETS, SecretInfo, fingerprint, with_secret, without_secret};
use super::error::{AppError, AppResult};
use super::{App, page, parse_body};
use crate::domain::names::{ResourceId, ShortText};
use crate::domain::signing::{SigningSecret, standard};
use crate::domain::webhook::{
    AlertKind, DestinationPolicy, SubscriptionSpec, allowed_address, backoff, destination,
};
use crate::store::{
    AlertFilter, AttemptOutcome, ResourceKind, ResourceVersion, SecretRow, Store, StoreTx as _,
    SubscriptionCursor, WebhookRow, WebhookState,
};

/// A subscription as the API shows it.
#[derive(Debug, Clone)]
pub struct SubscriptionView {
    pub version: ResourceVersion,
    pub spec: SubscriptionSpec,
    pub secrets: Vec<SecretInfo>,
    /// Its cursor, lease and health; `None` before its first run.
    pub state: Option<SubscriptionCursor>,
}

/// Renders a subscription as the transport stores and returns it.
pub type RenderSubscription<'a, A> = &'a (dyn Fn(&SubscriptionView) -> AppResult<A> + Sync);

/// The fields an update may change; the organisation is fixed at creation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SubscriptionPatch {
    pub display_name: Option<ShortText>,
    pub kinds: Option<Vec<AlertKind>>,
    pub url: Option<String>,
    /// `Some(true)` re-enables one disabled for failing.
    pub enabled: Option<bool>,
}

/// The key of a subscription's secrets in the secrets table.
fn secrets_key(id: &str) -> String {
    format!("webhookSubscriptions/{id}")
}

/// Posts a webhook: the transport's HTTP client (checked destinations, no redirects).
pub trait WebhookSender: Send + Sync {
    /// POSTs `body` to `url` with `headers`: the response's status, or why there is none.
    fn post(
        &self,
        url: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send>>;
}

/// Renders an alert as the JSON body a receiver gets.
pub type PayloadRender = Arc<dyn Fn(&Alert) -> AppResult<String> + Send + Sync>;

/// How deliveries run.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    pub destinations: DestinationPolicy,
    /// How long a delivery is retried before it is dead-lettered; a subscription with no
    /// success for this long is disabled.
    pub retry_for: TimeDelta,
    /// The longest one attempt may take.
    pub attempt_timeout: Duration,
    /// First retry delay (doubling) and the longest.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How long a lease lasts unless renewed.
    pub lease: TimeDelta,
    /// How often the worker looks for work nothing woke it for.
    pub poll: Duration,
    /// Deliveries (of different tickets) attempted at once per subscription.
    pub concurrency: usize,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            destinations: DestinationPolicy::default(),
            retry_for: TimeDelta::hours(24),
            attempt_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(3600),
            lease: TimeDelta::seconds(30),
            poll: Duration::from_secs(1),
            concurrency: 16,
        }
    }
}

fn view(
    version: ResourceVersion,
    secrets: &[SecretRow],
    state: Option<SubscriptionCursor>,
) -> AppResult<SubscriptionView> {
    Ok(SubscriptionView {
        spec: parse_body(&version)?,
        version,
        secrets: secrets
            .iter()
            .map(|s| SecretInfo {
                fingerprint: s.fingerprint.clone(),
                created_at: s.created_at,
            })
            .collect(),
        state,
    })
}

fn secret_rows(field: &str, texts: &[String], now: DateTime<Utc>) -> AppResult<Vec<SecretRow>> {
    let mut rows: Vec<SecretRow> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let key = SigningSecret::parse(text)
            .map_err(|e| AppError::invalid(format!("{field}[{i}]"), e))?
            .key()
            .to_vec();
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

impl<S: Store> App<S> {
    fn check_destination(&self, field: &str, url: &str) -> AppResult<()> {
        destination(url, self.webhook_destinations)
            .map(|_| ())
            .map_err(|e| AppError::invalid(field, e))
    }

    /// Creates a subscription with its first secrets (one or two).
    pub async fn create_subscription<A: Answer>(
        &self,
        (idem, fp): Idempotent<'_>,
        id: &ResourceId,
        display_name: &ShortText,
        spec: &SubscriptionSpec,
        secrets: &[String],
        render: RenderSubscription<'_, A>,
    ) -> AppResult<A> {
        if let Some(answer) = self.replay(idem, fp).await? {
            return Ok(answer);
        }
        if secrets.is_empty() || secrets.len() > MAX_SECRETS {
            return Err(AppError::invalid(
                "secrets",
                format!("give 1 to {MAX_SECRETS} secrets (whsec_…): receivers check signatures"),
            ));
        }
        self.check_destination("webhook_subscription.url", &spec.url)?;
        let rows = secret_rows("secrets", secrets, self.now())?;
        if let Some(org) = &spec.organization {
            self.require_live(
                ResourceKind::Organization,
                org,
                "webhook_subscription.organization",
            )
            .await?;
        }
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fp).await? {
            return Ok(answer);
        }
        let v = tx
            .create_resource(
                ResourceKind::Subscription,
                id,
                display_name.as_str(),
                &json(spec)?,
                self.now(),
            )
            .await?;
        let org = spec.organization.as_ref().map(|o| o.as_str()).unwrap_or("");
        for row in &rows {
            tx.insert_secret(org, &secrets_key(id.as_str()), row)
                .await?;
        }
        let answer = render(&view(v, &rows, None)?)?;
        self.finish(tx, &idem.key, &answer).await?;
        self.subscriptions_changed.notify_waiters();
        Ok(answer)
    }

    pub async fn subscription(&self, id: &ResourceId) -> AppResult<SubscriptionView> {
        let v = self
            .store
            .get_resource(ResourceKind::Subscription, id, None)
            .await?;
        let secrets = self
            .store
            .connection_secrets(&secrets_key(id.as_str()))
            .await?;
        let state = self.store.subscription_cursor(id.as_str()).await?;
        view(v, &secrets, state)
    }

    /// A page of subscriptions (of one organisation, or of those `allowed`; an
    /// all-organisations subscription only for a caller allowed everything), in id order.
    pub async fn list_subscriptions(
        &self,
        organization: Option<&ResourceId>,
        allowed: &(dyn Fn(Option<&ResourceId>) -> bool + Sync),
        size: u32,
        page_token: &str,
        show_deleted: bool,
    ) -> AppResult<(Vec<SubscriptionView>, String)> {
        let query = format!(
            "subscriptions:{show_deleted}:{}",
            organization.map(|o| o.as_str()).unwrap_or("")
        );
        let mut after: Option<String> = page::decode(&query, page_token)?;
        let rows = self
            .store
            .list_resources(
                ResourceKind::Subscription,
                after.as_deref(),
                size + 1,
                show_deleted,
            )
            .await?;
        let more = rows.len() > size as usize;
        let mut out = Vec::new();
        for v in rows.into_iter().take(size as usize) {
            after = Some(v.id.to_string());
            let spec: SubscriptionSpec = parse_body(&v)?;
            if organization.is_some_and(|o| Some(o) != spec.organization.as_ref())
                || !allowed(spec.organization.as_ref())
            {
                continue;
            }
            let secrets = self
                .store
                .connection_secrets(&secrets_key(v.id.as_str()))
                .await?;
            let state = self.store.subscription_cursor(v.id.as_str()).await?;
            out.push(view(v, &secrets, state)?);
        }
        let next = match (more, after) {
            (true, Some(at)) => page::encode(&query, &at),
            _ => String::new(),
        };
        Ok((out, next))
    }

    /// Changes what `patch` sets; re-enabling clears a disabled subscription's reason.
    pub async fn update_subscription<A: Answer>(
        &self,
        (idem, fp): Idempotent<'_>,
        id: &ResourceId,
        patch: &SubscriptionPatch,
        expected: Option<u32>,
        render: RenderSubscription<'_, A>,
    ) -> AppResult<A> {
        if let Some(url) = &patch.url {
            self.check_destination("webhook_subscription.url", url)?;
        }
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fp).await? {
            return Ok(answer);
        }
        let current = tx
            .get_resource(ResourceKind::Subscription, id, None)
            .await?;
        if current.archived {
            return Err(AppError::FailedPrecondition(format!(
                "webhookSubscriptions/{id} is deleted; deleted resources do not change"
            )));
        }
        at_version(&current, expected)?;
        let mut spec: SubscriptionSpec = parse_body(&current)?;
        if let Some(k) = &patch.kinds {
            spec.kinds = k.clone();
        }
        if let Some(u) = &patch.url {
            spec.url = u.clone();
        }
        if let Some(e) = patch.enabled {
            spec.enabled = e;
            if e {
                tx.set_subscription_health(id.as_str(), Some(None), Some(None))
                    .await?;
            }
        }
        let name = patch
            .display_name
            .as_ref()
            .map(|n| n.as_str())
            .unwrap_or(&current.display_name);
        let now = self.now();
        let v = tx
            .add_version(
                ResourceKind::Subscription,
                id,
                name,
                &json(&spec)?,
                now,
                now,
            )
            .await?;
        let secrets = tx.secrets_of(&secrets_key(id.as_str())).await?;
        let mut state = self.store.subscription_cursor(id.as_str()).await?;
        if patch.enabled == Some(true)
            && let Some(st) = &mut state
        {
            // As this transaction leaves it.
            st.disabled_reason = None;
            st.failing_since = None;
        }
        let answer = render(&view(v, &secrets, state)?)?;
        self.finish(tx, &idem.key, &answer).await?;
        self.subscriptions_changed.notify_waiters();
        self.alerts_written.notify_waiters();
        Ok(answer)
    }

    /// Deletes (archives) a subscription: nothing more is delivered to it.
    pub async fn delete_subscription<A: Answer>(
        &self,
        (idem, fp): Idempotent<'_>,
        id: &ResourceId,
        render: RenderSubscription<'_, A>,
    ) -> AppResult<A> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fp).await? {
            return Ok(answer);
        }
        let v = tx.archive_resource(ResourceKind::Subscription, id).await?;
        let secrets = tx.secrets_of(&secrets_key(id.as_str())).await?;
        let state = self.store.subscription_cursor(id.as_str()).await?;
        let answer = render(&view(v, &secrets, state)?)?;
        self.finish(tx, &idem.key, &answer).await?;
        Ok(answer)
    }

    /// Adds a secret (the next one of a rotation): from then on every delivery carries a
    /// signature by each; at most two.
    pub async fn add_subscription_secret<A: Answer>(
        &self,
        (idem, fp): Idempotent<'_>,
        id: &ResourceId,
        secret: &str,
        render: RenderSubscription<'_, A>,
    ) -> AppResult<A> {
        let row = secret_rows(
            "secret",
            std::slice::from_ref(&secret.to_string()),
            self.now(),
        )
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
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fp).await? {
            return Ok(answer);
        }
        let v = tx
            .get_resource(ResourceKind::Subscription, id, None)
            .await?;
        if v.archived {
            return Err(AppError::FailedPrecondition(format!(
                "webhookSubscriptions/{id} is deleted"
            )));
        }
        let spec: SubscriptionSpec = parse_body(&v)?;
        let key = secrets_key(id.as_str());
        let current = tx.secrets_of(&key).await?;
        let secrets = with_secret(current, row.clone(), &format!("webhookSubscriptions/{id}"))?;
        let org = spec.organization.as_ref().map(|o| o.as_str()).unwrap_or("");
        tx.insert_secret(org, &key, &row).await?;
        let state = self.store.subscription_cursor(id.as_str()).await?;
        let answer = render(&view(v, &secrets, state)?)?;
        self.finish(tx, &idem.key, &answer).await?;
        Ok(answer)
    }

    /// Removes a secret, never the last one.
    pub async fn remove_subscription_secret<A: Answer>(
        &self,
        (idem, fp): Idempotent<'_>,
        id: &ResourceId,
        secret_fingerprint: &str,
        render: RenderSubscription<'_, A>,
    ) -> AppResult<A> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fp).await? {
            return Ok(answer);
        }
        let v = tx
            .get_resource(ResourceKind::Subscription, id, None)
            .await?;
        let key = secrets_key(id.as_str());
        let secrets = tx.secrets_of(&key).await?;
        let left = without_secret(
            secrets,
            secret_fingerprint,
            &format!("webhookSubscriptions/{id}"),
        )?;
        tx.delete_secret(&key, secret_fingerprint).await?;
        let state = self.store.subscription_cursor(id.as_str()).await?;
        let answer = render(&view(v, &left, state)?)?;
        self.finish(tx, &idem.key, &answer).await?;
        Ok(answer)
    }

    /// A page of a subscription's deliveries in these states (all when empty), newest
    /// alert first.
    pub async fn webhook_deliveries(
        &self,
        id: &ResourceId,
        states: &[WebhookState],
        size: u32,
        page_token: &str,
    ) -> AppResult<(Vec<WebhookRow>, String)> {
        let query = format!(
            "webhooks:{id}:{}",
            states
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let after: Option<i64> = page::decode(&query, page_token)?;
        let mut rows = self
            .store
            .webhooks_page(id.as_str(), states, after, size + 1)
            .await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next = match rows.last() {
            Some(r) if more => page::encode(&query, &r.alert_id),
            _ => String::new(),
        };
        Ok((rows, next))
    }

    pub async fn webhook_delivery(&self, id: &ResourceId, alert_id: i64) -> AppResult<WebhookRow> {
        Ok(self.store.webhook(id.as_str(), alert_id).await?)
    }

    /// Makes a dead (or delivered) delivery pending again: attempted at once, retried for
    /// a whole retry period.
    pub async fn replay_webhook<A: Answer>(
        &self,
        (idem, fp): Idempotent<'_>,
        id: &ResourceId,
        alert_id: i64,
        render: &(dyn Fn(&WebhookRow) -> AppResult<A> + Sync),
    ) -> AppResult<A> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fp).await? {
            return Ok(answer);
        }
        let mut row = self.store.webhook(id.as_str(), alert_id).await?;
        let now = self.now();
        if tx.replay_webhook(id.as_str(), alert_id, now).await? {
            row.state = WebhookState::Pending;
            row.attempts = 0;
            row.next_at = now;
            row.first_attempt_at = None;
            row.done_at = None;
        }
        let answer = render(&row)?;
        self.finish(tx, &idem.key, &answer).await?;
        self.alerts_written.notify_waiters();
        Ok(answer)
    }
}

/// A process's name for leases: unique per process.
fn owner() -> String {
    format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple())
}

/// Random jitter in [0, 1).
fn jitter() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Delivers every subscription, forever: one task per live, enabled subscription whose
/// lease this process holds.
pub async fn run_webhooks<S: Store>(
    app: Arc<App<S>>,
    render: PayloadRender,
    sender: Arc<dyn WebhookSender>,
    options: WebhookOptions,
) {
    let me = owner();
    let mut running = Tasks(HashMap::new());
    loop {
        running.0.retain(|_, h| !h.is_finished());
        let mut after: Option<String> = None;
        loop {
            let page = match app
                .store
                .list_resources(ResourceKind::Subscription, after.as_deref(), 500, false)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: cannot list subscriptions");
                    break;
                }
            };
            let full = page.len() >= 500;
            for v in page {
                after = Some(v.id.to_string());
                let id = v.id.to_string();
                if running.0.contains_key(&id) {
                    continue;
                }
                let task = Subscription {
                    app: Arc::clone(&app),
                    id: id.clone(),
                    owner: me.clone(),
                    render: Arc::clone(&render),
                    sender: Arc::clone(&sender),
                    options: options.clone(),
                };
                running.0.insert(id, tokio::spawn(task.run()));
            }
            if !full {
                break;
            }
        }
        // Not woken by every alert (each would cost a listing): a subscription made or
        // changed in this process wakes it, one made elsewhere is seen within `poll`.
        let _ = tokio::time::timeout(options.poll, app.subscriptions_changed.notified()).await;
    }
}

/// The subscriptions' tasks, stopped with the worker (a server shutting down stops
/// delivering, and its leases run out for the other replicas).
struct Tasks(HashMap<String, tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in self.0.values() {
            h.abort();
        }
    }
}

/// One subscription's delivery loop, while this process holds its lease.
struct Subscription<S: Store> {
    app: Arc<App<S>>,
    id: String,
    owner: String,
    render: PayloadRender,
    sender: Arc<dyn WebhookSender>,
    options: WebhookOptions,
}

/// Alerts read from the log per round.
const TAKE: u32 = 500;

impl<S: Store> Subscription<S> {
    async fn run(self) {
        loop {
            match self.round().await {
                Ok(Some(wait)) => {
                    let woken = self.app.alerts_written.notified();
                    let _ = tokio::time::timeout(wait, woken).await;
                }
                // Not ours (another replica holds it), deleted or disabled: the
                // supervisor looks again next time.
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, subscription = %self.id, "webhooks: round failed; retried");
                    tokio::time::sleep(self.options.poll).await;
                }
            }
        }
    }

    /// One round: renew the lease, take new alerts, attempt what is due. How long to
    /// wait before the next round, or `None` to stop.
    async fn round(&self) -> AppResult<Option<Duration>> {
        let app = &self.app;
        let id = ResourceId::parse(&self.id).map_err(|e| AppError::Internal(e.to_string()))?;
        let v = app
            .store
            .get_resource(ResourceKind::Subscription, &id, None)
            .await?;
        let spec: SubscriptionSpec = parse_body(&v)?;
        if v.archived || !spec.enabled {
            return Ok(None);
        }
        let now = app.now();
        let mut tx = app.store.begin().await?;
        // A new subscription starts at the log's beginning but takes only alerts
        // recorded from its creation on.
        let ours = tx
            .take_lease(
                &self.id,
                &self.owner,
                now,
                now + self.options.lease,
                (i64::MIN, i64::MIN),
            )
            .await?;
        tx.commit().await?;
        if !ours {
            return Ok(None);
        }
        let Some(state) = app.store.subscription_cursor(&self.id).await? else {
            return Ok(None);
        };
        if state.disabled_reason.is_some() {
            return Ok(None);
        }
        // The subscription's health as this round goes (only the lease holder changes it).
        let mut failing_since = state.failing_since;
        self.take(&spec, state.cursor, v.created_at).await?;
        let secrets: Vec<SigningSecret> = app
            .store
            .connection_secrets(&secrets_key(&self.id))
            .await?
            .into_iter()
            .filter_map(|s| SigningSecret::from_key(s.secret).ok())
            .collect();
        // Attempts until nothing is due, the lease renewed before each batch.
        loop {
            let due = app
                .store
                .webhooks_due(&self.id, app.now(), self.options.concurrency as u32)
                .await?;
            if due.is_empty() {
                break;
            }
            let mut attempts = tokio::task::JoinSet::new();
            for row in due {
                let sender = Arc::clone(&self.sender);
                let url = spec.url.clone();
                let secrets = secrets.clone();
                let timeout = self.options.attempt_timeout;
                let destinations = app.webhook_destinations;
                let clock = Arc::clone(&app.clock);
                attempts.spawn(async move {
                    let at = clock.now();
                    let r = attempt(
                        sender.as_ref(),
                        &url,
                        &secrets,
                        &row,
                        at,
                        timeout,
                        destinations,
                    )
                    .await;
                    (row, at, r)
                });
            }
            let mut disabled = false;
            while let Some(done) = attempts.join_next().await {
                let Ok((row, at, result)) = done else {
                    continue;
                };
                disabled |= self.record(&row, at, result, &mut failing_since).await?;
            }
            let now = app.now();
            let mut tx = app.store.begin().await?;
            let still = tx
                .take_lease(&self.id, &self.owner, now, now + self.options.lease, (0, 0))
                .await?;
            tx.commit().await?;
            if !still || disabled {
                return Ok(None);
            }
        }
        let next = app.store.webhook_next_at(&self.id).await?;
        let until_next = next
            .map(|n| (n - app.now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(self.options.poll);
        // Renew well before the lease runs out.
        let renew = (self.options.lease / 3)
            .to_std()
            .unwrap_or(self.options.poll);
        Ok(Some(until_next.min(self.options.poll).min(renew)))
    }

    /// Takes the alerts the subscription wants from its cursor on.
    async fn take(
        &self,
        spec: &SubscriptionSpec,
        mut cursor: (i64, i64),
        created_at: DateTime<Utc>,
    ) -> AppResult<()> {
        let app = &self.app;
        let filter = AlertFilter {
            organization: spec.organization.as_ref().map(|o| o.to_string()),
            metric: None,
        };
        loop {
            let page = app.store.alerts_after(cursor, &filter, TAKE).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            let next_cursor = last.cursor;
            let full = page.len() >= TAKE as usize;
            let now = app.now();
            let mut rows = Vec::new();
            for r in page {
                if r.recorded_at < created_at || !spec.wants(&r.organization, &r.kind) {
                    continue;
                }
                let a = alert(r)?;
                let payload = (self.render)(&a)?;
                rows.push(WebhookRow {
                    subscription: self.id.clone(),
                    alert_id: a.row.cursor.1,
                    organization: a.row.organization.clone(),
                    ticket_id: a.row.ticket_id.clone(),
                    kind: a.row.kind.clone(),
                    recorded_at: a.row.recorded_at,
                    taken_at: now,
                    payload,
                    state: WebhookState::Pending,
                    attempts: 0,
                    next_at: now,
                    first_attempt_at: None,
                    last_status: None,
                    last_error: None,
                    done_at: None,
                });
            }
            let mut tx = app.store.begin().await?;
            if !tx
                .take_alerts(&self.id, &self.owner, now, next_cursor, &rows)
                .await?
            {
                return Err(AppError::Aborted(format!(
                    "webhookSubscriptions/{}: the lease went to another replica",
                    self.id
                )));
            }
            tx.commit().await?;
            cursor = next_cursor;
            if !full {
                return Ok(());
            }
        }
    }

    /// Records an attempt's outcome, and the subscription's health; whether it disabled
    /// the subscription.
    async fn record(
        &self,
        row: &WebhookRow,
        at: DateTime<Utc>,
        result: Result<u16, String>,
        failing_since: &mut Option<DateTime<Utc>>,
    ) -> AppResult<bool> {
        let app = &self.app;
        let options = &self.options;
        let (status, error) = match &result {
            Ok(s) if (200..300).contains(s) => (Some(i64::from(*s)), None),
            Ok(s) => (
                Some(i64::from(*s)),
                Some(format!("the receiver answered HTTP {s}")),
            ),
            Err(e) => (None, Some(e.clone())),
        };
        let mut disabled = false;
        let mut tx = app.store.begin().await?;
        let outcome = match &error {
            None => {
                app.metrics
                    .webhook_out_attempt("delivered", (app.now() - row.recorded_at).to_std().ok());
                if failing_since.take().is_some() {
                    tx.set_subscription_health(&self.id, Some(None), None)
                        .await?;
                }
                AttemptOutcome::Delivered
            }
            Some(e) => {
                let first = row.first_attempt_at.unwrap_or(at);
                let first_failure = failing_since.is_none();
                let since = *failing_since.get_or_insert(at);
                if first_failure {
                    tx.set_subscription_health(&self.id, Some(Some(at)), None)
                        .await?;
                }
                if at - first >= options.retry_for {
                    app.metrics.webhook_out_attempt("dead", None);
                    if at - since >= options.retry_for {
                        let reason = format!(
                            "no delivery succeeded since {}; the last failed: {e}",
                            since.to_rfc3339()
                        );
                        tracing::warn!(subscription = %self.id, %reason, "webhooks: subscription disabled");
                        tx.set_subscription_health(&self.id, None, Some(Some(&reason)))
                            .await?;
                        disabled = true;
                    }
                    AttemptOutcome::Dead
                } else {
                    app.metrics.webhook_out_attempt("failed", None);
                    let n = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
                    let wait = backoff(n, options.backoff_base, options.backoff_cap, jitter());
                    AttemptOutcome::Retry {
                        next_at: at + TimeDelta::from_std(wait).unwrap_or(TimeDelta::hours(1)),
                    }
                }
            }
        };
        tx.finish_attempt(
            &self.id,
            row.alert_id,
            at,
            status,
            error
                .as_deref()
                .map(|e| crate::app::error::bounded(e, 500))
                .as_deref(),
            outcome,
        )
        .await?;
        tx.commit().await?;
        Ok(disabled)
    }
}

/// One POST of a delivery, signed by every secret.
async fn attempt(
    sender: &dyn WebhookSender,
    url: &str,
    secrets: &[SigningSecret],
    row: &WebhookRow,
    at: DateTime<Utc>,
    timeout: Duration,
    destinations: DestinationPolicy,
) -> Result<u16, String> {
    // The destination as it stands now (the server's settings may have changed).
    let d = destination(url, destinations)?;
    if let Ok(ip) = d.host.parse()
        && !allowed_address(ip, destinations)
    {
        return Err(format!("{ip} is not an allowed destination"));
    }
    let id = format!("msg_{}_{}", row.subscription, row.alert_id);
    let ts = at.timestamp();
    let body = row.payload.as_bytes();
    let signature = secrets
        .iter()
        .map(|s| standard::sign(s, &id, ts, body))
        .collect::<Vec<_>>()
        .join(" ");
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("webhook-id".to_string(), id),
        ("webhook-timestamp".to_string(), ts.to_string()),
        ("webhook-signature".to_string(), signature),
        (
            "user-agent".to_string(),
            format!("servicelevel/{}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    match tokio::time::timeout(timeout, sender.post(url, headers, body.to_vec())).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
    }
}
