//! The application: the use cases of servicelevel, on domain types. Transports (gRPC in
//! `api`, and the HTTP routes in front of it) parse requests into domain values, call a
//! use case here, and map its result and its [`AppError`] into their own terms; nothing
//! here knows tonic or the generated proto types (`tests/it/layers.rs` checks).
//!
//! Each write runs the same discipline in one transaction: claim the request's
//! idempotency key with the fingerprint of its meaning, lock what it changes, fold, save,
//! store the answer the transport rendered, commit ([`answer`]).
//!
//! One module per family of use cases: tickets and their events ([`tickets`]), what is
//! due ([`deadlines`]), explanations and attainment ([`reports`]), the catalogue of
//! organisations, calendars, policies and plans ([`catalog`], [`preview`]), prepaid hours
//! ([`hours`]), packs ([`packs`]), alerts ([`alerts`]), and the background work that keeps
//! clocks current ([`runner`], [`recompute`]). Lists, reports, exports and the due
//! queries read through [`App::reads`] (a read replica within its lag bound, else the
//! primary); everything else, and everything inside a write, reads `store`.

pub mod account_writes;
pub mod alerts;
pub mod answer;
pub mod catalog;
pub mod connections;
pub mod deadlines;
pub mod error;
pub mod fingerprint;
pub mod hours;
pub mod inbox;
pub mod packs;
pub mod page;
pub mod preview;
pub mod quotes;
pub mod recompute;
pub mod replica;
pub mod reports;
pub mod runner;
pub mod settle;
mod state;
pub mod tickets;
pub mod webhooks;

pub use error::{AppError, AppResult, Check};
pub use state::*;
