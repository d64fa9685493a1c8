//! Admin endpoints under `/v1/admin`, behind a bearer admin token.

pub mod audit;
pub mod licenses;
pub mod products;
pub mod tokens;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;

use super::routes::RouteTable;
use super::{ApiError, AppState};
use crate::license::LicenseError;

/// An authenticated admin request; `actor` is `admin:<token id>`.
pub struct Admin {
    pub actor: String,
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION);
        let token = header
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(ApiError::unauthorized)?
            .to_string();
        let id = state
            .db
            .read(move |conn| {
                crate::license::tokens::authenticate(conn, &token)
                    .map_err(LicenseError::into_db_error)
            })
            .await?;
        match id {
            Some(id) => Ok(Admin {
                actor: format!("admin:{id}"),
            }),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// Returns the token of a `Bearer` credential. The scheme name is case-insensitive (RFC 9110,
/// section 11.1), so `bearer` and `BEARER` work too.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then_some(token.trim())
}

pub fn routes() -> RouteTable {
    RouteTable::default()
        .add(Method::GET, "/v1/admin/products", products::list_products)
        .add(Method::POST, "/v1/admin/products", products::create_product)
        .add(
            Method::GET,
            "/v1/admin/products/{code}",
            products::show_product,
        )
        .add(
            Method::PATCH,
            "/v1/admin/products/{code}",
            products::update_product,
        )
        .add(
            Method::DELETE,
            "/v1/admin/products/{code}",
            products::delete_product,
        )
        .add(Method::GET, "/v1/admin/licenses", licenses::list_licenses)
        .add(Method::POST, "/v1/admin/licenses", licenses::create_license)
        .add(
            Method::GET,
            "/v1/admin/licenses/{key}",
            licenses::show_license,
        )
        .add(
            Method::PATCH,
            "/v1/admin/licenses/{key}",
            licenses::update_license,
        )
        .add(
            Method::DELETE,
            "/v1/admin/licenses/{key}",
            licenses::delete_license,
        )
        .add(
            Method::POST,
            "/v1/admin/licenses/{key}/suspend",
            licenses::suspend_license,
        )
        .add(
            Method::POST,
            "/v1/admin/licenses/{key}/reinstate",
            licenses::reinstate_license,
        )
        .add(
            Method::POST,
            "/v1/admin/licenses/{key}/revoke",
            licenses::revoke_license,
        )
        .add(
            Method::POST,
            "/v1/admin/licenses/{key}/renew",
            licenses::renew_license,
        )
        .add(
            Method::GET,
            "/v1/admin/licenses/{key}/activations",
            licenses::list_activations,
        )
        .add(
            Method::POST,
            "/v1/admin/licenses/{key}/activations/{computer_id}/release",
            licenses::force_release,
        )
        .add(
            Method::GET,
            "/v1/admin/licenses/{key}/leases",
            licenses::list_leases,
        )
        .add(Method::GET, "/v1/admin/audit", audit::list_audit)
        .add(Method::GET, "/v1/admin/tokens", tokens::list_tokens)
        .add(Method::POST, "/v1/admin/tokens", tokens::create_token)
        .add(
            Method::DELETE,
            "/v1/admin/tokens/{id}",
            tokens::revoke_token,
        )
}

pub(super) fn now_text(state: &AppState) -> String {
    crate::time::format(state.clock.now())
}

/// Runs a mutation through the writer after checking that this site is active.
pub(super) async fn mutate<T: Send + 'static>(
    state: &AppState,
    job: impl FnOnce(&rusqlite::Connection) -> Result<T, LicenseError> + Send + 'static,
) -> Result<T, ApiError> {
    state.require_active()?;
    state.db.write(job).await.map_err(|err| state.error(err))
}

/// Runs a read on a pooled connection.
pub(super) async fn query<T>(
    state: &AppState,
    job: impl FnOnce(&rusqlite::Connection) -> Result<T, LicenseError>,
) -> Result<T, ApiError> {
    let mut failure = None;
    let result = state
        .db
        .read(|conn| match job(conn) {
            Ok(value) => Ok(Some(value)),
            Err(err) => {
                failure = Some(err);
                Ok(None)
            }
        })
        .await?;
    match (result, failure) {
        (Some(value), _) => Ok(value),
        (None, Some(err)) => Err(state.error(err)),
        (None, None) => Err(ApiError::internal("query", "no result")),
    }
}
