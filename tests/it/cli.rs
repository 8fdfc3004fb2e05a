//! The `contacts`, `executions` and `run` subcommands, on the built binary:
//! the admin API clients against a real server started in-process, and
//! `run` against real data folders and a real local HTTP receiver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringback::store::{Contact, Store};
use serde_json::Value;

use crate::support::{TestServer, CONFIG, ENV, WAZZAP_MISSED};

const BIN: &str = env!("CARGO_BIN_EXE_ringback");

/// What a run of the binary printed.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Run the binary in an empty folder (so no ./ringback.yaml is picked up),
/// with none of ringback's variables set but those in `env`.
async fn ringback(args: &[&str], env: &[(&str, &str)]) -> Out {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let cwd = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.current_dir(cwd.path())
            .args(&args)
            .env("RUST_LOG", "warn");
        for var in [
            "RINGBACK_ADMIN_TOKEN",
            "RINGBACK_CONFIG",
            "RINGBACK_LISTEN",
            "RINGBACK_DATA",
            "RINGBACK_WORKFLOWS",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env);
        let out = cmd.output().expect("run ringback");
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn server_url(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn people_csv(dir: &Path) -> PathBuf {
    let path = dir.join("people.csv");
    std::fs::write(
        &path,
        "phone,name,country,tags,email\n\
         +5215512345678,\"Ana, the boss\",MX,vip;lead,ana@example.com\n\
         not-a-phone,Bob,,lead,\n\
         5215512345679,Cy,,lead|new,\n\
         +34600111222,,ES,,dee@example.es\n",
    )
    .unwrap();
    path
}

/// The parts of a contact an import sets.
fn portable(c: &Contact) -> Value {
    serde_json::json!({
        "phone": c.phone,
        "name": c.name,
        "country": c.country,
        "tags": c.tags,
        "fields": c.fields,
    })
}

fn all_contacts(store: &Store) -> Vec<Contact> {
    store.list_contacts(None, None, 1000, None).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_a_bad_row_by_its_line_and_imports_the_rest() {
    let server = TestServer::start(CONFIG, ENV).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = people_csv(dir.path());
    let url = server_url(&server);
    let out = ringback(
        &[
            "contacts",
            "import",
            csv.to_str().unwrap(),
            "--server",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(
        out.code,
        Some(1),
        "a failed row fails the import: {}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("people.csv:3: phone: `not-a-phone` is not a phone number"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("imported 3, failed 1"),
        "{}",
        out.stderr
    );

    let contacts = all_contacts(&server.store);
    assert_eq!(contacts.len(), 3);
    let ana = server.store.contact("+5215512345678").unwrap().unwrap();
    assert_eq!(ana.name.as_deref(), Some("Ana, the boss"));
    assert_eq!(ana.country.as_deref(), Some("MX"));
    assert_eq!(ana.tags.iter().collect::<Vec<_>>(), ["lead", "vip"]);
    assert_eq!(ana.fields["email"], "ana@example.com");
    let cy = server.store.contact("+5215512345679").unwrap().unwrap();
    assert_eq!(cy.tags.iter().collect::<Vec<_>>(), ["lead", "new"]);
    assert!(cy.fields.is_empty(), "an empty cell sets no field");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_imports_back_into_another_server_unchanged_as_csv_and_as_json() {
    let source = TestServer::start(CONFIG, ENV).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = people_csv(dir.path());
    ringback(
        &[
            "contacts",
            "import",
            csv.to_str().unwrap(),
            "--server",
            &server_url(&source),
        ],
        &[],
    )
    .await;
    let expected: Vec<_> = all_contacts(&source.store).iter().map(portable).collect();
    assert_eq!(expected.len(), 3);

    for format in ["csv", "json"] {
        let out = ringback(
            &[
                "contacts",
                "export",
                "--format",
                format,
                "--server",
                &server_url(&source),
            ],
            &[],
        )
        .await;
        out.ok();
        assert!(
            out.stderr.contains("exported 3 contact(s)"),
            "{}",
            out.stderr
        );
        if format == "csv" {
            assert!(
                out.stdout.starts_with("phone,name,country,tags,email\n"),
                "{}",
                out.stdout
            );
            assert!(out.stdout.contains("lead;vip"), "{}", out.stdout);
        } else {
            let parsed: Vec<Value> = serde_json::from_str(&out.stdout).expect("a JSON array");
            assert_eq!(parsed.len(), 3);
        }
        let file = dir.path().join(format!("export.{format}"));
        std::fs::write(&file, &out.stdout).unwrap();

        let target = TestServer::start(CONFIG, ENV).await;
        ringback(
            &[
                "contacts",
                "import",
                file.to_str().unwrap(),
                "--server",
                &server_url(&target),
            ],
            &[],
        )
        .await
        .ok();
        let got: Vec<_> = all_contacts(&target.store).iter().map(portable).collect();
        assert_eq!(got, expected, "{format} round trip");
        target.stop().await;
    }
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_tag_and_get_prints_one_contact() {
    let server = TestServer::start(CONFIG, ENV).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = people_csv(dir.path());
    let url = server_url(&server);
    ringback(
        &[
            "contacts",
            "import",
            csv.to_str().unwrap(),
            "--server",
            &url,
        ],
        &[],
    )
    .await;

    let out = ringback(&["contacts", "list", "--tag", "vip", "--server", &url], &[]).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one contact:\n{}", out.stdout);
    assert!(lines[0].starts_with("PHONE"), "{}", out.stdout);
    assert!(
        lines[1].starts_with("+5215512345678  Ana, the boss"),
        "{}",
        out.stdout
    );

    let out = ringback(
        &[
            "contacts", "list", "--tag", "lead", "--json", "--server", &url,
        ],
        &[],
    )
    .await;
    out.ok();
    let listed: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let phones: Vec<&str> = listed
        .iter()
        .map(|c| c["phone"].as_str().unwrap())
        .collect();
    assert_eq!(phones, ["+5215512345678", "+5215512345679"]);

    // Without --limit every page is followed; with it, the list stops there.
    let out = ringback(&["contacts", "list", "--json", "--server", &url], &[]).await;
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&out.ok().stdout)
            .unwrap()
            .len(),
        3
    );
    let out = ringback(
        &[
            "contacts", "list", "--json", "--limit", "2", "--server", &url,
        ],
        &[],
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&out.ok().stdout)
            .unwrap()
            .len(),
        2
    );

    let out = ringback(&["contacts", "get", "+34600111222", "--server", &url], &[]).await;
    out.ok();
    let contact: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(contact["country"], "ES");
    assert_eq!(contact["fields"]["email"], "dee@example.es");

    let out = ringback(&["contacts", "get", "+34600999999", "--server", &url], &[]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("no contact with phone +34600999999"),
        "the server's message: {}",
        out.stderr
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_list_and_show_follow_a_run_of_a_posted_event() {
    let workflow =
        std::fs::read_to_string(repo_path("workflows/missed-call-followup.yaml")).unwrap();
    let server =
        TestServer::start_with_workflows(CONFIG, ENV, &[("missed-call-followup.yaml", &workflow)])
            .await;
    let answer = server
        .post(
            "wazzap",
            WAZZAP_MISSED,
            &[("X-Webhook-Token", "wz-token-123")],
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    crate::support::finished_runs(&server.store, 1).await;
    let url = server_url(&server);

    let out = ringback(
        &[
            "executions",
            "list",
            "--workflow",
            "missed-call-followup",
            "--server",
            &url,
        ],
        &[],
    )
    .await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    let columns: Vec<&str> = lines[1].split_whitespace().collect();
    let id = columns[0];
    assert!(id.starts_with("run_"), "{}", out.stdout);
    assert_eq!(
        &columns[1..5],
        [
            "missed-call-followup",
            "succeeded",
            "call.missed",
            "+5215587654321"
        ]
    );

    let out = ringback(
        &[
            "executions",
            "list",
            "--status",
            "failed",
            "--json",
            "--server",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(out.ok().stdout.trim(), "[]");

    let out = ringback(&["executions", "show", id, "--server", &url], &[]).await;
    out.ok();
    // The full record first, as JSON...
    let json_end = out.stdout.find("\n}\n").expect("a JSON object first") + 2;
    let record: Value = serde_json::from_str(&out.stdout[..json_end]).unwrap();
    assert_eq!(record["id"], id);
    assert_eq!(record["event"]["caller"], "+5215587654321");
    let steps = record["steps"].as_array().unwrap();
    assert_eq!(steps.last().unwrap()["kind"], "send_message");
    // ...then the trace, one line per step, in order.
    let trace = &out.stdout[json_end..];
    let step_lines: Vec<&str> = trace
        .lines()
        .filter(|l| l.starts_with("  ") && !l.trim().is_empty())
        .collect();
    assert_eq!(step_lines.len(), steps.len(), "{trace}");
    assert!(
        step_lines[2].trim_start().starts_with("1.else.0"),
        "{trace}"
    );
    assert!(step_lines[2].contains("create_contact"), "{trace}");
    assert!(
        step_lines.last().unwrap().contains("send_message"),
        "{trace}"
    );
    assert!(trace.contains("status: succeeded"), "{trace}");

    let out = ringback(
        &[
            "executions",
            "show",
            "run_00000000deadbeef",
            "--server",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("no execution `run_00000000deadbeef`"),
        "{}",
        out.stderr
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_an_admin_token_asks_for_it_and_the_token_is_never_printed() {
    let config = format!("admin_token: ${{ADMIN}}\n{CONFIG}");
    let mut env = ENV.to_vec();
    env.push(("ADMIN", "tok-very-secret-123"));
    let server = TestServer::start(&config, &env).await;
    let url = server_url(&server);

    let out = ringback(&["contacts", "list", "--server", &url], &[]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("the server needs an admin token: set RINGBACK_ADMIN_TOKEN"),
        "{}",
        out.stderr
    );

    let out = ringback(
        &["executions", "list", "--server", &url],
        &[("RINGBACK_ADMIN_TOKEN", "tok-wrong-456")],
    )
    .await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("admin token was refused"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("tok-wrong-456"), "{}", out.stderr);

    let out = ringback(
        &["contacts", "list", "--server", &url],
        &[("RINGBACK_ADMIN_TOKEN", "tok-very-secret-123")],
    )
    .await;
    out.ok();
    assert!(!out.stdout.contains("tok-very") && !out.stderr.contains("tok-very"));

    // The token can also come from the config the server itself uses.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ringback.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: {}\nadmin_token: tok-very-secret-123\n",
            server.addr
        ),
    )
    .unwrap();
    ringback(
        &["contacts", "list", "--config", cfg.to_str().unwrap()],
        &[],
    )
    .await
    .ok();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named_with_a_hint() {
    // Nothing listens there, and no other test's listener is handed it.
    let port = crate::support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = ringback(&["contacts", "list", "--server", &url], &[]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains(&format!("is `ringback serve` running at {url}?")),
        "{}",
        out.stderr
    );
}

/// A local HTTP receiver that answers 200 and keeps every request body.
fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\nconnection: close\r\n\r\n{\"id\":\"m-1\"}\n",
            );
        }
    });
    (port, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_dry_run_prints_the_trace_and_sends_nothing_while_a_real_run_sends_and_records() {
    let (port, received) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ringback.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
sources:
  wazzap:
    provider: wazzap
    business: "+5215500000000"
connectors:
  whatsapp:
    kind: http
    url: http://127.0.0.1:{port}/send
    timeout: 5s
    retry: {{ schedule: [] }}
outbound:
  allow_cidrs: [127.0.0.1/32]
"#
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let workflow = repo_path("workflows/missed-call-followup.yaml");
    let payload = repo_path("tests/fixtures/wazzap/call_missed.json");
    let args = |dry: bool| {
        let mut a = vec![
            "run".to_string(),
            workflow.display().to_string(),
            "--event".into(),
            payload.display().to_string(),
            "--config".into(),
            cfg.display().to_string(),
            "--data".into(),
            data.display().to_string(),
        ];
        if dry {
            a.push("--dry-run".into());
        }
        a
    };

    let dry = args(true);
    let out = ringback(&dry.iter().map(String::as_str).collect::<Vec<_>>(), &[]).await;
    out.ok();
    let s = &out.stdout;
    assert!(
        s.contains("event     call.missed from +5215512345678 (source wazzap"),
        "{s}"
    );
    assert!(s.contains("1.else.0  create_contact"), "{s}");
    assert!(
        s.lines().any(|l| l.trim_start().starts_with("input:")
            && l.contains(r#""text":"Hi, sorry we missed your call."#)),
        "the rendered message is shown: {s}"
    );
    assert!(s.contains(r#""status":"dry-run""#), "{s}");
    assert!(s.contains("status: succeeded"), "{s}");
    assert!(s.contains("nothing was sent or saved"), "{s}");
    assert!(
        received.lock().unwrap().is_empty(),
        "a dry run sent {:?}",
        received.lock().unwrap()
    );
    assert!(!data.exists(), "a dry run does not touch the data folder");

    let real = args(false);
    let out = ringback(&real.iter().map(String::as_str).collect::<Vec<_>>(), &[]).await;
    out.ok();
    assert!(out.stdout.contains("recorded as run_"), "{}", out.stdout);
    let bodies = received.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(
        bodies[0].contains("sorry we missed your call"),
        "{}",
        bodies[0]
    );
    let store = Store::open(&data, 8 << 20).unwrap();
    assert_eq!(store.execution_count(), 1);
    let contact = store.contact("+5215512345678").unwrap().expect("created");
    assert!(contact.tags.contains("missed-call-followup"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_data_folder_a_running_server_holds() {
    let server = TestServer::start(CONFIG, ENV).await;
    let data = server
        .workflows_dir()
        .parent()
        .expect("the server's folder")
        .join("data");
    assert!(data.join("db").exists(), "the server's data folder");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ringback.yaml");
    std::fs::write(&cfg, "connectors:\n  whatsapp: { kind: log }\n").unwrap();
    let workflow = repo_path("workflows/missed-call-followup.yaml");
    let payload = repo_path("tests/fixtures/wazzap/call_missed.json");
    let out = ringback(
        &[
            "run",
            workflow.to_str().unwrap(),
            "--event",
            payload.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(
        out.stderr.contains("is in use by another ringback process"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--dry-run"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "nothing ran: {}", out.stdout);
    server.stop().await;
}

/// `ringback test DIR --config CONFIG`.
async fn ringback_test(dir: &Path, config: &Path) -> Out {
    ringback(
        &[
            "test",
            dir.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    )
    .await
}

/// `ringback test` on the repository's own example workflows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_workflow_has_tests_and_they_pass() {
    let workflows = repo_path("workflows");
    for entry in std::fs::read_dir(&workflows).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if ringback::reload::is_workflow_file(&path) {
            let test = workflows.join(name.replace(".yaml", ".test.yaml"));
            assert!(test.is_file(), "{name} ships without {}", test.display());
        }
    }
    let config = repo_path("ringback.yaml");
    let out = ringback_test(&workflows, &config).await;
    out.ok();
    assert!(
        out.stdout.contains(" 0 failed in 4 files"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
}

/// A copy of the examples with one expectation broken: exit 1 and a diff
/// naming the expected and the actual text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_expectation_fails_with_a_readable_diff() {
    let dir = tempfile::tempdir().unwrap();
    let src = repo_path("workflows");
    std::fs::copy(
        src.join("missed-call-followup.yaml"),
        dir.path().join("missed-call-followup.yaml"),
    )
    .unwrap();
    let fixtures = repo_path("tests/fixtures");
    let tests = std::fs::read_to_string(src.join("missed-call-followup.test.yaml"))
        .unwrap()
        .replace("../tests/fixtures", fixtures.to_str().unwrap())
        .replace(
            "Hi Ana, sorry we missed your call",
            "Hello Ana, sorry we missed your call",
        );
    std::fs::write(dir.path().join("missed-call-followup.test.yaml"), tests).unwrap();
    let config = repo_path("ringback.yaml");
    let out = ringback_test(dir.path(), &config).await;
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("FAIL  a known caller is greeted by name and keeps their tags"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "-   text: 'Hello Ana, sorry we missed your call. Book a time that suits you: https://cal.example/book'"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "+   text: 'Hi Ana, sorry we missed your call. Book a time that suits you: https://cal.example/book'"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("5 passed, 1 failed"), "{}", out.stdout);
}

/// A debounce keyed by a field the event lacks fails its run with the
/// reason, rather than putting every such event under one empty key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounce_key_that_renders_empty_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ringback.yaml");
    std::fs::write(
        &config,
        "sources:\n  relay: { provider: standard }\nconnectors:\n  whatsapp: { kind: log }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("once.yaml"),
        r#"name: once
on: { events: [form.submitted] }
steps:
  - debounce: { key: "{{event.caller}}", for: 2m }
  - log: "one per caller"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("once.test.yaml"),
        r#"tests:
  - name: an event without a caller
    event:
      source: relay
      payload: { id: evt_1, type: form.submitted, created_at: "2026-05-25T08:11:42Z", data: { object: { form_id: f1 } } }
    expect:
      runs: [{ status: failed, error: "the key rendered empty", steps: [debounce] }]
"#,
    )
    .unwrap();
    let out = ringback_test(dir.path(), &config).await;
    out.ok();
    assert!(out.stdout.contains("1 passed, 0 failed"), "{}", out.stdout);
}

/// After a `wait`, `contact` is the contact as it is now: a caller who
/// was tagged by another run during the wait (they called back and
/// talked to someone) gets no "sorry we missed you". It used to be the
/// contact as the steps before the wait had left it, and the follow-up
/// went out anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_wait_the_steps_see_the_contact_as_it_is_now() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ringback.yaml");
    std::fs::write(&config, WAIT_CONFIG).unwrap();
    std::fs::write(
        dir.path().join("callback.yaml"),
        r#"name: callback
on: { events: [call.missed, call.accepted] }
steps:
  - if: "{{eq event.kind 'call.accepted'}}"
    then:
      - tag: { phone: "{{event.caller}}", add: [talked] }
      - stop: "answered"
  - upsert_contact: { phone: "{{event.caller}}" }
  - wait: { for: 10m }
  - if: "{{contains contact.tags 'talked'}}"
    then:
      - stop: "they talked meanwhile"
  - send_message: { via: whatsapp, to: "{{event.caller}}", text: "Sorry we missed your call" }
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("callback.test.yaml"),
        r#"tests:
  - name: a caller who talked to us during the wait gets no follow-up
    events:
      - payload: { event: call.missed, phone: "+5215512345678" }
      - payload: { event: call.accept, phone: "+5215512345678" }
        after: 5m
    expect:
      runs:
        - { status: stopped, steps: [if, upsert_contact, wait, if, stop] }
        - { status: stopped, steps: [if, tag, stop] }
      requests: []
  - name: a caller nobody talked to gets it after the wait
    event: { payload: { event: call.missed, phone: "+5215512345678" } }
    expect:
      runs: [{ status: succeeded, steps: [if, upsert_contact, wait, if, send_message] }]
      requests: [{ to: "+5215512345678", text: "Sorry we missed your call" }]
"#,
    )
    .unwrap();
    let out = ringback_test(dir.path(), &config).await;
    assert!(out.stdout.contains("2 passed, 0 failed"), "{}", out.stdout);
    out.ok();
}

const WAIT_CONFIG: &str = r#"
sources:
  wazzap: { provider: wazzap }
  waha: { provider: waha, ring_timeout: 45s }
connectors:
  whatsapp: { kind: log }
  crm: { kind: http, url: "https://crm.example/hooks/ringback" }
"#;

/// A workflow that waits for the caller to call back before it sends, and
/// calls a CRM whose answer it uses.
const WAIT_WORKFLOW: &str = r#"
name: callback-or-nudge
on: { events: [call.missed] }
steps:
  - id: crm
    http:
      url: "https://crm.example/api/lookup"
      json: { phone: "{{event.caller}}" }
  - id: callback
    wait: { for: 1h, until: [call.incoming] }
  - if: "{{steps.callback.woken_by}}"
    then:
      - stop: "called back"
  - send_message:
      via: whatsapp
      to: "{{event.caller}}"
      text: "Hi {{steps.crm.body.first_name}}, still need us?"
"#;

const WAIT_TESTS: &str = r#"
tests:
  - name: no call back within the hour gets a nudge an hour later
    answers:
      http: [{ status: 200, body: { first_name: Ana } }]
    event:
      payload: { event: call.missed, phone: "+5215512345678", ts: "2026-03-02T10:00:00Z" }
    expect:
      status: succeeded
      steps:
        - crm
        - { step: callback, output: { woken_by: null } }
        - if
        - send_message
      requests:
        - { step: crm, method: POST, json: { phone: "+5215512345678" } }
        - { step: send_message, text: "Hi Ana, still need us?" }

  - name: a call back within the hour ends the run without a message
    answers:
      http: [{ status: 200, body: { first_name: Ana } }]
    events:
      - payload: { event: call.missed, phone: "+5215512345678", ts: "2026-03-02T10:00:00Z" }
      - payload: { event: call.incoming, phone: "+5215512345678", ts: "2026-03-02T10:20:00Z" }
        after: 20m
    expect:
      status: stopped
      steps: [crm, { step: callback, output: { woken_by: call.incoming } }, if, stop]

  - name: a ring that times out becomes a missed call that waits
    then: 10m
    event: { file: FIXTURES/waha/call_received_noweb.json }
    expect:
      runs:
        - { status: waiting, event: { kind: call.missed, synthetic: true } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_ring_timeouts_and_canned_http_answers_run_in_simulated_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ringback.yaml"), WAIT_CONFIG).unwrap();
    std::fs::write(dir.path().join("callback.yaml"), WAIT_WORKFLOW).unwrap();
    let fixtures = repo_path("tests/fixtures");
    std::fs::write(
        dir.path().join("callback.test.yaml"),
        WAIT_TESTS.replace("FIXTURES", fixtures.to_str().unwrap()),
    )
    .unwrap();
    let started = Instant::now();
    let config = dir.path().join("ringback.yaml");
    let out = ringback_test(dir.path(), &config).await;
    out.ok();
    assert!(out.stdout.contains("3 passed, 0 failed"), "{}", out.stdout);
    // An hour of waiting took no hour (generous: this is not a benchmark).
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_test_file_is_reported_by_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ringback.yaml"), WAIT_CONFIG).unwrap();
    std::fs::write(dir.path().join("callback.yaml"), WAIT_WORKFLOW).unwrap();
    std::fs::write(
        dir.path().join("callback.test.yaml"),
        "tests:\n  - name: typo\n    event: { payload: { event: call.missed, phone: \"+5215512345678\" } }\n    answers:\n      whatsap: [{ status: 200 }]\n    expect: { status: succeded }\n",
    )
    .unwrap();
    let config = dir.path().join("ringback.yaml");
    let out = ringback_test(dir.path(), &config).await;
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("callback.test.yaml:5:7: unknown connector `whatsap`"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("did you mean `whatsapp`?"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("callback.test.yaml:6:23: unknown run status `succeded`"),
        "{}",
        out.stdout
    );
}

/// `ringback schema` validates every shipped workflow and rejects broken
/// ones, checked by an independent JSON Schema validator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_validates_the_shipped_workflows_and_rejects_broken_ones() {
    let out = ringback(&["schema"], &[]).await;
    out.ok();
    let schema: Value = serde_json::from_str(&out.stdout).expect("the schema is JSON");
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("ringback-workflow.json", schema)
        .expect("the schema loads");
    let index = compiler
        .compile("ringback-workflow.json", &mut schemas)
        .expect("the schema is a valid JSON Schema");
    let as_json = |yaml: &str| -> Value { serde_yaml::from_str(yaml).expect("valid YAML") };

    let mut checked = 0;
    for entry in std::fs::read_dir(repo_path("workflows")).unwrap() {
        let path = entry.unwrap().path();
        if !ringback::reload::is_workflow_file(&path) {
            continue;
        }
        let value = as_json(&std::fs::read_to_string(&path).unwrap());
        if let Err(e) = schemas.validate(&value, index) {
            panic!("{} does not validate: {e}", path.display());
        }
        checked += 1;
    }
    assert_eq!(checked, 4);

    let broken = [
        // A typo in a step kind.
        "on: { events: [call.missed] }\nsteps:\n  - send_mesage: { via: whatsapp, to: x, text: hi }\n",
        // `on` is required.
        "steps:\n  - log: hi\n",
        // A duration without a unit.
        "on: { events: [call.missed] }\nsteps:\n  - wait: { for: 10 }\n",
        // `retry` on a step that does not reach outside.
        "on: { events: [call.missed] }\nsteps:\n  - tag: { phone: x, add: [a] }\n    retry: { schedule: [1s] }\n",
        // A missing required argument.
        "on: { events: [call.missed] }\nsteps:\n  - debounce: { key: x }\n",
    ];
    for text in broken {
        assert!(
            schemas.validate(&as_json(text), index).is_err(),
            "the schema accepts a broken workflow:\n{text}"
        );
    }
}

/// A run of an injected test event is marked in `executions list`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_list_marks_runs_of_test_events() {
    let workflow =
        std::fs::read_to_string(repo_path("workflows/missed-call-followup.yaml")).unwrap();
    let server =
        TestServer::start_with_workflows(CONFIG, ENV, &[("missed-call-followup.yaml", &workflow)])
            .await;
    let answer = server
        .client
        .post(server.url("/api/sources/wazzap/test"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    crate::support::finished_runs(&server.store, 1).await;
    let url = server_url(&server);
    let out = ringback(&["executions", "list", "--server", &url], &[]).await;
    out.ok();
    assert!(out.stdout.contains("succeeded (test)"), "{}", out.stdout);
    server.stop().await;
}
