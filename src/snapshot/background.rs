//! Long snapshot work (copying, hashing and verifying a whole database, deleting old copies) on
//! a thread of its own at a lower CPU priority, so that requests keep their latency on a small
//! machine while it runs.

use super::SnapshotError;

/// Niceness of snapshot threads. Requests preempt them at once, but under full load they still
/// get about a tenth of a core, so a snapshot is slowed, never starved.
const NICENESS: i32 = 10;

/// Runs `work` on a new thread named `name` at lower CPU priority and returns its result. A new
/// thread, because an unprivileged process cannot raise a thread's priority again, and a pooled
/// thread would keep the lower priority for later work.
pub async fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T, SnapshotError> + Send + 'static,
) -> Result<T, SnapshotError> {
    let (reply, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let thread = rustix::thread::gettid();
            if let Err(err) = rustix::process::setpriority_process(Some(thread), NICENESS) {
                tracing::debug!(error = %err, "cannot lower the priority of a snapshot thread");
            }
            let _ = reply.send(work());
        })
        .map_err(|err| SnapshotError::Internal(format!("cannot start thread {name}: {err}")))?;
    result
        .await
        .map_err(|_| SnapshotError::Internal(format!("thread {name} stopped without a result")))?
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn snapshot_thread_is_niced_and_returns_result() {
        let niceness = super::run("kw-test", || {
            let me = rustix::thread::gettid();
            Ok(rustix::process::getpriority_process(Some(me)).unwrap())
        })
        .await
        .unwrap();
        let own = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert!(niceness > own, "thread niceness {niceness}, caller {own}");

        let failed: Result<(), _> = super::run("kw-test", || {
            Err(super::SnapshotError::Internal("no".into()))
        })
        .await;
        assert!(failed.is_err());
    }
}
