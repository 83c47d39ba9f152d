//! Where a simulated sensor's readings go and what they look like on the wire: the
//! subscription that carries the sensor, the topic (the filter with its wildcards filled in),
//! and the payload in that subscription's format. Pure; the tests read every payload back
//! through the real decoders.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::model::Sample;
use crate::decode::{match_filter, Format, Subscription};
use crate::pipeline::topics::topic_matches;

/// Where one sensor's readings go.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub topic: String,
    pub format: Format,
    pub qos: u8,
    /// `json` with `sensor_id_field`: the id goes in this payload field.
    pub id_field: Option<String>,
}

/// A LoRaWAN DevEUI: 16 hex digits (the registry keeps hex ids normalised, upper-case).
fn is_eui64(id: &str) -> bool {
    id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// The subscription (and topic) a sensor is published on; see the module doc.
pub fn route_for(sensor_id: &str, subscriptions: &[Subscription]) -> Option<Route> {
    let preferred = if is_eui64(sensor_id) {
        Format::TtnV3
    } else {
        Format::Json
    };
    let ordered = subscriptions
        .iter()
        .filter(|s| s.format == preferred)
        .chain(subscriptions.iter().filter(|s| s.format != preferred));
    for sub in ordered {
        let Some(topic) = fill_topic(sub, sensor_id) else {
            continue;
        };
        // The service decodes with the first subscription that matches: it must be this one.
        let first = subscriptions
            .iter()
            .find(|s| topic_matches(&s.topic, &topic));
        if first.is_some_and(|f| std::ptr::eq(f, sub)) {
            return Some(Route {
                topic,
                format: sub.format,
                qos: sub.qos,
                id_field: sub
                    .decoder
                    .sensor_id_field
                    .as_ref()
                    .map(|f| f.as_str().to_string()),
            });
        }
    }
    None
}

/// A topic matching `sub.topic` on which `sensor_id` is read back as the sensor, or `None`.
#[allow(unreachable_patterns)] // other formats may be added to `Format`
pub fn fill_topic(sub: &Subscription, sensor_id: &str) -> Option<String> {
    let filter = match_filter(&sub.topic);
    if filter.is_empty() {
        return None;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let topic_safe = !sensor_id.is_empty() && !sensor_id.contains(['/', '+', '#']);
    let filled: Vec<String> = match sub.format {
        Format::TtnV3 => {
            let device = ttn_device_id(sensor_id);
            let topic: Vec<String> = levels
                .iter()
                .enumerate()
                .map(|(i, l)| match *l {
                    "+" if i > 0 && levels[i - 1] == "devices" => device.clone(),
                    "+" => "sim@ttn".to_string(),
                    "#" => "up".to_string(),
                    lit => lit.to_string(),
                })
                .collect();
            // The decoder only reads uplinks.
            if topic.last().map(String::as_str) != Some("up") || !topic_safe {
                return None;
            }
            topic
        }
        Format::Json => {
            let fill = |target: Option<usize>| -> Vec<String> {
                levels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| match *l {
                        "+" | "#" if Some(i) == target => sensor_id.to_string(),
                        "+" | "#" => "sim".to_string(),
                        lit => lit.to_string(),
                    })
                    .collect()
            };
            if let Some(field) = &sub.decoder.sensor_id_field {
                // The id rides in the payload; only a top-level field is written there.
                if field.as_str() != field.first() {
                    return None;
                }
                fill(None)
            } else {
                // Put the id in each wildcard level in turn (last first) and keep the first
                // topic the decoder reads back as this sensor.
                if !topic_safe {
                    return None;
                }
                let wildcards = (0..levels.len())
                    .rev()
                    .filter(|i| matches!(levels[*i], "+" | "#"));
                let mut found = None;
                for i in wildcards {
                    let topic = fill(Some(i));
                    let joined = topic.join("/");
                    let read_back = match &sub.decoder.sensor_id {
                        Some(template) => template.render(&joined).ok(),
                        None => topic.last().cloned(),
                    };
                    if read_back.as_deref() == Some(sensor_id) {
                        found = Some(topic);
                        break;
                    }
                }
                found?
            }
        }
        _ => return None,
    };
    let topic = filled.join("/");
    topic_matches(filter, &topic).then_some(topic)
}

/// The TTN device id: `eui-<lower hex>` for a DevEUI, else the id itself.
fn ttn_device_id(sensor_id: &str) -> String {
    if is_eui64(sensor_id) {
        format!("eui-{}", sensor_id.to_ascii_lowercase())
    } else {
        sensor_id.to_string()
    }
}

/// The payload a sensor of `route` sends for `sample`, or `None` for a format the simulator
/// does not speak.
#[allow(unreachable_patterns)] // other formats may be added to `Format`
pub fn payload(
    route: &Route,
    sensor_id: &str,
    sample: &Sample,
    now: DateTime<Utc>,
    counter: u64,
) -> Option<Vec<u8>> {
    let value = match route.format {
        Format::TtnV3 => {
            let now = now.to_rfc3339_opts(SecondsFormat::Nanos, true);
            let mut ids = json!({
                "device_id": ttn_device_id(sensor_id),
                "application_ids": { "application_id": "sim" },
            });
            if is_eui64(sensor_id) {
                ids["dev_eui"] = json!(sensor_id);
            }
            json!({
                "end_device_ids": ids,
                "correlation_ids": [format!("sensorcast-simulate:{counter}")],
                "received_at": now,
                "uplink_message": {
                    "f_port": 2,
                    "f_cnt": counter,
                    "decoded_payload": {
                        "temperature": sample.temperature,
                        "humidity": sample.humidity,
                        "battery": sample.battery,
                    },
                    "rx_metadata": [{
                        "gateway_ids": { "gateway_id": "sim-gateway" },
                        "rssi": sample.rssi,
                        "channel_rssi": sample.rssi,
                        "snr": 7.5,
                    }],
                    "received_at": now,
                }
            })
        }
        Format::Json => {
            let mut m = Map::new();
            if let Some(field) = &route.id_field {
                m.insert(field.clone(), json!(sensor_id));
            }
            m.insert("temperature".into(), json!(sample.temperature));
            m.insert("humidity".into(), json!(sample.humidity));
            m.insert("battery".into(), json!(sample.battery));
            // Wi-Fi probes are closer to their access point than LoRa sensors to a gateway.
            m.insert("signalStrength".into(), json!(sample.rssi + 35.0));
            m.insert("ts".into(), json!(now.timestamp_millis()));
            Value::Object(m)
        }
        _ => return None,
    };
    Some(value.to_string().into_bytes())
}

/// The payload a door contact of `route` sends: its state and battery, no temperature (as
/// `door_open` in a TTN uplink's decoded payload, as `door` in a json one).
#[allow(unreachable_patterns)] // other formats may be added to `Format`
pub fn door_payload(
    route: &Route,
    sensor_id: &str,
    open: bool,
    battery: f64,
    now: DateTime<Utc>,
    counter: u64,
) -> Option<Vec<u8>> {
    let value = match route.format {
        Format::TtnV3 => {
            // The probe's uplink envelope, with the contact's decoded payload in it.
            let sample = Sample {
                temperature: 0.0,
                humidity: 0.0,
                battery,
                rssi: -90.0,
            };
            let mut v: Value =
                serde_json::from_slice(&payload(route, sensor_id, &sample, now, counter)?).ok()?;
            v["uplink_message"]["decoded_payload"] =
                json!({ "door_open": open, "battery": battery });
            v
        }
        Format::Json => {
            let mut m = Map::new();
            if let Some(field) = &route.id_field {
                m.insert(field.clone(), json!(sensor_id));
            }
            m.insert("door".into(), json!(open));
            m.insert("battery".into(), json!(battery));
            m.insert("ts".into(), json!(now.timestamp_millis()));
            Value::Object(m)
        }
        _ => return None,
    };
    Some(value.to_string().into_bytes())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::decode::{FieldPath, TopicTemplate};

    pub(in crate::simulate) fn sub(topic: &str, format: Format) -> Subscription {
        Subscription::new(topic, format)
    }

    fn default_subs() -> Vec<Subscription> {
        vec![
            sub("v3/+/devices/+/up", Format::TtnV3),
            sub("sensors/+", Format::Json),
        ]
    }

    #[test]
    fn topics_fill_the_wildcards_so_the_service_reads_the_sensor_back() {
        let subs = default_subs();
        let ttn = route_for("AC1F09FFFE01454E", &subs).unwrap();
        assert_eq!(ttn.topic, "v3/sim@ttn/devices/eui-ac1f09fffe01454e/up");
        assert_eq!(ttn.format, Format::TtnV3);
        let json = route_for("kiosk-probe", &subs).unwrap();
        assert_eq!(
            (json.topic.as_str(), json.format),
            ("sensors/kiosk-probe", Format::Json)
        );

        // Without a json subscription a plain id still rides TTN (as device_id).
        let only_ttn = [sub("v3/+/devices/+/up", Format::TtnV3)];
        assert_eq!(
            route_for("kiosk-probe", &only_ttn).unwrap().topic,
            "v3/sim@ttn/devices/kiosk-probe/up"
        );
        // Segment and payload-field ids, `#` and shared subscriptions.
        let mut seg = sub("site/+/probe/+/data", Format::Json);
        seg.decoder.sensor_id = Some(TopicTemplate::try_from("{1}".to_string()).unwrap());
        assert_eq!(fill_topic(&seg, "p1").unwrap(), "site/p1/probe/sim/data");
        seg.decoder.sensor_id = Some(TopicTemplate::try_from("{2}".to_string()).unwrap());
        assert_eq!(
            fill_topic(&seg, "p1"),
            None,
            "a literal level cannot hold the id"
        );
        let mut field = sub("$share/g/readings/#", Format::Json);
        field.decoder.sensor_id_field = Some(FieldPath::try_from("device".to_string()).unwrap());
        assert_eq!(fill_topic(&field, "p1").unwrap(), "readings/sim");
        assert_eq!(
            fill_topic(&sub("v3/#", Format::TtnV3), "AC1F09FFFE01454E").unwrap(),
            "v3/up"
        );
        assert_eq!(
            fill_topic(&sub("sensors/+", Format::Json), "kitchen/fridge"),
            None
        );
        // A topic an earlier subscription of another format would swallow is not used.
        let shadowed = [
            sub("#", Format::Json),
            sub("v3/+/devices/+/up", Format::TtnV3),
        ];
        assert_eq!(
            route_for("AC1F09FFFE01454E", &shadowed).unwrap().format,
            Format::Json
        );
    }

    /// What the service's decoder makes of a payload on its route.
    fn read_back(
        s: &Subscription,
        route: &Route,
        bytes: &[u8],
        now: DateTime<Utc>,
    ) -> Vec<crate::decode::Reading> {
        let mut state = crate::decode::DecodeState::new();
        match crate::decode::decode(
            s,
            &mut state,
            crate::decode::Message {
                topic: &route.topic,
                payload: bytes,
                received_at: now,
            },
            65536,
        ) {
            Ok(crate::decode::Decoded::Readings(r)) => r,
            other => panic!("{}: not a reading: {other:?}", route.topic),
        }
    }

    /// Every payload goes through the real decoder back to the same sensor and values.

    #[test]
    fn payloads_decode_to_the_sample() {
        let mut field = sub("readings/+", Format::Json);
        field.decoder.sensor_id_field = Some(FieldPath::try_from("device".to_string()).unwrap());
        let sample = Sample {
            temperature: -18.37,
            humidity: 71.5,
            battery: 88.0,
            rssi: -97.0,
        };
        let now = Utc::now();
        for (s, id) in [
            (sub("v3/+/devices/+/up", Format::TtnV3), "AC1F09FFFE01454E"),
            (sub("v3/+/devices/+/up", Format::TtnV3), "kiosk-probe"),
            (sub("sensors/+", Format::Json), "kiosk-probe"),
            (field, "p-7"),
        ] {
            let route = route_for(id, std::slice::from_ref(&s)).unwrap();
            let bytes = payload(&route, id, &sample, now, 3).unwrap();
            let r = read_back(&s, &route, &bytes, now);
            assert_eq!(r[0].sensor_id, id);
            assert_eq!(r[0].temperature, Some(-18.37));
            assert_eq!(r[0].humidity, Some(71.5));
            assert_eq!(r[0].battery, Some(88.0));
        }
    }

    /// A door contact's payloads decode to a reading with its door and battery, no temperature.
    #[test]
    fn door_payloads_decode_to_a_door_contacts_reading() {
        let now = Utc::now();
        for (s, id, open) in [
            (
                sub("v3/+/devices/+/up", Format::TtnV3),
                "A84041A0B1C2D3E4",
                true,
            ),
            (sub("sensors/+", Format::Json), "walkin-door", false),
        ] {
            let route = route_for(id, std::slice::from_ref(&s)).unwrap();
            let bytes = door_payload(&route, id, open, 91.0, now, 4).unwrap();
            let r = read_back(&s, &route, &bytes, now);
            assert_eq!(r[0].sensor_id, id);
            assert_eq!((r[0].temperature, r[0].door_open), (None, Some(open)));
            assert_eq!(r[0].battery, Some(91.0));
        }
    }
}
