//! Organisations, calendars, policies and plans: versioned resources with one shared
//! lifecycle (create, get, list, update as a new version, archive), each write idempotent.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::answer::{Answer, Idempotency};
use super::error::{AppError, AppResult, Violation};
use super::fingerprint::Fingerprint;
use super::{App, page, parse_body};
use crate::domain::calendar::CalendarSpec;
use crate::domain::names::{PlanName, ResourceId, ShortText};
use crate::domain::organization::{CalendarBinding, Contact, ExternalRef, Organization};
use crate::domain::policy::Policy;
use crate::store::{ResourceKind, ResourceVersion, Store, StoreTx};

/// Renders a resource version as the answer a write stores and returns.
pub type Render<'a, A> = &'a (dyn Fn(&ResourceVersion) -> AppResult<A> + Sync);

/// A write's idempotency and the fingerprint of what it means.
pub type Idempotent<'a> = (&'a Idempotency, &'a Fingerprint);

/// A domain value as a stored body.
pub fn json<T: Serialize>(v: &T) -> AppResult<String> {
    serde_json::to_string(v).map_err(|e| AppError::Internal(e.to_string()))
}

/// ABORTED unless `current` is at the version the caller expects (when it expects one).
pub fn at_version(current: &ResourceVersion, expected: Option<u32>) -> AppResult<()> {
    match expected {
        Some(v) if v != current.version => Err(AppError::Aborted(format!(
            "{} is at version {}, not the expected {v}: read it again and reapply the change",
            current.kind.name(&current.id),
            current.version
        ))),
        _ => Ok(()),
    }
}

/// The organisation fields an update mask may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OrganizationField {
    DisplayName,
    TimeZone,
    Plan,
    Policy,
    Calendars,
    ExternalIds,
    Contacts,
}

impl OrganizationField {
    pub const ALL: [OrganizationField; 7] = [
        OrganizationField::DisplayName,
        OrganizationField::TimeZone,
        OrganizationField::Plan,
        OrganizationField::Policy,
        OrganizationField::Calendars,
        OrganizationField::ExternalIds,
        OrganizationField::Contacts,
    ];
}

/// What an organisation update sets: the whole definition, or some fields.
#[derive(Debug, Clone, Serialize)]
pub enum OrganizationUpdate {
    Whole(Organization),
    Patch(OrganizationPatch),
}

/// The fields an update sets, parsed; the others keep their current values.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrganizationPatch {
    pub display_name: Option<ShortText>,
    pub zone: Option<Tz>,
    /// `Some(None)`: clear the plan.
    pub plan: Option<Option<PlanName>>,
    pub policy: Option<ResourceId>,
    pub calendars: Option<Vec<CalendarBinding>>,
    pub external_ids: Option<Vec<ExternalRef>>,
    pub contacts: Option<Vec<Contact>>,
}

impl OrganizationPatch {
    /// `base` with every field the patch sets taken from it.
    pub fn apply(&self, mut base: Organization) -> Organization {
        let p = self.clone();
        if let Some(v) = p.display_name {
            base.display_name = v;
        }
        if let Some(v) = p.zone {
            base.zone = v;
        }
        if let Some(v) = p.plan {
            base.plan = v;
        }
        if let Some(v) = p.policy {
            base.policy = v;
        }
        if let Some(v) = p.calendars {
            base.calendars = v;
        }
        if let Some(v) = p.external_ids {
            base.external_ids = v;
        }
        if let Some(v) = p.contacts {
            base.contacts = v;
        }
        base
    }

    /// The organisation when the patch sets every field (a whole definition).
    pub fn into_whole(self) -> Option<Organization> {
        Some(Organization {
            display_name: self.display_name?,
            zone: self.zone?,
            plan: self.plan?,
            policy: self.policy?,
            calendars: self.calendars?,
            external_ids: self.external_ids?,
            contacts: self.contacts?,
        })
    }
}

impl<S: Store> App<S> {
    pub async fn create_resource<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        kind: ResourceKind,
        id: &ResourceId,
        display_name: &str,
        body: String,
        render: Render<'_, A>,
    ) -> AppResult<A> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fingerprint).await? {
            return Ok(answer);
        }
        let v = tx
            .create_resource(kind, id, display_name, &body, self.now())
            .await?;
        let answer = render(&v)?;
        self.finish(tx, &idem.key, &answer).await?;
        Ok(answer)
    }

    pub async fn update_resource<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        (kind, id): (ResourceKind, &ResourceId),
        display_name: Option<&str>,
        body: impl FnOnce(&ResourceVersion) -> AppResult<String>,
        effective: Option<DateTime<Utc>>,
        render: Render<'_, A>,
    ) -> AppResult<A> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fingerprint).await? {
            return Ok(answer);
        }
        let current = tx.get_resource(kind, id, None).await?;
        if current.archived {
            return Err(AppError::FailedPrecondition(format!(
                "{} is archived; archived resources do not change",
                kind.name(id)
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
        self.finish(tx, &idem.key, &answer).await?;
        Ok(answer)
    }

    /// Creates an organisation once its references check out. A retry of a create that
    /// went through gets its answer even if a reference changed since.
    pub async fn create_organization<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        id: &ResourceId,
        org: &Organization,
        render: Render<'_, A>,
    ) -> AppResult<A> {
        if let Some(answer) = self.replay(idem, fingerprint).await? {
            return Ok(answer);
        }
        self.check_references(org, "organization").await?;
        self.create_resource(
            (idem, fingerprint),
            ResourceKind::Organization,
            id,
            org.display_name.as_str(),
            json(org)?,
            render,
        )
        .await
    }

    /// Replaces an organisation (`Whole`) or sets some of its fields (`Patch`), at the
    /// `expected` version if one is given; references are checked like on create.
    pub async fn update_organization<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        id: &ResourceId,
        update: OrganizationUpdate,
        expected: Option<u32>,
        render: Render<'_, A>,
    ) -> AppResult<A> {
        if let Some(answer) = self.replay(idem, fingerprint).await? {
            return Ok(answer);
        }
        match update {
            OrganizationUpdate::Whole(org) => {
                self.check_references(&org, "organization").await?;
                let body = json(&org)?;
                self.update_resource(
                    (idem, fingerprint),
                    (ResourceKind::Organization, id),
                    Some(org.display_name.as_str()),
                    |current| {
                        at_version(current, expected)?;
                        Ok(body)
                    },
                    None,
                    render,
                )
                .await
            }
            OrganizationUpdate::Patch(patch) => {
                self.merge_organization(
                    (idem, fingerprint),
                    id,
                    "organization",
                    &patch,
                    expected,
                    render,
                )
                .await
            }
        }
    }

    /// A masked organisation update: the fields `patch` sets over the current version,
    /// checked whole (references too) outside the write transaction, so the write is
    /// pinned to the version merged on; if another writer got in between, the merge is
    /// redone on the newer version (unless the caller pinned one: then the conflict is the
    /// caller's to resolve). `field` names the organisation in the request.
    async fn merge_organization<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        org: &ResourceId,
        field: &str,
        patch: &OrganizationPatch,
        expected: Option<u32>,
        render: Render<'_, A>,
    ) -> AppResult<A> {
        const ATTEMPTS: usize = 5;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self
                .store
                .get_resource(ResourceKind::Organization, org, None)
                .await?;
            let merged = self.merged(&current, field, patch)?;
            self.check_references(&merged, field).await?;
            let body = json(&merged)?;
            let result = self
                .update_resource(
                    (idem, fingerprint),
                    (ResourceKind::Organization, org),
                    Some(merged.display_name.as_str()),
                    |now| {
                        // Checked after the idempotency claim, so a retry of a request
                        // that went through gets its answer, not a conflict.
                        at_version(now, expected)?;
                        at_version(now, Some(current.version))?;
                        Ok(body)
                    },
                    None,
                    render,
                )
                .await;
            match result {
                Err(AppError::Aborted(_)) if expected.is_none() && attempt < ATTEMPTS => continue,
                other => return other,
            }
        }
    }

    /// The current organisation with a patch applied, checked as a whole.
    pub fn merged(
        &self,
        current: &ResourceVersion,
        field: &str,
        patch: &OrganizationPatch,
    ) -> AppResult<Organization> {
        let merged = patch.apply(parse_body(current)?);
        merged.check().map_err(|errors| {
            AppError::InvalidArgument(
                errors
                    .into_iter()
                    .map(|e| Violation {
                        field: format!("{field}.{}", e.path),
                        description: e.reason,
                    })
                    .collect(),
            )
        })?;
        Ok(merged)
    }

    pub async fn archive<A: Answer>(
        &self,
        (idem, fingerprint): Idempotent<'_>,
        kind: ResourceKind,
        id: &ResourceId,
        render: Render<'_, A>,
    ) -> AppResult<A> {
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim(&mut tx, idem, fingerprint).await? {
            return Ok(answer);
        }
        let v = tx.archive_resource(kind, id).await?;
        let answer = render(&v)?;
        self.finish(tx, &idem.key, &answer).await?;
        Ok(answer)
    }

    /// A page of a kind's latest versions, in id order, and the token of the next page
    /// (empty at the end).
    pub async fn list(
        &self,
        kind: ResourceKind,
        size: u32,
        page_token: &str,
        show_archived: bool,
    ) -> AppResult<(Vec<ResourceVersion>, String)> {
        let query = format!("{}:{show_archived}", kind.as_str());
        let after: Option<String> = page::decode(&query, page_token)?;
        // A list tolerates the replica's lag.
        let mut rows = self
            .reads()
            .list_resources(kind, after.as_deref(), size + 1, show_archived)
            .await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next = if more {
            rows.last()
                .map(|v| page::encode(&query, &v.id.to_string()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((rows, next))
    }

    /// A resource's version (`None`: the latest).
    pub async fn resource(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        version: Option<u32>,
    ) -> AppResult<ResourceVersion> {
        Ok(self.store.get_resource(kind, id, version).await?)
    }

    /// The recomputation a resource version caused, if any.
    pub async fn recomputation(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        version: u32,
    ) -> AppResult<Option<crate::store::RecomputeJob>> {
        Ok(self.store.job(kind, id, version).await?)
    }

    /// A referenced resource must exist and not be archived.
    pub async fn require_live(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        field: &str,
    ) -> AppResult<ResourceVersion> {
        match self.store.get_resource(kind, id, None).await {
            Ok(v) if v.archived => Err(AppError::FailedPrecondition(format!(
                "{field}: {} is archived",
                kind.name(id)
            ))),
            Ok(v) => Ok(v),
            Err(crate::store::StoreError::NotFound(_)) => Err(AppError::FailedPrecondition(
                format!("{field}: {} does not exist", kind.name(id)),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// An organisation's references: its policy and calendars exist, and every calendar
    /// slot the policy counts on is bound.
    pub async fn check_references(&self, org: &Organization, field: &str) -> AppResult<()> {
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
                .map_err(|e| AppError::invalid(format!("{field}.calendars[{i}]"), e.to_string()))?;
        }
        let policy: Policy = parse_body(&policy)?;
        let missing: Vec<String> = policy
            .calendar_slots()
            .into_iter()
            .filter(|s| org.binding(s).is_none())
            .map(|s| s.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(AppError::FailedPrecondition(format!(
                "{field}.calendars: the policy counts on calendar slots the organisation does not bind: {}",
                missing.join(", ")
            )));
        }
        Ok(())
    }

    /// What an organisation update would do to the deadlines of its open tickets, with
    /// the update merged as it would be; nothing is written.
    pub async fn preview_organization_update(
        &self,
        id: &ResourceId,
        field: &str,
        update: OrganizationUpdate,
    ) -> AppResult<super::preview::ChangePreview> {
        let org = match update {
            OrganizationUpdate::Whole(org) => org,
            OrganizationUpdate::Patch(patch) => {
                let current = self
                    .store
                    .get_resource(ResourceKind::Organization, id, None)
                    .await?;
                self.merged(&current, field, &patch)?
            }
        };
        self.check_references(&org, field).await?;
        self.preview_organization(id, org).await
    }

    /// Adds holidays to a calendar as a new version (effective at `effective`, not
    /// before now).
    pub async fn import_holidays<A: Answer>(
        &self,
        idem: &Idempotency,
        calendar: &ResourceId,
        dates: Vec<chrono::NaiveDate>,
        effective: Option<DateTime<Utc>>,
        render: Render<'_, A>,
    ) -> AppResult<A> {
        let fp = Fingerprint::new()
            .with("name", calendar)
            .with("holidays", &dates)
            .with("effective_time", &effective);
        self.update_resource(
            (idem, &fp),
            (ResourceKind::Calendar, calendar),
            None,
            |current| {
                let base: CalendarSpec = parse_body(current)?;
                let spec = base
                    .customised(None, None, &dates, &Default::default())
                    .map_err(|e| AppError::invalid("ics", e.to_string()))?;
                json(&spec)
            },
            effective,
            render,
        )
        .await
    }
}
