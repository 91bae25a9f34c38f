//! `confab-bench path` (the default): one-way latency from the host's frame to a listener's decoded frame through
//! a real server on loopback, and the time from join to first audio.
//!
//! The baseline, measured in the same run on the same frames, is the codec alone (Opus encode
//! then decode in one thread): the difference is what WebRTC, the SFU and the tasks add.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use confab_audio::{Decoder, Encoded, Encoder, EncoderConfig, FRAME_SAMPLES, MAX_PACKET_BYTES};
use confab_client::{Client, ClientConfig, Event, Streams};
use confab_tests::TestServer;
use confab_tests::bench::report::percentile;
use confab_tests::signal::speech_like;

/// One-way latency, host frame to a listener's decoded frame, on loopback.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct PathArgs {
    /// Seconds of speech the host sends.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) seconds: f64,
    /// Listeners that join (one after another, while the host speaks).
    #[arg(long, default_value_t = 5)]
    pub(crate) listeners: usize,
}

async fn wait_connected(streams: &mut Streams) -> anyhow::Result<()> {
    let wait = async {
        while let Some(ev) = streams.events.recv().await {
            if ev == Event::MediaConnected {
                return Ok(());
            }
        }
        anyhow::bail!("connection closed before media connected")
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .context("media did not connect")?
}

pub(crate) async fn run(args: PathArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.seconds >= 2.0 && args.seconds <= 600.0,
        "--seconds must be 2..600"
    );
    anyhow::ensure!(
        args.listeners >= 1 && args.listeners <= 50,
        "--listeners must be 1..50"
    );
    let speech = speech_like(args.seconds, 3);
    let frames: Vec<Vec<f32>> = speech
        .chunks(FRAME_SAMPLES)
        .map(|c| {
            let mut f = c.to_vec();
            f.resize(FRAME_SAMPLES, 0.0);
            f
        })
        .collect();

    // Baseline: the codec alone.
    let mut enc = Encoder::new(&EncoderConfig::default())?;
    let mut dec = Decoder::new()?;
    let mut packet = vec![0u8; MAX_PACKET_BYTES];
    let mut pcm = vec![0f32; FRAME_SAMPLES * 6];
    let mut codec_ms = Vec::new();
    for f in &frames {
        let t = Instant::now();
        if let Encoded::Packet(n) = enc.encode(f, &mut packet)? {
            dec.decode(&packet[..n], &mut pcm)?;
            codec_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    codec_ms.sort_by(f64::total_cmp);

    let server = TestServer::start().await?;
    let url = server.url();
    let (host, mut host_streams) = Client::connect(ClientConfig::new(url.clone(), "host")).await?;
    let joined = host.create("bench").await?;
    wait_connected(&mut host_streams).await?;
    let mic = host.mic().await?;
    let base = mic.base_timestamp();

    // The host speaks in real time in its own task, noting when each frame was handed over.
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    let speaker = tokio::spawn(async move {
        let mut sent = Vec::with_capacity(frames.len());
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for f in frames {
            ticker.tick().await;
            sent.push(Instant::now());
            if mic.send(f).await.is_err() {
                break;
            }
        }
        let _ = sent_tx.send(sent);
    });

    // Listeners join one after another while the host speaks.
    let spacing = Duration::from_secs_f64((args.seconds * 0.5 / args.listeners as f64).min(1.0));
    let mut joins = Vec::new();
    let mut listeners = Vec::new();
    for i in 0..args.listeners {
        let (client, mut streams) =
            Client::connect(ClientConfig::new(url.clone(), format!("l{i}"))).await?;
        let t = Instant::now();
        client.join(&joined.space.id).await?;
        let first = tokio::time::timeout(Duration::from_secs(15), streams.audio.recv())
            .await
            .context("no audio within 15 s of joining")?
            .context("audio stream closed")?;
        joins.push(first.decoded_at.duration_since(t).as_secs_f64() * 1e3);
        // Keep receiving in the background: timestamp -> decode instant.
        let task = tokio::spawn(async move {
            let mut got: HashMap<u32, Instant> = HashMap::new();
            got.insert(first.timestamp, first.decoded_at);
            while let Some(f) = streams.audio.recv().await {
                got.entry(f.timestamp).or_insert(f.decoded_at);
            }
            got
        });
        listeners.push((client, task));
        tokio::time::sleep(spacing).await;
    }

    speaker.await?;
    let sent = sent_rx.await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    host.end().await?;
    let mut one_way = Vec::new();
    let mut missing = 0usize;
    for (client, task) in listeners {
        client.close().await;
        let got = task.await?;
        let first_ts = got
            .keys()
            .map(|ts| ts.wrapping_sub(base) / FRAME_SAMPLES as u32)
            .min()
            .unwrap_or(0) as usize;
        for (k, at) in sent.iter().enumerate().skip(first_ts) {
            let ts = base.wrapping_add((k * FRAME_SAMPLES) as u32);
            match got.get(&ts) {
                Some(d) => one_way.push(d.saturating_duration_since(*at).as_secs_f64() * 1e3),
                None => missing += 1,
            }
        }
    }
    one_way.sort_by(f64::total_cmp);
    joins.sort_by(f64::total_cmp);
    server.handle.shutdown().await;

    println!(
        "confab-bench: {} s of speech, {} listeners, loopback, one process",
        args.seconds, args.listeners
    );
    println!(
        "codec only (baseline)      p50 {:7.3} ms  p95 {:7.3} ms",
        percentile(&codec_ms, 0.5),
        percentile(&codec_ms, 0.95)
    );
    let (p50, p95) = (percentile(&one_way, 0.5), percentile(&one_way, 0.95));
    println!(
        "host frame -> decoded      p50 {p50:7.3} ms  p95 {p95:7.3} ms  max {:7.3} ms  ({} frames, {} not decoded (DTX silence or loss))",
        percentile(&one_way, 1.0),
        one_way.len(),
        missing
    );
    println!(
        "  ratio to codec only      p50 {:6.1}x  p95 {:6.1}x",
        p50 / percentile(&codec_ms, 0.5),
        p95 / percentile(&codec_ms, 0.95)
    );
    println!(
        "join -> first audio        p50 {:7.1} ms  max {:7.1} ms  ({} joins)",
        percentile(&joins, 0.5),
        percentile(&joins, 1.0),
        joins.len()
    );
    Ok(())
}
