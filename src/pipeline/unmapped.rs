//! The list of sensors that publish but are not in the registry (`GET /api/sensors/unmapped`,
//! the status page): what an installer needs to register them. Every entry comes from a
//! publisher (its id, its topic), so the list is bounded in entries
//! (`limits.unmapped_capacity`) and in bytes ([`UNMAPPED_MAX_BYTES`]); the sensors seen least
//! recently are forgotten first.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;

use crate::core::reading::rfc3339_millis;

/// One sensor that publishes but is not in the registry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnmappedSensor {
    pub sensor_id: String,
    pub topic: String,
    pub format: &'static str,
    #[serde(serialize_with = "rfc3339_millis")]
    pub first_seen: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_millis")]
    pub last_seen: DateTime<Utc>,
    pub count: u64,
}

/// What `GET /api/sensors/unmapped` may weigh, bytes: an entry costs its id and topic as JSON
/// strings (escapes counted) plus [`UNMAPPED_ENTRY_BYTES`], at least what it takes in the
/// answer. With ids of at most 128 bytes and topics of at most 512 (`decode::MAX_TOPIC_BYTES`),
/// 64 KiB holds 80 to 300 sensors; `limits.unmapped_capacity` may bound it further.
pub const UNMAPPED_MAX_BYTES: usize = 64 * 1024;
/// The JSON of an entry besides its id and topic: keys, format, two timestamps, a count.
const UNMAPPED_ENTRY_BYTES: usize = 160;

/// Bounded by `capacity` entries and [`UNMAPPED_MAX_BYTES`]; when full, the sensors seen least
/// recently are forgotten.
pub(super) struct Unmapped {
    capacity: usize,
    sensors: HashMap<String, UnmappedSensor>,
    bytes: usize,
}

fn weight(id: &str, topic: &str) -> usize {
    json_len(id) + json_len(topic) + UNMAPPED_ENTRY_BYTES
}

/// Bytes of `s` inside a JSON string: `"` and `\` escaped in two, control bytes in six.
fn json_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

impl Unmapped {
    pub(super) fn new(capacity: usize) -> Self {
        Unmapped {
            capacity,
            sensors: HashMap::new(),
            bytes: 0,
        }
    }

    pub(super) fn record(
        &mut self,
        id: &str,
        topic: &str,
        format: &'static str,
        at: DateTime<Utc>,
    ) {
        if let Some(s) = self.sensors.get_mut(id) {
            s.last_seen = at;
            s.count += 1;
            if s.topic != topic {
                self.bytes = self.bytes - json_len(&s.topic) + json_len(topic);
                s.topic = topic.to_string();
                self.trim(Some(id));
            }
            return;
        }
        self.bytes += weight(id, topic);
        self.sensors.insert(
            id.to_string(),
            UnmappedSensor {
                sensor_id: id.to_string(),
                topic: topic.to_string(),
                format,
                first_seen: at,
                last_seen: at,
                count: 1,
            },
        );
        self.trim(Some(id));
    }

    /// Forgets the stalest sensors (never `keep`) until both bounds hold.
    fn trim(&mut self, keep: Option<&str>) {
        while self.sensors.len() > self.capacity || self.bytes > UNMAPPED_MAX_BYTES {
            let oldest = self
                .sensors
                .values()
                .filter(|s| Some(s.sensor_id.as_str()) != keep)
                .min_by_key(|s| s.last_seen)
                .map(|s| s.sensor_id.clone());
            let Some(s) = oldest.and_then(|id| self.sensors.remove(&id)) else {
                return;
            };
            self.bytes -= weight(&s.sensor_id, &s.topic);
        }
    }

    /// Most recently seen first.
    pub(super) fn list(&self) -> Vec<UnmappedSensor> {
        let mut v: Vec<_> = self.sensors.values().cloned().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn unmapped_list_is_bounded_and_forgets_the_stalest() {
        let mut u = Unmapped::new(2);
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        u.record("a", "x/a", "json", t(1));
        u.record("b", "x/b", "json", t(2));
        u.record("a", "x/a", "json", t(3));
        u.record("c", "x/c", "json", t(4));
        let ids: Vec<_> = u
            .list()
            .into_iter()
            .map(|s| (s.sensor_id, s.count))
            .collect();
        assert_eq!(ids, vec![("c".to_string(), 1), ("a".to_string(), 2)]);
    }

    #[test]
    fn unmapped_list_is_bounded_in_bytes() {
        let mut u = Unmapped::new(10_000);
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        let topic = "t\"".repeat(250);
        for i in 0..1000 {
            u.record(&format!("ghost-{i}"), &topic, "json", t(i));
        }
        let json = serde_json::to_string(&u.list()).unwrap();
        assert!(json.len() <= UNMAPPED_MAX_BYTES, "{} bytes", json.len());
        assert!(u.list().len() > 60, "{}", u.list().len());
        assert_eq!(u.list()[0].sensor_id, "ghost-999", "the newest are kept");
        let kept: usize = u
            .list()
            .iter()
            .map(|s| weight(&s.sensor_id, &s.topic))
            .sum();
        assert_eq!(kept, u.bytes);
    }
}
