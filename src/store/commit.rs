//! Group commit: many writers, one flush.
//!
//! Each caller takes a ticket (a generation number) *after* its write. A
//! flush covers every ticket issued before it started. If a flush is
//! running, callers wait for it to end and then the next flush (led by
//! whichever waiter gets there first) covers them all at once. Under load
//! this turns N concurrent requests into about two flushes instead of N.
//!
//! Under load (the previous flush covered several callers and ended less
//! than [`BUSY_WITHIN`] ago), the next flush first waits
//! [`GATHER_WHEN_BUSY`] for more writers to join it, as the inbox log does
//! for its syncs. Each sled flush seals an IO buffer and hands it to sled's
//! IO threads, which all wake for every job (`notify_all` in sled's
//! `threadpool.rs`), then `fdatasync`s: under load that was ≈900 flushes a
//! second for ≈1,500 runs, ≈3 commits each. A commit waits up to two
//! gathers (one running when it arrives, then its own), a few milliseconds
//! per run at most; runs are not limited in number, so under load this
//! costs latency, not throughput. 2 ms rather than 800 µs (twenty-second
//! round, five interleaved pairs of the follow-up case): 4,659 against
//! 4,366 follow-ups/s, server CPU per event −6%; at 2,000 events/s the
//! event → follow-up p99 rose from 4.6 to 6.3 ms. 4 ms (twenty-fifth
//! round, three pairs) was worse again: 4,353 against 4,532 follow-ups/s,
//! and at 2,000 events/s an ack p99 of 2.7 against 2.0 ms. A lone writer whose commits come back
//! to back (one run: before its send, after it) does not gather: its
//! previous flush covered only itself.
//!
//! One flush at a time is measured, not assumed: letting two overlap (so a
//! request arriving just after a flush started need not wait for it to
//! end) was tried with the load bench, interleaved runs on the same
//! machine, and ingestion fell from 4,350–5,370 to 3,100–4,490 events/s
//! with no better p99 at 2,000 events/s.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::StoreError;

/// A flush that starts within this long of the end of a previous one
/// that covered several callers is "busy": it gathers first.
const BUSY_WITHIN: Duration = Duration::from_millis(1);
/// How long a busy flush waits for more writers before it starts.
const GATHER_WHEN_BUSY: Duration = Duration::from_micros(2000);

pub(super) struct GroupCommit {
    shared: Arc<Shared>,
}

/// What the callers and the flushes they start share. A flush does its own
/// bookkeeping when it ends, on the blocking thread that ran it, so a
/// caller that stops waiting (an HTTP request dropped when its client hangs
/// up) cannot leave a flush counted as running forever.
struct Shared {
    db: sled::Db,
    log_file: File,
    state: Mutex<State>,
    done: Notify,
    /// Test switch: make flushes fail, to exercise the 503 path.
    fail_flushes: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Last ticket handed out.
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A flush is running.
    flushing: bool,
    /// The last failed flush: tickets up to `.0` get its error.
    failed: Option<(u64, String)>,
    /// When the last flush ended, and whether it covered several tickets.
    last_end: Option<(Instant, bool)>,
}

impl GroupCommit {
    pub(super) fn new(db: sled::Db, log_file: File) -> Self {
        GroupCommit {
            shared: Arc::new(Shared {
                db,
                log_file,
                state: Mutex::new(State::default()),
                done: Notify::new(),
                fail_flushes: AtomicBool::new(false),
            }),
        }
    }

    pub(super) async fn commit(&self) -> Result<(), StoreError> {
        let shared = &self.shared;
        let ticket = {
            let mut s = shared.state.lock().expect("commit state lock");
            s.issued += 1;
            s.issued
        };
        loop {
            let notified = shared.done.notified();
            tokio::pin!(notified);
            let lead = {
                let mut s = shared.state.lock().expect("commit state lock");
                if s.durable >= ticket {
                    return Ok(());
                }
                if let Some((upto, err)) = &s.failed {
                    if *upto >= ticket {
                        return Err(StoreError::Flush(err.clone()));
                    }
                }
                // Register interest before releasing the lock so the
                // wake-up of a flush ending meanwhile cannot be missed.
                notified.as_mut().enable();
                if s.flushing {
                    false
                } else {
                    s.flushing = true;
                    true
                }
            };
            if lead {
                let shared = self.shared.clone();
                tokio::task::spawn_blocking(move || shared.flush_and_record());
            }
            notified.await;
        }
    }

    pub(super) fn set_fail_flushes(&self, on: bool) {
        self.shared.fail_flushes.store(on, Ordering::Relaxed);
    }

    pub(super) fn flush_blocking(&self) -> Result<(), StoreError> {
        flush(&self.shared.db, &self.shared.log_file).map_err(StoreError::Flush)
    }
}

impl Shared {
    /// Run one flush, record how it ended and wake the waiters. It covers
    /// every ticket issued before it starts: a ticket is taken after its
    /// writes, and a flush makes durable every write made before it.
    fn flush_and_record(&self) {
        let busy = {
            let s = self.state.lock().expect("commit state lock");
            s.last_end
                .is_some_and(|(t, shared)| shared && t.elapsed() < BUSY_WITHIN)
        };
        if busy {
            std::thread::sleep(GATHER_WHEN_BUSY);
        }
        let upto = self.state.lock().expect("commit state lock").issued;
        let result = if self.fail_flushes.load(Ordering::Relaxed) {
            Err("injected flush failure".to_string())
        } else {
            flush(&self.db, &self.log_file)
        };
        {
            let mut s = self.state.lock().expect("commit state lock");
            s.flushing = false;
            s.last_end = Some((Instant::now(), upto > s.durable + 1));
            match result {
                Ok(()) => s.durable = s.durable.max(upto),
                Err(e) => s.failed = Some((upto, e)),
            }
        }
        self.done.notify_waiters();
    }
}

fn flush(db: &sled::Db, log_file: &File) -> Result<(), String> {
    db.flush().map_err(|e| e.to_string())?;
    log_file.sync_data().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::Poll;
    use std::time::Duration;

    use super::*;

    fn group_commit(dir: &std::path::Path) -> GroupCommit {
        let db = sled::Config::new().path(dir).open().expect("open sled");
        let log_file = File::open(dir.join("db")).expect("sled's log file");
        GroupCommit::new(db, log_file)
    }

    /// Poll a commit once (it takes a ticket and starts a flush, or waits
    /// for the one under way), then drop it, as hyper drops a handler
    /// whose client hung up. Whether it was still waiting when dropped (a
    /// flush that started after an earlier ticket can cover it already).
    async fn start_and_abandon(commit: &GroupCommit) -> bool {
        let f = commit.commit();
        tokio::pin!(f);
        std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx).is_pending())).await
    }

    #[tokio::test]
    async fn callers_that_stop_waiting_do_not_stall_later_commits() {
        let dir = tempfile::tempdir().unwrap();
        let commit = group_commit(dir.path());
        // An abandoned leader, then an abandoned waiter (or, when the
        // leader's flush already covers it, one that finished).
        assert!(start_and_abandon(&commit).await, "a flush takes a while");
        start_and_abandon(&commit).await;
        let next = tokio::time::timeout(Duration::from_secs(10), commit.commit()).await;
        assert!(
            matches!(next, Ok(Ok(()))),
            "a later commit must complete once the abandoned flushes end"
        );
    }

    #[tokio::test]
    async fn concurrent_callers_all_succeed_and_a_failure_reaches_its_callers() {
        let dir = tempfile::tempdir().unwrap();
        let commit = Arc::new(group_commit(dir.path()));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let commit = commit.clone();
            tasks.push(tokio::spawn(async move { commit.commit().await }));
        }
        for t in tasks {
            t.await.unwrap().expect("commit");
        }
        commit.set_fail_flushes(true);
        let failed = commit.commit().await;
        assert!(
            matches!(&failed, Err(StoreError::Flush(m)) if m.contains("injected")),
            "{failed:?}"
        );
        commit.set_fail_flushes(false);
        commit.commit().await.expect("commits succeed again");
    }
}
