//! The jitter buffer against a bad network: real speech-like audio through real Opus, sent
//! through a seeded impaired path (`confab_testkit::net`), played out on a simulated 20 ms
//! clock with no real waiting. Asserts what a listener notices: whether the speech is still
//! heard second by second, how much delay the buffer adds for the jitter it sees, that it
//! gives the delay back when the network calms, and that nothing piles up over ten minutes.

#![allow(clippy::unwrap_used, reason = "a test fails loudly")]

use std::time::Duration;

use confab_audio::{
    Encoded, Encoder, EncoderConfig, FRAME_SAMPLES, JitterBuffer, JitterStats, MAX_PACKET_BYTES,
    MAX_PACKETS, MAX_TARGET_DELAY, MIN_TARGET_DELAY,
};
use confab_testkit::net::Impairment;
use confab_testkit::signal::{seconds_heard, speech_like};

const TICK: Duration = Duration::from_millis(20);

/// One RTP packet as the sender made it.
#[derive(Clone, Debug)]
struct Packet {
    seq: u16,
    ts: u32,
    payload: Vec<u8>,
}

/// Encodes `pcm` as Confab's sender does (FEC and DTX on): frame `i` is stamped `i * 960` and
/// sent at `i * 20 ms`; frames in DTX are not sent and take no sequence number.
fn encode(pcm: &[f32]) -> Vec<(Duration, Packet)> {
    let mut encoder = Encoder::new(&EncoderConfig::default()).unwrap();
    let mut buf = [0u8; MAX_PACKET_BYTES];
    let mut seq = 61_000u16; // wraps a few seconds in
    let mut out = Vec::new();
    for (i, frame) in pcm.chunks_exact(FRAME_SAMPLES).enumerate() {
        if let Encoded::Packet(len) = encoder.encode(frame, &mut buf).unwrap() {
            let ts = (i * FRAME_SAMPLES) as u32;
            let payload = buf[..len].to_vec();
            out.push((TICK * i as u32, Packet { seq, ts, payload }));
            seq = seq.wrapping_add(1);
        }
    }
    out
}

/// What a simulated listener got.
struct Run {
    /// Everything played, frame after frame.
    audio: Vec<f32>,
    /// The buffer's stats after each tick.
    stats: Vec<JitterStats>,
    /// The most packets it ever held.
    most_buffered: usize,
}

/// Plays `arrivals` out through a jitter buffer, one pull per 20 ms tick, for `ticks` ticks.
fn play(arrivals: &[(Duration, Packet)], ticks: usize) -> Run {
    play_starved(arrivals, ticks, &[])
}

/// The same, with the receiver itself starved during the `starved` ranges of ticks (a busy
/// machine): it neither reads packets nor plays then, and afterwards reads everything that
/// arrived and plays every tick it missed at once, as the client's playout task does.
fn play_starved(
    arrivals: &[(Duration, Packet)],
    ticks: usize,
    starved: &[std::ops::Range<usize>],
) -> Run {
    let mut jb = JitterBuffer::new().unwrap();
    let mut frame = vec![0.0; FRAME_SAMPLES];
    let mut next = 0;
    let mut run = Run {
        audio: Vec::with_capacity(ticks * FRAME_SAMPLES),
        stats: Vec::with_capacity(ticks),
        most_buffered: 0,
    };
    let mut played = 0;
    for tick in 0..ticks {
        if starved.iter().any(|r| r.contains(&tick)) {
            continue;
        }
        let now = TICK * tick as u32;
        while let Some((at, p)) = arrivals.get(next).filter(|(at, _)| *at <= now) {
            jb.push(p.seq, p.ts, &p.payload, at.as_micros() as u64);
            next += 1;
            run.most_buffered = run.most_buffered.max(jb.stats().buffered_packets);
        }
        while played <= tick {
            let nominal = TICK * played as u32;
            if jb.pull(nominal.as_micros() as u64, &mut frame).is_some() {
                run.audio.extend_from_slice(&frame);
            }
            played += 1;
            run.stats.push(jb.stats());
        }
    }
    run
}

/// The 95th percentile of (transit - fastest transit) over these arrivals, as the test sees
/// the network (the send times are known here).
fn p95_jitter(sent: &[(Duration, Packet)], arrivals: &[(Duration, Packet)]) -> Duration {
    let send_time = |p: &Packet| {
        let i = sent.iter().position(|(_, s)| s.ts == p.ts).unwrap();
        sent[i].0
    };
    let mut transits: Vec<Duration> = arrivals.iter().map(|(at, p)| *at - send_time(p)).collect();
    transits.sort();
    let fastest = transits[0];
    transits[transits.len() * 95 / 100] - fastest
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn jittery(loss: f64, seed: u64) -> Impairment {
    Impairment {
        jitter_mean: Duration::from_millis(40),
        jitter_sd: Duration::from_millis(10),
        loss,
        reorder: 0.01,
        ..Impairment::new(Duration::from_millis(10), seed)
    }
}

/// 40 ± 10 ms of jitter with 1 % and 5 % loss: speech stays intelligible, and the target
/// delay sits between the network's p95 jitter and 60 ms more than that.
#[test]
fn speech_survives_jitter_and_loss() {
    const SECONDS: f64 = 20.0;
    let speech = speech_like(SECONDS, 5);
    let sent = encode(&speech);
    for (loss, min_heard) in [(0.01, 0.9), (0.05, 0.9)] {
        let arrivals = jittery(loss, 42).apply(sent.clone());
        let run = play(&arrivals, (SECONDS * 50.0) as usize + 25);
        let p95 = p95_jitter(&sent, &arrivals);
        let heard = seconds_heard(&speech, &run.audio);
        let last = run.stats.last().unwrap();
        let settled = &run.stats[100..];
        let lo = settled.iter().map(|s| s.target_delay).min().unwrap();
        let hi = settled.iter().map(|s| s.target_delay).max().unwrap();
        eprintln!(
            "loss {:.0}%: heard {}/{} s; p95 jitter {:.1} ms; target {:.1}..{:.1} ms; {last:?}\n  {}",
            loss * 100.0,
            heard.heard,
            heard.total,
            ms(p95),
            ms(lo),
            ms(hi),
            heard.shown
        );
        assert!(
            heard.heard as f64 >= min_heard * heard.total as f64,
            "at {loss} loss only {}/{} s heard: {}",
            heard.heard,
            heard.total,
            heard.shown
        );
        assert!(
            lo >= p95 && hi <= p95 + Duration::from_millis(60),
            "target {lo:?}..{hi:?} for p95 jitter {p95:?}"
        );
        // The delay buys what it is for: few packets come too late to play.
        let packets = arrivals.len() as f64;
        assert!(
            (last.late as f64) < 0.03 * packets,
            "{} of {packets} late",
            last.late
        );
        // Losses are counted as such, and FEC rebuilds a good share of them.
        let missing = (last.lost + last.fec_recovered) as f64;
        let expected = loss * sent.len() as f64;
        assert!(
            missing >= expected * 0.6 && missing <= expected * 1.6 + 20.0,
            "{missing} missing for {expected:.0} lost"
        );
        assert!(last.fec_recovered > 0, "{last:?}");
    }
}

/// 40 ± 10 ms of jitter for 10 s, then a calm 2 ± 1 ms: the target comes back down below
/// 40 ms within 8 s, and the playout delay follows it.
#[test]
fn delay_shrinks_when_the_network_calms() {
    const SECONDS: f64 = 30.0;
    const CALM_AT: Duration = Duration::from_secs(10);
    let speech = speech_like(SECONDS, 9);
    let sent = encode(&speech);
    let (rough, calm): (Vec<_>, Vec<_>) = sent.iter().cloned().partition(|(at, _)| *at < CALM_AT);
    let mut arrivals = jittery(0.01, 3).apply(rough);
    arrivals.extend(
        Impairment {
            jitter_mean: Duration::from_millis(2),
            jitter_sd: Duration::from_millis(1),
            loss: 0.01,
            ..Impairment::new(Duration::from_millis(10), 4)
        }
        .apply(calm),
    );
    arrivals.sort_by_key(|(at, _)| *at);
    let run = play(&arrivals, (SECONDS * 50.0) as usize + 25);
    let at = |t: Duration| &run.stats[(t.as_millis() / 20) as usize];
    let before = at(CALM_AT);
    let shrunk_by = run.stats[500..]
        .iter()
        .position(|s| s.target_delay < Duration::from_millis(40))
        .map(|i| TICK * i as u32);
    let end = run.stats.last().unwrap();
    eprintln!(
        "before calm: target {:.1} ms, playout {:.1} ms; target < 40 ms after {shrunk_by:?}; \
         at the end: target {:.1} ms, playout {:.1} ms, {} frames dropped to shrink",
        ms(before.target_delay),
        ms(before.playout_delay),
        ms(end.target_delay),
        ms(end.playout_delay),
        end.shrunk
    );
    assert!(
        before.target_delay >= Duration::from_millis(50),
        "{before:?}"
    );
    let shrunk_by = shrunk_by.expect("the target never came down");
    assert!(shrunk_by <= Duration::from_secs(8), "took {shrunk_by:?}");
    assert!(end.target_delay <= Duration::from_millis(30), "{end:?}");
    // The playout delay gives the excess back too (it drops quiet frames to do it), down to
    // within a frame plus the buffer's 10 ms of hysteresis.
    assert!(
        end.playout_delay < end.target_delay + Duration::from_millis(30),
        "{end:?}"
    );
    let heard = seconds_heard(&speech, &run.audio);
    eprintln!("heard {}/{} s: {}", heard.heard, heard.total, heard.shown);
    assert!(heard.heard * 10 >= heard.total * 8, "{}", heard.shown);
}

/// Ten minutes of a path that now and then stalls for up to 1.5 s and then delivers everything
/// at once, on a receiver that is now and then starved for up to 1.5 s itself: the buffer
/// fills to its cap but never beyond, its target stays in bounds, and the audio keeps coming
/// back.
#[test]
fn ten_minutes_of_bursts_stay_bounded() {
    let speech = speech_like(20.0, 13);
    let once = encode(&speech);
    // The 20 s of packets again and again, sequence numbers and timestamps running on (each
    // timestamp follows its send time, so the sender's DTX pauses stay pauses).
    let mut sent = Vec::new();
    let mut seq = 0u16;
    for round in 0..30u32 {
        for (at, p) in &once {
            let at = *at + Duration::from_secs(20) * round;
            let ts = (at.as_micros() * 48 / 1000) as u32;
            let payload = p.payload.clone();
            sent.push((at, Packet { seq, ts, payload }));
            seq = seq.wrapping_add(1);
        }
    }
    let path = Impairment {
        stall_chance: 0.001,
        stall: (Duration::from_millis(200), Duration::from_millis(1500)),
        ..jittery(0.02, 77)
    };
    let arrivals = path.apply(sent.clone());
    let ticks = 600 * 50 + 50;
    // About once a minute the receiver stalls for 0.4 to 1.5 s (seeded, like the path).
    let mut rng = 0x5eed_u64;
    let mut next_random = move || {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (rng >> 33) as usize
    };
    let starved: Vec<_> = (0..ticks)
        .step_by(3000)
        .map(|minute| {
            let start = minute + next_random() % 2900;
            start..start + 20 + next_random() % 55
        })
        .collect();
    let run = play_starved(&arrivals, ticks, &starved);
    let most = run.most_buffered;
    let end = run.stats.last().unwrap();
    eprintln!("10 min: at most {most} packets buffered; {end:?}");
    assert!(most <= MAX_PACKETS, "{most} packets buffered");
    assert!(
        end.overflow > 0,
        "the bursts never reached the cap: {end:?}"
    );
    assert!(
        run.stats
            .iter()
            .all(|s| { (MIN_TARGET_DELAY..=MAX_TARGET_DELAY).contains(&s.target_delay) })
    );
    // Output keeps pace with the clock: no frame is skipped or doubled beyond the stalls'.
    let played = run.audio.len() / FRAME_SAMPLES;
    assert!(
        played + 100 >= ticks && played <= ticks,
        "{played} of {ticks}"
    );
    // Most packets still play.
    assert!(
        end.decoded as f64 >= 0.9 * sent.len() as f64,
        "{} of {} decoded",
        end.decoded,
        sent.len()
    );
    // And the audio always comes back: the longest stretch with nothing decoded is no
    // longer than the longest stall (1.5 s) plus a second.
    let (mut longest, mut run_len) = (0, 0);
    for pair in run.stats.windows(2) {
        run_len = if pair[1].decoded > pair[0].decoded {
            0
        } else {
            run_len + 1
        };
        longest = longest.max(run_len);
    }
    eprintln!(
        "longest stretch without a decoded frame: {} ms",
        longest * 20
    );
    assert!(longest * 20 <= 2500, "{} ms without audio", longest * 20);
}

/// Prints how the target delay tracks jitter of several sizes (not a pass/fail test):
/// `cargo test -p confab-audio --test impairment -- --ignored --nocapture`.
#[test]
#[ignore = "prints figures"]
fn delay_tracking_figures() {
    const SECONDS: f64 = 20.0;
    let speech = speech_like(SECONDS, 5);
    let sent = encode(&speech);
    eprintln!("jitter (mean/sd ms)  p95 ms  target ms (median, 2 s on)  playout ms  late %  heard");
    for (mean, sd) in [(2, 1), (10, 3), (20, 5), (40, 10), (80, 20), (150, 40)] {
        let arrivals = Impairment {
            jitter_mean: Duration::from_millis(mean),
            jitter_sd: Duration::from_millis(sd),
            loss: 0.01,
            ..Impairment::new(Duration::from_millis(10), 42)
        }
        .apply(sent.clone());
        let run = play(&arrivals, (SECONDS * 50.0) as usize + 25);
        let mut targets: Vec<Duration> = run.stats[100..].iter().map(|s| s.target_delay).collect();
        targets.sort();
        let mut playouts: Vec<Duration> =
            run.stats[100..].iter().map(|s| s.playout_delay).collect();
        playouts.sort();
        let end = run.stats.last().unwrap();
        let heard = seconds_heard(&speech, &run.audio);
        eprintln!(
            "{mean:>8}/{sd:<10} {:>7.1} {:>14.1} {:>22.1} {:>7.2} {:>4}/{}",
            ms(p95_jitter(&sent, &arrivals)),
            ms(targets[targets.len() / 2]),
            ms(playouts[playouts.len() / 2]),
            100.0 * end.late as f64 / arrivals.len() as f64,
            heard.heard,
            heard.total
        );
    }
}
