//! Bytes written to disk per stored reading (`/proc/self/io` `write_bytes`: the database, its
//! WAL and checkpoints), the measurement: 500 units, 50 readings/s, a week of history
//! already stored, commits every 10 s, for `MINUTES` minutes (default 10); then what the hourly
//! compaction of those readings writes, and a `get:history` of 24 h raw for one unit (p99 of
//! 200 queries, and the first alone: a cold cache).
//!
//! `cargo bench --bench storage_bytes` (env `MINUTES`, `PREFILL_DAYS`, `DIR`).
//!
//! `ENGINE=rows`: the alternative measured against it, the textbook schema: one SQLite row per
//! reading keyed `(unit, seq)` (the same binary record as its value), WAL, one transaction per
//! 10 s, with `PREFILL_DAYS` of history (default 1 here: 4.3 M rows).

use chrono::{Duration as Ch, Utc};
use sensorcast::core::reading::SensorReading;
use sensorcast::storage::{compact_all, Resolution, StorageConfig, Store};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

const UNITS: u64 = 500;
const RATE: u64 = 50;

fn write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes")
}

fn reading(i: u64, at: chrono::DateTime<Utc>) -> Arc<SensorReading> {
    let unit = format!("unit-{:03}", i % UNITS);
    let seq = i / UNITS + 1;
    Arc::new(SensorReading {
        id: format!("E-{unit}-{seq}"),
        seq,
        unit_id: unit.as_str().into(),
        site_id: format!("site-{}", i % UNITS / 50).as_str().into(),
        organization_id: "org-1".into(),
        device_id: format!("A84041{:010X}", i % UNITS).as_str().into(),
        temperature: ((i * 7919) % 400) as f64 / 10.0 - 20.0,
        humidity: i
            .is_multiple_of(3)
            .then_some(((i * 31) % 600) as f64 / 10.0 + 20.0),
        battery: Some(95.0),
        signal_strength: Some(-80.0),
        recorded_at: at - Ch::milliseconds(3),
        received_at: at,
        source: "ttn",
        extra: Vec::new(),
        retained: false,
        door: None,
    })
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let minutes = env("MINUTES", 10);
    let days = env("PREFILL_DAYS", 7);
    let dir = match std::env::var("DIR") {
        Ok(d) => std::path::PathBuf::from(d),
        Err(_) => tempfile::tempdir().unwrap().keep(),
    };
    std::fs::create_dir_all(&dir).unwrap();
    if std::env::var("ENGINE").as_deref() == Ok("rows") {
        return rows::run(&dir, minutes, env("PREFILL_DAYS", 1)).await;
    }
    let fast = StorageConfig {
        commit_interval: Duration::from_millis(200),
        queue: 400_000,
        max_disk: 64 << 30,
        ..StorageConfig::default()
    };
    // A week of history, an hour at a time, each hour compacted (`PREFILL_DAYS=0` keeps what
    // `DIR` holds from an earlier run).
    let (store, _) = Store::open(&fast, &dir, "E").unwrap();
    // Whole hours ending over an hour ago, so that the writer compacts each one.
    let now_hour = Utc::now().timestamp() / 3600 * 3600;
    let start = chrono::DateTime::from_timestamp(now_hour, 0).unwrap()
        - Ch::hours(1)
        - Ch::days(days as i64);
    let per_hour = RATE * 3600;
    let t0 = Instant::now();
    // Without a prefill, numbering goes on after a week's (the earlier run's).
    let mut i = if days == 0 { 7 * 24 * per_hour } else { 0 };
    let mut compaction_bytes = 0;
    for h in 0..days * 24 {
        let hour = start + Ch::hours(h as i64);
        for k in 0..per_hour {
            store.record(reading(
                i,
                hour + Ch::milliseconds((k * 1000 / RATE) as i64),
            ));
            i += 1;
        }
        store.flush().await;
        // The writer compacts past hours at its next upkeep: wait for it, and count what the
        // compaction writes (WAL and checkpoint: the log's commits are checkpointed first).
        let log = rusqlite::Connection::open(store.path()).unwrap();
        let checkpoint = || {
            let _ = log.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        };
        checkpoint();
        let before = write_bytes();
        while log
            .query_row("SELECT COUNT(*) FROM log", [], |r| r.get::<_, i64>(0))
            .unwrap_or(1)
            > 0
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        checkpoint();
        if h + 24 >= days * 24 {
            compaction_bytes += write_bytes() - before;
        }
    }
    if days > 0 {
        println!(
            "hourly compaction over the last prefilled day (24 passes of {per_hour} readings, one daily roll): {:.0} bytes/reading",
            compaction_bytes as f64 / (24 * per_hour) as f64
        );
    }
    store.close(Vec::new()).await;
    drop(store);
    let size = std::fs::metadata(dir.join("sensorcast.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "prefill: {i} readings ({days} d) in {:.0?}, file {:.1} MiB",
        t0.elapsed(),
        size as f64 / 1048576.0
    );

    // Anything left in the log (a previous run's) is compacted before measuring.
    compact_all(&dir.join("sensorcast.db")).unwrap();

    // The live phase: 50 readings/s for `minutes`, default commit interval.
    let (store, _) = Store::open(&StorageConfig::default(), &dir, "E").unwrap();
    let before = write_bytes();
    let n = minutes * 60 * RATE;
    let begin = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    for _ in 0..n {
        tick.tick().await;
        store.record(reading(i, Utc::now()));
        i += 1;
    }
    store.flush().await;
    let live = write_bytes() - before;
    println!(
        "live: {n} readings in {:.0?}, {} commits, {live} bytes written: {:.0} bytes/reading",
        begin.elapsed(),
        store.health().commits.load(Relaxed),
        live as f64 / n as f64
    );

    // 24 h raw of one unit (a week stored): p99 of 200 queries.
    let mut times = Vec::new();
    let mut points = 0;
    for k in 0..200 {
        let unit = format!("unit-{:03}", k % UNITS);
        let q = Instant::now();
        let h = store
            .history(
                &unit,
                "org-1",
                &format!("site-{}", k % UNITS / 50),
                Utc::now() - Ch::hours(24),
                Utc::now(),
                Resolution::Raw,
                10_000,
            )
            .await
            .unwrap();
        times.push(q.elapsed());
        points = h.points.len();
    }
    let first = times[0];
    times.sort();
    println!(
        "get:history 24 h raw, one unit ({points} points): p50 {:.1?}, p90 {:.1?}, p99 {:.1?} (the first query {first:.1?})",
        times[100], times[180], times[198]
    );
    store.close(Vec::new()).await;
    drop(store);

    // What the hourly compaction writes for the live phase's readings.
    let before = write_bytes();
    compact_all(&dir.join("sensorcast.db")).unwrap();
    let compacted = write_bytes() - before;
    println!(
        "compaction of the live phase: {compacted} bytes: {:.0} bytes/reading; total {:.0} bytes/reading",
        compacted as f64 / n as f64,
        (live + compacted) as f64 / n as f64
    );
}

/// The alternative: a row per reading, keyed by unit then seq.
mod rows {
    use super::*;
    use rusqlite::{params, Connection};
    use sensorcast::storage::record;

    fn insert(conn: &Connection, batch: &[Arc<SensorReading>]) {
        conn.execute_batch("BEGIN").unwrap();
        let mut st = conn
            .prepare_cached("INSERT OR REPLACE INTO readings VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for r in batch {
            let mut body = Vec::new();
            record::encode(0, r, &mut body);
            st.execute(params![
                &*r.unit_id,
                r.seq as i64,
                r.received_at.timestamp_millis(),
                body
            ])
            .unwrap();
        }
        drop(st);
        conn.execute_batch("COMMIT").unwrap();
    }

    pub async fn run(dir: &std::path::Path, minutes: u64, days: u64) {
        let path = dir.join("rows.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -1024;
             CREATE TABLE IF NOT EXISTS readings (unit TEXT NOT NULL, seq INTEGER NOT NULL,
               t INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (unit, seq)) WITHOUT ROWID;",
        )
        .unwrap();
        let per_hour = RATE * 3600;
        let now_hour = Utc::now().timestamp() / 3600 * 3600;
        let start = chrono::DateTime::from_timestamp(now_hour, 0).unwrap() - Ch::days(days as i64);
        let t0 = Instant::now();
        let mut i = 0;
        for h in 0..days * 24 {
            let hour = start + Ch::hours(h as i64);
            let batch: Vec<_> = (0..per_hour)
                .map(|k| reading(i + k, hour + Ch::milliseconds((k * 1000 / RATE) as i64)))
                .collect();
            i += per_hour;
            insert(&conn, &batch);
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        println!(
            "rows: prefill {i} readings ({days} d) in {:.0?}, file {:.1} MiB",
            t0.elapsed(),
            std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0
        );
        let before = write_bytes();
        let n = minutes * 60 * RATE;
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
        let mut batch = Vec::new();
        let mut commit = Instant::now();
        for _ in 0..n {
            tick.tick().await;
            batch.push(reading(i, Utc::now()));
            i += 1;
            if commit.elapsed() >= Duration::from_secs(10) {
                insert(&conn, &batch);
                batch.clear();
                commit = Instant::now();
            }
        }
        insert(&conn, &batch);
        let live = write_bytes() - before;
        println!(
            "rows: live {n} readings, {live} bytes written: {:.0} bytes/reading",
            live as f64 / n as f64
        );
        let mut times = Vec::new();
        let mut st = conn
            .prepare("SELECT body FROM readings WHERE unit = ?1 AND t >= ?2 ORDER BY seq")
            .unwrap();
        let mut points = 0;
        for k in 0..50 {
            let q = Instant::now();
            let since = (Utc::now() - Ch::hours(24)).timestamp_millis();
            let bodies: Vec<Vec<u8>> = st
                .query_map(params![format!("unit-{:03}", k % UNITS), since], |r| {
                    r.get(0)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            points = bodies.len();
            times.push(q.elapsed());
        }
        times.sort();
        println!(
            "rows: 24 h of one unit ({points} points): p50 {:.1?}, p99 {:.1?}",
            times[25], times[49]
        );
    }
}
