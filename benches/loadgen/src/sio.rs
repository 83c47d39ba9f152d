//! A Socket.io v4 client over raw engine.io v4 websockets, just enough of the protocol to be a
//! real dashboard to both servers: the `0{...}` open packet, `40{"token":..}` CONNECT with auth,
//! `40{"sid":..}` or `44{..}` (connect error), `42<id>[event, arg]` with acks `43<id>[..]`,
//! events `42[..]`, and ping `2` → pong `3`. Frames are text; readings are matched to their
//! publish through the seq encoded in their temperature (see [`crate::ledger`]).

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::ledger::{self, Ledger};
use crate::mqtt::temperature_in;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a handshake or a subscribe ack may take before the client counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct ClientSpec {
    pub port: u16,
    pub token: String,
    pub units: Vec<String>,
}

/// What one client saw over its life.
#[derive(Debug, Default, Clone)]
pub struct ClientEnd {
    pub readings: u64,
    /// Bytes of the readings' websocket text (to size the kernel-floor frames).
    pub reading_bytes: u64,
    /// Readings whose seq the ledger did not know (probes, stale readings).
    pub unmatched: u64,
    /// Latencies of `alert:triggered` events, ms, from their `recordedAt`/`ts` (wall clock).
    pub alerts_ms: Vec<f64>,
    pub error: Option<String>,
}

/// Connects, authenticates and subscribes; returns the open websocket.
pub async fn connect(spec: &ClientSpec) -> anyhow::Result<Ws> {
    tokio::time::timeout(STEP_TIMEOUT, connect_inner(spec))
        .await
        .map_err(|_| anyhow!("handshake or subscribe timed out"))?
}

async fn connect_inner(spec: &ClientSpec) -> anyhow::Result<Ws> {
    let url = format!(
        "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
        spec.port
    );
    // Small buffers: the defaults (128 KiB each) would cost the harness 256 MB at 2000 clients.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .context("websocket upgrade")?;
    let open = next_text(&mut ws).await?;
    if !open.starts_with("0{") {
        bail!("expected the engine.io open packet, got {open:?}");
    }
    ws.send(Message::text(format!(r#"40{{"token":"{}"}}"#, spec.token)))
        .await?;
    loop {
        let t = next_text(&mut ws).await?;
        if t.starts_with("40") {
            break;
        }
        if t.starts_with("44") {
            bail!("connect_error: {t}");
        }
        if t == "2" {
            ws.send(Message::text("3")).await?;
        }
    }
    for (id, unit) in spec.units.iter().enumerate() {
        ws.send(Message::text(format!(
            r#"42{id}["subscribe:unit","{unit}"]"#
        )))
        .await?;
    }
    let mut pending = spec.units.len();
    while pending > 0 {
        let t = next_text(&mut ws).await?;
        if let Some(rest) = t.strip_prefix("43") {
            // Both servers ack with {ok:true,...}; sensorcast adds `latest` and `epoch`.
            if !rest.contains(r#""ok":true"#) {
                bail!("subscribe refused: {t}");
            }
            pending -= 1;
        } else if t == "2" {
            ws.send(Message::text("3")).await?;
        }
    }
    Ok(ws)
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => bail!("connection closed"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Reads events until `stop` turns true, answering pings and recording readings and alerts.
pub async fn run(mut ws: Ws, ledger: Arc<Ledger>, mut stop: watch::Receiver<bool>) -> ClientEnd {
    let mut end = ClientEnd::default();
    loop {
        let msg = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            m = ws.next() => m,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let t = t.as_str();
                if t == "2" {
                    if let Err(e) = ws.send(Message::text("3")).await {
                        end.error = Some(format!("pong: {e}"));
                        return end;
                    }
                } else if t.starts_with(r#"42["sensor:reading""#) {
                    end.readings += 1;
                    end.reading_bytes += t.len() as u64;
                    let matched = temperature_in(t.as_bytes())
                        .and_then(ledger::seq_of)
                        .is_some_and(|seq| ledger.delivered(seq));
                    if !matched {
                        end.unmatched += 1;
                    }
                } else if t.starts_with(r#"42["alert:triggered""#) {
                    if let Some(ms) = alert_latency_ms(t, &ledger) {
                        end.alerts_ms.push(ms);
                    }
                }
            }
            Some(Ok(Message::Close(_))) | None => {
                end.error = Some("server closed the connection".into());
                return end;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                end.error = Some(e.to_string());
                return end;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    end
}

/// Milliseconds from the alert's reading time (`recordedAt` RFC 3339, or `ts` epoch ms) to now.
fn alert_latency_ms(text: &str, ledger: &Ledger) -> Option<f64> {
    // The hot reading's temperature carries its seq (`HOT_BASE + seq * 1e-7`, see compare.rs);
    // `alert:triggered` passes it through as `value`, so the latency is on the ledger's clock.
    let at = text.find(r#""value":"#)? + r#""value":"#.len();
    let rest = &text[at..];
    let value: f64 = rest[..rest.find([',', '}'])?].trim().parse().ok()?;
    let seq = ((value - ledger::HOT_BASE) / ledger::T_STEP).round();
    if seq.is_nan() || seq < 0.0 {
        return None;
    }
    Some(ledger.since_sent_us(seq as u64)? / 1000.0)
}

/// Clients that are connected and reading, and the handshakes that failed.
pub struct Connected {
    /// Until every handshake and subscribe finished (or failed).
    pub took: Duration,
    pub tasks: Vec<tokio::task::JoinHandle<ClientEnd>>,
    /// Index in `specs` of each client that failed, with the first error text.
    pub failed: Vec<usize>,
    pub first_error: Option<String>,
}

/// Connects `specs` with at most `parallel` handshakes in flight, then leaves each client
/// reading on its own task. A client that fails is reported, not fatal (unless all fail).
pub async fn connect_all(
    specs: Vec<ClientSpec>,
    parallel: usize,
    ledger: Arc<Ledger>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Connected> {
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut pending = Vec::with_capacity(specs.len());
    for spec in specs {
        let sem = sem.clone();
        pending.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            connect(&spec).await
        }));
    }
    let mut sockets = Vec::with_capacity(pending.len());
    let mut failed = Vec::new();
    let mut first_error = None;
    for (i, p) in pending.into_iter().enumerate() {
        match p.await.expect("connect task") {
            Ok(ws) => sockets.push(ws),
            Err(e) => {
                failed.push(i);
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    let took = start.elapsed();
    if sockets.is_empty() {
        bail!("no client connected: {}", first_error.unwrap_or_default());
    }
    let tasks = sockets
        .into_iter()
        .map(|ws| tokio::spawn(run(ws, ledger.clone(), stop.clone())))
        .collect();
    Ok(Connected {
        took,
        tasks,
        failed,
        first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_latency_comes_from_the_seq_in_value() {
        let ledger = Ledger::new(1000);
        ledger.mark_sent(700);
        let value = ledger::HOT_BASE + 700.0 * ledger::T_STEP;
        let text = format!(
            r#"42["alert:triggered",{{"alertId":"a1","unitId":"u0","value":{},"threshold":30.0}}]"#,
            serde_json::to_string(&value).unwrap()
        );
        let ms = alert_latency_ms(&text, &ledger).expect("a published seq");
        assert!((0.0..1000.0).contains(&ms), "{ms}");
        // Not published yet, a value below the hot base, or no value at all: no sample.
        let unsent = text.replace("40.00007", "40.00008");
        assert_ne!(unsent, text);
        assert_eq!(alert_latency_ms(&unsent, &ledger), None);
        assert_eq!(
            alert_latency_ms(r#"42["alert:triggered",{"value":4.0}]"#, &ledger),
            None
        );
        assert_eq!(
            alert_latency_ms(r#"42["alert:triggered",{"value":null}]"#, &ledger),
            None
        );
    }
}
