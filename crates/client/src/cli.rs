//! The CLI's commands as library functions, so tests run exactly what `confab-cli` runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_audio::{FRAME_SAMPLES, SAMPLE_RATE};
use confab_proto::{EndReason, SpaceId};

use crate::{Client, ClientConfig, Event, Recorder, Streams};

fn limit(seconds: Option<f64>) -> anyhow::Result<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e7 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => bail!("--seconds must be a positive number, got {s}"),
    }
}

async fn wait_connected(streams: &mut Streams) -> anyhow::Result<()> {
    let deadline = tokio::time::sleep(Duration::from_secs(15));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ev = streams.events.recv() => match ev {
                Some(Event::MediaConnected) => return Ok(()),
                Some(Event::Ended { reason, .. }) => bail!("the space ended ({reason:?})"),
                Some(Event::Disconnected { reason }) => bail!("disconnected: {reason}"),
                Some(_) => {}
                None => bail!("connection closed"),
            },
            _ = &mut deadline => bail!("media did not connect within 15 s"),
        }
    }
}

/// `confab-cli host`: opens a space, reports its id through `on_space`, and speaks from `input`
/// (ending the space when the file ends) or the default microphone until Ctrl-C.
pub async fn host(
    server: &str,
    name: &str,
    title: &str,
    input: Option<PathBuf>,
    seconds: Option<f64>,
    on_space: impl FnOnce(&SpaceId),
) -> anyhow::Result<()> {
    let limit = limit(seconds)?;
    // Read the file before opening the space, so a bad file opens nothing.
    let samples = match &input {
        Some(path) => Some(
            confab_audio::read_wav(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let (client, mut streams) = Client::connect(ClientConfig::new(server, name)).await?;
    let joined = client.create(title).await.context("opening the space")?;
    on_space(&joined.space.id);
    wait_connected(&mut streams).await?;
    let mic = client.mic().await?;
    let started = Instant::now();
    let over = |now: Instant| limit.is_some_and(|l| now.duration_since(started) >= l);
    match samples {
        Some(samples) => {
            let mut ticker = tokio::time::interval(Duration::from_millis(20));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for chunk in samples.chunks(FRAME_SAMPLES) {
                ticker.tick().await;
                if over(Instant::now()) {
                    break;
                }
                let mut frame = chunk.to_vec();
                frame.resize(FRAME_SAMPLES, 0.0);
                mic.send(frame).await?;
            }
            // Let the last packets leave before the end is announced.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        None => {
            let (capture, mut ring) =
                confab_audio::Capture::start(None).context("opening the microphone")?;
            eprintln!(
                "speaking from {}; Ctrl-C ends the space",
                capture.device_name()
            );
            let mut ticker = tokio::time::interval(Duration::from_millis(5));
            let mut frame = Vec::with_capacity(FRAME_SAMPLES);
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            loop {
                tokio::select! {
                    _ = &mut ctrl_c => break,
                    _ = ticker.tick() => {}
                }
                if over(Instant::now()) {
                    break;
                }
                while let Ok(s) = ring.pop() {
                    frame.push(s);
                    if frame.len() == FRAME_SAMPLES {
                        mic.send(std::mem::replace(
                            &mut frame,
                            Vec::with_capacity(FRAME_SAMPLES),
                        ))
                        .await?;
                    }
                }
            }
            // Closing a PulseAudio stream blocks for a second or more: not on the runtime.
            let _ = tokio::task::spawn_blocking(move || drop(capture)).await;
        }
    }
    client.end().await.context("ending the space")?;
    client.close().await;
    eprintln!("space ended");
    Ok(())
}

/// `confab-cli listen`: joins and hears a space, into `output` or on the default speaker, until
/// it ends (returns the reason), `seconds` pass or Ctrl-C.
pub async fn listen(
    server: &str,
    name: &str,
    id: &SpaceId,
    output: Option<PathBuf>,
    seconds: Option<f64>,
) -> anyhow::Result<Option<EndReason>> {
    let limit = limit(seconds)?;
    let (client, mut streams) = Client::connect(ClientConfig::new(server, name)).await?;
    let joined = client
        .join(id)
        .await
        .with_context(|| format!("joining {id}"))?;
    eprintln!(
        "listening to {:?} by {}",
        joined.space.title, joined.space.host
    );
    let mut recorder = match &output {
        Some(path) => {
            Some(Recorder::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => None,
    };
    let mut playback = None;
    // Every speaker's frames sum into the one stream the speaker plays.
    let mut mixer = confab_audio::Mixer::new();
    if recorder.is_none() {
        let (pb, ring) = confab_audio::Playback::start(None).context("opening the speaker")?;
        // A cushion of silence absorbs network lateness (the adaptive buffer is issue 5).
        playback = Some((
            pb,
            confab_audio::SpeakerFeed::new(ring, confab_audio::DEFAULT_CUSHION),
        ));
    }
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    let until = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut ended = None;
    loop {
        tokio::select! {
            frame = streams.audio.recv() => match frame {
                Some(frame) => {
                    if let Some(rec) = recorder.as_mut() { rec.add(&frame)?; }
                    if let Some((_, feed)) = playback.as_mut() {
                        mixer.push(frame.slot, &frame.samples, |mixed| feed.push(mixed));
                    }
                }
                None => break,
            },
            ev = streams.events.recv() => match ev {
                Some(Event::Ended { reason, .. }) => { ended = Some(reason); break; }
                Some(Event::Disconnected { reason }) => bail!("disconnected: {reason}"),
                Some(_) => {}
                None => break,
            },
            _ = &mut until => break,
            _ = &mut ctrl_c => break,
        }
    }
    if ended.is_some() {
        // Packets already in flight when the end was announced still count: drain until
        // the audio has been quiet for 300 ms (at most 2 s).
        let stop = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some(frame)) = tokio::time::timeout_at(
            stop.min(tokio::time::Instant::now() + Duration::from_millis(300)),
            streams.audio.recv(),
        )
        .await
        {
            if let Some(rec) = recorder.as_mut() {
                rec.add(&frame)?;
            }
        }
    } else {
        let _ = client.leave().await;
    }
    client.close().await;
    if let Some(rec) = recorder {
        let samples = rec.finish()?;
        eprintln!("recorded {:.2} s", samples as f64 / SAMPLE_RATE as f64);
    }
    if let Some((pb, _)) = playback {
        // Let what is queued play out.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = tokio::task::spawn_blocking(move || drop(pb)).await;
    }
    match ended {
        Some(reason) => eprintln!("the space ended ({reason:?})"),
        None => eprintln!("left"),
    }
    Ok(ended)
}
