//! A TCP relay between sensorcast and the test broker that can lose or hold a SUBSCRIBE: the
//! network faults a test cannot time by hand. A SUBSCRIBE lost with its connection (the broker
//! never saw it, but kept the session the CONNECT made) is what made the service believe it
//! was subscribed when it was not; a SUBSCRIBE held back shows what the service reports while
//! its SUBACK is outstanding.
//!
//! Client → broker bytes are read frame by frame (MQTT fixed header and remaining length) so
//! that each SUBSCRIBE is seen whole, and its filters recorded; everything else passes
//! unchanged, in order. Broker → client bytes are copied as they come. Real sockets, the real
//! broker behind them: only the planned SUBSCRIBEs are touched.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::broker::Broker;

/// MQTT control packet type of SUBSCRIBE (MQTT 3.1.1 §3.8).
const SUBSCRIBE: u8 = 8;

/// What to do with one SUBSCRIBE from the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSubscribe {
    /// Drop it and close the connection (both ways), as a network cut right after it left.
    Cut,
    /// Keep it back until [`Proxy::release`]; the connection stays up.
    Hold,
}

/// The relay, listening on a loopback port of its own until dropped.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    release: Notify,
}

#[derive(Default)]
struct State {
    /// Actions for the next SUBSCRIBEs, in order; once empty, SUBSCRIBEs pass.
    plan: VecDeque<OnSubscribe>,
    /// The filters of every SUBSCRIBE seen, in order (cut and held ones too).
    seen: Vec<Vec<String>>,
    /// A SUBSCRIBE is being held right now.
    holding: bool,
    /// Client connections accepted so far.
    connections: u32,
}

impl Proxy {
    /// Listens on a free loopback port and relays every connection to `broker`.
    pub async fn start(broker: &Broker) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let upstream = broker.port();
        let task = tokio::spawn(accept(listener, upstream, shared.clone()));
        Proxy { port, shared, task }
    }

    /// `mqtt://127.0.0.1:PORT` of the relay, for the service's config.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// What to do with the next SUBSCRIBEs (appended to what is still planned).
    pub fn plan(&self, actions: &[OnSubscribe]) {
        self.state().plan.extend(actions.iter().copied());
    }

    /// The filters of every SUBSCRIBE seen so far.
    pub fn subscribes(&self) -> Vec<Vec<String>> {
        self.state().seen.clone()
    }

    /// Whether a SUBSCRIBE is being held right now.
    pub fn holding(&self) -> bool {
        self.state().holding
    }

    /// Client connections accepted so far.
    pub fn connections(&self) -> u32 {
        self.state().connections
    }

    /// Lets the held SUBSCRIBE go on to the broker.
    pub fn release(&self) {
        self.shared.release.notify_one();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, upstream: u16, shared: Arc<Shared>) {
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        shared.state.lock().unwrap().connections += 1;
        conns.spawn(relay(client, upstream, shared.clone()));
    }
}

/// One connection: the broker's bytes copied down, the client's frame by frame up.
async fn relay(client: TcpStream, upstream: u16, shared: Arc<Shared>) {
    let Ok(broker) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = broker.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut br, mut bw) = broker.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut br, &mut cw).await;
        let _ = cw.shutdown().await;
    });
    while let Some(frame) = read_frame(&mut cr).await {
        if frame[0] >> 4 == SUBSCRIBE {
            let action = {
                let mut s = shared.state.lock().unwrap();
                s.seen.push(filters(&frame));
                let action = s.plan.pop_front();
                s.holding = action == Some(OnSubscribe::Hold);
                action
            };
            match action {
                Some(OnSubscribe::Cut) => break,
                Some(OnSubscribe::Hold) => {
                    shared.release.notified().await;
                    shared.state.lock().unwrap().holding = false;
                }
                None => {}
            }
        }
        if bw.write_all(&frame).await.is_err() {
            break;
        }
    }
    // Dropping both halves of both sockets closes the connection on both sides.
    down.abort();
}

/// One whole MQTT frame (fixed header included), or `None` at EOF or on a malformed length.
async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let mut frame = vec![r.read_u8().await.ok()?];
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = r.read_u8().await.ok()?;
        frame.push(b);
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return None;
        }
    }
    let header = frame.len();
    frame.resize(header + len, 0);
    r.read_exact(&mut frame[header..]).await.ok()?;
    Some(frame)
}

/// The topic filters of a SUBSCRIBE frame: after the fixed header and the packet id, each is a
/// length-prefixed string followed by its QoS byte.
fn filters(frame: &[u8]) -> Vec<String> {
    let header = 1 + frame[1..].iter().take_while(|b| *b & 0x80 != 0).count() + 1;
    let mut rest = frame.get(header + 2..).unwrap_or_default();
    let mut out = Vec::new();
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let Some(topic) = rest.get(2..2 + n) else {
            break;
        };
        out.push(String::from_utf8_lossy(topic).into_owned());
        rest = rest.get(2 + n + 1..).unwrap_or_default();
    }
    out
}
