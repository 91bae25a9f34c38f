//! A private PulseAudio daemon for tests that need real, real-time audio devices on a machine
//! with no sound card: a speaker (`speaker`, its monitor `speaker.monitor` records what was
//! played) and a microphone (`vmic`, which hears whatever is played into the sink `micfeed`).
//!
//! Self-contained (std + tempfile), shared by every crate whose tests need devices.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The daemon's configuration: two mono 48 kHz null sinks and a virtual source fed by one.
const TEST_PA: &str = "\
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=speaker rate=48000 channels=1
load-module module-null-sink sink_name=micfeed rate=48000 channels=1
load-module module-virtual-source source_name=vmic master=micfeed.monitor
set-default-sink speaker
set-default-source vmic
";

/// A configuration for measuring delay: one stereo null sink `probe` whose left channel is the
/// microphone (`micfeed` plays into it, `vmic` records from it) and whose right channel is the
/// speaker (`speaker` plays into it). Recording `probe.monitor` captures what the microphone
/// heard and what the speaker played on one clock, so their offset is exact.
const PROBE_PA: &str = "\
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=probe rate=48000 channels=2 channel_map=front-left,front-right
load-module module-remap-sink sink_name=micfeed master=probe channels=1 master_channel_map=front-left channel_map=mono remix=no
load-module module-remap-sink sink_name=speaker master=probe channels=1 master_channel_map=front-right channel_map=mono remix=no
load-module module-remap-source source_name=vmic master=probe.monitor channels=1 master_channel_map=front-left channel_map=mono remix=no
set-default-sink speaker
set-default-source vmic
";

const INSTALL_HINT: &str =
    "device tests need PulseAudio: install the Debian packages pulseaudio pulseaudio-utils sox";

/// Bound on waiting for the daemon to come up.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running private daemon; dropping it kills the daemon (by PID) and removes its directory.
pub struct PulseDaemon {
    child: Child,
    dir: tempfile::TempDir,
}

impl PulseDaemon {
    /// Starts a daemon in a fresh runtime directory and waits until it accepts clients.
    /// Panics, naming the packages to install, if the PulseAudio tools are missing.
    pub fn start() -> PulseDaemon {
        Self::start_with(TEST_PA)
    }

    /// Starts a daemon whose microphone and speaker are the two channels of one sink, for
    /// measuring the delay from one to the other: see [`PulseDaemon::record_probe`]. The device
    /// names (`micfeed`, `vmic`, `speaker`) are those of [`PulseDaemon::start`].
    pub fn start_probe() -> PulseDaemon {
        Self::start_with(PROBE_PA)
    }

    fn start_with(config: &str) -> PulseDaemon {
        for tool in ["pulseaudio", "paplay", "parec", "pactl"] {
            if let Err(err) = Command::new(tool).arg("--version").output() {
                if err.kind() == ErrorKind::NotFound {
                    panic!("`{tool}` not found; {INSTALL_HINT}");
                }
                panic!("cannot run `{tool}`: {err}");
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("confab-pulse-")
            .tempdir()
            .expect("create a runtime directory for PulseAudio");
        let script = dir.path().join("test.pa");
        fs::write(&script, config).expect("write test.pa");
        let log = fs::File::create(dir.path().join("pulseaudio.log")).expect("create the log");

        // `--exit-idle-time` is only a backstop for a test process that is killed outright:
        // normally `Drop` kills the daemon. A minute is far longer than any pause between
        // clients in a test.
        let child = Command::new("pulseaudio")
            .args(["-n", "-F"])
            .arg(&script)
            .args([
                "--daemonize=no",
                "--exit-idle-time=60",
                "--log-target=stderr",
                "--use-pid-file=no",
                "--system=no",
            ])
            .env("XDG_RUNTIME_DIR", dir.path())
            .env_remove("PULSE_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start pulseaudio: {err}; {INSTALL_HINT}"));
        let mut daemon = PulseDaemon { child, dir };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "pulseaudio exited during start-up ({status}):\n{}",
                    self.log()
                );
            }
            if self.socket().exists() {
                let info = self.command("pactl").arg("info").output();
                if info.is_ok_and(|out| out.status.success()) {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "pulseaudio not ready after {START_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pulseaudio.log")).unwrap_or_default()
    }

    /// The runtime directory, also a place for the test's scratch files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's native protocol socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("pulse").join("native")
    }

    /// The value for `PULSE_SERVER`.
    pub fn server(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    /// A command (paplay, parec, pactl, ...) that talks to this daemon.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .env("PULSE_SERVER", self.server())
            .stdin(Stdio::null());
        command
    }

    /// Points this process's audio clients (cpal) at the daemon. Call it before the first
    /// audio call, while no other thread of the process reads the environment.
    #[allow(
        unsafe_code,
        reason = "set_var is unsafe only when other threads read the environment concurrently; \
                  the single device test calls this first, before it starts any thread"
    )]
    pub fn set_process_env(&self) {
        // SAFETY: see the reason above.
        unsafe {
            std::env::set_var("XDG_RUNTIME_DIR", self.dir.path());
            std::env::set_var("PULSE_SERVER", self.server());
        }
    }
}

impl PulseDaemon {
    /// Starts recording everything the default speaker (`speaker`) plays, as 48 kHz mono.
    pub fn record_speaker(&self) -> SpeakerRecording {
        let path = self.dir().join(format!(
            "speaker-{}.raw",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let child = self
            .command("parec")
            .args([
                "-d",
                "speaker.monitor",
                "--raw",
                "--format=float32le",
                "--rate=48000",
                "--channels=1",
            ])
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()
            .expect("run parec (pulseaudio-utils)");
        SpeakerRecording {
            parec: KillOnDrop(child),
            path,
        }
    }
}

impl PulseDaemon {
    /// Starts recording, into `path` as raw interleaved stereo `f32` at 48 kHz, the monitor of
    /// the `probe` sink of [`PulseDaemon::start_probe`]: left what the microphone hears, right
    /// what the speaker plays. A short recorder latency, so stopping loses little.
    pub fn record_probe(&self, path: &Path) -> ProbeRecording {
        let child = self
            .command("parec")
            .args([
                "-d",
                "probe.monitor",
                "--raw",
                "--format=float32le",
                "--rate=48000",
                "--channels=2",
                "--latency-msec=20",
            ])
            .arg(path)
            .stdout(Stdio::null())
            .spawn()
            .expect("run parec (pulseaudio-utils)");
        ProbeRecording {
            parec: KillOnDrop(child),
            path: path.to_path_buf(),
        }
    }
}

/// A running recording of the probe sink; [`ProbeRecording::finish`] stops it.
pub struct ProbeRecording {
    parec: KillOnDrop,
    path: PathBuf,
}

impl ProbeRecording {
    /// Stops recording (SIGINT, so parec writes out what it still holds) and returns the file.
    pub fn finish(self) -> PathBuf {
        let _ = Command::new("kill")
            .args(["-INT", &self.parec.0.id().to_string()])
            .status();
        std::thread::sleep(Duration::from_millis(300));
        self.path.clone()
    }
}

/// Splits raw interleaved stereo `f32` (little-endian) into its left and right channels.
pub fn split_stereo(bytes: &[u8]) -> (Vec<f32>, Vec<f32>) {
    bytes
        .chunks_exact(8)
        .map(|b| {
            (
                f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                f32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            )
        })
        .unzip()
}

/// A running recording of the speaker; [`SpeakerRecording::finish`] stops it and returns the
/// samples. Dropped unfinished, the recorder is killed.
pub struct SpeakerRecording {
    parec: KillOnDrop,
    path: PathBuf,
}

impl SpeakerRecording {
    /// Stops recording (SIGINT, so parec writes out what it still holds) and returns every
    /// sample recorded.
    pub fn finish(self) -> Vec<f32> {
        let _ = Command::new("kill")
            .args(["-INT", &self.parec.0.id().to_string()])
            .status();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let path = self.path.clone();
        drop(self);
        let bytes = std::fs::read(&path).unwrap_or_default();
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

impl Drop for PulseDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed (by its PID) and reaped when the guard drops, so a failing test
/// leaves no `paplay`/`parec` behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stereo_splits_into_left_and_right() {
        let bytes: Vec<u8> = [0.5f32, -0.25, 1.0, 0.0, 7.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        // The odd trailing sample (a recorder stopped mid-frame) is dropped.
        assert_eq!(split_stereo(&bytes), (vec![0.5, 1.0], vec![-0.25, 0.0]));
    }
}
