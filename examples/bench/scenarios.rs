//! The benchmark scenarios. Each returns a Markdown section with medians over the plan's runs.

use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Plan;
use super::data::{admin, build_database, seed_license};
use super::load::{Stats, Target, closed_loop, median, open_loop};
use super::procs::{self, PEER_SECRET, Proc};

const CONNECTIONS: usize = 32;

pub fn header() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| text.lines().next().map(str::to_string))
        .unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default();
    format!("Machine: {cores} cores, {memory}; commit {commit}\n\n")
}

async fn activate_one(base: &str, key: &str, computer: &str) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .post(format!("{base}/v1/activate"))
        .json(&json!({"key": key, "computer_id": computer}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

fn validate_target(base: &str, key: &str, computer: &str) -> Target {
    Target {
        url: format!("{base}/v1/validate"),
        body: Some(
            json!({"key": key, "computer_id": computer})
                .to_string()
                .into_bytes(),
        ),
        numbered: false,
        keys: Vec::new(),
    }
}

/// Validation throughput and latency next to signed and unsigned baselines.
pub async fn validate(plan: Plan) -> String {
    let dir = tempfile::tempdir().unwrap();
    let server = procs::keyward(&dir.path().join("site"), "127.0.0.1:0", &[]);
    let key = seed_license(&server.url, 10).await;
    activate_one(&server.url, &key, "bench-pc").await;
    // Every validation reads the database, as after a write.
    let uncached = procs::keyward(
        &dir.path().join("uncached"),
        "127.0.0.1:0",
        &[("KEYWARD_VALIDATION_CACHE_ENTRIES", "0".to_string())],
    );
    let uncached_key = seed_license(&uncached.url, 10).await;
    activate_one(&uncached.url, &uncached_key, "bench-pc").await;
    let signed = procs::baseline(true);
    let unsigned = procs::baseline(false);
    let targets = [
        ("keyward", validate_target(&server.url, &key, "bench-pc")),
        (
            "keyward, cache off",
            validate_target(&uncached.url, &uncached_key, "bench-pc"),
        ),
        (
            "signed baseline",
            validate_target(&signed.url, &key, "bench-pc"),
        ),
        (
            "unsigned baseline",
            validate_target(&unsigned.url, &key, "bench-pc"),
        ),
    ];

    let mut runs: Vec<Vec<Stats>> = vec![Vec::new(); targets.len()];
    for _ in 0..plan.runs {
        for (index, (_, target)) in targets.iter().enumerate() {
            closed_loop(target, CONNECTIONS, Duration::from_millis(300)).await;
            runs[index].push(closed_loop(target, CONNECTIONS, plan.seconds).await);
        }
    }
    let mut out = format!(
        "## Validation\n\n{CONNECTIONS} connections, closed loop, {} runs of {} s, medians. \
         Load generator: examples/bench/load.rs in the same process tree on the same 2 cores. \
         Every request validates the same key on the same computer, so keyward answers from its \
         validation cache after the first; `cache off` is a second keyward with \
         `validation.cache_entries = 0`, which reads the database for every request, as happens \
         after each write.\n\n\
         | server | requests/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|\n",
        plan.runs,
        plan.seconds.as_secs()
    );
    let mut rates = Vec::new();
    for (index, (name, _)) in targets.iter().enumerate() {
        let mut rate: Vec<f64> = runs[index].iter().map(Stats::rate).collect();
        let mut p50: Vec<f64> = runs[index].iter().map(|s| s.percentile_ms(0.5)).collect();
        let mut p99: Vec<f64> = runs[index].iter().map(|s| s.percentile_ms(0.99)).collect();
        let errors: usize = runs[index].iter().map(|s| s.errors).sum();
        let rate = median(&mut rate);
        rates.push(rate);
        let _ = writeln!(
            out,
            "| {name} | {rate:.0} | {:.2} | {:.2} | {errors} |",
            median(&mut p50),
            median(&mut p99)
        );
    }
    let _ = writeln!(
        out,
        "\nkeyward / signed baseline: **{:.2}** (target at least 0.8); keyward / unsigned baseline: {:.2}; \
         keyward with the validation cache off / signed baseline: {:.2}\n",
        rates[0] / rates[2],
        rates[0] / rates[3],
        rates[1] / rates[2]
    );

    let rate = rates[0] * 0.5;
    let mut p99_keyward = Vec::new();
    let mut p99_signed = Vec::new();
    for _ in 0..plan.runs.min(3) {
        p99_keyward.push(
            open_loop(&targets[0].1, rate, plan.seconds)
                .await
                .percentile_ms(0.99),
        );
        p99_signed.push(
            open_loop(&targets[2].1, rate, plan.seconds)
                .await
                .percentile_ms(0.99),
        );
    }
    let _ = writeln!(
        out,
        "At 50% of keyward's maximum ({rate:.0} requests/s, open loop): p99 keyward {:.2} ms, signed baseline {:.2} ms.\n",
        median(&mut p99_keyward),
        median(&mut p99_signed)
    );
    let idle = server.rss_kib();
    let busy = sample_rss_during(
        &server,
        closed_loop(&targets[0].1, CONNECTIONS, plan.seconds),
    )
    .await;
    let _ = writeln!(
        out,
        "keyward RSS: idle {} MiB, under validation load {} MiB.\n",
        idle / 1024,
        busy / 1024
    );
    out
}

/// Returns the peak RSS of `process` in KiB while `work` runs.
async fn sample_rss_during<T>(process: &Proc, work: impl std::future::Future<Output = T>) -> u64 {
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(process.rss_kib()));
    let pid = process.pid();
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let text =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let rss = text
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                peak.fetch_max(rss, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    work.await;
    done.store(true, Ordering::SeqCst);
    let _ = sampler.await;
    peak.load(Ordering::SeqCst)
}

/// Activation throughput with durable commits next to raw rusqlite durable inserts.
pub async fn activate(plan: Plan) -> String {
    let dir = tempfile::tempdir().unwrap();
    let server = procs::keyward(&dir.path().join("site"), "127.0.0.1:0", &[]);
    // Activations spread over 200 licenses of 2,000 seats, as a vendor's customers would make
    // them; five runs at about 7,000 activations/s fill under half the seats. NOTE: the seat
    // check counts a license's live activations, so one license with tens of thousands of
    // activations makes each further activation slower.
    let mut keys = Vec::new();
    for _ in 0..200 {
        keys.push(seed_license(&server.url, 2_000).await);
    }
    let mut keyward_rates = Vec::new();
    let mut raw_rates = Vec::new();
    for run in 0..plan.runs {
        let target = Target {
            url: format!("{}/v1/activate", server.url),
            body: Some(
                format!(r#"{{"key":"{{key}}","computer_id":"run{run}-pc-{{n}}"}}"#).into_bytes(),
            ),
            numbered: true,
            keys: keys.clone(),
        };
        let stats = closed_loop(&target, 64, plan.seconds).await;
        assert_eq!(stats.errors, 0, "activations failed");
        keyward_rates.push(stats.rate());
        let raw_dir = dir.path().join(format!("raw-{run}"));
        raw_rates.push(
            tokio::task::spawn_blocking(move || raw_inserts(&raw_dir, plan.seconds))
                .await
                .unwrap(),
        );
    }
    let (keyward, raw) = (median(&mut keyward_rates), median(&mut raw_rates));
    format!(
        "## Activation\n\n64 connections activating new computers on 200 licenses of 2,000 seats, {} runs of {} s, medians; \
         raw baseline: one rusqlite connection inserting one row per durable transaction (WAL, \
         synchronous=FULL) on the same filesystem.\n\n| | activations/s |\n|---|---|\n| keyward | {keyward:.0} |\n\
         | raw rusqlite | {raw:.0} |\n\nkeyward / raw: **{:.2}** (target at least 1.0)\n\n",
        plan.runs,
        plan.seconds.as_secs(),
        keyward / raw
    )
}

fn raw_inserts(dir: &Path, duration: Duration) -> f64 {
    std::fs::create_dir_all(dir).unwrap();
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
         CREATE TABLE activations (id INTEGER PRIMARY KEY, license_id INTEGER, computer_id TEXT, activated_at TEXT); \
         CREATE UNIQUE INDEX live ON activations(license_id, computer_id);",
    )
    .unwrap();
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < duration {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.execute(
            "INSERT INTO activations (license_id, computer_id, activated_at) VALUES (1, ?1, '2026-01-01T00:00:00Z')",
            [format!("pc-{count}")],
        )
        .unwrap();
        conn.execute_batch("COMMIT").unwrap();
        count += 1;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn time_ms(work: impl FnOnce()) -> f64 {
    let started = Instant::now();
    work();
    started.elapsed().as_secs_f64() * 1000.0
}

fn has_sqlite3() -> bool {
    std::process::Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Snapshot next to cp, sqlite3 .backup and VACUUM INTO; ship, verify and swap next to curl;
/// for each database size of the plan.
pub async fn snapshot_and_ship(plan: Plan) -> String {
    let mut out = String::from(
        "## Snapshot and ship\n\nMedians of the runs. The source file is in the page cache for every method. \
         keyward's snapshot fsyncs its output and hashes it; `cp` does neither. \
         Ship end to end: from `POST /v1/admin/snapshots` on the primary until the DR reports the new write \
         sequence (snapshot, zstd stream over loopback HTTP, verify with integrity_check, swap). \
         curl: `curl -T` of the same file to a discarding HTTP sink.\n\n\
         | size | keyward snapshot ms | cp ms | snapshot / cp | cp + fsync ms | sqlite3 .backup ms | VACUUM INTO ms | ship end to end ms | curl ms | end to end / curl | wire bytes / db size | primary RSS peak above idle MiB | DR RSS peak above idle MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for &mib in plan.sizes_mib {
        out.push_str(&snapshot_row(plan, mib).await);
    }
    out.push('\n');
    out
}

async fn snapshot_row(plan: Plan, mib: u64) -> String {
    let dir = tempfile::tempdir_in("target").unwrap();
    let primary_dir = dir.path().join("primary");
    build_database(&primary_dir, mib * 1024 * 1024);
    let db = primary_dir.join("keyward.db");

    let (mut take, mut cp, mut backup, mut vacuum) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cp_sync = Vec::new();
    let sqlite3 = has_sqlite3();
    for run in 0..plan.runs {
        let out = dir.path().join(format!("out-{run}"));
        std::fs::create_dir_all(&out).unwrap();
        take.push(time_ms(|| {
            keyward::snapshot::take::take(&db, &out, "bench", run as u64 + 1).unwrap();
        }));
        cp.push(time_ms(|| {
            let status = std::process::Command::new("cp")
                .arg(&db)
                .arg(out.join("cp.db"))
                .status()
                .unwrap();
            assert!(status.success());
        }));
        cp_sync.push(time_ms(|| {
            let target = out.join("cp-sync.db");
            let status = std::process::Command::new("cp")
                .arg(&db)
                .arg(&target)
                .status()
                .unwrap();
            assert!(status.success());
            std::fs::File::open(&target).unwrap().sync_all().unwrap();
        }));
        if sqlite3 {
            backup.push(time_ms(|| {
                let status = std::process::Command::new("sqlite3")
                    .arg(&db)
                    .arg(format!(".backup '{}'", out.join("backup.db").display()))
                    .status()
                    .unwrap();
                assert!(status.success());
            }));
        }
        vacuum.push(time_ms(|| {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute("VACUUM INTO ?1", [out.join("vacuum.db").to_string_lossy()])
                .unwrap();
        }));
        std::fs::remove_dir_all(&out).unwrap();
    }
    let snapshot_file = {
        let out = dir.path().join("wire");
        std::fs::create_dir_all(&out).unwrap();
        keyward::snapshot::take::take(&db, &out, "bench", 1)
            .unwrap()
            .path
    };
    let wire =
        zstd_size(&snapshot_file) as f64 / std::fs::metadata(&snapshot_file).unwrap().len() as f64;
    let curl = curl_ms(&snapshot_file, plan.runs).await;
    let (ship, primary_rss, dr_rss) = ship_runs(dir.path(), &primary_dir, plan.runs).await;

    let (take, cp) = (median(&mut take), median(&mut cp));
    let backup = if backup.is_empty() {
        "n/a (sqlite3 missing)".to_string()
    } else {
        format!("{:.0}", median(&mut backup))
    };
    format!(
        "| {mib} MiB | {take:.0} | {cp:.0} | {:.2} | {:.0} | {backup} | {:.0} | {ship:.0} | {curl:.0} | {:.2} | {wire:.2} | {} | {} |\n",
        take / cp,
        median(&mut cp_sync),
        median(&mut vacuum),
        ship / curl,
        primary_rss / 1024,
        dr_rss / 1024
    )
}

fn zstd_size(path: &Path) -> u64 {
    struct Counter(u64);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let file = std::fs::File::open(path).unwrap();
    zstd::stream::copy_encode(file, &mut counter, 1).unwrap();
    counter.0
}

/// Median time of `curl -T file` to a sink that discards the body.
async fn curl_ms(file: &Path, runs: usize) -> f64 {
    let app = axum::Router::new().route(
        "/sink",
        axum::routing::put(|body: axum::body::Body| async move {
            use futures_util::StreamExt;
            let mut stream = body.into_data_stream();
            while stream.next().await.is_some() {}
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sink", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut times = Vec::new();
    for _ in 0..runs {
        let file = file.to_path_buf();
        let url = url.clone();
        times.push(
            tokio::task::spawn_blocking(move || {
                time_ms(|| {
                    let status = std::process::Command::new("curl")
                        .args(["-s", "-o", "/dev/null", "--noproxy", "*", "-T"])
                        .arg(&file)
                        .arg(&url)
                        .status()
                        .expect("curl is installed");
                    assert!(status.success());
                })
            })
            .await
            .unwrap(),
        );
    }
    server.abort();
    median(&mut times)
}

/// Runs a primary on `primary_dir` and a fresh DR, and measures the time from snapshot to
/// applied. Returns the median in ms and the peak RSS above idle of each, in KiB.
async fn ship_runs(root: &Path, primary_dir: &Path, runs: usize) -> (f64, u64, u64) {
    let dr = procs::keyward(
        &root.join("dr"),
        "127.0.0.1:0",
        &[
            ("KEYWARD_INITIAL_ROLE", "standby".into()),
            ("KEYWARD_PEER_SECRET", PEER_SECRET.into()),
        ],
    );
    let primary = procs::keyward(
        primary_dir,
        "127.0.0.1:0",
        &[
            ("KEYWARD_PEER_URL", dr.url.clone()),
            ("KEYWARD_PEER_SECRET", PEER_SECRET.into()),
        ],
    );
    let key = seed_license(&primary.url, 1_000_000).await;
    let (primary_idle, dr_idle) = (primary.rss_kib(), dr.rss_kib());
    let mut times = Vec::new();
    let mut primary_peak = 0;
    let mut dr_peak = 0;
    for run in 0..runs {
        activate_one(&primary.url, &key, &format!("ship-{run}")).await;
        let dr_peak_run = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let work = async {
            let (status, manifest) = admin(
                &primary.url,
                reqwest::Method::POST,
                "/v1/admin/snapshots",
                None,
            )
            .await;
            assert_eq!(status, 201, "{manifest}");
            let wanted = manifest["position"]["write_seq"].clone();
            loop {
                let (_, status) =
                    admin(&dr.url, reqwest::Method::GET, "/v1/admin/status", None).await;
                dr_peak_run.fetch_max(dr.rss_kib(), Ordering::SeqCst);
                if status["position"]["write_seq"] == wanted {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let peak = sample_rss_during(&primary, work).await;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        primary_peak = primary_peak.max(peak);
        dr_peak = dr_peak.max(dr_peak_run.load(Ordering::SeqCst));
    }
    (
        median(&mut times),
        primary_peak.saturating_sub(primary_idle),
        dr_peak.saturating_sub(dr_idle),
    )
}

/// Maximum latency and failures of validations on the DR while it swaps in a snapshot.
pub async fn swap_stall(plan: Plan) -> String {
    let mut out = String::from(
        "## DR swap stall\n\nValidations on the DR (8 connections, closed loop) while the primary ships a snapshot \
         that the DR verifies and swaps in. Every request counts, including those that waited at the swap gate. \
         With the validation cache on, repeated validations are answered from memory and pass the gate; \
         with it off (`validation.cache_entries = 0`), every validation reads the database and waits while the swap holds the gate.\n\n\
         | database | validation cache | runs | max latency ms (median of runs) | p99 ms | failed requests (all runs) |\n|---|---|---|---|---|---|\n",
    );
    for (mib, cache) in [(100u64, true), (100, false), (1024, true), (1024, false)] {
        let dir = tempfile::tempdir_in("target").unwrap();
        let primary_dir = dir.path().join("primary");
        build_database(&primary_dir, mib * 1024 * 1024);
        let cache_entries = if cache { "20000" } else { "0" };
        let dr = procs::keyward(
            &dir.path().join("dr"),
            "127.0.0.1:0",
            &[
                ("KEYWARD_INITIAL_ROLE", "standby".into()),
                ("KEYWARD_PEER_SECRET", PEER_SECRET.into()),
                ("KEYWARD_VALIDATION_CACHE_ENTRIES", cache_entries.into()),
            ],
        );
        let primary = procs::keyward(
            &primary_dir,
            "127.0.0.1:0",
            &[
                ("KEYWARD_PEER_URL", dr.url.clone()),
                ("KEYWARD_PEER_SECRET", PEER_SECRET.into()),
            ],
        );
        let key = seed_license(&primary.url, 1_000_000).await;
        activate_one(&primary.url, &key, "stall-pc").await;
        let (status, _) = admin(
            &primary.url,
            reqwest::Method::POST,
            "/v1/admin/snapshots",
            None,
        )
        .await;
        assert_eq!(status, 201);
        wait_applied(&primary, &dr).await;

        let (mut max, mut p99, mut failed) = (Vec::new(), Vec::new(), 0);
        for run in 0..plan.runs {
            let stats = stall_window(&primary, &dr, &key, run).await;
            max.push(stats.max_ms());
            p99.push(stats.percentile_ms(0.99));
            failed += stats.errors;
        }
        let _ = writeln!(
            out,
            "| {mib} MiB | {} | {} | {:.1} | {:.1} | {failed} |",
            if cache { "on" } else { "off" },
            plan.runs,
            median(&mut max),
            median(&mut p99)
        );
    }
    out.push('\n');
    out
}

/// Runs validation load on the DR while one more snapshot ships and swaps in; returns the load's
/// statistics for the whole window.
async fn stall_window(primary: &Proc, dr: &Proc, key: &str, run: usize) -> Stats {
    activate_one(&primary.url, key, &format!("window-{run}")).await;
    let target = validate_target(&dr.url, key, "stall-pc");
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut total = Stats::default();
            while !stop.load(Ordering::SeqCst) {
                let stats = closed_loop(&target, 8, Duration::from_millis(200)).await;
                total.requests += stats.requests;
                total.errors += stats.errors;
                total.latencies_us.extend(stats.latencies_us);
            }
            total
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = admin(
        &primary.url,
        reqwest::Method::POST,
        "/v1/admin/snapshots",
        None,
    )
    .await;
    assert_eq!(status, 201);
    wait_applied(primary, dr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap()
}

async fn wait_applied(primary: &Proc, dr: &Proc) {
    let (_, status) = admin(&primary.url, reqwest::Method::GET, "/v1/admin/status", None).await;
    let wanted = status["replication"]["last_snapshot"]["write_seq"].clone();
    for _ in 0..6000 {
        let (_, status) = admin(&dr.url, reqwest::Method::GET, "/v1/admin/status", None).await;
        if status["position"]["write_seq"] == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the DR never applied the snapshot");
}

/// p99 validation latency on the primary while snapshots of a large database run, next to the
/// idle p99 at the same request rate.
pub async fn snapshot_latency(plan: Plan, mib: u64, rate: f64) -> String {
    let dir = tempfile::tempdir_in("target").unwrap();
    let data_dir = dir.path().join("primary");
    build_database(&data_dir, mib * 1024 * 1024);
    let mut out = format!(
        "## Validation latency during snapshots\n\n{mib} MiB database, {rate:.0} validations/s open loop, \
         {} runs of {} s; snapshots taken back to back during the busy runs. With the validation cache \
         off (`validation.cache_entries = 0`), every validation reads the database while the snapshot copies it.\n\n\
         | validation cache | p99 idle ms | p99 during snapshots ms | snapshots taken | during / idle |\n|---|---|---|---|---|\n",
        plan.runs,
        plan.seconds.as_secs(),
    );
    let mut ratios = Vec::new();
    for cache in [true, false] {
        let entries = if cache { "20000" } else { "0" };
        let server = procs::keyward(
            &data_dir,
            "127.0.0.1:0",
            &[("KEYWARD_VALIDATION_CACHE_ENTRIES", entries.into())],
        );
        let (idle, busy, snapshots) = latency_during_snapshots(&server, plan, rate).await;
        drop(server);
        ratios.push(busy / idle);
        let _ = writeln!(
            out,
            "| {} | {idle:.2} | {busy:.2} | {snapshots} | {:.2} |",
            if cache { "on" } else { "off" },
            busy / idle
        );
    }
    let _ = writeln!(
        out,
        "\nduring / idle: **{:.2}** with the cache, {:.2} without (target at most 2)\n",
        ratios[0], ratios[1]
    );
    out
}

/// Median p99 of validations at `rate` on `server`, idle and while snapshots run back to back,
/// and the number of snapshots taken.
async fn latency_during_snapshots(server: &Proc, plan: Plan, rate: f64) -> (f64, f64, usize) {
    let key = seed_license(&server.url, 10).await;
    let computer = format!("bench-pc-{}", server.pid());
    activate_one(&server.url, &key, &computer).await;
    let target = validate_target(&server.url, &key, &computer);
    closed_loop(&target, 8, Duration::from_millis(500)).await;

    let (mut idle, mut busy, mut snapshots) = (Vec::new(), Vec::new(), 0usize);
    for _ in 0..plan.runs {
        idle.push(
            open_loop(&target, rate, plan.seconds)
                .await
                .percentile_ms(0.99),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let taker = {
            let (stop, url) = (stop.clone(), server.url.clone());
            tokio::spawn(async move {
                let mut taken = 0;
                while !stop.load(Ordering::SeqCst) {
                    let (status, _) =
                        admin(&url, reqwest::Method::POST, "/v1/admin/snapshots", None).await;
                    assert_eq!(status, 201);
                    taken += 1;
                }
                taken
            })
        };
        busy.push(
            open_loop(&target, rate, plan.seconds)
                .await
                .percentile_ms(0.99),
        );
        stop.store(true, Ordering::SeqCst);
        snapshots += taker.await.unwrap();
    }
    (median(&mut idle), median(&mut busy), snapshots)
}
