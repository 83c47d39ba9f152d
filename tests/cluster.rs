//! Cluster mode end to end (issue 14, docs/scaling.md): two or three sensorcast binaries, a
//! private redis-server and a private mosquitto per test, each started, stopped, killed or
//! restarted by the test, and the official socket.io-client on every instance. These prove the
//! guarantees of a single box across instances: every reading of a client's rooms exactly once,
//! whichever instance ingested it; resume on another instance; one alert and one webhook call
//! per excursion, acknowledgements seen everywhere, escalation on time after the evaluating
//! instance is killed; Redis and broker restarts; a kill in the middle of 2000 readings.
//!
//! (About 500 lines: seven scenarios on one setup, kept in one test binary to spare CI a link.)
//!
//! Timings are short so the tests are fast: heartbeat 100 ms, node TTL 600 ms (the failover
//! window), Redis timeout 1 s.
//!
//! Over 400 lines: The cluster guarantees, one test each, sharing the cluster harness.

mod common;

use common::broker::free_port;
use common::broker::{Broker, Publisher};
use common::cluster::{
    by_unit, cluster_check, cluster_config, node, publish, readings, start, wait_formed, FAILOVER,
    QUIET,
};
use common::http::http_get_raw;
use common::jsclient::{JsClient, JsDriver};
use common::redis::Redis;
use common::service::{auth, connected, subscribed, token, Service};
use common::wait::{check, eventually, WAIT};
use common::webhook::webhook_receiver;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A client on either instance gets every reading of its rooms exactly once, in order and
/// numbered 1, 2, 3... per unit, whichever instance owns (ingests for the cluster) the unit;
/// both instances own some of the units; `/health/realtime` counts the cluster's sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_either_instance_gets_every_reading_once_whichever_instance_owns_its_unit() {
    let broker = Broker::start().await;
    let redis = Redis::start().await;
    let config = cluster_config(&broker, &redis, 6);
    let nodes = start(&config, &["a", "b"], 6).await;
    for n in &nodes {
        let owned = cluster_check(n).await["ownedUnits"].as_u64().unwrap();
        assert!(owned > 0, "each instance owns some units: {owned}");
    }
    let driver = JsDriver::spawn().await;
    let on_a = connected(&driver, &nodes[0], auth("o1", "staff")).await;
    let on_b = connected(&driver, &nodes[1], auth("o1", "staff")).await;
    for c in [&on_a, &on_b] {
        let ack = c.emit_ack("subscribe:organization", vec![]).await;
        assert_eq!(ack[0]["ok"], true, "{ack:?}");
    }
    nodes[1]
        .get_until("/health/realtime", None, "both sockets counted", |_, v| {
            v["websocket"]["connections"] == 1 && v["websocket"]["clusterConnections"] == 2
        })
        .await;
    let owner = format!(
        "Bearer {}",
        token(json!({ "org_id": "o1", "role": "owner" }))
    );
    let page = http_get_raw(nodes[1].addr, "/", &[("authorization", &owner)]).await;
    for shown in ["Redis connected", "2 live instances", "2 on every instance"] {
        assert!(
            page.body.contains(shown),
            "{shown:?} not on the status page"
        );
    }

    let p = Publisher::connect(&broker).await;
    for i in 0..60u32 {
        publish(&p, (i % 6 + 1) as usize, f64::from(i)).await;
    }
    for c in [&on_a, &on_b] {
        let got = readings(c, 60).await;
        let units = by_unit(&got);
        assert_eq!(units.len(), 6, "{units:?}");
        for (unit, (temps, consecutive)) in &units {
            let i: u32 = unit[1..].parse().unwrap();
            let want: Vec<f64> = (0..60u32)
                .filter(|t| t % 6 + 1 == i)
                .map(f64::from)
                .collect();
            assert_eq!(temps, &want, "{unit}: in order, each once");
            assert!(consecutive, "{unit}: seq grows by one");
        }
        let epochs: BTreeSet<&str> = got
            .iter()
            .map(|r| r["id"].as_str().unwrap().split('-').next().unwrap())
            .collect();
        assert_eq!(
            epochs.len(),
            1,
            "one epoch for the whole cluster: {epochs:?}"
        );
    }
    // Each instance archives what it delivered in a history store of its own (its own
    // `state.dir`: two processes must never write one SQLite file), and `get:history` on either
    // answers from it: u1's ten readings, in order, numbered as delivered.
    for (n, c) in nodes.iter().zip([&on_a, &on_b]) {
        let db = n.dir.path().join("state").join("sensorcast.db");
        assert!(db.exists(), "{} has its own store", db.display());
        let points = eventually(WAIT, "u1's history committed", || async {
            let h = c
                .emit_ack(
                    "get:history",
                    vec![json!({ "unitId": "u1", "resolution": "raw" })],
                )
                .await
                .remove(0);
            let points = h["points"].as_array().cloned().unwrap_or_default();
            check(points.len() == 10, &h).map(|()| points)
        })
        .await;
        let temps: Vec<f64> = points
            .iter()
            .map(|p| p["temperature"].as_f64().unwrap())
            .collect();
        let want: Vec<f64> = (0..10).map(|i| f64::from(i * 6)).collect();
        assert_eq!(temps, want, "u1's archive in order");
        assert!(points.iter().zip(1u64..).all(|(p, s)| p["seq"] == s));
    }
    for n in nodes {
        n.stop().await;
    }
}

/// A dashboard that was on instance A resumes on instance B with `since` and gets exactly the
/// readings it missed (`recovered: true`); so does one resuming on an instance started after
/// those readings (from the history in Redis: its own memory has none of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_resumes_on_another_instance_and_on_one_started_later() {
    let broker = Broker::start().await;
    let redis = Redis::start().await;
    let config = cluster_config(&broker, &redis, 2);
    let mut nodes = start(&config, &["a", "b"], 2).await;
    let driver = JsDriver::spawn().await;
    let p = Publisher::connect(&broker).await;

    let first = subscribed(&driver, &nodes[0], auth("o1", "staff"), &["u1"]).await;
    for t in 1..=5 {
        publish(&p, 1, f64::from(t)).await;
    }
    let seen = readings(&first, 5).await;
    let epoch = seen[4]["id"]
        .as_str()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_string();
    let last = seen[4]["seq"].as_u64().unwrap();
    first.close().await;

    // Missed while away; a witness on A shows they went out.
    let witness = subscribed(&driver, &nodes[0], auth("o1", "staff"), &["u1"]).await;
    for t in 6..=10 {
        publish(&p, 1, f64::from(t)).await;
    }
    readings(&witness, 5).await;

    let resume = |c: JsClient| {
        let since = json!({ "unitId": "u1", "since": { "epoch": epoch, "seq": last } });
        async move {
            let ack = c.emit_ack("subscribe:unit", vec![since]).await;
            (c, ack)
        }
    };
    let on_b = connected(&driver, &nodes[1], auth("o1", "staff")).await;
    let (on_b, ack) = resume(on_b).await;
    assert_eq!(ack[0]["ok"], true, "{ack:?}");
    assert_eq!(ack[0]["recovered"], true, "{ack:?}");
    assert_eq!(ack[0]["epoch"], epoch.as_str());
    let replayed = readings(&on_b, 5).await;
    let temps: Vec<f64> = replayed
        .iter()
        .map(|r| r["temperature"].as_f64().unwrap())
        .collect();
    assert_eq!(temps, [6.0, 7.0, 8.0, 9.0, 10.0]);
    assert_eq!(replayed[0]["seq"], last + 1);

    // An instance that starts now knows these readings only from Redis.
    let later = Service::start_binary(&node(&config, "c"), &[]).await;
    wait_formed(&[&nodes[0], &nodes[1], &later], 2).await;
    let on_c = connected(&driver, &later, auth("o1", "staff")).await;
    let (on_c, ack) = resume(on_c).await;
    assert_eq!(ack[0]["recovered"], true, "{ack:?}");
    assert_eq!(
        ack[0]["latest"]["temperature"], 10.0,
        "latest from Redis: {ack:?}"
    );
    let temps: Vec<f64> = readings(&on_c, 5)
        .await
        .iter()
        .map(|r| r["temperature"].as_f64().unwrap())
        .collect();
    assert_eq!(temps, [6.0, 7.0, 8.0, 9.0, 10.0]);
    nodes.push(later);
    for n in nodes {
        n.stop().await;
    }
}

/// With two instances an excursion raises one `alert:triggered` for every dashboard (on either
/// instance) and one webhook call; an acknowledgement on A, where the unit may not be owned,
/// reaches a dashboard on B as one `alert:acknowledged`, and `get:alerts` on B shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alert_and_one_webhook_per_excursion_and_an_ack_on_one_instance_reaches_the_other() {
    let broker = Broker::start().await;
    let redis = Redis::start().await;
    let (url, mut posts) = webhook_receiver().await;
    let config = cluster_config(&broker, &redis, 2)
        .alerts("temp_min", 0)
        .alerts("temp_max", 8)
        .alerts("webhooks", vec![url]);
    let nodes = start(&config, &["a", "b"], 2).await;
    let driver = JsDriver::spawn().await;
    let on_a = connected(&driver, &nodes[0], auth("o1", "staff")).await;
    let on_b = connected(&driver, &nodes[1], auth("o1", "staff")).await;

    let p = Publisher::connect(&broker).await;
    for unit in [1, 2] {
        publish(&p, unit, 12.0).await;
    }
    let mut ids = BTreeSet::new();
    for c in [&on_a, &on_b] {
        for _ in 0..2 {
            let t = c.next_event("alert:triggered").await;
            ids.insert(t[0]["alertId"].as_str().unwrap().to_string());
        }
        c.assert_no_event("alert:triggered", QUIET).await;
    }
    assert_eq!(
        ids.len(),
        2,
        "one alert per unit, the same on both instances: {ids:?}"
    );
    let mut hooks = Vec::new();
    while let Ok(Some(post)) = tokio::time::timeout(QUIET * 2, posts.recv()).await {
        hooks.push(post);
    }
    let triggered: Vec<&Value> = hooks
        .iter()
        .filter(|h| h["event"] == "alert:triggered")
        .collect();
    assert_eq!(
        triggered.len(),
        2,
        "one webhook call per excursion: {hooks:?}"
    );

    // Acknowledge both on A: at least one of the units is owned by B. The answer comes only
    // once the unit's state holding the acknowledgement is committed to Redis (issue 12 item 14).
    for id in &ids {
        let ack = on_a
            .emit_ack(
                "alert:ack",
                vec![json!({ "alertId": id, "comment": "stock moved" })],
            )
            .await;
        assert_eq!(ack[0]["ok"], true, "{ack:?}");
        assert_eq!(ack[0]["alert"]["acknowledgedBy"], "user-1");
        assert_eq!(ack[0]["alert"]["acknowledgedComment"], "stock moved");
        let tracks = committed_tracks(&redis).await;
        let track = tracks.iter().find(|t| t.contains(id.as_str()));
        let track = track.unwrap_or_else(|| panic!("{id} in {tracks:?}"));
        assert!(track.contains("user-1"), "acknowledged in Redis: {track}");
        assert!(track.contains("stock moved"), "with its comment: {track}");
    }
    let mut acked = BTreeSet::new();
    for _ in 0..2 {
        let a = on_b.next_event("alert:acknowledged").await;
        assert_eq!(a[0]["acknowledgedComment"], "stock moved", "{a:?}");
        acked.insert(a[0]["alertId"].as_str().unwrap().to_string());
    }
    on_b.assert_no_event("alert:acknowledged", QUIET).await;
    assert_eq!(acked, ids);
    let open = on_b.emit_ack("get:alerts", vec![]).await;
    let alerts = open[0]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{open:?}");
    assert!(
        alerts
            .iter()
            .all(|a| a["acknowledgedBy"] == "user-1" && a["acknowledgedComment"] == "stock moved"),
        "{open:?}"
    );
    for n in nodes {
        n.stop().await;
    }
}

/// Every unit state committed to Redis (the `tracks` hash), as JSON text.
async fn committed_tracks(redis: &Redis) -> Vec<String> {
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*:tracks")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut all = Vec::new();
    for key in keys {
        let vals: Vec<String> = ::redis::cmd("HVALS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        all.extend(vals);
    }
    all
}

/// The instance evaluating a unit's alerts is killed (SIGKILL) right after an excursion: the
/// other takes the unit over and escalates the same alert on time (not before
/// `confirm_after`, and within the failover window after it), once; readings go on with the
/// next seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_evaluating_instance_still_escalates_on_time_once() {
    let broker = Broker::start().await;
    let redis = Redis::start().await;
    let (url, mut posts) = webhook_receiver().await;
    let confirm = Duration::from_secs(3);
    let config = cluster_config(&broker, &redis, 1)
        .alerts("temp_min", 0)
        .alerts("temp_max", 8)
        .alerts("confirm_after", "3s")
        .alerts("webhooks", vec![url]);
    let mut nodes = start(&config, &["a", "b"], 1).await;
    // The one unit's owner evaluates it.
    let mut owner = None;
    for (i, n) in nodes.iter().enumerate() {
        if cluster_check(n).await["ownedUnits"] == 1 {
            owner = Some(i);
        }
    }
    let owner = owner.expect("one instance owns u1");
    let survivor = 1 - owner;
    let driver = JsDriver::spawn().await;
    let watcher = subscribed(&driver, &nodes[survivor], auth("o1", "staff"), &["u1"]).await;

    let p = Publisher::connect(&broker).await;
    publish(&p, 1, 12.0).await;
    let triggered = watcher.next_event("alert:triggered").await;
    let at = Instant::now();
    assert_eq!(watcher.next_event("sensor:reading").await[0]["seq"], 1);
    nodes[owner].signal("KILL");
    let _ = nodes[owner].child().wait().await;

    let escalated = watcher.next_event("alert:escalated").await;
    let after = at.elapsed();
    assert_eq!(
        escalated[0]["alertId"], triggered[0]["alertId"],
        "the same alert"
    );
    assert!(
        after + Duration::from_millis(300) >= confirm,
        "not before confirm_after: {after:?}"
    );
    assert!(
        after <= confirm + FAILOVER,
        "within the failover window: {after:?}"
    );
    watcher.assert_no_event("alert:escalated", QUIET).await;
    watcher
        .assert_no_event("alert:triggered", Duration::ZERO)
        .await;

    let mut hooks = Vec::new();
    while let Ok(Some(post)) = tokio::time::timeout(QUIET * 2, posts.recv()).await {
        hooks.push(post["event"].as_str().unwrap_or("").to_string());
    }
    let count = |e: &str| hooks.iter().filter(|h| *h == e).count();
    assert_eq!(
        (count("alert:triggered"), count("alert:escalated")),
        (1, 1),
        "{hooks:?}"
    );

    publish(&p, 1, 13.0).await;
    let next = watcher.next_event("sensor:reading").await;
    assert_eq!(next[0]["seq"], 2, "numbering goes on: {next:?}");
    nodes.remove(owner);
    for n in nodes {
        n.stop().await;
    }
}

/// Redis stops: every instance reports `degraded` and keeps serving its own sockets from its
/// own ingest, each reading once; Redis comes back (empty: it kept nothing): they rejoin,
/// and readings reach every client once again with seqs that never went back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_degrades_every_instance_alone_and_they_rejoin() {
    let broker = Broker::start().await;
    let mut redis = Redis::start().await;
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = cluster_config(&broker, &redis, 2)
        .set("metrics", "enabled", true)
        .set("metrics", "listen", metrics.to_string());
    let a = Service::start_binary(&node(&config, "a"), &[]).await;
    let b_config = node(&config, "b").set("metrics", "enabled", false);
    let b = Service::start_binary(&b_config, &[]).await;
    let nodes = vec![a, b];
    wait_formed(&nodes.iter().collect::<Vec<_>>(), 2).await;
    let gauge = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(|v| v.trim().to_string())
    };
    let driver = JsDriver::spawn().await;
    let clients = [
        subscribed(&driver, &nodes[0], auth("o1", "staff"), &["u1", "u2"]).await,
        subscribed(&driver, &nodes[1], auth("o1", "staff"), &["u1", "u2"]).await,
    ];
    let p = Publisher::connect(&broker).await;
    let mut all: Vec<Vec<Value>> = vec![Vec::new(), Vec::new()];
    let phase = |from: i32| {
        let p = &p;
        async move {
            for t in from..from + 10 {
                publish(p, (t % 2 + 1) as usize, f64::from(t)).await;
            }
        }
    };

    phase(0).await;
    for (c, seen) in clients.iter().zip(&mut all) {
        seen.extend(readings(c, 10).await);
    }

    redis.stop().await;
    for n in &nodes {
        n.get_until("/health", None, "degraded without redis", |code, h| {
            code == 503
                && h["status"] == "degraded"
                && h["checks"]["cluster"]["redis"] == "unavailable"
        })
        .await;
    }
    let text = http_get_raw(metrics, "/metrics", &[]).await.body;
    assert_eq!(
        gauge(&text, "sensorcast_cluster_degraded").as_deref(),
        Some("1"),
        "{text}"
    );
    assert!(
        text.contains("sensorcast_cluster_redis_errors_total{op="),
        "{text}"
    );
    let page = http_get_raw(
        nodes[0].addr,
        "/",
        &[(
            "authorization",
            &format!(
                "Bearer {}",
                token(json!({ "org_id": "o1", "role": "owner" }))
            ),
        )],
    )
    .await;
    assert!(page.body.contains("Redis unavailable"), "{}", page.body);
    phase(30).await;
    for (c, seen) in clients.iter().zip(&mut all) {
        seen.extend(readings(c, 10).await);
    }

    redis.start_again().await;
    wait_formed(&nodes.iter().collect::<Vec<_>>(), 2).await;
    let text = http_get_raw(metrics, "/metrics", &[]).await.body;
    assert_eq!(
        gauge(&text, "sensorcast_cluster_degraded").as_deref(),
        Some("0"),
        "{text}"
    );
    assert_eq!(
        gauge(&text, "sensorcast_cluster_instances").as_deref(),
        Some("2"),
        "{text}"
    );
    assert_eq!(
        gauge(&text, "sensorcast_cluster_degraded_periods_total").as_deref(),
        Some("1")
    );
    phase(60).await;
    for (c, seen) in clients.iter().zip(&mut all) {
        seen.extend(readings(c, 10).await);
    }

    for seen in &all {
        for (unit, (temps, _)) in by_unit(seen) {
            let want: Vec<f64> = [0, 30, 60]
                .iter()
                .flat_map(|base| (*base..base + 10).filter(|t| format!("u{}", t % 2 + 1) == unit))
                .map(f64::from)
                .collect();
            assert_eq!(temps, want, "{unit}: every reading once, in order");
            let seqs: Vec<u64> = seen
                .iter()
                .filter(|r| r["unitId"] == unit.as_str())
                .map(|r| r["seq"].as_u64().unwrap())
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[1] > w[0]),
                "{unit}: seq never goes back: {seqs:?}"
            );
        }
    }
    for n in nodes {
        n.stop().await;
    }
}

/// The broker restarts; readings published right after it is back, while the instances are
/// still reconnecting, wait in their persistent sessions: every client gets each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_and_doubles_nothing() {
    let mut broker = Broker::start().await;
    let redis = Redis::start().await;
    let config = cluster_config(&broker, &redis, 2);
    let nodes = start(&config, &["a", "b"], 2).await;
    let driver = JsDriver::spawn().await;
    let clients = [
        subscribed(&driver, &nodes[0], auth("o1", "staff"), &["u1", "u2"]).await,
        subscribed(&driver, &nodes[1], auth("o1", "staff"), &["u1", "u2"]).await,
    ];
    broker.restart().await;
    let p = Publisher::connect(&broker).await;
    for t in 0..20 {
        publish(&p, t % 2 + 1, t as f64).await;
    }
    for c in &clients {
        let got = readings(c, 20).await;
        for (unit, (temps, consecutive)) in by_unit(&got) {
            let i: usize = unit[1..].parse().unwrap();
            let want: Vec<f64> = (0..20)
                .filter(|t| t % 2 + 1 == i)
                .map(|t| t as f64)
                .collect();
            assert_eq!(temps, want, "{unit}");
            assert!(consecutive, "{unit}: no seq skipped");
        }
    }
    for n in nodes {
        n.stop().await;
    }
}

/// 2000 readings over six units, and one of three instances is killed (SIGKILL) after the
/// first 500: every client on the two surviving instances has all 2000, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_readings_while_an_instance_is_killed_reach_every_surviving_client_once() {
    // Mosquitto drops QoS 1 messages for a subscriber past `max_queued_messages` (1000 by
    // default): a burst of 2000 must fit (docs/scaling.md says to size it).
    let broker = Broker::start_with("max_queued_messages 5000\n").await;
    let redis = Redis::start().await;
    // A burst of 2000 to one socket: its queue must take it (the slow-client policy is not
    // what this test is about).
    let config = cluster_config(&broker, &redis, 6)
        .set("log", "level", "warn")
        .limit("socket_buffer", 4096);
    let mut nodes = start(&config, &["a", "b", "c"], 6).await;
    assert!(
        cluster_check(&nodes[0]).await["ownedUnits"]
            .as_u64()
            .unwrap()
            > 0,
        "the killed instance owns units"
    );
    let driver = JsDriver::spawn().await;
    let mut clients = Vec::new();
    for n in &nodes[1..] {
        let c = driver
            .connect_with(&n.url(), Some(auth("o1", "staff")), Some(vec!["websocket"]))
            .await;
        c.wait_connect().await.expect("socket connects");
        let ack = c.emit_ack("subscribe:organization", vec![]).await;
        assert_eq!(ack[0]["ok"], true);
        clients.push(c);
    }
    let p = Publisher::connect(&broker).await;
    let mut confirms = Vec::new();
    for i in 0..2000u32 {
        if i == 500 {
            for c in confirms.drain(..) {
                common::broker::Confirm::wait(c).await;
            }
            nodes[0].signal("KILL");
        }
        // Distinct and exact in binary, inside the physical range.
        let body = json!({ "temperature": f64::from(i) / 16.0 }).to_string();
        confirms.push(
            p.publish_nowait(&format!("sensors/p{}", i % 6 + 1), body, 1)
                .await,
        );
    }
    for c in confirms {
        c.wait().await;
    }
    for c in &clients {
        let mut temps = Vec::with_capacity(2000);
        let started = Instant::now();
        while temps.len() < 2000 {
            match c.next_event_timeout("sensor:reading", WAIT).await {
                Some(r) => temps.push((r[0]["temperature"].as_f64().unwrap() * 16.0) as i64),
                None => panic!("{} of 2000 after {:?}", temps.len(), started.elapsed()),
            }
        }
        c.assert_no_event("sensor:reading", QUIET).await;
        let distinct: BTreeSet<i64> = temps.iter().copied().collect();
        assert_eq!(distinct.len(), 2000, "each reading once");
        assert_eq!(distinct, (0..2000).collect::<BTreeSet<i64>>());
    }
    let _ = nodes[0].child().wait().await;
    nodes.remove(0);
    for n in nodes {
        n.stop().await;
    }
}
