//! Child processes under measurement: keyward sites and baseline servers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str =
    "kwa_0badcafe_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub const PEER_SECRET: &str = "bench-peer-secret-0123456789";

/// A child process that printed the URL it listens on.
pub struct Proc {
    pub child: Child,
    pub url: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        read_status_field(self.pid(), "VmRSS:")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_status_field(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Returns the release keyward binary beside this example (target/release/keyward).
pub fn keyward_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("keyward");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --bins --examples` first",
        path.display()
    );
    path
}

fn wait_for_url(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "child did not start");
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.find(prefix).map(|at| &line[at + prefix.len()..]) {
                    std::thread::spawn(move || for _ in lines {});
                    return rest.trim().to_string();
                }
            }
            _ => panic!("child exited before listening"),
        }
    }
}

/// Starts `keyward serve` on a data directory with extra environment.
pub fn keyward(data_dir: &Path, listen: &str, env: &[(&str, String)]) -> Proc {
    let mut command = Command::new(keyward_binary());
    command
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .env("KEYWARD_BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("KEYWARD_SNAPSHOT_EVERY", "")
        // The load generator is one address; the per-address limit would cap every figure.
        .env("KEYWARD_LIMITS_REQUESTS_PER_MINUTE", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn keyward");
    let url = wait_for_url(&mut child, "keyward listening on ");
    Proc { child, url }
}

/// Starts this bench binary as a baseline server.
pub fn baseline(signed: bool) -> Proc {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "baseline-server",
            if signed { "signed" } else { "unsigned" },
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn baseline");
    let url = wait_for_url(&mut child, "listening on ");
    Proc { child, url }
}
