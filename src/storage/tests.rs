//! The store on real files: what is written comes back in order, rollups agree with the raw
//! readings, restarts keep epoch and seqs (clean) or skip past what may be lost (crash),
//! corrupt and newer files, retention, the disk budget and the commit cadence.
//!
//! Over 400 lines: The store's behaviours on real files share their reading builders and waits.

use chrono::{Duration as Ch, Utc};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::compact::compact_before;
use super::writer::CRASH_SEQ_GAP;
use super::*;
use crate::core::reading::SensorReading;

fn reading(
    unit: &str,
    org: &str,
    seq: u64,
    at: chrono::DateTime<Utc>,
    t: f64,
) -> Arc<SensorReading> {
    Arc::new(SensorReading {
        id: format!("E-{unit}-{seq}"),
        seq,
        unit_id: unit.into(),
        site_id: "site-1".into(),
        organization_id: org.into(),
        device_id: "dev-1".into(),
        temperature: t,
        humidity: seq.is_multiple_of(2).then_some(40.0 + seq as f64),
        battery: Some(90.0),
        signal_strength: None,
        recorded_at: at - Ch::milliseconds(5),
        received_at: at,
        source: "ttn",
        extra: vec![("co2".into(), 415.0)],
        retained: false,
        door: None,
    })
}

fn config(interval_ms: u64) -> StorageConfig {
    StorageConfig {
        commit_interval: Duration::from_millis(interval_ms),
        ..StorageConfig::default()
    }
}

fn open(dir: &std::path::Path, cfg: &StorageConfig) -> (Store, Restored) {
    Store::open(cfg, dir, "E").expect("store opens")
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `SELECT COUNT(*) ...` (or any one integer) on the store's file, through its own connection.
fn count_in(path: &std::path::Path, sql: &str) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// The stored readings, with ids and times as written (JSON, as a client sees them).
fn json(v: &[SensorReading]) -> Vec<serde_json::Value> {
    v.iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

#[tokio::test]
async fn readings_come_back_in_order_from_log_and_chunks_with_rollups_that_match() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), &config(60_000));
    let start = Utc::now() - Ch::hours(3);
    let mut written = Vec::new();
    for i in 0..200u64 {
        let r = reading(
            "u1",
            "org-a",
            i + 1,
            start + Ch::seconds(i as i64 * 50),
            -18.0 + (i % 7) as f64,
        );
        store.record(r.clone());
        store.record(reading(
            "u2",
            "org-a",
            i + 1,
            start + Ch::seconds(i as i64 * 50),
            4.0,
        ));
        written.push((*r).clone());
    }
    store.flush().await;
    let to = Utc::now();
    let all = |s: &Store| {
        let s = s.clone();
        async move {
            s.history(
                "u1",
                "org-a",
                "site-1",
                start - Ch::minutes(1),
                to,
                Resolution::Raw,
                10_000,
            )
            .await
            .unwrap()
        }
    };
    let before = all(&store).await;
    let Points::Raw(got) = &before.points else {
        panic!("raw points")
    };
    assert_eq!(json(got), json(&written), "from the log");
    let hourly_from_log = store
        .buckets(
            "u1",
            "org-a",
            "site-1",
            start - Ch::hours(1),
            to,
            Resolution::Quarter,
        )
        .await
        .unwrap();

    // Compact everything (as the writer does at each hour) and read again.
    let conn = schema::open_reader(store.path()).unwrap();
    drop(conn);
    let (conn, _) = schema::open(store.path()).unwrap();
    compact_before(&conn, Utc::now().timestamp_millis() + 1).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "the log was compacted");
    let after = all(&store).await;
    let Points::Raw(got) = &after.points else {
        panic!("raw points")
    };
    assert_eq!(json(got), json(&written), "from chunks");
    let hourly_from_chunks = store
        .buckets(
            "u1",
            "org-a",
            "site-1",
            start - Ch::hours(1),
            to,
            Resolution::Quarter,
        )
        .await
        .unwrap();
    assert_eq!(
        hourly_from_log, hourly_from_chunks,
        "rollups from the log and from the table agree"
    );

    // Rollups match the raw readings, bucket by bucket.
    let width = Resolution::Quarter.millis();
    let total: u64 = hourly_from_chunks.iter().map(|b| b.n).sum();
    assert_eq!(total, 200);
    for b in &hourly_from_chunks {
        let inside: Vec<&SensorReading> = written
            .iter()
            .filter(|r| r.received_at.timestamp_millis().div_euclid(width) * width == b.t)
            .collect();
        assert_eq!(b.n as usize, inside.len());
        let min = inside
            .iter()
            .map(|r| r.temperature)
            .fold(f64::MAX, f64::min);
        let max = inside
            .iter()
            .map(|r| r.temperature)
            .fold(f64::MIN, f64::max);
        let mean = inside.iter().map(|r| r.temperature).sum::<f64>() / inside.len() as f64;
        assert_eq!((b.tmin, b.tmax), (min, max));
        assert!((b.point().mean - mean).abs() < 0.001);
        // A bucket may hold only readings without humidity (every other one has none; an
        // edge bucket may hold a single reading): then it has no humidity mean.
        let hums: Vec<f64> = inside.iter().filter_map(|r| r.humidity).collect();
        match b.point().humidity_mean {
            None => assert!(hums.is_empty(), "{b:?}"),
            Some(m) => {
                let hmean = hums.iter().sum::<f64>() / hums.len() as f64;
                assert!((m - hmean).abs() < 0.001, "{b:?}");
            }
        }
    }

    // A narrower window and the point limit.
    let some = store
        .history("u1", "org-a", "site-1", start, to, Resolution::Raw, 50)
        .await
        .unwrap();
    assert!(some.truncated);
    assert_eq!(some.points.len(), 50);
}

#[tokio::test]
async fn history_of_a_unit_under_another_owner_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), &config(60_000));
    let now = Utc::now();
    store.record(reading("u1", "org-a", 1, now - Ch::seconds(10), 3.0));
    store.flush().await;
    let h = store
        .history(
            "u1",
            "org-b",
            "site-1",
            now - Ch::hours(1),
            now,
            Resolution::Raw,
            100,
        )
        .await
        .unwrap();
    assert!(h.points.is_empty(), "org-b sees nothing of org-a's unit");
    let h = store
        .history(
            "u1",
            "org-a",
            "site-2",
            now - Ch::hours(1),
            now,
            Resolution::Minute,
            100,
        )
        .await
        .unwrap();
    assert!(h.points.is_empty(), "nor does another site");
    let after = store
        .readings_after("u1", "org-b", "site-1", 0, 100)
        .await
        .unwrap();
    assert_eq!(after, Some((Vec::new(), 0)));
}

#[tokio::test]
async fn a_clean_close_keeps_epoch_and_seqs_and_a_crash_skips_past_what_may_be_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(60_000);
    let (store, first) = open(dir.path(), &cfg);
    assert_eq!(first.epoch, None, "a new store has no epoch to continue");
    assert_eq!(store.epoch(), "E");
    let now = Utc::now();
    for seq in 1..=5 {
        store.record(reading("u1", "org-a", seq, now, 1.0));
    }
    // The hub numbered up to 7 (6 and 7 were dropped from history, say).
    store.close(vec![("u1".into(), 7)]).await;
    drop(store);

    let (store, again) = Store::open(&cfg, dir.path(), "F").unwrap();
    assert!(again.clean);
    assert_eq!(again.epoch.as_deref(), Some("E"), "the epoch is kept");
    assert_eq!(store.epoch(), "E");
    assert_eq!(again.seqs, vec![("u1".to_string(), 7)]);
    assert_eq!(again.latest.len(), 1);
    assert_eq!(again.latest[0].seq, 5);
    assert_eq!(again.latest[0].id, "E-u1-5");
    let (missed, through) = store
        .readings_after("u1", "org-a", "site-1", 2, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        missed.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(through, 5);
    store.record(reading("u1", "org-a", 8, now, 1.0));
    store.flush().await;
    // Dropping the handle without close: the writer commits what it has but the stop is not
    // clean (like a SIGKILL after a commit).
    drop(store);
    let path = dir.path().join("sensorcast.db");
    wait_for("the writer to stop", || {
        rusqlite::Connection::open(&path)
            .and_then(|c| {
                c.query_row("SELECT value FROM meta WHERE key='clean'", [], |r| {
                    r.get::<_, String>(0)
                })
            })
            .is_ok()
    })
    .await;
    let (_store, crashed) = Store::open(&cfg, dir.path(), "G").unwrap();
    assert!(!crashed.clean);
    assert_eq!(crashed.epoch.as_deref(), Some("E"));
    assert_eq!(crashed.seqs, vec![("u1".to_string(), 8 + CRASH_SEQ_GAP)]);
}

#[tokio::test]
async fn a_crash_after_history_was_dropped_starts_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        queue: 1,
        ..config(60_000)
    };
    let (store, _) = open(dir.path(), &cfg);
    let now = Utc::now();
    for seq in 1..=2000 {
        store.record(reading("u1", "org-a", seq, now, 1.0));
    }
    assert!(
        store.health().readings_dropped.load(Relaxed) > 0,
        "a queue of 1 overflows"
    );
    assert!(store.health().problem().is_some(), "and /health says so");
    store.flush().await;
    drop(store);
    let path = dir.path().join("sensorcast.db");
    wait_for("the drop to be recorded", || {
        rusqlite::Connection::open(&path)
            .and_then(|c| {
                c.query_row("SELECT value FROM meta WHERE key='dropped'", [], |r| {
                    r.get::<_, String>(0)
                })
            })
            .is_ok_and(|d| d != "0")
    })
    .await;
    let (store, r) = Store::open(&cfg, dir.path(), "NEW").unwrap();
    assert_eq!(r.epoch, None);
    assert_eq!(store.epoch(), "NEW");
}

#[tokio::test]
async fn a_corrupt_file_is_set_aside_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sensorcast.db");
    std::fs::write(&path, vec![0x5a; 10_000]).unwrap();
    let (store, _) = open(dir.path(), &config(60_000));
    let problem = store.health().problem().expect("reported");
    assert!(problem.contains("corrupt-"), "{problem}");
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("sensorcast.db.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), vec![0x5a; 10_000]);
    store.record(reading("u1", "org-a", 1, Utc::now(), 1.0));
    store.flush().await;
    assert_eq!(
        store.health().readings_stored.load(Relaxed),
        1,
        "the new store works"
    );
    store.close(Vec::new()).await;

    let newer = tempfile::tempdir().unwrap();
    let p = newer.path().join("sensorcast.db");
    rusqlite::Connection::open(&p)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let err = Store::open(&config(60_000), newer.path(), "E")
        .err()
        .expect("refused");
    assert!(err.to_string().contains("newer sensorcast"), "{err}");
    assert!(p.exists(), "a newer store is left where it is");
}

#[test]
fn migrations_take_an_empty_file_to_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.db");
    let (conn, problem) = schema::open(&p).unwrap();
    assert_eq!(problem, None);
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema::VERSION);
    drop(conn);
    let (conn, _) = schema::open(&p).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type='table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 6, "reopening does not migrate again");
}

#[tokio::test]
async fn commits_follow_the_interval_not_the_readings() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), &config(300));
    for seq in 1..=1000 {
        store.record(reading("u1", "org-a", seq, Utc::now(), 1.0));
    }
    wait_for("the readings to be committed", || {
        store.health().readings_stored.load(Relaxed) == 1000
    })
    .await;
    let commits = store.health().commits.load(Relaxed);
    assert!(
        (1..=3).contains(&commits),
        "1000 readings in {commits} commits"
    );
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as u64, commits, "one log row per commit");
    // Nothing arriving: no commit at all (no write to the card).
    let idle = store.health().commits.load(Relaxed);
    let before = std::time::Instant::now();
    wait_for("three intervals", || {
        before.elapsed() > Duration::from_millis(1000)
    })
    .await;
    assert_eq!(store.health().commits.load(Relaxed), idle);
}

#[tokio::test]
async fn retention_and_the_disk_budget_prune_the_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        raw_retention: Duration::from_secs(2 * 86_400),
        rollup_retention: Duration::from_secs(10 * 86_400),
        ..config(200)
    };
    let (store, _) = open(dir.path(), &cfg);
    let now = Utc::now();
    // One reading per hour over 20 days.
    for h in 0..(20 * 24) {
        store.record(reading(
            "u1",
            "org-a",
            h + 1,
            now - Ch::hours(20 * 24 - h as i64),
            2.0,
        ));
    }
    store.flush().await;
    // The writer compacts past hours at its next upkeep, then prunes by age.
    let path = store.path().to_owned();
    let count = |sql: &str| count_in(&path, sql);
    wait_for("raw readings past 2 days to go", || {
        count("SELECT COUNT(*) FROM log") == 0
            && count("SELECT (MIN(id) >> 32) * 3600000 FROM chunks")
                >= (now - Ch::days(2) - Ch::hours(2)).timestamp_millis()
    })
    .await;
    // Coarse rollups go a whole UTC day at a time, once all of it is past the cut.
    let cut = (now - Ch::days(10)).timestamp_millis();
    wait_for("rollups past 10 days to go", || {
        count(&format!(
            "SELECT COUNT(*) FROM rollups WHERE res = 3600 AND p <= {}",
            cut - 86_400_000
        )) == 0
    })
    .await;
    let oldest_hour: i64 = count("SELECT MIN(t) FROM rollups WHERE res = 3600");
    assert!(oldest_hour > cut - 86_400_000 - 3_600_000);
    assert!(
        oldest_hour < cut,
        "the day the cut falls in is kept whole: {oldest_hour} vs {cut}"
    );
    assert!(
        count("SELECT COUNT(*) FROM rollups WHERE res = 900") > 24 * 5,
        "15 min rollups kept past raw retention"
    );
    assert_eq!(store.health().pruned_for_budget.load(Relaxed), 0);
    store.close(Vec::new()).await;

    // The budget: 1 MiB, and 3 MiB of readings.
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        max_disk: 1 << 20,
        queue: 200_000,
        ..config(200)
    };
    let (store, _) = open(dir.path(), &cfg);
    for i in 0..150_000u64 {
        let at = now - Ch::hours(30) + Ch::milliseconds(i as i64 * 600);
        store.record(reading(
            &format!("u{}", i % 2),
            "org-a",
            i / 2 + 1,
            at,
            fastrand::f64() * 10.0,
        ));
    }
    store.flush().await;
    wait_for("the budget to prune", || {
        store.health().pruned_for_budget.load(Relaxed) > 0
    })
    .await;
    wait_for("the store to fit", || {
        store.health().bytes_used.load(Relaxed) <= 1 << 20
    })
    .await;
    let h = store
        .history(
            "u1",
            "org-a",
            "site-1",
            now - Ch::hours(31),
            now,
            Resolution::Raw,
            100_000,
        )
        .await
        .unwrap();
    let Points::Raw(left) = h.points else {
        panic!()
    };
    assert!(!left.is_empty(), "the newest readings are kept");
    assert!(
        left[0].received_at > now - Ch::hours(30) + Ch::minutes(5),
        "the oldest went first: {} of {}, first {}",
        left.len(),
        75_000,
        left[0].received_at
    );
}

#[tokio::test]
async fn a_full_disk_stops_history_writes_reports_them_and_never_blocks_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        max_pages: Some(40),
        ..config(100)
    };
    let (store, _) = open(dir.path(), &cfg);
    let now = Utc::now();
    let began = std::time::Instant::now();
    for seq in 1..=20_000u64 {
        store.record(reading(
            &format!("u{}", seq % 100),
            "org-a",
            seq,
            now,
            fastrand::f64(),
        ));
    }
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "record never waits for the disk"
    );
    wait_for("a failed commit", || {
        store.health().commit_errors.load(Relaxed) > 0
    })
    .await;
    let problem = store.health().problem().expect("reported");
    assert!(problem.contains("full"), "{problem}");
    assert!(store.health().failing.load(Relaxed));
    // Nothing was half written: what is there reads back, and the file is intact.
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// The status page's one read for many units gives each unit its own buckets, the same as a
/// query of that unit alone, from the log and after compaction.
#[tokio::test]
async fn buckets_of_many_units_in_one_read_are_each_units_own() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), &config(60_000));
    let start = Utc::now() - Ch::hours(2);
    for i in 0..100u64 {
        let at = start + Ch::seconds(i as i64 * 60);
        store.record(reading("u1", "org-a", i + 1, at, -18.0 + (i % 5) as f64));
        store.record(reading("u2", "org-a", i + 1, at, 4.0 + (i % 3) as f64));
    }
    store.flush().await;
    let (from, to) = (start - Ch::hours(1), Utc::now());
    let check = |label: &'static str| {
        let store = store.clone();
        async move {
            let one = |unit: &'static str| {
                let store = store.clone();
                async move {
                    store
                        .buckets(unit, "org-a", "site-1", from, to, Resolution::Quarter)
                        .await
                        .unwrap()
                }
            };
            let (u1, u2) = (one("u1").await, one("u2").await);
            assert_ne!(u1, u2, "{label}");
            assert_eq!(u1.iter().map(|b| b.n).sum::<u64>(), 100, "{label}");
            let many = store
                .buckets_many(
                    ["u1", "u2", "nope"]
                        .map(|u| (u.to_owned(), "org-a".to_owned(), "site-1".to_owned()))
                        .to_vec(),
                    from,
                    to,
                    Resolution::Quarter,
                )
                .await
                .unwrap();
            assert_eq!(many, vec![u1, u2, Vec::new()], "{label}");
        }
    };
    check("from the log").await;
    let (conn, _) = schema::open(store.path()).unwrap();
    compact_before(&conn, Utc::now().timestamp_millis() + 1).unwrap();
    check("compacted").await;
}

/// A raw retention shorter than a day: the 1 min rollups of a day whose 15 min and 1 h
/// rollups are not stored yet stay until they are, so coarse history keeps every reading.
#[tokio::test]
async fn coarse_history_outlives_a_raw_retention_shorter_than_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        raw_retention: Duration::from_secs(3600),
        ..config(200)
    };
    let (store, _) = open(dir.path(), &cfg);
    let now = Utc::now();
    // Past hours in one commit (compacted at the next upkeep), the current hour in another.
    let hour_start = now.timestamp_millis().div_euclid(3_600_000) * 3_600_000;
    for past in [true, false] {
        for k in 0..18 {
            let at = now - Ch::minutes(180 - 10 * k as i64);
            if (at.timestamp_millis() < hour_start) == past {
                store.record(reading("u1", "org-a", k + 1, at, 3.0));
            }
        }
        store.flush().await;
    }
    let path = store.path().to_owned();
    let count = |sql: &str| count_in(&path, sql);
    // Chunks go an hour at a time once the whole hour is past retention and one more hour.
    let cut = (now - Ch::hours(2))
        .timestamp_millis()
        .div_euclid(3_600_000)
        * 3_600_000;
    wait_for("raw hours past retention to go", || {
        count("SELECT COUNT(*) FROM chunks") > 0
            && count(&format!(
                "SELECT COUNT(*) FROM chunks WHERE (id >> 32) * 3600000 < {cut}"
            )) == 0
    })
    .await;
    let hours = store
        .buckets(
            "u1",
            "org-a",
            "site-1",
            now - Ch::hours(4),
            now,
            Resolution::Hour,
        )
        .await
        .unwrap();
    assert_eq!(hours.iter().map(|b| b.n).sum::<u64>(), 18, "{hours:?}");
    // A `to` far ahead gives the same buckets: the days not rolled yet are read up to the
    // newest hour with 1 min rollups (not hour by hour up to `to`), and nothing after it is
    // lost by stopping there.
    let ahead = store
        .buckets(
            "u1",
            "org-a",
            "site-1",
            now - Ch::hours(4),
            now + Ch::days(700),
            Resolution::Hour,
        )
        .await
        .unwrap();
    assert_eq!(ahead, hours);
}

/// A log row or an hour's chunk that does not inflate cannot be read back: the writer's
/// compaction drops it and counts it (`damaged`, exported as
/// `sensorcast_history_damaged_total`), and the good readings of the same hour are kept.
#[tokio::test]
async fn damaged_rows_met_by_the_compaction_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), &config(100));
    // Ten seconds into an hour three hours ago: the late reading below stays in that hour.
    let hour = (Utc::now() - Ch::hours(3))
        .timestamp_millis()
        .div_euclid(3_600_000)
        * 3_600_000;
    let at = chrono::DateTime::from_timestamp_millis(hour + 10_000).unwrap();
    let path = store.path().to_owned();
    let db = rusqlite::Connection::open(&path).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let damaged = || store.health().damaged.load(Relaxed);

    store.record(reading("u1", "org-a", 1, at, 3.0));
    store.flush().await;
    wait_for("the past hour compacted", || {
        count("SELECT COUNT(*) FROM log") == 0 && count("SELECT COUNT(*) FROM chunks") == 1
    })
    .await;
    assert_eq!(damaged(), 0);

    // A reading of the current hour is logged first (a lower id), then a damaged row of the
    // past hour: the compaction drops the damaged one only.
    store.record(reading("u1", "org-a", 2, Utc::now(), 5.0));
    store.flush().await;
    db.execute(
        "INSERT INTO log (t_min, t_max, body, packed) VALUES (?1, ?1, x'00ff00ff', 1)",
        [at.timestamp_millis()],
    )
    .unwrap();
    wait_for("the damaged log row counted", || damaged() == 1).await;
    assert_eq!(
        count("SELECT COUNT(*) FROM log"),
        1,
        "the damaged row dropped, the current hour's kept"
    );

    // The hour's chunk damaged, then a late reading of that hour arrives.
    db.execute("UPDATE chunks SET body = x'00ff00ff'", [])
        .unwrap();
    store.record(reading("u1", "org-a", 3, at + Ch::seconds(1), 4.0));
    store.flush().await;
    wait_for("the damaged chunk counted", || damaged() == 2).await;
    let h = store
        .history(
            "u1",
            "org-a",
            "site-1",
            at - Ch::minutes(1),
            Utc::now(),
            Resolution::Raw,
            100,
        )
        .await
        .unwrap();
    let Points::Raw(got) = &h.points else {
        panic!("raw points")
    };
    let mut seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        vec![2, 3],
        "the late reading and the current hour's are kept; the damaged chunk's is gone"
    );
    assert_eq!(damaged(), 2, "the query met nothing damaged");
}
