//! End-to-end tests: the real server on a free port, real tonic clients, on SQLite and on
//! Postgres (each test in its own database file or schema).

mod catalog;
mod contracts;
mod deadlines;
mod fixtures;
mod harness;
mod hours;
mod packs;
mod replicas;
mod runner;
mod server;
mod tickets;
