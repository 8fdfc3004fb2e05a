//! What an operator graphs: `GET /metrics` in the Prometheus/OpenMetrics
//! text format (SPEC §6), through the `prometheus-client` crate.
//!
//! One [`Metrics`] per running server (no process-wide registry), shared by
//! ingestion, the engine and the HTTP layer. Counters start at zero on every
//! start, as Prometheus expects; rates and increases are computed by it.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `ringback_events_total` | source, kind, outcome | webhook events: `accepted`, `duplicate`, `rejected` (kind `unknown` when it could not be read; one per item a batch left out) |
//! | `ringback_runs_total` | workflow, status | runs that finished (succeeded, failed, stopped, debounced) |
//! | `ringback_step_duration_seconds` | workflow, kind | how long steps took (a `wait` counts its wait) |
//! | `ringback_outbound_attempts_total` | connector, status | each attempt: HTTP status, `error` (no answer) or `logged` |
//! | `ringback_missed_calls_total` | | `call.missed` events processed |
//! | `ringback_missed_calls_followed_up_total` | | missed calls whose caller got a message from a run of that call |
//! | `ringback_missed_calls_without_followup` | | the difference, now (calls still in a wait count here until they are followed up) |
//! | `ringback_missed_call_followup_seconds` | | from the missed call to its first follow-up delivered |
//! | `ringback_inbox_write_seconds` | | each inbox log batch's write and `fdatasync`: the disk wait every webhook answer shares |
//! | `ringback_events_pending` | | accepted events the engine has not finished with, now (read from the store at each scrape): the backlog runs work off after a burst |
//!
//! Label values come from configuration (sources, connectors, workflows) and
//! from event kinds of verified events, never from unauthenticated input:
//! a request to an unknown source is not counted, so it cannot grow the
//! label space.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::event::{kind, Event};
use jiff::Timestamp;

fn is_missed_call(event: &Event) -> bool {
    event.kind == kind::CALL_MISSED && !event.test
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How many followed-up missed calls are remembered, so a call that two
/// workflows (or a retried run) follow up counts once.
const REMEMBERED_FOLLOW_UPS: usize = 100_000;

/// Buckets from half a millisecond to an hour: steps are fast, waits and
/// follow-ups after a retry are not.
const SECONDS_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    source: String,
    kind: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    workflow: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    workflow: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    connector: String,
    status: String,
}

/// Buckets from 50 µs to a second: a healthy disk syncs in a fraction of
/// a millisecond; a stalled one holds every acknowledgement back.
const DISK_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

/// Whether an event was taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventOutcome {
    Accepted,
    Duplicate,
    Rejected,
}

impl EventOutcome {
    fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Accepted => "accepted",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Rejected => "rejected",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    runs: Family<RunLabels, Counter>,
    steps: Family<StepLabels, Histogram, fn() -> Histogram>,
    attempts: Family<AttemptLabels, Counter>,
    missed: Counter,
    followed_up: Counter,
    without_followup: Gauge,
    pending: Gauge,
    followup_seconds: Histogram,
    inbox_write_seconds: Histogram,
    /// Missed calls (event ids) already counted as followed up, oldest
    /// first, bounded.
    followed: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ringback");
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Webhook events by source, kind and outcome (accepted, duplicate, rejected)",
            events.clone(),
        );
        let runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "runs",
            "Workflow runs that finished, by workflow and status",
            runs.clone(),
        );
        let steps: Family<StepLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds_histogram);
        registry.register(
            "step_duration_seconds",
            "Step durations by workflow and step kind",
            steps.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "outbound_attempts",
            "Outbound attempts by connector and result (HTTP status, error or logged)",
            attempts.clone(),
        );
        let missed = Counter::default();
        registry.register("missed_calls", "Missed calls processed", missed.clone());
        let followed_up = Counter::default();
        registry.register(
            "missed_calls_followed_up",
            "Missed calls whose caller got a follow-up message from a run of that call",
            followed_up.clone(),
        );
        let without_followup = Gauge::default();
        registry.register(
            "missed_calls_without_followup",
            "Missed calls processed since start that have no follow-up (yet)",
            without_followup.clone(),
        );
        let followup_seconds = seconds_histogram();
        registry.register(
            "missed_call_followup_seconds",
            "Time from a missed call to its first follow-up delivered",
            followup_seconds.clone(),
        );
        let inbox_write_seconds = Histogram::new(DISK_BUCKETS);
        registry.register(
            "inbox_write_seconds",
            "Each inbox log batch's write and sync to disk, which every webhook answer waits for",
            inbox_write_seconds.clone(),
        );
        let pending = Gauge::default();
        registry.register(
            "events_pending",
            "Accepted events the engine has not finished with (its backlog, events in progress included)",
            pending.clone(),
        );
        Metrics {
            registry,
            events,
            runs,
            steps,
            attempts,
            missed,
            followed_up,
            without_followup,
            pending,
            followup_seconds,
            inbox_write_seconds,
            followed: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// How many accepted events the engine has not finished with, now.
    pub fn set_events_pending(&self, n: usize) {
        self.pending.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// One inbox log batch written and synced in `took`.
    pub fn inbox_write(&self, took: std::time::Duration) {
        self.inbox_write_seconds.observe(took.as_secs_f64());
    }

    /// A webhook to `source` refused before its events could be read
    /// (authentication, size, shape), or one item of a batch left out.
    pub fn rejected(&self, source: &str) {
        self.event(source, None, EventOutcome::Rejected);
    }

    /// An event offered to the inbox: new, or a duplicate. Test events
    /// (`POST /api/sources/{source}/test`) are not provider traffic and
    /// are not counted.
    pub fn event_stored(&self, event: &Event, accepted: bool) {
        if event.test {
            return;
        }
        let outcome = if accepted {
            EventOutcome::Accepted
        } else {
            EventOutcome::Duplicate
        };
        self.event(&event.source, Some(&event.kind), outcome);
    }

    /// `kind` is `None` when the body could not be read as events.
    fn event(&self, source: &str, kind: Option<&str>, outcome: EventOutcome) {
        self.events
            .get_or_create(&EventLabels {
                source: source.to_string(),
                kind: kind.unwrap_or("unknown").to_string(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub fn run_finished(&self, workflow: &str, status: &'static str) {
        self.runs
            .get_or_create(&RunLabels {
                workflow: workflow.to_string(),
                status,
            })
            .inc();
    }

    pub fn step(&self, workflow: &str, kind: &str, seconds: f64) {
        self.steps
            .get_or_create(&StepLabels {
                workflow: workflow.to_string(),
                kind: kind.to_string(),
            })
            .observe(seconds);
    }

    /// One outbound attempt; `status` is the HTTP status when there was an
    /// answer.
    pub fn attempt(&self, connector: &str, status: Option<u16>, failed: bool) {
        let status = match (status, failed) {
            (Some(code), _) => code.to_string(),
            (None, true) => "error".to_string(),
            (None, false) => "logged".to_string(),
        };
        self.attempts
            .get_or_create(&AttemptLabels {
                connector: connector.to_string(),
                status,
            })
            .inc();
    }

    /// An event the engine processes: a missed call counts (test events
    /// are nobody's call and stay out of the business figures).
    pub fn event_processed(&self, event: &Event) {
        if is_missed_call(event) {
            self.missed.inc();
            self.without_followup.inc();
        }
    }

    /// A message reached the caller of `event` at `at`: the follow-up of
    /// that event when it is a missed call. Counted once per call.
    pub fn caller_messaged(&self, event: &Event, at: Timestamp) {
        if !is_missed_call(event) {
            return;
        }
        let seconds = (at.as_millisecond() - event.at.as_millisecond()) as f64 / 1000.0;
        self.followed_up(&event.id, seconds);
    }

    fn followed_up(&self, event_id: &str, seconds: f64) {
        {
            let mut guard = self.followed.lock().expect("follow-ups lock");
            let (seen, order) = &mut *guard;
            if !seen.insert(event_id.to_string()) {
                return;
            }
            order.push_back(event_id.to_string());
            if order.len() > REMEMBERED_FOLLOW_UPS {
                if let Some(old) = order.pop_front() {
                    seen.remove(&old);
                }
            }
        }
        self.followed_up.inc();
        self.without_followup.dec();
        self.followup_seconds.observe(seconds.max(0.0));
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missed(id: &str) -> Event {
        let ctx = crate::event::ParseContext {
            source: "wazzap",
            provider: crate::event::Provider::Wazzap,
            business: None,
            received_at: Timestamp::UNIX_EPOCH,
            delivery_id: None,
        };
        let body = format!(
            r#"{{"event": "call.missed", "phone": "+5215512345678", "ts": "2026-05-14T14:32:11Z", "id": "{id}"}}"#
        );
        crate::event::parse(body.as_bytes(), &ctx)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn test_events_stay_out_of_the_business_figures() {
        let m = Metrics::new();
        let mut e = missed("evt_1");
        e.test = true;
        m.event_stored(&e, true);
        m.event_processed(&e);
        m.caller_messaged(&e, e.at);
        let text = m.render();
        assert!(text.contains("ringback_missed_calls_total 0\n"), "{text}");
        assert!(
            text.contains("ringback_missed_calls_followed_up_total 0\n"),
            "{text}"
        );
        assert!(!text.contains("outcome=\"accepted\""), "{text}");
    }

    #[test]
    fn a_missed_call_followed_up_twice_counts_once() {
        let m = Metrics::new();
        m.event_processed(&missed("evt_1"));
        m.event_processed(&missed("evt_2"));
        m.followed_up("evt_1", 1.5);
        m.followed_up("evt_1", 2.0);
        let text = m.render();
        assert!(text.contains("ringback_missed_calls_total 2\n"), "{text}");
        assert!(
            text.contains("ringback_missed_calls_followed_up_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ringback_missed_calls_without_followup 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ringback_missed_call_followup_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ringback_missed_call_followup_seconds_sum 1.5\n"),
            "{text}"
        );
    }

    #[test]
    fn labels_are_written_as_given() {
        let m = Metrics::new();
        m.event_stored(&missed("evt_1"), true);
        m.rejected("wazzap");
        m.attempt("whatsapp", Some(503), true);
        m.attempt("whatsapp", None, true);
        let text = m.render();
        assert!(text.contains(
            "ringback_events_total{source=\"wazzap\",kind=\"call.missed\",outcome=\"accepted\"} 1"
        ), "{text}");
        assert!(
            text.contains(
                "ringback_events_total{source=\"wazzap\",kind=\"unknown\",outcome=\"rejected\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ringback_outbound_attempts_total{connector=\"whatsapp\",status=\"503\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ringback_outbound_attempts_total{connector=\"whatsapp\",status=\"error\"} 1"
            ),
            "{text}"
        );
    }
}
