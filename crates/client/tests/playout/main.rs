//! A listener's playout through the jitter buffer against a real server (WebRTC on loopback,
//! real Opus): one 20 ms frame per tick in timestamp order, the speech intact, the buffer's
//! stats readable from the client, and nothing more once the speaker stops.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::time::Duration;

use confab_audio::{FRAME_SAMPLES, MAX_TARGET_DELAY, MIN_TARGET_DELAY};
use confab_client::{AudioFrame, Client, ClientConfig, Event, Streams};
use confab_server::ServerConfig;
use confab_testkit::signal::{seconds_heard, speech_like};

async fn media_connected(streams: &mut Streams) {
    let wait = async {
        loop {
            match streams.events.recv().await.expect("events") {
                Event::MediaConnected => return,
                Event::Disconnected { reason } => panic!("disconnected: {reason}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("media within 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_hears_one_frame_per_tick_in_order_and_the_stats_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        ServerConfig::new(dir.path().join("server")).with_listen("127.0.0.1:0".parse().unwrap());
    let server = confab_server::start(config).await.unwrap();
    let url = server.url();

    let (host, mut host_streams) = Client::connect(ClientConfig::new(&url, "ada"))
        .await
        .unwrap();
    let space = host.create("Playout").await.unwrap().space.id;
    media_connected(&mut host_streams).await;
    let mic = host.mic().await.unwrap();
    let (listener, mut streams) = Client::connect(ClientConfig::new(&url, "bob"))
        .await
        .unwrap();
    listener.join(&space).await.unwrap();
    media_connected(&mut streams).await;
    assert!(listener.jitter_stats().is_empty(), "stats before any audio");

    let speech = speech_like(4.0, 21);
    let talking = tokio::spawn({
        let speech = speech.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for frame in speech.chunks_exact(FRAME_SAMPLES) {
                tick.tick().await;
                mic.send(frame.to_vec()).await.unwrap();
            }
        }
    });

    // Listen until the speaker has stopped and the slot has gone quiet for half a second.
    let mut frames: Vec<AudioFrame> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let quiet = tokio::time::Instant::now() + Duration::from_millis(500);
        match tokio::time::timeout_at(quiet.min(deadline), streams.audio.recv()).await {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => panic!("audio stream closed"),
            Err(_) if talking.is_finished() || tokio::time::Instant::now() >= deadline => break,
            Err(_) => {}
        }
    }
    talking.await.unwrap();
    assert!(!frames.is_empty(), "nothing heard");

    // One frame a tick, in order: each frame 20 ms, each timestamp one frame after the last
    // (or the same, where the buffer waited a frame for a late packet).
    assert!(frames.iter().all(|f| f.samples.len() == FRAME_SAMPLES));
    let slot = frames[0].slot;
    assert!(
        frames.iter().all(|f| f.slot == slot),
        "one speaker, one slot"
    );
    let steps: Vec<u32> = frames
        .windows(2)
        .map(|w| w[1].timestamp.wrapping_sub(w[0].timestamp))
        .collect();
    let out_of_step = steps.iter().filter(|&&s| s != 960 && s != 0).count();
    assert!(out_of_step <= 2, "timestamps out of step: {steps:?}");
    // Paced by the clock, not by arrival: 4 s of speech is 200 frames, plus the comfort noise
    // and silence of at most IDLE_AFTER (2 s) after it ends.
    assert!(
        (190..=320).contains(&frames.len()),
        "{} frames for 200 spoken",
        frames.len()
    );

    let heard: Vec<f32> = frames
        .iter()
        .flat_map(|f| f.samples.iter().copied())
        .collect();
    let seconds = seconds_heard(&speech, &heard);
    eprintln!(
        "heard {}/{}: {}",
        seconds.heard, seconds.total, seconds.shown
    );
    assert!(seconds.heard >= 3, "{seconds:?}");

    let stats = listener.jitter_stats();
    eprintln!("{stats:?}");
    let (stats_slot, stats) = *stats.first().expect("stats for the slot that played");
    assert_eq!(stats_slot, slot);
    assert!(stats.decoded >= 150, "{stats:?}");
    assert!((MIN_TARGET_DELAY..=MAX_TARGET_DELAY).contains(&stats.target_delay));

    listener.close().await;
    host.close().await;
    server.shutdown().await;
}
