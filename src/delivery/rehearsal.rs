//! Canned answers instead of the network, for `ringback test`.
//!
//! [`Rehearsal`] is a [`Delivery`] that sends nothing: it builds each
//! request exactly as the real connector would (so a test sees the body
//! that would go on the wire), records it, and answers from a script of
//! canned answers per connector — `200` by default, or failures to test
//! retries and `on_error`. Answers are judged by the same code as real ones,
//! and retries follow the same schedule; every retry wait is handed back to
//! the engine as a durable pause, so a test that drives simulated time sees
//! a retry minutes ahead happen in no time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::http::{self, Try};
use super::ResumableFuture;
use super::{describe_outbound, log_entry, retry, Delivered, Delivery, DeliveryFuture, Request};
use crate::clock::SharedClock;
use crate::config::ConnectorConfig;
use crate::config::ConnectorKind;
use crate::store::Attempt;

/// The script key for `http` steps, which name a URL, not a connector.
pub const HTTP_STEP: &str = "http";

/// One canned answer to one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The receiver answered with this status (and body, and Retry-After).
    Status {
        status: u16,
        body: Option<Value>,
        retry_after: Option<Duration>,
    },
    /// The request never got an answer (a timeout, a refused connection):
    /// retried like a network error.
    NetworkError(String),
}

impl Answer {
    pub const OK: Answer = Answer::Status {
        status: 200,
        body: None,
        retry_after: None,
    };
}

/// A request as it would have been sent, and what came of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// `<run id>:<step path>`.
    pub idempotency_key: String,
    /// What the step asked for, plus the connector, its kind, the HTTP
    /// request it builds (`http`: method, url, body), how many attempts
    /// were made and whether it was delivered.
    pub request: Value,
}

/// A [`Delivery`] that answers from a script.
pub struct Rehearsal {
    connectors: BTreeMap<String, ConnectorConfig>,
    clock: SharedClock,
    script: Mutex<BTreeMap<String, VecDeque<Answer>>>,
    sent: Mutex<Vec<Sent>>,
}

impl Rehearsal {
    /// `script` maps a connector name (or [`HTTP_STEP`]) to its answers, in
    /// order; once they run out, every attempt gets `200`.
    pub fn new(
        connectors: BTreeMap<String, ConnectorConfig>,
        clock: SharedClock,
        script: BTreeMap<String, Vec<Answer>>,
    ) -> Rehearsal {
        Rehearsal {
            connectors,
            clock,
            script: Mutex::new(
                script
                    .into_iter()
                    .map(|(k, v)| (k, VecDeque::from(v)))
                    .collect(),
            ),
            sent: Mutex::new(Vec::new()),
        }
    }

    /// Every request, in the order first attempted (retries of a request
    /// update its entry).
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("sent lock").clone()
    }

    /// Canned answers nobody asked for, by script key.
    pub fn unused(&self) -> Vec<(String, usize)> {
        self.script
            .lock()
            .expect("script lock")
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, q)| (k.clone(), q.len()))
            .collect()
    }

    fn next_answer(&self, key: &str) -> Answer {
        self.script
            .lock()
            .expect("script lock")
            .get_mut(key)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Answer::OK)
    }

    fn note(&self, key: &str, mut request: Value, delivered: &Delivered) {
        request["attempts"] = Value::from(delivered.attempts.len());
        request["delivered"] = Value::Bool(delivered.result.is_ok());
        if let Err(e) = &delivered.result {
            request["error"] = Value::String(e.clone());
        }
        let mut sent = self.sent.lock().expect("sent lock");
        match sent.iter_mut().find(|s| s.idempotency_key == key) {
            Some(s) => s.request = request,
            None => sent.push(Sent {
                idempotency_key: key.to_string(),
                request,
            }),
        }
    }
}

impl Delivery for Rehearsal {
    fn deliver(&self, request: Request) -> DeliveryFuture<'_> {
        Box::pin(async move {
            self.deliver_resumable(request, Vec::new(), Duration::ZERO)
                .await
                .0
        })
    }

    fn deliver_resumable(
        &self,
        request: Request,
        prior: Vec<Attempt>,
        _wait_inline_up_to: Duration,
    ) -> ResumableFuture<'_> {
        Box::pin(async move {
            let mut described = describe_outbound(&request.outbound);
            let connector = match request.connector.as_deref() {
                None => None,
                Some(name) => {
                    described["connector"] = Value::from(name);
                    match self.connectors.get(name) {
                        Some(c) => {
                            described["kind"] = Value::from(c.kind.as_str());
                            Some(c)
                        }
                        None => {
                            let d = Delivered {
                                result: Err(format!("connector `{name}` is not configured")),
                                attempts: prior,
                            };
                            return (d, None);
                        }
                    }
                }
            };
            let log_kind = connector.is_some_and(|c| c.kind == ConnectorKind::Log);
            // A `log` connector has no wire format; every other kind builds
            // the request it would send.
            let built = if log_kind {
                None
            } else {
                match http::build(connector, &request) {
                    Ok(b) => {
                        described["http"] = b.preview();
                        Some(b)
                    }
                    Err(e) => {
                        let d = Delivered {
                            result: Err(e),
                            attempts: prior,
                        };
                        return (d, None);
                    }
                }
            };
            let key = request
                .connector
                .clone()
                .unwrap_or_else(|| HTTP_STEP.to_string());
            let schedule = request
                .retry
                .clone()
                .or_else(|| connector.and_then(|c| c.retry.clone()))
                .unwrap_or_else(|| retry::DEFAULT_SCHEDULE.to_vec());
            let kind = connector.map(|c| c.kind);
            let attempt = || {
                let answer = self.next_answer(&key);
                let at = self.clock.now();
                let record = |status, error, response| Attempt {
                    at,
                    status,
                    error,
                    latency_ms: 0.0,
                    response,
                };
                let judged = match answer {
                    Answer::NetworkError(message) => (
                        Try::Retry(message.clone(), None),
                        record(None, Some(message), None),
                    ),
                    Answer::Status {
                        status,
                        body,
                        retry_after,
                    } => match &built {
                        Some(b) => {
                            let bytes = body
                                .as_ref()
                                .map(|v| serde_json::to_vec(v).expect("JSON serialises"))
                                .unwrap_or_default();
                            let (outcome, error, excerpt) =
                                http::judge_answer(status, &bytes, retry_after, b, kind);
                            (outcome, record(Some(status), error, excerpt))
                        }
                        // A `log` connector given a canned answer: success
                        // is what it logs, anything else a failure like the
                        // real kinds would report.
                        None if (200..300).contains(&status) => {
                            (Try::Done(log_entry(&request).1), record(None, None, None))
                        }
                        None => {
                            let m = format!("HTTP {status}");
                            let outcome = if retry::retryable_status(status) {
                                Try::Retry(m.clone(), retry_after)
                            } else {
                                Try::Fail(format!("{m}: the receiver refused the request"))
                            };
                            (outcome, record(Some(status), Some(m), None))
                        }
                    },
                };
                std::future::ready(judged)
            };
            // Every wait between attempts is handed back: the engine pauses
            // on a durable timer, which simulated time fires at once.
            let (delivered, next) =
                http::retry_loop(&schedule, None, || 0.5, prior, Duration::ZERO, attempt).await;
            self.note(&request.idempotency_key, described, &delivered);
            (delivered, next)
        })
    }
}
