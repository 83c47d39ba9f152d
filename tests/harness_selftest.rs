//! Proves the test helpers in `tests/common/` work, independently of sensorcast.
//!
//! When a sensorcast integration test fails, the first question is whether the harness or the
//! service is wrong. These tests answer the harness half: the private mosquitto accepts,
//! forwards and persists messages, both publishers are acknowledged, and the Node driver
//! reports what the official Socket.io client sees, including against a tiny socketioxide
//! server that is not sensorcast.

mod common;

use std::time::Duration;

use common::broker::{free_port, Broker, Publisher};
use common::jsclient::JsDriver;
use common::wait::{check, eventually, WAIT};
use rumqttc::{AsyncClient, ConnAck, Event, Incoming, MqttOptions, Publish, QoS};
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use tokio::sync::mpsc;

/// An MQTT subscriber whose incoming packets arrive on a channel; its task ends on the first
/// connection error, so a broker stop ends it.
struct Subscriber {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Incoming>,
}

impl Subscriber {
    async fn connect(broker: &Broker, id: &str, clean_session: bool) -> (Subscriber, ConnAck) {
        let mut options = MqttOptions::new(id, broker.host(), broker.port());
        options.set_clean_session(clean_session);
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let (tx, incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(packet) = event {
                    let _ = tx.send(packet);
                }
            }
        });
        let mut sub = Subscriber { client, incoming };
        let connack = sub
            .next_matching(|p| {
                if let Incoming::ConnAck(c) = p {
                    Some(c)
                } else {
                    None
                }
            })
            .await;
        (sub, connack)
    }

    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        self.next_matching(|p| matches!(p, Incoming::SubAck(_)).then_some(()))
            .await;
    }

    async fn next_publish(&mut self) -> Publish {
        self.next_matching(|p| {
            if let Incoming::Publish(p) = p {
                Some(p)
            } else {
                None
            }
        })
        .await
    }

    async fn next_matching<T>(&mut self, mut pick: impl FnMut(Incoming) -> Option<T>) -> T {
        let wait = async {
            loop {
                let packet = self
                    .incoming
                    .recv()
                    .await
                    .expect("subscriber connection ended");
                if let Some(found) = pick(packet) {
                    return found;
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("subscriber waited too long")
    }
}

/// A rumqttc Publisher's QoS 1 message is acknowledged and delivered to a subscriber.
#[tokio::test]
async fn publisher_qos1_reaches_a_subscriber() {
    let broker = Broker::start().await;
    let (mut sub, _) = Subscriber::connect(&broker, "selftest-sub", true).await;
    sub.subscribe("site/+/temp").await;

    let publisher = Publisher::connect(&broker).await;
    publisher.publish("site/a/temp", r#"{"c":4.5}"#, 1).await;

    let msg = sub.next_publish().await;
    assert_eq!(msg.topic, "site/a/temp");
    assert_eq!(&msg.payload[..], br#"{"c":4.5}"#);
}

/// Many in-flight publishes are each confirmed, and arrive in order.
#[tokio::test]
async fn publisher_confirms_a_burst_in_order() {
    let broker = Broker::start().await;
    let (mut sub, _) = Subscriber::connect(&broker, "selftest-burst", true).await;
    sub.subscribe("burst").await;

    let publisher = Publisher::connect(&broker).await;
    let mut confirms = Vec::new();
    for i in 0..300 {
        confirms.push(publisher.publish_nowait("burst", i.to_string(), 1).await);
    }
    for confirm in confirms {
        confirm.wait().await;
    }
    for i in 0..300 {
        assert_eq!(sub.next_publish().await.payload, i.to_string().into_bytes());
    }
}

/// `Broker::publish` goes through the real mosquitto_pub, for any bytes and an empty payload.
#[tokio::test]
async fn mosquitto_pub_reaches_a_subscriber() {
    let broker = Broker::start().await;
    let (mut sub, _) = Subscriber::connect(&broker, "selftest-cli", true).await;
    sub.subscribe("cli/#").await;

    broker.publish("cli/text", "hello", 1).await;
    broker.publish("cli/bytes", [0u8, 0xff, b'\n', 7], 0).await;
    broker.publish("cli/empty", b"", 1).await;

    assert_eq!(&sub.next_publish().await.payload[..], b"hello");
    assert_eq!(&sub.next_publish().await.payload[..], [0u8, 0xff, b'\n', 7]);
    assert!(sub.next_publish().await.payload.is_empty());
}

/// A QoS 1 message queued for an offline persistent session survives a broker restart.
#[tokio::test]
async fn restart_keeps_a_persistent_sessions_queued_message() {
    let mut broker = Broker::start().await;
    let (mut sub, _) = Subscriber::connect(&broker, "selftest-persistent", false).await;
    sub.subscribe("cold/room1").await;
    sub.client.disconnect().await.unwrap();
    drop(sub);
    // The message below must be queued for an offline session, so the broker must have seen
    // the DISCONNECT first.
    eventually(WAIT, "mosquitto to log the DISCONNECT", || async {
        let log = broker.log();
        check(
            log.contains("Client selftest-persistent disconnected."),
            log,
        )
    })
    .await;

    Publisher::connect(&broker)
        .await
        .publish("cold/room1", "queued", 1)
        .await;
    broker.restart().await;

    let (mut sub, connack) = Subscriber::connect(&broker, "selftest-persistent", false).await;
    assert!(
        connack.session_present,
        "session lost across restart; log:\n{}",
        broker.log()
    );
    let msg = sub.next_publish().await;
    assert_eq!(
        (msg.topic.as_str(), &msg.payload[..]),
        ("cold/room1", &b"queued"[..])
    );
}

/// The JS driver reports connect_error, per transport, when nothing listens.
#[tokio::test]
async fn js_driver_reports_connect_error_when_nothing_listens() {
    let driver = JsDriver::spawn().await;
    let url = format!("http://127.0.0.1:{}", free_port());

    let polling = driver.connect(&url, None).await;
    assert_eq!(
        polling.wait_connect().await,
        Err("xhr poll error".to_owned())
    );

    let websocket = driver
        .connect_with(&url, None, Some(vec!["websocket"]))
        .await;
    assert_eq!(
        websocket.wait_connect().await,
        Err("websocket error".to_owned())
    );
}

/// Starts a socketioxide server that is not sensorcast: it greets with the auth payload,
/// acks `echo`, emits `a`, `b`, `a`, `done` on `burst`, disconnects on `kick`, and refuses auth
/// `{"deny":true}`.
async fn tiny_server() -> String {
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", on_connect.with(refuse_denied));
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn refuse_denied(TryData(auth): TryData<Value>) -> Result<(), &'static str> {
    match auth {
        Ok(auth) if auth["deny"] == json!(true) => Err("denied by tiny_server"),
        _ => Ok(()),
    }
}

async fn on_connect(s: SocketRef, TryData(auth): TryData<Value>) {
    s.emit("hello", &auth.unwrap_or(Value::Null)).ok();
    s.on("echo", async |Data(d): Data<Value>, ack: AckSender| {
        ack.send(&d).ok();
    });
    s.on("burst", async |s: SocketRef| {
        for (name, n) in [("a", 1), ("b", 1), ("a", 2), ("done", 0)] {
            s.emit(name, &n).ok();
        }
    });
    s.on("kick", async |s: SocketRef| {
        s.disconnect().ok();
    });
}

/// The Rust-side API round-trips through the real client: auth, acks, buffered events in
/// order, server disconnect, client close and reconnect on the same socket.
#[tokio::test]
async fn js_client_round_trips_with_a_socketioxide_server() {
    let url = tiny_server().await;
    let driver = JsDriver::spawn().await;

    let denied = driver.connect(&url, Some(json!({"deny": true}))).await;
    assert_eq!(
        denied.wait_connect().await,
        Err("denied by tiny_server".to_owned())
    );

    let c = driver
        .connect_with(&url, Some(json!({"token": "t"})), Some(vec!["websocket"]))
        .await;
    let first_id = c.wait_connect().await.expect("connects");
    assert_eq!(c.next_event("hello").await, vec![json!({"token": "t"})]);
    assert_eq!(
        c.emit_ack("echo", vec![json!({"x": 1})]).await,
        vec![json!({"x": 1})]
    );

    c.emit("burst", vec![]).await;
    c.next_event("done").await;
    assert_eq!(c.next_event("b").await, vec![json!(1)]);
    assert_eq!(c.drain_events("a"), vec![vec![json!(1)], vec![json!(2)]]);
    c.assert_no_event("a", Duration::from_millis(200)).await;

    c.emit("burst", vec![]).await;
    assert_eq!(c.next_event("b").await, vec![json!(1)]);
    assert_eq!(c.next_event("a").await, vec![json!(1)]);
    assert_eq!(c.next_event("a").await, vec![json!(2)]);

    c.emit("kick", vec![]).await;
    assert_eq!(c.wait_disconnect().await, "io server disconnect");
    c.reconnect().await;
    let second_id = c.wait_connect().await.expect("reconnects");
    assert_ne!(first_id, second_id);

    c.close().await;
    c.reconnect().await;
    c.wait_connect().await.expect("reconnects after close");
    assert_eq!(
        c.emit_ack_within("no-such-handler", vec![], Duration::from_millis(300))
            .await,
        None
    );
}
