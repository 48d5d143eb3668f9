//! Organisations: calendar bindings, external references, contacts and update masks.

use std::collections::BTreeMap;

use super::{
    date, display_name, hm, limited, name_of, opt_timestamp, optional, optional_instant,
    resource_name, timestamp, weekly, weekly_to_pb, windows, zone,
};
use crate::api::error::{AppError, AppResult, Check};
use crate::api::pb;
use crate::app::catalog::{OrganizationField, OrganizationPatch};
use crate::domain::calendar::{CalendarSpec, Hours, parse_zone};
use crate::domain::limits;
use crate::domain::names::{ExternalId, PlanName, RoleName, SlotName};
use crate::domain::organization::{CalendarBinding, Contact, ExternalRef, Organization};
use crate::store::{ResourceKind, ResourceVersion};

fn bindings(
    c: &mut Check,
    field: &str,
    list: &[pb::CalendarBinding],
) -> Option<Vec<CalendarBinding>> {
    let before = c.count();
    let mut calendars = Vec::new();
    let bindings = limited(c, field, list, limits::BINDINGS);
    for (i, b) in bindings.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let slot = c.ok(format!("{f}.slot"), SlotName::parse(&b.slot));
        let calendar = resource_name(
            c,
            &format!("{f}.calendar"),
            &b.calendar,
            ResourceKind::Calendar,
        );
        let tz = optional(c, format!("{f}.time_zone"), &b.time_zone, parse_zone);
        let hours = if b.weekly_hours.is_empty() {
            Some(None)
        } else {
            weekly(c, &format!("{f}.weekly_hours"), &b.weekly_hours).map(|w| Some(Hours::Weekly(w)))
        };
        let mut extra = Vec::new();
        let listed = limited(
            c,
            &format!("{f}.extra_holidays"),
            &b.extra_holidays,
            limits::HOLIDAYS,
        );
        for (k, h) in listed.iter().enumerate() {
            extra.extend(date(c, &format!("{f}.extra_holidays[{k}]"), h));
        }
        let mut overrides = BTreeMap::new();
        let listed = limited(
            c,
            &format!("{f}.overrides"),
            &b.overrides,
            limits::OVERRIDES,
        );
        for (k, o) in listed.iter().enumerate() {
            let g = format!("{f}.overrides[{k}]");
            let day = date(c, &format!("{g}.date"), &o.date);
            let ws = windows(c, &format!("{g}.windows"), &o.windows);
            let (Some(day), Some(ws)) = (day, ws) else {
                continue;
            };
            if extra.contains(&day) {
                c.fail(
                    format!("{g}.date"),
                    "is also one of extra_holidays: a date is either closed or opens with these windows",
                );
                continue;
            }
            let Some(ws) = c.ok(
                format!("{g}.windows"),
                CalendarSpec::checked_override(day, ws),
            ) else {
                continue;
            };
            match overrides.entry(day) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    c.fail(format!("{g}.date"), "two overrides for this date");
                }
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(ws);
                }
            }
        }
        if let (Some(slot), Some(calendar), Some(zone), Some(hours)) = (slot, calendar, tz, hours) {
            calendars.push(CalendarBinding {
                slot,
                calendar,
                zone,
                hours,
                extra_holidays: extra,
                overrides,
            });
        }
    }
    (c.count() == before).then_some(calendars)
}

fn external_refs(
    c: &mut Check,
    field: &str,
    list: &[pb::ExternalReference],
) -> Option<Vec<ExternalRef>> {
    let before = c.count();
    let mut external_ids = Vec::new();
    let listed = limited(c, field, list, limits::EXTERNAL_IDS);
    for (i, e) in listed.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let system = c.ok(format!("{f}.system"), ExternalId::parse(&e.system));
        let id = c.ok(format!("{f}.id"), ExternalId::parse(&e.id));
        if let (Some(system), Some(id)) = (system, id) {
            external_ids.push(ExternalRef { system, id });
        }
    }
    (c.count() == before).then_some(external_ids)
}

fn contacts(c: &mut Check, field: &str, list: &[pb::Contact]) -> Option<Vec<Contact>> {
    let before = c.count();
    let mut contacts = Vec::new();
    let listed = limited(c, field, list, limits::CONTACTS);
    for (i, ct) in listed.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let id = c.ok(format!("{f}.contact_id"), ExternalId::parse(&ct.contact_id));
        let name = display_name(c, &format!("{f}.display_name"), &ct.display_name);
        let role = optional(c, format!("{f}.role"), &ct.role, RoleName::parse);
        let from = optional_instant(
            c,
            &format!("{f}.effective_from_time"),
            ct.effective_from_time.as_ref(),
        );
        let until = optional_instant(
            c,
            &format!("{f}.effective_until_time"),
            ct.effective_until_time.as_ref(),
        );
        if let (Some(id), Some(name), Some(role), Some(from), Some(until)) =
            (id, name, role, from, until)
        {
            contacts.push(Contact {
                id,
                name,
                role,
                effective_from: from,
                effective_until: until,
            });
        }
    }
    (c.count() == before).then_some(contacts)
}

pub fn organization(
    c: &mut Check,
    field: &str,
    o: Option<&pb::Organization>,
) -> Option<Organization> {
    let Some(o) = o else {
        c.fail(field, "is required");
        return None;
    };
    let patch = organization_patch(c, field, o, &OrganizationField::ALL);
    if !c.is_clean() {
        return None;
    }
    let org = patch.into_whole()?;
    if let Err(errors) = org.check() {
        for e in errors {
            c.fail(format!("{field}.{}", e.path), e.reason);
        }
        return None;
    }
    Some(org)
}

/// The fields of `o` an update mask names, parsed; the others are left unset.
pub fn organization_patch(
    c: &mut Check,
    field: &str,
    o: &pb::Organization,
    fields: &[OrganizationField],
) -> OrganizationPatch {
    let mut p = OrganizationPatch::default();
    for f in fields {
        match f {
            OrganizationField::DisplayName => {
                p.display_name = display_name(c, &format!("{field}.display_name"), &o.display_name)
            }
            OrganizationField::TimeZone => {
                p.zone = zone(c, &format!("{field}.time_zone"), &o.time_zone)
            }
            OrganizationField::Plan => {
                p.plan = optional(c, format!("{field}.plan"), &o.plan, PlanName::parse)
            }
            OrganizationField::Policy => {
                p.policy = resource_name(
                    c,
                    &format!("{field}.policy"),
                    &o.policy,
                    ResourceKind::Policy,
                )
            }
            OrganizationField::Calendars => {
                p.calendars = bindings(c, &format!("{field}.calendars"), &o.calendars)
            }
            OrganizationField::ExternalIds => {
                p.external_ids = external_refs(c, &format!("{field}.external_ids"), &o.external_ids)
            }
            OrganizationField::Contacts => {
                p.contacts = contacts(c, &format!("{field}.contacts"), &o.contacts)
            }
        }
    }
    p
}

pub fn organization_to_pb(v: &ResourceVersion) -> AppResult<pb::Organization> {
    let o: Organization =
        serde_json::from_str(&v.body).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(pb::Organization {
        name: name_of(ResourceKind::Organization, &v.id),
        display_name: o.display_name.to_string(),
        time_zone: o.zone.name().to_string(),
        plan: o.plan.map(String::from).unwrap_or_default(),
        policy: name_of(ResourceKind::Policy, &o.policy),
        calendars: o
            .calendars
            .iter()
            .map(|b| pb::CalendarBinding {
                slot: b.slot.to_string(),
                calendar: name_of(ResourceKind::Calendar, &b.calendar),
                time_zone: b.zone.map(|z| z.name().to_string()).unwrap_or_default(),
                weekly_hours: match &b.hours {
                    Some(Hours::Weekly(days)) => weekly_to_pb(days),
                    _ => Vec::new(),
                },
                extra_holidays: b.extra_holidays.iter().map(|d| d.to_string()).collect(),
                overrides: b
                    .overrides
                    .iter()
                    .map(|(d, ws)| pb::DateOverride {
                        date: d.to_string(),
                        windows: ws.iter().map(hm).collect(),
                    })
                    .collect(),
            })
            .collect(),
        external_ids: o
            .external_ids
            .iter()
            .map(|e| pb::ExternalReference {
                system: e.system.to_string(),
                id: e.id.to_string(),
            })
            .collect(),
        contacts: o
            .contacts
            .iter()
            .map(|ct| pb::Contact {
                contact_id: ct.id.to_string(),
                display_name: ct.name.to_string(),
                role: ct.role.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                effective_from_time: opt_timestamp(ct.effective_from),
                effective_until_time: opt_timestamp(ct.effective_until),
            })
            .collect(),
        version: v.version as i32,
        archived: v.archived,
        create_time: Some(timestamp(v.created_at)),
        recomputation: None,
    })
}
