//! Admission of requests, before any handler runs: at most
//! `server.max_concurrent_requests` in flight over all connections (beyond
//! it the answer is RESOURCE_EXHAUSTED at once, the body unread, which
//! callers treat as "no voucher"), and a deadline for a request's whole
//! body. Together they bound what half-sent requests can hold: in flight x
//! the largest message, for at most the deadline. A body that breaks the
//! gRPC framing (ends inside a message, an undefined flag) is the caller's
//! mistake: INVALID_ARGUMENT naming `body`.

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
static BODY_LATE: LogThrottle = LogThrottle::new(Duration::from_secs(10));

/// The tower layer of [`Admission`].
#[derive(Clone)]
pub struct AdmissionLayer {
    permits: Arc<Semaphore>,
    limit: usize,
    body_timeout: Duration,
}

impl AdmissionLayer {
    pub fn new(limit: usize, body_timeout: Duration) -> AdmissionLayer {
        AdmissionLayer {
            permits: Arc::new(Semaphore::new(limit)),
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
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            if let Some(count) = SHED.hit() {
                tracing::warn!(
                    count,
                    max_concurrent_requests = self.layer.limit,
                    "requests shed: too many in flight"
                );
            }
            let status = Status::resource_exhausted(format!(
                "the server is busy ({} requests in flight): no voucher this time, retry later",
                self.layer.limit
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let permit = Arc::new(permit);
        let timeout = self.layer.body_timeout;
        let held = permit.clone();
        let req = req.map(|body| Body::new(Deadline::new(body, timeout, held)));
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
    framing: Framing,
    expired: bool,
}

impl Deadline {
    fn new(inner: Body, timeout: Duration, permit: Arc<OwnedSemaphorePermit>) -> Deadline {
        Deadline {
            inner,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            permit: Some(permit),
            framing: Framing::default(),
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
                if let Some(Err(why)) = frame.data_ref().map(|d| this.framing.feed(d)) {
                    this.expired = true;
                    this.permit = None;
                    return Poll::Ready(Some(Err(malformed_body(why))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) if this.framing.inside_a_message() => {
                this.expired = true;
                this.permit = None;
                Poll::Ready(Some(Err(malformed_body(
                    "the request body ended inside a message",
                ))))
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
        self.expired || (self.inner.is_end_stream() && !self.framing.inside_a_message())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
}
