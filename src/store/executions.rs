//! Execution records: one per workflow run, with every step's rendered
//! input, output, error, attempts and duration. The record doubles as the
//! run journal: it is rewritten at the points `engine/run.rs` names (around
//! outbound steps, at pauses, at the end), so a run interrupted by a crash
//! resumes after its last recorded step.
//!
//! The run id is derived from (event id, workflow name): the same event
//! offered to the same workflow again (after a crash, before the queue
//! entry was removed) finds its run instead of starting a second one, and
//! the idempotency keys of its requests stay the same.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `run_records` | start sequence, u64 big-endian | [`Execution`] in its binary layout (`run_record.rs`), packed (`packing.rs`) once finished or waiting; JSON in earlier versions — in start order, for listing newest first and pruning oldest first |
//! | `run_ids` | run id | its start sequence, u64 big-endian: where its record is |
//! | `active_runs` | run id | empty — runs in status `running` that start-up resumes, but for runs in their first drive (found by their queued event instead, see [`Store::running_executions`]) |
//!
//! Why records are keyed by start sequence and not by run id: a run id is
//! a hash, so records keyed by it land all over the tree, and every
//! journal write under load touched a leaf sled had long evicted from its
//! cache and read back from disk (the load bench's follow-up case: ≈2.6
//! `pread`s per follow-up, down to ≈0.06 with records in start order,
//! which keeps the leaves written to at the tree's end). The id's entry
//! is written once per run, and its value is 8 bytes.
//!
//! Earlier versions kept records in `executions` (run id → record) and
//! their start order in `runs_by_seq` (sequence → run id); the store
//! moves them at open (`move_earlier_run_records`).
//!
//! A running record of a run in its first drive holds, in place of its
//! event, where the inbox queues that event ([`JournalEvent`] says why and
//! what keeps it there); every read here looks it up, so readers see the
//! whole event as ever.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compact::Writer;
use super::run_record::QueuedEvent;
use super::{run_record, EventJson, Store, StoreError};
use crate::event::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Waiting,
    Succeeded,
    Failed,
    Debounced,
    Stopped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Debounced => "debounced",
            RunStatus::Stopped => "stopped",
        }
    }

    pub const ALL: [RunStatus; 6] = [
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Debounced,
        RunStatus::Stopped,
    ];

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, RunStatus::Running | RunStatus::Waiting)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Succeeded,
    Failed,
    Skipped,
}

/// One outbound attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Position in the workflow, e.g. `3.then.0`.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub kind: String,
    pub status: StepStatus,
    pub input: Value,
    pub output: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    pub started_at: Timestamp,
    pub duration_ms: f64,
}

/// A run paused in a `wait` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// The `wait` step's path.
    pub path: String,
    /// The `wait` step's `id`, if it has one.
    #[serde(default)]
    pub id: Option<String>,
    /// When it resumes at the latest.
    pub until: Timestamp,
    /// Event kinds that resume it early, for the same caller.
    #[serde(default)]
    pub kinds: Vec<String>,
    pub caller: Option<String>,
    /// For a pause between outbound attempts: the attempts made so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_attempts: Option<Vec<Attempt>>,
    /// The `wait` step's rendered input, for its record when it resumes.
    #[serde(default)]
    pub input: Value,
    pub started_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: String,
    /// Start order (the `run_records` key).
    #[serde(default)]
    pub seq: u64,
    pub workflow: String,
    pub workflow_version: String,
    pub file: String,
    pub status: RunStatus,
    /// Shared with the engine's other runs of the event (serialised as the
    /// event itself).
    pub event: std::sync::Arc<Event>,
    pub started_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Injected through the test endpoint rather than a provider.
    #[serde(default)]
    pub test: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// An outbound step that resumes after a durable retry pause, with the
    /// attempts it already made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrying: Option<Retrying>,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrying {
    pub path: String,
    pub attempts: Vec<Attempt>,
}

/// Filters for [`Store::list_executions`].
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
}

/// The id of the run of `workflow` for `event_id`.
pub fn run_id(event_id: &str, workflow: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(event_id.as_bytes());
    h.update([0]);
    h.update(workflow.as_bytes());
    format!("run_{}", hex::encode(&h.finalize()[..10]))
}

/// An execution record as stored: its binary layout (`run_record.rs`),
/// packed (see `packing.rs`: a record repeats its event, payload and all,
/// and every step's rendered input and output, so these are the store's
/// largest values; packing JSON records cut the follow-up case's disk
/// writes from ≈55 to ≈38 KiB per run, and packing against a dictionary
/// to ≈32) once the run is finished or waiting. A running run's record is
/// replaced within milliseconds (its journal before a send, then its
/// end), so it is kept unpacked but for its event, packed once
/// ([`JournalEvent`]): compressing all of it was a tenth of a follow-up's
/// instructions. Records of earlier versions are JSON, packed
/// or not, and are read as such.
fn encode(e: &Execution) -> Result<Vec<u8>, StoreError> {
    Ok(JournalEncoder::default().encode(e)?.0)
}

/// Turns one run's record into its stored form at each journal write,
/// encoding the event and each step only once: a run writes its record
/// up to three times (before a contact write, before a send, at the end),
/// and encoding the whole record each time was the largest part of a
/// follow-up's journal cost (the event with its provider payload is about
/// a third of a finished record, and every write repeats the earlier
/// steps). The bytes are the record's binary layout, the same as
/// `run_record::write_head` and `write_step` give for the whole record at
/// once.
///
/// It relies on a run's steps only ever being appended (`RunState::record`
/// is the only writer); a record with fewer steps than it has seen, or
/// another event, starts it afresh.
///
/// It also knows whether the run id's entry (`run_ids`) is written: a
/// run's later writes skip it (one sled write fewer each). A new encoder
/// (a run resumed with recorded steps included) writes it again, which
/// changes nothing. The same holds for the run's entry in `active_runs`:
/// written by the first save of a running run, not again by the saves
/// after it while it runs.
#[derive(Default)]
pub struct JournalEncoder {
    /// The event as the record holds it, and which event it is.
    event: Option<(std::sync::Arc<Event>, EventBytes)>,
    /// `steps[..encoded_steps]` in the binary layout, one after another.
    steps: Writer,
    encoded_steps: usize,
    /// A save through this encoder succeeded, the run id's entry included.
    saved: bool,
    /// A save through this encoder put the run in `active_runs`, and none
    /// took it out since: a later save of the still running run skips that
    /// write (nothing else takes a running run out of the set).
    marked_active: bool,
    /// The last save through this encoder wrote where the inbox queues
    /// the event, not the event (counted in [`JournalEvent`]).
    queued_on_disk: bool,
}

/// An accepted event's bytes for the journals of the runs it starts: its
/// JSON as the inbox wrote it when it accepted the event, packed
/// (`packing.rs`) at the first journal write of any of those runs and
/// then copied into every record they write.
///
/// Why packed, and once: the event with its provider payload is over half
/// of a running record (1,016 of 1,877 bytes for the unit tests' Meta
/// follow-up, 359 packed), and a follow-up writes its running record twice
/// before the packed final one. sled writes each of those writes out
/// again in every rewrite of the leaf that holds it, and reads all of it
/// back at the next start, so their size sets most of the store's disk
/// writes and growth per follow-up and the start-up after a busy stretch
/// (the load bench's follow-up case: disk writes per follow-up −13 to
/// −17%, the file's growth −18%). Packing the event once costs a little
/// more than the final record's packing saves by no longer searching the
/// event's JSON: ≈+5.5 k instructions per follow-up in all (+1.0%).
///
/// # Running records hold where the event is queued
///
/// Since the thirty-first round a running record written through a
/// run's first drive does not hold the event at all, only where the inbox
/// queues it ([`QueuedEvent`]: the acceptance's sequence number and the
/// event's id, ≈30 bytes in place of ≈360 packed). The event stays queued
/// until every run it started has finished or paused
/// (`Engine::process_and_take` takes it after `Engine::process`), and
/// those records, finished or waiting, hold the event whole; so while a
/// record holds the reference, the inbox holds the event, in memory or in
/// sled's `pending` queue, or in the inbox log after a crash (which queues
/// it again at open). Reads look it up ([`Store::queued_event`]).
///
/// Two things keep that true where a run ends otherwise:
///
/// - a run that panicked, or whose last save failed, leaves a record
///   with the reference: the encoders count those records here, and
///   `Engine::process` writes the event into them
///   ([`Store::keep_event_in_record`]) before the event is taken, as a
///   crash would have left them before (resumed at the next start);
/// - at start-up, the interrupted runs' records get their event written
///   in before they are resumed, and before the dispatcher can take the
///   event ([`Store::running_executions`]): a resumed run may outlive its
///   event's next processing.
///
/// Why: the two running records of a follow-up were ≈0.55 and ≈1.2 KB,
/// the packed event ≈360 bytes of each; see benches/README.md's
/// thirty-first round for what it changed.
#[derive(Debug)]
pub struct JournalEvent {
    json: EventJson,
    packed: std::sync::OnceLock<Vec<u8>>,
    /// [`QueuedEvent::bytes`] of the event's acceptance.
    queued: Vec<u8>,
    /// Records on disk that hold `queued` rather than the event.
    queued_on_disk: std::sync::atomic::AtomicUsize,
    /// A run of the event could not read its journal, which may name the
    /// event: the event must not be taken yet.
    keep_queued: std::sync::atomic::AtomicBool,
}

impl JournalEvent {
    /// The bytes for the journals of `json`'s event, shared by its runs:
    /// acceptance `seq` of event `id`, queued in the inbox until every
    /// run it starts has finished or paused (see the type's docs).
    pub(crate) fn queued(json: EventJson, seq: u64, id: &str) -> std::sync::Arc<JournalEvent> {
        std::sync::Arc::new(JournalEvent {
            json,
            packed: std::sync::OnceLock::new(),
            queued: QueuedEvent::bytes(seq, id),
            queued_on_disk: std::sync::atomic::AtomicUsize::new(0),
            keep_queued: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Keep the event queued after its processing (a run could not read
    /// its journal).
    pub fn keep_queued(&self) {
        self.keep_queued
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether [`JournalEvent::keep_queued`] was called.
    pub fn must_stay_queued(&self) -> bool {
        self.keep_queued.load(std::sync::atomic::Ordering::Acquire)
    }

    fn packed(&self) -> &[u8] {
        self.packed
            .get_or_init(|| super::packing::pack(self.json.as_bytes()))
    }

    /// How many runs' records hold where the event is queued rather than
    /// the event: after its runs are done, those that panicked or whose
    /// last save failed.
    pub fn records_without_it(&self) -> usize {
        self.queued_on_disk
            .load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A run's event as its records hold it: the accepted event's shared
/// bytes, or this encoder's own packing of another copy of it.
enum EventBytes {
    Shared(std::sync::Arc<JournalEvent>),
    Packed(Vec<u8>),
}

impl EventBytes {
    fn packed(&self) -> &[u8] {
        match self {
            EventBytes::Shared(event) => event.packed(),
            EventBytes::Packed(bytes) => bytes,
        }
    }
}

impl JournalEncoder {
    /// An encoder that writes `json` as the event while the record's event
    /// is this very `event` (the same `Arc`; a record of any other copy
    /// gets its own serialisation, as ever): the bytes the inbox wrote for
    /// this event when it accepted it, which are what serialising it here
    /// would give (the engine does not change an event it is handed).
    /// Serialising the event, its provider
    /// payload included, was ≈31 k of a follow-up's ≈470 k engine
    /// instructions (callgrind).
    pub(crate) fn for_stored_event(
        event: &std::sync::Arc<Event>,
        bytes: std::sync::Arc<JournalEvent>,
    ) -> JournalEncoder {
        // Checked wherever debug assertions are on (every test run).
        debug_assert_eq!(
            bytes.json.as_bytes(),
            serde_json::to_vec(&**event).expect("events serialise"),
            "the stored JSON is not this event's"
        );
        JournalEncoder {
            event: Some((std::sync::Arc::clone(event), EventBytes::Shared(bytes))),
            ..JournalEncoder::default()
        }
    }

    /// Whether a record was saved through this encoder.
    pub fn saved(&self) -> bool {
        self.saved
    }

    /// The record as stored, and whether it holds where the event is
    /// queued rather than the event.
    fn encode(&mut self, e: &Execution) -> Result<(Vec<u8>, bool), StoreError> {
        let (record, event, queued) = self
            .record(e)
            .map_err(|err| StoreError::Corrupt(err.to_string()))?;
        Ok(match e.status {
            RunStatus::Running => (record, queued),
            _ => (super::packing::pack_around(&record, event), queued),
        })
    }

    /// Whether `e` is a run in its first drive for the accepted event
    /// this encoder has the shared bytes of: its records name the queued
    /// event while it runs, and it has no entry in `active_runs` (nothing
    /// else gives it one while it runs but [`Store::keep_event_in_record`]).
    fn first_drive_of(&self, e: &Execution) -> bool {
        matches!(&self.event, Some((seen, EventBytes::Shared(_))) if std::sync::Arc::ptr_eq(seen, &e.event))
    }

    /// A save of what [`JournalEncoder::encode`] gave succeeded.
    fn saved_record(&mut self, queued: bool) {
        self.saved = true;
        if queued == self.queued_on_disk {
            return;
        }
        self.queued_on_disk = queued;
        if let Some((_, EventBytes::Shared(event))) = &self.event {
            use std::sync::atomic::Ordering;
            match queued {
                true => event.queued_on_disk.fetch_add(1, Ordering::AcqRel),
                false => event.queued_on_disk.fetch_sub(1, Ordering::AcqRel),
            };
        }
    }

    /// The record's binary layout, unpacked, where its event's bytes are
    /// in it, and whether those are where the event is queued (a running
    /// record of the accepted event's own runs) rather than the event
    /// packed.
    fn record(
        &mut self,
        e: &Execution,
    ) -> Result<(Vec<u8>, std::ops::Range<usize>, bool), serde_json::Error> {
        let (event, queued) = match &self.event {
            Some((seen, bytes)) if std::sync::Arc::ptr_eq(seen, &e.event) => match bytes {
                EventBytes::Shared(shared) if e.status == RunStatus::Running => {
                    (shared.queued.as_slice(), true)
                }
                bytes => (bytes.packed(), false),
            },
            _ => {
                let json = serde_json::to_vec(&*e.event)?;
                let packed = EventBytes::Packed(super::packing::pack(&json));
                let bytes = self
                    .event
                    .insert((std::sync::Arc::clone(&e.event), packed))
                    .1
                    .packed();
                (bytes, false)
            }
        };
        if e.steps.len() < self.encoded_steps {
            self.steps.clear();
            self.encoded_steps = 0;
        }
        for step in &e.steps[self.encoded_steps..] {
            run_record::write_step(&mut self.steps, step);
        }
        self.encoded_steps = e.steps.len();
        let steps = self.steps.as_slice();
        let mut out = Writer::marked(run_record::MARK, 256 + event.len() + steps.len());
        let event = run_record::write_head(&mut out, e, event);
        out.raw(steps);
        Ok((out.finish(), event, queued))
    }
}

/// A stored record as an [`Execution`], `queued` giving the event of one
/// that holds where the inbox queues it.
fn decode_with(
    bytes: &[u8],
    queued: impl FnOnce(QueuedEvent) -> Result<Event, String>,
) -> Result<Execution, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("execution record: {e}"));
    let unpacked = super::packing::unpack(bytes).map_err(|e| corrupt(&e))?;
    match unpacked.first() {
        Some(&run_record::MARK) => run_record::read(&unpacked, queued).map_err(|e| corrupt(&e)),
        _ => serde_json::from_slice(&unpacked).map_err(|e| corrupt(&e)),
    }
}

/// Where the inbox queues the event of a stored record that holds that
/// rather than the event; `None` for any other record (one that cannot be
/// read included: reading it says why).
fn queued_event_of(bytes: &[u8]) -> Option<QueuedEvent> {
    // Only a running record names its event, and one is never packed:
    // any other is left without decoding it.
    run_record::running_id(bytes)?;
    let mut found = None;
    // Stops at the event: the lookup's error ends the read.
    let _ = decode_with(bytes, |queued| {
        found = Some(queued);
        Err(String::new())
    });
    found
}

/// A record as [`Store::read_stored`] found it. Returned and matched at
/// once, never kept: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Stored {
    /// The record, and the bytes it was read from.
    Run(sled::IVec, Execution),
    /// Removed meanwhile.
    Gone,
    /// It names an event no longer queued (why, as an error).
    EventNoLongerQueued(StoreError),
}

/// A run's start sequence number as a key: big-endian, so keys sort in
/// start order.
fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The sequence number a [`seq_key`] holds; `None` for any other key.
fn key_seq(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

impl Store {
    /// A fresh start sequence number for a new run.
    pub fn next_run_seq(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    /// Insert or replace an execution record (the run journal), keeping the
    /// run id's entry and the set of running runs up to date.
    pub fn save_execution(&self, e: &Execution) -> Result<(), StoreError> {
        self.save_journal(e, &mut JournalEncoder::default())
    }

    /// [`Store::save_execution`] for a run's journal writes, with the
    /// run's encoder: the run id's entry only at its first save, and the
    /// run's entry in `active_runs` only at the first save that finds it
    /// running (a save of any other status removes it). A run in its
    /// first drive for an accepted event (its records name the queued
    /// event while it runs) gets no entry at all: start-up finds it
    /// through that event ([`Store::running_executions`]), which saves a
    /// write when it starts and another when it ends (≈2.5% of a
    /// follow-up's CPU, `perf`).
    ///
    /// The id's entry is written before the record: sled recovers a prefix
    /// of its writes, so a record that survives a crash can be found by its
    /// id (an entry whose record was lost reads as no run, and the run's
    /// next first save points it at its new record).
    pub fn save_journal(
        &self,
        e: &Execution,
        encoder: &mut JournalEncoder,
    ) -> Result<(), StoreError> {
        let (record, queued) = encoder.encode(e)?;
        if !encoder.saved {
            self.run_ids.insert(e.id.as_bytes(), &seq_key(e.seq))?;
        }
        self.run_records.insert(seq_key(e.seq), record)?;
        if !encoder.first_drive_of(e) {
            let running = e.status == RunStatus::Running;
            if !(running && encoder.marked_active) {
                self.mark_active(e)?;
            }
            encoder.marked_active = running;
        }
        encoder.saved_record(queued);
        Ok(())
    }

    fn mark_active(&self, e: &Execution) -> Result<(), StoreError> {
        if e.status == RunStatus::Running {
            self.active_runs.insert(e.id.as_bytes(), &[] as &[u8])?;
        } else {
            self.active_runs.remove(e.id.as_bytes())?;
        }
        Ok(())
    }

    /// The key of run `id`'s record, if it has one.
    fn run_key(&self, id: &str) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.run_ids.get(id.as_bytes())?)
    }

    pub fn execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let Some(key) = self.run_key(id)? else {
            return Ok(None);
        };
        match self.run_records.get(&key)? {
            None => Ok(None),
            Some(bytes) => Ok(self.read_record(&key, bytes)?.map(|(_, e)| e)),
        }
    }

    /// The record `bytes`, read from `run_records` at `key`, as an
    /// [`Execution`], with the bytes it was read from: those, or the
    /// record's newer bytes when the event `bytes` names as queued was
    /// taken meanwhile (the run finished and its record was replaced
    /// between the read and the lookup). `None` when the record is gone;
    /// an error for a record that still names an event no longer queued
    /// (see [`Store::read_walked_record`]).
    fn read_record(
        &self,
        key: &[u8],
        bytes: sled::IVec,
    ) -> Result<Option<(sled::IVec, Execution)>, StoreError> {
        match self.read_stored(key, bytes)? {
            Stored::Run(bytes, e) => Ok(Some((bytes, e))),
            Stored::Gone => Ok(None),
            Stored::EventNoLongerQueued(e) => Err(e),
        }
    }

    /// [`Store::read_record`], telling a record that names an event no
    /// longer queued from one that cannot be read at all.
    fn read_stored(&self, key: &[u8], bytes: sled::IVec) -> Result<Stored, StoreError> {
        let mut bytes = bytes;
        loop {
            let mut gone = None;
            let read = decode_with(&bytes, |queued| {
                match self.queued_event(queued.seq, &queued.id) {
                    Ok(Some(event)) => Ok(event),
                    Ok(None) => {
                        let message = format!(
                            "its event {} (acceptance {}) is no longer queued",
                            queued.id, queued.seq
                        );
                        gone = Some(());
                        Err(message)
                    }
                    Err(e) => Err(e.to_string()),
                }
            });
            match (read, gone) {
                (Ok(e), _) => return Ok(Stored::Run(bytes, e)),
                (Err(e), None) => return Err(e),
                (Err(e), Some(())) => match self.run_records.get(key)? {
                    None => return Ok(Stored::Gone),
                    Some(now) if now != bytes => bytes = now,
                    Some(_) => return Ok(Stored::EventNoLongerQueued(e)),
                },
            }
        }
    }

    /// [`Store::read_record`] for a walk over many records (listing,
    /// pruning): a record that names an event no longer queued (which
    /// nothing should leave: see [`JournalEvent`]) is reported and passed
    /// over rather than failing every page and every pruning pass that
    /// reaches it. Reading it by its id still says what is wrong.
    fn read_walked_record(
        &self,
        key: &[u8],
        bytes: sled::IVec,
    ) -> Result<Option<Execution>, StoreError> {
        match self.read_stored(key, bytes)? {
            Stored::Run(_, e) => Ok(Some(e)),
            Stored::Gone => Ok(None),
            Stored::EventNoLongerQueued(e) => {
                tracing::error!(error = %e, "an execution record names an event no longer queued; passed over");
                Ok(None)
            }
        }
    }

    /// Write the event into run `id`'s record if the record holds where
    /// the inbox queues it instead ([`JournalEvent`]) — acceptance
    /// `acceptance` of it, when given: another acceptance's run of the
    /// same id is left to its own drive — while the event is still
    /// queued, and give the run its entry in `active_runs`: for a record
    /// its run's task will not replace (the task panicked, its save
    /// failed, or the process stopped), before the event may be taken.
    pub fn keep_event_in_record(
        &self,
        id: &str,
        acceptance: Option<u64>,
    ) -> Result<(), StoreError> {
        let Some(key) = self.run_key(id)? else {
            return Ok(());
        };
        loop {
            let Some(old) = self.run_records.get(&key)? else {
                return Ok(());
            };
            match queued_event_of(&old) {
                Some(queued) if acceptance.is_none_or(|seq| seq == queued.seq) => {}
                _ => return Ok(()),
            }
            let Some((old, e)) = self.read_record(&key, old)? else {
                return Ok(());
            };
            let new = encode(&e)?;
            if self
                .run_records
                .compare_and_swap(&key, Some(old), Some(new))?
                .is_ok()
            {
                // Found at the next start by this entry, no longer by its
                // event, which may leave the queue now.
                return self.mark_active(&e);
            }
        }
    }

    /// Change an execution atomically: `change` returns false to leave it
    /// as it is. Returns the changed record, or `None` when absent or left.
    /// Used to claim a waiting run exactly once.
    pub fn update_execution(
        &self,
        id: &str,
        change: impl Fn(&mut Execution) -> bool,
    ) -> Result<Option<Execution>, StoreError> {
        let Some(key) = self.run_key(id)? else {
            return Ok(None);
        };
        loop {
            let Some(old) = self.run_records.get(&key)? else {
                return Ok(None);
            };
            let Some((old, mut e)) = self.read_record(&key, old)? else {
                return Ok(None);
            };
            if !change(&mut e) {
                return Ok(None);
            }
            let new = encode(&e)?;
            if self
                .run_records
                .compare_and_swap(&key, Some(old), Some(new))?
                .is_ok()
            {
                self.mark_active(&e)?;
                return Ok(Some(e));
            }
        }
    }

    /// Runs that were `running` when the process stopped: those in
    /// `active_runs`, and runs in their first drive for an event still
    /// queued, which have no entry there. A run's start sequence comes
    /// from the same counter as an acceptance's, after its event's, so
    /// those are among the records from the oldest queued event's
    /// sequence on, and their running records are the unpacked ones
    /// ([`run_record::running_id`] reads no further than the status).
    /// Only records still running are returned (an entry in
    /// `active_runs` can outlive its run's end by a crash).
    ///
    /// A record that held where the inbox queues its event gets the event
    /// written in, and its entry in `active_runs`, before it is returned
    /// ([`JournalEvent`] says why); a record that cannot be read is
    /// reported and left out, not resumed.
    pub fn running_executions(&self) -> Result<Vec<Execution>, StoreError> {
        let mut ids = std::collections::BTreeSet::new();
        for item in self.active_runs.iter() {
            let (id, _) = item?;
            ids.insert(String::from_utf8_lossy(&id).into_owned());
        }
        // A failure here leaves the runs listed above to resume.
        if let Err(e) = self.first_drives_of_queued_events(&mut ids) {
            tracing::error!(error = %e, "cannot look for interrupted runs of queued events");
        }
        let mut out = Vec::new();
        for id in ids {
            let read = self
                .keep_event_in_record(&id, None)
                .and_then(|()| self.execution(&id));
            match read {
                Ok(Some(e)) if e.status == RunStatus::Running => out.push(e),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(run_id = %id, error = %e, "cannot resume an interrupted run");
                }
            }
        }
        Ok(out)
    }

    /// Add to `ids` the runs in their first drive for events still
    /// queued ([`Store::running_executions`]). For start-up, before the
    /// engine runs: the scan starts at the oldest queued acceptance, which
    /// the inbox only knows for certain while nothing is filing or taking.
    /// How many records it reads depends on that acceptance's age: a
    /// moment before a crash under load, more after a backlog built up.
    fn first_drives_of_queued_events(
        &self,
        ids: &mut std::collections::BTreeSet<String>,
    ) -> Result<(), StoreError> {
        let Some(oldest) = self.oldest_queued_seq()? else {
            return Ok(());
        };
        for item in self.run_records.range(seq_key(oldest)..) {
            let (_, bytes) = item?;
            if let Some(id) = run_record::running_id(&bytes) {
                ids.insert(id);
            }
        }
        Ok(())
    }

    /// Newest first, after `cursor` (a run id), filtered.
    pub fn list_executions(
        &self,
        filter: &ExecutionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Execution>, Option<String>), StoreError> {
        let end = match cursor {
            Some(id) => match self.run_key(id)? {
                Some(key) => key,
                None => return Ok((Vec::new(), None)),
            },
            None => sled::IVec::from(&seq_key(u64::MAX)),
        };
        let mut out = Vec::new();
        let mut next = None;
        for item in self.run_records.range(..end).rev() {
            let (key, bytes) = item?;
            let Some(e) = self.read_walked_record(&key, bytes)? else {
                continue;
            };
            if filter.workflow.as_ref().is_some_and(|w| *w != e.workflow) {
                continue;
            }
            if filter.status.is_some_and(|s| s != e.status) {
                continue;
            }
            if out.len() == limit {
                next = out.last().map(|l: &Execution| l.id.clone());
                break;
            }
            out.push(e);
        }
        Ok((out, next))
    }

    pub fn execution_count(&self) -> usize {
        self.run_records.len()
    }

    /// Drop finished executions older than `max_age`, then the oldest
    /// finished ones beyond `max_count`. Returns how many were removed.
    pub fn prune_executions(
        &self,
        now: Timestamp,
        max_age: Duration,
        max_count: usize,
    ) -> Result<usize, StoreError> {
        let cutoff = now.as_millisecond() - i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let mut excess = self.run_records.len().saturating_sub(max_count);
        let mut removed = 0;
        for item in self.run_records.iter() {
            let (key, bytes) = item?;
            let Some(e) = self.read_walked_record(&key, bytes)? else {
                continue;
            };
            let old = e.started_at.as_millisecond() < cutoff;
            if !old && excess == 0 {
                break;
            }
            if e.status.is_finished() {
                // The record first: an id entry left by a crash here reads
                // as no run, where a record left without its entry would
                // be listed but not found by its id. The entry goes only
                // while it points at this record.
                self.run_records.remove(&key)?;
                self.run_ids
                    .compare_and_swap(e.id.as_bytes(), Some(&key), None as Option<&[u8]>)?
                    .ok();
                removed += 1;
                excess = excess.saturating_sub(1);
            }
        }
        Ok(removed)
    }

    /// Move the records of earlier versions' layout (`executions` by run
    /// id, `runs_by_seq` for their start order) into `run_records` and
    /// `run_ids`, once, at open. Returns how many records were moved.
    ///
    /// Each record goes under the start sequence it carries, which is its
    /// `runs_by_seq` key wherever that entry is right (an earlier prune
    /// removed the record before its entry, so a crash could leave an
    /// entry naming a run that was later started again under another
    /// sequence; the entries are therefore not read). The first layout of
    /// all keyed records by their sequence and kept none inside them: the
    /// key is the sequence then. A run already in `run_records` (a move
    /// interrupted by a crash) keeps its place and gets this copy; a
    /// sequence another record took gets a new one. Each record is written
    /// (id entry first, as `save_journal` does) before it is removed from
    /// `executions`, so a crash part way through leaves the rest for the
    /// next open. A record that cannot be read is left in `executions`
    /// and reported at every open: nothing reads it there, as nothing read
    /// it before (it could not be decoded). The old trees are dropped once
    /// empty; a store without them (every store this version made) is left
    /// as it is.
    pub(super) fn move_earlier_run_records(&self) -> Result<usize, StoreError> {
        let names = self.db.tree_names();
        let has = |name: &str| names.iter().any(|n| n.as_ref() == name.as_bytes());
        if !has(super::TREE_EXECUTIONS) && !has(super::TREE_RUNS_BY_SEQ) {
            return Ok(0);
        }
        let executions = self.db.open_tree(super::TREE_EXECUTIONS)?;
        let mut moved = 0;
        for item in executions.iter() {
            let (key, bytes) = item?;
            let mut e = match decode_with(&bytes, |_| Err("no event is queued yet".into())) {
                Ok(e) => e,
                Err(err) => {
                    tracing::warn!(
                        key = %String::from_utf8_lossy(&key),
                        error = %err,
                        "an execution record of an earlier version cannot be read; left where it was"
                    );
                    continue;
                }
            };
            let carried = e.seq;
            if e.seq == 0 && key.as_ref() != e.id.as_bytes() {
                if let Some(seq) = key_seq(&key) {
                    e.seq = seq;
                }
            }
            let seq = match self.moved_run_seq(&e.id)? {
                Some(seq) => seq,
                None if !self.run_records.contains_key(seq_key(e.seq))? => e.seq,
                None => self.next_run_seq()?,
            };
            e.seq = seq;
            let stored = if seq == carried {
                bytes.to_vec()
            } else {
                encode(&e)?
            };
            self.run_ids.insert(e.id.as_bytes(), &seq_key(seq))?;
            self.run_records.insert(seq_key(seq), stored)?;
            executions.remove(&key)?;
            moved += 1;
        }
        if moved > 0 {
            self.db.flush()?;
        }
        self.db.drop_tree(super::TREE_RUNS_BY_SEQ)?;
        if executions.is_empty() {
            drop(executions);
            self.db.drop_tree(super::TREE_EXECUTIONS)?;
        }
        Ok(moved)
    }

    /// The sequence run `id` already has a record under, if it has one.
    fn moved_run_seq(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let Some(key) = self.run_key(id)? else {
            return Ok(None);
        };
        let Some(stored) = self.run_records.get(&key)? else {
            return Ok(None);
        };
        Ok(match self.read_record(&key, stored) {
            Ok(Some((_, r))) if r.id == id => key_seq(&key),
            _ => None,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    /// A finished run of the shipped missed-call follow-up on a Meta
    /// payload, four steps (other tests' record too).
    pub(in crate::store) fn execution(id: &str) -> Execution {
        let body = include_str!("../../tests/fixtures/meta/terminate_unanswered.json");
        let ctx = crate::event::testing::ctx("meta", crate::event::Provider::Meta);
        let event = crate::event::testing::only(body, &ctx);
        let contact = json!({"phone": event.caller, "name": "Lupita", "tags": ["missed-call-followup"],
                             "fields": {"first_source": "meta", "last_missed_call": event.at}});
        let step = |path: &str, kind: &str, input: Value, output: Value| StepRecord {
            path: path.into(),
            id: None,
            kind: kind.into(),
            status: StepStatus::Succeeded,
            input,
            output,
            error: None,
            attempts: Vec::new(),
            started_at: Timestamp::UNIX_EPOCH,
            duration_ms: 0.2,
        };
        Execution {
            id: id.into(),
            seq: 7,
            workflow: "missed-call-followup".into(),
            workflow_version: "abc123".into(),
            file: "missed-call-followup.yaml".into(),
            status: RunStatus::Succeeded,
            started_at: Timestamp::UNIX_EPOCH,
            finished_at: Some(Timestamp::UNIX_EPOCH),
            error: None,
            test: false,
            waiting: None,
            retrying: None,
            steps: vec![
                step(
                    "steps[0]",
                    "find_contact",
                    json!({"phone": event.caller}),
                    json!({"found": false}),
                ),
                step(
                    "steps[1].else[0]",
                    "create_contact",
                    contact.clone(),
                    contact.clone(),
                ),
                step(
                    "steps[2]",
                    "tag",
                    json!({"add": ["missed-call-followup"]}),
                    contact,
                ),
                step(
                    "steps[4]",
                    "send_message",
                    json!({"to": event.caller, "text": "Hi, sorry we missed your call"}),
                    json!({"status": 200, "message_id": "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI"}),
                ),
            ],
            event: event.into(),
        }
    }

    use super::super::temp_store as store;

    /// Run `id`'s record as stored.
    fn stored(store: &Store, id: &str) -> sled::IVec {
        let key = store.run_key(id).unwrap().expect("the run id's entry");
        store.run_records.get(key).unwrap().expect("the record")
    }

    /// [`execution`], still running: no end, status `running`.
    fn running(id: &str) -> Execution {
        Execution {
            status: RunStatus::Running,
            finished_at: None,
            ..execution(id)
        }
    }

    /// The record is stored compressed (the store's largest values, kept
    /// for the retention period) and reads back whole.
    #[test]
    fn a_saved_record_is_stored_compressed_and_reads_back_whole() {
        let (_dir, store) = store();
        let e = execution("run_a");
        store.save_execution(&e).unwrap();
        let stored = stored(&store, "run_a");
        let json = serde_json::to_vec(&e).unwrap();
        assert_eq!(stored[0], super::super::packing::LZ4_DICT_RECORD);
        assert!(
            stored.len() * 10 < json.len() * 7,
            "{} bytes stored for {} bytes of JSON",
            stored.len(),
            json.len()
        );
        assert_eq!(store.execution("run_a").unwrap(), Some(e));
    }

    /// The inbox's bytes for an event stand for that very event only: a
    /// record of another copy of it (a run resumed from its journal holds
    /// the journal's) gets that copy's own serialisation.
    #[test]
    fn stored_event_bytes_stand_only_for_their_own_event() {
        let (_dir, store) = store();
        let e = execution("run_j");
        let (running, _, shared) = accepted_running(&store, "run_j");
        let handed = running.event;
        let mut encoder = JournalEncoder::for_stored_event(&handed, shared.clone());

        let mine = Execution {
            event: std::sync::Arc::clone(&handed),
            ..e.clone()
        };
        store.save_journal(&mine, &mut encoder).unwrap();
        assert_eq!(store.execution("run_j").unwrap(), Some(mine.clone()));
        // Another workflow's run of the same event, through the same
        // shared bytes (packed by the first run's write).
        let other_workflow = Execution {
            id: "run_j2".into(),
            seq: 8,
            workflow: "vip-alert".into(),
            ..mine
        };
        let mut second = JournalEncoder::for_stored_event(&handed, shared);
        store.save_journal(&other_workflow, &mut second).unwrap();
        assert_eq!(store.execution("run_j2").unwrap(), Some(other_workflow));

        let mut copy = (*handed).clone();
        copy.name = Some("Another copy".into());
        let theirs = Execution {
            event: std::sync::Arc::new(copy),
            ..e
        };
        store.save_journal(&theirs, &mut encoder).unwrap();
        assert_eq!(store.execution("run_j").unwrap(), Some(theirs));
    }

    /// `execution(id)`'s event accepted by `store` (kept in the inbox
    /// until taken), the record running and holding that very event, and
    /// the event's shared bytes as `Engine::process` makes them.
    fn accepted_running(store: &Store, id: &str) -> (Execution, u64, Arc<JournalEvent>) {
        accepted_running_as(store, id, None)
    }

    /// [`accepted_running`] with the event's id `event_id` (another
    /// event), the run's start sequence after its acceptance's as ever.
    fn accepted_running_as(
        store: &Store,
        id: &str,
        event_id: Option<&str>,
    ) -> (Execution, u64, Arc<JournalEvent>) {
        let e = running(id);
        let mut event = (*e.event).clone();
        if let Some(event_id) = event_id {
            event.id = event_id.into();
        }
        let accepted = store
            .accept_events(vec![event], Timestamp::UNIX_EPOCH, Duration::from_secs(60))
            .unwrap()
            .remove(0)
            .into_accepted()
            .unwrap();
        let seq = accepted.seq;
        let event = Arc::new(accepted.event);
        let json = accepted.event_json.expect("the accepted event's JSON");
        let shared = JournalEvent::queued(json, seq, &event.id);
        let run_seq = store.next_run_seq().unwrap();
        let e = Execution {
            event,
            seq: run_seq,
            ..e
        };
        (e, seq, shared)
    }

    use std::sync::Arc;

    /// The first journal write of `e`, an accepted event's run in its
    /// first drive, through the encoder its later writes go through.
    fn first_save(store: &Store, e: &Execution, shared: Arc<JournalEvent>) -> JournalEncoder {
        let mut encoder = JournalEncoder::for_stored_event(&e.event, shared);
        store.save_journal(e, &mut encoder).unwrap();
        encoder
    }

    /// A running record of an accepted event's own run holds where the
    /// inbox queues the event, not the event: a few dozen bytes in place
    /// of the packed event. Every read gives the whole event, and the
    /// record that ends the run holds it again, so it reads the same once
    /// the event has left the queue.
    #[test]
    fn a_running_record_names_its_queued_event_and_the_finished_one_holds_it() {
        let (_dir, store) = store();
        let (e, seq, shared) = accepted_running(&store, "run_q");
        let mut encoder = first_save(&store, &e, Arc::clone(&shared));

        let bytes = stored(&store, "run_q");
        let named = queued_event_of(&bytes).expect("it names the queued event");
        assert_eq!((named.seq, named.id.as_str()), (seq, e.event.id.as_str()));
        let whole = encode(&e).unwrap();
        let packed_event = super::super::packing::pack(&serde_json::to_vec(&*e.event).unwrap());
        assert!(
            bytes.len() + packed_event.len() - 40 <= whole.len(),
            "{} bytes, {} with the event ({} packed)",
            bytes.len(),
            whole.len(),
            packed_event.len()
        );
        assert_eq!(store.execution("run_q").unwrap(), Some(e.clone()));
        let (listed, _) = store
            .list_executions(&ExecutionFilter::default(), 10, None)
            .unwrap();
        assert_eq!(listed, std::slice::from_ref(&e));
        assert_eq!(shared.records_without_it(), 1);
        assert!(!store.active_runs.contains_key(b"run_q").unwrap());

        let done = Execution {
            status: RunStatus::Succeeded,
            finished_at: Some(Timestamp::UNIX_EPOCH),
            ..e.clone()
        };
        store.save_journal(&done, &mut encoder).unwrap();
        assert_eq!(queued_event_of(&stored(&store, "run_q")), None);
        assert_eq!(shared.records_without_it(), 0);
        store.mark_taken(seq, &e.event.id).unwrap();
        assert_eq!(store.execution("run_q").unwrap(), Some(done));
    }

    /// A reader that got a running record's bytes just before the run
    /// finished and its event was taken reads the record that replaced
    /// them; bytes that still name an event no longer queued are reported
    /// as such.
    #[test]
    fn a_record_read_as_its_event_leaves_the_queue_is_read_again() {
        let (_dir, store) = store();
        let (e, seq, shared) = accepted_running(&store, "run_r2");
        let mut encoder = first_save(&store, &e, shared);
        let key = store.run_key("run_r2").unwrap().unwrap();
        let early = stored(&store, "run_r2");

        let done = Execution {
            status: RunStatus::Succeeded,
            finished_at: Some(Timestamp::UNIX_EPOCH),
            ..e.clone()
        };
        store.save_journal(&done, &mut encoder).unwrap();
        store.mark_taken(seq, &e.event.id).unwrap();
        let (_, read) = store.read_record(&key, early.clone()).unwrap().unwrap();
        assert_eq!(read, done);

        // The same bytes still stored: nothing newer to read.
        store.run_records.insert(&key, early).unwrap();
        let err = store.execution("run_r2").unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "its event {} (acceptance {seq}) is no longer queued",
                e.event.id
            )),
            "{err}"
        );
    }

    /// A crash while a run of an accepted event was running leaves its
    /// record naming the event, and the event in the inbox log: at the
    /// next open the log's replay queues the event again, and start-up
    /// finds the run by it (it has no entry in `active_runs`) and writes
    /// the event back into its record before anything may take it. A run
    /// of an earlier event, finished, is not among the runs to resume.
    #[tokio::test]
    async fn an_interrupted_run_gets_its_event_back_before_it_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let finished_at = Some(Timestamp::UNIX_EPOCH);
        let (e, seq) = {
            let store = Store::open(dir.path(), 8 << 20).unwrap();
            let (earlier, earlier_seq, shared) =
                accepted_running_as(&store, "run_done", Some("evt_earlier"));
            let mut encoder = first_save(&store, &earlier, shared);
            let done = Execution {
                status: RunStatus::Succeeded,
                finished_at,
                ..earlier.clone()
            };
            store.save_journal(&done, &mut encoder).unwrap();
            store.mark_taken(earlier_seq, &earlier.event.id).unwrap();

            let (e, seq, shared) = accepted_running(&store, "run_c");
            // The answer's sync: the event is in the inbox log.
            store.commit_inbox().await.unwrap();
            first_save(&store, &e, shared);
            assert!(queued_event_of(&stored(&store, "run_c")).is_some());
            // Found by its queued event, not listed as active.
            assert!(!store.active_runs.contains_key(b"run_c").unwrap());
            // A run's flush, then the crash (no checkpoint files the
            // event into sled's queue).
            store.commit().await.unwrap();
            assert!(store.pending.is_empty(), "kept in memory and the log");
            super::super::crash(store);
            (e, seq)
        };
        let store = super::super::reopen(dir.path());
        assert!(store.is_pending(seq, &e.event.id).unwrap(), "queued again");
        assert_eq!(
            store.running_executions().unwrap(),
            std::slice::from_ref(&e)
        );
        assert_eq!(queued_event_of(&stored(&store, "run_c")), None);
        // Listed now: a start after the event is taken still finds it.
        store.mark_taken(seq, &e.event.id).unwrap();
        assert_eq!(store.execution("run_c").unwrap(), Some(e.clone()));
        assert_eq!(store.running_executions().unwrap(), [e]);
    }

    /// A record naming an event no longer queued (which nothing should
    /// leave) is passed over by listing and pruning rather than failing
    /// them; read by its id it says what is wrong.
    #[test]
    fn a_record_whose_queued_event_is_gone_does_not_stop_listing_or_pruning() {
        let (_dir, store) = store();
        let (e, seq, shared) = accepted_running(&store, "run_o");
        first_save(&store, &e, shared);
        store.mark_taken(seq, &e.event.id).unwrap();
        let other = Execution {
            seq: store.next_run_seq().unwrap(),
            ..execution("run_fine")
        };
        store.save_execution(&other).unwrap();

        let (listed, _) = store
            .list_executions(&ExecutionFilter::default(), 10, None)
            .unwrap();
        assert_eq!(listed, [other]);
        assert_eq!(
            store
                .prune_executions(Timestamp::UNIX_EPOCH, Duration::from_secs(1), 0)
                .unwrap(),
            1,
            "the finished run is pruned"
        );
        assert!(store.execution("run_o").is_err());
    }

    /// A running run's record, replaced within milliseconds, is kept
    /// unpacked; once the run finishes it is stored compressed. Both read
    /// back whole.
    #[test]
    fn a_running_record_is_stored_plain_and_compressed_once_finished() {
        let (_dir, store) = store();
        let mut e = running("run_r");
        let mut encoder = JournalEncoder::default();
        store.save_journal(&e, &mut encoder).unwrap();
        let running_record = stored(&store, "run_r");
        assert_eq!(running_record[0], run_record::MARK);
        // Its event packed, the record's largest part.
        let event_json = serde_json::to_vec(&*e.event).unwrap();
        let packed_event = super::super::packing::pack(&event_json);
        let holds = |bytes: &[u8], part: &[u8]| bytes.windows(part.len()).any(|w| w == part);
        assert!(holds(&running_record, &packed_event));
        assert!(!holds(&running_record, &event_json[..64]));
        assert_eq!(store.execution("run_r").unwrap(), Some(e.clone()));
        assert_eq!(store.running_executions().unwrap(), vec![e.clone()]);
        e.status = RunStatus::Succeeded;
        store.save_journal(&e, &mut encoder).unwrap();
        assert_eq!(
            stored(&store, "run_r")[0],
            super::super::packing::LZ4_DICT_RECORD
        );
        assert_eq!(store.execution("run_r").unwrap(), Some(e.clone()));
        assert!(store.running_executions().unwrap().is_empty());
        let (listed, _) = store
            .list_executions(&ExecutionFilter::default(), 10, None)
            .unwrap();
        assert_eq!(listed, vec![e.clone()], "one record, replaced in place");
        // A later write leaves the id's entry alone.
        store.run_ids.remove(b"run_r").unwrap();
        store.save_journal(&e, &mut encoder).unwrap();
        assert!(store.run_ids.is_empty());
    }

    /// A running run enters `active_runs` at its first save only; its end
    /// takes it out, and a new encoder (a resumed run) puts it back.
    #[test]
    fn a_running_run_is_marked_active_once_and_unmarked_at_its_end() {
        let (_dir, store) = store();
        let mut e = running("run_m");
        let mut encoder = JournalEncoder::default();
        store.save_journal(&e, &mut encoder).unwrap();
        assert!(store.active_runs.contains_key(b"run_m").unwrap());
        // Taken out behind the encoder's back: a later save of the still
        // running run does not write the entry again.
        store.active_runs.remove(b"run_m").unwrap();
        store.save_journal(&e, &mut encoder).unwrap();
        assert!(!store.active_runs.contains_key(b"run_m").unwrap());
        // A resumed run's new encoder marks it again.
        store
            .save_journal(&e, &mut JournalEncoder::default())
            .unwrap();
        assert!(store.active_runs.contains_key(b"run_m").unwrap());
        // The end of the run takes it out, and a pause too.
        e.status = RunStatus::Succeeded;
        store.save_journal(&e, &mut encoder).unwrap();
        assert!(store.running_executions().unwrap().is_empty());
        e.status = RunStatus::Running;
        store.save_journal(&e, &mut encoder).unwrap();
        assert_eq!(store.running_executions().unwrap().len(), 1);
        e.status = RunStatus::Waiting;
        store.save_journal(&e, &mut encoder).unwrap();
        assert!(store.running_executions().unwrap().is_empty());
    }

    /// Records written by earlier versions, in their layout (`executions`
    /// by run id, `runs_by_seq` for start order) and encoding (JSON, plain
    /// even when waiting, or packed), are moved into start order when the
    /// store opens, and read, listed and updated there; an update stores
    /// them in the binary layout. Each goes under the sequence it carries,
    /// whatever `runs_by_seq` says (a stale entry there names a run that
    /// was started again), or under its key in the first layout; one whose
    /// sequence is taken gets a new one after the others; one moved
    /// already keeps its place; one that cannot be read stays behind and
    /// does not stop the store from opening.
    #[test]
    fn records_of_an_earlier_version_are_moved_read_and_updated() {
        let (dir, store) = store();
        let executions = store.db.open_tree(super::super::TREE_EXECUTIONS).unwrap();
        let runs_by_seq = store.db.open_tree(super::super::TREE_RUNS_BY_SEQ).unwrap();
        let packed = Execution {
            seq: 3,
            ..execution("run_p")
        };
        let waiting = Execution {
            seq: 5,
            status: RunStatus::Waiting,
            ..execution("run_b")
        };
        // Left without its start-order entry by a crash.
        let orphan = Execution {
            seq: 4,
            ..execution("run_o")
        };
        // Claims run_p's sequence.
        let clash = Execution {
            seq: 3,
            ..execution("run_x")
        };
        // The first layout: keyed by its sequence, none inside it.
        let first = Execution {
            seq: 1,
            ..execution("run_0000000000000001")
        };
        let mut first_json = serde_json::to_value(&first).unwrap();
        first_json.as_object_mut().unwrap().remove("seq");
        // Moved already by an open that a crash interrupted: the old copy
        // is still there too.
        let half_moved = Execution {
            seq: 6,
            ..execution("run_h")
        };
        store.save_execution(&half_moved).unwrap();
        let json = |e: &Execution| serde_json::to_vec(e).unwrap();
        executions
            .insert(b"run_p", super::super::packing::pack(&json(&packed)))
            .unwrap();
        runs_by_seq.insert(3u64.to_be_bytes(), b"run_p").unwrap();
        executions.insert(b"run_b", json(&waiting)).unwrap();
        runs_by_seq.insert(5u64.to_be_bytes(), b"run_b").unwrap();
        // A stale entry: run_b was started again, under 5.
        runs_by_seq.insert(2u64.to_be_bytes(), b"run_b").unwrap();
        executions.insert(b"run_o", json(&orphan)).unwrap();
        executions.insert(b"run_x", json(&clash)).unwrap();
        executions
            .insert(1u64.to_be_bytes(), serde_json::to_vec(&first_json).unwrap())
            .unwrap();
        executions.insert(b"run_h", json(&half_moved)).unwrap();
        executions.insert(b"run_damaged", &b"{\"id\":"[..]).unwrap();
        drop((executions, runs_by_seq, store));
        let store = super::super::reopen(dir.path());

        assert_eq!(store.execution("run_p").unwrap(), Some(packed.clone()));
        assert_eq!(store.execution("run_b").unwrap(), Some(waiting.clone()));
        assert_eq!(store.execution("run_o").unwrap(), Some(orphan.clone()));
        assert_eq!(
            store.execution("run_0000000000000001").unwrap(),
            Some(first.clone())
        );
        assert_eq!(store.execution("run_h").unwrap(), Some(half_moved));
        let moved = store.execution("run_x").unwrap().expect("run_x");
        assert!(moved.seq > 6, "{}", moved.seq);
        assert_eq!(
            moved,
            Execution {
                seq: moved.seq,
                ..clash
            }
        );
        assert_eq!(store.execution("run_damaged").unwrap(), None);
        let (listed, _) = store
            .list_executions(&ExecutionFilter::default(), 10, None)
            .unwrap();
        let ids: Vec<&str> = listed.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "run_x",
                "run_h",
                "run_b",
                "run_o",
                "run_p",
                "run_0000000000000001"
            ]
        );
        let left = store.db.open_tree(super::super::TREE_EXECUTIONS).unwrap();
        assert_eq!(
            left.iter().keys().collect::<Result<Vec<_>, _>>().unwrap(),
            [sled::IVec::from("run_damaged")],
            "the unreadable record stays where it was"
        );
        left.remove("run_damaged").unwrap();
        drop(left);
        assert!(store
            .db
            .open_tree(super::super::TREE_EXECUTIONS)
            .unwrap()
            .is_empty());
        assert!(store
            .db
            .open_tree(super::super::TREE_RUNS_BY_SEQ)
            .unwrap()
            .is_empty());

        let updated = store
            .update_execution("run_b", |r| {
                r.error = Some("moved".into());
                true
            })
            .unwrap()
            .expect("updated");
        assert_eq!(updated.status, RunStatus::Waiting);
        let stored = stored(&store, "run_b");
        assert_eq!(stored[0], super::super::packing::LZ4_DICT_RECORD);
        let unpacked = super::super::packing::unpack(&stored).unwrap();
        assert_eq!(unpacked[0], run_record::MARK);
        assert_eq!(store.execution("run_b").unwrap(), Some(updated));
        let claimed = store
            .update_execution("run_b", |r| {
                r.status = RunStatus::Running;
                true
            })
            .unwrap()
            .expect("claimed");
        assert_eq!(store.execution("run_b").unwrap(), Some(claimed.clone()));
        assert_eq!(store.running_executions().unwrap(), vec![claimed]);
        drop(store);
        // Opening again moves nothing and changes nothing.
        let store = super::super::reopen(dir.path());
        assert_eq!(store.execution_count(), 6);
        let names = store.db.tree_names();
        for old in [
            super::super::TREE_EXECUTIONS,
            super::super::TREE_RUNS_BY_SEQ,
        ] {
            assert!(
                !names.contains(&sled::IVec::from(old)),
                "{old} is dropped once empty"
            );
        }
        assert_eq!(store.execution("run_p").unwrap(), Some(packed));
    }

    /// Runs are listed newest first, a page at a time after a cursor, and
    /// pruned oldest first: finished runs beyond the count or the age go,
    /// running ones stay, and a pruned run cannot be found by its id.
    #[test]
    fn runs_are_listed_newest_first_and_pruned_oldest_first() {
        let (_dir, store) = store();
        let now = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(100);
        let mut seqs = Vec::new();
        for (n, status) in [
            RunStatus::Succeeded,
            RunStatus::Running,
            RunStatus::Failed,
            RunStatus::Succeeded,
            RunStatus::Stopped,
        ]
        .into_iter()
        .enumerate()
        {
            let seq = store.next_run_seq().unwrap();
            seqs.push(seq);
            let e = Execution {
                seq,
                status,
                workflow: if n % 2 == 0 { "even" } else { "odd" }.into(),
                started_at: now - jiff::SignedDuration::from_hours(10 - n as i64),
                ..execution(&format!("run_{n}"))
            };
            store.save_execution(&e).unwrap();
        }
        let ids = |list: &[Execution]| list.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        let (page, next) = store
            .list_executions(&ExecutionFilter::default(), 2, None)
            .unwrap();
        assert_eq!(ids(&page), ["run_4", "run_3"]);
        let (page, next) = store
            .list_executions(&ExecutionFilter::default(), 2, next.as_deref())
            .unwrap();
        assert_eq!(ids(&page), ["run_2", "run_1"]);
        let (page, next) = store
            .list_executions(&ExecutionFilter::default(), 2, next.as_deref())
            .unwrap();
        assert_eq!((ids(&page), next), (vec!["run_0".to_string()], None));
        let even = ExecutionFilter {
            workflow: Some("even".into()),
            status: None,
        };
        let (page, _) = store.list_executions(&even, 10, None).unwrap();
        assert_eq!(ids(&page), ["run_4", "run_2", "run_0"]);
        let (page, _) = store
            .list_executions(&ExecutionFilter::default(), 10, Some("run_unknown"))
            .unwrap();
        assert!(page.is_empty());

        // Keep 3: the two oldest finished go, the running one stays.
        let keep_for = Duration::from_secs(1000 * 3600);
        assert_eq!(store.prune_executions(now, keep_for, 3).unwrap(), 2);
        assert_eq!(store.execution("run_0").unwrap(), None);
        assert_eq!(store.execution("run_2").unwrap(), None);
        assert!(store.execution("run_1").unwrap().is_some());
        assert_eq!(store.execution_count(), 3);
        // Older than 7.5 hours: run_3 (7 h old) stays, as does run_1.
        let keep_for = Duration::from_secs(7 * 3600 + 1800);
        assert_eq!(store.prune_executions(now, keep_for, 100).unwrap(), 0);
        let keep_for = Duration::from_secs(6 * 3600 + 1800);
        assert_eq!(store.prune_executions(now, keep_for, 100).unwrap(), 1);
        let (page, _) = store
            .list_executions(&ExecutionFilter::default(), 10, None)
            .unwrap();
        assert_eq!(ids(&page), ["run_4", "run_1"]);
        assert_eq!(store.run_ids.len(), 2);
    }

    /// A damaged record is reported as corrupt, not as a crash.
    #[test]
    fn a_damaged_compressed_record_is_reported_as_corrupt() {
        let (_dir, store) = store();
        store.save_execution(&execution("run_c")).unwrap();
        let mut bytes = stored(&store, "run_c").to_vec();
        bytes.truncate(bytes.len() / 2);
        store.run_records.insert(7u64.to_be_bytes(), bytes).unwrap();
        assert!(matches!(
            store.execution("run_c"),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// A run's encoder, reused across its journal writes as steps are
    /// appended, the event changes or the record shrinks, always gives the
    /// bytes a new encoder gives for the whole record, and they read back
    /// as the record, every optional field included.
    #[test]
    fn the_journal_encoder_gives_the_whole_record_at_every_write() {
        let full = execution("run_e");
        let mut e = Execution {
            steps: Vec::new(),
            ..running("run_e")
        };
        let mut encoder = JournalEncoder::default();
        let check = |encoder: &mut JournalEncoder, e: &Execution| {
            let (bytes, _) = encoder.encode(e).unwrap();
            assert_eq!(bytes, encode(e).unwrap(), "not the whole record's bytes");
            assert_eq!(&decode_with(&bytes, |q| Err(format!("{q:?}"))).unwrap(), e);
        };
        check(&mut encoder, &e);
        for step in &full.steps {
            e.steps.push(step.clone());
            check(&mut encoder, &e);
            check(&mut encoder, &e);
        }
        e.waiting = Some(Waiting {
            path: "steps[5]".into(),
            id: Some("pause".into()),
            until: Timestamp::UNIX_EPOCH,
            kinds: vec!["call.missed".into()],
            caller: Some("+5215512345678".into()),
            retry_attempts: None,
            input: json!({"for": "1h"}),
            started_at: Timestamp::UNIX_EPOCH,
        });
        e.status = RunStatus::Waiting;
        check(&mut encoder, &e);
        e.waiting = None;
        e.retrying = Some(Retrying {
            path: "steps[4]".into(),
            attempts: vec![Attempt {
                at: Timestamp::UNIX_EPOCH,
                status: Some(503),
                error: Some("unavailable".into()),
                latency_ms: 1.5,
                response: Some("busy".into()),
            }],
        });
        e.status = RunStatus::Failed;
        e.error = Some("step steps[4] (send_message): \"quoted\"".into());
        e.finished_at = Some(Timestamp::UNIX_EPOCH);
        e.test = true;
        check(&mut encoder, &e);
        // Another event (a record that is not this run's) and fewer steps.
        let mut other = (*e.event).clone();
        other.id = "evt_other".into();
        e.event = other.into();
        e.steps.truncate(1);
        check(&mut encoder, &e);
        e.steps.clear();
        check(&mut encoder, &e);
    }
}
