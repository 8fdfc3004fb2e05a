//! Turns on the CPU for the engine's tasks, so webhook answers stay fast
//! when runs fall behind.
//!
//! Why: every accepted event becomes a task, and tokio polls runnable tasks
//! roughly in the order they became runnable. When events arrive faster
//! than runs finish, thousands of run tasks are runnable at once, and a
//! webhook's request task, woken by its socket or by the inbox's sync,
//! waits behind all of them: its answer took 0.6–1 s at p99 in the load bench's
//! fixed-rate case on a slow day, while its own work is about a millisecond.
//! Providers time out and retry at that point.
//!
//! A [`Gated`] task holds a turn only while it is being polled, that is
//! while its steps execute, and gives it back whenever it waits (a send, a
//! flush, another task). At most one engine task per tokio worker is in its
//! poll or about to be; the others wait in the gate's queue. A task woken
//! by its own I/O still passes through tokio's queue once, for a poll that
//! only joins the gate's queue; it is the long polls that stay out of it.
//! A request task then waits behind a few run stretches at most: the task
//! a finishing poll hands its turn to runs next on that worker (tokio's
//! "run next" slot, at most three times in a row before the worker's queue
//! gets its turn).
//!
//! Order:
//! - a task that has had a turn before (a run between its steps, an event
//!   whose runs are under way) goes first: work in progress finishes
//!   before new work starts;
//! - then new tasks for work under way: an event's runs, and runs resumed
//!   after a wait (by an event, a timer, or a restart);
//! - then new events, first come, first served.
//!
//! New tasks (the last two groups) get one turn fewer than there are
//! workers (with more than one), so a burst of new work leaves a core to
//! the requests, until [`NEW_WORK_BACKLOG`] of them wait. Past that, new
//! work competes with the requests for every core again, as it did before
//! the gate: answers slow down with the runs, which holds back clients
//! that wait for their answers, but nothing refuses work, and under a
//! sustained overload the stored queue keeps growing for as long as
//! acceptance outpaces the runs (`ringback_events_pending` shows it). The
//! backlog is not lost by waiting: every event in it was stored before its
//! 2xx.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// New tasks waiting for a turn beyond which new work stops leaving a core
/// to requests. The queue is mostly events that have not started (their
/// runs are created at their first poll), so this is 1,000–2,000 events:
/// about a second of runs on a 2-core machine, which is what the load
/// bench's backlog took to drain after its 10 s of full load.
pub const NEW_WORK_BACKLOG: usize = 2048;

/// Where a task stands, which decides its queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage {
    /// Not polled yet: a new event.
    New,
    /// Not polled yet, for work already under way: an event's run, a
    /// resumed run.
    Follows,
    /// Polled before.
    Started,
}

/// Hands out a fixed number of turns, fewer of them to new tasks.
pub struct CpuGate {
    state: Mutex<GateState>,
}

struct GateState {
    free: usize,
    /// Turns held by tasks in their first poll, and how many they may hold
    /// while fewer than `new_backlog_limit` new tasks wait.
    new_in_use: usize,
    new_limit: usize,
    new_backlog_limit: usize,
    /// Live (not dropped) tasks in `follows` and `new`.
    new_queued: usize,
    started: VecDeque<Arc<Waiter>>,
    follows: VecDeque<Arc<Waiter>>,
    new: VecDeque<Arc<Waiter>>,
}

impl GateState {
    /// Pass a free turn to the first waiter that may have it; the waker to
    /// wake once the lock is let go.
    fn grant_next(&mut self) -> Option<Waker> {
        while self.free > 0 {
            let waiter = match self.started.pop_front() {
                Some(w) => w,
                None if self.new_may_start() => {
                    self.follows.pop_front().or_else(|| self.new.pop_front())?
                }
                None => return None,
            };
            let mut slot = waiter.slot();
            if slot.gone {
                continue;
            }
            slot.granted = true;
            self.free -= 1;
            if slot.stage != Stage::Started {
                self.new_queued -= 1;
                self.new_in_use += 1;
            }
            return Some(slot.waker.clone());
        }
        None
    }

    fn new_may_start(&self) -> bool {
        self.new_in_use < self.new_limit || self.new_queued >= self.new_backlog_limit
    }
}

/// A queued task. Changed only under the gate's lock (taken first).
struct Waiter {
    slot: Mutex<Slot>,
}

struct Slot {
    /// The gate passed a turn to this task; it is the task's to use or to
    /// pass on.
    granted: bool,
    /// The task was dropped while queued: skip it.
    gone: bool,
    stage: Stage,
    waker: Waker,
}

impl CpuGate {
    /// `turns` tasks at once, at most `new_turns` of them in their first
    /// poll while fewer than `new_backlog` new tasks wait for theirs.
    pub fn new(turns: usize, new_turns: usize, new_backlog: usize) -> CpuGate {
        let turns = turns.max(1);
        CpuGate {
            state: Mutex::new(GateState {
                free: turns,
                new_in_use: 0,
                new_limit: new_turns.clamp(1, turns),
                new_backlog_limit: new_backlog,
                new_queued: 0,
                started: VecDeque::new(),
                follows: VecDeque::new(),
                new: VecDeque::new(),
            }),
        }
    }

    /// A turn per worker of the current tokio runtime (one per core unless
    /// configured otherwise; outside a runtime, one per core), one fewer
    /// for new tasks. With a single worker new tasks may take the only
    /// turn: there is none to leave.
    pub fn per_worker() -> CpuGate {
        let workers = tokio::runtime::Handle::try_current()
            .map(|h| h.metrics().num_workers())
            .unwrap_or_else(|_| std::thread::available_parallelism().map_or(2, |n| n.get()));
        CpuGate::new(workers, workers.saturating_sub(1), NEW_WORK_BACKLOG)
    }

    /// How many tasks wait for a turn.
    #[cfg(test)]
    fn queued(&self) -> usize {
        let state = self.lock();
        let live = |q: &VecDeque<Arc<Waiter>>| q.iter().filter(|w| !w.slot().gone).count();
        live(&state.started) + live(&state.follows) + live(&state.new)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a turn now, or queue for one. `queued` is the task's place in
    /// the queue, if it has one.
    fn take_turn(&self, queued: &mut Option<Arc<Waiter>>, stage: Stage, waker: &Waker) -> bool {
        let mut state = self.lock();
        if let Some(waiter) = queued {
            let mut slot = waiter.slot();
            if slot.granted {
                drop(slot);
                *queued = None;
                return true;
            }
            if !slot.waker.will_wake(waker) {
                slot.waker = waker.clone();
            }
            return false;
        }
        // Turns are handed straight to waiters (`grant_next`), so a turn
        // free for this kind of task means none of its kind is queued.
        let new = stage != Stage::Started;
        if state.free > 0 && (!new || state.new_may_start()) {
            state.free -= 1;
            if new {
                state.new_in_use += 1;
            }
            return true;
        }
        let waiter = Arc::new(Waiter {
            slot: Mutex::new(Slot {
                granted: false,
                gone: false,
                stage,
                waker: waker.clone(),
            }),
        });
        match stage {
            Stage::Started => state.started.push_back(Arc::clone(&waiter)),
            Stage::Follows => state.follows.push_back(Arc::clone(&waiter)),
            Stage::New => state.new.push_back(Arc::clone(&waiter)),
        }
        if new {
            state.new_queued += 1;
        }
        *queued = Some(waiter);
        // This one may have made the queue long enough for a free turn.
        grant_next_and_wake(state);
        false
    }

    /// Give a turn back (`new`: it was taken for a first poll), and pass it
    /// to the first waiter that may have it.
    fn end_turn(&self, new: bool) {
        let mut state = self.lock();
        state.free += 1;
        if new {
            state.new_in_use -= 1;
        }
        grant_next_and_wake(state);
    }

    /// A queued task is going away: pass on a turn it was given, or leave
    /// the queue.
    fn leave(&self, waiter: &Arc<Waiter>) {
        let (granted, new) = {
            let mut state = self.lock();
            let mut slot = waiter.slot();
            slot.gone = true;
            let new = slot.stage != Stage::Started;
            if new && !slot.granted {
                state.new_queued -= 1;
            }
            (slot.granted, new)
        };
        if granted {
            self.end_turn(new);
        }
    }
}

/// Pass a free turn on, if a waiter may have it, and wake that waiter
/// once the lock is let go.
fn grant_next_and_wake(mut state: std::sync::MutexGuard<'_, GateState>) {
    let next = state.grant_next();
    drop(state);
    if let Some(waker) = next {
        waker.wake();
    }
}

impl Waiter {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `inner`, polled only while it holds one of `gate`'s turns.
pub struct Gated<F> {
    gate: Arc<CpuGate>,
    inner: Pin<Box<F>>,
    queued: Option<Arc<Waiter>>,
    stage: Stage,
}

impl<F: Future> Gated<F> {
    /// `stage`: `New` or `Follows`; it becomes `Started` at the first poll.
    pub fn new(gate: Arc<CpuGate>, stage: Stage, inner: F) -> Gated<F> {
        Gated {
            gate,
            inner: Box::pin(inner),
            queued: None,
            stage,
        }
    }
}

/// Gives the turn back when the poll ends, even by a panic.
struct Turn<'g> {
    gate: &'g CpuGate,
    new: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.gate.end_turn(self.new);
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if !this
            .gate
            .take_turn(&mut this.queued, this.stage, cx.waker())
        {
            return Poll::Pending;
        }
        let _turn = Turn {
            gate: &this.gate,
            new: this.stage != Stage::Started,
        };
        this.stage = Stage::Started;
        this.inner.as_mut().poll(cx)
    }
}

impl<F> Drop for Gated<F> {
    fn drop(&mut self) {
        if let Some(waiter) = self.queued.take() {
            self.gate.leave(&waiter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    fn wakes(count: &Count) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    /// Hold a turn as a new task would, by hand.
    fn hold_new_turn(gate: &CpuGate) {
        assert!(gate.take_turn(&mut None, Stage::New, Waker::noop()));
    }

    /// Counts the gated tasks inside a poll at once, and inside a first
    /// poll.
    #[derive(Default)]
    struct Inside {
        now: AtomicUsize,
        most: AtomicUsize,
        first_now: AtomicUsize,
        first_most: AtomicUsize,
    }

    async fn busy(inside: Arc<Inside>, stretches: usize) {
        for i in 0..stretches {
            let now = inside.now.fetch_add(1, Ordering::SeqCst) + 1;
            inside.most.fetch_max(now, Ordering::SeqCst);
            if i == 0 {
                let first = inside.first_now.fetch_add(1, Ordering::SeqCst) + 1;
                inside.first_most.fetch_max(first, Ordering::SeqCst);
            }
            // Work that does not yield, as a run's steps between awaits.
            std::thread::sleep(Duration::from_micros(300));
            if i == 0 {
                inside.first_now.fetch_sub(1, Ordering::SeqCst);
            }
            inside.now.fetch_sub(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_tasks_poll_at_once_than_there_are_turns() {
        let gate = Arc::new(CpuGate::new(3, 1, 10_000));
        let inside = Arc::new(Inside::default());
        let tasks: Vec<_> = (0..60)
            .map(|_| {
                let f = busy(Arc::clone(&inside), 4);
                tokio::spawn(Gated::new(Arc::clone(&gate), Stage::New, f))
            })
            .collect();
        let all = async {
            for t in tasks {
                t.await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("every task finished: no turn or wake-up was lost");
        // 4 workers, 3 turns, 1 of them for first polls. (How many turns
        // were in use at once, at best, depends on the scheduling: on a
        // loaded machine the workers may never overlap.)
        let most = inside.most.load(Ordering::SeqCst);
        assert!(most <= 3, "{most} tasks polled at once");
        assert_eq!(inside.first_most.load(Ordering::SeqCst), 1);
        let state = gate.lock();
        assert_eq!((state.free, state.new_in_use, state.new_queued), (3, 0, 0));
    }

    #[test]
    fn started_tasks_go_first_then_work_under_way_then_new_events() {
        let gate = Arc::new(CpuGate::new(1, 1, 100));
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        // `started` takes the turn, waits for `go` and gives the turn back.
        let mut started = Box::pin(Gated::new(Arc::clone(&gate), Stage::New, async {
            wait.await.ok();
            "started"
        }));
        assert!(started.as_mut().poll(&mut cx).is_pending());
        hold_new_turn(&gate);
        let mut new = Box::pin(Gated::new(Arc::clone(&gate), Stage::New, async { "new" }));
        let mut follows = Box::pin(Gated::new(Arc::clone(&gate), Stage::Follows, async {
            "follows"
        }));
        assert!(new.as_mut().poll(&mut cx).is_pending());
        assert!(follows.as_mut().poll(&mut cx).is_pending());
        go.send(()).unwrap();
        assert!(started.as_mut().poll(&mut cx).is_pending(), "no turn free");
        assert_eq!(gate.queued(), 3);
        let before = wakes(&count);
        // The turn comes back: it goes to the task that queued last but had
        // started, then to the run, then to the new event.
        gate.end_turn(true);
        assert_eq!(wakes(&count), before + 1, "the next task is woken");
        assert!(new.as_mut().poll(&mut cx).is_pending());
        assert!(follows.as_mut().poll(&mut cx).is_pending());
        assert_eq!(started.as_mut().poll(&mut cx), Poll::Ready("started"));
        assert!(new.as_mut().poll(&mut cx).is_pending());
        assert_eq!(follows.as_mut().poll(&mut cx), Poll::Ready("follows"));
        assert_eq!(new.as_mut().poll(&mut cx), Poll::Ready("new"));
        assert_eq!(wakes(&count), before + 3);
        assert_eq!(gate.queued(), 0);
        assert_eq!(gate.lock().free, 1);
    }

    #[test]
    fn a_task_dropped_while_queued_passes_its_turn_on() {
        let gate = Arc::new(CpuGate::new(1, 1, 100));
        let (count, waker) = counting();
        let (last_count, last_waker) = counting();
        let mut cx = Context::from_waker(&waker);
        hold_new_turn(&gate);
        let mut granted = Box::pin(Gated::new(Arc::clone(&gate), Stage::New, async { 1 }));
        let mut never_granted = Box::pin(Gated::new(Arc::clone(&gate), Stage::New, async { 2 }));
        let mut last = Box::pin(Gated::new(Arc::clone(&gate), Stage::New, async { 3 }));
        assert!(granted.as_mut().poll(&mut cx).is_pending());
        assert!(never_granted.as_mut().poll(&mut cx).is_pending());
        assert!(last
            .as_mut()
            .poll(&mut Context::from_waker(&last_waker))
            .is_pending());
        assert_eq!(gate.queued(), 3);
        // The turn goes to `granted`, which is dropped before it uses it;
        // `never_granted` leaves the queue without one.
        gate.end_turn(true);
        assert_eq!(wakes(&count), 1);
        drop(never_granted);
        assert_eq!(gate.queued(), 1);
        drop(granted);
        assert_eq!(wakes(&last_count), 1, "`last` is woken with the turn");
        assert_eq!(wakes(&count), 1, "the dropped task is skipped");
        assert_eq!(last.as_mut().poll(&mut cx), Poll::Ready(3));
        let state = gate.lock();
        assert_eq!((state.free, state.new_in_use, state.new_queued), (1, 0, 0));
    }

    #[test]
    fn a_poll_that_panics_gives_its_turn_back() {
        let gate = Arc::new(CpuGate::new(1, 1, 100));
        let mut cx = Context::from_waker(Waker::noop());
        let mut boom = Box::pin(Gated::new(Arc::clone(&gate), Stage::New, async {
            panic!("a step panicked")
        }));
        let poll = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = boom.as_mut().poll(&mut cx);
        }));
        assert!(poll.is_err());
        let state = gate.lock();
        assert_eq!((state.free, state.new_in_use), (1, 0));
    }

    #[test]
    fn a_queued_task_woken_by_another_waker_is_woken_by_that_one() {
        let gate = Arc::new(CpuGate::new(1, 1, 100));
        let (first_count, first) = counting();
        let (second_count, second) = counting();
        hold_new_turn(&gate);
        let mut task = Box::pin(Gated::new(Arc::clone(&gate), Stage::New, async {}));
        assert!(task
            .as_mut()
            .poll(&mut Context::from_waker(&first))
            .is_pending());
        // Polled again from elsewhere (moved to another task, say).
        assert!(task
            .as_mut()
            .poll(&mut Context::from_waker(&second))
            .is_pending());
        gate.end_turn(true);
        assert_eq!((wakes(&first_count), wakes(&second_count)), (0, 1));
    }

    #[test]
    fn new_tasks_leave_a_turn_for_the_others() {
        let gate = Arc::new(CpuGate::new(2, 1, 100));
        let (count, waker) = counting();
        let (mut a, mut b, mut c) = (None, None, None);
        assert!(
            gate.take_turn(&mut a, Stage::New, &waker),
            "the new tasks' turn"
        );
        assert!(!gate.take_turn(&mut b, Stage::Follows, &waker), "no second");
        assert!(
            gate.take_turn(&mut c, Stage::Started, &waker),
            "a started task takes the last"
        );
        // The started task's turn comes back: still not for a new task.
        gate.end_turn(false);
        assert_eq!(wakes(&count), 0);
        assert!(!gate.take_turn(&mut b, Stage::Follows, &waker));
        // The new tasks' turn comes back: it goes to the queued one.
        gate.end_turn(true);
        assert_eq!(wakes(&count), 1);
        assert!(gate.take_turn(&mut b, Stage::Follows, &waker));
        let state = gate.lock();
        assert_eq!((state.free, state.new_in_use), (1, 1));
    }

    #[test]
    fn a_long_queue_of_new_work_takes_the_turn_kept_for_requests() {
        let gate = Arc::new(CpuGate::new(2, 1, 3));
        let (count, waker) = counting();
        hold_new_turn(&gate);
        let mut queue: Vec<_> = (0..3).map(|_| None).collect();
        for q in &mut queue[..2] {
            assert!(!gate.take_turn(q, Stage::New, &waker));
        }
        // Two wait: a turn is free, but not for new work.
        assert_eq!((gate.lock().free, wakes(&count)), (1, 0));
        // The third makes the queue long enough: the free turn goes to the
        // head of it.
        assert!(!gate.take_turn(&mut queue[2], Stage::New, &waker));
        assert_eq!((gate.lock().free, wakes(&count)), (0, 1));
        assert!(gate.take_turn(&mut queue[0], Stage::New, &waker));
        // Two wait again, below the limit: a turn coming back stays free.
        gate.end_turn(true);
        assert_eq!((gate.lock().free, wakes(&count)), (1, 1));
        assert!(!gate.take_turn(&mut queue[1], Stage::New, &waker));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_aborted_task_gives_back_a_turn_it_was_handed() {
        let gate = Arc::new(CpuGate::new(1, 1, 100));
        hold_new_turn(&gate);
        let ran = Arc::new(AtomicUsize::new(0));
        let task = {
            let ran = Arc::clone(&ran);
            tokio::spawn(Gated::new(Arc::clone(&gate), Stage::New, async move {
                ran.fetch_add(1, Ordering::SeqCst);
            }))
        };
        tokio::task::yield_now().await; // The task queues at the gate.
        assert_eq!(gate.queued(), 1);
        gate.end_turn(true); // Handed the turn; aborted before its poll.
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        let state = gate.lock();
        assert_eq!((state.free, state.new_in_use, state.new_queued), (1, 0, 0));
    }
}
