//! The composition root: builds every layer from the config, wires them together, runs them as
//! stages, and shuts them down in a written order. Nothing else in the crate knows how the
//! pieces fit; each layer is given what it needs.
//!
//! - [`stage`]: a cancellation token plus a task tracker, stopped with a bound.
//! - [`reload`]: SIGHUP: registry, log level and subscriptions without a restart.
//! - [`systemd`]: the notify protocol (READY, WATCHDOG, STATUS, RELOADING, STOPPING).
//! - `clustered`: cluster mode's part of the wiring.
//!
//! Over 400 lines: The composition root: the start and shutdown order are read top to bottom here,
//! once.

mod clustered;
pub mod reload;
pub mod stage;
pub mod systemd;

use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{error, info, warn};

use crate::alerts::{self, Alerts, Clock, Outlets};
use crate::auth::{self, AuthMode, Authenticator};
use crate::cluster::{self, Cluster};
use crate::config::Config;
use crate::core::connections::{connection_cap, HttpConnections};
use crate::core::health::{MqttHealth, ReloadLog};
use crate::core::registry::Registry;
use crate::delivery::{Batcher, Congestion, Fanout, SlowPolicy, SlowSockets};
use crate::ingest;
use crate::pipeline::hub::{HistoryLimits, Hub};
use crate::pipeline::stored::StoredHistory;
use crate::pipeline::Pipeline;
use crate::realtime::{self, transport, Realtime};
use crate::storage::Store;
use crate::web::{self, WebState};
use reload::{LogLevelSetter, ReloadContext, Reloader};
use stage::{bounded, Stage};

/// The sockets the service serves on, bound by the caller (main, or a test on port 0).
pub struct Listeners {
    pub http: TcpListener,
    /// `GET /metrics` (see [`web::metrics`]); `None` serves no metrics.
    pub metrics: Option<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("auth: {0}")]
    Auth(#[from] auth::KeyError),
    #[error("mqtt: {0}")]
    Mqtt(String),
    #[error("alert rules: {0}")]
    Rules(#[from] alerts::RuleError),
    #[error("cors: bad origin {0:?}")]
    Cors(String),
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    #[error("history store: {0}")]
    Storage(String),
    #[error("state.dir {0}: {1}")]
    State(std::path::PathBuf, std::io::Error),
    #[error("{0}")]
    Cluster(#[from] cluster::ClusterError),
}

/// How the caller steers a running service.
pub struct Control {
    /// Cancel to shut down.
    pub shutdown: CancellationToken,
    /// Notify to reload the config file and registry (SIGHUP).
    pub reload: Arc<tokio::sync::Notify>,
    /// Changes the log filter on reload (main has the tracing handle; tests pass `None`).
    pub log_level: Option<LogLevelSetter>,
}

impl Control {
    pub fn new(shutdown: CancellationToken) -> Self {
        Control {
            shutdown,
            reload: Arc::new(tokio::sync::Notify::new()),
            log_level: None,
        }
    }
}

/// [`run_with`] with only a shutdown token.
pub async fn run(
    config: Config,
    registry: Registry,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    run_with(config, registry, listeners, Control::new(shutdown)).await
}

/// Runs the service until `control.shutdown` is cancelled, then shuts down in this order:
/// 1. refuse new sockets and stop accepting connections;
/// 2. stop MQTT ingest (the message in hand is emitted and handed to the alert engine first)
///    and send DISCONNECT;
/// 3. stop the alert engine: it judges what is queued, announces it while sockets are still
///    connected, and writes its state; webhooks get one last attempt at what they hold;
///    in cluster mode, what is queued for Redis is written, the units are released and the
///    instance leaves the cluster (the others take its units at once);
/// 4. flush pending batches and what slow sockets still have pending;
/// 5. disconnect sockets;
/// 6. let the HTTP server finish.
///
/// Steps 2-6 are bounded by `http.shutdown_timeout` each.
pub async fn run_with(
    config: Config,
    registry: Registry,
    listeners: Listeners,
    mut control: Control,
) -> Result<(), RunError> {
    let parts = build(&config, registry)?;
    let running = start(&config, parts, listeners, control.log_level.take()).await?;
    let reloads = running.side.token();
    running.side.spawn(reload::run(
        config.clone(),
        running.reload.clone(),
        control.reload.clone(),
        reloads,
    ));
    control.shutdown.cancelled().await;
    running.stop(config.http.shutdown_timeout).await
}

/// Everything built from the config before any task runs.
struct Parts {
    hub: Hub,
    alerts: Alerts,
    engine: alerts::Engine,
    auth: Authenticator,
    mqtt: Arc<MqttHealth>,
    connector: ingest::Connector,
    store: Option<Store>,
}

fn build(config: &Config, registry: Registry) -> Result<Parts, RunError> {
    // Made now, so that a state directory the service cannot have fails the start, not the
    // first alert.
    std::fs::create_dir_all(&config.state.dir)
        .map_err(|e| RunError::State(config.state.dir.clone(), e))?;
    let auth = Authenticator::from_config(&config.auth)?;
    if auth.mode() == AuthMode::None {
        warn!(org = ?config.auth.dev_org, "AUTH IS OFF (auth.mode = \"none\"): every socket is trusted as this organization. Development only.");
    }
    let connector =
        ingest::Connector::new(&config.mqtt).map_err(|e| RunError::Mqtt(e.to_string()))?;
    let (alerts, engine) = match &config.cluster {
        // Cluster mode: alert state lives in Redis, per unit, with its owner.
        Some(_) => Alerts::new_cluster(&config.alerts, &registry, Clock::System)?,
        None => Alerts::new(&config.alerts, &config.state.dir, &registry, Clock::System)?,
    };
    let history = HistoryLimits {
        max_readings: config.realtime.history_readings,
        max_age: config.realtime.history_age,
        bridge: memory_bridge(config),
    };
    let hub = Hub::new(registry, config.limits.unmapped_capacity, history);
    let store = open_store(config, &hub)?;
    Ok(Parts {
        hub,
        alerts,
        engine,
        auth,
        mqtt: Arc::new(MqttHealth::default()),
        connector,
        store,
    })
}

/// How long a unit's readings stay in memory for resumes while the history store keeps up.
/// With the store on a single box, memory only bridges the readings not committed yet (the
/// store answers resumes further back): six commit intervals, at least a minute, at most
/// `realtime.history_age`; while the store is behind or failing, the full `history_age`. At a
/// typical site (500 units, a reading every 10 s each) 15 minutes of readings would be some
/// 45 000 of them in memory, about 16 MiB.
fn memory_bridge(config: &Config) -> Option<std::time::Duration> {
    (config.storage.enabled && config.cluster.is_none()).then(|| {
        let bridge = (config.storage.commit_interval * 6).max(std::time::Duration::from_secs(60));
        config.realtime.history_age.min(bridge)
    })
}

/// Opens the history store (unless `storage.enabled = false`) and hands it to the hub. On a
/// single box the hub continues the stored epoch, seqs and latest readings, and resumes that
/// memory cannot serve are answered from the store; in cluster mode Redis keeps that feed
/// state and the store is each instance's archive of what it delivered.
fn open_store(config: &Config, hub: &Hub) -> Result<Option<Store>, RunError> {
    if !config.storage.enabled {
        return Ok(None);
    }
    let (store, restored) = Store::open(&config.storage, &config.state.dir, &hub.epoch())
        .map_err(|e| RunError::Storage(e.to_string()))?;
    if config.cluster.is_none() {
        hub.restore(&restored);
        hub.set_shared(Arc::new(StoredHistory {
            store: store.clone(),
            hub: hub.clone(),
        }));
    }
    info!(
        path = %store.path().display(),
        epoch = %hub.epoch(),
        continued = restored.epoch.is_some(),
        clean = restored.clean,
        units = restored.latest.len(),
        "history store open"
    );
    hub.set_archive(store.clone());
    Ok(Some(store))
}

/// The running service: its stages, in the order they stop.
struct Running {
    side: Stage,
    ingest: Stage,
    alerts: Stage,
    cluster: Option<(Cluster, Stage)>,
    delivery: Stage,
    rt: Realtime,
    fanout: Fanout,
    io: SocketIo,
    reload: Arc<ReloadContext>,
    hub: Hub,
    store: Option<Store>,
    server_stop: CancellationToken,
    server: JoinHandle<()>,
    metrics: Option<JoinHandle<()>>,
}

async fn start(
    config: &Config,
    p: Parts,
    listeners: Listeners,
    log_level: Option<LogLevelSetter>,
) -> Result<Running, RunError> {
    let rtc = &config.realtime;
    let policy = SlowPolicy {
        stall_timeout: rtc.stall_timeout,
        drain_interval: rtc.drain_interval,
    };
    let congestion = Congestion::default();
    let slow = SlowSockets::new(p.hub.stats_handle(), policy, congestion.clone());
    let rt = Realtime::new(realtime::state::Parts {
        hub: p.hub.clone(),
        auth: p.auth,
        slow: slow.clone(),
        limits: config.limits.clone(),
        alerts: p.alerts.clone(),
        store: p.store.clone(),
        shutdown: CancellationToken::new(),
    });
    let (io_layer, io) = socket_io(config, rt.clone());
    let fanout = Fanout::new(io.clone(), slow);

    let delivery = Stage::new("delivery");
    delivery.spawn(fanout.clone().run(delivery.token()));
    let batcher = rtc.batch.then(|| {
        Batcher::new(
            fanout.clone(),
            p.hub.stats_handle(),
            rtc.batch_interval,
            rtc.batch_max_readings,
        )
    });
    if let Some(b) = &batcher {
        delivery.spawn(b.clone().run(delivery.token()));
    }

    let mut pipeline = Pipeline::new(
        p.hub.clone(),
        fanout.clone(),
        batcher.clone(),
        p.alerts.clone(),
        &config.mqtt.subscriptions,
        config.limits.max_payload_bytes,
    );
    let (cluster, changes) = match &config.cluster {
        None => (None, None),
        Some(cc) => {
            let sockets = rt.clone();
            let parts = cluster::Parts {
                hub: p.hub.clone(),
                fanout: fanout.clone(),
                alerts: p.alerts.clone(),
                batcher,
                owned: Default::default(),
                local_sockets: Box::new(move || sockets.connections()),
                http_port: listeners.http.local_addr()?.port(),
            };
            let (c, stage, changes) = clustered::start(cc, parts, &mut pipeline, &p.mqtt).await?;
            (Some((c, stage)), Some(changes))
        }
    };

    let alert_stage = Stage::new("alert engine");
    let outlets = Outlets {
        fanout: Some(fanout.clone()),
        tap: None,
        cluster: cluster
            .as_ref()
            .map(|(c, _)| Arc::new(c.clone()) as Arc<dyn alerts::cluster::ClusterSink>),
        archive: p.store.clone(),
    };
    alert_stage.spawn(
        p.engine
            .run(outlets, alert_stage.tracker(), alert_stage.token()),
    );

    let ingest_stage = Stage::new("mqtt ingest");
    let (subs_tx, subs_rx) = tokio::sync::watch::channel(config.mqtt.subscriptions.clone().into());
    ingest_stage.spawn(ingest::run(
        config.mqtt.clone(),
        p.connector,
        pipeline,
        p.mqtt.clone(),
        subs_rx,
        changes,
        ingest_stage.token(),
    ));

    let reload_log = Arc::new(ReloadLog::default());
    let http_conns = http_connections(config);
    let web_state = WebState::new(
        rt.clone(),
        fanout.clone(),
        p.mqtt.clone(),
        reload_log.clone(),
        config.status.stale_after,
        http_conns.clone(),
        cluster.as_ref().map(|(c, _)| c.clone()),
    );
    let router = web::router(web_state.clone())
        .layer(io_layer)
        .layer(cors_layer(&config.http.cors_origins)?)
        .layer(axum::middleware::map_request(transport::detach_request))
        .layer(axum::middleware::map_request(transport::bind_websocket))
        .layer(axum::middleware::from_fn_with_state(
            rt.clone(),
            transport::count_refused_payloads,
        ));
    let addr = listeners.http.local_addr()?;
    let server_stop = CancellationToken::new();
    let options = transport::ListenerOptions {
        write_timeout: rtc.stall_timeout,
        idle_timeout: config.http.idle_timeout,
        send_buffer: rtc.socket_send_buffer,
    };
    let listener =
        transport::GuardedListener::new(listeners.http, options, congestion, http_conns.clone());
    let server = tokio::spawn(web::serve::serve(
        listener,
        router,
        config.http.header_timeout,
        http_conns.clone(),
        server_stop.clone(),
    ));
    info!(
        %addr,
        version = env!("CARGO_PKG_VERSION"),
        max_connections = http_conns.max(),
        fd_limit = http_conns.fd_limit(),
        "sensorcast listening"
    );
    let metrics = listeners.metrics.map(|l| {
        let timeouts = web::serve::Timeouts {
            header: config.http.header_timeout,
            idle: config.http.idle_timeout,
        };
        web::metrics::spawn_server(l, web_state, timeouts, server_stop.clone())
    });

    let side = Stage::new("side tasks");
    side.spawn(systemd::supervise(
        rt.clone(),
        p.mqtt.clone(),
        config.http.ready_timeout,
        side.token(),
    ));
    side.spawn(realtime::expiry::run(
        rt.clone(),
        fanout.clone(),
        side.token(),
    ));
    let reload = Arc::new(ReloadContext {
        reloader: Reloader::new(reload_log, log_level),
        rt: rt.clone(),
        fanout: fanout.clone(),
        mqtt: p.mqtt,
        subscriptions: subs_tx,
    });
    Ok(Running {
        side,
        ingest: ingest_stage,
        alerts: alert_stage,
        cluster,
        delivery,
        rt,
        fanout,
        io,
        reload,
        hub: p.hub,
        store: p.store,
        server_stop,
        server,
        metrics,
    })
}

/// The main listener's connection cap: `http.max_connections`, held below the process's soft
/// fd limit less a reserve (main raised the soft limit to the hard one at start).
fn http_connections(config: &Config) -> Arc<HttpConnections> {
    let fd_limit = fd_limit();
    let max = connection_cap(config.http.max_connections, fd_limit);
    if config
        .http
        .max_connections
        .is_some_and(|wanted| wanted > max)
    {
        warn!(
            wanted = config.http.max_connections,
            max,
            fd_limit,
            "http.max_connections is above what the fd limit allows; lowered (raise LimitNOFILE=)"
        );
    }
    HttpConnections::new(max, fd_limit)
}

/// The process's soft `RLIMIT_NOFILE` (1024, systemd's default, if it cannot be read).
pub fn fd_limit() -> u64 {
    rlimit::Resource::NOFILE
        .get()
        .map_or(1024, |(soft, _)| soft)
}

/// The Socket.io layer with the realtime handlers and the per-connection limits.
fn socket_io(config: &Config, rt: Realtime) -> (SocketIoLayer, SocketIo) {
    let limits = &config.limits;
    let (layer, io) = SocketIo::builder()
        .with_state(rt)
        .max_buffer_size(limits.socket_buffer)
        // Room for a CONNECT packet whose token is too large, so it is answered, not cut.
        .max_payload(limits.max_client_payload + realtime::TOKEN_ALLOWANCE)
        .ws_max_message_size((limits.max_client_payload + realtime::TOKEN_ALLOWANCE) as usize)
        .ws_max_frame_size((limits.max_client_payload + realtime::TOKEN_ALLOWANCE) as usize)
        // Client frames are small; the default 4 KiB read buffer per socket is mostly idle.
        .ws_read_buffer_size(512)
        .connect_timeout(limits.handshake_timeout)
        .ping_interval(config.realtime.ping_interval)
        .ping_timeout(config.realtime.ping_timeout)
        .build_layer();
    realtime::register(&io);
    (layer, io)
}

impl Running {
    /// The shutdown order of [`run_with`].
    async fn stop(self, limit: Duration) -> Result<(), RunError> {
        info!("shutting down");
        systemd::notify(&[sd_notify::NotifyState::Stopping]);
        self.side.stop(limit).await;
        self.rt.refuse_new_sockets();
        self.server_stop.cancel();
        self.ingest.stop(limit).await;
        self.alerts.stop(limit).await;
        if let Some((cluster, stage)) = &self.cluster {
            bounded("cluster", limit, cluster.leave()).await;
            stage.stop(limit).await;
        }
        // Nothing numbers readings any more: the store commits what it has, with each unit's
        // last seq, and marks the stop clean.
        if let Some(store) = &self.store {
            let seqs = self
                .hub
                .seqs()
                .into_iter()
                .map(|(u, s)| (u.to_string(), s))
                .collect();
            bounded("history store", limit, store.close(seqs)).await;
        }
        // Pending batches are flushed, slow sockets get one last drain.
        self.delivery.stop(limit).await;
        self.fanout.drain();
        self.rt.shutdown.cancel();
        // io.close() waits for every transport; a client that stopped reading would hold it forever.
        bounded("socket.io", limit, self.io.close()).await;
        match tokio::time::timeout(limit, self.server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!(error = %e, "http server task failed"),
            Err(_) => warn!("http server did not finish in time"),
        }
        if let Some(m) = self.metrics {
            bounded("metrics listener", limit, async {
                let _ = m.await;
            })
            .await;
        }
        info!("shutdown complete");
        Ok(())
    }
}

fn cors_layer(origins: &[String]) -> Result<CorsLayer, RunError> {
    use axum::http::{header, HeaderValue, Method};
    let values = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| RunError::Cors(o.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(values))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(extra: &str) -> Config {
        let base = "[registry]\nfile = \"registry.toml\"\n[[mqtt.subscriptions]]\n\
                    topic = \"sensors/+\"\nformat = \"json\"\n";
        Config::parse(&format!("{base}{extra}"), std::path::Path::new("s.toml")).unwrap()
    }

    /// With the history store on a single box, memory only bridges what is not committed yet;
    /// without it memory is all there is, and keeps `realtime.history_age`.
    #[test]
    fn memory_keeps_readings_for_the_store_bridge_or_the_configured_age() {
        let minute = Duration::from_secs(60);
        assert_eq!(memory_bridge(&config("")), Some(minute));
        assert_eq!(
            memory_bridge(&config("[storage]\ncommit_interval = \"30s\"\n")),
            Some(3 * minute)
        );
        assert_eq!(memory_bridge(&config("[storage]\nenabled = false\n")), None);
        assert_eq!(
            memory_bridge(&config("[realtime]\nhistory_age = \"20s\"\n")),
            Some(Duration::from_secs(20))
        );
    }
}
