//! What importing a pack does to each resource it defines: create it, version it, or
//! leave it alone. Deciding this from the stored definitions (not from a content hash) is
//! what makes an import idempotent and a changed pack a new version.

use super::calendar::{CalendarError, CalendarSpec};

/// What importing does to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    Create(T),
    NewVersion(T),
    Unchanged,
}

/// A resource whose definition the pack owns whole (a policy, an hour plan).
pub fn replace<T: PartialEq + Clone>(pack: &T, stored: Option<&T>) -> Change<T> {
    match stored {
        None => Change::Create(pack.clone()),
        Some(s) if s == pack => Change::Unchanged,
        Some(_) => Change::NewVersion(pack.clone()),
    }
}

/// A calendar: the pack owns its zone and weekly hours, while holidays and dated overrides
/// are the operator's (packs ship none), so a re-import keeps those added since.
pub fn calendar(
    pack: &CalendarSpec,
    stored: Option<&CalendarSpec>,
) -> Result<Change<CalendarSpec>, CalendarError> {
    let Some(s) = stored else {
        return Ok(Change::Create(pack.clone()));
    };
    if s.zone() == pack.zone() && s.hours() == pack.hours() {
        return Ok(Change::Unchanged);
    }
    let overrides = s.overrides().iter().map(|(d, w)| (*d, w.clone()));
    CalendarSpec::new(
        pack.zone(),
        pack.hours().clone(),
        s.holidays().iter().copied(),
        overrides,
    )
    .map(Change::NewVersion)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::domain::calendar::{Hours, Window};

    fn weekdays(zone: chrono_tz::Tz, window: &str, holidays: &[NaiveDate]) -> CalendarSpec {
        let w = Window::parse(window).expect("window");
        let mut week: [Vec<Window>; 7] = Default::default();
        for d in week.iter_mut().take(5) {
            d.push(w);
        }
        CalendarSpec::new(
            zone,
            Hours::Weekly(week),
            holidays.iter().copied(),
            Vec::new(),
        )
        .expect("calendar")
    }

    #[test]
    fn a_new_calendar_is_created_and_an_identical_one_left_alone() {
        let pack = weekdays(chrono_tz::America::Toronto, "08:00-18:30", &[]);
        assert_eq!(calendar(&pack, None), Ok(Change::Create(pack.clone())));
        assert_eq!(calendar(&pack, Some(&pack)), Ok(Change::Unchanged));
    }

    #[test]
    fn holidays_added_by_the_operator_survive_a_reimport() {
        let christmas = NaiveDate::from_ymd_opt(2026, 12, 25).expect("date");
        let pack = weekdays(chrono_tz::America::Toronto, "08:00-18:30", &[]);
        let stored = weekdays(chrono_tz::America::Toronto, "08:00-18:30", &[christmas]);
        // Same hours: the added holiday is no reason for a new version.
        assert_eq!(calendar(&pack, Some(&stored)), Ok(Change::Unchanged));
        // Changed hours: a new version, with the holiday kept.
        let changed = weekdays(chrono_tz::America::Toronto, "09:00-17:00", &[]);
        match calendar(&changed, Some(&stored)) {
            Ok(Change::NewVersion(v)) => {
                assert!(v.holidays().contains(&christmas));
                assert_eq!(v.hours(), changed.hours());
            }
            other => panic!("expected a new version, got {other:?}"),
        }
    }

    #[test]
    fn a_changed_zone_is_a_new_version() {
        let pack = weekdays(chrono_tz::America::Toronto, "08:00-18:30", &[]);
        let stored = weekdays(chrono_tz::America::New_York, "08:00-18:30", &[]);
        assert_eq!(
            calendar(&pack, Some(&stored)),
            Ok(Change::NewVersion(pack.clone()))
        );
    }

    #[test]
    fn owned_definitions_are_replaced_only_when_they_differ() {
        assert_eq!(replace(&1, None), Change::Create(1));
        assert_eq!(replace(&1, Some(&1)), Change::Unchanged);
        assert_eq!(replace(&2, Some(&1)), Change::NewVersion(2));
    }
}
