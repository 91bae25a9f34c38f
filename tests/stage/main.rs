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
use confab_tests::signal::{self, rms, seconds_heard};
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
