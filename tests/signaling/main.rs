//! Bad input on the signaling socket gets a clear error, panics nothing, and leaves other rooms
//! alone.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::time::Duration;

use confab_client::{Client, ClientConfig, ClientError};
use confab_proto::{
    ErrorCode, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerMsg, SpaceSummary, decode_server,
};
use confab_tests::{TestServer, within};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw(url: &str) -> Ws {
    let ws_url = format!("{}/ws", url.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(ws_url).await.unwrap().0
}

async fn next_msg(ws: &mut Ws) -> Option<ServerMsg> {
    loop {
        match within(10, "a reply", ws.next()).await {
            Some(Ok(Message::Text(t))) => return Some(decode_server(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Sends `frame` and expects the error `want` as the reply. The room's own news (a receive
/// slot assigned, someone joining) may arrive first at any time; it is skipped, boundedly.
async fn expect_error(ws: &mut Ws, frame: String, want: ErrorCode) {
    ws.send(Message::Text(frame.clone().into())).await.unwrap();
    for _ in 0..20 {
        match next_msg(ws).await {
            Some(ServerMsg::Error { code, message }) => {
                assert_eq!(code, want, "frame {:.80}: {message}", frame);
                assert!(!message.is_empty());
                return;
            }
            Some(
                ServerMsg::Slot { .. }
                | ServerMsg::Participants { .. }
                | ServerMsg::ParticipantUpdated { .. },
            ) => continue,
            other => panic!("frame {:.80}: expected {want:?}, got {other:?}", frame),
        }
    }
    panic!("frame {:.80}: no {want:?} among 20 replies", frame);
}

async fn hello(ws: &mut Ws) {
    ws.send(Message::Text(
        format!(r#"{{"type":"hello","version":{PROTOCOL_VERSION},"name":"eve"}}"#).into(),
    ))
    .await
    .unwrap();
    assert!(matches!(
        next_msg(ws).await,
        Some(ServerMsg::Welcome { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_clear_errors_and_other_rooms_are_unaffected() {
    let server = TestServer::start().await.unwrap();
    let url = server.url();

    // A real room is live the whole time.
    let (host, _streams) = Client::connect(ClientConfig::new(url.clone(), "ada"))
        .await
        .unwrap();
    let joined = host.create("Unbothered").await.unwrap();
    let id = joined.space.id.clone();

    let mut ws = raw(&url).await;
    // Before hello, only hello is accepted.
    expect_error(
        &mut ws,
        r#"{"type":"join","space":"abcdefgh2345"}"#.into(),
        ErrorCode::HelloFirst,
    )
    .await;
    hello(&mut ws).await;
    expect_error(&mut ws, "not json at all".into(), ErrorCode::BadFrame).await;
    expect_error(&mut ws, r#"{"type":"join"}"#.into(), ErrorCode::BadFrame).await;
    expect_error(
        &mut ws,
        r#"{"type":"join","space":"../../etc/pw"}"#.into(),
        ErrorCode::BadFrame,
    )
    .await;
    expect_error(
        &mut ws,
        r#"{"type":"teleport","to":"mars"}"#.into(),
        ErrorCode::UnknownType,
    )
    .await;
    let big = format!(
        r#"{{"type":"create","title":"{}"}}"#,
        "x".repeat(MAX_FRAME_BYTES)
    );
    expect_error(&mut ws, big, ErrorCode::FrameTooLarge).await;
    expect_error(
        &mut ws,
        r#"{"type":"create","title":"   "}"#.into(),
        ErrorCode::InvalidInput,
    )
    .await;
    expect_error(
        &mut ws,
        r#"{"type":"join","space":"zzzzzzzzzzzz"}"#.into(),
        ErrorCode::NoSuchSpace,
    )
    .await;
    expect_error(&mut ws, r#"{"type":"end"}"#.into(), ErrorCode::NotInSpace).await;
    expect_error(
        &mut ws,
        r#"{"type":"offer","sdp":"v=0 garbage"}"#.into(),
        ErrorCode::NotInSpace,
    )
    .await;
    ws.send(Message::Binary(vec![0xff, 0x00, 0x13].into()))
        .await
        .unwrap();
    assert!(matches!(
        next_msg(&mut ws).await,
        Some(ServerMsg::Error {
            code: ErrorCode::BadFrame,
            ..
        })
    ));

    // In a room: garbage SDP is refused as a media failure, a listener cannot end the space.
    ws.send(Message::Text(
        format!(r#"{{"type":"join","space":"{id}"}}"#).into(),
    ))
    .await
    .unwrap();
    assert!(matches!(
        next_msg(&mut ws).await,
        Some(ServerMsg::Joined { .. })
    ));
    loop {
        // Skip the slot announcements that follow a join.
        let frame = r#"{"type":"offer","sdp":"v=0\r\nthis is not sdp\r\n"}"#;
        ws.send(Message::Text(frame.into())).await.unwrap();
        match next_msg(&mut ws).await {
            Some(ServerMsg::Slot { .. }) => {
                // Drain the rest of the slot messages, then retry.
                while let Ok(Some(Ok(_))) =
                    tokio::time::timeout(Duration::from_millis(200), ws.next()).await
                {
                }
                continue;
            }
            Some(ServerMsg::Error { code, .. }) => {
                assert_eq!(code, ErrorCode::MediaFailed);
                break;
            }
            other => panic!("expected media_failed, got {other:?}"),
        }
    }
    expect_error(&mut ws, r#"{"type":"end"}"#.into(), ErrorCode::NotAllowed).await;
    expect_error(
        &mut ws,
        format!(r#"{{"type":"join","space":"{id}"}}"#),
        ErrorCode::AlreadyInSpace,
    )
    .await;

    // The room is still live, listed, and joinable by someone else.
    let spaces: Vec<SpaceSummary> = reqwest::get(format!("{url}/api/spaces"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spaces.iter().any(|s| s.id == id), "{spaces:?}");
    let (other, _s) = Client::connect(ClientConfig::new(url.clone(), "fay"))
        .await
        .unwrap();
    other.join(&id).await.unwrap();

    // Ending it, then joining it, is a clear refusal.
    host.end().await.unwrap();
    let (late, _s2) = Client::connect(ClientConfig::new(url.clone(), "gus"))
        .await
        .unwrap();
    match late.join(&id).await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::SpaceEnded),
        other => panic!("joining an ended space: {other:?}"),
    }
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_protocol_version_is_refused_and_closed() {
    let server = TestServer::start().await.unwrap();
    let mut ws = raw(&server.url()).await;
    ws.send(Message::Text(
        r#"{"type":"hello","version":999,"name":"future"}"#.into(),
    ))
    .await
    .unwrap();
    match next_msg(&mut ws).await {
        Some(ServerMsg::Error { code, message }) => {
            assert_eq!(code, ErrorCode::UnsupportedVersion);
            assert!(message.contains(&PROTOCOL_VERSION.to_string()), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        next_msg(&mut ws).await.is_none(),
        "the connection should close"
    );
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_is_cut_off() {
    let server = TestServer::start().await.unwrap();
    let mut ws = raw(&server.url()).await;
    hello(&mut ws).await;
    let mut closed = false;
    for _ in 0..100 {
        if ws.send(Message::Text("][".into())).await.is_err() {
            closed = true;
            break;
        }
    }
    if !closed {
        let mut errors = 0;
        while let Some(msg) = next_msg(&mut ws).await {
            assert!(matches!(msg, ServerMsg::Error { .. }));
            errors += 1;
        }
        assert!(errors <= 40, "{errors} errors before the server hung up");
    }
    // The server is fine.
    let resp = reqwest::get(format!("{}/healthz", server.url()))
        .await
        .unwrap();
    assert!(resp.status().is_success());
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_space_refuses_one_more_and_keeps_its_count() {
    let server = TestServer::start_with(|c| c.room.max_participants = 2)
        .await
        .unwrap();
    let url = server.url();
    let (host, _h) = Client::connect(ClientConfig::new(url.clone(), "ada"))
        .await
        .unwrap();
    let id = host.create("Small room").await.unwrap().space.id;
    let (first, _f) = Client::connect(ClientConfig::new(url.clone(), "bob"))
        .await
        .unwrap();
    first.join(&id).await.unwrap();
    let (second, _s) = Client::connect(ClientConfig::new(url.clone(), "cy"))
        .await
        .unwrap();
    match second.join(&id).await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::SpaceFull),
        other => panic!("joining a full space: {other:?}"),
    }
    let spaces: Vec<SpaceSummary> = reqwest::get(format!("{url}/api/spaces"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = spaces.iter().find(|s| s.id == id).unwrap();
    assert_eq!(listed.listeners, 1, "the refused join changed the count");
    // When someone leaves, the seat is free again.
    first.leave().await.unwrap();
    let joined = within(10, "a seat to free up", async {
        loop {
            match second.join(&id).await {
                Ok(j) => break j,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert_eq!(joined.space.id, id);
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_is_pushed_live_with_topics() {
    use confab_client::Event;
    let server = TestServer::start().await.unwrap();
    let url = server.url();
    let (watcher, mut streams) = Client::connect(ClientConfig::new(url.clone(), "wat"))
        .await
        .unwrap();
    watcher.watch_directory().await.unwrap();
    let mut next_directory = async || loop {
        match within(10, "a directory update", streams.events.recv())
            .await
            .unwrap()
        {
            Event::Directory(spaces) => break spaces,
            _ => continue,
        }
    };
    assert!(next_directory().await.is_empty());
    let (host, _h) = Client::connect(ClientConfig::new(url.clone(), "ada"))
        .await
        .unwrap();
    let topics = vec![
        "Rust".to_string(),
        " audio ".to_string(),
        "rust".to_string(),
    ];
    let id = host
        .create_with_topics("Live now", topics)
        .await
        .unwrap()
        .space
        .id;
    let spaces = next_directory().await;
    assert_eq!(spaces.len(), 1);
    assert_eq!(spaces[0].id, id);
    assert_eq!(
        spaces[0].topics,
        vec!["Rust".to_string(), "audio".to_string()]
    );
    let (listener, _l) = Client::connect(ClientConfig::new(url.clone(), "bob"))
        .await
        .unwrap();
    listener.join(&id).await.unwrap();
    assert_eq!(next_directory().await[0].listeners, 1);
    host.end().await.unwrap();
    assert!(next_directory().await.is_empty());
    // Too many or too long topics are refused.
    let many: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    match host.create_with_topics("Too many", many).await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::InvalidInput),
        other => panic!("{other:?}"),
    }
    server.handle.shutdown().await;
}
