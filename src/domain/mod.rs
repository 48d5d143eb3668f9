//! The functional core: pure types and computations, no async, no I/O.

pub mod attainment;
pub mod business_time;
pub mod calendar;
pub mod calendar_cache;
pub mod catalog;
pub mod clock;
pub mod clock_calendar;
pub mod connection;
pub mod explain;
pub mod hours;
pub mod ics;
pub mod ledger;
pub mod limits;
pub mod names;
pub mod organization;
pub mod pack;
pub mod pack_import;
pub mod policy;
pub mod preview;
pub mod signing;
pub mod status;
pub mod ticket;
pub mod webhook;
mod zone;

pub use business_time::{
    BusinessCalendar, BusinessDayMode, OpenInterval, OpenIntervals, TimeError,
};
pub use calendar::{CalendarError, CalendarSpec, DayRef, Hours, WallClock, Window};
pub use calendar_cache::CalendarCache;
