//! The OpenAPI document and the router describe the same endpoints: every registered route is
//! documented, every documented operation is registered, the live server routes each one, and
//! the status codes of some admin operations are documented.

mod common;

use std::collections::BTreeSet;

use common::{InProcess, http, test_config};

type Operation = (String, String);

fn documented_operations(document: &serde_json::Value) -> BTreeSet<Operation> {
    let mut operations = BTreeSet::new();
    let paths = document["paths"].as_object().expect("paths object");
    for (path, item) in paths {
        for method in item.as_object().expect("path item object").keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

fn registered_operations() -> BTreeSet<Operation> {
    keyward::api::route_table()
        .routes()
        .iter()
        .map(|route| (route.method.to_string(), route.path.to_string()))
        .collect()
}

#[test]
fn routes_and_document_agree() {
    let document: serde_json::Value =
        serde_json::from_str(keyward::api::openapi::document_json()).unwrap();
    let documented = documented_operations(&document);
    let registered = registered_operations();
    for known in [
        ("POST", "/v1/validate"),
        ("PATCH", "/v1/admin/licenses/{key}"),
        ("POST", "/v1/peer/snapshots"),
        ("GET", "/readyz"),
        ("GET", "/status"),
    ] {
        let known = (known.0.to_string(), known.1.to_string());
        assert!(registered.contains(&known), "{known:?} in {registered:?}");
    }

    for (method, path) in &registered {
        assert!(
            documented.contains(&(method.clone(), path.clone())),
            "{method} {path} is served but not in the OpenAPI document; add its handler to \
             paths(...) in src/api/openapi.rs"
        );
    }
    for (method, path) in &documented {
        assert!(
            registered.contains(&(method.clone(), path.clone())),
            "{method} {path} is documented but not served; add it to api::route_table"
        );
    }
}

#[test]
fn document_declares_security_schemes() {
    let document: serde_json::Value =
        serde_json::from_str(keyward::api::openapi::document_json()).unwrap();
    let version = document["openapi"].as_str().unwrap();
    assert!(version.starts_with("3."), "{version}");
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["admin_token"]["scheme"], "bearer");
    assert_eq!(schemes["peer_secret"]["scheme"], "bearer");
    let status = &document["paths"]["/v1/admin/status"]["get"];
    assert_eq!(status["security"][0]["admin_token"], serde_json::json!([]));
    let schemas = &document["components"]["schemas"];
    assert!(schemas["StatusResponse"].is_object(), "{schemas}");
    assert!(schemas["License"].is_object(), "{schemas}");
}

/// Replaces every `{parameter}` in a path template with a placeholder value.
fn fill_template(path: &str) -> String {
    let mut filled = String::new();
    let mut inside = false;
    for ch in path.chars() {
        match ch {
            '{' => inside = true,
            '}' => {
                inside = false;
                filled.push_str("placeholder");
            }
            _ if !inside => filled.push(ch),
            _ => {}
        }
    }
    filled
}

#[tokio::test]
async fn server_routes_every_documented_operation() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;

    let response = http()
        .get(format!("{}/v1/openapi.json", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served: serde_json::Value = response.json().await.unwrap();
    let operations = documented_operations(&served);
    assert_eq!(operations, registered_operations());

    // Without credentials or bodies nothing changes state, but every request must reach a
    // route: neither NO_ROUTE nor METHOD_NOT_ALLOWED may come back.
    for (method, path) in operations {
        let url = format!("{}{}", server.url, fill_template(&path));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = http().request(method.clone(), &url).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !(status == 404 && body.contains("NO_ROUTE")),
            "{method} {path} is not routed: {body}"
        );
    }
    server.stop().await;
}

/// Real responses of admin operations carry a status code that the document lists for them.
#[tokio::test]
async fn admin_statuses_are_documented() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let (_, served) =
        common::admin(&server.url, reqwest::Method::GET, "/v1/openapi.json", None).await;
    let block = serde_json::json!({"computer_id": "pc-9", "reason": "test"});
    let calls = [
        ("post", "/v1/admin/blocked-computers", Some(block)),
        ("delete", "/v1/admin/blocked-computers/pc-9", None),
        ("delete", "/v1/admin/blocked-computers/pc-9", None),
        ("post", "/v1/admin/keys/rotate", None),
        ("post", "/v1/admin/keys/no-such-key/retire", None),
    ];

    for (method, path, body) in calls {
        let verb = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, response) = common::admin(&server.url, verb, path, body).await;
        let template = if path.ends_with("/pc-9") {
            "/v1/admin/blocked-computers/{computer_id}"
        } else if path.ends_with("/retire") {
            "/v1/admin/keys/{kid}/retire"
        } else {
            path
        };
        let documented = &served["paths"][template][method]["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which the document does not list: {response}"
        );
    }
    server.stop().await;
}
