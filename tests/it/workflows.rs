//! Issue "Workflows", end to end over real HTTP: provider payloads in, the
//! engine runs the shipped (or inline) workflows, and the outcome is read
//! back through the admin API — contacts, executions with their steps,
//! `GET /api/workflows` during hot reload — plus `ringback check` on the
//! built binary.
//!
//! Runs are asynchronous: tests poll `/api/executions` with a bounded wait
//! and never assert on timings. "Nothing happened" is asserted after the
//! engine has drained its queue (an event leaves the queue only once every
//! run it started is recorded).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

/// The sources the tests post to and the two `log` connectors the shipped
/// workflows name. No secrets: signatures are the ingest tests' business.
const WF_CONFIG: &str = r#"
sources:
  wazzap:
    provider: wazzap
    business: "+5215500000000"
  timelines:
    provider: timelinesai
connectors:
  whatsapp: { kind: log }
  slack: { kind: log }
"#;

/// The longest any bounded poll waits for an asynchronous outcome.
const PATIENCE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

const SHIPPED: [&str; 4] = [
    "missed-call-followup.yaml",
    "call-to-chat.yaml",
    "frustration-escalation.yaml",
    "vip-alert.yaml",
];

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A shipped workflow file, as (file name, text).
fn shipped(file: &str) -> (String, String) {
    let path = repo_path("workflows").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (file.to_string(), text)
}

fn all_shipped() -> Vec<(String, String)> {
    SHIPPED.iter().map(|f| shipped(f)).collect()
}

async fn start(files: &[(String, String)]) -> TestServer {
    start_with(WF_CONFIG, &[], files).await
}

async fn start_with(config: &str, env: &[(&str, &str)], files: &[(String, String)]) -> TestServer {
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    TestServer::start_with_workflows(config, env, &files).await
}

/// A Wazzap webhook body; `second` makes the timestamp (and so the event
/// id) unique per call.
fn wazzap(kind: &str, phone: &str, second: u32) -> String {
    json!({
        "event": kind,
        "phone": phone,
        "country": "MX",
        "ts": format!("2026-05-14T14:{:02}:{:02}Z", second / 60, second % 60),
    })
    .to_string()
}

/// Post a body that must be accepted; the new event ids.
async fn accepted(s: &TestServer, source: &str, body: String) -> Vec<String> {
    let a = s.post(source, body, &[]).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let ids = a.event_ids();
    assert!(!ids.is_empty(), "{}", a.text);
    ids
}

/// Post one Wazzap call event; its event id.
async fn call(s: &TestServer, kind: &str, phone: &str, second: u32) -> String {
    accepted(s, "wazzap", wazzap(kind, phone, second))
        .await
        .remove(0)
}

/// Any method, optional JSON body, optional bearer token.
async fn request(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
    bearer: Option<&str>,
) -> Answer {
    let mut req = s.client.request(method, s.url(path));
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Answer { status, text }
}

async fn put(s: &TestServer, path: &str, body: Value) -> Answer {
    request(s, Method::PUT, path, Some(body), None).await
}

async fn patch(s: &TestServer, path: &str, body: Value) -> Answer {
    request(s, Method::PATCH, path, Some(body), None).await
}

async fn delete(s: &TestServer, path: &str) -> Answer {
    request(s, Method::DELETE, path, None, None).await
}

/// `GET` that must answer 200; its JSON.
async fn get_json(s: &TestServer, path: &str) -> Value {
    let a = s.get(path).await;
    assert_eq!(a.status, 200, "GET {path}: {}", a.text);
    a.json()
}

/// Every execution matching `query` (e.g. `workflow=call-to-chat`),
/// newest first, following `next_cursor` to the end.
async fn executions(s: &TestServer, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/executions?limit=1000&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(s, &path).await;
        out.extend(page["executions"].as_array().expect("executions").clone());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn finished(run: &Value) -> bool {
    !matches!(run["status"].as_str(), Some("running" | "waiting"))
}

/// Wait until the engine has processed every accepted event: an event
/// leaves the queue only after all the runs it started are recorded.
async fn settle(s: &TestServer) {
    let deadline = Instant::now() + PATIENCE;
    while s.store.pending_len() > 0 {
        assert!(
            Instant::now() < deadline,
            "the engine did not process the accepted events"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Poll `/api/executions?{query}` until `n` runs there have finished, then
/// (once the engine is idle) check there are exactly `n`.
async fn wait_runs(s: &TestServer, query: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let list = executions(s, query).await;
        if list.iter().filter(|r| finished(r)).count() >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {n} finished run(s) of `{query}`, have: {list:#?}"
        );
        tokio::time::sleep(POLL).await;
    }
    settle(s).await;
    let list = executions(s, query).await;
    assert_eq!(list.len(), n, "runs of `{query}`: {list:#?}");
    assert!(list.iter().all(finished), "{list:#?}");
    list
}

fn of_caller(runs: &[Value], phone: &str) -> Vec<Value> {
    runs.iter()
        .filter(|r| r["event"]["caller"] == json!(phone))
        .cloned()
        .collect()
}

/// The full execution record.
async fn detail(s: &TestServer, run: &Value) -> Value {
    let id = run["id"].as_str().expect("run id");
    get_json(s, &format!("/api/executions/{id}")).await
}

/// The recorded steps of a run with this kind.
fn steps<'a>(run: &'a Value, kind: &str) -> Vec<&'a Value> {
    run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|st| st["kind"] == json!(kind))
        .collect()
}

/// The one step of this kind; fails if there are none or several.
fn step<'a>(run: &'a Value, kind: &str) -> &'a Value {
    let found = steps(run, kind);
    assert_eq!(found.len(), 1, "one `{kind}` step in {run:#}");
    found[0]
}

fn statuses(runs: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = runs
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("?").to_string())
        .collect();
    out.sort();
    out
}

fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

async fn contact(s: &TestServer, phone: &str) -> Value {
    let enc = phone.replace('+', "%2B");
    get_json(s, &format!("/api/contacts/{enc}")).await
}

fn tags(contact: &Value) -> Vec<String> {
    contact["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no tags: {contact}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

async fn workflows(s: &TestServer) -> Vec<Value> {
    get_json(s, "/api/workflows").await["workflows"]
        .as_array()
        .expect("workflows")
        .clone()
}

fn listed<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|w| w["name"] == json!(name))
}

/// Poll `GET /api/workflows` until `ready` holds (hot reload is
/// asynchronous); the list it held for.
async fn wait_workflows(
    s: &TestServer,
    what: &str,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let list = workflows(s).await;
        if ready(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {what}; /api/workflows: {list:#?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------
// The engine

/// One event, one run per workflow, one message: even when the dispatcher
/// sees an event again (it re-reads the queue while runs finish).
#[tokio::test]
async fn each_event_runs_each_workflow_exactly_once() {
    let s = start(&[shipped("missed-call-followup.yaml")]).await;
    let mut events = Vec::new();
    for i in 0..10u32 {
        let caller = format!("+52155123400{i:02}");
        let id = call(&s, "call.missed", &caller, i).await;
        wait_run_for(&s, "missed-call-followup", &id).await;
        events.push((id, caller));
    }
    settle(&s).await;
    let all = executions(&s, "").await;
    for (id, caller) in &events {
        let of_event: Vec<&Value> = all
            .iter()
            .filter(|r| r["event"]["id"] == json!(id))
            .collect();
        assert_eq!(
            of_event.len(),
            1,
            "event {id} ({caller}) ran more than once: {of_event:#?}"
        );
    }
    let mut messages = 0;
    for run in &all {
        messages += steps(&detail(&s, run).await, "send_message").len();
    }
    assert_eq!(messages, events.len(), "one follow-up per missed call");
    s.stop().await;
}

/// Templates reach the provider's payload through `event.raw`, directly
/// or by a name looked up at run time; a workflow that cannot read it
/// still records it (the render data leaves it out only when no template
/// can reach it; `forward` posts it too, see delivery.rs).
#[tokio::test]
async fn templates_read_the_raw_payload_however_they_reach_it() {
    let wf = |name: &str, steps: &str| {
        (
            format!("{name}.yaml"),
            format!("name: {name}\non: {{ events: [call.missed] }}\nsteps:\n{steps}"),
        )
    };
    let s = start(&[
        wf("by-path", "  - log: \"{{event.raw.country}} {{event.raw.phone}}\"\n"),
        wf(
            "by-lookup",
            "  - set: { field: raw }\n  - log: \"{{lookup (lookup event vars.field) 'country'}}\"\n",
        ),
        wf("plain", "  - log: \"{{event.caller}}\"\n"),
    ])
    .await;
    let id = call(&s, "call.missed", "+5215512340001", 1).await;
    let text = |run: &Value| step(run, "log")["output"]["text"].clone();
    let run = wait_run_for(&s, "by-path", &id).await;
    assert_eq!(text(&run), json!("MX +5215512340001"), "{run:#}");
    let run = wait_run_for(&s, "by-lookup", &id).await;
    assert_eq!(text(&run), json!("MX"), "{run:#}");
    // A workflow that cannot read the payload still records it whole.
    let run = wait_run_for(&s, "plain", &id).await;
    assert_eq!(text(&run), json!("+5215512340001"), "{run:#}");
    assert_eq!(run["event"]["raw"]["country"], json!("MX"), "{run:#}");
    s.stop().await;
}

// ---------------------------------------------------------------------
// The shipped workflows

#[tokio::test]
async fn a_missed_call_becomes_a_contact_and_a_whatsapp_follow_up() {
    let s = start(&all_shipped()).await;
    let seed = std::fs::read_to_string(repo_path(
        "tests/fixtures/wazzap/call_missed_seed_example.json",
    ))
    .unwrap();
    let caller = "+5215587654321";
    accepted(&s, "wazzap", seed.clone()).await;

    let runs = wait_runs(&s, "workflow=missed-call-followup", 1).await;
    assert_eq!(runs[0]["status"], json!("succeeded"), "{:#}", runs[0]);
    assert_eq!(runs[0]["event"]["caller"], json!(caller));
    let run = detail(&s, &runs[0]).await;
    assert_eq!(run["event"]["kind"], json!("call.missed"));
    let created = step(&run, "create_contact");
    assert_eq!(created["output"]["created"], json!(true), "{created:#}");
    let sent = step(&run, "send_message");
    assert_eq!(sent["status"], json!("succeeded"), "{sent:#}");
    assert_eq!(sent["input"]["via"], json!("whatsapp"));
    assert_eq!(
        sent["output"],
        json!({
            "status": "logged",
            "to": caller,
            "text": "Hi, sorry we missed your call. Book a time that suits you: https://cal.example/book",
        }),
        "the log connector records the message: {sent:#}"
    );

    let c = contact(&s, caller).await;
    assert_eq!(c["phone"], json!(caller));
    assert_eq!(c["country"], json!("MX"));
    assert_eq!(tags(&c), vec!["missed-call-followup"]);
    assert_eq!(c["fields"]["first_source"], json!("wazzap"));
    assert_eq!(
        c["fields"]["last_missed_call"],
        json!("2026-05-14T14:32:11Z")
    );
    assert_eq!(c["calls"]["call.missed"], json!(1), "{c:#}");

    // Not a VIP and not ringing: no other shipped workflow ran.
    let all = executions(&s, "").await;
    assert_eq!(all.len(), 1, "{all:#?}");

    // The provider redelivers: a duplicate starts nothing.
    let again = s.post("wazzap", seed, &[]).await;
    assert_eq!(again.status, 200, "{}", again.text);
    settle(&s).await;
    assert_eq!(executions(&s, "").await.len(), 1);

    // A second missed call finds the contact, updates it and follows up again.
    call(&s, "call.missed", caller, 40 * 60).await;
    let runs = wait_runs(&s, "workflow=missed-call-followup", 2).await;
    let run = detail(&s, &runs[0]).await;
    assert_eq!(run["status"], json!("succeeded"), "{run:#}");
    assert!(steps(&run, "create_contact").is_empty(), "{run:#}");
    assert_eq!(step(&run, "update_contact")["status"], json!("succeeded"));
    assert_eq!(step(&run, "send_message")["output"]["to"], json!(caller));
    let c = contact(&s, caller).await;
    assert_eq!(
        c["fields"]["last_missed_call"],
        json!("2026-05-14T14:40:00Z")
    );
    assert_eq!(
        c["fields"]["first_source"],
        json!("wazzap"),
        "update keeps the other fields"
    );
    assert_eq!(tags(&c), vec!["missed-call-followup"]);
    s.stop().await;
}

#[tokio::test]
async fn repeated_rings_are_debounced_to_one_chat_message_per_caller() {
    let s = start(&[shipped("call-to-chat.yaml")]).await;
    let (a, b) = ("+5215512345678", "+5215587654321");
    for second in [1, 2, 3] {
        call(&s, "call.incoming", a, second).await;
    }
    call(&s, "call.incoming", b, 4).await;

    let runs = wait_runs(&s, "workflow=call-to-chat", 4).await;
    let of_a = of_caller(&runs, a);
    assert_eq!(
        statuses(&of_a),
        vec!["debounced", "debounced", "succeeded"],
        "{of_a:#?}"
    );
    let mut messages = 0;
    for run in &of_a {
        let run = detail(&s, run).await;
        let debounce = step(&run, "debounce");
        let sent = steps(&run, "send_message");
        if run["status"] == json!("succeeded") {
            assert_eq!(debounce["output"]["passed"], json!(true));
            assert_eq!(sent.len(), 1, "{run:#}");
            assert_eq!(sent[0]["status"], json!("succeeded"));
            assert_eq!(sent[0]["output"]["to"], json!(a));
            assert_eq!(
                sent[0]["output"]["text"],
                json!("Hi! We saw you trying to call. We answer fastest here in chat: how can we help?")
            );
            messages += 1;
        } else {
            assert_eq!(debounce["output"]["passed"], json!(false), "{run:#}");
            assert!(sent.is_empty(), "a debounced run sends nothing: {run:#}");
            assert!(
                steps(&run, "upsert_contact").is_empty(),
                "a debounced run ends at the debounce step: {run:#}"
            );
        }
    }
    assert_eq!(messages, 1);

    let of_b = of_caller(&runs, b);
    assert_eq!(statuses(&of_b), vec!["succeeded"]);
    let run_b = detail(&s, &of_b[0]).await;
    assert_eq!(step(&run_b, "send_message")["output"]["to"], json!(b));

    for phone in [a, b] {
        assert_eq!(tags(&contact(&s, phone).await), vec!["called"]);
    }
    s.stop().await;
}

/// Whether a frustration-escalation run took the escalation branch.
fn escalated(run: &Value) -> bool {
    step(run, "if")["output"]["branch"] == json!("then")
}

#[tokio::test]
async fn the_fifth_call_within_ten_minutes_escalates() {
    let s = start(&[shipped("frustration-escalation.yaml")]).await;
    let caller = "+5215511112222";
    for n in 1..=5u32 {
        call(&s, "call.incoming", caller, n * 60).await;
        let runs = wait_runs(&s, "workflow=frustration-escalation", n as usize).await;
        let run = detail(&s, &runs[0]).await;
        assert_eq!(run["status"], json!("succeeded"), "{run:#}");
        assert_eq!(step(&run, "count")["output"]["count"], json!(n), "{run:#}");
        if n < 5 {
            assert!(!escalated(&run), "call {n} must not escalate: {run:#}");
            assert!(steps(&run, "alert").is_empty(), "{run:#}");
            let a = s.get("/api/contacts/%2B5215511112222").await;
            assert_eq!(
                a.status, 404,
                "no escalation, no contact after call {n}: {}",
                a.text
            );
        } else {
            assert!(escalated(&run), "the fifth call escalates: {run:#}");
            let alert = step(&run, "alert");
            assert_eq!(alert["status"], json!("succeeded"));
            assert_eq!(alert["input"]["via"], json!("slack"));
            assert_eq!(
                alert["output"]["text"],
                json!(
                    "+5215511112222 has called 5 times in 10 minutes: please answer in chat now."
                )
            );
            assert!(tags(&contact(&s, caller).await).contains(&"priority".to_string()));
        }
    }

    // Another caller's count is their own.
    call(&s, "call.incoming", "+5215533334444", 30).await;
    let runs = wait_runs(&s, "workflow=frustration-escalation", 6).await;
    let other = detail(&s, &of_caller(&runs, "+5215533334444")[0]).await;
    assert_eq!(step(&other, "count")["output"]["count"], json!(1));
    assert!(!escalated(&other));
    s.stop().await;
}

#[tokio::test]
async fn five_calls_at_once_escalate_exactly_once() {
    let s = start(&[shipped("frustration-escalation.yaml")]).await;
    let caller = "+5215522223333";
    for n in 1..=5u32 {
        call(&s, "call.incoming", caller, n).await;
    }
    let runs = wait_runs(&s, "workflow=frustration-escalation", 5).await;
    let mut counts = Vec::new();
    let mut escalations = 0;
    for run in &runs {
        let run = detail(&s, run).await;
        counts.push(step(&run, "count")["output"]["count"].as_u64().unwrap());
        if escalated(&run) {
            escalations += 1;
        }
    }
    counts.sort();
    assert_eq!(counts, vec![1, 2, 3, 4, 5], "each call counted once");
    assert_eq!(escalations, 1);
    assert!(tags(&contact(&s, caller).await).contains(&"priority".to_string()));
    s.stop().await;
}

#[tokio::test]
async fn a_vip_gets_a_human_alert_and_no_bot_message() {
    let s = start(&all_shipped()).await;
    let vip = "+5215599998888";
    let a = put(
        &s,
        "/api/contacts/%2B5215599998888",
        json!({"name": "Ana Vip", "tags": ["vip"]}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);

    call(&s, "call.incoming", vip, 1).await;
    let alerts = wait_runs(&s, "workflow=vip-alert", 1).await;
    let run = detail(&s, &alerts[0]).await;
    assert_eq!(run["status"], json!("succeeded"), "{run:#}");
    let alert = step(&run, "alert");
    assert_eq!(alert["status"], json!("succeeded"));
    assert_eq!(alert["input"]["via"], json!("slack"));
    assert_eq!(
        alert["output"]["text"],
        json!(
            "VIP Ana Vip (+5215599998888) is calling +5215500000000 right now: reach out in chat."
        )
    );
    let chat = wait_runs(&s, "workflow=call-to-chat", 1).await;
    assert_eq!(chat[0]["status"], json!("stopped"), "{:#}", chat[0]);

    call(&s, "call.missed", vip, 2).await;
    let followups = wait_runs(&s, "workflow=missed-call-followup", 1).await;
    assert_eq!(
        followups[0]["status"],
        json!("stopped"),
        "{:#}",
        followups[0]
    );
    let alerts = wait_runs(&s, "workflow=vip-alert", 2).await;
    assert!(alerts.iter().all(|r| r["status"] == json!("succeeded")));

    // No run for the VIP sent a bot message.
    for run in of_caller(&executions(&s, "").await, vip) {
        let run = detail(&s, &run).await;
        assert!(
            steps(&run, "send_message").is_empty(),
            "a VIP got a bot message: {run:#}"
        );
    }
    let c = contact(&s, vip).await;
    assert_eq!(c["name"], json!("Ana Vip"));
    assert_eq!(tags(&c), vec!["missed-call-followup", "vip"]);

    // A caller who is not a VIP still gets the bot, and no alert.
    call(&s, "call.incoming", "+5215577776666", 3).await;
    let chat = wait_runs(&s, "workflow=call-to-chat", 2).await;
    let run = detail(&s, &of_caller(&chat, "+5215577776666")[0]).await;
    assert_eq!(run["status"], json!("succeeded"));
    assert_eq!(step(&run, "send_message")["status"], json!("succeeded"));
    assert_eq!(executions(&s, "workflow=vip-alert").await.len(), 2);
    s.stop().await;
}

// ---------------------------------------------------------------------
// Data from the event never changes the shape of what is recorded or sent

const NAME_ECHO: &str = r#"
name: name-echo
on:
  events: [call.missed]
  sources: [timelines]
steps:
  - upsert_contact:
      phone: "{{event.caller}}"
      name: "{{event.name}}"
      set: { display: "{{event.name}}" }
  - send_message:
      via: whatsapp
      to: "{{event.caller}}"
      text: "Hi {{event.name}}, sorry we missed you"
  - set:
      who: "{{event.name}}"
      card:
        name: "{{event.name}}"
        labels: ["{{event.name}}", lead]
        n: 3
  - alert: { via: slack, text: "{{vars.who}}" }
"#;

#[tokio::test]
async fn a_hostile_caller_name_stays_one_exact_string() {
    let s = start(&[("name-echo.yaml".to_string(), NAME_ECHO.to_string())]).await;
    let name = "Ana \"The Boss\" O'Neil\"}, \"admin\": true, \"x\": {\"y\": [1]}\n{{event.caller}} {{#if true}}yes{{/if}} {{> partial}} \\n {{{raw}}} <b>&amp;</b> end";
    let caller = "+5215544443333";
    let body = json!({
        "event_type": "call:incoming:missed",
        "chat": {"full_name": "Someone Else", "chat_id": 1, "chat_type": "direct", "platform": "whatsapp", "phone": caller},
        "whatsapp_account": {"full_name": "Agent", "phone": "+5215500000000"},
        "call_details": {
            "duration": null, "direction": "incoming", "is_video": false, "status": "Missed",
            "timestamp": "2026-05-24 10:35:18 +0200",
            "message_uid": "c7ec509d-0171-1ead-a84b-000000000001",
            "caller": {"full_name": name, "phone": caller},
            "recipient": {"full_name": "Agent", "phone": "+5215500000000"}
        }
    });
    accepted(&s, "timelines", body.to_string()).await;

    let runs = wait_runs(&s, "workflow=name-echo", 1).await;
    let run = detail(&s, &runs[0]).await;
    assert_eq!(run["status"], json!("succeeded"), "{run:#}");
    assert_eq!(
        run["event"]["name"],
        json!(name),
        "the event keeps the name"
    );

    let sent = step(&run, "send_message");
    assert_eq!(
        sent["input"],
        json!({"via": "whatsapp", "to": caller, "text": format!("Hi {name}, sorry we missed you")})
    );
    assert_eq!(
        sent["output"],
        json!({"status": "logged", "to": caller, "text": format!("Hi {name}, sorry we missed you")})
    );
    let set = step(&run, "set");
    assert_eq!(
        set["output"],
        json!({"who": name, "card": {"name": name, "labels": [name, "lead"], "n": 3}}),
        "each leaf is the exact name, no extra keys"
    );
    assert_eq!(keys(&set["output"]["card"]), vec!["labels", "n", "name"]);
    assert_eq!(
        step(&run, "alert")["output"],
        json!({"status": "logged", "text": name})
    );

    let c = contact(&s, caller).await;
    assert_eq!(c["name"], json!(name));
    assert_eq!(c["fields"], json!({"display": name}));
    s.stop().await;
}

// ---------------------------------------------------------------------
// Hot reload

const HOT_V1: &str = r#"name: hot
on: { events: [call.missed] }
steps:
  - log: "v1 {{event.caller}}"
"#;

/// A typo in a step: the error is at line 5, column 5.
const HOT_BROKEN: &str = r#"name: hot
on: { events: [call.missed] }
steps:
  - log: "v2 {{event.caller}}"
  - sendmessage: { via: whatsapp, to: "{{event.caller}}", text: hi }
"#;

const HOT_V3: &str = r#"name: hot
description: saved by rename
on: { events: [call.missed] }
steps:
  - log: "v3 {{event.caller}}"
"#;

/// The finished run of `workflow` for this event, if it is recorded yet.
async fn run_for(s: &TestServer, workflow: &str, event_id: &str) -> Option<Value> {
    let list = executions(s, &format!("workflow={workflow}")).await;
    let run = list
        .iter()
        .find(|r| r["event"]["id"] == json!(event_id) && finished(r))?;
    Some(detail(s, run).await)
}

/// The finished run of `workflow` for this event; waits for it.
async fn wait_run_for(s: &TestServer, workflow: &str, event_id: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(run) = run_for(s, workflow, event_id).await {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "no finished run of `{workflow}` for event {event_id}: {:#?}",
            executions(s, "").await
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn workflow_files_reload_while_the_server_runs() {
    let s = start(&[]).await;
    let dir = s.workflows_dir();
    let file = dir.join("hot.yaml");
    let caller = "+5215566667777";

    // A new file is listed, then runs on the next event.
    std::fs::write(&file, HOT_V1).unwrap();
    let list = wait_workflows(&s, "the new workflow `hot`", |l| listed(l, "hot").is_some()).await;
    let hot = listed(&list, "hot").unwrap();
    assert_eq!(hot["errors"], json!([]), "{hot:#}");
    assert_eq!(hot["events"], json!(["call.missed"]));
    assert_eq!(hot["file"], json!(file.display().to_string()));
    let v1 = hot["version"].as_str().expect("a version hash").to_string();
    let id = call(&s, "call.missed", caller, 1).await;
    let run = wait_run_for(&s, "hot", &id).await;
    assert_eq!(run["status"], json!("succeeded"), "{run:#}");
    assert_eq!(run["workflow_version"], json!(v1));
    assert_eq!(
        step(&run, "log")["output"]["text"],
        json!(format!("v1 {caller}"))
    );

    // An invalid version: its error is listed with file:line:col, and the
    // last good version keeps running.
    std::fs::write(&file, HOT_BROKEN).unwrap();
    let list = wait_workflows(&s, "the error of the broken `hot`", |l| {
        l.iter().any(|w| {
            w["file"] == json!(file.display().to_string())
                && w["errors"].as_array().is_some_and(|e| !e.is_empty())
        })
    })
    .await;
    let hot = listed(&list, "hot").expect("the last good version is still listed");
    assert_eq!(hot["version"], json!(v1), "{hot:#}");
    let errors = hot["errors"].as_array().unwrap();
    let want = format!("{}:5:5: ", file.display());
    assert!(
        errors.iter().any(|e| e.as_str().unwrap().starts_with(&want)
            && e.as_str().unwrap().contains("sendmessage")),
        "want an error starting {want:?} naming the typo: {errors:#?}"
    );
    let id = call(&s, "call.missed", caller, 2).await;
    let run = wait_run_for(&s, "hot", &id).await;
    assert_eq!(run["workflow_version"], json!(v1), "{run:#}");
    assert_eq!(
        step(&run, "log")["output"]["text"],
        json!(format!("v1 {caller}"))
    );

    // Saved the way many editors do: a temporary file renamed over it.
    let tmp = dir.join("hot.yaml.tmp");
    std::fs::write(&tmp, HOT_V3).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let list = wait_workflows(&s, "the renamed-over `hot`", |l| {
        listed(l, "hot").is_some_and(|w| w["version"] != json!(v1))
    })
    .await;
    let hot = listed(&list, "hot").unwrap();
    assert_eq!(hot["errors"], json!([]), "{hot:#}");
    assert_eq!(hot["description"], json!("saved by rename"));
    let v3 = hot["version"].as_str().unwrap().to_string();
    let id = call(&s, "call.missed", caller, 3).await;
    let run = wait_run_for(&s, "hot", &id).await;
    assert_eq!(run["workflow_version"], json!(v3));
    assert_eq!(
        step(&run, "log")["output"]["text"],
        json!(format!("v3 {caller}"))
    );

    // A new file that never was valid is listed with its errors and no
    // version, and does not run.
    let bad = dir.join("never-valid.yaml");
    std::fs::write(&bad, "name: never\non: { events: [call.missed] }\nsteps:\n  - tag: { phone: \"{{event.caller}}\" }\n").unwrap();
    let list = wait_workflows(&s, "the errors of never-valid.yaml", |l| {
        l.iter()
            .any(|w| w["file"] == json!(bad.display().to_string()))
    })
    .await;
    let entry = list
        .iter()
        .find(|w| w["file"] == json!(bad.display().to_string()))
        .unwrap();
    assert_eq!(entry["version"], Value::Null, "{entry:#}");
    let want = format!("{}:4:", bad.display());
    assert!(
        entry["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e.as_str().unwrap().starts_with(&want))),
        "want an error at {want}: {entry:#}"
    );
    assert!(listed(&list, "never").is_none());

    // Deleted: no longer listed, and takes no new events.
    std::fs::remove_file(&file).unwrap();
    wait_workflows(&s, "`hot` to be gone", |l| {
        l.iter()
            .all(|w| w["name"] != json!("hot") && w["file"] != json!(file.display().to_string()))
    })
    .await;
    let before = executions(&s, "workflow=hot").await.len();
    assert_eq!(before, 3);
    call(&s, "call.missed", caller, 4).await;
    settle(&s).await;
    assert_eq!(
        executions(&s, "workflow=hot").await.len(),
        before,
        "a deleted workflow must not run"
    );
    s.stop().await;
}

const SLOW_V1: &str = r#"name: slow
on: { events: [call.missed] }
steps:
  - id: paused
    wait: { for: 1h, until: [call.accepted] }
  - log: "v1 woken by {{steps.paused.woken_by}}"
"#;

const SLOW_V2: &str = r#"name: slow
on: { events: [call.missed] }
steps:
  - log: "v2"
"#;

#[tokio::test]
async fn a_run_in_flight_finishes_on_the_version_it_started_with() {
    let s = start(&[("slow.yaml".to_string(), SLOW_V1.to_string())]).await;
    let v1 = listed(&workflows(&s).await, "slow").expect("slow is loaded")["version"].clone();
    let caller = "+5215588889999";
    let first = call(&s, "call.missed", caller, 1).await;
    let deadline = Instant::now() + PATIENCE;
    while executions(&s, "workflow=slow").await.is_empty() {
        assert!(Instant::now() < deadline, "the run did not start");
        tokio::time::sleep(POLL).await;
    }

    // The file changes while the run is paused.
    std::fs::write(s.workflows_dir().join("slow.yaml"), SLOW_V2).unwrap();
    wait_workflows(&s, "slow v2", |l| {
        listed(l, "slow").is_some_and(|w| w["version"] != v1)
    })
    .await;

    // Wake the paused run (again, until it has registered and woken).
    let deadline = Instant::now() + PATIENCE;
    let mut second = 10;
    let run = loop {
        if let Some(run) = run_for(&s, "slow", &first).await {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "the paused run never finished: {:#?}",
            executions(&s, "").await
        );
        call(&s, "call.accepted", caller, second).await;
        second += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run["status"], json!("succeeded"), "{run:#}");
    assert_eq!(run["workflow_version"], v1, "{run:#}");
    assert_eq!(
        step(&run, "log")["output"]["text"],
        json!("v1 woken by call.accepted")
    );

    // New events run the new version.
    let id = call(&s, "call.missed", caller, 300).await;
    let new = wait_run_for(&s, "slow", &id).await;
    assert_ne!(new["workflow_version"], v1);
    assert_eq!(step(&new, "log")["output"]["text"], json!("v2"));
    s.stop().await;
}

const HOT_ORIGINAL: &str = r#"name: hot
on: { events: [call.missed] }
steps:
  - log: "original"
"#;

/// A second file claiming a running workflow's name (a copy made in the
/// folder, say) is the one in error; the running workflow keeps running.
#[tokio::test]
async fn a_copy_with_the_same_name_does_not_take_over_a_running_workflow() {
    let s = start(&[("hot.yaml".to_string(), HOT_ORIGINAL.to_string())]).await;
    // The copy appears after the server loaded the original.
    wait_workflows(&s, "the original to load", |l| {
        l.iter().any(|w| w["name"] == "hot")
    })
    .await;
    let dir = s.workflows_dir();
    let original = dir.join("hot.yaml").display().to_string();
    let copy = dir.join("a-copy-of-hot.yaml");
    std::fs::write(&copy, HOT_ORIGINAL.replace("original", "copy")).unwrap();
    let copy = copy.display().to_string();
    let list = wait_workflows(&s, "the duplicate name to be reported", |l| {
        l.iter()
            .any(|w| w["errors"].as_array().is_some_and(|e| !e.is_empty()))
    })
    .await;
    let hot = listed(&list, "hot").expect("hot is still listed");
    assert_eq!(hot["file"], json!(original), "{list:#?}");
    assert_eq!(hot["errors"], json!([]), "{list:#?}");
    let dup = list
        .iter()
        .find(|w| w["file"] == json!(copy))
        .unwrap_or_else(|| panic!("the copy is listed with its error: {list:#?}"));
    assert!(
        dup["errors"].to_string().contains("already named"),
        "{dup:#}"
    );
    let id = call(&s, "call.missed", "+5215561616161", 1).await;
    let run = wait_run_for(&s, "hot", &id).await;
    assert_eq!(run["file"], json!(original), "{run:#}");
    assert_eq!(step(&run, "log")["output"]["text"], json!("original"));
    s.stop().await;
}

// ---------------------------------------------------------------------
// Admin API

/// Page through `/api/contacts?{query}` with `limit`; every page's phones.
async fn contact_pages(s: &TestServer, query: &str, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/contacts?limit={limit}&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", c.replace('+', "%2B")));
        }
        let page = get_json(s, &path).await;
        let phones: Vec<String> = page["contacts"]
            .as_array()
            .expect("contacts")
            .iter()
            .map(|c| c["phone"].as_str().unwrap().to_string())
            .collect();
        assert!(phones.len() <= limit, "{page:#}");
        pages.push(phones);
        assert!(pages.len() < 50, "paging does not end");
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn contacts_can_be_listed_paged_created_merged_and_deleted() {
    let s = start(&[]).await;
    let phones: Vec<String> = (1..=7).map(|i| format!("+52155100000{i:02}")).collect();
    for (i, p) in phones.iter().enumerate() {
        let tag = if i % 2 == 0 { "lead" } else { "customer" };
        let name = if i < 3 {
            format!("Ana {i}")
        } else {
            format!("Bruno {i}")
        };
        let a = put(
            &s,
            &format!("/api/contacts/{}", p.replace('+', "%2B")),
            json!({"name": name, "country": "MX", "tags": [tag], "fields": {"n": i.to_string()}}),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
        assert_eq!(a.json()["phone"], json!(p));
        assert_eq!(a.json()["tags"], json!([tag]));
    }

    // Paging: every contact once, in pages of at most `limit`.
    let pages = contact_pages(&s, "", 3).await;
    let all: Vec<String> = pages.concat();
    assert_eq!(all, phones, "pages: {pages:?}");
    assert!(pages.len() >= 3, "{pages:?}");
    assert_eq!(pages[0].len(), 3);

    // By tag, paged.
    let leads = contact_pages(&s, "tag=lead", 2).await.concat();
    let want: Vec<String> = phones.iter().step_by(2).cloned().collect();
    assert_eq!(leads, want);

    // Tag and text together.
    let lead_anas = contact_pages(&s, "tag=lead&q=ana", 1).await.concat();
    assert_eq!(lead_anas, vec![phones[0].clone(), phones[2].clone()]);

    // By text, in the name (any case) or the phone.
    let anas = contact_pages(&s, "q=aNA", 2).await.concat();
    assert_eq!(anas, phones[..3].to_vec());
    let one = contact_pages(&s, "q=10000005", 10).await.concat();
    assert_eq!(one, vec![phones[4].clone()]);
    let none = get_json(&s, "/api/contacts?q=nobody").await;
    assert_eq!(none, json!({"contacts": [], "next_cursor": null}));

    // PUT again replaces the whole contact: 200, keys not given are gone.
    let path = "/api/contacts/%2B5215510000001";
    let created_at = contact(&s, &phones[0]).await["created_at"].clone();
    let a = put(
        &s,
        path,
        json!({"name": "Ana Replaced", "tags": ["customer"]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let c = a.json();
    assert_eq!(c["name"], json!("Ana Replaced"));
    assert_eq!(c["country"], Value::Null);
    assert_eq!(c["tags"], json!(["customer"]));
    assert_eq!(c["fields"], json!({}));
    assert_eq!(c["created_at"], created_at);
    let leads = contact_pages(&s, "tag=lead", 10).await.concat();
    assert!(
        !leads.contains(&phones[0]),
        "the tag index follows a PUT: {leads:?}"
    );

    // PATCH merges the keys given; a null field is removed.
    let a = patch(&s, path, json!({"fields": {"plan": "gold", "seat": "3"}})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = patch(
        &s,
        path,
        json!({"fields": {"seat": null, "team": "sales"}, "country": "MX"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let c = contact(&s, &phones[0]).await;
    assert_eq!(c["fields"], json!({"plan": "gold", "team": "sales"}));
    assert_eq!(
        c["name"],
        json!("Ana Replaced"),
        "PATCH keeps keys not given"
    );
    assert_eq!(c["country"], json!("MX"));
    assert_eq!(c["tags"], json!(["customer"]));
    let a = patch(&s, path, json!({"name": null})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(contact(&s, &phones[0]).await["name"], Value::Null);
    let a = patch(&s, "/api/contacts/%2B5215519999999", json!({"name": "x"})).await;
    assert_eq!(a.status, 404, "PATCH does not create: {}", a.text);

    // Bad bodies.
    let a = request(&s, Method::PUT, path, None, None).await;
    assert_eq!(a.status, 400, "{}", a.text);
    let a = put(&s, path, json!({"nmae": "typo"})).await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert!(a.error().contains("nmae"), "{}", a.text);

    // A literal + works as well as %2B.
    let a = s.get("/api/contacts/+5215510000002").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["phone"], json!(phones[1]));

    // DELETE: 204, then 404; the contact is gone from lists.
    let a = delete(&s, path).await;
    assert_eq!(a.status, 204, "{}", a.text);
    let a = delete(&s, path).await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert_eq!(s.get(path).await.status, 404);
    let all = contact_pages(&s, "", 100).await.concat();
    assert_eq!(all, phones[1..].to_vec());
    let customers = contact_pages(&s, "tag=customer", 100).await.concat();
    assert!(!customers.contains(&phones[0]), "{customers:?}");
    s.stop().await;
}

/// A client that pastes `next_cursor` into the next URL as it is (as most
/// do with an opaque cursor) must still page forward.
#[tokio::test]
async fn a_contacts_cursor_works_when_pasted_into_the_url_as_is() {
    let s = start(&[]).await;
    for i in 1..=3 {
        let a = put(
            &s,
            &format!("/api/contacts/%2B52155200000{i:02}"),
            json!({}),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    let mut seen = Vec::new();
    let mut path = "/api/contacts?limit=1".to_string();
    loop {
        let page = get_json(&s, &path).await;
        for c in page["contacts"].as_array().unwrap() {
            seen.push(c["phone"].as_str().unwrap().to_string());
        }
        assert!(seen.len() <= 3, "paging went back to the start: {seen:?}");
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/contacts?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec!["+5215520000001", "+5215520000002", "+5215520000003"]
    );
    s.stop().await;
}

#[tokio::test]
async fn executions_can_be_filtered_paged_and_inspected() {
    let s = start(&[
        shipped("call-to-chat.yaml"),
        shipped("missed-call-followup.yaml"),
    ])
    .await;
    let caller = "+5215512121212";
    call(&s, "call.incoming", caller, 1).await;
    call(&s, "call.incoming", caller, 2).await;
    wait_runs(&s, "workflow=call-to-chat", 2).await;
    call(&s, "call.missed", caller, 3).await;
    wait_runs(&s, "workflow=missed-call-followup", 1).await;

    let all = executions(&s, "").await;
    assert_eq!(all.len(), 3);
    let debounced = executions(&s, "workflow=call-to-chat&status=debounced").await;
    assert_eq!(debounced.len(), 1, "{debounced:#?}");
    let succeeded = executions(&s, "status=succeeded").await;
    assert_eq!(succeeded.len(), 2, "{succeeded:#?}");
    assert!(succeeded.iter().all(|r| r["status"] == json!("succeeded")));
    let none = executions(&s, "workflow=no-such-workflow").await;
    assert!(none.is_empty());
    let a = s.get("/api/executions?status=sideways").await;
    assert_eq!(a.status, 422, "{}", a.text);

    // Pages of one: newest first, each run once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/executions?limit=1".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(&s, &path).await;
        let list = page["executions"].as_array().unwrap();
        assert!(list.len() <= 1);
        seen.extend(list.iter().map(|r| r["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(seen.len() <= 10, "paging does not end");
    }
    let ids: Vec<Value> = executions(&s, "")
        .await
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(seen, ids);

    // The detail: the event, the status, and every step with its input,
    // output and duration.
    let summary = &executions(&s, "workflow=missed-call-followup").await[0];
    let run = detail(&s, summary).await;
    assert_eq!(run["id"], summary["id"]);
    assert_eq!(run["workflow"], json!("missed-call-followup"));
    assert_eq!(run["status"], json!("succeeded"));
    assert_eq!(run["event"]["kind"], json!("call.missed"));
    assert_eq!(run["event"]["caller"], json!(caller));
    assert!(run["event"]["raw"].is_object(), "{run:#}");
    let kinds: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "find_contact",
            "if",
            "update_contact",
            "tag",
            "if",
            "send_message"
        ],
        "{run:#}"
    );
    for st in run["steps"].as_array().unwrap() {
        for key in [
            "path",
            "status",
            "input",
            "output",
            "duration_ms",
            "started_at",
        ] {
            assert!(st.get(key).is_some(), "step without `{key}`: {st:#}");
        }
        assert!(
            st["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "{st:#}"
        );
    }
    let found = step(&run, "find_contact");
    assert_eq!(found["input"], json!({"phone": caller}));
    assert_eq!(
        found["output"]["found"],
        json!(true),
        "call-to-chat created the contact first"
    );
    let sent = step(&run, "send_message");
    assert_eq!(sent["input"]["to"], json!(caller));
    assert!(
        sent["attempts"].as_array().is_some_and(|a| !a.is_empty()),
        "{sent:#}"
    );
    let a = s.get("/api/executions/run_00000000deadbeef").await;
    assert_eq!(a.status, 404, "{}", a.text);
    s.stop().await;
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_token_when_one_is_set() {
    let config = format!("admin_token: ${{ADMIN_TOKEN}}\n{WF_CONFIG}");
    let token = "s3cret-admin-token";
    let s = start_with(
        &config,
        &[("ADMIN_TOKEN", token)],
        &[shipped("call-to-chat.yaml")],
    )
    .await;
    for path in [
        "/api/contacts",
        "/api/workflows",
        "/api/executions",
        "/api/contacts/%2B5215512345678",
    ] {
        let none = request(&s, Method::GET, path, None, None).await;
        assert_eq!(none.status, 401, "{path} without a token: {}", none.text);
        assert!(!none.text.contains(token));
        let wrong = request(&s, Method::GET, path, None, Some("not-the-token")).await;
        assert_eq!(
            wrong.status, 401,
            "{path} with a wrong token: {}",
            wrong.text
        );
        assert!(!wrong.text.contains(token));
    }
    let a = request(
        &s,
        Method::PUT,
        "/api/contacts/%2B5215512345678",
        Some(json!({"tags": ["vip"]})),
        None,
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.text);
    let a = request(
        &s,
        Method::DELETE,
        "/api/contacts/%2B5215512345678",
        None,
        Some("nope"),
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.text);

    for path in ["/api/contacts", "/api/workflows", "/api/executions"] {
        let ok = request(&s, Method::GET, path, None, Some(token)).await;
        assert_eq!(ok.status, 200, "{path}: {}", ok.text);
    }
    let a = request(
        &s,
        Method::PUT,
        "/api/contacts/%2B5215512345678",
        Some(json!({"name": "Ana"})),
        Some(token),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);

    // Webhooks and the health check do not use the admin token.
    assert_eq!(s.get("/healthz").await.status, 200);
    let id = call(&s, "call.incoming", "+5215512345678", 1).await;
    settle(&s).await;
    let a = request(
        &s,
        Method::GET,
        "/api/executions?workflow=call-to-chat",
        None,
        Some(token),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let list = a.json()["executions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{}", a.text);
    assert_eq!(list[0]["event"]["id"], json!(id));
    s.stop().await;
}

// ---------------------------------------------------------------------
// `ringback check`

const BIN: &str = env!("CARGO_BIN_EXE_ringback");

fn check(config: &Path, workflows: &Path) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--workflows"])
        .arg(workflows)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn");
    for var in [
        "RINGBACK_LISTEN",
        "RINGBACK_DATA",
        "RINGBACK_WORKFLOWS",
        "RINGBACK_CONFIG",
        "RINGBACK_ADMIN_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().expect("run ringback check")
}

/// Where an expected error is: line, column (0 for "any column on that
/// line"), and a word the message names.
type Expected = (u32, u32, &'static str);

/// Broken workflow files and their errors.
const BROKEN: &[(&str, &str, &[Expected])] = &[
    (
        "a-unknown-step.yaml",
        "name: a\non: { events: [call.missed] }\nsteps:\n  - log: \"hello\"\n  - sendmessage: { via: whatsapp, to: \"{{event.caller}}\", text: hi }\n",
        &[(5, 5, "sendmessage")],
    ),
    (
        "c-unknown-connector.yaml",
        "name: c\non: { events: [call.missed] }\nsteps:\n  - alert: { via: slak, text: \"hi\" }\n",
        &[(4, 19, "slak")],
    ),
    (
        "d-bad-duration.yaml",
        "name: d\non: { events: [call.incoming] }\nsteps:\n  - debounce:\n      key: \"{{event.caller}}\"\n      for: 2 minutes\n",
        &[(6, 12, "")],
    ),
    (
        "e-unknown-step-id.yaml",
        "name: e\non: { events: [call.missed] }\nsteps:\n  - log: \"{{steps.nope.count}}\"\n",
        &[(4, 10, "nope")],
    ),
    (
        "f-two-errors.yaml",
        "name: f\non:\n  events: [call.mised]\nsteps:\n  - tag: { phone: \"{{event.caller}}\", add: [x] }\n  - stop: done\n    retry: { schedule: [1s] }\n",
        &[(3, 12, "call.mised"), (7, 0, "retry")],
    ),
];

/// A YAML syntax error: the position is the parser's, so only its shape is
/// checked.
const UNPARSABLE: (&str, &str) = (
    "b-syntax.yaml",
    "name: b\non: { events: [call.missed]\nsteps:\n  - log: \"x\"\n",
);

#[test]
fn check_reports_every_error_with_its_position_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("workflows");
    std::fs::create_dir(&dir).unwrap();
    let config = tmp.path().join("ringback.yaml");
    std::fs::write(&config, WF_CONFIG).unwrap();
    for (name, text, _) in BROKEN {
        std::fs::write(dir.join(name), text).unwrap();
    }
    std::fs::write(dir.join(UNPARSABLE.0), UNPARSABLE.1).unwrap();
    std::fs::write(dir.join("good.yaml"), shipped("call-to-chat.yaml").1).unwrap();
    std::fs::write(dir.join("ignored.test.yaml"), "this: [is not a workflow").unwrap();

    let out = check(&config, &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for (name, _, errors) in BROKEN {
        let file = dir.join(name).display().to_string();
        for (line, col, word) in *errors {
            let prefix = if *col == 0 {
                format!("{file}:{line}:")
            } else {
                format!("{file}:{line}:{col}: ")
            };
            assert!(
                stderr
                    .lines()
                    .any(|l| l.starts_with(&prefix) && l.contains(word)),
                "want a line starting {prefix:?} naming {word:?} in:\n{stderr}"
            );
        }
    }
    let file = dir.join(UNPARSABLE.0).display().to_string();
    let positioned = stderr.lines().any(|l| {
        l.strip_prefix(&format!("{file}:")).is_some_and(|rest| {
            let mut parts = rest.splitn(3, ':');
            let line = parts.next().and_then(|p| p.parse::<u32>().ok());
            let col = parts.next().and_then(|p| p.parse::<u32>().ok());
            line.is_some_and(|l| l >= 2) && col.is_some_and(|c| c >= 1)
        })
    });
    assert!(
        positioned,
        "the syntax error has a file:line:col:\n{stderr}"
    );
    assert!(!stderr.contains("good.yaml"), "{stderr}");
    assert!(!stderr.contains("ignored.test.yaml"), "{stderr}");
}

#[test]
fn check_accepts_the_shipped_workflows_and_config() {
    let out = check(&repo_path("ringback.yaml"), &repo_path("workflows"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.starts_with("ok:"), "{stdout}");
}
