//! The service under systemd, with real signals and a real notify socket: the sd_notify
//! protocol (READY, WATCHDOG, STATUS, RELOADING, STOPPING) read from a datagram socket passed as
//! NOTIFY_SOCKET, and SIGHUP reloading the registry and subscriptions while sockets stay up.

mod common;

use common::broker::Broker;
use common::config::{TestConfig, TestRegistry};
use common::http::{get_until, http_get};
use common::jsclient::{JsClient, JsDriver};
use common::service::{auth, publish_until_reading, subscribed, token, Mode, Service};
use serde_json::json;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Reads notify datagrams until one contains `want` (bounded), returning everything read.
fn read_until(sock: &UnixDatagram, want: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let done = msg.lines().any(|l| l == want);
                seen.push(msg);
                if done {
                    return seen;
                }
            }
            // Another test's child exiting sends this process SIGCHLD (tokio::process has a
            // handler), and a socket read with a timeout is never restarted after a signal.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    panic!("no {want:?} within {within:?}; got {seen:?}");
}

/// READY only once MQTT is subscribed, with a STATUS; WATCHDOG while the ingest loop runs;
/// RELOADING then READY around SIGHUP; STOPPING at SIGTERM, then a clean exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_the_notify_protocol() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let env = [
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "1000000"),
    ];
    let mut bin = Service::launch(&TestConfig::new(&broker), Mode::Binary(&env), false).await;
    let seen =
        tokio::task::block_in_place(|| read_until(&sock, "READY=1", Duration::from_secs(15)));
    let ready = seen.last().unwrap();
    assert!(ready.contains("STATUS=broker: connected"), "{ready}");
    assert_eq!(
        http_get(bin.addr, "/health/ready", None).await.0,
        200,
        "READY means ready"
    );
    tokio::task::block_in_place(|| read_until(&sock, "WATCHDOG=1", Duration::from_secs(3)));
    tokio::task::block_in_place(|| read_until(&sock, "WATCHDOG=1", Duration::from_secs(3)));

    bin.signal("HUP");
    let seen =
        tokio::task::block_in_place(|| read_until(&sock, "RELOADING=1", Duration::from_secs(5)));
    assert!(seen.iter().any(|m| m.contains("RELOADING=1")));
    tokio::task::block_in_place(|| read_until(&sock, "READY=1", Duration::from_secs(5)));

    bin.signal("TERM");
    tokio::task::block_in_place(|| read_until(&sock, "STOPPING=1", Duration::from_secs(5)));
    let status = tokio::time::timeout(Duration::from_secs(10), bin.child().wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// Without a broker, READY still comes after `http.ready_timeout`, with a STATUS saying why the
/// service is degraded (so systemd does not kill a box whose broker is down at boot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_the_timeout_when_the_broker_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let port = common::broker::free_port();
    let config =
        TestConfig::for_url(&format!("mqtt://127.0.0.1:{port}")).http("ready_timeout", "1s");
    let env = [("NOTIFY_SOCKET", path.to_str().unwrap())];
    let _bin = Service::launch(&config, Mode::Binary(&env), false).await;
    let seen =
        tokio::task::block_in_place(|| read_until(&sock, "READY=1", Duration::from_secs(10)));
    assert!(
        seen.last()
            .unwrap()
            .contains("STATUS=DEGRADED: MQTT not ready"),
        "{seen:?}"
    );
}

/// SIGHUP applies a new registry and subscription list without dropping sockets or the MQTT
/// session: a removed unit's subscribers are told and unsubscribed, a new sensor and a new
/// topic work at once; an invalid registry is refused, reported in /health, and the previous
/// one stays in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_registry_and_subscriptions() {
    let (broker, mut bin, _driver, c) = binary_with_owner_on(&["u1", "u2"]).await;

    // u2 goes (and its sensor), probe-9 joins u1, a new topic is subscribed.
    let registry = TestRegistry::standard()
        .without("unit", "u2")
        .without("sensor", "probe-2")
        .sensor("probe-9", "u1");
    bin.rewrite(
        &bin.config
            .clone()
            .registry(&registry)
            .subscription("more/+", "json"),
    );
    bin.signal("HUP");
    let err = c.next_event("subscription:error").await.remove(0);
    assert_eq!(
        (err["entity"].as_str(), err["entityId"].as_str()),
        (Some("unit"), Some("u2"))
    );
    broker
        .publish("sensors/probe-9", r#"{"temperature": 4.5}"#, 1)
        .await;
    let r = c.next_event("sensor:reading").await.remove(0);
    assert_eq!(
        (r["unitId"].as_str(), r["deviceId"].as_str()),
        (Some("u1"), Some("probe-9"))
    );
    // The new subscription is live (poll: the SUBSCRIBE goes out right after the reload, and
    // until the broker has it, what is published on the new topic goes nowhere).
    publish_until_reading(&c, "a reading on the newly subscribed topic", || {
        broker.publish("more/probe-1", r#"{"temperature": 5.5}"#, 1)
    })
    .await;
    let (_, health) = http_get(bin.addr, "/health", None).await;
    assert_eq!(health["checks"]["reload"]["ok"], true, "{health}");

    // A broken registry is refused; the one in force keeps working.
    bin.write(
        "registry.toml",
        "[[unit]]\nid = \"x\"\nsite = \"nowhere\"\n",
    );
    bin.signal("HUP");
    let refused = health_once_reload_refused(&bin).await;
    assert_eq!(refused["checks"]["reload"]["ok"], false, "{refused}");
    assert!(refused["checks"]["reload"]["error"]
        .as_str()
        .unwrap()
        .contains("nowhere"));
    broker
        .publish("sensors/probe-9", r#"{"temperature": 6.5}"#, 1)
        .await;
    // Readings of the polling above may still be on their way: all 5.5, then ours.
    loop {
        let r = c.next_event("sensor:reading").await.remove(0);
        if r["temperature"] == 6.5 {
            assert_eq!(r["deviceId"], "probe-9");
            break;
        }
        assert_eq!(
            r["temperature"], 5.5,
            "only the polling's readings come first: {r}"
        );
    }
    let (_, rt) = http_get(bin.addr, "/health/realtime", None).await;
    assert_eq!(
        rt["websocket"]["connections"], 1,
        "the socket stayed up through both reloads"
    );
    bin.stop().await;
}

/// A registry whose alert rules fail only after inheritance (here u2 inherits `temp_max = 5`
/// from its org and sets `temp_min = 4.8`: with the default hysteresis there is no band left)
/// is refused as a whole by SIGHUP, as `check-config` refuses it: routing and alerts both stay
/// on the registry in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_a_registry_whose_inherited_rules_leave_no_band() {
    let (broker, mut bin, _driver, c) = binary_with_owner_on(&["u2"]).await;
    // Were it applied, u2 would get a temperature rule and 9.5 °C would raise an alert.
    let registry = TestRegistry::standard()
        .set("org", "o1", "temp_min", 0)
        .set("org", "o1", "temp_max", 5)
        .set("unit", "u2", "temp_min", 4.8);
    bin.rewrite(&bin.config.clone().registry(&registry));
    bin.signal("HUP");
    let refused = health_once_reload_refused(&bin).await;
    assert_eq!(refused["checks"]["reload"]["ok"], false, "{refused}");
    let error = refused["checks"]["reload"]["error"].as_str().unwrap();
    assert!(error.contains("u2"), "the error names the unit: {error}");
    // The registry in force still routes probe-2 to u2, and u2 has no rules: no alert.
    broker
        .publish("sensors/probe-2", r#"{"temperature": 9.5}"#, 1)
        .await;
    let r = c.next_event("sensor:reading").await.remove(0);
    assert_eq!(r["unitId"], "u2");
    assert!(c
        .next_event_timeout("alert:triggered", Duration::from_millis(500))
        .await
        .is_none());
    bin.stop().await;
}

/// The binary on the test config, ready, with an `o1` owner connected through the official
/// client and subscribed to `units`. The driver must outlive the client.
async fn binary_with_owner_on(units: &[&str]) -> (Broker, Service, JsDriver, JsClient) {
    let broker = Broker::start().await;
    let bin = Service::start_binary(&TestConfig::new(&broker), &[]).await;
    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &bin, auth("o1", "owner"), units).await;
    (broker, bin, driver, c)
}

/// `/health` once it reports a refused reload; fails with the last answer if it never does.
async fn health_once_reload_refused(bin: &Service) -> serde_json::Value {
    get_until(
        bin.addr,
        "/health",
        None,
        "/health to report the refused reload",
        |_, h| h["checks"]["reload"]["ok"] == false,
    )
    .await
    .1
}

/// A second SIGTERM exits at once, even while the graceful shutdown is still waiting (here for
/// a client that does not answer the close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let broker = Broker::start().await;
    let config = TestConfig::new(&broker).http("shutdown_timeout", "30s");
    let mut bin = Service::start_binary(&config, &[]).await;
    // A client that stopped reading with full buffers: closing its transport waits.
    let mut silent =
        common::rawws::RawSocket::connect(bin.addr, &auth("o1", "viewer"), Some(2048)).await;
    assert_eq!(
        silent.emit_ack(1, "subscribe:unit", &[json!("u1")]).await[0]["ok"],
        true
    );
    let publisher = common::broker::Publisher::connect(&broker).await;
    for i in 0..3000 {
        publisher
            .publish_nowait(
                "sensors/probe-1",
                format!(r#"{{"temperature": {}}}"#, i % 50),
                0,
            )
            .await;
    }
    publisher
        .publish("sensors/probe-1", r#"{"temperature": 1}"#, 1)
        .await;
    let admin = token(json!({ "org_id": "o1", "role": "admin" }));
    get_until(
        bin.addr,
        "/api/stats",
        Some(&admin),
        "the silent client marked slow",
        |_, s| s["slowSocketsMarked"].as_u64().unwrap_or(0) >= 1,
    )
    .await;
    bin.signal("TERM");
    // Signals that arrive before the first is handled are coalesced: wait until shutdown began.
    get_until(
        bin.addr,
        "/health/ready",
        None,
        "the shutdown to begin",
        |code, _| code != 200,
    )
    .await;
    assert!(
        bin.child().try_wait().unwrap().is_none(),
        "the graceful shutdown is still waiting when the second signal comes"
    );
    let started = Instant::now();
    bin.signal("TERM");
    let status = match tokio::time::timeout(Duration::from_secs(5), bin.child().wait()).await {
        Ok(s) => s.unwrap(),
        Err(_) => {
            bin.signal("KILL");
            panic!(
                "still running 5 s after the second SIGTERM; log:\n{}",
                bin.stderr().await
            );
        }
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
