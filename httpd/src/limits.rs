//! Connection caps (per client address and global) and the connection metrics.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why a new connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    PerIp,
    Global,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::PerIp => "per_ip",
            RejectReason::Global => "global",
        }
    }
}

/// Connection metrics of a listener. [`ConnMetrics::new`] counts without
/// exporting; [`ConnMetrics::register`] exports into a registry (one
/// listener per registry: the names would clash otherwise).
#[derive(Clone, Debug)]
pub struct ConnMetrics {
    rejected: IntCounterVec,
    closed: IntCounterVec,
    open: IntGauge,
    accept_errors: IntCounter,
}

impl ConnMetrics {
    pub fn new() -> Self {
        let rejected = IntCounterVec::new(
            Opts::new(
                "convene_http_connections_rejected_total",
                "HTTP connections closed on accept because a connection cap was reached",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let closed = IntCounterVec::new(
            Opts::new(
                "convene_http_connections_timed_out_total",
                "HTTP connections closed by the server for being too slow or idle",
            ),
            &["reason"],
        )
        .expect("valid metric");
        // Pre-create every label value so dashboards see zeros, not gaps.
        for r in [RejectReason::PerIp, RejectReason::Global] {
            rejected.with_label_values(&[r.as_str()]);
        }
        for r in ["header_timeout", "idle_timeout"] {
            closed.with_label_values(&[r]);
        }
        ConnMetrics {
            rejected,
            closed,
            open: IntGauge::new(
                "convene_http_connections_open",
                "Open HTTP connections, upgraded ones (WebSockets) included",
            )
            .expect("valid metric"),
            accept_errors: IntCounter::new(
                "convene_http_accept_errors_total",
                "Failed accepts on the HTTP listener (e.g. EMFILE: out of file descriptors)",
            )
            .expect("valid metric"),
        }
    }

    /// Metrics exported through `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::new();
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.closed.clone()))?;
        registry.register(Box::new(m.open.clone()))?;
        registry.register(Box::new(m.accept_errors.clone()))?;
        Ok(m)
    }

    pub fn rejected_total(&self, reason: RejectReason) -> u64 {
        self.rejected.with_label_values(&[reason.as_str()]).get()
    }

    pub fn open(&self) -> i64 {
        self.open.get()
    }

    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.get()
    }

    pub(crate) fn rejected(&self, reason: RejectReason) {
        self.rejected.with_label_values(&[reason.as_str()]).inc();
    }

    pub(crate) fn timed_out(&self, reason: &'static str) {
        self.closed.with_label_values(&[reason]).inc();
    }

    pub(crate) fn accept_error(&self) {
        self.accept_errors.inc();
    }
}

impl Default for ConnMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts open connections per client and in total.
#[derive(Debug)]
pub(crate) struct Tracker {
    per_ip_max: usize,
    total_max: usize,
    metrics: ConnMetrics,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it (when the socket closes, after an
/// upgrade too) gives the slot back.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    tracker: Arc<Tracker>,
    key: IpAddr,
}

impl Tracker {
    pub(crate) fn new(per_ip_max: usize, total_max: usize, metrics: ConnMetrics) -> Self {
        Tracker {
            per_ip_max,
            total_max,
            metrics,
            counts: Mutex::new(Counts::default()),
        }
    }

    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, RejectReason> {
        let key = client_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if self.total_max != 0 && counts.total >= self.total_max {
            return Err(RejectReason::Global);
        }
        let n = counts.per_ip.entry(key).or_insert(0);
        if self.per_ip_max != 0 && *n >= self.per_ip_max {
            return Err(RejectReason::PerIp);
        }
        *n += 1;
        counts.total += 1;
        self.metrics.open.inc();
        Ok(ConnGuard {
            tracker: self.clone(),
            key,
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut counts = self
            .tracker
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(n) = counts.per_ip.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.key);
            }
        }
        self.tracker.metrics.open.dec();
    }
}

/// The unit a per-IP cap applies to: an IPv4 address, or an IPv6 /64 (one
/// subscriber usually holds a whole /64, so single addresses are free to
/// them). IPv4-mapped IPv6 counts as the IPv4 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_ip_and_in_total() {
        let m = ConnMetrics::new();
        let t = Arc::new(Tracker::new(2, 3, m.clone()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = t.try_acquire(a).unwrap();
        let _a2 = t.try_acquire(a).unwrap();
        assert_eq!(t.try_acquire(a).unwrap_err(), RejectReason::PerIp);
        let _b1 = t.try_acquire(b).unwrap();
        assert_eq!(t.try_acquire(b).unwrap_err(), RejectReason::Global);
        assert_eq!(m.open(), 3);
        drop(a1);
        assert_eq!(m.open(), 2);
        let _a3 = t.try_acquire(a).unwrap();
    }

    #[test]
    fn zero_means_unlimited() {
        let t = Arc::new(Tracker::new(0, 0, ConnMetrics::new()));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let guards: Vec<_> = (0..1000).map(|_| t.try_acquire(ip).unwrap()).collect();
        assert_eq!(guards.len(), 1000);
    }

    #[test]
    fn ipv6_counts_per_slash_64() {
        let t = Arc::new(Tracker::new(1, 0, ConnMetrics::new()));
        let _g = t.try_acquire("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(t
            .try_acquire("2001:db8:1:2::ffff".parse().unwrap())
            .is_err());
        assert!(t.try_acquire("2001:db8:1:3::1".parse().unwrap()).is_ok());
        let _v4 = t.try_acquire("192.0.2.9".parse().unwrap()).unwrap();
        assert!(t.try_acquire("::ffff:192.0.2.9".parse().unwrap()).is_err());
    }

    #[test]
    fn registers_every_metric() {
        let r = Registry::new();
        let m = ConnMetrics::register(&r).unwrap();
        m.rejected(RejectReason::PerIp);
        let names: Vec<String> = r.gather().iter().map(|f| f.name().to_string()).collect();
        for n in [
            "convene_http_connections_rejected_total",
            "convene_http_connections_timed_out_total",
            "convene_http_connections_open",
            "convene_http_accept_errors_total",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        assert_eq!(m.rejected_total(RejectReason::PerIp), 1);
    }
}
