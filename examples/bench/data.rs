//! Databases of a given size for the snapshot benchmarks, and seeding over the admin API.

use std::path::Path;

use serde_json::{Value, json};

use super::procs::ADMIN_TOKEN;

/// Fills a new keyward database at `data_dir/keyward.db` with about `bytes` of audit entries
/// (pseudo-random letters, so compression has realistic work to do).
pub fn build_database(data_dir: &Path, bytes: u64) {
    std::fs::create_dir_all(data_dir).expect("data dir");
    let path = data_dir.join("keyward.db");
    let db = keyward::db::Db::open(&path, |conn| {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        conn.execute_batch("BEGIN").expect("begin");
        for row in 0..bytes / 4096 {
            let text: String = (0..4000)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(b'a' + (state % 26) as u8)
                })
                .collect();
            conn.execute(
                "INSERT INTO audit_log (at, actor, action, object, detail) \
                 VALUES ('2026-01-01T00:00:00Z', 'system', 'filler', ?1, ?2)",
                (row.to_string(), format!("\"{text}\"")),
            )
            .expect("insert");
        }
        conn.execute_batch("COMMIT").expect("commit");
        Ok(())
    })
    .expect("open database");
    drop(db);
}

/// Sends an admin request.
pub async fn admin(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(3600))
        .build()
        .unwrap();
    let mut request = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Creates a product and a license with `seats` seats; returns the key.
pub async fn seed_license(base: &str, seats: i64) -> String {
    let product = json!({"code": "app", "name": "App", "features": ["pro", "export"]});
    admin(
        base,
        reqwest::Method::POST,
        "/v1/admin/products",
        Some(product),
    )
    .await;
    let license = json!({"product": "app", "model": "permanent", "seats": seats});
    let (status, body) = admin(
        base,
        reqwest::Method::POST,
        "/v1/admin/licenses",
        Some(license),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().expect("key").to_string()
}
