//! Durable history end to end, with a private mosquitto, the release/debug binary, real
//! signals and real files: what was committed survives a SIGTERM restart and a SIGKILL, a
//! dashboard that resumes with `since` from before the restart gets `recovered: true` and
//! exactly what it missed, `get:latest` answers from the store at once after a start, and
//! `get:history` answers with the same tenant checks as `subscribe:unit`.

mod common;

use common::broker::{Broker, Publisher};
use common::config::TestConfig;
use common::jsclient::JsDriver;
use common::service::{auth, connected, subscribed, Service};
use serde_json::{json, Value};
use std::time::Duration;

/// Stored readings of probe-1 (unit u1, site s1, org o1) are committed every 200 ms here.
fn config(broker: &Broker, state: &std::path::Path) -> TestConfig {
    TestConfig::new(broker)
        .state_dir(state)
        .set("storage", "commit_interval", "200ms")
}

async fn publish(p: &Publisher, temperature: f64) {
    let body = json!({ "temperature": temperature }).to_string();
    p.publish("sensors/probe-1", body, 1).await;
}

/// Publishes `temps` and returns the readings a socket subscribed to u1 received for them.
async fn publish_all(c: &common::jsclient::JsClient, p: &Publisher, temps: &[f64]) -> Vec<Value> {
    let mut got = Vec::new();
    for t in temps {
        publish(p, *t).await;
        let r = c.next_event("sensor:reading").await.remove(0);
        assert_eq!(r["temperature"], *t);
        got.push(r);
    }
    got
}

async fn stored(service: &Service, n: u64) {
    service
        .get_until("/health", None, "readings committed", |_, h| {
            h["checks"]["storage"]["readingsStored"].as_u64() >= Some(n)
        })
        .await;
}

fn seqs(events: &[Vec<Value>]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e[0]["seq"].as_u64().unwrap())
        .collect()
}

/// SIGTERM, start again on the same state directory: the epoch is the same, `get:latest`
/// answers the last reading before any new one arrives, seqs go on, and a resume from the
/// third reading gets `recovered: true` with exactly the readings after it, stored and new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_keeps_history_and_a_resume_recovers_exactly_what_was_missed() {
    let broker = Broker::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = config(&broker, state.path());
    let publisher = Publisher::connect(&broker).await;
    let driver = JsDriver::spawn().await;

    let service = Service::start_binary(&config, &[]).await;
    let c = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    let before = publish_all(&c, &publisher, &[3.0, 3.1, 3.2, 3.3, 3.4]).await;
    let epoch = before[0]["id"]
        .as_str()
        .unwrap()
        .split("-u1-")
        .next()
        .unwrap()
        .to_owned();
    c.close().await;
    service.stop().await;

    let service = Service::start_binary(&config, &[]).await;
    let (_, health) = service.get("/health", None).await;
    assert_eq!(health["epoch"], epoch.as_str(), "the epoch goes on");
    let viewer = connected(&driver, &service, auth("o1", "viewer")).await;
    let latest = viewer
        .emit_ack("get:latest", vec![json!("u1")])
        .await
        .remove(0);
    assert_eq!(latest["seq"], 5, "latest from the store: {latest}");
    assert_eq!(latest["id"], before[4]["id"]);
    assert_eq!(latest["temperature"], 3.4);
    // The status page shows it too, before any new reading.
    let owner = format!(
        "Bearer {}",
        common::service::token(json!({ "org_id": "o1", "role": "owner" }))
    );
    let page = common::http::http_get_raw(service.addr, "/", &[("Authorization", &owner)]).await;
    assert_eq!(page.status, 200);

    // Two more readings after the restart, seen by a socket subscribed now.
    let watcher = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    let after = publish_all(&watcher, &publisher, &[3.5, 3.6]).await;
    assert_eq!(after[0]["seq"], 6, "seqs go on after a clean stop");

    let r = connected(&driver, &service, auth("o1", "viewer")).await;
    let since = json!({ "unitId": "u1", "since": { "epoch": epoch, "seq": 3 } });
    let ack = r.emit_ack("subscribe:unit", vec![since]).await.remove(0);
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["recovered"], true, "{ack}");
    let mut replay = Vec::new();
    while let Some(e) = r
        .next_event_timeout("sensor:reading", Duration::from_millis(500))
        .await
    {
        replay.push(e);
    }
    assert_eq!(seqs(&replay), vec![4, 5, 6, 7]);
    assert_eq!(
        replay[0][0]["id"], before[3]["id"],
        "the stored reading itself"
    );
    assert_eq!(replay[1][0]["receivedAt"], before[4]["receivedAt"]);
    service.stop().await;
}

/// SIGKILL after the readings were committed: nothing committed is lost, the store opens
/// (never corrupt), the next reading's seq skips past any number that could have been given
/// out uncommitted, and a resume from before the kill still recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_loses_nothing_committed_and_resumes_still_recover() {
    let broker = Broker::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = config(&broker, state.path());
    let publisher = Publisher::connect(&broker).await;
    let driver = JsDriver::spawn().await;

    let mut service = Service::start_binary(&config, &[]).await;
    let c = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    let temps: Vec<f64> = (0..20).map(|i| 2.0 + i as f64 / 10.0).collect();
    let before = publish_all(&c, &publisher, &temps).await;
    stored(&service, 20).await;
    let epoch = before[0]["id"]
        .as_str()
        .unwrap()
        .split("-u1-")
        .next()
        .unwrap()
        .to_owned();
    service.signal("KILL");
    let _ = service.child().wait().await;
    c.close().await;

    let service = Service::start_binary(&config, &[]).await;
    let (_, health) = service.get("/health", None).await;
    assert_eq!(health["checks"]["storage"]["status"], "ok", "{health}");
    assert_eq!(health["epoch"], epoch.as_str());
    let viewer = connected(&driver, &service, auth("o1", "viewer")).await;
    let h = viewer
        .emit_ack(
            "get:history",
            vec![json!({ "unitId": "u1", "resolution": "raw" })],
        )
        .await
        .remove(0);
    assert_eq!(h["ok"], true, "{h}");
    let points = h["points"].as_array().unwrap();
    assert_eq!(points.len(), 20, "every committed reading is there");
    assert_eq!(points[0]["id"], before[0]["id"]);
    assert_eq!(points[19]["temperature"], before[19]["temperature"]);

    let watcher = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    let next = publish_all(&watcher, &publisher, &[9.9]).await;
    let seq = next[0]["seq"].as_u64().unwrap();
    assert!(
        seq > 1000,
        "the seq skipped past what may have been lost: {seq}"
    );

    let r = connected(&driver, &service, auth("o1", "viewer")).await;
    let since = json!({ "unitId": "u1", "since": { "epoch": epoch, "seq": 18 } });
    let ack = r.emit_ack("subscribe:unit", vec![since]).await.remove(0);
    assert_eq!(ack["recovered"], true, "{ack}");
    let mut replay = Vec::new();
    while let Some(e) = r
        .next_event_timeout("sensor:reading", Duration::from_millis(500))
        .await
    {
        replay.push(e);
    }
    assert_eq!(seqs(&replay), vec![19, 20, seq]);
    service.stop().await;
}

/// `get:history` gives what was published, in order, raw and rolled up; another
/// organization's unit, another site's, and an unknown one are `Access denied` alike; bad
/// arguments get a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_history_answers_in_order_with_tenant_checks() {
    let broker = Broker::start().await;
    let state = tempfile::tempdir().unwrap();
    let service = Service::start(&config(&broker, state.path())).await;
    let publisher = Publisher::connect(&broker).await;
    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    let temps = [4.0, 6.0, 5.0, 1.0, 9.0];
    publish_all(&c, &publisher, &temps).await;
    stored(&service, 5).await;

    let ask = |args: Value| {
        let c = &c;
        async move { c.emit_ack("get:history", vec![args]).await.remove(0) }
    };
    let raw = ask(json!({ "unitId": "u1", "resolution": "raw" })).await;
    assert_eq!(raw["ok"], true, "{raw}");
    assert_eq!(raw["unitId"], "u1");
    assert_eq!(raw["truncated"], false);
    let got: Vec<f64> = raw["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["temperature"].as_f64().unwrap())
        .collect();
    assert_eq!(got, temps, "in order, from memory's queue or the store");

    let hourly = ask(json!({ "unitId": "u1", "resolution": "1h" })).await;
    let points = hourly["points"].as_array().unwrap();
    let count: u64 = points.iter().map(|p| p["count"].as_u64().unwrap()).sum();
    assert_eq!(count, 5, "{hourly}");
    let min = points
        .iter()
        .map(|p| p["min"].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    let max = points
        .iter()
        .map(|p| p["max"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!((min, max), (1.0, 9.0));
    let short = ask(json!({ "unitId": "u1" })).await;
    assert_eq!(
        short["resolution"], "1m",
        "24 h by default, at 1 min: {short}"
    );

    let other_org = connected(&driver, &service, auth("o2", "owner")).await;
    let denied = other_org
        .emit_ack("get:history", vec![json!({ "unitId": "u1" })])
        .await;
    assert_eq!(denied[0], json!({ "ok": false, "error": "Access denied" }));
    let unknown = ask(json!({ "unitId": "no-such-unit" })).await;
    assert_eq!(unknown, json!({ "ok": false, "error": "Access denied" }));
    let other_site = connected(
        &driver,
        &service,
        json!({ "token": common::service::token(json!({ "org_id": "o1", "role": "owner", "site_ids": ["s2"] })) }),
    )
    .await;
    let denied = other_site
        .emit_ack("get:history", vec![json!({ "unitId": "u1" })])
        .await;
    assert_eq!(denied[0]["error"], "Access denied");

    let bad = ask(json!({ "unitId": "u1", "from": "yesterday" })).await;
    assert_eq!(bad["ok"], false);
    assert!(bad["error"].as_str().unwrap().contains("ISO 8601"), "{bad}");
    let bad = ask(json!({ "unitId": "u1", "resolution": "5m" })).await;
    assert!(
        bad["error"].as_str().unwrap().contains("resolution"),
        "{bad}"
    );
    let bad = ask(json!("u1")).await;
    assert_eq!(bad["ok"], false);
    service.stop().await;
}
