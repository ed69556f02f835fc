//! The engine's one error type. It knows nothing of any transport: the
//! gRPC adapter maps it to status codes in one place (`grpc::status`).
//!
//! Caller mistakes are `InvalidArgument` and always name the offending field
//! (`events[3].page_view.price_cents`); they are never `Internal`. Store
//! outages do not appear here: Decide fails open on scoring and closed on
//! money, answering with a reason instead of an error.

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
}

/// A ledger error: the caller's mistakes (an unknown campaign, a bad
/// argument) are `InvalidArgument` naming the field, never `Internal`; an
/// outage is `Unavailable`.
impl From<crate::ledger::LedgerError> for ServiceError {
    fn from(e: crate::ledger::LedgerError) -> Self {
        use crate::ledger::LedgerError;
        match e {
            LedgerError::InvalidArgument { field, message } => {
                ServiceError::invalid(field, message)
            }
            LedgerError::UnknownCampaign(c) => {
                ServiceError::invalid("campaign", format!("unknown campaign {c:?}"))
            }
            LedgerError::Unavailable(m) => ServiceError::Unavailable(m),
        }
    }
}

/// A score refused for the request's own client features is the caller's
/// mistake, reported with the field it names.
impl From<crate::domain::model::ScoreError> for ServiceError {
    fn from(e: crate::domain::model::ScoreError) -> Self {
        let field = e.field().to_owned();
        let full = e.to_string();
        // The message already starts with "field: "; keep only the explanation.
        let message = full
            .strip_prefix(&format!("{field}: "))
            .unwrap_or(&full)
            .to_owned();
        ServiceError::InvalidArgument { field, message }
    }
}
