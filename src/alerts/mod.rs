//! The alert engine: turns readings, device availability and the passing of time into unit
//! states and alerts (`temperature_excursion`, `monitoring_interrupted`, `low_battery`), announces
//! them to the organization's Socket.io rooms and to webhooks, and keeps them across restarts.
//! A freezer drifting warm is why the product exists: the alert must reach every dashboard of
//! the organization within a second, escalate even if the sensor then goes quiet, not flap on a
//! noisy reading, and neither be forgotten nor fired twice because the box rebooted.
//!
//! Layout (docs/alerts.md has the behaviour):
//! - [`rules`]: rule keys on registry entries and `[alerts]`, inheritance, validation.
//! - [`model`]: states, alert types, the open [`Alert`], event payloads, alert ids.
//! - `unit`: one unit's state and transitions (pure).
//! - [`machine`]: every unit plus the deadline queue (pure: time is an argument).
//! - [`engine`]: the task that owns the machine; [`store`] and [`webhook`] are its outputs.
//! - [`socket`]: `alert:ack` and `get:alerts`.
//!
//! [`Alerts`] is the cheap-clone handle the pipeline and socket handlers hold: a sender into the
//! engine's input queue plus a read-only view of the open alerts, replaced by the engine after
//! every change so that `get:alerts` never waits behind readings.

pub mod machine;
pub mod model;
pub mod rules;
pub mod store;
mod unit;
pub mod webhook;

pub use machine::AckError;
pub use model::{Alert, AlertType, Event, Severity, UnitState};
pub use rules::{AlertsConfig, RuleBook, RuleError, RuleSet};
