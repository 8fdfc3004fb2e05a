//! Accepted events held in memory between their acceptance and the
//! moment sled must hold them: their records, and their dedupe markers
//! not yet written.
//!
//! # Why
//!
//! What makes an accepted event durable is the inbox log
//! (`inbox_log.rs`): its record is appended there and synced before the
//! 2xx. sled needs the record only if the engine has not finished the
//! event by the time the log segment holding it is retired, which under
//! load is almost never: the engine gets the event in memory
//! (`engine/arrivals.rs`) a few milliseconds after its sync. So nothing
//! about the record goes into sled's `pending` queue on the request's
//! path, and taking a finished event writes nothing to sled either: the
//! inbox log gets a *done note* instead (`inbox_log.rs`), which tells a
//! replay after a crash that the event needs nothing more. (Earlier
//! versions wrote a placeholder into `pending` per event and removed it
//! when the engine was done: two of the six sled writes of an ingested
//! call event.)
//!
//! The record is *filed* (written into `pending`) only when sled has to
//! hold it:
//!
//! - before a checkpoint retires the log segment holding it (the
//!   checkpoint files every record here, then flushes sled);
//! - after a failed log write (the log's writer runs the same checkpoint
//!   before any later batch may succeed);
//! - when the engine's in-memory hand-over is full, so that memory stays
//!   bounded while the engine reads those events from the stored queue.
//!
//! # Dedupe markers after the sync
//!
//! The dedupe marker in sled's `events` tree (and the caller's call
//! statistics) is written only once the record is durable in the log
//! ([`Unfiled::mark`], by the request before it hands its events to the
//! engine). sled flushes on its own schedule, so a marker written before
//! the sync could reach the disk while the record never does; the retry
//! of that never-acknowledged event would then be refused as a
//! "duplicate" of an event nobody processes. Written after, a marker in
//! sled always has its record somewhere durable. Until it is written, the
//! duplicate check finds the acceptance here ([`Stripe::unmarked`]).
//!
//! # Why it is safe
//!
//! Everything about one event id happens under one lock stripe (by a hash
//! of the id): its duplicate check, its acceptance, its marking, its
//! filing and its taking. So:
//!
//! - an acceptance is marked exactly once (the request after its sync, or
//!   a filer or the taker first, whichever comes first);
//! - a filer writes the marker, then the record into `pending`, then
//!   forgets the record here; a taker that finds the record here forgets
//!   it and writes nothing to sled, and one that does not removes the
//!   filed entry from `pending`. Neither can see the other half done;
//! - every filer files everything it sees, and a record leaves this
//!   memory only once it is filed or taken: a checkpoint that starts after
//!   a segment is sealed finds every record of it that is neither.
//!
//! After a crash this memory is gone; replaying the log on open puts back
//! every record with no done note, and every missing marker (`inbox.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;

use super::expiry::ExpiryBatches;
use super::StoreError;
use crate::event::Event;

/// The event id of a `pending` value that is a placeholder: earlier
/// versions queued an accepted event behind a zero byte and its id while
/// its record was in memory and in the log. Start-up fills or undoes
/// those (`inbox.rs`); this version never writes one.
pub(super) fn placeholder_id(value: &[u8]) -> Option<&[u8]> {
    value.strip_prefix(&[0])
}

/// An acceptance whose dedupe marker is not in sled yet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unmarked {
    pub seq: u64,
    pub received_at: Timestamp,
}

/// What one lock stripe holds: the acceptances of the ids that hash to it.
#[derive(Default)]
pub(super) struct Stripe {
    /// By event id: at most one per id (a newer acceptance of the same id
    /// marks the older one first).
    unmarked: HashMap<Box<str>, Unmarked>,
    /// Records neither filed nor taken, by sequence number.
    kept: HashMap<u64, Arc<[u8]>>,
}

impl Stripe {
    /// The acceptance of `id` whose marker is not written yet, if any.
    pub(super) fn unmarked(&self, id: &str) -> Option<Unmarked> {
        self.unmarked.get(id).copied()
    }
}

/// See the module docs. One per store, shared with the checkpoint.
pub(super) struct Unfiled {
    pending: sled::Tree,
    events: sled::Tree,
    call_stats: sled::Tree,
    expiry_batches: Arc<ExpiryBatches>,
    stripes: Box<[Mutex<Stripe>]>,
}

/// The trees an acceptance is written to.
pub(super) struct InboxTrees {
    pub pending: sled::Tree,
    pub events: sled::Tree,
    pub call_stats: sled::Tree,
    pub expiry_batches: Arc<ExpiryBatches>,
}

impl Unfiled {
    pub(super) fn new(trees: InboxTrees, stripes: usize) -> Unfiled {
        Unfiled {
            pending: trees.pending,
            events: trees.events,
            call_stats: trees.call_stats,
            expiry_batches: trees.expiry_batches,
            stripes: (0..stripes).map(|_| Mutex::default()).collect(),
        }
    }

    /// The stripe of event id `id`, locked: hold it from the duplicate
    /// check to the log append of an acceptance.
    pub(super) fn lock(&self, id: &str) -> MutexGuard<'_, Stripe> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.as_bytes().hash(&mut h);
        let stripe = (h.finish() % self.stripes.len() as u64) as usize;
        self.stripes[stripe].lock().expect("inbox stripe lock")
    }

    /// Keep acceptance `seq` of `id` (its stripe held as `stripe`): its
    /// record here, its marker owed. Before the log append, so that a
    /// checkpoint finds it. An older acceptance of the same id still
    /// unmarked (possible only with a dedupe window shorter than a sync)
    /// is marked first.
    pub(super) fn keep(
        &self,
        stripe: &mut Stripe,
        id: &str,
        seq: u64,
        received_at: Timestamp,
        record: Arc<[u8]>,
    ) -> Result<(), StoreError> {
        if let Some(older) = stripe.unmarked(id) {
            self.mark_kept(stripe, id, older)?;
        }
        stripe.kept.insert(seq, record);
        stripe
            .unmarked
            .insert(id.into(), Unmarked { seq, received_at });
        Ok(())
    }

    /// Write the marker (and call statistics) of acceptance `seq` of
    /// `event`, unless that is done already: what a request does once its
    /// batch is durable.
    pub(super) fn mark(&self, event: &Event, seq: u64) -> Result<(), StoreError> {
        let mut stripe = self.lock(&event.id);
        let Some(unmarked) = stripe.unmarked(&event.id).filter(|u| u.seq == seq) else {
            return Ok(());
        };
        self.write_acceptance(event, seq, unmarked.received_at)?;
        stripe.unmarked.remove(event.id.as_str());
        Ok(())
    }

    /// [`Unfiled::mark`] for a caller that has only the kept record.
    fn mark_kept(
        &self,
        stripe: &mut Stripe,
        id: &str,
        unmarked: Unmarked,
    ) -> Result<(), StoreError> {
        match stripe.kept.get(&unmarked.seq) {
            Some(record) => {
                let stored = super::inbox::decode_record(record, "kept inbox record")?;
                self.write_acceptance(&stored.event, unmarked.seq, unmarked.received_at)?;
            }
            // Not reached: a record leaves only once marked (the
            // statistics cannot be counted without it).
            None => self.write_marker(id, unmarked.seq, unmarked.received_at)?,
        }
        stripe.unmarked.remove(id);
        Ok(())
    }

    /// An acceptance's writes to sled besides its queue entry: the call
    /// statistics, then the dedupe marker (sled recovers a prefix of its
    /// writes, so a marker that survives a crash has its statistics).
    pub(super) fn write_acceptance(
        &self,
        event: &Event,
        seq: u64,
        received_at: Timestamp,
    ) -> Result<(), StoreError> {
        let stats_phone = event
            .caller
            .as_deref()
            .filter(|_| event.caller_is_phone && crate::event::kind::is_call(&event.kind));
        if let Some(phone) = stats_phone {
            super::contacts::bump_stats(&self.call_stats, phone, &event.kind, event.at)?;
        }
        self.write_marker(&event.id, seq, received_at)
    }

    /// The dedupe marker of acceptance `seq` of `id`, noted for the dedupe
    /// cleaner (`expiry.rs`).
    pub(super) fn write_marker(
        &self,
        id: &str,
        seq: u64,
        received_at: Timestamp,
    ) -> Result<(), StoreError> {
        let marker = super::inbox::marker(seq, received_at);
        self.events.insert(id.as_bytes(), marker)?;
        // After the marker: a purge that read the note first would find no
        // marker and drop the note.
        self.expiry_batches.note(received_at, id);
        Ok(())
    }

    /// The engine is done with acceptance `seq` of `id`: its record is
    /// forgotten here, or, if it was filed, its queue entry removed.
    pub(super) fn take(&self, seq: u64, id: &str) -> Result<(), StoreError> {
        let mut stripe = self.lock(id);
        if let Some(unmarked) = stripe.unmarked(id).filter(|u| u.seq == seq) {
            // Handed over before its marking (tools, tests): the marker
            // must outlive the event.
            self.mark_kept(&mut stripe, id, unmarked)?;
        }
        if stripe.kept.remove(&seq).is_none() {
            self.pending.remove(seq.to_be_bytes())?;
        }
        Ok(())
    }

    /// Whether acceptance `seq` of `id` is kept here (not filed, not
    /// taken).
    pub(super) fn holds(&self, seq: u64, id: &str) -> bool {
        self.lock(id).kept.contains_key(&seq)
    }

    /// Whether an acceptance of `id` waits for its marker.
    pub(super) fn remembers(&self, id: &str) -> bool {
        self.lock(id).unmarked.contains_key(id)
    }

    /// How many records are kept here.
    pub(super) fn len(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.lock().expect("inbox stripe lock").kept.len())
            .sum()
    }

    /// File the records of these acceptances (sequence number, event id):
    /// each one still kept is marked if it is not, written into
    /// `pending`, and forgotten here; one already filed or taken is left
    /// alone. Returns how many were filed. Not durable until sled is
    /// flushed.
    pub(super) fn file(&self, which: &[(u64, &str)]) -> Result<usize, StoreError> {
        let mut filed = 0;
        for (seq, id) in which {
            let mut stripe = self.lock(id);
            if let Some(unmarked) = stripe.unmarked(id).filter(|u| u.seq == *seq) {
                self.mark_kept(&mut stripe, id, unmarked)?;
            }
            filed += usize::from(self.file_kept(&mut stripe, *seq)?);
        }
        Ok(filed)
    }

    /// File every record here: what a checkpoint does before its flush.
    pub(super) fn file_all(&self) -> Result<usize, StoreError> {
        let mut filed = 0;
        for stripe in self.stripes.iter() {
            let mut stripe = stripe.lock().expect("inbox stripe lock");
            let unmarked: Vec<(Box<str>, Unmarked)> = stripe
                .unmarked
                .iter()
                .map(|(id, u)| (id.clone(), *u))
                .collect();
            for (id, u) in unmarked {
                self.mark_kept(&mut stripe, &id, u)?;
            }
            let seqs: Vec<u64> = stripe.kept.keys().copied().collect();
            for seq in seqs {
                filed += usize::from(self.file_kept(&mut stripe, seq)?);
            }
        }
        Ok(filed)
    }

    /// Write kept record `seq` into `pending` and forget it here; its
    /// marker is written already. Whether it was kept.
    fn file_kept(&self, stripe: &mut Stripe, seq: u64) -> Result<bool, StoreError> {
        let Some(record) = stripe.kept.get(&seq) else {
            return Ok(false);
        };
        self.pending.insert(seq.to_be_bytes(), &**record)?;
        stripe.kept.remove(&seq);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{temp_store, Offered, Store};
    use super::*;

    fn missed_call(phone: &str, minute: u32) -> Event {
        let body = format!(
            r#"{{"event":"call.missed","phone":"{phone}","country":"MX","ts":"2026-05-14T14:{minute:02}:00Z"}}"#
        );
        let ctx = crate::event::testing::ctx("wz", crate::event::Provider::Wazzap);
        crate::event::testing::only(&body, &ctx)
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_778_767_200).unwrap()
    }

    /// Accept one event (kept in memory, marker owed): its sequence number.
    fn accept(store: &Store, event: &Event, window: Duration) -> u64 {
        let offered = store
            .accept_events(vec![event.clone()], now(), window)
            .unwrap();
        match offered.into_iter().next() {
            Some(Offered::Accepted(stored)) => stored.seq,
            other => panic!("not accepted: {other:?}"),
        }
    }

    fn queue_entry(store: &Store, seq: u64) -> Option<Vec<u8>> {
        store
            .pending
            .get(seq.to_be_bytes())
            .unwrap()
            .map(|v| v.to_vec())
    }

    fn has_marker(store: &Store, id: &str) -> bool {
        store.events.contains_key(id.as_bytes()).unwrap()
    }

    fn missed_calls(store: &Store, phone: &str) -> u64 {
        let stats = store.call_stats(phone).unwrap();
        stats.calls.get("call.missed").copied().unwrap_or(0)
    }

    const DAY: Duration = Duration::from_secs(86400);

    /// An acceptance writes nothing to sled; filing writes its marker and
    /// statistics, then its record, and frees the memory.
    #[test]
    fn filing_marks_then_queues_the_record_and_frees_the_memory() {
        let (_dir, store) = temp_store();
        let e = missed_call("+5215512345678", 0);
        let seq = accept(&store, &e, DAY);
        assert_eq!(queue_entry(&store, seq), None, "nothing in sled's queue");
        assert!(!has_marker(&store, &e.id), "the marker is owed");
        assert!(store.remembers_event(&e.id).unwrap(), "but remembered");
        assert_eq!(store.unfiled.len(), 1);

        assert_eq!(store.unfiled.file_all().unwrap(), 1);
        assert!(has_marker(&store, &e.id));
        assert_eq!(missed_calls(&store, "+5215512345678"), 1);
        let filed = queue_entry(&store, seq).expect("filed");
        assert_eq!(
            super::super::inbox::decode_record(&filed, "test")
                .unwrap()
                .event,
            e
        );
        assert_eq!(store.unfiled.len(), 0);
        assert!(store.is_pending(seq, &e.id).unwrap(), "queued in sled");
        assert_eq!(store.unfiled.file_all().unwrap(), 0, "filed once");
        assert_eq!(missed_calls(&store, "+5215512345678"), 1, "counted once");
    }

    /// The request marks its events once they are durable; a filer after
    /// it does not count the call again.
    #[tokio::test]
    async fn an_acceptance_is_marked_once_whoever_comes_first() {
        let (_dir, store) = temp_store();
        let e = missed_call("+5215512345678", 0);
        let offered = store.accept_events(vec![e.clone()], now(), DAY).unwrap();
        store.commit_accepted(&offered).await.unwrap();
        assert!(has_marker(&store, &e.id));
        assert_eq!(store.unfiled.len(), 1, "the record is still kept");
        store.unfiled.file_all().unwrap();
        store.commit_accepted(&offered).await.unwrap();
        assert_eq!(missed_calls(&store, "+5215512345678"), 1);
    }

    /// Taken while kept: nothing goes to sled's queue, and the marker the
    /// request had not written yet is written (it must outlive the event).
    #[test]
    fn an_event_taken_while_kept_leaves_no_queue_entry_and_its_marker() {
        let (_dir, store) = temp_store();
        let e = missed_call("+5215512345678", 0);
        let seq = accept(&store, &e, DAY);
        store.unfiled.take(seq, &e.id).unwrap();
        assert_eq!(store.unfiled.len(), 0, "taking frees the memory");
        assert_eq!(queue_entry(&store, seq), None);
        assert!(has_marker(&store, &e.id));
        assert_eq!(missed_calls(&store, "+5215512345678"), 1);
        assert_eq!(store.unfiled.file_all().unwrap(), 0, "nothing to file");
        assert_eq!(queue_entry(&store, seq), None, "a taken event is not filed");
    }

    /// Filed while the engine processed it: taking removes the entry.
    #[test]
    fn an_event_filed_while_processed_is_removed_when_taken() {
        let (_dir, store) = temp_store();
        let e = missed_call("+5215512345678", 0);
        let seq = accept(&store, &e, DAY);
        store.unfiled.file(&[(seq, &e.id)]).unwrap();
        assert!(queue_entry(&store, seq).is_some());
        store.unfiled.take(seq, &e.id).unwrap();
        assert_eq!(queue_entry(&store, seq), None);
        assert!(!store.is_pending(seq, &e.id).unwrap());
    }

    /// The same id accepted again while its first acceptance's marker is
    /// owed (a dedupe window shorter than a sync): the first is marked
    /// then, so its call is counted, and the newer marker wins.
    #[test]
    fn a_second_acceptance_of_an_unmarked_id_marks_the_first() {
        let (_dir, store) = temp_store();
        let e = missed_call("+5215512345678", 0);
        let first = accept(&store, &e, Duration::ZERO);
        let later = Timestamp::from_second(1_778_767_260).unwrap();
        let offered = store
            .accept_events(vec![e.clone()], later, Duration::ZERO)
            .unwrap();
        let Some(Offered::Accepted(second)) = offered.into_iter().next() else {
            panic!("the id is accepted again after a zero window");
        };
        assert!(second.seq > first);
        assert_eq!(
            missed_calls(&store, "+5215512345678"),
            1,
            "the first, marked"
        );
        store.unfiled.file_all().unwrap();
        assert_eq!(missed_calls(&store, "+5215512345678"), 2);
        let marker = store.events.get(e.id.as_bytes()).unwrap().unwrap();
        assert_eq!(
            marker.to_vec(),
            super::super::inbox::marker(second.seq, later)
        );
        assert!(queue_entry(&store, first).is_some() && queue_entry(&store, second.seq).is_some());
    }

    /// Many threads accepting, taking and filing at once: afterwards every
    /// event not taken has its full record in the queue, no taken one has
    /// an entry, every one has its marker, and each call counts once.
    #[test]
    fn concurrent_accepting_taking_and_filing_agree() {
        let (_dir, store) = temp_store();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut accepted = Vec::new();
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        store.unfiled.file_all().unwrap();
                    }
                });
            }
            for i in 0..1500u32 {
                let e = missed_call(&format!("+52155{i:08}"), i % 60);
                let seq = accept(&store, &e, DAY);
                accepted.push((seq, e));
                if i % 3 == 0 {
                    let (seq, e) = &accepted[i as usize / 2];
                    store.unfiled.take(*seq, &e.id).unwrap();
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        store.unfiled.file_all().unwrap();
        let taken: std::collections::HashSet<usize> = (0..1500usize)
            .filter(|i| i % 3 == 0)
            .map(|i| i / 2)
            .collect();
        for (i, (seq, e)) in accepted.iter().enumerate() {
            assert!(has_marker(&store, &e.id), "event {i} has no marker");
            let phone = e.caller.as_deref().unwrap();
            assert_eq!(missed_calls(&store, phone), 1, "event {i}'s call");
            match queue_entry(&store, *seq) {
                Some(v) => {
                    assert!(!taken.contains(&i), "taken event {i} is queued again");
                    let filed = super::super::inbox::decode_record(&v, "test").unwrap();
                    assert_eq!(&filed.event, e, "event {i} filed whole");
                }
                None => assert!(taken.contains(&i), "event {i} lost"),
            }
        }
        assert_eq!(store.unfiled.len(), 0);
    }
}
