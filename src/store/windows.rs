//! Time windows for `debounce` and `count`, kept in sled so they survive a
//! restart.
//!
//! Keys: `d` or `c`, `\0`, workflow name, `\0`, rendered key. Values record
//! which event last touched the window, so re-running the same event (after
//! a crash) is idempotent: it neither debounces itself nor counts twice.
//!
//! | kind | value |
//! |---|---|
//! | debounce | JSON `{"at": ms, "event": id, "until": ms}` of the last run that passed |
//! | count | JSON `{"hits": [[ms, id], ...], "until": ms}` within the window |

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

fn key(kind: u8, workflow: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + workflow.len() + key.len());
    k.push(kind);
    k.push(0);
    k.extend_from_slice(workflow.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

#[derive(Debug, Serialize, Deserialize)]
struct DebounceEntry {
    at: i64,
    event: String,
    until: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CountEntry {
    hits: Vec<(i64, String)>,
    until: i64,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Store {
    /// Pass (true) or debounce (false) this event: it passes unless another
    /// event of this workflow passed with the same key within `window`.
    pub fn debounce(
        &self,
        workflow: &str,
        debounce_key: &str,
        window: Duration,
        now: Timestamp,
        event_id: &str,
    ) -> Result<bool, StoreError> {
        let k = key(b'd', workflow, debounce_key);
        let now_ms = now.as_millisecond();
        let mut passed = true;
        self.windows.fetch_and_update(&k, |old| {
            let prev: Option<DebounceEntry> = old.and_then(|b| serde_json::from_slice(b).ok());
            match prev {
                Some(p) if p.event != event_id && now_ms - p.at < millis(window) => {
                    passed = false;
                    old.map(<[u8]>::to_vec)
                }
                Some(p) if p.event == event_id => {
                    passed = true;
                    old.map(<[u8]>::to_vec)
                }
                _ => {
                    passed = true;
                    let entry = DebounceEntry {
                        at: now_ms,
                        event: event_id.to_string(),
                        until: now_ms + millis(window),
                    };
                    Some(serde_json::to_vec(&entry).expect("serialise"))
                }
            }
        })?;
        Ok(passed)
    }

    /// Count events with this key within `within`, this one included (once,
    /// however often the same event is counted).
    pub fn count(
        &self,
        workflow: &str,
        count_key: &str,
        within: Duration,
        now: Timestamp,
        event_id: &str,
    ) -> Result<usize, StoreError> {
        let k = key(b'c', workflow, count_key);
        let now_ms = now.as_millisecond();
        let window = millis(within);
        let mut count = 0;
        self.windows.fetch_and_update(&k, |old| {
            let mut entry: CountEntry = old
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            entry.hits.retain(|(at, _)| now_ms - at < window);
            if !entry.hits.iter().any(|(_, id)| id == event_id) {
                entry.hits.push((now_ms, event_id.to_string()));
            }
            entry.until = now_ms + window;
            count = entry.hits.len();
            Some(serde_json::to_vec(&entry).expect("serialise"))
        })?;
        Ok(count)
    }

    /// Remove windows that ended before `now`.
    pub fn prune_windows(&self, now: Timestamp) -> Result<usize, StoreError> {
        #[derive(Deserialize)]
        struct Until {
            until: i64,
        }
        let now_ms = now.as_millisecond();
        let mut removed = 0;
        for item in self.windows.iter() {
            let (k, v) = item?;
            let expired = serde_json::from_slice::<Until>(&v)
                .map(|u| u.until < now_ms)
                .unwrap_or(true);
            if expired {
                // Only remove the value we looked at; a concurrent update wins.
                if self
                    .windows
                    .compare_and_swap(&k, Some(v), None as Option<&[u8]>)?
                    .is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn debounce_passes_once_per_window_and_is_idempotent_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 8 << 20).unwrap();
        let w = Duration::from_secs(120);
        assert!(s.debounce("wf", "+52", w, at(0), "e1").unwrap());
        assert!(
            s.debounce("wf", "+52", w, at(0), "e1").unwrap(),
            "the same event passes again"
        );
        assert!(!s.debounce("wf", "+52", w, at(60), "e2").unwrap());
        assert!(
            s.debounce("wf", "+34", w, at(60), "e3").unwrap(),
            "another key has its own window"
        );
        assert!(
            s.debounce("other", "+52", w, at(60), "e2").unwrap(),
            "another workflow too"
        );
        assert!(s.debounce("wf", "+52", w, at(121), "e4").unwrap());
    }

    #[test]
    fn count_counts_within_the_window_once_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 8 << 20).unwrap();
        let w = Duration::from_secs(600);
        for i in 0..5 {
            assert_eq!(
                s.count("wf", "k", w, at(i * 60), &format!("e{i}")).unwrap(),
                i as usize + 1
            );
        }
        assert_eq!(
            s.count("wf", "k", w, at(240), "e4").unwrap(),
            5,
            "recounting an event changes nothing"
        );
        assert_eq!(
            s.count("wf", "k", w, at(700), "e9").unwrap(),
            4,
            "the first two fell out of the window"
        );
        assert_eq!(s.prune_windows(at(10_000)).unwrap(), 1);
    }
}
