//! CPU and memory of the server process under test, from /proc.
//!
//! CPU is utime + stime of `/proc/<pid>/stat` between two samples, divided
//! by the wall time between them: the number of cores the process kept
//! busy. RSS is `VmRSS` of `/proc/<pid>/status`. The process is given
//! (`--sfu-pid`) or found as the owner of the UDP port media came from:
//! `/proc/net/udp{,6}` maps the port to a socket inode, and the process
//! holding `socket:[inode]` among its `/proc/<pid>/fd` is the server.

use std::net::SocketAddr;
use std::time::Instant;

use procfs::process::{FDTarget, Process};

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("/proc: {0}")]
    Proc(#[from] procfs::ProcError),
    #[error("no process owns UDP port {0}")]
    NoOwner(u16),
}

/// One CPU sample of a process.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    ticks: u64,
}

pub struct ProcWatch {
    pub pid: i32,
    process: Process,
    ticks_per_sec: f64,
}

impl ProcWatch {
    pub fn new(pid: i32) -> Result<Self, ProcError> {
        Ok(Self {
            pid,
            process: Process::new(pid)?,
            ticks_per_sec: procfs::ticks_per_second() as f64,
        })
    }

    /// Watch the process that owns the local UDP `port`.
    pub fn owner_of_udp_port(port: u16) -> Result<Self, ProcError> {
        Self::new(udp_port_owner(port)?)
    }

    pub fn cpu(&self) -> Result<CpuSample, ProcError> {
        let st = self.process.stat()?;
        Ok(CpuSample {
            at: Instant::now(),
            ticks: st.utime + st.stime,
        })
    }

    /// Cores kept busy between two samples.
    pub fn cores_between(&self, a: CpuSample, b: CpuSample) -> f64 {
        let wall = b.at.saturating_duration_since(a.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        b.ticks.saturating_sub(a.ticks) as f64 / self.ticks_per_sec / wall
    }

    /// Resident set size, MiB.
    pub fn rss_mb(&self) -> Result<f64, ProcError> {
        let kb = self.process.status()?.vmrss.unwrap_or(0);
        Ok(kb as f64 / 1024.0)
    }
}

/// The pid owning a UDP socket bound to `port` (any local address).
pub fn udp_port_owner(port: u16) -> Result<i32, ProcError> {
    let mut inodes: Vec<u64> = Vec::new();
    let v4 = procfs::net::udp()?;
    let v6 = procfs::net::udp6().unwrap_or_default();
    for e in v4.iter().chain(v6.iter()) {
        if e.local_address.port() == port && e.inode != 0 {
            inodes.push(e.inode);
        }
    }
    if inodes.is_empty() {
        return Err(ProcError::NoOwner(port));
    }
    for p in procfs::process::all_processes()?.flatten() {
        let Ok(fds) = p.fd() else { continue };
        for fd in fds.flatten() {
            if let FDTarget::Socket(inode) = fd.target {
                if inodes.contains(&inode) {
                    return Ok(p.pid);
                }
            }
        }
    }
    Err(ProcError::NoOwner(port))
}

/// The pid of the server `remote` (where media came from) when it is local.
pub fn server_pid(remote: SocketAddr) -> Result<i32, ProcError> {
    udp_port_owner(remote.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_own_udp_socket_and_measures_us() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let pid = udp_port_owner(port).unwrap();
        assert_eq!(pid, std::process::id() as i32);
        let w = ProcWatch::new(pid).unwrap();
        let a = w.cpu().unwrap();
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let b = w.cpu().unwrap();
        let cores = w.cores_between(a, b);
        assert!((0.0..=64.0).contains(&cores), "{cores} {x}");
        assert!(w.rss_mb().unwrap() > 1.0);
    }
}
