//! One measurement of `confab-bench audio`, run as its own process inside a fresh network
//! namespace (`unshare --net`): a private PulseAudio, an embedded server and real clients.
//! Everything it starts (daemon, recorder, player, client processes) it stops itself, within
//! its deadline; its namespace, with any iptables rule in it, dies with it.
//!
//! It prints one line `RESULT {json}` on stdout; the parent reads that and the recordings.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_client::identity::{DeviceKey, key_file};
use confab_client::{Client, ClientConfig, Event, Mic, Streams};
use confab_proto::{ClientMsg, Role, ServerMsg};
use confab_tests::TestServer;
use confab_tests::bench::cpu;
use confab_tests::bench::impair::Impairment;
use confab_tests::pulse::{KillOnDrop, PulseDaemon};
use confab_tests::signal::speech_like;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::clients::{self, ClientSummary, Heard, Listening, Sent, Speaking, Voice};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Mic to speaker through one audio engine (Opus, jitter buffer, playout), no network:
    /// the device path's floor.
    Devices,
    /// Mic to speaker on a clean loopback.
    Clean,
    /// Mic to speaker with 40 +- 10 ms jitter and 1 % loss per hop.
    Jitter,
    /// Mic to speaker with 5 % of packets lost end to end.
    Loss,
    /// Noisy speech from mic to speaker on a clean loopback, the speaker suppressing noise.
    NoisySuppressed,
    /// The same with noise suppression off (everything else identical).
    NoisyPlain,
    /// CPU of a speaker client process.
    CpuSpeaker,
    /// CPU of a speaker client process running the app's voice processing.
    CpuSpeakerVoice,
    /// CPU of a host client process with media connected and no microphone.
    CpuIdle,
    /// CPU of a listener client process hearing three speakers.
    CpuListener,
    /// CPU of PulseAudio's own clients (`paplay`, `parec`) playing and recording at the
    /// device buffers our streams ask for: the floor under any client on this machine.
    CpuFloor,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ScenarioArgs {
    #[arg(long, value_enum)]
    pub(crate) kind: Kind,
    /// What is played into the microphone (a WAV at 48 kHz).
    #[arg(long)]
    pub(crate) stimulus: PathBuf,
    /// Where the probe recording goes (mic and speaker kinds).
    #[arg(long)]
    pub(crate) record: PathBuf,
    /// We are alone in a fresh network namespace: bring loopback up.
    #[arg(long)]
    pub(crate) netns: bool,
    /// Seconds of CPU measurement (CPU kinds).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) window: f64,
    /// Seconds this scenario may take before it gives up.
    #[arg(long, default_value_t = 50.0)]
    pub(crate) deadline: f64,
    #[arg(long, default_value_t = 5)]
    pub(crate) seed: u64,
    /// The speaker engine's voice processing (mic-to-speaker kinds other than the noisy
    /// ones, which choose their own).
    #[arg(long, value_enum, default_value_t = Voice::Off)]
    pub(crate) voice: Voice,
}

/// What a mic-to-speaker scenario saw besides the recording.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PathResult {
    /// The speaker engine's voice processing.
    pub(crate) voice: Voice,
    /// Whether the audio crossed a network (no: the devices baseline).
    pub(crate) networked: bool,
    pub(crate) sent: Sent,
    /// What the listening engine (the same engine for the devices baseline) played.
    pub(crate) heard: Heard,
    /// Packets the impairment let through / dropped.
    pub(crate) impaired: (u64, u64),
}

/// What a CPU scenario measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct CpuResult {
    pub(crate) percent: f64,
    pub(crate) window_s: f64,
    /// The busiest threads of the client, as % of one core.
    pub(crate) threads: Vec<(String, f64)>,
    pub(crate) summary: ClientSummary,
}

/// What the device-floor scenario measured, as % of one core.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct FloorResult {
    /// `paplay` playing speech to the speaker.
    pub(crate) playing: f64,
    /// `parec` recording the microphone.
    pub(crate) recording: f64,
    /// The device buffer `paplay` asked for (ms): our playback's.
    pub(crate) play_buffer_ms: u32,
    /// The device buffer `parec` asked for (ms): our capture's.
    pub(crate) record_buffer_ms: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    Path(PathResult),
    Cpu(CpuResult),
    Floor(FloorResult),
}

pub(crate) fn run(args: ScenarioArgs) -> anyhow::Result<()> {
    if args.netns {
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .context("running ip (Debian package iproute2)")?;
        anyhow::ensure!(up.success(), "ip link set lo up failed");
    }
    // Before any thread: the clients (cpal) find the daemon through the environment.
    let daemon = PulseDaemon::start_probe();
    daemon.set_process_env();
    let impairment = match args.kind {
        Kind::Jitter => Some(Impairment {
            delay_mean: Duration::from_millis(40),
            delay_sd: Duration::from_millis(10),
            loss: 0.01,
        }),
        Kind::Loss => Some(Impairment {
            delay_mean: Duration::ZERO,
            delay_sd: Duration::ZERO,
            loss: Impairment::loss_per_hop(0.05),
        }),
        _ => None,
    };
    let impairer = match impairment {
        Some(path) => {
            anyhow::ensure!(
                args.netns,
                "an impaired scenario needs its own network namespace"
            );
            Some(start_impairer(path, args.seed)?)
        }
        None => None,
    };
    let runtime = crate::runtime()?;
    let deadline = Duration::from_secs_f64(args.deadline);
    let outcome = runtime.block_on(async {
        let work = async {
            match args.kind {
                Kind::Devices => devices_only(&daemon, &args).await.map(Outcome::Path),
                Kind::Clean | Kind::Jitter | Kind::Loss => {
                    mic_to_speaker(&daemon, &args, args.voice, impairer.as_ref())
                        .await
                        .map(Outcome::Path)
                }
                Kind::NoisySuppressed => mic_to_speaker(&daemon, &args, Voice::Suppress, None)
                    .await
                    .map(Outcome::Path),
                Kind::NoisyPlain => mic_to_speaker(&daemon, &args, Voice::NoSuppress, None)
                    .await
                    .map(Outcome::Path),
                Kind::CpuSpeaker => cpu_speaker(&daemon, &args, Speaker::Plain)
                    .await
                    .map(Outcome::Cpu),
                Kind::CpuSpeakerVoice => cpu_speaker(&daemon, &args, Speaker::Voice)
                    .await
                    .map(Outcome::Cpu),
                Kind::CpuIdle => cpu_speaker(&daemon, &args, Speaker::Idle)
                    .await
                    .map(Outcome::Cpu),
                Kind::CpuListener => cpu_listener(&daemon, &args).await.map(Outcome::Cpu),
                Kind::CpuFloor => cpu_floor(&daemon, &args).await.map(Outcome::Floor),
            }
        };
        tokio::time::timeout(deadline, work)
            .await
            .with_context(|| format!("the scenario took longer than {deadline:?}"))?
    });
    runtime.shutdown_timeout(Duration::from_secs(3));
    drop(impairer);
    let outcome = outcome?;
    println!("RESULT {}", serde_json::to_string(&outcome)?);
    drop(daemon);
    Ok(())
}

#[cfg(target_os = "linux")]
fn start_impairer(path: Impairment, seed: u64) -> anyhow::Result<crate::nfqueue::Impairer> {
    crate::nfqueue::Impairer::start(path, seed)
}

#[cfg(not(target_os = "linux"))]
fn start_impairer(_: Impairment, _: u64) -> anyhow::Result<NoImpairer> {
    bail!("the impaired network needs Linux (NFQUEUE)")
}

#[cfg(not(target_os = "linux"))]
pub(crate) struct NoImpairer;

#[cfg(not(target_os = "linux"))]
impl NoImpairer {
    fn arm(&self) {}
    fn counts(&self) -> (u64, u64) {
        (0, 0)
    }
}

#[cfg(target_os = "linux")]
type Impairer = crate::nfqueue::Impairer;
#[cfg(not(target_os = "linux"))]
type Impairer = NoImpairer;

/// The stimulus played into the microphone while the probe records both ends: a host whose
/// engine (running `voice`) speaks from the microphone, a listener whose engine plays on the
/// speaker, each wired as the app wires its one engine.
async fn mic_to_speaker(
    daemon: &PulseDaemon,
    args: &ScenarioArgs,
    voice: Voice,
    impairer: Option<&Impairer>,
) -> anyhow::Result<PathResult> {
    let server = TestServer::start().await?;
    let url = server.url();
    let mouth = clients::start_engine(voice)?;
    let config = ClientConfig::new(url.clone(), "mouth").with_engine(Arc::clone(&mouth));
    let (host, mut host_streams) = Client::connect(config).await?;
    let joined = host.create("mouth to ear").await?;
    clients::wait_connected(&mut host_streams).await?;
    let mic = host.mic().await?;
    // The listener sends nothing, so its voice processing never runs: the app's defaults.
    let ear = clients::start_engine(Voice::App)?;
    let config = ClientConfig::new(url.clone(), "ear").with_engine(Arc::clone(&ear));
    let (listener, mut streams) = Client::connect(config).await?;
    listener.join(&joined.space.id).await?;
    clients::wait_connected(&mut streams).await?;

    let speaking = Speaking::start(Arc::clone(&mouth), mic).await?;
    let listening = Listening::start(Arc::clone(&ear), true).await?;
    speaking.first_frame().await?;
    if let Some(i) = impairer {
        i.arm();
    }
    // The device streams take a second or two to settle; the jitter buffer learns the path.
    tokio::time::sleep(Duration::from_secs(2)).await;
    play_and_record(daemon, args).await?;

    let heard = listening.stop().await?;
    let sent = speaking.stop().await?;
    let _ = host.end().await;
    listener.close().await;
    host.close().await;
    server.handle.shutdown().await;
    Ok(PathResult {
        voice,
        networked: true,
        sent,
        heard,
        impaired: impairer.map_or((0, 0), Impairer::counts),
    })
}

/// Plays `stimulus` into the microphone while the probe records both ends; returns when the
/// recording is written.
async fn play_and_record(daemon: &PulseDaemon, args: &ScenarioArgs) -> anyhow::Result<()> {
    let recording = daemon.record_probe(&args.record);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stimulus_s = stimulus_seconds(&args.stimulus)?;
    let mut paplay = KillOnDrop(
        daemon
            .command("paplay")
            // paplay's own buffering does not matter (the probe records when the sound
            // reached the microphone); a small buffer would only let it underrun under load.
            .args(["-d", "micfeed"])
            .arg(&args.stimulus)
            .spawn()
            .context("running paplay")?,
    );
    let until = Instant::now() + Duration::from_secs_f64(stimulus_s + 10.0);
    while paplay.0.try_wait()?.is_none() {
        if Instant::now() > until {
            bail!("paplay did not finish");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The tail: the last sound is still on its way.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    tokio::task::spawn_blocking(move || recording.finish()).await?;
    Ok(())
}

/// The microphone straight into the speaker through one engine, no network: its send sink
/// hands each packet back to its own receive slot 0 (through a task, as the client's
/// forwarding does), so the audio crosses capture framing, voice processing, Opus, a jitter
/// buffer and the playout that the networked scenarios cross. What the whole system adds is
/// the rest.
async fn devices_only(daemon: &PulseDaemon, args: &ScenarioArgs) -> anyhow::Result<PathResult> {
    use confab_audio::{FRAME_SAMPLES, Outgoing};
    let engine = clients::start_engine(args.voice)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u16, u32, Vec<u8>)>();
    let (mut seq, mut timestamp) = (0u16, 0u32);
    engine.set_sink(Some(Box::new(move |frame| {
        // RTP as the client numbers it: a DTX pause advances the clock, not the sequence.
        if let Outgoing::Packet(p, _) = frame {
            let _ = tx.send((seq, timestamp, p.to_vec()));
            seq = seq.wrapping_add(1);
        }
        timestamp = timestamp.wrapping_add(FRAME_SAMPLES as u32);
    })));
    let forward = {
        let engine = Arc::clone(&engine);
        tokio::spawn(async move {
            while let Some((seq, ts, payload)) = rx.recv().await {
                engine.push_packet(0, seq, ts, &payload, Instant::now());
            }
        })
    };
    let (capture, ring) = tokio::task::spawn_blocking(|| confab_audio::Capture::start(None))
        .await?
        .context("opening the microphone")?;
    engine.set_capture(Some(ring));
    let listening = Listening::start(Arc::clone(&engine), true).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    play_and_record(daemon, args).await?;
    let heard = listening.stop().await?;
    // Dropping the sink closes the channel, which ends the forwarding task.
    engine.set_sink(None);
    engine.set_capture(None);
    let sent = Sent {
        frames: engine.stats().frames_sent,
        unsent: 0,
        capture_overruns: capture.overruns(),
    };
    tokio::task::spawn_blocking(move || drop(capture)).await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), forward).await;
    Ok(PathResult {
        voice: args.voice,
        networked: false,
        sent,
        heard,
        impaired: (0, 0),
    })
}

fn stimulus_seconds(path: &std::path::Path) -> anyhow::Result<f64> {
    let samples =
        confab_audio::read_wav(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(samples.len() as f64 / 48_000.0)
}

/// A client process under measurement, its stdout lines arriving on a channel.
struct Measured {
    child: KillOnDrop,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Measured {
    /// This program, run with `args` as a client process.
    fn spawn(daemon: &PulseDaemon, args: &[String]) -> anyhow::Result<Measured> {
        let exe = std::env::current_exe().context("finding this program")?;
        Self::spawn_program(daemon, exe.to_str().context("program path")?, args)
    }

    fn spawn_program(
        daemon: &PulseDaemon,
        program: &str,
        args: &[String],
    ) -> anyhow::Result<Measured> {
        let mut child = daemon
            .command(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the client process")?;
        let stdout = child.stdout.take().context("client stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Measured {
            child: KillOnDrop(child),
            lines,
        })
    }

    /// Waits (off the runtime) for a line starting with `prefix`; returns the rest.
    async fn line(&mut self, prefix: &str, within: Duration) -> anyhow::Result<String> {
        let until = Instant::now() + within;
        loop {
            match self.lines.try_recv() {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return Ok(rest.trim().to_owned());
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    if Instant::now() > until {
                        bail!("the client said no {prefix:?} within {within:?}");
                    }
                    if let Some(status) = self.child.0.try_wait()? {
                        bail!("the client exited ({status}) before {prefix:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    bail!("the client closed its output before {prefix:?}")
                }
            }
        }
    }

    /// CPU of the process over `window`, after `warmup`.
    async fn cpu(
        &self,
        warmup: Duration,
        window: Duration,
    ) -> anyhow::Result<(f64, Vec<(String, f64)>)> {
        tokio::time::sleep(warmup).await;
        let pid = self.child.0.id();
        let hz = cpu::ticks_per_second();
        let (p0, t0, w0) = (
            cpu::process_ticks(pid)?,
            cpu::thread_ticks(pid),
            Instant::now(),
        );
        tokio::time::sleep(window).await;
        let (p1, t1, wall) = (
            cpu::process_ticks(pid)?,
            cpu::thread_ticks(pid),
            w0.elapsed(),
        );
        let threads = cpu::threads_delta(&t0, &t1)
            .into_iter()
            .filter(|(_, t)| *t > 0)
            .map(|(name, t)| (name, cpu::percent_of_core(t, hz, wall)))
            .collect();
        Ok((cpu::percent_of_core(p1 - p0, hz, wall), threads))
    }
}

const WARMUP: Duration = Duration::from_secs(2);

/// Which speaker client process [`cpu_speaker`] measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Speaker {
    /// Connected, no microphone open.
    Idle,
    /// Speaking, no voice processing.
    Plain,
    /// Speaking through the app's voice processing.
    Voice,
}

/// A speaker client process speaking from the microphone (fed speech by paplay), or the same
/// client with no microphone open.
async fn cpu_speaker(
    daemon: &PulseDaemon,
    args: &ScenarioArgs,
    speaker: Speaker,
) -> anyhow::Result<CpuResult> {
    let server = TestServer::start().await?;
    let _feed = KillOnDrop(
        daemon
            .command("paplay")
            .args(["-d", "micfeed"])
            .arg(&args.stimulus)
            .spawn()
            .context("running paplay")?,
    );
    let seconds = args.window + WARMUP.as_secs_f64() + 1.0;
    let mut argv = vec![
        "client-speaker".to_owned(),
        "--server".into(),
        server.url(),
        "--seconds".into(),
        seconds.to_string(),
    ];
    match speaker {
        Speaker::Idle => argv.push("--idle".into()),
        Speaker::Plain => {}
        Speaker::Voice => argv.push("--with-voice-processing".into()),
    }
    let mut client = Measured::spawn(daemon, &argv)?;
    client.line("READY", Duration::from_secs(20)).await?;
    let (percent, threads) = client
        .cpu(WARMUP, Duration::from_secs_f64(args.window))
        .await?;
    let done = client.line("DONE", Duration::from_secs(15)).await?;
    server.handle.shutdown().await;
    Ok(CpuResult {
        percent,
        window_s: args.window,
        threads,
        summary: serde_json::from_str(&done)?,
    })
}

/// The device buffers our streams ask for (`confab_audio`'s preferred 480 frames for playback,
/// one 960-frame codec frame for capture).
const FLOOR_PLAY_MS: u32 = 10;
const FLOOR_RECORD_MS: u32 = 20;

/// PulseAudio's own clients, each asking for the same device buffer as our stream and
/// measured like a client over the same window, in the conditions of the CPU scenarios: what
/// any program pays on this machine to keep a stream that short fed. First `paplay` playing
/// speech to the speaker alone (as the listener does), then `parec` recording the microphone
/// while speech is played into it (as the speaker path does).
async fn cpu_floor(daemon: &PulseDaemon, args: &ScenarioArgs) -> anyhow::Result<FloorResult> {
    let stimulus = args.stimulus.to_str().context("stimulus path")?.to_owned();
    let window = Duration::from_secs_f64(args.window);
    let player = Measured::spawn_program(
        daemon,
        "paplay",
        &[
            format!("--latency-msec={FLOOR_PLAY_MS}"),
            "-d".into(),
            "speaker".into(),
            stimulus.clone(),
        ],
    )?;
    let (playing, _) = player.cpu(WARMUP, window).await?;
    drop(player);
    let _feed = KillOnDrop(
        daemon
            .command("paplay")
            .args(["-d", "micfeed", &stimulus])
            .spawn()
            .context("running paplay")?,
    );
    let recorder = Measured::spawn_program(
        daemon,
        "parec",
        &[
            format!("--latency-msec={FLOOR_RECORD_MS}"),
            "-d".into(),
            "vmic".into(),
            "/dev/null".into(),
        ],
    )?;
    let (recording, _) = recorder.cpu(WARMUP, window).await?;
    Ok(FloorResult {
        playing,
        recording,
        play_buffer_ms: FLOOR_PLAY_MS,
        record_buffer_ms: FLOOR_RECORD_MS,
    })
}

/// Signs up `handle` on the server and returns its token.
async fn account(url: &str, dir: &std::path::Path, handle: &str) -> anyhow::Result<String> {
    let key = DeviceKey::load_or_create("unused", &key_file(&dir.join(handle)))?;
    Ok(key
        .register(&reqwest::Client::new(), url, handle, handle)
        .await?
        .token)
}

/// Waits for a stage message matching `want`.
async fn stage_event(
    streams: &mut Streams,
    want: impl Fn(&ServerMsg) -> bool,
) -> anyhow::Result<()> {
    let wait = async {
        loop {
            match streams.events.recv().await {
                Some(Event::Stage(m)) if want(&m) => return Ok(()),
                Some(_) => {}
                None => bail!("connection closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .context("no such stage message within 10 s")?
}

/// Speaks speech-like audio into `mic` in real time until the sender is dropped.
fn speak_loop(mic: Mic, seed: u64) -> oneshot::Sender<()> {
    let (tx, mut rx) = oneshot::channel::<()>();
    let speech = speech_like(8.0, seed);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for frame in speech.chunks_exact(confab_audio::FRAME_SAMPLES).cycle() {
            tokio::select! {
                _ = &mut rx => return,
                _ = tick.tick() => {}
            }
            if mic.send(frame.to_vec()).await.is_err() {
                return;
            }
        }
    });
    tx
}

/// A listener client process hearing three speakers (a host and two approved hands).
async fn cpu_listener(daemon: &PulseDaemon, args: &ScenarioArgs) -> anyhow::Result<CpuResult> {
    let server = TestServer::start().await?;
    let url = server.url();
    let dir = tempfile::tempdir()?;
    let (host, mut host_s) = Client::connect(ClientConfig::new(url.clone(), "host")).await?;
    let space = host.create("three speakers").await?.space.id;
    clients::wait_connected(&mut host_s).await?;
    let mut talking = vec![speak_loop(host.mic().await?, 1)];
    let mut guests = Vec::new();
    for (i, handle) in ["ada", "bob"].into_iter().enumerate() {
        let token = account(&url, dir.path(), handle).await?;
        let (c, mut s) =
            Client::connect(ClientConfig::new(url.clone(), handle).with_token(token)).await?;
        c.join(&space).await?;
        clients::wait_connected(&mut s).await?;
        c.stage(ClientMsg::RaiseHand).await?;
        let id = c.id();
        stage_event(
            &mut host_s,
            |m| matches!(m, ServerMsg::HandQueue { hands } if hands.contains(&id)),
        )
        .await?;
        host.stage(ClientMsg::ApproveHand { participant: id })
            .await?;
        stage_event(&mut s, |m| matches!(m, ServerMsg::ParticipantUpdated { participant } if participant.id == id && participant.role == Role::Speaker)).await?;
        c.stage(ClientMsg::UnmuteSelf).await?;
        stage_event(&mut s, |m| matches!(m, ServerMsg::ParticipantUpdated { participant } if participant.id == id && !participant.muted)).await?;
        talking.push(speak_loop(c.mic().await?, 2 + i as u64));
        guests.push((c, s));
    }
    let seconds = args.window + WARMUP.as_secs_f64() + 1.0;
    let mut client = Measured::spawn(
        daemon,
        &[
            "client-listener".into(),
            "--server".into(),
            url.clone(),
            "--space".into(),
            space.as_str().to_owned(),
            "--seconds".into(),
            seconds.to_string(),
            "--expect-slots".into(),
            "3".into(),
        ],
    )?;
    client.line("READY", Duration::from_secs(25)).await?;
    let (percent, threads) = client
        .cpu(WARMUP, Duration::from_secs_f64(args.window))
        .await?;
    let done = client.line("DONE", Duration::from_secs(15)).await?;
    drop(talking);
    let _ = host.end().await;
    for (c, _) in guests {
        c.close().await;
    }
    host.close().await;
    server.handle.shutdown().await;
    Ok(CpuResult {
        percent,
        window_s: args.window,
        threads,
        summary: serde_json::from_str(&done)?,
    })
}
