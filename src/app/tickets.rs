//! Tickets and their events: creating, recording, moving to another policy, syncing a
//! CRM's batch, and showing them. Quotes are in `quotes`, the events servicelevel records
//! itself in `settle`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Loaded;
use super::answer::{Answer, Idempotency};
use super::error::{AppError, AppResult, ErrorReason, ResourceRef, Violation};
use super::fingerprint::Fingerprint;
use super::page;
use super::{App, Reader, derived, parse_body, rejected};
use crate::domain::clock::TicketState;
use crate::domain::names::{ExternalId, PriorityLabel, RequestType, ResourceId};
use crate::domain::organization::Organization;
use crate::domain::policy::Policy;
use crate::domain::status::Status as TicketStatus;
use crate::domain::ticket::{Event, EventKind, Ticket};
use crate::store::{
    IdempotencyKey, NewEvent, ResourceKind, Store, StoreError, StoreTx, StoredEvent, TicketCursor,
    TicketFilter, TicketRecord,
};

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
pub(super) fn check_priority(
    policy: &Policy,
    label: Option<&PriorityLabel>,
    field: &str,
) -> AppResult<()> {
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
    pub(super) async fn create_ticket_in<A: Answer>(
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
    pub(super) async fn record_event_in<A: Answer>(
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
        let derived = derived(&state);
        let answer = render(&TicketView {
            record: record.clone(),
            state,
            policy: loaded.policy,
            events: None,
            as_of: now,
        });
        // The answer goes with the derived state: one round trip less under the lock.
        tx.save_derived_answered(&record, &derived, now, &id.key, &answer.to_bytes())
            .await?;
        tracing::info!(ticket = %ticket_id, event = new.kind.name(), seq = new.seq, "event recorded");
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
        self.view_of(record, loaded, stored, full, self.now())
    }

    fn view_of(
        &self,
        record: TicketRecord,
        loaded: Loaded,
        stored: Vec<StoredEvent>,
        full: bool,
        now: DateTime<Utc>,
    ) -> AppResult<TicketView> {
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
        // A list tolerates the replica's lag; its rows, events and catalogue all come from
        // the one database it reads.
        let reads = self.reads();
        let rows = reads
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
        // One query for every listed ticket's events, and each policy and organisation
        // loaded once for the page: a page costs a few queries, not two per ticket.
        let ids: Vec<String> = page.iter().map(|r| r.ticket.id.clone()).collect();
        let mut events = reads.events_of_tickets(&ids).await?;
        let mut loaded: HashMap<(ResourceId, ResourceId, u32), Loaded> = HashMap::new();
        let now = self.now();
        let mut tickets = Vec::with_capacity(page.len());
        for record in page {
            let t = &record.ticket;
            let key = (t.organization.clone(), t.policy.clone(), t.policy_version);
            let l = match loaded.get(&key) {
                Some(l) => l.clone(),
                None => {
                    let l = self.load(&mut Reader::Pool(reads), &record).await?;
                    loaded.insert(key, l.clone());
                    l
                }
            };
            let stored = events.remove(&record.ticket.id).unwrap_or_default();
            tickets.push(self.view_of(record, l, stored, full, now)?);
        }
        Ok((tickets, next))
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
