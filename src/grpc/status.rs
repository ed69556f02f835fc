//! The one mapping of engine errors to gRPC status codes.

use crate::engine::error::ServiceError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The gRPC code of an engine error; caller mistakes are never `Internal`.
pub fn code(e: &ServiceError) -> Code {
    match e {
        ServiceError::InvalidArgument { .. } => Code::InvalidArgument,
        ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
        ServiceError::Unavailable(_) => Code::Unavailable,
        ServiceError::Internal(_) => Code::Internal,
    }
}

/// Invalid arguments also carry a `google.rpc.BadRequest` detail with the
/// field path, so clients can map the error to a form field without parsing
/// the message.
impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        let message = e.to_string();
        let code = code(&e);
        match e {
            ServiceError::InvalidArgument {
                field,
                message: why,
            } => Status::with_error_details(
                code,
                message,
                ErrorDetails::with_bad_request_violation(field, why),
            ),
            _ => Status::new(code, message),
        }
    }
}
