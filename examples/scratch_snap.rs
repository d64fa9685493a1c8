#[path = "bench/data.rs"]
#[allow(dead_code)]
mod data;
#[path = "bench/procs.rs"]
#[allow(dead_code)]
mod procs;
use std::time::Instant;
fn main() {
    let dir = std::path::Path::new("target/tmp/snapdb");
    if !dir.join("keyward.db").exists() {
        data::build_database(dir, 1024 * 1024 * 1024);
    }
    let db = dir.join("keyward.db");
    for run in 0..3 {
        let out = std::path::PathBuf::from(format!("target/tmp/snapout-{run}"));
        let _ = std::fs::remove_dir_all(&out);
        let t = Instant::now();
        keyward::snapshot::take::take(&db, &out, "bench", run + 1).unwrap();
        eprintln!("take total {:?}", t.elapsed());
        let t = Instant::now();
        std::process::Command::new("cp")
            .arg(&db)
            .arg(out.join("cp.db"))
            .status()
            .unwrap();
        eprintln!("cp {:?}", t.elapsed());
        std::fs::remove_dir_all(&out).unwrap();
    }
}
