//! A single box's answer to resumes that memory cannot serve: the history store. The same
//! interface cluster mode implements on Redis ([`SharedHistory`]), so the subscribe path has one
//! way to ask. The unit is looked up in the registry in force, so a unit that moved to another
//! organization or site is never resumed from what it stored under the old one.

use std::sync::Arc;

use super::shared::{BoxFuture, SharedHistory};
use super::Hub;
use crate::core::reading::SensorReading;
use crate::storage::Store;

/// At most this many readings are replayed from the store in one resume; further back, the
/// subscriber gets `recovered: false` (and fetches with `get:history`).
pub const MAX_REPLAY: usize = 10_000;

pub struct StoredHistory {
    pub store: Store,
    pub hub: Hub,
}

impl SharedHistory for StoredHistory {
    fn readings_after<'a>(
        &'a self,
        unit: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Option<(Vec<Arc<SensorReading>>, u64)>> {
        Box::pin(async move {
            let registry = self.hub.registry();
            let u = registry.unit(unit)?;
            let (v, through) = self
                .store
                .readings_after(&u.id, &u.org, &u.site, after, MAX_REPLAY)
                .await
                .ok()??;
            Some((v.into_iter().map(Arc::new).collect(), through))
        })
    }
}
