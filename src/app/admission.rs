//! Admission of requests, before any handler runs: at most
//! `server.max_concurrent_requests` in flight over all connections (beyond
//! it the answer is RESOURCE_EXHAUSTED at once, the body unread, which
//! callers treat as "no voucher"), and a deadline for a request's whole
//! body. Together they bound what half-sent requests can hold: in flight x
//! the largest message, for at most the deadline. A body that breaks the
//! gRPC framing (ends inside a message, an undefined flag, a compressed
//! message without `grpc-encoding`, no message at all for a unary request)
//! is the caller's mistake: INVALID_ARGUMENT naming `body`.
//!
//! Two kinds of request are kept apart from the shared limit: health checks
//! are never shed (they are tiny, and an orchestrator that sees a busy
//! server as dead would restart it), and Report calls have a small pool of
//! their own ([`REPORT_IN_FLIGHT`]): they wait on one shared pass over the
//! log, and must not hold the permits Decide needs while they wait.
//!
//! A JSON call ([`crate::grpc::web`]) is admitted as its gRPC method: the
//! same pools, permits and body deadline (its body is not gRPC-framed, so
//! the framing is not checked), and a refusal is its JSON error body.
//!
//! Before admission, [`GrpcAuthLayer`] refuses a call whose method needs a
//! role ([`crate::auth::grpc_needs`]) from its `authorization` header
//! alone: UNAUTHENTICATED without a known token, PERMISSION_DENIED with a
//! token of another role.

use crate::auth::{AuthError, Tokens};
use crate::engine::error::ServiceError;
use crate::throttle::LogThrottle;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::body::Body;
use tonic::Status;

static SHED: LogThrottle = LogThrottle::new(Duration::from_secs(10));
static REPORTS_SHED: LogThrottle = LogThrottle::new(Duration::from_secs(10));

/// Report calls in flight at once, apart from the shared limit. They all
/// wait on the same pass, so more callers add nothing but waiting tasks.
pub const REPORT_IN_FLIGHT: usize = 16;

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
const REPORT_PATH: &str = "/nudge.v1.Offers/Report";
/// Client-streaming services, whose empty body is a valid request.
const STREAMING_PREFIX: &str = "/grpc.reflection.";
static BODY_LATE: LogThrottle = LogThrottle::new(Duration::from_secs(10));

/// The tower layer of [`Admission`].
#[derive(Clone)]
pub struct AdmissionLayer {
    permits: Arc<Semaphore>,
    report_permits: Arc<Semaphore>,
    limit: usize,
    body_timeout: Duration,
}

impl AdmissionLayer {
    pub fn new(limit: usize, body_timeout: Duration) -> AdmissionLayer {
        AdmissionLayer {
            permits: Arc::new(Semaphore::new(limit)),
            report_permits: Arc::new(Semaphore::new(REPORT_IN_FLIGHT)),
            limit,
            body_timeout,
        }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            layer: self.clone(),
        }
    }
}

/// Sheds requests beyond the in-flight limit; puts a deadline on the body
/// of the others. A request's permit is held until both its body and its
/// response future are done.
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Admission<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let grpc = crate::grpc::web::is_grpc(req.headers());
        let path = crate::grpc::web::method_path(req.uri().path());
        let pool = if path.starts_with(HEALTH_PREFIX) {
            None
        } else if path == REPORT_PATH {
            Some((&self.layer.report_permits, REPORT_IN_FLIGHT, &REPORTS_SHED))
        } else {
            Some((&self.layer.permits, self.layer.limit, &SHED))
        };
        let permit = match pool {
            None => None,
            Some((permits, limit, throttle)) => match permits.clone().try_acquire_owned() {
                Ok(p) => Some(Arc::new(p)),
                Err(_) => {
                    let shed_pool = if path == REPORT_PATH {
                        "report"
                    } else {
                        "calls"
                    };
                    metrics::counter!("nudge_requests_shed_total", "pool" => shed_pool)
                        .increment(1);
                    if let Some(count) = throttle.hit() {
                        tracing::warn!(count, limit, path, "requests shed: too many in flight");
                    }
                    let status = Status::resource_exhausted(format!(
                        "the server is busy ({limit} requests in flight): no voucher this time, retry later"
                    ));
                    return Box::pin(std::future::ready(Ok(refusal(grpc, &status))));
                }
            },
        };
        let framing = grpc.then(|| Framing {
            compressed_allowed: req.headers().contains_key("grpc-encoding"),
            unary: !path.starts_with(STREAMING_PREFIX),
            ..Framing::default()
        });
        let timeout = self.layer.body_timeout;
        let held = permit.clone();
        let req = req.map(|body| Body::new(Deadline::new(body, timeout, held, framing)));
        let response = self.inner.call(req);
        Box::pin(async move {
            let r = response.await;
            drop(permit);
            r
        })
    }
}

/// Where the body is in its gRPC framing (a flag byte, a 4-byte length,
/// the message), so that a body ending inside a message, or with a flag
/// gRPC does not define, is the caller's mistake rather than INTERNAL.
#[derive(Default)]
struct Framing {
    header: [u8; 5],
    have: usize,
    body_left: u64,
    /// Messages whose header was read.
    messages: u64,
    /// The request names its compression (`grpc-encoding`), so flag 1 is
    /// defined.
    compressed_allowed: bool,
    /// A unary request: a body without any message is malformed.
    unary: bool,
}

impl Framing {
    fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                self.body_left -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = data.len().min(5 - self.have);
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                if self.header[0] > 1 {
                    return Err(format!(
                        "invalid gRPC compression flag {} (0 or 1)",
                        self.header[0]
                    ));
                }
                if self.header[0] == 1 && !self.compressed_allowed {
                    return Err("a compressed message without a grpc-encoding header".to_owned());
                }
                self.messages += 1;
                let [_, a, b, c, d] = self.header;
                self.body_left = u64::from(u32::from_be_bytes([a, b, c, d]));
                self.have = 0;
            }
        }
        Ok(())
    }

    fn inside_a_message(&self) -> bool {
        self.have > 0 || self.body_left > 0
    }

    /// Why the body, now ended, is malformed, if it is.
    fn at_end(&self) -> Option<&'static str> {
        if self.inside_a_message() {
            Some("the request body ended inside a message")
        } else if self.unary && self.messages == 0 {
            Some("the request body holds no message")
        } else {
            None
        }
    }
}

/// A refusal before any handler: a gRPC status, or the JSON error body.
fn refusal(grpc: bool, status: &Status) -> http::Response<Body> {
    if grpc {
        status.clone().into_http()
    } else {
        crate::grpc::web::error::error_response_tonic(status)
    }
}

fn malformed_body(why: impl Into<String>) -> Status {
    Status::from(ServiceError::invalid("body", why))
}

/// A request body that fails with DEADLINE_EXCEEDED when it has not ended
/// within its timeout; it releases its share of the permit when it ends.
struct Deadline {
    inner: Body,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    permit: Option<Arc<OwnedSemaphorePermit>>,
    /// `None`: not a gRPC body (JSON), nothing to check.
    framing: Option<Framing>,
    expired: bool,
}

impl Deadline {
    fn new(
        inner: Body,
        timeout: Duration,
        permit: Option<Arc<OwnedSemaphorePermit>>,
        framing: Option<Framing>,
    ) -> Deadline {
        Deadline {
            inner,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            permit,
            framing,
            expired: false,
        }
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let fed = match (frame.data_ref(), this.framing.as_mut()) {
                    (Some(d), Some(f)) => f.feed(d),
                    _ => Ok(()),
                };
                if let Err(why) = fed {
                    this.expired = true;
                    this.permit = None;
                    return Poll::Ready(Some(Err(malformed_body(why))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) if this.framing.as_ref().and_then(Framing::at_end).is_some() => {
                this.expired = true;
                this.permit = None;
                let why = this
                    .framing
                    .as_ref()
                    .and_then(Framing::at_end)
                    .unwrap_or_default();
                Poll::Ready(Some(Err(malformed_body(why))))
            }
            Poll::Ready(end_or_error) => {
                this.permit = None;
                Poll::Ready(end_or_error)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.expired = true;
                this.permit = None;
                if let Some(count) = BODY_LATE.hit() {
                    tracing::warn!(
                        count,
                        timeout_ms = this.timeout.as_millis() as u64,
                        "request bodies not received in time"
                    );
                }
                Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                    "the request body did not arrive within {} ms",
                    this.timeout.as_millis()
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired
            || (self.inner.is_end_stream()
                && self.framing.as_ref().and_then(Framing::at_end).is_none())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ---------------------------------------------------------------------------
// Bearer tokens.
// ---------------------------------------------------------------------------

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> tonic::Status {
        match e {
            AuthError::Missing | AuthError::Unknown => {
                tonic::Status::unauthenticated(e.to_string())
            }
            AuthError::Forbidden { .. } => tonic::Status::permission_denied(e.to_string()),
        }
    }
}

/// The tower layer of [`GrpcAuth`].
#[derive(Clone, Debug, Default)]
pub struct GrpcAuthLayer {
    tokens: Tokens,
}

impl GrpcAuthLayer {
    pub fn new(tokens: Tokens) -> GrpcAuthLayer {
        GrpcAuthLayer { tokens }
    }
}

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// Answers UNAUTHENTICATED or PERMISSION_DENIED from the `authorization`
/// header and the method path alone, the body unread.
#[derive(Clone, Debug)]
pub struct GrpcAuth<S> {
    inner: S,
    tokens: Tokens,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for GrpcAuth<S>
where
    S: tower::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
    >,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let path = crate::grpc::web::method_path(req.uri().path());
        if let Some(needed) = crate::auth::grpc_needs(&self.tokens, path) {
            let header = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap_or_default());
            if let Err(e) = self.tokens.authorize(header, needed) {
                tracing::debug!(path = req.uri().path(), error = %e, "call refused");
                let status = tonic::Status::from(e);
                let grpc = crate::grpc::web::is_grpc(req.headers());
                return Box::pin(std::future::ready(Ok(refusal(grpc, &status))));
            }
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::Framing;

    #[test]
    fn framing_follows_messages_across_chunks() {
        let mut f = Framing::default();
        f.feed(&[0, 0, 0]).unwrap();
        assert!(f.inside_a_message());
        f.feed(&[0, 3, 1, 2]).unwrap();
        assert!(f.inside_a_message());
        f.feed(&[3, 0, 0, 0, 0, 0]).unwrap();
        assert!(!f.inside_a_message(), "an empty message ends cleanly");
        assert!(f.feed(&[7, 0, 0, 0, 0]).unwrap_err().contains("flag 7"));
    }

    #[test]
    fn a_unary_body_needs_a_message_and_compression_needs_its_header() {
        let unary = Framing {
            unary: true,
            ..Framing::default()
        };
        assert_eq!(unary.at_end(), Some("the request body holds no message"));
        let streaming = Framing::default();
        assert_eq!(streaming.at_end(), None, "an empty stream is a stream");
        let mut plain = Framing::default();
        assert!(plain
            .feed(&[1, 0, 0, 0, 0])
            .unwrap_err()
            .contains("grpc-encoding"));
        let mut named = Framing {
            compressed_allowed: true,
            ..Framing::default()
        };
        named.feed(&[1, 0, 0, 0, 0]).unwrap();
    }
}
