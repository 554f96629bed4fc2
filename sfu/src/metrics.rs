//! Prometheus metrics, on the SFU's own registry.
//!
//! No label carries a room or participant id: cardinality must not grow
//! with traffic. Labelled children are resolved once here so the packet
//! path only does atomic adds.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub rooms: IntGauge,
    pub participants: IntGauge,
    pub tracks: IntGauge,
    pub packets_received: IntCounter,
    pub bytes_received: IntCounter,
    pub packets_sent: IntCounter,
    pub bytes_sent: IntCounter,
    pub packets_forwarded: IntCounter,
    pub bytes_forwarded: IntCounter,
    pub packets_relayed: IntCounter,
    pub nacks: IntCounter,
    pub nacks_sent: IntCounter,
    pub plis: IntCounter,
    pub keyframe_requests: IntCounter,
    pub layer_switches: IntCounter,
    pub bwe_estimate_bps: Histogram,
    pub forwarding_latency: Histogram,
    pub egress_latency: Histogram,
    pub dropped: Dropped,
}

/// `convene_sfu_packets_dropped_total{reason}` children.
#[derive(Clone)]
pub struct Dropped {
    pub malformed: IntCounter,
    pub unknown_peer: IntCounter,
    pub send_failed: IntCounter,
    pub unknown_track: IntCounter,
    pub unknown_stream: IntCounter,
    pub muted: IntCounter,
    pub rtc_error: IntCounter,
    pub not_connected: IntCounter,
    pub malformed_red: IntCounter,
    pub relay_full: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram =
            |name: &str, help: &str, buckets: Vec<f64>| -> Result<Histogram, prometheus::Error> {
                let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let dropped_vec = IntCounterVec::new(
            Opts::new(
                "convene_sfu_packets_dropped_total",
                "Packets not forwarded, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(dropped_vec.clone()))?;
        let d = |r: &str| dropped_vec.with_label_values(&[r]);
        let dropped = Dropped {
            malformed: d("malformed"),
            unknown_peer: d("unknown_peer"),
            send_failed: d("send_failed"),
            unknown_track: d("unknown_track"),
            unknown_stream: d("unknown_stream"),
            muted: d("muted"),
            rtc_error: d("rtc_error"),
            not_connected: d("not_connected"),
            malformed_red: d("malformed_red"),
            relay_full: d("relay_full"),
        };
        Ok(Self {
            rooms: gauge("convene_sfu_rooms", "Rooms open")?,
            participants: gauge("convene_sfu_participants", "Participants in rooms")?,
            tracks: gauge("convene_sfu_tracks", "Published tracks")?,
            packets_received: counter(
                "convene_sfu_packets_received_total",
                "UDP datagrams received on the media port",
            )?,
            bytes_received: counter(
                "convene_sfu_bytes_received_total",
                "UDP payload bytes received on the media port",
            )?,
            packets_sent: counter(
                "convene_sfu_packets_sent_total",
                "UDP datagrams sent from the media port (media, RTCP, retransmissions, ICE, DTLS)",
            )?,
            bytes_sent: counter(
                "convene_sfu_bytes_sent_total",
                "UDP payload bytes sent from the media port",
            )?,
            packets_forwarded: counter(
                "convene_sfu_packets_forwarded_total",
                "RTP packets written to subscribers",
            )?,
            bytes_forwarded: counter(
                "convene_sfu_bytes_forwarded_total",
                "RTP payload bytes written to subscribers",
            )?,
            packets_relayed: counter(
                "convene_sfu_packets_relayed_total",
                "RTP packets handed to another worker hosting part of the same room (once per packet and worker)",
            )?,
            nacks: counter("convene_sfu_nacks_total", "NACKs received from subscribers")?,
            nacks_sent: counter(
                "convene_sfu_nacks_sent_total",
                "NACKs sent to publishers for packets lost on their uplink",
            )?,
            plis: counter(
                "convene_sfu_plis_total",
                "Keyframe requests (PLI/FIR) received from subscribers",
            )?,
            keyframe_requests: counter(
                "convene_sfu_keyframe_requests_total",
                "Keyframe requests sent to publishers after throttling",
            )?,
            layer_switches: counter(
                "convene_sfu_layer_switches_total",
                "Simulcast layer changes of subscriptions",
            )?,
            bwe_estimate_bps: histogram(
                "convene_sfu_bwe_estimate_bps",
                "Egress bandwidth estimates per subscriber",
                prometheus::exponential_buckets(50_000.0, 2.0, 10)?,
            )?,
            forwarding_latency: histogram(
                "convene_sfu_forwarding_latency_seconds",
                "Time from datagram receipt to the forwarded packet being queued for send",
                prometheus::exponential_buckets(0.000_01, 2.0, 16)?,
            )?,
            egress_latency: histogram(
                "convene_sfu_egress_latency_seconds",
                "Time from reading a datagram to handing the datagrams it caused (its fan-out) to the kernel",
                prometheus::exponential_buckets(0.000_005, 2.0, 18)?,
            )?,
            dropped,
            registry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_all_names() {
        let m = Metrics::new().unwrap();
        m.dropped.malformed.inc();
        let names: Vec<String> = m
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        for n in [
            "convene_sfu_rooms",
            "convene_sfu_participants",
            "convene_sfu_tracks",
            "convene_sfu_packets_received_total",
            "convene_sfu_bytes_received_total",
            "convene_sfu_packets_sent_total",
            "convene_sfu_bytes_sent_total",
            "convene_sfu_packets_forwarded_total",
            "convene_sfu_bytes_forwarded_total",
            "convene_sfu_packets_dropped_total",
            "convene_sfu_packets_relayed_total",
            "convene_sfu_nacks_total",
            "convene_sfu_nacks_sent_total",
            "convene_sfu_plis_total",
            "convene_sfu_keyframe_requests_total",
            "convene_sfu_layer_switches_total",
            "convene_sfu_bwe_estimate_bps",
            "convene_sfu_forwarding_latency_seconds",
            "convene_sfu_egress_latency_seconds",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
    }
}
