//! The HTTP listeners' connections: how many are open, the cap they are held under, and why
//! some were refused or closed. Every open connection holds a file descriptor; the cap keeps
//! them below the process's fd limit with a reserve for the broker, the state files, webhooks
//! and the metrics listener, so that no number of clients can take those away. Written by the
//! listener and its connections (`realtime::transport`, `web::serve`), read by `/health`,
//! `/metrics` and the status line.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// One listener's connections. Shared as `Arc`; every counter is a relaxed atomic.
#[derive(Debug, Default)]
pub struct HttpConnections {
    open: AtomicUsize,
    max: usize,
    /// The process's soft `RLIMIT_NOFILE` the cap was derived from (0: not known).
    fd_limit: u64,
    refused: AtomicU64,
    accept_errors: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
}

/// Why a connection was refused or closed early, for the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEnd {
    /// Refused at accept: the cap was reached.
    Refused,
    /// `accept` failed (the kernel's error, EMFILE among them).
    AcceptError,
    /// The request header did not arrive in time (also: nothing came after a response).
    HeaderTimeout,
    /// Nothing was read for the idle timeout.
    IdleTimeout,
}

impl ConnEnd {
    pub const ALL: [ConnEnd; 4] = [
        ConnEnd::Refused,
        ConnEnd::AcceptError,
        ConnEnd::HeaderTimeout,
        ConnEnd::IdleTimeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ConnEnd::Refused => "limit",
            ConnEnd::AcceptError => "accept_error",
            ConnEnd::HeaderTimeout => "header_timeout",
            ConnEnd::IdleTimeout => "idle_timeout",
        }
    }
}

/// A place under the cap, given back when dropped (with the connection's I/O, so that a
/// connection upgraded to a websocket keeps its place as long as it is open).
#[derive(Debug)]
pub struct ConnSlot(Arc<HttpConnections>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

impl HttpConnections {
    /// A listener that keeps at most `max` connections open.
    pub fn new(max: usize, fd_limit: u64) -> Arc<Self> {
        Arc::new(HttpConnections {
            max,
            fd_limit,
            ..HttpConnections::default()
        })
    }

    /// A place for a new connection, or `None` (counted) when `max` are open.
    pub fn try_enter(self: &Arc<Self>) -> Option<ConnSlot> {
        let entered = self
            .open
            .fetch_update(Relaxed, Relaxed, |n| (n < self.max).then_some(n + 1))
            .is_ok();
        if entered {
            Some(ConnSlot(self.clone()))
        } else {
            self.count(ConnEnd::Refused);
            None
        }
    }

    pub fn count(&self, why: ConnEnd) {
        self.counter(why).fetch_add(1, Relaxed);
    }

    fn counter(&self, why: ConnEnd) -> &AtomicU64 {
        match why {
            ConnEnd::Refused => &self.refused,
            ConnEnd::AcceptError => &self.accept_errors,
            ConnEnd::HeaderTimeout => &self.header_timeouts,
            ConnEnd::IdleTimeout => &self.idle_timeouts,
        }
    }

    pub fn ended(&self, why: ConnEnd) -> u64 {
        self.counter(why).load(Relaxed)
    }

    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn fd_limit(&self) -> u64 {
        self.fd_limit
    }
}

/// File descriptors kept free beside the HTTP connections: the broker connection and the
/// framing guard's sockets, the state and history files, webhooks, a registry reload, the
/// metrics listener's connections (at most [`METRICS_MAX_CONNECTIONS`]), the runtime's own
/// (epoll, eventfds, stdio, the journal). An idle service holds 17 (measured).
pub const FD_RESERVE: u64 = 96;

/// Connections the metrics listener keeps open at once (a scraper needs one).
pub const METRICS_MAX_CONNECTIONS: usize = 16;

/// The cap for the main listener: `wanted`, but never more than the fd limit less the reserve
/// (and at least 1, so that a very low limit still serves `/health`).
pub fn connection_cap(wanted: Option<usize>, fd_limit: u64) -> usize {
    let room = usize::try_from(fd_limit.saturating_sub(FD_RESERVE))
        .unwrap_or(usize::MAX)
        .max(1);
    wanted.map_or(room, |w| w.min(room))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_and_places_come_back() {
        let c = HttpConnections::new(2, 1024);
        let a = c.try_enter().unwrap();
        let _b = c.try_enter().unwrap();
        assert!(c.try_enter().is_none());
        assert_eq!((c.open(), c.ended(ConnEnd::Refused)), (2, 1));
        drop(a);
        assert!(c.try_enter().is_some());
    }

    #[test]
    fn the_cap_stays_below_the_fd_limit() {
        assert_eq!(connection_cap(None, 1024), 1024 - 96);
        assert_eq!(connection_cap(Some(100), 1024), 100);
        assert_eq!(connection_cap(Some(5000), 1024), 928);
        assert_eq!(connection_cap(None, 50), 1);
    }
}
