//! Helpdesks send a ticket's state, not its transitions. A snapshot is mapped into the
//! organisation's terms, then compared with the ticket as servicelevel has it: what
//! differs becomes the ticket's legal events.
//!
//! - An unchanged status is no event; another is a status change.
//! - Leaving RESOLVED or CLOSED (for anything but RESOLVED, CLOSED or CANCELLED) is a
//!   reopen, which moves the ticket to PROCESSING; a status other than PROCESSING then
//!   follows as a change.
//! - A snapshot saying NEW changes nothing: a ticket leaves NEW once and never returns,
//!   and a source still showing "new" after servicelevel confirmed receipt is not news.
//! - A priority other than the ticket's is a priority change.
//!
//! Whether a snapshot is older than the last one applied from its source (then it is
//! kept as stale and not folded) is the application's to decide: it knows the last one.

use chrono::{DateTime, Utc};

use super::Mapping;
use super::payloads::Snapshot;
use crate::domain::names::{ExternalId, PriorityLabel, RequestType};
use crate::domain::status::Status;
use crate::domain::ticket::EventKind;

/// A snapshot in the organisation's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub external_id: ExternalId,
    /// When the source's ticket was in this state.
    pub at: DateTime<Utc>,
    /// When the ticket was received, for a ticket created from this snapshot.
    pub received_at: DateTime<Utc>,
    pub status: Option<Status>,
    pub priority: Option<PriorityLabel>,
    /// Mapped, or the mapping's default.
    pub request_type: Option<RequestType>,
    pub requested_by: Option<ExternalId>,
}

/// Maps a read snapshot (not an ignored one); the error says which source value has no
/// mapping.
pub fn map(s: Snapshot, mapping: &Mapping) -> Result<Mapped, String> {
    let (Some(external_id), Some(at)) = (s.external_id, s.at) else {
        return Err("the snapshot has no ticket id or no time".into());
    };
    let status = s
        .status
        .map(|v| {
            mapping
                .status(&v)
                .ok_or_else(|| format!("status {v:?} is not mapped"))
        })
        .transpose()?;
    let priority = s
        .priority
        .map(|v| {
            mapping
                .priority(&v)
                .cloned()
                .ok_or_else(|| format!("priority {v:?} is not mapped"))
        })
        .transpose()?;
    let request_type = match s.request_type {
        Some(v) => Some(
            mapping
                .request_type(&v)
                .or(mapping.default_request_type.as_ref())
                .cloned()
                .ok_or_else(|| {
                    format!("request type {v:?} is not mapped and the mapping has no default")
                })?,
        ),
        None => mapping.default_request_type.clone(),
    };
    Ok(Mapped {
        external_id,
        at,
        received_at: s.created_at.unwrap_or(at).min(at),
        status,
        priority,
        request_type,
        requested_by: s.requested_by,
    })
}

/// The ticket as servicelevel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub status: Status,
    pub priority: Option<PriorityLabel>,
}

/// One event a snapshot makes, with the suffix of its request id (after the delivery's
/// id), so a delivery applied twice records nothing twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub suffix: &'static str,
    pub kind: EventKind,
}

fn closed(s: Status) -> bool {
    matches!(s, Status::Resolved | Status::Closed)
}

/// The events that bring `current` to the snapshot.
pub fn changes(m: &Mapped, current: &Current) -> Vec<Change> {
    let mut out = Vec::new();
    if let Some(to) = m.status
        && to != current.status
        && to != Status::New
    {
        let mut from = current.status;
        if closed(from) && !closed(to) && to != Status::Cancelled {
            out.push(Change {
                suffix: "reopen",
                kind: EventKind::Reopened,
            });
            from = Status::Processing;
        }
        if to != from {
            out.push(Change {
                suffix: "status",
                kind: EventKind::StatusChanged { to, reason: None },
            });
        }
    }
    if let Some(p) = &m.priority
        && current.priority.as_ref() != Some(p)
    {
        out.push(Change {
            suffix: "priority",
            kind: EventKind::PriorityChanged { to: p.clone() },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn mapping() -> Mapping {
        Mapping {
            statuses: BTreeMap::from([
                ("new".into(), Status::New),
                ("open".into(), Status::Processing),
                ("pending".into(), Status::RequiresDeliverables),
                ("solved".into(), Status::Resolved),
                ("closed".into(), Status::Closed),
            ]),
            priorities: BTreeMap::from([(
                "urgent".into(),
                PriorityLabel::parse("sev-1").expect("label"),
            )]),
            request_types: BTreeMap::from([(
                "incident".into(),
                RequestType::parse("incident").expect("type"),
            )]),
            default_request_type: None,
        }
    }

    fn snap(status: &str) -> Snapshot {
        Snapshot {
            external_id: ExternalId::parse("4711").ok(),
            at: DateTime::from_timestamp(1_800_000_000, 0),
            status: Some(status.to_string()),
            ..Snapshot::default()
        }
    }

    fn kinds(m: &Mapped, status: Status) -> Vec<&'static str> {
        changes(
            m,
            &Current {
                status,
                priority: None,
            },
        )
        .iter()
        .map(|c| c.suffix)
        .collect()
    }

    #[test]
    fn snapshots_become_legal_events() {
        let open = map(snap("Open"), &mapping()).expect("maps");
        assert_eq!(kinds(&open, Status::Processing), Vec::<&str>::new());
        assert_eq!(kinds(&open, Status::New), ["status"]);
        assert_eq!(kinds(&open, Status::Resolved), ["reopen"]);
        let pending = map(snap("pending"), &mapping()).expect("maps");
        assert_eq!(kinds(&pending, Status::Closed), ["reopen", "status"]);
        let solved = map(snap("solved"), &mapping()).expect("maps");
        assert_eq!(kinds(&solved, Status::Closed), ["status"]);
        let new = map(snap("new"), &mapping()).expect("maps");
        assert_eq!(kinds(&new, Status::Confirmed), Vec::<&str>::new());
    }

    #[test]
    fn priorities_change_when_they_differ() {
        let mut s = snap("open");
        s.priority = Some("Urgent".into());
        let m = map(s, &mapping()).expect("maps");
        let sev1 = PriorityLabel::parse("sev-1").expect("label");
        let c = changes(
            &m,
            &Current {
                status: Status::Processing,
                priority: Some(sev1.clone()),
            },
        );
        assert!(c.is_empty());
        let c = changes(
            &m,
            &Current {
                status: Status::Processing,
                priority: None,
            },
        );
        assert_eq!(
            c,
            vec![Change {
                suffix: "priority",
                kind: EventKind::PriorityChanged { to: sev1 }
            }]
        );
    }

    #[test]
    fn unmapped_values_are_named() {
        assert_eq!(
            map(snap("on-hold"), &mapping()),
            Err("status \"on-hold\" is not mapped".to_string())
        );
        let mut s = snap("open");
        s.request_type = Some("Question".into());
        assert!(map(s.clone(), &mapping()).is_err());
        let mut with_default = mapping();
        with_default.default_request_type = RequestType::parse("service_request").ok();
        assert_eq!(
            map(s, &with_default).map(|m| m.request_type),
            Ok(RequestType::parse("service_request").ok())
        );
    }
}
