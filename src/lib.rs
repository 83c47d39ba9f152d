//! sensorcast: MQTT sensor readings → unit/site/organization → Socket.io rooms.
//!
//! The flow of one reading, layer by layer:
//!
//! ```text
//! MQTT ─▶ ingest ─▶ pipeline: subscription → decode → route (hub: seq, history) ─▶ delivery ─▶ realtime ─▶ sockets
//!                             └─▶ alerts (rules, states, alerts) ─▶ delivery, webhooks, state file
//! cluster mode: pipeline, alerts ─▶ cluster ─▶ Redis (fenced scripts, one stream) ─▶ cluster ─▶ delivery
//! web (health, /api, status page, metrics) reads all of it; service wires it together.
//! ```
//!
//! The layering rule (checked by `tests/architecture.rs`): a module imports only from layers
//! below its own, never from its own layer's siblings or from above, and top-level modules form
//! no cycle. Layers, bottom to top:
//!
//! 0. [`core`]: registry model, rule data, the reading wire type, room names, counters, health
//!    state, secrets. Imports nothing from the crate.
//! 1. [`decode`] (payloads → readings), [`auth`] (JWT → principal), [`delivery`] (fan-out to
//!    rooms with the slow-client policy, batching).
//!    [`storage`] (the history store: readings and alert events in SQLite, rollups, retention).
//! 2. [`alerts`]: the alert engine (rules, unit states, alerts, persistence, webhooks).
//! 3. [`pipeline`]: one MQTT message: subscription matching, decoding, routing through the hub.
//! 4. [`cluster`]: cluster mode (`[cluster]`): membership, unit ownership, the shared feed and
//!    the event stream in Redis (docs/scaling.md). Absent from a single box.
//! 5. The edges that face peers: [`ingest`] (MQTT), [`realtime`] (Socket.io: handshake, every
//!    client event, the connection transport).
//! 6. [`web`]: health, `/api/`, the status page, the `/live` wallboard, `/metrics`.
//! 7. [`config`]: composes the sections each layer owns, env overrides, secrets.
//! 8. [`service`] (the composition root: run, reload, systemd) and [`simulate`] (a tool).
//!
//! `main.rs` is only the CLI.

pub mod alerts;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod core;
pub mod decode;
pub mod delivery;
pub mod ingest;
pub mod pipeline;
pub mod realtime;
pub mod service;
pub mod simulate;
pub mod storage;
pub mod web;

pub use service::{run, run_with, Control, Listeners, RunError};
