//! The seam between the alert engine and the operator views. `/metrics`
//! (`sensorcast_alerts_open{type,severity}`) and the status page show open alerts and unit
//! states through [`OpenAlerts`]; the engine, once it exists, attaches itself with
//! [`AppState::set_open_alerts`](crate::app::AppState::set_open_alerts). Until then both views
//! say that no alert engine is running, and the status page derives a unit's state from the age
//! of its last reading alone.

use chrono::{DateTime, Utc};
use std::sync::Arc;

/// What the operator views need from the alert engine. Called on every scrape and page load,
/// so implementations should answer from a snapshot, not wait behind readings.
pub trait OpenAlerts: Send + Sync + 'static {
    /// Every open alert, any organization.
    fn open_alerts(&self) -> Vec<OpenAlert>;

    /// The unit's state as the engine sees it (`"ok"`, `"excursion"`, `"alarm"`, ...), or
    /// `None` to let the status page fall back to the age of the last reading.
    fn unit_state(&self, _unit_id: &str) -> Option<&'static str> {
        None
    }
}

/// One open alert, as the operator views show it.
#[derive(Debug, Clone)]
pub struct OpenAlert {
    pub unit_id: Arc<str>,
    pub organization_id: Arc<str>,
    /// `temperature_excursion`, `monitoring_interrupted`, `low_battery`, ...
    pub alert_type: &'static str,
    /// `info`, `warning`, `critical`.
    pub severity: &'static str,
    pub message: String,
    pub triggered_at: DateTime<Utc>,
}
