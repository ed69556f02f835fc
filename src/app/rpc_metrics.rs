//! Per-call metrics of the gRPC port: calls by method, status code and
//! protocol, and their latency. A tower layer outside admission, so that
//! shed calls are counted with the code they were answered with. A JSON
//! call counts under its gRPC method and code (the same series, told apart
//! by `protocol`), so a dashboard's totals and error rates cover every
//! client whichever protocol it speaks.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Methods counted by name; any other path is counted as `other`, so a
/// client cannot create label values.
const METHODS: &[&str] = &[
    "/nudge.v1.Offers/Track",
    "/nudge.v1.Offers/Decide",
    "/nudge.v1.Offers/Redeem",
    "/nudge.v1.Offers/RecordOutcome",
    "/nudge.v1.Offers/Budget",
    "/nudge.v1.Offers/Report",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

fn method_label(path: &str) -> &'static str {
    let path = crate::grpc::web::method_path(path);
    METHODS
        .iter()
        .find(|m| **m == path)
        .map_or("other", |m| m.rsplit('/').next().unwrap_or("other"))
}

/// The status a response carries in its headers (every error answered by
/// a handler or a layer); none there means the call succeeded.
fn code_label<B>(res: &http::Response<B>) -> &'static str {
    // A JSON answer names its code in the extensions.
    if let Some(code) = res.extensions().get::<tonic::Code>() {
        return code_name(*code);
    }
    let code = res
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from);
    code_name(code)
}

/// The code's name as its `Debug` writes it, without formatting a string
/// for every call.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The protocol of a call: gRPC-Web is marked by the layer that translates
/// it (it looks like gRPC afterwards); the rest is told by content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    GrpcWeb,
    Json,
}

impl Protocol {
    fn of<B>(req: &http::Request<B>) -> Protocol {
        if let Some(p) = req.extensions().get::<Protocol>() {
            return *p;
        }
        if crate::grpc::web::is_grpc(req.headers()) {
            Protocol::Grpc
        } else {
            Protocol::Json
        }
    }

    fn label(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc-web",
            Protocol::Json => "json",
        }
    }
}

/// Adds [`RpcMetrics`] around a service.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics { inner }
    }
}

/// Counts `nudge_rpc_requests_total{method,code,protocol}` and records
/// `nudge_rpc_duration_seconds{method}`.
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path());
        let protocol = Protocol::of(&req).label();
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => code_label(r),
                Err(_) => "transport error",
            };
            metrics::counter!("nudge_rpc_requests_total", "method" => method, "code" => code, "protocol" => protocol)
                .increment(1);
            metrics::histogram!("nudge_rpc_duration_seconds", "method" => method)
                .record(start.elapsed().as_secs_f64());
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_the_debug_names() {
        for i in 0..=16 {
            let code = tonic::Code::from(i);
            assert_eq!(code_name(code), format!("{code:?}"));
        }
    }

    #[test]
    fn unknown_paths_make_no_new_label_values() {
        assert_eq!(method_label("/nudge.v1.Offers/Decide"), "Decide");
        assert_eq!(method_label("/nudge.v1.Offers/Nope"), "other");
        assert_eq!(method_label("/x"), "other");
        assert_eq!(method_label("/v1/outcome"), "RecordOutcome");
    }

    #[test]
    fn status_comes_from_the_header_or_is_ok() {
        let ok = http::Response::new(());
        assert_eq!(code_label(&ok), "Ok");
        let bad = http::Response::builder()
            .header("grpc-status", "3")
            .body(())
            .unwrap();
        assert_eq!(code_label(&bad), "InvalidArgument");
    }
}
