//! The hub's ingest routes (see [`crate::protocol`]). `edusync-server` merges
//! [`routes`] into its router; only the server binds a socket.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};

use super::{Hub, HubError};
use crate::protocol::{ErrorBody, CHUNK_HASH_HEADER, MAX_CHUNK_SIZE};

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() && status != StatusCode::INSUFFICIENT_STORAGE {
            tracing::error!(error = %self, "hub request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "hub request refused");
        }
        let body = ErrorBody {
            code: self.code().to_string(),
            message: self.to_string(),
        };
        let mut resp = (status, Json(body)).into_response();
        if let HubError::OutOfOrder { status: s, .. } | HubError::Incomplete(s) = &self {
            if let Ok(v) = s.next_chunk.to_string().parse() {
                resp.headers_mut().insert("x-edusync-next-chunk", v);
            }
        }
        resp
    }
}

/// The ingest routes under `/hub/v1`.
pub fn routes(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/hub/v1/sites/{site}/heartbeat", post(heartbeat))
        .route("/hub/v1/sites/{site}/uploads", post(begin))
        .route("/hub/v1/sites/{site}/uploads/{id}/chunks/{n}", put(chunk))
        .route("/hub/v1/sites/{site}/uploads/{id}/complete", post(complete))
        .layer(DefaultBodyLimit::max(MAX_CHUNK_SIZE as usize + (1 << 20)))
        .with_state(hub)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HubError> {
    serde_json::from_slice(body).map_err(|e| HubError::BadRequest {
        code: "bad_json",
        message: format!("request body is not the expected JSON: {e}"),
    })
}

async fn heartbeat(
    State(hub): State<Arc<Hub>>,
    Path(site): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, HubError> {
    hub.authenticate(&site, bearer(&headers)).await?;
    hub.heartbeat(&site, json(&body)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn begin(
    State(hub): State<Arc<Hub>>,
    Path(site): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HubError> {
    hub.authenticate(&site, bearer(&headers)).await?;
    Ok(Json(hub.begin(&site, json(&body)?).await?).into_response())
}

async fn chunk(
    State(hub): State<Arc<Hub>>,
    Path((site, id, n)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HubError> {
    hub.authenticate(&site, bearer(&headers)).await?;
    let hash = headers
        .get(CHUNK_HASH_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| HubError::BadRequest {
            code: "missing_chunk_hash",
            message: format!(
                "the {CHUNK_HASH_HEADER} header (BLAKE3 of the uncompressed chunk) is missing"
            ),
        })?
        .to_string();
    Ok(Json(hub.put_chunk(&site, &id, n, &hash, body.to_vec()).await?).into_response())
}

async fn complete(
    State(hub): State<Arc<Hub>>,
    Path((site, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    hub.authenticate(&site, bearer(&headers)).await?;
    Ok(Json(hub.complete(&site, &id).await?).into_response())
}
