//! `wait: {for, until: [kinds]}`: runs waiting for the same caller's next
//! event of some kind.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::event::Event;

struct Waiter {
    kinds: Vec<String>,
    wake: oneshot::Sender<String>,
}

#[derive(Default)]
pub(super) struct Waiters {
    by_caller: Mutex<HashMap<String, Vec<Waiter>>>,
}

impl Waiters {
    /// Register interest; the receiver gets the kind of the event that woke it.
    pub(super) fn register(&self, caller: &str, kinds: &[String]) -> oneshot::Receiver<String> {
        let (tx, rx) = oneshot::channel();
        self.by_caller
            .lock()
            .expect("waiters lock")
            .entry(caller.to_string())
            .or_default()
            .push(Waiter {
                kinds: kinds.to_vec(),
                wake: tx,
            });
        rx
    }

    /// Wake the runs waiting for this event's caller and kind.
    pub(super) fn wake(&self, event: &Event) {
        let Some(caller) = event.caller.as_deref() else {
            return;
        };
        let mut map = self.by_caller.lock().expect("waiters lock");
        let Some(list) = map.get_mut(caller) else {
            return;
        };
        let mut keep = Vec::new();
        for w in list.drain(..) {
            if w.wake.is_closed() {
                continue;
            }
            if w.kinds.iter().any(|k| k == &event.kind) {
                let _ = w.wake.send(event.kind.clone());
            } else {
                keep.push(w);
            }
        }
        if keep.is_empty() {
            map.remove(caller);
        } else {
            *list = keep;
        }
    }
}
