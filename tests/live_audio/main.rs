//! A host's voice reaches listeners through the real server: WebRTC on loopback, real Opus,
//! the CLI's own host and listen code.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::time::{Duration, Instant};

use confab_client::cli;
use confab_proto::{EndReason, SpaceDetails, SpaceState, SpaceSummary};
use confab_tests::signal::{self, RATE, align, rms};
use confab_tests::{TestServer, within};
use tokio::sync::oneshot;

const SECONDS: f64 = 8.0;
const LATE_JOIN: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_heard_by_two_listeners_and_ending_stops_both() {
    let server = TestServer::start().await.unwrap();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let source = signal::speech_like(SECONDS, 7);
    let input = dir.path().join("speech.wav");
    signal::write_wav(&input, &source).unwrap();

    let (id_tx, id_rx) = oneshot::channel();
    let host = tokio::spawn({
        let (url, input) = (url.clone(), input.clone());
        async move {
            cli::host(&url, "ada", "Morning show", Some(input), None, move |id| {
                let _ = id_tx.send(id.clone());
            })
            .await
        }
    });
    let id = within(20, "the space to open", id_rx).await.unwrap();
    let opened = Instant::now();

    // The directory shows it.
    let spaces: Vec<SpaceSummary> = reqwest::get(format!("{url}/api/spaces"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        spaces
            .iter()
            .any(|s| s.id == id && s.title == "Morning show" && s.host == "ada"),
        "{spaces:?}"
    );

    let early_wav = dir.path().join("early.wav");
    let early = tokio::spawn({
        let (url, id, out) = (url.clone(), id.clone(), early_wav.clone());
        async move { cli::listen(&url, "bob", &id, Some(out), None).await }
    });
    tokio::time::sleep(LATE_JOIN).await;
    let late_joined = opened.elapsed();
    let late_wav = dir.path().join("late.wav");
    let late = tokio::spawn({
        let (url, id, out) = (url.clone(), id.clone(), late_wav.clone());
        async move { cli::listen(&url, "cy", &id, Some(out), None).await }
    });

    // A listener count the directory can see while both listen.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let details: SpaceDetails = reqwest::get(format!("{url}/api/spaces/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(details.state, SpaceState::Live);
    assert_eq!(details.listeners, 2);

    within(40, "the host to finish the file and end the space", host)
        .await
        .unwrap()
        .unwrap();
    let ended_at = Instant::now();
    let early_end = within(10, "the early listener to stop", early)
        .await
        .unwrap()
        .unwrap();
    let late_end = within(10, "the late listener to stop", late)
        .await
        .unwrap()
        .unwrap();
    // Ending stops both listeners, promptly, and for the right reason.
    assert_eq!(early_end, Some(EndReason::HostEnded));
    assert_eq!(late_end, Some(EndReason::HostEnded));
    assert!(ended_at.elapsed() < Duration::from_secs(5));
    let details: SpaceDetails = reqwest::get(format!("{url}/api/spaces/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(details.state, SpaceState::Ended);
    let spaces: Vec<SpaceSummary> = reqwest::get(format!("{url}/api/spaces"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        spaces.iter().all(|s| s.id != id),
        "an ended space is still listed"
    );

    let min_overlap = RATE; // at least a second of speech must line up
    for (name, path, min_secs) in [
        ("early", &early_wav, SECONDS * 0.8),
        ("late", &late_wav, SECONDS - LATE_JOIN.as_secs_f64() - 1.5),
    ] {
        let heard = signal::read_wav(path).unwrap();
        let secs = heard.len() as f64 / RATE as f64;
        assert!(secs >= min_secs, "{name} recorded only {secs:.2} s");
        assert!(rms(&heard) > 0.01, "{name} recorded silence");
        let a = align(&source, &heard, min_overlap).unwrap();
        eprintln!(
            "{name}: {secs:.2} s recorded, aligned at {:.3} s, NCC {:.3}",
            a.lag as f64 / RATE as f64,
            a.ncc
        );
        assert!(
            a.ncc >= 0.9,
            "{name} does not match what the host said: {a:?}"
        );
        if name == "late" {
            // The late joiner hears from when it joined, not from the start.
            let start = a.lag as f64 / RATE as f64;
            assert!(
                start >= late_joined.as_secs_f64() - 2.0,
                "late joiner starts at {start:.2} s"
            );
        }
    }
    server.handle.shutdown().await;
}
