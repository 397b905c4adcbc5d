//! `edusync serve`: the long-running service (hub ingest, console, feeds).

use std::process::ExitCode;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: crate::ConfigArg,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let config = super::common::load(&a.config.config)?;
    let rt = super::common::runtime()?;
    rt.block_on(async move {
        let listen = config.server.listen.clone();
        let state = edusync_server::AppState::open(config)?;
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (change [server] listen, or stop what is using that port)"))?;
        eprintln!("edusync serve: listening on http://{}", listener.local_addr()?);
        edusync_server::serve_on(listener, state, shutdown_signal()).await?;
        eprintln!("edusync serve: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
