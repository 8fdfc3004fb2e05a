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
        }
        overflowed.len()
    }

    /// [`Arrivals::offer_or_file`] without the filing: the sequence
    /// numbers and ids of the events that did not fit.
    fn offer(&self, offered: impl IntoIterator<Item = Offered>) -> Vec<(u64, String)> {
        let mut dropped = Vec::new();
        {
            let mut queue = self.queue.lock().expect("arrivals lock");
            for stored in offered.into_iter().filter_map(Offered::into_accepted) {
                if queue.len() < CAPACITY {
                    queue.push_back(stored);
                } else {
                    dropped.push((stored.seq, stored.event.id));
                    self.overflowed.store(true, Ordering::Release);
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

    fn stored(seq: u64) -> Offered {
        let body =
            r#"{"event":"call.missed","phone":"+5215512345678","ts":"2026-05-14T14:32:11Z"}"#;
        let ctx = crate::event::testing::ctx("wz", crate::event::Provider::Wazzap);
        let mut event = crate::event::testing::only(body, &ctx);
        event.id = format!("evt_{seq}");
        Offered::Accepted(StoredEvent {
            seq,
            received_at: jiff::Timestamp::UNIX_EPOCH,
            event,
            event_json: None,
        })
    }

    #[test]
    fn a_full_queue_drops_to_the_store_and_says_so() {
        let arrivals = Arrivals::default();
        let duplicate = Offered::Duplicate(stored(u64::MAX).event().clone());
        let dropped =
            arrivals.offer(std::iter::once(duplicate).chain((0..CAPACITY as u64 + 3).map(stored)));
        assert_eq!(
            dropped.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            (CAPACITY as u64..CAPACITY as u64 + 3).collect::<Vec<_>>(),
            "the ones that did not fit are named"
        );
        assert!(arrivals.take_overflow(), "the overflow is reported");
        assert!(!arrivals.take_overflow(), "once");
        let taken = arrivals.take();
        assert_eq!(taken.len(), CAPACITY);
        assert_eq!(
            taken.front().map(|s| s.seq),
            Some(0),
            "oldest first, duplicates left out"
        );
        assert!(arrivals.take().is_empty());
    }
}
