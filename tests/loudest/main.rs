//! The SFU forwards only the loudest few speakers (RFC 6464 audio levels), through the real
//! server with real WebRTC on loopback and real Opus.
//!
//! Five speakers send steady tones at distinct frequencies and levels; a listener's three
//! receive slots carry exactly the three loudest (told apart by frequency in what it decodes).
//! A quiet speaker who turns loud is heard within a stated time, in place of the now quietest.
//! A speaker who sends silence costs nothing (the server's counters), and a client that does
//! not know the audio level extension is still heard.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use confab_client::{AudioFrame, Client, ClientConfig, Event, Mic, Streams};
use confab_proto::ParticipantId;
use confab_tests::signal::RATE;
use confab_tests::{TestServer, bring_on_stage, sign_in, within};
use tokio::sync::mpsc;

/// How soon a speaker who turns loud must be heard by a listener (from its first loud frame
/// to the listener's first decoded frame of it): the server's smoothing and evaluation take a
/// few hundred milliseconds, the listener's jitter buffer some tens more.
const SWITCH_WITHIN: Duration = Duration::from_millis(1500);

/// Sends a tone of `hz` at `amplitude` (shared, so the test can turn it up or down) in real
/// time, 20 ms frames, until the mic closes.
fn tone(mic: Mic, hz: f32, amplitude: Arc<AtomicU32>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            let a = f32::from_bits(amplitude.load(Ordering::Relaxed));
            let frame: Vec<f32> = (0..960)
                .map(|i| {
                    let t = (n + i) as f32 / RATE as f32;
                    a * (std::f32::consts::TAU * hz * t).sin()
                })
                .collect();
            n += 960;
            if mic.send(frame).await.is_err() {
                return;
            }
        }
    })
}

fn amp(a: f32) -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new(a.to_bits()))
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

/// Of `freqs`, the one loudest in `x`, if it stands out of silence.
fn dominant(x: &[f32], freqs: &[f32]) -> Option<f32> {
    freqs
        .iter()
        .map(|&f| (f, tone_level(x, f)))
        .filter(|(_, l)| *l > 0.005)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(f, _)| f)
}

/// Everything each slot of `audio` delivers during `d`, by slot.
async fn listen_by_slot(
    audio: &mut mpsc::Receiver<AudioFrame>,
    d: Duration,
) -> HashMap<usize, Vec<f32>> {
    let mut out: HashMap<usize, Vec<f32>> = HashMap::new();
    let until = tokio::time::Instant::now() + d;
    while let Ok(Some(frame)) = tokio::time::timeout_at(until, audio.recv()).await {
        out.entry(frame.slot).or_default().extend(frame.samples);
    }
    out
}

/// The frequencies heard, one per slot that carried a tone (the last second of each).
fn heard(by_slot: &HashMap<usize, Vec<f32>>, freqs: &[f32]) -> Vec<f32> {
    let mut slots: Vec<_> = by_slot.iter().collect();
    slots.sort_by_key(|(k, _)| **k);
    for (slot, s) in slots {
        let last = &s[s.len().saturating_sub(RATE)..];
        let levels: Vec<String> = freqs
            .iter()
            .map(|&f| format!("{f} Hz {:.3}", tone_level(last, f)))
            .collect();
        eprintln!(
            "  slot {slot}: {:.2} s, last second: {}",
            s.len() as f64 / RATE as f64,
            levels.join(", ")
        );
    }
    let mut v: Vec<f32> = by_slot
        .values()
        .filter_map(|s| dominant(&s[s.len().saturating_sub(RATE)..], freqs))
        .collect();
    v.sort_by(f32::total_cmp);
    v
}

/// A client signed in as `handle`, in `space`, on stage, media up.
async fn speaker(
    url: &str,
    dir: &std::path::Path,
    handle: &str,
    host: &Client,
    space: &confab_proto::SpaceId,
) -> (Client, Streams, Mic) {
    let token = sign_in(url, dir, handle).await.unwrap();
    let (c, mut s) = Client::connect(ClientConfig::new(url.to_owned(), handle).with_token(token))
        .await
        .unwrap();
    c.join(space).await.unwrap();
    let mic = c.mic().await.unwrap();
    bring_on_stage(host, &c, &mut s.events).await.unwrap();
    (c, s, mic)
}

/// Drains a stream nobody reads, so it never fills.
fn drain(s: Streams) {
    let Streams {
        mut events,
        mut audio,
    } = s;
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    tokio::spawn(async move { while audio.recv().await.is_some() {} });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_receives_the_three_loudest_and_a_speaker_turning_loud_takes_a_slot() {
    let server = TestServer::start().await.unwrap();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    // Tones 300..1300 Hz, none a harmonic of another. The quiet ones come on stage first, so
    // they hold the free places until the loud ones are heard to be louder.
    let freqs = [300.0f32, 500.0, 700.0, 1100.0, 1300.0];
    let amps = [0.03f32, 0.1, 0.5, 0.4, 0.3];

    let (host, mut host_s) = Client::connect(ClientConfig::new(url.clone(), "host"))
        .await
        .unwrap();
    let space = host.create("Loudest").await.unwrap().space.id;
    let host_mic = host.mic().await.unwrap();
    // The host's events must be read while the others come on stage.
    let host_events = tokio::spawn(async move {
        while host_s.events.recv().await.is_some() {}
        host_s
    });
    let (listener, mut listener_s) = Client::connect(ClientConfig::new(url.clone(), "listener"))
        .await
        .unwrap();
    listener.join(&space).await.unwrap();
    listener.mic().await.unwrap(); // media up

    let mut speakers = Vec::new();
    for name in ["bea", "cyd", "dan", "eve"] {
        speakers.push(
            within(
                30,
                "a speaker on stage",
                speaker(&url, dir.path(), name, &host, &space),
            )
            .await,
        );
    }
    let ids: Vec<ParticipantId> = std::iter::once(host.id())
        .chain(speakers.iter().map(|(c, _, _)| c.id()))
        .collect();
    let mut mics = vec![host_mic];
    let mut streams = Vec::new();
    for (c, s, m) in speakers {
        mics.push(m);
        streams.push((c, s));
    }
    let levels: Vec<Arc<AtomicU32>> = amps.iter().map(|&a| amp(a)).collect();
    let senders: Vec<_> = mics
        .into_iter()
        .zip(freqs)
        .zip(&levels)
        .map(|((m, f), a)| tone(m, f, Arc::clone(a)))
        .collect();
    let mut clients = Vec::new();
    for (c, s) in streams {
        drain(s);
        clients.push(c);
    }

    // Settle (selection, jitter buffers), then listen for two seconds.
    let _ = listen_by_slot(&mut listener_s.audio, Duration::from_secs(2)).await;
    let by_slot = listen_by_slot(&mut listener_s.audio, Duration::from_secs(2)).await;
    let got = heard(&by_slot, &freqs);
    eprintln!("the listener hears {got:?} on slots {:?}", {
        let mut k: Vec<_> = by_slot.keys().collect();
        k.sort();
        k
    });
    for (slot, j) in listener.jitter_stats() {
        eprintln!("  slot {slot} jitter buffer: {j:?}");
    }
    for s in server.handle.uplink_stats() {
        eprintln!("  {s:?}");
    }
    assert_eq!(got, vec![700.0, 1100.0, 1300.0], "not the three loudest");

    // The server forwards the quietest speaker to nobody, and the fourth loudest (the
    // reserve) only to the three forwarded speakers (each hears the other two and the
    // reserve), never to the listener: at most three copies of each of its packets.
    let at = |who: ParticipantId| {
        server
            .handle
            .uplink_stats()
            .into_iter()
            .find(|s| s.participant == who)
            .unwrap()
    };
    let (quietest0, reserve0) = (at(ids[0]), at(ids[1]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (quietest1, reserve1) = (at(ids[0]), at(ids[1]));
    eprintln!("quietest {quietest1:?}, reserve {reserve1:?}");
    assert!(
        quietest1.received > quietest0.received + 20,
        "{quietest1:?}"
    );
    assert_eq!(
        quietest1.forwarded, quietest0.forwarded,
        "the quietest speaker was forwarded: {quietest1:?}"
    );
    let reserve_sent = reserve1.forwarded - reserve0.forwarded;
    let reserve_in = reserve1.received - reserve0.received;
    assert!(
        reserve_sent > 0 && reserve_sent <= 3 * reserve_in,
        "the reserve went out {reserve_sent} times for {reserve_in} packets"
    );

    // Bea (500 Hz, quiet) turns loud: the listener hears her, and no longer Eve (1300 Hz, now
    // the quietest of the three), within SWITCH_WITHIN.
    while listener_s.audio.try_recv().is_ok() {}
    while listener_s.events.try_recv().is_ok() {}
    let loud_at = Instant::now();
    levels[1].store(0.7f32.to_bits(), Ordering::Relaxed);
    let mut slot_of_bea = None;
    let mut told_at = None;
    let mut heard_at = None;
    let mut recent: HashMap<usize, Vec<f32>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while heard_at.is_none() {
        tokio::select! {
            ev = listener_s.events.recv() => {
                if let Some(Event::Slot { slot, speaker }) = ev
                    && speaker == Some(ids[1])
                {
                    slot_of_bea = Some(slot);
                    told_at = Some(loud_at.elapsed());
                }
            }
            frame = listener_s.audio.recv() => {
                let frame = frame.unwrap();
                let buf = recent.entry(frame.slot).or_default();
                buf.extend(&frame.samples);
                let keep = buf.len().saturating_sub(960 * 5);
                buf.drain(..keep);
                if Some(frame.slot) == slot_of_bea
                    && buf.len() >= 960 * 5
                    && dominant(buf, &freqs) == Some(500.0)
                {
                    heard_at = Some(loud_at.elapsed());
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    eprintln!(
        "Bea turned loud: slot {slot_of_bea:?} reassigned after {told_at:?}, heard after {heard_at:?}"
    );
    let heard_after = heard_at.expect("the listener never heard Bea once she was loud");
    assert!(
        heard_after <= SWITCH_WITHIN,
        "Bea was heard only {heard_after:?} after she turned loud"
    );
    let by_slot = listen_by_slot(&mut listener_s.audio, Duration::from_secs(2)).await;
    let got = heard(&by_slot, &freqs);
    assert_eq!(got, vec![500.0, 700.0, 1100.0], "after Bea turned loud");

    drop(senders);
    for c in clients {
        c.close().await;
    }
    listener.close().await;
    host.close().await;
    drop(host_events);
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_is_not_forwarded_and_a_client_without_levels_is_still_heard() {
    let server = TestServer::start().await.unwrap();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    // The host's client does not offer the audio level extension.
    let mut config = ClientConfig::new(url.clone(), "host");
    config.rtc.audio_level = false;
    let (host, host_s) = Client::connect(config).await.unwrap();
    let space = host.create("Quiet").await.unwrap().space.id;
    let host_mic = host.mic().await.unwrap();
    let host_events = tokio::spawn(async move {
        let mut s = host_s;
        while s.events.recv().await.is_some() {}
    });
    let (listener, mut listener_s) = Client::connect(ClientConfig::new(url.clone(), "listener"))
        .await
        .unwrap();
    listener.join(&space).await.unwrap();
    listener.mic().await.unwrap();
    let (bea, bea_s, bea_mic) = speaker(&url, dir.path(), "bea", &host, &space).await;
    drain(bea_s);
    // Cyd's encoder has no DTX: she sends 50 packets/s of silence, each marked silent.
    let cyd_token = sign_in(&url, dir.path(), "cyd").await.unwrap();
    let mut cyd_config = ClientConfig::new(url.clone(), "cyd").with_token(cyd_token);
    cyd_config.encoder.dtx = false;
    let (cyd, mut cyd_s) = Client::connect(cyd_config).await.unwrap();
    cyd.join(&space).await.unwrap();
    let cyd_mic = cyd.mic().await.unwrap();
    bring_on_stage(&host, &cyd, &mut cyd_s.events)
        .await
        .unwrap();
    drain(cyd_s);

    // The host (no levels) plays 440 Hz; Bea and Cyd send digital silence.
    let freqs = [440.0, 880.0, 660.0];
    let host_level = amp(0.3);
    let bea_level = amp(0.0);
    let cyd_level = amp(0.0);
    let _h = tone(host_mic, 440.0, Arc::clone(&host_level));
    let _b = tone(bea_mic, 880.0, Arc::clone(&bea_level));
    let _c = tone(cyd_mic, 660.0, Arc::clone(&cyd_level));
    let _ = listen_by_slot(&mut listener_s.audio, Duration::from_secs(1)).await;
    let by_slot = listen_by_slot(&mut listener_s.audio, Duration::from_secs(2)).await;
    assert_eq!(
        heard(&by_slot, &freqs),
        vec![440.0],
        "the host without levels is not heard"
    );
    let stats = |who: ParticipantId| {
        server
            .handle
            .uplink_stats()
            .into_iter()
            .find(|s| s.participant == who)
    };
    let host_stats = stats(host.id()).unwrap();
    assert!(host_stats.forwarded > 50, "{host_stats:?}");
    // Silence costs nothing: over two seconds, nothing of Bea's or Cyd's goes out. Bea's
    // Opus DTX sends next to nothing; Cyd's packets arrive and are dropped as silent.
    let (bea0, cyd0) = (stats(bea.id()), stats(cyd.id()).unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (bea1, cyd1) = (stats(bea.id()), stats(cyd.id()).unwrap());
    eprintln!("silent: Bea {bea0:?} -> {bea1:?}; Cyd {cyd0:?} -> {cyd1:?}");
    let field = |s: Option<confab_server::UplinkStats>,
                 f: fn(&confab_server::UplinkStats) -> u64| {
        s.as_ref().map_or(0, f)
    };
    assert_eq!(
        field(bea1, |s| s.forwarded),
        field(bea0, |s| s.forwarded),
        "Bea's silence was forwarded"
    );
    let bea_sent = field(bea1, |s| s.received) - field(bea0, |s| s.received);
    assert!(
        bea_sent <= 20,
        "{bea_sent} packets in 2 s of silence with DTX"
    );
    assert_eq!(
        cyd1.forwarded, cyd0.forwarded,
        "Cyd's silence was forwarded"
    );
    assert!(
        cyd1.silent - cyd0.silent >= 80,
        "Cyd's silent packets were not dropped: {cyd1:?}"
    );

    // Bea speaks up: forwarded, and heard.
    bea_level.store(0.3f32.to_bits(), Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    while listener_s.audio.try_recv().is_ok() {}
    let by_slot = listen_by_slot(&mut listener_s.audio, Duration::from_secs(2)).await;
    assert_eq!(heard(&by_slot, &freqs), vec![440.0, 880.0]);
    let bea_stats = stats(bea.id()).unwrap();
    assert!(bea_stats.forwarded > 50, "{bea_stats:?}");

    cyd.close().await;
    bea.close().await;
    listener.close().await;
    host.close().await;
    host_events.abort();
    server.handle.shutdown().await;
}
