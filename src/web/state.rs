//! What the web routes read: the realtime handle (sockets, hub, auth, alerts) and the health the
//! MQTT edge and the reload report. One `Arc`; a clone is a reference-count increment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::core::connections::HttpConnections;
use crate::core::health::{MqttHealth, ReloadLog};
use crate::delivery::Fanout;
use crate::realtime::Realtime;

#[derive(Clone)]
pub struct WebState(Arc<Inner>);

pub struct Inner {
    pub rt: Realtime,
    /// The sockets themselves (counts per organization, subscriptions).
    pub fanout: Fanout,
    pub mqtt: Arc<MqttHealth>,
    pub reload: Arc<ReloadLog>,
    pub started: Instant,
    /// A unit whose last reading is older than this is `stale` on the status page.
    pub stale_after: Duration,
    /// The main listener's connections (open, cap, refusals, timeouts).
    pub http: Arc<HttpConnections>,
    /// Cluster mode: the cluster's state (`/health`, `/metrics`, the status page).
    pub cluster: Option<Cluster>,
}

impl std::ops::Deref for WebState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl WebState {
    pub fn new(
        rt: Realtime,
        fanout: Fanout,
        mqtt: Arc<MqttHealth>,
        reload: Arc<ReloadLog>,
        stale_after: Duration,
        http: Arc<HttpConnections>,
        cluster: Option<Cluster>,
    ) -> Self {
        WebState(Arc::new(Inner {
            rt,
            fanout,
            mqtt,
            reload,
            started: Instant::now(),
            stale_after,
            http,
            cluster,
        }))
    }
}
