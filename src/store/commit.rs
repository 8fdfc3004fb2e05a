//! Group commit: many writers, one flush.
//!
//! Each caller takes a ticket (a generation number) *after* its write. A
//! flush covers every ticket issued before it started. If a flush is
//! running, callers wait for it to end and then the next flush (led by
//! whichever waiter gets there first) covers them all at once. Under load
//! this turns N concurrent requests into about two flushes instead of N.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::StoreError;

pub(super) struct GroupCommit {
    db: sled::Db,
    log_file: Arc<File>,
    state: Mutex<State>,
    done: Notify,
    /// Test switch: make flushes fail, to exercise the 503 path.
    fail_flushes: Arc<AtomicBool>,
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
}

impl GroupCommit {
    pub(super) fn new(db: sled::Db, log_file: File) -> Self {
        GroupCommit {
            db,
            log_file: Arc::new(log_file),
            state: Mutex::new(State::default()),
            done: Notify::new(),
            fail_flushes: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(super) async fn commit(&self) -> Result<(), StoreError> {
        let ticket = {
            let mut s = self.state.lock().expect("commit state lock");
            s.issued += 1;
            s.issued
        };
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            let lead_upto = {
                let mut s = self.state.lock().expect("commit state lock");
                if s.durable >= ticket {
                    return Ok(());
                }
                if let Some((upto, err)) = &s.failed {
                    if *upto >= ticket {
                        return Err(StoreError::Flush(err.clone()));
                    }
                }
                if s.flushing {
                    // Register interest before releasing the lock so the
                    // wake-up cannot be missed.
                    notified.as_mut().enable();
                    None
                } else {
                    s.flushing = true;
                    Some(s.issued)
                }
            };
            match lead_upto {
                None => notified.await,
                Some(upto) => {
                    let db = self.db.clone();
                    let file = self.log_file.clone();
                    let fail = self.fail_flushes.clone();
                    let result = tokio::task::spawn_blocking(move || {
                        if fail.load(Ordering::Relaxed) {
                            return Err("injected flush failure".to_string());
                        }
                        flush(&db, &file)
                    })
                    .await
                    .map_err(|e| format!("flush task failed: {e}"))
                    .and_then(|r| r);
                    {
                        let mut s = self.state.lock().expect("commit state lock");
                        s.flushing = false;
                        match result {
                            Ok(()) => s.durable = s.durable.max(upto),
                            Err(e) => s.failed = Some((upto, e)),
                        }
                    }
                    self.done.notify_waiters();
                }
            }
        }
    }

    pub(super) fn set_fail_flushes(&self, on: bool) {
        self.fail_flushes.store(on, Ordering::Relaxed);
    }

    pub(super) fn flush_blocking(&self) -> Result<(), StoreError> {
        flush(&self.db, &self.log_file).map_err(StoreError::Flush)
    }
}

fn flush(db: &sled::Db, log_file: &File) -> Result<(), String> {
    db.flush().map_err(|e| e.to_string())?;
    log_file.sync_data().map_err(|e| e.to_string())
}
