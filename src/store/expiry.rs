//! When accepted events' dedupe markers may be forgotten: the dedupe
//! cleaner's index, written a batch of events at a time.
//!
//! # Why batches
//!
//! The cleaner ([`Store::purge_expired`](super::Store::purge_expired))
//! walks events oldest first without scanning the `events` tree, whose
//! keys are ids in no useful order. Earlier versions wrote one key per
//! accepted event for that (`expiry`: received-at ms, then the id). That
//! was one more sled insert on every webhook's path, and a tree growing by
//! a key per event, whose leaves sled splits and rewrites whole: about 3%
//! of an ingested event's instructions and a tenth of its disk writes.
//!
//! Acceptance now only notes `(received-at, id)` in memory ([`note`]);
//! the notes go into the `expiry_batches` tree a batch of up to
//! [`IDS_PER_BATCH`] ids per key ([`write_noted`]) at each inbox-log
//! checkpoint, at [`Store::flush_now`](super::Store::flush_now) and before
//! each purge. A crash loses only notes whose events are still in the
//! inbox log: a checkpoint writes the notes before it flushes sled and
//! retires the segments it covers (waiting for a write of notes already
//! under way), and every event is noted when its marker is written, which
//! a checkpoint does for every event of the segments it retires whose
//! marker is still owed (`unfiled.rs`), so the notes of a retired
//! segment's events were all written and flushed before it went. The
//! replay on open notes every record of the segments left over whose
//! marker sled holds (its own, or a newer acceptance's of its id), and
//! flushes before it retires them.
//!
//! A batch is only a hint of which markers to look at: the purge reads
//! each id's marker and removes it only when that acceptance has expired
//! and its event is no longer queued, so an id noted twice, or noted for
//! an acceptance that was later undone or repeated, costs a lookup and
//! nothing more.
//!
//! # Format
//!
//! Key: the latest received-at Unix ms of the batch's ids (u64
//! big-endian), then a number unique to the batch (u64 big-endian, from
//! sled's id generator), so the cleaner walks batches whose every event
//! is older than its cutoff. Value: each id as a u32 little-endian length
//! and its UTF-8 bytes.
//!
//! [`note`]: ExpiryBatches::note
//! [`write_noted`]: ExpiryBatches::write_noted

use std::sync::Mutex;

use jiff::Timestamp;

use super::StoreError;

/// Ids per batch key: 28-byte ids make a value of about 4 KB, small next to
/// a sled leaf, which sled copies on every write to it.
pub(super) const IDS_PER_BATCH: usize = 128;

/// The notes not yet written, and the tree they go to. One per store,
/// shared with the inbox log's checkpoint.
pub(super) struct ExpiryBatches {
    db: sled::Db,
    tree: sled::Tree,
    noted: Mutex<Vec<(u64, Box<str>)>>,
    /// Held by [`ExpiryBatches::write_noted`] from taking the notes until
    /// they are written (or put back): a checkpoint that calls it while a
    /// purge is writing waits, so the sled flush after it covers those
    /// batches too. [`ExpiryBatches::note`] never waits for it.
    writing: Mutex<()>,
}

impl ExpiryBatches {
    pub(super) fn new(db: sled::Db, tree: sled::Tree) -> ExpiryBatches {
        ExpiryBatches {
            db,
            tree,
            noted: Mutex::new(Vec::new()),
            writing: Mutex::new(()),
        }
    }

    #[cfg(test)]
    pub(super) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    fn noted(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Box<str>)>> {
        self.noted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember that acceptance `received_at` of `id` must be looked at
    /// once it expires. In memory until [`ExpiryBatches::write_noted`].
    pub(super) fn note(&self, received_at: Timestamp, id: &str) {
        self.noted().push((millis(received_at), id.into()));
    }

    /// Notes not yet written.
    #[cfg(test)]
    pub(super) fn noted_len(&self) -> usize {
        self.noted().len()
    }

    /// Write every note so far into the tree, in batches (not durable
    /// until sled is flushed). On a failed write the notes are kept for
    /// the next call. Returns how many batches were written.
    pub(super) fn write_noted(&self) -> Result<usize, StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut notes = std::mem::take(&mut *self.noted());
        if notes.is_empty() {
            return Ok(0);
        }
        // Nearly sorted already (acceptance order); sorting keeps each
        // batch's key close to all of its events' times.
        notes.sort_unstable_by_key(|(ms, _)| *ms);
        let mut written = 0;
        while written < notes.len() {
            let end = notes.len().min(written + IDS_PER_BATCH);
            if let Err(e) = self.write_batch(&notes[written..end]) {
                // Keep what is not written yet for the next call.
                self.noted().extend(notes.drain(written..));
                return Err(e);
            }
            written = end;
        }
        Ok(notes.len().div_ceil(IDS_PER_BATCH))
    }

    /// Hand every id of the batches whose events were all received before
    /// `cutoff_ms` to `keep`, after writing the notes so far; a batch goes
    /// once `keep` has said no to all of its ids, and is rewritten with
    /// those it keeps otherwise (looked at again next time).
    pub(super) fn purge_before(
        &self,
        cutoff_ms: u64,
        mut keep: impl FnMut(&[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.write_noted()?;
        for item in self.tree.range(..cutoff_ms.to_be_bytes()) {
            let (key, value) = item?;
            let (ids, damaged) = decode_ids(&value);
            if damaged {
                // Only a hint: the markers of the ids after the damage stay
                // until their ids are accepted again.
                tracing::warn!(
                    readable = ids.len(),
                    "a batch of the dedupe cleaner's index is damaged; the ids after the damage stay remembered"
                );
            }
            let looked_at = ids.len();
            let mut kept = Vec::new();
            for id in ids {
                if keep(id)? {
                    kept.push(id);
                }
            }
            if kept.is_empty() {
                self.tree.remove(key)?;
            } else if kept.len() < looked_at || damaged {
                self.tree.insert(key, encode_ids(kept.into_iter()))?;
            }
        }
        Ok(())
    }

    fn write_batch(&self, batch: &[(u64, Box<str>)]) -> Result<(), StoreError> {
        let latest = batch.iter().map(|(ms, _)| *ms).max().unwrap_or(0);
        let mut key = Vec::with_capacity(16);
        key.extend_from_slice(&latest.to_be_bytes());
        key.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
        self.tree
            .insert(key, encode_ids(batch.iter().map(|(_, id)| id.as_bytes())))?;
        Ok(())
    }
}

fn millis(at: Timestamp) -> u64 {
    at.as_millisecond().max(0) as u64
}

/// A batch's value from its ids.
pub(super) fn encode_ids<'a>(ids: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut value = Vec::with_capacity(IDS_PER_BATCH * 32);
    for id in ids {
        let len = u32::try_from(id.len()).expect("an event id is shorter than 4 GiB");
        value.extend_from_slice(&len.to_le_bytes());
        value.extend_from_slice(id);
    }
    value
}

/// The ids of a batch's value, and whether it is damaged (a length that
/// runs past the end: the ids before it are returned).
fn decode_ids(mut value: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut ids = Vec::with_capacity(IDS_PER_BATCH);
    while !value.is_empty() {
        let Some((len, rest)) = value.split_first_chunk::<4>() else {
            return (ids, true);
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return (ids, true);
        }
        let (id, rest) = rest.split_at(len);
        ids.push(id);
        value = rest;
    }
    (ids, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches() -> (tempfile::TempDir, ExpiryBatches) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("expiry_batches").unwrap();
        (dir, ExpiryBatches::new(db, tree))
    }

    fn stored(b: &ExpiryBatches) -> Vec<(u64, Vec<String>)> {
        b.tree()
            .iter()
            .map(|item| {
                let (key, value) = item.unwrap();
                let latest = u64::from_be_bytes(key[..8].try_into().unwrap());
                let (ids, damaged) = decode_ids(&value);
                assert!(!damaged);
                let ids = ids
                    .into_iter()
                    .map(|id| String::from_utf8(id.to_vec()).unwrap())
                    .collect();
                (latest, ids)
            })
            .collect()
    }

    #[test]
    fn notes_are_written_in_batches_keyed_by_their_latest_time() {
        let (_dir, b) = batches();
        // Out of order, as concurrent acceptances may note them.
        b.note(Timestamp::from_millisecond(2_000).unwrap(), "evt_b");
        b.note(Timestamp::from_millisecond(1_000).unwrap(), "evt_a");
        for i in 0..IDS_PER_BATCH {
            b.note(
                Timestamp::from_millisecond(3_000 + i as i64).unwrap(),
                &format!("evt_{i:03}"),
            );
        }
        assert_eq!(b.write_noted().unwrap(), 2);
        assert_eq!(b.noted_len(), 0);
        assert_eq!(b.write_noted().unwrap(), 0, "nothing noted since");
        let batches = stored(&b);
        assert_eq!(batches.len(), 2);
        let (first_latest, first) = &batches[0];
        assert_eq!(first.len(), IDS_PER_BATCH);
        assert_eq!(&first[..3], ["evt_a", "evt_b", "evt_000"]);
        assert_eq!(
            *first_latest,
            3_000 + IDS_PER_BATCH as u64 - 3,
            "the key is the latest time of the ids in the batch"
        );
        assert_eq!(batches[1].1.len(), 2);
        assert_eq!(batches[1].0, 3_000 + IDS_PER_BATCH as u64 - 1);
    }

    #[test]
    fn batches_of_the_same_time_do_not_replace_each_other() {
        let (_dir, b) = batches();
        let at = Timestamp::from_millisecond(5_000).unwrap();
        b.note(at, "evt_one");
        b.write_noted().unwrap();
        b.note(at, "evt_two");
        b.write_noted().unwrap();
        let ids: Vec<String> = stored(&b).into_iter().flat_map(|(_, ids)| ids).collect();
        assert_eq!(ids, ["evt_one", "evt_two"]);
    }

    #[test]
    fn a_damaged_batch_is_recognised_and_its_whole_ids_kept() {
        let (a, bb) = (b"evt_a".as_slice(), b"evt_bb".as_slice());
        let value = encode_ids([a, bb].into_iter());
        assert_eq!(decode_ids(&value), (vec![a, bb], false));
        assert_eq!(decode_ids(&value[..value.len() - 1]), (vec![a], true));
        assert_eq!(decode_ids(&value[..11]), (vec![a], true));
        assert_eq!(decode_ids(&value[..2]), (vec![], true));
        assert_eq!(decode_ids(&[]), (vec![], false));
    }

    /// A checkpoint's write must not return while another caller (the
    /// purge) still holds notes it took and has not written: the sled
    /// flush after the checkpoint would miss them.
    #[test]
    fn a_write_waits_for_one_in_progress() {
        let (_dir, b) = batches();
        let b = std::sync::Arc::new(b);
        b.note(Timestamp::from_millisecond(1_000).unwrap(), "evt_a");
        let held = b.writing.lock().unwrap();
        // As if another write had taken the notes and were writing them.
        let taken = std::mem::take(&mut *b.noted());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let checkpoint = {
            let b = b.clone();
            std::thread::spawn(move || {
                b.write_noted().unwrap();
                done_tx.send(b.tree().len()).unwrap();
            })
        };
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "the second write waits for the first"
        );
        b.write_batch(&taken).unwrap();
        drop(held);
        assert_eq!(
            done_rx.recv().unwrap(),
            1,
            "when it returns, the first write's batch is in the tree"
        );
        checkpoint.join().unwrap();
    }
}
