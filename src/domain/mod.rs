//! The functional core: pure types and computations, no async, no I/O.

pub mod business_time;
pub mod calendar;
mod zone;

pub use business_time::{BusinessCalendar, BusinessDayMode, OpenInterval, TimeError};
pub use calendar::{CalendarError, CalendarSpec, DayRef, Hours, WallClock, Window};
