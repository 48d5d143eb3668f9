//! Tenant isolation in answers: a client restricted to `acme` learns nothing about
//! `globex` from any RPC. For every RPC of the descriptor set (a new RPC without an entry
//! fails here, as in the scope table), a request naming globex's existing resource and one
//! naming a resource that does not exist get the same answer, byte for byte once the two
//! names (chosen of equal length) are swapped: same code, message, details and body.

use servicelevel::api::pb;
use servicelevel::auth::Scopes;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::auth::{Raw, Rpc, acme_and_globex, client, described, now, secured};
use crate::fixtures::*;
use crate::harness::*;

/// What a request names that may belong to another organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    /// A ticket, `tickets/{id}`.
    Ticket,
    /// An organisation, `organizations/{id}`.
    Organization,
    /// A connection, `connections/{id}`.
    Connection,
    /// An alert webhook subscription, `webhookSubscriptions/{id}`.
    Subscription,
}

/// How one RPC is checked.
enum Check {
    /// Requests naming a resource of this kind, built from the name.
    Refers(Names, fn(&str) -> Vec<u8>),
    /// Nothing in the request can name another organisation's resource; the reason is
    /// for the reader.
    #[allow(dead_code)]
    Nothing(&'static str),
}

fn org_id(name: &str) -> String {
    name.trim_start_matches("organizations/").to_string()
}

fn filter(name: &str) -> Option<pb::ClockFilter> {
    Some(pb::ClockFilter {
        organization: name.into(),
        ..Default::default()
    })
}

fn bytes(m: impl prost::Message) -> Vec<u8> {
    m.encode_to_vec()
}

fn a_connection(org: &str) -> pb::Connection {
    pb::Connection {
        display_name: "Desk".into(),
        organization: org.into(),
        provider: pb::Provider::Generic as i32,
        source_system: "desk".into(),
        mapping: Some(pb::Mapping {
            statuses: [("open".to_string(), pb::TicketStatus::Processing as i32)].into(),
            default_request_type: "incident".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn a_subscription(org: &str) -> pb::WebhookSubscription {
    pb::WebhookSubscription {
        display_name: "Pager".into(),
        organization: org.into(),
        alert_kinds: vec![pb::AlertKind::Breach as i32],
        url: "https://hooks.example.com/sl".into(),
        ..Default::default()
    }
}

/// The generic (Standard Webhooks) secret of the specification's example.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn a_ticket(org: &str) -> pb::Ticket {
    pb::Ticket {
        organization: org.into(),
        ..ticket("acme", "iso-1", "incident", "", now())
    }
}

const SHARED: &str =
    "the shared catalogue (calendars, policies, plans, packs) holds no organisation's data";
const FILTERED: &str = "a list filtered to the caller's organisations (restricted_clients_touch_their_organisations_only)";

/// Every RPC and how it is checked.
fn table() -> Vec<(&'static str, Vec<Check>)> {
    use Check::{Nothing, Refers};
    use Names::{Connection, Organization, Subscription, Ticket};
    vec![
        (
            "/servicelevel.v1.AlertService/WatchAlerts",
            vec![Refers(Organization, |n| {
                bytes(pb::WatchAlertsRequest {
                    organization: n.into(),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.CalendarService/CreateCalendar",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.CalendarService/GetCalendar",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.CalendarService/ListCalendars",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.CalendarService/UpdateCalendar",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.CalendarService/ArchiveCalendar",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.CalendarService/ImportCalendarHolidays",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.CalendarService/PreviewCalendarUpdate",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.HoursService/CreatePlan",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.HoursService/GetPlan",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.HoursService/ListPlans",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.HoursService/UpdatePlan",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.HoursService/SetHoursContract",
            vec![Refers(Organization, |n| {
                bytes(pb::SetHoursContractRequest {
                    contract: Some(pb::HoursContract {
                        organization: n.into(),
                        start_date: "2026-01-01".into(),
                        ..Default::default()
                    }),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.HoursService/GetHoursContract",
            vec![Refers(Organization, |n| {
                bytes(pb::GetHoursContractRequest {
                    organization: n.into(),
                })
            })],
        ),
        (
            "/servicelevel.v1.HoursService/RecordUsage",
            vec![
                Refers(Organization, |n| {
                    bytes(pb::RecordUsageRequest {
                        organization: n.into(),
                        bucket: "support".into(),
                        minutes: 30,
                        service_time: ts(now()),
                        request_id: rid("iso"),
                        ..Default::default()
                    })
                }),
                Refers(Ticket, |n| {
                    bytes(pb::RecordUsageRequest {
                        organization: "organizations/acme".into(),
                        bucket: "support".into(),
                        minutes: 30,
                        service_time: ts(now()),
                        ticket: n.into(),
                        request_id: rid("iso"),
                        ..Default::default()
                    })
                }),
            ],
        ),
        (
            "/servicelevel.v1.HoursService/HoldMinutes",
            vec![
                Refers(Organization, |n| {
                    bytes(pb::HoldMinutesRequest {
                        organization: n.into(),
                        bucket: "support".into(),
                        hold_id: "h-1".into(),
                        minutes: 30,
                        service_time: ts(now()),
                        request_id: rid("iso"),
                        ..Default::default()
                    })
                }),
                Refers(Ticket, |n| {
                    bytes(pb::HoldMinutesRequest {
                        organization: "organizations/acme".into(),
                        bucket: "support".into(),
                        hold_id: "h-1".into(),
                        minutes: 30,
                        service_time: ts(now()),
                        ticket: n.into(),
                        request_id: rid("iso"),
                        ..Default::default()
                    })
                }),
            ],
        ),
        (
            "/servicelevel.v1.HoursService/CaptureHold",
            vec![Refers(Organization, |n| {
                bytes(pb::CaptureHoldRequest {
                    organization: n.into(),
                    bucket: "support".into(),
                    hold_id: "h-1".into(),
                    minutes: 10,
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.HoursService/ReleaseHold",
            vec![Refers(Organization, |n| {
                bytes(pb::ReleaseHoldRequest {
                    organization: n.into(),
                    bucket: "support".into(),
                    hold_id: "h-1".into(),
                    reason: "no".into(),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.HoursService/AdjustBalance",
            vec![Refers(Organization, |n| {
                bytes(pb::AdjustBalanceRequest {
                    organization: n.into(),
                    bucket: "support".into(),
                    minutes: 10,
                    reason: "credit".into(),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.HoursService/ReverseEntry",
            vec![Refers(Organization, |n| {
                bytes(pb::ReverseEntryRequest {
                    organization: n.into(),
                    bucket: "support".into(),
                    sequence: 1,
                    reason: "wrong".into(),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.HoursService/LockPeriod",
            vec![Refers(Organization, |n| {
                bytes(pb::LockPeriodRequest {
                    organization: n.into(),
                    bucket: "support".into(),
                    period_start: "2026-02-01".into(),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.HoursService/GetBalance",
            vec![Refers(Organization, |n| {
                bytes(pb::GetBalanceRequest {
                    organization: n.into(),
                    bucket: "support".into(),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.HoursService/ListLedgerEntries",
            vec![Refers(Organization, |n| {
                bytes(pb::ListLedgerEntriesRequest {
                    organization: n.into(),
                    bucket: "support".into(),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.ConnectionService/CreateConnection",
            vec![Refers(Organization, |n| {
                bytes(pb::CreateConnectionRequest {
                    connection_id: "iso-desk".into(),
                    connection: Some(a_connection(n)),
                    secrets: vec![SECRET.into()],
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.ConnectionService/GetConnection",
            vec![Refers(Connection, |n| {
                bytes(pb::GetConnectionRequest { name: n.into() })
            })],
        ),
        (
            "/servicelevel.v1.ConnectionService/ListConnections",
            vec![Refers(Organization, |n| {
                bytes(pb::ListConnectionsRequest {
                    organization: n.into(),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.ConnectionService/UpdateConnection",
            vec![Refers(Connection, |n| {
                bytes(pb::UpdateConnectionRequest {
                    connection: Some(pb::Connection {
                        name: n.into(),
                        ..a_connection("organizations/acme")
                    }),
                    request_id: rid("iso"),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.ConnectionService/ArchiveConnection",
            vec![Refers(Connection, |n| {
                bytes(pb::ArchiveConnectionRequest {
                    name: n.into(),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.ConnectionService/AddConnectionSecret",
            vec![Refers(Connection, |n| {
                bytes(pb::AddConnectionSecretRequest {
                    name: n.into(),
                    secret: SECRET.into(),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.ConnectionService/RemoveConnectionSecret",
            vec![Refers(Connection, |n| {
                bytes(pb::RemoveConnectionSecretRequest {
                    name: n.into(),
                    fingerprint: "0000000000000000".into(),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.ConnectionService/ListInboxDeliveries",
            vec![Refers(Connection, |n| {
                bytes(pb::ListInboxDeliveriesRequest {
                    parent: n.into(),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.ConnectionService/GetInboxDelivery",
            vec![Refers(Connection, |n| {
                bytes(pb::GetInboxDeliveryRequest {
                    name: format!("{n}/deliveries/msg_1"),
                })
            })],
        ),
        (
            "/servicelevel.v1.ConnectionService/ReplayInboxDelivery",
            vec![Refers(Connection, |n| {
                bytes(pb::ReplayInboxDeliveryRequest {
                    name: format!("{n}/deliveries/msg_1"),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.ConnectionService/ReplayInboxDeliveries",
            vec![Refers(Connection, |n| {
                bytes(pb::ReplayInboxDeliveriesRequest {
                    parent: n.into(),
                    request_id: rid("iso"),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.WebhookService/CreateWebhookSubscription",
            vec![Refers(Organization, |n| {
                bytes(pb::CreateWebhookSubscriptionRequest {
                    webhook_subscription_id: "iso-pager".into(),
                    webhook_subscription: Some(a_subscription(n)),
                    secrets: vec![SECRET.into()],
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.WebhookService/GetWebhookSubscription",
            vec![Refers(Subscription, |n| {
                bytes(pb::GetWebhookSubscriptionRequest { name: n.into() })
            })],
        ),
        (
            "/servicelevel.v1.WebhookService/ListWebhookSubscriptions",
            vec![Refers(Organization, |n| {
                bytes(pb::ListWebhookSubscriptionsRequest {
                    organization: n.into(),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.WebhookService/UpdateWebhookSubscription",
            vec![Refers(Subscription, |n| {
                bytes(pb::UpdateWebhookSubscriptionRequest {
                    webhook_subscription: Some(pb::WebhookSubscription {
                        name: n.into(),
                        ..a_subscription("organizations/acme")
                    }),
                    request_id: rid("iso"),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.WebhookService/DeleteWebhookSubscription",
            vec![Refers(Subscription, |n| {
                bytes(pb::DeleteWebhookSubscriptionRequest {
                    name: n.into(),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.WebhookService/AddWebhookSubscriptionSecret",
            vec![Refers(Subscription, |n| {
                bytes(pb::AddWebhookSubscriptionSecretRequest {
                    name: n.into(),
                    secret: SECRET.into(),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.WebhookService/RemoveWebhookSubscriptionSecret",
            vec![Refers(Subscription, |n| {
                bytes(pb::RemoveWebhookSubscriptionSecretRequest {
                    name: n.into(),
                    fingerprint: "sha256:0000000000000000".into(),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.WebhookService/ListWebhookDeliveries",
            vec![Refers(Subscription, |n| {
                bytes(pb::ListWebhookDeliveriesRequest {
                    parent: n.into(),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.WebhookService/GetWebhookDelivery",
            vec![Refers(Subscription, |n| {
                bytes(pb::GetWebhookDeliveryRequest {
                    name: format!("{n}/deliveries/1"),
                })
            })],
        ),
        (
            "/servicelevel.v1.WebhookService/ReplayWebhookDelivery",
            vec![Refers(Subscription, |n| {
                bytes(pb::ReplayWebhookDeliveryRequest {
                    name: format!("{n}/deliveries/1"),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.HoursService/GetStatement",
            vec![Refers(Organization, |n| {
                bytes(pb::GetStatementRequest {
                    organization: n.into(),
                    date: "2026-03-09".into(),
                    include_entries: true,
                })
            })],
        ),
        (
            "/servicelevel.v1.HoursService/ExportStatements",
            vec![Nothing(FILTERED)],
        ),
        (
            "/servicelevel.v1.OrganizationService/CreateOrganization",
            vec![Refers(Organization, |n| {
                bytes(pb::CreateOrganizationRequest {
                    organization_id: org_id(n),
                    organization: Some(organization("Europe/London", "", "plain", vec![], vec![])),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.OrganizationService/GetOrganization",
            vec![Refers(Organization, |n| {
                bytes(pb::GetOrganizationRequest { name: n.into() })
            })],
        ),
        (
            "/servicelevel.v1.OrganizationService/ListOrganizations",
            vec![Nothing(FILTERED)],
        ),
        (
            "/servicelevel.v1.OrganizationService/UpdateOrganization",
            vec![Refers(Organization, |n| {
                bytes(pb::UpdateOrganizationRequest {
                    organization: Some(pb::Organization {
                        name: n.into(),
                        ..organization("Europe/London", "", "plain", vec![], vec![])
                    }),
                    request_id: rid("iso"),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.OrganizationService/ArchiveOrganization",
            vec![Refers(Organization, |n| {
                bytes(pb::ArchiveOrganizationRequest {
                    name: n.into(),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.OrganizationService/PreviewOrganizationUpdate",
            vec![Refers(Organization, |n| {
                bytes(pb::PreviewOrganizationUpdateRequest {
                    update: Some(pb::UpdateOrganizationRequest {
                        organization: Some(pb::Organization {
                            name: n.into(),
                            ..organization("Europe/London", "", "plain", vec![], vec![])
                        }),
                        ..Default::default()
                    }),
                })
            })],
        ),
        (
            "/servicelevel.v1.PackService/ImportPack",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.PolicyService/CreatePolicy",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.PolicyService/GetPolicy",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.PolicyService/ListPolicies",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.PolicyService/UpdatePolicy",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.PolicyService/ArchivePolicy",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.PolicyService/PreviewPolicyUpdate",
            vec![Nothing(SHARED)],
        ),
        (
            "/servicelevel.v1.TicketService/CreateTicket",
            vec![Refers(Organization, |n| {
                bytes(pb::CreateTicketRequest {
                    ticket: Some(a_ticket(n)),
                    request_id: rid("iso"),
                })
            })],
        ),
        (
            "/servicelevel.v1.TicketService/GetTicket",
            vec![Refers(Ticket, |n| {
                bytes(pb::GetTicketRequest {
                    name: n.into(),
                    view: pb::TicketView::Full as i32,
                })
            })],
        ),
        (
            "/servicelevel.v1.TicketService/ListTickets",
            vec![Refers(Organization, |n| {
                bytes(pb::ListTicketsRequest {
                    organization: n.into(),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.TicketService/RecordEvent",
            vec![Refers(Ticket, |n| {
                bytes(pb::RecordEventRequest {
                    ticket: n.into(),
                    event: Some(event(now(), pb::ticket_event::Kind::AgentResponse(()))),
                })
            })],
        ),
        (
            "/servicelevel.v1.TicketService/MoveTicketPolicy",
            vec![Refers(Ticket, |n| {
                bytes(pb::MoveTicketPolicyRequest {
                    ticket: n.into(),
                    request_id: rid("iso"),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.TicketService/BatchUpsertTickets",
            vec![Refers(Organization, |n| {
                bytes(pb::BatchUpsertTicketsRequest {
                    items: vec![pb::UpsertTicketItem {
                        ticket: Some(a_ticket(n)),
                        request_id: rid("iso"),
                        ..Default::default()
                    }],
                })
            })],
        ),
        (
            "/servicelevel.v1.TicketService/QuoteDeadlines",
            vec![Refers(Organization, |n| {
                bytes(pb::QuoteDeadlinesRequest {
                    organization: n.into(),
                    request_type: "incident".into(),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.DeadlineService/ListDueClocks",
            vec![Refers(Organization, |n| {
                bytes(pb::ListDueClocksRequest {
                    filter: filter(n),
                    from_time: ts(now()),
                    to_time: ts(now()),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.DeadlineService/ListBreachedClocks",
            vec![Refers(Organization, |n| {
                bytes(pb::ListBreachedClocksRequest {
                    filter: filter(n),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.DeadlineService/ListAtRiskClocks",
            vec![Refers(Organization, |n| {
                bytes(pb::ListAtRiskClocksRequest {
                    filter: filter(n),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.DeadlineService/ExplainDeadline",
            vec![Refers(Ticket, |n| {
                bytes(pb::ExplainDeadlineRequest {
                    ticket: n.into(),
                    metric: "first_response".into(),
                    ..Default::default()
                })
            })],
        ),
        (
            "/servicelevel.v1.DeadlineService/ReportAttainment",
            vec![Refers(Organization, |n| {
                bytes(pb::ReportAttainmentRequest {
                    organization: n.into(),
                    ..Default::default()
                })
            })],
        ),
    ]
}

/// An answer with its code, message, details and body, the two names swapped.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    code: Code,
    message: String,
    details: Vec<u8>,
    body: Vec<u8>,
}

fn swapped(b: &[u8], from: &str, to: &str) -> Vec<u8> {
    let (from, to) = (from.as_bytes(), to.as_bytes());
    assert_eq!(from.len(), to.len(), "names of equal length");
    let mut out = b.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

async fn answer(ch: &Channel, rpc: &Rpc, token: &str, body: Vec<u8>) -> Answer {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.expect("channel ready");
    let mut req = Request::new(body);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    let path = PathAndQuery::try_from(rpc.path.as_str()).expect("a path");
    let result = if rpc.server_streaming {
        match grpc.server_streaming(req, path, Raw).await {
            Ok(r) => {
                let mut stream = r.into_inner();
                // The first item, if it comes at once; an open stream is an answer too.
                match tokio::time::timeout(std::time::Duration::from_millis(200), stream.message())
                    .await
                {
                    Ok(Ok(m)) => Ok(m.unwrap_or_default()),
                    Ok(Err(s)) => Err(s),
                    Err(_) => Ok(Vec::new()),
                }
            }
            Err(s) => Err(s),
        }
    } else {
        grpc.unary(req, path, Raw).await.map(|r| r.into_inner())
    };
    match result {
        Ok(body) => Answer {
            code: Code::Ok,
            message: String::new(),
            details: Vec::new(),
            body,
        },
        Err(s) => Answer {
            code: s.code(),
            message: s.message().to_string(),
            details: s.details().to_vec(),
            body: Vec::new(),
        },
    }
}

async fn another_organisations_resources_answer_as_absent_ones(db: Db) {
    let mut s = TestServer::start(db, now()).await;
    let (acme_ticket, globex_ticket) = acme_and_globex(&s).await;
    let (globex_desk, absent_desk) = ("connections/globex-desk", "connections/absent-desk");
    pb::connection_service_client::ConnectionServiceClient::new(connect(s.addr).await)
        .create_connection(Request::new(pb::CreateConnectionRequest {
            connection_id: "globex-desk".into(),
            connection: Some(a_connection("organizations/globex")),
            secrets: vec![SECRET.into()],
            request_id: rid("iso"),
        }))
        .await
        .expect("globex's connection");
    let (globex_pager, absent_pager) = (
        "webhookSubscriptions/globex-pager",
        "webhookSubscriptions/absent-pager",
    );
    pb::webhook_service_client::WebhookServiceClient::new(connect(s.addr).await)
        .create_webhook_subscription(Request::new(pb::CreateWebhookSubscriptionRequest {
            webhook_subscription_id: "globex-pager".into(),
            webhook_subscription: Some(a_subscription("organizations/globex")),
            secrets: vec![SECRET.into()],
            request_id: rid("iso"),
        }))
        .await
        .expect("globex's subscription");
    s.secure(secured()).await;
    let ch = connect(s.addr).await;
    let token = client(&s, "acme-only", Scopes::all(), &["acme"]).await;
    // Names of equal length: globex's ticket and a ticket id never issued; globex and an
    // organisation that does not exist.
    let absent_ticket = format!("tickets/{}", uuid::Uuid::now_v7());
    assert_eq!(absent_ticket.len(), globex_ticket.len());
    let (globex, absent_org) = ("organizations/globex", "organizations/absent");
    let table = table();
    let mut missing = Vec::new();
    let mut checked = 0;
    for rpc in described() {
        let Some((_, checks)) = table.iter().find(|(p, _)| *p == rpc.path) else {
            missing.push(rpc.path.clone());
            continue;
        };
        for check in checks {
            let Check::Refers(names, request) = check else {
                continue;
            };
            let (foreign, absent) = match names {
                Names::Ticket => (globex_ticket.as_str(), absent_ticket.as_str()),
                Names::Organization => (globex, absent_org),
                Names::Connection => (globex_desk, absent_desk),
                Names::Subscription => (globex_pager, absent_pager),
            };
            let a = answer(&ch, &rpc, &token, request(foreign)).await;
            let b = answer(&ch, &rpc, &token, request(absent)).await;
            // Every request carries fresh request ids: compare without them.
            // The name, and the bare id after its collection, hidden the same way.
            let normal = |x: Answer, name: &str| {
                let id = name.rsplit('/').next().unwrap_or(name);
                let hide = |b: &[u8]| {
                    let b = swapped(b, name, &"?".repeat(name.len()));
                    swapped(&b, id, &"?".repeat(id.len()))
                };
                Answer {
                    code: x.code,
                    message: String::from_utf8(hide(x.message.as_bytes())).expect("utf-8"),
                    details: hide(&x.details),
                    body: hide(&x.body),
                }
            };
            let (a, b) = (normal(a, foreign), normal(b, absent));
            assert_eq!(
                a, b,
                "{} ({names:?}): another organisation's answers differently",
                rpc.path
            );
            assert_ne!(a.code, Code::Internal, "{}", rpc.path);
            checked += 1;
        }
    }
    assert!(
        missing.is_empty(),
        "RPCs without an entry in the isolation table: {missing:?}"
    );
    assert!(checked >= 30, "{checked} checks");
    // The restricted client's own ticket still answers.
    let mut t = pb::ticket_service_client::TicketServiceClient::new(ch.clone());
    let mut req = Request::new(pb::GetTicketRequest {
        name: acme_ticket,
        view: 0,
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    t.get_ticket(req).await.expect("own ticket");
    s.stop().await;
}

crate::on_both_stores!(another_organisations_resources_answer_as_absent_ones);
