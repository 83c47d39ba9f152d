//! Tests of the status page's HTML.

use super::*;
use crate::web::status::page::{AlertRow, Sockets, UnitRow};
use chrono::TimeZone;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
}

#[test]
fn numbers_and_durations_read_well() {
    assert_eq!(display_number(-18.25), "-18.25");
    assert_eq!(display_number(4.0), "4");
    assert_eq!(display_number(3.756), "3.76");
    assert_eq!(display_number(-0.001), "0");
    assert_eq!(human_duration(Duration::from_secs(5)), "5 s");
    assert_eq!(human_duration(Duration::from_secs(600)), "10 min");
    assert_eq!(human_duration(Duration::from_secs(3 * 86_400)), "3 d");
}

#[test]
fn page_escapes_everything_that_comes_from_outside() {
    let hostile = "<script>alert(1)</script>";
    let data = PageData {
        now: t(100),
        version: "0.1.0",
        epoch: "e".into(),
        uptime: Duration::from_secs(100),
        org: "o1".into(),
        org_name: Some(hostile.into()),
        broker: Broker {
            connected: false,
            subscribed: false,
            reconnects: 1,
            error: Some(hostile.into()),
        },
        units: vec![UnitRow {
            unit_id: "u1".into(),
            unit_name: Some(hostile.into()),
            site: hostile.into(),
            state: "no data".into(),
            latest: None,
            door: None,
            humidity_alert: false,
            chart: None,
        }],
        alerts: vec![AlertRow {
            unit: hostile.into(),
            alert_type: hostile.into(),
            severity: "x\" onmouseover=\"alert(2)".into(),
            message: hostile.into(),
            triggered_at: t(40),
        }],
        unmapped: vec![crate::pipeline::hub::UnmappedSensor {
            sensor_id: hostile.into(),
            topic: hostile.into(),
            format: "json",
            first_seen: t(0),
            last_seen: t(90),
            count: 2,
        }],
        sockets: Sockets {
            connected: 0,
            of_org: 0,
            slow: 0,
        },
        cluster: None,
    };
    let page = render(&data);
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // A quote cannot end the class attribute of a badge.
    assert!(!page.contains("\" onmouseover"), "{page}");
    assert!(page.contains("class=\"pill x&quot; onmouseover=&quot;alert(2)\""));
    assert!(page.contains("not connected") && page.contains("10 s ago"));
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
}

#[test]
fn units_show_their_door_and_a_humidity_out_of_range() {
    let door = |open, since| UnitDoor {
        unit_id: "u1".into(),
        site_id: "s1".into(),
        organization_id: "o1".into(),
        device_id: "door-1".into(),
        open,
        since,
        recorded_at: since,
    };
    assert_eq!(
        door_cell(t(200), Some(&door(true, t(20)))).into_string(),
        "<span class=\"pill open\">open 3 min</span>"
    );
    assert_eq!(
        door_cell(t(200), Some(&door(false, t(20)))).into_string(),
        "closed"
    );
    assert_eq!(door_cell(t(200), None).into_string(), "–");
    let reading = crate::core::reading::SensorReading {
        id: "e-u1-1".into(),
        seq: 1,
        unit_id: "u1".into(),
        site_id: "s1".into(),
        organization_id: "o1".into(),
        device_id: "probe".into(),
        temperature: 4.0,
        humidity: Some(91.0),
        battery: None,
        signal_strength: None,
        recorded_at: t(190),
        received_at: t(190),
        source: "json",
        extra: Vec::new(),
        retained: false,
        door: None,
    };
    let row = UnitRow {
        unit_id: "u1".into(),
        unit_name: None,
        site: "s1".into(),
        state: "ok".into(),
        latest: Some(std::sync::Arc::new(reading)),
        door: Some(door(true, t(20))),
        humidity_alert: true,
        chart: None,
    };
    let units = units_section(&PageData {
        units: vec![row],
        ..empty_page()
    })
    .into_string();
    assert!(units.contains("<th>Door</th>"), "{units}");
    assert!(
        units.contains("91 % <span class=\"pill excursion\">out of range</span>"),
        "{units}"
    );
    assert!(units.contains("open 3 min"), "{units}");
}

/// A unit with stored readings has its 24 h chart in its row; one without has none.
#[test]
fn units_with_history_have_a_chart() {
    let row = |id: &str, chart| UnitRow {
        unit_id: id.into(),
        unit_name: None,
        site: "s1".into(),
        state: "ok".into(),
        latest: None,
        door: None,
        humidity_alert: false,
        chart,
    };
    let chart = crate::web::status::chart::Chart {
        from_ms: 0,
        to_ms: 86_400_000,
        points: vec![(0, 3.0, 5.0, 4.0)],
        min_limit: Some(0.0),
        max_limit: Some(8.0),
    };
    let page = render(&PageData {
        units: vec![row("u1", Some(chart)), row("u2", None)],
        ..empty_page()
    });
    assert_eq!(page.matches("<svg").count(), 1, "{page}");
    assert!(page.contains("<th>Last 24 h</th>"), "{page}");
    assert!(!page.contains("<script"), "{page}");
}

fn empty_page() -> PageData {
    PageData {
        now: t(200),
        version: "0.1.0",
        epoch: "e".into(),
        uptime: Duration::from_secs(1),
        org: "o1".into(),
        org_name: None,
        broker: Broker {
            connected: true,
            subscribed: true,
            reconnects: 0,
            error: None,
        },
        units: Vec::new(),
        alerts: Vec::new(),
        unmapped: Vec::new(),
        sockets: Sockets {
            connected: 0,
            of_org: 0,
            slow: 0,
        },
        cluster: None,
    }
}

/// Cluster mode: the page names Redis's state, the live instances and the cluster's sockets.
#[test]
fn the_cluster_is_shown_in_cluster_mode() {
    let mut data = empty_page();
    data.cluster = Some(crate::cluster::ClusterHealth {
        status: "degraded",
        node_id: "edge-<b>:3000".into(),
        redis: "unavailable",
        degraded: true,
        live_instances: 1,
        instances: vec!["a:3000".into()],
        owned_units: 3,
        settled: false,
        cluster_connections: 42,
        stream_gaps: 0,
        stream_entries_lost: 0,
    });
    let page = render(&data);
    assert!(page.contains("Redis unavailable"), "{page}");
    assert!(page.contains("edge-&lt;b&gt;:3000"), "{page}");
    assert!(page.contains("1 live instance (a:3000)"), "{page}");
    assert!(page.contains("owns 3 units"), "{page}");
    assert!(page.contains("42 on every instance"), "{page}");
    assert!(
        !page.contains("event stream"),
        "no gap, nothing said: {page}"
    );
    if let Some(c) = data.cluster.as_mut() {
        c.stream_gaps = 2;
        c.stream_entries_lost = 150;
    }
    let page = render(&data);
    assert!(
        page.contains("fell behind the event stream</span> 2 times, 150 events lost here"),
        "{page}"
    );
    assert!(!render(&empty_page()).contains("Cluster"));
}
