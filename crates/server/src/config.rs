//! Server settings: flags, environment variables and an optional TOML file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use confab_core::RoomConfig;
use serde::Deserialize;

/// The port a server listens on unless told otherwise ("CF" on a phone keypad is 23; 7373 is
/// simply unassigned and easy to remember).
pub const DEFAULT_PORT: u16 = 7373;

/// How many speakers each listener receives at once unless configured otherwise.
pub const DEFAULT_FORWARDED_SPEAKERS: usize = 3;

/// Everything a server needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where HTTP and WebSocket signaling listen. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the SQLite database lives.
    pub data_dir: PathBuf,
    /// The address WebRTC media binds to; defaults to the listen address's IP.
    pub media_ip: IpAddr,
    /// Limits and timers of every room.
    pub room: RoomConfig,
    /// Other server nodes sharing rooms over a bus; `None` runs this server alone.
    pub cluster: Option<ClusterConfig>,
    /// How many speakers each listener receives at once: the loudest (by the RFC 6464 levels
    /// on their packets). 1 to [`confab_rtc::RECV_SLOTS`]; values outside are clamped.
    pub max_forwarded_speakers: usize,
}

/// How this server joins others so a room can span them (see the `cluster` module).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS server carrying room events between nodes, e.g. `nats://127.0.0.1:4222`.
    pub bus: String,
    /// This node's name, unique in the cluster and stable across restarts: 1 to 64 of
    /// `a-z`, `A-Z`, `0-9`, `-`, `_` (it is part of bus subjects).
    pub node: String,
}

impl ClusterConfig {
    /// Checks the node name, which other nodes use to address this one.
    pub fn validate(&self) -> anyhow::Result<()> {
        let ok = crate::cluster::valid_node(&self.node);
        anyhow::ensure!(
            ok,
            "cluster node name {:?} must be 1 to 64 of a-z, A-Z, 0-9, '-' and '_'",
            self.node
        );
        Ok(())
    }
}

impl ServerConfig {
    /// Defaults: 127.0.0.1:[`DEFAULT_PORT`], data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        ServerConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            data_dir,
            media_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            room: RoomConfig::default(),
            cluster: None,
            max_forwarded_speakers: DEFAULT_FORWARDED_SPEAKERS,
        }
    }

    /// The platform data directory for the server (`directories`), e.g.
    /// `~/.local/share/confab-server` on Linux.
    pub fn default_data_dir() -> anyhow::Result<PathBuf> {
        directories::ProjectDirs::from("org", "Confab", "confab-server")
            .map(|d| d.data_dir().to_path_buf())
            .context("no home directory to put the server's data in; pass --data-dir")
    }

    /// Builds a config with a listen address; the media IP follows it unless it is a wildcard.
    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        if !listen.ip().is_unspecified() {
            self.media_ip = listen.ip();
        }
        self
    }
}

/// The optional TOML file: every key may be absent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub media_ip: Option<IpAddr>,
    pub max_participants: Option<usize>,
    pub host_grace_seconds: Option<u64>,
    /// Co-hosts per space besides the host (default 2).
    pub max_cohosts: Option<usize>,
    /// Speakers per space besides the host and co-hosts (default 10).
    pub max_speakers: Option<usize>,
    /// `[cluster]`: `bus` (a NATS URL) and `node` (this node's name).
    pub cluster: Option<ClusterConfig>,
    /// Speakers each listener receives at once, the loudest (default 3, at most 3).
    pub max_forwarded_speakers: Option<usize>,
}

impl FileConfig {
    /// Reads and parses a TOML config file.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// Applies the file's values over `config`.
    pub fn apply(&self, mut config: ServerConfig) -> ServerConfig {
        if let Some(listen) = self.listen {
            config = config.with_listen(listen);
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(ip) = self.media_ip {
            config.media_ip = ip;
        }
        if let Some(n) = self.max_participants {
            config.room.max_participants = n;
        }
        if let Some(s) = self.host_grace_seconds {
            config.room.host_grace = Duration::from_secs(s);
        }
        if let Some(n) = self.max_cohosts {
            config.room.max_cohosts = n;
        }
        if let Some(n) = self.max_speakers {
            config.room.max_speakers = n;
        }
        if let Some(c) = &self.cluster {
            config.cluster = Some(c.clone());
        }
        if let Some(n) = self.max_forwarded_speakers {
            config.max_forwarded_speakers = n;
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_limits_come_from_the_file_and_unknown_keys_are_refused() {
        let file: FileConfig = toml::from_str("max_cohosts = 1\nmax_speakers = 4\n").unwrap();
        let config = file.apply(ServerConfig::new(PathBuf::from("/tmp/x")));
        assert_eq!((config.room.max_cohosts, config.room.max_speakers), (1, 4));
        let defaults = FileConfig::default().apply(ServerConfig::new(PathBuf::from("/tmp/x")));
        assert_eq!(
            (defaults.room.max_cohosts, defaults.room.max_speakers),
            (2, 10)
        );
        assert!(toml::from_str::<FileConfig>("max_speaker = 4").is_err());
        assert_eq!(defaults.max_forwarded_speakers, 3);
        let file: FileConfig = toml::from_str("max_forwarded_speakers = 2\n").unwrap();
        let config = file.apply(ServerConfig::new(PathBuf::from("/tmp/x")));
        assert_eq!(config.max_forwarded_speakers, 2);
    }

    #[test]
    fn the_cluster_section_is_optional_and_its_node_name_is_checked() {
        let alone = FileConfig::default().apply(ServerConfig::new(PathBuf::from("/tmp/x")));
        assert_eq!(alone.cluster, None);
        let file: FileConfig =
            toml::from_str("[cluster]\nbus = \"nats://127.0.0.1:4222\"\nnode = \"b-1\"\n").unwrap();
        let config = file.apply(ServerConfig::new(PathBuf::from("/tmp/x")));
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.node, "b-1");
        assert!(cluster.validate().is_ok());
        for bad in ["", "a.b", "a*", "a>", "a b"] {
            let c = ClusterConfig {
                bus: cluster.bus.clone(),
                node: bad.to_owned(),
            };
            assert!(c.validate().is_err(), "{bad:?}");
        }
        assert!(toml::from_str::<FileConfig>("[cluster]\nbus = \"x\"\n").is_err());
    }
}
