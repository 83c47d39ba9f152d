//! Token expiry for connected sockets: one deadline queue and one task for all sockets (a task
//! per socket would cost memory per connection). At its token's `exp` a socket is sent
//! `auth:expired` and disconnected; the handshake's leeway does not apply here, a dashboard is
//! expected to reconnect with a fresh token before then.

use serde_json::json;
use socketioxide::socket::Sid;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::state::Realtime;
use crate::delivery::{to_json, Fanout, Kind, Payload};

/// `(exp, socket)` pairs, earliest first. A socket that left earlier is simply not found.
#[derive(Default)]
pub struct Expiries(Mutex<BinaryHeap<Reverse<(u64, Sid)>>>);

impl Expiries {
    pub fn add(&self, exp: u64, sid: Sid) {
        self.0
            .lock()
            .expect("expiries lock")
            .push(Reverse((exp, sid)));
    }

    /// Removes and returns the sockets whose `exp` is at or before `now`.
    fn due(&self, now: u64) -> Vec<Sid> {
        let mut heap = self.0.lock().expect("expiries lock");
        let mut due = Vec::new();
        while heap.peek().is_some_and(|Reverse((exp, _))| *exp <= now) {
            if let Some(Reverse((_, sid))) = heap.pop() {
                due.push(sid);
            }
        }
        due
    }
}

/// Checks the queue every second until `stop`.
pub async fn run(app: Realtime, fanout: Fanout, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let expired = Payload::Event(to_json(&json!({ "message": "Token expired" })));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for sid in app.expiries.due(jsonwebtoken::get_current_timestamp()) {
            if let Some(socket) = fanout.socket(sid) {
                info!(%sid, "token expired, disconnecting socket");
                app.slow
                    .send(&socket, "auth:expired", &expired, Kind::Event);
                let _ = socket.disconnect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_returns_only_what_has_expired_in_order() {
        let e = Expiries::default();
        let (a, b, c) = (Sid::new(), Sid::new(), Sid::new());
        e.add(30, c);
        e.add(10, a);
        e.add(20, b);
        assert_eq!(e.due(5), vec![]);
        assert_eq!(e.due(20), vec![a, b]);
        assert_eq!(e.due(100), vec![c]);
    }
}
