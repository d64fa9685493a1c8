//! Baseline servers for the validation benchmark: minimal axum endpoints that return a constant
//! JSON body shaped like a validation response, signed with Ed25519 per request or unsigned.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Response};
use axum::routing::post;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};

const BODY: &str = r#"{"code":"VALID","valid":true,"license":{"key":"53TB-9WMY-V1KX-BK4M-RPZV-DFD0-DNVK","product":"app","model":"permanent","status":"active","seats":2,"seats_used":1,"features":["export","pro"],"expires_at":null,"maintenance_expires_at":null},"server_time":"2026-12-04T15:35:26Z","nonce":null}"#;

/// Serves the baseline on `listen` until killed. `signed` chooses the signing variant.
pub async fn serve(listen: &str, signed: bool) {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let app = Router::new().route(
        "/v1/validate",
        post(move |_request: Bytes| {
            let key = key.clone();
            async move {
                let mut response = Response::new(Body::from(BODY));
                let headers = response.headers_mut();
                headers.insert("content-type", HeaderValue::from_static("application/json"));
                if signed {
                    let signature = key.sign(BODY.as_bytes());
                    let value = format!(
                        "kid=kbase;sig={}",
                        base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
                    );
                    headers.insert(
                        "keyward-signature",
                        HeaderValue::from_str(&value).expect("ascii"),
                    );
                }
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("bind baseline");
    println!(
        "listening on http://{}",
        listener.local_addr().expect("addr")
    );
    axum::serve(listener, app).await.expect("serve baseline");
}
