//! The two client pipelines the audio benchmark measures, wired as the desktop app wires them
//! (`confab_client::app`: `set_mic`, `ensure_capture`, `start_space_audio`):
//!
//! - speaker: the default microphone (cpal `Capture`) -> the [`AudioEngine`]'s worker (20 ms
//!   frames, voice processing, Opus) -> its send sink -> [`Mic::try_send_encoded`] -> RTP;
//! - listener: RTP -> the client forwards each packet to the [`AudioEngine`]
//!   ([`ClientConfig::with_engine`]) -> a jitter buffer per receive slot, mixed at the
//!   listener's gains when the speaker ring runs low -> the default speaker (cpal `Playback`).
//!
//! Each also runs as its own process (`client-speaker`, `client-listener`) so its CPU time can
//! be read from `/proc` without the server's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_audio::{AudioEngine, Capture, Playback, SAMPLE_RATE, SendSink, VoiceConfig};
use confab_client::{Client, ClientConfig, Event, Mic, Streams};
use confab_proto::SpaceId;
use confab_tests::bench::report::p50_p95;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

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

/// The voice processing a speaker's engine runs between capture and encoding.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Voice {
    /// None: what clean speech measures is then the transport alone.
    #[default]
    Off,
    /// The app's defaults: high-pass, echo cancellation, noise suppression, gain control.
    App,
    /// High-pass, noise suppression and gain control; no echo cancellation (there is no far
    /// end to cancel).
    Suppress,
    /// [`Voice::Suppress`] with noise suppression off: everything else identical.
    NoSuppress,
}

impl Voice {
    pub(crate) fn config(self) -> VoiceConfig {
        let on = |ns| VoiceConfig {
            high_pass: true,
            echo_cancel: false,
            noise_suppression: ns,
            agc: true,
        };
        match self {
            Voice::Off => VoiceConfig {
                high_pass: false,
                echo_cancel: false,
                noise_suppression: false,
                agc: false,
            },
            Voice::App => VoiceConfig::default(),
            Voice::Suppress => on(true),
            Voice::NoSuppress => on(false),
        }
    }
}

/// Starts an audio worker as the app does (one per client).
pub(crate) fn start_engine(voice: Voice) -> anyhow::Result<Arc<AudioEngine>> {
    Ok(Arc::new(
        AudioEngine::start(voice.config()).context("starting the audio worker")?,
    ))
}

/// What a speaker sent.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Sent {
    /// Microphone frames the engine encoded and handed to the sink.
    pub(crate) frames: u64,
    /// Of those, frames the connection refused (its queue to the encoder task was full).
    pub(crate) unsent: u64,
    pub(crate) capture_overruns: u64,
}

/// A microphone feeding an engine that sends into a [`Mic`].
pub(crate) struct Speaking {
    engine: Arc<AudioEngine>,
    capture: Capture,
    unsent: Arc<AtomicU64>,
}

/// The send sink the app attaches (`set_mic`), counting what the connection refused.
fn mic_sink(mic: Mic, unsent: Arc<AtomicU64>) -> SendSink {
    Box::new(move |frame| {
        if mic.try_send_encoded(frame).is_err() {
            unsent.fetch_add(1, Ordering::Relaxed);
        }
    })
}

impl Speaking {
    /// Puts `mic` behind `engine`'s send sink and opens the default microphone into the
    /// engine, as the app's `start_mic` does.
    pub(crate) async fn start(engine: Arc<AudioEngine>, mic: Mic) -> anyhow::Result<Speaking> {
        let unsent = Arc::new(AtomicU64::new(0));
        engine.set_sink(Some(mic_sink(mic, Arc::clone(&unsent))));
        // Off the runtime: PulseAudio takes a second.
        let (capture, ring) = tokio::task::spawn_blocking(|| Capture::start(None))
            .await?
            .context("opening the microphone")?;
        engine.set_capture(Some(ring));
        Ok(Speaking {
            engine,
            capture,
            unsent,
        })
    }

    /// Resolves once the engine has sent its first microphone frame.
    pub(crate) async fn first_frame(&self) -> anyhow::Result<()> {
        wait_for(Duration::from_secs(15), || {
            self.engine.stats().frames_sent > 0
        })
        .await
        .context("the microphone delivered nothing within 15 s")
    }

    /// Detaches the sink and the microphone and closes the device.
    pub(crate) async fn stop(self) -> anyhow::Result<Sent> {
        self.engine.set_sink(None);
        self.engine.set_capture(None);
        let sent = Sent {
            frames: self.engine.stats().frames_sent,
            unsent: self.unsent.load(Ordering::Relaxed),
            capture_overruns: self.capture.overruns(),
        };
        let capture = self.capture;
        tokio::task::spawn_blocking(move || drop(capture)).await?;
        Ok(sent)
    }
}

/// Polls `done` every 10 ms until it holds or `within` has passed.
async fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let until = Instant::now() + within;
    while !done() {
        if Instant::now() > until {
            bail!("timed out");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// One receive slot's jitter buffer, as the engine last published it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct SlotFigures {
    pub(crate) slot: usize,
    /// How long after the fastest transit seen the current frame plays, ms.
    pub(crate) playout_ms: f64,
    /// The delay the buffer aims for beyond the fastest transit, ms.
    pub(crate) target_ms: f64,
    /// Audio buffered ahead of the playout point, ms.
    pub(crate) buffered_ms: f64,
    pub(crate) decoded: u64,
    pub(crate) lost: u64,
    pub(crate) late: u64,
    pub(crate) fec_recovered: u64,
    pub(crate) concealed: u64,
    pub(crate) shrunk: u64,
    pub(crate) resyncs: u64,
    /// Packets dropped because the buffer was full.
    pub(crate) overflow: u64,
    /// Packets that fit no timeline.
    pub(crate) discarded: u64,
}

impl std::fmt::Display for SlotFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "slot {}: playout delay {:.0} ms (target {:.0}, buffered {:.0}), decoded {}, lost {}, \
             late {}, FEC {}, concealed {}, shrunk {}, resyncs {}, overflow {}, discarded {}",
            self.slot,
            self.playout_ms,
            self.target_ms,
            self.buffered_ms,
            self.decoded,
            self.lost,
            self.late,
            self.fec_recovered,
            self.concealed,
            self.shrunk,
            self.resyncs,
            self.overflow,
            self.discarded
        )
    }
}

/// What a listener's engine played.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Heard {
    /// 20 ms frames mixed for the speaker.
    pub(crate) frames_mixed: u64,
    /// Mixed frames the limiter bent.
    pub(crate) frames_limited: u64,
    /// Packets dropped on their way into the worker (its inbound ring was full).
    pub(crate) packets_dropped: u64,
    /// The speaker ring's depth after each top-up (the engine's `playout_queued`), sampled
    /// every 5 ms, in ms (p50, p95); `None` when not sampled.
    pub(crate) speaker_ring_ms: Option<(f64, f64)>,
    pub(crate) playback_underruns: u64,
    /// Each slot's jitter buffer, at most a second old.
    pub(crate) slots: Vec<SlotFigures>,
}

impl Heard {
    /// `slot ...; slot ...`, or that nothing was heard.
    pub(crate) fn jitter_line(&self) -> String {
        if self.slots.is_empty() {
            return "no slot carried audio".into();
        }
        self.slots
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The default speaker playing an engine's mix.
pub(crate) struct Listening {
    engine: Arc<AudioEngine>,
    playback: Playback,
    sampler: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<Vec<f64>>)>,
}

impl Listening {
    /// Opens the default speaker and gives its ring to `engine`, as the app's
    /// `start_space_audio` does. With `sample`, also samples the speaker ring's depth.
    pub(crate) async fn start(engine: Arc<AudioEngine>, sample: bool) -> anyhow::Result<Self> {
        let (playback, ring) = tokio::task::spawn_blocking(|| Playback::start(None))
            .await?
            .context("opening the speaker")?;
        engine.set_playback(Some(ring));
        let sampler = sample.then(|| {
            let (stop, mut stopped) = oneshot::channel::<()>();
            let engine = Arc::clone(&engine);
            let task = tokio::spawn(async move {
                let mut ms = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                loop {
                    tokio::select! {
                        _ = &mut stopped => return ms,
                        _ = tick.tick() => {}
                    }
                    let queued = engine.stats().playout_queued;
                    // 0 until the first block went in.
                    if queued > 0 {
                        ms.push(f64::from(queued) * 1000.0 / f64::from(SAMPLE_RATE));
                    }
                }
            });
            (stop, task)
        });
        Ok(Listening {
            engine,
            playback,
            sampler,
        })
    }

    /// Resolves once `want` receive slots have carried audio (the engine publishes its jitter
    /// statistics once a second).
    pub(crate) async fn heard_slots(&self, want: usize, within: Duration) -> anyhow::Result<()> {
        wait_for(within, || self.engine.jitter_stats().len() >= want)
            .await
            .with_context(|| format!("{want} speakers not heard within {within:?}"))
    }

    /// Takes the speaker away from the engine, closes it, and says what was played.
    pub(crate) async fn stop(self) -> anyhow::Result<Heard> {
        let speaker_ring_ms = match self.sampler {
            Some((stop, task)) => {
                let _ = stop.send(());
                Some(p50_p95(&task.await?))
            }
            None => None,
        };
        let stats = self.engine.stats();
        let heard = Heard {
            frames_mixed: stats.frames_mixed,
            frames_limited: stats.frames_limited,
            packets_dropped: stats.packets_dropped,
            speaker_ring_ms,
            playback_underruns: self.playback.underruns(),
            slots: slot_figures(&self.engine),
        };
        self.engine.set_playback(None);
        let playback = self.playback;
        tokio::task::spawn_blocking(move || drop(playback)).await?;
        Ok(heard)
    }
}

fn slot_figures(engine: &AudioEngine) -> Vec<SlotFigures> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    engine
        .jitter_stats()
        .into_iter()
        .map(|(slot, s)| SlotFigures {
            slot,
            playout_ms: ms(s.playout_delay),
            target_ms: ms(s.target_delay),
            buffered_ms: ms(s.buffered_delay),
            decoded: s.decoded,
            lost: s.lost,
            late: s.late,
            fec_recovered: s.fec_recovered,
            concealed: s.concealed,
            shrunk: s.shrunk,
            resyncs: s.resyncs,
            overflow: s.overflow,
            discarded: s.discarded,
        })
        .collect()
}

/// `client-speaker`: hosts a space and speaks into it from the default microphone.
#[derive(clap::Args, Debug)]
pub(crate) struct SpeakerArgs {
    #[arg(long)]
    server: String,
    #[arg(long)]
    seconds: f64,
    /// Run the engine with the app's voice processing (high-pass, echo cancellation, noise
    /// suppression, gain control) instead of none.
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
    pub(crate) sent: Option<Sent>,
    pub(crate) heard: Option<Heard>,
}

pub(crate) fn speaker_process(args: SpeakerArgs) -> anyhow::Result<()> {
    let voice = match args.with_voice_processing {
        true => Voice::App,
        false => Voice::Off,
    };
    crate::runtime()?.block_on(async {
        let engine = start_engine(voice)?;
        let config =
            ClientConfig::new(args.server.clone(), "cpu-speaker").with_engine(Arc::clone(&engine));
        let (client, mut streams) = Client::connect(config).await?;
        let joined = client.create("cpu").await?;
        wait_connected(&mut streams).await?;
        let speaking = match args.idle {
            true => None,
            false => Some(Speaking::start(Arc::clone(&engine), client.mic().await?).await?),
        };
        if let Some(s) = &speaking {
            s.first_frame().await?;
        }
        println!("READY {}", joined.space.id);
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        let sent = match speaking {
            Some(s) => Some(s.stop().await?),
            None => None,
        };
        let summary = ClientSummary { sent, heard: None };
        println!("DONE {}", serde_json::to_string(&summary)?);
        let _ = client.end().await;
        client.close().await;
        Ok(())
    })
}

pub(crate) fn listener_process(args: ListenerArgs) -> anyhow::Result<()> {
    crate::runtime()?.block_on(async {
        // A listener sends nothing, so its voice processing never runs; the app's defaults.
        let engine = start_engine(Voice::App)?;
        let config =
            ClientConfig::new(args.server.clone(), "cpu-listener").with_engine(Arc::clone(&engine));
        let (client, mut streams) = Client::connect(config).await?;
        let space: SpaceId = args.space.parse().context("--space")?;
        client.join(&space).await?;
        wait_connected(&mut streams).await?;
        let listening = Listening::start(Arc::clone(&engine), false).await?;
        listening
            .heard_slots(args.expect_slots, Duration::from_secs(15))
            .await?;
        println!("READY");
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        let heard = listening.stop().await?;
        let summary = ClientSummary {
            sent: None,
            heard: Some(heard),
        };
        println!("DONE {}", serde_json::to_string(&summary)?);
        let _ = client.leave().await;
        client.close().await;
        Ok(())
    })
}
