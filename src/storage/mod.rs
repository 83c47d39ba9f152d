//! Durable history on the box: every emitted reading and every alert event, kept in one SQLite
//! file (`storage.path`, default `<state.dir>/sensorcast.db`) for charts, resumes across
//! restarts and HACCP records. See docs/storage.md for the choice, the layout and the figures.
//!
//! One writer thread owns the write connection ([`writer`]): the hub hands it readings with
//! [`Store::record`], which never waits (a full queue drops the reading from history, counted,
//! never from live delivery), and it commits what arrived every `commit_interval` in one
//! transaction. Queries ([`query`]) run on a reader connection beside it (WAL).
//!
//! Layer 1: imports only `core`.

mod compact;
mod haccp;
#[cfg(test)]
mod migrate_tests;
mod query;
pub mod record;
pub mod rollup;
pub mod schema;
#[cfg(test)]
mod tests;
mod writer;

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::duration::duration_str;
use crate::core::reading::SensorReading;

pub use haccp::{HaccpRow, HaccpUnit};
pub use query::{History, Points};
pub use rollup::{Point, Resolution};

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `false`: no history is kept (everything lives in memory, as before the store existed).
    pub enabled: bool,
    /// Default: `<state.dir>/sensorcast.db`.
    pub path: Option<PathBuf>,
    /// How often what arrived is committed (one transaction, one fsync).
    #[serde(with = "duration_str")]
    pub commit_interval: Duration,
    #[serde(with = "duration_str")]
    pub raw_retention: Duration,
    #[serde(with = "duration_str")]
    pub rollup_retention: Duration,
    /// Bytes the store may use (`"1 GiB"`, `"500 MB"` or a number of bytes); past it the oldest
    /// raw readings go first.
    #[serde(deserialize_with = "bytes")]
    pub max_disk: u64,
    /// Readings waiting for the writer at most; more are dropped from history (not from live
    /// delivery), counted, and `/health` says so.
    pub queue: usize,
    /// Not configurable: SQLite's `max_page_count` on the writer, a full disk on demand for
    /// tests and benchmarks.
    #[serde(skip)]
    pub max_pages: Option<u64>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            enabled: true,
            path: None,
            commit_interval: Duration::from_secs(10),
            raw_retention: Duration::from_secs(35 * 86_400),
            rollup_retention: Duration::from_secs(400 * 86_400),
            max_disk: 1 << 30,
            queue: 50_000,
            max_pages: None,
        }
    }
}

fn bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        N(u64),
        S(String),
    }
    match Size::deserialize(d)? {
        Size::N(n) => Ok(n),
        Size::S(s) => s
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| serde::de::Error::custom(format!("not a size ({e}): {s:?}"))),
    }
}

impl StorageConfig {
    /// `Err((key under storage., message))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.commit_interval < Duration::from_millis(100) {
            return Err(("commit_interval".into(), "must be at least 100ms".into()));
        }
        if self.commit_interval > Duration::from_secs(3600) {
            return Err(("commit_interval".into(), "must be at most 1h".into()));
        }
        if self.raw_retention < Duration::from_secs(3600) {
            return Err(("raw_retention".into(), "must be at least 1h".into()));
        }
        if self.rollup_retention < self.raw_retention {
            return Err((
                "rollup_retention".into(),
                "must be at least raw_retention".into(),
            ));
        }
        if self.max_disk < (1 << 20) {
            return Err(("max_disk".into(), "must be at least 1 MiB".into()));
        }
        if self.queue == 0 || self.queue > 10_000_000 {
            return Err(("queue".into(), "must be between 1 and 10000000".into()));
        }
        Ok(())
    }

    /// Where the file is: `path`, or `sensorcast.db` in `state_dir`.
    pub fn file(&self, state_dir: &Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| state_dir.join("sensorcast.db"))
    }
}

/// Errors of the store. Shown in `/health` and logs, never to a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Io(String),
    #[error("not a usable store: {0}")]
    Corrupt(String),
    #[error("{}: written by a newer sensorcast (schema {found}, this one reads up to {}); refusing to open it", path.display(), schema::VERSION)]
    Newer { path: PathBuf, found: i64 },
    #[error("query failed: {0}")]
    Query(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Query(e.to_string())
    }
}

/// What `/health` and `/metrics` show about the store.
#[derive(Default)]
pub struct StoreHealth {
    pub commits: AtomicU64,
    pub readings_stored: AtomicU64,
    pub alert_events_stored: AtomicU64,
    /// Readings never stored: the queue was full, or the writer could not commit them.
    pub readings_dropped: AtomicU64,
    pub commit_errors: AtomicU64,
    /// Raw readings deleted because the store passed `max_disk`.
    pub pruned_for_budget: AtomicU64,
    /// Chunks that could not be read back (skipped by queries).
    pub damaged: AtomicU64,
    pub bytes_used: AtomicU64,
    /// The last commit failed (cleared by the next that succeeds).
    pub failing: AtomicBool,
    /// Readings are being dropped from history now (set on a drop, cleared by a commit).
    pub behind: AtomicBool,
    pub last_error: Mutex<Option<String>>,
    /// A problem found when opening (a file set aside), kept until the process ends.
    pub open_problem: Mutex<Option<String>>,
}

impl StoreHealth {
    /// `None` when all is well; otherwise what `/health` shows.
    pub fn problem(&self) -> Option<String> {
        if self.failing.load(Relaxed) {
            return Some(
                self.last_error
                    .lock()
                    .expect("store health")
                    .clone()
                    .unwrap_or_else(|| "commits failing".into()),
            );
        }
        if self.behind.load(Relaxed) {
            return Some("writer behind: readings dropped from history".into());
        }
        self.open_problem.lock().expect("store health").clone()
    }
}

/// An alert event as the store keeps it (the HACCP report reads them back).
#[derive(Debug, Clone)]
pub struct AlertEvent {
    pub alert_id: String,
    pub unit: Arc<str>,
    pub org: Arc<str>,
    pub site: Arc<str>,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The event name (`alert:triggered`, `alert:acknowledged`, ...).
    pub kind: &'static str,
    /// The event's payload as sent to clients.
    pub body: serde_json::Value,
}

/// What the store found at start, for the hub.
#[derive(Debug, Default)]
pub struct Restored {
    /// The epoch to continue (`None`: a new store, or a crash after history was dropped).
    pub epoch: Option<String>,
    /// The last shutdown was clean (everything was committed).
    pub clean: bool,
    /// Each unit's newest stored reading (under its organization and site then), any epoch.
    pub latest: Vec<SensorReading>,
    /// Each unit's last `seq` under `epoch`: after a clean shutdown the hub's own, after a
    /// crash the last committed.
    pub seqs: Vec<(String, u64)>,
}

enum Item {
    Reading(Arc<SensorReading>),
    Alert(AlertEvent),
    /// Commit now and answer (tests, shutdown).
    Flush(std::sync::mpsc::Sender<()>),
    /// Commit, record the hub's last seqs and a clean shutdown, and stop.
    Close(Vec<(String, u64)>, std::sync::mpsc::Sender<()>),
}

/// The store: a cheap-clone handle on the writer's queue and the reader connection.
#[derive(Clone)]
pub struct Store(Arc<Inner>);

struct Inner {
    /// An unbounded (linked-block) channel with [`Inner::queued`] as its bound: a bounded std
    /// channel allocates and touches every slot up front (`storage.queue` × the item size,
    /// megabytes of resident memory for an empty queue).
    tx: Sender<Item>,
    /// Readings sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    bound: usize,
    reader: Mutex<rusqlite::Connection>,
    health: Arc<StoreHealth>,
    path: PathBuf,
    epoch: String,
}

impl Store {
    /// Opens the store (setting a corrupt file aside), reads what the hub restores, and starts
    /// the writer thread. `epoch`: the epoch to use if the store has none to continue.
    pub fn open(
        config: &StorageConfig,
        state_dir: &Path,
        epoch: &str,
    ) -> Result<(Store, Restored), StoreError> {
        let path = config.file(state_dir);
        let (conn, problem) = schema::open(&path)?;
        let health = Arc::new(StoreHealth::default());
        *health.open_problem.lock().expect("store health") = problem;
        let (restored, epoch) = writer::start_epoch(&conn, epoch)?;
        let reader = schema::open_reader(&path)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        writer::spawn(
            conn,
            rx,
            queued.clone(),
            config.clone(),
            health.clone(),
            epoch.clone(),
        )?;
        let store = Store(Arc::new(Inner {
            tx,
            queued,
            bound: config.queue,
            reader: Mutex::new(reader),
            health,
            path,
            epoch,
        }));
        Ok((store, restored))
    }

    /// The epoch the store writes under (the hub's).
    pub fn epoch(&self) -> &str {
        &self.0.epoch
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    pub fn health(&self) -> &Arc<StoreHealth> {
        &self.0.health
    }

    /// Whether the writer keeps up: commits succeed and at most a tenth of the queue waits.
    /// While it does not, the hub keeps its full recent history in memory.
    pub fn keeping_up(&self) -> bool {
        !self.0.health.failing.load(Relaxed) && self.0.queued.load(Relaxed) <= self.0.bound / 10
    }

    /// Queues an emitted reading for the next commit. Never waits: with the queue full the
    /// reading is counted as dropped from history.
    pub fn record(&self, reading: Arc<SensorReading>) {
        let full = self.0.queued.fetch_add(1, Relaxed) >= self.0.bound;
        if full || self.0.tx.send(Item::Reading(reading)).is_err() {
            self.0.queued.fetch_sub(1, Relaxed);
            self.0.health.readings_dropped.fetch_add(1, Relaxed);
            self.0.health.behind.store(true, Relaxed);
        }
    }

    /// Queues an alert event. Alert events are few and matter (HACCP): this waits for room.
    pub fn record_alert(&self, event: AlertEvent) {
        let _ = self.0.tx.send(Item::Alert(event));
    }

    /// Commits what is queued and returns once it is on disk (or the commit failed).
    pub async fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.0.tx.send(Item::Flush(tx)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
        }
    }

    /// Commits everything, records `seqs` (each unit's last seq in the hub) and a clean
    /// shutdown, and stops the writer.
    pub async fn close(&self, seqs: Vec<(String, u64)>) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.0.tx.send(Item::Close(seqs, tx)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
        }
    }

    /// Runs `f` on the reader connection off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection, &StoreHealth) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.reader.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn, &inner.health)
        })
        .await
        .map_err(|e| StoreError::Query(e.to_string()))?
    }
}

/// Compacts every log row of `path` now, whatever its hour (benchmarks measure what the hourly
/// compaction writes with this).
pub fn compact_all(path: &Path) -> Result<(), StoreError> {
    let (conn, _) = schema::open(path)?;
    compact::compact_before(&conn, i64::MAX).map(|_| ())
}
