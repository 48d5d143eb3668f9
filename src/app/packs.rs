//! Importing policy packs: one transaction creates or versions a pack's calendars, policy
//! and hour plans. Shared by the `ImportPack` RPC, `servicelevel pack import` and
//! `servicelevel serve --pack`.

use serde::Serialize;

use super::answer::{Answer, Idempotency};
use super::catalog::json;
use super::error::{AppError, AppResult, Violation};
use super::fingerprint::Fingerprint;
use super::{App, parse_body};
use crate::domain::calendar::CalendarSpec;
use crate::domain::hours::plan_name;
use crate::domain::ledger::Plan;
use crate::domain::names::ResourceId;
use crate::domain::pack::{self, Pack};
use crate::domain::pack_import::{self as import, Change};
use crate::domain::policy::Policy;
use crate::store::{ResourceKind, ResourceVersion, Store, StoreError, StoreTx};

/// What an import changed, for the caller to follow up (recompute tickets on calendars
/// that moved).
pub struct Imported<A> {
    pub answer: A,
    pub changed_calendars: Vec<ResourceId>,
}

/// What an import does to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    NewVersion,
    Unchanged,
}

/// One resource a pack defines, and what the import did (or would do) to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedResource {
    pub kind: ResourceKind,
    pub id: ResourceId,
    pub outcome: Outcome,
    /// Its version after the import (or, validating only, the one it would have).
    pub version: u32,
}

/// What an import did to a pack's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackImport {
    pub pack: ResourceId,
    pub title: String,
    pub source: String,
    pub resources: Vec<ImportedResource>,
    pub validate_only: bool,
}

/// What an import request means: the pack's definitions and whether it only validates.
fn fingerprint(pack: &Pack, validate_only: bool) -> Fingerprint {
    #[derive(Serialize)]
    struct Meaning<'a> {
        name: &'a ResourceId,
        title: &'a str,
        calendars: Vec<(&'a crate::domain::names::SlotName, &'a CalendarSpec)>,
        policy: &'a Policy,
        plans: Vec<&'a Plan>,
    }
    Fingerprint::new()
        .with(
            "pack",
            &Meaning {
                name: &pack.name,
                title: &pack.title,
                calendars: pack.calendars.iter().map(|c| (&c.slot, &c.spec)).collect(),
                policy: &pack.policy,
                plans: pack.plans.iter().map(|p| &p.plan).collect(),
            },
        )
        .with("validate_only", &validate_only)
}

impl<S: Store> App<S> {
    /// Imports `pack`; with `validate_only`, reports what an import would do and writes
    /// nothing. `idempotent` is the request's key, if it came with one.
    pub async fn import_pack<A: Answer>(
        &self,
        pack: &Pack,
        idempotent: Option<&Idempotency>,
        validate_only: bool,
        render: &(dyn Fn(&PackImport) -> A + Sync),
    ) -> AppResult<Imported<A>> {
        let fp = fingerprint(pack, validate_only);
        let mut tx = self.store.begin().await?;
        if let Some(id) = idempotent
            && let Some(answer) = self.claim::<A>(&mut tx, id, &fp).await?
        {
            return Ok(Imported {
                answer,
                changed_calendars: Vec::new(),
            });
        }
        let now = self.now();
        let mut resources = Vec::new();
        let mut changed_calendars = Vec::new();
        let mut writes: Vec<(ResourceKind, ResourceId, String, String, bool)> = Vec::new();

        for c in &pack.calendars {
            let id = pack.calendar_id(&c.slot).map_err(|e| invalid(&e))?;
            let stored = stored(&mut tx, ResourceKind::Calendar, &id).await?;
            let spec: Option<CalendarSpec> = stored.as_ref().map(parse_body).transpose()?;
            let change = import::calendar(&c.spec, spec.as_ref()).map_err(|e| {
                AppError::FailedPrecondition(format!(
                    "{}: the pack's hours cannot keep the calendar's holidays and overrides: {e}",
                    ResourceKind::Calendar.name(&id)
                ))
            })?;
            if matches!(change, Change::NewVersion(_)) {
                changed_calendars.push(id.clone());
            }
            let display = format!("{}: {}", pack.title, c.slot);
            plan_write(
                &mut resources,
                &mut writes,
                ResourceKind::Calendar,
                id,
                display,
                stored.as_ref(),
                change,
            )?;
        }

        let policy_id = pack.name.clone();
        let stored_policy = stored(&mut tx, ResourceKind::Policy, &policy_id).await?;
        let policy: Option<Policy> = stored_policy.as_ref().map(parse_body).transpose()?;
        let change = import::replace(&pack.policy, policy.as_ref());
        plan_write(
            &mut resources,
            &mut writes,
            ResourceKind::Policy,
            policy_id,
            pack.title.clone(),
            stored_policy.as_ref(),
            change,
        )?;

        for p in &pack.plans {
            let id = pack.plan_id(&p.plan.name).map_err(|e| invalid(&e))?;
            // Plans made through the API carry their resource id as their name; a pack's
            // do too, so both kinds compare and render alike.
            let plan = Plan {
                name: plan_name(&id).map_err(|e| AppError::Internal(e.to_string()))?,
                buckets: p.plan.buckets.clone(),
            };
            let stored_plan = stored(&mut tx, ResourceKind::Plan, &id).await?;
            let current: Option<Plan> = stored_plan.as_ref().map(parse_body).transpose()?;
            let change = import::replace(&plan, current.as_ref());
            let display = format!("{}: {}", pack.title, p.plan.name);
            plan_write(
                &mut resources,
                &mut writes,
                ResourceKind::Plan,
                id,
                display,
                stored_plan.as_ref(),
                change,
            )?;
        }

        let answer = render(&PackImport {
            pack: pack.name.clone(),
            title: pack.title.clone(),
            source: pack.source.clone(),
            resources,
            validate_only,
        });
        if validate_only {
            return Ok(Imported {
                answer,
                changed_calendars: Vec::new(),
            });
        }
        for (kind, id, display, body, create) in &writes {
            if *create {
                tx.create_resource(*kind, id, display, body, now).await?;
            } else {
                tx.add_version(*kind, id, display, body, now, now).await?;
            }
        }
        match idempotent {
            Some(id) => self.finish(tx, &id.key, &answer).await?,
            None => self.commit(tx).await?,
        }
        Ok(Imported {
            answer,
            changed_calendars,
        })
    }
}

fn invalid(e: &pack::PackError) -> AppError {
    AppError::InvalidArgument(vec![Violation {
        field: "pack".into(),
        description: e.to_string(),
    }])
}

/// The stored latest version, if any; an archived one stops the import.
async fn stored<T: StoreTx>(
    tx: &mut T,
    kind: ResourceKind,
    id: &ResourceId,
) -> AppResult<Option<ResourceVersion>> {
    match tx.get_resource(kind, id, None).await {
        Ok(v) if v.archived => Err(AppError::FailedPrecondition(format!(
            "{} is archived; archived resources do not change",
            kind.name(id)
        ))),
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn plan_write<T: serde::Serialize>(
    resources: &mut Vec<ImportedResource>,
    writes: &mut Vec<(ResourceKind, ResourceId, String, String, bool)>,
    kind: ResourceKind,
    id: ResourceId,
    display: String,
    stored: Option<&ResourceVersion>,
    change: Change<T>,
) -> AppResult<()> {
    let current = stored.map_or(0, |v| v.version);
    let (outcome, version) = match change {
        Change::Unchanged => (Outcome::Unchanged, current),
        Change::Create(body) => {
            writes.push((kind, id.clone(), display, json(&body)?, true));
            (Outcome::Created, 1)
        }
        Change::NewVersion(body) => {
            writes.push((kind, id.clone(), display, json(&body)?, false));
            (Outcome::NewVersion, current + 1)
        }
    };
    resources.push(ImportedResource {
        kind,
        id,
        outcome,
        version,
    });
    Ok(())
}

/// A pack named on the command line: a built-in name, or else the path of a pack file.
pub fn load(source: &str) -> Result<Pack, String> {
    let text = match pack::embedded(source) {
        Some(text) => text.to_string(),
        None => std::fs::read_to_string(source).map_err(|e| {
            let known: Vec<&str> = pack::EMBEDDED.iter().map(|(n, _)| *n).collect();
            format!(
                "{source:?} is neither a built-in pack ({}) nor a readable file: {e}",
                known.join(", ")
            )
        })?,
    };
    pack::parse(&text).map_err(|e| format!("{source}: {e}"))
}

/// Imports a pack outside any RPC (at start, or from the command line) and refolds the
/// open tickets of calendars it changed before returning. Two replicas starting with the
/// same pack may race to create it; the loser finds it created and imports again.
pub async fn import_now<S: Store>(
    app: &App<S>,
    pack: &Pack,
    validate_only: bool,
) -> Result<PackImport, String> {
    let mut attempt = 0;
    let imported = loop {
        match app
            .import_pack(pack, None, validate_only, &|i: &PackImport| {
                Plain(i.clone())
            })
            .await
        {
            Ok(imported) => break imported,
            Err(AppError::AlreadyExists(_) | AppError::Unavailable(_)) if attempt < 3 => {
                attempt += 1
            }
            Err(e) => return Err(format!("importing pack {}: {e}", pack.name)),
        }
    };
    for calendar in imported.changed_calendars {
        super::recompute::run_now(app, super::recompute::Scope::Calendar(calendar)).await;
    }
    Ok(imported.answer.0)
}

/// An import's answer where nothing stores it (no request id: at start, from the command
/// line).
struct Plain(PackImport);

impl Answer for Plain {
    fn to_bytes(&self) -> Vec<u8> {
        Vec::new()
    }

    fn from_bytes(_: &[u8]) -> Result<Self, String> {
        Err("an import without a request id stores no answer".into())
    }
}

/// One line per resource, for logs and the command line.
pub fn describe(import: &PackImport) -> Vec<String> {
    import
        .resources
        .iter()
        .map(|r| {
            let outcome = match r.outcome {
                Outcome::Created => "created",
                Outcome::NewVersion => "new version",
                Outcome::Unchanged => "unchanged",
            };
            format!("{} v{}: {outcome}", r.kind.name(&r.id), r.version)
        })
        .collect()
}
