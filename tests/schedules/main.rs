//! Scheduled spaces over HTTP and signaling: a signed-in host schedules up to 30 days ahead,
//! listeners turn reminders on, only the host starts (under the schedule's id, so reminders
//! find it live) or cancels it; every refusal leaves the schedule as it was.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use confab_client::identity::{DeviceKey, key_file};
use confab_client::{Client, ClientConfig, ClientError};
use confab_proto::{ApiError, ErrorCode, Scheduled, SpaceId, SpaceSummary};
use confab_server::ServerConfig;
use reqwest::StatusCode;
use serde_json::json;

async fn token(url: &str, dir: &std::path::Path, handle: &str) -> String {
    let key = DeviceKey::load_or_create("unused", &key_file(&dir.join(handle))).unwrap();
    key.register(&reqwest::Client::new(), url, handle, handle)
        .await
        .unwrap()
        .token
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn code_of(r: reqwest::Response, status: StatusCode) -> ErrorCode {
    assert_eq!(r.status(), status);
    r.json::<ApiError>().await.unwrap().code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_schedules_starts_and_cancels_and_reminders_follow() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        ServerConfig::new(dir.path().join("server")).with_listen("127.0.0.1:0".parse().unwrap());
    let server = confab_server::start(config).await.unwrap();
    let url = server.url();
    let http = reqwest::Client::new();
    let ada = token(&url, dir.path(), "ada").await;
    let bob = token(&url, dir.path(), "bob").await;
    let upcoming = || async {
        http.get(format!("{url}/api/schedules"))
            .send()
            .await
            .unwrap()
            .json::<Vec<Scheduled>>()
            .await
            .unwrap()
    };

    // Ada schedules one for tomorrow; out-of-range times and signed-out requests are refused.
    let r = http
        .post(format!("{url}/api/schedules"))
        .bearer_auth(&ada)
        .json(
            &json!({ "title": "Tomorrow's show", "topics": ["rust"], "starts_at": now() + 86_400 }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let show: Scheduled = r.json().await.unwrap();
    assert_eq!(
        (show.host.as_str(), show.state.as_str()),
        ("ada", "scheduled")
    );
    for starts_at in [now() - 10, now() + 31 * 86_400] {
        let r = http
            .post(format!("{url}/api/schedules"))
            .bearer_auth(&ada)
            .json(&json!({ "title": "Bad", "starts_at": starts_at }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            code_of(r, StatusCode::BAD_REQUEST).await,
            ErrorCode::InvalidInput
        );
    }
    let r = http
        .post(format!("{url}/api/schedules"))
        .json(&json!({ "title": "Anon", "starts_at": now() + 60 }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code_of(r, StatusCode::UNAUTHORIZED).await,
        ErrorCode::BadToken
    );
    assert_eq!(upcoming().await, vec![show.clone()]);

    // Bob asks to be reminded; he cannot cancel Ada's space.
    let r = http
        .put(format!("{url}/api/schedules/{}/reminder", show.id))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .delete(format!("{url}/api/schedules/{}", show.id))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code_of(r, StatusCode::FORBIDDEN).await,
        ErrorCode::NotAllowed
    );
    assert_eq!(upcoming().await, vec![show.clone()]);

    // Only Ada may start it: not Bob, not a signed-out client.
    let id: SpaceId = show.id.parse().unwrap();
    let (bob_c, _b) = Client::connect(ClientConfig::new(url.clone(), "Bob").with_token(&bob))
        .await
        .unwrap();
    match bob_c.start_scheduled(&id, "Hijack", Vec::new()).await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::NotAllowed),
        other => panic!("{other:?}"),
    }
    let (anon, _a) = Client::connect(ClientConfig::new(url.clone(), "Anon"))
        .await
        .unwrap();
    match anon.start_scheduled(&id, "Hijack", Vec::new()).await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::SignInRequired),
        other => panic!("{other:?}"),
    }
    let (ada_c, _s) = Client::connect(ClientConfig::new(url.clone(), "Ada").with_token(&ada))
        .await
        .unwrap();
    let joined = ada_c
        .start_scheduled(&id, &show.title, show.topics.clone())
        .await
        .unwrap();
    assert_eq!(
        joined.space.id, id,
        "the live space keeps the schedule's id"
    );
    let live: Vec<SpaceSummary> = reqwest::get(format!("{url}/api/spaces"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(live.iter().any(|s| s.id == id));
    assert!(upcoming().await.is_empty());
    let mine: Vec<Scheduled> = http
        .get(format!("{url}/api/me/reminders"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].id.as_str(), mine[0].state.as_str()),
        (show.id.as_str(), "live")
    );

    // Another one, cancelled by Ada: gone from the list, no reminders on it.
    let second: Scheduled = http
        .post(format!("{url}/api/schedules"))
        .bearer_auth(&ada)
        .json(&json!({ "title": "Maybe", "starts_at": now() + 3_600 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http
        .delete(format!("{url}/api/schedules/{}", second.id))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(upcoming().await.is_empty());
    let r = http
        .put(format!("{url}/api/schedules/{}/reminder", second.id))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code_of(r, StatusCode::CONFLICT).await,
        ErrorCode::SpaceEnded
    );
    server.shutdown().await;
}
