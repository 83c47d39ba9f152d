//! Durations as written in config files and on the command line: `"500ms"`, `"90s"`, `"5m"`,
//! `"1h"`, `"1d"`, and anything else `humantime` reads (`"1.5s"`, `"1h 30m"`, `"2 days"`).
//! Parsing is humantime's; this module adds the config's error wording and an upper bound.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// The longest duration accepted: far beyond any timeout or rule, and far enough below the
/// range of `Instant` that adding one to now cannot overflow (which panics).
pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `#[serde(with = "duration_str")]` for `Duration` fields.
pub mod duration_str {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        // humantime says "unknown time unit" for a bare number: name what is missing.
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(format!("duration {s:?} needs a unit (ms, s, m, h, d)"));
        }
        let d = humantime::parse_duration(s).map_err(|e| format!("duration {s:?}: {e}"))?;
        if d > super::MAX {
            return Err(format!(
                "duration {s:?} is out of range (at most 100 years)"
            ));
        }
        Ok(d)
    }
}

/// A duration written as a string, for `Option` fields (registry rule keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        duration_str::deserialize(d).map(HumanDuration)
    }
}

#[cfg(test)]
mod tests {
    use super::duration_str::parse;
    use std::time::Duration;

    #[test]
    fn the_config_syntax_and_its_errors() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse(" 1d ").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse("5").unwrap_err().contains("needs a unit"));
        assert!(parse("5 parsecs")
            .unwrap_err()
            .contains("unknown time unit"));
        assert!(parse("").is_err() && parse("-5s").is_err());
        for huge in ["99999999999999999999s", "200y", "584942417355y"] {
            let err = parse(huge).unwrap_err();
            assert!(
                err.contains(huge) && (err.contains("too large") || err.contains("out of range")),
                "{err}"
            );
        }
    }
}
