//! Call state: each call's events correlated (by call id, else caller and
//! business), so ringback can say which calls are ringing or connected and
//! synthesise a missed call for providers that never report one.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `calls` | source, `\0`, call id or `caller/business` | [`CallState`], compact (`compact.rs`; earlier versions: JSON) |
//!
//! A call that ended stays as a tombstone for [`TOMBSTONE_FOR`], so a late
//! or redelivered event (a `call.received` after the missed call, a
//! `terminate` before the `connect`) cannot reopen it as a ghost.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{compact, Store, StoreError};
use crate::event::{kind, Direction, Event};

/// How long an ended call is remembered.
pub const TOMBSTONE_FOR: Duration = Duration::from_secs(15 * 60);
/// An active call with no event for this long is no longer listed.
pub const ACTIVE_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallPhase {
    Ringing,
    Connected,
    Ended,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallState {
    pub key: String,
    pub state: CallPhase,
    pub source: String,
    pub caller: Option<String>,
    pub business: Option<String>,
    pub call_id: Option<String>,
    pub direction: crate::event::Direction,
    pub video: bool,
    pub started_at: Timestamp,
    pub last_event_at: Timestamp,
    pub last_kind: String,
    /// Provider time of the latest event.
    #[serde(default = "epoch")]
    pub last_at: Timestamp,
    /// The event that started the ringing (for a synthetic missed call).
    pub first_event_id: String,
    /// The call was started by a test event (`POST
    /// /api/sources/{source}/test`), so its synthetic missed call is a test
    /// too. States stored before this field were real calls.
    #[serde(default)]
    pub test: bool,
}

fn epoch() -> Timestamp {
    Timestamp::UNIX_EPOCH
}

const VIDEO: u8 = 1;
const TEST: u8 = 2;

impl CallState {
    /// The stored form (`compact.rs`). The key is the sled key, not
    /// repeated in the value.
    fn encode(&self) -> Vec<u8> {
        let phase = match self.state {
            CallPhase::Ringing => 0,
            CallPhase::Connected => 1,
            CallPhase::Ended => 2,
        };
        let direction = match self.direction {
            Direction::Incoming => 0,
            Direction::Outgoing => 1,
        };
        let flags = if self.video { VIDEO } else { 0 } | if self.test { TEST } else { 0 };
        compact::Writer::new(160)
            .u8(phase)
            .u8(direction)
            .u8(flags)
            .time(self.started_at)
            .time(self.last_event_at)
            .time(self.last_at)
            .str(&self.source)
            .opt_str(self.caller.as_deref())
            .opt_str(self.business.as_deref())
            .opt_str(self.call_id.as_deref())
            .str(&self.last_kind)
            .str(&self.first_event_id)
            .finish()
    }

    /// The state stored under `key`, compact or, from an earlier version,
    /// JSON.
    fn decode(key: &str, stored: &[u8]) -> Result<CallState, String> {
        compact::read_record(stored, |r| {
            let state = match r.u8("state")? {
                0 => CallPhase::Ringing,
                1 => CallPhase::Connected,
                2 => CallPhase::Ended,
                other => return Err(format!("call state: unknown phase {other}")),
            };
            let direction = match r.u8("direction")? {
                0 => Direction::Incoming,
                1 => Direction::Outgoing,
                other => return Err(format!("call state: unknown direction {other}")),
            };
            let flags = r.u8("flags")?;
            let opt = |s: Option<&str>| s.map(str::to_string);
            Ok(CallState {
                key: key.to_string(),
                state,
                direction,
                video: flags & VIDEO != 0,
                test: flags & TEST != 0,
                started_at: r.time("started_at")?,
                last_event_at: r.time("last_event_at")?,
                last_at: r.time("last_at")?,
                source: r.str("source")?.to_string(),
                caller: opt(r.opt_str("caller")?),
                business: opt(r.opt_str("business")?),
                call_id: opt(r.opt_str("call_id")?),
                last_kind: r.str("last_kind")?.to_string(),
                first_event_id: r.str("first_event_id")?.to_string(),
            })
        })
    }
}

/// A stored state read back, `None` when it cannot be read (an unreadable
/// state is treated as no state, as it always was).
fn read_state(key: &[u8], stored: &[u8]) -> Option<CallState> {
    CallState::decode(std::str::from_utf8(key).ok()?, stored).ok()
}

/// What an event did to its call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallChange {
    /// Not a call event, or no way to correlate it.
    Untracked,
    /// A new call started ringing.
    Ringing(CallState),
    /// The event moved a known call along, or ended it.
    Updated(CallState),
    /// The call had already ended: the event changed nothing.
    Late(CallState),
}

/// The correlation key of an event's call.
pub fn call_key(e: &Event) -> Option<String> {
    match (&e.call_id, &e.caller) {
        (Some(id), _) => Some(format!("{}\0{id}", e.source)),
        (None, Some(caller)) => Some(format!(
            "{}\0{caller}/{}",
            e.source,
            e.business.as_deref().unwrap_or("")
        )),
        _ => None,
    }
}

fn is_tracked(k: &str) -> bool {
    kind::is_call(k)
}

impl Store {
    /// Apply an event to its call's state, atomically.
    pub fn track_call(&self, e: &Event, now: Timestamp) -> Result<CallChange, StoreError> {
        if !is_tracked(&e.kind) {
            return Ok(CallChange::Untracked);
        }
        let Some(key) = call_key(e) else {
            return Ok(CallChange::Untracked);
        };
        let mut change = CallChange::Untracked;
        // Every path below sets `change`: the closure may run more than once.
        super::update_guessing_absent(&self.calls, key.as_bytes(), |old| {
            let prev: Option<CallState> = old.and_then(|b| CallState::decode(&key, b).ok());
            let fresh = |phase| CallState {
                key: key.clone(),
                state: phase,
                source: e.source.clone(),
                caller: e.caller.clone(),
                business: e.business.clone(),
                call_id: e.call_id.clone(),
                direction: e.direction,
                video: e.video,
                started_at: e.at,
                last_event_at: now,
                last_kind: e.kind.clone(),
                last_at: e.at,
                first_event_id: e.id.clone(),
                test: e.test,
            };
            // Without a call id, the same number calling again after its last
            // call ended is a new call, not a late event of the old one.
            let new_call = |p: &CallState| {
                e.call_id.is_none() && e.kind == kind::CALL_INCOMING && e.at > p.last_at
            };
            let next = match prev {
                Some(p) if p.state == CallPhase::Ended && !new_call(&p) => {
                    change = CallChange::Late(p.clone());
                    return old.map(<[u8]>::to_vec);
                }
                Some(mut p) if p.state != CallPhase::Ended => {
                    p.last_event_at = now;
                    p.last_kind = e.kind.clone();
                    if e.at > p.last_at {
                        p.last_at = e.at;
                    }
                    p.state = match e.kind.as_str() {
                        kind::CALL_INCOMING => p.state,
                        kind::CALL_ACCEPTED => CallPhase::Connected,
                        _ => CallPhase::Ended,
                    };
                    change = CallChange::Updated(p.clone());
                    p
                }
                // No call yet, or a new call from a number whose last call ended.
                _ => {
                    let phase = match e.kind.as_str() {
                        kind::CALL_INCOMING => CallPhase::Ringing,
                        kind::CALL_ACCEPTED => CallPhase::Connected,
                        _ => CallPhase::Ended,
                    };
                    let s = fresh(phase);
                    change = if phase == CallPhase::Ringing {
                        CallChange::Ringing(s.clone())
                    } else {
                        CallChange::Updated(s.clone())
                    };
                    s
                }
            };
            Some(next.encode())
        })?;
        Ok(change)
    }

    /// The state of one call.
    pub fn call_state(&self, key: &str) -> Result<Option<CallState>, StoreError> {
        match self.calls.get(key.as_bytes())? {
            None => Ok(None),
            Some(b) => Ok(read_state(key.as_bytes(), &b)),
        }
    }

    /// End a call that is still ringing; returns its state if it was.
    pub fn end_if_ringing(
        &self,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<CallState>, StoreError> {
        let mut ended = None;
        self.calls.fetch_and_update(key.as_bytes(), |old| {
            let mut s: CallState = match old.and_then(|b| read_state(key.as_bytes(), b)) {
                Some(s) => s,
                None => {
                    ended = None;
                    return old.map(<[u8]>::to_vec);
                }
            };
            if s.state != CallPhase::Ringing {
                ended = None;
                return old.map(<[u8]>::to_vec);
            }
            ended = Some(s.clone());
            s.state = CallPhase::Ended;
            s.last_event_at = now;
            s.last_kind = kind::CALL_MISSED.to_string();
            Some(s.encode())
        })?;
        Ok(ended)
    }

    /// Ringing or connected calls with an event in the last minute.
    pub fn active_calls(&self, now: Timestamp) -> Result<Vec<CallState>, StoreError> {
        let cutoff = now.as_millisecond() - ACTIVE_FOR.as_millis() as i64;
        let mut out = Vec::new();
        for item in self.calls.iter() {
            let (k, v) = item?;
            if let Some(s) = read_state(&k, &v) {
                if s.state != CallPhase::Ended && s.last_event_at.as_millisecond() >= cutoff {
                    out.push(s);
                }
            }
        }
        out.sort_by_key(|s| s.started_at);
        Ok(out)
    }

    /// Forget ended calls after [`TOMBSTONE_FOR`] and silent ones after a day.
    pub fn prune_calls(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut removed = 0;
        for item in self.calls.iter() {
            let (k, v) = item?;
            let Some(s) = read_state(&k, &v) else {
                self.calls.remove(&k)?;
                continue;
            };
            let age = now.as_millisecond() - s.last_event_at.as_millisecond();
            let limit = if s.state == CallPhase::Ended {
                TOMBSTONE_FOR.as_millis() as i64
            } else {
                86_400_000
            };
            if age > limit
                && self
                    .calls
                    .compare_and_swap(&k, Some(v), None as Option<&[u8]>)?
                    .is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64, nanos: i32) -> Timestamp {
        Timestamp::new(second, nanos).unwrap()
    }

    /// Every field survives the compact form, both ways of each option and
    /// flag included.
    #[test]
    fn a_call_state_reads_back_as_written() {
        let full = CallState {
            key: "meta\0wacid.HBgLMTIwNjU1NTEyMzQVAgARGBI".into(),
            state: CallPhase::Connected,
            source: "meta".into(),
            caller: Some("+12065551234".into()),
            business: Some("+15551234567".into()),
            call_id: Some("wacid.HBgLMTIwNjU1NTEyMzQVAgARGBI".into()),
            direction: Direction::Outgoing,
            video: true,
            started_at: at(1_800_000_000, 0),
            last_event_at: at(1_800_000_003, 123_456_789),
            last_kind: "call.accepted".into(),
            last_at: at(1_800_000_002, 5),
            first_event_id: "evt_5e2a9c0d7b3f41e8a6c2d9f0".into(),
            test: true,
        };
        let bare = CallState {
            key: "wz\0+5215512345678/".into(),
            state: CallPhase::Ended,
            caller: None,
            business: None,
            call_id: None,
            direction: Direction::Incoming,
            video: false,
            test: false,
            ..full.clone()
        };
        for state in [full, bare] {
            let stored = state.encode();
            assert!(
                stored.len() * 2 < serde_json::to_vec(&state).unwrap().len(),
                "{} bytes",
                stored.len()
            );
            assert_eq!(CallState::decode(&state.key, &stored).unwrap(), state);
            let cut = &stored[..stored.len() - 1];
            assert!(CallState::decode(&state.key, cut).is_err());
            let longer = [stored.as_slice(), &[0]].concat();
            assert!(CallState::decode(&state.key, &longer).is_err());
        }
    }

    /// A state an earlier version stored as JSON is read, and the next
    /// change stores it compact.
    #[test]
    fn a_call_state_stored_as_json_is_read_and_rewritten_compact() {
        let (_dir, store) = crate::store::temp_store();
        let key = "waha\0C1";
        let stored = r#"{"key":"waha\u0000C1","state":"ringing","source":"waha","caller":"+5215512345678","business":"+5215500000000","call_id":"C1","direction":"incoming","video":false,"started_at":"2026-05-14T14:00:00Z","last_event_at":"2026-05-14T14:00:01Z","last_kind":"call.incoming","last_at":"2026-05-14T14:00:00Z","first_event_id":"e1","test":false}"#;
        store.calls.insert(key, stored.as_bytes()).unwrap();
        let before = store
            .call_state(key)
            .unwrap()
            .expect("the JSON state reads");
        assert_eq!(before.key, key);
        assert_eq!(before.caller.as_deref(), Some("+5215512345678"));

        let now: Timestamp = "2026-05-14T14:01:00Z".parse().unwrap();
        let ended = store.end_if_ringing(key, now).unwrap();
        assert_eq!(ended, Some(before.clone()));
        let value = store.calls.get(key).unwrap().unwrap();
        assert_eq!(value[0], compact::MARK);
        let after = store.call_state(key).unwrap().unwrap();
        assert_eq!(after.state, CallPhase::Ended);
        assert_eq!(after.last_kind, kind::CALL_MISSED);
        assert_eq!(after.last_event_at, now);
        assert_eq!(
            CallState {
                state: CallPhase::Ringing,
                last_kind: before.last_kind.clone(),
                last_event_at: before.last_event_at,
                ..after
            },
            before
        );
    }

    /// A call state stored before `test` existed reads as a real call's.
    #[test]
    fn a_call_state_stored_before_the_test_flag_reads_as_a_real_call() {
        let stored = r#"{"key":"waha\u0000C1","state":"ringing","source":"waha","caller":"+5215512345678","business":"+5215500000000","call_id":"C1","direction":"incoming","video":false,"started_at":"2026-05-14T14:00:00Z","last_event_at":"2026-05-14T14:00:01Z","last_kind":"call.incoming","last_at":"2026-05-14T14:00:00Z","first_event_id":"e1"}"#;
        let state: CallState = serde_json::from_str(stored).expect("still reads");
        assert!(!state.test);
        assert_eq!(state.state, CallPhase::Ringing);
    }
}
