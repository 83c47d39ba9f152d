//! The alert state file, `alerts.json` in `state.dir`: unit states, open alerts with their
//! acknowledgements, and the absolute times the timers run from. It is written only when that
//! state changes (an alert, an acknowledgement, a transition) and once at shutdown, never per
//! reading: the box runs on an SD card. Each write is atomic (temp file, fsync, rename, fsync of
//! the directory), so a power cut leaves the old file or the new one, never half of one.
//!
//! Writes happen on a task of their own that always writes the latest snapshot it was handed:
//! a burst of changes becomes one or two writes, and the engine never waits for the card.
//! Snapshots are numbered, and the task reports the newest number on disk, so that an
//! acknowledgement can be confirmed only once it is stored ([`Writer::durable`]). A failed write
//! is tried again with backoff (with the newest snapshot) until it succeeds. A
//! file that cannot be read or parsed is logged, reported in `/health` and renamed to
//! `alerts.json.corrupt-<unix seconds>`; the engine then starts fresh instead of crash-looping.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

use super::machine::{Saved, SAVED_VERSION};

pub const FILE: &str = "alerts.json";

/// What `/health` shows about the state file.
#[derive(Default)]
pub struct StoreHealth {
    pub writes: AtomicU64,
    pub write_errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// A problem found when loading (a file set aside), kept until the process ends.
    pub load_problem: Mutex<Option<String>>,
}

impl StoreHealth {
    pub fn problem(&self) -> Option<String> {
        let load = self.load_problem.lock().expect("store health").clone();
        load.or_else(|| self.last_error.lock().expect("store health").clone())
    }
}

/// Reads the state file. `None` when there is none, or when it was unusable and set aside
/// (recorded in `health`).
pub fn load(dir: &Path, health: &StoreHealth) -> Option<Saved> {
    remove_stale_temp(dir);
    let path = dir.join(FILE);
    let problem = match fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
            Ok(saved) if saved.version == SAVED_VERSION => return Some(saved),
            Ok(saved) => format!("unsupported version {}", saved.version),
            Err(e) => format!("not a valid state file: {e}"),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => format!("cannot read: {e}"),
    };
    let aside = set_aside(&path);
    let message = match &aside {
        Ok(to) => format!(
            "{}: {problem}; moved to {} and started with no alert state",
            path.display(),
            to.display()
        ),
        Err(e) => format!(
            "{}: {problem}; could not move it aside ({e}); started with no alert state",
            path.display()
        ),
    };
    error!(path = %path.display(), problem, "alert state file unusable");
    *health.load_problem.lock().expect("store health") = Some(message);
    None
}

fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let secs = chrono::Utc::now().timestamp();
    let mut to = path.with_file_name(format!("{FILE}.corrupt-{secs}"));
    let mut n = 1;
    while to.exists() {
        to = path.with_file_name(format!("{FILE}.corrupt-{secs}-{n}"));
        n += 1;
    }
    fs::rename(path, &to)?;
    Ok(to)
}

/// Replaces `dir/alerts.json` atomically with `bytes`.
pub fn write_atomic(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(FILE))?;
    // The rename is durable only once the directory entry is on disk.
    File::open(dir)?.sync_all()
}

/// First wait before a failed write is tried again; doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Tries left for the last snapshot once the engine stopped (shutdown must end).
const TRIES_AT_STOP: u32 = 3;

/// A numbered snapshot: generation 1 is the first one handed over.
type Snapshot = Option<(u64, Arc<Vec<u8>>)>;

/// Hands snapshots to the writer task. Dropping it lets the task write the last one and end.
pub struct Writer {
    tx: watch::Sender<Snapshot>,
    /// Generation of the newest snapshot handed over (0: none yet).
    queued: AtomicU64,
    /// Generation of the newest snapshot on disk (written, fsync'd, renamed, directory synced).
    written: watch::Receiver<u64>,
}

/// A wait for a generation to be on disk: what an acknowledgement waits for before it is
/// confirmed (see [`Writer::durable`]).
pub struct Durable {
    written: watch::Receiver<u64>,
    generation: u64,
}

impl Durable {
    /// Whether the snapshot is on disk within `limit`.
    pub async fn wait(mut self, limit: Duration) -> bool {
        let g = self.generation;
        matches!(
            tokio::time::timeout(limit, self.written.wait_for(|w| *w >= g)).await,
            Ok(Ok(_))
        )
    }
}

impl Writer {
    /// Starts the writer task on `tasks`.
    pub fn spawn(dir: PathBuf, health: Arc<StoreHealth>, tasks: &TaskTracker) -> Writer {
        let (tx, rx) = watch::channel(None);
        let (done, written) = watch::channel(0);
        tasks.spawn(write_loop(dir, health, rx, done));
        Writer {
            tx,
            queued: AtomicU64::new(0),
            written,
        }
    }

    /// Queues `saved` for writing, replacing any snapshot not written yet.
    pub fn write(&self, saved: &Saved) {
        match serde_json::to_vec_pretty(saved) {
            Ok(bytes) => {
                let generation = self.queued.fetch_add(1, Relaxed) + 1;
                self.tx.send_replace(Some((generation, Arc::new(bytes))));
            }
            Err(e) => error!(error = %e, "alert state not serialisable"),
        }
    }

    /// A wait for everything handed over so far to be on disk.
    pub fn durable(&self) -> Durable {
        Durable {
            written: self.written.clone(),
            generation: self.queued.load(Relaxed),
        }
    }
}

async fn write_loop(
    dir: PathBuf,
    health: Arc<StoreHealth>,
    mut rx: watch::Receiver<Snapshot>,
    written: watch::Sender<u64>,
) {
    // `changed` still reports a value sent just before the sender was dropped.
    while rx.changed().await.is_ok() {
        let Some(mut snapshot) = rx.borrow_and_update().clone() else {
            continue;
        };
        let mut backoff = RETRY_FIRST;
        let mut tries_left = TRIES_AT_STOP;
        loop {
            let (generation, bytes) = snapshot.clone();
            let d = dir.clone();
            let result = tokio::task::spawn_blocking(move || write_atomic(&d, &bytes)).await;
            match result.unwrap_or_else(|e| Err(io::Error::other(e.to_string()))) {
                Ok(()) => {
                    health.writes.fetch_add(1, Relaxed);
                    *health.last_error.lock().expect("store health") = None;
                    written.send_replace(generation);
                    debug!(dir = %dir.display(), generation, "alert state written");
                    break;
                }
                Err(e) => {
                    health.write_errors.fetch_add(1, Relaxed);
                    warn!(dir = %dir.display(), error = %e, retry_in = ?backoff, "alert state not written");
                    *health.last_error.lock().expect("store health") =
                        Some(format!("cannot write {}: {e}", dir.join(FILE).display()));
                }
            }
            // Tried again after the backoff, or at once with a newer snapshot; once the engine
            // stopped, a few more times and then given up (logged: shutdown must end).
            let stopped = tokio::select! {
                _ = tokio::time::sleep(backoff) => false,
                r = rx.changed() => r.is_err(),
            };
            if stopped || rx.has_changed().is_err() {
                if tries_left == 0 {
                    error!(dir = %dir.display(), "alert state not written before the stop: changes since the last write are lost");
                    return;
                }
                tries_left -= 1;
                tokio::time::sleep(backoff).await;
            }
            if let Some(newer) = rx.borrow_and_update().clone() {
                snapshot = newer;
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }
}

/// Removes a temporary file a crash left behind mid-write (the state file itself is intact:
/// the rename had not happened).
pub fn remove_stale_temp(dir: &Path) {
    let tmp = dir.join(format!("{FILE}.tmp"));
    match fs::remove_file(&tmp) {
        Ok(()) => warn!(path = %tmp.display(), "removed a temporary state file left by a crash"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(path = %tmp.display(), error = %e, "stale temporary state file not removed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use std::collections::BTreeMap;

    fn saved() -> Saved {
        Saved {
            version: SAVED_VERSION,
            saved_at: Utc::now(),
            units: BTreeMap::new(),
        }
    }

    #[test]
    fn a_written_file_loads_back_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("state");
        let s = saved();
        write_atomic(&sub, &serde_json::to_vec(&s).unwrap()).unwrap();
        let health = StoreHealth::default();
        let back = load(&sub, &health).unwrap();
        assert_eq!(back.units, s.units);
        assert!(!sub.join(format!("{FILE}.tmp")).exists());
        assert!(health.problem().is_none());
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), b"{\"version\": 1, \"units\": tru").unwrap();
        let health = StoreHealth::default();
        assert!(load(dir.path(), &health).is_none());
        let problem = health.problem().unwrap();
        assert!(problem.contains("moved to"), "{problem}");
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("alerts.json.corrupt-"), "{names:?}");
        // The next start finds no file and is fine.
        assert!(load(dir.path(), &StoreHealth::default()).is_none());
    }
}
