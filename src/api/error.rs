//! The one error shape of the HTTP API: `{"code": "...", "message": "..."}` with a stable
//! machine code, plus `active_url` when a standby site rejects a write.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;
use crate::license::LicenseError;

/// An API error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_url: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            active_url: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or invalid admin token; send Authorization: Bearer <token>",
        )
    }

    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, context, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error; see the server log",
        )
    }
}

impl From<LicenseError> for ApiError {
    fn from(err: LicenseError) -> Self {
        let status = match &err {
            LicenseError::NotFound
            | LicenseError::ProductNotFound(_)
            | LicenseError::TokenNotFound(_)
            | LicenseError::ComputerNotBlocked(_)
            | LicenseError::LeaseNotFound
            | LicenseError::KeyNotFound(_) => StatusCode::NOT_FOUND,
            LicenseError::Revoked
            | LicenseError::Suspended
            | LicenseError::Expired(_)
            | LicenseError::ComputerBlocked(_)
            | LicenseError::TrialUsed { .. } => StatusCode::FORBIDDEN,
            LicenseError::ActivationLimit { .. } | LicenseError::ReleaseLimit { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            LicenseError::SeatsExhausted { .. }
            | LicenseError::ProductExists(_)
            | LicenseError::ProductInUse(_)
            | LicenseError::KeyExists(_)
            | LicenseError::NotActivated
            | LicenseError::FloatingLicense
            | LicenseError::NotFloating
            | LicenseError::KeyInUse(_) => StatusCode::CONFLICT,
            LicenseError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            LicenseError::Db(db) => return ApiError::from(db.clone()),
        };
        ApiError::new(status, err.code(), err.to_string())
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::ReadOnly => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SITE_STANDBY",
                "this site is standby and accepts no writes; send writes to the active site",
            ),
            DbError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "BUSY",
                "the database is being replaced by a snapshot; retry shortly",
            ),
            DbError::DiskFull(detail) => {
                tracing::error!(error = %detail, "a write failed because the disk is full, so free space in the data directory");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "INSUFFICIENT_STORAGE",
                    "the server's disk is full, so nothing was saved; retry after the operator \
                     frees space in the data directory (old snapshots, pre-restore copies)",
                )
            }
            other => ApiError::internal("database", other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, Json(&self)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// A JSON body extractor whose rejections use the API error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "BODY_TOO_LARGE"
                } else {
                    "INVALID_JSON"
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// A path parameter extractor whose rejections use the API error shape.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    Path<T>: FromRequestParts<S, Rejection = PathRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) if rejection.status().is_server_error() => Err(ApiError::internal(
                "extracting path parameters",
                rejection.body_text(),
            )),
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                "INVALID_INPUT",
                rejection.body_text(),
            )),
        }
    }
}
