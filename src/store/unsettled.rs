//! Accepted events whose inbox entries are not in sled yet.
//!
//! # Why
//!
//! An accepted event used to be written into sled on the request's path:
//! a queue entry holding the whole event (`pending`), its expiry key, the
//! caller's call statistics and the dedupe marker (`events`), all under
//! the inbox's one writer lock; and the queue entry was removed again once
//! the engine had processed the event. sled 0.34 copies the whole leaf a
//! key lives in on every write, so the queue entry, the largest value,
//! was paid for twice. Yet a 2xx waits for the inbox log
//! (`inbox_log.rs`), not for sled: the log alone makes the event durable.
//!
//! So an event accepted over HTTP is *noted* here (in memory, with its log
//! record) and appended to the log, and nothing is written to sled. When
//! the engine is done with it, it is *settled*: its expiry key, statistics
//! and marker go to sled, and its queue entry is never written. An event
//! the engine has not taken yet is *filed* (written to sled as before,
//! queue entry included) when sled must hold it:
//!
//! - a checkpoint is about to retire the log segment holding its record:
//!   the checkpoint files every unsettled event, then flushes sled;
//! - the in-memory hand-over to the engine is full (`engine/arrivals.rs`),
//!   so the engine must find it in the stored queue;
//! - its log write failed: the log's writer flushes the store (filing
//!   first) before any later batch reports success.
//!
//! A crash loses this map; the log's replay on open restores every event
//! whose marker sled does not have, as before.
//!
//! # An entry's states
//!
//! ```text
//! Waiting ──take──▶ Settling ──marker written──▶ (gone)
//!    │
//!    └──file──▶ Filing ──written──▶ Filed ──take──▶ (gone; queue entry removed)
//!                  │
//!                  └──take──▶ TakenWhileFiling ──written──▶ (gone; queue entry removed)
//! ```
//!
//! Every state counts as "seen" for the dedupe check, and an entry leaves
//! the map only after its marker is in sled, so at every moment the map
//! or sled knows an accepted id. sled writes are made outside the map's
//! lock (the states say who is writing), except filing on the accepting
//! path, which holds it as the inbox's writer lock always did.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;

use super::StoreError;
use crate::event::Event;

/// What filing or settling an accepted event writes to sled, besides its
/// record.
#[derive(Debug, Clone)]
pub(super) struct Acceptance {
    pub seq: u64,
    pub received_at: Timestamp,
    /// The caller's phone, the kind and the provider's time, when the
    /// event counts in the caller's call statistics.
    pub stats: Option<(String, String, Timestamp)>,
}

impl Acceptance {
    pub(super) fn of(event: &Event, seq: u64, received_at: Timestamp) -> Acceptance {
        let counts = event.caller_is_phone && crate::event::kind::is_call(&event.kind);
        Acceptance {
            seq,
            received_at,
            stats: event
                .caller
                .clone()
                .filter(|_| counts)
                .map(|phone| (phone, event.kind.clone(), event.at)),
        }
    }
}

/// The inbox's sled trees, for the writes filing and settling make.
#[derive(Clone)]
pub(super) struct InboxTrees {
    pub events: sled::Tree,
    pub pending: sled::Tree,
    pub expiry: sled::Tree,
    pub call_stats: sled::Tree,
}

impl InboxTrees {
    /// An accepted event's entries, its queue entry (`record`, the stored
    /// event) first and `events` last: sled recovers a prefix of its log,
    /// so an event that survives a crash has its queue entry too.
    pub(super) fn file(&self, id: &str, a: &Acceptance, record: &[u8]) -> Result<(), StoreError> {
        self.pending.insert(a.seq.to_be_bytes(), record)?;
        self.settle(id, a)
    }

    /// What stays of an accepted event once processed: its expiry key, its
    /// share of the caller's statistics and, last, its dedupe marker.
    fn settle(&self, id: &str, a: &Acceptance) -> Result<(), StoreError> {
        self.expiry
            .insert(super::inbox::expiry_key(a.received_at, id), &[] as &[u8])?;
        if let Some((phone, kind, at)) = &a.stats {
            super::contacts::bump_stats(&self.call_stats, phone, kind, *at)?;
        }
        self.events.insert(
            id.as_bytes(),
            super::inbox::marker_bytes(a.seq, a.received_at)?,
        )?;
        Ok(())
    }
}

enum State {
    /// In memory and in the log only; the record is what filing writes.
    Waiting(Vec<u8>),
    /// Processed; the marker is being written. The record is kept in
    /// case that fails.
    Settling(Vec<u8>),
    Filing,
    /// In sled's queue, not processed yet.
    Filed,
    /// Processed while it was being filed: the filer removes the queue
    /// entry it wrote.
    TakenWhileFiling,
}

struct Entry {
    acceptance: Acceptance,
    state: State,
}

type Entries = HashMap<String, Entry>;

/// See the module docs. One per store.
pub(super) struct Unsettled {
    trees: InboxTrees,
    entries: Mutex<Entries>,
}

/// The inbox's writer lock: accepting holds it across the dedupe check,
/// noting (or filing) and the log append.
pub(super) struct Accepting<'a> {
    entries: MutexGuard<'a, Entries>,
    trees: &'a InboxTrees,
}

impl Accepting<'_> {
    /// Whether an acceptance of `id` is still unsettled. Such an id is a
    /// duplicate whatever the dedupe window: its first copy is still
    /// being processed.
    pub(super) fn unsettled(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// Keep an accepted event here until the engine takes it.
    pub(super) fn note(&mut self, id: String, acceptance: Acceptance, record: Vec<u8>) {
        self.entries.insert(
            id,
            Entry {
                acceptance,
                state: State::Waiting(record),
            },
        );
    }

    /// Write an accepted event to sled at once, queue entry included.
    pub(super) fn file(
        &self,
        id: &str,
        acceptance: &Acceptance,
        record: &[u8],
    ) -> Result<(), StoreError> {
        self.trees.file(id, acceptance, record)
    }
}

/// Entries taken out of `Waiting` to be filed: id, acceptance, record.
pub(super) type Filing = Vec<(String, Acceptance, Vec<u8>)>;

impl Unsettled {
    pub(super) fn new(trees: InboxTrees) -> Unsettled {
        Unsettled {
            trees,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().expect("unsettled inbox lock")
    }

    pub(super) fn accepting(&self) -> Accepting<'_> {
        Accepting {
            entries: self.entries(),
            trees: &self.trees,
        }
    }

    /// Whether an acceptance of `id` is still unsettled.
    pub(super) fn knows(&self, id: &str) -> bool {
        self.entries().contains_key(id)
    }

    /// Unsettled events not yet processed (those filed are counted by
    /// sled's queue).
    pub(super) fn waiting_len(&self) -> usize {
        self.entries()
            .values()
            .filter(|e| matches!(e.state, State::Waiting(_) | State::Filing))
            .count()
    }

    /// Whether acceptance `seq` of `id` still waits to be processed, when
    /// this map knows it; `None` when only sled's queue can say.
    pub(super) fn is_pending(&self, id: &str, seq: u64) -> Option<bool> {
        let entries = self.entries();
        let entry = entries.get(id).filter(|e| e.acceptance.seq == seq)?;
        Some(matches!(
            entry.state,
            State::Waiting(_) | State::Filing | State::Filed
        ))
    }

    /// The engine is done with acceptance `seq` of `id`: settle it, or
    /// remove its queue entry if it was filed (here or by an earlier
    /// process).
    pub(super) fn take(&self, id: &str, seq: u64) -> Result<(), StoreError> {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(id).filter(|e| e.acceptance.seq == seq) else {
            drop(entries);
            self.trees.pending.remove(seq.to_be_bytes())?;
            return Ok(());
        };
        match std::mem::replace(&mut entry.state, State::Filing) {
            State::Waiting(record) => {
                entry.state = State::Settling(record);
                let acceptance = entry.acceptance.clone();
                drop(entries);
                let settled = self.trees.settle(id, &acceptance);
                let mut entries = self.entries();
                match &settled {
                    Ok(()) => {
                        entries.remove(id);
                    }
                    // Filed by the next checkpoint: processed again after a
                    // restart, its runs found by their ids.
                    Err(_) => {
                        if let Some(entry) = entries.get_mut(id) {
                            if let State::Settling(record) =
                                std::mem::replace(&mut entry.state, State::Filing)
                            {
                                entry.state = State::Waiting(record);
                            }
                        }
                    }
                }
                settled
            }
            State::Filing => {
                entry.state = State::TakenWhileFiling;
                Ok(())
            }
            State::Filed => {
                entries.remove(id);
                drop(entries);
                self.trees.pending.remove(seq.to_be_bytes())?;
                Ok(())
            }
            taken => {
                entry.state = taken;
                Ok(())
            }
        }
    }

    /// File every unsettled event not processed yet, and wait for those
    /// being settled: afterwards sled (once flushed) holds every event
    /// accepted before the call. What a checkpoint does before its flush.
    pub(super) fn file_all(&self) -> Result<(), StoreError> {
        self.file_where(|_| true)
    }

    /// File these events now if they are still waiting (the engine will
    /// read them from sled's queue).
    pub(super) fn file_these(&self, ids: &[&str]) -> Result<(), StoreError> {
        let ids: HashSet<&str> = ids.iter().copied().collect();
        self.file_where(|id| ids.contains(id))
    }

    fn file_where(&self, wanted: impl Fn(&str) -> bool) -> Result<(), StoreError> {
        let mut result = Ok(());
        // The second time round, only entries that were being settled.
        let mut watch: Option<HashSet<String>> = None;
        loop {
            let (filing, settling) =
                self.begin_filing(|id| wanted(id) && watch.as_ref().is_none_or(|w| w.contains(id)));
            if let Err(e) = self.finish_filing(filing) {
                result = Err(e);
            }
            // A settle is a few sled writes with no await in between; if
            // it fails the entry is waiting again and filed next time round.
            if settling.is_empty() {
                return result;
            }
            watch = Some(settling);
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Take the wanted waiting entries out to be filed; and the ids of the
    /// wanted entries being settled.
    pub(super) fn begin_filing(&self, wanted: impl Fn(&str) -> bool) -> (Filing, HashSet<String>) {
        let mut filing = Vec::new();
        let mut settling = HashSet::new();
        for (id, entry) in self.entries().iter_mut() {
            if !wanted(id) {
                continue;
            }
            match &entry.state {
                State::Waiting(_) => {
                    if let State::Waiting(record) =
                        std::mem::replace(&mut entry.state, State::Filing)
                    {
                        filing.push((id.clone(), entry.acceptance.clone(), record));
                    }
                }
                State::Settling(_) => {
                    settling.insert(id.clone());
                }
                _ => {}
            }
        }
        (filing, settling)
    }

    /// Write what [`Unsettled::begin_filing`] took out, then record the
    /// outcome: filed, or (taken meanwhile) gone with its queue entry.
    pub(super) fn finish_filing(&self, filing: Filing) -> Result<(), StoreError> {
        let written: Vec<_> = filing
            .into_iter()
            .map(|(id, acceptance, record)| {
                let outcome = self.trees.file(&id, &acceptance, &record);
                (id, acceptance, record, outcome)
            })
            .collect();
        let mut result = Ok(());
        let mut unqueue = Vec::new();
        {
            let mut entries = self.entries();
            for (id, acceptance, record, outcome) in written {
                let Some(entry) = entries.get_mut(&id) else {
                    continue;
                };
                let taken = matches!(entry.state, State::TakenWhileFiling);
                match outcome {
                    Ok(()) if taken => {
                        entries.remove(&id);
                        unqueue.push(acceptance.seq);
                    }
                    Ok(()) => entry.state = State::Filed,
                    Err(e) if taken => {
                        // Processed already: what settling would write, and
                        // no queue entry.
                        entries.remove(&id);
                        unqueue.push(acceptance.seq);
                        if let Err(again) = self.trees.settle(&id, &acceptance) {
                            tracing::error!(error = %again, event_id = %id, "cannot settle a processed event");
                        }
                        result = Err(e);
                    }
                    Err(e) => {
                        entry.state = State::Waiting(record);
                        result = Err(e);
                    }
                }
            }
        }
        for seq in unqueue {
            self.trees.pending.remove(seq.to_be_bytes())?;
        }
        result
    }
}
