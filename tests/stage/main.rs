//! The stage through the real server, with real WebRTC and Opus: signed-in accounts, a hand
//! raised and approved, the SFU forwarding a speaker only while the room says so.
//!
//! A listener's client sends audio anyway (as a hand-made client could): nobody hears it. Once
//! the host approves its raised hand and it unmutes, a third client hears it; muted by the
//! host, it is silent again; blocked, it cannot join the host's next space.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::time::Duration;

use confab_client::identity::{DeviceKey, key_file};
use confab_client::{AudioFrame, Client, ClientConfig, ClientError, Event, Mic, Streams};
use confab_proto::{ClientMsg, ErrorCode, Role, ServerMsg};
use confab_server::ServerConfig;
use confab_tests::signal::{self, RATE, rms, seconds_heard};
use tokio::sync::mpsc;

async fn signed_in(url: &str, dir: &std::path::Path, handle: &str) -> String {
    let key = DeviceKey::load_or_create("unused", &key_file(&dir.join(handle))).unwrap();
    let http = reqwest::Client::new();
    key.register(&http, url, handle, handle)
        .await
        .unwrap()
        .token
}

/// Speaks `samples` into `mic` in real time (20 ms frames) until done.
fn speak(mic: Mic, samples: Vec<f32>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for frame in samples.chunks(960) {
            tick.tick().await;
            if mic.send(frame.to_vec()).await.is_err() {
                return;
            }
        }
    })
}

/// Everything `audio` delivers during `d`.
async fn listen(audio: &mut mpsc::Receiver<AudioFrame>, d: Duration) -> Vec<f32> {
    let mut out = Vec::new();
    let until = tokio::time::Instant::now() + d;
    while let Ok(Some(frame)) = tokio::time::timeout_at(until, audio.recv()).await {
        out.extend_from_slice(&frame.samples);
    }
    out
}

/// Waits for a stage message matching `want`, skipping others.
async fn stage_event(events: &mut mpsc::Receiver<Event>, want: impl Fn(&ServerMsg) -> bool) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Some(Event::Stage(m))) if want(&m) => return,
            Ok(Some(_)) => {}
            other => panic!("no such stage message: {other:?}"),
        }
    }
}

/// The amplitude of the `hz` component of `x` (one Goertzel bin over the whole slice).
fn tone_level(x: &[f32], hz: f32) -> f32 {
    let w = std::f64::consts::TAU * f64::from(hz) / RATE as f64;
    let (mut re, mut im) = (0f64, 0f64);
    for (i, &s) in x.iter().enumerate() {
        re += f64::from(s) * (w * i as f64).cos();
        im += f64::from(s) * (w * i as f64).sin();
    }
    (2.0 * (re * re + im * im).sqrt() / x.len() as f64) as f32
}

async fn server_error(events: &mut mpsc::Receiver<Event>) -> ErrorCode {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Some(Event::ServerError { code, .. })) => return code,
            Ok(Some(_)) => {}
            other => panic!("no error: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_hand_is_heard_a_listener_or_muted_speaker_is_not_and_a_block_holds() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        ServerConfig::new(dir.path().join("server")).with_listen("127.0.0.1:0".parse().unwrap());
    let server = confab_server::start(config).await.unwrap();
    let url = server.url();
    let ada_token = signed_in(&url, dir.path(), "ada").await;
    let bob_token = signed_in(&url, dir.path(), "bob").await;

    let (ada, mut ada_s): (Client, Streams) =
        Client::connect(ClientConfig::new(url.clone(), "Ada").with_token(&ada_token))
            .await
            .unwrap();
    let space = ada.create("Stage test").await.unwrap().space.id;
    let (bob, mut bob_s) =
        Client::connect(ClientConfig::new(url.clone(), "Bob").with_token(&bob_token))
            .await
            .unwrap();
    let joined = bob.join(&space).await.unwrap();
    assert_eq!(joined.role, Role::Listener);
    let (tim, mut tim_s) = Client::connect(ClientConfig::new(url.clone(), "Tim"))
        .await
        .unwrap();
    tim.join(&space).await.unwrap();
    let bob_mic = bob.mic().await.unwrap();
    tim.mic().await.unwrap(); // media up

    // Bob, a listener, sends audio anyway: Tim hears nothing.
    let speech = signal::speech_like(5.0, 21);
    let talking = speak(bob_mic.clone(), speech.clone());
    let heard = listen(&mut tim_s.audio, Duration::from_millis(5500)).await;
    talking.await.unwrap();
    assert!(
        rms(&heard) < 1e-3,
        "a listener's audio was forwarded (rms {})",
        rms(&heard)
    );

    // Tim is signed out: he may not raise a hand. Bob may not approve himself.
    tim.stage(ClientMsg::RaiseHand).await.unwrap();
    assert_eq!(
        server_error(&mut tim_s.events).await,
        ErrorCode::SignInRequired
    );
    bob.stage(ClientMsg::ApproveHand {
        participant: bob.id(),
    })
    .await
    .unwrap();
    assert_eq!(server_error(&mut bob_s.events).await, ErrorCode::NotAllowed);

    // Bob raises his hand; Ada sees it and approves; Bob comes up muted and unmutes.
    bob.stage(ClientMsg::RaiseHand).await.unwrap();
    let bob_id = bob.id();
    stage_event(
        &mut ada_s.events,
        |m| matches!(m, ServerMsg::HandQueue { hands } if hands.contains(&bob_id)),
    )
    .await;
    ada.stage(ClientMsg::ApproveHand {
        participant: bob_id,
    })
    .await
    .unwrap();
    stage_event(&mut bob_s.events, |m| {
        matches!(m, ServerMsg::ParticipantUpdated { participant } if participant.id == bob_id && participant.role == Role::Speaker)
    })
    .await;
    bob.stage(ClientMsg::UnmuteSelf).await.unwrap();
    stage_event(&mut bob_s.events, |m| {
        matches!(m, ServerMsg::ParticipantUpdated { participant } if participant.id == bob_id && !participant.muted)
    })
    .await;
    while tim_s.audio.try_recv().is_ok() {}
    let talking = speak(bob_mic.clone(), speech.clone());
    let heard = listen(&mut tim_s.audio, Duration::from_millis(6500)).await;
    talking.await.unwrap();
    let seconds = seconds_heard(&speech, &heard);
    eprintln!("Tim heard Bob: {}", seconds.shown);
    // That Bob is heard, not how cleanly (a loaded machine spoils a second now and then; the
    // audio engine of issue 5 owns that): three of five seconds whole and in order.
    assert!(
        seconds.heard * 5 >= seconds.total * 3,
        "Tim did not hear Bob: {seconds:?}"
    );

    // Ada and Bob talk at once (loud tones, 440 and 1000 Hz): what Tim's mixer makes of his
    // two receive slots is both, summed (as long as what was sent, not twice as long), and
    // never clipped.
    let ada_mic = ada.mic().await.unwrap();
    while tim_s.audio.try_recv().is_ok() {}
    let tone = |hz: f32| -> Vec<f32> {
        (0..RATE * 4)
            .map(|i| 0.7 * (std::f32::consts::TAU * hz * i as f32 / RATE as f32).sin())
            .collect()
    };
    let a = speak(ada_mic, tone(440.0));
    let b = speak(bob_mic.clone(), tone(1000.0));
    let mut mixer = confab_audio::Mixer::new();
    let mut mixed = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(4500);
    while let Ok(Some(frame)) = tokio::time::timeout_at(until, tim_s.audio.recv()).await {
        mixer.push(frame.slot, &frame.samples, |m| mixed.extend_from_slice(m));
    }
    a.await.unwrap();
    b.await.unwrap();
    let secs = mixed.len() as f64 / RATE as f64;
    eprintln!("Tim's mix: {secs:.2} s, {:?}", mixer.stats());
    assert!(
        (3.0..=4.7).contains(&secs),
        "the mix lasts {secs:.2} s for 4 s sent"
    );
    let middle = &mixed[mixed.len() / 4..mixed.len() * 3 / 4];
    let (at_440, at_1000, at_700) = (
        tone_level(middle, 440.0),
        tone_level(middle, 1000.0),
        tone_level(middle, 700.0),
    );
    eprintln!(
        "tone levels in the mix: 440 Hz {at_440:.3}, 1000 Hz {at_1000:.3}, 700 Hz {at_700:.3}"
    );
    assert!(
        at_440 > 0.2 && at_1000 > 0.2 && at_700 < 0.05,
        "both speakers are not in the mix"
    );
    let peak = mixed.iter().fold(0f32, |p, s| p.max(s.abs()));
    assert!(peak < 1.0, "the mix clipped: peak {peak}");

    // Ada mutes Bob: he keeps sending, Tim hears nothing.
    ada.stage(ClientMsg::Mute {
        participant: bob_id,
    })
    .await
    .unwrap();
    stage_event(&mut tim_s.events, |m| {
        matches!(m, ServerMsg::ParticipantUpdated { participant } if participant.id == bob_id && participant.muted)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while tim_s.audio.try_recv().is_ok() {}
    let talking = speak(bob_mic.clone(), speech.clone());
    let heard = listen(&mut tim_s.audio, Duration::from_millis(5500)).await;
    talking.await.unwrap();
    assert!(
        rms(&heard) < 1e-3,
        "a muted speaker was forwarded (rms {})",
        rms(&heard)
    );

    // Ada blocks Bob: he is removed, and her next space refuses him.
    ada.stage(ClientMsg::Block {
        participant: bob_id,
    })
    .await
    .unwrap();
    stage_event(&mut bob_s.events, |m| {
        matches!(m, ServerMsg::Removed { blocked: true, .. })
    })
    .await;
    ada.end().await.unwrap();
    let next = ada.create("Second").await.unwrap().space.id;
    match bob.join(&next).await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::Blocked),
        other => panic!("a blocked user joined: {other:?}"),
    }
    // Tim, signed out, is welcome (the first space's end took him out of it).
    tim.join(&next).await.unwrap();
    server.shutdown().await;
}
