//! The history store over HTTP end to end: readings published to a private mosquitto, stored
//! by sensorcast (committing every 200 ms), and read back through
//! `/api/units/{unitId}/readings` (JSON and CSV, raw and rolled up), the HACCP report
//! `/api/reports/haccp` (with an alert acknowledged over Socket.io), the status page's chart
//! and `/metrics`. And who may read what: another organization, another site, a viewer.

mod common;

use common::broker::{Broker, Publisher};
use common::config::{TestConfig, TestRegistry};
use common::http::{http_get_raw, sample, RawResponse};
use common::jsclient::JsDriver;
use common::service::{connected, token, Service};
use common::wait::{eventually, WAIT};
use serde_json::{json, Value};

/// The test config with a short commit interval; site s1 also holds u4 (no sensor) and has a
/// fridge's limits (0..8 °C).
fn config(broker: &Broker) -> TestConfig {
    let registry = TestRegistry::standard()
        .unit("u4", "s1")
        .set("site", "s1", "temp_min", 0.0)
        .set("site", "s1", "temp_max", 8.0);
    TestConfig::new(broker)
        .registry(&registry)
        .set("storage", "commit_interval", "200ms")
}

fn bearer(org: &str, role: &str) -> String {
    token(json!({ "org_id": org, "role": role }))
}

async fn get(service: &Service, path: &str, token: &str) -> RawResponse {
    let auth = format!("Bearer {token}");
    http_get_raw(service.addr, path, &[("Authorization", &auth)]).await
}

fn body(r: &RawResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

/// The rows of a CSV body (header first).
fn rows(csv_text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv_text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect()
}

async fn publish(p: &Publisher, probe: &str, temperature: f64) {
    let body = json!({ "temperature": temperature }).to_string();
    p.publish(&format!("sensors/{probe}"), body, 1).await;
}

/// Readings come back as published, in order, raw (JSON and CSV) and rolled up; the status
/// page draws a chart for the unit that has readings and none for the one without; /metrics
/// counts what was stored. Another organization's, another site's and an unknown unit are
/// `Access denied` (403); bad parameters are 400 with the reason, no token 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_come_back_in_order_as_json_csv_and_rollups() {
    let broker = Broker::start().await;
    let service = Service::start(&config(&broker)).await;
    let publisher = Publisher::connect(&broker).await;
    let sent = [3.0, 4.5, 2.5, 5.0];
    for t in sent {
        publish(&publisher, "probe-1", t).await;
    }

    let viewer = bearer("o1", "viewer");
    let raw = eventually(WAIT, "4 readings of u1 stored", || async {
        let r = get(&service, "/api/units/u1/readings?resolution=raw", &viewer).await;
        let b = body(&r);
        match b["points"].as_array() {
            Some(p) if r.status == 200 && p.len() == sent.len() => Ok(b),
            _ => Err(format!("{} {}", r.status, r.body)),
        }
    })
    .await;
    assert_eq!(
        (
            &raw["ok"],
            &raw["unitId"],
            &raw["resolution"],
            &raw["truncated"]
        ),
        (&json!(true), &json!("u1"), &json!("raw"), &json!(false))
    );
    let points = raw["points"].as_array().unwrap();
    let temps: Vec<f64> = points
        .iter()
        .map(|p| p["temperature"].as_f64().unwrap())
        .collect();
    assert_eq!(temps, sent);
    let seqs: Vec<u64> = points.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    let csv = get(
        &service,
        "/api/units/u1/readings?resolution=raw&format=csv",
        &viewer,
    )
    .await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        csv.header("content-disposition"),
        Some("attachment; filename=\"u1-raw.csv\"")
    );
    let table = rows(&csv.body);
    assert_eq!(
        table[0],
        [
            "receivedAt",
            "recordedAt",
            "seq",
            "deviceId",
            "temperature",
            "humidity",
            "battery",
            "doorOpen"
        ]
    );
    let csv_temps: Vec<f64> = table[1..].iter().map(|r| r[4].parse().unwrap()).collect();
    assert_eq!(csv_temps, sent);
    assert_eq!(table[1][2], seqs[0].to_string());
    assert_eq!(table[1][3], "probe-1");

    // Rolled up: counts add up to what was sent, min and max are its extremes.
    for res in ["1m", "15m", "1h"] {
        let r = get(
            &service,
            &format!("/api/units/u1/readings?resolution={res}"),
            &viewer,
        )
        .await;
        let b = body(&r);
        assert_eq!(
            (r.status, &b["resolution"]),
            (200, &json!(res)),
            "{}",
            r.body
        );
        let p = b["points"].as_array().unwrap();
        let count: u64 = p.iter().map(|p| p["count"].as_u64().unwrap()).sum();
        let min = p
            .iter()
            .map(|p| p["min"].as_f64().unwrap())
            .fold(f64::MAX, f64::min);
        let max = p
            .iter()
            .map(|p| p["max"].as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert_eq!((count, min, max), (4, 2.5, 5.0), "{res}: {}", r.body);
    }
    let r = get(
        &service,
        "/api/units/u1/readings?resolution=1h&format=csv",
        &viewer,
    )
    .await;
    let table = rows(&r.body);
    assert_eq!(
        table[0],
        ["t", "count", "min", "max", "mean", "humidityMean"]
    );
    let count: u64 = table[1..]
        .iter()
        .map(|r| r[1].parse::<u64>().unwrap())
        .sum();
    assert_eq!(count, 4, "{}", r.body);

    // Who may read what.
    let denied = json!({ "error": "Access denied" });
    for (path, token) in [
        ("/api/units/u1/readings", bearer("o2", "owner")),
        ("/api/units/nope/readings", bearer("o1", "owner")),
        (
            "/api/units/u1/readings",
            token(json!({ "org_id": "o1", "role": "viewer", "site_ids": ["s2"] })),
        ),
    ] {
        let r = get(&service, path, &token).await;
        assert_eq!((r.status, body(&r)), (403, denied.clone()), "{path}");
    }
    let s2_viewer = token(json!({ "org_id": "o1", "role": "viewer", "site_ids": ["s2"] }));
    let r = get(&service, "/api/units/u2/readings", &s2_viewer).await;
    assert_eq!(
        (r.status, &body(&r)["ok"]),
        (200, &json!(true)),
        "{}",
        r.body
    );
    for (query, error) in [
        (
            "resolution=5m",
            "Invalid arguments: resolution must be raw, 1m, 15m or 1h",
        ),
        (
            "from=yesterday",
            "Invalid arguments: from must be an ISO 8601 time (2026-12-07T10:00:00Z)",
        ),
        (
            "format=xml",
            "Invalid arguments: format must be json or csv",
        ),
    ] {
        let r = get(
            &service,
            &format!("/api/units/u1/readings?{query}"),
            &viewer,
        )
        .await;
        assert_eq!(
            (r.status, body(&r)),
            (400, json!({ "error": error })),
            "{query}"
        );
    }
    let r = http_get_raw(service.addr, "/api/units/u1/readings", &[]).await;
    assert_eq!(r.status, 401, "{}", r.body);

    // The status page charts u1's last 24 h and nothing for the units without readings.
    let page = get(&service, "/", &bearer("o1", "owner")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body.matches("<svg").count(), 1, "{}", page.body);
    assert!(
        page.body.contains("Last 24 h: 2.5 to 5 °C"),
        "{}",
        page.body
    );

    let metrics = http_get_raw(service.metrics_addr(), "/metrics", &[]).await;
    let m = &metrics.body;
    assert!(
        sample(m, "sensorcast_history_readings_stored_total ") >= 4.0,
        "{m}"
    );
    assert!(sample(m, "sensorcast_history_commits_total ") >= 1.0, "{m}");
    assert_eq!(sample(m, "sensorcast_history_readings_dropped_total "), 0.0);
    assert_eq!(sample(m, "sensorcast_history_commit_errors_total "), 0.0);
    assert_eq!(sample(m, "sensorcast_history_pruned_total "), 0.0);
    assert_eq!(sample(m, "sensorcast_history_damaged_total "), 0.0);
    assert!(sample(m, "sensorcast_history_bytes ") > 0.0, "{m}");
}

/// The HACCP report has a row per unit of the site for today with the day's count, min, max
/// and mean, the minutes out of range, and the alert with who acknowledged it; it is an owner's
/// or admin's, of their own organization's and allowed sites only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haccp_report_rows_per_unit_with_the_acknowledged_alert() {
    let broker = Broker::start().await;
    let service = Service::start(&config(&broker)).await;
    let driver = JsDriver::spawn().await;
    let staff_token = token(json!({ "org_id": "o1", "role": "staff", "sub": "staff-7" }));
    let staff = connected(&driver, &service, json!({ "token": staff_token })).await;

    let publisher = Publisher::connect(&broker).await;
    publish(&publisher, "probe-1", 4.0).await;
    publish(&publisher, "probe-1", 9.5).await;
    let id = staff.next_event("alert:triggered").await[0]["alertId"].clone();
    let ack = staff
        .emit_ack("alert:ack", vec![json!({ "alertId": id })])
        .await;
    assert_eq!(ack[0]["ok"], true, "{ack:?}");
    publish(&publisher, "probe-1", 5.0).await;
    publish(&publisher, "probe-2", 3.0).await;

    let owner = bearer("o1", "owner");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let report = eventually(
        WAIT,
        "today's u1 row with the acknowledged alert",
        || async {
            let r = get(&service, "/api/reports/haccp?siteId=s1", &owner).await;
            let found = rows(&r.body)
                .into_iter()
                .find(|row| row[0] == today && row[1] == "u1");
            match found {
                Some(row) if row[3] == "3" && row[8].contains("acknowledged by staff-7") => Ok(r),
                _ => Err(format!("{} {}", r.status, r.body)),
            }
        },
    )
    .await;
    assert_eq!(
        report.header("content-type"),
        Some("text/csv; charset=utf-8")
    );
    assert!(
        report
            .header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment; filename=\"haccp-s1-")),
        "{:?}",
        report.headers
    );
    let table = rows(&report.body);
    assert_eq!(
        table[0],
        [
            "date",
            "unitId",
            "unitName",
            "readings",
            "min",
            "max",
            "mean",
            "minutesOutOfRange",
            "alerts"
        ]
    );
    // The last 7 days, today included, for each unit of s1 (u1, u4); none of s2's u2.
    assert_eq!(table.len(), 1 + 2 * 7, "{}", report.body);
    assert!(table[1..].iter().all(|r| r[1] == "u1" || r[1] == "u4"));
    let u1 = table
        .iter()
        .find(|r| r[0] == today && r[1] == "u1")
        .unwrap();
    assert_eq!(&u1[2..7], ["u1", "3", "4", "9.5", "6.17"], "{u1:?}");
    assert!(u1[7].parse::<u64>().unwrap() >= 1, "{u1:?}");
    assert!(u1[8].starts_with("temperature_excursion "), "{u1:?}");
    let u4 = table
        .iter()
        .find(|r| r[0] == today && r[1] == "u4")
        .unwrap();
    assert_eq!(&u4[3..9], ["0", "", "", "", "0", ""], "{u4:?}");

    // An explicit day: that day only.
    let r = get(
        &service,
        &format!("/api/reports/haccp?siteId=s1&from={today}&to={today}"),
        &owner,
    )
    .await;
    assert_eq!(rows(&r.body).len(), 3, "{}", r.body);

    let forbidden = json!({ "error": "Forbidden: owner or admin role required" });
    let denied = json!({ "error": "Access denied" });
    let s2_owner = token(json!({ "org_id": "o1", "role": "owner", "site_ids": ["s2"] }));
    for (path, token, status, error) in [
        ("siteId=s1", bearer("o1", "viewer"), 403, forbidden.clone()),
        ("siteId=s1", bearer("o1", "staff"), 403, forbidden),
        ("siteId=s1", bearer("o2", "owner"), 403, denied.clone()),
        ("siteId=s1", s2_owner, 403, denied.clone()),
        ("siteId=nope", owner.clone(), 403, denied),
        (
            "from=2026-01-01",
            owner.clone(),
            400,
            json!({ "error": "Invalid arguments: expected siteId" }),
        ),
        (
            "siteId=s1&from=2024-01-01&to=2026-01-01",
            owner.clone(),
            400,
            json!({ "error": "Invalid arguments: at most 400 days at once" }),
        ),
        (
            "siteId=s1&from=monday",
            owner.clone(),
            400,
            json!({
                "error": "Invalid arguments: from must be a date (2026-12-07) or an ISO 8601 time"
            }),
        ),
    ] {
        let r = get(&service, &format!("/api/reports/haccp?{path}"), &token).await;
        assert_eq!((r.status, body(&r)), (status, error), "{path}");
    }
}

/// Without a history store (`storage.enabled = false`) both routes answer 503 to whoever may
/// see the unit or site (and still 403 to whoever may not); the status page draws no chart and
/// /metrics has no history family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_history_is_unavailable() {
    let broker = Broker::start().await;
    let service = Service::start(&config(&broker).set("storage", "enabled", false)).await;
    let off = json!({ "error": "History is not enabled on this server" });
    let r = get(&service, "/api/units/u1/readings", &bearer("o1", "viewer")).await;
    assert_eq!((r.status, body(&r)), (503, off.clone()), "{}", r.body);
    let r = get(&service, "/api/units/u1/readings", &bearer("o2", "viewer")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = get(
        &service,
        "/api/reports/haccp?siteId=s1",
        &bearer("o1", "admin"),
    )
    .await;
    assert_eq!((r.status, body(&r)), (503, off), "{}", r.body);
    let page = get(&service, "/", &bearer("o1", "owner")).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<svg"), "{}", page.body);
    let metrics = http_get_raw(service.metrics_addr(), "/metrics", &[]).await;
    assert!(
        !metrics.body.contains("sensorcast_history_"),
        "{}",
        metrics.body
    );
}
