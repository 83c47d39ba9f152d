//! The realtime edge's shared handle: everything a Socket.io handler needs, behind one `Arc`,
//! so a clone is one reference-count increment. Built once by the service and given to the
//! Socket.io layer as its state.

use dashmap::DashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use super::config::LimitsConfig;
use super::expiry::Expiries;
use super::limits::Buckets;
use crate::alerts::Alerts;
use crate::auth::{AuthError, Authenticator, Principal};
use crate::core::ids::canonical_id;
use crate::delivery::SlowSockets;
use crate::pipeline::hub::Hub;
use crate::storage::Store;
use std::collections::HashSet;

#[derive(Clone)]
pub struct Realtime(Arc<Inner>);

pub struct Inner {
    pub hub: Hub,
    pub auth: Authenticator,
    /// Per-socket delivery (replays, errors, expiry notices) with the slow-client policy.
    pub slow: SlowSockets,
    pub limits: LimitsConfig,
    /// Sockets per user (organization, token subject), for
    /// `limits.max_connections_per_subject`.
    pub per_subject: DashMap<super::UserKey, usize>,
    /// The client-event rate limit, one bucket per user (organization, token subject) shared
    /// by all their sockets: a reconnect does not refill it.
    pub buckets: Buckets<super::UserKey>,
    /// The alert engine's handle (open alerts, acknowledgements).
    pub alerts: Alerts,
    /// The history store (`None` with `storage.enabled = false`).
    pub store: Option<Store>,
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
    /// The history store (`None` with `storage.enabled = false`).
    pub store: Option<Store>,
    pub shutdown: CancellationToken,
}

impl Realtime {
    pub fn new(p: Parts) -> Self {
        Realtime(Arc::new(Inner {
            hub: p.hub,
            auth: p.auth,
            slow: p.slow,
            limits: p.limits.clone(),
            per_subject: DashMap::new(),
            buckets: Buckets::new(
                p.limits.event_rate,
                p.limits.event_burst,
                p.limits.max_connections.saturating_mul(2).max(1024),
            ),
            alerts: p.alerts,
            store: p.store,
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

    /// A token verified (signature, times, claims) whose organization the registry knows, with
    /// the organization and site ids in the registry's form (NFC): what the handshake, `/api/`
    /// and the pages all accept. An unknown organization, or one that is no valid id at all
    /// (`org-a:readings`), is `User has no organization access`; a site claim that is no valid
    /// id is `Invalid token claims`.
    pub fn verify(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        let mut p = self.auth.verify(token)?;
        let registry = self.hub.registry();
        let org = registry.org(&p.org).ok_or(AuthError::NoOrganization)?;
        p.org = org.id.clone();
        if let Some(sites) = &p.sites {
            let canonical = sites
                .iter()
                .map(|s| canonical_id(s).map_err(|_| AuthError::Claims))
                .collect::<Result<HashSet<_>, _>>()?;
            p.sites = Some(Arc::new(canonical));
        }
        Ok(p)
    }

    /// Refuses new sockets from now on (shutdown).
    pub fn refuse_new_sockets(&self) {
        self.shutting_down.store(true, Relaxed);
    }
}
