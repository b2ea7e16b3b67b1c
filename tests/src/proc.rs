//! What a process uses, from /proc: resident memory and open descriptors. Used to show that
//! hostile peers cannot make the daemon grow without bound.

use std::path::Path;

/// Resident set size of `pid` in KiB (`VmRSS` of /proc/PID/status); `None` once it exited.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Open file descriptors of `pid` that are sockets.
pub fn open_sockets(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .map(|t| t.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false)
        })
        .count()
}

/// Raises this process' soft RLIMIT_NOFILE to at least `want` (up to the hard limit);
/// returns the soft limit now in force. Children (the daemon) inherit it.
pub fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    if r.rlim_cur < want {
        r.rlim_cur = want.min(r.rlim_max);
        // SAFETY: `r` is a valid rlimit whose soft value does not exceed its hard value.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    }
    r.rlim_cur
}

/// True when /proc describes processes (Linux).
pub fn available() -> bool {
    Path::new("/proc/self/status").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_rss_and_sockets() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        let before = open_sockets(me);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(open_sockets(me) > before.saturating_sub(1));
        drop(l);
        assert!(raise_nofile(256) >= 256);
        assert_eq!(rss_kib(u32::MAX), None);
    }
}
