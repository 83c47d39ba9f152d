//! The `[metrics]` and `[status]` sections.

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

use crate::core::duration::duration_str;

/// `GET /metrics` (Prometheus text) on a listener of its own, loopback by default: no token,
/// and not reachable from outside the box unless the installer says so.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9464".parse().expect("static address"),
        }
    }
}

/// The status page (`GET /`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// A unit whose last reading is older than this is shown as `stale` (while no alert engine
    /// says otherwise).
    #[serde(with = "duration_str")]
    pub stale_after: Duration,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            stale_after: Duration::from_secs(15 * 60),
        }
    }
}
