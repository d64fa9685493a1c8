//! The `keyward client`, `keyward redirect` and `keyward redirector` commands, run as the built
//! binary against in-process servers on loopback.

mod client_support;
mod common;

use std::process::{Output, Stdio};

use client_support::{
    DEADLINE, Redirector, loopback_http, redirect_xml, revoke, sample_public_key,
};
use common::{InProcess, seed_license, test_config};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Environment variables that would send requests to a proxy instead of loopback.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

fn keyward() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    for variable in PROXY_VARIABLES {
        command.env_remove(variable);
    }
    command.env("RUST_LOG", "warn").kill_on_drop(true);
    command
}

async fn run(args: &[&str]) -> Output {
    tokio::time::timeout(DEADLINE, keyward().args(args).output())
        .await
        .expect("keyward finished in time")
        .expect("keyward runs")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "stdout is not JSON ({err}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Returns `--public-key KID=BASE64` arguments for every key of `server`.
fn public_key_args(server: &InProcess) -> Vec<String> {
    server
        .state
        .keyring()
        .public_keys()
        .iter()
        .flat_map(|key| {
            [
                "--public-key".to_string(),
                format!("{}={}", key.kid, key.public_key),
            ]
        })
        .collect()
}

/// Runs `keyward client COMMAND --server URL` with the server's keys and `extra` arguments.
async fn client_command(server: &InProcess, command: &str, extra: &[&str]) -> Output {
    let mut args = vec!["client", command, "--server", server.url.as_str()];
    let keys = public_key_args(server);
    args.extend(keys.iter().map(String::as_str));
    args.extend(extra);
    run(&args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_exit_code_follows_license() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let license = ["--key", key.as_str(), "--computer-id", "pc-1"];

    let activate = client_command(&server, "activate", &license).await;
    let valid = client_command(&server, "validate", &license).await;
    revoke(&server.url, &key).await;
    let revoked = client_command(&server, "validate", &license).await;

    assert_eq!(activate.status.code(), Some(0), "{activate:?}");
    let activation = stdout_json(&activate);
    assert_eq!(activation["result"], "ACTIVATED");
    assert!(
        activation["computer_key"]
            .as_str()
            .unwrap()
            .starts_with("kw1.")
    );
    assert_eq!(valid.status.code(), Some(0), "{valid:?}");
    assert_eq!(stdout_json(&valid)["code"], "VALID");
    assert_eq!(revoked.status.code(), Some(1), "{revoked:?}");
    assert_eq!(stdout_json(&revoked)["code"], "REVOKED");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_checks_computer_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 2).await;
    let first = ["--key", key.as_str(), "--computer-id", "pc-1"];
    let second = ["--key", key.as_str(), "--computer-id", "pc-2"];
    let activation = stdout_json(&client_command(&server, "activate", &first).await);
    client_command(&server, "activate", &second).await;
    let computer_key = activation["computer_key"].as_str().unwrap();

    let own = client_command(
        &server,
        "validate",
        &[&first[..], &["--computer-key", computer_key]].concat(),
    )
    .await;
    let borrowed = client_command(
        &server,
        "validate",
        &[&second[..], &["--computer-key", computer_key]].concat(),
    )
    .await;

    assert_eq!(own.status.code(), Some(0), "{own:?}");
    assert_eq!(borrowed.status.code(), Some(1), "{borrowed:?}");
    assert_eq!(stdout_json(&borrowed)["code"], "COMPUTER_MISMATCH");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn release_and_rejection_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let license = ["--key", key.as_str(), "--computer-id", "pc-1"];
    client_command(&server, "activate", &license).await;

    let released = client_command(&server, "release", &license).await;
    let again = client_command(&server, "release", &license).await;

    assert_eq!(released.status.code(), Some(0), "{released:?}");
    assert_eq!(stdout_json(&released)["result"], "RELEASED");
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert_eq!(stdout_json(&again)["error"], "NOT_ACTIVATED");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_key_exits_with_two() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let wrong_key = format!("k1={}", sample_public_key());

    let output = run(&[
        "client",
        "validate",
        "--server",
        &server.url,
        "--public-key",
        &wrong_key,
        "--key",
        &key,
        "--computer-id",
        "pc-1",
    ])
    .await;

    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_eq!(stdout_json(&output)["error"], "UNTRUSTED_RESPONSE");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mistyped_key_exits_with_two() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;

    let output = client_command(
        &server,
        "validate",
        &["--key", "7K3M-QW2D-H8XP", "--computer-id", "pc-1"],
    )
    .await;

    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_eq!(stdout_json(&output)["error"], "INVALID_KEY");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_keys_warns_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    client_command(
        &server,
        "activate",
        &["--key", &key, "--computer-id", "pc-1"],
    )
    .await;

    let output = run(&[
        "client",
        "validate",
        "--server",
        &server.url,
        "--fetch-keys",
        "--key",
        &key,
        "--computer-id",
        "pc-1",
    ])
    .await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("trust on first use"), "{stderr}");
    assert!(stderr.contains("--public-key"), "{stderr}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_through_redirector() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let redirector = Redirector::start(&server.url).await;
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("state.json");
    let state_arg = state_file.to_str().unwrap();
    let mut args = vec![
        "client",
        "activate",
        "--redirector",
        redirector.url.as_str(),
        "--state-file",
        state_arg,
        "--key",
        key.as_str(),
        "--computer-id",
        "pc-1",
    ];
    let keys = public_key_args(&server);
    args.extend(keys.iter().map(String::as_str));

    let output = run(&args).await;

    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let state = keyward::client::ClientState::read(&state_file).unwrap();
    assert!(state.active_url.is_some());
    assert!(state.last_server_contact.is_some());
    server.stop().await;
}

const PRIMARY_URL: &str = "https://lic.example.com/";
const DR_URL: &str = "https://dr.example.net/";

/// Writes a redirect file naming [`PRIMARY_URL`] active and [`DR_URL`] as DR into `dir`.
fn two_site_file(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("qlmredirect.xml");
    std::fs::write(&file, redirect_xml(PRIMARY_URL, Some(DR_URL))).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_set_active_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let file = two_site_file(dir.path());
    let (primary, dr) = (PRIMARY_URL, DR_URL);
    let file_arg = file.to_str().unwrap();

    let switched = run(&["redirect", "set-active", dr, "--file", file_arg]).await;
    let shown = run(&["redirect", "show", "--file", file_arg]).await;

    assert_eq!(switched.status.code(), Some(0), "{switched:?}");
    assert_eq!(shown.status.code(), Some(0), "{shown:?}");
    let shown = String::from_utf8_lossy(&shown.stdout);
    let active_line = shown.lines().find(|line| line.starts_with("activeUrl:"));
    let dr_line = shown.lines().find(|line| line.starts_with("drUrl:"));
    assert!(active_line.unwrap().ends_with(dr), "{shown}");
    assert!(dr_line.unwrap().ends_with(primary), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_set_active_rejects_unknown_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = two_site_file(dir.path());
    let (primary, dr) = (PRIMARY_URL, DR_URL);
    let file_arg = file.to_str().unwrap();
    let typo = "https://dr.example.nte/";

    let rejected = run(&["redirect", "set-active", typo, "--file", file_arg]).await;
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert_eq!(rejected.status.code(), Some(1), "{rejected:?}");
    assert!(stderr.contains(typo), "{stderr}");
    assert!(stderr.contains("--new-server"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        redirect_xml(primary, Some(dr)),
        "the file changed"
    );

    // A replacement server is accepted when named as such.
    let replacement = "https://lic2.example.com/";
    let args = [
        "redirect",
        "set-active",
        replacement,
        "--file",
        file_arg,
        "--new-server",
    ];
    let accepted = run(&args).await;
    assert_eq!(accepted.status.code(), Some(0), "{accepted:?}");
    let printed = String::from_utf8_lossy(&accepted.stdout);
    assert!(printed.contains(replacement), "{printed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirector_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("qlmredirect.xml");
    let content = redirect_xml("https://lic.example.com/", None);
    std::fs::write(&file, &content).unwrap();
    let mut child = keyward()
        .args(["redirector", "--listen", "127.0.0.1:0", "--file"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("listening line in time")
        .unwrap()
        .expect("a listening line");
    let base = line
        .strip_prefix("keyward redirector listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_string();
    let url = format!("{base}/qlmredirect.xml");

    let served = loopback_http()
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shown = run(&["redirect", "show", "--url", &url]).await;
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("redirector stopped in time")
        .unwrap();

    assert_eq!(served, content);
    assert_eq!(shown.status.code(), Some(0), "{shown:?}");
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("https://lic.example.com/"),
        "{shown:?}"
    );
    assert!(status.success(), "{status:?}");
}
