//! Long snapshot work (copying, hashing and verifying a whole database, deleting old copies) on
//! a thread of its own at the lowest CPU priority, so that requests keep their latency on a
//! small machine while it runs.

use thread_priority::{
    NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};

use super::SnapshotError;

/// Niceness of snapshot threads where the system rejects the idle scheduling policy. Requests
/// preempt such threads, but under full load they still get about a tenth of a core.
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
            lower_priority();
            let _ = reply.send(work());
        })
        .map_err(|err| SnapshotError::Internal(format!("cannot start thread {name}: {err}")))?;
    result
        .await
        .map_err(|_| SnapshotError::Internal(format!("thread {name} stopped without a result")))?
}

/// Moves the calling thread to the idle scheduling policy (`SCHED_IDLE`): the lowest weight the
/// scheduler offers, and a request thread that wakes up preempts it. An idle machine still gives
/// it a whole core, so a snapshot is slowed mostly while requests need the CPU. Under full load
/// a snapshot takes longer, and its read transaction keeps the WAL from restarting meanwhile.
fn lower_priority() {
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(err) = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
    {
        tracing::debug!(error = ?err, "failed to set idle scheduling; lowering the niceness instead");
        let thread = rustix::thread::gettid();
        if let Err(err) = rustix::process::setpriority_process(Some(thread), NICENESS) {
            tracing::debug!(error = %err, "cannot lower the priority of a snapshot thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};

    #[tokio::test]
    async fn snapshot_thread_runs_at_idle_priority() {
        let policy = super::run("kw-test", || {
            Ok(thread_priority::unix::thread_schedule_policy().unwrap())
        })
        .await
        .unwrap();
        assert_eq!(
            policy,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle)
        );
        let own = thread_priority::unix::thread_schedule_policy().unwrap();
        assert_ne!(own, policy, "the caller's policy must stay as it was");

        let failed: Result<(), _> = super::run("kw-test", || {
            Err(super::SnapshotError::Internal("no".into()))
        })
        .await;
        assert!(failed.is_err());
    }
}
