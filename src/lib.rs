//! servicelevel: SLA clocks for support tickets and ledgers of prepaid support hours.
//!
//! The crate is split the way the service is built: [`domain`] is the pure core
//! (calendars, business time, policies, clocks, ledgers) with no I/O at all.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod overload;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod time;
