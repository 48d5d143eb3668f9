//! What a calendar or policy change would do to a ticket's running clocks: the same fold
//! under the old and the new definitions, compared clock by clock.

use chrono::{DateTime, TimeDelta, Utc};

use super::clock::{ClockState, ClockView, TicketState};
use super::names::MetricName;

/// A clock whose deadline or outcome the change would alter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub metric: MetricName,
    pub instance: u32,
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
    /// Not breached now, breached under the change.
    pub newly_breached: bool,
}

impl Moved {
    /// How far the deadline moves: positive later, negative earlier; zero when one side
    /// has none.
    pub fn shift(&self) -> TimeDelta {
        match (self.before, self.after) {
            (Some(b), Some(a)) => a - b,
            _ => TimeDelta::zero(),
        }
    }
}

fn key(c: &ClockView) -> (&MetricName, u32) {
    (&c.metric, c.instance)
}

fn breached(c: &ClockView) -> bool {
    c.breached_at.is_some() || c.state == ClockState::Breached
}

/// The running clocks (active under either fold) whose deadline or breach differs.
pub fn compare(before: &TicketState, after: &TicketState) -> Vec<Moved> {
    let mut out = Vec::new();
    for a in &after.clocks {
        let b = before.clocks.iter().find(|b| key(b) == key(a));
        let was_active = b.is_some_and(|b| b.active);
        if !(a.active || was_active) {
            continue;
        }
        let before_deadline = b.and_then(|b| b.deadline.or(b.deadline_if_resumed));
        let after_deadline = a.deadline.or(a.deadline_if_resumed);
        let newly_breached = breached(a) && !b.is_some_and(breached);
        if before_deadline != after_deadline || newly_breached {
            out.push(Moved {
                metric: a.metric.clone(),
                instance: a.instance,
                before: before_deadline,
                after: after_deadline,
                newly_breached,
            });
        }
    }
    out
}
