//! The span and the metrics of every gRPC call: a tower layer around the services.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::telemetry::RpcConventions;

/// A span per RPC, named `package.Service/Method` and carrying OpenTelemetry's RPC
/// attributes (by [`RpcConventions`]), the ids handlers record, and its status code, as
/// a child of the caller's span when the call carries `traceparent`; and the RPC metrics.
#[derive(Debug, Clone)]
pub struct RpcSpanLayer {
    metrics: Arc<crate::metrics::Metrics>,
    conventions: RpcConventions,
}

impl RpcSpanLayer {
    /// Records the RPC metrics into `metrics`; the spans follow `conventions`.
    pub fn new(metrics: Arc<crate::metrics::Metrics>, conventions: RpcConventions) -> Self {
        RpcSpanLayer {
            metrics,
            conventions,
        }
    }
}

impl<S> Layer<S> for RpcSpanLayer {
    type Service = RpcSpan<S>;

    fn layer(&self, inner: S) -> RpcSpan<S> {
        RpcSpan {
            inner,
            metrics: Arc::clone(&self.metrics),
            conventions: self.conventions,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RpcSpan<S> {
    inner: S,
    metrics: Arc<crate::metrics::Metrics>,
    conventions: RpcConventions,
}

/// Server-side gRPC codes OpenTelemetry counts as errors (the others are the caller's).
fn is_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Sets the RPC attributes known when the call starts.
#[allow(deprecated)] // rpc.system and rpc.service: the old conventions, the default.
fn start_attributes(span: &tracing::Span, conventions: RpcConventions, path: &str) {
    use opentelemetry_semantic_conventions::attribute as sc;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let full = path.trim_start_matches('/');
    let (service, method) = full.split_once('/').unwrap_or(("", full));
    if conventions.old() {
        span.set_attribute(sc::RPC_SYSTEM, "grpc");
        span.set_attribute(sc::RPC_SERVICE, service.to_string());
    }
    if conventions == RpcConventions::Old {
        span.set_attribute(sc::RPC_METHOD, method.to_string());
    } else {
        span.set_attribute(sc::RPC_SYSTEM_NAME, "grpc");
        // A method this server does not know is `_OTHER`, its name in
        // rpc.method_original: unknown paths must not make unbounded values.
        if crate::auth::scope::access(path) == crate::auth::Access::Unlisted {
            span.set_attribute(sc::RPC_METHOD, "_OTHER");
            span.set_attribute(sc::RPC_METHOD_ORIGINAL, full.to_string());
        } else {
            span.set_attribute(sc::RPC_METHOD, full.to_string());
        }
    }
}

/// Sets the status attributes once the answer is known.
#[allow(deprecated)] // rpc.grpc.status_code: the old conventions, the default.
fn end_attributes(span: &tracing::Span, conventions: RpcConventions, code: i32) {
    use opentelemetry_semantic_conventions::attribute as sc;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let name = crate::metrics::code_name(code);
    if conventions.old() {
        span.set_attribute(sc::RPC_GRPC_STATUS_CODE, i64::from(code));
    }
    if conventions.stable() {
        span.set_attribute(sc::RPC_RESPONSE_STATUS_CODE, name);
        if is_server_error(code) {
            span.set_attribute(sc::ERROR_TYPE, name);
        }
    }
}

impl<S, B, R> Service<http::Request<B>> for RpcSpan<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let started = std::time::Instant::now();
        // `otel.*` steer the export (name, kind, status) and are left out of human log
        // lines; the RPC attributes are set on the exported span only.
        let span = tracing::info_span!(
            "rpc",
            otel.name = method.trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            organization = tracing::field::Empty,
            ticket = tracing::field::Empty,
            calendar = tracing::field::Empty,
            policy = tracing::field::Empty,
        );
        crate::telemetry::continue_trace(&span, req.headers());
        start_attributes(&span, self.conventions, &method);
        let fut = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        let metrics = Arc::clone(&self.metrics);
        let conventions = self.conventions;
        Box::pin(
            async move {
                let result = fut.await;
                let span = tracing::Span::current();
                match &result {
                    Ok(resp) => {
                        // Errors come back trailers-only, with the code in the headers;
                        // a successful answer carries it in the trailers.
                        let code = resp
                            .headers()
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<i32>().ok())
                            .unwrap_or(0);
                        end_attributes(&span, conventions, code);
                        if is_server_error(code) {
                            span.record("otel.status_code", "error");
                        }
                        let elapsed = started.elapsed();
                        metrics.rpc(&method, code, elapsed);
                        tracing::debug!(
                            code,
                            elapsed_ms = elapsed.as_secs_f64() * 1e3,
                            "rpc finished"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "rpc failed in transport"),
                }
                result
            }
            .instrument(span),
        )
    }
}
