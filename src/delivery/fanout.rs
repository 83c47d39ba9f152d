//! Per-socket delivery with an explicit slow-client policy. Events are serialised once
//! (`RawValue`) and handed to each socket in the target rooms. A socket whose outgoing queue is
//! full is marked slow: from then on, for that socket only, readings are coalesced to the newest
//! pending one per unit (the client sees a `seq` jump and can resume), other events (alerts) are
//! queued in order, and a drain task delivers what is pending as the socket empties its queue.
//! Nobody else waits for a slow socket, and the MQTT task never blocks on one. Every coalesced
//! or dropped delivery is counted by reason. A socket that stays stalled is cut off by the
//! transport (see `transport`), or disconnected here once its queue has room again.

use dashmap::DashMap;
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError, SocketIo};
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::core::stats::Stats;

/// Events (not readings) kept for one slow socket; past this the oldest is dropped and counted.
const MAX_PENDING_EVENTS: usize = 256;

/// A serialised event payload, shared by every socket it goes to.
pub type Json = Arc<RawValue>;

pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Json {
    let raw = serde_json::value::to_raw_value(value).expect("event types serialise");
    Arc::from(raw)
}

#[derive(Debug, Clone, Copy)]
pub struct SlowPolicy {
    /// A socket slow for longer than this is disconnected.
    pub stall_timeout: Duration,
    /// How often pending deliveries are retried.
    pub drain_interval: Duration,
}

#[derive(Clone)]
pub struct Fanout(Arc<Inner>);

struct Inner {
    /// Set once the Socket.io layer exists (it needs the app state, which holds this handle).
    io: OnceLock<SocketIo>,
    stats: Arc<Stats>,
    policy: SlowPolicy,
    slow: DashMap<Sid, SlowSocket>,
}

/// What one slow socket still has to receive.
struct SlowSocket {
    since: Instant,
    /// Newest pending reading per unit, in the order units first became pending.
    readings: Vec<(Arc<str>, Json)>,
    events: VecDeque<(&'static str, Json)>,
    disconnect_tried: bool,
}

impl SlowSocket {
    fn new() -> Self {
        SlowSocket {
            since: Instant::now(),
            readings: Vec::new(),
            events: VecDeque::new(),
            disconnect_tried: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.readings.is_empty() && self.events.is_empty()
    }
}

/// What a delivery is, for the slow-socket policy.
#[derive(Clone, Copy)]
pub enum Kind<'a> {
    /// A reading of this unit: may be coalesced with a newer one of the same unit.
    Reading(&'a Arc<str>),
    /// Anything else (alerts, batches): never coalesced.
    Event,
}

impl Fanout {
    pub fn new(stats: Arc<Stats>, policy: SlowPolicy) -> Self {
        Fanout(Arc::new(Inner {
            io: OnceLock::new(),
            stats,
            policy,
            slow: DashMap::new(),
        }))
    }

    pub fn set_io(&self, io: SocketIo) {
        let _ = self.0.io.set(io);
    }

    /// The default namespace, or `None` before start and after `io.close()` (when `io.to`
    /// would panic).
    pub fn namespace(&self) -> Option<socketioxide::operators::BroadcastOperators> {
        self.0.io.get()?.of("/")
    }

    /// A connected socket by id.
    pub fn socket(&self, sid: Sid) -> Option<SocketRef> {
        self.namespace()?.get_socket(sid)
    }

    /// Delivers `event` once to every socket in any of `rooms`.
    pub fn deliver(&self, rooms: Vec<String>, event: &'static str, json: &Json, kind: Kind<'_>) {
        let Some(ns) = self.namespace() else {
            self.0.stats.delivery_dropped("shutting_down", 1);
            return;
        };
        for socket in ns.to(rooms).sockets() {
            self.send(&socket, event, json, kind);
        }
    }

    /// Delivers to one socket, or queues for it if it is slow.
    pub fn send(&self, s: &SocketRef, event: &'static str, json: &Json, kind: Kind<'_>) {
        if let Some(mut slow) = self.0.slow.get_mut(&s.id) {
            self.queue(&mut slow, event, json, kind);
            return;
        }
        match s.emit(event, &**json) {
            Ok(()) => {}
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                debug!(sid = %s.id, "socket queue full: now slow");
                self.0.stats.slow_sockets_marked();
                let mut slow = self.0.slow.entry(s.id).or_insert_with(SlowSocket::new);
                self.queue(&mut slow, event, json, kind);
            }
            Err(SendError::Socket(SocketError::Closed)) => {
                self.0.stats.delivery_dropped("socket_closed", 1)
            }
            Err(SendError::Serialize(_)) => self.0.stats.delivery_dropped("serialize", 1),
        }
    }

    fn queue(&self, slow: &mut SlowSocket, event: &'static str, json: &Json, kind: Kind<'_>) {
        match kind {
            Kind::Reading(unit) => {
                if let Some(entry) = slow.readings.iter_mut().find(|(u, _)| u == unit) {
                    entry.1 = json.clone();
                    self.0.stats.delivery_dropped("coalesced", 1);
                } else {
                    slow.readings.push((unit.clone(), json.clone()));
                }
            }
            Kind::Event => {
                if slow.events.len() >= MAX_PENDING_EVENTS {
                    slow.events.pop_front();
                    self.0.stats.delivery_dropped("slow_queue_overflow", 1);
                }
                slow.events.push_back((event, json.clone()));
            }
        }
    }

    /// Tells every socket in `room` with `subscription:error` (`json`) and makes it leave the
    /// room. Returns how many sockets there were.
    pub fn evict_room(&self, room: String, json: &Json) -> usize {
        let Some(ns) = self.namespace() else {
            return 0;
        };
        let sockets = ns.to(room.clone()).sockets();
        for s in &sockets {
            self.send(s, "subscription:error", json, Kind::Event);
            s.leave(room.clone());
        }
        sockets.len()
    }

    /// Whether the socket is currently slow (tests and health).
    pub fn slow_sockets(&self) -> usize {
        self.0.slow.len()
    }

    /// Forgets a disconnected socket's pending deliveries (counted as dropped).
    pub fn forget(&self, sid: Sid) {
        if let Some((_, slow)) = self.0.slow.remove(&sid) {
            let n = (slow.readings.len() + slow.events.len()) as u64;
            if n > 0 {
                self.0.stats.delivery_dropped("disconnected_pending", n);
            }
        }
    }

    /// One pass over slow sockets: deliver what fits, disconnect the ones stalled too long.
    pub fn drain(&self) {
        let sids: Vec<Sid> = self.0.slow.iter().map(|e| *e.key()).collect();
        let ns = self.namespace();
        for sid in sids {
            let Some(socket) = ns.as_ref().and_then(|ns| ns.get_socket(sid)) else {
                self.forget(sid);
                continue;
            };
            let Some(mut slow) = self.0.slow.get_mut(&sid) else {
                continue;
            };
            if self.flush(&socket, &mut slow) {
                drop(slow);
                self.0.slow.remove_if(&sid, |_, s| s.is_empty());
                continue;
            }
            if slow.since.elapsed() >= self.0.policy.stall_timeout && !slow.disconnect_tried {
                slow.disconnect_tried = true;
                drop(slow);
                info!(%sid, "socket stalled past the limit: disconnecting");
                self.0.stats.delivery_dropped("stalled_disconnect", 1);
                // Fails while its queue is still full; the transport's write timeout then
                // closes the connection (see transport.rs).
                let _ = socket.disconnect();
            }
        }
    }

    /// Sends pending events then readings; `true` when everything went out.
    fn flush(&self, s: &SocketRef, slow: &mut SlowSocket) -> bool {
        while let Some((event, json)) = slow.events.front() {
            if s.emit(*event, &**json).is_err() {
                return false;
            }
            slow.events.pop_front();
        }
        while let Some((_, json)) = slow.readings.first() {
            if s.emit("sensor:reading", &**json).is_err() {
                return false;
            }
            slow.readings.remove(0);
        }
        true
    }

    /// The drain task: runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.0.policy.drain_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    if !self.0.slow.is_empty() {
                        self.drain();
                    }
                }
            }
        }
    }
}
