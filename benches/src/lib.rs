//! Load generator and micro-benchmarks for convene.
//!
//! `convene-load` (also `convene load-test`) simulates rooms of publishers
//! and subscribers as real WebRTC peers (str0m) over loopback UDP and
//! measures what the SFU does to their media end to end: join time, packets
//! and bits forwarded per second, loss and one-way latency from stamps in
//! the payloads, and the server process's CPU and memory. See
//! `benches/README.md`.
//!
//! Depends on `convene-proto` and `convene-sfu` (for the in-process
//! benchmarks); nothing but the `convene` command depends on it.
#![forbid(unsafe_code)]

pub mod config;
pub mod direct;
pub mod janus;
pub mod payload;
pub mod peer;
pub mod procstat;
pub mod report;
pub mod runner;
pub mod signaling;
pub mod stats;

pub use config::{LoadArgs, Target};
pub use report::Report;
pub use runner::run;

/// Why a load run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("WebSocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("URL: {0}")]
    Url(#[from] url::ParseError),
    #[error("peer: {0}")]
    Peer(#[from] peer::PeerError),
    #[error("server: {0}")]
    Server(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("{0} closed")]
    Closed(&'static str),
    #[error("configuration: {0}")]
    Config(String),
}

/// Run and print: a table, or with `--json` one JSON object as the last
/// line of standard output.
pub async fn run_cli(args: LoadArgs) -> anyhow::Result<Report> {
    let json = args.json;
    // The measurement window already ends at --max-time; this also bounds
    // joins and leaving, whatever a server does, with a minute of grace.
    let bound = args.max_time + std::time::Duration::from_secs(60);
    let report = tokio::time::timeout(bound, run(args))
        .await
        .map_err(|_| anyhow::anyhow!("the run took longer than --max-time plus 60 s"))??;
    if json {
        println!("{}", report.json());
    } else {
        println!("convene-load");
        print!("{}", report.table());
    }
    Ok(report)
}
