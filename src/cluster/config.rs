//! The `[cluster]` section. Without it sensorcast is the single box it always was and needs no
//! Redis; with it, several instances share one feed through Redis or Valkey 7+ (docs/scaling.md).

use serde::Deserialize;
use std::time::Duration;

use crate::core::duration::duration_str;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host[:port][/db]`; `rediss://` (TLS) only in a build with the
    /// `redis` crate's TLS feature (not enabled in Cargo.toml: refused at load, docs/security.md). Standalone Redis or
    /// Valkey 7+ (or the primary of a replicated pair).
    pub redis_url: String,
    /// This instance's name in the cluster: unique per instance, stable across restarts.
    /// Default: the host name and the HTTP port (`host:3000`).
    pub node_id: Option<String>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// How often an instance says it is alive and rebalances units.
    #[serde(with = "duration_str")]
    pub heartbeat: Duration,
    /// An instance not heard from for this long is dead: its units are taken over. It bounds
    /// the failover window (docs/scaling.md).
    #[serde(with = "duration_str")]
    pub node_ttl: Duration,
    /// How long a Redis command may take before Redis counts as unreachable (degraded mode).
    #[serde(with = "duration_str")]
    pub redis_timeout: Duration,
    /// Entries kept in the event stream (approximately): how far behind an instance may fall
    /// and still catch up after a short disconnection from Redis.
    pub stream_max_len: usize,
    /// Messages of units owned elsewhere kept per unit for a takeover (also bounded by time:
    /// three node TTLs).
    pub max_held: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            node_id: None,
            key_prefix: "sensorcast".into(),
            heartbeat: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
            redis_timeout: Duration::from_secs(2),
            stream_max_len: 100_000,
            max_held: 512,
        }
    }
}

impl ClusterConfig {
    /// Checks the section on its own: `Err((key under cluster., message))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, message: &str| Err((key.to_string(), message.to_string()));
        if !(self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://")) {
            return bad(
                "redis_url",
                "expected redis://host[:port] or rediss://host[:port]",
            );
        }
        if let Err(e) = redis::Client::open(self.redis_url.as_str()) {
            return Err(("redis_url".into(), format!("not a Redis URL: {e}")));
        }
        if let Some(id) = &self.node_id {
            if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
                return bad("node_id", "must be 1 to 128 printable characters");
            }
        }
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(char::is_whitespace) {
            return bad("key_prefix", "must be non-empty, without spaces");
        }
        if self.heartbeat < Duration::from_millis(50) {
            return bad("heartbeat", "must be at least 50ms");
        }
        if self.node_ttl < self.heartbeat * 3 {
            return bad("node_ttl", "must be at least three heartbeats");
        }
        if self.redis_timeout.is_zero() {
            return bad("redis_timeout", "must be > 0");
        }
        if self.stream_max_len < 1000 {
            return bad("stream_max_len", "must be at least 1000");
        }
        if self.max_held == 0 {
            return bad("max_held", "must be at least 1");
        }
        Ok(())
    }

    /// How long messages of units owned elsewhere are kept: three node TTLs, enough to notice
    /// a dead owner, take its units over and catch up with the stream.
    pub fn held_window(&self) -> Duration {
        self.node_ttl * 3
    }

    /// The node id: the configured one, or `host:port`.
    pub fn node_id(&self, http_port: u16) -> String {
        if let Some(id) = &self.node_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "sensorcast".into());
        format!("{host}:{http_port}")
    }
}
