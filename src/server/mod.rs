//! HTTP: the only module that imports axum.
//!
//! [`router`] is a plain function over [`ServerState`], so tests can drive it
//! with `oneshot` or serve it on `127.0.0.1:0`. Errors become HTTP answers in
//! one place ([`error::ApiError`]), which never carries internals or secrets.

mod admin;
mod error;
mod ingest;

use std::sync::{Arc, RwLock};

use axum::middleware;
use axum::routing::get;
use axum::Router;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::engine::Arrivals;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::workflow::SharedCatalog;

pub use error::ApiError;

/// What the handlers share. The config sits behind a lock so a reload can
/// swap it; handlers take a snapshot (`Arc`) per request.
#[derive(Clone)]
pub struct ServerState {
    pub config: Arc<RwLock<Arc<Config>>>,
    pub store: Store,
    pub catalog: SharedCatalog,
    pub clock: SharedClock,
    /// Accepted events go to the engine through this, at once.
    pub arrivals: Arc<Arrivals>,
    pub metrics: Arc<Metrics>,
}

impl ServerState {
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config lock").clone()
    }
}

/// The state every handler extracts, shared: axum clones it for each
/// request, and a [`ServerState`] by value is a reference count per field
/// to bump and drop on both cores (when the store alone was one per sled
/// tree, ≈1% of ingestion's CPU in the load bench's profile).
pub type SharedState = Arc<ServerState>;

pub fn router(state: ServerState) -> Router {
    let state: SharedState = Arc::new(state);
    let api = Router::new()
        .route("/workflows", get(admin::workflows))
        .route("/contacts", get(admin::list_contacts))
        .route(
            "/contacts/{phone}",
            get(admin::get_contact)
                .put(admin::put_contact)
                .patch(admin::patch_contact)
                .delete(admin::delete_contact),
        )
        .route("/executions", get(admin::list_executions))
        .route("/executions/{id}", get(admin::get_execution))
        .route("/calls/active", get(admin::active_calls))
        .route(
            "/sources/{source}/test",
            axum::routing::post(ingest::test_event),
        )
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_token,
        ));
    Router::new()
        .nest("/api", api)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/hooks/{source}",
            get(ingest::meta_handshake).post(ingest::receive),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<SharedState>,
) -> impl axum::response::IntoResponse {
    // Counting the queue walks it (sled keeps no count): off the request
    // threads, as a backlog after a burst can be long.
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.pending_len()).await {
        Ok(pending) => state.metrics.set_events_pending(pending),
        Err(e) => tracing::warn!(error = %e, "cannot count the pending events"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        state.metrics.render(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
