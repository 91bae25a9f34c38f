//! One space across two server nodes: a host on node A, listeners on node B, room events over a
//! real NATS server (started here, on a free loopback port), media relayed A → B once.
//!
//! Skipped, with a message, only when the `nats-server` binary is missing
//! (`scripts/deps.sh test` installs it).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use confab_audio::FRAME_SAMPLES;
use confab_client::{Client, ClientConfig, ClientError, Event, Streams};
use confab_proto::{ClientMsg, ErrorCode, ServerMsg, SpaceId, SpaceSummary};
use confab_server::{ClusterConfig, ClusterStats, ServerConfig, ServerHandle};
use confab_tests::within;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

const RATE: usize = 48_000;
/// The host's "voice": a pure tone on an exact bin of a one-second window.
const TONE_HZ: f64 = 440.0;

/// The tests share two cores with the rest of the machine: one cluster at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A NATS server of our own, killed when dropped.
struct Bus {
    child: tokio::process::Child,
    url: String,
}

impl Bus {
    /// `None` when there is no `nats-server` to run.
    async fn start() -> Option<Bus> {
        let binary = find_binary("nats-server")?;
        let port = free_port();
        let child = tokio::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        within(10, "nats-server to accept connections", async {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        Some(Bus {
            child,
            url: format!("nats://{addr}"),
        })
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A node's config: its own data directory and a fixed loopback address, so a restart is the
/// same node with the same config.
fn node_config(bus: &Bus, node: &str, data_dir: &Path) -> ServerConfig {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut config = ServerConfig::new(data_dir.to_path_buf()).with_listen(listen);
    config.cluster = Some(ClusterConfig {
        bus: bus.url.clone(),
        node: node.to_owned(),
    });
    config
}

/// A bus and two nodes on it, "a" and "b" (with B's config, to restart it).
struct TwoNodes {
    bus: Bus,
    a: ServerHandle,
    b: ServerHandle,
    config_b: ServerConfig,
    _dirs: [tempfile::TempDir; 2],
}

impl TwoNodes {
    /// `None`, with a message, when there is no `nats-server` to run.
    async fn start() -> Option<TwoNodes> {
        let Some(bus) = Bus::start().await else {
            eprintln!("SKIPPED: no nats-server binary (install it: scripts/deps.sh test)");
            return None;
        };
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let a = confab_server::start(node_config(&bus, "a", dirs[0].path()))
            .await
            .unwrap();
        let config_b = node_config(&bus, "b", dirs[1].path());
        let b = confab_server::start(config_b.clone()).await.unwrap();
        Some(TwoNodes {
            bus,
            a,
            b,
            config_b,
            _dirs: dirs,
        })
    }
}

/// The host, "ada", opens a space called `title` on node `a` and speaks the tone; returns once
/// node `b`'s directory lists it.
async fn host_speaking(
    a: &ServerHandle,
    b: &ServerHandle,
    title: &str,
) -> (Client, Streams, SpaceId, JoinHandle<()>) {
    let (host, streams) = Client::connect(ClientConfig::new(a.url(), "ada"))
        .await
        .unwrap();
    let id = host.create(title).await.unwrap().space.id;
    let speaking = speak(host.clone());
    wait_listed(b, &id, 0, "node B to list the space").await;
    (host, streams, id, speaking)
}

async fn directory(server: &ServerHandle) -> Vec<SpaceSummary> {
    reqwest::get(format!("{}/api/spaces", server.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `server`'s directory lists `id` with `listeners` listeners.
async fn wait_listed(server: &ServerHandle, id: &SpaceId, listeners: u32, what: &str) {
    within(15, what, async {
        loop {
            let spaces = directory(server).await;
            if spaces
                .iter()
                .any(|s| &s.id == id && s.listeners == listeners)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// The host speaks: the tone, frame after frame at the audio clock's pace, until aborted.
fn speak(host: Client) -> JoinHandle<()> {
    speak_tone(host, TONE_HZ)
}

/// `who` speaks a pure tone of `hz`, at the audio clock's pace, until aborted.
fn speak_tone(who: Client, hz: f64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mic = who.mic().await.unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut n = 0usize;
        loop {
            tick.tick().await;
            let frame: Vec<f32> = (0..FRAME_SAMPLES)
                .map(|i| {
                    let t = (n + i) as f64 / RATE as f64;
                    (0.3 * (2.0 * std::f64::consts::PI * hz * t).sin()) as f32
                })
                .collect();
            n += FRAME_SAMPLES;
            if mic.send(frame).await.is_err() {
                return;
            }
        }
    })
}

/// The share of `x`'s energy at `hz` (1.0 for a pure tone on an exact bin), by Goertzel.
fn tone_share(x: &[f32], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / RATE as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = v as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let energy: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    if energy == 0.0 {
        0.0
    } else {
        power / (energy * x.len() as f64 / 2.0)
    }
}

/// Waits until a whole second of decoded audio is the host's tone, loud and clean.
async fn hears_tone(streams: &mut Streams, who: &str) {
    let mut heard: Vec<f32> = Vec::new();
    let found = within(20, &format!("{who} to hear the host"), async {
        while let Some(frame) = streams.audio.recv().await {
            heard.extend_from_slice(&frame.samples);
            if heard.len() >= RATE {
                let window = &heard[heard.len() - RATE..];
                let rms = (window.iter().map(|v| v * v).sum::<f32>() / RATE as f32).sqrt();
                if rms > 0.1 && tone_share(window, TONE_HZ) > 0.8 {
                    return (rms, tone_share(window, TONE_HZ));
                }
            }
        }
        panic!("{who}'s audio stream ended");
    })
    .await;
    eprintln!(
        "{who} hears the {TONE_HZ} Hz tone: rms {:.3}, share {:.3}",
        found.0, found.1
    );
}

/// Waits until every tone of `want` has filled `needed` whole seconds of some receive slot
/// (each slot's frames are checked on their own: one speaker a slot), loud and clean; fails at
/// once if any slot carries a tone of `not` meanwhile.
async fn hears_tones(streams: &mut Streams, who: &str, want: &[f64], not: &[f64], needed: usize) {
    let mut slots: std::collections::HashMap<usize, Vec<f32>> = Default::default();
    let mut heard = vec![0usize; want.len()];
    within(30, &format!("{who} to hear {want:?} Hz"), async {
        while let Some(frame) = streams.audio.recv().await {
            let buf = slots.entry(frame.slot).or_default();
            buf.extend_from_slice(&frame.samples);
            if buf.len() < RATE {
                continue;
            }
            let window: Vec<f32> = buf.drain(..RATE).collect();
            let rms = (window.iter().map(|v| v * v).sum::<f32>() / RATE as f32).sqrt();
            for hz in not {
                let share = tone_share(&window, *hz);
                assert!(
                    share < 0.1,
                    "{who} hears {hz} Hz on slot {} (share {share:.3}, rms {rms:.3})",
                    frame.slot
                );
            }
            for (i, hz) in want.iter().enumerate() {
                if rms > 0.1 && tone_share(&window, *hz) > 0.8 {
                    heard[i] += 1;
                }
            }
            if heard.iter().all(|n| *n >= needed) {
                eprintln!("{who} hears {want:?} Hz, each for {needed} s, and not {not:?} Hz");
                return;
            }
        }
        panic!("{who}'s audio stream ended");
    })
    .await;
}

/// Takes every event the host's client has so far; fails on an end or a lost connection.
fn host_still_live(events: &mut Streams) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Ok(ev) = events.events.try_recv() {
        assert!(
            !matches!(ev, Event::Ended { .. } | Event::Disconnected { .. }),
            "the host's space was interrupted: {ev:?}"
        );
        seen.push(ev);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_node_b_hears_a_host_on_node_a_through_b_restarting() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(TwoNodes {
        bus,
        a,
        b,
        config_b,
        _dirs,
    }) = TwoNodes::start().await
    else {
        return;
    };

    // (1) The host opens a space on A; B's directory lists it; a listener on B hears the host.
    let (host, mut host_streams, id, speaking) = host_speaking(&a, &b, "Across nodes").await;

    let (bob, mut bob_streams) = Client::connect(ClientConfig::new(b.url(), "bob"))
        .await
        .unwrap();
    let joined = bob.join(&id).await.unwrap();
    assert_eq!(joined.space.host, "ada");
    assert_eq!(joined.space.participants.len(), 2, "{joined:?}");
    hears_tone(&mut bob_streams, "bob on node B").await;
    // Both nodes, and the host, count the same roster.
    wait_listed(&a, &id, 1, "node A to count bob").await;
    wait_listed(&b, &id, 1, "node B to count bob").await;
    let seen = host_still_live(&mut host_streams);
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Participants { joined, .. } if joined.iter().any(|p| p.id == bob.id()))),
        "the host never saw bob join: {seen:?}"
    );
    let stats_a = a.cluster_stats().unwrap();
    assert_eq!(stats_a.relays_out, 1, "{stats_a:?}");

    // Requests from B are decided on A, by A's room (node B has no room core for the space): a
    // listener may not end the space, and a signed-out one may not raise a hand.
    let refused = bob.end().await.unwrap_err();
    assert!(
        matches!(
            refused,
            ClientError::Server {
                code: ErrorCode::NotAllowed,
                ..
            }
        ),
        "{refused:?}"
    );
    bob.stage(ClientMsg::RaiseHand).await.unwrap();
    within(10, "bob's raised hand to be refused", async {
        loop {
            match bob_streams.events.recv().await {
                Some(Event::ServerError { code, .. }) => {
                    assert_eq!(code, ErrorCode::SignInRequired);
                    return;
                }
                Some(e @ (Event::Ended { .. } | Event::Disconnected { .. })) => {
                    panic!("bob was cut off: {e:?}")
                }
                None => panic!("bob's events ended"),
                Some(_) => {}
            }
        }
    })
    .await;
    let seen = host_still_live(&mut host_streams);
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::Stage(ServerMsg::HandQueue { .. }))),
        "a refused hand reached the host: {seen:?}"
    );

    // (2) Node B restarts with the same config. Its listener is cut off; the space on A goes on.
    b.shutdown().await;
    within(10, "bob to notice node B going away", async {
        loop {
            match bob_streams.events.recv().await {
                Some(Event::Disconnected { .. }) | None => return,
                Some(Event::Ended { reason, .. }) => panic!("the space ended: {reason:?}"),
                Some(_) => {}
            }
        }
    })
    .await;
    drop((bob, bob_streams));
    wait_listed(&a, &id, 0, "node A to see bob gone").await;
    host_still_live(&mut host_streams);

    let b = confab_server::start(config_b).await.unwrap();
    wait_listed(&b, &id, 0, "the restarted node B to list the space again").await;
    let (bob, mut bob_streams) = Client::connect(ClientConfig::new(b.url(), "bob"))
        .await
        .unwrap();
    let joined = bob.join(&id).await.unwrap();
    assert_eq!(joined.space.participants.len(), 2, "{joined:?}");
    hears_tone(&mut bob_streams, "bob, back on node B").await;
    wait_listed(&a, &id, 1, "node A to count bob again").await;
    wait_listed(&b, &id, 1, "node B to count bob again").await;
    // The host's session never broke: same connection, still speaking, never told of an end.
    host_still_live(&mut host_streams);
    assert!(!speaking.is_finished(), "the host's microphone stopped");
    let stats_a = a.cluster_stats().unwrap();
    assert_eq!(stats_a.relays_out, 1, "the old relay lingers: {stats_a:?}");

    speaking.abort();
    host.end().await.unwrap();
    within(10, "bob to hear the end", async {
        loop {
            match bob_streams.events.recv().await {
                Some(Event::Ended { .. }) => return,
                None => panic!("bob's events ended without the space ending"),
                Some(_) => {}
            }
        }
    })
    .await;
    b.shutdown().await;
    a.shutdown().await;
    bus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_a_relays_each_speaker_packet_once_to_node_b_for_three_listeners() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(TwoNodes {
        bus, a, b, _dirs, ..
    }) = TwoNodes::start().await
    else {
        return;
    };
    let (host, _host_streams, id, speaking) = host_speaking(&a, &b, "Once per node").await;

    let mut listeners = Vec::new();
    for name in ["bob", "cy", "dee"] {
        let (client, mut streams) = Client::connect(ClientConfig::new(b.url(), name))
            .await
            .unwrap();
        client.join(&id).await.unwrap();
        hears_tone(&mut streams, name).await;
        listeners.push((client, streams));
    }
    wait_listed(&a, &id, 3, "node A to count three listeners").await;

    // Over three seconds of the host speaking (50 packets a second): A sends each packet to B
    // once, B receives it once and copies it to each of its three listeners.
    let before = (a.cluster_stats().unwrap(), b.cluster_stats().unwrap());
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = (a.cluster_stats().unwrap(), b.cluster_stats().unwrap());
    let secs = started.elapsed().as_secs_f64();
    let delta = |f: fn(&ClusterStats) -> u64, x: &ClusterStats, y: &ClusterStats| f(y) - f(x);
    let a_out = delta(|s| s.relay_packets_out, &before.0, &after.0) as f64;
    let b_in = delta(|s| s.relay_packets_in, &before.1, &after.1) as f64;
    let b_fanout = delta(|s| s.fanout_packets, &before.1, &after.1) as f64;
    eprintln!(
        "in {secs:.2} s: A relayed {a_out} packets to B, B received {b_in}, \
         B wrote {b_fanout} to its listeners; relays A {} out, B {} in",
        after.0.relays_out, after.1.relays_in
    );
    assert_eq!((after.0.relays_out, after.1.relays_in), (1, 1));
    // One speaker at 50 packets a second: once, not once per listener.
    let expected = 50.0 * secs;
    assert!(
        (expected * 0.8..=expected * 1.2).contains(&a_out),
        "A relayed {a_out} packets in {secs:.2} s (expected about {expected:.0})"
    );
    assert!(
        (a_out * 0.9..=a_out * 1.1).contains(&b_in),
        "B received {b_in} of A's {a_out}"
    );
    assert!(
        (b_in * 2.7..=b_in * 3.3).contains(&b_fanout),
        "B wrote {b_fanout} copies of {b_in} packets to three listeners"
    );

    speaking.abort();
    host.end().await.unwrap();
    for (client, mut streams) in listeners {
        within(10, "each listener on B to hear the end", async {
            loop {
                match streams.events.recv().await {
                    Some(Event::Ended { .. }) => return,
                    None => panic!("events ended without the space ending"),
                    Some(_) => {}
                }
            }
        })
        .await;
        client.close().await;
    }
    b.shutdown().await;
    a.shutdown().await;
    bus.stop().await;
}

/// A signed-in listener on node B brought on stage by the host on node A: its audio goes to
/// the home on a session of its own, so listeners on both nodes hear it with the host, and it
/// hears the host (through that session) but not itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_speaker_on_node_b_is_heard_on_both_nodes_and_hears_the_host_not_itself() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(TwoNodes {
        bus, a, b, _dirs, ..
    }) = TwoNodes::start().await
    else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    const BOB_HZ: f64 = 660.0;
    let (host, _host_streams, id, ada_speaking) = host_speaking(&a, &b, "Two stages").await;

    let (cy, mut cy_streams) = Client::connect(ClientConfig::new(a.url(), "cy"))
        .await
        .unwrap();
    cy.join(&id).await.unwrap();
    let (dee, mut dee_streams) = Client::connect(ClientConfig::new(b.url(), "dee"))
        .await
        .unwrap();
    dee.join(&id).await.unwrap();
    // Bob signs in on node B, where he connects; node A decides whether he may go on stage.
    let token = confab_tests::sign_in(&b.url(), keys.path(), "bob")
        .await
        .unwrap();
    let (bob, mut bob_streams) =
        Client::connect(ClientConfig::new(b.url(), "bob").with_token(&token))
            .await
            .unwrap();
    bob.join(&id).await.unwrap();
    hears_tone(&mut bob_streams, "bob, listening on node B").await;
    confab_tests::bring_on_stage(&host, &bob, &mut bob_streams.events)
        .await
        .unwrap();
    let bob_speaking = speak_tone(bob.clone(), BOB_HZ);

    hears_tones(&mut cy_streams, "cy on node A", &[TONE_HZ, BOB_HZ], &[], 2).await;
    hears_tones(
        &mut dee_streams,
        "dee on node B",
        &[TONE_HZ, BOB_HZ],
        &[],
        2,
    )
    .await;
    hears_tones(&mut bob_streams, "bob on stage", &[TONE_HZ], &[BOB_HZ], 3).await;

    bob_speaking.abort();
    ada_speaking.abort();
    host.end().await.unwrap();
    for client in [bob, cy, dee] {
        client.close().await;
    }
    b.shutdown().await;
    a.shutdown().await;
    bus.stop().await;
}
