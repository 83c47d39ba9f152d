//! The alert engine: turns readings, door states, device availability and the passing of time
//! into unit states and alerts (`temperature_excursion`, `humidity_excursion`, `door_open`,
//! `monitoring_interrupted`, `low_battery`), announces
//! them to the organization's Socket.io rooms and to webhooks, and keeps them across restarts.
//! A freezer drifting warm is why the product exists: the alert must reach every dashboard of
//! the organization within a second, escalate even if the sensor then goes quiet, not flap on a
//! noisy reading, and neither be forgotten nor fired twice because the box rebooted.
//!
//! Layout (docs/alerts.md has the behaviour):
//! - [`rules`]: rule keys on registry entries and `[alerts]`, inheritance, validation.
//! - [`model`]: states, alert types, the open [`Alert`], event payloads, alert ids.
//! - `unit`: one unit's state and transitions (pure), with `judge` (a reading's temperature,
//!   humidity and battery), `door` (door contacts and `door_open`) and `lifecycle` (opening,
//!   escalating, resolving its alerts).
//! - [`machine`]: every unit plus the deadline queue (pure: time is an argument).
//! - [`engine`]: the task that owns the machine; [`store`] and [`webhook`] are its outputs.
//! - [`cluster`]: cluster mode, where each instance evaluates the units it owns, keeps their
//!   state in Redis instead of the state file, and forwards acknowledgements to the owner.
//!
//! The client events (`alert:ack`, `get:alerts`) are Socket.io handlers, in `realtime::alerts`.
//! [`Alerts`] is the cheap-clone handle the pipeline and socket handlers hold: a sender into the
//! engine's input queue plus a read-only view of the open alerts, replaced by the engine after
//! every change so that `get:alerts` never waits behind readings.

pub mod cluster;
mod door;
pub mod engine;
mod judge;
mod lifecycle;
pub mod machine;
pub mod model;
mod report;
pub mod rules;
pub mod store;
mod unit;
pub mod webhook;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

pub use engine::{Clock, Engine, Outlets};
pub use machine::AckError;
pub use model::{Alert, AlertType, Event, Severity, UnitState};
pub use rules::{AlertsConfig, RuleBook, RuleError, RuleSet};
pub use unit::{Out, Report};

use crate::core::reading::SensorReading;
use crate::core::registry::Registry;
use machine::Machine;
use store::StoreHealth;
use webhook::WebhookStats;

/// Commands waiting for the engine. When the queue is full, senders wait: the MQTT pipeline
/// is then held back (and with it the broker's QoS 1 acks), which is better than judging
/// temperatures without some of the readings, or losing the one that crossed the line.
pub const INPUT_QUEUE: usize = 1024;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct Alerts(Arc<Shared>);

pub(crate) enum Command {
    Report {
        unit: Arc<str>,
        sensor: Arc<str>,
        report: Report,
        /// `None`: a live report, judged as of now. `Some(t)`: a broker's retained copy
        /// measured at `t` (see [`Alerts::retained_report`]).
        measured_at: Option<DateTime<Utc>>,
    },
    Availability {
        unit: Arc<str>,
        sensor: String,
        online: bool,
    },
    Ack {
        alert_id: String,
        by: String,
        comment: Option<String>,
        reply: oneshot::Sender<Result<(Alert, Stored), AckError>>,
    },
    Reload {
        book: RuleBook,
        reply: oneshot::Sender<()>,
    },
    /// Cluster mode: this instance owns `unit` now (see [`cluster`]).
    Own {
        unit: Arc<str>,
        track: Option<String>,
        last_at: Option<DateTime<Utc>>,
    },
    /// Cluster mode: `unit` belongs to another instance now.
    Release { unit: Arc<str> },
    /// Cluster mode: write every held unit's state again.
    TouchAll,
}

/// Longest an acknowledgement waits to be stored before it is answered "not stored".
pub const ACK_STORE_LIMIT: Duration = Duration::from_secs(5);

/// Where an acknowledgement's storage is awaited, handed back by the engine with the alert.
pub(crate) enum Stored {
    /// A snapshot holding it is written to the state file (fsync'd, renamed, synced).
    File(store::Durable),
    /// Cluster mode: its unit's commit to Redis went through (`true`) or did not.
    Redis(oneshot::Receiver<bool>),
    /// No state file (tests that run the engine without outlets).
    Nowhere,
}

impl Stored {
    async fn wait(self, limit: Duration) -> bool {
        match self {
            Stored::File(d) => d.wait(limit).await,
            Stored::Redis(rx) => matches!(tokio::time::timeout(limit, rx).await, Ok(Ok(true))),
            Stored::Nowhere => true,
        }
    }
}

/// What the handle shares with the engine task.
pub(crate) struct Shared {
    tx: mpsc::Sender<Command>,
    defaults: RuleSet,
    /// Open alerts and unit states as of the engine's last change. A std lock, held only to
    /// swap or clone the `Arc`, never across an await.
    view: RwLock<Arc<View>>,
    store: Arc<StoreHealth>,
    webhooks: Arc<WebhookStats>,
    triggered: AtomicU64,
    escalated: AtomicU64,
    resolved: AtomicU64,
    acknowledged: AtomicU64,
    /// Acknowledgements answered "not stored" (the store did not get them in time).
    acks_not_stored: AtomicU64,
    state_changes: AtomicU64,
    /// Cluster mode: every unit's state and open alerts as the owners last committed them
    /// (the view is built from this instead of the engine's own units).
    cluster: Option<cluster::ClusterView>,
}

/// A snapshot of the engine's state for readers.
#[derive(Debug, Default)]
pub struct View {
    pub alerts: Vec<Alert>,
    pub states: BTreeMap<Arc<str>, UnitState>,
}

impl Shared {
    fn set_view(&self, alerts: Vec<Alert>, states: BTreeMap<Arc<str>, UnitState>) {
        if self.cluster.is_some() {
            return; // the owners' commits build the view (cluster::ClusterView)
        }
        *self.view.write().expect("alert view") = Arc::new(View { alerts, states });
    }

    fn count(&self, event: &Event) {
        let c = match event {
            Event::StateChanged(_) => &self.state_changes,
            Event::Triggered(_) => &self.triggered,
            Event::Escalated(_) => &self.escalated,
            Event::Resolved(_) => &self.resolved,
            Event::Acknowledged(_) => &self.acknowledged,
        };
        c.fetch_add(1, Relaxed);
    }
}

impl Alerts {
    /// Builds the engine from the rules of `registry` and the state file in `state_dir` (a
    /// small synchronous read, once at start). Start it with [`Engine::run`].
    pub fn new(
        config: &AlertsConfig,
        state_dir: &Path,
        registry: &Registry,
        clock: Clock,
    ) -> Result<(Alerts, Engine), RuleError> {
        let defaults = config.defaults();
        let book = RuleBook::build(registry, &defaults)?;
        let store = Arc::new(StoreHealth::default());
        let saved = store::load(state_dir, &store);
        let resumed = saved.is_some();
        let grace = if resumed {
            config.resume_grace
        } else {
            Duration::ZERO
        };
        let now = clock.now();
        let (machine, pending) = Machine::resume(book, saved, now, grace, fastrand::Rng::new());
        info!(
            resumed,
            open_alerts = machine.open_alerts().len(),
            dir = %state_dir.display(),
            "alert engine ready"
        );
        Ok(Self::assemble(
            config, state_dir, clock, machine, pending, store, defaults, None,
        ))
    }

    /// Cluster mode: an engine that holds no unit until the cluster gives it one (see
    /// [`cluster`]), with no state file.
    pub fn new_cluster(
        config: &AlertsConfig,
        registry: &Registry,
        clock: Clock,
    ) -> Result<(Alerts, Engine), RuleError> {
        let defaults = config.defaults();
        let book = RuleBook::build(registry, &defaults)?;
        let machine = Machine::partial(book, clock.now(), fastrand::Rng::new());
        let store = Arc::new(StoreHealth::default());
        let view = Some(cluster::ClusterView::default());
        let dir = Path::new("");
        Ok(Self::assemble(
            config,
            dir,
            clock,
            machine,
            Vec::new(),
            store,
            defaults,
            view,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        config: &AlertsConfig,
        state_dir: &Path,
        clock: Clock,
        machine: Machine,
        pending: Vec<Out>,
        store: Arc<StoreHealth>,
        defaults: RuleSet,
        cluster: Option<cluster::ClusterView>,
    ) -> (Alerts, Engine) {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let shared = Arc::new(Shared {
            tx,
            defaults,
            view: RwLock::default(),
            store,
            webhooks: Arc::default(),
            triggered: AtomicU64::new(0),
            escalated: AtomicU64::new(0),
            resolved: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            acks_not_stored: AtomicU64::new(0),
            state_changes: AtomicU64::new(0),
            cluster,
        });
        shared.set_view(machine.open_alerts(), machine.states());
        let engine = Engine {
            machine,
            rx,
            shared: shared.clone(),
            clock,
            config: config.clone(),
            state_dir: state_dir.to_path_buf(),
            pending,
        };
        (Alerts(shared), engine)
    }

    /// Hands a mapped live reading (its temperature, humidity and battery) to the engine;
    /// waits while the input queue is full.
    pub async fn reading(&self, r: &SensorReading) {
        let report = Report {
            temperature: Some(r.temperature),
            humidity: r.humidity,
            battery: r.battery,
            door_open: None,
        };
        self.report(r.unit_id.clone(), r.device_id.clone(), report)
            .await
    }

    /// Hands the engine a broker's retained copy of what `sensor` said about `unit`, whose
    /// payload said it was measured at `measured_at`: evidence that the sensor was alive then,
    /// not now (a copy without a time of its own is not handed over at all). See
    /// docs/alerts.md.
    pub async fn retained_report(
        &self,
        unit: Arc<str>,
        sensor: Arc<str>,
        report: Report,
        measured_at: DateTime<Utc>,
    ) {
        self.send(Command::Report {
            unit,
            sensor,
            report,
            measured_at: Some(measured_at),
        })
        .await
    }

    /// Hands what one live message of `sensor` said about `unit` to the engine (a door
    /// contact's state alone, or a reading with it); waits while the input queue is full.
    pub async fn report(&self, unit: Arc<str>, sensor: Arc<str>, report: Report) {
        self.send(Command::Report {
            unit,
            sensor,
            report,
            measured_at: None,
        })
        .await
    }

    /// Hands a device's availability report (for a sensor of `unit`) to the engine.
    pub async fn availability(&self, unit: Arc<str>, sensor: &str, online: bool) {
        self.send(Command::Availability {
            unit,
            sensor: sensor.to_string(),
            online,
        })
        .await
    }

    /// Records an acknowledgement by `by` (a token subject), with the comment it came with,
    /// and announces it.
    pub async fn acknowledge(
        &self,
        alert_id: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<Alert, AckError> {
        let local = self.acknowledge_here(alert_id, by, comment).await;
        match (&local, self.0.cluster.as_ref().and_then(|c| c.forward())) {
            (Err(AckError::NotFound), Some(owner)) => owner.forward(alert_id, by, comment).await,
            _ => local,
        }
    }

    /// An acknowledgement judged by this instance's engine alone (in cluster mode it holds
    /// only the units this instance owns). Returns once it is stored (the state file, or the
    /// unit's commit in Redis); [`AckError::NotStored`] if that did not happen within
    /// [`ACK_STORE_LIMIT`] (it is announced and held in memory, and stored when the writer
    /// gets through).
    pub async fn acknowledge_here(
        &self,
        alert_id: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<Alert, AckError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Ack {
            alert_id: alert_id.to_string(),
            by: by.to_string(),
            comment: comment.map(str::to_string),
            reply,
        })
        .await;
        let (alert, stored) = answer.await.unwrap_or(Err(AckError::NotFound))?;
        if stored.wait(ACK_STORE_LIMIT).await {
            Ok(alert)
        } else {
            self.0.acks_not_stored.fetch_add(1, Relaxed);
            warn!(alert = %alert_id, "acknowledgement not stored in time; not confirmed");
            Err(AckError::NotStored)
        }
    }

    /// Applies the rules of a new registry to the running state without losing open alerts.
    /// Invalid rules are refused and the old ones stay in force.
    pub async fn reload(&self, registry: &Registry) -> Result<(), RuleError> {
        let book = RuleBook::build(registry, &self.0.defaults)?;
        let (reply, done) = oneshot::channel();
        self.send(Command::Reload { book, reply }).await;
        let _ = done.await;
        Ok(())
    }

    async fn send(&self, cmd: Command) {
        if self.0.tx.send(cmd).await.is_err() {
            warn!("alert engine stopped: input not judged");
        }
    }

    /// Open alerts and unit states as of the engine's last change.
    /// The rule keys the engine applies to `unit` (limits for a chart).
    pub fn unit_rules(&self, registry: &Registry, unit: &crate::core::registry::Unit) -> RuleSet {
        RuleSet::for_unit(registry, unit, &self.0.defaults)
    }

    /// The state file's writer, failing now (a write error not yet followed by a success).
    pub fn store_failing(&self) -> bool {
        self.0
            .store
            .last_error
            .lock()
            .expect("store health")
            .is_some()
    }

    /// (writes, write errors, acknowledgements answered "not stored"), for `/metrics`.
    pub fn store_counts(&self) -> (u64, u64, u64) {
        let st = &self.0.store;
        (
            st.writes.load(Relaxed),
            st.write_errors.load(Relaxed),
            self.0.acks_not_stored.load(Relaxed),
        )
    }

    pub fn view(&self) -> Arc<View> {
        self.0.view.read().expect("alert view").clone()
    }

    /// The `alerts` section of `/health`.
    pub fn health(&self) -> Value {
        let view = self.view();
        let mut by_type: BTreeMap<&str, u64> =
            AlertType::ALL.iter().map(|t| (t.name(), 0)).collect();
        let mut by_severity: BTreeMap<&str, u64> =
            Severity::ALL.iter().map(|s| (s.name(), 0)).collect();
        for a in &view.alerts {
            *by_type.entry(a.alert_type.name()).or_default() += 1;
            *by_severity.entry(a.severity.name()).or_default() += 1;
        }
        let mut units: BTreeMap<&str, u64> = BTreeMap::new();
        for s in view.states.values() {
            *units.entry(s.name()).or_default() += 1;
        }
        let s = &self.0;
        let store = &s.store;
        let problem = store.problem();
        let w = &s.webhooks;
        json!({
            "status": if problem.is_none() { "ok" } else { "error" },
            "open": { "total": view.alerts.len(), "byType": by_type, "bySeverity": by_severity },
            "units": units,
            "events": {
                "triggered": s.triggered.load(Relaxed),
                "escalated": s.escalated.load(Relaxed),
                "resolved": s.resolved.load(Relaxed),
                "acknowledged": s.acknowledged.load(Relaxed),
                "stateChanges": s.state_changes.load(Relaxed),
            },
            "inputQueue": { "capacity": INPUT_QUEUE, "queued": INPUT_QUEUE - s.tx.capacity() },
            "store": {
                "writes": store.writes.load(Relaxed),
                "writeErrors": store.write_errors.load(Relaxed),
                "acksNotStored": s.acks_not_stored.load(Relaxed),
                "problem": problem,
            },
            "webhooks": {
                "delivered": w.delivered.load(Relaxed),
                "failed": w.failed.load(Relaxed),
                "dropped": w.dropped.load(Relaxed),
                "retries": w.retries.load(Relaxed),
            },
        })
    }
}

#[cfg(test)]
mod tests;
