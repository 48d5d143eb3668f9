//! The API over HTTP/1.1 on the gRPC port, with a real HTTP/1.1 client (hyper's): Connect
//! JSON and binary calls, errors with their details, server streams, deadlines, shed
//! calls, gRPC-Web, the CSV exports compared with the RPCs they mirror, tokens and scopes,
//! and the same request id replayed across transports.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt as _;
use prost::Message as _;
use prost::bytes::Bytes;
use servicelevel::api::pb;
use servicelevel::auth::Scope;
use tonic::Request;

use crate::auth::{client, scopes, secured};
use crate::fixtures::*;
use crate::harness::*;
use crate::hours::{bill, bucket, contract, hours, org, plan, statement, usage};

/// An HTTP response as read.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// One HTTP/1.1 request on a connection of its own.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(Bytes::from(body)))
        .expect("a request");
    let resp = sender.send_request(req).await.expect("a response");
    assert_eq!(resp.version(), http::Version::HTTP_11);
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("the body").to_bytes().to_vec();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const PROTO: (&str, &str) = ("content-type", "application/proto");

async fn connect_json(addr: SocketAddr, method: &str, body: serde_json::Value) -> Reply {
    send(
        addr,
        "POST",
        &format!("/servicelevel.v1.{method}"),
        &[JSON, ("connect-protocol-version", "1")],
        body.to_string().into_bytes(),
    )
    .await
}

/// The messages and the end of a Connect stream body.
fn envelopes(body: &[u8]) -> (Vec<Vec<u8>>, serde_json::Value) {
    let mut messages = Vec::new();
    let mut rest = body;
    while rest.len() >= 5 {
        let flags = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let message = rest[5..5 + len].to_vec();
        rest = &rest[5 + len..];
        if flags & 0b10 != 0 {
            assert!(rest.is_empty(), "nothing after the end message");
            let end = serde_json::from_slice(&message).expect("the end message is JSON");
            return (messages, end);
        }
        messages.push(message);
    }
    panic!("a stream without its end message");
}

fn envelope(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn detail<'a>(error: &'a serde_json::Value, ty: &str) -> &'a serde_json::Value {
    error["details"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["type"] == ty))
        .unwrap_or_else(|| panic!("a {ty} detail in {error}"))
}

/// Connect JSON and binary calls do what gRPC calls do, and one request id means one
/// request whichever transport carries it.
async fn connect_calls_are_grpc_calls(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    let create = serde_json::json!({
        "calendarId": "support",
        "requestId": "across-1",
        "calendar": {"displayName": "Support", "definition": {"timeZone": "UTC", "alwaysOpen": true}},
    });
    let r = connect_json(s.addr, "CalendarService/CreateCalendar", create.clone()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), "application/json");
    let made = r.json();
    assert_eq!(made["name"], "calendars/support");
    assert_eq!(made["definition"]["alwaysOpen"], true);
    let created_at = made["createTime"]
        .as_str()
        .expect("an RFC 3339 time")
        .to_string();
    assert!(created_at.ends_with('Z'), "{created_at}");

    // The same request over gRPC is a replay: the same calendar, not a second one.
    let replay = s
        .calendars
        .clone()
        .create_calendar(Request::new(pb::CreateCalendarRequest {
            calendar_id: "support".into(),
            calendar: Some(pb::Calendar {
                display_name: "Support".into(),
                definition: Some(always_open("UTC")),
                ..Default::default()
            }),
            request_id: "across-1".into(),
        }))
        .await
        .expect("a replay answers as the first call did")
        .into_inner();
    let replayed_at = replay.create_time.as_ref().map(|t| (t.seconds, t.nanos));
    let connect_at = chrono::DateTime::parse_from_rfc3339(&created_at)
        .map(|t| (t.timestamp(), t.timestamp_subsec_nanos() as i32))
        .ok();
    assert_eq!(replayed_at, connect_at);
    assert_eq!(replay.version, 1);
    // And the other way: a gRPC request replayed over Connect.
    let again = connect_json(s.addr, "CalendarService/CreateCalendar", create).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json(), made);
    // The same id with a different request is refused over Connect as over gRPC.
    let reused = connect_json(
        s.addr,
        "CalendarService/CreateCalendar",
        serde_json::json!({"calendarId": "other", "requestId": "across-1",
            "calendar": {"displayName": "Other", "definition": {"timeZone": "UTC", "alwaysOpen": true}}}),
    )
    .await;
    assert_eq!(reused.status, 409);
    let e = reused.json();
    assert_eq!(e["code"], "already_exists");
    assert_eq!(
        detail(&e, "google.rpc.ErrorInfo")["debug"]["reason"],
        "REQUEST_ID_REUSED"
    );

    // Binary: application/proto in and out.
    let get = pb::GetCalendarRequest {
        name: "calendars/support".into(),
        version: 0,
    };
    let r = send(
        s.addr,
        "POST",
        "/servicelevel.v1.CalendarService/GetCalendar",
        &[PROTO],
        get.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/proto");
    let cal = pb::Calendar::decode(r.body.as_slice()).expect("a Calendar");
    assert_eq!(cal, replay);

    // Errors: Connect's shape, gRPC's code and details.
    let missing = connect_json(
        s.addr,
        "CalendarService/GetCalendar",
        serde_json::json!({"name": "calendars/nope"}),
    )
    .await;
    assert_eq!(missing.status, 404);
    let e = missing.json();
    assert_eq!(e["code"], "not_found");
    assert_eq!(
        detail(&e, "google.rpc.ResourceInfo")["debug"]["resourceName"],
        "calendars/nope"
    );
    let bad = connect_json(
        s.addr,
        "CalendarService/CreateCalendar",
        serde_json::json!({"calendarId": "Bad Id", "requestId": "bad-1", "calendar": {}}),
    )
    .await;
    assert_eq!(bad.status, 400);
    let e = bad.json();
    assert_eq!(e["code"], "invalid_argument");
    let fields: Vec<&str> = detail(&e, "google.rpc.BadRequest")["debug"]["fieldViolations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter_map(|v| v["field"].as_str())
        .collect();
    assert!(fields.contains(&"calendar_id"), "{fields:?}");
    // The details' bytes are the gRPC ones: a generic client decodes them.
    let info = detail(&e, "google.rpc.ErrorInfo")["value"]
        .as_str()
        .expect("base64");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(info)
        .expect("unpadded base64");
    let info = tonic_types::pb::ErrorInfo::decode(bytes.as_slice()).expect("an ErrorInfo");
    assert_eq!(info.reason, "INVALID_REQUEST");
    // What is not JSON of the request's type is the caller's mistake.
    for body in [&b"{not json"[..], br#"{"name": 7}"#, br#"{} []"#] {
        let r = send(
            s.addr,
            "POST",
            "/servicelevel.v1.CalendarService/GetCalendar",
            &[JSON],
            body.to_vec(),
        )
        .await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(r.json()["code"], "invalid_argument");
    }
    // Unknown fields are ignored (a newer client), unknown methods are not found by
    // tonic, and a content type Connect does not define is refused.
    let r = connect_json(
        s.addr,
        "CalendarService/GetCalendar",
        serde_json::json!({"name": "calendars/support", "fieldFromTheFuture": 1}),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(
        s.addr,
        "POST",
        "/servicelevel.v1.CalendarService/GetCalendar",
        &[("content-type", "text/plain")],
        b"calendars/support".to_vec(),
    )
    .await;
    assert_eq!(r.status, 415);
    let r = send(
        s.addr,
        "GET",
        "/servicelevel.v1.CalendarService/GetCalendar",
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.status, 415);
    // Health answers over Connect too, for load balancers that speak HTTP/1.1 only.
    let r = send(
        s.addr,
        "POST",
        "/grpc.health.v1.Health/Check",
        &[JSON],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.json()["status"], "SERVING");
    s.stop().await;
}

/// Server streams in Connect's envelopes, the CSV exports, and both compared with the
/// gRPC answers they mirror.
async fn streams_and_csv_exports_mirror_the_rpcs(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 20, 12, 0)).await;
    let mut h = hours(&s).await;
    plan(
        &mut h,
        "small",
        vec![pb::BucketTerms {
            overage: bill(12_000, "EUR"),
            ..bucket("support", pb::PeriodUnit::Month, 60)
        }],
    )
    .await;
    for (i, id) in ["beta", "alpha", "gamma"].iter().enumerate() {
        org(&s, id, "Europe/London", vec![]).await;
        contract(&mut h, id, "2026-01-01", &[("small", "2026-01-01")]).await;
        for _ in 0..=i {
            h.record_usage(Request::new(usage(
                id,
                "support",
                45,
                utc(2026, 3, 2, 10, 0),
            )))
            .await
            .expect("usage");
        }
    }
    let mut grpc = Vec::new();
    let mut export = h
        .export_statements(pb::ExportStatementsRequest {
            date: "2026-03-15".into(),
            include_entries: false,
        })
        .await
        .expect("export")
        .into_inner();
    while let Some(st) = export.message().await.expect("a statement") {
        grpc.push(st);
    }
    assert_eq!(grpc.len(), 3);

    // Connect stream, JSON.
    let req = envelope(br#"{"date":"2026-03-15"}"#);
    let r = send(
        s.addr,
        "POST",
        "/servicelevel.v1.HoursService/ExportStatements",
        &[("content-type", "application/connect+json")],
        req,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/connect+json");
    let (messages, end) = envelopes(&r.body);
    assert_eq!(end, serde_json::json!({}), "a clean end");
    let orgs: Vec<String> = messages
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_slice(m).expect("JSON");
            v["organization"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    let want: Vec<String> = grpc.iter().map(|s| s.organization.clone()).collect();
    assert_eq!(orgs, want);
    let first: serde_json::Value = serde_json::from_slice(&messages[0]).expect("JSON");
    // int64 minutes are strings in proto3 JSON.
    assert_eq!(
        first["buckets"][0]["rawMinutes"],
        grpc[0].buckets[0].raw_minutes.to_string()
    );
    // Connect stream, binary: the very messages gRPC sends.
    let req = envelope(
        &pb::ExportStatementsRequest {
            date: "2026-03-15".into(),
            include_entries: false,
        }
        .encode_to_vec(),
    );
    let r = send(
        s.addr,
        "POST",
        "/servicelevel.v1.HoursService/ExportStatements",
        &[("content-type", "application/connect+proto")],
        req,
    )
    .await;
    let (messages, _) = envelopes(&r.body);
    let decoded: Vec<pb::Statement> = messages
        .iter()
        .map(|m| pb::Statement::decode(m.as_slice()).expect("a Statement"))
        .collect();
    assert_eq!(decoded.len(), 3);
    for (a, b) in decoded.iter().zip(&grpc) {
        assert_eq!(a.buckets, b.buckets);
    }
    // A stream's error is in its end message, with HTTP 200.
    let r = send(
        s.addr,
        "POST",
        "/servicelevel.v1.HoursService/ExportStatements",
        &[("content-type", "application/connect+json")],
        envelope(br#"{"date":"not a date"}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    let (messages, end) = envelopes(&r.body);
    assert!(messages.is_empty());
    assert_eq!(end["error"]["code"], "invalid_argument", "{end}");

    // The period export as CSV: a header and one row per organisation and bucket, the
    // same numbers as the RPC.
    let r = send(
        s.addr,
        "GET",
        "/v1/statements.csv?date=2026-03-15",
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/csv"));
    let text = String::from_utf8(r.body.clone()).expect("UTF-8");
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(lines.len(), 1 + 3, "{text}");
    let col = |row: &str, name: &str| -> String {
        let i = header.iter().position(|c| *c == name).expect("a column");
        row.split(',').nth(i).expect("a cell").to_string()
    };
    for (line, st) in lines[1..].iter().zip(&grpc) {
        let b = &st.buckets[0];
        assert_eq!(col(line, "organization"), st.organization);
        assert_eq!(col(line, "bucket"), "support");
        assert_eq!(col(line, "raw_minutes"), b.raw_minutes.to_string());
        assert_eq!(
            col(line, "consumed_from_allowance_minutes"),
            b.consumed_from_allowance.to_string()
        );
        assert_eq!(col(line, "overage_minutes"), b.overage_minutes.to_string());
        assert_eq!(col(line, "available_minutes"), b.available.to_string());
        let money: Vec<String> = b
            .overage_amounts
            .iter()
            .map(|m| m.minor_units.to_string())
            .collect();
        assert_eq!(col(line, "overage_minor_units"), money.join(";"));
    }
    // gamma used 135 of 60 minutes: 75 over at 120.00 EUR an hour.
    let gamma = lines
        .iter()
        .find(|l| l.starts_with("organizations/gamma"))
        .expect("gamma");
    assert_eq!(col(gamma, "overage_minutes"), "75");
    assert_eq!(col(gamma, "overage_currency"), "EUR");
    assert_eq!(col(gamma, "overage_minor_units"), "15000");

    // One organisation's statement as CSV equals GetStatement.
    let one = statement(&mut h, "gamma", "2026-03-15").await;
    let r = send(
        s.addr,
        "GET",
        "/v1/organizations/gamma/statement.csv?date=2026-03-15",
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).expect("UTF-8");
    let row = text.split_terminator("\r\n").nth(1).expect("a row");
    assert_eq!(
        col(row, "closing_minutes"),
        one.buckets[0].closing.to_string()
    );
    assert_eq!(
        col(row, "granted_minutes"),
        one.buckets[0].granted.to_string()
    );
    // Errors of the mirrored RPC, in Connect's shape.
    let r = send(
        s.addr,
        "GET",
        "/v1/organizations/nobody/statement.csv?date=2026-03-15",
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");
    let r = send(s.addr, "GET", "/v1/statements.csv", &[], vec![]).await;
    assert_eq!(r.status, 400);
    s.stop().await;
}

/// Connect-Timeout-Ms bounds a call as grpc-timeout does, and a call past the
/// concurrency limit is shed with 429 and Retry-After.
async fn deadlines_and_shedding_hold_over_http(db: Db) {
    let options = servicelevel::server::ServeOptions {
        max_concurrent_rpcs: 1,
        ..test_options()
    };
    let s = TestServer::start_with(db, utc(2026, 3, 9, 12, 0), options).await;
    let lock = crate::server::WriteLock::take(&s, db).await;
    let create = |id: &str| {
        serde_json::json!({"calendarId": id, "requestId": id,
            "calendar": {"displayName": id, "definition": {"timeZone": "UTC", "alwaysOpen": true}}})
        .to_string()
        .into_bytes()
    };
    let started = std::time::Instant::now();
    let r = send(
        s.addr,
        "POST",
        "/servicelevel.v1.CalendarService/CreateCalendar",
        &[JSON, ("connect-timeout-ms", "300")],
        create("late"),
    )
    .await;
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["code"], "deadline_exceeded");
    assert!(started.elapsed() < Duration::from_secs(5));
    // One call waits on the lock and holds the only slot; the next is shed.
    let addr = s.addr;
    let body = create("held");
    let held = tokio::spawn(async move {
        // A probe below may hold the slot for a moment as this starts: try again.
        loop {
            let r = send(
                addr,
                "POST",
                "/servicelevel.v1.CalendarService/CreateCalendar",
                &[JSON],
                body.clone(),
            )
            .await;
            if r.status != 429 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut shed = None;
    for _ in 0..500 {
        let r = connect_json(
            s.addr,
            "CalendarService/ListCalendars",
            serde_json::json!({}),
        )
        .await;
        if r.status == 429 {
            shed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shed = shed.expect("a call past the limit is shed");
    assert_eq!(shed.json()["code"], "resource_exhausted");
    assert_eq!(shed.header("retry-after"), "1");
    lock.release().await;
    let held = held.await.expect("joined");
    assert_eq!(held.status, 200);
    assert_eq!(held.json()["name"], "calendars/held");
    // A malformed timeout is the caller's mistake.
    let r = send(
        s.addr,
        "POST",
        "/servicelevel.v1.CalendarService/ListCalendars",
        &[JSON, ("connect-timeout-ms", "soon")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.status, 400);
    s.stop().await;
}

/// gRPC-Web (binary) over HTTP/1.1, as a browser's grpc-web client sends it.
async fn grpc_web_calls_work(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    create_calendar(&s, "web", always_open("UTC")).await;
    let r = send(
        s.addr,
        "POST",
        "/servicelevel.v1.CalendarService/GetCalendar",
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
        ],
        envelope(
            &pb::GetCalendarRequest {
                name: "calendars/web".into(),
                version: 0,
            }
            .encode_to_vec(),
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("application/grpc-web"));
    // A data frame, then the trailers frame (flag 0x80) with the status.
    let len = u32::from_be_bytes([r.body[1], r.body[2], r.body[3], r.body[4]]) as usize;
    assert_eq!(r.body[0], 0);
    let cal = pb::Calendar::decode(&r.body[5..5 + len]).expect("a Calendar");
    assert_eq!(cal.name, "calendars/web");
    let trailers = &r.body[5 + len..];
    assert_eq!(trailers[0], 0x80);
    let text = String::from_utf8_lossy(&trailers[5..]).to_lowercase();
    assert!(text.contains("grpc-status:0"), "{text}");
    s.stop().await;
}

/// With tokens required, HTTP callers need the same token and scope as gRPC ones: for
/// Connect calls and the CSV exports alike.
async fn http_callers_need_the_same_tokens_and_scopes(db: Db) {
    let mut s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    s.secure(secured()).await;
    let reader = client(&s, "csv-reader", scopes(&[Scope::LedgerRead]), &[]).await;
    let other = client(&s, "calendar-reader", scopes(&[Scope::PoliciesRead]), &[]).await;
    let bearer = |t: &str| format!("Bearer {t}");
    let r = send(
        s.addr,
        "GET",
        "/v1/statements.csv?date=2026-03-01",
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "unauthenticated");
    let r = send(
        s.addr,
        "GET",
        "/v1/statements.csv?date=2026-03-01",
        &[("authorization", &bearer(&other))],
        vec![],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "permission_denied");
    let r = send(
        s.addr,
        "GET",
        "/v1/statements.csv?date=2026-03-01",
        &[("authorization", &bearer(&reader))],
        vec![],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = send(
        s.addr,
        "POST",
        "/servicelevel.v1.CalendarService/ListCalendars",
        &[JSON, ("authorization", &bearer(&reader))],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = send(
        s.addr,
        "POST",
        "/servicelevel.v1.CalendarService/ListCalendars",
        &[JSON, ("authorization", &bearer(&other))],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.status, 200);
    s.stop().await;
}

crate::on_both_stores!(
    connect_calls_are_grpc_calls,
    streams_and_csv_exports_mirror_the_rpcs,
    deadlines_and_shedding_hold_over_http,
    grpc_web_calls_work,
    http_callers_need_the_same_tokens_and_scopes,
);

/// CORS is off unless origins are configured; then a preflight from an allowed origin is
/// answered and others are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_configured_origins() {
    let s = TestServer::start(Db::Sqlite, utc(2026, 3, 9, 12, 0)).await;
    let preflight = |origin: &'static str| {
        vec![
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type,x-grpc-web"),
        ]
    };
    let r = send(
        s.addr,
        "OPTIONS",
        "/servicelevel.v1.CalendarService/ListCalendars",
        &preflight("https://desk.example.com"),
        vec![],
    )
    .await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    s.stop().await;
    let options = servicelevel::server::ServeOptions {
        cors_allowed_origins: vec!["https://desk.example.com".into()],
        ..test_options()
    };
    let s = TestServer::start_with(Db::Sqlite, utc(2026, 3, 9, 12, 0), options).await;
    let r = send(
        s.addr,
        "OPTIONS",
        "/servicelevel.v1.CalendarService/ListCalendars",
        &preflight("https://desk.example.com"),
        vec![],
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://desk.example.com"
    );
    let r = send(
        s.addr,
        "OPTIONS",
        "/servicelevel.v1.CalendarService/ListCalendars",
        &preflight("https://evil.example.com"),
        vec![],
    )
    .await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    s.stop().await;
}

/// The `sh` blocks of a document, in order.
pub(crate) fn sh_blocks(doc: &str) -> Vec<String> {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(doc))
        .expect("the document");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// docs/http.md's examples, run as written with curl (and buf through npx) against a
/// server holding the README walk-through's organisation, on the real clock's date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_docs_examples_run_as_written() {
    // The test's clock stands still: a little ahead, so that "now" in the examples has
    // happened, as it has on a real clock by the time the request arrives.
    let s = TestServer::start(
        Db::Sqlite,
        chrono::Utc::now() + chrono::TimeDelta::minutes(2),
    )
    .await;
    org(&s, "acme", "America/Toronto", vec![]).await;
    let blocks = sh_blocks("docs/http.md");
    assert_eq!(blocks.len(), 7, "{blocks:#?}");
    let dir = std::env::temp_dir().join(format!("sl-http-docs-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let sl = format!("http://{}", s.addr);
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    // Each block after the settings' own, as a reader runs them in one shell.
    let settings = blocks[0].clone();
    let run = |block: &str| {
        let script = format!("{settings}{block}");
        let out = std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .env("SL", &sl)
            .env("NOW", &now)
            .current_dir(&dir)
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{block}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let expect = [
        "",
        "\"name\":\"plans/retainer\"",
        "\"consumedFromAllowance\":\"30\"",
        "\"code\":\"not_found\"",
        "organizations/acme",
        "\"name\": \"organizations/acme\"",
        "organizations/acme,",
    ];
    let mut outputs = Vec::new();
    for (block, want) in blocks.iter().zip(expect) {
        let out = run(block);
        assert!(out.contains(want), "{block}\nprinted:\n{out}");
        outputs.push(out);
    }
    // The writes again: the same answers (the request ids), nothing recorded twice.
    assert_eq!(run(&blocks[1]), outputs[1]);
    assert!(run(&blocks[2]).contains("\"consumedFromAllowance\":\"30\""));
    // The CSV file the export wrote, a header and acme's row.
    let csv = std::fs::read_to_string(dir.join("statements.csv")).expect("statements.csv");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let _ = std::fs::remove_dir_all(&dir);
    s.stop().await;
}
