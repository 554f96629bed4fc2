//! Per-connection and per-conference limits use the workspace's one rate
//! limiter (`convene-ratelimit`); time is an argument, the connection task
//! and the room pass `Instant::now()`.

pub use convene_ratelimit::TokenBucket;
