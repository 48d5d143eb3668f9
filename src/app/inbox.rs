//! Webhooks in: a delivery is checked (its connection live, its signature good), kept in
//! the connection's inbox (unique on the provider's delivery id, so a retry or a replay
//! by an attacker stores nothing twice) and answered; a worker applies the inbox
//! afterwards, through the same ticket use cases as `BatchUpsertTickets`.
//!
//! Applying a delivery, in one transaction: lock it (still pending), read its snapshot
//! in the connection's current mapping, lock the source ticket's row (serialising the
//! deliveries of one ticket across workers and replicas), keep it as stale if the source
//! already showed a newer state, else find or create the ticket within the
//! organisation and record the events that bring it to the snapshot, each under a
//! request id derived from the delivery's (so applying it again records nothing twice).
//! What cannot be applied is kept as failed with its reason, and replayable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::answer::{Answer, Idempotency};
use super::catalog::Idempotent;
use super::error::{AppError, AppResult, ErrorReason};
use super::tickets::{NewTicket, TicketView};
use super::{App, page, parse_body};
use crate::domain::connection::ConnectionSpec;
use crate::domain::connection::payloads::{read, split};
use crate::domain::connection::signatures::{Signed, verify};
use crate::domain::connection::snapshot::{Current, changes, map};
use crate::domain::names::{PriorityLabel, ResourceId};
use crate::domain::status::Status;
use crate::domain::ticket::Actor;
use crate::store::{
    DeliveryKey, DeliveryState, IdempotencyKey, InboxRow, NewEvent, ResourceKind, Store,
    StoreError, StoreTx as _,
};

/// A webhook request as the transport received it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub connection: ResourceId,
    pub method: String,
    /// The URL as this server received it: scheme, host, path and query.
    pub url: String,
    /// The path and query, which a connection's public base URL prefixes.
    pub path_and_query: String,
    /// Headers with lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a request left in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Deliveries kept now.
    pub kept: usize,
    /// Deliveries already kept before (retries).
    pub duplicates: usize,
}

/// How the inbox worker runs.
#[derive(Debug, Clone)]
pub struct InboxOptions {
    /// Tickets applied at once (deliveries of one ticket always one after another).
    pub concurrency: usize,
    /// How often the worker looks for deliveries another replica kept.
    pub poll: Duration,
    /// How long done deliveries are kept (failed ones too); pending ones stay.
    pub retention: TimeDelta,
}

impl Default for InboxOptions {
    fn default() -> Self {
        InboxOptions {
            concurrency: 8,
            poll: Duration::from_millis(500),
            retention: TimeDelta::days(30),
        }
    }
}

/// Renders a ticket for the idempotency records its writes store (the transport's
/// answer type, as for any other write).
pub type TicketRender<A> = Arc<dyn Fn(&TicketView) -> A + Send + Sync>;

/// How one delivery ended.
struct Outcome {
    state: DeliveryState,
    reason: Option<String>,
    ticket: Option<String>,
}

impl Outcome {
    fn of(state: DeliveryState, reason: impl Into<String>) -> Self {
        Outcome {
            state,
            reason: Some(reason.into()),
            ticket: None,
        }
    }
}

/// The client name on what a connection records.
pub fn connection_client(id: &str) -> String {
    format!("connections/{id}")
}

/// Whether an error is the database's (try again later) rather than the delivery's.
fn transient(e: &AppError) -> bool {
    matches!(e, AppError::Unavailable(_) | AppError::Aborted(_))
}

impl<S: Store> App<S> {
    /// Checks a webhook request and keeps its deliveries. An unknown or archived
    /// connection is NOT_FOUND; a bad signature SIGNATURE_INVALID; nothing is stored
    /// then. The answer comes after the commit.
    pub async fn receive(&self, a: Arrival) -> AppResult<Received> {
        let not_found = || AppError::NotFound(format!("connections/{}", a.connection));
        let v = match self
            .store
            .get_resource(ResourceKind::Connection, &a.connection, None)
            .await
        {
            Ok(v) if !v.archived => v,
            Ok(_) | Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        let spec: ConnectionSpec = parse_body(&v)?;
        let keys: Vec<Vec<u8>> = self
            .store
            .connection_secrets(a.connection.as_str())
            .await?
            .into_iter()
            .map(|s| s.secret)
            .collect();
        let url = match &spec.public_base_url {
            Some(base) => format!("{base}{}", a.path_and_query),
            None => a.url.clone(),
        };
        let signed = Signed {
            method: &a.method,
            url: &url,
            headers: &a.headers,
            body: &a.body,
        };
        let now = self.now();
        verify(spec.provider, &keys, &signed, now).map_err(|e| {
            AppError::reasoned(
                ErrorReason::SignatureInvalid,
                format!("connections/{}: {e}", a.connection),
            )
            .with("connection", a.connection.to_string())
        })?;
        let deliveries =
            split(spec.provider, &signed).map_err(|e| AppError::invalid("body", e.0))?;
        let rows: Vec<InboxRow> = deliveries
            .into_iter()
            .map(|d| {
                let (state, reason, external_id, source_at, done_at) =
                    match read(spec.provider, &d.body, now) {
                        Ok(s) => match s.ignored {
                            Some(why) => (DeliveryState::Ignored, Some(why), None, None, Some(now)),
                            None => (
                                DeliveryState::Pending,
                                None,
                                s.external_id.map(|e| e.to_string()),
                                s.at,
                                None,
                            ),
                        },
                        Err(e) => (DeliveryState::Failed, Some(e.0), None, None, Some(now)),
                    };
                InboxRow {
                    key: DeliveryKey {
                        organization: spec.organization.to_string(),
                        connection: a.connection.to_string(),
                        delivery_id: d.id,
                    },
                    received_at: now,
                    body: d.body,
                    state,
                    reason,
                    attempts: 0,
                    external_id,
                    source_at,
                    ticket_id: None,
                    done_at,
                }
            })
            .collect();
        let mut tx = self.store.begin().await?;
        let fresh = tx.insert_deliveries(&rows).await?;
        tx.commit().await?;
        let kept = fresh.iter().filter(|f| **f).count();
        self.metrics
            .webhook_deliveries(spec.provider.as_str(), kept, fresh.len() - kept);
        if kept > 0 {
            self.inbox_wake.notify_one();
        }
        Ok(Received {
            kept,
            duplicates: fresh.len() - kept,
        })
    }

    /// Applies one pending delivery (a no-op if another worker has it or it is done);
    /// returns how it ended, `None` if it was not this worker's to apply.
    pub async fn apply_delivery<A: Answer>(
        &self,
        key: &DeliveryKey,
        render: &(dyn Fn(&TicketView) -> A + Sync),
    ) -> AppResult<Option<DeliveryState>> {
        let mut tx = self.store.begin().await?;
        let Some(row) = tx.lock_delivery(key).await? else {
            return Ok(None);
        };
        match self.apply_in(&mut tx, &row, render).await {
            Ok(o) => {
                tx.finish_delivery(
                    key,
                    o.state,
                    o.reason.as_deref(),
                    o.ticket.as_deref(),
                    self.now(),
                )
                .await?;
                self.commit(tx).await?;
                Ok(Some(o.state))
            }
            Err(e) if transient(&e) => Err(e),
            Err(e) => {
                // What the delivery did so far goes; only its failure is kept.
                drop(tx);
                let mut tx = self.store.begin().await?;
                if tx.lock_delivery(key).await?.is_none() {
                    return Ok(None);
                }
                tx.finish_delivery(
                    key,
                    DeliveryState::Failed,
                    Some(&e.to_string()),
                    None,
                    self.now(),
                )
                .await?;
                tx.commit().await?;
                Ok(Some(DeliveryState::Failed))
            }
        }
    }

    async fn apply_in<A: Answer>(
        &self,
        tx: &mut S::Tx,
        row: &InboxRow,
        render: &(dyn Fn(&TicketView) -> A + Sync),
    ) -> AppResult<Outcome> {
        let key = &row.key;
        let id =
            ResourceId::parse(&key.connection).map_err(|e| AppError::Internal(e.to_string()))?;
        let v = tx.get_resource(ResourceKind::Connection, &id, None).await?;
        if v.archived {
            return Ok(Outcome::of(
                DeliveryState::Failed,
                "the connection is archived",
            ));
        }
        let spec: ConnectionSpec = parse_body(&v)?;
        let snapshot = match read(spec.provider, &row.body, row.received_at) {
            Ok(s) => s,
            Err(e) => return Ok(Outcome::of(DeliveryState::Failed, e.0)),
        };
        if let Some(why) = snapshot.ignored {
            return Ok(Outcome::of(DeliveryState::Ignored, why));
        }
        let m = match map(snapshot, &spec.mapping) {
            Ok(m) => m,
            Err(why) => return Ok(Outcome::of(DeliveryState::Failed, why)),
        };
        let org = spec.organization.as_str();
        let last = tx
            .lock_source_ticket(org, &key.connection, m.external_id.as_str())
            .await?;
        if let Some(last) = last
            && m.at < last
        {
            return Ok(Outcome::of(
                DeliveryState::Stale,
                format!(
                    "the source showed this ticket at {} already; this snapshot is of {}",
                    last.to_rfc3339(),
                    m.at.to_rfc3339()
                ),
            ));
        }
        let client = connection_client(&key.connection);
        let existing = tx
            .find_ticket(
                &spec.organization,
                spec.source_system.as_str(),
                m.external_id.as_str(),
            )
            .await?;
        let (ticket_id, current) = match existing {
            Some(r) => (
                r.ticket.id,
                Current {
                    status: r.status,
                    priority: r.priority.and_then(|p| PriorityLabel::parse(&p).ok()),
                },
            ),
            None => {
                let Some(request_type) = m.request_type.clone() else {
                    return Ok(Outcome::of(
                        DeliveryState::Failed,
                        "the ticket is new and has no request type: map the source's type or set the mapping's default_request_type",
                    ));
                };
                let create = Idempotency::new(IdempotencyKey {
                    client: client.clone(),
                    method: "ApplyDelivery",
                    request_id: key.delivery_id.clone(),
                });
                let t = NewTicket {
                    organization: spec.organization.clone(),
                    source_system: spec.source_system.clone(),
                    external_id: m.external_id.clone(),
                    request_type,
                    priority: m.priority.clone(),
                    received_at: m.received_at,
                    requested_by: m.requested_by.clone(),
                    estimate_minutes: None,
                    scheduled_at: None,
                };
                let (_, _, made) = self.create_ticket_in(tx, &create, t, render).await?;
                let made = made.ok_or_else(|| {
                    AppError::Internal(format!(
                        "delivery {}: its ticket was created before but is gone",
                        key.delivery_id
                    ))
                })?;
                (
                    made,
                    Current {
                        status: Status::New,
                        priority: m.priority.clone(),
                    },
                )
            }
        };
        let events = changes(&m, &current);
        let changed = !events.is_empty();
        for c in events {
            let e = NewEvent {
                occurred_at: m.at,
                kind: c.kind,
                actor: Actor {
                    client: client.clone(),
                    contact: m.requested_by.clone(),
                },
                request_id: format!("{}:{}", key.delivery_id, c.suffix),
            };
            self.record_event_in(tx, None, &ticket_id, e, render)
                .await?;
        }
        tx.set_source_ticket(org, &key.connection, m.external_id.as_str(), m.at)
            .await?;
        Ok(Outcome {
            state: DeliveryState::Applied,
            reason: (!changed).then(|| "the ticket already was in this state".to_string()),
            ticket: Some(ticket_id),
        })
    }

    /// A page of a connection's deliveries in these states (all when empty), newest
    /// first.
    pub async fn deliveries(
        &self,
        connection: &ResourceId,
        states: &[DeliveryState],
        size: u32,
        page_token: &str,
    ) -> AppResult<(Vec<InboxRow>, String)> {
        let query = format!(
            "deliveries:{connection}:{}",
            states
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let after: Option<(i64, String)> = page::decode(&query, page_token)?;
        let mut rows = self
            .store
            .deliveries_page(connection.as_str(), states, after, size + 1)
            .await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next = match rows.last() {
            Some(r) if more => page::encode(
                &query,
                &(r.received_at.timestamp_micros(), r.key.delivery_id.clone()),
            ),
            _ => String::new(),
        };
        Ok((rows, next))
    }

    pub async fn delivery(&self, connection: &ResourceId, id: &str) -> AppResult<InboxRow> {
        Ok(self.store.delivery(connection.as_str(), id).await?)
    }

    /// Makes deliveries pending again (one, or every one of a connection in these
    /// states) so the worker applies them in the connection's current mapping; the answer
    /// is rendered from how many.
    pub async fn replay_deliveries<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        connection: &ResourceId,
        delivery_id: Option<&str>,
        states: &[DeliveryState],
        render: &(dyn Fn(u64) -> AppResult<A> + Sync),
    ) -> AppResult<A> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fingerprint).await? {
            return Ok(answer);
        }
        tx.get_resource(ResourceKind::Connection, connection, None)
            .await?;
        let n = tx
            .replay_deliveries(connection.as_str(), delivery_id, states)
            .await?;
        let answer = render(n)?;
        self.finish(tx, &idem.key, &answer).await?;
        self.inbox_wake.notify_one();
        Ok(answer)
    }
}

/// Applies the inbox until the process stops: whatever this replica kept (woken at
/// once) and, every `poll`, what others kept. Deliveries of one ticket are applied one
/// after another in their source's order; different tickets at once, up to
/// `concurrency`.
pub async fn run_inbox<S: Store, A: Answer + Send + Sync + 'static>(
    app: Arc<App<S>>,
    render: TicketRender<A>,
    options: InboxOptions,
) {
    let mut last_purge: Option<DateTime<Utc>> = None;
    loop {
        // Short rounds: a delivery kept during a round waits for the round to end.
        let batch = match app.store.pending_deliveries(256).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "inbox: cannot read pending deliveries");
                tokio::time::sleep(options.poll).await;
                continue;
            }
        };
        if batch.is_empty() {
            let now = app.now();
            if last_purge.is_none_or(|p| now - p > TimeDelta::minutes(1)) {
                last_purge = Some(now);
                match app.store.purge_inbox(now - options.retention, 10_000).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deliveries = n, "inbox: past retention, removed"),
                    Err(e) => tracing::warn!(error = %e, "inbox: cannot purge"),
                }
            }
            let _ = tokio::time::timeout(options.poll, app.inbox_wake.notified()).await;
            continue;
        }
        // One queue per source ticket, in the order read (source time, then arrival).
        let mut queues: Vec<Vec<InboxRow>> = Vec::new();
        let mut index: HashMap<(String, Option<String>), usize> = HashMap::new();
        for row in batch {
            let k = (row.key.connection.clone(), row.external_id.clone());
            let at = *index.entry(k).or_insert_with(|| {
                queues.push(Vec::new());
                queues.len() - 1
            });
            queues[at].push(row);
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
        let mut running = tokio::task::JoinSet::new();
        let mut stalled = false;
        for queue in queues {
            let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
                break;
            };
            let app = Arc::clone(&app);
            let render = Arc::clone(&render);
            running.spawn(async move {
                let _permit = permit;
                for row in queue {
                    let key = row.key;
                    match app.apply_delivery(&key, render.as_ref()).await {
                        Ok(Some(state)) => {
                            let lag = app.now() - row.received_at;
                            app.metrics.webhook_applied(state.as_str(), lag);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, delivery = %key.delivery_id, "inbox: cannot apply now; retried");
                            // The rest of this ticket waits: they must follow this one.
                            return true;
                        }
                    }
                }
                false
            });
        }
        while let Some(r) = running.join_next().await {
            stalled |= r.unwrap_or(true);
        }
        if stalled {
            tokio::time::sleep(options.poll).await;
        }
    }
}
