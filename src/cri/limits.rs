//! Oversized messages answer as containerd (grpc-go) answers them.
//!
//! tonic refuses a message over its limit with `OutOfRange` and a message of
//! its own; grpc-go, under containerd's CRI, answers `ResourceExhausted` with
//! `grpc: received message larger than max (N vs. M)` for a request and
//! `grpc: trying to send message larger than max (N vs. M)` for a reply, and
//! clients (the kubelet, crictl) match on that code. tonic checks the length
//! prefix before it buffers a message, so the limit itself stays tonic's: this
//! layer only rewrites the status it reports, in the headers of a
//! trailers-only answer (a refused request) and in the trailers of a reply
//! whose message could not be encoded. The connection and other calls are
//! untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};
use tonic::{Code, Status};

/// Wraps the gRPC routes: see the module docs.
#[derive(Clone, Debug, Default)]
pub struct ContainerdLimits;

impl<S> tower::Layer<S> for ContainerdLimits {
    type Service = LimitStatus<S>;
    fn layer(&self, inner: S) -> LimitStatus<S> {
        LimitStatus { inner }
    }
}

#[derive(Clone, Debug)]
pub struct LimitStatus<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, Req> tower::Service<Req> for LimitStatus<S>
where
    S: tower::Service<Req, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let (mut parts, body) = response.into_parts();
            rewrite(&mut parts.headers);
            Ok(http::Response::from_parts(
                parts,
                tonic::body::Body::new(Rewritten(body)),
            ))
        })
    }
}

/// A reply body whose trailers are rewritten.
struct Rewritten(tonic::body::Body);

impl Body for Rewritten {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.0).poll_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        rewrite(&mut trailers);
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// Replaces tonic's too-large status in `headers`, if it is there.
fn rewrite(headers: &mut HeaderMap) {
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"11") {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let Some(replacement) = containerd_status(&status) else {
        return;
    };
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    if replacement.add_header(headers).is_err() {
        tracing::warn!("cannot write the ResourceExhausted status of an oversized message");
    }
}

/// grpc-go's status for tonic's OutOfRange on a too-large message.
pub fn containerd_status(status: &Status) -> Option<Status> {
    if status.code() != Code::OutOfRange {
        return None;
    }
    let message = status.message();
    let direction = if message.starts_with("Error, decoded message length too large") {
        "received"
    } else if message.starts_with("Error, encoded message length too large") {
        "trying to send"
    } else {
        return None;
    };
    let (found, limit) = sizes(message)?;
    Some(Status::resource_exhausted(format!(
        "grpc: {direction} message larger than max ({found} vs. {limit})"
    )))
}

/// The two sizes in "... found N bytes, the limit is: M bytes".
fn sizes(message: &str) -> Option<(u64, u64)> {
    let after = |key: &str| -> Option<u64> {
        let rest = &message[message.find(key)? + key.len()..];
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some((after("found")?, after("the limit is:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_messages_become_grpc_gos() {
        let decode = Status::out_of_range(
            "Error, decoded message length too large: found 17825797 bytes, the limit is: 16777216 bytes",
        );
        let mapped = containerd_status(&decode).unwrap();
        assert_eq!(mapped.code(), Code::ResourceExhausted);
        assert_eq!(
            mapped.message(),
            "grpc: received message larger than max (17825797 vs. 16777216)"
        );
        let encode = Status::out_of_range(
            "Error, encoded message length too large: found 20 bytes, the limit is: 10 bytes",
        );
        assert_eq!(
            containerd_status(&encode).unwrap().message(),
            "grpc: trying to send message larger than max (20 vs. 10)"
        );
        // Other statuses pass through.
        assert!(containerd_status(&Status::out_of_range("index 3")).is_none());
        assert!(
            containerd_status(&Status::internal(
                "Error, decoded message length too large: found 1 bytes, the limit is: 0 bytes"
            ))
            .is_none()
        );
    }

    #[test]
    fn headers_are_rewritten_in_place() {
        let status = Status::out_of_range(
            "Error, decoded message length too large: found 5 bytes, the limit is: 4 bytes",
        );
        let mut headers = HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        headers.insert("content-type", "application/grpc".parse().unwrap());
        rewrite(&mut headers);
        let after = Status::from_header_map(&headers).unwrap();
        assert_eq!(after.code(), Code::ResourceExhausted);
        assert_eq!(
            after.message(),
            "grpc: received message larger than max (5 vs. 4)"
        );
        assert_eq!(headers["content-type"], "application/grpc");
        // An OK answer is left alone.
        let mut ok = HeaderMap::new();
        Status::ok("").add_header(&mut ok).unwrap();
        let before = ok.clone();
        rewrite(&mut ok);
        assert_eq!(ok, before);
    }
}
