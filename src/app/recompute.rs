//! Background recomputation: after a calendar or organisation changes, the clocks of every
//! open ticket that counts on it are refolded, so the deadline index follows the change.
//! Progress is stored per resource version; jobs a stopped process left unfinished are
//! picked up again at start.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{App, parse_body};
use crate::domain::names::ResourceId;
use crate::domain::organization::Organization;
use crate::store::{RecomputeJob, ResourceKind, Store};

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Calendar(ResourceId),
    Organization(ResourceId),
}

/// Asks the worker for a recomputation.
#[derive(Debug, Clone)]
pub struct Recompute {
    tx: mpsc::UnboundedSender<Scope>,
}

impl Recompute {
    pub fn request(&self, scope: Scope) {
        // A closed channel means the server is shutting down; the job stays unfinished
        // in the store and the next start resumes it.
        let _ = self.tx.send(scope);
    }
}

/// Tickets refreshed between two progress writes.
const PROGRESS_EVERY: u64 = 100;

/// Starts the worker; it runs until every `Recompute` handle is dropped.
pub fn spawn<S: Store>(app: Arc<App<S>>) -> (Recompute, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Scope>();
    let handle = tokio::spawn(async move {
        match app.store.unfinished_jobs().await {
            Ok(jobs) => {
                for j in jobs {
                    let scope = match j.kind {
                        ResourceKind::Calendar => Scope::Calendar(j.id),
                        _ => Scope::Organization(j.id),
                    };
                    run(&app, scope).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read unfinished recomputations"),
        }
        while let Some(scope) = rx.recv().await {
            run(&app, scope).await;
        }
    });
    (Recompute { tx }, handle)
}

/// Runs a recomputation now, outside the worker (a command-line import).
pub async fn run_now<S: Store>(app: &App<S>, scope: Scope) {
    run(app, scope).await;
}

async fn run<S: Store>(app: &App<S>, scope: Scope) {
    if let Err(e) = try_run(app, &scope).await {
        tracing::warn!(?scope, error = %e, "recomputation failed; it resumes at the next start");
    }
}

/// Organisations whose any version binds `calendar`.
pub(super) async fn organizations_binding<S: Store>(
    app: &App<S>,
    calendar: &ResourceId,
) -> Result<Vec<ResourceId>, crate::store::StoreError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = app
            .store
            .list_resources(ResourceKind::Organization, after.as_deref(), 500, true)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.to_string());
        for v in &page {
            let versions = app
                .store
                .resource_versions(ResourceKind::Organization, &v.id)
                .await?;
            let binds = versions.iter().any(|ov| {
                parse_body::<Organization>(ov)
                    .is_ok_and(|o| o.calendars.iter().any(|b| &b.calendar == calendar))
            });
            if binds {
                out.push(v.id.clone());
            }
        }
        if page.len() < 500 {
            break;
        }
    }
    Ok(out)
}

async fn try_run<S: Store>(app: &App<S>, scope: &Scope) -> Result<(), crate::store::StoreError> {
    let (kind, id, orgs) = match scope {
        Scope::Calendar(id) => (
            ResourceKind::Calendar,
            id,
            organizations_binding(app, id).await?,
        ),
        Scope::Organization(id) => (ResourceKind::Organization, id, vec![id.clone()]),
    };
    let version = app.store.get_resource(kind, id, None).await?.version;
    let mut tickets = Vec::new();
    for org in &orgs {
        tickets.extend(app.store.open_ticket_ids(org).await?);
    }
    let mut job = RecomputeJob {
        kind,
        id: id.clone(),
        version,
        tickets_total: tickets.len() as u64,
        tickets_done: 0,
        started_at: app.now(),
        finished_at: None,
    };
    app.store.start_job(&job).await?;
    for t in &tickets {
        if let Err(e) = app.refresh_ticket(t).await {
            tracing::warn!(ticket = %t, error = %e, "ticket not recomputed");
        }
        job.tickets_done += 1;
        if job.tickets_done.is_multiple_of(PROGRESS_EVERY) {
            app.store.update_job(&job).await?;
        }
    }
    job.finished_at = Some(app.now());
    app.store.update_job(&job).await?;
    tracing::info!(
        ?scope,
        tickets = job.tickets_total,
        "recomputation finished"
    );
    Ok(())
}
