//! The API's errors and their one mapping to gRPC statuses with AIP-193 details: every
//! status carries an `ErrorInfo` (a stable [`ErrorReason`], the domain [`ERROR_DOMAIN`],
//! metadata), plus `BadRequest` for invalid arguments, `ResourceInfo` for NOT_FOUND and
//! ALREADY_EXISTS, and `RetryInfo` where a retry may work (UNAVAILABLE, shed calls).
//! `docs/errors.md` lists the reasons.
//!
//! What a status echoes is bounded ([`MAX_ECHO`], [`MAX_MESSAGE`], [`MAX_VIOLATIONS`],
//! [`DETAILS_BUDGET`]), so the whole status stays well under the 16 KiB gRPC clients and
//! proxies allow for trailers; and it names nothing the caller did not send or may not
//! see (no other organisation's ids).

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::store::StoreError;

/// The `ErrorInfo.domain` of every error servicelevel raises.
pub const ERROR_DOMAIN: &str = "servicelevel.dev";
/// Longest echoed metadata value or resource name, in bytes.
pub const MAX_ECHO: usize = 128;
/// Longest status message, in bytes. With at most [`MAX_VIOLATIONS`] bounded violations
/// in the details, and those within [`DETAILS_BUDGET`], a whole status stays well under
/// 16 KiB.
pub const MAX_MESSAGE: usize = 1_000;
/// Most bytes of field violations in one `BadRequest`: the violations past it are
/// counted, not listed, whatever characters the request sent.
const DETAILS_BUDGET: usize = 4 * 1024;
/// How long a client should wait before retrying a call refused for load or an
/// unavailable database.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Why a call failed, for programs: `ErrorInfo.reason`. Stable: a reason is never
/// renamed or reused for another meaning (docs/errors.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// INVALID_ARGUMENT: fields of the request are invalid (`BadRequest` lists them).
    InvalidRequest,
    /// NOT_FOUND: the resource named does not exist.
    ResourceNotFound,
    /// ALREADY_EXISTS: a resource with that id already exists.
    ResourceExists,
    /// ALREADY_EXISTS: a ticket with that source system and external id already exists.
    TicketExists,
    /// ALREADY_EXISTS: the `request_id` was used before for a different request.
    RequestIdReused,
    /// FAILED_PRECONDITION: the request is valid but the state forbids it.
    PreconditionFailed,
    /// ABORTED: the resource is not at the version the caller expected.
    VersionMismatch,
    /// PERMISSION_DENIED: the API client may not touch that organisation.
    OrganizationNotAllowed,
    /// PERMISSION_DENIED: the API client lacks the scope the method needs.
    ScopeMissing,
    /// PERMISSION_DENIED: a client restricted to organisations called a method that
    /// changes what every organisation shares.
    RestrictedClient,
    /// PERMISSION_DENIED: no scope grants the method (unknown to this server).
    MethodNotGranted,
    /// UNAUTHENTICATED: the call carries no bearer token.
    TokenMissing,
    /// UNAUTHENTICATED: the token is not valid, or revoked.
    TokenInvalid,
    /// UNAVAILABLE: the database cannot answer now (`RetryInfo`).
    DatabaseUnavailable,
    /// RESOURCE_EXHAUSTED: the server is at its concurrency limit (`RetryInfo`).
    ConcurrencyLimit,
    /// DEADLINE_EXCEEDED: the call ran past its deadline and was dropped.
    DeadlineExceeded,
    /// INTERNAL: a bug or corrupt data; the message says what.
    Internal,
}

impl ErrorReason {
    /// The reason as sent: UPPER_SNAKE_CASE.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::InvalidRequest => "INVALID_REQUEST",
            ErrorReason::ResourceNotFound => "RESOURCE_NOT_FOUND",
            ErrorReason::ResourceExists => "RESOURCE_EXISTS",
            ErrorReason::TicketExists => "TICKET_EXISTS",
            ErrorReason::RequestIdReused => "REQUEST_ID_REUSED",
            ErrorReason::PreconditionFailed => "PRECONDITION_FAILED",
            ErrorReason::VersionMismatch => "VERSION_MISMATCH",
            ErrorReason::OrganizationNotAllowed => "ORGANIZATION_NOT_ALLOWED",
            ErrorReason::ScopeMissing => "SCOPE_MISSING",
            ErrorReason::RestrictedClient => "RESTRICTED_CLIENT",
            ErrorReason::MethodNotGranted => "METHOD_NOT_GRANTED",
            ErrorReason::TokenMissing => "TOKEN_MISSING",
            ErrorReason::TokenInvalid => "TOKEN_INVALID",
            ErrorReason::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            ErrorReason::ConcurrencyLimit => "CONCURRENCY_LIMIT",
            ErrorReason::DeadlineExceeded => "DEADLINE_EXCEEDED",
            ErrorReason::Internal => "INTERNAL",
        }
    }

    /// The gRPC code a status with this reason has.
    pub fn code(self) -> Code {
        match self {
            ErrorReason::InvalidRequest => Code::InvalidArgument,
            ErrorReason::ResourceNotFound => Code::NotFound,
            ErrorReason::ResourceExists
            | ErrorReason::TicketExists
            | ErrorReason::RequestIdReused => Code::AlreadyExists,
            ErrorReason::PreconditionFailed => Code::FailedPrecondition,
            ErrorReason::VersionMismatch => Code::Aborted,
            ErrorReason::OrganizationNotAllowed
            | ErrorReason::ScopeMissing
            | ErrorReason::RestrictedClient
            | ErrorReason::MethodNotGranted => Code::PermissionDenied,
            ErrorReason::TokenMissing | ErrorReason::TokenInvalid => Code::Unauthenticated,
            ErrorReason::DatabaseUnavailable => Code::Unavailable,
            ErrorReason::ConcurrencyLimit => Code::ResourceExhausted,
            ErrorReason::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorReason::Internal => Code::Internal,
        }
    }

    /// Every reason, for the documentation test.
    pub const ALL: [ErrorReason; 17] = [
        ErrorReason::InvalidRequest,
        ErrorReason::ResourceNotFound,
        ErrorReason::ResourceExists,
        ErrorReason::TicketExists,
        ErrorReason::RequestIdReused,
        ErrorReason::PreconditionFailed,
        ErrorReason::VersionMismatch,
        ErrorReason::OrganizationNotAllowed,
        ErrorReason::ScopeMissing,
        ErrorReason::RestrictedClient,
        ErrorReason::MethodNotGranted,
        ErrorReason::TokenMissing,
        ErrorReason::TokenInvalid,
        ErrorReason::DatabaseUnavailable,
        ErrorReason::ConcurrencyLimit,
        ErrorReason::DeadlineExceeded,
        ErrorReason::Internal,
    ];
}

/// The resource an error is about, for `ResourceInfo`: its type (the proto message) and
/// its name (`tickets/…`, `organizations/acme`), as the caller named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRef {
    pub resource_type: &'static str,
    pub name: String,
}

impl ResourceRef {
    /// The resource a name (`calendars/support`) or a store's description
    /// (`calendar support`) denotes, when it is one of the API's collections.
    pub fn parse(what: &str) -> Option<ResourceRef> {
        const KINDS: [(&str, &str, &str); 6] = [
            ("tickets", "ticket", "servicelevel.v1.Ticket"),
            (
                "organizations",
                "organization",
                "servicelevel.v1.Organization",
            ),
            ("calendars", "calendar", "servicelevel.v1.Calendar"),
            ("policies", "policy", "servicelevel.v1.Policy"),
            ("plans", "plan", "servicelevel.v1.Plan"),
            ("packs", "pack", "servicelevel.v1.Pack"),
        ];
        let (collection, id) = what
            .split_once('/')
            .filter(|(c, _)| KINDS.iter().any(|k| k.0 == *c))
            .or_else(|| {
                let (kind, id) = what.split_once(' ')?;
                KINDS.iter().find(|k| k.1 == kind).map(|k| (k.0, id))
            })?;
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
        if id.is_empty() || !id.chars().all(valid) {
            return None;
        }
        let kind = KINDS.iter().find(|k| k.0 == collection)?;
        Some(ResourceRef {
            resource_type: kind.2,
            name: bounded(&format!("{collection}/{id}"), MAX_ECHO),
        })
    }
}

/// One invalid field: its path as the request spells it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input: every violation found, each with its field.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<Violation>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well-formed but the state forbids it: an illegal transition, an
    /// unmet guard, a late event that conflicts with a stored one.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrency conflict: the resource is not at the version the caller read.
    #[error("{0}")]
    Aborted(String),
    /// The caller may not touch this: an organisation outside its API client's.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("the service cannot answer now: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// An error whose reason (and code) the raising code states, where the kind alone
    /// does not tell programs enough (two different ALREADY_EXISTS, say).
    #[error("{message}")]
    Reasoned {
        reason: ErrorReason,
        message: String,
        resource: Option<ResourceRef>,
        metadata: Vec<(&'static str, String)>,
    },
}

/// Violations named in the message; every one kept is in the `BadRequest` details.
const IN_MESSAGE: usize = 5;

fn describe(v: &[Violation]) -> String {
    let mut text = v
        .iter()
        .take(IN_MESSAGE)
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    if v.len() > IN_MESSAGE {
        text.push_str(&format!(
            "; and {} more in the details",
            v.len() - IN_MESSAGE
        ));
    }
    text
}

/// Most violations kept of one request: a client fixes them in rounds, and the answer
/// stays small (a status travels in HTTP/2 trailers, which clients cap at 8-16 KiB).
pub const MAX_VIOLATIONS: usize = 20;
/// Longest field path and description kept, in characters: an echoed value (a 5,000
/// character time zone) is cut to a prefix.
const MAX_TEXT: usize = 200;

/// `s` cut to at most `max` bytes, on a character boundary (so at most `max`
/// characters), marked when cut: what a status echoes stays small whatever the
/// characters.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        ApiError::InvalidArgument(vec![Violation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// An error with an explicit reason.
    pub fn reasoned(reason: ErrorReason, message: impl Into<String>) -> Self {
        ApiError::Reasoned {
            reason,
            message: message.into(),
            resource: None,
            metadata: Vec::new(),
        }
    }

    /// The same error about `resource` (for `ResourceInfo`).
    pub fn with_resource(self, resource: Option<ResourceRef>) -> Self {
        match self {
            ApiError::Reasoned {
                reason,
                message,
                metadata,
                ..
            } => ApiError::Reasoned {
                reason,
                message,
                resource,
                metadata,
            },
            other => other,
        }
    }

    /// The same error with one more `ErrorInfo.metadata` entry.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        if let ApiError::Reasoned { metadata, .. } = &mut self {
            metadata.push((key, value.into()));
        }
        self
    }

    pub fn code(&self) -> Code {
        self.reason().code()
    }

    /// Its `ErrorInfo.reason`.
    pub fn reason(&self) -> ErrorReason {
        match self {
            ApiError::InvalidArgument(_) => ErrorReason::InvalidRequest,
            ApiError::NotFound(_) => ErrorReason::ResourceNotFound,
            ApiError::AlreadyExists(_) => ErrorReason::ResourceExists,
            ApiError::FailedPrecondition(_) => ErrorReason::PreconditionFailed,
            ApiError::Aborted(_) => ErrorReason::VersionMismatch,
            ApiError::PermissionDenied(_) => ErrorReason::OrganizationNotAllowed,
            ApiError::Unavailable(_) => ErrorReason::DatabaseUnavailable,
            ApiError::Internal(_) => ErrorReason::Internal,
            ApiError::Reasoned { reason, .. } => *reason,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::AlreadyExists(what) => {
                ApiError::AlreadyExists(format!("{what} already exists"))
            }
            StoreError::Unavailable(why) => ApiError::Unavailable(why),
            StoreError::Corrupt(why) => ApiError::Internal(why),
        }
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
        reason.code(),
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

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let reason = e.reason();
        let message = bounded(&e.to_string(), MAX_MESSAGE);
        let mut details = ErrorDetails::new();
        let mut metadata: Vec<(&'static str, String)> = Vec::new();
        let mut resource = None;
        match e {
            ApiError::InvalidArgument(violations) => {
                if let Some(first) = violations.first() {
                    metadata.push(("field", first.field.clone()));
                }
                metadata.push(("violations", violations.len().to_string()));
                details.set_bad_request(field_violations(violations));
            }
            ApiError::NotFound(what) => resource = ResourceRef::parse(&what),
            ApiError::AlreadyExists(what) => {
                resource = ResourceRef::parse(what.trim_end_matches(" already exists"));
            }
            ApiError::Internal(_) => tracing::error!(error = %message, "internal error"),
            ApiError::Reasoned {
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
        Status::with_error_details(reason.code(), message, details)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Collects the violations of a request before failing, so a client fixes them all at
/// once: the first [`MAX_VIOLATIONS`], each cut to a bounded length, and how many more.
#[derive(Debug, Default)]
pub struct Check {
    violations: Vec<Violation>,
    more: usize,
}

impl Check {
    pub fn new() -> Self {
        Check::default()
    }

    pub fn fail(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.violations.len() >= MAX_VIOLATIONS {
            self.more += 1;
            return;
        }
        self.violations.push(Violation {
            field: bounded(&field.into(), MAX_TEXT),
            description: bounded(&description.into(), MAX_TEXT),
        });
    }

    /// The value, or `None` with the error recorded against `field`.
    pub fn ok<T, E: std::fmt::Display>(
        &mut self,
        field: impl Into<String>,
        r: Result<T, E>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(field, e.to_string());
                None
            }
        }
    }

    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Ok(value)` when nothing was recorded and the value is there.
    pub fn finish<T>(mut self, value: Option<T>) -> ApiResult<T> {
        if self.more > 0 {
            self.violations.push(Violation {
                field: String::new(),
                description: format!("{} more violations not listed", self.more),
            });
        }
        match value {
            Some(v) if self.violations.is_empty() => Ok(v),
            _ if !self.violations.is_empty() => Err(ApiError::InvalidArgument(self.violations)),
            _ => Err(ApiError::Internal(
                "a parse failed without saying why".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(s: &Status) -> tonic_types::ErrorInfo {
        s.get_details_error_info().expect("an ErrorInfo")
    }

    #[test]
    fn every_status_carries_its_reason_and_domain() {
        for (e, reason) in [
            (
                ApiError::invalid("ticket.priority", "unknown"),
                "INVALID_REQUEST",
            ),
            (
                ApiError::NotFound("tickets/abc".into()),
                "RESOURCE_NOT_FOUND",
            ),
            (
                ApiError::AlreadyExists("calendar support already exists".into()),
                "RESOURCE_EXISTS",
            ),
            (
                ApiError::reasoned(ErrorReason::RequestIdReused, "reused"),
                "REQUEST_ID_REUSED",
            ),
            (
                ApiError::FailedPrecondition("no".into()),
                "PRECONDITION_FAILED",
            ),
            (ApiError::Aborted("v".into()), "VERSION_MISMATCH"),
            (
                ApiError::PermissionDenied("x".into()),
                "ORGANIZATION_NOT_ALLOWED",
            ),
            (ApiError::Unavailable("down".into()), "DATABASE_UNAVAILABLE"),
            (ApiError::Internal("bug".into()), "INTERNAL"),
        ] {
            let code = e.code();
            let s = Status::from(e);
            assert_eq!(s.code(), code);
            let i = info(&s);
            assert_eq!(i.reason, reason);
            assert_eq!(i.domain, ERROR_DOMAIN);
        }
    }

    #[test]
    fn not_found_and_already_exists_name_the_resource() {
        let s = Status::from(ApiError::NotFound("tickets/abc".into()));
        let r = s.get_details_resource_info().expect("ResourceInfo");
        assert_eq!(
            (r.resource_type.as_str(), r.resource_name.as_str()),
            ("servicelevel.v1.Ticket", "tickets/abc")
        );
        assert_eq!(
            info(&s).metadata.get("resource").map(String::as_str),
            Some("tickets/abc")
        );
        let s = Status::from(ApiError::from(StoreError::AlreadyExists(
            "calendar support".into(),
        )));
        let r = s.get_details_resource_info().expect("ResourceInfo");
        assert_eq!(r.resource_name, "calendars/support");
        // Not a resource name: no ResourceInfo rather than a guess.
        let s = Status::from(ApiError::NotFound(
            "hours contract of organizations/acme".into(),
        ));
        assert!(s.get_details_resource_info().is_none());
    }

    #[test]
    fn unavailable_and_shed_calls_say_when_to_retry() {
        let s = Status::from(ApiError::Unavailable("down".into()));
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
            Status::from(ApiError::NotFound("x".into()))
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
        let s = Status::from(ApiError::InvalidArgument(violations));
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
        let s = Status::from(ApiError::InvalidArgument(few));
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
