//! Outbound actions: everything a workflow sends out goes through a
//! connector (`connectors:` in ringback.yaml).
//!
//! The engine talks to this module through the [`Delivery`] trait so tests
//! can fake it. [`Connectors`] is the real implementation: one shared HTTP
//! client (rustls, pooled, redirects never followed), per-connector
//! timeouts and rate limits, retries on the schedule with jitter, an
//! `Idempotency-Key` on every request, and the SSRF guard. This is the only
//! module that imports reqwest.
//!
//! Short retry waits are timer sleeps (no thread is held). Longer ones end
//! the delivery early ([`Delivery::deliver_resumable`]): the engine records
//! the attempts in the run's journal and waits on a durable timer, so a
//! retry scheduled minutes ahead survives a restart and holds nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::config::{ConnectorConfig, ConnectorKind, OutboundConfig};
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

/// A delivery that may stop early to wait for its next attempt durably:
/// the result, and when a further attempt is due (`None`: final).
pub type ResumableFuture<'a> =
    Pin<Box<dyn Future<Output = (Delivered, Option<Duration>)> + Send + 'a>>;

/// Sends requests through connectors.
pub trait Delivery: Send + Sync + 'static {
    /// Send, retrying on the schedule until done.
    fn deliver(&self, request: Request) -> DeliveryFuture<'_>;

    /// Send, continuing after `prior` attempts (made before a pause). When
    /// the next retry is due later than `wait_inline_up_to`, stop and say
    /// when, instead of sleeping: the engine then waits on a durable timer,
    /// so a retry minutes ahead holds nothing and survives a restart.
    fn deliver_resumable(
        &self,
        request: Request,
        prior: Vec<Attempt>,
        wait_inline_up_to: Duration,
    ) -> ResumableFuture<'_> {
        let _ = (prior, wait_inline_up_to);
        Box::pin(async move { (self.deliver(request).await, None) })
    }
}

/// The configured connectors, the shared HTTP client and the per-connector
/// rate limiters. Reloads swap the settings; requests under way keep theirs.
pub struct Connectors {
    settings: std::sync::RwLock<Arc<Settings>>,
    allow: guard::AllowList,
    client: reqwest::Client,
    limiters: std::sync::Mutex<BTreeMap<String, Arc<ratelimit::RateLimiter>>>,
}

struct Settings {
    /// Each connector with its parsed URL and secrets, by name.
    connectors: BTreeMap<String, (ConnectorConfig, http::Endpoint)>,
    default_timeout: Duration,
}

impl Settings {
    fn new(connectors: BTreeMap<String, ConnectorConfig>, outbound: &OutboundConfig) -> Settings {
        Settings {
            connectors: connectors
                .into_iter()
                .map(|(name, c)| {
                    let endpoint = http::Endpoint::of(&c);
                    (name, (c, endpoint))
                })
                .collect(),
            default_timeout: outbound.timeout,
        }
    }
}

impl Connectors {
    pub fn new(
        connectors: BTreeMap<String, ConnectorConfig>,
        outbound: &OutboundConfig,
    ) -> Arc<Connectors> {
        let allow: guard::AllowList =
            Arc::new(std::sync::RwLock::new(outbound.allow_cidrs.clone()));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(guard::GuardedResolver {
                allow: allow.clone(),
            }))
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("ringback/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with static settings");
        Arc::new(Connectors {
            settings: std::sync::RwLock::new(Arc::new(Settings::new(connectors, outbound))),
            allow,
            client,
            limiters: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// Swap in a reloaded configuration.
    pub fn replace(
        &self,
        connectors: BTreeMap<String, ConnectorConfig>,
        outbound: &OutboundConfig,
    ) {
        *self.allow.write().expect("allow list lock") = outbound.allow_cidrs.clone();
        *self.settings.write().expect("connectors lock") =
            Arc::new(Settings::new(connectors, outbound));
    }

    fn limiter(&self, connector: &ConnectorConfig) -> Option<Arc<ratelimit::RateLimiter>> {
        let rate = connector.rate_limit?;
        let mut map = self.limiters.lock().expect("limiters lock");
        let entry = map
            .entry(connector.name.clone())
            .or_insert_with(|| Arc::new(ratelimit::RateLimiter::new(rate)));
        if (entry.per_second() - rate).abs() > 1e-9 {
            *entry = Arc::new(ratelimit::RateLimiter::new(rate));
        }
        Some(entry.clone())
    }
}

impl Delivery for Connectors {
    fn deliver(&self, request: Request) -> DeliveryFuture<'_> {
        Box::pin(async move {
            self.deliver_resumable(request, Vec::new(), Duration::MAX)
                .await
                .0
        })
    }

    fn deliver_resumable(
        &self,
        request: Request,
        prior: Vec<Attempt>,
        wait_inline_up_to: Duration,
    ) -> ResumableFuture<'_> {
        Box::pin(async move {
            let settings = self.settings.read().expect("connectors lock").clone();
            let connector = match request.connector.as_deref() {
                None => None,
                Some(name) => match settings.connectors.get(name) {
                    Some((c, endpoint)) => Some((c, endpoint)),
                    None => {
                        let d = Delivered {
                            result: Err(format!("connector `{name}` is not configured")),
                            attempts: prior,
                        };
                        return (d, None);
                    }
                },
            };
            if let Some((c, _)) = connector {
                if c.kind == ConnectorKind::Log {
                    return (deliver_log(c, &request, Timestamp::now()), None);
                }
            }
            let built = match http::build_with(connector, &request) {
                Ok(b) => b,
                Err(e) => {
                    let d = Delivered {
                        result: Err(e),
                        attempts: prior,
                    };
                    return (d, None);
                }
            };
            let connector = connector.map(|(c, _)| c);
            let timeout = connector
                .and_then(|c| c.timeout)
                .unwrap_or(settings.default_timeout);
            let schedule = request
                .retry
                .clone()
                .or_else(|| connector.and_then(|c| c.retry.clone()))
                .unwrap_or_else(|| retry::DEFAULT_SCHEDULE.to_vec());
            let limiter = connector.and_then(|c| self.limiter(c));
            let allow = self.allow.read().expect("allow list lock").clone();
            http::send_with_retries(
                &self.client,
                &built,
                &request.idempotency_key,
                timeout,
                &schedule,
                limiter.as_deref(),
                &allow,
                connector.map(|c| c.kind),
                prior,
                wait_inline_up_to,
            )
            .await
        })
    }
}

/// The `log` kind: no network; the message is printed and recorded.
fn deliver_log(connector: &ConnectorConfig, request: &Request, at: Timestamp) -> Delivered {
    let (summary, output) = log_entry(request);
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

/// What a step asks to send, as people read it (dry runs, `ringback
/// test`): the fields of the message or request, never header values
/// (they may be credentials).
pub fn describe_outbound(outbound: &Outbound) -> Value {
    match outbound {
        Outbound::Text { to, text } => json!({"to": to, "text": text}),
        Outbound::Template {
            to,
            name,
            language,
            params,
        } => json!({"to": to, "template": {"name": name, "language": language, "params": params}}),
        Outbound::Alert { text } => json!({"text": text}),
        Outbound::Forward { event } => json!({"event_id": event.get("id")}),
        Outbound::Http {
            method,
            url,
            headers,
            json,
        } => json!({
            "method": method,
            "url": url,
            "headers": headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            "json": json,
        }),
    }
}

/// A `log` connector's line and the step output it gives.
fn log_entry(request: &Request) -> (String, Value) {
    match &request.outbound {
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
    }
}

pub mod admin_client;
mod guard;
mod http;
mod ratelimit;
pub mod rehearsal;
mod retry;

pub use guard::{check_ip, reserved_reason};
pub use retry::DEFAULT_SCHEDULE;
