//! `confab-bench`: figures for Confab's live audio, printed, never asserted.
//!
//! - `confab-bench [path] [--seconds S] [--listeners N]` (the default): one-way latency from a
//!   host's frame to a listener's decoded frame through a real server on loopback, against the
//!   codec alone, and the time from join to first audio.
//! - `confab-bench audio`: the audio engine's figures of issue 5 in one bounded run
//!   (mouth-to-ear latency clean and impaired, client CPU, PESQ), each against its target.
//! - `confab-bench load`: the SFU's CPU per outgoing packet at 100..2,000 listeners against the
//!   kernel's floor (UDP send + SRTP), with loss, forwarding delay and join times (issue 6).
//! - `confab-bench joins`: a storm of 1,000 listeners joining one space, its time against the
//!   10 s target, that no state was lost, and the server's memory per listener (issue 6).
//!
//! The hidden subcommands are the processes `audio` starts: a scenario in its own network
//! namespace, and the clients whose CPU it measures; and `serve`, the server `joins` (and the
//! storm test) measure in its own process.

mod audio;
mod clients;
mod joins;
mod light;
mod load;
#[cfg(target_os = "linux")]
mod nfqueue;
mod path;
mod scenario;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    path: path::PathArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One-way latency host frame -> listener decoded frame (the default).
    Path(path::PathArgs),
    /// Mouth-to-ear latency, client CPU and PESQ against the targets of issue 5.
    Audio(audio::AudioArgs),
    /// Server CPU per outgoing packet against the floor, at growing listener counts.
    Load(load::LoadArgs),
    /// A storm of joins: time against the 10 s target, state, memory per listener.
    Joins(joins::JoinsArgs),
    #[command(hide = true)]
    Serve,
    #[command(hide = true)]
    Scenario(scenario::ScenarioArgs),
    #[command(hide = true)]
    ClientSpeaker(clients::SpeakerArgs),
    #[command(hide = true)]
    ClientListener(clients::ListenerArgs),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => runtime()?.block_on(path::run(cli.path)),
        Some(Command::Path(args)) => runtime()?.block_on(path::run(args)),
        Some(Command::Audio(args)) => audio::run(args),
        // Pins itself to a core before any thread starts, then builds its own runtime.
        Some(Command::Load(args)) => load::run(args),
        Some(Command::Joins(args)) => joins::run(args),
        Some(Command::Serve) => runtime()?.block_on(confab_tests::storm::serve()),
        // These set the process environment for PulseAudio before any thread starts, then
        // build their own runtime.
        Some(Command::Scenario(args)) => scenario::run(args),
        Some(Command::ClientSpeaker(args)) => clients::speaker_process(args),
        Some(Command::ClientListener(args)) => clients::listener_process(args),
    }
}
