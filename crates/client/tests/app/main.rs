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
    assert!(s.voice.noise_suppression && s.voice.echo_cancellation && s.voice.auto_gain);
    s.voice.echo_cancellation = false;
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

/// A device key file for `profile` (the test must not touch the developer's own keychain).
fn key_for(profile: &str, dir: &Path, seed: u8) {
    use std::io::Write as _;
    let file = confab_client::identity::key_file(&dir.join(profile));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(f.write(true).create_new(true), 0o600);
    f.open(&file).unwrap().write_all(&[seed; 32]).unwrap();
}

fn current_where(ev: &AppEvent, want: impl Fn(&confab_proto::ipc::CurrentSpace) -> bool) -> bool {
    matches!(ev, AppEvent::Current { current: Some(c) } if want(c))
}

/// The stage as the desktop app drives it: accounts made from the app, a schedule and its
/// reminder, a raised hand approved, reactions, chat and its moderation, a personal block and
/// a removal. Each refusal leaves the space as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_from_the_app_hands_reactions_chat_blocks_and_reminders() {
    use confab_proto::ipc::{ReportKind, StageAction};
    use confab_proto::{ErrorCode, UserId};

    let dir = tempfile::tempdir().unwrap();
    let config =
        ServerConfig::new(dir.path().join("server")).with_listen("127.0.0.1:0".parse().unwrap());
    let server = confab_server::start(config).await.unwrap();
    let url = server.url();
    key_for("ada", dir.path(), 1);
    key_for("bob", dir.path(), 2);
    let (ada, mut ada_ev) = App::start(options("ada", dir.path(), &url)).await.unwrap();
    let (bob, mut bob_ev) = App::start(options("bob", dir.path(), &url)).await.unwrap();
    let (cy, mut cy_ev) = App::start(options("cy", dir.path(), &url)).await.unwrap();
    for rx in [&mut ada_ev, &mut bob_ev, &mut cy_ev] {
        until(rx, 10, "connection", connected).await;
    }

    // Accounts, made from the app; the connection comes back signed in.
    assert!(ada.state().await.account.is_none());
    let account = ada
        .create_account("Ada_L".into(), "Ada Lovelace".into())
        .await
        .unwrap();
    assert_eq!(account.handle, "ada_l");
    bob.create_account("bob".into(), "Bob".into())
        .await
        .unwrap();
    for rx in [&mut ada_ev, &mut bob_ev] {
        until(rx, 10, "reconnected", connected).await;
    }
    assert_eq!(ada.state().await.display_name, "Ada Lovelace");
    let taken = cy
        .create_account("bob".into(), "Not Bob".into())
        .await
        .unwrap_err();
    assert_eq!(taken.code, IpcErrorCode::Server(ErrorCode::NotAllowed));
    assert!(cy.state().await.account.is_none());
    // Signed out, cy cannot ask for a reminder or report.
    assert_eq!(
        cy.set_reminder("abcdefgh2345".into(), true)
            .await
            .unwrap_err()
            .code,
        IpcErrorCode::Server(ErrorCode::SignInRequired)
    );

    // Ada schedules a space; Bob asks to be reminded and sees it upcoming.
    let starts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3600;
    let up = ada
        .schedule_space("Launch party".into(), vec!["space".into()], starts)
        .await
        .unwrap();
    assert!(up.mine);
    // Cy follows Ada by handle: her scheduled space shows on cy's Home, no reminder needed.
    cy.follow("@ada_l".into()).await.unwrap();
    let on_home = cy.state().await.upcoming;
    assert!(
        on_home
            .iter()
            .any(|u| u.id == up.id && !u.reminded && !u.mine),
        "{on_home:?}"
    );
    bob.set_reminder(up.id.clone(), true).await.unwrap();
    let listed = bob.state().await.upcoming;
    assert!(
        listed
            .iter()
            .any(|u| u.id == up.id && u.reminded && !u.mine),
        "{listed:?}"
    );

    // Ada starts it: Bob is reminded (a notification), everyone joins.
    let hosted = ada.start_scheduled(up.id.clone()).await.unwrap();
    assert_eq!(hosted.space.id.as_str(), up.id);
    until(&mut bob_ev, 10, "the reminder", |e| {
        matches!(e, AppEvent::Reminder { space } if space.id.as_str() == up.id && space.host_handle.as_deref() == Some("ada_l"))
    })
    .await;
    assert!(
        bob.state().await.upcoming.is_empty(),
        "live now, not upcoming"
    );
    let sid = hosted.space.id.clone();
    let bob_in = bob.join_space(sid.clone()).await.unwrap();
    let cy_in = cy.join_space(sid.clone()).await.unwrap();
    let (bob_id, cy_id) = (bob_in.you, cy_in.you);
    assert_eq!(
        bob_in
            .space
            .participants
            .iter()
            .find(|p| p.id == bob_id)
            .and_then(|p| p.user.clone()),
        Some(UserId::new("bob").unwrap())
    );
    // Followed by handle: the host's account, not its display name. (The directory reaches
    // cy in its own time: wait for it rather than read the state at once.)
    if cy.state().await.followed[0]
        .live_space
        .as_ref()
        .map(|s| &s.id)
        != Some(&sid)
    {
        until(&mut cy_ev, 10, "Ada live among cy's follows", |e| {
            matches!(e, AppEvent::Followed { followed } if followed.iter().any(|f| f.host == "@ada_l" && f.live_space.as_ref().map(|s| &s.id) == Some(&sid)))
        })
        .await;
    }

    // Signed out, cy may listen but not raise a hand: refused, nothing changes.
    cy.stage(StageAction::RaiseHand).await.unwrap();
    until(&mut cy_ev, 10, "the refusal", |e| {
        matches!(
            e,
            AppEvent::Refused {
                code: ErrorCode::SignInRequired,
                ..
            }
        )
    })
    .await;
    assert!(ada.state().await.current.unwrap().space.hands.is_empty());

    // Bob raises his hand; Ada sees it and approves; Bob comes up muted and unmutes.
    bob.stage(StageAction::RaiseHand).await.unwrap();
    until(&mut ada_ev, 10, "Bob's hand", |e| {
        current_where(e, |c| c.space.hands == [bob_id])
    })
    .await;
    // A listener may not approve anyone, not even themself.
    bob.stage(StageAction::ApproveHand {
        participant: bob_id,
    })
    .await
    .unwrap();
    until(&mut bob_ev, 10, "the refusal", |e| {
        matches!(
            e,
            AppEvent::Refused {
                code: ErrorCode::NotAllowed,
                ..
            }
        )
    })
    .await;
    ada.stage(StageAction::ApproveHand {
        participant: bob_id,
    })
    .await
    .unwrap();
    until(&mut bob_ev, 10, "Bob on stage", |e| {
        current_where(e, |c| c.role == Role::Speaker && c.muted)
    })
    .await;
    bob.set_muted(false).await.unwrap();
    until(&mut cy_ev, 10, "Bob unmuted, as cy sees it", |e| {
        current_where(e, |c| {
            c.space
                .participants
                .iter()
                .any(|p| p.id == bob_id && p.role == Role::Speaker && !p.muted)
        })
    })
    .await;

    // Cy turns Bob down for herself; a wild volume or a stranger is refused.
    cy.set_volume(bob_id, 0.5).await.unwrap();
    until(&mut cy_ev, 10, "the volume", |e| {
        matches!(e, AppEvent::Volumes { volumes } if volumes.len() == 1 && volumes[0].participant == bob_id && volumes[0].volume == 0.5)
    })
    .await;
    for bad in [f32::NAN, -1.0, 9.0] {
        assert_eq!(
            cy.set_volume(bob_id, bad).await.unwrap_err().code,
            IpcErrorCode::InvalidInput
        );
    }
    assert_eq!(
        cy.set_volume(confab_proto::ParticipantId(9999), 1.0)
            .await
            .unwrap_err()
            .code,
        IpcErrorCode::InvalidInput
    );

    // A reaction reaches everyone; chat too; the host deletes a message.
    bob.stage(StageAction::React {
        emoji: "👏".into()
    })
    .await
    .unwrap();
    for rx in [&mut ada_ev, &mut cy_ev] {
        until(rx, 10, "Bob's reaction", |e| {
            matches!(e, AppEvent::Reaction { participant, emoji } if *participant == bob_id && emoji == "👏")
        })
        .await;
    }
    bob.stage(StageAction::Chat {
        text: "hello, stage".into(),
    })
    .await
    .unwrap();
    until(&mut cy_ev, 10, "the chat", |e| {
        current_where(e, |c| c.chat.iter().any(|m| m.text == "hello, stage"))
    })
    .await;
    let seen = until(&mut ada_ev, 10, "the chat at Ada", |e| {
        current_where(e, |c| c.chat.iter().any(|m| m.text == "hello, stage"))
    })
    .await;
    let AppEvent::Current {
        current: Some(seen),
    } = seen
    else {
        unreachable!()
    };
    let msg = seen
        .chat
        .into_iter()
        .find(|m| m.text == "hello, stage")
        .unwrap();
    ada.stage(StageAction::DeleteChat { id: msg.id })
        .await
        .unwrap();
    until(&mut cy_ev, 10, "the deletion", |e| {
        current_where(e, |c| c.chat.is_empty())
    })
    .await;

    // Ada blocks Bob for herself: his reactions stop reaching her, not cy.
    ada.block_user("@Bob".into(), true).await.unwrap();
    drain(&mut ada_ev, Duration::from_millis(200)).await;
    bob.stage(StageAction::React {
        emoji: "❤️".into()
    })
    .await
    .unwrap();
    until(
        &mut cy_ev,
        10,
        "the second reaction at cy",
        |e| matches!(e, AppEvent::Reaction { emoji, .. } if emoji == "❤️"),
    )
    .await;
    let at_ada = drain(&mut ada_ev, Duration::from_millis(800)).await;
    assert!(
        !at_ada
            .iter()
            .any(|e| matches!(e, AppEvent::Reaction { .. })),
        "a blocked account's reaction reached Ada: {at_ada:?}"
    );
    assert_eq!(ada.state().await.blocked, ["bob"]);
    assert_eq!(
        ada.block_user("not a handle!".into(), true)
            .await
            .unwrap_err()
            .code,
        IpcErrorCode::InvalidInput
    );

    // Ada sets a picture: the others in her space get it to draw; a GIF is refused.
    let gif = ada
        .update_profile("Poet".into(), Some("R0lGODlhAQABAAAAACw=".into()))
        .await
        .unwrap_err();
    assert_eq!(gif.code, IpcErrorCode::Server(ErrorCode::InvalidInput));
    let me = ada
        .update_profile("Poet, of numbers".into(), Some("iVBORw0KGgpyZXN0".into()))
        .await
        .unwrap();
    assert_eq!(me.bio, "Poet, of numbers");
    assert_eq!(
        me.avatar.as_deref(),
        Some("data:image/png;base64,iVBORw0KGgpyZXN0")
    );
    // Someone joining now gets it to draw next to her name.
    let (dee, mut dee_ev) = App::start(options("dee", dir.path(), &url)).await.unwrap();
    until(&mut dee_ev, 10, "connection", connected).await;
    dee.join_space(sid.clone()).await.unwrap();
    until(&mut dee_ev, 10, "Ada's avatar", |e| {
        matches!(e, AppEvent::Avatars { avatars } if avatars.iter().any(|a| a.handle == "ada_l" && a.src == "data:image/png;base64,iVBORw0KGgpyZXN0"))
    })
    .await;
    dee.shutdown().await;

    // Bob reports cy's space; the report is filed.
    assert!(
        bob.report(ReportKind::Space, sid.to_string(), "testing".into())
            .await
            .unwrap()
            > 0
    );

    // The host removes cy: cy is told and is out; the others go on.
    ada.stage(StageAction::Remove { participant: cy_id })
        .await
        .unwrap();
    until(&mut cy_ev, 10, "the removal", |e| {
        matches!(e, AppEvent::Removed { blocked: false })
    })
    .await;
    assert!(cy.state().await.current.is_none());
    assert!(bob.state().await.current.is_some());

    for app in [&ada, &bob, &cy] {
        app.shutdown().await;
    }
    // The block list and the account survive a restart.
    let (ada2, mut ada2_ev) = App::start(options("ada", dir.path(), &url)).await.unwrap();
    until(
        &mut ada2_ev,
        10,
        "signed in again",
        |e| matches!(e, AppEvent::Account { account: Some(a) } if a.handle == "ada_l"),
    )
    .await;
    assert_eq!(ada2.state().await.blocked, ["bob"]);
    ada2.shutdown().await;
    server.shutdown().await;
}

/// A listener's diagnostics carry real figures once a speaker's audio flows: the jitter
/// buffer's delay, the network's round trip (loopback: well under 50 ms), jitter and loss; and
/// they stop when the panel closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_show_a_speakers_network_and_buffer_figures_while_wanted() {
    use confab_audio::{FRAME_SAMPLES, SAMPLE_RATE};
    use confab_client::{Client, ClientConfig};

    let dir = tempfile::tempdir().unwrap();
    let config =
        ServerConfig::new(dir.path().join("server")).with_listen("127.0.0.1:0".parse().unwrap());
    let server = confab_server::start(config).await.unwrap();
    let url = server.url();

    // The speaker: a plain client sending a tone, paced like a microphone.
    let (host, mut host_streams) = Client::connect(ClientConfig::new(url.clone(), "Hana"))
        .await
        .unwrap();
    let joined = host.create("Figures").await.unwrap();
    let mic = host.mic().await.unwrap();
    tokio::spawn(async move { while host_streams.events.recv().await.is_some() {} });
    let tone = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut n = 0usize;
        loop {
            tick.tick().await;
            let frame: Vec<f32> = (0..FRAME_SAMPLES)
                .map(|i| {
                    let t = (n * FRAME_SAMPLES + i) as f32 / SAMPLE_RATE as f32;
                    0.3 * (std::f32::consts::TAU * 440.0 * t).sin()
                })
                .collect();
            n += 1;
            if mic.send(frame).await.is_err() {
                return;
            }
        }
    });

    let (app, mut events) = App::start(options("lis", dir.path(), &url)).await.unwrap();
    until(&mut events, 10, "connection", connected).await;
    app.join_space(joined.space.id.clone()).await.unwrap();
    app.set_diagnostics(true).await.unwrap();
    // What the panel showed last, to say what was missing if the full figures never come.
    let mut last: Option<Vec<confab_proto::ipc::SpeakerDiagnostics>> = None;
    let full = |e: &AppEvent| {
        matches!(e, AppEvent::Diagnostics { speakers } if speakers.iter().any(|d| {
            d.participant == host.id() && d.buffer_ms > 0.0 && d.loss.is_some()
                && d.jitter_ms.is_some() && d.rtt_ms.is_some()
        }))
    };
    let wait = async {
        loop {
            let ev = events.recv().await.expect("event stream closed");
            if let AppEvent::Diagnostics { speakers } = &ev {
                last = Some(speakers.clone());
            }
            if full(&ev) {
                return ev;
            }
        }
    };
    let figures = tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("no full figures within 30 s; the last were {last:?}"));
    let AppEvent::Diagnostics { speakers } = figures else {
        unreachable!()
    };
    let d = speakers
        .iter()
        .find(|d| d.participant == host.id())
        .unwrap();
    eprintln!("figures: {d:?}");
    let rtt = d.rtt_ms.unwrap();
    assert!(rtt > 0.0 && rtt < 50.0, "round trip on loopback: {rtt} ms");
    assert!(
        d.buffer_ms > 0.0 && d.buffer_ms < 500.0,
        "buffer {} ms",
        d.buffer_ms
    );
    assert!(d.target_ms > 0.0, "target {} ms", d.target_ms);
    let jitter = d.jitter_ms.unwrap();
    assert!((0.0..30.0).contains(&jitter), "jitter {jitter} ms");
    let loss = d.loss.unwrap();
    assert!(loss < 0.05, "loss on loopback: {loss}");

    // Closed: no more figures.
    app.set_diagnostics(false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = drain(&mut events, Duration::from_millis(2500)).await;
    assert!(
        !after
            .iter()
            .any(|e| matches!(e, AppEvent::Diagnostics { .. })),
        "diagnostics kept coming after they were turned off"
    );
    tone.abort();
    app.shutdown().await;
    host.close().await;
}

/// Push-to-talk at the app level: in that mode the host's microphone is muted on entering,
/// opens while the key is held and closes on release; the server's mute state (what a listener
/// sees) follows. A bad key is refused; an open mic ignores the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_talk_opens_the_mic_only_while_the_key_is_held() {
    use confab_proto::ipc::MicMode;

    let dir = tempfile::tempdir().unwrap();
    let config =
        ServerConfig::new(dir.path().join("server")).with_listen("127.0.0.1:0".parse().unwrap());
    let server = confab_server::start(config).await.unwrap();
    let url = server.url();
    let (host, mut host_events) = App::start(options("hana", dir.path(), &url)).await.unwrap();
    let (lis, mut lis_events) = App::start(options("lou", dir.path(), &url)).await.unwrap();
    until(&mut host_events, 10, "connection", connected).await;
    until(&mut lis_events, 10, "connection", connected).await;

    let mut s = host.settings().await.unwrap();
    assert_eq!(s.mic_mode, MicMode::Open);
    s.mic_mode = MicMode::PushToTalk { key: "F".into() };
    assert_eq!(
        host.save_settings(s.clone()).await.unwrap_err().code,
        IpcErrorCode::InvalidInput,
        "a bare letter would type while talking"
    );
    s.mic_mode = MicMode::PushToTalk {
        key: "ctrl+space".into(),
    };
    host.save_settings(s).await.unwrap();
    assert_eq!(
        host.settings().await.unwrap().mic_mode,
        MicMode::PushToTalk {
            key: "Ctrl+Space".into()
        }
    );
    until(
        &mut host_events,
        5,
        "the mode",
        |e| matches!(e, AppEvent::MicMode { key: Some(k) } if k == "Ctrl+Space"),
    )
    .await;
    assert_eq!(
        host.state().await.push_to_talk.as_deref(),
        Some("Ctrl+Space")
    );

    let space = host.create_space("Talk".into(), vec![]).await.unwrap();
    let me = space.you;
    lis.join_space(space.space.id.clone()).await.unwrap();
    let host_muted_for_listener = |want: bool| {
        move |e: &AppEvent| {
            current_where(e, |c| {
                c.space
                    .participants
                    .iter()
                    .any(|p| p.id == me && p.muted == want)
            })
        }
    };
    until(
        &mut lis_events,
        10,
        "the host muted (key up)",
        host_muted_for_listener(true),
    )
    .await;
    assert!(host.state().await.current.unwrap().muted);

    host.push_to_talk(true).await.unwrap();
    assert!(
        !host.state().await.current.unwrap().muted,
        "the key opens the mic at once"
    );
    until(
        &mut lis_events,
        10,
        "the host talking",
        host_muted_for_listener(false),
    )
    .await;
    host.push_to_talk(true).await.unwrap(); // the keyboard repeating: nothing changes
    host.push_to_talk(false).await.unwrap();
    assert!(host.state().await.current.unwrap().muted);
    until(
        &mut lis_events,
        10,
        "the host muted again",
        host_muted_for_listener(true),
    )
    .await;

    // A listener's key does nothing: they are not on the mic.
    let mut ls = lis.settings().await.unwrap();
    ls.mic_mode = MicMode::PushToTalk { key: "F8".into() };
    lis.save_settings(ls).await.unwrap();
    lis.push_to_talk(true).await.unwrap();
    assert!(!lis.state().await.current.unwrap().role.speaks());

    // Back to an open mic: the key is ignored; the mute button decides.
    let mut s = host.settings().await.unwrap();
    s.mic_mode = MicMode::Open;
    host.save_settings(s).await.unwrap();
    host.push_to_talk(true).await.unwrap();
    assert!(host.state().await.current.unwrap().muted);
    host.set_muted(false).await.unwrap();
    until(
        &mut lis_events,
        10,
        "the host unmuted by the button",
        host_muted_for_listener(false),
    )
    .await;

    lis.shutdown().await;
    host.shutdown().await;
}
