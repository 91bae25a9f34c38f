//! Spaces survive a server restart; a live space whose host never comes back is marked ended,
//! one whose host resumes stays live.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::time::Duration;

use confab_client::{Client, ClientConfig};
use confab_proto::{SpaceDetails, SpaceState, SpaceSummary};
use confab_server::ServerConfig;

async fn details(url: &str, id: &str) -> SpaceDetails {
    reqwest::get(format!("{url}/api/spaces/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn start(dir: &std::path::Path, grace: Duration) -> confab_server::ServerHandle {
    let mut config =
        ServerConfig::new(dir.to_path_buf()).with_listen("127.0.0.1:0".parse().unwrap());
    config.room.host_grace = grace;
    confab_server::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spaces_survive_a_restart_and_an_absent_host_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_millis(1500);
    let server = start(dir.path(), grace).await;
    let url = server.url();
    let (host, _s) = Client::connect(ClientConfig::new(url.clone(), "ada"))
        .await
        .unwrap();
    let kept = host.create("Comes back").await.unwrap();
    let (host2, _s2) = Client::connect(ClientConfig::new(url.clone(), "bob"))
        .await
        .unwrap();
    let gone = host2.create("Never returns").await.unwrap();
    let (host3, _s3) = Client::connect(ClientConfig::new(url.clone(), "cy"))
        .await
        .unwrap();
    let over = host3.create("Already over").await.unwrap();
    host3.end().await.unwrap();
    server.shutdown().await;

    let server = start(dir.path(), grace).await;
    let url = server.url();
    // Right after the restart every space is known, with its state.
    assert_eq!(
        details(&url, kept.space.id.as_str()).await.state,
        SpaceState::Live
    );
    assert_eq!(
        details(&url, gone.space.id.as_str()).await.state,
        SpaceState::Live
    );
    assert_eq!(
        details(&url, over.space.id.as_str()).await.state,
        SpaceState::Ended
    );
    let listed: Vec<SpaceSummary> = reqwest::get(format!("{url}/api/spaces"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");

    // One host comes back in time with its token; a wrong token is refused.
    let (back, _s4) = Client::connect(ClientConfig::new(url.clone(), "ada"))
        .await
        .unwrap();
    assert!(back.resume(&kept.space.id, "not-the-token").await.is_err());
    let resumed = back
        .resume(&kept.space.id, kept.host_token.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(resumed.space.id, kept.space.id);

    tokio::time::sleep(grace + Duration::from_millis(1000)).await;
    let g = details(&url, gone.space.id.as_str()).await;
    assert_eq!(g.state, SpaceState::Ended);
    assert!(g.ended_at.is_some());
    assert_eq!(
        details(&url, kept.space.id.as_str()).await.state,
        SpaceState::Live
    );
    let listed: Vec<SpaceSummary> = reqwest::get(format!("{url}/api/spaces"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&kept.space.id]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_space_ids_are_clear_http_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Duration::from_secs(30)).await;
    let url = server.url();
    let r = reqwest::get(format!("{url}/api/spaces/zzzzzzzzzzzz"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: confab_proto::ApiError = r.json().await.unwrap();
    assert_eq!(body.code, confab_proto::ErrorCode::NoSuchSpace);
    let r = reqwest::get(format!("{url}/api/spaces/..%2F.."))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: confab_proto::ApiError = r.json().await.unwrap();
    assert_eq!(body.code, confab_proto::ErrorCode::InvalidInput);
    server.shutdown().await;
}

/// A signed-in host's space comes back from a restart as theirs: the directory names their
/// account, and the accounts they blocked stay out of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_space_keeps_its_hosts_account_and_blocks() {
    use confab_client::identity::{DeviceKey, key_file};
    use confab_proto::{ClientMsg, ErrorCode};

    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_secs(20);
    let server = start(&dir.path().join("server"), grace).await;
    let url = server.url();
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for handle in ["ada", "bob"] {
        let key = DeviceKey::load_or_create("unused", &key_file(&dir.path().join(handle))).unwrap();
        tokens.push(
            key.register(&http, &url, handle, handle)
                .await
                .unwrap()
                .token,
        );
    }
    let (ada, _a) = Client::connect(ClientConfig::new(url.clone(), "ada").with_token(&tokens[0]))
        .await
        .unwrap();
    let space = ada.create("Mine").await.unwrap();
    let (bob, mut bob_streams) =
        Client::connect(ClientConfig::new(url.clone(), "bob").with_token(&tokens[1]))
            .await
            .unwrap();
    let bob_in = bob.join(&space.space.id).await.unwrap();
    let bob_id = bob_in
        .space
        .participants
        .iter()
        .find(|p| p.name == "bob")
        .unwrap()
        .id;
    ada.stage(ClientMsg::Block {
        participant: bob_id,
    })
    .await
    .unwrap();
    // Bob is told he was removed and blocked.
    let removed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(confab_client::Event::Stage(confab_proto::ServerMsg::Removed {
                blocked,
                ..
            })) = bob_streams.events.recv().await
            {
                return blocked;
            }
        }
    })
    .await
    .unwrap();
    assert!(removed);
    bob.close().await;
    server.shutdown().await;

    let server = start(&dir.path().join("server"), grace).await;
    let url = server.url();
    let listed: Vec<SpaceSummary> = reqwest::get(format!("{url}/api/spaces"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].host_handle.as_deref(), Some("ada"), "{listed:?}");
    // Bob signs in again and tries the restored space: still blocked.
    let (bob, _b) = Client::connect(ClientConfig::new(url.clone(), "bob").with_token(&tokens[1]))
        .await
        .unwrap();
    match bob.join(&space.space.id).await {
        Err(confab_client::ClientError::Server { code, .. }) => {
            assert_eq!(code, ErrorCode::Blocked)
        }
        other => panic!("a blocked account joined a restored space: {other:?}"),
    }
    server.shutdown().await;
}
