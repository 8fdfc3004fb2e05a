//! The engine: takes accepted events from the inbox, tracks calls, runs
//! every workflow that listens, resumes waiting runs, and fires timers.
//!
//! - The dispatcher takes the events ingestion just stored from memory
//!   ([`Arrivals`]), and reads the stored `pending` queue at start, when
//!   that memory overflowed, and once a second regardless. It hands each
//!   event to a task, and removes it from the stored queue once its runs
//!   are recorded. A crash before that offers the event again on start;
//!   its runs are found by their derived ids and resumed from their
//!   journals, not started twice.
//! - At start-up, runs that were `running` when the process stopped are
//!   resumed (see `run.rs` for the replay).
//! - The timer service fires durable timers at their due second: it
//!   resumes runs paused in `wait`, and ends calls still ringing after their
//!   source's `ring_timeout` with a synthetic `call.missed` event.
//! - Runs of different events proceed concurrently; contact changes are
//!   atomic in the store. Outbound steps go through [`Delivery`], a trait.
//! - Every task the engine starts takes turns on the CPU (`gate.rs`): at
//!   most one per worker is polled at a time, work under way before new
//!   events, so webhook answers never queue behind thousands of runnable
//!   runs when runs fall behind.
//! - [`Engine::shutdown`] stops taking work and lets runs in flight finish
//!   (or checkpoint, by their journals) within a bounded time.

mod arrivals;
mod gate;
mod run;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::delivery::Delivery;
use crate::event::{self, kind, Event, RawJson};
use crate::metrics::Metrics;
use crate::store::{
    CallChange, CallState, Execution, JournalEvent, RunStatus, StepRecord, StepStatus, Store,
    StoredEvent, Timer,
};
use crate::workflow::{compile, Known, SharedCatalog, Workflow};

pub use arrivals::{Arrivals, CAPACITY as HAND_OVER_CAPACITY};
use gate::{CpuGate, Gated, Stage};
pub use run::{RunOptions, SLOW_SEND};

/// How many events (and resumed runs) are processed at once. Waits do not
/// count: a waiting run holds nothing.
pub const MAX_CONCURRENT: usize = 4096;
/// How many pending events the dispatcher reads per pass.
const DISPATCH_BATCH: usize = 1024;
/// How long a resumed run waits for the task that paused it to finish.
const RESUME_HANDOVER: Duration = Duration::from_secs(30);
/// Look at the queue and the timers at least this often.
const IDLE_POLL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    catalog: SharedCatalog,
    delivery: Arc<dyn Delivery>,
    clock: SharedClock,
    /// Ingestion hands accepted events to the dispatcher through this.
    arrivals: Arc<Arrivals>,
    /// A new timer may be due sooner than the service sleeps.
    timers_changed: Notify,
    config: Option<Arc<RwLock<Arc<Config>>>>,
    metrics: Option<Arc<Metrics>>,
    in_flight: Mutex<HashSet<u64>>,
    /// Runs being driven by this process, so none is driven twice at once.
    driving: Mutex<HashSet<String>>,
    permits: Arc<Semaphore>,
    /// Turns on the CPU for the tasks below: see `gate.rs`. Made at the
    /// first task, inside the runtime whose workers it counts (some
    /// callers build the engine before their runtime).
    gate: std::sync::OnceLock<Arc<CpuGate>>,
    stopping: AtomicBool,
}

impl Engine {
    pub fn new(
        store: Store,
        catalog: SharedCatalog,
        delivery: Arc<dyn Delivery>,
        clock: SharedClock,
        arrivals: Arc<Arrivals>,
    ) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                store,
                catalog,
                delivery,
                clock,
                arrivals,
                timers_changed: Notify::new(),
                config: None,
                metrics: None,
                in_flight: Mutex::new(HashSet::new()),
                driving: Mutex::new(HashSet::new()),
                permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
                gate: std::sync::OnceLock::new(),
                stopping: AtomicBool::new(false),
            }),
        }
    }

    /// An engine for `workflow` alone, driven by its caller (`ringback
    /// run`, `ringback test`, benchmarks): no ingestion wakes it.
    pub fn for_workflow(
        store: Store,
        workflow: Arc<Workflow>,
        delivery: Arc<dyn Delivery>,
        clock: SharedClock,
    ) -> Engine {
        let catalog = crate::workflow::Catalog {
            workflows: vec![workflow],
            problems: Vec::new(),
        };
        Engine::new(
            store,
            Arc::new(RwLock::new(Arc::new(catalog))),
            delivery,
            clock,
            Arc::default(),
        )
    }

    /// Give the engine the live configuration (sources' `ring_timeout` and
    /// providers, connector names for resumed runs).
    pub fn with_config(self, config: Arc<RwLock<Arc<Config>>>) -> Engine {
        let mut inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_config before the engine is shared"));
        inner.config = Some(config);
        Engine {
            inner: Arc::new(inner),
        }
    }

    /// Count runs, steps, attempts and follow-ups in `metrics`.
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Engine {
        let mut inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_metrics before the engine is shared"));
        inner.metrics = Some(metrics);
        Engine {
            inner: Arc::new(inner),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Start an engine task that takes turns on the CPU with the others
    /// (`gate.rs`): `Stage::New` for an event, `Stage::Follows` for a run
    /// of work already under way.
    fn spawn<T: Send + 'static>(
        &self,
        stage: Stage,
        task: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        let gate = self
            .inner
            .gate
            .get_or_init(|| Arc::new(CpuGate::per_worker()));
        tokio::spawn(Gated::new(Arc::clone(gate), stage, task))
    }

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    /// Resume the runs that were running when the process stopped.
    pub async fn recover(&self) {
        let runs = match self.inner.store.running_executions() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read interrupted runs");
                return;
            }
        };
        if !runs.is_empty() {
            tracing::info!(
                runs = runs.len(),
                "resuming runs interrupted by the last stop"
            );
        }
        for execution in runs {
            let Ok(permit) = self.inner.permits.clone().acquire_owned().await else {
                return;
            };
            let engine = self.clone();
            self.spawn(Stage::Follows, async move {
                engine.resume(execution).await;
                drop(permit);
            });
        }
    }

    /// Run the dispatcher until the engine stops.
    pub async fn dispatch_forever(self) {
        // Whatever was pending when the process stopped.
        let mut read_store = true;
        while !self.stopping() {
            let notified = self.inner.arrivals.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut handed = 0;
            let overflowed = self.inner.arrivals.take_overflow();
            let filed = self.inner.store.take_filed_unannounced();
            if read_store || overflowed || filed {
                handed += self.dispatch_stored().await;
            }
            for stored in self.inner.arrivals.take() {
                if self.stopping() {
                    break;
                }
                handed += usize::from(self.hand_over(stored).await);
            }
            read_store = false;
            if handed == 0 {
                // Also read the stored queue after a quiet second: events
                // can reach it by paths that do not offer them here.
                read_store = tokio::time::timeout(IDLE_POLL, notified).await.is_err();
            }
        }
    }

    /// Hand every stored pending event not already in flight to a task.
    async fn dispatch_stored(&self) -> usize {
        let mut handed = 0;
        let mut after = None;
        loop {
            let engine = self.clone();
            let batch = tokio::task::spawn_blocking(move || {
                let in_flight = |seq| engine.in_flight().contains(&seq);
                engine
                    .inner
                    .store
                    .pending_events_after(after, DISPATCH_BATCH, in_flight)
            })
            .await;
            let (pending, last) = match batch {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the pending queue");
                    return handed;
                }
                Err(_) => return handed,
            };
            for stored in pending {
                if self.stopping() {
                    return handed;
                }
                handed += usize::from(self.hand_over(stored).await);
            }
            match last {
                Some(seq) => after = Some(seq),
                None => return handed,
            }
        }
    }

    /// Process `stored` in a task of its own, unless it is in flight or
    /// done already. Whether it was handed over.
    async fn hand_over(&self, stored: StoredEvent) -> bool {
        let seq = stored.seq;
        if !self.in_flight().insert(seq) {
            return false;
        }
        // It may have finished between being read or offered and now.
        let pending = self
            .inner
            .store
            .is_pending(seq, &stored.event.id)
            .unwrap_or(true);
        let permit = match pending {
            true => self.inner.permits.clone().acquire_owned().await.ok(),
            false => None,
        };
        let Some(permit) = permit else {
            self.in_flight().remove(&seq);
            return false;
        };
        let engine = self.clone();
        self.spawn(Stage::New, async move {
            if let Err(e) = engine.process_and_take(stored).await {
                tracing::error!(error = %e, "cannot remove a processed event from the queue");
            }
            engine.in_flight().remove(&seq);
            drop(permit);
        });
        true
    }

    /// Events being processed, by sequence number.
    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.inner.in_flight.lock().expect("in-flight lock")
    }

    /// Process a stored event, then remove it from the stored queue.
    async fn process_and_take(&self, stored: StoredEvent) -> Result<(), crate::store::StoreError> {
        let (seq, id) = (stored.seq, stored.event.id.clone());
        // Before the runs: they may read the caller's call statistics. On
        // a failure the take (or a checkpoint) marks it again.
        if let Err(e) = self.inner.store.mark_accepted(&stored) {
            tracing::error!(error = %e, event_id = %id, "cannot write an accepted event's dedupe marker");
        }
        if !self.process(stored).await {
            // Left queued: a later reading of the stored queue (after the
            // next checkpoint files it) offers it again, and processing it
            // again repeats what it does besides its runs (its call's
            // state, the runs it wakes, the metrics): at least once, as
            // after a crash.
            return Ok(());
        }
        self.inner.store.mark_taken(seq, &id)
    }

    /// Everything one event causes: waiting runs it wakes, its call's state,
    /// and a run of every matching workflow. Whether the event may leave
    /// the queue now: not if a run's record still needs it there (see
    /// below).
    ///
    /// The event must stay queued until this returns, and after it if it
    /// returns false: its runs' records name it there while they run
    /// (`JournalEvent`). Only one processing of an acceptance at a time
    /// (the dispatcher's `in_flight`; `settle` runs without the
    /// dispatcher).
    #[must_use]
    pub async fn process(&self, stored: StoredEvent) -> bool {
        // Shared by the runs' tasks rather than copied (payload and all)
        // into each. Their running records hold where the event is queued,
        // not the event (`JournalEvent`).
        let acceptance = stored.seq;
        let event_json = stored
            .event_json
            .map(|json| JournalEvent::queued(json, acceptance, &stored.event.id));
        let event = Arc::new(stored.event);
        if let Some(m) = &self.inner.metrics {
            m.event_processed(&event);
        }
        let woken = self.wake_waiting_runs(&event).await;
        self.track_call(&event);
        let catalog = self.inner.catalog.read().expect("catalog lock").clone();
        let matching: Vec<Arc<Workflow>> = catalog
            .workflows
            .iter()
            .filter(|w| {
                w.trigger
                    .matches(&event.kind, &event.source, event.business.as_deref())
            })
            .cloned()
            .collect();
        let mut handles = Vec::new();
        for wf in matching.iter().cloned() {
            let engine = self.clone();
            let event = Arc::clone(&event);
            let options = RunOptions {
                event_json: event_json
                    .as_ref()
                    .map(|json| (Arc::clone(&event), Arc::clone(json))),
                ..RunOptions::default()
            };
            handles.push(self.spawn(Stage::Follows, async move {
                engine.run_workflow(wf, &event, options).await
            }));
        }
        for h in handles {
            match h.await {
                Ok(Some(execution)) => log_run(&execution),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "a workflow run panicked"),
            }
        }
        // The runs this event woke went on concurrently; the event is done
        // when they have finished or paused again.
        for h in woken {
            if let Err(e) = h.await {
                tracing::error!(error = %e, "a resumed run panicked");
            }
        }
        // A run that panicked, or whose last save failed, left a record
        // that names the queued event instead of holding it: write the
        // event in before it leaves the queue, so the record is resumed at
        // the next start as it would have been.
        let Some(event_json) = event_json else {
            return true;
        };
        // A run that could not read its journal may have left a record
        // naming the event: it stays queued for a later try.
        let mut kept = !event_json.must_stay_queued();
        if event_json.records_without_it() == 0 {
            return kept;
        }
        for wf in &matching {
            let id = crate::store::run_id(&event.id, &wf.name);
            let store = &self.inner.store;
            if let Err(e) = store.keep_event_in_record(&id, Some(acceptance)) {
                tracing::error!(error = %e, run_id = %id, "cannot write the event into an unfinished run's record; it stays queued");
                kept = false;
            }
        }
        kept
    }

    /// Process every pending event and fire every timer due by the clock's
    /// now, awaiting all the work they cause, until nothing is left. This is
    /// the dispatcher and the timer service run to completion in order,
    /// for callers that drive time themselves (`ringback test`).
    pub async fn settle(&self) {
        loop {
            let mut progressed = false;
            // Events accepted meanwhile (the synthetic missed call of a
            // call that rang out) are kept in memory for the dispatcher,
            // which this loop stands in for.
            let filed = self.inner.store.file_all_queued();
            let pending = match filed.and_then(|_| self.inner.store.pending_events(DISPATCH_BATCH))
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the pending queue");
                    return;
                }
            };
            for stored in pending {
                progressed = true;
                if let Err(e) = self.process_and_take(stored).await {
                    tracing::error!(error = %e, "cannot remove a processed event from the queue");
                    return;
                }
            }
            let due = match self.inner.store.due_timers(self.inner.clock.now(), 256) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read timers");
                    return;
                }
            };
            for t in &due {
                // A timer kept after a storage failure is no progress:
                // firing it again at once would fail the same way, forever.
                if let Ok(resumed) = self.fire(t).await {
                    progressed = true;
                    if let Some(resumed) = resumed {
                        let _ = resumed.await;
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// When the next durable timer is due, if any is set.
    pub fn next_timer_due(&self) -> Option<Timestamp> {
        self.inner.store.next_timer_due().ok().flatten()
    }

    /// Run one workflow for one event, if its `when` holds. The execution is
    /// recorded in the store unless `options.record` is false.
    pub async fn run_workflow(
        &self,
        workflow: Arc<Workflow>,
        event: &Arc<Event>,
        options: RunOptions,
    ) -> Option<Execution> {
        let id = crate::store::run_id(&event.id, &workflow.name);
        let record = options.record;
        if record
            && !self
                .inner
                .driving
                .lock()
                .expect("driving lock")
                .insert(id.clone())
        {
            return None; // already being driven here
        }
        let result = run::run(&self.inner, workflow, event, options).await;
        if record {
            self.inner.driving.lock().expect("driving lock").remove(&id);
        }
        result
    }

    /// Continue a run from its journal, on the workflow version it started
    /// with.
    async fn resume(&self, execution: Execution) -> Option<Execution> {
        // A wake-up can claim a run while the task that paused it is still
        // finishing (flushing its journal): wait for that task to let go,
        // then continue from the record as the claim left it.
        let mut execution = execution;
        let mut waited = false;
        let deadline = tokio::time::Instant::now() + RESUME_HANDOVER;
        while !self
            .inner
            .driving
            .lock()
            .expect("driving lock")
            .insert(execution.id.clone())
        {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(run_id = %execution.id, "run still busy; it resumes at the next start");
                return None;
            }
            waited = true;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if waited {
            match self.inner.store.execution(&execution.id) {
                Ok(Some(e)) if e.status == RunStatus::Running => execution = e,
                _ => {
                    self.inner
                        .driving
                        .lock()
                        .expect("driving lock")
                        .remove(&execution.id);
                    return None;
                }
            }
        }
        let id = execution.id.clone();
        let result = match self.workflow_for(&execution) {
            Ok(wf) => {
                let options = RunOptions::default();
                Some(run::drive(&self.inner, wf, execution, options, None).await)
            }
            Err(message) => {
                let mut e = execution;
                e.status = RunStatus::Failed;
                e.error = Some(message);
                if let Some(m) = &self.inner.metrics {
                    m.run_finished(&e.workflow, e.status.as_str());
                }
                e.finished_at = Some(self.inner.clock.now());
                e.waiting = None;
                if let Err(err) = self.inner.store.save_execution(&e) {
                    tracing::error!(error = %err, "cannot save the execution record");
                }
                Some(e)
            }
        };
        self.inner.driving.lock().expect("driving lock").remove(&id);
        if let Some(e) = &result {
            log_run(e);
        }
        result
    }

    /// The workflow version a run started with: the loaded one if it is
    /// still that version, else the stored text compiled again (a run
    /// finishes on its own version even when the file changed or was
    /// deleted).
    fn workflow_for(&self, e: &Execution) -> Result<Arc<Workflow>, String> {
        let catalog = self.inner.catalog.read().expect("catalog lock").clone();
        if let Some(wf) = catalog
            .get(&e.workflow)
            .filter(|w| w.version == e.workflow_version)
        {
            return Ok(wf.clone());
        }
        let stored = self
            .inner
            .store
            .workflow_version(&e.workflow, &e.workflow_version)
            .map_err(|err| err.to_string())?
            .ok_or_else(|| {
                format!(
                    "workflow {} version {} is not stored",
                    e.workflow, e.workflow_version
                )
            })?;
        let known = match &self.inner.config {
            Some(c) => crate::reload::known_names(&c.read().expect("config lock")),
            None => Known::default(),
        };
        let stem = e.workflow.clone();
        compile(&stored.file, &stem, &stored.text, &known)
            .map(Arc::new)
            .map_err(|errs| {
                let lines: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
                format!(
                    "the workflow version this run started with no longer compiles:\n{}",
                    lines.join("\n")
                )
            })
    }

    /// Resume runs waiting for this caller's event of this kind; the
    /// handles of the resumed runs' tasks.
    async fn wake_waiting_runs(&self, event: &Event) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(caller) = event.caller.as_deref() else {
            return Vec::new();
        };
        let ids = match self.inner.store.waits_for(caller, &event.kind) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "cannot read waiting runs");
                return Vec::new();
            }
        };
        let mut resumed = Vec::new();
        for id in ids {
            let _ = self.inner.store.remove_wait(caller, &id);
            // An error is logged; the run's timer still ends its wait.
            if let Ok(Some(execution)) = self.claim_waiting(&id, Some(event.kind.clone())) {
                let engine = self.clone();
                resumed.push(self.spawn(Stage::Follows, async move {
                    engine.resume(execution).await;
                }));
            }
        }
        resumed
    }

    /// Take a waiting run out of its wait, exactly once: records the wait
    /// step's result and marks the run running again.
    ///
    /// `Ok(None)`: the run is not waiting (claimed already, or woken). An
    /// error means the store could not be read or written: the wait stays
    /// as it is, for the caller to try again.
    fn claim_waiting(
        &self,
        run_id: &str,
        woken_by: Option<String>,
    ) -> Result<Option<Execution>, crate::store::StoreError> {
        let now = self.inner.clock.now();
        let ended: Mutex<Option<crate::store::Waiting>> = Mutex::new(None);
        let claimed = self.inner.store.update_execution(run_id, |e| {
            // Only a waiting run is claimed: a run that failed to pause may
            // still have a timer or a wait that would bring it back.
            if e.status != RunStatus::Waiting {
                return false;
            }
            let Some(w) = e.waiting.take() else {
                return false;
            };
            if let Some(attempts) = &w.retry_attempts {
                // A pause between attempts of an outbound step: the step
                // runs again, continuing its retry schedule.
                e.retrying = Some(crate::store::Retrying {
                    path: w.path.clone(),
                    attempts: attempts.clone(),
                });
                e.status = RunStatus::Running;
                *ended.lock().expect("lock") = Some(w);
                return true;
            }
            let waited_ms = (now.as_millisecond() - w.started_at.as_millisecond()).max(0) as f64;
            if let Some(m) = &self.inner.metrics {
                m.step(&e.workflow, "wait", waited_ms / 1000.0);
            }
            e.steps.push(StepRecord {
                path: w.path.clone(),
                id: w.id.clone(),
                kind: "wait".into(),
                status: StepStatus::Succeeded,
                input: w.input.clone(),
                output: json!({"woken_by": woken_by}),
                error: None,
                attempts: Vec::new(),
                started_at: w.started_at,
                duration_ms: waited_ms,
            });
            e.status = RunStatus::Running;
            *ended.lock().expect("lock") = Some(w);
            true
        });
        match claimed {
            Ok(Some(e)) => {
                // The other way out of this wait no longer applies: a stale
                // timer must not end a later wait of the same run.
                if let Some(w) = ended.into_inner().expect("lock") {
                    let timer = Timer::Resume {
                        run_id: run_id.to_string(),
                    };
                    let _ = self.inner.store.cancel_timer(w.until, &timer);
                    if let Some(caller) = &w.caller {
                        let _ = self.inner.store.remove_wait(caller, run_id);
                    }
                }
                Ok(Some(e))
            }
            Ok(None) => Ok(None),
            Err(err) => {
                tracing::error!(error = %err, run_id, "cannot resume a waiting run");
                Err(err)
            }
        }
    }

    /// Follow the event's call; schedule the ring timeout of a new call.
    fn track_call(&self, event: &Event) {
        let now = self.inner.clock.now();
        let change = match self.inner.store.track_call(event, now) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot update call state");
                return;
            }
        };
        let CallChange::Ringing(state) = change else {
            return;
        };
        let Some(timeout) = self.ring_timeout(&event.source) else {
            return;
        };
        // The ring window starts when ringback takes the ring (`now`, the
        // fresh state's `last_event_at`), not at the provider's timestamp:
        // a ring stamped more than `ring_timeout` ago (a provider clock
        // behind ours, a delivery retried or queued) would otherwise ring
        // out at once, and a call answered a moment later would get a
        // "sorry we missed your call". Nor the later of the two: a provider
        // clock ahead of ours would delay the missed call by the skew. The
        // accept or reject reaches ringback by the same path as the ring,
        // so timing both on arrival gives the caller the whole window.
        let due = state
            .last_event_at
            .checked_add(
                jiff::SignedDuration::try_from(timeout).unwrap_or(jiff::SignedDuration::ZERO),
            )
            .unwrap_or(now);
        let timer = Timer::RingTimeout {
            call_key: state.key,
        };
        match self.inner.store.add_timer(due, &timer) {
            Ok(()) => self.inner.timers_changed.notify_one(),
            Err(e) => tracing::error!(error = %e, "cannot schedule the ring timeout"),
        }
    }

    fn ring_timeout(&self, source: &str) -> Option<Duration> {
        let config = self
            .inner
            .config
            .as_ref()?
            .read()
            .expect("config lock")
            .clone();
        config.source(source)?.ring_timeout
    }

    /// Fire due timers until the engine stops.
    pub async fn timers_forever(self) {
        while !self.stopping() {
            let now = self.inner.clock.now();
            let due = match self.inner.store.due_timers(now, 256) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read timers");
                    Vec::new()
                }
            };
            let mut kept = false;
            for t in &due {
                if self.stopping() {
                    return;
                }
                match self.fire(t).await {
                    // A resumed run goes on in its own task.
                    Ok(resumed) => drop(resumed),
                    Err(_) => kept = true,
                }
            }
            if due.len() == 256 && !kept {
                continue;
            }
            let sleep = match self.inner.store.next_timer_due() {
                // A timer kept after a storage failure is due already: try
                // it again on the next pass, not in a busy loop.
                _ if kept => IDLE_POLL,
                Ok(Some(next)) => {
                    let ms = next.as_millisecond() - self.inner.clock.now().as_millisecond();
                    Duration::from_millis(ms.clamp(0, IDLE_POLL.as_millis() as i64) as u64)
                }
                _ => IDLE_POLL,
            };
            if sleep.is_zero() {
                continue;
            }
            let _ = tokio::time::timeout(sleep, self.inner.timers_changed.notified()).await;
        }
    }

    /// Carry out a due timer. The timer is removed only once its effect
    /// is in the store, so a crash in between fires it again (both effects
    /// are idempotent) instead of losing it. A resumed run's task handle is
    /// returned. An error means the effect could not be stored: the timer
    /// is kept (and the call still ringing), for a later pass to retry.
    async fn fire(
        &self,
        t: &crate::store::DueTimer,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, crate::store::StoreError> {
        match &t.timer {
            Timer::Resume { run_id } => {
                // Claiming the run cancels this timer with it.
                // A store error keeps the timer: the wait is not lost.
                let Some(execution) = self.claim_waiting(run_id, None)? else {
                    // Woken early by an event: the timer is stale.
                    let _ = self.inner.store.take_timer(t);
                    return Ok(None);
                };
                let Ok(permit) = self.inner.permits.clone().acquire_owned().await else {
                    return Ok(None);
                };
                let engine = self.clone();
                Ok(Some(self.spawn(Stage::Follows, async move {
                    engine.resume(execution).await;
                    drop(permit);
                })))
            }
            Timer::RingTimeout { call_key } => {
                let ringing = match self.inner.store.call_state(call_key) {
                    Ok(Some(call)) if call.state == crate::store::CallPhase::Ringing => Some(call),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read a ringing call; its ring timeout is tried again");
                        return Err(e);
                    }
                };
                if let Some(call) = ringing {
                    // The missed call goes in (durably, deduplicated) before
                    // the call is marked ended and the timer removed. If
                    // either fails, both stay as they are and a later pass
                    // fires the timer again: the missed call is then a
                    // duplicate of the one stored (if it was), not a second.
                    if let Err(e) = self.synthesise_missed(call, t.due).await {
                        tracing::error!(error = %e, call_key, "cannot store the synthetic missed call; its ring timeout is tried again");
                        return Err(e);
                    }
                    if let Err(e) = self
                        .inner
                        .store
                        .end_if_ringing(call_key, self.inner.clock.now())
                    {
                        tracing::error!(error = %e, call_key, "cannot end a ringing call; its ring timeout is tried again");
                        return Err(e);
                    }
                }
                let _ = self.inner.store.take_timer(t);
                Ok(None)
            }
        }
    }

    /// A call rang out with no accept or reject: emit `call.missed` as if
    /// the provider had sent it (marked synthetic, and a test when the ring
    /// was), through the inbox so it is durable and deduplicated like any
    /// event. Ok once it is durable; an error leaves it to the caller to
    /// try again (the same id: a duplicate if it got in after all).
    async fn synthesise_missed(
        &self,
        call: CallState,
        due: Timestamp,
    ) -> Result<(), crate::store::StoreError> {
        let (provider, ring_timeout) = match &self.inner.config {
            Some(c) => {
                let c = c.read().expect("config lock").clone();
                match c.source(&call.source) {
                    Some(s) => (s.provider, s.ring_timeout),
                    None => (event::Provider::Auto, None),
                }
            }
            None => (event::Provider::Auto, None),
        };
        let caller_is_phone = call.caller.as_deref().is_some_and(|c| c.starts_with('+'));
        let missed = Event {
            // One missed call per call: the key, and when it started (a
            // number without call ids can call again under the same key).
            id: event::event_id(
                &call.source,
                &format!(
                    "synthetic-missed\0{}\0{}",
                    call.key,
                    call.started_at.as_millisecond()
                ),
            ),
            kind: kind::CALL_MISSED.to_string(),
            direction: call.direction,
            caller: call.caller.clone(),
            caller_is_phone,
            business: call.business.clone(),
            country: call
                .caller
                .as_deref()
                .filter(|_| caller_is_phone)
                .and_then(event::country_of),
            name: None,
            video: call.video,
            at: due,
            call_id: call.call_id.clone(),
            duration: None,
            outcome: None,
            source: call.source.clone(),
            provider,
            synthetic: true,
            // A test ring's missed call is a test too: its runs are marked
            // test and it stays out of the missed-call figures.
            test: call.test,
            data: None,
            raw: RawJson::of(&json!({
                "synthetic": true,
                "reason": "no accept or reject within the source's ring_timeout",
                "ring_timeout": ring_timeout.map(crate::duration::format_duration),
                "first_event_id": call.first_event_id,
            })),
        };
        let store = &self.inner.store;
        let window = self
            .inner
            .config
            .as_ref()
            .map(|c| c.read().expect("config lock").dedupe_window)
            .unwrap_or(crate::config::DEFAULT_DEDUPE_WINDOW);
        let offered = store.accept_events(vec![missed], self.inner.clock.now(), window)?;
        // As ingestion: not handed over until durable. An accepted event
        // whose sync failed stays kept in the store, filed by its next
        // checkpoint (the dispatcher's scan finds it there).
        store.commit_inbox().await?;
        if let Some(missed) = offered.first().map(|o| o.event()) {
            tracing::info!(event_id = %missed.id, source = %missed.source, caller = missed.caller.as_deref().unwrap_or("-"), test = missed.test, "call rang out: synthetic call.missed");
        }
        self.inner.arrivals.offer_or_file(store, offered);
        Ok(())
    }

    /// Stop taking work and wait (at most `grace`) for runs in flight.
    /// Whatever is still running then resumes from its journal on the next
    /// start.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.inner.arrivals.wake_all();
        self.inner.timers_changed.notify_waiters();
        let all = u32::try_from(MAX_CONCURRENT).unwrap_or(u32::MAX);
        match tokio::time::timeout(grace, self.inner.permits.acquire_many(all)).await {
            Ok(Ok(permits)) => drop(permits),
            _ => tracing::warn!("runs still in flight after {grace:?}; they resume from their journals on the next start"),
        }
    }
}

fn log_run(execution: &Execution) {
    tracing::info!(
        run_id = %execution.id,
        workflow = %execution.workflow,
        event_id = %execution.event.id,
        status = execution.status.as_str(),
        "run {}",
        if execution.status.is_finished() { "finished" } else { "paused" }
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use jiff::SignedDuration;

    use super::*;
    use crate::clock::Clock;
    use crate::config::Overrides;
    use crate::delivery::{Delivered, DeliveryFuture, Request};
    use crate::store::{call_key, CallPhase, ExecutionFilter};

    /// A clock that moves only when told.
    struct ManualClock(Mutex<Timestamp>);

    impl Clock for ManualClock {
        fn now(&self) -> Timestamp {
            *self.0.lock().expect("clock lock")
        }
    }

    impl ManualClock {
        fn advance(&self, secs: i64) {
            let mut now = self.0.lock().expect("clock lock");
            *now = now.checked_add(SignedDuration::from_secs(secs)).unwrap();
        }
    }

    /// The workflow here never reaches outside.
    struct NoDelivery;

    impl Delivery for NoDelivery {
        fn deliver(&self, _: Request) -> DeliveryFuture<'_> {
            Box::pin(async {
                Delivered {
                    result: Err("no outbound in these tests".into()),
                    attempts: Vec::new(),
                }
            })
        }
    }

    const MISSED: &str = "name: missed\non: { events: [call.missed] }\nsteps:\n  - log: \"missed {{event.caller}}\"\n";

    /// An engine with one WAHA source whose calls ring for 60 s and a
    /// workflow on `call.missed`, on `clock`, driven by the test (no
    /// dispatcher, no timer service).
    fn engine(dir: &std::path::Path, clock: Arc<ManualClock>) -> (Engine, Arc<Config>) {
        let overrides = Overrides {
            data_dir: Some(dir.join("data")),
            workflows_dir: Some(dir.join("workflows")),
            ..Default::default()
        };
        let yaml = "sources:\n  waha: { provider: waha, ring_timeout: 60s }\n";
        let config = Arc::new(
            Config::from_text("test.yaml", yaml, &overrides, &HashMap::new())
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let known = crate::reload::known_names(&config);
        let missed = compile("missed.yaml", "missed", MISSED, &known).expect("compiles");
        let catalog = crate::workflow::Catalog {
            workflows: vec![Arc::new(missed)],
            problems: Vec::new(),
        };
        let store = Store::open(&dir.join("data"), 8 << 20).unwrap();
        let engine = Engine::new(
            store,
            Arc::new(RwLock::new(Arc::new(catalog))),
            Arc::new(NoDelivery),
            clock,
            Arc::default(),
        )
        .with_config(Arc::new(RwLock::new(config.clone())));
        (engine, config)
    }

    /// A WAHA `call.received` at `at`, as the `waha` source parses it.
    fn ring(config: &Config, at: Timestamp) -> Event {
        let body = json!({
            "id": "evt_engine_ring_1",
            "timestamp": at.as_millisecond(),
            "event": "call.received",
            "session": "default",
            "me": {"id": "5215500000000@c.us"},
            "payload": {"id": "ENGINE0RING0000000000000000000001", "from": "5215512345678@c.us", "isVideo": false, "isGroup": false},
            "engine": "NOWEB"
        });
        let ctx = config.source("waha").unwrap().parse_context(at, None);
        let mut events = event::parse(body.to_string().as_bytes(), &ctx).expect("parses");
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    /// The start of the crash-window tests' workflow: a lookup, and an `if`
    /// whose `else` (a contact write) each test completes.
    const LOOKUP_THEN_ELSE: &str = r#"
name: first-call
on: { events: [call.incoming] }
steps:
  - id: found
    find_contact: { phone: "{{event.caller}}" }
  - if: "{{steps.found.found}}"
    then:
      - log: "known"
    else:
"#;

    /// Only a waiting run is claimed: a record that names a pause but
    /// ended otherwise (a pause that could not be scheduled, as records of
    /// earlier versions kept it) stays as it is when its timer fires.
    #[tokio::test]
    async fn a_run_that_is_not_waiting_is_not_claimed_by_its_timer() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "name: pauses\non: { events: [call.incoming] }\nsteps:\n  - wait: { for: 1h }\n  - log: \"after\"\n";
        let (engine, workflow, event) = engine_with_workflow(dir.path(), "pauses", yaml);
        let paused = engine
            .run_workflow(workflow, &event, RunOptions::default())
            .await
            .expect("it ran");
        assert_eq!(paused.status, RunStatus::Waiting, "{paused:?}");
        let store = &engine.inner.store;
        store
            .update_execution(&paused.id, |e| {
                e.status = RunStatus::Failed;
                true
            })
            .unwrap()
            .expect("updated");
        assert!(engine.claim_waiting(&paused.id, None).unwrap().is_none());
        let kept = store.execution(&paused.id).unwrap().unwrap();
        assert_eq!(kept.status, RunStatus::Failed);
        assert!(kept.waiting.is_some(), "left as it was");
        // The same record, waiting, is claimed.
        store
            .update_execution(&paused.id, |e| {
                e.status = RunStatus::Waiting;
                true
            })
            .unwrap();
        let claimed = engine.claim_waiting(&paused.id, None).unwrap();
        assert_eq!(claimed.map(|e| e.status), Some(RunStatus::Running));
    }

    /// An engine in `dir`, the workflow `name` compiled from `yaml`, and a
    /// ring to run it on.
    fn engine_with_workflow(
        dir: &std::path::Path,
        name: &str,
        yaml: &str,
    ) -> (Engine, Arc<Workflow>, Arc<Event>) {
        let clock = Arc::new(ManualClock(Mutex::new(
            "2026-05-14T14:00:00Z".parse().unwrap(),
        )));
        let (engine, config) = engine(dir, clock.clone());
        let known = crate::reload::known_names(&config);
        let file = format!("{name}.yaml");
        let workflow = Arc::new(compile(&file, name, yaml, &known).expect("compiles"));
        let event = Arc::new(ring(&config, clock.now()));
        (engine, workflow, event)
    }

    /// Run `yaml` (a workflow named `first-call`) on a ring, and return
    /// the run's steps and what its journal held at each contact write.
    async fn journals_at_contact_writes(yaml: &str) -> (Vec<String>, Vec<Option<Vec<String>>>) {
        let dir = tempfile::tempdir().unwrap();
        let (engine, workflow, event) = engine_with_workflow(dir.path(), "first-call", yaml);
        let run_id = crate::store::run_id(&event.id, "first-call");
        let seen: Arc<Mutex<Vec<Option<Vec<String>>>>> = Arc::default();
        let _one_at_a_time = HOOKED.lock().await;
        let _unhook = Unhook;
        {
            let (seen, run_id) = (Arc::clone(&seen), run_id.clone());
            // The hook is global and tests run at once: only this engine's
            // store counts (another test may run the same workflow on the
            // same event, so the same run id).
            let watched = address(engine.store());
            *run::before_contact_write_hook() = Some(Box::new(move |store, id| {
                if id == run_id && address(store) == watched {
                    let paths = store
                        .execution(id)
                        .ok()
                        .flatten()
                        .map(|e| e.steps.into_iter().map(|s| s.path).collect());
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(paths);
                }
            }));
        }
        let done = engine
            .run_workflow(workflow, &event, RunOptions::default())
            .await
            .expect("it ran");
        assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
        let steps = done.steps.into_iter().map(|s| s.path).collect();
        let seen = seen.lock().unwrap().clone();
        (steps, seen)
    }

    /// The contact-write hook is global: tests that set it take turns.
    static HOOKED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Takes the hook away however the test ends.
    struct Unhook;

    impl Drop for Unhook {
        fn drop(&mut self) {
            *run::before_contact_write_hook() = None;
        }
    }

    /// `store`'s address, which the hook compares: another test may run
    /// the same workflow on the same event (so the same run id) at once.
    fn address(store: &crate::store::StoreParts) -> usize {
        std::ptr::from_ref(store) as usize
    }

    fn journal(paths: &[&str]) -> Option<Vec<String>> {
        Some(paths.iter().map(|p| p.to_string()).collect())
    }

    /// A contact write never reaches the disk before the journal of the
    /// steps that ran before it: had a crash come right after the write
    /// (another run's flush can take it to disk at any moment), the
    /// restarted run would find the contact its first attempt created and
    /// take the other branch. (Both tests share the hook: one test.)
    #[tokio::test]
    async fn the_journal_is_written_before_a_contact_write_that_follows_a_read() {
        let first_call = format!(
            "{LOOKUP_THEN_ELSE}{}",
            r#"      - create_contact: { phone: "{{event.caller}}" }
  - tag: { phone: "{{event.caller}}", add: [called] }
  - log: "done"
"#
        );
        let (steps, seen) = journals_at_contact_writes(&first_call).await;
        assert_eq!(steps, ["0", "1", "1.else.0", "2", "3"]);
        assert_eq!(
            seen,
            [
                // The create: the lookup and the branch it chose are in.
                journal(&["0", "1"]),
                // The tag: only a contact write ran since, which leaves the
                // same contact when run again; no write was needed for it.
                journal(&["0", "1"]),
            ]
        );

        // With an `id`, the create's output can be read (`created` is
        // false when it runs again): the tag waits for its record.
        let with_id = first_call.replace(
            "      - create_contact:",
            "      - id: made\n        create_contact:",
        );
        let (_, seen) = journals_at_contact_writes(&with_id).await;
        assert_eq!(
            seen,
            [journal(&["0", "1"]), journal(&["0", "1", "1.else.0"])]
        );
    }

    /// A run restarted after a crash replays a lookup that found nothing as
    /// finding nothing, although the store now holds the contact its first
    /// attempt wrote: the write runs again with what the first attempt
    /// rendered, not with the contact it made.
    #[tokio::test]
    async fn a_replayed_lookup_that_found_nothing_leaves_no_contact_for_later_steps() {
        let segment_yaml = format!(
            "{LOOKUP_THEN_ELSE}{}",
            r#"      - upsert_contact:
          phone: "{{event.caller}}"
          set: { segment: "{{#if contact}}returning{{else}}new{{/if}}" }
"#
        );
        let dir = tempfile::tempdir().unwrap();
        let (engine, workflow, event) =
            engine_with_workflow(dir.path(), "first-call", &segment_yaml);
        let first = engine
            .run_workflow(Arc::clone(&workflow), &event, RunOptions::default())
            .await
            .expect("it ran");
        let caller = event.caller.clone().unwrap();
        let segment = |engine: &Engine| {
            let contact = engine.store().contact(&caller).unwrap().expect("a contact");
            contact.fields.get("segment").cloned()
        };
        assert_eq!(segment(&engine).as_deref(), Some("new"));

        // What a crash right after the upsert reached the disk leaves: the
        // contact, and a journal of the lookup and the branch.
        let mut crashed = first.clone();
        crashed.steps.truncate(2);
        crashed.status = RunStatus::Running;
        crashed.finished_at = None;
        engine.store().save_execution(&crashed).unwrap();

        let again = engine
            .run_workflow(workflow, &event, RunOptions::default())
            .await
            .expect("it ran again");
        assert_eq!(again.status, RunStatus::Succeeded, "{again:?}");
        let paths: Vec<&str> = again.steps.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["0", "1", "1.else.0"]);
        assert_eq!(segment(&engine).as_deref(), Some("new"), "not `returning`");
    }

    /// [`LOOKUP_THEN_ELSE`] completed: a create in the `else`, then a log.
    fn lookup_create_log() -> String {
        format!(
            "{LOOKUP_THEN_ELSE}{}",
            r#"      - create_contact: { phone: "{{event.caller}}" }
  - log: "done"
"#
        )
    }

    /// `event` accepted by `store` at `at`, as ingestion hands it over.
    fn accepted(store: &Store, event: &Event, at: Timestamp) -> StoredEvent {
        store
            .accept_events(vec![event.clone()], at, Duration::from_secs(3600))
            .unwrap()
            .remove(0)
            .into_accepted()
            .unwrap()
    }

    /// Resume the interrupted runs as a start does, and wait for run
    /// `run_id` to end: it succeeds, every step of [`lookup_create_log`]
    /// run or replayed.
    async fn resumed_to_its_end(engine: &Engine, run_id: &str) -> Execution {
        engine.recover().await;
        let mut finished = None;
        for _ in 0..500 {
            match engine.store().execution(run_id).unwrap() {
                Some(e) if e.status != RunStatus::Running => {
                    finished = Some(e);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        let finished = finished.expect("the run was found, resumed and finished");
        assert_eq!(finished.status, RunStatus::Succeeded, "{finished:?}");
        let paths: Vec<&str> = finished.steps.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["0", "1", "1.else.0", "2"]);
        finished
    }

    /// A run of an accepted event whose task panics after its journal was
    /// written (which names the queued event, not the event) gets the
    /// event written into its record before the event leaves the queue:
    /// the next start resumes it from that record, as it resumed such a
    /// run before records named their event.
    #[tokio::test]
    async fn a_run_that_panicked_keeps_its_event_and_resumes_at_the_next_start() {
        let yaml = lookup_create_log();
        let dir = tempfile::tempdir().unwrap();
        let (engine, workflow, event) = engine_with_workflow(dir.path(), "first-call", &yaml);
        let store = engine.store().clone();
        let clock = Arc::new(ManualClock(Mutex::new(event.at)));
        let first = Engine::for_workflow(
            store.clone(),
            Arc::clone(&workflow),
            Arc::new(NoDelivery),
            clock.clone(),
        );
        let accepted = accepted(&store, &event, clock.now());
        assert!(accepted.event_json.is_some(), "as ingestion hands it over");
        let (seq, id) = (accepted.seq, accepted.event.id.clone());
        let run_id = crate::store::run_id(&id, "first-call");

        let _one_at_a_time = HOOKED.lock().await;
        let _unhook = Unhook;
        {
            let (watched, run_id) = (address(&store), run_id.clone());
            *run::before_contact_write_hook() = Some(Box::new(move |store, id| {
                if id == run_id && address(store) == watched {
                    panic!("a step's bug, on purpose");
                }
            }));
        }
        first.process_and_take(accepted).await.unwrap();
        *run::before_contact_write_hook() = None;

        assert!(!store.is_pending(seq, &id).unwrap(), "the event was taken");
        let left = store.execution(&run_id).unwrap().expect("the run's record");
        assert_eq!(left.status, RunStatus::Running);
        assert_eq!(*left.event, *event);
        let paths: Vec<&str> = left.steps.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["0", "1"]);

        let next_start = Engine::for_workflow(store.clone(), workflow, Arc::new(NoDelivery), clock);
        resumed_to_its_end(&next_start, &run_id).await;
        assert!(store
            .contact(event.caller.as_deref().unwrap())
            .unwrap()
            .is_some());
    }

    /// A crash in a run's first drive leaves its record naming its queued
    /// event and no entry in the store's set of runs to resume. The next
    /// start finds it by that event all the same, and finishes it on its
    /// own workflow version although the workflow's file is gone (so the
    /// dispatcher, which runs only loaded workflows, would not).
    #[tokio::test]
    async fn a_first_drive_cut_by_a_crash_resumes_at_the_next_start_though_its_workflow_is_gone() {
        let yaml = lookup_create_log();
        let dir = tempfile::tempdir().unwrap();
        let clock;
        let (run_id, event) = {
            let (engine, workflow, event) = engine_with_workflow(dir.path(), "first-call", &yaml);
            let store = engine.store().clone();
            clock = Arc::new(ManualClock(Mutex::new(event.at)));
            let accepted = accepted(&store, &event, clock.now());
            store.commit_inbox().await.unwrap();
            let handed = Arc::new(accepted.event);
            let json = accepted.event_json.expect("as ingestion hands it over");
            let shared = JournalEvent::queued(json, accepted.seq, &handed.id);
            let run_id = crate::store::run_id(&handed.id, "first-call");

            // The "crash": the run's task ends at its contact write, after
            // its first journal write, and nothing writes the event back.
            let _one_at_a_time = HOOKED.lock().await;
            let _unhook = Unhook;
            {
                let (watched, run_id) = (address(&store), run_id.clone());
                *run::before_contact_write_hook() = Some(Box::new(move |store, id| {
                    if id == run_id && address(store) == watched {
                        panic!("the process stops here");
                    }
                }));
            }
            let first = Engine::for_workflow(
                store.clone(),
                Arc::clone(&workflow),
                Arc::new(NoDelivery),
                clock.clone(),
            );
            let options = RunOptions {
                event_json: Some((Arc::clone(&handed), shared)),
                ..RunOptions::default()
            };
            let task =
                tokio::spawn(async move { first.run_workflow(workflow, &handed, options).await });
            assert!(task.await.is_err(), "the run's task ended at the write");
            store.commit().await.unwrap();
            crate::store::crash(store);
            (run_id, event)
        };

        let store = crate::store::reopen(&dir.path().join("data"));
        let left = store.execution(&run_id).unwrap().expect("its record");
        assert_eq!(left.status, RunStatus::Running);
        // Another workflow loaded; `first-call` only in the store.
        let missed = compile("missed.yaml", "missed", MISSED, &Known::default()).unwrap();
        let next_start =
            Engine::for_workflow(store.clone(), Arc::new(missed), Arc::new(NoDelivery), clock);
        let finished = resumed_to_its_end(&next_start, &run_id).await;
        assert_eq!(*finished.event, *event);
    }

    /// A disk that fails when the ring times out must not lose the missed
    /// call: its timer stays and the call keeps ringing until a later pass
    /// stores the missed call, which then runs its workflow once.
    #[tokio::test]
    async fn a_missed_call_that_cannot_be_stored_keeps_its_ring_timeout_for_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock(Mutex::new(
            "2026-05-14T14:00:00Z".parse().unwrap(),
        )));
        let (engine, config) = engine(dir.path(), clock.clone());
        let store = engine.store().clone();
        let ring = ring(&config, clock.now());
        let key = call_key(&ring).unwrap();
        engine.track_call(&ring);
        assert_eq!(store.timer_count(), 1, "the ring timeout is set");

        clock.advance(61);
        store.dangerous_fail_commits(true);
        let due = store.due_timers(clock.now(), 10).unwrap();
        assert_eq!(due.len(), 1);
        let fired = engine.fire(&due[0]).await;
        assert_eq!(
            store.timer_count(),
            1,
            "the ring timeout is kept for a retry"
        );
        let call = store.call_state(&key).unwrap().unwrap();
        assert_eq!(call.state, CallPhase::Ringing, "{call:?}");
        assert!(fired.is_err(), "the failure is reported");
        // The next pass, while the disk still fails, fails the same way.
        assert!(engine.fire(&due[0]).await.is_err());
        assert_eq!(store.timer_count(), 1);

        store.dangerous_fail_commits(false);
        clock.advance(1);
        assert!(engine.fire(&due[0]).await.is_ok(), "the retry goes through");
        assert_eq!(store.timer_count(), 0, "the ring timeout is done");
        let call = store.call_state(&key).unwrap().unwrap();
        assert_eq!(call.state, CallPhase::Ended, "{call:?}");
        // The missed call stored by the failed first try (the retry found
        // it a duplicate) is processed once.
        engine.settle().await;
        let (runs, _) = store
            .list_executions(&ExecutionFilter::default(), 100, None)
            .unwrap();
        assert_eq!(runs.len(), 1, "one missed call, one run: {runs:#?}");
        assert_eq!(runs[0].event.kind, kind::CALL_MISSED);
        assert!(runs[0].event.synthetic);
        assert_eq!(
            runs[0].event.call_id.as_deref(),
            Some("ENGINE0RING0000000000000000000001")
        );
    }
}
