//! Outbound delivery (SPEC §2 `outbound`, §5 connectors, retry,
//! idempotency) against a real HTTP receiver on 127.0.0.1:0 written here:
//! it records every request (method, path, headers, raw body) and answers
//! from a per-test script.
//!
//! Two ways in: directly through `ringback::delivery::Connectors` and the
//! `Delivery` trait, and end to end through the real server (a Wazzap
//! event in, a workflow run, the follow-up at the receiver, the attempts in
//! `GET /api/executions/{id}`).
//!
//! Timing assertions are lower bounds only. Every wait is bounded in count
//! and time; a hang guard (generous, never an assertion about speed) turns
//! a stuck delivery into a failure instead of a stuck test.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use jiff::Timestamp;
use ringback::config::{Cidr, ConnectorConfig, ConnectorKind, OutboundConfig};
use ringback::delivery::{Connectors, Delivered, Delivery, Outbound, Request};
use ringback::event::{Secret, SourceAuth};
use serde_json::{json, Value};

use crate::support::*;

/// The longest a bounded poll waits for an asynchronous outcome.
const PATIENCE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(10);
/// A delivery that has not finished after this is stuck (not slow).
const HANG_GUARD: Duration = Duration::from_secs(60);
/// How long a "dead" receiver keeps a request without answering.
const HANG: Duration = Duration::from_secs(120);

const META_TOKEN: &str = "EAAG-meta-secret-token-1234";
const WAHA_KEY: &str = "waha-secret-api-key-5678";
const CRM_HEADER: &str = "crm-secret-header-9012";
/// A valid Standard Webhooks secret (`whsec_` + base64).
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WHSEC_BODY: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PHONE_NUMBER_ID: &str = "106540352242922";
const CALLER: &str = "+5215587654321";
const CALLER_DIGITS: &str = "5215587654321";

// ---------------------------------------------------------------------
// The receiver

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    method: String,
    /// Path and query.
    path: String,
    /// Names lower-case, in the order received.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// How many requests to the same path came before this one.
    nth: usize,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }

    fn key(&self) -> &str {
        self.header("idempotency-key")
            .unwrap_or_else(|| panic!("no Idempotency-Key on {} {}", self.method, self.path))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Check the Standard Webhooks headers with ringback's own verifier,
    /// over the raw bytes received.
    fn verify_standard(&self, secret: &str) -> Result<(), String> {
        let auth = SourceAuth {
            standard_secrets: vec![Secret::new(secret)],
            ..Default::default()
        };
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ringback::event::verify(
            &auth,
            headers.as_slice(),
            None,
            &self.body,
            Timestamp::now(),
        )
        .map_err(|e| e.to_string())
    }
}

/// How the receiver answers one request.
enum Reply {
    /// Status, extra headers, body.
    Plain(u16, Vec<(String, String)>, Vec<u8>),
    /// Wait this long, then answer.
    After(Duration, Box<Reply>),
    /// Keep the request without answering (for [`HANG`]).
    Hang,
    /// A 200 whose body keeps coming: 64 KiB every 10 ms, at most this
    /// many chunks.
    Endless(usize),
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply::Plain(
            status,
            vec![("content-type".into(), "application/json".into())],
            body.to_string().into_bytes(),
        )
    }

    fn text(status: u16, body: &str) -> Reply {
        Reply::Plain(
            status,
            vec![("content-type".into(), "text/plain".into())],
            body.as_bytes().to_vec(),
        )
    }

    fn header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Plain(s, mut h, b) => {
                h.push((name.into(), value.into()));
                Reply::Plain(s, h, b)
            }
            other => other,
        }
    }

    fn status_only(status: u16) -> Reply {
        Reply::Plain(status, Vec::new(), Vec::new())
    }

    fn meta_ok(id: &str) -> Reply {
        Reply::json(
            200,
            json!({
                "messaging_product": "whatsapp",
                "contacts": [{"input": CALLER_DIGITS, "wa_id": CALLER_DIGITS}],
                "messages": [{"id": id}],
            }),
        )
    }

    fn waha_ok(id: &str) -> Reply {
        Reply::json(200, json!({"id": id, "timestamp": 1_747_233_131, "ack": 1}))
    }
}

type Script = Arc<dyn Fn(&Hit) -> Reply + Send + Sync>;

struct Shared {
    hits: Mutex<Vec<Hit>>,
    script: Script,
}

struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(script: impl Fn(&Hit) -> Reply + Send + Sync + 'static) -> Receiver {
        let shared = Arc::new(Shared {
            hits: Mutex::new(Vec::new()),
            script: Arc::new(script),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, shared, task }
    }

    /// `http://127.0.0.1:<port><path>`
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    fn hits_on(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }

    /// Wait (bounded) until `n` requests reached `path`.
    async fn wait_on(&self, path: &str, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let hits = self.hits_on(path);
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {n} request(s) to {path}; the receiver has: {:#?}",
                self.hits()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let hit = {
        let mut hits = shared.hits.lock().unwrap();
        let nth = hits.iter().filter(|h| h.path == path).count();
        let hit = Hit {
            at: Instant::now(),
            method: parts.method.to_string(),
            path,
            headers,
            body,
            nth,
        };
        hits.push(hit.clone());
        hit
    };
    let mut reply = (shared.script)(&hit);
    loop {
        match reply {
            Reply::After(wait, next) => {
                tokio::time::sleep(wait).await;
                reply = *next;
            }
            Reply::Hang => {
                tokio::time::sleep(HANG).await;
                reply = Reply::text(504, "gave up hanging");
            }
            Reply::Plain(status, headers, body) => {
                let mut r = Response::builder().status(status);
                for (k, v) in headers {
                    r = r.header(k, v);
                }
                return r.body(Body::from(body)).unwrap();
            }
            Reply::Endless(chunks) => {
                return Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Body::from_stream(Endless {
                        left: chunks,
                        tick: Box::pin(tokio::time::sleep(Duration::ZERO)),
                    }))
                    .unwrap();
            }
        }
    }
}

/// A slow, long body: 64 KiB every 10 ms until `left` runs out.
struct Endless {
    left: usize,
    tick: Pin<Box<tokio::time::Sleep>>,
}

impl futures_core::Stream for Endless {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        match self.tick.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.left -= 1;
                let next = tokio::time::Instant::now() + Duration::from_millis(10);
                self.tick.as_mut().reset(next);
                Poll::Ready(Some(Ok(Bytes::from(vec![b'x'; 64 * 1024]))))
            }
        }
    }
}

// ---------------------------------------------------------------------
// Direct delivery helpers

fn outbound(allow: &[&str]) -> OutboundConfig {
    OutboundConfig {
        allow_cidrs: allow.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
        timeout: Duration::from_secs(5),
    }
}

fn allow_loopback() -> OutboundConfig {
    outbound(&["127.0.0.1/32"])
}

/// A connector of `kind` with nothing set; tests fill in the keys.
fn connector(name: &str, kind: ConnectorKind) -> ConnectorConfig {
    ConnectorConfig {
        name: name.into(),
        kind,
        phone_number_id: None,
        token: None,
        base_url: None,
        session: None,
        api_key: None,
        url: None,
        headers: Default::default(),
        secret: None,
        timeout: None,
        rate_limit: None,
        retry: Some(Vec::new()),
    }
}

fn meta(name: &str, base_url: String) -> ConnectorConfig {
    ConnectorConfig {
        phone_number_id: Some(PHONE_NUMBER_ID.into()),
        token: Some(Secret::new(META_TOKEN)),
        base_url: Some(base_url),
        ..connector(name, ConnectorKind::Meta)
    }
}

fn waha(name: &str, base_url: String) -> ConnectorConfig {
    ConnectorConfig {
        base_url: Some(base_url),
        session: Some("sales".into()),
        api_key: Some(Secret::new(WAHA_KEY)),
        ..connector(name, ConnectorKind::Waha)
    }
}

fn slack(name: &str, url: String) -> ConnectorConfig {
    ConnectorConfig {
        url: Some(url),
        ..connector(name, ConnectorKind::Slack)
    }
}

fn hook(name: &str, url: String) -> ConnectorConfig {
    ConnectorConfig {
        url: Some(url),
        ..connector(name, ConnectorKind::Http)
    }
}

fn connectors(list: Vec<ConnectorConfig>, out: OutboundConfig) -> Arc<Connectors> {
    Connectors::new(
        list.into_iter().map(|c| (c.name.clone(), c)).collect(),
        &out,
    )
}

fn ms(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|m| Duration::from_millis(*m)).collect()
}

fn request(via: Option<&str>, outbound: Outbound, key: &str) -> Request {
    Request {
        connector: via.map(str::to_string),
        outbound,
        idempotency_key: key.into(),
        retry: None,
    }
}

fn text(to: &str, text: &str) -> Outbound {
    Outbound::Text {
        to: to.into(),
        text: text.into(),
    }
}

fn alert(text: &str) -> Outbound {
    Outbound::Alert { text: text.into() }
}

fn http_step(method: &str, url: &str) -> Outbound {
    Outbound::Http {
        method: method.into(),
        url: url.into(),
        headers: Vec::new(),
        json: None,
    }
}

async fn deliver(c: &Connectors, r: Request) -> Delivered {
    tokio::time::timeout(HANG_GUARD, c.deliver(r))
        .await
        .expect("the delivery is stuck")
}

/// Everything a delivery produced, as text, for "no secret in it" checks.
fn everything(d: &Delivered) -> String {
    let attempts = serde_json::to_string(&d.attempts).unwrap();
    format!("{:?} {attempts}", d.result)
}

fn assert_no_secrets(what: &str, text: &str) {
    for secret in [META_TOKEN, WAHA_KEY, CRM_HEADER, WHSEC_BODY] {
        assert!(
            !text.contains(secret),
            "a secret ({secret}) leaked into {what}: {text}"
        );
    }
}

fn err(d: &Delivered) -> String {
    match &d.result {
        Err(e) => e.clone(),
        Ok(v) => panic!(
            "expected the delivery to fail, it gave {v}; {:?}",
            d.attempts
        ),
    }
}

fn ok(d: &Delivered) -> Value {
    match &d.result {
        Ok(v) => v.clone(),
        Err(e) => panic!("expected the delivery to succeed: {e}; {:?}", d.attempts),
    }
}

fn statuses(d: &Delivered) -> Vec<Option<u16>> {
    d.attempts.iter().map(|a| a.status).collect()
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// A port on 127.0.0.1 where nothing listens (below the ephemeral range:
/// another test's listener on port 0 is never handed it meanwhile).
fn closed_port() -> u16 {
    crate::support::free_port()
}

// ---------------------------------------------------------------------
// Request shapes per connector kind

#[tokio::test]
async fn meta_text_goes_to_the_phone_number_messages_endpoint_with_the_bearer_token() {
    let recv = Receiver::start(|_| Reply::meta_ok("wamid.X")).await;
    let c = connectors(vec![meta("wa", recv.url("/v21.0"))], allow_loopback());
    let d = deliver(
        &c,
        request(
            Some("wa"),
            text(CALLER, "Hi, sorry we missed your call"),
            "run_1:0",
        ),
    )
    .await;

    assert_eq!(ok(&d), json!({"status": 200, "id": "wamid.X"}));
    let hits = recv.hits();
    assert_eq!(hits.len(), 1, "{hits:#?}");
    let h = &hits[0];
    assert_eq!(h.method, "POST");
    assert_eq!(h.path, format!("/v21.0/{PHONE_NUMBER_ID}/messages"));
    assert_eq!(
        h.header("authorization"),
        Some(format!("Bearer {META_TOKEN}").as_str())
    );
    assert_eq!(h.header_count("authorization"), 1);
    assert_eq!(h.header("content-type"), Some("application/json"));
    assert_eq!(h.key(), "run_1:0");
    assert_eq!(h.header_count("idempotency-key"), 1);
    let body = h.json();
    assert_eq!(body["messaging_product"], json!("whatsapp"));
    assert_eq!(body["to"], json!(CALLER_DIGITS), "digits, no +");
    assert_eq!(body["type"], json!("text"));
    assert_eq!(body["text"]["body"], json!("Hi, sorry we missed your call"));
    // SPEC §5's shape, plus at most Meta's documented optional fields.
    for k in sorted_keys(&body) {
        assert!(
            ["messaging_product", "to", "type", "text", "recipient_type"].contains(&k.as_str()),
            "unexpected key {k} in {body}"
        );
    }
    if let Some(rt) = body.get("recipient_type") {
        assert_eq!(rt, &json!("individual"));
    }
    for k in sorted_keys(&body["text"]) {
        assert!(["body", "preview_url"].contains(&k.as_str()), "{body}");
    }

    assert_eq!(d.attempts.len(), 1);
    let a = &d.attempts[0];
    assert_eq!(a.status, Some(200));
    assert_eq!(a.error, None);
    assert!(a.latency_ms >= 0.0);
    assert!(
        a.response.as_deref().unwrap_or("").contains("wamid.X"),
        "{a:?}"
    );
    assert_no_secrets("the delivery", &everything(&d));
}

#[tokio::test]
async fn meta_template_messages_use_the_template_form() {
    let recv = Receiver::start(|_| Reply::meta_ok("wamid.TPL")).await;
    let c = connectors(vec![meta("wa", recv.url("/graph/"))], allow_loopback());
    let d = deliver(
        &c,
        request(
            Some("wa"),
            Outbound::Template {
                to: CALLER.into(),
                name: "missed_call".into(),
                language: "es_MX".into(),
                params: vec!["Ana".into(), "mañana".into()],
            },
            "run_1:2",
        ),
    )
    .await;
    assert_eq!(ok(&d), json!({"status": 200, "id": "wamid.TPL"}));
    let h = &recv.hits()[0];
    assert_eq!(
        h.path,
        format!("/graph/{PHONE_NUMBER_ID}/messages"),
        "no doubled slash"
    );
    let body = h.json();
    assert_eq!(body["messaging_product"], json!("whatsapp"));
    assert_eq!(body["to"], json!(CALLER_DIGITS));
    assert_eq!(body["type"], json!("template"));
    assert!(body.get("text").is_none(), "{body}");
    assert_eq!(
        body["template"],
        json!({
            "name": "missed_call",
            "language": {"code": "es_MX"},
            "components": [{"type": "body", "parameters": [
                {"type": "text", "text": "Ana"},
                {"type": "text", "text": "mañana"},
            ]}],
        })
    );
}

#[tokio::test]
async fn waha_text_goes_to_send_text_with_the_api_key() {
    let recv = Receiver::start(|h| {
        if h.nth == 0 {
            Reply::waha_ok("true_5215587654321@c.us_ABC")
        } else {
            // WAHA engines that answer with the serialized-id object.
            Reply::json(
                200,
                json!({"id": {"fromMe": true, "remote": "5215587654321@c.us", "id": "DEF",
                               "_serialized": "true_5215587654321@c.us_DEF"}}),
            )
        }
    })
    .await;
    let c = connectors(vec![waha("waha", recv.url("/waha/"))], allow_loopback());
    let d = deliver(&c, request(Some("waha"), text(CALLER, "Hola"), "run_2:1")).await;
    assert_eq!(
        ok(&d),
        json!({"status": 200, "id": "true_5215587654321@c.us_ABC"})
    );
    let d2 = deliver(&c, request(Some("waha"), text(CALLER, "Otra"), "run_2:2")).await;
    assert_eq!(
        ok(&d2),
        json!({"status": 200, "id": "true_5215587654321@c.us_DEF"})
    );

    let hits = recv.hits();
    assert_eq!(hits.len(), 2);
    let h = &hits[0];
    assert_eq!(h.method, "POST");
    assert_eq!(h.path, "/waha/api/sendText");
    assert_eq!(h.header("x-api-key"), Some(WAHA_KEY));
    assert_eq!(h.header("authorization"), None);
    assert_eq!(h.header("content-type"), Some("application/json"));
    assert_eq!(h.key(), "run_2:1");
    assert_eq!(
        h.json(),
        json!({"session": "sales", "chatId": format!("{CALLER_DIGITS}@c.us"), "text": "Hola"})
    );
    assert_no_secrets("the delivery", &everything(&d));
}

#[tokio::test]
async fn slack_alerts_post_a_text_object() {
    let recv = Receiver::start(|_| Reply::text(200, "ok")).await;
    let c = connectors(
        vec![slack("slack", recv.url("/services/T000/B000/XXXX"))],
        allow_loopback(),
    );
    let d = deliver(
        &c,
        request(Some("slack"), alert("VIP Ana is calling"), "run_3:0"),
    )
    .await;
    assert_eq!(ok(&d), json!({"status": 200}), "a non-JSON 200 is fine");
    let h = &recv.hits()[0];
    assert_eq!(h.method, "POST");
    assert_eq!(h.path, "/services/T000/B000/XXXX");
    assert_eq!(h.header("content-type"), Some("application/json"));
    assert_eq!(h.key(), "run_3:0");
    assert_eq!(h.json(), json!({"text": "VIP Ana is calling"}));
    assert_eq!(d.attempts[0].response.as_deref(), Some("ok"));
}

#[tokio::test]
async fn http_connectors_send_documented_bodies_and_their_headers() {
    let recv = Receiver::start(|_| Reply::json(200, json!({"received": true}))).await;
    let mut c = hook("crm", recv.url("/hook?src=ringback"));
    c.headers
        .insert("X-Crm-Key".into(), Secret::new(CRM_HEADER));
    let cs = connectors(vec![c], allow_loopback());
    let event = json!({
        "id": "evt_1", "kind": "call.missed", "caller": CALLER, "business": "+5215500000000",
        "direction": "incoming", "raw": {"nested": [1, 2, {"x": "y"}]},
    });
    let cases = [
        (text(CALLER, "Hi"), json!({"to": CALLER, "text": "Hi"})),
        (alert("Heads up"), json!({"text": "Heads up"})),
        (
            Outbound::Forward {
                event: event.clone(),
            },
            event.clone(),
        ),
        (
            Outbound::Template {
                to: CALLER.into(),
                name: "t".into(),
                language: "en".into(),
                params: vec!["a".into()],
            },
            json!({"to": CALLER, "template": {"name": "t", "language": "en", "params": ["a"]}}),
        ),
    ];
    for (i, (out, expected)) in cases.into_iter().enumerate() {
        let key = format!("run_4:{i}");
        let d = deliver(&cs, request(Some("crm"), out, &key)).await;
        assert_eq!(ok(&d), json!({"status": 200}), "case {i}");
        let hits = recv.hits();
        assert_eq!(hits.len(), i + 1);
        let h = &hits[i];
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/hook?src=ringback");
        assert_eq!(h.key(), key);
        assert_eq!(h.header("x-crm-key"), Some(CRM_HEADER));
        assert_eq!(h.header("content-type"), Some("application/json"));
        assert_eq!(h.header("webhook-signature"), None, "no secret, no signing");
        assert_eq!(h.json(), expected, "case {i}");
        assert_no_secrets("the delivery", &everything(&d));
    }
}

#[tokio::test]

async fn a_configured_content_type_replaces_the_default() {
    let recv = Receiver::start(|_| Reply::json(200, json!({}))).await;
    let mut c = hook("events", recv.url("/events"));
    c.headers.insert(
        "Content-Type".into(),
        Secret::new("application/cloudevents+json"),
    );
    let cs = connectors(vec![c], allow_loopback());
    ok(&deliver(&cs, request(Some("events"), alert("x"), "run_5:0")).await);
    let h = &recv.hits()[0];
    assert_eq!(h.header_count("content-type"), 1, "{:?}", h.headers);
    assert_eq!(
        h.header("content-type"),
        Some("application/cloudevents+json")
    );
}

#[tokio::test]
async fn http_connectors_with_a_secret_send_verifiable_standard_webhooks_headers() {
    let recv = Receiver::start(|_| Reply::json(200, json!({}))).await;
    let mut c = hook("relay", recv.url("/relay"));
    c.secret = Some(Secret::new(WHSEC));
    let cs = connectors(vec![c], allow_loopback());
    let d = deliver(
        &cs,
        request(Some("relay"), alert("signed ✓ \"quoted\""), "run_5:3"),
    )
    .await;
    ok(&d);
    let h = &recv.hits()[0];
    assert_eq!(h.header("webhook-id"), Some("run_5:3"));
    let ts: i64 = h
        .header("webhook-timestamp")
        .expect("webhook-timestamp")
        .parse()
        .expect("unix seconds");
    assert!((Timestamp::now().as_second() - ts).abs() < 300);
    assert!(h
        .header("webhook-signature")
        .expect("webhook-signature")
        .starts_with("v1,"));
    h.verify_standard(WHSEC)
        .unwrap_or_else(|e| panic!("the signature does not verify: {e}; {h:#?}"));
    // The check can fail: another secret, or a changed body, does not verify.
    assert!(h.verify_standard("whsec_b2xkc2VjcmV0b2xkc2VjcmV0").is_err());
    let mut tampered = h.clone();
    tampered.body.push(b' ');
    assert!(tampered.verify_standard(WHSEC).is_err());
    assert_no_secrets("the delivery", &everything(&d));
}

#[tokio::test]
async fn the_http_step_returns_the_parsed_body_or_the_text() {
    let recv = Receiver::start(|h| match h.path.as_str() {
        "/json" => Reply::json(201, json!({"deal": {"id": 7}})),
        _ => Reply::text(200, "plain words"),
    })
    .await;
    let cs = connectors(vec![], allow_loopback());
    let mut r = request(
        None,
        Outbound::Http {
            method: "PUT".into(),
            url: recv.url("/json"),
            headers: vec![("X-Trace".into(), "abc".into())],
            json: Some(json!({"name": "Ana", "n": [1, 2]})),
        },
        "run_6:1",
    );
    r.retry = Some(Vec::new());
    let d = deliver(&cs, r).await;
    assert_eq!(ok(&d), json!({"status": 201, "body": {"deal": {"id": 7}}}));
    let h = &recv.hits_on("/json")[0];
    assert_eq!(h.method, "PUT");
    assert_eq!(h.header("x-trace"), Some("abc"));
    assert_eq!(h.header("content-type"), Some("application/json"));
    assert_eq!(h.key(), "run_6:1");
    assert_eq!(h.json(), json!({"name": "Ana", "n": [1, 2]}));

    let mut r = request(None, http_step("GET", &recv.url("/text")), "run_6:2");
    r.retry = Some(Vec::new());
    let d = deliver(&cs, r).await;
    assert_eq!(ok(&d), json!({"status": 200, "body": "plain words"}));
    let h = &recv.hits_on("/text")[0];
    assert_eq!(h.method, "GET");
    assert!(h.body.is_empty());
}

#[tokio::test]
async fn an_unknown_connector_is_an_error_without_any_request() {
    let cs = connectors(vec![], allow_loopback());
    let d = deliver(&cs, request(Some("nope"), alert("x"), "run_7:0")).await;
    let e = err(&d);
    assert!(e.contains("nope") && e.contains("not configured"), "{e}");
    assert!(d.attempts.is_empty());
}

// ---------------------------------------------------------------------
// Retries, idempotency, failures

#[tokio::test]
async fn the_idempotency_key_and_body_are_identical_on_every_retry() {
    let recv = Receiver::start(|h| match h.nth {
        0 => Reply::text(500, "boom"),
        1 => Reply::text(502, "bad gateway"),
        _ => Reply::json(200, json!({"id": "msg-1"})),
    })
    .await;
    let mut c = hook("crm", recv.url("/flaky"));
    c.secret = Some(Secret::new(WHSEC));
    c.retry = Some(ms(&[5_000])); // the step's own schedule overrides it
    let cs = connectors(vec![c], allow_loopback());
    let mut r = request(Some("crm"), text(CALLER, "retry me"), "run_8:4.then.0");
    r.retry = Some(ms(&[50, 50]));
    let d = deliver(&cs, r).await;

    assert_eq!(ok(&d), json!({"status": 200, "id": "msg-1"}));
    assert_eq!(statuses(&d), vec![Some(500), Some(502), Some(200)]);
    assert_eq!(d.attempts[0].error.as_deref(), Some("HTTP 500"));
    assert_eq!(d.attempts[0].response.as_deref(), Some("boom"));
    assert_eq!(d.attempts[2].error, None);
    let hits = recv.hits();
    assert_eq!(hits.len(), 3, "{hits:#?}");
    for h in &hits {
        assert_eq!(h.key(), "run_8:4.then.0");
        assert_eq!(h.header_count("idempotency-key"), 1);
        assert_eq!(h.body, hits[0].body, "the same body every time");
        assert_eq!(h.header("webhook-id"), Some("run_8:4.then.0"));
        h.verify_standard(WHSEC)
            .unwrap_or_else(|e| panic!("attempt {} is not signed right: {e}", h.nth));
    }
    // The waits follow the step's schedule (50 ms −20%), not the connector's.
    for pair in hits.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(40),
            "{:?}",
            pair[1].at - pair[0].at
        );
    }
}

#[tokio::test]
async fn a_429_with_retry_after_waits_at_least_that_long() {
    let recv = Receiver::start(|h| match h.nth {
        0 => Reply::json(429, json!({"error": "slow down"})).header("Retry-After", "1"),
        _ => Reply::meta_ok("wamid.LATER"),
    })
    .await;
    let cs = connectors(vec![meta("wa", recv.url("/v21.0"))], allow_loopback());
    let mut r = request(Some("wa"), text(CALLER, "hi"), "run_9:0");
    r.retry = Some(ms(&[50]));
    let d = deliver(&cs, r).await;
    assert_eq!(ok(&d), json!({"status": 200, "id": "wamid.LATER"}));
    assert_eq!(statuses(&d), vec![Some(429), Some(200)]);
    let hits = recv.hits();
    assert_eq!(hits.len(), 2);
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(990),
        "Retry-After: 1 was not honoured; the retry came after {gap:?}"
    );
    assert_eq!(hits[0].key(), hits[1].key());
}

#[tokio::test]
async fn a_400_fails_at_once_with_a_single_attempt() {
    let recv = Receiver::start(|_| {
        Reply::json(
            400,
            json!({"error": {"message": "(#100) Invalid parameter", "code": 100}}),
        )
    })
    .await;
    let mut c = meta("wa", recv.url("/v21.0"));
    c.retry = Some(ms(&[50, 50, 50]));
    let cs = connectors(vec![c], allow_loopback());
    let d = deliver(&cs, request(Some("wa"), text(CALLER, "hi"), "run_10:0")).await;
    let e = err(&d);
    assert!(e.contains("400"), "{e}");
    assert_eq!(statuses(&d), vec![Some(400)]);
    let a = &d.attempts[0];
    assert!(a.error.as_deref().unwrap_or("").contains("400"), "{a:?}");
    assert!(
        a.response
            .as_deref()
            .unwrap_or("")
            .contains("Invalid parameter"),
        "the receiver's answer is kept: {a:?}"
    );
    // Give a wrongly scheduled retry time to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recv.hits().len(), 1);
    assert_no_secrets("the delivery", &everything(&d));
}

#[tokio::test]
async fn other_4xx_fail_at_once_but_408_is_retried() {
    let recv = Receiver::start(|h| match h.path.as_str() {
        "/404" => Reply::status_only(404),
        "/401" => Reply::status_only(401),
        _ => match h.nth {
            0 => Reply::status_only(408),
            _ => Reply::json(200, json!({})),
        },
    })
    .await;
    let cs = connectors(
        vec![
            ConnectorConfig {
                retry: Some(ms(&[20, 20])),
                ..hook("a", recv.url("/404"))
            },
            ConnectorConfig {
                retry: Some(ms(&[20, 20])),
                ..hook("b", recv.url("/401"))
            },
            ConnectorConfig {
                retry: Some(ms(&[20, 20])),
                ..hook("c", recv.url("/408"))
            },
        ],
        allow_loopback(),
    );
    let d = deliver(&cs, request(Some("a"), alert("x"), "k:a")).await;
    assert_eq!(statuses(&d), vec![Some(404)]);
    err(&d);
    let d = deliver(&cs, request(Some("b"), alert("x"), "k:b")).await;
    assert_eq!(statuses(&d), vec![Some(401)]);
    err(&d);
    let d = deliver(&cs, request(Some("c"), alert("x"), "k:c")).await;
    assert_eq!(statuses(&d), vec![Some(408), Some(200)]);
    ok(&d);
}

#[tokio::test]
async fn server_errors_past_the_schedule_makes_exactly_schedule_len_plus_one_attempts() {
    let recv = Receiver::start(|_| Reply::text(503, "unavailable")).await;
    let mut c = slack("slack", recv.url("/down"));
    c.retry = Some(ms(&[30, 30, 30]));
    let cs = connectors(vec![c.clone()], allow_loopback());
    let d = deliver(&cs, request(Some("slack"), alert("x"), "run_11:0")).await;
    let e = err(&d);
    assert!(e.contains("503"), "{e}");
    assert!(e.contains("4 attempts"), "{e}");
    assert_eq!(statuses(&d), vec![Some(503); 4]);
    for a in &d.attempts {
        assert_eq!(a.response.as_deref(), Some("unavailable"));
        assert!(a.error.as_deref().unwrap_or("").contains("503"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recv.hits().len(), 4);
    assert!(recv.hits().iter().all(|h| h.key() == "run_11:0"));

    // `[]` means one attempt.
    let recv = Receiver::start(|_| Reply::text(500, "x")).await;
    c.url = Some(recv.url("/once"));
    c.retry = Some(Vec::new());
    let cs = connectors(vec![c], allow_loopback());
    let d = deliver(&cs, request(Some("slack"), alert("x"), "run_11:1")).await;
    assert_eq!(statuses(&d), vec![Some(500)]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recv.hits().len(), 1);
}

#[tokio::test]
async fn a_redirect_fails_and_is_not_followed() {
    let target = Receiver::start(|_| Reply::json(200, json!({"id": "followed"}))).await;
    let location = target.url("/elsewhere");
    let recv =
        Receiver::start(move |_| Reply::text(302, "moved").header("Location", &location)).await;
    let mut c = hook("crm", recv.url("/moved"));
    c.retry = Some(ms(&[20, 20]));
    let cs = connectors(vec![c], allow_loopback());
    let d = deliver(&cs, request(Some("crm"), alert("x"), "run_12:0")).await;
    let e = err(&d);
    assert!(e.contains("302") && e.contains("redirect"), "{e}");
    assert_eq!(statuses(&d), vec![Some(302)], "a redirect is not retried");
    // The http step (no connector) does not follow either.
    let mut r = request(None, http_step("GET", &recv.url("/moved")), "run_12:1");
    r.retry = Some(Vec::new());
    let d = deliver(&cs, r).await;
    assert!(err(&d).contains("302"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recv.hits().len(), 2);
    assert!(
        target.hits().is_empty(),
        "the Location target was hit: {:#?}",
        target.hits()
    );
}

#[tokio::test]
async fn a_slow_receiver_times_out_and_the_timeout_is_recorded() {
    let recv = Receiver::start(|_| {
        Reply::After(
            Duration::from_secs(3),
            Box::new(Reply::json(200, json!({"id": "too-late"}))),
        )
    })
    .await;
    let mut c = hook("slow", recv.url("/slow"));
    c.timeout = Some(Duration::from_millis(200));
    let cs = connectors(vec![c.clone()], allow_loopback());
    let d = deliver(&cs, request(Some("slow"), alert("x"), "run_13:0")).await;
    let e = err(&d);
    assert!(e.contains("timed out"), "{e}");
    assert_eq!(d.attempts.len(), 1);
    let a = &d.attempts[0];
    assert_eq!(a.status, None);
    assert!(
        a.error.as_deref().unwrap_or("").contains("timed out"),
        "{a:?}"
    );
    assert!(a.latency_ms >= 150.0, "{a:?}");
    assert!(!e.contains("/slow"), "errors do not carry the URL: {e}");

    // Timeouts are retried.
    c.retry = Some(ms(&[20]));
    let cs = connectors(vec![c], allow_loopback());
    let d = deliver(&cs, request(Some("slow"), alert("x"), "run_13:1")).await;
    assert_eq!(d.attempts.len(), 2, "{:?}", d.attempts);
    assert!(err(&d).contains("timed out"));
    let keys: Vec<String> = recv
        .hits()
        .iter()
        .filter(|h| h.key() == "run_13:1")
        .map(|h| h.key().to_string())
        .collect();
    assert_eq!(keys.len(), 2);
}

#[tokio::test]
async fn the_outbound_timeout_applies_when_the_connector_sets_none() {
    let recv = Receiver::start(|_| {
        Reply::After(
            Duration::from_secs(3),
            Box::new(Reply::json(200, json!({}))),
        )
    })
    .await;
    let mut out = allow_loopback();
    out.timeout = Duration::from_millis(200);
    let cs = connectors(vec![hook("slow", recv.url("/slow"))], out);
    let d = deliver(&cs, request(Some("slow"), alert("x"), "run_14:0")).await;
    assert!(err(&d).contains("timed out"));
}

#[tokio::test]
async fn a_garbage_200_is_delivered_without_an_id() {
    let recv = Receiver::start(|_| Reply::text(200, "<html>not JSON {{{</html>")).await;
    let cs = connectors(vec![meta("wa", recv.url("/v21.0"))], allow_loopback());
    let d = deliver(&cs, request(Some("wa"), text(CALLER, "hi"), "run_15:0")).await;
    assert_eq!(ok(&d), json!({"status": 200}));
    assert_eq!(
        d.attempts[0].response.as_deref(),
        Some("<html>not JSON {{{</html>")
    );
}

#[tokio::test]
async fn a_huge_or_endless_body_is_capped() {
    // A body that keeps coming for up to ~30 s: only a capped read lets the
    // delivery finish before the connector's timeout.
    let recv = Receiver::start(|h| match h.path.as_str() {
        "/endless" => Reply::Endless(3_000),
        _ => Reply::Plain(500, Vec::new(), vec![b'E'; 2 << 20]),
    })
    .await;
    let endless = ConnectorConfig {
        timeout: Some(Duration::from_secs(10)),
        ..hook("endless", recv.url("/endless"))
    };
    let huge_error = ConnectorConfig {
        retry: Some(ms(&[10])),
        ..hook("huge", recv.url("/huge"))
    };
    let cs = connectors(vec![endless, huge_error], allow_loopback());

    let d = deliver(&cs, request(Some("endless"), alert("x"), "run_16:0")).await;
    assert_eq!(
        ok(&d),
        json!({"status": 200}),
        "the body is read up to a cap, not to its end"
    );
    let excerpt = d.attempts[0].response.as_deref().unwrap_or("");
    assert!(!excerpt.is_empty());
    assert!(excerpt.chars().count() <= 512, "{} chars", excerpt.len());

    let d = deliver(&cs, request(Some("huge"), alert("x"), "run_16:1")).await;
    assert!(err(&d).contains("500"));
    assert_eq!(d.attempts.len(), 2);
    for a in &d.attempts {
        let excerpt = a.response.as_deref().unwrap_or("");
        assert!(
            excerpt.starts_with("EEEE"),
            "{}",
            &excerpt[..excerpt.len().min(20)]
        );
        assert!(excerpt.chars().count() <= 512, "{} chars", excerpt.len());
    }
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_recorded_without_the_url() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/services/T000/B000/SLACKSECRETPATH");
    let mut c = slack("slack", url);
    c.retry = Some(ms(&[20]));
    let cs = connectors(vec![c], allow_loopback());
    let d = deliver(&cs, request(Some("slack"), alert("x"), "run_17:0")).await;
    let e = err(&d);
    assert!(e.contains("connect"), "{e}");
    assert_eq!(d.attempts.len(), 2, "connection errors are retried");
    for a in &d.attempts {
        assert_eq!(a.status, None);
        assert!(a.error.is_some());
    }
    assert!(
        !everything(&d).contains("SLACKSECRETPATH"),
        "a webhook URL is a secret: {}",
        everything(&d)
    );
}

// ---------------------------------------------------------------------
// SSRF guard

#[tokio::test]
async fn loopback_connectors_are_refused_without_allow_cidrs() {
    let recv = Receiver::start(|_| Reply::json(200, json!({}))).await;
    let cs = connectors(
        vec![
            slack("slack", recv.url("/slack")),
            meta("wa", recv.url("/v21.0")),
            waha("waha", recv.url("")),
            hook("crm", recv.url("/hook")),
        ],
        outbound(&[]),
    );
    for (via, out) in [
        ("slack", alert("x")),
        ("wa", text(CALLER, "x")),
        ("waha", text(CALLER, "x")),
        ("crm", alert("x")),
    ] {
        let d = deliver(&cs, request(Some(via), out, "run_18:0")).await;
        let e = err(&d);
        assert!(
            e.contains("refused") && e.contains("127.0.0.1") && e.contains("allow_cidrs"),
            "{via}: {e}"
        );
        assert!(d.attempts.is_empty(), "{via}: no attempt was made");
        assert_no_secrets("an SSRF error", &everything(&d));
    }
    // The http step too.
    let d = deliver(
        &cs,
        request(None, http_step("GET", &recv.url("/step")), "run_18:1"),
    )
    .await;
    assert!(err(&d).contains("allow_cidrs"));
    assert!(recv.hits().is_empty(), "{:#?}", recv.hits());
}

#[tokio::test]
async fn the_metadata_address_is_refused_before_any_connection_even_with_loopback_allowed() {
    let cs = connectors(
        vec![hook(
            "meta-data",
            "http://169.254.169.254/latest/meta-data/".into(),
        )],
        allow_loopback(),
    );
    let d = deliver(&cs, request(Some("meta-data"), alert("x"), "run_19:0")).await;
    let e = err(&d);
    assert!(
        e.contains("169.254.169.254") && e.contains("link-local"),
        "{e}"
    );
    assert!(d.attempts.is_empty(), "no attempt: {:?}", d.attempts);
    let d = deliver(
        &cs,
        request(
            None,
            http_step("GET", "http://169.254.169.254/latest/meta-data/iam/"),
            "run_19:1",
        ),
    )
    .await;
    assert!(err(&d).contains("link-local"));
    assert!(d.attempts.is_empty());
}

#[tokio::test]
async fn other_spellings_of_loopback_are_refused() {
    let recv = Receiver::start(|_| Reply::json(200, json!({}))).await;
    let port = recv.addr.port();
    let cs = connectors(vec![], outbound(&[]));
    for url in [
        format!("http://0x7f.0.0.1:{port}/hex"),
        format!("http://2130706433:{port}/decimal"),
        format!("http://[::ffff:127.0.0.1]:{port}/mapped"),
        format!("http://[::1]:{port}/v6"),
        format!("http://0.0.0.0:{port}/unspecified"),
    ] {
        let mut r = request(None, http_step("GET", &url), "run_20:0");
        r.retry = Some(Vec::new());
        let d = deliver(&cs, r).await;
        let e = err(&d);
        assert!(e.contains("refused"), "{url}: {e}");
    }
    let mut r = request(None, http_step("GET", "file:///etc/passwd"), "run_20:1");
    r.retry = Some(Vec::new());
    assert!(err(&deliver(&cs, r).await).contains("refused"));
    assert!(recv.hits().is_empty(), "{:#?}", recv.hits());
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
    let recv = Receiver::start(|_| Reply::json(200, json!({"id": "via-name"}))).await;
    let url = format!("http://localhost:{}/named", recv.addr.port());

    let cs = connectors(vec![hook("crm", url.clone())], outbound(&[]));
    let d = deliver(&cs, request(Some("crm"), alert("x"), "run_21:0")).await;
    let e = err(&d);
    assert!(
        e.contains("refused") && e.contains("loopback") && e.contains("allow_cidrs"),
        "{e}"
    );
    assert!(
        d.attempts.len() <= 1,
        "a refusal is final, not retried: {:?}",
        d.attempts
    );
    assert!(recv.hits().is_empty(), "{:#?}", recv.hits());

    let cs = connectors(vec![hook("crm", url)], allow_loopback());
    let d = deliver(&cs, request(Some("crm"), alert("x"), "run_21:1")).await;
    assert_eq!(ok(&d), json!({"status": 200, "id": "via-name"}));
    assert_eq!(recv.hits().len(), 1);
}

#[tokio::test]
async fn a_reload_that_drops_the_allow_list_refuses_from_then_on() {
    let recv = Receiver::start(|_| Reply::json(200, json!({}))).await;
    let list = vec![hook("crm", recv.url("/hook"))];
    let cs = connectors(list.clone(), allow_loopback());
    ok(&deliver(&cs, request(Some("crm"), alert("x"), "run_22:0")).await);
    cs.replace(
        list.into_iter().map(|c| (c.name.clone(), c)).collect(),
        &outbound(&[]),
    );
    let d = deliver(&cs, request(Some("crm"), alert("x"), "run_22:1")).await;
    assert!(err(&d).contains("allow_cidrs"));
    assert_eq!(recv.hits().len(), 1);
}

/// Each connector's URL is worked out when the configuration is loaded:
/// a reload that moves a connector must move its requests too.
#[tokio::test]
async fn a_reload_that_moves_a_connector_sends_to_its_new_url() {
    let recv =
        Receiver::start(|_| Reply::json(200, json!({"messages": [{"id": "wamid.R"}]}))).await;
    let cs = connectors(vec![meta("wa", recv.url("/v21.0"))], allow_loopback());
    ok(&deliver(&cs, request(Some("wa"), text(CALLER, "x"), "run_22b:0")).await);
    let moved = meta("wa", recv.url("/v22.0/"));
    cs.replace(
        [(moved.name.clone(), moved)].into_iter().collect(),
        &allow_loopback(),
    );
    ok(&deliver(&cs, request(Some("wa"), text(CALLER, "x"), "run_22b:1")).await);
    let paths: Vec<String> = recv.hits().iter().map(|h| h.path.clone()).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(
        paths[0].starts_with("/v21.0/") && paths[0].ends_with("/messages"),
        "{paths:?}"
    );
    assert!(
        paths[1].starts_with("/v22.0/") && paths[1].ends_with("/messages"),
        "{paths:?}"
    );
}

// ---------------------------------------------------------------------
// Secrets

#[tokio::test]

async fn secrets_echoed_by_a_receiver_are_not_kept_in_the_attempt_excerpt() {
    let recv = Receiver::start(|h| {
        let echoed: serde_json::Map<String, Value> = h
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Reply::json(401, json!({"error": "invalid token", "headers": echoed}))
    })
    .await;
    let mut crm = hook("crm", recv.url("/hook"));
    crm.headers
        .insert("Authorization".into(), Secret::new(CRM_HEADER));
    let cs = connectors(
        vec![
            meta("wa", recv.url("/v21.0")),
            waha("waha", recv.url("")),
            crm,
        ],
        allow_loopback(),
    );
    for (via, out) in [
        ("wa", text(CALLER, "x")),
        ("waha", text(CALLER, "x")),
        ("crm", alert("x")),
    ] {
        let d = deliver(&cs, request(Some(via), out, "run_23:0")).await;
        err(&d);
        assert_no_secrets(&format!("the {via} attempt record"), &everything(&d));
    }
}

// ---------------------------------------------------------------------
// Pacing and isolation

#[tokio::test]
async fn a_rate_limit_spreads_a_burst() {
    let recv = Receiver::start(|_| Reply::json(200, json!({}))).await;
    let c = ConnectorConfig {
        rate_limit: Some(20.0),
        ..slack("paced", recv.url("/paced"))
    };
    let cs = connectors(vec![c], allow_loopback());
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let cs = cs.clone();
            tokio::spawn(async move {
                deliver(
                    &cs,
                    request(
                        Some("paced"),
                        alert(&format!("n{i}")),
                        &format!("run_24:{i}"),
                    ),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        ok(&t.await.unwrap());
    }
    let hits = recv.hits();
    assert_eq!(hits.len(), 40);
    let first = hits.iter().map(|h| h.at).min().unwrap();
    let last = hits.iter().map(|h| h.at).max().unwrap();
    // 40 requests at 20/s: the last slot is 39/20 = 1.95 s after the first.
    assert!(
        last - first >= Duration::from_millis(1_850),
        "40 requests at 20/s arrived within {:?}",
        last - first
    );
}

#[tokio::test]
async fn a_dead_connector_does_not_hold_up_another_one() {
    let recv = Receiver::start(|h| match h.path.as_str() {
        "/dead" => Reply::Hang,
        _ => Reply::json(200, json!({"id": "alive"})),
    })
    .await;
    let dead = ConnectorConfig {
        timeout: Some(Duration::from_secs(90)),
        rate_limit: Some(1.0),
        ..hook("dead", recv.url("/dead"))
    };
    let live = ConnectorConfig {
        rate_limit: Some(1.0),
        ..hook("live", recv.url("/live"))
    };
    let cs = connectors(vec![dead, live], allow_loopback());
    let pending = {
        let cs = cs.clone();
        tokio::spawn(async move {
            cs.deliver(request(Some("dead"), alert("x"), "run_25:0"))
                .await
        })
    };
    // The dead one's request is at the receiver (same host and port).
    recv.wait_on("/dead", 1).await;
    let d = deliver(&cs, request(Some("live"), alert("y"), "run_25:1")).await;
    assert_eq!(ok(&d), json!({"status": 200, "id": "alive"}));
    assert!(
        !pending.is_finished(),
        "the dead connector's delivery should still be pending"
    );
    pending.abort();
}

// ---------------------------------------------------------------------
// End to end: the real server, a Wazzap event, a workflow

const E2E_SOURCES: &str = r#"
sources:
  wazzap:
    provider: wazzap
    business: "+5215500000000"
"#;

fn wazzap_missed(second: u32) -> String {
    json!({
        "event": "call.missed",
        "phone": CALLER,
        "country": "MX",
        "ts": format!("2026-05-14T14:32:{second:02}Z"),
    })
    .to_string()
}

fn wazzap_incoming(second: u32) -> String {
    json!({
        "event": "call.incoming",
        "phone": CALLER,
        "country": "MX",
        "ts": format!("2026-05-14T14:33:{second:02}Z"),
    })
    .to_string()
}

async fn post_event(s: &TestServer, body: String) {
    let a = s.post("wazzap", body, &[]).await;
    assert_eq!(a.status, 202, "{}", a.text);
}

/// Poll until exactly one run of `workflow` has finished; its full record
/// and the raw JSON text GET /api/executions/{id} served.
async fn finished_run(s: &TestServer, workflow: &str) -> (Value, String) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let list = s.get(&format!("/api/executions?workflow={workflow}")).await;
        assert_eq!(list.status, 200, "{}", list.text);
        let list = list.json();
        let runs = list["executions"].as_array().expect("executions").clone();
        let done: Vec<&Value> = runs
            .iter()
            .filter(|r| !matches!(r["status"].as_str(), Some("running" | "waiting")))
            .collect();
        if let Some(run) = done.first() {
            assert_eq!(runs.len(), 1, "one run of {workflow}: {runs:#?}");
            let id = run["id"].as_str().expect("run id");
            let a = s.get(&format!("/api/executions/{id}")).await;
            assert_eq!(a.status, 200, "{}", a.text);
            return (a.json(), a.text);
        }
        assert!(
            Instant::now() < deadline,
            "no finished run of {workflow}: {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn step_named<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|st| st["id"] == json!(id))
        .unwrap_or_else(|| panic!("no step `{id}` in {run:#}"))
}

fn step_attempts(step: &Value) -> Vec<Value> {
    step["attempts"].as_array().cloned().unwrap_or_default()
}

fn idem(run: &Value, step: &Value) -> String {
    format!(
        "{}:{}",
        run["id"].as_str().unwrap(),
        step["path"].as_str().unwrap()
    )
}

async fn start_server(config: &str, workflows: &[(&str, String)]) -> TestServer {
    let files: Vec<(&str, &str)> = workflows.iter().map(|(n, t)| (*n, t.as_str())).collect();
    TestServer::start_with_workflows(config, &[], &files).await
}

const KINDS_CONNECTORS: &str = r#"
connectors:
  meta:
    kind: meta
    phone_number_id: "106540352242922"
    token: EAAG-meta-secret-token-1234
    base_url: RECV/graph/v21.0
    retry: { schedule: [] }
  waha:
    kind: waha
    base_url: RECV/waha
    session: sales
    api_key: waha-secret-api-key-5678
    retry: { schedule: [] }
  slack:
    kind: slack
    url: RECV/slack/T000/B000
    retry: { schedule: [] }
  hook:
    kind: http
    url: RECV/hook
    headers:
      X-Crm-Key: crm-secret-header-9012
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    retry: { schedule: [] }
outbound:
  allow_cidrs: [127.0.0.1/32]
  timeout: 5s
"#;

const KINDS_WORKFLOW: &str = r#"
name: kinds
on:
  events: [call.missed]
steps:
  - id: text
    send_message: { via: meta, to: "{{event.caller}}", text: "Hi {{event.caller}}, sorry we missed your call" }
  - id: tpl
    send_message:
      via: meta
      to: "{{event.caller}}"
      template: { name: missed_call, language: es_MX, params: ["{{event.country}}", "mañana"] }
  - id: waha
    send_message: { via: waha, to: "{{event.caller}}", text: "Hola desde WAHA" }
  - id: slack
    alert: { via: slack, text: "Missed call from {{event.caller}}" }
  - id: fwd
    forward: { via: hook }
  - id: hook_alert
    alert: { via: hook, text: "VIP {{event.caller}}" }
  - id: hook_msg
    send_message: { via: hook, to: "{{event.caller}}", text: "Hello" }
"#;

#[tokio::test]
async fn e2e_a_missed_call_reaches_every_connector_kind_with_documented_shapes() {
    let recv = Receiver::start(|h| {
        if h.path.starts_with("/graph/") {
            Reply::meta_ok(&format!("wamid.X{}", h.nth))
        } else if h.path.starts_with("/waha/") {
            Reply::waha_ok("true_5215587654321@c.us_ABC")
        } else if h.path.starts_with("/slack/") {
            Reply::text(200, "ok")
        } else {
            Reply::json(200, json!({"received": true}))
        }
    })
    .await;
    let config = format!("{E2E_SOURCES}{KINDS_CONNECTORS}").replace("RECV", &recv.url(""));
    let s = start_server(&config, &[("kinds.yaml", KINDS_WORKFLOW.to_string())]).await;
    post_event(&s, wazzap_missed(11)).await;
    let (run, raw) = finished_run(&s, "kinds").await;
    assert_eq!(run["status"], json!("succeeded"), "{run:#}");

    let hits = recv.hits();
    assert_eq!(hits.len(), 7, "{hits:#?}");
    let order = [
        "text",
        "tpl",
        "waha",
        "slack",
        "fwd",
        "hook_alert",
        "hook_msg",
    ];
    for (h, id) in hits.iter().zip(order) {
        let st = step_named(&run, id);
        assert_eq!(st["status"], json!("succeeded"), "{st:#}");
        assert_eq!(h.key(), idem(&run, st), "Idempotency-Key of step {id}");
        assert_eq!(h.method, "POST");
        let attempts = step_attempts(st);
        assert_eq!(attempts.len(), 1, "{st:#}");
        assert_eq!(attempts[0]["status"], json!(200));
        assert!(attempts[0]["latency_ms"].as_f64().is_some(), "{st:#}");
        assert!(attempts[0]["at"].as_str().is_some(), "{st:#}");
    }
    let keys: std::collections::BTreeSet<&str> = hits.iter().map(Hit::key).collect();
    assert_eq!(keys.len(), 7, "one key per step");

    // meta: text and template
    let (h, st) = (&hits[0], step_named(&run, "text"));
    assert_eq!(h.path, format!("/graph/v21.0/{PHONE_NUMBER_ID}/messages"));
    assert_eq!(
        h.header("authorization"),
        Some(format!("Bearer {META_TOKEN}").as_str())
    );
    let body = h.json();
    assert_eq!(body["messaging_product"], json!("whatsapp"));
    assert_eq!(body["to"], json!(CALLER_DIGITS));
    assert_eq!(body["type"], json!("text"));
    assert_eq!(
        body["text"]["body"],
        json!(format!("Hi {CALLER}, sorry we missed your call"))
    );
    assert_eq!(st["output"], json!({"status": 200, "id": "wamid.X0"}));
    let (h, st) = (&hits[1], step_named(&run, "tpl"));
    let body = h.json();
    assert_eq!(body["type"], json!("template"));
    assert_eq!(body["to"], json!(CALLER_DIGITS));
    assert_eq!(body["template"]["name"], json!("missed_call"));
    assert_eq!(body["template"]["language"], json!({"code": "es_MX"}));
    assert_eq!(
        body["template"]["components"][0]["parameters"],
        json!([{"type": "text", "text": "MX"}, {"type": "text", "text": "mañana"}])
    );
    assert_eq!(st["output"], json!({"status": 200, "id": "wamid.X1"}));

    // waha
    let (h, st) = (&hits[2], step_named(&run, "waha"));
    assert_eq!(h.path, "/waha/api/sendText");
    assert_eq!(h.header("x-api-key"), Some(WAHA_KEY));
    assert_eq!(
        h.json(),
        json!({"session": "sales", "chatId": format!("{CALLER_DIGITS}@c.us"), "text": "Hola desde WAHA"})
    );
    assert_eq!(
        st["output"],
        json!({"status": 200, "id": "true_5215587654321@c.us_ABC"})
    );

    // slack
    let (h, st) = (&hits[3], step_named(&run, "slack"));
    assert_eq!(h.path, "/slack/T000/B000");
    assert_eq!(
        h.json(),
        json!({"text": format!("Missed call from {CALLER}")})
    );
    assert_eq!(st["output"], json!({"status": 200}));

    // http: forward = the canonical event, as the execution recorded it
    let h = &hits[4];
    assert_eq!(h.path, "/hook");
    let forwarded = h.json();
    assert_eq!(forwarded, run["event"], "forward posts the §4 event");
    assert_eq!(forwarded["kind"], json!("call.missed"));
    assert!(
        forwarded["raw"].is_object(),
        "the payload too, though no template reads it: {forwarded}"
    );
    assert_eq!(forwarded["caller"], json!(CALLER));
    assert_eq!(hits[5].json(), json!({"text": format!("VIP {CALLER}")}));
    assert_eq!(hits[6].json(), json!({"to": CALLER, "text": "Hello"}));
    for h in &hits[4..] {
        assert_eq!(h.header("x-crm-key"), Some(CRM_HEADER));
        assert_eq!(h.header("webhook-id"), Some(h.key()));
        h.verify_standard(WHSEC)
            .unwrap_or_else(|e| panic!("{}: {e}", h.path));
    }

    assert_no_secrets("GET /api/executions/{id}", &raw);
    let list = s.get("/api/executions").await;
    assert_no_secrets("GET /api/executions", &list.text);
    let wfs = s.get("/api/workflows").await;
    assert_no_secrets("GET /api/workflows", &wfs.text);
}

const FAILURES_CONNECTORS: &str = r#"
connectors:
  flaky: { kind: http, url: RECV/flaky, retry: { schedule: [10m] }, headers: { Authorization: "Bearer crm-secret-header-9012" } }
  bad: { kind: http, url: RECV/bad, retry: { schedule: [50ms, 50ms] } }
  slow: { kind: http, url: RECV/slow, timeout: 200ms, retry: { schedule: [] } }
  moved: { kind: http, url: RECV/moved, retry: { schedule: [50ms] } }
  down: { kind: http, url: RECV/down, retry: { schedule: [50ms, 50ms] }, secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw }
  limited: { kind: meta, phone_number_id: "106540352242922", token: EAAG-meta-secret-token-1234, base_url: RECV/limited, retry: { schedule: [50ms] } }
outbound:
  allow_cidrs: [127.0.0.1/32]
"#;

const FAILURES_WORKFLOW: &str = r#"
name: failures
on:
  events: [call.missed]
steps:
  - id: flaky
    alert: { via: flaky, text: "one" }
    retry: { schedule: [50ms, 50ms] }
  - id: bad
    alert: { via: bad, text: "two" }
    on_error: continue
  - id: slow
    alert: { via: slow, text: "three" }
    on_error: continue
  - id: moved
    alert: { via: moved, text: "four" }
    on_error: continue
  - id: down
    alert: { via: down, text: "five" }
    on_error: continue
  - id: limited
    send_message: { via: limited, to: "{{event.caller}}", text: "six" }
  - id: last
    alert: { via: bad, text: "last" }
  - id: never
    alert: { via: flaky, text: "not reached" }
"#;

#[tokio::test]
async fn e2e_every_attempt_is_recorded_with_status_or_error_latency_and_excerpt() {
    let elsewhere = Receiver::start(|_| Reply::json(200, json!({}))).await;
    let location = elsewhere.url("/elsewhere");
    let recv = Receiver::start(move |h| match (h.path.as_str(), h.nth) {
        ("/flaky", 0) => Reply::text(500, "upstream hiccup"),
        ("/flaky", _) => Reply::json(200, json!({"id": "crm-1"})),
        ("/bad", _) => Reply::json(400, json!({"error": "text too long"})),
        ("/slow", _) => Reply::After(
            Duration::from_secs(2),
            Box::new(Reply::json(200, json!({}))),
        ),
        ("/moved", _) => Reply::text(302, "see other").header("Location", &location),
        ("/down", _) => Reply::Plain(503, Vec::new(), vec![b'E'; 100_000]),
        (_, 0) => Reply::json(429, json!({"error": "rate"})).header("Retry-After", "1"),
        _ => Reply::meta_ok("wamid.LIMITED"),
    })
    .await;
    let config = format!("{E2E_SOURCES}{FAILURES_CONNECTORS}").replace("RECV", &recv.url(""));
    let s = start_server(&config, &[("failures.yaml", FAILURES_WORKFLOW.to_string())]).await;
    post_event(&s, wazzap_missed(12)).await;
    let (run, raw) = finished_run(&s, "failures").await;

    assert_eq!(run["status"], json!("failed"), "{run:#}");
    let run_error = run["error"].as_str().unwrap_or("");
    assert!(run_error.contains("400"), "{run_error}");

    // 500 then 200 on the step's own short schedule, one key throughout.
    let st = step_named(&run, "flaky");
    assert_eq!(st["status"], json!("succeeded"), "{st:#}");
    assert_eq!(st["output"], json!({"status": 200, "id": "crm-1"}));
    let at = step_attempts(st);
    assert_eq!(at.len(), 2, "{st:#}");
    assert_eq!(at[0]["status"], json!(500));
    assert_eq!(at[0]["error"], json!("HTTP 500"));
    assert_eq!(at[0]["response"], json!("upstream hiccup"));
    assert_eq!(at[1]["status"], json!(200));
    assert!(at[1].get("error").is_none(), "{st:#}");
    for a in &at {
        assert!(a["latency_ms"].as_f64().unwrap() >= 0.0);
        assert!(a["at"].as_str().unwrap().parse::<Timestamp>().is_ok());
    }
    let flaky = recv.hits_on("/flaky");
    assert_eq!(flaky.len(), 2, "the step after the failure never ran");
    assert!(flaky.iter().all(|h| h.key() == idem(&run, st)));

    // 400: one attempt, the receiver's answer kept.
    let st = step_named(&run, "bad");
    assert_eq!(st["status"], json!("failed"));
    assert!(st["error"].as_str().unwrap().contains("400"), "{st:#}");
    let at = step_attempts(st);
    assert_eq!(at.len(), 1, "{st:#}");
    assert_eq!(at[0]["status"], json!(400));
    assert!(at[0]["response"]
        .as_str()
        .unwrap()
        .contains("text too long"));

    // Timeout: an error, no status.
    let st = step_named(&run, "slow");
    assert_eq!(st["status"], json!("failed"));
    let at = step_attempts(st);
    assert_eq!(at.len(), 1, "{st:#}");
    assert!(at[0].get("status").is_none(), "{st:#}");
    assert!(
        at[0]["error"].as_str().unwrap().contains("timed out"),
        "{st:#}"
    );
    assert!(at[0]["latency_ms"].as_f64().unwrap() >= 150.0, "{st:#}");
    assert!(st["error"].as_str().unwrap().contains("timed out"));

    // Redirect: failed, one attempt, the target never hit.
    let st = step_named(&run, "moved");
    assert_eq!(st["status"], json!("failed"));
    assert!(st["error"].as_str().unwrap().contains("redirect"), "{st:#}");
    assert_eq!(step_attempts(st).len(), 1);
    assert_eq!(step_attempts(st)[0]["status"], json!(302));
    assert!(elsewhere.hits().is_empty(), "{:#?}", elsewhere.hits());

    // 503 past the schedule: schedule.len() + 1 attempts, excerpts capped.
    let st = step_named(&run, "down");
    assert_eq!(st["status"], json!("failed"));
    let at = step_attempts(st);
    assert_eq!(at.len(), 3, "{st:#}");
    for a in &at {
        assert_eq!(a["status"], json!(503));
        let excerpt = a["response"].as_str().unwrap();
        assert!(!excerpt.is_empty() && excerpt.chars().count() <= 512);
    }
    assert_eq!(recv.hits_on("/down").len(), 3);

    // 429 + Retry-After: 1 → the retry at least a second later.
    let st = step_named(&run, "limited");
    assert_eq!(st["status"], json!("succeeded"), "{st:#}");
    assert_eq!(st["output"], json!({"status": 200, "id": "wamid.LIMITED"}));
    let at = step_attempts(st);
    assert_eq!(at.len(), 2);
    assert_eq!(at[0]["status"], json!(429));
    let limited = recv.hits_on(&format!("/limited/{PHONE_NUMBER_ID}/messages"));
    assert_eq!(limited.len(), 2);
    assert!(limited[1].at - limited[0].at >= Duration::from_millis(990));
    assert_eq!(limited[0].key(), limited[1].key());

    // The failing last step ended the run; the one after never ran.
    assert_eq!(step_named(&run, "last")["status"], json!("failed"));
    assert!(run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|st| st["id"] != json!("never")));

    assert_no_secrets("GET /api/executions/{id}", &raw);
}

const SSRF_WORKFLOW: &str = r#"
name: ssrf
on:
  events: [call.missed]
steps:
  - set: { target: "RECV/templated", meta_ip: "169.254.169.254", host: localhost }
  - id: alert
    alert: { via: slack, text: "hi" }
    on_error: continue
  - id: rendered
    http: { method: POST, url: "{{vars.target}}", json: { caller: "{{event.caller}}" } }
    retry: { schedule: [] }
    on_error: continue
  - id: metadata
    http: { method: GET, url: "http://{{vars.meta_ip}}/latest/meta-data/" }
    retry: { schedule: [] }
    on_error: continue
  - id: named
    http: { method: GET, url: "http://{{vars.host}}:PORT/named" }
    retry: { schedule: [] }
    on_error: continue
"#;

#[tokio::test]
async fn e2e_without_allow_cidrs_nothing_reaches_loopback_or_metadata() {
    let recv = Receiver::start(|_| Reply::json(200, json!({"ok": true}))).await;
    let config = format!(
        "{E2E_SOURCES}connectors:\n  slack: {{ kind: slack, url: \"RECV/slack\", retry: {{ schedule: [] }} }}\n"
    )
    .replace("RECV", &recv.url(""));
    let wf = SSRF_WORKFLOW
        .replace("RECV", &recv.url(""))
        .replace("PORT", &recv.addr.port().to_string());
    let s = start_server(&config, &[("ssrf.yaml", wf)]).await;
    post_event(&s, wazzap_missed(13)).await;
    let (run, _) = finished_run(&s, "ssrf").await;

    for id in ["alert", "rendered", "metadata", "named"] {
        let st = step_named(&run, id);
        assert_eq!(st["status"], json!("failed"), "{st:#}");
        let e = st["error"].as_str().unwrap_or("");
        assert!(
            e.contains("refused") && e.contains("allow_cidrs"),
            "step {id}: {e}"
        );
    }
    assert!(step_named(&run, "metadata")["error"]
        .as_str()
        .unwrap()
        .contains("link-local"));
    assert_eq!(
        step_named(&run, "rendered")["input"]["url"],
        json!(recv.url("/templated")),
        "the URL was rendered, then checked"
    );
    assert!(recv.hits().is_empty(), "{:#?}", recv.hits());
}

#[tokio::test]
async fn e2e_with_loopback_allowed_a_rendered_url_is_reached_but_metadata_is_not() {
    let recv = Receiver::start(|h| match h.path.as_str() {
        "/templated" => Reply::json(200, json!({"echo": String::from_utf8_lossy(&h.body)})),
        _ => Reply::text(200, "hello"),
    })
    .await;
    let config = format!(
        "{E2E_SOURCES}connectors:\n  slack: {{ kind: slack, url: \"RECV/slack\", retry: {{ schedule: [] }} }}\noutbound:\n  allow_cidrs: [127.0.0.1/32]\n"
    )
    .replace("RECV", &recv.url(""));
    let wf = SSRF_WORKFLOW
        .replace("RECV", &recv.url(""))
        .replace("PORT", &recv.addr.port().to_string());
    let s = start_server(&config, &[("ssrf.yaml", wf)]).await;
    post_event(&s, wazzap_missed(14)).await;
    let (run, _) = finished_run(&s, "ssrf").await;

    for id in ["alert", "rendered", "named"] {
        let st = step_named(&run, id);
        assert_eq!(st["status"], json!("succeeded"), "{st:#}");
    }
    let st = step_named(&run, "rendered");
    let sent = recv.hits_on("/templated");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].json(), json!({"caller": CALLER}));
    assert_eq!(sent[0].key(), idem(&run, st));
    assert_eq!(st["output"]["status"], json!(200));
    assert_eq!(
        st["output"]["body"]["echo"],
        json!(json!({"caller": CALLER}).to_string())
    );
    assert_eq!(
        step_named(&run, "named")["output"],
        json!({"status": 200, "body": "hello"})
    );
    let st = step_named(&run, "metadata");
    assert_eq!(st["status"], json!("failed"));
    assert!(
        st["error"].as_str().unwrap().contains("link-local"),
        "{st:#}"
    );
    assert_eq!(recv.hits().len(), 3, "{:#?}", recv.hits());
}

const DEAD_CONNECTORS: &str = r#"
connectors:
  dead: { kind: slack, url: RECV/dead, timeout: 90s, retry: { schedule: [] } }
  live: { kind: slack, url: RECV/live, retry: { schedule: [] } }
outbound:
  allow_cidrs: [127.0.0.1/32]
"#;

const DEAD_WORKFLOW: &str = r#"
name: to-the-dead
on:
  events: [call.incoming]
steps:
  - alert: { via: dead, text: "ringing" }
"#;

const LIVE_WORKFLOW: &str = r#"
name: to-the-living
on:
  events: [call.missed]
steps:
  - id: tell
    alert: { via: live, text: "missed" }
"#;

#[tokio::test]
async fn e2e_a_dead_connector_does_not_delay_runs_through_another() {
    let recv = Receiver::start(|h| match h.path.as_str() {
        "/dead" => Reply::Hang,
        _ => Reply::text(200, "ok"),
    })
    .await;
    let config = format!("{E2E_SOURCES}{DEAD_CONNECTORS}").replace("RECV", &recv.url(""));
    let s = start_server(
        &config,
        &[
            ("dead.yaml", DEAD_WORKFLOW.to_string()),
            ("live.yaml", LIVE_WORKFLOW.to_string()),
        ],
    )
    .await;
    post_event(&s, wazzap_incoming(1)).await;
    recv.wait_on("/dead", 1).await;
    post_event(&s, wazzap_missed(2)).await;
    let (run, _) = finished_run(&s, "to-the-living").await;
    assert_eq!(run["status"], json!("succeeded"), "{run:#}");
    assert_eq!(recv.hits_on("/live").len(), 1);
    // A run stuck on a connector shows in the journal once its send has
    // taken longer than SLOW_SEND.
    let deadline = Instant::now() + PATIENCE;
    let dead = loop {
        let page = s.get("/api/executions?workflow=to-the-dead").await.json();
        let dead = page["executions"].as_array().unwrap().clone();
        if !dead.is_empty() || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(ringback::engine::SLOW_SEND / 4).await;
    };
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(
        dead[0]["status"],
        json!("running"),
        "the dead connector's run is still pending"
    );
    // Not stopped: the dead run is in flight; the runtime ends with the test.
    drop(s);
}
