//! Tickets and their events: creating, recording, moving to another policy, syncing a
//! CRM's batch, quoting, and keeping each ticket's own events (warnings, breaches, due
//! actions) in line with its fold.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::answer::{Answer, Idempotency};
use super::error::{AppError, AppResult, ErrorReason, ResourceRef, Violation};
use super::fingerprint::Fingerprint;
use super::page;
use super::{App, Loaded, Reader, derived, parse_body, rejected};
use crate::domain::clock::{ClockView, TicketState};
use crate::domain::names::{ExternalId, PriorityLabel, RequestType, ResourceId, ShortText};
use crate::domain::organization::Organization;
use crate::domain::policy::Policy;
use crate::domain::status::Status as TicketStatus;
use crate::domain::ticket::{ActionKind, Actor, Event, EventKind, SystemAction, Ticket};
use crate::store::{
    AlertRow, IdempotencyKey, NewEvent, ResourceKind, Store, StoreError, StoreTx, StoredEvent,
    TicketCursor, TicketFilter, TicketRecord,
};

/// The client name on events servicelevel records itself.
pub const SYSTEM_ACTOR: &str = "servicelevel";

/// A ticket to create, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct NewTicket {
    pub organization: ResourceId,
    pub source_system: ExternalId,
    pub external_id: ExternalId,
    pub request_type: RequestType,
    pub priority: Option<PriorityLabel>,
    pub received_at: DateTime<Utc>,
    pub requested_by: Option<ExternalId>,
    pub estimate_minutes: Option<u32>,
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// A ticket as the API shows it: as stored, with its clocks folded as of an instant, its
/// policy (for the targets' quoted sentences), and its events when asked for.
#[derive(Debug, Clone)]
pub struct TicketView {
    pub record: TicketRecord,
    pub state: TicketState,
    pub policy: Arc<Policy>,
    pub events: Option<Vec<StoredEvent>>,
    pub as_of: DateTime<Utc>,
}

/// The clocks a hypothetical ticket would get.
#[derive(Debug, Clone)]
pub struct QuoteView {
    pub clocks: Vec<ClockView>,
    pub policy: Arc<Policy>,
    pub policy_id: ResourceId,
    pub policy_version: u32,
}

/// A hypothetical ticket to quote deadlines for.
#[derive(Debug, Clone)]
pub struct Quote {
    pub organization: ResourceId,
    pub request_type: RequestType,
    pub priority: Option<PriorityLabel>,
    pub estimate_minutes: Option<u32>,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Unset: now.
    pub received_at: Option<DateTime<Utc>>,
    /// Unset: now, or the latest event if later.
    pub as_of: Option<DateTime<Utc>>,
    pub events: Vec<NewEvent>,
}

/// Where a ticket moves with `MoveTicketPolicy`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyMove {
    pub ticket: String,
    /// Unset: the ticket's own policy (its latest version, or `version`).
    pub policy: Option<ResourceId>,
    /// Unset: the latest.
    pub version: Option<u32>,
}

/// One item of a CRM's batch: a ticket, found or created, and its events.
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub ticket: NewTicket,
    /// The creation's request id.
    pub create: IdempotencyKey,
    pub create_legacy: Option<Fingerprint>,
    /// Each event with the first-release fingerprint of its request, if any.
    pub events: Vec<(NewEvent, Option<Fingerprint>)>,
}

/// What a batch item did.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    pub ticket: TicketView,
    pub created: bool,
    pub events_recorded: u32,
}

/// A priority label the policy does not declare is bad input, named on its field.
fn check_priority(policy: &Policy, label: Option<&PriorityLabel>, field: &str) -> AppResult<()> {
    match label {
        Some(l) if !policy.priorities.contains(l) => Err(AppError::invalid(
            field,
            format!(
                "unknown priority label {l}: the policy declares {}",
                if policy.priorities.is_empty() {
                    "none".to_string()
                } else {
                    policy
                        .priorities
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        )),
        _ => Ok(()),
    }
}

fn missing_slots(policy: &Policy, org: &Organization) -> Vec<String> {
    policy
        .calendar_slots()
        .into_iter()
        .filter(|s| org.binding(s).is_none())
        .map(|s| s.to_string())
        .collect()
}

fn ticket_not_found(id: &str) -> impl FnOnce(StoreError) -> AppError + '_ {
    move |e| match e {
        StoreError::NotFound(_) => AppError::NotFound(format!("tickets/{id}")),
        e => e.into(),
    }
}

/// What an event request means: the ticket and the event, not who sent it (an event's
/// request id is unique per ticket, whoever the client).
fn event_fingerprint(ticket_id: &str, e: &NewEvent) -> Fingerprint {
    #[derive(Serialize)]
    struct Meaning<'a> {
        occurred_at: DateTime<Utc>,
        kind: &'a EventKind,
        contact: Option<&'a ExternalId>,
    }
    Fingerprint::new().with("ticket", &ticket_id).with(
        "event",
        &Meaning {
            occurred_at: e.occurred_at,
            kind: &e.kind,
            contact: e.actor.contact.as_ref(),
        },
    )
}

impl<S: Store> App<S> {
    /// Creates a ticket; `Ok((answer, created))`, where a replayed request is not created.
    pub async fn create_ticket<A: Answer>(
        &self,
        id: &Idempotency,
        t: NewTicket,
        render: &(dyn Fn(&TicketView) -> A + Sync),
    ) -> AppResult<(A, bool)> {
        let mut tx = self.store.begin().await?;
        let (answer, created, _) = self.create_ticket_in(&mut tx, id, t, render).await?;
        self.commit(tx).await?;
        Ok((answer, created))
    }

    /// Creates a ticket inside a transaction, its answer stored under its key; nothing is
    /// written unless the caller commits.
    async fn create_ticket_in<A: Answer>(
        &self,
        tx: &mut S::Tx,
        id: &Idempotency,
        t: NewTicket,
        render: &(dyn Fn(&TicketView) -> A + Sync),
    ) -> AppResult<(A, bool, Option<String>)> {
        self.not_in_future("ticket.received_time", t.received_at)?;
        let fp = Fingerprint::new().with("ticket", &t);
        if let Some(answer) = self.claim::<A>(tx, id, &fp).await? {
            return Ok((answer, false, None));
        }
        let org_v = match tx
            .get_resource(ResourceKind::Organization, &t.organization, None)
            .await
        {
            Ok(v) => v,
            Err(StoreError::NotFound(_)) => {
                return Err(AppError::NotFound(
                    ResourceKind::Organization.name(&t.organization),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if org_v.archived {
            return Err(AppError::FailedPrecondition(format!(
                "{} is archived: it takes no new tickets",
                ResourceKind::Organization.name(&t.organization)
            )));
        }
        let org: Organization = parse_body(&org_v)?;
        let policy_v = tx
            .get_resource(ResourceKind::Policy, &org.policy, None)
            .await?;
        let policy_version = policy_v.version;
        let policy = self
            .policy(&mut Reader::Tx(tx), &org.policy, policy_version)
            .await?;
        check_priority(&policy, t.priority.as_ref(), "ticket.priority")?;
        let missing = missing_slots(&policy, &org);
        if !missing.is_empty() {
            return Err(AppError::FailedPrecondition(format!(
                "the organisation binds no calendar to the slots its policy counts on: {}",
                missing.join(", ")
            )));
        }
        if let Some(existing) = tx
            .find_ticket(
                &t.organization,
                t.source_system.as_str(),
                t.external_id.as_str(),
            )
            .await?
        {
            // Looked up within the organisation the call names, which the caller may
            // touch: naming the ticket tells nothing about another organisation.
            let name = format!("tickets/{}", existing.ticket.id);
            return Err(AppError::reasoned(
                ErrorReason::TicketExists,
                format!(
                    "ticket {}/{} already exists as {name}",
                    t.source_system, t.external_id
                ),
            )
            .with_resource(Some(ResourceRef {
                resource_type: "servicelevel.v1.Ticket",
                name,
            }))
            .with("source_system", t.source_system.as_str())
            .with("external_id", t.external_id.as_str()));
        }
        let now = self.now();
        let record = TicketRecord {
            ticket: Ticket {
                id: uuid::Uuid::now_v7().to_string(),
                organization: t.organization,
                source_system: t.source_system,
                external_id: t.external_id,
                request_type: t.request_type,
                priority: t.priority.clone(),
                received_at: t.received_at,
                requested_by: t.requested_by,
                estimate_minutes: t.estimate_minutes,
                scheduled_at: t.scheduled_at,
                policy: org.policy.clone(),
                policy_version,
                plan: org.plan.clone(),
            },
            status: TicketStatus::New,
            cycle: 0,
            priority: t.priority.map(|p| p.to_string()),
            next_change_at: None,
            created_at: now,
            updated_at: now,
            trace_context: crate::telemetry::current_traceparent(),
        };
        let loaded = self.load(&mut Reader::Tx(tx), &record).await?;
        tx.insert_ticket(&record).await?;
        let state = self
            .settle(tx, &record, &loaded, &mut Vec::new(), now, None)
            .await?;
        tx.save_derived(&record, &derived(&state), now).await?;
        tracing::info!(ticket = %record.ticket.id, organization = %record.ticket.organization, "ticket created");
        let made = record.ticket.id.clone();
        let answer = render(&TicketView {
            record,
            state,
            policy: loaded.policy,
            events: None,
            as_of: now,
        });
        self.complete(tx, &id.key, &answer).await?;
        Ok((answer, true, Some(made)))
    }

    /// Records an event; `Ok((answer, recorded))`, where a replay records nothing. Its
    /// key is [`IdempotencyKey::event`].
    pub async fn record_event<A: Answer>(
        &self,
        legacy: Option<Fingerprint>,
        ticket_id: &str,
        event: NewEvent,
        render: &(dyn Fn(&TicketView) -> A + Sync),
    ) -> AppResult<(A, bool)> {
        let mut tx = self.store.begin().await?;
        let done = self
            .record_event_in(&mut tx, legacy, ticket_id, event, render)
            .await?;
        self.commit(tx).await?;
        Ok(done)
    }

    /// Records an event inside a transaction, its answer stored under its key; nothing is
    /// written unless the caller commits.
    async fn record_event_in<A: Answer>(
        &self,
        tx: &mut S::Tx,
        legacy: Option<Fingerprint>,
        ticket_id: &str,
        event: NewEvent,
        render: &(dyn Fn(&TicketView) -> A + Sync),
    ) -> AppResult<(A, bool)> {
        self.not_in_future("event.occurred_time", event.occurred_at)?;
        let id = Idempotency {
            key: IdempotencyKey::event(ticket_id, &event.request_id),
            legacy,
        };
        let fp = event_fingerprint(ticket_id, &event);
        if let Some(answer) = self.claim::<A>(tx, &id, &fp).await? {
            return Ok((answer, false));
        }
        let record = tx
            .lock_ticket(ticket_id)
            .await
            .map_err(ticket_not_found(ticket_id))?;
        let stored = tx.ticket_events(ticket_id).await?;
        let loaded = self.load(&mut Reader::Tx(tx), &record).await?;
        if let EventKind::PriorityChanged { to } = &event.kind {
            check_priority(&loaded.policy, Some(to), "event.priority_change.priority")?;
        }
        let now = self.now();
        let new = tx.append_event(ticket_id, &event, now).await?;
        let mut events: Vec<Event> = App::<S>::events(&stored);
        events.push(new.clone());
        let state = self
            .settle(tx, &record, &loaded, &mut events, now, Some(new.seq))
            .await?;
        tx.save_derived(&record, &derived(&state), now).await?;
        tracing::info!(ticket = %ticket_id, event = new.kind.name(), seq = new.seq, "event recorded");
        let answer = render(&TicketView {
            record,
            state,
            policy: loaded.policy,
            events: None,
            as_of: now,
        });
        self.complete(tx, &id.key, &answer).await?;
        Ok((answer, true))
    }

    /// One item of a CRM's batch, in one transaction: its ticket found (within its
    /// organisation) or created, and its events recorded, or nothing at all. A failure
    /// names its field from the batch's root (`prefix`, such as `items[2]`).
    pub async fn batch_item<A: Answer>(
        &self,
        prefix: &str,
        item: BatchItem,
        render: &(dyn Fn(&TicketView) -> A + Sync),
    ) -> AppResult<BatchOutcome> {
        let mut tx = self.store.begin().await?;
        let t = item.ticket;
        let existing = tx
            .find_ticket(
                &t.organization,
                t.source_system.as_str(),
                t.external_id.as_str(),
            )
            .await?;
        let (ticket_id, created) = match existing {
            Some(r) => (r.ticket.id, false),
            None => {
                let id = Idempotency {
                    key: item.create,
                    legacy: item.create_legacy,
                };
                let (_, fresh, made) = self
                    .create_ticket_in(&mut tx, &id, t, render)
                    .await
                    .map_err(|e| within(e, &format!("{prefix}.ticket"), "ticket"))?;
                // A replayed creation made its ticket before, with these very keys, so
                // the lookup above found it: only a fresh one gets here.
                let made = made.ok_or_else(|| {
                    AppError::Internal(format!(
                        "{prefix}: the creation was answered before but its ticket is gone"
                    ))
                })?;
                (made, fresh)
            }
        };
        let mut recorded = 0;
        for (j, (e, legacy)) in item.events.into_iter().enumerate() {
            let (_, fresh) = self
                .record_event_in(&mut tx, legacy, &ticket_id, e, render)
                .await
                .map_err(|e| within(e, &format!("{prefix}.events[{j}]"), "event"))?;
            recorded += u32::from(fresh);
        }
        self.commit(tx).await?;
        let ticket = self.ticket_view(&ticket_id, false).await?;
        Ok(BatchOutcome {
            ticket,
            created,
            events_recorded: recorded,
        })
    }
}

impl<S: Store> App<S> {
    /// Moves a ticket to another policy (or version) and refolds it from the start.
    pub async fn move_policy<A: Answer>(
        &self,
        id: &Idempotency,
        m: PolicyMove,
        render: &(dyn Fn(&TicketView) -> A + Sync),
    ) -> AppResult<A> {
        let fp = Fingerprint::new().with("move", &m);
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim::<A>(&mut tx, id, &fp).await? {
            return Ok(answer);
        }
        let ticket = m.ticket.as_str();
        let mut record = tx
            .lock_ticket(ticket)
            .await
            .map_err(ticket_not_found(ticket))?;
        let policy_id = m.policy.unwrap_or_else(|| record.ticket.policy.clone());
        let target = tx
            .get_resource(ResourceKind::Policy, &policy_id, m.version)
            .await?;
        record.ticket.policy = policy_id.clone();
        record.ticket.policy_version = target.version;
        let stored = tx.ticket_events(ticket).await?;
        let loaded = self.load(&mut Reader::Tx(&mut tx), &record).await?;
        let missing = missing_slots(&loaded.policy, loaded.organization());
        if !missing.is_empty() {
            return Err(AppError::FailedPrecondition(format!(
                "the organisation binds no calendar to the slots that policy counts on: {}",
                missing.join(", ")
            )));
        }
        let now = self.now();
        tx.set_ticket_policy(ticket, &policy_id, target.version)
            .await?;
        let mut events = App::<S>::events(&stored);
        let state = self
            .settle(&mut tx, &record, &loaded, &mut events, now, None)
            .await?;
        tx.save_derived(&record, &derived(&state), now).await?;
        let answer = render(&TicketView {
            record,
            state,
            policy: loaded.policy,
            events: None,
            as_of: now,
        });
        self.finish(tx, &id.key, &answer).await?;
        Ok(answer)
    }

    /// The clocks a hypothetical ticket would get, with hypothetical events; nothing is
    /// stored.
    pub async fn quote(&self, q: Quote) -> AppResult<QuoteView> {
        let now = self.now();
        let received_at = q.received_at.unwrap_or(now);
        let org_v = self
            .store
            .get_resource(ResourceKind::Organization, &q.organization, None)
            .await?;
        let org: Organization = parse_body(&org_v)?;
        let policy_v = self
            .store
            .get_resource(ResourceKind::Policy, &org.policy, None)
            .await?;
        let mut reader = Reader::Pool(&self.store);
        let policy = self
            .policy(&mut reader, &org.policy, policy_v.version)
            .await?;
        check_priority(&policy, q.priority.as_ref(), "priority")?;
        let quote = ExternalId::parse("quote").map_err(|e| AppError::Internal(e.to_string()))?;
        let record = TicketRecord {
            ticket: Ticket {
                id: "quote".into(),
                organization: q.organization.clone(),
                source_system: quote.clone(),
                external_id: quote,
                request_type: q.request_type,
                priority: q.priority,
                received_at,
                requested_by: None,
                estimate_minutes: q.estimate_minutes,
                scheduled_at: q.scheduled_at,
                policy: org.policy.clone(),
                policy_version: policy_v.version,
                plan: org.plan.clone(),
            },
            status: TicketStatus::New,
            cycle: 0,
            priority: None,
            next_change_at: None,
            created_at: now,
            updated_at: now,
            trace_context: None,
        };
        let loaded = self.load(&mut reader, &record).await?;
        let events: Vec<Event> = q
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Event {
                seq: i as i64 + 1,
                occurred_at: e.occurred_at,
                kind: e.kind,
                actor: e.actor,
                request_id: e.request_id,
            })
            .collect();
        let last = events
            .iter()
            .map(|e| e.occurred_at)
            .max()
            .unwrap_or(received_at);
        let as_of = q.as_of.unwrap_or_else(|| now.max(last).max(received_at));
        let state = self.fold(&loaded, &record, &events, as_of).map_err(|r| {
            AppError::FailedPrecondition(format!("events[{}]: {}", r.seq - 1, r.violation))
        })?;
        Ok(QuoteView {
            clocks: state.clocks,
            policy: loaded.policy,
            policy_id: org.policy,
            policy_version: policy_v.version,
        })
    }

    pub async fn ticket_view(&self, ticket_id: &str, full: bool) -> AppResult<TicketView> {
        let record = self
            .store
            .get_ticket(ticket_id)
            .await
            .map_err(ticket_not_found(ticket_id))?;
        self.ticket_of(record, full).await
    }

    /// A stored ticket with its clocks folded at now, and its events when `full`.
    pub async fn ticket_of(&self, record: TicketRecord, full: bool) -> AppResult<TicketView> {
        let stored = self.store.ticket_events(&record.ticket.id).await?;
        let loaded = self.load(&mut Reader::Pool(&self.store), &record).await?;
        let now = self.now();
        let state = self
            .fold(&loaded, &record, &App::<S>::events(&stored), now)
            .map_err(|r| rejected(r, None))?;
        Ok(TicketView {
            record,
            state,
            policy: loaded.policy,
            events: full.then_some(stored),
            as_of: now,
        })
    }

    /// A page of tickets, newest received first, each folded at now; and the token of
    /// the next page (empty at the end).
    pub async fn list_tickets(
        &self,
        filter: TicketFilter,
        size: u32,
        page_token: &str,
        full: bool,
    ) -> AppResult<(Vec<TicketView>, String)> {
        let query = format!("{filter:?}");
        let after: Option<(i64, String)> = page::decode(&query, page_token)?;
        let cursor = after.map(|(received_us, id)| TicketCursor { received_us, id });
        let rows = self
            .store
            .list_tickets(&filter, cursor.as_ref(), size + 1)
            .await?;
        let more = rows.len() > size as usize;
        let page: Vec<TicketRecord> = rows.into_iter().take(size as usize).collect();
        let next = match page.last() {
            Some(last) if more => page::encode(
                &query,
                &(
                    last.ticket.received_at.timestamp_micros(),
                    last.ticket.id.clone(),
                ),
            ),
            _ => String::new(),
        };
        let mut tickets = Vec::with_capacity(page.len());
        for record in page {
            tickets.push(self.ticket_of(record, full).await?);
        }
        Ok((tickets, next))
    }

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

/// The error of one part of a batch, named from the batch's root: a violation of
/// `event.x` becomes one of `items[2].events[1].x`, and a message says which part.
fn within(e: AppError, prefix: &str, root: &str) -> AppError {
    let rename = |field: String| match field.strip_prefix(root) {
        Some(rest) if rest.is_empty() || rest.starts_with(['.', '[']) => format!("{prefix}{rest}"),
        _ => format!("{prefix}.{field}"),
    };
    match e {
        AppError::InvalidArgument(violations) => AppError::InvalidArgument(
            violations
                .into_iter()
                .map(|v| Violation {
                    field: rename(v.field),
                    description: v.description,
                })
                .collect(),
        ),
        AppError::NotFound(m) => AppError::NotFound(format!("{prefix}: {m}")),
        AppError::AlreadyExists(m) => AppError::AlreadyExists(format!("{prefix}: {m}")),
        AppError::FailedPrecondition(m) => AppError::FailedPrecondition(format!("{prefix}: {m}")),
        AppError::Aborted(m) => AppError::Aborted(format!("{prefix}: {m}")),
        other => other,
    }
}
