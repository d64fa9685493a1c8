//! The writer thread: runs write jobs in batches, one savepoint each, and commits each batch as
//! one durable transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::DbError;

/// Jobs taken into one transaction at most. Bounds the latency a slow batch adds.
const MAX_BATCH: usize = 256;

/// Report of a job to the writer after running in its savepoint.
pub struct WriteOutcome {
    changed: bool,
    /// Whether a change moves the data version on (see [`super::Db::write_untracked`]).
    tracked: bool,
    complete: Box<dyn FnOnce(Option<DbError>) + Send>,
}

type Job = Box<dyn FnOnce(&Connection, bool) -> WriteOutcome + Send>;

enum Message {
    Job { job: Job, system: bool },
    Stop,
}

pub(super) struct WriterHandle {
    sender: mpsc::Sender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl WriterHandle {
    pub(super) fn start(
        conn: Connection,
        writable: Arc<AtomicBool>,
        version: Arc<AtomicU64>,
    ) -> Result<Self, DbError> {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("keyward-writer".into())
            .spawn(move || run(conn, receiver, writable, version))
            .map_err(|err| DbError::Sqlite(format!("cannot start writer thread: {err}")))?;
        Ok(WriterHandle {
            sender,
            thread: Some(thread),
        })
    }

    pub(super) async fn submit<T, E>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        system: bool,
        tracked: bool,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let (reply, response) = oneshot::channel::<Result<T, E>>();
        let wrapped: Job = Box::new(move |conn: &Connection, allowed: bool| {
            if !allowed {
                return WriteOutcome {
                    changed: false,
                    tracked,
                    complete: Box::new(move |failure: Option<DbError>| {
                        let error = failure.unwrap_or(DbError::ReadOnly);
                        let _ = reply.send(Err(E::from(error)));
                    }),
                };
            }
            match job(conn) {
                Ok(value) => WriteOutcome {
                    changed: true,
                    tracked,
                    complete: Box::new(move |commit_error| {
                        let result = match commit_error {
                            None => Ok(value),
                            Some(err) => Err(E::from(err)),
                        };
                        let _ = reply.send(result);
                    }),
                },
                Err(err) => WriteOutcome {
                    changed: false,
                    tracked,
                    complete: Box::new(move |_| {
                        let _ = reply.send(Err(err));
                    }),
                },
            }
        });
        self.sender
            .send(Message::Job {
                job: wrapped,
                system,
            })
            .map_err(|_| E::from(DbError::Closed))?;
        response.await.map_err(|_| E::from(DbError::Closed))?
    }

    /// Finishes the queued jobs, then closes the writer's connection.
    pub(super) fn stop(mut self) {
        let _ = self.sender.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    conn: Connection,
    receiver: mpsc::Receiver<Message>,
    writable: Arc<AtomicBool>,
    version: Arc<AtomicU64>,
) {
    while let Ok(first) = receiver.recv() {
        let mut batch = Vec::new();
        let mut stop = false;
        match first {
            Message::Job { job, system } => batch.push((job, system)),
            Message::Stop => break,
        }
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(Message::Job { job, system }) => batch.push((job, system)),
                Ok(Message::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        run_batch(&conn, batch, &writable, &version);
        if stop {
            break;
        }
    }
    if let Err((_, err)) = conn.close() {
        tracing::error!(error = %err, "closing the writer connection failed");
    }
}

fn run_batch(
    conn: &Connection,
    batch: Vec<(Job, bool)>,
    writable: &AtomicBool,
    version: &AtomicU64,
) {
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        let error = DbError::from(err);
        tracing::error!(error = %error, "starting a write transaction failed");
        for (job, _) in batch {
            // The job is not run, so report the failure through a job that does nothing.
            let outcome = job(conn, false);
            (outcome.complete)(Some(error.clone()));
        }
        return;
    }

    let allowed_now = writable.load(Ordering::SeqCst);
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut changed = false;
    let mut tracked_change = false;
    for (job, system) in batch {
        let outcome = run_in_savepoint(conn, job, system || allowed_now);
        changed |= outcome.changed;
        tracked_change |= outcome.changed && outcome.tracked;
        outcomes.push(outcome);
    }

    let commit = if changed {
        conn.execute_batch(
            "UPDATE database_state SET write_seq = write_seq + 1 WHERE id = 1; COMMIT",
        )
    } else {
        conn.execute_batch("ROLLBACK")
    };
    let commit_error = commit.err().map(|err| {
        tracing::error!(error = %err, "committing a write batch failed");
        let _ = conn.execute_batch("ROLLBACK");
        DbError::from(err)
    });
    if tracked_change {
        // After the commit, so that a reader who sees the old version number cannot have read
        // data older than this commit and keep it as current.
        version.fetch_add(1, Ordering::SeqCst);
    }
    for outcome in outcomes {
        (outcome.complete)(commit_error.clone());
    }
}

fn run_in_savepoint(conn: &Connection, job: Job, allowed: bool) -> WriteOutcome {
    if let Err(err) = run_cached(conn, "SAVEPOINT job") {
        let outcome = job(conn, false);
        tracing::error!(error = %err, "creating a savepoint failed");
        return WriteOutcome {
            changed: false,
            tracked: outcome.tracked,
            complete: outcome.complete,
        };
    }
    let outcome = job(conn, allowed);
    let finish = if outcome.changed {
        run_cached(conn, "RELEASE job")
    } else {
        run_cached(conn, "ROLLBACK TO job").and_then(|_| run_cached(conn, "RELEASE job"))
    };
    if let Err(err) = finish {
        tracing::error!(error = %err, "closing a savepoint failed");
    }
    outcome
}

/// Runs one statement without compiling it again on every job.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}
