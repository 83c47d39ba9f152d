//! The alert engine in cluster mode (see docs/scaling.md). Units are partitioned over the live
//! instances: each instance's engine holds only the units it owns ([`Alerts::own`],
//! [`Alerts::release`]), and commits every change of a unit's state together with the events it
//! caused through a [`ClusterSink`] (Redis: one atomic script per unit, refused when this
//! instance no longer owns the unit), so an instance that takes a unit over continues from the
//! state the last owner committed: an alert is neither forgotten nor raised twice, and its
//! timers fire on the new owner. Webhooks are called only once a commit went through.
//!
//! Every instance sees every unit's state and open alerts through the owners' commits
//! ([`ClusterView`], fed by [`Alerts::apply_snapshot`]), so `get:alerts` and the status page
//! show the whole organization wherever a socket is; an `alert:ack` for a unit owned elsewhere
//! is forwarded to its owner ([`AckForward`]).

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use tracing::warn;

use super::unit::{Out, Track};
use super::webhook::Webhooks;
use super::{AckError, Alert, Alerts, Command, UnitState, View};

/// One unit's commit: its state as the engine holds it now (`None`: unchanged) and the events
/// that came with the change, in order.
pub struct UnitCommit {
    pub unit: Arc<str>,
    pub track: Option<String>,
    pub events: Vec<Out>,
}

/// Where the engine commits in cluster mode (implemented by the cluster layer).
pub trait ClusterSink: Send + Sync {
    /// Commits each unit's state and events; once a unit's commit went through, its events go
    /// to `hooks`. Never waits (queued). `done`, if any, hears `true` once every commit went
    /// through, `false` if one did not (fenced, failed, or delivered here in degraded mode).
    fn commit(
        &self,
        commits: Vec<UnitCommit>,
        hooks: Webhooks,
        done: Option<tokio::sync::oneshot::Sender<bool>>,
    );
}

/// A boxed future, for the trait objects below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Hands an acknowledgement to the instance that owns the alert's unit.
pub trait AckForward: Send + Sync {
    fn forward<'a>(
        &'a self,
        alert_id: &'a str,
        by: &'a str,
        comment: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Alert, AckError>>;
}

/// A unit's shown state and open alerts.
type UnitView = (UnitState, Vec<Alert>);

/// Every unit's shown state and open alerts as last committed by its owner.
#[derive(Default)]
pub struct ClusterView {
    units: Mutex<BTreeMap<Arc<str>, UnitView>>,
    forward: OnceLock<Arc<dyn AckForward>>,
}

impl ClusterView {
    pub(super) fn forward(&self) -> Option<&Arc<dyn AckForward>> {
        self.forward.get()
    }
}

impl Alerts {
    /// Whether this engine runs in cluster mode.
    pub fn is_cluster(&self) -> bool {
        self.0.cluster.is_some()
    }

    /// Cluster mode: this instance owns `unit` from now on. `track`: the state its previous
    /// owner committed (JSON); `last_at`: when its last reading was received.
    pub async fn own(&self, unit: Arc<str>, track: Option<String>, last_at: Option<DateTime<Utc>>) {
        self.send(Command::Own {
            unit,
            track,
            last_at,
        })
        .await
    }

    /// Cluster mode: `unit` belongs to another instance now; its timers stop here.
    pub async fn release(&self, unit: Arc<str>) {
        self.send(Command::Release { unit }).await
    }

    /// Cluster mode: commit every held unit's state again (Redis lost what it kept).
    pub async fn touch_all(&self) {
        self.send(Command::TouchAll).await
    }

    /// Cluster mode: where acknowledgements of alerts owned elsewhere go.
    pub fn set_forward(&self, forward: Arc<dyn AckForward>) {
        if let Some(c) = &self.0.cluster {
            let _ = c.forward.set(forward);
        }
    }

    /// Cluster mode: `unit`'s state as its owner committed it (`None`: the unit is gone). The
    /// view `get:alerts` reads is rebuilt from these.
    pub fn apply_snapshot(&self, unit: &Arc<str>, track: Option<&str>) {
        let Some(c) = &self.0.cluster else {
            return;
        };
        let parsed = match track.map(serde_json::from_str::<Track>) {
            None => None,
            Some(Ok(t)) => Some((t.shown, t.alerts)),
            Some(Err(e)) => {
                warn!(unit = %unit, error = %e, "unit state from the cluster not readable; ignored");
                return;
            }
        };
        let mut units = c.units.lock().expect("cluster view");
        match parsed {
            Some(entry) => {
                units.insert(unit.clone(), entry);
            }
            None => {
                units.remove(unit);
            }
        }
        let mut alerts: Vec<Alert> = units.values().flat_map(|(_, a)| a.clone()).collect();
        alerts.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
        let states = units.iter().map(|(u, (s, _))| (u.clone(), *s)).collect();
        drop(units);
        *self.0.view.write().expect("alert view") = Arc::new(View { alerts, states });
    }
}

/// Reads a committed state (a bad one is logged and ignored: the unit starts afresh).
pub(super) fn parse_track(unit: &str, json: &str) -> Option<Track> {
    serde_json::from_str(json)
        .map_err(|e| warn!(unit, error = %e, "committed unit state not readable; starting afresh"))
        .ok()
}
