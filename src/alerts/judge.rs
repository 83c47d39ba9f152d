//! Judging one reading: how a temperature or a humidity moves its part of a unit's state (with
//! hysteresis on the way back), and how a battery level raises or clears `low_battery`. Part
//! of [`Track`]'s transitions; the entry points are in `unit.rs`.
//!
//! Temperature and humidity follow the same path (`ok` → `excursion` → `restoring` → `ok`), each
//! with its own limits, hysteresis and alert type; only a temperature excursion escalates to
//! `alarm` (in `unit.rs`, on time) and only the temperature part is the unit's shown state.

use super::model::{AlertType, Severity, Side};
use super::rules::{RestoreAfter, UnitRules, BATTERY_HYSTERESIS};
use super::unit::{Cx, Temp, Track};

/// A quantity judged against limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quantity {
    Temperature,
    Humidity,
}

/// A quantity's limits for one unit; at least one of `min` and `max` is set.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub hysteresis: f64,
    pub restore_after: RestoreAfter,
}

impl Quantity {
    pub const ALL: [Quantity; 2] = [Quantity::Temperature, Quantity::Humidity];

    /// Its limits from the unit's rules, `None` when it has no rule.
    pub fn limits(self, rules: &UnitRules) -> Option<Limits> {
        match self {
            Quantity::Temperature => rules.temp.map(|r| Limits {
                min: Some(r.min),
                max: Some(r.max),
                hysteresis: r.hysteresis,
                restore_after: r.restore_after,
            }),
            Quantity::Humidity => rules.humidity.map(|r| Limits {
                min: r.min,
                max: r.max,
                hysteresis: r.hysteresis,
                restore_after: r.restore_after,
            }),
        }
    }

    fn alert_type(self) -> AlertType {
        match self {
            Quantity::Temperature => AlertType::TemperatureExcursion,
            Quantity::Humidity => AlertType::HumidityExcursion,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Quantity::Temperature => "temperature",
            Quantity::Humidity => "humidity",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Quantity::Temperature => "°C",
            Quantity::Humidity => "%RH",
        }
    }
}

/// Where a value falls relative to an excursion on `side`.
#[derive(Debug, PartialEq)]
enum Band {
    Out,
    /// In range but not yet past the hysteresis: does not count towards restoring.
    Dead,
    In,
}

fn band(v: f64, l: &Limits, side: Side) -> Band {
    if l.max.is_some_and(|m| v > m) || l.min.is_some_and(|m| v < m) {
        Band::Out
    } else if (side == Side::Max && l.max.is_some_and(|m| v > m - l.hysteresis))
        || (side == Side::Min && l.min.is_some_and(|m| v < m + l.hysteresis))
    {
        Band::Dead
    } else {
        Band::In
    }
}

impl Track {
    pub(super) fn part(&self, q: Quantity) -> &Temp {
        match q {
            Quantity::Temperature => &self.temp,
            Quantity::Humidity => &self.humidity,
        }
    }

    fn part_mut(&mut self, q: Quantity) -> &mut Temp {
        match q {
            Quantity::Temperature => &mut self.temp,
            Quantity::Humidity => &mut self.humidity,
        }
    }

    /// Sets the reason of a shown-state change: only the temperature part is shown.
    fn say(cx: &mut Cx, q: Quantity, why: String) {
        if q == Quantity::Temperature {
            cx.reason = why;
        }
    }

    pub(super) fn judge(&mut self, cx: &mut Cx, q: Quantity, v: f64) {
        let Some(l) = q.limits(&cx.book.rules) else {
            return;
        };
        let (name, unit) = (q.name(), q.unit());
        match self.part(q).clone() {
            Temp::Ok => {
                let (side, limit, word) = match (l.max, l.min) {
                    (Some(max), _) if v > max => (Side::Max, max, "above the maximum"),
                    (_, Some(min)) if v < min => (Side::Min, min, "below the minimum"),
                    _ => return,
                };
                *self.part_mut(q) = Temp::Excursion {
                    side,
                    since: cx.now,
                };
                Self::say(cx, q, format!("{name} {v} {unit} {word} {limit} {unit}"));
                let message = format!("{}: {name} {v} {unit} is {word} {limit} {unit}", cx.label());
                let mut alert = self.alert(cx, q.alert_type(), Severity::Warning, message);
                alert.value = Some(v);
                alert.threshold = Some(limit);
                alert.threshold_violated = Some(side);
                self.trigger(cx, alert);
            }
            old @ (Temp::Excursion { side, since } | Temp::Alarm { side, since }) => {
                if band(v, &l, side) == Band::In {
                    *self.part_mut(q) = Temp::Restoring {
                        side,
                        since,
                        escalated: matches!(old, Temp::Alarm { .. }),
                        in_band_since: None,
                        readings: 0,
                    };
                    Self::say(cx, q, format!("{name} back in range ({v} {unit})"));
                    cx.changed = true;
                    self.in_band(cx, q, &l);
                }
            }
            Temp::Restoring {
                side,
                since,
                escalated,
                ..
            } => match band(v, &l, side) {
                Band::Out => {
                    *self.part_mut(q) = if escalated {
                        Temp::Alarm { side, since }
                    } else {
                        Temp::Excursion { side, since }
                    };
                    Self::say(cx, q, format!("{name} out of range again ({v} {unit})"));
                    cx.changed = true;
                }
                Band::Dead => {
                    if let Temp::Restoring {
                        in_band_since,
                        readings,
                        ..
                    } = self.part_mut(q)
                    {
                        cx.changed |= in_band_since.take().is_some() || *readings > 0;
                        *readings = 0;
                    }
                }
                Band::In => self.in_band(cx, q, &l),
            },
        }
    }

    /// One more reading inside the band while restoring.
    fn in_band(&mut self, cx: &mut Cx, q: Quantity, l: &Limits) {
        let Temp::Restoring {
            in_band_since,
            readings,
            ..
        } = self.part_mut(q)
        else {
            return;
        };
        in_band_since.get_or_insert(cx.now);
        *readings += 1;
        cx.changed = true;
        if let RestoreAfter::Readings(n) = l.restore_after {
            if *readings >= n {
                self.restored(cx, q, &format!("back in range for {n} readings"));
            }
        }
    }

    pub(super) fn restored(&mut self, cx: &mut Cx, q: Quantity, why: &str) {
        *self.part_mut(q) = Temp::Ok;
        Self::say(cx, q, why.to_string());
        cx.changed = true;
        self.resolve(cx, q.alert_type());
    }

    pub(super) fn battery(&mut self, cx: &mut Cx, b: f64) {
        let low = cx.book.rules.battery_low;
        if !self.battery_low && b <= low {
            self.battery_low = true;
            cx.changed = true;
            let message = format!("{}: battery at {b} % (low at {low} %)", cx.label());
            let mut alert = self.alert(cx, AlertType::LowBattery, Severity::Info, message);
            alert.value = Some(b);
            alert.threshold = Some(low);
            alert.threshold_violated = Some(Side::Min);
            self.trigger(cx, alert);
        } else if self.battery_low && b >= low + BATTERY_HYSTERESIS {
            self.battery_low = false;
            cx.changed = true;
            self.resolve(cx, AlertType::LowBattery);
        }
    }
}
