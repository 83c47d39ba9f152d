//! The alert rule keys an installer writes on `[[org]]`, `[[site]]` and `[[unit]]` registry
//! entries (the same keys as the service config's `[alerts]` table), as data: which keys a level
//! sets, how a level inherits from the one above, and the checks each level passes on its own.
//! The alert engine (`alerts::rules`) turns them into each unit's effective rules.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

use super::duration::duration_str;

pub const DEFAULT_HYSTERESIS: f64 = 0.5;
pub const DEFAULT_CONFIRM_AFTER: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_RESTORE_AFTER: RestoreAfter = RestoreAfter::Time(Duration::from_secs(2 * 60));
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_BATTERY_LOW: f64 = 20.0;
/// %RH. After a humidity excursion, only readings this far back inside the limit count.
pub const DEFAULT_HUMIDITY_HYSTERESIS: f64 = 2.0;
/// A low-battery alert clears only once the battery is this many points above `battery_low`.
pub const BATTERY_HYSTERESIS: f64 = 5.0;

/// How long a unit must stay back in range (inside the hysteresis band) before it is `ok`:
/// `restore_after = "2m"` (time) or `restore_after = 3` (consecutive readings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreAfter {
    Time(Duration),
    Readings(u32),
}

impl<'de> Deserialize<'de> for RestoreAfter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RestoreAfter;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"2m\" or a number of readings such as 3")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RestoreAfter, E> {
                duration_str::parse(s)
                    .map(RestoreAfter::Time)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RestoreAfter, E> {
                match u32::try_from(n) {
                    Ok(n) if n >= 1 => Ok(RestoreAfter::Readings(n)),
                    _ => Err(E::custom("a number of readings must be 1 or more")),
                }
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RestoreAfter, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(-1))
            }
        }
        d.deserialize_any(V)
    }
}

/// A relative humidity (or a difference of two) as written in a file: a finite number from 0
/// to 100. Checked while parsing, so a bad value is an error naming its file, line and key.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rh(pub f64);

impl<'de> Deserialize<'de> for Rh {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() && (0.0..=100.0).contains(&v) {
            Ok(Rh(v))
        } else {
            Err(de::Error::custom(format!(
                "{v} is not a relative humidity (0 to 100 %RH)"
            )))
        }
    }
}

/// `door_open_after` as written in a file: a duration of at least 1 s, checked while parsing
/// (file, line and key in the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorOpenAfter(pub Duration);

impl<'de> Deserialize<'de> for DoorOpenAfter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = duration_str::parse(&s).map_err(de::Error::custom)?;
        if v < Duration::from_secs(1) {
            return Err(de::Error::custom(format!(
                "{s:?}: a door must be allowed to stay open at least 1s"
            )));
        }
        Ok(DoorOpenAfter(v))
    }
}

/// The rule keys one level sets; `None` inherits from the level above.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSet {
    pub temp_min: Option<f64>,
    pub temp_max: Option<f64>,
    pub hysteresis: Option<f64>,
    pub confirm_after: Option<Duration>,
    pub restore_after: Option<RestoreAfter>,
    pub offline_after: Option<Duration>,
    pub battery_low: Option<f64>,
    /// %RH; either limit alone is a rule (a produce room may only need a minimum).
    pub humidity_min: Option<f64>,
    pub humidity_max: Option<f64>,
    pub humidity_hysteresis: Option<f64>,
    /// A door of the unit open longer than this raises `door_open`.
    pub door_open_after: Option<Duration>,
}

impl RuleSet {
    /// Each key set here, else the one from `parent`.
    pub fn over(&self, parent: &RuleSet) -> RuleSet {
        RuleSet {
            temp_min: self.temp_min.or(parent.temp_min),
            temp_max: self.temp_max.or(parent.temp_max),
            hysteresis: self.hysteresis.or(parent.hysteresis),
            confirm_after: self.confirm_after.or(parent.confirm_after),
            restore_after: self.restore_after.or(parent.restore_after),
            offline_after: self.offline_after.or(parent.offline_after),
            battery_low: self.battery_low.or(parent.battery_low),
            humidity_min: self.humidity_min.or(parent.humidity_min),
            humidity_max: self.humidity_max.or(parent.humidity_max),
            humidity_hysteresis: self.humidity_hysteresis.or(parent.humidity_hysteresis),
            door_open_after: self.door_open_after.or(parent.door_open_after),
        }
    }

    /// Checks the values of one level on their own: `Err((key, message))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, v) in [("temp_min", self.temp_min), ("temp_max", self.temp_max)] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err((key, "must be a finite number (°C)".into()));
            }
        }
        if let (Some(min), Some(max)) = (self.temp_min, self.temp_max) {
            if min >= max {
                return Err(("temp_min", format!("{min} must be below temp_max {max}")));
            }
        }
        if self
            .hysteresis
            .is_some_and(|h| !(h.is_finite() && h >= 0.0))
        {
            return Err(("hysteresis", "must be 0 or more (°C)".into()));
        }
        if self
            .battery_low
            .is_some_and(|b| !(b.is_finite() && (0.0..=100.0).contains(&b)))
        {
            return Err(("battery_low", "must be a percentage, 0 to 100".into()));
        }
        if self
            .offline_after
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            return Err(("offline_after", "must be at least 1s".into()));
        }
        // Each humidity value and door_open_after is checked while parsing (Rh, DoorOpenAfter);
        // what spans keys of one entry is checked here.
        if let (Some(min), Some(max)) = (self.humidity_min, self.humidity_max) {
            if min >= max {
                return Err((
                    "humidity_min",
                    format!("{min} must be below humidity_max {max}"),
                ));
            }
        }
        Ok(())
    }
}
