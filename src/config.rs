//! Command line and environment: every flag has a `SERVICELEVEL_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The embedded default: a SQLite file in the working directory, created at start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://servicelevel.db";

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
    /// API clients: create one (its token is printed once), list, revoke; hash a token.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Connections (webhooks in): create, list, show, change the mapping, rotate secrets,
    /// list and replay deliveries, archive. Secrets are read on standard input.
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// Alert webhook subscriptions (webhooks out): create, list, show, rotate secrets,
    /// list and replay deliveries, enable, delete. Secrets are read on standard input.
    #[command(subcommand)]
    Webhook(WebhookCommand),
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Create a subscription; its `whsec_` secret is read on standard input (one line).
    Create {
        /// The subscription's id (a-z, 0-9, '-').
        id: String,
        /// Where alerts are POSTed (https://).
        #[arg(long)]
        url: String,
        /// Only this organisation's alerts; default: every organisation's.
        #[arg(long = "org")]
        organization: Option<String>,
        /// The alert kinds: warning, breach, escalation, move, retraction; repeatable or
        /// comma-separated.
        #[arg(long = "kind", value_delimiter = ',', required = true)]
        kinds: Vec<String>,
        /// Human-readable name; default: the id.
        #[arg(long)]
        display_name: Option<String>,
        /// Allow a plain http:// URL (as `serve --webhook-allow-http`).
        #[arg(long, env = "SERVICELEVEL_WEBHOOK_ALLOW_HTTP")]
        allow_http: bool,
        /// Allow private and loopback addresses (as `serve --webhook-allow-private`).
        #[arg(long, env = "SERVICELEVEL_WEBHOOK_ALLOW_PRIVATE")]
        allow_private: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List subscriptions.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Show a subscription: its URL, kinds, health and secrets' fingerprints.
    Show {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Add a secret (the next one of a rotation), read on standard input.
    AddSecret {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Remove a secret by its fingerprint (never the last one).
    RemoveSecret {
        id: String,
        fingerprint: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List a subscription's deliveries, newest alert first.
    Deliveries {
        id: String,
        /// Only these states (pending, delivered, dead); repeatable.
        #[arg(long = "state", value_delimiter = ',')]
        states: Vec<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Deliver a dead (or delivered) delivery again, by its alert id.
    Replay {
        id: String,
        alert: i64,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Enable a subscription again (one disabled for failing resumes).
    Enable {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Delete a subscription: nothing more is delivered to it.
    Delete {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Create a connection; its secret is read on standard input (one line).
    Create {
        /// The connection's id (a-z, 0-9, '-'): the webhook URL is /webhooks/v1/ID.
        id: String,
        /// The organisation whose tickets it pushes.
        #[arg(long = "org")]
        organization: String,
        /// zendesk, hubspot, jira, freshdesk or generic.
        #[arg(long)]
        provider: String,
        /// The tickets' source system; default: the provider's name.
        #[arg(long)]
        source_system: Option<String>,
        /// The base URL the provider posts to, when an ingress rewrites it (HubSpot signs
        /// the URL).
        #[arg(long)]
        public_base_url: Option<String>,
        /// The mapping, a TOML file (docs/integrations.md).
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Human-readable name; default: the id.
        #[arg(long)]
        display_name: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List connections.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Show a connection with its mapping and its secrets' fingerprints.
    Show {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Replace a connection's mapping with a TOML file's.
    SetMapping {
        id: String,
        mapping: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Add a secret (the next one of a rotation), read on standard input.
    AddSecret {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Remove a secret by its fingerprint (never the last one).
    RemoveSecret {
        id: String,
        fingerprint: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List a connection's deliveries, newest first.
    Deliveries {
        id: String,
        /// Only these states (pending, applied, stale, ignored, failed); repeatable.
        #[arg(long = "state", value_delimiter = ',')]
        states: Vec<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Make deliveries pending again: one, or all of a connection's failed ones.
    Replay {
        id: String,
        /// One delivery's id; without it, every failed one.
        delivery: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Archive a connection: its URL answers 404 from then on.
    Archive {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create an API client and print its token, once: only its hash is stored.
    Create {
        /// A unique name (a-z, 0-9, '-'); never reused, even after a revocation.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes (tickets:read, tickets:write, policies:read,
        /// policies:admin, ledger:read, ledger:write, ledger:admin, alerts:read), or `all`.
        #[arg(long)]
        scopes: String,
        /// An organisation the client may touch (repeatable); without any, every one.
        #[arg(long = "org", value_delimiter = ',')]
        organizations: Vec<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List API clients: name, id, scopes, organisations, created, revoked.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke an API client: its token stops working within seconds.
    Revoke {
        /// The client's name.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Read a token on standard input and print its SHA-256 hex (for
    /// SERVICELEVEL_BOOTSTRAP_ADMIN_TOKEN_HASH); a final line ending is not part of it.
    HashToken,
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
    /// Database URL: postgres://... for Postgres, sqlite://FILE for embedded SQLite (the
    /// file is created when missing).
    #[arg(long, env = "SERVICELEVEL_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// A direct URL of the same database, for migrations (sqlx's migrator holds a session
    /// advisory lock): set it when the database URL goes through a transaction-pooling
    /// PgBouncer (`?statement-cache-capacity=0`). Default: the database URL.
    #[arg(long, env = "SERVICELEVEL_MIGRATION_DATABASE_URL")]
    pub migration_database_url: Option<String>,
    /// Most database connections in the pool.
    #[arg(long, env = "SERVICELEVEL_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,
    /// Longest a call waits for a pooled connection (or for the database to accept a new
    /// one) before it fails with UNAVAILABLE: short, so calls fail fast during an outage.
    #[arg(long, env = "SERVICELEVEL_DB_ACQUIRE_TIMEOUT", default_value = "1s", value_parser = duration)]
    pub db_acquire_timeout: Duration,
}

/// A path, empty allowed: an empty variable (`SERVICELEVEL_TLS_CLIENT_CA=`) counts as unset.
fn any_path(s: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(s))
}

/// A duration as people write it: a number with a unit (`500ms`, `5s`, `2m`, `1h`), or
/// several (`1m30s`); a bare whole number is seconds, as the settings took before.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration: write e.g. 30s, 500ms or 2m".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - digits);
        let (number, unit) = (&rest[..digits], rest[digits..digits + unit_len].trim());
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a duration: write e.g. 30s, 500ms or 2m"))?;
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" | "sec" | "secs" => Duration::from_secs(n),
            "m" | "min" | "mins" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => {
                return Err(format!(
                    "{s:?} is not a duration: units are ms, s, m, h and d (e.g. 30s, 500ms, 2m, 30d)"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

/// A socket address, or none when the value is empty (an unset chart value, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl std::str::FromStr for OptionalAddr {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            Ok(OptionalAddr(None))
        } else {
            s.parse().map(|a| OptionalAddr(Some(a)))
        }
    }
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
    /// A read replica of the database (a streaming hot standby): lists, reports, exports
    /// and the due, breached and at-risk queries read there while its lag is within
    /// --read-max-lag, else from the primary. Default: none (everything on the primary).
    #[arg(long, env = "SERVICELEVEL_READ_DATABASE_URL")]
    pub read_database_url: Option<String>,
    /// The most lag the read replica's reads may have (measured every second); past it,
    /// or while unknown, they read the primary.
    #[arg(long, env = "SERVICELEVEL_READ_MAX_LAG", default_value = "10s", value_parser = duration)]
    pub read_max_lag: Duration,
    /// How long RPCs in flight may take to finish after SIGTERM before the server stops
    /// (`25s`, `500ms`, `1m`; a bare number is seconds).
    #[arg(long, env = "SERVICELEVEL_DRAIN_TIMEOUT", default_value = "25s", value_parser = duration)]
    pub drain_timeout: Duration,
    /// Most RPCs running at once; more are refused with RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "SERVICELEVEL_MAX_CONCURRENT_RPCS", default_value_t = 512)]
    pub max_concurrent_rpcs: usize,
    /// Longest a unary RPC may run (`30s`, `500ms`, `2m`; a bare number is seconds); a
    /// client's shorter deadline wins.
    #[arg(long, env = "SERVICELEVEL_RPC_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub rpc_timeout: Duration,
    /// How far ahead of the server's clock an event's occurred time or a ticket's received
    /// time may be; further ahead is refused as INVALID_ARGUMENT.
    #[arg(long, env = "SERVICELEVEL_MAX_FUTURE_SKEW", default_value = "5m", value_parser = duration)]
    pub max_future_skew: Duration,
    /// How long webhook deliveries are kept once done (applied, stale, ignored or failed;
    /// pending ones stay): `30d`, `72h`.
    #[arg(long, env = "SERVICELEVEL_INBOX_RETENTION", default_value = "30d", value_parser = duration)]
    pub inbox_retention: Duration,
    /// Tickets whose webhook deliveries are applied at once (one ticket's always one
    /// after another).
    #[arg(long, env = "SERVICELEVEL_INBOX_CONCURRENCY", default_value_t = 8)]
    pub inbox_concurrency: usize,
    /// Browser origins allowed to call the API (gRPC-Web and Connect) across origins,
    /// e.g. `https://desk.example.com`; repeatable or comma-separated. None by default:
    /// CORS is off.
    #[arg(
        long = "cors-allowed-origin",
        env = "SERVICELEVEL_CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Vec<String>,
    /// Let alert webhook subscriptions use plain http:// URLs (https only otherwise).
    #[arg(long, env = "SERVICELEVEL_WEBHOOK_ALLOW_HTTP")]
    pub webhook_allow_http: bool,
    /// Let alert webhooks reach loopback, private and link-local addresses (refused
    /// otherwise, after DNS resolution too).
    #[arg(long, env = "SERVICELEVEL_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// How long an alert webhook delivery is retried before it is dead-lettered (`24h`).
    #[arg(long, env = "SERVICELEVEL_WEBHOOK_RETRY_FOR", default_value = "24h", value_parser = duration)]
    pub webhook_retry_for: Duration,
    /// How long a replica's hold on a subscription's deliveries lasts unless renewed: how
    /// soon another replica takes over from one that died (`30s`).
    #[arg(long, env = "SERVICELEVEL_WEBHOOK_LEASE", default_value = "30s", value_parser = duration)]
    pub webhook_lease: Duration,
    /// Policy packs to import at start (built-in names or pack files); repeatable.
    #[arg(long = "pack", env = "SERVICELEVEL_PACKS", value_delimiter = ',')]
    pub packs: Vec<String>,
    /// Serve Prometheus metrics at http://ADDRESS/metrics (e.g. 0.0.0.0:9090); off when
    /// unset. Traces are set by the standard OTEL_* variables (docs/operations.md).
    #[arg(long, env = "SERVICELEVEL_METRICS_LISTEN")]
    pub metrics_listen: Option<OptionalAddr>,
    /// Also export the metrics renamed in this release under their old names, for one
    /// release (docs/operations.md lists them): `true` (the default) or `false`.
    #[arg(
        long,
        env = "SERVICELEVEL_METRICS_LEGACY_NAMES",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub metrics_legacy_names: bool,
    /// Log format.
    #[arg(
        long,
        env = "SERVICELEVEL_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    pub log_format: LogFormat,
    /// Whether calls need a token: `required`, or `off` (only on a loopback address).
    /// Default: `off` on a loopback address, `required` on any other.
    #[arg(long, env = "SERVICELEVEL_AUTH", value_enum)]
    pub auth: Option<crate::auth::AuthMode>,
    /// Who may use server reflection when tokens are required: `public` (anyone; the
    /// schema is public and tools send no token on reflection requests) or `token` (any
    /// valid token).
    #[arg(
        long,
        env = "SERVICELEVEL_REFLECTION",
        value_enum,
        default_value = "public"
    )]
    pub reflection: crate::auth::ReflectionAccess,
    /// SHA-256 hex of the first admin's token: at start, an admin client with every scope
    /// is made for it unless a client holds it already.
    #[arg(
        long,
        env = "SERVICELEVEL_BOOTSTRAP_ADMIN_TOKEN_HASH",
        hide_env_values = true
    )]
    pub bootstrap_admin_token_hash: Option<String>,
    /// Serve over TLS with this certificate chain (PEM).
    #[arg(long, env = "SERVICELEVEL_TLS_CERT", value_parser = any_path)]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long, env = "SERVICELEVEL_TLS_KEY", value_parser = any_path)]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "SERVICELEVEL_TLS_CLIENT_CA", value_parser = any_path)]
    pub tls_client_ca: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_units_or_as_seconds() {
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration(" 30 "), Ok(Duration::from_secs(30)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "5x", "1.5s", "-1s", "5 s s", "ms5"] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_cli_takes_durations() {
        let cli = Cli::try_parse_from(["servicelevel", "--rpc-timeout", "5s"]).expect("parses");
        assert_eq!(cli.serve.rpc_timeout, Duration::from_secs(5));
        assert_eq!(cli.serve.drain_timeout, Duration::from_secs(25));
        let cli = Cli::try_parse_from([
            "servicelevel",
            "serve",
            "--rpc-timeout",
            "7",
            "--drain-timeout",
            "1500ms",
        ])
        .expect("parses");
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.rpc_timeout, Duration::from_secs(7));
        assert_eq!(args.drain_timeout, Duration::from_millis(1500));
        assert!(Cli::try_parse_from(["servicelevel", "--rpc-timeout", "soon"]).is_err());
    }
}
