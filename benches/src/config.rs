//! `convene-load` / `convene load-test` flags.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Which server the load goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// convene: control REST API + `/v1/ws` signaling, or the SFU's internal
    /// HTTP API with `--direct`.
    Convene,
    /// Janus Gateway's VideoRoom plugin over the Janus HTTP API (`--url
    /// http://127.0.0.1:8088/janus`).
    Janus,
}

/// Simulated rooms of publishers and subscribers as real WebRTC peers
/// (str0m) over loopback UDP, with end-to-end latency and loss.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Base URL: convene's HTTP listener (control API and `/v1/ws`), or the
    /// Janus HTTP API endpoint with `--target janus`.
    #[arg(
        long,
        env = "CONVENE_LOAD_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,

    /// Server kind.
    #[arg(long, value_enum, default_value_t = Target::Convene)]
    pub target: Target,

    /// Join through the SFU's internal HTTP API (`--sfu-url`, `--sfu-secret`)
    /// instead of the control API and signaling.
    #[arg(long)]
    pub direct: bool,

    /// The SFU's internal HTTP API (`convene up --sfu-http-addr`).
    #[arg(
        long,
        env = "CONVENE_LOAD_SFU_URL",
        default_value = "http://127.0.0.1:7890"
    )]
    pub sfu_url: String,

    /// Bearer secret of the SFU's HTTP API (`--sfu-http-secret`).
    #[arg(long, env = "CONVENE_SFU_HTTP_SECRET", hide_env_values = true)]
    pub sfu_secret: Option<String>,

    #[arg(long, default_value_t = 1)]
    pub rooms: u32,

    /// Publishers per room (each sends Opus and VP8).
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,

    /// Subscribers per room (each receives every publisher's tracks). With
    /// `--ramp`, the starting count.
    #[arg(long, default_value_t = 2)]
    pub subscribers: u32,

    /// Measured time at full load (after everyone joined); with `--ramp`,
    /// the time held at each step.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub duration: Duration,

    /// Publish VP8 as three simulcast layers (rids q/h/f at 10 %, 30 % and
    /// 100 % of `--video-kbps`).
    #[arg(long)]
    pub simulcast: bool,

    /// Video bitrate of the (top) layer, kbit/s.
    #[arg(long, default_value_t = 1500)]
    pub video_kbps: u32,

    /// Video frame rate.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,

    /// A keyframe every this long (plus whenever the server asks).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    pub keyframe_interval: Duration,

    /// Raise the subscribers per room step by step until loss or p99
    /// latency passes its limit; report the largest load held.
    #[arg(long)]
    pub ramp: bool,

    /// Subscribers added per room at each ramp step (default: the starting
    /// count, at least 1).
    #[arg(long)]
    pub ramp_step: Option<u32>,

    /// Stop the ramp at this many subscribers per room.
    #[arg(long, default_value_t = 200)]
    pub ramp_max_subscribers: u32,

    /// A ramp step fails above this loss (fraction).
    #[arg(long, default_value_t = 0.01)]
    pub max_loss: f64,

    /// A ramp step fails above this p99 latency, milliseconds.
    #[arg(long, default_value_t = 50.0)]
    pub max_p99_ms: f64,

    /// Hard limit on the whole run, joins and ramp included.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15m")]
    pub max_time: Duration,

    /// Wait this long after the joins before measuring (layers settle,
    /// keyframes arrive).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub settle: Duration,

    /// Joins in flight at once.
    #[arg(long, default_value_t = 8)]
    pub join_concurrency: usize,

    /// The SFU's process id for CPU and memory (default: the process owning
    /// the UDP port media comes from, found through /proc).
    #[arg(long)]
    pub sfu_pid: Option<i32>,

    /// Print one JSON object as the last line (and no progress bar).
    #[arg(long)]
    pub json: bool,

    /// Local address of every peer's socket; a loopback address only, so
    /// load never leaves the machine. `compare.sh` uses 127.0.0.2 for
    /// Janus, whose ICE sockets are bound to the interface carrying that
    /// address and cannot send to 127.0.0.1.
    #[arg(long, value_parser = parse_loopback, default_value = "127.0.0.1")]
    pub bind_ip: IpAddr,
}

fn parse_loopback(s: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = s.parse().map_err(|e| format!("{e}"))?;
    if ip.is_loopback() {
        Ok(ip)
    } else {
        Err(format!("{ip} is not a loopback address"))
    }
}

impl LoadArgs {
    /// Defaults for a library caller (tests): 1 room, 1 publisher, 2
    /// subscribers for 3 s through the SFU's HTTP API.
    pub fn direct(sfu_url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: "http://127.0.0.1:8080".into(),
            target: Target::Convene,
            direct: true,
            sfu_url: sfu_url.into(),
            sfu_secret: Some(secret.into()),
            rooms: 1,
            publishers: 1,
            subscribers: 2,
            duration: Duration::from_secs(3),
            simulcast: false,
            video_kbps: 1500,
            fps: 30,
            keyframe_interval: Duration::from_secs(3),
            ramp: false,
            ramp_step: None,
            ramp_max_subscribers: 200,
            max_loss: 0.01,
            max_p99_ms: 50.0,
            max_time: Duration::from_secs(15 * 60),
            settle: Duration::from_secs(1),
            join_concurrency: 8,
            sfu_pid: None,
            json: true,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    pub fn mode(&self) -> &'static str {
        match (self.target, self.direct) {
            (Target::Janus, _) => "janus",
            (Target::Convene, true) => "direct",
            (Target::Convene, false) => "signaling",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    #[test]
    fn documented_command_line_parses() {
        let cli = Cli::try_parse_from([
            "convene-load",
            "--url",
            "http://127.0.0.1:9000",
            "--rooms",
            "2",
            "--publishers",
            "2",
            "--subscribers",
            "10",
            "--duration",
            "20s",
            "--simulcast",
            "--video-kbps",
            "800",
            "--ramp",
            "--json",
        ])
        .unwrap();
        let a = cli.load;
        assert_eq!((a.rooms, a.publishers, a.subscribers), (2, 2, 10));
        assert_eq!(a.duration, Duration::from_secs(20));
        assert!(a.simulcast && a.ramp && a.json && !a.direct);
        assert_eq!(a.mode(), "signaling");
        let cli = Cli::try_parse_from(["x", "--target", "janus", "--duration", "1m"]).unwrap();
        assert_eq!(cli.load.mode(), "janus");
        assert_eq!(cli.load.duration, Duration::from_secs(60));
        assert_eq!(cli.load.bind_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let cli = Cli::try_parse_from(["x", "--bind-ip", "127.0.0.2"]).unwrap();
        assert_eq!(cli.load.bind_ip, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(Cli::try_parse_from(["x", "--bind-ip", "192.0.2.1"]).is_err());
    }
}
