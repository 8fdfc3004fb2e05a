//! Everything ringback keeps on disk, in one sled database under the data
//! directory. This is the only module that imports sled.
//!
//! # Durability
//!
//! Two ways to make writes durable, both shared by concurrent callers
//! (group commit), so a disk sync is paid once per batch, not per request:
//!
//! - [`Store::commit`]: every write made so far. sled's `flush()` writes its
//!   buffers with `sync_file_range`, which survives a process crash
//!   (`kill -9`) but not a power cut, so the commit then `fdatasync`s the
//!   log file as well (see [`commit`]). Runs use it after a message is
//!   sent and before they pause, so the journal and the contact changes
//!   before it are on disk together. sled's `flush_async` is deliberately
//!   not used: in 0.34.7 it deadlocks under concurrent callers (sled issue
//!   #1308).
//! - [`Store::commit_inbox`]: the inbox writes made so far, through the
//!   inbox log (see [`inbox_log`]): an append and an `fdatasync` of a log
//!   of ringback's own, which is what a webhook's 2xx waits for. sled is
//!   flushed behind it, and the log's tail is replayed into sled on open.
//!
//! # Trees and key layout
//!
//! | tree | key | value |
//! |---|---|---|
//! | `events` | event id (UTF-8, `evt_<24 hex>`) | the dedupe marker: sequence number and received-at, compact (`compact.rs`; earlier versions: the same as JSON, and before that the whole [`StoredEvent`]) |
//! | `pending` | sequence number, u64 big-endian | [`StoredEvent`] as JSON — events the engine is not done with whose record was filed (most are handed over in memory and never filed: `unfiled.rs`), in arrival order. Earlier versions also wrote placeholders (a zero byte and the event id) and, before that, the event id; start-up fills, undoes or converts those |
//! | `expiry_batches` | the latest received-at Unix ms of the batch, u64 big-endian, then a batch number | up to 128 event ids (see `expiry.rs`) — lets the dedupe cleaner walk oldest first without scanning `events` |
//! | `expiry` | received-at Unix ms, u64 big-endian, then the event id | empty — the same, one key per event, written by earlier versions and still purged |
//! | `contacts` | E.164 phone | [`Contact`] without call statistics, compact (`compact.rs`; earlier versions: JSON) |
//! | `tags` | tag, `\0`, phone | empty — the tag index |
//! | `call_stats` | E.164 phone | [`CallStats`], compact (`compact.rs`; earlier versions: JSON), written by ingestion |
//! | `run_records`, `run_ids`, `active_runs` | see `executions.rs` | the run journal (earlier versions: `executions` and `runs_by_seq`, moved at open) |
//! | `timers`, `waits`, `workflow_versions` | see `timers.rs` | durable time |
//! | `calls` | see `calls.rs` | call state |
//! | `windows` | `d`/`c`, `\0`, workflow, `\0`, key | debounce and count windows |
//!
//! Beside sled's files, `inbox-log/` holds the inbox log's segments (format
//! in `inbox_log.rs`).
//!
//! An event id accepted within `dedupe_window` is a duplicate: its newest
//! acceptance is in memory while its dedupe marker is owed, and in
//! `events` after that (`unfiled.rs`). Everything about one id (its
//! duplicate check, acceptance, marking, filing, taking) holds a lock for
//! it (one of [`INBOX_LOCK_STRIPES`], by a hash of the id), so two copies
//! of one event are one acceptance and one duplicate; events of other ids
//! go on concurrently (one lock for every event had request threads block
//! each other, and a tokio worker blocked on it runs nothing else).
//!
//! The marker is written only once the inbox log holds the event's record
//! durably, or once its record is in sled's queue, so a crash can never
//! leave a marker whose record is on disk nowhere (which would turn the
//! provider's retry into a "duplicate" of nothing that is never
//! processed). An event's writes to sled are plain writes in a fixed
//! order, `events` last (a filed record's queue entry, then the call
//! statistics, then the marker): sled recovers a prefix of its log after a
//! crash (0.34 only advances its stable LSN over contiguous written
//! ranges, `StabilityIntervals` in `pagecache/iobuf.rs`, and recovers up to
//! that tip), so a marker that survives has its statistics and queue
//! entry. What a crash can leave is a queue entry without its marker;
//! start-up removes those whose record the log does not hold (never
//! answered 2xx) and the replay marks the others. (A sled transaction would give all-or-nothing too, but makes
//! sled write its log on the spot twice per transaction: a third of
//! ingestion's cost.)

mod calls;
mod commit;
mod compact;
mod contacts;
mod dict_lz4;
mod executions;
mod expiry;
mod inbox;
mod inbox_log;
mod packing;
mod run_record;
mod timers;
mod unfiled;
mod windows;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use calls::{call_key, CallChange, CallPhase, CallState};
pub use contacts::{CallStats, Changed, Contact};
pub use executions::{
    run_id, Attempt, Execution, ExecutionFilter, JournalEncoder, JournalEvent, Retrying, RunStatus,
    StepRecord, StepStatus, Waiting,
};
pub use inbox::{EventJson, Insert, Offered, StoredEvent};
pub use timers::{DueTimer, StoredWorkflow, Timer};

/// The page cache sled may use. Its default (1 GiB) lets RSS grow toward
/// that under load; ringback's working set is small.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Locks serialising contact changes, by a hash of the phone.
const CONTACT_LOCK_STRIPES: usize = 64;
/// Locks serialising acceptances of one event id, by a hash of the id.
const INBOX_LOCK_STRIPES: usize = 64;

const TREE_EVENTS: &str = "events";
const TREE_PENDING: &str = "pending";
const TREE_EXPIRY: &str = "expiry";
const TREE_EXPIRY_BATCHES: &str = "expiry_batches";
const TREE_CONTACTS: &str = "contacts";
const TREE_TAGS: &str = "tags";
const TREE_CALL_STATS: &str = "call_stats";
/// Earlier versions' run records, moved into `run_records` at open.
const TREE_EXECUTIONS: &str = "executions";
const TREE_RUN_RECORDS: &str = "run_records";
const TREE_RUN_IDS: &str = "run_ids";
const TREE_WINDOWS: &str = "windows";
/// Earlier versions' start order of runs, moved with their records.
const TREE_RUNS_BY_SEQ: &str = "runs_by_seq";
const TREE_ACTIVE_RUNS: &str = "active_runs";
const TREE_TIMERS: &str = "timers";
const TREE_WAITS: &str = "waits";
const TREE_WORKFLOW_VERSIONS: &str = "workflow_versions";
const TREE_CALLS: &str = "calls";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {0} is in use by another ringback process (sled allows one process per data directory)")]
    Locked(PathBuf),
    #[error("cannot open the data directory {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("flush failed: {0}")]
    Flush(String),
}

/// The handle to the database: one reference count to clone, so the
/// server, the engine and every run share it by value.
#[derive(Clone)]
pub struct Store(std::sync::Arc<StoreParts>);

/// What a [`Store`] shares; its methods reach these fields through
/// `Deref`. Public only as `Store`'s `Deref` target: its fields are the
/// store module's own.
pub struct StoreParts {
    db: sled::Db,
    events: sled::Tree,
    pending: sled::Tree,
    /// Written by earlier versions only; purged (see `expiry.rs`).
    expiry: sled::Tree,
    /// Acceptances noted for the dedupe cleaner (see `expiry.rs`).
    expiry_batches: std::sync::Arc<expiry::ExpiryBatches>,
    contacts: sled::Tree,
    tags: sled::Tree,
    call_stats: sled::Tree,
    run_records: sled::Tree,
    run_ids: sled::Tree,
    windows: sled::Tree,
    active_runs: sled::Tree,
    timers: sled::Tree,
    waits: sled::Tree,
    /// Never below the number of entries in `waits`, and equal to it
    /// unless a sled write failed (`timers.rs`).
    waits_count: std::sync::atomic::AtomicUsize,
    workflow_versions: sled::Tree,
    /// Keys of `workflow_versions` known to be stored (`timers.rs`).
    versions_kept: std::sync::Mutex<std::collections::HashSet<Vec<u8>>>,
    calls: sled::Tree,
    commit: std::sync::Arc<commit::GroupCommit>,
    /// What ingestion waits on before its 2xx (see `inbox_log.rs`).
    inbox_log: inbox_log::InboxLog,
    /// Accepted events' records not filed in `pending`, and their owed
    /// dedupe markers, under one lock stripe per id (see `unfiled.rs`).
    unfiled: std::sync::Arc<unfiled::Unfiled>,
    /// Changes to a contact hold the stripe of its phone (`contacts.rs`).
    contact_locks: Box<[std::sync::Mutex<()>]>,
}

impl std::ops::Deref for Store {
    type Target = StoreParts;

    fn deref(&self) -> &StoreParts {
        &self.0
    }
}

impl Store {
    /// Open (or create) the database in `dir`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        Store::open_sealing(dir, cache_bytes, inbox_log::Sealing::DEFAULT)
    }

    /// [`Store::open`], with the inbox log's segments sealed as `sealing`
    /// says (tests seal them sooner).
    fn open_sealing(
        dir: &Path,
        cache_bytes: u64,
        sealing: inbox_log::Sealing,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|e| match &e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked(dir.to_path_buf())
                }
                _ => StoreError::Open {
                    path: dir.to_path_buf(),
                    source: e,
                },
            })?;
        // The log file sled writes; fdatasync'd after each flush.
        let log_file = File::open(dir.join("db"))?;
        let commit = std::sync::Arc::new(commit::GroupCommit::new(db.clone(), log_file));
        // What a previous process left is replayed below; this process
        // writes segments numbered after it.
        let left_over = inbox_log::segments(dir)?;
        let pending = db.open_tree(TREE_PENDING)?;
        let events = db.open_tree(TREE_EVENTS)?;
        let call_stats = db.open_tree(TREE_CALL_STATS)?;
        let expiry_batches = std::sync::Arc::new(expiry::ExpiryBatches::new(
            db.clone(),
            db.open_tree(TREE_EXPIRY_BATCHES)?,
        ));
        let unfiled = std::sync::Arc::new(unfiled::Unfiled::new(
            unfiled::InboxTrees {
                pending: pending.clone(),
                events: events.clone(),
                call_stats: call_stats.clone(),
                expiry_batches: expiry_batches.clone(),
            },
            INBOX_LOCK_STRIPES,
        ));
        let inbox_log = {
            let (commit, unfiled, expiry_batches) =
                (commit.clone(), unfiled.clone(), expiry_batches.clone());
            inbox_log::InboxLog::start(dir, sealing, move |flush| {
                match flush {
                    // A checkpoint (and the recovery from a failed log write).
                    inbox_log::Flush::Checkpoint => {
                        write_back_and_flush(&unfiled, &expiry_batches, &commit)
                    }
                    inbox_log::Flush::Takes => commit.flush_blocking(),
                }
                .map_err(|e| e.to_string())
            })?
        };
        let waits = db.open_tree(TREE_WAITS)?;
        let store = Store(std::sync::Arc::new(StoreParts {
            events,
            pending,
            unfiled,
            expiry: db.open_tree(TREE_EXPIRY)?,
            expiry_batches,
            contacts: db.open_tree(TREE_CONTACTS)?,
            tags: db.open_tree(TREE_TAGS)?,
            call_stats,
            run_records: db.open_tree(TREE_RUN_RECORDS)?,
            run_ids: db.open_tree(TREE_RUN_IDS)?,
            windows: db.open_tree(TREE_WINDOWS)?,
            active_runs: db.open_tree(TREE_ACTIVE_RUNS)?,
            timers: db.open_tree(TREE_TIMERS)?,
            waits_count: std::sync::atomic::AtomicUsize::new(waits.len()),
            waits,
            workflow_versions: db.open_tree(TREE_WORKFLOW_VERSIONS)?,
            versions_kept: Default::default(),
            calls: db.open_tree(TREE_CALLS)?,
            commit,
            inbox_log,
            contact_locks: stripes(CONTACT_LOCK_STRIPES),
            db,
        }));
        let moved = store.move_earlier_run_records()?;
        if moved > 0 {
            tracing::info!(
                moved,
                "moved run records of an earlier version's layout into start order"
            );
        }
        let restored = store.replay_inbox_log(&left_over)?;
        if restored > 0 {
            tracing::info!(
                restored,
                "restored accepted events from the inbox log that the store had not flushed"
            );
        }
        let (orphans, converted) = store.tidy_pending_queue()?;
        if orphans > 0 {
            tracing::info!(
                orphans,
                "removed queue entries of events a crash left half-written"
            );
        }
        if converted > 0 {
            tracing::info!(
                converted,
                "moved queued events of an earlier version's layout into their queue entries"
            );
        }
        Ok(store)
    }

    /// Wait until every write made before this call is on disk (see the
    /// module docs). Concurrent callers share one flush.
    pub async fn commit(&self) -> Result<(), StoreError> {
        // Events the engine finished before this call: their done notes
        // may go to the inbox log once this flush covers their effects.
        let takes = self.inbox_log.takes_in_flight();
        self.commit.commit().await?;
        takes.flushed();
        Ok(())
    }

    /// Wait until every inbox write made before this call is durable,
    /// through the inbox log alone: what ingestion waits for before its
    /// 2xx. Concurrent callers share one write and sync.
    pub async fn commit_inbox(&self) -> Result<(), StoreError> {
        self.inbox_log.batch().durable().await
    }

    /// Call `observer` with how long each of the inbox log's batches took
    /// to write and sync: the disk's share of every webhook's answer.
    pub fn observe_inbox_writes(
        &self,
        observer: impl Fn(std::time::Duration) + Send + Sync + 'static,
    ) {
        self.inbox_log.observe_writes(Box::new(observer));
    }

    /// Flush synchronously; for shutdown and tools. Queued events whose
    /// records were kept in memory are filed first, and the dedupe
    /// cleaner's notes written, so the folder holds them in sled, not only
    /// in the inbox log.
    pub fn flush_now(&self) -> Result<(), StoreError> {
        self.inbox_log
            .flushing(|| write_back_and_flush(&self.unfiled, &self.expiry_batches, &self.commit))
    }

    /// Make every following commit fail (or stop failing), as a full or
    /// broken disk would. For tests of the 503 path; never set in production.
    #[doc(hidden)]
    pub fn dangerous_fail_commits(&self, on: bool) {
        self.commit.set_fail_flushes(on);
        self.inbox_log.set_fail_writes(on);
    }
}

/// What the store keeps in memory only while the inbox log covers it goes
/// into sled (queued records, the dedupe cleaner's notes), then sled is
/// flushed: what a checkpoint must do before it retires log segments, and
/// what [`Store::flush_now`] does.
fn write_back_and_flush(
    unfiled: &unfiled::Unfiled,
    expiry_batches: &expiry::ExpiryBatches,
    commit: &commit::GroupCommit,
) -> Result<(), StoreError> {
    unfiled.file_all()?;
    expiry_batches.write_noted()?;
    commit.flush_blocking()
}

/// sled's `fetch_and_update` without its first read: the key is guessed
/// absent, and a failed compare-and-swap hands back what is there, so `f`
/// may be called with `None` first even when the key exists (it must not
/// count on being called once). Each read or write walks sled's tree from
/// its root, the largest part of a small update's cost: a key written for
/// the first time (a new call, a first-time caller's statistics: every
/// event of a burst of new callers) costs one walk instead of two, an
/// existing key the same two as before.
fn update_guessing_absent<V: Into<sled::IVec>>(
    tree: &sled::Tree,
    key: &[u8],
    mut f: impl FnMut(Option<&[u8]>) -> Option<V>,
) -> Result<(), StoreError> {
    let mut current: Option<sled::IVec> = None;
    loop {
        let next = f(current.as_deref());
        match tree.compare_and_swap(key, current.as_deref(), next)? {
            Ok(()) => return Ok(()),
            Err(sled::CompareAndSwapError { current: there, .. }) => current = there,
        }
    }
}

fn stripes<T: Default>(n: usize) -> Box<[std::sync::Mutex<T>]> {
    (0..n).map(|_| std::sync::Mutex::default()).collect()
}

/// The one of `stripes` that `key` hashes to, locked: what serialises
/// changes to one key (a contact's phone, an event's id) while other
/// keys go on at the same time.
fn lock_stripe<'a, T>(
    stripes: &'a [std::sync::Mutex<T>],
    key: &[u8],
) -> std::sync::MutexGuard<'a, T> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let stripe = (h.finish() % stripes.len() as u64) as usize;
    stripes[stripe].lock().expect("stripe lock")
}

/// A store in a temporary folder of its own, kept as long as the folder:
/// what the store's unit tests start from.
#[cfg(test)]
pub(super) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    (dir, store)
}

/// Drop `store` as a crash would stop it: the inbox log's open segment
/// stays for the next open to replay (sled still flushes on its drop, so
/// a test also takes out what a crash would have lost).
#[cfg(test)]
pub(crate) fn crash(store: Store) {
    store.inbox_log.abandon_on_stop();
    drop(store);
}

/// Open a store just dropped: sled's flusher thread lets go of the
/// folder shortly after the drop.
#[cfg(test)]
pub(crate) fn reopen(dir: &Path) -> Store {
    let mut reopened = Store::open(dir, 8 << 20);
    for _ in 0..100 {
        if !matches!(reopened, Err(StoreError::Locked(_))) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        reopened = Store::open(dir, 8 << 20);
    }
    reopened.unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new key is written from `None` in one go; an existing one is
    /// updated from what is there, whatever the first guess computed.
    #[test]
    fn an_update_guessing_absent_starts_from_what_is_there() {
        let (_dir, store) = temp_store();
        let tree = &store.call_stats;
        let mut seen = Vec::new();
        let mut add_one = |stored: Option<&[u8]>| {
            seen.push(stored.map(<[u8]>::to_vec));
            let n = stored.map_or(0, |b| b[0]);
            Some(vec![n + 1])
        };
        update_guessing_absent(tree, b"k", &mut add_one).unwrap();
        update_guessing_absent(tree, b"k", &mut add_one).unwrap();
        assert_eq!(tree.get(b"k").unwrap().unwrap().as_ref(), [2]);
        assert_eq!(seen, [None, None, Some(vec![1])]);
    }
}
