//! Embeds tauri.conf.json, the capabilities and the icons; the web UI (ui/dist) is embedded by
//! `tauri::generate_context!` when the library compiles, so build the UI first (`npm run build`).
//!
//! Declaring the app's commands here turns each into a permission (`allow-get-state`, ...), so
//! `capabilities/main.json` grants the window exactly the commands the UI calls and no others.

const COMMANDS: &[&str] = &[
    "get_state",
    "create_space",
    "join_space",
    "leave_space",
    "end_space",
    "set_muted",
    "follow",
    "unfollow",
    "get_settings",
    "save_settings",
    "list_devices",
    "play_test_sound",
    "set_level_meter",
    "search",
    "create_account",
    "stage",
    "set_reminder",
    "schedule_space",
    "cancel_scheduled",
    "start_scheduled",
    "block_user",
    "report",
    "update_profile",
    "set_volume",
    "set_diagnostics",
];

fn main() {
    let manifest = tauri_build::AppManifest::new().commands(COMMANDS);
    if let Err(e) = tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest)) {
        // A build script reports by failing; the message says which file is wrong.
        panic!("tauri-build: {e:#}");
    }
}
