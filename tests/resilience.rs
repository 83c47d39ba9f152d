//! Failure and lifecycle behaviour with real processes: a broker that restarts mid-stream, the
//! real binary receiving SIGTERM, and `check-config` on good and broken files.

mod common;

use common::broker::{Broker, Publisher};
use common::config::TestConfig;
use common::http::http_get;
use common::jsclient::{JsClient, JsDriver};
use common::service::{auth, check_config, publish_until_reading, repo_path, subscribed, Service};
use std::collections::BTreeSet;
use std::time::Duration;

/// Collects `n` readings (bounded wait) and returns their temperatures and seqs.
async fn collect(c: &JsClient, n: usize) -> (Vec<f64>, Vec<u64>) {
    let mut temps = Vec::new();
    let mut seqs = Vec::new();
    for _ in 0..n {
        let r = c.next_event("sensor:reading").await.remove(0);
        temps.push(r["temperature"].as_f64().unwrap());
        seqs.push(r["seq"].as_u64().unwrap());
    }
    (temps, seqs)
}

/// QoS 1 readings published while sensorcast is cut off by a broker restart are delivered once
/// it reconnects: the persistent session keeps them, and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_no_qos1_reading() {
    let mut broker = Broker::start().await;
    // A slow first retry, so the publishes below surely happen while sensorcast is away.
    let config = TestConfig::new(&broker).mqtt("reconnect_min", "1s");
    let service = Service::start(&config).await;
    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;

    let publisher = Publisher::connect(&broker).await;
    for i in 1..=20 {
        publisher
            .publish("sensors/probe-1", format!(r#"{{"temperature": {i}}}"#), 1)
            .await;
    }
    let (before, _) = collect(&c, 20).await;
    assert_eq!(before, (1..=20).map(f64::from).collect::<Vec<_>>());
    drop(publisher);

    broker.stop().await;
    broker.restart().await;
    // Published right away, before sensorcast's backoff lets it reconnect: the broker queues
    // them in sensorcast's session.
    let publisher = Publisher::connect(&broker).await;
    for i in 21..=40 {
        publisher
            .publish("sensors/probe-1", format!(r#"{{"temperature": {i}}}"#), 1)
            .await;
    }
    let mut got = BTreeSet::new();
    let mut seqs = Vec::new();
    while got.len() < 20 {
        let r = c.next_event("sensor:reading").await.remove(0);
        got.insert(r["temperature"].as_f64().unwrap() as i64);
        seqs.push(r["seq"].as_u64().unwrap());
    }
    assert_eq!(got, (21..=40).collect::<BTreeSet<_>>());
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq only grows: {seqs:?}"
    );
    assert_eq!(seqs[0], 21);
    let (_, health) = service.get("/health", None).await;
    assert!(
        health["checks"]["mqtt"]["reconnects"].as_u64().unwrap() >= 1,
        "{health}"
    );
    service.stop().await;
}

/// When the broker forgets the session (no persistence), sensorcast subscribes again on the
/// new ConnAck, so readings flow again without a restart of sensorcast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribes_when_the_broker_lost_the_session() {
    let mut broker = Broker::start_with("persistence false\n").await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    broker.stop().await;
    broker.restart().await;
    let publisher = Publisher::connect(&broker).await;
    // Published again and again: until sensorcast has subscribed anew, the broker drops them.
    let r = publish_until_reading(&c, "a reading after the broker lost the session", || {
        publisher.publish("sensors/probe-1", r#"{"temperature": 4}"#, 1)
    })
    .await;
    assert_eq!(r[0]["unitId"], "u1");
    service.stop().await;
}

/// SIGTERM: the binary stops taking sockets, disconnects them, sends MQTT DISCONNECT and exits
/// 0 promptly; every reading a dashboard got before that has contiguous seqs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully() {
    let broker = Broker::start().await;
    let config = TestConfig::new(&broker);
    let client_id = config.client_id();
    let mut bin = Service::start_binary(&config, &[("RUST_LOG", "info")]).await;
    let addr = bin.addr;

    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &bin, auth("o1", "viewer"), &["u1"]).await;
    let publisher = Publisher::connect(&broker).await;
    for i in 0..50 {
        publisher
            .publish("sensors/probe-1", format!(r#"{{"temperature": {i}}}"#), 1)
            .await;
    }
    // At least the first reading is there before the signal.
    let first = c.next_event("sensor:reading").await.remove(0);
    let seqs = vec![first["seq"].as_u64().unwrap()];
    let started = std::time::Instant::now();
    bin.signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), bin.child().wait())
        .await
        .expect("exited within 10 s")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    let reason = c.wait_disconnect().await;
    assert!(
        ["io server disconnect", "transport close"].contains(&reason.as_str()),
        "{reason}"
    );
    let mut all: Vec<u64> = seqs;
    all.extend(
        c.drain_events("sensor:reading")
            .iter()
            .map(|r| r[0]["seq"].as_u64().unwrap()),
    );
    assert!(
        all.windows(2).all(|w| w[1] == w[0] + 1),
        "contiguous seqs: {all:?}"
    );

    let stderr = bin.stderr().await;
    assert!(stderr.contains("shutdown complete"), "{stderr}");
    assert!(stderr.contains("mqtt disconnected"), "{stderr}");
    let log = broker.log();
    // One session from start to stop: nothing interrupted the connect (a cancelled poll did).
    let sessions = log.matches(&format!("as {client_id} (")).count();
    assert_eq!(sessions, 1, "sensorcast connected {sessions} times:\n{log}");
    assert!(
        log.contains(&format!("Client {client_id} disconnected.")),
        "broker saw a clean DISCONNECT from {client_id}:\n{log}"
    );
    // Nothing listens any more.
    assert_eq!(http_get(addr, "/health/live", None).await.0, 0);
}

/// `check-config` accepts the shipped configs and names file, line and key for broken ones.
#[tokio::test]
async fn check_config_accepts_shipped_files_and_explains_broken_ones() {
    let (code, out) = check_config(&repo_path("config/dev.toml"), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("4 units"), "{out}");
    // The production file needs its secret; the env var supplies it.
    let (code, out) = check_config(
        &repo_path("config/sensorcast.toml"),
        &[(
            "SENSORCAST_AUTH__JWT_SECRET",
            "a-production-secret-of-32-bytes!",
        )],
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = check_config(&repo_path("config/sensorcast.toml"), &[]);
    assert_eq!(code, Some(1));
    assert!(out.contains("auth.jwt_secret_file"), "{out}");

    let base = TestConfig::for_url("mqtt://127.0.0.1:1");
    let cases: Vec<(TestConfig, Vec<&str>)> = vec![
        (
            base.clone().set("state", "colour", "red"),
            vec!["sensorcast.toml", "line ", "colour"],
        ),
        (
            base.clone().subscription_key(0, "qos", 2),
            vec!["mqtt.subscriptions[0].qos"],
        ),
        (
            base.clone().subscription_key(1, "format", "xml"),
            vec!["xml"],
        ),
        (TestConfig::for_url("http://x"), vec!["mqtt.url"]),
        (
            base.clone()
                .registry_text("[[unit]]\nid = \"u\"\nsite = \"nowhere\"\n"),
            vec!["registry.toml", "unit[0].site", "nowhere"],
        ),
    ];
    for (config, wants) in cases {
        let dir = config.write_dir();
        let (code, out) = check_config(&dir.path().join("sensorcast.toml"), &[]);
        assert_eq!(code, Some(1), "{out}");
        for want in wants {
            assert!(out.contains(want), "{out:?} should contain {want:?}");
        }
    }
    let dir = base.write_dir();
    let (code, out) = check_config(
        &dir.path().join("sensorcast.toml"),
        &[("SENSORCAST_HTTP__LSTEN", "x")],
    );
    assert_eq!(code, Some(1));
    assert!(out.contains("SENSORCAST_HTTP__LSTEN"), "{out}");
}
