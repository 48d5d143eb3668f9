//! The tower layer that authenticates and authorises every gRPC call before a service
//! sees it; tokens, scopes and clients themselves are `crate::auth`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::Status;
use tonic::codegen::http;
use tower::{Layer, Service};

use super::error::{self, ErrorReason};
use crate::auth::scope::{self, Access};
use crate::auth::{AuthMode, Caller, ReflectionAccess, Security, token};
use crate::store::{ApiClientRecord, Store, StoreResult};
use crate::telemetry::LogThrottle;

/// Most token answers kept; past it the cache starts over.
const MAX_CACHED: usize = 10_000;

/// Token lookups in the database at once. Valid tokens are nearly always cached, so what
/// misses is mostly refused tokens: a client hammering with a revoked or made-up token
/// holds at most this many connections, never the pool.
const LOOKUPS_AT_ONCE: usize = 4;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where API clients are looked up: the store, behind a trait object so the layer is one
/// type whatever the store.
pub trait Directory: Send + Sync + 'static {
    fn client_by_token_hash<'a>(
        &'a self,
        token_hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ApiClientRecord>>>;
}

impl<S: Store> Directory for S {
    fn client_by_token_hash<'a>(
        &'a self,
        token_hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ApiClientRecord>>> {
        Box::pin(self.api_client_by_token_hash(token_hash))
    }
}

/// When a token was looked up, and its caller (`None`: refused).
type Answer = (Instant, Option<Arc<Caller>>);

/// Verifies tokens, caching the answers (valid or refused) for a while.
pub struct Authenticator {
    directory: Box<dyn Directory>,
    /// Reflection needs a token ([`ReflectionAccess::Token`]), or none.
    reflection: ReflectionAccess,
    ttl: Duration,
    /// Token hash -> its answer.
    cache: Mutex<HashMap<String, Answer>>,
    lookups: tokio::sync::Semaphore,
}

fn refused() -> Status {
    error::status(
        ErrorReason::TokenInvalid,
        "the token is not valid or revoked",
        &[],
    )
}

impl Authenticator {
    pub fn new(directory: impl Directory, ttl: Duration) -> Authenticator {
        Authenticator {
            directory: Box::new(directory),
            reflection: ReflectionAccess::Token,
            ttl,
            cache: Mutex::new(HashMap::new()),
            lookups: tokio::sync::Semaphore::new(LOOKUPS_AT_ONCE),
        }
    }

    /// The cached answer for a token hash, while fresh.
    fn cached(&self, hash: &str) -> Option<Result<Arc<Caller>, Status>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, caller) = cache.get(hash)?;
        (at.elapsed() < self.ttl).then(|| caller.clone().ok_or_else(refused))
    }

    fn remember(&self, hash: String, caller: Option<Arc<Caller>>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(hash, (Instant::now(), caller));
    }

    /// The caller an `authorization` header value names, or UNAUTHENTICATED (UNAVAILABLE
    /// when the store cannot say).
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Arc<Caller>, Status> {
        let Some(token) = header.and_then(token::bearer) else {
            return Err(error::status(
                ErrorReason::TokenMissing,
                "this call needs a token: send the metadata `authorization: Bearer <token>`",
                &[],
            ));
        };
        let hash = token::hash(token);
        if let Some(answer) = self.cached(&hash) {
            return answer;
        }
        let _permit = self.lookups.acquire().await.map_err(|_| {
            error::status(
                ErrorReason::DatabaseUnavailable,
                "token lookups are closed",
                &[],
            )
        })?;
        // Calls with the same token waited here together: the first one's answer serves
        // the rest.
        if let Some(answer) = self.cached(&hash) {
            return answer;
        }
        let record = self
            .directory
            .client_by_token_hash(&hash)
            .await
            .map_err(|e| {
                error::status(
                    ErrorReason::DatabaseUnavailable,
                    format!("cannot check the token now: {e}"),
                    &[],
                )
            })?;
        let record = match record {
            // The store found it by hash; compare again in constant time, whatever the
            // database's collation did.
            Some(r)
                if r.revoked_at.is_none()
                    && token::constant_time_eq(r.token_hash.as_bytes(), hash.as_bytes()) =>
            {
                r
            }
            found => {
                tracing::debug!(
                    revoked = found.is_some(),
                    client_id = token::client_id_of(token).unwrap_or(""),
                    "refused a token"
                );
                self.remember(hash, None);
                return Err(refused());
            }
        };
        let caller = Arc::new(Caller::of(&record));
        self.remember(hash, Some(Arc::clone(&caller)));
        Ok(caller)
    }

    /// The same, with reflection open to callers without a token or not.
    pub fn with_reflection(mut self, reflection: ReflectionAccess) -> Authenticator {
        self.reflection = reflection;
        self
    }

    /// Checks a call to `path`: the caller when it may make it, else the status to answer.
    /// Health (and reflection, unless it needs a token) needs no token, so it has no
    /// caller.
    pub async fn check(
        &self,
        path: &str,
        header: Option<&str>,
    ) -> Result<Option<Arc<Caller>>, Status> {
        let access = match scope::access(path) {
            Access::Authenticated if self.reflection == ReflectionAccess::Public => Access::Open,
            access => access,
        };
        if access == Access::Open {
            return Ok(None);
        }
        let caller = self.authenticate(header).await?;
        caller.authorize(access, path).map_err(|message| {
            let reason = match access {
                Access::Method(m) if !caller.scopes.contains(m.scope) => ErrorReason::ScopeMissing,
                Access::Method(_) => ErrorReason::RestrictedClient,
                _ => ErrorReason::MethodNotGranted,
            };
            error::status(reason, message, &[("method", path.to_string())])
        })?;
        Ok(Some(caller))
    }
}

/// Authenticates every call when authentication is required; passes calls through when it
/// is off.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Option<Arc<Authenticator>>,
    warnings: Arc<LogThrottle>,
}

impl AuthLayer {
    pub fn new(security: &Security, directory: impl Directory) -> AuthLayer {
        AuthLayer {
            auth: (security.auth == AuthMode::Required).then(|| {
                Arc::new(
                    Authenticator::new(directory, security.cache_ttl)
                        .with_reflection(security.reflection),
                )
            }),
            warnings: Arc::new(LogThrottle::default()),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
            warnings: Arc::clone(&self.warnings),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Option<Arc<Authenticator>>,
    warnings: Arc<LogThrottle>,
}

impl<S, B, R> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let Some(auth) = self.auth.clone() else {
            return Box::pin(self.inner.call(req));
        };
        // The ready service handles this call; the clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let warnings = Arc::clone(&self.warnings);
        Box::pin(async move {
            let header = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match auth.check(req.uri().path(), header).await {
                Ok(caller) => {
                    if let Some(caller) = caller {
                        req.extensions_mut().insert(caller);
                    }
                    inner.call(req).await
                }
                Err(status) => {
                    // One line per interval at most; the RPC metrics count each refusal.
                    if let Some(refused) = warnings.hit() {
                        tracing::warn!(
                            refused,
                            code = crate::metrics::code_name(status.code() as i32),
                            path = req.uri().path(),
                            reason = status.message(),
                            "refused calls: {refused} since the last such warning"
                        );
                    }
                    Ok(status.into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tonic::Code;

    use super::*;
    use crate::domain::names::ResourceId;
    use crate::store::StoreError;

    /// Clients by token hash; `None` for a database that does not answer. Counts the
    /// lookups, and the most at once (each takes a few milliseconds).
    #[derive(Clone, Default)]
    struct Fake(
        Arc<Mutex<Option<HashMap<String, ApiClientRecord>>>>,
        Arc<Mutex<(usize, usize, usize)>>,
    );

    impl Fake {
        /// (lookups, most at once)
        fn lookups(&self) -> (usize, usize) {
            let (n, _, most) = *self.1.lock().unwrap();
            (n, most)
        }
    }

    impl Directory for Fake {
        fn client_by_token_hash<'a>(
            &'a self,
            token_hash: &'a str,
        ) -> BoxFuture<'a, StoreResult<Option<ApiClientRecord>>> {
            let found = match &*self.0.lock().unwrap() {
                Some(clients) => Ok(clients.get(token_hash).cloned()),
                None => Err(StoreError::Unavailable("down".into())),
            };
            {
                let mut c = self.1.lock().unwrap();
                c.0 += 1;
                c.1 += 1;
                c.2 = c.2.max(c.1);
            }
            let counts = Arc::clone(&self.1);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                counts.lock().unwrap().1 -= 1;
                found
            })
        }
    }

    fn with_client(token: &str, scopes: &[&str]) -> Fake {
        let record = ApiClientRecord {
            id: "id-1".into(),
            name: ResourceId::parse("crm").unwrap(),
            token_hash: token::hash(token),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            organizations: None,
            created_at: Utc::now(),
            revoked_at: None,
        };
        let fake = Fake::default();
        *fake.0.lock().unwrap() = Some(HashMap::from([(record.token_hash.clone(), record)]));
        fake
    }

    fn code<T>(r: Result<T, Status>) -> Code {
        r.err().map_or(Code::Ok, |s| s.code())
    }

    const CACHE_TTL_TEST: Duration = Duration::from_millis(100);

    const GET: &str = "/servicelevel.v1.TicketService/GetTicket";
    const CREATE: &str = "/servicelevel.v1.TicketService/CreateTicket";

    #[tokio::test]
    async fn calls_need_a_valid_token_with_the_scope() {
        let auth = Authenticator::new(with_client("secret", &["tickets:read"]), CACHE_TTL_TEST);
        assert_eq!(code(auth.check(GET, None).await), Code::Unauthenticated);
        assert_eq!(
            code(auth.check(GET, Some("Bearer other")).await),
            Code::Unauthenticated
        );
        assert_eq!(
            code(auth.check(GET, Some("secret")).await),
            Code::Unauthenticated
        );
        let caller = auth.check(GET, Some("Bearer secret")).await.unwrap();
        assert_eq!(caller.map(|c| c.client.clone()), Some("id-1".to_string()));
        assert_eq!(
            code(auth.check(CREATE, Some("Bearer secret")).await),
            Code::PermissionDenied
        );
        // Health needs nothing, and has no caller.
        assert!(
            auth.check("/grpc.health.v1.Health/Check", None)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_revocation_shows_once_the_cache_lets_go() {
        let fake = with_client("secret", &["tickets:read"]);
        let auth = Authenticator::new(fake.clone(), CACHE_TTL_TEST);
        auth.check(GET, Some("Bearer secret")).await.unwrap();
        if let Some(clients) = &mut *fake.0.lock().unwrap() {
            for c in clients.values_mut() {
                c.revoked_at = Some(Utc::now());
            }
        }
        // Cached: still trusted, without asking the database.
        auth.check(GET, Some("Bearer secret")).await.unwrap();
        tokio::time::sleep(CACHE_TTL_TEST + Duration::from_millis(20)).await;
        assert_eq!(
            code(auth.check(GET, Some("Bearer secret")).await),
            Code::Unauthenticated
        );
    }

    #[tokio::test]
    async fn refused_tokens_are_remembered_and_lookups_are_bounded() {
        let fake = with_client("secret", &["tickets:read"]);
        let auth = Arc::new(Authenticator::new(fake.clone(), Duration::from_secs(60)));
        // A client hammering with a bad token: the database is asked once.
        for _ in 0..20 {
            assert_eq!(
                code(auth.check(GET, Some("Bearer made-up")).await),
                Code::Unauthenticated
            );
        }
        assert_eq!(fake.lookups().0, 1);
        // Many different bad tokens at once: a few lookups at a time.
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let auth = Arc::clone(&auth);
                tokio::spawn(
                    async move { code(auth.check(GET, Some(&format!("Bearer t{i}"))).await) },
                )
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), Code::Unauthenticated);
        }
        let (lookups, most) = fake.lookups();
        assert_eq!(lookups, 41);
        assert!(most <= LOOKUPS_AT_ONCE, "{most} lookups at once");
        // Many calls with one valid token, its cache entry cold: one lookup serves them.
        let calls: Vec<_> = (0..40)
            .map(|_| {
                let auth = Arc::clone(&auth);
                tokio::spawn(async move { code(auth.check(GET, Some("Bearer secret")).await) })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), Code::Ok);
        }
        assert!(
            fake.lookups().0 <= 41 + LOOKUPS_AT_ONCE,
            "{:?}",
            fake.lookups()
        );
    }

    #[tokio::test]
    async fn a_database_that_does_not_answer_is_unavailable() {
        let auth = Authenticator::new(Fake::default(), CACHE_TTL_TEST);
        assert_eq!(
            code(auth.check(GET, Some("Bearer secret")).await),
            Code::Unavailable
        );
    }
}
