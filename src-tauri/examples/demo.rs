//! Fills a server with a few live spaces (topics, listeners) and, optionally, a profile with
//! followed hosts, then holds them until Ctrl-C: for demos and the README's screenshot
//! (`scripts/screenshot.sh`). No audio is sent; the spaces are real all the same.
//!
//! `cargo run -p confab --example demo -- [SERVER_URL] [--seed-profile PROFILE_DB]`

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use confab_client::{Client, ClientConfig, Streams};
use confab_proto::{SpaceId, SpaceSummary};

/// Host, title, topics, listeners.
const SPACES: &[(&str, &str, &[&str], usize)] = &[
    (
        "Ada Lovelace",
        "Analytical engines, then and now",
        &["history", "computing"],
        5,
    ),
    (
        "Linus",
        "Rust in the kernel: a year later",
        &["rust", "linux", "kernels"],
        4,
    ),
    (
        "Miles",
        "Late-night jazz listening party",
        &["music", "jazz"],
        3,
    ),
    (
        "Grace",
        "Debugging stories from the field",
        &["debugging", "careers"],
        2,
    ),
    ("Nora", "Audio DSP office hours", &["audio", "dsp"], 1),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut server = "http://127.0.0.1:7373".to_owned();
    let mut profile_db: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed-profile" => {
                profile_db = Some(args.next().context("--seed-profile PATH")?.into())
            }
            _ => server = a,
        }
    }
    if let Some(db) = &profile_db {
        seed_profile(db, &server)?;
    }
    // Keep every connection (and its event stream) alive until Ctrl-C.
    let mut held: Vec<(Client, Streams)> = Vec::new();
    for (i, (host, title, topics, listeners)) in SPACES.iter().enumerate() {
        let (client, streams) = Client::connect(ClientConfig::new(&server, *host)).await?;
        let topics = topics.iter().map(|t| t.to_string()).collect();
        let joined = client.create_with_topics(title, topics).await?;
        let id = joined.space.id.clone();
        println!("space {id}  {title}  ({host})");
        held.push((client, streams));
        for n in 0..*listeners {
            let name = format!("listener {}", i * 10 + n + 1);
            let (client, streams) = Client::connect(ClientConfig::new(&server, name)).await?;
            client.join(&id).await?;
            held.push((client, streams));
        }
    }
    println!("ready");
    tokio::signal::ctrl_c().await?;
    for (client, _) in &held {
        client.close().await;
    }
    Ok(())
}

/// Follows two live hosts and one who was live three hours ago (shown offline, with the
/// title of that space).
fn seed_profile(db: &std::path::Path, server: &str) -> anyhow::Result<()> {
    let mut store = confab_store::Store::open(db)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    for host in ["Ada Lovelace", "Miles", "Margaret"] {
        store.follow(server, host, now - 86_400)?;
    }
    let past = SpaceSummary {
        id: "margaretapol".parse::<SpaceId>()?,
        title: "Apollo guidance, line by line".into(),
        host: "Margaret".into(),
        topics: vec!["space".into()],
        listeners: 12,
        host_handle: None,
        speakers: vec![],
    };
    store.record_spaces(server, &[past], now - 3 * 3600)?;
    store.record_spaces(server, &[], now - 3 * 3600 + 1800)?;
    Ok(())
}
