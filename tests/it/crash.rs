//! Nothing lost: kill -9 in the middle of a load, durable waits and debounce
//! windows across a restart. These run the built binary.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;

const BIN: &str = env!("CARGO_BIN_EXE_ringback");

/// A local WhatsApp-API stand-in that counts requests per idempotency key.
#[derive(Clone, Default)]
struct Receiver {
    keys: Arc<Mutex<HashMap<String, usize>>>,
    /// Answer 503 to the first this-many requests of each key.
    fail_first: usize,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        Receiver::start_failing_first(0).await
    }

    async fn start_failing_first(fail_first: usize) -> (Receiver, String) {
        let receiver = Receiver {
            fail_first,
            ..Receiver::default()
        };
        let r = receiver.clone();
        let app = Router::new().route(
            "/{phone_id}/messages",
            post(move |headers: HeaderMap| {
                let r = r.clone();
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let n = {
                        let mut keys = r.keys.lock().unwrap();
                        let n = keys.entry(key).or_insert(0);
                        *n += 1;
                        *n
                    };
                    if n <= r.fail_first {
                        return (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            axum::Json(serde_json::json!({"error": "busy"})),
                        );
                    }
                    (
                        axum::http::StatusCode::OK,
                        axum::Json(serde_json::json!({"messages": [{"id": "wamid.test"}]})),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, format!("http://{addr}"))
    }

    fn snapshot(&self) -> HashMap<String, usize> {
        self.keys.lock().unwrap().clone()
    }
}

fn config(receiver: &str, port: u16) -> String {
    format!(
        r#"
listen: 127.0.0.1:{port}
sources:
  wazzap:
    provider: wazzap
    business: "+5215500000000"
  waha:
    provider: waha
    ring_timeout: 1s
connectors:
  whatsapp:
    kind: meta
    phone_number_id: "1065"
    token: test-token
    base_url: {receiver}
    retry: {{ schedule: [200ms, 500ms, 1s, 2s, 5s] }}
outbound:
  allow_cidrs: [127.0.0.1/32]
"#
    )
}

const FOLLOWUP: &str = r#"
name: followup
on: { events: [call.missed] }
steps:
  - upsert_contact: { phone: "{{event.caller}}" }
  - tag: { phone: "{{event.caller}}", add: [missed] }
  - send_message: { via: whatsapp, to: "{{event.caller}}", text: "Sorry we missed you" }
"#;

struct Server {
    child: Child,
    base: String,
}

/// A test that fails half way must not leave its server running (one such
/// server was found still serving an hour and a half later).
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A server folder: `ringback.yaml` for the receiver at `url` on a free
/// port, and one workflow file.
fn folder(url: &str, file: &str, workflow: &str) -> (tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    std::fs::write(dir.path().join("ringback.yaml"), config(url, port)).unwrap();
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::write(dir.path().join("workflows").join(file), workflow).unwrap();
    (dir, port)
}

async fn start(dir: &Path, port: u16) -> Server {
    let child = Command::new(BIN)
        .current_dir(dir)
        .args(["serve"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ringback");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child, base }
}

fn kill9(server: &mut Server) {
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

fn sigterm(server: &mut Server) {
    let ok = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status} on SIGTERM");
            return;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn missed(i: usize) -> String {
    format!(
        r#"{{"event":"call.missed","phone":"+52155{i:08}","country":"MX","ts":"2026-05-14T14:32:11Z"}}"#
    )
}

/// Post the events numbered `items` from `clients` concurrent clients;
/// returns, for each that got a 2xx, its number and (for a 202) its event
/// id. Stops a client at its first connection error.
async fn post_all(
    base: &str,
    items: impl IntoIterator<Item = usize>,
    clients: usize,
) -> Vec<(usize, Option<String>)> {
    post_all_counting(base, items, clients, Arc::default()).await
}

/// [`post_all`], counting the 2xx answers in `answered` as they come.
async fn post_all_counting(
    base: &str,
    items: impl IntoIterator<Item = usize>,
    clients: usize,
    answered: Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<(usize, Option<String>)> {
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let items: Vec<usize> = items.into_iter().collect();
    let chunk = items.len().div_ceil(clients);
    let mut tasks = Vec::new();
    for part in items.chunks(chunk.max(1)) {
        let part = part.to_vec();
        let url = format!("{base}/hooks/wazzap");
        let accepted = accepted.clone();
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in part {
                match client.post(&url).body(missed(i)).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        let v: serde_json::Value = resp.json().await.unwrap_or_default();
                        let id = v["events"][0].as_str().map(str::to_string);
                        accepted.lock().unwrap().push((i, id));
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(resp) => panic!("unexpected status {}", resp.status()),
                    Err(_) => return,
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(accepted).unwrap().into_inner().unwrap()
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_event_gets_its_follow_up_across_a_kill_9() {
    let (receiver, url) = Receiver::start().await;
    let (dir, port) = folder(&url, "followup.yaml", FOLLOWUP);
    let mut server = start(dir.path(), port).await;
    // Kill at a moment that depends on the run: somewhere in the load,
    // counted from the first answer (a busy machine can take longer than
    // any fixed delay to answer at all).
    let kill_after = Duration::from_millis(std::process::id() as u64 % 700);
    let base = server.base.clone();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = tokio::spawn({
        let answered = answered.clone();
        async move { post_all_counting(&base, 0..3000, 8, answered).await }
    });
    wait_until("a first answer", Duration::from_secs(30), || {
        answered.load(std::sync::atomic::Ordering::Relaxed) > 0
    })
    .await;
    tokio::time::sleep(kill_after).await;
    kill9(&mut server);
    let mut acked = load.await.unwrap();
    let before_restart = acked.len();

    let mut server = start(dir.path(), port).await;
    // Like a provider, retry every event that got no 2xx (some were stored
    // but their answer was cut by the kill: those come back as duplicates),
    // and keep sending new ones.
    let done: std::collections::HashSet<usize> = acked.iter().map(|(i, _)| *i).collect();
    let retry: Vec<usize> = (0..3000).filter(|i| !done.contains(i)).collect();
    acked.extend(post_all(&server.base, retry.into_iter().chain(3000..3500), 8).await);
    let acked_numbers: std::collections::HashSet<usize> = acked.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        acked_numbers.len(),
        3500,
        "every event ends up acknowledged"
    );
    let expected: Vec<String> = acked
        .iter()
        .filter_map(|(_, id)| id.as_ref())
        .map(|id| format!("{}:2", ringback::store::run_id(id, "followup")))
        .collect();
    wait_until(
        "a follow-up for every accepted event",
        Duration::from_secs(90),
        || {
            let got = receiver.snapshot();
            expected.iter().all(|k| got.contains_key(k)) && got.len() >= acked_numbers.len()
        },
    )
    .await;
    sigterm(&mut server);

    let got = receiver.snapshot();
    let distinct = got.len();
    let repeated: Vec<(&String, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "acknowledged {} ({} before the kill), follow-ups {distinct}, keys sent twice: {}",
        acked_numbers.len(),
        before_restart,
        repeated.len()
    );
    assert!(
        before_restart > 0,
        "the kill came before any event was accepted"
    );
    assert_eq!(
        distinct,
        acked_numbers.len(),
        "one follow-up per accepted event, no more, no fewer"
    );
    for (key, n) in &repeated {
        assert!(
            **n <= 2,
            "{key} was sent {n} times: only a request in flight at the kill may repeat"
        );
    }
}

async fn executions(base: &str, query: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = reqwest::get(format!("{base}/api/executions?{query}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["executions"].as_array().cloned().unwrap_or_default()
}

/// The runs of `workflow`, once the newest of them waits; fails naming
/// `what` after 10 s.
async fn until_newest_run_waits(base: &str, workflow: &str, what: &str) {
    let query = format!("workflow={workflow}");
    executions_when(base, &query, what, |runs| {
        runs.first().is_some_and(|r| r["status"] == "waiting")
    })
    .await;
}

/// The runs `query` lists, once `done` accepts them; fails naming `what`
/// after 10 s.
async fn executions_when(
    base: &str,
    query: &str,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let runs = executions(base, query).await;
        if done(&runs) {
            return runs;
        }
        assert!(Instant::now() < deadline, "{what}: {runs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_interrupted_by_kill_9_still_ends_in_its_next_step() {
    let (receiver, url) = Receiver::start().await;
    let (dir, port) = folder(
        &url,
        "later.yaml",
        r#"
name: later
on: { events: [call.missed] }
steps:
  - wait: { for: 3s }
  - send_message: { via: whatsapp, to: "{{event.caller}}", text: "Still there?" }
"#,
    );
    let mut server = start(dir.path(), port).await;
    let accepted: Vec<String> = post_all(&server.base, 0..1, 1)
        .await
        .into_iter()
        .filter_map(|(_, id)| id)
        .collect();
    assert_eq!(accepted.len(), 1);
    until_newest_run_waits(&server.base, "later", "the run never reached its wait").await;
    kill9(&mut server);
    assert!(
        receiver.snapshot().is_empty(),
        "nothing is sent before the wait ends"
    );

    let mut server = start(dir.path(), port).await;
    let key = format!("{}:1", ringback::store::run_id(&accepted[0], "later"));
    wait_until("the step after the wait", Duration::from_secs(20), || {
        receiver.snapshot().contains_key(&key)
    })
    .await;
    // The run writes its final record just after the receiver answers:
    // look until it is there.
    executions_when(
        &server.base,
        "workflow=later",
        "the run did not finish after its send",
        |runs| {
            assert_eq!(runs.len(), 1);
            runs[0]["status"] == "succeeded"
        },
    )
    .await;
    sigterm(&mut server);
    assert_eq!(receiver.snapshot().get(&key), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounce_window_survives_a_restart() {
    let (receiver, url) = Receiver::start().await;
    let (dir, port) = folder(
        &url,
        "once.yaml",
        r#"
name: once
on: { events: [call.missed] }
steps:
  - debounce: { key: "{{event.caller}}", for: 10m }
  - send_message: { via: whatsapp, to: "{{event.caller}}", text: "Once per 10 minutes" }
"#,
    );
    let mut server = start(dir.path(), port).await;
    let first = r#"{"event":"call.missed","phone":"+5215512345678","ts":"2026-05-14T14:32:11Z"}"#;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/hooks/wazzap", server.base))
        .body(first)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    wait_until("the first message", Duration::from_secs(10), || {
        receiver.snapshot().len() == 1
    })
    .await;
    kill9(&mut server);

    let mut server = start(dir.path(), port).await;
    let second = first.replace("14:32:11", "14:35:00");
    let r = client
        .post(format!("{}/hooks/wazzap", server.base))
        .body(second)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    executions_when(
        &server.base,
        "workflow=once&status=debounced",
        "the second call was not debounced",
        |runs| runs.len() == 1,
    )
    .await;
    sigterm(&mut server);
    assert_eq!(
        receiver.snapshot().len(),
        1,
        "one message for two calls within the window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_scheduled_ahead_survives_kill_9_and_keeps_its_idempotency_key() {
    // The first attempt gets a 503; the next is scheduled 3 s ahead, which
    // the run waits for on a durable timer, not in memory.
    let (receiver, url) = Receiver::start_failing_first(1).await;
    let (dir, port) = folder(&url, "followup.yaml", FOLLOWUP);
    let cfg =
        config(&url, port).replace("schedule: [200ms, 500ms, 1s, 2s, 5s]", "schedule: [3s, 3s]");
    std::fs::write(dir.path().join("ringback.yaml"), cfg).unwrap();
    let mut server = start(dir.path(), port).await;
    let accepted: Vec<String> = post_all(&server.base, 0..1, 1)
        .await
        .into_iter()
        .filter_map(|(_, id)| id)
        .collect();
    let key = format!("{}:2", ringback::store::run_id(&accepted[0], "followup"));
    wait_until("the first, failed attempt", Duration::from_secs(10), || {
        receiver.snapshot().get(&key) == Some(&1)
    })
    .await;
    until_newest_run_waits(
        &server.base,
        "followup",
        "the run did not pause for its retry",
    )
    .await;
    // The API shows the pause as soon as it is written; its flush follows
    // (and sled flushes on its own every 500 ms). A kill in between would
    // lose the first attempt's record (the resend keeps its key), and this
    // test checks the attempt history, so it kills after the flush.
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill9(&mut server);

    let mut server = start(dir.path(), port).await;
    wait_until(
        "the retry after the restart",
        Duration::from_secs(20),
        || receiver.snapshot().get(&key) == Some(&2),
    )
    .await;
    let base = server.base.clone();
    let run = executions_when(
        &base,
        "workflow=followup",
        "the run did not finish after its retry",
        |runs| runs.first().is_some_and(|r| r["status"] == "succeeded"),
    )
    .await
    .remove(0);
    let detail: serde_json::Value = reqwest::get(format!(
        "{base}/api/executions/{}",
        run["id"].as_str().unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let send = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "send_message")
        .unwrap()
        .clone();
    let attempts = send["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{send:#}");
    assert_eq!(attempts[0]["status"], 503);
    assert_eq!(attempts[1]["status"], 200);
    sigterm(&mut server);
    assert_eq!(
        receiver.snapshot().len(),
        1,
        "one idempotency key for the whole step"
    );
}
