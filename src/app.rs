//! The wiring point: open the store, start the HTTP server and the
//! background tasks, and tear everything down in order on shutdown.
//!
//! [`run`] takes an already-bound listener and a shutdown future, so tests
//! start the real thing on `127.0.0.1:0` and stop it when they like; `serve`
//! binds the configured address and passes SIGTERM/SIGINT.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::clock::{self, SharedClock};
use crate::config::Config;
use crate::server::{self, ServerState};
use crate::store::{Store, StoreError, DEFAULT_CACHE_BYTES};

/// How often expired dedupe entries are cleaned up.
const PURGE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
}

/// Run ringback until `shutdown` resolves, then stop accepting, let requests
/// in flight finish, flush, and return.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    run_with_clock(config, listener, shutdown, clock::system()).await
}

pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: SharedClock,
) -> Result<(), AppError> {
    let store = Store::open(&config.data_dir, DEFAULT_CACHE_BYTES)?;
    run_with_store(config, store, listener, shutdown, clock).await
}

/// [`run`] on a store the caller opened (tests keep a handle to it).
pub async fn run_with_store(
    config: Config,
    store: Store,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: SharedClock,
) -> Result<(), AppError> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let dedupe_window = config.dedupe_window;
    let state = ServerState {
        config: Arc::new(RwLock::new(Arc::new(config))),
        store: store.clone(),
        clock: clock.clone(),
        accepted: Arc::new(tokio::sync::Notify::new()),
    };

    let purge = {
        let store = store.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            loop {
                tick.tick().await;
                let store = store.clone();
                let now = clock.now();
                match tokio::task::spawn_blocking(move || store.purge_expired(now, dedupe_window))
                    .await
                {
                    Ok(Ok(n)) if n > 0 => {
                        tracing::debug!(removed = n, "expired dedupe entries removed")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "dedupe cleanup failed"),
                    _ => {}
                }
            }
        })
    };

    let addr = listener.local_addr()?;
    tracing::info!(%addr, "ringback listening");
    let result = axum::serve(listener, server::router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    purge.abort();
    let _ = purge.await;
    tracing::info!("shutting down: flushing the store");
    store.flush_now()?;
    result?;
    Ok(())
}
