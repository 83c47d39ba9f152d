//! The engine task: the only owner of the [`Machine`]. It takes commands from the bounded input
//! queue, sleeps until the machine's next deadline when there is nothing to do, and sends what
//! the machine decides to the outlets in this order: Socket.io rooms first (latency matters),
//! then webhooks (queued, never waited for), then the state file (handed to the writer task).
//!
//! In cluster mode the outlets are one [`ClusterSink`] instead: each unit's new state and its
//! events are committed together, and webhooks are called once the commit went through (see
//! [`super::cluster`]).
//!
//! Emitting before the write is deliberate: a slow SD card must not delay an alert. The price
//! is a window of one write: if the process dies between an emit and the write that follows it,
//! the restart does not know that alert. A graceful stop always writes the final state. An
//! acknowledgement is different: it is a person's answer, so the client's confirmation waits
//! (outside the engine, see [`Stored`]) until a snapshot holding it is on disk, or its commit
//! went through in cluster mode.

use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, Instrument};

use super::cluster::{parse_track, ClusterSink, UnitCommit};
use super::machine::Machine;
use super::model::Event;
use super::rules::AlertsConfig;
use super::store::Writer;
use super::unit::Out;
use super::webhook::Webhooks;
use super::{Command, Shared, Stored};
use crate::core::rooms::UnitRooms;
use crate::delivery::{to_json, Fanout, Kind, Payload};
use crate::storage::{AlertEvent, Store};

/// Longest single sleep: a step of the wall clock (NTP at boot) is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Where the engine's time comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system's wall clock (the service).
    System,
    /// Wall time that advances with tokio's clock from an anchor, so a test with paused time
    /// moves it with `tokio::time::advance` or auto-advance.
    Tokio {
        wall: DateTime<Utc>,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A [`Clock::Tokio`] anchored now.
    pub fn tokio() -> Clock {
        Clock::Tokio {
            wall: Utc::now(),
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { wall, start } => {
                *wall + chrono::Duration::from_std(start.elapsed()).unwrap_or_default()
            }
        }
    }

    fn until(&self, at: DateTime<Utc>) -> Duration {
        (at - self.now()).to_std().unwrap_or(Duration::ZERO)
    }
}

/// Where events go besides the webhooks.
pub struct Outlets {
    /// Delivery to sockets (alerts are queued, never coalesced, for slow sockets); `None` in
    /// tests that only watch the `tap`.
    pub fanout: Option<Fanout>,
    /// A copy of every event, in order (tests, embedding).
    pub tap: Option<mpsc::UnboundedSender<Event>>,
    /// Cluster mode: commits replace the socket delivery and the state file.
    pub cluster: Option<Arc<dyn ClusterSink>>,
    /// The history store: every alert event is kept for the HACCP report.
    pub archive: Option<Store>,
}

/// Hands an alert event (those with an `alertId`) to the history store.
fn archive(store: &Option<Store>, o: &Out, at: DateTime<Utc>) {
    let Some(store) = store else { return };
    let body = o.event.payload();
    let Some(id) = body.get("alertId").and_then(|v| v.as_str()) else {
        return;
    };
    store.record_alert(AlertEvent {
        alert_id: id.to_owned(),
        unit: o.event.unit_id().clone(),
        org: o.org.clone(),
        site: o.site.clone(),
        at,
        kind: o.event.name(),
        body,
    });
}

/// The engine, built by [`super::Alerts::new`] and started with [`Engine::run`].
pub struct Engine {
    pub(super) machine: Machine,
    pub(super) rx: mpsc::Receiver<Command>,
    pub(super) shared: Arc<Shared>,
    pub(super) clock: Clock,
    pub(super) config: AlertsConfig,
    pub(super) state_dir: PathBuf,
    /// Events decided while loading (alerts of units that left the registry).
    pub(super) pending: Vec<Out>,
}

struct Sinks {
    outlets: Outlets,
    hooks: Webhooks,
    /// The state file's writer; none in cluster mode.
    writer: Option<Writer>,
}

impl Engine {
    /// Runs until `stop` is cancelled, then handles what is still queued, writes the state if
    /// anything is unwritten, and returns; the writer and webhook tasks it started on `tasks`
    /// finish after it (webhooks without retry waits).
    pub async fn run(mut self, outlets: Outlets, tasks: TaskTracker, stop: CancellationToken) {
        let span = info_span!("alerts");
        async move {
            let writer = outlets
                .cluster
                .is_none()
                .then(|| Writer::spawn(self.state_dir.clone(), self.shared.store.clone(), &tasks));
            let hooks = Webhooks::spawn(
                &self.config,
                self.shared.webhooks.clone(),
                &tasks,
                stop.clone(),
            );
            let mut sinks = Sinks {
                outlets,
                hooks,
                writer,
            };
            let pending = std::mem::take(&mut self.pending);
            self.publish(&mut sinks, pending).await;
            loop {
                let deadline = self.machine.next_deadline();
                let wait = deadline.map_or(MAX_SLEEP, |d| self.clock.until(d).min(MAX_SLEEP));
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    cmd = self.rx.recv() => match cmd {
                        Some(cmd) => self.handle(&mut sinks, cmd).await,
                        None => break,
                    },
                    _ = tokio::time::sleep(wait) => {
                        let out = self.machine.advance(self.clock.now());
                        self.publish(&mut sinks, out).await;
                    }
                }
            }
            // Readings handed over before ingest stopped are still judged and announced.
            self.rx.close();
            while let Some(cmd) = self.rx.recv().await {
                self.handle(&mut sinks, cmd).await;
            }
            if let Some(writer) = sinks.writer.as_ref().filter(|_| self.machine.has_unsaved()) {
                writer.write(&self.machine.save(self.clock.now()));
            }
            info!("alert engine stopped");
        }
        .instrument(span)
        .await
    }

    async fn handle(&mut self, sinks: &mut Sinks, cmd: Command) {
        let now = self.clock.now();
        let out = match cmd {
            Command::Report {
                unit,
                sensor,
                report,
                measured_at,
            } => self
                .machine
                .report(now, &unit, &sensor, &report, measured_at),
            Command::Availability {
                unit,
                sensor,
                online,
            } => self.machine.availability(now, &unit, &sensor, online),
            Command::Ack {
                alert_id,
                by,
                comment,
                reply,
            } => match self
                .machine
                .acknowledge(now, &alert_id, &by, comment.as_deref())
            {
                Ok((alert, out)) => {
                    // Announced now; confirmed to the client by the caller once stored.
                    let stored = match sinks.outlets.cluster.clone() {
                        Some(cluster) => {
                            let (done, stored) = oneshot::channel();
                            self.commit(sinks, &*cluster, out, Some(done));
                            Stored::Redis(stored)
                        }
                        None => {
                            self.publish(sinks, out).await;
                            sinks
                                .writer
                                .as_ref()
                                .map_or(Stored::Nowhere, |w| Stored::File(w.durable()))
                        }
                    };
                    let _ = reply.send(Ok((alert, stored)));
                    return;
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
            },
            Command::Own {
                unit,
                track,
                last_at,
            } => {
                let saved = track.as_deref().and_then(|t| parse_track(&unit, t));
                self.machine.own(now, &unit, saved, last_at)
            }
            Command::Release { unit } => {
                self.machine.release(&unit);
                return;
            }
            Command::TouchAll => {
                self.machine.touch_all();
                Vec::new()
            }
            Command::Reload { book, reply } => {
                let out = self.machine.reload(book, now);
                info!(events = out.len(), "alert rules reloaded");
                self.publish(sinks, out).await;
                self.refresh_view();
                let _ = reply.send(());
                return;
            }
        };
        self.publish(sinks, out).await;
    }

    /// Announces `out` (rooms, webhooks, tap), then hands the state to the writer if it changed.
    async fn publish(&mut self, sinks: &mut Sinks, out: Vec<Out>) {
        if let Some(cluster) = sinks.outlets.cluster.clone() {
            return self.commit(sinks, &*cluster, out, None);
        }
        // The view first: a client that acts on an event at once (alert:ack) must find it.
        if !out.is_empty() {
            self.refresh_view();
        }
        let now = self.clock.now();
        for o in out {
            debug!(event = o.event.name(), unit = %o.event.unit_id(), "alert event");
            self.shared.count(&o.event);
            archive(&sinks.outlets.archive, &o, now);
            if let Some(fanout) = &sinks.outlets.fanout {
                let rooms = UnitRooms::new(&o.org, &o.site, o.event.unit_id());
                let payload = Payload::Event(to_json(&o.event.payload()));
                fanout.deliver(rooms.org_events(), o.event.name(), &payload, Kind::Event);
            }
            sinks.hooks.send(&o.event);
            if let Some(tap) = &sinks.outlets.tap {
                let _ = tap.send(o.event);
            }
        }
        if let Some(writer) = sinks.writer.as_ref().filter(|_| self.machine.needs_save()) {
            writer.write(&self.machine.save(self.clock.now()));
        }
    }

    /// Cluster mode: each changed unit's state with its events, in one commit per unit;
    /// `done` hears whether every one of them went through.
    fn commit(
        &mut self,
        sinks: &mut Sinks,
        cluster: &dyn ClusterSink,
        out: Vec<Out>,
        done: Option<oneshot::Sender<bool>>,
    ) {
        let mut commits: Vec<UnitCommit> = self
            .machine
            .take_changed()
            .into_iter()
            .map(|(unit, track)| UnitCommit {
                unit,
                track: serde_json::to_string(&track).ok(),
                events: Vec::new(),
            })
            .collect();
        let now = self.clock.now();
        for o in out {
            debug!(event = o.event.name(), unit = %o.event.unit_id(), "alert event");
            self.shared.count(&o.event);
            archive(&sinks.outlets.archive, &o, now);
            if let Some(tap) = &sinks.outlets.tap {
                let _ = tap.send(o.event.clone());
            }
            let unit = o.event.unit_id().clone();
            match commits.iter_mut().find(|c| c.unit == unit) {
                Some(c) => c.events.push(o),
                None => commits.push(UnitCommit {
                    unit,
                    track: None,
                    events: vec![o],
                }),
            }
        }
        if !commits.is_empty() {
            cluster.commit(commits, sinks.hooks.clone(), done);
        } else if let Some(done) = done {
            let _ = done.send(true);
        }
    }

    fn refresh_view(&self) {
        self.shared
            .set_view(self.machine.open_alerts(), self.machine.states());
    }
}
