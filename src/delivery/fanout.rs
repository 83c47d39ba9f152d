//! The broadcast path. Every event goes out as one socketioxide broadcast to the union of its
//! rooms, with the slow sockets excepted (`SLOW_ROOM`): the packet is encoded once and each
//! socket in the rooms gets it once. The slow sockets of those rooms then get it one by one
//! through [`SlowSockets`] (coalesced or queued). Both happen under the slow set's lock, so a
//! socket moving between the paths never gets an event twice or not at all.
//!
//! A socket whose queue is full when a broadcast reaches it loses that one event (socketioxide
//! says that some socket failed, not which); it is counted as `buffer_full`. That happens only
//! when a socket fills its whole queue before its connection reports congestion (see
//! [`super::congestion`]), which moves it to the per-socket path first.
//!
//! This is the one way readings and alerts leave the process: a cluster adapter carries these
//! broadcasts to the other instances.

use futures_util::FutureExt;
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;
use socketioxide::{BroadcastError, SocketError, SocketIo};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::slow::{SlowSockets, SLOW_ROOM};
use super::{Kind, Payload};
use crate::core::stats::Stats;

/// Cheap to clone: a `SocketIo` handle and the slow set's `Arc`.
#[derive(Clone)]
pub struct Fanout {
    io: SocketIo,
    slow: SlowSockets,
}

impl Fanout {
    pub fn new(io: SocketIo, slow: SlowSockets) -> Self {
        Fanout { io, slow }
    }

    pub fn slow(&self) -> &SlowSockets {
        &self.slow
    }

    fn stats(&self) -> &Stats {
        self.slow.stats()
    }

    /// The default namespace, or `None` after `io.close()` (when `io.to` would panic).
    pub fn namespace(&self) -> Option<BroadcastOperators> {
        self.io.of("/")
    }

    /// A connected socket by id.
    pub fn socket(&self, sid: Sid) -> Option<SocketRef> {
        self.namespace()?.get_socket(sid)
    }

    /// Delivers `event` once to every socket in any of `rooms`.
    pub fn deliver<const N: usize>(
        &self,
        rooms: [&'static str; N],
        event: &'static str,
        payload: &Payload,
        kind: Kind<'_>,
    ) {
        let Some(ns) = self.namespace() else {
            self.stats().delivery_dropped("shutting_down", 1);
            return;
        };
        let mut slow = self.slow.lock();
        slow.take_congested(|sid| ns.get_socket(sid));
        let sent = ns.clone().to(rooms).except(SLOW_ROOM).emit(event, payload);
        // The local adapter broadcasts synchronously: the future is ready when first polled.
        match sent.now_or_never() {
            Some(Ok(())) => {}
            Some(Err(e)) => self.count_failures(event, e),
            None => {
                self.stats().delivery_dropped("broadcast_pending", 1);
                warn!(event, "broadcast did not complete at once; dropped");
            }
        }
        if slow.is_empty() {
            return;
        }
        for s in ns.to(rooms).sockets() {
            if slow.is_slow(&s.id) {
                slow.send(&s, event, payload, kind);
            }
        }
    }

    fn count_failures(&self, event: &str, e: BroadcastError) {
        match e {
            BroadcastError::Socket(errors) => {
                for err in errors {
                    let reason = match err {
                        SocketError::InternalChannelFull => "buffer_full",
                        SocketError::Closed => "socket_closed",
                    };
                    self.stats().delivery_dropped(reason, 1);
                }
            }
            other => {
                self.stats().delivery_dropped("broadcast_error", 1);
                warn!(event, error = %other, "broadcast failed");
            }
        }
    }

    /// Tells every socket in `room` with `subscription:error` and makes it leave the room.
    /// Returns how many sockets there were.
    pub fn evict_room(&self, room: String, payload: &Payload) -> usize {
        let Some(ns) = self.namespace() else {
            return 0;
        };
        let sockets = ns.to(room.clone()).sockets();
        let mut slow = self.slow.lock();
        for s in &sockets {
            slow.send(s, "subscription:error", payload, Kind::Event);
            s.leave(room.clone());
        }
        sockets.len()
    }

    /// One pass over slow sockets: deliver what fits, take back to the broadcast path the ones
    /// that are drained and whose connection takes data again, disconnect the ones stalled too
    /// long.
    pub fn drain(&self) {
        let ns = self.namespace();
        let mut slow = self.slow.lock();
        slow.take_congested(|sid| ns.as_ref()?.get_socket(sid));
        let policy = self.slow.policy();
        let sids: Vec<Sid> = slow.map.keys().copied().collect();
        for sid in sids {
            // Not (yet) in the namespace: a socket is marked slow by the connect middleware,
            // before socketioxide adds it. One that goes away is forgotten by its disconnect.
            let Some(socket) = ns.as_ref().and_then(|ns| ns.get_socket(sid)) else {
                continue;
            };
            if slow.flush(&socket) {
                if !self.slow.congestion().is_blocked(sid) {
                    slow.unmark(&socket);
                }
                continue;
            }
            let Some(entry) = slow.map.get_mut(&sid) else {
                continue;
            };
            if entry.since.elapsed() >= policy.stall_timeout && !entry.disconnect_tried {
                entry.disconnect_tried = true;
                info!(%sid, "socket stalled past the limit: disconnecting");
                self.stats().delivery_dropped("stalled_disconnect", 1);
                // Fails while its queue is still full; the transport's write timeout then
                // closes the connection (see realtime::transport).
                let _ = socket.clone().disconnect();
            }
        }
    }

    /// The drain task: runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.slow.policy().drain_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.drain(),
            }
        }
    }
}
