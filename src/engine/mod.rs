//! The engine: takes accepted events from the inbox, runs every workflow
//! that listens for them, and records each run.
//!
//! - The dispatcher reads the `pending` queue in arrival order (woken by
//!   ingestion, and once a second regardless), hands each event to a task,
//!   and removes it from the queue once all its runs are recorded. A crash
//!   before that re-runs the event on start; debounce and count are keyed
//!   by event id, so a re-run neither debounces itself nor counts twice.
//! - Runs of different events proceed concurrently (bounded by
//!   [`MAX_CONCURRENT_EVENTS`]); contact changes are atomic in the store.
//! - Outbound steps go through [`Delivery`], a trait, so tests fake it.

mod run;
mod waiters;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::clock::SharedClock;
use crate::delivery::Delivery;
use crate::event::Event;
use crate::store::{Execution, Store, StoredEvent};
use crate::workflow::{SharedCatalog, Workflow};

pub use run::RunOptions;
use waiters::Waiters;

/// How many events are processed at once.
pub const MAX_CONCURRENT_EVENTS: usize = 512;
/// How many pending events the dispatcher reads per pass.
const DISPATCH_BATCH: usize = 1024;
/// Look at the queue at least this often, even without a wake-up.
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
    wake: Arc<Notify>,
    waiters: Waiters,
    in_flight: Mutex<HashSet<u64>>,
    permits: Arc<Semaphore>,
}

impl Engine {
    pub fn new(
        store: Store,
        catalog: SharedCatalog,
        delivery: Arc<dyn Delivery>,
        clock: SharedClock,
        wake: Arc<Notify>,
    ) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                store,
                catalog,
                delivery,
                clock,
                wake,
                waiters: Waiters::default(),
                in_flight: Mutex::new(HashSet::new()),
                permits: Arc::new(Semaphore::new(MAX_CONCURRENT_EVENTS)),
            }),
        }
    }

    /// Run the dispatcher until the task is aborted.
    pub async fn dispatch_forever(self) {
        loop {
            let dispatched = self.dispatch_once().await;
            if dispatched == 0 {
                let _ = tokio::time::timeout(IDLE_POLL, self.inner.wake.notified()).await;
            }
        }
    }

    /// Hand every pending event not already in flight to a task. Returns
    /// how many were handed out.
    async fn dispatch_once(&self) -> usize {
        let store = self.inner.store.clone();
        let pending =
            match tokio::task::spawn_blocking(move || store.pending_events(DISPATCH_BATCH)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the pending queue");
                    return 0;
                }
                Err(_) => return 0,
            };
        let mut handed = 0;
        for stored in pending {
            {
                let mut in_flight = self.inner.in_flight.lock().expect("in-flight lock");
                if !in_flight.insert(stored.seq) {
                    continue;
                }
            }
            let permit = match self.inner.permits.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return handed,
            };
            handed += 1;
            let engine = self.clone();
            tokio::spawn(async move {
                let seq = stored.seq;
                engine.process(stored).await;
                if let Err(e) = engine.inner.store.mark_taken(seq) {
                    tracing::error!(error = %e, "cannot remove a processed event from the queue");
                }
                engine
                    .inner
                    .in_flight
                    .lock()
                    .expect("in-flight lock")
                    .remove(&seq);
                drop(permit);
            });
        }
        handed
    }

    /// Run every matching workflow for one stored event.
    pub async fn process(&self, stored: StoredEvent) {
        let event = stored.event;
        self.inner.waiters.wake(&event);
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
        let runs = matching.into_iter().map(|wf| {
            let engine = self.clone();
            let event = event.clone();
            async move { engine.run_workflow(wf, &event, RunOptions::default()).await }
        });
        for execution in futures_join(runs).await.into_iter().flatten() {
            tracing::info!(
                run_id = %execution.id,
                workflow = %execution.workflow,
                event_id = %execution.event.id,
                status = execution.status.as_str(),
                "run finished"
            );
        }
    }

    /// Run one workflow for one event, if its `when` holds. The execution is
    /// recorded in the store (unless `options.record` is false).
    pub async fn run_workflow(
        &self,
        workflow: Arc<Workflow>,
        event: &Event,
        options: RunOptions,
    ) -> Option<Execution> {
        run::run(&self.inner, workflow, event, options).await
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
}

/// Await a set of futures concurrently (they are few: the workflows
/// matching one event).
async fn futures_join<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => tracing::error!(error = %e, "a workflow run panicked"),
        }
    }
    out
}
