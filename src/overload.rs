//! Load shedding: at most so many RPCs run at once; one more is refused at once with
//! RESOURCE_EXHAUSTED instead of waiting in a queue that grows without bound. A client
//! retries with backoff (or another replica takes it), and the calls already running keep
//! their latency.
//!
//! A call holds its slot until its response starts: a server stream (WatchAlerts,
//! ExportStatements) gives its slot back once streaming begins, so long-lived streams do
//! not starve unary calls. Health checks are never shed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::http;
use tower::{Layer, Service};

/// Paths never shed: probes must see an overloaded server as alive.
const EXEMPT: [&str; 1] = ["/grpc.health.v1.Health/"];

/// The shared limit.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl AdmissionLayer {
    /// At most `limit` calls at once (at least 1).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        AdmissionLayer {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.slots.available_permits()
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            slots: Arc::clone(&self.slots),
            limit: self.limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    slots: Arc<Semaphore>,
    limit: usize,
}

/// A trailers-only gRPC answer with RESOURCE_EXHAUSTED.
fn shed<B: Default>(limit: usize) -> http::Response<B> {
    let status = tonic::Status::resource_exhausted(format!(
        "servicelevel is at its limit of {limit} concurrent calls; retry with backoff"
    ));
    let mut response = status.into_http::<B>();
    // Tell clients and proxies it is safe to retry elsewhere.
    response
        .headers_mut()
        .insert("retry-after", http::HeaderValue::from_static("1"));
    response
}

impl<S, B, R> Service<http::Request<B>> for Admission<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let exempt = EXEMPT.iter().any(|p| req.uri().path().starts_with(p));
        let permit: Option<OwnedSemaphorePermit> = if exempt {
            None
        } else {
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let limit = self.limit;
                    tracing::warn!(
                        limit,
                        path = req.uri().path(),
                        "shedding a call: at the concurrency limit"
                    );
                    return Box::pin(async move { Ok(shed(limit)) });
                }
            }
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await;
            drop(permit);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tokio::sync::Notify;
    use tower::ServiceExt as _;

    use super::*;

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder()
            .uri(format!("http://localhost{path}"))
            .body(())
            .expect("request")
    }

    fn code(r: &http::Response<String>) -> Option<&str> {
        r.headers().get("grpc-status").and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn beyond_the_limit_calls_are_refused_at_once_and_admitted_again_after() {
        let release = Arc::new(Notify::new());
        let gate = Arc::clone(&release);
        let inner = tower::service_fn(move |req: http::Request<()>| {
            let gate = Arc::clone(&gate);
            async move {
                if req.uri().path().ends_with("/Slow") {
                    gate.notified().await;
                }
                Ok::<_, Infallible>(http::Response::new(String::from("ok")))
            }
        });
        let layer = AdmissionLayer::new(1);
        let svc = layer.layer(inner);

        let slow = tokio::spawn(
            svc.clone()
                .oneshot(request("/servicelevel.v1.TicketService/Slow")),
        );
        // Wait until the slow call holds the only slot.
        while layer.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = svc
            .clone()
            .oneshot(request("/servicelevel.v1.TicketService/GetTicket"))
            .await
            .expect("answered");
        // RESOURCE_EXHAUSTED is gRPC code 8.
        assert_eq!(code(&refused), Some("8"));
        assert!(refused.headers().contains_key("retry-after"));
        // Health is never shed.
        let health = svc
            .clone()
            .oneshot(request("/grpc.health.v1.Health/Check"))
            .await
            .expect("answered");
        assert_eq!(code(&health), None);
        assert_eq!(health.body(), "ok");

        release.notify_one();
        let done = slow.await.expect("joined").expect("answered");
        assert_eq!(done.body(), "ok");
        assert_eq!(layer.in_flight(), 0);
        let admitted = svc
            .oneshot(request("/servicelevel.v1.TicketService/GetTicket"))
            .await
            .expect("answered");
        assert_eq!(code(&admitted), None);
    }
}
