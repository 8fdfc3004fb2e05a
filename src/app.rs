//! The wiring point: open the store, start the HTTP server and the
//! background tasks, and tear everything down in order on shutdown.
//!
//! [`run`] takes an already-bound listener and a shutdown future, so tests
//! start the real thing on `127.0.0.1:0` and stop it when they like; `serve`
//! binds the configured address and passes SIGTERM/SIGINT.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::clock::{self, SharedClock};
use crate::config::Config;
use crate::delivery::Connectors;
use crate::engine::Engine;
use crate::reload::{self, Reloader};
use crate::server::{self, ServerState};
use crate::store::{Store, StoreError, DEFAULT_CACHE_BYTES};

/// How long runs in flight get to finish on shutdown; the rest resume from
/// their journals on the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How often expired dedupe entries, old executions and ended windows are
/// cleaned up.
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
    // Parsing the phone metadata takes about as long as opening a large
    // store; do both at once.
    let warm_up = std::thread::spawn(crate::event::warm_up);
    let store = Store::open(&config.data_dir, DEFAULT_CACHE_BYTES)?;
    let _ = warm_up.join();
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
    // A no-op when `run_with_clock` already did it.
    crate::event::warm_up();
    let catalog = reload::load_catalog(&config.workflows_dir, &reload::known_names(&config), None);
    reload::log_problems(&catalog);
    tracing::info!(
        workflows = catalog.workflows.len(),
        dir = %config.workflows_dir.display(),
        "workflows loaded"
    );
    let catalog = Arc::new(RwLock::new(Arc::new(catalog)));
    let connectors = Connectors::new(config.connectors.clone(), &config.outbound);
    let dedupe_window = config.dedupe_window;
    let (keep_for, keep_max) = (config.executions_keep_for, config.executions_keep_max);
    let config = Arc::new(RwLock::new(Arc::new(config)));
    let arrivals = Arc::new(crate::engine::Arrivals::default());
    let metrics = Arc::new(crate::metrics::Metrics::new());
    {
        let metrics = metrics.clone();
        store.observe_inbox_writes(move |took| metrics.inbox_write(took));
    }
    let state = ServerState {
        config: config.clone(),
        store: store.clone(),
        catalog: catalog.clone(),
        clock: clock.clone(),
        arrivals: arrivals.clone(),
        metrics: metrics.clone(),
    };
    let engine = Engine::new(
        store.clone(),
        catalog.clone(),
        connectors.clone(),
        clock.clone(),
        arrivals,
    )
    .with_config(config.clone())
    .with_metrics(metrics);
    engine.recover().await;
    let overrides = config.read().expect("config lock").overrides.clone();
    let reloader = Reloader {
        overrides,
        config,
        catalog,
        connectors,
    };

    let mut background = Vec::new();
    background.push(tokio::spawn(engine.clone().dispatch_forever()));
    background.push(tokio::spawn(engine.clone().timers_forever()));
    background.push(tokio::spawn(reloader.watch()));
    background.push({
        let store = store.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            loop {
                tick.tick().await;
                let store = store.clone();
                let now = clock.now();
                let done = tokio::task::spawn_blocking(move || {
                    let events = store.purge_expired(now, dedupe_window)?;
                    let runs = store.prune_executions(now, keep_for, keep_max)?;
                    let windows = store.prune_windows(now)? + store.prune_calls(now)?;
                    Ok::<_, StoreError>((events, runs, windows))
                })
                .await;
                match done {
                    Ok(Ok((events, runs, windows))) => {
                        tracing::debug!(events, runs, windows, "old records pruned")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "pruning failed"),
                    Err(_) => {}
                }
            }
        })
    });

    let addr = listener.local_addr()?;
    tracing::info!(%addr, "ringback listening");
    // Answers go out at once, not held back by Nagle's algorithm waiting
    // for the client's (delayed) acknowledgement of an earlier segment.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let result = axum::serve(listener, server::router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    tracing::info!("stopped accepting; letting runs in flight finish");
    engine.shutdown(SHUTDOWN_GRACE).await;
    for task in &background {
        task.abort();
    }
    for task in background {
        let _ = task.await;
    }
    tracing::info!("shutting down: flushing the store");
    store.flush_now()?;
    result?;
    Ok(())
}
