//! Running one test file: each case in its own throwaway store, with its
//! own simulated clock and canned answers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};

use super::expect::{diff, matches};
use super::{parse_as_received, Expect, TestCase, TestFile, DEFAULT_START, MAX_SETTLE};
use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::rehearsal::Rehearsal;
use crate::engine::Engine;
use crate::store::{Contact, Execution, ExecutionFilter, StepStatus, Store};
use crate::workflow::{compile, step_at, Workflow};

/// The source id of events when no configured source takes the payload.
const TEST_SOURCE: &str = "test";
/// A case stops following timers after this many (a workflow that keeps
/// scheduling itself would otherwise never settle).
const MAX_TIMER_STEPS: usize = 10_000;
/// A case's store needs little cache.
const CACHE_BYTES: u64 = 4 << 20;

/// What came of one file.
#[derive(Debug)]
pub struct FileReport {
    pub file: String,
    /// Problems that kept the file from running at all (its workflow does
    /// not compile, say).
    pub problems: Vec<String>,
    pub cases: Vec<CaseReport>,
}

/// What came of one case.
#[derive(Debug)]
pub struct CaseReport {
    pub name: String,
    pub at: String,
    /// Each failed expectation, explained; empty when the case passed.
    pub failures: Vec<String>,
    /// Worth knowing even when the case passed.
    pub notes: Vec<String>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A clock that moves only when told.
struct SimulatedClock(Mutex<Timestamp>);

impl SimulatedClock {
    fn set(&self, t: Timestamp) {
        *self.0.lock().expect("clock lock") = t;
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}

/// Run every case of `file` against `config`'s connectors and sources.
pub async fn run_file(file: &TestFile, config: &Arc<Config>) -> FileReport {
    let mut report = FileReport {
        file: file.file.clone(),
        problems: Vec::new(),
        cases: Vec::new(),
    };
    let workflow = match load_workflow(file, config) {
        Ok(w) => Arc::new(w),
        Err(problems) => {
            report.problems = problems;
            return report;
        }
    };
    for case in &file.cases {
        let outcome = run_case(case, &workflow, config).await;
        report.cases.push(match outcome {
            Ok(r) => r,
            Err(problem) => CaseReport {
                name: case.name.clone(),
                at: case.at.clone(),
                failures: vec![problem],
                notes: Vec::new(),
            },
        });
    }
    report
}

fn load_workflow(file: &TestFile, config: &Config) -> Result<Workflow, Vec<String>> {
    let path = &file.workflow;
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![format!(
            "cannot read the workflow under test {}: {e} (name it with `workflow:`)",
            path.display()
        )]
    })?;
    let stem = crate::reload::workflow_stem(path);
    compile(
        &path.display().to_string(),
        &stem,
        &text,
        &crate::reload::known_names(config),
    )
    .map_err(|errs| errs.iter().map(|d| d.to_string()).collect())
}

async fn run_case(
    case: &TestCase,
    workflow: &Arc<Workflow>,
    config: &Arc<Config>,
) -> Result<CaseReport, String> {
    let scratch = tempfile::Builder::new()
        .prefix("ringback-test-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary store: {e}"))?;
    let store = Store::open(scratch.path(), CACHE_BYTES).map_err(|e| e.to_string())?;

    // Time starts where the case says, else at the first event's own time,
    // so payload timestamps and "now" agree (ring timeouts count from the
    // provider's time).
    let default_start: Timestamp = DEFAULT_START.parse().expect("a valid default start");
    let first_at = case.events.first().and_then(|e| {
        parse_as_received(
            &e.body,
            e.provider,
            e.source.as_deref(),
            config,
            default_start,
            TEST_SOURCE,
        )
        .ok()
        .and_then(|events| events.first().map(|ev| ev.at))
    });
    let start = case.start.or(first_at).unwrap_or(default_start);
    let clock = Arc::new(SimulatedClock(Mutex::new(start)));

    for seed in &case.contacts {
        let contact = Contact {
            name: seed.name.clone(),
            country: seed.country.clone(),
            tags: seed.tags.iter().cloned().collect(),
            fields: seed.fields.clone(),
            ..Contact::new(&seed.phone, start)
        };
        store
            .modify_contact(&seed.phone, start, Some(contact.clone()), |c| {
                *c = contact.clone()
            })
            .map_err(|e| format!("cannot store the starting contact {}: {e}", seed.phone))?;
    }

    let rehearsal = Arc::new(Rehearsal::new(
        config.connectors.clone(),
        clock.clone(),
        case.answers.clone(),
    ));
    let engine = Engine::for_workflow(
        store.clone(),
        workflow.clone(),
        rehearsal.clone(),
        clock.clone(),
    )
    .with_config(Arc::new(RwLock::new(config.clone())));

    let mut notes = Vec::new();
    let mut now = start;
    for (i, item) in case.events.iter().enumerate() {
        now = add(now, item.after);
        advance(&engine, &clock, now, &mut notes).await;
        let events = parse_as_received(
            &item.body,
            item.provider,
            item.source.as_deref(),
            config,
            now,
            TEST_SOURCE,
        )
        .map_err(|e| format!("event {} ({}): {e}", i + 1, item.origin))?;
        let inserted = store
            .insert_events(&events, now, config.dedupe_window)
            .map_err(|e| e.to_string())?;
        let duplicates = inserted
            .iter()
            .filter(|i| matches!(i, crate::store::Insert::Duplicate))
            .count();
        if duplicates > 0 {
            notes.push(format!(
                "event {} ({}) is a duplicate of an earlier one and was not run again (give each delivery its own call id or time)",
                i + 1,
                item.origin
            ));
        }
        engine.settle().await;
    }
    let horizon = add(now, case.then.unwrap_or(MAX_SETTLE));
    advance(&engine, &clock, horizon, &mut notes).await;
    for (connector, left) in rehearsal.unused() {
        notes.push(format!(
            "{left} canned answer(s) for `{connector}` were never used"
        ));
    }

    let mut runs = store
        .list_executions(&ExecutionFilter::default(), usize::MAX, None)
        .map_err(|e| e.to_string())?
        .0;
    runs.reverse(); // start order
    let requests: Vec<Value> = rehearsal
        .sent()
        .into_iter()
        .map(|s| with_step_label(s.request, &s.idempotency_key, workflow))
        .collect();
    let failures = check(&case.expect, &runs, &requests, &store)?;
    drop(engine);
    drop(store);
    Ok(CaseReport {
        name: case.name.clone(),
        at: case.at.clone(),
        failures,
        notes,
    })
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(t)
}

/// Move simulated time to `to`, firing each timer due on the way at its
/// own time and letting the engine finish what it causes.
async fn advance(engine: &Engine, clock: &SimulatedClock, to: Timestamp, notes: &mut Vec<String>) {
    for _ in 0..MAX_TIMER_STEPS {
        match engine.next_timer_due() {
            Some(due) if due <= to => {
                if due > clock.now() {
                    clock.set(due);
                }
                engine.settle().await;
            }
            _ => {
                clock.set(to.max(clock.now()));
                return;
            }
        }
    }
    notes.push(format!(
        "stopped following timers after {MAX_TIMER_STEPS} of them"
    ));
}

/// A request's step, as tests name steps: its `id`, else its kind.
fn with_step_label(mut request: Value, idempotency_key: &str, workflow: &Workflow) -> Value {
    let path = idempotency_key
        .split_once(':')
        .map(|(_, p)| p)
        .unwrap_or_default();
    if let Some(step) = step_at(&workflow.steps, path) {
        if let Value::Object(map) = &mut request {
            // First, for reading.
            let mut ordered = serde_json::Map::new();
            ordered.insert("step".into(), Value::from(step.label()));
            ordered.extend(std::mem::take(map));
            *map = ordered;
        }
    }
    request
}

/// A run as tests see it.
fn run_view(e: &Execution) -> Value {
    let steps: Vec<Value> = e
        .steps
        .iter()
        .filter(|s| s.status != StepStatus::Skipped)
        .map(|s| {
            json!({
                "step": s.id.clone().unwrap_or_else(|| s.kind.clone()),
                "kind": s.kind,
                "status": s.status,
                "input": s.input,
                "output": s.output,
                "error": s.error,
                "attempts": s.attempts.len(),
            })
        })
        .collect();
    json!({
        "workflow": e.workflow,
        "status": e.status.as_str(),
        "error": e.error,
        "event": {"kind": e.event.kind, "caller": e.event.caller, "synthetic": e.event.synthetic},
        "steps": steps,
    })
}

/// Steps written as plain labels compare with the steps' labels.
fn shape_steps(expected: &Value, actual: &Value) -> Value {
    match (expected, actual) {
        (Value::Array(e), Value::Array(a)) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, step)| match e.get(i) {
                    Some(Value::Object(_)) => step.clone(),
                    _ => step["step"].clone(),
                })
                .collect(),
        ),
        _ => actual.clone(),
    }
}

fn check(
    expect: &Expect,
    runs: &[Execution],
    requests: &[Value],
    store: &Store,
) -> Result<Vec<String>, String> {
    let mut failures = Vec::new();
    let views: Vec<Value> = runs.iter().map(run_view).collect();
    let summary = || {
        if views.is_empty() {
            "no run at all (the trigger or its `when` did not take the event)".to_string()
        } else {
            views
                .iter()
                .map(|v| {
                    format!(
                        "{} ({})",
                        v["workflow"].as_str().unwrap_or(""),
                        v["status"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    };

    if expect.status.is_some() || expect.steps.is_some() {
        if views.len() != 1 {
            failures.push(format!(
                "expected one run, got {}: {}",
                views.len(),
                summary()
            ));
        } else {
            let run = &views[0];
            if let Some(status) = expect.status {
                if run["status"] != status.as_str() {
                    let why = run["error"]
                        .as_str()
                        .map(|e| format!("\n    error: {e}"))
                        .unwrap_or_default();
                    failures.push(format!(
                        "status: expected {}, got {}{why}",
                        status.as_str(),
                        run["status"].as_str().unwrap_or("?")
                    ));
                }
            }
            if let Some(steps) = &expect.steps {
                let actual = shape_steps(steps, &run["steps"]);
                if !matches(steps, &actual) {
                    failures.push(format!(
                        "steps (- expected, + ran):\n{}",
                        diff(steps, &actual, "    ")
                    ));
                }
            }
        }
    }

    if let Some(runs_expected) = &expect.runs {
        match runs_expected {
            Value::Number(n) => {
                if n.as_u64() != Some(views.len() as u64) {
                    failures.push(format!(
                        "runs: expected {n}, got {}: {}",
                        views.len(),
                        summary()
                    ));
                }
            }
            Value::Array(items) => {
                let shaped: Vec<Value> = views
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let mut v = v.clone();
                        if let Some(steps) = items.get(i).and_then(|e| e.get("steps")) {
                            v["steps"] = shape_steps(steps, &v["steps"]);
                        }
                        v
                    })
                    .collect();
                let actual = Value::Array(shaped);
                if !matches(runs_expected, &actual) {
                    failures.push(format!(
                        "runs (- expected, + actual):\n{}",
                        diff(runs_expected, &actual, "    ")
                    ));
                }
            }
            other => failures.push(format!(
                "runs: expected a count or a list of runs, got {other}"
            )),
        }
    }

    if let Some(expected) = &expect.requests {
        let actual = Value::Array(requests.to_vec());
        if !matches(expected, &actual) {
            failures.push(format!(
                "requests (- expected, + would have been sent):\n{}",
                diff(expected, &actual, "    ")
            ));
        }
    }

    let mut contacts_expected = BTreeMap::new();
    let mut contacts_actual = BTreeMap::new();
    for (phone, want) in &expect.contacts {
        let got = store.contact(phone).map_err(|e| e.to_string())?;
        let mut got = match got {
            Some(c) => serde_json::to_value(c).expect("contacts serialise"),
            None => Value::Null,
        };
        let mut want = want.clone();
        // Tags are a set: compare them sorted.
        for v in [&mut want, &mut got] {
            if let Some(Value::Array(tags)) = v.get_mut("tags") {
                tags.sort_by_key(|t| t.to_string());
            }
        }
        contacts_expected.insert(phone.clone(), want);
        contacts_actual.insert(phone.clone(), got);
    }
    let (e, a) = (json!(contacts_expected), json!(contacts_actual));
    if !matches(&e, &a) {
        failures.push(format!(
            "contacts (- expected, + after the run):\n{}",
            diff(&e, &a, "    ")
        ));
    }
    Ok(failures)
}
