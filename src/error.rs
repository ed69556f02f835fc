//! The service layer's one error type and its one mapping to gRPC codes.
//!
//! Caller mistakes are `InvalidArgument` and always name the offending field
//! (`events[3].page_view.price_cents`); they are never `Internal`. Store
//! outages do not appear here: Decide fails open on scoring and closed on
//! money, answering with a reason instead of an error.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; `field` is a path into the request.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// The service is configured so that the call cannot be answered.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The session store is down and the call cannot be answered without it
    /// (Track only: Decide degrades instead).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug on our side.
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn code(&self) -> Code {
        match self {
            ServiceError::InvalidArgument { .. } => Code::InvalidArgument,
            ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
            ServiceError::Unavailable(_) => Code::Unavailable,
            ServiceError::Internal(_) => Code::Internal,
        }
    }
}

/// Invalid arguments also carry a `google.rpc.BadRequest` detail with the
/// field path, so clients can map the error to a form field without parsing
/// the message.
impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        let message = e.to_string();
        match e {
            ServiceError::InvalidArgument {
                field,
                message: why,
            } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, why),
            ),
            other => Status::new(other.code(), message),
        }
    }
}
