//! Authentication, authorisation and TLS end to end: every RPC checks its scope (read from
//! the descriptor set, so a new RPC without one fails here), clients restricted to
//! organisations, revocation, idempotency keys per client, the bootstrap admin, the CLI,
//! TLS and mutual TLS.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _};
use servicelevel::api::pb;
use servicelevel::api::pb::hours_service_client::HoursServiceClient;
use servicelevel::auth::admin::{self, Bootstrap, NewClient};
use servicelevel::auth::scope::{METHODS, Reach};
use servicelevel::auth::{Scope, Scopes, Security, TlsConfig, token};
use servicelevel::domain::names::ResourceId;
use servicelevel::store::{SqlStore, Store as _};
use tokio::sync::oneshot;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::fixtures::*;
use crate::harness::*;

/// Authentication on, trusting a verified token for 200 ms (revocations show quickly).
pub(crate) fn secured() -> Security {
    Security {
        cache_ttl: Duration::from_millis(200),
        ..Security::required()
    }
}

pub(crate) fn now() -> DateTime<Utc> {
    utc(2026, 3, 9, 12, 0)
}

/// Creates an API client in the server's database and returns its token.
pub(crate) async fn client(s: &TestServer, name: &str, scopes: Scopes, orgs: &[&str]) -> String {
    let new = NewClient {
        name: ResourceId::parse(name).expect("a name"),
        scopes,
        organizations: (!orgs.is_empty()).then(|| {
            orgs.iter()
                .map(|o| ResourceId::parse(o).expect("an id"))
                .collect()
        }),
    };
    admin::create_client(&s.store, &new, Utc::now())
        .await
        .expect("client created")
        .1
}

pub(crate) fn scopes(list: &[Scope]) -> Scopes {
    list.iter().copied().collect()
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub(crate) struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub(crate) fn bearer(token: &str) -> Bearer {
    Bearer(format!("Bearer {token}").parse().expect("ascii"))
}

type Authed = InterceptedService<Channel, Bearer>;

fn tickets(ch: &Channel, token: &str) -> pb::ticket_service_client::TicketServiceClient<Authed> {
    pb::ticket_service_client::TicketServiceClient::with_interceptor(ch.clone(), bearer(token))
}

fn deadlines(
    ch: &Channel,
    token: &str,
) -> pb::deadline_service_client::DeadlineServiceClient<Authed> {
    pb::deadline_service_client::DeadlineServiceClient::with_interceptor(ch.clone(), bearer(token))
}

fn hours(ch: &Channel, token: &str) -> HoursServiceClient<Authed> {
    HoursServiceClient::with_interceptor(ch.clone(), bearer(token))
}

fn calendars(
    ch: &Channel,
    token: &str,
) -> pb::calendar_service_client::CalendarServiceClient<Authed> {
    pb::calendar_service_client::CalendarServiceClient::with_interceptor(ch.clone(), bearer(token))
}

fn organizations(
    ch: &Channel,
    token: &str,
) -> pb::organization_service_client::OrganizationServiceClient<Authed> {
    pb::organization_service_client::OrganizationServiceClient::with_interceptor(
        ch.clone(),
        bearer(token),
    )
}

// ---------------------------------------------------------------- raw calls

/// Messages as bytes, whatever their type: an empty message is the default of any type.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// One RPC of the API, from the descriptor set.
#[derive(Debug, Clone)]
pub(crate) struct Rpc {
    pub path: String,
    pub server_streaming: bool,
}

/// Every method of every `servicelevel` service.
pub(crate) fn described() -> Vec<Rpc> {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut rpcs = Vec::new();
    for file in &set.file {
        let package = file.package();
        if !package.starts_with("servicelevel.") {
            continue;
        }
        for service in &file.service {
            for method in &service.method {
                assert!(
                    !method.client_streaming(),
                    "{}: client streaming is not covered here",
                    method.name()
                );
                rpcs.push(Rpc {
                    path: format!("/{package}.{}/{}", service.name(), method.name()),
                    server_streaming: method.server_streaming(),
                });
            }
        }
    }
    rpcs
}

/// Calls `rpc` with an empty request, with `token` if any: the status it answers with
/// (OK when it answers at all, for a stream).
async fn call(ch: &Channel, rpc: &Rpc, token: Option<&str>, body: Vec<u8>) -> Code {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.expect("channel ready");
    let mut req = Request::new(body);
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("ascii"),
        );
    }
    let path = PathAndQuery::try_from(rpc.path.as_str()).expect("a path");
    let result = if rpc.server_streaming {
        grpc.server_streaming(req, path, Raw).await.map(|_| ())
    } else {
        grpc.unary(req, path, Raw).await.map(|_| ())
    };
    match result {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// The table-driven check: every RPC refuses calls without a token, refuses a token
/// without its scope, and lets a token with it through.
async fn every_rpc_checks_its_scope(db: Db) {
    let mut s = TestServer::start(db, now()).await;
    s.secure(secured()).await;
    let ch = connect(s.addr).await;
    let all = client(&s, "all", Scopes::all(), &[]).await;
    let restricted = client(&s, "restricted", Scopes::all(), &["acme"]).await;
    let mut lacking = BTreeMap::new();
    for scope in Scope::ALL {
        let mut others = Scopes::all();
        others.remove(scope);
        let name = format!("without-{}", scope.as_str().replace(':', "-"));
        lacking.insert(scope, client(&s, &name, others, &[]).await);
    }
    let rpcs = described();
    assert!(rpcs.len() > 40, "the descriptor set lists the API");
    let mut missing = Vec::new();
    for rpc in &rpcs {
        let Some(method) = METHODS.iter().find(|m| m.path == rpc.path) else {
            missing.push(rpc.path.clone());
            continue;
        };
        let path = &rpc.path;
        assert_eq!(
            call(&ch, rpc, None, Vec::new()).await,
            Code::Unauthenticated,
            "{path} without a token"
        );
        assert_eq!(
            call(&ch, rpc, Some("sl_not_a_token"), Vec::new()).await,
            Code::Unauthenticated,
            "{path} with an unknown token"
        );
        assert_eq!(
            call(&ch, rpc, Some(&lacking[&method.scope]), Vec::new()).await,
            Code::PermissionDenied,
            "{path} without {}",
            method.scope
        );
        let with = call(&ch, rpc, Some(&all), Vec::new()).await;
        assert!(
            !matches!(with, Code::Unauthenticated | Code::PermissionDenied),
            "{path} with {}: {with:?}",
            method.scope
        );
        if method.reach == Reach::SharedWrite {
            assert_eq!(
                call(&ch, rpc, Some(&restricted), Vec::new()).await,
                Code::PermissionDenied,
                "{path} by a client restricted to organisations"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "RPCs without a scope in servicelevel::auth::scope::METHODS: {missing:?}"
    );
    s.stop().await;
}

/// Health and, by default, reflection answer without a token (Kubernetes probes and
/// generic tools send none); `SERVICELEVEL_REFLECTION=token` makes reflection want any
/// valid token. Reflection serves the google.rpc error details too.
async fn health_and_reflection_are_open_unless_reflection_needs_a_token(db: Db) {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mut s = TestServer::start(db, now()).await;
    s.secure(secured()).await;
    let ch = connect(s.addr).await;
    let health = HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers without a token")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let ask = |request: MessageRequest| {
        tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        }])
    };
    let list = || ask(MessageRequest::ListServices(String::new()));
    let mut stream = ServerReflectionClient::new(ch.clone())
        .server_reflection_info(ask(MessageRequest::FileContainingSymbol(
            "google.rpc.BadRequest".into(),
        )))
        .await
        .expect("reflection without a token")
        .into_inner();
    match stream
        .message()
        .await
        .expect("a response")
        .and_then(|r| r.message_response)
    {
        Some(MessageResponse::FileDescriptorResponse(files)) => {
            let files: Vec<prost_types::FileDescriptorProto> = files
                .file_descriptor_proto
                .iter()
                .map(|f| {
                    prost_types::FileDescriptorProto::decode(f.as_slice())
                        .expect("a file descriptor")
                })
                .collect();
            assert!(
                files.iter().any(|f| f.package() == "google.rpc"
                    && f.message_type.iter().any(|m| m.name() == "BadRequest")),
                "{:?}",
                files.iter().map(|f| f.name()).collect::<Vec<_>>()
            );
        }
        other => panic!("google.rpc.BadRequest is not served: {other:?}"),
    }

    s.secure(Security {
        reflection: servicelevel::auth::ReflectionAccess::Token,
        ..secured()
    })
    .await;
    let ch = connect(s.addr).await;
    let refused = ServerReflectionClient::new(ch.clone())
        .server_reflection_info(list())
        .await;
    expect_code(refused, Code::Unauthenticated);
    // A token with one unrelated scope is enough.
    let token = client(&s, "browser", scopes(&[Scope::AlertsRead]), &[]).await;
    let mut stream = ServerReflectionClient::with_interceptor(ch.clone(), bearer(&token))
        .server_reflection_info(list())
        .await
        .expect("reflection with a token")
        .into_inner();
    assert!(stream.message().await.expect("a response").is_some());
    // A malformed header is refused like a missing one.
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.expect("ready");
    let mut req = Request::new(Vec::new());
    req.metadata_mut().insert(
        "authorization",
        "Basic dXNlcjpwYXNz".parse().expect("ascii"),
    );
    let r = grpc
        .unary(
            req,
            PathAndQuery::from_static("/servicelevel.v1.CalendarService/ListCalendars"),
            Raw,
        )
        .await;
    expect_code(r, Code::Unauthenticated);
    s.stop().await;
}

// ---------------------------------------------------------------- organisations

/// Two organisations with a ticket and an hours contract each; returns the tickets.
pub(crate) async fn acme_and_globex(s: &TestServer) -> (String, String) {
    create_policy(
        s,
        "plain",
        pb::PolicyDefinition {
            clocks: vec![first_response_within_an_hour()],
            ..Default::default()
        },
    )
    .await;
    let mut h = HoursServiceClient::new(connect(s.addr).await);
    h.create_plan(Request::new(pb::CreatePlanRequest {
        plan_id: "basic".into(),
        plan: Some(pb::Plan {
            display_name: "Basic".into(),
            buckets: vec![pb::BucketTerms {
                bucket: "support".into(),
                period_unit: pb::PeriodUnit::Month as i32,
                allowance_minutes: 600,
                ..Default::default()
            }],
            ..Default::default()
        }),
        request_id: rid("plan"),
    }))
    .await
    .expect("plan created");
    let mut made = Vec::new();
    for org in ["acme", "globex"] {
        create_org(
            s,
            org,
            organization("Europe/London", "", "plain", vec![], vec![]),
        )
        .await;
        h.set_hours_contract(Request::new(pb::SetHoursContractRequest {
            contract: Some(pb::HoursContract {
                organization: format!("organizations/{org}"),
                start_date: "2026-01-01".into(),
                assignments: vec![pb::PlanAssignment {
                    plan: "plans/basic".into(),
                    effective_date: "2026-01-01".into(),
                }],
                ..Default::default()
            }),
            request_id: rid("contract"),
        }))
        .await
        .expect("contract set");
        let t = create_ticket(s, ticket(org, &format!("{org}-1"), "incident", "", now())).await;
        made.push(t.name);
    }
    (made[0].clone(), made[1].clone())
}

fn usage(org: &str) -> pb::RecordUsageRequest {
    pb::RecordUsageRequest {
        organization: format!("organizations/{org}"),
        bucket: "support".into(),
        minutes: 30,
        service_time: ts(now()),
        request_id: rid("use"),
        ..Default::default()
    }
}

fn breached(org: &str) -> pb::ListBreachedClocksRequest {
    pb::ListBreachedClocksRequest {
        filter: Some(pb::ClockFilter {
            organization: org.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A client restricted to `acme` touches acme's tickets and ledger, and nothing of
/// globex's: by request field, by the ticket's organisation, and in lists and streams.
async fn restricted_clients_touch_their_organisations_only(db: Db) {
    let mut s = TestServer::start(db, now()).await;
    let (acme_ticket, globex_ticket) = acme_and_globex(&s).await;
    s.secure(secured()).await;
    let ch = connect(s.addr).await;
    let acme = client(&s, "acme-crm", Scopes::all(), &["acme"]).await;
    let ops = client(&s, "ops", Scopes::all(), &[]).await;
    let denied = Code::PermissionDenied;

    // Tickets: by the ticket's organisation. Another organisation's ticket does not
    // exist for this client (NOT_FOUND, as for a ticket that does not exist).
    let hidden = Code::NotFound;
    let mut t = tickets(&ch, &acme);
    let get = |name: &str| pb::GetTicketRequest {
        name: name.into(),
        view: pb::TicketView::Full as i32,
    };
    t.get_ticket(get(&acme_ticket)).await.expect("own ticket");
    expect_code(t.get_ticket(get(&globex_ticket)).await, hidden);
    let reply = |ticket: &str| pb::RecordEventRequest {
        ticket: ticket.into(),
        event: Some(event(now(), pb::ticket_event::Kind::AgentResponse(()))),
    };
    t.record_event(reply(&acme_ticket))
        .await
        .expect("event on own ticket");
    expect_code(t.record_event(reply(&globex_ticket)).await, hidden);
    let moved = t
        .move_ticket_policy(pb::MoveTicketPolicyRequest {
            ticket: globex_ticket.clone(),
            request_id: rid("move"),
            ..Default::default()
        })
        .await;
    expect_code(moved, hidden);
    // By the request's organisation.
    let create = |org: &str, ext: &str| pb::CreateTicketRequest {
        ticket: Some(ticket(org, ext, "incident", "", now())),
        request_id: rid("tkt"),
    };
    t.create_ticket(create("acme", "acme-2"))
        .await
        .expect("ticket in own organisation");
    expect_code(t.create_ticket(create("globex", "globex-2")).await, denied);
    let batch = t
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            items: vec![
                pb::UpsertTicketItem {
                    ticket: Some(ticket("acme", "acme-3", "incident", "", now())),
                    request_id: rid("up"),
                    ..Default::default()
                },
                pb::UpsertTicketItem {
                    ticket: Some(ticket("globex", "globex-3", "incident", "", now())),
                    request_id: rid("up"),
                    ..Default::default()
                },
            ],
        })
        .await
        .expect("batch answers per item")
        .into_inner();
    let codes: Vec<i32> = batch
        .results
        .iter()
        .map(|r| r.status.as_ref().map_or(0, |s| s.code))
        .collect();
    assert_eq!(codes, [Code::Ok as i32, denied as i32]);
    // Lists name an organisation of theirs.
    let list = |org: &str| pb::ListTicketsRequest {
        organization: org.into(),
        ..Default::default()
    };
    expect_code(t.list_tickets(list("")).await, denied);
    expect_code(t.list_tickets(list("organizations/globex")).await, denied);
    let own = t
        .list_tickets(list("organizations/acme"))
        .await
        .expect("own list")
        .into_inner();
    assert!(!own.tickets.is_empty());
    assert!(
        own.tickets
            .iter()
            .all(|t| t.organization == "organizations/acme")
    );
    let mut d = deadlines(&ch, &acme);
    expect_code(d.list_breached_clocks(breached("")).await, denied);
    d.list_breached_clocks(breached("organizations/acme"))
        .await
        .expect("own clocks");
    let watch =
        pb::alert_service_client::AlertServiceClient::with_interceptor(ch.clone(), bearer(&acme))
            .watch_alerts(pb::WatchAlertsRequest::default())
            .await;
    expect_code(watch, denied);

    // The ledger.
    let mut h = hours(&ch, &acme);
    h.record_usage(usage("acme")).await.expect("own ledger");
    expect_code(h.record_usage(usage("globex")).await, denied);
    let balance = |org: &str| pb::GetBalanceRequest {
        organization: format!("organizations/{org}"),
        bucket: "support".into(),
        ..Default::default()
    };
    h.get_balance(balance("acme")).await.expect("own balance");
    expect_code(h.get_balance(balance("globex")).await, denied);
    let mut export = h
        .export_statements(pb::ExportStatementsRequest {
            date: "2026-03-09".into(),
            include_entries: false,
        })
        .await
        .expect("export")
        .into_inner();
    let mut exported = Vec::new();
    while let Some(st) = export.message().await.expect("statement") {
        exported.push(st.organization);
    }
    assert_eq!(exported, ["organizations/acme"]);

    // Organisations, and the shared catalogue.
    let mut o = organizations(&ch, &acme);
    let orgs = o
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let names: Vec<&str> = orgs.organizations.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["organizations/acme"]);
    expect_code(
        o.get_organization(pb::GetOrganizationRequest {
            name: "organizations/globex".into(),
        })
        .await,
        denied,
    );
    let cal = calendars(&ch, &acme)
        .create_calendar(pb::CreateCalendarRequest {
            calendar_id: "acme-hours".into(),
            calendar: Some(pb::Calendar {
                display_name: "Acme".into(),
                definition: Some(always_open("Europe/London")),
                ..Default::default()
            }),
            request_id: rid("cal"),
        })
        .await;
    expect_code(cal, denied);

    // An unrestricted client touches both.
    let mut t = tickets(&ch, &ops);
    t.get_ticket(get(&globex_ticket)).await.expect("any ticket");
    hours(&ch, &ops)
        .record_usage(usage("globex"))
        .await
        .expect("any ledger");
    deadlines(&ch, &ops)
        .list_breached_clocks(breached(""))
        .await
        .expect("every organisation's clocks");
    s.stop().await;
}

// ---------------------------------------------------------------- lifecycle

/// A revoked token stops working once the server's cache lets go of it; names are never
/// reused.
async fn revoked_tokens_stop_working(db: Db) {
    let mut s = TestServer::start(db, now()).await;
    s.secure(secured()).await;
    let ch = connect(s.addr).await;
    let token = client(&s, "reporting", scopes(&[Scope::PoliciesRead]), &[]).await;
    let list = pb::ListCalendarsRequest::default;
    calendars(&ch, &token)
        .list_calendars(list())
        .await
        .expect("a valid token");
    let revoked = admin::revoke_client(&s.store, "reporting", Utc::now())
        .await
        .expect("revoked");
    let at = revoked.revoked_at.expect("a revocation instant");
    // Past the cache's 200 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    expect_code(
        calendars(&ch, &token).list_calendars(list()).await,
        Code::Unauthenticated,
    );
    // Revoking again keeps the first instant; the name stays taken.
    let again = admin::revoke_client(&s.store, "reporting", Utc::now())
        .await
        .expect("revoked again");
    assert_eq!(again.revoked_at, Some(at));
    let new = NewClient::parse("reporting", "policies:read", &[]).expect("valid");
    let err = admin::create_client(&s.store, &new, Utc::now())
        .await
        .expect_err("the name is taken");
    assert!(err.contains("already exists"), "{err}");
    assert!(
        admin::revoke_client(&s.store, "nobody", Utc::now())
            .await
            .is_err()
    );
    let lines = admin::list_clients(&s.store).await.expect("list");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("reporting\t") && lines[0].contains("revoked"),
        "{lines:?}"
    );
    s.stop().await;
}

fn calendar_request(id: &str, request_id: &str) -> pb::CreateCalendarRequest {
    pb::CreateCalendarRequest {
        calendar_id: id.into(),
        calendar: Some(pb::Calendar {
            display_name: id.into(),
            definition: Some(always_open("Europe/London")),
            ..Default::default()
        }),
        request_id: request_id.into(),
    }
}

/// Two clients using the same request id each get their own answer, and naming another
/// client in the old metadata does not reach its answers.
async fn request_ids_are_scoped_to_the_client(db: Db) {
    let mut s = TestServer::start(db, now()).await;
    s.secure(secured()).await;
    let ch = connect(s.addr).await;
    let admin_scopes = scopes(&[Scope::PoliciesAdmin, Scope::PoliciesRead]);
    let a = client(&s, "client-a", admin_scopes, &[]).await;
    let b = client(&s, "client-b", admin_scopes, &[]).await;
    let shared = rid("same");
    let made_a = calendars(&ch, &a)
        .create_calendar(calendar_request("cal-a", &shared))
        .await
        .expect("a creates")
        .into_inner();
    let made_b = calendars(&ch, &b)
        .create_calendar(calendar_request("cal-b", &shared))
        .await
        .expect("b creates its own, not a's stored answer")
        .into_inner();
    assert_eq!(made_a.name, "calendars/cal-a");
    assert_eq!(made_b.name, "calendars/cal-b");
    // Each retry gets its own client's answer.
    let again = calendars(&ch, &a)
        .create_calendar(calendar_request("cal-a", &shared))
        .await
        .expect("a's retry")
        .into_inner();
    assert_eq!(again, made_a);
    // b repeats a's request under a's id in the metadata authentication ignores: it
    // does not get a's answer, it tries to create cal-a itself.
    let a_id = s
        .store
        .api_client_by_token_hash(&token::hash(&a))
        .await
        .expect("lookup")
        .expect("a exists")
        .id;
    let mut req = Request::new(calendar_request("cal-a", &shared));
    req.metadata_mut()
        .insert("x-servicelevel-client", a_id.parse().expect("ascii"));
    expect_code(
        calendars(&ch, &b).create_calendar(req).await,
        Code::AlreadyExists,
    );
    s.stop().await;
}

/// The first admin comes from a token hash (a Secret), once, whatever the restarts.
async fn bootstrap_admin_from_a_token_hash(db: Db) {
    let mut s = TestServer::start(db, now()).await;
    let token = "an-operator-made-token-0123456789abcdef";
    let hash = token::hash(token);
    assert_eq!(
        admin::bootstrap(&s.store, &hash, Utc::now()).await,
        Ok(Bootstrap::Created {
            name: "bootstrap-admin".into()
        })
    );
    // sha256sum's output, as pasted, works too; the second start changes nothing.
    assert_eq!(
        admin::bootstrap(&s.store, &format!("{hash}  -"), Utc::now()).await,
        Ok(Bootstrap::Present {
            name: "bootstrap-admin".into()
        })
    );
    let stored = s
        .store
        .api_client_by_token_hash(&hash)
        .await
        .expect("lookup")
        .expect("stored");
    assert_eq!(stored.scopes.len(), Scope::ALL.len());
    assert!(stored.organizations.is_none());
    assert!(
        admin::bootstrap(&s.store, token, Utc::now())
            .await
            .is_err_and(|e| !e.contains(token)),
        "a token given for its hash is refused, and not echoed"
    );

    s.secure(secured()).await;
    let ch = connect(s.addr).await;
    calendars(&ch, token)
        .create_calendar(calendar_request("support", &rid("cal")))
        .await
        .expect("the bootstrap admin may do anything");
    // Revoked, it stays revoked across restarts.
    admin::revoke_client(&s.store, "bootstrap-admin", Utc::now())
        .await
        .expect("revoked");
    assert!(matches!(
        admin::bootstrap(&s.store, &hash, Utc::now()).await,
        Ok(Bootstrap::Present { .. })
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    expect_code(
        calendars(&ch, token)
            .list_calendars(pb::ListCalendarsRequest::default())
            .await,
        Code::Unauthenticated,
    );
    // A new hash (the Secret changed) makes a second admin beside the first.
    let other = token::hash("another-token");
    assert_eq!(
        admin::bootstrap(&s.store, &other, Utc::now()).await,
        Ok(Bootstrap::Created {
            name: format!("bootstrap-admin-{}", &other[..8])
        })
    );
    s.stop().await;
}

/// Runs the binary.
fn run_cli(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_servicelevel"));
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("SERVICELEVEL_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd.spawn().expect("the binary runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("stdin written");
    drop(input);
    child.wait_with_output().expect("the binary ends")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `servicelevel client create | list | revoke | hash-token` on the database, and `serve`
/// refusing to run without authentication off loopback.
async fn the_cli_manages_clients(db: Db) {
    let s = TestServer::start(db, now()).await;
    let url = s.url.as_str();
    let out = run_cli(
        &[
            "client",
            "create",
            "--name",
            "crm",
            "--scopes",
            "tickets:read,tickets:write",
            "--org",
            "acme",
            "--database-url",
            url,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_string();
    assert!(
        token.starts_with("sl_"),
        "only the token on stdout: {token}"
    );
    assert!(text(&out.stderr).contains("shown this once"));
    let stored = s
        .store
        .api_client_by_token_hash(&token::hash(&token))
        .await
        .expect("lookup")
        .expect("only the hash is stored");
    assert_eq!(stored.name.as_str(), "crm");
    assert_eq!(token::client_id_of(&token), Some(stored.id.as_str()));

    let out = run_cli(&["client", "hash-token"], Some(&format!("{token}\n")));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), stored.token_hash);

    let out = run_cli(&["client", "list", "--database-url", url], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let mut rows = listed.lines();
    assert_eq!(
        rows.next(),
        Some("NAME\tID\tSCOPES\tORGANIZATIONS\tCREATED\tSTATE"),
        "a header row first: {listed}"
    );
    let row = rows.next().unwrap_or_default();
    assert!(
        row.starts_with("crm\t") && row.contains("\ttickets:read,tickets:write\tacme\t"),
        "{listed}"
    );
    assert_eq!(row.split('\t').count(), 6, "a column per header: {row}");
    assert!(listed.contains("active") && !listed.contains(&token));

    let out = run_cli(&["client", "revoke", "crm", "--database-url", url], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("revoked"));
    let out = run_cli(&["client", "revoke", "nobody", "--database-url", url], None);
    assert!(!out.status.success());

    let out = run_cli(
        &[
            "client",
            "create",
            "--name",
            "x",
            "--scopes",
            "tickets:destroy",
            "--database-url",
            url,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("tickets:read"),
        "lists the scopes"
    );

    let out = run_cli(
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--auth",
            "off",
            "--database-url",
            url,
        ],
        None,
    );
    assert!(!out.status.success());
    // The start-up error, once, on standard error: not also as a log line.
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        stderr.matches("loopback address").count() + stdout.matches("loopback address").count(),
        1,
        "printed once: stdout {stdout:?}, stderr {stderr:?}"
    );
    assert!(stderr.starts_with("servicelevel: "), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes in a pipe: {stderr:?}"
    );

    // The built-in packs, sorted by name.
    let out = run_cli(&["pack", "list"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.split('\t').next().map(str::to_string))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(names, sorted);
    s.stop().await;
}

// ---------------------------------------------------------------- TLS

fn cert(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/certs")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A server on `store` with `security` (TLS, say); stops when the sender is dropped.
async fn spawn_secured(
    store: SqlStore,
    security: Security,
) -> (std::net::SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    let addr = listener.local_addr().expect("bound");
    let (stop, stopped) = oneshot::channel::<()>();
    let clock: std::sync::Arc<dyn servicelevel::time::Clock> =
        std::sync::Arc::new(servicelevel::time::ManualClock::new(now()));
    tokio::spawn(servicelevel::server::serve_secured(
        store,
        clock,
        listener,
        async {
            let _ = stopped.await;
        },
        test_options(),
        security,
    ));
    (addr, stop)
}

/// A TLS channel trusting the test CA, presenting `identity` (certificate, key) if any.
async fn tls_channel(
    addr: std::net::SocketAddr,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(cert("ca.crt")))
        .domain_name("localhost");
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(cert(c), cert(k)));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .timeout(Duration::from_secs(5))
        .tls_config(tls)?
        .connect()
        .await
}

async fn health_over(ch: Channel) -> Result<(), Status> {
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
}

/// Whether a client gets anything from the server: refused at the handshake, or at its
/// first call (with TLS 1.3 the client finishes its side before the server checks it).
async fn reaches(addr: std::net::SocketAddr, identity: Option<(&str, &str)>) -> bool {
    match tls_channel(addr, identity).await {
        Err(_) => false,
        Ok(ch) => health_over(ch).await.is_ok(),
    }
}

async fn plaintext_reaches(addr: std::net::SocketAddr) -> bool {
    let Ok(ch) = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .timeout(Duration::from_secs(5))
        .connect()
        .await
    else {
        return false;
    };
    health_over(ch).await.is_ok()
}

/// TLS from certificate files: TLS clients trusting the CA get through, plaintext ones
/// do not.
async fn tls_serves_encrypted_only(db: Db) {
    let s = TestServer::start(db, now()).await;
    let tls = TlsConfig::from_pem(&cert("server.crt"), &cert("server.key"), None).expect("tls");
    let security = Security {
        tls: Some(tls),
        ..Security::off()
    };
    let (addr, _stop) = spawn_secured(s.store.clone(), security).await;
    assert!(reaches(addr, None).await, "a TLS client gets through");
    let ch = tls_channel(addr, None).await.expect("tls");
    pb::calendar_service_client::CalendarServiceClient::new(ch)
        .list_calendars(pb::ListCalendarsRequest::default())
        .await
        .expect("an RPC over TLS");
    assert!(!plaintext_reaches(addr).await, "plaintext is refused");
    s.stop().await;
}

/// Mutual TLS: only clients with a certificate from the client CA get through, and with
/// authentication on they still need a token.
async fn mutual_tls_needs_a_client_certificate(db: Db) {
    let s = TestServer::start(db, now()).await;
    let tls = TlsConfig::from_pem(
        &cert("server.crt"),
        &cert("server.key"),
        Some(&cert("ca.crt")),
    )
    .expect("mtls");
    let security = Security {
        tls: Some(tls),
        ..secured()
    };
    let (addr, _stop) = spawn_secured(s.store.clone(), security).await;
    let good = Some(("client.crt", "client.key"));
    assert!(
        reaches(addr, good).await,
        "a client certificate gets through"
    );
    assert!(
        !reaches(addr, None).await,
        "no client certificate is refused"
    );
    assert!(
        !reaches(addr, Some(("rogue.crt", "rogue.key"))).await,
        "a certificate from another CA is refused"
    );
    assert!(!plaintext_reaches(addr).await, "plaintext is refused");
    let ch = tls_channel(addr, good).await.expect("mtls");
    expect_code(
        pb::calendar_service_client::CalendarServiceClient::new(ch.clone())
            .list_calendars(pb::ListCalendarsRequest::default())
            .await,
        Code::Unauthenticated,
    );
    let token = client(&s, "mtls", scopes(&[Scope::PoliciesRead]), &[]).await;
    calendars(&ch, &token)
        .list_calendars(pb::ListCalendarsRequest::default())
        .await
        .expect("certificate and token");
    s.stop().await;
}

/// Kills the child process it holds when dropped (a failed test included).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary wires it all from the environment the Helm chart sets: TLS from files,
/// authentication required, the bootstrap admin from its token hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_tls_and_the_bootstrap_admin() {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "servicelevel-auth-{}",
        uuid::Uuid::now_v7().simple()
    )));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let token = "chart-made-token-0123456789abcdef0123456789";
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_servicelevel"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SERVICELEVEL_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("serve")
        .env("SERVICELEVEL_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "SERVICELEVEL_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.0.join("s.db").display()),
        )
        .env("SERVICELEVEL_AUTH", "required")
        .env(
            "SERVICELEVEL_BOOTSTRAP_ADMIN_TOKEN_HASH",
            token::hash(token),
        )
        .env("SERVICELEVEL_TLS_CERT", certs.join("server.crt"))
        .env("SERVICELEVEL_TLS_KEY", certs.join("server.key"))
        .env("SERVICELEVEL_TLS_CLIENT_CA", "")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _server = Running(cmd.spawn().expect("the binary starts"));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut ch = None;
    for _ in 0..100 {
        if let Ok(c) = tls_channel(addr, None).await
            && health_over(c.clone()).await.is_ok()
        {
            ch = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ch = ch.expect("the binary serves health over TLS");
    expect_code(
        pb::calendar_service_client::CalendarServiceClient::new(ch.clone())
            .list_calendars(pb::ListCalendarsRequest::default())
            .await,
        Code::Unauthenticated,
    );
    calendars(&ch, token)
        .create_calendar(calendar_request("support", &rid("cal")))
        .await
        .expect("the bootstrap admin over TLS");
}

/// Waits (at most 10 s, the reload interval being 100 ms) until a new TLS client
/// trusting the test CA reaches the server, or stops reaching it.
async fn until_reaches(addr: std::net::SocketAddr, wanted: bool) -> bool {
    for _ in 0..100 {
        if reaches(addr, None).await == wanted {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Certificate files are read again while serving: a renewed certificate applies to new
/// connections without a restart, and files rustls refuses leave the current one in use.
async fn renewed_certificates_apply_without_a_restart(db: Db) {
    let s = TestServer::start(db, now()).await;
    let dir = std::env::temp_dir().join(format!("servicelevel-tls-{}", rid("d")));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _dir = TempDir(dir.clone());
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let install = |c: &str, k: &str| {
        std::fs::write(&crt, cert(c)).expect("certificate written");
        std::fs::write(&key, cert(k)).expect("key written");
    };
    install("server.crt", "server.key");
    let tls = TlsConfig::from_files(Some(&crt), Some(&key), None)
        .expect("tls")
        .expect("configured")
        .reload_every(Duration::from_millis(100));
    let security = Security {
        tls: Some(tls),
        ..Security::off()
    };
    let (addr, _stop) = spawn_secured(s.store.clone(), security).await;
    assert!(reaches(addr, None).await, "the first certificate serves");
    // An open channel keeps working across reloads.
    let open = tls_channel(addr, None).await.expect("tls");

    // Renewed with a certificate the clients do not trust (another CA): new handshakes
    // get it, so they fail.
    install("rogue.crt", "rogue.key");
    assert!(
        until_reaches(addr, false).await,
        "the new certificate is served"
    );
    // Broken files (a key that is not the certificate's) are refused: the current
    // certificate stays.
    install("server.crt", "rogue.key");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !reaches(addr, None).await,
        "a refused change keeps the current certificate"
    );
    // Back to a trusted one.
    install("server.crt", "server.key");
    assert!(
        until_reaches(addr, true).await,
        "the renewed certificate is served"
    );
    health_over(open)
        .await
        .expect("a connection made before the reloads still works");
    s.stop().await;
}

crate::on_both_stores!(
    renewed_certificates_apply_without_a_restart,
    every_rpc_checks_its_scope,
    health_and_reflection_are_open_unless_reflection_needs_a_token,
    restricted_clients_touch_their_organisations_only,
    revoked_tokens_stop_working,
    request_ids_are_scoped_to_the_client,
    bootstrap_admin_from_a_token_hash,
    the_cli_manages_clients,
    tls_serves_encrypted_only,
    mutual_tls_needs_a_client_certificate,
);
