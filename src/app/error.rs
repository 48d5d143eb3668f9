//! The application's errors: what went wrong in a use case, in the caller's terms, with a
//! stable reason programs can match on ([`ErrorReason`], listed in `docs/errors.md`).
//! Transports map them in one place each (gRPC: `api::error`).
//!
//! What an error echoes is bounded ([`MAX_ECHO`], [`MAX_MESSAGE`], [`MAX_VIOLATIONS`]),
//! so an answer stays small whatever the request sent; and it names nothing the caller
//! did not send or may not see (no other organisation's ids).

use crate::store::StoreError;

/// The `ErrorInfo.domain` of every error servicelevel raises.
pub const ERROR_DOMAIN: &str = "servicelevel.dev";
/// Longest echoed metadata value or resource name, in bytes.
pub const MAX_ECHO: usize = 128;
/// Longest error message, in bytes.
pub const MAX_MESSAGE: usize = 1_000;

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
    /// UNAUTHENTICATED (HTTP 401): a webhook delivery is unsigned, badly signed or
    /// stale.
    SignatureInvalid,
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
            ErrorReason::SignatureInvalid => "SIGNATURE_INVALID",
            ErrorReason::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            ErrorReason::ConcurrencyLimit => "CONCURRENCY_LIMIT",
            ErrorReason::DeadlineExceeded => "DEADLINE_EXCEEDED",
            ErrorReason::Internal => "INTERNAL",
        }
    }

    /// Every reason, for the documentation test.
    pub const ALL: [ErrorReason; 18] = [
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
        ErrorReason::SignatureInvalid,
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

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
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
pub const MAX_TEXT: usize = 200;

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

impl AppError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        AppError::InvalidArgument(vec![Violation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// An error with an explicit reason.
    pub fn reasoned(reason: ErrorReason, message: impl Into<String>) -> Self {
        AppError::Reasoned {
            reason,
            message: message.into(),
            resource: None,
            metadata: Vec::new(),
        }
    }

    /// The same error about `resource` (for `ResourceInfo`).
    pub fn with_resource(self, resource: Option<ResourceRef>) -> Self {
        match self {
            AppError::Reasoned {
                reason,
                message,
                metadata,
                ..
            } => AppError::Reasoned {
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
        if let AppError::Reasoned { metadata, .. } = &mut self {
            metadata.push((key, value.into()));
        }
        self
    }

    /// Its `ErrorInfo.reason`.
    pub fn reason(&self) -> ErrorReason {
        match self {
            AppError::InvalidArgument(_) => ErrorReason::InvalidRequest,
            AppError::NotFound(_) => ErrorReason::ResourceNotFound,
            AppError::AlreadyExists(_) => ErrorReason::ResourceExists,
            AppError::FailedPrecondition(_) => ErrorReason::PreconditionFailed,
            AppError::Aborted(_) => ErrorReason::VersionMismatch,
            AppError::PermissionDenied(_) => ErrorReason::OrganizationNotAllowed,
            AppError::Unavailable(_) => ErrorReason::DatabaseUnavailable,
            AppError::Internal(_) => ErrorReason::Internal,
            AppError::Reasoned { reason, .. } => *reason,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::NotFound(what),
            StoreError::AlreadyExists(what) => {
                AppError::AlreadyExists(format!("{what} already exists"))
            }
            StoreError::Unavailable(why) => AppError::Unavailable(why),
            StoreError::Corrupt(why) => AppError::Internal(why),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

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

    /// How many violations were recorded, listed or not.
    pub fn count(&self) -> usize {
        self.violations.len() + self.more
    }

    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Ok(value)` when nothing was recorded and the value is there.
    pub fn finish<T>(mut self, value: Option<T>) -> AppResult<T> {
        if self.more > 0 {
            self.violations.push(Violation {
                field: String::new(),
                description: format!("{} more violations not listed", self.more),
            });
        }
        match value {
            Some(v) if self.violations.is_empty() => Ok(v),
            _ if !self.violations.is_empty() => Err(AppError::InvalidArgument(self.violations)),
            _ => Err(AppError::Internal(
                "a parse failed without saying why".into(),
            )),
        }
    }
}
