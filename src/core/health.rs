//! Health shared across layers: the MQTT edge writes [`MqttHealth`] and the service writes
//! [`ReloadStatus`]; `/health`, `/metrics`, the status page and systemd's STATUS line read them.
//! Plain atomics and short-held locks: nothing here waits.
//!
//! It also holds the reconnect-loop breaker's evidence: a connection that fails the same way
//! soon after every reconnect (a message the client cannot take, another instance with our
//! client id) looks alive from outside, connected most of the time, so it must be named:
//! [`MqttHealth::reconnect_loop`].

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A connection that lasted this long was healthy: it ends a streak of repeated errors (and
/// the ingest loop's backoff starts again from its minimum).
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
/// This many connections in a row ending with the same error, each soon after it was made,
/// is a reconnect loop.
pub const LOOP_AFTER: u64 = 3;

/// What the rest of the service may ask about the broker connection.
pub struct MqttHealth {
    pub connected: AtomicBool,
    /// Every configured subscription is acknowledged (SUBACK in this process) in the current
    /// session: what readiness (`/health/ready`, systemd READY) waits for.
    pub subscribed: AtomicBool,
    pub reconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
    created: Instant,
    /// Milliseconds after `created` when the message being handled entered the pipeline;
    /// 0 while the loop waits for the broker.
    busy_since_ms: AtomicU64,
    history: Mutex<History>,
}

/// Connection history: the current connection's age and the streak of repeated errors.
#[derive(Default)]
struct History {
    connected_at: Option<Instant>,
    streak: Option<Streak>,
    /// Failures by kind (`sensorcast_mqtt_connection_errors_total`).
    by_kind: BTreeMap<&'static str, u64>,
}

/// Consecutive failures with the same error message.
struct Streak {
    error: String,
    repeats: u64,
    /// The last of them ended an established connection (not a connect attempt).
    after_connect: bool,
}

/// What [`MqttHealth::connection_failed`] found, for the ingest loop's log and backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// How long the connection that failed had been up; `None` for a failed connect.
    pub lived: Option<Duration>,
    /// How many failures in a row ended with this error (1: a new one).
    pub repeats: u64,
    /// This failure made the streak a reconnect loop.
    pub loop_started: bool,
}

impl Default for MqttHealth {
    fn default() -> Self {
        MqttHealth {
            connected: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            last_error: Mutex::new(None),
            created: Instant::now(),
            busy_since_ms: AtomicU64::new(0),
            history: Mutex::default(),
        }
    }
}

impl MqttHealth {
    pub fn busy(&self, busy: bool) {
        let ms = if busy {
            self.created.elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        self.busy_since_ms.store(ms, Relaxed);
    }

    /// How long the message in hand has been in the pipeline (zero while the loop waits for
    /// the broker): a pipeline stuck on one message is what the watchdog must catch.
    pub fn stuck_for(&self) -> Duration {
        match self.busy_since_ms.load(Relaxed) {
            0 => Duration::ZERO,
            since => {
                let now = self.created.elapsed().as_millis() as u64 + 1;
                Duration::from_millis(now.saturating_sub(since))
            }
        }
    }

    pub fn ready(&self) -> bool {
        self.connected.load(Relaxed) && self.subscribed.load(Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("health lock").clone()
    }

    pub fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().expect("health lock") = e;
    }

    /// The broker accepted a connection (CONNACK): connected, no error. A streak of failed
    /// connects ends here; a streak of lost connections only once this one proves stable.
    pub fn connection_made(&self) {
        self.connection_made_at(Instant::now());
    }

    fn connection_made_at(&self, now: Instant) {
        self.connected.store(true, Relaxed);
        self.set_error(None);
        let mut h = self.history.lock().expect("health lock");
        h.connected_at = Some(now);
        if h.streak.as_ref().is_some_and(|s| !s.after_connect) {
            h.streak = None;
        }
    }

    /// The connection (or the attempt to make one) failed with `error`, of kind `kind`.
    pub fn connection_failed(&self, error: &str, kind: &'static str) -> Failure {
        self.connection_failed_at(error, kind, Instant::now())
    }

    fn connection_failed_at(&self, error: &str, kind: &'static str, now: Instant) -> Failure {
        let was_connected = self.connected.swap(false, Relaxed);
        self.subscribed.store(false, Relaxed);
        if was_connected {
            self.reconnects.fetch_add(1, Relaxed);
        }
        self.set_error(Some(error.to_string()));
        let mut h = self.history.lock().expect("health lock");
        *h.by_kind.entry(kind).or_default() += 1;
        let lived = h.connected_at.take().map(|at| now.duration_since(at));
        let established = lived.is_some();
        let stable = lived.is_some_and(|l| l >= STABLE_AFTER);
        let was_loop = h.streak.as_ref().is_some_and(Streak::is_loop);
        match &mut h.streak {
            Some(s) if s.error == error && !stable => {
                s.repeats += 1;
                s.after_connect = established;
            }
            streak => {
                *streak = Some(Streak {
                    error: error.to_string(),
                    repeats: 1,
                    after_connect: established,
                })
            }
        }
        let streak = h.streak.as_ref().expect("just set");
        Failure {
            lived,
            repeats: streak.repeats,
            loop_started: streak.is_loop() && !was_loop,
        }
    }

    /// How many failures in a row ended with the same error; 0 once the current connection
    /// has been up for [`STABLE_AFTER`].
    pub fn error_repeats(&self) -> u64 {
        self.error_repeats_at(Instant::now())
    }

    fn error_repeats_at(&self, now: Instant) -> u64 {
        let h = self.history.lock().expect("health lock");
        match &h.streak {
            Some(s) if !h.stable_at(now) => s.repeats,
            _ => 0,
        }
    }

    /// `(error, repeats)` while connections keep ending with the same error soon after they
    /// are made ([`LOOP_AFTER`] or more in a row, and none has been up [`STABLE_AFTER`] since).
    pub fn reconnect_loop(&self) -> Option<(String, u64)> {
        self.reconnect_loop_at(Instant::now())
    }

    fn reconnect_loop_at(&self, now: Instant) -> Option<(String, u64)> {
        let h = self.history.lock().expect("health lock");
        match &h.streak {
            Some(s) if s.is_loop() && !h.stable_at(now) => Some((s.error.clone(), s.repeats)),
            _ => None,
        }
    }

    /// Connection failures so far, by kind.
    pub fn errors_by_kind(&self) -> Vec<(&'static str, u64)> {
        let h = self.history.lock().expect("health lock");
        h.by_kind.iter().map(|(k, n)| (*k, *n)).collect()
    }
}

impl History {
    fn stable_at(&self, now: Instant) -> bool {
        self.connected_at
            .is_some_and(|at| now.duration_since(at) >= STABLE_AFTER)
    }
}

impl Streak {
    fn is_loop(&self) -> bool {
        self.after_connect && self.repeats >= LOOP_AFTER
    }
}

/// What `/health` shows about the last reload.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    pub attempts: u64,
    pub last_at: Option<String>,
    pub ok: Option<bool>,
    pub error: Option<String>,
}

/// The outcome of every reload so far, for `/health` (`checks.reload`).
#[derive(Default)]
pub struct ReloadLog(Mutex<ReloadStatus>);

impl ReloadLog {
    pub fn status(&self) -> ReloadStatus {
        self.0.lock().expect("reload status lock").clone()
    }

    /// Records one attempt: `Err` carries why the files were refused.
    pub fn record(&self, result: Result<(), &str>) {
        let mut status = self.0.lock().expect("reload status lock");
        status.attempts += 1;
        status.last_at = Some(super::reading::now_rfc3339());
        status.ok = Some(result.is_ok());
        status.error = result.err().map(str::to_string);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOON: Duration = Duration::from_millis(200);

    #[test]
    fn connections_lost_the_same_way_soon_after_each_connect_are_a_loop() {
        let h = MqttHealth::default();
        let mut now = Instant::now();
        let mut started = Vec::new();
        for _ in 0..4 {
            h.connection_made_at(now);
            now += SOON;
            started.push(
                h.connection_failed_at("closed by peer", "closed", now)
                    .loop_started,
            );
            now += SOON;
        }
        assert_eq!(started, [false, false, true, false]);
        assert_eq!(h.reconnect_loop_at(now), Some(("closed by peer".into(), 4)));
        assert_eq!(h.error_repeats_at(now), 4);
        assert_eq!(h.reconnects.load(Relaxed), 4);
        assert_eq!(h.errors_by_kind(), [("closed", 4)]);
        // Connected again: still a loop until the connection has held.
        h.connection_made_at(now);
        assert!(h.reconnect_loop_at(now + SOON).is_some());
        assert_eq!(h.reconnect_loop_at(now + STABLE_AFTER), None);
        assert_eq!(h.error_repeats_at(now + STABLE_AFTER), 0);
        // A stable connection that is lost starts a new streak.
        let f = h.connection_failed_at("closed by peer", "closed", now + STABLE_AFTER);
        assert_eq!((f.repeats, f.lived), (1, Some(STABLE_AFTER)));
    }

    #[test]
    fn failed_connects_count_repeats_but_are_no_loop_and_end_at_a_connect() {
        let h = MqttHealth::default();
        let now = Instant::now();
        for i in 1..=5 {
            let f = h.connection_failed_at("refused", "refused", now);
            assert_eq!((f.repeats, f.lived, f.loop_started), (i, None, false));
        }
        assert_eq!(h.error_repeats_at(now), 5);
        assert_eq!(h.reconnect_loop_at(now), None);
        assert_eq!(h.reconnects.load(Relaxed), 0);
        h.connection_made_at(now);
        assert_eq!(h.error_repeats_at(now), 0);
        // Another error starts another streak.
        h.connection_failed_at("reset", "io", now + SOON);
        assert_eq!(h.connection_failed_at("refused", "refused", now).repeats, 1);
    }
}
