//! `loadgen cluster`: sensorcast's cluster mode (docs/scaling.md) under the fan-out load, with
//! 1, 2 and 3 instances on one private redis-server, and a single box without `[cluster]` as
//! the baseline. The clients are spread over the instances round-robin (what a load balancer
//! does); every reading reaches every client subscribed to its unit, whichever instance that
//! client is on. The instances and Redis share the server core, so the table shows what the
//! same hardware costs per delivery as instances are added: the cluster's overhead (each
//! instance decodes every message and reads every event from the stream) against one box.

use anyhow::{bail, Context};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::ledger::{Ledger, Percentiles};
use crate::mqtt::{self, PublishPlan};
use crate::procstat;
use crate::scenario::{token, Env, Feed};
use crate::servers::{
    free_port, http_status, log_file, pinned, server_command, wait_for, write_sensorcast_config,
    Proc, Topology,
};
use crate::sio::{self, ClientSpec};

/// One measured configuration.
pub struct Row {
    /// 0: a single box without `[cluster]`.
    pub instances: usize,
    pub clients: usize,
    pub rate: f64,
    pub secs: f64,
    pub expected: u64,
    pub delivered: u64,
    pub lat: Percentiles,
    /// CPU seconds of every instance together, and of Redis, over the window.
    pub servers_cpu_s: f64,
    pub redis_cpu_s: f64,
    pub readings: u64,
    /// The largest instance's resident memory at the end of the window, MiB.
    pub rss_mib: f64,
}

/// Runs each configuration of `instances` (0 = no cluster) and returns the rows.
pub async fn run(
    env: &Env,
    bin: &Path,
    instances: &[usize],
    clients: usize,
    rate: f64,
    secs: f64,
    topo: Topology,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &n in instances {
        eprintln!("[cluster] {n} instance(s), {clients} clients, {rate}/s for {secs} s");
        rows.push(one(env, bin, n, clients, rate, secs, topo).await?);
    }
    Ok(rows)
}

async fn one(
    env: &Env,
    bin: &Path,
    n: usize,
    clients: usize,
    rate: f64,
    secs: f64,
    topo: Topology,
) -> anyhow::Result<Row> {
    let dir = env.dir.join(format!("cluster-{n}-{}", free_port()));
    std::fs::create_dir_all(&dir)?;
    let redis = if n > 0 {
        Some(start_redis(&dir, env.server_cpu)?)
    } else {
        None
    };
    let mut nodes = Vec::new();
    for i in 0..n.max(1) {
        let redis_port = redis.as_ref().map(|(_, p)| *p);
        nodes.push(start_instance(env, bin, &dir, topo, i, redis_port)?);
    }
    if n > 0 {
        wait_formed(&nodes, n, topo.units)?;
    }
    let ledger = Arc::new(Ledger::new(400_000));
    let (stop, stop_rx) = watch::channel(false);
    let mut subs = vec![0u64; topo.units as usize];
    let specs: Vec<ClientSpec> = (0..clients)
        .map(|k| {
            let u = k % topo.units as usize;
            subs[u] += 1;
            ClientSpec {
                port: nodes[k % nodes.len()].1,
                token: token(k),
                units: vec![format!("u{u}")],
            }
        })
        .collect();
    let connected = sio::connect_all(specs, 256, ledger.clone(), stop_rx).await?;
    if !connected.failed.is_empty() {
        bail!(
            "{} clients failed: {:?}",
            connected.failed.len(),
            connected.first_error
        );
    }
    probe(env, &ledger).await?;
    let mut feed = Feed {
        topo,
        ledger: ledger.clone(),
        subs,
        next_seq: 0,
        pid: None,
    };
    let pids: Vec<u32> = nodes.iter().map(|(p, _)| p.pid()).collect();
    let redis_pid = redis.as_ref().map(|(p, _)| p.pid());
    let sample_all = |pids: &[u32]| {
        pids.iter()
            .map(|p| procstat::sample(*p))
            .collect::<Vec<_>>()
    };
    let before = sample_all(&pids);
    let redis_before = redis_pid.map(procstat::sample).unwrap_or_default();
    let started = Instant::now();
    let w = env.window(&mut feed, rate, 2.0, secs, None).await?;
    let whole = started.elapsed().as_secs_f64();
    let after = sample_all(&pids);
    let redis_after = redis_pid.map(procstat::sample).unwrap_or_default();
    let servers_cpu_s: f64 = after.iter().zip(&before).map(|(a, b)| a.cpu_since(b)).sum();
    // The CPU was sampled around warm-up, window and drain: scale it to the window.
    let share = (w.secs / whole).min(1.0);
    let _ = stop.send(true);
    for t in connected.tasks {
        let _ = t.await;
    }
    drop(nodes);
    drop(redis);
    Ok(Row {
        instances: n,
        clients,
        rate,
        secs: w.secs,
        expected: w.expected,
        delivered: w.delivered,
        lat: w.lat,
        servers_cpu_s: servers_cpu_s * share,
        redis_cpu_s: redis_after.cpu_since(&redis_before) * share,
        readings: (rate * w.secs) as u64,
        rss_mib: after.iter().map(|a| a.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
    })
}

/// Publishes one reading of `s0` every 100 ms until a client of `u0` sees one.
async fn probe(env: &Env, ledger: &Arc<Ledger>) -> anyhow::Result<()> {
    let base = ledger.capacity() - 1000;
    for attempt in 0..60u64 {
        let plan = PublishPlan {
            port: env.mqtt_port,
            rate: 100.0,
            first_seq: base + attempt,
            count: 1,
            sensors: 1,
            qos: env.qos,
            fixed_temperature: None,
        };
        mqtt::publish(plan, ledger.clone()).await??;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if ledger.delivered_in(base, base + 60) > 0 {
            ledger.take_latencies(0, 0);
            return Ok(());
        }
    }
    bail!("no reading reached a client within 6 s")
}

fn start_redis(dir: &Path, cpu: usize) -> anyhow::Result<(Proc, u16)> {
    let port = free_port();
    let child = pinned(cpu, Path::new("/usr/bin/redis-server"))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(log_file(dir, "redis.log")?)
        .stderr(log_file(dir, "redis.err")?)
        .spawn()
        .context("start redis-server (apt-get install redis-server)")?;
    let p = Proc { child };
    wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .context("redis-server did not start listening")?;
    Ok((p, port))
}

/// Instance `i`: the load generator's sensorcast config, plus `[cluster]` when `redis` is set.
fn start_instance(
    env: &Env,
    bin: &Path,
    dir: &Path,
    topo: Topology,
    i: usize,
    redis: Option<u16>,
) -> anyhow::Result<(Proc, u16)> {
    let dir = dir.join(format!("node-{i}"));
    std::fs::create_dir_all(&dir)?;
    let port = free_port();
    write_sensorcast_config(&dir, topo, port, env.mqtt_port)?;
    if let Some(redis) = redis {
        let mut cfg = std::fs::read_to_string(dir.join("sensorcast.toml"))?;
        let _ = write!(
            cfg,
            "\n[cluster]\nredis_url = \"redis://127.0.0.1:{redis}\"\nnode_id = \"n{i}\"\n"
        );
        std::fs::write(dir.join("sensorcast.toml"), cfg)?;
    }
    let child = server_command(env.server_cpu, bin)
        .arg("--config")
        .arg(dir.join("sensorcast.toml"))
        .stdout(log_file(&dir, "stdout.log")?)
        .stderr(log_file(&dir, "stderr.log")?)
        .spawn()
        .context("start sensorcast")?;
    let mut proc = Proc { child };
    wait_for(Duration::from_secs(30), || {
        matches!(proc.child.try_wait(), Ok(None)) && http_status(port, "/health/ready") == Some(200)
    })
    .with_context(|| {
        let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        format!(
            "sensorcast instance {i} did not become ready: {}",
            log.trim()
        )
    })?;
    Ok((proc, port))
}

/// Every instance sees `n` live instances and the units are all owned.
fn wait_formed(nodes: &[(Proc, u16)], n: usize, units: u64) -> anyhow::Result<()> {
    wait_for(Duration::from_secs(30), || {
        let mut owned = 0;
        for (_, port) in nodes {
            let Some(h) = health(*port) else {
                return false;
            };
            let c = &h["checks"]["cluster"];
            if c["liveInstances"] != n || c["degraded"] != false || c["settled"] != true {
                return false;
            }
            owned += c["ownedUnits"].as_u64().unwrap_or(0);
        }
        owned == units
    })
    .context("the cluster did not form")
}

fn health(port: u16) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

/// The rows as a markdown table.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| instances | clients | readings/s | delivered | deliveries/s | p50 ms | p99 ms | \
         sensorcast CPU µs/delivery | Redis CPU µs/reading | Redis core share | RSS MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let name = match r.instances {
            0 => "1, no `[cluster]`".to_string(),
            n => n.to_string(),
        };
        let ratio = r.delivered as f64 / r.expected.max(1) as f64;
        let _ = writeln!(
            out,
            "| {name} | {} | {:.0} | {:.2} % | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} |",
            r.clients,
            r.rate,
            ratio * 100.0,
            r.delivered as f64 / r.secs,
            r.lat.p50,
            r.lat.p99,
            r.servers_cpu_s * 1e6 / r.delivered.max(1) as f64,
            if r.instances == 0 {
                "-".into()
            } else {
                format!("{:.1}", r.redis_cpu_s * 1e6 / r.readings.max(1) as f64)
            },
            if r.instances == 0 {
                "-".into()
            } else {
                format!("{:.1} %", r.redis_cpu_s / r.secs * 100.0)
            },
            r.rss_mib,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_configuration() {
        let row = |instances| Row {
            instances,
            clients: 1000,
            rate: 500.0,
            secs: 10.0,
            expected: 5_000_000,
            delivered: 5_000_000,
            lat: Percentiles::default(),
            servers_cpu_s: 20.0,
            redis_cpu_s: 1.0,
            readings: 5000,
            rss_mib: 12.5,
        };
        let t = render(&[row(0), row(2)]);
        assert!(
            t.contains("| 1, no `[cluster]` | 1000 | 500 | 100.00 % | 500000 |"),
            "{t}"
        );
        assert!(t.contains("| 4.00 | - | - |"), "{t}");
        assert!(
            t.contains("| 2 | 1000 |") && t.contains("| 200.0 | 10.0 % |"),
            "{t}"
        );
        assert_eq!(t.lines().count(), 4);
    }
}
