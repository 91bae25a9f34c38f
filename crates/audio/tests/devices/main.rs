//! Real-time device tests on a private PulseAudio daemon (`confab_testkit::pulse`): the microphone hears
//! what is played into it, and what Confab plays reaches the speaker; devices at 44.1 kHz are
//! converted; a device that disappears is noticed and the default takes over.
//!
//! One `#[test]` runs every check in turn: the process environment must point at the daemon
//! before the first cpal call, and the daemon lives exactly as long as that test.

use std::f32::consts::TAU;
use std::io::Read;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use confab_audio::{
    AudioBackend, AudioError, Capture, CpalBackend, Direction, Playback, RatePolicy, SAMPLE_RATE,
    WavWriter,
};
use confab_testkit::pulse::{KillOnDrop, PulseDaemon};
use rtrb::{Consumer, Producer};

const TONE_HZ: f32 = 1000.0;
const TONE_AMPLITUDE: f32 = 0.5;
/// Bound on every wait; the first stream takes 1-2 s to deliver audio on a quiet machine.
const WAIT: Duration = Duration::from_secs(15);

#[test]
fn devices_on_a_private_pulseaudio() {
    let daemon = PulseDaemon::start();
    daemon.set_process_env();

    lists_the_virtual_devices();
    unknown_device_is_a_clear_error();
    capture_hears_a_tone_played_into_the_microphone(&daemon);
    playback_reaches_the_speaker(&daemon);
    a_44k1_device_is_converted(&daemon);
    a_device_that_disappears_is_noticed_and_the_default_takes_over(&daemon);
}

fn lists_the_virtual_devices() {
    let inputs = confab_audio::input_devices().expect("list inputs");
    for expected in ["vmic", "micfeed.monitor", "speaker.monitor"] {
        assert!(
            inputs.iter().any(|d| d == expected),
            "{expected} in {inputs:?}"
        );
    }
    let outputs = confab_audio::output_devices().expect("list outputs");
    for expected in ["speaker", "micfeed"] {
        assert!(
            outputs.iter().any(|d| d == expected),
            "{expected} in {outputs:?}"
        );
    }
    assert!(
        !outputs.iter().any(|d| d == "vmic"),
        "a source is not an output"
    );
    let infos = confab_audio::output_device_infos().expect("describe outputs");
    assert!(infos.iter().all(|d| !d.description.is_empty()), "{infos:?}");
}

fn unknown_device_is_a_clear_error() {
    let err = Capture::start(Some("no-such-microphone")).expect_err("no such device");
    assert!(matches!(err, AudioError::DeviceNotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("no-such-microphone") && message.contains("vmic"),
        "{message}"
    );
    let err = Playback::start(Some("vmic")).expect_err("vmic is an input");
    assert!(
        matches!(err, AudioError::DeviceNotFound { .. }),
        "a source is no speaker: {err:?}"
    );
}

fn capture_hears_a_tone_played_into_the_microphone(daemon: &PulseDaemon) {
    let (capture, mut mic) = Capture::start(None).expect("open the default microphone");
    assert_eq!(capture.device_name(), "vmic");

    // Nobody reads the ring yet: once a second of audio has arrived it overflows, and that is
    // counted rather than blocking the device.
    let deadline = Instant::now() + WAIT;
    while capture.overruns() == 0 {
        assert!(
            Instant::now() < deadline,
            "no overrun counted within {WAIT:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    while mic.pop().is_ok() {}
    let window = capture_tone(daemon, &mut mic, "micfeed");
    assert_is_the_tone(&window, SAMPLE_RATE, "captured");
}

fn playback_reaches_the_speaker(daemon: &PulseDaemon) {
    let (playback, speaker) = Playback::start(Some("speaker")).expect("open the speaker");
    assert_eq!(playback.device_name(), "speaker");
    let window = play_tone(daemon, &playback, speaker, "speaker.monitor", SAMPLE_RATE);
    assert_is_the_tone(&window, SAMPLE_RATE, "played");
}

/// A sink and its monitor at 44.1 kHz: asked to open at the device's own rate, Confab
/// converts, in both directions, and the tone arrives in tune. PulseAudio's cpal host offers
/// 48 kHz all the same (PulseAudio converts, or even retunes an idle sink to 48 kHz: seen here
/// with a null sink, which is why this comes last).
fn a_44k1_device_is_converted(daemon: &PulseDaemon) {
    let _module = load_null_sink(daemon, "speaker44", 44_100);

    let native = CpalBackend::with_rate_policy(RatePolicy::DeviceDefault);
    let (playback, speaker) = native
        .open_playback(Some("speaker44"))
        .expect("open speaker44 at its own rate");
    assert_eq!(playback.device_rate(), 44_100);
    // Recorded at the sink's own rate, so PulseAudio converts nothing on the way.
    let window = play_tone(daemon, &playback, speaker, "speaker44.monitor", 44_100);
    assert_is_the_tone(
        &window,
        44_100,
        "played through the 48 -> 44.1 kHz converter",
    );
    drop(playback);

    let (capture, mut mic) = native
        .open_capture(Some("speaker44.monitor"))
        .expect("open speaker44.monitor at its own rate");
    assert_eq!(capture.device_rate(), 44_100);
    let window = capture_tone(daemon, &mut mic, "speaker44");
    assert_is_the_tone(
        &window,
        SAMPLE_RATE,
        "captured through the 44.1 -> 48 kHz converter",
    );
    drop(capture);

    let (playback, _ring) = Playback::start(Some("speaker44")).expect("open speaker44");
    assert_eq!(
        playback.device_rate(),
        SAMPLE_RATE,
        "PulseAudio offers 48 kHz for a 44.1 kHz sink"
    );
}

/// Within this long of a device's removal, Confab knows.
const LOSS_NOTICED_WITHIN: Duration = Duration::from_secs(3);

fn a_device_that_disappears_is_noticed_and_the_default_takes_over(daemon: &PulseDaemon) {
    let name = format!("headset{}", std::process::id());
    let monitor = format!("{name}.monitor");
    let module = load_null_sink(daemon, &name, SAMPLE_RATE);
    let backend = CpalBackend::new();
    let (playback, _speaker) = backend
        .open_playback(Some(&name))
        .expect("open the headset");
    let (capture, _mic) = backend
        .open_capture(Some(&monitor))
        .expect("open the headset's monitor");
    assert!(
        backend
            .device_present(Direction::Output, &name)
            .expect("list")
    );
    assert!(
        backend
            .device_present(Direction::Input, &monitor)
            .expect("list")
    );
    assert!(!backend.playback_lost(&playback).expect("list outputs"));
    assert!(!backend.capture_lost(&capture).expect("list inputs"));
    // Both streams run before the device goes.
    thread::sleep(Duration::from_millis(500));

    let unplugged = Instant::now();
    drop(module);
    let (mut playback_gone, mut capture_gone) = (None, None);
    while playback_gone.is_none() || capture_gone.is_none() {
        if playback_gone.is_none() && backend.playback_lost(&playback).expect("list outputs") {
            playback_gone = Some(unplugged.elapsed());
        }
        if capture_gone.is_none() && backend.capture_lost(&capture).expect("list inputs") {
            capture_gone = Some(unplugged.elapsed());
        }
        assert!(
            unplugged.elapsed() < LOSS_NOTICED_WITHIN,
            "device loss not noticed within {LOSS_NOTICED_WITHIN:?}: playback {playback_gone:?}, \
             capture {capture_gone:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "headset removed: playback noticed after {playback_gone:?} (lost() = {}), capture after \
         {capture_gone:?} (lost() = {})",
        playback.lost(),
        capture.lost()
    );
    drop(playback);
    drop(capture);

    // What the app does next: reopen on the default devices, which work.
    let (playback, speaker) = backend
        .open_playback(None)
        .expect("reopen the default speaker");
    assert_eq!(playback.device_name(), "speaker");
    let window = play_tone(daemon, &playback, speaker, "speaker.monitor", SAMPLE_RATE);
    assert_is_the_tone(&window, SAMPLE_RATE, "played after the fallback");
    drop(playback);
    let (capture, mut mic) = backend.open_capture(None).expect("reopen the default mic");
    assert_eq!(capture.device_name(), "vmic");
    let window = capture_tone(daemon, &mut mic, "micfeed");
    assert_is_the_tone(&window, SAMPLE_RATE, "captured after the fallback");
}

/// A `module-null-sink` loaded for the test, unloaded on drop.
struct Module<'a> {
    daemon: &'a PulseDaemon,
    index: String,
}

fn load_null_sink<'a>(daemon: &'a PulseDaemon, name: &str, rate: u32) -> Module<'a> {
    let out = daemon
        .command("pactl")
        .args(["load-module", "module-null-sink"])
        .arg(format!("sink_name={name}"))
        .arg(format!("rate={rate}"))
        .arg("channels=1")
        .output()
        .expect("run pactl");
    assert!(out.status.success(), "load the sink {name}: {out:?}");
    let index = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Module { daemon, index }
}

impl Drop for Module<'_> {
    fn drop(&mut self) {
        let _ = self
            .daemon
            .command("pactl")
            .args(["unload-module", &self.index])
            .status();
    }
}

/// Plays three seconds of the tone (at 48 kHz) into `sink` with paplay and returns a
/// half-second window of what `mic` captured.
fn capture_tone(daemon: &PulseDaemon, mic: &mut Consumer<f32>, sink: &str) -> Vec<f32> {
    let wav = daemon.dir().join("tone.wav");
    if !wav.exists() {
        let mut writer = WavWriter::create(&wav).expect("create the tone file");
        writer
            .write(&tone(SAMPLE_RATE as usize * 3, SAMPLE_RATE))
            .expect("write the tone");
        writer.finish().expect("finish the tone file");
    }
    while mic.pop().is_ok() {}
    let _paplay = KillOnDrop(
        daemon
            .command("paplay")
            .args(["-d", sink])
            .arg(&wav)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start paplay"),
    );
    let mut heard = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        while let Ok(sample) = mic.pop() {
            heard.push(sample);
        }
        if let Some(window) = tone_window(&heard, SAMPLE_RATE) {
            return window.to_vec();
        }
        assert!(
            Instant::now() < deadline,
            "no tone captured from {sink} within {WAIT:?}: {} samples, peak {}",
            heard.len(),
            peak(&heard)
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Plays two seconds of the tone through `playback` while parec records `monitor` at `rate`;
/// returns a half-second window of the recording.
fn play_tone(
    daemon: &PulseDaemon,
    playback: &Playback,
    mut speaker: Producer<f32>,
    monitor: &str,
    rate: u32,
) -> Vec<f32> {
    let mut parec = KillOnDrop(
        daemon
            .command("parec")
            .args(["-d", monitor, "--raw", "--format=float32le"])
            .arg(format!("--rate={rate}"))
            .args(["--channels=1", "--latency-msec=20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start parec"),
    );
    let mut recording = parec.0.stdout.take().expect("parec's stdout is piped");
    let recorder = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = recording.read_to_end(&mut bytes);
        bytes
    });

    // Two seconds of tone, pushed as the ring makes room.
    let signal = tone(SAMPLE_RATE as usize * 2, SAMPLE_RATE);
    let mut pushed = 0;
    let deadline = Instant::now() + WAIT;
    while pushed < signal.len() {
        while pushed < signal.len() && speaker.push(signal[pushed]).is_ok() {
            pushed += 1;
        }
        assert!(
            Instant::now() < deadline,
            "the device took only {pushed} samples in {WAIT:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Once the ring runs dry again, all of it has gone to the device.
    let before = playback.underruns();
    let deadline = Instant::now() + WAIT;
    while playback.underruns() == before {
        assert!(
            Instant::now() < deadline,
            "the ring never drained within {WAIT:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(300));
    drop(parec);
    let bytes = recorder.join().expect("the recorder thread");
    let recorded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let Some(window) = tone_window(&recorded, rate) else {
        panic!(
            "no tone on {monitor}: {} samples recorded, peak {}",
            recorded.len(),
            peak(&recorded)
        )
    };
    window.to_vec()
}

fn tone(len: usize, rate: u32) -> Vec<f32> {
    (0..len)
        .map(|i| TONE_AMPLITUDE * (TAU * TONE_HZ * i as f32 / rate as f32).sin())
        .collect()
}

fn peak(samples: &[f32]) -> f32 {
    samples.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Half a second starting 100 ms after the first loud sample (past any fade-in), once that
/// much has arrived.
fn tone_window(samples: &[f32], rate: u32) -> Option<&[f32]> {
    let onset = samples
        .iter()
        .position(|x| x.abs() > TONE_AMPLITUDE / 4.0)?;
    let start = onset + rate as usize / 10;
    samples.get(start..start + rate as usize / 2)
}

/// Frequency from rising zero crossings, level from RMS: a 1 kHz tone at about the level
/// played, sampled at `rate`.
fn assert_is_the_tone(window: &[f32], rate: u32, what: &str) {
    let rms = (window.iter().map(|x| x * x).sum::<f32>() / window.len() as f32).sqrt();
    let rising = window
        .windows(2)
        .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
        .count();
    let frequency = rising as f32 / (window.len() as f32 / rate as f32);
    let expected_rms = TONE_AMPLITUDE / 2f32.sqrt();
    eprintln!(
        "{what}: {frequency:.1} Hz, rms {rms:.3} (expected {TONE_HZ} Hz, rms {expected_rms:.3})"
    );
    assert!(
        (frequency - TONE_HZ).abs() <= TONE_HZ * 0.02,
        "{what} frequency {frequency} Hz"
    );
    assert!(
        (expected_rms / 2.0..=expected_rms * 2.0).contains(&rms),
        "{what} rms {rms}, expected about {expected_rms}"
    );
}
