//! The shared application handle: everything a socket handler or an HTTP route needs, behind one
//! `Arc`, so a clone is one reference-count increment. Built once in [`crate::run`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use dashmap::DashMap;

use crate::alerts_hook::OpenAlerts;
use crate::auth::Authenticator;
use crate::config::LimitsConfig;
use crate::fanout::Fanout;
use crate::hub::Hub;
use crate::ingest::MqttHealth;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub hub: Hub,
    pub auth: Authenticator,
    pub mqtt: Arc<MqttHealth>,
    pub fanout: Fanout,
    pub limits: LimitsConfig,
    /// Sockets per token subject, for `limits.max_connections_per_subject`.
    pub per_subject: DashMap<Arc<str>, usize>,
    /// Sockets connected to the default namespace right now.
    pub connections: AtomicUsize,
    /// Set when shutdown starts: new sockets are refused from then on.
    pub shutting_down: AtomicBool,
    /// Cancelled at shutdown; per-socket tasks (token expiry) hang off it.
    pub shutdown: CancellationToken,
    pub started: Instant,
    /// The alert engine's view for `/metrics` and the status page; unset without an engine.
    pub open_alerts: OnceLock<Arc<dyn OpenAlerts>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        hub: Hub,
        auth: Authenticator,
        mqtt: Arc<MqttHealth>,
        fanout: Fanout,
        limits: LimitsConfig,
        shutdown: CancellationToken,
    ) -> Self {
        AppState(Arc::new(Inner {
            hub,
            auth,
            mqtt,
            fanout,
            limits,
            per_subject: DashMap::new(),
            connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            shutdown,
            started: Instant::now(),
            open_alerts: OnceLock::new(),
        }))
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }

    /// Attaches the alert engine's view (once; later calls are ignored).
    pub fn set_open_alerts(&self, view: Arc<dyn OpenAlerts>) {
        let _ = self.open_alerts.set(view);
    }
}
