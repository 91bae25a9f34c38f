//! Join storms: many listeners joining one live space at once over real signaling (and, when
//! asked, real WebRTC), each keeping the roster as a client keeps it, so a test or the
//! benchmark can say whether anyone was lost and how long it took.
//!
//! A listener here is as light as a participant can be: a WebSocket doing the protocol by hand
//! (hello, join, the paged roster, then roster news) and, with media, a [`PeerSession`] that
//! connects ICE, DTLS and SRTP and counts the RTP packets it receives. Nothing is decoded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_client::{Client, ClientConfig, Event, Streams};
use confab_proto::{
    ClientMsg, PROTOCOL_VERSION, ParticipantId, ParticipantInfo, Role, ServerMsg, SpaceId,
    SpaceSummary, decode_server, encode,
};
use confab_rtc::{PeerSession, RtcConfig, SessionEvent};
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// A raw signaling connection, as a light listener (or the load generator) holds it.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A roster as a client keeps it: the snapshot it joined with, then every batch of news.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    pub people: HashMap<ParticipantId, ParticipantInfo>,
    /// The listener count the server last stated.
    pub stated_listeners: u32,
}

impl Roster {
    fn from_snapshot(people: Vec<ParticipantInfo>, listeners: u32) -> Roster {
        Roster {
            people: people.into_iter().map(|p| (p.id, p)).collect(),
            stated_listeners: listeners,
        }
    }

    /// Applies one batch of news: `left` first, then `joined`.
    pub fn apply(&mut self, joined: &[ParticipantInfo], left: &[ParticipantId], listeners: u32) {
        for id in left {
            self.people.remove(id);
        }
        for p in joined {
            self.people.insert(p.id, p.clone());
        }
        self.stated_listeners = listeners;
    }

    /// Listeners in the roster itself.
    pub fn listeners(&self) -> usize {
        self.people
            .values()
            .filter(|p| p.role == Role::Listener)
            .count()
    }
}

/// One listener of the storm. Dropping it closes its connection (the server sees it leave).
pub struct Listener {
    pub id: ParticipantId,
    /// From sending `join` to holding the whole roster (signaling) or to media connected.
    pub join_time: Duration,
    pub roster: Arc<Mutex<Roster>>,
    /// RTP packets received (media listeners only).
    pub packets: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Listener {
    /// A copy of its roster now.
    pub fn roster(&self) -> Roster {
        lock(&self.roster).clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The next message the server sends on `ws`, skipping pings and other frames; an error once
/// the server closes signaling or sends something undecodable.
pub async fn next_msg(ws: &mut Ws) -> anyhow::Result<ServerMsg> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(decode_server(t.as_str())?),
            Some(Ok(Message::Close(_))) | None => bail!("the server closed signaling"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("signaling: {e}"),
        }
    }
}

async fn send(ws: &mut Ws, msg: &ClientMsg) -> anyhow::Result<()> {
    ws.send(Message::Text(encode(msg).into())).await?;
    Ok(())
}

/// Joins `space` on the server at `url` (`http://...`) as listener `name`; with `media`, also
/// connects WebRTC and counts the packets that arrive. Returns once the listener holds the
/// whole roster and, with media, once media is connected (30 s at most).
pub async fn join(url: &str, space: &SpaceId, name: &str, media: bool) -> anyhow::Result<Listener> {
    tokio::time::timeout(Duration::from_secs(30), join_inner(url, space, name, media))
        .await
        .context("joining took over 30 s")?
}

async fn join_inner(
    url: &str,
    space: &SpaceId,
    name: &str,
    media: bool,
) -> anyhow::Result<Listener> {
    let ws_url = format!("{}/ws", url.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await?;
    send(
        &mut ws,
        &ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            name: name.to_owned(),
            token: None,
        },
    )
    .await?;
    let id = loop {
        match next_msg(&mut ws).await? {
            ServerMsg::Welcome { you, .. } => break you,
            ServerMsg::Error { message, .. } => bail!("hello refused: {message}"),
            _ => {}
        }
    };
    let start = Instant::now();
    send(
        &mut ws,
        &ClientMsg::Join {
            space: space.clone(),
        },
    )
    .await?;
    let (mut roster, more) = loop {
        match next_msg(&mut ws).await? {
            ServerMsg::Joined {
                space,
                listeners,
                more,
                ..
            } => break (Roster::from_snapshot(space.participants, listeners), more),
            ServerMsg::Error { message, .. } => bail!("join refused: {message}"),
            _ => {}
        }
    };
    // The rest of the snapshot comes in the very next frames.
    for _ in 0..more {
        match next_msg(&mut ws).await? {
            ServerMsg::Participants {
                joined,
                left,
                listeners,
            } => roster.apply(&joined, &left, listeners),
            other => bail!("expected a roster page, got {other:?}"),
        }
    }
    let roster = Arc::new(Mutex::new(roster));
    let packets = Arc::new(AtomicU64::new(0));
    let mut session = None;
    if media {
        let mut s = PeerSession::new(&RtcConfig::default()).await?;
        // The microphone track is part of the fixed layout; a listener never sends on it.
        let _mic = s.add_client_transceivers().await?;
        let sdp = s.create_offer().await?;
        send(&mut ws, &ClientMsg::Offer { sdp }).await?;
        loop {
            match next_msg(&mut ws).await? {
                ServerMsg::Answer { sdp } => break s.accept_answer(sdp).await?,
                ServerMsg::Error { message, .. } => bail!("offer refused: {message}"),
                ServerMsg::Participants {
                    joined,
                    left,
                    listeners,
                } => lock(&roster).apply(&joined, &left, listeners),
                _ => {}
            }
        }
        loop {
            tokio::select! {
                event = s.next_event() => match event {
                    Some(SessionEvent::Connected) => break,
                    Some(SessionEvent::RemoteAudio(remote)) => count_packets(remote, &packets),
                    Some(_) => {}
                    None => bail!("media closed before it connected"),
                },
                msg = next_msg(&mut ws) => match msg? {
                    ServerMsg::Participants { joined, left, listeners } => {
                        lock(&roster).apply(&joined, &left, listeners);
                    }
                    ServerMsg::Ended { .. } => bail!("the space ended"),
                    _ => {}
                },
            }
        }
        session = Some(s);
    }
    let join_time = start.elapsed();
    let task = {
        let roster = Arc::clone(&roster);
        let packets = Arc::clone(&packets);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = next_msg(&mut ws) => match msg {
                        Ok(ServerMsg::Participants { joined, left, listeners }) => {
                            lock(&roster).apply(&joined, &left, listeners);
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    },
                    Some(event) = next_event(&mut session) => {
                        if let SessionEvent::RemoteAudio(remote) = event {
                            count_packets(remote, &packets);
                        }
                    }
                }
            }
            if let Some(s) = session {
                s.close().await;
            }
        })
    };
    Ok(Listener {
        id,
        join_time,
        roster,
        packets,
        task,
    })
}

async fn next_event(session: &mut Option<PeerSession>) -> Option<SessionEvent> {
    match session {
        Some(s) => s.next_event().await,
        None => std::future::pending().await,
    }
}

fn count_packets(remote: confab_rtc::RemoteAudio, packets: &Arc<AtomicU64>) {
    let packets = Arc::clone(packets);
    tokio::spawn(async move {
        while remote.recv().await.is_some() {
            packets.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Joins `names.len()` listeners with at most `concurrency` joins in flight; returns them in
/// the order they finished, and the errors of those that failed.
pub async fn storm(
    url: &str,
    space: &SpaceId,
    count: usize,
    concurrency: usize,
    media: bool,
) -> (Vec<Listener>, Vec<anyhow::Error>) {
    let results: Vec<anyhow::Result<Listener>> = futures_util::stream::iter(0..count)
        .map(|i| {
            let (url, space) = (url.to_owned(), space.clone());
            async move { join(&url, &space, &format!("listener {i}"), media).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok(l) => ok.push(l),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}

/// The host of the storm's space: a real client (real WebRTC), whose roster is kept from its
/// `Joined` and its events.
pub struct Host {
    pub client: Client,
    pub space: SpaceId,
    pub roster: Arc<Mutex<Roster>>,
    task: JoinHandle<()>,
}

impl Host {
    /// Connects to `url`, opens a space and waits for its media (15 s at most).
    pub async fn open(url: &str) -> anyhow::Result<Host> {
        let (client, streams) = Client::connect(ClientConfig::new(url.to_owned(), "host")).await?;
        let joined = client.create("storm").await?;
        let roster = Arc::new(Mutex::new(Roster::from_snapshot(
            joined.space.participants,
            0,
        )));
        let Streams { events, mut audio } = streams;
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let task = {
            let roster = Arc::clone(&roster);
            let mut events = events;
            tokio::spawn(async move {
                tokio::spawn(async move { while audio.recv().await.is_some() {} });
                let mut connected = Some(connected_tx);
                while let Some(event) = events.recv().await {
                    match event {
                        Event::Participants {
                            joined,
                            left,
                            listeners,
                        } => lock(&roster).apply(&joined, &left, listeners),
                        Event::MediaConnected => {
                            if let Some(tx) = connected.take() {
                                let _ = tx.send(());
                            }
                        }
                        _ => {}
                    }
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(15), connected_rx)
            .await
            .context("the host's media did not connect within 15 s")?
            .context("the host's connection ended")?;
        Ok(Host {
            client,
            space: joined.space.id,
            roster,
            task,
        })
    }

    pub fn roster(&self) -> Roster {
        lock(&self.roster).clone()
    }

    /// Waits until the host's roster holds `n` listeners and the server stated that count
    /// (`limit` at most); returns how long it took.
    pub async fn wait_for_listeners(&self, n: usize, limit: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let r = self.roster();
            if r.listeners() == n && r.stated_listeners as usize == n {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "after {limit:?} the host sees {} listeners (stated {}), not {n}",
                    r.listeners(),
                    r.stated_listeners
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The listener count the server's directory (`GET /api/spaces`) states for `space`.
pub async fn directory_listeners(url: &str, space: &SpaceId) -> anyhow::Result<u32> {
    let spaces: Vec<SpaceSummary> = reqwest::get(format!("{url}/api/spaces"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    spaces
        .iter()
        .find(|s| &s.id == space)
        .map(|s| s.listeners)
        .context("the space is not in the directory")
}

/// Resident and proportional set size of process `pid`, KiB (`/proc/PID/status` VmRSS and
/// `/proc/PID/smaps_rollup` Pss).
pub fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let field = |text: &str, name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = field(&status, "VmRSS:").context("no VmRSS")?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let pss = field(&smaps, "Pss:").context("no Pss")?;
    Ok((rss, pss))
}

/// A Confab server in its own process (`confab-bench serve`), so its memory is its own.
/// Killed when dropped.
pub struct ServerProcess {
    pub url: String,
    child: std::process::Child,
}

impl ServerProcess {
    /// Starts `bench serve` (the `confab-bench` binary at `bench`) and waits for its address.
    pub fn start(bench: &std::path::Path) -> anyhow::Result<ServerProcess> {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(bench)
            .arg("serve")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bench.display()))?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            bail!("the server said {line:?} instead of where it listens");
        };
        Ok(ServerProcess {
            url: url.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a server in this process until stdin closes (the parent is gone) or it is killed,
/// printing `listening on URL` first: `confab-bench serve`.
pub async fn serve() -> anyhow::Result<()> {
    let server = crate::TestServer::start().await?;
    println!("listening on {}", server.url());
    // Blocking read on its own thread: the runtime stays free for the server.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    let _ = stdin_closed.await;
    server.handle.shutdown().await;
    Ok(())
}
