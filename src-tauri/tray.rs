//! The tray icon: the live spaces of followed hosts (one click joins), "Open" and "Quit".
//! The window hides to the tray when closed, so notifications keep coming.

use confab_proto::SpaceId;
use confab_proto::ipc::FollowedHost;
use tauri::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Runtime};

const TRAY: &str = "confab";
const OPEN: &str = "open";
const QUIT: &str = "quit";
const SPACE_PREFIX: &str = "space:";
/// Longest menu label, in characters: trays are narrow.
const MAX_LABEL_CHARS: usize = 60;

/// Puts the icon in the tray with the followed hosts live now.
pub(crate) fn create<R: Runtime>(
    app: &AppHandle<R>,
    followed: &[FollowedHost],
) -> tauri::Result<()> {
    let mut tray = TrayIconBuilder::with_id(TRAY)
        .tooltip("Confab")
        .menu(&menu(app, followed)?)
        .show_menu_on_left_click(true)
        .on_menu_event(on_menu_event);
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(app)?;
    Ok(())
}

/// Redraws the menu after the followed hosts or the directory changed.
pub(crate) fn update<R: Runtime>(app: &AppHandle<R>, followed: &[FollowedHost]) {
    let Some(tray) = app.tray_by_id(TRAY) else {
        return;
    };
    match menu(app, followed) {
        Ok(menu) => {
            if let Err(e) = tray.set_menu(Some(menu)) {
                tracing::warn!(error = %e, "updating the tray menu");
            }
        }
        Err(e) => tracing::warn!(error = %e, "building the tray menu"),
    }
}

fn menu<R: Runtime>(app: &AppHandle<R>, followed: &[FollowedHost]) -> tauri::Result<Menu<R>> {
    let menu = Menu::new(app)?;
    let mut any_live = false;
    for space in followed.iter().filter_map(|f| f.live_space.as_ref()) {
        let label = short(&format!("{} — {}", space.host, space.title));
        let id = format!("{SPACE_PREFIX}{}", space.id);
        menu.append(&MenuItem::with_id(app, id, label, true, None::<&str>)?)?;
        any_live = true;
    }
    if !any_live {
        let none = "No followed host is live";
        menu.append(&MenuItem::with_id(app, "none", none, false, None::<&str>)?)?;
    }
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    menu.append(&MenuItem::with_id(
        app,
        OPEN,
        "Open Confab",
        true,
        None::<&str>,
    )?)?;
    menu.append(&MenuItem::with_id(
        app,
        QUIT,
        "Quit Confab",
        true,
        None::<&str>,
    )?)?;
    Ok(menu)
}

fn on_menu_event<R: Runtime>(app: &AppHandle<R>, event: MenuEvent) {
    match event.id().as_ref() {
        OPEN => crate::window::show(app),
        QUIT => app.exit(0),
        id => {
            if let Some(space) = id
                .strip_prefix(SPACE_PREFIX)
                .and_then(|s| s.parse::<SpaceId>().ok())
            {
                crate::open_space(app, space);
            }
        }
    }
}

fn short(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL_CHARS {
        return label.to_owned();
    }
    let mut s: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_labels_are_cut_with_an_ellipsis() {
        assert_eq!(short("ada — Morning show"), "ada — Morning show");
        let long = "x".repeat(200);
        let cut = short(&long);
        assert_eq!(cut.chars().count(), MAX_LABEL_CHARS);
        assert!(cut.ends_with('…'));
    }
}
