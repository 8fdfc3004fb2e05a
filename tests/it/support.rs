//! Start the real server in-process on 127.0.0.1:0 and talk to it over HTTP;
//! pick ports for the tests that run the built binary.

use std::collections::HashMap;
use std::net::SocketAddr;

use ringback::clock;
use ringback::config::{Config, Overrides};
use ringback::store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Store,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ringback::app::AppError>>>,
    _tmp: tempfile::TempDir,
}

impl TestServer {
    /// Start with this `ringback.yaml` text; `${VAR}`s come from `env`.
    pub async fn start(config_yaml: &str, env: &[(&str, &str)]) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        Self::start_in(tmp, config_yaml, env).await
    }

    /// Like [`TestServer::start`], with these workflow files (file name,
    /// text) written into the workflows folder before the server starts.
    /// The folder exists (possibly empty) while the server runs; see
    /// [`TestServer::workflows_dir`].
    pub async fn start_with_workflows(
        config_yaml: &str,
        env: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("workflows");
        std::fs::create_dir_all(&dir).expect("create the workflows folder");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write a workflow file");
        }
        Self::start_in(tmp, config_yaml, env).await
    }

    /// The running server's workflows folder (hot reload watches it).
    pub fn workflows_dir(&self) -> std::path::PathBuf {
        self._tmp.path().join("workflows")
    }

    async fn start_in(
        tmp: tempfile::TempDir,
        config_yaml: &str,
        env: &[(&str, &str)],
    ) -> TestServer {
        let data_dir = tmp.path().join("data");
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let overrides = Overrides {
            data_dir: Some(data_dir.clone()),
            workflows_dir: Some(tmp.path().join("workflows")),
            listen: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let config = Config::from_text("test.yaml", config_yaml, &overrides, &env)
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
        let store = Store::open(&data_dir, 16 << 20).expect("open store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(ringback::app::run_with_store(
            config,
            store.clone(),
            listener,
            async {
                let _ = rx.await;
            },
            clock::system(),
        ));
        let server = TestServer {
            addr,
            store,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            shutdown: Some(tx),
            task: Some(task),
            _tmp: tmp,
        };
        // The server task has not run yet: its start-up (phone-number
        // warm-up, catalog, recovery) comes before it answers anything.
        // Wait for it here, so that it is not charged to the first request
        // and to a clock the test starts just after (a call stamped now
        // with a 1 s ring_timeout rang out before the server could take
        // its accept on a loaded machine). The listener is bound, so this
        // waits in its backlog; a failed start-up refuses the connection.
        let _ = server.client.get(server.url("/healthz")).send().await;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POST a body to `/hooks/<source>` with extra headers.
    pub async fn post(
        &self,
        source: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self
            .client
            .post(self.url(&format!("/hooks/{source}")))
            .header("content-type", "application/json")
            .body(body.into());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Answer::from(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        Answer::from(
            self.client
                .get(self.url(path))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub text: String,
}

impl Answer {
    async fn from(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Answer { status, text }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The `error` message of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.text))
            .to_string()
    }

    /// Event ids of a 202.
    pub fn event_ids(&self) -> Vec<String> {
        self.json()["events"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
}

pub fn hex_hmac_sha256(key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn hex_hmac_sha512(key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The config most tests use: one source per provider, with secrets.
pub const CONFIG: &str = r#"
max_body_bytes: 65536
sources:
  wazzap:
    provider: wazzap
    business: "+5215500000000"
    token: ${WAZZAP_TOKEN}
  waha:
    provider: waha
    hmac_key: ${WAHA_KEY}
  meta:
    provider: meta
    app_secret: ${META_SECRET}
    verify_token: ${META_VERIFY}
  v3:
    provider: v3
  timelines:
    provider: timelinesai
    token: ${TL_TOKEN}
  relay:
    provider: standard
    secrets: [whsec_b2xkc2VjcmV0b2xkc2VjcmV0, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
  anything:
    provider: auto
connectors:
  whatsapp: { kind: log }
"#;

pub const ENV: &[(&str, &str)] = &[
    ("WAZZAP_TOKEN", "wz-token-123"),
    ("WAHA_KEY", "my-secret-key"),
    ("META_SECRET", "meta-app-secret"),
    ("META_VERIFY", "meta-verify"),
    ("TL_TOKEN", "tl-token"),
];

pub async fn server() -> TestServer {
    TestServer::start(CONFIG, ENV).await
}

/// A workflow that runs for every event, so a test can read back the event
/// the server normalised from its run ([`TestServer::processed_event`]):
/// once the engine has taken an event, the store keeps only its dedupe
/// marker.
pub const RECORD_EVERY_EVENT: (&str, &str) = (
    "record.yaml",
    "name: record\non:\n  events: [\"*\"]\nsteps:\n  - log: \"{{event.id}}\"\n",
);

/// The id of the run of [`RECORD_EVERY_EVENT`] for an event.
pub fn recorded_run_id(event_id: &str) -> String {
    ringback::store::run_id(event_id, "record")
}

/// [`server`] with [`RECORD_EVERY_EVENT`].
pub async fn recording_server() -> TestServer {
    TestServer::start_with_workflows(CONFIG, ENV, &[RECORD_EVERY_EVENT]).await
}

impl TestServer {
    /// The event with this id as the engine processed it, read from its
    /// run of [`RECORD_EVERY_EVENT`] (waiting at most 10 s for it).
    pub async fn processed_event(&self, id: &str) -> ringback::event::Event {
        let run_id = recorded_run_id(id);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(run) = self.store.execution(&run_id).unwrap() {
                return (*run.event).clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "event {id} was never processed (no run {run_id})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

pub const WAZZAP_MISSED: &str = r#"{"event": "call.missed", "phone": "+5215587654321", "country": "MX", "ts": "2026-05-14T14:32:11Z"}"#;

/// Wait (at most 10 s) until at least `n` runs exist and all have finished.
pub async fn finished_runs(store: &Store, n: usize) -> Vec<ringback::store::Execution> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (runs, _) = store
            .list_executions(&ringback::store::ExecutionFilter::default(), 100, None)
            .unwrap();
        if runs.len() >= n && runs.iter().all(|r| r.status.is_finished()) {
            return runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} finished runs never appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A port for a `ringback serve` child process: free when asked, and
/// below the kernel's ephemeral range, so that the listeners other tests
/// bind to port 0 meanwhile are never handed it. A port from that range
/// (what binding port 0 and closing the listener gives) raced with them:
/// a child that lost its port exited at once, while another test's server
/// answered its `/healthz`. Each call in this process gets another port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    // Linux's default range starts at 32768; ports between 20,000 and the
    // range's start, from a spot that differs between test processes.
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let (low, span) = match ephemeral_start.checked_sub(20_000) {
        Some(span) if span >= 1_000 => (20_000, span),
        _ => (1_024, ephemeral_start.saturating_sub(1_024).max(1)),
    };
    let spot = std::process::id() % span;
    for _ in 0..span {
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(low + (spot + n) % span) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range ({ephemeral_start})");
}
