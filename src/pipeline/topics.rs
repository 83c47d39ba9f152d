//! Which subscription a topic belongs to: MQTT filter matching with `+` and `#`, the way the
//! broker matches them (rumqttc's own matcher), with a `$share/<group>/` prefix ignored. And
//! the bounded form in which a topic (or any text from a publisher) goes into a log line or a
//! map key, so that a 60 KB topic costs a few dozen bytes there.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};

use crate::decode::match_filter;

/// Text up to this many bytes is shown as it is.
pub const SHOWN_BYTES: usize = 96;
/// How much of longer text is kept before the mark.
const KEPT_BYTES: usize = 64;

/// Whether `topic` is delivered for the subscription `filter`: rumqttc's `matches` on the
/// filter without its `$share/<group>/` prefix.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    rumqttc::matches(topic, match_filter(filter))
}

/// `text` when it is at most [`SHOWN_BYTES`] long; else its first 64 bytes (cut at a char
/// boundary), `…`, its length and a hash of the whole, so different long topics stay apart:
/// `sensors/xxxx…[60008 bytes #3f2a9c1e]`. At most about 100 bytes either way.
pub fn shortened(text: &str) -> Cow<'_, str> {
    if text.len() <= SHOWN_BYTES {
        return Cow::Borrowed(text);
    }
    let mut cut = KEPT_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    // SipHash with fixed keys: the same text gives the same mark in every run.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    let hash = h.finish() as u32;
    Cow::Owned(format!(
        "{}…[{} bytes #{hash:08x}]",
        &text[..cut],
        text.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::{shortened, topic_matches, SHOWN_BYTES};

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

    #[test]
    fn long_text_is_shortened_to_a_bounded_distinct_form() {
        let short = "sensors/probe-1";
        assert_eq!(shortened(short), short);
        let a = format!("sensors/{}a", "é".repeat(30_000));
        let b = format!("sensors/{}b", "é".repeat(30_000));
        let (sa, sb) = (shortened(&a), shortened(&b));
        assert!(sa.len() <= SHOWN_BYTES + 20, "{sa}");
        assert!(
            sa.starts_with("sensors/é") && sa.contains("[60009 bytes #"),
            "{sa}"
        );
        assert_ne!(sa, sb, "different topics, different forms");
        assert_eq!(sa, shortened(&a), "the same topic, the same form");
    }
}
