//! The CLI's device paths, on a private PulseAudio daemon: a host speaking into the default
//! microphone is heard on a listener's default speaker, through the real server.
//!
//! One `#[test]`: the process environment must point at the daemon before the first audio or
//! async-runtime thread starts.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::time::Duration;

use confab_client::cli;
use confab_proto::EndReason;
use confab_tests::pulse::{KillOnDrop, PulseDaemon};
use confab_tests::signal::{self, RATE, align, rms, seconds_heard};
use confab_tests::{TestServer, within};

const SPEECH_SECONDS: f64 = 5.0;
const HOST_SECONDS: f64 = 9.0;

#[test]
fn microphone_to_speaker_through_the_server() {
    let daemon = PulseDaemon::start();
    daemon.set_process_env();
    let speech = signal::speech_like(SPEECH_SECONDS, 11);
    let speech_wav = daemon.dir().join("speech.wav");
    signal::write_wav(&speech_wav, &speech).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let heard = runtime.block_on(async {
        let server = TestServer::start().await.unwrap();
        let url = server.url();
        // Everything the default speaker plays, from now on.
        let recording = daemon.record_speaker();
        let (id_tx, id_rx) = tokio::sync::oneshot::channel();
        let host = tokio::spawn({
            let url = url.clone();
            async move {
                cli::host(
                    &url,
                    "ada",
                    "Mic show",
                    None,
                    Some(HOST_SECONDS),
                    move |id| {
                        let _ = id_tx.send(id.clone());
                    },
                )
                .await
            }
        });
        let id = within(20, "the space to open", id_rx).await.unwrap();
        let listener = tokio::spawn({
            let (url, id) = (url.clone(), id.clone());
            async move { cli::listen(&url, "bob", &id, None, None).await }
        });
        // Both device streams take a second or two to start delivering.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut paplay = KillOnDrop(
            daemon
                .command("paplay")
                .args(["-d", "micfeed"])
                .arg(&speech_wav)
                .spawn()
                .unwrap(),
        );
        within(20, "paplay", async {
            while paplay.0.try_wait().unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        within(30, "the host to end the space", host)
            .await
            .unwrap()
            .unwrap();
        let ended = within(15, "the listener to stop", listener)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ended, Some(EndReason::HostEnded));
        let heard = recording.finish();
        server.handle.shutdown().await;
        heard
    });

    let secs = heard.len() as f64 / RATE as f64;
    assert!(
        secs > SPEECH_SECONDS,
        "the speaker recording is only {secs:.2} s"
    );
    assert!(rms(&heard) > 0.005, "the speaker played silence");
    // Find the speech in what the speaker played, second by second: a moment lost to a
    // missed device deadline on a loaded machine spoils a second (the audio engine of issue 5
    // must remove those); three of the five must be there whole, in order.
    let a = align(&heard, &speech, speech.len() * 9 / 10).unwrap();
    let seconds = seconds_heard(&speech, &heard);
    eprintln!(
        "speaker: {secs:.2} s recorded; speech found at {:.3} s, NCC {:.3}; each second: {}",
        a.lag as f64 / RATE as f64,
        a.ncc,
        seconds.shown
    );
    assert!(
        seconds.heard * 5 >= seconds.total * 3,
        "what the speaker played does not match what the microphone heard: {seconds:?}"
    );
}
