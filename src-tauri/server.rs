//! Which server this instance talks to: one named by `--server`, `CONFAB_SERVER` or the saved
//! setting; otherwise the server embedded in the app, on 127.0.0.1:7373, so a fresh install can
//! host at once. When another Confab instance already runs its embedded server there, this one
//! uses it (that is how two profiles on one desktop meet).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use confab_server::{DEFAULT_PORT, ServerConfig, ServerHandle};

/// The server in use.
pub(crate) enum Server {
    /// A server named by the user.
    External(String),
    /// Another instance's embedded server on this machine.
    Shared(String),
    /// Ours: stopped when the app exits.
    Embedded(ServerHandle),
}

impl Server {
    /// Picks the server: `configured` (the flag, the environment or the saved setting) if any,
    /// else the embedded one, with its data under `data_dir`.
    pub(crate) async fn choose(
        configured: Option<String>,
        data_dir: PathBuf,
    ) -> anyhow::Result<Server> {
        if let Some(url) = configured {
            return Ok(Server::External(url.trim_end_matches('/').to_owned()));
        }
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT));
        let config = ServerConfig::new(data_dir).with_listen(listen);
        match confab_server::start(config).await {
            Ok(handle) => Ok(Server::Embedded(handle)),
            Err(e) => {
                let url = format!("http://{listen}");
                if is_confab_server(&url).await {
                    tracing::info!(%url, "using the server another Confab instance runs");
                    return Ok(Server::Shared(url));
                }
                Err(e).with_context(|| {
                    format!(
                        "starting the embedded server on {listen}; if another program holds that \
                         port, point Confab at a server with --server URL"
                    )
                })
            }
        }
    }

    /// `http://HOST:PORT` of the server.
    pub(crate) fn url(&self) -> String {
        match self {
            Server::External(url) | Server::Shared(url) => url.clone(),
            Server::Embedded(handle) => handle.url(),
        }
    }

    /// Whether it is a Confab app's built-in server (ours or another instance's).
    pub(crate) fn is_embedded(&self) -> bool {
        !matches!(self, Server::External(_))
    }

    /// Stops the embedded server; the others are not ours to stop.
    pub(crate) async fn shutdown(self) {
        if let Server::Embedded(handle) = self {
            handle.shutdown().await;
        }
    }
}

/// Whether `url` answers `GET /healthz` with `ok`, as a Confab server does.
async fn is_confab_server(url: &str) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    match client.get(format!("{url}/healthz")).send().await {
        Ok(resp) if resp.status().is_success() => {
            resp.text().await.is_ok_and(|body| body.trim() == "ok")
        }
        _ => false,
    }
}
