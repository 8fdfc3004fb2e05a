//! Accepted events handed from ingestion to the engine in memory.
//!
//! An accepted event's record is durable in the store's inbox log before
//! its 2xx, and kept in memory by the store (`store/unfiled.rs`), which
//! files it into its stored `pending` queue only when it must (reading it
//! back would cost a lookup and a JSON decode per event, which under load
//! was a tenth of the engine's time). So ingestion passes the events it
//! just stored straight to the dispatcher through this bounded queue.
//! When the queue is full the events are dropped from it (not from the
//! store), their records are filed into the stored queue, and the
//! dispatcher is told to read the stored queue again, so a burst costs
//! memory only up to [`CAPACITY`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::store::{Offered, Store, StoredEvent};

/// Events held in memory at most; beyond that the stored queue is read.
pub const CAPACITY: usize = 1024;

/// The in-memory side of the inbox. One per engine, shared with ingestion.
#[derive(Default)]
pub struct Arrivals {
    queue: Mutex<VecDeque<StoredEvent>>,
    /// Some accepted event is only in the store: read the stored queue.
    overflowed: AtomicBool,
    notify: Notify,
}

impl Arrivals {
    /// Hand the accepted ones of durably stored events to the engine and
    /// wake it. Those that do not fit are filed in `store`'s queue, where
    /// the engine reads them, instead of kept in memory (on a failure
    /// to file, the next checkpoint files them). Returns how many did not
    /// fit.
    pub fn offer_or_file(
        &self,
        store: &Store,
        offered: impl IntoIterator<Item = Offered>,
    ) -> usize {
        let overflowed = self.offer(offered);
        if !overflowed.is_empty() {
            let which: Vec<(u64, &str)> = overflowed
                .iter()
                .map(|(seq, id)| (*seq, id.as_str()))
                .collect();
            if let Err(e) = store.file_queued(&which) {
                tracing::error!(error = %e, "cannot file queued events in the store; the next checkpoint will");
            }
            // After the filing: a read of the stored queue before it would
            // miss them, and nothing would ask for another.
            self.stored_elsewhere();
        }
        overflowed.len()
    }

    /// [`Arrivals::offer_or_file`] without the filing (nor the word to
    /// read the stored queue): the sequence numbers and ids of the events
    /// that did not fit.
    fn offer(&self, offered: impl IntoIterator<Item = Offered>) -> Vec<(u64, String)> {
        let mut dropped = Vec::new();
        {
            let mut queue = self.queue.lock().expect("arrivals lock");
            for stored in offered.into_iter().filter_map(Offered::into_accepted) {
                if queue.len() < CAPACITY {
                    queue.push_back(stored);
                } else {
                    dropped.push((stored.seq, stored.event.id));
                }
            }
        }
        self.notify.notify_one();
        dropped
    }

    /// Tell the engine that events are in the store's queue that were not
    /// offered here (written by another path), and wake it.
    pub fn stored_elsewhere(&self) {
        self.overflowed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// How many offered events wait for the engine.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.queue.lock().expect("arrivals lock").len()
    }

    /// Everything offered so far, oldest first.
    pub(super) fn take(&self) -> VecDeque<StoredEvent> {
        std::mem::take(&mut *self.queue.lock().expect("arrivals lock"))
    }

    /// Whether the stored queue must be read, clearing the flag.
    pub(super) fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }

    pub(super) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    pub(super) fn wake_all(&self) {
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` missed calls accepted by `store` (kept in memory, durable in
    /// its log), as ingestion offers them.
    async fn accepted(store: &Store, n: usize) -> Vec<Offered> {
        let ctx = crate::event::testing::ctx("wz", crate::event::Provider::Wazzap);
        let events: Vec<crate::event::Event> = (0..n)
            .map(|i| {
                let body = format!(
                    r#"{{"event":"call.missed","phone":"+52155{i:08}","ts":"2026-05-14T14:32:11Z"}}"#
                );
                crate::event::testing::only(&body, &ctx)
            })
            .collect();
        let now = jiff::Timestamp::from_second(1_778_767_200).unwrap();
        let offered = store
            .accept_events(events, now, std::time::Duration::from_secs(3600))
            .unwrap();
        store.commit_inbox().await.unwrap();
        offered
    }

    /// The events that do not fit are filed in the store's queue before
    /// the engine is told to read it: told first, it could read the queue
    /// before they are there, and nothing would tell it again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_files_the_rest_in_the_store_then_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let arrivals = std::sync::Arc::new(Arrivals::default());
        let mut offered = accepted(&store, CAPACITY + 3).await;
        let duplicate = Offered::Duplicate(offered[0].event().clone());
        offered.insert(0, duplicate);
        let expected: Vec<u64> = offered[CAPACITY + 1..]
            .iter()
            .map(|o| match o {
                Offered::Accepted(stored) => stored.seq,
                Offered::Duplicate(_) => unreachable!(),
            })
            .collect();

        // What the dispatcher does: as soon as it is told, read the queue.
        let watcher = {
            let (arrivals, store) = (arrivals.clone(), store.clone());
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !arrivals.take_overflow() {
                    assert!(std::time::Instant::now() < deadline, "never told");
                    std::hint::spin_loop();
                }
                store.pending_events(100).unwrap()
            })
        };
        assert_eq!(arrivals.offer_or_file(&store, offered), 3);
        let read: Vec<u64> = watcher.join().unwrap().iter().map(|s| s.seq).collect();
        assert_eq!(read, expected, "the overflow is in the queue when told");
        assert!(!arrivals.take_overflow(), "told once");
        let taken = arrivals.take();
        assert_eq!(taken.len(), CAPACITY);
        assert!(
            taken.iter().all(|s| s.seq < expected[0]),
            "the oldest kept, the duplicate left out"
        );
        assert!(arrivals.take().is_empty());
    }
}
