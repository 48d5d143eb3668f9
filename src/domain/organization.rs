//! Organisations: who the customer is, which policy and plan they are on, which calendars
//! their clocks count on, and who may speak for them.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::calendar::{CalendarError, CalendarSpec, Hours, Window};
use super::limits;
use super::names::{ExternalId, PlanName, ResourceId, RoleName, ShortText, SlotName};

/// A person at the customer, with the role they hold and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: ExternalId,
    pub name: ShortText,
    pub role: Option<RoleName>,
    pub effective_from: Option<DateTime<Utc>>,
    pub effective_until: Option<DateTime<Utc>>,
}

impl Contact {
    /// Whether this contact holds `role` at `at` (`effective_until` is exclusive).
    pub fn holds(&self, role: &RoleName, at: DateTime<Utc>) -> bool {
        self.role.as_ref() == Some(role)
            && self.effective_from.is_none_or(|f| f <= at)
            && self.effective_until.is_none_or(|u| at < u)
    }
}

/// Which calendar fills one of the policy's calendar slots for this organisation, and how
/// the organisation adapts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarBinding {
    pub slot: SlotName,
    pub calendar: ResourceId,
    /// The organisation's own zone for this calendar's hours.
    #[serde(default)]
    pub zone: Option<Tz>,
    /// The organisation's own weekly hours.
    #[serde(default)]
    pub hours: Option<Hours>,
    /// The organisation's own holidays, added to the calendar's.
    #[serde(default)]
    pub extra_holidays: Vec<NaiveDate>,
    /// The organisation's own dated exceptions (a half day, an extra opening): on their
    /// date they win over the calendar's holiday or override.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<NaiveDate, Vec<Window>>,
}

impl CalendarBinding {
    /// The bound calendar as this organisation adapts it.
    pub fn adapt(&self, base: &CalendarSpec) -> Result<CalendarSpec, CalendarError> {
        base.customised(
            self.zone,
            self.hours.clone(),
            &self.extra_holidays,
            &self.overrides,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalRef {
    pub system: ExternalId,
    pub id: ExternalId,
}

/// An organisation as of one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub display_name: ShortText,
    /// The organisation's own time zone: calendar-day promises count in it.
    pub zone: Tz,
    pub plan: Option<PlanName>,
    pub policy: ResourceId,
    pub calendars: Vec<CalendarBinding>,
    #[serde(default)]
    pub external_ids: Vec<ExternalRef>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
}

/// What is wrong with an organisation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct OrganizationError {
    pub path: String,
    pub reason: String,
}

impl Organization {
    pub fn check(&self) -> Result<(), Vec<OrganizationError>> {
        let mut errors = Vec::new();
        let mut e = |path: String, reason: &str| {
            errors.push(OrganizationError {
                path,
                reason: reason.to_string(),
            })
        };
        // Sizes first: nothing below runs on an oversized organisation.
        let mut oversized = false;
        for (path, count, max) in [
            ("calendars", self.calendars.len(), limits::BINDINGS),
            (
                "external_ids",
                self.external_ids.len(),
                limits::EXTERNAL_IDS,
            ),
            ("contacts", self.contacts.len(), limits::CONTACTS),
        ] {
            if count > max {
                e(path.to_string(), &limits::too_many(count, max));
                oversized = true;
            }
        }
        if oversized {
            return Err(errors);
        }
        let mut slots = std::collections::BTreeSet::new();
        for (i, b) in self.calendars.iter().enumerate() {
            if !slots.insert(&b.slot) {
                e(format!("calendars[{i}].slot"), "this slot is bound twice");
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, c) in self.contacts.iter().enumerate() {
            if !ids.insert(&c.id) {
                e(format!("contacts[{i}].id"), "two contacts share this id");
            }
            if let (Some(f), Some(u)) = (c.effective_from, c.effective_until)
                && u <= f
            {
                e(
                    format!("contacts[{i}].effective_until"),
                    "must be after effective_from",
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub fn contact(&self, id: &ExternalId) -> Option<&Contact> {
        self.contacts.iter().find(|c| &c.id == id)
    }

    pub fn binding(&self, slot: &SlotName) -> Option<&CalendarBinding> {
        self.calendars.iter().find(|b| &b.slot == slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn contact(id: &str, from: Option<u32>, until: Option<u32>) -> Contact {
        let day = |d: u32| {
            Utc.with_ymd_and_hms(2026, 3, d, 0, 0, 0)
                .single()
                .expect("valid")
        };
        Contact {
            id: ExternalId::parse(id).expect("valid"),
            name: ShortText::parse("Sam").expect("valid"),
            role: Some(RoleName::parse("main_stakeholder").expect("valid")),
            effective_from: from.map(day),
            effective_until: until.map(day),
        }
    }

    #[test]
    fn a_role_is_held_from_its_start_until_before_its_end() {
        let role = RoleName::parse("main_stakeholder").expect("valid");
        let c = contact("c1", Some(2), Some(10));
        let at = |d: u32| {
            Utc.with_ymd_and_hms(2026, 3, d, 0, 0, 0)
                .single()
                .expect("valid")
        };
        assert!(!c.holds(&role, at(1)));
        assert!(c.holds(&role, at(2)));
        assert!(c.holds(&role, at(9)));
        assert!(!c.holds(&role, at(10)));
        assert!(!c.holds(&RoleName::parse("billing").expect("valid"), at(5)));
    }

    #[test]
    fn duplicate_slots_and_contacts_are_refused() {
        let binding = CalendarBinding {
            slot: SlotName::parse("office").expect("valid"),
            calendar: ResourceId::parse("office").expect("valid"),
            zone: None,
            hours: None,
            extra_holidays: vec![],
            overrides: BTreeMap::new(),
        };
        let org = Organization {
            display_name: ShortText::parse("Acme").expect("valid"),
            zone: chrono_tz::UTC,
            plan: None,
            policy: ResourceId::parse("p").expect("valid"),
            calendars: vec![binding.clone(), binding],
            external_ids: vec![],
            contacts: vec![contact("c1", None, None), contact("c1", Some(5), Some(4))],
        };
        let paths: Vec<String> = org
            .check()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            vec![
                "calendars[1].slot",
                "contacts[1].id",
                "contacts[1].effective_until"
            ]
        );
    }
}
