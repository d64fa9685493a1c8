//! Following the redirect file: real in-process license servers, the real redirector over a
//! file in a temp directory, and a recording redirect file server for the caching checks.

mod client_support;
mod common;

use std::time::Duration;

use client_support::{
    FakeRedirector, Redirector, closed_port_url, loopback_http, redirect_xml, sample_public_key,
    seed_license_with_key, trusted_keys,
};
use common::{InProcess, test_config};
use keyward::client::{Client, ClientBuilder, ClientError, ClientState, ValidationSource};
use keyward::keys::LicenseKey;
use keyward::redirect::same_site;
use keyward::signing::TrustedKeys;
use url::Url;

/// A redirect TTL short enough to wait out in a test.
const SHORT_TTL: Duration = Duration::from_millis(300);

/// A redirect TTL that no test outlives, so only a forced refresh reads the file again.
const LONG_TTL: Duration = Duration::from_secs(3600);

/// Two sites with separate databases that hold the same license, as after replication.
struct Sites {
    a: InProcess,
    b: InProcess,
    key: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Sites {
    async fn start() -> Sites {
        let dir_a = tempfile::tempdir().unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let a = InProcess::start(test_config(dir_a.path())).await;
        let b = InProcess::start(test_config(dir_b.path())).await;
        let key = LicenseKey::generate().to_string();
        seed_license_with_key(&a.url, &key, 2).await;
        seed_license_with_key(&b.url, &key, 2).await;
        Sites {
            a,
            b,
            key,
            _dirs: (dir_a, dir_b),
        }
    }

    /// Returns the keys of both sites.
    fn trusted(&self) -> TrustedKeys {
        let mut trusted = trusted_keys(&self.a);
        for key in self.b.state.keyring().public_keys() {
            trusted.add(&key.kid, &key.public_key).unwrap();
        }
        trusted
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
    }
}

fn redirect_client(redirector_url: &str, trusted: TrustedKeys, ttl: Duration) -> ClientBuilder {
    Client::builder()
        .enable_dr_site(true)
        .redirector_url(redirector_url)
        .redirect_ttl(ttl)
        .trusted_keys(trusted)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .no_proxy()
}

/// Returns the URL of the server that produced a validation result.
fn server_of(source: &ValidationSource) -> Url {
    match source {
        ValidationSource::Server { url, .. } => url.clone(),
        other => panic!("expected a server result, got {other:?}"),
    }
}

fn same(url: &Url, expected: &str) -> bool {
    same_site(url, &Url::parse(expected).unwrap())
}

#[tokio::test]
async fn follows_active_url_change() {
    let sites = Sites::start().await;
    let redirector = Redirector::start(&sites.a.url).await;
    let client = redirect_client(&redirector.url, sites.trusted(), SHORT_TTL)
        .build()
        .unwrap();

    let on_a = client.activate(&sites.key, "pc-1", "").await.unwrap();
    let first = client.validate(&sites.key, "pc-1", None).await.unwrap();
    redirector.switch_to(&sites.b.url).await;
    tokio::time::sleep(SHORT_TTL * 2).await;
    let on_b = client.activate(&sites.key, "pc-1", "").await.unwrap();
    let second = client.validate(&sites.key, "pc-1", None).await.unwrap();

    assert!(!on_a.already_active);
    assert!(same(&server_of(&first.source), &sites.a.url), "{first:?}");
    assert!(!on_b.already_active, "activation went to site A again");
    assert!(same(&server_of(&second.source), &sites.b.url), "{second:?}");
    let active = client.active_url().await.unwrap();
    assert!(same(&active, &sites.b.url), "{active}");
    sites.stop().await;
}

#[tokio::test]
async fn cached_url_is_kept_within_ttl() {
    let sites = Sites::start().await;
    let redirector = Redirector::start(&sites.a.url).await;
    let client = redirect_client(&redirector.url, sites.trusted(), LONG_TTL)
        .build()
        .unwrap();

    let first = client.validate(&sites.key, "pc-1", None).await.unwrap();
    redirector.switch_to(&sites.b.url).await;
    let second = client.validate(&sites.key, "pc-1", None).await.unwrap();

    assert!(same(&server_of(&first.source), &sites.a.url));
    assert!(same(&server_of(&second.source), &sites.a.url));
    sites.stop().await;
}

#[tokio::test]
async fn revalidates_with_etag_after_ttl() {
    let active = closed_port_url().await;
    let fake = FakeRedirector::start(&redirect_xml(&active, None)).await;
    let client = Client::builder()
        .enable_dr_site(true)
        .redirector_url(&fake.url)
        .redirect_ttl(SHORT_TTL)
        .trusted_key("k1", &sample_public_key())
        .no_proxy()
        .build()
        .unwrap();
    let etag = keyward::redirect::etag_for(redirect_xml(&active, None).as_bytes());

    let first = client.active_url().await.unwrap();
    let within_ttl = client.active_url().await.unwrap();
    let seen_within_ttl = fake.seen().len();
    tokio::time::sleep(SHORT_TTL * 2).await;
    let revalidated = client.active_url().await.unwrap();
    let within_renewed_ttl = client.active_url().await.unwrap();
    let seen = fake.seen();

    assert!(same(&first, &active));
    assert!(same(&within_ttl, &active));
    assert!(same(&revalidated, &active));
    assert!(same(&within_renewed_ttl, &active));
    assert_eq!(seen_within_ttl, 1, "fetched again within the TTL");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].if_none_match, None);
    assert_eq!(seen[0].status, 200);
    assert_eq!(seen[1].if_none_match.as_deref(), Some(etag.as_str()));
    assert_eq!(seen[1].status, 304);
    assert_eq!(client.state().redirect_etag.as_deref(), Some(etag.as_str()));
}

#[tokio::test]
async fn changed_file_replaces_cached_url() {
    let first_url = closed_port_url().await;
    let second_url = closed_port_url().await;
    let fake = FakeRedirector::start(&redirect_xml(&first_url, None)).await;
    let client = Client::builder()
        .enable_dr_site(true)
        .redirector_url(&fake.url)
        .redirect_ttl(SHORT_TTL)
        .trusted_key("k1", &sample_public_key())
        .no_proxy()
        .build()
        .unwrap();

    let before = client.active_url().await.unwrap();
    fake.set_body(&redirect_xml(&second_url, Some(&first_url)));
    tokio::time::sleep(SHORT_TTL * 2).await;
    let after = client.active_url().await.unwrap();

    assert!(same(&before, &first_url));
    assert!(same(&after, &second_url), "{after}");
    let seen = fake.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].status, 200);
}

#[tokio::test]
async fn invalid_file_falls_back_to_server_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = LicenseKey::generate().to_string();
    seed_license_with_key(&server.url, &key, 1).await;
    let fake = FakeRedirector::start("<QlmRedirection></QlmRedirection>").await;
    let client = redirect_client(&fake.url, trusted_keys(&server), SHORT_TTL)
        .server_url(&server.url)
        .build()
        .unwrap();

    let validation = client.validate(&key, "pc-1", None).await.unwrap();

    assert!(same(&server_of(&validation.source), &server.url));
    assert_eq!(fake.seen().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn redirector_down_uses_cached_url() {
    let sites = Sites::start().await;
    let mut redirector = Redirector::start(&sites.a.url).await;
    let client = redirect_client(&redirector.url, sites.trusted(), SHORT_TTL)
        .server_url(&sites.b.url)
        .build()
        .unwrap();

    let before = client.validate(&sites.key, "pc-1", None).await.unwrap();
    redirector.stop().await;
    tokio::time::sleep(SHORT_TTL * 2).await;
    let after = client.validate(&sites.key, "pc-1", None).await.unwrap();

    assert!(same(&server_of(&before.source), &sites.a.url));
    assert!(
        same(&server_of(&after.source), &sites.a.url),
        "expected the cached URL, not the configured one: {after:?}"
    );
    sites.stop().await;
}

#[tokio::test]
async fn new_client_uses_persisted_url() {
    let sites = Sites::start().await;
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("client-state.json");
    let mut redirector = Redirector::start(&sites.a.url).await;
    let first = redirect_client(&redirector.url, sites.trusted(), SHORT_TTL)
        .state_file(&state_file)
        .build()
        .unwrap();
    first.validate(&sites.key, "pc-1", None).await.unwrap();
    redirector.stop().await;

    // The configured server URL is site B, so reaching site A proves the persisted URL won.
    let second = redirect_client(&redirector.url, sites.trusted(), SHORT_TTL)
        .state_file(&state_file)
        .server_url(&sites.b.url)
        .build()
        .unwrap();
    let validation = second.validate(&sites.key, "pc-1", None).await.unwrap();

    assert!(
        same(&server_of(&validation.source), &sites.a.url),
        "{validation:?}"
    );
    sites.stop().await;
}

#[tokio::test]
async fn state_file_records_redirect() {
    let sites = Sites::start().await;
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("client-state.json");
    let redirector = Redirector::start(&sites.a.url).await;
    let client = redirect_client(&redirector.url, sites.trusted(), SHORT_TTL)
        .state_file(&state_file)
        .build()
        .unwrap();

    client.validate(&sites.key, "pc-1", None).await.unwrap();

    let state = ClientState::read(&state_file).unwrap();
    let served = loopback_http().get(&redirector.url).send().await.unwrap();
    let etag = served.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(
        state.redirector_url.as_deref(),
        Some(redirector.url.as_str())
    );
    assert!(same(
        &Url::parse(state.active_url.as_deref().unwrap()).unwrap(),
        &sites.a.url
    ));
    assert_eq!(state.redirect_etag.as_deref(), Some(etag.as_str()));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&state_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let leftovers: Vec<_> = std::fs::read_dir(state_dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != "client-state.json")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    sites.stop().await;
}

#[tokio::test]
async fn persisted_etag_revalidates_after_restart() {
    let active = closed_port_url().await;
    let fake = FakeRedirector::start(&redirect_xml(&active, None)).await;
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("client-state.json");
    let build = || {
        Client::builder()
            .enable_dr_site(true)
            .redirector_url(&fake.url)
            .trusted_key("k1", &sample_public_key())
            .state_file(&state_file)
            .no_proxy()
            .build()
            .unwrap()
    };

    build().active_url().await.unwrap();
    let restarted = build().active_url().await.unwrap();

    let seen = fake.seen();
    assert!(same(&restarted, &active));
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[1].if_none_match.is_some());
    assert_eq!(seen[1].status, 304);
}

#[tokio::test]
async fn state_of_other_redirector_is_ignored() {
    let active = closed_port_url().await;
    let fake = FakeRedirector::start(&redirect_xml(&active, None)).await;
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("client-state.json");
    Client::builder()
        .enable_dr_site(true)
        .redirector_url(&fake.url)
        .trusted_key("k1", &sample_public_key())
        .state_file(&state_file)
        .no_proxy()
        .build()
        .unwrap()
        .active_url()
        .await
        .unwrap();

    let other_redirector = closed_port_url().await;
    let client = Client::builder()
        .enable_dr_site(true)
        .redirector_url(&other_redirector)
        .trusted_key("k1", &sample_public_key())
        .state_file(&state_file)
        .no_proxy()
        .build()
        .unwrap();
    let result = client.active_url().await;

    let Err(err) = &result else {
        panic!("expected no server, got {result:?}");
    };
    assert!(matches!(err, ClientError::NoServer { .. }), "{err:?}");
    assert!(err.is_unreachable());
}

#[tokio::test]
async fn connection_failure_rereads_redirect_file() {
    let sites = Sites::start().await;
    let redirector = Redirector::start(&sites.a.url).await;
    let client = redirect_client(&redirector.url, sites.trusted(), LONG_TTL)
        .build()
        .unwrap();
    let before = client.validate(&sites.key, "pc-1", None).await.unwrap();

    redirector.switch_to(&sites.b.url).await;
    let Sites { a, b, key, _dirs } = sites;
    let a_url = a.url.clone();
    a.stop().await;
    let after = client.validate(&key, "pc-1", None).await.unwrap();

    assert!(same(&server_of(&before.source), &a_url));
    assert!(same(&server_of(&after.source), &b.url), "{after:?}");
    let active = client.active_url().await.unwrap();
    assert!(same(&active, &b.url), "{active}");
    b.stop().await;
}

#[tokio::test]
async fn connection_failure_without_change_is_returned() {
    let sites = Sites::start().await;
    let redirector = Redirector::start(&sites.a.url).await;
    let client = redirect_client(&redirector.url, sites.trusted(), LONG_TTL)
        .build()
        .unwrap();
    client.validate(&sites.key, "pc-1", None).await.unwrap();

    let Sites { a, b, key, _dirs } = sites;
    a.stop().await;
    let result = client.validate(&key, "pc-1", None).await;

    assert!(
        matches!(result, Err(ClientError::Unreachable { .. })),
        "{result:?}"
    );
    b.stop().await;
}
