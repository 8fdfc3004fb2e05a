//! The interpreter: one workflow, one event, step by step.
//!
//! The execution record is the run journal. It is written where it matters
//! rather than after every step (each write re-serialises the whole record,
//! which dominated the cost of a run): before an outbound step when steps
//! were recorded since the journal was last made durable, during an
//! outbound step that has not answered within [`SLOW_SEND`] (so a run stuck
//! on a slow connector shows its steps so far), after an outbound step,
//! when a run pauses, and when it ends.
//!
//! Before anything leaves the process, the journal holding every step so
//! far is on disk (written and flushed, group commit). Store-only steps
//! are cheap to run again but their *outputs* are not stable: once a first
//! attempt's `create_contact` reached the disk, running the steps again
//! after a crash would find the contact, take the other branch of an `if`
//! on `steps.found.found` and send a different message under a different
//! idempotency key. With the journal durable before the send, a crash
//! during it replays those steps from their records and sends the same
//! step again with the same key. Only a run whose outbound step is its
//! first recorded step since the last durable write skips that write (the
//! event is still queued, or the run still marked running from its last
//! pause, and it starts again the same way).
//! The same holds for a crash with nothing in flight: a contact write can
//! reach the disk through another run's flush at any moment, so the
//! journal is written (not flushed) before a contact write that follows
//! steps which may have read contacts (see
//! [`journal_before_contact_write`]).
//! After an outbound step the journal is flushed to disk before the run
//! does anything else (or, when the step was the run's last, together with
//! the final record), and before a run pauses.
//! Driving a run whose record already has steps *replays* them: a recorded
//! step is not executed again; its recorded output is put back (`steps.<id>`,
//! `vars`, the branch an `if` took, the contact) and the run continues with
//! the first step that has no record. An outbound request that was in
//! flight at a crash has no record, so it is sent again, with the same
//! `Idempotency-Key` (the run id is derived from the event and workflow).
//!
//! `wait` is durable: the run records where it waits and until when, sets a
//! timer in the store and ends its task (status `waiting`). The timer, or an
//! event of an `until` kind from the same caller, resumes it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::Inner;
use crate::delivery::{Outbound, Request};
use crate::event::{normalise_phone, Event};
use crate::store::{
    run_id, Attempt, Changed, Contact, Execution, JournalEncoder, JournalEvent, RunStatus,
    StepRecord, StepStatus, Timer, Waiting,
};
use crate::workflow::{Action, MessageBody, OnError, RenderData, Step, Template, Workflow};

/// An outbound step that has not answered after this long has the
/// journal written while it waits. Most sends answer well within it, and
/// for them the write was a fifth of a run's cost.
pub const SLOW_SEND: std::time::Duration = std::time::Duration::from_millis(200);

/// How a run is recorded.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Save the execution in the store (the CLI's dry run does not).
    pub record: bool,
    /// The event the inbox handed over, with its JSON as the inbox stored
    /// it, for the journal to reuse (`JournalEncoder::for_stored_event`;
    /// shared by the event's runs, which pack it once between them): the
    /// bytes stand for that very `Arc` only, so a run that journals
    /// another copy of the event (one resumed from its journal) serialises
    /// its own.
    pub event_json: Option<(Arc<Event>, Arc<JournalEvent>)>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            record: true,
            event_json: None,
        }
    }
}

/// What the steps of a run share.
struct RunState<'a> {
    inner: &'a Inner,
    workflow: &'a Workflow,
    event: &'a Event,
    run_id: String,
    /// What templates see: `event`, `contact`, `steps`, `vars`, `workflow`,
    /// `now`; kept up to date as steps run (see `RunState::set_step`).
    data: RenderData,
    /// Steps recorded before this process drove the run, by path.
    replay: HashMap<String, StepRecord>,
    /// The journal; its `steps` are every step recorded so far, replayed
    /// ones included, in the order they ran.
    execution: Execution,
    options: RunOptions,
    /// An outbound step succeeded and the journal saying so is not on disk
    /// yet: it must be before the run goes on.
    sent_unflushed: bool,
    /// Steps were recorded since the journal was last written and
    /// flushed: they must be on disk before anything leaves the process
    /// (see the module docs). A `debounce` that passed is among them: its
    /// claim on the key goes to disk with the same flush.
    unsaved_steps: bool,
    /// Steps whose outcome a contact write could change, were they run
    /// again, were recorded since the journal was last written: any step
    /// but a contact write that succeeded and whose output no template can
    /// read (it has no `id`). A contact write must not reach the disk
    /// before them: see [`journal_before_contact_write`].
    unsaved_reads: bool,
    /// The journal's event and steps as serialised by earlier writes, and
    /// whether this drive saved the record already (with the run id's
    /// entry, which later writes skip).
    encoder: JournalEncoder,
}

/// What a step tells the run to do next.
enum Flow {
    Next,
    End(RunStatus, Option<String>),
    /// Paused in a durable `wait`.
    Suspend,
}

/// A step's result before it is recorded.
struct Outcome {
    input: Value,
    output: Value,
    attempts: Vec<Attempt>,
    flow: Flow,
}

impl Outcome {
    fn done(input: Value, output: Value) -> Outcome {
        Outcome {
            input,
            output,
            attempts: Vec::new(),
            flow: Flow::Next,
        }
    }
}

/// A step failure: its message, and the input and attempts up to it.
struct StepError {
    input: Value,
    message: String,
    attempts: Vec<Attempt>,
    /// An outbound step whose next attempt is due later: pause, don't fail.
    retry_in: Option<std::time::Duration>,
}

/// Retry waits up to this long happen in the run's task; longer ones pause
/// the run on a durable timer.
const INLINE_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl StepError {
    fn new(input: Value, message: impl Into<String>) -> StepError {
        StepError {
            input,
            message: message.into(),
            attempts: Vec::new(),
            retry_in: None,
        }
    }
}

/// Start (or find) the run of `workflow` for `event`. Returns `None` when
/// the trigger's `when` is false.
pub(super) async fn run(
    inner: &Inner,
    workflow: Arc<Workflow>,
    event: &Arc<Event>,
    options: RunOptions,
) -> Option<Execution> {
    let id = run_id(&event.id, &workflow.name);
    if options.record {
        match inner.store.execution(&id) {
            Ok(Some(existing)) => {
                return match existing.status {
                    // Interrupted: carry on where the journal stops.
                    RunStatus::Running => {
                        Some(drive(inner, workflow, existing, options, None).await)
                    }
                    // Paused or done: nothing to do for this event again.
                    _ => Some(existing),
                };
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read the run journal");
                if let Some((_, event)) = &options.event_json {
                    event.keep_queued();
                }
                return None;
            }
        }
    }
    let data = render_data_for(inner, &workflow, event);
    if let Some(when) = &workflow.trigger.when {
        match workflow.templates.truthy(when, &data) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(workflow = %workflow.name, error = %e, "`on.when` failed to render; not running");
                return None;
            }
        }
    }
    if options.record {
        if let Err(e) = inner.store.save_workflow_version(
            &workflow.name,
            &workflow.version,
            &workflow.file,
            &workflow.source,
        ) {
            tracing::error!(error = %e, "cannot store the workflow version");
        }
    }
    let seq = match inner.store.next_run_seq() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a run");
            return None;
        }
    };
    let execution = Execution {
        id,
        seq,
        workflow: workflow.name.clone(),
        workflow_version: workflow.version.clone(),
        file: workflow.file.clone(),
        status: RunStatus::Running,
        event: Arc::clone(event),
        started_at: inner.clock.now(),
        finished_at: None,
        error: None,
        // Events injected through the test endpoint mark their runs.
        test: event.test,
        waiting: None,
        retrying: None,
        steps: Vec::new(),
    };
    Some(drive(inner, workflow, execution, options, Some(data)).await)
}

fn load_contact(inner: &Inner, event: &Event) -> Value {
    match event.caller.as_deref().filter(|_| event.caller_is_phone) {
        Some(phone) => match inner.store.contact(phone) {
            Ok(contact) => contact_json(&contact),
            Err(e) => {
                tracing::error!(error = %e, "cannot load the caller's contact");
                Value::Null
            }
        },
        None => Value::Null,
    }
}

/// The render data a run starts with: the event, the caller's contact,
/// no steps or vars yet. Built as a map rather than with `json!`, which
/// passes every value it is given through `serde_json::to_value` again:
/// the event and the contact, already values, were copied a second time
/// that way (≈12 k of a run's instructions, callgrind).
fn render_data_for(inner: &Inner, workflow: &Workflow, event: &Event) -> RenderData {
    let mut data = Map::with_capacity(6);
    // Without the provider's payload when no template can read it.
    let fields = serde_json::to_value(event.fields(workflow.templates.reads_event_raw()))
        .expect("events serialise");
    data.insert("event".into(), fields);
    data.insert("contact".into(), load_contact(inner, event));
    data.insert("steps".into(), Value::Object(Map::new()));
    data.insert("vars".into(), Value::Object(Map::new()));
    data.insert(
        "workflow".into(),
        json!({"name": workflow.name, "version": workflow.version, "file": workflow.file}),
    );
    data.insert("now".into(), Value::String(inner.clock.now().to_string()));
    RenderData::from_value(Value::Object(data))
}

/// Drive a run from its journal to its end or its next pause.
/// `data` is the run's starting render data when the caller has built it
/// already (a new run, for its `when`).
pub(super) async fn drive(
    inner: &Inner,
    workflow: Arc<Workflow>,
    execution: Execution,
    mut options: RunOptions,
    data: Option<RenderData>,
) -> Execution {
    let event = Arc::clone(&execution.event);
    let replay: HashMap<String, StepRecord> = execution
        .steps
        .iter()
        .map(|r| (r.path.clone(), r.clone()))
        .collect();
    let mut state = RunState {
        inner,
        workflow: &workflow,
        event: &event,
        run_id: execution.id.clone(),
        data: data.unwrap_or_else(|| render_data_for(inner, &workflow, &event)),
        replay,
        encoder: match options.event_json.take() {
            Some((stored, json)) => JournalEncoder::for_stored_event(&stored, json),
            None => JournalEncoder::default(),
        },
        execution,
        options,
        sent_unflushed: false,
        unsaved_steps: false,
        unsaved_reads: false,
    };
    state.execution.status = RunStatus::Running;
    state.execution.waiting = None;

    let flow = run_steps(&mut state, &workflow.steps).await;
    let (status, error) = match flow {
        Flow::Next => (RunStatus::Succeeded, None),
        Flow::End(status, error) => (status, error),
        // The pause is already in the journal, and a wake-up may have
        // claimed it since: writing the record again would undo the claim.
        Flow::Suspend => return state.execution,
    };
    state.execution.status = status;
    state.execution.error = error;
    if status.is_finished() {
        state.execution.finished_at = Some(inner.clock.now());
        if let (Some(m), true) = (&inner.metrics, state.options.record) {
            m.run_finished(&workflow.name, status.as_str());
        }
    }
    state.save();
    if std::mem::take(&mut state.sent_unflushed) {
        state.commit().await;
    }
    state.execution
}

fn run_steps<'s, 'a: 's>(
    state: &'s mut RunState<'a>,
    steps: &'a [Step],
) -> Pin<Box<dyn Future<Output = Flow> + Send + 's>> {
    Box::pin(async move {
        for step in steps {
            match run_step(state, step).await {
                Flow::Next => {}
                other => return other,
            }
        }
        Flow::Next
    })
}

async fn run_step<'a>(state: &mut RunState<'a>, step: &'a Step) -> Flow {
    if std::mem::take(&mut state.sent_unflushed) {
        // A sent message must never be sent again after a crash.
        state.make_durable().await;
    }
    if let Some(record) = state.replay.remove(&step.path) {
        return replay_step(state, step, record).await;
    }
    let started_at = state.inner.clock.now();
    let clock = Instant::now();
    if let Some(when) = &step.when {
        match state.workflow.templates.truthy(when, state.render_data()) {
            Ok(true) => {}
            Ok(false) => {
                state.record(
                    step,
                    started_at,
                    clock,
                    StepStatus::Skipped,
                    Value::Null,
                    Value::Null,
                    None,
                    Vec::new(),
                );
                return Flow::Next;
            }
            Err(e) => return state.template_failed(step, started_at, clock, e),
        }
    }
    if let Action::If {
        condition,
        then,
        otherwise,
    } = &step.action
    {
        let taken = match state
            .workflow
            .templates
            .truthy(condition, state.render_data())
        {
            Ok(b) => b,
            Err(e) => return state.template_failed(step, started_at, clock, e),
        };
        let branch = if taken { "then" } else { "else" };
        state.record(
            step,
            started_at,
            clock,
            StepStatus::Succeeded,
            json!({"condition": condition.source}),
            json!({"branch": branch}),
            None,
            Vec::new(),
        );
        let steps = if taken { then } else { otherwise };
        return run_steps(state, steps).await;
    }
    if let Action::Wait { duration, until } = &step.action {
        return begin_wait(state, step, *duration, until, started_at, clock).await;
    }
    if step.action.writes_contact() {
        journal_before_contact_write(state);
    }
    match execute(state, step).await {
        Ok(outcome) => {
            if let Some(id) = &step.id {
                state.set_step(id, outcome.output.clone());
            }
            state.record(
                step,
                started_at,
                clock,
                StepStatus::Succeeded,
                outcome.input,
                outcome.output,
                None,
                outcome.attempts,
            );
            if step.action.is_outbound() {
                // Flushed before the next step, or with the final record.
                state.sent_unflushed = true;
                state.note_follow_up(step);
            }
            outcome.flow
        }
        Err(err) if err.retry_in.is_some() => {
            let delay = err.retry_in.unwrap_or_default();
            begin_retry_pause(state, step, delay, err.input, err.attempts, started_at).await
        }
        Err(err) => {
            if let Some(id) = &step.id {
                state.set_step(id, json!({"error": err.message}));
            }
            state.record(
                step,
                started_at,
                clock,
                StepStatus::Failed,
                err.input,
                Value::Null,
                Some(err.message.clone()),
                err.attempts,
            );
            fail_or_continue(step, err.message)
        }
    }
}

/// Write the journal (not flushed) before a contact write when it lacks
/// steps whose outcome the write could change (`RunState::unsaved_reads`),
/// or this drive has not written it yet (a new run, or one resumed).
///
/// Why: another run's flush can take this write to disk at any moment,
/// and a crash after that restarts this run from its journal. Had the
/// journal not held the steps before the write, they would run again and
/// see the run's own change: a `find_contact` would find the contact the
/// first attempt created and take the other branch, a `when` or an `if`
/// on `contact` would decide differently. sled makes writes durable in
/// the order they were made, so a journal written first is on disk
/// whenever the contact write is (sled 0.34 recovers its log up to the
/// first write it lost; `Cargo.lock` pins it). A contact write that succeeded and has
/// no `id` need not be in it: run again, it leaves the same contact, and
/// nothing reads its output. (Run again, a `create_contact` says
/// `created: false`: a template reading that is why an `id` counts.)
/// Costs one record write per run in the shipped missed-call workflow
/// (before its create or update): +6% of a follow-up's engine
/// instructions (callgrind, eleventh round).
///
/// Not covered: the contact write itself runs again, rendering its input
/// against the contact as the first attempt left it (unless a replayed
/// `find_contact` found nothing, see `replay_step`), and its output may
/// differ (`created`). Both need its rendered input journaled before it.
fn journal_before_contact_write(state: &mut RunState<'_>) {
    if state.unsaved_reads || !state.encoder.saved() {
        state.save();
    }
}

/// Put a recorded step's effects back without executing it.
async fn replay_step<'a>(state: &mut RunState<'a>, step: &'a Step, record: StepRecord) -> Flow {
    // The record is already in the journal's steps; only its effects come
    // back.
    let StepRecord {
        input,
        output,
        status,
        error,
        ..
    } = record;
    match status {
        StepStatus::Skipped => return Flow::Next,
        StepStatus::Failed => {
            if let Some(id) = &step.id {
                state.set_step(id, json!({"error": error}));
            }
            return fail_or_continue(step, error.unwrap_or_default());
        }
        StepStatus::Succeeded => {}
    }
    if let Some(id) = &step.id {
        state.set_step(id, output.clone());
    }
    match &step.action {
        Action::If {
            then, otherwise, ..
        } => {
            let branch = if output["branch"] == "then" {
                then
            } else {
                otherwise
            };
            run_steps(state, branch).await
        }
        Action::Set { .. } => {
            if let Value::Object(vars) = output {
                state.set_vars(vars);
            }
            Flow::Next
        }
        Action::Debounce { .. } if output["passed"] == false => {
            Flow::End(RunStatus::Debounced, None)
        }
        Action::Stop { .. } => Flow::End(RunStatus::Stopped, None),
        // Time passed in the wait, and the contact may have changed (a
        // call back tagged it, an operator edited it): the steps after it
        // see it as it is now, not as the steps before the wait left it.
        Action::Wait { .. } => {
            state.data.value_mut()["contact"] = load_contact(state.inner, state.event);
            Flow::Next
        }
        Action::FindContact { .. }
        | Action::CreateContact { .. }
        | Action::UpdateContact { .. }
        | Action::UpsertContact { .. }
        | Action::Tag { .. } => {
            // The contact as the step left it; none for a lookup that found
            // nothing, whatever the store holds now (a contact this run's
            // first attempt created, say): later steps see what the first
            // attempt saw.
            let contact: Option<Contact> = serde_json::from_value(output["contact"].clone()).ok();
            let phone = match &contact {
                Some(c) => Some(c.phone.clone()),
                None => input["phone"].as_str().and_then(|raw| phone_key(raw).ok()),
            };
            if let Some(phone) = phone {
                state.refresh_contact(&phone, &contact_json(&contact));
            }
            Flow::Next
        }
        _ => Flow::Next,
    }
}

/// `from` plus `delay`, saturating.
fn after(from: Timestamp, delay: std::time::Duration) -> Timestamp {
    from.checked_add(jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(from)
}

/// Pause the run at `step`: write the pause into the journal, set the timer
/// that ends it, register for the caller's events of `waiting.kinds`, and
/// flush, so the pause survives a restart.
async fn pause(state: &mut RunState<'_>, step: &Step, waiting: Waiting) -> Flow {
    let due = waiting.until;
    let wake_on = match (&waiting.caller, waiting.kinds.is_empty()) {
        (Some(caller), false) => Some((caller.clone(), waiting.kinds.clone())),
        _ => None,
    };
    state.execution.waiting = Some(waiting);
    state.execution.status = RunStatus::Waiting;
    let store = &state.inner.store;
    let run_id = state.run_id.clone();
    let result = store
        .save_journal(&state.execution, &mut state.encoder)
        .and_then(|_| {
            store.add_timer(
                due,
                &Timer::Resume {
                    run_id: run_id.clone(),
                },
            )?;
            match &wake_on {
                Some((caller, kinds)) => store.add_wait(caller, &run_id, kinds),
                None => Ok(()),
            }
        });
    if let Err(e) = result {
        // The run ends here: its record must not name a pause that a timer
        // or an event already scheduled could claim.
        state.execution.waiting = None;
        return Flow::End(
            RunStatus::Failed,
            Some(format!(
                "step {} ({}): cannot schedule the pause: {e}",
                step.path,
                step.action.kind()
            )),
        );
    }
    state.commit().await;
    state.inner.timers_changed.notify_one();
    Flow::Suspend
}

/// Pause the run between two attempts of an outbound step: the attempts so
/// far go in the journal and the timer resumes the step, which then
/// continues its retry schedule.
async fn begin_retry_pause(
    state: &mut RunState<'_>,
    step: &Step,
    delay: std::time::Duration,
    input: Value,
    attempts: Vec<Attempt>,
    started_at: Timestamp,
) -> Flow {
    let waiting = Waiting {
        path: step.path.clone(),
        id: step.id.clone(),
        until: after(state.inner.clock.now(), delay),
        kinds: Vec::new(),
        caller: None,
        retry_attempts: Some(attempts),
        input,
        started_at,
    };
    pause(state, step, waiting).await
}

/// A `wait` step: pause until its time, or (with `until`) until the
/// caller's next event of those kinds.
async fn begin_wait(
    state: &mut RunState<'_>,
    step: &Step,
    duration: std::time::Duration,
    until: &[String],
    started_at: Timestamp,
    clock: Instant,
) -> Flow {
    let input = json!({"for": crate::duration::format_duration(duration), "until": until});
    if !state.options.record {
        // A dry run has no journal to pause in: report the wait and go on.
        state.record(
            step,
            started_at,
            clock,
            StepStatus::Succeeded,
            input,
            json!({"woken_by": null, "dry_run": true}),
            None,
            Vec::new(),
        );
        return Flow::Next;
    }
    let waiting = Waiting {
        path: step.path.clone(),
        id: step.id.clone(),
        retry_attempts: None,
        until: after(started_at, duration),
        kinds: until.to_vec(),
        caller: state.event.caller.clone(),
        input,
        started_at,
    };
    pause(state, step, waiting).await
}

fn fail_or_continue(step: &Step, message: String) -> Flow {
    match step.on_error {
        OnError::Continue => Flow::Next,
        OnError::Fail => Flow::End(
            RunStatus::Failed,
            Some(format!(
                "step {} ({}): {message}",
                step.path,
                step.action.kind()
            )),
        ),
    }
}

impl RunState<'_> {
    /// The render data, with `now` brought up to date.
    fn render_data(&mut self) -> &RenderData {
        self.data.value_mut()["now"] = Value::String(self.inner.clock.now().to_string());
        &self.data
    }

    /// A step's output, as `steps.<id>`.
    fn set_step(&mut self, id: &str, output: Value) {
        self.data.value_mut()["steps"][id] = output;
    }

    fn set_vars(&mut self, vars: Map<String, Value>) {
        let all = &mut self.data.value_mut()["vars"];
        for (name, value) in vars {
            all[name.as_str()] = value;
        }
    }

    fn render(&self, t: &Template, data: &RenderData) -> Result<String, String> {
        self.workflow.templates.render(t, data)
    }

    /// Write the journal with the steps so far (not flushed).
    fn save(&mut self) {
        if !self.options.record {
            return;
        }
        let store = &self.inner.store;
        match store.save_journal(&self.execution, &mut self.encoder) {
            Ok(()) => {
                self.unsaved_reads = false;
            }
            Err(err) => {
                tracing::error!(error = %err, run_id = %self.execution.id, "cannot save the execution record");
            }
        }
    }

    /// Write the journal and flush it: every step so far survives a crash.
    async fn make_durable(&mut self) {
        self.save();
        self.commit().await;
        self.unsaved_steps = false;
    }

    /// Make the journal durable (group commit).
    async fn commit(&self) {
        if !self.options.record {
            return;
        }
        if let Err(e) = self.inner.store.commit().await {
            tracing::error!(error = %e, run_id = %self.execution.id, "cannot flush the run journal");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        step: &Step,
        started_at: Timestamp,
        clock: Instant,
        status: StepStatus,
        input: Value,
        output: Value,
        error: Option<String>,
        attempts: Vec<Attempt>,
    ) {
        let duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
        self.unsaved_steps = true;
        // A contact write run again leaves the same contact, so only its
        // output could differ (`created`, an error): that matters when it
        // failed or was skipped, or when later templates can read it.
        let same_on_a_rerun =
            step.action.writes_contact() && status == StepStatus::Succeeded && step.id.is_none();
        if !same_on_a_rerun {
            self.unsaved_reads = true;
        }
        if let (Some(m), false) = (&self.inner.metrics, status == StepStatus::Skipped) {
            m.step(
                &self.workflow.name,
                step.action.kind(),
                duration_ms / 1000.0,
            );
        }
        self.execution.steps.push(StepRecord {
            path: step.path.clone(),
            id: step.id.clone(),
            kind: step.action.kind().to_string(),
            status,
            input,
            output,
            error,
            attempts,
            started_at,
            duration_ms,
        });
    }

    /// A message delivered to the event's caller (for the metrics: a
    /// missed call's follow-up, and how fast it came).
    fn note_follow_up(&self, step: &Step) {
        let Some(m) = &self.inner.metrics else {
            return;
        };
        if !matches!(step.action, Action::SendMessage { .. }) {
            return;
        }
        let to = self
            .execution
            .steps
            .last()
            .and_then(|r| r.input["to"].as_str());
        let to_caller = match (to, self.event.caller.as_deref()) {
            // Usually the step sends to "{{event.caller}}" verbatim; only
            // another spelling needs the phone parser.
            (Some(to), Some(caller)) => to == caller || phone_key(to).is_ok_and(|k| k == caller),
            _ => false,
        };
        if to_caller {
            m.caller_messaged(self.event, self.inner.clock.now());
        }
    }

    /// A step whose `when` or `if` condition could not be rendered: it
    /// failed before doing anything.
    fn template_failed(
        &mut self,
        step: &Step,
        started_at: Timestamp,
        clock: Instant,
        error: String,
    ) -> Flow {
        self.record(
            step,
            started_at,
            clock,
            StepStatus::Failed,
            Value::Null,
            Value::Null,
            Some(error.clone()),
            Vec::new(),
        );
        fail_or_continue(step, error)
    }

    /// After a contact step: the run's `contact` follows the caller's
    /// record (`contact` as [`contact_json`] gives it).
    fn refresh_contact(&mut self, phone: &str, contact: &Value) {
        if self.event.caller.as_deref() == Some(phone) {
            self.data.value_mut()["contact"] = contact.clone();
        }
    }
}

/// `output` (an object) with `contact` added last. Not `json!`, which
/// would copy the contact through serde once more.
fn with_contact(mut output: Value, contact: Value) -> Value {
    output["contact"] = contact;
    output
}

/// A contact as a step's output holds it and templates read it (`null`
/// for none). A contact step converts it once, for both.
fn contact_json(contact: &Option<Contact>) -> Value {
    contact
        .as_ref()
        .map(|c| serde_json::to_value(c).expect("contacts serialise"))
        .unwrap_or(Value::Null)
}

/// The name, country and fields a contact step sets (empty renders leave
/// the contact's value alone).
fn apply_changes(
    c: &mut Contact,
    name: &Option<String>,
    country: &Option<String>,
    set: &[(String, String)],
) {
    if let Some(n) = name {
        c.name = Some(n.clone());
    }
    if let Some(co) = country {
        c.country = Some(co.clone());
    }
    for (k, v) in set {
        c.fields.insert(k.clone(), v.clone());
    }
}

/// Render a phone and normalise it to the E.164 key contacts use.
fn phone_key(rendered: &str) -> Result<String, String> {
    match normalise_phone(rendered) {
        Ok(c) if c.is_phone => Ok(c.id),
        Ok(c) => Err(format!(
            "`{}` is a WhatsApp privacy id, not a phone number; contacts are keyed by phone (guard the step with when: \"{{{{event.caller_is_phone}}}}\")",
            c.id
        )),
        Err(e) => Err(format!("phone `{rendered}`: {e}")),
    }
}

/// What the contact-writing steps render alike: the phone as written, the
/// name, the country and the field pairs (`fields` or `set`), and the
/// step's recorded input so far.
struct ContactInput {
    raw: String,
    name: Option<String>,
    country: Option<String>,
    pairs: Vec<(String, String)>,
    input: Value,
}

// The same error type as `execute`, which this serves; it is returned once
// per failed step, not on a hot path.
#[allow(clippy::result_large_err)]
fn render_contact_input(
    state: &RunState,
    data: &RenderData,
    phone: &Template,
    name: &Option<Template>,
    country: &Option<Template>,
    (pairs_key, pairs): (&str, &[(String, Template)]),
) -> Result<ContactInput, StepError> {
    let raw = state
        .render(phone, data)
        .map_err(|m| StepError::new(Value::Null, m))?;
    let failed = |m| StepError::new(json!({"phone": raw}), m);
    let name = render_opt(state, name, data).map_err(failed)?;
    let country = render_opt(state, country, data).map_err(failed)?;
    let pairs = render_pairs(state, pairs, data).map_err(failed)?;
    let mut input = json!({"phone": raw, "name": name, "country": country});
    input[pairs_key] = json!(pairs
        .iter()
        .cloned()
        .collect::<std::collections::BTreeMap<String, String>>());
    Ok(ContactInput {
        raw,
        name,
        country,
        pairs,
        input,
    })
}

fn render_opt(
    state: &RunState,
    t: &Option<Template>,
    data: &RenderData,
) -> Result<Option<String>, String> {
    match t {
        None => Ok(None),
        Some(t) => state
            .render(t, data)
            .map(|s| Some(s).filter(|s| !s.is_empty())),
    }
}

fn render_pairs(
    state: &RunState,
    pairs: &[(String, Template)],
    data: &RenderData,
) -> Result<Vec<(String, String)>, String> {
    pairs
        .iter()
        .map(|(k, t)| state.render(t, data).map(|v| (k.clone(), v)))
        .collect()
}

fn render_list(
    state: &RunState,
    list: &[Template],
    data: &RenderData,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for t in list {
        let v = state.render(t, data)?;
        if !v.trim().is_empty() {
            out.push(v.trim().to_string());
        }
    }
    Ok(out)
}

/// Tests see the store just before each contact write (the run's id).
#[cfg(test)]
type ContactWriteHook = Option<Box<dyn Fn(&crate::store::Store, &str) + Send>>;

#[cfg(test)]
static BEFORE_CONTACT_WRITE: std::sync::Mutex<ContactWriteHook> = std::sync::Mutex::new(None);

/// The hook, even after a test panicked while holding it.
#[cfg(test)]
pub(super) fn before_contact_write_hook() -> std::sync::MutexGuard<'static, ContactWriteHook> {
    BEFORE_CONTACT_WRITE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Apply `change` to the contact `key` (starting from `create` when there
/// is none; `None` leaves an absent contact absent), and let the run's
/// `contact` follow the caller's record. Returns the change and the
/// contact as [`contact_json`] gives it.
fn change_contact(
    state: &mut RunState<'_>,
    key: &str,
    create: Option<Contact>,
    change: impl FnOnce(&mut Contact),
) -> Result<(Changed, Value), String> {
    let now = state.inner.clock.now();
    #[cfg(test)]
    if let Some(observe) = before_contact_write_hook().as_ref() {
        observe(&state.inner.store, &state.execution.id);
    }
    let changed = state
        .inner
        .store
        .modify_contact(key, now, create, change)
        .map_err(|e| e.to_string())?;
    let contact = contact_json(&changed.contact);
    state.refresh_contact(key, &contact);
    Ok((changed, contact))
}

async fn execute(state: &mut RunState<'_>, step: &Step) -> Result<Outcome, StepError> {
    state.render_data();
    let data = &state.data;
    let now = state.inner.clock.now();
    let inner: &Inner = state.inner;
    let store = &inner.store;
    macro_rules! rendered {
        ($e:expr, $input:expr) => {
            $e.map_err(|m| StepError::new($input.clone(), m))?
        };
    }
    match &step.action {
        Action::FindContact { phone } => {
            let raw = rendered!(state.render(phone, data), Value::Null);
            let input = json!({"phone": raw});
            let key = rendered!(phone_key(&raw), input);
            let contact = rendered!(store.contact(&key).map_err(|e| e.to_string()), input);
            let found = contact.is_some();
            let contact = contact_json(&contact);
            state.refresh_contact(&key, &contact);
            Ok(Outcome::done(
                input,
                with_contact(json!({ "found": found }), contact),
            ))
        }
        Action::CreateContact {
            phone,
            name,
            country,
            fields,
            tags,
        } => {
            let ContactInput {
                raw,
                name,
                country,
                pairs: fields,
                mut input,
            } = render_contact_input(state, data, phone, name, country, ("fields", fields))?;
            let tags = rendered!(render_list(state, tags, data), json!({"phone": raw}));
            input["tags"] = json!(tags);
            let key = rendered!(phone_key(&raw), input);
            let mut new = Contact::new(&key, now);
            new.name = name;
            new.country = country;
            new.fields = fields.into_iter().collect();
            new.tags = tags.into_iter().collect();
            let (changed, contact) =
                rendered!(change_contact(state, &key, Some(new), |_| {}), input);
            Ok(Outcome::done(
                input,
                with_contact(json!({ "created": changed.created }), contact),
            ))
        }
        Action::UpdateContact {
            phone,
            name,
            country,
            set,
            unset,
        } => {
            let ContactInput {
                raw,
                name,
                country,
                pairs: set,
                mut input,
            } = render_contact_input(state, data, phone, name, country, ("set", set))?;
            input["unset"] = json!(unset);
            let key = rendered!(phone_key(&raw), input);
            let (changed, contact) = rendered!(
                change_contact(state, &key, None, |c| {
                    apply_changes(c, &name, &country, &set);
                    for k in unset {
                        c.fields.remove(k);
                    }
                }),
                input
            );
            if changed.contact.is_none() {
                return Err(StepError::new(
                    input,
                    format!("no contact with phone {key} (use upsert_contact to create it)"),
                ));
            }
            Ok(Outcome::done(input, with_contact(json!({}), contact)))
        }
        Action::UpsertContact {
            phone,
            name,
            country,
            set,
        } => {
            let ContactInput {
                raw,
                name,
                country,
                pairs: set,
                input,
            } = render_contact_input(state, data, phone, name, country, ("set", set))?;
            let key = rendered!(phone_key(&raw), input);
            let (changed, contact) = rendered!(
                change_contact(state, &key, Some(Contact::new(&key, now)), |c| {
                    apply_changes(c, &name, &country, &set)
                }),
                input
            );
            Ok(Outcome::done(
                input,
                with_contact(json!({ "created": changed.created }), contact),
            ))
        }
        Action::Tag { phone, add, remove } => {
            let raw = rendered!(state.render(phone, data), Value::Null);
            let add = rendered!(render_list(state, add, data), json!({"phone": raw}));
            let remove = rendered!(render_list(state, remove, data), json!({"phone": raw}));
            let input = json!({"phone": raw, "add": add, "remove": remove});
            let key = rendered!(phone_key(&raw), input);
            let (changed, contact) = rendered!(
                change_contact(state, &key, None, |c| {
                    for t in &add {
                        c.tags.insert(t.clone());
                    }
                    for t in &remove {
                        c.tags.remove(t);
                    }
                }),
                input
            );
            if changed.contact.is_none() {
                return Err(StepError::new(
                    input,
                    format!("no contact with phone {key} to tag (create it first with upsert_contact or create_contact)"),
                ));
            }
            Ok(Outcome::done(input, with_contact(json!({}), contact)))
        }
        Action::SendMessage { via, to, body } => {
            let to = rendered!(state.render(to, data), Value::Null);
            let (outbound, input) = match body {
                MessageBody::Text(text) => {
                    let text = rendered!(state.render(text, data), json!({"via": via, "to": to}));
                    let input = json!({"via": via, "to": to, "text": text});
                    (Outbound::Text { to, text }, input)
                }
                MessageBody::Template {
                    name,
                    language,
                    params,
                } => {
                    let base = json!({"via": via, "to": to});
                    let name = rendered!(state.render(name, data), base);
                    let language = rendered!(state.render(language, data), base);
                    let mut values = Vec::new();
                    for p in params {
                        values.push(rendered!(state.render(p, data), base));
                    }
                    let input = json!({"via": via, "to": to, "template": {"name": name, "language": language, "params": values}});
                    (
                        Outbound::Template {
                            to,
                            name,
                            language,
                            params: values,
                        },
                        input,
                    )
                }
            };
            deliver(state, step, Some(via.clone()), outbound, input).await
        }
        Action::Alert { via, text } => {
            let text = rendered!(state.render(text, data), json!({"via": via}));
            let input = json!({"via": via, "text": text});
            deliver(
                state,
                step,
                Some(via.clone()),
                Outbound::Alert { text },
                input,
            )
            .await
        }
        Action::Forward { via } => {
            let input = json!({"via": via, "event_id": state.event.id});
            // The whole event, payload included, whatever the render data
            // holds.
            let event = serde_json::to_value(state.event).expect("events serialise");
            deliver(
                state,
                step,
                Some(via.clone()),
                Outbound::Forward { event },
                input,
            )
            .await
        }
        Action::Http {
            method,
            url,
            headers,
            json: body,
        } => {
            let url = rendered!(state.render(url, data), Value::Null);
            let headers = rendered!(render_pairs(state, headers, data), json!({"url": url}));
            let body = match body {
                None => None,
                Some(t) => Some(rendered!(
                    state.workflow.templates.render_json(t, data),
                    json!({"url": url})
                )),
            };
            // Header values may carry credentials: record their names only.
            let input = json!({"method": method.as_str(), "url": url,
                               "headers": headers.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), "json": body});
            let outbound = Outbound::Http {
                method: method.as_str().to_string(),
                url,
                headers,
                json: body,
            };
            deliver(state, step, None, outbound, input).await
        }
        Action::Debounce { key, window } => {
            let key = rendered!(state.render(key, data), Value::Null);
            let input = json!({"key": key, "for": crate::duration::format_duration(*window)});
            rendered!(non_empty_key(&key), input);
            let passed = rendered!(
                store
                    .debounce(&state.workflow.name, &key, *window, now, &state.event.id)
                    .map_err(|e| e.to_string()),
                input
            );
            Ok(Outcome {
                input,
                output: json!({"passed": passed}),
                attempts: Vec::new(),
                flow: if passed {
                    Flow::Next
                } else {
                    Flow::End(RunStatus::Debounced, None)
                },
            })
        }
        Action::Count { key, within } => {
            let key = rendered!(state.render(key, data), Value::Null);
            let input = json!({"key": key, "within": crate::duration::format_duration(*within)});
            rendered!(non_empty_key(&key), input);
            let count = rendered!(
                store
                    .count(&state.workflow.name, &key, *within, now, &state.event.id)
                    .map_err(|e| e.to_string()),
                input
            );
            Ok(Outcome::done(input, json!({"count": count})))
        }
        Action::Set { vars } => {
            let mut out = Map::new();
            for (name, t) in vars {
                let v = rendered!(state.workflow.templates.render_json(t, data), Value::Null);
                out.insert(name.clone(), v);
            }
            state.set_vars(out.clone());
            Ok(Outcome::done(Value::Null, Value::Object(out)))
        }
        Action::Log { text } => {
            let text = rendered!(state.render(text, data), Value::Null);
            tracing::info!(workflow = %state.workflow.name, run_id = %state.run_id, "{text}");
            Ok(Outcome::done(Value::Null, json!({"text": text})))
        }
        Action::Stop { reason } => {
            let reason = rendered!(state.render(reason, data), Value::Null);
            Ok(Outcome {
                input: Value::Null,
                output: json!({"reason": reason}),
                attempts: Vec::new(),
                flow: Flow::End(RunStatus::Stopped, None),
            })
        }
        Action::If { .. } | Action::Wait { .. } => unreachable!("handled by run_step"),
    }
}

/// A `debounce` or `count` key that rendered empty (the event lacks the
/// field it names, e.g. a caller) would put every such event under one
/// key: one caller's ring would debounce everyone's. The step fails
/// instead, naming the problem.
fn non_empty_key(key: &str) -> Result<(), String> {
    if key.trim().is_empty() {
        return Err("the key rendered empty: the event has no value for it".into());
    }
    Ok(())
}

async fn deliver(
    state: &mut RunState<'_>,
    step: &Step,
    connector: Option<String>,
    outbound: Outbound,
    input: Value,
) -> Result<Outcome, StepError> {
    if state.unsaved_steps {
        // The steps before this one must not run again after a crash
        // during the send (see the module docs).
        state.make_durable().await;
    }
    let request = Request {
        connector,
        outbound,
        idempotency_key: format!("{}:{}", state.run_id, step.path),
        retry: step.retry.clone(),
    };
    // Attempts made before a retry pause continue the schedule.
    let prior = match state.execution.retrying.take() {
        Some(r) if r.path == step.path => r.attempts,
        Some(other) => {
            state.execution.retrying = Some(other);
            Vec::new()
        }
        None => Vec::new(),
    };
    let inline = if state.options.record {
        INLINE_RETRY_WAIT
    } else {
        std::time::Duration::MAX
    };
    let connector_label = request
        .connector
        .clone()
        .unwrap_or_else(|| "http".to_string());
    let already = prior.len();
    let inner = state.inner;
    let delivery = inner.delivery.deliver_resumable(request, prior, inline);
    tokio::pin!(delivery);
    let (delivered, retry_in) = match tokio::time::timeout(SLOW_SEND, &mut delivery).await {
        Ok(done) => done,
        Err(_) => {
            // A slow connector: the journal shows the run's steps so far
            // while it waits.
            state.save();
            delivery.await
        }
    };
    if let Some(m) = &state.inner.metrics {
        for a in delivered.attempts.iter().skip(already) {
            m.attempt(&connector_label, a.status, a.error.is_some());
        }
    }
    match delivered.result {
        Ok(output) => Ok(Outcome {
            input,
            output,
            attempts: delivered.attempts,
            flow: Flow::Next,
        }),
        Err(message) => Err(StepError {
            input,
            message,
            attempts: delivered.attempts,
            retry_in,
        }),
    }
}
