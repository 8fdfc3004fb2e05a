//! Execution records: one per workflow run, with every step's rendered
//! input, output, error, attempts and duration.
//!
//! Key: the run's sequence number, u64 big-endian, so the tree is in start
//! order and "newest first" is a reverse scan. The public id is `run_` and
//! the number in hex. Old records are pruned by age and count.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Store, StoreError};
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

    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Waiting,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Debounced,
            RunStatus::Stopped,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: String,
    pub workflow: String,
    pub workflow_version: String,
    pub file: String,
    pub status: RunStatus,
    pub event: Event,
    pub started_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Injected through the test endpoint rather than a provider.
    #[serde(default)]
    pub test: bool,
    pub steps: Vec<StepRecord>,
}

/// Filters for [`Store::list_executions`].
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
}

pub fn run_id(seq: u64) -> String {
    format!("run_{seq:016x}")
}

fn seq_of(id: &str) -> Option<u64> {
    u64::from_str_radix(id.strip_prefix("run_")?, 16).ok()
}

impl Store {
    /// A fresh, unique, time-ordered run id.
    pub fn next_run_id(&self) -> Result<String, StoreError> {
        Ok(run_id(self.db.generate_id()?))
    }

    /// Insert or replace an execution record.
    pub fn save_execution(&self, e: &Execution) -> Result<(), StoreError> {
        let seq =
            seq_of(&e.id).ok_or_else(|| StoreError::Corrupt(format!("bad run id {}", e.id)))?;
        let bytes = serde_json::to_vec(e).map_err(|err| StoreError::Corrupt(err.to_string()))?;
        self.executions.insert(seq.to_be_bytes(), bytes)?;
        Ok(())
    }

    pub fn execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let Some(seq) = seq_of(id) else {
            return Ok(None);
        };
        match self.executions.get(seq.to_be_bytes())? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
        }
    }

    /// Newest first, after `cursor` (a run id), filtered.
    pub fn list_executions(
        &self,
        filter: &ExecutionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Execution>, Option<String>), StoreError> {
        let end = cursor.and_then(seq_of).unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut next = None;
        for item in self.executions.range(..end.to_be_bytes()).rev() {
            let (_, bytes) = item?;
            let e: Execution =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
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
        self.executions.len()
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
        let mut excess = self.executions.len().saturating_sub(max_count);
        let mut removed = 0;
        for item in self.executions.iter() {
            let (key, bytes) = item?;
            let e: Execution = match serde_json::from_slice(&bytes) {
                Ok(e) => e,
                Err(_) => {
                    self.executions.remove(&key)?;
                    removed += 1;
                    continue;
                }
            };
            let old = e.started_at.as_millisecond() < cutoff;
            if !old && excess == 0 {
                break;
            }
            if e.status.is_finished() {
                self.executions.remove(&key)?;
                removed += 1;
                excess = excess.saturating_sub(1);
            }
        }
        Ok(removed)
    }
}
