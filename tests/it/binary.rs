//! Tests that run the built `ringback` binary: kill -9 durability, clean
//! shutdown on SIGTERM, start-up refusals, and the `parse` command.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringback");

const CONFIG: &str = r#"
sources:
  wazzap:
    provider: wazzap
    business: "+5215500000000"
connectors:
  whatsapp: { kind: log }
"#;

struct Running {
    child: Child,
    base: String,
    /// The server's stderr, for the message when it exits badly.
    log: std::path::PathBuf,
}

fn start(dir: &Path, port: u16) -> Running {
    start_logging(dir, port, "warn")
}

/// [`start`] with `RUST_LOG=rust_log`, the server's stderr in
/// `dir/server.log`.
fn start_logging(dir: &Path, port: u16, rust_log: &str) -> Running {
    std::fs::write(dir.join("ringback.yaml"), CONFIG).unwrap();
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let (file, text) = crate::support::RECORD_EVERY_EVENT;
    std::fs::write(dir.join("workflows").join(file), text).unwrap();
    let child = Command::new(BIN)
        .current_dir(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .spawn()
        .expect("start ringback");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = ureq_get(&format!("{base}/healthz")) {
            if resp == "ok" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Running {
        child,
        base,
        log: dir.join("server.log"),
    }
}

/// A blocking GET over a plain socket, so `start` works inside or outside
/// an async runtime. Returns the body.
fn ureq_get(url: &str) -> std::io::Result<String> {
    let answer = plain_request("GET", url, "")?;
    Ok(answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string())
}

/// One blocking HTTP/1.1 request over a plain socket; the whole answer,
/// status line and headers included.
fn plain_request(method: &str, url: &str, body: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut conn = std::net::TcpStream::connect(host)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        conn,
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    Ok(answer)
}

fn body(i: usize) -> String {
    format!(
        r#"{{"event":"call.missed","phone":"+52155{i:08}","country":"MX","ts":"2026-05-14T14:32:11Z"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_survive_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let mut server = start(dir.path(), port);
    let client = reqwest::Client::new();

    // Several concurrent clients; then SIGKILL while they are still posting.
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(usize, String)>::new()));
    let mut clients = Vec::new();
    for c in 0..4 {
        let client = client.clone();
        let url = format!("{}/hooks/wazzap", server.base);
        let accepted = accepted.clone();
        clients.push(tokio::spawn(async move {
            for i in (c * 1000)..(c * 1000 + 1000) {
                match client.post(&url).body(body(i)).send().await {
                    Ok(resp) if resp.status().as_u16() == 202 => {
                        let v: serde_json::Value = resp.json().await.unwrap();
                        let id = v["events"][0].as_str().unwrap().to_string();
                        accepted.lock().unwrap().push((i, id));
                    }
                    Ok(resp) => panic!("unexpected status {}", resp.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Let some requests land, then kill without warning.
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.lock().unwrap().len() < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 300,
        "only {} accepted before the kill",
        accepted.len()
    );

    // Restart on the same data: every accepted event is a duplicate now.
    let mut server = start(dir.path(), port);
    let url = format!("{}/hooks/wazzap", server.base);
    for (i, _) in &accepted {
        let resp = client.post(&url).body(body(*i)).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(
            status, 200,
            "event {i} was acknowledged before the kill but is gone: {text}"
        );
    }
    // And new events still go in.
    let resp = client.post(&url).body(body(99_999)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    stop(&mut server);

    // Every acknowledged event was processed (it has its run, with the
    // event in it) or is still queued for the next start. (Processing it
    // twice would not show here: a second run of the same event and
    // workflow has the same id; the engine's tests cover that.)
    let store = ringback::store::Store::open(&dir.path().join("data"), 8 << 20).unwrap();
    let queued = store.pending_events(usize::MAX).unwrap();
    for (i, id) in &accepted {
        let run = store
            .execution(&crate::support::recorded_run_id(id))
            .unwrap();
        let event = match run {
            Some(run) => (*run.event).clone(),
            None => queued
                .iter()
                .find(|stored| &stored.event.id == id)
                .unwrap_or_else(|| panic!("event {i} ({id}) neither processed nor queued"))
                .event
                .clone(),
        };
        assert_eq!(
            event.caller.as_deref(),
            Some(format!("+52155{i:08}").as_str())
        );
    }
}

fn stop(server: &mut Running) {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(
                status.success(),
                "ringback exited with {status} on SIGTERM; its log:\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ringback did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), crate::support::free_port());
    stop(&mut server);
}

/// `serve` writes its log through a buffer (cli/log_writer.rs): lines
/// still show while it runs, and the last ones are written when it stops.
#[test]
fn log_lines_show_while_serving_and_the_last_are_written_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_logging(dir.path(), crate::support::free_port(), "info");
    let url = format!("{}/hooks/wazzap", server.base);
    let answer = plain_request("POST", &url, &body(1)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let log = dir.path().join("server.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("event accepted")
    {
        assert!(
            Instant::now() < deadline,
            "the accepted event never showed in the log of the running server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(&mut server);
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.contains("shutting down"),
        "the log ends with the shutdown, not with: {last}"
    );
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = start(dir.path(), crate::support::free_port());
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", crate::support::free_port()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another ringback process"), "{err}");
    stop(&mut first);
}

#[test]
fn a_public_address_without_admin_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ringback.yaml"), CONFIG).unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("RINGBACK_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs an admin_token"), "{err}");
}

#[test]
fn config_errors_are_all_printed_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ringback.yaml"),
        "sources:\n  a:\n    provider: wazap\n    tokn: x\nconnectors:\n  b: { kind: meta }\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ringback.yaml:3:15: unknown provider `wazap`"),
        "{err}"
    );
    assert!(
        err.contains("ringback.yaml:4:5: unknown key `tokn`"),
        "{err}"
    );
    assert!(err.contains("needs `phone_number_id`"), "{err}");
}

#[test]
fn an_unset_variable_in_a_required_place_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ringback.yaml"),
        "connectors:\n  wa:\n    kind: meta\n    phone_number_id: \"123\"\n    token: ${RB_TEST_UNSET_TOKEN}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["check"])
        .env_remove("RB_TEST_UNSET_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RB_TEST_UNSET_TOKEN"), "{err}");
}

#[test]
fn parse_prints_one_canonical_event_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("missed.json");
    std::fs::write(&payload, body(7)).unwrap();
    let out = Command::new(BIN)
        .args(["parse", payload.to_str().unwrap(), "--provider", "wazzap"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = BufReader::new(&out.stdout[..])
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["kind"], "call.missed");
    assert_eq!(lines[0]["caller"], "+5215500000007");
    assert_eq!(lines[0]["country"], "MX");
    assert_eq!(lines[0]["provider"], "wazzap");

    std::fs::write(&payload, r#"{"event": "call.missed", "ts": 1}"#).unwrap();
    let out = Command::new(BIN)
        .args(["parse", payload.to_str().unwrap(), "--provider", "wazzap"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("phone"), "{err}");

    // A payload laid out over lines still prints one event a line.
    std::fs::copy("tests/fixtures/meta/terminate_unanswered.json", &payload).unwrap();
    let out = Command::new(BIN)
        .args(["parse", payload.to_str().unwrap(), "--provider", "meta"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let event: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(event["raw"]["entry"][0]["id"], "366634483210360");

    // A Meta batch with one call lacking `from`: the others print, the
    // left-out one is named on stderr, as the server would answer.
    let mut batch: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/meta/batch_two_entries.json")).unwrap();
    batch["entry"][0]["changes"][0]["value"]["calls"][0]
        .as_object_mut()
        .unwrap()
        .remove("from");
    std::fs::write(&payload, batch.to_string()).unwrap();
    let out = Command::new(BIN)
        .args(["parse", payload.to_str().unwrap(), "--provider", "meta"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.lines().count(), 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("left out: field `entry[0].changes[0].value.calls[0].from`: is missing"),
        "{err}"
    );
}
