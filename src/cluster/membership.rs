//! Membership and ownership. Every `heartbeat` an instance whose MQTT subscriptions are in
//! place says it is alive (a sorted set scored by expiry, Redis's clock) and learns the live
//! instances; each unit belongs to the live instance with the highest rendezvous score for it
//! (so a join or a death moves only the units that must move). An instance takes a unit with a
//! claim that succeeds only when nobody owns it, its owner is dead, or it is its own; it gives
//! a unit up (after what it queued for it is written) when another instance should own it.
//!
//! A heartbeat that fails puts the instance in degraded mode (it keeps its units: fencing
//! refuses its writes if another takes them meanwhile); the next one that succeeds rejoins:
//! held units are claimed again (or dropped, if another instance took them meanwhile), seqs
//! numbered alone are carried over (no client sees a seq go back), and the alert state of held
//! units is written again. An epoch that changed under a live connection means Redis lost its
//! data: the same steps follow. For a node TTL after a rejoin no instance takes new units, so
//! each first claims back its own.

use redis::Value;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::rendezvous::owner_of;
use super::store::evalsha;
use super::writer::Job;
use super::{Cluster, ClusterView};
use crate::pipeline::shared::Change;

/// Units claimed per pipelined round trip.
const CLAIM_BATCH: usize = 256;

/// Loads every script (after a Redis restart its script cache is empty).
pub async fn load_scripts(c: &Cluster) -> redis::RedisResult<()> {
    let mut conn = c.conn();
    for s in c.0.scripts.all() {
        s.load_async(&mut conn).await?;
    }
    Ok(())
}

/// What one heartbeat learnt.
struct Beat {
    epoch: String,
    sockets: u64,
    live: Vec<Arc<str>>,
}

async fn heartbeat(c: &Cluster, join: bool) -> redis::RedisResult<Beat> {
    let k = &c.0.keys;
    let mut conn = c.conn();
    // Not joined (MQTT not ready): only look, so this instance is not counted alive.
    let ttl = if join {
        c.0.cfg.node_ttl.as_millis() as u64
    } else {
        0
    };
    let args = vec![
        c.0.node.as_bytes().to_vec(),
        ttl.to_string().into_bytes(),
        (c.0.local_sockets)().to_string().into_bytes(),
        crate::pipeline::hub::new_epoch("").into_bytes(),
    ];
    let cmd = evalsha(
        &c.0.scripts.heartbeat,
        &[k.nodes(), k.conns(), k.epoch()],
        args,
    );
    let v: Value = match cmd.query_async(&mut conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            load_scripts(c).await?;
            cmd.query_async(&mut conn).await?
        }
        r => r?,
    };
    let parts = match v {
        Value::Array(parts) => parts,
        _ => return Err(unexpected("heartbeat")),
    };
    let epoch = parts.first().and_then(as_text).unwrap_or_default();
    let sockets = parts.get(1).and_then(as_int).unwrap_or(0).max(0) as u64;
    let live = match parts.get(2) {
        Some(Value::Array(l)) => l.iter().filter_map(as_text).map(Arc::from).collect(),
        _ => Vec::new(),
    };
    Ok(Beat {
        epoch,
        sockets,
        live,
    })
}

fn unexpected(what: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Client,
        "unexpected answer",
        what.to_string(),
    ))
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => as_text(v)?.parse().ok(),
    }
}

/// At start: one answer from Redis decides whether this instance starts in cluster mode or
/// degraded (bounded by `redis_timeout`).
pub async fn first_contact(c: &Cluster) {
    let tried = tokio::time::timeout(c.0.cfg.redis_timeout, async {
        load_scripts(c).await?;
        heartbeat(c, false).await
    })
    .await;
    match tried {
        Ok(Ok(beat)) => {
            c.0.hub.set_epoch(&beat.epoch);
            c.0.alone.store(false, Relaxed);
            info!(node = %c.0.node, epoch = beat.epoch, "cluster: redis reachable");
        }
        Ok(Err(e)) => c.go_alone(&e.to_string()),
        Err(_) => c.go_alone("no answer from redis in time"),
    }
}

pub async fn run(c: Cluster, ready: Box<dyn Fn() -> bool + Send + Sync>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(c.0.cfg.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After a rejoin, every instance first claims back its own units, for a node TTL, before
    // any takes new ones: otherwise the first one back would take everybody's.
    let mut settle_until = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let join = ready();
        if !join && c.0.joined.swap(false, Relaxed) {
            // No MQTT: this instance would publish nothing for its units. Let them go.
            info!("mqtt not ready: leaving the cluster's ownership until it is");
            drop_all(&c).await;
        }
        match heartbeat(&c, join).await {
            Err(e) => {
                // Units stay owned here: if Redis counts this instance dead meanwhile and
                // another takes them, fencing refuses this one's writes, and the rejoin drops
                // them.
                c.0.stats.redis_error("heartbeat");
                c.go_alone(&e.to_string());
            }
            Ok(beat) => {
                if c.0.alone.load(Relaxed) || *c.0.hub.epoch() != beat.epoch {
                    if !rejoin(&c, &beat.epoch).await {
                        continue;
                    }
                    settle_until = Instant::now() + c.0.cfg.node_ttl;
                }
                *c.0.view.lock().expect("cluster view") = ClusterView {
                    live: beat.live.clone(),
                    sockets: beat.sockets,
                };
                if join && Instant::now() >= settle_until {
                    c.0.joined.store(true, Relaxed);
                    if let Err(e) = rebalance(&c, &beat.live).await {
                        c.0.stats.redis_error("claim");
                        warn!(error = %e, "cluster: claiming units failed");
                    }
                }
            }
        }
    }
}

/// Back from degraded mode (or Redis lost its data): claim the held units back (or drop the
/// ones another instance took meanwhile), carry seqs over, write their alert state again,
/// take the cluster's epoch and stop being alone. `false` when Redis failed again.
async fn rejoin(c: &Cluster, epoch: &str) -> bool {
    let lost_data = !c.0.alone.load(Relaxed);
    let held: Vec<Arc<str>> =
        c.0.claimed
            .lock()
            .expect("claimed")
            .iter()
            .cloned()
            .collect();
    for chunk in held.chunks(CLAIM_BATCH) {
        match claim(c, chunk).await {
            Ok(answers) => {
                for (unit, answer) in chunk.iter().zip(answers) {
                    if answer.is_none() {
                        lose(c, unit).await;
                    }
                }
            }
            Err(e) => {
                c.0.stats.redis_error("rejoin");
                warn!(error = %e, "cluster: rejoin failed; still degraded");
                return false;
            }
        }
    }
    if let Err(e) = floor(c).await {
        c.0.stats.redis_error("rejoin");
        warn!(error = %e, "cluster: rejoin failed; still degraded");
        return false;
    }
    c.0.alerts.touch_all().await;
    // Held messages from before are either published or were delivered here alone.
    let _ = c.0.changes.send(Change::Rejoined).await;
    c.0.hub.set_epoch(epoch);
    c.0.alone.store(false, Relaxed);
    // Readings numbered alone between the first floor and the switch.
    let _ = floor(c).await;
    if lost_data {
        warn!(
            epoch,
            "cluster: the epoch changed under a live connection (redis lost its data?)"
        );
    } else {
        info!(epoch, "cluster: redis reachable again, rejoined");
    }
    true
}

/// Raises every unit's seq in Redis to at least this instance's own.
async fn floor(c: &Cluster) -> redis::RedisResult<()> {
    let seqs = c.0.hub.seqs();
    let mut conn = c.conn();
    for chunk in seqs.chunks(512) {
        let mut args = vec![c.0.keys.prefix().as_bytes().to_vec()];
        for (unit, seq) in chunk {
            args.push(unit.as_bytes().to_vec());
            args.push(seq.to_string().into_bytes());
        }
        evalsha(&c.0.scripts.floor, &[], args)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(())
}

/// What a successful claim returns.
struct Claimed {
    previous: String,
    published: Vec<u64>,
    track: Option<String>,
    last_at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn claim(c: &Cluster, units: &[Arc<str>]) -> redis::RedisResult<Vec<Option<Claimed>>> {
    let k = &c.0.keys;
    let mut pipe = redis::pipe();
    for u in units {
        let keys = [
            k.owner(),
            k.nodes(),
            k.fingerprints(u),
            k.tracks(),
            k.unit(u),
        ];
        let args = vec![c.0.node.as_bytes().to_vec(), u.as_bytes().to_vec()];
        pipe.add_command(evalsha(&c.0.scripts.claim, &keys, args));
    }
    let answers: Vec<Value> = pipe.query_async(&mut c.conn()).await?;
    Ok(answers.iter().map(parse_claim).collect())
}

fn parse_claim(v: &Value) -> Option<Claimed> {
    let Value::Array(parts) = v else {
        return None;
    };
    if parts.first().and_then(as_int) != Some(1) {
        return None;
    }
    let mut published: Vec<u64> = match parts.get(2) {
        Some(Value::Array(fps)) => fps
            .iter()
            .filter_map(|f| as_text(f)?.parse().ok())
            .collect(),
        _ => Vec::new(),
    };
    published.reverse(); // oldest first
    let track = parts.get(3).and_then(as_text).filter(|t| !t.is_empty());
    let last_at = parts
        .get(4)
        .and_then(as_int)
        .and_then(chrono::DateTime::from_timestamp_millis);
    Some(Claimed {
        previous: parts.get(1).and_then(as_text).unwrap_or_default(),
        published,
        track,
        last_at,
    })
}

/// Claims the units this instance should own and does not, releases the ones it should not.
async fn rebalance(c: &Cluster, live: &[Arc<str>]) -> redis::RedisResult<()> {
    let units: Vec<Arc<str>> = c.0.hub.registry().units().map(|u| u.id.clone()).collect();
    let (to_claim, to_release) = {
        let claimed = c.0.claimed.lock().expect("claimed");
        let mine = |u: &str| owner_of(u, live).is_some_and(|n| *n == c.0.node);
        let to_claim: Vec<Arc<str>> = units
            .iter()
            .filter(|u| mine(u) && !claimed.contains(*u))
            .cloned()
            .collect();
        let registered: std::collections::HashSet<&Arc<str>> = units.iter().collect();
        let to_release: Vec<Arc<str>> = claimed
            .iter()
            .filter(|u| !mine(u) || !registered.contains(u))
            .cloned()
            .collect();
        (to_claim, to_release)
    };
    // Settled when this round leaves nothing to release and every claim succeeds.
    let mut settled = to_release.is_empty();
    for unit in to_release {
        c.0.claimed.lock().expect("claimed").remove(&unit);
        c.0.stats.releases.fetch_add(1, Relaxed);
        let _ = c.0.changes.send(Change::Release { unit }).await;
    }
    for chunk in to_claim.chunks(CLAIM_BATCH) {
        let answers = claim(c, chunk).await?;
        for (unit, answer) in chunk.iter().zip(answers) {
            let Some(got) = answer else {
                settled = false;
                continue; // its owner is alive: it releases the unit at its next heartbeat
            };
            c.0.claimed.lock().expect("claimed").insert(unit.clone());
            if !got.previous.is_empty() && *got.previous != *c.0.node {
                c.0.stats.takeovers.fetch_add(1, Relaxed);
                info!(unit = %unit, from = got.previous, "took the unit over");
            }
            let change = Change::Own {
                unit: unit.clone(),
                published: got.published,
                track: got.track,
                last_at: got.last_at,
            };
            let _ = c.0.changes.send(change).await;
        }
    }
    c.0.settled.store(settled, Relaxed);
    Ok(())
}

/// This instance no longer owns `unit` (another took it).
async fn lose(c: &Cluster, unit: &Arc<str>) {
    if c.0.claimed.lock().expect("claimed").remove(unit) {
        let _ = c.0.changes.send(Change::Lost { unit: unit.clone() }).await;
    }
}

/// Gives every unit up (after what is queued for it is written).
async fn drop_all(c: &Cluster) {
    let held: Vec<Arc<str>> = c.0.claimed.lock().expect("claimed").drain().collect();
    for unit in held {
        let _ = c.0.changes.send(Change::Release { unit }).await;
    }
}

/// A clean stop: everything queued is written, the units are released and this instance
/// leaves the live set, so the others take its units at once.
pub async fn leave(c: &Cluster) {
    let (done, flushed) = tokio::sync::oneshot::channel();
    if c.0.jobs.send(Job::Flush(done)).await.is_ok() {
        let _ = tokio::time::timeout(c.0.cfg.redis_timeout, flushed).await;
    }
    if c.0.alone.load(Relaxed) {
        return;
    }
    let k = &c.0.keys;
    let held: Vec<Arc<str>> = c.0.claimed.lock().expect("claimed").drain().collect();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for unit in &held {
        let args = vec![c.0.node.as_bytes().to_vec(), unit.as_bytes().to_vec()];
        pipe.add_command(evalsha(&c.0.scripts.release, &[k.owner()], args));
    }
    let args = vec![c.0.node.as_bytes().to_vec()];
    pipe.add_command(evalsha(&c.0.scripts.leave, &[k.nodes(), k.conns()], args));
    let left = tokio::time::timeout(
        c.0.cfg.redis_timeout,
        pipe.query_async::<Vec<redis::RedisResult<Value>>>(&mut c.conn()),
    )
    .await;
    match left {
        Ok(Ok(_)) => info!(units = held.len(), "left the cluster"),
        _ => warn!("could not leave the cluster cleanly: the others take over after node_ttl"),
    }
}
