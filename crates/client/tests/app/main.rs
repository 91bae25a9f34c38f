//! The desktop app's logic against a real server: follows, the live directory, notifications
//! decided once per host, joining, and what survives a restart or an absent server.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::path::Path;
use std::time::Duration;

use confab_client::app::{App, AppOptions};
use confab_proto::Role;
use confab_proto::ipc::{AppEvent, IpcErrorCode};
use confab_server::ServerConfig;
use tokio::sync::mpsc::Receiver;

fn options(profile: &str, dir: &Path, server_url: &str) -> AppOptions {
    AppOptions {
        profile: profile.to_owned(),
        store_path: dir.join(profile).join("confab.sqlite3"),
        server_url: server_url.to_owned(),
        embedded_server: false,
        audio: false,
    }
}

/// Waits for the first event that `want` accepts, failing after `secs`.
async fn until(
    rx: &mut Receiver<AppEvent>,
    secs: u64,
    what: &str,
    mut want: impl FnMut(&AppEvent) -> bool,
) -> AppEvent {
    let wait = async {
        loop {
            let ev = rx.recv().await.expect("event stream closed");
            if want(&ev) {
                return ev;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(secs), wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {secs} s"))
}

/// Every event that arrives within `window`.
async fn drain(rx: &mut Receiver<AppEvent>, window: Duration) -> Vec<AppEvent> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        out.push(ev);
    }
    out
}

fn connected(ev: &AppEvent) -> bool {
    matches!(
        ev,
        AppEvent::Connection {
            connected: true,
            ..
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_host_going_live_is_announced_once_and_can_be_joined() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        ServerConfig::new(dir.path().join("server")).with_listen("127.0.0.1:0".parse().unwrap());
    let server = confab_server::start(config).await.unwrap();
    let url = server.url();

    let (a, mut a_events) = App::start(options("ada", dir.path(), &url)).await.unwrap();
    let (b, mut b_events) = App::start(options("bob", dir.path(), &url)).await.unwrap();
    until(&mut a_events, 10, "connection", connected).await;
    until(&mut b_events, 10, "connection", connected).await;

    let first = a
        .create_space("First".into(), vec!["rust".into()])
        .await
        .unwrap();
    assert_eq!(first.role, Role::Host);
    until(&mut b_events, 10, "the first space in the directory", |e| {
        matches!(e, AppEvent::Directory { live } if live.iter().any(|s| s.id == first.space.id))
    })
    .await;
    assert_eq!(
        b.search("RUST").len(),
        1,
        "search matches topics, ignoring case"
    );
    assert_eq!(b.search("ada").len(), 1, "search matches the host");
    assert!(b.search("cooking").is_empty());

    // Following a host who is live already is not news: no notification for that space.
    b.follow("ada".into()).await.unwrap();
    a.end_space().await.unwrap();
    until(&mut a_events, 10, "the end", |e| {
        matches!(e, AppEvent::Ended { .. })
    })
    .await;

    // The host restarts four times within seconds: one notification, for the first new space.
    let mut ids = Vec::new();
    for take in 0..4 {
        let cur = a
            .create_space(format!("Take {take}"), vec![])
            .await
            .unwrap();
        ids.push(cur.space.id.clone());
        // Long enough for each to reach the directory (debounced 100 ms) before the next.
        tokio::time::sleep(Duration::from_millis(400)).await;
        if take < 3 {
            a.end_space().await.unwrap();
            until(&mut a_events, 10, "the end", |e| {
                matches!(e, AppEvent::Ended { .. })
            })
            .await;
        }
    }
    let events = drain(&mut b_events, Duration::from_millis(1500)).await;
    let notified: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AppEvent::FollowedLive { space } => Some(space.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        notified.len(),
        1,
        "expected one notification, got {notified:?}"
    );
    assert_eq!(notified[0].host, "ada");
    assert_eq!(notified[0].id, ids[0]);

    // Activating it joins the live space.
    let live_id = ids[3].clone();
    let joined = b.join_space(live_id.clone()).await.unwrap();
    assert_eq!(joined.role, Role::Listener);
    assert!(joined.space.participants.iter().any(|p| p.name == "ada"));
    until(
        &mut b_events,
        10,
        "media",
        |e| matches!(e, AppEvent::Current { current: Some(c) } if c.media_connected),
    )
    .await;
    let state = b.state().await;
    assert_eq!(state.current.as_ref().map(|c| &c.space.id), Some(&live_id));
    let followed = state.followed.iter().find(|f| f.host == "ada").unwrap();
    assert_eq!(followed.live_space.as_ref().map(|s| &s.id), Some(&live_id));

    // A listener may not end the space; the server says so and nothing changes.
    let refused = b.end_space().await.unwrap_err();
    assert_eq!(
        refused.code,
        IpcErrorCode::Server(confab_proto::ErrorCode::NotAllowed)
    );
    assert!(b.state().await.current.is_some());

    // The host ends it; the listener is told and is out.
    a.end_space().await.unwrap();
    until(&mut b_events, 10, "the end", |e| {
        matches!(e, AppEvent::Ended { .. })
    })
    .await;
    assert!(b.state().await.current.is_none());

    b.shutdown().await;
    a.shutdown().await;
    server.shutdown().await;

    // Follows and last-known spaces survive a restart, and show with no server at all.
    let (b2, mut b2_events) = App::start(options("bob", dir.path(), &url)).await.unwrap();
    until(&mut b2_events, 10, "a failed connection", |e| {
        matches!(
            e,
            AppEvent::Connection {
                connected: false,
                ..
            }
        )
    })
    .await;
    let state = b2.state().await;
    assert!(!state.connected);
    let followed = state.followed.iter().find(|f| f.host == "ada").unwrap();
    assert!(followed.live_space.is_none());
    assert_eq!(followed.last_title.as_deref(), Some("Take 3"));
    let offline = b2.join_space(live_id).await.unwrap_err();
    assert_eq!(offline.code, IpcErrorCode::Offline);
    b2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_checked_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _events) = App::start(options("cy", dir.path(), "http://127.0.0.1:1"))
        .await
        .unwrap();
    let mut s = app.settings().await.unwrap();
    assert_eq!(s.display_name, "cy");
    s.display_name = "   ".into();
    assert_eq!(
        app.save_settings(s.clone()).await.unwrap_err().code,
        IpcErrorCode::InvalidInput
    );
    s.display_name = "Cy Twombly".into();
    s.server_url = Some("ftp://elsewhere".into());
    assert_eq!(
        app.save_settings(s.clone()).await.unwrap_err().code,
        IpcErrorCode::InvalidInput
    );
    s.server_url = Some("http://127.0.0.2:7373".into());
    s.input_device = Some("vmic".into());
    app.save_settings(s.clone()).await.unwrap();
    app.shutdown().await;
    let (again, _e) = App::start(options("cy", dir.path(), "http://127.0.0.1:1"))
        .await
        .unwrap();
    assert_eq!(again.settings().await.unwrap(), s);
    assert_eq!(again.state().await.display_name, "Cy Twombly");
    assert_eq!(
        again.follow("".into()).await.unwrap_err().code,
        IpcErrorCode::InvalidInput
    );
    again.shutdown().await;
}
