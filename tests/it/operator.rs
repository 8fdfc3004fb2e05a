//! The operator's surface on a running server: `GET /metrics` moves with
//! what happens, and `POST /api/sources/{source}/test` produces a run
//! marked as a test.

use std::time::{Duration, Instant};

use crate::support::{TestServer, CONFIG, ENV, WAZZAP_MISSED};

const FOLLOWUP: &str = r#"
name: missed-call-followup
on: { events: [call.missed] }
steps:
  - upsert_contact: { phone: "{{event.caller}}" }
  - tag: { phone: "{{event.caller}}", add: [missed-call-followup] }
  - send_message: { via: whatsapp, to: "{{event.caller}}", text: "Sorry we missed your call" }
"#;

/// The value of one sample line (`name{labels} value`) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_events_runs_attempts_and_follow_ups() {
    let server =
        TestServer::start_with_workflows(CONFIG, ENV, &[("followup.yaml", FOLLOWUP)]).await;
    let before = server.get("/metrics").await;
    assert_eq!(before.status, 200);
    assert_eq!(
        sample(&before.text, "ringback_missed_calls_total"),
        Some(0.0)
    );
    assert_eq!(
        sample(&before.text, "ringback_inbox_write_seconds_count"),
        Some(0.0)
    );

    let token = [("x-webhook-token", "wz-token-123")];
    assert_eq!(
        server.post("wazzap", WAZZAP_MISSED, &token).await.status,
        202
    );
    assert_eq!(
        server.post("wazzap", WAZZAP_MISSED, &token).await.status,
        200
    );
    assert_eq!(
        server
            .post("wazzap", WAZZAP_MISSED, &[("x-webhook-token", "wrong")])
            .await
            .status,
        401
    );
    crate::support::finished_runs(&server.store, 1).await;
    // The run is recorded before its event leaves the queue: give the
    // dispatcher a moment to finish counting.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = server.get("/metrics").await.text;
        if sample(&text, "ringback_missed_calls_followed_up_total") == Some(1.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "no follow-up counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let events = |kind: &str, outcome: &str| {
        sample(
            &text,
            &format!(
                "ringback_events_total{{source=\"wazzap\",kind=\"{kind}\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(events("call.missed", "accepted"), Some(1.0), "{text}");
    assert_eq!(events("call.missed", "duplicate"), Some(1.0), "{text}");
    assert_eq!(events("unknown", "rejected"), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "ringback_runs_total{workflow=\"missed-call-followup\",status=\"succeeded\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "ringback_outbound_attempts_total{connector=\"whatsapp\",status=\"logged\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ringback_missed_calls_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ringback_missed_calls_without_followup"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ringback_missed_call_followup_seconds_count"),
        Some(1.0),
        "{text}"
    );
    // One batch carried the accepted event; the duplicate's wait wrote nothing.
    assert_eq!(
        sample(&text, "ringback_inbox_write_seconds_count"),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "ringback_inbox_write_seconds_sum").is_some_and(|s| s > 0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "ringback_step_duration_seconds_count{workflow=\"missed-call-followup\",kind=\"send_message\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // A request to a source nobody configured is not a label.
    server.post("nosuchsource", WAZZAP_MISSED, &[]).await;
    let text = server.get("/metrics").await.text;
    assert!(!text.contains("nosuchsource"), "{text}");
    server.stop().await;
}

/// A receiver that takes each request and answers only when released.
async fn holding_receiver() -> (
    String,
    std::sync::Arc<tokio::sync::Semaphore>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hold",
        axum::routing::post({
            let (release, arrived) = (Arc::clone(&release), Arc::clone(&arrived));
            move || async move {
                arrived.fetch_add(1, Ordering::SeqCst);
                release.acquire().await.unwrap().forget();
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hold"), release, arrived)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_events_the_engine_has_not_finished_with() {
    use std::sync::atomic::Ordering;
    let (url, release, arrived) = holding_receiver().await;
    let config = format!(
        "{CONFIG}  hold: {{ kind: http, url: \"{url}\", timeout: 30s }}\noutbound:\n  allow_cidrs: [127.0.0.1/32]\n"
    );
    let workflow = r#"
name: held
on: { events: [call.missed] }
steps:
  - send_message: { via: hold, to: "{{event.caller}}", text: "Sorry we missed your call" }
"#;
    let server = TestServer::start_with_workflows(&config, ENV, &[("held.yaml", workflow)]).await;
    let pending = |text: &str| sample(text, "ringback_events_pending");
    assert_eq!(pending(&server.get("/metrics").await.text), Some(0.0));

    let token = [("x-webhook-token", "wz-token-123")];
    assert_eq!(
        server.post("wazzap", WAZZAP_MISSED, &token).await.status,
        202
    );
    // Its run is sending, and the receiver holds the answer: the event is
    // accepted and not finished.
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrived.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the run never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = server.get("/metrics").await.text;
    assert_eq!(pending(&text), Some(1.0), "{text}");

    release.add_permits(1);
    crate::support::finished_runs(&server.store, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = server.get("/metrics").await.text;
        if pending(&text) == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the event stayed pending:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_event_runs_workflows_and_its_execution_is_marked_test() {
    let server = TestServer::start_with_workflows(
        &format!("admin_token: admin-secret\n{CONFIG}"),
        ENV,
        &[("followup.yaml", FOLLOWUP)],
    )
    .await;
    let auth = ("authorization", "Bearer admin-secret");
    let post = |path: &str, body: &str| {
        server
            .client
            .post(server.url(path))
            .header(auth.0, auth.1)
            .body(body.to_string())
            .send()
    };
    // Meta's shape, no signature needed: the endpoint is behind the token.
    let answer = post("/api/sources/meta/test", r#"{"caller": "+34 612 345 678"}"#)
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["event"]["kind"], "call.missed");
    assert_eq!(body["event"]["provider"], "meta");
    assert_eq!(body["event"]["caller"], "+34612345678");
    assert_eq!(body["event"]["test"], true);

    let runs = crate::support::finished_runs(&server.store, 1).await;
    assert_eq!(runs.len(), 1);
    assert!(runs[0].test, "the execution is marked as a test");
    let listed = server
        .client
        .get(server.url("/api/executions"))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(listed["executions"][0]["test"], true, "{listed}");
    // Test events stay out of the business figures.
    let text = server.get("/metrics").await.text;
    assert_eq!(
        sample(&text, "ringback_missed_calls_total"),
        Some(0.0),
        "{text}"
    );

    // Without the token: 401. Unknown source: 404. A kind the provider does
    // not send, or a caller that is no phone: 422 naming the field.
    let anonymous = server
        .client
        .post(server.url("/api/sources/meta/test"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        post("/api/sources/nope/test", "").await.unwrap().status(),
        404
    );
    let wrong_kind = post("/api/sources/waha/test", r#"{"kind": "call.missed"}"#)
        .await
        .unwrap();
    assert_eq!(wrong_kind.status(), 422);
    assert!(wrong_kind.text().await.unwrap().contains("field `kind`"));
    let bad_caller = post("/api/sources/wazzap/test", r#"{"caller": "hello"}"#)
        .await
        .unwrap();
    assert_eq!(bad_caller.status(), 422);
    assert!(bad_caller.text().await.unwrap().contains("field `caller`"));
    server.stop().await;
}
