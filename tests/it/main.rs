//! End-to-end tests: the real server on a free port, real tonic clients, on SQLite and on
//! Postgres (each test in its own database file or schema).

mod auth;
mod cancellation;
mod catalog;
mod clock_sequences;
mod contracts;
mod deadlines;
mod distribution;
mod errors;
mod faults;
mod fixtures;
mod fuzz;
mod group_commit;
mod harness;
mod hours;
mod http;
mod isolation;
mod layers;
mod limits;
mod pack_scenarios;
mod packs;
mod pooler;
mod read_replica;
mod replicas;
mod reports;
mod runner;
mod server;
mod store;
mod telemetry;
mod tickets;
mod tools;
mod upgrade;
mod webhooks_in;
mod webhooks_out;
