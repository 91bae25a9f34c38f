//! `confab-cli`: host, hear and list spaces from a terminal.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use confab_client::{cli, list_spaces};
use confab_proto::SpaceId;

/// Confab from the command line.
#[derive(Parser, Debug)]
#[command(name = "confab-cli", version)]
struct Args {
    /// The server's URL.
    #[arg(long, env = "CONFAB_SERVER", default_value = "http://127.0.0.1:7373")]
    server: String,
    /// The name others see.
    #[arg(long, env = "CONFAB_NAME", default_value = "cli")]
    name: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Open a space and speak into it.
    Host {
        /// The space's title.
        #[arg(long)]
        title: String,
        /// Speak this WAV file (48 kHz) instead of the microphone; the space ends with the file.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Stop (and end the space) after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Join a space and hear it.
    Listen {
        /// The space's id.
        id: SpaceId,
        /// Record into this WAV file instead of playing on the speaker.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Leave after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// List the live spaces.
    Spaces,
}

/// Errors are printed as one readable chain, without a backtrace: they are about the user's
/// input or environment, not bugs.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONFAB_LOG")
                .unwrap_or_else(|_| "warn,rtc=error,webrtc=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    match args.command {
        Command::Spaces => {
            let spaces = list_spaces(&args.server).await?;
            if spaces.is_empty() {
                println!("no live spaces");
            }
            for s in spaces {
                println!(
                    "{}\t{}\t{}\t{} listening",
                    s.id, s.title, s.host, s.listeners
                );
            }
            Ok(())
        }
        Command::Host {
            title,
            input,
            seconds,
        } => {
            cli::host(&args.server, &args.name, &title, input, seconds, |id| {
                println!("space {id}")
            })
            .await
        }
        Command::Listen {
            id,
            output,
            seconds,
        } => cli::listen(&args.server, &args.name, &id, output, seconds)
            .await
            .map(|_| ()),
    }
}
