//! The writer thread: the only connection that writes. It gathers readings and alert events
//! and commits them every `commit_interval` in one transaction (never one per reading: the SD
//! card), then does a bounded piece of upkeep: compacting the log's finished hours into
//! per-unit chunks and rollups, pruning by age, and keeping to the disk budget. A commit that
//! fails (a full disk) keeps what it had and is retried at the next interval; what no longer
//! fits the queue is counted as dropped from history.

use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;
use tracing::{error, info, warn};

use super::compact::DAY_MS;
use super::record::{self, FeedKey};
use super::schema::chunk_id;
use super::{AlertEvent, Item, Restored, StorageConfig, StoreError, StoreHealth};
use crate::core::reading::SensorReading;

/// After a crash every unit's `seq` continues this far past its last committed one, so that no
/// number a client may have seen (uncommitted, lost) is given to another reading. More
/// readings than this are never uncommitted at once (see [`MAX_PENDING`]).
pub const CRASH_SEQ_GAP: u64 = 1_000_000;
/// The writer commits early when this many readings wait (queue and pending together stay far
/// below [`CRASH_SEQ_GAP`]).
const MAX_PENDING: usize = 100_000;
/// Upkeep deletes at most this many rows per step, so no step stalls the writer for long.
const PRUNE_BATCH: usize = 500;

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// Decides the epoch (continue the stored one unless history was dropped before a crash),
/// reads what the hub restores, and marks the store as running (not clean).
pub fn start_epoch(conn: &Connection, fresh: &str) -> Result<(Restored, String), StoreError> {
    let stored = meta(conn, "epoch")?;
    let clean = meta(conn, "clean")?.as_deref() == Some("1");
    let dropped = meta(conn, "dropped")?.is_some_and(|d| d != "0");
    let keep = stored.clone().filter(|_| clean || !dropped);
    let latest = super::query::latest_all(conn)?;
    let mut seqs: HashMap<String, u64> = HashMap::new();
    if let Some(e) = &keep {
        for r in &latest {
            if r.id.starts_with(&format!("{e}-")) {
                seqs.insert(r.unit_id.to_string(), r.seq);
            }
        }
        if clean {
            let at_close: Vec<(String, u64)> = meta(conn, "seqs")?
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            for (unit, seq) in at_close {
                let e = seqs.entry(unit).or_default();
                *e = (*e).max(seq);
            }
        } else {
            for s in seqs.values_mut() {
                *s += CRASH_SEQ_GAP;
            }
        }
    }
    let epoch = keep.clone().unwrap_or_else(|| fresh.to_owned());
    conn.execute_batch("BEGIN")?;
    set_meta(conn, "epoch", &epoch)?;
    set_meta(conn, "clean", "0")?;
    set_meta(conn, "dropped", "0")?;
    conn.execute_batch("COMMIT")?;
    if stored.is_some() && keep.is_none() {
        warn!(old = ?stored, epoch = %epoch, "history store: readings were dropped before an unclean stop; starting a new epoch");
    }
    let restored = Restored {
        epoch: keep,
        clean,
        latest,
        seqs: seqs.into_iter().collect(),
    };
    Ok((restored, epoch))
}

pub fn spawn(
    conn: Connection,
    rx: Receiver<Item>,
    queued: Arc<AtomicUsize>,
    config: StorageConfig,
    health: Arc<StoreHealth>,
    epoch: String,
) -> Result<(), StoreError> {
    if let Some(pages) = config.max_pages {
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    }
    let w = Writer {
        conn,
        config,
        health,
        epoch: epoch.into(),
        feeds: HashMap::new(),
        pending: Vec::new(),
        alerts: Vec::new(),
        dropped_seen: 0,
    };
    w.update_size();
    std::thread::Builder::new()
        .name("sensorcast-store".into())
        .spawn(move || {
            lower_priority();
            w.run(rx, queued)
        })
        .map_err(|e| StoreError::Io(format!("cannot start the store's writer: {e}")))?;
    Ok(())
}

/// The writer runs at nice 19: encoding, deflating, committing and compacting history take
/// the CPU that live delivery leaves, so a commit's burst never delays readings on a busy box
/// (at 80 000 readings/s on one core it did). Linux's nice is per thread. Where the call is
/// refused (a seccomp filter without `setpriority`), the writer runs at normal priority.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
        warn!(error = %e, "history store: could not lower the writer's priority; it runs at normal priority");
    }
}

struct Writer {
    conn: Connection,
    config: StorageConfig,
    health: Arc<StoreHealth>,
    epoch: Arc<str>,
    feeds: HashMap<FeedKey, u32>,
    pending: Vec<Arc<SensorReading>>,
    alerts: Vec<AlertEvent>,
    /// `health.readings_dropped` as last recorded in `meta.dropped`.
    dropped_seen: u64,
}

impl Writer {
    fn run(mut self, rx: Receiver<Item>, queued: Arc<AtomicUsize>) {
        let interval = self.config.commit_interval;
        let mut next = Instant::now() + interval;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Item::Reading(r)) => {
                    queued.fetch_sub(1, Relaxed);
                    self.pending.push(r);
                    if self.pending.len() >= MAX_PENDING {
                        self.commit();
                        if self.pending.len() >= MAX_PENDING {
                            self.drop_pending();
                        }
                    }
                }
                Ok(Item::Alert(a)) => self.alerts.push(a),
                Ok(Item::Flush(reply)) => {
                    self.commit();
                    let _ = reply.send(());
                }
                Ok(Item::Close(seqs, reply)) => {
                    self.close(&seqs);
                    let _ = reply.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.commit();
                    return;
                }
            }
            // Checked after every item too: a queue that never empties (the writer behind, at
            // nice 19) would otherwise never time out, and never commit or do upkeep.
            if Instant::now() >= next {
                self.commit();
                self.upkeep();
                next = Instant::now() + interval;
            }
        }
    }

    /// The writer cannot keep what it holds (commits fail and more keeps coming): the oldest
    /// half is dropped from history, counted.
    fn drop_pending(&mut self) {
        let n = self.pending.len() / 2;
        self.pending.drain(..n);
        self.health.readings_dropped.fetch_add(n as u64, Relaxed);
        self.health.behind.store(true, Relaxed);
        warn!(
            dropped = n,
            "history store: commits failing, readings dropped from history"
        );
    }

    fn close(&mut self, seqs: &[(String, u64)]) {
        self.commit();
        let done = (|| -> Result<(), StoreError> {
            self.conn.execute_batch("BEGIN")?;
            set_meta(
                &self.conn,
                "seqs",
                &serde_json::to_string(seqs).unwrap_or_default(),
            )?;
            set_meta(
                &self.conn,
                "clean",
                if self.pending.is_empty() { "1" } else { "0" },
            )?;
            self.conn.execute_batch("COMMIT")?;
            self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
            Ok(())
        })();
        match done {
            Ok(()) => info!("history store closed"),
            Err(e) => error!(error = %e, "history store: could not record a clean shutdown"),
        }
    }

    /// One transaction with everything gathered since the last one. On failure it is all kept
    /// for the next try.
    fn commit(&mut self) {
        let dropped = self.health.readings_dropped.load(Relaxed);
        if self.pending.is_empty() && self.alerts.is_empty() && dropped == self.dropped_seen {
            return;
        }
        let result = self.try_commit(dropped - self.dropped_seen);
        match result {
            Ok(()) => {
                let n = self.pending.len() as u64;
                self.health.readings_stored.fetch_add(n, Relaxed);
                self.health
                    .alert_events_stored
                    .fetch_add(self.alerts.len() as u64, Relaxed);
                self.health.commits.fetch_add(1, Relaxed);
                self.health.failing.store(false, Relaxed);
                self.health.behind.store(false, Relaxed);
                self.pending.clear();
                self.alerts.clear();
                self.dropped_seen = dropped;
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                // Feed rows added by the rolled-back transaction are gone: look them up again.
                self.feeds.clear();
                self.health.commit_errors.fetch_add(1, Relaxed);
                if !self.health.failing.swap(true, Relaxed) {
                    error!(error = %e, "history store: commit failed; retrying every commit interval, live delivery goes on");
                }
                *self.health.last_error.lock().expect("store health") =
                    Some(format!("commit failed: {e}"));
            }
        }
    }

    fn try_commit(&mut self, dropped: u64) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN")?;
        let mut body = Vec::with_capacity(self.pending.len() * 64);
        let (mut t_min, mut t_max) = (i64::MAX, i64::MIN);
        let pending = std::mem::take(&mut self.pending);
        for r in &pending {
            let feed = self.feed_of(r);
            let feed = match feed {
                Ok(f) => f,
                Err(e) => {
                    self.pending = pending;
                    return Err(e);
                }
            };
            let t = record::millis(r.received_at);
            t_min = t_min.min(t);
            t_max = t_max.max(t);
            record::encode(feed, r, &mut body);
        }
        self.pending = pending;
        if !body.is_empty() {
            self.conn.execute(
                "INSERT INTO log (t_min, t_max, body, packed) VALUES (?1, ?2, ?3, 1)",
                params![t_min, t_max, record::pack_log(&body)],
            )?;
        }
        for a in &self.alerts {
            self.conn.execute(
                "INSERT INTO alert_events (alert_id, unit, org, site, at, kind, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    a.alert_id,
                    &*a.unit,
                    &*a.org,
                    &*a.site,
                    record::millis(a.at),
                    a.kind,
                    a.body.to_string()
                ],
            )?;
        }
        if dropped > 0 {
            self.conn.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + ?1 WHERE key = 'dropped'",
                [dropped as i64],
            )?;
        }
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// The feed number of `r`'s unit, organization, site and this epoch (a row is added the
    /// first time, inside the commit's transaction).
    fn feed_of(&mut self, r: &SensorReading) -> Result<u32, StoreError> {
        // The reading's own epoch (`{epoch}-{unitId}-{seq}`): in cluster mode the cluster's,
        // which may change while the store runs.
        // The usual case, the store's epoch, without building the suffix.
        let ours =
            r.id.strip_prefix(&*self.epoch)
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|rest| rest.strip_prefix(&*r.unit_id))
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|seq| seq.parse::<u64>().ok() == Some(r.seq));
        let epoch = if ours {
            self.epoch.clone()
        } else {
            let suffix = format!("-{}-{}", r.unit_id, r.seq);
            match r.id.strip_suffix(&suffix) {
                Some(e) => e.into(),
                None => self.epoch.clone(),
            }
        };
        let key = FeedKey {
            unit: r.unit_id.clone(),
            org: r.organization_id.clone(),
            site: r.site_id.clone(),
            epoch,
        };
        if let Some(f) = self.feeds.get(&key) {
            return Ok(*f);
        }
        let params = params![&*key.unit, &*key.org, &*key.site, &*key.epoch];
        let found: Option<u32> = self
            .conn
            .query_row(
                "SELECT feed FROM feeds WHERE unit = ?1 AND org = ?2 AND site = ?3 AND epoch = ?4",
                params,
                |row| row.get(0),
            )
            .optional()?;
        let feed = match found {
            Some(f) => f,
            None => {
                self.conn.execute(
                    "INSERT INTO feeds (unit, org, site, epoch) VALUES (?1, ?2, ?3, ?4)",
                    params,
                )?;
                self.conn.last_insert_rowid() as u32
            }
        };
        self.feeds.insert(key, feed);
        Ok(feed)
    }

    /// Compaction, pruning and the disk budget, each bounded. Errors are logged and retried
    /// at the next interval.
    fn upkeep(&mut self) {
        type Step = fn(&mut Writer) -> Result<(), StoreError>;
        if self.health.failing.load(Relaxed) {
            return;
        }
        let steps: [(&str, Step); 3] = [
            ("compaction", Writer::compact),
            ("pruning", Writer::prune),
            ("disk budget", Writer::budget),
        ];
        for (what, step) in steps {
            if let Err(e) = step(self) {
                let _ = self.conn.execute_batch("ROLLBACK");
                warn!(error = %e, step = what, "history store upkeep failed; retrying later");
            }
        }
        self.update_size();
    }

    /// Moves every log row that lies wholly in a past hour into per-unit chunks and rollups.
    pub(super) fn compact(&mut self) -> Result<(), StoreError> {
        let hour_start = now_ms().div_euclid(HOUR_MS) * HOUR_MS;
        let damaged = super::compact::compact_before(&self.conn, hour_start)?;
        if damaged > 0 {
            self.health.damaged.fetch_add(damaged, Relaxed);
            warn!(
                rows = damaged,
                "history store: damaged rows met by the compaction were dropped"
            );
        }
        Ok(())
    }

    fn prune(&mut self) -> Result<(), StoreError> {
        let now = now_ms();
        let raw_cut = now - self.config.raw_retention.as_millis() as i64;
        let roll_cut = now - self.config.rollup_retention.as_millis() as i64;
        let limit = PRUNE_BATCH as i64;
        self.conn.execute_batch("BEGIN")?;
        self.conn.execute(
            "DELETE FROM chunks WHERE id IN
               (SELECT id FROM chunks WHERE id < ?1 ORDER BY id LIMIT ?2)",
            params![chunk_id(raw_cut - HOUR_MS, 0), limit],
        )?;
        // 1 min rollups cost as much as the raw readings of a sensor reporting every 10 s:
        // they are kept as long as raw readings, 15 min and 1 h ones for rollup_retention.
        // A period goes once all of it is past the cut (an hour for 1 min rollups, a day for
        // the others).
        // 1 min rollups of a day whose coarse rollups are not stored yet stay until they are
        // (they are what those are computed from), even past raw retention.
        let rolled = super::compact::rolled_day(&self.conn)?;
        for (res, period, cut) in [
            (60, HOUR_MS, raw_cut.min(rolled + HOUR_MS - 1)),
            (900, DAY_MS, roll_cut),
            (3600, DAY_MS, roll_cut),
        ] {
            self.conn.execute(
                "DELETE FROM rollups WHERE (res, p, feed, t) IN
                   (SELECT res, p, feed, t FROM rollups WHERE res = ?1 AND p <= ?2
                    ORDER BY p LIMIT ?3)",
                params![res, cut - period, limit],
            )?;
        }
        self.conn.execute(
            "DELETE FROM alert_events WHERE id IN
               (SELECT id FROM alert_events WHERE at < ?1 ORDER BY id LIMIT ?2)",
            params![roll_cut, limit],
        )?;
        self.conn.execute_batch("COMMIT")?;
        self.vacuum_if_sparse()?;
        Ok(())
    }

    /// Gives free pages back to the file system only when they are many (an eighth of the
    /// file, at least 10 MiB): pages freed by compaction and pruning are reused by the next
    /// writes, and moving pages to shrink the file writes each of them again (the SD card).
    fn vacuum_if_sparse(&self) -> Result<(), StoreError> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        if free > (pages / 8).max(2560) {
            self.conn
                .execute_batch(&format!("PRAGMA incremental_vacuum({PRUNE_BATCH})"))?;
        }
        Ok(())
    }

    /// Past `max_disk`, the oldest raw chunks go first (then the oldest rollups), an hour at
    /// a time until the store fits, at most [`PRUNE_BATCH`] rows per interval; counted and
    /// logged.
    fn budget(&mut self) -> Result<(), StoreError> {
        let mut used = used_bytes(&self.conn)?;
        if used <= self.config.max_disk {
            return Ok(());
        }
        let (mut chunks, mut rollups) = (0, 0);
        while used > self.config.max_disk && chunks + rollups < PRUNE_BATCH {
            let n = self.conn.execute(
                "DELETE FROM chunks WHERE id < ((SELECT MIN(id) FROM chunks) >> 32 << 32) + (1 << 32)",
                [],
            )?;
            chunks += n;
            if n == 0 {
                let r = self.conn.execute(
                    "DELETE FROM rollups WHERE (res, p, feed, t) IN
                       (SELECT res, p, feed, t FROM rollups
                        WHERE res != 60 OR p < ?1 ORDER BY res, p LIMIT 100)",
                    [super::compact::rolled_day(&self.conn)?],
                )?;
                if r == 0 {
                    break;
                }
                rollups += r;
            }
            used = used_bytes(&self.conn)?;
        }
        self.health
            .pruned_for_budget
            .fetch_add((chunks + rollups) as u64, Relaxed);
        warn!(
            used,
            max_disk = self.config.max_disk,
            chunks,
            rollups,
            "history store over its disk budget: oldest history deleted"
        );
        self.conn
            .execute_batch(&format!("PRAGMA incremental_vacuum({})", PRUNE_BATCH * 4))?;
        Ok(())
    }

    fn update_size(&self) {
        if let Ok(used) = used_bytes(&self.conn) {
            self.health.bytes_used.store(used, Relaxed);
        }
    }
}

/// Bytes of the file in use (free pages excluded), plus the WAL.
pub fn used_bytes(conn: &Connection) -> Result<u64, StoreError> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}
