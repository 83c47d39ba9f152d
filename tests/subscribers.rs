//! Subscriber guarantees with real sockets: resume after reconnect (no gap, no duplicate),
//! slow-client isolation, batching, and limits. The official socket.io-client plays the
//! well-behaved dashboards; a raw websocket plays the stalled or hostile one.
//!
//! Over 400 lines: The subscriber guarantees (resume, slow clients, limits) share their harness;
//! each test stays short.

mod common;

use common::broker::{Broker, Publisher};
use common::config::TestConfig;
use common::jsclient::JsDriver;
use common::rawws::RawSocket;
use common::service::{auth, connected, subscribed, token, Service};
use common::wait::{check, eventually, WAIT};
use serde_json::json;
use std::time::Duration;

/// A json reading; the temperature is `i % 100` (within the physical range).
fn reading(i: u64) -> String {
    format!(
        r#"{{"temperature": {}, "ts": {}}}"#,
        i % 100,
        chrono_now_ms()
    )
}

fn chrono_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A dashboard that drops off and comes back with `since: { epoch, seq }` gets every reading it
/// missed, in order, then live ones, with no gap and no duplicate, although readings keep
/// arriving while it resubscribes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_what_was_missed_then_continues_live() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    let c = connected(&driver, &service, auth("o1", "viewer")).await;
    let ack = c
        .emit_ack("subscribe:unit", vec![json!("u1")])
        .await
        .remove(0);
    let epoch = ack["epoch"].as_str().unwrap().to_string();
    let publisher = Publisher::connect(&broker).await;
    for i in 1..=5 {
        publisher.publish("sensors/probe-1", reading(i), 1).await;
    }
    for want in 1..=5 {
        assert_eq!(c.next_event("sensor:reading").await[0]["seq"], want);
    }
    c.close().await;

    let background = tokio::spawn(async move {
        for i in 6..=300 {
            publisher
                .publish_nowait("sensors/probe-1", reading(i), 0)
                .await;
            // Not a wait: paces the publisher so that readings keep arriving all through the
            // reconnect and resubscribe below, rather than all before it.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        publisher
    });
    // Readings the dashboard misses while it is away, so the resume has a gap to fill.
    let admin = token(json!({ "org_id": "o1", "role": "admin" }));
    service
        .get_until(
            "/api/stats",
            Some(&admin),
            "readings emitted while away",
            |_, stats| stats["emitted"].as_u64().unwrap_or(0) >= 5 + 20,
        )
        .await;
    c.reconnect().await;
    c.wait_connect().await.expect("reconnect");
    let since = json!({ "unitId": "u1", "since": { "epoch": epoch, "seq": 5 } });
    let ack = c.emit_ack("subscribe:unit", vec![since]).await.remove(0);
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["recovered"], true, "{ack}");
    let _publisher = background.await.unwrap();
    let mut seqs = Vec::new();
    while seqs.last() != Some(&300) {
        let r = c.next_event("sensor:reading").await.remove(0);
        seqs.push(r["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (6..=300).collect::<Vec<_>>(), "no gap, no duplicate");
    service.stop().await;
}

/// When the gap is older than the history, or the service restarted (other epoch), the ack
/// says `recovered: false` and carries the latest reading; nothing is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_reports_a_gap_it_cannot_fill() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker).realtime("history_readings", 3)).await;
    let driver = JsDriver::spawn().await;
    let publisher = Publisher::connect(&broker).await;
    for i in 1..=10 {
        publisher.publish("sensors/probe-1", reading(i), 1).await;
    }
    let c = connected(&driver, &service, auth("o1", "viewer")).await;
    let epoch = c.next_event("connection:ack").await[0]["epoch"].clone();
    // Wait until the tenth reading is in (published QoS 1, so it is on its way).
    eventually(WAIT, "get:latest to return the tenth reading", || async {
        let latest = c.emit_ack("get:latest", vec![json!("u1")]).await.remove(0);
        check(latest["seq"] == 10, latest)
    })
    .await;
    let old = json!({ "unitId": "u1", "since": { "epoch": epoch, "seq": 2 } });
    let ack = c.emit_ack("subscribe:unit", vec![old]).await.remove(0);
    assert_eq!(
        (ack["ok"].as_bool(), ack["recovered"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(ack["latest"]["seq"], 10);
    let recent = json!({ "unitId": "u1", "since": { "epoch": epoch, "seq": 8 } });
    let ack = c.emit_ack("subscribe:unit", vec![recent]).await.remove(0);
    assert_eq!(ack["recovered"], true);
    let replayed: Vec<u64> = c
        .drain_events("sensor:reading")
        .iter()
        .map(|r| r[0]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, vec![9, 10], "only the recent resume replays");
    let other = json!({ "unitId": "u1", "since": { "epoch": "not-this-run", "seq": 9 } });
    let ack = c.emit_ack("subscribe:unit", vec![other]).await.remove(0);
    assert_eq!(ack["recovered"], false);
    // A site resume takes a seq per unit.
    let site = json!({ "siteId": "s1", "since": { "epoch": epoch, "seqs": { "u1": 9 } } });
    let ack = c.emit_ack("subscribe:site", vec![site]).await.remove(0);
    assert_eq!(ack["recovered"], true);
    assert_eq!(c.next_event("sensor:reading").await[0]["seq"], 10);
    let bad = json!({ "unitId": "u1", "since": { "seq": 1 } });
    let ack = c.emit_ack("subscribe:unit", vec![bad]).await.remove(0);
    assert_eq!(ack["ok"], false);
    service.stop().await;
}

/// One client stops reading its socket while 100 others keep up: the others receive every
/// reading promptly, the stalled one has its readings coalesced (counted) and is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_costs_the_others_nothing_and_is_cut_off() {
    let broker = Broker::start().await;
    let config = TestConfig::new(&broker)
        .realtime("stall_timeout", "2s")
        .realtime("drain_interval", "50ms")
        .limit("socket_buffer", 64);
    let service = Service::start(&config).await;
    let driver = JsDriver::spawn().await;
    let mut healthy = Vec::new();
    for i in 0..100 {
        let a = json!({ "token": token(json!({ "org_id": "o1", "sub": format!("dash-{i}") })) });
        let c = subscribed(&driver, &service, a, &["u1"]).await;
        healthy.push(c);
    }
    let mut stalled = RawSocket::connect(service.addr, &auth("o1", "viewer"), Some(2048)).await;
    assert_eq!(
        stalled.emit_ack(1, "subscribe:unit", &[json!("u1")]).await[0]["ok"],
        true
    );
    assert_eq!(
        stalled.emit_ack(2, "subscribe:unit", &[json!("u2")]).await[0]["ok"],
        true
    );
    // From here on, `stalled` is never read. Unit u2, which only it follows, gets ten times the
    // traffic, so its buffers fill quickly without loading the 100 healthy clients' driver.
    let publisher = Publisher::connect(&broker).await;
    const N: u64 = 300;
    for i in 1..=N {
        publisher
            .publish_nowait("sensors/probe-1", reading(i), 0)
            .await;
        for j in 0..10 {
            publisher
                .publish_nowait("sensors/probe-2", reading(i * 10 + j), 0)
                .await;
        }
        // Not a wait: the publishing rate under test (100 readings/s for u1, 1000/s for u2).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut latencies = Vec::new();
    for c in &healthy {
        for want in 1..=N {
            let (args, at) = c.next_event_timed("sensor:reading").await;
            assert_eq!(
                args[0]["seq"],
                want,
                "client {} got every reading in order",
                c.name()
            );
            let sent = chrono_parse_ms(args[0]["recordedAt"].as_str().unwrap());
            latencies.push(at.saturating_sub(sent));
        }
    }
    latencies.sort_unstable();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(
        p99 < 1000,
        "p99 delivery latency {p99} ms with a stalled client present"
    );

    let admin = token(json!({ "org_id": "o1", "role": "admin" }));
    eventually(WAIT, "the stalled socket to be disconnected", || async {
        let (_, rt) = service.get("/health/realtime", None).await;
        let (_, stats) = service.get("/api/stats", Some(&admin)).await;
        check(
            rt["websocket"]["connections"] == 100,
            format!("realtime {rt}; stats {stats}"),
        )
    })
    .await;
    let (_, stats) = service.get("/api/stats", Some(&admin)).await;
    assert!(stats["slowSocketsMarked"].as_u64().unwrap() >= 1, "{stats}");
    assert!(
        stats["deliveriesDropped"]["coalesced"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{stats}"
    );
    // Its connection reported congestion before its queue was full: no broadcast was lost.
    assert!(
        stats["deliveriesDropped"].get("buffer_full").is_none(),
        "{stats}"
    );
    assert!(
        stalled.closed_within(Duration::from_secs(30)).await,
        "server closed the stalled connection"
    );
    eprintln!("p99 {p99} ms; stats {stats}");
    service.stop().await;
}

fn chrono_parse_ms(rfc3339: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis() as u64
}

/// Garbage frames, unknown events and oversized arguments from one raw client get an error or
/// a disconnect for that client only; a dashboard next to it keeps receiving readings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_one_client_never_affects_another() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    let good = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;

    let mut raw = RawSocket::connect(service.addr, &auth("o1", "viewer"), None).await;
    let unknown = raw
        .emit_ack(7, "definitely:not:an:event", &[json!({ "x": 1 })])
        .await;
    assert_eq!(unknown[0], json!({ "ok": false, "error": "Unknown event" }));
    let bad = raw.emit_ack(8, "subscribe:unit", &[json!([[[[1]]]])]).await;
    assert_eq!(bad[0]["ok"], false);
    for frame in ["42garbage", "4", "99999", "42[", "4{}", "\u{0}\u{1}"] {
        if !raw.try_send(frame).await {
            break;
        }
    }
    // Over limits.max_client_payload: the transport refuses it.
    let huge = format!("42[\"subscribe:unit\",\"{}\"]", "x".repeat(64 * 1024));
    let _ = raw.try_send(&huge).await;
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "the garbage sender is cut off"
    );

    // A handshake that never sends CONNECT is closed by the handshake timeout... eventually;
    // meanwhile the good client is fine.
    broker.publish("sensors/probe-1", reading(42), 1).await;
    assert_eq!(
        good.next_event("sensor:reading").await[0]["temperature"],
        42.0
    );
    let (code, _) = service.get("/health/live", None).await;
    assert_eq!(code, 200);
    service.stop().await;
}

/// Connection, subscription and event-rate limits answer with clear messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_with_clear_messages() {
    let broker = Broker::start().await;
    let config = TestConfig::new(&broker)
        .limit("max_connections", 3)
        .limit("max_connections_per_subject", 2)
        .limit("max_subscriptions_per_socket", 2)
        .limit("event_rate", 5.0)
        .limit("event_burst", 5.0);
    let service = Service::start(&config).await;
    let driver = JsDriver::spawn().await;
    let same = json!({ "token": token(json!({ "org_id": "o1", "sub": "same-user" })) });
    let a = connected(&driver, &service, same.clone()).await;
    let _b = connected(&driver, &service, same.clone()).await;
    let c = driver.connect(&service.url(), Some(same)).await;
    assert_eq!(
        c.wait_connect().await,
        Err("Too many connections for this user".to_string())
    );
    let _d = connected(&driver, &service, auth("o1", "viewer")).await;
    let e = driver
        .connect(&service.url(), Some(auth("o1", "viewer")))
        .await;
    assert_eq!(
        e.wait_connect().await,
        Err("Too many connections".to_string())
    );

    assert_eq!(
        a.emit_ack("subscribe:unit", vec![json!("u1")]).await[0]["ok"],
        true
    );
    assert_eq!(
        a.emit_ack("subscribe:unit", vec![json!("u2")]).await[0]["ok"],
        true
    );
    let third = a
        .emit_ack("subscribe:site", vec![json!("s1")])
        .await
        .remove(0);
    assert_eq!(
        third,
        json!({ "ok": false, "error": "Too many subscriptions" })
    );
    let mut limited = 0;
    for _ in 0..20 {
        let r = a.emit_ack("ping", vec![]).await.remove(0);
        if r == json!({ "ok": false, "error": "Rate limited" }) {
            limited += 1;
        }
    }
    assert!(
        limited >= 10,
        "most of a 20-event burst over a 5/s bucket is refused: {limited}"
    );
    // Leaving frees the slot for another subscription (b and d stay).
    a.close().await;
    service
        .wait_sockets(2, "the closed socket to be gone")
        .await;
    let again = driver
        .connect(
            &service.url(),
            Some(json!({ "token": token(json!({ "org_id": "o1", "sub": "same-user" })) })),
        )
        .await;
    assert!(
        again.wait_connect().await.is_ok(),
        "a closed socket frees its per-user slot"
    );
    service.stop().await;
}

/// Compatibility batching: `sensor:readings:batch` per unit each interval, once per socket,
/// and the pending batch is flushed at shutdown rather than dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_per_unit_and_flushes_on_shutdown() {
    let broker = Broker::start().await;
    let batching = TestConfig::new(&broker).realtime("batch", true);
    let service = Service::start(&batching.clone().realtime("batch_interval", "300ms")).await;
    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    assert_eq!(
        c.emit_ack("subscribe:site", vec![json!("s1")]).await[0]["ok"],
        true
    );
    for i in 1..=3 {
        broker.publish("sensors/probe-1", reading(i), 1).await;
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let b = c.next_event("sensor:readings:batch").await.remove(0);
        assert_eq!(b["unitId"], "u1");
        assert_eq!(
            b["count"].as_u64().unwrap() as usize,
            b["readings"].as_array().unwrap().len()
        );
        got.extend(
            b["readings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["seq"].as_u64().unwrap()),
        );
    }
    assert_eq!(
        got,
        vec![1, 2, 3],
        "each reading once, although the socket is in two rooms"
    );
    assert_eq!(
        c.drain_events("sensor:reading").len(),
        3,
        "per-reading events stay primary"
    );
    service.stop().await;

    let service = Service::start(&batching.realtime("batch_interval", "1h")).await;
    let c = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    broker.publish("sensors/probe-1", reading(7), 1).await;
    c.next_event("sensor:reading").await;
    service.stop().await;
    let b = c.next_event("sensor:readings:batch").await.remove(0);
    assert_eq!(
        (
            b["count"].as_u64(),
            b["readings"][0]["temperature"].as_f64()
        ),
        (Some(1), Some(7.0))
    );
}

/// A client that sends its CONNECT and hangs up at once: socketioxide runs the connect
/// middleware (which takes the connection slots) in a task of its own, finds the transport
/// closed when it tries to send the CONNECT reply, and drops the socket without any
/// disconnect handler. The slots must come back anyway, or enough such clients lock a user
/// (and, through `max_connections`, everybody) out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_mid_handshake_give_their_slots_back() {
    let broker = Broker::start().await;
    let config = TestConfig::new(&broker)
        .limit("max_connections", 5)
        .limit("max_connections_per_subject", 2);
    let service = Service::start(&config).await;
    let same = json!({ "token": token(json!({ "org_id": "o1", "sub": "flaky-user" })) });
    for _ in 0..30 {
        let mut raw = RawSocket::open(service.addr, None).await;
        raw.send(&format!("40{same}")).await;
        drop(raw);
    }
    // Every one of them is gone: the server holds no slot for this user or anybody.
    service
        .wait_sockets(0, "every connection slot back after the clients hung up")
        .await;
    let driver = JsDriver::spawn().await;
    let a = connected(&driver, &service, same.clone()).await;
    let b = connected(&driver, &service, same).await;
    assert_eq!(
        a.emit_ack("ping", vec![]).await.len() + b.emit_ack("ping", vec![]).await.len(),
        2
    );
    service.stop().await;
}
