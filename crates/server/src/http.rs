//! The HTTP surface: the live directory, one space's details, accounts, and the signaling
//! upgrade.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confab_proto::{
    AddDeviceRequest, ApiError, Challenge, ChallengeRequest, ErrorCode, Profile, ProfileUpdate,
    RegisterRequest, ReportFiled, ReportRequest, ScheduleRequest, Scheduled, Session,
    SignInRequest, SpaceDetails, SpaceId, SpaceSummary,
};

use crate::accounts::{AccountError, Token, User};
use crate::reports::{ReportError, ReportKind};
use crate::schedules::{ScheduleError, to_wire};

use crate::room::lock;
use crate::{Shared, unix_now};

/// Frames above this close the socket at the protocol level; frames between
/// `MAX_FRAME_BYTES` and this get a `frame_too_large` error and the connection stays.
const WS_HARD_LIMIT: usize = 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/spaces", get(list_spaces))
        .route("/api/spaces/{id}", get(space_details))
        .route("/api/auth/challenge", post(challenge))
        .route("/api/auth/sign-in", post(sign_in))
        .route("/api/accounts", post(register))
        .route("/api/me", get(me).put(update_me))
        .route("/api/me/devices", post(add_device))
        .route("/api/users/{handle}", get(user_profile))
        .route("/api/reports", post(file_report))
        .route("/api/schedules", get(upcoming).post(schedule))
        .route("/api/schedules/{id}", delete(cancel_schedule))
        .route(
            "/api/schedules/{id}/reminder",
            put(remind_on).delete(remind_off),
        )
        .route("/api/me/reminders", get(my_reminders))
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
    if let Some(cluster) = &shared.cluster {
        spaces.extend(cluster.remote_spaces());
    }
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

/// A signaling connection's read and write buffers start at this size and grow for a larger
/// frame. The WebSocket library's default (128 KiB each) made an idle listener's connection
/// cost the server about 190 KiB; signaling frames are mostly well under 1 KiB.
const WS_BUFFER_BYTES: usize = 4 * 1024;

async fn signaling(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(WS_HARD_LIMIT)
        .max_frame_size(WS_HARD_LIMIT)
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(WS_BUFFER_BYTES)
        .on_upgrade(move |socket| crate::signaling::serve(shared, socket))
}

// ---- accounts ----

fn account_error(e: AccountError) -> Response {
    let status = match &e {
        AccountError::HandleTaken | AccountError::KeyTaken => StatusCode::CONFLICT,
        AccountError::BadToken => StatusCode::UNAUTHORIZED,
        AccountError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        AccountError::Storage(err) => {
            tracing::error!(error = %err, "accounts storage");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ if e.code() == ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    api_error(status, e.code(), e.to_string())
}

/// A refusal before any account call: a status and `{code, message}`.
type Refusal = (StatusCode, Json<ApiError>);

/// A JSON body, or a `{code: invalid_input}` refusal saying what is wrong with it.
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Refusal> {
    body.map(|Json(b)| b).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(ApiError {
                code: ErrorCode::InvalidInput,
                message: e.body_text(),
            }),
        )
    })
}

/// The `Authorization: Bearer` token, or a `bad_token` refusal.
fn bearer(headers: &HeaderMap) -> Result<String, Refusal> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .ok_or_else(|| {
            (
                StatusCode::UNAUTHORIZED,
                Json(ApiError {
                    code: ErrorCode::BadToken,
                    message: AccountError::BadToken.to_string(),
                }),
            )
        })
}

fn profile(user: User) -> Profile {
    Profile {
        handle: user.handle,
        display_name: user.display_name,
        bio: user.bio,
        avatar: user.avatar.map(|a| STANDARD.encode(a)),
    }
}

/// Why an API call was refused, by whichever part refused it; each kind knows its status.
enum Refused {
    Account(AccountError),
    Schedule(ScheduleError),
    Report(ReportError),
}

impl From<AccountError> for Refused {
    fn from(e: AccountError) -> Refused {
        Refused::Account(e)
    }
}

impl From<ScheduleError> for Refused {
    fn from(e: ScheduleError) -> Refused {
        Refused::Schedule(e)
    }
}

impl From<ReportError> for Refused {
    fn from(e: ReportError) -> Refused {
        Refused::Report(e)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Account(e) => account_error(e),
            Refused::Schedule(e) => schedule_error(e),
            Refused::Report(ReportError::Storage(e)) => account_error(AccountError::Storage(e)),
            Refused::Report(e) => api_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidInput,
                e.to_string(),
            ),
        }
    }
}

/// Runs `call` off the async threads (it touches SQLite) with the current time, and shapes a
/// refusal into its response.
async fn blocking<T, E, F>(shared: Arc<Shared>, call: F) -> Result<T, Response>
where
    T: Send + 'static,
    E: Into<Refused> + Send + 'static,
    F: FnOnce(&Shared, i64) -> Result<T, E> + Send + 'static,
{
    match tokio::task::spawn_blocking(move || call(&shared, unix_now())).await {
        Ok(r) => r.map_err(|e| e.into().into_response()),
        Err(e) => Err(account_error(AccountError::Storage(e.into()))),
    }
}

/// [`blocking`] for the account `token` signs in: `call` gets its handle.
async fn as_user<T, E, F>(shared: Arc<Shared>, token: String, call: F) -> Result<T, Response>
where
    T: Send + 'static,
    E: Into<Refused> + Send + 'static,
    F: FnOnce(&Shared, &str, i64) -> Result<T, E> + Send + 'static,
{
    blocking(shared, move |s, now| -> Result<T, Refused> {
        let user = s.accounts.user_for_token(&token, now)?;
        call(s, &user.handle, now).map_err(Into::into)
    })
    .await
}

fn session((user, token): (User, Token)) -> Json<Session> {
    Json(Session {
        user: profile(user),
        token: token.token,
        expires_at: token.expires_at,
    })
}

async fn challenge(
    State(shared): State<Arc<Shared>>,
    req: Result<Json<ChallengeRequest>, JsonRejection>,
) -> Response {
    let req = match body(req) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    blocking(shared, move |s, now| -> Result<_, AccountError> {
        let challenge = s.accounts.challenge(&req.public_key, now)?;
        Ok(Json(Challenge {
            challenge,
            expires_at: now + crate::accounts::CHALLENGE_TTL,
        }))
    })
    .await
    .into_response()
}

async fn register(
    State(shared): State<Arc<Shared>>,
    req: Result<Json<RegisterRequest>, JsonRejection>,
) -> Response {
    let req = match body(req) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    blocking(shared, move |s, now| {
        s.accounts
            .register(
                &req.handle,
                &req.display_name,
                &req.challenge,
                &req.signature,
                now,
            )
            .map(session)
    })
    .await
    .into_response()
}

async fn sign_in(
    State(shared): State<Arc<Shared>>,
    req: Result<Json<SignInRequest>, JsonRejection>,
) -> Response {
    let req = match body(req) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    blocking(shared, move |s, now| {
        s.accounts
            .sign_in(&req.challenge, &req.signature, now)
            .map(session)
    })
    .await
    .into_response()
}

async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = match bearer(&headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    blocking(shared, move |s, now| {
        s.accounts
            .user_for_token(&token, now)
            .map(|u| Json(profile(u)))
    })
    .await
    .into_response()
}

async fn update_me(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    req: Result<Json<ProfileUpdate>, JsonRejection>,
) -> Response {
    let (token, req) = match (bearer(&headers), body(req)) {
        (Ok(t), Ok(r)) => (t, r),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let avatar = match req.avatar.map(|a| STANDARD.decode(a)).transpose() {
        Ok(a) => a,
        Err(_) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidInput,
                "the avatar is not base64".to_owned(),
            );
        }
    };
    blocking(shared, move |s, now| {
        s.accounts
            .update_profile(&token, &req.display_name, &req.bio, avatar, now)
            .map(|u| Json(profile(u)))
    })
    .await
    .into_response()
}

async fn add_device(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    req: Result<Json<AddDeviceRequest>, JsonRejection>,
) -> Response {
    let (token, req) = match (bearer(&headers), body(req)) {
        (Ok(t), Ok(r)) => (t, r),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    blocking(shared, move |s, now| {
        s.accounts.add_device(&token, &req.public_key, now)
    })
    .await
    .map(|()| StatusCode::NO_CONTENT)
    .into_response()
}

async fn user_profile(State(shared): State<Arc<Shared>>, Path(handle): Path<String>) -> Response {
    blocking(shared, move |s, _| s.accounts.user(&handle))
        .await
        .map(|u| match u {
            Some(u) => Json(profile(u)).into_response(),
            None => api_error(
                StatusCode::NOT_FOUND,
                ErrorCode::InvalidInput,
                "no user has this handle".to_owned(),
            ),
        })
        .into_response()
}

// ---- reports ----

async fn file_report(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    req: Result<Json<ReportRequest>, JsonRejection>,
) -> Response {
    let (token, req) = match (bearer(&headers), body(req)) {
        (Ok(t), Ok(r)) => (t, r),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let Some(kind) = ReportKind::parse(&req.kind) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            "kind is \"user\" or \"space\"".to_owned(),
        );
    };
    as_user(shared, token, move |s, reporter, now| {
        s.reports
            .file(reporter, kind, &req.target, &req.reason, now)
    })
    .await
    .map(|id| (StatusCode::CREATED, Json(ReportFiled { id })).into_response())
    .unwrap_or_else(|e| e)
}

// ---- schedules ----

fn schedule_error(e: ScheduleError) -> Response {
    let status = match &e {
        ScheduleError::Invalid(..) => StatusCode::BAD_REQUEST,
        ScheduleError::NotFound => StatusCode::NOT_FOUND,
        ScheduleError::NotHost => StatusCode::FORBIDDEN,
        ScheduleError::NotScheduled => StatusCode::CONFLICT,
        ScheduleError::Storage(err) => {
            tracing::error!(error = %err, "schedules storage");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    api_error(status, e.code(), e.to_string())
}

async fn upcoming(State(shared): State<Arc<Shared>>) -> Response {
    match tokio::task::spawn_blocking(move || shared.schedules.upcoming()).await {
        Ok(Ok(list)) => {
            Json(list.into_iter().map(to_wire).collect::<Vec<Scheduled>>()).into_response()
        }
        Ok(Err(e)) => schedule_error(ScheduleError::Storage(e)),
        Err(e) => schedule_error(ScheduleError::Storage(e.into())),
    }
}

async fn schedule(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    req: Result<Json<ScheduleRequest>, JsonRejection>,
) -> Response {
    let (token, req) = match (bearer(&headers), body(req)) {
        (Ok(t), Ok(r)) => (t, r),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    as_user(shared, token, move |s, host, now| {
        s.schedules
            .schedule(host, &req.title, &req.topics, req.starts_at, now)
    })
    .await
    .map(|r| (StatusCode::CREATED, Json(to_wire(r))).into_response())
    .unwrap_or_else(|e| e)
}

async fn cancel_schedule(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let token = match bearer(&headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    as_user(shared, token, move |s, host, _| {
        s.schedules.cancel(host, &id)
    })
    .await
    .map(|()| StatusCode::NO_CONTENT.into_response())
    .unwrap_or_else(|e| e)
}

async fn remind(shared: Arc<Shared>, headers: HeaderMap, id: String, on: bool) -> Response {
    let token = match bearer(&headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    as_user(shared, token, move |s, user, _| {
        s.schedules.remind(user, &id, on)
    })
    .await
    .map(|()| StatusCode::NO_CONTENT.into_response())
    .unwrap_or_else(|e| e)
}

async fn remind_on(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    remind(shared, headers, id, true).await
}

async fn remind_off(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    remind(shared, headers, id, false).await
}

async fn my_reminders(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = match bearer(&headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    as_user(shared, token, move |s, user, _| {
        s.schedules.reminders(user).map_err(ScheduleError::Storage)
    })
    .await
    .map(|list| Json(list.into_iter().map(to_wire).collect::<Vec<Scheduled>>()).into_response())
    .unwrap_or_else(|e| e)
}
