//! sensorcast: MQTT sensor readings → unit/site/organization → Socket.io rooms.
//!
//! Map of the crate (data flows top to bottom):
//! - [`config`]: the service config file, env overrides, secrets, validation.
//! - [`registry`]: organizations → sites → units → sensors, loaded from its own file.
//! - [`ingest`]: the MQTT task (rumqttc): session, subscriptions, backoff, manual acks.
//! - [`pipeline`]: one message: match subscription, decode, route, emit, count.
//! - [`decode`]: payload formats, pure functions from bytes to readings.
//! - [`route`]: sensor → unit and the rooms a reading goes to (pure).
//! - [`hub`]: per-unit `seq` and latest reading, the unmapped-sensor list, the epoch.
//! - [`reading`]: the `sensor:reading` wire type.
//! - [`fanout`]: per-socket delivery and the slow-client policy (coalesce, drain, cut off).
//! - [`batch`]: optional `sensor:readings:batch` compatibility events.
//! - [`transport`]: the HTTP listener; cuts connections whose writes stall.
//! - [`reload`]: SIGHUP: registry, log level and subscriptions without a restart.
//! - [`systemd`]: the notify protocol (READY, WATCHDOG, STATUS, RELOADING, STOPPING).
//! - [`alerts`]: the alert engine: rules, unit states, alerts, persistence, webhooks.
//! - [`realtime`]: Socket.io handshake auth and client events.
//! - [`auth`]: JWT verification shared by sockets and HTTP.
//! - [`http`]: health and `/api/` routes.
//! - [`status`]: the status page (`GET /`), server-rendered HTML, token cookie.
//! - [`metrics`]: `GET /metrics` (Prometheus text) on its own listener; the emit histogram.
//! - [`alerts_hook`]: what the status page and metrics need from an alert engine.
//! - [`simulate`]: `sensorcast simulate`: realistic readings for every registered sensor.
//! - [`stats`]: counters for everything accepted, rejected or dropped.
//! - [`app`]: the cheap-clone handle the handlers share.

pub mod alerts;
pub mod alerts_hook;
pub mod app;
pub mod auth;
pub mod batch;
pub mod config;
pub mod decode;
pub mod fanout;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod metrics;
pub mod pipeline;
pub mod reading;
pub mod realtime;
pub mod registry;
pub mod reload;
pub mod route;
pub mod simulate;
pub mod stats;
pub mod status;
pub mod systemd;
pub mod transport;

use socketioxide::SocketIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{error, info, warn};

use crate::alerts::{Alerts, Clock, Outlets};
use crate::app::AppState;
use crate::auth::Authenticator;
use crate::batch::Batcher;
use crate::config::{AuthMode, Config};
use crate::fanout::{Fanout, SlowPolicy};
use crate::hub::{HistoryLimits, Hub};
use crate::ingest::MqttHealth;
use crate::pipeline::Pipeline;
use crate::registry::Registry;
use crate::transport::GuardedListener;

/// The sockets the service serves on, bound by the caller (main, or a test on port 0).
pub struct Listeners {
    pub http: TcpListener,
    /// `GET /metrics` (see [`metrics`]); `None` serves no metrics.
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
}

/// How the caller steers a running service.
pub struct Control {
    /// Cancel to shut down.
    pub shutdown: CancellationToken,
    /// Notify to reload the config file and registry (SIGHUP).
    pub reload: Arc<tokio::sync::Notify>,
    /// Changes the log filter on reload (main has the tracing handle; tests pass `None`).
    pub log_level: Option<reload::LogLevelSetter>,
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
    let shutdown = control.shutdown.clone();
    let auth = Authenticator::from_config(&config.auth)?;
    if auth.mode() == AuthMode::None {
        warn!(org = ?config.auth.dev_org, "AUTH IS OFF (auth.mode = \"none\"): every socket is trusted as this organization. Development only.");
    }
    let options = ingest::mqtt_options(&config.mqtt).map_err(RunError::Mqtt)?;
    let (alerts, alert_engine) =
        Alerts::new(&config.alerts, &config.state.dir, &registry, Clock::System)?;
    let history = HistoryLimits {
        max_readings: config.realtime.history_readings,
        max_age: config.realtime.history_age,
    };
    let hub = Hub::new(registry, config.limits.unmapped_capacity, history);
    let mqtt_health = Arc::new(MqttHealth::default());
    let app_shutdown = CancellationToken::new();
    let rt = &config.realtime;

    let policy = SlowPolicy {
        stall_timeout: rt.stall_timeout,
        drain_interval: rt.drain_interval,
    };
    let fanout = Fanout::new(hub.stats_handle(), policy);
    let app = AppState::new(app::Parts {
        hub: hub.clone(),
        auth,
        mqtt: mqtt_health.clone(),
        fanout: fanout.clone(),
        limits: config.limits.clone(),
        reloader: Arc::new(reload::Reloader::new(control.log_level.take())),
        alerts: alerts.clone(),
        shutdown: app_shutdown.clone(),
    });
    app.set_open_alerts(Arc::new(alerts.clone()));
    let (io_layer, io) = SocketIo::builder()
        .with_state(app.clone())
        .max_buffer_size(config.limits.socket_buffer)
        .max_payload(config.limits.max_client_payload)
        .ws_max_message_size(config.limits.max_client_payload as usize)
        .ws_max_frame_size(config.limits.max_client_payload as usize)
        // Client frames are small; the default 4 KiB read buffer per socket is mostly idle.
        .ws_read_buffer_size(512)
        .connect_timeout(config.limits.handshake_timeout)
        .ping_interval(rt.ping_interval)
        .ping_timeout(rt.ping_timeout)
        .build_layer();
    fanout.set_io(io.clone());
    let batcher = rt.batch.then(|| {
        Batcher::new(
            fanout.clone(),
            hub.stats_handle(),
            rt.batch_interval,
            rt.batch_max_readings,
        )
    });
    realtime::register(&io);
    let cors = cors_layer(&config.http.cors_origins)?;
    let router = http::router(app.clone())
        .merge(status::router(app.clone(), &config))
        .layer(io_layer)
        .layer(cors)
        .layer(axum::middleware::map_request(transport::detach_request));

    // The alert engine has its own tracker: it must stop after ingest and before sockets.
    let alert_tasks = TaskTracker::new();
    let alerts_stop = CancellationToken::new();
    let outlets = Outlets {
        fanout: Some(fanout.clone()),
        hub: hub.clone(),
        tap: None,
    };
    alert_tasks.spawn(alert_engine.run(outlets, alert_tasks.clone(), alerts_stop.clone()));

    let tasks = TaskTracker::new();
    let ingest_stop = CancellationToken::new();
    let pipeline = Pipeline::new(
        hub,
        io.clone(),
        fanout.clone(),
        batcher.clone(),
        config.mqtt.subscriptions.clone(),
        config.limits.max_payload_bytes,
    )
    .with_alerts(alerts.clone());
    let (subs_tx, subs_rx) = tokio::sync::watch::channel(config.mqtt.subscriptions.clone().into());
    tasks.spawn(ingest::run(
        config.mqtt.clone(),
        options,
        pipeline,
        mqtt_health.clone(),
        subs_rx,
        ingest_stop.clone(),
    ));
    let delivery = TaskTracker::new();
    let delivery_stop = CancellationToken::new();
    delivery.spawn(fanout.clone().run(delivery_stop.clone()));
    if let Some(b) = batcher {
        delivery.spawn(b.run(delivery_stop.clone()));
    }

    let addr = listeners.http.local_addr()?;
    let server_stop = CancellationToken::new();
    let listener = GuardedListener::new(listeners.http, rt.stall_timeout, rt.socket_send_buffer);
    let stop = server_stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    info!(%addr, version = env!("CARGO_PKG_VERSION"), "sensorcast listening");
    let side = TaskTracker::new();
    let side_stop = CancellationToken::new();
    side.spawn(systemd::supervise(
        app.clone(),
        mqtt_health,
        config.http.ready_timeout,
        side_stop.clone(),
    ));
    side.spawn(realtime::expiry::run(app.clone(), side_stop.clone()));
    side.spawn(reload_loop(
        config.clone(),
        app.clone(),
        control,
        subs_tx,
        side_stop.clone(),
    ));
    let metrics_server = listeners
        .metrics
        .map(|l| metrics::spawn_server(l, app.clone(), server_stop.clone()));

    shutdown.cancelled().await;
    info!("shutting down");
    systemd::notify(&[sd_notify::NotifyState::Stopping]);
    side_stop.cancel();
    let limit = config.http.shutdown_timeout;
    app.shutting_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    server_stop.cancel();
    ingest_stop.cancel();
    tasks.close();
    bounded("mqtt ingest", limit, tasks.wait()).await;
    alerts_stop.cancel();
    alert_tasks.close();
    bounded("alert engine", limit, alert_tasks.wait()).await;
    // Pending batches are flushed, slow sockets get one last drain.
    delivery_stop.cancel();
    delivery.close();
    bounded("delivery", limit, delivery.wait()).await;
    fanout.drain();
    app_shutdown.cancel();
    // io.close() waits for every transport; a client that stopped reading would hold it forever.
    bounded("socket.io", limit, io.close()).await;
    match tokio::time::timeout(limit, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(RunError::Http(e)),
        Ok(Err(e)) => error!(error = %e, "http server task failed"),
        Err(_) => warn!("http server did not finish in time"),
    }
    if let Some(m) = metrics_server {
        bounded("metrics listener", limit, async {
            let _ = m.await;
        })
        .await;
    }
    info!("shutdown complete");
    Ok(())
}

/// Waits for reload requests and applies them (see `reload`).
async fn reload_loop(
    mut config: Config,
    app: AppState,
    control: Control,
    subscriptions: tokio::sync::watch::Sender<Arc<[config::Subscription]>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = control.reload.notified() => {}
        }
        systemd::notify(&[sd_notify::NotifyState::Reloading]);
        match app.reloader.reload(&config, &app.hub, &app.fanout) {
            Ok(applied) => {
                // New thresholds apply to running state; open alerts stay open.
                if let Err(e) = app.alerts.reload(&applied.registry).await {
                    error!(error = %e, "alert rules of the new registry refused; previous rules stay");
                }
                if let Some(subs) = applied.subscriptions {
                    subscriptions.send_replace(subs);
                }
                config = applied.config;
            }
            Err(e) => {
                error!(error = %e, "reload rejected; the previous config and registry stay in force")
            }
        }
        let status = systemd::status_line(&app, 0);
        systemd::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
    }
}

async fn bounded(what: &str, limit: Duration, f: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(limit, f).await.is_err() {
        warn!(what, "did not finish within the shutdown timeout");
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
