//! A private desktop for end-to-end tests of the app: an X server and a D-Bus session (by
//! re-running the test under `xvfb-run` and `dbus-run-session`), a real notification daemon
//! (dunst) with a monitor that records what it was asked to show, and tauri-driver for
//! WebDriver. Every process is a child of the test and is killed when its guard drops.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HINT: &str = "desktop tests need: apt-get install xvfb xauth dbus dbus-x11 dunst libnotify-bin \
                    webkit2gtk-driver imagemagick, and `cargo install tauri-driver --locked`";

/// A child process killed and reaped when dropped. `term` sends SIGTERM first (tauri-driver must
/// get SIGTERM, or it orphans WebKitWebDriver).
pub struct Guarded {
    child: Child,
    term: bool,
}

impl Guarded {
    pub fn new(child: Child, term: bool) -> Guarded {
        Guarded { child, term }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.term {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(cmd: &mut Command, what: &str) -> Child {
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}; {HINT}"))
}

/// Runs the calling test inside a fresh X server and D-Bus session: when called outside one,
/// re-runs this test binary for `test` under `xvfb-run` and `dbus-run-session` (so every
/// daemon those start ends with the test), asserts it passed, and returns `false`; inside,
/// returns `true` and the caller runs its body.
pub fn inside_desktop(test: &str) -> bool {
    const MARK: &str = "CONFAB_INSIDE_TEST_DESKTOP";
    if std::env::var_os(MARK).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new("xvfb-run")
        .args([
            "-a",
            "-s",
            "-screen 0 1280x800x24",
            "dbus-run-session",
            "--",
        ])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(MARK, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run xvfb-run: {e}; {HINT}"));
    // Pass the inner run's output through, renaming its summary line so that a tally of
    // `test result:` lines counts this test once.
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{}", line.replace("test result:", "inner run:"));
        }
    }
    let status = child.wait().expect("wait for the inner run");
    assert!(
        status.success(),
        "{test} failed inside its desktop ({status})"
    );
    false
}

/// The desktop's notification daemon (dunst) and a monitor that records what it was asked
/// to show. Needs DISPLAY and the session bus, as [`inside_desktop`] provides.
pub struct Desktop {
    pub dir: tempfile::TempDir,
    notifications: Arc<Mutex<Vec<Notification>>>,
    _monitor: Guarded,
    _dunst: Guarded,
}

/// One `Notify` call the notification daemon received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notification {
    pub app_name: String,
    pub summary: String,
    pub body: String,
    pub actions: Vec<String>,
}

impl Desktop {
    /// Starts the monitor and dunst; panics with what to install when a tool is missing.
    pub fn start() -> Desktop {
        assert!(
            std::env::var_os("DISPLAY").is_some()
                && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
            "Desktop::start needs DISPLAY and a session bus: call inside_desktop first"
        );
        let dir = tempfile::Builder::new()
            .prefix("confab-desktop-")
            .tempdir()
            .expect("a temporary directory");
        // Record every Notify call the daemon receives.
        let notifications = Arc::new(Mutex::new(Vec::new()));
        let mut monitor = spawn(
            Command::new("dbus-monitor")
                .args([
                    "--session",
                    "interface='org.freedesktop.Notifications',member='Notify'",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
            "dbus-monitor",
        );
        let out = monitor.stdout.take().expect("piped stdout");
        let sink = Arc::clone(&notifications);
        std::thread::spawn(move || parse_monitor(out, sink));
        let monitor = Guarded::new(monitor, false);
        let dunstrc = dir.path().join("dunstrc");
        fs::write(&dunstrc, DUNSTRC).expect("write dunstrc");
        let dunst = spawn(
            Command::new("dunst")
                .arg("-config")
                .arg(&dunstrc)
                .stdout(Stdio::null())
                .stderr(fs::File::create(dir.path().join("dunst.log")).expect("dunst log")),
            "dunst",
        );
        let desktop = Desktop {
            dir,
            notifications,
            _monitor: monitor,
            _dunst: Guarded::new(dunst, false),
        };
        desktop.wait_for_dunst();
        desktop
    }

    /// Starts a Secret Service (gnome-keyring) on this desktop's session bus with its login
    /// keyring created and unlocked, kept in this desktop's directory. Without it the first
    /// keychain call activates a daemon that asks for a password on a prompt nobody answers.
    pub fn unlock_keychain(&self) {
        use std::io::Write as _;
        let data = self.dir.path().join("data");
        fs::create_dir_all(&data).expect("the keychain's directory");
        let mut daemon = Command::new("gnome-keyring-daemon")
            .args(["--unlock", "--components=secrets"])
            .env("XDG_DATA_HOME", &data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run gnome-keyring-daemon: {e}; {HINT}"));
        daemon
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(b"confab-test")
            .expect("the keyring's password");
        let status = daemon.wait().expect("gnome-keyring-daemon");
        assert!(status.success(), "gnome-keyring-daemon --unlock: {status}");
    }

    fn wait_for_dunst(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // Ask the bus whether the name is owned: calling the name itself would make the bus
            // activate a second daemon while the first one is still starting.
            let ok = Command::new("dbus-send")
                .args([
                    "--session",
                    "--print-reply=literal",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.Notifications",
                ])
                .output()
                .is_ok_and(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).contains("true")
                });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dunst did not come up: {}",
                fs::read_to_string(self.dir.path().join("dunst.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every notification received so far.
    pub fn notifications(&self) -> Vec<Notification> {
        self.notifications
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default()
    }

    /// Invokes the default action of the newest notification, as a click on it would.
    pub fn activate_newest_notification(&self) {
        let out = Command::new("dunstctl")
            .args(["action", "0"])
            .output()
            .expect("run dunstctl");
        assert!(out.status.success(), "dunstctl action failed: {out:?}");
    }

    /// Asks every mapped top-level window of process `pid` to close, as a window manager's close
    /// button would (a `WM_DELETE_WINDOW` client message; this X server runs no window manager).
    /// Returns how many windows were asked.
    pub fn close_windows_of(&self, pid: u32) -> usize {
        self.xwindows(pid, "close")
    }

    /// How many top-level windows of process `pid` are mapped (shown).
    pub fn shown_windows_of(&self, pid: u32) -> usize {
        self.xwindows(pid, "count")
    }

    fn xwindows(&self, pid: u32, what: &str) -> usize {
        let out = Command::new("/usr/bin/python3")
            .args(["-c", XWINDOWS, &pid.to_string(), what])
            .output()
            .expect("run python3 (python3-xlib)");
        assert!(out.status.success(), "python3-xlib failed: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("python3-xlib said {out:?}"))
    }

    /// A PNG of the whole screen.
    pub fn screenshot(&self, path: &Path) {
        let out = Command::new("import")
            .args(["-window", "root"])
            .arg(path)
            .output()
            .expect("run import (imagemagick)");
        assert!(out.status.success(), "import failed: {out:?}");
    }
}

/// Reads dbus-monitor's text output and keeps each Notify call's arguments.
fn parse_monitor(out: impl Read, sink: Arc<Mutex<Vec<Notification>>>) {
    // A Notify call's arguments, in order: app_name, replaces_id, app_icon, summary, body,
    // actions (array of strings), hints, timeout.
    let mut strings: Option<Vec<String>> = None;
    let mut actions = Vec::new();
    let mut in_array = false;
    let flush = |strings: &mut Option<Vec<String>>, actions: &mut Vec<String>| {
        if let Some(s) = strings.take() {
            let get = |i: usize| s.get(i).cloned().unwrap_or_default();
            if let Ok(mut n) = sink.lock() {
                n.push(Notification {
                    app_name: get(0),
                    summary: get(2),
                    body: get(3),
                    actions: std::mem::take(actions),
                });
            }
        }
    };
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        let t = line.trim_start();
        if t.starts_with("method call") {
            flush(&mut strings, &mut actions);
            if t.contains("member=Notify") {
                strings = Some(Vec::new());
                in_array = false;
            }
            continue;
        }
        let Some(s) = strings.as_mut() else { continue };
        if t.starts_with("array [") && actions.is_empty() && s.len() >= 4 {
            in_array = true;
            continue;
        }
        if t.starts_with(']') && in_array {
            in_array = false;
            // The hints dictionary follows; what we need is complete.
            flush(&mut strings, &mut actions);
            continue;
        }
        if let Some(v) = t.strip_prefix("string \"") {
            let v = v.strip_suffix('"').unwrap_or(v).to_owned();
            if in_array {
                actions.push(v);
            } else {
                s.push(v);
            }
        }
    }
    flush(&mut strings, &mut actions);
}

/// Notifications stay until acted on, so a test can activate them.
const DUNSTRC: &str =
    "[global]\n    timeout = 0\n    follow = none\n[urgency_normal]\n    timeout = 0\n";

/// tauri-driver on free ports, stopped with SIGTERM.
pub struct TauriDriver {
    pub port: u16,
    _child: Guarded,
}

impl TauriDriver {
    /// Starts tauri-driver on `desktop` and waits until it accepts connections.
    pub fn start(desktop: &Desktop, extra_env: &[(&str, &str)]) -> TauriDriver {
        let port = free_port();
        let native = free_port();
        let driver = std::env::var_os("TAURI_DRIVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("tauri-driver"));
        let mut cmd = Command::new(&driver);
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(
            fs::File::create(desktop.dir.path().join(format!("tauri-driver-{port}.log")))
                .expect("log"),
        );
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = Guarded::new(spawn(&mut cmd, "tauri-driver"), true);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tauri-driver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TauriDriver {
            port,
            _child: child,
        }
    }

    /// The WebDriver URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Finds the mapped children of the root window whose `_NET_WM_PID` is argv[1]; with "close"
/// sends each a WM_DELETE_WINDOW, with "count" only counts them. Prints the count.
const XWINDOWS: &str = r#"
import sys
from Xlib import X, display, protocol
d = display.Display()
root = d.screen().root
pid, what = int(sys.argv[1]), sys.argv[2]
net_pid = d.intern_atom("_NET_WM_PID")
protocols = d.intern_atom("WM_PROTOCOLS")
delete = d.intern_atom("WM_DELETE_WINDOW")
n = 0
for w in root.query_tree().children:
    p = w.get_full_property(net_pid, X.AnyPropertyType)
    if not p or p.value[0] != pid or w.get_attributes().map_state != X.IsViewable:
        continue
    n += 1
    if what == "close":
        ev = protocol.event.ClientMessage(window=w, client_type=protocols, data=(32, [delete, X.CurrentTime, 0, 0, 0]))
        w.send_event(ev)
d.flush()
print(n)
"#;
