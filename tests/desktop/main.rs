//! The desktop app end to end: two real instances (profiles a and b) under WebDriver on a
//! private X server, session bus, notification daemon (dunst) and PulseAudio.
//!
//! A starts a space with its embedded server; B sees it live, joins, and hears A's microphone
//! on its speaker; B follows A and closes its window (Confab stays in the tray); A ends and
//! starts again; B's desktop gets a notification (as the daemon received it), and activating
//! it shows B's window again, in the new space. Screenshots of Home, a
//! live space and Settings are saved under `target/screenshots/`.
//!
//! The stage: two instances make accounts from Settings; B raises a hand in A's space, A
//! approves it from the queue, B unmutes, and a third client (the library, signed out) hears
//! B's voice; B's reaction shows on B's avatar in A's window.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use confab_testkit::desktop::{Desktop, TauriDriver, inside_desktop};
use confab_testkit::pulse::PulseDaemon;
use confab_testkit::signal::{self, RATE, align, seconds_heard_at};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const APP: &str = env!("CARGO_BIN_EXE_confab");
const WAIT: Duration = Duration::from_secs(30);

/// A second of speech counts as heard at this match: the app's microphone runs its voice
/// processing (noise suppression, automatic gain, a high-pass), which reshapes the waveform on
/// purpose (0.8 to 0.97 seen here), while unrelated audio stays below 0.5. Found in order, at
/// this bar, it cannot be anything but the speech that was played.
const PROCESSED_NCC: f64 = 0.75;

async fn session(driver: &TauriDriver, args: &[&str]) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "tauri:options".into(),
        json!({ "application": APP, "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .expect("a WebDriver session on the app")
}

/// Waits for an element, failing with `what` after [`WAIT`].
async fn find(c: &Client, loc: Locator<'_>, what: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(loc)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn shot(c: &Client, name: &str) {
    let dir = screenshots_dir();
    std::fs::create_dir_all(&dir).unwrap();
    // Let WebKit paint what the DOM already shows: two animation frames, then a breath.
    c.execute_async(
        "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()));",
        vec![],
    )
    .await
    .expect("animation frames");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots")
}

/// The pid of the app instance running profile `profile`.
fn app_pid(profile: &str) -> u32 {
    let out = std::process::Command::new("pgrep")
        .args(["-n", "-f", &format!("^{APP} --profile {profile}( |$)")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no app running profile {profile}: {out:?}"))
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tests share the embedded server's port and the machine's two cores: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn two_instances_host_join_hear_follow_and_get_notified() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !inside_desktop("two_instances_host_join_hear_follow_and_get_notified") {
        return;
    }
    let pulse = PulseDaemon::start();
    pulse.set_process_env();
    let desktop = Desktop::start();
    let data = tempfile::tempdir().unwrap();
    let data_home = data.path().display().to_string();
    let env = [("XDG_DATA_HOME", data_home.as_str())];
    let driver_a = TauriDriver::start(&desktop, &env);
    let driver_b = TauriDriver::start(&desktop, &env);
    let speech = signal::speech_like(10.0, 5);
    let speech_wav = pulse.dir().join("speech.wav");
    signal::write_wav(&speech_wav, &speech).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let heard = runtime.block_on(async {
        // A hosts with its embedded server; B uses A's server.
        let a = session(&driver_a, &["--profile", "a"]).await;
        find(&a, Locator::Css("#live-heading"), "A's home").await;
        let b = session(
            &driver_b,
            &["--profile", "b", "--server", "http://127.0.0.1:7373"],
        )
        .await;
        find(&b, Locator::Css("#live-heading"), "B's home").await;

        find(&a, Locator::Css("form.start input"), "A's title field")
            .await
            .send_keys("Morning show")
            .await
            .unwrap();
        find(
            &a,
            Locator::Css("form.start button[type=submit]:not([disabled])"),
            "Go live",
        )
        .await
        .click()
        .await
        .unwrap();
        find(
            &a,
            Locator::XPath("//span[contains(@class,'audio-state') and contains(.,'on air')]"),
            "A on air",
        )
        .await;

        // B sees it live and joins in one click.
        let join = find(
            &b,
            Locator::Css("button[aria-label='Join Morning show by a']"),
            "the space in B's list",
        )
        .await;
        shot(&b, "home").await;
        join.click().await.unwrap();
        find(
            &b,
            Locator::XPath(
                "//span[contains(@class,'audio-state') and contains(.,'Audio connected')]",
            ),
            "B's audio",
        )
        .await;

        // A's microphone hears speech; B's speaker must play it. The first seconds after the
        // speaker opens are a start-up transient (the sound server starting its stream, the
        // jitter buffer settling; seen: playout sped up ~6 % for a few seconds while it sheds
        // start-up delay), measured by the audio benchmark rather than here.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let recording = pulse.record_speaker();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = pulse
            .command("paplay")
            .args(["-d", "micfeed"])
            .arg(&speech_wav)
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let heard = recording.finish();
        shot(&b, "space").await;

        // B's diagnostics panel draws A's figures: a sparkline per figure, in WebKit.
        find(
            &b,
            Locator::XPath("//button[normalize-space()='Diagnostics']"),
            "Diagnostics",
        )
        .await
        .click()
        .await
        .unwrap();
        let panel = find(
            &b,
            Locator::Css("section.diagnostics"),
            "the diagnostics panel",
        )
        .await;
        let buffer = match b
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(".diag-speaker polyline"))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                shot(&b, "diagnostics-failed").await;
                panic!(
                    "no sparkline of A's figures ({e}); the panel says {:?}",
                    panel.text().await
                );
            }
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let points = buffer.attr("points").await.unwrap().unwrap_or_default();
            if points.split(' ').count() >= 2 && !points.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the sparkline stayed empty: {points:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let now = find(&b, Locator::Css(".diag-row .diag-now"), "a figure").await;
        let text = now.text().await.unwrap();
        assert!(text.ends_with("ms"), "the round trip in ms: {text:?}");
        shot(&b, "diagnostics").await;
        find(
            &b,
            Locator::XPath("//button[normalize-space()='Diagnostics']"),
            "Diagnostics",
        )
        .await
        .click()
        .await
        .unwrap();

        // B follows A; A ends and starts again.
        find(
            &b,
            Locator::XPath(
                "//section[contains(@class,'space-view')]//button[normalize-space()='Follow']",
            ),
            "Follow",
        )
        .await
        .click()
        .await
        .unwrap();
        find(
            &b,
            Locator::XPath("//button[normalize-space()='Following']"),
            "Following",
        )
        .await;

        // B closes its window: Confab keeps running in the tray.
        let b_pid = app_pid("b");
        assert_eq!(desktop.close_windows_of(b_pid), 1, "B's window");
        wait_until("B's window hidden", || desktop.shown_windows_of(b_pid) == 0).await;
        let end = find(
            &a,
            Locator::XPath("//button[normalize-space()='End space']"),
            "End",
        )
        .await;
        end.click().await.unwrap();
        find(
            &a,
            Locator::XPath("//button[normalize-space()='End it for everyone?']"),
            "confirm",
        )
        .await
        .click()
        .await
        .unwrap();
        find(
            &b,
            Locator::Css("#live-heading"),
            "B back home after the end",
        )
        .await;
        find(
            &a,
            Locator::Css("form.start button[type=submit]"),
            "A's form",
        )
        .await;
        find(&a, Locator::Css("form.start input"), "A's title field")
            .await
            .send_keys("Second show")
            .await
            .unwrap();
        find(
            &a,
            Locator::Css("form.start button[type=submit]:not([disabled])"),
            "Go live again",
        )
        .await
        .click()
        .await
        .unwrap();

        // B's desktop is told, by a real notification daemon.
        let deadline = Instant::now() + WAIT;
        let note = loop {
            if let Some(n) = desktop
                .notifications()
                .into_iter()
                .find(|n| n.body.contains("Second show"))
            {
                break n;
            }
            assert!(
                Instant::now() < deadline,
                "no notification: {:?}",
                desktop.notifications()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(note.summary.contains('a'), "{note:?}");
        assert!(note.actions.iter().any(|x| x == "default"), "{note:?}");
        assert_eq!(
            desktop
                .notifications()
                .iter()
                .filter(|n| n.body.contains("Second show"))
                .count(),
            1
        );

        // Activating it puts B in the new space.
        tokio::time::sleep(Duration::from_millis(500)).await;
        desktop.activate_newest_notification();
        wait_until("B's window shown again", || {
            desktop.shown_windows_of(b_pid) == 1
        })
        .await;
        let title = find(&b, Locator::Css("h1#space-title"), "B in the new space").await;
        assert_eq!(title.text().await.unwrap(), "Second show");

        push_to_talk(&a, &b).await;

        // Settings, for the screenshot.
        find(
            &b,
            Locator::XPath("//nav//*[normalize-space()='Settings']"),
            "Settings",
        )
        .await
        .click()
        .await
        .unwrap();
        find(&b, Locator::Css("#settings-heading"), "the settings page").await;
        shot(&b, "settings").await;

        b.close().await.unwrap();
        a.close().await.unwrap();
        heard
    });

    signal::write_wav(&screenshots_dir().join("heard.wav"), &heard).unwrap();
    signal::write_wav(&screenshots_dir().join("sent.wav"), &speech).unwrap();
    // Each second of the speech on its own: where it landed and how well it matches, so a
    // failure says whether audio was lost, late or distorted.
    let whole = align(&heard, &speech, speech.len() * 8 / 10);
    let seconds = seconds_heard_at(&speech, &heard, PROCESSED_NCC);
    eprintln!(
        "B's speaker: {:.2} s recorded; each second of A's speech found at / NCC: {}; whole: {:?}",
        heard.len() as f64 / RATE as f64,
        seconds.shown,
        whole
    );
    // This asserts that A's audio arrives, not how clean it is: under this test's load (two
    // apps, two web views, PulseAudio and X on two busy cores) device deadlines are missed now
    // and then and a glitch spoils a second (seen: 5 of 10 spoiled while a build ran). Clean
    // audio under load is the audio engine's measured target (issue 5). Four whole seconds
    // found in order at PROCESSED_NCC cannot come from noise or the wrong audio.
    assert!(
        seconds.heard * 10 >= seconds.total * 4,
        "B did not hear A's microphone: {seconds:?}"
    );
}

/// A (hosting) switches to push-to-talk on F8 in Settings; holding F8, pressed on the X server
/// with xdotool while B's window has the focus, puts A on air (A's window lights up, B sees A
/// unmuted); releasing it mutes A again.
async fn push_to_talk(a: &Client, b: &Client) {
    find(
        a,
        Locator::XPath("//nav//*[normalize-space()='Settings']"),
        "Settings",
    )
    .await
    .click()
    .await
    .unwrap();
    find(
        a,
        Locator::Css("input[name=micMode][value=pushToTalk]"),
        "Push to talk",
    )
    .await
    .click()
    .await
    .unwrap();
    find(a, Locator::Css("form.settings button[type=submit]"), "Save")
        .await
        .click()
        .await
        .unwrap();
    find(a, Locator::Css(".saved"), "saved").await;
    find(
        a,
        Locator::XPath("//nav//*[normalize-space()='Your space']"),
        "Your space",
    )
    .await
    .click()
    .await
    .unwrap();
    let hold = "//span[contains(@class,'talk-key') and normalize-space()='Hold F8 to talk']";
    find(a, Locator::XPath(hold), "Hold F8 to talk").await;
    let a_muted = Locator::Css("[aria-label='a is muted']");
    find(b, a_muted, "A muted, as B sees it").await;

    let key = |action: &str| {
        let status = std::process::Command::new("xdotool")
            .args([action, "F8"])
            .status()
            .expect("xdotool (scripts/deps.sh installs it)");
        assert!(status.success(), "xdotool {action} F8");
    };
    key("keydown");
    find(
        a,
        Locator::XPath("//span[contains(@class,'talking') and normalize-space()='Talking…']"),
        "A talking while F8 is held",
    )
    .await;
    let deadline = Instant::now() + WAIT;
    while !b.find_all(a_muted).await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "B still sees A muted while F8 is held"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shot(a, "push-to-talk").await;
    key("keyup");
    find(a, Locator::XPath(hold), "A muted again on release").await;
    find(b, a_muted, "A muted again, as B sees it").await;
}

/// Creates an account from Settings and waits until the app is signed in with it.
async fn create_account(c: &Client, handle: &str, name: &str) {
    find(
        c,
        Locator::XPath("//nav//*[normalize-space()='Settings']"),
        "Settings",
    )
    .await
    .click()
    .await
    .unwrap();
    find(c, Locator::Css("input[name=handle]"), "the handle field")
        .await
        .send_keys(handle)
        .await
        .unwrap();
    let name_field = find(
        c,
        Locator::Css("input[name=account-name]"),
        "the name field",
    )
    .await;
    name_field.clear().await.unwrap();
    name_field.send_keys(name).await.unwrap();
    find(
        c,
        Locator::XPath("//button[normalize-space()='Create account' and not(@disabled)]"),
        "Create account",
    )
    .await
    .click()
    .await
    .unwrap();
    find(
        c,
        Locator::XPath(&format!(
            "//strong[contains(@class,'account-handle') and normalize-space()='@{handle}']"
        )),
        "signed in",
    )
    .await;
    find(
        c,
        Locator::XPath("//p[contains(@class,'conn') and contains(.,'Connected')]"),
        "reconnected",
    )
    .await;
    find(
        c,
        Locator::XPath("//nav//*[normalize-space()='Home']"),
        "Home",
    )
    .await
    .click()
    .await
    .unwrap();
}

#[test]
fn a_raised_hand_approved_in_the_ui_is_heard_and_reactions_show() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !inside_desktop("a_raised_hand_approved_in_the_ui_is_heard_and_reactions_show") {
        return;
    }
    let pulse = PulseDaemon::start();
    pulse.set_process_env();
    let desktop = Desktop::start();
    // The device keys live in a real keychain.
    desktop.unlock_keychain();
    let data = tempfile::tempdir().unwrap();
    let data_home = data.path().display().to_string();
    let env = [("XDG_DATA_HOME", data_home.as_str())];
    let driver_a = TauriDriver::start(&desktop, &env);
    let driver_b = TauriDriver::start(&desktop, &env);
    let speech = signal::speech_like(10.0, 7);
    let speech_wav = pulse.dir().join("speech.wav");
    signal::write_wav(&speech_wav, &speech).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let heard = runtime.block_on(async {
        let a = session(&driver_a, &["--profile", "a"]).await;
        find(&a, Locator::Css("#live-heading"), "A's home").await;
        let b = session(
            &driver_b,
            &["--profile", "b", "--server", "http://127.0.0.1:7373"],
        )
        .await;
        find(&b, Locator::Css("#live-heading"), "B's home").await;
        create_account(&a, "ada", "Ada").await;
        create_account(&b, "bob", "Bob").await;

        // A goes live and mutes; only B will speak.
        find(&a, Locator::Css("form.start input"), "A's title field")
            .await
            .send_keys("Open stage")
            .await
            .unwrap();
        find(
            &a,
            Locator::Css("form.start button[type=submit]:not([disabled])"),
            "Go live",
        )
        .await
        .click()
        .await
        .unwrap();
        find(
            &a,
            Locator::XPath("//span[contains(@class,'audio-state') and contains(.,'on air')]"),
            "A on air",
        )
        .await;
        find(
            &a,
            Locator::XPath("//footer//button[normalize-space()='Mute']"),
            "A's mute",
        )
        .await
        .click()
        .await
        .unwrap();
        find(
            &a,
            Locator::XPath("//span[contains(@class,'audio-state') and contains(.,'muted')]"),
            "A muted",
        )
        .await;

        // B joins and raises a hand.
        find(
            &b,
            Locator::Css("button[aria-label='Join Open stage by Ada']"),
            "the space in B's list",
        )
        .await
        .click()
        .await
        .unwrap();
        find(
            &b,
            Locator::XPath(
                "//span[contains(@class,'audio-state') and contains(.,'Audio connected')]",
            ),
            "B's audio",
        )
        .await;
        find(
            &b,
            Locator::XPath("//footer//button[contains(.,'Raise hand')]"),
            "Raise hand",
        )
        .await
        .click()
        .await
        .unwrap();

        // A sees the queue and brings B up.
        find(
            &a,
            Locator::Css("[aria-label='Bob raised a hand']"),
            "Bob's hand at A",
        )
        .await;
        shot(&a, "stage-hand").await;
        find(
            &a,
            Locator::Css("button[aria-label='Bring Bob up to speak']"),
            "Approve",
        )
        .await
        .click()
        .await
        .unwrap();

        // B is on stage, muted, and unmutes.
        find(
            &b,
            Locator::XPath(
                "//span[contains(@class,'audio-state') and contains(.,'Your microphone is muted')]",
            ),
            "B on stage, muted",
        )
        .await;
        find(
            &b,
            Locator::XPath("//footer//button[normalize-space()='Unmute']"),
            "B's unmute",
        )
        .await
        .click()
        .await
        .unwrap();
        find(
            &b,
            Locator::XPath("//span[contains(@class,'audio-state') and contains(.,'on air')]"),
            "B on air",
        )
        .await;

        // A third client, signed out, listens and keeps what it hears of Bob.
        let url = "http://127.0.0.1:7373";
        let spaces = confab_client::list_spaces(url).await.unwrap();
        let space = spaces
            .iter()
            .find(|s| s.title == "Open stage")
            .unwrap()
            .id
            .clone();
        let (cy, mut streams) =
            confab_client::Client::connect(confab_client::ClientConfig::new(url, "Cy"))
                .await
                .unwrap();
        let joined = cy.join(&space).await.unwrap();
        let bob = joined
            .space
            .participants
            .iter()
            .find(|p| p.name == "Bob")
            .map(|p| p.id)
            .expect("Bob in the space");
        cy.mic().await.unwrap(); // media is up
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let collector = tokio::spawn(async move {
            let mut slots = std::collections::HashMap::new();
            let mut heard = Vec::new();
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    Some(ev) = streams.events.recv() => {
                        if let confab_client::Event::Slot { slot, speaker } = ev {
                            slots.insert(slot, speaker);
                        }
                    }
                    Some(frame) = streams.audio.recv() => {
                        if slots.get(&frame.slot).copied().flatten() == Some(bob) {
                            heard.extend_from_slice(&frame.samples);
                        }
                    }
                }
            }
            heard
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = pulse
            .command("paplay")
            .args(["-d", "micfeed"])
            .arg(&speech_wav)
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = stop_tx.send(());
        let heard = collector.await.unwrap();

        // B reacts; A sees it on B's avatar.
        find(
            &b,
            Locator::Css("button[aria-label='React 👏']"),
            "B's reaction bar",
        )
        .await
        .click()
        .await
        .unwrap();
        find(
            &a,
            Locator::Css("[aria-label='Bob reacted 👏']"),
            "Bob's reaction at A",
        )
        .await;
        shot(&a, "stage").await;

        cy.close().await;
        b.close().await.unwrap();
        a.close().await.unwrap();
        heard
    });

    signal::write_wav(&screenshots_dir().join("stage-heard.wav"), &heard).unwrap();
    let seconds = seconds_heard_at(&speech, &heard, PROCESSED_NCC);
    eprintln!(
        "the third client heard {:.2} s of Bob; each second of his speech found at / NCC: {}",
        heard.len() as f64 / RATE as f64,
        seconds.shown
    );
    // As in the first test: arrival, in order, not cleanliness under this load.
    assert!(
        seconds.heard * 10 >= seconds.total * 4,
        "the third client did not hear Bob: {seconds:?}"
    );
}
