//! systemd's readiness protocol (`sd_notify(3)`, for units of `Type=notify`): when
//! `NOTIFY_SOCKET` is set, the serving daemon sends `READY=1` once the mount is live, keeps a
//! `STATUS=` line with its pending uploads current while it serves, and sends `STOPPING=1`
//! and the progress of its last uploads while it unmounts. `systemctl status` shows the
//! latest `STATUS=`.
//!
//! The protocol is one datagram per message on a Unix socket: a path, or an abstract name
//! when it starts with `@`. A few lines of std, so no crate. Sending is best effort: a
//! message that cannot be sent is logged at debug level and the mount goes on.
//!
//! `MAINPID=` goes with `READY=1`: a daemon started in the background (without
//! `--foreground`) is not the process systemd started, and says so (the unit then needs
//! `NotifyAccess=all`; the unit in `contrib/` runs it in the foreground instead).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::debug;

use crate::fs::Fs;

/// Where to send, if systemd asked for notifications.
pub(super) struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The notifier of `NOTIFY_SOCKET` (none when unset or unusable).
    pub(super) fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty())
            .and_then(|name| match socket_address(&name) {
                Ok(addr) => UnixDatagram::unbound().ok().map(|sock| (sock, addr)),
                Err(e) => {
                    debug!(name, error = %e, "unusable NOTIFY_SOCKET");
                    None
                }
            });
        Notifier { target }
    }

    /// True if systemd listens.
    pub(super) fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one message (`KEY=VALUE` lines).
    fn send(&self, message: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(message.as_bytes(), addr) {
                debug!(error = %e, "cannot notify systemd");
            }
        }
    }

    /// The mount is live.
    pub(super) fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS={status}",
            std::process::id()
        ));
    }

    pub(super) fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// The daemon is unmounting and uploading what is pending.
    pub(super) fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }
}

/// `/run/x.sock` is a path, `@name` an abstract socket name.
fn socket_address(name: &str) -> std::io::Result<SocketAddr> {
    match name.strip_prefix('@') {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name.as_bytes())
        }
        None => SocketAddr::from_pathname(name),
    }
}

/// Keeps `STATUS=` current while the mount serves: the pending uploads, checked every second
/// and sent when the line changed.
pub(super) async fn keep_status_current(notifier: Arc<Notifier>, fs: Arc<Fs>) {
    let mut last = String::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let line = fs.status().pending_line(SystemTime::now());
        if line != last {
            notifier.status(&line);
            last = line;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, std::os::unix::net::UnixDatagram, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        (dir, sock, path.display().to_string())
    }

    fn received(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_reach_a_socket_named_by_path() {
        let (_dir, sock, path) = listener();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                socket_address(&path).unwrap(),
            )),
        };
        n.ready("pending uploads: 0 files, 0 bytes");
        let ready = received(&sock);
        assert!(ready.starts_with("READY=1\nMAINPID="), "{ready}");
        assert!(ready.ends_with("\nSTATUS=pending uploads: 0 files, 0 bytes"));
        n.stopping("unmounting");
        assert_eq!(received(&sock), "STOPPING=1\nSTATUS=unmounting");
    }

    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("bucketfs-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                socket_address(&format!("@{name}")).unwrap(),
            )),
        };
        n.status("x");
        assert_eq!(received(&sock), "STATUS=x");
    }
}
