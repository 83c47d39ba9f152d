//! Delivery: how events leave the process for sockets. One broadcast per event, encoded once,
//! to the union of its rooms; sockets that cannot take a broadcast right now are served one by
//! one with the slow-client policy.
//!
//! - [`fanout`]: the broadcast path and the drain pass.
//! - [`slow`]: the per-socket path (coalescing readings, queueing other events).
//! - [`congestion`]: which sockets' connections have stopped taking data.
//! - [`batch`]: the optional `sensor:readings:batch` compatibility events.

pub mod batch;
pub mod congestion;
pub mod fanout;
pub mod slow;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::sync::Arc;

pub use batch::Batcher;
pub use congestion::{Congestion, Flow};
pub use fanout::Fanout;
pub use slow::{SlowPolicy, SlowSockets, Why, SLOW_ROOM};

use crate::core::reading::SensorReading;

/// A serialised event payload, shared by every socket it goes to.
pub type Json = Arc<RawValue>;

pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Json {
    let raw = serde_json::value::to_raw_value(value).expect("event types serialise");
    Arc::from(raw)
}

/// What is delivered: a reading (serialised by the broadcast itself, once) or an event already
/// serialised. Clones share the value.
#[derive(Debug, Clone)]
pub enum Payload {
    Reading(Arc<SensorReading>),
    Event(Json),
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Reading(r) => r.serialize(s),
            Payload::Event(j) => j.serialize(s),
        }
    }
}

/// What a delivery is, for the slow-socket policy.
#[derive(Clone, Copy)]
pub enum Kind<'a> {
    /// A reading of this unit: may be coalesced with a newer one of the same unit.
    Reading(&'a Arc<str>),
    /// Anything else (alerts, batches): never coalesced.
    Event,
}
