//! Tickets, their events, and the deadline queries.

use chrono::{DateTime, Utc};
use prost::Message;
use tonic::{Request, Response, Status};

use super::app::{App, Loaded, Reader, derived, parse_body, rejected};
use super::convert::{self as cv};
use super::error::{ApiError, ApiResult, Check, ErrorReason, ResourceRef};
use super::fingerprint::Fingerprint;
use super::page;
use super::pb;
use super::{Api, client_of};
use crate::domain::clock::TicketState;
use crate::domain::limits;
use crate::domain::names::{
    ExternalId, MetricName, PriorityLabel, RequestType, ResourceId, ShortText,
};
use crate::domain::organization::Organization;
use crate::domain::policy::Policy;
use crate::domain::status::Status as TicketStatus;
use crate::domain::ticket::{ActionKind, Actor, Event, EventKind, SystemAction, Ticket};
use crate::store::{
    AlertRow, ClockCursor, ClockFilter, ClockQuery, IdempotencyKey, NewEvent, ResourceKind, Store,
    StoreError, StoreTx, TicketCursor, TicketFilter, TicketRecord,
};

/// The client name on events servicelevel records itself.
pub const SYSTEM_ACTOR: &str = "servicelevel";

/// A ticket to create, parsed.
#[derive(Debug, Clone)]
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

fn opt_text<T, E: std::fmt::Display>(
    c: &mut Check,
    field: String,
    s: &str,
    p: impl Fn(&str) -> Result<T, E>,
) -> Option<Option<T>> {
    if s.is_empty() {
        Some(None)
    } else {
        c.ok(field, p(s)).map(Some)
    }
}

fn estimate(c: &mut Check, field: String, m: i32) -> Option<Option<u32>> {
    match m {
        0 => Some(None),
        m if m > 0 => Some(Some(m as u32)),
        _ => {
            c.fail(field, "must not be negative (0 means no estimate)");
            None
        }
    }
}

pub fn new_ticket(c: &mut Check, field: &str, t: Option<&pb::Ticket>) -> Option<NewTicket> {
    let Some(t) = t else {
        c.fail(field, "is required");
        return None;
    };
    let organization = cv::resource_name(
        c,
        &format!("{field}.organization"),
        &t.organization,
        ResourceKind::Organization,
    );
    let source_system = c.ok(
        format!("{field}.source_system"),
        ExternalId::parse(&t.source_system),
    );
    let external_id = c.ok(
        format!("{field}.external_id"),
        ExternalId::parse(&t.external_id),
    );
    let request_type = c.ok(
        format!("{field}.request_type"),
        RequestType::parse(&t.request_type),
    );
    let priority = opt_text(
        c,
        format!("{field}.priority"),
        &t.priority,
        PriorityLabel::parse,
    );
    let received_at = cv::required_instant(
        c,
        &format!("{field}.received_time"),
        t.received_time.as_ref(),
    );
    let requested_by = opt_text(
        c,
        format!("{field}.requested_by"),
        &t.requested_by,
        ExternalId::parse,
    );
    let estimate_minutes = estimate(c, format!("{field}.estimate_minutes"), t.estimate_minutes);
    let scheduled_at = cv::optional_instant(
        c,
        &format!("{field}.scheduled_time"),
        t.scheduled_time.as_ref(),
    );
    Some(NewTicket {
        organization: organization?,
        source_system: source_system?,
        external_id: external_id?,
        request_type: request_type?,
        priority: priority?,
        received_at: received_at?,
        requested_by: requested_by?,
        estimate_minutes: estimate_minutes?,
        scheduled_at: scheduled_at?,
    })
}

fn ticket_fingerprint(t: &Option<pb::Ticket>) -> Fingerprint {
    Fingerprint::new().with("ticket", t)
}

fn event_fingerprint(ticket: &str, e: &Option<pb::TicketEvent>) -> Fingerprint {
    let mut e = e.clone();
    if let Some(e) = e.as_mut() {
        e.request_id.clear();
    }
    Fingerprint::new().with("ticket", &ticket).with("event", &e)
}

/// A priority label the policy does not declare is bad input, named on its field.
fn check_priority(policy: &Policy, label: Option<&PriorityLabel>, field: &str) -> ApiResult<()> {
    match label {
        Some(l) if !policy.priorities.contains(l) => Err(ApiError::invalid(
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

impl<S: Store> App<S> {
    /// Creates a ticket; `Ok((answer, created))`, where a replayed request is not created.
    pub async fn create_ticket(
        &self,
        key: IdempotencyKey,
        fp: Fingerprint,
        t: NewTicket,
    ) -> ApiResult<(pb::Ticket, bool)> {
        let mut tx = self.store.begin().await?;
        let done = self.create_ticket_in(&mut tx, &key, &fp, t).await?;
        self.commit(tx).await?;
        Ok(done)
    }

    /// Commits a transaction whose idempotency records are complete, and wakes what waits
    /// for alerts.
    async fn commit(&self, tx: S::Tx) -> ApiResult<()> {
        tx.commit().await?;
        self.alerts_written.notify_waiters();
        Ok(())
    }

    /// Creates a ticket inside a transaction, its answer stored under `key`; nothing is
    /// written unless the caller commits.
    async fn create_ticket_in(
        &self,
        tx: &mut S::Tx,
        key: &IdempotencyKey,
        fp: &Fingerprint,
        t: NewTicket,
    ) -> ApiResult<(pb::Ticket, bool)> {
        self.not_in_future("ticket.received_time", t.received_at)?;
        if let Some(answer) = self.claim::<pb::Ticket>(tx, key, fp).await? {
            return Ok((answer, false));
        }
        let org_v = match tx
            .get_resource(ResourceKind::Organization, &t.organization, None)
            .await
        {
            Ok(v) => v,
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::NotFound(cv::name_of(
                    ResourceKind::Organization,
                    &t.organization,
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if org_v.archived {
            return Err(ApiError::FailedPrecondition(format!(
                "{} is archived: it takes no new tickets",
                cv::name_of(ResourceKind::Organization, &t.organization)
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
            return Err(ApiError::FailedPrecondition(format!(
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
            return Err(ApiError::reasoned(
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
        let answer = cv::ticket_to_pb(&record, &state, &loaded.policy, None, now);
        tx.complete(key, &answer.encode_to_vec()).await?;
        tracing::info!(ticket = %record.ticket.id, organization = %record.ticket.organization, "ticket created");
        Ok((answer, true))
    }

    /// Records an event; `Ok((answer, recorded))`, where a replay records nothing.
    pub async fn record_event(
        &self,
        key: IdempotencyKey,
        fp: Fingerprint,
        ticket_id: &str,
        event: NewEvent,
    ) -> ApiResult<(pb::Ticket, bool)> {
        let mut tx = self.store.begin().await?;
        let done = self
            .record_event_in(&mut tx, &key, &fp, ticket_id, event)
            .await?;
        self.commit(tx).await?;
        Ok(done)
    }

    /// Records an event inside a transaction, its answer stored under `key`; nothing is
    /// written unless the caller commits.
    async fn record_event_in(
        &self,
        tx: &mut S::Tx,
        key: &IdempotencyKey,
        fp: &Fingerprint,
        ticket_id: &str,
        event: NewEvent,
    ) -> ApiResult<(pb::Ticket, bool)> {
        self.not_in_future("event.occurred_time", event.occurred_at)?;
        if let Some(answer) = self.claim::<pb::Ticket>(tx, key, fp).await? {
            return Ok((answer, false));
        }
        let record = tx.lock_ticket(ticket_id).await.map_err(|e| match e {
            StoreError::NotFound(_) => ApiError::NotFound(format!("tickets/{ticket_id}")),
            e => e.into(),
        })?;
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
        let answer = cv::ticket_to_pb(&record, &state, &loaded.policy, None, now);
        tx.complete(key, &answer.encode_to_vec()).await?;
        tracing::info!(ticket = %ticket_id, event = new.kind.name(), seq = new.seq, "event recorded");
        Ok((answer, true))
    }

    /// Refolds a ticket as of now and rewrites its clocks index: after a calendar or
    /// organisation change, or when a deadline passed.
    pub async fn refresh_ticket(&self, ticket_id: &str) -> ApiResult<()> {
        let mut tx = self.store.begin().await?;
        let record = tx.lock_ticket(ticket_id).await?;
        self.refresh_locked(tx, record).await
    }

    /// What the due-time runner does to a ticket whose clocks reached something: unless
    /// another replica holds it right now (then it is that replica's work), settle it.
    pub async fn run_due(&self, ticket_id: &str) -> ApiResult<bool> {
        let mut tx = self.store.begin().await?;
        match tx.lock_ticket_skip(ticket_id).await? {
            Some(record) => self.refresh_locked(tx, record).await.map(|()| true),
            None => Ok(false),
        }
    }

    async fn refresh_locked(&self, mut tx: S::Tx, record: TicketRecord) -> ApiResult<()> {
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
    pub(super) async fn settle(
        &self,
        tx: &mut S::Tx,
        record: &TicketRecord,
        loaded: &Loaded,
        events: &mut Vec<Event>,
        now: DateTime<Utc>,
        new_seq: Option<i64>,
    ) -> ApiResult<TicketState> {
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
                .map_err(|e| ApiError::Internal(e.to_string()))?;
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
    ) -> ApiResult<()> {
        let body =
            serde_json::to_string(&e.kind).map_err(|err| ApiError::Internal(err.to_string()))?;
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

    pub async fn ticket_view(&self, ticket_id: &str, full: bool) -> ApiResult<pb::Ticket> {
        let record = self
            .store
            .get_ticket(ticket_id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => ApiError::NotFound(format!("tickets/{ticket_id}")),
                e => e.into(),
            })?;
        self.ticket_of(&record, full).await
    }

    /// A stored ticket with its clocks folded at now, and its events when `full`.
    pub async fn ticket_of(&self, record: &TicketRecord, full: bool) -> ApiResult<pb::Ticket> {
        let stored = self.store.ticket_events(&record.ticket.id).await?;
        let loaded = self.load(&mut Reader::Pool(&self.store), record).await?;
        let now = self.now();
        let state = self
            .fold(&loaded, record, &App::<S>::events(&stored), now)
            .map_err(|r| rejected(r, None))?;
        Ok(cv::ticket_to_pb(
            record,
            &state,
            &loaded.policy,
            full.then_some(&stored[..]),
            now,
        ))
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
fn within(e: ApiError, prefix: &str, root: &str) -> ApiError {
    let rename = |field: String| match field.strip_prefix(root) {
        Some(rest) if rest.is_empty() || rest.starts_with(['.', '[']) => format!("{prefix}{rest}"),
        _ => format!("{prefix}.{field}"),
    };
    match e {
        ApiError::InvalidArgument(violations) => ApiError::InvalidArgument(
            violations
                .into_iter()
                .map(|v| super::error::Violation {
                    field: rename(v.field),
                    description: v.description,
                })
                .collect(),
        ),
        ApiError::NotFound(m) => ApiError::NotFound(format!("{prefix}: {m}")),
        ApiError::AlreadyExists(m) => ApiError::AlreadyExists(format!("{prefix}: {m}")),
        ApiError::FailedPrecondition(m) => ApiError::FailedPrecondition(format!("{prefix}: {m}")),
        ApiError::Aborted(m) => ApiError::Aborted(format!("{prefix}: {m}")),
        other => other,
    }
}

fn respond<M>(r: ApiResult<M>) -> Result<Response<M>, Status> {
    r.map(Response::new).map_err(Status::from)
}

/// A failed batch item as `google.rpc.Status`, with the same details a failed call has.
fn item_status(e: ApiError) -> tonic_types::pb::Status {
    let status = Status::from(e);
    let details = status.details();
    if !details.is_empty()
        && let Ok(s) = tonic_types::pb::Status::decode(details)
    {
        return s;
    }
    tonic_types::pb::Status {
        code: status.code() as i32,
        message: status.message().to_string(),
        details: Vec::new(),
    }
}

impl<S: Store> Api<S> {
    async fn upsert_item(
        &self,
        client: &str,
        item: pb::UpsertTicketItem,
        index: usize,
    ) -> ApiResult<pb::UpsertTicketResult> {
        let field = format!("items[{index}]");
        let mut c = Check::new();
        let t = new_ticket(&mut c, &format!("{field}.ticket"), item.ticket.as_ref());
        let rid = cv::request_id(&mut c, &format!("{field}.request_id"), &item.request_id);
        let events: Vec<Option<NewEvent>> = cv::limited(
            &mut c,
            &format!("{field}.events"),
            &item.events,
            limits::ITEM_EVENTS,
        )
        .iter()
        .enumerate()
        .map(|(i, e)| cv::event(&mut c, &format!("{field}.events[{i}]"), Some(e), client))
        .collect();
        let events: Option<Vec<NewEvent>> = events.into_iter().collect();
        let ((t, rid), events) = c.finish(t.zip(rid).zip(events))?;
        // One transaction per item: it applies whole or leaves nothing behind.
        let mut tx = self.app.store.begin().await?;
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
                let key = IdempotencyKey {
                    client: client.to_string(),
                    method: "CreateTicket",
                    request_id: rid,
                };
                let (answer, created) = self
                    .app
                    .create_ticket_in(&mut tx, &key, &ticket_fingerprint(&item.ticket), t)
                    .await
                    .map_err(|e| within(e, &format!("{field}.ticket"), "ticket"))?;
                (
                    answer.name.trim_start_matches("tickets/").to_string(),
                    created,
                )
            }
        };
        let mut recorded = 0;
        for (j, (e, raw)) in events.into_iter().zip(&item.events).enumerate() {
            let key = IdempotencyKey::event(&ticket_id, &e.request_id);
            let fp = event_fingerprint(&format!("tickets/{ticket_id}"), &Some(raw.clone()));
            let (_, fresh) = self
                .app
                .record_event_in(&mut tx, &key, &fp, &ticket_id, e)
                .await
                .map_err(|e| within(e, &format!("{field}.events[{j}]"), "event"))?;
            recorded += i32::from(fresh);
        }
        self.app.commit(tx).await?;
        let ticket = self.app.ticket_view(&ticket_id, false).await?;
        Ok(pb::UpsertTicketResult {
            status: Some(tonic_types::pb::Status::default()),
            ticket: Some(ticket),
            created,
            events_recorded: recorded,
        })
    }

    async fn quote(&self, r: pb::QuoteDeadlinesRequest) -> ApiResult<pb::QuoteDeadlinesResponse> {
        let mut c = Check::new();
        let org = cv::resource_name(
            &mut c,
            "organization",
            &r.organization,
            ResourceKind::Organization,
        );
        let request_type = c.ok("request_type", RequestType::parse(&r.request_type));
        let priority = opt_text(&mut c, "priority".into(), &r.priority, PriorityLabel::parse);
        let estimate_minutes = estimate(&mut c, "estimate_minutes".into(), r.estimate_minutes);
        let scheduled = cv::optional_instant(&mut c, "scheduled_time", r.scheduled_time.as_ref());
        let received = cv::optional_instant(&mut c, "received_time", r.received_time.as_ref());
        let as_of = cv::optional_instant(&mut c, "as_of_time", r.as_of_time.as_ref());
        let mut events = Vec::new();
        let listed = cv::limited(&mut c, "events", &r.events, limits::QUOTE_EVENTS);
        for (i, e) in listed.iter().enumerate() {
            let mut e = e.clone();
            if e.request_id.is_empty() {
                e.request_id = format!("quote-{i}");
            }
            if let Some(ev) = cv::event(&mut c, &format!("events[{i}]"), Some(&e), "quote") {
                events.push(Event {
                    seq: i as i64 + 1,
                    occurred_at: ev.occurred_at,
                    kind: ev.kind,
                    actor: ev.actor,
                    request_id: ev.request_id,
                });
            }
        }
        let parts = org
            .zip(request_type)
            .zip(priority)
            .zip(estimate_minutes)
            .zip(scheduled)
            .zip(received)
            .zip(as_of);
        let (
            (((((org_id, request_type), priority), estimate_minutes), scheduled_at), received),
            as_of,
        ) = c.finish(parts)?;
        let now = self.app.now();
        let received_at = received.unwrap_or(now);
        let org_v = self
            .app
            .store
            .get_resource(ResourceKind::Organization, &org_id, None)
            .await?;
        let org: Organization = parse_body(&org_v)?;
        let policy_v = self
            .app
            .store
            .get_resource(ResourceKind::Policy, &org.policy, None)
            .await?;
        let mut reader = Reader::Pool(&self.app.store);
        let policy = self
            .app
            .policy(&mut reader, &org.policy, policy_v.version)
            .await?;
        check_priority(&policy, priority.as_ref(), "priority")?;
        let record = TicketRecord {
            ticket: Ticket {
                id: "quote".into(),
                organization: org_id.clone(),
                source_system: ExternalId::parse("quote")
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                external_id: ExternalId::parse("quote")
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                request_type,
                priority,
                received_at,
                requested_by: None,
                estimate_minutes,
                scheduled_at,
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
        let loaded = self.app.load(&mut reader, &record).await?;
        let last = events
            .iter()
            .map(|e| e.occurred_at)
            .max()
            .unwrap_or(received_at);
        let as_of = as_of.unwrap_or_else(|| now.max(last).max(received_at));
        let state = self
            .app
            .fold(&loaded, &record, &events, as_of)
            .map_err(|r| {
                ApiError::FailedPrecondition(format!("events[{}]: {}", r.seq - 1, r.violation))
            })?;
        Ok(pb::QuoteDeadlinesResponse {
            clocks: state
                .clocks
                .iter()
                .map(|cl| cv::clock_to_pb(cl, &loaded.policy))
                .collect(),
            policy: cv::name_of(ResourceKind::Policy, &org.policy),
            policy_version: policy_v.version as i32,
        })
    }

    async fn move_policy(
        &self,
        client: &str,
        r: pb::MoveTicketPolicyRequest,
    ) -> ApiResult<pb::Ticket> {
        let mut c = Check::new();
        let id = cv::ticket_id(&mut c, "ticket", &r.ticket);
        let policy = if r.policy.is_empty() {
            Some(None)
        } else {
            cv::resource_name(&mut c, "policy", &r.policy, ResourceKind::Policy).map(Some)
        };
        let version = match r.policy_version {
            0 => Some(None),
            v if v > 0 => Some(Some(v as u32)),
            _ => {
                c.fail("policy_version", "must not be negative");
                None
            }
        };
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let (((id, policy), version), rid) = c.finish(id.zip(policy).zip(version).zip(rid))?;
        let key = IdempotencyKey {
            client: client.to_string(),
            method: "MoveTicketPolicy",
            request_id: rid,
        };
        let fp = Fingerprint::new()
            .with("ticket", &r.ticket)
            .with("policy", &r.policy)
            .with("policy_version", &r.policy_version);
        let app = &self.app;
        let mut tx = app.store.begin().await?;
        if let Some(answer) = app.claim::<pb::Ticket>(&mut tx, &key, &fp).await? {
            return Ok(answer);
        }
        let mut record = tx.lock_ticket(&id).await.map_err(|e| match e {
            StoreError::NotFound(_) => ApiError::NotFound(format!("tickets/{id}")),
            e => e.into(),
        })?;
        let policy_id = policy.unwrap_or_else(|| record.ticket.policy.clone());
        let target = tx
            .get_resource(ResourceKind::Policy, &policy_id, version)
            .await?;
        record.ticket.policy = policy_id.clone();
        record.ticket.policy_version = target.version;
        let stored = tx.ticket_events(&id).await?;
        let loaded = app.load(&mut Reader::Tx(&mut tx), &record).await?;
        let missing = missing_slots(&loaded.policy, loaded.organization());
        if !missing.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "the organisation binds no calendar to the slots that policy counts on: {}",
                missing.join(", ")
            )));
        }
        let now = app.now();
        tx.set_ticket_policy(&id, &policy_id, target.version)
            .await?;
        let mut events = App::<S>::events(&stored);
        let state = app
            .settle(&mut tx, &record, &loaded, &mut events, now, None)
            .await?;
        tx.save_derived(&record, &derived(&state), now).await?;
        let answer = cv::ticket_to_pb(&record, &state, &loaded.policy, None, now);
        app.finish(tx, &key, &answer).await?;
        Ok(answer)
    }

    /// A deadline query; `c` holds what the caller already checked, so every bad field
    /// of the request is reported at once.
    async fn clocks(
        &self,
        mut c: Check,
        query: Option<ClockQuery>,
        filter: Option<&pb::ClockFilter>,
        page_size: i32,
        page_token: &str,
        as_of: DateTime<Utc>,
    ) -> ApiResult<pb::ListClocksResponse> {
        let size = cv::page_size(&mut c, "page_size", page_size);
        let f = filter.cloned().unwrap_or_default();
        let organization = if f.organization.is_empty() {
            Some(None)
        } else {
            cv::resource_name(
                &mut c,
                "filter.organization",
                &f.organization,
                ResourceKind::Organization,
            )
            .map(|o| Some(o.to_string()))
        };
        let metric = opt_text(&mut c, "filter.metric".into(), &f.metric, MetricName::parse);
        let priority = opt_text(
            &mut c,
            "filter.priority".into(),
            &f.priority,
            PriorityLabel::parse,
        );
        let (((size, organization), (metric, priority)), query) =
            c.finish(size.zip(organization).zip(metric.zip(priority)).zip(query))?;
        let filter = ClockFilter {
            organization,
            metric: metric.map(|m| m.to_string()),
            priority: priority.map(|p| p.to_string()),
        };
        // Tokens bind to the request's own parameters, not to "now", so paging through
        // breached clocks keeps working while time moves.
        let query_key = match &query {
            ClockQuery::Due { from, to } => format!("due:{from}:{to}|{filter:?}"),
            ClockQuery::Breached { .. } => format!("breached|{filter:?}"),
            ClockQuery::AtRisk { .. } => format!("at_risk|{filter:?}"),
        };
        type Pos = (i64, String, String, u32);
        let after: Option<Pos> = page::decode(&query_key, page_token)?;
        let cursor = after.map(|(deadline_us, ticket_id, metric, instance)| ClockCursor {
            deadline_us,
            ticket_id,
            metric,
            instance,
        });
        let rows = self
            .app
            .store
            .query_clocks(&query, &filter, cursor.as_ref(), size + 1)
            .await?;
        let more = rows.len() > size as usize;
        let page: Vec<_> = rows.into_iter().take(size as usize).collect();
        let next = match page.last() {
            Some(last) if more => page::encode(
                &query_key,
                &(
                    last.deadline.map_or(0, |d| d.timestamp_micros()),
                    last.ticket_id.clone(),
                    last.metric.clone(),
                    last.instance,
                ),
            ),
            _ => String::new(),
        };
        Ok(pb::ListClocksResponse {
            clocks: page
                .into_iter()
                .map(|r| pb::ClockSummary {
                    ticket: format!("tickets/{}", r.ticket_id),
                    organization: format!("organizations/{}", r.organization),
                    metric: r.metric,
                    priority: r.priority.unwrap_or_default(),
                    instance: r.instance as i32,
                    deadline_time: cv::opt_timestamp(r.deadline),
                    warning_time: cv::opt_timestamp(r.warning),
                    start_time: Some(cv::timestamp(r.started_at)),
                    kind: cv::kind_to_pb(&r.kind) as i32,
                })
                .collect(),
            next_page_token: next,
            as_of_time: Some(cv::timestamp(as_of)),
        })
    }
}

#[tonic::async_trait]
impl<S: Store> pb::ticket_service_server::TicketService for Api<S> {
    async fn create_ticket(
        &self,
        req: Request<pb::CreateTicketRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        let ticket = req.get_ref().ticket.as_ref();
        super::OrgScope::of(&req).allow(ticket.map_or("", |t| t.organization.as_str()))?;
        let client = client_of(&req);
        let r = req.into_inner();
        let org = r
            .ticket
            .as_ref()
            .map(|t| t.organization.clone())
            .unwrap_or_default();
        super::note("organization", &org);
        let mut c = Check::new();
        let t = new_ticket(&mut c, "ticket", r.ticket.as_ref());
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(t.zip(rid));
        respond(
            async {
                let (t, rid) = parsed?;
                let key = IdempotencyKey {
                    client,
                    method: "CreateTicket",
                    request_id: rid,
                };
                self.app
                    .create_ticket(key, ticket_fingerprint(&r.ticket), t)
                    .await
                    .map(|(answer, _)| answer)
            }
            .await,
        )
    }

    async fn get_ticket(
        &self,
        req: Request<pb::GetTicketRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        super::OrgScope::of(&req)
            .allow_ticket(&self.app, &req.get_ref().name)
            .await?;
        let r = req.into_inner();
        super::note("ticket", &r.name);
        let mut c = Check::new();
        let id = cv::ticket_id(&mut c, "name", &r.name);
        let full = view_is_full(&mut c, r.view, true);
        let parsed = c.finish(id.zip(full));
        respond(
            async {
                let (id, full) = parsed?;
                self.app.ticket_view(&id, full).await
            }
            .await,
        )
    }

    async fn list_tickets(
        &self,
        req: Request<pb::ListTicketsRequest>,
    ) -> Result<Response<pb::ListTicketsResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let r = req.into_inner();
        let result = async {
            let mut c = Check::new();
            let size = cv::page_size(&mut c, "page_size", r.page_size);
            let organization = if r.organization.is_empty() {
                Some(None)
            } else {
                cv::resource_name(
                    &mut c,
                    "organization",
                    &r.organization,
                    ResourceKind::Organization,
                )
                .map(|o| Some(o.to_string()))
            };
            let status = match pb::TicketStatus::try_from(r.status) {
                Ok(pb::TicketStatus::Unspecified) => Some(None),
                Ok(s) => Some(Some(cv::status_from_pb(s))),
                Err(_) => {
                    c.fail("status", format!("unknown status value {}", r.status));
                    None
                }
            };
            if !r.external_id.is_empty() && r.source_system.is_empty() {
                c.fail("external_id", "needs source_system");
            }
            let full = view_is_full(&mut c, r.view, false);
            let ((size, full), (organization, status)) =
                c.finish(size.zip(full).zip(organization.zip(status)))?;
            let filter = TicketFilter {
                organization,
                status,
                source_system: (!r.source_system.is_empty()).then(|| r.source_system.clone()),
                external_id: (!r.external_id.is_empty()).then(|| r.external_id.clone()),
            };
            let query = format!("{filter:?}");
            let after: Option<(i64, String)> = page::decode(&query, &r.page_token)?;
            let cursor = after.map(|(received_us, id)| TicketCursor { received_us, id });
            let rows = self
                .app
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
            for record in &page {
                tickets.push(self.app.ticket_of(record, full).await?);
            }
            Ok(pb::ListTicketsResponse {
                tickets,
                next_page_token: next,
            })
        }
        .await;
        respond(result)
    }

    async fn record_event(
        &self,
        req: Request<pb::RecordEventRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        super::OrgScope::of(&req)
            .allow_ticket(&self.app, &req.get_ref().ticket)
            .await?;
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("ticket", &r.ticket);
        let mut c = Check::new();
        let id = cv::ticket_id(&mut c, "ticket", &r.ticket);
        let event = cv::event(&mut c, "event", r.event.as_ref(), &client);
        let parsed = c.finish(id.zip(event));
        respond(
            async {
                let (id, event) = parsed?;
                let key = IdempotencyKey::event(&id, &event.request_id);
                let fp = event_fingerprint(&r.ticket, &r.event);
                self.app
                    .record_event(key, fp, &id, event)
                    .await
                    .map(|(t, _)| t)
            }
            .await,
        )
    }

    async fn move_ticket_policy(
        &self,
        req: Request<pb::MoveTicketPolicyRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        super::OrgScope::of(&req)
            .allow_ticket(&self.app, &req.get_ref().ticket)
            .await?;
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("ticket", &r.ticket);
        respond(self.move_policy(&client, r).await)
    }

    async fn batch_upsert_tickets(
        &self,
        req: Request<pb::BatchUpsertTicketsRequest>,
    ) -> Result<Response<pb::BatchUpsertTicketsResponse>, Status> {
        let orgs = super::OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        if r.items.len() > limits::BATCH_ITEMS {
            return Err(ApiError::invalid(
                "items",
                limits::too_many(r.items.len(), limits::BATCH_ITEMS),
            )
            .into());
        }
        let mut results = Vec::with_capacity(r.items.len());
        for (i, item) in r.items.into_iter().enumerate() {
            let org = item.ticket.as_ref().map_or("", |t| t.organization.as_str());
            let allowed = orgs.allow(org);
            let upsert = async {
                allowed?;
                self.upsert_item(&client, item, i).await
            };
            let result = match upsert.await {
                Ok(r) => r,
                Err(e) => pb::UpsertTicketResult {
                    status: Some(item_status(e)),
                    ticket: None,
                    created: false,
                    events_recorded: 0,
                },
            };
            results.push(result);
        }
        Ok(Response::new(pb::BatchUpsertTicketsResponse { results }))
    }

    async fn quote_deadlines(
        &self,
        req: Request<pb::QuoteDeadlinesRequest>,
    ) -> Result<Response<pb::QuoteDeadlinesResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let r = req.into_inner();
        super::note("organization", &r.organization);
        respond(self.quote(r).await)
    }
}

/// A ticket in a list: its stored state, without clocks or events (GetTicket has those).
/// A requested ticket view: whether it includes the events. Unspecified is `default_full`.
fn view_is_full(c: &mut Check, view: i32, default_full: bool) -> Option<bool> {
    match pb::TicketView::try_from(view) {
        Ok(pb::TicketView::Unspecified) => Some(default_full),
        Ok(pb::TicketView::Basic) => Some(false),
        Ok(pb::TicketView::Full) => Some(true),
        Err(_) => {
            c.fail("view", format!("unknown view {view}"));
            None
        }
    }
}

#[tonic::async_trait]
impl<S: Store> pb::deadline_service_server::DeadlineService for Api<S> {
    async fn explain_deadline(
        &self,
        req: Request<pb::ExplainDeadlineRequest>,
    ) -> Result<Response<pb::DeadlineExplanation>, Status> {
        super::OrgScope::of(&req)
            .allow_ticket(&self.app, &req.get_ref().ticket)
            .await?;
        let r = req.into_inner();
        super::note("ticket", &r.ticket);
        let mut c = Check::new();
        let id = cv::ticket_id(&mut c, "ticket", &r.ticket);
        let metric = c.ok("metric", MetricName::parse(&r.metric));
        let instance = match r.instance {
            None => Some(None),
            Some(i) if i >= 0 => Some(Some(i as u32)),
            Some(_) => {
                c.fail("instance", "must not be negative");
                None
            }
        };
        let parsed = c.finish(id.zip(metric).zip(instance));
        respond(
            async {
                let ((id, metric), instance) = parsed?;
                self.app
                    .explain_deadline(&id, metric.as_str(), instance)
                    .await
            }
            .await,
        )
    }

    async fn report_attainment(
        &self,
        req: Request<pb::ReportAttainmentRequest>,
    ) -> Result<Response<pb::ReportAttainmentResponse>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let r = req.into_inner();
        respond(
            async {
                let (filter, period, from, to) = super::reports::attainment_request(&r)?;
                self.app.report_attainment(filter, period, from, to).await
            }
            .await,
        )
    }

    async fn list_due_clocks(
        &self,
        req: Request<pb::ListDueClocksRequest>,
    ) -> Result<Response<pb::ListClocksResponse>, Status> {
        let filter = req.get_ref().filter.as_ref();
        super::OrgScope::of(&req).allow(filter.map_or("", |f| f.organization.as_str()))?;
        let r = req.into_inner();
        let result = async {
            let mut c = Check::new();
            let from = cv::required_instant(&mut c, "from_time", r.from_time.as_ref());
            let to = cv::required_instant(&mut c, "to_time", r.to_time.as_ref());
            if let (Some(f), Some(t)) = (from, to)
                && t < f
            {
                c.fail("to_time", "must not be before from_time");
            }
            let query = from.zip(to).map(|(from, to)| ClockQuery::Due { from, to });
            self.clocks(
                c,
                query,
                r.filter.as_ref(),
                r.page_size,
                &r.page_token,
                self.app.now(),
            )
            .await
        }
        .await;
        respond(result)
    }

    async fn list_breached_clocks(
        &self,
        req: Request<pb::ListBreachedClocksRequest>,
    ) -> Result<Response<pb::ListClocksResponse>, Status> {
        let filter = req.get_ref().filter.as_ref();
        super::OrgScope::of(&req).allow(filter.map_or("", |f| f.organization.as_str()))?;
        let r = req.into_inner();
        let now = self.app.now();
        respond(
            self.clocks(
                Check::new(),
                Some(ClockQuery::Breached { now }),
                r.filter.as_ref(),
                r.page_size,
                &r.page_token,
                now,
            )
            .await,
        )
    }

    async fn list_at_risk_clocks(
        &self,
        req: Request<pb::ListAtRiskClocksRequest>,
    ) -> Result<Response<pb::ListClocksResponse>, Status> {
        let filter = req.get_ref().filter.as_ref();
        super::OrgScope::of(&req).allow(filter.map_or("", |f| f.organization.as_str()))?;
        let r = req.into_inner();
        let now = self.app.now();
        respond(
            self.clocks(
                Check::new(),
                Some(ClockQuery::AtRisk { now }),
                r.filter.as_ref(),
                r.page_size,
                &r.page_token,
                now,
            )
            .await,
        )
    }
}
