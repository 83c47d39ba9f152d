//! Which sockets' connections have stopped taking data. A socket is slow when the kernel will
//! not take more of its bytes; its Socket.io queue fills only after that. Broadcasts cannot
//! say which socket's queue overflowed (socketioxide reports only that some did), so the
//! fan-out learns about a slow socket from its connection instead, before its queue is full,
//! and moves it to the per-socket path (see [`super::fanout`]).
//!
//! The transport (`realtime::transport`) gives every TCP connection a [`Flow`] and tells it
//! when a write is pending and when writes make progress again. Once the Socket.io session
//! riding on that connection is known, the flow is bound to its socket id; from then on a
//! stalled write puts the socket id on a queue the fan-out empties before its next delivery.

use dashmap::DashMap;
use socketioxide::socket::Sid;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

/// Shared by every connection and the fan-out. Cheap to clone (one `Arc`).
#[derive(Clone, Default)]
pub struct Congestion(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// Sockets whose connection stalled since the fan-out last looked. Bounded by the number
    /// of connections: a socket is queued again only after its writes made progress.
    stalled: Mutex<Vec<Sid>>,
    /// Set when `stalled` is not empty: one relaxed load per delivery while nothing stalls.
    any: AtomicBool,
    flows: DashMap<Sid, Weak<Flow>>,
}

/// One TCP connection's write progress.
pub struct Flow {
    congestion: Congestion,
    /// The Socket.io session on this connection, once known.
    sid: OnceLock<Sid>,
    /// Milliseconds after `epoch` (plus one) since a write has been pending; 0 while writes go.
    blocked_since_ms: AtomicU64,
    epoch: Instant,
}

impl Congestion {
    /// A flow for a new connection.
    pub fn flow(&self) -> Arc<Flow> {
        Arc::new(Flow {
            congestion: self.clone(),
            sid: OnceLock::new(),
            blocked_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Binds the connection's flow to the socket riding on it (its websocket, or the
    /// connection of its handshake). A socket already bound keeps its first flow.
    pub fn bind(&self, sid: Sid, flow: &Arc<Flow>) {
        if flow.sid.set(sid).is_ok() {
            self.0.flows.insert(sid, Arc::downgrade(flow));
            if flow.is_blocked() {
                self.push(sid);
            }
        }
    }

    /// Forgets a socket that went away.
    pub fn unbind(&self, sid: Sid) {
        self.0.flows.remove(&sid);
    }

    /// Whether the socket's connection has a write pending right now. A socket without a
    /// known connection (long-polling) counts as blocked: nothing says it can take more.
    pub fn is_blocked(&self, sid: Sid) -> bool {
        match self.0.flows.get(&sid).and_then(|w| w.upgrade()) {
            Some(flow) => flow.is_blocked(),
            None => true,
        }
    }

    /// The sockets whose connection stalled since the last call (usually none: one load).
    pub fn take_stalled(&self) -> Vec<Sid> {
        if !self.0.any.swap(false, Relaxed) {
            return Vec::new();
        }
        std::mem::take(&mut *self.0.stalled.lock().expect("congestion lock"))
    }

    fn push(&self, sid: Sid) {
        self.0.stalled.lock().expect("congestion lock").push(sid);
        self.0.any.store(true, Relaxed);
    }
}

impl Flow {
    /// Binds this connection to the socket riding on it (see [`Congestion::bind`]).
    pub fn bind(self: &Arc<Self>, sid: Sid) {
        self.congestion.bind(sid, self);
    }

    /// A write could not be taken by the kernel. The first time in a stretch, the socket on
    /// this connection (if known) is reported as stalled.
    pub fn write_pending(&self) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let first = self
            .blocked_since_ms
            .compare_exchange(0, now, Relaxed, Relaxed)
            .is_ok();
        if first {
            if let Some(sid) = self.sid.get() {
                self.congestion.push(*sid);
            }
        }
    }

    /// A write made progress: the connection takes data again.
    pub fn write_progressed(&self) {
        self.blocked_since_ms.store(0, Relaxed);
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked_since_ms.load(Relaxed) != 0
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        if let Some(sid) = self.sid.get() {
            self.congestion
                .0
                .flows
                .remove_if(sid, |_, w| w.strong_count() == 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_write_reports_the_bound_socket_once_per_stretch() {
        let c = Congestion::default();
        let flow = c.flow();
        let sid = Sid::new();
        flow.write_pending();
        assert!(
            c.take_stalled().is_empty(),
            "not bound yet: nobody to report"
        );
        c.bind(sid, &flow);
        assert_eq!(c.take_stalled(), vec![sid], "bound while blocked: reported");
        assert!(c.is_blocked(sid));
        flow.write_pending();
        assert!(c.take_stalled().is_empty(), "same stretch: reported once");
        flow.write_progressed();
        assert!(!c.is_blocked(sid));
        flow.write_pending();
        assert_eq!(
            c.take_stalled(),
            vec![sid],
            "a new stretch is reported again"
        );
        drop(flow);
        assert!(c.is_blocked(sid), "no connection known: counts as blocked");
    }
}
