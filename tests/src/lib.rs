//! Support for Confab's whole-system tests and benchmark: a server on a free loopback port,
//! speech-like test signals, and the signal math that says whether audio arrived intact.

pub mod bench;
pub mod storm;

pub use confab_testkit::{pulse, signal};

use std::time::Duration;

use confab_server::{ServerConfig, ServerHandle};

/// A server on 127.0.0.1 with a free port and its own data directory.
pub struct TestServer {
    pub handle: ServerHandle,
    pub data_dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with default room settings.
    pub async fn start() -> anyhow::Result<TestServer> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after letting `tweak` change its config.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<TestServer> {
        let data_dir = tempfile::tempdir()?;
        let mut config =
            ServerConfig::new(data_dir.path().to_path_buf()).with_listen("127.0.0.1:0".parse()?);
        tweak(&mut config);
        let handle = confab_server::start(config).await?;
        Ok(TestServer { handle, data_dir })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.handle.url()
    }
}

/// Runs `fut` with a deadline, failing loudly instead of hanging CI.
pub async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s waiting for {what}"),
    }
}

/// A signed-in account `handle` on the server at `url` (a device key kept under `dir`):
/// its bearer token. Only signed-in participants may go on stage.
pub async fn sign_in(url: &str, dir: &std::path::Path, handle: &str) -> anyhow::Result<String> {
    use confab_client::identity::{DeviceKey, key_file};
    let key = DeviceKey::load_or_create("unused", &key_file(&dir.join(handle)))?;
    let http = reqwest::Client::new();
    Ok(key.register(&http, url, handle, handle).await?.token)
}

/// Brings `guest` (signed in, in `host`'s space) on stage: the host invites, the guest accepts
/// and unmutes. `events` is the guest's event stream; other events on it are dropped.
pub async fn bring_on_stage(
    host: &confab_client::Client,
    guest: &confab_client::Client,
    events: &mut tokio::sync::mpsc::Receiver<confab_client::Event>,
) -> anyhow::Result<()> {
    use confab_client::Event;
    use confab_proto::{ClientMsg, Role, ServerMsg};
    let id = guest.id();
    async fn until(
        events: &mut tokio::sync::mpsc::Receiver<Event>,
        what: &str,
        want: impl Fn(&ServerMsg) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Stage(m))) if want(&m) => return Ok(()),
                Ok(Some(_)) => {}
                Ok(None) => anyhow::bail!("the connection closed waiting for {what}"),
                Err(_) => anyhow::bail!("no {what} within 10 s"),
            }
        }
    }
    host.stage(ClientMsg::Invite { participant: id }).await?;
    until(events, "the invitation", |m| {
        matches!(m, ServerMsg::Invited { .. })
    })
    .await?;
    guest.stage(ClientMsg::AcceptInvite).await?;
    until(events, "the seat on stage", |m| {
        matches!(m, ServerMsg::ParticipantUpdated { participant } if participant.id == id && participant.role == Role::Speaker)
    })
    .await?;
    guest.stage(ClientMsg::UnmuteSelf).await?;
    until(events, "the unmute", |m| {
        matches!(m, ServerMsg::ParticipantUpdated { participant } if participant.id == id && participant.role == Role::Speaker && !participant.muted)
    })
    .await?;
    Ok(())
}
