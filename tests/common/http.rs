//! A tiny HTTP/1.1 client for the service's endpoints, so tests need no extra dependencies:
//! JSON answers ([`http_get`], polled with [`get_until`]) and raw text ([`http_get_raw`], for
//! HTML, the Prometheus format and headers).
#![allow(dead_code)]

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wait::{eventually, WAIT};

/// Minimal HTTP/1.1 GET: (status, JSON body or Null). Status 0: no answer (nothing listens,
/// or the connection was reset, as while the service shuts down).
pub async fn http_get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, Value) {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        return (0, Value::Null);
    };
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    if tcp.write_all(req.as_bytes()).await.is_err() {
        return (0, Value::Null);
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("http response in 5 s");
    if read.is_err() {
        return (0, Value::Null);
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// An HTTP response as text: status, headers (names lower-case), body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every header of that (lower-case) name.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Minimal HTTP/1.1 GET with extra request headers, returning the raw text (for HTML and the
/// Prometheus format, and to see `Set-Cookie`).
pub async fn http_get_raw(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    http_raw(addr, "GET", path, headers, "").await
}

/// A form POST (`application/x-www-form-urlencoded`, fields percent-encoded here) with extra
/// request headers, returning the raw text.
pub async fn http_post_form(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> RawResponse {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    let mut all = headers.to_vec();
    all.push(("Content-Type", "application/x-www-form-urlencoded"));
    http_raw(addr, "POST", path, &all, &body.join("&")).await
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.1 request (`Connection: close`) with `headers` and `body`, answered as text.
pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    if !body.is_empty() {
        extra.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n{body}"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("http response in 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Polls `/health/ready` at `addr` until it answers 200; fails after `limit` with the last
/// answer (`/health` says why it is not ready).
pub async fn wait_ready(addr: SocketAddr, limit: Duration) {
    eventually(
        limit,
        &format!("sensorcast at {addr} to be ready"),
        || async {
            match http_get(addr, "/health/ready", None).await {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code} {body}")),
            }
        },
    )
    .await
}

/// GETs `path` until `done(status, body)` holds (for up to [`WAIT`]) and returns that answer;
/// fails naming `what` with the last answer.
pub async fn get_until(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    what: &str,
    done: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    eventually(WAIT, what, || async {
        let (code, body) = http_get(addr, path, bearer).await;
        if done(code, &body) {
            Ok((code, body))
        } else {
            Err(format!("GET {path}: {code} {body}"))
        }
    })
    .await
}

/// The value of the first Prometheus exposition line that starts with `prefix` (the name and,
/// if any, the labels; end a bare name with a space).
pub fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix:?} in:\n{metrics}"))
}
