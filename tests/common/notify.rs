//! The systemd notify socket, as a test sees it: a datagram socket passed to the binary as
//! `NOTIFY_SOCKET`, from which the test reads what the service told systemd (`READY=1`,
//! `STATUS=...`) without blocking the runtime longer than asked.
#![allow(dead_code)]

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A bound notify socket in a directory of its own (removed with it).
pub struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    pub fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket {
            sock,
            path,
            _dir: dir,
        }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temp path")
    }

    /// Every datagram received so far, without waiting.
    pub fn drain(&self) -> Vec<String> {
        self.sock.set_nonblocking(true).expect("non-blocking");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.sock.set_nonblocking(false).expect("blocking again");
        seen
    }

    /// Reads datagrams until one has the line `want` (bounded by `within`), returning all read;
    /// panics with what it got otherwise. Blocks its thread: call it in `block_in_place`.
    pub fn read_until(&self, want: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let done = msg.lines().any(|l| l == want);
                    seen.push(msg);
                    if done {
                        return seen;
                    }
                }
                // A child of another test exiting sends SIGCHLD (tokio::process has a handler),
                // and a socket read with a timeout is not restarted after a signal.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        panic!("no {want:?} within {within:?}; got {seen:?}");
    }
}
