//! Ingestion's writes, combined: the events of every request that arrives
//! while a write is under way go into the next write.
//!
//! Writing on a blocking thread per request cost a thread hand-off per
//! request, and the inbox takes one writer at a time anyway (see the
//! module docs of `store`). Here the first request to find no write running
//! leads: it takes every queued request, writes them all at once on a
//! blocking thread, answers each, and hands the lead to a
//! new task if more arrived meanwhile, so no request waits for more than
//! the write after the one under way. Durability is unchanged: callers
//! still commit (flush) before they answer.

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::oneshot;

use super::inbox::Arrival;
use super::{Insert, Offered, Store, StoreError, StoredEvent};
use crate::event::Event;

/// Requests waiting for the next combined write, and whether one runs.
#[derive(Default)]
pub(super) struct Intake {
    state: Mutex<(Vec<Queued>, bool)>,
}

struct Queued {
    events: Vec<Event>,
    now: Timestamp,
    window: Duration,
    reply: oneshot::Sender<Result<Stored, String>>,
}

/// Each event of a request, with what became of it.
type Stored = Vec<Offered>;

/// At most this many requests go into one write.
const MAX_COMBINED: usize = 512;

impl Store {
    /// [`Store::insert_events`], combined with concurrent callers into one
    /// write: each event, with what became of it. Not durable until
    /// [`Store::commit`] returns.
    pub async fn accept_events(
        &self,
        events: Vec<Event>,
        now: Timestamp,
        window: Duration,
    ) -> Result<Stored, StoreError> {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut state = self.intake.state.lock().expect("intake lock");
            state.0.push(Queued {
                events,
                now,
                window,
                reply,
            });
            !std::mem::replace(&mut state.1, true)
        };
        if lead {
            self.clone().write_queued().await;
        }
        match answer.await {
            Ok(result) => result.map_err(StoreError::Write),
            Err(_) => Err(StoreError::Write("the write was abandoned".into())),
        }
    }

    /// Write what is queued, answer it, and pass the lead on if more came.
    /// (Boxed: it spawns itself, and an `async fn` cannot name its own
    /// future's type.)
    fn write_queued(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.write_queued_once())
    }

    async fn write_queued_once(self) {
        let batch: Vec<Queued> = {
            let mut state = self.intake.state.lock().expect("intake lock");
            let n = state.0.len().min(MAX_COMBINED);
            state.0.drain(..n).collect()
        };
        let store = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let arrivals: Vec<Arrival<'_>> = batch
                .iter()
                .map(|q| Arrival {
                    events: &q.events,
                    now: q.now,
                    window: q.window,
                })
                .collect();
            let result = store.insert_arrivals(&arrivals).map_err(|e| e.to_string());
            (batch, result)
        })
        .await;
        match written {
            Ok((batch, Ok(outcomes))) => {
                for (q, outcome) in batch.into_iter().zip(outcomes) {
                    let now = q.now;
                    let offered = q
                        .events
                        .into_iter()
                        .zip(outcome)
                        .map(|(event, (insert, seq))| match insert {
                            Insert::Accepted => Offered::Accepted(StoredEvent {
                                seq,
                                received_at: now,
                                event,
                            }),
                            Insert::Duplicate => Offered::Duplicate(event),
                        })
                        .collect();
                    let _ = q.reply.send(Ok(offered));
                }
            }
            Ok((batch, Err(e))) => {
                for q in batch {
                    let _ = q.reply.send(Err(e.clone()));
                }
            }
            // The blocking task panicked: its requests' senders are gone,
            // and they answer with an error.
            Err(_) => {}
        }
        let more = {
            let mut state = self.intake.state.lock().expect("intake lock");
            if state.0.is_empty() {
                state.1 = false;
                false
            } else {
                true
            }
        };
        if more {
            tokio::spawn(self.write_queued());
        }
    }
}
