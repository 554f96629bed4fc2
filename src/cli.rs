//! Command-line interface. Every flag also reads a `CONVENE_*` environment
//! variable so containers can be configured without arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use convene_control::ControlConfig;
use convene_httpd::ConnLimits;
use convene_sfu::SfuConfig;
use convene_signaling::SignalingConfig;
use convene_turn_config::IceConfig;

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
    /// Run the SFU alone: UDP media plus its internal HTTP API (/v1/request,
    /// /v1/events), /healthz and /metrics on --sfu-http-addr.
    Sfu(Box<SfuArgs>),
    /// Run the signaling WebSocket service (and the web client) alone, talking
    /// to a remote control plane and SFU. Requires REDIS_URL: conference
    /// events come from the control plane's Redis event bus.
    Signaling(Box<SignalingArgs>),
    /// Load-test a running convene (or Janus) with simulated WebRTC rooms;
    /// the same as the `convene-load` binary (benches/README.md).
    LoadTest(Box<convene_benches::LoadArgs>),
}

/// Where state lives and where the HTTP listener binds.
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address of the HTTP listener (REST API, WebSocket, web client).
    #[arg(long, env = "CONVENE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Directory (mode 0700) for the embedded SQLite database and the
    /// persisted JWT secret when DATABASE_URL is unset.
    #[arg(long, env = "CONVENE_DATA_DIR", default_value = "./convene-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub limits: ConnLimits,
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

/// `convene sfu`. `--sfu-http-addr` and `--sfu-http-secret` are required
/// here: the HTTP API is how the signaling service reaches this SFU.
#[derive(Args, Debug, Clone)]
pub struct SfuArgs {
    #[command(flatten)]
    pub sfu: SfuConfig,
    /// Limits of the HTTP API listener (--sfu-http-addr).
    #[command(flatten)]
    pub limits: ConnLimits,
}

/// `convene signaling`.
#[derive(Args, Debug, Clone)]
pub struct SignalingArgs {
    /// Address of the HTTP listener (WebSocket /v1/ws, web client, /healthz,
    /// /readyz, /metrics).
    #[arg(
        id = "signaling_http_addr",
        long = "http-addr",
        value_name = "HTTP_ADDR",
        env = "CONVENE_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: SocketAddr,
    /// Base URL of the control plane (its internal API), e.g. http://control:8080.
    #[arg(long = "control-url", env = "CONVENE_CONTROL_URL")]
    pub control_url: String,
    /// The control plane's --internal-secret (header x-convene-internal-secret).
    #[arg(
        id = "signaling_internal_secret",
        long = "internal-secret",
        value_name = "INTERNAL_SECRET",
        env = "CONVENE_INTERNAL_SECRET",
        hide_env_values = true
    )]
    pub internal_secret: String,
    /// Base URL of the SFU's HTTP API (its --sfu-http-addr), e.g. http://sfu:7883.
    #[arg(long = "sfu-url", env = "CONVENE_SFU_URL")]
    pub sfu_url: String,
    /// The SFU's --sfu-http-secret (same environment variable, so one value
    /// serves both processes).
    #[arg(
        long = "sfu-secret",
        env = "CONVENE_SFU_HTTP_SECRET",
        hide_env_values = true
    )]
    pub sfu_secret: String,
    /// Redis URL (required): conference events from the control plane, and
    /// presence shared between signaling nodes.
    #[arg(
        id = "signaling_redis_url",
        long = "redis-url",
        value_name = "REDIS_URL",
        env = "REDIS_URL"
    )]
    pub redis_url: String,
    #[command(flatten)]
    pub limits: ConnLimits,
    #[command(flatten)]
    pub signaling: SignalingConfig,
    #[command(flatten)]
    pub ice: IceConfig,
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
            "--http-max-connections-per-ip",
            "8",
            "--http-idle-timeout-secs",
            "30",
            "--register-max-per-ip",
            "5",
            "--password-hash-concurrency",
            "1",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(up.http.http_addr.port(), 9000);
        assert_eq!(up.sfu.udp_port, 7000);
        assert_eq!(up.http.limits.max_connections_per_ip, 8);
        assert_eq!(up.http.limits.idle_timeout.as_secs(), 30);
        assert_eq!(up.http.limits.max_connections, 10_000);
        assert_eq!(up.control.register_max_per_ip, 5);
        assert_eq!(up.control.password_hash_concurrency, Some(1));
    }

    #[test]
    fn split_commands_take_their_flags() {
        let cli = Cli::try_parse_from([
            "convene",
            "sfu",
            "--udp-port",
            "7000",
            "--sfu-http-addr",
            "127.0.0.1:7883",
            "--sfu-http-secret",
            "s",
        ])
        .unwrap();
        let Command::Sfu(sfu) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(sfu.sfu.udp_port, 7000);
        assert_eq!(sfu.sfu.http_addr.unwrap().port(), 7883);

        let cli = Cli::try_parse_from([
            "convene",
            "signaling",
            "--http-addr",
            "127.0.0.1:9001",
            "--control-url",
            "http://control:8080",
            "--internal-secret",
            "i",
            "--sfu-url",
            "http://sfu:7883",
            "--sfu-secret",
            "s",
            "--redis-url",
            "redis://redis:6379",
            "--http-header-timeout-secs",
            "2.5",
        ])
        .unwrap();
        let Command::Signaling(sig) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(sig.http_addr.port(), 9001);
        assert_eq!(sig.sfu_url, "http://sfu:7883");
        assert_eq!(sig.redis_url, "redis://redis:6379");
        assert_eq!(sig.limits.header_timeout.as_millis(), 2500);
    }
}

#[cfg(test)]
mod load_test_tests {
    use super::*;

    #[test]
    fn load_test_takes_the_load_generator_flags() {
        let cli = Cli::try_parse_from([
            "convene",
            "load-test",
            "--rooms",
            "2",
            "--subscribers",
            "10",
            "--duration",
            "20s",
            "--json",
        ])
        .unwrap();
        let Command::LoadTest(load) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!((load.rooms, load.subscribers), (2, 10));
        assert!(load.json);
    }
}
