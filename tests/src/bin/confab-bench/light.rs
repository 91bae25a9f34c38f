//! Listeners as light as a real WebRTC peer can be, for `confab-bench load`.
//!
//! Each listener is a sans-IO `rtc` peer connection (real ICE, DTLS and SRTP: the server
//! cannot tell it from a client) with its own UDP socket, since the server tells its
//! connections apart by source address. All of them run on one thread. Only a sample of
//! listeners hands its media to the connection to be decrypted (the issue allows it); the
//! others count each SRTP packet from its header, which SRTP leaves in the clear (sequence
//! number, timestamp, SSRC). STUN, DTLS and RTCP always go through the connection, so ICE
//! consent and the handshake work as in any client.
//!
//! The per-listener `PeerSession` this replaces (an async driver, a socket task and SRTP for
//! every packet) saturated the generator's core at about 500 listeners, so the bench could
//! not say what the server holds.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use confab_rtc::RECV_SLOTS;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::sync::{Notify, mpsc, oneshot};

/// What a listener does with each packet of a slot: told the slot, the RTP timestamp and the
/// arrival instant. Called on the light thread; must be quick.
pub(crate) type OnPacket = Box<dyn Fn(usize, u32, Instant) + Send>;

enum Command {
    Offer {
        decrypt: bool,
        on_packet: OnPacket,
        reply: oneshot::Sender<anyhow::Result<(u64, String)>>,
    },
    Answer {
        key: u64,
        sdp: String,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
}

/// The thread all light listeners run on.
#[derive(Clone)]
pub(crate) struct LightPeers {
    commands: mpsc::UnboundedSender<Command>,
}

impl LightPeers {
    pub(crate) fn start() -> anyhow::Result<LightPeers> {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("light-peers".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return eprintln!("light peers: {e}"),
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, run(rx));
            })?;
        Ok(LightPeers { commands: tx })
    }

    /// A new listener connection: returns its key and offer (three receive-only audio
    /// m-lines, the client layout the server answers).
    pub(crate) async fn offer(
        &self,
        decrypt: bool,
        on_packet: OnPacket,
    ) -> anyhow::Result<(u64, String)> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Offer {
                decrypt,
                on_packet,
                reply,
            })
            .map_err(|_| anyhow::anyhow!("the light thread is gone"))?;
        rx.await.context("the light thread is gone")?
    }

    pub(crate) async fn answer(&self, key: u64, sdp: String) -> anyhow::Result<()> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Answer { key, sdp, reply })
            .map_err(|_| anyhow::anyhow!("the light thread is gone"))?;
        rx.await.context("the light thread is gone")?
    }
}

struct Peer {
    pc: RTCPeerConnection,
    socket: Rc<tokio::net::UdpSocket>,
    local: SocketAddr,
    decrypt: bool,
    on_packet: OnPacket,
    /// The server's SSRC for each slot, from its answer.
    slots: HashMap<u32, usize>,
    deadline: Instant,
}

#[derive(Default)]
struct State {
    peers: HashMap<u64, Peer>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    next_key: u64,
}

type Shared = Rc<RefCell<State>>;

async fn run(mut commands: mpsc::UnboundedReceiver<Command>) {
    let state: Shared = Rc::default();
    let rearm = Rc::new(Notify::new());
    tokio::task::spawn_local(timers(Rc::clone(&state), Rc::clone(&rearm)));
    while let Some(command) = commands.recv().await {
        match command {
            Command::Offer {
                decrypt,
                on_packet,
                reply,
            } => {
                let result = offer(&state, decrypt, on_packet).await;
                if let Ok((key, _)) = &result {
                    let key = *key;
                    let socket = state.borrow().peers.get(&key).map(|p| Rc::clone(&p.socket));
                    if let Some(socket) = socket {
                        tokio::task::spawn_local(reader(
                            Rc::clone(&state),
                            Rc::clone(&rearm),
                            key,
                            socket,
                        ));
                    }
                }
                let _ = reply.send(result);
            }
            Command::Answer { key, sdp, reply } => {
                let result = answer(&state, key, sdp);
                rearm.notify_one();
                let _ = reply.send(result);
            }
        }
    }
}

async fn offer(
    state: &Shared,
    decrypt: bool,
    on_packet: OnPacket,
) -> anyhow::Result<(u64, String)> {
    let socket =
        tokio::net::UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await?;
    let local = socket.local_addr()?;
    let now = Instant::now();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(confab_rtc::media_engine(true)?)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                .build(),
        )
        .with_interceptor_registry(Registry::new())
        .build(now)?;
    for _ in 0..RECV_SLOTS {
        pc.add_transceiver_from_kind(
            RtpCodecKind::Audio,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )?;
    }
    pc.add_local_candidate(RTCIceCandidateInit {
        candidate: format!(
            "candidate:1 1 udp 2130706431 {} {} typ host",
            local.ip(),
            local.port()
        ),
        ..Default::default()
    })?;
    let offer = pc.create_offer(None)?;
    pc.set_local_description(now, offer)?;
    let sdp = pc
        .local_description()
        .map(|d| d.sdp)
        .context("no local description")?;
    let mut st = state.borrow_mut();
    st.next_key += 1;
    let key = st.next_key;
    st.peers.insert(
        key,
        Peer {
            pc,
            socket: Rc::new(socket),
            local,
            decrypt,
            on_packet,
            slots: HashMap::new(),
            deadline: now,
        },
    );
    st.timers.push(Reverse((now, key)));
    Ok((key, sdp))
}

fn answer(state: &Shared, key: u64, sdp: String) -> anyhow::Result<()> {
    let mut st = state.borrow_mut();
    let peer = st.peers.get_mut(&key).context("no such listener")?;
    peer.slots = slot_ssrcs(&sdp);
    anyhow::ensure!(
        peer.slots.len() == RECV_SLOTS,
        "the answer names {} slot SSRCs, not {RECV_SLOTS}",
        peer.slots.len()
    );
    peer.pc
        .set_remote_description(Instant::now(), RTCSessionDescription::answer(sdp)?)?;
    drain(&mut st, key);
    Ok(())
}

/// Each SSRC the answer's m-lines announce (`a=ssrc:`), with its m-line's index: the slot.
fn slot_ssrcs(sdp: &str) -> HashMap<u32, usize> {
    let mut map = HashMap::new();
    let mut m = None::<usize>;
    for line in sdp.lines() {
        let line = line.trim();
        if line.starts_with("m=") {
            m = Some(m.map_or(0, |i| i + 1));
        } else if let (Some(slot), Some(rest)) = (m, line.strip_prefix("a=ssrc:"))
            && let Some(ssrc) = rest.split_whitespace().next().and_then(|s| s.parse().ok())
        {
            map.insert(ssrc, slot);
        }
    }
    map
}

/// Reads one listener's socket for as long as it lives.
async fn reader(state: Shared, rearm: Rc<Notify>, key: u64, socket: Rc<tokio::net::UdpSocket>) {
    let mut buf = vec![0u8; 2048];
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        let mut st = state.borrow_mut();
        let before = st.timers.peek().map(|Reverse((at, _))| *at);
        loop {
            let (n, from) = match socket.try_recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            };
            let Some(peer) = st.peers.get_mut(&key) else {
                return;
            };
            let data = &buf[..n];
            // RFC 7983: 128..=191 is RTP or RTCP; RTCP's packet types are 192..=223.
            let is_rtp =
                n >= 12 && (128..=191).contains(&data[0]) && !(192..=223).contains(&data[1]);
            if is_rtp && !peer.decrypt {
                let ts = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
                if let Some(slot) = peer.slots.get(&ssrc) {
                    (peer.on_packet)(*slot, ts, Instant::now());
                }
                continue;
            }
            let msg = TaggedBytesMut {
                now: Instant::now(),
                transport: TransportContext {
                    local_addr: peer.local,
                    peer_addr: from,
                    transport_protocol: TransportProtocol::UDP,
                    ecn: None,
                },
                message: BytesMut::from(data),
            };
            let _ = peer.pc.handle_read(msg);
            drain(&mut st, key);
        }
        let after = st.timers.peek().map(|Reverse((at, _))| *at);
        if after != before {
            rearm.notify_one();
        }
    }
}

/// Sends what a connection wants sent, hands decrypted media over, and re-arms its timer.
fn drain(st: &mut State, key: u64) {
    let Some(peer) = st.peers.get_mut(&key) else {
        return;
    };
    while let Some(out) = peer.pc.poll_write() {
        let _ = peer
            .socket
            .try_send_to(&out.message, out.transport.peer_addr);
    }
    while peer.pc.poll_event().is_some() {}
    while let Some(TaggedRTCMessage { message, now, .. }) = peer.pc.poll_read() {
        if let RTCMessage::RtpPacket(_, p) = message
            && let Some(slot) = peer.slots.get(&p.header.ssrc)
        {
            (peer.on_packet)(*slot, p.header.timestamp, now);
        }
    }
    while let Some(out) = peer.pc.poll_write() {
        let _ = peer
            .socket
            .try_send_to(&out.message, out.transport.peer_addr);
    }
    let now = Instant::now();
    let deadline = peer
        .pc
        .poll_timeout()
        .unwrap_or(now + Duration::from_secs(1))
        .clamp(now + Duration::from_millis(1), now + Duration::from_secs(1));
    if deadline != peer.deadline {
        peer.deadline = deadline;
        st.timers.push(Reverse((deadline, key)));
    }
}

/// Runs every connection's timers when they fall due.
async fn timers(state: Shared, rearm: Rc<Notify>) {
    loop {
        let next = {
            let mut st = state.borrow_mut();
            let now = Instant::now();
            while let Some(Reverse((at, key))) = st.timers.peek().copied() {
                if at > now {
                    break;
                }
                st.timers.pop();
                let Some(peer) = st.peers.get_mut(&key) else {
                    continue;
                };
                if peer.deadline != at {
                    continue;
                }
                let _ = peer.pc.handle_timeout(now);
                drain(&mut st, key);
            }
            st.timers
                .peek()
                .map_or(now + Duration::from_secs(1), |Reverse((at, _))| *at)
        };
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            () = rearm.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_read_from_the_answer_in_m_line_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ssrc:11 cname:x\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ssrc:22 cname:x\r\na=ssrc:22 msid:a b\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ssrc:33 cname:x\r\n";
        let map = slot_ssrcs(sdp);
        assert_eq!(map.len(), 3);
        assert_eq!((map[&11], map[&22], map[&33]), (0, 1, 2));
    }
}
