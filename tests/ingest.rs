//! Issue 12, items 2-5: the MQTT edge against what a broker and its publishers can do to it. A
//! SUBSCRIBE lost with its connection must not leave the service believing it is subscribed;
//! a broker's retained copy must not pass for a live reading; topics of any length must not
//! grow memory or logs; and a shared subscription, which would split one unit's readings
//! between instances, is refused.

mod common;

use common::broker::{Broker, Publisher};
use common::config::TestConfig;
use common::http::http_get_raw;
use common::jsclient::{JsClient, JsDriver};
use common::notify::NotifySocket;
use common::proxy::{OnSubscribe, Proxy};
use common::service::{auth, check_config, connected, now, rss, subscribed, token, Mode, Service};
use common::wait::{check, eventually, WAIT};
use serde_json::{json, Value};
use std::time::Duration;

/// Publishes ten readings on `topic` and asserts that `c` receives all ten, in order.
async fn ten_of_ten(publisher: &Publisher, c: &JsClient, topic: &str) {
    let sent: Vec<f64> = (0..10).map(|i| 4.0 + f64::from(i) / 10.0).collect();
    for t in &sent {
        publisher
            .publish(topic, format!(r#"{{"temperature": {t}}}"#), 1)
            .await;
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match c
            .next_event_timeout("sensor:reading", Duration::from_secs(3))
            .await
        {
            Some(r) => got.push(r[0]["temperature"].as_f64().unwrap()),
            None => break,
        }
    }
    assert_eq!(got, sent, "{} of 10 readings on {topic} arrived", got.len());
}

/// A SUBSCRIBE lost with its connection (the broker never saw it, kept the session, and says
/// `session_present` on the reconnect): the service subscribes again instead of trusting
/// subscriptions the broker never acknowledged; while the new SUBSCRIBE waits for its SUBACK,
/// neither `/health/ready` nor systemd's READY says ready; then 10 of 10 readings arrive.
/// The same for a subscription a SIGHUP adds: only that one is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_lost_with_its_connection_is_sent_again_and_ready_waits_for_its_suback() {
    let broker = Broker::start().await;
    let proxy = Proxy::start(&broker).await;
    proxy.plan(&[OnSubscribe::Cut, OnSubscribe::Hold]);
    let notify = NotifySocket::bind();
    let env = [("NOTIFY_SOCKET", notify.path())];
    let config = TestConfig::for_url(&proxy.url());
    let mut bin = Service::launch(&config, Mode::Binary(&env), false).await;

    // The first SUBSCRIBE went down with its connection. Either the service asks again (and
    // the proxy holds that), or it wrongly calls itself ready.
    let code = eventually(WAIT, "a SUBSCRIBE held, or readiness", || async {
        let (code, _) = bin.get("/health/ready", None).await;
        check(proxy.holding() || code == 200, code).map(|()| code)
    })
    .await;
    assert!(
        proxy.holding(),
        "/health/ready said {code} with no SUBSCRIBE acknowledged; SUBSCRIBEs seen: {:?}",
        proxy.subscribes()
    );
    assert_eq!(proxy.connections(), 2, "one cut, one reconnect");
    let (code, h) = bin.get("/health", None).await;
    assert_eq!(bin.get("/health/ready", None).await.0, 503, "{h}");
    assert_eq!(h["checks"]["mqtt"]["connected"], true, "{h}");
    assert_eq!(h["checks"]["mqtt"]["subscribed"], false, "{h} ({code})");
    let told = notify.drain();
    assert!(
        !told.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "READY before any SUBACK: {told:?}"
    );

    proxy.release();
    let seen = tokio::task::block_in_place(|| notify.read_until("READY=1", WAIT));
    assert!(
        seen.last().unwrap().contains("STATUS=broker: connected"),
        "{seen:?}"
    );
    assert_eq!(bin.get("/health/ready", None).await.0, 200);
    let publisher = Publisher::connect(&broker).await;
    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &bin, auth("o1", "viewer"), &["u1"]).await;
    ten_of_ten(&publisher, &c, "sensors/probe-1").await;

    // A subscription added by a reload, lost the same way.
    proxy.plan(&[OnSubscribe::Cut]);
    bin.rewrite(&bin.config.clone().subscription("more/+", "json"));
    bin.signal("HUP");
    let subscribes = eventually(WAIT, "the added subscription sent again", || async {
        let seen = proxy.subscribes();
        let (code, _) = bin.get("/health/ready", None).await;
        check(seen.len() >= 4 && code == 200, format!("{code}: {seen:?}")).map(|()| seen)
    })
    .await;
    assert_eq!(subscribes[2], ["more/+"], "{subscribes:?}");
    assert_eq!(
        subscribes[3],
        ["more/+"],
        "only what was never acknowledged is sent again: {subscribes:?}"
    );
    ten_of_ten(&publisher, &c, "more/probe-1").await;
    bin.stop().await;
}

/// A dead sensor's retained reading, handed out again when a restarted service subscribes, is
/// shown (a dashboard gets it as the unit's latest value, marked `retained`) but is no sign
/// that the sensor lives: its unit stays offline and `monitoring_interrupted` stays open,
/// whether the payload has no time (probe-1) or its own time an hour ago (probe-2, whose
/// `recordedAt` says so). A live reading then resolves it, as always.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_reading_of_a_dead_sensor_is_shown_but_does_not_bring_its_unit_back_online() {
    let broker = Broker::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = TestConfig::new(&broker)
        .alerts("offline_after", "1s")
        .state_dir(state.path());
    // The sensors' last words, long kept by the broker: probe-1's without a time, probe-2's
    // an hour old. Then the sensors die, and every unit goes offline.
    let hour_ago = now() - 3600;
    broker
        .publish_retained("sensors/probe-1", r#"{"temperature": 3.5}"#)
        .await;
    broker
        .publish_retained(
            "sensors/probe-2",
            format!(r#"{{"temperature": 4.5, "ts": {hour_ago}}}"#),
        )
        .await;
    let service = Service::start(&config).await;
    service
        .get_until("/health", None, "three units offline", |_, h| {
            h["alerts"]["open"]["byType"]["monitoring_interrupted"] == 3
        })
        .await;
    service.stop().await;

    // A restart: subscribing brings both retained copies again. A live reading of u3 (another
    // organization) after them resolves u3: the engine, which takes its input in order, has
    // seen the copies by then.
    let service = Service::start(&config).await;
    let driver = JsDriver::spawn().await;
    let o1 = connected(&driver, &service, auth("o1", "viewer")).await;
    let o2 = connected(&driver, &service, auth("o2", "viewer")).await;
    let publisher = Publisher::connect(&broker).await;
    publisher
        .publish("sensors/probe-3", r#"{"temperature": 5.0}"#, 1)
        .await;
    let resolved = o2.next_event("alert:resolved").await.remove(0);
    assert_eq!(resolved["unitId"], "u3", "{resolved}");
    let open = o1.emit_ack("get:alerts", vec![]).await.remove(0);
    let mut offline: Vec<&str> = open["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["alertType"] == "monitoring_interrupted")
        .map(|a| a["unitId"].as_str().unwrap())
        .collect();
    offline.sort();
    assert_eq!(offline, ["u1", "u2"], "still offline: {open}");
    o1.assert_no_event("alert:resolved", Duration::ZERO).await;

    // The dashboard still sees the values, marked as the broker's retained copies.
    let ack = o1
        .emit_ack("subscribe:unit", vec![json!("u1")])
        .await
        .remove(0);
    let latest = &ack["latest"];
    assert_eq!(
        (&latest["temperature"], &latest["retained"]),
        (&json!(3.5), &json!(true)),
        "{ack}"
    );
    let ack = o1
        .emit_ack("subscribe:unit", vec![json!("u2")])
        .await
        .remove(0);
    let latest = &ack["latest"];
    assert_eq!(latest["retained"], true, "{ack}");
    let recorded = chrono::DateTime::parse_from_rfc3339(latest["recordedAt"].as_str().unwrap());
    assert_eq!(recorded.unwrap().timestamp() as u64, hour_ago, "{ack}");
    let (_, stats) = service.get("/health", None).await;
    assert_eq!(stats["pipeline"]["retained"], 2, "{stats}");

    // A live reading is news: u1 is back.
    publisher
        .publish("sensors/probe-1", r#"{"temperature": 3.6}"#, 1)
        .await;
    let resolved = o1.next_event("alert:resolved").await.remove(0);
    let live = o1.next_event("sensor:reading").await.remove(0);
    assert_eq!(
        live["retained"],
        Value::Null,
        "a live reading is not marked: {live}"
    );
    let open = o1.emit_ack("get:alerts", vec![]).await.remove(0);
    assert_eq!(open["alerts"].as_array().unwrap().len(), 1, "{open}");
    assert_ne!(open["alerts"][0]["alertId"], resolved["alertId"]);
    service.stop().await;
}

/// Publishes `n` messages (QoS 1, acknowledged by the broker) on the topics `topic(i)`.
async fn flood(publisher: &Publisher, n: usize, topic: impl Fn(usize) -> String, payload: &str) {
    let mut confirms = Vec::with_capacity(n);
    for i in 0..n {
        confirms.push(publisher.publish_nowait(&topic(i), payload, 1).await);
    }
    for c in confirms {
        c.wait().await;
    }
}

/// Topics of any length cannot grow the service's memory or its log. 2,000 messages with
/// 60 KB topics (each one different) are refused as `topic_too_long`, counted, logged in a
/// bounded form: the peak RSS of the real binary grows by a few MB at most and its log by a
/// few KB, not by the topics. 1,000 unregistered sensors on 450-byte topics fill the unmapped
/// list, which `/api/sensors/unmapped` and the status page serve within their byte caps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_topics_are_refused_and_bound_memory_log_and_pages() {
    const LONG: usize = 2000;
    const UNMAPPED: usize = 1000;
    // Unlimited queue: the publisher may run ahead of the service without the broker dropping.
    let broker = Broker::start_with("max_queued_messages 0\n").await;
    let config = TestConfig::new(&broker)
        .subscription("long/#", "json")
        .subscription_key(2, "sensor_id", "{1}");
    let mut bin = Service::start_binary(&config, &[]).await;
    let pid = bin.child().id().expect("running");
    let mut stderr = bin.child().stderr.take().expect("piped stderr");
    let log = tokio::spawn(async move {
        let mut text = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut text)
            .await
            .unwrap();
        String::from_utf8_lossy(&text).into_owned()
    });
    let publisher = Publisher::connect(&broker).await;
    let payload = r#"{"temperature": 4.0}"#;
    // Warm up every path a rejection takes before measuring.
    flood(
        &publisher,
        5,
        |i| format!("sensors/{i}{}", "x".repeat(60_000)),
        payload,
    )
    .await;
    counted(&bin, 5).await;
    let (_, peak_before) = rss(pid);

    flood(
        &publisher,
        LONG,
        |i| format!("sensors/{i}{}", "x".repeat(60_000)),
        payload,
    )
    .await;
    let h = counted(&bin, 5 + LONG).await;
    let (_, peak_after) = rss(pid);
    assert_eq!(
        h["pipeline"]["rejected"]["json"]["topic_too_long"],
        5 + LONG,
        "{}",
        h["pipeline"]
    );
    let grown = peak_after.saturating_sub(peak_before);
    assert!(
        grown < 4 << 20,
        "peak RSS grew by {grown} bytes over {LONG} messages with 60 KB topics"
    );

    let filler = "f".repeat(430);
    flood(
        &publisher,
        UNMAPPED,
        |i| format!("long/ghost-{i}/{filler}"),
        payload,
    )
    .await;
    counted(&bin, 5 + LONG + UNMAPPED).await;
    let admin = token(json!({ "org_id": "o1", "role": "owner" }));
    let list = http_get_raw(
        bin.addr,
        "/api/sensors/unmapped",
        &[("Authorization", &format!("Bearer {admin}"))],
    )
    .await;
    assert_eq!(list.status, 200);
    let body: Value = serde_json::from_str(&list.body).unwrap();
    let count = body["count"].as_u64().unwrap();
    assert!(count >= 50, "the newest sensors are listed: {count}");
    assert!(
        list.body.len() <= 64 * 1024,
        "/api/sensors/unmapped is {} bytes for {count} sensors",
        list.body.len()
    );
    assert_eq!(
        body["sensors"][0]["sensorId"],
        format!("ghost-{}", UNMAPPED - 1)
    );
    let page = http_get_raw(
        bin.addr,
        "/",
        &[("Authorization", &format!("Bearer {admin}"))],
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.len() <= 32 * 1024,
        "the status page is {} bytes",
        page.body.len()
    );
    assert!(page.body.contains(&format!("ghost-{}", UNMAPPED - 1)));

    bin.stop().await;
    let log = log.await.unwrap();
    assert!(
        log.len() < 64 * 1024,
        "{} bytes of log for {} rejected messages; it starts:\n{}",
        log.len(),
        5 + LONG + UNMAPPED,
        &log[..log.len().min(2000)]
    );
    assert!(
        log.contains("topic_too_long") || log.contains("over the"),
        "{log}"
    );
}

/// Waits until the service has taken `n` MQTT messages; returns `/health`.
async fn counted(bin: &Service, n: usize) -> Value {
    bin.get_until("/health", None, &format!("{n} messages counted"), |_, h| {
        h["pipeline"]["messages"].as_u64() == Some(n as u64)
    })
    .await
    .1
}

/// `check-config` (and so the service's start) refuses a shared subscription (cluster mode does
/// not use them either), naming the key, why, and the plain filter to subscribe instead.
#[test]
fn check_config_refuses_a_shared_subscription() {
    let config =
        TestConfig::for_url("mqtt://127.0.0.1:1").subscription("$share/edge/more/+", "json");
    let dir = config.write_dir();
    let (code, out) = check_config(&dir.path().join("sensorcast.toml"), &[]);
    assert_eq!(code, Some(1), "{out}");
    for want in [
        "mqtt.subscriptions[2].topic",
        "split",
        "cluster mode",
        "\"more/+\"",
    ] {
        assert!(out.contains(want), "{want:?} not in {out}");
    }
}
