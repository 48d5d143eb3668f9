//! Starts the real server on a free port, on a fresh SQLite file or a fresh Postgres
//! schema, with a clock the test moves, and connects real tonic clients to it.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use servicelevel::api::pb;
use servicelevel::store::SqlStore;
use servicelevel::time::ManualClock;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub use pb::calendar_service_client::CalendarServiceClient;
pub use pb::deadline_service_client::DeadlineServiceClient;
pub use pb::organization_service_client::OrganizationServiceClient;
pub use pb::policy_service_client::PolicyServiceClient;
pub use pb::ticket_service_client::TicketServiceClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The Postgres the suite runs against; `SERVICELEVEL_TEST_POSTGRES_URL` overrides it.
pub fn postgres_url() -> String {
    std::env::var("SERVICELEVEL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A transaction-pooling PgBouncer in front of `postgres_url()`'s server, when
/// `SERVICELEVEL_TEST_POSTGRES_POOLER_URL` is set (scripts/pgbouncer-check.sh): each
/// Postgres test then gets a database of its own (PgBouncer does not pass the search
/// path option), its server and pool go through PgBouncer with the statement cache off,
/// and its migrations through the direct URL.
pub fn pooler_url() -> Option<String> {
    std::env::var("SERVICELEVEL_TEST_POSTGRES_POOLER_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// `url` with its database (the path) replaced by `database` and its query by `query`.
fn with_database(url: &str, database: &str, query: &str) -> String {
    let base = url.split_once('?').map_or(url, |(b, _)| b);
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    format!("{}/{database}?{query}", &base[..authority_end])
}

/// Applies the migrations on a fresh database through its direct URL.
pub async fn migrate_direct(direct_url: &str) {
    let store = SqlStore::connect(direct_url, 1)
        .await
        .expect("the fresh database opens directly");
    store.migrate().await.expect("migrations apply");
    store.close().await;
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub clock: Arc<ManualClock>,
    pub store: SqlStore,
    /// The database URL, for a restart.
    pub url: String,
    pub calendars: CalendarServiceClient<Channel>,
    pub organizations: OrganizationServiceClient<Channel>,
    pub policies: PolicyServiceClient<Channel>,
    pub tickets: TicketServiceClient<Channel>,
    pub deadlines: DeadlineServiceClient<Channel>,
    /// How the server runs (kept for a restart).
    pub options: servicelevel::server::ServeOptions,
    /// Authentication and TLS (kept for a restart): off unless a test calls `secure`.
    pub security: servicelevel::auth::Security,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    cleanup: Option<(String, String)>,
    _dir: Option<TempDir>,
}

/// A directory removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, mi, 0)
        .single()
        .expect("valid instant")
}

/// An empty database of its own: a SQLite file in a temporary directory, or a Postgres
/// schema (the URL sets its search path).
pub struct FreshDatabase {
    pub url: String,
    /// The same database without a pooler between: `url` unless through PgBouncer.
    pub direct_url: String,
    /// The Postgres admin URL and schema, to drop it.
    pub cleanup: Option<(String, String)>,
    pub dir: Option<TempDir>,
}

impl FreshDatabase {
    /// Drops the Postgres schema, or database through PgBouncer (the SQLite directory
    /// goes when dropped).
    pub async fn remove(self) {
        if let Some((admin, schema)) = self.cleanup
            && let Ok(store) = SqlStore::connect(&admin, 1).await
        {
            let sql = if pooler_url().is_some() {
                // FORCE: PgBouncer keeps server connections to it open.
                format!("DROP DATABASE IF EXISTS \"{schema}\" WITH (FORCE)")
            } else {
                format!("DROP SCHEMA \"{schema}\" CASCADE")
            };
            let _ = store.execute_raw(&sql).await;
            store.close().await;
        }
    }
}

pub async fn fresh_database(db: Db) -> FreshDatabase {
    let unique = uuid::Uuid::now_v7().simple().to_string();
    match db {
        Db::Sqlite => {
            let dir = std::env::temp_dir().join(format!("servicelevel-test-{unique}"));
            std::fs::create_dir_all(&dir).expect("temp dir");
            // No `?mode=rwc`: a SQLite URL creates its file by itself.
            let url = format!("sqlite://{}", dir.join("test.db").display());
            FreshDatabase {
                direct_url: url.clone(),
                url,
                cleanup: None,
                dir: Some(TempDir(dir)),
            }
        }
        Db::Postgres => {
            let schema = format!("t_{unique}");
            let admin = postgres_url();
            let store = SqlStore::connect(&admin, 1).await.unwrap_or_else(|e| {
                panic!(
                    "Postgres at {admin} is required for the Postgres suite ({e}); scripts/test.sh starts it, \
                     SERVICELEVEL_TEST_POSTGRES_URL points elsewhere"
                )
            });
            if let Some(pooler) = pooler_url() {
                store
                    .execute_raw(&format!("CREATE DATABASE \"{schema}\""))
                    .await
                    .expect("database created");
                store.close().await;
                // The name also names the connections (PgBouncer passes application_name).
                let url = with_database(
                    &pooler,
                    &schema,
                    &format!("statement-cache-capacity=0&application_name={schema}"),
                );
                let direct_url =
                    with_database(&admin, &schema, &format!("application_name={schema}"));
                return FreshDatabase {
                    url,
                    direct_url,
                    cleanup: Some((admin, schema)),
                    dir: None,
                };
            }
            store
                .execute_raw(&format!("CREATE SCHEMA \"{schema}\""))
                .await
                .expect("schema created");
            store.close().await;
            let sep = if admin.contains('?') { '&' } else { '?' };
            // The schema also names the connections, so a test can find its own in
            // pg_stat_activity.
            let url = format!(
                "{admin}{sep}options=-c%20search_path%3D{schema}&application_name={schema}"
            );
            FreshDatabase {
                direct_url: url.clone(),
                url,
                cleanup: Some((admin, schema)),
                dir: None,
            }
        }
    }
}

impl TestServer {
    /// The Postgres admin URL and this server's schema (`None` on SQLite).
    pub fn fresh_cleanup(&self) -> Option<(String, String)> {
        self.cleanup.clone()
    }

    /// A server on `db`, with its clock at `now`.
    pub async fn start(db: Db, now: DateTime<Utc>) -> TestServer {
        TestServer::start_with(db, now, test_options()).await
    }

    /// A server on `db`, with its clock at `now`, run with `options`.
    pub async fn start_with(
        db: Db,
        now: DateTime<Utc>,
        options: servicelevel::server::ServeOptions,
    ) -> TestServer {
        let fresh = fresh_database(db).await;
        let store = SqlStore::connect(&fresh.url, 8)
            .await
            .expect("the fresh database opens");
        let (url, direct_url, cleanup, dir) =
            (fresh.url, fresh.direct_url, fresh.cleanup, fresh.dir);
        if store.pooled() {
            migrate_direct(&direct_url).await;
        } else {
            store.migrate().await.expect("migrations apply");
        }
        let clock = Arc::new(ManualClock::new(now));
        let security = servicelevel::auth::Security::off();
        let (addr, stop, server) = spawn_server(
            store.clone(),
            clock.clone(),
            options.clone(),
            security.clone(),
        )
        .await;
        let channel = connect(addr).await;
        TestServer {
            addr,
            clock,
            store,
            url,
            calendars: CalendarServiceClient::new(channel.clone()),
            organizations: OrganizationServiceClient::new(channel.clone()),
            policies: PolicyServiceClient::new(channel.clone()),
            tickets: TicketServiceClient::new(channel.clone()),
            deadlines: DeadlineServiceClient::new(channel),
            options,
            security,
            stop: Some(stop),
            server: Some(server),
            cleanup,
            _dir: dir,
        }
    }

    /// A server on the database at `url` (migrated here), reading lists and the due
    /// queries from `replica` within its lag bound; its metrics are in `options.metrics`.
    pub async fn start_with_replica(
        url: &str,
        replica: servicelevel::server::ReadReplica<SqlStore>,
        now: DateTime<Utc>,
    ) -> TestServer {
        let store = SqlStore::connect(url, 8).await.expect("the primary opens");
        store.migrate().await.expect("migrations apply");
        let clock = Arc::new(ManualClock::new(now));
        let mut options = test_options();
        options.metrics = Some(Arc::new(servicelevel::metrics::Metrics::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("free port");
        let addr = listener.local_addr().expect("bound");
        let (stop, stopped) = oneshot::channel::<()>();
        let server_clock: Arc<dyn servicelevel::time::Clock> = clock.clone();
        let (server_store, server_options) = (store.clone(), options.clone());
        let server = tokio::spawn(async move {
            servicelevel::server::serve_with_replica(
                server_store,
                Some(replica),
                server_clock,
                listener,
                async {
                    let _ = stopped.await;
                },
                server_options,
                servicelevel::auth::Security::off(),
            )
            .await
            .expect("server runs");
        });
        let channel = connect(addr).await;
        TestServer {
            addr,
            clock,
            store,
            url: url.to_string(),
            calendars: CalendarServiceClient::new(channel.clone()),
            organizations: OrganizationServiceClient::new(channel.clone()),
            policies: PolicyServiceClient::new(channel.clone()),
            tickets: TicketServiceClient::new(channel.clone()),
            deadlines: DeadlineServiceClient::new(channel),
            options,
            security: servicelevel::auth::Security::off(),
            stop: Some(stop),
            server: Some(server),
            cleanup: None,
            _dir: None,
        }
    }

    /// A second server on the same database and clock, as another replica is: its own
    /// process state (caches, queues). Its address, and what stops it.
    pub async fn another_server(&self) -> (std::net::SocketAddr, oneshot::Sender<()>) {
        let (addr, stop, _server) = spawn_server(
            self.store.clone(),
            self.clock.clone(),
            self.options.clone(),
            self.security.clone(),
        )
        .await;
        (addr, stop)
    }

    /// Stops the server and starts a new one on the same database (a restart, or a
    /// deployment), with the same clock.
    pub async fn restart(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.store.close().await;
        self.store = SqlStore::connect(&self.url, 8)
            .await
            .expect("database reopens");
        let (addr, stop, server) = spawn_server(
            self.store.clone(),
            self.clock.clone(),
            self.options.clone(),
            self.security.clone(),
        )
        .await;
        let channel = connect(addr).await;
        self.addr = addr;
        self.calendars = CalendarServiceClient::new(channel.clone());
        self.organizations = OrganizationServiceClient::new(channel.clone());
        self.policies = PolicyServiceClient::new(channel.clone());
        self.tickets = TicketServiceClient::new(channel.clone());
        self.deadlines = DeadlineServiceClient::new(channel);
        self.stop = Some(stop);
        self.server = Some(server);
    }

    /// Restarts the server with `security` (authentication on, say), on the same
    /// database: set up with the plain clients first, then secure. The clients stay
    /// plaintext, so `security` must not have TLS.
    pub async fn secure(&mut self, security: servicelevel::auth::Security) {
        self.security = security;
        self.restart().await;
    }

    /// Stops the server only: the database stays, for `restart`.
    pub async fn pause(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    pub fn set_now(&self, t: DateTime<Utc>) {
        self.clock.set(t);
    }

    pub fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }

    /// Stops the server (health NOT_SERVING, RPCs finish) and removes the Postgres schema.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.store.close().await;
        FreshDatabase {
            url: String::new(),
            direct_url: String::new(),
            cleanup: self.cleanup.take(),
            dir: None,
        }
        .remove()
        .await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // A test that panics leaves its schema; a name per test keeps others unaffected.
    }
}

type Spawned = (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

/// The suite's server options: a 1 s drain, the runner looking every 20 ms.
pub fn test_options() -> servicelevel::server::ServeOptions {
    servicelevel::server::ServeOptions {
        drain_timeout: std::time::Duration::from_secs(1),
        runner_poll: std::time::Duration::from_millis(20),
        ..Default::default()
    }
}

async fn spawn_server(
    store: SqlStore,
    clock: Arc<ManualClock>,
    options: servicelevel::server::ServeOptions,
    security: servicelevel::auth::Security,
) -> Spawned {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    let addr = listener.local_addr().expect("bound");
    let (stop, stopped) = oneshot::channel::<()>();
    let server_clock: Arc<dyn servicelevel::time::Clock> = clock;
    let server = tokio::spawn(async move {
        servicelevel::server::serve_secured(
            store,
            server_clock,
            listener,
            async {
                let _ = stopped.await;
            },
            options,
            security,
        )
        .await
        .expect("server runs");
    });
    (addr, stop, server)
}

pub async fn connect(addr: std::net::SocketAddr) -> Channel {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
    for _ in 0..50 {
        if let Ok(ch) = endpoint.connect().await {
            return ch;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("server at {addr} does not accept connections")
}

/// Runs a suite test on SQLite and on Postgres.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Db::Postgres).await;
                }
            )*
        }
    };
}

/// Asserts a call failed with `code`, and returns the status.
pub fn expect_code<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    code: tonic::Code,
) -> tonic::Status {
    match r {
        Ok(resp) => panic!("expected {code:?}, got OK: {:?}", resp.into_inner()),
        Err(s) => {
            assert_eq!(s.code(), code, "unexpected status: {s:?}");
            s
        }
    }
}

/// The field violations of an INVALID_ARGUMENT status.
pub fn violations(s: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    s.get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

pub fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    })
}

pub fn from_ts(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32))
}
