//! Cluster mode (`[cluster]`): several instances behind a load balancer share one feed through
//! Redis or Valkey 7+, with the guarantees of a single box: every dashboard gets every event of
//! its rooms exactly once, whichever instance it is on; `seq`, `epoch`, `latest` and the resume
//! history are the same everywhere; alerts are evaluated once. docs/scaling.md has the design
//! and its trade-offs; in short:
//!
//! - Every instance subscribes to every MQTT topic with its own client id and persistent
//!   session (no `$share`): nothing is held for a dead member, retained messages and order are
//!   as for one box.
//! - Units are partitioned over the live instances ([`membership`]: TTL heartbeats in Redis,
//!   rendezvous hashing of unit ids over node ids). The owner of a unit numbers its readings,
//!   keeps its latest and history, and evaluates its alerts, each change one fenced script
//!   ([`store`]) that also appends the event to one Redis stream; the others hold its recent
//!   messages for a takeover (`pipeline::shared`).
//! - Every instance reads the stream in order ([`relay`]) and hands each already-encoded event
//!   to its own fan-out: the slow-client policy stays per socket and local, a reconnection to
//!   Redis resumes from the last entry read, and nothing is dropped with only a warning.
//!   (socketioxide-redis was not used for that reason: its pub/sub loses what is published
//!   while a node reconnects and drops with a `warn!` when its channel is full.)
//! - Redis unreachable: every instance numbers and delivers its own ingest alone, under an
//!   epoch of its own, reports `degraded`, and rejoins when Redis answers again.
//!
//! [`writer`] carries what the pipeline and the alert engine publish to Redis, in order, in
//! pipelined batches.

pub mod config;
mod membership;
mod relay;
mod rendezvous;
mod requests;
pub mod store;
mod writer;

pub use config::ClusterConfig;

use dashmap::{DashMap, DashSet};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::Alerts;
use crate::core::reading::SensorReading;
use crate::delivery::{Batcher, Fanout};
use crate::pipeline::hub::Hub;
use crate::pipeline::shared::{BoxFuture, Change, Outbound, Publish, SharedHistory};
use store::{Keys, Scripts};
use writer::Job;

/// Jobs waiting for the writer. When full, the pipeline waits (MQTT acks are held back): a
/// reading is never dropped here.
const JOB_QUEUE: usize = 4096;
/// Ownership changes waiting for the ingest task.
const CHANGE_QUEUE: usize = 4096;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

pub struct Inner {
    cfg: ClusterConfig,
    node: Arc<str>,
    keys: Keys,
    scripts: Scripts,
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    hub: Hub,
    fanout: Fanout,
    alerts: Alerts,
    batcher: Option<Batcher>,
    /// Units this instance's pipeline owns (its own set, read here).
    owned: Arc<DashSet<Arc<str>>>,
    /// Units this instance holds in Redis (claimed and not yet released or lost).
    claimed: Mutex<HashSet<Arc<str>>>,
    jobs: mpsc::Sender<Job>,
    /// The writer's end, taken by [`Cluster::start`].
    jobs_rx: Mutex<Option<mpsc::Receiver<Job>>>,
    changes: mpsc::Sender<Change>,
    /// True while Redis cannot be reached: every instance numbers and delivers alone.
    alone: AtomicBool,
    /// Set once this instance has joined (heartbeats) since its start.
    joined: AtomicBool,
    /// The last rebalance left nothing to claim or release here (`/health`).
    settled: AtomicBool,
    /// Fingerprints delivered alone, not to be delivered again from the stream (bounded).
    alone_fps: Mutex<relay::Recent>,
    /// Fingerprints delivered from the stream, not to be delivered again alone (bounded).
    relayed_fps: Mutex<relay::Recent>,
    /// Acknowledgements forwarded to another instance, waiting for its answer.
    pending_acks: DashMap<String, oneshot::Sender<serde_json::Value>>,
    /// What the last heartbeat learnt.
    view: Mutex<ClusterView>,
    /// This instance's sockets, for the cluster's count.
    local_sockets: Box<dyn Fn() -> usize + Send + Sync>,
    pub stats: ClusterStats,
}

/// What the last heartbeat learnt about the cluster.
#[derive(Debug, Clone, Default)]
struct ClusterView {
    live: Vec<Arc<str>>,
    sockets: u64,
}

/// Counters for `/metrics` and `/health`.
#[derive(Default)]
pub struct ClusterStats {
    /// Redis commands that failed, by operation.
    redis_errors: DashMap<&'static str, AtomicU64>,
    /// Stream entries handed to local sockets, by kind.
    relayed: DashMap<&'static str, AtomicU64>,
    /// Events not delivered by the cluster path, by reason (fenced out, unreadable entry...).
    dropped: DashMap<&'static str, AtomicU64>,
    /// Times the stream reader found entries trimmed before it read them.
    pub stream_gaps: AtomicU64,
    /// Stream entries lost that way.
    pub stream_entries_lost: AtomicU64,
    pub takeovers: AtomicU64,
    pub releases: AtomicU64,
    pub degraded_periods: AtomicU64,
}

fn bump(map: &DashMap<&'static str, AtomicU64>, key: &'static str, n: u64) {
    if let Some(c) = map.get(key) {
        c.fetch_add(n, Relaxed);
        return;
    }
    map.entry(key).or_default().fetch_add(n, Relaxed);
}

fn snapshot(map: &DashMap<&'static str, AtomicU64>) -> Vec<(&'static str, u64)> {
    let mut v: Vec<_> = map
        .iter()
        .map(|e| (*e.key(), e.value().load(Relaxed)))
        .collect();
    v.sort();
    v
}

impl ClusterStats {
    pub fn redis_error(&self, op: &'static str) {
        bump(&self.redis_errors, op, 1);
    }
    pub fn relayed(&self, kind: &'static str) {
        bump(&self.relayed, kind, 1);
    }
    pub fn dropped(&self, reason: &'static str, n: u64) {
        bump(&self.dropped, reason, n);
    }
    pub fn redis_errors(&self) -> Vec<(&'static str, u64)> {
        snapshot(&self.redis_errors)
    }
    pub fn relayed_by_kind(&self) -> Vec<(&'static str, u64)> {
        snapshot(&self.relayed)
    }
    pub fn dropped_by_reason(&self) -> Vec<(&'static str, u64)> {
        snapshot(&self.dropped)
    }
}

/// What the cluster needs from the rest of the service.
pub struct Parts {
    pub hub: Hub,
    pub fanout: Fanout,
    pub alerts: Alerts,
    pub batcher: Option<Batcher>,
    /// The pipeline's owned set (`pipeline::shared::Replicas::owned`).
    pub owned: Arc<DashSet<Arc<str>>>,
    /// This instance's socket count.
    pub local_sockets: Box<dyn Fn() -> usize + Send + Sync>,
    /// This instance's HTTP port (for the default node id).
    pub http_port: u16,
}

/// `/health`'s `checks.cluster`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealth {
    pub status: &'static str,
    pub node_id: String,
    /// `connected` or `unavailable`.
    pub redis: &'static str,
    pub degraded: bool,
    pub live_instances: usize,
    pub instances: Vec<String>,
    pub owned_units: usize,
    /// The last rebalance left nothing to claim or release on this instance.
    pub settled: bool,
    pub cluster_connections: u64,
    /// Times this instance's stream reader fell behind the trimmed stream and lost entries
    /// (each unit's resumes answer `recovered: false` here until its next reading).
    pub stream_gaps: u64,
    pub stream_entries_lost: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.redis_url: {0}")]
    Url(redis::RedisError),
}

impl Cluster {
    /// Builds the cluster handle (nothing connects yet) and the receiver of ownership changes
    /// the ingest task applies. Start it with [`Cluster::start`].
    pub fn new(
        cfg: &ClusterConfig,
        parts: Parts,
    ) -> Result<(Cluster, mpsc::Receiver<Change>), ClusterError> {
        let client = redis::Client::open(cfg.redis_url.as_str()).map_err(ClusterError::Url)?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.redis_timeout))
            .set_response_timeout(Some(cfg.redis_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(ClusterError::Url)?;
        let (jobs, jobs_rx) = mpsc::channel(JOB_QUEUE);
        let (changes, changes_rx) = mpsc::channel(CHANGE_QUEUE);
        let node: Arc<str> = cfg.node_id(parts.http_port).into();
        let inner = Inner {
            cfg: cfg.clone(),
            keys: Keys::new(&cfg.key_prefix),
            scripts: Scripts::default(),
            node,
            client,
            conn,
            hub: parts.hub,
            fanout: parts.fanout,
            alerts: parts.alerts,
            batcher: parts.batcher,
            owned: parts.owned,
            claimed: Mutex::default(),
            jobs,
            jobs_rx: Mutex::new(Some(jobs_rx)),
            changes,
            alone: AtomicBool::new(true),
            joined: AtomicBool::new(false),
            settled: AtomicBool::new(false),
            alone_fps: Mutex::new(relay::Recent::new(relay::ALONE_FPS)),
            relayed_fps: Mutex::new(relay::Recent::new(relay::RELAYED_FPS)),
            pending_acks: DashMap::new(),
            view: Mutex::default(),
            local_sockets: parts.local_sockets,
            stats: ClusterStats::default(),
        };
        Ok((Cluster(Arc::new(inner)), changes_rx))
    }

    /// Starts the writer, the stream reader and membership on `tasks`; waits (at most
    /// `redis_timeout`) for a first answer from Redis, so that a healthy cluster starts in
    /// cluster mode rather than degraded. `ready` tells when this instance's MQTT subscriptions
    /// are in place: it takes units only from then on.
    pub async fn start(
        &self,
        ready: Box<dyn Fn() -> bool + Send + Sync>,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) {
        self.0.hub.set_shared(Arc::new(self.clone()));
        self.0.alerts.set_forward(Arc::new(self.clone()));
        if let Some(jobs) = self.0.jobs_rx.lock().expect("jobs").take() {
            tasks.spawn(writer::run(self.clone(), jobs, stop.clone()));
        }
        tasks.spawn(relay::run(self.clone(), stop.clone()));
        membership::first_contact(self).await;
        tasks.spawn(membership::run(self.clone(), ready, stop));
    }

    /// A clean stop: what is queued is written, every unit released, and this instance leaves,
    /// so the others take its units at once instead of after `node_ttl`.
    pub async fn leave(&self) {
        membership::leave(self).await;
    }

    pub fn node_id(&self) -> &str {
        &self.0.node
    }

    pub fn stats(&self) -> &ClusterStats {
        &self.0.stats
    }

    pub fn is_degraded(&self) -> bool {
        self.0.alone.load(Relaxed)
    }

    /// Sockets connected to every live instance, as of the last heartbeat (this instance's
    /// own while degraded).
    pub fn connections(&self) -> u64 {
        if self.is_degraded() {
            return (self.0.local_sockets)() as u64;
        }
        self.0.view.lock().expect("cluster view").sockets
    }

    pub fn health(&self) -> ClusterHealth {
        let view = self.0.view.lock().expect("cluster view").clone();
        let degraded = self.is_degraded();
        ClusterHealth {
            status: if degraded { "degraded" } else { "ok" },
            node_id: self.0.node.to_string(),
            redis: if degraded { "unavailable" } else { "connected" },
            degraded,
            live_instances: if degraded { 1 } else { view.live.len() },
            instances: view.live.iter().map(|n| n.to_string()).collect(),
            owned_units: self.0.owned.len(),
            settled: !degraded && self.0.settled.load(Relaxed),
            cluster_connections: self.connections(),
            stream_gaps: self.0.stats.stream_gaps.load(Relaxed),
            stream_entries_lost: self.0.stats.stream_entries_lost.load(Relaxed),
        }
    }

    fn conn(&self) -> redis::aio::ConnectionManager {
        self.0.conn.clone()
    }

    /// Enters degraded mode (Redis unreachable): from the next message on, every reading is
    /// numbered and delivered here, under an epoch of this instance's own.
    fn go_alone(&self, why: &str) {
        if self.0.alone.swap(true, Relaxed) {
            return;
        }
        self.0.stats.degraded_periods.fetch_add(1, Relaxed);
        let epoch = crate::pipeline::hub::new_epoch(&self.0.node);
        self.0.hub.set_epoch(&epoch);
        tracing::error!(
            error = why,
            epoch,
            "redis unreachable: degraded, serving this instance's own ingest"
        );
    }
}

impl Publish for Cluster {
    fn alone(&self) -> bool {
        self.0.alone.load(Relaxed)
    }

    fn publish(&self, out: Outbound) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.0.jobs.send(Job::Publish(Box::new(out))).await.is_err() {
                self.0.stats.dropped("writer_stopped", 1);
            }
        })
    }

    fn release(&self, unit: Arc<str>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.0.jobs.send(Job::Release(unit)).await.is_err() {
                self.0.stats.dropped("writer_stopped", 1);
            }
        })
    }

    fn deliver_alone(&self, fp: u64) -> bool {
        if self.0.relayed_fps.lock().expect("relayed fps").take(fp) {
            self.0.stats.dropped("delivered_from_the_stream", 1);
            return false;
        }
        self.0.alone_fps.lock().expect("alone fps").insert(fp);
        true
    }
}

impl SharedHistory for Cluster {
    fn readings_after<'a>(
        &'a self,
        unit: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Option<(Vec<Arc<SensorReading>>, u64)>> {
        Box::pin(requests::history_after(self, unit, after))
    }
}

impl crate::alerts::cluster::ClusterSink for Cluster {
    fn commit(
        &self,
        commits: Vec<crate::alerts::cluster::UnitCommit>,
        hooks: crate::alerts::webhook::Webhooks,
        done: Option<tokio::sync::oneshot::Sender<bool>>,
    ) {
        if let Err(e) = self.0.jobs.try_send(Job::Commit(commits, hooks, done)) {
            // The engine never waits; a full queue means Redis is far behind: deliver here.
            let Job::Commit(commits, hooks, done) = e.into_inner() else {
                return;
            };
            self.0.stats.dropped("commit_queue_full", 1);
            writer::commit_alone(self, commits, &hooks);
            if let Some(done) = done {
                let _ = done.send(false);
            }
        }
    }
}

impl crate::alerts::cluster::AckForward for Cluster {
    fn forward<'a>(
        &'a self,
        alert_id: &'a str,
        by: &'a str,
        comment: Option<&'a str>,
    ) -> crate::alerts::cluster::BoxFuture<'a, Result<crate::alerts::Alert, crate::alerts::AckError>>
    {
        Box::pin(requests::forward_ack(self, alert_id, by, comment))
    }
}
