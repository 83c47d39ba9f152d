//! The alert state file, `alerts.json` in `state.dir`: unit states, open alerts with their
//! acknowledgements, and the absolute times the timers run from. It is written only when that
//! state changes (an alert, an acknowledgement, a transition) and once at shutdown, never per
//! reading: the box runs on an SD card. Each write is atomic (temp file, fsync, rename, fsync of
//! the directory), so a power cut leaves the old file or the new one, never half of one.
//!
//! Writes happen on a task of their own that always writes the latest snapshot it was handed:
//! a burst of changes becomes one or two writes, and the engine never waits for the card. A
//! file that cannot be read or parsed is logged, reported in `/health` and renamed to
//! `alerts.json.corrupt-<unix seconds>`; the engine then starts fresh instead of crash-looping.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
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

/// Hands snapshots to the writer task. Dropping it lets the task write the last one and end.
pub struct Writer {
    tx: watch::Sender<Option<Arc<Vec<u8>>>>,
}

impl Writer {
    /// Starts the writer task on `tasks`.
    pub fn spawn(dir: PathBuf, health: Arc<StoreHealth>, tasks: &TaskTracker) -> Writer {
        let (tx, rx) = watch::channel(None);
        tasks.spawn(write_loop(dir, health, rx));
        Writer { tx }
    }

    /// Queues `saved` for writing, replacing any snapshot not written yet.
    pub fn write(&self, saved: &Saved) {
        match serde_json::to_vec_pretty(saved) {
            Ok(bytes) => {
                self.tx.send_replace(Some(Arc::new(bytes)));
            }
            Err(e) => error!(error = %e, "alert state not serialisable"),
        }
    }
}

async fn write_loop(
    dir: PathBuf,
    health: Arc<StoreHealth>,
    mut rx: watch::Receiver<Option<Arc<Vec<u8>>>>,
) {
    // `changed` still reports a value sent just before the sender was dropped.
    while rx.changed().await.is_ok() {
        let Some(bytes) = rx.borrow_and_update().clone() else {
            continue;
        };
        let d = dir.clone();
        let result = tokio::task::spawn_blocking(move || write_atomic(&d, &bytes)).await;
        let result = result.unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
        match result {
            Ok(()) => {
                health.writes.fetch_add(1, Relaxed);
                *health.last_error.lock().expect("store health") = None;
                debug!(dir = %dir.display(), "alert state written");
            }
            Err(e) => {
                health.write_errors.fetch_add(1, Relaxed);
                warn!(dir = %dir.display(), error = %e, "alert state not written");
                *health.last_error.lock().expect("store health") =
                    Some(format!("cannot write {}: {e}", dir.join(FILE).display()));
            }
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
