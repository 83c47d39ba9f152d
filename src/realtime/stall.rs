//! The I/O stream of one HTTP connection ([`StallGuard`]): a write that makes no progress for
//! the write timeout, or a read side from which nothing came for the idle timeout, kills the
//! connection (both directions fail from then on), and it holds the connection's place under
//! the listener's cap until it is dropped. See [`super::transport`] for why.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::core::connections::{ConnEnd, ConnSlot, HttpConnections};
use crate::delivery::{Congestion, Flow};

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
    /// Nothing read for this long kills the connection (`None`: no such limit).
    idle: Option<Idle>,
    /// The connection's place under the listener's cap, given back with the stream.
    _slot: Option<ConnSlot>,
}

struct Idle {
    timeout: Duration,
    last_read: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    conns: Arc<HttpConnections>,
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
            idle: None,
            _slot: None,
        }
    }

    /// Kills the connection once nothing was read for `timeout` (counted in `conns`).
    pub fn with_idle_timeout(mut self, timeout: Duration, conns: Arc<HttpConnections>) -> Self {
        self.idle = Some(Idle {
            timeout,
            last_read: Instant::now(),
            sleep: None,
            conns,
        });
        self
    }

    /// Holds `slot` for as long as the stream lives.
    pub fn with_slot(mut self, slot: ConnSlot) -> Self {
        self._slot = Some(slot);
        self
    }

    /// The flow this connection reports its write progress to.
    pub fn flow(&self) -> Arc<Flow> {
        self.flow.clone()
    }

    /// Called when a read is pending: `true` once nothing was read for the idle timeout (the
    /// timer is re-armed lazily, so a read costs only a clock read).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(idle) = &mut self.idle else {
            return false;
        };
        let deadline = idle.last_read + idle.timeout;
        let sleep = idle
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            idle.conns.count(ConnEnd::IdleTimeout);
            return true;
        }
        false
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
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if let Some(idle) = &mut self.idle {
                    idle.last_read = Instant::now();
                }
            }
            Poll::Pending => {
                self.read_waker = Some(cx.waker().clone());
                if self.idle_expired(cx) {
                    self.dead = true;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "nothing read from the client: idle timeout",
                    )));
                }
            }
            Poll::Ready(_) => {}
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
