//! The edusync HTTP service: the one crate that binds a socket.
//!
//! [`router`] assembles every route from one [`AppState`]; each area is its
//! own module and contributes a `Router`:
//! - [`hub`]: the site data ingest API (handlers live in `edusync-collect`);
//! - [`console`]: server-rendered admin pages (dashboard, runs, people,
//!   configuration, audit log, accounts, Sites) and `/metrics`, behind
//!   [`console::require_login`] (sessions from [`auth`]);
//! - [`feeds`]: calendar feeds (the schools' server-on days);
//! - [`personal`]: per-person subscription feeds and "my timetable" pages;
//! - `/healthz` (the process answers) and `/readyz` (state store reachable,
//!   every profile's first cycle done).
//!
//! [`serve`] binds `[server] listen`, starts the [`scheduler`] and serves
//! until the shutdown future completes, finishing requests in flight and
//! letting running cycles stop between batches.

pub mod auth;
pub mod console;
pub mod feeds;
pub mod hub;
pub mod metrics;
pub mod personal;
pub mod scheduler;

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
    /// The sync state store (ledger, outbox, runs, console tables).
    pub store: Arc<dyn edusync_store::Store>,
    pub scheduler: Arc<scheduler::Scheduler>,
    pub auth: Arc<auth::Auth>,
    pub feeds: Arc<personal::FeedCache>,
}

impl AppState {
    /// Opens what the service needs from the config (the hub's store and
    /// root, the sync state store). The scheduler starts with [`serve_on`].
    pub fn open(config: Config) -> Result<AppState, ServeError> {
        let hub = Hub::open(&config).map_err(|e| ServeError::Hub(e.to_string()))?;
        let store: Arc<dyn edusync_store::Store> =
            Arc::from(edusync_store::open(&config).map_err(|e| ServeError::State(e.to_string()))?);
        let config = Arc::new(config);
        Ok(AppState {
            scheduler: Arc::new(scheduler::Scheduler::new(config.clone(), store.clone())),
            auth: Arc::new(auth::Auth::new(store.clone(), &config.server.listen)),
            feeds: Arc::new(personal::FeedCache::default()),
            config,
            hub: Arc::new(hub),
            store,
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
    #[error("{0}")]
    State(String),
    #[error("server stopped with an error: {0}")]
    Serve(std::io::Error),
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz).with_state(state.clone()))
        .merge(hub::routes(&state))
        .merge(console::routes(&state))
        .merge(feeds::routes(&state))
        .merge(personal::routes(&state))
}

/// 200 when the state store answers and every profile finished its first
/// cycle since start (whatever its outcome); 503 with the reason otherwise.
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let st = state.clone();
    let store_ok = tokio::task::spawn_blocking(move || st.store.runs(None, 1).map(|_| ()))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    if let Err(e) = store_ok {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("state store: {e}\n"),
        );
    }
    let waiting: Vec<&str> = state
        .scheduler
        .slots
        .iter()
        .filter(|s| !s.snapshot().attempted)
        .map(|s| s.profile.name.as_str())
        .collect();
    if !state.scheduler.is_started() && !state.scheduler.slots.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "scheduler not started\n".into(),
        );
    }
    if !waiting.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("first cycle not finished yet: {}\n", waiting.join(", ")),
        );
    }
    (StatusCode::OK, "ready\n".into())
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
    let scheduler = state.scheduler.clone();
    let cycles = scheduler.start();
    let stop = scheduler.clone();
    let r = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        // Cycles stop between batches while in-flight requests finish.
        stop.stop();
    })
    .await;
    scheduler.stop();
    for c in cycles {
        let _ = c.await;
    }
    janitor.abort();
    r.map_err(ServeError::Serve)
}
