//! The gRPC transport: per service, requests parsed into domain values once, the use case
//! of `crate::app` called, its result rendered as proto and its error mapped to a
//! `tonic::Status` in one place (`error`). Conversions live in `convert`; each service in
//! its own file.

pub mod alerts;
pub mod auth;
mod calendars;
mod catalog;
pub mod codec;
mod connections;
pub mod convert;
mod deadlines;
pub mod error;
mod hours;
mod organizations;
pub mod packs;
mod policies;
mod reports;
pub mod span;
mod tickets;
mod webhooks;

use std::sync::Arc;

pub use crate::app::App;
use crate::app::recompute::Recompute;

use crate::auth::Caller;
use crate::domain::names::ResourceId;
use crate::store::{Store, StoreError};
use error::{AppError, AppResult};

/// Code generated from `proto/servicelevel/v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("servicelevel.v1");

    /// The descriptor set for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("servicelevel_descriptor");
}

/// The answers the use cases store under request ids are the proto responses, in their
/// protobuf encoding (see `crate::app::answer`).
impl<M: prost::Message + Default> crate::app::answer::Answer for M {
    fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        M::decode(bytes).map_err(|e| e.to_string())
    }
}

/// The gRPC services, sharing one [`App`].
pub struct Api<S: Store> {
    pub app: Arc<App<S>>,
    recompute: Recompute,
}

impl<S: Store> Clone for Api<S> {
    fn clone(&self) -> Self {
        Api {
            app: Arc::clone(&self.app),
            recompute: self.recompute.clone(),
        }
    }
}

impl<S: Store> Api<S> {
    pub fn new(app: Arc<App<S>>, recompute: Recompute) -> Self {
        Api { app, recompute }
    }
}

/// The calling client, for scoping idempotency keys: the authenticated API client's id.
/// With authentication off (loopback only), a client names itself in the
/// `x-servicelevel-client` metadata.
pub fn client_of<T>(req: &tonic::Request<T>) -> String {
    if let Some(caller) = req.extensions().get::<Arc<Caller>>() {
        return caller.client.clone();
    }
    req.metadata()
        .get("x-servicelevel-client")
        .and_then(|v| v.to_str().ok())
        // `tickets/...` scopes event keys (`IdempotencyKey::event`): no client's name.
        .filter(|v| !v.is_empty() && v.len() <= 64 && !v.starts_with("tickets/"))
        .unwrap_or("anonymous")
        .to_string()
}

/// The organisations a call may touch: every one, unless its API client is restricted to
/// some (`servicelevel client create --org`). Take it before the request is consumed:
/// `let orgs = OrgScope::of(&req);`, then check each organisation the call touches.
#[derive(Debug, Clone, Default)]
pub struct OrgScope(Option<Arc<Caller>>);

impl OrgScope {
    pub fn of<T>(req: &tonic::Request<T>) -> OrgScope {
        OrgScope(
            req.extensions()
                .get::<Arc<Caller>>()
                .filter(|c| c.organizations.is_some())
                .cloned(),
        )
    }

    /// Whether the caller may touch every organisation (its client is not restricted).
    pub fn allows_everything(&self) -> bool {
        self.0.is_none()
    }

    /// Whether the caller may touch an organisation, given as a resource name
    /// (`organizations/acme`) or an id. A caller restricted to organisations may touch
    /// nothing that does not name one of them.
    pub fn allows(&self, organization: &str) -> bool {
        let Some(caller) = &self.0 else {
            return true;
        };
        let id = organization
            .strip_prefix("organizations/")
            .unwrap_or(organization);
        ResourceId::parse(id).is_ok_and(|id| caller.may_touch(&id))
    }

    /// PERMISSION_DENIED unless the caller may touch the organisation. For list and
    /// stream filters, an empty organisation (all of them) is refused to restricted
    /// callers: they must name one of theirs.
    pub fn allow(&self, organization: &str) -> AppResult<()> {
        if self.allows(organization) {
            return Ok(());
        }
        let caller = self.0.as_ref().map_or("", |c| c.name.as_str());
        let theirs = self
            .0
            .iter()
            .flat_map(|c| c.organizations.iter().flatten())
            .map(|o| format!("organizations/{o}"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(AppError::PermissionDenied(if organization.is_empty() {
            format!("API client {caller} may only touch {theirs}: name one of them")
        } else {
            format!("API client {caller} may not touch {organization}, only {theirs}")
        }))
    }

    /// For a caller restricted to organisations, a ticket of another organisation does
    /// not exist: NOT_FOUND, answered exactly as for a ticket that does not exist, after
    /// the same one read, so the answer tells nothing about other organisations'
    /// tickets. Unrestricted callers read nothing here.
    pub async fn allow_ticket<S: Store>(&self, app: &App<S>, ticket: &str) -> AppResult<()> {
        if self.0.is_none() {
            return Ok(());
        }
        let id = ticket.strip_prefix("tickets/").unwrap_or(ticket);
        let not_found = || AppError::NotFound(format!("tickets/{id}"));
        match app.store.get_ticket(id).await {
            Ok(record) if self.allows(record.ticket.organization.as_str()) => Ok(()),
            Ok(_) | Err(StoreError::NotFound(_)) => Err(not_found()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Records an id on the current RPC's span (declared by the RPC tracing layer).
pub(crate) fn note(field: &'static str, value: &dyn std::fmt::Display) {
    tracing::Span::current().record(field, tracing::field::display(value));
}
