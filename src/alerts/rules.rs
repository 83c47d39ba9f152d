//! Alert rules: the keys an installer writes on `[[org]]`, `[[site]]` and `[[unit]]` registry
//! entries and in the service config's `[alerts]` table, and how they combine. Each key is
//! inherited on its own, unit > site > org > `[alerts]`, so a site can set `temp_max` for all its
//! freezers while one unit overrides only `confirm_after`. The result, one [`UnitRules`] per unit,
//! is computed once per registry (load or reload) and validated as a whole: a bad combination is
//! a load error naming the unit, never a surprise at 3 a.m.

use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

use crate::core::duration::duration_str;
use crate::core::registry::{Registry, Unit};
pub use crate::core::rules::*;

/// The `[alerts]` table of the service config: the last level of rule inheritance, plus the
/// engine's own knobs (webhooks, resume grace).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub temp_min: Option<f64>,
    pub temp_max: Option<f64>,
    pub hysteresis: f64,
    #[serde(with = "duration_str")]
    pub confirm_after: Duration,
    pub restore_after: RestoreAfter,
    #[serde(with = "duration_str")]
    pub offline_after: Duration,
    pub battery_low: f64,
    /// After a restart, no time-driven transition fires before this much time has passed, so
    /// readings the broker queued while sensorcast was away are seen first.
    #[serde(with = "duration_str")]
    pub resume_grace: Duration,
    /// `http://` or `https://` URLs that receive every alert event as a JSON POST.
    pub webhooks: Vec<String>,
    /// PEM CA certificates trusted for `https://` webhooks besides the system's bundle.
    pub webhook_ca_file: Option<PathBuf>,
    /// Events waiting per webhook; when full, new events for that webhook are dropped (counted).
    pub webhook_queue: usize,
    #[serde(with = "duration_str")]
    pub webhook_timeout: Duration,
    /// Attempts per event (first try included) before it is given up (counted as failed).
    pub webhook_max_attempts: u32,
    /// Retry backoff doubles from 500ms up to this.
    #[serde(with = "duration_str")]
    pub webhook_backoff_max: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            temp_min: None,
            temp_max: None,
            hysteresis: DEFAULT_HYSTERESIS,
            confirm_after: DEFAULT_CONFIRM_AFTER,
            restore_after: DEFAULT_RESTORE_AFTER,
            offline_after: DEFAULT_OFFLINE_AFTER,
            battery_low: DEFAULT_BATTERY_LOW,
            resume_grace: Duration::from_secs(60),
            webhooks: Vec::new(),
            webhook_ca_file: None,
            webhook_queue: 256,
            webhook_timeout: Duration::from_secs(5),
            webhook_max_attempts: 8,
            webhook_backoff_max: Duration::from_secs(60),
        }
    }
}

impl AlertsConfig {
    /// The defaults level of inheritance.
    pub fn defaults(&self) -> RuleSet {
        RuleSet {
            temp_min: self.temp_min,
            temp_max: self.temp_max,
            hysteresis: Some(self.hysteresis),
            confirm_after: Some(self.confirm_after),
            restore_after: Some(self.restore_after),
            offline_after: Some(self.offline_after),
            battery_low: Some(self.battery_low),
        }
    }

    /// `Err((key under alerts., message))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.defaults()
            .check()
            .map_err(|(k, m)| (k.to_string(), m))?;
        for (i, url) in self.webhooks.iter().enumerate() {
            super::webhook::parse_url(url).map_err(|m| (format!("webhooks[{i}]"), m))?;
        }
        if let Some(path) = &self.webhook_ca_file {
            let mut roots = rustls::RootCertStore::empty();
            super::webhook::add_ca_file(&mut roots, path)
                .map_err(|m| ("webhook_ca_file".to_string(), m))?;
        }
        if self.webhook_queue == 0 || self.webhook_max_attempts == 0 {
            return Err((
                "webhook_queue".into(),
                "webhook_queue and webhook_max_attempts must be above 0".into(),
            ));
        }
        if self.webhook_timeout.is_zero() {
            return Err(("webhook_timeout".into(), "must be above 0".into()));
        }
        Ok(())
    }
}

/// The temperature rule of a unit: both limits are known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TempRule {
    pub min: f64,
    pub max: f64,
    pub hysteresis: f64,
    pub confirm_after: Duration,
    pub restore_after: RestoreAfter,
}

/// The effective rules of one unit, after inheritance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitRules {
    /// `None` when the unit (with what it inherits) lacks `temp_min` or `temp_max`.
    pub temp: Option<TempRule>,
    pub offline_after: Duration,
    pub battery_low: f64,
}

/// One unit as the engine sees it: where it is, its rules, how many sensors report for it.
#[derive(Debug, Clone)]
pub struct UnitBook {
    pub unit: Arc<Unit>,
    pub rules: UnitRules,
    pub sensors: usize,
}

impl UnitBook {
    /// The unit's name for alert messages, else its id.
    pub fn label(&self) -> &str {
        self.unit.name.as_deref().unwrap_or(&self.unit.id)
    }
}

/// Why a registry's rules, combined, are not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("unit {unit:?}: temp_min {min} + hysteresis {hysteresis} must be below temp_max {max} (keys inherit unit > site > org > [alerts])")]
    Band {
        unit: String,
        min: f64,
        max: f64,
        hysteresis: f64,
    },
}

/// The effective rules of every unit of a registry.
#[derive(Debug, Clone, Default)]
pub struct RuleBook {
    units: HashMap<Arc<str>, UnitBook>,
}

impl RuleBook {
    pub fn build(registry: &Registry, defaults: &RuleSet) -> Result<RuleBook, RuleError> {
        let mut sensors: HashMap<&str, usize> = HashMap::new();
        for (_, unit) in registry.sensors() {
            *sensors.entry(&unit.id).or_default() += 1;
        }
        let none = RuleSet::default();
        let mut units = HashMap::new();
        for unit in registry.units() {
            let set = registry
                .unit_rules(&unit.id)
                .unwrap_or(&none)
                .over(registry.site_rules(&unit.site).unwrap_or(&none))
                .over(registry.org_rules(&unit.org).unwrap_or(&none))
                .over(defaults);
            let rules = effective(&unit.id, &set)?;
            let book = UnitBook {
                unit: unit.clone(),
                rules,
                sensors: sensors.get(&*unit.id).copied().unwrap_or(0),
            };
            units.insert(unit.id.clone(), book);
        }
        Ok(RuleBook { units })
    }

    pub fn get(&self, unit: &str) -> Option<&UnitBook> {
        self.units.get(unit)
    }

    pub fn units(&self) -> impl Iterator<Item = &UnitBook> {
        self.units.values()
    }
}

fn effective(unit: &str, set: &RuleSet) -> Result<UnitRules, RuleError> {
    let hysteresis = set.hysteresis.unwrap_or(DEFAULT_HYSTERESIS);
    let temp = match (set.temp_min, set.temp_max) {
        (Some(min), Some(max)) => {
            if min + hysteresis >= max {
                return Err(RuleError::Band {
                    unit: unit.to_string(),
                    min,
                    max,
                    hysteresis,
                });
            }
            Some(TempRule {
                min,
                max,
                hysteresis,
                confirm_after: set.confirm_after.unwrap_or(DEFAULT_CONFIRM_AFTER),
                restore_after: set.restore_after.unwrap_or(DEFAULT_RESTORE_AFTER),
            })
        }
        (None, None) => None,
        (min, max) => {
            warn!(
                unit,
                ?min,
                ?max,
                "unit has only one of temp_min/temp_max: no temperature rule (set both)"
            );
            None
        }
    };
    Ok(UnitRules {
        temp,
        offline_after: set.offline_after.unwrap_or(DEFAULT_OFFLINE_AFTER),
        battery_low: set.battery_low.unwrap_or(DEFAULT_BATTERY_LOW),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const REG: &str = r#"
[[org]]
id = "o1"
temp_min = 0
temp_max = 8
offline_after = "30m"
[[site]]
id = "s1"
org = "o1"
temp_max = 5.5
restore_after = 3
[[site]]
id = "s2"
org = "o1"
[[unit]]
id = "freezer"
site = "s1"
temp_min = -25
temp_max = -15
confirm_after = "90s"
[[unit]]
id = "fridge"
site = "s1"
[[unit]]
id = "plain"
site = "s2"
hysteresis = 1
[[sensor]]
id = "a"
unit = "freezer"
[[sensor]]
id = "b"
unit = "freezer"
"#;

    fn book(text: &str, defaults: &AlertsConfig) -> Result<RuleBook, RuleError> {
        let reg = Registry::parse(text, Path::new("r.toml")).expect("registry parses");
        RuleBook::build(&reg, &defaults.defaults())
    }

    #[test]
    fn each_key_inherits_unit_over_site_over_org_over_defaults() {
        let b = book(REG, &AlertsConfig::default()).unwrap();
        let freezer = b.get("freezer").unwrap();
        let t = freezer.rules.temp.unwrap();
        assert_eq!((t.min, t.max, t.hysteresis), (-25.0, -15.0, 0.5));
        assert_eq!(t.confirm_after, Duration::from_secs(90));
        assert_eq!(t.restore_after, RestoreAfter::Readings(3), "from the site");
        assert_eq!(freezer.rules.offline_after, Duration::from_secs(1800));
        assert_eq!(freezer.rules.battery_low, 20.0);
        assert_eq!(freezer.sensors, 2);

        let fridge = b.get("fridge").unwrap().rules.temp.unwrap();
        assert_eq!(
            (fridge.min, fridge.max),
            (0.0, 5.5),
            "min from org, max from site"
        );
        assert_eq!(fridge.confirm_after, DEFAULT_CONFIRM_AFTER);
        let plain = b.get("plain").unwrap().rules.temp.unwrap();
        assert_eq!((plain.min, plain.max, plain.hysteresis), (0.0, 8.0, 1.0));
    }

    #[test]
    fn a_unit_needs_both_limits_and_defaults_can_supply_them() {
        let text = "[[org]]\nid = \"o\"\ntemp_max = 4\n[[site]]\nid = \"s\"\norg = \"o\"\n[[unit]]\nid = \"u\"\nsite = \"s\"\n";
        let b = book(text, &AlertsConfig::default()).unwrap();
        assert_eq!(b.get("u").unwrap().rules.temp, None);
        let defaults = AlertsConfig {
            temp_min: Some(0.0),
            ..AlertsConfig::default()
        };
        let b = book(text, &defaults).unwrap();
        assert_eq!(b.get("u").unwrap().rules.temp.unwrap().max, 4.0);
    }

    #[test]
    fn inherited_limits_that_leave_no_band_are_an_error_naming_the_unit() {
        // The org's temp_max 8 with the unit's temp_min 7.8 and hysteresis 0.5: no room.
        let text = REG.replace(
            "id = \"plain\"\nsite = \"s2\"\nhysteresis = 1",
            "id = \"plain\"\nsite = \"s2\"\ntemp_min = 7.8",
        );
        let err = book(&text, &AlertsConfig::default()).unwrap_err();
        assert_eq!(
            err,
            RuleError::Band {
                unit: "plain".into(),
                min: 7.8,
                max: 8.0,
                hysteresis: 0.5
            }
        );
        assert!(err.to_string().contains("\"plain\""), "{err}");
    }

    #[test]
    fn restore_after_is_a_duration_or_a_count_and_keys_are_checked_per_entry() {
        #[derive(Deserialize)]
        struct T {
            r: RestoreAfter,
        }
        let parse = |s: &str| toml::from_str::<T>(&format!("r = {s}")).map(|t| t.r);
        assert_eq!(
            parse("\"90s\"").unwrap(),
            RestoreAfter::Time(Duration::from_secs(90))
        );
        assert_eq!(parse("3").unwrap(), RestoreAfter::Readings(3));
        assert!(parse("0").unwrap_err().to_string().contains("1 or more"));
        assert!(parse("true")
            .unwrap_err()
            .to_string()
            .contains("number of readings"));

        let bad = |key: &str, v: &str| {
            let text = REG.replace("hysteresis = 1", &format!("{key} = {v}"));
            let err = Registry::parse(&text, Path::new("r.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("unit[2].{key}")), "{err}");
        };
        bad("hysteresis", "-1");
        bad("battery_low", "120");
        bad("offline_after", "\"0s\"");
        bad("temp_min", "9\ntemp_max = 2");
    }

    #[test]
    fn the_alerts_table_is_validated() {
        let mut c = AlertsConfig::default();
        assert!(c.validate().is_ok());
        c.webhooks = vec!["https://example.com/hook".into()];
        assert!(c.validate().is_ok());
        c.webhooks.push("ftp://example.com/hook".into());
        assert_eq!(c.validate().unwrap_err().0, "webhooks[1]");
        c.webhooks.clear();
        c.hysteresis = f64::NAN;
        assert_eq!(c.validate().unwrap_err().0, "hysteresis");
    }
}
