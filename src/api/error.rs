//! The API's errors and their one mapping to gRPC status codes (AIP-193).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::store::StoreError;

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

/// `s` cut to at most `max` characters, marked when cut.
pub fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => format!("{}...", &s[..end]),
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        ApiError::InvalidArgument(vec![Violation {
            field: field.into(),
            description: description.into(),
        }])
    }

    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::Aborted(_) => Code::Aborted,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
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

/// Longest message of a status, in characters. With at most [`MAX_VIOLATIONS`] bounded
/// violations in the details, a whole status stays well under 16 KiB.
const MAX_MESSAGE: usize = 1_000;

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let message = bounded(&e.to_string(), MAX_MESSAGE);
        match e {
            ApiError::InvalidArgument(violations) => {
                let details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .take(MAX_VIOLATIONS + 1)
                        .map(|v| {
                            FieldViolation::new(
                                bounded(&v.field, MAX_TEXT),
                                bounded(&v.description, MAX_TEXT),
                            )
                        })
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::Internal(_) => {
                tracing::error!(error = %message, "internal error");
                Status::new(Code::Internal, message)
            }
            other => Status::new(other.code(), message),
        }
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
