//! The disaster-recovery drill, `keyward demo --fast`, as CI runs it.

use std::process::Command;

#[test]
fn fast_drill_passes_every_check() {
    let output = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["demo", "--fast"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run keyward demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let steps: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with('['))
        .collect();
    let names = [
        "start",
        "import",
        "traffic",
        "ship",
        "failover",
        "clients on DR",
        "primary back",
        "failback",
    ];
    assert_eq!(steps.len(), names.len(), "{stdout}");
    for (line, name) in steps.iter().zip(names) {
        assert!(line.starts_with(&format!("[ ok ] {name}:")), "{line}");
    }
    assert!(stdout.contains("1000 licenses imported"), "{stdout}");
    assert!(
        stdout.contains("80/80 acknowledged activations VALID; lost: 0"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("every check held"), "{stdout}");

    // The drill removes its temp directory and stops its processes.
    let root = stdout
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("keyward demo in ")
        .to_string();
    assert!(!std::path::Path::new(&root).exists(), "{root} left behind");
}
