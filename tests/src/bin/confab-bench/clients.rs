//! The two client pipelines the audio benchmark measures, wired as the product wires them
//! (`confab_client::cli::host` and `listen`, the desktop app's capture loop and speaker feed):
//!
//! - speaker: the default microphone (cpal `Capture`) -> 20 ms frames -> [`Mic`] -> Opus ->
//!   RTP;
//! - listener: RTP -> one jitter buffer and decoder per receive slot (in the client) -> the
//!   benchmark's [`Mixer`] -> [`SpeakerFeed`] -> the default speaker (cpal `Playback`).
//!
//! Each also runs as its own process (`client-speaker`, `client-listener`) so its CPU time can
//! be read from `/proc` without the server's.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_audio::Mixer;
use confab_audio::{Capture, DEFAULT_CUSHION, FRAME_SAMPLES, Playback, SpeakerFeed};
use confab_client::{AudioFrame, Client, ClientConfig, Event, Mic, Streams};
use confab_proto::SpaceId;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Waits until media is connected (15 s at most).
pub(crate) async fn wait_connected(streams: &mut Streams) -> anyhow::Result<()> {
    let wait = async {
        loop {
            match streams.events.recv().await {
                Some(Event::MediaConnected) => return Ok(()),
                Some(Event::Disconnected { reason }) => bail!("disconnected: {reason}"),
                Some(_) => {}
                None => bail!("connection closed before media connected"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .context("media did not connect within 15 s")?
}

/// The mic path's processing between capture and encoding. Noise suppression, AGC and echo
/// cancellation (issue 5) belong here; until they exist, asking for them is an error rather
/// than a silent figure for the wrong pipeline.
pub(crate) fn check_voice_processing(requested: bool) -> anyhow::Result<()> {
    if requested {
        bail!(
            "--with-voice-processing: not available yet (the mic path has no noise suppressor, \
             AGC or echo canceller to switch on); run without it"
        );
    }
    Ok(())
}

/// What a speaker sent: the instant each frame went to the encoder; frame `n` carries RTP
/// timestamp `Mic::base_timestamp() + n * 960`.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    pub(crate) at: Vec<Instant>,
    pub(crate) capture_overruns: u64,
}

/// A microphone being read into a [`Mic`].
pub(crate) struct Speaking {
    capture: Capture,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Instant>>,
    first: Option<oneshot::Receiver<()>>,
}

impl Speaking {
    /// Opens the default microphone and starts sending it, frame by frame, as
    /// `confab_client::cli::host` does (the ring read every 5 ms).
    pub(crate) async fn start(mic: Mic) -> anyhow::Result<Speaking> {
        let (capture, mut ring) = tokio::task::spawn_blocking(|| Capture::start(None))
            .await?
            .context("opening the microphone")?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (first_tx, first) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut first_tx = Some(first_tx);
            let mut sent = Vec::new();
            let mut ticker = tokio::time::interval(Duration::from_millis(5));
            let mut frame = Vec::with_capacity(FRAME_SAMPLES);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticker.tick() => {}
                }
                while let Ok(s) = ring.pop() {
                    frame.push(s);
                    if frame.len() == FRAME_SAMPLES {
                        // Voice processing (see `check_voice_processing`) goes here.
                        let full = std::mem::replace(&mut frame, Vec::with_capacity(FRAME_SAMPLES));
                        if mic.send(full).await.is_err() {
                            return sent;
                        }
                        sent.push(Instant::now());
                        if let Some(tx) = first_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            }
            sent
        });
        Ok(Speaking {
            capture,
            stop,
            task,
            first: Some(first),
        })
    }

    /// Resolves once the first captured frame has been sent.
    pub(crate) async fn first_frame(&mut self) -> anyhow::Result<()> {
        if let Some(rx) = self.first.take() {
            tokio::time::timeout(Duration::from_secs(15), rx)
                .await
                .context("the microphone delivered nothing within 15 s")??;
        }
        Ok(())
    }

    /// Stops reading and closes the device (off the runtime: PulseAudio takes a second).
    pub(crate) async fn stop(self) -> anyhow::Result<Sent> {
        let _ = self.stop.send(());
        let at = self.task.await?;
        let capture_overruns = self.capture.overruns();
        let capture = self.capture;
        tokio::task::spawn_blocking(move || drop(capture)).await?;
        Ok(Sent {
            at,
            capture_overruns,
        })
    }
}

/// What a listener played.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Heard {
    /// Every frame received: (slot, RTP timestamp, when it left the jitter buffer).
    #[serde(skip)]
    pub(crate) frames: Vec<(usize, u32, Instant)>,
    /// Frames received per receive slot.
    pub(crate) per_slot: Vec<u64>,
    /// Mixed frames pushed to the speaker.
    pub(crate) mixed: u64,
    /// How much was queued for the device when each mixed frame went in, in ms.
    #[serde(skip)]
    pub(crate) queued_ms: Vec<f64>,
    /// Times the speaker ring ran dry and a fresh cushion went in.
    pub(crate) refills: u64,
    /// Frames the mixer dropped (one slot far ahead of another).
    pub(crate) mixer_dropped: u64,
}

/// Plays `audio` (every slot, mixed) into `feed` until `stop` fires; `ready` fires once
/// `ready_slots` distinct slots have delivered.
pub(crate) async fn listen(
    mut audio: mpsc::Receiver<AudioFrame>,
    mut feed: SpeakerFeed,
    mut stop: oneshot::Receiver<()>,
    ready: Option<(usize, oneshot::Sender<()>)>,
) -> Heard {
    let slots = confab_rtc::RECV_SLOTS;
    let mut heard = Heard {
        per_slot: vec![0; slots],
        ..Heard::default()
    };
    // The product's mixer, as the app and the CLI play through it.
    let mut mixer = Mixer::new();
    let mut ready = ready;
    loop {
        let mut mixed: Vec<Vec<f32>> = Vec::new();
        tokio::select! {
            _ = &mut stop => break,
            frame = audio.recv() => match frame {
                Some(f) => {
                    heard.frames.push((f.slot, f.timestamp, f.decoded_at));
                    if let Some(n) = heard.per_slot.get_mut(f.slot) {
                        *n += 1;
                    }
                    mixer.push(f.slot, &f.samples, |m| mixed.push(m.to_vec()));
                }
                None => break,
            },
        }
        for frame in mixed {
            heard
                .queued_ms
                .push(feed.queued() as f64 * 1000.0 / 48_000.0);
            feed.push(&frame);
            heard.mixed += 1;
        }
        if let Some((want, _)) = &ready
            && heard.per_slot.iter().filter(|&&n| n > 0).count() >= *want
            && let Some((_, tx)) = ready.take()
        {
            let _ = tx.send(());
        }
    }
    heard.refills = feed.refills();
    heard.mixer_dropped = mixer.stats().overflowed;
    heard
}

/// Opens the default speaker with the product's cushion.
pub(crate) async fn open_speaker() -> anyhow::Result<(Playback, SpeakerFeed)> {
    let (pb, ring) = tokio::task::spawn_blocking(|| Playback::start(None))
        .await?
        .context("opening the speaker")?;
    Ok((pb, SpeakerFeed::new(ring, DEFAULT_CUSHION)))
}

/// `client-speaker`: hosts a space and speaks into it from the default microphone.
#[derive(clap::Args, Debug)]
pub(crate) struct SpeakerArgs {
    #[arg(long)]
    server: String,
    #[arg(long)]
    seconds: f64,
    #[arg(long)]
    with_voice_processing: bool,
    /// Host with media connected but no microphone: the connection's own cost.
    #[arg(long)]
    idle: bool,
}

/// `client-listener`: joins a space and plays every speaker, mixed, on the default speaker.
#[derive(clap::Args, Debug)]
pub(crate) struct ListenerArgs {
    #[arg(long)]
    server: String,
    #[arg(long)]
    space: String,
    #[arg(long)]
    seconds: f64,
    /// Say READY once this many speakers are heard.
    #[arg(long, default_value_t = 1)]
    expect_slots: usize,
}

/// A client process's last line: `DONE {json}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ClientSummary {
    pub(crate) frames_sent: u64,
    pub(crate) capture_overruns: u64,
    pub(crate) heard: Option<Heard>,
    pub(crate) playback_underruns: u64,
}

pub(crate) fn speaker_process(args: SpeakerArgs) -> anyhow::Result<()> {
    check_voice_processing(args.with_voice_processing)?;
    crate::runtime()?.block_on(async {
        let (client, mut streams) =
            Client::connect(ClientConfig::new(args.server.clone(), "cpu-speaker")).await?;
        let joined = client.create("cpu").await?;
        wait_connected(&mut streams).await?;
        let mic = client.mic().await?;
        let mut speaking = match args.idle {
            true => None,
            false => Some(Speaking::start(mic).await?),
        };
        if let Some(s) = speaking.as_mut() {
            s.first_frame().await?;
        }
        println!("READY {}", joined.space.id);
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        let sent = match speaking {
            Some(s) => s.stop().await?,
            None => Sent::default(),
        };
        let summary = ClientSummary {
            frames_sent: sent.at.len() as u64,
            capture_overruns: sent.capture_overruns,
            ..ClientSummary::default()
        };
        println!("DONE {}", serde_json::to_string(&summary)?);
        let _ = client.end().await;
        client.close().await;
        Ok(())
    })
}

pub(crate) fn listener_process(args: ListenerArgs) -> anyhow::Result<()> {
    crate::runtime()?.block_on(async {
        let (client, mut streams) =
            Client::connect(ClientConfig::new(args.server.clone(), "cpu-listener")).await?;
        let space: SpaceId = args.space.parse().context("--space")?;
        client.join(&space).await?;
        wait_connected(&mut streams).await?;
        let (pb, feed) = open_speaker().await?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(listen(
            streams.audio,
            feed,
            stop_rx,
            Some((args.expect_slots, ready_tx)),
        ));
        tokio::time::timeout(Duration::from_secs(15), ready_rx)
            .await
            .with_context(|| format!("{} speakers not heard within 15 s", args.expect_slots))??;
        println!("READY");
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        let _ = stop_tx.send(());
        let heard = task.await?;
        let summary = ClientSummary {
            playback_underruns: pb.underruns(),
            heard: Some(heard),
            ..ClientSummary::default()
        };
        println!("DONE {}", serde_json::to_string(&summary)?);
        let _ = client.leave().await;
        client.close().await;
        tokio::task::spawn_blocking(move || drop(pb)).await?;
        Ok(())
    })
}
