//! The one mapping from the application's errors to gRPC statuses with AIP-193 details:
//! every status carries an `ErrorInfo` (a stable reason, the domain
//! `servicelevel.dev`, metadata), plus `BadRequest` for invalid arguments,
//! `ResourceInfo` for NOT_FOUND and ALREADY_EXISTS, and `RetryInfo` where a retry may work
//! (UNAVAILABLE, shed calls). `docs/errors.md` lists the reasons.
//!
//! A whole status stays well under the 16 KiB gRPC clients and proxies allow for trailers
//! (see [`DETAILS_BUDGET`]).

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

pub use crate::app::error::{
    AppError, AppResult, Check, ERROR_DOMAIN, ErrorReason, MAX_ECHO, MAX_MESSAGE, MAX_TEXT,
    MAX_VIOLATIONS, ResourceRef, Violation, bounded,
};

/// Most bytes of field violations in one `BadRequest`: the violations past it are
/// counted, not listed, whatever characters the request sent.
const DETAILS_BUDGET: usize = 4 * 1024;
/// How long a client should wait before retrying a call refused for load or an
/// unavailable database.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The gRPC code a status with this reason has.
pub fn code(reason: ErrorReason) -> Code {
    match reason {
        ErrorReason::InvalidRequest => Code::InvalidArgument,
        ErrorReason::ResourceNotFound => Code::NotFound,
        ErrorReason::ResourceExists | ErrorReason::TicketExists | ErrorReason::RequestIdReused => {
            Code::AlreadyExists
        }
        ErrorReason::PreconditionFailed => Code::FailedPrecondition,
        ErrorReason::VersionMismatch => Code::Aborted,
        ErrorReason::OrganizationNotAllowed
        | ErrorReason::ScopeMissing
        | ErrorReason::RestrictedClient
        | ErrorReason::MethodNotGranted => Code::PermissionDenied,
        ErrorReason::TokenMissing | ErrorReason::TokenInvalid | ErrorReason::SignatureInvalid => {
            Code::Unauthenticated
        }
        ErrorReason::DatabaseUnavailable => Code::Unavailable,
        ErrorReason::ConcurrencyLimit => Code::ResourceExhausted,
        ErrorReason::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorReason::Internal => Code::Internal,
    }
}

/// A status with `reason`'s code and an `ErrorInfo`, plus a `RetryInfo` where a retry
/// may work. For refusals raised outside the API handlers (authentication, load
/// shedding, deadlines), so that every status a client sees carries its reason.
pub fn status(
    reason: ErrorReason,
    message: impl AsRef<str>,
    metadata: &[(&'static str, String)],
) -> Status {
    let mut details = ErrorDetails::new();
    add_info(&mut details, reason, metadata);
    Status::with_error_details(
        code(reason),
        bounded(message.as_ref(), MAX_MESSAGE),
        details,
    )
}

fn add_info(details: &mut ErrorDetails, reason: ErrorReason, metadata: &[(&'static str, String)]) {
    details.set_error_info(
        reason.as_str(),
        ERROR_DOMAIN,
        metadata
            .iter()
            .map(|(k, v)| (k.to_string(), bounded(v, MAX_ECHO)))
            .collect::<std::collections::HashMap<_, _>>(),
    );
    if matches!(
        reason,
        ErrorReason::DatabaseUnavailable | ErrorReason::ConcurrencyLimit
    ) {
        details.set_retry_info(Some(RETRY_DELAY));
    }
}

/// The `BadRequest` list: the first violations, each bounded, within [`DETAILS_BUDGET`];
/// past it, one entry says how many more there are.
fn field_violations(violations: Vec<Violation>) -> Vec<FieldViolation> {
    let total = violations.len();
    let mut used = 0;
    let mut kept = Vec::new();
    for v in violations.into_iter().take(MAX_VIOLATIONS + 1) {
        let (field, description) = (
            bounded(&v.field, MAX_TEXT),
            bounded(&v.description, MAX_TEXT),
        );
        used += field.len() + description.len() + 8;
        if used > DETAILS_BUDGET {
            break;
        }
        kept.push(FieldViolation::new(field, description));
    }
    if kept.len() < total.min(MAX_VIOLATIONS + 1) {
        let more = total - kept.len();
        kept.push(FieldViolation::new(
            "",
            format!("{more} more violations not listed, to keep the answer small"),
        ));
    }
    kept
}

impl From<AppError> for Status {
    fn from(e: AppError) -> Status {
        let reason = e.reason();
        let message = bounded(&e.to_string(), MAX_MESSAGE);
        let mut details = ErrorDetails::new();
        let mut metadata: Vec<(&'static str, String)> = Vec::new();
        let mut resource = None;
        match e {
            AppError::InvalidArgument(violations) => {
                if let Some(first) = violations.first() {
                    metadata.push(("field", first.field.clone()));
                }
                metadata.push(("violations", violations.len().to_string()));
                details.set_bad_request(field_violations(violations));
            }
            AppError::NotFound(what) => resource = ResourceRef::parse(&what),
            AppError::AlreadyExists(what) => {
                resource = ResourceRef::parse(what.trim_end_matches(" already exists"));
            }
            AppError::Internal(_) => tracing::error!(error = %message, "internal error"),
            AppError::Reasoned {
                resource: r,
                metadata: m,
                ..
            } => {
                resource = r;
                metadata.extend(m);
            }
            _ => {}
        }
        if let Some(r) = &resource {
            metadata.push(("resource", r.name.clone()));
            details.set_resource_info(r.resource_type, r.name.clone(), "", "");
        }
        add_info(&mut details, reason, &metadata);
        Status::with_error_details(code(reason), message, details)
    }
}

/// A use case's outcome as a gRPC answer: the one place results meet `Status`.
pub fn respond<M>(r: AppResult<M>) -> Result<tonic::Response<M>, tonic::Status> {
    r.map(tonic::Response::new).map_err(tonic::Status::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    fn info(s: &Status) -> tonic_types::ErrorInfo {
        s.get_details_error_info().expect("an ErrorInfo")
    }

    #[test]
    fn every_status_carries_its_reason_and_domain() {
        for (e, reason) in [
            (
                AppError::invalid("ticket.priority", "unknown"),
                "INVALID_REQUEST",
            ),
            (
                AppError::NotFound("tickets/abc".into()),
                "RESOURCE_NOT_FOUND",
            ),
            (
                AppError::AlreadyExists("calendar support already exists".into()),
                "RESOURCE_EXISTS",
            ),
            (
                AppError::reasoned(ErrorReason::RequestIdReused, "reused"),
                "REQUEST_ID_REUSED",
            ),
            (
                AppError::FailedPrecondition("no".into()),
                "PRECONDITION_FAILED",
            ),
            (AppError::Aborted("v".into()), "VERSION_MISMATCH"),
            (
                AppError::PermissionDenied("x".into()),
                "ORGANIZATION_NOT_ALLOWED",
            ),
            (AppError::Unavailable("down".into()), "DATABASE_UNAVAILABLE"),
            (AppError::Internal("bug".into()), "INTERNAL"),
        ] {
            let code = code(e.reason());
            let s = Status::from(e);
            assert_eq!(s.code(), code);
            let i = info(&s);
            assert_eq!(i.reason, reason);
            assert_eq!(i.domain, ERROR_DOMAIN);
        }
    }

    #[test]
    fn not_found_and_already_exists_name_the_resource() {
        let s = Status::from(AppError::NotFound("tickets/abc".into()));
        let r = s.get_details_resource_info().expect("ResourceInfo");
        assert_eq!(
            (r.resource_type.as_str(), r.resource_name.as_str()),
            ("servicelevel.v1.Ticket", "tickets/abc")
        );
        assert_eq!(
            info(&s).metadata.get("resource").map(String::as_str),
            Some("tickets/abc")
        );
        let s = Status::from(AppError::from(StoreError::AlreadyExists(
            "calendar support".into(),
        )));
        let r = s.get_details_resource_info().expect("ResourceInfo");
        assert_eq!(r.resource_name, "calendars/support");
        // Not a resource name: no ResourceInfo rather than a guess.
        let s = Status::from(AppError::NotFound(
            "hours contract of organizations/acme".into(),
        ));
        assert!(s.get_details_resource_info().is_none());
    }

    #[test]
    fn unavailable_and_shed_calls_say_when_to_retry() {
        let s = Status::from(AppError::Unavailable("down".into()));
        assert_eq!(
            s.get_details_retry_info().and_then(|r| r.retry_delay),
            Some(RETRY_DELAY)
        );
        let s = status(
            ErrorReason::ConcurrencyLimit,
            "busy",
            &[("limit", "8".into())],
        );
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.get_details_retry_info().is_some());
        assert_eq!(
            info(&s).metadata.get("limit").map(String::as_str),
            Some("8")
        );
        assert!(
            Status::from(AppError::NotFound("x".into()))
                .get_details_retry_info()
                .is_none()
        );
    }

    #[test]
    fn a_status_stays_small_whatever_the_request_sent() {
        // 1,000 violations with long non-ASCII fields and descriptions.
        let long = "é".repeat(20_000);
        let violations = (0..1000)
            .map(|i| Violation {
                field: format!("{long}{i}"),
                description: long.clone(),
            })
            .collect();
        let s = Status::from(AppError::InvalidArgument(violations));
        let http = s.clone().into_http::<()>();
        let size: usize = http
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        assert!(size < 12 * 1024, "{size} bytes of headers");
        let bad = s.get_details_bad_request().expect("BadRequest");
        let listed = &bad.field_violations;
        assert!(listed.len() <= MAX_VIOLATIONS + 1);
        assert!(listed.iter().all(|v| v.field.len() <= MAX_TEXT + 3));
        let last = listed.last().expect("some listed");
        assert!(
            last.field.is_empty() && last.description.contains("more violations not listed"),
            "{last:?}"
        );
        assert_eq!(
            info(&s).metadata.get("violations").map(String::as_str),
            Some("1000")
        );
        // ASCII that fits: all 20, and the note.
        let few = (0..30)
            .map(|i| Violation {
                field: format!("items[{i}].name"),
                description: "must not be empty".into(),
            })
            .collect();
        let s = Status::from(AppError::InvalidArgument(few));
        let listed = s
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations;
        assert_eq!(listed.len(), MAX_VIOLATIONS + 1);
        assert!(s.message().len() <= MAX_MESSAGE);
    }

    #[test]
    fn every_reason_is_documented() {
        let doc = include_str!("../../docs/errors.md");
        for r in ErrorReason::ALL {
            assert!(
                doc.contains(&format!("| `{}` | ", r.as_str())),
                "{} is missing from docs/errors.md",
                r.as_str()
            );
        }
    }

    #[test]
    fn resource_refs_come_from_names_only() {
        assert_eq!(
            ResourceRef::parse("policy desk").map(|r| r.name),
            Some("policies/desk".to_string())
        );
        assert_eq!(ResourceRef::parse("row"), None);
        assert_eq!(ResourceRef::parse("tickets/a b"), None);
        assert_eq!(ResourceRef::parse("widgets/a"), None);
    }
}
