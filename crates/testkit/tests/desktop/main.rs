//! The desktop harness itself: a notification sent on the private session reaches dunst, the
//! monitor records it, and activating it reaches the sender (what the app's click handling
//! relies on).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confab_testkit::desktop::{Desktop, inside_desktop};

#[test]
fn notifications_are_recorded_and_can_be_activated() {
    if !inside_desktop("notifications_are_recorded_and_can_be_activated") {
        return;
    }
    let desktop = Desktop::start();
    let sender = Command::new("notify-send")
        .args([
            "--app-name=harness",
            "--action=default=Open",
            "--wait",
            "Ada is live",
            "Morning show",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("notify-send (libnotify-bin)");
    let deadline = Instant::now() + Duration::from_secs(15);
    while desktop.notifications().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no notification reached the daemon"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = &desktop.notifications()[0];
    assert_eq!(n.app_name, "harness");
    assert_eq!(n.summary, "Ada is live");
    assert_eq!(n.body, "Morning show");
    assert!(n.actions.iter().any(|a| a == "default"), "{n:?}");
    // Give dunst a moment to display it before "clicking".
    std::thread::sleep(Duration::from_millis(300));
    desktop.activate_newest_notification();
    let out = sender.wait_with_output().expect("notify-send finished");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "default");
}
