//! Signaling metrics. Labels are message types and outcomes only, never
//! participant or conference ids, so cardinality stays bounded.

use convene_proto::signaling::ErrorCode;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub connections: IntGauge,
    pub connections_total: IntCounter,
    pub messages: IntCounterVec,
    pub errors: IntCounterVec,
    pub rejected_frames: IntCounterVec,
    pub participants: IntGauge,
    pub waiting_entries: IntGauge,
    pub admissions: IntCounterVec,
    pub join_latency: Histogram,
    pub join_answer_latency: Histogram,
    pub disconnects: IntCounterVec,
    pub media_ended: IntCounterVec,
    pub sfu_events_dropped: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let connections = IntGauge::new(
            "convene_signaling_connections",
            "Open signaling WebSocket connections",
        )?;
        let connections_total = IntCounter::new(
            "convene_signaling_connections_total",
            "Signaling WebSocket connections accepted",
        )?;
        let messages = IntCounterVec::new(
            Opts::new(
                "convene_signaling_messages_total",
                "Client messages received by type",
            ),
            &["type"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "convene_signaling_errors_total",
                "Error frames sent by code",
            ),
            &["code"],
        )?;
        let rejected_frames = IntCounterVec::new(
            Opts::new(
                "convene_signaling_rejected_frames_total",
                "Client frames rejected before reaching a room, by reason",
            ),
            &["reason"],
        )?;
        let participants = IntGauge::new(
            "convene_signaling_participants",
            "Participants in rooms on this node",
        )?;
        let waiting_entries = IntGauge::new(
            "convene_signaling_waiting_entries",
            "Waiting-hall entries last seen in conferences on this node",
        )?;
        let admissions = IntCounterVec::new(
            Opts::new(
                "convene_signaling_admissions_total",
                "Waiting-hall decisions made over signaling, by outcome",
            ),
            &["outcome"],
        )?;
        let join_latency = Histogram::with_opts(
            HistogramOpts::new(
                "convene_signaling_join_latency_seconds",
                "Time from a join message (or admission from the waiting hall) to the first media packet the SFU forwarded to the participant",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0]),
        )?;
        let join_answer_latency = Histogram::with_opts(
            HistogramOpts::new(
                "convene_signaling_join_answer_seconds",
                "Time from a join message to the joined (or waiting) answer",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let disconnects = IntCounterVec::new(
            Opts::new(
                "convene_signaling_disconnects_total",
                "Signaling connections ended, by how (clean, lost, heartbeat)",
            ),
            &["ending"],
        )?;
        let media_ended = IntCounterVec::new(
            Opts::new(
                "convene_signaling_media_sessions_ended_total",
                "SFU media sessions that ended under a participant still in the room, by reason",
            ),
            &["reason"],
        )?;
        let sfu_events_dropped = IntCounter::new(
            "convene_signaling_sfu_events_dropped_total",
            "SFU events dropped because their room's queue was full",
        )?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(connections_total.clone()))?;
        registry.register(Box::new(messages.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(rejected_frames.clone()))?;
        registry.register(Box::new(participants.clone()))?;
        registry.register(Box::new(waiting_entries.clone()))?;
        registry.register(Box::new(admissions.clone()))?;
        registry.register(Box::new(join_latency.clone()))?;
        registry.register(Box::new(join_answer_latency.clone()))?;
        registry.register(Box::new(disconnects.clone()))?;
        registry.register(Box::new(media_ended.clone()))?;
        registry.register(Box::new(sfu_events_dropped.clone()))?;
        Ok(Self {
            registry,
            connections,
            connections_total,
            messages,
            errors,
            rejected_frames,
            participants,
            waiting_entries,
            admissions,
            join_latency,
            join_answer_latency,
            disconnects,
            media_ended,
            sfu_events_dropped,
        })
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors
            .with_label_values(&[wire_name(code).as_str()])
            .inc();
    }
}

/// A unit enum's `snake_case` wire name, the label value its metrics use
/// (a closed set, so label cardinality stays bounded).
pub(crate) fn wire_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}
