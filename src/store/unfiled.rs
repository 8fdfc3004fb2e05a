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
//! ([`Unfiled::mark`], by the engine when it is handed the event, before
//! its runs) or once the record is in sled's queue (a filer writes the
//! queue entry first). sled flushes on its own schedule, so a marker
//! written before either could reach the disk while the record never
//! does; the retry of that never-acknowledged event would then be refused
//! as a "duplicate" of an event nobody processes. Until the marker is
//! written, the duplicate check finds the acceptance here
//! ([`Stripe::unmarked`]), and it is off the acknowledgement's path.
//!
//! # Why it is safe
//!
//! Everything about one event id happens under one lock stripe (by a hash
//! of the id): its duplicate check, its acceptance, its marking, its
//! filing and its taking. So:
//!
//! - an acceptance is marked exactly once (the engine, a filer or the
//!   taker, whichever comes first), and only after its record is durable
//!   in the log or its queue entry is written: an id accepted again before
//!   its earlier acceptance was marked owes both;
//! - a filer writes the record into `pending`, then the marker, then
//!   forgets the record here; a taker that finds the record here forgets
//!   it and writes nothing to sled, and one that does not removes the
//!   filed entry from `pending`. Neither can see the other half done;
//! - every filer files everything it sees, and a record leaves this
//!   memory only once it is filed or taken: a checkpoint that starts after
//!   a segment is sealed finds every record of it that is neither.
//!
//! After a crash this memory is gone; replaying the log on open puts back
//! every record with no done note, with its marker (`inbox.rs`).

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
    /// The newest acceptance of each id whose marker is owed.
    unmarked: HashMap<Box<str>, Unmarked>,
    /// Older acceptances whose marker is owed: an id accepted again before
    /// its earlier acceptance was marked (only with a dedupe window shorter
    /// than the time until the engine or a checkpoint marks it: seconds).
    /// Each is marked in its own turn.
    older: Vec<(Box<str>, Unmarked)>,
    /// Records neither filed nor taken, by sequence number.
    kept: HashMap<u64, Arc<[u8]>>,
}

impl Stripe {
    /// The newest acceptance of `id` whose marker is not written yet, if
    /// any.
    pub(super) fn unmarked(&self, id: &str) -> Option<Unmarked> {
        self.unmarked.get(id).copied()
    }

    /// Take acceptance `seq` of `id` off the owed markers, if it is there;
    /// and whether an acceptance of `id` newer than it was accepted.
    fn owed(&mut self, id: &str, seq: u64) -> Option<(Unmarked, bool)> {
        if let Some(newest) = self.unmarked.get(id).copied() {
            if newest.seq == seq {
                self.unmarked.remove(id);
                return Some((newest, false));
            }
        }
        let at = self
            .older
            .iter()
            .position(|(older, u)| u.seq == seq && &**older == id)?;
        Some((self.older.swap_remove(at).1, true))
    }
}

/// See the module docs. One per store, shared with the checkpoint.
pub(super) struct Unfiled {
    pending: sled::Tree,
    events: sled::Tree,
    call_stats: sled::Tree,
    expiry_batches: Arc<ExpiryBatches>,
    stripes: Box<[Mutex<Stripe>]>,
    /// A filing of everything here (a checkpoint) put records into
    /// `pending` that nobody announced to the engine: see
    /// [`Unfiled::take_unannounced`].
    unannounced: std::sync::atomic::AtomicBool,
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
            stripes: super::stripes(stripes),
            unannounced: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The stripe of event id `id`, locked: hold it from the duplicate
    /// check to the log append of an acceptance.
    pub(super) fn lock(&self, id: &str) -> MutexGuard<'_, Stripe> {
        super::lock_stripe(&self.stripes, id.as_bytes())
    }

    /// Keep acceptance `seq` of `id` (its stripe held as `stripe`): its
    /// record here, its marker owed. Before the log append, so that a
    /// checkpoint finds it.
    pub(super) fn keep(
        &self,
        stripe: &mut Stripe,
        id: &str,
        seq: u64,
        received_at: Timestamp,
        record: Arc<[u8]>,
    ) {
        stripe.kept.insert(seq, record);
        let newest = Unmarked { seq, received_at };
        if let Some(older) = stripe.unmarked.insert(id.into(), newest) {
            stripe.older.push((id.into(), older));
        }
    }

    /// Write the marker (and call statistics) of acceptance `seq` of
    /// `event`, unless that is done already. Only once the inbox log holds
    /// it durably.
    pub(super) fn mark(&self, event: &Event, seq: u64) -> Result<(), StoreError> {
        let mut stripe = self.lock(&event.id);
        let Some((owed, superseded)) = stripe.owed(&event.id, seq) else {
            return Ok(());
        };
        let written = self.write_owed(event, seq, owed, superseded);
        if written.is_err() {
            put_back(&mut stripe, &event.id, owed, superseded);
        }
        written
    }

    /// The marker of acceptance `seq` of `id` owed and its record kept
    /// (the stripe held as `stripe`): write them, the statistics read from
    /// the record.
    fn mark_kept(&self, stripe: &mut Stripe, id: &str, seq: u64) -> Result<(), StoreError> {
        let Some((owed, superseded)) = stripe.owed(id, seq) else {
            return Ok(());
        };
        let written = match stripe.kept.get(&seq) {
            Some(record) => super::inbox::decode_record(record, "kept inbox record")
                .and_then(|stored| self.write_owed(&stored.event, seq, owed, superseded)),
            // Not reached: a record leaves only once marked (the
            // statistics cannot be counted without it).
            None => self.write_marker(id, seq, owed.received_at),
        };
        if written.is_err() {
            put_back(stripe, id, owed, superseded);
        }
        written
    }

    /// An owed acceptance's writes. One that a newer acceptance of its id
    /// superseded gets its marker only if sled does not hold the newer one
    /// already (the newer one's own marking comes after).
    fn write_owed(
        &self,
        event: &Event,
        seq: u64,
        owed: Unmarked,
        superseded: bool,
    ) -> Result<(), StoreError> {
        if superseded {
            let newer_in_sled = match self.events.get(event.id.as_bytes())? {
                Some(marker) => super::inbox::marker_seq(&marker, &event.id)? > seq,
                None => false,
            };
            if newer_in_sled {
                self.bump_call_stats(event)?;
                return Ok(());
            }
        }
        self.write_acceptance(event, seq, owed.received_at)
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
        self.bump_call_stats(event)?;
        self.write_marker(&event.id, seq, received_at)
    }

    fn bump_call_stats(&self, event: &Event) -> Result<(), StoreError> {
        let stats_phone = event
            .caller
            .as_deref()
            .filter(|_| event.caller_is_phone && crate::event::kind::is_call(&event.kind));
        if let Some(phone) = stats_phone {
            super::contacts::bump_stats(&self.call_stats, phone, &event.kind, event.at)?;
        }
        Ok(())
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
        // Handed over before its marking (a failed marking, tools,
        // tests): the marker must outlive the event.
        self.mark_kept(&mut stripe, id, seq)?;
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

    /// Acceptance `seq` of `id`'s event, kept here or filed in sled's
    /// queue; `None` once taken. Under the stripe's lock, which a filing
    /// and a taking hold too, so it is found in one place or the other.
    pub(super) fn queued_event(&self, seq: u64, id: &str) -> Result<Option<Event>, StoreError> {
        // Found under the lock, decoded after it: ingestion takes it too.
        let stripe = self.lock(id);
        let (record, what): (sled::IVec, _) = match stripe.kept.get(&seq) {
            Some(record) => (sled::IVec::from(&**record), "kept inbox record"),
            None => match self.pending.get(seq.to_be_bytes())? {
                Some(entry) => (entry, "pending queue entry"),
                None => return Ok(None),
            },
        };
        drop(stripe);
        let stored = super::inbox::decode_record(&record, what)?;
        Ok((stored.event.id == id).then_some(stored.event))
    }

    /// Whether an acceptance of `id` waits for its marker.
    pub(super) fn remembers(&self, id: &str) -> bool {
        self.lock(id).unmarked.contains_key(id)
    }

    /// The sequence number of the oldest record kept here.
    pub(super) fn oldest_kept(&self) -> Option<u64> {
        self.stripes
            .iter()
            .filter_map(|s| {
                s.lock()
                    .expect("inbox stripe lock")
                    .kept
                    .keys()
                    .min()
                    .copied()
            })
            .min()
    }

    /// How many records are kept here.
    pub(super) fn len(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.lock().expect("inbox stripe lock").kept.len())
            .sum()
    }

    /// File the records of these acceptances (sequence number, event id):
    /// each one still kept is written into `pending`, marked if it is not,
    /// and forgotten here; one already filed or taken is left alone.
    /// Returns how many were filed. Not durable until sled is flushed.
    pub(super) fn file(&self, which: &[(u64, &str)]) -> Result<usize, StoreError> {
        let mut filed = 0;
        for (seq, id) in which {
            let mut stripe = self.lock(id);
            filed += usize::from(self.file_kept(&mut stripe, *seq, Some(id))?);
        }
        Ok(filed)
    }

    /// File every record here: what a checkpoint does before its flush.
    pub(super) fn file_all(&self) -> Result<usize, StoreError> {
        let mut filed = 0;
        let filing = self.file_every_stripe(&mut filed);
        // Also when a stripe failed: those filed before it are in `pending`.
        if filed > 0 {
            self.unannounced
                .store(true, std::sync::atomic::Ordering::Release);
        }
        filing.map(|()| filed)
    }

    fn file_every_stripe(&self, filed: &mut usize) -> Result<(), StoreError> {
        for stripe in self.stripes.iter() {
            let mut stripe = stripe.lock().expect("inbox stripe lock");
            let owed: Vec<(Box<str>, u64)> = stripe
                .unmarked
                .iter()
                .chain(stripe.older.iter().map(|(id, u)| (id, u)))
                .map(|(id, u)| (id.clone(), u.seq))
                .collect();
            for (id, seq) in owed {
                *filed += usize::from(self.file_kept(&mut stripe, seq, Some(&id))?);
            }
            let marked: Vec<u64> = stripe.kept.keys().copied().collect();
            for seq in marked {
                *filed += usize::from(self.file_kept(&mut stripe, seq, None)?);
            }
        }
        Ok(())
    }

    /// Write kept record `seq` into `pending`, then its marker if that is
    /// owed (`id`), and forget it here. Whether it was kept.
    ///
    /// The queue entry goes first: the record may not be durable in the
    /// log yet (a checkpoint files what the open batch holds too), and
    /// sled may flush any prefix of these writes before a crash. An entry
    /// without its marker is removed at start-up when the log has no
    /// record for it (never answered 2xx) and marked again by the replay
    /// when it has; a marker without its entry and record would make the
    /// provider's retry a "duplicate" of an event nobody processes.
    fn file_kept(
        &self,
        stripe: &mut Stripe,
        seq: u64,
        id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let Some(record) = stripe.kept.get(&seq) else {
            return Ok(false);
        };
        self.pending.insert(seq.to_be_bytes(), &**record)?;
        if let Some(id) = id {
            if let Err(e) = self.mark_kept(stripe, id, seq) {
                // The record stays kept (and its marker owed): an entry
                // left in `pending` would outlive the event's take, which
                // removes only what it finds kept, and run it again.
                let _ = self.pending.remove(seq.to_be_bytes());
                return Err(e);
            }
        }
        stripe.kept.remove(&seq);
        Ok(true)
    }

    /// Whether a filing of everything here put records into `pending`
    /// since the last call: the engine's dispatcher reads the stored queue
    /// then (those events were not handed to it in memory).
    pub(super) fn take_unannounced(&self) -> bool {
        self.unannounced
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }
}

/// An owed marker whose writing failed goes back, to be written by the
/// next marker, filer or taker.
fn put_back(stripe: &mut Stripe, id: &str, owed: Unmarked, superseded: bool) {
    if superseded {
        stripe.older.push((id.into(), owed));
    } else {
        stripe.unmarked.insert(id.into(), owed);
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

    /// An acceptance writes nothing to sled; filing writes its record into
    /// the queue, then its statistics and marker, and frees the memory.
    #[test]
    fn filing_queues_the_record_then_marks_it_and_frees_the_memory() {
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

    /// Records a checkpoint filed were never handed to the engine in
    /// memory: the store says so once, so that the dispatcher reads its
    /// stored queue.
    #[test]
    fn a_checkpoint_that_files_records_says_so_once() {
        let (_dir, store) = temp_store();
        assert_eq!(store.unfiled.file_all().unwrap(), 0);
        assert!(!store.take_filed_unannounced(), "nothing filed");
        accept(&store, &missed_call("+5215512345678", 0), DAY);
        assert_eq!(store.unfiled.file_all().unwrap(), 1);
        assert!(store.take_filed_unannounced());
        assert!(!store.take_filed_unannounced(), "once");
        let seq = accept(&store, &missed_call("+5215587654321", 0), DAY);
        store
            .unfiled
            .take(seq, &missed_call("+5215587654321", 0).id)
            .unwrap();
        store.unfiled.file_all().unwrap();
        assert!(
            !store.take_filed_unannounced(),
            "a taken event is not filed"
        );
    }

    /// The engine marks an event it is handed; a filer after it does not
    /// count the call again.
    #[tokio::test]
    async fn an_acceptance_is_marked_once_whoever_comes_first() {
        let (_dir, store) = temp_store();
        let e = missed_call("+5215512345678", 0);
        let offered = store.accept_events(vec![e.clone()], now(), DAY).unwrap();
        store.commit_inbox().await.unwrap();
        let stored = offered.into_iter().next().unwrap().into_accepted().unwrap();
        store.mark_accepted(&stored).unwrap();
        assert!(has_marker(&store, &e.id));
        assert_eq!(store.unfiled.len(), 1, "the record is still kept");
        store.unfiled.file_all().unwrap();
        store.mark_accepted(&stored).unwrap();
        assert_eq!(missed_calls(&store, "+5215512345678"), 1);
    }

    /// Taken while kept: nothing goes to sled's queue, and the marker not
    /// written yet is written (it must outlive the event).
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
    /// owed (a dedupe window shorter than the time until it is marked):
    /// neither is marked before its turn (the first may never become
    /// durable), each call counts once, and the newer marker wins whatever
    /// the order of marking.
    #[test]
    fn a_second_acceptance_of_an_unmarked_id_owes_both_markers() {
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
        assert_eq!(missed_calls(&store, "+5215512345678"), 0, "nothing marked");
        assert!(!has_marker(&store, &e.id));
        // The newer first, then the older: the older must not replace it.
        store.unfiled.mark(&e, second.seq).unwrap();
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
