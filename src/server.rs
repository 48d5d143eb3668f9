//! Runs the gRPC server: wires the services, health, reflection, limits, per-RPC spans and
//! graceful shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::server::NamedService;
use tonic_health::server::HealthReporter;

use crate::api::auth::AuthLayer;
use crate::api::pb::alert_service_server::AlertServiceServer;
use crate::api::pb::calendar_service_server::CalendarServiceServer;
use crate::api::pb::connection_service_server::ConnectionServiceServer;
use crate::api::pb::deadline_service_server::DeadlineServiceServer;
use crate::api::pb::hours_service_server::HoursServiceServer;
use crate::api::pb::organization_service_server::OrganizationServiceServer;
use crate::api::pb::pack_service_server::PackServiceServer;
use crate::api::pb::policy_service_server::PolicyServiceServer;
use crate::api::pb::ticket_service_server::TicketServiceServer;
use crate::api::pb::webhook_service_server::WebhookServiceServer;
use crate::api::span::RpcSpanLayer;
use crate::api::{Api, App, pb};
use crate::app::recompute;
use crate::auth::Security;
use crate::store::NotReady;
use crate::store::Store;
use crate::telemetry::RpcConventions;
use crate::time::Clock;

/// Largest request accepted (a batch of 500 tickets with their events fits well).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// The health service name that reports only that the process is alive.
pub const LIVENESS: &str = "liveness";
/// How often readiness looks at the database (each look takes at most a second): an
/// outage shows within about two seconds.
const HEALTH_PROBE: Duration = Duration::from_millis(500);

/// The names health reports on: the empty name (the whole server) and each service.
fn service_names() -> [&'static str; 10] {
    [
        <WebhookServiceServer<Api<crate::store::SqlStore>> as NamedService>::NAME,
        <ConnectionServiceServer<Api<crate::store::SqlStore>> as NamedService>::NAME,
        <PackServiceServer<Api<crate::store::SqlStore>> as NamedService>::NAME,
        <AlertServiceServer<Api<crate::store::SqlStore>> as NamedService>::NAME,
        <HoursServiceServer<Api<crate::store::SqlStore>> as NamedService>::NAME,
        <CalendarServiceServer<Api<crate::store::SqlStore>> as NamedService>::NAME,
        <OrganizationServiceServer<Api<crate::store::SqlStore>> as NamedService>::NAME,
        <PolicyServiceServer<Api<crate::store::SqlStore>> as NamedService>::NAME,
        <TicketServiceServer<Api<crate::store::SqlStore>> as NamedService>::NAME,
        <DeadlineServiceServer<Api<crate::store::SqlStore>> as NamedService>::NAME,
    ]
}

async fn set_all(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    for name in service_names() {
        reporter.set_service_status(name, status).await;
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// After a shutdown signal, how long RPCs in flight (and open streams) may take
    /// before the server stops anyway.
    pub drain_timeout: Duration,
    /// The due-time runner's longest sleep: how late it notices a due instant another
    /// replica wrote, or a moved test clock.
    pub runner_poll: Duration,
    /// The metrics registry to record into (the caller serves it, see
    /// [`crate::metrics::spawn_http`]); `None`: a private one.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Most RPCs running at once; beyond it calls are refused with RESOURCE_EXHAUSTED
    /// (see [`crate::overload`]).
    pub max_concurrent_rpcs: usize,
    /// Longest a unary call may run (a client's shorter `grpc-timeout` wins); the call is
    /// then cancelled with its database work.
    pub rpc_timeout: Duration,
    /// How far ahead of the server's clock an event's `occurred_time` or a ticket's
    /// `received_time` may be: a CRM's clock may run a little fast, a wrong one is
    /// refused (INVALID_ARGUMENT) instead of stopping clocks in advance.
    pub max_future_skew: Duration,
    /// The OpenTelemetry RPC conventions the RPC spans follow.
    pub rpc_conventions: RpcConventions,
    /// How the webhook inbox is applied and how long it is kept.
    pub inbox: crate::app::inbox::InboxOptions,
    /// Browser origins allowed across origins (gRPC-Web, Connect); empty: CORS is off.
    pub cors_allowed_origins: Vec<String>,
    /// How alert webhooks are delivered.
    pub webhooks: crate::app::webhooks::WebhookOptions,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            drain_timeout: Duration::from_secs(25),
            runner_poll: Duration::from_secs(1),
            metrics: None,
            max_concurrent_rpcs: 512,
            rpc_timeout: Duration::from_secs(30),
            max_future_skew: Duration::from_secs(300),
            rpc_conventions: RpcConventions::Old,
            inbox: crate::app::inbox::InboxOptions::default(),
            cors_allowed_origins: Vec::new(),
            webhooks: crate::app::webhooks::WebhookOptions::default(),
        }
    }
}

/// Serves on `listener` until `shutdown` resolves, without authentication or TLS: for
/// loopback listeners (tests, the load generator). See [`serve_secured`].
pub async fn serve<S: Store>(
    store: S,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), tonic::transport::Error> {
    serve_secured(store, clock, listener, shutdown, options, Security::off()).await
}

/// Serves on `listener` until `shutdown` resolves: health turns NOT_SERVING first, new
/// connections stop, and RPCs in flight finish, for at most the drain timeout. Calls are
/// authenticated and served over TLS as `security` says.
pub async fn serve_secured<S: Store>(
    store: S,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
    security: Security,
) -> Result<(), tonic::transport::Error> {
    serve_with_replica(store, None, clock, listener, shutdown, options, security).await
}

/// A read replica for [`serve_with_replica`]: its store, the most lag its reads may have,
/// and how often the lag is measured.
#[derive(Debug, Clone)]
pub struct ReadReplica<S> {
    pub store: S,
    pub max_lag: Duration,
    pub interval: Duration,
}

/// [`serve_secured`], with lists, reports, exports and the due queries read from
/// `replica` while its lag, measured every `interval`, is within `max_lag` (else from
/// the primary); the lag is the `servicelevel_db_replica_lag_seconds` gauge.
pub async fn serve_with_replica<S: Store>(
    store: S,
    replica: Option<ReadReplica<S>>,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
    security: Security,
) -> Result<(), tonic::transport::Error> {
    let auth = AuthLayer::new(&security, store.clone());
    let mut app = App::new(store, clock);
    let replica = replica.map(|r| {
        (
            Arc::new(crate::app::replica::ReadRoute::new(r.store, r.max_lag)),
            r.interval.max(Duration::from_millis(10)),
        )
    });
    app.replica = replica.as_ref().map(|(route, _)| Arc::clone(route));
    app.max_future_skew =
        chrono::TimeDelta::from_std(options.max_future_skew).unwrap_or(chrono::TimeDelta::MAX);
    app.webhook_destinations = options.webhooks.destinations;
    if let Some(metrics) = &options.metrics {
        app.metrics = Arc::clone(metrics);
    }
    app.metrics
        .set_source(Arc::new(crate::metrics::StoreSource(app.store.clone())));
    let app = Arc::new(app);
    // The replica's lag, looked at every interval: unknown (reads on the primary) when it
    // does not answer within the interval (at least a second) or is no standby.
    let lag_watch = replica.map(|(route, interval)| {
        let metrics = Arc::clone(&app.metrics);
        metrics.replica_lag(None);
        tokio::spawn(async move {
            let mut was_usable = None;
            loop {
                let look = tokio::time::timeout(
                    interval.max(Duration::from_secs(1)),
                    route.store.replica_lag(),
                )
                .await;
                let lag = match look {
                    Ok(Ok(lag)) => lag,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "the read replica's lag");
                        None
                    }
                    Err(_) => None,
                };
                route.set_lag(lag);
                metrics.replica_lag(lag);
                let usable = route.usable();
                if was_usable != Some(usable) {
                    match lag {
                        _ if usable => {
                            tracing::info!(lag_seconds = ?lag, "reads go to the read replica")
                        }
                        Some(l) => tracing::warn!(
                            lag_seconds = l,
                            max_lag_seconds = route.max_lag.as_secs_f64(),
                            "the read replica lags past the bound: reads go to the primary"
                        ),
                        None => tracing::warn!(
                            "the read replica's lag is unknown: reads go to the primary"
                        ),
                    }
                    was_usable = Some(usable);
                }
                tokio::time::sleep(interval).await;
            }
        })
    });
    let drain_timeout = options.drain_timeout;
    let (recompute, worker) = recompute::spawn(Arc::clone(&app));
    let runner = crate::app::runner::spawn(Arc::clone(&app), options.runner_poll);
    // Tickets the inbox writes store the gRPC Ticket under their request ids, as any
    // ticket write does.
    let inbox = tokio::spawn(crate::app::inbox::run_inbox(
        Arc::clone(&app),
        Arc::new(|v: &crate::app::tickets::TicketView| crate::api::convert::ticket_to_pb(v)),
        options.inbox.clone(),
    ));
    // Alert webhooks: the payload is the alert as WatchAlerts streams it, in JSON.
    let webhooks = {
        let registry = Arc::new(crate::http::Registry::new().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the API's descriptors");
            crate::http::Registry::empty()
        }));
        let render: crate::app::webhooks::PayloadRender =
            Arc::new(move |a| crate::http::alert_payload(&registry, a));
        tokio::spawn(crate::app::webhooks::run_webhooks(
            Arc::clone(&app),
            render,
            Arc::new(crate::http::client::WebhookClient::new(
                options.webhooks.destinations,
            )),
            options.webhooks.clone(),
        ))
    };
    let api = Api::new(Arc::clone(&app), recompute);

    let (reporter, health) = tonic_health::server::health_reporter();
    // "liveness" answers whether the process runs at all, for a liveness probe that must
    // not restart pods because the database is away; "" and the services answer
    // readiness (database reachable, not draining).
    reporter
        .set_service_status(LIVENESS, tonic_health::ServingStatus::Serving)
        .await;
    let (draining_tx, mut draining_rx) = tokio::sync::watch::channel(false);
    // Readiness: the database answers on the probe's own connection and its schema is at
    // this binary's version. Each change is logged once, with its reason.
    let first = app.store.readiness().await;
    if let Err(why) = &first {
        tracing::warn!(reason = %why, "not ready");
    }
    set_all(&reporter, first.is_ok()).await;
    let probe = {
        let reporter = reporter.clone();
        let app = Arc::clone(&app);
        let draining = draining_rx.clone();
        tokio::spawn(async move {
            let mut last = first;
            loop {
                tokio::time::sleep(HEALTH_PROBE).await;
                let now = app.store.readiness().await;
                if *draining.borrow() {
                    return;
                }
                // Unreachable is one state whatever the error text says this time.
                let same = match (&now, &last) {
                    (Err(NotReady::Unreachable(_)), Err(NotReady::Unreachable(_))) => true,
                    (a, b) => a == b,
                };
                if !same {
                    match &now {
                        Ok(()) => tracing::info!("ready: the database answers"),
                        Err(why) => tracing::warn!(reason = %why, "not ready"),
                    }
                    set_all(&reporter, now.is_ok()).await;
                    last = now;
                }
            }
        })
    };

    // Reflection serves the API, health and the google.rpc error details
    // (`google/rpc/error_details.proto`), so generic clients decode BadRequest, ErrorInfo
    // and the rest instead of printing base64.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| tracing::error!(error = %e, "reflection"))
        .ok();
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| tracing::error!(error = %e, "reflection"))
        .ok();

    // With TLS, connections are accepted (and their handshakes made) by our own task, so
    // that renewed certificates apply without a restart; a drain stops it first.
    enum Incoming {
        Tls(crate::auth::tls::TlsIncoming),
        Plain(TcpListener),
    }
    let incoming = match &security.tls {
        Some(tls) => Incoming::Tls(crate::auth::tls::incoming(
            listener,
            tls,
            Arc::clone(&app.metrics),
        )),
        None => Incoming::Plain(listener),
    };
    let stop_accepting = match &incoming {
        Incoming::Tls(t) => Some(t.stopper()),
        Incoming::Plain(_) => None,
    };
    let drain = {
        let reporter = reporter.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: NOT_SERVING, finishing RPCs in flight");
            set_all(&reporter, false).await;
            if let Some(stop) = stop_accepting {
                stop();
            }
            let _ = draining_tx.send(true);
        }
    };
    // Open streams (a health watch, say) never finish on their own: after the drain
    // timeout the server stops regardless, as an orchestrator would kill it anyway.
    let deadline = async move {
        let _ = draining_rx.wait_for(|d| *d).await;
        tokio::time::sleep(drain_timeout).await;
    };

    let http = {
        let app = Arc::clone(&app);
        let receive: crate::http::Receive = Arc::new(move |arrival| {
            let app = Arc::clone(&app);
            Box::pin(async move { app.receive(arrival).await })
        });
        crate::http::HttpLayer::new(crate::http::HttpOptions {
            registry: crate::http::Registry::new().unwrap_or_else(|e| {
                tracing::error!(error = %e, "the API's descriptors: Connect is off");
                crate::http::Registry::empty()
            }),
            receive,
            max_request_bytes: MAX_REQUEST_BYTES,
            tls: security.tls.is_some(),
            webhook_timeout: options.rpc_timeout,
        })
    };
    let router = tonic::transport::Server::builder()
        // HTTP/1.1 beside HTTP/2: Connect, gRPC-Web, CSV exports and webhooks.
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(crate::http::cors(&options.cors_allowed_origins))
        .layer(http)
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(RpcSpanLayer::new(
            Arc::clone(&app.metrics),
            options.rpc_conventions,
        ))
        // Health and reflection decode with tonic's codec: what they cannot decode is the
        // caller's mistake too (our services' codec says so itself).
        .layer(crate::api::codec::DecodeErrorLayer)
        // Per call: the client's grpc-timeout, at most the server's limit. A call past it
        // is dropped, and with it its transaction (rolled back). Inside the span layer, so
        // the span and metrics see DEADLINE_EXCEEDED.
        .layer(crate::overload::DeadlineLayer::new(options.rpc_timeout))
        // Shed before authenticating: an overloaded server spends nothing on a refusal.
        .layer(crate::overload::AdmissionLayer::new(
            options.max_concurrent_rpcs,
        ))
        // Inside the span layer, so refused calls are recorded with their code.
        .layer(auth)
        .add_service(health)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(
            CalendarServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            OrganizationServiceServer::new(api.clone())
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            PolicyServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            TicketServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            HoursServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            AlertServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            PackServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            ConnectionServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            WebhookServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(DeadlineServiceServer::new(api).max_decoding_message_size(MAX_REQUEST_BYTES));
    type Serving = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;
    let serving: Serving = match incoming {
        Incoming::Tls(tls) => Box::pin(router.serve_with_incoming_shutdown(tls, drain)),
        Incoming::Plain(listener) => {
            // Tonic sets TCP_NODELAY only on sockets it accepts itself. Without it a
            // response written as several HTTP/2 frames waits for the client's delayed
            // ACK: ~40 ms a call.
            let incoming = TcpListenerStream::new(listener).map(|conn| {
                conn.inspect(|stream| {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::warn!(error = %e, "cannot set TCP_NODELAY");
                    }
                })
            });
            Box::pin(router.serve_with_incoming_shutdown(incoming, drain))
        }
    };
    let result = tokio::select! {
        r = serving => r,
        () = deadline => {
            tracing::warn!(timeout = ?drain_timeout, "drain timeout: stopping with RPCs still open");
            Ok(())
        }
    };
    probe.abort();
    if let Some(task) = lag_watch {
        task.abort();
    }
    worker.abort();
    runner.abort();
    inbox.abort();
    webhooks.abort();
    result
}
