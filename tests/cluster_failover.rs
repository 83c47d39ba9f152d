//! Cluster mode when an instance goes away (issue 14's guarantees 3 and 4, docs/scaling.md):
//! an offline timer of a unit whose evaluating instance was killed still fires on the
//! survivor, on time and once; readings published while an instance is stopped (SIGTERM) or
//! killed (SIGKILL) reach every client once, and a client of the instance that went away
//! resumes on a survivor with exactly what it missed; an owner that stalls past its TTL and
//! comes back loses and doubles nothing; a reader that fell behind the trimmed stream says so
//! and serves no resume with a hole in it.
//!
//! Kept apart from tests/cluster.rs so each file stays readable; same setup (a private
//! redis-server and mosquitto per test, sensorcast binaries, the official socket.io-client)
//! and the same short timings: heartbeat 100 ms, node TTL 600 ms.

mod common;

use common::broker::{Broker, Confirm, Publisher};
use common::cluster::{cluster_check, cluster_config, publish, start, FAILOVER, QUIET};
use common::jsclient::{JsClient, JsDriver};
use common::redis::Redis;
use common::service::{auth, subscribed, Service};
use common::wait::{check, eventually, WAIT};
use common::webhook::webhook_receiver;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The index of the instance that owns (evaluates) the one unit of a one-unit cluster.
async fn owner_of_the_unit(nodes: &[Service]) -> usize {
    let mut owner = None;
    for (i, n) in nodes.iter().enumerate() {
        if cluster_check(n).await["ownedUnits"] == 1 {
            assert!(owner.is_none(), "one owner");
            owner = Some(i);
        }
    }
    owner.expect("one instance owns u1")
}

/// The instance evaluating a unit is killed (SIGKILL) right after the unit's last reading, and
/// the sensor goes silent: the survivor raises `monitoring_interrupted` for the unit once, not
/// before `offline_after` (counted from that reading) and within the failover window after
/// it; a dashboard on the survivor sees it, and the webhook is called once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_timer_of_a_killed_owners_unit_fires_on_the_survivor_on_time_once() {
    let broker = Broker::start().await;
    let redis = Redis::start().await;
    let (url, mut posts) = webhook_receiver().await;
    let offline_after = Duration::from_secs(3);
    let config = cluster_config(&broker, &redis, 1)
        .alerts("temp_min", 0)
        .alerts("temp_max", 8)
        .alerts("offline_after", "3s")
        .alerts("webhooks", vec![url]);
    let mut nodes = start(&config, &["a", "b"], 1).await;
    let owner = owner_of_the_unit(&nodes).await;
    let survivor = 1 - owner;
    let driver = JsDriver::spawn().await;
    let watcher = subscribed(&driver, &nodes[survivor], auth("o1", "staff"), &["u1"]).await;

    let p = Publisher::connect(&broker).await;
    let sent = Instant::now();
    publish(&p, 1, 4.0).await;
    assert_eq!(watcher.next_event("sensor:reading").await[0]["seq"], 1);
    nodes[owner].signal("KILL");
    let _ = nodes[owner].child().wait().await;

    let raised = watcher.next_event("alert:triggered").await;
    let after = sent.elapsed();
    assert_eq!(
        raised[0]["alertType"], "monitoring_interrupted",
        "{raised:?}"
    );
    assert_eq!(raised[0]["unitId"], "u1");
    assert!(
        after + Duration::from_millis(300) >= offline_after,
        "not before offline_after: {after:?}"
    );
    assert!(
        after <= offline_after + FAILOVER,
        "within the failover window: {after:?}"
    );
    watcher.assert_no_event("alert:triggered", QUIET * 2).await;
    let mut hooks = Vec::new();
    while let Ok(Some(post)) = tokio::time::timeout(QUIET, posts.recv()).await {
        hooks.push(post);
    }
    let interrupted = hooks
        .iter()
        .filter(|h| h["event"] == "alert:triggered")
        .count();
    assert_eq!(interrupted, 1, "one webhook call: {hooks:?}");
    let open = watcher.emit_ack("get:alerts", vec![]).await;
    let alerts = open[0]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{open:?}");
    assert_eq!(alerts[0]["alertId"], raised[0]["alertId"]);

    // The sensor comes back: the survivor, now its evaluator, resolves the same alert.
    publish(&p, 1, 4.5).await;
    let resolved = watcher.next_event("alert:resolved").await;
    assert_eq!(resolved[0]["alertId"], raised[0]["alertId"]);
    nodes.remove(owner);
    for n in nodes {
        n.stop().await;
    }
}

/// Units of the resume tests, and readings published in each of the three phases: before the
/// signal, while the instance goes away, after its client resumed elsewhere.
const UNITS: usize = 5;
const PHASES: [std::ops::Range<u32>; 3] = [0..150, 150..300, 300..400];

/// Publishes reading `i` of [`PHASES`] for every `i` in `range` (QoS 1) and waits for the
/// broker's acknowledgements. Temperatures `i / 16` are distinct and exact in binary.
async fn publish_phase(p: &Publisher, range: std::ops::Range<u32>) {
    let mut confirms = Vec::new();
    for i in range {
        let body = json!({ "temperature": f64::from(i) / 16.0 }).to_string();
        let topic = format!("sensors/p{}", i as usize % UNITS + 1);
        confirms.push(p.publish_nowait(&topic, body, 1).await);
    }
    for c in confirms {
        Confirm::wait(c).await;
    }
}

/// The reading number `i` a delivered reading carries.
fn number(r: &Value) -> u32 {
    (r["temperature"].as_f64().unwrap() * 16.0) as u32
}

/// Collects `c`'s readings until it has `n`, then checks that nothing more comes.
async fn collect(c: &JsClient, n: usize, what: &str) -> Vec<Value> {
    let mut got = Vec::with_capacity(n);
    let started = Instant::now();
    while got.len() < n {
        match c.next_event_timeout("sensor:reading", WAIT).await {
            Some(r) => got.push(r[0].clone()),
            None => panic!("{what}: {} of {n} after {:?}", got.len(), started.elapsed()),
        }
    }
    c.assert_no_event("sensor:reading", QUIET).await;
    got
}

/// Every reading of `0..n` once, and per unit seqs 1, 2, 3... in arrival order.
fn assert_all_once(got: &[Value], n: u32, what: &str) {
    let mut numbers: Vec<u32> = got.iter().map(number).collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..n).collect::<Vec<_>>(),
        "{what}: each reading once"
    );
    let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in got {
        let unit = r["unitId"].as_str().unwrap().to_string();
        seqs.entry(unit)
            .or_default()
            .push(r["seq"].as_u64().unwrap());
    }
    for (unit, s) in seqs {
        let want: Vec<u64> = (1..=s.len() as u64).collect();
        assert_eq!(s, want, "{what}: {unit} numbered 1, 2, 3... in order");
    }
}

/// Per unit, the `since` of the last reading in `got`: `{epoch, seq}`.
fn since_of(got: &[Value]) -> BTreeMap<String, Value> {
    let mut since = BTreeMap::new();
    for r in got {
        let unit = r["unitId"].as_str().unwrap();
        let seq = r["seq"].as_u64().unwrap();
        let id = r["id"].as_str().unwrap();
        let epoch = id
            .strip_suffix(&format!("-{unit}-{seq}"))
            .unwrap_or_else(|| panic!("id {id} is epoch-unit-seq"));
        since.insert(unit.to_string(), json!({ "epoch": epoch, "seq": seq }));
    }
    since
}

/// Three instances; a client on the first and one on each of the others, all subscribed to
/// every unit. Readings are published (QoS 1), the first instance gets `sig` while more are
/// published; its client, cut off, opens a socket on a survivor and subscribes to each unit
/// with `since` (its last epoch and seq there): `recovered: true`, and replay plus what is
/// published next give it every reading once. The survivors' clients get every reading once.
async fn a_client_of_a_stopped_instance_resumes_on_a_survivor(sig: &str) {
    let broker = Broker::start_with("max_queued_messages 5000\n").await;
    let redis = Redis::start().await;
    let config = cluster_config(&broker, &redis, UNITS).set("log", "level", "warn");
    let mut nodes = start(&config, &["a", "b", "c"], UNITS).await;
    let mut victim = nodes.remove(0);
    assert!(
        cluster_check(&victim).await["ownedUnits"].as_u64().unwrap() > 0,
        "the instance that goes away owns units"
    );
    let driver = JsDriver::spawn().await;
    let websocket = Some(vec!["websocket"]);
    let mut clients = Vec::new();
    for n in std::iter::once(&victim).chain(&nodes) {
        let c = driver
            .connect_with(&n.url(), Some(auth("o1", "staff")), websocket.clone())
            .await;
        c.wait_connect().await.expect("socket connects");
        let ack = c.emit_ack("subscribe:organization", vec![]).await;
        assert_eq!(ack[0]["ok"], true, "{ack:?}");
        clients.push(c);
    }
    let cut_off = clients.remove(0);
    let p = Publisher::connect(&broker).await;

    publish_phase(&p, PHASES[0].clone()).await;
    // The client has seen each unit (so it has a `since` for each), not necessarily all.
    let mut before = Vec::new();
    while since_of(&before).len() < UNITS {
        before.push(cut_off.next_event("sensor:reading").await[0].clone());
    }
    victim.signal(sig);
    publish_phase(&p, PHASES[1].clone()).await;
    let reason = cut_off.wait_disconnect().await;
    let _ = victim.child().wait().await;
    before.extend(
        cut_off
            .drain_events("sensor:reading")
            .into_iter()
            .map(|r| r[0].clone()),
    );
    cut_off.close().await;
    let since = since_of(&before);
    assert_eq!(
        since.len(),
        UNITS,
        "a reading of each unit before {reason:?}"
    );

    let resumed = driver
        .connect_with(&nodes[0].url(), Some(auth("o1", "staff")), websocket)
        .await;
    resumed.wait_connect().await.expect("socket connects");
    for (unit, since) in &since {
        let ack = resumed
            .emit_ack(
                "subscribe:unit",
                vec![json!({ "unitId": unit, "since": since })],
            )
            .await;
        assert_eq!(ack[0]["ok"], true, "{ack:?}");
        assert_eq!(ack[0]["recovered"], true, "{unit}: {ack:?}");
    }
    publish_phase(&p, PHASES[2].clone()).await;
    let total = PHASES[2].end;
    let after = collect(&resumed, total as usize - before.len(), "resumed").await;
    let whole: Vec<Value> = before.into_iter().chain(after).collect();
    assert_all_once(&whole, total, "the client that resumed");
    for (i, c) in clients.iter().enumerate() {
        let got = collect(c, total as usize, "survivor's client").await;
        assert_all_once(&got, total, &format!("client on survivor {i}"));
    }
    for n in nodes {
        n.stop().await;
    }
}

/// [`a_client_of_a_stopped_instance_resumes_on_a_survivor`] with SIGTERM (a clean stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_an_instance_while_readings_flow_its_client_resumes_on_a_survivor_once() {
    a_client_of_a_stopped_instance_resumes_on_a_survivor("TERM").await;
}

/// [`a_client_of_a_stopped_instance_resumes_on_a_survivor`] with SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_an_instance_while_readings_flow_its_client_resumes_on_a_survivor_once() {
    a_client_of_a_stopped_instance_resumes_on_a_survivor("KILL").await;
}

/// An instance's stream reader falls further behind than the stream keeps: it is paused
/// (SIGSTOP) while 1500 readings go through a stream trimmed to about 1000 entries. Resumed
/// (SIGCONT), it reports the gap in `/health` (`checks.cluster.streamGaps`, `streamEntriesLost`),
/// and a dashboard resuming on it from before the gap gets exactly what it missed, in order
/// (from Redis's history), never a replay with the trimmed readings left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_behind_the_trimmed_stream_reports_the_gap_and_resumes_skip_nothing() {
    const MISSED: u32 = 1500;
    // The owner's MQTT queue must take the burst (docs/scaling.md).
    let broker = Broker::start_with("max_queued_messages 5000\n").await;
    let redis = Redis::start().await;
    let config = cluster_config(&broker, &redis, 1)
        .set("cluster", "stream_max_len", 1000)
        .realtime("history_readings", 2000)
        .limit("socket_buffer", 4096)
        .set("log", "level", "warn");
    let mut nodes = start(&config, &["a", "b"], 1).await;
    let lagging = 1 - owner_of_the_unit(&nodes).await;
    let driver = JsDriver::spawn().await;
    let first = subscribed(&driver, &nodes[lagging], auth("o1", "staff"), &["u1"]).await;
    let p = Publisher::connect(&broker).await;
    let one_unit = |range: std::ops::Range<u32>| {
        let p = &p;
        async move {
            let mut confirms = Vec::new();
            for i in range {
                let body = json!({ "temperature": f64::from(i) / 16.0 }).to_string();
                confirms.push(p.publish_nowait("sensors/p1", body, 1).await);
            }
            for c in confirms {
                Confirm::wait(c).await;
            }
        }
    };
    one_unit(0..10).await;
    let seen = collect(&first, 10, "before the pause").await;
    first.close().await;
    let since = since_of(&seen[..5])["u1"].clone();

    nodes[lagging].signal("STOP");
    one_unit(10..10 + MISSED).await;
    // The owner has appended every reading (entries are numbered from 1; a few are alert
    // state), and the stream
    // keeps fewer than were appended while the reader was paused.
    let redis = &redis;
    eventually(WAIT, "every reading in the stream", || async move {
        let n = redis.command(&["GET", "sensorcast:n"]).await;
        let count: u32 = n.lines().nth(1).and_then(|l| l.parse().ok()).unwrap_or(0);
        check(count >= 10 + MISSED, n)
    })
    .await;
    let len = redis.command(&["XLEN", "sensorcast:events"]).await;
    let len: u32 = len.trim().trim_start_matches(':').parse().unwrap();
    assert!(len < MISSED, "the stream was trimmed: {len} entries");
    nodes[lagging].signal("CONT");

    let lagging_node = &nodes[lagging];
    let check = eventually(WAIT, "the gap reported", || async {
        let c = cluster_check(lagging_node).await;
        let lost = c["streamEntriesLost"].as_u64().unwrap_or(0);
        if c["streamGaps"].as_u64().unwrap_or(0) >= 1 && lost > 0 && c["degraded"] == false {
            Ok(c)
        } else {
            Err(c.to_string())
        }
    })
    .await;
    let lost = check["streamEntriesLost"].as_u64().unwrap();
    assert!(lost < u64::from(MISSED), "{check}");

    let resumed = subscribed(&driver, &nodes[lagging], auth("o1", "staff"), &[]).await;
    let ack = resumed
        .emit_ack(
            "subscribe:unit",
            vec![json!({ "unitId": "u1", "since": since })],
        )
        .await;
    assert_eq!(ack[0]["ok"], true, "{ack:?}");
    assert_eq!(ack[0]["recovered"], true, "from Redis's history: {ack:?}");
    let total = 10 + MISSED;
    let replayed = collect(&resumed, (total - 5) as usize, "replayed").await;
    let numbers: Vec<u32> = replayed.iter().map(number).collect();
    assert_eq!(numbers, (5..total).collect::<Vec<_>>(), "no hole, in order");
    for n in nodes {
        n.stop().await;
    }
}

/// The instance that owns a unit stalls (SIGSTOP) for longer than the node TTL while readings
/// flow: the other takes the unit over; the stalled one comes back (SIGCONT), its stale writes
/// are refused (fencing) and the unit moves back to it. A client on each instance gets every
/// reading once, numbered 1, 2, 3... in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_stalls_past_its_ttl_and_comes_back_loses_and_doubles_nothing() {
    let broker = Broker::start_with("max_queued_messages 5000\n").await;
    let redis = Redis::start().await;
    let config = cluster_config(&broker, &redis, 1).set("log", "level", "warn");
    let mut nodes = start(&config, &["a", "b"], 1).await;
    let owner = owner_of_the_unit(&nodes).await;
    let other = 1 - owner;
    let driver = JsDriver::spawn().await;
    let clients = [
        subscribed(&driver, &nodes[owner], auth("o1", "staff"), &["u1"]).await,
        subscribed(&driver, &nodes[other], auth("o1", "staff"), &["u1"]).await,
    ];
    let p = Publisher::connect(&broker).await;
    let one_unit = |range: std::ops::Range<u32>| {
        let p = &p;
        async move {
            for i in range {
                let body = json!({ "temperature": f64::from(i) / 16.0 }).to_string();
                Confirm::wait(p.publish_nowait("sensors/p1", body, 1).await).await;
            }
        }
    };
    one_unit(0..20).await;
    nodes[owner].signal("STOP");
    one_unit(20..40).await;
    let other_node = &nodes[other];
    eventually(WAIT, "the other instance owns u1", || async {
        let c = cluster_check(other_node).await;
        check(c["ownedUnits"] == 1 && c["liveInstances"] == 1, c)
    })
    .await;
    one_unit(40..60).await;
    nodes[owner].signal("CONT");
    one_unit(60..80).await;
    common::cluster::wait_formed(&[&nodes[0], &nodes[1]], 1).await;
    assert_eq!(owner_of_the_unit(&nodes).await, owner, "u1 moved back");
    one_unit(80..100).await;
    for (i, c) in clients.iter().enumerate() {
        let got = collect(c, 100, &format!("client {i}")).await;
        assert_all_once(&got, 100, &format!("client {i}"));
    }
    for n in nodes {
        n.stop().await;
    }
}
