//! The framing guard: an in-process relay between rumqttc and the broker, so that one message
//! over `mqtt.max_packet_size` cannot stop ingest. rumqttc refuses such a packet by dropping
//! the connection, and with a persistent session the broker redelivers it on every reconnect,
//! for ever (upstream issue bytebeamio/rumqtt#614: it cannot skip a packet, and it takes no
//! custom stream). It can connect to a unix socket, though: rumqttc connects to the guard's
//! socket, and the guard makes the real TCP or TLS connection ([`super::upstream`]).
//!
//! Client → broker bytes are copied as they are. Broker → client bytes go through a
//! [`Framer`]: frames within the limit pass as they stream; an oversize PUBLISH is read only as
//! far as its topic and packet id, the rest is discarded as it streams, and a small tombstone
//! PUBLISH takes its place, which the ingest loop counts (`too_large`) and acknowledges in
//! order. So the framing limit stays the memory bound: nothing here buffers a frame.
//!
//! The socket lives in a fresh 0700 directory (under `$RUNTIME_DIRECTORY` when systemd sets
//! it, else the temp dir), removed when the guard stops; a connection from any other process
//! is refused. Why a connection to the broker failed (refused, TLS, reset) is known here, not
//! in rumqttc, which only sees its unix socket close: [`Link::take_failure`] hands that to the
//! ingest loop for `/health`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::config::MqttConfig;
use super::frames::{FrameError, Framer, Marker, Piece};
use super::upstream::{BrokerStream, TlsSetupError, Upstream};

/// Broker → client reads: readings are small; a larger read only means fewer syscalls.
const DOWN_BUFFER: usize = 16 * 1024;
/// Client → broker reads: acks, pings, subscriptions.
const UP_BUFFER: usize = 4 * 1024;
/// After rumqttc closed its end, how long the broker gets to close its own (so the last bytes
/// sent to it are not lost to a reset).
const LINGER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot create a private directory for the MQTT socket under {dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: String,
        source: std::io::Error,
    },
    #[error("the MQTT socket path {0:?} is not UTF-8")]
    Path(PathBuf),
}

/// Why a relayed connection ended on the broker's side.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("reading from the broker failed: {0}")]
    Read(std::io::Error),
    #[error("writing to the broker failed: {0}")]
    Write(std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// What the ingest loop and the guard share: the tombstone marker and why the current
/// connection failed. A short-held lock, taken once per connection and per failure.
pub struct Link {
    marker: Marker,
    failure: Mutex<Failure>,
}

#[derive(Default)]
struct Failure {
    /// The newest connection; an older one may no longer report.
    current: u64,
    error: Option<(String, &'static str)>,
}

impl Link {
    /// The size of the discarded payload when `payload` is a tombstone.
    pub fn oversize(&self, payload: &[u8]) -> Option<u64> {
        self.marker.oversize(payload)
    }

    /// Why the guard's side of the current connection failed, with its kind, once.
    pub fn take_failure(&self) -> Option<(String, &'static str)> {
        self.failure.lock().expect("link lock").error.take()
    }

    fn begin(&self) -> u64 {
        let mut f = self.failure.lock().expect("link lock");
        f.current += 1;
        f.error = None;
        f.current
    }

    /// Records the first failure of connection `id` (the cause; later ones follow from it).
    fn fail(&self, id: u64, message: String, kind: &'static str) {
        let mut f = self.failure.lock().expect("link lock");
        if f.current == id && f.error.is_none() {
            f.error = Some((message, kind));
        }
    }
}

pub struct Guard {
    listener: UnixListener,
    path: PathBuf,
    upstream: Arc<Upstream>,
    limit: usize,
    link: Arc<Link>,
    /// Removed (with the socket) when the guard is dropped, after the listener.
    _dir: tempfile::TempDir,
}

impl Guard {
    /// Builds the broker connection from `[mqtt]` and listens on a fresh private socket.
    pub fn bind(cfg: &MqttConfig) -> Result<Guard, GuardError> {
        let upstream = Upstream::from_config(cfg)?;
        let base = std::env::var_os("RUNTIME_DIRECTORY")
            .and_then(|v| std::env::split_paths(&v).next())
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("sensorcast-mqtt-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&base)
            .map_err(|source| GuardError::Dir {
                dir: base.display().to_string(),
                source,
            })?;
        let path = dir.path().join("broker.sock");
        if path.to_str().is_none() {
            return Err(GuardError::Path(path));
        }
        let listener = UnixListener::bind(&path).map_err(|source| GuardError::Bind {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Guard {
            listener,
            path,
            upstream: Arc::new(upstream),
            limit: cfg.max_packet_size,
            link: Arc::new(Link {
                marker: Marker::random(),
                failure: Mutex::default(),
            }),
            _dir: dir,
        })
    }

    /// The socket rumqttc connects to (UTF-8, checked by [`Guard::bind`]).
    pub fn socket_path(&self) -> &str {
        self.path.to_str().unwrap_or_default()
    }

    pub fn link(&self) -> Arc<Link> {
        self.link.clone()
    }

    /// Relays every connection rumqttc makes until `stop`; then drops what is still open
    /// (the ingest loop stops the guard only after its DISCONNECT reached the broker).
    pub async fn run(self, stop: CancellationToken) {
        let mut conns = JoinSet::new();
        let me = std::process::id() as i32;
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                a = self.listener.accept() => a,
            };
            let client = match accepted {
                Ok((client, _)) => client,
                Err(e) => {
                    // Out of file descriptors, most likely: rumqttc's connect times out and
                    // the ingest loop backs off; do not spin meanwhile.
                    warn!(error = %e, "mqtt guard: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let peer = client.peer_cred().ok().and_then(|c| c.pid());
            if peer != Some(me) {
                warn!(peer_pid = ?peer, path = %self.path.display(), "mqtt guard: refused a connection from another process");
                continue;
            }
            let id = self.link.begin();
            conns.spawn(serve(
                client,
                self.upstream.clone(),
                self.limit,
                self.link.clone(),
                id,
            ));
        }
    }
}

/// One rumqttc connection: connects to the broker, then relays until either side closes.
async fn serve(
    client: UnixStream,
    upstream: Arc<Upstream>,
    limit: usize,
    link: Arc<Link>,
    id: u64,
) {
    let broker = match upstream.connect().await {
        Ok(b) => b,
        Err(e) => {
            debug!(error = %e, "mqtt guard: no broker connection");
            // Recorded before rumqttc sees its socket close, so the ingest loop finds it.
            link.fail(id, e.to_string(), e.kind());
            drop(client);
            return;
        }
    };
    let framer = Framer::new(limit, link.marker);
    match broker {
        // TCP splits into owned halves without a lock between them; TLS needs the shared one.
        BrokerStream::Tcp(s) => relay(s.into_split(), client, framer, &link, id).await,
        BrokerStream::Tls(s) => relay(tokio::io::split(*s), client, framer, &link, id).await,
    }
}

async fn relay<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    (mut br, mut bw): (R, W),
    client: UnixStream,
    mut framer: Framer,
    link: &Link,
    id: u64,
) {
    let (mut cr, mut cw) = client.into_split();
    let up = async {
        let mut buf = vec![0u8; UP_BUFFER];
        // A read error or EOF: rumqttc closed its end (after DISCONNECT, or giving up).
        while let Ok(n @ 1..) = cr.read(&mut buf).await {
            bw.write_all(&buf[..n]).await.map_err(RelayError::Write)?;
            // TLS holds written bytes in its session until flushed; TCP's flush is a no-op.
            bw.flush().await.map_err(RelayError::Write)?;
        }
        let _ = bw.shutdown().await;
        Ok::<(), RelayError>(())
    };
    let down = async {
        let mut buf = vec![0u8; DOWN_BUFFER];
        let mut pieces = Vec::with_capacity(4);
        loop {
            let n = br.read(&mut buf).await.map_err(RelayError::Read)?;
            if n == 0 {
                // The broker closed: so does rumqttc's socket, which it reports as a loss.
                let _ = cw.shutdown().await;
                return Ok(());
            }
            pieces.clear();
            framer.feed(&buf[..n], &mut pieces)?;
            for p in &pieces {
                let bytes = match p {
                    Piece::Input(r) => &buf[r.clone()],
                    Piece::Held(h, len) => &h[..*len as usize],
                    Piece::Tombstone(t) => t,
                };
                if cw.write_all(bytes).await.is_err() {
                    return Ok(()); // rumqttc is gone
                }
            }
        }
    };
    tokio::pin!(up, down);
    let result = tokio::select! {
        r = &mut up => {
            let _ = tokio::time::timeout(LINGER, &mut down).await;
            r
        }
        r = &mut down => r,
    };
    if let Err(e) = result {
        debug!(error = %e, "mqtt guard: broker connection ended");
        // Before the halves drop: rumqttc sees its socket close only after this.
        let kind = match e {
            RelayError::Frame(_) => "protocol",
            _ => "io",
        };
        link.fail(id, e.to_string(), kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_failure_is_kept_for_the_current_connection_only() {
        let link = Link {
            marker: Marker::random(),
            failure: Mutex::default(),
        };
        let old = link.begin();
        let new = link.begin();
        link.fail(old, "late".into(), "io");
        assert_eq!(link.take_failure(), None);
        link.fail(new, "refused".into(), "refused");
        link.fail(new, "then this".into(), "io");
        assert_eq!(link.take_failure(), Some(("refused".into(), "refused")));
        assert_eq!(link.take_failure(), None);
    }

    #[tokio::test]
    async fn the_socket_directory_is_private_and_removed_with_the_guard() {
        let cfg = MqttConfig::default();
        let guard = Guard::bind(&cfg).unwrap();
        let dir = Path::new(guard.socket_path())
            .parent()
            .unwrap()
            .to_path_buf();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(guard);
        assert!(!dir.exists());
    }
}
