//! The binary layout of execution records (the run journal), written
//! instead of JSON since the twenty-eighth round of the load bench.
//!
//! Why: a follow-up writes its run's record three times (before a contact
//! write, before a send, at the end), and turning the record into JSON was
//! most of the journal's cost: every step's rendered input and output
//! walked through serde_json, every string scanned for characters to
//! escape, every timestamp printed as RFC 3339 (callgrind: ≈60 k
//! instructions per follow-up for the steps alone, ≈40 k more to compress
//! the larger JSON). Here a string is its length and its bytes, a
//! timestamp twelve bytes, a number at most ten. The event is the JSON
//! the inbox wrote when it accepted it (serialised here only for another
//! copy of it, such as a run resumed from its journal), so an event reads
//! back exactly as it always has; since the thirtieth round that JSON is
//! packed once for all the runs of the event (`JournalEvent` in
//! `executions.rs` says why) and every write of a run's record copies
//! those bytes.
//!
//! Layout (after [`MARK`]; integers are `compact.rs`'s LEB128 varints
//! unless named, strings a varint length and UTF-8, optional fields behind
//! a 0/1 byte, timestamps as i64 seconds and i32 nanoseconds):
//!
//! - id, seq, workflow, workflow version, file, status (a byte, see
//!   [`run_status_byte`]), started at, finished at (optional), error
//!   (optional), test (a byte), waiting (optional, [`Waiting`]'s fields in
//!   order), retrying (optional: path, attempts), the event (a varint
//!   length and the bytes: its JSON, packed as `packing.rs` packs a
//!   record, or plain, which begins with `{`; records written before the
//!   thirtieth round hold it plain, and both read back; or, in a running
//!   record of a run's first drive, [`QUEUED_EVENT`] and where the inbox
//!   queues the event, which the reader looks up), the count of steps,
//!   then each step;
//! - a step: path, id (optional), kind, status (a byte), input, output
//!   (values, below), error (optional), attempts, started at, duration (f64
//!   little-endian);
//! - an attempt: at, status (optional varint), error (optional), latency
//!   (f64), response (optional);
//! - a value: a tag byte ([`Tag`]), then for a number its varint (a
//!   negative integer `n` as `-(n + 1)`) or f64, for a string its text, for
//!   an array its count and items, for an object its count and each key's
//!   text and value, in the object's order.
//!
//! A record is stored as these bytes while its run is running and packed
//! (`packing.rs`: LZ4 against the dictionary, which LZ4 can match the
//! steps' field names and values against) once it has finished or is
//! waiting; the packed event inside it is copied into the packed record
//! as it is, not searched again (682 bytes for the unit tests' follow-up
//! record, against 649 packed whole with its event plain). The layout is
//! part of the stored
//! format: a change needs a mark of its own, with this one kept for
//! reading, as the JSON records of earlier versions still are. (The
//! event's two forms share this mark because its bytes tell them apart,
//! as `packing.rs`'s marks tell a packed record from a JSON one.)

use std::sync::Arc;

use serde_json::{Map, Number, Value};

use super::compact::{Reader, Writer};
use super::executions::{Attempt, Execution, Retrying, RunStatus, StepRecord, StepStatus, Waiting};
use crate::event::Event;

/// The first byte of a binary execution record (JSON starts with `{`;
/// `packing.rs` uses 1 and 2 for its compressed forms).
pub(super) const MARK: u8 = 3;

/// The first byte of a record's event when the record holds, instead of
/// the event, where the inbox queues it: the acceptance's sequence number
/// (a varint) and the event's id (a string). Only a running record of a
/// run in its first drive holds this (`executions.rs`, [`QueuedEvent`]);
/// packed events start with `packing.rs`'s 1 or 2, plain ones with `{`.
pub(super) const QUEUED_EVENT: u8 = 4;

/// A record's event by where the inbox queues it (see [`QUEUED_EVENT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct QueuedEvent {
    pub seq: u64,
    pub id: String,
}

impl QueuedEvent {
    /// The bytes a record holds in place of the event.
    pub(super) fn bytes(seq: u64, id: &str) -> Vec<u8> {
        Writer::marked(QUEUED_EVENT, 12 + id.len())
            .varint(seq)
            .text(id)
            .finish()
    }

    /// The reference `blob` holds, `None` if it holds the event itself.
    fn read(blob: &[u8]) -> Result<Option<QueuedEvent>, String> {
        let Some(mut r) = Reader::marked(blob, QUEUED_EVENT) else {
            return Ok(None);
        };
        let seq = r.varint("event.seq")?;
        let id = r.text("event.id")?.to_owned();
        r.finish()?;
        Ok(Some(QueuedEvent { seq, id }))
    }
}

/// At most this many items are reserved ahead of reading them: a count
/// is checked against the bytes left, but an item takes far more memory
/// than its first byte, so a damaged count must not reserve all of it.
const MAX_RESERVED: usize = 64;

/// How deep a stored value may nest. serde_json refuses to parse JSON
/// nested deeper than 128, which is where a step's values come from; the
/// limit keeps a damaged record from recursing without end.
const MAX_DEPTH: usize = 256;

/// A value's first byte.
mod tag {
    pub(super) const NULL: u8 = 0;
    pub(super) const FALSE: u8 = 1;
    pub(super) const TRUE: u8 = 2;
    /// A non-negative integer, as a varint.
    pub(super) const UNSIGNED: u8 = 3;
    /// A negative integer `n`, as the varint of `-(n + 1)`.
    pub(super) const NEGATIVE: u8 = 4;
    /// Any other number, as f64 little-endian.
    pub(super) const FLOAT: u8 = 5;
    pub(super) const STRING: u8 = 6;
    pub(super) const ARRAY: u8 = 7;
    pub(super) const OBJECT: u8 = 8;
}

/// The byte a run status is stored as. Part of the stored format.
fn run_status_byte(status: RunStatus) -> u8 {
    match status {
        RunStatus::Running => 0,
        RunStatus::Waiting => 1,
        RunStatus::Succeeded => 2,
        RunStatus::Failed => 3,
        RunStatus::Debounced => 4,
        RunStatus::Stopped => 5,
    }
}

fn step_status_byte(status: StepStatus) -> u8 {
    match status {
        StepStatus::Succeeded => 0,
        StepStatus::Failed => 1,
        StepStatus::Skipped => 2,
    }
}

/// Everything in a record before its steps, the event included (its
/// bytes as the caller has them: its JSON, packed or not), and the count
/// of steps. Gives where in `w` the event's bytes are.
pub(super) fn write_head(w: &mut Writer, e: &Execution, event: &[u8]) -> std::ops::Range<usize> {
    // Destructured in full so that a new field cannot be left out.
    let Execution {
        id,
        seq,
        workflow,
        workflow_version,
        file,
        status,
        event: _,
        started_at,
        finished_at,
        error,
        test,
        waiting,
        retrying,
        steps,
    } = e;
    w.text(id)
        .varint(*seq)
        .text(workflow)
        .text(workflow_version)
        .text(file)
        .u8(run_status_byte(*status))
        .time(*started_at)
        .opt_time(*finished_at)
        .opt_text(error.as_deref())
        .u8(u8::from(*test))
        .opt(waiting.as_ref(), write_waiting)
        .opt(retrying.as_ref(), |w, Retrying { path, attempts }| {
            write_attempts(w.text(path), attempts)
        })
        .len(event.len());
    let event_at = w.as_slice().len();
    w.raw(event).len(steps.len());
    event_at..event_at + event.len()
}

fn write_waiting<'w>(w: &'w mut Writer, waiting: &Waiting) -> &'w mut Writer {
    let Waiting {
        path,
        id,
        until,
        kinds,
        caller,
        retry_attempts,
        input,
        started_at,
    } = waiting;
    w.text(path)
        .opt_text(id.as_deref())
        .time(*until)
        .len(kinds.len());
    for kind in kinds {
        w.text(kind);
    }
    w.opt_text(caller.as_deref())
        .opt(retry_attempts.as_deref(), write_attempts);
    write_value(w, input);
    w.time(*started_at)
}

/// One step, as [`read`] reads it after the head.
pub(super) fn write_step(w: &mut Writer, step: &StepRecord) {
    let StepRecord {
        path,
        id,
        kind,
        status,
        input,
        output,
        error,
        attempts,
        started_at,
        duration_ms,
    } = step;
    w.text(path)
        .opt_text(id.as_deref())
        .text(kind)
        .u8(step_status_byte(*status));
    write_value(w, input);
    write_value(w, output);
    w.opt_text(error.as_deref());
    write_attempts(w, attempts);
    w.time(*started_at).f64(*duration_ms);
}

fn write_attempts<'w>(w: &'w mut Writer, attempts: &[Attempt]) -> &'w mut Writer {
    w.len(attempts.len());
    for Attempt {
        at,
        status,
        error,
        latency_ms,
        response,
    } in attempts
    {
        w.time(*at)
            .opt(*status, |w, status| w.varint(u64::from(status)))
            .opt_text(error.as_deref())
            .f64(*latency_ms)
            .opt_text(response.as_deref());
    }
    w
}

fn write_value(w: &mut Writer, value: &Value) {
    match value {
        Value::Null => {
            w.u8(tag::NULL);
        }
        Value::Bool(false) => {
            w.u8(tag::FALSE);
        }
        Value::Bool(true) => {
            w.u8(tag::TRUE);
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                w.u8(tag::UNSIGNED).varint(u);
            } else if let Some(i) = n.as_i64() {
                // Negative here (a non-negative one is a u64): -(i + 1)
                // is 0..=i64::MAX.
                w.u8(tag::NEGATIVE).varint(!(i as u64));
            } else {
                let f = n.as_f64().expect("a number is u64, i64 or f64");
                w.u8(tag::FLOAT).f64(f);
            }
        }
        Value::String(s) => {
            w.u8(tag::STRING).text(s);
        }
        Value::Array(items) => {
            w.u8(tag::ARRAY).len(items.len());
            for item in items {
                write_value(w, item);
            }
        }
        Value::Object(map) => {
            w.u8(tag::OBJECT).len(map.len());
            for (key, item) in map {
                w.text(key);
                write_value(w, item);
            }
        }
    }
}

/// The run id of a stored record whose run is running, read no further
/// than its status; `None` for any other record (a running record is
/// never packed, so a packed one is not read at all).
pub(super) fn running_id(stored: &[u8]) -> Option<String> {
    let mut r = Reader::marked(stored, MARK)?;
    let head = read_identity(&mut r).ok()?;
    (head.status == RunStatus::Running).then(|| head.id.to_owned())
}

/// A record's first fields: which run it is, and its status.
struct Identity<'b> {
    id: &'b str,
    seq: u64,
    workflow: &'b str,
    workflow_version: &'b str,
    file: &'b str,
    status: RunStatus,
}

fn read_identity<'b>(r: &mut Reader<'b>) -> Result<Identity<'b>, String> {
    Ok(Identity {
        id: r.text("id")?,
        seq: r.varint("seq")?,
        workflow: r.text("workflow")?,
        workflow_version: r.text("workflow_version")?,
        file: r.text("file")?,
        status: read_run_status(r)?,
    })
}

/// A binary record (its [`MARK`] first) as an [`Execution`]; `queued`
/// gives the event of a record that holds where the inbox queues it
/// ([`QUEUED_EVENT`]).
pub(super) fn read(
    stored: &[u8],
    queued: impl FnOnce(QueuedEvent) -> Result<Event, String>,
) -> Result<Execution, String> {
    let mut reader = Reader::marked(stored, MARK).ok_or("not a binary execution record")?;
    let r = &mut reader;
    let head = read_identity(r)?;
    let started_at = r.time("started_at")?;
    let finished_at = r.opt_time("finished_at")?;
    let error = r.opt_text("error")?.map(str::to_owned);
    let test = r.flag("test")?;
    let waiting = r.opt("waiting", read_waiting)?;
    let retrying = r.opt("retrying", |r| {
        Ok(Retrying {
            path: r.text("retrying.path")?.to_owned(),
            attempts: read_attempts(r, "retrying.attempts")?,
        })
    })?;
    // The caller names the record (`executions.rs`: "execution record: …").
    let blob = r.blob("event")?;
    let event = match QueuedEvent::read(blob)? {
        Some(reference) => queued(reference).map_err(|e| format!("event: {e}"))?,
        None => {
            let json = super::packing::unpack(blob).map_err(|e| format!("event: {e}"))?;
            serde_json::from_slice(&json).map_err(|e| format!("event: {e}"))?
        }
    };
    let count = r.len("steps")?;
    let mut steps = Vec::with_capacity(count.min(MAX_RESERVED));
    for _ in 0..count {
        steps.push(read_step(r)?);
    }
    reader.finish()?;
    Ok(Execution {
        id: head.id.to_owned(),
        seq: head.seq,
        workflow: head.workflow.to_owned(),
        workflow_version: head.workflow_version.to_owned(),
        file: head.file.to_owned(),
        status: head.status,
        event: Arc::new(event),
        started_at,
        finished_at,
        error,
        test,
        waiting,
        retrying,
        steps,
    })
}

fn read_run_status(r: &mut Reader<'_>) -> Result<RunStatus, String> {
    let byte = r.u8("status")?;
    RunStatus::ALL
        .into_iter()
        .find(|s| run_status_byte(*s) == byte)
        .ok_or_else(|| format!("compact record: unknown run status {byte}"))
}

fn read_waiting(r: &mut Reader<'_>) -> Result<Waiting, String> {
    let path = r.text("waiting.path")?.to_owned();
    let id = r.opt_text("waiting.id")?.map(str::to_owned);
    let until = r.time("waiting.until")?;
    let count = r.len("waiting.kinds")?;
    let mut kinds = Vec::with_capacity(count.min(MAX_RESERVED));
    for _ in 0..count {
        kinds.push(r.text("waiting.kinds")?.to_owned());
    }
    let caller = r.opt_text("waiting.caller")?.map(str::to_owned);
    let retry_attempts = r.opt("waiting.retry_attempts", |r| {
        read_attempts(r, "waiting.retry_attempts")
    })?;
    let input = read_value(r, 0)?;
    let started_at = r.time("waiting.started_at")?;
    Ok(Waiting {
        path,
        id,
        until,
        kinds,
        caller,
        retry_attempts,
        input,
        started_at,
    })
}

fn read_step(r: &mut Reader<'_>) -> Result<StepRecord, String> {
    let path = r.text("step path")?.to_owned();
    let id = r.opt_text("step id")?.map(str::to_owned);
    let kind = r.text("step kind")?.to_owned();
    let status = match r.u8("step status")? {
        0 => StepStatus::Succeeded,
        1 => StepStatus::Failed,
        2 => StepStatus::Skipped,
        other => return Err(format!("compact record: unknown step status {other}")),
    };
    let input = read_value(r, 0)?;
    let output = read_value(r, 0)?;
    let error = r.opt_text("step error")?.map(str::to_owned);
    let attempts = read_attempts(r, "step attempts")?;
    let started_at = r.time("step started_at")?;
    let duration_ms = r.f64("step duration_ms")?;
    Ok(StepRecord {
        path,
        id,
        kind,
        status,
        input,
        output,
        error,
        attempts,
        started_at,
        duration_ms,
    })
}

fn read_attempts(r: &mut Reader<'_>, what: &str) -> Result<Vec<Attempt>, String> {
    let count = r.len(what)?;
    let mut attempts = Vec::with_capacity(count.min(MAX_RESERVED));
    for _ in 0..count {
        let at = r.time(what)?;
        let status = r.opt(what, |r| {
            u16::try_from(r.varint(what)?)
                .map_err(|_| format!("compact record: {what}: a status past 65535"))
        })?;
        attempts.push(Attempt {
            at,
            status,
            error: r.opt_text(what)?.map(str::to_owned),
            latency_ms: r.f64(what)?,
            response: r.opt_text(what)?.map(str::to_owned),
        });
    }
    Ok(attempts)
}

fn read_value(r: &mut Reader<'_>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "compact record: a value nested deeper than {MAX_DEPTH}"
        ));
    }
    Ok(match r.u8("value")? {
        tag::NULL => Value::Null,
        tag::FALSE => Value::Bool(false),
        tag::TRUE => Value::Bool(true),
        tag::UNSIGNED => Value::Number(r.varint("number")?.into()),
        tag::NEGATIVE => {
            let magnitude = r.varint("number")?;
            let minus_one = i64::try_from(magnitude)
                .map_err(|_| "compact record: a negative number past i64".to_string())?;
            Value::Number((!minus_one).into())
        }
        tag::FLOAT => {
            let f = r.f64("number")?;
            Value::Number(
                Number::from_f64(f)
                    .ok_or_else(|| format!("compact record: {f} is not a JSON number"))?,
            )
        }
        tag::STRING => Value::String(r.text("string")?.to_owned()),
        tag::ARRAY => {
            let count = r.len("array")?;
            let mut items = Vec::with_capacity(count.min(MAX_RESERVED));
            for _ in 0..count {
                items.push(read_value(r, depth + 1)?);
            }
            Value::Array(items)
        }
        tag::OBJECT => {
            let count = r.len("object")?;
            let mut map = Map::with_capacity(count.min(MAX_RESERVED));
            for _ in 0..count {
                let key = r.text("object key")?.to_owned();
                map.insert(key, read_value(r, depth + 1)?);
            }
            Value::Object(map)
        }
        other => return Err(format!("compact record: unknown value tag {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use serde_json::json;

    /// [`read`] for records that hold their event.
    fn read_whole(stored: &[u8]) -> Result<Execution, String> {
        read(stored, |queued| Err(format!("unexpected {queued:?}")))
    }

    fn round_trip(value: &Value) -> Value {
        let mut w = Writer::marked(MARK, 64);
        write_value(&mut w, value);
        let bytes = w.finish();
        let mut r = Reader::marked(&bytes, MARK).unwrap();
        let read = read_value(&mut r, 0).unwrap();
        r.finish().unwrap();
        read
    }

    /// Every kind of JSON value reads back as it was, numbers at their
    /// limits, strings JSON would escape, and objects in their order.
    #[test]
    fn values_read_back_as_written() {
        let value = json!({
            "z": null, "a": [true, false, 0, 127, 128, u64::MAX, -1, i64::MIN, i64::MIN + 1,
                             0.5, -2.5e-300, 1e300, 3.0],
            "text": "say \"hi\"\n\tand \\ leave: ñ 📞 \u{0}",
            "": "",
            "nested": {"list": [[], {}, [{"deep": [1, "two"]}]]},
        });
        let read = round_trip(&value);
        assert_eq!(read, value);
        // The same JSON, keys in the same order, and integers stay integers.
        assert_eq!(read.to_string(), value.to_string());
        assert!(read["a"][12].is_f64() && read["a"][6].is_i64() && read["a"][5].is_u64());
    }

    /// A record with every optional field set, written field by field by
    /// hand: the layout the module's documentation gives, which is the
    /// stored format (a change needs a mark of its own).
    #[test]
    fn a_record_is_laid_out_as_documented_and_reads_back() {
        let event_json = br#"{"id":"evt_1","kind":"call.missed","direction":"incoming","caller":"+15550001111","caller_is_phone":true,"business":null,"country":"US","name":null,"video":false,"at":"2026-12-05T10:00:00Z","call_id":null,"duration":null,"outcome":"failed","source":"meta","provider":"meta","synthetic":false,"raw":{}}"#;
        let event: Event = serde_json::from_slice(event_json).unwrap();
        let at = Timestamp::new(1_796_464_800, 5).unwrap();
        let attempt = Attempt {
            at,
            status: Some(503),
            error: Some("busy".into()),
            latency_ms: 1.5,
            response: Some("{}".into()),
        };
        let execution = Execution {
            id: "run_1".into(),
            seq: 300,
            workflow: "w".into(),
            workflow_version: "v1".into(),
            file: "w.yaml".into(),
            status: RunStatus::Waiting,
            event: Arc::new(event),
            started_at: at,
            finished_at: Some(at),
            error: Some("e".into()),
            test: true,
            waiting: Some(Waiting {
                path: "2".into(),
                id: Some("pause".into()),
                until: at,
                kinds: vec!["call.missed".into()],
                caller: Some("+1".into()),
                retry_attempts: Some(vec![attempt.clone()]),
                input: json!({"for": "1h"}),
                started_at: at,
            }),
            retrying: Some(Retrying {
                path: "3".into(),
                attempts: Vec::new(),
            }),
            steps: vec![StepRecord {
                path: "0".into(),
                id: None,
                kind: "tag".into(),
                status: StepStatus::Skipped,
                input: json!([-2, 7]),
                output: json!(0.25),
                error: None,
                attempts: vec![attempt],
                started_at: at,
                duration_ms: 0.125,
            }],
        };
        let time = |seconds: i64, nanos: i32| {
            [seconds.to_le_bytes().as_slice(), &nanos.to_le_bytes()].concat()
        };
        let at_bytes = time(1_796_464_800, 5);
        let attempt_bytes = [
            &at_bytes[..],
            &[1, 0xf7, 0x03], // status 503
            &[1, 4],
            b"busy",
            &1.5f64.to_le_bytes(),
            &[1, 2],
            b"{}",
        ]
        .concat();
        let expected = [
            &[MARK][..],
            &[5],
            b"run_1",
            &[0xac, 0x02], // seq 300
            &[1],
            b"w",
            &[2],
            b"v1",
            &[6],
            b"w.yaml",
            &[1], // waiting
            &at_bytes,
            &[1],
            &at_bytes,
            &[1, 1],
            b"e",
            &[1], // test
            // waiting: path, id, until, kinds, caller, retry attempts, input, started at
            &[1, 1],
            b"2",
            &[1, 5],
            b"pause",
            &at_bytes,
            &[1, 11],
            b"call.missed",
            &[1, 2],
            b"+1",
            &[1, 1],
            &attempt_bytes,
            &[8, 1, 3],
            b"for",
            &[6, 2],
            b"1h",
            &at_bytes,
            // retrying: path, no attempts
            &[1, 1],
            b"3",
            &[0],
            // the event's JSON
            &[u8::try_from(event_json.len() - 128).unwrap() | 0x80, 2],
            event_json,
            // one step
            &[1, 1],
            b"0",
            &[0, 3],
            b"tag",
            &[2],
            &[7, 2, 4, 1, 3, 7], // [-2, 7]
            &[5],
            &0.25f64.to_le_bytes(),
            &[0, 1],
            &attempt_bytes,
            &at_bytes,
            &0.125f64.to_le_bytes(),
        ]
        .concat();
        let mut w = Writer::marked(MARK, 0);
        write_head(&mut w, &execution, event_json);
        write_step(&mut w, &execution.steps[0]);
        let written = w.finish();
        assert_eq!(written, expected);
        assert_eq!(read_whole(&expected).unwrap(), execution);
    }

    /// The executions tests' follow-up record, its first step with an
    /// error and numbers of every kind, as bytes, its event plain (as
    /// records before the thirtieth round hold it).
    fn fixture_record() -> Vec<u8> {
        fixture_record_with(|json| json.to_vec())
    }

    /// [`fixture_record`] with its event as `event` gives it from the JSON.
    fn fixture_record_with(event: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let mut execution = super::super::executions::tests::execution("run_f");
        let first = &mut execution.steps[0];
        first.error = Some("none \"really\"".into());
        first.input = json!({"add": ["followed-up"], "remove": [], "n": -40, "ratio": 0.5});
        let event_json = serde_json::to_vec(&*execution.event).unwrap();
        let mut w = Writer::marked(MARK, 0);
        write_head(&mut w, &execution, &event(&event_json));
        for step in &execution.steps {
            write_step(&mut w, step);
        }
        let bytes = w.finish();
        assert_eq!(read_whole(&bytes).unwrap(), execution);
        bytes
    }

    /// A record cut anywhere, or with any one byte damaged, is an error or
    /// some record, never a panic; cut short it is always an error.
    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let packed_event = fixture_record_with(super::super::packing::pack);
        for bytes in [fixture_record(), packed_event] {
            damage(bytes);
        }
    }

    fn damage(bytes: Vec<u8>) {
        for cut in 0..bytes.len() {
            assert!(
                read_whole(&bytes[..cut]).is_err(),
                "cut at {cut} of {}",
                bytes.len()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            read_whole(&longer).unwrap_err(),
            "compact record: 1 bytes after its last field"
        );
        for at in 1..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                let _ = read_whole(&damaged);
            }
        }
    }

    /// The event packed, as records hold it since the thirtieth round, or
    /// plain, as before: the same record reads back, and packed it takes
    /// far fewer bytes (the event is over half of a running record).
    #[test]
    fn a_record_reads_back_with_its_event_packed_or_plain() {
        let plain = fixture_record();
        let packed = fixture_record_with(super::super::packing::pack);
        assert_eq!(read_whole(&packed).unwrap(), read_whole(&plain).unwrap());
        assert!(
            packed.len() * 3 < plain.len() * 2,
            "{} bytes with the event packed, {} plain",
            packed.len(),
            plain.len()
        );
        // A packed event that does not unpack is named as the event.
        let event_json = serde_json::to_vec(&*read_whole(&plain).unwrap().event).unwrap();
        let packed_event = super::super::packing::pack(&event_json);
        let at = packed
            .windows(packed_event.len())
            .position(|w| w == packed_event)
            .expect("the packed event in the record");
        let mut damaged = packed.clone();
        // Its stated size, past what its bytes could expand to.
        damaged[at + 1..at + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = read_whole(&damaged).unwrap_err();
        assert!(err.starts_with("event: cannot decompress"), "{err}");
    }

    /// Damage that states more than the bytes hold is refused before it
    /// allocates or recurses: a count in the quintillions, and arrays
    /// nested past any value a step can hold.
    #[test]
    fn counts_and_nesting_past_the_bytes_are_refused() {
        let mut huge = Writer::marked(MARK, 16);
        huge.u8(tag::ARRAY).varint(u64::MAX >> 1);
        let bytes = huge.finish();
        let mut r = Reader::marked(&bytes, MARK).unwrap();
        assert_eq!(
            read_value(&mut r, 0).unwrap_err(),
            "compact record cut short in array"
        );

        let mut deep = Writer::marked(MARK, 20_000);
        for _ in 0..10_000 {
            deep.u8(tag::ARRAY).len(1);
        }
        deep.u8(tag::NULL);
        let bytes = deep.finish();
        let mut r = Reader::marked(&bytes, MARK).unwrap();
        assert_eq!(
            read_value(&mut r, 0).unwrap_err(),
            "compact record: a value nested deeper than 256"
        );

        let mut too_long = Writer::marked(MARK, 16);
        too_long.raw(&[0xff; 10]).u8(0x02);
        let bytes = too_long.finish();
        let mut r = Reader::marked(&bytes, MARK).unwrap();
        assert!(r.varint("seq").unwrap_err().contains("past 64 bits"));
    }

    /// What the layout is for: fewer bytes than the record's JSON, and,
    /// packed, no more than the JSON packed (the dictionary is JSON).
    #[test]
    fn a_record_is_smaller_than_its_json_unpacked_and_packed() {
        let bytes = fixture_record();
        let execution = read_whole(&bytes).unwrap();
        let json = serde_json::to_vec(&execution).unwrap();
        let (packed, packed_json) = (
            super::super::packing::pack(&bytes),
            super::super::packing::pack(&json),
        );
        assert!(
            bytes.len() * 10 < json.len() * 9,
            "{} bytes for {} of JSON",
            bytes.len(),
            json.len()
        );
        assert!(
            packed.len() <= packed_json.len(),
            "{} packed for {} of JSON packed",
            packed.len(),
            packed_json.len()
        );
    }
}
