//! Door states in every format that carries one: the spellings, the options that point at
//! them, what a door contact alone decodes to, and what is still not a reading. The real
//! payloads are fixtures (tests/fixtures/payloads/, checked by tests/decoder_fixtures.rs).

use serde_json::json;

use super::fields::door_state;
use super::tests::{ignored, one, readings, reason, shelly, sub, sub_err, Sub, HT};
use super::*;

#[test]
fn door_states_in_every_spelling_and_contact_says_the_opposite() {
    let open = |v: serde_json::Value| door_state("door", Some(&v), false);
    for v in [
        json!(true),
        json!(1),
        json!("open"),
        json!(" ON "),
        json!("1"),
    ] {
        assert_eq!(open(v.clone()), Ok(Some(true)), "{v}");
    }
    for v in [
        json!(false),
        json!(0),
        json!("Closed"),
        json!("close"),
        json!("off"),
    ] {
        assert_eq!(open(v.clone()), Ok(Some(false)), "{v}");
    }
    assert_eq!(open(json!(null)), Ok(None));
    assert_eq!(door_state("door", None, false), Ok(None));
    for v in [
        json!(2),
        json!("ajar"),
        json!([true]),
        json!({"open": true}),
    ] {
        assert_eq!(open(v).unwrap_err().reason(), "not_a_door_state");
    }
    // Zigbee's `contact: true` is a closed door.
    assert_eq!(
        door_state("contact", Some(&json!(true)), true),
        Ok(Some(false))
    );
}

#[test]
fn json_takes_a_configured_door_path_strictly_and_the_default_key_only_when_it_is_one() {
    let s = sub("topic = \"sites/#\"\nformat = \"json\"\nfields = { door = \"state.door\" }");
    let r = one(
        &s,
        "sites/a",
        r#"{"temperature":4,"state":{"door":"open"}}"#,
    );
    assert_eq!((r.temperature, r.door_open), (Some(4.0), Some(true)));
    let r = one(&s, "sites/a", r#"{"state":{"door":false},"battery":50}"#);
    assert_eq!((r.temperature, r.door_open), (None, Some(false)));
    assert_eq!(r.battery, Some(50.0));
    assert_eq!(
        reason(
            &s,
            "sites/a",
            r#"{"temperature":4,"state":{"door":"ajar"}}"#
        ),
        "not_a_door_state"
    );

    let d = Sub::new("sensors/+", Format::Json);
    let r = one(&d, "sensors/a", r#"{"temperature":4,"door":"front"}"#);
    assert_eq!(r.door_open, None, "a label, not a state");
    assert_eq!(
        reason(&d, "sensors/a", r#"{"door":"front"}"#),
        "no_temperature"
    );
    assert_eq!(
        reason(&d, "sensors/a", r#"{"humidity":50}"#),
        "no_temperature"
    );
}

fn uplink(decoded: &str) -> String {
    format!(
        r#"{{"end_device_ids":{{"dev_eui":"A84041A0B1C2D3E4"}},"uplink_message":{{"decoded_payload":{decoded}}}}}"#
    )
}

#[test]
fn ttn_door_names_a_configured_path_and_contact() {
    let s = Sub::new("v3/#", Format::TtnV3);
    let topic = "v3/app@ttn/devices/d/up";
    let r = one(&s, topic, &uplink(r#"{"open":false,"battery":80}"#));
    assert_eq!((r.temperature, r.door_open), (None, Some(false)));
    let r = one(&s, topic, &uplink(r#"{"temperature":3.5,"contact":true}"#));
    assert_eq!((r.temperature, r.door_open), (Some(3.5), Some(false)));
    let r = one(&s, topic, &uplink(r#"{"door_open":1,"contact":true}"#));
    assert_eq!(r.door_open, Some(true), "door_open comes before contact");
    assert_eq!(
        reason(&s, topic, &uplink(r#"{"battery":80}"#)),
        "no_temperature"
    );

    let p = sub("topic = \"v3/#\"\nformat = \"ttn-v3\"\nfields = { door = \"sensors.0.door\" }");
    let r = one(&p, topic, &uplink(r#"{"sensors":[{"door":"open"}]}"#));
    assert_eq!(r.door_open, Some(true));
    assert_eq!(
        reason(&p, topic, &uplink(r#"{"sensors":[{"door":7}]}"#)),
        "not_a_door_state"
    );
    let e = sub_err("topic = \"v3/#\"\nformat = \"ttn-v3\"\nfields = { temperature = \"t\" }");
    assert!(e.contains("takes only fields.door"), "{e}");
}

#[test]
fn tasmota_switch1_is_the_devices_door_in_sensor_and_result() {
    let s = Sub::new("+/#", Format::Tasmota);
    let two =
        r#"{"Switch1":"ON","DS18B20-1":{"Temperature":-18.5},"DS18B20-2":{"Temperature":-19.0}}"#;
    let r = readings(&s, "tele/walkin/SENSOR", two);
    let ids: Vec<_> = r
        .iter()
        .map(|r| (r.sensor_id.as_str(), r.door_open))
        .collect();
    assert_eq!(
        ids,
        [
            ("walkin/DS18B20-1", None),
            ("walkin/DS18B20-2", None),
            ("walkin", Some(true))
        ],
        "several probes: the door is the device's own reading"
    );
    let r = one(
        &s,
        "tele/walkin/SENSOR",
        r#"{"Switch1":"OFF","DS18B20":{"Temperature":null}}"#,
    );
    assert_eq!((r.temperature, r.door_open), (None, Some(false)));
    let r = one(&s, "stat/walkin/RESULT", r#"{"Switch1":"ON"}"#);
    assert_eq!((r.sensor_id.as_str(), r.door_open), ("walkin", Some(true)));
    assert_eq!(
        ignored(
            &s,
            "stat/walkin/RESULT",
            r#"{"Switch1":{"Action":"TOGGLE"}}"#
        ),
        "RESULT without a Switch1 state"
    );
    assert_eq!(
        ignored(&s, "stat/walkin/RESULT", r#"{"POWER":"ON"}"#),
        "RESULT without a Switch1 state"
    );
    assert_eq!(
        reason(&s, "tele/walkin/SENSOR", r#"{"Switch1":5}"#),
        "not_a_door_state"
    );

    let inverted = sub("topic = \"tele/#\"\nformat = \"tasmota\"\nswitch_on = \"closed\"");
    let r = one(&inverted, "tele/walkin/SENSOR", r#"{"Switch1":"ON"}"#);
    assert_eq!(r.door_open, Some(false));
    let e = sub_err("topic = \"x/#\"\nformat = \"json\"\nswitch_on = \"open\"");
    assert!(e.contains("switch_on does not apply"), "{e}");
    assert!(
        sub_err("topic = \"x/#\"\nformat = \"tasmota\"\nswitch_on = \"ajar\"")
            .contains("unknown variant")
    );
}

#[test]
fn zigbee2mqtt_contact_is_a_door_and_other_states_stay_ignored() {
    let s = Sub::new("zigbee2mqtt/#", Format::Zigbee2Mqtt);
    let r = one(&s, "zigbee2mqtt/door", r#"{"contact":false,"battery":12}"#);
    assert_eq!(
        (r.temperature, r.door_open, r.battery),
        (None, Some(true), Some(12.0))
    );
    let r = one(
        &s,
        "zigbee2mqtt/door",
        r#"{"contact":true,"temperature":4.5}"#,
    );
    assert_eq!((r.temperature, r.door_open), (Some(4.5), Some(false)));
    assert_eq!(
        ignored(&s, "zigbee2mqtt/plug", r#"{"state":"ON","power":12}"#),
        "device state without a temperature or a contact"
    );
    assert_eq!(
        reason(&s, "zigbee2mqtt/door", r#"{"contact":"maybe"}"#),
        "not_a_door_state"
    );
}

#[test]
fn shelly_windows_overlay_like_any_component_and_blu_reports_are_their_own_sensor() {
    let s = Sub::new("+/events/rpc", Format::ShellyGen2);
    let topic = format!("{HT}/events/rpc");
    let full = shelly(
        "NotifyFullStatus",
        r#"{"temperature:0":{"tC":4.2},"window:0":{"id":0,"open":false}}"#,
    );
    assert_eq!(one(&s, &topic, &full).door_open, Some(false));
    let delta = shelly("NotifyStatus", r#"{"window:0":{"id":0,"open":true}}"#);
    let r = one(&s, &topic, &delta);
    assert_eq!(
        (r.temperature, r.door_open),
        (Some(4.2), Some(true)),
        "last temperature kept"
    );
    // A failed probe stays visible even when the window changes with it.
    let failed = shelly(
        "NotifyStatus",
        r#"{"temperature:0":{"tC":null},"window:0":{"open":false}}"#,
    );
    assert_eq!(reason(&s, &topic, &failed), "no_temperature");

    let contact_only = Sub::new("+/events/rpc", Format::ShellyGen2);
    let r = one(
        &contact_only,
        &topic,
        &shelly("NotifyStatus", r#"{"window:0":{"open":true}}"#),
    );
    assert_eq!((r.temperature, r.door_open), (None, Some(true)));
    assert_eq!(
        ignored(
            &contact_only,
            &topic,
            &shelly("NotifyFullStatus", r#"{"switch:0":{"output":true}}"#)
        ),
        "device has no temperature or window component"
    );

    let button = r#"{"events":[{"component":"script:1","event":"shelly-blu","data":{"button":1,"address":"5c:c7:c1:f2:e4:7c"}}]}"#;
    assert_eq!(
        ignored(&s, &topic, &shelly("NotifyEvent", button)),
        "shelly event other than a BLU door/window report"
    );
    let two = r#"{"ts":1717406562,"events":[{"event":"shelly-blu","data":{"window":0,"address":"60:ef:ab:42:ed:25"}},{"event":"shelly-blu","data":{"window":1,"address":"60:ef:ab:42:ed:26","battery":9}}]}"#;
    let r = readings(&s, &topic, &shelly("NotifyEvent", two));
    let got: Vec<_> = r
        .iter()
        .map(|r| (r.sensor_id.as_str(), r.door_open, r.battery))
        .collect();
    assert_eq!(
        got,
        [
            ("60EFAB42ED25", Some(false), None),
            ("60EFAB42ED26", Some(true), Some(9.0))
        ]
    );
    let anonymous = r#"{"events":[{"event":"shelly-blu","data":{"window":1}}]}"#;
    assert_eq!(
        reason(&s, &topic, &shelly("NotifyEvent", anonymous)),
        "no_sensor_id"
    );
}
