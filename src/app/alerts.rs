//! Live alerts from the outbox, resumable from a cursor: what transports stream to
//! watchers, and what webhooks deliver.

use std::sync::Arc;
use std::time::Duration;

use super::App;
use super::error::{AppError, AppResult};
use crate::domain::ticket::EventKind;
use crate::store::{AlertFilter, AlertRow, Store};

/// Alerts fetched per read of the outbox.
const PAGE: u32 = 500;
/// How often a stream looks at the outbox when nothing in this process woke it: how
/// late alerts written by another replica arrive at most.
const POLL: Duration = Duration::from_millis(200);

/// An alert: its row in the outbox and the event it announces.
#[derive(Debug, Clone)]
pub struct Alert {
    pub row: AlertRow,
    pub event: EventKind,
}

pub(crate) fn alert(row: AlertRow) -> AppResult<Alert> {
    let event: EventKind = serde_json::from_str(&row.body)
        .map_err(|e| AppError::Internal(format!("alert {}: {e}", row.cursor.1)))?;
    Ok(Alert { row, event })
}

impl<S: Store> App<S> {
    /// Alerts after `cursor` (from the start when `None`, or from what is written next
    /// when `from_now`), as they are written, until the receiver goes away.
    pub async fn watch_alerts(
        self: &Arc<Self>,
        filter: AlertFilter,
        cursor: Option<(i64, i64)>,
        from_now: bool,
    ) -> AppResult<tokio::sync::mpsc::Receiver<AppResult<Alert>>> {
        let app = Arc::clone(self);
        let mut cursor = cursor.unwrap_or((i64::MIN, i64::MIN));
        if from_now {
            // Skip to the end of what is readable now.
            loop {
                let page = app
                    .store
                    .alerts_after(cursor, &AlertFilter::default(), PAGE)
                    .await?;
                match page.last() {
                    Some(last) => cursor = last.cursor,
                    None => break,
                }
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<AppResult<Alert>>(256);
        // For the outbox backlog metric; unregistered when the stream ends.
        let position = app.metrics.watcher();
        tokio::spawn(async move {
            loop {
                // Register for the wake-up before reading, so a commit in between is not
                // missed.
                let woken = app.alerts_written.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                let page = match app.store.alerts_after(cursor, &filter, PAGE).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let full = page.len() >= PAGE as usize;
                for row in page {
                    cursor = row.cursor;
                    let id = row.cursor.1;
                    if tx.send(alert(row)).await.is_err() {
                        // The receiver went away.
                        return;
                    }
                    position.delivered(id);
                }
                if !full {
                    position.caught_up();
                    tokio::select! {
                        () = &mut woken => {}
                        () = tokio::time::sleep(POLL) => {}
                        () = tx.closed() => return,
                    }
                }
            }
        });
        Ok(rx)
    }
}
