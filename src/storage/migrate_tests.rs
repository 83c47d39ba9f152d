//! Schema migrations on a file with data: a version 1 store (written here with version 1's
//! schema and layout) opened by this binary keeps every reading, rollup and seq.

use chrono::{Duration as Ch, Utc};
use rusqlite::{params, Connection};

use super::compact::{compact_before, DAY_MS};
use super::record;
use super::rollup::{roll, Resolution};
use super::*;
use crate::core::reading::SensorReading;

fn reading(seq: u64, at: chrono::DateTime<Utc>) -> SensorReading {
    SensorReading {
        id: format!("E-u1-{seq}"),
        seq,
        unit_id: "u1".into(),
        site_id: "site-1".into(),
        organization_id: "org-a".into(),
        device_id: "dev-1".into(),
        temperature: 2.0 + (seq % 5) as f64 * 0.7,
        humidity: seq.is_multiple_of(2).then_some(40.0 + seq as f64),
        battery: Some(90.0),
        signal_strength: None,
        recorded_at: at - Ch::milliseconds(5),
        received_at: at,
        source: "ttn",
        extra: Vec::new(),
        retained: false,
        door: None,
    }
}

/// u1's raw readings from `from` to now.
async fn raw(store: &Store, from: chrono::DateTime<Utc>) -> Vec<SensorReading> {
    let h = store
        .history(
            "u1",
            "org-a",
            "site-1",
            from,
            Utc::now(),
            Resolution::Raw,
            10_000,
        )
        .await
        .unwrap();
    match h.points {
        query::Points::Raw(v) => v,
        query::Points::Rollup(_) => panic!("raw points"),
    }
}

fn json(v: &[SensorReading]) -> Vec<serde_json::Value> {
    v.iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

/// A version 1 file: two compacted hours (two days ago, yesterday) as version 1 kept them
/// (chunks keyed by feed and hour, rollups of every resolution written hourly) and the
/// current hour in an uncompressed log row.
fn version_1(path: &std::path::Path, readings: &[SensorReading], compacted: usize) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "BEGIN; {}; PRAGMA user_version = 1; COMMIT;",
        schema::MIGRATIONS[0]
    ))
    .unwrap();
    conn.execute_batch(
        "INSERT INTO meta VALUES ('epoch', 'E'), ('clean', '1'), ('dropped', '0'), ('seqs', '[]');
         INSERT INTO feeds (feed, unit, org, site, epoch) VALUES (1, 'u1', 'org-a', 'site-1', 'E');",
    )
    .unwrap();
    let mut hours: std::collections::BTreeMap<i64, Vec<&SensorReading>> = Default::default();
    for r in &readings[..compacted] {
        let t = r.received_at.timestamp_millis();
        hours
            .entry(t - t.rem_euclid(3_600_000))
            .or_default()
            .push(r);
    }
    for (hour, rs) in hours {
        let mut framed = Vec::new();
        rs.iter().for_each(|r| record::encode(1, r, &mut framed));
        conn.execute(
            "INSERT INTO chunks (feed, hour, n, first_seq, last_seq, body) VALUES (1, ?1, ?2, ?3, ?4, ?5)",
            params![hour, rs.len() as i64, rs[0].seq as i64, rs[rs.len() - 1].seq as i64, record::pack(&framed)],
        )
        .unwrap();
        let values: Vec<_> = rs
            .iter()
            .map(|r| (r.received_at.timestamp_millis(), r.temperature, r.humidity))
            .collect();
        for res in Resolution::ROLLUPS {
            for b in roll(values.clone(), res) {
                conn.execute(
                    "INSERT INTO rollups VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        res.millis() / 1000,
                        b.t,
                        b.n as i64,
                        b.tmin,
                        b.tmax,
                        b.tsum,
                        b.hn as i64,
                        (b.hn > 0).then_some(b.hmin),
                        (b.hn > 0).then_some(b.hmax),
                        (b.hn > 0).then_some(b.hsum)
                    ],
                )
                .unwrap();
            }
        }
    }
    let mut log = Vec::new();
    readings[compacted..]
        .iter()
        .for_each(|r| record::encode(1, r, &mut log));
    let ts: Vec<i64> = readings[compacted..]
        .iter()
        .map(|r| r.received_at.timestamp_millis())
        .collect();
    conn.execute(
        "INSERT INTO log (t_min, t_max, body) VALUES (?1, ?2, ?3)",
        params![ts[0], ts[ts.len() - 1], log],
    )
    .unwrap();
}

#[tokio::test]
async fn a_version_1_store_with_data_is_migrated_without_losing_any() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig::default();
    let path = cfg.file(dir.path());
    let today = Utc::now().timestamp_millis().div_euclid(DAY_MS) * DAY_MS;
    let at = |ms: i64| record::from_millis(ms);
    let mut readings = Vec::new();
    for (base, n) in [
        (today - 2 * DAY_MS + 36_000_000, 30),
        (today - DAY_MS + 36_000_000, 30),
    ] {
        for k in 0..n {
            readings.push(reading(readings.len() as u64 + 1, at(base + k * 120_000)));
        }
    }
    let compacted = readings.len();
    let now = Utc::now();
    for k in (1..=5).rev() {
        readings.push(reading(readings.len() as u64 + 1, now - Ch::seconds(k)));
    }
    version_1(&path, &readings, compacted);

    let (store, restored) = Store::open(&cfg, dir.path(), "F").unwrap();
    assert_eq!(restored.epoch.as_deref(), Some("E"), "the epoch goes on");
    assert_eq!(restored.latest.len(), 1);
    assert_eq!(restored.latest[0].seq, readings.len() as u64);
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::VERSION);

    // Raw readings: chunks and log, all of them, in order.
    let from = at(today - 3 * DAY_MS);
    assert_eq!(json(&raw(&store, from).await), json(&readings));

    // Rollups of every resolution agree with the raw readings, before and after the
    // migrated store's next compaction rolls yesterday's coarse rollups again.
    let check = |label: &'static str| {
        let store = store.clone();
        let readings = readings.clone();
        async move {
            for res in Resolution::ROLLUPS {
                let got = store
                    .buckets("u1", "org-a", "site-1", from, Utc::now(), res)
                    .await
                    .unwrap();
                let want = roll(
                    readings
                        .iter()
                        .map(|r| (r.received_at.timestamp_millis(), r.temperature, r.humidity)),
                    res,
                );
                assert_eq!(got.len(), want.len(), "{label} {res:?}");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!((g.t, g.n, g.hn), (w.t, w.n, w.hn), "{label} {res:?}");
                    assert_eq!((g.tmin, g.tmax), (w.tmin, w.tmax), "{label} {res:?}");
                    assert!((g.tsum - w.tsum).abs() < 1e-9, "{label} {res:?}");
                    assert!((g.hsum - w.hsum).abs() < 1e-9, "{label} {res:?}");
                }
            }
        }
    };
    check("migrated").await;

    // A resume from seq 40 (in yesterday's chunk) gets 41.. from chunk and log.
    let (after, through) = store
        .readings_after("u1", "org-a", "site-1", 40, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (41..=readings.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(through, readings.len() as u64);

    // The next compaction moves the log and stores yesterday's coarse rollups (everything,
    // as `compact_all` asks: a day is rolled only once it is over, whatever `before` says).
    compact_before(&conn, i64::MAX).unwrap();
    let rolled: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM rollups WHERE res = 3600 AND p = ?1",
            [today - DAY_MS],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rolled, 1, "yesterday's hour is rolled into its day");
    check("compacted").await;
    assert_eq!(
        json(&raw(&store, from).await),
        json(&readings),
        "after compaction"
    );
}
