//! A cluster of sensorcast binaries for a test (tests/cluster.rs, the load generator's
//! checks): the config with short timings, one config per instance, starting them and waiting
//! until the cluster has formed, and reading what clients received.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

use super::broker::{Broker, Publisher};
use super::config::{TestConfig, TestRegistry};
use super::jsclient::JsClient;
use super::redis::Redis;
use super::service::Service;
use super::wait::{check, eventually, WAIT};

/// How long "nothing more arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(500);
/// Failover: node TTL plus a few heartbeats, on a busy machine.
pub const FAILOVER: Duration = Duration::from_secs(5);

/// One org, one site, `n` units `u1..un` with a json sensor `p1..pn` each.
pub fn registry(n: usize) -> TestRegistry {
    let mut r = TestRegistry::default().org("o1").site("s1", "o1");
    for i in 1..=n {
        r = r
            .unit(&format!("u{i}"), "s1")
            .sensor(&format!("p{i}"), &format!("u{i}"));
    }
    r
}

/// The cluster's test config: fast heartbeats, a short TTL, history committed every 200 ms,
/// the given registry.
pub fn cluster_config(broker: &Broker, redis: &Redis, units: usize) -> TestConfig {
    TestConfig::new(broker)
        .registry(&registry(units))
        .set("cluster", "redis_url", redis.url())
        .set("cluster", "heartbeat", "100ms")
        .set("cluster", "node_ttl", "600ms")
        .set("cluster", "redis_timeout", "1s")
        .set("storage", "commit_interval", "200ms")
        .set("log", "level", "info")
}

/// Instance `id` of the cluster: its own node id and MQTT client id.
pub fn node(config: &TestConfig, id: &str) -> TestConfig {
    config.clone().set("cluster", "node_id", id).mqtt(
        "client_id",
        format!("sensorcast-{id}-{}", fastrand::u64(..)),
    )
}

/// Starts one binary per id and waits until the cluster has formed (see [`wait_formed`]).
pub async fn start(config: &TestConfig, ids: &[&str], units: usize) -> Vec<Service> {
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(Service::start_binary(&node(config, id), &[]).await);
    }
    wait_formed(&nodes.iter().collect::<Vec<_>>(), units).await;
    nodes
}

/// `checks.cluster` of an instance.
pub async fn cluster_check(s: &Service) -> Value {
    let (_, h) = s.get("/health", None).await;
    h["checks"]["cluster"].clone()
}

/// Every instance sees all of them alive and not degraded, has nothing left to claim or
/// release, and the units are all owned, once.
pub async fn wait_formed(nodes: &[&Service], units: usize) {
    eventually(WAIT, "the cluster to form", || async {
        let mut owned = 0;
        let mut seen = Vec::new();
        for n in nodes {
            let c = cluster_check(n).await;
            seen.push(c.clone());
            let settled = c["settled"] == true;
            if c["degraded"] != false || c["liveInstances"] != nodes.len() || !settled {
                return Err(format!("{seen:?}"));
            }
            owned += c["ownedUnits"].as_u64().unwrap_or(0);
        }
        check(
            owned == units as u64,
            format!("{owned} units owned of {units}: {seen:?}"),
        )
    })
    .await
}

/// A reading for sensor `p{unit}`.
pub async fn publish(p: &Publisher, unit: usize, temperature: f64) {
    let body = json!({ "temperature": temperature }).to_string();
    p.publish(&format!("sensors/p{unit}"), body, 1).await;
}

/// The next `n` readings `c` receives, then nothing more for [`QUIET`].
pub async fn readings(c: &JsClient, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(c.next_event("sensor:reading").await[0].clone());
    }
    c.assert_no_event("sensor:reading", QUIET).await;
    out
}

/// Per unit: the temperatures in arrival order, and whether seqs grew by one each time.
pub fn by_unit(readings: &[Value]) -> BTreeMap<String, (Vec<f64>, bool)> {
    let mut units: BTreeMap<String, (Vec<f64>, Vec<u64>)> = BTreeMap::new();
    for r in readings {
        let e = units
            .entry(r["unitId"].as_str().unwrap().to_string())
            .or_default();
        e.0.push(r["temperature"].as_f64().unwrap());
        e.1.push(r["seq"].as_u64().unwrap());
    }
    units
        .into_iter()
        .map(|(u, (t, seqs))| (u, (t, seqs.windows(2).all(|w| w[1] == w[0] + 1))))
        .collect()
}
