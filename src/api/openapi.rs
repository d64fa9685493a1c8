//! The OpenAPI 3 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! attributes and the request and response types, served at `GET /v1/openapi.json`.
//!
//! Every route added to [`super::route_table`] must be listed in `paths(...)` below; the
//! `openapi` integration test fails when the two disagree.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API description; `ApiDoc::openapi()` builds the document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyward",
        description = "Self-hosted license server with disaster-recovery snapshot shipping. \
            Client endpoints need no credentials and sign every response; admin endpoints need \
            an admin token as a bearer credential; the peer endpoint needs the peer secret.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::client::activate,
        super::client::validate,
        super::client::release,
        super::client::public_keys,
        super::admin::products::list_products,
        super::admin::products::create_product,
        super::admin::products::show_product,
        super::admin::products::update_product,
        super::admin::products::delete_product,
        super::admin::licenses::list_licenses,
        super::admin::licenses::create_license,
        super::admin::licenses::show_license,
        super::admin::licenses::update_license,
        super::admin::licenses::delete_license,
        super::admin::licenses::suspend_license,
        super::admin::licenses::reinstate_license,
        super::admin::licenses::revoke_license,
        super::admin::licenses::renew_license,
        super::admin::licenses::list_activations,
        super::admin::licenses::force_release,
        super::admin::licenses::list_leases,
        super::leases::checkout,
        super::leases::heartbeat,
        super::leases::checkin,
        super::documents::license_file,
        super::documents::offline_activate,
        super::keys::list_keys,
        super::keys::rotate_key,
        super::keys::retire_key,
        super::blocked::list_blocked,
        super::blocked::block_computer,
        super::blocked::unblock_computer,
        super::import::import,
        super::import::export,
        super::admin::audit::list_audit,
        super::admin::tokens::list_tokens,
        super::admin::tokens::create_token,
        super::admin::tokens::revoke_token,
        super::replication::list_snapshots,
        super::replication::take_snapshot,
        super::replication::ship_now,
        super::replication::promote,
        super::replication::demote,
        super::replication::status,
        crate::snapshot::receive::admin_restore,
        crate::snapshot::receive::receive_from_peer,
        super::health::healthz,
        super::health::readyz,
        super::metrics::metrics,
        openapi_json,
        super::status_page::page,
        super::status_page::stylesheet,
        super::status_page::script,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "client", description = "Called by licensed applications; every response is signed"),
        (name = "admin", description = "Products, licenses, activations, audit log and admin tokens"),
        (name = "replication", description = "Snapshots, shipping, restore, roles and status"),
        (name = "operations", description = "Probes, metrics, this document and the status page"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin token, kwa_<id>_<secret>, printed at the first start or made \
                         with `keyward token create`",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "peer_secret",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The peer.secret shared by both sites"))
                    .build(),
            ),
        );
    }
}

/// Returns the document as pretty-printed JSON, built once.
pub fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

/// Serves this document.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json"))
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}
