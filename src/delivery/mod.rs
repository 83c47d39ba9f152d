//! Delivery: how events leave the process for sockets. [`fanout`] delivers an event to the
//! sockets of a set of rooms with the slow-client policy; [`batch`] adds the optional
//! `sensor:readings:batch` compatibility events on top of it.

pub mod batch;
pub mod fanout;

pub use batch::Batcher;
pub use fanout::{to_json, Fanout, Json, Kind, SlowPolicy};
