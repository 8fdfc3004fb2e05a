//! Turns on the CPU for the engine's tasks, so acknowledgements stay fast
//! when runs fall behind.
//!
//! Why: every accepted event becomes a task, and tokio polls runnable tasks
//! roughly in the order they became runnable. When events arrive faster
//! than runs finish, thousands of run tasks are runnable at once, and a
//! webhook's request task, woken by its socket or by the inbox's sync,
//! waits behind all of them: its answer took 0.3–0.8 s in the load bench's
//! fixed-rate case on a slow day, while its own work is about a millisecond.
//! Providers time out and retry at that point.
//!
//! A [`Gated`] task holds a turn only while it is being polled, that is
//! while its steps execute, and gives it back whenever it waits (a send, a
//! flush, another task). At most [`CpuGate::turns`] engine tasks are polled
//! or about to be; the rest wait in the gate's queue, not in tokio's, so a
//! request task is never more than a few run stretches behind. The backlog
//! is not lost by waiting here: every event in it is stored before its 2xx.
//!
//! Order: a task that has had a turn before (a run between its steps, an
//! event whose runs have finished) goes before a task that has not started,
//! so work in progress finishes before new work starts; within each group,
//! first come, first served.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Tasks waiting to start beyond which new work stops yielding to
/// requests: an event makes two (its own and its run's), so this is about
/// 1,000 events, half a second of runs on a 2-core machine.
pub const FRESH_BACKLOG: usize = 2048;

/// Hands out a fixed number of turns, fewer of them to tasks that have
/// not started.
pub struct CpuGate {
    state: Mutex<GateState>,
}

struct GateState {
    free: usize,
    /// Turns held by tasks in their first poll, and how many they may hold:
    /// new work never takes every core, so requests always find one...
    fresh_in_use: usize,
    fresh_limit: usize,
    /// ...unless this many tasks wait to start: then the backlog is large
    /// enough (about a second of work) that new work shares the CPU evenly
    /// with requests again, and clients are slowed instead.
    fresh_backlog_limit: usize,
    /// Live (not dropped) tasks in `fresh`.
    fresh_queued: usize,
    /// Tasks that have had a turn before: served first.
    continuing: VecDeque<Arc<Waiter>>,
    /// Tasks that have not started yet.
    fresh: VecDeque<Arc<Waiter>>,
}

impl GateState {
    /// Pass a free turn to the first waiter that may have it; the waker to
    /// wake once the lock is let go.
    fn grant_next(&mut self) -> Option<Waker> {
        while self.free > 0 {
            let waiter = match self.continuing.pop_front() {
                Some(w) => w,
                None if self.fresh_may_start() => self.fresh.pop_front()?,
                None => return None,
            };
            let mut slot = waiter.slot();
            if slot.gone {
                continue;
            }
            slot.granted = true;
            self.free -= 1;
            if slot.fresh {
                self.fresh_queued -= 1;
                self.fresh_in_use += 1;
            }
            return Some(slot.waker.clone());
        }
        None
    }

    fn fresh_may_start(&self) -> bool {
        self.fresh_in_use < self.fresh_limit || self.fresh_queued >= self.fresh_backlog_limit
    }
}

/// A queued task. Changed only under the gate's lock.
struct Waiter {
    slot: Mutex<Slot>,
}

struct Slot {
    /// The gate passed a turn to this task; it is the task's to use or to
    /// pass on.
    granted: bool,
    /// The task was dropped while queued: skip it.
    gone: bool,
    /// Queued as a task that has not started.
    fresh: bool,
    waker: Waker,
}

impl CpuGate {
    /// `turns` tasks at once, at most `fresh_turns` of them in their first
    /// poll while fewer than `fresh_backlog` wait for theirs.
    pub fn new(turns: usize, fresh_turns: usize, fresh_backlog: usize) -> CpuGate {
        let turns = turns.max(1);
        CpuGate {
            state: Mutex::new(GateState {
                free: turns,
                fresh_in_use: 0,
                fresh_limit: fresh_turns.clamp(1, turns),
                fresh_backlog_limit: fresh_backlog,
                fresh_queued: 0,
                continuing: VecDeque::new(),
                fresh: VecDeque::new(),
            }),
        }
    }

    /// A turn per core (tokio's default worker count), and one fewer for
    /// work that has not started.
    pub fn per_core() -> CpuGate {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        CpuGate::new(cores, cores - 1, FRESH_BACKLOG)
    }

    /// How many tasks wait for a turn.
    #[cfg(test)]
    fn queued(&self) -> usize {
        let state = self.lock();
        let live = |q: &VecDeque<Arc<Waiter>>| q.iter().filter(|w| !w.slot().gone).count();
        live(&state.continuing) + live(&state.fresh)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a turn now, or queue for one. `queued` is the task's place in
    /// the queue, if it has one.
    fn take_turn(&self, queued: &mut Option<Arc<Waiter>>, started: bool, waker: &Waker) -> bool {
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
        // Turns are handed straight to waiters (`end_turn`), so a turn free
        // for this kind of task means none of its kind is queued.
        if state.free > 0 && (started || state.fresh_may_start()) {
            state.free -= 1;
            if !started {
                state.fresh_in_use += 1;
            }
            return true;
        }
        let waiter = Arc::new(Waiter {
            slot: Mutex::new(Slot {
                granted: false,
                gone: false,
                fresh: !started,
                waker: waker.clone(),
            }),
        });
        match started {
            true => state.continuing.push_back(Arc::clone(&waiter)),
            false => {
                state.fresh.push_back(Arc::clone(&waiter));
                state.fresh_queued += 1;
            }
        }
        *queued = Some(waiter);
        // This one may have made the queue long enough for a free turn.
        let next = state.grant_next();
        drop(state);
        if let Some(waker) = next {
            waker.wake();
        }
        false
    }

    /// Give a turn back (`fresh`: it was taken by a task that had not
    /// started), and pass it to the first waiter that may have it.
    fn end_turn(&self, fresh: bool) {
        let mut state = self.lock();
        state.free += 1;
        if fresh {
            state.fresh_in_use -= 1;
        }
        let next = state.grant_next();
        drop(state);
        if let Some(waker) = next {
            waker.wake();
        }
    }

    /// A queued task is going away: pass on a turn it was given, or leave
    /// the queue.
    fn leave(&self, waiter: &Arc<Waiter>) {
        let (granted, fresh) = {
            let mut state = self.lock();
            let mut slot = waiter.slot();
            slot.gone = true;
            if slot.fresh && !slot.granted {
                state.fresh_queued -= 1;
            }
            (slot.granted, slot.fresh)
        };
        if granted {
            self.end_turn(fresh);
        }
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
    started: bool,
}

impl<F: Future> Gated<F> {
    pub fn new(gate: Arc<CpuGate>, inner: F) -> Gated<F> {
        Gated {
            gate,
            inner: Box::pin(inner),
            queued: None,
            started: false,
        }
    }
}

/// Gives the turn back when the poll ends, even by a panic.
struct Turn<'g> {
    gate: &'g CpuGate,
    fresh: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.gate.end_turn(self.fresh);
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if !this
            .gate
            .take_turn(&mut this.queued, this.started, cx.waker())
        {
            return Poll::Pending;
        }
        let _turn = Turn {
            gate: &this.gate,
            fresh: !this.started,
        };
        this.started = true;
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
    use std::time::Duration;

    /// A task that counts how many gated tasks are inside a poll at once.
    async fn busy(inside: Arc<AtomicUsize>, most: Arc<AtomicUsize>, stretches: usize) {
        for _ in 0..stretches {
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            // Work that does not yield, as a run's steps between awaits.
            std::thread::sleep(Duration::from_micros(200));
            inside.fetch_sub(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_tasks_run_at_once_than_there_are_turns() {
        let gate = Arc::new(CpuGate::new(2, 2, 100));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let f = busy(Arc::clone(&inside), Arc::clone(&most), 5);
                tokio::spawn(Gated::new(Arc::clone(&gate), f))
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "4 workers, 2 turns");
        assert_eq!(gate.queued(), 0);
        // Every turn came back: two tasks can take one each at once.
        let state = gate.lock();
        assert_eq!(state.free, 2);
    }

    #[test]
    fn a_started_task_goes_before_tasks_that_have_not_started() {
        let gate = Arc::new(CpuGate::new(1, 1, 100));
        let waker = Waker::noop().clone();
        let mut cx = Context::from_waker(&waker);
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        // `started` takes the turn, waits for `go` and gives the turn back.
        let mut started = Box::pin(Gated::new(Arc::clone(&gate), async {
            wait.await.ok();
            "started"
        }));
        assert!(started.as_mut().poll(&mut cx).is_pending());
        // Someone else holds the only turn now.
        let mut none = None;
        assert!(gate.take_turn(&mut none, false, &waker));
        let mut fresh = Box::pin(Gated::new(Arc::clone(&gate), async { "fresh" }));
        assert!(fresh.as_mut().poll(&mut cx).is_pending());
        go.send(()).unwrap();
        assert!(started.as_mut().poll(&mut cx).is_pending(), "no turn free");
        assert_eq!(gate.queued(), 2);
        // The turn comes back: the task that had started queued later but
        // goes first.
        gate.end_turn(true);
        assert!(fresh.as_mut().poll(&mut cx).is_pending());
        assert_eq!(started.as_mut().poll(&mut cx), Poll::Ready("started"));
        assert_eq!(fresh.as_mut().poll(&mut cx), Poll::Ready("fresh"));
        assert_eq!(gate.queued(), 0);
        assert_eq!(gate.lock().free, 1);
    }

    #[test]
    fn a_task_dropped_while_queued_passes_its_turn_on() {
        let gate = Arc::new(CpuGate::new(1, 1, 100));
        let waker = Waker::noop().clone();
        let mut cx = Context::from_waker(&waker);
        let mut none = None;
        assert!(gate.take_turn(&mut none, false, &waker));
        let mut granted = Box::pin(Gated::new(Arc::clone(&gate), async { 1 }));
        let mut never_granted = Box::pin(Gated::new(Arc::clone(&gate), async { 2 }));
        let mut last = Box::pin(Gated::new(Arc::clone(&gate), async { 3 }));
        assert!(granted.as_mut().poll(&mut cx).is_pending());
        assert!(never_granted.as_mut().poll(&mut cx).is_pending());
        assert!(last.as_mut().poll(&mut cx).is_pending());
        assert_eq!(gate.queued(), 3);
        // The turn goes to `granted`, which is dropped before it uses it;
        // `never_granted` leaves the queue without one.
        gate.end_turn(true);
        drop(never_granted);
        drop(granted);
        assert_eq!(gate.queued(), 0, "`last` holds the turn");
        assert_eq!(last.as_mut().poll(&mut cx), Poll::Ready(3));
        assert_eq!(gate.queued(), 0);
        assert_eq!(gate.lock().free, 1);
    }

    #[test]
    fn tasks_that_have_not_started_leave_a_turn_for_the_others() {
        let gate = Arc::new(CpuGate::new(2, 1, 100));
        let waker = Waker::noop().clone();
        let (mut a, mut b, mut c) = (None, None, None);
        assert!(gate.take_turn(&mut a, false, &waker), "the fresh turn");
        assert!(
            !gate.take_turn(&mut b, false, &waker),
            "no second fresh turn"
        );
        assert!(
            gate.take_turn(&mut c, true, &waker),
            "a started task takes the last"
        );
        // The started task's turn comes back: still not for a fresh task.
        gate.end_turn(false);
        assert!(!gate.take_turn(&mut b, false, &waker));
        // The fresh turn comes back: it goes to the queued fresh task.
        gate.end_turn(true);
        assert!(gate.take_turn(&mut b, false, &waker));
        let state = gate.lock();
        assert_eq!((state.free, state.fresh_in_use), (1, 1));
    }

    #[test]
    fn a_long_queue_of_new_work_takes_every_turn() {
        let gate = Arc::new(CpuGate::new(2, 1, 3));
        let waker = Waker::noop().clone();
        let mut taken = None;
        assert!(gate.take_turn(&mut taken, false, &waker));
        let mut queue: Vec<_> = (0..2).map(|_| None).collect();
        for q in &mut queue {
            assert!(!gate.take_turn(q, false, &waker));
        }
        // Two wait: a turn is free, but not for new work. The third makes
        // the queue long enough: the free turn goes to the head of it.
        let mut third = None;
        assert!(!gate.take_turn(&mut third, false, &waker));
        assert_eq!(gate.lock().free, 0);
        assert!(gate.take_turn(&mut queue[0], false, &waker));
        // Two wait again, below the limit: a turn coming back stays free.
        gate.end_turn(true);
        assert!(!gate.take_turn(&mut queue[1], false, &waker));
        assert_eq!(gate.lock().free, 1);
    }
}
