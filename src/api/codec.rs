//! The protobuf codec of the generated services (build.rs `codec_path`): tonic's, except
//! that a request that cannot be decoded (garbage, a truncated message, a wrong wire type,
//! invalid UTF-8 in a string) is the caller's mistake, answered INVALID_ARGUMENT with a
//! `BadRequest` naming the field where prost knows it, not tonic's INTERNAL.

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::codegen::http;
use tonic_prost::ProstEncoder;

use super::error::{AppError, ErrorReason, Violation};

/// `application/grpc+proto` through prost, with undecodable input reported as the
/// caller's.
#[derive(Debug, Clone)]
pub struct ProstCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        ProstCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder { _pd: PhantomData }
    }
}

/// Decodes `U`, mapping a decode error to INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ProstDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: prost::Message + Default> Decoder for ProstDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| undecodable(&e))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The status of a request that does not decode: INVALID_ARGUMENT, with the field path
/// when prost's error names one.
pub fn undecodable(e: &prost::DecodeError) -> Status {
    let (field, reason) = field_of(&e.to_string());
    let description = format!("the request cannot be decoded: {reason}");
    match field {
        Some(field) => AppError::InvalidArgument(vec![Violation { field, description }]).into(),
        // Without a field, still the one mapping: an ErrorInfo with its reason.
        None => AppError::reasoned(ErrorReason::InvalidRequest, description).into(),
    }
}

/// prost describes an error as `failed to decode Protobuf message: Inner.field:
/// Outer.field: reason`, innermost first. The path is read outermost first, as the
/// request spells it (`event.request_id`).
fn field_of(text: &str) -> (Option<String>, String) {
    let body = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(text);
    let parts: Vec<&str> = body.split(": ").collect();
    // Leading `Message.field` frames; the rest is the reason (which may hold ": ").
    let frame = |p: &&str| {
        p.split_once('.').is_some_and(|(m, f)| {
            let ident =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            ident(m) && ident(f)
        })
    };
    let frames = parts.iter().take_while(|p| frame(p)).count();
    if frames == 0 || frames == parts.len() {
        return (None, body.to_string());
    }
    let path: Vec<&str> = parts[..frames]
        .iter()
        .rev()
        .filter_map(|p| p.split_once('.').map(|(_, f)| f))
        .collect();
    (Some(path.join(".")), parts[frames..].join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn the_field_path_is_read_outermost_first() {
        assert_eq!(
            field_of(
                "failed to decode Protobuf message: TicketEvent.request_id: \
                 RecordEventRequest.event: invalid string value: data is not UTF-8 encoded"
            ),
            (
                Some("event.request_id".to_string()),
                "invalid string value: data is not UTF-8 encoded".to_string()
            )
        );
        assert_eq!(
            field_of("failed to decode Protobuf message: invalid wire type value: 7"),
            (None, "invalid wire type value: 7".to_string())
        );
    }

    #[test]
    fn undecodable_requests_are_invalid_arguments() {
        // A string field holding bytes that are not UTF-8.
        let bytes = [0x0a, 0x02, 0xff, 0xfe];
        let e = crate::api::pb::GetTicketRequest::decode(&bytes[..]).expect_err("not UTF-8");
        let status = undecodable(&e);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("name"), "{status:?}");
    }
}

/// For services built on tonic's own codec (health, reflection): a request they could not
/// decode is answered INVALID_ARGUMENT too, as ours are. tonic answers such a request
/// with a trailers-only INTERNAL "failed to decode Protobuf message"; this layer turns
/// exactly that answer into the caller's error.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeErrorLayer;

impl<S> tower::Layer<S> for DecodeErrorLayer {
    type Service = DecodeErrors<S>;

    fn layer(&self, inner: S) -> DecodeErrors<S> {
        DecodeErrors { inner }
    }
}

#[derive(Debug, Clone)]
pub struct DecodeErrors<S> {
    inner: S,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for DecodeErrors<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await?;
            let Some(status) = Status::from_header_map(response.headers()) else {
                return Ok(response);
            };
            let prefix = "failed to decode Protobuf message";
            if status.code() != tonic::Code::Internal || !status.message().starts_with(prefix) {
                return Ok(response);
            }
            let (_, reason) = field_of(status.message());
            Ok(Status::from(AppError::invalid(
                "",
                format!("the request cannot be decoded: {reason}"),
            ))
            .into_http::<R>())
        })
    }
}
