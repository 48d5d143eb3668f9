//! The Connect protocol's wire pieces (https://connectrpc.com/docs/protocol): codes and
//! their HTTP statuses, the error body, envelopes, timeouts, and the gRPC framing the
//! calls are translated to. No I/O here: `http/mod.rs` moves the bytes.

use base64::Engine as _;
use http::{HeaderMap, StatusCode};
use prost::Message as _;
use tonic::Code;

use super::json::Registry;

/// A message's codec, from the request's content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Json,
    Proto,
}

/// Connect's name of a gRPC code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a unary error, as the protocol's table maps it.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

/// A failed call: its code, message and the google.rpc error details gRPC carried in
/// `grpc-status-details-bin`.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: Code,
    pub message: String,
    pub details: Vec<prost_types::Any>,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn from_status(status: &tonic::Status) -> Failure {
        let details = if status.details().is_empty() {
            Vec::new()
        } else {
            tonic_types::pb::Status::decode(status.details())
                .map(|s| s.details)
                .unwrap_or_default()
        };
        Failure {
            code: status.code(),
            message: status.message().to_string(),
            details,
        }
    }

    /// The outcome a gRPC response's headers or trailers state: `None` when they state
    /// none (no `grpc-status`), `Some(Ok)` for OK.
    pub fn from_grpc(headers: &HeaderMap) -> Option<Result<(), Failure>> {
        let status = tonic::Status::from_header_map(headers)?;
        Some(match status.code() {
            Code::Ok => Ok(()),
            _ => Err(Failure::from_status(&status)),
        })
    }

    /// Connect's error object: code, message, and each detail as its type, its bytes
    /// (base64) and, for readers, its JSON (`debug`).
    pub fn to_json(&self, registry: &Registry) -> serde_json::Value {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), code_name(self.code).into());
        if !self.message.is_empty() {
            error.insert("message".into(), self.message.clone().into());
        }
        if !self.details.is_empty() {
            let details = self
                .details
                .iter()
                .map(|any| {
                    let mut d = serde_json::Map::new();
                    let name = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
                    d.insert("type".into(), name.into());
                    d.insert(
                        "value".into(),
                        base64::engine::general_purpose::STANDARD_NO_PAD
                            .encode(&any.value)
                            .into(),
                    );
                    if let Some(debug) = registry.debug(any) {
                        d.insert("debug".into(), debug);
                    }
                    serde_json::Value::Object(d)
                })
                .collect();
            error.insert("details".into(), serde_json::Value::Array(details));
        }
        serde_json::Value::Object(error)
    }
}

/// Flags of an envelope.
pub const COMPRESSED: u8 = 0b01;
pub const END_STREAM: u8 = 0b10;

/// A message in an envelope (Connect streams) or a length-prefixed gRPC frame: the two
/// share one layout, a flags byte and a big-endian 32-bit length.
pub fn envelope(flags: u8, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(flags);
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The first complete envelope in `buf`, with how many bytes it took: `Ok(None)` when
/// more bytes are needed.
pub fn take_envelope(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let header: [u8; 5] = buf.get(..5)?.try_into().ok()?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let body = buf.get(5..5 + len)?;
    Some((header[0], body, 5 + len))
}

/// A `Connect-Timeout-Ms` value (at most 10 digits) as a `grpc-timeout` (at most 8
/// digits and a unit).
pub fn grpc_timeout(connect_timeout_ms: &str) -> Result<String, Failure> {
    let bad = || {
        Failure::new(
            Code::InvalidArgument,
            "connect-timeout-ms: must be a positive integer of at most 10 digits",
        )
    };
    if connect_timeout_ms.is_empty()
        || connect_timeout_ms.len() > 10
        || !connect_timeout_ms.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let ms: u64 = connect_timeout_ms.parse().map_err(|_| bad())?;
    Ok(if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", ms / 1000)
    })
}

/// The end of a Connect stream: its error if any, and the gRPC trailers as metadata.
pub fn end_stream(
    outcome: &Result<(), Failure>,
    trailers: &HeaderMap,
    registry: &Registry,
) -> Vec<u8> {
    let mut end = serde_json::Map::new();
    if let Err(f) = outcome {
        end.insert("error".into(), f.to_json(registry));
    }
    let metadata = metadata(trailers);
    if !metadata.is_empty() {
        end.insert("metadata".into(), serde_json::Value::Object(metadata));
    }
    serde_json::to_vec(&serde_json::Value::Object(end)).unwrap_or_else(|_| b"{}".to_vec())
}

/// Headers and trailers that are the application's, not gRPC's own.
pub fn is_application_metadata(name: &str) -> bool {
    !(name.starts_with("grpc-")
        || matches!(
            name,
            "content-type" | "content-length" | "te" | "trailer" | "transfer-encoding"
        ))
}

fn metadata(headers: &HeaderMap) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (name, value) in headers {
        if !is_application_metadata(name.as_str()) {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        let entry = out
            .entry(name.as_str().to_string())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(values) = entry {
            values.push(value.into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_protocols_name_and_status() {
        assert_eq!(code_name(Code::Cancelled), "canceled");
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
        assert_eq!(http_status(Code::ResourceExhausted).as_u16(), 429);
        assert_eq!(http_status(Code::FailedPrecondition).as_u16(), 400);
        assert_eq!(http_status(Code::Unauthenticated).as_u16(), 401);
        assert_eq!(http_status(Code::Unavailable).as_u16(), 503);
    }

    #[test]
    fn envelopes_round_trip_and_wait_for_their_bytes() {
        let e = envelope(END_STREAM, b"{}");
        assert_eq!(e, [2, 0, 0, 0, 2, b'{', b'}']);
        assert_eq!(take_envelope(&e), Some((END_STREAM, &b"{}"[..], 7)));
        assert_eq!(take_envelope(&e[..6]), None);
        assert_eq!(take_envelope(&e[..3]), None);
    }

    #[test]
    fn timeouts_translate_within_grpcs_eight_digits() {
        assert_eq!(grpc_timeout("250").ok(), Some("250m".into()));
        assert_eq!(grpc_timeout("9999999999").ok(), Some("9999999S".into()));
        assert!(grpc_timeout("").is_err());
        assert!(grpc_timeout("-1").is_err());
        assert!(grpc_timeout("12345678901").is_err());
    }

    #[test]
    fn end_stream_carries_the_error_and_application_trailers() {
        let registry = Registry::new().expect("descriptors");
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("5"));
        trailers.insert("x-trace", http::HeaderValue::from_static("abc"));
        let end = end_stream(
            &Err(Failure::new(Code::NotFound, "tickets/x not found")),
            &trailers,
            &registry,
        );
        let v: serde_json::Value = serde_json::from_slice(&end).expect("JSON");
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["metadata"]["x-trace"][0], "abc");
        assert!(v["metadata"].get("grpc-status").is_none());
        assert_eq!(end_stream(&Ok(()), &HeaderMap::new(), &registry), b"{}");
    }
}
