//! Issue 12, item 1: one message the service cannot take must not stop ingest. A QoS 1 publish
//! over `mqtt.max_packet_size` on a persistent session used to drop the connection, come back
//! on every reconnect and stop every later reading; the framing guard (`src/ingest/guard.rs`)
//! now discards it unread, the pipeline counts it as `too_large` and acknowledges it. And when
//! a connection does fail the same way after every reconnect, `/health` and `/metrics` say so.

mod common;

use common::broker::{free_port, Broker};
use common::config::TestConfig;
use common::http::{http_get_raw, sample};
use common::jsclient::{JsClient, JsDriver};
use common::service::{auth, rss, subscribed, Service};
use common::wait::{check, eventually};
use rumqttc::{AsyncClient, MqttOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Publishes a normal reading and returns how long it took to reach the socket.
async fn reading_arrives(broker: &Broker, c: &JsClient, temperature: f64) -> Duration {
    let sent = Instant::now();
    broker
        .publish(
            "sensors/probe-1",
            format!(r#"{{"temperature": {temperature}}}"#),
            1,
        )
        .await;
    let r = c
        .next_event_timeout("sensor:reading", Duration::from_secs(3))
        .await
        .unwrap_or_else(|| panic!("the reading at {temperature} °C did not arrive within 3 s"));
    assert_eq!(r[0]["temperature"], temperature);
    sent.elapsed()
}

/// 1 MiB and 5 MiB QoS 1 messages (over the 256 KiB framing limit) on a persistent session:
/// each is refused and counted as `too_large` (and logged once), the connection stays up (one broker session, no
/// reconnect), the next normal reading arrives at once, the peak RSS of the service does not
/// grow by anything like the message (the guard never buffers it), and the broker forgot them:
/// a restarted service with the same client id gets no redelivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_qos1_messages_are_refused_acked_and_ingest_goes_on() {
    let broker = Broker::start().await;
    let config = TestConfig::new(&broker);
    let id = config.client_id().to_string();
    let mut bin = Service::start_binary(&config, &[]).await;
    let pid = bin.child().id().expect("running");
    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &bin, auth("o1", "viewer"), &["u1"]).await;
    // A first reading warms every path a reading takes before memory is measured.
    reading_arrives(&broker, &c, 1.5).await;
    let (_, peak_before) = rss(pid);

    for size in [1 << 20, 5 << 20] {
        broker.publish("sensors/probe-1", vec![b'x'; size], 1).await;
        let took = reading_arrives(&broker, &c, 2.5).await;
        assert!(
            took < Duration::from_secs(1),
            "after a {size}-byte message the next reading took {took:?}"
        );
    }
    let (rss_after, peak_after) = rss(pid);
    let (_, h) = bin.get("/health", None).await;
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["pipeline"]["rejected"]["json"]["too_large"], 2, "{h}");
    assert_eq!(h["checks"]["mqtt"]["reconnects"], 0, "{h}");
    assert_eq!(h["checks"]["mqtt"]["errorRepeats"], 0, "{h}");
    let sessions = broker.log().matches(&format!("as {id} (")).count();
    assert_eq!(sessions, 1, "connected {sessions} times:\n{}", broker.log());
    // The guard reads 16 KiB at a time; rumqttc's buffer is bounded by the framing limit.
    let grown = peak_after.saturating_sub(peak_before);
    assert!(
        grown < 1 << 20,
        "peak RSS grew by {grown} bytes over a 5 MiB message (RSS now {rss_after})"
    );

    // The same session again: had the broker kept either message, it would redeliver it now.
    bin.signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), bin.child().wait())
        .await
        .expect("exited within 10 s")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // Logged once: not per reconnect (there was none), and the second message on the same
    // topic within a minute only counted.
    let log = bin.stderr().await;
    let lines = log.matches("over mqtt.max_packet_size").count();
    assert_eq!(lines, 1, "{log}");
    let again = Service::start_binary(&config, &[]).await;
    let c = subscribed(&driver, &again, auth("o1", "viewer"), &["u1"]).await;
    reading_arrives(&broker, &c, 3.5).await;
    let (_, h) = again.get("/health", None).await;
    assert_eq!(h["pipeline"]["rejected"], json!({}), "{h}");
    assert_eq!(h["pipeline"]["messages"], 1, "{h}");
}

/// Two instances configured with one client id kick each other off the broker: every
/// connection ends with the same error a moment after it was made. `/health` reports the loop
/// (`errorRepeats`, `repeatedError`, status degraded, not ready), `/metrics` the gauge and the
/// errors by kind; once the other instance is gone and the connection has held, all is clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_error_after_every_reconnect_is_reported_as_a_loop() {
    let broker = Broker::start().await;
    let config = TestConfig::new(&broker);
    let id = config.client_id().to_string();
    let service = Service::start(&config).await;

    // The other instance: same client id, reconnects 300 ms after each time it is kicked.
    let mut options = MqttOptions::new(id, broker.host(), broker.port());
    options.set_clean_session(false);
    let (_client, mut eventloop) = AsyncClient::new(options, 10);
    let twin = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    });

    let (code, h) = eventually(Duration::from_secs(20), "the loop in /health", || async {
        let (code, h) = service.get("/health", None).await;
        match h["checks"]["mqtt"]["repeatedError"].is_string() {
            true => Ok((code, h)),
            false => Err(h.to_string()),
        }
    })
    .await;
    assert_eq!(code, 503, "{h}");
    let mqtt = &h["checks"]["mqtt"];
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(mqtt["errorRepeats"].as_u64().unwrap() >= 3, "{h}");
    assert!(
        mqtt["error"].as_str().unwrap().contains("the same error"),
        "{h}"
    );
    let (ready, _) = service.get("/health/ready", None).await;
    assert_eq!(ready, 503);
    let metrics = http_get_raw(service.metrics_addr(), "/metrics", &[])
        .await
        .body;
    let gauge = sample(&metrics, "sensorcast_mqtt_error_repeats ");
    assert!(gauge >= 3.0, "{metrics}");
    let closed = sample(
        &metrics,
        "sensorcast_mqtt_connection_errors_total{kind=\"closed\"} ",
    );
    assert!(closed >= 3.0, "{metrics}");

    twin.abort();
    let h = eventually(Duration::from_secs(30), "the loop to clear", || async {
        let (code, h) = service.get("/health", None).await;
        check(code == 200, &h).map(|()| h)
    })
    .await;
    assert_eq!(h["checks"]["mqtt"]["errorRepeats"], 0, "{h}");
    assert_eq!(h["checks"]["mqtt"]["repeatedError"], Value::Null, "{h}");
    service.stop().await;
}

/// A broker that refuses the TCP connection: `/health` says so in the guard's words (the
/// guard, not rumqttc, connects to the broker) and counts the repeats, without calling it a
/// loop, since no connection was ever made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_reported_with_its_cause() {
    let port = free_port();
    let config = TestConfig::for_url(&format!("mqtt://127.0.0.1:{port}"));
    let service = Service::launch(&config, common::service::Mode::InProcess, false).await;
    let h = eventually(Duration::from_secs(10), "two repeats counted", || async {
        let (_, h) = service.get("/health", None).await;
        let repeats = h["checks"]["mqtt"]["errorRepeats"].as_u64().unwrap_or(0);
        check(repeats >= 2, &h).map(|()| h)
    })
    .await;
    let error = h["checks"]["mqtt"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("mqtt not connected: ") && error.contains("refused"),
        "{error}"
    );
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert_eq!(h["checks"]["mqtt"]["repeatedError"], Value::Null, "{h}");
    assert_eq!(h["status"], "degraded");
    service.stop().await;
}
