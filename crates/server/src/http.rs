//! The HTTP surface: the live directory, one space's details, and the signaling upgrade.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use confab_proto::{ApiError, ErrorCode, SpaceDetails, SpaceId, SpaceSummary};

use crate::Shared;
use crate::room::lock;

/// Frames above this close the socket at the protocol level; frames between
/// `MAX_FRAME_BYTES` and this get a `frame_too_large` error and the connection stays.
const WS_HARD_LIMIT: usize = 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/spaces", get(list_spaces))
        .route("/api/spaces/{id}", get(space_details))
        .route("/ws", get(signaling))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared)
}

fn api_error(status: StatusCode, code: ErrorCode, message: String) -> Response {
    (status, Json(ApiError { code, message })).into_response()
}

async fn list_spaces(State(shared): State<Arc<Shared>>) -> Json<Vec<SpaceSummary>> {
    Json(live_directory(&shared))
}

/// The live spaces, busiest first.
pub(crate) fn live_directory(shared: &Shared) -> Vec<SpaceSummary> {
    let mut spaces: Vec<SpaceSummary> = lock(&shared.directory).values().cloned().collect();
    spaces.sort_by(|a, b| {
        b.listeners
            .cmp(&a.listeners)
            .then_with(|| a.title.cmp(&b.title))
            .then_with(|| a.id.cmp(&b.id))
    });
    spaces
}

async fn space_details(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let id: SpaceId = match id.parse() {
        Ok(id) => id,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidInput,
                e.to_string(),
            );
        }
    };
    let db_shared = Arc::clone(&shared);
    let lookup_id = id.clone();
    let record = tokio::task::spawn_blocking(move || db_shared.db.space(&lookup_id)).await;
    match record {
        Ok(Ok(Some(rec))) => {
            let listeners = lock(&shared.directory)
                .get(&id)
                .map(|s| s.listeners)
                .unwrap_or(0);
            Json(SpaceDetails {
                id: rec.id,
                title: rec.title,
                host: rec.host_name,
                topics: rec.topics,
                state: rec.state,
                listeners,
                created_at: rec.created_at,
                ended_at: rec.ended_at,
            })
            .into_response()
        }
        Ok(Ok(None)) => api_error(
            StatusCode::NOT_FOUND,
            ErrorCode::NoSuchSpace,
            format!("no space {id}"),
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading a space");
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "database error".into(),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "database task failed");
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "database error".into(),
            )
        }
    }
}

async fn signaling(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(WS_HARD_LIMIT)
        .max_frame_size(WS_HARD_LIMIT)
        .on_upgrade(move |socket| crate::signaling::serve(shared, socket))
}
