//! A small HTTP load generator: closed loop (as fast as possible with N connections) and open
//! loop (a fixed request rate, latency measured from the scheduled send time, so a stalled
//! server cannot hide its queueing delay).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// Results of one load run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub latencies_us: Vec<u64>,
}

impl Stats {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index] as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies_us.iter().copied().max().unwrap_or(0) as f64 / 1000.0
    }
}

/// A request to send repeatedly: method POST with a JSON body, or GET when `body` is None.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub body: Option<Vec<u8>>,
    /// Extra per-request body variation: `{n}` in the body is replaced by a counter, and
    /// `{key}` by `keys[n % keys.len()]`.
    pub numbered: bool,
    pub keys: Vec<String>,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("client")
}

fn build(client: &reqwest::Client, target: &Target, n: u64) -> reqwest::RequestBuilder {
    match &target.body {
        None => client.get(&target.url),
        Some(body) => {
            let body = if target.numbered {
                let mut text = String::from_utf8_lossy(body).replace("{n}", &n.to_string());
                if !target.keys.is_empty() {
                    text = text.replace("{key}", &target.keys[n as usize % target.keys.len()]);
                }
                text.into_bytes()
            } else {
                body.clone()
            };
            client
                .post(&target.url)
                .header("content-type", "application/json")
                .body(body)
        }
    }
}

/// Sends requests from `connections` tasks for `duration`.
pub async fn closed_loop(target: &Target, connections: usize, duration: Duration) -> Stats {
    let client = client();
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, target, counter) = (client.clone(), target.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let sent = Instant::now();
                let ok = match build(&client, &target, n).send().await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let _ = response.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                stats.latencies_us.push(sent.elapsed().as_micros() as u64);
                if ok {
                    stats.requests += 1
                } else {
                    stats.errors += 1
                }
            }
            stats
        }));
    }
    merge(tasks, started).await
}

/// Sends `rate` requests per second for `duration`, each on its own task at its scheduled time.
pub async fn open_loop(target: &Target, rate: f64, duration: Duration) -> Stats {
    let client = client();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let results = Arc::new(Mutex::new(Stats::default()));
    let mut tasks = Vec::new();
    for n in 0..total {
        let scheduled = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, target, results) = (client.clone(), target.clone(), results.clone());
        tasks.push(tokio::spawn(async move {
            let ok = match build(&client, &target, n).send().await {
                Ok(response) => {
                    let ok = response.status().is_success();
                    let _ = response.bytes().await;
                    ok
                }
                Err(_) => false,
            };
            let latency = scheduled.elapsed().as_micros() as u64;
            let mut stats = results.lock().await;
            stats.latencies_us.push(latency);
            if ok {
                stats.requests += 1
            } else {
                stats.errors += 1
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut stats = results.lock().await.clone();
    stats.seconds = started.elapsed().as_secs_f64();
    stats
}

async fn merge(tasks: Vec<tokio::task::JoinHandle<Stats>>, started: Instant) -> Stats {
    let mut total = Stats::default();
    for task in tasks {
        let stats = task.await.expect("load task");
        total.requests += stats.requests;
        total.errors += stats.errors;
        total.latencies_us.extend(stats.latencies_us);
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

/// Median of a list of numbers.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[values.len() / 2]
}
