//! The app's microphone and speaker, chosen by name, being unplugged mid-call (a private
//! PulseAudio whose "headset" sink is unloaded): the app falls back to the system default,
//! says so, stays in the space, and the microphone it fell back to works.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::time::Duration;

use confab_client::app::{App, AppOptions};
use confab_proto::ipc::AppEvent;
use confab_server::ServerConfig;
use confab_testkit::pulse::PulseDaemon;
use tokio::sync::mpsc::Receiver;

async fn until(
    rx: &mut Receiver<AppEvent>,
    secs: u64,
    what: &str,
    mut want: impl FnMut(&AppEvent) -> bool,
) -> AppEvent {
    let wait = async {
        loop {
            let ev = rx.recv().await.expect("event stream closed");
            if want(&ev) {
                return ev;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(secs), wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {secs} s"))
}

fn pactl(daemon: &PulseDaemon, args: &[&str]) -> String {
    let out: std::process::Output = daemon.command("pactl").args(args).output().unwrap();
    assert!(out.status.success(), "pactl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn an_unplugged_headset_falls_back_to_the_default_without_dropping_the_call() {
    let daemon = PulseDaemon::start();
    daemon.set_process_env();
    let module = pactl(
        &daemon,
        &[
            "load-module",
            "module-null-sink",
            "sink_name=headset",
            "channels=1",
            "rate=48000",
        ],
    );
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(call(&daemon, &module));
}

async fn call(daemon: &PulseDaemon, module: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config =
        ServerConfig::new(dir.path().join("server")).with_listen("127.0.0.1:0".parse().unwrap());
    let server = confab_server::start(config).await.unwrap();
    let (app, mut rx) = App::start(AppOptions {
        profile: "ada".to_owned(),
        store_path: dir.path().join("ada").join("confab.sqlite3"),
        server_url: server.url(),
        embedded_server: false,
        audio: true,
    })
    .await
    .unwrap();
    let mut settings = app.settings().await.unwrap();
    settings.input_device = Some("headset.monitor".to_owned());
    settings.output_device = Some("headset".to_owned());
    app.save_settings(settings).await.unwrap();
    until(&mut rx, 15, "a connection", |e| {
        matches!(
            e,
            AppEvent::Connection {
                connected: true,
                ..
            }
        )
    })
    .await;

    app.create_space("Unplugged".to_owned(), Vec::new())
        .await
        .unwrap();
    until(
        &mut rx,
        15,
        "media",
        |e| matches!(e, AppEvent::Current { current: Some(c) } if c.media_connected),
    )
    .await;
    // Give the app a moment to open both devices on the headset.
    tokio::time::sleep(Duration::from_secs(2)).await;

    pactl(daemon, &["unload-module", module]);
    let mut fell_back = Vec::new();
    while fell_back.len() < 2 {
        if let AppEvent::DeviceFallback { input, device } =
            until(&mut rx, 10, "a device fallback", |e| {
                matches!(e, AppEvent::DeviceFallback { .. })
            })
            .await
        {
            fell_back.push((input, device));
        }
    }
    fell_back.sort();
    assert_eq!(
        fell_back,
        [
            (false, "headset".to_owned()),
            (true, "headset.monitor".to_owned())
        ]
    );
    assert!(
        app.state().await.current.is_some(),
        "the call went on through the unplugging"
    );

    // The default microphone (`vmic`, fed by `micfeed`) is the one we hear now.
    app.set_level_meter(true).await.unwrap();
    let tone = dir.path().join("tone.wav");
    let samples: Vec<f32> = (0..96_000)
        .map(|i| 0.5 * (std::f32::consts::TAU * 440.0 * i as f32 / 48_000.0).sin())
        .collect();
    confab_testkit::signal::write_wav(&tone, &samples).unwrap();
    let mut play: std::process::Child = daemon
        .command("paplay")
        .arg("--device=micfeed")
        .arg(&tone)
        .spawn()
        .unwrap();
    until(
        &mut rx,
        10,
        "the default microphone's level",
        |e| matches!(e, AppEvent::InputLevel { rms, .. } if *rms > 0.1),
    )
    .await;
    let _ = play.wait();
    app.shutdown().await;
}
