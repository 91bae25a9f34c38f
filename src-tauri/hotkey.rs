//! The push-to-talk key as a global shortcut: held anywhere on the desktop, not only in our
//! window (on Linux the plugin grabs the key on the X11 root window, so under Wayland it works
//! only while an X11 window has the focus). Presses and releases go, in order, to
//! [`App::push_to_talk`], which decides what they mean.

use confab_client::app::App;
use tauri::plugin::TauriPlugin;
use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_global_shortcut::{Builder, GlobalShortcutExt, ShortcutState};
use tokio::sync::mpsc;

/// Where the shortcut handler (on the plugin's thread) sends presses (`true`) and releases.
struct Presses(mpsc::UnboundedSender<bool>);

/// The plugin, with a handler that forwards every press and release of our one shortcut.
pub(crate) fn plugin<R: Runtime>() -> TauriPlugin<R> {
    Builder::new()
        .with_handler(|app, _shortcut, event| {
            if let Some(presses) = app.try_state::<Presses>() {
                let _ = presses.0.send(event.state == ShortcutState::Pressed);
            }
        })
        .build()
}

/// Starts the task that hands presses and releases to `confab` one at a time, so a quick
/// tap never arrives as a release before its press.
pub(crate) fn start<R: Runtime>(
    app: &AppHandle<R>,
    confab: &App,
    runtime: &tokio::runtime::Runtime,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    app.manage(Presses(tx));
    let confab = confab.clone();
    runtime.spawn(async move {
        while let Some(down) = rx.recv().await {
            if let Err(e) = confab.push_to_talk(down).await {
                tracing::warn!(error = %e, "push-to-talk");
            }
        }
    });
}

/// Makes `key` (an accelerator such as `F8` or `Ctrl+Space`) the push-to-talk shortcut, or
/// none. A key another program holds is logged, not fatal: the mute button still works.
pub(crate) fn register<R: Runtime>(app: &AppHandle<R>, key: Option<&str>) {
    let shortcuts = app.global_shortcut();
    if let Err(e) = shortcuts.unregister_all() {
        tracing::debug!(error = %e, "releasing the old push-to-talk key");
    }
    if let Some(key) = key {
        match shortcuts.register(key) {
            Ok(()) => tracing::info!(key, "push-to-talk key registered"),
            Err(e) => tracing::warn!(key, error = %e, "the push-to-talk key cannot be grabbed"),
        }
    }
}
