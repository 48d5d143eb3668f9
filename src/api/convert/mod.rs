//! Requests become domain values here, once (parse, don't validate); domain values become
//! responses here. Field paths in errors are spelled as the proto spells them.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

use super::error::Check;
use super::pb;
use crate::domain::calendar::parse_zone;
use crate::domain::limits;
use crate::domain::names::{ResourceId, ShortText};
use crate::domain::status::Status;
use crate::store::ResourceKind;

/// The longest `request_id` accepted.
pub const MAX_REQUEST_ID: usize = 128;
/// Instants outside this range are refused at the edge (the engine's range).
const FIRST_INSTANT_S: i64 = 0;
const END_INSTANT_S: i64 = 4_102_444_800;

mod calendars;
mod connections;
mod hours;
mod organizations;
mod policies;
mod tickets;
mod webhooks;

pub use calendars::*;
pub use connections::*;
pub use hours::*;
pub use organizations::*;
pub use policies::*;
pub use tickets::*;
pub use webhooks::*;

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn opt_timestamp(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(timestamp)
}

pub fn duration(d: TimeDelta) -> prost_types::Duration {
    let seconds = d.num_seconds();
    let nanos = (d - TimeDelta::seconds(seconds))
        .num_nanoseconds()
        .unwrap_or(0);
    prost_types::Duration {
        seconds,
        nanos: i32::try_from(nanos).unwrap_or(0),
    }
}

/// A wire timestamp as an instant, truncated to microseconds (what both stores keep),
/// within 1970-2099.
pub fn instant(c: &mut Check, field: &str, t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        c.fail(field, "nanos must be between 0 and 999,999,999");
        return None;
    }
    if !(FIRST_INSTANT_S..END_INSTANT_S).contains(&t.seconds) {
        c.fail(
            field,
            "must be between 1970-01-01T00:00:00Z and 2099-12-31T23:59:59Z",
        );
        return None;
    }
    DateTime::from_timestamp(t.seconds, (t.nanos as u32 / 1000) * 1000).or_else(|| {
        c.fail(field, "not a valid instant");
        None
    })
}

pub fn required_instant(
    c: &mut Check,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    match t {
        Some(t) => instant(c, field, t),
        None => {
            c.fail(field, "is required");
            None
        }
    }
}

pub fn optional_instant(
    c: &mut Check,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<Option<DateTime<Utc>>> {
    match t {
        None => Some(None),
        Some(t) => instant(c, field, t).map(Some),
    }
}

/// An optimistic-concurrency precondition: 0 for none, else the version a write needs.
pub fn expected_version(c: &mut Check, field: &str, v: i32) -> Option<Option<u32>> {
    match u32::try_from(v) {
        Ok(0) => Some(None),
        Ok(v) => Some(Some(v)),
        Err(_) => {
            c.fail(field, "must not be negative (0: no check)");
            None
        }
    }
}

pub fn request_id(c: &mut Check, field: &str, id: &str) -> Option<String> {
    if id.is_empty() {
        c.fail(
            field,
            "is required: a unique key per request makes retries safe (AIP-155)",
        );
        None
    } else if id.chars().count() > MAX_REQUEST_ID {
        c.fail(field, format!("is longer than {MAX_REQUEST_ID} characters"));
        None
    } else if id.chars().any(char::is_control) {
        c.fail(field, "has control characters");
        None
    } else {
        Some(id.to_string())
    }
}

/// `collection/id` into the id.
pub fn resource_name(
    c: &mut Check,
    field: &str,
    name: &str,
    kind: ResourceKind,
) -> Option<ResourceId> {
    let prefix = kind.collection();
    match name.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
        Some(id) => c.ok(field, ResourceId::parse(id)),
        None if name.is_empty() => {
            c.fail(field, format!("is required: \"{prefix}/{{id}}\""));
            None
        }
        None => {
            c.fail(field, format!("must look like \"{prefix}/{{id}}\""));
            None
        }
    }
}

pub fn name_of(kind: ResourceKind, id: &ResourceId) -> String {
    format!("{}/{}", kind.collection(), id)
}

pub fn ticket_id(c: &mut Check, field: &str, name: &str) -> Option<String> {
    match name.strip_prefix("tickets/") {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') =>
        {
            Some(id.to_string())
        }
        _ => {
            c.fail(field, "must look like \"tickets/{id}\"");
            None
        }
    }
}

pub(super) fn date(c: &mut Check, field: &str, s: &str) -> Option<NaiveDate> {
    c.ok(
        field,
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| "must be a date YYYY-MM-DD"),
    )
}

pub fn plain_date(c: &mut Check, field: &str, s: &str) -> Option<NaiveDate> {
    date(c, field, s)
}

pub(super) fn zone(c: &mut Check, field: &str, s: &str) -> Option<Tz> {
    c.ok(field, parse_zone(s))
}

pub fn optional<T, E: std::fmt::Display>(
    c: &mut Check,
    field: impl Into<String>,
    s: &str,
    p: impl Fn(&str) -> Result<T, E>,
) -> Option<Option<T>> {
    if s.is_empty() {
        Some(None)
    } else {
        c.ok(field, p(s)).map(Some)
    }
}

pub(super) fn status(c: &mut Check, field: &str, v: i32) -> Option<Status> {
    match pb::TicketStatus::try_from(v) {
        Ok(pb::TicketStatus::Unspecified) => {
            c.fail(field, "is required");
            None
        }
        Ok(s) => Some(status_from_pb(s)),
        Err(_) => {
            c.fail(field, format!("unknown status value {v}"));
            None
        }
    }
}

pub fn status_from_pb(s: pb::TicketStatus) -> Status {
    match s {
        pb::TicketStatus::Unspecified | pb::TicketStatus::New => Status::New,
        pb::TicketStatus::Confirmed => Status::Confirmed,
        pb::TicketStatus::Processing => Status::Processing,
        pb::TicketStatus::RequiresDeliverables => Status::RequiresDeliverables,
        pb::TicketStatus::OutOfScope => Status::OutOfScope,
        pb::TicketStatus::Escalated => Status::Escalated,
        pb::TicketStatus::Scheduled => Status::Scheduled,
        pb::TicketStatus::SubmittedForReview => Status::SubmittedForReview,
        pb::TicketStatus::Resolved => Status::Resolved,
        pb::TicketStatus::Closed => Status::Closed,
        pb::TicketStatus::Cancelled => Status::Cancelled,
    }
}

pub fn status_to_pb(s: Status) -> pb::TicketStatus {
    match s {
        Status::New => pb::TicketStatus::New,
        Status::Confirmed => pb::TicketStatus::Confirmed,
        Status::Processing => pb::TicketStatus::Processing,
        Status::RequiresDeliverables => pb::TicketStatus::RequiresDeliverables,
        Status::OutOfScope => pb::TicketStatus::OutOfScope,
        Status::Escalated => pb::TicketStatus::Escalated,
        Status::Scheduled => pb::TicketStatus::Scheduled,
        Status::SubmittedForReview => pb::TicketStatus::SubmittedForReview,
        Status::Resolved => pb::TicketStatus::Resolved,
        Status::Closed => pb::TicketStatus::Closed,
        Status::Cancelled => pb::TicketStatus::Cancelled,
    }
}

/// Every resource's display name.
pub fn display_name(c: &mut Check, field: &str, s: &str) -> Option<ShortText> {
    c.ok(field, ShortText::parse(s))
}

/// A page size: 0 means 50, more than 1000 means 1000, negative is an error.
pub fn page_size(c: &mut Check, field: &str, n: i32) -> Option<u32> {
    match n {
        0 => Some(50),
        n if n < 0 => {
            c.fail(field, "must not be negative");
            None
        }
        n => Some(n.min(1000) as u32),
    }
}

/// `items`, or none (with a violation on `field`) when there are more than `max`:
/// nothing is parsed of an oversized list, so its size bounds the work (see
/// `domain::limits`).
pub fn limited<'a, T>(c: &mut Check, field: &str, items: &'a [T], max: usize) -> &'a [T] {
    if items.len() > max {
        c.fail(field, limits::too_many(items.len(), max));
        &[]
    } else {
        items
    }
}
