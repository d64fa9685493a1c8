//! keyward benchmarks, each next to its baseline in the same run. See BENCHMARKS.md.
//!
//! Build and run everything (about 10 minutes on 2 cores):
//!     cargo build --release --bins --examples && target/release/examples/bench all
//! A quick smoke run: `target/release/examples/bench smoke`.

mod baseline;
mod data;
mod load;
mod procs;
mod scenarios;

use std::time::Duration;

/// How long and how often each measurement runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub runs: usize,
    pub seconds: Duration,
    /// Database sizes for the snapshot and ship scaling table, in MiB.
    pub sizes_mib: &'static [u64],
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let command = args.first().map(String::as_str).unwrap_or("help");
    let full = Plan {
        runs: 5,
        seconds: Duration::from_secs(5),
        sizes_mib: &[10, 100, 1024],
    };
    let smoke = Plan {
        runs: 1,
        seconds: Duration::from_secs(1),
        sizes_mib: &[10],
    };
    let report = match command {
        "baseline-server" => {
            let signed = args.get(1).map(String::as_str) == Some("signed");
            runtime.block_on(baseline::serve("127.0.0.1:0", signed));
            return;
        }
        "validate" => runtime.block_on(scenarios::validate(full)),
        "activate" => runtime.block_on(scenarios::activate(full)),
        "snapshot" => runtime.block_on(scenarios::snapshot_and_ship(full)),
        "stall" => runtime.block_on(scenarios::swap_stall(full)),
        "snapshot-latency" => runtime.block_on(scenarios::snapshot_latency(full, 1024, 1000.0)),
        "all" => runtime.block_on(async {
            let mut report = scenarios::header();
            report.push_str(&scenarios::validate(full).await);
            report.push_str(&scenarios::activate(full).await);
            report.push_str(&scenarios::snapshot_and_ship(full).await);
            report.push_str(&scenarios::snapshot_latency(full, 1024, 1000.0).await);
            report.push_str(&scenarios::swap_stall(full).await);
            report
        }),
        "smoke" => runtime.block_on(async {
            let mut report = scenarios::header();
            report.push_str(&scenarios::validate(smoke).await);
            report.push_str(&scenarios::activate(smoke).await);
            report.push_str(&scenarios::snapshot_and_ship(smoke).await);
            report.push_str(&scenarios::snapshot_latency(smoke, 10, 200.0).await);
            report
        }),
        _ => {
            eprintln!("usage: bench all|smoke|validate|activate|snapshot|snapshot-latency|stall");
            std::process::exit(2);
        }
    };
    println!("{report}");
    let out = std::path::Path::new("target/bench");
    let _ = std::fs::create_dir_all(out);
    let path = out.join(format!("{command}.md"));
    std::fs::write(&path, &report).expect("write report");
    eprintln!("written to {}", path.display());
}
