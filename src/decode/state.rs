//! The little a decoder must remember between messages: Shelly Gen2 `NotifyStatus` carries only
//! what changed, so the last known status of each device is kept to overlay the next delta on.
//! Everything else about decoding is a pure function of the message.
//!
//! The memory is bounded: at most [`MAX_DEVICES`] devices, the one updated least recently is
//! forgotten first. A flood of made-up device ids therefore costs at most that many entries and
//! only evicts real devices, whose next delta then starts from nothing (their next full status,
//! sent on every wake-up, restores them).

use std::collections::HashMap;

use super::Extra;

/// Devices remembered per subscription.
pub const MAX_DEVICES: usize = 4096;

/// Decoder memory, one per subscription; passed as `&mut` into [`decode`](super::decode).
pub struct DecodeState {
    shelly: HashMap<String, Remembered>,
    /// Grows with every update; the entry with the smallest stamp is evicted first.
    clock: u64,
    /// How many devices are kept: always [`MAX_DEVICES`], except in the property tests, which
    /// need a bound small enough to pass thousands of times per run.
    max_devices: usize,
}

impl Default for DecodeState {
    fn default() -> Self {
        Self {
            shelly: HashMap::new(),
            clock: 0,
            max_devices: MAX_DEVICES,
        }
    }
}

struct Remembered {
    status: DeviceStatus,
    stamp: u64,
}

/// The last known values of one device, already checked and in °C. Components are kept by id,
/// sorted, at most [`MAX_EXTRA`](super::MAX_EXTRA) of each; `None` is a component whose last
/// report had no value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceStatus {
    pub temperatures: Vec<(u32, Option<f64>)>,
    pub humidities: Vec<(u32, Option<f64>)>,
    /// `window:N` components (door/window contacts): `Some(true)` is open.
    pub windows: Vec<(u32, Option<bool>)>,
    pub battery: Option<f64>,
    pub signal_strength: Option<f64>,
    pub extra: Extra,
}

/// Only the size: the config (which holds the state) is logged, thousands of devices are not.
impl std::fmt::Debug for DecodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeState")
            .field("devices", &self.shelly.len())
            .finish()
    }
}

impl DecodeState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A memory bounded to `max_devices` instead of [`MAX_DEVICES`], for the property tests.
    #[cfg(test)]
    pub(crate) fn with_max_devices(max_devices: usize) -> Self {
        Self {
            max_devices,
            ..Self::default()
        }
    }

    /// How many devices are remembered.
    pub fn len(&self) -> usize {
        self.shelly.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shelly.is_empty()
    }

    /// The last status stored for `device`.
    pub fn status(&self, device: &str) -> Option<&DeviceStatus> {
        self.shelly.get(device).map(|r| &r.status)
    }

    /// Stores `status` as the device's latest, evicting the stalest device when full.
    pub fn remember(&mut self, device: &str, status: DeviceStatus) {
        self.clock += 1;
        let stamp = self.clock;
        if let Some(r) = self.shelly.get_mut(device) {
            *r = Remembered { status, stamp };
            return;
        }
        if self.shelly.len() >= self.max_devices {
            let stalest = self
                .shelly
                .iter()
                .min_by_key(|(_, r)| r.stamp)
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                self.shelly.remove(&k);
            }
        }
        self.shelly
            .insert(device.to_owned(), Remembered { status, stamp });
    }
}
