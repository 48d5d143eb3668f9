//! Keeping each ticket's own events (warnings, breaches, due actions) in line with its
//! fold: after every write, when the runner finds a deadline passed, and after a calendar
//! or organisation change.

use chrono::{DateTime, Utc};
use tracing::Instrument as _;

use super::error::{AppError, AppResult};
use super::{App, Loaded, Reader, derived, rejected};
use crate::domain::clock::TicketState;
use crate::domain::names::ShortText;
use crate::domain::ticket::{ActionKind, Actor, Event, EventKind, SystemAction};
use crate::store::{AlertRow, NewEvent, Store, StoreTx, TicketRecord};

/// The client name on events servicelevel records itself.
pub const SYSTEM_ACTOR: &str = "servicelevel";

impl<S: Store> App<S> {
    /// Refolds a ticket as of now and rewrites its clocks index: after a calendar or
    /// organisation change, or when a deadline passed.
    pub async fn refresh_ticket(&self, ticket_id: &str) -> AppResult<()> {
        let mut tx = self.store.begin().await?;
        let record = tx.lock_ticket(ticket_id).await?;
        self.refresh_locked(tx, record).await
    }

    /// What the due-time runner does to a ticket whose clocks reached something: unless
    /// another replica holds it right now (then it is that replica's work), settle it.
    pub async fn run_due(&self, ticket_id: &str) -> AppResult<bool> {
        let mut tx = self.store.begin().await?;
        match tx.lock_ticket_skip(ticket_id).await? {
            Some(record) => self.refresh_locked(tx, record).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// The runner's batch: claims up to `limit` due tickets in one statement (passing
    /// over those another replica or batch holds), reads their events in one, settles
    /// each (a `due.run` span apiece) and commits once. Returns the tickets settled, or
    /// the error and the tickets claimed, none of which was written: the runner then
    /// settles those one at a time, so one ticket that fails holds up no other.
    pub async fn run_due_batch(&self, limit: u32) -> Result<usize, (AppError, Vec<String>)> {
        let mut claimed = Vec::new();
        match self.settle_batch(limit, &mut claimed).await {
            Ok(n) => Ok(n),
            Err(e) => Err((e, claimed)),
        }
    }

    async fn settle_batch(&self, limit: u32, claimed: &mut Vec<String>) -> AppResult<usize> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let records = tx.lock_due_tickets(now, limit).await?;
        if records.is_empty() {
            return Ok(0);
        }
        claimed.extend(records.iter().map(|r| r.ticket.id.clone()));
        let mut stored = tx.events_of_locked(claimed).await?;
        for record in &records {
            let id = &record.ticket.id;
            let span = tracing::info_span!("due.run", otel.kind = "internal", ticket = %id);
            // A trace of its own, linked to the call that created the ticket.
            if let Some(parent) = &record.trace_context {
                crate::telemetry::link_to(&span, parent);
            }
            let events = stored.remove(id).unwrap_or_default();
            self.settle_claimed(&mut tx, record, &events, now)
                .instrument(span)
                .await?;
        }
        tx.commit().await?;
        self.alerts_written.notify_waiters();
        Ok(records.len())
    }

    async fn settle_claimed(
        &self,
        tx: &mut S::Tx,
        record: &TicketRecord,
        stored: &[crate::store::StoredEvent],
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let loaded = self.load(&mut Reader::Tx(tx), record).await?;
        let mut events = App::<S>::events(stored);
        let state = self
            .settle(tx, record, &loaded, &mut events, now, None)
            .await?;
        tx.save_derived(record, &derived(&state), now).await?;
        Ok(())
    }

    async fn refresh_locked(&self, mut tx: S::Tx, record: TicketRecord) -> AppResult<()> {
        let ticket_id = record.ticket.id.clone();
        let stored = tx.ticket_events(&ticket_id).await?;
        let loaded = self.load(&mut Reader::Tx(&mut tx), &record).await?;
        let now = self.now();
        let mut events = App::<S>::events(&stored);
        let state = self
            .settle(&mut tx, &record, &loaded, &mut events, now, None)
            .await?;
        tx.save_derived(&record, &derived(&state), now).await?;
        tx.commit().await?;
        self.alerts_written.notify_waiters();
        Ok(())
    }

    /// Brings a locked ticket's own events in line with its fold as of `now`, in one
    /// fold: records what its clocks reached that is not recorded yet (each stamped with
    /// the instant it took effect and its due instant), and retracts what the fold no
    /// longer reaches (a later-arriving event showed it wrong). Each with an alert in the
    /// outbox, in this transaction. Returns the settled state.
    pub(crate) async fn settle(
        &self,
        tx: &mut S::Tx,
        record: &TicketRecord,
        loaded: &Loaded,
        events: &mut Vec<Event>,
        now: DateTime<Utc>,
        new_seq: Option<i64>,
    ) -> AppResult<TicketState> {
        let id = record.ticket.id.clone();
        let system = Actor {
            client: SYSTEM_ACTOR.to_string(),
            contact: None,
        };
        let state = self
            .fold(loaded, record, events, now)
            .map_err(|r| rejected(r, new_seq))?;
        for seq in &state.wrong {
            let metric = events
                .iter()
                .find(|e| e.seq == *seq)
                .and_then(|e| SystemAction::of_event(e.occurred_at, &e.kind))
                .map(|a| a.metric.to_string())
                .unwrap_or_default();
            let reason = ShortText::parse("a later-arriving event showed it wrong")
                .map_err(|e| AppError::Internal(e.to_string()))?;
            let e = tx
                .append_event(
                    &id,
                    &NewEvent {
                        occurred_at: now,
                        kind: EventKind::Retracted { seq: *seq, reason },
                        actor: system.clone(),
                        request_id: format!("sl:retract:{seq}"),
                    },
                    now,
                )
                .await?;
            self.alert(tx, record, &e, &metric, "retraction", now)
                .await?;
            events.push(e);
        }
        for a in &state.missing {
            let kind = match &a.what {
                ActionKind::Warning { .. } => "warning",
                ActionKind::Breach => "breach",
                ActionKind::Escalate { .. } => "escalation",
                ActionKind::MoveTo { .. } => "move",
            };
            // Telemetry: a span per action, linked to the ticket by its id; warnings
            // and breaches counted by metric and plan; the runner's lag measured.
            let span = tracing::info_span!(
                "sla.action",
                ticket = %id,
                organization = %record.ticket.organization,
                metric = %a.metric,
                action = kind,
                due_at = %a.due.to_rfc3339(),
                lag_ms = (now - a.at).num_milliseconds(),
            );
            let e = tracing::Instrument::instrument(
                tx.append_event(
                    &id,
                    &NewEvent {
                        occurred_at: a.at,
                        kind: a.event_kind(),
                        actor: system.clone(),
                        request_id: system_request_id(
                            events,
                            format!(
                                "sl:{}:{}:{kind}:{}",
                                a.metric,
                                a.instance,
                                a.at.timestamp_micros()
                            ),
                        ),
                    },
                    now,
                ),
                span.clone(),
            )
            .await?;
            tracing::Instrument::instrument(
                self.alert(tx, record, &e, a.metric.as_str(), kind, now),
                span,
            )
            .await?;
            // Counted once the transaction commits: a rolled-back one recorded nothing.
            let tier = loaded.organization().plan.as_ref().map(|p| p.to_string());
            let metric = a.metric.to_string();
            let lag = super::runner::in_due_run().then(|| now - a.at);
            let metrics = std::sync::Arc::clone(&self.metrics);
            tx.after_commit(Box::new(move || {
                metrics.clock_action(kind, &metric, tier.as_deref());
                if let Some(lag) = lag {
                    metrics.due_lag(kind, lag);
                }
            }));
            events.push(e);
        }
        Ok(state)
    }

    async fn alert(
        &self,
        tx: &mut S::Tx,
        record: &TicketRecord,
        e: &Event,
        metric: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let body =
            serde_json::to_string(&e.kind).map_err(|err| AppError::Internal(err.to_string()))?;
        tx.append_alert(&AlertRow {
            cursor: (0, 0),
            organization: record.ticket.organization.to_string(),
            ticket_id: record.ticket.id.clone(),
            metric: metric.to_string(),
            kind: kind.to_string(),
            event_seq: e.seq,
            occurred_at: e.occurred_at,
            recorded_at: now,
            body,
        })
        .await?;
        Ok(())
    }
}

/// The request id of a system event: its action and due instant, plus how often that
/// same action was recorded before. An action retracted by a late event can be reached
/// again at the same instant when another late event undoes the first (a pause, then its
/// resume in closed hours); it is recorded again under a new id.
fn system_request_id(events: &[Event], base: String) -> String {
    let again = events
        .iter()
        .filter(|e| {
            e.request_id == base
                || e.request_id
                    .strip_prefix(base.as_str())
                    .is_some_and(|rest| rest.starts_with('#'))
        })
        .count();
    if again == 0 {
        base
    } else {
        format!("{base}#{again}")
    }
}
