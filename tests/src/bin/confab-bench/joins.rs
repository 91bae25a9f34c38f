//! `confab-bench joins`: a storm of listeners joining one live space at once (issue 6: 1,000
//! joins in at most 10 s with no loss of state), and the server's memory per listener.
//!
//! The server runs as its own process (`confab-bench serve`), so its memory is its own. The
//! host is a real client; listeners join with real signaling and, unless `--signaling-only`,
//! real ICE, DTLS and SRTP (see `confab_tests::storm`). A join's time runs from sending `join`
//! to holding the whole roster and, with media, to media connected. The storm's total runs from
//! the first join sent to the host seeing every listener in its roster. Then it checks that
//! nothing was lost: the host's roster, the server's directory count and a sample of listeners'
//! rosters all say the same number.

use std::time::{Duration, Instant};

use anyhow::Context;
use confab_tests::bench::report::percentile;
use confab_tests::storm::{self, Host, ServerProcess, directory_listeners, memory_kib};

/// The bound on the run, whatever the flags say.
const MAX_LISTENERS: usize = 3000;
/// Issue 6's target for the whole storm.
const TARGET: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct JoinsArgs {
    /// Listeners in the storm.
    #[arg(long, default_value_t = 1000)]
    listeners: usize,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Listeners join with signaling only (no WebRTC).
    #[arg(long)]
    signaling_only: bool,
    /// The whole run ends by then, measured or not.
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
}

pub(crate) fn run(args: JoinsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_LISTENERS).contains(&args.listeners),
        "--listeners must be 1..={MAX_LISTENERS}"
    );
    anyhow::ensure!(
        (1..=512).contains(&args.concurrency),
        "--concurrency must be 1..=512"
    );
    anyhow::ensure!(
        (10..=1800).contains(&args.max_seconds),
        "--max-seconds must be 10..=1800"
    );
    let want = args.listeners as u64 * 3 + 256;
    let nofile = rlimit::increase_nofile_limit(want).context("raising RLIMIT_NOFILE")?;
    anyhow::ensure!(nofile >= want, "RLIMIT_NOFILE is {nofile}; {want} needed");
    let deadline = Duration::from_secs(args.max_seconds);
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        eprintln!("confab-bench joins: --max-seconds ({deadline:?}) reached; stopping");
        // The server child has stdin from us: it stops when we are gone.
        std::process::exit(2);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(storm_run(&args));
    // Thousands of sessions would take a while to close one by one; the figures are printed.
    if let Err(e) = &result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

async fn storm_run(args: &JoinsArgs) -> anyhow::Result<()> {
    let n = args.listeners;
    let server = ServerProcess::start(&std::env::current_exe()?)?;
    let host = Host::open(&server.url).await?;
    let media = !args.signaling_only;
    println!(
        "confab-bench joins: {n} listeners, {} at once, {} (server: its own process)",
        args.concurrency,
        if media {
            "real signaling and WebRTC"
        } else {
            "real signaling, no media"
        }
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss0, pss0) = memory_kib(server.pid())?;
    let start = Instant::now();
    let (listeners, failed) =
        storm::storm(&server.url, &host.space, n, args.concurrency, media).await;
    let joined_all = start.elapsed();
    if let Some(e) = failed.first() {
        println!("{} of {n} joins failed; the first: {e:#}", failed.len());
    }
    let ok = listeners.len();
    let seen = host.wait_for_listeners(ok, Duration::from_secs(60)).await;
    let total = start.elapsed();
    let mut times: Vec<f64> = listeners
        .iter()
        .map(|l| l.join_time.as_secs_f64() * 1e3)
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "join (request to {}): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {ok} joins",
        if media {
            "roster and media connected"
        } else {
            "whole roster"
        },
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "storm: last join done after {:.2} s; host saw all {ok} after {:.2} s: {:.2}x the {} s target ({})",
        joined_all.as_secs_f64(),
        total.as_secs_f64(),
        total.as_secs_f64() / TARGET.as_secs_f64(),
        TARGET.as_secs(),
        if seen.is_ok() && total <= TARGET && failed.is_empty() {
            "met"
        } else {
            "missed"
        }
    );
    if let Err(e) = &seen {
        println!("state: {e:#}");
    }
    // State: the host, the server and a sample of listeners agree.
    let dir = directory_listeners(&server.url, &host.space).await?;
    let sample: Vec<_> = listeners.iter().step_by(n.div_ceil(20).max(1)).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agree = sample
        .iter()
        .filter(|l| {
            let r = l.roster();
            r.listeners() == ok && r.stated_listeners as usize == ok
        })
        .count();
    println!(
        "state: host roster {} listeners, server directory {dir}, {agree} of {} sampled listeners \
         agree ({})",
        host.roster().listeners(),
        sample.len(),
        if host.roster().listeners() == ok && dir as usize == ok && agree == sample.len() {
            "consistent"
        } else {
            "INCONSISTENT"
        }
    );
    let (rss1, pss1) = memory_kib(server.pid())?;
    println!(
        "server memory per listener: RSS {:.0} KiB, PSS {:.0} KiB ({} -> {} KiB RSS, \
         {} -> {} KiB PSS, over {ok} listeners)",
        rss1.saturating_sub(rss0) as f64 / ok.max(1) as f64,
        pss1.saturating_sub(pss0) as f64 / ok.max(1) as f64,
        rss0,
        rss1,
        pss0,
        pss1
    );
    drop(server);
    Ok(())
}
