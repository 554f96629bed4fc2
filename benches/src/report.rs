//! The result of a run, as a table and as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{Percentiles, Window};

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencyMs {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencyMs {
    pub fn of(w: &Window) -> Self {
        Self {
            p50: w.latency_ms(0.50),
            p95: w.latency_ms(0.95),
            p99: w.latency_ms(0.99),
            max: w.max_latency_ms(),
            mean: w.mean_latency_ms(),
        }
    }
}

/// Figures of one measurement window (a whole run, or one ramp step).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Measurement {
    /// Subscribers per room during the window.
    pub subscribers_per_room: u32,
    pub measured_s: f64,
    /// RTP packets per second received by all peers (what the SFU forwarded
    /// and delivered).
    pub forwarded_pps: f64,
    /// Bits per second of those packets (RTP header + payload).
    pub forwarded_bps: f64,
    /// RTP packets per second written by the publishers.
    pub sent_pps: f64,
    pub packets_received: u64,
    pub packets_expected: u64,
    pub packets_lost: u64,
    /// Fraction of expected packets that never arrived (0.01 = 1 %).
    pub loss: f64,
    pub loss_pct: f64,
    pub latency_ms: LatencyMs,
    /// (receiving peer, track) pairs with media in the window.
    pub subscriber_streams: u64,
    /// Peers that received media in the window.
    pub receivers_with_media: u64,
    /// Cores the server process kept busy (utime + stime over wall time).
    pub sfu_cpu_cores: Option<f64>,
    pub rss_mb: Option<f64>,
    pub subscriber_streams_per_core: Option<f64>,
    /// Server CPU per forwarded stream, in milli-cores.
    pub cpu_millicores_per_stream: Option<f64>,
    /// The load generator's own CPU: near the number of cores means the
    /// generator, not the server, was the limit.
    pub loadgen_cpu_cores: Option<f64>,
    /// Cores the generator can keep busy: its runtime's worker threads, at
    /// most the machine's cores.
    pub loadgen_cpu_limit_cores: Option<f64>,
    /// The generator used most of those cores: the figures may show its own
    /// limit rather than the server's.
    pub loadgen_limited: Option<bool>,
}

/// Share of its cores above which the generator may be what limits a run.
pub const LOADGEN_BUSY: f64 = 0.8;

/// Cores the generator can keep busy: the Tokio runtime's worker threads
/// (all peers run on them), at most the machine's cores.
pub fn loadgen_cores() -> usize {
    let machine = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers =
        tokio::runtime::Handle::try_current().map_or(machine, |h| h.metrics().num_workers());
    workers.clamp(1, machine)
}

impl Measurement {
    pub fn fill_from(&mut self, w: &Window, measured_s: f64) {
        let s = measured_s.max(1e-9);
        self.measured_s = measured_s;
        self.packets_received = w.counts.received;
        self.packets_expected = w.counts.expected;
        self.packets_lost = w.counts.lost();
        self.loss = w.counts.loss();
        self.loss_pct = self.loss * 100.0;
        self.forwarded_pps = w.counts.received as f64 / s;
        self.forwarded_bps = w.counts.bytes as f64 * 8.0 / s;
        self.latency_ms = LatencyMs::of(w);
        self.subscriber_streams = w.streams;
        self.receivers_with_media = w.receivers;
    }

    /// The generator's CPU over the window, and whether it nears `limit`
    /// cores (see [`loadgen_cores`]).
    pub fn set_loadgen_cpu(&mut self, cores: f64, limit: usize) {
        let limit = limit as f64;
        self.loadgen_cpu_cores = Some(cores);
        self.loadgen_cpu_limit_cores = Some(limit);
        self.loadgen_limited = Some(cores >= LOADGEN_BUSY * limit);
    }

    pub fn set_cpu(&mut self, cores: f64) {
        self.sfu_cpu_cores = Some(cores);
        if cores > 0.0 && self.subscriber_streams > 0 {
            self.subscriber_streams_per_core = Some(self.subscriber_streams as f64 / cores);
            self.cpu_millicores_per_stream = Some(cores * 1000.0 / self.subscriber_streams as f64);
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RampReport {
    /// Largest subscribers per room held within the limits (0: none).
    pub max_subscribers_per_room_held: u32,
    pub max_loss: f64,
    pub max_p99_ms: f64,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    pub passed: bool,
    #[serde(flatten)]
    pub m: Measurement,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub target: String,
    pub mode: String,
    pub rooms: u32,
    pub publishers: u32,
    pub subscribers: u32,
    pub simulcast: bool,
    pub video_kbps: u32,
    pub peers_joined: u32,
    pub peers_failed: u32,
    /// From the start of a subscriber's join to its first media packet.
    pub join_ms: Percentiles,
    pub sfu_pid: Option<i32>,
    /// The full-load window, or with `--ramp` the largest step held.
    #[serde(flatten)]
    pub m: Measurement,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampReport>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

impl Report {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn table(&self) -> String {
        let m = &self.m;
        let mut s = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "  {k:<34} {v}");
        };
        row("target / mode", format!("{} / {}", self.target, self.mode));
        row(
            "load",
            format!(
                "{} rooms x {} publishers x {} subscribers{}, video {} kbit/s",
                self.rooms,
                self.publishers,
                m.subscribers_per_room,
                if self.simulcast { " (simulcast)" } else { "" },
                self.video_kbps
            ),
        );
        row(
            "peers joined / failed",
            format!("{} / {}", self.peers_joined, self.peers_failed),
        );
        row(
            "join to first media p50 / p99 / max",
            format!(
                "{:.0} / {:.0} / {:.0} ms (n={})",
                self.join_ms.p50, self.join_ms.p99, self.join_ms.max, self.join_ms.count
            ),
        );
        row("measured", format!("{:.1} s", m.measured_s));
        row(
            "forwarded",
            format!(
                "{:.0} packets/s, {:.1} Mbit/s",
                m.forwarded_pps,
                m.forwarded_bps / 1e6
            ),
        );
        row("published", format!("{:.0} packets/s", m.sent_pps));
        row(
            "loss (subscriber side)",
            format!(
                "{:.3} % ({} of {} packets)",
                m.loss_pct, m.packets_lost, m.packets_expected
            ),
        );
        row(
            "latency p50 / p95 / p99 / max",
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} ms",
                m.latency_ms.p50, m.latency_ms.p95, m.latency_ms.p99, m.latency_ms.max
            ),
        );
        row("subscriber streams", m.subscriber_streams.to_string());
        row(
            "SFU process",
            format!(
                "pid {}, {} cores, RSS {} MiB",
                self.sfu_pid.map_or("n/a".into(), |p| p.to_string()),
                opt(m.sfu_cpu_cores, 3),
                opt(m.rss_mb, 1)
            ),
        );
        row(
            "subscriber streams per SFU core",
            opt(m.subscriber_streams_per_core, 0),
        );
        row(
            "load generator CPU",
            format!(
                "{} of {} cores{}",
                opt(m.loadgen_cpu_cores, 2),
                opt(m.loadgen_cpu_limit_cores, 0),
                if m.loadgen_limited == Some(true) {
                    " (the generator may be the limit)"
                } else {
                    ""
                }
            ),
        );
        if let Some(r) = &self.ramp {
            let _ = writeln!(
                s,
                "  ramp (loss <= {:.2} %, p99 <= {:.0} ms):",
                r.max_loss * 100.0,
                r.max_p99_ms
            );
            for st in &r.steps {
                let _ = writeln!(
                    s,
                    "    {:>4} subs/room  {:>8.0} pps  loss {:>7.3} %  p99 {:>7.2} ms  cpu {} cores  {}",
                    st.m.subscribers_per_room,
                    st.m.forwarded_pps,
                    st.m.loss_pct,
                    st.m.latency_ms.p99,
                    opt(st.m.sfu_cpu_cores, 2),
                    if st.passed { "held" } else { "FAILED" }
                );
            }
            let _ = writeln!(
                s,
                "  largest load held: {} subscribers per room",
                r.max_subscribers_per_room_held
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_generator_is_flagged() {
        let mut m = Measurement::default();
        m.set_loadgen_cpu(0.5, 2);
        assert_eq!(m.loadgen_limited, Some(false));
        m.set_loadgen_cpu(1.7, 2);
        assert_eq!(m.loadgen_limited, Some(true));
        assert_eq!(m.loadgen_cpu_limit_cores, Some(2.0));
        assert!(loadgen_cores() >= 1);
    }
}
