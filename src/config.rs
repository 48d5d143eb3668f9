//! Command line and environment: every flag has a `SERVICELEVEL_*` variable.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The embedded default: a SQLite file in the working directory, created at start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://servicelevel.db?mode=rwc";

#[derive(Debug, Parser)]
#[command(
    name = "servicelevel",
    version,
    about = "SLA clocks and prepaid-hours ledgers for support contracts, over gRPC"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (the default).
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(DatabaseArgs),
    /// Policy packs: list the built-in ones, import one into the database.
    #[command(subcommand)]
    Pack(PackCommand),
}

#[derive(Debug, Subcommand)]
pub enum PackCommand {
    /// List the packs built into this binary.
    List,
    /// Import a pack (a built-in name or a TOML file) into the database, applying
    /// migrations first. Importing the same pack twice changes nothing.
    Import {
        /// A built-in pack name (`clevr`) or the path of a pack file.
        pack: String,
        /// Report what the import would change, without changing anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: postgres://... for Postgres, sqlite://FILE?mode=rwc for embedded SQLite.
    #[arg(long, env = "SERVICELEVEL_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Most database connections in the pool.
    #[arg(long, env = "SERVICELEVEL_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SERVICELEVEL_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Do not apply migrations at start (run `servicelevel migrate` instead).
    #[arg(long, env = "SERVICELEVEL_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Seconds RPCs in flight may take to finish after SIGTERM before the server stops.
    #[arg(long, env = "SERVICELEVEL_DRAIN_TIMEOUT", default_value_t = 25)]
    pub drain_timeout: u64,
    /// Policy packs to import at start (built-in names or pack files); repeatable.
    #[arg(long = "pack", env = "SERVICELEVEL_PACKS", value_delimiter = ',')]
    pub packs: Vec<String>,
    /// Log format.
    #[arg(
        long,
        env = "SERVICELEVEL_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    pub log_format: LogFormat,
}
