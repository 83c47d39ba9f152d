//! MQTT side of the load: a publisher on its own OS thread and runtime (sharing a runtime with
//! a thousand socket clients starves it and makes the server look slow), publishing at a steady
//! rate over many sensors; and a plain subscriber, used to measure the broker's own ceiling
//! (publisher → mosquitto → subscriber, no server in between).

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

use crate::ledger::{self, Ledger};

/// One steady burst of readings: `count` publishes at `rate`/s, seqs `first_seq..`, sensor of
/// seq `s` is `s{s % sensors}`.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub port: u16,
    pub rate: f64,
    pub first_seq: u64,
    pub count: u64,
    pub sensors: u64,
    pub qos: QoS,
    /// Publish this temperature instead of the seq encoding (alert scenario); `None` normally.
    pub fixed_temperature: Option<fn(u64) -> Option<f64>>,
}

#[derive(Debug, Clone, Copy)]
pub struct PublishReport {
    /// Achieved rate / planned rate.
    pub achieved: f64,
}

fn options(id: String, port: u16) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_clean_session(true)
        .set_inflight(u16::MAX);
    let (client, mut el) = AsyncClient::new(o, 100_000);
    let mut net = NetworkOptions::new();
    // Nagle would batch small publishes and fake tens of milliseconds of latency.
    net.set_tcp_nodelay(true);
    el.set_network_options(net);
    (client, el)
}

async fn until_connected(el: &mut EventLoop) -> anyhow::Result<()> {
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = el.poll().await? {
            return Ok(());
        }
    }
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis()
}

/// Starts the publisher thread; the receiver yields when the last reading was handed to the
/// broker connection (not when it was delivered).
pub fn publish(
    plan: PublishPlan,
    ledger: Arc<Ledger>,
) -> oneshot::Receiver<anyhow::Result<PublishReport>> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("publisher runtime");
            let _ = tx.send(rt.block_on(publish_loop(plan, ledger)));
        })
        .expect("spawn publisher");
    rx
}

async fn publish_loop(plan: PublishPlan, ledger: Arc<Ledger>) -> anyhow::Result<PublishReport> {
    let (client, mut el) = options(format!("loadgen-pub-{}", std::process::id()), plan.port);
    until_connected(&mut el).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let poll_stop = stop.clone();
    let poller = tokio::spawn(async move {
        while !poll_stop.load(Ordering::Relaxed) {
            if el.poll().await.is_err() {
                break;
            }
        }
        el
    });
    let interval = Duration::from_secs_f64(1.0 / plan.rate);
    let start = Instant::now();
    for k in 0..plan.count {
        let due = start + interval.mul_f64(k as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let seq = plan.first_seq + k;
        let sensor = seq % plan.sensors;
        let temperature = match plan.fixed_temperature.and_then(|f| f(seq)) {
            Some(t) => format!("{t:.7}"),
            None => ledger::temperature_for(seq),
        };
        let payload = format!(
            r#"{{"temperature": {temperature}, "humidity": 50.0, "battery": 90, "ts": {}}}"#,
            epoch_ms()
        );
        if seq < ledger.capacity() {
            ledger.mark_sent(seq);
        }
        client
            .publish(format!("bench/s{sensor}"), plan.qos, false, payload)
            .await?;
    }
    let elapsed = start.elapsed();
    // Let the event loop write what is queued, then disconnect.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = client.try_disconnect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    poller.abort();
    let planned = plan.count as f64 / plan.rate;
    Ok(PublishReport {
        achieved: (planned / elapsed.as_secs_f64()).min(1.0),
    })
}

/// A subscriber on `bench/+` on its own thread pinned to `cpu` (standing in for the server),
/// recording each reading in the ledger. Runs until `stop` is set.
pub fn subscriber(
    port: u16,
    cpu: usize,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) -> oneshot::Receiver<anyhow::Result<()>> {
    let (ready_tx, ready_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("mqtt-sink".into())
        .spawn(move || {
            crate::procstat::pin_current_thread(cpu);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("sink runtime");
            rt.block_on(async move {
                let (client, mut el) =
                    options(format!("loadgen-sink-{}", std::process::id()), port);
                if let Err(e) = until_connected(&mut el).await {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let _ = client.try_subscribe("bench/+", QoS::AtMostOnce);
                let mut ready_tx = Some(ready_tx);
                while !stop.load(Ordering::Relaxed) {
                    let ev = tokio::time::timeout(Duration::from_millis(100), el.poll()).await;
                    match ev {
                        Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                            if let Some(tx) = ready_tx.take() {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            if let Some(seq) = temperature_in(&p.payload).and_then(ledger::seq_of) {
                                ledger.delivered(seq);
                            }
                        }
                        Ok(Ok(_)) | Err(_) => {}
                        Ok(Err(_)) => break,
                    }
                }
            });
        })
        .expect("spawn sink");
    ready_rx
}

/// The number after `"temperature":` in a JSON text, without parsing the rest.
pub fn temperature_in(text: &[u8]) -> Option<f64> {
    const KEY: &[u8] = b"\"temperature\":";
    let at = text.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &text[at..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b',' | b'}'))
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_temperature() {
        let t = super::temperature_in(br#"{"deviceId":"s1","temperature":20.0000012,"x":1}"#);
        assert_eq!(t, Some(20.0000012));
        assert_eq!(super::temperature_in(br#"{"temperature": 4.5}"#), Some(4.5));
    }
}
