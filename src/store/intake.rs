//! Ingestion's write: a request's events, offered to the inbox, each with
//! what became of it.
//!
//! The write runs on the caller's thread. It used to go to a blocking
//! thread (first one per request, then one per batch of requests), because
//! it was a sled transaction and sled writes a transaction's log to disk on
//! the spot. The inbox's writes are plain in-memory sled writes now (see
//! the module docs of `store`), a few tens of microseconds per event, and a
//! hand-off to another thread and back cost more than that in context
//! switches. The disk wait is the flush ([`Store::commit`]), which callers
//! share and still await before they answer.

use std::time::Duration;

use jiff::Timestamp;

use super::{Insert, Offered, Store, StoreError, StoredEvent};
use crate::event::Event;

impl Store {
    /// Offer a delivery's events to the inbox: each event, with what
    /// became of it. Not durable until [`Store::commit`] returns.
    pub async fn accept_events(
        &self,
        events: Vec<Event>,
        now: Timestamp,
        window: Duration,
    ) -> Result<Vec<Offered>, StoreError> {
        let outcomes = self.insert_offered(&events, now, window)?;
        Ok(events
            .into_iter()
            .zip(outcomes)
            .map(|(event, (insert, seq))| match insert {
                Insert::Accepted => Offered::Accepted(StoredEvent {
                    seq,
                    received_at: now,
                    event,
                }),
                Insert::Duplicate => Offered::Duplicate(event),
            })
            .collect())
    }
}
