//! Door contacts and humidity end to end through real peers (a private mosquitto, sensorcast
//! on an ephemeral port, the official `socket.io-client`): the real payload fixtures of every
//! format that carries a door state produce one `unit:door` per change and none for a repeat;
//! a door left open alerts on time with no further message and closing resolves it; humidity
//! limits have their hysteresis; `unit:door` and the door in acks never reach another tenant;
//! a door contact's battery feeds `low_battery`; bad humidity and door rules are refused with
//! file, line and key.
//!
//! Over 400 lines: Every door format end to end plus the door rules: one feature, one file.

mod common;

use common::broker::{Broker, Publisher};
use common::config::{TestConfig, TestRegistry};
use common::fixtures::project_dir;
use common::http::{http_get_raw, sample};
use common::service::{auth, check_config, connected, subscribed, Service};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The standard registry with a door contact of each format on u1, one more on u2 and u3.
fn registry() -> TestRegistry {
    TestRegistry::standard()
        .sensor("walkin_door", "u1") // tasmota
        .sensor("freezer_2", "u1") // tasmota, a probe with a door switch
        .sensor("walkin door", "u1") // zigbee2mqtt
        .sensor("60:ef:ab:42:ed:25", "u1") // a Shelly BLU Door/Window, via a Plus 1
        .sensor("A84041A0B1C2D3E4", "u1") // ttn-v3, Dragino LDS02
        .sensor("walkin-door", "u1") // json
        .sensor("door-2", "u2")
        .sensor("door-3", "u3")
}

/// The test config with a subscription for every format that carries a door.
fn door_config(broker: &Broker) -> TestConfig {
    TestConfig::new(broker)
        .subscription("tele/+/SENSOR", "tasmota")
        .subscription("stat/+/RESULT", "tasmota")
        .subscription("zigbee2mqtt/#", "zigbee2mqtt")
        .subscription("+/events/rpc", "shelly-gen2")
        .registry(&registry())
}

/// A fixture's (topic, payload).
fn fixture(name: &str) -> (String, String) {
    let text = std::fs::read_to_string(project_dir().join(name)).expect("fixture");
    let f: Value = serde_json::from_str(&text).expect("fixture json");
    (
        f["topic"].as_str().unwrap().to_string(),
        f["payload"].as_str().unwrap().to_string(),
    )
}

/// The same message with `from` replaced by `to` in its payload (the other door state).
fn flipped((topic, payload): &(String, String), from: &str, to: &str) -> (String, String) {
    assert!(payload.contains(from), "{payload} has no {from}");
    (topic.clone(), payload.replace(from, to))
}

async fn send(p: &Publisher, (topic, payload): &(String, String)) {
    p.publish(topic, payload.as_bytes(), 1).await;
}

/// A json door contact's state on `sensors/<device>`.
async fn door(p: &Publisher, device: &str, open: bool, battery: Option<f64>) {
    let mut body = json!({ "door": open });
    if let Some(b) = battery {
        body["battery"] = json!(b);
    }
    p.publish(&format!("sensors/{device}"), body.to_string(), 1)
        .await;
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Every format's real door payload gives one `unit:door` to the unit's subscribers, a repeat
/// gives none, the other state gives one more; door contacts alone emit no `sensor:reading`.
/// A reading with a temperature and a door keeps both, and `get:latest` and the subscribe ack
/// carry the unit's door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_s_door_changes_reach_the_unit_once_and_readings_keep_both() {
    let broker = Broker::start().await;
    let service = Service::start(&door_config(&broker)).await;
    let driver = common::jsclient::JsDriver::spawn().await;
    let c = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    let p = Publisher::connect(&broker).await;

    let tasmota = fixture("tasmota-switch1-door-contact-only.json");
    let zigbee = fixture("zigbee2mqtt-aqara-door-contact-open.json");
    let blu = fixture("shelly-gen2-blu-door-window-via-plus1.json");
    let ttn = fixture("ttn-v3-door-sensor-no-temperature.json");
    let json_door = fixture("json-door-contact-only.json");
    let cases = [
        (
            "walkin_door",
            &tasmota,
            fixture("tasmota-result-switch1-action.json"),
        ),
        (
            "walkin door",
            &zigbee,
            flipped(&zigbee, "\"contact\":false", "\"contact\":true"),
        ),
        (
            "60EFAB42ED25",
            &blu,
            flipped(&blu, "\"window\":1", "\"window\":0"),
        ),
        (
            "A84041A0B1C2D3E4",
            &ttn,
            flipped(&ttn, "\"DOOR_OPEN_STATUS\":1", "\"DOOR_OPEN_STATUS\":0"),
        ),
        (
            "walkin-door",
            &json_door,
            flipped(&json_door, "\"door\":true", "\"door\":false"),
        ),
    ];
    for (device, open, closed) in cases {
        send(&p, open).await;
        let e = c.next_event("unit:door").await.remove(0);
        assert_eq!(
            keys(&e),
            [
                "unitId",
                "siteId",
                "organizationId",
                "deviceId",
                "open",
                "since",
                "recordedAt"
            ]
            .map(String::from)
            .into()
        );
        assert_eq!(
            (&e["unitId"], &e["siteId"], &e["organizationId"]),
            (&json!("u1"), &json!("s1"), &json!("o1"))
        );
        assert_eq!((&e["deviceId"], &e["open"]), (&json!(device), &json!(true)));
        assert!(e["since"].as_str().unwrap().ends_with('Z'), "{e}");
        // A repeat says nothing: the next event is the change that follows it.
        send(&p, open).await;
        send(&p, &closed).await;
        let e = c.next_event("unit:door").await.remove(0);
        assert_eq!(
            (&e["deviceId"], &e["open"]),
            (&json!(device), &json!(false)),
            "{device}"
        );
    }
    assert!(
        c.drain_events("sensor:reading").is_empty(),
        "a door contact alone is no sensor:reading"
    );
    assert_eq!(
        c.emit_ack("get:latest", vec![json!("u1")]).await[0],
        Value::Null,
        "no temperature reading yet"
    );

    // A probe with a door switch: both in one message.
    send(&p, &fixture("tasmota-ds18b20-with-door-switch.json")).await;
    let e = c.next_event("unit:door").await.remove(0);
    assert_eq!(
        (&e["deviceId"], &e["open"]),
        (&json!("freezer_2"), &json!(false))
    );
    let r = c.next_event("sensor:reading").await.remove(0);
    assert_eq!(
        (&r["deviceId"], &r["temperature"]),
        (&json!("freezer_2"), &json!(-18.6))
    );
    assert_eq!(r["door"]["open"], false);
    assert_eq!(r["door"]["deviceId"], "freezer_2");
    // The door opens again: get:latest shows the unit's door now, not the reading's.
    door(&p, "walkin-door", true, None).await;
    let opened = c.next_event("unit:door").await.remove(0);
    let latest = c.emit_ack("get:latest", vec![json!("u1")]).await.remove(0);
    assert_eq!(latest["seq"], r["seq"]);
    assert_eq!(
        latest["door"],
        json!({ "deviceId": "walkin-door", "open": true, "since": opened["since"] })
    );
    let fresh = connected(&driver, &service, auth("o1", "viewer")).await;
    let ack = fresh
        .emit_ack("subscribe:unit", vec![json!("u1")])
        .await
        .remove(0);
    assert_eq!(ack["door"], opened);
    assert_eq!(ack["latest"]["door"]["open"], true);
    let stats = service.get("/health", None).await.1;
    assert_eq!(
        stats["pipeline"]["doorChanges"], 12,
        "{}",
        stats["pipeline"]
    );
    service.stop().await;
}

/// A door left open raises `door_open` when `door_open_after` has passed, without any further
/// message, escalates to critical `confirm_after` later, and closing it resolves the alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_door_left_open_alerts_on_time_escalates_and_closing_resolves() {
    let broker = Broker::start().await;
    let config = door_config(&broker)
        .alerts("door_open_after", "1s")
        .alerts("confirm_after", "1500ms");
    let service = Service::start(&config).await;
    let driver = common::jsclient::JsDriver::spawn().await;
    let org = connected(&driver, &service, auth("o1", "viewer")).await;
    let p = Publisher::connect(&broker).await;

    door(&p, "walkin-door", true, None).await;
    let opened = Instant::now();
    let alert = org.next_event("alert:triggered").await.remove(0);
    let after = opened.elapsed();
    // Not before its time; and with no further message (a generous bound for a busy machine).
    assert!(
        after >= Duration::from_millis(950) && after < Duration::from_secs(10),
        "{after:?}"
    );
    assert_eq!(alert["alertType"], "door_open");
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["unitId"], "u1");
    assert_eq!(
        (&alert["threshold"], &alert["thresholdViolated"]),
        (&json!(1), &json!("max"))
    );
    let esc = org.next_event("alert:escalated").await.remove(0);
    assert!(
        opened.elapsed() >= Duration::from_millis(2400),
        "{:?}",
        opened.elapsed()
    );
    assert_eq!(
        (&esc["alertId"], &esc["severity"]),
        (&alert["alertId"], &json!("critical"))
    );

    let m = metrics(&service).await;
    assert_eq!(sample(&m, "sensorcast_doors_open "), 1.0, "{m}");
    assert_eq!(sample(&m, "sensorcast_door_reports_total "), 1.0);
    assert_eq!(sample(&m, "sensorcast_door_changes_total "), 1.0);
    let door_open_alerts = "sensorcast_alerts_open{type=\"door_open\",severity=\"critical\"} ";
    assert_eq!(sample(&m, door_open_alerts), 1.0, "{m}");

    door(&p, "walkin-door", false, None).await;
    let resolved = org.next_event("alert:resolved").await.remove(0);
    assert_eq!(resolved["alertId"], alert["alertId"]);
    let open = org.emit_ack("get:alerts", vec![]).await.remove(0);
    assert_eq!(open["alerts"], json!([]));
    let m = metrics(&service).await;
    assert_eq!(sample(&m, "sensorcast_doors_open "), 0.0, "{m}");
    assert_eq!(sample(&m, "sensorcast_door_reports_total "), 2.0);
    assert_eq!(sample(&m, "sensorcast_door_changes_total "), 2.0);
    assert!(!m.contains("type=\"door_open\""), "{m}");
    service.stop().await;
}

/// Humidity above `humidity_max` alerts; back under the limit but inside the hysteresis does
/// not restore it (a battery alert resolving in between shows the order); past the band it
/// is resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_humidity_excursion_needs_the_hysteresis_to_restore() {
    let broker = Broker::start().await;
    let config = TestConfig::new(&broker)
        .alerts("humidity_max", 80)
        .alerts("restore_after", 1);
    let service = Service::start(&config).await;
    let driver = common::jsclient::JsDriver::spawn().await;
    let org = connected(&driver, &service, auth("o1", "viewer")).await;
    let p = Publisher::connect(&broker).await;
    let read = |h: f64, battery: Option<f64>| {
        let mut body = json!({ "temperature": 4.0, "humidity": h });
        if let Some(b) = battery {
            body["battery"] = json!(b);
        }
        body.to_string()
    };

    p.publish("sensors/probe-1", read(81.0, Some(10.0)), 1)
        .await;
    let mut triggered = Vec::new();
    for _ in 0..2 {
        triggered.push(org.next_event("alert:triggered").await.remove(0));
    }
    let id_of = |ty: &str| {
        let a = triggered.iter().find(|a| a["alertType"] == ty).unwrap();
        a["alertId"].clone()
    };
    let humid = triggered
        .iter()
        .find(|a| a["alertType"] == "humidity_excursion")
        .unwrap();
    assert_eq!(
        (&humid["value"], &humid["threshold"]),
        (&json!(81), &json!(80))
    );
    assert_eq!(humid["thresholdViolated"], "max");
    let metrics = http_get_raw(service.metrics_addr(), "/metrics", &[])
        .await
        .body;
    let open = r#"sensorcast_alerts_open{type="humidity_excursion",severity="warning"} 1"#;
    assert!(metrics.lines().any(|l| l == open), "{metrics}");
    // 79 %RH is in range but within the 2 %RH hysteresis: no restore, only the battery.
    p.publish("sensors/probe-1", read(79.0, Some(30.0)), 1)
        .await;
    p.publish("sensors/probe-1", read(77.5, None), 1).await;
    let first = org.next_event("alert:resolved").await.remove(0);
    assert_eq!(first["alertId"], id_of("low_battery"));
    let second = org.next_event("alert:resolved").await.remove(0);
    assert_eq!(second["alertId"], id_of("humidity_excursion"));
    service.stop().await;
}

/// `unit:door` goes to the unit's own subscribers only: another organization's socket, and a
/// socket limited to another site of the same organization, get only their own units' doors,
/// and their acks show no other unit's door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_door_never_reaches_another_tenant() {
    let broker = Broker::start().await;
    let service = Service::start(&door_config(&broker)).await;
    let driver = common::jsclient::JsDriver::spawn().await;
    let own = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    let tenant = connected(&driver, &service, auth("o2", "owner")).await;
    assert_eq!(
        tenant.emit_ack("subscribe:organization", vec![]).await[0]["ok"],
        true
    );
    let limited_token = common::service::token(json!({ "org_id": "o1", "site_ids": ["s2"] }));
    let limited = connected(&driver, &service, json!({ "token": limited_token })).await;
    assert_eq!(
        limited.emit_ack("subscribe:site", vec![json!("s2")]).await[0]["ok"],
        true
    );
    let p = Publisher::connect(&broker).await;

    // In this order; each socket's first unit:door must be its own unit's.
    door(&p, "walkin-door", true, None).await;
    door(&p, "door-3", true, None).await;
    door(&p, "door-2", true, None).await;
    door(&p, "walkin-door", false, None).await;
    let device = |v: Vec<Value>| v[0]["deviceId"].clone();
    assert_eq!(device(own.next_event("unit:door").await), "walkin-door");
    assert_eq!(device(own.next_event("unit:door").await), "walkin-door");
    assert_eq!(device(tenant.next_event("unit:door").await), "door-3");
    assert_eq!(device(limited.next_event("unit:door").await), "door-2");
    for c in [&tenant, &limited] {
        let more: Vec<_> = c.drain_events("unit:door");
        assert!(more.is_empty(), "{more:?}");
    }

    let ack = tenant
        .emit_ack("subscribe:organization", vec![])
        .await
        .remove(0);
    let doors: Vec<&Value> = ack["doors"].as_array().unwrap().iter().collect();
    assert_eq!(doors.len(), 1, "{doors:?}");
    assert_eq!(
        (&doors[0]["unitId"], &doors[0]["deviceId"]),
        (&json!("u3"), &json!("door-3"))
    );
    assert_eq!(
        tenant.emit_ack("get:latest", vec![json!("u1")]).await[0],
        json!({ "ok": false, "error": "Access denied" })
    );
    service.stop().await;
}

/// A door contact that also reports its battery raises `low_battery` for its unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_door_contact_s_battery_feeds_low_battery() {
    let broker = Broker::start().await;
    let service = Service::start(&door_config(&broker)).await;
    let driver = common::jsclient::JsDriver::spawn().await;
    let org = connected(&driver, &service, auth("o1", "viewer")).await;
    let p = Publisher::connect(&broker).await;
    door(&p, "walkin-door", false, Some(12.0)).await;
    let a = org.next_event("alert:triggered").await.remove(0);
    assert_eq!(
        (&a["alertType"], &a["unitId"], &a["value"], &a["threshold"]),
        (&json!("low_battery"), &json!("u1"), &json!(12), &json!(20))
    );
    service.stop().await;
}

/// `check-config` refuses humidity and door rules that make no sense with the file, the line
/// and the key; inherited humidity limits without room for the hysteresis name the unit.
#[test]
fn check_config_names_broken_humidity_and_door_rules() {
    let base = TestConfig::for_url("mqtt://127.0.0.1:1");
    let org = "[[org]]\nid = \"o\"\nhumidity_max = 60\n[[site]]\nid = \"s\"\norg = \"o\"\n";
    let unit = |keys: &str| format!("{org}[[unit]]\nid = \"u1\"\nsite = \"s\"\n{keys}\n");
    let cases: Vec<(TestConfig, String, Vec<&str>)> = vec![
        (
            base.clone(),
            unit("humidity_min = 120"),
            vec![
                "registry.toml",
                "line 10",
                "unit.humidity_min",
                "relative humidity",
            ],
        ),
        (
            base.clone(),
            unit("door_open_after = \"0s\""),
            vec![
                "registry.toml",
                "line 10",
                "unit.door_open_after",
                "at least 1s",
            ],
        ),
        (
            base.clone(),
            unit("humidity_min = 70\nhumidity_max = 50"),
            vec![
                "registry.toml",
                "line 10: unit[0].humidity_min",
                "below humidity_max",
            ],
        ),
        (
            base.clone(),
            unit("humidity_min = 59"),
            vec![
                "registry.toml: line 7: unit[0]",
                "\"u1\"",
                "humidity_hysteresis",
            ],
        ),
        (
            base.clone().alerts("humidity_hysteresis", -1),
            unit(""),
            vec!["sensorcast.toml", "line ", "alerts.humidity_hysteresis"],
        ),
    ];
    for (config, registry, wants) in cases {
        let dir = config.registry_text(&registry).write_dir();
        let (code, out) = check_config(&dir.path().join("sensorcast.toml"), &[]);
        assert_eq!(code, Some(1), "{out}");
        for want in wants {
            assert!(out.contains(want), "{out:?} should contain {want:?}");
        }
    }
    let dir = base
        .alerts("door_open_after", "5m")
        .registry_text(&unit("humidity_min = 40\nhumidity_hysteresis = 5"))
        .write_dir();
    let (code, out) = check_config(&dir.path().join("sensorcast.toml"), &[]);
    assert_eq!(code, Some(0), "{out}");
}

async fn metrics(service: &Service) -> String {
    http_get_raw(service.metrics_addr(), "/metrics", &[])
        .await
        .body
}
