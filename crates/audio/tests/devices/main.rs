//! Real-time device tests on a private PulseAudio daemon (`confab_testkit::pulse`): the microphone hears
//! what is played into it, and what Confab plays reaches the speaker.
//!
//! One `#[test]` runs every check in turn: the process environment must point at the daemon
//! before the first cpal call, and the daemon lives exactly as long as that test.

use std::f32::consts::TAU;
use std::io::Read;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use confab_audio::{AudioError, Capture, Playback, SAMPLE_RATE, WavWriter};
use confab_testkit::pulse::{KillOnDrop, PulseDaemon};

const TONE_HZ: f32 = 1000.0;
const TONE_AMPLITUDE: f32 = 0.5;
/// Bound on every wait; the first stream takes 1-2 s to deliver audio on a quiet machine.
const WAIT: Duration = Duration::from_secs(15);
/// Half a second of audio is analysed.
const WINDOW: usize = SAMPLE_RATE as usize / 2;

#[test]
fn devices_on_a_private_pulseaudio() {
    let daemon = PulseDaemon::start();
    daemon.set_process_env();

    lists_the_virtual_devices();
    unknown_device_is_a_clear_error();
    capture_hears_a_tone_played_into_the_microphone(&daemon);
    playback_reaches_the_speaker(&daemon);
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
    let wav = daemon.dir().join("tone.wav");
    let mut writer = WavWriter::create(&wav).expect("create the tone file");
    writer
        .write(&tone(SAMPLE_RATE as usize * 3))
        .expect("write the tone");
    writer.finish().expect("finish the tone file");

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

    let _paplay = KillOnDrop(
        daemon
            .command("paplay")
            .args(["-d", "micfeed"])
            .arg(&wav)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start paplay"),
    );
    let mut heard = Vec::new();
    let deadline = Instant::now() + WAIT;
    let window = loop {
        while let Ok(sample) = mic.pop() {
            heard.push(sample);
        }
        if let Some(window) = tone_window(&heard) {
            break window.to_vec();
        }
        assert!(
            Instant::now() < deadline,
            "no tone captured within {WAIT:?}: {} samples, peak {}",
            heard.len(),
            peak(&heard)
        );
        thread::sleep(Duration::from_millis(10));
    };
    assert_is_the_tone(&window, "captured");
}

fn playback_reaches_the_speaker(daemon: &PulseDaemon) {
    let mut parec = KillOnDrop(
        daemon
            .command("parec")
            .args(["-d", "speaker.monitor", "--raw", "--format=float32le"])
            .args(["--rate=48000", "--channels=1", "--latency-msec=20"])
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

    let (playback, mut speaker) = Playback::start(Some("speaker")).expect("open the speaker");
    assert_eq!(playback.device_name(), "speaker");

    // Two seconds of tone, pushed as the ring makes room.
    let signal = tone(SAMPLE_RATE as usize * 2);
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
    let window = tone_window(&recorded).unwrap_or_else(|| {
        panic!(
            "no tone on speaker.monitor: {} samples recorded, peak {}",
            recorded.len(),
            peak(&recorded)
        )
    });
    assert_is_the_tone(window, "played");
}

fn tone(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| TONE_AMPLITUDE * (TAU * TONE_HZ * i as f32 / SAMPLE_RATE as f32).sin())
        .collect()
}

fn peak(samples: &[f32]) -> f32 {
    samples.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Half a second starting 100 ms after the first loud sample (past any fade-in), once that
/// much has arrived.
fn tone_window(samples: &[f32]) -> Option<&[f32]> {
    let onset = samples
        .iter()
        .position(|x| x.abs() > TONE_AMPLITUDE / 4.0)?;
    let start = onset + SAMPLE_RATE as usize / 10;
    samples.get(start..start + WINDOW)
}

fn assert_is_the_tone(window: &[f32], what: &str) {
    let rms = (window.iter().map(|x| x * x).sum::<f32>() / window.len() as f32).sqrt();
    let rising = window
        .windows(2)
        .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
        .count();
    let frequency = rising as f32 / (window.len() as f32 / SAMPLE_RATE as f32);
    let expected_rms = TONE_AMPLITUDE / 2f32.sqrt();
    eprintln!(
        "{what}: {frequency:.1} Hz, rms {rms:.3} (expected {TONE_HZ} Hz, rms {expected_rms:.3})"
    );
    assert!(
        (frequency - TONE_HZ).abs() <= TONE_HZ * 0.05,
        "{what} frequency {frequency} Hz"
    );
    assert!(
        (expected_rms / 2.0..=expected_rms * 2.0).contains(&rms),
        "{what} rms {rms}, expected about {expected_rms}"
    );
}
