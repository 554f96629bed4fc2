//! The open-file limit: every connection is a descriptor, and the usual soft
//! limit of 1024 is far below what a server needs.

/// The current soft `RLIMIT_NOFILE`, when the platform has one.
pub fn fd_soft_limit() -> Option<u64> {
    imp::get().map(|(soft, _)| soft)
}

/// Raises the soft open-file limit to the hard limit, as servers written in Go
/// do at start-up: container runtimes and systemd commonly start processes
/// with soft 1024 but a much higher hard limit, and Kubernetes has no setting
/// for it. Returns the (old, new) soft limit.
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    imp::raise()
}

#[cfg(unix)]
mod imp {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    use std::io;

    /// `None` in a field means unlimited.
    pub fn get() -> Option<(u64, u64)> {
        let lim = getrlimit(Resource::Nofile);
        Some((
            lim.current.unwrap_or(u64::MAX),
            lim.maximum.unwrap_or(u64::MAX),
        ))
    }

    pub fn raise() -> io::Result<(u64, u64)> {
        let (soft, hard) = get().ok_or_else(io::Error::last_os_error)?;
        // macOS reports an unlimited hard limit but refuses more than
        // OPEN_MAX for the soft one.
        #[cfg(target_os = "macos")]
        let hard = hard.min(10_240);
        if soft >= hard {
            return Ok((soft, soft));
        }
        let limit = (hard != u64::MAX).then_some(hard);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit,
                maximum: limit,
            },
        )?;
        Ok((soft, hard))
    }
}

#[cfg(not(unix))]
mod imp {
    pub fn get() -> Option<(u64, u64)> {
        None
    }

    pub fn raise() -> std::io::Result<(u64, u64)> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no RLIMIT_NOFILE on this platform",
        ))
    }
}
