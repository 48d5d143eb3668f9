//! The gRPC edge: proto <-> domain mapping and errors -> `tonic::Status`, in one place.

mod alerts;
mod app;
mod catalog;
pub mod convert;
pub mod error;
mod fingerprint;
mod hours;
pub mod packs;
mod page;
pub mod recompute;
pub mod runner;
mod tickets;

use std::sync::Arc;

pub use app::App;
use recompute::Recompute;

use crate::store::Store;

/// Code generated from `proto/servicelevel/v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("servicelevel.v1");

    /// The descriptor set for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("servicelevel_descriptor");
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

/// The calling client, for scoping idempotency keys. Until authentication identifies
/// callers, a client names itself in the `x-servicelevel-client` metadata.
pub fn client_of<T>(req: &tonic::Request<T>) -> String {
    req.metadata()
        .get("x-servicelevel-client")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .unwrap_or("anonymous")
        .to_string()
}

/// Records an id on the current RPC's span (declared by the RPC tracing layer).
pub(crate) fn note(field: &'static str, value: &dyn std::fmt::Display) {
    tracing::Span::current().record(field, tracing::field::display(value));
}
