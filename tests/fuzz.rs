//! Property tests for the parsers that read untrusted input: license keys, redirect files,
//! snapshot manifests and the JSON request bodies of the client API.
//!
//! CI runs proptest's default case count. For a longer run, raise it:
//! `PROPTEST_CASES=10000 cargo test --release --test fuzz`.

mod common;

use keyward::api::client::{ActivateRequest, ReleaseRequest, ValidateRequest};
use keyward::keys::LicenseKey;
use keyward::license::products::NewProduct;
use keyward::license::store::{LicensePatch, NewLicense};
use keyward::snapshot::manifest::Manifest;
use proptest::prelude::*;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Returns true for characters the key parser reads as part of a key: separators, the base32
/// symbols in either case, and the look-alikes I, L and O.
fn is_key_character(ch: char) -> bool {
    let upper = ch.to_ascii_uppercase();
    ch == '-'
        || ch == ' '
        || "ILO".contains(upper)
        || (upper.is_ascii() && ALPHABET.contains(&(upper as u8)))
}

fn valid_redirect() -> impl Strategy<Value = String> {
    let host = "[a-z]{1,12}(\\.[a-z]{2,6}){0,2}";
    (
        host,
        proptest::option::of(host),
        any::<bool>(),
        proptest::option::of(1u16..65535),
    )
        .prop_map(|(active, dr, https, port)| {
            let scheme = if https { "https" } else { "http" };
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let mut xml =
                String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<QlmRedirection>\n");
            xml.push_str(&format!(
                "  <activeUrl>{scheme}://{active}{port}/qlm</activeUrl>\n"
            ));
            if let Some(dr) = dr {
                xml.push_str(&format!("  <drUrl>{scheme}://{dr}/qlm</drUrl>\n"));
            }
            xml.push_str("</QlmRedirection>\n");
            xml
        })
}

fn valid_manifest() -> impl Strategy<Value = serde_json::Value> {
    (
        9u32..=16,
        0u64..1_000_000,
        0u64..u64::MAX / 2,
        "[0-9a-f]{64}",
    )
        .prop_map(|(shift, page_count, sequence, sha256)| {
            let page_size = 1u32 << shift;
            serde_json::json!({
                "format": 1,
                "source_site_id": "site-a",
                "sequence": sequence,
                "created_at": "2026-01-01T00:00:00Z",
                "size": page_count * u64::from(page_size),
                "page_size": page_size,
                "page_count": page_count,
                "sha256": sha256,
                "schema_version": 1,
                "keyward_version": "0.1.0",
                "position": {"database_id": "db", "write_seq": 1, "epochs": []},
            })
        })
}

/// Arbitrary JSON values, nested a few levels, with odd strings and numbers.
fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        "\\PC{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("key".to_string()),
                    Just("computer_id".to_string()),
                    Just("nonce".to_string()),
                    Just("product".to_string()),
                    Just("computer_key".to_string()),
                    Just("computer_name".to_string()),
                    any::<String>(),
                ],
                inner,
                0..6
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn key_parse_never_panics(input in any::<String>()) {
        let _ = LicenseKey::parse(&input);
    }

    #[test]
    fn key_parse_never_panics_on_key_like_text(input in "[0-9A-Za-z\\- ]{0,40}") {
        let _ = LicenseKey::parse(&input);
    }

    #[test]
    fn generated_key_round_trips(_seed in any::<u8>()) {
        let key = LicenseKey::generate();
        prop_assert_eq!(LicenseKey::parse(key.as_str()).unwrap(), key.clone());
        prop_assert_eq!(LicenseKey::parse(&key.grouped()).unwrap(), key);
    }

    #[test]
    fn key_substitution_is_rejected(position in 0usize..28, symbol in 0usize..32) {
        let key = LicenseKey::generate();
        let mut chars: Vec<char> = key.as_str().chars().collect();
        let replacement = ALPHABET[symbol] as char;
        prop_assume!(chars[position] != replacement);
        chars[position] = replacement;
        let typo: String = chars.into_iter().collect();
        prop_assert!(LicenseKey::parse(&typo).is_err(), "{} was accepted", typo);
    }

    #[test]
    fn key_foreign_character_is_rejected(
        position in 0usize..28,
        // Separators, look-alikes and case are read as the same key by design, and the other
        // base32 symbols are covered by the substitution test above.
        replacement in any::<char>().prop_filter("a key character", |ch| !is_key_character(*ch)),
    ) {
        let key = LicenseKey::generate();
        let mut chars: Vec<char> = key.as_str().chars().collect();
        chars[position] = replacement;
        let typo: String = chars.into_iter().collect();
        prop_assert!(LicenseKey::parse(&typo).is_err(), "{:?} was accepted", typo);
    }

    #[test]
    fn redirect_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = keyward::redirect::parse(&bytes);
    }

    #[test]
    fn redirect_parse_survives_mutation(
        xml in valid_redirect(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = xml.into_bytes();
        for (index, byte) in edits {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        if let Ok((file, _warnings)) = keyward::redirect::parse(&bytes) {
            let again = keyward::redirect::parse(file.to_xml().as_bytes());
            prop_assert!(again.is_ok(), "to_xml output was rejected: {:?}", again.err());
            prop_assert_eq!(again.unwrap().0, file);
        }
    }

    #[test]
    fn redirect_valid_file_round_trips(xml in valid_redirect()) {
        let parsed = keyward::redirect::parse(xml.as_bytes());
        prop_assert!(parsed.is_ok(), "{} was rejected: {:?}", xml, parsed.err());
        let (file, _) = parsed.unwrap();
        let (again, _) = keyward::redirect::parse(file.to_xml().as_bytes()).unwrap();
        prop_assert_eq!(again, file);
    }

    #[test]
    fn manifest_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Manifest::parse(&bytes);
    }

    #[test]
    fn manifest_parse_checks_arbitrary_json(value in any_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if let Ok(manifest) = Manifest::parse(&bytes) {
            prop_assert_eq!(
                Some(manifest.size),
                manifest.page_count.checked_mul(u64::from(manifest.page_size))
            );
        }
    }

    #[test]
    fn manifest_accepted_sizes_agree(
        value in valid_manifest(),
        size_delta in prop_oneof![Just(0i64), -4096i64..4096],
        page_count in prop_oneof![Just(None), any::<u64>().prop_map(Some)],
    ) {
        let unchanged = size_delta == 0 && page_count.is_none();
        let mut value = value;
        let size = value["size"].as_u64().unwrap();
        value["size"] = size.saturating_add_signed(size_delta).into();
        if let Some(page_count) = page_count {
            value["page_count"] = page_count.into();
        }
        let bytes = serde_json::to_vec(&value).unwrap();
        let parsed = Manifest::parse(&bytes);
        if unchanged {
            let error = parsed.as_ref().err();
            prop_assert!(parsed.is_ok(), "a valid manifest was rejected: {:?}", error);
        }
        if let Ok(manifest) = parsed {
            prop_assert_eq!(
                Some(manifest.size),
                manifest.page_count.checked_mul(u64::from(manifest.page_size))
            );
        }
    }

    #[test]
    fn request_types_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<ActivateRequest>(&bytes);
        let _ = serde_json::from_slice::<ValidateRequest>(&bytes);
        let _ = serde_json::from_slice::<ReleaseRequest>(&bytes);
        let _ = serde_json::from_slice::<NewLicense>(&bytes);
        let _ = serde_json::from_slice::<NewProduct>(&bytes);
        let _ = serde_json::from_slice::<LicensePatch>(&bytes);
    }

    #[test]
    fn request_types_accept_any_json_safely(value in any_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = serde_json::from_slice::<ActivateRequest>(&bytes);
        let _ = serde_json::from_slice::<ValidateRequest>(&bytes);
        let _ = serde_json::from_slice::<ReleaseRequest>(&bytes);
        let _ = serde_json::from_slice::<NewLicense>(&bytes);
        let _ = serde_json::from_slice::<NewProduct>(&bytes);
        let _ = serde_json::from_slice::<LicensePatch>(&bytes);
    }
}

/// Sends arbitrary JSON to every JSON endpoint of a live server; none may respond with a 5xx.
#[test]
fn arbitrary_json_never_yields_server_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = runtime.block_on(common::InProcess::start(common::test_config(dir.path())));
    let key = runtime.block_on(common::seed_license(&server.url, 2));
    let client = common::http();
    let endpoints = [
        ("/v1/activate", false),
        ("/v1/validate", false),
        ("/v1/release", false),
        ("/v1/admin/licenses", true),
        ("/v1/admin/products", true),
    ];

    // Bounded: each case is a real HTTP round trip.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(64u32);
    let config = ProptestConfig::with_cases(cases);
    let strategy = (
        any_json(),
        0usize..endpoints.len(),
        any::<bool>(),
        "\\PC{0,30}",
    );
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&strategy, |(value, endpoint, use_key, computer_id)| {
            let (path, needs_admin) = endpoints[endpoint];
            let mut body = value;
            // Half the cases carry a real key, so requests reach the license logic.
            if use_key && let Some(object) = body.as_object_mut() {
                object.insert("key".into(), key.clone().into());
                object.insert("computer_id".into(), computer_id.into());
            }
            let status = runtime.block_on(async {
                let mut request = client
                    .post(format!("{}{path}", server.url))
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&body).unwrap());
                if needs_admin {
                    request = request.bearer_auth(common::ADMIN_TOKEN);
                }
                request.send().await.unwrap().status().as_u16()
            });
            prop_assert!(status < 500, "{} answered {} to {}", path, status, body);
            Ok(())
        })
        .unwrap();
    runtime.block_on(server.stop());
}
