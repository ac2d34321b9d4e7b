//! The one error type of the scheduler's API boundary, and its mapping to gRPC status codes.

use tonic::{Code, Status};

/// What went wrong with a call, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The peer could not be reached or went away mid-call.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        }
    }
}

impl ApiError {
    /// The error code MLflow's REST API uses for this kind of error.
    pub fn mlflow_error_code(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) | ApiError::FailedPrecondition(_) => {
                "INVALID_PARAMETER_VALUE"
            }
            ApiError::NotFound(_) => "RESOURCE_DOES_NOT_EXIST",
            ApiError::AlreadyExists(_) => "RESOURCE_ALREADY_EXISTS",
            ApiError::Unavailable(_) => "TEMPORARILY_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status MLflow's REST API answers this kind of error with.
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::InvalidArgument(_)
            | ApiError::FailedPrecondition(_)
            | ApiError::AlreadyExists(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let code = error.code();
        Status::new(code, error.to_string())
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> ApiError {
        let message = status.message().to_string();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => ApiError::InvalidArgument(message),
            Code::NotFound => ApiError::NotFound(message),
            Code::AlreadyExists => ApiError::AlreadyExists(message),
            Code::FailedPrecondition | Code::Aborted => ApiError::FailedPrecondition(message),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                ApiError::Unavailable(message)
            }
            _ => ApiError::Internal(message),
        }
    }
}
