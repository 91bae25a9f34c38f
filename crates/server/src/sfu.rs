//! The forwarding half of the SFU: one task per uplink that copies each RTP packet to the
//! current subscribers.
//!
//! The subscriber list is an `ArcSwap` that the room task replaces whenever membership or
//! slots change, so the per-packet path takes no lock of ours and allocates nothing per
//! listener: the payload is a reference-counted `Bytes` shared by every copy. (What the
//! `webrtc` crate does inside `write_rtp` — SRTP and the socket — is its own; issue 6 measures
//! the whole path against the kernel's floor.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use confab_proto::ParticipantId;
use confab_rtc::{LocalAudio, RemoteAudio};
use tokio::task::JoinHandle;

/// Counters of one forwarder, readable while it runs.
#[derive(Default)]
pub(crate) struct ForwardStats {
    pub(crate) received: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) refused: AtomicU64,
}

/// Reads one participant's uplink for as long as it lasts.
pub(crate) struct Forwarder {
    subscribers: Arc<ArcSwap<Vec<LocalAudio>>>,
    allowed: Arc<AtomicBool>,
    pub(crate) stats: Arc<ForwardStats>,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Starts reading `audio`. Until [`Forwarder::set_allowed`] says otherwise every packet is
    /// refused: a participant who is not a speaker cannot put audio into the space.
    pub(crate) fn spawn(who: ParticipantId, audio: RemoteAudio) -> Forwarder {
        let subscribers: Arc<ArcSwap<Vec<LocalAudio>>> =
            Arc::new(ArcSwap::from_pointee(Vec::new()));
        let allowed = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ForwardStats::default());
        let task = {
            let subscribers = Arc::clone(&subscribers);
            let allowed = Arc::clone(&allowed);
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                while let Some(packet) = audio.recv().await {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    if !allowed.load(Ordering::Relaxed) {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let subs = subscribers.load();
                    for sub in subs.iter() {
                        // A failed write means that listener's connection is going away; the
                        // room task drops it from the list when its signaling ends.
                        if sub.send(&packet).await.is_ok() {
                            stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                tracing::debug!(%who, "uplink ended");
            })
        };
        Forwarder {
            subscribers,
            allowed,
            stats,
            task,
        }
    }

    /// Replaces the list of tracks this uplink is copied to.
    pub(crate) fn set_subscribers(&self, subs: Vec<LocalAudio>) {
        self.subscribers.store(Arc::new(subs));
    }

    /// Whether this participant's audio may be forwarded (they are a speaker).
    pub(crate) fn set_allowed(&self, allowed: bool) {
        self.allowed.store(allowed, Ordering::Relaxed);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
