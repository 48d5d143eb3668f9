//! Compiled calendars, shared: every ticket of an organisation asks the same calendar, and
//! compiling one costs about a hundred microseconds, so each distinct definition is
//! compiled once and handed out behind an `Arc`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::business_time::BusinessCalendar;
use super::calendar::{CalendarError, CalendarSpec};

/// A bounded memo of compiled calendars keyed by their full definition, so a changed
/// calendar is a different key and can never be answered from a stale entry.
#[derive(Debug)]
pub struct CalendarCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<CalendarSpec, (Arc<BusinessCalendar>, u64)>,
    tick: u64,
}

impl CalendarCache {
    /// A cache holding at most `capacity` compiled calendars (about 100 KiB each for a
    /// zone with DST); the least recently used one goes first.
    pub fn new(capacity: usize) -> Self {
        CalendarCache {
            capacity: capacity.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// The compiled form of `spec`, compiling it on first use.
    pub fn get(&self, spec: &CalendarSpec) -> Result<Arc<BusinessCalendar>, CalendarError> {
        {
            let mut e = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            e.tick += 1;
            let tick = e.tick;
            if let Some((cal, used)) = e.map.get_mut(spec) {
                *used = tick;
                return Ok(Arc::clone(cal));
            }
        }
        // Compiled outside the lock so one slow compile never blocks other lookups.
        let compiled = Arc::new(BusinessCalendar::compile(spec)?);
        let mut e = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if e.map.len() >= self.capacity && !e.map.contains_key(spec) {
            let oldest = e
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                e.map.remove(&k);
            }
        }
        let tick = e.tick;
        let entry = e.map.entry(spec.clone()).or_insert((compiled, tick));
        Ok(Arc::clone(&entry.0))
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{Hours, Window};

    fn spec(close: &str) -> CalendarSpec {
        let mut week: [Vec<Window>; 7] = Default::default();
        week[0] = vec![Window::parse(&format!("09:00-{close}")).expect("valid")];
        CalendarSpec::new(chrono_tz::Europe::London, Hours::Weekly(week), [], []).expect("valid")
    }

    #[test]
    fn the_same_definition_is_compiled_once_and_shared() {
        let cache = CalendarCache::new(4);
        let a = cache.get(&spec("17:00")).expect("compiles");
        let b = cache.get(&spec("17:00")).expect("compiles");
        assert!(Arc::ptr_eq(&a, &b));
        let c = cache.get(&spec("17:30")).expect("compiles");
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_least_recently_used_calendar_is_evicted() {
        let cache = CalendarCache::new(2);
        let first = cache.get(&spec("17:00")).expect("compiles");
        cache.get(&spec("17:30")).expect("compiles");
        cache.get(&spec("17:00")).expect("compiles");
        cache.get(&spec("18:00")).expect("compiles");
        assert_eq!(cache.len(), 2);
        // 17:00 was used after 17:30, so 17:30 went.
        assert!(Arc::ptr_eq(
            &first,
            &cache.get(&spec("17:00")).expect("compiles")
        ));
    }
}
