//! Admin endpoints for products.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::{Admin, mutate, now_text, query};
use crate::api::{ApiError, ApiJson, ApiPath, AppState};
use crate::license::LicenseError;
use crate::license::products::{self, NewProduct, ProductPatch};

#[utoipa::path(
    get, path = "/v1/admin/products", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every product", body = Vec<crate::license::Product>),
        (status = 401, description = "Missing or invalid admin token", body = ApiError),
    )
)]
pub(super) async fn list_products(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<crate::license::Product>>, ApiError> {
    query(&state, products::list).await.map(Json)
}

#[utoipa::path(
    post, path = "/v1/admin/products", tag = "admin", security(("admin_token" = [])),
    request_body = NewProduct,
    responses(
        (status = 201, description = "The new product", body = crate::license::Product),
        (status = 409, description = "A product with this code exists (PRODUCT_EXISTS)", body = ApiError),
        (status = 422, description = "An invalid field (INVALID_INPUT)", body = ApiError),
        (status = 503, description = "This site is standby (SITE_STANDBY)", body = ApiError),
    )
)]
pub(super) async fn create_product(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(new): ApiJson<NewProduct>,
) -> Result<(StatusCode, Json<crate::license::Product>), ApiError> {
    let now = now_text(&state);
    let product = mutate(&state, move |conn| {
        products::create(conn, &new, &admin.actor, &now)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(product)))
}

#[utoipa::path(
    get, path = "/v1/admin/products/{code}", tag = "admin", security(("admin_token" = [])),
    params(("code" = String, Path, description = "Product code")),
    responses(
        (status = 200, description = "The product", body = crate::license::Product),
        (status = 404, description = "No such product (PRODUCT_NOT_FOUND)", body = ApiError),
    )
)]
pub(super) async fn show_product(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<crate::license::Product>, ApiError> {
    query(&state, |conn| {
        products::find(conn, &code)?.ok_or(LicenseError::ProductNotFound(code.clone()))
    })
    .await
    .map(Json)
}

#[utoipa::path(
    patch, path = "/v1/admin/products/{code}", tag = "admin", security(("admin_token" = [])),
    params(("code" = String, Path, description = "Product code")),
    request_body = ProductPatch,
    responses(
        (status = 200, description = "The changed product", body = crate::license::Product),
        (status = 404, description = "No such product (PRODUCT_NOT_FOUND)", body = ApiError),
        (status = 503, description = "This site is standby (SITE_STANDBY)", body = ApiError),
    )
)]
pub(super) async fn update_product(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(code): ApiPath<String>,
    ApiJson(patch): ApiJson<ProductPatch>,
) -> Result<Json<crate::license::Product>, ApiError> {
    let now = now_text(&state);
    mutate(&state, move |conn| {
        products::update(conn, &code, &patch, &admin.actor, &now)
    })
    .await
    .map(Json)
}

#[utoipa::path(
    delete, path = "/v1/admin/products/{code}", tag = "admin", security(("admin_token" = [])),
    params(("code" = String, Path, description = "Product code")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such product (PRODUCT_NOT_FOUND)", body = ApiError),
        (status = 409, description = "Licenses still use the product (PRODUCT_IN_USE)", body = ApiError),
    )
)]
pub(super) async fn delete_product(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(code): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let now = now_text(&state);
    mutate(&state, move |conn| {
        products::delete(conn, &code, &admin.actor, &now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
