//! The one window. Closing it hides it (the app lives on in the tray, so followed hosts still
//! notify); "Quit" in the tray ends the app.

use tauri::{
    AppHandle, Manager, Runtime, WebviewUrl, WebviewWindow, WebviewWindowBuilder, Window,
    WindowEvent,
};

/// The window's label; capabilities/main.json grants the UI's permissions to this label only.
pub(crate) const MAIN: &str = "main";

/// Opens the window on the bundled UI.
pub(crate) fn open<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<WebviewWindow<R>> {
    WebviewWindowBuilder::new(app, MAIN, WebviewUrl::App("index.html".into()))
        .title("Confab")
        .inner_size(1280.0, 800.0)
        .min_inner_size(720.0, 520.0)
        .build()
        .inspect(lean)
}

/// A few cards and buttons need no GPU compositing: without it WebKitGTK's web process idles
/// at about 100 MB less (measured by scripts/bench-app.sh: 319 -> 231 MB PSS on a machine with
/// software GL). Caches sized for one local document, not for browsing.
#[cfg(target_os = "linux")]
fn lean<R: Runtime>(window: &WebviewWindow<R>) {
    use webkit2gtk::{
        CacheModel, HardwareAccelerationPolicy, SettingsExt, WebContextExt, WebViewExt,
    };
    let applied = window.with_webview(|platform| {
        let view = platform.inner();
        if let Some(settings) = WebViewExt::settings(&view) {
            settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
        }
        if let Some(context) = view.context() {
            context.set_cache_model(CacheModel::DocumentViewer);
        }
    });
    if let Err(e) = applied {
        tracing::warn!(error = %e, "could not tune the web view");
    }
}

#[cfg(not(target_os = "linux"))]
fn lean<R: Runtime>(_window: &WebviewWindow<R>) {}

/// Brings the window back from the tray (or from behind other windows).
pub(crate) fn show<R: Runtime>(app: &AppHandle<R>) {
    if let Some(window) = app.get_webview_window(MAIN) {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
    }
}

/// Hides instead of closing.
pub(crate) fn on_event<R: Runtime>(window: &Window<R>, event: &WindowEvent) {
    if let WindowEvent::CloseRequested { api, .. } = event {
        api.prevent_close();
        let _ = window.hide();
    }
}
