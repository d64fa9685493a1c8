//! Named crash points for fault-injection tests.
//!
//! In debug builds, when `KEYWARD_FAILPOINT` names the point being passed, the process prints
//! `failpoint reached: NAME` to stderr and then stops there (sleeps forever), so that a test can
//! SIGKILL it at exactly that step. `KEYWARD_FAILPOINT=NAME:abort` aborts instead, and
//! `NAME:error` makes a point passed with `hit_or_fail` return an I/O error. Release builds
//! compile every call to nothing.

/// Stops the process here if the `KEYWARD_FAILPOINT` environment variable names `name`.
#[cfg(debug_assertions)]
pub fn hit(name: &str) {
    let Ok(wanted) = std::env::var("KEYWARD_FAILPOINT") else {
        return;
    };
    let (point, action) = wanted.split_once(':').unwrap_or((wanted.as_str(), "pause"));
    if point != name {
        return;
    }
    eprintln!("failpoint reached: {name}");
    if action == "abort" {
        std::process::abort();
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Returns an I/O error here if `KEYWARD_FAILPOINT` is `name:error`, else acts as `hit`.
#[cfg(debug_assertions)]
pub fn hit_or_fail(name: &str) -> std::io::Result<()> {
    let wanted = std::env::var("KEYWARD_FAILPOINT").unwrap_or_default();
    if wanted.strip_suffix(":error") == Some(name) {
        eprintln!("failpoint reached: {name}");
        return Err(std::io::Error::other(format!("failpoint {name}")));
    }
    hit(name);
    Ok(())
}

/// Does nothing: failpoints are inert in release builds.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit_or_fail(_name: &str) -> std::io::Result<()> {
    Ok(())
}

/// Does nothing: failpoints are inert in release builds.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) {}
