//! The per-socket path: sockets that cannot take a broadcast right now, and what each one still
//! has to receive. A socket is on this path while its connection is congested, while it is on
//! HTTP long-polling (its queue drains only when it polls), or while deliveries are pending for
//! it. For such a socket, readings are coalesced to the newest pending one per unit (the client
//! sees a `seq` jump and can resume), other events (alerts) queue in order, and the drain pass
//! of [`super::fanout`] delivers what is pending as the socket empties its queue. Nobody else
//! waits for a slow socket, and the MQTT task never blocks on one.
//!
//! Every change of this set happens under one lock, which a delivery also holds while it
//! broadcasts and serves the slow sockets: a socket therefore gets each event exactly once,
//! by the broadcast or from here, however its state changes between two deliveries.

use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::debug;

use super::congestion::Congestion;
use super::{Kind, Payload};
use crate::core::stats::Stats;

/// The room slow sockets are in, excepted from every broadcast. Registry ids cannot contain
/// `:`, and every other room starts with `org:`, so no room of the registry can be named so.
pub const SLOW_ROOM: &str = "sensorcast:slow";

/// Events (not readings) kept for one slow socket; past this the oldest is dropped and counted.
pub const MAX_PENDING_EVENTS: usize = 256;

#[derive(Debug, Clone, Copy)]
pub struct SlowPolicy {
    /// A socket slow for longer than this is disconnected.
    pub stall_timeout: Duration,
    /// How often pending deliveries are retried.
    pub drain_interval: Duration,
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct SlowSockets(Arc<Inner>);

struct Inner {
    stats: Arc<Stats>,
    policy: SlowPolicy,
    congestion: Congestion,
    slow: Mutex<HashMap<Sid, SlowSocket>>,
}

/// What one slow socket still has to receive.
pub(super) struct SlowSocket {
    pub(super) since: Instant,
    /// Newest pending reading per unit, in the order units first became pending.
    readings: Vec<(Arc<str>, Payload)>,
    events: VecDeque<(&'static str, Payload)>,
    pub(super) disconnect_tried: bool,
    /// Marked because it could not keep up (not merely because it is on long-polling).
    congested: bool,
}

/// Why a socket is put on the per-socket path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its connection stopped taking data, or its queue was full.
    Congested,
    /// HTTP long-polling: its queue drains only when it polls, and nothing tells when.
    Polling,
}

impl SlowSocket {
    fn new() -> Self {
        SlowSocket {
            since: Instant::now(),
            readings: Vec::new(),
            events: VecDeque::new(),
            disconnect_tried: false,
            congested: false,
        }
    }

    fn pending(&self) -> u64 {
        (self.readings.len() + self.events.len()) as u64
    }
}

/// The slow set, locked: what a delivery holds while it broadcasts and serves slow sockets.
pub struct Locked<'a> {
    owner: &'a SlowSockets,
    pub(super) map: MutexGuard<'a, HashMap<Sid, SlowSocket>>,
}

impl SlowSockets {
    pub fn new(stats: Arc<Stats>, policy: SlowPolicy, congestion: Congestion) -> Self {
        SlowSockets(Arc::new(Inner {
            stats,
            policy,
            congestion,
            slow: Mutex::new(HashMap::new()),
        }))
    }

    pub fn stats(&self) -> &Stats {
        &self.0.stats
    }

    pub fn policy(&self) -> SlowPolicy {
        self.0.policy
    }

    pub fn congestion(&self) -> &Congestion {
        &self.0.congestion
    }

    /// Takes the lock every change of the slow set and every delivery happens under.
    pub fn lock(&self) -> Locked<'_> {
        Locked {
            owner: self,
            map: self.0.slow.lock().expect("slow sockets lock"),
        }
    }

    /// Delivers to one socket, or queues for it if it is slow.
    pub fn send(&self, s: &SocketRef, event: &'static str, payload: &Payload, kind: Kind<'_>) {
        self.lock().send(s, event, payload, kind);
    }

    /// Puts a socket on the per-socket path.
    pub fn mark(&self, s: &SocketRef, why: Why) {
        self.lock().mark(s, why);
    }

    /// How many sockets cannot keep up right now (health, metrics); sockets on the per-socket
    /// path only because they are on long-polling are not counted.
    pub fn count(&self) -> usize {
        self.lock().map.values().filter(|s| s.congested).count()
    }

    /// Forgets a disconnected socket's pending deliveries (counted as dropped).
    pub fn forget(&self, sid: Sid) {
        self.0.congestion.unbind(sid);
        if let Some(slow) = self.lock().map.remove(&sid) {
            if slow.pending() > 0 {
                self.0
                    .stats
                    .delivery_dropped("disconnected_pending", slow.pending());
            }
        }
    }
}

impl Locked<'_> {
    fn stats(&self) -> &Stats {
        &self.owner.0.stats
    }

    pub fn is_slow(&self, sid: &Sid) -> bool {
        self.map.contains_key(sid)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Moves sockets whose connection stalled since the last delivery to the per-socket path.
    pub fn take_congested(&mut self, socket: impl Fn(Sid) -> Option<SocketRef>) {
        for sid in self.owner.0.congestion.take_stalled() {
            if let Some(s) = socket(sid) {
                self.mark(&s, Why::Congested);
            }
        }
    }

    /// Puts `s` on the per-socket path: out of every broadcast from the next one on.
    pub fn mark(&mut self, s: &SocketRef, why: Why) {
        let stats = self.owner.0.stats.clone();
        let slow = self.map.entry(s.id).or_insert_with(|| {
            s.join(SLOW_ROOM);
            SlowSocket::new()
        });
        if why == Why::Congested && !slow.congested {
            debug!(sid = %s.id, "socket slow: per-socket delivery");
            stats.slow_sockets_marked();
            slow.congested = true;
        }
    }

    /// Takes `s` back to the broadcast path (its pending deliveries are all out).
    pub(super) fn unmark(&mut self, s: &SocketRef) {
        if self.map.remove(&s.id).is_some() {
            s.leave(SLOW_ROOM);
        }
    }

    /// Delivers to one socket: straight into its queue unless deliveries are already pending
    /// for it (they go first), and pending when its queue is full.
    pub fn send(&mut self, s: &SocketRef, event: &'static str, payload: &Payload, kind: Kind<'_>) {
        if let Some(slow) = self.map.get_mut(&s.id).filter(|slow| slow.pending() > 0) {
            queue(&self.owner.0.stats, slow, event, payload, kind);
            return;
        }
        match s.emit(event, payload) {
            Ok(()) => {}
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                self.mark(s, Why::Congested);
                if let Some(slow) = self.map.get_mut(&s.id) {
                    queue(&self.owner.0.stats, slow, event, payload, kind);
                }
            }
            Err(SendError::Socket(SocketError::Closed)) => {
                self.stats().delivery_dropped("socket_closed", 1)
            }
            Err(SendError::Serialize(_)) => self.stats().delivery_dropped("serialize", 1),
        }
    }

    /// Sends what is pending for `s`, events then readings; `true` when everything went out.
    pub(super) fn flush(&mut self, s: &SocketRef) -> bool {
        let Some(slow) = self.map.get_mut(&s.id) else {
            return true;
        };
        while let Some((event, payload)) = slow.events.front() {
            if s.emit(*event, payload).is_err() {
                return false;
            }
            slow.events.pop_front();
        }
        while let Some((_, payload)) = slow.readings.first() {
            if s.emit("sensor:reading", payload).is_err() {
                return false;
            }
            slow.readings.remove(0);
        }
        // Caught up: the stall clock starts again from the next delivery that cannot go out.
        slow.since = Instant::now();
        true
    }
}

fn queue(stats: &Stats, slow: &mut SlowSocket, event: &'static str, p: &Payload, kind: Kind<'_>) {
    match kind {
        Kind::Reading(unit) => {
            if let Some(entry) = slow.readings.iter_mut().find(|(u, _)| u == unit) {
                entry.1 = p.clone();
                stats.delivery_dropped("coalesced", 1);
            } else {
                slow.readings.push((unit.clone(), p.clone()));
            }
        }
        Kind::Event => {
            if slow.events.len() >= MAX_PENDING_EVENTS {
                slow.events.pop_front();
                stats.delivery_dropped("slow_queue_overflow", 1);
            }
            slow.events.push_back((event, p.clone()));
        }
    }
}
