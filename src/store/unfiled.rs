//! Accepted events whose record is in the inbox log and in memory, with
//! only a placeholder in sled's `pending` queue.
//!
//! # Why
//!
//! Every accepted event gets a queue entry in `pending` until the engine
//! is done with it. That entry used to hold the whole stored event (about
//! 1.5 KB for a Meta payload) from the start. sled 0.34 copies the whole
//! leaf a key lives in on every write and rewrites leaves to its log every
//! few changes, so those large values, written on the request's path and
//! deleted a few milliseconds later, cost CPU before every 2xx and most of
//! ingestion's disk writes. Yet what makes an accepted event durable is
//! the inbox log (`inbox_log.rs`), which holds the very same bytes.
//!
//! So ingestion writes a few bytes (the *placeholder*: a zero byte and
//! the event's id) as the queue entry, keeps the record here, and appends
//! it to the log. The engine gets the event in memory
//! (`engine/arrivals.rs`) and removes the placeholder when it is done, as
//! it removed the full entry before. The
//! record is *filed* (the placeholder replaced by it in sled) only when
//! sled has to hold it:
//!
//! - before a checkpoint retires the log segment holding it (the
//!   checkpoint files every record here, then flushes sled);
//! - after a failed log write (the log's writer runs the same checkpoint
//!   before any later batch may succeed);
//! - when the engine's in-memory hand-over is full, so that memory stays
//!   bounded while the engine reads those events from the stored queue.
//!
//! The stored queue's readers take a placeholder's record from here
//! ([`Unfiled::record`]), so an accepted event whose request was cancelled
//! before its hand-over is still found by the engine's periodic scan.
//!
//! # Why it is safe without locks across sled writes
//!
//! - A record stays here until its filing write is done, and every filer
//!   files everything it sees: a checkpoint that starts after a segment is
//!   sealed finds every record of that segment that is neither taken nor
//!   filed yet, whichever other filer is busy with it.
//! - Filing is a compare-and-swap of the placeholder: an event the engine
//!   has taken (placeholder removed) is never put back in the queue, and a
//!   second filer's write of the same record is a no-op.
//! - Taking removes the queue entry whatever it holds, so an event filed
//!   while the engine processed it leaves no entry behind.
//! - After a crash this memory is gone; replaying the log on open puts
//!   each placeholder's record back (`inbox.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::StoreError;

/// The `pending` value of an event whose record is here and in the log:
/// a zero byte, then the event's id. A record is a JSON object (`{`), an
/// earlier version's entry an id (`evt_…`); neither starts with a zero.
/// The id lets start-up undo an acceptance whose record never reached the
/// log (see [`Store::tidy_pending_queue`](super::Store)).
pub(super) fn placeholder(id: &str) -> Vec<u8> {
    let mut value = Vec::with_capacity(1 + id.len());
    value.push(0);
    value.extend_from_slice(id.as_bytes());
    value
}

/// The event id of a `pending` value that is a placeholder.
pub(super) fn placeholder_id(value: &[u8]) -> Option<&[u8]> {
    value.strip_prefix(&[0])
}

/// A kept record and its queue entry's placeholder.
#[derive(Clone)]
pub(super) struct Kept {
    record: Arc<[u8]>,
    placeholder: Arc<[u8]>,
}

/// See the module docs. One per store, shared with the checkpoint.
pub(super) struct Unfiled {
    pending: sled::Tree,
    records: Mutex<HashMap<u64, Kept>>,
}

/// Records taken from [`Unfiled`] to be filed: sequence number, record.
pub(super) type Snapshot = Vec<(u64, Kept)>;

impl Unfiled {
    pub(super) fn new(pending: sled::Tree) -> Unfiled {
        Unfiled {
            pending,
            records: Mutex::new(HashMap::new()),
        }
    }

    fn records(&self) -> MutexGuard<'_, HashMap<u64, Kept>> {
        self.records.lock().expect("unfiled records lock")
    }

    /// Queue acceptance `seq` behind a placeholder (written to sled here)
    /// and keep its record. Call it under the event id's inbox lock, before
    /// the log append: a checkpoint must find the record here.
    pub(super) fn queue(&self, seq: u64, id: &str, record: Arc<[u8]>) -> Result<(), StoreError> {
        let placeholder: Arc<[u8]> = placeholder(id).into();
        self.pending.insert(seq.to_be_bytes(), &*placeholder)?;
        self.records().insert(
            seq,
            Kept {
                record,
                placeholder,
            },
        );
        Ok(())
    }

    /// The engine is done with acceptance `seq`: its queue entry goes,
    /// whatever it holds, and then its record. In that order: a filer
    /// that still sees the record finds no placeholder to replace.
    pub(super) fn take(&self, seq: u64) -> Result<(), StoreError> {
        self.pending.remove(seq.to_be_bytes())?;
        self.forget(seq);
        Ok(())
    }

    fn forget(&self, seq: u64) {
        self.records().remove(&seq);
    }

    /// A placeholder's record, if it is still here.
    pub(super) fn record(&self, seq: u64) -> Option<Arc<[u8]>> {
        self.records().get(&seq).map(|kept| kept.record.clone())
    }

    /// Whether acceptance `seq`'s record is kept here.
    pub(super) fn holds(&self, seq: u64) -> bool {
        self.records().contains_key(&seq)
    }

    pub(super) fn len(&self) -> usize {
        self.records().len()
    }

    /// Every record here (`None`), or those of `seqs`.
    pub(super) fn snapshot(&self, seqs: Option<&[u64]>) -> Snapshot {
        let records = self.records();
        match seqs {
            None => records
                .iter()
                .map(|(seq, kept)| (*seq, kept.clone()))
                .collect(),
            Some(seqs) => seqs
                .iter()
                .filter_map(|seq| records.get(seq).map(|kept| (*seq, kept.clone())))
                .collect(),
        }
    }

    /// File the records of `snapshot`: each placeholder still in the queue
    /// is replaced by its record; an entry already gone (taken) or already
    /// filed is left as it is. Each record leaves this memory once that is
    /// settled; on an error the rest stay, for the next filer. Returns how
    /// many placeholders were replaced. Not durable until sled is flushed.
    pub(super) fn file(&self, snapshot: Snapshot) -> Result<usize, StoreError> {
        let mut filed = 0;
        for (seq, kept) in snapshot {
            let swapped = self.pending.compare_and_swap(
                seq.to_be_bytes(),
                Some(&*kept.placeholder),
                Some(&*kept.record),
            )?;
            filed += usize::from(swapped.is_ok());
            self.forget(seq);
        }
        Ok(filed)
    }

    /// File every record here: what a checkpoint does before its flush.
    pub(super) fn file_all(&self) -> Result<usize, StoreError> {
        self.file(self.snapshot(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unfiled() -> (sled::Db, Unfiled) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let pending = db.open_tree("pending").unwrap();
        (db, Unfiled::new(pending))
    }

    fn queue_entry(u: &Unfiled, seq: u64) -> Option<Vec<u8>> {
        u.pending
            .get(seq.to_be_bytes())
            .unwrap()
            .map(|v| v.to_vec())
    }

    fn accept(u: &Unfiled, seq: u64) -> Arc<[u8]> {
        let record: Arc<[u8]> = format!("{{\"seq\":{seq}}}").into_bytes().into();
        u.queue(seq, &format!("evt_{seq}"), record.clone()).unwrap();
        record
    }

    fn take(u: &Unfiled, seq: u64) {
        u.take(seq).unwrap();
    }

    #[test]
    fn filing_replaces_the_placeholder_and_frees_the_memory() {
        let (_db, u) = unfiled();
        let record = accept(&u, 1);
        assert_eq!(queue_entry(&u, 1).unwrap(), b"\0evt_1");
        assert_eq!(placeholder_id(b"\0evt_1"), Some(&b"evt_1"[..]));
        assert_eq!(placeholder_id(&record), None);
        assert_eq!(u.file_all().unwrap(), 1);
        assert_eq!(queue_entry(&u, 1).unwrap(), record.to_vec());
        assert_eq!(u.len(), 0);
        assert!(u.record(1).is_none());
    }

    /// The engine finished the event between a filer's snapshot and its
    /// write: the write must not bring the queue entry back (the queue
    /// scan would process the event a second time).
    #[test]
    fn an_event_taken_while_being_filed_leaves_no_queue_entry() {
        let (_db, u) = unfiled();
        accept(&u, 1);
        let snapshot = u.snapshot(None);
        take(&u, 1);
        assert_eq!(u.file(snapshot).unwrap(), 0);
        assert_eq!(queue_entry(&u, 1), None);
        assert_eq!(u.len(), 0);
    }

    /// Filed while the engine processed it: taking removes the full entry.
    #[test]
    fn an_event_filed_while_processed_is_removed_when_taken() {
        let (_db, u) = unfiled();
        accept(&u, 1);
        u.file_all().unwrap();
        take(&u, 1);
        assert_eq!(queue_entry(&u, 1), None);
    }

    /// Two filers at once (a checkpoint and the hand-over's overflow): the
    /// checkpoint must still see every record the other has not written
    /// yet, so that its flush covers it.
    #[test]
    fn a_record_stays_visible_until_its_filer_has_written_it() {
        let (_db, u) = unfiled();
        let a = accept(&u, 1);
        let b = accept(&u, 2);
        let overflow = u.snapshot(Some(&[1, 2]));
        // The checkpoint runs while the overflow's filer is between its
        // snapshot and its writes.
        assert_eq!(u.snapshot(None).len(), 2, "both still visible");
        assert_eq!(u.file_all().unwrap(), 2);
        assert_eq!(u.file(overflow).unwrap(), 0, "a second write is a no-op");
        assert_eq!(queue_entry(&u, 1).unwrap(), a.to_vec());
        assert_eq!(queue_entry(&u, 2).unwrap(), b.to_vec());
    }

    /// Many threads accepting, taking and filing at once: afterwards every
    /// event not taken has its full record in the queue, and no taken one
    /// has an entry.
    #[test]
    fn concurrent_accepting_taking_and_filing_agree() {
        let (_db, u) = unfiled();
        let u = Arc::new(u);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let filers: Vec<_> = (0..2)
            .map(|_| {
                let (u, stop) = (u.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        u.file_all().unwrap();
                    }
                })
            })
            .collect();
        let mut records = HashMap::new();
        for seq in 0..4000u64 {
            records.insert(seq, accept(&u, seq));
            if seq % 3 == 0 {
                take(&u, seq / 2);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for f in filers {
            f.join().unwrap();
        }
        u.file_all().unwrap();
        let taken: std::collections::HashSet<u64> =
            (0..4000u64).filter(|s| s % 3 == 0).map(|s| s / 2).collect();
        for (seq, record) in records {
            match queue_entry(&u, seq) {
                Some(v) => {
                    assert!(!taken.contains(&seq), "taken event {seq} is queued again");
                    assert_eq!(v, record.to_vec(), "event {seq} filed whole");
                }
                None => assert!(taken.contains(&seq), "event {seq} lost"),
            }
        }
        assert_eq!(u.len(), 0);
    }
}
