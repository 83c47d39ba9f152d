//! The realtime edge's shared handle: everything a Socket.io handler needs, behind one `Arc`,
//! so a clone is one reference-count increment. Built once by the service and given to the
//! Socket.io layer as its state.

use dashmap::DashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use super::config::LimitsConfig;
use super::expiry::Expiries;
use crate::alerts::Alerts;
use crate::auth::Authenticator;
use crate::delivery::SlowSockets;
use crate::pipeline::hub::Hub;

#[derive(Clone)]
pub struct Realtime(Arc<Inner>);

pub struct Inner {
    pub hub: Hub,
    pub auth: Authenticator,
    /// Per-socket delivery (replays, errors, expiry notices) with the slow-client policy.
    pub slow: SlowSockets,
    pub limits: LimitsConfig,
    /// Sockets per token subject, for `limits.max_connections_per_subject`.
    pub per_subject: DashMap<Arc<str>, usize>,
    /// The alert engine's handle (open alerts, acknowledgements).
    pub alerts: Alerts,
    /// Sockets connected to the default namespace right now.
    pub connections: AtomicUsize,
    /// Set when shutdown starts: new sockets are refused from then on.
    pub shutting_down: AtomicBool,
    /// Cancelled at shutdown; per-socket tasks (token expiry) hang off it.
    pub shutdown: CancellationToken,
    /// Token expiry of connected sockets (one task for all).
    pub expiries: Expiries,
}

impl std::ops::Deref for Realtime {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// What [`Realtime::new`] is built from (the rest is runtime bookkeeping it creates).
pub struct Parts {
    pub hub: Hub,
    pub auth: Authenticator,
    /// Per-socket delivery (replays, errors, expiry notices) with the slow-client policy.
    pub slow: SlowSockets,
    pub limits: LimitsConfig,
    pub alerts: Alerts,
    pub shutdown: CancellationToken,
}

impl Realtime {
    pub fn new(p: Parts) -> Self {
        Realtime(Arc::new(Inner {
            hub: p.hub,
            auth: p.auth,
            slow: p.slow,
            limits: p.limits,
            per_subject: DashMap::new(),
            alerts: p.alerts,
            connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            shutdown: p.shutdown,
            expiries: Expiries::default(),
        }))
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Relaxed)
    }

    /// Refuses new sockets from now on (shutdown).
    pub fn refuse_new_sockets(&self) {
        self.shutting_down.store(true, Relaxed);
    }
}
