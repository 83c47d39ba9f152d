//! Which subscription a topic belongs to: MQTT filter matching with `+` and `#`, the way the
//! broker matches them, with a `$share/<group>/` prefix ignored.

/// MQTT topic matching with `+` and `#` wildcards; a `$share/<group>/` prefix is ignored.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, f)| f),
        None => filter,
    };
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
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
    }
}
