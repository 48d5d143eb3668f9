//! `servicelevel`: wires configuration, store, clock and server together.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use servicelevel::api::{App, packs};
use servicelevel::config::{Cli, Command, DatabaseArgs, LogFormat, PackCommand, ServeArgs};
use servicelevel::server::ServeOptions;
use servicelevel::store::SqlStore;
use servicelevel::time::SystemClock;
use tracing_subscriber::EnvFilter;

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn connect(db: &DatabaseArgs) -> Result<SqlStore, String> {
    SqlStore::connect(&db.database_url, db.max_connections)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))
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

async fn serve(args: ServeArgs) -> Result<(), String> {
    let store = connect(&args.database).await?;
    if !args.no_migrate {
        store
            .migrate()
            .await
            .map_err(|e| format!("migrations failed: {e}"))?;
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
    tracing::info!(listen = %args.listen, backend = ?store.backend(), "servicelevel serving");
    let options = ServeOptions {
        drain_timeout: std::time::Duration::from_secs(args.drain_timeout),
        ..ServeOptions::default()
    };
    servicelevel::server::serve(
        store.clone(),
        Arc::new(SystemClock),
        listener,
        shutdown_signal(),
        options,
    )
    .await
    .map_err(|e| format!("server failed: {e}"))?;
    store.close().await;
    Ok(())
}

async fn migrate(db: DatabaseArgs) -> Result<(), String> {
    let store = connect(&db).await?;
    store
        .migrate()
        .await
        .map_err(|e| format!("migrations failed: {e}"))?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn pack(command: PackCommand) -> Result<(), String> {
    match command {
        PackCommand::List => {
            for (name, text) in servicelevel::domain::pack::EMBEDDED {
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
            store
                .migrate()
                .await
                .map_err(|e| format!("migrations failed: {e}"))?;
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Migrate(db)) => {
            init_logs(LogFormat::Human);
            migrate(db).await
        }
        Some(Command::Pack(command)) => {
            init_logs(LogFormat::Human);
            pack(command).await
        }
        Some(Command::Serve(args)) => {
            init_logs(args.log_format);
            serve(args).await
        }
        None => {
            init_logs(cli.serve.log_format);
            serve(cli.serve).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("servicelevel: {e}");
            ExitCode::FAILURE
        }
    }
}
