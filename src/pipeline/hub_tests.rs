//! Tests of the hub.

use super::*;

/// A probe of a multi-probe device maps through the device id when only the device is
/// registered; a registered probe id wins.
#[test]
fn readings_fall_back_to_the_device_id() {
    let registry = Registry::parse(
        "[[org]]\nid = \"o\"\n[[site]]\nid = \"s\"\norg = \"o\"\n\
         [[unit]]\nid = \"u1\"\nsite = \"s\"\n[[unit]]\nid = \"u2\"\nsite = \"s\"\n\
         [[sensor]]\nid = \"tasmota_dev\"\nunit = \"u1\"\n\
         [[sensor]]\nid = \"tasmota_dev/SI7021\"\nunit = \"u2\"\n",
        std::path::Path::new("r.toml"),
    )
    .unwrap();
    let limits = HistoryLimits {
        max_readings: 4,
        max_age: std::time::Duration::from_secs(60),
        bridge: None,
    };
    let hub = Hub::new(registry, 4, limits);
    let reading = |id: &str| Reading {
        sensor_id: id.into(),
        fallback_sensor_id: Some("tasmota_dev".into()),
        temperature: Some(4.0),
        door_open: None,
        humidity: None,
        battery: None,
        signal_strength: None,
        recorded_at: Utc::now(),
        source: crate::decode::Format::Tasmota,
        extra: Vec::new(),
    };
    let unit_of =
        |id: &str| match hub.accept(reading(id), "tele/x/SENSOR", Utc::now(), false, |_, _| {}) {
            Accepted::Mapped { unit, .. } => Some(unit.id.to_string()),
            Accepted::Unmapped(_) => None,
        };
    assert_eq!(unit_of("tasmota_dev/DS18B20-1").as_deref(), Some("u1"));
    assert_eq!(unit_of("tasmota_dev/SI7021").as_deref(), Some("u2"));
}

/// Cluster mode: readings relayed from the stream with a hole (entries this instance never
/// read) are never served as a complete resume across the hole; after the stream reader lost
/// entries, no resume is served from memory until the unit's next reading.
#[test]
fn memory_serves_a_resume_only_without_a_hole() {
    let registry = Registry::parse(
        "[[org]]\nid = \"o\"\n[[site]]\nid = \"s\"\norg = \"o\"\n\
         [[unit]]\nid = \"u1\"\nsite = \"s\"\n[[sensor]]\nid = \"p1\"\nunit = \"u1\"\n",
        std::path::Path::new("r.toml"),
    )
    .unwrap();
    let limits = HistoryLimits {
        max_readings: 100,
        max_age: std::time::Duration::from_secs(60),
        bridge: None,
    };
    let hub = Hub::new(registry, 4, limits);
    let relay = |seq: u64| {
        let wire: SensorReading = serde_json::from_value(serde_json::json!({
            "id": format!("e-u1-{seq}"), "seq": seq, "unitId": "u1", "siteId": "s",
            "organizationId": "o", "deviceId": "p1", "temperature": 4.0, "humidity": null,
            "battery": null, "signalStrength": null, "recordedAt": Utc::now(),
            "receivedAt": Utc::now(), "source": "json", "extra": {}
        }))
        .unwrap();
        hub.relay_reading(Arc::new(wire), |_| {});
    };
    let after = |seq: u64| {
        let feed = hub.feed(&Arc::from("u1"));
        let feed = feed.lock().unwrap();
        feed.after(seq, limits)
            .map(|v| v.iter().map(|r| r.seq).collect::<Vec<_>>())
    };
    for seq in [1, 2, 3, 4, 9, 10] {
        relay(seq);
    }
    assert_eq!(after(2), None, "5..8 are missing");
    assert_eq!(after(8), Some(vec![9, 10]));
    assert_eq!(after(10), Some(vec![]));
    hub.mark_unsure();
    assert_eq!(after(10), None, "readings after 10 may have been lost");
    relay(11);
    assert_eq!(after(10), Some(vec![11]));
}

/// Memory keeps a unit's readings for `max_age` behind its newest one, whatever
/// `max_readings` allows: older ones are let go as new ones arrive.
#[test]
fn memory_lets_readings_older_than_the_age_go() {
    let registry = Registry::parse(
        "[[org]]\nid = \"o\"\n[[site]]\nid = \"s\"\norg = \"o\"\n\
         [[unit]]\nid = \"u1\"\nsite = \"s\"\n[[sensor]]\nid = \"p1\"\nunit = \"u1\"\n",
        std::path::Path::new("r.toml"),
    )
    .unwrap();
    let limits = HistoryLimits {
        max_readings: 100,
        max_age: std::time::Duration::from_secs(60),
        bridge: None,
    };
    let hub = Hub::new(registry, 4, limits);
    let start = Utc::now() - chrono::Duration::minutes(10);
    // One reading every 10 s over 10 minutes: 60 readings, 7 of them within a minute of the
    // last (its own and the six before it).
    for k in 0..60 {
        let at = start + chrono::Duration::seconds(10 * k);
        let wire: SensorReading = serde_json::from_value(serde_json::json!({
            "id": format!("e-u1-{}", k + 1), "seq": k + 1, "unitId": "u1", "siteId": "s",
            "organizationId": "o", "deviceId": "p1", "temperature": 4.0, "humidity": null,
            "battery": null, "signalStrength": null, "recordedAt": at,
            "receivedAt": at, "source": "json", "extra": {}
        }))
        .unwrap();
        hub.relay_reading(Arc::new(wire), |_| {});
    }
    let feed = hub.feed(&Arc::from("u1"));
    let feed = feed.lock().unwrap();
    let kept: Vec<u64> = feed.history.iter().map(|r| r.seq).collect();
    assert_eq!(kept, (54..=60).collect::<Vec<_>>());
}
