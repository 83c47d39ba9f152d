//! The HTTP listener's connections, wrapped so that a client which stops reading cannot hold a
//! connection (and its socket's queue) forever. socketioxide cannot disconnect a socket whose
//! outgoing queue is full (the disconnect packet has nowhere to go), so the cut happens one
//! layer down: once a write has made no progress for `write_timeout`, the connection is dead:
//! writes and reads fail from then on (engineioxide ignores write errors but closes the socket
//! when its reader fails), and socketioxide closes the socket as it would for a dropped network.
//! Also sets `TCP_NODELAY` (axum does not; without it small frames wait for Nagle) and a bounded
//! send buffer.
//!
//! File descriptors: the listener keeps at most a capped number of connections open (see
//! `core::connections`: below the fd limit, with a reserve); a connection over the cap is
//! accepted, answered `503` and closed at once (counted), so that the kernel's queue does not
//! fill with clients nobody answers. A connection from which nothing has been read for
//! `idle_timeout` is closed as well (counted): a slow body, or any connection a peer stopped
//! using. The request header's own deadline is hyper's (`web::serve`).
//!
//! Every connection also reports its write progress to a [`Flow`] (see
//! `delivery::congestion`): a socket whose connection stops taking data leaves the broadcast
//! path for the per-socket one before its queue is full. Requests carry the connection's flow
//! as `ConnectInfo<ConnFlow>`, so the Socket.io session riding on a websocket is bound to it.

use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use axum::extract::ConnectInfo;
use socketioxide::socket::Sid;

use crate::core::connections::{ConnEnd, HttpConnections};
use crate::delivery::{Congestion, Flow};

pub use super::stall::StallGuard;

/// Rebuilds a request's URI and headers as owned copies. engineioxide keeps the handshake
/// request's parts for the socket's whole life; as parsed by hyper they point into the
/// connection's 16 KiB read buffer and keep it alive. Copies cost a few hundred bytes instead.
pub async fn detach_request(req: axum::extract::Request) -> axum::extract::Request {
    use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
    let (mut parts, body) = req.into_parts();
    if let Ok(uri) = parts.uri.to_string().parse::<Uri>() {
        parts.uri = uri;
    }
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in parts.headers.iter() {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    parts.headers = headers;
    axum::extract::Request::from_parts(parts, body)
}

/// The flow of the connection a request came on (`ConnectInfo<ConnFlow>`).
#[derive(Clone)]
pub struct ConnFlow(pub Arc<Flow>);

/// A websocket upgrade of an engine.io session names it (`sid=`): from now on that session's
/// socket rides on this connection. (socketioxide's socket id is the engine.io session id.)
pub async fn bind_websocket(req: axum::extract::Request) -> axum::extract::Request {
    if let (Some(query), Some(ConnectInfo(conn))) = (
        req.uri().query(),
        req.extensions().get::<ConnectInfo<ConnFlow>>(),
    ) {
        let mut websocket = false;
        let mut sid = None;
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            match k {
                "transport" => websocket = v == "websocket",
                "sid" => sid = v.parse::<Sid>().ok(),
                _ => {}
            }
        }
        if let (true, Some(sid)) = (websocket, sid) {
            conn.0.bind(sid);
        }
    }
    req
}

/// Counts (`payload_too_large`) the long-polling messages the transport refuses with 413 as
/// over its limit: the client sees a failed request, and this is where it shows.
pub async fn count_refused_payloads(
    axum::extract::State(rt): axum::extract::State<super::Realtime>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let r = next.run(req).await;
    if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        rt.hub.stats().client_error("payload_too_large");
    }
    r
}

pub struct GuardedListener {
    inner: TcpListener,
    write_timeout: Duration,
    idle_timeout: Duration,
    send_buffer: usize,
    congestion: Congestion,
    conns: Arc<HttpConnections>,
    /// When a refusal was last logged (at most one line a minute).
    refusal_logged: Option<Instant>,
}

/// How a [`GuardedListener`] treats its connections.
pub struct ListenerOptions {
    /// A write that makes no progress this long kills the connection.
    pub write_timeout: Duration,
    /// Nothing read for this long kills the connection.
    pub idle_timeout: Duration,
    /// SO_SNDBUF for accepted sockets in bytes (0 keeps the kernel's autotuning, which lets
    /// one stalled client pin megabytes of kernel memory).
    pub send_buffer: usize,
}

/// What a connection over the cap is told before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Content-Type: text/plain\r\nRetry-After: 5\r\nContent-Length: 22\r\n\r\nToo many connections.\n";

impl GuardedListener {
    pub fn new(
        inner: TcpListener,
        options: ListenerOptions,
        congestion: Congestion,
        conns: Arc<HttpConnections>,
    ) -> Self {
        GuardedListener {
            inner,
            write_timeout: options.write_timeout,
            idle_timeout: options.idle_timeout,
            send_buffer: options.send_buffer,
            congestion,
            conns,
            refusal_logged: None,
        }
    }

    /// The next connection under the cap. Connections over it are answered 503 and closed
    /// here; accept errors (EMFILE and friends) are counted and waited out.
    pub async fn accept(&mut self) -> (StallGuard<TcpStream>, std::net::SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((tcp, addr)) => {
                    let Some(slot) = self.conns.try_enter() else {
                        self.refuse(tcp);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    if self.send_buffer > 0 {
                        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(self.send_buffer);
                    }
                    let guard = StallGuard::new(tcp, self.write_timeout)
                        .with_flow(self.congestion.flow())
                        .with_idle_timeout(self.idle_timeout, self.conns.clone())
                        .with_slot(slot);
                    return (guard, addr);
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    self.conns.count(ConnEnd::AcceptError);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn refuse(&mut self, tcp: TcpStream) {
        // What the client already sent is read first (without waiting), so that closing sends
        // a FIN after the answer rather than a reset that could discard it.
        let mut sink = [0u8; 2048];
        for _ in 0..4 {
            if !matches!(tcp.try_read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
        let _ = tcp.try_write(REFUSAL);
        let now = Instant::now();
        if self
            .refusal_logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            self.refusal_logged = Some(now);
            tracing::warn!(
                open = self.conns.open(),
                max = self.conns.max(),
                refused_so_far = self.conns.ended(ConnEnd::Refused),
                "too many connections: new ones are refused (503) until some close"
            );
        }
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}
