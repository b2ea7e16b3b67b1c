//! Loopback ports.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Asks the kernel for a free loopback port: bind port 0, read the port, release it. Another
/// process could take it before the daemon binds; the daemon then fails to start and the
/// test says so with the daemon's log.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Pause between two connection attempts while waiting for a portal.
const CONNECT_RETRY: Duration = Duration::from_millis(50);

/// Waits until `addr` accepts TCP connections, at most `timeout`. `still_alive` is asked
/// between attempts so a daemon that exited is reported at once instead of after the timeout.
pub fn wait_for_listener(
    addr: SocketAddr,
    timeout: Duration,
    mut still_alive: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return true;
        }
        if !still_alive() {
            return false;
        }
        std::thread::sleep(CONNECT_RETRY);
    }
    false
}
