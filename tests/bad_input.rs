//! Hostile and malformed input: each bad request gets a 4xx in the API error shape and changes
//! nothing, and odd but valid text in free-text fields is stored exactly as sent.

mod common;
mod raw_http;

use common::{InProcess, admin, client, seed_license, test_config};
use keyward::keys::LicenseKey;
use raw_http::{admin_view, assert_error_shape, post_json, send_bytes};
use reqwest::Method;
use serde_json::{Value, json};

/// Control characters that no single-line field accepts. Notes accept newline and tab, so
/// neither is in this list.
const CONTROL_STRINGS: &[&str] = &[
    "\0",
    "pc\0-1",
    "\u{1}",
    "\u{1b}[2J",
    "\u{7f}",
    "\r",
    "\u{85}",
];

/// Text that is valid in a free-text field but dangerous if it reached SQL unescaped or was
/// normalised on the way: a SQL injection attempt, a right-to-left override, a zero-width
/// joiner, emoji (one joined with ZWJ) and stacked combining marks.
const ODD_STRINGS: &[&str] = &[
    "'; DROP TABLE licenses; --",
    "Robert\"); DELETE FROM activations; --",
    "abc\u{202E}fdp.exe",
    "a\u{200D}b",
    "🔑👨\u{200D}👩\u{200D}👧",
    "e\u{301}\u{302}\u{303}",
];

/// An endpoint under test.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    CreateProduct,
    CreateLicense,
    PatchLicense,
    Activate,
    Validate,
    Release,
}

impl Endpoint {
    const ALL: [Endpoint; 6] = [
        Endpoint::CreateProduct,
        Endpoint::CreateLicense,
        Endpoint::PatchLicense,
        Endpoint::Activate,
        Endpoint::Validate,
        Endpoint::Release,
    ];
}

/// A server with product `app`, a two-seat license activated on `pc-1`, and the computer key
/// from that activation.
struct Seeded {
    server: InProcess,
    key: String,
    computer_key: String,
}

impl Seeded {
    async fn start(dir: &std::path::Path) -> Seeded {
        let server = InProcess::start(test_config(dir)).await;
        let key = seed_license(&server.url, 2).await;
        let (status, body) = client(
            &server.url,
            "/v1/activate",
            json!({"key": key, "computer_id": "pc-1"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let computer_key = body["computer_key"].as_str().unwrap().to_string();
        Seeded {
            server,
            key,
            computer_key,
        }
    }

    fn base(&self) -> &str {
        &self.server.url
    }

    /// Returns a request body that the endpoint accepts and that changes state where the
    /// endpoint can: a new product, a new license, an activation of a second computer.
    fn valid_body(&self, endpoint: Endpoint) -> Value {
        match endpoint {
            Endpoint::CreateProduct => {
                json!({"code": "new", "name": "New", "version": "1.0", "features": ["f1"]})
            }
            Endpoint::CreateLicense => json!({
                "product": "app",
                "model": "subscription",
                "seats": 1,
                "expires_at": "2099-01-01",
                "maintenance_expires_at": "2099-01-01",
                "features": ["pro"],
                "customer_name": "Ada",
                "customer_email": "ada@example.com",
                "customer_company": "Example",
                "order_ref": "PO-1",
                "notes": "first order",
                "key": LicenseKey::generate().grouped(),
            }),
            Endpoint::PatchLicense => json!({
                "customer_name": "Ada",
                "customer_email": "ada@example.com",
                "customer_company": "Example",
                "order_ref": "PO-1",
                "notes": "changed",
                "expires_at": "2099-01-01",
                "maintenance_expires_at": "2099-01-01",
                "features": ["pro"],
            }),
            Endpoint::Activate => json!({
                "key": self.key,
                "computer_id": "pc-2",
                "computer_name": "Desk",
                "nonce": "n-1",
            }),
            Endpoint::Validate => json!({
                "key": self.key,
                "computer_id": "pc-1",
                "computer_key": self.computer_key,
                "product": "app",
                "nonce": "n-1",
            }),
            Endpoint::Release => json!({"key": self.key, "computer_id": "pc-1", "nonce": "n-1"}),
        }
    }

    /// Sends `body` as JSON bytes and returns the status and the parsed body.
    async fn send(&self, endpoint: Endpoint, body: Vec<u8>) -> (u16, Value) {
        let (method, path, token) = match endpoint {
            Endpoint::CreateProduct => (
                Method::POST,
                "/v1/admin/products".to_string(),
                Some(common::ADMIN_TOKEN),
            ),
            Endpoint::CreateLicense => (
                Method::POST,
                "/v1/admin/licenses".to_string(),
                Some(common::ADMIN_TOKEN),
            ),
            Endpoint::PatchLicense => (
                Method::PATCH,
                format!("/v1/admin/licenses/{}", self.key),
                Some(common::ADMIN_TOKEN),
            ),
            Endpoint::Activate => (Method::POST, "/v1/activate".to_string(), None),
            Endpoint::Validate => (Method::POST, "/v1/validate".to_string(), None),
            Endpoint::Release => (Method::POST, "/v1/release".to_string(), None),
        };
        let response =
            send_bytes(self.base(), method, &path, "application/json", body, token).await;
        (response.status, response.json())
    }

    async fn send_json(&self, endpoint: Endpoint, body: &Value) -> (u16, Value) {
        self.send(endpoint, serde_json::to_vec(body).unwrap()).await
    }

    async fn view(&self) -> Value {
        admin_view(self.base(), &[&self.key]).await
    }
}

/// Returns the string fields of an endpoint's request body. `features` is a list of strings and
/// gets the value as its one element.
fn string_fields(endpoint: Endpoint) -> &'static [&'static str] {
    match endpoint {
        Endpoint::CreateProduct => &["code", "name", "version", "features"],
        Endpoint::CreateLicense => &[
            "product",
            "model",
            "expires_at",
            "maintenance_expires_at",
            "features",
            "customer_name",
            "customer_email",
            "customer_company",
            "order_ref",
            "notes",
            "key",
        ],
        Endpoint::PatchLicense => &[
            "expires_at",
            "maintenance_expires_at",
            "features",
            "customer_name",
            "customer_email",
            "customer_company",
            "order_ref",
            "notes",
        ],
        Endpoint::Activate => &["key", "computer_id", "computer_name", "nonce"],
        Endpoint::Validate => &["key", "computer_id", "computer_key", "product", "nonce"],
        Endpoint::Release => &["key", "computer_id", "nonce"],
    }
}

fn with_field(mut body: Value, field: &str, value: &str) -> Value {
    body[field] = if field == "features" {
        json!([value])
    } else {
        json!(value)
    };
    body
}

fn assert_rejected(status: u16, body: &Value, context: &str) {
    assert!(
        (400..500).contains(&status),
        "{context}: status {status}, body {body}"
    );
    assert_error_shape(body, context);
}

/// Returns the response to validating a well-formed key that does not exist, without
/// `server_time`.
async fn unknown_key_validation(seeded: &Seeded, nonce: &str) -> Value {
    let request =
        json!({"key": LicenseKey::generate().grouped(), "computer_id": "pc-1", "nonce": nonce});
    let mut body = post_json(seeded.base(), "/v1/validate", &request)
        .await
        .json();
    body.as_object_mut().unwrap().remove("server_time");
    body
}

#[tokio::test]
async fn malformed_json_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;
    let bodies: &[&[u8]] = &[
        b"",
        b"{",
        b"{\"key\": ",
        b"not json",
        b"null",
        b"[]",
        b"42",
        b"{\"key\": \"a\"}}",
        b"{\"key\": \"\\ud800\", \"computer_id\": \"pc-1\"}",
        b"\xff\xfe{}",
        b"{\"code\": \"x\", \"code\": \"y\"}",
    ];

    for endpoint in Endpoint::ALL {
        for body in bodies {
            let context = format!("{endpoint:?} with {:?}", String::from_utf8_lossy(body));
            let (status, response) = seeded.send(endpoint, body.to_vec()).await;
            assert_rejected(status, &response, &context);
            assert_eq!(response["code"], "INVALID_JSON", "{context}");
        }
    }
    assert_eq!(seeded.view().await, before);
    seeded.server.stop().await;
}

#[tokio::test]
async fn wrong_content_type_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;

    for endpoint in [Endpoint::Activate, Endpoint::Validate, Endpoint::Release] {
        let path = match endpoint {
            Endpoint::Activate => "/v1/activate",
            Endpoint::Validate => "/v1/validate",
            _ => "/v1/release",
        };
        let body = serde_json::to_vec(&seeded.valid_body(endpoint)).unwrap();
        let response =
            send_bytes(seeded.base(), Method::POST, path, "text/plain", body, None).await;
        let context = format!("{endpoint:?} as text/plain");
        assert_eq!(response.status, 415, "{context}: {}", response.text());
        assert_error_shape(&response.json(), &context);
    }
    assert_eq!(seeded.view().await, before);
    seeded.server.stop().await;
}

#[tokio::test]
async fn unknown_fields_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;

    for endpoint in Endpoint::ALL {
        for extra in ["extra", "seats_used", "KEY", "status"] {
            let mut body = seeded.valid_body(endpoint);
            if body.get(extra).is_some() {
                continue;
            }
            body[extra] = json!("x");
            let context = format!("{endpoint:?} with unknown field {extra}");
            let (status, response) = seeded.send_json(endpoint, &body).await;
            assert_rejected(status, &response, &context);
            assert_eq!(response["code"], "INVALID_JSON", "{context}");
        }
    }
    assert_eq!(seeded.view().await, before);
    seeded.server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;
    let padding = "x".repeat(keyward::api::MAX_JSON_BODY + 1);

    for endpoint in Endpoint::ALL {
        let field = match endpoint {
            Endpoint::CreateProduct => "name",
            Endpoint::CreateLicense | Endpoint::PatchLicense => "notes",
            _ => "computer_id",
        };
        let body = with_field(seeded.valid_body(endpoint), field, &padding);
        let context = format!("{endpoint:?} with a large {field}");
        let (status, response) = seeded.send_json(endpoint, &body).await;
        assert_eq!(status, 413, "{context}: {response}");
        assert_error_shape(&response, &context);
        assert_eq!(response["code"], "BODY_TOO_LARGE", "{context}");
    }

    let mut body = serde_json::to_vec(&seeded.valid_body(Endpoint::Activate)).unwrap();
    body.extend(std::iter::repeat_n(b' ', keyward::api::MAX_JSON_BODY));
    let (status, response) = seeded.send(Endpoint::Activate, body).await;
    assert_eq!(status, 413, "valid JSON padded with spaces: {response}");
    assert_eq!(seeded.view().await, before);
    seeded.server.stop().await;
}

#[tokio::test]
async fn oversized_chunked_body_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;
    let mut bytes = serde_json::to_vec(&seeded.valid_body(Endpoint::Activate)).unwrap();
    bytes.extend(std::iter::repeat_n(b' ', keyward::api::MAX_JSON_BODY));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(4096).map(|chunk| Ok(chunk.to_vec())).collect();

    let request = common::http()
        .post(format!("{}/v1/activate", seeded.base()))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )));
    let response = raw_http::receive(request).await;
    assert_eq!(response.status, 413, "{}", response.text());
    assert_eq!(response.json()["code"], "BODY_TOO_LARGE");
    assert_eq!(seeded.view().await, before);
    seeded.server.stop().await;
}

#[tokio::test]
async fn malformed_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;
    let mut bad_check = seeded.key.clone();
    let last = bad_check.pop().unwrap();
    bad_check.push(if last == '0' { '1' } else { '0' });
    let malformed = [
        String::new(),
        "ABCD".into(),
        bad_check,
        format!("{}U", &seeded.key[..seeded.key.len() - 1]),
        "💥".repeat(28),
        "A".repeat(60_000),
    ];

    for key in &malformed {
        let short: String = key.chars().take(40).collect();
        for endpoint in [Endpoint::Activate, Endpoint::Release] {
            let body = with_field(seeded.valid_body(endpoint), "key", key);
            let (status, response) = seeded.send_json(endpoint, &body).await;
            let context = format!("{endpoint:?} with key {short:?}");
            assert_eq!(status, 404, "{context}: {response}");
            assert_eq!(response["code"], "NOT_FOUND", "{context}");
            assert_error_shape(&response, &context);
        }
        let body = with_field(seeded.valid_body(Endpoint::Validate), "key", key);
        let (status, response) = seeded.send_json(Endpoint::Validate, &body).await;
        assert_eq!(status, 200, "validate with key {short:?}: {response}");
        assert_eq!(response["code"], "NOT_FOUND", "validate with key {short:?}");

        let body = with_field(seeded.valid_body(Endpoint::CreateLicense), "key", key);
        let (status, response) = seeded.send_json(Endpoint::CreateLicense, &body).await;
        let context = format!("create license with key {short:?}");
        assert_eq!(status, 422, "{context}: {response}");
        assert_eq!(response["code"], "INVALID_INPUT", "{context}");
    }
    assert_eq!(seeded.view().await, before);
    seeded.server.stop().await;
}

/// NUL and other control characters are rejected in every string field. A license key is the
/// exception on validate: there every malformed key gets the same `NOT_FOUND` response as an
/// unknown key, so that a response never tells a malformed key from an unknown one.
#[tokio::test]
async fn control_characters_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;

    for endpoint in Endpoint::ALL {
        for field in string_fields(endpoint) {
            for value in CONTROL_STRINGS {
                let body = with_field(seeded.valid_body(endpoint), field, value);
                let context = format!("{endpoint:?} with {field} = {value:?}");
                let (status, mut response) = seeded.send_json(endpoint, &body).await;
                if matches!(endpoint, Endpoint::Validate) && *field == "key" {
                    assert_eq!(status, 200, "{context}: {response}");
                    response.as_object_mut().unwrap().remove("server_time");
                    let unknown = unknown_key_validation(&seeded, "n-1").await;
                    assert_eq!(response, unknown, "{context}");
                    continue;
                }
                assert_rejected(status, &response, &context);
            }
        }
    }
    assert_eq!(seeded.view().await, before);
    seeded.server.stop().await;
}

/// Fields with a fixed format (codes, feature names, dates, keys, the model and an email
/// address without `@`) reject SQL metacharacters and odd Unicode.
#[tokio::test]
async fn formatted_fields_reject_odd_text() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;
    let formatted = [
        (Endpoint::CreateProduct, "code"),
        (Endpoint::CreateProduct, "features"),
        (Endpoint::CreateLicense, "product"),
        (Endpoint::CreateLicense, "model"),
        (Endpoint::CreateLicense, "expires_at"),
        (Endpoint::CreateLicense, "maintenance_expires_at"),
        (Endpoint::CreateLicense, "features"),
        (Endpoint::CreateLicense, "customer_email"),
        (Endpoint::CreateLicense, "key"),
        (Endpoint::PatchLicense, "expires_at"),
        (Endpoint::PatchLicense, "features"),
        (Endpoint::PatchLicense, "customer_email"),
        (Endpoint::Activate, "key"),
        (Endpoint::Release, "key"),
    ];

    for (endpoint, field) in formatted {
        for value in ODD_STRINGS {
            let body = with_field(seeded.valid_body(endpoint), field, value);
            let context = format!("{endpoint:?} with {field} = {value:?}");
            let (status, response) = seeded.send_json(endpoint, &body).await;
            assert_rejected(status, &response, &context);
        }
    }
    assert_eq!(seeded.view().await, before);
    seeded.server.stop().await;
}

/// Expiry times whose UTC year is outside 1970 to 9999 are rejected, because their stored form
/// could not be read back.
#[tokio::test]
async fn out_of_range_years_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;
    let dates = [
        "0000-01-01T00:00:00+01:00",
        "1969-12-31",
        "9999-12-31T23:59:59-01:00",
    ];
    for value in dates {
        for field in ["expires_at", "maintenance_expires_at"] {
            let body = with_field(seeded.valid_body(Endpoint::CreateLicense), field, value);
            let (status, response) = seeded.send_json(Endpoint::CreateLicense, &body).await;
            let context = format!("{field} = {value:?}");
            assert_rejected(status, &response, &context);
            let message = response["message"].as_str().unwrap();
            assert!(
                message.contains("outside 1970 to 9999"),
                "{context}: {message}"
            );
        }
    }
    assert_eq!(seeded.view().await, before);
    seeded.server.stop().await;
}

/// Odd text in the fields that validation only compares gets a negative validation code and
/// changes nothing.
#[tokio::test]
async fn validate_compares_odd_text_safely() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;
    let expected = [
        ("computer_id", "NOT_ACTIVATED"),
        ("product", "PRODUCT_MISMATCH"),
        ("computer_key", "COMPUTER_MISMATCH"),
    ];

    for (field, code) in expected {
        for value in ODD_STRINGS {
            let body = with_field(seeded.valid_body(Endpoint::Validate), field, value);
            let context = format!("validate with {field} = {value:?}");
            let (status, response) = seeded.send_json(Endpoint::Validate, &body).await;
            assert_eq!(status, 200, "{context}: {response}");
            assert_eq!(response["code"], code, "{context}");
        }
    }
    assert_eq!(seeded.view().await, before);

    let body = seeded.valid_body(Endpoint::Validate);
    let (_, response) = seeded.send_json(Endpoint::Validate, &body).await;
    assert_eq!(response["code"], "VALID", "the license still validates");
    seeded.server.stop().await;
}

/// Free-text fields store SQL metacharacters and odd Unicode byte for byte, with no
/// normalisation, and every license is still listed afterwards.
#[tokio::test]
async fn free_text_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let base = seeded.base();

    for (index, value) in ODD_STRINGS.iter().enumerate() {
        let product_code = format!("odd-{index}");
        let product = json!({"code": product_code, "name": value, "version": value});
        let (status, created) =
            admin(base, Method::POST, "/v1/admin/products", Some(product)).await;
        assert_eq!(status, 201, "product with {value:?}: {created}");
        assert_eq!(created["name"], *value);
        assert_eq!(created["version"], *value);

        let email = format!("{value}@example.com");
        let license = json!({
            "product": product_code,
            "model": "permanent",
            "customer_name": value,
            "customer_email": email,
            "customer_company": value,
            "order_ref": value,
            "notes": format!("{value}\n\t{value}"),
        });
        let (status, created) =
            admin(base, Method::POST, "/v1/admin/licenses", Some(license)).await;
        assert_eq!(status, 201, "license with {value:?}: {created}");
        let key = created["key"].as_str().unwrap().to_string();

        let path = format!("/v1/admin/licenses/{key}");
        let stored = raw_http::admin_get(base, &path).await;
        for field in ["customer_name", "customer_company", "order_ref"] {
            assert_eq!(stored[field], *value, "{field} of {value:?}");
        }
        assert_eq!(stored["customer_email"], email.as_str());
        assert_eq!(stored["notes"], format!("{value}\n\t{value}").as_str());
        let path = format!("/v1/admin/products/{product_code}");
        let stored_product = raw_http::admin_get(base, &path).await;
        assert_eq!(stored_product["name"], *value);

        let query: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let path = format!("/v1/admin/licenses?q={query}");
        let found = raw_http::admin_get(base, &path).await;
        let found_keys: Vec<&str> = found
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|license| license["key"].as_str())
            .collect();
        assert!(
            found_keys.contains(&key.as_str()),
            "search for {value:?} finds its license: {found}"
        );
    }

    let licenses = raw_http::admin_get(base, "/v1/admin/licenses?limit=1000").await;
    assert_eq!(
        licenses.as_array().map(Vec::len),
        Some(ODD_STRINGS.len() + 1),
        "every license is still listed"
    );
    seeded.server.stop().await;
}

/// Computer ids and names with odd text activate, validate and release like any other.
#[tokio::test]
async fn odd_computer_ids_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, ODD_STRINGS.len() as i64).await;
    let trusted = raw_http::trusted_keys(base).await;

    for value in ODD_STRINGS {
        let request =
            json!({"key": key, "computer_id": value, "computer_name": value, "nonce": value});
        let response = post_json(base, "/v1/activate", &request).await;
        let body = response.json();
        assert_eq!(response.status, 200, "activate {value:?}: {body}");
        assert_eq!(body["nonce"], *value);
        let token = body["computer_key"].as_str().unwrap();
        let claims = trusted.verify_computer_key(token).unwrap();
        assert_eq!(claims.computer_id, *value);

        let request = json!({"key": key, "computer_id": value, "computer_key": token});
        let (status, body) = client(base, "/v1/validate", request).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["code"], "VALID", "validate {value:?}");
    }

    let activations =
        raw_http::admin_get(base, &format!("/v1/admin/licenses/{key}/activations")).await;
    let stored: Vec<(&str, &str)> = activations
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["computer_id"].as_str().unwrap(),
                row["computer_name"].as_str().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(&str, &str)> = ODD_STRINGS.iter().map(|value| (*value, *value)).collect();
    assert_eq!(stored, expected);

    for value in ODD_STRINGS {
        let request = json!({"key": key, "computer_id": value});
        let (status, body) = client(base, "/v1/release", request).await;
        assert_eq!(status, 200, "release {value:?}: {body}");
    }
    let license = raw_http::admin_get(base, &format!("/v1/admin/licenses/{key}")).await;
    assert_eq!(license["seats_used"], 0);
    server.stop().await;
}

#[tokio::test]
async fn out_of_range_numbers_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;
    let numbers = [
        "9223372036854775807",
        "-9223372036854775808",
        "-1",
        "0",
        "1000001",
        "9223372036854775808",
        "1e400",
        "1.5",
        "\"5\"",
        "null",
    ];

    for endpoint in [Endpoint::CreateLicense, Endpoint::PatchLicense] {
        for field in ["seats", "duration_days"] {
            for number in numbers {
                if endpoint_accepts(endpoint, field, number) {
                    continue;
                }
                let mut body = seeded.valid_body(endpoint);
                body.as_object_mut().unwrap().remove(field);
                let text = serde_json::to_string(&body).unwrap();
                let text = format!("{{\"{field}\": {number}, {}", &text[1..]);
                let context = format!("{endpoint:?} with {field} = {number}");
                let (status, response) = seeded.send(endpoint, text.into_bytes()).await;
                assert_rejected(status, &response, &context);
            }
        }
    }
    assert_eq!(seeded.view().await, before);
    seeded.server.stop().await;
}

/// Returns whether a number is valid for a field: `null` means "not given" everywhere except
/// `seats` on create, and `duration_days: 0` on a patch clears the duration.
fn endpoint_accepts(endpoint: Endpoint, field: &str, number: &str) -> bool {
    matches!(
        (endpoint, field, number),
        (Endpoint::CreateLicense, "duration_days", "null")
            | (Endpoint::PatchLicense, _, "null")
            | (Endpoint::PatchLicense, "duration_days", "0")
    )
}

/// Requests rejected before any handler runs (wrong method, unknown path, a path segment that
/// is not UTF-8) use the same error shape as the rest of the API.
#[tokio::test]
async fn routing_errors_use_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = Seeded::start(dir.path()).await;
    let before = seeded.view().await;
    let key = seeded.key.as_str();
    let cases = [
        (Method::GET, "/v1/activate".to_string(), 405),
        (Method::PUT, "/v1/validate".to_string(), 405),
        (Method::DELETE, "/v1/release".to_string(), 405),
        (Method::PUT, "/v1/admin/products".to_string(), 405),
        (Method::POST, format!("/v1/admin/licenses/{key}"), 405),
        (Method::GET, "/v1/no-such-endpoint".to_string(), 404),
        (Method::GET, "/v1/admin/licenses/%FF%FE".to_string(), 400),
        (Method::DELETE, "/v1/admin/products/%C0%AF".to_string(), 400),
        (
            Method::POST,
            format!("/v1/admin/licenses/{key}/activations/%FF/release"),
            400,
        ),
    ];

    for (method, path, expected) in cases {
        let context = format!("{method} {path}");
        let response = send_bytes(
            seeded.base(),
            method,
            &path,
            "application/json",
            b"{}".to_vec(),
            Some(common::ADMIN_TOKEN),
        )
        .await;
        assert_eq!(response.status, expected, "{context}: {}", response.text());
        let content_type = response.headers.get(reqwest::header::CONTENT_TYPE);
        assert_eq!(
            content_type.and_then(|value| value.to_str().ok()),
            Some("application/json"),
            "{context}"
        );
        assert_error_shape(&response.json(), &context);
        if expected == 405 {
            let allow = response.headers.get(reqwest::header::ALLOW);
            assert!(allow.is_some(), "{context}: 405 without an Allow header");
        }
    }
    assert_eq!(seeded.view().await, before);
    seeded.server.stop().await;
}
