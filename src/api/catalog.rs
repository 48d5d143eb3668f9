//! The gRPC transport of the catalogue: calendars, organisations and policies, versioned
//! resources with one shared lifecycle (`app::catalog`). This file holds what their
//! services share; each service is in its own file.

use std::fmt::Debug;

use super::Api;
use super::convert::{self as cv};
use super::error::{AppResult, Check};
use super::pb;
use crate::app::catalog::{OrganizationField, OrganizationUpdate};
use crate::app::fingerprint::Fingerprint;
use crate::domain::names::ResourceId;
use crate::store::{IdempotencyKey, ResourceKind, ResourceVersion, Store};

/// Renders a stored version as the proto resource.
pub(super) type Render<M> = fn(&ResourceVersion) -> AppResult<M>;

/// A request's first-release fingerprint (see `tickets::legacy`).
pub(super) fn legacy_of(fields: &[(&str, &dyn Debug)]) -> Option<Fingerprint> {
    super::tickets::legacy(fields)
}

pub(super) fn key(client: &str, method: &'static str, request_id: String) -> IdempotencyKey {
    IdempotencyKey {
        client: client.to_string(),
        method,
        request_id,
    }
}

pub(super) fn new_id(c: &mut Check, field: &str, id: &str) -> Option<ResourceId> {
    c.ok(field, ResourceId::parse(id))
}

const ORGANIZATION_FIELDS: [(&str, OrganizationField); 7] = [
    ("display_name", OrganizationField::DisplayName),
    ("time_zone", OrganizationField::TimeZone),
    ("plan", OrganizationField::Plan),
    ("policy", OrganizationField::Policy),
    ("calendars", OrganizationField::Calendars),
    ("external_ids", OrganizationField::ExternalIds),
    ("contacts", OrganizationField::Contacts),
];

/// Output-only fields: ignored in a mask (AIP-203).
const ORGANIZATION_OUTPUT_ONLY: [&str; 5] = [
    "name",
    "version",
    "archived",
    "create_time",
    "recomputation",
];

/// An update mask: `None` for a whole replacement (no mask, an empty one, or `*`), else
/// the fields to change.
/// A secret in a request's fingerprint: its hash (a fingerprint is stored; a secret
/// never is, outside its own table).
pub(super) fn secret_hash(s: &str) -> String {
    use sha2::{Digest as _, Sha256};
    crate::domain::connection::signatures::hex(&Sha256::digest(s.as_bytes()))
}

/// An update mask (AIP-134) of a resource whose changeable fields are `fields`: `None`
/// for all of them (no mask, or `*`); paths may carry the resource's `prefix`; output-only
/// and fixed fields (`ignored`) are left out; any other path is refused.
pub(super) fn field_mask(
    c: &mut Check,
    m: Option<&prost_types::FieldMask>,
    prefix: &str,
    fields: &[&str],
    ignored: &[&str],
) -> Option<Option<Vec<String>>> {
    let paths = m.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() || paths.iter().any(|p| p == "*") {
        if paths.len() > 1 {
            c.fail(
                "update_mask",
                "`*` stands alone: it already names every field",
            );
            return None;
        }
        return Some(None);
    }
    let mut out = Vec::new();
    for p in paths {
        let p = p.strip_prefix(prefix).unwrap_or(p);
        if fields.contains(&p) {
            if !out.iter().any(|f: &String| f == p) {
                out.push(p.to_string());
            }
        } else if !ignored.contains(&p) {
            c.fail(
                "update_mask",
                format!(
                    "`{p}` is not a field an update can change; use {} or `*`",
                    fields.join(", ")
                ),
            );
            return None;
        }
    }
    Some(Some(out))
}

pub(super) fn organization_mask(
    c: &mut Check,
    field: &str,
    mask: Option<&prost_types::FieldMask>,
) -> Option<Option<Vec<OrganizationField>>> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() || paths.iter().any(|p| p == "*") {
        if paths.len() > 1 {
            c.fail(field, "`*` stands alone: it already names every field");
            return None;
        }
        return Some(None);
    }
    let mut fields = Vec::new();
    let mut ok = true;
    for path in paths {
        let path = path.strip_prefix("organization.").unwrap_or(path);
        if let Some((_, f)) = ORGANIZATION_FIELDS.iter().find(|(n, _)| *n == path) {
            if !fields.contains(f) {
                fields.push(*f);
            }
        } else if !ORGANIZATION_OUTPUT_ONLY.contains(&path) {
            let known: Vec<&str> = ORGANIZATION_FIELDS.iter().map(|(n, _)| *n).collect();
            c.fail(
                field,
                format!(
                    "`{path}` is not a field an update can change; use {} or `*`",
                    known.join(", ")
                ),
            );
            ok = false;
        }
    }
    ok.then_some(Some(fields))
}

/// An organisation update's mask and what it sets: the whole definition (no mask, or
/// `*`), or the masked fields of the request's organisation. `prefix` is where the
/// update sits in the request (`update.` in a preview).
pub(super) fn organization_update(
    c: &mut Check,
    prefix: &str,
    r: &pb::UpdateOrganizationRequest,
) -> (Option<Vec<OrganizationField>>, Option<OrganizationUpdate>) {
    let field = format!("{prefix}organization");
    match organization_mask(c, &format!("{prefix}update_mask"), r.update_mask.as_ref()) {
        None => (None, None),
        Some(None) => (
            Some(OrganizationField::ALL.to_vec()),
            cv::organization(c, &field, r.organization.as_ref()).map(OrganizationUpdate::Whole),
        ),
        Some(Some(fields)) => {
            let o = r.organization.clone().unwrap_or_default();
            let before = c.count();
            let patch = cv::organization_patch(c, &field, &o, &fields);
            let ok = c.count() == before;
            (Some(fields), ok.then_some(OrganizationUpdate::Patch(patch)))
        }
    }
}

impl<S: Store> Api<S> {
    pub(super) async fn get<M>(
        &self,
        kind: ResourceKind,
        name: &str,
        version: i32,
        render: Render<M>,
    ) -> AppResult<M> {
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", name, kind);
        let version = match version {
            0 => Some(None),
            v if v > 0 => Some(Some(v as u32)),
            _ => {
                c.fail("version", "must not be negative");
                None
            }
        };
        let (id, version) = c.finish(id.zip(version))?;
        render(&self.app.resource(kind, &id, version).await?)
    }

    /// A page of a kind's resources, rendered.
    pub(super) async fn list<M>(
        &self,
        kind: ResourceKind,
        page_size: i32,
        page_token: &str,
        show_archived: bool,
        render: Render<M>,
    ) -> AppResult<(Vec<M>, String)> {
        let mut c = Check::new();
        let size = cv::page_size(&mut c, "page_size", page_size);
        let size = c.finish(size)?;
        let (rows, next) = self.app.list(kind, size, page_token, show_archived).await?;
        let items = rows.iter().map(render).collect::<AppResult<_>>()?;
        Ok((items, next))
    }

    /// The recomputation a resource version caused, if any.
    pub(super) async fn recomputation(
        &self,
        kind: ResourceKind,
        name: &str,
        version: i32,
    ) -> AppResult<Option<pb::Recomputation>> {
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", name, kind);
        let id = c.finish(id)?;
        let job = self
            .app
            .recomputation(kind, &id, version.max(0) as u32)
            .await?;
        Ok(job.map(|j| pb::Recomputation {
            tickets_total: j.tickets_total as i64,
            tickets_done: j.tickets_done as i64,
            start_time: Some(cv::timestamp(j.started_at)),
            finish_time: cv::opt_timestamp(j.finished_at),
        }))
    }

    /// Recomputes, in the background, the clocks of every open ticket whose organisation
    /// binds this calendar: a new version moves their deadlines from its effective time.
    pub(super) fn recompute_calendar_users(&self, calendar: &ResourceId) {
        self.recompute
            .request(crate::app::recompute::Scope::Calendar(calendar.clone()));
    }

    pub(super) fn recompute_organization(&self, organization: &ResourceId) {
        self.recompute
            .request(crate::app::recompute::Scope::Organization(
                organization.clone(),
            ));
    }
}
