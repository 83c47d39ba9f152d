//! The writer: one task that carries, in order, what this instance publishes to Redis (the
//! readings of the units it owns, alert commits, releases), as pipelined batches of script
//! calls: one round trip for everything queued, so ingest is never paced by Redis's latency.
//!
//! A script refused by fencing means another instance owns the unit now: the unit is dropped
//! here (`Change::Lost`) and what was refused is left to the new owner, which holds it. A
//! batch that cannot reach Redis puts the instance in degraded mode, and what it carried is
//! delivered here instead (numbered alone, alert events to local sockets and webhooks).

use redis::{RedisResult, Value};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::relay::{deliver_door, deliver_event, deliver_reading};
use super::store::evalsha;
use super::Cluster;
use crate::alerts::cluster::UnitCommit;
use crate::alerts::webhook::Webhooks;
use crate::delivery::to_json;
use crate::pipeline::shared::{Change, Outbound};

/// Most jobs in one pipelined round trip.
const BATCH: usize = 256;

pub enum Job {
    /// Boxed: a reading is much larger than the other jobs.
    Publish(Box<Outbound>),
    Release(Arc<str>),
    /// The last field hears whether every commit went through (an acknowledgement waits).
    Commit(Vec<UnitCommit>, Webhooks, Option<oneshot::Sender<bool>>),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// Runs until `stop` (after [`super::Cluster::leave`] flushed what was queued).
pub async fn run(c: Cluster, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            n = rx.recv_many(&mut batch, BATCH) => n,
        };
        if n == 0 {
            return;
        }
        let jobs = std::mem::take(&mut batch);
        if c.0.alone.load(std::sync::atomic::Ordering::Relaxed) {
            jobs.into_iter().for_each(|j| alone(&c, j));
            continue;
        }
        let cmds: Vec<(usize, redis::Cmd)> = jobs
            .iter()
            .enumerate()
            .flat_map(|(i, j)| commands(&c, j).into_iter().map(move |cmd| (i, cmd)))
            .collect();
        match send(&c, &cmds).await {
            Ok(results) => settle(&c, jobs, &cmds, results),
            Err(e) => {
                c.0.stats.redis_error("write");
                c.go_alone(&e.to_string());
                jobs.into_iter().for_each(|j| alone(&c, j));
            }
        }
    }
}

/// The script calls of one job.
fn commands(c: &Cluster, job: &Job) -> Vec<redis::Cmd> {
    let (k, s, node) = (&c.0.keys, &c.0.scripts, c.0.node.as_bytes().to_vec());
    match job {
        Job::Publish(out) => {
            let unit = &out.unit.id;
            let door = out.door.as_ref().map(to_json);
            let (rest, at) = match &out.reading {
                Some(r) => {
                    let json = serde_json::to_string(r).unwrap_or_default();
                    // `{"id":"","seq":0,...}`: the script writes id and seq.
                    let rest = json
                        .strip_prefix(r#"{"id":"","seq":0"#)
                        .unwrap_or("")
                        .to_string();
                    (rest, r.received_at.timestamp_millis().to_string())
                }
                None => (String::new(), String::new()),
            };
            let unit_json = serde_json::to_string(&**unit).unwrap_or_default();
            let unit_in_string = unit_json[1..unit_json.len() - 1].to_string();
            let floor = c.0.hub.feed(unit).lock().expect("unit feed lock").seq();
            let keys = [
                k.owner(),
                k.nodes(),
                k.epoch(),
                k.unit(unit),
                k.history(unit),
                k.fingerprints(unit),
                k.events(),
                k.numbered(),
            ];
            let history = c.0.hub.history_limits().max_readings;
            let args = vec![
                node,
                unit.as_bytes().to_vec(),
                unit_in_string.into_bytes(),
                out.fp.to_string().into_bytes(),
                door.map(|d| d.get().as_bytes().to_vec())
                    .unwrap_or_default(),
                rest.into_bytes(),
                history.to_string().into_bytes(),
                FINGERPRINTS.to_string().into_bytes(),
                c.0.cfg.stream_max_len.to_string().into_bytes(),
                crate::pipeline::hub::new_epoch("").into_bytes(),
                at.into_bytes(),
                floor.to_string().into_bytes(),
            ];
            vec![evalsha(&s.publish, &keys, args)]
        }
        Job::Release(unit) => {
            let args = vec![node, unit.as_bytes().to_vec()];
            vec![evalsha(&s.release, &[k.owner()], args)]
        }
        Job::Commit(commits, _, _) => commits
            .iter()
            .map(|u| {
                let mut args = vec![
                    node.clone(),
                    u.unit.as_bytes().to_vec(),
                    u.track.clone().unwrap_or_default().into_bytes(),
                    c.0.cfg.stream_max_len.to_string().into_bytes(),
                ];
                for o in &u.events {
                    args.push(o.event.name().as_bytes().to_vec());
                    args.push(o.event.payload().to_string().into_bytes());
                    args.push(o.org.as_bytes().to_vec());
                    args.push(o.site.as_bytes().to_vec());
                }
                let keys = [k.owner(), k.nodes(), k.tracks(), k.events(), k.numbered()];
                evalsha(&s.commit, &keys, args)
            })
            .collect(),
        Job::Flush(_) => Vec::new(),
    }
}

/// Fingerprints of published messages kept per unit, for a takeover to find its place.
pub const FINGERPRINTS: usize = 64;

/// One pipelined round trip. A script Redis does not know (it restarted) is loaded and the
/// calls it refused are sent again, in order.
async fn send(c: &Cluster, cmds: &[(usize, redis::Cmd)]) -> RedisResult<Vec<RedisResult<Value>>> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = c.conn();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (_, cmd) in cmds {
        pipe.add_command(cmd.clone());
    }
    let mut results: Vec<RedisResult<Value>> = pipe.query_async(&mut conn).await?;
    let missing: Vec<usize> = (0..results.len())
        .filter(|i| matches!(&results[*i], Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)))
        .collect();
    if !missing.is_empty() {
        super::membership::load_scripts(c).await?;
        let mut again = redis::pipe();
        again.ignore_errors();
        for i in &missing {
            again.add_command(cmds[*i].1.clone());
        }
        let redone: Vec<RedisResult<Value>> = again.query_async(&mut conn).await?;
        for (i, r) in missing.into_iter().zip(redone) {
            results[i] = r;
        }
    }
    Ok(results)
}

/// Acts on each job's answers.
fn settle(
    c: &Cluster,
    jobs: Vec<Job>,
    cmds: &[(usize, redis::Cmd)],
    results: Vec<RedisResult<Value>>,
) {
    let mut answers = cmds.iter().map(|(i, _)| *i).zip(results);
    for job in jobs {
        match job {
            Job::Publish(out) => {
                let Some((_, r)) = answers.next() else {
                    continue;
                };
                match r {
                    Ok(v) if first_int(&v) == Some(1) => {}
                    Ok(_) => fenced(c, &out.unit.id, 1),
                    Err(e) => script_failed(c, "publish", &e),
                }
            }
            Job::Release(_) => {
                if let Some((_, Err(e))) = answers.next() {
                    script_failed(c, "release", &e);
                }
            }
            Job::Commit(commits, hooks, done) => {
                let mut all = true;
                for u in commits {
                    match answers.next().map(|(_, r)| r) {
                        Some(Ok(v)) if first_int(&v) == Some(1) => {
                            u.events.iter().for_each(|o| hooks.send(&o.event));
                            continue;
                        }
                        Some(Ok(_)) => fenced(c, &u.unit, u.events.len() as u64),
                        Some(Err(e)) => script_failed(c, "commit", &e),
                        None => {}
                    }
                    all = false;
                }
                if let Some(done) = done {
                    let _ = done.send(all);
                }
            }
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// The first integer of a script's answer (`1` or `{1, ...}`: done; `0` or `{0}`: fenced).
fn first_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        Value::Array(items) => items.first().and_then(first_int),
        _ => None,
    }
}

fn script_failed(c: &Cluster, op: &'static str, e: &redis::RedisError) {
    c.0.stats.redis_error(op);
    c.0.stats.dropped("script_error", 1);
    error!(op, error = %e, "redis script failed; the event was not published");
}

/// Another instance owns `unit` now: stop publishing it; the new owner publishes what was
/// refused (it holds it).
fn fenced(c: &Cluster, unit: &Arc<str>, n: u64) {
    c.0.stats.dropped("fenced", n);
    let was_claimed = c.0.claimed.lock().expect("claimed").remove(unit);
    if was_claimed {
        warn!(unit = %unit, "another instance owns the unit now: stopped publishing it");
        let change = Change::Lost { unit: unit.clone() };
        if let Err(e) = c.0.changes.try_send(change) {
            let changes = c.0.changes.clone();
            tokio::spawn(async move { changes.send(e.into_inner()).await });
        }
    }
}

/// Degraded: what a job carried is delivered here.
fn alone(c: &Cluster, job: Job) {
    match job {
        Job::Publish(out) => {
            use crate::pipeline::shared::Publish;
            let out = *out;
            if !c.deliver_alone(out.fp) {
                return; // the script ran, and its entry came back before Redis failed
            }
            if let Some(door) = &out.door {
                deliver_door(c, door, &to_json(door), true);
            }
            if let Some(wire) = out.reading {
                c.0.hub.number_alone(wire, |w| deliver_reading(c, w));
            }
        }
        Job::Release(_) => {}
        Job::Commit(commits, hooks, done) => {
            commit_alone(c, commits, &hooks);
            // Held in memory only: an acknowledgement waiting for it is not confirmed.
            if let Some(done) = done {
                let _ = done.send(false);
            }
        }
        Job::Flush(done) => {
            let _ = done.send(());
        }
    }
}

/// Degraded: alert events go to this instance's sockets and to the webhooks, and the view
/// follows this instance's own units.
pub fn commit_alone(c: &Cluster, commits: Vec<UnitCommit>, hooks: &Webhooks) {
    for u in commits {
        if let Some(track) = &u.track {
            c.0.alerts.apply_snapshot(&u.unit, Some(track));
        }
        for o in &u.events {
            let payload = to_json(&o.event.payload());
            deliver_event(c, o.event.name(), &payload, &o.org, &o.site, &u.unit);
            hooks.send(&o.event);
        }
    }
}
