//! `convene-load`: simulated WebRTC rooms against convene (or Janus), with
//! end-to-end latency and loss. See `benches/README.md`.

use clap::Parser;
use convene_benches::LoadArgs;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(name = "convene-load", version, about)]
struct Cli {
    #[command(flatten)]
    load: LoadArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,convene_benches=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    convene_benches::run_cli(Cli::parse().load).await?;
    Ok(())
}
