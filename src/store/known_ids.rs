//! Which event ids the `events` tree (the dedupe markers) may hold, kept
//! in memory, so that ingestion looks a new id up in sled only when it
//! might be a duplicate.
//!
//! # Why
//!
//! Every accepted event used to start with a `get` on `events` to see
//! whether it is a duplicate. Event ids are hashes, so each lookup walks
//! sled's tree to a leaf nobody touched lately: 6.3% of the server's CPU
//! in a `perf` profile of the ingest case (nineteenth round), under the
//! inbox's writer lock, on every acknowledgement's path, and for almost
//! every event the answer is "not there". A provider's retry is the
//! exception, and it still finds its marker.
//!
//! # How
//!
//! A map from a 64-bit fingerprint of the id (a keyed SipHash, so a sender
//! cannot aim at collisions) to how many marker writes of it are not
//! matched by a removal. [`KnownIds::may_hold`] answers "no" only for an
//! id whose fingerprint is absent; a fingerprint shared with another id,
//! or one left behind (below), costs one sled lookup, never a missed
//! duplicate. The invariant: **while the index is complete, every id with
//! a marker in `events` has a positive count.** It holds because
//!
//! - every marker write counts its id ([`KnownIds::added`]), from the
//!   moment the store opens, whether or not the index is complete yet;
//! - the markers a previous process left are counted by a scan of the
//!   tree on a thread of its own ([`Loader`]); until it has added its
//!   counts, the index is not complete and every id goes to sled as
//!   before;
//! - a removal is counted only once the index is complete, and only after
//!   the marker's compare-and-swap to nothing succeeded: every marker
//!   there is then counted (written by this process, or there since the
//!   start and so seen by the scan), and a removal takes back what its
//!   own marker added, so a count never falls below the number of markers
//!   of its fingerprint, even when two ids share one. A marker removed
//!   before that stays counted: one more sled lookup if its id comes
//!   again.
//!
//! Overwriting a marker (an id accepted again after its window) counts it
//! twice for one key; its removal leaves a count of one behind. Such
//! leftovers only cost a lookup, and they go at the next start.
//!
//! # Memory
//!
//! About 16–20 bytes per remembered id (a week of dedupe window at the
//! bench's 16,000 events/s would not fit; a business's week of calls
//! does). Past [`MAX_IDS`] fingerprints the index gives up for the rest of
//! the process (every id goes to sled, as before it existed), so memory
//! stays bounded whatever the traffic and the window.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Past this many fingerprints (≈20 MB) the index is dropped.
pub(super) const MAX_IDS: usize = 1 << 20;

/// See the module docs. Shared by the store's clones and its loader.
pub(super) struct KnownIds {
    keys: RandomState,
    state: Mutex<State>,
    max_ids: usize,
}

#[derive(Default)]
struct State {
    counts: HashMap<u64, u32, BuildHasherDefault<Fingerprint>>,
    /// The previous process's markers are counted: a missing fingerprint
    /// means "not in `events`".
    complete: bool,
    /// Grew past `max_ids`: never complete again in this process.
    abandoned: bool,
}

/// The map's keys are SipHash outputs already: hashing them again would
/// only cost time.
#[derive(Default)]
struct Fingerprint(u64);

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; a fold keeps this correct for anything.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl KnownIds {
    pub(super) fn new() -> Arc<KnownIds> {
        KnownIds::with_limit(MAX_IDS)
    }

    fn with_limit(max_ids: usize) -> Arc<KnownIds> {
        Arc::new(KnownIds {
            keys: RandomState::new(),
            state: Mutex::new(State::default()),
            max_ids,
        })
    }

    fn fingerprint(&self, id: &[u8]) -> u64 {
        self.keys.hash_one(id)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("known ids lock")
    }

    /// Whether `events` may hold a marker for `id`. `false` is certain.
    pub(super) fn may_hold(&self, id: &[u8]) -> bool {
        let fingerprint = self.fingerprint(id);
        let state = self.state();
        !state.complete || state.counts.contains_key(&fingerprint)
    }

    /// A marker for `id` was written.
    pub(super) fn added(&self, id: &[u8]) {
        let fingerprint = self.fingerprint(id);
        let mut state = self.state();
        if state.abandoned {
            return;
        }
        let count = state.counts.entry(fingerprint).or_insert(0);
        *count = count.saturating_add(1);
        if state.counts.len() > self.max_ids {
            self.abandon(&mut state);
        }
    }

    /// The marker for `id` was removed (its compare-and-swap succeeded).
    pub(super) fn removed(&self, id: &[u8]) {
        let fingerprint = self.fingerprint(id);
        let mut state = self.state();
        if !state.complete {
            // The scan may not have counted this marker yet (module docs).
            return;
        }
        if let Some(count) = state.counts.get_mut(&fingerprint) {
            *count -= 1;
            if *count == 0 {
                state.counts.remove(&fingerprint);
            }
        }
    }

    fn abandon(&self, state: &mut State) {
        if !state.abandoned {
            tracing::info!(
                max_ids = self.max_ids,
                "more remembered event ids than the in-memory dedupe index holds: every event's dedupe check reads the store"
            );
        }
        state.abandoned = true;
        state.complete = false;
        state.counts = HashMap::default();
    }

    /// Count every marker in `events`, then mark the index complete.
    /// Returns early, leaving it incomplete, if `stop` is set or the tree
    /// cannot be read.
    fn load(&self, events: &sled::Tree, stop: &AtomicBool) {
        let mut found: HashMap<u64, u32, BuildHasherDefault<Fingerprint>> = HashMap::default();
        for key in events.iter().keys() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match key {
                Ok(id) => {
                    *found.entry(self.fingerprint(&id)).or_insert(0) += 1;
                    if found.len() > self.max_ids {
                        self.abandon(&mut self.state());
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the dedupe markers into memory; every event's dedupe check reads the store");
                    return;
                }
            }
        }
        let mut state = self.state();
        if state.abandoned {
            return;
        }
        for (fingerprint, n) in found {
            let count = state.counts.entry(fingerprint).or_insert(0);
            *count = count.saturating_add(n);
        }
        if state.counts.len() > self.max_ids {
            self.abandon(&mut state);
            return;
        }
        state.complete = true;
    }

    #[cfg(test)]
    pub(super) fn is_complete(&self) -> bool {
        self.state().complete
    }
}

/// The thread counting the markers a previous process left. Stopped and
/// joined when the last handle of the store goes, so the data folder's
/// lock (held by every sled handle, the loader's too) is free once the
/// store is dropped.
pub(super) struct Loader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Loader {
    pub(super) fn start(
        known: &Arc<KnownIds>,
        events: sled::Tree,
    ) -> Result<Loader, std::io::Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (known, stop) = (known.clone(), stop.clone());
            std::thread::Builder::new()
                .name("dedupe-index".into())
                .spawn(move || known.load(&events, &stop))?
        };
        Ok(Loader {
            stop,
            thread: Some(thread),
        })
    }

    /// Wait for the scan to end (tests).
    #[cfg(test)]
    pub(super) fn wait(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl super::Store {
    /// Wait until the dedupe index has counted what the folder held when
    /// it opened (tests; the store must not be cloned).
    #[cfg(test)]
    pub(super) fn wait_for_known_ids(&mut self) {
        if let Some(loader) = self.known_ids_loader.as_mut() {
            std::sync::Arc::get_mut(loader)
                .expect("a store of its own")
                .wait();
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("events").unwrap();
        (dir, tree)
    }

    fn loaded(known: &Arc<KnownIds>, events: &sled::Tree) {
        known.load(events, &AtomicBool::new(false));
    }

    #[test]
    fn until_the_scan_ends_every_id_may_be_held() {
        let (_dir, events) = tree();
        let known = KnownIds::new();
        assert!(known.may_hold(b"evt_never_seen"));
        loaded(&known, &events);
        assert!(known.is_complete());
        assert!(!known.may_hold(b"evt_never_seen"));
    }

    #[test]
    fn the_scan_counts_what_an_earlier_process_left_and_writes_during_it_count_too() {
        let (_dir, events) = tree();
        events.insert(b"evt_left_before", b"m").unwrap();
        let known = KnownIds::new();
        // Accepted while the scan has not finished.
        known.added(b"evt_during_scan");
        loaded(&known, &events);
        assert!(known.may_hold(b"evt_left_before"));
        assert!(known.may_hold(b"evt_during_scan"));
        assert!(!known.may_hold(b"evt_other"));
    }

    #[test]
    fn a_removed_marker_is_forgotten_only_when_no_write_of_it_is_left() {
        let (_dir, events) = tree();
        let known = KnownIds::new();
        loaded(&known, &events);
        known.added(b"evt_a");
        // Accepted again after its window: the key's marker overwritten.
        known.added(b"evt_a");
        known.removed(b"evt_a");
        assert!(
            known.may_hold(b"evt_a"),
            "a leftover count errs on the safe side"
        );
        known.removed(b"evt_a");
        assert!(!known.may_hold(b"evt_a"));
        // A removal of something never counted changes nothing.
        known.removed(b"evt_b");
        known.added(b"evt_b");
        assert!(known.may_hold(b"evt_b"));
    }

    /// A removal before the scan ends is not counted: it may be of a
    /// marker the scan never saw (purged before the scan reached it) whose
    /// fingerprint another id's marker shares, and taking a count away
    /// then would hide that other marker.
    #[test]
    fn a_removal_before_the_scan_ends_takes_no_count_away() {
        let (_dir, events) = tree();
        let known = KnownIds::new();
        known.added(b"evt_second");
        known.removed(b"evt_second");
        loaded(&known, &events);
        assert!(known.may_hold(b"evt_second"));
    }

    /// A marker the previous process left, removed (purged) while the scan
    /// had not reached it and then written again: counted twice, never
    /// below one while it is there.
    #[test]
    fn a_marker_removed_and_written_again_during_the_scan_stays_known() {
        let (_dir, events) = tree();
        events.insert(b"evt_x", b"old").unwrap();
        let known = KnownIds::new();
        events.remove(b"evt_x").unwrap();
        known.removed(b"evt_x");
        events.insert(b"evt_x", b"new").unwrap();
        known.added(b"evt_x");
        loaded(&known, &events);
        assert!(known.may_hold(b"evt_x"));
    }

    #[test]
    fn past_its_limit_the_index_gives_up_and_sends_every_id_to_the_store() {
        let (_dir, events) = tree();
        let known = KnownIds::with_limit(3);
        loaded(&known, &events);
        for id in [b"evt_1", b"evt_2", b"evt_3"] {
            known.added(id);
        }
        assert!(!known.may_hold(b"evt_4"));
        known.added(b"evt_4");
        assert!(!known.is_complete());
        assert!(known.may_hold(b"evt_never_seen"));

        // Too many markers left by an earlier process: never complete.
        for i in 0..5 {
            events.insert(format!("evt_{i}"), b"m").unwrap();
        }
        let known = KnownIds::with_limit(3);
        loaded(&known, &events);
        assert!(!known.is_complete());
        assert!(known.may_hold(b"evt_never_seen"));
    }

    #[test]
    fn a_stopped_scan_leaves_the_index_incomplete() {
        let (_dir, events) = tree();
        events.insert(b"evt_a", b"m").unwrap();
        let known = KnownIds::new();
        known.load(&events, &AtomicBool::new(true));
        assert!(!known.is_complete());
        assert!(known.may_hold(b"evt_b"));
    }
}
