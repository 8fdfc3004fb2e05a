//! The ring timeout as a user meets it: how long a call may ring before
//! ringback calls it missed, and what that synthetic `call.missed` is.
//!
//! Timing: these tests run on the real clock and only assert lower bounds
//! ("not missed before ring_timeout") or absences after a generous quiet
//! period, never how fast something happened.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use ringback::store::{Execution, ExecutionFilter};
use serde_json::json;

use crate::support::{finished_runs, TestServer};

/// Every run of this workflow is a missed call ringback followed up.
const MISSED_WF: (&str, &str) = (
    "missed.yaml",
    "name: missed\non: { events: [call.missed] }\nsteps:\n  - log: \"missed {{event.caller}} {{event.call_id}}\"\n",
);

/// A WAHA source whose calls ring for `ring_timeout`.
fn config(ring_timeout: &str) -> String {
    format!("sources:\n  waha:\n    provider: waha\n    ring_timeout: {ring_timeout}\n")
}

/// A WAHA call webhook (`call.received`, `call.accepted`) for call
/// `call_id`, stamped `at` by the provider: the payload carries no time of
/// its own, so the event's time is the envelope's, to the millisecond.
fn waha(event: &str, envelope_id: &str, call_id: &str, at: Timestamp) -> String {
    json!({
        "id": envelope_id,
        "timestamp": at.as_millisecond(),
        "event": event,
        "session": "default",
        "me": {"id": "5215500000000@c.us", "pushName": "Clínica Norte"},
        "payload": {"id": call_id, "from": "5215512345678@c.us", "isVideo": false, "isGroup": false},
        "engine": "NOWEB"
    })
    .to_string()
}

async fn post_waha(s: &TestServer, body: String) {
    let answer = s.post("waha", body, &[]).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
}

/// The runs of the missed-call workflow so far.
fn missed_runs(s: &TestServer) -> Vec<Execution> {
    let filter = ExecutionFilter {
        workflow: Some("missed".into()),
        status: None,
    };
    s.store.list_executions(&filter, 100, None).unwrap().0
}

fn of_call<'a>(runs: &'a [Execution], call_id: &str) -> Vec<&'a Execution> {
    runs.iter()
        .filter(|r| r.event.call_id.as_deref() == Some(call_id))
        .collect()
}

/// A ring whose provider timestamp is long past (a provider clock behind
/// ours, a delivery retried late) rings for the whole `ring_timeout` from
/// when ringback got it: answered 1.5 s later, it is never missed; left
/// unanswered, it is missed no earlier than `ring_timeout` after it came.
/// It used to be missed at once, and the caller who was answered got
/// "sorry we missed your call".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_stamped_long_ago_still_rings_for_the_whole_ring_timeout() {
    const RING_TIMEOUT: Duration = Duration::from_secs(4);
    let s = TestServer::start_with_workflows(&config("4s"), &[], &[MISSED_WF]).await;
    let an_hour_ago = Timestamp::now()
        .checked_sub(SignedDuration::from_hours(1))
        .unwrap();
    let sent_at = Timestamp::now();
    let sent = Instant::now();
    post_waha(
        &s,
        waha(
            "call.received",
            "evt_late_ring_answered",
            "LATE0ANSWERED",
            an_hour_ago,
        ),
    )
    .await;
    post_waha(
        &s,
        waha(
            "call.received",
            "evt_late_ring_unanswered",
            "LATE0UNANSWERED",
            an_hour_ago,
        ),
    )
    .await;

    tokio::time::sleep(Duration::from_millis(1500)).await;
    post_waha(
        &s,
        waha(
            "call.accepted",
            "evt_late_ring_accept",
            "LATE0ANSWERED",
            Timestamp::now(),
        ),
    )
    .await;

    let runs = finished_runs(&s.store, 1).await;
    let unanswered = of_call(&runs, "LATE0UNANSWERED");
    assert_eq!(unanswered.len(), 1, "{runs:#?}");
    assert!(
        sent.elapsed() >= RING_TIMEOUT,
        "missed {:?} after the ring arrived, before its ring_timeout of {RING_TIMEOUT:?}",
        sent.elapsed()
    );
    let missed = &unanswered[0].event;
    assert!(missed.synthetic, "{missed:?}");
    assert!(
        missed.at >= sent_at.checked_add(RING_TIMEOUT).unwrap(),
        "the missed call is dated ring_timeout after the ring arrived, not after its provider time: {} (sent {sent_at})",
        missed.at
    );

    // Well past the answered call's ring_timeout: it was never missed.
    let quiet = RING_TIMEOUT + Duration::from_millis(2500);
    tokio::time::sleep(quiet.saturating_sub(sent.elapsed())).await;
    let runs = missed_runs(&s);
    assert!(of_call(&runs, "LATE0ANSWERED").is_empty(), "{runs:#?}");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    s.stop().await;
}

/// A test event (`POST /api/sources/{source}/test`) on a source with a
/// ring timeout is a ring that nobody answers. Its missed call is a test
/// too: the follow-up run is marked test and the missed-call figures do
/// not count it. It used to be a real missed call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_ring_that_rings_out_is_a_test_missed_call() {
    let s = TestServer::start_with_workflows(&config("1s"), &[], &[MISSED_WF]).await;
    let answer = s
        .client
        .post(s.url("/api/sources/waha/test"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["event"]["kind"], "call.incoming", "{body}");
    assert_eq!(body["event"]["test"], true, "{body}");

    let runs = finished_runs(&s.store, 1).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let missed = &runs[0].event;
    assert_eq!(missed.kind, "call.missed", "{missed:?}");
    assert!(missed.synthetic, "{missed:?}");
    assert!(
        missed.test,
        "the missed call of a test ring is a test: {missed:?}"
    );
    assert!(runs[0].test, "its run is marked test");
    // The synthetic event was counted (or not) before its run started.
    let metrics = s.get("/metrics").await.text;
    let missed_total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ringback_missed_calls_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(missed_total, Some(0.0), "{metrics}");
    s.stop().await;
}
