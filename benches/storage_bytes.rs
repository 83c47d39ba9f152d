//! Bytes written to disk per stored reading (`/proc/self/io` `write_bytes`: the database, its
//! WAL and checkpoints), the measurement: 500 units, 50 readings/s, a week of history
//! already stored, commits every 10 s, for `MINUTES` minutes (default 10); then what the hourly
//! compaction of those readings writes, and a `get:history` of 24 h raw for one unit (p99 of
//! 50 queries).
//!
//! `cargo bench --bench storage_bytes` (env `MINUTES`, `PREFILL_DAYS`, `DIR`).

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
    let fast = StorageConfig {
        commit_interval: Duration::from_millis(200),
        queue: 400_000,
        max_disk: 64 << 30,
        ..StorageConfig::default()
    };
    // A week of history, an hour at a time, each hour compacted.
    let (store, _) = Store::open(&fast, &dir, "E").unwrap();
    let start = Utc::now() - Ch::days(days as i64);
    let per_hour = RATE * 3600;
    let t0 = Instant::now();
    let mut i = 0;
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
        compact_all(store.path()).unwrap();
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

    // 24 h raw of one unit (a week stored): p99 of 50 queries.
    let mut times = Vec::new();
    let mut points = 0;
    for k in 0..50 {
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
    times.sort();
    println!(
        "get:history 24 h raw, one unit ({points} points): p50 {:.1?}, p99 {:.1?}",
        times[25], times[49]
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
