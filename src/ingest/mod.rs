//! MQTT ingest: one task owns the rumqttc event loop, hands every publish to the [`Pipeline`],
//! and acknowledges it afterwards (manual acks), so a QoS 1 reading is never acknowledged before
//! it has been emitted. It keeps a persistent session, asks again after every reconnect for each
//! subscription the broker has not acknowledged to this process (a SUBSCRIBE lost with its
//! connection is not in the session the broker kept), backs off (capped, jittered) between
//! reconnects, and never awaits its own client's request channel from inside the poll loop
//! (that deadlocks once it is full).
//!
//! rumqttc reaches the broker through the framing guard ([`guard`]): a message over
//! `mqtt.max_packet_size` arrives as a tombstone, is counted as `too_large` and acknowledged
//! like any other, instead of dropping the connection on every reconnect. A connection that
//! still fails the same way after every reconnect is reported as a loop ([`MqttHealth`]).
//!
//! - [`config`]: the `[mqtt]` section.
//! - [`guard`], [`frames`], [`upstream`]: the framing guard, its parser, its broker connection.
//! - [`ledger`]: which subscriptions the broker acknowledged, and so what is still owed.
//! - [`session`]: asking for them, and the acks, per connection.

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet,
    StateError, TlsConfiguration, Transport,
};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

mod config;
mod frames;
mod guard;
mod ledger;
mod session;
mod upstream;

pub use config::{parse_broker_url, BrokerUrlError, MqttConfig};
pub use guard::GuardError;

use crate::core::health::{MqttHealth, STABLE_AFTER};
use crate::decode::Subscription;
use crate::pipeline::shared::Change;
use crate::pipeline::Pipeline;
use guard::{Guard, Link};
use session::Session;

/// Requests (acks, subscribes, disconnect) the client may queue for the event loop. The loop
/// drains them on every poll; acks that do not fit wait in a local queue and are retried.
const REQUEST_CAPACITY: usize = 1024;
/// How long shutdown waits for the DISCONNECT packet to go out.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// rumqttc's connect-to-CONNACK timeout (seconds): above the guard's own
/// [`upstream::CONNECT_TIMEOUT`], so the guard's reason for a failed connect is the one reported.
const CONNACK_TIMEOUT_SECS: u64 = 10;

/// The session settings both the service and the simulator use.
fn session_options(cfg: &MqttConfig, addr: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(cfg.client_id.clone(), addr, port);
    o.set_keep_alive(cfg.keep_alive)
        .set_clean_session(cfg.clean_session)
        .set_max_packet_size(cfg.max_packet_size, cfg.max_packet_size)
        .set_manual_acks(true);
    if let Some(user) = &cfg.username {
        let pass = cfg.password.as_ref().map_or("", |p| p.expose());
        o.set_credentials(user.clone(), pass);
    }
    o
}

/// rumqttc options straight to the broker (the simulator, which only publishes). Errors are
/// config errors (bad TLS files).
pub fn mqtt_options(cfg: &MqttConfig) -> Result<MqttOptions, String> {
    let (tls, host, port) = parse_broker_url(&cfg.url).map_err(|e| e.to_string())?;
    let mut o = session_options(cfg, &host, port);
    if tls {
        let ca_path = cfg
            .ca_file
            .clone()
            .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let ca = read(&ca_path)?;
        let client_auth = match (&cfg.cert_file, &cfg.key_file) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => None,
        };
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        }));
    }
    Ok(o)
}

/// The service's way to the broker, built before anything runs: the framing guard (listening,
/// TLS config loaded) and rumqttc options that point at it. Errors are config errors.
pub struct Connector {
    options: MqttOptions,
    guard: Guard,
}

impl Connector {
    pub fn new(cfg: &MqttConfig) -> Result<Connector, GuardError> {
        let guard = Guard::bind(cfg)?;
        let mut options = session_options(cfg, guard.socket_path(), 0);
        options.set_transport(Transport::Unix);
        Ok(Connector { options, guard })
    }
}

/// A low-cardinality label for a rumqttc error (`sensorcast_mqtt_connection_errors_total`).
fn error_kind(e: &ConnectionError) -> &'static str {
    match e {
        ConnectionError::MqttState(StateError::ConnectionAborted) => "closed",
        ConnectionError::MqttState(StateError::AwaitPingResp)
        | ConnectionError::NetworkTimeout
        | ConnectionError::FlushTimeout => "timeout",
        ConnectionError::MqttState(StateError::Io(_)) | ConnectionError::Io(_) => "io",
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(_),
        )) => "too_large",
        ConnectionError::ConnectionRefused(_) => "rejected",
        ConnectionError::Tls(_) => "tls",
        _ => "protocol",
    }
}

/// Capped exponential backoff with jitter (each wait is 50-100 % of the current step).
struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            step: min,
        }
    }
    fn reset(&mut self) {
        self.step = self.min;
    }
    fn next(&mut self) -> Duration {
        let wait = self.step.mul_f64(0.5 + fastrand::f64() * 0.5);
        self.step = (self.step * 2).min(self.max);
        wait
    }
}

/// Runs until `shutdown` is cancelled, then sends DISCONNECT, stops the guard and returns.
/// `updates` carries reloaded subscription lists; `changes` (cluster mode) the ownership
/// changes the pipeline applies between two messages.
pub async fn run(
    cfg: MqttConfig,
    connector: Connector,
    mut pipeline: Pipeline,
    health: Arc<MqttHealth>,
    mut updates: watch::Receiver<Arc<[Subscription]>>,
    mut changes: Option<tokio::sync::mpsc::Receiver<Change>>,
    shutdown: CancellationToken,
) {
    let Connector { options, guard } = connector;
    let link = guard.link();
    let guard_stop = CancellationToken::new();
    let guard_task = tokio::spawn(guard.run(guard_stop.clone()));
    // Should this future be dropped rather than finish, the guard stops with it.
    let _guard_stop_on_drop = guard_stop.clone().drop_guard();
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_connection_timeout(CONNACK_TIMEOUT_SECS);
    eventloop.set_network_options(net);
    let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
    let mut session = Session::new(updates.borrow_and_update().clone(), &client);
    info!(url = %cfg.url, client_id = %cfg.client_id, "mqtt ingest starting");
    let mut expire = tokio::time::interval(EXPIRE_HELD);
    'run: loop {
        // `poll` is never dropped half-way but at shutdown: it is not cancel-safe (a dropped
        // poll loses a connection attempt, or the acks it took from the request channel and
        // had not written yet, after which the broker stops sending at its in-flight limit).
        // The other arms run while it waits, and it goes on afterwards.
        let event = {
            let poll = eventloop.poll();
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break 'run,
                    Ok(()) = updates.changed() => {
                        let new = updates.borrow_and_update().clone();
                        pipeline.set_subscriptions(&new);
                        session.update(new, &health);
                    }
                    Some(change) = next_change(&mut changes) => pipeline.apply(change).await,
                    _ = expire.tick(), if changes.is_some() => pipeline.expire_held(),
                    ev = &mut poll => break ev,
                }
            }
        };
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                let wait = handle_failure(&e, &link, &health, &pipeline, &mut backoff);
                session.lost(&mut eventloop);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        };
        match event {
            Event::Incoming(Packet::Publish(p)) => {
                health.busy(true);
                match link.oversize(&p.payload) {
                    Some(size) => pipeline.reject_oversize(&p.topic, size, cfg.max_packet_size),
                    None => pipeline.handle(&p.topic, &p.payload, p.retain).await,
                }
                health.busy(false);
                session.ack(p);
            }
            Event::Incoming(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {
                health.connection_made();
                session.connected(ack.session_present, &health);
            }
            Event::Incoming(Packet::SubAck(ack)) => session.suback(&ack, &health),
            Event::Incoming(Packet::UnsubAck(ack)) => session.unsuback(&ack),
            Event::Incoming(Packet::Disconnect) => warn!("broker sent DISCONNECT"),
            Event::Outgoing(o) => session.sent(&o),
            _ => {}
        }
        session.tick(&health);
    }
    disconnect(&client, &mut eventloop, &mut session, &health).await;
    guard_stop.cancel();
    let _ = guard_task.await;
}

/// How often held messages of other instances' units are checked for expiry (cluster mode).
const EXPIRE_HELD: Duration = Duration::from_secs(1);

/// The next ownership change; never, outside cluster mode.
async fn next_change(changes: &mut Option<tokio::sync::mpsc::Receiver<Change>>) -> Option<Change> {
    match changes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Records a failed connection (in the guard's words when the guard knows why), logs it and
/// returns how long to wait before the next attempt.
fn handle_failure(
    e: &ConnectionError,
    link: &Link,
    health: &MqttHealth,
    pipeline: &Pipeline,
    backoff: &mut Backoff,
) -> Duration {
    let (error, kind) = link
        .take_failure()
        .unwrap_or_else(|| (e.to_string(), error_kind(e)));
    let f = health.connection_failed(&error, kind);
    // Backoff starts over only after a connection that held: one that fails soon after each
    // connect must not hammer the broker at the minimum interval.
    if f.lived.is_some_and(|l| l >= STABLE_AFTER) {
        backoff.reset();
    }
    let wait = backoff.next();
    let retry_in_ms = wait.as_millis() as u64;
    let repeats = f.repeats;
    if f.loop_started {
        error!(%error, kind, repeats, retry_in_ms, "mqtt reconnect loop: each connection ends with the same error soon after it is made");
    }
    if f.lived.is_some() {
        pipeline.count_reconnect();
    }
    // Each new failure once at warn (a bad certificate, a refused login, a lost connection);
    // its repeats at debug.
    match (f.lived.is_some(), repeats == 1) {
        (true, true) => warn!(%error, kind, retry_in_ms, "mqtt connection lost"),
        (false, true) => warn!(%error, kind, retry_in_ms, "mqtt connect failed"),
        (true, false) => debug!(%error, kind, repeats, retry_in_ms, "mqtt connection lost"),
        (false, false) => debug!(%error, kind, repeats, retry_in_ms, "mqtt connect failed"),
    }
    wait
}

/// Sends any pending acks and a DISCONNECT, polling the loop until it is on the wire.
async fn disconnect(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    session: &mut Session<'_>,
    health: &MqttHealth,
) {
    if !health.connected.load(Relaxed) {
        return;
    }
    session.flush_acks();
    if client.try_disconnect().is_err() {
        warn!("could not queue the MQTT DISCONNECT");
        return;
    }
    // Poll until the broker closes the connection: the DISCONNECT is then surely on the wire
    // (rumqttc reports Outgoing::Disconnect before it has flushed it).
    let sent = tokio::time::timeout(DISCONNECT_TIMEOUT, async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    health.connected.store(false, Relaxed);
    match sent {
        Ok(()) => info!("mqtt disconnected"),
        Err(_) => warn!("mqtt DISCONNECT not confirmed in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<Duration> = (0..8).map(|_| b.next()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        assert!(waits[7] >= Duration::from_millis(500), "{waits:?}");
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
