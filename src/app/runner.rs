//! The due-time runner: acts at the instant a clock reaches a warning, a deadline or a
//! timer's action, by settling the ticket (recording what was reached, stamped with the
//! instant it was reached). It sleeps until the next instant the index says something is
//! due, and wakes early when a write in this process may have brought that forward.
//!
//! Several replicas may run it on one database: each ticket is settled under its row lock
//! (taken with SKIP LOCKED, so replicas share work instead of queueing), and settling reads
//! what is recorded before adding anything, so every action is recorded once. After
//! downtime it catches up, still stamping each action with its due instant.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tracing::Instrument as _;

use super::App;
use crate::store::Store;

tokio::task_local! {
    /// Set while the runner settles a ticket: what it records then counts as a due action
    /// (its lag is measured).
    static DUE_RUN: ();
}

/// Whether the code running is the runner settling a ticket.
pub(super) fn in_due_run() -> bool {
    DUE_RUN.try_with(|()| ()).is_ok()
}

/// Tickets settled per round before looking at the clock again.
const BATCH: u32 = 200;
/// Tickets settled at once.
const CONCURRENCY: usize = 8;

/// Starts the runner. `poll` bounds every sleep: how late a due instant written by
/// another replica can be noticed, and how often a moved test clock is looked at. Each
/// ticket it settles is a `due.run` span (a trace of its own), with a `sla.action` span
/// per action recorded.
pub fn spawn<S: Store>(app: Arc<App<S>>, poll: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(app, poll))
}

async fn run<S: Store>(app: Arc<App<S>>, poll: Duration) {
    loop {
        let now = app.now();
        let mut progressed = false;
        match app.store.tickets_changing_before(now, BATCH).await {
            Ok(ids) => {
                // Tickets are settled a few at a time: each under its own row lock, so
                // they never wait on each other, and a round is no longer one commit
                // after another.
                let mut running = tokio::task::JoinSet::new();
                let mut pending = ids.iter();
                loop {
                    while running.len() < CONCURRENCY {
                        let Some(due) = pending.next() else { break };
                        let id = due.id.clone();
                        let span =
                            tracing::info_span!("due.run", otel.kind = "internal", ticket = %id);
                        // A trace of its own, linked to the call that created the ticket.
                        if let Some(parent) = &due.trace_context {
                            crate::telemetry::link_to(&span, parent);
                        }
                        let app = Arc::clone(&app);
                        running.spawn(async move {
                            match DUE_RUN.scope((), app.run_due(&id)).instrument(span).await {
                                Ok(done) => done,
                                Err(e) => {
                                    tracing::warn!(ticket = %id, error = %e, "due actions not recorded; retrying");
                                    false
                                }
                            }
                        });
                    }
                    match running.join_next().await {
                        Some(done) => progressed |= done.unwrap_or(false),
                        None => break,
                    }
                }
                if progressed && ids.len() == BATCH as usize {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "due-time runner cannot read the index"),
        }
        let wait = match app.store.next_change().await {
            // Just past the instant: a deadline is passed, not reached, at its instant.
            Ok(Some(next)) => (next - app.now() + TimeDelta::milliseconds(1))
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll),
            _ => poll,
        };
        // Work that could not be taken (held by another replica, or failing) must not
        // spin the loop.
        let wait = if progressed || wait > Duration::ZERO {
            wait
        } else {
            poll.min(Duration::from_millis(50))
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = app.alerts_written.notified() => {}
        }
    }
}
