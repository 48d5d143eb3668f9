//! Organisations, calendars and policies: versioned resources with one shared lifecycle
//! (create, get, list, update as a new version, archive).

use chrono::{DateTime, Utc};
use prost::Message;
use tonic::{Request, Response, Status};

use super::app::{App, parse_body};
use super::convert::{self as cv};
use super::error::{ApiError, ApiResult, Check};
use super::fingerprint::Fingerprint;
use super::page;
use super::pb;
use super::{Api, client_of};
use crate::domain::calendar::CalendarSpec;
use crate::domain::ics::holidays_from_ics;
use crate::domain::names::ResourceId;
use crate::domain::organization::Organization;
use crate::domain::policy::Policy;
use crate::store::{IdempotencyKey, ResourceKind, ResourceVersion, Store, StoreTx};

/// Largest iCalendar text accepted.
const MAX_ICS_BYTES: usize = 1 << 20;

pub(super) type Render<M> = fn(&ResourceVersion) -> ApiResult<M>;

/// A mutation's idempotency key and what the request was.
pub(super) type Idempotent = (IdempotencyKey, Fingerprint);

/// ABORTED unless `current` is at the version the caller expects (when it expects one).
pub(super) fn at_version(current: &ResourceVersion, expected: Option<u32>) -> ApiResult<()> {
    match expected {
        Some(v) if v != current.version => Err(ApiError::Aborted(format!(
            "{} is at version {}, not the expected {v}: read it again and reapply the change",
            cv::name_of(current.kind, &current.id),
            current.version
        ))),
        _ => Ok(()),
    }
}

impl<S: Store> App<S> {
    pub(super) async fn create_resource<M: Message + Default>(
        &self,
        (key, fingerprint): Idempotent,
        kind: ResourceKind,
        id: &ResourceId,
        display_name: &str,
        body: String,
        render: Render<M>,
    ) -> ApiResult<M> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, &key, &fingerprint).await? {
            return Ok(answer);
        }
        let v = tx
            .create_resource(kind, id, display_name, &body, self.now())
            .await?;
        let answer = render(&v)?;
        self.finish(tx, &key, &answer).await?;
        Ok(answer)
    }

    pub(super) async fn update_resource<M: Message + Default>(
        &self,
        (key, fingerprint): Idempotent,
        (kind, id): (ResourceKind, &ResourceId),
        display_name: Option<&str>,
        body: impl FnOnce(&ResourceVersion) -> ApiResult<String>,
        effective: Option<DateTime<Utc>>,
        render: Render<M>,
    ) -> ApiResult<M> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, &key, &fingerprint).await? {
            return Ok(answer);
        }
        let current = tx.get_resource(kind, id, None).await?;
        if current.archived {
            return Err(ApiError::FailedPrecondition(format!(
                "{} is archived; archived resources do not change",
                cv::name_of(kind, id)
            )));
        }
        let body = body(&current)?;
        let now = self.now();
        let name = display_name
            .filter(|n| !n.is_empty())
            .unwrap_or(&current.display_name);
        let v = tx
            .add_version(
                kind,
                id,
                name,
                &body,
                effective.unwrap_or(now).max(now),
                now,
            )
            .await?;
        let answer = render(&v)?;
        self.finish(tx, &key, &answer).await?;
        Ok(answer)
    }

    /// A masked organisation update: the listed fields of `patch` over the current
    /// version. The merge is checked (references too) outside the write transaction, so
    /// the write is pinned to the version merged on; if another writer got in between,
    /// the merge is redone on the newer version (unless the caller pinned one: then the
    /// conflict is the caller's to resolve).
    async fn merge_organization(
        &self,
        (key, fingerprint): Idempotent,
        id: &ResourceId,
        patch: &pb::Organization,
        fields: &[OrganizationField],
        expected: Option<u32>,
    ) -> ApiResult<pb::Organization> {
        const ATTEMPTS: usize = 5;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self
                .store
                .get_resource(ResourceKind::Organization, id, None)
                .await?;
            let merged = apply_organization_mask(cv::organization_to_pb(&current)?, patch, fields);
            let mut c = Check::new();
            let org = cv::organization(&mut c, "organization", Some(&merged));
            let org = c.finish(org)?;
            self.check_references(&org, "organization").await?;
            let body = json(&org)?;
            let result = self
                .update_resource(
                    (key.clone(), fingerprint.clone()),
                    (ResourceKind::Organization, id),
                    Some(org.display_name.as_str()),
                    |now| {
                        // Checked after the idempotency claim, so a retry of a request
                        // that went through gets its answer, not a conflict.
                        at_version(now, expected)?;
                        at_version(now, Some(current.version))?;
                        Ok(body)
                    },
                    None,
                    cv::organization_to_pb,
                )
                .await;
            match result {
                Err(ApiError::Aborted(_)) if expected.is_none() && attempt < ATTEMPTS => continue,
                other => return other,
            }
        }
    }

    async fn archive<M: Message + Default>(
        &self,
        (key, fingerprint): Idempotent,
        kind: ResourceKind,
        id: &ResourceId,
        render: Render<M>,
    ) -> ApiResult<M> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, &key, &fingerprint).await? {
            return Ok(answer);
        }
        let v = tx.archive_resource(kind, id).await?;
        let answer = render(&v)?;
        self.finish(tx, &key, &answer).await?;
        Ok(answer)
    }

    pub(super) async fn list<M>(
        &self,
        kind: ResourceKind,
        page_size: i32,
        page_token: &str,
        show_archived: bool,
        render: Render<M>,
    ) -> ApiResult<(Vec<M>, String)> {
        let mut c = Check::new();
        let size = cv::page_size(&mut c, "page_size", page_size);
        let size = c.finish(size)?;
        let query = format!("{}:{show_archived}", kind.as_str());
        let after: Option<String> = page::decode(&query, page_token)?;
        let rows = self
            .store
            .list_resources(kind, after.as_deref(), size + 1, show_archived)
            .await?;
        let more = rows.len() > size as usize;
        let items: Vec<M> = rows
            .iter()
            .take(size as usize)
            .map(render)
            .collect::<ApiResult<_>>()?;
        let next = if more {
            rows.get(size as usize - 1)
                .map(|v| page::encode(&query, &v.id.to_string()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((items, next))
    }

    /// A referenced resource must exist and not be archived.
    pub(super) async fn require_live(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        field: &str,
    ) -> ApiResult<ResourceVersion> {
        match self.store.get_resource(kind, id, None).await {
            Ok(v) if v.archived => Err(ApiError::FailedPrecondition(format!(
                "{field}: {} is archived",
                cv::name_of(kind, id)
            ))),
            Ok(v) => Ok(v),
            Err(crate::store::StoreError::NotFound(_)) => Err(ApiError::FailedPrecondition(
                format!("{field}: {} does not exist", cv::name_of(kind, id)),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// An organisation's references: its policy and calendars exist, and every calendar
    /// slot the policy counts on is bound.
    async fn check_references(&self, org: &Organization, field: &str) -> ApiResult<()> {
        let policy = self
            .require_live(
                ResourceKind::Policy,
                &org.policy,
                &format!("{field}.policy"),
            )
            .await?;
        for (i, b) in org.calendars.iter().enumerate() {
            let calendar = self
                .require_live(
                    ResourceKind::Calendar,
                    &b.calendar,
                    &format!("{field}.calendars[{i}].calendar"),
                )
                .await?;
            let base: CalendarSpec = parse_body(&calendar)?;
            b.adapt(&base)
                .map_err(|e| ApiError::invalid(format!("{field}.calendars[{i}]"), e.to_string()))?;
        }
        let policy: Policy = parse_body(&policy)?;
        let missing: Vec<String> = policy
            .calendar_slots()
            .into_iter()
            .filter(|s| org.binding(s).is_none())
            .map(|s| s.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "{field}.calendars: the policy counts on calendar slots the organisation does not bind: {}",
                missing.join(", ")
            )));
        }
        Ok(())
    }
}

pub(super) fn key(client: &str, method: &'static str, request_id: String) -> IdempotencyKey {
    IdempotencyKey {
        client: client.to_string(),
        method,
        request_id,
    }
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> ApiResult<String> {
    serde_json::to_string(v).map_err(|e| ApiError::Internal(e.to_string()))
}

fn new_id(c: &mut Check, field: &str, id: &str) -> Option<ResourceId> {
    c.ok(field, ResourceId::parse(id))
}

fn respond<M>(r: ApiResult<M>) -> Result<Response<M>, Status> {
    r.map(Response::new).map_err(Status::from)
}

/// The organisation fields an update mask may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrganizationField {
    DisplayName,
    TimeZone,
    Plan,
    Policy,
    Calendars,
    ExternalIds,
    Contacts,
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
fn organization_mask(
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

/// `base` with the masked fields taken from `patch`.
fn apply_organization_mask(
    mut base: pb::Organization,
    patch: &pb::Organization,
    fields: &[OrganizationField],
) -> pb::Organization {
    for f in fields {
        match f {
            OrganizationField::DisplayName => base.display_name.clone_from(&patch.display_name),
            OrganizationField::TimeZone => base.time_zone.clone_from(&patch.time_zone),
            OrganizationField::Plan => base.plan.clone_from(&patch.plan),
            OrganizationField::Policy => base.policy.clone_from(&patch.policy),
            OrganizationField::Calendars => base.calendars.clone_from(&patch.calendars),
            OrganizationField::ExternalIds => base.external_ids.clone_from(&patch.external_ids),
            OrganizationField::Contacts => base.contacts.clone_from(&patch.contacts),
        }
    }
    base
}

#[tonic::async_trait]
impl<S: Store> pb::calendar_service_server::CalendarService for Api<S> {
    async fn create_calendar(
        &self,
        req: Request<pb::CreateCalendarRequest>,
    ) -> Result<Response<pb::Calendar>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("calendar", &r.calendar_id);
        let mut c = Check::new();
        let id = new_id(&mut c, "calendar_id", &r.calendar_id);
        let cal = r.calendar.as_ref();
        let display = cv::display_name(
            &mut c,
            "calendar.display_name",
            cal.map(|c| c.display_name.as_str()).unwrap_or(""),
        );
        let spec = cv::calendar_definition(
            &mut c,
            "calendar.definition",
            cal.and_then(|c| c.definition.as_ref()),
        );
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(display).zip(spec).zip(rid));
        respond(
            async {
                let (((id, display), spec), rid) = parsed?;
                let fp = Fingerprint::new()
                    .with("calendar_id", &r.calendar_id)
                    .with("calendar", &r.calendar);
                self.app
                    .create_resource(
                        (key(&client, "CreateCalendar", rid), fp),
                        ResourceKind::Calendar,
                        &id,
                        display.as_str(),
                        json(&spec)?,
                        cv::calendar_to_pb,
                    )
                    .await
            }
            .await,
        )
    }

    async fn get_calendar(
        &self,
        req: Request<pb::GetCalendarRequest>,
    ) -> Result<Response<pb::Calendar>, Status> {
        let r = req.into_inner();
        respond(
            async {
                let mut cal = self
                    .get(
                        ResourceKind::Calendar,
                        &r.name,
                        r.version,
                        cv::calendar_to_pb,
                    )
                    .await?;
                cal.recomputation = self
                    .recomputation(ResourceKind::Calendar, &cal.name, cal.version)
                    .await?;
                Ok(cal)
            }
            .await,
        )
    }

    async fn list_calendars(
        &self,
        req: Request<pb::ListCalendarsRequest>,
    ) -> Result<Response<pb::ListCalendarsResponse>, Status> {
        let r = req.into_inner();
        respond(
            self.app
                .list(
                    ResourceKind::Calendar,
                    r.page_size,
                    &r.page_token,
                    r.show_archived,
                    cv::calendar_to_pb,
                )
                .await
                .map(|(calendars, next_page_token)| pb::ListCalendarsResponse {
                    calendars,
                    next_page_token,
                }),
        )
    }

    async fn update_calendar(
        &self,
        req: Request<pb::UpdateCalendarRequest>,
    ) -> Result<Response<pb::Calendar>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("calendar", &r.name);
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Calendar);
        let spec = cv::calendar_definition(&mut c, "definition", r.definition.as_ref());
        let effective = cv::optional_instant(&mut c, "effective_time", r.effective_time.as_ref());
        if !r.display_name.is_empty() {
            cv::display_name(&mut c, "display_name", &r.display_name);
        }
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let expected = cv::expected_version(&mut c, "expected_version", r.expected_version);
        let parsed = c.finish(id.zip(spec).zip(effective).zip(rid).zip(expected));
        let result = async {
            let ((((id, spec), effective), rid), expected) = parsed?;
            let fp = Fingerprint::new()
                .with("name", &r.name)
                .with("display_name", &r.display_name)
                .with("definition", &r.definition)
                .with("effective_time", &r.effective_time)
                .with("expected_version", &r.expected_version);
            let body = json(&spec)?;
            let answer = self
                .app
                .update_resource(
                    (key(&client, "UpdateCalendar", rid), fp),
                    (ResourceKind::Calendar, &id),
                    Some(&r.display_name),
                    |current| {
                        at_version(current, expected)?;
                        Ok(body)
                    },
                    effective,
                    cv::calendar_to_pb,
                )
                .await?;
            self.recompute_calendar_users(&id);
            Ok(answer)
        }
        .await;
        respond(result)
    }

    async fn preview_calendar_update(
        &self,
        req: Request<pb::PreviewCalendarUpdateRequest>,
    ) -> Result<Response<pb::ChangePreview>, Status> {
        let r = req.into_inner().update.unwrap_or_default();
        super::note("calendar", &r.name);
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "update.name", &r.name, ResourceKind::Calendar);
        let spec = cv::calendar_definition(&mut c, "update.definition", r.definition.as_ref());
        let effective =
            cv::optional_instant(&mut c, "update.effective_time", r.effective_time.as_ref());
        let parsed = c.finish(id.zip(spec).zip(effective));
        respond(
            async {
                let ((id, spec), effective) = parsed?;
                self.app.preview_calendar(&id, spec, effective).await
            }
            .await,
        )
    }

    async fn archive_calendar(
        &self,
        req: Request<pb::ArchiveCalendarRequest>,
    ) -> Result<Response<pb::Calendar>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Calendar);
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(rid));
        respond(
            async {
                let (id, rid) = parsed?;
                let fp = Fingerprint::new().with("name", &r.name);
                self.app
                    .archive(
                        (key(&client, "ArchiveCalendar", rid), fp),
                        ResourceKind::Calendar,
                        &id,
                        cv::calendar_to_pb,
                    )
                    .await
            }
            .await,
        )
    }

    async fn import_calendar_holidays(
        &self,
        req: Request<pb::ImportCalendarHolidaysRequest>,
    ) -> Result<Response<pb::Calendar>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("calendar", &r.name);
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Calendar);
        let from = cv::plain_date(&mut c, "from_date", &r.from_date);
        let to = cv::plain_date(&mut c, "to_date", &r.to_date);
        if let (Some(f), Some(t)) = (from, to)
            && t < f
        {
            c.fail("to_date", "must not be before from_date");
        }
        if r.ics.len() > MAX_ICS_BYTES {
            c.fail("ics", format!("is larger than {MAX_ICS_BYTES} bytes"));
        }
        let holidays = match (from, to) {
            (Some(f), Some(t)) if c.is_clean() => c.ok("ics", holidays_from_ics(&r.ics, f, t)),
            _ => None,
        };
        let effective = cv::optional_instant(&mut c, "effective_time", r.effective_time.as_ref());
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(holidays).zip(effective).zip(rid));
        let result = async {
            let (((id, holidays), effective), rid) = parsed?;
            let fp = Fingerprint::new()
                .with("name", &r.name)
                .with("ics", &r.ics)
                .with("from_date", &r.from_date)
                .with("to_date", &r.to_date)
                .with("effective_time", &r.effective_time);
            let dates: Vec<chrono::NaiveDate> = holidays.iter().map(|h| h.date).collect();
            let answer = self
                .app
                .update_resource(
                    (key(&client, "ImportCalendarHolidays", rid), fp),
                    (ResourceKind::Calendar, &id),
                    None,
                    |current| {
                        let base: CalendarSpec = parse_body(current)?;
                        let spec = base
                            .customised(None, None, &dates, &Default::default())
                            .map_err(|e| ApiError::invalid("ics", e.to_string()))?;
                        json(&spec)
                    },
                    effective,
                    cv::calendar_to_pb,
                )
                .await?;
            self.recompute_calendar_users(&id);
            Ok(answer)
        }
        .await;
        respond(result)
    }
}

#[tonic::async_trait]
impl<S: Store> pb::organization_service_server::OrganizationService for Api<S> {
    async fn create_organization(
        &self,
        req: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization_id)?;
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("organization", &r.organization_id);
        let mut c = Check::new();
        let id = new_id(&mut c, "organization_id", &r.organization_id);
        let org = cv::organization(&mut c, "organization", r.organization.as_ref());
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(org).zip(rid));
        respond(
            async {
                let ((id, org), rid) = parsed?;
                self.app.check_references(&org, "organization").await?;
                let fp = Fingerprint::new()
                    .with("organization_id", &r.organization_id)
                    .with("organization", &r.organization);
                self.app
                    .create_resource(
                        (key(&client, "CreateOrganization", rid), fp),
                        ResourceKind::Organization,
                        &id,
                        org.display_name.as_str(),
                        json(&org)?,
                        cv::organization_to_pb,
                    )
                    .await
            }
            .await,
        )
    }

    async fn get_organization(
        &self,
        req: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().name)?;
        let r = req.into_inner();
        respond(
            async {
                let mut org = self
                    .get(
                        ResourceKind::Organization,
                        &r.name,
                        0,
                        cv::organization_to_pb,
                    )
                    .await?;
                org.recomputation = self
                    .recomputation(ResourceKind::Organization, &org.name, org.version)
                    .await?;
                Ok(org)
            }
            .await,
        )
    }

    async fn list_organizations(
        &self,
        req: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let orgs = super::OrgScope::of(&req);
        let r = req.into_inner();
        respond(
            self.app
                .list(
                    ResourceKind::Organization,
                    r.page_size,
                    &r.page_token,
                    r.show_archived,
                    cv::organization_to_pb,
                )
                .await
                .map(
                    |(organizations, next_page_token)| pb::ListOrganizationsResponse {
                        // A client restricted to organisations sees theirs only.
                        organizations: organizations
                            .into_iter()
                            .filter(|o| orgs.allows(&o.name))
                            .collect(),
                        next_page_token,
                    },
                ),
        )
    }

    async fn update_organization(
        &self,
        req: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let org = req.get_ref().organization.as_ref();
        super::OrgScope::of(&req).allow(org.map_or("", |o| o.name.as_str()))?;
        let client = client_of(&req);
        let r = req.into_inner();
        let name = r
            .organization
            .as_ref()
            .map(|o| o.name.clone())
            .unwrap_or_default();
        super::note("organization", &name);
        let mut c = Check::new();
        let id = cv::resource_name(
            &mut c,
            "organization.name",
            &name,
            ResourceKind::Organization,
        );
        let mask = organization_mask(&mut c, "update_mask", r.update_mask.as_ref());
        // With a mask the request holds only the listed fields: it is checked once merged.
        let whole = match &mask {
            Some(None) => {
                cv::organization(&mut c, "organization", r.organization.as_ref()).map(Some)
            }
            _ => Some(None),
        };
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let expected = cv::expected_version(&mut c, "expected_version", r.expected_version);
        let parsed = c.finish(id.zip(mask).zip(whole).zip(rid).zip(expected));
        let result = async {
            let ((((id, mask), whole), rid), expected) = parsed?;
            let fp = Fingerprint::new()
                .with("organization", &r.organization)
                .with("update_mask", &r.update_mask)
                .with("expected_version", &r.expected_version);
            let key = key(&client, "UpdateOrganization", rid);
            let answer = match (whole, mask) {
                (Some(org), _) => {
                    self.app.check_references(&org, "organization").await?;
                    let body = json(&org)?;
                    self.app
                        .update_resource(
                            (key, fp),
                            (ResourceKind::Organization, &id),
                            Some(org.display_name.as_str()),
                            |current| {
                                at_version(current, expected)?;
                                Ok(body)
                            },
                            None,
                            cv::organization_to_pb,
                        )
                        .await?
                }
                (None, mask) => {
                    let patch = r.organization.clone().unwrap_or_default();
                    self.app
                        .merge_organization(
                            (key, fp),
                            &id,
                            &patch,
                            &mask.unwrap_or_default(),
                            expected,
                        )
                        .await?
                }
            };
            self.recompute_organization(&id);
            Ok(answer)
        }
        .await;
        respond(result)
    }

    async fn preview_organization_update(
        &self,
        req: Request<pb::PreviewOrganizationUpdateRequest>,
    ) -> Result<Response<pb::ChangePreview>, Status> {
        let name = req
            .get_ref()
            .update
            .as_ref()
            .and_then(|u| u.organization.as_ref())
            .map(|o| o.name.clone())
            .unwrap_or_default();
        super::OrgScope::of(&req).allow(&name)?;
        let r = req.into_inner().update.unwrap_or_default();
        super::note("organization", &name);
        let mut c = Check::new();
        let id = cv::resource_name(
            &mut c,
            "update.organization.name",
            &name,
            ResourceKind::Organization,
        );
        let mask = organization_mask(&mut c, "update.update_mask", r.update_mask.as_ref());
        let whole = match &mask {
            Some(None) => {
                cv::organization(&mut c, "update.organization", r.organization.as_ref()).map(Some)
            }
            _ => Some(None),
        };
        let parsed = c.finish(id.zip(mask).zip(whole));
        respond(
            async {
                let ((id, mask), whole) = parsed?;
                let org = match (whole, mask) {
                    (Some(org), _) => org,
                    (None, mask) => {
                        let current = self
                            .app
                            .store
                            .get_resource(ResourceKind::Organization, &id, None)
                            .await?;
                        let patch = r.organization.clone().unwrap_or_default();
                        let merged = apply_organization_mask(
                            cv::organization_to_pb(&current)?,
                            &patch,
                            &mask.unwrap_or_default(),
                        );
                        let mut c = Check::new();
                        let org = cv::organization(&mut c, "update.organization", Some(&merged));
                        c.finish(org)?
                    }
                };
                self.app
                    .check_references(&org, "update.organization")
                    .await?;
                self.app.preview_organization(&id, org).await
            }
            .await,
        )
    }

    async fn archive_organization(
        &self,
        req: Request<pb::ArchiveOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().name)?;
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Organization);
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(rid));
        respond(
            async {
                let (id, rid) = parsed?;
                let fp = Fingerprint::new().with("name", &r.name);
                self.app
                    .archive(
                        (key(&client, "ArchiveOrganization", rid), fp),
                        ResourceKind::Organization,
                        &id,
                        cv::organization_to_pb,
                    )
                    .await
            }
            .await,
        )
    }
}

#[tonic::async_trait]
impl<S: Store> pb::policy_service_server::PolicyService for Api<S> {
    async fn create_policy(
        &self,
        req: Request<pb::CreatePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("policy", &r.policy_id);
        let mut c = Check::new();
        let id = new_id(&mut c, "policy_id", &r.policy_id);
        let p = r.policy.as_ref();
        let display = cv::display_name(
            &mut c,
            "policy.display_name",
            p.map(|p| p.display_name.as_str()).unwrap_or(""),
        );
        let policy = cv::policy_definition(
            &mut c,
            "policy.definition",
            p.and_then(|p| p.definition.as_ref()),
        );
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(display).zip(policy).zip(rid));
        respond(
            async {
                let (((id, display), policy), rid) = parsed?;
                let fp = Fingerprint::new()
                    .with("policy_id", &r.policy_id)
                    .with("policy", &r.policy);
                self.app
                    .create_resource(
                        (key(&client, "CreatePolicy", rid), fp),
                        ResourceKind::Policy,
                        &id,
                        display.as_str(),
                        json(&policy)?,
                        cv::policy_to_pb,
                    )
                    .await
            }
            .await,
        )
    }

    async fn get_policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let r = req.into_inner();
        respond(
            self.get(ResourceKind::Policy, &r.name, r.version, cv::policy_to_pb)
                .await,
        )
    }

    async fn list_policies(
        &self,
        req: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let r = req.into_inner();
        respond(
            self.app
                .list(
                    ResourceKind::Policy,
                    r.page_size,
                    &r.page_token,
                    r.show_archived,
                    cv::policy_to_pb,
                )
                .await
                .map(|(policies, next_page_token)| pb::ListPoliciesResponse {
                    policies,
                    next_page_token,
                }),
        )
    }

    async fn update_policy(
        &self,
        req: Request<pb::UpdatePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("policy", &r.name);
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Policy);
        let policy = cv::policy_definition(&mut c, "definition", r.definition.as_ref());
        if !r.display_name.is_empty() {
            cv::display_name(&mut c, "display_name", &r.display_name);
        }
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let expected = cv::expected_version(&mut c, "expected_version", r.expected_version);
        let parsed = c.finish(id.zip(policy).zip(rid).zip(expected));
        respond(
            async {
                let (((id, policy), rid), expected) = parsed?;
                let fp = Fingerprint::new()
                    .with("name", &r.name)
                    .with("display_name", &r.display_name)
                    .with("definition", &r.definition)
                    .with("expected_version", &r.expected_version);
                let body = json(&policy)?;
                self.app
                    .update_resource(
                        (key(&client, "UpdatePolicy", rid), fp),
                        (ResourceKind::Policy, &id),
                        Some(&r.display_name),
                        |current| {
                            at_version(current, expected)?;
                            Ok(body)
                        },
                        None,
                        cv::policy_to_pb,
                    )
                    .await
            }
            .await,
        )
    }

    async fn preview_policy_update(
        &self,
        req: Request<pb::PreviewPolicyUpdateRequest>,
    ) -> Result<Response<pb::ChangePreview>, Status> {
        let r = req.into_inner().update.unwrap_or_default();
        super::note("policy", &r.name);
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "update.name", &r.name, ResourceKind::Policy);
        let policy = cv::policy_definition(&mut c, "update.definition", r.definition.as_ref());
        let parsed = c.finish(id.zip(policy));
        respond(
            async {
                let (id, policy) = parsed?;
                self.app.preview_policy(&id, policy).await
            }
            .await,
        )
    }

    async fn archive_policy(
        &self,
        req: Request<pb::ArchivePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Policy);
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(rid));
        respond(
            async {
                let (id, rid) = parsed?;
                let fp = Fingerprint::new().with("name", &r.name);
                self.app
                    .archive(
                        (key(&client, "ArchivePolicy", rid), fp),
                        ResourceKind::Policy,
                        &id,
                        cv::policy_to_pb,
                    )
                    .await
            }
            .await,
        )
    }
}

impl<S: Store> Api<S> {
    async fn get<M>(
        &self,
        kind: ResourceKind,
        name: &str,
        version: i32,
        render: Render<M>,
    ) -> ApiResult<M> {
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
        render(&self.app.store.get_resource(kind, &id, version).await?)
    }

    /// The recomputation a resource version caused, if any.
    async fn recomputation(
        &self,
        kind: ResourceKind,
        name: &str,
        version: i32,
    ) -> ApiResult<Option<pb::Recomputation>> {
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", name, kind);
        let id = c.finish(id)?;
        let job = self.app.store.job(kind, &id, version.max(0) as u32).await?;
        Ok(job.map(|j| pb::Recomputation {
            tickets_total: j.tickets_total as i64,
            tickets_done: j.tickets_done as i64,
            start_time: Some(cv::timestamp(j.started_at)),
            finish_time: cv::opt_timestamp(j.finished_at),
        }))
    }

    /// Recomputes, in the background, the clocks of every open ticket whose organisation
    /// binds this calendar: a new version moves their deadlines from its effective time.
    fn recompute_calendar_users(&self, calendar: &ResourceId) {
        self.recompute
            .request(super::recompute::Scope::Calendar(calendar.clone()));
    }

    fn recompute_organization(&self, organization: &ResourceId) {
        self.recompute
            .request(super::recompute::Scope::Organization(organization.clone()));
    }
}
