//! `servicelevel`: wires configuration, store, clock and server together.

// glibc's malloc was a fifth of the server's CPU under load (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use servicelevel::app::{App, packs};
use servicelevel::auth::{self, AuthMode, Security, TlsConfig};
use servicelevel::config::{
    Cli, ClientCommand, Command, DatabaseArgs, LogFormat, PackCommand, ServeArgs,
};
use servicelevel::server::ServeOptions;
use servicelevel::store::SqlStore;
use servicelevel::telemetry::{TraceConfig, Tracing};
use servicelevel::time::SystemClock;

fn init_logs(format: LogFormat) {
    servicelevel::telemetry::init(format, None);
}

/// `serve` with its logs, its traces (the `OTEL_*` variables) and, at the end, the last
/// spans flushed.
async fn serve_traced(args: ServeArgs) -> Result<(), String> {
    servicelevel::telemetry::init_propagation_from_env()?;
    let config = TraceConfig::from_env()?;
    let tracing = config.as_ref().map(Tracing::start).transpose()?;
    servicelevel::telemetry::init(args.log_format, tracing.as_ref());
    if let Some(c) = &config {
        tracing::info!(
            endpoint = c.effective_endpoint().unwrap_or_default(),
            protocol = ?c.protocol,
            "exporting traces over OTLP"
        );
    }
    let result = serve(args, tracing.as_ref().map(Tracing::stats)).await;
    if let Some(t) = tracing {
        t.shutdown().await;
    }
    result
}

async fn connect(db: &DatabaseArgs) -> Result<SqlStore, String> {
    SqlStore::connect_with(&db.database_url, db.max_connections, db.db_acquire_timeout)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))
}

/// Applies the migrations on the migration URL when one is set (a direct connection
/// beside a transaction pooler), else on `store`.
async fn apply_migrations(store: &SqlStore, db: &DatabaseArgs) -> Result<(), String> {
    match set(&db.migration_database_url) {
        Some(url) => {
            let direct = SqlStore::connect_with(url, 1, db.db_acquire_timeout)
                .await
                .map_err(|e| format!("cannot open the migration database URL: {e}"))?;
            if direct.backend() != store.backend() {
                direct.close().await;
                return Err(
                    "the migration database URL names another kind of database than \
                            the database URL"
                        .into(),
                );
            }
            let result = direct.migrate().await;
            direct.close().await;
            result
        }
        None => store.migrate().await,
    }
    .map_err(|e| format!("migrations failed: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// An optional setting, with an empty value (an unset Secret key, say) as unset.
fn set<T: AsRef<std::ffi::OsStr>>(v: &Option<T>) -> Option<&T> {
    v.as_ref().filter(|v| !v.as_ref().is_empty())
}

async fn serve(
    args: ServeArgs,
    span_stats: Option<Arc<servicelevel::metrics::SpanStats>>,
) -> Result<(), String> {
    // Refuse an insecure set-up before touching anything.
    let mode = auth::resolve_mode(args.listen, args.auth)?;
    let tls = TlsConfig::from_files(
        set(&args.tls_cert).map(|p| p.as_path()),
        set(&args.tls_key).map(|p| p.as_path()),
        set(&args.tls_client_ca).map(|p| p.as_path()),
    )?;
    let store = connect(&args.database).await?;
    if !args.no_migrate {
        apply_migrations(&store, &args.database).await?;
    }
    if let Some(hash) = set(&args.bootstrap_admin_token_hash) {
        match auth::admin::bootstrap(&store, hash, chrono::Utc::now()).await? {
            auth::admin::Bootstrap::Created { name } => {
                tracing::info!(client = %name, "created the bootstrap admin client");
            }
            auth::admin::Bootstrap::Present { name } => {
                tracing::debug!(client = %name, "the bootstrap admin client exists");
            }
        }
    }
    if !args.packs.is_empty() {
        let app = App::new(store.clone(), Arc::new(SystemClock));
        for source in &args.packs {
            let pack = packs::load(source)?;
            let answer = packs::import_now(&app, &pack, false).await?;
            for line in packs::describe(&answer) {
                tracing::info!(pack = %answer.pack, "{line}");
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(
        listen = %args.listen,
        backend = ?store.backend(),
        auth = ?mode,
        tls = tls.is_some(),
        mutual_tls = tls.as_ref().is_some_and(TlsConfig::mutual),
        "servicelevel serving"
    );
    if mode == AuthMode::Off {
        tracing::warn!("authentication is off: any local process may call, as any client");
    }
    let metrics = servicelevel::metrics::Metrics::with_legacy_names(args.metrics_legacy_names);
    if let Some(stats) = span_stats {
        metrics.set_span_stats(stats);
    }
    let metrics_server = match args.metrics_listen.and_then(|a| a.0) {
        Some(addr) => {
            let (bound, task) =
                servicelevel::metrics::spawn_http(addr, Arc::clone(&metrics)).await?;
            tracing::info!(listen = %bound, "metrics at /metrics");
            Some(task)
        }
        None => None,
    };
    let options = ServeOptions {
        drain_timeout: args.drain_timeout,
        metrics: Some(metrics),
        max_concurrent_rpcs: args.max_concurrent_rpcs,
        rpc_timeout: args.rpc_timeout.max(std::time::Duration::from_millis(1)),
        max_future_skew: args.max_future_skew,
        cors_allowed_origins: args.cors_allowed_origins.clone(),
        webhooks: servicelevel::app::webhooks::WebhookOptions {
            destinations: servicelevel::domain::webhook::DestinationPolicy {
                allow_http: args.webhook_allow_http,
                allow_private: args.webhook_allow_private,
            },
            retry_for: chrono::TimeDelta::from_std(args.webhook_retry_for)
                .unwrap_or(chrono::TimeDelta::hours(24)),
            lease: chrono::TimeDelta::from_std(
                args.webhook_lease.max(std::time::Duration::from_secs(1)),
            )
            .unwrap_or(chrono::TimeDelta::seconds(30)),
            ..Default::default()
        },
        inbox: servicelevel::app::inbox::InboxOptions {
            concurrency: args.inbox_concurrency.max(1),
            retention: chrono::TimeDelta::from_std(args.inbox_retention)
                .unwrap_or(chrono::TimeDelta::days(30)),
            ..Default::default()
        },
        rpc_conventions: servicelevel::telemetry::RpcConventions::from_opt_in(
            std::env::var("OTEL_SEMCONV_STABILITY_OPT_IN")
                .ok()
                .as_deref(),
        ),
        ..ServeOptions::default()
    };
    let security = Security {
        auth: mode,
        reflection: args.reflection,
        tls,
        ..Security::off()
    };
    let replica = match set(&args.read_database_url) {
        Some(url) => Some(servicelevel::server::ReadReplica {
            store: SqlStore::connect_with(
                url,
                args.database.max_connections,
                args.database.db_acquire_timeout,
            )
            .await
            .map_err(|e| format!("cannot open the read database URL: {e}"))?,
            max_lag: args.read_max_lag,
            interval: std::time::Duration::from_secs(1),
        }),
        None => None,
    };
    let read_store = replica.as_ref().map(|r| r.store.clone());
    servicelevel::server::serve_with_replica(
        store.clone(),
        replica,
        Arc::new(SystemClock),
        listener,
        shutdown_signal(),
        options,
        security,
    )
    .await
    .map_err(|e| format!("server failed: {e}"))?;
    if let Some(task) = metrics_server {
        task.abort();
    }
    if let Some(read) = read_store {
        read.close().await;
    }
    store.close().await;
    Ok(())
}

async fn migrate(db: DatabaseArgs) -> Result<(), String> {
    let store = connect(&db).await?;
    apply_migrations(&store, &db).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn pack(command: PackCommand) -> Result<(), String> {
    match command {
        PackCommand::List => {
            let mut packs = servicelevel::domain::pack::EMBEDDED;
            packs.sort_by_key(|(name, _)| *name);
            for (name, text) in packs {
                let title = servicelevel::domain::pack::parse(text)
                    .map(|p| p.title)
                    .unwrap_or_else(|e| format!("(does not parse: {e})"));
                println!("{name}\t{title}");
            }
            Ok(())
        }
        PackCommand::Import {
            pack,
            dry_run,
            database,
        } => {
            let parsed = packs::load(&pack)?;
            let store = connect(&database).await?;
            apply_migrations(&store, &database).await?;
            let app = App::new(store.clone(), Arc::new(SystemClock));
            let answer = packs::import_now(&app, &parsed, dry_run).await?;
            let verb = if dry_run { "would import" } else { "imported" };
            println!("{verb} pack {} ({})", answer.pack, answer.title);
            for line in packs::describe(&answer) {
                println!("  {line}");
            }
            store.close().await;
            Ok(())
        }
    }
}

async fn client(command: ClientCommand) -> Result<(), String> {
    let now = chrono::Utc::now();
    let (store, result) = match command {
        ClientCommand::HashToken => {
            let mut input = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            println!("{}", auth::admin::hash_token_input(&input)?);
            return Ok(());
        }
        ClientCommand::Create {
            name,
            scopes,
            organizations,
            database,
        } => {
            let new = auth::admin::NewClient::parse(&name, &scopes, &organizations)?;
            let store = migrated(&database).await?;
            let result =
                auth::admin::create_client(&store, &new, now)
                    .await
                    .map(|(record, token)| {
                        eprintln!(
                            "created API client {} ({}); its token, shown this once:",
                            record.name, record.id
                        );
                        println!("{token}");
                    });
            (store, result)
        }
        ClientCommand::List { database } => {
            let store = migrated(&database).await?;
            let result = auth::admin::list_clients(&store).await.map(|lines| {
                println!("{}", auth::admin::LIST_HEADER);
                for line in lines {
                    println!("{line}");
                }
            });
            (store, result)
        }
        ClientCommand::Revoke { name, database } => {
            let store = migrated(&database).await?;
            let result = auth::admin::revoke_client(&store, &name, now)
                .await
                .map(|record| println!("{}", auth::admin::describe(&record)));
            (store, result)
        }
    };
    store.close().await;
    result
}

async fn connection(command: servicelevel::config::ConnectionCommand) -> Result<(), String> {
    let store = migrated(servicelevel::cli::database(&command)).await?;
    let app = App::new(store.clone(), Arc::new(SystemClock));
    let result = servicelevel::cli::run(&app, command).await;
    store.close().await;
    result
}

async fn webhook(command: servicelevel::config::WebhookCommand) -> Result<(), String> {
    let store = migrated(servicelevel::cli::webhooks::database(&command)).await?;
    let mut app = App::new(store.clone(), Arc::new(SystemClock));
    let result = servicelevel::cli::webhooks::run(&mut app, command).await;
    store.close().await;
    result
}

async fn migrated(db: &DatabaseArgs) -> Result<SqlStore, String> {
    let store = connect(db).await?;
    apply_migrations(&store, db).await?;
    Ok(store)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Some(Command::Serve(args)) => args.log_format,
        None => cli.serve.log_format,
        _ => LogFormat::Human,
    };
    let result = match cli.command {
        Some(Command::Migrate(db)) => {
            init_logs(LogFormat::Human);
            migrate(db).await
        }
        Some(Command::Pack(command)) => {
            init_logs(LogFormat::Human);
            pack(command).await
        }
        // No log subscriber: standard output carries the token or the list only.
        Some(Command::Client(command)) => client(command).await,
        Some(Command::Connection(command)) => connection(command).await,
        Some(Command::Webhook(command)) => webhook(command).await,
        Some(Command::Serve(args)) => serve_traced(args).await,
        None => serve_traced(cli.serve).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: as a JSON log line where logs are JSON (and already set up), else on
            // standard error for the person at the terminal.
            if log_format == LogFormat::Json && tracing::dispatcher::has_been_set() {
                tracing::error!("{e}");
            } else {
                eprintln!("servicelevel: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
