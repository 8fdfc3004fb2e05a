//! `POST /hooks/{source}`: verify, parse, store durably, answer.
//!
//! The order matters: the signature is checked over the raw bytes before
//! anything parses them, and the answer is sent only after the events (or,
//! for a duplicate, the first copy) are flushed to disk, so a 2xx always
//! means "on disk" (SPEC §3).
//!
//! A batch (a Meta envelope with many calls) is taken item by item: an item
//! that cannot be read is left out, and the answer lists why (`skipped`,
//! `skipped_errors`), while the rest is accepted. Refusing the whole batch
//! would make the provider retry it whole, with the same bad item, until
//! it gives up: its good calls would be lost. A body with no readable item
//! is refused as before (422 naming the field).

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, Limited};
use serde_json::json;
use subtle::ConstantTimeEq;

use std::sync::Arc;

use super::error::ApiPath;
use super::{ApiError, ServerState, SharedState};
use crate::engine::Arrivals;
use crate::event::{self, Event, HeaderLookup, ParseError, Provider, HEADER_WEBHOOK_ID};
use crate::metrics::Metrics;
use crate::store::Insert;

/// A batch's answer names at most this many of its left-out items.
const MAX_SKIPPED_ERRORS: usize = 20;

struct Headers<'a>(&'a HeaderMap);

impl HeaderLookup for Headers<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(super) async fn receive(
    State(state): State<SharedState>,
    ApiPath(source_id): ApiPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let config = state.config();
    let source = config.source(&source_id).ok_or_else(|| {
        ApiError::not_found(format!("unknown source `{}`", printable(&source_id)))
    })?;

    let limit = config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let rejected = || state.metrics.rejected(&source.id);
    if declared.is_some_and(|n| n > limit as u64) {
        rejected();
        return Err(too_large(limit));
    }
    let body: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            rejected();
            return Err(too_large(limit));
        }
        Err(_) => return Err(ApiError::bad_request("could not read the request body")),
    };

    let now = state.clock.now();
    let token = query_param(query.as_deref(), "token");
    event::verify(
        &source.auth,
        &Headers(&headers),
        token.as_deref(),
        &body,
        now,
    )
    .map_err(|e| {
        rejected();
        tracing::warn!(source = %source.id, reason = %e, "webhook rejected: authentication failed");
        ApiError::unauthorized(e.to_string())
    })?;

    let delivery_id = headers.get(HEADER_WEBHOOK_ID).and_then(|v| v.to_str().ok());
    let ctx = source.parse_context(now, delivery_id);
    let event::Parsed { events, skipped } = event::parse_batch(&body, &ctx).map_err(|e| {
        rejected();
        tracing::info!(source = %source.id, error = %e, "webhook rejected: cannot parse");
        match e {
            ParseError::NotJson(_) => ApiError::bad_request(e.to_string()),
            _ => ApiError::unprocessable(e.to_string()),
        }
    })?;

    if !skipped.is_empty() {
        // Each left-out item counts as a rejected event (kind unknown).
        for _ in &skipped {
            rejected();
        }
        tracing::warn!(
            source = %source.id,
            skipped = skipped.len(),
            first = %skipped[0],
            "webhook batch: items that cannot be read were left out, the rest accepted"
        );
    }
    let stored = Inbox::of(&state)
        .store_durably(events, now, config.dedupe_window)
        .await?;
    let accepted: Vec<&str> = stored
        .iter()
        .filter(|(_, outcome)| *outcome == Insert::Accepted)
        .map(|(id, _)| id.as_str())
        .collect();
    let duplicates = stored.len() - accepted.len();
    let status = if accepted.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let answer = DeliveryAnswer {
        accepted: accepted.len(),
        // All duplicates: how many, even none (an empty batch).
        duplicates: (duplicates > 0 || accepted.is_empty()).then_some(duplicates),
        events: (!accepted.is_empty()).then_some(accepted),
        skipped: (!skipped.is_empty()).then_some(skipped.len()),
        skipped_errors: (!skipped.is_empty()).then(|| {
            skipped
                .iter()
                .take(MAX_SKIPPED_ERRORS)
                .map(|e| e.to_string())
                .collect()
        }),
    };
    Ok((status, Json(answer)).into_response())
}

/// The answer to a webhook delivery, written straight from this struct
/// (a `serde_json::Value` built first cost a map with hashed keys per
/// request). Fields in this order; absent ones are left out.
#[derive(serde::Serialize)]
struct DeliveryAnswer<'a> {
    accepted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicates: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped_errors: Option<Vec<String>>,
}

/// `GET /hooks/{source}?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`
pub(super) async fn meta_handshake(
    State(state): State<SharedState>,
    ApiPath(source_id): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let config = state.config();
    let source = config.source(&source_id).ok_or_else(|| {
        ApiError::not_found(format!("unknown source `{}`", printable(&source_id)))
    })?;
    if !matches!(source.provider, Provider::Meta | Provider::Auto) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET is Meta's subscription handshake; this source takes POST",
        ));
    }
    let q = query.as_deref();
    let mode = query_param(q, "hub.mode");
    let offered = query_param(q, "hub.verify_token");
    let challenge = query_param(q, "hub.challenge");
    let matches = match (&source.verify_token, &offered) {
        (Some(expected), Some(offered)) => {
            bool::from(offered.as_bytes().ct_eq(expected.expose().as_bytes()))
        }
        _ => false,
    };
    match (mode.as_deref(), matches, challenge) {
        (Some("subscribe"), true, Some(challenge)) => {
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], challenge).into_response())
        }
        _ => Err(ApiError::forbidden(
            "verification failed: hub.mode must be subscribe and hub.verify_token must match the source's verify_token",
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::too_large(format!(
        "body is larger than max_body_bytes ({limit} bytes)"
    ))
}

fn storage_failed(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "storage failure: answering 503 so the provider retries");
    ApiError::unavailable("storage is unavailable; retry later")
}

/// A source id echoed in an error, cut short and without control characters.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// `POST /api/sources/{source}/test`: what a signed-webhook platform's
/// "Send test event" does. A sample body in the source's provider shape
/// (for `caller`, default [`event::DEFAULT_TEST_CALLER`], and `kind`,
/// default `call.missed` where the provider sends it) goes through the
/// source's parser and the inbox like a real delivery, minus the
/// signature; the event and its runs are marked `test`.
pub(super) async fn test_event(
    State(state): State<SharedState>,
    ApiPath(source_id): ApiPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TestRequest {
        caller: Option<String>,
        kind: Option<String>,
    }
    let config = state.config();
    let source = config.source(&source_id).ok_or_else(|| {
        ApiError::not_found(format!("unknown source `{}`", printable(&source_id)))
    })?;
    let request: TestRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TestRequest {
            caller: None,
            kind: None,
        }
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::bad_request(format!("body is not valid JSON: {e}"))
            }
            _ => ApiError::unprocessable(format!("{e} (a test event takes `caller` and `kind`)")),
        })?
    };
    let caller = request
        .caller
        .as_deref()
        .unwrap_or(event::DEFAULT_TEST_CALLER);
    let caller = match event::normalise_phone(caller) {
        Ok(c) if c.is_phone => c.id,
        Ok(_) => {
            return Err(ApiError::unprocessable(
                "field `caller`: a test event needs a phone number",
            ))
        }
        Err(e) => return Err(ApiError::unprocessable(format!("field `caller`: {e}"))),
    };
    let kinds = event::sample_kinds(source.provider);
    let kind = request.kind.as_deref().unwrap_or(kinds[0]);
    let now = state.clock.now();
    let body = event::sample_body(
        source.provider,
        kind,
        &caller,
        source.business.as_deref(),
        now,
        fastrand::u64(..),
    )
    .ok_or_else(|| {
        ApiError::unprocessable(format!(
            "field `kind`: a {} source sends {} as a test event, not `{}`",
            source.provider.as_str(),
            kinds.join(" or "),
            printable(kind)
        ))
    })?;
    let ctx = source.parse_context(now, None);
    let mut events = event::parse(&body, &ctx).map_err(|e| {
        tracing::error!(source = %source.id, error = %e, "a test sample did not parse");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the test sample did not parse",
        )
    })?;
    for e in &mut events {
        e.test = true;
    }
    let first = events.first().cloned();
    let stored = Inbox::of(&state)
        .store_durably(events, now, config.dedupe_window)
        .await?;
    let ids: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": stored.len(), "events": ids, "event": first})),
    )
        .into_response())
}

/// What ingestion writes to and hands over to: the parts of the server's
/// state [`Inbox::store_durably`] uses.
struct Inbox<'a> {
    store: &'a crate::store::Store,
    arrivals: &'a Arc<Arrivals>,
    metrics: &'a Arc<Metrics>,
}

impl<'a> Inbox<'a> {
    fn of(state: &'a ServerState) -> Inbox<'a> {
        Inbox {
            store: &state.store,
            arrivals: &state.arrivals,
            metrics: &state.metrics,
        }
    }

    /// Store events durably — the inbox write, then the inbox log's group
    /// commit shared with concurrent requests — count and log them, and hand
    /// the new ones to the engine. Each event's id comes back with what became of it.
    async fn store_durably(
        &self,
        events: Vec<Event>,
        now: jiff::Timestamp,
        window: std::time::Duration,
    ) -> Result<Vec<(String, Insert)>, ApiError> {
        let offered = self
            .store
            .accept_events(events, now, window)
            .map_err(storage_failed)?;
        let outcomes: Vec<(String, Insert)> = offered
            .iter()
            .map(|offer| (offer.event().id.clone(), offer.outcome()))
            .collect();
        let mut hand_over = HandOver {
            store: self.store.clone(),
            arrivals: self.arrivals.clone(),
            metrics: self.metrics.clone(),
            offered: Some(offered),
        };
        hand_over
            .commit_and_hand_over()
            .await
            .map_err(storage_failed)?;
        Ok(outcomes)
    }
}

/// Accepted events on their way to the engine: once the inbox's commit
/// covers them, they are counted, logged and offered to it.
///
/// The request's own task does this, and if hyper drops the handler
/// while it waits (the client hung up), `Drop` hands the wait and the
/// hand-over to a task of its own: an event accepted by then must still
/// reach the engine at once, not only when the engine's scan of the
/// stored queue finds it (that scan waits for a quiet second, which
/// sustained load never gives it). Spawning that task for every request,
/// as before the twentieth round, cost a task and a wake-up per event.
struct HandOver {
    store: crate::store::Store,
    arrivals: Arc<Arrivals>,
    metrics: Arc<Metrics>,
    /// Taken once the commit has ended, well or not.
    offered: Option<Vec<crate::store::Offered>>,
}

impl HandOver {
    /// Wait until the events are durable, then count them and offer them
    /// to the engine (which writes their dedupe markers). Duplicates wait
    /// too: the first copy may still be on its way to disk. A failed
    /// commit hands nothing over (the answer is a 503; the store keeps the
    /// records, and its next checkpoint files them for the engine's scan).
    async fn commit_and_hand_over(&mut self) -> Result<(), crate::store::StoreError> {
        let committed = self.store.commit_inbox().await;
        let offered = self.offered.take().unwrap_or_default();
        committed?;
        hand_over(&self.store, &self.arrivals, &self.metrics, offered);
        Ok(())
    }
}

impl Drop for HandOver {
    fn drop(&mut self) {
        let Some(offered) = self.offered.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to finish on: the store keeps the events, and
            // files them for the engine's scan at its next checkpoint (or
            // at shutdown, for the next start).
            return;
        };
        let (store, arrivals, metrics) = (
            self.store.clone(),
            self.arrivals.clone(),
            self.metrics.clone(),
        );
        // A plain task, not another `HandOver`: a runtime shutting down
        // drops the tasks it is left with, and one that spawned again on
        // its own drop would do so without end. Dropped, this task leaves
        // its events to the store, as above.
        runtime.spawn(async move {
            match store.commit_inbox().await {
                Ok(()) => hand_over(&store, &arrivals, &metrics, offered),
                Err(e) => {
                    tracing::error!(error = %e, "the inbox's commit failed after the client hung up");
                }
            }
        });
    }
}

/// Count and log durably stored events and offer the new ones to the
/// engine.
fn hand_over(
    store: &crate::store::Store,
    arrivals: &Arrivals,
    metrics: &Metrics,
    offered: Vec<crate::store::Offered>,
) {
    for offer in &offered {
        let (event, outcome) = (offer.event(), offer.outcome());
        let accepted = outcome == Insert::Accepted;
        metrics.event_stored(event, accepted);
        if accepted {
            tracing::info!(
                event_id = %event.id,
                source = %event.source,
                kind = %event.kind,
                caller = event.caller.as_deref().unwrap_or("-"),
                test = event.test,
                "event accepted"
            );
        }
    }
    arrivals.offer_or_file(store, offered);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::ParseContext;

    fn missed_call(phone: &str) -> Event {
        let body = format!(
            r#"{{"event":"call.missed","phone":"{phone}","country":"MX","ts":"2026-05-14T14:00:00Z"}}"#
        );
        let ctx = ParseContext {
            source: "wz",
            provider: Provider::Wazzap,
            business: None,
            received_at: jiff::Timestamp::from_second(1_778_767_200).unwrap(),
            delivery_id: None,
        };
        event::parse(body.as_bytes(), &ctx).unwrap().remove(0)
    }

    /// What ingestion writes to, over a store whose inbox log holds each
    /// sync's end back until a word (or a hang-up) on the returned sender:
    /// the log's writer reports each write to its observer before it ends
    /// the batch.
    struct HeldSync {
        store: crate::store::Store,
        arrivals: Arc<Arrivals>,
        metrics: Arc<Metrics>,
        release: std::sync::mpsc::Sender<()>,
        /// Last: the store's stop checkpoints its log in the folder.
        _dir: tempfile::TempDir,
    }

    impl HeldSync {
        fn new() -> HeldSync {
            let dir = tempfile::tempdir().unwrap();
            let store = crate::store::Store::open(dir.path(), 8 << 20).unwrap();
            let (release, released) = std::sync::mpsc::channel::<()>();
            let released = std::sync::Mutex::new(released);
            store.observe_inbox_writes(move |_| {
                let _ = released.lock().unwrap().recv();
            });
            HeldSync {
                _dir: dir,
                store,
                arrivals: Arc::new(Arrivals::default()),
                metrics: Arc::new(Metrics::new()),
                release,
            }
        }

        fn inbox(&self) -> Inbox<'_> {
            Inbox {
                store: &self.store,
                arrivals: &self.arrivals,
                metrics: &self.metrics,
            }
        }

        /// A request for one missed call, polled once (accepted, then
        /// waiting for its sync) and dropped, as hyper drops a handler
        /// whose client hangs up.
        async fn cancel_a_request_while_it_syncs(&self) {
            let now = jiff::Timestamp::from_second(1_778_767_201).unwrap();
            let inbox = self.inbox();
            let mut request = Box::pin(inbox.store_durably(
                vec![missed_call("+5215512345678")],
                now,
                Duration::from_secs(3600),
            ));
            // One poll. (A zero timeout instead let the request finish
            // first now and then: the timer is not seen to expire on its
            // first poll.)
            let first = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::future::Future::poll(request.as_mut(), cx))
            })
            .await;
            assert!(
                first.is_pending(),
                "the request finished in one poll, so nothing was cancelled: {first:?}"
            );
        }
    }

    /// hyper drops a handler whose client hangs up. An event accepted
    /// by then still goes to the engine in memory once it is synced,
    /// not only to the stored queue, whose scan waits for a quiet second
    /// that sustained load never gives it.
    #[tokio::test]
    async fn a_request_cancelled_while_its_event_syncs_still_hands_it_over() {
        let held = HeldSync::new();
        held.cancel_a_request_while_it_syncs().await;
        let (store, arrivals) = (&held.store, &held.arrivals);
        assert_eq!(store.pending_len(), 1, "accepted before the cancel");
        assert_eq!(arrivals.waiting(), 0, "not handed over before its sync");
        drop(held.release);

        for _ in 0..500 {
            if arrivals.waiting() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the cancelled request's event was never handed to the engine");
    }

    /// The runtime stops while a cancelled request's hand-over still
    /// waits for its sync: the task is dropped and the event stays in the
    /// stored queue. (A hand-over task that spawned itself again when
    /// dropped did so without end on a runtime shutting down.)
    #[test]
    fn a_runtime_stopping_while_a_cancelled_request_waits_leaves_its_event_queued() {
        let held = HeldSync::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // The cancelled request's hand-over goes to a task, which waits.
        runtime.block_on(held.cancel_a_request_while_it_syncs());
        drop(runtime);
        drop(held.release);
        assert_eq!(held.arrivals.waiting(), 0);
        // Kept in memory, and filed for the next start.
        held.store.flush_now().unwrap();
        assert_eq!(
            held.store.pending_events(10).unwrap().len(),
            1,
            "still queued in the store"
        );
    }
}
