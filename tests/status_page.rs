//! The status page in headless Chromium, driven over the DevTools protocol: sign in through the
//! form, read the role, the snapshot history and a license search, save a screenshot, sign out,
//! and sign in again with a token in the URL fragment.
//!
//! Chromium must be installed at /usr/bin/chromium (Debian's `chromium` package, which .ci/run
//! installs) or named by the CHROMIUM environment variable; without it this test fails.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{ADMIN_TOKEN, Process, admin, seed_license};
use reqwest::Method;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn chromium_path() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "Chromium not found at {}: install Debian's chromium package \
         (apt-get install -y chromium), as .ci/run does, or set CHROMIUM to its path",
        path.display()
    );
    path
}

/// Returns the directory for test output such as screenshots, `target/test-artifacts`.
fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target directory")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create test-artifacts");
    dir
}

fn connect(url: &str) -> Socket {
    let (mut socket, _) = tungstenite::connect(url).expect("connect to the DevTools socket");
    if let MaybeTlsStream::Plain(stream) = socket.get_mut() {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set read timeout");
    }
    socket
}

/// A headless Chromium with a fresh profile and a DevTools connection to its one page.
struct Browser {
    child: Child,
    browser_url: String,
    page: Socket,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let chromium = chromium_path();
        let profile = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(profile.path().with_extension("log")).unwrap();
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,1800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chromium");

        // Chromium writes the port it bound and the browser's socket path into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, browser_path) = loop {
            let text = std::fs::read_to_string(&port_file).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                break (port.to_string(), path.to_string());
            }
            assert!(
                Instant::now() < deadline,
                "chromium wrote no DevToolsActivePort within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };

        let targets: Vec<Value> =
            reqwest::blocking::get(format!("http://127.0.0.1:{port}/json/list"))
                .expect("list DevTools targets")
                .json()
                .expect("targets are JSON");
        let page_url = targets
            .iter()
            .find(|target| target["type"] == "page")
            .and_then(|target| target["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        Browser {
            child,
            browser_url: format!("ws://127.0.0.1:{port}{browser_path}"),
            page: connect(&page_url),
            next_id: 1,
            _profile: profile,
        }
    }

    /// Sends a DevTools command to the page and returns its result, skipping events.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let command = json!({"id": id, "method": method, "params": params});
        self.page
            .send(Message::text(command.to_string()))
            .expect("send DevTools command");
        loop {
            let message = self.page.read().expect("read DevTools message");
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if reply["id"] != id {
                continue;
            }
            assert!(reply["error"].is_null(), "{method} failed: {reply}");
            return reply["result"].clone();
        }
    }

    /// Evaluates a JavaScript expression in the page, awaiting a promise, and returns its value.
    fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression} threw: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is true; fails after 20 s with `what` and the page's text.
    fn wait_for(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.evaluate(expression) == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = self.evaluate("document.body.innerText");
        panic!("timed out waiting for {what}; the page shows:\n{text}");
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(
            "document.readyState === 'complete' && !!document.getElementById('login')",
            "the status page to load",
        );
    }

    fn text_of(&mut self, selector: &str) -> String {
        let expression = format!(
            "(document.querySelector({}) || {{}}).textContent || ''",
            json!(selector)
        );
        self.evaluate(&expression)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn screenshot(&mut self, path: &Path) -> usize {
        let result = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let data = result["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 PNG");
        std::fs::write(path, &png).expect("write screenshot");
        png.len()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok((mut browser, _)) = tungstenite::connect(self.browser_url.as_str()) {
            let close = json!({"id": 1, "method": "Browser.close"});
            let _ = browser.send(Message::text(close.to_string()));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server with two licenses and two snapshots; returns it with the key of the license
/// whose customer is "Ada Lovelace" and the key of the other one.
fn server_with_data(dir: &Path) -> (Process, String, String) {
    let server = Process::serve(&dir.join("site"), &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (searched, other) = runtime.block_on(async {
        let other = seed_license(&server.url, 1).await;
        let (status, body) = admin(&server.url, Method::POST, "/v1/admin/snapshots", None).await;
        assert_eq!(status, 201, "{body}");

        let license = json!({
            "product": "app",
            "model": "subscription",
            "seats": 3,
            "expires_at": "2031-01-31",
            "customer_name": "Ada Lovelace",
            "customer_company": "Analytical Engines Ltd",
        });
        let (status, created) = admin(
            &server.url,
            Method::POST,
            "/v1/admin/licenses",
            Some(license),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let (status, body) = admin(&server.url, Method::POST, "/v1/admin/snapshots", None).await;
        assert_eq!(status, 201, "{body}");

        let searched = created["key"].as_str().expect("license key").to_string();
        (searched, other)
    });
    (server, searched, other)
}

fn submit_token(browser: &mut Browser, token: &str) {
    let script = format!(
        "document.getElementById('token').value = {}; \
         document.getElementById('login-form').requestSubmit(); true",
        json!(token)
    );
    browser.evaluate(&script);
}

#[test]
fn status_page_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (server, searched_key, other_key) = server_with_data(dir.path());
    let mut browser = Browser::start();
    let page = format!("{}/status", server.url);

    // A wrong token is rejected and not kept.
    browser.navigate(&page);
    browser.wait_for(
        "!document.getElementById('login').hidden",
        "the sign-in form",
    );
    submit_token(&mut browser, &format!("kwa_00000000_{}", "0".repeat(64)));
    browser.wait_for(
        "document.getElementById('login-error').textContent.includes('rejected')",
        "the rejected-token message",
    );
    let kept = browser.evaluate("sessionStorage.getItem('keyward.adminToken')");
    assert_eq!(kept, Value::Null);

    // The right token through the form shows the dashboard.
    submit_token(&mut browser, ADMIN_TOKEN);
    browser.wait_for(
        "!document.getElementById('dashboard').hidden \
         && document.getElementById('role').textContent === 'active'",
        "the role",
    );
    assert_eq!(browser.text_of("#health"), "no peer");
    let site_facts = browser.text_of("#site-facts");
    assert!(site_facts.contains("Write sequence"), "{site_facts}");

    let snapshot_rows = browser.evaluate("document.querySelectorAll('#snapshot-rows tr').length");
    assert_eq!(snapshot_rows, json!(2));
    let newest = browser.text_of("#snapshot-rows tr td");
    assert_eq!(newest, "2", "the newest snapshot is listed first");
    let bars = browser.evaluate("document.querySelectorAll('#snapshot-chart svg rect').length");
    assert_eq!(bars, json!(2));

    let audit = browser.text_of("#audit-rows");
    assert!(audit.contains("license.create"), "{audit}");

    // The initial list shows both licenses; a search narrows it to one.
    browser.wait_for(
        "document.querySelectorAll('#license-results tr').length === 2",
        "the initial license list",
    );
    browser.evaluate(
        "document.getElementById('search-q').value = 'Lovelace'; \
         document.getElementById('search-form').requestSubmit(); true",
    );
    browser.wait_for(
        "document.querySelectorAll('#license-results tr').length === 1",
        "the search result",
    );
    let results = browser.text_of("#license-results");
    assert!(results.contains(&searched_key), "{results}");
    assert!(results.contains("Ada Lovelace"), "{results}");
    assert!(!results.contains(&other_key), "{results}");

    let screenshot = artifacts_dir().join("status-page.png");
    let bytes = browser.screenshot(&screenshot);
    assert!(bytes > 10_000, "screenshot of {bytes} bytes looks empty");

    // Signing out removes the token from session storage.
    browser.evaluate("document.getElementById('logout').click(); true");
    browser.wait_for(
        "!document.getElementById('login').hidden",
        "the sign-in form after signing out",
    );
    let kept = browser.evaluate("sessionStorage.getItem('keyward.adminToken')");
    assert_eq!(kept, Value::Null);

    // A token in the URL fragment signs in and is removed from the address.
    browser.call("Page.navigate", json!({"url": "about:blank"}));
    browser.navigate(&format!("{page}#token={ADMIN_TOKEN}"));
    browser.wait_for(
        "!document.getElementById('dashboard').hidden \
         && document.getElementById('role').textContent === 'active'",
        "the role after a fragment sign-in",
    );
    let address = browser.evaluate("location.href");
    assert_eq!(address, json!(page));
}
