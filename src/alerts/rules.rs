//! Alert rules: the keys an installer writes on `[[org]]`, `[[site]]` and `[[unit]]` registry
//! entries and in the service config's `[alerts]` table, and how they combine. Each key is
//! inherited on its own, unit > site > org > `[alerts]`, so a site can set `temp_max` for all its
//! freezers while one unit overrides only `confirm_after`. The result, one [`UnitRules`] per unit,
//! is computed once per registry (load or reload) and validated as a whole: a bad combination is
//! a load error naming the unit, never a surprise at 3 a.m.

use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
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
    /// %RH limits; either alone is a rule.
    pub humidity_min: Option<Rh>,
    pub humidity_max: Option<Rh>,
    pub humidity_hysteresis: Rh,
    /// A door open longer than this raises `door_open`; none: no door rule.
    pub door_open_after: Option<DoorOpenAfter>,
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
            humidity_min: None,
            humidity_max: None,
            humidity_hysteresis: Rh(DEFAULT_HUMIDITY_HYSTERESIS),
            door_open_after: None,
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
            humidity_min: self.humidity_min.map(|v| v.0),
            humidity_max: self.humidity_max.map(|v| v.0),
            humidity_hysteresis: Some(self.humidity_hysteresis.0),
            door_open_after: self.door_open_after.map(|d| d.0),
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

/// The humidity rule of a unit: at least one limit is known (%RH).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HumidityRule {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub hysteresis: f64,
    pub restore_after: RestoreAfter,
}

/// The door rule of a unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DoorRule {
    /// A door open longer than this raises `door_open` (warning).
    pub open_after: Duration,
    /// ... which escalates to critical this long after it was raised.
    pub confirm_after: Duration,
}

/// The effective rules of one unit, after inheritance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitRules {
    /// `None` when the unit (with what it inherits) lacks `temp_min` or `temp_max`.
    pub temp: Option<TempRule>,
    pub offline_after: Duration,
    pub battery_low: f64,
    /// `None` when neither `humidity_min` nor `humidity_max` applies to the unit.
    pub humidity: Option<HumidityRule>,
    /// `None` without `door_open_after`.
    pub door: Option<DoorRule>,
}

/// One unit as the engine sees it: where it is, its rules, how many sensors report for it.
#[derive(Debug, Clone)]
pub struct UnitBook {
    pub unit: Arc<Unit>,
    pub rules: UnitRules,
    pub sensors: usize,
    /// The registry's (normalised) ids of those sensors.
    pub sensor_ids: BTreeSet<String>,
}

impl RuleError {
    /// The unit whose combined rules are not usable.
    pub fn unit(&self) -> &str {
        match self {
            RuleError::Band { unit, .. } | RuleError::HumidityBand { unit, .. } => unit,
        }
    }
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
    #[error("unit {unit:?}: humidity_min {min} + humidity_hysteresis {hysteresis} must be below humidity_max {max} (keys inherit unit > site > org > [alerts])")]
    HumidityBand {
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
        let mut sensors: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for (id, unit) in registry.sensors() {
            sensors.entry(&unit.id).or_default().insert(id.to_string());
        }
        let mut units = HashMap::new();
        for unit in registry.units() {
            let set = RuleSet::for_unit(registry, unit, defaults);
            let rules = effective(&unit.id, &set)?;
            let sensor_ids = sensors.remove(&*unit.id).unwrap_or_default();
            let book = UnitBook {
                unit: unit.clone(),
                rules,
                sensors: sensor_ids.len(),
                sensor_ids,
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

impl RuleSet {
    /// The keys that apply to `unit`: its own over its site's over its organization's over
    /// `defaults` (`[alerts]`).
    pub fn for_unit(registry: &Registry, unit: &Unit, defaults: &RuleSet) -> RuleSet {
        let none = RuleSet::default();
        registry
            .unit_rules(&unit.id)
            .unwrap_or(&none)
            .over(registry.site_rules(&unit.site).unwrap_or(&none))
            .over(registry.org_rules(&unit.org).unwrap_or(&none))
            .over(defaults)
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
    let confirm_after = set.confirm_after.unwrap_or(DEFAULT_CONFIRM_AFTER);
    let restore_after = set.restore_after.unwrap_or(DEFAULT_RESTORE_AFTER);
    Ok(UnitRules {
        temp,
        offline_after: set.offline_after.unwrap_or(DEFAULT_OFFLINE_AFTER),
        battery_low: set.battery_low.unwrap_or(DEFAULT_BATTERY_LOW),
        humidity: humidity(unit, set, restore_after)?,
        door: set.door_open_after.map(|open_after| DoorRule {
            open_after,
            confirm_after,
        }),
    })
}

fn humidity(
    unit: &str,
    set: &RuleSet,
    restore_after: RestoreAfter,
) -> Result<Option<HumidityRule>, RuleError> {
    let hysteresis = set
        .humidity_hysteresis
        .unwrap_or(DEFAULT_HUMIDITY_HYSTERESIS);
    let (min, max) = (set.humidity_min, set.humidity_max);
    if let (Some(min), Some(max)) = (min, max) {
        if min + hysteresis >= max {
            return Err(RuleError::HumidityBand {
                unit: unit.to_string(),
                min,
                max,
                hysteresis,
            });
        }
    }
    Ok((min.is_some() || max.is_some()).then_some(HumidityRule {
        min,
        max,
        hysteresis,
        restore_after,
    }))
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
