//! Outbound webhooks: every alert event, as JSON, POSTed to each URL in `[alerts] webhooks`,
//! so a box can reach a phone gateway or the cloud when no dashboard is open.
//!
//! Each URL has its own bounded queue and delivery task, so a dead endpoint delays only itself.
//! The engine never waits: when a queue is full the event is dropped for that URL and counted.
//! A delivery is retried with doubling backoff (500 ms up to `webhook_backoff_max`, jittered)
//! until `webhook_max_attempts`; a 4xx other than 408/429 is not retried. Everything is counted
//! and shown in `/health`.
//!
//! The HTTP client is a minimal HTTP/1.1 POST over a tokio `TcpStream` (one connection per
//! request, `Connection: close`), enough for a local relay or gateway. `https://` is not
//! supported: it would need a TLS client stack for one feature; put a relay on the box or the
//! LAN if the receiver needs TLS.

use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::model::Event;
use super::rules::AlertsConfig;

/// The first retry waits this long; each next one twice as long, up to the configured cap.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Bytes of response read, at most, looking for the status line.
const MAX_RESPONSE_HEAD: usize = 4096;

/// An `http://host[:port][/path]` URL, parsed once at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    host: String,
    port: u16,
    /// `host[:port]` as written, for the `Host` header.
    authority: String,
    path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        if url.starts_with("https://") {
            return Err(
                "https:// is not supported (no TLS client); use an http:// relay on the box or LAN"
                    .into(),
            );
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?}: needs a host (and no user info)"));
        }
        let bad_port = || format!("{url:?}: bad port");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, rest) = v6.split_once(']').ok_or_else(bad_port)?;
            match rest {
                "" => (host, 80),
                _ => (
                    host,
                    rest.strip_prefix(':')
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(bad_port)?,
                ),
            }
        } else {
            match authority.split_once(':') {
                Some((host, p)) => (host, p.parse().map_err(|_| bad_port())?),
                None => (authority, 80),
            }
        };
        if host.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{url:?}: bad host or path"));
        }
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

#[derive(Debug, Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    /// Events given up after every attempt failed (or a non-retryable answer).
    pub failed: AtomicU64,
    /// Events not queued because the URL's queue was full.
    pub dropped: AtomicU64,
    pub retries: AtomicU64,
}

/// The engine's side: one bounded queue per URL.
pub struct Webhooks {
    queues: Vec<(String, mpsc::Sender<Arc<[u8]>>)>,
    stats: Arc<WebhookStats>,
}

#[derive(Clone, Copy)]
struct Policy {
    timeout: Duration,
    max_attempts: u32,
    backoff_max: Duration,
}

impl Webhooks {
    /// Starts one delivery task per URL on `tasks`. A task ends when the engine drops this
    /// (after delivering what is queued; once `stop` is cancelled, without retry waits).
    pub fn spawn(
        cfg: &AlertsConfig,
        stats: Arc<WebhookStats>,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Webhooks {
        let policy = Policy {
            timeout: cfg.webhook_timeout,
            max_attempts: cfg.webhook_max_attempts,
            backoff_max: cfg.webhook_backoff_max.max(BACKOFF_START),
        };
        let mut queues = Vec::new();
        for raw in &cfg.webhooks {
            // Validated with the config; a URL that fails here was never accepted.
            let Ok(url) = HttpUrl::parse(raw) else {
                continue;
            };
            let (tx, rx) = mpsc::channel(cfg.webhook_queue);
            tasks.spawn(deliver(url, rx, policy, stats.clone(), stop.clone()));
            queues.push((raw.clone(), tx));
        }
        Webhooks { queues, stats }
    }

    /// Queues `event` for every URL without waiting; a full queue drops it for that URL.
    pub fn send(&self, event: &Event) {
        if self.queues.is_empty() {
            return;
        }
        let body = json!({ "event": event.name(), "data": event.payload() });
        let body: Arc<[u8]> = body.to_string().into_bytes().into();
        for (url, tx) in &self.queues {
            if tx.try_send(body.clone()).is_err() {
                let n = self.stats.dropped.fetch_add(1, Relaxed) + 1;
                if n == 1 || n % 100 == 0 {
                    warn!(url, dropped_total = n, "webhook queue full: event dropped");
                }
            }
        }
    }
}

async fn deliver(
    url: HttpUrl,
    mut rx: mpsc::Receiver<Arc<[u8]>>,
    policy: Policy,
    stats: Arc<WebhookStats>,
    stop: CancellationToken,
) {
    while let Some(body) = rx.recv().await {
        let mut backoff = BACKOFF_START;
        for attempt in 1..=policy.max_attempts {
            let error = match post(&url, &body, policy.timeout).await {
                Ok(status) if (200..300).contains(&status) => {
                    stats.delivered.fetch_add(1, Relaxed);
                    debug!(%url, status, "webhook delivered");
                    break;
                }
                Ok(status) if (400..500).contains(&status) && status != 408 && status != 429 => {
                    stats.failed.fetch_add(1, Relaxed);
                    warn!(%url, status, "webhook refused the event; not retrying");
                    break;
                }
                Ok(status) => format!("HTTP {status}"),
                Err(e) => e.to_string(),
            };
            if attempt == policy.max_attempts || stop.is_cancelled() {
                stats.failed.fetch_add(1, Relaxed);
                warn!(%url, attempt, error, "webhook delivery given up");
                break;
            }
            stats.retries.fetch_add(1, Relaxed);
            debug!(%url, attempt, error, "webhook delivery failed; will retry");
            let wait = backoff.mul_f64(0.75 + fastrand::f64() * 0.5);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => {}
            }
            backoff = (backoff * 2).min(policy.backoff_max);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an HTTP response")]
    BadResponse,
}

/// One HTTP/1.1 POST of a JSON `body`; returns the response status.
pub async fn post(url: &HttpUrl, body: &[u8], timeout: Duration) -> Result<u16, PostError> {
    let exchange = async {
        let mut tcp = TcpStream::connect((url.host.as_str(), url.port)).await?;
        let _ = tcp.set_nodelay(true);
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: sensorcast/{}\r\nConnection: close\r\n\r\n",
            url.path,
            url.authority,
            body.len(),
            env!("CARGO_PKG_VERSION"),
        );
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body).await?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < MAX_RESPONSE_HEAD {
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        status_of(&buf).ok_or(PostError::BadResponse)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| PostError::Timeout)?
}

/// The status code of an `HTTP/1.x NNN ...` status line.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://gw.local:8080/hooks/alerts?k=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("gw.local", 8080, "/hooks/alerts?k=1")
        );
        let u = HttpUrl::parse("http://10.0.0.2").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.authority.as_str()),
            (80, "/", "10.0.0.2")
        );
        let u = HttpUrl::parse("http://[::1]:9000/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert!(HttpUrl::parse("https://x/")
            .unwrap_err()
            .contains("not supported"));
        assert!(HttpUrl::parse("ftp://x/").is_err());
        assert!(HttpUrl::parse("http://x:port/").is_err());
        assert!(HttpUrl::parse("http://u:p@x/").is_err());
    }

    /// Answers each connection with the next status of `statuses`, returning the bodies seen.
    async fn server(statuses: Vec<u16>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for status in statuses {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let n = tcp.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        if body.len() >= len {
                            assert!(head.starts_with("POST /hook HTTP/1.1\r\n"), "{head}");
                            bodies.push(body.to_string());
                            break;
                        }
                    }
                }
                let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                tcp.write_all(reply.as_bytes()).await.unwrap();
            }
            bodies
        });
        (url, task)
    }

    #[tokio::test]
    async fn a_failing_endpoint_is_retried_until_it_accepts() {
        let (url, server) = server(vec![503, 500, 204]).await;
        let cfg = AlertsConfig {
            webhooks: vec![url],
            webhook_backoff_max: Duration::from_millis(600),
            ..AlertsConfig::default()
        };
        let stats = Arc::new(WebhookStats::default());
        let tasks = TaskTracker::new();
        let hooks = Webhooks::spawn(&cfg, stats.clone(), &tasks, CancellationToken::new());
        let event = Event::Resolved(super::super::model::AlertResolved {
            alert_id: "A1".into(),
            unit_id: "u1".into(),
            resolved_at: chrono::Utc::now(),
        });
        hooks.send(&event);
        drop(hooks);
        tasks.close();
        tokio::time::timeout(Duration::from_secs(10), tasks.wait())
            .await
            .expect("delivered in time");
        let bodies = server.await.unwrap();
        assert_eq!(bodies.len(), 3);
        let v: serde_json::Value = serde_json::from_str(&bodies[2]).unwrap();
        assert_eq!(v["event"], "alert:resolved");
        assert_eq!(v["data"]["alertId"], "A1");
        assert_eq!(stats.delivered.load(Relaxed), 1);
        assert_eq!(stats.retries.load(Relaxed), 2);
        assert_eq!(stats.failed.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        // Nothing listens on this port: every attempt fails, so the queue stays full.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = AlertsConfig {
            webhooks: vec![format!("http://127.0.0.1:{port}/")],
            webhook_queue: 1,
            webhook_max_attempts: 1,
            ..AlertsConfig::default()
        };
        let stats = Arc::new(WebhookStats::default());
        let tasks = TaskTracker::new();
        let hooks = Webhooks::spawn(&cfg, stats.clone(), &tasks, CancellationToken::new());
        let event = Event::Resolved(super::super::model::AlertResolved {
            alert_id: "A1".into(),
            unit_id: "u1".into(),
            resolved_at: chrono::Utc::now(),
        });
        for _ in 0..50 {
            hooks.send(&event);
        }
        assert!(stats.dropped.load(Relaxed) >= 48, "{stats:?}");
        drop(hooks);
        tasks.close();
        tasks.wait().await;
        let s = &stats;
        assert_eq!(
            s.dropped.load(Relaxed) + s.failed.load(Relaxed),
            50,
            "every event is either dropped or failed, none lost silently: {s:?}"
        );
    }
}
