//! System notifications: "<host> is live" when a followed host starts a space. Activating one
//! shows the window and joins the space.
//!
//! On Linux and the BSDs this talks to the desktop's notification daemon (D-Bus
//! `org.freedesktop.Notifications`) through notify-rust, with a `default` action, and waits for
//! the click on a blocking thread: tauri-plugin-notification's desktop side does not report
//! clicks. Elsewhere the notification is shown without the click-to-join.

use confab_proto::SpaceSummary;
use tauri::{AppHandle, Runtime};

/// Shows the notification; returns at once.
pub(crate) fn show<R: Runtime>(app: &AppHandle<R>, space: SpaceSummary) {
    let app = app.clone();
    // The D-Bus calls block, and the wait lasts until the notification goes away.
    tauri::async_runtime::spawn_blocking(move || {
        let id = space.id.clone();
        if let Err(e) = notify(&space, || crate::open_space(&app, id)) {
            tracing::warn!(error = %e, "showing a notification");
        }
    });
}

/// Sends the notification and, where the desktop reports clicks, waits until it is activated
/// (then calls `on_activate`) or closed.
#[cfg(all(unix, not(target_os = "macos")))]
fn notify(space: &SpaceSummary, on_activate: impl FnOnce()) -> notify_rust::error::Result<()> {
    let handle = notify_rust::Notification::new()
        .appname("Confab")
        .summary(&format!("{} is live", space.host))
        .body(&space.title)
        .icon("confab")
        .action("default", "Join")
        .show()?;
    handle.wait_for_action(|action| {
        if action == "default" {
            on_activate();
        }
    });
    Ok(())
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
fn notify(space: &SpaceSummary, _on_activate: impl FnOnce()) -> notify_rust::error::Result<()> {
    notify_rust::Notification::new()
        .appname("Confab")
        .summary(&format!("{} is live", space.host))
        .body(&space.title)
        .show()
        .map(drop)
}

#[cfg(all(test, unix, not(target_os = "macos")))]
mod tests {
    //! Asserted on what a notification daemon received, never on notify-rust's `Ok` (it says
    //! `Ok` with nobody listening). The daemon is a scripted `org.freedesktop.Notifications`
    //! (python3-dbus) on a private session bus; it clicks every notification it gets.

    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    /// Set in the sender's environment; without it the sender does nothing.
    const CHILD: &str = "CONFAB_NOTIFICATION_TEST_CHILD";

    const DAEMON: &str = r#"
import json, dbus, dbus.service, dbus.mainloop.glib
from gi.repository import GLib
dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
IFACE = "org.freedesktop.Notifications"
class Daemon(dbus.service.Object):
    @dbus.service.method(IFACE, in_signature="susssasa{sv}i", out_signature="u")
    def Notify(self, app, replaces, icon, summary, body, actions, hints, timeout):
        print(json.dumps({"app": app, "summary": summary, "body": body, "actions": [str(a) for a in actions]}), flush=True)
        def click():
            self.ActionInvoked(7, "default")
            self.NotificationClosed(7, 2)
            return False
        GLib.timeout_add(200, click)
        return 7
    @dbus.service.method(IFACE, out_signature="as")
    def GetCapabilities(self): return ["actions", "body"]
    @dbus.service.method(IFACE, out_signature="ssss")
    def GetServerInformation(self): return ("fake", "confab", "1", "1.2")
    @dbus.service.method(IFACE, in_signature="u")
    def CloseNotification(self, id): pass
    @dbus.service.signal(IFACE, signature="us")
    def ActionInvoked(self, id, key): pass
    @dbus.service.signal(IFACE, signature="uu")
    def NotificationClosed(self, id, reason): pass
bus = dbus.SessionBus()
name = dbus.service.BusName(IFACE, bus)
Daemon(bus, "/org/freedesktop/Notifications")
print("ready", flush=True)
GLib.MainLoop().run()
"#;

    /// Kills a helper process when the test ends, however it ends.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn the_daemon_receives_who_is_live_and_a_click_opens_the_space() {
        // A private session bus, so the desktop's own daemon (if any) is never involved.
        let mut bus = Child(
            Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--print-address=1"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("dbus-daemon (Debian package dbus) runs"),
        );
        let mut address = String::new();
        BufReader::new(bus.0.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_owned();

        let mut daemon = Child(
            // The system interpreter: python3-dbus is a Debian package, not a pip one.
            Command::new("/usr/bin/python3")
                .args(["-c", DAEMON])
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .stdout(Stdio::piped())
                .spawn()
                .expect("/usr/bin/python3 runs"),
        );
        let mut lines = BufReader::new(daemon.0.stdout.take().unwrap()).lines();
        let ready = lines.next().unwrap().unwrap();
        assert_eq!(
            ready, "ready",
            "the scripted daemon (python3-dbus, python3-gi) did not start"
        );

        // The sender runs in a child test process that sees only the private bus.
        let mut sender = Child(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "notification::tests::send_and_report_the_click",
                    "--ignored",
                    "--nocapture",
                ])
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .env(CHILD, "1")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = sender.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the notification was never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = String::new();
        std::io::Read::read_to_string(&mut sender.0.stdout.take().unwrap(), &mut out).unwrap();
        assert!(status.success(), "sender failed: {out}");

        let received: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(received["app"], "Confab");
        assert_eq!(received["summary"], "Ada is live");
        assert_eq!(received["body"], "Analytical engines");
        assert_eq!(received["actions"][0], "default");
        assert!(out.contains("activated abcdefghijkl"), "{out}");
    }

    /// Half of the test above: runs with the private bus in its environment.
    #[test]
    #[ignore = "run by the_daemon_receives_who_is_live_and_a_click_opens_the_space"]
    fn send_and_report_the_click() {
        if std::env::var_os(CHILD).is_none() {
            return; // run alone (`--include-ignored`) it would reach the desktop's daemon
        }
        let space = SpaceSummary {
            id: "abcdefghijkl".parse().unwrap(),
            title: "Analytical engines".into(),
            host: "Ada".into(),
            topics: vec![],
            listeners: 0,
            host_handle: None,
            speakers: vec![],
        };
        notify(&space, || println!("activated {}", space.id)).unwrap();
    }
}
