use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::RedirectorState;
use super::file::parent_directory;

/// Quiet time after the last file event before the file is read, so that an editor's
/// truncate-then-write or write-then-rename is read once, after it finishes.
const DEBOUNCE: Duration = Duration::from_millis(75);

/// Upper bound on the wait for a quiet moment while events keep arriving.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// Interval of the fallback poll, which catches changes that produce no file event, such as
/// an edit to the target of a symbolic link or a network file system without notifications.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Starts a task that reloads `state` whenever its file changes. Abort the returned handle to
/// stop watching.
///
/// The task watches the file's parent directory rather than the file, so that it still gets
/// events for the file after an editor replaces it by renaming a new file over it. It also rereads the
/// file every two seconds in case a change produced no event.
///
/// Before returning, this function sets up the watch and rereads the file once, so an edit
/// made since `state` was loaded is not missed.
pub fn spawn_watcher(state: RedirectorState) -> JoinHandle<()> {
    let (sender, events) = mpsc::unbounded_channel();
    let watcher = start_watcher(state.path(), sender.clone());
    state.reload();

    tokio::spawn(async move {
        // Holding `sender` keeps `events.recv()` from returning `None`, even when the watcher
        // failed to start, and holding `watcher` keeps the watch alive.
        let _watcher = watcher;
        let _sender = sender;
        run(state, events).await;
    })
}

async fn run(state: RedirectorState, mut events: mpsc::UnboundedReceiver<()>) {
    let mut poll = tokio::time::interval_at(Instant::now() + POLL_INTERVAL, POLL_INTERVAL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = events.recv() => {
                wait_for_quiet(&mut events).await;
                state.reload();
            }
            _ = poll.tick() => {
                state.reload();
            }
        }
    }
}

/// Returns once no event has arrived for [`DEBOUNCE`], or after [`MAX_DEBOUNCE`].
async fn wait_for_quiet(events: &mut mpsc::UnboundedReceiver<()>) {
    let deadline = Instant::now() + MAX_DEBOUNCE;
    while Instant::now() < deadline {
        match tokio::time::timeout(DEBOUNCE, events.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) | Err(_) => return,
        }
    }
}

fn start_watcher(path: &Path, sender: mpsc::UnboundedSender<()>) -> Option<RecommendedWatcher> {
    let directory = parent_directory(path).to_path_buf();
    let Some(file_name) = path.file_name().map(OsString::from) else {
        tracing::warn!(
            redirect.file = %path.display(),
            "redirect file path has no file name; relying on polling"
        );
        return None;
    };

    let handler = move |result: notify::Result<Event>| match result {
        Ok(event) => {
            if is_relevant(&event, &file_name) {
                let _ = sender.send(());
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "file watcher error; rereading the redirect file");
            let _ = sender.send(());
        }
    };

    let watcher = notify::recommended_watcher(handler)
        .and_then(|mut watcher| {
            watcher.watch(&directory, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        })
        .inspect_err(|err| {
            tracing::warn!(
                redirect.file = %path.display(),
                watch.directory = %directory.display(),
                error = %err,
                "failed to watch the redirect file's directory; relying on polling every {}s",
                POLL_INTERVAL.as_secs()
            );
        })
        .ok()?;

    tracing::debug!(watch.directory = %directory.display(), "watching redirect file directory");
    Some(watcher)
}

/// Returns whether `event` may have changed the file named `file_name`. Reads are skipped,
/// because the reloads themselves open the file and would otherwise trigger more reloads.
fn is_relevant(event: &Event, file_name: &OsString) -> bool {
    if event.need_rescan() {
        return true;
    }

    let is_read = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
        EventKind::Access(_) => true,
        _ => false,
    };
    if is_read {
        return false;
    }

    event
        .paths
        .iter()
        .any(|path| path.file_name() == Some(file_name.as_os_str()))
}
