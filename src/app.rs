//! The shared application handle: everything a socket handler or an HTTP route needs, behind one
//! `Arc`, so a clone is one reference-count increment. Built once in [`crate::run`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::auth::Authenticator;
use crate::hub::Hub;
use crate::ingest::MqttHealth;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub hub: Hub,
    pub auth: Authenticator,
    pub mqtt: Arc<MqttHealth>,
    /// The alert engine's handle (open alerts, acknowledgements).
    pub alerts: Alerts,
    /// Sockets connected to the default namespace right now.
    pub connections: AtomicUsize,
    /// Set when shutdown starts: new sockets are refused from then on.
    pub shutting_down: AtomicBool,
    /// Cancelled at shutdown; per-socket tasks (token expiry) hang off it.
    pub shutdown: CancellationToken,
    pub started: Instant,
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
        alerts: Alerts,
        shutdown: CancellationToken,
    ) -> Self {
        AppState(Arc::new(Inner {
            hub,
            auth,
            mqtt,
            alerts,
            connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            shutdown,
            started: Instant::now(),
        }))
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }
}
