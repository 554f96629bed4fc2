//! Command-line interface. Every flag also reads a `CONVENE_*` environment
//! variable so containers can be configured without arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use convene_control::ControlConfig;
use convene_sfu::SfuConfig;
use convene_signaling::SignalingConfig;

#[derive(Parser, Debug)]
#[command(
    name = "convene",
    version,
    about = "Video-conferencing backend: SFU, control plane, signaling"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every service in one process on embedded defaults (SQLite, in-process bus).
    Up(Box<UpArgs>),
    /// Run the control-plane REST API alone.
    Control(Box<ControlArgs>),
}

/// Where state lives and where the HTTP listener binds.
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address of the HTTP listener (REST API, WebSocket, web client).
    #[arg(long, env = "CONVENE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Directory for the embedded SQLite database when DATABASE_URL is unset.
    #[arg(long, env = "CONVENE_DATA_DIR", default_value = "./convene-data")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub control: ControlConfig,
    #[command(flatten)]
    pub sfu: SfuConfig,
    #[command(flatten)]
    pub signaling: SignalingConfig,
}

#[derive(Args, Debug, Clone)]
pub struct ControlArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub control: ControlConfig,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flattened_service_flags_do_not_collide() {
        // clap checks argument ids and names only when the command is built,
        // which would otherwise first happen on a user's `convene up`.
        Cli::command().debug_assert();
    }

    #[test]
    fn up_takes_the_documented_flags() {
        let cli = Cli::try_parse_from([
            "convene",
            "up",
            "--http-addr",
            "127.0.0.1:9000",
            "--udp-port",
            "7000",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(up.http.http_addr.port(), 9000);
        assert_eq!(up.sfu.udp_port, 7000);
    }
}
