//! Authentication, authorisation and TLS.
//!
//! Callers present `authorization: Bearer <token>`. A token belongs to a named API client
//! (`servicelevel client create`), stored only as the token's SHA-256, with scopes (see
//! [`scope::METHODS`] for what each RPC needs) and optionally the organisations it may
//! touch. The gRPC transport's layer (`crate::api::auth`) checks every call before it
//! reaches a service: no valid token is UNAUTHENTICATED, a missing scope
//! PERMISSION_DENIED; it leaves the [`Caller`] in the request's extensions, where the API
//! reads the client (idempotency keys are scoped to it) and its organisations (checked
//! where a request names one).
//!
//! The parts here are pure; that layer and the CLI's operations do the I/O.

pub mod admin;
pub mod scope;
pub mod tls;
pub mod token;

use std::net::SocketAddr;
use std::time::Duration;

use crate::domain::names::ResourceId;
use crate::store::ApiClientRecord;

pub use scope::{Access, Method, Reach, Scope, Scopes};
pub use tls::TlsConfig;

/// How long a verified token is trusted before it is looked up again: the bound on how
/// late a revocation takes effect on each replica.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// Whether calls must carry a token (`SERVICELEVEL_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every call but health needs a valid token.
    Required,
    /// No tokens: only on a loopback address. Callers name themselves in the
    /// `x-servicelevel-client` metadata, for idempotency keys.
    Off,
}

/// The mode to serve with: the one asked for, or by default `required`, except on a
/// loopback address (the embedded default) where it is `off`. `off` on any other address
/// is refused.
pub fn resolve_mode(listen: SocketAddr, asked: Option<AuthMode>) -> Result<AuthMode, String> {
    let loopback = listen.ip().is_loopback();
    match asked {
        Some(AuthMode::Off) if !loopback => Err(format!(
            "authentication cannot be off when listening on {listen}: it may be off only on a \
             loopback address (127.0.0.1, ::1). Set SERVICELEVEL_AUTH=required (the default) and \
             create an API client (servicelevel client create, or \
             SERVICELEVEL_BOOTSTRAP_ADMIN_TOKEN_HASH)"
        )),
        Some(mode) => Ok(mode),
        None if loopback => Ok(AuthMode::Off),
        None => Ok(AuthMode::Required),
    }
}

/// Who may use server reflection when tokens are required (`SERVICELEVEL_REFLECTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReflectionAccess {
    /// Anyone: the schema is public, and generic tools (`buf curl`, grpcurl) send no
    /// token on their reflection requests.
    #[default]
    Public,
    /// Callers with a valid token, whatever its scopes.
    Token,
}

/// How the server secures its calls.
#[derive(Debug, Clone)]
pub struct Security {
    pub auth: AuthMode,
    /// Whether reflection needs a token too (with `auth` required).
    pub reflection: ReflectionAccess,
    /// How long a verified token is trusted (see [`CACHE_TTL`]).
    pub cache_ttl: Duration,
    /// Serve over TLS (and require client certificates when it has a client CA).
    pub tls: Option<TlsConfig>,
}

impl Security {
    /// No tokens, no TLS: for loopback listeners only.
    pub fn off() -> Security {
        Security {
            auth: AuthMode::Off,
            reflection: ReflectionAccess::Public,
            cache_ttl: CACHE_TTL,
            tls: None,
        }
    }

    /// Tokens required, no TLS.
    pub fn required() -> Security {
        Security {
            auth: AuthMode::Required,
            ..Security::off()
        }
    }
}

/// The authenticated caller of an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The API client's id: idempotency keys are scoped to it.
    pub client: String,
    pub name: String,
    pub scopes: Scopes,
    /// The organisations it may touch; `None`: every one.
    pub organizations: Option<Vec<ResourceId>>,
}

impl Caller {
    /// The caller a stored client makes. Scope names this build does not know (stored by
    /// a newer one) grant nothing.
    pub fn of(record: &ApiClientRecord) -> Caller {
        let scopes = record
            .scopes
            .iter()
            .filter_map(|s| match s.parse::<Scope>() {
                Ok(scope) => Some(scope),
                Err(e) => {
                    tracing::warn!(client = %record.name, error = %e, "ignoring a stored scope");
                    None
                }
            })
            .collect();
        Caller {
            client: record.id.clone(),
            name: record.name.to_string(),
            scopes,
            organizations: record.organizations.clone(),
        }
    }

    /// Whether it may touch an organisation.
    pub fn may_touch(&self, organization: &ResourceId) -> bool {
        self.organizations
            .as_ref()
            .is_none_or(|orgs| orgs.contains(organization))
    }

    /// Whether it may make a call that needs `access`; if not, why (for
    /// PERMISSION_DENIED).
    pub fn authorize(&self, access: Access, path: &str) -> Result<(), String> {
        match access {
            Access::Open | Access::Authenticated => Ok(()),
            Access::Method(m) if !self.scopes.contains(m.scope) => Err(format!(
                "API client {} lacks the scope {} that {path} needs",
                self.name, m.scope
            )),
            Access::Method(m) if m.reach == Reach::SharedWrite && self.organizations.is_some() => {
                Err(format!(
                    "API client {} is restricted to organisations: {path} changes what every \
                     organisation shares, which needs an unrestricted client",
                    self.name
                ))
            }
            Access::Method(_) => Ok(()),
            Access::Unlisted => Err(format!("no scope grants {path}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn record(scopes: &[&str], orgs: Option<&[&str]>) -> ApiClientRecord {
        ApiClientRecord {
            id: "0123".into(),
            name: ResourceId::parse("crm").unwrap(),
            token_hash: token::hash("t"),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            organizations: orgs.map(|o| o.iter().map(|o| ResourceId::parse(o).unwrap()).collect()),
            created_at: Utc::now(),
            revoked_at: None,
        }
    }

    #[test]
    fn loopback_may_run_without_tokens_nothing_else() {
        let local: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let local6: SocketAddr = "[::1]:50051".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        let public: SocketAddr = "10.1.2.3:50051".parse().unwrap();
        assert_eq!(resolve_mode(local, None), Ok(AuthMode::Off));
        assert_eq!(resolve_mode(local6, None), Ok(AuthMode::Off));
        assert_eq!(
            resolve_mode(local, Some(AuthMode::Required)),
            Ok(AuthMode::Required)
        );
        assert_eq!(resolve_mode(any, None), Ok(AuthMode::Required));
        assert_eq!(resolve_mode(public, None), Ok(AuthMode::Required));
        let err = resolve_mode(any, Some(AuthMode::Off)).unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        assert!(resolve_mode(public, Some(AuthMode::Off)).is_err());
    }

    #[test]
    fn scopes_decide() {
        let caller = Caller::of(&record(&["tickets:read", "some:future"], None));
        assert_eq!(caller.scopes, [Scope::TicketsRead].into_iter().collect());
        let path = "/servicelevel.v1.TicketService/GetTicket";
        assert_eq!(caller.authorize(scope::access(path), path), Ok(()));
        let path = "/servicelevel.v1.TicketService/CreateTicket";
        let err = caller.authorize(scope::access(path), path).unwrap_err();
        assert!(err.contains("tickets:write"), "{err}");
        let path = "/servicelevel.v1.TicketService/Nope";
        assert!(caller.authorize(scope::access(path), path).is_err());
        let path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
        assert_eq!(caller.authorize(scope::access(path), path), Ok(()));
    }

    #[test]
    fn restricted_clients_touch_their_organisations_only() {
        let caller = Caller::of(&record(&["all"], Some(&["acme"])));
        // "all" is a CLI shorthand, not a stored scope.
        assert!(caller.scopes.is_empty());
        let caller = Caller::of(&record(
            &["policies:admin", "policies:read"],
            Some(&["acme"]),
        ));
        assert!(caller.may_touch(&ResourceId::parse("acme").unwrap()));
        assert!(!caller.may_touch(&ResourceId::parse("globex").unwrap()));
        let path = "/servicelevel.v1.PolicyService/UpdatePolicy";
        assert!(caller.authorize(scope::access(path), path).is_err());
        let path = "/servicelevel.v1.OrganizationService/UpdateOrganization";
        assert_eq!(caller.authorize(scope::access(path), path), Ok(()));
        let path = "/servicelevel.v1.PolicyService/GetPolicy";
        assert_eq!(caller.authorize(scope::access(path), path), Ok(()));
        let unrestricted = Caller::of(&record(&["policies:admin"], None));
        let path = "/servicelevel.v1.PolicyService/UpdatePolicy";
        assert_eq!(unrestricted.authorize(scope::access(path), path), Ok(()));
        assert!(unrestricted.may_touch(&ResourceId::parse("globex").unwrap()));
    }
}
