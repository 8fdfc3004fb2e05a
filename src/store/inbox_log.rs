//! The inbox log: what makes an accepted webhook durable before its 2xx.
//!
//! # Why a log of our own in front of sled
//!
//! Making sled durable means `Db::flush`: sled hands its IO buffer to its
//! own thread pool, `pwrite`s it and `sync_file_range`s it, and then
//! ringback `fdatasync`s sled's file (power-cut safety). Under load that
//! flush was the largest cost of an acknowledgement: several thread
//! hand-offs per group of requests and a wide spread (p50 0.6 ms, p99
//! 6.7 ms at 2,000 events/s), which every 2xx waited for up to twice.
//!
//! Ingestion writes nothing to sled before the 2xx: the accepted event's
//! record is kept in memory (`unfiled.rs`) and appended to this log, and
//! what the request waits for is one `write` and one `fdatasync` on a
//! dedicated thread for every group of records that arrived while the
//! previous group was being written (group commit). Then the request
//! hands the event to the engine, which writes its dedupe marker into
//! sled first. sled is flushed in the background (its own flusher, the
//! runs' commits, and the checkpoints below), off the acknowledgement's
//! path.
//!
//! # Done notes
//!
//! When the engine has finished an event, a *done note* (its sequence
//! number) is appended to the log, so that a replay after a crash knows
//! not to queue that record again. The note is appended only after a sled
//! flush that started after the engine finished ([`InboxLog::taken`]):
//! everything the event caused in sled (its runs' journal, its call
//! state) is durable before the note that says the event needs nothing
//! more. Nobody waits for a note: it rides with the next batch, or is
//! written on its own within [`NOTES_WITHIN`]. A note lost in a crash
//! means the event is processed again (its runs replay from their
//! journal).
//!
//! # Invariants
//!
//! - A record is appended after it is kept in memory, by the thread that
//!   keeps it (under the event id's lock stripe). So a checkpoint that
//!   starts after a segment was sealed (on its own thread, so the appends
//!   never wait for sled) finds every record of it that is neither filed
//!   nor finished, files it into sled's queue, writes its marker if that
//!   is owed, writes the dedupe cleaner's notes (`expiry.rs`), and
//!   flushes sled: the flush covers every record of the segment, which can
//!   then be retired.
//! - A record's batch reports success only after `fdatasync` of the bytes
//!   that hold it returned. A failed write or sync fails the whole batch
//!   (its requests get a 503 and the provider retries); the log moves on to
//!   a new segment (failing every batch until it has one), so no later
//!   record sits behind a torn one; and no later batch succeeds until a
//!   checkpoint has made the failed batch's records durable in sled,
//!   since a duplicate of one of them waits on a later batch.
//! - A clean stop (the log dropped with the store) seals the open segment
//!   once its last batch is written, and the checkpoint thread handles it
//!   as any sealed one before the threads end: only a crash, or a failed
//!   checkpoint, leaves segments for the next start. Replaying a full
//!   segment (its records decoded, each marker looked up in sled) was an
//!   eighth of the first start after a busy stretch.
//! - On open, every record of every remaining segment is replayed: one
//!   with a done note anywhere in the log was finished (its marker was
//!   flushed before the note), and any queue entry it left goes; one
//!   without is written into sled's queue, with its marker. Then sled is flushed and
//!   the segments are retired. Segments written by earlier versions (no
//!   format record, no notes) are replayed by their rules: their events
//!   were queued behind placeholders in sled (`inbox.rs`). Reading a
//!   segment stops at its first incomplete or corrupt record: that can
//!   only be the tail a crash cut off, or the end of a segment whose last
//!   write failed, and neither batch was acknowledged.
//! - A segment lives at most about [`Sealing::age`] plus one checkpoint
//!   (failed checkpoints are retried), and the inbox keeps every event at
//!   least ten minutes whatever the dedupe window, so a replay of an
//!   earlier version's segment (which goes by what sled holds) never
//!   mistakes a processed and purged event for a lost one.
//!
//! # Recycled segments
//!
//! A checkpointed segment (or one replayed on open) is not deleted but
//! renamed to a spare (`spare-<number>.wal`, at most [`MAX_SPARES`]), and
//! the next segment is that file renamed again, written from its start,
//! numbered after every segment and spare in the folder. Writing inside blocks
//! a file already has changes no file-system metadata, so each batch's
//! `fdatasync` is one data write; appending to a fresh file also commits
//! the file system's journal (the new size and blocks) on every sync.
//! Measured on the development VM: 0.26 → 0.15 ms per 6 KB sync (p50),
//! ≈70 → ≈45 µs of kernel CPU. The stale records behind the new ones are
//! never read: each record's checksum covers its segment's number, so
//! reading stops at the first record of an earlier life.
//!
//! # Format
//!
//! A folder `inbox-log/` inside the data directory, with segments named
//! by a 12-digit number and `.wal`, each a sequence of records:
//! `u32 length (LE) | u32 CRC-32 (LE) | payload`, where the checksum
//! covers the segment's number (u64 LE) then the payload. The first
//! payload is [`FORMAT_RECORD`]; then each is either a stored event's JSON
//! (the same bytes as its value in the `pending` tree when it is filed)
//! or a done note (a `2` byte and the sequence number, u64 big-endian).
//! Segments without the format record were written by earlier versions
//! (records only); those ending in `.log` also checksum the payload alone
//! (never recycled). Both are still replayed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::StoreError;

/// When a segment is sealed and a new one started.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sealing {
    /// Past this size: small enough that a start-up after a crash reads
    /// little, large enough that checkpoints (a sled flush each) stay rare
    /// under load.
    pub bytes: u64,
    /// This long after its first record, however small: a quiet server's
    /// records must not outlive the events they restore (an event purged
    /// from the store and then restored by a replay would be processed
    /// again; the inbox keeps events ten minutes at least).
    pub age: Duration,
}

impl Sealing {
    pub(super) const DEFAULT: Sealing = Sealing {
        bytes: 16 * 1024 * 1024,
        age: Duration::from_secs(30),
    };
}

/// The folder inside the data directory.
pub(super) const LOG_DIR: &str = "inbox-log";
const HEADER_BYTES: usize = 8;
/// A batch is taken at once unless the previous sync ended less than
/// `BUSY_WITHIN` ago; then the writer first waits `GATHER_WHEN_BUSY` for
/// more records to join it.
const BUSY_WITHIN: Duration = Duration::from_millis(1);
const GATHER_WHEN_BUSY: Duration = Duration::from_micros(40);
/// Events the engine finished wait at most about this long for a store
/// flush that lets their done notes go to the log.
const TAKES_FLUSHED_WITHIN: Duration = Duration::from_millis(500);
/// How soon a failed checkpoint is tried again when no new segment is
/// sealed meanwhile.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(5);
/// Done notes with no batch to ride with are written within this long.
const NOTES_WITHIN: Duration = Duration::from_millis(100);
/// The first record of every segment this version writes: the segment
/// holds done notes ([`done_note`]), so a replay may take a record with
/// no note for an event the engine never finished. Segments without it
/// were written by earlier versions, which marked finished events in
/// sled's queue instead.
const FORMAT_RECORD: &[u8] = b"\x01ringback inbox log: records and done notes";
/// A done note's payload: this byte, then the sequence number (u64
/// big-endian). A record is a JSON object and starts with `{`.
const DONE_NOTE_TAG: u8 = 2;
/// Checkpointed segments kept for reuse; more are deleted.
const MAX_SPARES: usize = 2;
/// A record longer than this cannot be a real one (the body limit is far
/// smaller): reading stops there as at any corrupt record.
const MAX_RECORD_BYTES: u32 = 64 * 1024 * 1024;

/// What the store's flush is asked for (see [`InboxLog::start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flush {
    /// Make sled hold everything the sealed segments hold (file the
    /// records kept in memory, then flush): before segments are retired,
    /// and after a failed log write.
    Checkpoint,
    /// Only flush sled, so that the done notes of events taken before it
    /// may go to the log.
    Takes,
}

/// One group of records written and synced together; what a writer waits
/// on.
pub(super) struct Batch {
    result: OnceLock<Result<(), String>>,
    done: Notify,
}

impl Batch {
    fn new() -> Arc<Batch> {
        Arc::new(Batch {
            result: OnceLock::new(),
            done: Notify::new(),
        })
    }

    fn finish(&self, result: Result<(), String>) {
        let _ = self.result.set(result);
        self.done.notify_waiters();
    }

    /// Wait until the batch is on disk (or failed to get there).
    pub(super) async fn durable(&self) -> Result<(), StoreError> {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            // Registered before looking, so a finish in between is not missed.
            notified.as_mut().enable();
            if let Some(result) = self.result.get() {
                return result.clone().map_err(StoreError::Flush);
            }
            notified.await;
        }
    }
}

/// The log's handle, owned by the store. Dropping it writes what is
/// buffered, checkpoints every segment (the open one too) and stops the
/// log's threads.
pub(super) struct InboxLog {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    checkpointer: Option<JoinHandle<()>>,
}

struct Shared {
    dir: PathBuf,
    sealing: Sealing,
    state: Mutex<State>,
    /// Wakes the writer thread.
    wake: Condvar,
    /// Test switch: make every sync fail (after the write), to exercise
    /// the 503 path.
    fail_writes: AtomicBool,
    /// Test switch: stop as a crash would, leaving the open segment for
    /// the next start to replay instead of sealing it.
    abandon_on_stop: AtomicBool,
    /// Checkpointed segment files, renamed, ready to be the next segment.
    spares: Mutex<Vec<PathBuf>>,
    /// Told how long each batch's write and sync took (the disk wait every
    /// acknowledgement shares), when someone asked.
    observer: std::sync::RwLock<Option<WriteObserver>>,
    /// Sequence numbers of events the engine finished whose done notes wait
    /// for a store flush (see [`InboxLog::taken`]).
    takes: Mutex<Vec<u64>>,
}

/// See [`InboxLog::observe_writes`].
pub(super) type WriteObserver = Box<dyn Fn(Duration) + Send + Sync>;

struct State {
    /// Records appended since the writer last took the buffer.
    buffer: Vec<u8>,
    /// The batch those records (and anyone waiting for them) belong to.
    open: Arc<Batch>,
    /// Someone waits on `open`, even if it has no records (a duplicate
    /// waits for whatever was appended before it).
    wanted: bool,
    /// When the oldest done note in `buffer` that nobody waits for was
    /// appended: the writer writes it within [`NOTES_WITHIN`].
    notes_since: Option<Instant>,
    stopping: bool,
}

impl InboxLog {
    /// Start the log in `data_dir/inbox-log`, sealing segments as
    /// `sealing` says. `flush_store` makes every sled write made so far
    /// durable ([`Flush`] says what else); it runs on the checkpoint thread
    /// after a segment is sealed and while takes wait, and on the writer's
    /// after a failed write. Segments a previous process left are not
    /// touched: they are the caller's to replay and then
    /// [`InboxLog::retire`].
    pub(super) fn start(
        data_dir: &Path,
        sealing: Sealing,
        flush_store: impl Fn(Flush) -> Result<(), String> + Send + Sync + 'static,
    ) -> Result<InboxLog, StoreError> {
        let dir = data_dir.join(LOG_DIR);
        std::fs::create_dir_all(&dir)?;
        let spares = spares_in(&dir)?;
        // Numbered after every file here: a spare still holds the records
        // of its earlier lives, checksummed with numbers up to the one in
        // its name, so no new segment may take one of those numbers again,
        // even when no segment is left.
        let highest = segments(data_dir)?
            .into_iter()
            .map(|(number, _)| number)
            .chain(spares.iter().filter_map(|p| spare_number(p)))
            .max();
        let first_segment = highest.map_or(1, |n| n + 1);
        let shared = Arc::new(Shared {
            sealing,
            state: Mutex::new(State {
                buffer: Vec::with_capacity(64 * 1024),
                open: Batch::new(),
                wanted: false,
                notes_since: None,
                stopping: false,
            }),
            wake: Condvar::new(),
            fail_writes: AtomicBool::new(false),
            abandon_on_stop: AtomicBool::new(false),
            spares: Mutex::new(spares),
            observer: std::sync::RwLock::new(None),
            takes: Mutex::new(Vec::new()),
            dir,
        });
        let (sealed_tx, sealed_rx) = mpsc::channel::<PathBuf>();
        let flush_store: Arc<dyn Fn(Flush) -> Result<(), String> + Send + Sync> =
            Arc::new(flush_store);
        let writer = {
            let shared = shared.clone();
            let flush_store = flush_store.clone();
            std::thread::Builder::new()
                .name("inbox-log".into())
                .spawn(move || shared.write_forever(first_segment, sealed_tx, &*flush_store))?
        };
        let checkpointer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("inbox-checkpoint".into())
                .spawn(move || checkpoint_forever(&shared, sealed_rx, &*flush_store))?
        };
        Ok(InboxLog {
            shared,
            writer: Some(writer),
            checkpointer: Some(checkpointer),
        })
    }

    /// Add one record (a stored event's bytes) to the open batch. Its
    /// batch, to wait on, comes from [`InboxLog::batch`]. The checksum is
    /// filled in by the writer, which knows the segment.
    pub(super) fn append(&self, payload: &[u8]) {
        let mut s = self.shared.state.lock().expect("inbox log lock");
        push_record(&mut s.buffer, payload);
    }

    /// The engine is done with acceptance `seq`: its done note goes to the
    /// log once a store flush that started after this call has ended, so
    /// that everything the event caused in sled (runs, call state) is
    /// durable before the note that says it needs nothing more. The flush
    /// is a run's commit, a checkpoint, or the checkpoint thread's within
    /// [`TAKES_FLUSHED_WITHIN`]. A note lost in a crash only means the
    /// event is processed again after the restart (its runs replay from
    /// their journal), as a queue removal sled had not flushed did before.
    pub(super) fn taken(&self, seq: u64) {
        self.shared.takes.lock().expect("takes lock").push(seq);
    }

    /// Run `flush` (a flush of the store); if it succeeds, the done notes
    /// of the events taken before it go to the log.
    pub(super) fn flushing<T, E>(&self, flush: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.shared.flushing(flush)
    }

    /// The takes waiting for a store flush, handed to the caller that is
    /// about to start one: [`TakesInFlight::flushed`] once it succeeded.
    /// Dropped without that (failed, cancelled), they wait again.
    pub(super) fn takes_in_flight(&self) -> TakesInFlight<'_> {
        self.shared.takes_in_flight()
    }

    /// The open batch: it holds every record appended so far that is not
    /// yet being written, and it ends after every earlier batch.
    pub(super) fn batch(&self) -> Arc<Batch> {
        let mut s = self.shared.state.lock().expect("inbox log lock");
        // Only the first caller since the writer took the last batch wakes
        // it: a later one finds it woken already (or about to be, by that
        // first caller), and it takes every record appended by then.
        // `notify_one` is a `futex` system call whether or not the writer
        // waits, and under load most callers find `wanted` set.
        let first = !std::mem::replace(&mut s.wanted, true);
        let batch = s.open.clone();
        drop(s);
        if first {
            self.shared.wake.notify_one();
        }
        batch
    }

    /// Retire a segment whose records sled holds durably: kept as a spare
    /// or deleted, as after a checkpoint.
    pub(super) fn retire(&self, path: &Path) {
        self.shared.retire(path);
    }

    /// Call `observer` with the duration of every batch's write and sync
    /// from now on, instead of any earlier one.
    pub(super) fn observe_writes(&self, observer: WriteObserver) {
        *self.shared.observer.write().expect("observer lock") = Some(observer);
    }

    pub(super) fn set_fail_writes(&self, on: bool) {
        self.shared.fail_writes.store(on, Ordering::Relaxed);
    }

    /// From now on, stopping leaves the open segment behind, as a crash
    /// would: what the tests of the replay stop with.
    #[cfg(test)]
    pub(super) fn abandon_on_stop(&self) {
        self.shared.abandon_on_stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for InboxLog {
    fn drop(&mut self) {
        self.shared.state.lock().expect("inbox log lock").stopping = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        // The writer dropped its end of the channel: the checkpointer
        // finishes what it was given and ends.
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.join();
        }
    }
}

/// See [`InboxLog::takes_in_flight`].
pub(super) struct TakesInFlight<'a> {
    shared: &'a Shared,
    takes: Vec<u64>,
}

impl TakesInFlight<'_> {
    /// The store flush succeeded: the done notes go to the log.
    pub(super) fn flushed(mut self) {
        self.shared
            .append_done_notes(&std::mem::take(&mut self.takes));
    }
}

impl Drop for TakesInFlight<'_> {
    fn drop(&mut self) {
        if !self.takes.is_empty() {
            let mut takes = self.shared.takes.lock().expect("takes lock");
            takes.append(&mut self.takes);
        }
    }
}

impl Shared {
    fn has_takes(&self) -> bool {
        !self.takes.lock().expect("takes lock").is_empty()
    }

    /// See [`InboxLog::takes_in_flight`].
    fn takes_in_flight(&self) -> TakesInFlight<'_> {
        TakesInFlight {
            shared: self,
            takes: std::mem::take(&mut *self.takes.lock().expect("takes lock")),
        }
    }

    /// See [`InboxLog::flushing`].
    fn flushing<T, E>(&self, flush: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let in_flight = self.takes_in_flight();
        let result = flush();
        if result.is_ok() {
            in_flight.flushed();
        }
        result
    }

    /// Append a done note per sequence number. Nobody waits for them: they
    /// ride with the next batch, or are written on their own within
    /// [`NOTES_WITHIN`].
    fn append_done_notes(&self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        let mut s = self.state.lock().expect("inbox log lock");
        for seq in seqs {
            let mut note = [DONE_NOTE_TAG; 9];
            note[1..].copy_from_slice(&seq.to_be_bytes());
            push_record(&mut s.buffer, &note);
        }
        let first = s.notes_since.is_none();
        s.notes_since.get_or_insert_with(Instant::now);
        drop(s);
        if first {
            // So that an idle writer sets its timer for them (once per
            // flush's notes, not per event).
            self.wake.notify_one();
        }
    }

    /// The writer thread: take the open batch, write and sync it, report,
    /// repeat. Records arriving meanwhile form the next batch.
    ///
    /// After a failed write or sync, the events of the failed batch are
    /// accepted (their records kept in memory, their ids seen by the
    /// duplicate check) but may be nowhere on disk, and a duplicate of one
    /// of them waits on a *later* batch. So until a checkpoint
    /// (`flush_store`, which files and marks those records, then flushes
    /// sled) has succeeded, no later batch reports success; and the log
    /// moves to a new segment, failing every batch until one could be
    /// created.
    fn write_forever(
        &self,
        first_segment: u64,
        sealed: mpsc::Sender<PathBuf>,
        flush_store: &(dyn Fn(Flush) -> Result<(), String> + Send + Sync),
    ) {
        // Started by the first batch with records, so a store that never
        // takes an event leaves no file.
        let mut segment: Option<Segment> = None;
        let mut next_number = first_segment;
        let mut store_flush_owed = false;
        let mut free_buffer = Vec::with_capacity(64 * 1024);
        let mut last_sync: Option<Instant> = None;
        loop {
            let seal_at = segment.as_ref().and_then(|s| s.seal_at(self.sealing.age));
            let work = {
                let mut s = self.state.lock().expect("inbox log lock");
                while !s.wanted && !s.stopping {
                    let now = Instant::now();
                    let notes_at = s.notes_since.map(|since| since + NOTES_WITHIN);
                    if seal_at.is_some_and(|at| now >= at) || notes_at.is_some_and(|at| now >= at) {
                        break;
                    }
                    // The first note since the last write wakes the writer
                    // (`append_done_notes`); it is written when due.
                    s = match [seal_at, notes_at].into_iter().flatten().min() {
                        None => self.wake.wait(s).expect("inbox log lock"),
                        Some(at) => {
                            self.wake
                                .wait_timeout(s, at - now)
                                .expect("inbox log lock")
                                .0
                        }
                    };
                }
                if s.stopping && !s.wanted && s.buffer.is_empty() {
                    // Sealed like a full one: the checkpoint thread makes
                    // sled hold it and retires it, so a clean stop leaves
                    // the next start nothing to replay.
                    let abandon = self.abandon_on_stop.load(Ordering::Relaxed);
                    if let Some(last) = segment.take().filter(|_| !abandon) {
                        let _ = sealed.send(last.path);
                    }
                    return;
                }
                // A sync that ended moments ago means records arrive faster
                // than the disk syncs them: let the next few join this batch
                // (each sync costs tens of microseconds of CPU in the kernel,
                // whatever it carries). A quiet log syncs at once.
                let busy = last_sync.is_some_and(|at: Instant| at.elapsed() < BUSY_WITHIN);
                if s.wanted && busy && !s.stopping {
                    drop(s);
                    std::thread::sleep(GATHER_WHEN_BUSY);
                    s = self.state.lock().expect("inbox log lock");
                }
                let notes_due = s
                    .notes_since
                    .is_some_and(|since| since.elapsed() >= NOTES_WITHIN);
                if s.wanted || s.stopping || notes_due {
                    let awaited = std::mem::replace(&mut s.wanted, false);
                    s.notes_since = None;
                    let bytes = std::mem::replace(&mut s.buffer, std::mem::take(&mut free_buffer));
                    Some((bytes, std::mem::replace(&mut s.open, Batch::new()), awaited))
                } else {
                    None // only time to seal the segment
                }
            };
            let mut failed = false;
            if let Some((mut bytes, batch, awaited)) = work {
                let result = if bytes.is_empty() && !store_flush_owed {
                    Ok(())
                } else {
                    let started = Instant::now();
                    let written = self.write_batch(&mut segment, &mut next_number, &mut bytes);
                    // Failed writes too: a disk that stalls and then fails
                    // is the one to see. Only writes someone waits for (not
                    // done notes written on their own).
                    if let (Some(observe), false, true) = (
                        self.observer.read().expect("observer lock").as_ref(),
                        bytes.is_empty(),
                        awaited,
                    ) {
                        observe(started.elapsed());
                    }
                    written.and_then(|()| {
                        if self.fail_writes.load(Ordering::Relaxed) {
                            // As a failed sync: the bytes may or may not be on disk.
                            return Err("injected inbox log failure".to_string());
                        }
                        last_sync = Some(Instant::now());
                        if store_flush_owed {
                            self.flushing(|| flush_store(Flush::Checkpoint))?;
                            store_flush_owed = false;
                        }
                        Ok(())
                    })
                };
                if let Err(e) = &result {
                    failed = true;
                    store_flush_owed = true;
                    tracing::error!(error = %e, "inbox log write failed");
                    // Its done notes may be on disk nowhere: they wait for
                    // the next flush again.
                    let notes = done_notes_in(&bytes);
                    self.takes.lock().expect("takes lock").extend(notes);
                }
                batch.finish(result);
                bytes.clear();
                free_buffer = bytes;
            }
            // After a failure the segment may end in a torn record: later
            // records go to a new one, so a reader never stops short of them.
            let full = segment
                .as_ref()
                .is_some_and(|s| s.len >= self.sealing.bytes);
            let old = seal_at.is_some_and(|at| Instant::now() >= at);
            if failed || full || old {
                if let Some(done) = segment.take() {
                    let _ = sealed.send(done.path);
                }
            }
        }
    }

    /// Write and sync one batch, starting a segment first if there is
    /// none. An empty batch touches no file.
    fn write_batch(
        &self,
        segment: &mut Option<Segment>,
        next_number: &mut u64,
        bytes: &mut [u8],
    ) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        let current = match segment {
            Some(current) => current,
            None => {
                let spare = self.spares.lock().expect("spares lock").pop();
                let started =
                    Segment::start(&self.dir, *next_number, spare.as_deref()).map_err(|e| {
                        // Not renamed: still a spare for the next try.
                        if let Some(spare) = spare.filter(|p| p.exists()) {
                            self.spares.lock().expect("spares lock").push(spare);
                        }
                        format!("cannot start a new inbox log segment: {e}")
                    })?;
                *next_number += 1;
                segment.insert(started)
            }
        };
        fill_checksums(bytes, current.number);
        let format_record = (current.len == 0).then(|| framed(current.number, FORMAT_RECORD));
        current.write_and_sync(format_record.as_deref(), bytes)
    }

    /// A checkpointed segment: kept as a spare if there are few, else
    /// deleted. Neither needs to survive a power cut, which could bring a
    /// segment back under its old name: its replay loses nothing (an event
    /// whose done note is in no segment left is processed again, its runs
    /// replaying from their journal), and the next segment's start syncs
    /// the folder anyway.
    fn retire(&self, path: &Path) {
        let mut spares = self.spares.lock().expect("spares lock");
        let result = match segment_number(path) {
            Some(number) if spares.len() < MAX_SPARES => {
                let spare = spare_path(&self.dir, number);
                std::fs::rename(path, &spare).map(|()| spares.push(spare))
            }
            _ => std::fs::remove_file(path),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, segment = %path.display(), "cannot retire a checkpointed inbox log segment");
        }
    }
}

/// Retire sealed segments once sled holds everything they hold durably.
/// A checkpoint that fails keeps its segments and is tried again with the
/// next one, or after [`CHECKPOINT_RETRY`]: a segment left behind would be
/// replayed on the next start long after its events were processed.
/// Between checkpoints, flush sled every [`TAKES_FLUSHED_WITHIN`] while
/// takes wait for their done notes and nothing else flushed it.
fn checkpoint_forever(
    shared: &Shared,
    sealed: mpsc::Receiver<PathBuf>,
    flush_store: &(dyn Fn(Flush) -> Result<(), String> + Send + Sync),
) {
    let mut waiting: Vec<PathBuf> = Vec::new();
    let mut retry_at: Option<Instant> = None;
    loop {
        let writer_gone = match sealed.recv_timeout(TAKES_FLUSHED_WITHIN) {
            Ok(path) => {
                waiting.push(path);
                retry_at = None; // a new segment: try again now
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        waiting.extend(sealed.try_iter());
        let checkpoint_due =
            !waiting.is_empty() && (writer_gone || retry_at.is_none_or(|at| Instant::now() >= at));
        if checkpoint_due {
            match shared.flushing(|| flush_store(Flush::Checkpoint)) {
                Ok(()) => {
                    for path in waiting.drain(..) {
                        shared.retire(&path);
                    }
                }
                // Stopping: the next start replays what is left.
                Err(e) if writer_gone => {
                    tracing::error!(error = %e, "inbox log checkpoint failed while stopping");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "inbox log checkpoint failed; trying again");
                    retry_at = Some(Instant::now() + CHECKPOINT_RETRY);
                }
            }
        } else if !writer_gone && shared.has_takes() {
            if let Err(e) = shared.flushing(|| flush_store(Flush::Takes)) {
                tracing::warn!(error = %e, "cannot flush the store for the engine's done notes; trying again");
            }
        }
        if writer_gone && waiting.is_empty() {
            return;
        }
    }
}

struct Segment {
    number: u64,
    path: PathBuf,
    file: File,
    len: u64,
    /// When the first record was written.
    first_write: Option<Instant>,
}

impl Segment {
    /// Segment `number`, in `spare` (written over from its start) or in a
    /// new file.
    fn start(dir: &Path, number: u64, spare: Option<&Path>) -> Result<Segment, std::io::Error> {
        let path = segment_path(dir, number);
        let file = match spare {
            Some(spare) => {
                std::fs::rename(spare, &path)?;
                OpenOptions::new().write(true).open(&path)?
            }
            None => OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)?,
        };
        // The name must survive a crash as well as what is written to it.
        File::open(dir)?.sync_all()?;
        Ok(Segment {
            number,
            path,
            file,
            len: 0,
            first_write: None,
        })
    }

    /// When the segment is due to be sealed for its age, if it holds records.
    fn seal_at(&self, age: Duration) -> Option<Instant> {
        self.first_write.map(|first| first + age)
    }

    /// Write `first` (if any) and `bytes`, then sync.
    fn write_and_sync(&mut self, first: Option<&[u8]>, bytes: &[u8]) -> Result<(), String> {
        let first = first.unwrap_or_default();
        self.file
            .write_all(first)
            .and_then(|()| self.file.write_all(bytes))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| e.to_string())?;
        self.len += (first.len() + bytes.len()) as u64;
        self.first_write.get_or_insert_with(Instant::now);
        Ok(())
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(segment_name(number))
}

fn segment_name(number: u64) -> String {
    format!("{number:012}.wal")
}

/// Where segment `number` waits, retired, to be reused.
fn spare_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("spare-{}", segment_name(number)))
}

/// Spare segment files a previous process left in `dir`.
fn spares_in(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with("spare-") {
            continue;
        }
        if found.len() < MAX_SPARES {
            found.push(path);
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(found)
}

/// The number of a segment (`<number>.wal`, or `.log` as earlier versions
/// named them).
fn segment_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let number = name
        .strip_suffix(".wal")
        .or_else(|| name.strip_suffix(".log"))?;
    number.parse().ok()
}

/// The number of the segment a spare last was (`spare-<number>.wal`).
fn spare_number(path: &Path) -> Option<u64> {
    segment_number(Path::new(
        path.file_name()?.to_str()?.strip_prefix("spare-")?,
    ))
}

/// The checksum of a record in segment `number`.
fn checksum(number: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&number.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Append `payload` to `buffer` as one record, its checksum left to
/// [`fill_checksums`] (the segment it goes to is known only when written).
fn push_record(buffer: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buffer.extend_from_slice(&len.to_le_bytes());
    buffer.extend_from_slice(&[0; 4]);
    buffer.extend_from_slice(payload);
}

/// The end of the record whose header starts at `at` in `bytes` (as
/// [`push_record`] laid them out), if a header fits there.
fn record_end(bytes: &[u8], at: usize) -> Option<usize> {
    if at + HEADER_BYTES > bytes.len() {
        return None;
    }
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
    Some((at + HEADER_BYTES + len).min(bytes.len()))
}

/// The sequence numbers of the done notes among the records of `bytes`
/// (as [`push_record`] laid them out).
fn done_notes_in(bytes: &[u8]) -> Vec<u64> {
    let mut notes = Vec::new();
    let mut at = 0;
    while let Some(end) = record_end(bytes, at) {
        notes.extend(done_note(&bytes[at + HEADER_BYTES..end]));
        at = end;
    }
    notes
}

/// `payload` as one record of segment `number`, header and all.
fn framed(number: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    push_record(&mut out, payload);
    fill_checksums(&mut out, number);
    out
}

/// Fill in the checksum of every record in `bytes` (as [`push_record`]
/// laid them out) for segment `number`.
fn fill_checksums(bytes: &mut [u8], number: u64) {
    let mut at = 0;
    while let Some(end) = record_end(bytes, at) {
        let crc = checksum(number, &bytes[at + HEADER_BYTES..end]);
        bytes[at + 4..at + HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

/// The segments a previous process left, oldest first, each with its number.
pub(super) fn segments(data_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let dir = data_dir.join(LOG_DIR);
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let path = entry?.path();
        if let Some(number) = segment_number(&path) {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

/// What one segment holds.
#[derive(Debug, PartialEq)]
pub(super) struct Contents<'b> {
    /// The segment holds done notes (this version wrote it): an event
    /// whose record has no note anywhere in the log was not finished.
    /// Without them (earlier versions), sled's queue tells.
    pub with_done_notes: bool,
    /// Stored events and done notes ([`done_note`]) in order, the format
    /// record left out.
    pub payloads: Vec<&'b [u8]>,
}

/// The complete records of segment `number` (its file at `path`, its
/// contents `bytes`), in order; reading stops at the first record that is
/// cut short or fails its checksum.
pub(super) fn records<'b>(path: &Path, number: u64, bytes: &'b [u8]) -> Contents<'b> {
    let legacy = path.extension().is_some_and(|e| e == "log");
    let mut payloads = read_records(bytes, if legacy { None } else { Some(number) });
    let with_done_notes = payloads.first() == Some(&FORMAT_RECORD);
    if with_done_notes {
        payloads.remove(0);
    }
    Contents {
        with_done_notes,
        payloads,
    }
}

/// Write segment `number` into `data_dir`'s log as an earlier version
/// wrote it: `payloads` as records, no format record, no done notes.
#[cfg(test)]
pub(super) fn write_earlier_version_segment(data_dir: &Path, number: u64, payloads: &[&[u8]]) {
    let dir = data_dir.join(LOG_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    let bytes: Vec<u8> = payloads.iter().flat_map(|p| framed(number, p)).collect();
    std::fs::write(segment_path(&dir, number), bytes).unwrap();
}

/// The sequence number a done note names, if `payload` is one.
pub(super) fn done_note(payload: &[u8]) -> Option<u64> {
    match payload {
        [DONE_NOTE_TAG, seq @ ..] => Some(u64::from_be_bytes(seq.try_into().ok()?)),
        _ => None,
    }
}

/// The records of `bytes`, whose checksums cover `number` then the
/// payload, or the payload alone when `number` is `None` (`.log`).
fn read_records(bytes: &[u8], number: Option<u64>) -> Vec<&[u8]> {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER_BYTES {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let start = at + HEADER_BYTES;
        // No real record is empty: zeros are a tail that was never written.
        if len == 0 || len > MAX_RECORD_BYTES || bytes.len() - start < len as usize {
            break;
        }
        let payload = &bytes[start..start + len as usize];
        let expected = match number {
            Some(number) => checksum(number, payload),
            None => crc32fast::hash(payload),
        };
        if expected != crc {
            break;
        }
        records.push(payload);
        at = start + len as usize;
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every batch fills its segment, which is then sealed.
    const EVERY_BATCH_SEALS: Sealing = Sealing {
        bytes: 4,
        ..Sealing::DEFAULT
    };

    /// A record as segment `number` holds it.
    fn record(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&checksum(number, payload).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Stop `log` as a crash would: its open segment stays behind.
    fn crash(log: InboxLog) {
        log.abandon_on_stop();
        drop(log);
    }

    /// The records of the one segment in `dir`'s log.
    fn only_segment(dir: &Path) -> Vec<Vec<u8>> {
        let found = segments(dir).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let (number, path) = &found[0];
        let bytes = std::fs::read(path).unwrap();
        let read = records(path, *number, &bytes);
        assert!(read.with_done_notes, "written by this version");
        read.payloads.into_iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn reading_stops_at_a_torn_or_corrupt_tail() {
        let read = |bytes: &[u8]| read_records(bytes, Some(3)).len();
        let mut bytes = record(3, b"first");
        bytes.extend(record(3, b"second"));
        let whole = bytes.clone();
        assert_eq!(
            read_records(&whole, Some(3)),
            vec![&b"first"[..], b"second"]
        );
        // Cut in the middle of the second record's payload.
        assert_eq!(read(&whole[..whole.len() - 2]), 1);
        // Cut inside the second record's header.
        assert_eq!(read(&whole[..record(3, b"first").len() + 3]), 1);
        // A flipped byte in the second payload.
        let mut flipped = whole.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x20;
        assert_eq!(read(&flipped), 1);
        // Zeros after the records (a tail the file system kept but whose
        // data never reached the disk).
        let mut zeros = whole.clone();
        zeros.extend([0u8; 32]);
        assert_eq!(read(&zeros), 2);
        // The same bytes read as another segment's: none is its record.
        assert_eq!(read_records(&whole, Some(4)).len(), 0);
    }

    /// A recycled segment still holds the records of its earlier life
    /// behind the new ones: they are not read as the new segment's.
    #[test]
    fn records_of_a_segment_s_earlier_life_are_not_read() {
        // A new record ending exactly where an old one starts: the old one
        // is whole and well formed, only its number differs.
        let mut recycled = record(9, b"new one");
        recycled.extend(record(2, b"old two"));
        assert_eq!(read_records(&recycled, Some(9)), vec![&b"new one"[..]]);
    }

    /// Segments written before recycling (`.log`) checksum the payload
    /// alone; a replay still reads them.
    #[test]
    fn segments_of_the_earlier_format_are_still_read() {
        let mut bytes = (5u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&crc32fast::hash(b"kept!").to_le_bytes());
        bytes.extend_from_slice(b"kept!");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_DIR).join("000000000004.log");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), vec![(4, path.clone())]);
        let read = records(&path, 4, &bytes);
        assert_eq!(read.payloads, vec![&b"kept!"[..]]);
        assert!(!read.with_done_notes);
        assert!(records(&path.with_extension("wal"), 4, &bytes)
            .payloads
            .is_empty());
    }

    #[tokio::test]
    async fn a_batch_is_durable_once_its_bytes_are_in_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let log = InboxLog::start(dir.path(), Sealing::DEFAULT, |_| Ok(())).unwrap();
        log.append(b"one");
        log.append(b"two");
        log.batch().durable().await.unwrap();
        assert_eq!(
            only_segment(dir.path()),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        // A waiter with nothing appended since is answered at once.
        log.batch().durable().await.unwrap();
    }

    /// A log in `dir` whose checkpoint thread's own flushes for done notes
    /// fail: only the test's `flushing` calls let notes go.
    fn log_releasing_takes_only_when_asked(dir: &Path) -> InboxLog {
        InboxLog::start(dir, Sealing::DEFAULT, |flush| match flush {
            Flush::Takes => Err("not in this test".into()),
            Flush::Checkpoint => Ok(()),
        })
        .unwrap()
    }

    /// A done note goes to the log only after a store flush that started
    /// after the take: before it, the event's effects may be in sled's
    /// memory only, and a note on disk would tell a replay to skip an
    /// event whose runs a crash lost.
    #[tokio::test]
    async fn a_done_note_waits_for_a_store_flush_after_the_take() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_releasing_takes_only_when_asked(dir.path());
        log.append(b"{}");
        log.batch().durable().await.unwrap();
        log.taken(7);
        log.append(b"{\"later\":1}");
        log.batch().durable().await.unwrap();
        assert_eq!(
            only_segment(dir.path()),
            vec![b"{}".to_vec(), b"{\"later\":1}".to_vec()],
            "no note before a flush"
        );
        let failed: Result<(), &str> = log.flushing(|| Err("flush failed"));
        assert!(failed.is_err());
        log.batch().durable().await.unwrap();
        assert_eq!(only_segment(dir.path()).len(), 2, "nor after a failed one");
        // (The checkpoint thread may hold the take for a moment while its
        // own flush fails: then the next flush releases it.)
        let deadline = Instant::now() + Duration::from_secs(10);
        let written = loop {
            log.flushing(|| Ok::<(), ()>(())).unwrap();
            log.batch().durable().await.unwrap();
            let written = only_segment(dir.path());
            if written.len() == 3 || Instant::now() > deadline {
                break written;
            }
        };
        assert_eq!(written.len(), 3);
        assert_eq!(done_note(&written[2]), Some(7));
        assert_eq!(done_note(&written[0]), None, "a record is not a note");
    }

    /// A failed write may have put its done notes nowhere: they wait for
    /// the next flush again, and reach the log after it.
    #[tokio::test]
    async fn done_notes_of_a_failed_write_are_written_after_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_releasing_takes_only_when_asked(dir.path());
        log.taken(9);
        log.flushing(|| Ok::<(), ()>(())).unwrap();
        log.set_fail_writes(true);
        log.append(b"{}");
        assert!(log.batch().durable().await.is_err());
        // The note waits again (the failure's checkpoint may release it at
        // once): without that it would never reach the log.
        log.set_fail_writes(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        let notes = loop {
            log.flushing(|| Ok::<(), ()>(())).unwrap();
            log.batch().durable().await.unwrap();
            // The failed segment was sealed and retired: a note is in a
            // later one, if anywhere.
            let mut notes = Vec::new();
            for (number, path) in segments(dir.path()).unwrap() {
                let bytes = std::fs::read(&path).unwrap();
                let read = records(&path, number, &bytes);
                notes.extend(read.payloads.iter().filter_map(|p| done_note(p)));
            }
            if !notes.is_empty() || Instant::now() > deadline {
                break notes;
            }
        };
        assert_eq!(notes, vec![9]);
    }

    /// Notes nobody waits for are written on their own, soon.
    #[tokio::test]
    async fn done_notes_are_written_without_a_batch_to_ride_with() {
        let dir = tempfile::tempdir().unwrap();
        let log = InboxLog::start(dir.path(), Sealing::DEFAULT, |_| Ok(())).unwrap();
        log.taken(41);
        log.taken(42);
        log.flushing(|| Ok::<(), ()>(())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The writer may have made the segment and not yet written it
            // whole: wait for both notes without judging a partial file.
            let found = segments(dir.path()).unwrap();
            let written = found.first().is_some_and(|(number, path)| {
                let bytes = std::fs::read(path).unwrap_or_default();
                records(path, *number, &bytes).payloads.len() == 2
            });
            if written {
                break;
            }
            assert!(Instant::now() < deadline, "the notes were never written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let notes: Vec<Option<u64>> = only_segment(dir.path())
            .iter()
            .map(|p| done_note(p))
            .collect();
        assert_eq!(notes, vec![Some(41), Some(42)]);
    }

    #[tokio::test]
    async fn a_failed_batch_fails_its_waiters_and_later_records_go_to_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let log = InboxLog::start(dir.path(), Sealing::DEFAULT, |_| Ok(())).unwrap();
        log.set_fail_writes(true);
        log.append(b"lost");
        let failed = log.batch().durable().await;
        assert!(
            matches!(&failed, Err(StoreError::Flush(m)) if m.contains("injected")),
            "{failed:?}"
        );
        log.set_fail_writes(false);
        log.append(b"kept");
        log.batch().durable().await.unwrap();
        crash(log);
        let found = segments(dir.path()).unwrap();
        let (number, path) = found.last().unwrap();
        assert_eq!(*number, 2, "a new segment after the failure");
        let last = std::fs::read(path).unwrap();
        assert_eq!(records(path, *number, &last).payloads, vec![&b"kept"[..]]);
    }

    #[tokio::test]
    async fn sealed_segments_are_retired_after_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = checkpoints.clone();
        let log = InboxLog::start(dir.path(), EVERY_BATCH_SEALS, move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        for payload in [&b"first"[..], b"second", b"third"] {
            log.append(payload);
            log.batch().durable().await.unwrap();
        }
        drop(log); // joins the checkpoint thread
        assert!(checkpoints.load(Ordering::SeqCst) >= 1);
        let left = segments(dir.path()).unwrap();
        assert!(
            left.is_empty(),
            "every sealed segment is gone (the next starts with the next batch): {left:?}"
        );
        let spares = spares_in(&dir.path().join(LOG_DIR)).unwrap();
        assert!(
            (1..=MAX_SPARES).contains(&spares.len()),
            "checkpointed segments are kept as spares, a few at most: {spares:?}"
        );
    }

    /// A checkpointed segment becomes a spare, and the next segment is
    /// written into that file: only its own records are read back.
    #[tokio::test]
    async fn the_next_segment_reuses_a_checkpointed_one() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let checkpoint_ok = Arc::new(AtomicBool::new(true));
        let log = {
            let ok = checkpoint_ok.clone();
            InboxLog::start(dir.path(), EVERY_BATCH_SEALS, move |_| {
                match ok.load(Ordering::SeqCst) {
                    true => Ok(()),
                    false => Err("kept for the test".into()),
                }
            })
            .unwrap()
        };
        // Two records in one batch; the next life writes one of the same
        // length, so the old second record starts right where it ends.
        log.append(b"old first");
        log.append(b"old other");
        log.batch().durable().await.unwrap();
        let spare = {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(spare) = log.shared.spares.lock().unwrap().first().cloned() {
                    break spare;
                }
                assert!(Instant::now() < deadline, "no spare after the checkpoint");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        assert!(segments(dir.path()).unwrap().is_empty());
        let spare_inode = std::fs::metadata(&spare).unwrap().ino();
        checkpoint_ok.store(false, Ordering::SeqCst);
        log.append(b"new first");
        log.batch().durable().await.unwrap();
        drop(log);
        let (number, path) = segments(dir.path()).unwrap().remove(0);
        assert_eq!(number, 2);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.ino(), spare_inode, "segment 2 is the spare file");
        assert_eq!(
            meta.len() as usize,
            (8 + FORMAT_RECORD.len()) + 2 * (8 + 9),
            "the earlier second record is still behind"
        );
        assert_eq!(only_segment(dir.path()), vec![b"new first".to_vec()]);
    }

    /// A restart with no segment left but spares from the last process
    /// numbers its segments above every spare: a reused number would let
    /// a spare's old records pass as the new segment's.
    #[tokio::test]
    async fn after_a_restart_new_segments_are_numbered_above_the_spares() {
        let dir = tempfile::tempdir().unwrap();
        let log = InboxLog::start(dir.path(), EVERY_BATCH_SEALS, |_| Ok(())).unwrap();
        for payload in [&b"first"[..], b"second", b"third"] {
            log.append(payload);
            log.batch().durable().await.unwrap();
        }
        drop(log);
        assert!(segments(dir.path()).unwrap().is_empty());
        let spares = spares_in(&dir.path().join(LOG_DIR)).unwrap();
        // Which segments became spares depends on how far the checkpoints
        // got before the next segment started (a segment retired while two
        // spares wait is deleted): 3 when they kept up, 2 when none had
        // run before the third segment.
        let highest = spares.iter().filter_map(|p| spare_number(p)).max().unwrap();
        assert!((2..=3).contains(&highest), "{spares:?}");

        let log = InboxLog::start(dir.path(), Sealing::DEFAULT, |_| Ok(())).unwrap();
        log.append(b"after the restart");
        log.batch().durable().await.unwrap();
        crash(log);
        let found = segments(dir.path()).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, highest + 1, "numbered above the spares");
        assert_eq!(
            only_segment(dir.path()),
            vec![b"after the restart".to_vec()]
        );
    }

    /// A clean stop seals the open segment and checkpoints it like a full
    /// one: the next start has nothing to replay (a replay of a full
    /// segment was an eighth of a start after a busy stretch).
    #[tokio::test]
    async fn a_clean_stop_checkpoints_and_retires_the_open_segment() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = checkpoints.clone();
        let log = InboxLog::start(dir.path(), Sealing::DEFAULT, move |flush| {
            if flush == Flush::Checkpoint {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
        .unwrap();
        log.append(b"written before the stop");
        log.batch().durable().await.unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 1);
        assert_eq!(checkpoints.load(Ordering::SeqCst), 0, "not sealed yet");
        drop(log);
        assert_eq!(checkpoints.load(Ordering::SeqCst), 1);
        assert!(segments(dir.path()).unwrap().is_empty());
        assert_eq!(spares_in(&dir.path().join(LOG_DIR)).unwrap().len(), 1);
    }

    /// A failed checkpoint keeps its segment for the next start's
    /// replay: one sealed for its size, and the open one at a clean stop.
    #[tokio::test]
    async fn a_failed_checkpoint_keeps_the_segments() {
        for sealing in [EVERY_BATCH_SEALS, Sealing::DEFAULT] {
            let dir = tempfile::tempdir().unwrap();
            let log = InboxLog::start(dir.path(), sealing, |_| Err("disk gone".into())).unwrap();
            log.append(b"kept for the replay");
            log.batch().durable().await.unwrap();
            drop(log);
            assert_eq!(
                only_segment(dir.path()),
                vec![b"kept for the replay".to_vec()],
                "{sealing:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_quiet_segment_is_sealed_and_checkpointed_after_its_age() {
        let dir = tempfile::tempdir().unwrap();
        let sealing = Sealing {
            bytes: u64::MAX,
            age: Duration::from_millis(50),
        };
        let (checkpointed, seen) = std::sync::mpsc::channel();
        let log = InboxLog::start(dir.path(), sealing, move |_| {
            let _ = checkpointed.send(());
            Ok(())
        })
        .unwrap();
        log.append(b"one record, then nothing");
        log.batch().durable().await.unwrap();
        seen.recv_timeout(Duration::from_secs(10))
            .expect("the segment is sealed and checkpointed with no further writes");
        drop(log);
        assert!(segments(dir.path()).unwrap().is_empty());
    }

    /// A duplicate of a record whose batch failed waits on a later batch:
    /// that batch must not report success while the failed record is on
    /// disk nowhere (regression: it did, with nothing to write).
    #[tokio::test]
    async fn after_a_failed_batch_no_later_batch_succeeds_before_a_store_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store_ok = Arc::new(AtomicBool::new(false));
        let flushes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let log = {
            let (store_ok, flushes) = (store_ok.clone(), flushes.clone());
            InboxLog::start(dir.path(), Sealing::DEFAULT, move |_| {
                flushes.fetch_add(1, Ordering::SeqCst);
                match store_ok.load(Ordering::SeqCst) {
                    true => Ok(()),
                    false => Err("store cannot flush".into()),
                }
            })
            .unwrap()
        };
        log.set_fail_writes(true);
        log.append(b"failed");
        assert!(log.batch().durable().await.is_err());
        log.set_fail_writes(false);
        let later = log.batch().durable().await;
        assert!(
            matches!(&later, Err(StoreError::Flush(m)) if m.contains("store cannot flush")),
            "{later:?}"
        );
        store_ok.store(true, Ordering::SeqCst);
        log.batch().durable().await.unwrap();
        assert!(flushes.load(Ordering::SeqCst) >= 2);
        log.append(b"next");
        log.batch().durable().await.unwrap();
    }
}
