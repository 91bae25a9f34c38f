//! `confab-bench audio`: the audio engine's figures of issue 5 in one bounded run.
//!
//! Each measurement runs as a child process ([`crate::scenario`]) in a fresh network namespace
//! (`unshare --net`) with its own PulseAudio, server and clients; this process prepares the
//! stimuli, measures the codec-alone baselines, starts the children one after another with a
//! deadline each (killing the child's whole process group if it overruns), analyses their
//! recordings and prints every figure against its target.

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use confab_audio::{
    Encoded, Encoder, EncoderConfig, FRAME_SAMPLES, MAX_PACKET_BYTES, StreamDecoder, VoiceConfig,
    VoiceProcessor,
};
use confab_tests::bench::chirp::{self, ChirpTrain};
use confab_tests::bench::impair::Impairment;
use confab_tests::bench::pesq;
use confab_tests::bench::report::{Goal, p50_p95, target_line};
use confab_tests::pulse::split_stereo;
use confab_tests::signal::{RATE, pink_noise, rms, speech_like, write_wav};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

use crate::clients::Voice;
use crate::scenario::{CpuResult, Kind, Outcome, PathResult};

#[derive(clap::Args, Debug)]
pub(crate) struct AudioArgs {
    /// Chirps per latency condition (one every 300 ms).
    #[arg(long, default_value_t = 50)]
    chirps: usize,
    /// Seconds of CPU measurement per client process.
    #[arg(long, default_value_t = 10.0)]
    cpu_seconds: f64,
    /// A Python that can import `pesq` and `numpy` (scripts/bench-audio.sh makes one).
    #[arg(long, env = "CONFAB_PESQ_PYTHON", default_value = "python3")]
    python: String,
    /// Run the speaker's engine in the latency and PESQ scenarios with the app's voice
    /// processing (high-pass, echo cancellation, noise suppression, gain control) instead of
    /// none. The CPU of the speaker path with it, and noisy speech with suppression on and
    /// off, are measured either way.
    #[arg(long)]
    with_voice_processing: bool,
    /// Keep stimuli, recordings and the children's logs in this directory.
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// Spacing of the chirps: longer than any delay we expect, so each is found unambiguously.
const CHIRP_SPACING: usize = RATE * 3 / 10;
/// The whole run's bound: a scenario that would overrun it is cut short or skipped.
const BUDGET: Duration = Duration::from_secs(280);
/// How long a scenario past its deadline has to finish before its process group is killed.
const GRACE: Duration = Duration::from_secs(4);
/// What the analysis after the last scenario needs.
const ANALYSIS: Duration = Duration::from_secs(6);

/// How late a chirp may be and still be found.
const MAX_DELAY: usize = RATE / 2;
/// A chirp counts as found at this normalised cross-correlation.
const MIN_NCC: f64 = 0.5;

/// Noisy speech: how long the noise plays alone first (noise suppression learns it, as it
/// would a fan running before anyone speaks), and how far it sits below the speech.
const NOISE_LEAD: usize = 2 * RATE;
const NOISY_SNR_DB: f64 = 5.0;
/// A half second of noisy speech is found in what the speaker played at this NCC (the noise
/// left in by a path without suppression keeps it below the clean path's 0.8).
const NOISY_MIN_NCC: f64 = 0.5;

const SPEECH_TEXT: &str = "The quick brown fox jumps over the lazy dog. \
    A live audio space lets a host speak with friends while listeners tune in. \
    Raise your hand if you would like to join the conversation on stage.";

pub(crate) fn run(args: AudioArgs) -> anyhow::Result<()> {
    anyhow::ensure!((5..=200).contains(&args.chirps), "--chirps must be 5..200");
    anyhow::ensure!(
        (2.0..=30.0).contains(&args.cpu_seconds),
        "--cpu-seconds must be 2..30"
    );
    let started = Instant::now();
    let tmp = tempfile::Builder::new().prefix("confab-bench-").tempdir()?;
    let work = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    for tool in ["pulseaudio", "paplay", "parec", "pactl"] {
        anyhow::ensure!(
            Command::new(tool).arg("--version").output().is_ok(),
            "`{tool}` not found: install the Debian packages pulseaudio pulseaudio-utils \
             (scripts/deps.sh test does)"
        );
    }

    // Stimuli.
    let (speech, speech_source) = speech(&work);
    let train = chirp::chirp_train(args.chirps, CHIRP_SPACING, RATE / 5);
    let gap = vec![0f32; RATE / 2];
    let clean: Vec<f32> = [&train.samples[..], &gap, &speech, &gap].concat();
    let loss: Vec<f32> = [&gap[..], &speech, &gap].concat();
    let repeats = ((args.cpu_seconds + 15.0) * RATE as f64 / speech.len() as f64).ceil() as usize;
    let cpu_feed: Vec<f32> = speech.repeat(repeats.max(1));
    let stimulus = |name: &str, x: &[f32]| -> anyhow::Result<PathBuf> {
        let p = work.join(name);
        write_wav(&p, x)?;
        Ok(p)
    };
    let clean_wav = stimulus("clean.wav", &clean)?;
    let jitter_wav = stimulus("jitter.wav", &train.samples)?;
    let loss_wav = stimulus("loss.wav", &loss)?;
    let cpu_wav = stimulus("cpu-speech.wav", &cpu_feed)?;
    let (noisy, noise_rms) = noisy_speech(&speech, NOISY_SNR_DB);
    let noisy_wav = stimulus("noisy.wav", &noisy)?;

    // Baselines: the codec alone, on the same signals.
    let codec_delay = codec_alone_delays(&train)?;
    let python = pesq::check_python(&args.python).map(|()| args.python.clone());
    let codec_pesq_0 = pesq_of(&python, &speech, &codec_alone(&speech, 0.0, 1)?, &work);
    let codec_pesq_5 = pesq_of(&python, &speech, &codec_alone(&speech, 0.05, 1)?, &work);
    let suppression_sweep = suppression_by_snr(&python, &speech, &work)?;

    // The system.
    let netns = netns_available();
    let impair_blocker = match &netns {
        Err(why) => Some(why.clone()),
        Ok(()) if Command::new("iptables").arg("--version").output().is_err() => Some(
            "iptables not found (Debian package iptables; scripts/bench-audio.sh installs it)"
                .to_owned(),
        ),
        Ok(()) => None,
    };
    let runner = Runner {
        work: work.clone(),
        netns: netns.is_ok(),
        window: args.cpu_seconds,
        voice: match args.with_voice_processing {
            true => Voice::App,
            false => Voice::Off,
        },
        end: started + BUDGET,
    };
    let devices_run = runner.scenario(
        Kind::Devices,
        &jitter_wav,
        20.0 + train.samples.len() as f64 / RATE as f64,
    );
    let clean_run = runner.scenario(
        Kind::Clean,
        &clean_wav,
        20.0 + clean.len() as f64 / RATE as f64,
    );
    let jitter_run = match &impair_blocker {
        None => runner.scenario(
            Kind::Jitter,
            &jitter_wav,
            20.0 + train.samples.len() as f64 / RATE as f64,
        ),
        Some(why) => Err(why.clone()),
    };
    let loss_run = match &impair_blocker {
        None => runner.scenario(
            Kind::Loss,
            &loss_wav,
            20.0 + loss.len() as f64 / RATE as f64,
        ),
        Some(why) => Err(why.clone()),
    };
    let noisy_deadline = 20.0 + noisy.len() as f64 / RATE as f64;
    let noisy_on = runner.scenario(Kind::NoisySuppressed, &noisy_wav, noisy_deadline);
    let noisy_off = runner.scenario(Kind::NoisyPlain, &noisy_wav, noisy_deadline);
    let cpu_idle = runner.scenario(Kind::CpuIdle, &cpu_wav, 25.0 + args.cpu_seconds);
    let cpu_speaker = runner.scenario(Kind::CpuSpeaker, &cpu_wav, 25.0 + args.cpu_seconds);
    let cpu_speaker_voice =
        runner.scenario(Kind::CpuSpeakerVoice, &cpu_wav, 25.0 + args.cpu_seconds);
    let cpu_listener = runner.scenario(Kind::CpuListener, &cpu_wav, 35.0 + args.cpu_seconds);
    let cpu_floor = runner.scenario(Kind::CpuFloor, &cpu_wav, 20.0 + 2.0 * args.cpu_seconds);

    // Analysis.
    let clean_rec = clean_run
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|_| read_probe(&runner.record(Kind::Clean)));
    let clean_delays = clean_rec
        .as_ref()
        .map(|(m, e)| chirp::delays(&train, m, e, MAX_DELAY, MIN_NCC))
        .map_err(Clone::clone);
    let devices_delays = devices_run
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|_| read_probe(&runner.record(Kind::Devices)))
        .map(|(m, e)| chirp::delays(&train, &m, &e, MAX_DELAY, MIN_NCC));
    let jitter_delays = jitter_run
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|_| read_probe(&runner.record(Kind::Jitter)))
        .map(|(m, e)| chirp::delays(&train, &m, &e, MAX_DELAY, MIN_NCC));
    let (system_pesq_0, track_0) = match &clean_rec {
        Ok((mouth, ear)) => {
            // The speech follows the chirps: look for it after them.
            let from = ear.len().min(train.samples.len());
            system_pesq(&python, &speech, &mouth[from..], &ear[from..], &work)
        }
        Err(e) => (Err(e.clone()), None),
    };
    let loss_rec = loss_run
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|_| read_probe(&runner.record(Kind::Loss)));
    let (system_pesq_5, track_5) = match &loss_rec {
        Ok((mouth, ear)) => system_pesq(&python, &speech, mouth, ear, &work),
        Err(e) => (Err(e.clone()), None),
    };
    let noisy_score = |run: &Result<Outcome, String>, kind| match run
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|_| read_probe(&runner.record(kind)))
    {
        Ok((mouth, ear)) => noisy_pesq(&python, &speech, &noisy, &mouth, &ear, &work),
        Err(e) => (Err(e), None),
    };
    let (noisy_pesq_on, track_on) = noisy_score(&noisy_on, Kind::NoisySuppressed);
    let (noisy_pesq_off, track_off) = noisy_score(&noisy_off, Kind::NoisyPlain);
    let suppression_gain = match (&noisy_pesq_on, &noisy_pesq_off) {
        (Ok(on), Ok(off)) => Ok(on - off),
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    };

    // Report.
    let p95 = |d: &Result<chirp::Delays, String>| -> Result<f64, String> {
        let d = d.as_ref().map_err(Clone::clone)?;
        if d.ms.len() < args.chirps / 2 {
            return Err(format!(
                "only {} of {} chirps found",
                d.ms.len(),
                args.chirps
            ));
        }
        Ok(p50_p95(&d.ms).1)
    };
    let cpu = |r: &Result<Outcome, String>| -> Result<f64, String> {
        match r {
            Ok(Outcome::Cpu(c)) => Ok(c.percent),
            Ok(_) => Err("wrong outcome".into()),
            Err(e) => Err(e.clone()),
        }
    };
    println!(
        "confab-bench audio ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    println!("  speech for PESQ: {speech_source}");
    println!(
        "  device streams: {} ({} = cpal | pulse)",
        match confab_audio::system_backend_name() {
            "pulse" => "libpulse",
            _ => "cpal",
        },
        confab_audio::BACKEND_ENV
    );
    println!(
        "  impairment: {}",
        match &impair_blocker {
            None => "NFQUEUE in the run's own network namespace (`tc ... netem` is not \
                     available: this kernel is built without CONFIG_NET_SCH_NETEM); every \
                     UDP packet on lo, so each of the two hops, as netem on lo would"
                .to_owned(),
            Some(why) => format!("not measured: {why}"),
        }
    );
    println!(
        "  speaker's voice processing in the latency and PESQ runs: {}",
        match args.with_voice_processing {
            true => "the app's defaults (high-pass, echo cancellation, noise suppression, AGC)",
            false => "off (the transport alone; --with-voice-processing turns the app's on)",
        }
    );
    println!();
    println!(
        "mouth-to-ear latency: virtual mic -> cpal capture -> speaker's audio engine (framing,"
    );
    println!("  voice processing, Opus) -> client -> server -> client -> listener's audio engine");
    println!("  (jitter buffer, mix, speaker ring) -> cpal playback -> virtual speaker, chirps");
    println!(
        "  every {} ms found on one recording of both ends",
        CHIRP_SPACING * 1000 / RATE
    );
    print_delays("codec alone (baseline)", &Ok(codec_delay), None);
    print_delays(
        "devices + codec, no network (baseline)",
        &devices_delays,
        path_result(&devices_run),
    );
    print_delays("clean loopback", &clean_delays, path_result(&clean_run));
    print_delays(
        "impaired: 40 +- 10 ms, 1 % loss, per hop",
        &jitter_delays,
        path_result(&jitter_run),
    );
    println!();
    println!(
        "client CPU, % of one core (the client process alone, over {} s):",
        args.cpu_seconds
    );
    print_cpu(
        "connected host, no microphone (baseline: the connection alone)",
        &cpu_idle,
    );
    print_cpu(
        "speaker path: mic -> engine (no voice processing, encode) -> send",
        &cpu_speaker,
    );
    print_cpu(
        "speaker path, the app's voice processing (high-pass, AEC, NS, AGC)",
        &cpu_speaker_voice,
    );
    print_cpu(
        "listener of 3 speakers: receive -> engine (3 jitter buffers, mix) -> play",
        &cpu_listener,
    );
    let floor = match &cpu_floor {
        Ok(Outcome::Floor(f)) => Ok(f),
        Ok(_) => Err("wrong outcome".to_owned()),
        Err(e) => Err(e.clone()),
    };
    match &floor {
        Ok(f) => {
            println!(
                "  device floor (baseline): PulseAudio's own clients at the device buffers ours ask \
                 for"
            );
            println!(
                "    paplay playing ({} ms) {:.2} %, parec recording ({} ms) {:.2} %: what any \
                 program pays here to keep such streams fed",
                f.play_buffer_ms, f.playing, f.record_buffer_ms, f.recording
            );
        }
        Err(e) => println!("  device floor (baseline): not measured: {e}"),
    }
    println!();
    println!("PESQ wideband MOS-LQO (P.862.2), speech aligned, 48 -> 16 kHz with rubato:");
    let show = |name: &str, v: &Result<f64, String>| match v {
        Ok(v) => println!("  {name:<44} {v:.2}"),
        Err(e) => println!("  {name:<44} not measured: {e}"),
    };
    show("codec alone, 0 % loss (baseline)", &codec_pesq_0);
    show("through the system, clean", &system_pesq_0);
    if let Some(t) = &track_0 {
        println!("    {t}");
    }
    show("codec alone, 5 % loss, FEC + PLC (baseline)", &codec_pesq_5);
    show(
        &format!(
            "through the system, 5 % loss ({:.2} % per hop)",
            Impairment::loss_per_hop(0.05) * 100.0
        ),
        &system_pesq_5,
    );
    if let Some(t) = &track_5 {
        println!("    {t}");
    }
    if let Ok(Outcome::Path(p)) = &loss_run {
        println!(
            "    packets through the impairment {}, dropped {} ({:.1} %)",
            p.impaired.0,
            p.impaired.1,
            p.impaired.1 as f64 * 100.0 / (p.impaired.0 + p.impaired.1).max(1) as f64
        );
        println!("    listener jitter buffer: {}", p.heard.jitter_line());
    }
    println!(
        "  noisy speech: pink noise (a fan) {NOISY_SNR_DB:.0} dB below the active speech level \
         (noise RMS {:.3}), alone for the first {} s; clean loopback; the speaker's engine with",
        noise_rms,
        NOISE_LEAD / RATE
    );
    println!("  high-pass + AGC, no echo cancellation; scored against the CLEAN speech");
    show("noisy speech, noise suppression on", &noisy_pesq_on);
    if let Some(t) = &track_on {
        println!("    {t}");
    }
    show("noisy speech, noise suppression off", &noisy_pesq_off);
    if let Some(t) = &track_off {
        println!("    {t}");
    }
    println!(
        "  noise suppression alone (the same voice processor, no codec or network) on the same \
         speech in the same noise,"
    );
    println!("  by how far the noise sits below the speech: MOS off -> on (gain)");
    for (snr, off, on) in &suppression_sweep {
        match (off, on) {
            (Ok(off), Ok(on)) => println!(
                "    {snr:>4.0} dB SNR   {off:.2} -> {on:.2}   ({:+.2})",
                on - off
            ),
            (Err(e), _) | (_, Err(e)) => println!("    {snr:>4.0} dB SNR   not measured: {e}"),
        }
    }
    println!();
    println!("against the targets of issue 5:");
    let lines = [
        target_line(
            "mouth-to-ear p95, clean",
            p95(&clean_delays),
            60.0,
            Goal::AtMost,
            "ms",
        ),
        target_line(
            "mouth-to-ear p95, impaired",
            p95(&jitter_delays),
            150.0,
            Goal::AtMost,
            "ms",
        ),
        target_line(
            "PESQ, clean",
            system_pesq_0.clone(),
            4.0,
            Goal::AtLeast,
            "MOS",
        ),
        target_line(
            "PESQ, 5 % loss",
            system_pesq_5.clone(),
            3.5,
            Goal::AtLeast,
            "MOS",
        ),
        target_line(
            "CPU, listener of 3 speakers",
            cpu(&cpu_listener),
            1.5,
            Goal::AtMost,
            "%",
        ),
        target_line(
            "CPU, speaker path",
            cpu(&cpu_speaker),
            3.5,
            Goal::AtMost,
            "%",
        ),
        target_line(
            "CPU, speaker path with noise suppression",
            cpu(&cpu_speaker_voice),
            3.5,
            Goal::AtMost,
            "%",
        ),
        target_line(
            "PESQ gain from noise suppression, noisy",
            suppression_gain,
            0.5,
            Goal::AtLeast,
            "MOS",
        ),
    ];
    for l in lines {
        println!("  {l}");
    }
    if let Ok(f) = &floor {
        let times = |v: Result<f64, String>, base: f64| {
            v.map_or("-".to_owned(), |v| format!("{:.1}x", v / base))
        };
        println!(
            "    (CPU against the device floor: listener {} of playing's {:.2} %, speaker path {} \
             and with noise suppression {} of recording's {:.2} %)",
            times(cpu(&cpu_listener), f.playing),
            f.playing,
            times(cpu(&cpu_speaker), f.recording),
            times(cpu(&cpu_speaker_voice), f.recording),
            f.recording
        );
    }
    let mos = |v: &Result<f64, String>| v.as_ref().map_or("-".to_owned(), |v| format!("{v:.2}"));
    println!(
        "    (noisy speech at {NOISY_SNR_DB:.0} dB SNR: suppression on {} MOS, off {} MOS)",
        mos(&noisy_pesq_on),
        mos(&noisy_pesq_off)
    );
    if let Some(dir) = &args.keep {
        println!("stimuli, recordings and logs kept in {}", dir.display());
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The speech for PESQ: espeak-ng's if it is installed, else the synthetic speech-like signal.
fn speech(work: &Path) -> (Vec<f32>, String) {
    let raw = work.join("espeak.wav");
    let spoken = Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&raw)
        .arg(SPEECH_TEXT)
        .output();
    match spoken {
        Ok(o) if o.status.success() => match confab_audio::read_wav(&raw) {
            // espeak-ng writes 22.05 kHz; read_wav resamples to 48 kHz (rubato).
            Ok(s) => {
                let peak = s.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
                let s: Vec<f32> = s.iter().map(|x| x * 0.5 / peak).collect();
                let secs = s.len() as f64 / RATE as f64;
                return (
                    s,
                    format!("real synthesized speech, espeak-ng ({secs:.1} s, 48 kHz)"),
                );
            }
            Err(e) => eprintln!("reading espeak-ng's output: {e}"),
        },
        Ok(o) => eprintln!("espeak-ng failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("espeak-ng not found ({e}); install the Debian package espeak-ng"),
    }
    (
        speech_like(8.0, 7),
        "SYNTHETIC speech-like signal (espeak-ng missing): a poor PESQ input, figures are \
         indicative only"
            .to_owned(),
    )
}

/// The chirp train through Opus alone: its algorithmic delay with the same detector.
fn codec_alone_delays(train: &ChirpTrain) -> anyhow::Result<chirp::Delays> {
    let decoded = codec_alone(&train.samples, 0.0, 1)?;
    Ok(chirp::delays(
        train,
        &train.samples,
        &decoded,
        MAX_DELAY,
        MIN_NCC,
    ))
}

/// `pcm` through Opus as the client sends it (FEC, DTX), each packet lost with probability
/// `loss` (seeded), decoded as a received stream is (FEC, PLC, comfort noise).
fn codec_alone(pcm: &[f32], loss: f64, seed: u64) -> anyhow::Result<Vec<f32>> {
    let mut enc = Encoder::new(&EncoderConfig::default())?;
    let mut dec = StreamDecoder::new()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut packet = vec![0u8; MAX_PACKET_BYTES];
    let mut out = Vec::with_capacity(pcm.len());
    let mut seq = 0u16;
    for (i, chunk) in pcm.chunks(FRAME_SAMPLES).enumerate() {
        let mut frame = chunk.to_vec();
        frame.resize(FRAME_SAMPLES, 0.0);
        if let Encoded::Packet(n) = enc.encode(&frame, &mut packet)? {
            seq = seq.wrapping_add(1);
            if rng.random::<f64>() >= loss {
                dec.push(seq, (i * FRAME_SAMPLES) as u32, &packet[..n], &mut out)?;
            }
        }
    }
    Ok(out)
}

/// A PESQ score, or why there is none.
type Mos = Result<f64, String>;

/// The SNRs of the suppression sweep: a fan beside the microphone (0-5 dB) to a quiet room
/// (20 dB).
const SWEEP_SNR_DB: [f64; 5] = [0.0, 5.0, 10.0, 15.0, 20.0];

/// PESQ of `speech` in pink noise at each of [`SWEEP_SNR_DB`] after the speaker's voice
/// processor as the noisy scenarios run it (high-pass and AGC, no echo cancellation), with
/// noise suppression off and on: the suppressor's own gain, and how it depends on the noise.
fn suppression_by_snr(
    python: &Result<String, String>,
    speech: &[f32],
    work: &Path,
) -> anyhow::Result<Vec<(f64, Mos, Mos)>> {
    let process = |noisy: &[f32], noise_suppression: bool| -> anyhow::Result<Vec<f32>> {
        let mut vp = VoiceProcessor::new(VoiceConfig {
            high_pass: true,
            echo_cancel: false,
            noise_suppression,
            agc: true,
        });
        let mut out = vec![0f32; noisy.len() / FRAME_SAMPLES * FRAME_SAMPLES];
        for (i, o) in noisy
            .chunks_exact(FRAME_SAMPLES)
            .zip(out.chunks_exact_mut(FRAME_SAMPLES))
        {
            vp.process(i, o)?;
        }
        Ok(out)
    };
    SWEEP_SNR_DB
        .iter()
        .map(|&snr| {
            let (noisy, _) = noisy_speech(speech, snr);
            let off = pesq_of(python, speech, &process(&noisy, false)?, work);
            let on = pesq_of(python, speech, &process(&noisy, true)?, work);
            Ok((snr, off, on))
        })
        .collect()
}

/// PESQ of `recording` (48 kHz, containing `reference` somewhere) against `reference`.
fn pesq_of(
    python: &Result<String, String>,
    reference: &[f32],
    recording: &[f32],
    work: &Path,
) -> Result<f64, String> {
    let python = python.as_ref().map_err(Clone::clone)?;
    let (degraded, a) = pesq::cut_aligned(reference, recording)
        .ok_or_else(|| "the speech was not found in the recording".to_owned())?;
    if a.ncc < 0.2 {
        return Err(format!("the speech was not found (best NCC {:.2})", a.ncc));
    }
    let r = pesq::to_16k(reference).map_err(|e| format!("{e:#}"))?;
    let d = pesq::to_16k(&degraded).map_err(|e| format!("{e:#}"))?;
    pesq::score(python, &r, &d, work).map_err(|e| format!("{e:#}"))
}

/// PESQ through the system: the reference is what the microphone heard (the speech as it
/// reached the virtual mic), the degraded signal what the speaker played, cut around the
/// moving delay. Also says how far the delay moved, which PESQ punishes.
fn system_pesq(
    python: &Result<String, String>,
    speech: &[f32],
    mouth: &[f32],
    ear: &[f32],
    work: &Path,
) -> (Result<f64, String>, Option<String>) {
    let Some((heard, a)) = pesq::cut_aligned(speech, mouth).filter(|(_, a)| a.ncc >= 0.5) else {
        return (
            Err("the speech was not found at the microphone".into()),
            None,
        );
    };
    // The mouth and the ear are on one clock: the ear from where the speech reached the mic.
    let ear = ear
        .get(usize::try_from(a.lag).unwrap_or(0)..)
        .unwrap_or(&[]);
    tracked_pesq(python, &heard, ear, 0.8, work)
}

/// PESQ of noisy speech through the system against the clean speech: the noisy stimulus is
/// found at the microphone (where it is loud and whole), the speech starts [`NOISE_LEAD`]
/// into it, and what the speaker played from there is scored against `speech`.
fn noisy_pesq(
    python: &Result<String, String>,
    speech: &[f32],
    noisy: &[f32],
    mouth: &[f32],
    ear: &[f32],
    work: &Path,
) -> (Result<f64, String>, Option<String>) {
    let Some((_, a)) = pesq::cut_aligned(noisy, mouth).filter(|(_, a)| a.ncc >= 0.5) else {
        return (
            Err("the noisy speech was not found at the microphone".into()),
            None,
        );
    };
    let from = usize::try_from(a.lag).unwrap_or(0) + NOISE_LEAD;
    let ear = ear.get(from..).unwrap_or(&[]);
    tracked_pesq(python, speech, ear, NOISY_MIN_NCC, work)
}

/// PESQ of `ear` (starting where `reference` reached the microphone) against `reference`,
/// cut around the delay as it moves along the speech (half-seconds matching at `min_ncc` or
/// better), with a summary of that delay.
fn tracked_pesq(
    python: &Result<String, String>,
    reference: &[f32],
    ear: &[f32],
    min_ncc: f64,
    work: &Path,
) -> (Result<f64, String>, Option<String>) {
    let track = pesq::delay_track(reference, ear, RATE);
    let ms: Vec<f64> = track.iter().map(|&(_, ms, _)| ms).collect();
    let poor = track.iter().filter(|&&(_, _, ncc)| ncc < min_ncc).count();
    let summary = (!ms.is_empty()).then(|| {
        let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!(
            "delay {min:.0} to {max:.0} ms along the speech ({} half-seconds, {poor} matching \
             below NCC {min_ncc})",
            track.len()
        )
    });
    let Some((reference, degraded)) = pesq::cut_tracked(reference, ear, &track, min_ncc) else {
        return (
            Err("the speech was not found in what the speaker played".into()),
            summary,
        );
    };
    let score = python.as_ref().map_err(Clone::clone).and_then(|python| {
        let r = pesq::to_16k(&reference).map_err(|e| format!("{e:#}"))?;
        let d = pesq::to_16k(&degraded).map_err(|e| format!("{e:#}"))?;
        pesq::score(python, &r, &d, work).map_err(|e| format!("{e:#}"))
    });
    (score, summary)
}

/// `speech` in stationary pink noise (a fan, what noise suppression is for) `snr_db` below the
/// speech's active level (RMS over its 20 ms frames within 30 dB of the loudest), the noise
/// playing alone for [`NOISE_LEAD`] first and half a second after. Returns the signal and the
/// noise's RMS.
fn noisy_speech(speech: &[f32], snr_db: f64) -> (Vec<f32>, f64) {
    let frames: Vec<f64> = speech.chunks(FRAME_SAMPLES).map(rms).collect();
    let loudest = frames.iter().copied().fold(0.0, f64::max);
    let active: Vec<f64> = frames
        .into_iter()
        .filter(|&r| r > loudest * 10f64.powf(-30.0 / 20.0))
        .collect();
    let level = (active.iter().map(|r| r * r).sum::<f64>() / active.len().max(1) as f64).sqrt();
    let noise_rms = level * 10f64.powf(-snr_db / 20.0);
    let tail = RATE / 2;
    let len = NOISE_LEAD + speech.len() + tail;
    let noise = pink_noise(len as f64 / RATE as f64 + 0.1, noise_rms, 11);
    let out = (0..len)
        .map(|i| {
            let s = i
                .checked_sub(NOISE_LEAD)
                .and_then(|j| speech.get(j))
                .copied()
                .unwrap_or(0.0);
            (s + noise.get(i).copied().unwrap_or(0.0)).clamp(-1.0, 1.0)
        })
        .collect();
    (out, noise_rms)
}

/// Whether we can make network namespaces (root and `unshare`).
fn netns_available() -> Result<(), String> {
    match Command::new("unshare").args(["--net", "true"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "cannot make a network namespace (`unshare --net` needs root): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("`unshare` not found (util-linux): {e}")),
    }
}

/// Reads a probe recording: (what the mic heard, what the speaker played).
fn read_probe(path: &Path) -> Result<(Vec<f32>, Vec<f32>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(split_stereo(&bytes))
}

fn path_result(r: &Result<Outcome, String>) -> Option<&PathResult> {
    match r {
        Ok(Outcome::Path(p)) => Some(p),
        _ => None,
    }
}

fn print_delays(name: &str, d: &Result<chirp::Delays, String>, detail: Option<&PathResult>) {
    match d {
        Ok(d) => {
            let (p50, p95) = p50_p95(&d.ms);
            let max = d.ms.iter().copied().fold(f64::NAN, f64::max);
            println!(
                "  {name:<42} p50 {p50:6.1} ms  p95 {p95:6.1} ms  max {max:6.1} ms  ({} found, {} missed, {} unheard)",
                d.ms.len(),
                d.missed,
                d.unheard
            );
        }
        Err(e) => println!("  {name:<42} not measured: {e}"),
    }
    let Some(p) = detail else {
        return;
    };
    let h = &p.heard;
    let ring = h
        .speaker_ring_ms
        .map_or("not sampled".to_owned(), |(a, b)| {
            format!("{a:.1}/{b:.1} ms")
        });
    let playout = match h.slots.first() {
        Some(s) => format!(
            "jitter buffer playout delay {:.0} ms (target {:.0})",
            s.playout_ms, s.target_ms
        ),
        None => "no jitter buffer played".to_owned(),
    };
    println!(
        "    where it goes: {playout}; speaker ring after each top-up p50/p95 {ring}; \
         voice processing {}; the rest is capture framing (20 ms), Opus, device buffers{}",
        match p.voice {
            Voice::Off => "off",
            _ => "on (10 ms)",
        },
        if p.networked { " and the network" } else { "" }
    );
    println!(
        "    frames sent {} (refused by the connection {}), mixed {} (limited {}); capture \
         overruns {}, playback underruns {}, packets dropped into the engine {}",
        p.sent.frames,
        p.sent.unsent,
        h.frames_mixed,
        h.frames_limited,
        p.sent.capture_overruns,
        h.playback_underruns,
        h.packets_dropped
    );
    if p.impaired != (0, 0) {
        println!(
            "    impairment: {} packets passed, {} dropped",
            p.impaired.0, p.impaired.1
        );
    }
    println!("    jitter buffer: {}", h.jitter_line());
}

fn print_cpu(name: &str, r: &Result<Outcome, String>) {
    match r {
        Ok(Outcome::Cpu(CpuResult {
            percent,
            threads,
            summary,
            ..
        })) => {
            println!("  {name:<78} {percent:5.2} %");
            let top: Vec<String> = threads
                .iter()
                .take(6)
                .map(|(n, p)| format!("{n} {p:.2}"))
                .collect();
            if top.is_empty() {
                println!("    no thread used a clock tick");
            } else {
                println!("    busiest threads (%): {}", top.join(", "));
            }
            if let Some(h) = &summary.heard {
                let decoded: Vec<u64> = h.slots.iter().map(|s| s.decoded).collect();
                println!(
                    "    frames decoded per slot {decoded:?}, mixed {} (limited {}), playback \
                     underruns {}, packets dropped into the engine {}",
                    h.frames_mixed, h.frames_limited, h.playback_underruns, h.packets_dropped
                );
            }
            if let Some(s) = &summary.sent {
                println!(
                    "    frames sent {} (refused by the connection {}), capture overruns {}",
                    s.frames, s.unsent, s.capture_overruns
                );
            }
        }
        Ok(_) => println!("  {name:<78} not measured: wrong outcome"),
        Err(e) => println!("  {name:<78} not measured: {e}"),
    }
}

/// Starts scenarios as child processes and collects their results.
struct Runner {
    work: PathBuf,
    netns: bool,
    window: f64,
    /// The speaker engine's voice processing in the latency and PESQ scenarios.
    voice: Voice,
    /// When the run's budget ends.
    end: Instant,
}

impl Runner {
    fn name(kind: Kind) -> &'static str {
        match kind {
            Kind::Devices => "devices",
            Kind::Clean => "clean",
            Kind::Jitter => "jitter",
            Kind::Loss => "loss",
            Kind::NoisySuppressed => "noisy-suppressed",
            Kind::NoisyPlain => "noisy-plain",
            Kind::CpuSpeaker => "cpu-speaker",
            Kind::CpuSpeakerVoice => "cpu-speaker-voice",
            Kind::CpuIdle => "cpu-idle",
            Kind::CpuListener => "cpu-listener",
            Kind::CpuFloor => "cpu-floor",
        }
    }

    fn record(&self, kind: Kind) -> PathBuf {
        self.work.join(format!("{}-probe.f32", Self::name(kind)))
    }

    /// Runs one scenario with `deadline` seconds (less if the run's budget has less left); a
    /// child still running [`GRACE`] after that is killed with everything it started (its
    /// process group).
    fn scenario(&self, kind: Kind, stimulus: &Path, deadline: f64) -> Result<Outcome, String> {
        let name = Self::name(kind);
        let left = self
            .end
            .saturating_duration_since(Instant::now())
            .saturating_sub(GRACE + ANALYSIS)
            .as_secs_f64();
        if left < deadline * 0.6 {
            return Err(format!(
                "{name}: skipped, the run's {} s budget is spent",
                BUDGET.as_secs()
            ));
        }
        let deadline = deadline.min(left);
        eprintln!("== {name} (at most {deadline:.0} s)");
        self.try_scenario(kind, stimulus, deadline)
            .map_err(|e| format!("{name}: {e:#}"))
    }

    fn try_scenario(&self, kind: Kind, stimulus: &Path, deadline: f64) -> anyhow::Result<Outcome> {
        let name = Self::name(kind);
        let exe = std::env::current_exe()?;
        let mut cmd = if self.netns {
            let mut c = Command::new("unshare");
            c.args(["--net", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(["scenario", "--kind", name, "--stimulus"])
            .arg(stimulus)
            .arg("--record")
            .arg(self.record(kind))
            .args(["--window", &self.window.to_string()])
            .args(["--deadline", &deadline.to_string()]);
        if self.voice == Voice::App {
            cmd.args(["--voice", "app"]);
        }
        if self.netns {
            cmd.arg("--netns");
        }
        let log_path = self.work.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut child = cmd
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting the scenario")?;
        let pgid = child.id();
        let stdout = child.stdout.take().context("scenario stdout")?;
        let reader = std::thread::spawn(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find_map(|l| l.strip_prefix("RESULT ").map(str::to_owned))
        });
        let until = Instant::now() + Duration::from_secs_f64(deadline) + GRACE;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() > until {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // Whatever it left behind (daemon, recorder, clients) is in its process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = child.wait();
        let result = reader.join().ok().flatten();
        let tail = || {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(6)..].join(" | ")
        };
        match (status, result) {
            (Some(_), Some(json)) => Ok(serde_json::from_str(&json)?),
            (Some(status), None) => anyhow::bail!("exited ({status}) with no result: {}", tail()),
            (None, _) => anyhow::bail!("killed after {deadline:.0} s: {}", tail()),
        }
    }
}
