//! Outbound actions: everything a workflow sends out goes through a
//! connector (`connectors:` in ringback.yaml).
//!
//! The engine talks to this module through the [`Delivery`] trait so tests
//! can fake it. [`Connectors`] is the real implementation.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::config::{ConnectorConfig, ConnectorKind};
use crate::store::Attempt;

/// What a step asks a connector to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A WhatsApp text message.
    Text { to: String, text: String },
    /// A WhatsApp template message.
    Template {
        to: String,
        name: String,
        language: String,
        params: Vec<String>,
    },
    /// A notification for humans.
    Alert { text: String },
    /// The canonical event, as JSON.
    Forward { event: Value },
    /// Any HTTP call (the `http` step; no connector).
    Http {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        json: Option<Value>,
    },
}

/// One request to a connector.
#[derive(Debug, Clone)]
pub struct Request {
    /// `None` for the `http` step, which names its URL itself.
    pub connector: Option<String>,
    pub outbound: Outbound,
    /// `<execution id>:<step path>`: the same on every retry and restart.
    pub idempotency_key: String,
    /// A step's own `retry` schedule, overriding the connector's.
    pub retry: Option<Vec<Duration>>,
}

/// What came of a request: the step's output, or its error, and every
/// attempt made.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub result: Result<Value, String>,
    pub attempts: Vec<Attempt>,
}

pub type DeliveryFuture<'a> = Pin<Box<dyn Future<Output = Delivered> + Send + 'a>>;

/// Sends requests through connectors.
pub trait Delivery: Send + Sync + 'static {
    fn deliver(&self, request: Request) -> DeliveryFuture<'_>;
}

/// The configured connectors.
pub struct Connectors {
    connectors: std::sync::RwLock<Arc<BTreeMap<String, ConnectorConfig>>>,
}

impl Connectors {
    pub fn new(connectors: BTreeMap<String, ConnectorConfig>) -> Arc<Connectors> {
        Arc::new(Connectors {
            connectors: std::sync::RwLock::new(Arc::new(connectors)),
        })
    }

    /// Swap in a reloaded set; requests already under way keep theirs.
    pub fn replace(&self, connectors: BTreeMap<String, ConnectorConfig>) {
        *self.connectors.write().expect("connectors lock") = Arc::new(connectors);
    }
}

impl Delivery for Connectors {
    fn deliver(&self, request: Request) -> DeliveryFuture<'_> {
        Box::pin(async move {
            let started = Timestamp::now();
            let Some(name) = request.connector.as_deref() else {
                return Delivered {
                    result: Err(
                        "the http step needs network delivery, which is not enabled in this build"
                            .into(),
                    ),
                    attempts: Vec::new(),
                };
            };
            let connectors = self.connectors.read().expect("connectors lock").clone();
            let Some(connector) = connectors.get(name) else {
                return Delivered {
                    result: Err(format!("connector `{name}` is not configured")),
                    attempts: Vec::new(),
                };
            };
            match connector.kind {
                ConnectorKind::Log => deliver_log(connector, &request, started),
                kind => Delivered {
                    result: Err(format!(
                        "connector `{}` of kind {} cannot send: network delivery is not enabled in this build",
                        connector.name,
                        kind.as_str()
                    )),
                    attempts: Vec::new(),
                },
            }
        })
    }
}

/// The `log` kind: no network; the message is printed and recorded.
fn deliver_log(connector: &ConnectorConfig, request: &Request, at: Timestamp) -> Delivered {
    let (summary, output) = match &request.outbound {
        Outbound::Text { to, text } => (
            format!("message to {to}: {text}"),
            json!({"status": "logged", "to": to, "text": text}),
        ),
        Outbound::Template {
            to,
            name,
            language,
            params,
        } => (
            format!("template {name} ({language}) to {to} with {params:?}"),
            json!({"status": "logged", "to": to, "template": {"name": name, "language": language, "params": params}}),
        ),
        Outbound::Alert { text } => (
            format!("alert: {text}"),
            json!({"status": "logged", "text": text}),
        ),
        Outbound::Http { method, url, .. } => (
            format!("{method} {url}"),
            json!({"status": "logged", "method": method, "url": url}),
        ),
        Outbound::Forward { event } => (
            format!(
                "forward event {}",
                event.get("id").and_then(Value::as_str).unwrap_or("?")
            ),
            json!({"status": "logged", "event_id": event.get("id")}),
        ),
    };
    tracing::info!(
        connector = %connector.name,
        idempotency_key = %request.idempotency_key,
        "[log connector] {summary}"
    );
    Delivered {
        result: Ok(output),
        attempts: vec![Attempt {
            at,
            status: None,
            error: None,
            latency_ms: 0.0,
            response: None,
        }],
    }
}

pub mod admin_client;
