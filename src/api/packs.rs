//! Importing policy packs: one transaction creates or versions a pack's calendars, policy
//! and hour plans. Shared by the `ImportPack` RPC, `servicelevel pack import` and
//! `servicelevel serve --pack`.

use tonic::{Request, Response, Status};

use super::app::{App, parse_body};
use super::catalog::{Idempotent, json, key};
use super::convert::{self as cv};
use super::error::{ApiError, ApiResult, Check, Violation};
use super::fingerprint::Fingerprint;
use super::pb;
use super::{Api, client_of};
use crate::domain::calendar::CalendarSpec;
use crate::domain::hours::plan_name;
use crate::domain::ledger::Plan;
use crate::domain::names::ResourceId;
use crate::domain::pack::{self, Pack};
use crate::domain::pack_import::{self as import, Change};
use crate::domain::policy::Policy;
use crate::store::{ResourceKind, ResourceVersion, Store, StoreError, StoreTx};

/// Largest pack text accepted.
const MAX_PACK_BYTES: usize = 256 * 1024;

/// What an import changed, for the caller to follow up (recompute tickets on calendars
/// that moved).
pub struct Imported {
    pub answer: pb::ImportPackResponse,
    pub changed_calendars: Vec<ResourceId>,
}

impl<S: Store> App<S> {
    /// Imports `pack`; with `validate_only`, reports what an import would do and writes
    /// nothing. `idempotent` is the request's key, if it came with one.
    pub async fn import_pack(
        &self,
        pack: &Pack,
        idempotent: Option<Idempotent>,
        validate_only: bool,
    ) -> ApiResult<Imported> {
        let mut tx = self.store.begin().await?;
        if let Some((key, fingerprint)) = &idempotent
            && let Some(answer) = self
                .claim::<pb::ImportPackResponse>(&mut tx, key, fingerprint)
                .await?
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
                ApiError::FailedPrecondition(format!(
                    "{}: the pack's hours cannot keep the calendar's holidays and overrides: {e}",
                    cv::name_of(ResourceKind::Calendar, &id)
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
                name: plan_name(&id).map_err(|e| ApiError::Internal(e.to_string()))?,
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

        let answer = pb::ImportPackResponse {
            pack: pack.name.to_string(),
            title: pack.title.clone(),
            source: pack.source.clone(),
            resources,
            validate_only,
        };
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
        match &idempotent {
            Some((key, _)) => self.finish(tx, key, &answer).await?,
            None => tx.commit().await?,
        }
        Ok(Imported {
            answer,
            changed_calendars,
        })
    }
}

fn invalid(e: &pack::PackError) -> ApiError {
    ApiError::InvalidArgument(vec![Violation {
        field: "pack".into(),
        description: e.to_string(),
    }])
}

/// The stored latest version, if any; an archived one stops the import.
async fn stored<T: StoreTx>(
    tx: &mut T,
    kind: ResourceKind,
    id: &ResourceId,
) -> ApiResult<Option<ResourceVersion>> {
    match tx.get_resource(kind, id, None).await {
        Ok(v) if v.archived => Err(ApiError::FailedPrecondition(format!(
            "{} is archived; archived resources do not change",
            cv::name_of(kind, id)
        ))),
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn plan_write<T: serde::Serialize>(
    resources: &mut Vec<pb::ImportedResource>,
    writes: &mut Vec<(ResourceKind, ResourceId, String, String, bool)>,
    kind: ResourceKind,
    id: ResourceId,
    display: String,
    stored: Option<&ResourceVersion>,
    change: Change<T>,
) -> ApiResult<()> {
    let current = stored.map_or(0, |v| v.version);
    let (outcome, version) = match change {
        Change::Unchanged => (pb::ImportOutcome::Unchanged, current),
        Change::Create(body) => {
            writes.push((kind, id.clone(), display, json(&body)?, true));
            (pb::ImportOutcome::Created, 1)
        }
        Change::NewVersion(body) => {
            writes.push((kind, id.clone(), display, json(&body)?, false));
            (pb::ImportOutcome::NewVersion, current + 1)
        }
    };
    resources.push(pb::ImportedResource {
        name: cv::name_of(kind, &id),
        outcome: outcome as i32,
        version: version as i32,
    });
    Ok(())
}

/// Parses a pack from an embedded name or TOML text, naming the request field at fault.
pub fn parse_source(
    c: &mut Check,
    source: Option<&pb::import_pack_request::Source>,
) -> Option<Pack> {
    use pb::import_pack_request::Source;
    match source {
        None => {
            c.fail("source", "is required: set embedded_pack or pack_toml");
            None
        }
        Some(Source::EmbeddedPack(name)) => match pack::embedded(name) {
            None => {
                let known: Vec<&str> = pack::EMBEDDED.iter().map(|(n, _)| *n).collect();
                c.fail(
                    "embedded_pack",
                    format!("no pack {name:?} is built in; known: {}", known.join(", ")),
                );
                None
            }
            Some(text) => c.ok("embedded_pack", pack::parse(text)),
        },
        Some(Source::PackToml(text)) if text.len() > MAX_PACK_BYTES => {
            c.fail(
                "pack_toml",
                format!("is longer than {MAX_PACK_BYTES} bytes"),
            );
            None
        }
        Some(Source::PackToml(text)) => c.ok("pack_toml", pack::parse(text)),
    }
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
) -> Result<pb::ImportPackResponse, String> {
    let mut attempt = 0;
    let imported = loop {
        match app.import_pack(pack, None, validate_only).await {
            Ok(imported) => break imported,
            Err(ApiError::AlreadyExists(_) | ApiError::Unavailable(_)) if attempt < 3 => {
                attempt += 1
            }
            Err(e) => return Err(format!("importing pack {}: {e}", pack.name)),
        }
    };
    for calendar in imported.changed_calendars {
        super::recompute::run_now(app, super::recompute::Scope::Calendar(calendar)).await;
    }
    Ok(imported.answer)
}

/// One line per resource, for logs and the command line.
pub fn describe(answer: &pb::ImportPackResponse) -> Vec<String> {
    answer
        .resources
        .iter()
        .map(|r| {
            let outcome = match pb::ImportOutcome::try_from(r.outcome) {
                Ok(pb::ImportOutcome::Created) => "created",
                Ok(pb::ImportOutcome::NewVersion) => "new version",
                Ok(pb::ImportOutcome::Unchanged) => "unchanged",
                _ => "?",
            };
            format!("{} v{}: {outcome}", r.name, r.version)
        })
        .collect()
}

#[tonic::async_trait]
impl<S: Store> pb::pack_service_server::PackService for Api<S> {
    async fn import_pack(
        &self,
        req: Request<pb::ImportPackRequest>,
    ) -> Result<Response<pb::ImportPackResponse>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let pack = parse_source(&mut c, r.source.as_ref());
        let rid = if r.validate_only && r.request_id.is_empty() {
            Some(None)
        } else {
            cv::request_id(&mut c, "request_id", &r.request_id).map(Some)
        };
        let parsed = c.finish(pack.zip(rid));
        let result: ApiResult<pb::ImportPackResponse> = async {
            let (pack, rid) = parsed?;
            let idempotent = rid.filter(|_| !r.validate_only).map(|rid| {
                let fp = Fingerprint::new()
                    .with("source", &r.source)
                    .with("validate_only", &r.validate_only);
                (key(&client, "ImportPack", rid), fp)
            });
            let imported = self
                .app
                .import_pack(&pack, idempotent, r.validate_only)
                .await?;
            for calendar in &imported.changed_calendars {
                self.recompute
                    .request(super::recompute::Scope::Calendar(calendar.clone()));
            }
            Ok(imported.answer)
        }
        .await;
        result.map(Response::new).map_err(Status::from)
    }
}
