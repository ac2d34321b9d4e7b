//! The one error type of the API boundary, and its mappings: to gRPC status codes, and to
//! MLflow's REST error (HTTP status, `error_code` and the JSON body).

use axum::response::{IntoResponse, Response};
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
    /// The caller may not do this (a run's tracking address naming another run).
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller did not prove who it is: no token, or not the scheduler's.
    #[error("{0}")]
    Unauthenticated(String),
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
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
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
            ApiError::PermissionDenied(_) => "PERMISSION_DENIED",
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
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
            ApiError::PermissionDenied(_) => 403,
            ApiError::Unauthenticated(_) => 401,
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
            Code::PermissionDenied => ApiError::PermissionDenied(message),
            Code::Unauthenticated => ApiError::Unauthenticated(message),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                ApiError::Unavailable(message)
            }
            _ => ApiError::Internal(message),
        }
    }
}

/// MLflow's error body: `{"error_code": ..., "message": ...}`.
#[derive(serde::Serialize)]
struct MlflowError<'a> {
    error_code: &'a str,
    message: String,
}

/// An error as MLflow's REST API answers it, for every HTTP face drover serves.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = axum::http::StatusCode::from_u16(self.http_status())
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = MlflowError { error_code: self.mlflow_error_code(), message: self.to_string() };
        (status, axum::Json(body)).into_response()
    }
}
