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
