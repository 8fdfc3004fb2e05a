//! HTTP: the only module that imports axum.
//!
//! [`router`] is a plain function over [`ServerState`], so tests can drive it
//! with `oneshot` or serve it on `127.0.0.1:0`. Errors become HTTP answers in
//! one place ([`error::ApiError`]), which never carries internals or secrets.

mod error;
mod ingest;

use std::sync::{Arc, RwLock};

use axum::routing::get;
use axum::Router;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::store::Store;

pub use error::ApiError;

/// What the handlers share. The config sits behind a lock so a reload can
/// swap it; handlers take a snapshot (`Arc`) per request.
#[derive(Clone)]
pub struct ServerState {
    pub config: Arc<RwLock<Arc<Config>>>,
    pub store: Store,
    pub clock: SharedClock,
    /// Woken after events are accepted, so the engine picks them up at once.
    pub accepted: Arc<tokio::sync::Notify>,
}

impl ServerState {
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config lock").clone()
    }
}

pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
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

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
