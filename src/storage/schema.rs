//! The store's file: opening it (WAL, full fsync per commit), its schema and versioned
//! migrations, and what happens to a file that cannot be used. A file that is not a database,
//! or whose integrity check fails, is renamed `<name>.corrupt-<unix seconds>` (with its `-wal`)
//! and a fresh one is created; a file written by a newer version is refused, since setting it
//! aside would hide a downgrade's data loss.
//!
//! Tables (schema version 2). Every table the writer appends to is keyed time first, so that
//! a commit or an hour's compaction writes new pages at the end of its tree instead of one page
//! per unit scattered through it (the SD card):
//! - `meta(key, value)`: `epoch`, `clean` (1 after a clean shutdown, 0 while running),
//!   `rolled_day` (days before it have their 15 min and 1 h rollups stored).
//! - `feeds(feed, unit, org, site, epoch, last_hour)`: one row per unit under one owner and
//!   epoch; `last_hour`: the hour of its newest chunk.
//! - `log(id, t_min, t_max, body, packed)`: one row per commit, the records of every unit in
//!   arrival order (deflated when `packed`).
//! - `chunks(id, n, first_seq, last_seq, body)`: a unit's hour of records, deflated, written when
//!   the log's hour is compacted (hourly); `id` is `hour number << 32 | feed` ([`chunk_id`]),
//!   so an hour's chunks are appended together and a unit's hour is one key lookup.
//! - `rollups(res, p, feed, t, n, tmin, tmax, tsum, hn, hmin, hmax, hsum)`: per unit per 1 min,
//!   15 min and 1 h (`res` in seconds), grouped in periods `p` (the hour for 1 min rollups,
//!   written with the chunks; the UTC day for 15 min and 1 h ones, written once the day is
//!   compacted), so a unit's period is one contiguous range. Until then queries compute them
//!   from the 1 min rollups.
//! - `alert_events(id, alert_id, unit, org, site, at, kind, body)`: every alert event, for the
//!   HACCP report.

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::error;

use super::StoreError;

/// The schema this binary writes. Each migration takes the file one version up.
pub const VERSION: i64 = 2;

pub(super) const MIGRATIONS: &[&str] = &[
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
    // 1 → 2: time-first keys for chunks and rollups, deflated log rows. Coarse rollups of the
    // newest day with any are dropped: they are computed again from the 1 min ones.
    "ALTER TABLE log ADD COLUMN packed INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE feeds ADD COLUMN last_hour INTEGER;
     UPDATE feeds SET last_hour = (SELECT MAX(hour) FROM chunks WHERE chunks.feed = feeds.feed);
     CREATE TABLE chunks2 (id INTEGER PRIMARY KEY, n INTEGER NOT NULL,
                           first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
                           body BLOB NOT NULL);
     INSERT INTO chunks2 SELECT ((hour / 3600000) << 32) | feed, n, first_seq, last_seq, body
       FROM chunks ORDER BY hour, feed;
     DROP TABLE chunks;
     ALTER TABLE chunks2 RENAME TO chunks;
     CREATE TABLE rollups2 (res INTEGER NOT NULL, p INTEGER NOT NULL, feed INTEGER NOT NULL,
                            t INTEGER NOT NULL, n INTEGER NOT NULL, tmin REAL, tmax REAL,
                            tsum REAL, hn INTEGER NOT NULL, hmin REAL, hmax REAL, hsum REAL,
                            PRIMARY KEY (res, p, feed, t)) WITHOUT ROWID;
     INSERT OR REPLACE INTO meta (key, value)
       SELECT 'rolled_day', COALESCE(
         (SELECT MAX(t) / 86400000 * 86400000 FROM rollups WHERE res = 60),
         (SELECT MAX(t) / 86400000 * 86400000 + 86400000 FROM rollups), 0);
     INSERT INTO rollups2
       SELECT res, CASE res WHEN 60 THEN t / 3600000 * 3600000 ELSE t / 86400000 * 86400000 END,
              feed, t, n, tmin, tmax, tsum, hn, hmin, hmax, hsum
       FROM rollups
       WHERE res = 60 OR t < (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'rolled_day')
       ORDER BY 1, 2, 3, 4;
     DROP TABLE rollups;
     ALTER TABLE rollups2 RENAME TO rollups;",
];

/// The key of `feed`'s chunk for the hour starting at `hour` (ms): hours in order, then feeds.
pub fn chunk_id(hour: i64, feed: u32) -> i64 {
    (hour.div_euclid(3_600_000) << 32) | i64::from(feed)
}

/// The hour (ms) and feed of a chunk key.
pub fn chunk_key(id: i64) -> (i64, u32) {
    ((id >> 32) * 3_600_000, (id & 0xffff_ffff) as u32)
}

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
        let done = conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {to}; COMMIT;"
        ));
        if let Err(e) = done {
            let _ = conn.execute_batch("ROLLBACK");
            let why = format!("migration to version {to}: {e}");
            // Only a damaged file is set aside; a full disk or an I/O error leaves the store
            // as it was (the service does not start, and says why).
            return Err(if is_corruption(&e) {
                StoreError::Corrupt(why)
            } else {
                StoreError::Io(why)
            });
        }
    }
    Ok(())
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
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
