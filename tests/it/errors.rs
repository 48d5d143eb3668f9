//! AIP-193 error details end to end: a program tells errors apart by `ErrorInfo.reason`
//! (docs/errors.md) and finds the resource in `ResourceInfo`.

use servicelevel::api::error::ERROR_DOMAIN;
use servicelevel::api::pb;
use servicelevel::auth::Scope;
use tonic::{Code, Request};
use tonic_types::StatusExt;

use crate::auth::{bearer, client, scopes, secured};
use crate::fixtures::*;
use crate::harness::*;
use crate::tickets::{desk, desk_org};

const TO: chrono_tz::Tz = chrono_tz::America::Toronto;

fn reason(s: &tonic::Status) -> String {
    let info = s
        .get_details_error_info()
        .expect("every error has an ErrorInfo");
    assert_eq!(info.domain, ERROR_DOMAIN);
    info.reason
}

fn resource(s: &tonic::Status) -> Option<(String, String)> {
    s.get_details_resource_info()
        .map(|r| (r.resource_type, r.resource_name))
}

async fn errors_carry_stable_reasons_and_resources(db: Db) {
    let t0 = local(TO, 2026, 3, 9, 10, 0);
    let mut s = TestServer::start(db, t0).await;
    desk(&s).await;
    desk_org(&s, "globex").await;

    // Two ALREADY_EXISTS a program must tell apart: a reused request id, an existing ticket.
    let first = create_ticket(&s, ticket("acme", "E-1", "incident", "sev-1", t0)).await;
    let request_id = rid("reuse");
    s.tickets
        .clone()
        .create_ticket(Request::new(pb::CreateTicketRequest {
            ticket: Some(ticket("acme", "E-2", "incident", "sev-1", t0)),
            request_id: request_id.clone(),
        }))
        .await
        .expect("created");
    let reused = expect_code(
        s.tickets
            .clone()
            .create_ticket(Request::new(pb::CreateTicketRequest {
                ticket: Some(ticket("acme", "E-3", "incident", "sev-1", t0)),
                request_id: request_id.clone(),
            }))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(reason(&reused), "REQUEST_ID_REUSED");
    let info = reused.get_details_error_info().expect("info");
    assert_eq!(info.metadata.get("request_id"), Some(&request_id));
    let exists = expect_code(
        s.tickets
            .clone()
            .create_ticket(Request::new(pb::CreateTicketRequest {
                ticket: Some(ticket("acme", "E-1", "incident", "sev-1", t0)),
                request_id: rid("again"),
            }))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(reason(&exists), "TICKET_EXISTS");
    assert_eq!(
        resource(&exists),
        Some(("servicelevel.v1.Ticket".into(), first.name.clone()))
    );

    // NOT_FOUND names what was asked for.
    let missing = format!("tickets/{}", uuid::Uuid::now_v7());
    let not_found = expect_code(
        s.tickets
            .clone()
            .get_ticket(Request::new(pb::GetTicketRequest {
                name: missing.clone(),
                ..Default::default()
            }))
            .await,
        Code::NotFound,
    );
    assert_eq!(reason(&not_found), "RESOURCE_NOT_FOUND");
    assert_eq!(
        resource(&not_found),
        Some(("servicelevel.v1.Ticket".into(), missing))
    );

    // An existing id is RESOURCE_EXISTS, with the resource.
    let taken = expect_code(
        s.calendars
            .clone()
            .create_calendar(Request::new(pb::CreateCalendarRequest {
                calendar_id: "support".into(),
                calendar: Some(pb::Calendar {
                    display_name: "again".into(),
                    definition: Some(always_open("America/Toronto")),
                    ..Default::default()
                }),
                request_id: rid("cal"),
            }))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(reason(&taken), "RESOURCE_EXISTS");
    assert_eq!(
        resource(&taken).map(|r| r.1),
        Some("calendars/support".to_string())
    );

    // INVALID_ARGUMENT: the field in BadRequest and in the ErrorInfo.
    let invalid = expect_code(
        s.tickets
            .clone()
            .get_ticket(Request::new(pb::GetTicketRequest {
                name: "nonsense".into(),
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(reason(&invalid), "INVALID_REQUEST");
    assert_eq!(violations(&invalid), vec!["name".to_string()]);

    // With authentication on, a client restricted to acme: the same source id in globex
    // is another ticket (tickets are unique per organisation), and acme's own existing one
    // is named, since the client may touch it.
    create_ticket(&s, ticket("globex", "E-1", "incident", "sev-1", t0)).await;
    s.secure(secured()).await;
    let ch = connect(s.addr).await;
    let token = client(&s, "acme-crm", scopes(&[Scope::TicketsWrite]), &["acme"]).await;
    let mut tickets = pb::ticket_service_client::TicketServiceClient::with_interceptor(
        ch.clone(),
        bearer(&token),
    );
    let own = expect_code(
        tickets
            .create_ticket(Request::new(pb::CreateTicketRequest {
                ticket: Some(ticket("acme", "E-1", "incident", "sev-1", t0)),
                request_id: rid("restricted"),
            }))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(reason(&own), "TICKET_EXISTS");
    assert_eq!(resource(&own).map(|r| r.1), Some(first.name.clone()));

    // Refusals by the authentication layer have reasons too.
    let anonymous = expect_code(
        pb::ticket_service_client::TicketServiceClient::new(ch.clone())
            .get_ticket(Request::new(pb::GetTicketRequest {
                name: first.name.clone(),
                ..Default::default()
            }))
            .await,
        Code::Unauthenticated,
    );
    assert_eq!(reason(&anonymous), "TOKEN_MISSING");
    let no_scope = expect_code(
        tickets
            .get_ticket(Request::new(pb::GetTicketRequest {
                name: first.name.clone(),
                ..Default::default()
            }))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(reason(&no_scope), "SCOPE_MISSING");
    s.stop().await;
}

crate::on_both_stores!(errors_carry_stable_reasons_and_resources);
