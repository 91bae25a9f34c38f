//! `confab-server`: runs a Confab server until Ctrl-C; `confab-server reports ...` reads and
//! resolves the abuse reports in its database.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use confab_server::ServerConfig;

/// Runs a Confab server: directory, signaling and SFU for live audio spaces.
#[derive(Parser, Debug)]
#[command(name = "confab-server", version)]
struct Args {
    /// Address to listen on [default: 127.0.0.1:7373] (port 0 picks a free port).
    #[arg(long, env = "CONFAB_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the SQLite database (default: the platform data directory).
    #[arg(long, env = "CONFAB_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML file with the same settings (flags and environment variables win).
    #[arg(long, env = "CONFAB_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// The abuse reports users filed (in the server's database; fine while it runs).
    Reports {
        #[command(subcommand)]
        action: ReportsAction,
    },
}

#[derive(clap::Subcommand, Debug)]
enum ReportsAction {
    /// Open reports, oldest first: id, state, what, by whom, the reason's start.
    List {
        /// Resolved ones too.
        #[arg(long)]
        all: bool,
    },
    /// One report in full.
    Show { id: i64 },
    /// Marks a report resolved, with what was done.
    Resolve {
        id: i64,
        #[arg(long)]
        note: String,
    },
}

fn reports(data_dir: &std::path::Path, action: ReportsAction) -> anyhow::Result<()> {
    use confab_server::reports::{Reports, details, list_line};
    let reports = Reports::open(data_dir)?;
    match action {
        ReportsAction::List { all } => {
            let list = reports.list(all)?;
            if list.is_empty() {
                println!("no {}reports", if all { "" } else { "open " });
            }
            for r in list {
                println!("{}", list_line(&r));
            }
        }
        ReportsAction::Show { id } => match reports.show(id)? {
            Some(r) => print!("{}", details(&r)),
            None => anyhow::bail!("no report {id}"),
        },
        ReportsAction::Resolve { id, note } => {
            let r = reports.resolve(id, &note, confab_server::unix_now())?;
            print!("{}", details(&r));
        }
    }
    Ok(())
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
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_env("CONFAB_LOG")
                .unwrap_or_else(|_| "info,webrtc=error,rtc=error".into()),
        )
        // Per-packet drop reports become one summary line every few seconds.
        .with(confab_server::overload::OverloadLayer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    confab_server::overload::spawn_reporter(confab_server::overload::REPORT_EVERY)
        .context("starting the overload reporter")?;
    let args = Args::parse();
    let file = match &args.config {
        Some(path) => confab_server_config_file(path)?,
        None => Default::default(),
    };
    let data_dir = match args.data_dir.clone().or_else(|| file.data_dir.clone()) {
        Some(d) => d,
        None => ServerConfig::default_data_dir()?,
    };
    if let Some(Command::Reports { action }) = args.command {
        return reports(&data_dir, action);
    }
    let mut config = file.apply(ServerConfig::new(data_dir));
    if let Some(listen) = args.listen {
        config = config.with_listen(listen);
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    let handle = confab_server::start(config)
        .await
        .context("starting the server")?;
    println!("listening on {}", handle.url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("shutting down");
    handle.shutdown().await;
    Ok(())
}

fn confab_server_config_file(path: &std::path::Path) -> anyhow::Result<confab_server::FileConfig> {
    confab_server::FileConfig::load(path)
}
