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
