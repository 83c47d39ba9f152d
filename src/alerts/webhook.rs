//! Outbound webhooks: every alert event, as JSON, POSTed to each URL in `[alerts] webhooks`,
//! so a box can reach a phone gateway or the cloud when no dashboard is open.
//!
//! Each URL has its own bounded queue and delivery task, so a dead endpoint delays only itself.
//! The engine never waits: when a queue is full the event is dropped for that URL and counted.
//! A delivery is retried with doubling backoff (500 ms up to `webhook_backoff_max`, jittered)
//! until `webhook_max_attempts`; a 4xx other than 408/429 is not retried. Everything is counted
//! and shown in `/health`.
//!
//! The HTTP client is hyper-util's pooled (legacy) client over hyper-rustls, so `http://` and
//! `https://` both work. TLS uses rustls with its ring provider given explicitly (the library
//! does not rely on a process-wide default provider) and verifies the receiver against the
//! system's CA bundle plus `[alerts] webhook_ca_file`, for a private CA.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Request, Uri};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

use super::model::Event;
use super::rules::AlertsConfig;

/// The first retry waits this long; each next one twice as long, up to the configured cap.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Where Debian, Raspberry Pi OS and Ubuntu keep the system's trusted CAs (as the MQTT TLS
/// code assumes too).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The client every delivery task shares (one connection pool).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An `http://` or `https://` URL with a host, parsed once at config load.
pub fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "{url:?}: only http:// and https:// URLs are supported"
        ));
    }
    match uri.authority() {
        Some(a) if a.as_str().contains('@') => {
            Err(format!("{url:?}: user info in the URL is not supported"))
        }
        // http::Uri leaves the port unchecked until asked.
        Some(a) if a.as_str() != a.host() && a.port_u16().is_none() => {
            Err(format!("{url:?}: bad port"))
        }
        Some(a) if !a.host().is_empty() => Ok(uri),
        _ => Err(format!("{url:?}: needs a host")),
    }
}

/// The certificates of a PEM file; an unreadable file or one without a certificate is an error.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// Adds the certificates of the PEM file `path` to `roots`; a file without any usable CA
/// certificate is an error.
pub fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), String> {
    let (added, _) = roots.add_parsable_certificates(read_certificates(path)?);
    if added == 0 {
        return Err(format!("{}: no usable CA certificate", path.display()));
    }
    Ok(())
}

/// The CAs an `https://` receiver is verified against: the system bundle, if it can be read,
/// and `webhook_ca_file`. A problem with either is logged, and https deliveries that need the
/// missing CAs then fail (counted).
fn trusted_roots(cfg: &AlertsConfig) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let https = cfg.webhooks.iter().any(|u| u.starts_with("https://"));
    match read_certificates(Path::new(SYSTEM_CA_BUNDLE)) {
        Ok(certs) => {
            roots.add_parsable_certificates(certs);
        }
        Err(e) if https => warn!(error = %e, "no system CAs for https webhooks"),
        Err(_) => {}
    }
    if let Some(path) = &cfg.webhook_ca_file {
        // Checked with the config; an error here means the file changed since.
        if let Err(e) = add_ca_file(&mut roots, path) {
            error!(error = %e, "webhook_ca_file not usable");
        }
    }
    roots
}

/// The webhook client: HTTP/1.1 over TCP (no Nagle) or rustls, trusting `roots`.
pub fn client(roots: RootCertStore) -> HttpClient {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring's provider has the cipher suites of TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .build(connector)
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
#[derive(Clone)]
pub struct Webhooks {
    queues: Vec<(String, mpsc::Sender<Bytes>)>,
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
        let mut queues = Vec::new();
        if cfg.webhooks.is_empty() {
            return Webhooks { queues, stats };
        }
        let policy = Policy {
            timeout: cfg.webhook_timeout,
            max_attempts: cfg.webhook_max_attempts,
            backoff_max: cfg.webhook_backoff_max.max(BACKOFF_START),
        };
        let client = client(trusted_roots(cfg));
        for raw in &cfg.webhooks {
            // Validated with the config; a URL that fails here was never accepted.
            let Ok(url) = parse_url(raw) else {
                continue;
            };
            let (tx, rx) = mpsc::channel(cfg.webhook_queue);
            let deliver = deliver(client.clone(), url, rx, policy, stats.clone(), stop.clone());
            tasks.spawn(deliver);
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
        let body = Bytes::from(body.to_string());
        for (url, tx) in &self.queues {
            if tx.try_send(body.clone()).is_err() {
                let n = self.stats.dropped.fetch_add(1, Relaxed) + 1;
                if n == 1 || n.is_multiple_of(100) {
                    warn!(url, dropped_total = n, "webhook queue full: event dropped");
                }
            }
        }
    }
}

async fn deliver(
    client: HttpClient,
    url: Uri,
    mut rx: mpsc::Receiver<Bytes>,
    policy: Policy,
    stats: Arc<WebhookStats>,
    stop: CancellationToken,
) {
    while let Some(body) = rx.recv().await {
        let mut backoff = BACKOFF_START;
        for attempt in 1..=policy.max_attempts {
            let error = match post(&client, &url, body.clone(), policy.timeout).await {
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
    /// With its causes: hyper-util's own text ("client error (Connect)") says little alone.
    #[error("{}", causes(.0))]
    Client(#[from] hyper_util::client::legacy::Error),
    #[error("{0}")]
    Request(#[from] http::Error),
}

/// `error: cause: cause...`
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One POST of a JSON `body`, within `timeout`; returns the response status. The response
/// body is not read.
pub async fn post(
    client: &HttpClient,
    url: &Uri,
    body: Bytes,
    timeout: Duration,
) -> Result<u16, PostError> {
    let request = Request::post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("sensorcast/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))?;
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .map_err(|_| PostError::Timeout)??;
    Ok(response.status().as_u16())
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
