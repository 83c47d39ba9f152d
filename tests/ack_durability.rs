//! Acknowledgements are confirmed only once stored (issue 12, item 14), through the real
//! binary, real signals and a real state directory: an `alert:ack` answered ok survives a
//! SIGKILL sent right after the answer; a temporary file a crash left behind is removed at
//! start; a state directory that cannot be written makes `/health` degraded, acknowledgements
//! are answered "not stored", and both recover once the directory can be written again.

mod common;

use common::broker::{Broker, Publisher};
use common::config::{TestConfig, TestRegistry};
use common::jsclient::JsDriver;
use common::service::{auth, connected, token, Service};
use common::wait::{check, eventually, WAIT};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// Rounds of ack-then-SIGKILL, one unit each.
const ROUNDS: usize = 3;

/// The standard registry plus units k1..kN on site s1 with sensors kprobe-1..N, and a fridge
/// rule (0..8 °C) that does not escalate during the test.
fn config(broker: &Broker, state: &Path) -> TestConfig {
    let mut registry = TestRegistry::standard();
    for i in 1..=ROUNDS {
        registry = registry
            .unit(&format!("k{i}"), "s1")
            .sensor(&format!("kprobe-{i}"), &format!("k{i}"));
    }
    TestConfig::new(broker)
        .registry(&registry)
        .alerts("temp_min", 0)
        .alerts("temp_max", 8)
        .alerts("confirm_after", "10m")
        .state_dir(state)
}

fn staff() -> Value {
    json!({ "token": token(json!({ "org_id": "o1", "role": "staff", "sub": "staff-9" })) })
}

async fn excursion(p: &Publisher, sensor: &str) {
    let body = json!({ "temperature": 12.0 }).to_string();
    p.publish(&format!("sensors/{sensor}"), body, 1).await;
}

/// The open alerts `get:alerts` lists, by id.
async fn open_alerts(service: &Service, driver: &JsDriver) -> Vec<Value> {
    let c = connected(driver, service, auth("o1", "viewer")).await;
    let open = c.emit_ack("get:alerts", vec![]).await.remove(0);
    assert_eq!(open["ok"], true, "{open}");
    c.close().await;
    open["alerts"].as_array().unwrap().clone()
}

/// Several rounds: an alert is acknowledged, the binary is SIGKILLed the moment the answer
/// arrives, and the next start on the same state directory still has the acknowledgement (who
/// and when, exactly as answered). A stale `alerts.json.tmp` is removed at the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_answered_ok_survives_a_sigkill_right_after() {
    let broker = Broker::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = config(&broker, state.path());
    let publisher = Publisher::connect(&broker).await;
    let driver = JsDriver::spawn().await;
    let mut confirmed: Vec<Value> = Vec::new();

    for round in 1..=ROUNDS {
        let tmp = state.path().join("alerts.json.tmp");
        if round > 1 {
            std::fs::write(&tmp, b"{\"half\": ").unwrap();
        }
        let mut service = Service::start_binary(&config, &[]).await;
        assert!(!tmp.exists(), "round {round}: the stale temp file is gone");
        let open = open_alerts(&service, &driver).await;
        for want in &confirmed {
            let got = open
                .iter()
                .find(|a| a["alertId"] == want["alertId"])
                .unwrap_or_else(|| panic!("round {round}: {want} still open in {open:?}"));
            assert_eq!(got["acknowledgedBy"], "staff-9", "round {round}: {got}");
            assert_eq!(
                got["acknowledgedAt"], want["acknowledgedAt"],
                "round {round}: {got}"
            );
        }

        let c = connected(&driver, &service, staff()).await;
        excursion(&publisher, &format!("kprobe-{round}")).await;
        let alert = c.next_event("alert:triggered").await.remove(0);
        assert_eq!(alert["unitId"], format!("k{round}"));
        let answer = c
            .emit_ack("alert:ack", vec![json!({ "alertId": alert["alertId"] })])
            .await
            .remove(0);
        service.signal("KILL");
        assert_eq!(answer["ok"], true, "round {round}: {answer}");
        let status = service.child().wait().await.unwrap();
        assert!(!status.success(), "killed: {status:?}");
        confirmed.push(answer["alert"].clone());
        c.close().await;
    }

    let service = Service::start_binary(&config, &[]).await;
    let open = open_alerts(&service, &driver).await;
    for want in &confirmed {
        let got = open.iter().find(|a| a["alertId"] == want["alertId"]);
        let got = got.unwrap_or_else(|| panic!("{want} in {open:?}"));
        assert_eq!(
            (&got["acknowledgedBy"], &got["acknowledgedAt"]),
            (&want["acknowledgedBy"], &want["acknowledgedAt"])
        );
    }
    service.stop().await;
}

/// The state directory replaced by a file (a write fails for root too): `/health` is degraded
/// at the top level with the store's error, an acknowledgement is answered "not stored, try
/// again" (not a false ok); with the directory back, the retried write succeeds, `/health` is
/// ok again and the state file holds the acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_state_dir_degrades_health_refuses_acks_and_recovers() {
    let broker = Broker::start().await;
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let config = config(&broker, &state);
    let publisher = Publisher::connect(&broker).await;
    let service = Service::start(&config).await;
    let driver = JsDriver::spawn().await;
    let c = connected(&driver, &service, staff()).await;

    excursion(&publisher, "kprobe-1").await;
    let id = c.next_event("alert:triggered").await[0]["alertId"].clone();
    service
        .get_until("/health", None, "the alert written", |code, h| {
            code == 200 && h["alerts"]["store"]["writes"].as_u64() >= Some(1)
        })
        .await;

    std::fs::remove_dir_all(&state).unwrap();
    std::fs::write(&state, b"not a directory").unwrap();
    let answer = c
        .emit_ack_within(
            "alert:ack",
            vec![json!({ "alertId": id })],
            Duration::from_secs(10),
        )
        .await
        .expect("answered");
    assert_eq!(
        answer[0],
        json!({ "ok": false, "error": "Acknowledgement not stored, try again" })
    );
    // Degraded at the top; still 200, like a history store in trouble: live delivery goes on,
    // so the instance stays in its load balancer.
    let (code, h) = service.get("/health", None).await;
    assert_eq!((code, &h["status"]), (200, &json!("degraded")), "{h}");
    assert_eq!(h["alerts"]["status"], "error", "{h}");
    assert!(
        h["alerts"]["store"]["writeErrors"].as_u64() >= Some(1),
        "{h}"
    );
    assert_eq!(h["alerts"]["store"]["acksNotStored"], 1, "{h}");

    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir(&state).unwrap();
    service
        .get_until("/health", None, "health ok again", |code, h| {
            code == 200 && h["status"] == "ok" && h["alerts"]["status"] == "ok"
        })
        .await;
    eventually(WAIT, "the acknowledgement in the state file", || async {
        let text = std::fs::read_to_string(state.join("alerts.json")).unwrap_or_default();
        check(text.contains("staff-9"), text)
    })
    .await;
    // Acknowledging again is now confirmed.
    let again = c
        .emit_ack("alert:ack", vec![json!({ "alertId": id })])
        .await
        .remove(0);
    assert_eq!(again["ok"], true, "{again}");
    service.stop().await;
}
