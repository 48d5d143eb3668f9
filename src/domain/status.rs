//! Ticket statuses and the base transition table: the one place that says which moves are
//! legal before any policy adds its guards.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A ticket's status, named after the Concinnity Digital request statuses plus the usual
/// help-desk ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// The initial status, and only that.
    New,
    /// Receipt confirmed ("officially starting the clock on our response time policy").
    Confirmed,
    Processing,
    /// Waiting on the customer for information or deliverables.
    RequiresDeliverables,
    OutOfScope,
    Escalated,
    Scheduled,
    /// Work completed and awaiting the customer's approval.
    SubmittedForReview,
    Resolved,
    Closed,
    Cancelled,
}

/// Why a transition is refused by the base table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("{0} is only the initial status; no ticket can move to it")]
    ToNew(Status),
    #[error("the ticket is already {0}")]
    Unchanged(Status),
    #[error("a {0} ticket can leave that status only by a reopen event")]
    NeedsReopen(Status),
    #[error("a CANCELLED ticket is final")]
    Final,
    #[error("only a RESOLVED or CLOSED ticket can be reopened; this one is {0}")]
    NotReopenable(Status),
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::New,
        Status::Confirmed,
        Status::Processing,
        Status::RequiresDeliverables,
        Status::OutOfScope,
        Status::Escalated,
        Status::Scheduled,
        Status::SubmittedForReview,
        Status::Resolved,
        Status::Closed,
        Status::Cancelled,
    ];

    /// Open statuses: the ticket still needs work.
    pub fn is_open(self) -> bool {
        !matches!(self, Status::Resolved | Status::Closed | Status::Cancelled)
    }

    /// RESOLVED or CLOSED: what contracts call "resolved".
    pub fn is_resolution(self) -> bool {
        matches!(self, Status::Resolved | Status::Closed)
    }

    /// The base table. Any open status may move to any other open status (CRM systems
    /// move tickets freely) or to RESOLVED, CLOSED or CANCELLED; RESOLVED may move to
    /// CLOSED; RESOLVED and CLOSED leave only by a reopen; CANCELLED is final; NEW is only
    /// ever the initial status.
    pub fn check_transition(self, to: Status) -> Result<(), TransitionError> {
        if to == Status::New {
            return Err(TransitionError::ToNew(to));
        }
        if to == self {
            return Err(TransitionError::Unchanged(self));
        }
        match self {
            Status::Cancelled => Err(TransitionError::Final),
            Status::Resolved if to == Status::Closed => Ok(()),
            Status::Resolved | Status::Closed => Err(TransitionError::NeedsReopen(self)),
            _ => Ok(()),
        }
    }

    /// A reopen moves a RESOLVED or CLOSED ticket back to PROCESSING and starts a new
    /// cycle.
    pub fn check_reopen(self) -> Result<(), TransitionError> {
        if self.is_resolution() {
            Ok(())
        } else {
            Err(TransitionError::NotReopenable(self))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::Confirmed => "CONFIRMED",
            Status::Processing => "PROCESSING",
            Status::RequiresDeliverables => "REQUIRES_DELIVERABLES",
            Status::OutOfScope => "OUT_OF_SCOPE",
            Status::Escalated => "ESCALATED",
            Status::Scheduled => "SCHEDULED",
            Status::SubmittedForReview => "SUBMITTED_FOR_REVIEW",
            Status::Resolved => "RESOLVED",
            Status::Closed => "CLOSED",
            Status::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition_of_the_base_table() {
        for from in Status::ALL {
            for to in Status::ALL {
                let got = from.check_transition(to);
                let want = if to == Status::New {
                    Err(TransitionError::ToNew(to))
                } else if from == to {
                    Err(TransitionError::Unchanged(from))
                } else if from == Status::Cancelled {
                    Err(TransitionError::Final)
                } else if from == Status::Resolved && to == Status::Closed {
                    Ok(())
                } else if from.is_resolution() {
                    Err(TransitionError::NeedsReopen(from))
                } else {
                    Ok(())
                };
                assert_eq!(got, want, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn only_resolved_and_closed_reopen() {
        for s in Status::ALL {
            assert_eq!(
                s.check_reopen().is_ok(),
                s == Status::Resolved || s == Status::Closed
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse(), Ok(s));
        }
    }
}
