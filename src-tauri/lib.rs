//! The Confab desktop app: a thin Tauri v2 shell around [`confab_client::app::App`].
//!
//! It picks the server (the embedded one unless another is configured, see [`server`]), keeps
//! one instance per profile, forwards every [`AppEvent`] to the webview as the `app-event`
//! event, turns `FollowedLive` into a system notification, keeps the tray menu current, opens
//! `confab://space/<ID>` links, and reports the push-to-talk key held anywhere on the desktop
//! (`hotkey`). Each IPC command ([`commands`]) is a few lines that
//! delegate to the `App`; no decision about spaces, follows or audio is made here.
//!
//! The UI's TypeScript bindings (`ui/src/bindings.ts`) are generated from [`ipc`]; a test fails
//! when they are stale (`UPDATE_BINDINGS=1 cargo test -p confab --lib bindings` rewrites them).

pub mod args;
pub mod commands;
pub mod events;
mod hotkey;
mod notification;
mod server;
mod tray;
mod window;

use anyhow::{Context as _, anyhow};
use clap::Parser;
use confab_client::app::{App, AppOptions};
use confab_proto::ipc::{AppEvent, AppState, IpcError};
use confab_proto::{Role, SpaceId};
use tauri::{AppHandle, Manager, Runtime};
use tauri_specta::Event as _;
use tokio::sync::mpsc;

use crate::args::Args;
use crate::events::{AppEventMessage, OpenSpaceFailed};
use crate::server::Server;

/// Header of the generated bindings.
const BINDINGS_HEADER: &str = "// Generated from the Rust IPC types by tauri-specta: do not edit.\n\
// Regenerate with `UPDATE_BINDINGS=1 cargo test -p confab --lib bindings`.\n// @ts-nocheck";

/// Where the generated bindings live, from the repository root.
pub const BINDINGS_PATH: &str = "ui/src/bindings.ts";

/// The IPC surface: every command, event and extra type the UI sees.
pub fn ipc<R: Runtime>() -> tauri_specta::Builder<R> {
    use commands::*;
    tauri_specta::Builder::<R>::new()
        .commands(tauri_specta::collect_commands![
            get_state,
            create_space,
            join_space,
            leave_space,
            end_space,
            set_muted,
            follow,
            unfollow,
            get_settings,
            save_settings,
            list_devices,
            play_test_sound,
            set_level_meter,
            search,
            create_account,
            stage,
            set_reminder,
            schedule_space,
            cancel_scheduled,
            start_scheduled,
            block_user,
            report,
            update_profile,
            set_volume,
            set_diagnostics,
        ])
        .events(tauri_specta::collect_events![
            AppEventMessage,
            OpenSpaceFailed
        ])
        .typ::<AppEvent>()
        .typ::<AppState>()
}

/// The TypeScript bindings of [`ipc`], as committed in [`BINDINGS_PATH`].
pub fn bindings() -> anyhow::Result<String> {
    let ts = specta_typescript::Typescript::default()
        .header(BINDINGS_HEADER)
        .bigint(specta_typescript::BigIntExportBehavior::Number);
    ipc::<tauri::Wry>()
        .export_str(ts)
        .map_err(|e| anyhow!("exporting the TypeScript bindings: {e}"))
}

/// The app's configuration, capabilities, icons and bundled UI (`ui/dist`, so build the UI
/// before compiling this crate).
pub fn context<R: Runtime>() -> tauri::Context<R> {
    tauri::generate_context!()
}

/// Runs the app until it quits; returns its exit code.
pub fn run() -> anyhow::Result<i32> {
    // Our crates say what they do; the WebRTC stack only what goes wrong. RUST_LOG overrides.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "warn,confab_app=info,confab_client=info,confab_server=info".into()
            }),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let store_path = confab_store::default_path(&args.profile)
        .with_context(|| format!("profile {:?}", args.profile))?;
    let profile_dir = store_path
        .parent()
        .context("the profile database has no folder")?
        .to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    tauri::async_runtime::set(runtime.handle().clone());

    let ipc = ipc::<tauri::Wry>();
    // A second instance of this profile hands its arguments to the first and exits inside
    // `build`: nothing below runs twice for one profile.
    let app = tauri::Builder::default()
        .plugin(single_instance(&args.profile))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(hotkey::plugin())
        .invoke_handler(ipc.invoke_handler())
        .on_window_event(window::on_event)
        .build(context())
        .context("starting the window system")?;
    ipc.mount_events(&app);

    let configured = match args.server.clone() {
        Some(url) => Some(url),
        None => confab_store::Store::open(&store_path)
            .and_then(|store| store.server_url())
            .with_context(|| format!("reading settings from {}", store_path.display()))?,
    };
    let server = runtime.block_on(Server::choose(configured, profile_dir.join("server")))?;
    let opts = AppOptions {
        profile: args.profile.clone(),
        store_path,
        server_url: server.url(),
        embedded_server: server.is_embedded(),
        audio: !args.no_audio,
    };
    let (confab, events) = match runtime.block_on(App::start(opts)) {
        Ok(started) => started,
        Err(e) => {
            runtime.block_on(server.shutdown());
            return Err(anyhow!(e).context("starting the app"));
        }
    };
    tracing::info!(server = %server.url(), profile = %args.profile, "started");
    app.manage(confab.clone());
    hotkey::start(app.handle(), &confab, &runtime);
    let talk_key = runtime.block_on(confab.state()).push_to_talk;
    hotkey::register(app.handle(), talk_key.as_deref());

    let handle = app.handle().clone();
    window::open(&handle).context("opening the window")?;
    let followed = runtime.block_on(confab.state()).followed;
    // Some desktops have no status area; the app works without the tray.
    if let Err(e) = tray::create(&handle, &followed) {
        tracing::warn!(error = %e, "no tray icon");
    }
    runtime.spawn(forward_events(handle.clone(), events));
    for space in args.space_links() {
        open_space(&handle, space);
    }
    #[cfg(target_os = "macos")]
    {
        // macOS hands links over as events, not arguments.
        use tauri_plugin_deep_link::DeepLinkExt;
        let h = handle.clone();
        handle.deep_link().on_open_url(move |event| {
            for url in event.urls() {
                if let Some(space) = args::space_link(url.as_str()) {
                    open_space(&h, space);
                }
            }
        });
    }

    let code = app.run_return(|_, _| {});
    runtime.block_on(async {
        confab.shutdown().await;
        server.shutdown().await;
    });
    Ok(code)
}

/// One instance per profile: a second `confab --profile P` (or a clicked link) forwards its
/// arguments to the running one, which shows its window and opens the links.
fn single_instance<R: Runtime>(profile: &str) -> tauri::plugin::TauriPlugin<R> {
    tauri_plugin_single_instance::Builder::new()
        // A D-Bus name per profile (Linux). A profile is [a-z0-9_-], valid in a bus name.
        .dbus_id(format!("org.confab.app.profile_{profile}"))
        .callback(|app, argv, _cwd| {
            window::show(app);
            for space in Args::forwarded_links(&argv) {
                open_space(app, space);
            }
        })
        .build()
}

/// Every event of the app goes to the webview as it is; some also drive the desktop (a
/// notification, the tray menu). Runs until the app's event stream ends.
pub async fn forward_events<R: Runtime>(app: AppHandle<R>, mut events: mpsc::Receiver<AppEvent>) {
    while let Some(event) = events.recv().await {
        match &event {
            AppEvent::FollowedLive { space } | AppEvent::Reminder { space } => {
                notification::show(&app, space.clone())
            }
            AppEvent::Followed { followed } => tray::update(&app, followed),
            AppEvent::State { state } => tray::update(&app, &state.followed),
            AppEvent::MicMode { key } => hotkey::register(&app, key.as_deref()),
            _ => {}
        }
        if let Err(e) = AppEventMessage(event).emit(&app) {
            tracing::warn!(error = %e, "sending an event to the window");
        }
    }
}

/// Shows the window and joins `space` (leaving a space we only listen to first), for a link,
/// a notification or the tray. A failure reaches the UI as `open-space-failed`.
pub(crate) fn open_space<R: Runtime>(app: &AppHandle<R>, space: SpaceId) {
    window::show(app);
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let Some(confab) = app.try_state::<App>().map(|s| App::clone(&s)) else {
            return;
        };
        if let Err(e) = switch_to(&confab, space).await {
            let _ = OpenSpaceFailed(e).emit(&app);
        }
    });
}

async fn switch_to(confab: &App, space: SpaceId) -> Result<(), IpcError> {
    // A link that started the app arrives before signaling is up: give it a moment.
    for _ in 0..100 {
        if confab.state().await.connected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if let Some(current) = confab.state().await.current {
        if current.space.id == space {
            return Ok(());
        }
        // A host is never pulled out of their own space by a click elsewhere.
        if current.role == Role::Listener {
            confab.leave_space().await?;
        }
    }
    confab.join_space(space).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed bindings are what the Rust types generate. `UPDATE_BINDINGS=1` rewrites
    /// them instead of failing.
    #[test]
    fn bindings_are_fresh() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(BINDINGS_PATH);
        let fresh = bindings().unwrap();
        if std::env::var_os("UPDATE_BINDINGS").is_some() {
            std::fs::write(&path, &fresh).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "{} is stale: run `UPDATE_BINDINGS=1 cargo test -p confab --lib bindings`",
            path.display()
        );
    }
}
