//! Prints the voice chain's figures: noise reduction, echo return loss enhancement (ERLE) of
//! both pure-Rust AEC3 ports on the same simulated room, voice activity rates, and CPU time per
//! 10 ms block for each stage as a share of real time.
//!
//! `cargo run --release -p confab-audio --example voice_figures` (a debug build of this
//! workspace optimises dependencies too, so `cargo run` gives close figures).
#![allow(
    unsafe_code,
    reason = "a counting GlobalAlloc wrapper, to compare the AEC crates"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use confab_audio::{VOICE_BLOCK, VoiceConfig, VoiceProcessor};
use confab_testkit::signal::{align, echo_path, pink_noise, rms, speech_like, white_noise};

const R: usize = 48_000;
const N: usize = VOICE_BLOCK;

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-20).log10()
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|s| (*s as f64).powi(2)).sum()
}

fn at(t: f64) -> usize {
    (t * R as f64) as usize
}

/// Far end alone 0–8 s, near end alone 8–11 s, double talk 11–16 s, far end alone 16–20 s.
struct Scene {
    far: Vec<f32>,
    near: Vec<f32>,
    echo: Vec<f32>,
    mic: Vec<f32>,
}

fn scene(delay_ms: f64) -> Scene {
    let mut far = speech_like(20.0, 1);
    let mut near = speech_like(20.0, 2);
    far[at(8.0)..at(11.0)].fill(0.0);
    for (i, s) in near.iter_mut().enumerate() {
        *s = if (at(8.0)..at(16.0)).contains(&i) {
            *s * 0.5
        } else {
            0.0
        };
    }
    let echo = echo_path(&far, delay_ms, 30.0, 0.5, 3);
    let floor = white_noise(20.0, 3e-4, 4);
    let mic = (0..far.len())
        .map(|i| echo[i] + near[i] + floor[i])
        .collect();
    Scene {
        far,
        near,
        echo,
        mic,
    }
}

struct EchoFigures {
    name: &'static str,
    /// ERLE over 0.5–2 s, 2–8 s and 16–20 s.
    erle: [f64; 3],
    near_level_db: f64,
    near_ncc: f64,
    double_talk_ncc: f64,
    cpu_percent: f64,
    allocations_per_block: f64,
}

fn echo_figures(
    name: &'static str,
    s: &Scene,
    out: &[f32],
    seconds: f64,
    allocs: usize,
) -> EchoFigures {
    let erle = |a: f64, b: f64| db(energy(&s.echo[at(a)..at(b)]) / energy(&out[at(a)..at(b)]));
    let near_only = &s.near[at(8.2)..at(11.0)];
    let a = align(out, near_only, near_only.len()).expect("non-empty");
    let lag = (a.lag - at(8.2) as i64).max(0) as usize;
    let seg = &out[at(8.2) + lag..at(11.0) + lag];
    let (x, y) = (
        &s.near[at(11.5)..at(16.0)],
        &out[at(11.5) + lag..at(16.0) + lag],
    );
    let dot: f64 = x.iter().zip(y).map(|(a, b)| *a as f64 * *b as f64).sum();
    EchoFigures {
        name,
        erle: [erle(0.5, 2.0), erle(2.0, 8.0), erle(16.0, 20.0)],
        near_level_db: db(energy(seg) / energy(near_only)),
        near_ncc: a.ncc,
        double_talk_ncc: dot / (energy(x) * energy(y)).sqrt(),
        cpu_percent: seconds / 20.0 * 100.0,
        allocations_per_block: allocs as f64 / (s.mic.len() / N) as f64,
    }
}

fn run_sonora(s: &Scene) -> EchoFigures {
    let mono = sonora::StreamConfig::new(48_000, 1);
    let mut apm = sonora::AudioProcessing::builder()
        .config(sonora::Config {
            echo_canceller: Some(sonora::config::EchoCanceller {
                enforce_high_pass_filtering: false,
                ..Default::default()
            }),
            ..Default::default()
        })
        .capture_config(mono)
        .render_config(mono)
        .build();
    let _ = apm.set_stream_delay_ms(0);
    let mut out = vec![0f32; s.mic.len()];
    let mut scratch = [0f32; N];
    let (t, a) = (Instant::now(), ALLOCATIONS.load(Ordering::Relaxed));
    for i in (0..s.mic.len() / N * N).step_by(N) {
        apm.process_render_f32(&[&s.far[i..i + N]], &mut [&mut scratch])
            .expect("10 ms mono");
        apm.process_capture_f32(&[&s.mic[i..i + N]], &mut [&mut out[i..i + N]])
            .expect("10 ms mono");
    }
    let (secs, allocs) = (
        t.elapsed().as_secs_f64(),
        ALLOCATIONS.load(Ordering::Relaxed) - a,
    );
    echo_figures("sonora 0.2", s, &out, secs, allocs)
}

fn run_aec3(s: &Scene) -> EchoFigures {
    let format = aec3::nodes::audio::AudioFormat::ten_ms(48_000, 1);
    let mut p = aec3::pipelines::linear::builder(format, format)
        .enable_high_pass_filter(false)
        .enable_noise_suppression(false)
        .enable_gain_controller2(false)
        .enable_post_filter(false)
        .build()
        .expect("a valid pipeline");
    let mut out = vec![0f32; s.mic.len()];
    let (t, a) = (Instant::now(), ALLOCATIONS.load(Ordering::Relaxed));
    for i in (0..s.mic.len() / N * N).step_by(N) {
        p.handle_render_frame(&s.far[i..i + N]).expect("10 ms mono");
        p.process_capture_frame(&s.mic[i..i + N], &mut out[i..i + N])
            .expect("10 ms mono");
    }
    let (secs, allocs) = (
        t.elapsed().as_secs_f64(),
        ALLOCATIONS.load(Ordering::Relaxed) - a,
    );
    echo_figures("aec3 0.4", s, &out, secs, allocs)
}

/// CPU time of `config` per 10 ms block, as a share of real time, over `mic` with `far`.
fn cpu_share(config: VoiceConfig, mic: &[f32], far: &[f32]) -> f64 {
    // The best of three runs: other work on a shared machine only ever adds time.
    (0..3)
        .map(|_| {
            let mut p = VoiceProcessor::new(config);
            let mut out = [0f32; N];
            let blocks = mic.len() / N;
            let t = Instant::now();
            for k in 0..blocks {
                let block = k * N..(k + 1) * N;
                p.push_far_end(&far[block.clone()]).expect("10 ms");
                p.process(&mic[block], &mut out).expect("10 ms");
            }
            t.elapsed().as_secs_f64() / (blocks as f64 * 0.01) * 100.0
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    println!("# Echo cancellation (far end through delay + 30 ms room at -6 dB, no delay hint)");
    for delay in [40.0, 80.0, 120.0] {
        let s = scene(delay);
        for f in [run_sonora(&s), run_aec3(&s)] {
            println!(
                "{delay:>4} ms  {:<10} ERLE {:5.1} dB (0.5-2 s) {:5.1} dB (2-8 s) {:5.1} dB (after double talk); \
                 near end alone {:+.1} dB, ncc {:.3}; double talk ncc {:.2}; CPU {:.2} % of real time; \
                 {:.1} allocations per 10 ms",
                f.name,
                f.erle[0],
                f.erle[1],
                f.erle[2],
                f.near_level_db,
                f.near_ncc,
                f.double_talk_ncc,
                f.cpu_percent,
                f.allocations_per_block,
            );
        }
    }

    println!("\n# Noise suppression (pink noise, 5 dB SNR)");
    let mut clean = speech_like(12.0, 7);
    for (i, s) in clean.iter_mut().enumerate() {
        if !(at(1.0)..at(5.0)).contains(&i) && !(at(6.5)..at(10.5)).contains(&i) {
            *s = 0.0;
        }
    }
    let speech_rms = rms(&clean[at(1.0)..at(5.0)]);
    for (name, noise) in [
        ("pink", pink_noise(12.0, speech_rms / 10f64.powf(0.25), 8)),
        ("white", white_noise(12.0, speech_rms / 10f64.powf(0.25), 8)),
    ] {
        let noisy: Vec<f32> = clean.iter().zip(&noise).map(|(s, n)| s + n).collect();
        let mut p = VoiceProcessor::new(VoiceConfig {
            high_pass: false,
            echo_cancel: false,
            noise_suppression: true,
            agc: false,
        });
        let mut out = vec![0f32; noisy.len()];
        let mut speech_blocks = (0, 0);
        let mut quiet_blocks = (0, 0);
        for (k, (i, o)) in noisy
            .chunks_exact(N)
            .zip(out.chunks_exact_mut(N))
            .enumerate()
        {
            p.process(i, o).expect("10 ms");
            let t = k as f64 / 100.0;
            let in_speech = [(1.0, 5.0), (6.5, 10.5)]
                .iter()
                .any(|&(a, b)| t > a && t <= b);
            let quiet = [(5.3, 6.4), (10.8, 12.0)]
                .iter()
                .any(|&(a, b)| t > a && t <= b);
            if in_speech && rms(&clean[(k - 1) * N..k * N]) > 0.02 {
                speech_blocks.0 += 1;
                speech_blocks.1 += p.is_speech() as usize;
            } else if quiet {
                quiet_blocks.0 += 1;
                quiet_blocks.1 += p.is_speech() as usize;
            }
        }
        let drop =
            db(energy(&noisy[at(10.8)..at(12.0) - N]) / energy(&out[at(10.8) + N..at(12.0)]));
        let reference = &clean[at(1.0)..at(5.0)];
        let before = align(&noisy, reference, reference.len()).map_or(0.0, |a| a.ncc);
        let after = align(&out, reference, reference.len()).map_or(0.0, |a| a.ncc);
        println!(
            "{name:>5}: noise-only {drop:.1} dB quieter; speech correlation with clean {before:.3} -> {after:.3}; \
             speaking flag on {:.0} % of speech blocks, {:.0} % of noise-only blocks",
            100.0 * speech_blocks.1 as f64 / speech_blocks.0 as f64,
            100.0 * quiet_blocks.1 as f64 / quiet_blocks.0 as f64,
        );
    }

    println!("\n# CPU per 10 ms block, share of one core's real time (this machine, now)");
    let s = scene(80.0);
    let none = VoiceConfig {
        high_pass: false,
        echo_cancel: false,
        noise_suppression: false,
        agc: false,
    };
    // RNNoise runs in every configuration (it gives voice activity), so "base" includes it.
    let base = cpu_share(none, &s.mic, &s.far);
    let rows = [
        ("base: RNNoise (VAD) + limiter", none),
        (
            "+ high-pass",
            VoiceConfig {
                high_pass: true,
                ..none
            },
        ),
        (
            "+ noise suppression (mix only)",
            VoiceConfig {
                noise_suppression: true,
                ..none
            },
        ),
        ("+ AGC", VoiceConfig { agc: true, ..none }),
        (
            "+ echo cancellation",
            VoiceConfig {
                echo_cancel: true,
                ..none
            },
        ),
        ("all stages", VoiceConfig::default()),
    ];
    for (name, config) in rows {
        let share = if name.starts_with("base") {
            base
        } else {
            cpu_share(config, &s.mic, &s.far)
        };
        println!(
            "{name:<34} {share:5.2} %  ({:+.2} % over the base)",
            share - base
        );
    }
}
