//! `POST /hooks/{source}`: every row of the SPEC §3 table, every signature
//! scheme over real HTTP, and bad input that must not hurt the server.

use crate::support::*;
use serde_json::json;

const WZ_AUTH: &[(&str, &str)] = &[("x-webhook-token", "wz-token-123")];

#[tokio::test]
async fn an_accepted_event_gets_202_with_its_id_and_is_stored() {
    let s = recording_server().await;
    let a = s.post("wazzap", WAZZAP_MISSED, WZ_AUTH).await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(a.json()["accepted"], json!(1));
    let ids = a.event_ids();
    assert_eq!(ids.len(), 1);
    let e = &s.processed_event(&ids[0]).await;
    assert_eq!(e.kind, "call.missed");
    assert_eq!(e.caller.as_deref(), Some("+5215587654321"));
    assert_eq!(e.business.as_deref(), Some("+5215500000000"));
    assert_eq!(e.country.as_deref(), Some("MX"));
    assert_eq!(e.source, "wazzap");
    assert_eq!(e.at.to_string(), "2026-05-14T14:32:11Z");
    assert_eq!(e.raw.to_value()["phone"], json!("+5215587654321"));
    let stats = s.store.call_stats("+5215587654321").unwrap();
    assert_eq!(stats.calls.get("call.missed"), Some(&1));
    s.stop().await;
}

/// The call statistics are written by the engine once it takes an event,
/// after the 2xx: the test waits for each event's run before reading them
/// (it read them at once, and failed when the engine was slower).
#[tokio::test]
async fn a_redelivered_event_is_a_200_duplicate_with_no_new_work() {
    let s = recording_server().await;
    let first = s.post("wazzap", WAZZAP_MISSED, WZ_AUTH).await;
    assert_eq!(first.status, 202);
    s.processed_event(&first.event_ids()[0]).await;
    let again = s.post("wazzap", WAZZAP_MISSED, WZ_AUTH).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json(), json!({"accepted": 0, "duplicates": 1}));
    // A different call from the same caller is new; once it is processed
    // the caller has two calls, not three.
    let other = WAZZAP_MISSED.replace("14:32:11", "14:40:00");
    let second = s.post("wazzap", other, WZ_AUTH).await;
    assert_eq!(second.status, 202);
    s.processed_event(&second.event_ids()[0]).await;
    let stats = s.store.call_stats("+5215587654321").unwrap();
    assert_eq!(
        stats.calls.get("call.missed"),
        Some(&2),
        "a duplicate must not count as another call"
    );
    s.stop().await;
}

fn meta_calls(calls: &[(&str, &str)]) -> String {
    let calls: Vec<_> = calls
        .iter()
        .map(|(id, from)| {
            json!({"id": id, "from": from, "to": "15550001111", "event": "connect",
                   "timestamp": "1716200000", "direction": "USER_INITIATED"})
        })
        .collect();
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "calls", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5215512345678"}],
            "calls": calls
        }}]}]
    })
    .to_string()
}

fn meta_headers(body: &str) -> Vec<(&'static str, String)> {
    vec![(
        "x-hub-signature-256",
        format!(
            "sha256={}",
            hex_hmac_sha256(b"meta-app-secret", body.as_bytes())
        ),
    )]
}

async fn post_meta(s: &TestServer, body: &str) -> Answer {
    let h = meta_headers(body);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.post("meta", body.to_string(), &h).await
}

/// One unreadable call in a Meta batch (no `from`) does not cost its
/// neighbours: they are accepted and processed, the answer says which item
/// was left out and why, and Meta's retry of the same batch is a duplicate
/// with the same note.
#[tokio::test]
async fn a_batch_with_an_unreadable_call_accepts_the_others_and_names_it() {
    let s = recording_server().await;
    let mut batch: serde_json::Value = serde_json::from_str(&meta_calls(&[
        ("wacid.A", "5215512345678"),
        ("wacid.BAD", "5215500000001"),
        ("wacid.C", "5215587654321"),
    ]))
    .unwrap();
    batch["entry"][0]["changes"][0]["value"]["calls"][1]
        .as_object_mut()
        .unwrap()
        .remove("from");
    let body = batch.to_string();
    let a = post_meta(&s, &body).await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(a.json()["accepted"], json!(2));
    assert_eq!(a.json()["skipped"], json!(1));
    let reason = a.json()["skipped_errors"][0].as_str().unwrap().to_string();
    assert!(
        reason.starts_with("field `entry[0].changes[0].value.calls[1].from`: is missing"),
        "{reason}"
    );
    let mut calls = Vec::new();
    for id in a.event_ids() {
        calls.push(s.processed_event(&id).await.call_id.unwrap());
    }
    assert_eq!(calls, ["wacid.A", "wacid.C"]);

    let again = post_meta(&s, &body).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["duplicates"], json!(2));
    assert_eq!(again.json()["skipped"], json!(1));
    // Monitoring sees the left-out item of each delivery as rejected.
    let metrics = s.get("/metrics").await.text;
    assert!(
        metrics.contains(
            "ringback_events_total{source=\"meta\",kind=\"unknown\",outcome=\"rejected\"} 2"
        ),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_batch_counts_new_and_seen_events_separately() {
    let s = recording_server().await;
    let one = meta_calls(&[("wacid.A", "5215512345678")]);
    assert_eq!(post_meta(&s, &one).await.status, 202);
    let both = meta_calls(&[("wacid.A", "5215512345678"), ("wacid.B", "5215587654321")]);
    let a = post_meta(&s, &both).await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(a.json()["accepted"], json!(1));
    assert_eq!(a.json()["duplicates"], json!(1));
    let e = s.processed_event(&a.event_ids()[0]).await;
    assert_eq!(e.caller.as_deref(), Some("+5215587654321"));
    assert_eq!(e.call_id.as_deref(), Some("wacid.B"));
    s.stop().await;
}

#[tokio::test]
async fn a_known_non_call_payload_is_stored_under_its_own_kind() {
    let s = recording_server().await;
    let body = json!({
        "id": "evt_msg_1", "timestamp": 1716200000123u64, "session": "default", "engine": "WEBJS",
        "event": "message",
        "payload": {"id": "false_5215512345678@c.us_AAA", "from": "5215512345678@c.us", "body": "hola", "fromMe": false},
        "me": {"id": "5215500000000@c.us", "pushName": "Shop"}
    })
    .to_string();
    let sig = hex_hmac_sha512(b"my-secret-key", body.as_bytes());
    let a = s.post("waha", body, &[("x-webhook-hmac", &sig)]).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let e = s.processed_event(&a.event_ids()[0]).await;
    assert_eq!(e.kind, "message");
    assert_eq!(e.caller.as_deref(), Some("+5215512345678"));
    s.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400_naming_the_problem() {
    let s = server().await;
    for body in [
        "{\"event\": \"call.missed\", \"phone\": ",
        "not json at all",
        "\u{feff}{}",
        "",
    ] {
        let a = s.post("wazzap", body, WZ_AUTH).await;
        assert_eq!(a.status, 400, "{body:?}: {}", a.text);
        assert!(a.error().contains("JSON"), "{}", a.error());
    }
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_shape_or_a_missing_caller_is_a_422_naming_the_field() {
    let s = server().await;
    let a = s.post("anything", r#"{"hello": "world"}"#, &[]).await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert!(
        a.error().contains("no known provider shape"),
        "{}",
        a.error()
    );

    let a = s
        .post(
            "wazzap",
            r#"{"event": "call.missed", "country": "MX", "ts": "2026-05-14T14:32:11Z"}"#,
            WZ_AUTH,
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert!(a.error().contains("phone"), "{}", a.error());

    let a = s
        .post(
            "wazzap",
            r#"{"event": "call.missed", "phone": "call me maybe", "ts": "2026-05-14T14:32:11Z"}"#,
            WZ_AUTH,
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert!(a.error().contains("phone"), "{}", a.error());

    let a = s.post("wazzap", r#"[1, 2, 3]"#, WZ_AUTH).await;
    assert_eq!(a.status, 422, "{}", a.text);
    s.stop().await;
}

#[tokio::test]
async fn a_bad_or_missing_credential_is_a_401_that_names_the_check_not_the_secret() {
    let s = server().await;
    let none = s.post("wazzap", WAZZAP_MISSED, &[]).await;
    assert_eq!(none.status, 401);
    assert!(none.error().contains("missing token"), "{}", none.error());
    let wrong = s
        .post("wazzap", WAZZAP_MISSED, &[("x-webhook-token", "guess")])
        .await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.text.contains("wz-token-123"));

    let body = meta_calls(&[("wacid.X", "5215512345678")]);
    let tampered = body.replace("5215512345678", "5215512345679");
    let h = meta_headers(&body);
    let a = s
        .post(
            "meta",
            tampered,
            &[("x-hub-signature-256", h[0].1.as_str())],
        )
        .await;
    assert_eq!(a.status, 401);
    assert!(a.error().contains("X-Hub-Signature-256"), "{}", a.error());
    assert!(!a.text.contains("meta-app-secret"));

    let a = s.post("waha", r#"{"event":"call.received"}"#, &[]).await;
    assert_eq!(a.status, 401);
    assert!(a.error().contains("X-Webhook-Hmac"), "{}", a.error());
    assert!(
        s.store
            .call_stats("+5215512345678")
            .unwrap()
            .calls
            .is_empty(),
        "nothing unauthenticated is stored"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_token_is_accepted_in_the_query_a_header_or_a_bearer() {
    let s = server().await;
    let bodies: Vec<String> = (0..3)
        .map(|i| WAZZAP_MISSED.replace("14:32:11", &format!("14:32:1{i}")))
        .collect();
    let a = s
        .client
        .post(s.url("/hooks/wazzap?token=wz-token-123"))
        .body(bodies[0].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(a.status().as_u16(), 202);
    assert_eq!(
        s.post(
            "wazzap",
            bodies[1].clone(),
            &[("x-webhook-token", "wz-token-123")]
        )
        .await
        .status,
        202
    );
    assert_eq!(
        s.post(
            "wazzap",
            bodies[2].clone(),
            &[("authorization", "Bearer wz-token-123")]
        )
        .await
        .status,
        202
    );
    s.stop().await;
}

#[tokio::test]
async fn waha_hmac_with_the_published_key_is_accepted() {
    let s = recording_server().await;
    let body = json!({
        "id": "evt_01aaaaaaaaaaaaaaaaaaaaaaaa", "timestamp": 1634567890123u64, "session": "default",
        "metadata": {"user.id": "123"}, "engine": "WEBJS", "event": "call.received",
        "payload": {"id": "call_12345", "from": "11111111111@c.us", "isVideo": false},
        "me": {"id": "5215500000000@c.us", "lid": "123@lid", "pushName": "Instance"}
    })
    .to_string();
    let sig = hex_hmac_sha512(b"my-secret-key", body.as_bytes());
    let a = s
        .post("waha", body.clone(), &[("x-webhook-hmac", &sig)])
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let e = s.processed_event(&a.event_ids()[0]).await;
    assert_eq!(e.kind, "call.incoming");
    assert_eq!(e.caller.as_deref(), Some("+11111111111"));
    assert_eq!(e.call_id.as_deref(), Some("call_12345"));
    // Tampered: the same signature over another body.
    let a = s
        .post(
            "waha",
            body.replace("11111111111@c.us", "22222222222@c.us"),
            &[("x-webhook-hmac", &sig)],
        )
        .await;
    assert_eq!(a.status, 401);
    s.stop().await;
}

#[tokio::test]
async fn standard_webhooks_deliveries_verify_with_any_configured_secret() {
    let s = recording_server().await;
    let body = json!({
        "id": "evt_85e59919-3147-454b-bade-75aa", "type": "message.report", "api_version": "2026-02-04",
        "created_at": 1747147674, "liveMode": true,
        "data": {"object": {"recipient": {"customer_id": "wamid.HBgN", "phone_number": "+918189222313"},
                 "status": "READ", "reported_at": "2026-05-13T12:54:54.719Z", "timestamp": "2026-05-13T12:46:25Z"}}
    })
    .to_string();
    let now = jiff::Timestamp::now().as_second();
    let secret = ringback::event::Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let sig =
        ringback::event::sign_standard_webhooks(&secret, "msg_1", now, body.as_bytes()).unwrap();
    let ts = now.to_string();
    let headers = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let a = s.post("relay", body.clone(), &headers).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let e = s.processed_event(&a.event_ids()[0]).await;
    assert_eq!(e.kind, "message.report");

    // Seed 004's own scheme: hex HMAC-SHA256 keyed with the secret as written.
    let body2 = body.replace("evt_85e59919", "evt_95e59919");
    let hex_sig = hex_hmac_sha256(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body2.as_bytes());
    assert_eq!(
        s.post("relay", body2, &[("x-webhook-signature", &hex_sig)])
            .await
            .status,
        202
    );

    // Too old.
    let old = (now - 600).to_string();
    let old_sig =
        ringback::event::sign_standard_webhooks(&secret, "msg_2", now - 600, body.as_bytes())
            .unwrap();
    let a = s
        .post(
            "relay",
            body,
            &[
                ("webhook-id", "msg_2"),
                ("webhook-timestamp", &old),
                ("webhook-signature", &old_sig),
            ],
        )
        .await;
    assert_eq!(a.status, 401);
    assert!(a.error().contains("webhook-timestamp"), "{}", a.error());
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_source_is_a_404() {
    let s = server().await;
    let a = s.post("nope", WAZZAP_MISSED, &[]).await;
    assert_eq!(a.status, 404);
    assert!(a.error().contains("unknown source `nope`"), "{}", a.error());
    s.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_and_the_server_keeps_serving() {
    let s = server().await;
    // 10 MB, with and without a Content-Length the server can trust.
    let huge = format!(
        "{{\"event\":\"call.missed\",\"phone\":\"{}\"}}",
        "1".repeat(10 * 1024 * 1024)
    );
    let a = s.post("wazzap", huge.clone(), WZ_AUTH).await;
    assert_eq!(a.status, 413, "{}", &a.text[..a.text.len().min(200)]);
    assert!(a.error().contains("max_body_bytes"));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = huge
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let streamed = s
        .client
        .post(s.url("/hooks/wazzap"))
        .header("x-webhook-token", "wz-token-123")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await;
    if let Ok(resp) = streamed {
        assert_eq!(resp.status().as_u16(), 413);
    }
    assert_eq!(s.get("/healthz").await.text, "ok");
    assert_eq!(s.post("wazzap", WAZZAP_MISSED, WZ_AUTH).await.status, 202);
    s.stop().await;
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    struct Iter(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(chunks.into_iter())
}

#[tokio::test]
async fn a_storage_failure_is_a_503_never_a_2xx() {
    let s = recording_server().await;
    s.store.dangerous_fail_commits(true);
    let a = s.post("wazzap", WAZZAP_MISSED, WZ_AUTH).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert!(a.error().contains("retry"), "{}", a.error());
    s.store.dangerous_fail_commits(false);
    // The provider's retry then lands (as new or, since the write did reach
    // sled's memory, as a duplicate of an event that is now on disk).
    let retry = s.post("wazzap", WAZZAP_MISSED, WZ_AUTH).await;
    assert!(retry.status == 202 || retry.status == 200, "{}", retry.text);
    // The engine counts the call once it takes the event, after the 2xx.
    let missed = || {
        let stats = s.store.call_stats("+5215587654321").unwrap();
        stats.calls.get("call.missed").copied()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while missed().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // A later call, once processed, makes two: the event posted twice is
    // counted once.
    let other = WAZZAP_MISSED.replace("14:32:11", "14:40:00");
    let later = s.post("wazzap", other, WZ_AUTH).await;
    assert_eq!(later.status, 202, "{}", later.text);
    s.processed_event(&later.event_ids()[0]).await;
    assert_eq!(missed(), Some(2), "one event, however often it was posted");
    s.stop().await;
}

#[tokio::test]
async fn the_meta_handshake_echoes_the_challenge_only_for_the_right_token() {
    let s = server().await;
    let ok = s
        .get("/hooks/meta?hub.mode=subscribe&hub.verify_token=meta-verify&hub.challenge=1158201444")
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text, "1158201444");
    let bad = s
        .get("/hooks/meta?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1158201444")
        .await;
    assert_eq!(bad.status, 403);
    assert!(!bad.text.contains("1158201444"));
    let no_mode = s
        .get("/hooks/meta?hub.verify_token=meta-verify&hub.challenge=1")
        .await;
    assert_eq!(no_mode.status, 403);
    assert_eq!(s.get("/hooks/missing?hub.mode=subscribe").await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_its_4xx_and_the_server_keeps_serving() {
    let s = recording_server().await;
    let cases: Vec<(String, u16)> = vec![
        // wrong types
        (
            r#"{"event": "call.missed", "phone": 5215512345678, "ts": "2026-05-14T14:32:11Z"}"#
                .into(),
            422,
        ),
        (
            r#"{"event": ["call.missed"], "phone": "+5215512345678"}"#.into(),
            422,
        ),
        // huge numbers
        (
            r#"{"event": "call.missed", "phone": "+5215512345678", "ts": 1e308}"#.into(),
            422,
        ),
        // beyond what a JSON number can hold here: a 400 that says so
        (
            format!(
                r#"{{"event": "call.missed", "phone": "+5215512345678", "ts": {}}}"#,
                "9".repeat(400)
            ),
            400,
        ),
        // deep nesting
        (format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)), 400),
        // a NUL character in the caller
        (
            r#"{"event": "call.missed", "phone": "\u0000", "ts": "2026-05-14T14:32:11Z"}"#.into(),
            422,
        ),
    ];
    for (body, want) in cases {
        let a = s.post("wazzap", body.clone(), WZ_AUTH).await;
        assert_eq!(
            a.status,
            want,
            "{}: {}",
            &body[..body.len().min(80)],
            a.text
        );
        assert!(a.json()["error"].is_string());
    }
    let invalid_utf8 = b"{\"event\": \"call.missed\", \"phone\": \"\xff\xfe\"}".to_vec();
    assert_eq!(s.post("wazzap", invalid_utf8, WZ_AUTH).await.status, 400);
    // Unicode where free text is allowed is fine.
    let tl = json!({
        "event_type": "call:incoming:missed",
        "chat": {"full_name": "José 🚀 \"quoted\" {{x}}", "chat_id": 1, "phone": "+5215512345678"},
        "whatsapp_account": {"whatsapp_account_wid": "5215500000000@s.whatsapp.net", "phone": "+5215500000000"},
        "call_details": {"duration": null, "direction": "incoming", "is_video": false, "status": "Missed",
            "timestamp": "2026-05-24 10:35:18 +0200", "message_uid": "c7ec509d-0171-1ead-a84b-c6943a644768",
            "caller": {"full_name": "José 🚀 \"quoted\" {{x}}", "phone": "+5215512345678"},
            "recipient": {"full_name": "Agent", "phone": "+5215500000000"}}
    })
    .to_string();
    let a = s
        .post("timelines", tl, &[("authorization", "Bearer tl-token")])
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let e = s.processed_event(&a.event_ids()[0]).await;
    assert_eq!(e.name.as_deref(), Some("José 🚀 \"quoted\" {{x}}"));
    assert_eq!(e.at.to_string(), "2026-05-24T08:35:18Z");
    assert_eq!(s.get("/healthz").await.text, "ok");
    s.stop().await;
}

#[tokio::test]
async fn concurrent_posts_are_all_stored() {
    let s = server().await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = s.client.clone();
        let url = s.url("/hooks/wazzap");
        tasks.push(tokio::spawn(async move {
            let body = format!(r#"{{"event":"call.missed","phone":"+52155{i:08}","country":"MX","ts":"2026-05-14T14:32:11Z"}}"#);
            let resp = client.post(url).header("x-webhook-token", "wz-token-123").body(body).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 202);
            let v: serde_json::Value = resp.json().await.unwrap();
            v["events"][0].as_str().unwrap().to_string()
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let id = t.await.unwrap();
        assert!(s.store.remembers_event(&id).unwrap(), "{id} not stored");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 200);
    s.stop().await;
}

#[tokio::test]
async fn every_provider_fixture_is_detected_and_accepted_by_an_auto_source() {
    let s = recording_server().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    for provider_dir in std::fs::read_dir(&root).unwrap() {
        let provider_dir = provider_dir.unwrap().path();
        if !provider_dir.is_dir() {
            continue;
        }
        let provider = provider_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        for file in std::fs::read_dir(&provider_dir).unwrap() {
            let file = file.unwrap().path();
            let body = std::fs::read(&file).unwrap();
            let a = s.post("anything", body, &[]).await;
            // 200: a fixture that repeats another's call event (Meta sends both a
            // `connect` and a RINGING status for one business-initiated call).
            assert!(
                a.status == 202 || a.status == 200,
                "{}: {}",
                file.display(),
                a.text
            );
            for id in a.event_ids() {
                let e = s.processed_event(&id).await;
                assert_eq!(
                    e.provider.as_str(),
                    provider,
                    "{} detected as {}",
                    file.display(),
                    e.provider
                );
            }
            seen += 1;
        }
    }
    assert!(seen >= 40, "only {seen} fixtures found");
    s.stop().await;
}

/// A query string or path segment axum cannot read gets the same JSON
/// error body as every other answer, naming the problem, not axum's
/// plain-text one.
#[tokio::test]
async fn unreadable_queries_and_paths_get_json_errors() {
    let s = recording_server().await;
    for path in [
        "/api/contacts?limit=abc",
        "/api/executions?limit=-1",
        "/api/contacts/%FF",
    ] {
        let a = s.get(path).await;
        assert_eq!(a.status, 400, "{path}: {}", a.text);
        let error = a.error();
        assert!(!error.is_empty(), "{path}");
        if path.contains("limit") {
            assert!(error.contains("limit"), "{path}: {error}");
        }
    }
    let a = s.post("%FF", WAZZAP_MISSED, WZ_AUTH).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(!a.error().is_empty());
    s.stop().await;
}
