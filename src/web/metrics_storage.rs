//! The history store's part of `/metrics` (when `[storage]` is enabled): what the writer
//! stored, dropped, committed and pruned, and the file's size, from [`StoreHealth`].
//!
//! [`StoreHealth`]: crate::storage::StoreHealth

use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use super::{counter, gauge};
use crate::storage::Store;

pub(super) fn encode(out: &mut DescriptorEncoder, store: &Store) -> fmt::Result {
    let h = store.health();
    counter(
        out,
        "sensorcast_history_readings_stored_total",
        "Readings committed to the history store.",
        h.readings_stored.load(Relaxed),
    )?;
    counter(
        out,
        "sensorcast_history_readings_dropped_total",
        "Readings never stored (the writer's queue was full, or their commit failed); live delivery had them.",
        h.readings_dropped.load(Relaxed),
    )?;
    counter(
        out,
        "sensorcast_history_commits_total",
        "Commits of the history store's writer.",
        h.commits.load(Relaxed),
    )?;
    counter(
        out,
        "sensorcast_history_commit_errors_total",
        "Commits of the history store that failed.",
        h.commit_errors.load(Relaxed),
    )?;
    counter(
        out,
        "sensorcast_history_pruned_total",
        "Raw readings deleted because the store passed storage.max_disk.",
        h.pruned_for_budget.load(Relaxed),
    )?;
    counter(
        out,
        "sensorcast_history_damaged_total",
        "Stored rows found damaged (they do not inflate): skipped by each read that meets them, dropped by the compaction.",
        h.damaged.load(Relaxed),
    )?;
    gauge(
        out,
        "sensorcast_history_bytes",
        "Bytes the history store uses on disk.",
        h.bytes_used.load(Relaxed),
    )
}
