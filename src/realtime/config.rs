//! The `[realtime]` section (subscriber guarantees: resume history, the slow-client policy,
//! heartbeats, batching) and the `[limits]` section (what one client or message may cost).

use serde::Deserialize;
use std::time::Duration;

use crate::core::duration::duration_str;

/// The `[limits]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest MQTT payload decoded; larger ones are rejected as `too_large`.
    pub max_payload_bytes: usize,
    /// How many unknown sensors the unmapped list remembers (oldest forgotten first).
    pub unmapped_capacity: usize,
    /// Per-socket outgoing queue, in packets (socketioxide `max_buffer_size`).
    pub socket_buffer: usize,
    /// Largest client → server payload, in bytes.
    pub max_client_payload: u64,
    /// Sockets connected at once; more are refused with `Too many connections`.
    pub max_connections: usize,
    /// Sockets per user (a token's `sub` within its organization); more are refused.
    pub max_connections_per_subject: usize,
    /// Rooms one socket may subscribe to.
    pub max_subscriptions_per_socket: usize,
    /// Client events per second per socket (token bucket rate) ...
    pub event_rate: f64,
    /// ... and burst size. Over the limit: `{ ok: false, error: "Rate limited" }`.
    pub event_burst: f64,
    /// Time a client has, after the transport opened, to send its Socket.io CONNECT.
    #[serde(with = "duration_str")]
    pub handshake_timeout: Duration,
    /// Points in one history answer (`get:history`, `/api/units/{id}/readings`); beyond it the
    /// answer says `truncated: true`.
    pub max_history_points: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_payload_bytes: 64 * 1024,
            unmapped_capacity: 256,
            socket_buffer: 256,
            max_client_payload: 16 * 1024,
            max_connections: 5000,
            max_connections_per_subject: 50,
            max_subscriptions_per_socket: 500,
            event_rate: 20.0,
            event_burst: 60.0,
            handshake_timeout: Duration::from_secs(10),
            max_history_points: 10_000,
        }
    }
}

/// Subscriber guarantees: resume history, the slow-client policy, heartbeats, batching.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealtimeConfig {
    /// Readings kept per unit for `subscribe:unit({ since })` (0 turns resume off).
    pub history_readings: usize,
    /// ... and for how long.
    #[serde(with = "duration_str")]
    pub history_age: Duration,
    /// A socket whose queue stays full (or whose writes make no progress) this long is cut off.
    #[serde(with = "duration_str")]
    pub stall_timeout: Duration,
    /// Kernel send buffer (SO_SNDBUF) per client connection, bytes; 0 = kernel autotuning.
    /// Bounds what a stalled client can pin (autotuning grows it to megabytes).
    pub socket_send_buffer: usize,
    /// How often deliveries pending for slow sockets are retried.
    #[serde(with = "duration_str")]
    pub drain_interval: Duration,
    /// Engine.io heartbeat: a client that does not answer a ping within ping_timeout is gone.
    #[serde(with = "duration_str")]
    pub ping_interval: Duration,
    #[serde(with = "duration_str")]
    pub ping_timeout: Duration,
    /// FreshTrack compatibility: also emit `sensor:readings:batch` per unit every interval.
    pub batch: bool,
    #[serde(with = "duration_str")]
    pub batch_interval: Duration,
    /// Most readings one batch holds per unit; older ones are dropped (counted).
    pub batch_max_readings: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            history_readings: 100,
            history_age: Duration::from_secs(15 * 60),
            stall_timeout: Duration::from_secs(30),
            socket_send_buffer: 64 * 1024,
            drain_interval: Duration::from_millis(100),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            batch: false,
            batch_interval: Duration::from_secs(1),
            batch_max_readings: 1000,
        }
    }
}

impl LimitsConfig {
    /// Checks the section on its own: `Err((key under limits., message))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.unmapped_capacity == 0 || self.socket_buffer == 0 {
            return Err((String::new(), "capacities must be above 0".into()));
        }
        if self.handshake_timeout.is_zero() {
            return Err((
                "handshake_timeout".into(),
                "must be above 0 (every handshake would time out)".into(),
            ));
        }
        if self.max_history_points == 0 || self.max_history_points > 1_000_000 {
            return Err((
                "max_history_points".into(),
                "must be between 1 and 1000000".into(),
            ));
        }
        if self.max_client_payload < 1024 {
            return Err((
                "max_client_payload".into(),
                "must be at least 1024 bytes (a subscribe with resume positions needs a few hundred)"
                    .into(),
            ));
        }
        for (key, n) in [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_subject",
                self.max_connections_per_subject,
            ),
        ] {
            if n == 0 {
                return Err((key.into(), "must be above 0 (nobody could connect)".into()));
            }
        }
        // `inf` and `nan` are valid TOML floats: an infinite rate or burst is no limit at all,
        // and NaN compares false with everything (a bucket that never or always admits).
        if !(self.event_rate.is_finite() && self.event_rate > 0.0) {
            return Err((
                "event_rate".into(),
                "must be a finite number of events per second above 0".into(),
            ));
        }
        if !(self.event_burst.is_finite() && self.event_burst >= 1.0) {
            return Err((
                "event_burst".into(),
                "must be a finite number of events, at least 1".into(),
            ));
        }
        if self.max_payload_bytes == 0 {
            return Err((
                "max_payload_bytes".into(),
                "must be above 0 (every MQTT payload would be rejected as too large)".into(),
            ));
        }
        Ok(())
    }
}

impl RealtimeConfig {
    /// Checks the section on its own: `Err((key under realtime., message))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.ping_interval.is_zero() || self.ping_timeout.is_zero() {
            let key = if self.ping_interval.is_zero() {
                "ping_interval"
            } else {
                "ping_timeout"
            };
            return Err((key.into(), "must be above 0".into()));
        }
        if self.drain_interval.is_zero()
            || self.batch_interval.is_zero()
            || self.stall_timeout.is_zero()
        {
            return Err((
                String::new(),
                "drain_interval, batch_interval and stall_timeout must be above 0".into(),
            ));
        }
        Ok(())
    }
}
