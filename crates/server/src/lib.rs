//! The edusync HTTP service: the one crate that binds a socket.
//!
//! [`router`] assembles every route from one [`AppState`]; each area is its
//! own module and contributes a `Router`:
//! - [`hub`]: the site data ingest API (handlers live in `edusync-collect`);
//! - [`console`]: server-rendered admin pages (for now: Sites), behind
//!   [`console::require_login`];
//! - [`feeds`]: calendar feeds (the schools' server-on days);
//! - `/healthz`.
//!
//! [`serve`] binds `[server] listen` and serves until the shutdown future
//! completes, finishing requests in flight.

pub mod console;
pub mod feeds;
pub mod hub;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;

use edusync_collect::hub::Hub;
use edusync_config::Config;

/// Everything request handlers share. Grows as the service does.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
}

impl AppState {
    /// Opens what the service needs from the config (the hub's store and root).
    pub fn open(config: Config) -> Result<AppState, ServeError> {
        let hub = Hub::open(&config).map_err(|e| ServeError::Hub(e.to_string()))?;
        Ok(AppState {
            config: Arc::new(config),
            hub: Arc::new(hub),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source} (change [server] listen, or stop what is using that port)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Hub(String),
    #[error("server stopped with an error: {0}")]
    Serve(std::io::Error),
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(hub::routes(&state))
        .merge(console::routes(&state))
        .merge(feeds::routes(&state))
}

/// Binds `config.server.listen` and serves until `shutdown` completes.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = config.server.listen.clone();
    let state = AppState::open(config)?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
    serve_on(listener, state, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(addr = %local, "edusync serve listening");
    // Abandoned partial uploads (a site that vanished mid-file) are dropped after a week.
    let hub = state.hub.clone();
    let janitor = tokio::spawn(async move {
        loop {
            match hub.cleanup_stale(Duration::from_secs(7 * 86_400)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(uploads = n, "dropped abandoned partial uploads"),
                Err(e) => tracing::warn!(error = %e, "cleaning abandoned uploads failed"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
    let r = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    janitor.abort();
    r.map_err(ServeError::Serve)
}
