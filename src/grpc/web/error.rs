//! Errors of the JSON API: the one mapping of gRPC codes to HTTP statuses,
//! and the JSON error body. A JSON client gets the same code, message and
//! field violations a gRPC client gets, in HTTP's words.

use http::{header, HeaderValue, StatusCode};
use serde::Serialize;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The HTTP status of a gRPC code. Exhaustive, so that a code tonic adds
/// later breaks the build until it is placed here.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The canonical name of a code, as gRPC spells it (`INVALID_ARGUMENT`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// One `google.rpc.BadRequest` field violation.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// The JSON error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    pub field_violations: Vec<FieldViolation>,
}

impl ErrorBody {
    /// The body of a status, its field violations read from the
    /// `google.rpc.BadRequest` detail when it carries one.
    pub fn of(status: &Status) -> ErrorBody {
        let field_violations = status
            .get_details_bad_request()
            .map(|b| {
                b.field_violations
                    .into_iter()
                    .map(|v| FieldViolation {
                        field: v.field,
                        description: v.description,
                    })
                    .collect()
            })
            .unwrap_or_default();
        ErrorBody {
            code: code_name(status.code()),
            message: status.message().to_owned(),
            field_violations,
        }
    }
}

/// The HTTP response of a status: its mapped HTTP status and the JSON
/// error body. The gRPC code rides in the response's extensions, so that
/// the per-call metrics count a JSON call under the same code.
pub fn error_response(status: &Status) -> http::Response<axum::body::Body> {
    let body = serde_json::to_vec(&ErrorBody::of(status)).unwrap_or_default();
    let mut res = http::Response::new(axum::body::Body::from(body));
    *res.status_mut() = http_status(status.code());
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.extensions_mut().insert(status.code());
    res
}

/// [`error_response`] with tonic's body type, for the tower layers that
/// answer before any handler (auth, admission).
pub fn error_response_tonic(status: &Status) -> http::Response<tonic::body::Body> {
    error_response(status).map(tonic::body::Body::new)
}

/// An error whose status is not a gRPC code's (415, 413, 404, 405): the
/// nearest code names it in the body and the metrics.
pub fn http_error(
    http: StatusCode,
    code: Code,
    message: impl Into<String>,
) -> http::Response<axum::body::Body> {
    let mut res = error_response(&Status::new(code, message));
    *res.status_mut() = http;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_http_status() {
        let cases = [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 409),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, http) in cases {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
            assert_eq!(
                code_name(code).replace('_', "").to_lowercase(),
                format!("{code:?}").to_lowercase(),
                "{code:?}"
            );
        }
    }

    #[test]
    fn the_body_carries_the_field_violations() {
        let status: Status = crate::engine::error::ServiceError::invalid(
            "events[2].product_id",
            "required for a product page",
        )
        .into();
        let body = serde_json::to_value(ErrorBody::of(&status)).unwrap();
        assert_eq!(body["code"], "INVALID_ARGUMENT");
        assert_eq!(body["field_violations"][0]["field"], "events[2].product_id");
        assert_eq!(
            body["field_violations"][0]["description"],
            "required for a product page"
        );
        let res = error_response(&status);
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.extensions().get::<Code>(), Some(&Code::InvalidArgument));
    }
}
