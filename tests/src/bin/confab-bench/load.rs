//! `confab-bench load`: the SFU's cost per outgoing packet against the kernel's floor (issue 6).
//!
//! One bounded run:
//! - the floor: a plain UDP sender with the server's syscall strategy (`sendmmsg`, batches of
//!   [`confab_rtc::SEND_BATCH`] datagrams to distinct addresses, through the same
//!   [`confab_rtc::DatagramBatch`] the server's mux sends forwarded copies with), packets
//!   of the size the SFU sends, 50 per second to each of N loopback sockets; its thread's CPU
//!   per packet, plus SRTP protection per packet on the profile webrtc-rs negotiates first
//!   (AEAD AES-128-GCM) measured in a loop;
//! - the SFU: a `confab-server` process, M speakers (`--speakers`, 1 by default) sending
//!   pre-encoded Opus at 50 packets/s with RFC 6464 levels 6 dB apart (the host loudest), of
//!   whom the server forwards the loudest three, and N listeners with real ICE, DTLS and SRTP joining in steps (100, 500, 1,000, 2,000 by
//!   default). At each step, over a window, the server's utime + stime from `/proc` over the
//!   packets the listeners received, the loss, the forwarding delay (speaker's hand-over to a
//!   listener's arrival, on a sample of listeners) and the join times of that step's joiners.
//!   Loss and delay follow the host's packets (listeners learn its slot from `Slot`
//!   messages); the packets each listener received per second, from every slot, show how
//!   many speakers were forwarded.
//!
//! Listeners are as light as a WebRTC peer can be: signaling by hand and a sans-IO `rtc`
//! connection each, all on one thread, no decoder, no jitter buffer; they count packets, and
//! only the sampled ones decrypt them ([`crate::light`]). The server is pinned to one core and the
//! generator to the other (when `taskset` and two cores exist), so "one core holds" means what
//! it says and the generator's CPU is never the server's.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_audio::{
    Encoded, Encoder, EncoderConfig, FRAME_SAMPLES, FrameLevel, MAX_PACKET_BYTES, Outgoing,
};
use confab_client::{Client, ClientConfig};
use confab_proto::{
    ClientMsg, PROTOCOL_VERSION, ParticipantId, ServerMsg, SpaceId, decode_server, encode,
};
use confab_tests::bench::cpu::{process_ticks, ticks_per_second};
use confab_tests::bench::report::percentile;
use confab_tests::signal::speech_like;
use confab_tests::storm::next_msg;

use crate::light::{LightPeers, OnPacket};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Hard caps: the run must stay bounded whatever the flags say.
const MAX_LISTENERS: usize = 3000;
const MAX_WINDOW_SECONDS: f64 = 60.0;
const MAX_RUN_SECONDS: u64 = 1800;
/// RTP header (12) + the AEAD AES-128-GCM tag (16) around each Opus payload.
const RTP_HEADER: usize = 12;
const SRTP_GCM_TAG: usize = 16;
/// Listeners whose every packet is stamped on arrival for the delay figures.
const DELAY_SAMPLE: usize = 20;
/// At most this many speakers (the host and the room's default of 10 speakers).
const MAX_SPEAKERS: usize = 11;
/// A step whose forwarding delay p99 is above this is not "held", loss or none: the server's
/// queue is growing (a saturated core can keep up with no loss for the length of a window
/// while every listener hears the host later and later).
const HELD_DELAY_P99_MS: f64 = 200.0;
/// The speakers a listener receives at once (the server's default `max_forwarded_speakers`).
const FORWARDED: usize = 3;
/// The host's packets say -20 dBov; each further speaker's 6 dB quieter.
const HOST_DBOV: u8 = 20;
const DBOV_STEP: u8 = 6;

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct LoadArgs {
    /// Listener counts to measure at, ascending (listeners join in steps and stay).
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    listeners: Vec<usize>,
    /// Seconds each measurement window lasts (the floor's window too).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 16)]
    join_concurrency: usize,
    /// The whole run ends by then, measured or not.
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
    /// The `confab-server` binary [default: next to this one].
    #[arg(long)]
    server: Option<std::path::PathBuf>,
    /// Do not pin the server and the generator to separate cores.
    #[arg(long)]
    no_pin: bool,
    /// Speakers sending at once (the host and M - 1 more on stage), 1..=11; the server
    /// forwards the loudest three.
    #[arg(long, default_value_t = 1)]
    speakers: usize,
}

/// Runs the benchmark; the process exits within `--max-seconds` whatever happens.
pub(crate) fn run(args: LoadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.listeners.is_empty()
            && args.listeners.windows(2).all(|w| w[0] < w[1])
            && args.listeners[0] >= 1
            && *args.listeners.last().unwrap_or(&0) <= MAX_LISTENERS,
        "--listeners must ascend, each 1..={MAX_LISTENERS}"
    );
    anyhow::ensure!(
        args.seconds >= 2.0 && args.seconds <= MAX_WINDOW_SECONDS,
        "--seconds must be 2..={MAX_WINDOW_SECONDS}"
    );
    anyhow::ensure!(
        (1..=64).contains(&args.join_concurrency),
        "--join-concurrency must be 1..=64"
    );
    anyhow::ensure!(
        (1..=MAX_SPEAKERS).contains(&args.speakers),
        "--speakers must be 1..={MAX_SPEAKERS}"
    );
    anyhow::ensure!(
        (10..=MAX_RUN_SECONDS).contains(&args.max_seconds),
        "--max-seconds must be 10..={MAX_RUN_SECONDS}"
    );
    let max_n = *args.listeners.last().unwrap_or(&1);
    // Each listener holds a WebSocket and a UDP socket here; the floor holds N sockets.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    anyhow::ensure!(
        nofile >= (max_n as u64) * 3 + 256,
        "RLIMIT_NOFILE is {nofile} at most: too few descriptors for {max_n} listeners"
    );

    let pin = !args.no_pin && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    if pin {
        // Before any thread exists, so every thread inherits core 1.
        pin_self_to(1);
    }
    let deadline = Duration::from_secs(args.max_seconds);
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        eprintln!("confab-bench load: --max-seconds ({deadline:?}) reached; stopping");
        let server = SERVER_PID.load(Ordering::Relaxed);
        if server != 0 {
            let _ = Command::new("kill").arg(server.to_string()).status();
        }
        std::process::exit(2);
    });

    let payloads = pre_encoded()?;
    let mean_payload = payloads.iter().map(|p| p.len()).sum::<usize>() / payloads.len();
    let packet_bytes = RTP_HEADER + mean_payload + SRTP_GCM_TAG;

    println!(
        "confab-bench load: {} speaker(s) (levels -{HOST_DBOV} dBov down in {DBOV_STEP} dB \
         steps), listeners {:?}, {} s windows, packets {} bytes \
         (RTP {RTP_HEADER} + Opus {mean_payload} + GCM tag {SRTP_GCM_TAG}), server {}",
        args.speakers,
        args.listeners,
        args.seconds,
        packet_bytes,
        if pin {
            "on core 0, generator on core 1"
        } else {
            "and generator unpinned"
        }
    );
    let srtp_gcm = srtp_protect_us(
        rtc::srtp::protection_profile::ProtectionProfile::AeadAes128Gcm,
        mean_payload,
    )?;
    let srtp_cm = srtp_protect_us(
        rtc::srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80,
        mean_payload,
    )?;
    println!(
        "SRTP protect (loop)        AEAD-AES-128-GCM {srtp_gcm:.3} µs/packet (negotiated), \
         AES-128-CM-SHA1-80 {srtp_cm:.3} µs/packet"
    );
    let window = Duration::from_secs_f64(args.seconds);
    let mut floors = Vec::new();
    for &n in &args.listeners {
        let span = window.min(Duration::from_secs(5));
        let polled = udp_floor_us(n, packet_bytes, span, false)?;
        let waited = udp_floor_us(n, packet_bytes, span, true)?;
        println!(
            "floor, N = {n:5}           sendmmsg {polled:.3} µs/packet (receivers polled), \
             {waited:.3} (receivers waiting in epoll) + SRTP {srtp_gcm:.3} = {:.3} / {:.3} µs/packet",
            polled + srtp_gcm,
            waited + srtp_gcm
        );
        floors.push((polled + srtp_gcm, waited + srtp_gcm));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(if pin { 1 } else { 2 })
        .enable_all()
        .build()?;
    let result = runtime.block_on(sfu_run(&args, payloads, &floors, pin));
    // Thousands of sessions would take a while to close one by one; the server is gone and
    // the figures are printed, so the process simply ends.
    if let Err(e) = &result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// Sets this process's (and its future threads') CPU affinity with `taskset`.
fn pin_self_to(core: usize) {
    let ok = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &core.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("confab-bench load: could not pin to core {core} (taskset); running unpinned");
    }
}

/// One second of speech-like signal, Opus-encoded once; speakers loop over it. DTX frames
/// are left out so a speaker sends exactly 50 packets per second.
fn pre_encoded() -> anyhow::Result<Vec<Vec<u8>>> {
    let mut enc = Encoder::new(&EncoderConfig::default())?;
    let mut out = vec![0u8; MAX_PACKET_BYTES];
    let mut packets = Vec::new();
    for frame in speech_like(2.0, 7).chunks(FRAME_SAMPLES) {
        let mut f = frame.to_vec();
        f.resize(FRAME_SAMPLES, 0.0);
        if let Encoded::Packet(n) = enc.encode(&f, &mut out)? {
            packets.push(out[..n].to_vec());
        }
    }
    anyhow::ensure!(!packets.is_empty(), "the encoder produced no packet");
    Ok(packets)
}

/// This thread's CPU time so far, ns (`/proc/thread-self/schedstat`: exact, not in ticks).
fn thread_cpu_ns() -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("unreadable /proc/thread-self/schedstat")
}

/// The floor: one thread sends `bytes`-byte datagrams in `sendmmsg` batches, every 20 ms to
/// each of `n` loopback sockets, for `window`; returns its CPU µs per packet. The receivers
/// are drained so their queues never fill (a full queue would make the send cheaper):
/// - `waiting: false`, by a thread that polls them every 5 ms: nobody waits on them, so a
///   send wakes no one;
/// - `waiting: true`, by one thread waiting on all of them in epoll (a task per socket on a
///   current-thread tokio runtime), as the load generator's listeners and any real client do.
///   On loopback the sender pays for the receiver's wake-up, so this is the floor for the
///   SFU's sends to the generator.
fn udp_floor_us(n: usize, bytes: usize, window: Duration, waiting: bool) -> anyhow::Result<f64> {
    let receivers: Vec<UdpSocket> = (0..n)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<_>>()
        .context("binding the floor's receivers")?;
    let addrs: Vec<_> = receivers
        .iter()
        .map(|s| s.local_addr())
        .collect::<std::io::Result<_>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let drain = if waiting {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return 0;
            };
            let local = tokio::task::LocalSet::new();
            let got = std::rc::Rc::new(std::cell::Cell::new(0u64));
            local.block_on(&rt, async {
                for s in receivers {
                    let got = std::rc::Rc::clone(&got);
                    let Ok(s) = tokio::net::UdpSocket::from_std(s) else {
                        continue;
                    };
                    tokio::task::spawn_local(async move {
                        let mut buf = [0u8; 2048];
                        while s.readable().await.is_ok() {
                            while s.try_recv(&mut buf).is_ok() {
                                got.set(got.get() + 1);
                            }
                        }
                    });
                }
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            got.get()
        })
    } else {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut got = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for s in &receivers {
                    while s.recv(&mut buf).is_ok() {
                        got += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            got
        })
    };
    let sender = std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        let packet = vec![0x5au8; bytes];
        let mut batch = confab_rtc::DatagramBatch::new(confab_rtc::SEND_BATCH);
        let start = Instant::now();
        let cpu0 = thread_cpu_ns()?;
        let mut sent = 0u64;
        let mut tick = start;
        while start.elapsed() < window {
            for a in &addrs {
                batch.buffer().extend_from_slice(&packet);
                batch.push(*a);
                if batch.is_full() {
                    sent += batch.send(&socket).sent;
                }
            }
            sent += batch.send(&socket).sent;
            tick += Duration::from_millis(20);
            if let Some(wait) = tick.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        Ok((thread_cpu_ns()? - cpu0, sent))
    });
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the floor's sender panicked"));
    stop.store(true, Ordering::Relaxed);
    let _ = drain.join();
    let (cpu_ns, sent) = sent??;
    anyhow::ensure!(sent > 0, "the floor sent nothing");
    Ok(cpu_ns as f64 / 1e3 / sent as f64)
}

/// SRTP protection of one RTP packet with a `payload`-byte payload, µs, in a loop.
fn srtp_protect_us(
    profile: rtc::srtp::protection_profile::ProtectionProfile,
    payload: usize,
) -> anyhow::Result<f64> {
    use rtc::rtp::header::Header;
    let provider = rtc::crypto::default_provider().context("no crypto provider")?;
    let key: Vec<u8> = (0..profile.key_len()).map(|i| i as u8 * 7 + 1).collect();
    let salt: Vec<u8> = (0..profile.salt_len()).map(|i| i as u8 * 3 + 5).collect();
    let mut ctx =
        rtc::srtp::context::Context::new(&key, &salt, profile, None, None, provider.crypto())
            .context("an SRTP context")?;
    let body = vec![0x33u8; payload];
    let iterations: u32 = 200_000;
    let mut plain = Vec::with_capacity(RTP_HEADER + payload);
    let start = Instant::now();
    for i in 0..iterations {
        let header = Header {
            version: 2,
            payload_type: 111,
            sequence_number: i as u16,
            timestamp: i.wrapping_mul(960),
            ssrc: 0x1234_5678,
            ..Default::default()
        };
        plain.clear();
        plain.extend_from_slice(&[0x80, 111, (i >> 8) as u8, i as u8]);
        plain.extend_from_slice(&header.timestamp.to_be_bytes());
        plain.extend_from_slice(&header.ssrc.to_be_bytes());
        plain.extend_from_slice(&body);
        let out = ctx
            .encrypt_rtp_with_header(&plain, &header)
            .context("SRTP protect")?;
        std::hint::black_box(out);
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / iterations as f64)
}

/// The server's PID while it runs, for the deadline's watchdog to end it too.
static SERVER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The server process, killed when dropped.
struct ServerProcess {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        SERVER_PID.store(0, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &LoadArgs, pin: bool) -> anyhow::Result<ServerProcess> {
    let binary = match &args.server {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary's directory")?
            .join("confab-server"),
    };
    anyhow::ensure!(
        binary.exists(),
        "{} not found (build it: cargo build --release -p confab-server)",
        binary.display()
    );
    let data = tempfile::tempdir()?;
    let log = std::fs::File::create(data.path().join("server.log"))?;
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&binary);
        c
    } else {
        Command::new(&binary)
    };
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("CONFAB_LOG", "warn,webrtc=error,rtc=error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    let mut child = cmd.spawn().context("starting confab-server")?;
    let stdout = child.stdout.take().context("the server's stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let Some(url) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        bail!("the server said {line:?} instead of where it listens");
    };
    SERVER_PID.store(child.id(), Ordering::Relaxed);
    Ok(ServerProcess {
        url: url.to_owned(),
        child,
        _data: data,
    })
}

/// What the speaker sent: the instant each frame was handed to its connection.
struct Speaker {
    base: u32,
    sent_at: Mutex<Vec<Instant>>,
    sent: AtomicU64,
}

/// What one listener received.
#[derive(Default)]
struct Heard {
    packets: AtomicU64,
    /// Packets of the frames the speaker sent during the current window (see [`Window`]).
    in_window: AtomicU64,
    /// (RTP timestamp, arrival) of every packet, for the sampled listeners only.
    samples: Option<Mutex<Vec<(u32, Instant)>>>,
    /// The receive slot that carries the host now (`usize::MAX`: none), from `Slot` messages.
    host_slot: AtomicUsize,
}

impl Heard {
    /// Keeps track of the host's slot.
    fn note(&self, msg: &ServerMsg, host: ParticipantId) {
        if let ServerMsg::Slot { slot, speaker } = msg {
            let slot = usize::from(*slot);
            if *speaker == Some(host) {
                self.host_slot.store(slot, Ordering::Relaxed);
            } else {
                let _ = self.host_slot.compare_exchange(
                    slot,
                    usize::MAX,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
    }
}

/// The speaker's frames a measurement window covers, `lo..hi` by frame index: loss is what
/// of them never arrived (however late), not how many packets arrived while the window was
/// open (a growing backlog would look like loss).
struct Window {
    base: u32,
    lo: AtomicU64,
    hi: AtomicU64,
}

impl Window {
    fn covers(&self, timestamp: u32) -> bool {
        let k = u64::from(timestamp.wrapping_sub(self.base)) / FRAME_SAMPLES as u64;
        k >= self.lo.load(Ordering::Relaxed) && k < self.hi.load(Ordering::Relaxed)
    }
}

/// A listener that joined: its join time, its counters.
struct Listener {
    heard: Arc<Heard>,
    join_ms: f64,
    _task: tokio::task::JoinHandle<()>,
}

/// Joins `space` as a listener with nothing but signaling and a peer session; returns once the
/// first packet arrived (15 s at most). Its task counts packets until the process ends.
async fn join_listener(
    light: &LightPeers,
    url: &str,
    space: SpaceId,
    host: ParticipantId,
    index: usize,
    sampled: bool,
    window: Arc<Window>,
) -> anyhow::Result<Listener> {
    let heard = Arc::new(Heard {
        packets: AtomicU64::new(0),
        in_window: AtomicU64::new(0),
        samples: sampled.then(|| Mutex::new(Vec::new())),
        host_slot: AtomicUsize::new(usize::MAX),
    });
    let ws_url = format!("{}/ws", url.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await?;
    let send = |msg: &ClientMsg| Message::Text(encode(msg).into());
    ws.send(send(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        name: format!("l{index}"),
        token: None,
    }))
    .await?;
    loop {
        match next_msg(&mut ws).await? {
            ServerMsg::Welcome { .. } => break,
            ServerMsg::Error { message, .. } => bail!("hello refused: {message}"),
            _ => {}
        }
    }
    let start = Instant::now();
    ws.send(send(&ClientMsg::Join { space })).await?;
    loop {
        match next_msg(&mut ws).await? {
            ServerMsg::Joined { .. } => break,
            ServerMsg::Error { message, .. } => bail!("join refused: {message}"),
            other => heard.note(&other, host),
        }
    }
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Instant>();
    let on_packet: OnPacket = {
        let heard = Arc::clone(&heard);
        // Whichever slot carries the host's first packet answers the join.
        let first = Mutex::new(Some(first_tx));
        Box::new(move |slot, timestamp, now| {
            heard.packets.fetch_add(1, Ordering::Relaxed);
            if slot != heard.host_slot.load(Ordering::Relaxed) {
                return;
            }
            if window.covers(timestamp) {
                heard.in_window.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(tx) = first.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(now);
            }
            if let Some(s) = &heard.samples {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((timestamp, now));
            }
        })
    };
    // Sampled listeners decrypt their media; the others count it from the SRTP header.
    let (key, sdp) = light.offer(sampled, on_packet).await?;
    ws.send(send(&ClientMsg::Offer { sdp })).await?;
    loop {
        match next_msg(&mut ws).await? {
            ServerMsg::Answer { sdp } => break light.answer(key, sdp).await?,
            ServerMsg::Error { message, .. } => bail!("offer refused: {message}"),
            other => heard.note(&other, host),
        }
    }
    let task = {
        let heard = Arc::clone(&heard);
        tokio::spawn(async move {
            // Signaling is drained (participant lists grow with every join); only where the
            // host is matters.
            while let Some(frame) = ws.next().await {
                match frame {
                    Ok(Message::Text(t)) => {
                        if let Ok(msg) = decode_server(t.as_str()) {
                            heard.note(&msg, host);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        })
    };
    let first = tokio::time::timeout(Duration::from_secs(15), first_rx)
        .await
        .context("no audio within 15 s of joining")?
        .context("the listener ended before any audio")?;
    Ok(Listener {
        heard,
        join_ms: first.duration_since(start).as_secs_f64() * 1e3,
        _task: task,
    })
}

/// Starts the host (the one speaker) and its sending task.
async fn start_speaker(
    url: &str,
    payloads: Vec<Vec<u8>>,
) -> anyhow::Result<(Client, SpaceId, Arc<Speaker>)> {
    let (host, mut streams) = Client::connect(ClientConfig::new(url.to_owned(), "speaker")).await?;
    let joined = host.create("load").await?;
    crate::clients::wait_connected(&mut streams).await?;
    let mic = host.mic().await?;
    let speaker = Arc::new(Speaker {
        base: mic.base_timestamp(),
        sent_at: Mutex::new(Vec::with_capacity(50 * 600)),
        sent: AtomicU64::new(0),
    });
    // Nothing comes back to a lone speaker, but the streams must not fill.
    let confab_client::Streams {
        mut events,
        mut audio,
    } = streams;
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    tokio::spawn(async move { while audio.recv().await.is_some() {} });
    {
        let speaker = Arc::clone(&speaker);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(20));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for p in payloads.iter().cycle() {
                ticker.tick().await;
                // Stamped before the hand-over, in frame order: frame n is the n-th stamp.
                speaker
                    .sent_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Instant::now());
                if mic
                    .try_send_encoded(Outgoing::Packet(
                        p,
                        FrameLevel {
                            dbov: HOST_DBOV,
                            voice: true,
                        },
                    ))
                    .is_ok()
                {
                    speaker.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    Ok((host, joined.space.id, speaker))
}

/// Brings `count` more speakers on stage in the host's space (signed-in accounts) and starts
/// them sending the same pre-encoded Opus as the host, each `DBOV_STEP` dB quieter than the
/// one before. Their clients are returned so they stay connected.
async fn start_more_speakers(
    url: &str,
    host: &Client,
    space: &SpaceId,
    count: usize,
    payloads: &[Vec<u8>],
) -> anyhow::Result<(Vec<Client>, tempfile::TempDir)> {
    let keys = tempfile::tempdir()?;
    let mut clients = Vec::new();
    for k in 1..=count {
        let handle = format!("speaker{k}");
        let token = confab_tests::sign_in(url, keys.path(), &handle).await?;
        let (client, mut streams) =
            Client::connect(ClientConfig::new(url.to_owned(), handle.as_str()).with_token(token))
                .await?;
        client.join(space).await?;
        let mic = client.mic().await?;
        confab_tests::bring_on_stage(host, &client, &mut streams.events).await?;
        let confab_client::Streams {
            mut events,
            mut audio,
        } = streams;
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        tokio::spawn(async move { while audio.recv().await.is_some() {} });
        let dbov = HOST_DBOV.saturating_add(DBOV_STEP.saturating_mul(k as u8));
        let payloads = payloads.to_vec();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(20));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            // Each starts at another point of the speech, as different voices would.
            for p in payloads.iter().cycle().skip(k * 7) {
                ticker.tick().await;
                let level = FrameLevel { dbov, voice: true };
                let _ = mic.try_send_encoded(Outgoing::Packet(p, level));
            }
        });
        clients.push(client);
    }
    Ok((clients, keys))
}

/// Time the process's threads spent runnable but waiting for a CPU, ns (the second field of
/// each `/proc/PID/task/TID/schedstat`), summed over its live threads.
fn runqueue_wait_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(|e| {
        let s = std::fs::read_to_string(e.ok()?.path().join("schedstat")).ok()?;
        s.split_whitespace().nth(1)?.parse::<u64>().ok()
    })
    .sum()
}

/// The kernel's UDP counters (`/proc/net/snmp`), machine-wide.
#[derive(Clone, Copy)]
struct UdpCounters {
    received: u64,
    out: u64,
    rcvbuf_errors: u64,
}

fn udp_counters() -> Option<UdpCounters> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        values
            .get(names.iter().position(|n| *n == name)?)?
            .parse()
            .ok()
    };
    Some(UdpCounters {
        received: get("InDatagrams")?,
        out: get("OutDatagrams")?,
        rcvbuf_errors: get("RcvbufErrors")?,
    })
}

/// One step's figures.
struct Step {
    n: usize,
    failed_joins: usize,
    server_us: f64,
    server_core_pct: f64,
    generator_core_pct: f64,
    loss: f64,
    delay: (f64, f64, usize),
    join: (f64, f64, usize),
}

fn p50_p99(mut v: Vec<f64>) -> (f64, f64, usize) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99), v.len())
}

async fn sfu_run(
    args: &LoadArgs,
    payloads: Vec<Vec<u8>>,
    floors: &[(f64, f64)],
    pin: bool,
) -> anyhow::Result<()> {
    let server = start_server(args, pin)?;
    let server_pid = server.child.id();
    let me = std::process::id();
    let hz = ticks_per_second() as f64;
    let (host, space, speaker) = start_speaker(&server.url, payloads.clone()).await?;
    let host_id = host.id();
    let (_speakers, _keys) =
        start_more_speakers(&server.url, &host, &space, args.speakers - 1, &payloads).await?;
    let forwarded = args.speakers.min(FORWARDED);
    let window = Duration::from_secs_f64(args.seconds);
    let frames = Arc::new(Window {
        base: speaker.base,
        lo: AtomicU64::new(u64::MAX),
        hi: AtomicU64::new(u64::MAX),
    });
    let stamped = || {
        speaker
            .sent_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len() as u64
    };
    let light = LightPeers::start()?;
    let mut listeners: Vec<Listener> = Vec::new();
    let mut steps = Vec::new();
    for &n in &args.listeners {
        let join_from = listeners.len();
        let attempts = n - join_from;
        let url = server.url.clone();
        let space = space.clone();
        let joined: Vec<anyhow::Result<Listener>> = futures_util::stream::iter(join_from..n)
            .map(|i| {
                let url = url.clone();
                let space = space.clone();
                let frames = Arc::clone(&frames);
                let light = light.clone();
                async move {
                    join_listener(&light, &url, space, host_id, i, i < DELAY_SAMPLE, frames).await
                }
            })
            .buffer_unordered(args.join_concurrency)
            .collect()
            .await;
        let mut failed = 0;
        let mut first_error = None;
        let mut joins = Vec::new();
        for j in joined {
            match j {
                Ok(l) => {
                    joins.push(l.join_ms);
                    listeners.push(l);
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            eprintln!("{failed} of {attempts} joins failed; the first: {e:#}");
        }
        // Let the joins' signaling storm settle before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;

        let received = |ls: &[Listener]| -> u64 {
            ls.iter()
                .map(|l| l.heard.packets.load(Ordering::Relaxed))
                .sum()
        };
        // The sampled listeners are the first to be asked to join, not the first in
        // `listeners` (joins finish in any order).
        for l in &listeners {
            if let Some(s) = &l.heard.samples {
                s.lock().unwrap_or_else(|e| e.into_inner()).clear();
            }
        }
        for l in &listeners {
            l.heard.in_window.store(0, Ordering::Relaxed);
        }
        frames.hi.store(u64::MAX, Ordering::Relaxed);
        frames.lo.store(stamped(), Ordering::Relaxed);
        let udp0 = udp_counters();
        let wait0 = runqueue_wait_ns(server_pid);
        let (srv0, me0, sent0, got0, t0) = (
            process_ticks(server_pid)?,
            process_ticks(me)?,
            speaker.sent.load(Ordering::Relaxed),
            received(&listeners),
            Instant::now(),
        );
        tokio::time::sleep(window).await;
        let (srv1, me1, sent1, got1, wall) = (
            process_ticks(server_pid)?,
            process_ticks(me)?,
            speaker.sent.load(Ordering::Relaxed),
            received(&listeners),
            t0.elapsed(),
        );
        frames.hi.store(stamped(), Ordering::Relaxed);
        let udp1 = udp_counters();
        let wait1 = runqueue_wait_ns(server_pid);
        let got = got1 - got0;
        let expected = (sent1 - sent0) * listeners.len() as u64 * forwarded as u64;
        // The window's last frames are still on their way (or queued in the server): wait
        // until nothing more of them arrives, 5 s at most.
        let in_window = |ls: &[Listener]| -> u64 {
            ls.iter()
                .map(|l| l.heard.in_window.load(Ordering::Relaxed))
                .sum()
        };
        let mut arrived = in_window(&listeners);
        let drain_until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = in_window(&listeners);
            if now == arrived {
                break;
            }
            arrived = now;
        }
        let window_frames = frames.hi.load(Ordering::Relaxed) - frames.lo.load(Ordering::Relaxed);
        let due = window_frames * listeners.len() as u64;
        let server_s = (srv1 - srv0) as f64 / hz;
        let delays = {
            let sent_at = speaker.sent_at.lock().unwrap_or_else(|e| e.into_inner());
            let mut d = Vec::new();
            for l in &listeners {
                let Some(s) = &l.heard.samples else { continue };
                for &(ts, at) in s.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    let k = ts.wrapping_sub(speaker.base) / FRAME_SAMPLES as u32;
                    if let Some(sent) = sent_at.get(k as usize) {
                        d.push(at.saturating_duration_since(*sent).as_secs_f64() * 1e3);
                    }
                }
            }
            d
        };
        // A server that falls behind while using less than its core waited for the core:
        // on a shared machine other processes run there too.
        println!(
            "  server threads waited {:.0} ms for a CPU over the {:.0} s window",
            wait1.saturating_sub(wait0) as f64 / 1e6,
            wall.as_secs_f64()
        );
        if let (Some(a), Some(b)) = (udp0, udp1) {
            // Where loss happens: never sent, or dropped at a listener's full socket.
            println!(
                "  kernel UDP over the window (whole machine): {} datagrams out, {} in, \
                 {} dropped at full receive buffers; {} expected from the server",
                b.out - a.out,
                b.received - a.received,
                b.rcvbuf_errors - a.rcvbuf_errors,
                expected
            );
        }
        let per_listener = got as f64 / listeners.len().max(1) as f64 / wall.as_secs_f64();
        println!(
            "  each listener received {per_listener:.1} packets/s from all its slots \
             ({} speakers sending 50 packets/s; {forwarded} forwarded would be {})",
            args.speakers,
            forwarded * 50
        );
        let step = Step {
            n: listeners.len(),
            failed_joins: failed,
            server_us: if got > 0 {
                server_s * 1e6 / got as f64
            } else {
                f64::NAN
            },
            server_core_pct: server_s / wall.as_secs_f64() * 100.0,
            generator_core_pct: (me1 - me0) as f64 / hz / wall.as_secs_f64() * 100.0,
            loss: if due > 0 {
                (1.0 - arrived as f64 / due as f64).max(0.0)
            } else {
                f64::NAN
            },
            delay: p50_p99(delays),
            join: p50_p99(joins),
        };
        println!(
            "N = {:5} ({} failed joins): server {:.2} µs/packet ({:.0} % of a core), \
             generator {:.0} % of a core; loss {:.3} %; delay p50 {:.2} ms p99 {:.2} ms ({} samples); \
             join p50 {:.0} ms p99 {:.0} ms ({} joins)",
            step.n,
            step.failed_joins,
            step.server_us,
            step.server_core_pct,
            step.generator_core_pct,
            step.loss * 100.0,
            step.delay.0,
            step.delay.1,
            step.delay.2,
            step.join.0,
            step.join.1,
            step.join.2
        );
        steps.push(step);
    }

    println!();
    println!(
        "{:>6} {:>12} {:>12} {:>7} {:>12} {:>7} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "N",
        "floor µs/pkt",
        "server µs/pkt",
        "ratio",
        "floor w µs",
        "ratio w",
        "server%",
        "loss %",
        "delay p50",
        "delay p99",
        "join p50",
        "join p99",
        "gen %"
    );
    for (step, (floor, floor_w)) in steps.iter().zip(floors) {
        println!(
            "{:>6} {:>12.3} {:>13.3} {:>6.2}x {:>12.3} {:>6.2}x {:>8.0} {:>8.3} {:>7.2}ms {:>7.2}ms {:>7.0}ms {:>7.0}ms {:>8.0}",
            step.n,
            floor,
            step.server_us,
            step.server_us / floor,
            floor_w,
            step.server_us / floor_w,
            step.server_core_pct,
            step.loss * 100.0,
            step.delay.0,
            step.delay.1,
            step.join.0,
            step.join.1,
            step.generator_core_pct
        );
    }
    let held = steps
        .iter()
        .filter(|s| {
            s.loss < 0.001
                && s.failed_joins == 0
                && s.server_core_pct < 100.0
                && s.delay.1 < HELD_DELAY_P99_MS
        })
        .map(|s| s.n)
        .max();
    match held {
        Some(n) => println!(
            "largest N one core held with loss < 0.1 % and forwarding delay p99 < \
             {HELD_DELAY_P99_MS} ms: {n}{}",
            if pin { "" } else { " (server unpinned)" }
        ),
        None => println!("no measured N held with loss < 0.1 %"),
    }
    if steps.iter().any(|s| s.generator_core_pct > 90.0) {
        println!(
            "note: the generator used over 90 % of its core at some N: loss and delay there may be \
             the generator's, not the server's"
        );
    }
    drop(server);
    Ok(())
}
