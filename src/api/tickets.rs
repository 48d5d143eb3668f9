//! The gRPC transport of tickets: `TicketService` requests parsed into domain values,
//! the use cases of `app::tickets` called, their views rendered as proto.

use std::fmt::Debug;

use prost::Message;
use tonic::{Request, Response, Status};

use super::convert::{self as cv};
use super::error::{AppError, AppResult, Check};
use super::pb;
use super::{Api, client_of};
use crate::api::error::respond;
use crate::app::answer::Idempotency;
use crate::app::fingerprint::Fingerprint;
use crate::app::quotes::{Quote, QuoteView};
use crate::app::tickets::{BatchItem, NewTicket, PolicyMove, TicketView};
use crate::domain::limits;
use crate::domain::names::{ExternalId, PriorityLabel, RequestType};
use crate::store::{IdempotencyKey, NewEvent, ResourceKind, Store, TicketFilter};

pub(super) fn estimate(c: &mut Check, field: String, m: i32) -> Option<Option<u32>> {
    match m {
        0 => Some(None),
        m if m > 0 => Some(Some(m as u32)),
        _ => {
            c.fail(field, "must not be negative (0 means no estimate)");
            None
        }
    }
}

pub(super) fn new_ticket(c: &mut Check, field: &str, t: Option<&pb::Ticket>) -> Option<NewTicket> {
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
    let priority = cv::optional(
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
    let requested_by = cv::optional(
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

/// The first release's fingerprint of a request: its top-level fields' `Debug` text, so
/// a retry of a request it answered still gets that answer. Fields added since print
/// text it never did: [`as_first_release`] takes that text out.
pub(super) fn legacy(fields: &[(&str, &dyn Debug)]) -> Option<Fingerprint> {
    Some(Fingerprint::legacy(fields.iter().map(|(k, v)| {
        (k.to_string(), as_first_release(&format!("{v:?}")))
    })))
}

/// The `Debug` text of a request without what fields added since the first release
/// print at their defaults: `CalendarBinding.overrides` (after `extra_holidays`).
fn as_first_release(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("extra_holidays: [") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let Some(close) = from.find(']') else {
            break;
        };
        let (list, after) = from.split_at(close + 1);
        out.push_str(list);
        rest = after.strip_prefix(", overrides: []").unwrap_or(after);
    }
    out.push_str(rest);
    out
}

/// The stored answer of a ticket write: the proto `Ticket`, in its protobuf encoding.
fn ticket_answer(v: &TicketView) -> pb::Ticket {
    cv::ticket_to_pb(v)
}

/// A failed batch item as `google.rpc.Status`, with the same details a failed call has.
fn item_status(e: AppError) -> tonic_types::pb::Status {
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

fn quote_to_pb(q: &QuoteView) -> pb::QuoteDeadlinesResponse {
    pb::QuoteDeadlinesResponse {
        clocks: q
            .clocks
            .iter()
            .map(|cl| cv::clock_to_pb(cl, &q.policy))
            .collect(),
        policy: cv::name_of(ResourceKind::Policy, &q.policy_id),
        policy_version: q.policy_version as i32,
    }
}

/// An event request's first-release fingerprint: the ticket name and the event without
/// its request id.
fn event_legacy(ticket: &str, e: &Option<pb::TicketEvent>) -> Option<Fingerprint> {
    let mut e = e.clone();
    if let Some(e) = e.as_mut() {
        e.request_id.clear();
    }
    legacy(&[("ticket", &ticket), ("event", &e)])
}

impl<S: Store> Api<S> {
    /// One batch item, parsed and applied whole or not at all.
    async fn upsert_item(
        &self,
        client: &str,
        item: pb::UpsertTicketItem,
        index: usize,
    ) -> AppResult<pb::UpsertTicketResult> {
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
        let ticket_name = |id: &str| format!("tickets/{id}");
        // The event's first-release fingerprint names its ticket, known once found; the
        // item's events are only replays of such requests when the ticket exists.
        let found = self
            .app
            .store
            .find_ticket(
                &t.organization,
                t.source_system.as_str(),
                t.external_id.as_str(),
            )
            .await?;
        let events = events
            .into_iter()
            .zip(&item.events)
            .map(|(e, raw)| {
                let legacy = found
                    .as_ref()
                    .and_then(|r| event_legacy(&ticket_name(&r.ticket.id), &Some(raw.clone())));
                (e, legacy)
            })
            .collect();
        let create_legacy = legacy(&[("ticket", &item.ticket)]);
        let outcome = self
            .app
            .batch_item(
                &field,
                BatchItem {
                    ticket: t,
                    create: IdempotencyKey {
                        client: client.to_string(),
                        method: "CreateTicket",
                        request_id: rid,
                    },
                    create_legacy,
                    events,
                },
                &ticket_answer,
            )
            .await?;
        Ok(pb::UpsertTicketResult {
            status: Some(tonic_types::pb::Status::default()),
            ticket: Some(cv::ticket_to_pb(&outcome.ticket)),
            created: outcome.created,
            events_recorded: outcome.events_recorded as i32,
        })
    }

    fn quote_request(&self, r: &pb::QuoteDeadlinesRequest) -> AppResult<Quote> {
        let mut c = Check::new();
        let org = cv::resource_name(
            &mut c,
            "organization",
            &r.organization,
            ResourceKind::Organization,
        );
        let request_type = c.ok("request_type", RequestType::parse(&r.request_type));
        let priority = cv::optional(&mut c, "priority", &r.priority, PriorityLabel::parse);
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
                events.push(ev);
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
            (
                ((((organization, request_type), priority), estimate_minutes), scheduled_at),
                received_at,
            ),
            as_of,
        ) = c.finish(parts)?;
        Ok(Quote {
            organization,
            request_type,
            priority,
            estimate_minutes,
            scheduled_at,
            received_at,
            as_of,
            events,
        })
    }

    fn policy_move(&self, r: &pb::MoveTicketPolicyRequest) -> AppResult<(PolicyMove, String)> {
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
        let (((ticket, policy), version), rid) = c.finish(id.zip(policy).zip(version).zip(rid))?;
        Ok((
            PolicyMove {
                ticket,
                policy,
                version,
            },
            rid,
        ))
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
                let id = Idempotency {
                    key: IdempotencyKey {
                        client,
                        method: "CreateTicket",
                        request_id: rid,
                    },
                    legacy: legacy(&[("ticket", &r.ticket)]),
                };
                self.app
                    .create_ticket(&id, t, &ticket_answer)
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
                self.app
                    .ticket_view(&id, full)
                    .await
                    .map(|v| cv::ticket_to_pb(&v))
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
            let (tickets, next_page_token) = self
                .app
                .list_tickets(filter, size, &r.page_token, full)
                .await?;
            Ok(pb::ListTicketsResponse {
                tickets: tickets.iter().map(cv::ticket_to_pb).collect(),
                next_page_token,
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
                self.app
                    .record_event(
                        event_legacy(&r.ticket, &r.event),
                        &id,
                        event,
                        &ticket_answer,
                    )
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
        respond(
            async {
                let (m, rid) = self.policy_move(&r)?;
                let id = Idempotency {
                    key: IdempotencyKey {
                        client,
                        method: "MoveTicketPolicy",
                        request_id: rid,
                    },
                    legacy: legacy(&[
                        ("policy", &r.policy),
                        ("policy_version", &r.policy_version),
                        ("ticket", &r.ticket),
                    ]),
                };
                self.app.move_policy(&id, m, &ticket_answer).await
            }
            .await,
        )
    }

    async fn batch_upsert_tickets(
        &self,
        req: Request<pb::BatchUpsertTicketsRequest>,
    ) -> Result<Response<pb::BatchUpsertTicketsResponse>, Status> {
        let orgs = super::OrgScope::of(&req);
        let client = client_of(&req);
        let r = req.into_inner();
        if r.items.len() > limits::BATCH_ITEMS {
            return Err(AppError::invalid(
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
        respond(
            async {
                let q = self.quote_request(&r)?;
                self.app.quote(q).await.map(|v| quote_to_pb(&v))
            }
            .await,
        )
    }
}

/// A requested ticket view: whether it includes the events. Unspecified is `default_full`.
pub(super) fn view_is_full(c: &mut Check, view: i32, default_full: bool) -> Option<bool> {
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
