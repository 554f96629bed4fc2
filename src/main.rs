//! The `convene` command: runs convene's services, together or one at a time.
//! `main` only wires things up; the services live in the workspace crates.

mod cli;
mod shutdown;
mod split;
mod up;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Up(args) => up::run_all(*args).await,
        cli::Command::Control(args) => up::run_control(*args).await,
        cli::Command::LoadTest(args) => convene_benches::run_cli(*args).await.map(|_| ()),
        cli::Command::Sfu(args) => split::run_sfu(*args).await,
        cli::Command::Signaling(args) => split::run_signaling(*args).await,
    }
}
