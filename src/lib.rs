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
//! - [`alerts`]: the alert engine: rules, unit states, alerts, persistence, webhooks.
//! - [`realtime`]: Socket.io handshake auth and client events.
//! - [`auth`]: JWT verification shared by sockets and HTTP.
//! - [`http`]: health and `/api/` routes.
//! - [`stats`]: counters for everything accepted, rejected or dropped.
//! - [`app`]: the cheap-clone handle the handlers share.

pub mod alerts;
pub mod app;
pub mod auth;
pub mod config;
pub mod decode;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod pipeline;
pub mod reading;
pub mod realtime;
pub mod registry;
pub mod route;
pub mod stats;

use axum::serve::ListenerExt;
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
use crate::config::{AuthMode, Config};
use crate::hub::Hub;
use crate::ingest::MqttHealth;
use crate::pipeline::Pipeline;
use crate::registry::Registry;

/// The sockets the service serves on, bound by the caller (main, or a test on port 0).
pub struct Listeners {
    pub http: TcpListener,
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

/// Runs the service until `shutdown` is cancelled, then shuts down in this order:
/// 1. refuse new sockets and stop accepting connections;
/// 2. stop MQTT ingest (the message in hand is emitted and handed to the alert engine first)
///    and send DISCONNECT;
/// 3. stop the alert engine: it judges what is queued, announces it while sockets are still
///    connected, and writes its state; webhooks get one last attempt at what they hold;
/// 4. disconnect sockets;
/// 5. let the HTTP server finish.
///
/// Steps 2-5 are bounded by `http.shutdown_timeout` each.
pub async fn run(
    config: Config,
    registry: Registry,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let auth = Authenticator::from_config(&config.auth)?;
    if auth.mode() == AuthMode::None {
        warn!(org = ?config.auth.dev_org, "AUTH IS OFF (auth.mode = \"none\"): every socket is trusted as this organization. Development only.");
    }
    let options = ingest::mqtt_options(&config.mqtt).map_err(RunError::Mqtt)?;
    let (alerts, alert_engine) =
        Alerts::new(&config.alerts, &config.state.dir, &registry, Clock::System)?;
    let hub = Hub::new(registry, config.limits.unmapped_capacity);
    let mqtt_health = Arc::new(MqttHealth::default());
    let app_shutdown = CancellationToken::new();
    let app = AppState::new(
        hub.clone(),
        auth,
        mqtt_health.clone(),
        alerts.clone(),
        app_shutdown.clone(),
    );

    let (io_layer, io) = SocketIo::builder()
        .with_state(app.clone())
        .max_buffer_size(config.limits.socket_buffer)
        .max_payload(config.limits.max_client_payload)
        .build_layer();
    realtime::register(&io);
    let cors = cors_layer(&config.http.cors_origins)?;
    let router = http::router(app.clone()).layer(io_layer).layer(cors);

    // The alert engine has its own tracker: it must stop after ingest and before sockets.
    let alert_tasks = TaskTracker::new();
    let alerts_stop = CancellationToken::new();
    let outlets = Outlets {
        io: Some(io.clone()),
        hub: hub.clone(),
        tap: None,
    };
    alert_tasks.spawn(alert_engine.run(outlets, alert_tasks.clone(), alerts_stop.clone()));

    let tasks = TaskTracker::new();
    let ingest_stop = CancellationToken::new();
    let pipeline = Pipeline::new(
        hub,
        io.clone(),
        config.mqtt.subscriptions.clone(),
        config.limits.max_payload_bytes,
    )
    .with_alerts(alerts);
    tasks.spawn(ingest::run(
        config.mqtt.clone(),
        options,
        pipeline,
        mqtt_health,
        ingest_stop.clone(),
    ));

    let addr = listeners.http.local_addr()?;
    let server_stop = CancellationToken::new();
    // axum does not set TCP_NODELAY on accepted sockets; without it small frames wait for Nagle.
    let listener = listeners.http.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let stop = server_stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    info!(%addr, version = env!("CARGO_PKG_VERSION"), "sensorcast listening");

    shutdown.cancelled().await;
    info!("shutting down");
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
    app_shutdown.cancel();
    // io.close() waits for every transport; a client that stopped reading would hold it forever.
    bounded("socket.io", limit, io.close()).await;
    match tokio::time::timeout(limit, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(RunError::Http(e)),
        Ok(Err(e)) => error!(error = %e, "http server task failed"),
        Err(_) => warn!("http server did not finish in time"),
    }
    info!("shutdown complete");
    Ok(())
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
