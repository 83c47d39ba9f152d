//! Shelly Gen2 (Plus, Pro, H&T) RPC notifications on `<id>/events/rpc`: `NotifyFullStatus`
//! carries every component, `NotifyStatus` only what changed, so each delta is laid over the
//! device's last known status (kept in [`DecodeState`]) before a reading is made.
//!
//! Components read: `temperature:N.tC`, `humidity:N.rh`, `devicepower:N.battery.percent` (and
//! `.V`, `.external.present` into `extra`), `illuminance:N.lux` (`extra`), and `wifi.rssi` as the
//! signal. With several temperature or humidity components (the Plus Add-on's probes), the one
//! with the lowest id is the reading's value and the others go to `extra` as `temperature:N`.
//! `params.ts` (Unix seconds, float or integer) is `recorded_at`. The sensor id is the payload's
//! `src` (the device id), or the topic prefix when `src` is missing.
//!
//! Door and window contacts: a `window:N` component's `open` is the reading's door state (the
//! lowest id, like the temperature); a device with a window component and no temperature
//! component gives door readings. A Shelly BLU Door/Window is heard by a Gen2 device over
//! Bluetooth and forwarded by its `ble-shelly-blu` script as a `NotifyEvent` whose event
//! `shelly-blu` carries `{"address": <BLU MAC>, "window": 1, "battery": 100, "rssi": -60, ...}`:
//! a door reading of the BLU device itself (its MAC is its sensor id; `illuminance` and
//! `rotation` go to `extra`).
//!
//! A delta that touches no sensor component (a Wi-Fi or switch change) updates the memory but is
//! not a reading; neither is a device with no temperature and no window component.
//! `<id>/online` (`true`/`false`) is the device's availability.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::fields::{self, ranged};
use super::state::{DecodeState, DeviceStatus};
use super::{sensor_id, DecodeError, Decoded, Extra, Format, Message, Reading, MAX_EXTRA};

pub fn decode(state: &mut DecodeState, msg: Message) -> Result<Decoded, DecodeError> {
    let (topic, payload, received_at) = (msg.topic, msg.payload, msg.received_at);
    if let Some(device) = topic.strip_suffix("/online") {
        let text = String::from_utf8_lossy(payload);
        let online = fields::online_word(&text).ok_or_else(|| {
            DecodeError::Malformed("online payload is neither true nor false".into())
        })?;
        return Ok(Decoded::Availability {
            sensor_id: sensor_id(device)?,
            online,
        });
    }
    let Some(prefix) = topic.strip_suffix("/events/rpc") else {
        return Ok(Decoded::Ignored("not a shelly events/rpc message"));
    };
    let msg = fields::json_object(payload)?;
    let full = match msg.get("method").and_then(Value::as_str) {
        Some("NotifyFullStatus") => true,
        Some("NotifyStatus") => false,
        Some("NotifyEvent") => return blu_events(&msg, received_at),
        _ => return Ok(Decoded::Ignored("shelly notification other than a status")),
    };
    let Some(Value::Object(params)) = msg.get("params") else {
        return Err(DecodeError::Malformed(
            "shelly status without params".into(),
        ));
    };
    let device = match msg.get("src") {
        Some(Value::String(src)) => sensor_id(src)?,
        _ => sensor_id(prefix)?,
    };
    let mut status = match state.status(&device) {
        Some(known) if !full => known.clone(),
        _ => DeviceStatus::default(),
    };
    let touched = overlay(&mut status, params)?;
    let recorded_at = match params.get("ts") {
        Some(ts) => fields::parse_timestamp(ts)?,
        None => received_at,
    };
    let outcome = if !touched && !full {
        Ok(Decoded::Ignored("status change without sensor values"))
    } else {
        reading(&device, &status, recorded_at).map(|r| match r {
            Some(r) => Decoded::Readings(vec![r]),
            None => Decoded::Ignored("device has no temperature or window component"),
        })
    };
    state.remember(&device, status);
    outcome
}

/// The reading the status amounts to, `None` when it has neither a temperature nor a window
/// component with a value; an error when the main temperature component has no value (the
/// probe failed: visible, rather than a door reading that hides it).
fn reading(
    device: &str,
    status: &DeviceStatus,
    recorded_at: DateTime<Utc>,
) -> Result<Option<Reading>, DecodeError> {
    let temperature = match status.temperatures.first() {
        Some(&(_, main)) => Some(main.ok_or(DecodeError::NoTemperature)?),
        None => None,
    };
    let door_open = status.windows.first().and_then(|&(_, open)| open);
    if temperature.is_none() && door_open.is_none() {
        return Ok(None);
    }
    let mut extra: Extra = Vec::new();
    for (kind, list) in [
        ("temperature", &status.temperatures),
        ("humidity", &status.humidities),
    ] {
        for (id, v) in list.iter().skip(1) {
            if let (Some(v), true) = (v, extra.len() < MAX_EXTRA) {
                extra.push((format!("{kind}:{id}"), *v));
            }
        }
    }
    for (k, v) in &status.extra {
        if extra.len() < MAX_EXTRA {
            extra.push((k.clone(), *v));
        }
    }
    Ok(Some(Reading {
        sensor_id: device.to_owned(),
        fallback_sensor_id: None,
        temperature,
        door_open,
        humidity: status.humidities.first().and_then(|(_, h)| *h),
        battery: status.battery,
        signal_strength: status.signal_strength,
        recorded_at,
        extra,
        source: Format::ShellyGen2,
    }))
}

/// The BLU Door/Window reports in a `NotifyEvent` (see the module doc); other events are not
/// readings.
fn blu_events(
    msg: &Map<String, Value>,
    received_at: DateTime<Utc>,
) -> Result<Decoded, DecodeError> {
    let params = msg.get("params").and_then(Value::as_object);
    let events = params
        .and_then(|p| p.get("events"))
        .and_then(Value::as_array);
    let mut readings = Vec::new();
    for event in events.into_iter().flatten() {
        let (Some("shelly-blu"), Some(Value::Object(data))) = (
            event.get("event").and_then(Value::as_str),
            event.get("data"),
        ) else {
            continue;
        };
        let Some(door_open) = fields::door_state("window", data.get("window"), false)? else {
            continue;
        };
        let Some(Value::String(address)) = data.get("address") else {
            return Err(DecodeError::NoSensorId("shelly-blu event has no address"));
        };
        let ts = event.get("ts").or(params.and_then(|p| p.get("ts")));
        let mut extra = Vec::new();
        for name in ["illuminance", "rotation"] {
            if let Some(v) = data.get(name) {
                fields::push_extra(&mut extra, name, v);
            }
        }
        readings.push(Reading {
            sensor_id: sensor_id(address)?,
            fallback_sensor_id: None,
            temperature: None,
            door_open: Some(door_open),
            humidity: None,
            battery: ranged("battery", data.get("battery"), fields::BATTERY)?,
            signal_strength: ranged("rssi", data.get("rssi"), fields::SIGNAL)?,
            recorded_at: ts.map_or(Ok(received_at), fields::parse_timestamp)?,
            extra,
            source: Format::ShellyGen2,
        });
    }
    if readings.is_empty() {
        return Ok(Decoded::Ignored(
            "shelly event other than a BLU door/window report",
        ));
    }
    Ok(Decoded::Readings(readings))
}

/// Lays the components of `params` over `status`. Returns whether a sensor component was in it.
fn overlay(status: &mut DeviceStatus, params: &Map<String, Value>) -> Result<bool, DecodeError> {
    let mut touched = false;
    for (key, v) in params {
        let Value::Object(c) = v else { continue };
        let (kind, id) = match key.split_once(':') {
            Some((kind, id)) => match id.parse::<u32>() {
                Ok(id) => (kind, Some(id)),
                Err(_) => continue,
            },
            None => (key.as_str(), None),
        };
        match (kind, id) {
            ("temperature", Some(id)) if c.contains_key("tC") => {
                let t = fields::temperature("temperature", c.get("tC"), Default::default())?;
                set_component(&mut status.temperatures, id, t);
                touched = true;
            }
            ("window", Some(id)) if c.contains_key("open") => {
                let open = fields::door_state("window", c.get("open"), false)?;
                set_component(&mut status.windows, id, open);
                touched = true;
            }
            ("humidity", Some(id)) if c.contains_key("rh") => {
                let h = ranged("humidity", c.get("rh"), fields::HUMIDITY)?;
                set_component(&mut status.humidities, id, h);
                touched = true;
            }
            ("devicepower", Some(_)) => {
                if let Some(Value::Object(b)) = c.get("battery") {
                    if b.contains_key("percent") {
                        status.battery = ranged("battery", b.get("percent"), fields::BATTERY)?;
                    }
                    if let Some(volts) = b.get("V") {
                        set_extra(&mut status.extra, "battery_voltage", volts);
                    }
                }
                if let Some(Value::Object(e)) = c.get("external") {
                    if let Some(present) = e.get("present") {
                        set_extra(&mut status.extra, "external_power", present);
                    }
                }
                touched = true;
            }
            ("illuminance", Some(_)) => {
                if let Some(lux) = c.get("lux") {
                    set_extra(&mut status.extra, "illuminance", lux);
                    touched = true;
                }
            }
            ("wifi", None) if c.contains_key("rssi") => {
                status.signal_strength = ranged("rssi", c.get("rssi"), fields::SIGNAL)?;
            }
            _ => {}
        }
    }
    Ok(touched)
}

/// Sets component `id` (kept sorted by id, at most [`MAX_EXTRA`] of them); `None` records that
/// the component has no value now, so that the lowest id stays the main one.
fn set_component<T>(list: &mut Vec<(u32, Option<T>)>, id: u32, v: Option<T>) {
    match list.binary_search_by_key(&id, |&(i, _)| i) {
        Ok(at) => list[at].1 = v,
        Err(at) if list.len() < MAX_EXTRA => list.insert(at, (id, v)),
        Err(_) => {}
    }
}

/// Replaces or adds one `extra` value (numbers and booleans only).
fn set_extra(extra: &mut Extra, name: &str, v: &Value) {
    let mut one = Vec::new();
    fields::push_extra(&mut one, name, v);
    match (one.pop(), extra.iter().position(|(k, _)| k == name)) {
        (Some((_, n)), Some(at)) => extra[at].1 = n,
        (Some(entry), None) if extra.len() < MAX_EXTRA => extra.push(entry),
        (None, Some(at)) => {
            extra.remove(at);
        }
        _ => {}
    }
}
