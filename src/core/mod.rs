//! The core layer: the data every other layer talks about, and nothing that does I/O beyond
//! reading a file it is handed. It imports nothing from the rest of the crate, so anything may
//! depend on it and it can be read (and tested) on its own.
//!
//! - [`registry`]: organizations → sites → units → sensors, loaded and validated as a whole.
//! - [`ids`]: sensor id normalisation and the rules for registry ids.
//! - [`rules`]: the alert rule keys a registry entry may set (the data; the engine judges).
//! - [`rooms`]: the Socket.io room names of a unit, site and organization.
//! - [`reading`]: the `sensor:reading` wire type and the time format of the protocol.
//! - [`stats`]: counters for everything accepted, rejected or dropped, and the emit histogram.
//! - [`connections`]: the HTTP listeners' open connections, their cap (below the fd limit) and
//!   why some were refused or closed.
//! - [`health`]: what the MQTT edge and the reload report, read by the web and systemd views.
//! - [`duration`]: durations as written in config files (`"90s"`, `"5m"`).
//! - [`secret`]: a string whose `Debug` is `MASKED`.
//! - [`error`]: a file that could not be loaded, with its line and key.

pub mod connections;
pub mod duration;
pub mod error;
pub mod health;
pub mod ids;
pub mod reading;
pub mod registry;
pub mod rooms;
pub mod rules;
pub mod secret;
pub mod stats;
