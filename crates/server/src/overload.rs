//! Overload reporting that cannot flood the log.
//!
//! When the server falls behind, packets and signaling messages are dropped by the thousand a
//! second: the WebRTC engine logs an error for each packet its queues refuse, and a room task
//! used to warn for each message a slow connection could not take. A line per drop turns an
//! overload into a disk-filling log flood that costs more CPU than the drops themselves.
//!
//! Instead, each such drop is counted, and [`report`] (every [`REPORT_EVERY`] on the thread
//! [`spawn_reporter`] starts) writes one summary line with the counts since the last one, and
//! nothing when nothing was dropped. [`OverloadLayer`] is the `tracing` layer that catches the
//! engine's per-packet lines (they arrive through the `log` bridge) and counts them instead.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How often [`spawn_reporter`]'s thread writes a summary (when something was dropped).
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What was dropped, by kind, since the last [`report`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// Received RTP the engine could not hand to its reader (a forwarder behind).
    pub rtp_in: u64,
    /// RTP the engine could not send (a listener's session behind or gone).
    pub rtp_out: u64,
    /// RTCP the engine could not route or send.
    pub rtcp: u64,
    /// Signaling messages a connection's full queue refused.
    pub signaling: u64,
}

impl Drops {
    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        *self == Drops::default()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    RtpIn,
    RtpOut,
    Rtcp,
}

static RTP_IN: AtomicU64 = AtomicU64::new(0);
static RTP_OUT: AtomicU64 = AtomicU64::new(0);
static RTCP: AtomicU64 = AtomicU64::new(0);
static SIGNALING: AtomicU64 = AtomicU64::new(0);

fn counter(kind: Kind) -> &'static AtomicU64 {
    match kind {
        Kind::RtpIn => &RTP_IN,
        Kind::RtpOut => &RTP_OUT,
        Kind::Rtcp => &RTCP,
    }
}

/// The WebRTC engine's (webrtc 0.21) per-packet complaints, by how their message starts.
/// Each is logged once per packet a full queue refused; a new engine version may word them
/// differently, and the unit test below pins the wording this list expects.
const PER_PACKET: &[(&str, Kind)] = &[
    ("Failed to send RtpPacket to track remote", Kind::RtpIn),
    ("Failed to get track_remote", Kind::RtpIn),
    ("Failed to send RTP", Kind::RtpOut),
    ("Failed to send RtcpPacket", Kind::Rtcp),
    ("Failed to route RtcpPacket", Kind::Rtcp),
    ("Failed to send RTCP", Kind::Rtcp),
];

fn classify(message: &str) -> Option<Kind> {
    PER_PACKET
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map(|(_, kind)| *kind)
}

/// Counts one signaling message dropped at a connection's full (or closed) queue.
pub(crate) fn signaling_dropped() {
    SIGNALING.fetch_add(1, Ordering::Relaxed);
}

/// Takes the counts since the last call and, if anything was dropped, writes one warning with
/// them. Returns the counts.
pub fn report() -> Drops {
    let drops = Drops {
        rtp_in: RTP_IN.swap(0, Ordering::Relaxed),
        rtp_out: RTP_OUT.swap(0, Ordering::Relaxed),
        rtcp: RTCP.swap(0, Ordering::Relaxed),
        signaling: SIGNALING.swap(0, Ordering::Relaxed),
    };
    if !drops.is_empty() {
        tracing::warn!(
            rtp_in = drops.rtp_in,
            rtp_out = drops.rtp_out,
            rtcp = drops.rtcp,
            signaling = drops.signaling,
            "overloaded: packets and messages dropped since the last report"
        );
    }
    drops
}

/// Starts a thread that calls [`report`] every `every` for the life of the process.
pub fn spawn_reporter(every: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("overload-report".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                report();
            }
        })
        .map(drop)
}

/// A `tracing` layer that swallows the engine's per-packet error lines and counts them for
/// [`report`]. Put it in the subscriber before the layer that writes.
#[derive(Clone, Copy, Debug, Default)]
pub struct OverloadLayer;

impl<S: Subscriber> Layer<S> for OverloadLayer {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        // Levels compare by verbosity: anything chattier than WARN is never a drop report.
        if *event.metadata().level() > Level::WARN {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        match classify(&message.0) {
            Some(kind) => {
                counter(kind).fetch_add(1, Ordering::Relaxed);
                false
            }
            None => true,
        }
    }
}

/// The `message` field of an event.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            use fmt::Write as _;
            let _ = write!(self.0, "{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_of_drops_is_one_summary_line() {
        let out = Capture::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(OverloadLayer).with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
        let drops = tracing::subscriber::with_default(subscriber, || {
            for i in 0..1000 {
                // As webrtc 0.21's driver words them (through the `log` bridge in the server).
                tracing::error!(
                    target: "webrtc::peer_connection::driver",
                    "Failed to send RtpPacket to track remote {i}: Full(..)"
                );
                tracing::error!(target: "webrtc::peer_connection::driver", "Failed to send RTP: {i}");
            }
            for _ in 0..5 {
                signaling_dropped();
            }
            tracing::error!(target: "webrtc::peer_connection::driver", "Failed to bind UDP");
            tracing::info!("an ordinary line");
            let drops = report();
            // Nothing dropped since: no second line.
            assert!(report().is_empty());
            drops
        });
        // Other tests in this binary drop nothing, but the counters are the process's.
        assert!(drops.rtp_in >= 1000 && drops.rtp_out >= 1000, "{drops:?}");
        assert!(drops.signaling >= 5, "{drops:?}");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("Failed to bind UDP"), "{text}");
        assert!(lines[1].contains("an ordinary line"), "{text}");
        assert!(lines[2].contains("overloaded"), "{text}");
        assert!(lines[2].contains("rtp_in=1000"), "{text}");
        assert!(!text.contains("Failed to send"), "{text}");
    }
}
