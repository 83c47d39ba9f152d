//! The physics of a simulated sensor: a pure function of its state and a seeded random
//! generator, so a test can run a day of readings in milliseconds. See the parent module for
//! what a sensor does.

/// The quiet sensor's schedule, in steps: quiet for `QUIET_LEN` steps from `QUIET_START` of
/// every `QUIET_CYCLE` (at 5 s: after 1 minute, for 3 minutes, every 10 minutes).
const QUIET_CYCLE: u64 = 120;
const QUIET_START: u64 = 12;
const QUIET_LEN: u64 = 36;

/// The kind of place a unit is, which sets its base temperature and humidity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Freezer,
    Fridge,
    Room,
}

impl UnitKind {
    /// A guess from the unit's name and id; a fridge when nothing fits.
    pub fn guess(unit_id: &str, unit_name: Option<&str>) -> UnitKind {
        let text = format!("{} {}", unit_name.unwrap_or(""), unit_id).to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
        if has(&["freez", "frozen", "deep-", "ice"]) {
            UnitKind::Freezer
        } else if has(&["fridge", "chill", "cool", "cold", "refrig"]) {
            UnitKind::Fridge
        } else if has(&["room", "office", "ambient", "hall", "store", "lobby", "dry"]) {
            UnitKind::Room
        } else {
            UnitKind::Fridge
        }
    }

    pub fn base_temperature(self) -> f64 {
        match self {
            UnitKind::Freezer => -18.0,
            UnitKind::Fridge => 4.0,
            UnitKind::Room => 21.0,
        }
    }

    fn base_humidity(self) -> f64 {
        match self {
            UnitKind::Freezer => 75.0,
            UnitKind::Fridge => 55.0,
            UnitKind::Room => 40.0,
        }
    }

    /// How far a door opening lifts the reading, at most (°C).
    fn door_peak(self) -> f64 {
        match self {
            UnitKind::Freezer => 8.0,
            UnitKind::Fridge => 5.0,
            UnitKind::Room => 1.5,
        }
    }

    /// How far an excursion climbs, at most (°C).
    fn excursion_peak(self) -> f64 {
        match self {
            UnitKind::Freezer => 15.0,
            UnitKind::Fridge => 10.0,
            UnitKind::Room => 8.0,
        }
    }
}

/// One measurement as a sensor would send it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// °C, two decimals (the resolution of common probes).
    pub temperature: f64,
    /// %RH, one decimal.
    pub humidity: f64,
    /// %, whole.
    pub battery: f64,
    /// dBm, whole.
    pub rssi: f64,
}

/// One sensor's physical state between steps.
#[derive(Debug, Clone)]
pub struct SensorModel {
    pub kind: UnitKind,
    base: f64,
    /// Short-term drift (an AR(1) process around 0).
    drift: f64,
    /// Degrees the door (or its aftermath) adds right now; `door_steps` left while open.
    door: f64,
    door_steps: u32,
    /// Steps into the current excursion and its length and height; `None` when there is none.
    excursion: Option<(u32, u32, f64)>,
    battery: f64,
    rssi: f64,
    step: u64,
    rng: fastrand::Rng,
    /// Set when the unit has a door contact: its door then follows the contact (see
    /// [`SensorModel::follow_door`]) instead of opening at random.
    door_open: Option<bool>,
}

/// Chance per step that a door is opened, and that an excursion starts.
const DOOR_CHANCE: f64 = 0.02;
const EXCURSION_CHANCE: f64 = 0.002;
/// Steps of one compressor cycle, and its amplitude (°C).
const CYCLE_STEPS: f64 = 240.0;
const CYCLE_AMPLITUDE: f64 = 0.4;

impl SensorModel {
    pub fn new(kind: UnitKind, seed: u64) -> SensorModel {
        let mut rng = fastrand::Rng::with_seed(seed);
        SensorModel {
            kind,
            base: kind.base_temperature() + (rng.f64() - 0.5),
            drift: 0.0,
            door: 0.0,
            door_steps: 0,
            excursion: None,
            battery: 60.0 + rng.f64() * 40.0,
            rssi: -100.0 + rng.f64() * 30.0,
            step: 0,
            rng,
            door_open: None,
        }
    }

    /// The unit's door contact says the door is `open` (for the next sample): while open the
    /// air warms towards the door peak, once shut it cools back.
    pub fn follow_door(&mut self, open: bool) {
        self.door_open = Some(open);
    }

    /// Whether an excursion is under way (for logs and tests).
    pub fn in_excursion(&self) -> bool {
        self.excursion.is_some()
    }

    /// Advances one step and returns what the sensor measures now.
    pub fn next_sample(&mut self) -> Sample {
        self.step += 1;
        let kind = self.kind;
        self.drift = self.drift * 0.9 + normal(&mut self.rng) * 0.08;
        if let Some(open) = self.door_open {
            let peak = kind.door_peak();
            self.door = if open {
                (self.door + peak * 0.2).min(peak)
            } else {
                self.door * 0.5
            };
        } else if self.door_steps > 0 {
            self.door_steps -= 1;
        } else {
            self.door *= 0.5; // shut: the air cools back down
            if self.rng.f64() < DOOR_CHANCE {
                self.door_steps = self.rng.u32(1..=3);
                self.door = kind.door_peak() * (0.5 + self.rng.f64() * 0.5);
            }
        }
        let excursion = match self.excursion {
            Some((at, len, peak)) if at < len => {
                self.excursion = Some((at + 1, len, peak));
                peak * excursion_shape(at, len)
            }
            _ => {
                self.excursion = None;
                if self.rng.f64() < EXCURSION_CHANCE {
                    let len = self.rng.u32(24..=72);
                    let peak = kind.excursion_peak() * (0.6 + self.rng.f64() * 0.4);
                    self.excursion = Some((0, len, peak));
                }
                0.0
            }
        };
        let cycle = if kind == UnitKind::Room {
            0.0
        } else {
            CYCLE_AMPLITUDE * (std::f64::consts::TAU * self.step as f64 / CYCLE_STEPS).sin()
        };
        let temperature = self.base + self.drift + cycle + self.door + excursion;
        let humidity =
            kind.base_humidity() + self.door * 2.0 + normal(&mut self.rng) * 1.5 - excursion * 0.5;
        self.battery = (self.battery - 0.002).max(1.0);
        Sample {
            temperature: round_to(temperature, 2),
            humidity: round_to(humidity.clamp(0.0, 100.0), 1),
            battery: self.battery.round(),
            rssi: (self.rssi + normal(&mut self.rng) * 2.0).round(),
        }
    }
}

/// Per step, the chance that a closed door is opened (at 5 s a step: every 8 minutes or so).
const CONTACT_OPEN_CHANCE: f64 = 0.01;
/// An ordinary opening, in steps (30 s to 70 s at 5 s a step: "a minute").
const CONTACT_SHORT: std::ops::RangeInclusive<u32> = 6..=14;
/// The share of openings left open too long, and how long (6 to 10 minutes at 5 s a step:
/// past a `door_open_after` of 5 minutes).
const CONTACT_LONG_CHANCE: f64 = 0.12;
const CONTACT_LONG: std::ops::RangeInclusive<u32> = 72..=120;

/// A door contact: closed most of the time, opened for about a minute now and then, and once
/// in a while left open for too long. Pure, like [`SensorModel`].
#[derive(Debug, Clone)]
pub struct DoorModel {
    /// Steps the door stays open from now; 0: closed.
    open_steps: u32,
    battery: f64,
    rng: fastrand::Rng,
}

impl DoorModel {
    pub fn new(seed: u64) -> DoorModel {
        let mut rng = fastrand::Rng::with_seed(seed);
        DoorModel {
            open_steps: 0,
            battery: 70.0 + rng.f64() * 30.0,
            rng,
        }
    }

    /// Advances one step; whether the door is open now.
    pub fn step(&mut self) -> bool {
        if self.open_steps > 0 {
            self.open_steps -= 1;
        } else if self.rng.f64() < CONTACT_OPEN_CHANCE {
            self.open_steps = if self.rng.f64() < CONTACT_LONG_CHANCE {
                self.rng.u32(CONTACT_LONG)
            } else {
                self.rng.u32(CONTACT_SHORT)
            };
        }
        self.battery = (self.battery - 0.001).max(1.0);
        self.is_open()
    }

    pub fn is_open(&self) -> bool {
        self.open_steps > 0
    }

    /// %, whole.
    pub fn battery(&self) -> f64 {
        self.battery.round()
    }
}

/// 0 → 1 over the first third, holds, back to 0 over the last third.
fn excursion_shape(at: u32, len: u32) -> f64 {
    let third = (len / 3).max(1) as f64;
    let at = at as f64;
    let len = len as f64;
    if at < third {
        at / third
    } else if at > len - third {
        ((len - at) / third).max(0.0)
    } else {
        1.0
    }
}

/// A standard normal variate (Box-Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// Whether the quiet sensor is quiet at `step`.
pub fn is_quiet(step: u64) -> bool {
    (QUIET_START..QUIET_START + QUIET_LEN).contains(&(step % QUIET_CYCLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_kinds_are_guessed_from_names_and_ids() {
        let g = UnitKind::guess;
        assert_eq!(
            g("unit-walkin-1", Some("Walk-in freezer")),
            UnitKind::Freezer
        );
        assert_eq!(g("unit-fridge-2", Some("Prep fridge")), UnitKind::Fridge);
        assert_eq!(g("x", Some("Cold room")), UnitKind::Fridge);
        assert_eq!(g("server-room", None), UnitKind::Room);
        assert_eq!(g("u1", None), UnitKind::Fridge);
    }

    #[test]
    fn readings_drift_around_the_base_with_spikes_and_excursions() {
        let mut m = SensorModel::new(UnitKind::Fridge, 7);
        let samples: Vec<Sample> = (0..20_000).map(|_| m.next_sample()).collect();
        let temps: Vec<f64> = samples.iter().map(|s| s.temperature).collect();
        let mut sorted = temps.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        assert!((3.0..5.0).contains(&median), "median {median}");
        // Gentle: consecutive readings mostly within a few tenths.
        let calm = temps
            .windows(2)
            .filter(|w| (w[1] - w[0]).abs() < 0.5)
            .count();
        assert!(calm as f64 > 0.8 * temps.len() as f64, "{calm}");
        // Door spikes (a few degrees) and excursions (well above 8 °C) both happen.
        assert!(temps.iter().any(|t| (7.0..9.0).contains(t)));
        assert!(temps.iter().any(|t| *t > 11.0), "an excursion");
        assert!(temps.iter().all(|t| (-5.0..25.0).contains(t)));
        let freezer = SensorModel::new(UnitKind::Freezer, 1).next_sample();
        assert!((-20.0..-15.0).contains(&freezer.temperature), "{freezer:?}");
        assert!(samples.iter().all(|s| (0.0..=100.0).contains(&s.humidity)));
        assert!(samples.iter().all(|s| (1.0..=100.0).contains(&s.battery)));
    }

    /// A door contact opens for about a minute now and then, and once in a while stays open
    /// past 5 minutes (at 5 s a step); a probe of its unit warms while it is open.
    #[test]
    fn a_door_opens_for_a_minute_now_and_then_and_sometimes_too_long() {
        let mut door = DoorModel::new(3);
        let states: Vec<bool> = (0..50_000).map(|_| door.step()).collect();
        let mut openings = Vec::new();
        let mut run = 0;
        for open in &states {
            match (open, run) {
                (true, _) => run += 1,
                (false, 0) => {}
                (false, n) => {
                    openings.push(n);
                    run = 0;
                }
            }
        }
        let short = openings.iter().filter(|n| (6..=15).contains(*n)).count();
        let long = openings.iter().filter(|n| **n >= 60).count();
        assert!(openings.len() > 100, "{}", openings.len());
        assert!(short > openings.len() * 3 / 4, "{openings:?}");
        assert!(long >= 5 && long < openings.len() / 4, "{openings:?}");
        assert!(!states[..10].iter().all(|o| *o) && (1.0..=100.0).contains(&door.battery()));

        let mut probe = SensorModel::new(UnitKind::Freezer, 1);
        probe.follow_door(false);
        let shut = probe.next_sample().temperature;
        probe.follow_door(true);
        let mut warm = shut;
        for _ in 0..10 {
            warm = probe.next_sample().temperature;
        }
        assert!(warm > shut + 5.0, "{shut} -> {warm}");
        probe.follow_door(false);
        for _ in 0..10 {
            warm = probe.next_sample().temperature;
        }
        assert!(warm < shut + 2.0, "cools back: {warm}");
    }

    #[test]
    fn one_sensor_goes_quiet_for_a_while_but_not_in_the_first_round() {
        assert!(!is_quiet(0));
        let quiet = (0..QUIET_CYCLE).filter(|s| is_quiet(*s)).count() as u64;
        assert_eq!(quiet, QUIET_LEN);
        assert!(is_quiet(QUIET_START) && !is_quiet(QUIET_START + QUIET_LEN));
    }
}
