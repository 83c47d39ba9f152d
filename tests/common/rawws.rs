//! A raw engine.io v4 / socket.io v5 client over one websocket, for what the official client
//! will not do: stop reading its socket, or send garbage frames. Speaks just enough protocol:
//! the `0{...}` open packet, `40{auth}` CONNECT, `2`/`3` ping/pong, `42[...]` events.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub struct RawSocket {
    ws: WebSocketStream<tokio::net::TcpStream>,
}

impl RawSocket {
    /// Opens the websocket (with a small receive buffer if asked, so that a client that stops
    /// reading fills up quickly) and completes the Socket.io CONNECT with `auth`.
    pub async fn connect(addr: SocketAddr, auth: &Value, recv_buffer: Option<u32>) -> RawSocket {
        let mut s = Self::open(addr, recv_buffer).await;
        s.send(&format!("40{auth}")).await;
        let reply = s.recv(Duration::from_secs(5)).await.expect("CONNECT reply");
        assert!(reply.starts_with("40{\"sid\""), "connect refused: {reply}");
        s
    }

    /// Opens the transport only (engine.io open packet read), no Socket.io CONNECT.
    pub async fn open(addr: SocketAddr, recv_buffer: Option<u32>) -> RawSocket {
        let sock = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            sock.set_recv_buffer_size(size).unwrap();
        }
        let tcp = sock.connect(addr).await.expect("tcp connect");
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::client_async(url, tcp)
            .await
            .expect("ws handshake");
        let mut s = RawSocket { ws };
        let open = s.recv(Duration::from_secs(5)).await.expect("open packet");
        assert!(open.starts_with('0'), "engine.io open packet, got {open}");
        s
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("ws send");
    }

    /// Sends and reports whether the connection still took it.
    pub async fn try_send(&mut self, text: &str) -> bool {
        self.ws.send(Message::text(text)).await.is_ok()
    }

    /// The next text frame (answering pings on the way), or `None` on timeout or close.
    pub async fn recv(&mut self, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match msg {
                Ok(Message::Text(t)) if t.as_str() == "2" => {
                    let _ = self.ws.send(Message::text("3")).await;
                }
                Ok(Message::Text(t)) => return Some(t.to_string()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Emits `42["event", ...args]` with an ack id and returns the ack's arguments.
    pub async fn emit_ack(&mut self, id: u32, event: &str, args: &[Value]) -> Value {
        let mut list = vec![Value::from(event)];
        list.extend_from_slice(args);
        self.send(&format!("42{id}{}", Value::Array(list))).await;
        let prefix = format!("43{id}");
        let mut seen = Vec::new();
        loop {
            let Some(frame) = self.recv(Duration::from_secs(5)).await else {
                panic!("no ack {id} for {event}; frames seen: {seen:?}");
            };
            if let Some(rest) = frame.strip_prefix(&prefix) {
                return serde_json::from_str(rest).expect("ack json");
            }
            seen.push(frame);
        }
    }

    /// Reads until the server closes the connection; `true` if it did within `timeout`.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}
