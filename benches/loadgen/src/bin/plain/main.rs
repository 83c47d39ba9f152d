//! `plain`: a plain socketioxide broadcast server, the yardstick of issue 11 ("CPU per fan-out
//! delivery at most 1.2× a plain broadcast of the same frames"). The minimal correct server for
//! the protocol the loadgen speaks, with nothing of sensorcast's delivery policy (no slow-client
//! handling, no history or resume, no alerts, no limits):
//!
//! - axum 0.8 + socketioxide 0.18.9 (sensorcast's versions), socketioxide's default settings,
//!   `TCP_NODELAY` on accepted sockets; `GET /health/ready` is 200 once the MQTT subscription
//!   is acknowledged;
//! - the connect middleware checks the HS256 JWT (`jsonwebtoken`, `exp` required), joins
//!   `org:{org}` and registers `subscribe:unit(unitId, ack)`: a unit of the socket's
//!   organization joins `org:{org}:unit:{unit}` and acks `{ ok: true }` (else `{ ok: false }`);
//!   `connection:ack` follows, as both other stacks send it;
//! - one rumqttc subscriber (`TCP_NODELAY`, QoS 0, clean session) on `TOPIC`; each reading of a
//!   mapped sensor becomes sensorcast's `sensor:reading` JSON ([`wire::Reading`]) and goes out
//!   as one `io.to([unit room, site room]).emit(..)`, encoded once by socketioxide.
//!
//! Configured like the Node reference (the loadgen starts both the same way): `PORT`,
//! `MQTT_URL`, `TOPIC` (default `bench/+`), `MAPPING` (the reference's `mapping.json`),
//! `JWT_SECRET`. Release builds use the `bench-server` profile (sensorcast's release profile:
//! fat LTO, one codegen unit, stripped), so the comparison is between equally compiled code.

mod auth;
mod wire;

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::ListenerExt;
use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use auth::{Refused, Verifier};
use wire::{Feed, Mapping};

struct App {
    auth: Verifier,
    mapping: Arc<Mapping>,
    /// The MQTT subscription was acknowledged.
    ready: AtomicBool,
}

type Shared = Arc<App>;

/// The socket's organization, from its token.
#[derive(Clone)]
struct Org(Arc<str>);

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = env("PORT")?.parse().context("PORT")?;
    let mqtt_url = env("MQTT_URL")?;
    let topic = std::env::var("TOPIC").unwrap_or_else(|_| "bench/+".into());
    let mapping_file = env("MAPPING")?;
    let mapping = Arc::new(Mapping::parse(
        &std::fs::read_to_string(&mapping_file).with_context(|| mapping_file.clone())?,
    )?);
    let app = Arc::new(App {
        auth: Verifier::new(&env("JWT_SECRET")?),
        mapping: mapping.clone(),
        ready: AtomicBool::new(false),
    });

    let (layer, io) = SocketIo::builder().with_state(app.clone()).build_layer();
    io.ns("/", on_connect.with(authenticate));

    let (host, mqtt_port) = wire::broker_addr(&mqtt_url).context("MQTT_URL")?;
    tokio::spawn(mqtt_loop(host, mqtt_port, topic, io, app.clone()));

    let ready_app = app.clone();
    let router = axum::Router::new()
        .route(
            "/health/ready",
            get(move || async move {
                if ready_app.ready.load(Ordering::Relaxed) {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).await?;
    Ok(())
}

/// Checks the token; rooms and handlers are set here, before socketioxide sends the CONNECT
/// reply (it runs the connect handler after the reply, so a client's first `subscribe:unit`
/// could otherwise arrive before its handler exists).
async fn authenticate(
    s: SocketRef,
    TryData(auth): TryData<Value>,
    State(app): State<Shared>,
) -> Result<(), Refused> {
    let token = auth
        .as_ref()
        .ok()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str);
    let org = app.auth.org_of(token)?;
    s.join(format!("org:{org}"));
    s.extensions.insert(Org(org.into()));
    s.on("subscribe:unit", subscribe_unit);
    Ok(())
}

async fn on_connect(s: SocketRef, Extension(org): Extension<Org>) {
    let ack = json!({
        "socketId": s.id.to_string(),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "organizationId": &*org.0,
    });
    let _ = s.emit("connection:ack", &ack);
}

async fn subscribe_unit(
    s: SocketRef,
    TryData(unit): TryData<String>,
    ack: AckSender,
    Extension(org): Extension<Org>,
    State(app): State<Shared>,
) {
    let room = unit
        .ok()
        .and_then(|u| app.mapping.unit(&u))
        .filter(|u| u.org == org.0)
        .map(|u| u.rooms[0]);
    let _ = match room {
        Some(room) => {
            s.join(room);
            ack.send(&json!({ "ok": true }))
        }
        None => ack.send(&json!({ "ok": false, "error": "Access denied" })),
    };
}

/// Subscribes and broadcasts every mapped reading; reconnects (after 500 ms) if the broker
/// connection drops.
async fn mqtt_loop(host: String, port: u16, topic: String, io: SocketIo, app: Shared) {
    let mut o = MqttOptions::new(format!("plain-{}", std::process::id()), host, port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(o, 1000);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    el.set_network_options(net);
    let mut feed = Feed::new(app.mapping.clone(), chrono::Utc::now());
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.try_subscribe(topic.clone(), QoS::AtMostOnce);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => app.ready.store(true, Ordering::Relaxed),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Some((rooms, reading)) =
                    feed.accept(&p.topic, &p.payload, chrono::Utc::now())
                {
                    // A socket whose queue is full misses this reading: no policy here.
                    let _ = io.to(rooms).emit("sensor:reading", &reading).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("mqtt: {e}");
                app.ready.store(false, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
