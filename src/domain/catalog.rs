//! Assembling the calendars a ticket's clocks count on from the versions of its
//! organisation and of the calendars it binds.
//!
//! Both change over time: a calendar gets a new version, an organisation rebinds a slot or
//! adds its own holidays. For each slot the result is one versioned calendar whose
//! segments start wherever either changed, each the calendar version then in force as the
//! organisation version then in force adapts it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::calendar::{CalendarError, CalendarSpec};
use super::calendar_cache::CalendarCache;
use super::clock::ClockCalendars;
use super::clock_calendar::VersionedCalendar;
use super::names::{ResourceId, SlotName};
use super::organization::Organization;

/// A value in force from an instant on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dated<T> {
    pub effective_at: DateTime<Utc>,
    pub value: T,
}

/// The version in force at `t`: the last one effective at or before it, else the first.
pub fn in_force<T>(versions: &[Dated<T>], t: DateTime<Utc>) -> Option<&T> {
    let i = versions.partition_point(|v| v.effective_at <= t);
    versions.get(i.saturating_sub(1)).map(|v| &v.value)
}

/// Why the calendars cannot be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("calendar {0} has no versions")]
    MissingCalendar(ResourceId),
    #[error("the organisation has no versions")]
    NoOrganization,
    #[error("the organisation's zone: {0}")]
    Zone(CalendarError),
    #[error("slot {slot}: {error}")]
    Calendar {
        slot: SlotName,
        error: CalendarError,
    },
}

/// The clock calendars of an organisation. `orgs` and each calendar's versions are in
/// effective order.
pub fn clock_calendars(
    orgs: &[Dated<Organization>],
    calendars: &BTreeMap<ResourceId, Vec<Dated<CalendarSpec>>>,
    cache: &CalendarCache,
) -> Result<ClockCalendars, CatalogError> {
    let latest = orgs.last().ok_or(CatalogError::NoOrganization)?;
    let zone = cache
        .get(&CalendarSpec::always_open(latest.value.zone))
        .map_err(CatalogError::Zone)?;
    let slots: BTreeSet<&SlotName> = orgs
        .iter()
        .flat_map(|o| o.value.calendars.iter().map(|b| &b.slot))
        .collect();
    let mut out = BTreeMap::new();
    for slot in slots {
        let mut boundaries: BTreeSet<DateTime<Utc>> = orgs.iter().map(|o| o.effective_at).collect();
        for o in orgs {
            if let Some(b) = o.value.binding(slot) {
                let versions = calendars
                    .get(&b.calendar)
                    .ok_or_else(|| CatalogError::MissingCalendar(b.calendar.clone()))?;
                boundaries.extend(versions.iter().map(|v| v.effective_at));
            }
        }
        let mut segments: Vec<(DateTime<Utc>, CalendarSpec)> = Vec::new();
        for at in boundaries {
            let Some(binding) = in_force(orgs, at).and_then(|o| o.binding(slot)) else {
                continue;
            };
            let versions = calendars
                .get(&binding.calendar)
                .ok_or_else(|| CatalogError::MissingCalendar(binding.calendar.clone()))?;
            let base = in_force(versions, at)
                .ok_or_else(|| CatalogError::MissingCalendar(binding.calendar.clone()))?;
            let spec = binding
                .adapt(base)
                .map_err(|error| CatalogError::Calendar {
                    slot: slot.clone(),
                    error,
                })?;
            if segments.last().is_none_or(|(_, s)| *s != spec) {
                segments.push((at, spec));
            }
        }
        let compiled = segments
            .into_iter()
            .map(|(at, spec)| {
                cache
                    .get(&spec)
                    .map(|c| (at, c))
                    .map_err(|error| CatalogError::Calendar {
                        slot: slot.clone(),
                        error,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(v) = VersionedCalendar::new(compiled) {
            out.insert(slot.clone(), Arc::new(v));
        }
    }
    Ok(ClockCalendars { zone, slots: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{Hours, Window};
    use crate::domain::names::ShortText;
    use crate::domain::organization::CalendarBinding;
    use chrono::{NaiveDate, TimeDelta, TimeZone};

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0)
            .single()
            .expect("valid")
    }

    fn weekdays(close: &str) -> CalendarSpec {
        let day = vec![Window::parse(&format!("09:00-{close}")).expect("valid")];
        let week = std::array::from_fn(|i| if i < 5 { day.clone() } else { Vec::new() });
        CalendarSpec::new(chrono_tz::UTC, Hours::Weekly(week), [], []).expect("valid")
    }

    fn org(holidays: Vec<NaiveDate>) -> Organization {
        Organization {
            display_name: ShortText::parse("Acme").expect("valid"),
            zone: chrono_tz::UTC,
            plan: None,
            policy: ResourceId::parse("p").expect("valid"),
            calendars: vec![CalendarBinding {
                slot: SlotName::parse("office").expect("valid"),
                calendar: ResourceId::parse("office").expect("valid"),
                zone: None,
                hours: None,
                extra_holidays: holidays,
                overrides: BTreeMap::new(),
            }],
            external_ids: vec![],
            contacts: vec![],
        }
    }

    #[test]
    fn calendar_and_organisation_versions_interleave() {
        // Calendar: 09:00-17:00, from Wednesday 11 12:00 on 09:00-13:00. The organisation
        // adds Friday 13 as a holiday from Thursday 12 on.
        let office = ResourceId::parse("office").expect("valid");
        let calendars = BTreeMap::from([(
            office,
            vec![
                Dated {
                    effective_at: t(1, 0),
                    value: weekdays("17:00"),
                },
                Dated {
                    effective_at: t(11, 12),
                    value: weekdays("13:00"),
                },
            ],
        )]);
        let friday = NaiveDate::from_ymd_opt(2026, 3, 13).expect("valid");
        let orgs = vec![
            Dated {
                effective_at: t(1, 0),
                value: org(vec![]),
            },
            Dated {
                effective_at: t(12, 0),
                value: org(vec![friday]),
            },
        ];
        let cache = CalendarCache::new(8);
        let cals = clock_calendars(&orgs, &calendars, &cache).expect("assembles");
        let office = &cals.slots[&SlotName::parse("office").expect("valid")];
        // Mon 9, Tue 10: 8 h each; Wed 11: 3 h before noon + 1 h after; Thu 12: 4 h; Fri 13:
        // holiday. Total 24 h.
        assert_eq!(office.elapsed(t(9, 0), t(14, 0)), Ok(TimeDelta::hours(24)));
    }
}
