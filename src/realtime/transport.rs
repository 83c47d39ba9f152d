//! The HTTP listener's connections, wrapped so that a client which stops reading cannot hold a
//! connection (and its socket's queue) forever. socketioxide cannot disconnect a socket whose
//! outgoing queue is full (the disconnect packet has nowhere to go), so the cut happens one
//! layer down: once a write has made no progress for `write_timeout`, the connection is dead:
//! writes and reads fail from then on (engineioxide ignores write errors but closes the socket
//! when its reader fails), and socketioxide closes the socket as it would for a dropped network.
//! Also sets `TCP_NODELAY` (axum does not; without it small frames wait for Nagle) and a bounded
//! send buffer.
//!
//! Every connection also reports its write progress to a [`Flow`] (see
//! `delivery::congestion`): a socket whose connection stops taking data leaves the broadcast
//! path for the per-socket one before its queue is full. Requests carry the connection's flow
//! as `ConnectInfo<ConnFlow>`, so the Socket.io session riding on a websocket is bound to it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

use axum::extract::ConnectInfo;
use axum::serve::IncomingStream;
use socketioxide::socket::Sid;

use crate::delivery::{Congestion, Flow};

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

impl axum::extract::connect_info::Connected<IncomingStream<'_, GuardedListener>> for ConnFlow {
    fn connect_info(stream: IncomingStream<'_, GuardedListener>) -> Self {
        ConnFlow(stream.io().flow.clone())
    }
}

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

pub struct GuardedListener {
    inner: TcpListener,
    write_timeout: Duration,
    send_buffer: usize,
    congestion: Congestion,
}

impl GuardedListener {
    /// `send_buffer`: SO_SNDBUF for accepted sockets in bytes (0 keeps the kernel's
    /// autotuning, which lets one stalled client pin megabytes of kernel memory).
    pub fn new(
        inner: TcpListener,
        write_timeout: Duration,
        send_buffer: usize,
        congestion: Congestion,
    ) -> Self {
        GuardedListener {
            inner,
            write_timeout,
            send_buffer,
            congestion,
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = StallGuard<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((tcp, addr)) => {
                    let _ = tcp.set_nodelay(true);
                    if self.send_buffer > 0 {
                        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(self.send_buffer);
                    }
                    let guard = StallGuard::new(tcp, self.write_timeout);
                    return (guard.with_flow(self.congestion.flow()), addr);
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An I/O stream whose writes fail with `TimedOut` after making no progress for a while.
pub struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    /// Armed while a write is pending; reset by any progress.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Set once the deadline passed: everything fails from then on.
    dead: bool,
    /// The reader waiting for data, woken when the connection is declared dead.
    read_waker: Option<Waker>,
    /// Where write progress is reported.
    flow: Arc<Flow>,
}

impl<T> StallGuard<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        StallGuard {
            inner,
            timeout,
            deadline: None,
            dead: false,
            read_waker: None,
            flow: Congestion::default().flow(),
        }
    }

    /// Reports write progress to `flow` (the listener's congestion).
    pub fn with_flow(mut self, flow: Arc<Flow>) -> Self {
        self.flow = flow;
        self
    }

    fn progressed(&mut self) {
        self.deadline = None;
        self.flow.write_progressed();
    }

    fn dead_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading: write stalled",
        )
    }

    /// Called when the inner write is pending: arm the deadline, and fail once it passed.
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.dead {
            return Poll::Ready(Err(Self::dead_error()));
        }
        self.flow.write_pending();
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.dead = true;
                if let Some(w) = self.read_waker.take() {
                    w.wake();
                }
                Poll::Ready(Err(Self::dead_error()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.dead {
            return Poll::Ready(Err(Self::dead_error()));
        }
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_pending() {
            self.read_waker = Some(cx.waker().clone());
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.pending(cx).map(|r| r.map(|()| 0)),
            ready => {
                self.progressed();
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.pending(cx).map(|r| r.map(|()| 0)),
            ready => {
                self.progressed();
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            ready => {
                self.progressed();
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that never reads: writes fill the buffers, then fail after the timeout instead of
    /// hanging; a peer that reads keeps the stream healthy.
    #[tokio::test]
    async fn stalled_writes_fail_after_the_timeout() {
        let (a, _b) = tokio::io::duplex(1024);
        let mut guarded = StallGuard::new(a, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let chunk = [0u8; 512];
        let err = loop {
            if let Err(e) = guarded.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
        let mut buf = [0u8; 8];
        let read = tokio::io::AsyncReadExt::read(&mut guarded, &mut buf).await;
        assert_eq!(
            read.unwrap_err().kind(),
            io::ErrorKind::TimedOut,
            "reads fail too"
        );

        let (a, mut b) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(a, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut sink)
                .await
                .unwrap();
            sink.len()
        });
        for _ in 0..20 {
            guarded.write_all(&[1u8; 100]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        guarded.shutdown().await.unwrap();
        drop(guarded);
        assert_eq!(reader.await.unwrap(), 2000);
    }
}
