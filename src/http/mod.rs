//! HTTP on the gRPC port (docs/http.md): Connect (JSON and binary, unary and server
//! streams), gRPC-Web (tonic-web, beside this layer), statements as CSV, and the helpdesk
//! webhooks' receiving end.
//!
//! Connect calls and CSV exports are translated into gRPC calls made in process, through
//! the very stack a gRPC call takes: the same authentication and scopes, admission limit,
//! deadlines, span, metrics, idempotency and use cases, by construction rather than by a
//! second copy of each. Webhooks are the exception: the signature is their
//! authentication, so they go to the application directly.
//!
//! This module only routes, translates and maps errors, in one place ([`failure_response`]).

pub mod client;
mod connect;
mod csv;
mod json;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use prost::Message as _;
use prost::bytes::Bytes;
use prost_reflect::{MessageDescriptor, MethodDescriptor};
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::api::pb;
use crate::app::inbox::{Arrival, Received};
use crate::app::{AppError, AppResult};
use crate::domain::names::ResourceId;
use connect::{Codec, Failure};
pub use json::Registry;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The largest webhook body read; larger deliveries get 413 (no helpdesk sends more).
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

/// Hands a webhook to the application (`App::receive`), without this layer knowing the
/// store's type.
pub type Receive = Arc<dyn Fn(Arrival) -> BoxFuture<AppResult<Received>> + Send + Sync>;

/// What the layer shares between calls.
pub struct HttpOptions {
    pub registry: Registry,
    pub receive: Receive,
    /// The largest Connect request body, as gRPC's message limit.
    pub max_request_bytes: usize,
    /// Whether connections are TLS: the scheme of the URL a webhook was sent to.
    pub tls: bool,
    /// Longest a webhook may take to be kept (the RPC timeout): past it the sender gets
    /// 503 and retries, instead of holding a connection while the database is stuck.
    pub webhook_timeout: std::time::Duration,
}

#[derive(Clone)]
pub struct HttpLayer {
    shared: Arc<HttpOptions>,
}

impl HttpLayer {
    pub fn new(options: HttpOptions) -> HttpLayer {
        HttpLayer {
            shared: Arc::new(options),
        }
    }
}

impl<S> Layer<S> for HttpLayer {
    type Service = Http<S>;
    fn layer(&self, inner: S) -> Http<S> {
        Http {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

#[derive(Clone)]
pub struct Http<S> {
    inner: S,
    shared: Arc<HttpOptions>,
}

/// Where a request goes.
enum Route {
    /// gRPC and gRPC-Web, and whatever this layer does not know: the stack below.
    Grpc,
    Unary(MethodDescriptor, Codec),
    Stream(MethodDescriptor, Codec),
    Webhook(String),
    StatementCsv(String),
    ExportCsv,
    /// Answered here: the HTTP status and the error.
    Refused(StatusCode, Failure),
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn route(req: &Request<Body>, registry: &Registry) -> Route {
    let media = media_type(req.headers());
    if media.starts_with("application/grpc") {
        return Route::Grpc;
    }
    let path = req.uri().path();
    let method = req.method();
    if let Some(connection) = path.strip_prefix("/webhooks/v1/") {
        return match *method {
            Method::POST => Route::Webhook(connection.to_string()),
            _ => Route::Refused(
                StatusCode::METHOD_NOT_ALLOWED,
                Failure::new(Code::Unimplemented, "webhooks are delivered with POST"),
            ),
        };
    }
    if *method == Method::GET {
        if path == "/v1/statements.csv" {
            return Route::ExportCsv;
        }
        if let Some(org) = path
            .strip_prefix("/v1/organizations/")
            .and_then(|rest| rest.strip_suffix("/statement.csv"))
            .filter(|org| !org.is_empty() && !org.contains('/'))
        {
            return Route::StatementCsv(org.to_string());
        }
    }
    let Some(rpc) = registry.method(path) else {
        return Route::Grpc;
    };
    if *method != Method::POST {
        return Route::Refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Failure::new(
                Code::Unimplemented,
                "Connect calls are POST requests (GET is not supported)",
            ),
        );
    }
    let streaming = rpc.is_server_streaming() || rpc.is_client_streaming();
    match (media.as_str(), streaming) {
        ("application/json", false) => Route::Unary(rpc, Codec::Json),
        ("application/proto", false) => Route::Unary(rpc, Codec::Proto),
        ("application/connect+json", true) => Route::Stream(rpc, Codec::Json),
        ("application/connect+proto", true) => Route::Stream(rpc, Codec::Proto),
        _ => Route::Refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Failure::new(
                Code::Unimplemented,
                if streaming {
                    "unsupported content type: a stream takes application/connect+json or application/connect+proto"
                } else {
                    "unsupported content type: use application/json or application/proto"
                },
            ),
        ),
    }
}

impl<S, B> Service<Request<Body>> for Http<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        match route(&req, &shared.registry) {
            Route::Grpc => {
                let mut inner = inner;
                let call = inner.call(req);
                Box::pin(async move { call.await.map(|r| r.map(Body::new)) })
            }
            Route::Unary(rpc, codec) => {
                Box::pin(async move { Ok(unary(inner, &shared, rpc, codec, req).await) })
            }
            Route::Stream(rpc, codec) => {
                Box::pin(async move { Ok(stream(inner, shared, rpc, codec, req).await) })
            }
            Route::Webhook(connection) => {
                Box::pin(async move { Ok(webhook(&shared, connection, req).await) })
            }
            Route::StatementCsv(org) => {
                Box::pin(async move { Ok(statement_csv(inner, &shared, org, req).await) })
            }
            Route::ExportCsv => Box::pin(async move { Ok(export_csv(inner, shared, req).await) }),
            Route::Refused(status, f) => {
                let mut r = failure_response(&f, &shared.registry);
                *r.status_mut() = status;
                Box::pin(async move { Ok(r) })
            }
        }
    }
}

/// An alert as the JSON body of its webhook (docs/alerts.md): a Standard Webhooks
/// envelope (`type`, `timestamp`, `data`) around the alert as `WatchAlerts` streams it,
/// in the proto3 JSON mapping: one documented, versioned schema for both.
pub fn alert_payload(registry: &Registry, alert: &crate::app::alerts::Alert) -> AppResult<String> {
    let desc = registry
        .message("servicelevel.v1.Alert")
        .ok_or_else(|| AppError::Internal("the Alert descriptor is missing".into()))?;
    let data = Registry::to_json(&desc, &crate::api::alerts::to_pb(alert).encode_to_vec())
        .map_err(AppError::Internal)?;
    let data: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| AppError::Internal(e.to_string()))?;
    let body = serde_json::json!({
        "type": format!("servicelevel.alert.{}", alert.row.kind),
        "timestamp": alert.row.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": data,
    });
    Ok(body.to_string())
}

/// CORS for browser callers (gRPC-Web and Connect): only for the configured origins, and
/// no layer at all when there are none (preflights then fall through and fail).
pub fn cors(
    origins: &[String],
) -> tower::util::Either<tower_http::cors::CorsLayer, tower::layer::util::Identity> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if allowed.is_empty() {
        return tower::util::Either::Right(tower::layer::util::Identity::new());
    }
    let header = HeaderName::from_static;
    tower::util::Either::Left(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::POST, Method::GET])
            .allow_headers([
                header("authorization"),
                header("content-type"),
                header("connect-protocol-version"),
                header("connect-timeout-ms"),
                header("grpc-timeout"),
                header("x-grpc-web"),
                header("x-user-agent"),
                header("x-request-id"),
            ])
            .expose_headers([
                header("grpc-status"),
                header("grpc-message"),
                header("grpc-status-details-bin"),
                header("retry-after"),
            ])
            .max_age(std::time::Duration::from_secs(7200)),
    )
}

/// Every error this transport answers: Connect's JSON error body with the code's HTTP
/// status (the CSV and webhook routes answer the same shape).
fn failure_response(f: &Failure, registry: &Registry) -> Response<Body> {
    let body = serde_json::to_vec(&f.to_json(registry)).unwrap_or_default();
    let mut r = Response::new(Body::new(Full::new(Bytes::from(body))));
    *r.status_mut() = connect::http_status(f.code);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Shed calls and an unavailable database say when to come back, as gRPC's RetryInfo.
    if matches!(f.code, Code::ResourceExhausted | Code::Unavailable) {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    r
}

fn app_failure(e: AppError) -> Failure {
    Failure::from_status(&tonic::Status::from(e))
}

/// Reads a request body, at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Failure> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Failure::new(
            Code::ResourceExhausted,
            format!("the request body is larger than {limit} bytes"),
        )),
        Err(e) => Err(Failure::new(
            Code::InvalidArgument,
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// Headers a translated call must not carry over: the HTTP/1 and Connect framing ones.
fn hop_header(name: &str) -> bool {
    matches!(
        name,
        "content-type"
            | "content-length"
            | "content-encoding"
            | "accept-encoding"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "te"
            | "upgrade"
    ) || name.starts_with("connect-")
}

fn rpc_path(rpc: &MethodDescriptor) -> String {
    format!("/{}/{}", rpc.parent_service().full_name(), rpc.name())
}

/// The gRPC call a Connect or CSV request becomes: the same path, the caller's headers
/// (its token, its request metadata) and extensions (its TLS identity), one frame.
fn grpc_request(
    mut parts: http::request::Parts,
    path: &str,
    body: Body,
) -> Result<Request<Body>, Failure> {
    let timeout = match parts.headers.get("connect-timeout-ms") {
        Some(v) => Some(connect::grpc_timeout(v.to_str().unwrap_or(""))?),
        None => None,
    };
    let names: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|n| hop_header(n.as_str()))
        .cloned()
        .collect();
    for n in names {
        parts.headers.remove(n);
    }
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    parts
        .headers
        .insert("te", HeaderValue::from_static("trailers"));
    if let Some(t) = timeout
        && let Ok(v) = HeaderValue::from_str(&t)
    {
        parts.headers.insert("grpc-timeout", v);
    }
    parts.method = Method::POST;
    parts.version = http::Version::HTTP_2;
    parts.uri = path
        .parse()
        .map_err(|_| Failure::new(Code::InvalidArgument, "bad path"))?;
    Ok(Request::from_parts(parts, body))
}

/// A request of one message, framed for gRPC.
fn one_frame(message: &[u8]) -> Body {
    Body::new(Full::new(Bytes::from(connect::envelope(0, message))))
}

/// A client stream's envelopes, each converted to a gRPC frame as it arrives. A message
/// that cannot be read ends the request body with an error, which ends the call.
fn request_stream(body: Body, input: MessageDescriptor, codec: Codec, limit: usize) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(16);
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let next = body
                .frame()
                .await
                .map(|r| r.map_err(|e| -> BoxError { e.into() }));
            let data = match next {
                None if buf.is_empty() => return,
                None => {
                    let _ = tx
                        .send(Err("the request stream ends mid-message".into()))
                        .await;
                    return;
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
            };
            buf.extend_from_slice(&data);
            if let Some(len) = buf.get(1..5)
                && u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize > limit
            {
                let _ = tx
                    .send(Err(format!("a message is larger than {limit} bytes").into()))
                    .await;
                return;
            }
            while let Some((flags, m, used)) = connect::take_envelope(&buf) {
                let converted = if flags & connect::COMPRESSED != 0 {
                    Err("compressed messages are not supported".to_string())
                } else {
                    match codec {
                        Codec::Json => Registry::from_json(&input, m),
                        Codec::Proto => Ok(m.to_vec()),
                    }
                };
                buf.drain(..used);
                let sent = match converted {
                    Ok(m) => tx.send(Ok(Bytes::from(connect::envelope(0, &m)))).await,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    });
    Body::new(StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx).map(|r| r.map(http_body::Frame::data)),
    ))
}

/// Content encodings are refused before anything is read (the body would be gibberish).
fn compressed(headers: &HeaderMap) -> Option<Failure> {
    let encoding = headers
        .get("content-encoding")
        .or_else(|| headers.get("connect-content-encoding"))?;
    (encoding != "identity").then(|| {
        Failure::new(
            Code::Unimplemented,
            "compressed requests are not supported (send identity)",
        )
    })
}

/// A finished unary gRPC call: headers, the one message, trailers and the outcome.
struct Finished {
    headers: HeaderMap,
    message: Option<Bytes>,
    trailers: HeaderMap,
    outcome: Result<(), Failure>,
}

async fn call_unary<S, B>(mut inner: S, req: Request<Body>) -> Finished
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let failed = |f: Failure| Finished {
        headers: HeaderMap::new(),
        message: None,
        trailers: HeaderMap::new(),
        outcome: Err(f),
    };
    let resp = match inner.call(req).await {
        Ok(r) => r,
        Err(e) => return failed(Failure::new(Code::Internal, e.into().to_string())),
    };
    let (parts, body) = resp.into_parts();
    if let Some(outcome) = Failure::from_grpc(&parts.headers) {
        return Finished {
            headers: parts.headers,
            message: None,
            trailers: HeaderMap::new(),
            outcome,
        };
    }
    let collected = match body.collect().await {
        Ok(c) => c,
        Err(e) => {
            return failed(Failure::new(
                Code::Unavailable,
                format!("the call broke off: {}", e.into()),
            ));
        }
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let bytes = collected.to_bytes();
    let message = connect::take_envelope(&bytes).map(|(_, m, _)| Bytes::copy_from_slice(m));
    let outcome = Failure::from_grpc(&trailers).unwrap_or_else(|| {
        Err(Failure::new(
            Code::Internal,
            "the call ended without a status",
        ))
    });
    Finished {
        headers: parts.headers,
        message,
        trailers,
        outcome,
    }
}

fn copy_metadata(from: &HeaderMap, prefix: &str, to: &mut HeaderMap) {
    for (name, value) in from {
        if connect::is_application_metadata(name.as_str())
            && let Ok(n) = HeaderName::from_bytes(format!("{prefix}{name}").as_bytes())
        {
            to.append(n, value.clone());
        }
    }
}

async fn unary<S, B>(
    inner: S,
    shared: &HttpOptions,
    rpc: MethodDescriptor,
    codec: Codec,
    req: Request<Body>,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let registry = &shared.registry;
    let fail = |f: Failure| failure_response(&f, registry);
    if let Some(f) = compressed(req.headers()) {
        return fail(f);
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(body, shared.max_request_bytes).await {
        Ok(b) => b,
        Err(f) => return fail(f),
    };
    let message = match codec {
        Codec::Json => match Registry::from_json(&rpc.input(), &body) {
            Ok(m) => m,
            Err(e) => return fail(Failure::new(Code::InvalidArgument, e)),
        },
        Codec::Proto => body.to_vec(),
    };
    let grpc = match grpc_request(parts, &rpc_path(&rpc), one_frame(&message)) {
        Ok(r) => r,
        Err(f) => return fail(f),
    };
    let done = call_unary(inner, grpc).await;
    let mut resp = match (done.outcome, done.message) {
        (Err(f), _) => fail(f),
        (Ok(()), None) => fail(Failure::new(Code::Internal, "the call answered no message")),
        (Ok(()), Some(m)) => {
            let (body, media) = match codec {
                Codec::Json => match Registry::to_json(&rpc.output(), &m) {
                    Ok(j) => (Bytes::from(j), "application/json"),
                    Err(e) => return fail(Failure::new(Code::Internal, e)),
                },
                Codec::Proto => (m, "application/proto"),
            };
            let mut r = Response::new(Body::new(Full::new(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(media));
            r
        }
    };
    copy_metadata(&done.headers, "", resp.headers_mut());
    copy_metadata(&done.trailers, "trailer-", resp.headers_mut());
    resp
}

/// Pumps a gRPC response's frames to a channel as they come, ending with the outcome.
/// Dropping the receiver (the client went away) drops the call.
enum Piece {
    Message(Bytes),
    End(Result<(), Failure>, HeaderMap),
}

fn pump<B>(
    body: B,
    headers_outcome: Option<Result<(), Failure>>,
) -> tokio::sync::mpsc::Receiver<Piece>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        if let Some(outcome) = headers_outcome {
            let _ = tx.send(Piece::End(outcome, HeaderMap::new())).await;
            return;
        }
        let mut body = std::pin::pin!(body);
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let next = body
                .frame()
                .await
                .map(|r| r.map_err(|e| -> BoxError { e.into() }));
            match next {
                None => {
                    let f = Failure::new(Code::Internal, "the stream ended without a status");
                    let _ = tx.send(Piece::End(Err(f), HeaderMap::new())).await;
                    return;
                }
                Some(Err(e)) => {
                    let f = Failure::new(Code::Unavailable, format!("the stream broke off: {e}"));
                    let _ = tx.send(Piece::End(Err(f), HeaderMap::new())).await;
                    return;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        buf.extend_from_slice(&data);
                        while let Some((_, m, used)) = connect::take_envelope(&buf) {
                            let m = Bytes::copy_from_slice(m);
                            buf.drain(..used);
                            if tx.send(Piece::Message(m)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(frame) => {
                        let trailers = frame.into_trailers().unwrap_or_default();
                        let outcome = Failure::from_grpc(&trailers).unwrap_or(Ok(()));
                        let _ = tx.send(Piece::End(outcome, trailers)).await;
                        return;
                    }
                },
            }
        }
    });
    rx
}

/// Calls a server-streaming method: its response, or the failure to answer at once.
async fn call_stream<S, B>(
    mut inner: S,
    req: Request<Body>,
) -> Result<(HeaderMap, tokio::sync::mpsc::Receiver<Piece>), Failure>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let resp = inner
        .call(req)
        .await
        .map_err(|e| Failure::new(Code::Internal, e.into().to_string()))?;
    let (parts, body) = resp.into_parts();
    let early = Failure::from_grpc(&parts.headers);
    Ok((parts.headers, pump(body, early)))
}

fn streamed(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    let frames = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|b| Ok::<_, BoxError>(http_body::Frame::data(b)));
    Body::new(StreamBody::new(frames))
}

async fn stream<S, B>(
    inner: S,
    shared: Arc<HttpOptions>,
    rpc: MethodDescriptor,
    codec: Codec,
    req: Request<Body>,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // A stream's errors travel in its end message, with HTTP 200.
    let media = match codec {
        Codec::Json => "application/connect+json",
        Codec::Proto => "application/connect+proto",
    };
    let only_end = |f: Failure, registry: &Registry| {
        let end = connect::end_stream(&Err(f), &HeaderMap::new(), registry);
        let mut r = Response::new(Body::new(Full::new(Bytes::from(connect::envelope(
            connect::END_STREAM,
            &end,
        )))));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(media));
        r
    };
    if let Some(f) = compressed(req.headers()) {
        return only_end(f, &shared.registry);
    }
    let (parts, body) = req.into_parts();
    let grpc_body = if rpc.is_client_streaming() {
        request_stream(body, rpc.input(), codec, shared.max_request_bytes)
    } else {
        // A server stream's request is one message: read and checked before the call, so
        // that a bad one is answered as such.
        match one_message(body, &rpc, codec, shared.max_request_bytes).await {
            Ok(m) => one_frame(&m),
            Err(f) => return only_end(f, &shared.registry),
        }
    };
    let grpc = match grpc_request(parts, &rpc_path(&rpc), grpc_body) {
        Ok(r) => r,
        Err(f) => return only_end(f, &shared.registry),
    };
    let (headers, mut pieces) = match call_stream(inner, grpc).await {
        Ok(x) => x,
        Err(f) => return only_end(f, &shared.registry),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let output = rpc.output();
    tokio::spawn(async move {
        while let Some(piece) = pieces.recv().await {
            let bytes = match piece {
                Piece::Message(m) => {
                    let m = match codec {
                        Codec::Json => match Registry::to_json(&output, &m) {
                            Ok(j) => j,
                            Err(e) => {
                                let end = connect::end_stream(
                                    &Err(Failure::new(Code::Internal, e)),
                                    &HeaderMap::new(),
                                    &shared.registry,
                                );
                                let _ = tx
                                    .send(Bytes::from(connect::envelope(connect::END_STREAM, &end)))
                                    .await;
                                return;
                            }
                        },
                        Codec::Proto => m.to_vec(),
                    };
                    connect::envelope(0, &m)
                }
                Piece::End(outcome, trailers) => {
                    let end = connect::end_stream(&outcome, &trailers, &shared.registry);
                    let _ = tx
                        .send(Bytes::from(connect::envelope(connect::END_STREAM, &end)))
                        .await;
                    return;
                }
            };
            if tx.send(Bytes::from(bytes)).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(streamed(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media));
    copy_metadata(&headers, "", r.headers_mut());
    r
}

/// The one enveloped message of a server stream's request, as protobuf binary.
async fn one_message(
    body: Body,
    rpc: &MethodDescriptor,
    codec: Codec,
    limit: usize,
) -> Result<Vec<u8>, Failure> {
    let body = read_body(body, limit).await?;
    let message = match connect::take_envelope(&body) {
        Some((flags, _, _)) if flags & connect::COMPRESSED != 0 => {
            return Err(Failure::new(
                Code::Unimplemented,
                "compressed messages are not supported",
            ));
        }
        Some((_, m, used)) if used == body.len() => m,
        _ => {
            return Err(Failure::new(
                Code::InvalidArgument,
                "a server stream's request is exactly one enveloped message",
            ));
        }
    };
    match codec {
        Codec::Json => Registry::from_json(&rpc.input(), message)
            .map_err(|e| Failure::new(Code::InvalidArgument, e)),
        Codec::Proto => Ok(message.to_vec()),
    }
}

/// The `date` query parameter of a CSV export.
fn date_param(req: &Request<Body>) -> Result<String, Failure> {
    let date = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("date="))
        .unwrap_or("");
    if date.is_empty() {
        return Err(Failure::new(
            Code::InvalidArgument,
            "date: the query parameter date=YYYY-MM-DD is required",
        ));
    }
    Ok(date.to_string())
}

fn csv_response(body: Body, filename: &str) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        r.headers_mut().insert("content-disposition", v);
    }
    r
}

/// `GET /v1/organizations/{organization}/statement.csv?date=…`: GetStatement as CSV.
async fn statement_csv<S, B>(
    inner: S,
    shared: &HttpOptions,
    org: String,
    req: Request<Body>,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let fail = |f: Failure| failure_response(&f, &shared.registry);
    let date = match date_param(&req) {
        Ok(d) => d,
        Err(f) => return fail(f),
    };
    let request = pb::GetStatementRequest {
        organization: format!("organizations/{org}"),
        date: date.clone(),
        include_entries: false,
    };
    let (parts, _) = req.into_parts();
    let grpc = match grpc_request(
        parts,
        "/servicelevel.v1.HoursService/GetStatement",
        one_frame(&request.encode_to_vec()),
    ) {
        Ok(r) => r,
        Err(f) => return fail(f),
    };
    let done = call_unary(inner, grpc).await;
    match (done.outcome, done.message) {
        (Err(f), _) => fail(f),
        (Ok(()), None) => fail(Failure::new(Code::Internal, "no statement")),
        (Ok(()), Some(m)) => match pb::Statement::decode(m) {
            Ok(s) => {
                let text = csv::header() + &csv::rows(&s);
                csv_response(
                    Body::new(Full::new(Bytes::from(text))),
                    &format!("statement-{org}-{date}.csv"),
                )
            }
            Err(e) => fail(Failure::new(Code::Internal, e.to_string())),
        },
    }
}

/// `GET /v1/statements.csv?date=…`: ExportStatements as CSV, streamed as the statements
/// come. A failure before the first statement answers its error; one after it breaks the
/// response off (the body then ends without its final chunk, which HTTP clients report),
/// since a CSV has no place for an error.
async fn export_csv<S, B>(inner: S, shared: Arc<HttpOptions>, req: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let fail = |f: Failure| failure_response(&f, &shared.registry);
    let date = match date_param(&req) {
        Ok(d) => d,
        Err(f) => return fail(f),
    };
    let request = pb::ExportStatementsRequest {
        date: date.clone(),
        include_entries: false,
    };
    let (parts, _) = req.into_parts();
    let grpc = match grpc_request(
        parts,
        "/servicelevel.v1.HoursService/ExportStatements",
        one_frame(&request.encode_to_vec()),
    ) {
        Ok(r) => r,
        Err(f) => return fail(f),
    };
    let (_, mut pieces) = match call_stream(inner, grpc).await {
        Ok(x) => x,
        Err(f) => return fail(f),
    };
    // Wait for the first piece, so that an immediate failure gets its status.
    let first = match pieces.recv().await {
        Some(Piece::End(Err(f), _)) => return fail(f),
        other => other,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(16);
    tokio::spawn(async move {
        if tx.send(Ok(Bytes::from(csv::header()))).await.is_err() {
            return;
        }
        let mut next = first;
        while let Some(piece) = next {
            let chunk = match piece {
                Piece::Message(m) => match pb::Statement::decode(m) {
                    Ok(s) => Ok(Bytes::from(csv::rows(&s))),
                    Err(e) => Err(BoxError::from(e.to_string())),
                },
                Piece::End(Ok(()), _) => return,
                Piece::End(Err(f), _) => Err(BoxError::from(format!(
                    "the export broke off: {}: {}",
                    connect::code_name(f.code),
                    f.message
                ))),
            };
            let stop = chunk.is_err();
            if tx.send(chunk).await.is_err() || stop {
                return;
            }
            next = pieces.recv().await;
        }
    });
    let frames =
        tokio_stream::wrappers::ReceiverStream::new(rx).map(|r| r.map(http_body::Frame::data));
    csv_response(
        Body::new(StreamBody::new(frames)),
        &format!("statements-{date}.csv"),
    )
}

/// `POST /webhooks/v1/{connection}`: a helpdesk's delivery, kept in the inbox once its
/// signature checks (docs/integrations.md). 200 only after the commit.
async fn webhook(shared: &HttpOptions, connection: String, req: Request<Body>) -> Response<Body> {
    let fail = |f: Failure| failure_response(&f, &shared.registry);
    let Ok(connection) = ResourceId::parse(&connection) else {
        return fail(Failure::new(Code::NotFound, "no such connection"));
    };
    let (parts, body) = req.into_parts();
    let body = match read_body(body, MAX_WEBHOOK_BYTES).await {
        Ok(b) => b,
        Err(f) if f.code == Code::ResourceExhausted => {
            let mut r = fail(f);
            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return r;
        }
        Err(f) => return fail(f),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    // The URL as the sender addressed it; a proxy's rewriting is what a connection's
    // public base URL is for.
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let scheme = parts
        .uri
        .scheme_str()
        .map(str::to_string)
        .unwrap_or_else(|| if shared.tls { "https" } else { "http" }.to_string());
    let headers = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let arrival = Arrival {
        connection,
        method: parts.method.as_str().to_string(),
        url: format!("{scheme}://{host}{path_and_query}"),
        path_and_query,
        headers,
        body: body.to_vec(),
    };
    let received =
        match tokio::time::timeout(shared.webhook_timeout, (shared.receive)(arrival)).await {
            Ok(r) => r,
            Err(_) => Err(AppError::Unavailable(
                "the delivery could not be kept in time; retry".into(),
            )),
        };
    match received {
        Ok(Received { kept, duplicates }) => {
            // Written out so the fields keep the documented order.
            let body = format!(r#"{{"kept":{kept},"duplicates":{duplicates}}}"#);
            let mut r = Response::new(Body::new(Full::new(Bytes::from(body))));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => fail(app_failure(e)),
    }
}
