//! The stream reader: every instance reads the cluster's event stream in order, from the entry
//! after the last one it read, and hands each event to its own fan-out (readings and door
//! changes under the unit's lock, like a single box's; see `pipeline::hub`). Its connection is
//! its own (a blocking read), reconnected here with a backoff: the redis crate does not do it.
//! While this instance is degraded the reader pauses, and when it rejoins it skips what it
//! already delivered alone (by fingerprint), so a client sees each reading once.
//!
//! The stream also carries forwarded acknowledgements and their answers (`requests`).
//!
//! The stream is trimmed to about `stream_max_len` entries. A reader that falls further behind
//! (a long pause, a long cut from Redis while the others go on) would read on from the oldest
//! entry left, skipping the rest without noticing; so each entry carries a consecutive number
//! (`n`, see `store`) and a number that skips is a gap: counted, logged, shown in `/health`,
//! and every unit's resumes stop being served from this instance's memory until its next
//! reading ([`crate::pipeline::hub::Hub::mark_unsure`]).

use chrono::Utc;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Cluster;
use crate::core::reading::{SensorReading, UnitDoor};
use crate::core::rooms::UnitRooms;
use crate::delivery::{Json, Kind, Payload};

/// Entries read per round trip.
const READ_COUNT: usize = 512;
/// Fingerprints of messages delivered alone remembered (the oldest forgotten first): about a
/// minute at 3000 readings/s.
pub const ALONE_FPS: usize = 200_000;
/// Fingerprints of messages delivered from the stream remembered, for the switch to degraded
/// mode (ingest may be behind the stream): about 15 s at 3000 readings/s.
pub const RELAYED_FPS: usize = 50_000;

/// Fingerprints of messages delivered one way (alone, or from the stream), so that the other
/// way does not deliver them again. Bounded: the oldest are forgotten first.
pub struct Recent {
    order: VecDeque<u64>,
    set: HashSet<u64>,
    capacity: usize,
}

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent {
            order: VecDeque::new(),
            set: HashSet::new(),
            capacity,
        }
    }

    pub fn insert(&mut self, fp: u64) {
        if self.set.insert(fp) {
            self.order.push_back(fp);
            if self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    /// Whether `fp` was delivered (forgotten once asked: each message comes once).
    pub fn take(&mut self, fp: u64) -> bool {
        self.set.remove(&fp)
    }
}

/// Where the reader is: the id of the last entry read and its number.
#[derive(Default)]
struct Position {
    id: Option<String>,
    n: Option<u64>,
}

impl Position {
    /// Moves past an entry numbered `n` (if it has a number): the entries it skipped, if any.
    fn advance(&mut self, n: Option<u64>) -> u64 {
        let Some(n) = n else {
            return 0;
        };
        // A number that goes back: Redis lost its data and counts again (a new epoch follows).
        let skipped = match self.n {
            Some(last) if n > last + 1 => n - last - 1,
            _ => 0,
        };
        self.n = Some(n);
        skipped
    }
}

/// The number an entry carries.
fn number(map: &HashMap<String, redis::Value>) -> Option<u64> {
    text(map, "n")?.parse().ok()
}

/// Entries trimmed before this instance read them.
fn gap(c: &Cluster, lost: u64, after: Option<&str>) {
    let stats = &c.0.stats;
    stats.stream_gaps.fetch_add(1, Relaxed);
    stats.stream_entries_lost.fetch_add(lost, Relaxed);
    stats.dropped("stream_trimmed", lost);
    c.0.hub.mark_unsure();
    tracing::error!(
        lost,
        after = after.unwrap_or(""),
        max_len = c.0.cfg.stream_max_len,
        "cluster stream: entries were trimmed before this instance read them; \
         resumes answer recovered: false until each unit's next reading"
    );
}

pub async fn run(c: Cluster, stop: CancellationToken) {
    let mut pos = Position::default();
    let mut failures = 0u32;
    loop {
        if stop.is_cancelled() {
            return;
        }
        if c.0.alone.load(Relaxed) {
            // Paused while degraded: this instance delivers its own ingest meanwhile.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(c.0.cfg.heartbeat) => continue,
            }
        }
        let block = c.0.cfg.heartbeat.max(Duration::from_millis(200));
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(c.0.cfg.redis_timeout))
            .set_response_timeout(Some(block + c.0.cfg.redis_timeout));
        let read = async {
            let mut conn =
                c.0.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
            if pos.id.is_none() {
                let (id, n) = start(&c, &mut conn).await?;
                pos = Position { id: Some(id), n };
            }
            loop {
                let opts = StreamReadOptions::default()
                    .block(block.as_millis() as usize)
                    .count(READ_COUNT);
                let key = c.0.keys.events();
                let from = pos.id.clone().unwrap_or_else(|| "$".into());
                let reply: Option<StreamReadReply> =
                    conn.xread_options(&[&key], &[&from], &opts).await?;
                failures = 0;
                for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                    let lost = pos.advance(number(&entry.map));
                    if lost > 0 {
                        gap(&c, lost, pos.id.as_deref());
                    }
                    pos.id = Some(entry.id.clone());
                    handle(&c, &entry.map);
                }
                if stop.is_cancelled() || c.0.alone.load(Relaxed) {
                    return Ok::<(), redis::RedisError>(());
                }
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            r = read => if let Err(e) = r {
                failures += 1;
                c.0.stats.redis_error("stream_read");
                if failures == 1 {
                    warn!(error = %e, "cluster stream read failed; reconnecting");
                }
                c.go_alone(&e.to_string());
                let wait = Duration::from_millis(100 * u64::from(failures.min(10)));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Where a fresh instance starts reading (the stream's current end, and its number) after it
/// loaded the units' latest readings and the alert view from Redis, so nothing falls between
/// the two.
async fn start(
    c: &Cluster,
    conn: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<(String, Option<u64>)> {
    let k = &c.0.keys;
    let tail: redis::streams::StreamRangeReply =
        conn.xrevrange_count(k.events(), "+", "-", 1).await?;
    let from = tail
        .ids
        .first()
        .map_or_else(|| "0-0".to_string(), |e| e.id.clone());
    let n = tail.ids.first().and_then(|e| number(&e.map));
    let units: Vec<Arc<str>> = c.0.hub.registry().units().map(|u| u.id.clone()).collect();
    let mut pipe = redis::pipe();
    for u in &units {
        pipe.hget(k.unit(u), "latest");
    }
    let latest: Vec<Option<String>> = pipe.query_async(conn).await?;
    for json in latest.into_iter().flatten() {
        match serde_json::from_str::<SensorReading>(&json) {
            Ok(r) => c.0.hub.restore_latest(Arc::new(r)),
            Err(e) => warn!(error = %e, "latest reading in redis not readable"),
        }
    }
    let tracks: HashMap<String, String> = conn.hgetall(k.tracks()).await?;
    for (unit, track) in tracks {
        c.0.alerts.apply_snapshot(&unit.into(), Some(&track));
    }
    info!(from, "cluster stream: reading");
    Ok((from, n))
}

pub(super) fn text<'a>(map: &'a HashMap<String, redis::Value>, key: &str) -> Option<&'a str> {
    match map.get(key)? {
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok(),
        redis::Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// One stream entry.
fn handle(c: &Cluster, map: &HashMap<String, redis::Value>) {
    let (Some(kind), Some(unit)) = (text(map, "k"), text(map, "u").or(Some(""))) else {
        return c.0.stats.dropped("bad_entry", 1);
    };
    let payload = text(map, "p").unwrap_or("");
    let fp = text(map, "f").and_then(|f| f.parse::<u64>().ok());
    let delivered_alone =
        |fp: Option<u64>| fp.is_some_and(|fp| c.0.alone_fps.lock().expect("alone fps").take(fp));
    match kind {
        "r" => {
            if delivered_alone(fp) {
                return c.0.stats.dropped("delivered_while_degraded", 1);
            }
            let Ok(wire) = serde_json::from_str::<SensorReading>(payload) else {
                return c.0.stats.dropped("bad_entry", 1);
            };
            if let Some(epoch) = text(map, "e") {
                if c.0.hub.set_epoch(epoch) {
                    info!(epoch, "cluster epoch");
                }
            }
            c.0.hub
                .relay_reading(Arc::new(wire), |w| deliver_reading(c, w));
            c.0.stats.relayed("reading");
            relayed(c, fp);
        }
        "d" => {
            if delivered_alone(fp) {
                return c.0.stats.dropped("delivered_while_degraded", 1);
            }
            let Ok(door) = serde_json::from_str::<UnitDoor>(payload) else {
                return c.0.stats.dropped("bad_entry", 1);
            };
            let Ok(raw) = serde_json::value::RawValue::from_string(payload.to_string()) else {
                return;
            };
            let owner = c.0.owned.contains(unit);
            deliver_door(c, &door, &Json::from(raw), owner);
            c.0.stats.relayed("door");
            relayed(c, fp);
        }
        "a" => {
            let (Some(name), Some(org), Some(site)) =
                (text(map, "e"), text(map, "o"), text(map, "s"))
            else {
                return c.0.stats.dropped("bad_entry", 1);
            };
            let Ok(raw) = serde_json::value::RawValue::from_string(payload.to_string()) else {
                return c.0.stats.dropped("bad_entry", 1);
            };
            deliver_event(c, name, &Json::from(raw), org, site, unit);
            c.0.stats.relayed("alert");
        }
        "s" => c.0.alerts.apply_snapshot(&unit.into(), Some(payload)),
        "c" => super::requests::answer_ack(c, map),
        "y" => {
            if let Some(req) = text(map, "i") {
                if let Some((_, tx)) = c.0.pending_acks.remove(req) {
                    let _ = tx.send(serde_json::from_str(payload).unwrap_or(Value::Null));
                }
            }
        }
        _ => c.0.stats.dropped("bad_entry", 1),
    }
}

/// Remembers that the stream delivered this message here (see [`Recent`]).
fn relayed(c: &Cluster, fp: Option<u64>) {
    if let Some(fp) = fp {
        c.0.relayed_fps.lock().expect("relayed fps").insert(fp);
    }
}

/// A numbered reading to this instance's sockets (called under the unit's lock).
pub fn deliver_reading(c: &Cluster, w: &Arc<SensorReading>) {
    let registry = c.0.hub.registry();
    let rooms = match registry.unit(&w.unit_id) {
        Some(u) => u.rooms,
        None => UnitRooms::new(&w.organization_id, &w.site_id, &w.unit_id),
    };
    let payload = Payload::Reading(w.clone());
    c.0.fanout.deliver(
        rooms.readings(),
        "sensor:reading",
        &payload,
        Kind::Reading(&w.unit_id),
    );
    let stats = c.0.hub.stats();
    stats.emitted.fetch_add(1, Relaxed);
    if let Ok(age) = (Utc::now() - w.received_at).to_std() {
        stats.emit_latency.observe(age);
    }
    if let (Some(b), Some(u)) = (&c.0.batcher, registry.unit(&w.unit_id)) {
        b.push(u, w);
    }
}

/// A door change to this instance's sockets, under the unit's lock (recorded unless `owner`).
pub fn deliver_door(c: &Cluster, door: &UnitDoor, payload: &Json, owner: bool) {
    let rooms = UnitRooms::new(&door.organization_id, &door.site_id, &door.unit_id);
    c.0.hub.relay_door(door, owner, || {
        c.0.fanout.deliver(
            rooms.readings(),
            "unit:door",
            &Payload::Event(payload.clone()),
            Kind::Event,
        )
    });
    c.0.hub.stats().door_changes.fetch_add(1, Relaxed);
}

/// The alert event names, as the `&'static str` the fan-out takes.
const ALERT_EVENTS: [&str; 5] = [
    "unit:state:changed",
    "alert:triggered",
    "alert:escalated",
    "alert:resolved",
    "alert:acknowledged",
];

/// An alert or unit state event to this instance's sockets in the organization's rooms.
pub fn deliver_event(c: &Cluster, name: &str, payload: &Json, org: &str, site: &str, unit: &str) {
    let Some(name) = ALERT_EVENTS.iter().find(|n| **n == name) else {
        return c.0.stats.dropped("bad_entry", 1);
    };
    let rooms = UnitRooms::new(org, site, unit);
    c.0.fanout.deliver(
        rooms.org_events(),
        name,
        &Payload::Event(payload.clone()),
        Kind::Event,
    );
}
