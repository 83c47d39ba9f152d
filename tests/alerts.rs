//! The alert engine end to end through real peers: a private mosquitto, sensorcast on an
//! ephemeral port, the official `socket.io-client`, and a hyper HTTP server as webhook receiver.
//! These prove docs/protocol.md's alert events: an excursion reaches every dashboard of its
//! organization (subscribed or not) within a second and nothing of another tenant or of a
//! site the token does not allow; acknowledgements need a role that allows them; `get:alerts`
//! tells a reconnecting dashboard what is open; a restart neither forgets nor re-sends.
//!
//! Over 400 lines: The alert events end to end, one test per documented guarantee, sharing one
//! broker/service setup.

mod common;

use common::broker::{Broker, Publisher};
use common::config::TestConfig;
use common::jsclient::JsDriver;
use common::service::{auth, check_config, connected, subscribed, token, Service};
use common::webhook::webhook_receiver;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const QUIET: Duration = Duration::from_millis(600);

/// The test config with a fridge rule (0..8 °C) for every unit.
fn alerts_config(broker: &Broker) -> TestConfig {
    TestConfig::new(broker)
        .alerts("temp_min", 0)
        .alerts("temp_max", 8)
}

fn site_limited(org: &str, role: &str, sites: &[&str]) -> Value {
    json!({ "token": token(json!({ "org_id": org, "role": role, "site_ids": sites })) })
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// A temperature for probe-1 (unit u1, site s1, org o1), published with QoS 1.
async fn publish(p: &Publisher, temperature: f64) {
    let body = json!({ "temperature": temperature }).to_string();
    p.publish("sensors/probe-1", body, 1).await;
}

/// An excursion published to MQTT reaches, within a second, a socket subscribed to the unit,
/// a socket of the organization with no subscription at all, and a socket limited to the
/// unit's site; not another organization's socket, nor one limited to another site. Without
/// any further reading it escalates after confirm_after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excursion_reaches_the_whole_org_within_a_second_and_no_one_else() {
    let broker = Broker::start().await;
    let config = alerts_config(&broker).alerts("confirm_after", "1500ms");
    let service = Service::start(&config).await;
    let driver = JsDriver::spawn().await;

    let unit = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    let org = connected(&driver, &service, auth("o1", "viewer")).await;
    let same_site = connected(&driver, &service, site_limited("o1", "staff", &["s1"])).await;
    let other_site = connected(&driver, &service, site_limited("o1", "owner", &["s2"])).await;
    let tenant = connected(&driver, &service, auth("o2", "owner")).await;
    let sub = tenant
        .emit_ack("subscribe:organization", vec![])
        .await
        .remove(0);
    assert_eq!(sub["ok"], true);

    let publisher = Publisher::connect(&broker).await;
    let sent = Instant::now();
    publish(&publisher, 12.5).await;
    let alert = unit.next_event("alert:triggered").await.remove(0);
    let latency = sent.elapsed();
    eprintln!("MQTT publish -> alert:triggered: {latency:?}");
    assert!(latency < Duration::from_secs(1), "{latency:?}");

    let want: BTreeSet<String> = [
        "alertId",
        "unitId",
        "siteId",
        "organizationId",
        "alertType",
        "severity",
        "message",
        "value",
        "threshold",
        "thresholdViolated",
        "triggeredAt",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys(&alert), want);
    assert_eq!(alert["unitId"], "u1");
    assert_eq!(alert["siteId"], "s1");
    assert_eq!(alert["organizationId"], "o1");
    assert_eq!(alert["alertType"], "temperature_excursion");
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["value"], 12.5);
    assert_eq!(alert["threshold"], 8.0);
    assert_eq!(alert["thresholdViolated"], "max");
    assert!(alert["triggeredAt"].as_str().unwrap().ends_with('Z'));
    let id = alert["alertId"].as_str().unwrap().to_string();

    for c in [&org, &same_site] {
        assert_eq!(c.next_event("alert:triggered").await[0]["alertId"], id);
        let s = c.next_event("unit:state:changed").await.remove(0);
        assert_eq!(
            (&s["unitId"], &s["previousState"], &s["newState"]),
            (&json!("u1"), &json!("ok"), &json!("excursion"))
        );
        assert_eq!(keys(&s).len(), 7, "{s}");
    }

    // No further reading: the escalation comes on time.
    let esc = unit.next_event("alert:escalated").await.remove(0);
    assert_eq!(esc["alertId"], id);
    assert_eq!(esc["severity"], "critical");
    assert_eq!(esc["escalationLevel"], 1);
    assert_eq!(
        keys(&esc),
        [
            "alertId",
            "unitId",
            "severity",
            "escalationLevel",
            "escalatedAt"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(org.next_event("alert:escalated").await[0]["alertId"], id);
    unit.assert_no_event("alert:triggered", QUIET).await;

    for c in [&tenant, &other_site] {
        for event in ["alert:triggered", "alert:escalated", "unit:state:changed"] {
            c.assert_no_event(event, Duration::ZERO).await;
        }
    }
    service.stop().await;
}

/// A viewer cannot acknowledge, another organization cannot even see the alert, staff can and
/// every dashboard of the organization hears it; `get:alerts` after a reconnect lists the open
/// alert with its acknowledgement, and resolving is announced on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_follow_roles_and_get_alerts_after_a_reconnect() {
    let broker = Broker::start().await;
    let config = alerts_config(&broker).alerts("restore_after", "300ms");
    let service = Service::start(&config).await;
    let driver = JsDriver::spawn().await;
    let viewer = connected(&driver, &service, auth("o1", "viewer")).await;
    let staff_token = token(json!({ "org_id": "o1", "role": "staff", "sub": "staff-7" }));
    let staff = connected(&driver, &service, json!({ "token": staff_token })).await;
    let tenant = connected(&driver, &service, auth("o2", "owner")).await;
    let other_site = connected(&driver, &service, site_limited("o1", "owner", &["s2"])).await;

    let publisher = Publisher::connect(&broker).await;
    publish(&publisher, 9.0).await;
    let id = viewer.next_event("alert:triggered").await[0]["alertId"].clone();

    let refused = viewer
        .emit_ack("alert:ack", vec![json!({ "alertId": id })])
        .await;
    assert_eq!(refused[0], json!({ "ok": false, "error": "Access denied" }));
    for c in [&tenant, &other_site] {
        let hidden = c
            .emit_ack("alert:ack", vec![json!({ "alertId": id })])
            .await;
        assert_eq!(
            hidden[0],
            json!({ "ok": false, "error": "Alert not found" })
        );
    }
    let bad = staff.emit_ack("alert:ack", vec![json!(42)]).await;
    assert_eq!(bad[0]["ok"], false);

    let ok = staff
        .emit_ack("alert:ack", vec![json!({ "alertId": id })])
        .await
        .remove(0);
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["alert"]["acknowledgedBy"], "staff-7");
    let heard = viewer.next_event("alert:acknowledged").await.remove(0);
    assert_eq!(
        keys(&heard),
        [
            "alertId",
            "unitId",
            "acknowledgedBy",
            "acknowledgedAt",
            "acknowledgedComment"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(heard["acknowledgedComment"], Value::Null);
    assert_eq!(
        (&heard["alertId"], &heard["acknowledgedBy"]),
        (&id, &json!("staff-7"))
    );
    assert_eq!(
        staff.next_event("alert:acknowledged").await[0]["alertId"],
        id
    );
    tenant
        .assert_no_event("alert:acknowledged", Duration::ZERO)
        .await;

    viewer.close().await;
    viewer.reconnect().await;
    viewer.wait_connect().await.expect("reconnects");
    let open = viewer.emit_ack("get:alerts", vec![]).await.remove(0);
    assert_eq!(open["ok"], true);
    let alerts = open["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{open}");
    assert_eq!(alerts[0]["alertId"], id);
    assert_eq!(alerts[0]["acknowledgedBy"], "staff-7");
    assert_eq!(alerts[0]["severity"], "warning");
    for c in [&tenant, &other_site] {
        let none = c.emit_ack("get:alerts", vec![]).await.remove(0);
        assert_eq!(none, json!({ "ok": true, "alerts": [] }));
    }

    // Back in range past the hysteresis band; restored after restore_after without a reading.
    publish(&publisher, 4.0).await;
    let resolved = viewer.next_event("alert:resolved").await.remove(0);
    assert_eq!(
        keys(&resolved),
        ["alertId", "unitId", "resolvedAt"].map(String::from).into()
    );
    assert_eq!(resolved["alertId"], id);
    let open = viewer.emit_ack("get:alerts", vec![]).await.remove(0);
    assert_eq!(open["alerts"], json!([]));
    service.stop().await;
}

/// Stopping and starting sensorcast with an open alert: the alert is still open afterwards
/// (same id, from the state file) and a reading that is still out of range does not send
/// `alert:triggered` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_open_alert_and_does_not_trigger_it_again() {
    let broker = Broker::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = alerts_config(&broker)
        .alerts("confirm_after", "10m")
        .state_dir(state.path());
    let publisher = Publisher::connect(&broker).await;

    let service = Service::start(&config).await;
    let driver = JsDriver::spawn().await;
    let c = connected(&driver, &service, auth("o1", "viewer")).await;
    publish(&publisher, 11.0).await;
    let id = c.next_event("alert:triggered").await[0]["alertId"].clone();
    service.stop().await;
    assert!(state.path().join("alerts.json").exists());

    let service = Service::start(&config).await;
    let c = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    let open = c.emit_ack("get:alerts", vec![]).await.remove(0);
    assert_eq!(open["alerts"][0]["alertId"], id, "{open}");
    publish(&publisher, 11.5).await;
    assert_eq!(c.next_event("sensor:reading").await[0]["temperature"], 11.5);
    c.assert_no_event("alert:triggered", QUIET).await;
    c.assert_no_event("unit:state:changed", Duration::ZERO)
        .await;
    service.stop().await;
}

/// `alert:ack` with a comment (the corrective action): trimmed, carried on the other socket's
/// `alert:acknowledged` and in `get:alerts` as `acknowledgedComment`, and still there after a
/// restart; a comment over 500 characters or not a string is refused with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_carries_its_comment_to_the_org_and_across_a_restart() {
    let broker = Broker::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = alerts_config(&broker)
        .alerts("confirm_after", "10m")
        .state_dir(state.path());
    let publisher = Publisher::connect(&broker).await;
    let service = Service::start(&config).await;
    let driver = JsDriver::spawn().await;
    let staff = connected(&driver, &service, auth("o1", "staff")).await;
    let other = connected(&driver, &service, auth("o1", "viewer")).await;
    publish(&publisher, 10.0).await;
    let id = staff.next_event("alert:triggered").await[0]["alertId"].clone();

    let long = "x".repeat(501);
    let too_long = staff
        .emit_ack("alert:ack", vec![json!({ "alertId": id, "comment": long })])
        .await;
    assert_eq!(
        too_long[0],
        json!({ "ok": false, "error": "Comment too long" })
    );
    let not_text = staff
        .emit_ack("alert:ack", vec![json!({ "alertId": id, "comment": 7 })])
        .await;
    assert_eq!(
        not_text[0],
        json!({ "ok": false, "error": "Invalid arguments: comment must be a string" })
    );
    other
        .assert_no_event("alert:acknowledged", Duration::ZERO)
        .await;

    let comment = "Door was left open; stock moved to the spare fridge";
    let padded = format!("  {comment}\n");
    let ok = staff
        .emit_ack(
            "alert:ack",
            vec![json!({ "alertId": id, "comment": padded })],
        )
        .await
        .remove(0);
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["alert"]["acknowledgedComment"], comment);
    let heard = other.next_event("alert:acknowledged").await.remove(0);
    assert_eq!(heard["alertId"], id);
    assert_eq!(heard["acknowledgedComment"], comment);
    let open = other.emit_ack("get:alerts", vec![]).await.remove(0);
    assert_eq!(open["alerts"][0]["acknowledgedComment"], comment, "{open}");
    service.stop().await;

    let service = Service::start(&config).await;
    let c = connected(&driver, &service, auth("o1", "viewer")).await;
    let open = c.emit_ack("get:alerts", vec![]).await.remove(0);
    assert_eq!(open["alerts"][0]["alertId"], id, "{open}");
    assert_eq!(open["alerts"][0]["acknowledgedComment"], comment, "{open}");
    service.stop().await;
}

/// Every alert event is POSTed as JSON to the configured webhook, and /health counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_receive_alert_events_and_health_counts_them() {
    let (url, mut posts) = webhook_receiver().await;
    let broker = Broker::start().await;
    let config = alerts_config(&broker).alerts("webhooks", vec![url]);
    let service = Service::start(&config).await;
    let publisher = Publisher::connect(&broker).await;
    publish(&publisher, -3.0).await;

    let mut got = Vec::new();
    while got.len() < 2 {
        let body = tokio::time::timeout(Duration::from_secs(10), posts.recv())
            .await
            .expect("webhook POST within 10 s")
            .unwrap();
        got.push(body);
    }
    let names: BTreeSet<&str> = got.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["alert:triggered", "unit:state:changed"].into());
    let triggered = got
        .iter()
        .find(|v| v["event"] == "alert:triggered")
        .unwrap();
    assert_eq!(triggered["data"]["thresholdViolated"], "min");
    assert_eq!(triggered["data"]["organizationId"], "o1");

    // The receiver hands a body over before the sender has read the 204 and counted it.
    let (_, health) = service
        .get_until(
            "/health",
            None,
            "both webhook deliveries counted",
            |_, h| h["alerts"]["webhooks"]["delivered"] == 2,
        )
        .await;
    let alerts = &health["alerts"];
    assert_eq!(alerts["status"], "ok", "{alerts}");
    assert_eq!(alerts["open"]["total"], 1);
    assert_eq!(alerts["open"]["byType"]["temperature_excursion"], 1);
    assert_eq!(alerts["open"]["bySeverity"]["warning"], 1);
    assert_eq!(alerts["units"]["excursion"], 1);
    assert_eq!(alerts["webhooks"]["delivered"], 2);
    assert_eq!(alerts["webhooks"]["dropped"], 0);
    service.stop().await;
}

/// `check-config` refuses broken alert settings with the file and key (or unit) at fault, and
/// accepts rules that inherit into a valid combination.
#[test]
fn check_config_names_broken_alert_rules() {
    let base = TestConfig::for_url("mqtt://127.0.0.1:1");
    let org = "[[org]]\nid = \"o\"\ntemp_max = 4\n[[site]]\nid = \"s\"\norg = \"o\"\n";
    let unit = |keys: &str| format!("{org}[[unit]]\nid = \"u1\"\nsite = \"s\"\n{keys}\n");
    let cases: Vec<(TestConfig, String, Vec<&str>)> = vec![
        (
            base.clone()
                .alerts("webhooks", vec!["ftp://hooks.example.com/x"]),
            unit(""),
            vec![
                "sensorcast.toml",
                "alerts.webhooks[0]",
                "only http:// and https://",
            ],
        ),
        (
            base.clone().alerts("webhook_ca_file", "no-such-ca.pem"),
            unit(""),
            vec!["sensorcast.toml", "alerts.webhook_ca_file", "cannot read"],
        ),
        (
            base.clone().alerts("confirm_after", "soon"),
            unit(""),
            vec!["sensorcast.toml", "line ", "\"soon\""],
        ),
        (
            base.clone(),
            unit("temp_min = 9\ntemp_max = 2"),
            vec!["registry.toml", "unit[0].temp_min", "below temp_max"],
        ),
        (
            base.clone(),
            unit("restore_after = 0"),
            vec!["registry.toml", "line 10", "1 or more"],
        ),
        (
            base.clone(),
            unit("temp_min = 3.8"),
            vec!["registry.toml", "\"u1\"", "hysteresis"],
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
    // https webhooks are accepted.
    let dir = base
        .alerts("webhooks", vec!["https://hooks.example.com/x"])
        .registry_text(&unit("temp_min = 1"))
        .write_dir();
    let (code, out) = check_config(&dir.path().join("sensorcast.toml"), &[]);
    assert_eq!(code, Some(0), "{out}");
}
