//! The store's file: opening it (WAL, full fsync per commit), its schema and versioned
//! migrations, and what happens to a file that cannot be used. A file that is not a database,
//! or whose integrity check fails, is renamed `<name>.corrupt-<unix seconds>` (with its `-wal`)
//! and a fresh one is created; a file written by a newer version is refused, since setting it
//! aside would hide a downgrade's data loss.
//!
//! Tables (schema version 1):
//! - `meta(key, value)`: `epoch`, and `clean` (1 after a clean shutdown, 0 while running).
//! - `feeds(feed, unit, org, site, epoch)`: one row per unit under one owner and epoch.
//! - `log(id, t_min, t_max, body)`: one row per commit, the records of every unit in arrival
//!   order. Appending is sequential on disk: a commit touches a few pages, not one per unit.
//! - `chunks(feed, hour, n, first_seq, last_seq, body)`: a unit's hour of records, deflated,
//!   written when the log's hour is compacted (hourly) and read by history queries.
//! - `rollups(res, feed, t, n, tmin, tmax, tsum, hn, hmin, hmax, hsum)`: per unit per 1 min,
//!   15 min and 1 h (`res` in seconds), written with the chunks.
//! - `alert_events(id, alert_id, unit, org, site, at, kind, body)`: every alert event, for the
//!   HACCP report.

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::error;

use super::StoreError;

/// The schema this binary writes. Each migration takes the file one version up.
pub const VERSION: i64 = 1;

const MIGRATIONS: &[&str] = &[
    // 0 → 1
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE feeds (feed INTEGER PRIMARY KEY, unit TEXT NOT NULL, org TEXT NOT NULL,
                         site TEXT NOT NULL, epoch TEXT NOT NULL,
                         UNIQUE (unit, org, site, epoch));
     CREATE TABLE log (id INTEGER PRIMARY KEY, t_min INTEGER NOT NULL, t_max INTEGER NOT NULL,
                       body BLOB NOT NULL);
     CREATE TABLE chunks (feed INTEGER NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL,
                          first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
                          body BLOB NOT NULL, PRIMARY KEY (feed, hour));
     CREATE INDEX chunks_by_hour ON chunks (hour);
     CREATE TABLE rollups (res INTEGER NOT NULL, feed INTEGER NOT NULL, t INTEGER NOT NULL,
                           n INTEGER NOT NULL, tmin REAL, tmax REAL, tsum REAL,
                           hn INTEGER NOT NULL, hmin REAL, hmax REAL, hsum REAL,
                           PRIMARY KEY (res, feed, t)) WITHOUT ROWID;
     CREATE INDEX rollups_by_time ON rollups (res, t);
     CREATE TABLE alert_events (id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL,
                                unit TEXT NOT NULL, org TEXT NOT NULL, site TEXT NOT NULL,
                                at INTEGER NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL);
     CREATE INDEX alert_events_by_site ON alert_events (site, at);",
];

/// Opens (creating or migrating) the store at `path`. A corrupt file is set aside first and
/// the reason returned beside the connection; a newer schema is an error.
pub fn open(path: &Path) -> Result<(Connection, Option<String>), StoreError> {
    match try_open(path) {
        Ok(conn) => Ok((conn, None)),
        Err(StoreError::Corrupt(why)) => {
            let aside = set_aside(path)?;
            let problem = format!(
                "{}: {why}; moved to {} and started a new store",
                path.display(),
                aside.display()
            );
            error!(store = %path.display(), aside = %aside.display(), reason = %why, "history store unusable, set aside");
            Ok((try_open(path)?, Some(problem)))
        }
        Err(e) => Err(e),
    }
}

fn try_open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )
    .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| StoreError::Io(e.to_string()))?;
    let corrupt = |e: rusqlite::Error| StoreError::Corrupt(e.to_string());
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(corrupt)?;
    if version > VERSION {
        return Err(StoreError::Newer {
            path: path.to_owned(),
            found: version,
        });
    }
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(corrupt)?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!("integrity check: {check}")));
    }
    // auto_vacuum must be chosen before the first table exists; incremental lets pruning give
    // pages back a few at a time.
    conn.execute_batch(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA wal_autocheckpoint = 1000;
         PRAGMA cache_size = -1024;",
    )
    .map_err(corrupt)?;
    migrate(&conn, version)?;
    Ok(conn)
}

/// Runs the migrations from `from` up to [`VERSION`], each in its own transaction with the
/// version bump, so a crash leaves the file at one version or the next.
pub fn migrate(conn: &Connection, from: i64) -> Result<(), StoreError> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        let to = i as i64 + 1;
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {to}; COMMIT;"
        ))
        .map_err(|e| StoreError::Corrupt(format!("migration to version {to}: {e}")))?;
    }
    Ok(())
}

/// Renames the file (and its WAL and shared-memory files) to `<name>.corrupt-<unix seconds>`.
fn set_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = chrono::Utc::now().timestamp();
    let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    std::fs::rename(path, &aside)
        .map_err(|e| StoreError::Io(format!("cannot set {} aside: {e}", path.display())))?;
    for ext in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{ext}", path.display()));
        if side.exists() {
            let _ = std::fs::rename(&side, format!("{}{ext}", aside.display()));
        }
    }
    Ok(aside)
}

/// A second connection on the same file, for queries (WAL lets them run beside the writer).
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| StoreError::Io(e.to_string()))?;
    // 1 MiB of page cache per connection (SQLite's default is 2 MiB): a Pi's memory.
    conn.execute_batch("PRAGMA cache_size = -1024")
        .map_err(|e| StoreError::Io(e.to_string()))?;
    Ok(conn)
}
