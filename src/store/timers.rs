//! Durable timers and the waits they end, plus the workflow versions runs
//! were started with.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `timers` | due Unix ms (u64 big-endian), `\0`, timer id | [`Timer`] as JSON — walked in due order |
//! | `waits` | caller, `\0`, run id | JSON list of event kinds that end the wait early |
//! | `workflow_versions` | workflow name, `\0`, version | `{"file", "text"}`: the exact text a run started with |
//!
//! A timer fires once: whoever removes its key owns the firing, so a timer
//! and an early wake-up for the same wait cannot both resume a run.

use std::sync::atomic::Ordering;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// What a timer does when it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Timer {
    /// Resume a run paused in `wait`.
    Resume { run_id: String },
    /// A ringing call's `ring_timeout`: if it is still ringing, it was missed.
    RingTimeout { call_key: String },
}

impl Timer {
    fn id(&self) -> String {
        match self {
            Timer::Resume { run_id } => format!("resume\0{run_id}"),
            Timer::RingTimeout { call_key } => format!("ring\0{call_key}"),
        }
    }
}

fn timer_key(due: Timestamp, timer: &Timer) -> Vec<u8> {
    let ms = due.as_millisecond().max(0) as u64;
    let id = timer.id();
    let mut k = Vec::with_capacity(9 + id.len());
    k.extend_from_slice(&ms.to_be_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn pair_key(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + 1 + b.len());
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

/// A timer that is due, with the key that claims it.
#[derive(Debug, Clone)]
pub struct DueTimer {
    key: Vec<u8>,
    pub due: Timestamp,
    pub timer: Timer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredWorkflow {
    pub file: String,
    pub text: String,
}

impl Store {
    pub fn add_timer(&self, due: Timestamp, timer: &Timer) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(timer).expect("timers serialise");
        self.timers.insert(timer_key(due, timer), bytes)?;
        Ok(())
    }

    /// Remove a timer that has not fired. Returns whether it was there.
    pub fn cancel_timer(&self, due: Timestamp, timer: &Timer) -> Result<bool, StoreError> {
        Ok(self.timers.remove(timer_key(due, timer))?.is_some())
    }

    /// Timers due at or before `now`, oldest first.
    pub fn due_timers(&self, now: Timestamp, limit: usize) -> Result<Vec<DueTimer>, StoreError> {
        let end = (now.as_millisecond().max(0) as u64 + 1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.timers.range(..end.to_vec()).take(limit) {
            let (key, value) = item?;
            let ms = u64::from_be_bytes(key[..8].try_into().expect("8-byte prefix"));
            let timer: Timer =
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push(DueTimer {
                key: key.to_vec(),
                due: Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::UNIX_EPOCH),
                timer,
            });
        }
        Ok(out)
    }

    /// Claim a due timer: true for exactly one caller.
    pub fn take_timer(&self, due: &DueTimer) -> Result<bool, StoreError> {
        Ok(self.timers.remove(&due.key)?.is_some())
    }

    /// When the next timer is due.
    pub fn next_timer_due(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(match self.timers.first()? {
            None => None,
            Some((key, _)) => {
                let ms = u64::from_be_bytes(key[..8].try_into().expect("8-byte prefix"));
                Timestamp::from_millisecond(ms as i64).ok()
            }
        })
    }

    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Register a run waiting for `kinds` from `caller`.
    pub fn add_wait(&self, caller: &str, run_id: &str, kinds: &[String]) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(kinds).expect("kinds serialise");
        // Counted before it is in the tree, so that a count of zero always
        // means an empty tree (see `waits_for`).
        self.waits_count.fetch_add(1, Ordering::SeqCst);
        let inserted = self.waits.insert(pair_key(caller, run_id), bytes);
        // It replaced the same wait, counted already. A failed insert keeps
        // its count: sled can fail after the entry is in the tree, and a
        // count too high costs only a scan.
        if matches!(inserted, Ok(Some(_))) {
            self.waits_count.fetch_sub(1, Ordering::SeqCst);
        }
        inserted?;
        Ok(())
    }

    /// Runs waiting on this caller for this kind.
    pub fn waits_for(&self, caller: &str, kind: &str) -> Result<Vec<String>, StoreError> {
        // Every event asks, and mostly nothing waits: a scan of sled's
        // tree, even an empty one, was ≈1% of ingestion's CPU.
        if self.waits_count.load(Ordering::SeqCst) == 0 {
            return Ok(Vec::new());
        }
        let prefix = pair_key(caller, "");
        let mut out = Vec::new();
        for item in self.waits.scan_prefix(&prefix) {
            let (key, value) = item?;
            let kinds: Vec<String> = serde_json::from_slice(&value).unwrap_or_default();
            if kinds.iter().any(|k| k == kind) {
                out.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
            }
        }
        Ok(out)
    }

    pub fn remove_wait(&self, caller: &str, run_id: &str) -> Result<(), StoreError> {
        if self.waits.remove(pair_key(caller, run_id))?.is_some() {
            // Uncounted only once it is out of the tree.
            self.waits_count.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Keep the text of a workflow version a run started with.
    pub fn save_workflow_version(
        &self,
        name: &str,
        version: &str,
        file: &str,
        text: &str,
    ) -> Result<(), StoreError> {
        let key = pair_key(name, version);
        // Every run asks; only a version's first run of this process looks
        // in sled (versions are never removed from it).
        if self
            .versions_kept
            .lock()
            .expect("versions lock")
            .contains(&key)
        {
            return Ok(());
        }
        if !self.workflow_versions.contains_key(&key)? {
            let bytes = serde_json::to_vec(&StoredWorkflow {
                file: file.to_string(),
                text: text.to_string(),
            })
            .expect("serialise");
            self.workflow_versions.insert(&key, bytes)?;
        }
        self.versions_kept
            .lock()
            .expect("versions lock")
            .insert(key);
        Ok(())
    }

    pub fn workflow_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<StoredWorkflow>, StoreError> {
        match self.workflow_versions.get(pair_key(name, version))? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_come_back_in_due_order_and_fire_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 8 << 20).unwrap();
        let at = |x| Timestamp::from_second(x).unwrap();
        s.add_timer(at(30), &Timer::Resume { run_id: "b".into() })
            .unwrap();
        s.add_timer(
            at(10),
            &Timer::RingTimeout {
                call_key: "k".into(),
            },
        )
        .unwrap();
        s.add_timer(at(20), &Timer::Resume { run_id: "a".into() })
            .unwrap();
        assert_eq!(s.next_timer_due().unwrap(), Some(at(10)));
        let due = s.due_timers(at(20), 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(
            due[0].timer,
            Timer::RingTimeout {
                call_key: "k".into()
            }
        );
        assert!(s.take_timer(&due[0]).unwrap());
        assert!(!s.take_timer(&due[0]).unwrap(), "a timer fires once");
        assert!(s
            .cancel_timer(at(30), &Timer::Resume { run_id: "b".into() })
            .unwrap());
        assert_eq!(s.timer_count(), 1);
    }

    #[test]
    fn waits_are_found_by_caller_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 8 << 20).unwrap();
        s.add_wait("+52", "run_a", &["call.incoming".into(), "message".into()])
            .unwrap();
        s.add_wait("+52", "run_b", &["message".into()]).unwrap();
        s.add_wait("+34", "run_c", &["call.incoming".into()])
            .unwrap();
        assert_eq!(s.waits_for("+52", "call.incoming").unwrap(), vec!["run_a"]);
        assert_eq!(
            s.waits_for("+52", "message").unwrap(),
            vec!["run_a", "run_b"]
        );
        s.remove_wait("+52", "run_a").unwrap();
        assert_eq!(s.waits_for("+52", "message").unwrap(), vec!["run_b"]);
    }

    /// The count that lets an event skip the scan when nothing waits
    /// follows the tree: a replaced wait counts once, a removal of a wait
    /// that is not there changes nothing, and a reopened store counts what
    /// the tree holds.
    #[test]
    fn waits_are_found_after_replacements_removals_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 8 << 20).unwrap();
            assert!(s.waits_for("+52", "message").unwrap().is_empty());
            s.add_wait("+52", "run_a", &["message".into()]).unwrap();
            s.add_wait("+52", "run_a", &["message".into()]).unwrap();
            s.add_wait("+34", "run_b", &["message".into()]).unwrap();
            s.remove_wait("+52", "run_a").unwrap();
            s.remove_wait("+52", "run_a").unwrap();
            assert_eq!(s.waits_for("+34", "message").unwrap(), vec!["run_b"]);
            s.remove_wait("+99", "run_z").unwrap();
            assert_eq!(s.waits_for("+34", "message").unwrap(), vec!["run_b"]);
            assert_eq!(s.waits_count.load(Ordering::SeqCst), s.waits.len());
            s.flush_now().unwrap();
        }
        let s = Store::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(s.waits_for("+34", "message").unwrap(), vec!["run_b"]);
        s.remove_wait("+34", "run_b").unwrap();
        assert!(s.waits_for("+34", "message").unwrap().is_empty());
        s.add_wait("+34", "run_c", &["message".into()]).unwrap();
        assert_eq!(s.waits_for("+34", "message").unwrap(), vec!["run_c"]);
        assert_eq!(s.waits_count.load(Ordering::SeqCst), s.waits.len());
    }

    /// A version's text is stored by its first run, kept across restarts
    /// and never rewritten; after the first, the store answers its runs
    /// from memory.
    #[test]
    fn a_workflow_version_is_stored_once_and_then_known_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 8 << 20).unwrap();
            s.save_workflow_version("wf", "v1", "wf.yaml", "name: wf")
                .unwrap();
            s.save_workflow_version("wf", "v1", "wf.yaml", "changed text")
                .unwrap();
            let kept = s.workflow_version("wf", "v1").unwrap().unwrap();
            assert_eq!(kept.text, "name: wf", "the first text stays");
            // Gone from sled behind the store's back: a later run of the
            // version does not look again.
            s.workflow_versions.remove(pair_key("wf", "v1")).unwrap();
            s.save_workflow_version("wf", "v1", "wf.yaml", "name: wf")
                .unwrap();
            assert!(s.workflow_version("wf", "v1").unwrap().is_none());
            s.save_workflow_version("wf", "v2", "wf.yaml", "name: wf2")
                .unwrap();
            s.flush_now().unwrap();
        }
        let s = Store::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(
            s.workflow_version("wf", "v2").unwrap().unwrap().text,
            "name: wf2"
        );
        s.save_workflow_version("wf", "v2", "wf.yaml", "other")
            .unwrap();
        assert_eq!(
            s.workflow_version("wf", "v2").unwrap().unwrap().text,
            "name: wf2",
            "a new process finds it stored and leaves it"
        );
    }
}
