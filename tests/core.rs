//! End to end through real peers: a private mosquitto, sensorcast on an ephemeral port, and the
//! official `socket.io-client` (via tests/js/driver.js). These prove the core contract of
//! docs/protocol.md: readings reach the sockets subscribed to their unit, site or organization,
//! never another tenant's; handshakes fail with the documented messages; bad input is counted
//! and does not stop the pipeline.
//!
//! Over 400 lines: The core flow's end-to-end cases share one setup; splitting would repeat it.

mod common;

use common::broker::{Broker, Publisher};
use common::config::{TestConfig, SECRET};
use common::jsclient::{JsClient, JsDriver};
use common::service::{auth, connected, sign, token, ttn_uplink, Service};
use serde_json::{json, Value};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(600);

async fn subscribe(c: &JsClient, event: &str, id: &str) -> Value {
    let args = if id.is_empty() {
        vec![]
    } else {
        vec![json!(id)]
    };
    c.emit_ack(event, args).await.remove(0)
}

/// A TTN uplink published to MQTT reaches the unit's, the site's and the organization's
/// subscribers with every field of the contract, once per socket, and nothing reaches a socket
/// of another organization, even one subscribed to its whole organization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_reaches_its_rooms_and_no_other_tenant() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;

    let unit = connected(&driver, &service, auth("o1", "viewer")).await;
    let ack = unit.next_event("connection:ack").await.remove(0);
    assert_eq!(ack["organizationId"], "o1");
    assert_eq!(ack["role"], "viewer");
    assert!(ack["socketId"].is_string() && ack["timestamp"].is_string());
    let sub = subscribe(&unit, "subscribe:unit", "u1").await;
    assert_eq!(sub["ok"], true);
    assert_eq!(sub["latest"], Value::Null);

    // In the unit's and the site's room at once: still one delivery per reading.
    let both = connected(&driver, &service, auth("o1", "staff")).await;
    assert_eq!(subscribe(&both, "subscribe:unit", "u1").await["ok"], true);
    assert_eq!(subscribe(&both, "subscribe:site", "s1").await["ok"], true);
    let org = connected(&driver, &service, auth("o1", "admin")).await;
    assert_eq!(
        subscribe(&org, "subscribe:organization", "").await["ok"],
        true
    );
    let other_unit = connected(&driver, &service, auth("o1", "viewer")).await;
    assert_eq!(
        subscribe(&other_unit, "subscribe:unit", "u2").await["ok"],
        true
    );
    let tenant = connected(&driver, &service, auth("o2", "owner")).await;
    assert_eq!(
        subscribe(&tenant, "subscribe:organization", "").await["ok"],
        true
    );
    assert_eq!(subscribe(&tenant, "subscribe:unit", "u3").await["ok"], true);

    broker
        .publish(
            "v3/app@ttn/devices/dev/up",
            ttn_uplink("ac-1f-09-ff-fe-01-45-4e", -18.25),
            1,
        )
        .await;

    let r = unit.next_event("sensor:reading").await.remove(0);
    assert_eq!(r["unitId"], "u1");
    assert_eq!(r["siteId"], "s1");
    assert_eq!(r["organizationId"], "o1");
    assert_eq!(r["deviceId"], "AC1F09FFFE01454E");
    assert_eq!(r["temperature"], -18.25);
    assert_eq!(r["humidity"], 60.2);
    assert_eq!(r["battery"], 85.0);
    assert_eq!(r["signalStrength"], -62.0);
    assert_eq!(r["recordedAt"], "2024-01-15T12:00:00.000Z");
    assert!(r["receivedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r["source"], "ttn-v3");
    assert_eq!(r["seq"], 1);
    assert!(r["id"].as_str().unwrap().contains("u1"));

    assert_eq!(both.next_event("sensor:reading").await[0]["seq"], 1);
    assert_eq!(org.next_event("sensor:reading").await[0]["seq"], 1);
    both.assert_no_event("sensor:reading", QUIET).await;
    other_unit
        .assert_no_event("sensor:reading", Duration::ZERO)
        .await;
    tenant
        .assert_no_event("sensor:reading", Duration::ZERO)
        .await;

    // The next reading of the unit has the next seq, and get:latest returns it.
    broker
        .publish("sensors/probe-1", r#"{"temperature": -17.5}"#, 1)
        .await;
    let r2 = unit.next_event("sensor:reading").await.remove(0);
    assert_eq!(
        (r2["seq"].as_u64(), r2["source"].as_str()),
        (Some(2), Some("json"))
    );
    let latest = unit
        .emit_ack("get:latest", vec![json!("u1")])
        .await
        .remove(0);
    assert_eq!(latest["seq"], 2);
    assert_eq!(latest["temperature"], -17.5);
    tenant.assert_no_event("sensor:reading", QUIET).await;
    service.stop().await;
}

/// Every handshake failure reaches the official client as `connect_error` with its exact text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_auth_failure_gives_its_exact_message() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    let now = common::service::now();
    let cases: Vec<(Option<Value>, &str)> = vec![
        (None, "Authentication token required"),
        (Some(json!({})), "Authentication token required"),
        (
            Some(json!({ "token": 42 })),
            "Authentication token required",
        ),
        (
            Some(json!({ "token": token(json!({ "org_id": "o1", "exp": now - 120 })) })),
            "Token expired",
        ),
        (
            Some(json!({ "token": sign(&json!({ "org_id": "o1", "exp": now + 60 }), SECRET) })),
            "Invalid token claims",
        ),
        (
            Some(
                json!({ "token": sign(&json!({ "sub": "u", "org_id": "o1" }), "some-other-secret-value") }),
            ),
            "Invalid token signature",
        ),
        (
            Some(json!({ "token": "not-a-jwt" })),
            "Invalid or malformed token",
        ),
        (
            Some(json!({ "token": token(json!({ "role": "owner" })) })),
            "User has no organization access",
        ),
    ];
    for (auth, want) in cases {
        let c = driver.connect(&service.url(), auth.clone()).await;
        assert_eq!(
            c.wait_connect().await,
            Err(want.to_string()),
            "auth {auth:?}"
        );
    }
    let (_, stats) = service
        .get(
            "/api/stats",
            Some(&token(json!({"org_id": "o1", "role": "owner"}))),
        )
        .await;
    assert_eq!(stats["clientErrors"]["token_missing"], 3);
    assert_eq!(stats["clientErrors"]["token_expired"], 1);
    service.stop().await;
}

/// Subscribing to another organization's unit or site, an unknown id, or a site outside the
/// token's `site_ids` is denied the same way (ack and `subscription:error`), and malformed
/// arguments get an error ack instead of a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_malformed_subscribes() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    let c = connected(&driver, &service, auth("o2", "owner")).await;
    for (event, id, entity) in [
        ("subscribe:unit", "u1", "unit"),
        ("subscribe:unit", "no-such-unit", "unit"),
        ("subscribe:site", "s1", "site"),
    ] {
        let ack = subscribe(&c, event, id).await;
        assert_eq!(
            ack,
            json!({ "ok": false, "error": "Access denied" }),
            "{event} {id}"
        );
        let err = c.next_event("subscription:error").await.remove(0);
        assert_eq!(
            err,
            json!({ "entity": entity, "entityId": id, "message": "Access denied" })
        );
    }
    let denied = c.emit_ack("get:latest", vec![json!("u1")]).await.remove(0);
    assert_eq!(denied["ok"], false);

    for args in [
        vec![],
        vec![json!(42)],
        vec![json!({ "unit": "u3" })],
        vec![json!("x".repeat(500))],
    ] {
        let ack = c.emit_ack("subscribe:unit", args.clone()).await.remove(0);
        assert_eq!(ack["ok"], false, "{args:?}");
        assert!(
            ack["error"]
                .as_str()
                .unwrap()
                .starts_with("Invalid arguments"),
            "{ack}"
        );
    }
    let unknown = c.emit_ack("no:such:event", vec![json!(1)]).await.remove(0);
    assert_eq!(unknown, json!({ "ok": false, "error": "Unknown event" }));

    // A token limited to site s2 may see u2 (in s2) but not u1 (s1) nor the whole org.
    let limited =
        json!({ "token": token(json!({ "org_id": "o1", "role": "staff", "site_ids": ["s2"] })) });
    let l = connected(&driver, &service, limited).await;
    assert_eq!(subscribe(&l, "subscribe:unit", "u2").await["ok"], true);
    assert_eq!(subscribe(&l, "subscribe:unit", "u1").await["ok"], false);
    assert_eq!(
        subscribe(&l, "subscribe:organization", "").await["ok"],
        false
    );
    // The object form works too.
    let obj = l
        .emit_ack("subscribe:unit", vec![json!({ "unitId": "u2" })])
        .await
        .remove(0);
    assert_eq!(obj["ok"], true);
    // The socket still works after all that.
    let pong = c.emit_ack("ping", vec![]).await.remove(0);
    assert!(pong.as_i64().unwrap() > 1_700_000_000_000);
    service.stop().await;
}

/// Bad payloads (not JSON, NaN, out of range, no temperature, unknown sensor) are rejected,
/// counted by reason, and the next good reading still arrives; the unknown sensor is listed for
/// installers. `/api/` needs an owner/admin token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_counted_and_the_next_good_one_arrives() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    let c = connected(&driver, &service, auth("o1", "viewer")).await;
    assert_eq!(subscribe(&c, "subscribe:unit", "u1").await["ok"], true);

    let publisher = Publisher::connect(&broker).await;
    for (topic, payload) in [
        ("sensors/probe-1", "not json at all"),
        ("sensors/probe-1", r#"{"temperature": "NaN"}"#),
        ("sensors/probe-1", r#"{"temperature": 1e400}"#),
        ("sensors/probe-1", r#"{"temperature": 900}"#),
        ("sensors/probe-1", r#"{"humidity": 50}"#),
        (
            "sensors/probe-1",
            r#"{"temperature": 4, "ts": "yesterday"}"#,
        ),
        ("sensors/new-probe-9", r#"{"temperature": 4}"#),
        (
            "v3/a@t/devices/d/up",
            r#"{"end_device_ids":{"dev_eui":"AC1F09FFFE01454E"},"uplink_message":{}}"#,
        ),
    ] {
        publisher.publish(topic, payload, 1).await;
    }
    publisher
        .publish(
            "sensors/probe-1",
            r#"{"temperature": 3.75, "ts": 1700000000}"#,
            1,
        )
        .await;
    let r = c.next_event("sensor:reading").await.remove(0);
    assert_eq!(r["temperature"], 3.75);
    assert_eq!(r["recordedAt"], "2023-11-14T22:13:20.000Z");
    assert_eq!(r["seq"], 1, "no bad payload produced a reading");

    let admin = token(json!({ "org_id": "o1", "role": "admin" }));
    let (code, stats) = service.get("/api/stats", Some(&admin)).await;
    assert_eq!(code, 200);
    let rejected = &stats["rejected"];
    assert_eq!(rejected["json"]["not_json"], 2, "{stats}"); // garbage and 1e400 (serde: out of range)
    assert_eq!(rejected["json"]["not_a_number"], 1, "{stats}");
    assert_eq!(rejected["json"]["out_of_range"], 1, "{stats}");
    assert_eq!(rejected["json"]["no_temperature"], 1, "{stats}");
    assert_eq!(rejected["json"]["bad_timestamp"], 1, "{stats}");
    assert_eq!(rejected["ttn-v3"]["no_decoded_payload"], 1, "{stats}");
    assert_eq!(stats["unmapped"], 1);
    assert_eq!(stats["emitted"], 1);

    let (code, unmapped) = service.get("/api/sensors/unmapped", Some(&admin)).await;
    assert_eq!(code, 200);
    assert_eq!(unmapped["sensors"][0]["sensorId"], "new-probe-9");
    assert_eq!(unmapped["sensors"][0]["topic"], "sensors/new-probe-9");
    assert_eq!(unmapped["sensors"][0]["count"], 1);
    assert_eq!(service.get("/api/sensors/unmapped", None).await.0, 401);
    let viewer = token(json!({ "org_id": "o1", "role": "viewer" }));
    assert_eq!(
        service.get("/api/sensors/unmapped", Some(&viewer)).await.0,
        403
    );
    assert_eq!(service.get("/api/stats", Some("garbage")).await.0, 401);
    service.stop().await;
}

/// Health endpoints: live always, ready only while MQTT is connected and subscribed (503 with a
/// reason while the broker is down), realtime counts sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_broker_and_counts_sockets() {
    let mut broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    assert_eq!(
        service.get("/health/live", None).await,
        (200, json!({ "alive": true }))
    );
    assert_eq!(
        service.get("/health/ready", None).await,
        (200, json!({ "ready": true }))
    );
    let c = connected(&driver, &service, auth("o1", "viewer")).await;
    let _c2 = connected(&driver, &service, auth("o2", "viewer")).await;
    let (code, rt) = service.get("/health/realtime", None).await;
    assert_eq!(
        (
            code,
            &rt["websocket"]["enabled"],
            &rt["websocket"]["connections"]
        ),
        (200, &json!(true), &json!(2))
    );
    c.close().await;
    service
        .wait_sockets(1, "the closed socket to leave the count")
        .await;
    let (code, h) = service.get("/health", None).await;
    assert_eq!((code, &h["status"]), (200, &json!("ok")));
    assert_eq!(h["checks"]["mqtt"]["connected"], true);
    assert!(h["uptimeSeconds"].is_u64() && h["version"].is_string());

    broker.stop().await;
    let down = service
        .get_until(
            "/health/ready",
            None,
            "not ready once the broker is gone",
            |code, _| code == 503,
        )
        .await;
    assert_eq!(down.1["ready"], false);
    assert!(
        down.1["reason"].as_str().unwrap().contains("mqtt"),
        "{down:?}"
    );
    assert_eq!(service.get("/health", None).await.1["status"], "degraded");
    broker.restart().await;
    service.wait_ready().await;
    service.stop().await;
}

/// A socket is disconnected by the server when its token expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_disconnected_when_its_token_expires() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    let exp = common::service::now() + 2;
    let short = json!({ "token": token(json!({ "org_id": "o1", "exp": exp })) });
    let c = connected(&driver, &service, short).await;
    let reason = c.wait_disconnect().await;
    assert_eq!(reason, "io server disconnect");
    assert!(common::service::now() >= exp, "not before the token's exp");
    service.stop().await;
}

/// HTTP long-polling works as well as websocket, with the official client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_transport_receives_readings() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    let c = driver
        .connect_with(
            &service.url(),
            Some(auth("o1", "viewer")),
            Some(vec!["polling"]),
        )
        .await;
    c.wait_connect().await.expect("polling connect");
    assert_eq!(subscribe(&c, "subscribe:site", "s2").await["ok"], true);
    broker
        .publish(
            "sensors/probe-2",
            r#"{"temperature": 5.5, "humidity": "40"}"#,
            0,
        )
        .await;
    let r = c.next_event("sensor:reading").await.remove(0);
    assert_eq!(
        (r["unitId"].as_str(), r["humidity"].as_f64()),
        (Some("u2"), Some(40.0))
    );
    service.stop().await;
}

/// `auth.mode = "none"` (what config/dev.toml uses): a socket without a token belongs to the
/// configured organization and receives its readings; `/api/` is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_mode_none_is_usable_for_development() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker).auth_none("o1")).await;
    let driver = JsDriver::spawn().await;
    let c = driver.connect(&service.url(), None).await;
    c.wait_connect().await.expect("no token needed");
    let ack = c.next_event("connection:ack").await.remove(0);
    assert_eq!(
        (ack["organizationId"].as_str(), ack["role"].as_str()),
        (Some("o1"), Some("owner"))
    );
    assert_eq!(subscribe(&c, "subscribe:unit", "u1").await["ok"], true);
    assert_eq!(
        subscribe(&c, "subscribe:unit", "u3").await["ok"],
        false,
        "still one org only"
    );
    broker
        .publish(
            "v3/app@ttn/devices/dev/up",
            ttn_uplink("AC1F09FFFE01454E", 2.5),
            1,
        )
        .await;
    assert_eq!(c.next_event("sensor:reading").await[0]["temperature"], 2.5);
    assert_eq!(service.get("/api/sensors/unmapped", None).await.0, 200);
    service.stop().await;
}
