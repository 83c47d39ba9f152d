//! Judging one reading: how a temperature moves the temperature part of a unit's state (with
//! hysteresis on the way back), and how a battery level raises or clears `low_battery`. Part
//! of [`Track`]'s transitions; the entry points are in `unit.rs`.

use super::model::{AlertType, Severity, Side};
use super::rules::{RestoreAfter, TempRule, BATTERY_HYSTERESIS};
use super::unit::{Cx, Temp, Track};

/// Where a temperature falls relative to an excursion on `side`.
#[derive(Debug, PartialEq)]
enum Band {
    Out,
    /// In range but not yet past the hysteresis: does not count towards restoring.
    Dead,
    In,
}

fn band(t: f64, r: &TempRule, side: Side) -> Band {
    if t > r.max || t < r.min {
        Band::Out
    } else if (side == Side::Max && t > r.max - r.hysteresis)
        || (side == Side::Min && t < r.min + r.hysteresis)
    {
        Band::Dead
    } else {
        Band::In
    }
}

impl Track {
    pub(super) fn temperature(&mut self, cx: &mut Cx, t: f64) {
        let Some(r) = cx.book.rules.temp else {
            return;
        };
        match self.temp.clone() {
            Temp::Ok => {
                let side = if t > r.max {
                    Side::Max
                } else if t < r.min {
                    Side::Min
                } else {
                    return;
                };
                self.temp = Temp::Excursion {
                    side,
                    since: cx.now,
                };
                let (limit, word) = match side {
                    Side::Max => (r.max, "above the maximum"),
                    Side::Min => (r.min, "below the minimum"),
                };
                cx.reason = format!("temperature {t} °C {word} {limit} °C");
                let message = format!("{}: temperature {t} °C is {word} {limit} °C", cx.label());
                let mut alert = self.alert(
                    cx,
                    AlertType::TemperatureExcursion,
                    Severity::Warning,
                    message,
                );
                alert.value = Some(t);
                alert.threshold = Some(limit);
                alert.threshold_violated = Some(side);
                self.trigger(cx, alert);
            }
            Temp::Excursion { side, since } | Temp::Alarm { side, since } => {
                if band(t, &r, side) == Band::In {
                    self.temp = Temp::Restoring {
                        side,
                        since,
                        escalated: matches!(self.temp, Temp::Alarm { .. }),
                        in_band_since: None,
                        readings: 0,
                    };
                    cx.reason = format!("temperature back in range ({t} °C)");
                    cx.changed = true;
                    self.in_band(cx, &r);
                }
            }
            Temp::Restoring {
                side,
                since,
                escalated,
                ..
            } => match band(t, &r, side) {
                Band::Out => {
                    self.temp = if escalated {
                        Temp::Alarm { side, since }
                    } else {
                        Temp::Excursion { side, since }
                    };
                    cx.reason = format!("temperature out of range again ({t} °C)");
                    cx.changed = true;
                }
                Band::Dead => {
                    if let Temp::Restoring {
                        in_band_since,
                        readings,
                        ..
                    } = &mut self.temp
                    {
                        cx.changed |= in_band_since.take().is_some() || *readings > 0;
                        *readings = 0;
                    }
                }
                Band::In => self.in_band(cx, &r),
            },
        }
    }

    /// One more reading inside the band while restoring.
    pub(super) fn in_band(&mut self, cx: &mut Cx, r: &TempRule) {
        let Temp::Restoring {
            in_band_since,
            readings,
            ..
        } = &mut self.temp
        else {
            return;
        };
        in_band_since.get_or_insert(cx.now);
        *readings += 1;
        cx.changed = true;
        if let RestoreAfter::Readings(n) = r.restore_after {
            if *readings >= n {
                self.restored(cx, &format!("back in range for {n} readings"));
            }
        }
    }

    pub(super) fn restored(&mut self, cx: &mut Cx, why: &str) {
        self.temp = Temp::Ok;
        cx.reason = why.to_string();
        cx.changed = true;
        self.resolve(cx, AlertType::TemperatureExcursion);
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
