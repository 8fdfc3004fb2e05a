//! Load bench: the real `ringback serve` (release binary) under load, on
//! 127.0.0.1 only. See benches/README.md for the numbers and how to read them.
//!
//! ```sh
//! cargo build --release
//! cargo bench --bench load -- [--case all|baseline|sled-flush|ingest|e2e|rate|reload|contacts]...
//!     [--clients 16] [--duration 10] [--rate 2000] [--contacts 1000000]
//!     [--startups 5] [--lookups 2000] [--rounds 1] [--wrk] [--json]
//! ```
//!
//! Cases:
//!
//! - `baseline`: a bare axum handler in this process (its own runtime) that
//!   parses the JSON and answers 202, driven by the same clients, so every
//!   other figure can be quoted as a ratio to it. `--wrk` also measures it
//!   with `wrk` when that is installed.
//! - `sled-flush`: the issue's second reference point, the same bare
//!   handler that also inserts the body into sled and awaits a `flush`
//!   before answering (one flush per request; concurrent requests share
//!   whatever sled's flush shares). Durable ingestion is meant to beat it
//!   by committing in groups.
//! - `ingest`: the server with one workflow that listens to `call.incoming`
//!   only (never sent), so each event is verified, parsed, stored, flushed,
//!   answered and dispatched, but starts no run.
//! - `e2e`: the shipped `missed-call-followup.yaml` with a `meta` connector
//!   pointing at a receiver in this process; follow-ups are counted there.
//! - `rate`: `e2e` at a fixed total rate (`--rate`, default 2000/s), with
//!   latencies measured from each request's scheduled send time when the
//!   client is behind schedule (from the send when it was idle and its
//!   timer fired late).
//! - `reload`: `e2e` at full load; half way, the workflow file is rewritten
//!   (write + rename) with a changed follow-up text.
//! - `contacts`: a data folder with `--contacts` contacts (made once with
//!   the library's own `Store::modify_contact`, cached under the target
//!   dir), then start-up time, RSS and contact lookups over the admin API;
//!   then `e2e`'s load on that store for `--duration`, a clean stop, and
//!   the start-up after it (sled replays what was written since the
//!   previous start).
//!
//! Every loop is bounded in count and time; nothing leaves 127.0.0.1.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::Sha256;

const APP_SECRET: &str = "bench-app-secret";
const PHONE_NUMBER_ID: &str = "436666719526789";
/// Callers of load events: `+52155` and an 8-digit event index.
const LOAD_PREFIX: &str = "52155";
/// Contacts of the 1M case: `+52156` and an 8-digit index.
const CONTACT_PREFIX: &str = "52156";
const SHIPPED_WORKFLOW: &str = include_str!("../workflows/missed-call-followup.yaml");
const FOLLOWUP_TEXT: &str = "sorry we missed your call.";
const FOLLOWUP_TEXT_V2: &str = "sorry we missed your call (v2).";
const V2_MARK: &str = "(v2)";
/// The issue's reference figures on its machine: a bare axum handler, the
/// same handler with a sled flush per request, and the two throughput
/// targets. The summary also states the targets as ratios to them.
const ISSUE_BARE: f64 = 118_000.0;
const ISSUE_SLED_FLUSH: f64 = 18_000.0;
const ISSUE_INGEST: f64 = 20_000.0;
const ISSUE_FOLLOWUPS: f64 = 5_000.0;
/// No client sends more than this many events in one case, whatever the rate.
const MAX_EVENTS_PER_CLIENT: u64 = 5_000_000;
/// Longest wait for the backlog to drain after the load stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// The drain gives up when no follow-up arrived for this long.
const DRAIN_STALL: Duration = Duration::from_secs(15);
const START_LIMIT: Duration = Duration::from_secs(60);

const INGEST_ONLY_WORKFLOW: &str = r#"# Ingest-only: listens to a kind the bench never sends, so no run starts.
name: ingest-only
on:
  events: [call.incoming]
steps:
  - log: "never runs during the bench"
"#;

// ---------------------------------------------------------------- options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Baseline,
    SledFlush,
    Ingest,
    E2e,
    Rate,
    Reload,
    Contacts,
}

impl Case {
    const ALL: [Case; 7] = [
        Case::Baseline,
        Case::SledFlush,
        Case::Ingest,
        Case::E2e,
        Case::Rate,
        Case::Reload,
        Case::Contacts,
    ];
    fn name(self) -> &'static str {
        match self {
            Case::Baseline => "baseline",
            Case::SledFlush => "sled-flush",
            Case::Ingest => "ingest",
            Case::E2e => "e2e",
            Case::Rate => "rate",
            Case::Reload => "reload",
            Case::Contacts => "contacts",
        }
    }
}

#[derive(Debug, Clone)]
struct Opts {
    cases: Vec<Case>,
    clients: usize,
    duration: Duration,
    rate: Option<f64>,
    /// The rate of the `rate` case.
    fixed_rate: f64,
    contacts: u64,
    startups: usize,
    lookups: usize,
    wrk: bool,
    /// Write what driving the server with wrk takes into this folder, and
    /// stop (`--wrk-kit`).
    wrk_kit: Option<PathBuf>,
    json: bool,
    bin: PathBuf,
    server_log: String,
    /// Record the server with `perf record` during each load into this folder.
    perf: Option<PathBuf>,
    /// Times the cases are run, one after another in turn.
    rounds: usize,
    /// Another ringback binary to compare with, case by case, alternating
    /// the two (`--against`).
    against: Option<PathBuf>,
    /// Count the server's instructions with callgrind into this folder
    /// (`--callgrind`).
    callgrind: Option<PathBuf>,
    /// Where this run's server writes its callgrind output (a file name
    /// with `%p`); set per run by the callgrind mode.
    callgrind_out: Option<PathBuf>,
}

const USAGE: &str = "\
usage: cargo bench --bench load -- [options]
  --case NAME      baseline, sled-flush, ingest, e2e, rate, reload, contacts or all (default all; repeatable, or comma-separated)
  --clients N      concurrent keep-alive clients (default 16)
  --duration S     seconds of load per case (default 10)
  --rate R         cap every load case at R events/s in total (default: as fast as possible)
  --fixed-rate R   the rate of the `rate` case (default 2000)
  --contacts N     contacts in the contacts case (default 1000000)
  --startups N     start-ups measured in the contacts case (default 5)
  --lookups N      contact lookups measured in the contacts case (default 2000)
  --wrk            also measure the baseline with wrk (when installed)
  --wrk-kit DIR    write into DIR what driving the server with `wrk -t2` takes (the ingest
                   case's config and workflow, --duration × 30,000 distinct signed events,
                   a Lua script), print the commands, and stop
  --server-log F   RUST_LOG of the server (default info, its shipped default);
                   RINGBACK_BENCH_LOGS=DIR keeps each server's log in DIR
  --perf DIR       record the server with `perf record` (cpu-clock, DWARF stacks) during
                   each load case, into DIR/<case>.perf.data
  --rounds N       run the cases N times in turn (default 1); the summary gives each
                   figure's median, each round's value and in how many rounds it met
                   its target (ratios are taken within a round)
  --against BIN    compare with another ringback binary: each case is run with this
                   build, then with BIN, --rounds times (default 3 here); prints each
                   figure's runs and medians side by side (the way to measure a change
                   on a machine whose speed drifts between runs)
  --callgrind DIR  count the server's instructions per event with valgrind's callgrind,
                   which a noisy machine does not disturb: the ingest and e2e cases (or
                   the one of them --case names) at --rate R (default 20) for --duration S
                   (default 10) and for a third of it, outputs into DIR; prints the
                   instructions per event of the biggest functions (the difference of
                   the two runs, so start-up costs cancel)
  --json           print the results as JSON instead of tables
env: RINGBACK_BIN (default: the ringback binary cargo built next to this bench),
     RINGBACK_BENCH_CACHE (default: <target>/bench-cache)";

fn parse_opts() -> Result<Opts, String> {
    let mut opts = Opts {
        cases: Vec::new(),
        clients: 16,
        duration: Duration::from_secs(10),
        rate: None,
        fixed_rate: 2000.0,
        contacts: 1_000_000,
        startups: 5,
        lookups: 2000,
        wrk: false,
        wrk_kit: None,
        json: false,
        bin: std::env::var_os("RINGBACK_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ringback"))),
        server_log: "info".into(),
        perf: None,
        rounds: 0,
        against: None,
        callgrind: None,
        callgrind_out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            "--json" => opts.json = true,
            "--wrk" => opts.wrk = true,
            "--wrk-kit" => opts.wrk_kit = Some(PathBuf::from(value("--wrk-kit")?)),
            "--help" | "-h" => return Err(String::new()),
            "--case" => {
                for name in value("--case")?.split(',') {
                    if name == "all" {
                        opts.cases.extend(Case::ALL);
                    } else {
                        let case = Case::ALL
                            .into_iter()
                            .find(|c| c.name() == name)
                            .ok_or_else(|| format!("unknown case `{name}`"))?;
                        opts.cases.push(case);
                    }
                }
            }
            "--clients" => opts.clients = number(&value("--clients")?)?,
            "--duration" => {
                let secs: f64 = number(&value("--duration")?)?;
                opts.duration = Duration::from_secs_f64(secs.clamp(0.5, 3600.0));
            }
            "--rate" => opts.rate = Some(number(&value("--rate")?)?),
            "--fixed-rate" => opts.fixed_rate = number(&value("--fixed-rate")?)?,
            "--contacts" => opts.contacts = number(&value("--contacts")?)?,
            "--startups" => opts.startups = number(&value("--startups")?)?,
            "--lookups" => opts.lookups = number(&value("--lookups")?)?,
            "--server-log" => opts.server_log = value("--server-log")?,
            "--perf" => opts.perf = Some(PathBuf::from(value("--perf")?)),
            "--rounds" => opts.rounds = number(&value("--rounds")?)?,
            "--against" => opts.against = Some(PathBuf::from(value("--against")?)),
            "--callgrind" => opts.callgrind = Some(PathBuf::from(value("--callgrind")?)),
            // Filters cargo may pass through; this bench has no named filters.
            other if !other.starts_with('-') => {}
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if opts.cases.is_empty() {
        opts.cases.extend(Case::ALL);
    }
    opts.clients = opts.clients.clamp(1, 1024);
    if opts.rounds == 0 {
        opts.rounds = if opts.against.is_some() { 3 } else { 1 };
    }
    opts.rounds = opts.rounds.clamp(1, 20);
    if opts.against.is_some() && opts.json {
        return Err("--against prints a table; it has no --json form".into());
    }
    if opts.callgrind.is_some() && (opts.against.is_some() || opts.json || opts.perf.is_some()) {
        return Err("--callgrind goes with neither --against, --json nor --perf".into());
    }
    opts.startups = opts.startups.clamp(1, 50);
    opts.lookups = opts.lookups.clamp(1, 1_000_000);
    opts.contacts = opts.contacts.clamp(1, 99_999_999);
    Ok(opts)
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a number"))
}

// ---------------------------------------------------------------- clock

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

/// Nanoseconds since the bench started: one time base for clients and the
/// receiver, which share this process.
fn now_ns() -> u64 {
    t0().elapsed().as_nanos() as u64
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

// ---------------------------------------------------------------- payloads

fn caller_digits(prefix: &str, idx: u64) -> String {
    format!("{prefix}{idx:08}")
}

/// A Meta `calls` webhook whose terminate without connection is a missed
/// call (the shape of tests/fixtures/meta/terminate_unanswered.json), with
/// its own caller and call id.
fn meta_missed_call(run: &str, idx: u64, unix: u64) -> Vec<u8> {
    let from = caller_digits(LOAD_PREFIX, idx);
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"366634483210360","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"525500000000","phone_number_id":"{PHONE_NUMBER_ID}"}},"contacts":[{{"profile":{{"name":"Caller {idx}"}},"wa_id":"{from}"}}],"calls":[{{"id":"wacid.bench.{run}.{idx}","from":"{from}","to":"525500000000","event":"terminate","timestamp":"{unix}","direction":"USER_INITIATED","status":"FAILED","end_time":"{unix}"}}]}},"field":"calls"}}]}}]}}"#
    )
    .into_bytes()
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

// ---------------------------------------------------------------- receiver

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    idx: Option<u64>,
    at_ns: u64,
    key: String,
    v2: bool,
}

#[derive(Default)]
struct Received {
    hits: Mutex<Vec<Hit>>,
    count: AtomicU64,
}

/// A stand-in for Meta's Graph API: answers every POST like Meta does, and
/// records who it was for, when, and with which Idempotency-Key.
async fn receive(
    axum::extract::State(rx): axum::extract::State<Arc<Received>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let at_ns = now_ns();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let to = parsed["to"].as_str().unwrap_or_default();
    let idx = to.strip_prefix(LOAD_PREFIX).and_then(|n| n.parse().ok());
    let text = parsed["text"]["body"].as_str().unwrap_or_default();
    let hit = Hit {
        idx,
        at_ns,
        key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        v2: text.contains(V2_MARK),
    };
    rx.hits.lock().expect("hits lock").push(hit);
    rx.count.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::OK,
        axum::Json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": "wamid.bench"}]
        })),
    )
}

/// A server on its own runtime and thread(s), so the clients' runtime
/// cannot starve it (and the other way round).
struct SideServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SideServer {
    fn start(name: &str, workers: usize, router: axum::Router) -> SideServer {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
                    .expect("side runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn a side server thread");
        SideServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for SideServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_receiver() -> (SideServer, Arc<Received>) {
    let rx = Arc::new(Received::default());
    let router = axum::Router::new()
        .route("/{*path}", axum::routing::post(receive))
        .with_state(rx.clone());
    (SideServer::start("receiver", 1, router), rx)
}

/// The baseline: the same route, a bare handler that parses the JSON and
/// answers 202, no verification, no storage. Two workers, like the server
/// on this 2-core machine.
fn start_baseline() -> SideServer {
    async fn bare(
        axum::extract::Path(_source): axum::extract::Path<String>,
        body: Bytes,
    ) -> (StatusCode, &'static str) {
        match serde_json::from_slice::<Value>(&body) {
            Ok(_) => (StatusCode::ACCEPTED, r#"{"accepted":1}"#),
            Err(_) => (StatusCode::BAD_REQUEST, "not json"),
        }
    }
    let router = axum::Router::new().route("/hooks/{source}", axum::routing::post(bare));
    SideServer::start("baseline", 2, router)
}

/// The issue's "axum + sled, one flush per request" reference: the bare
/// handler, plus the body inserted into a sled tree under a counter key and
/// `flush` awaited (on a blocking thread) before the 202. (sled 0.34's
/// `flush_async` hung this handler under load, so it is not used.) Its
/// folder lives as long as the returned guard.
fn start_sled_flush_baseline() -> Result<(SideServer, tempfile::TempDir), String> {
    #[derive(Clone)]
    struct Durable {
        db: sled::Db,
        next: Arc<AtomicU64>,
    }
    async fn durable(
        axum::extract::State(d): axum::extract::State<Durable>,
        axum::extract::Path(_source): axum::extract::Path<String>,
        body: Bytes,
    ) -> (StatusCode, &'static str) {
        if serde_json::from_slice::<Value>(&body).is_err() {
            return (StatusCode::BAD_REQUEST, "not json");
        }
        let key = d.next.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let db = d.db.clone();
        let stored = tokio::task::spawn_blocking(move || {
            db.insert(key, body.as_ref())?;
            db.flush()
        })
        .await;
        if !matches!(stored, Ok(Ok(_))) {
            return (StatusCode::INTERNAL_SERVER_ERROR, "not stored");
        }
        (StatusCode::ACCEPTED, r#"{"accepted":1}"#)
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = sled::Config::new()
        .path(dir.path().join("sled"))
        .open()
        .map_err(|e| format!("open sled: {e}"))?;
    let state = Durable {
        db,
        next: Arc::new(AtomicU64::new(0)),
    };
    let router = axum::Router::new()
        .route("/hooks/{source}", axum::routing::post(durable))
        .with_state(state);
    Ok((SideServer::start("sled-flush", 2, router), dir))
}

// ---------------------------------------------------------------- server

struct Server {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn workflows_dir(&self) -> PathBuf {
        self.dir.path().join("workflows")
    }

    /// Stop with SIGTERM (bounded), then SIGKILL.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut exited = false;
        while !exited && Instant::now() < deadline {
            exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if !exited {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.keep_log();
    }

    /// With `RINGBACK_BENCH_LOGS=DIR`, the server's log is copied there
    /// (`server-<pid>.log`) before its temporary folder goes: what the
    /// server said during a stall.
    fn keep_log(&self) {
        let Some(dir) = std::env::var_os("RINGBACK_BENCH_LOGS") else {
            return;
        };
        let to = PathBuf::from(dir).join(format!("server-{}.log", self.pid()));
        let from = self.dir.path().join("server.log");
        if let Err(e) = std::fs::create_dir_all(to.parent().expect("a file in DIR"))
            .and_then(|_| std::fs::copy(&from, &to))
        {
            eprintln!("cannot keep the server log as {}: {e}", to.display());
        }
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn config_yaml(receiver: Option<SocketAddr>) -> String {
    let whatsapp = match receiver {
        Some(addr) => format!(
            "  whatsapp:\n    kind: meta\n    phone_number_id: \"{PHONE_NUMBER_ID}\"\n    token: bench-token\n    base_url: http://{addr}\n"
        ),
        None => "  whatsapp:\n    kind: log\n".into(),
    };
    format!(
        "sources:\n  meta:\n    provider: meta\n    app_secret: {APP_SECRET}\nconnectors:\n{whatsapp}  slack:\n    kind: log\noutbound:\n  allow_cidrs: [127.0.0.1/32]\n"
    )
}

/// Start `ringback serve` on a free port with its own config, workflows and
/// data folders under a temporary folder (or `data` if given), and wait for
/// `/healthz`. Returns the server and how long start-up took.
fn start_server(
    opts: &Opts,
    receiver: Option<SocketAddr>,
    workflows: &[(&str, &str)],
    data: Option<PathBuf>,
) -> Result<(Server, Duration), String> {
    let dir = tempfile::Builder::new()
        .prefix("ringback-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let wf_dir = dir.path().join("workflows");
    std::fs::create_dir_all(&wf_dir).map_err(|e| e.to_string())?;
    for (name, text) in workflows {
        std::fs::write(wf_dir.join(name), text).map_err(|e| e.to_string())?;
    }
    let config = dir.path().join("ringback.yaml");
    std::fs::write(&config, config_yaml(receiver)).map_err(|e| e.to_string())?;
    let data = data.unwrap_or_else(|| dir.path().join("data"));
    let log = std::fs::File::create(dir.path().join("server.log")).map_err(|e| e.to_string())?;
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    let mut command = match &opts.callgrind_out {
        Some(out) => {
            let mut c = Command::new("valgrind");
            c.arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(&opts.bin);
            c
        }
        None => Command::new(&opts.bin),
    };
    let mut child = command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--workflows")
        .arg(&wf_dir)
        .arg("--data")
        .arg(&data)
        .arg("--listen")
        .arg(addr.to_string())
        .env("RUST_LOG", &opts.server_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", opts.bin.display()))?;
    let deadline = started + START_LIMIT;
    loop {
        if healthz(addr) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            return Err(format!("the server exited ({status}) at start-up:\n{log}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the server did not answer /healthz within 60 s".into());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let took = started.elapsed();
    Ok((Server { child, addr, dir }, took))
}

/// One `GET path` on a fresh connection, waiting at most `connect` to
/// connect and `read` for the answer: the raw answer, status line and
/// all, up to `limit` bytes; empty when it could not be sent.
fn http_get(
    addr: SocketAddr,
    path: &str,
    (connect, read): (Duration, Duration),
    limit: u64,
) -> Vec<u8> {
    let Ok(mut conn) = StdStream::connect_timeout(&addr, connect) else {
        return Vec::new();
    };
    let _ = conn.set_read_timeout(Some(read));
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    if conn.write_all(request.as_bytes()).is_err() {
        return Vec::new();
    }
    let mut answer = Vec::new();
    let _ = conn.take(limit).read_to_end(&mut answer);
    answer
}

/// One `GET /healthz` on a fresh connection: true on a 200.
fn healthz(addr: SocketAddr) -> bool {
    let waits = (Duration::from_millis(200), Duration::from_secs(2));
    http_get(addr, "/healthz", waits, 4096).starts_with(b"HTTP/1.1 200")
}

/// `GET /metrics` on a fresh connection: the exposition text, or empty.
fn metrics_text(addr: SocketAddr) -> String {
    let waits = (Duration::from_millis(500), Duration::from_secs(5));
    String::from_utf8_lossy(&http_get(addr, "/metrics", waits, 1 << 20)).into_owned()
}

/// The server's inbox log writes (each batch's write and `fdatasync`,
/// from `ringback_inbox_write_seconds`): how many, their mean, and how
/// many took longer than 10, 50 and 100 ms. A stall that every ack
/// shares and that shows here is the disk's.
fn inbox_writes(metrics: &str) -> String {
    let sample = |series: &str| {
        metrics.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
    };
    let name = "ringback_inbox_write_seconds";
    let (Some(count), Some(sum)) = (
        sample(&format!("{name}_count")),
        sample(&format!("{name}_sum")),
    ) else {
        return "not reported by this server".into();
    };
    let over = |le: &str| {
        sample(&format!("{name}_bucket{{le=\"{le}\"}}"))
            .map_or("?".to_string(), |within| format!("{}", count - within))
    };
    format!(
        "n={count} mean={:.3}ms over_10ms={} over_50ms={} over_100ms={}",
        sum / count.max(1.0) * 1e3,
        over("0.01"),
        over("0.05"),
        over("0.1")
    )
}

/// `VmHWM` (peak) and `VmRSS` (now) of a process, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line (11 and 12 after it).
    (ticks(11) + ticks(12)) / 100.0
}

/// Bytes a process has caused to be written to storage so far
/// (`write_bytes` of /proc/<pid>/io).
fn disk_written(pid: u32) -> f64 {
    proc_io(pid, "write_bytes:")
}

/// Read calls a process has made so far (`syscr` of /proc/<pid>/io:
/// `read`, `pread64` and the like, not socket receives). Under load they
/// are mostly sled fetching pages it has evicted from its cache (checked
/// against `perf stat -e syscalls:sys_enter_pread64`: 1,153 against 1,119
/// and 29,065 against 28,054 over the same 4 s; the rest are reads of
/// eventfds, pipes and /proc).
fn read_calls(pid: u32) -> f64 {
    proc_io(pid, "syscr:")
}

fn proc_io(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Context switches of each of a process's threads so far (voluntary and
/// not, from /proc/<pid>/task/<tid>/status), by thread id.
fn context_switches(pid: u32) -> HashMap<String, f64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Default::default();
    };
    tasks
        .flatten()
        .map(|task| {
            let switches = std::fs::read_to_string(task.path().join("status"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                .sum::<f64>();
            (task.file_name().to_string_lossy().into_owned(), switches)
        })
        .collect()
}

/// The context switches between two samples: each thread alive at the
/// second, less what it had at the first (nothing if it started since).
/// A thread that ended in between is left out (sled's and tokio's extra
/// threads come and go), so this can undercount, never go negative.
fn switches_between(before: &HashMap<String, f64>, after: &HashMap<String, f64>) -> f64 {
    after
        .iter()
        .map(|(tid, n)| (n - before.get(tid).copied().unwrap_or(0.0)).max(0.0))
        .sum()
}

/// Busy and total CPU seconds of the whole machine so far (all cores).
fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3).copied().unwrap_or(0.0) + cpu.get(4).copied().unwrap_or(0.0);
    ((total - idle) / 100.0, total / 100.0)
}

/// The share of the machine's CPU time that was idle over `window`, so a
/// busy machine (another build, say) shows up next to the figures.
fn machine_idle(window: Duration) -> f64 {
    let (busy0, total0) = machine_cpu();
    std::thread::sleep(window);
    let (busy1, total1) = machine_cpu();
    if total1 <= total0 {
        return f64::NAN;
    }
    1.0 - (busy1 - busy0) / (total1 - total0)
}

// ---------------------------------------------------------------- clients

#[derive(Debug, Clone, Copy)]
struct Sample {
    idx: u64,
    /// When it was sent (or, at a fixed rate, when it was due).
    sent_ns: u64,
    ack_ns: u64,
    accepted: bool,
}

#[derive(Default, Debug)]
struct ClientResult {
    samples: Vec<Sample>,
    duplicates: u64,
    errors: HashMap<String, u64>,
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

struct Load {
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    rate: Option<f64>,
    run: String,
}

/// Drive `clients` keep-alive connections for `duration`, each posting
/// signed, distinct missed calls; at a fixed total rate if `rate` is set.
async fn drive(load: &Load, next_idx: Arc<AtomicU64>) -> (ClientResult, u64, u64) {
    let start_ns = now_ns();
    let end_ns = start_ns + load.duration.as_nanos() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..load.clients {
        let next_idx = next_idx.clone();
        let stop = stop.clone();
        let run = load.run.clone();
        let addr = load.addr;
        // Each client's share of the rate, offset so they interleave.
        let pacing = load.rate.map(|r| {
            let every = 1e9 * load.clients as f64 / r;
            (every, every * c as f64 / load.clients as f64)
        });
        tasks.push(tokio::spawn(async move {
            client(addr, &run, start_ns, end_ns, pacing, &next_idx, &stop).await
        }));
    }
    let mut total = ClientResult::default();
    for t in tasks {
        match t.await {
            Ok(r) => {
                total.samples.extend(r.samples);
                total.duplicates += r.duplicates;
                for (k, v) in r.errors {
                    *total.errors.entry(k).or_default() += v;
                }
            }
            Err(e) => *total.errors.entry(format!("client task: {e}")).or_default() += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    (total, start_ns, now_ns())
}

async fn client(
    addr: SocketAddr,
    run: &str,
    start_ns: u64,
    end_ns: u64,
    pacing: Option<(f64, f64)>,
    next_idx: &AtomicU64,
    stop: &AtomicBool,
) -> ClientResult {
    let mut out = ClientResult::default();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let unix = jiff::Timestamp::now().as_second().max(0) as u64;
    let uri = format!("http://{addr}/hooks/meta");
    for k in 0..MAX_EVENTS_PER_CLIENT {
        let due_ns = match pacing {
            Some((every, offset)) => {
                let due = start_ns + (offset + every * k as f64) as u64;
                let now = now_ns();
                if due > now {
                    tokio::time::sleep(Duration::from_nanos(due - now)).await;
                    // The client was idle, so nothing the server did held
                    // this request back: the time the timer fires past
                    // `due` (tokio's timers tick in whole milliseconds) is
                    // the client's own, and latency counts from the send.
                    Some(now_ns())
                } else {
                    // Behind schedule (the server was slow to answer the
                    // previous request): count from when it was due.
                    Some(due)
                }
            }
            None => None,
        };
        if now_ns() >= end_ns || stop.load(Ordering::Relaxed) {
            break;
        }
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            match connect(addr).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    *out.errors.entry(e).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = sender.as_mut().expect("connected above");
        let idx = next_idx.fetch_add(1, Ordering::Relaxed);
        let body = meta_missed_call(run, idx, unix);
        let signature = sign(&body);
        let request = hyper::Request::post(&uri)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        let sent_ns = due_ns.unwrap_or_else(now_ns);
        let outcome = async {
            s.ready().await.map_err(|e| format!("not ready: {e}"))?;
            let resp = s
                .send_request(request)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let status = resp.status().as_u16();
            resp.into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?;
            Ok::<u16, String>(status)
        }
        .await;
        let ack_ns = now_ns();
        match outcome {
            Ok(202) => out.samples.push(Sample {
                idx,
                sent_ns,
                ack_ns,
                accepted: true,
            }),
            Ok(200) => out.duplicates += 1,
            Ok(status) => {
                *out.errors.entry(format!("HTTP {status}")).or_default() += 1;
                out.samples.push(Sample {
                    idx,
                    sent_ns,
                    ack_ns,
                    accepted: false,
                });
            }
            Err(e) => {
                *out.errors.entry(e).or_default() += 1;
                sender = None;
            }
        }
    }
    out
}

// ---------------------------------------------------------------- statistics

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Results of one case, printed as a table and as JSON.
#[derive(Debug, Default)]
struct Results {
    case: String,
    rows: Vec<(String, Value, String)>,
}

impl Results {
    fn new(case: &str) -> Results {
        Results {
            case: case.into(),
            rows: Vec::new(),
        }
    }
    fn put(&mut self, key: &str, value: impl Into<Value>, unit: &str) {
        self.rows.push((key.into(), value.into(), unit.into()));
    }
    fn put_ms(&mut self, key: &str, ns: Option<u64>) {
        let v = ns.map(|n| round(ms(n), 3)).map(Value::from);
        self.put(key, v.unwrap_or(Value::Null), "ms");
    }
    fn json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("case".into(), self.case.clone().into());
        for (k, v, _) in &self.rows {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
    fn print(&self) {
        println!("\n== {} ==", self.case);
        let width = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        for (k, v, unit) in &self.rows {
            let shown = match v {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            println!("  {k:<width$}  {shown} {unit}");
        }
    }
    fn get(&self, key: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.0 == key)
            .and_then(|r| r.1.as_f64())
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

// ---------------------------------------------------------------- load cases

struct LoadOutcome {
    client: ClientResult,
    start_ns: u64,
    end_ns: u64,
}

/// Acks slower than [`STALL_MS`], grouped by when they were sent (within
/// 50 ms of each other), as `at <s into the load> n=<acks> max=<ms>`, at
/// most five groups: tells a stall of the whole server (many acks at
/// once) from scattered slow ones, and when it struck.
fn stalls(samples: &[&Sample], start_ns: u64) -> String {
    const STALL_MS: u64 = 20;
    let mut slow: Vec<(u64, u64)> = samples
        .iter()
        .map(|s| (s.sent_ns, s.ack_ns - s.sent_ns))
        .filter(|(_, lat)| *lat > STALL_MS * 1_000_000)
        .collect();
    slow.sort_unstable();
    let mut groups: Vec<(u64, u64, usize, u64)> = Vec::new(); // first, last, n, max
    for (sent, lat) in slow {
        match groups.last_mut() {
            Some(g) if sent - g.1 <= 50_000_000 => {
                g.1 = sent;
                g.2 += 1;
                g.3 = g.3.max(lat);
            }
            _ => groups.push((sent, sent, 1, lat)),
        }
    }
    if groups.is_empty() {
        return format!("none over {STALL_MS} ms");
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.3));
    let shown: Vec<String> = groups
        .iter()
        .take(5)
        .map(|g| {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                - (now_ns() - g.0) as f64 / 1e9;
            format!(
                "at {:.2}s (unix {unix:.3}) n={} max={:.0}ms",
                g.0.saturating_sub(start_ns) as f64 / 1e9,
                g.2,
                g.3 as f64 / 1e6
            )
        })
        .collect();
    format!("{} group(s): {}", groups.len(), shown.join("; "))
}

fn summarise_ingest(r: &mut Results, o: &LoadOutcome) {
    let secs = (o.end_ns - o.start_ns) as f64 / 1e9;
    let accepted: Vec<&Sample> = o.client.samples.iter().filter(|s| s.accepted).collect();
    let mut acks: Vec<u64> = accepted.iter().map(|s| s.ack_ns - s.sent_ns).collect();
    acks.sort_unstable();
    let errors: u64 = o.client.errors.values().sum();
    r.put("load_s", round(secs, 2), "s");
    r.put("accepted", accepted.len() as u64, "events");
    r.put(
        "accepted_per_s",
        round(accepted.len() as f64 / secs, 0),
        "events/s",
    );
    r.put_ms("ack_p50", percentile(&acks, 50.0));
    r.put_ms("ack_p99", percentile(&acks, 99.0));
    r.put_ms("ack_max", acks.last().copied());
    r.put("ack_stalls", stalls(&accepted, o.start_ns), "");
    r.put("duplicates", o.client.duplicates, "answers");
    r.put("errors", errors, "");
    if !o.client.errors.is_empty() {
        let detail: Vec<String> = o
            .client
            .errors
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect();
        r.put("error_detail", detail.join("; "), "");
    }
}

/// Wait (bounded) until the receiver has one hit per accepted event.
fn drain(rx: &Received, expected: u64) -> bool {
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut last = rx.count.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    loop {
        let n = rx.count.load(Ordering::Relaxed);
        if n >= expected {
            return true;
        }
        if n != last {
            last = n;
            last_change = Instant::now();
        }
        if Instant::now() > deadline || last_change.elapsed() > DRAIN_STALL {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Follow-ups: rate, latency, drain, and exactly-once per accepted event.
fn summarise_followups(r: &mut Results, o: &LoadOutcome, rx: &Received, drained: bool) {
    let hits = rx.hits.lock().expect("hits lock").clone();
    let secs = (o.end_ns - o.start_ns) as f64 / 1e9;
    let accepted: HashMap<u64, u64> = o
        .client
        .samples
        .iter()
        .filter(|s| s.accepted)
        .map(|s| (s.idx, s.sent_ns))
        .collect();
    let mut per_idx: HashMap<u64, u32> = HashMap::new();
    let mut e2e = Vec::with_capacity(hits.len());
    let mut keys = std::collections::HashSet::new();
    let mut unknown = 0u64;
    for h in &hits {
        keys.insert(h.key.as_str());
        match h.idx.and_then(|i| accepted.get(&i).map(|sent| (i, sent))) {
            Some((i, sent)) => {
                *per_idx.entry(i).or_default() += 1;
                e2e.push(h.at_ns.saturating_sub(*sent));
            }
            None => unknown += 1,
        }
    }
    e2e.sort_unstable();
    let during = hits.iter().filter(|h| h.at_ns <= o.end_ns).count();
    let last_hit = hits.iter().map(|h| h.at_ns).max().unwrap_or(o.end_ns);
    let missing = accepted.keys().filter(|i| !per_idx.contains_key(i)).count();
    let twice = per_idx.values().filter(|n| **n > 1).count();
    r.put("followups", hits.len() as u64, "hits");
    r.put(
        "followups_per_s_during_load",
        round(during as f64 / secs, 0),
        "hits/s",
    );
    r.put(
        "followups_per_s_overall",
        round(
            hits.len() as f64 / ((last_hit.max(o.end_ns) - o.start_ns) as f64 / 1e9),
            0,
        ),
        "hits/s",
    );
    r.put_ms("e2e_p50", percentile(&e2e, 50.0));
    r.put_ms("e2e_p99", percentile(&e2e, 99.0));
    r.put_ms("e2e_max", e2e.last().copied());
    r.put(
        "drain_s",
        if drained {
            Value::from(round(last_hit.saturating_sub(o.end_ns) as f64 / 1e9, 3))
        } else {
            Value::String(format!(
                "not drained ({} of {} after the limit)",
                hits.len(),
                accepted.len()
            ))
        },
        "s",
    );
    r.put("lost", missing as u64, "events without a follow-up");
    r.put("run_twice", twice as u64, "events with >1 follow-up");
    r.put(
        "distinct_idempotency_keys",
        keys.len() as u64,
        &format!("of {} hits", hits.len()),
    );
    r.put("unknown_hits", unknown, "");
}

/// One load case; on the data folder `data` when given (else a new one
/// the case removes).
fn load_case(
    rt: &tokio::runtime::Runtime,
    opts: &Opts,
    case: Case,
    rate: Option<f64>,
    data: Option<&Path>,
) -> Result<Results, String> {
    let followups = matches!(case, Case::E2e | Case::Rate | Case::Reload);
    let (receiver, rx) = start_receiver();
    let workflows: Vec<(&str, &str)> = if followups {
        vec![("missed-call-followup.yaml", SHIPPED_WORKFLOW)]
    } else {
        vec![("ingest-only.yaml", INGEST_ONLY_WORKFLOW)]
    };
    let (server, startup) = start_server(
        opts,
        Some(receiver.addr),
        &workflows,
        data.map(Path::to_path_buf),
    )?;
    let mut r = Results::new(case.name());
    r.put("clients", opts.clients as u64, "");
    if let Some(rate) = rate {
        r.put("target_rate", rate, "events/s");
    }
    r.put("startup", round(startup.as_secs_f64() * 1000.0, 1), "ms");
    let load = Load {
        addr: server.addr,
        clients: opts.clients,
        duration: opts.duration,
        rate,
        run: format!("{}{}", case.name(), fastrand::u32(..)),
    };
    let perf = opts
        .perf
        .as_ref()
        .map(|dir| start_perf(dir, case.name(), server.pid()))
        .transpose()?;
    let reload_at = Arc::new(AtomicU64::new(0));
    let reloader = (case == Case::Reload).then(|| {
        let path = server.workflows_dir().join("missed-call-followup.yaml");
        let half = opts.duration / 2;
        let reload_at = reload_at.clone();
        std::thread::spawn(move || {
            std::thread::sleep(half);
            let text = SHIPPED_WORKFLOW.replace(FOLLOWUP_TEXT, FOLLOWUP_TEXT_V2);
            assert_ne!(text, SHIPPED_WORKFLOW, "the follow-up text changed");
            // Written aside (a dot file is not a workflow) and renamed over
            // the old one, as editors do.
            let tmp = path.with_file_name(".missed-call-followup.yaml.tmp");
            std::fs::write(&tmp, text).expect("write the new workflow");
            reload_at.store(now_ns(), Ordering::SeqCst);
            std::fs::rename(&tmp, &path).expect("rename the new workflow");
        })
    });
    let server_cpu0 = cpu_secs(&server.pid().to_string());
    let bench_cpu0 = cpu_secs("self");
    let machine0 = machine_cpu().0;
    let written0 = disk_written(server.pid());
    let (reads0, switches0) = (read_calls(server.pid()), context_switches(server.pid()));
    let (client, start_ns, end_ns) = rt.block_on(drive(&load, Arc::new(AtomicU64::new(0))));
    let written = disk_written(server.pid()) - written0;
    let reads = read_calls(server.pid()) - reads0;
    let switches = switches_between(&switches0, &context_switches(server.pid()));
    let load_secs = (end_ns - start_ns) as f64 / 1e9;
    let server_cores = (cpu_secs(&server.pid().to_string()) - server_cpu0) / load_secs;
    let bench_cores = (cpu_secs("self") - bench_cpu0) / load_secs;
    let machine_cores = (machine_cpu().0 - machine0) / load_secs;
    r.put(
        "server_cpu_cores",
        round(server_cores, 2),
        "cores during load",
    );
    r.put(
        "bench_cpu_cores",
        round(bench_cores, 2),
        "cores during load (clients + receiver)",
    );
    // Everything else that ran meanwhile (kernel threads, other users).
    r.put(
        "other_cpu_cores",
        round((machine_cores - server_cores - bench_cores).max(0.0), 2),
        "cores during load (not the server, not the bench)",
    );
    if let Some(perf) = perf {
        stop_perf(perf);
    }
    if let Some(t) = reloader {
        let _ = t.join();
    }
    let outcome = LoadOutcome {
        client,
        start_ns,
        end_ns,
    };
    summarise_ingest(&mut r, &outcome);
    r.put("inbox_writes", inbox_writes(&metrics_text(server.addr)), "");
    let accepted = outcome.client.samples.iter().filter(|s| s.accepted).count();
    r.put(
        "server_disk_write_per_event",
        round(written / accepted.max(1) as f64 / 1024.0, 1),
        "KiB (write_bytes during load / accepted)",
    );
    r.put(
        "server_file_reads_per_event",
        round(reads / accepted.max(1) as f64, 3),
        "(read calls during load / accepted: mostly sled fetching evicted pages)",
    );
    r.put(
        "server_switches_per_event",
        round(switches / accepted.max(1) as f64, 2),
        "(context switches of all its threads during load / accepted)",
    );
    if followups {
        let expected = outcome.client.samples.iter().filter(|s| s.accepted).count() as u64;
        let drained = drain(&rx, expected);
        // Late extras (a run twice) would arrive just after; give them a moment.
        std::thread::sleep(Duration::from_millis(300));
        summarise_followups(&mut r, &outcome, &rx, drained);
    }
    if case == Case::Reload {
        summarise_reload(&mut r, &outcome, &rx, reload_at.load(Ordering::SeqCst));
    }
    let (hwm, rss) = memory_mib(server.pid());
    r.put("server_peak_rss", round(hwm, 1), "MiB");
    r.put("server_rss_after", round(rss, 1), "MiB");
    server.stop();
    drop(receiver);
    Ok(r)
}

fn start_perf(dir: &Path, case: &str, pid: u32) -> Result<Child, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let child = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "299",
            "--call-graph",
            "dwarf,16384",
        ])
        .arg("-o")
        .arg(dir.join(format!("{case}.perf.data")))
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("perf: {e}"))?;
    // Let it attach before the load starts.
    std::thread::sleep(Duration::from_millis(500));
    Ok(child)
}

/// SIGINT makes perf write its file and exit; bounded, then SIGKILL.
fn stop_perf(mut perf: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = perf.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = perf.kill();
    let _ = perf.wait();
}

fn summarise_reload(r: &mut Results, o: &LoadOutcome, rx: &Received, reload_ns: u64) {
    let hits = rx.hits.lock().expect("hits lock").clone();
    let sent: HashMap<u64, u64> = o
        .client
        .samples
        .iter()
        .map(|s| (s.idx, s.sent_ns))
        .collect();
    let first_v2 = hits.iter().filter(|h| h.v2).map(|h| h.at_ns).min();
    // The last event still answered with the old text, by when it was sent.
    let last_v1_sent = hits
        .iter()
        .filter(|h| !h.v2)
        .filter_map(|h| h.idx.and_then(|i| sent.get(&i)))
        .max()
        .copied();
    let v2 = hits.iter().filter(|h| h.v2).count();
    r.put_ms(
        "reload_first_v2_followup_after",
        first_v2.map(|t| t.saturating_sub(reload_ns)),
    );
    r.put_ms(
        "reload_last_v1_event_sent_after",
        last_v1_sent.map(|t| t.saturating_sub(reload_ns)),
    );
    r.put("reload_v1_followups", (hits.len() - v2) as u64, "");
    r.put("reload_v2_followups", v2 as u64, "");
}

// ---------------------------------------------------------------- baseline

fn baseline_case(rt: &tokio::runtime::Runtime, opts: &Opts, case: Case) -> Result<Results, String> {
    let (server, _folder) = match case {
        Case::SledFlush => {
            let (server, folder) = start_sled_flush_baseline()?;
            (server, Some(folder))
        }
        _ => (start_baseline(), None),
    };
    let mut r = Results::new(case.name());
    r.put("clients", opts.clients as u64, "");
    let load = Load {
        addr: server.addr,
        clients: opts.clients,
        duration: opts.duration,
        rate: opts.rate,
        run: case.name().into(),
    };
    let bench_cpu0 = cpu_secs("self");
    let machine0 = machine_cpu().0;
    let (client, start_ns, end_ns) = rt.block_on(drive(&load, Arc::new(AtomicU64::new(0))));
    let load_secs = (end_ns - start_ns) as f64 / 1e9;
    let bench_cores = (cpu_secs("self") - bench_cpu0) / load_secs;
    r.put(
        "bench_cpu_cores",
        round(bench_cores, 2),
        "cores during load (clients + handler)",
    );
    r.put(
        "other_cpu_cores",
        round(
            ((machine_cpu().0 - machine0) / load_secs - bench_cores).max(0.0),
            2,
        ),
        "cores during load (not the bench)",
    );
    summarise_ingest(
        &mut r,
        &LoadOutcome {
            client,
            start_ns,
            end_ns,
        },
    );
    if opts.wrk && case == Case::Baseline {
        match wrk(opts, server.addr) {
            Ok(rps) => r.put("wrk_req_per_s", round(rps, 0), "req/s"),
            Err(e) => r.put("wrk_req_per_s", format!("not measured: {e}"), ""),
        }
    }
    drop(server);
    Ok(r)
}

/// `wrk -t2 -c<clients>` posting one signed payload to the baseline.
fn wrk(opts: &Opts, addr: SocketAddr) -> Result<f64, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let body = String::from_utf8(meta_missed_call("wrk", 0, 1_749_197_480)).expect("utf-8");
    let script = format!(
        "wrk.method = \"POST\"\nwrk.body = [[{body}]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"X-Hub-Signature-256\"] = \"{}\"\n",
        sign(body.as_bytes())
    );
    let script_path = dir.path().join("post.lua");
    std::fs::write(&script_path, script).map_err(|e| e.to_string())?;
    let secs = opts.duration.as_secs().max(1);
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{}", opts.clients), &format!("-d{secs}s")])
        .arg("-s")
        .arg(&script_path)
        .arg(format!("http://{addr}/hooks/meta"))
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output: {text}"))
}

// ---------------------------------------------------------------- contacts

fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("RINGBACK_BENCH_CACHE") {
        return PathBuf::from(dir);
    }
    // <target>/release/deps/load-<hash>
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("bench-cache")
}

/// A data folder with `n` contacts, made once with the library's own
/// contact writes (one transaction per contact, as the admin API does) and
/// kept for later runs. The folder's name carries the stored layout of
/// contacts (compact since the eighteenth round), so a folder of an
/// earlier layout is not measured as if it were the current one.
fn contacts_store(n: u64) -> Result<(PathBuf, Option<Duration>), String> {
    let dir = cache_root().join(format!("contacts-{n}-compact"));
    if dir.join("complete").exists() {
        return Ok((dir, None));
    }
    let building = dir.with_extension("building");
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building).map_err(|e| e.to_string())?;
    let started = Instant::now();
    {
        let store = ringback::store::Store::open(&building, ringback::store::DEFAULT_CACHE_BYTES)
            .map_err(|e| e.to_string())?;
        let now = jiff::Timestamp::now();
        for i in 0..n {
            let phone = format!("+{}", caller_digits(CONTACT_PREFIX, i));
            let mut contact = ringback::store::Contact::new(&phone, now);
            contact.name = Some(format!("Contact {i}"));
            contact.country = Some("MX".into());
            contact.tags.insert("customer".into());
            if i % 10 == 0 {
                contact.tags.insert("vip".into());
            }
            contact.fields.insert("plan".into(), "basic".into());
            store
                .modify_contact(&phone, now, Some(contact), |_| {})
                .map_err(|e| e.to_string())?;
            if i > 0 && i % 100_000 == 0 {
                eprintln!(
                    "  {i} contacts written ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        store.flush_now().map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&building, &dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("complete"), n.to_string()).map_err(|e| e.to_string())?;
    Ok((dir, Some(started.elapsed())))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_size(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}

fn contacts_case(rt: &tokio::runtime::Runtime, opts: &Opts) -> Result<Results, String> {
    let mut r = Results::new("contacts");
    let (cached, built) = contacts_store(opts.contacts)?;
    r.put("contacts", opts.contacts, "");
    if let Some(t) = built {
        r.put(
            "generated_in",
            round(t.as_secs_f64(), 1),
            "s (once; cached)",
        );
    }
    r.put(
        "data_on_disk",
        round(dir_size(&cached) as f64 / 1048576.0, 1),
        "MiB",
    );
    // One copy per bench run (the server writes to its data folder; the
    // cache stays as generated). Copying also leaves the files in the page
    // cache: start-ups below are warm-cache restarts.
    let scratch = tempfile::Builder::new()
        .prefix("ringback-bench-data-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let data = scratch.path().join("data");
    copy_dir(&cached, &data).map_err(|e| format!("copy the data folder: {e}"))?;
    let mut startups = Vec::new();
    let mut rss_after_start = Vec::new();
    let mut last = None;
    for i in 0..opts.startups {
        let (server, took) = start_server(
            opts,
            None,
            &[("missed-call-followup.yaml", SHIPPED_WORKFLOW)],
            Some(data.clone()),
        )?;
        startups.push(took.as_secs_f64() * 1000.0);
        rss_after_start.push(memory_mib(server.pid()).1);
        if i + 1 == opts.startups {
            last = Some(server);
        } else {
            server.stop();
        }
    }
    let server = last.expect("at least one start-up");
    r.put("startup_runs", startups.len() as u64, "");
    r.put(
        "startups",
        startups
            .iter()
            .map(|t| format!("{t:.0}"))
            .collect::<Vec<_>>()
            .join(" "),
        "ms, in order",
    );
    r.put(
        "startup_median",
        round(median(&mut startups.clone()), 1),
        "ms",
    );
    r.put(
        "startup_max",
        round(startups.iter().copied().fold(0.0, f64::max), 1),
        "ms",
    );
    r.put(
        "rss_after_start_median",
        round(median(&mut rss_after_start), 1),
        "MiB",
    );
    let lookups = rt.block_on(lookup_contacts(server.addr, opts.contacts, opts.lookups))?;
    let (mut lat, misses) = lookups;
    lat.sort_unstable();
    r.put("lookups", lat.len() as u64, "");
    r.put("lookup_wrong_answers", misses, "");
    r.put_ms("lookup_p50", percentile(&lat, 50.0));
    r.put_ms("lookup_p99", percentile(&lat, 99.0));
    r.put_ms("lookup_max", lat.last().copied());
    let (hwm, rss) = memory_mib(server.pid());
    r.put("rss_after_lookups", round(rss, 1), "MiB");
    r.put("peak_rss", round(hwm, 1), "MiB");
    server.stop();
    restart_after_burst(rt, opts, &data, &mut r)?;
    drop(scratch);
    Ok(r)
}

/// The start-up a user sees after a busy stretch, not only after a quiet
/// restart: sled 0.34 writes its snapshot (its page table) only when it
/// opens a store, so every start replays everything written since the
/// previous start (the contacts case's first start replays the
/// generator's million writes). On the contacts case's store: the shipped
/// follow-up workflow at full load for the case's duration (new callers,
/// each a new contact and a run), a clean stop once the follow-ups are
/// out, then two starts: the one after the burst, and one more with
/// nothing written in between.
fn restart_after_burst(
    rt: &tokio::runtime::Runtime,
    opts: &Opts,
    data: &Path,
    r: &mut Results,
) -> Result<(), String> {
    let burst = load_case(rt, opts, Case::E2e, opts.rate, Some(data))?;
    r.put(
        "burst_followups",
        burst.get("followups").unwrap_or(0.0) as u64,
        "follow-ups sent at full load before a clean stop",
    );
    r.put(
        "burst_lost",
        burst.get("lost").unwrap_or(0.0) as u64,
        "accepted events of the burst without a follow-up",
    );
    r.put(
        "data_on_disk_after_burst",
        round(dir_size(data) as f64 / 1048576.0, 1),
        "MiB",
    );
    let shipped = [("missed-call-followup.yaml", SHIPPED_WORKFLOW)];
    let mut starts = Vec::new();
    for _ in 0..2 {
        let (server, took) = start_server(opts, None, &shipped, Some(data.into()))?;
        starts.push(took.as_secs_f64() * 1000.0);
        server.stop();
    }
    r.put(
        "startup_after_burst",
        round(starts[0], 1),
        "ms (the first start after the burst)",
    );
    r.put(
        "startup_after_that",
        round(starts[1], 1),
        "ms (the next one, nothing written in between)",
    );
    Ok(())
}

/// `GET /api/contacts/{phone}` for random existing contacts, one at a time
/// on one keep-alive connection.
async fn lookup_contacts(
    addr: SocketAddr,
    contacts: u64,
    lookups: usize,
) -> Result<(Vec<u64>, u64), String> {
    let mut sender: SendRequest<Full<Bytes>> = connect(addr).await?;
    let mut lat = Vec::with_capacity(lookups);
    let mut wrong = 0u64;
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..lookups {
        let phone = format!("+{}", caller_digits(CONTACT_PREFIX, rng.u64(..contacts)));
        let request = hyper::Request::get(format!("http://{addr}/api/contacts/{phone}"))
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let started = now_ns();
        sender
            .ready()
            .await
            .map_err(|e| format!("not ready: {e}"))?;
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| format!("lookup: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("lookup body: {e}"))?
            .to_bytes();
        lat.push(now_ns() - started);
        let ok = status == 200
            && serde_json::from_slice::<Value>(&body)
                .is_ok_and(|v| v["phone"].as_str() == Some(phone.as_str()));
        if !ok {
            wrong += 1;
        }
    }
    Ok((lat, wrong))
}

// ---------------------------------------------------------------- main

/// One figure of the summary: its value in each round (`None` where the
/// round did not measure it), the target as text and whether a value meets
/// it.
struct Figure {
    name: String,
    each: Vec<Option<f64>>,
    target: String,
    ok: Box<dyn Fn(f64) -> bool>,
}

impl Figure {
    fn measured(&self) -> Vec<f64> {
        self.each.iter().flatten().copied().collect()
    }

    /// The median over the rounds that measured it.
    fn median(&self) -> Option<f64> {
        let mut values = self.measured();
        (!values.is_empty()).then(|| round(median(&mut values), 3))
    }

    /// `yes`/`NO` for one round; `k/n` (rounds that met it, of those that
    /// measured it) for several; `-` when nothing was measured or no
    /// target applies.
    fn met(&self) -> String {
        let values = self.measured();
        if values.is_empty() || self.target.is_empty() {
            return "-".into();
        }
        let met = values.iter().filter(|x| (self.ok)(**x)).count();
        match values.len() {
            1 if met == 1 => "yes".into(),
            1 => "NO".into(),
            n => format!("{met}/{n}"),
        }
    }

    fn json(&self) -> Value {
        json!({
            "figure": self.name,
            "median": self.median(),
            "each_round": self.each,
            "target": self.target,
            "met": self.met(),
        })
    }
}

/// The issue's figures, each from every round. Ratios are taken within a
/// round (the references measured minutes apart on this machine differ by
/// more than the effects measured), then their median.
fn figures(rounds: &[Vec<Results>], opts: &Opts) -> Vec<Figure> {
    let v = |case: &str, key: &str| -> Vec<Option<f64>> {
        rounds
            .iter()
            .map(|all| all.iter().find(|r| r.case == case).and_then(|r| r.get(key)))
            .collect()
    };
    let ratio_of = |x: &[Option<f64>], of: &[Option<f64>]| -> Vec<Option<f64>> {
        x.iter()
            .zip(of)
            .map(|(x, of)| x.zip(*of).map(|(x, of)| round(x / of, 3)))
            .collect()
    };
    let figure =
        |name: &str, each: Vec<Option<f64>>, target: &str, ok: Box<dyn Fn(f64) -> bool>| Figure {
            name: name.into(),
            each,
            target: target.into(),
            ok,
        };
    let no_target = || -> Box<dyn Fn(f64) -> bool> { Box::new(|_| true) };
    let base = v("baseline", "accepted_per_s");
    let sled_flush = v("sled-flush", "accepted_per_s");
    let ingest = v("ingest", "accepted_per_s");
    let followups = v("e2e", "followups_per_s_during_load");
    // The issue's targets were set against its own machine's references
    // (bare axum ≈118,000 req/s, axum + sled flush ≈18,000): the same
    // ratios to this run's references say what they ask of this machine.
    let ratio =
        |x: &[Option<f64>], of: &[Option<f64>], of_name: &str, target: f64, of_issue: f64| {
            let issue = target / of_issue;
            figure(
                &format!("  ratio to {of_name} (issue: {target}/{of_issue})"),
                ratio_of(x, of),
                &format!(">= {issue:.3}"),
                Box::new(move |r| r >= issue),
            )
        };
    let rate = format!("at {} events/s", opts.fixed_rate);
    vec![
        figure(
            "baseline (bare axum) req/s, same clients",
            base.clone(),
            "",
            no_target(),
        ),
        figure(
            "axum + sled, one flush per request, req/s",
            sled_flush.clone(),
            "",
            no_target(),
        ),
        figure(
            "durable ingestion events/s",
            ingest.clone(),
            &format!(">= {ISSUE_INGEST}"),
            Box::new(|x| x >= ISSUE_INGEST),
        ),
        ratio(&ingest, &base, "baseline", ISSUE_INGEST, ISSUE_BARE),
        ratio(
            &ingest,
            &sled_flush,
            "sled-flush",
            ISSUE_INGEST,
            ISSUE_SLED_FLUSH,
        ),
        figure(
            "follow-ups/s during load (e2e)",
            followups.clone(),
            &format!(">= {ISSUE_FOLLOWUPS}"),
            Box::new(|x| x >= ISSUE_FOLLOWUPS),
        ),
        ratio(&followups, &base, "baseline", ISSUE_FOLLOWUPS, ISSUE_BARE),
        figure(
            "e2e accepted events/s",
            v("e2e", "accepted_per_s"),
            "",
            no_target(),
        ),
        figure(
            "backlog drain after load (e2e), s",
            v("e2e", "drain_s"),
            "<= 2",
            Box::new(|x| x <= 2.0),
        ),
        figure(
            &format!("p99 ack ms {rate}"),
            v("rate", "ack_p99"),
            "< 5",
            Box::new(|x| x < 5.0),
        ),
        figure(
            &format!("p99 event-to-follow-up ms {rate}"),
            v("rate", "e2e_p99"),
            "< 50",
            Box::new(|x| x < 50.0),
        ),
        figure(
            "RSS MiB with the contacts (after lookups)",
            v("contacts", "rss_after_lookups"),
            "< 150 MB",
            Box::new(|x| x * 1.048576 < 150.0),
        ),
        figure(
            "start-up ms with the contacts (median)",
            v("contacts", "startup_median"),
            "< 300",
            Box::new(|x| x < 300.0),
        ),
        figure(
            "start-up ms after a burst of follow-ups on them",
            v("contacts", "startup_after_burst"),
            "< 300",
            Box::new(|x| x < 300.0),
        ),
        figure(
            "hot reload: last old-version event sent after, ms",
            v("reload", "reload_last_v1_event_sent_after"),
            "< 1000",
            Box::new(|x| x < 1000.0),
        ),
        figure(
            "hot reload: lost + run twice",
            v("reload", "lost")
                .into_iter()
                .zip(v("reload", "run_twice"))
                .map(|(a, b)| a.zip(b).map(|(a, b)| a + b))
                .collect(),
            "0",
            Box::new(|x| x == 0.0),
        ),
    ]
}

fn summary(figures: &[Figure], rounds: usize) {
    let show = |x: Option<f64>| x.map(|x| format!("{x}")).unwrap_or_else(|| "-".into());
    println!("\n== summary vs the targets of issue 7 ==");
    let measured = if rounds > 1 { "median" } else { "measured" };
    println!(
        "  {:<52} {:>10} {:>10} {:>5}{}",
        "figure",
        measured,
        "target",
        "met",
        if rounds > 1 { "  each round" } else { "" }
    );
    for f in figures {
        let each = if rounds > 1 {
            let values: Vec<String> = f.each.iter().map(|x| show(*x)).collect();
            format!("  {}", values.join(" / "))
        } else {
            String::new()
        };
        println!(
            "  {:<52} {:>10} {:>10} {:>5}{each}",
            f.name,
            show(f.median()),
            f.target,
            f.met()
        );
    }
}

/// One case, after the machine has settled; its results printed unless
/// `--json`. A failure is reported on stderr.
fn run_case(rt: &tokio::runtime::Runtime, opts: &Opts, case: Case) -> Result<Results, ()> {
    // Let the previous case's after-effects (a server's last flush,
    // deleted temp files) settle: up to 10 s for a mostly idle second.
    let mut idle = machine_idle(Duration::from_secs(1));
    for _ in 0..9 {
        if idle >= 0.8 {
            break;
        }
        idle = machine_idle(Duration::from_secs(1));
    }
    let result = match case {
        Case::Baseline | Case::SledFlush => baseline_case(rt, opts, case),
        Case::Ingest | Case::E2e | Case::Reload => load_case(rt, opts, case, opts.rate, None),
        Case::Rate => load_case(rt, opts, case, Some(opts.fixed_rate), None),
        Case::Contacts => contacts_case(rt, opts),
    };
    match result {
        Ok(mut r) => {
            r.rows.insert(
                0,
                (
                    "machine_idle_before".into(),
                    round(idle * 100.0, 0).into(),
                    "% (the last 1 s before the case)".into(),
                ),
            );
            if !opts.json {
                r.print();
            }
            Ok(r)
        }
        Err(e) => {
            eprintln!("case {} failed: {e}", case.name());
            Err(())
        }
    }
}

/// The figures `--against` compares, by key and label. CPU per event is
/// derived from two rows.
const COMPARED: &[(&str, &str)] = &[
    ("accepted_per_s", "accepted events/s"),
    ("followups_per_s_during_load", "follow-ups/s during load"),
    ("cpu_us_per_event", "server CPU per accepted event, µs"),
    ("ack_p50", "ack p50, ms"),
    ("ack_p99", "ack p99, ms"),
    ("e2e_p99", "event → follow-up p99, ms"),
    ("drain_s", "backlog drain, s"),
    ("server_disk_write_per_event", "disk writes per event, KiB"),
    ("server_file_reads_per_event", "file reads per event"),
    ("server_switches_per_event", "context switches per event"),
    ("server_peak_rss", "server peak RSS, MiB"),
    ("startup_median", "start-up, ms"),
    ("rss_after_lookups", "RSS after lookups, MiB"),
    ("lookup_p99", "lookup p99, ms"),
    ("burst_followups", "follow-ups in the burst"),
    ("startup_after_burst", "start-up after the burst, ms"),
    ("startup_ms_per_kfollowup", "that, per 1,000 follow-ups, ms"),
];

fn compared_value(r: &Results, key: &str) -> Option<f64> {
    if key == "cpu_us_per_event" {
        let (cores, rate) = (r.get("server_cpu_cores")?, r.get("accepted_per_s")?);
        return (rate > 0.0).then(|| round(cores / rate * 1e6, 1));
    }
    if key == "startup_ms_per_kfollowup" {
        // The burst runs for a fixed time, so a faster build writes more
        // and replays more: the start-up per follow-up separates the two.
        let (ms, burst) = (r.get("startup_after_burst")?, r.get("burst_followups")?);
        return (burst > 0.0).then(|| round(ms / burst * 1e3, 2));
    }
    r.get(key)
}

/// `--against`: every case with this build, then with the other, in turn,
/// `opts.rounds` times; then each figure's runs and medians side by side.
fn compare(rt: &tokio::runtime::Runtime, opts: &Opts, other: &Path) -> bool {
    let builds = [opts.bin.clone(), other.to_path_buf()];
    // results[case][build] = each pair's results
    let mut results: Vec<[Vec<Results>; 2]> =
        opts.cases.iter().map(|_| Default::default()).collect();
    let mut failed = false;
    for pair in 1..=opts.rounds {
        for (c, case) in opts.cases.iter().enumerate() {
            for (b, bin) in builds.iter().enumerate() {
                println!(
                    "\n#### pair {pair} of {}, {} with {}",
                    opts.rounds,
                    case.name(),
                    bin.display()
                );
                let with_bin = Opts {
                    bin: bin.clone(),
                    ..opts.clone()
                };
                match run_case(rt, &with_bin, *case) {
                    Ok(r) => results[c][b].push(r),
                    Err(()) => failed = true,
                }
            }
        }
    }
    println!(
        "\n== comparison: A = {}, B = {} ({} runs each, alternating) ==",
        builds[0].display(),
        builds[1].display(),
        opts.rounds
    );
    println!(
        "  {:<9} {:<38} {:>10} {:>10} {:>8}  runs A / runs B",
        "case", "figure", "median A", "median B", "B vs A"
    );
    for (c, case) in opts.cases.iter().enumerate() {
        for (key, label) in COMPARED {
            let runs: [Vec<f64>; 2] = [0, 1].map(|b| {
                results[c][b]
                    .iter()
                    .filter_map(|r| compared_value(r, key))
                    .collect()
            });
            if runs[0].is_empty() && runs[1].is_empty() {
                continue;
            }
            let med = |v: &[f64]| (!v.is_empty()).then(|| median(&mut v.to_vec()));
            let (a, b) = (med(&runs[0]), med(&runs[1]));
            let change = match (a, b) {
                (Some(a), Some(b)) if a != 0.0 => format!("{:+.1}%", (b / a - 1.0) * 100.0),
                _ => "-".into(),
            };
            let show = |m: Option<f64>| m.map_or("-".to_string(), |m| round(m, 3).to_string());
            let list = |v: &[f64]| {
                v.iter()
                    .map(|x| round(*x, 3).to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "  {:<9} {:<38} {:>10} {:>10} {:>8}  {} / {}",
                case.name(),
                label,
                show(a),
                show(b),
                change,
                list(&runs[0]),
                list(&runs[1])
            );
        }
    }
    !failed
}

/// wrk's threads, as the issue ran it (`-t2`).
const WRK_THREADS: u64 = 2;

/// `--wrk-kit DIR`: the ingest case's server configuration and workflow,
/// distinct events signed as the bench's clients sign them (wrk's Lua
/// cannot sign), one request per line with CR and LF escaped, split
/// between wrk's threads, and a script that sends each once. Events for
/// --duration at 30,000/s, more than this server accepts.
fn write_wrk_kit(dir: &Path, opts: &Opts) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("workflows"))?;
    std::fs::write(dir.join("ringback.yaml"), config_yaml(None))?;
    std::fs::write(
        dir.join("workflows").join("ingest-only.yaml"),
        INGEST_ONLY_WORKFLOW,
    )?;
    let count = (opts.duration.as_secs_f64() * 30_000.0) as u64;
    // Distinct call ids on every kit.
    let run = format!("wrk{:x}", jiff::Timestamp::now().as_millisecond());
    let unix = jiff::Timestamp::now().as_second().max(0) as u64;
    for thread in 0..WRK_THREADS {
        let mut out = std::io::BufWriter::new(std::fs::File::create(
            dir.join(format!("requests-{thread}.txt")),
        )?);
        for idx in (thread..count).step_by(WRK_THREADS as usize) {
            let body = String::from_utf8(meta_missed_call(&run, idx, unix)).expect("UTF-8");
            let request = format!(
                "POST /hooks/meta HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n{body}",
                sign(body.as_bytes()),
                body.len()
            );
            writeln!(out, "{}", request.replace('\r', "\\r").replace('\n', "\\n"))?;
        }
        out.flush()?;
    }
    let dir_text = dir.canonicalize()?.display().to_string();
    std::fs::write(
        dir.join("post.lua"),
        format!(
            r#"-- Written by `cargo bench --bench load -- --wrk-kit`: each wrk thread
-- sends its own share of the signed events, each once (a repeated event
-- would be a duplicate).
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  requests = {{}}
  for line in io.lines("{dir_text}/requests-" .. id .. ".txt") do
    requests[#requests + 1] = line:gsub("\\r", "\r"):gsub("\\n", "\n")
  end
  sent = 0
end

function request()
  sent = sent + 1
  return requests[sent]
end
"#
        ),
    )?;
    println!(
        "wrote {count} events for wrk into {dir_text}. Start the server and drive it:\n\
         \x20 {bin} serve --config {dir_text}/ringback.yaml --workflows {dir_text}/workflows --data {dir_text}/data --listen 127.0.0.1:18080\n\
         \x20 wrk -t{WRK_THREADS} -c{clients} -d{secs}s -s {dir_text}/post.lua http://127.0.0.1:18080/hooks/meta\n\
         wrk's threads load their requests one after the other, and its printed rate does not\n\
         allow for it: count the server's accepted events per second (`event accepted` lines in\n\
         its log, or ringback_events_total on /metrics) instead.",
        bin = opts.bin.display(),
        clients = opts.clients,
        secs = opts.duration.as_secs().max(1),
    );
    Ok(())
}

fn main() {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    if !opts.bin.exists() {
        eprintln!(
            "no ringback binary at {}: run `cargo build --release` or set RINGBACK_BIN",
            opts.bin.display()
        );
        std::process::exit(2);
    }
    if let Some(dir) = &opts.wrk_kit {
        match write_wrk_kit(dir, &opts) {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!("cannot write the wrk kit into {}: {e}", dir.display());
                std::process::exit(1);
            }
        }
    }
    t0();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    if !opts.json {
        println!(
            "ringback load bench: {} clients, {:.1} s per case, binary {}",
            opts.clients,
            opts.duration.as_secs_f64(),
            opts.bin.display()
        );
    }
    if let Some(dir) = &opts.callgrind {
        let ok = callgrind(&rt, &opts, dir);
        rt.shutdown_timeout(Duration::from_secs(2));
        std::process::exit(if ok { 0 } else { 1 });
    }
    if let Some(other) = &opts.against {
        if !other.exists() {
            eprintln!("no ringback binary at {} (--against)", other.display());
            std::process::exit(2);
        }
        let ok = compare(&rt, &opts, other);
        rt.shutdown_timeout(Duration::from_secs(2));
        std::process::exit(if ok { 0 } else { 1 });
    }
    let mut rounds: Vec<Vec<Results>> = Vec::new();
    let mut failed = false;
    for round_no in 1..=opts.rounds {
        if opts.rounds > 1 && !opts.json {
            println!("\n#### round {round_no} of {}", opts.rounds);
        }
        let mut all = Vec::new();
        for case in opts.cases.clone() {
            match run_case(&rt, &opts, case) {
                Ok(r) => all.push(r),
                Err(()) => failed = true,
            }
        }
        rounds.push(all);
    }
    let figures = figures(&rounds, &opts);
    if opts.json {
        let cases: Vec<Value> = rounds
            .iter()
            .enumerate()
            .flat_map(|(i, all)| {
                all.iter().map(move |r| {
                    let mut case = r.json();
                    case["round"] = (i + 1).into();
                    case
                })
            })
            .collect();
        let summary: Vec<Value> = figures.iter().map(Figure::json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "clients": opts.clients,
                "duration_s": opts.duration.as_secs_f64(),
                "rounds": opts.rounds,
                "cases": cases,
                "summary": summary,
            }))
            .expect("JSON serialises")
        );
    } else {
        summary(&figures, opts.rounds);
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    if failed {
        std::process::exit(1);
    }
}

/// `--callgrind DIR`: each chosen case (ingest, e2e) run twice under
/// callgrind at a low fixed rate, for the duration and for a third of
/// it; the difference of the two runs' inclusive counts, per event
/// accepted in between, is what one more event costs, start-up and
/// shut-down cancelling out. Instruction counts stay put on a machine
/// whose timings drift by a tenth between runs of the same binary.
fn callgrind(rt: &tokio::runtime::Runtime, opts: &Opts, dir: &Path) -> bool {
    if !Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("--callgrind needs valgrind (apt-get install valgrind)");
        return false;
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return false;
    }
    let mut cases: Vec<Case> = opts
        .cases
        .iter()
        .copied()
        .filter(|c| matches!(c, Case::Ingest | Case::E2e))
        .collect();
    cases.dedup();
    if cases.is_empty() {
        cases.push(Case::E2e);
    }
    let rate = opts.rate.unwrap_or(20.0);
    let long = opts.duration;
    let short = long / 3;
    let mut ok = true;
    for case in cases {
        let mut counts = Vec::new();
        for duration in [short, long] {
            let tag = format!("{}-{}ms", case.name(), duration.as_millis());
            let mut run = opts.clone();
            run.duration = duration;
            run.rate = Some(rate);
            run.callgrind_out = Some(dir.join(format!("{tag}.%p")));
            let measured = load_case(rt, &run, case, run.rate, None)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    let accepted = r
                        .get("accepted")
                        .ok_or("the case reported no accepted count")?
                        as u64;
                    Ok((accepted, inclusive_counts(dir, &tag)?))
                });
            match measured {
                Ok(m) => counts.push(m),
                Err(e) => {
                    eprintln!("callgrind {}: {e}", case.name());
                    ok = false;
                }
            }
        }
        if let [(a_events, a), (b_events, b)] = &counts[..] {
            let events = b_events.saturating_sub(*a_events);
            print_per_event(case, rate, (short, long), events, a, b);
        }
    }
    ok
}

/// The inclusive instruction count of every function in the newest
/// callgrind output named `<tag>.<pid>` in `dir` (`callgrind_annotate
/// --inclusive=yes`; its annotated listing is kept as `<file>.inc`).
fn inclusive_counts(dir: &Path, tag: &str) -> Result<HashMap<String, u64>, String> {
    let prefix = format!("{tag}.");
    let newest = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix) && name[prefix.len()..].chars().all(|c| c.is_ascii_digit())
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .ok_or_else(|| format!("no callgrind output {prefix}<pid> in {}", dir.display()))?
        .path();
    let out = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(&newest)
        .output()
        .map_err(|e| format!("callgrind_annotate: {e}"))?;
    if !out.status.success() {
        return Err(format!("callgrind_annotate failed on {}", newest.display()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let listing = newest.with_extension(format!(
        "{}.inc",
        newest
            .extension()
            .map(|e| e.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&listing, text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(parse_inclusive(&text))
}

/// `callgrind_annotate` lines (`  1,234 ( 0.5%)  file:function [binary]`)
/// as `file:function` → count. Call-site lines (`=> file:function (N x)`)
/// are left out: they repeat their function's count under a name that
/// differs between runs. So is the annotated source after the function
/// list: its lines (`41,300 ( 0.1%)      self.char_at(self.offset())`)
/// look like functions, the same text recurs in many files, and which
/// one a run kept decided what the difference showed (a regex parser's
/// line at 41 k "per event", all of it the one-off phone metadata load).
fn parse_inclusive(text: &str) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for line in text.lines() {
        if line.starts_with("-- Auto-annotated source") {
            break;
        }
        let line = line.trim_start();
        let Some((number, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(count) = number.replace(',', "").parse::<u64>() else {
            continue;
        };
        let Some((_, name)) = rest.split_once(")  ") else {
            continue;
        };
        if name.starts_with("=>") {
            continue;
        }
        let name = name.split(" [").next().unwrap_or(name);
        counts.insert(name.to_string(), count);
    }
    counts
}

/// Per event, the functions that cost the most (totals, the threads'
/// start wrappers and sled's start-up spin left out).
fn print_per_event(
    case: Case,
    rate: f64,
    (short, long): (Duration, Duration),
    events: u64,
    short_counts: &HashMap<String, u64>,
    long_counts: &HashMap<String, u64>,
) {
    println!(
        "\n== callgrind, {} case at {rate} events/s: {:.1} s against {:.1} s, {events} events apart ==",
        case.name(),
        short.as_secs_f64(),
        long.as_secs_f64()
    );
    if events == 0 {
        println!("  no events between the two runs: nothing to divide by");
        return;
    }
    let skip = |name: &str| {
        name.starts_with("PROGRAM TOTALS")
            || name.contains("events annotated")
            || name.contains("sled::lazy::Lazy")
            || name.contains("init_mu")
            || name.contains("thread_start")
            || name.contains("start_thread")
            || name.contains("__rust_begin_short_backtrace")
            || name.contains("FnOnce::call_once")
    };
    // A function inlined into several files has a line per file: the
    // largest stands for it.
    let mut by_function: HashMap<&str, f64> = HashMap::new();
    for (name, &b) in long_counts.iter().filter(|(name, _)| !skip(name)) {
        let a = short_counts.get(name).copied().unwrap_or(0);
        let per_event = (b as f64 - a as f64) / events as f64;
        // `file:function`: the first colon ends the file (C and assembly
        // files' functions as well as Rust's).
        let function = name.split_once(':').map_or(name.as_str(), |(_, f)| f);
        let slot = by_function.entry(function).or_insert(f64::MIN);
        *slot = slot.max(per_event);
    }
    let mut rows: Vec<(f64, &str)> = by_function.into_iter().map(|(f, v)| (v, f)).collect();
    rows.sort_by(|x, y| y.0.total_cmp(&x.0));
    for (per_event, function) in rows.iter().take(40) {
        println!("  {:9.1} k  {function}", per_event / 1000.0);
    }
}
