//! Building each connector kind's request and sending it with retries.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{json, Value};

use super::ratelimit::RateLimiter;
use super::{guard, retry, Attempt, Delivered, Outbound, Request};
use crate::config::{Cidr, ConnectorConfig, ConnectorKind};
use crate::event::Secret;
use crate::json::ObjectOnly;

/// Meta's Graph API, when a `meta` connector sets no `base_url`.
pub const META_DEFAULT_BASE_URL: &str = "https://graph.facebook.com/v21.0";
/// At most this much of a response body is read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// At most this much of a response is kept in an attempt record.
const EXCERPT_CHARS: usize = 512;

/// A request ready to send (and to send again, identically, on retry).
pub(super) struct Built {
    method: reqwest::Method,
    url: reqwest::Url,
    /// Header name, value, and whether the value is a credential.
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    /// Standard Webhooks signing secret (`http` connectors with `secret`).
    sign_with: Option<Secret>,
    /// Credential values, blanked out of anything recorded.
    secrets: Vec<String>,
    /// The `http` step returns the body; connectors return status and id.
    raw_step: bool,
}

impl Built {
    /// What would go on the wire, for people: method, URL and JSON body.
    /// Headers are left out (they carry credentials).
    pub(super) fn preview(&self) -> Value {
        let body = self.body.as_deref().map(|b| {
            serde_json::from_slice::<Value>(b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
        });
        let url = redact(self.url.as_str(), &self.secrets);
        json!({"method": self.method.as_str(), "url": url, "body": body})
    }
}

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// The step's own URL is named in the error (it is in the step's input
/// anyway); a connector's configured one is not: a Slack webhook URL is
/// its credential.
fn parse_url(text: &str, echo: bool) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(text.trim()).map_err(|e| {
        if echo {
            format!("`{}` is not a valid URL: {e}", text.trim())
        } else {
            format!("the connector's URL is not valid: {e}")
        }
    })
}

/// The secret part of a connector's configured `url` (slack, http): its
/// path and query, which for a Slack incoming webhook is the credential.
/// Too short to be one (`/`, `/hook`), it is left visible. Redaction
/// matches it whole: an answer that echoes only a piece of it is not
/// caught.
fn url_secret(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url.trim()).ok()?;
    let host_end = parsed[..url::Position::BeforePath].len();
    let rest = &parsed.as_str()[host_end..];
    (rest.len() >= 8).then(|| rest.to_string())
}

fn not_for(kind: ConnectorKind, what: &str, hint: &str) -> String {
    format!("connectors of kind {} cannot {what}; {hint}", kind.as_str())
}

/// A WhatsApp connector asked for an alert or a forwarded event.
fn messages_only(kind: ConnectorKind) -> String {
    not_for(
        kind,
        "send alerts or forward events",
        "use a slack, http or log connector",
    )
}

/// What every request through one connector shares: its URL, parsed
/// once, and the credential values to blank out of what is recorded.
/// Worked out when the configuration is loaded (`Connectors`), not per
/// request: doing it per request was ≈7 k of a follow-up's ≈420 k
/// instructions (callgrind, twenty-fifth round).
pub(super) struct Endpoint {
    /// The error says what is wrong without the URL (a Slack webhook URL
    /// is its credential); it is reported when a request is built.
    url: Result<reqwest::Url, String>,
    secrets: Vec<String>,
}

impl Endpoint {
    pub(super) fn of(c: &ConnectorConfig) -> Endpoint {
        let url = match c.kind {
            ConnectorKind::Meta => join_url(
                c.base_url.as_deref().unwrap_or(META_DEFAULT_BASE_URL),
                &format!(
                    "{}/messages",
                    c.phone_number_id.as_deref().unwrap_or_default()
                ),
            ),
            ConnectorKind::Waha => {
                join_url(c.base_url.as_deref().unwrap_or_default(), "api/sendText")
            }
            ConnectorKind::Slack | ConnectorKind::Http => c.url.clone().unwrap_or_default(),
            ConnectorKind::Log => String::new(),
        };
        Endpoint {
            url: match c.kind {
                ConnectorKind::Log => Err("log connectors never reach the network".into()),
                _ => parse_url(&url, false),
            },
            secrets: [c.token.as_ref(), c.api_key.as_ref(), c.secret.as_ref()]
                .into_iter()
                .flatten()
                .map(|s| s.expose().to_string())
                .chain(c.headers.values().map(|v| v.expose().to_string()))
                .chain(c.url.as_deref().and_then(url_secret))
                .filter(|v| !v.is_empty())
                .collect(),
        }
    }
}

/// Turn a step's request into HTTP for its connector's kind.
pub(super) fn build(
    connector: Option<&ConnectorConfig>,
    request: &Request,
) -> Result<Built, String> {
    match connector {
        None => build_with(None, request),
        Some(c) => build_with(Some((c, &Endpoint::of(c))), request),
    }
}

/// [`build`] with the connector's [`Endpoint`] worked out already.
pub(super) fn build_with(
    connector: Option<(&ConnectorConfig, &Endpoint)>,
    request: &Request,
) -> Result<Built, String> {
    let json_body = |v: Value| Some(serde_json::to_vec(&v).expect("JSON serialises"));
    let Some((c, endpoint)) = connector else {
        let Outbound::Http {
            method,
            url,
            headers,
            json,
        } = &request.outbound
        else {
            return Err("this step needs a connector (`via`)".into());
        };
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("bad method {method}"))?;
        let mut headers = headers.clone();
        if json.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type".into(), "application/json".into()));
        }
        // The step's own header values may be credentials.
        let secrets = headers
            .iter()
            .map(|(_, v)| v.clone())
            .filter(|v| v.len() >= 6)
            .collect();
        return Ok(Built {
            method,
            url: parse_url(url, true)?,
            headers,
            body: json.clone().and_then(json_body),
            sign_with: None,
            secrets,
            raw_step: true,
        });
    };
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    let body = match c.kind {
        ConnectorKind::Meta => {
            if let Some(token) = &c.token {
                headers.push(("authorization".into(), format!("Bearer {}", token.expose())));
            }
            match &request.outbound {
                Outbound::Text { to, text } => json!({
                    "messaging_product": "whatsapp", "recipient_type": "individual",
                    "to": digits(to), "type": "text", "text": {"preview_url": false, "body": text}
                }),
                Outbound::Template {
                    to,
                    name,
                    language,
                    params,
                } => {
                    let mut template = json!({"name": name, "language": {"code": language}});
                    if !params.is_empty() {
                        let parameters: Vec<Value> = params
                            .iter()
                            .map(|p| json!({"type": "text", "text": p}))
                            .collect();
                        template["components"] =
                            json!([{"type": "body", "parameters": parameters}]);
                    }
                    json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                           "to": digits(to), "type": "template", "template": template})
                }
                _ => return Err(messages_only(c.kind)),
            }
        }
        ConnectorKind::Waha => {
            if let Some(key) = &c.api_key {
                headers.push(("x-api-key".into(), key.expose().to_string()));
            }
            match &request.outbound {
                Outbound::Text { to, text } => json!({
                    "session": c.session.as_deref().unwrap_or("default"),
                    "chatId": format!("{}@c.us", digits(to)),
                    "text": text,
                }),
                Outbound::Template { .. } => {
                    return Err(not_for(
                        c.kind,
                        "send template messages",
                        "WAHA sends text: use `text:`",
                    ))
                }
                _ => return Err(messages_only(c.kind)),
            }
        }
        ConnectorKind::Slack => {
            let text = match &request.outbound {
                Outbound::Alert { text } => text.clone(),
                Outbound::Text { to, text } => format!("to {to}: {text}"),
                Outbound::Template { to, name, .. } => format!("to {to}: template {name}"),
                Outbound::Forward { event } => format!(
                    "{} from {} ({})",
                    event["kind"].as_str().unwrap_or("event"),
                    event["caller"].as_str().unwrap_or("unknown caller"),
                    event["id"].as_str().unwrap_or("?")
                ),
                Outbound::Http { .. } => return Err("the http step takes no connector".into()),
            };
            json!({"text": text})
        }
        ConnectorKind::Http => {
            for (k, v) in &c.headers {
                let name = k.to_ascii_lowercase();
                // A configured header replaces the default of the same name.
                headers.retain(|(existing, _)| *existing != name);
                headers.push((name, v.expose().to_string()));
            }
            // The message as the step gives it; a forward posts the event.
            match &request.outbound {
                Outbound::Forward { event } => event.clone(),
                Outbound::Http { .. } => return Err("the http step takes no connector".into()),
                message => super::describe_outbound(message),
            }
        }
        ConnectorKind::Log => unreachable!("log connectors never reach the network"),
    };
    Ok(Built {
        method: reqwest::Method::POST,
        url: endpoint.url.clone()?,
        headers,
        body: json_body(body),
        sign_with: if c.kind == ConnectorKind::Http {
            c.secret.clone()
        } else {
            None
        },
        secrets: endpoint.secrets.clone(),
        raw_step: false,
    })
}

/// How one attempt ended.
pub(super) enum Try {
    Done(Value),
    /// Worth another attempt, after at least this long (a Retry-After).
    Retry(String, Option<Duration>),
    Fail(String),
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn send_with_retries(
    client: &reqwest::Client,
    built: &Built,
    idempotency_key: &str,
    timeout: Duration,
    schedule: &[Duration],
    limiter: Option<&RateLimiter>,
    allow: &[Cidr],
    kind: Option<ConnectorKind>,
    prior: Vec<Attempt>,
    wait_inline_up_to: Duration,
) -> (Delivered, Option<Duration>) {
    if let Err(e) = guard::check_url(&built.url, allow) {
        let d = Delivered {
            result: Err(e),
            attempts: prior,
        };
        return (d, None);
    }
    retry_loop(
        schedule,
        limiter,
        fastrand::f64,
        prior,
        wait_inline_up_to,
        || attempt_once(client, built, idempotency_key, timeout, kind),
    )
    .await
}

/// Attempt, and on a retryable outcome wait the next scheduled delay (with
/// jitter, or the receiver's Retry-After) and attempt again, until the
/// schedule runs out. The waits are timer sleeps: no thread is held.
pub(super) async fn retry_loop<F, Fut>(
    schedule: &[Duration],
    limiter: Option<&RateLimiter>,
    mut jitter: impl FnMut() -> f64,
    prior: Vec<Attempt>,
    wait_inline_up_to: Duration,
    mut attempt: F,
) -> (Delivered, Option<Duration>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (Try, Attempt)>,
{
    // Attempts made before a pause used up that many scheduled delays.
    let mut delays = schedule.iter().skip(prior.len());
    let mut attempts = prior;
    loop {
        if let Some(l) = limiter {
            l.acquire().await;
        }
        let (outcome, record) = attempt().await;
        attempts.push(record);
        let (message, after) = match outcome {
            Try::Done(output) => {
                let d = Delivered {
                    result: Ok(output),
                    attempts,
                };
                return (d, None);
            }
            Try::Fail(message) => {
                let d = Delivered {
                    result: Err(message),
                    attempts,
                };
                return (d, None);
            }
            Try::Retry(message, after) => (message, after),
        };
        let Some(delay) = delays.next() else {
            let n = attempts.len();
            let d = Delivered {
                result: Err(format!(
                    "{message} (gave up after {n} attempt{})",
                    if n == 1 { "" } else { "s" }
                )),
                attempts,
            };
            return (d, None);
        };
        let wait = after.unwrap_or_else(|| retry::jittered(*delay, jitter()));
        if wait > wait_inline_up_to {
            // Too long to hold the run: the caller waits durably.
            let d = Delivered {
                result: Err(message),
                attempts,
            };
            return (d, Some(wait));
        }
        tokio::time::sleep(wait).await;
    }
}

async fn attempt_once(
    client: &reqwest::Client,
    built: &Built,
    idempotency_key: &str,
    timeout: Duration,
    kind: Option<ConnectorKind>,
) -> (Try, Attempt) {
    let at = Timestamp::now();
    let started = Instant::now();
    let mut req = client
        .request(built.method.clone(), built.url.clone())
        .timeout(timeout)
        .header("idempotency-key", idempotency_key);
    for (k, v) in &built.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(secret) = &built.sign_with {
        let ts = at.as_second();
        let body = built.body.as_deref().unwrap_or_default();
        if let Some(sig) = crate::event::sign_standard_webhooks(secret, idempotency_key, ts, body) {
            req = req
                .header("webhook-id", idempotency_key)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sig);
        }
    }
    if let Some(body) = &built.body {
        req = req.body(body.clone());
    }
    let attempt = |status: Option<u16>, error: Option<String>, response: Option<String>| Attempt {
        at,
        status,
        error,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        response,
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let message = describe(&e);
            let refused = message.contains("refused to connect to");
            let outcome = if refused {
                Try::Fail(message.clone())
            } else {
                Try::Retry(message.clone(), None)
            };
            return (outcome, attempt(None, Some(message), None));
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::retry_after(v, Timestamp::now()));
    let body = match read_capped(resp).await {
        Ok(b) => b,
        Err(e) if (200..300).contains(&status) => {
            // The receiver accepted the request; sending it again could
            // deliver it twice. Count it as delivered and note the problem.
            let note = format!("delivered, but reading the response failed: {e}");
            return (
                Try::Done(json!({"status": status})),
                attempt(Some(status), Some(note), None),
            );
        }
        Err(e) => {
            let message = format!("reading the response failed: {e}");
            return (
                Try::Retry(message.clone(), None),
                attempt(Some(status), Some(message), None),
            );
        }
    };
    let (outcome, error, excerpt) = judge_answer(status, &body, retry_after, built, kind);
    (outcome, attempt(Some(status), error, excerpt))
}

/// What an answer means for the step: done (with the step's output), worth
/// another attempt, or a final failure; with the attempt's error message
/// and a (redacted) excerpt of the body. Real sends and `ringback test`'s
/// canned answers are judged alike.
pub(super) fn judge_answer(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    built: &Built,
    kind: Option<ConnectorKind>,
) -> (Try, Option<String>, Option<String>) {
    let text = redact(&String::from_utf8_lossy(body), &built.secrets);
    let excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
    let excerpt = (!excerpt.is_empty()).then_some(excerpt);
    if (200..300).contains(&status) {
        let output = if built.raw_step {
            let parsed: Option<Value> = serde_json::from_slice(body).ok();
            json!({"status": status, "body": parsed.unwrap_or(Value::String(text))})
        } else {
            let mut out = json!({"status": status});
            if let Some(id) = answer_message_id(body, kind) {
                out["id"] = Value::String(id);
            }
            out
        };
        return (Try::Done(output), None, excerpt);
    }
    let (outcome, message) = if (300..400).contains(&status) {
        let m = format!("HTTP {status}: redirects are not followed");
        (Try::Fail(m.clone()), m)
    } else if retry::retryable_status(status) {
        let m = format!("HTTP {status}");
        (
            Try::Retry(
                m.clone(),
                if status == 429 || status == 503 {
                    retry_after
                } else {
                    None
                },
            ),
            m,
        )
    } else {
        let m = format!("HTTP {status}: the receiver refused the request");
        (Try::Fail(m.clone()), m)
    };
    (outcome, Some(message), excerpt)
}

/// Blank out credential values a receiver may echo back.
fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// Error text without the URL (a webhook URL can itself be a secret).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e.without_url()))? {
        let room = MAX_RESPONSE_BYTES.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    Ok(out)
}

/// The message id in a send's answer ([`message_id`]), read without
/// building the answer as a `Value` when it has the shape every provider
/// answers with: an object whose `id`, `key` and `messages` (where
/// present) are what [`message_id`] reads them as. Anything else
/// (another shape, a duplicate key, not JSON) goes through [`message_id`]
/// itself, so the result is the same either way, but for one leniency
/// kept on purpose: a value elsewhere in the answer that a `Value` cannot
/// hold (a number out of range) is skipped unchecked, so its id is still
/// read. Parsing the answer into
/// a `Value` was most of a send's answer handling: ≈18 k instructions of a
/// follow-up's ≈720 k (callgrind).
fn answer_message_id(body: &[u8], kind: Option<ConnectorKind>) -> Option<String> {
    match serde_json::from_slice::<ObjectOnly<SendAnswer>>(body) {
        Ok(ObjectOnly(answer)) => answer.message_id(kind),
        Err(_) => serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|parsed| message_id(&parsed, kind)),
    }
}

/// The parts of a send's answer a message id is read from.
#[derive(serde::Deserialize)]
struct SendAnswer {
    #[serde(default)]
    id: IdText,
    #[serde(default)]
    key: Option<ObjectOnly<IdHolder>>,
    #[serde(default)]
    messages: Option<Vec<ObjectOnly<IdHolder>>>,
}

/// An object whose `id` may be a message id; its other keys are ignored.
#[derive(serde::Deserialize)]
struct IdHolder {
    #[serde(default)]
    id: IdText,
}

/// A value where a message id may be, as [`message_id`]'s `as_text` reads
/// it: a non-empty string, or an object's string `_serialized` (WAHA's
/// ids). Any other JSON value is no id, not an error.
#[derive(Default)]
struct IdText(Option<String>);

impl SendAnswer {
    fn message_id(self, kind: Option<ConnectorKind>) -> Option<String> {
        let first_message = || {
            self.messages
                .as_ref()
                .and_then(|m| m.first())
                .and_then(|m| m.0.id.0.clone())
        };
        match kind {
            Some(ConnectorKind::Meta) => first_message(),
            _ => self
                .id
                .0
                .clone()
                .or_else(|| self.key.as_ref().and_then(|k| k.0.id.0.clone()))
                .or_else(first_message),
        }
    }
}

impl<'de> serde::Deserialize<'de> for IdText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<IdText, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = IdText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<IdText, E> {
                Ok(IdText((!v.is_empty()).then(|| v.to_string())))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<IdText, A::Error> {
                // The last `_serialized` wins, as in a `Value`.
                let mut serialized = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "_serialized" {
                        serialized = match map.next_value::<Value>()? {
                            Value::String(s) => Some(s),
                            _ => None,
                        };
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(IdText(serialized))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<IdText, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(IdText(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<IdText, E> {
                Ok(IdText(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<IdText, E> {
                Ok(IdText(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<IdText, E> {
                Ok(IdText(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<IdText, E> {
                Ok(IdText(None))
            }
            fn visit_unit<E>(self) -> Result<IdText, E> {
                Ok(IdText(None))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The message id a provider returns, where it returns one.
fn message_id(body: &Value, kind: Option<ConnectorKind>) -> Option<String> {
    let as_text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o
            .get("_serialized")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    };
    match kind {
        Some(ConnectorKind::Meta) => body.pointer("/messages/0/id").and_then(as_text),
        _ => body
            .get("id")
            .and_then(as_text)
            .or_else(|| body.pointer("/key/id").and_then(as_text))
            .or_else(|| body.pointer("/messages/0/id").and_then(as_text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant as TokioInstant;

    /// The typed read of a send's answer gives what reading it as a
    /// `Value` gives, for the answers providers send and for odd ones.
    #[test]
    fn a_message_id_is_read_from_an_answer_as_from_its_value() {
        let answers = [
            // Meta's Cloud API.
            r#"{"messaging_product":"whatsapp","contacts":[{"input":"5215512345678","wa_id":"5215512345678"}],"messages":[{"id":"wamid.HBgN","message_status":"accepted"}]}"#,
            // WAHA: an id object with `_serialized`, or a `key`.
            r#"{"id":{"fromMe":true,"remote":"5215512345678@c.us","id":"ABC","_serialized":"true_5215512345678@c.us_ABC"},"timestamp":1}"#,
            r#"{"key":{"remoteJid":"5215512345678@s.whatsapp.net","fromMe":true,"id":"BAE5"},"status":"PENDING"}"#,
            r#"{"id":"plain-id"}"#,
            r#"{"id":"","messages":[{"id":"from-messages"}]}"#,
            r#"{"id":7,"key":{"id":""},"messages":[{"id":{"_serialized":""}}]}"#,
            r#"{"id":{"_serialized":1,"_serialized":"last"}}"#,
            r#"{"id":"first","id":"second"}"#,
            r#"{"messages":{"0":{"id":"not-an-array"}}}"#,
            r#"{"messages":[1,{"id":"second"}]}"#,
            r#"{"messages":[],"key":"text"}"#,
            r#"{"key":null,"messages":null,"id":null}"#,
            r#"{"id":[1,{"_serialized":"x"}],"key":{"id":true}}"#,
            r#"{"key":["x"],"messages":[["y"]]}"#,
            r#"{"messages":[["y"]],"id":""}"#,
            r#"["id"]"#,
            r#""id""#,
            "not json",
            "",
            r#"{"id":"x"} trailing"#,
        ];
        for body in answers {
            let value: Option<Value> = serde_json::from_slice(body.as_bytes()).ok();
            for kind in [Some(ConnectorKind::Meta), Some(ConnectorKind::Waha), None] {
                let expected = value.as_ref().and_then(|v| message_id(v, kind));
                assert_eq!(
                    answer_message_id(body.as_bytes(), kind),
                    expected,
                    "{body} ({kind:?})"
                );
            }
        }
        assert_eq!(
            answer_message_id(answers[0].as_bytes(), Some(ConnectorKind::Meta)).as_deref(),
            Some("wamid.HBgN")
        );
        assert_eq!(
            answer_message_id(answers[1].as_bytes(), Some(ConnectorKind::Waha)).as_deref(),
            Some("true_5215512345678@c.us_ABC")
        );
    }

    fn record() -> Attempt {
        Attempt {
            at: Timestamp::UNIX_EPOCH,
            status: None,
            error: None,
            latency_ms: 0.0,
            response: None,
        }
    }

    /// Run the loop against scripted outcomes; returns the result and when
    /// (in paused time) each attempt started.
    async fn scripted(
        schedule: &[Duration],
        script: Vec<Try>,
        jitter: f64,
    ) -> (Delivered, Vec<Duration>) {
        let start = TokioInstant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let (delivered, _) = retry_loop(
            schedule,
            None,
            || jitter,
            Vec::new(),
            Duration::MAX,
            || {
                let times = times.clone();
                let script = script.clone();
                async move {
                    times.lock().unwrap().push(start.elapsed());
                    let next = script
                        .lock()
                        .unwrap()
                        .next()
                        .unwrap_or(Try::Fail("script ran out".into()));
                    (next, record())
                }
            },
        )
        .await;
        let t = times.lock().unwrap().clone();
        (delivered, t)
    }

    fn secs(s: &[u64]) -> Vec<Duration> {
        s.iter().map(|x| Duration::from_secs(*x)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_follow_the_schedule_until_success() {
        let script = vec![
            Try::Retry("HTTP 500".into(), None),
            Try::Retry("HTTP 503".into(), None),
            Try::Done(json!({"status": 200})),
        ];
        let (d, times) = scripted(&secs(&[5, 30, 120]), script, 0.5).await;
        assert_eq!(d.result.unwrap(), json!({"status": 200}));
        assert_eq!(d.attempts.len(), 3);
        assert_eq!(times, secs(&[0, 5, 35]));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_moves_each_wait_by_at_most_twenty_percent() {
        let script = vec![Try::Retry("x".into(), None), Try::Done(json!({}))];
        let (_, low) = scripted(&secs(&[10]), script, 0.0).await;
        assert_eq!(low[1], Duration::from_secs(8));
        let script = vec![Try::Retry("x".into(), None), Try::Done(json!({}))];
        let (_, high) = scripted(&secs(&[10]), script, 0.999_999).await;
        assert!(high[1] > Duration::from_millis(11_999) && high[1] <= Duration::from_secs(12));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_replaces_the_scheduled_delay() {
        let script = vec![
            Try::Retry("HTTP 429".into(), Some(Duration::from_secs(42))),
            Try::Done(json!({})),
        ];
        let (d, times) = scripted(&secs(&[5]), script, 0.5).await;
        assert!(d.result.is_ok());
        assert_eq!(times, secs(&[0, 42]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_failure_stops_at_once_and_the_schedule_bounds_attempts() {
        let (d, times) = scripted(&secs(&[5, 30]), vec![Try::Fail("HTTP 400".into())], 0.5).await;
        assert_eq!(d.result.unwrap_err(), "HTTP 400");
        assert_eq!(times, secs(&[0]));
        let script = (0..10)
            .map(|_| Try::Retry("HTTP 502".into(), None))
            .collect();
        let (d, times) = scripted(&secs(&[1, 2]), script, 0.5).await;
        assert_eq!(d.attempts.len(), 3);
        assert_eq!(times, secs(&[0, 1, 3]));
        assert!(d.result.unwrap_err().contains("gave up after 3 attempts"));
        let (d, _) = scripted(&[], vec![Try::Retry("HTTP 500".into(), None)], 0.5).await;
        assert_eq!(d.attempts.len(), 1, "an empty schedule means one attempt");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_retry_wait_is_handed_back_and_the_schedule_continues_after_it() {
        let schedule = secs(&[1, 60, 300]);
        let script = Arc::new(Mutex::new(
            vec![
                Try::Retry("HTTP 503".into(), None),
                Try::Retry("HTTP 503".into(), None),
            ]
            .into_iter(),
        ));
        let run = |prior: Vec<Attempt>| {
            let script = script.clone();
            let schedule = schedule.clone();
            async move {
                retry_loop(
                    &schedule,
                    None,
                    || 0.5,
                    prior,
                    Duration::from_secs(2),
                    || {
                        let next = script
                            .lock()
                            .unwrap()
                            .next()
                            .unwrap_or(Try::Done(json!({"status": 200})));
                        async move { (next, record()) }
                    },
                )
                .await
            }
        };
        // The 1 s wait happens inline; the 60 s one is handed back.
        let (first, retry_in) = run(Vec::new()).await;
        assert_eq!(first.attempts.len(), 2);
        assert_eq!(retry_in, Some(Duration::from_secs(60)));
        assert_eq!(first.result.unwrap_err(), "HTTP 503");
        // Resumed with those two attempts, the third attempt succeeds.
        let (second, retry_in) = run(first.attempts).await;
        assert_eq!(retry_in, None);
        assert_eq!(second.attempts.len(), 3);
        assert_eq!(second.result.unwrap(), json!({"status": 200}));
    }

    #[test]
    fn each_kind_builds_the_documented_request() {
        use crate::config::ConnectorConfig;
        let base = ConnectorConfig {
            name: "c".into(),
            kind: ConnectorKind::Meta,
            phone_number_id: Some("106540352242922".into()),
            token: Some(Secret::new("EAAG-token")),
            base_url: None,
            session: None,
            api_key: None,
            url: None,
            headers: Default::default(),
            secret: None,
            timeout: None,
            rate_limit: None,
            retry: None,
        };
        let req = |o: Outbound| Request {
            connector: Some("c".into()),
            outbound: o,
            idempotency_key: "run_1:3".into(),
            retry: None,
        };
        let text = Outbound::Text {
            to: "+5215512345678".into(),
            text: "Hi".into(),
        };
        let b = build(Some(&base), &req(text.clone())).unwrap();
        assert_eq!(
            b.url.as_str(),
            "https://graph.facebook.com/v21.0/106540352242922/messages"
        );
        let body: Value = serde_json::from_slice(b.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["to"], "5215512345678");
        assert_eq!(body["type"], "text");
        assert_eq!(body["text"]["body"], "Hi");
        assert!(b
            .headers
            .contains(&("authorization".into(), "Bearer EAAG-token".into())));

        let waha = ConnectorConfig {
            kind: ConnectorKind::Waha,
            base_url: Some("http://waha.local:3000/".into()),
            session: Some("sales".into()),
            api_key: Some(Secret::new("k")),
            ..base.clone()
        };
        let b = build(Some(&waha), &req(text)).unwrap();
        assert_eq!(b.url.as_str(), "http://waha.local:3000/api/sendText");
        let body: Value = serde_json::from_slice(b.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"session": "sales", "chatId": "5215512345678@c.us", "text": "Hi"})
        );
        assert!(build(Some(&waha), &req(Outbound::Alert { text: "x".into() })).is_err());
    }

    /// A Slack incoming webhook's URL is its credential: `ringback test`'s
    /// preview of the request, and any answer that echoes it, show the
    /// host and not the path; a connector URL that does not parse is not
    /// repeated in the error.
    #[test]
    fn a_slack_webhook_url_is_kept_out_of_previews_echoes_and_errors() {
        use crate::config::ConnectorConfig;
        let hook = "https://hooks.slack.com/services/T0001/B0002/XyZsecret123";
        let slack = ConnectorConfig {
            name: "slack".into(),
            kind: ConnectorKind::Slack,
            phone_number_id: None,
            token: None,
            base_url: None,
            session: None,
            api_key: None,
            url: Some(hook.into()),
            headers: Default::default(),
            secret: None,
            timeout: None,
            rate_limit: None,
            retry: None,
        };
        let req = Request {
            connector: Some("slack".into()),
            outbound: Outbound::Alert { text: "VIP".into() },
            idempotency_key: "run_1:0".into(),
            retry: None,
        };
        let b = build(Some(&slack), &req).unwrap();
        assert_eq!(b.url.as_str(), hook, "the real request goes to the hook");
        let preview = b.preview().to_string();
        assert!(preview.contains("https://hooks.slack.com***"), "{preview}");
        assert!(!preview.contains("XyZsecret123"), "{preview}");
        let echoed = format!("invalid_token for {hook}");
        let (_, _, excerpt) =
            judge_answer(403, echoed.as_bytes(), None, &b, Some(ConnectorKind::Slack));
        assert!(!excerpt.unwrap().contains("XyZsecret123"));

        let broken = ConnectorConfig {
            url: Some("https://[XyZsecret123".into()),
            ..slack
        };
        let err = build(Some(&broken), &req).err().unwrap();
        assert!(err.starts_with("the connector's URL is not valid"), "{err}");
        assert!(!err.contains("XyZsecret123"), "{err}");
    }
}
