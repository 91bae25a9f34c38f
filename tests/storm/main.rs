//! Join storms against a real server: a thousand listeners joining one live space at once
//! (real signaling), a smaller storm with real WebRTC whose audio arrives, and the server's
//! memory per connected listener (real WebRTC, the server in its own process).
//!
//! What they assert is state: everyone who joined is in the roster the host sees, the
//! server's count agrees, listeners' rosters agree with the host's. Time appears only as
//! generous bounds that catch a hang; `confab-bench joins` measures the time itself.

use std::time::Duration;

use confab_tests::storm::{self, Host, Listener, ServerProcess, directory_listeners};
use confab_tests::{TestServer, within};

/// Each signaling listener holds a WebSocket on both ends here; a media one a UDP socket too.
fn enough_descriptors(listeners: usize) {
    let want = (listeners as u64) * 4 + 512;
    let got = rlimit::increase_nofile_limit(want).expect("raising RLIMIT_NOFILE");
    assert!(got >= want, "RLIMIT_NOFILE is {got} at most; {want} needed");
}

/// Waits until every listener in `sample` holds `n` listeners, and the host's roster, and
/// returns their id sets' agreement.
async fn sample_agrees(host: &Host, sample: &[&Listener], n: usize) {
    let limit = std::time::Instant::now() + Duration::from_secs(60);
    for l in sample {
        loop {
            let r = l.roster();
            if r.listeners() == n && r.stated_listeners as usize == n {
                break;
            }
            assert!(
                std::time::Instant::now() < limit,
                "listener {} sees {} listeners (stated {}), not {n}",
                l.id,
                r.listeners(),
                r.stated_listeners
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut want: Vec<_> = host.roster().people.into_keys().collect();
    want.sort();
    for l in sample {
        let mut got: Vec<_> = l.roster().people.into_keys().collect();
        got.sort();
        assert_eq!(got, want, "listener {}'s roster is not the host's", l.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_a_thousand_joins_loses_no_one() {
    const STORM: usize = 1000;
    enough_descriptors(STORM);
    let server = TestServer::start().await.unwrap();
    let url = server.url();
    let host = Host::open(&url).await.unwrap();
    let (mut listeners, failed) = within(
        300,
        "1,000 joins",
        storm::storm(&url, &host.space, STORM, 64, false),
    )
    .await;
    if let Some(e) = failed.first() {
        panic!("{} of {STORM} joins failed; the first: {e:#}", failed.len());
    }
    assert_eq!(listeners.len(), STORM);
    host.wait_for_listeners(STORM, Duration::from_secs(60))
        .await
        .unwrap();
    let roster = host.roster();
    assert_eq!(
        roster.people.len(),
        STORM + 1,
        "the host and every listener"
    );
    for l in &listeners {
        assert!(roster.people.contains_key(&l.id), "{} is missing", l.id);
    }
    assert_eq!(
        directory_listeners(&url, &host.space).await.unwrap() as usize,
        STORM
    );
    // The first and last to finish and some between: their rosters are the host's.
    let sample: Vec<&Listener> = listeners
        .iter()
        .step_by(97)
        .chain(listeners.last())
        .collect();
    sample_agrees(&host, &sample, STORM).await;

    // A quarter leave at once: everyone still there hears of it, and the count follows.
    let stay = STORM - STORM / 4;
    let gone: Vec<Listener> = listeners.drain(stay..).collect();
    let gone_ids: Vec<_> = gone.iter().map(|l| l.id).collect();
    drop(gone);
    host.wait_for_listeners(stay, Duration::from_secs(60))
        .await
        .unwrap();
    let roster = host.roster();
    assert!(gone_ids.iter().all(|id| !roster.people.contains_key(id)));
    // The directory is refreshed by the room task as it drops each connection.
    within(30, "the directory to count the leaves", async {
        while directory_listeners(&url, &host.space).await.unwrap() as usize != stay {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let sample: Vec<&Listener> = listeners.iter().step_by(97).collect();
    sample_agrees(&host, &sample, stay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_with_real_webrtc_hears_the_host() {
    // Real ICE, DTLS and SRTP for each: what two shared cores hold in a test's time.
    const STORM: usize = 100;
    enough_descriptors(STORM);
    let server = TestServer::start().await.unwrap();
    let url = server.url();
    let host = Host::open(&url).await.unwrap();
    let (listeners, failed) = within(
        300,
        "joins with media",
        storm::storm(&url, &host.space, STORM, 16, true),
    )
    .await;
    if let Some(e) = failed.first() {
        panic!("{} of {STORM} joins failed; the first: {e:#}", failed.len());
    }
    host.wait_for_listeners(STORM, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        directory_listeners(&url, &host.space).await.unwrap() as usize,
        STORM
    );
    // The host speaks; every listener's media leg carries it.
    let mic = host.client.mic().await.unwrap();
    let speak = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0..u32::MAX {
            tick.tick().await;
            let frame: Vec<f32> = (0..confab_audio::FRAME_SAMPLES)
                .map(|n| 0.2 * ((i as usize * 960 + n) as f32 * 0.05).sin())
                .collect();
            if mic.send(frame).await.is_err() {
                break;
            }
        }
    });
    within(60, "audio at every listener", async {
        loop {
            let deaf = listeners
                .iter()
                .filter(|l| l.packets.load(std::sync::atomic::Ordering::Relaxed) == 0)
                .count();
            if deaf == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    speak.abort();
    let sample: Vec<&Listener> = listeners.iter().step_by(9).collect();
    sample_agrees(&host, &sample, STORM).await;
}

/// Stated: a listener connected with real WebRTC costs the server at most this much resident
/// memory. Measured here at about 260 KiB (RSS and PSS alike, debug build, 200 listeners past 20);
/// the bound leaves room for allocator and runtime noise.
const MAX_KIB_PER_LISTENER: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_memory_per_listener_is_bounded() {
    const WARM: usize = 20;
    const MEASURED: usize = 200;
    enough_descriptors(WARM + MEASURED);
    let server =
        ServerProcess::start(std::path::Path::new(env!("CARGO_BIN_EXE_confab-bench"))).unwrap();
    let host = Host::open(&server.url).await.unwrap();
    // The first connections grow pools and tables once; measure past them.
    let (warm, failed) = storm::storm(&server.url, &host.space, WARM, 16, true).await;
    assert!(failed.is_empty(), "{:?}", failed.first());
    host.wait_for_listeners(WARM, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, pss0) = storm::memory_kib(server.pid()).unwrap();
    let (more, failed) = within(
        300,
        "200 joins with media",
        storm::storm(&server.url, &host.space, MEASURED, 16, true),
    )
    .await;
    assert!(failed.is_empty(), "{:?}", failed.first());
    host.wait_for_listeners(WARM + MEASURED, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss1, pss1) = storm::memory_kib(server.pid()).unwrap();
    let per_rss = rss1.saturating_sub(rss0) / MEASURED as u64;
    let per_pss = pss1.saturating_sub(pss0) / MEASURED as u64;
    eprintln!(
        "server memory per listener over {MEASURED}: RSS {per_rss} KiB, PSS {per_pss} KiB \
         ({rss0} -> {rss1} KiB RSS)"
    );
    // A growth of nothing would mean the measurement is broken, not that listeners are free.
    assert!(per_rss > 0, "RSS did not grow: {rss0} -> {rss1} KiB");
    assert!(
        per_rss <= MAX_KIB_PER_LISTENER,
        "{per_rss} KiB of server RSS per listener (bound {MAX_KIB_PER_LISTENER} KiB)"
    );
    drop((warm, more));
}
