//! Hub ingest routes (`/hub/v1/...`): the handlers are `edusync-collect`'s;
//! this module only mounts them.

use axum::Router;

use crate::AppState;

pub fn routes(state: &AppState) -> Router {
    edusync_collect::hub::http::routes(state.hub.clone())
}
