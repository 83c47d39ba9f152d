//! Issue 12, item 1: one message the service cannot take must not stop ingest. A QoS 1 publish
//! over `mqtt.max_packet_size` on a persistent session used to drop the connection, come back
//! on every reconnect and stop every later reading; the framing guard (`src/ingest/guard.rs`)
//! now discards it unread, the pipeline counts it as `too_large` and acknowledges it.

mod common;

use common::broker::Broker;
use common::jsclient::{JsClient, JsDriver};
use common::service::{auth, config_text, http_get, Binary};
use serde_json::json;
use std::time::{Duration, Instant};

async fn subscribed(driver: &JsDriver, url: &str, unit: &str) -> JsClient {
    let c = driver.connect(url, Some(auth("o1", "viewer"))).await;
    c.wait_connect().await.expect("connect");
    let ack = c
        .emit_ack("subscribe:unit", vec![json!(unit)])
        .await
        .remove(0);
    assert_eq!(ack["ok"], true);
    c
}

/// `VmRSS` and `VmHWM` (peak RSS) of a process, bytes.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn client_id(config: &str) -> String {
    config
        .lines()
        .find_map(|l| l.strip_prefix("client_id = "))
        .expect("client_id in the test config")
        .trim_matches('"')
        .to_string()
}

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
/// each is refused and counted as `too_large`, the connection stays up (one broker session, no
/// reconnect), the next normal reading arrives at once, the peak RSS of the service does not
/// grow by anything like the message (the guard never buffers it), and the broker forgot them:
/// a restarted service with the same client id gets no redelivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_qos1_messages_are_refused_acked_and_ingest_goes_on() {
    let broker = Broker::start().await;
    let config = config_text(&broker.url());
    let id = client_id(&config);
    let bin = Binary::spawn(&config, &[]).await;
    bin.wait_ready().await;
    let pid = bin.child.id().expect("running");
    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &bin.url(), "u1").await;
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
    let (_, h) = http_get(bin.addr, "/health", None).await;
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["pipeline"]["rejected"]["json"]["too_large"], 2, "{h}");
    assert_eq!(h["checks"]["mqtt"]["reconnects"], 0, "{h}");
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
    let mut bin = bin;
    let status = tokio::time::timeout(Duration::from_secs(10), bin.child.wait())
        .await
        .expect("exited within 10 s")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let again = Binary::spawn(&config, &[]).await;
    again.wait_ready().await;
    let c = subscribed(&driver, &again.url(), "u1").await;
    reading_arrives(&broker, &c, 3.5).await;
    let (_, h) = http_get(again.addr, "/health", None).await;
    assert_eq!(h["pipeline"]["rejected"], json!({}), "{h}");
    assert_eq!(h["pipeline"]["messages"], 1, "{h}");
}
