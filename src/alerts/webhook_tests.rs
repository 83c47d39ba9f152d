//! Webhook deliveries against real receivers: a hyper HTTP/1.1 server, plain or behind rustls
//! with a certificate from a CA made here (rcgen), and a port nothing listens on.

use super::*;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Mutex;
use tokio::net::TcpListener;

use crate::alerts::model::AlertResolved;

/// What a receiver saw: path, content type and body of each request.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A real HTTP/1.1 receiver, behind TLS when `tls` is given: the n-th request gets
/// `statuses[n]` (the last one after that). Returns its `/hook` URL.
async fn receiver(statuses: Vec<u16>, tls: Option<Arc<rustls::ServerConfig>>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/hook", listener.local_addr().unwrap());
    let seen = Seen::default();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, log, statuses) = (acceptor.clone(), log.clone(), statuses.clone());
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let (log, statuses) = (log.clone(), statuses.clone());
                async move {
                    let path = req.uri().path().to_string();
                    let kind = req.headers().get(CONTENT_TYPE).cloned();
                    let body = req.into_body().collect().await?.to_bytes();
                    let mut log = log.lock().unwrap();
                    log.push((
                        path,
                        kind.and_then(|v| v.to_str().ok().map(str::to_string))
                            .unwrap_or_default(),
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                    let status = statuses[(log.len() - 1).min(statuses.len() - 1)];
                    let response = hyper::Response::builder()
                        .status(status)
                        .body(Empty::<Bytes>::new());
                    Ok::<_, hyper::Error>(response.unwrap())
                }
            });
            tokio::spawn(async move {
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    // A client that refuses the certificate ends the handshake: nothing to serve.
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// A CA made for the test (its PEM) and a server config with a certificate it signed for
/// 127.0.0.1.
fn test_ca_and_server() -> (String, Arc<rustls::ServerConfig>) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sensorcast test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (ca.as_ref().pem(), Arc::new(server))
}

fn resolved() -> Event {
    Event::Resolved(AlertResolved {
        alert_id: "A1".into(),
        unit_id: "u1".into(),
        resolved_at: chrono::Utc::now(),
    })
}

/// Sends `events` through webhooks made from `cfg` and waits until every delivery task ended.
async fn deliver_all(cfg: &AlertsConfig, events: usize) -> Arc<WebhookStats> {
    let stats = Arc::new(WebhookStats::default());
    let tasks = TaskTracker::new();
    let hooks = Webhooks::spawn(cfg, stats.clone(), &tasks, CancellationToken::new());
    for _ in 0..events {
        hooks.send(&resolved());
    }
    drop(hooks);
    tasks.close();
    tokio::time::timeout(Duration::from_secs(10), tasks.wait())
        .await
        .expect("deliveries end in time");
    stats
}

#[test]
fn urls_are_http_or_https_with_a_host() {
    let u = parse_url("http://gw.local:8080/hooks/alerts?k=1").unwrap();
    assert_eq!(u.host(), Some("gw.local"));
    assert_eq!(u.port_u16(), Some(8080));
    assert_eq!(u.path_and_query().unwrap().as_str(), "/hooks/alerts?k=1");
    assert!(parse_url("https://hooks.example.com/x").is_ok());
    assert!(parse_url("http://[::1]:9000/x").is_ok());
    assert!(parse_url("ftp://x/")
        .unwrap_err()
        .contains("only http:// and https://"));
    assert!(parse_url("gw.local/hook").is_err());
    assert!(parse_url("http://x:port/")
        .unwrap_err()
        .contains("bad port"));
    assert!(parse_url("http://x:99999/").is_err());
    assert!(parse_url("http://u:p@x/")
        .unwrap_err()
        .contains("user info"));
}

#[test]
fn the_config_takes_https_and_checks_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |ca: Option<&str>| AlertsConfig {
        webhooks: vec!["https://hooks.example.com/x".into()],
        webhook_ca_file: ca.map(|name| dir.path().join(name)),
        ..AlertsConfig::default()
    };
    assert_eq!(cfg(None).validate(), Ok(()));
    let (key, message) = cfg(Some("missing.pem")).validate().unwrap_err();
    assert!(
        key == "webhook_ca_file" && message.contains("cannot read"),
        "{message}"
    );
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    let (_, message) = cfg(Some("junk.pem")).validate().unwrap_err();
    assert!(message.contains("no PEM certificate"), "{message}");
    std::fs::write(dir.path().join("ca.pem"), test_ca_and_server().0).unwrap();
    assert_eq!(cfg(Some("ca.pem")).validate(), Ok(()));
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_until_it_accepts() {
    let (url, seen) = receiver(vec![503, 500, 204], None).await;
    let cfg = AlertsConfig {
        webhooks: vec![url],
        webhook_backoff_max: Duration::from_millis(600),
        ..AlertsConfig::default()
    };
    let stats = deliver_all(&cfg, 1).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let (path, kind, body) = &seen[2];
    assert_eq!(
        (path.as_str(), kind.as_str()),
        ("/hook", "application/json")
    );
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["event"], "alert:resolved");
    assert_eq!(v["data"]["alertId"], "A1");
    assert_eq!(stats.delivered.load(Relaxed), 1);
    assert_eq!(stats.retries.load(Relaxed), 2);
    assert_eq!(stats.failed.load(Relaxed), 0);
}

/// `https://` to a receiver whose certificate a private CA signed, trusted through
/// `webhook_ca_file`.
#[tokio::test]
async fn an_https_webhook_is_delivered_to_a_receiver_of_the_private_ca() {
    let (ca_pem, server) = test_ca_and_server();
    let (url, seen) = receiver(vec![200], Some(server)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let cfg = AlertsConfig {
        webhooks: vec![url],
        webhook_ca_file: Some(ca_file),
        ..AlertsConfig::default()
    };
    assert_eq!(cfg.validate(), Ok(()));
    let stats = deliver_all(&cfg, 2).await;
    assert_eq!(stats.delivered.load(Relaxed), 2, "{stats:?}");
    assert_eq!(stats.failed.load(Relaxed) + stats.retries.load(Relaxed), 0);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let v: serde_json::Value = serde_json::from_str(&seen[0].2).unwrap();
    assert_eq!(v["data"]["alertId"], "A1");
}

/// The same receiver without its CA being trusted: no request gets through, and the event is
/// counted as failed after its attempts.
#[tokio::test]
async fn an_https_receiver_with_an_untrusted_certificate_fails_and_is_counted() {
    let (_, server) = test_ca_and_server();
    let (url, seen) = receiver(vec![200], Some(server)).await;
    let error = post(
        &client(RootCertStore::empty()),
        &parse_url(&url).unwrap(),
        Bytes::from_static(b"{}"),
        Duration::from_secs(5),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("certificate"), "{error}");
    let cfg = AlertsConfig {
        webhooks: vec![url],
        webhook_max_attempts: 2,
        ..AlertsConfig::default()
    };
    let stats = deliver_all(&cfg, 1).await;
    assert_eq!(stats.delivered.load(Relaxed), 0);
    assert_eq!(stats.retries.load(Relaxed), 1);
    assert_eq!(stats.failed.load(Relaxed), 1);
    assert!(seen.lock().unwrap().is_empty());
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
    for _ in 0..50 {
        hooks.send(&resolved());
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
