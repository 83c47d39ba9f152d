//! The shared application handle: everything a socket handler or an HTTP route needs, behind one
//! `Arc`, so a clone is one reference-count increment. Built once in [`crate::run`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use dashmap::DashMap;

use crate::alerts::Alerts;
use crate::alerts_hook::OpenAlerts;
use crate::auth::Authenticator;
use crate::config::LimitsConfig;
use crate::fanout::Fanout;
use crate::hub::Hub;
use crate::ingest::MqttHealth;
use crate::realtime::expiry::Expiries;
use crate::reload::Reloader;

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
    pub reloader: Arc<Reloader>,
    /// The alert engine's handle (open alerts, acknowledgements).
    pub alerts: Alerts,
    /// Sockets connected to the default namespace right now.
    pub connections: AtomicUsize,
    /// Set when shutdown starts: new sockets are refused from then on.
    pub shutting_down: AtomicBool,
    /// Cancelled at shutdown; per-socket tasks (token expiry) hang off it.
    pub shutdown: CancellationToken,
    pub started: Instant,
    /// Token expiry of connected sockets (one task for all).
    pub expiries: Expiries,
    /// The alert engine's view for `/metrics` and the status page; unset without an engine.
    pub open_alerts: OnceLock<Arc<dyn OpenAlerts>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// What [`AppState::new`] is built from (the rest is runtime bookkeeping it creates).
pub struct Parts {
    pub hub: Hub,
    pub auth: Authenticator,
    pub mqtt: Arc<MqttHealth>,
    pub fanout: Fanout,
    pub limits: LimitsConfig,
    pub reloader: Arc<Reloader>,
    pub alerts: Alerts,
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(p: Parts) -> Self {
        AppState(Arc::new(Inner {
            hub: p.hub,
            auth: p.auth,
            mqtt: p.mqtt,
            fanout: p.fanout,
            limits: p.limits,
            per_subject: DashMap::new(),
            reloader: p.reloader,
            alerts: p.alerts,
            connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            shutdown: p.shutdown,
            started: Instant::now(),
            expiries: Expiries::default(),
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
