//! Accounts over HTTP: a device registers with a signed challenge, signs in again after a
//! server restart, edits its profile; wrong signatures, taken handles, bad tokens and
//! malformed bodies get `{code, message}` and change nothing.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use confab_proto::{ApiError, Challenge, ErrorCode, Profile, Session};
use confab_server::ServerConfig;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use serde_json::json;

struct Device {
    key: SigningKey,
}

impl Device {
    fn new(seed: u8) -> Device {
        Device {
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn public(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().to_bytes())
    }

    fn sign(&self, text: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.key.sign(text.as_bytes()).to_bytes())
    }

    async fn challenge(&self, http: &reqwest::Client, url: &str) -> String {
        let c: Challenge = http
            .post(format!("{url}/api/auth/challenge"))
            .json(&json!({ "public_key": self.public() }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        c.challenge
    }

    async fn register(&self, http: &reqwest::Client, url: &str, handle: &str) -> reqwest::Response {
        let c = self.challenge(http, url).await;
        let signature = self.sign(&format!(
            "confab-auth-v1\nregister\n{c}\n{}",
            handle.to_ascii_lowercase()
        ));
        http.post(format!("{url}/api/accounts"))
            .json(&json!({ "handle": handle, "display_name": "Ada", "challenge": c, "signature": signature }))
            .send()
            .await
            .unwrap()
    }

    async fn sign_in(&self, http: &reqwest::Client, url: &str) -> reqwest::Response {
        let c = self.challenge(http, url).await;
        let signature = self.sign(&format!("confab-auth-v1\nsign-in\n{c}"));
        http.post(format!("{url}/api/auth/sign-in"))
            .json(&json!({ "challenge": c, "signature": signature }))
            .send()
            .await
            .unwrap()
    }
}

async fn refusal(response: reqwest::Response, status: StatusCode, code: ErrorCode) -> ApiError {
    assert_eq!(response.status(), status);
    let e: ApiError = response.json().await.unwrap();
    assert_eq!(e.code, code, "{e:?}");
    assert!(!e.message.is_empty());
    e
}

async fn start(dir: &std::path::Path) -> confab_server::ServerHandle {
    let config = ServerConfig::new(dir.to_path_buf()).with_listen("127.0.0.1:0".parse().unwrap());
    confab_server::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_registers_signs_in_after_a_restart_and_edits_its_profile() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let url = server.url();
    let http = reqwest::Client::new();
    let phone = Device::new(7);

    let response = phone.register(&http, &url, "Ada").await;
    assert_eq!(response.status(), StatusCode::OK);
    let session: Session = response.json().await.unwrap();
    assert_eq!(session.user.handle, "ada");
    let me: Profile = http
        .get(format!("{url}/api/me"))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me, session.user);

    // Someone else cannot take the handle, in any case; Ada's account is untouched.
    let other = Device::new(8);
    refusal(
        other.register(&http, &url, "ADA").await,
        StatusCode::CONFLICT,
        ErrorCode::NotAllowed,
    )
    .await;
    // A signature by another key over Ada's challenge signs no one in.
    let c = phone.challenge(&http, &url).await;
    let forged = other.sign(&format!("confab-auth-v1\nsign-in\n{c}"));
    let r = http
        .post(format!("{url}/api/auth/sign-in"))
        .json(&json!({ "challenge": c, "signature": forged }))
        .send()
        .await
        .unwrap();
    refusal(r, StatusCode::FORBIDDEN, ErrorCode::NotAllowed).await;
    // Bad tokens and bodies.
    let r = http
        .get(format!("{url}/api/me"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    refusal(r, StatusCode::UNAUTHORIZED, ErrorCode::BadToken).await;
    let r = http.get(format!("{url}/api/me")).send().await.unwrap();
    refusal(r, StatusCode::UNAUTHORIZED, ErrorCode::BadToken).await;
    let r = http
        .post(format!("{url}/api/auth/challenge"))
        .header("content-type", "application/json")
        .body("{\"public_key\": 5")
        .send()
        .await
        .unwrap();
    refusal(r, StatusCode::BAD_REQUEST, ErrorCode::InvalidInput).await;

    // The profile, with a small avatar; an oversized one is refused and changes nothing.
    let avatar = [b"\x89PNG\r\n\x1a\n".as_slice(), &[7u8; 100]].concat();
    let r = http
        .put(format!("{url}/api/me"))
        .bearer_auth(&session.token)
        .json(&json!({ "display_name": "Ada L.", "bio": "Radio", "avatar": STANDARD.encode(&avatar) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let huge = [b"\x89PNG\r\n\x1a\n".as_slice(), &[7u8; 70_000]].concat();
    let r = http
        .put(format!("{url}/api/me"))
        .bearer_auth(&session.token)
        .json(&json!({ "display_name": "Eve", "avatar": STANDARD.encode(&huge) }))
        .send()
        .await
        .unwrap();
    refusal(r, StatusCode::BAD_REQUEST, ErrorCode::InvalidInput).await;
    let public: Profile = reqwest::get(format!("{url}/api/users/ADA"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public.display_name, "Ada L.");
    assert_eq!(public.avatar, Some(STANDARD.encode(&avatar)));

    // A restart: the account, its profile and its device are still there; the token too.
    server.shutdown().await;
    let server = start(dir.path()).await;
    let url = server.url();
    let again: Session = phone.sign_in(&http, &url).await.json().await.unwrap();
    assert_eq!(again.user, public);
    let r = http
        .get(format!("{url}/api/me"))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A second device added by the signed-in user signs in as Ada.
    let laptop = Device::new(9);
    refusal(
        laptop.sign_in(&http, &url).await,
        StatusCode::FORBIDDEN,
        ErrorCode::NotAllowed,
    )
    .await;
    let r = http
        .post(format!("{url}/api/me/devices"))
        .bearer_auth(&again.token)
        .json(&json!({ "public_key": laptop.public() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let on_laptop: Session = laptop.sign_in(&http, &url).await.json().await.unwrap();
    assert_eq!(on_laptop.user.handle, "ada");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_persist_and_the_operator_resolves_them() {
    use confab_server::reports::{Reports, details, list_line};
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let url = server.url();
    let http = reqwest::Client::new();
    let ada: Session = Device::new(1)
        .register(&http, &url, "ada")
        .await
        .json()
        .await
        .unwrap();
    let _bob: Session = Device::new(2)
        .register(&http, &url, "bob")
        .await
        .json()
        .await
        .unwrap();
    let report = |token: Option<String>, body: serde_json::Value| {
        let mut r = http.post(format!("{url}/api/reports")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = report(
        Some(ada.token.clone()),
        json!({ "kind": "user", "target": "BOB", "reason": "shouting slurs" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Signed out, about nobody, without a reason, of an unknown kind: refused, nothing filed.
    let r = report(
        None,
        json!({ "kind": "user", "target": "bob", "reason": "x" }),
    )
    .await
    .unwrap();
    refusal(r, StatusCode::UNAUTHORIZED, ErrorCode::BadToken).await;
    for body in [
        json!({ "kind": "user", "target": "nobody", "reason": "x" }),
        json!({ "kind": "space", "target": "abcdefgh2345", "reason": "x" }),
        json!({ "kind": "user", "target": "bob", "reason": "   " }),
        json!({ "kind": "planet", "target": "bob", "reason": "x" }),
    ] {
        let r = report(Some(ada.token.clone()), body.clone()).await.unwrap();
        refusal(r, StatusCode::BAD_REQUEST, ErrorCode::InvalidInput).await;
    }
    server.shutdown().await;

    // The operator's view (what `confab-server reports` prints), after the server stopped.
    let reports = Reports::open(dir.path()).unwrap();
    let open = reports.list(false).unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let line = list_line(&open[0]);
    assert!(
        line.contains("open") && line.contains("user bob") && line.contains("by ada"),
        "{line}"
    );
    let resolved = reports
        .resolve(open[0].id, "bob blocked for a week", 1_900_000_000)
        .unwrap();
    assert!(details(&resolved).contains("resolution: bob blocked for a week"));
    assert!(reports.list(false).unwrap().is_empty());
    assert_eq!(reports.list(true).unwrap().len(), 1);
    // Resolving twice, or a report that does not exist: a clear error, nothing changed.
    assert!(reports.resolve(open[0].id, "again", 1_900_000_001).is_err());
    assert!(reports.resolve(999, "none", 1_900_000_001).is_err());
    assert_eq!(
        reports
            .show(open[0].id)
            .unwrap()
            .unwrap()
            .resolution
            .as_deref(),
        Some("bob blocked for a week")
    );
}
