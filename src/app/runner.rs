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

/// Tickets claimed and settled per transaction: one commit for all of them.
const BATCH: u32 = 16;
/// Batches settled at once (each claims different tickets).
const CONCURRENCY: usize = 4;

/// Starts the runner. `poll` bounds every sleep: how late a due instant written by
/// another replica can be noticed, and how often a moved test clock is looked at. Each
/// ticket it settles is a `due.run` span (a trace of its own), with a `sla.action` span
/// per action recorded.
pub fn spawn<S: Store>(app: Arc<App<S>>, poll: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(app, poll))
}

async fn run<S: Store>(app: Arc<App<S>>, poll: Duration) {
    loop {
        // A few batches at once, each claiming its own tickets, until nothing is due;
        // first one cheap read (no transaction) to see whether anything is.
        let mut progressed = false;
        match app.store.tickets_changing_before(app.now(), 1).await {
            Ok(due) if !due.is_empty() => {
                let mut running = tokio::task::JoinSet::new();
                for _ in 0..CONCURRENCY {
                    let app = Arc::clone(&app);
                    running.spawn(async move { DUE_RUN.scope((), settle_due(app)).await });
                }
                while let Some(settled) = running.join_next().await {
                    progressed |= settled.unwrap_or(0) > 0;
                }
            }
            Ok(_) => {}
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

/// Settles batches of due tickets until none is left to claim; returns how many tickets
/// it settled. A batch that fails is settled again one ticket at a time.
async fn settle_due<S: Store>(app: Arc<App<S>>) -> usize {
    let mut settled = 0;
    loop {
        match app.run_due_batch(BATCH).await {
            Ok(0) => return settled,
            Ok(n) => settled += n,
            Err((e, claimed)) => {
                tracing::warn!(error = %e, tickets = claimed.len(), "a batch of due actions failed; settling its tickets one at a time");
                let mut any = false;
                for id in claimed {
                    match app.run_due(&id).await {
                        Ok(done) => {
                            any |= done;
                            settled += usize::from(done);
                        }
                        Err(e) => {
                            tracing::warn!(ticket = %id, error = %e, "due actions not recorded; retrying");
                        }
                    }
                }
                // Nothing settled (the database is away, say): leave it to the next round.
                if !any {
                    return settled;
                }
            }
        }
    }
}
