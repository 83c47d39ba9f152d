//! Which subscription a topic belongs to: MQTT filter matching with `+` and `#`, the way the
//! broker matches them (rumqttc's own matcher), with a `$share/<group>/` prefix ignored.

use crate::decode::match_filter;

/// Whether `topic` is delivered for the subscription `filter`: rumqttc's `matches` on the
/// filter without its `$share/<group>/` prefix.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    rumqttc::matches(topic, match_filter(filter))
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn wildcards_match_like_a_broker() {
        assert!(topic_matches(
            "v3/+/devices/+/up",
            "v3/app@ttn/devices/d1/up"
        ));
        assert!(!topic_matches(
            "v3/+/devices/+/up",
            "v3/app@ttn/devices/d1/join"
        ));
        assert!(topic_matches("sensors/#", "sensors/a/b"));
        assert!(topic_matches("sensors/#", "sensors"));
        assert!(!topic_matches("sensors/+", "sensors/a/b"));
        assert!(topic_matches("$share/g/sensors/+", "sensors/a"));
        assert!(topic_matches("a/b", "a/b"));
        assert!(!topic_matches("a/b", "a/bc"));
        // A broker never delivers `$SYS` topics to a wildcard subscription.
        assert!(!topic_matches("#", "$SYS/broker/uptime"));
        assert!(!topic_matches("$share/g/+/uptime", "$SYS/uptime"));
    }
}
