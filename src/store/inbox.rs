//! The durable inbox: accepted events, dedupe, and the queue of events not
//! yet handed to the engine. Key layout in the module docs of `store`.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{unfiled, Store, StoreError};
use crate::event::Event;

/// An event as kept in the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Arrival order, unique.
    pub seq: u64,
    pub received_at: Timestamp,
    pub event: Event,
    /// The event's JSON as the inbox wrote it, when this is the event
    /// ingestion just accepted (not one read back from the store): the
    /// run journal takes these bytes instead of serialising the event
    /// again (`executions.rs`).
    #[serde(skip)]
    pub event_json: Option<EventJson>,
}

/// An accepted event's JSON inside its inbox record, shared: the bytes
/// `serde_json` writes for the [`Event`] it was stored with.
#[derive(Debug, Clone, PartialEq)]
pub struct EventJson {
    record: std::sync::Arc<[u8]>,
    event: std::ops::Range<usize>,
}

impl EventJson {
    pub fn as_bytes(&self) -> &[u8] {
        &self.record[self.event.clone()]
    }
}

/// [`StoredEvent`]'s stored form, `{"seq":…,"received_at":…,"event":{…}}`,
/// written without copying the event, with where the event's JSON is in
/// it.
fn stored_record(
    seq: u64,
    received_at: Timestamp,
    event: &Event,
) -> Result<(Vec<u8>, std::ops::Range<usize>), serde_json::Error> {
    let mut bytes = Vec::with_capacity(1024);
    // The record's head is the same two fields as the dedupe marker.
    serde_json::to_writer(&mut bytes, &StoredEventHeader { seq, received_at })?;
    // The head is an object with two fields: reopen it.
    debug_assert_eq!(bytes.last(), Some(&b'}'));
    bytes.pop();
    bytes.extend_from_slice(b",\"event\":");
    let start = bytes.len();
    serde_json::to_writer(&mut bytes, event)?;
    let end = bytes.len();
    bytes.push(b'}');
    Ok((bytes, start..end))
}

/// An accepted event's dedupe marker, its value in the `events` tree: when
/// it arrived and its sequence number, not the event itself (which memory,
/// the inbox log and, if filed, the `pending` queue hold until the engine
/// takes it), written compact
/// (`compact.rs`). Earlier versions wrote the same two fields as JSON, and
/// before that the whole [`StoredEvent`]; decoding reads both (the two
/// fields of the latter, skipping the rest). As JSON it is also the head
/// of the inbox record ([`stored_record`]).
#[derive(Serialize, Deserialize)]
struct StoredEventHeader {
    seq: u64,
    received_at: Timestamp,
}

impl StoredEventHeader {
    fn encode(&self) -> Vec<u8> {
        super::compact::Writer::new(20)
            .u64(self.seq)
            .time(self.received_at)
            .finish()
    }

    fn decode(bytes: &[u8], id: &str) -> Result<StoredEventHeader, StoreError> {
        super::compact::read_record(bytes, |r| {
            Ok(StoredEventHeader {
                seq: r.u64("seq")?,
                received_at: r.time("received_at")?,
            })
        })
        .map_err(|e| StoreError::Corrupt(format!("event {id}: {e}")))
    }
}

/// Whether a value of the `pending` tree is the whole [`StoredEvent`] as
/// JSON, rather than, in stores written before the event moved out of
/// `events`, the event's id (whose `events` value is then the whole
/// record). A record is a JSON object; an id never starts with `{`.
fn is_record(pending_value: &[u8]) -> bool {
    pending_value.first() == Some(&b'{')
}

/// The one field of a pending record that start-up needs: its event's id.
#[derive(Deserialize)]
struct PendingRecordId {
    event: EventId,
}

#[derive(Deserialize)]
struct EventId {
    id: String,
}

pub(super) fn decode_record(
    bytes: &[u8],
    what: impl std::fmt::Display,
) -> Result<StoredEvent, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The sequence number a `pending` queue key holds (big-endian).
fn pending_seq(key: &[u8]) -> Result<u64, StoreError> {
    let bytes = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("pending queue key is not a sequence number".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The dedupe marker of acceptance `seq`, as the `events` tree holds it.
pub(super) fn marker(seq: u64, received_at: Timestamp) -> Vec<u8> {
    StoredEventHeader { seq, received_at }.encode()
}

/// The sequence number of the acceptance a marker of `id` records.
pub(super) fn marker_seq(marker: &[u8], id: &str) -> Result<u64, StoreError> {
    Ok(StoredEventHeader::decode(marker, id)?.seq)
}

/// An event offered to the inbox, with what became of it.
#[derive(Debug)]
pub enum Offered {
    /// New: stored and queued for the engine.
    Accepted(StoredEvent),
    /// Seen within the dedupe window: nothing written.
    Duplicate(Event),
}

impl Offered {
    pub fn event(&self) -> &Event {
        match self {
            Offered::Accepted(stored) => &stored.event,
            Offered::Duplicate(event) => event,
        }
    }

    pub fn outcome(&self) -> Insert {
        match self {
            Offered::Accepted(_) => Insert::Accepted,
            Offered::Duplicate(_) => Insert::Duplicate,
        }
    }

    /// The stored event, when it was accepted.
    pub fn into_accepted(self) -> Option<StoredEvent> {
        match self {
            Offered::Accepted(stored) => Some(stored),
            Offered::Duplicate(_) => None,
        }
    }
}

/// What happened to one event offered to the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// New: stored and queued for the engine.
    Accepted,
    /// Seen within the dedupe window: nothing written.
    Duplicate,
}

/// Events are kept at least this long, whatever the dedupe window: the
/// inbox log's segments are sealed within 30 s and retired at the next
/// store flush after that, and until then the replay of a segment an
/// earlier version wrote must find its events in the store (it restores
/// those it does not find; this version's segments say which events are
/// done).
const KEPT_AT_LEAST: Duration = Duration::from_secs(10 * 60);

fn expiry_key(received_at: Timestamp, id: &str) -> Vec<u8> {
    let ms = received_at.as_millisecond().max(0) as u64;
    let mut key = Vec::with_capacity(8 + id.len());
    key.extend_from_slice(&ms.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

impl Store {
    /// Store each event unless it is a duplicate within `window`, written
    /// into sled's trees at once (marker and queue entry): for tools and
    /// tests, which make them durable with [`Store::commit`].
    pub fn insert_events(
        &self,
        events: &[Event],
        now: Timestamp,
        window: Duration,
    ) -> Result<Vec<Insert>, StoreError> {
        let outcomes = self.insert_offered(events, now, window)?;
        let accepted: Vec<(u64, &str)> = events
            .iter()
            .zip(&outcomes)
            .filter(|(_, (insert, _, _))| *insert == Insert::Accepted)
            .map(|(event, (_, seq, _))| (*seq, event.id.as_str()))
            .collect();
        self.unfiled.file(&accepted)?;
        Ok(outcomes.into_iter().map(|(insert, _, _)| insert).collect())
    }

    /// Write the dedupe marker and call statistics of an accepted event,
    /// unless that is done already: what the engine does first with an
    /// event it is handed, once the inbox log holds it durably (never
    /// before: `unfiled.rs`). Off the acknowledgement's path: until then
    /// the duplicate check finds the acceptance in memory.
    pub fn mark_accepted(&self, stored: &StoredEvent) -> Result<(), StoreError> {
        self.unfiled.mark(&stored.event, stored.seq)
    }

    /// Offer a delivery's events to the inbox: each event, with what became
    /// of it. Not durable until [`Store::commit_inbox`] returns; their
    /// dedupe markers are written by [`Store::mark_accepted`] after that. The write runs on the caller's thread:
    /// it is a few tens of microseconds of in-memory sled writes per event
    /// (the disk wait is the log's sync), less than a hand-off to another
    /// thread and back would cost.
    pub fn accept_events(
        &self,
        events: Vec<Event>,
        now: Timestamp,
        window: Duration,
    ) -> Result<Vec<Offered>, StoreError> {
        let outcomes = self.insert_offered(&events, now, window)?;
        Ok(events
            .into_iter()
            .zip(outcomes)
            .map(|(event, (insert, seq, event_json))| match insert {
                Insert::Accepted => Offered::Accepted(StoredEvent {
                    seq,
                    received_at: now,
                    event,
                    event_json,
                }),
                Insert::Duplicate => Offered::Duplicate(event),
            })
            .collect())
    }

    /// Accept each event unless it is a duplicate within `window`, each
    /// outcome with the event's sequence number (meaningful when accepted)
    /// and, when accepted, its JSON. An acceptance writes nothing to sled:
    /// its record is kept in memory and appended to the inbox log, and its
    /// marker is owed (`unfiled.rs`). The same event twice in `events` is
    /// one acceptance and one duplicate.
    fn insert_offered(
        &self,
        events: &[Event],
        now: Timestamp,
        window: Duration,
    ) -> Result<Vec<(Insert, u64, Option<EventJson>)>, StoreError> {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let mut prepared = Vec::with_capacity(events.len());
        for event in events {
            let seq = self.db.generate_id()?;
            let (bytes, event_range) =
                stored_record(seq, now, event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            prepared.push((event, seq, bytes, event_range));
        }
        let mut outcomes = Vec::with_capacity(prepared.len());
        for (event, seq, bytes, event_range) in prepared {
            // One writer of this id at a time, from its dedupe check to its
            // log append: a second copy sees the first's acceptance, and
            // waits on a batch that holds the first's record (`store`'s
            // module docs on ordering).
            let mut stripe = self.unfiled.lock(&event.id);
            // The newest acceptance of the id: in memory while its marker
            // is owed, else in sled.
            let seen = match stripe.unmarked(&event.id) {
                Some(unmarked) => Some(unmarked.received_at),
                None => match self.events.get(event.id.as_bytes())? {
                    Some(existing) => {
                        Some(StoredEventHeader::decode(&existing, &event.id)?.received_at)
                    }
                    None => None,
                },
            };
            if let Some(seen) = seen {
                let age = now.as_millisecond() - seen.as_millisecond();
                if age <= window_ms {
                    outcomes.push((Insert::Duplicate, seq, None));
                    continue;
                }
            }
            let record: std::sync::Arc<[u8]> = bytes.into();
            self.unfiled
                .keep(&mut stripe, &event.id, seq, now, record.clone());
            // With the record kept in memory: a checkpoint that starts once
            // this record's segment is sealed files it and flushes sled
            // (inbox_log.rs).
            self.inbox_log.append(&record);
            drop(stripe);
            let event_json = EventJson {
                record,
                event: event_range,
            };
            outcomes.push((Insert::Accepted, seq, Some(event_json)));
        }
        Ok(outcomes)
    }

    /// An accepted event's entries in sled's inbox trees, `events` last:
    /// sled recovers a prefix of its log, so a marker that survives a crash
    /// has its queue entry too (start-up removes a queue entry without its
    /// marker). What the replay of an earlier version's segment writes for
    /// a record it queues again.
    fn write_queued(&self, stored: &StoredEvent, record: &[u8]) -> Result<(), StoreError> {
        self.pending.insert(stored.seq.to_be_bytes(), record)?;
        self.unfiled
            .write_acceptance(&stored.event, stored.seq, stored.received_at)
    }

    /// Put back into sled what the inbox log's `segments` (left by an
    /// earlier process) hold and sled may have lost in a crash (see
    /// `inbox_log.rs`), flush sled, and retire the segments. Only for
    /// start-up, before anything writes to the inbox. Returns how many
    /// events were queued again.
    ///
    /// Segments of this version hold done notes: a record with a note
    /// anywhere in the log was finished by the engine (its marker was
    /// flushed before the note; a queue entry left by a removal sled had
    /// not flushed goes); one without is queued again, with its marker. Segments of earlier versions go by their rules
    /// ([`Store::replay_legacy_record`]).
    pub(super) fn replay_inbox_log(
        &self,
        segments: &[(u64, std::path::PathBuf)],
    ) -> Result<usize, StoreError> {
        let (mut restored, mut replayed) = (0, 0);
        let mut files = Vec::with_capacity(segments.len());
        for (number, path) in segments {
            files.push((path, *number, std::fs::read(path)?));
        }
        let contents: Vec<_> = files
            .iter()
            .map(|(path, number, bytes)| (path, super::inbox_log::records(path, *number, bytes)))
            .collect();
        // Notes come after their records, maybe in a later segment.
        let done: std::collections::HashSet<u64> = contents
            .iter()
            .flat_map(|(_, read)| read.payloads.iter())
            .filter_map(|p| super::inbox_log::done_note(p))
            .collect();
        for (path, read) in &contents {
            for &payload in &read.payloads {
                if super::inbox_log::done_note(payload).is_some() {
                    continue;
                }
                let stored = decode_record(payload, format_args!("inbox log {}", path.display()))?;
                replayed += 1;
                if !read.with_done_notes {
                    restored += usize::from(self.replay_legacy_record(&stored, payload)?);
                    continue;
                }
                if done.contains(&stored.seq) {
                    // Its marker was in sled before the take, and the
                    // flush before the note covered it: one that is gone
                    // now was purged, and stays so.
                    self.renote_marker(&stored)?;
                } else {
                    // Written whole, whether or not it was filed before:
                    // the engine never finished it. The queue entry
                    // first, as a filing writes it.
                    self.pending.insert(stored.seq.to_be_bytes(), payload)?;
                    self.ensure_marked(&stored)?;
                    restored += 1;
                }
            }
        }
        for seq in &done {
            self.pending.remove(seq.to_be_bytes())?;
        }
        // Also when nothing was restored: the notes for the dedupe cleaner
        // must be on disk before the segments go.
        if replayed > 0 {
            self.flush_now()?;
        }
        for (_, path) in segments {
            self.inbox_log.retire(path);
        }
        Ok(restored)
    }

    /// Make sure sled holds the marker of `stored`'s acceptance, or of a
    /// later one of its id: if the crash lost it (or it was never written:
    /// the engine had not been handed the event), it is written with the
    /// call statistics (written before it, so likely lost with it).
    fn ensure_marked(&self, stored: &StoredEvent) -> Result<(), StoreError> {
        if self.renote_marker(stored)? {
            return Ok(());
        }
        self.unfiled
            .write_acceptance(&stored.event, stored.seq, stored.received_at)
    }

    /// Note for the dedupe cleaner the marker sled holds for `stored`'s
    /// acceptance or a later one of its id, if any (its note may have been
    /// in memory only, `expiry.rs`): whether there is one.
    fn renote_marker(&self, stored: &StoredEvent) -> Result<bool, StoreError> {
        let id = &stored.event.id;
        let newer_marker = match self.events.get(id.as_bytes())? {
            Some(marker) => Some(StoredEventHeader::decode(&marker, id)?)
                .filter(|marker| marker.seq >= stored.seq),
            None => None,
        };
        if let Some(marker) = &newer_marker {
            self.expiry_batches.note(marker.received_at, id);
        }
        Ok(newer_marker.is_some())
    }

    /// Replay one record of a segment an earlier version wrote, which
    /// queued every accepted event behind a placeholder in `pending` (its
    /// marker written after it, before the log append) and removed the
    /// queue entry when the engine was done. Whether it was queued again.
    fn replay_legacy_record(
        &self,
        stored: &StoredEvent,
        record: &[u8],
    ) -> Result<bool, StoreError> {
        // Queued behind a placeholder whose record only this log holds:
        // put the record in, whatever the marker says now (the id may have
        // been accepted again since).
        let key = stored.seq.to_be_bytes();
        if self
            .pending
            .get(key)?
            .is_some_and(|v| unfiled::placeholder_id(&v).is_some())
        {
            self.pending.insert(key, record)?;
            // sled recovers a prefix of its writes, and the placeholder is
            // written before the marker: the crash may have kept the one
            // without the other. Without its marker, the queue's tidying
            // would take the record for half-written and drop an
            // acknowledged event. (Its call statistics were written before
            // the marker too, and are not counted again.)
            if !self.renote_marker(stored)? {
                self.unfiled
                    .write_marker(&stored.event.id, stored.seq, stored.received_at)?;
            }
            return Ok(true);
        }
        // This acceptance (or a later one of the same id) is in sled, and
        // the engine was done with it (no queue entry) or it is queued
        // whole. An older marker means the id was accepted again after the
        // dedupe window and the crash lost this one.
        if self.renote_marker(stored)? {
            return Ok(false);
        }
        self.write_queued(stored, record)?;
        Ok(true)
    }

    /// Tidy the queue at start-up, after the log's replay and before
    /// anything writes to the inbox:
    ///
    /// - undo acceptances an earlier version queued behind a placeholder
    ///   that are still there: the replay found no record for them, so the
    ///   crash came before the log synced it and they were never answered
    ///   2xx (their markers go too, so the provider's retry is accepted);
    /// - remove entries whose event has no marker: a crash in the middle
    ///   of an earlier version's inbox write (or of the replay of its
    ///   segment) leaves them (the event was never answered 2xx, so its
    ///   sender retries; during such a write the entry precedes its
    ///   marker);
    /// - convert entries of the earlier layout (value: the event id, the
    ///   record in `events`) to the current one (value: the record), so
    ///   that nothing later meets them: once running, accepting the same
    ///   id again would replace that record with a marker. An entry whose
    ///   record is already a marker (the id was accepted again while it
    ///   waited; its newer acceptance has an entry of its own) is removed
    ///   with a warning.
    ///
    /// Returns how many entries were removed and how many converted.
    pub(super) fn tidy_pending_queue(&self) -> Result<(usize, usize), StoreError> {
        let (mut dropped, mut converted) = (0, 0);
        for item in self.pending.iter() {
            let (seq, value) = item?;
            if let Some(id) = unfiled::placeholder_id(&value) {
                // A placeholder the log's replay found no record for: sled
                // wrote the acceptance (its own flush, or another
                // commit's) but the crash came before the log synced the
                // record, so no 2xx went out for it (nor for a duplicate,
                // which waits on a later batch). Undo the acceptance, or
                // its marker would turn the provider's retry into a
                // "duplicate" of an event that is never processed.
                let seq = pending_seq(&seq)?;
                self.forget_unsynced_acceptance(id, seq)?;
                self.pending.remove(seq.to_be_bytes())?;
                dropped += 1;
                continue;
            }
            if is_record(&value) {
                let named: PendingRecordId = serde_json::from_slice(&value)
                    .map_err(|e| StoreError::Corrupt(format!("pending queue entry: {e}")))?;
                if !self.events.contains_key(named.event.id.as_bytes())? {
                    self.pending.remove(seq)?;
                    dropped += 1;
                }
                continue;
            }
            // The earlier layout: `value` is the event's id.
            match self.events.get(&value)? {
                None => {
                    self.pending.remove(seq)?;
                    dropped += 1;
                }
                Some(stored) if decode_record(&stored, "event").is_ok() => {
                    self.pending.insert(seq, stored)?;
                    converted += 1;
                }
                Some(_) => {
                    tracing::warn!(
                        event_id = %String::from_utf8_lossy(&value),
                        "a queued event of an earlier version was accepted again and replaced; its older copy is dropped"
                    );
                    self.pending.remove(seq)?;
                    dropped += 1;
                }
            }
        }
        Ok((dropped, converted))
    }

    /// Remove the dedupe marker of acceptance `seq` of `id` (not a later
    /// acceptance's), and its expiry key if an earlier version wrote one
    /// (a note in a batch stays; the purge skips a missing marker). Its
    /// call statistics stay counted: the retry counts the call again.
    fn forget_unsynced_acceptance(&self, id: &[u8], seq: u64) -> Result<(), StoreError> {
        let printable = String::from_utf8_lossy(id);
        if let Some(marker) = self.events.get(id)? {
            let header = StoredEventHeader::decode(&marker, &printable)?;
            if header.seq == seq {
                let _ = self
                    .events
                    .compare_and_swap(id, Some(marker), None as Option<&[u8]>)?;
                self.expiry
                    .remove(expiry_key(header.received_at, &printable))?;
            }
        }
        tracing::info!(event_id = %printable, "forgot an acceptance whose record a crash kept from the inbox log (never answered 2xx; the provider retries it)");
        Ok(())
    }

    /// Whether an event with this id was accepted and is still remembered
    /// for the dedupe window.
    pub fn remembers_event(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.unfiled.remembers(id) || self.events.contains_key(id.as_bytes())?)
    }

    /// Events accepted but not yet handed to the engine, oldest first, of
    /// those filed in sled's queue (an event kept in memory is handed over
    /// in memory, or filed by the next checkpoint: `unfiled.rs`).
    pub fn pending_events(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self.pending_events_after(None, limit, |_| false)?.0)
    }

    /// Pending events after sequence number `after` (from the start when
    /// `None`), oldest first, at most `limit`, leaving out those `skip`
    /// names (without decoding them); and the last sequence number looked
    /// at, `None` when the queue ends there.
    pub fn pending_events_after(
        &self,
        after: Option<u64>,
        limit: usize,
        skip: impl Fn(u64) -> bool,
    ) -> Result<(Vec<StoredEvent>, Option<u64>), StoreError> {
        let from = match after {
            Some(seq) => std::ops::Bound::Excluded(seq.to_be_bytes()),
            None => std::ops::Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut last = None;
        for (looked, item) in self
            .pending
            .range::<[u8; 8], _>((from, std::ops::Bound::Unbounded))
            .enumerate()
        {
            if looked == limit {
                return Ok((out, last));
            }
            let (key, value) = item?;
            let seq = pending_seq(&key)?;
            last = Some(seq);
            if skip(seq) {
                continue;
            }
            // Placeholders and entries of the earlier layouts were filled,
            // undone or converted when the store opened
            // ([`Store::tidy_pending_queue`]).
            out.push(decode_record(&value, "pending queue entry")?);
        }
        Ok((out, None))
    }

    /// Whether acceptance `seq` of event `id` is still queued: kept in
    /// memory (`unfiled.rs`, answered without a sled lookup: the engine
    /// asks this of nearly every event it is handed, right after its
    /// acceptance) or filed in sled's queue.
    pub fn is_pending(&self, seq: u64, id: &str) -> Result<bool, StoreError> {
        if self.unfiled.holds(seq, id) {
            return Ok(true);
        }
        Ok(self.pending.contains_key(seq.to_be_bytes())?)
    }

    /// Acceptance `seq` of event `id`, while it is queued (kept in memory
    /// or filed in sled's queue); `None` once the engine has taken it.
    /// For run records that hold where their event is queued
    /// (`executions.rs`).
    pub fn queued_event(&self, seq: u64, id: &str) -> Result<Option<Event>, StoreError> {
        self.unfiled.queued_event(seq, id)
    }

    /// The sequence number of the oldest acceptance still queued, kept in
    /// memory or filed in sled's queue. Memory is read first: a filing
    /// moves a record from memory into the queue, so one moving meanwhile
    /// is found in the queue. (A taking meanwhile can make the answer too
    /// old, never too new.)
    pub(super) fn oldest_queued_seq(&self) -> Result<Option<u64>, StoreError> {
        let kept = self.unfiled.oldest_kept();
        let filed = match self.pending.first()? {
            Some((key, _)) => Some(pending_seq(&key)?),
            None => None,
        };
        Ok(kept.into_iter().chain(filed).min())
    }

    /// Accepted events the engine is not done with: filed in sled's queue
    /// or kept in memory.
    pub fn pending_len(&self) -> usize {
        self.pending.len() + self.unfiled.len()
    }

    /// The engine is done with acceptance `seq` of event `id`: it leaves
    /// the queue (memory or sled's), and the inbox log gets a done note
    /// once a store flush covers what the event caused (`inbox_log.rs`).
    pub fn mark_taken(&self, seq: u64, id: &str) -> Result<(), StoreError> {
        self.unfiled.take(seq, id)?;
        self.inbox_log.taken(seq);
        Ok(())
    }

    /// Put the records of these queued events (sequence number, event id)
    /// into sled's queue now, instead of keeping them in memory: for
    /// events the engine will read from the stored queue (its in-memory
    /// hand-over was full). Not durable until the next flush; the inbox
    /// log covers them until then.
    pub fn file_queued(&self, which: &[(u64, &str)]) -> Result<(), StoreError> {
        self.unfiled.file(which)?;
        Ok(())
    }

    /// File every accepted event kept in memory into sled's queue (and
    /// write its marker if that is owed): for callers that read the stored
    /// queue alone ([`crate::engine::Engine::settle`]).
    pub fn file_all_queued(&self) -> Result<usize, StoreError> {
        self.unfiled.file_all()
    }

    /// Whether a checkpoint filed events into sled's queue since the last
    /// call: events the engine was not handed in memory (their request
    /// failed or was dropped), which only a read of the stored queue finds.
    pub fn take_filed_unannounced(&self) -> bool {
        self.unfiled.take_unannounced()
    }

    /// Accepted events whose record is in memory and the inbox log only.
    pub fn unfiled_len(&self) -> usize {
        self.unfiled.len()
    }

    /// Forget events received more than `window` (at least
    /// [`KEPT_AT_LEAST`]) before `now`; their ids may be accepted again
    /// after `window` in any case. Events still pending are kept. Returns
    /// how many were removed.
    pub fn purge_expired(&self, now: Timestamp, window: Duration) -> Result<usize, StoreError> {
        // However short the window, an event stays while the inbox log may
        // still hold it: a replay must find it to know it is not lost.
        let window_ms = i64::try_from(window.max(KEPT_AT_LEAST).as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.as_millisecond().saturating_sub(window_ms).max(0) as u64;
        let mut removed = 0;
        // Keys written by earlier versions, one per event.
        for item in self.expiry.range(..cutoff.to_be_bytes().to_vec()) {
            let (key, _) = item?;
            match self.forget_if_expired(&key[8..], cutoff)? {
                Forgot::Removed => removed += 1,
                Forgot::StillPending => continue,
                Forgot::Nothing => {}
            }
            self.expiry.remove(key)?;
        }
        self.expiry_batches.purge_before(cutoff, |id| {
            Ok(match self.forget_if_expired(id, cutoff)? {
                Forgot::Removed => {
                    removed += 1;
                    false
                }
                Forgot::StillPending => true,
                Forgot::Nothing => false,
            })
        })?;
        Ok(removed)
    }

    /// Remove the dedupe marker of `id` if it records an acceptance
    /// received at or before `cutoff` (ms) whose event is no longer queued.
    fn forget_if_expired(&self, id: &[u8], cutoff: u64) -> Result<Forgot, StoreError> {
        let Some(bytes) = self.events.get(id)? else {
            return Ok(Forgot::Nothing);
        };
        let stored = match StoredEventHeader::decode(&bytes, &String::from_utf8_lossy(id)) {
            Ok(stored) => stored,
            Err(e) => {
                // Left alone, not a reason to stop the cleaner (and the
                // pruning of runs, windows and calls after it) for good.
                tracing::warn!(error = %e, "a dedupe marker the cleaner cannot read is kept");
                return Ok(Forgot::Nothing);
            }
        };
        if stored.received_at.as_millisecond().max(0) as u64 > cutoff {
            // Accepted again since; the newer acceptance is noted itself.
            return Ok(Forgot::Nothing);
        }
        if self.is_pending(stored.seq, &String::from_utf8_lossy(id))? {
            return Ok(Forgot::StillPending);
        }
        // Only the copy read here: the id may have just been accepted
        // again.
        let swapped = self
            .events
            .compare_and_swap(id, Some(bytes), None as Option<&[u8]>)?;
        Ok(if swapped.is_ok() {
            Forgot::Removed
        } else {
            Forgot::Nothing
        })
    }
}

/// What [`Store::forget_if_expired`] did with a marker.
enum Forgot {
    Removed,
    /// Expired, but its event is still queued: look again next time.
    StillPending,
    /// No marker, a newer acceptance's, or one replaced meanwhile.
    Nothing,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{parse, ParseContext, Provider};

    fn wazzap_event(phone: &str, ts: &str) -> Event {
        let body =
            format!(r#"{{"event":"call.missed","phone":"{phone}","country":"MX","ts":"{ts}"}}"#);
        let ctx = ParseContext {
            source: "wz",
            provider: Provider::Wazzap,
            business: None,
            received_at: Timestamp::from_second(1_700_000_000).unwrap(),
            delivery_id: None,
        };
        parse(body.as_bytes(), &ctx).unwrap().remove(0)
    }

    use super::super::{crash, reopen, temp_store as store};

    /// Copy the inbox log's segments of one data folder into another, as
    /// a crash that lost sled's unflushed writes (but not the log) would
    /// leave them. Returns the target's log folder.
    fn copy_log_segments(from: &std::path::Path, to: &std::path::Path) -> std::path::PathBuf {
        let log_dir = to.join(super::super::inbox_log::LOG_DIR);
        std::fs::create_dir_all(&log_dir).unwrap();
        for (_, path) in super::super::inbox_log::segments(from).unwrap() {
            std::fs::copy(&path, log_dir.join(path.file_name().unwrap())).unwrap();
        }
        log_dir
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    /// Many concurrent deliveries: each event is stored once, the same
    /// event in two requests is one acceptance and one duplicate, and every
    /// answer matches its own request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_are_answered_each_for_its_own_events() {
        let (_dir, store) = store();
        let day = Duration::from_secs(86400);
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            // Requests i and i+100 carry the same event.
            let e = wazzap_event(&format!("+52155123{:05}", i % 100), "2026-05-14T14:32:11Z");
            tasks.push(tokio::spawn(async move {
                let out = store.accept_events(vec![e.clone()], at(1000), day).unwrap();
                (e.id, out)
            }));
        }
        let mut accepted = std::collections::HashMap::new();
        for t in tasks {
            let (id, out) = t.await.unwrap();
            assert_eq!(out.len(), 1);
            if out[0].outcome() == Insert::Accepted {
                *accepted.entry(id).or_insert(0) += 1;
            }
        }
        assert_eq!(accepted.len(), 100, "every distinct event was accepted");
        assert!(accepted.values().all(|n| *n == 1), "and only once");
        assert_eq!(store.pending_len(), 100);
    }

    /// Acceptances of different ids run at once (each id has its lock
    /// stripe): threads offering one event at the same moment still
    /// accept it once, and the statistics of a
    /// caller whose calls are accepted concurrently count each call once.
    #[test]
    fn concurrent_writers_accept_each_event_once_and_count_each_call_once() {
        let (_dir, store) = store();
        let day = Duration::from_secs(86400);
        let one_caller = "+5215512345678";
        let events: Vec<Event> = (0..40)
            .map(|i| wazzap_event(one_caller, &format!("2026-05-14T14:{i:02}:00Z")))
            .chain(
                (0..40).map(|i| wazzap_event(&format!("+52155876{i:05}"), "2026-05-14T14:32:11Z")),
            )
            .collect();
        let accepted = std::sync::atomic::AtomicUsize::new(0);
        // Errors are collected, not unwrapped: a thread that panicked
        // would leave the others waiting at the barrier for ever.
        let errors = std::sync::Mutex::new(Vec::new());
        // At each step two threads offer one event and two the next one
        // (of the same caller, in the first half) at the same moment.
        let together = std::sync::Barrier::new(4);
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (store, events, accepted, together, errors) =
                    (&store, &events, &accepted, &together, &errors);
                scope.spawn(move || {
                    for step in 0..events.len() {
                        let e = &events[(step + t / 2) % events.len()];
                        together.wait();
                        match store.insert_events(std::slice::from_ref(e), at(1000), day) {
                            Ok(out) if out == [Insert::Accepted] => {
                                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(e) => errors.lock().unwrap().push(e.to_string()),
                        }
                    }
                });
            }
        });
        assert_eq!(errors.into_inner().unwrap(), Vec::<String>::new());
        assert_eq!(accepted.into_inner(), 80);
        assert_eq!(store.pending_events(1000).unwrap().len(), 80);
        let stats = store.call_stats(one_caller).unwrap();
        assert_eq!(stats.calls.get("call.missed"), Some(&40), "{stats:?}");
    }

    /// A clean stop (the store dropped, not crashed) files what is queued
    /// in memory into sled and retires the inbox log's open segment: the
    /// next open replays nothing, and the accepted event is still queued.
    #[tokio::test]
    async fn a_clean_stop_leaves_queued_events_in_sled_and_no_segment() {
        let (dir, store) = store();
        let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let day = Duration::from_secs(86400);
        store.accept_events(vec![e.clone()], at(1000), day).unwrap();
        store.commit_inbox().await.unwrap();
        assert_eq!(store.unfiled_len(), 1, "kept in memory, not yet in sled");
        assert_eq!(
            super::super::inbox_log::segments(dir.path()).unwrap().len(),
            1
        );
        let reopened = stop_cleanly_and_reopen(store, dir.path());
        assert_only_queued(&reopened, &e);
        assert!(reopened.remembers_event(&e.id).unwrap());
    }

    /// Drop `store` (a clean stop: its inbox log's open segment is
    /// checkpointed), check that no segment is left to replay, reopen.
    fn stop_cleanly_and_reopen(store: Store, dir: &std::path::Path) -> Store {
        drop(store);
        let left = super::super::inbox_log::segments(dir).unwrap();
        assert!(left.is_empty(), "nothing left to replay: {left:?}");
        reopen(dir)
    }

    fn assert_only_queued(store: &Store, event: &Event) {
        let queued = store.pending_events(10).unwrap();
        assert_eq!(queued.len(), 1, "{queued:?}");
        assert_eq!(queued[0].event, *event);
    }

    /// An event the engine finished just before a clean stop, with no
    /// flush since (so no done note in the log): the stop's checkpoint
    /// makes sled hold the take, and the next start queues nothing.
    #[tokio::test]
    async fn an_event_taken_just_before_a_clean_stop_is_not_queued_again() {
        let (dir, store) = store();
        let (taken, waiting, _) = two_accepted_the_first_taken(&store).await;
        let reopened = stop_cleanly_and_reopen(store, dir.path());
        assert_only_queued(&reopened, &waiting);
        assert!(reopened.remembers_event(&taken.id).unwrap());
    }

    /// The inbox log of a store whose sled files were lost stands for a
    /// crash before sled flushed: opening restores what it holds, once.
    #[tokio::test]
    async fn events_only_in_the_inbox_log_are_restored_on_open() {
        let (crashed, store) = store();
        let a = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let b = wazzap_event("+5215587654321", "2026-05-14T14:32:11Z");
        let day = Duration::from_secs(86400);
        let offered = store
            .accept_events(vec![a.clone(), b.clone()], at(1000), day)
            .unwrap();
        assert!(offered.iter().all(|o| o.outcome() == Insert::Accepted));
        store.commit_inbox().await.unwrap();

        let fresh = tempfile::tempdir().unwrap();
        let log_dir = copy_log_segments(crashed.path(), fresh.path());
        crash(store);

        let restored = Store::open(fresh.path(), 8 << 20).unwrap();
        let pending: Vec<Event> = restored
            .pending_events(10)
            .unwrap()
            .into_iter()
            .map(|stored| stored.event)
            .collect();
        assert_eq!(pending, vec![a.clone(), b.clone()]);
        assert_eq!(
            restored
                .insert_events(std::slice::from_ref(&a), at(2000), day)
                .unwrap(),
            vec![Insert::Duplicate],
            "a restored event is a duplicate for the provider's retry"
        );
        let replayed = super::super::inbox_log::segments(fresh.path()).unwrap();
        assert!(
            replayed.is_empty(),
            "the old segments are gone: {replayed:?}"
        );
        let spares = std::fs::read_dir(&log_dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("spare-")
            })
            .count();
        assert_eq!(spares, 1, "the replayed segment is kept for reuse");
        drop(restored);
        let reopened = Store::open(fresh.path(), 8 << 20).unwrap();
        assert_eq!(reopened.pending_len(), 2, "nothing restored twice");
    }

    /// The events in sled's queue, with their sequence numbers.
    fn queued_in_sled(store: &Store) -> Vec<(u64, Event)> {
        store
            .pending_events(10)
            .unwrap()
            .into_iter()
            .map(|stored| (stored.seq, stored.event))
            .collect()
    }

    fn queue_value(store: &Store, seq: u64) -> Option<Vec<u8>> {
        store
            .pending
            .get(seq.to_be_bytes())
            .unwrap()
            .map(|v| v.to_vec())
    }

    /// The done notes in the inbox log of the store in `dir` (closed).
    fn done_notes(dir: &std::path::Path) -> Vec<u64> {
        let mut notes = Vec::new();
        for (number, path) in super::super::inbox_log::segments(dir).unwrap() {
            let bytes = std::fs::read(&path).unwrap();
            let read = super::super::inbox_log::records(&path, number, &bytes);
            assert!(read.with_done_notes);
            notes.extend(
                read.payloads
                    .iter()
                    .filter_map(|p| super::super::inbox_log::done_note(p)),
            );
        }
        notes
    }

    /// An accepted event is queued in memory only, its record in the inbox
    /// log; taking it writes nothing to sled's queue, and a done note to
    /// the log.
    #[tokio::test]
    async fn an_accepted_event_is_kept_in_memory_and_its_take_noted_in_the_log() {
        let (dir, store) = store();
        let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let offered = store
            .accept_events(vec![e.clone()], at(1000), Duration::from_secs(60))
            .unwrap();
        store.commit_inbox().await.unwrap();
        let Some(Offered::Accepted(stored)) = offered.into_iter().next() else {
            panic!("not accepted");
        };
        store.mark_accepted(&stored).unwrap();
        assert!(store.pending_events(10).unwrap().is_empty(), "not in sled");
        assert_eq!(queue_value(&store, stored.seq), None);
        assert_eq!(store.unfiled_len(), 1);
        assert_eq!(store.pending_len(), 1);
        assert!(store.is_pending(stored.seq, &e.id).unwrap());
        assert!(store.remembers_event(&e.id).unwrap());

        store.mark_taken(stored.seq, &e.id).unwrap();
        assert_eq!(store.unfiled_len(), 0, "taking frees the memory");
        assert!(!store.is_pending(stored.seq, &e.id).unwrap());
        assert_eq!(store.pending_len(), 0);
        // The note waits for a store flush that covers the event's effects.
        store.commit().await.unwrap();
        crash(store);
        assert_eq!(done_notes(dir.path()), vec![stored.seq]);
    }

    /// Events the engine's hand-over had no room for are filed: their
    /// records move from memory into the stored queue.
    #[tokio::test]
    async fn filing_moves_a_record_into_the_stored_queue() {
        let (_dir, store) = store();
        let a = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let b = wazzap_event("+5215587654321", "2026-05-14T14:32:11Z");
        let offered = store
            .accept_events(
                vec![a.clone(), b.clone()],
                at(1000),
                Duration::from_secs(60),
            )
            .unwrap();
        let seqs: Vec<u64> = offered
            .into_iter()
            .map(|o| o.into_accepted().unwrap().seq)
            .collect();
        store.file_queued(&[(seqs[1], &b.id)]).unwrap();
        assert_eq!(store.unfiled_len(), 1);
        assert!(store.is_pending(seqs[0], &a.id).unwrap(), "kept in memory");
        assert!(store.is_pending(seqs[1], &b.id).unwrap(), "filed in sled");
        let filed = queue_value(&store, seqs[1]).unwrap();
        assert_eq!(decode_record(&filed, "test").unwrap().event, b);
        let queued = store.pending_events(10).unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].event, b);
    }

    /// A store whose every log batch seals its segment, with one event
    /// accepted (dedupe `window`) and its segment checkpointed and retired.
    async fn accept_one_and_checkpoint(window: Duration) -> (tempfile::TempDir, Store, Event) {
        let dir = tempfile::tempdir().unwrap();
        let sealing = super::super::inbox_log::Sealing {
            bytes: 1,
            age: Duration::from_secs(3600),
        };
        let store = Store::open_sealing(dir.path(), 8 << 20, sealing).unwrap();
        let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        store
            .accept_events(vec![e.clone()], at(1000), window)
            .unwrap();
        store.commit_inbox().await.unwrap();
        let retired = std::time::Instant::now() + Duration::from_secs(10);
        while !super::super::inbox_log::segments(dir.path())
            .unwrap()
            .is_empty()
        {
            assert!(std::time::Instant::now() < retired, "no checkpoint");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (dir, store, e)
    }

    /// A checkpoint files every record still in memory before it retires
    /// the log segment holding it: afterwards a crash loses nothing, the
    /// event is in sled's queue, whole.
    #[tokio::test]
    async fn a_checkpoint_files_queued_events_before_their_log_segment_goes() {
        let (dir, store, e) = accept_one_and_checkpoint(Duration::from_secs(60)).await;
        assert_eq!(store.unfiled_len(), 0, "the checkpoint filed the record");
        // The process dies: nothing else reaches the disk.
        crash(store);
        let reopened = reopen(dir.path());
        let queued = reopened.pending_events(10).unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].event, e);
        assert!(queue_value(&reopened, queued[0].seq)
            .unwrap()
            .starts_with(b"{"));
    }

    /// Accept `events` as ingestion does (durable in the log) and mark
    /// them as the engine does when it is handed them: their sequence
    /// numbers.
    async fn accept_and_mark(store: &Store, events: &[Event], window: Duration) -> Vec<u64> {
        let offered = store
            .accept_events(events.to_vec(), at(1000), window)
            .unwrap();
        store.commit_inbox().await.unwrap();
        offered
            .into_iter()
            .map(|o| {
                let stored = o.into_accepted().expect("accepted");
                store.mark_accepted(&stored).unwrap();
                stored.seq
            })
            .collect()
    }

    /// Two events accepted and marked, the first of them taken by the
    /// engine (no flush since): the taken one, the one still queued, and
    /// their acceptances.
    async fn two_accepted_the_first_taken(store: &Store) -> (Event, Event, Vec<u64>) {
        let taken = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let waiting = wazzap_event("+5215587654321", "2026-05-14T14:32:11Z");
        let day = Duration::from_secs(86400);
        let seqs = accept_and_mark(store, &[taken.clone(), waiting.clone()], day).await;
        store.mark_taken(seqs[0], &taken.id).unwrap();
        (taken, waiting, seqs)
    }

    /// A restart before any checkpoint: the log's replay queues the
    /// records of the events the engine had not finished, and leaves out
    /// the one it had (its done note).
    #[tokio::test]
    async fn replay_queues_records_without_a_done_note_and_skips_taken_events() {
        let (dir, store) = store();
        let (a, b, seqs) = two_accepted_the_first_taken(&store).await;
        let day = Duration::from_secs(86400);
        // A run's commit: the done note may go to the log.
        store.commit().await.unwrap();
        assert!(
            store.pending_events(10).unwrap().is_empty(),
            "kept in memory"
        );
        crash(store);

        let reopened = reopen(dir.path());
        let pending = reopened.pending_events(10).unwrap();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].event, b);
        assert_eq!(pending[0].seq, seqs[1]);
        assert_eq!(reopened.unfiled_len(), 0);
        assert!(reopened.remembers_event(&a.id).unwrap());
        assert_eq!(
            reopened.insert_events(&[a, b], at(1001), day).unwrap(),
            vec![Insert::Duplicate, Insert::Duplicate]
        );
        assert_eq!(
            reopened
                .call_stats("+5215587654321")
                .unwrap()
                .calls
                .get("call.missed"),
            Some(&1),
            "a call is counted once, replay or not"
        );
    }

    /// sled flushed on its own while an acceptance's log batch was still
    /// unsynced, then the process died: the acceptance was never answered
    /// 2xx, so nothing of it may stay in sled (a dedupe marker would turn
    /// the provider's retry into a duplicate of an event nobody
    /// processes). Markers are written after the sync.
    #[tokio::test]
    async fn an_acceptance_whose_record_never_reached_the_log_leaves_nothing_in_sled() {
        let (dir, store) = store();
        let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let day = Duration::from_secs(86400);
        store.accept_events(vec![e.clone()], at(1000), day).unwrap();
        store.commit.flush_blocking().unwrap();
        assert!(!store.events.contains_key(e.id.as_bytes()).unwrap());
        crash(store);
        std::fs::remove_dir_all(dir.path().join(super::super::inbox_log::LOG_DIR)).unwrap();

        let reopened = reopen(dir.path());
        assert_eq!(reopened.pending_len(), 0);
        assert!(!reopened.remembers_event(&e.id).unwrap());
        assert_eq!(
            reopened
                .insert_events(std::slice::from_ref(&e), at(1001), day)
                .unwrap(),
            vec![Insert::Accepted],
            "the retry is accepted"
        );
        assert_eq!(reopened.pending_events(10).unwrap()[0].event, e);
    }

    /// A queued event's marker is gone (the crash lost it, or the engine
    /// never wrote it): the replay writes it. A finished event's marker was
    /// flushed before its done note, so one that is gone was purged: it
    /// stays gone (restoring it would count the call again).
    #[tokio::test]
    async fn replay_restores_the_marker_of_a_queued_event_only() {
        let (dir, store) = store();
        let (a, b, _) = two_accepted_the_first_taken(&store).await;
        let day = Duration::from_secs(86400);
        for e in [&a, &b] {
            store.events.remove(e.id.as_bytes()).unwrap();
        }
        // A run's commit: the done note may go to the log.
        store.commit().await.unwrap();
        crash(store);

        let reopened = reopen(dir.path());
        assert!(
            !reopened.remembers_event(&a.id).unwrap(),
            "finished and purged"
        );
        assert!(
            reopened.remembers_event(&b.id).unwrap(),
            "queued, remembered"
        );
        let queued = reopened.pending_events(10).unwrap();
        assert_eq!(queued.len(), 1, "the acknowledged event is still queued");
        assert_eq!(queued[0].event, b);
        assert_eq!(
            reopened
                .insert_events(std::slice::from_ref(&b), at(1001), day)
                .unwrap(),
            vec![Insert::Duplicate],
            "the provider's retry is a duplicate"
        );
        let calls = |phone| {
            reopened
                .call_stats(phone)
                .unwrap()
                .calls
                .get("call.missed")
                .copied()
        };
        assert_eq!(
            calls("+5215512345678"),
            Some(1),
            "a finished event's call is not counted again"
        );
    }

    /// A filed event the engine finished, whose queue removal the crash
    /// lost: its done note removes the stale entry, so it is not processed
    /// again.
    #[tokio::test]
    async fn a_done_note_removes_a_queue_entry_the_crash_kept() {
        let (dir, store) = store();
        let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let seqs = accept_and_mark(&store, std::slice::from_ref(&e), Duration::from_secs(60)).await;
        store.file_queued(&[(seqs[0], &e.id)]).unwrap();
        let filed = queue_value(&store, seqs[0]).unwrap();
        store.mark_taken(seqs[0], &e.id).unwrap();
        assert_eq!(queue_value(&store, seqs[0]), None);
        // As if sled had lost the removal.
        store.pending.insert(seqs[0].to_be_bytes(), filed).unwrap();
        // A run's commit: the done note may go to the log.
        store.commit().await.unwrap();
        crash(store);

        let reopened = reopen(dir.path());
        assert_eq!(reopened.pending_len(), 0);
    }

    /// The same id accepted twice within a sync (a dedupe window shorter
    /// than the engine's backlog): both acceptances are replayed.
    #[tokio::test]
    async fn replay_queues_both_acceptances_of_an_id_accepted_again() {
        let (dir, store) = store();
        let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let second = Duration::from_secs(1);
        let mut both = Vec::new();
        for received in [1000, 1005] {
            let offered = store
                .accept_events(vec![e.clone()], at(received), second)
                .unwrap();
            both.push(
                offered
                    .into_iter()
                    .next()
                    .unwrap()
                    .into_accepted()
                    .unwrap()
                    .seq,
            );
        }
        store.commit_inbox().await.unwrap();
        store.commit.flush_blocking().unwrap();
        crash(store);

        let reopened = reopen(dir.path());
        let queued: Vec<u64> = reopened
            .pending_events(10)
            .unwrap()
            .iter()
            .map(|s| s.seq)
            .collect();
        assert_eq!(queued, both, "both acceptances are still queued");
    }

    /// What an earlier version left after a crash: acceptances in sled
    /// (sequence number, event, queued behind a placeholder, its dedupe
    /// marker flushed too), and a log segment without done notes holding
    /// `logged`'s records.
    fn earlier_version_store(
        dir: &std::path::Path,
        accepted: &[(u64, &Event, bool, bool)],
        logged: &[(u64, &Event)],
    ) {
        let store = Store::open(dir, 8 << 20).unwrap();
        for (seq, event, queued, with_marker) in accepted {
            if *queued {
                let mut placeholder = vec![0];
                placeholder.extend_from_slice(event.id.as_bytes());
                store
                    .pending
                    .insert(seq.to_be_bytes(), placeholder)
                    .unwrap();
            }
            if *with_marker {
                store
                    .events
                    .insert(event.id.as_bytes(), marker(*seq, at(1000)))
                    .unwrap();
            }
        }
        store.flush_now().unwrap();
        crash(store);
        let records: Vec<Vec<u8>> = logged
            .iter()
            .map(|(seq, event)| stored_record(*seq, at(1000), event).unwrap().0)
            .collect();
        let payloads: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        super::super::inbox_log::write_earlier_version_segment(dir, 900, &payloads);
    }

    /// An earlier version's segment is replayed by its rules: a
    /// placeholder gets its record, an event with no queue entry was
    /// finished, and a placeholder whose record never reached the log
    /// (never answered 2xx) is undone, marker and all.
    #[test]
    fn an_earlier_version_s_placeholders_are_filled_or_undone() {
        let dir = tempfile::tempdir().unwrap();
        let finished = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let queued = wazzap_event("+5215587654321", "2026-05-14T14:32:11Z");
        let marker_lost = wazzap_event("+5215511112222", "2026-05-14T14:32:11Z");
        let unsynced = wazzap_event("+5215533334444", "2026-05-14T14:32:11Z");
        earlier_version_store(
            dir.path(),
            &[
                (100, &finished, false, true),
                (101, &queued, true, true),
                (102, &marker_lost, true, false),
                (103, &unsynced, true, true),
            ],
            &[(100, &finished), (101, &queued), (102, &marker_lost)],
        );
        let reopened = reopen(dir.path());
        assert_eq!(
            queued_in_sled(&reopened),
            vec![(101, queued.clone()), (102, marker_lost.clone())]
        );
        assert!(
            reopened.remembers_event(&marker_lost.id).unwrap(),
            "marker restored"
        );
        assert!(!reopened.remembers_event(&unsynced.id).unwrap(), "undone");
        assert!(super::super::inbox_log::segments(dir.path())
            .unwrap()
            .is_empty());
    }

    /// An earlier version's queue entry whose id was accepted again (the
    /// newer marker is not its own) still gets its record.
    #[test]
    fn an_earlier_version_s_placeholder_behind_a_newer_marker_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        earlier_version_store(
            dir.path(),
            &[(100, &e, true, false), (101, &e, true, true)],
            &[(100, &e), (101, &e)],
        );
        let reopened = reopen(dir.path());
        let queued: Vec<u64> = reopened
            .pending_events(10)
            .unwrap()
            .iter()
            .map(|s| s.seq)
            .collect();
        assert_eq!(queued, vec![100, 101]);
    }

    #[tokio::test]
    async fn duplicates_within_the_window_are_refused_and_accepted_after_it() {
        let (_dir, store) = store();
        let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let day = Duration::from_secs(86400);
        assert_eq!(
            store
                .insert_events(std::slice::from_ref(&e), at(1000), day)
                .unwrap(),
            vec![Insert::Accepted]
        );
        assert_eq!(
            store
                .insert_events(std::slice::from_ref(&e), at(2000), day)
                .unwrap(),
            vec![Insert::Duplicate]
        );
        store.commit().await.unwrap();
        assert_eq!(store.pending_len(), 1);
        // After the window the same id is new again.
        assert_eq!(
            store
                .insert_events(std::slice::from_ref(&e), at(1000 + 86400 + 1), day)
                .unwrap(),
            vec![Insert::Accepted]
        );
        assert_eq!(store.pending_len(), 2);
    }

    /// A short dedupe window must not purge an event the inbox log may
    /// still hold: a replay would take it for lost and process it again.
    #[tokio::test]
    async fn purge_keeps_events_ten_minutes_whatever_the_window() {
        let (_dir, store) = store();
        let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let second = Duration::from_secs(1);
        store
            .insert_events(std::slice::from_ref(&e), at(1000), second)
            .unwrap();
        let seq = store.pending_events(10).unwrap()[0].seq;
        store.mark_taken(seq, &e.id).unwrap();
        // Past the window: a duplicate no longer, but still kept.
        assert_eq!(store.purge_expired(at(1000 + 300), second).unwrap(), 0);
        assert!(store.remembers_event(&e.id).unwrap());
        assert_eq!(store.purge_expired(at(1000 + 601), second).unwrap(), 1);
        assert!(!store.remembers_event(&e.id).unwrap());
    }

    /// Two events of different callers accepted at `at(1000)`.
    fn accept_two(store: &Store, window: Duration) -> (Event, Event) {
        let a = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let b = wazzap_event("+5215587654321", "2026-05-14T14:32:11Z");
        store
            .insert_events(&[a.clone(), b.clone()], at(1000), window)
            .unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn purge_forgets_expired_events_but_keeps_pending_ones() {
        let (_dir, store) = store();
        let hour = Duration::from_secs(3600);
        let (a, b) = accept_two(&store, hour);
        let taken = store.pending_events(10).unwrap().remove(0);
        assert_eq!(taken.event, a);
        store.mark_taken(taken.seq, &taken.event.id).unwrap();
        assert_eq!(store.purge_expired(at(1000 + 3599), hour).unwrap(), 0);
        assert_eq!(store.purge_expired(at(1000 + 3601), hour).unwrap(), 1);
        assert!(!store.remembers_event(&a.id).unwrap());
        assert!(
            store.remembers_event(&b.id).unwrap(),
            "pending events are kept"
        );
        let still = store.pending_events(10).unwrap().remove(0);
        assert_eq!(still.event, b);
        // Its batch was kept for it: once taken, the next purge finds it.
        store.mark_taken(still.seq, &still.event.id).unwrap();
        assert_eq!(store.purge_expired(at(1000 + 3602), hour).unwrap(), 1);
        assert!(!store.remembers_event(&b.id).unwrap());
        assert_eq!(store.expiry_batches.tree().len(), 0, "no batch is left");
        store.commit().await.unwrap();
    }

    /// Neither an unreadable marker nor a damaged batch stops the cleaner
    /// (the pruning of runs, windows and calls shares its error path): the
    /// readable rest is purged.
    #[tokio::test]
    async fn damage_in_the_cleaners_index_is_skipped() {
        let (_dir, store) = store();
        let hour = Duration::from_secs(3600);
        let (a, b) = accept_two(&store, hour);
        for queued in store.pending_events(10).unwrap() {
            store.mark_taken(queued.seq, &queued.event.id).unwrap();
        }
        store.expiry_batches.write_noted().unwrap();
        // A marker nobody can read, noted in a batch cut short after `a`.
        store
            .events
            .insert(b"evt_unreadable", b"not json".as_slice())
            .unwrap();
        let tree = store.expiry_batches.tree();
        let (key, _) = tree.first().unwrap().unwrap();
        let ids = [
            b"evt_unreadable".as_slice(),
            a.id.as_bytes(),
            b.id.as_bytes(),
        ];
        let mut value = super::super::expiry::encode_ids(ids.into_iter());
        value.truncate(value.len() - 3);
        tree.insert(key, value).unwrap();

        assert_eq!(store.purge_expired(at(1000 + 3601), hour).unwrap(), 1);
        assert!(!store.remembers_event(&a.id).unwrap());
        assert!(store.remembers_event(&b.id).unwrap(), "after the damage");
        assert!(store.remembers_event("evt_unreadable").unwrap());
        assert_eq!(tree.len(), 0, "the damaged batch is gone");
    }

    /// sled flushed the dedupe markers (its own flusher, a run's commit)
    /// but the process died before a checkpoint wrote the cleaner's notes:
    /// the replay notes every record of the log again, so the markers are
    /// still forgotten once expired instead of staying forever.
    #[tokio::test]
    async fn markers_a_crash_left_without_their_notes_are_still_purged() {
        let (dir, store) = store();
        let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let hour = Duration::from_secs(3600);
        let seqs = accept_and_mark(&store, std::slice::from_ref(&e), hour).await;
        store.mark_taken(seqs[0], &e.id).unwrap();
        // A run's commit: the done note may go to the log.
        store.commit().await.unwrap();
        assert_eq!(store.expiry_batches.noted_len(), 1, "noted in memory only");
        crash(store);

        let reopened = reopen(dir.path());
        assert!(reopened.remembers_event(&e.id).unwrap());
        assert_eq!(reopened.purge_expired(at(1000 + 3601), hour).unwrap(), 1);
        assert!(!reopened.remembers_event(&e.id).unwrap());
    }

    /// A checkpoint writes the cleaner's notes before it retires the log
    /// segment: a crash after it loses neither the marker nor its note.
    #[tokio::test]
    async fn a_checkpoint_writes_the_cleaners_notes_before_the_segment_goes() {
        let hour = Duration::from_secs(3600);
        let (dir, store, e) = accept_one_and_checkpoint(hour).await;
        assert_eq!(store.expiry_batches.noted_len(), 0);
        let filed = store.pending_events(10).unwrap().remove(0);
        store.mark_taken(filed.seq, &filed.event.id).unwrap();
        store.commit.flush_blocking().unwrap();
        crash(store);

        let reopened = reopen(dir.path());
        assert_eq!(reopened.purge_expired(at(1000 + 3601), hour).unwrap(), 1);
        assert!(!reopened.remembers_event(&e.id).unwrap());
    }

    /// A crash in the middle of an inbox write can leave a queue entry
    /// without its event (never answered 2xx); opening the store drops it
    /// and keeps the whole ones.
    #[test]
    fn opening_drops_queue_entries_without_their_event() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 8 << 20).unwrap();
            let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
            store
                .insert_events(&[e], at(1000), Duration::from_secs(60))
                .unwrap();
            store
                .pending
                .insert(u64::MAX.to_be_bytes(), b"evt_half_written".as_slice())
                .unwrap();
            assert_eq!(store.pending_len(), 2);
            store.flush_now().unwrap();
        }
        let store = reopen(dir.path());
        assert_eq!(store.pending_len(), 1);
        assert_eq!(store.pending_events(10).unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_all_complete() {
        let (_dir, store) = store();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let e = wazzap_event(&format!("+52155{:08}", i), "2026-05-14T14:32:11Z");
                store
                    .insert_events(&[e], Timestamp::now(), Duration::from_secs(60))
                    .unwrap();
                store.commit().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.pending_len(), 200);
    }

    /// Once the engine has taken an event, the store keeps a marker of a
    /// few dozen bytes for the dedupe window, not the event: a week of
    /// payloads would otherwise be most of the store.
    #[tokio::test]
    async fn a_taken_event_leaves_only_a_small_dedupe_marker() {
        let (_dir, store) = store();
        let mut e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let mut raw = e.raw.to_value();
        raw["padding"] = serde_json::Value::String("x".repeat(4096));
        e.raw = crate::event::RawJson::of(&raw);
        let day = Duration::from_secs(86400);
        store
            .insert_events(std::slice::from_ref(&e), at(1000), day)
            .unwrap();
        let pending = store.pending_events(10).unwrap();
        assert_eq!(pending[0].event, e, "the queue holds the whole event");
        store
            .mark_taken(pending[0].seq, &pending[0].event.id)
            .unwrap();

        let marker = store.events.get(e.id.as_bytes()).unwrap().unwrap();
        assert!(
            marker.len() < 100,
            "{} bytes kept: {}",
            marker.len(),
            String::from_utf8_lossy(&marker)
        );
        assert_eq!(
            store
                .insert_events(std::slice::from_ref(&e), at(2000), day)
                .unwrap(),
            vec![Insert::Duplicate],
            "the marker still answers the dedupe check"
        );
        assert!(store.pending_events(10).unwrap().is_empty());
    }

    /// Dedupe markers are written compact; a marker an earlier version
    /// wrote as JSON still makes a duplicate within the window and is
    /// still purged after it.
    #[test]
    fn markers_are_compact_and_json_markers_of_earlier_versions_still_count() {
        let (_dir, store) = store();
        let hour = Duration::from_secs(3600);
        let old = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let json = serde_json::to_vec(&serde_json::json!({"seq": 5, "received_at": at(1000)}));
        store
            .events
            .insert(old.id.as_bytes(), json.unwrap())
            .unwrap();
        store
            .expiry
            .insert(expiry_key(at(1000), &old.id), &[] as &[u8])
            .unwrap();

        let new = wazzap_event("+5215587654321", "2026-05-14T14:32:11Z");
        assert_eq!(
            store
                .insert_events(std::slice::from_ref(&new), at(1000), hour)
                .unwrap(),
            vec![Insert::Accepted]
        );
        let marker = store.events.get(new.id.as_bytes()).unwrap().unwrap();
        assert_eq!(marker[0], super::super::compact::MARK);
        assert!(marker.len() < 24, "{} bytes", marker.len());

        assert_eq!(
            store
                .insert_events(&[old.clone(), new.clone()], at(2000), hour)
                .unwrap(),
            vec![Insert::Duplicate, Insert::Duplicate]
        );
        let queued = store.pending_events(10).unwrap().remove(0);
        store.mark_taken(queued.seq, &queued.event.id).unwrap();
        assert_eq!(store.purge_expired(at(1000 + 3601), hour).unwrap(), 2);
        assert!(!store.remembers_event(&old.id).unwrap());
        assert!(!store.remembers_event(&new.id).unwrap());
    }

    /// The inbox record is the [`StoredEvent`] as JSON, and the event's
    /// JSON handed on with an accepted event is exactly the event's own
    /// serialisation (the run journal writes those bytes as the event).
    #[test]
    fn an_accepted_event_carries_its_own_json_from_the_record() {
        let event = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let (record, range) = stored_record(42, at(1000), &event).unwrap();
        let whole = StoredEvent {
            seq: 42,
            received_at: at(1000),
            event: event.clone(),
            event_json: None,
        };
        assert_eq!(record, serde_json::to_vec(&whole).unwrap());
        assert_eq!(&record[range], serde_json::to_vec(&event).unwrap());

        let (_dir, store) = store();
        let offered = store
            .accept_events(
                vec![event.clone(), event.clone()],
                at(1000),
                Duration::from_secs(60),
            )
            .unwrap();
        let mut offered = offered.into_iter();
        let accepted = offered.next().unwrap().into_accepted().unwrap();
        let json = accepted.event_json.expect("an accepted event's JSON");
        assert_eq!(json.as_bytes(), serde_json::to_vec(&event).unwrap());
        assert!(offered.next().unwrap().into_accepted().is_none());
        // Read back from the store, an event has no such bytes.
        store.flush_now().unwrap();
        let read = store.pending_events(10).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].event, event);
        assert!(read[0].event_json.is_none());
    }

    /// A store written before the event moved to the queue entry (queue
    /// value: the id; `events` value: the whole record) still works: its
    /// queued events are moved into their entries when it opens, its
    /// half-written entries dropped, its events deduplicated and purged.
    #[test]
    fn a_store_in_the_earlier_layout_is_read_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let pending = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let taken = wazzap_event("+5215587654321", "2026-05-14T14:32:11Z");
        let again = wazzap_event("+5215511112222", "2026-05-14T14:32:11Z");
        {
            let store = Store::open(dir.path(), 8 << 20).unwrap();
            for (seq, e) in [(7u64, &pending), (8, &taken)] {
                let (record, _) = stored_record(seq, at(1000), e).unwrap();
                store
                    .pending
                    .insert(seq.to_be_bytes(), e.id.as_bytes())
                    .unwrap();
                store
                    .expiry
                    .insert(expiry_key(at(1000), &e.id), &[] as &[u8])
                    .unwrap();
                store.events.insert(e.id.as_bytes(), record).unwrap();
            }
            store.pending.remove(8u64.to_be_bytes()).unwrap();
            // Half-written: a queue entry whose event never made it.
            store
                .pending
                .insert(9u64.to_be_bytes(), b"evt_half_written".as_slice())
                .unwrap();
            // Queued in the earlier layout, then accepted again (by a
            // version with markers): the old entry's record is gone, the
            // new acceptance has an entry of its own.
            store
                .pending
                .insert(10u64.to_be_bytes(), again.id.as_bytes())
                .unwrap();
            let (record, _) = stored_record(11, at(1000), &again).unwrap();
            let stored = StoredEvent {
                seq: 11,
                received_at: at(1000),
                event: again.clone(),
                event_json: None,
            };
            store.write_queued(&stored, &record).unwrap();
            store.flush_now().unwrap();
        }
        let store = reopen(dir.path());
        assert_eq!(
            queued_in_sled(&store),
            vec![(7, pending.clone()), (11, again)],
            "the half-written entry and the replaced one are dropped"
        );
        let converted = store.pending.get(7u64.to_be_bytes()).unwrap().unwrap();
        assert_eq!(converted[0], b'{', "the queue entry now holds the record");
        let hour = Duration::from_secs(3600);
        assert_eq!(
            store
                .insert_events(&[pending.clone(), taken.clone()], at(2000), hour)
                .unwrap(),
            vec![Insert::Duplicate, Insert::Duplicate]
        );
        assert_eq!(
            store.purge_expired(at(1000 + 3601), hour).unwrap(),
            1,
            "the taken event is purged, the pending one kept"
        );
        assert!(store.remembers_event(&pending.id).unwrap());
        assert!(!store.remembers_event(&taken.id).unwrap());
    }

    /// An id accepted again after the dedupe window, whose new acceptance
    /// a crash kept out of sled: the older marker left in sled must not
    /// pass for it, or replay would skip an acknowledged event.
    #[tokio::test]
    async fn replay_restores_an_acceptance_behind_an_older_marker_of_its_id() {
        let (crashed, store) = store();
        let earlier = wazzap_event("+5215500001111", "2026-05-14T14:32:11Z");
        let e = wazzap_event("+5215512345678", "2026-05-14T14:32:11Z");
        let day = Duration::from_secs(86400);
        store
            .insert_events(&[earlier, e.clone()], at(5000), day)
            .unwrap();
        store.commit_inbox().await.unwrap();
        let seq = store.pending_events(10).unwrap()[1].seq;
        assert!(seq > 0);

        // Another data folder whose sled knows only an older acceptance of
        // the id, already taken.
        let fresh = tempfile::tempdir().unwrap();
        {
            let old = Store::open(fresh.path(), 8 << 20).unwrap();
            let marker = StoredEventHeader {
                seq: 0,
                received_at: at(1000),
            };
            old.events.insert(e.id.as_bytes(), marker.encode()).unwrap();
            old.flush_now().unwrap();
        }
        copy_log_segments(crashed.path(), fresh.path());
        crash(store);

        let restored = reopen(fresh.path());
        let queued: Vec<(u64, Event)> = restored
            .pending_events(10)
            .unwrap()
            .into_iter()
            .map(|stored| (stored.seq, stored.event))
            .collect();
        assert!(queued.contains(&(seq, e)), "{queued:?}");
    }
}
