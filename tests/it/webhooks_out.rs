//! Alert webhooks out, end to end on both stores, with a real HTTP receiver in the test
//! (hyper's HTTP/1.1 server) that checks every signature (Standard Webhooks, with the hmac
//! crate, independently of the server), fails the first attempts, and records the order:
//! at-least-once delivery in order per ticket, stable webhook ids across retries, a secret
//! rotation signing with both, a dead letter replayed, a subscription disabled for failing
//! and re-enabled, refused destinations, and two servers on one database never attempting
//! the same delivery at once.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit as _, Mac as _};
use http_body_util::BodyExt as _;
use servicelevel::api::pb;
use servicelevel::api::pb::webhook_service_client::WebhookServiceClient;
use sha2::Sha256;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::fixtures::*;
use crate::harness::*;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    accepted: bool,
    /// A signature presented checks against one of the receiver's keys (Standard
    /// Webhooks: any one of them is enough).
    signed: bool,
    signatures: usize,
    body: serde_json::Value,
}

#[derive(Default)]
struct Behaviour {
    /// Answer 500 to this many requests, then accept.
    fail_next: usize,
    always_fail: bool,
    /// Hold each request this long before answering.
    delay: Duration,
    keys: Vec<Vec<u8>>,
    got: Vec<Got>,
    in_flight: HashSet<String>,
    /// Every request's webhook id as it arrived (before its answer).
    seen: Vec<String>,
    /// Requests that arrived for an id already being answered.
    overlaps: usize,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<Behaviour>>,
}

fn key_of(secret: &str) -> Vec<u8> {
    BASE64
        .decode(secret.trim_start_matches("whsec_"))
        .expect("a whsec_ secret")
}

fn secret(n: u8) -> String {
    format!("whsec_{}", BASE64.encode([n; 32]))
}

impl Receiver {
    async fn start(secrets: &[&str]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("bound");
        let state = Arc::new(Mutex::new(Behaviour {
            keys: secrets.iter().map(|s| key_of(s)).collect(),
            ..Default::default()
        }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/servicelevel", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Behaviour) -> T) -> T {
        f(&mut self.state.lock().expect("receiver state"))
    }

    fn accepted(&self) -> Vec<Got> {
        self.with(|b| b.got.iter().filter(|g| g.accepted).cloned().collect())
    }
}

async fn handle(
    state: Arc<Mutex<Behaviour>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<prost::bytes::Bytes>> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, ts, sig) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    let (delay, overlapped) = {
        let mut b = state.lock().expect("receiver state");
        b.seen.push(id.clone());
        let overlapped = !b.in_flight.insert(id.clone());
        if overlapped {
            b.overlaps += 1;
        }
        (b.delay, overlapped)
    };
    tokio::time::sleep(delay).await;
    let mut b = state.lock().expect("receiver state");
    if !overlapped {
        b.in_flight.remove(&id);
    }
    let presented: Vec<&str> = sig.split(' ').filter(|s| !s.is_empty()).collect();
    let signed = !presented.is_empty()
        && presented.iter().any(|p| {
            let Some(b64) = p.strip_prefix("v1,") else {
                return false;
            };
            b.keys.iter().any(|k| {
                let mut mac = Hmac::<Sha256>::new_from_slice(k).expect("a key");
                mac.update(format!("{id}.{ts}.").as_bytes());
                mac.update(&body);
                BASE64.encode(mac.finalize().into_bytes()) == b64
            })
        });
    let fail = b.always_fail || b.fail_next > 0;
    if b.fail_next > 0 {
        b.fail_next -= 1;
    }
    let accepted = signed && !fail;
    b.got.push(Got {
        id,
        accepted,
        signed,
        signatures: presented.len(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    let status = if accepted {
        204
    } else if signed {
        500
    } else {
        401
    };
    let mut r = hyper::Response::new(http_body_util::Full::new(prost::bytes::Bytes::new()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("a status");
    r
}

fn options() -> servicelevel::server::ServeOptions {
    servicelevel::server::ServeOptions {
        webhooks: servicelevel::app::webhooks::WebhookOptions {
            destinations: servicelevel::domain::webhook::DestinationPolicy {
                allow_http: true,
                allow_private: true,
            },
            retry_for: TimeDelta::minutes(30),
            lease: TimeDelta::seconds(2),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(4),
            poll: Duration::from_millis(50),
            ..Default::default()
        },
        ..test_options()
    }
}

fn now() -> DateTime<Utc> {
    utc(2026, 3, 9, 12, 0)
}

/// Organisation acme on a policy whose two promises breach 30 and 60 minutes after a
/// ticket is received: two alerts per ticket, in that order.
async fn desk(s: &TestServer) {
    create_policy(
        s,
        "two-breaches",
        pb::PolicyDefinition {
            clocks: vec![
                promise(
                    "first_response",
                    vec![on_received()],
                    vec![],
                    vec![target(&[], &[], &[], wall(30))],
                ),
                promise(
                    "resolution",
                    vec![on_received()],
                    vec![],
                    vec![target(&[], &[], &[], wall(60))],
                ),
            ],
            ..Default::default()
        },
    )
    .await;
    create_org(
        s,
        "acme",
        organization("UTC", "", "two-breaches", vec![], vec![]),
    )
    .await;
}

async fn webhooks(s: &TestServer) -> WebhookServiceClient<Channel> {
    WebhookServiceClient::new(connect(s.addr).await)
}

async fn subscribe(
    s: &TestServer,
    id: &str,
    url: &str,
    secrets: &[String],
) -> pb::WebhookSubscription {
    webhooks(s)
        .await
        .create_webhook_subscription(Request::new(pb::CreateWebhookSubscriptionRequest {
            webhook_subscription_id: id.into(),
            webhook_subscription: Some(pb::WebhookSubscription {
                display_name: "Pager".into(),
                organization: "organizations/acme".into(),
                alert_kinds: vec![pb::AlertKind::Breach as i32],
                url: url.into(),
                ..Default::default()
            }),
            secrets: secrets.to_vec(),
            request_id: rid("sub"),
        }))
        .await
        .expect("subscribed")
        .into_inner()
}

/// Moves the clock a second at a time (retries fall due) until `done` or 30 s.
async fn until(s: &TestServer, r: &Receiver, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        s.advance(TimeDelta::seconds(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = r.with(|b| b.got.clone());
    assert!(done(), "not reached within 30 s; the receiver got {got:#?}");
}

async fn deliveries(s: &TestServer, sub: &str) -> Vec<pb::WebhookDelivery> {
    webhooks(s)
        .await
        .list_webhook_deliveries(Request::new(pb::ListWebhookDeliveriesRequest {
            parent: format!("webhookSubscriptions/{sub}"),
            page_size: 1000,
            ..Default::default()
        }))
        .await
        .expect("deliveries")
        .into_inner()
        .deliveries
}

/// Each accepted delivery's (ticket, metric), in arrival order.
fn arrivals(got: &[Got]) -> Vec<(String, String)> {
    got.iter()
        .map(|g| {
            (
                g.body["data"]["ticket"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                g.body["data"]["metric"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

async fn alerts_are_delivered_signed_in_order_and_retried(db: Db) {
    let s = TestServer::start_with(db, now(), options()).await;
    desk(&s).await;
    let s1 = secret(1);
    let receiver = Receiver::start(&[&s1]).await;
    receiver.with(|b| b.fail_next = 3);
    subscribe(&s, "pager", &receiver.url(), std::slice::from_ref(&s1)).await;
    let mut tickets = Vec::new();
    for i in 0..3 {
        let t = create_ticket(&s, ticket("acme", &format!("T-{i}"), "incident", "", now())).await;
        tickets.push(t.name);
    }
    // Both promises of every ticket breach.
    s.set_now(now() + TimeDelta::minutes(61));
    until(&s, &receiver, || receiver.accepted().len() >= 6).await;
    let got = receiver.with(|b| b.got.clone());
    assert!(
        got.iter().all(|g| g.signed),
        "every request signed: {got:#?}"
    );
    assert_eq!(
        got.iter().filter(|g| !g.accepted).count(),
        3,
        "three refused first"
    );
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 6, "{accepted:#?}");
    // Each alert once (a retry is the same webhook id), and the refused ones retried.
    let ids: HashSet<&str> = accepted.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), 6);
    for refused in got.iter().filter(|g| !g.accepted) {
        assert!(ids.contains(refused.id.as_str()), "{} retried", refused.id);
    }
    // In order per ticket: the first response's breach before the resolution's.
    for t in &tickets {
        let metrics: Vec<String> = arrivals(&accepted)
            .into_iter()
            .filter(|(ticket, _)| ticket == t)
            .map(|(_, m)| m)
            .collect();
        assert_eq!(metrics, ["first_response", "resolution"], "{t}");
    }
    // The documented body: the alert as WatchAlerts streams it.
    let body = &accepted[0].body;
    assert_eq!(body["type"], "servicelevel.alert.breach");
    assert_eq!(body["data"]["kind"], "ALERT_KIND_BREACH");
    assert_eq!(body["data"]["organization"], "organizations/acme");
    // The API shows them delivered, with their attempts.
    let listed = deliveries(&s, "pager").await;
    assert_eq!(listed.len(), 6);
    assert!(
        listed
            .iter()
            .all(|d| d.state == pb::WebhookDeliveryState::Delivered as i32)
    );
    let attempts: i32 = listed.iter().map(|d| d.attempts).sum();
    assert_eq!(
        attempts, 9,
        "six deliveries, three of them retried once: {listed:#?}"
    );

    // A rotation: with two secrets each delivery carries both signatures; a receiver
    // that knows either one accepts.
    let s2 = secret(2);
    let mut w = webhooks(&s).await;
    w.add_webhook_subscription_secret(Request::new(pb::AddWebhookSubscriptionSecretRequest {
        name: "webhookSubscriptions/pager".into(),
        secret: s2.clone(),
        request_id: rid("rotate"),
    }))
    .await
    .expect("secret added");
    receiver.with(|b| b.keys = vec![key_of(&s2)]);
    let later = now() + TimeDelta::minutes(61);
    create_ticket(&s, ticket("acme", "T-rotated", "incident", "", later)).await;
    s.set_now(later + TimeDelta::minutes(31));
    until(&s, &receiver, || receiver.accepted().len() >= 7).await;
    let last = receiver.accepted().pop().expect("the rotated delivery");
    assert_eq!(last.signatures, 2);
    assert!(last.signed);
    s.stop().await;
}

/// Failing for the whole retry period: dead-lettered, the subscription disabled with its
/// reason; re-enabled and replayed, it is delivered.
async fn dead_letters_disable_and_replay(db: Db) {
    let s = TestServer::start_with(db, now(), options()).await;
    desk(&s).await;
    let s1 = secret(1);
    let receiver = Receiver::start(&[&s1]).await;
    receiver.with(|b| b.always_fail = true);
    subscribe(&s, "flaky", &receiver.url(), std::slice::from_ref(&s1)).await;
    create_ticket(&s, ticket("acme", "T-dead", "incident", "", now())).await;
    s.set_now(now() + TimeDelta::minutes(31));
    until(&s, &receiver, || !receiver.with(|b| b.got.is_empty())).await;
    // Past the 30-minute retry period.
    let mut listed = Vec::new();
    for _ in 0..200 {
        s.advance(TimeDelta::minutes(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed = deliveries(&s, "flaky").await;
        if listed
            .iter()
            .any(|d| d.state == pb::WebhookDeliveryState::Dead as i32)
        {
            break;
        }
    }
    let dead = listed
        .iter()
        .find(|d| d.state == pb::WebhookDeliveryState::Dead as i32)
        .unwrap_or_else(|| panic!("a dead letter: {listed:#?}"))
        .clone();
    assert!(dead.attempts >= 2, "{dead:?}");
    assert!(dead.last_error.contains("500"), "{dead:?}");
    let mut w = webhooks(&s).await;
    let sub = w
        .get_webhook_subscription(Request::new(pb::GetWebhookSubscriptionRequest {
            name: "webhookSubscriptions/flaky".into(),
        }))
        .await
        .expect("the subscription")
        .into_inner();
    assert!(!sub.enabled);
    assert!(
        sub.disabled_reason.contains("no delivery succeeded"),
        "{sub:?}"
    );
    // The receiver is fixed; the subscription re-enabled, the dead letter replayed.
    receiver.with(|b| b.always_fail = false);
    let enabled = w
        .update_webhook_subscription(Request::new(pb::UpdateWebhookSubscriptionRequest {
            webhook_subscription: Some(pb::WebhookSubscription {
                name: "webhookSubscriptions/flaky".into(),
                enabled: true,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            request_id: rid("enable"),
            ..Default::default()
        }))
        .await
        .expect("re-enabled")
        .into_inner();
    assert!(enabled.enabled && enabled.disabled_reason.is_empty());
    let replayed = w
        .replay_webhook_delivery(Request::new(pb::ReplayWebhookDeliveryRequest {
            name: dead.name.clone(),
            request_id: rid("replay"),
        }))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(replayed.state, pb::WebhookDeliveryState::Pending as i32);
    // (The ticket's later alert, pending behind the dead one, may go first: the dead
    // letter no longer held it back.)
    let id = dead.webhook_id.clone();
    until(&s, &receiver, || {
        receiver.accepted().iter().any(|g| g.id == id)
    })
    .await;
    // The receiver has it before the worker records the 2xx: give the worker a moment.
    let mut state = 0;
    for _ in 0..250 {
        state = w
            .get_webhook_delivery(Request::new(pb::GetWebhookDeliveryRequest {
                name: dead.name.clone(),
            }))
            .await
            .expect("the delivery")
            .into_inner()
            .state;
        if state == pb::WebhookDeliveryState::Delivered as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(state, pb::WebhookDeliveryState::Delivered as i32);
    s.stop().await;
}

/// Two servers on one database (two replicas): one holds the subscription's lease, so no
/// delivery is attempted by both at once, and each alert arrives once.
async fn two_servers_deliver_each_alert_once(db: Db) {
    let s = TestServer::start_with(db, now(), options()).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let clock: Arc<dyn servicelevel::time::Clock> = s.clock.clone();
    let store = s.store.clone();
    let second = tokio::spawn(async move {
        let _ = servicelevel::server::serve_secured(
            store,
            clock,
            listener,
            async {
                let _ = stopped.await;
            },
            options(),
            servicelevel::auth::Security::off(),
        )
        .await;
    });
    desk(&s).await;
    let s1 = secret(1);
    let receiver = Receiver::start(&[&s1]).await;
    receiver.with(|b| b.delay = Duration::from_millis(30));
    subscribe(&s, "shared", &receiver.url(), std::slice::from_ref(&s1)).await;
    for i in 0..10 {
        create_ticket(&s, ticket("acme", &format!("R-{i}"), "incident", "", now())).await;
    }
    s.set_now(now() + TimeDelta::minutes(61));
    until(&s, &receiver, || receiver.accepted().len() >= 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (got, overlaps) = receiver.with(|b| (b.got.clone(), b.overlaps));
    assert_eq!(overlaps, 0, "a delivery attempted by two servers at once");
    let ids: HashSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(got.len(), 20, "each alert once");
    assert_eq!(ids.len(), 20);
    let _ = stop.send(());
    let _ = second.await;
    s.stop().await;
}

/// Destinations a server refuses: plain http and private addresses by default.
async fn destinations_are_checked(db: Db) {
    let s = TestServer::start(db, now()).await;
    desk(&s).await;
    let mut w = webhooks(&s).await;
    for url in [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://localhost:8443/x",
        "https://169.254.169.254/latest",
        "https://[::1]/x",
        "ftp://hooks.example.com/",
    ] {
        let st = expect_code(
            w.create_webhook_subscription(Request::new(pb::CreateWebhookSubscriptionRequest {
                webhook_subscription_id: "refused".into(),
                webhook_subscription: Some(pb::WebhookSubscription {
                    display_name: "Refused".into(),
                    organization: "organizations/acme".into(),
                    alert_kinds: vec![pb::AlertKind::Breach as i32],
                    url: url.into(),
                    ..Default::default()
                }),
                secrets: vec![secret(1)],
                request_id: rid("sub"),
            }))
            .await,
            Code::InvalidArgument,
        );
        assert!(
            violations(&st)
                .iter()
                .any(|v| v.contains("webhook_subscription.url")),
            "{url}: {st:?}"
        );
    }
    // Nor are secrets ever shown, only their fingerprints.
    let made = subscribe(&s, "ok", "https://hooks.example.com/x", &[secret(1)]).await;
    assert_eq!(made.secrets.len(), 1);
    assert!(made.secrets[0].fingerprint.starts_with("sha256:"));
    s.stop().await;
}

crate::on_both_stores!(
    alerts_are_delivered_signed_in_order_and_retried,
    dead_letters_disable_and_replay,
    two_servers_deliver_each_alert_once,
    destinations_are_checked,
);

/// A `servicelevel serve` process on the test's database, delivering to loopback.
struct Process(std::process::Child);

impl Process {
    fn start(url: &str, port: u16) -> Process {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_servicelevel"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--no-migrate",
                "--webhook-allow-http",
                "--webhook-allow-private",
                "--webhook-lease",
                "2s",
            ])
            .env("SERVICELEVEL_DATABASE_URL", url)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("servicelevel starts");
        Process(child)
    }

    fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A server killed with SIGKILL while an alert's delivery is in flight: another takes the
/// subscription over when the lease runs out and delivers it (again: the receiver sees
/// the same webhook id twice, and deduplicates by it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_still_delivers() {
    // The test server provides the schema and the catalogue; the processes run on the
    // real clock.
    let mut s = TestServer::start_with(Db::Postgres, Utc::now(), options()).await;
    desk(&s).await;
    // The test server delivers nothing: it stops (its database stays) before the alert.
    let s1 = secret(1);
    let receiver = Receiver::start(&[&s1]).await;
    // Each answer takes two seconds: the kill lands while the first is in flight.
    receiver.with(|b| b.delay = Duration::from_secs(2));
    subscribe(&s, "survivor", &receiver.url(), std::slice::from_ref(&s1)).await;
    let url = s.url.clone();
    s.pause().await;
    let port = crate::replicas::free_port();
    let mut first = Process::start(&url, port);
    let ch = connect(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    // First response due two seconds from now.
    let received = Utc::now() - TimeDelta::minutes(30) + TimeDelta::seconds(2);
    pb::ticket_service_client::TicketServiceClient::new(ch)
        .create_ticket(Request::new(pb::CreateTicketRequest {
            ticket: Some(ticket("acme", "K-1", "incident", "", received)),
            request_id: rid("kill"),
        }))
        .await
        .expect("ticket created");
    for _ in 0..200 {
        if receiver.with(|b| !b.in_flight.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        receiver.with(|b| !b.in_flight.is_empty()),
        "a delivery in flight"
    );
    first.kill_9();
    let _second = Process::start(&url, crate::replicas::free_port());
    for _ in 0..600 {
        if !receiver.accepted().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (seen, accepted) = receiver.with(|b| (b.seen.clone(), b.got.clone()));
    assert!(seen.len() >= 2, "delivered again after the kill: {seen:?}");
    assert_eq!(seen[0], seen[1], "the same webhook id on the retry");
    let delivered: Vec<&Got> = accepted.iter().filter(|g| g.accepted).collect();
    assert!(!delivered.is_empty(), "{accepted:#?}");
    assert_eq!(delivered[0].id, seen[0]);
    assert!(delivered[0].signed);
    drop(first);
    s.stop().await;
}

/// The command line manages subscriptions on the database directly, the secret on
/// standard input, and refuses a private destination unless allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_manages_subscriptions() {
    let fresh = fresh_database(Db::Sqlite).await;
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_servicelevel"))
            .arg("webhook")
            .args(args)
            .env("SERVICELEVEL_DATABASE_URL", &fresh.url)
            .env_remove("SERVICELEVEL_WEBHOOK_ALLOW_HTTP")
            .env_remove("SERVICELEVEL_WEBHOOK_ALLOW_PRIVATE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("servicelevel runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("secret written");
        let out = child.wait_with_output().expect("it ends");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let s1 = secret(1);
    let (ok, _, err) = run(
        &[
            "create",
            "pager",
            "--url",
            "http://127.0.0.1:9/x",
            "--kind",
            "breach",
        ],
        &s1,
    );
    assert!(!ok && err.contains("https"), "{err}");
    let (ok, out, err) = run(
        &[
            "create",
            "pager",
            "--url",
            "https://hooks.example.com/x",
            "--kind",
            "breach,escalation",
        ],
        &format!("{s1}\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("webhookSubscriptions/pager"), "{out}");
    assert!(out.contains("kinds: breach, escalation"), "{out}");
    assert!(out.contains("secret sha256:"), "{out}");
    assert!(!out.contains(&s1), "the secret is never printed");
    let (ok, out, _) = run(&["list"], "");
    assert!(ok && out.contains("https://hooks.example.com/x"), "{out}");
    let (ok, out, err) = run(&["delete", "pager"], "");
    assert!(ok && out.contains("(deleted)"), "{out}{err}");
    fresh.remove().await;
}
