//! The `convene` command: runs convene's services, together or one at a time.
//! `main` only wires things up; the services live in the workspace crates.

mod cli;
mod shutdown;
mod split;
mod up;

use clap::Parser;
use tracing_subscriber::EnvFilter;

// glibc's malloc keeps freed argon2 buffers (19 MiB each) cached in its
// per-thread arenas: after a registration flood `convene up` stayed at
// 487 MiB even with hashing bounded, against 58 MiB with mimalloc
// (benches/register-flood.py, benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = cli::Cli::parse();
    // Each connection is a descriptor, and the usual soft limit of 1024 is
    // soon used up by idle or slow clients.
    match convene_httpd::raise_fd_limit() {
        Ok((old, new)) if new > old => tracing::info!(old, new, "raised the open-file limit"),
        Ok((_, now)) => tracing::debug!(limit = now, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    match cli.command {
        cli::Command::Up(args) => up::run_all(*args).await,
        cli::Command::Control(args) => up::run_control(*args).await,
        cli::Command::LoadTest(args) => convene_benches::run_cli(*args).await.map(|_| ()),
        cli::Command::Sfu(args) => split::run_sfu(*args).await,
        cli::Command::Signaling(args) => split::run_signaling(*args).await,
    }
}
