//! The IPC commands. Each one translates its arguments and delegates to
//! [`confab_client::app::App`]; failures cross as [`IpcError`] `{ code, message }`.
//! (They live in a module because a `#[tauri::command] pub fn` at the crate root clashes with
//! the macro's own items.)

use confab_client::app::App;
use confab_proto::ipc::{
    Account, AppState, CurrentSpace, Devices, IpcError, IpcErrorCode, ReportKind, Settings,
    StageAction, Upcoming,
};
use confab_proto::{ParticipantId, SpaceId, SpaceSummary};
use tauri::State;

type Result<T> = std::result::Result<T, IpcError>;

/// Everything the UI draws from, now.
#[tauri::command]
#[specta::specta]
pub async fn get_state(app: State<'_, App>) -> Result<AppState> {
    Ok(app.state().await)
}

/// Opens a space with us as host.
#[tauri::command]
#[specta::specta]
pub async fn create_space(
    app: State<'_, App>,
    title: String,
    topics: Vec<String>,
) -> Result<CurrentSpace> {
    app.create_space(title, topics).await
}

/// Joins a live space as a listener; `id` is checked here so a bad one is `invalidInput`.
#[tauri::command]
#[specta::specta]
pub async fn join_space(app: State<'_, App>, id: String) -> Result<CurrentSpace> {
    let id: SpaceId = id
        .parse()
        .map_err(|e: confab_proto::SpaceIdError| IpcError {
            code: IpcErrorCode::InvalidInput,
            message: e.to_string(),
        })?;
    app.join_space(id).await
}

#[tauri::command]
#[specta::specta]
pub async fn leave_space(app: State<'_, App>) -> Result<()> {
    app.leave_space().await
}

/// Ends our space (the server checks that we host it).
#[tauri::command]
#[specta::specta]
pub async fn end_space(app: State<'_, App>) -> Result<()> {
    app.end_space().await
}

#[tauri::command]
#[specta::specta]
pub async fn set_muted(app: State<'_, App>, muted: bool) -> Result<()> {
    app.set_muted(muted).await
}

#[tauri::command]
#[specta::specta]
pub async fn follow(app: State<'_, App>, host: String) -> Result<()> {
    app.follow(host).await
}

#[tauri::command]
#[specta::specta]
pub async fn unfollow(app: State<'_, App>, host: String) -> Result<()> {
    app.unfollow(host).await
}

#[tauri::command]
#[specta::specta]
pub async fn get_settings(app: State<'_, App>) -> Result<Settings> {
    app.settings().await
}

/// Saves settings; a new server takes effect when the app restarts.
#[tauri::command]
#[specta::specta]
pub async fn save_settings(app: State<'_, App>, settings: Settings) -> Result<()> {
    app.save_settings(settings).await
}

/// The microphones and speakers to pick from (enumerating may block: not on the main thread).
#[tauri::command]
#[specta::specta]
pub async fn list_devices(app: State<'_, App>) -> Result<Devices> {
    let app = App::clone(&app);
    tauri::async_runtime::spawn_blocking(move || app.devices())
        .await
        .map_err(|e| IpcError {
            code: IpcErrorCode::Internal,
            message: format!("listing devices: {e}"),
        })?
}

#[tauri::command]
#[specta::specta]
pub async fn play_test_sound(app: State<'_, App>) -> Result<()> {
    app.play_test_sound().await
}

/// Starts (`on`) or stops the `inputLevel` events the settings page's meter draws.
#[tauri::command]
#[specta::specta]
pub async fn set_level_meter(app: State<'_, App>, on: bool) -> Result<()> {
    app.set_level_meter(on).await
}

/// Live spaces whose title, host or a topic contains `query`.
#[tauri::command]
#[specta::specta]
pub async fn search(app: State<'_, App>, query: String) -> Result<Vec<SpaceSummary>> {
    Ok(app.search(&query))
}

/// Creates an account on the server for this device and signs in with it.
#[tauri::command]
#[specta::specta]
pub async fn create_account(
    app: State<'_, App>,
    handle: String,
    display_name: String,
) -> Result<Account> {
    app.create_account(handle, display_name).await
}

/// Asks the stage for something (raise a hand, approve one, react, chat...); the server
/// decides and answers with events.
#[tauri::command]
#[specta::specta]
pub async fn stage(app: State<'_, App>, action: StageAction) -> Result<()> {
    app.stage(action).await
}

/// Asks (`on`) or stops asking to be reminded when scheduled space `id` starts.
#[tauri::command]
#[specta::specta]
pub async fn set_reminder(app: State<'_, App>, id: String, on: bool) -> Result<()> {
    app.set_reminder(id, on).await
}

/// Schedules a space of ours; `starts_at` is in seconds since the Unix epoch.
#[tauri::command]
#[specta::specta]
pub async fn schedule_space(
    app: State<'_, App>,
    title: String,
    topics: Vec<String>,
    starts_at: i64,
) -> Result<Upcoming> {
    app.schedule_space(title, topics, starts_at).await
}

#[tauri::command]
#[specta::specta]
pub async fn cancel_scheduled(app: State<'_, App>, id: String) -> Result<()> {
    app.cancel_scheduled(id).await
}

/// Starts a space we scheduled, now.
#[tauri::command]
#[specta::specta]
pub async fn start_scheduled(app: State<'_, App>, id: String) -> Result<CurrentSpace> {
    app.start_scheduled(id).await
}

/// Blocks or unblocks an account for ourself (hides their audio, reactions and chat).
#[tauri::command]
#[specta::specta]
pub async fn block_user(app: State<'_, App>, handle: String, blocked: bool) -> Result<()> {
    app.block_user(handle, blocked).await
}

/// Reports a user (handle) or a space (id) to the server's operator; returns its number.
#[tauri::command]
#[specta::specta]
pub async fn report(
    app: State<'_, App>,
    kind: ReportKind,
    target: String,
    reason: String,
) -> Result<i64> {
    app.report(kind, target, reason).await
}

/// Sets our bio and avatar (standard base64 of a PNG or JPEG of at most 64 KiB, or none).
#[tauri::command]
#[specta::specta]
pub async fn update_profile(
    app: State<'_, App>,
    bio: String,
    avatar: Option<String>,
) -> Result<Account> {
    app.update_profile(bio, avatar).await
}

/// Sets how loud we hear `participant` (0 mutes them for us alone; at most 4).
#[tauri::command]
#[specta::specta]
pub async fn set_volume(
    app: State<'_, App>,
    participant: ParticipantId,
    volume: f32,
) -> Result<()> {
    app.set_volume(participant, volume).await
}

/// Turns the once-a-second diagnostics events on (the panel is open) or off.
#[tauri::command]
#[specta::specta]
pub async fn set_diagnostics(app: State<'_, App>, on: bool) -> Result<()> {
    app.set_diagnostics(on).await
}
