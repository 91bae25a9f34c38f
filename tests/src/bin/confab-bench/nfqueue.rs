//! The impaired network for `confab-bench audio`: every UDP packet sent on loopback inside the
//! scenario's own network namespace goes through NFQUEUE to a thread here, which drops it or
//! holds it for a drawn delay before letting it go ([`Fates`]). This does what
//! `tc qdisc add dev lo root netem delay 40ms 10ms distribution normal loss 1%` would (each
//! packet is impaired once per hop on `lo`, so client -> server -> client twice), on a kernel
//! built without netem (`CONFIG_NET_SCH_NETEM` is not set here).
//!
//! Only UDP (the media) is impaired: signaling over TCP is not, so connection setup stays
//! bounded. Packets pass unharmed until [`Impairer::arm`], once media is connected.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_tests::bench::impair::{Fates, Impairment};
use nfq::{Queue, Verdict};

const QUEUE: u16 = 0;

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    armed: AtomicBool,
    passed: AtomicU64,
    dropped: AtomicU64,
}

/// A running impairment; dropping it lets every held packet go and stops the thread.
pub(crate) struct Impairer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Impairer {
    /// Starts the queue thread, then sends loopback UDP through it (iptables). Call it only in
    /// a network namespace of the benchmark's own: the rule is never removed, the namespace
    /// goes away with the process.
    pub(crate) fn start(path: Impairment, seed: u64) -> anyhow::Result<Impairer> {
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("impairment".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(path, seed, &shared, ready_tx)
            })?;
        let mut impairer = Impairer {
            shared,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("opening NFQUEUE {QUEUE}: {e}"),
            Err(_) => {
                impairer.stop_thread()?;
                bail!("the NFQUEUE thread did not start");
            }
        }
        let rule = Command::new("iptables")
            .args(["-A", "OUTPUT", "-o", "lo", "-p", "udp", "-j", "NFQUEUE"])
            .args(["--queue-num", &QUEUE.to_string(), "--queue-bypass"])
            .output()
            .context("running iptables (Debian package iptables)")?;
        if !rule.status.success() {
            bail!(
                "iptables refused the NFQUEUE rule: {}",
                String::from_utf8_lossy(&rule.stderr).trim()
            );
        }
        Ok(impairer)
    }

    /// From now on packets get their fates (before, they pass at once).
    pub(crate) fn arm(&self) {
        self.shared.armed.store(true, Ordering::Relaxed);
    }

    /// (packets passed, packets dropped) while armed.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.shared.passed.load(Ordering::Relaxed),
            self.shared.dropped.load(Ordering::Relaxed),
        )
    }

    fn stop_thread(&mut self) -> anyhow::Result<()> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("the impairment thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Impairer {
    fn drop(&mut self) {
        if let Err(e) = self.stop_thread() {
            eprintln!("impairment: {e:#}");
        }
    }
}

fn run(
    path: Impairment,
    seed: u64,
    shared: &Shared,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> anyhow::Result<()> {
    let opened = (|| -> std::io::Result<Queue> {
        let mut q = Queue::open()?;
        q.bind(QUEUE)?;
        q.set_fail_open(QUEUE, true)?;
        q.set_nonblocking(true);
        Ok(q)
    })();
    let mut queue = match opened {
        Ok(q) => {
            let _ = ready.send(Ok(()));
            q
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return Ok(());
        }
    };
    let mut fates = Fates::new(path, seed);
    // Held packets by release time (and arrival order, to keep ties in order).
    let mut held = BTreeMap::new();
    let mut n: u64 = 0;
    let accept = |queue: &mut Queue, mut msg: nfq::Message| {
        msg.set_verdict(Verdict::Accept);
        queue.verdict(msg)
    };
    while !shared.stop.load(Ordering::Relaxed) {
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    if !shared.armed.load(Ordering::Relaxed) {
                        accept(&mut queue, msg)?;
                        continue;
                    }
                    match fates.draw() {
                        None => {
                            shared.dropped.fetch_add(1, Ordering::Relaxed);
                            msg.set_verdict(Verdict::Drop);
                            queue.verdict(msg)?;
                        }
                        Some(d) => {
                            shared.passed.fetch_add(1, Ordering::Relaxed);
                            n += 1;
                            held.insert((Instant::now() + d, n), msg);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // ENOBUFS: the kernel dropped queue messages (we were slow); they were lost.
                Err(e) if e.raw_os_error() == Some(105) => {}
                Err(e) => return Err(e).context("reading NFQUEUE"),
            }
        }
        let now = Instant::now();
        while let Some(entry) = held.first_entry() {
            if entry.key().0 > now {
                break;
            }
            accept(&mut queue, entry.remove())?;
        }
        std::thread::sleep(Duration::from_micros(250));
    }
    for (_, msg) in std::mem::take(&mut held) {
        accept(&mut queue, msg)?;
    }
    Ok(())
}
