//! The real-time audio worker, with a test thread standing in for the sound card: it drains the
//! speaker ring at the device's pace (10 ms every 10 ms) and fills the microphone ring. What
//! it checks is what a listener would hear: every speaker in the mix at our volume, nothing
//! clipped, the speaker ring kept shallow, and what a speaker says arriving as Opus packets
//! that decode back to it.

#![allow(clippy::unwrap_used, reason = "a test fails loudly")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confab_audio::{
    AudioEngine, Decoder, Encoded, Encoder, EncoderConfig, FRAME_SAMPLES, FrameLevel,
    MAX_PACKET_BYTES, Outgoing, PLAYOUT_LOW_WATER, VoiceConfig,
};

const RATE: f32 = 48_000.0;

fn tone(freq: f32, amp: f32, start: usize, len: usize) -> Vec<f32> {
    (start..start + len)
        .map(|i| amp * (std::f32::consts::TAU * freq * i as f32 / RATE).sin())
        .collect()
}

/// The amplitude of the `freq` component of `x` (Goertzel).
fn amplitude(x: &[f32], freq: f32) -> f32 {
    let w = std::f32::consts::TAU * freq / RATE;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0f32, 0f32);
    for &v in x {
        let s = v + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - c * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f32
}

/// The typical amplitude of `freq` over `x`: the median over quarter seconds, so a moment lost
/// to a starved test machine does not decide, while a wrong mix (a speaker missing, muted or
/// at the wrong gain) does.
fn typical_amplitude(x: &[f32], freq: f32) -> f32 {
    let mut v: Vec<f32> = x.chunks_exact(12_000).map(|c| amplitude(c, freq)).collect();
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// The engine tests stand in for a sound card with real-time threads: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn no_processing() -> VoiceConfig {
    VoiceConfig {
        high_pass: false,
        echo_cancel: false,
        noise_suppression: false,
        agc: false,
    }
}

/// Encodes `seconds` of a tone into packets, one per 20 ms.
fn packets(freq: f32, seconds: f32) -> Vec<Vec<u8>> {
    let mut enc = Encoder::new(&EncoderConfig {
        dtx: false,
        ..EncoderConfig::default()
    })
    .unwrap();
    let frames = (seconds * 50.0) as usize;
    let mut out = vec![0u8; MAX_PACKET_BYTES];
    (0..frames)
        .map(
            |n| match enc.encode(&tone(freq, 0.3, n * FRAME_SAMPLES, FRAME_SAMPLES), &mut out) {
                Ok(Encoded::Packet(len)) => out[..len].to_vec(),
                other => panic!("frame {n} did not encode: {other:?}"),
            },
        )
        .collect()
}

/// Sends each slot's packets at 50 per second while a "device" drains the speaker ring at
/// 48 kHz; returns everything the device played.
///
/// RTP numbering starts at frame `first`, so a second call continues the same streams.
fn play(
    engine: &AudioEngine,
    speakers: &[(usize, Vec<Vec<u8>>)],
    first: usize,
    seconds: f32,
) -> Vec<f32> {
    play_stalling(engine, speakers, first, seconds, None)
}

/// [`play`], with a device that stops taking audio for a while (`stall`: from and for how
/// long, in seconds) and then goes on at its own pace, as a sound server that was starved of
/// CPU does: the time it did not play is lost, not owed.
fn play_stalling(
    engine: &AudioEngine,
    speakers: &[(usize, Vec<Vec<u8>>)],
    first: usize,
    seconds: f32,
    stall: Option<(f32, f32)>,
) -> Vec<f32> {
    let (producer, mut consumer) = rtrb::RingBuffer::new(48_000);
    engine.set_playback(Some(producer));
    let played = Arc::new(Mutex::new(Vec::new()));
    let device = {
        let played = Arc::clone(&played);
        let total = (seconds * RATE) as usize;
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut taken = 0usize;
            let mut stalled = false;
            while taken < total {
                std::thread::sleep(Duration::from_millis(10));
                let now = start.elapsed().as_secs_f64();
                if let Some((from, len)) = stall
                    && now >= f64::from(from)
                    && now < f64::from(from + len)
                {
                    stalled = true;
                    continue;
                }
                let played_for = if stalled {
                    now - f64::from(stall.map_or(0.0, |(_, len)| len))
                } else {
                    now
                };
                // The device consumes at its own clock, whether or not audio is there.
                let due = (played_for * f64::from(RATE)) as usize;
                let mut out = played.lock().unwrap();
                while taken < due.min(total) {
                    out.push(consumer.pop().unwrap_or(0.0));
                    taken += 1;
                }
            }
        })
    };
    let start = Instant::now();
    let frames = speakers.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
    for n in 0..frames {
        let at = start + Duration::from_millis(20 * n as u64);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        for (slot, p) in speakers {
            if let Some(payload) = p.get(n) {
                let k = first + n;
                let ts = (k * FRAME_SAMPLES) as u32;
                engine.push_packet(*slot, k as u16, ts, payload, Instant::now());
            }
        }
    }
    device.join().unwrap();
    Arc::try_unwrap(played).unwrap().into_inner().unwrap()
}

#[test]
fn the_device_hears_every_speaker_mixed_at_our_volume() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let engine = AudioEngine::start(no_processing()).unwrap();
    let ada = packets(440.0, 2.0);
    let bob = packets(1000.0, 2.0);
    let out = play(&engine, &[(0, ada), (3, bob.clone())], 0, 2.4);

    // The middle second: both speakers, each at the level sent, and never a clipped sample.
    let middle = &out[24_000..96_000];
    let (a, b) = (
        typical_amplitude(middle, 440.0),
        typical_amplitude(middle, 1000.0),
    );
    assert!((0.2..0.36).contains(&a), "Ada's tone at {a}");
    assert!((0.2..0.36).contains(&b), "Bob's tone at {b}");
    let peak = out.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(peak < 1.0, "peak {peak}");
    let stats = engine.stats();
    assert!(stats.frames_mixed >= 100, "{stats:?}");
    // The device clock pulls the mix: the ring never holds more than the low-water mark plus
    // the block that crossed it.
    assert!(
        stats.playout_queued as usize <= PLAYOUT_LOW_WATER + FRAME_SAMPLES / 2,
        "{stats:?}"
    );
    // Both slots are reported with statistics once a second.
    let slots: Vec<usize> = engine.jitter_stats().iter().map(|(s, _)| *s).collect();
    assert_eq!(slots, [0, 3]);
    // Leaving the space (the speaker closed) forgets them.
    engine.set_playback(None);
    wait_for(|| engine.jitter_stats().is_empty());

    // Our volume: Bob muted for us, Ada doubled.
    engine.set_gain(3, 0.0);
    engine.set_gain(0, 2.0);
    let ada = packets(440.0, 2.0);
    let out = play(&engine, &[(0, ada), (3, bob)], 120, 2.4);
    let middle = &out[24_000..96_000];
    let (a, b) = (
        typical_amplitude(middle, 440.0),
        typical_amplitude(middle, 1000.0),
    );
    assert!((0.45..0.7).contains(&a), "Ada doubled is at {a}");
    assert!(b < 0.01, "Bob muted is at {b}");
}

#[test]
fn after_the_device_stalls_the_speaker_ring_is_shallow_again() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let engine = AudioEngine::start(no_processing()).unwrap();
    let ada = packets(440.0, 3.0);
    // The device stops for 300 ms a second in; the worker's wall clock says that time was
    // due. Producing it anyway would leave the ring (and every later word) that much late.
    let out = play_stalling(&engine, &[(0, ada)], 0, 3.0, Some((1.0, 0.3)));
    // The ring ends at the low-water mark plus the device's largest take (10 ms here, more
    // if this thread was late under load): well under the 300 ms the stall would have added.
    let stats = engine.stats();
    assert!(
        stats.playout_queued as usize <= PLAYOUT_LOW_WATER + 3 * FRAME_SAMPLES,
        "the ring holds {} ms after the stall: {stats:?}",
        stats.playout_queued / 48
    );
    // And Ada is still heard after it.
    let after = &out[out.len() - 48_000..out.len() - 12_000];
    let a = typical_amplitude(after, 440.0);
    assert!(
        (0.2..0.36).contains(&a),
        "Ada's tone after the stall at {a}"
    );
}

#[test]
fn two_loud_speakers_are_limited_not_clipped() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let engine = AudioEngine::start(no_processing()).unwrap();
    for slot in 0..2 {
        engine.set_gain(slot, 4.0);
    }
    let out = play(
        &engine,
        &[(0, packets(300.0, 1.0)), (1, packets(500.0, 1.0))],
        0,
        1.3,
    );
    let peak = out.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(peak > 0.8 && peak < 1.0, "peak {peak}");
    assert!(engine.stats().frames_limited > 10, "{:?}", engine.stats());
}

#[test]
fn what_the_microphone_hears_goes_out_as_one_packet_per_frame() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let engine = AudioEngine::start(no_processing()).unwrap();
    let sent: Arc<Mutex<Vec<Option<Vec<u8>>>>> = Arc::default();
    let levels: Arc<Mutex<Vec<Option<FrameLevel>>>> = Arc::default();
    let sink_sent = Arc::clone(&sent);
    let sink_levels = Arc::clone(&levels);
    engine.set_sink(Some(Box::new(move |out| {
        let (packet, level) = match out {
            Outgoing::Packet(p, level) => (Some(p.to_vec()), Some(level)),
            Outgoing::Dtx => (None, None),
        };
        sink_sent.lock().unwrap().push(packet);
        sink_levels.lock().unwrap().push(level);
    })));
    let (mut mic, ring) = rtrb::RingBuffer::new(48_000);
    engine.set_capture(Some(ring));
    // One second of a 700 Hz tone, then half a second while muted.
    let said = tone(700.0, 0.3, 0, 48_000 + 24_000);
    for (i, chunk) in said.chunks(480).enumerate() {
        if i == 100 {
            wait_for(|| sent.lock().unwrap().len() >= 50);
            engine.set_muted(true);
        }
        for &s in chunk {
            mic.push(s).unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    wait_for(|| sent.lock().unwrap().len() >= 75);
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 75, "one output per 20 ms frame");
    let mut dec = Decoder::new().unwrap();
    let mut pcm = vec![0f32; FRAME_SAMPLES];
    let mut heard = Vec::new();
    for p in &sent {
        match p {
            Some(p) => {
                dec.decode(p, &mut pcm).unwrap();
                heard.extend_from_slice(&pcm);
            }
            None => heard.extend(std::iter::repeat_n(0.0, FRAME_SAMPLES)),
        }
    }
    let spoken = amplitude(&heard[9_600..48_000], 700.0);
    assert!(
        (0.22..0.36).contains(&spoken),
        "the tone arrives at {spoken}"
    );
    let muted = amplitude(&heard[55_000..72_000], 700.0);
    assert!(muted < 0.01, "muted, the tone is still at {muted}");
    assert_eq!(engine.stats().frames_sent, 75);
    // Each packet carries its frame's RFC 6464 level: the 0.3 tone is -13.5 dBov (RMS 0.21);
    // a muted frame is silence, whatever Opus still sends for it.
    let levels = levels.lock().unwrap().clone();
    for (i, level) in levels.iter().enumerate().take(48).skip(2) {
        let dbov = level.map(|l| l.dbov);
        assert!(matches!(dbov, Some(13..=14)), "frame {i}: {level:?}");
    }
    for level in levels[55..].iter().flatten() {
        assert_eq!(level.dbov, FrameLevel::SILENT, "a muted frame: {level:?}");
        assert!(!level.voice);
    }
    // The raw input level is metered whether or not we send.
    let (rms, peak, seq) = engine.input_level();
    assert!(seq > 0 && rms > 0.15 && peak > 0.25, "{rms} {peak} {seq}");
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The voluntary context switches of the worker thread so far: how often it went to sleep.
fn worker_wakeups() -> u64 {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "confab-audio" {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("voluntary_ctxt_switches:"))
            .unwrap();
        return line.split_whitespace().nth(1).unwrap().parse().unwrap();
    }
    panic!("no confab-audio thread");
}

#[test]
fn an_engine_with_nothing_to_do_sleeps_and_a_packet_wakes_it() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let engine = AudioEngine::start(no_processing()).unwrap();
    // No device, no sink, no packet: after PARK_AFTER it parks.
    std::thread::sleep(confab_audio::PARK_AFTER + Duration::from_millis(600));
    let before = worker_wakeups();
    std::thread::sleep(Duration::from_secs(2));
    let slept = worker_wakeups() - before;
    // Awake it sleeps every 4 ms: 500 times in 2 s. Parked, a few times.
    assert!(
        slept <= 12,
        "the idle worker went to sleep {slept} times in 2 s"
    );

    // A packet wakes it, and the speaker is heard (on the stand-in tick: no device).
    let tone = packets(440.0, 1.5);
    let start = Instant::now();
    let mut heard = 0.0f32;
    for (n, payload) in tone.iter().enumerate() {
        let at = start + Duration::from_millis(20 * n as u64);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        engine.push_packet(
            0,
            n as u16,
            (n * FRAME_SAMPLES) as u32,
            payload,
            Instant::now(),
        );
        heard = heard.max(engine.slot_levels()[0]);
    }
    assert!(
        heard > 0.1,
        "the speaker was not played after idling: level {heard}"
    );
}
