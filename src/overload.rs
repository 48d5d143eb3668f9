//! Deadlines and load shedding.
//!
//! Deadlines: a call runs for at most the caller's `grpc-timeout` or the server's limit,
//! whichever is shorter, and is then dropped with its database work and answered
//! DEADLINE_EXCEEDED (tonic's own timeout answers CANCELLED, which clients read as "the
//! caller gave up" and retry policies treat differently).
//!
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
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::http;
use tower::{Layer, Service};

use crate::api::error::ErrorReason;
use crate::telemetry::LogThrottle;

/// Paths never shed: probes must see an overloaded server as alive.
const EXEMPT: [&str; 1] = ["/grpc.health.v1.Health/"];

/// The shared limit.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    slots: Arc<Semaphore>,
    limit: usize,
    warnings: Arc<LogThrottle>,
}

impl AdmissionLayer {
    /// At most `limit` calls at once (at least 1).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        AdmissionLayer {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            warnings: Arc::new(LogThrottle::default()),
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
            warnings: Arc::clone(&self.warnings),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    slots: Arc<Semaphore>,
    limit: usize,
    warnings: Arc<LogThrottle>,
}

/// A trailers-only gRPC answer with RESOURCE_EXHAUSTED.
fn shed<B: Default>(limit: usize) -> http::Response<B> {
    let status = crate::api::error::status(
        ErrorReason::ConcurrencyLimit,
        format!("servicelevel is at its limit of {limit} concurrent calls; retry with backoff"),
        &[("limit", limit.to_string())],
    );
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
                    // One line per interval at most; the RPC metrics count each refusal.
                    if let Some(shed) = self.warnings.hit() {
                        tracing::warn!(
                            limit,
                            shed,
                            path = req.uri().path(),
                            "shedding calls at the concurrency limit: {shed} since the last such warning"
                        );
                    }
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

/// The longest any call may run; a caller's shorter `grpc-timeout` wins.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    limit: Duration,
}

impl DeadlineLayer {
    pub fn new(limit: Duration) -> Self {
        DeadlineLayer { limit }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

/// A `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
/// `None` for a malformed one, which the call then runs without (the server limit holds).
fn grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

impl<S, B, R> Service<http::Request<B>> for Deadline<S>
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
        let caller = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(grpc_timeout);
        let budget = caller.map_or(self.limit, |c| c.min(self.limit));
        let fut = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout(budget, fut).await {
                Ok(response) => response,
                // The call's future (and its transaction, which rolls back) is dropped.
                Err(_) => Ok(crate::api::error::status(
                    ErrorReason::DeadlineExceeded,
                    format!("the call did not finish within its deadline of {budget:?}"),
                    &[("deadline_ms", budget.as_millis().to_string())],
                )
                .into_http::<R>()),
            }
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

    /// Lines written to a buffer, for counting log lines.
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(b);
            Ok(b.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_burst_of_shed_calls_logs_one_line_with_the_count() {
        let out = Lines::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let release = Arc::new(Notify::new());
        let gate = Arc::clone(&release);
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            let gate = Arc::clone(&gate);
            async move {
                gate.notified().await;
                Ok::<_, Infallible>(http::Response::new(String::new()))
            }
        });
        let layer = AdmissionLayer::new(1);
        let svc = layer.layer(inner);
        let held = tokio::spawn(
            svc.clone()
                .oneshot(request("/servicelevel.v1.TicketService/Slow")),
        );
        while layer.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..200 {
            let refused = svc
                .clone()
                .oneshot(request("/servicelevel.v1.TicketService/GetTicket"))
                .await
                .expect("answered");
            assert_eq!(code(&refused), Some("8"));
        }
        let text = String::from_utf8(out.0.lock().expect("not poisoned").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("shedding")).collect();
        assert_eq!(lines.len(), 1, "one warning for the burst: {text}");
        assert!(
            lines[0].contains("WARN") && lines[0].contains("shed=1"),
            "{}",
            lines[0]
        );
        release.notify_one();
        held.await.expect("joined").expect("answered");
    }

    #[test]
    fn the_throttle_reports_what_it_held_back() {
        let t = LogThrottle::new(Duration::from_millis(50));
        assert_eq!(t.hit(), Some(1));
        for _ in 0..9 {
            assert_eq!(t.hit(), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.hit(), Some(10), "the nine held back and this one");
        assert_eq!(t.hit(), None);
    }

    #[test]
    fn grpc_timeout_values_are_read_in_their_units() {
        assert_eq!(grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(grpc_timeout("5n"), Some(Duration::from_nanos(5)));
        for bad in ["", "S", "100", "123456789S", "1s", "-1S", "1.5S", "1\u{e9}"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_dropped_and_answered_deadline_exceeded() {
        struct Signal(Arc<Notify>);
        impl Drop for Signal {
            fn drop(&mut self) {
                self.0.notify_one();
            }
        }
        let dropped = Arc::new(Notify::new());
        let seen = Arc::clone(&dropped);
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            let signal = Signal(Arc::clone(&seen));
            async move {
                let _signal = signal;
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(http::Response::new(String::new()))
            }
        });
        let svc = DeadlineLayer::new(Duration::from_secs(3600)).layer(inner);
        let mut req = request("/servicelevel.v1.TicketService/GetTicket");
        req.headers_mut()
            .insert("grpc-timeout", http::HeaderValue::from_static("20m"));
        let answer = svc.oneshot(req).await.expect("answered");
        // DEADLINE_EXCEEDED is gRPC code 4.
        assert_eq!(code(&answer), Some("4"));
        // The call's work was dropped with it.
        dropped.notified().await;
    }
}
