//! The framing guard's own connection to the broker. rumqttc talks to the guard over a unix
//! socket, so the TCP connection (with `TCP_NODELAY`) and TLS (rustls with the ring provider:
//! the configured CA bundle, an optional client certificate) are made here, from the same
//! `[mqtt]` keys rumqttc used to take. The TLS config is built once at start, so a CA file
//! without a certificate or an unreadable key is a startup error, not a reconnect loop.

use rumqttc::tokio_rustls::{client::TlsStream, TlsConnector};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

use super::config::{parse_broker_url, BrokerUrlError, MqttConfig};

/// How long the TCP connect and the TLS handshake may take together. rumqttc's own connection
/// timeout (CONNECT to CONNACK, through the guard) is set above it, so the guard's error is the
/// one `/health` shows.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the TLS settings cannot be used (a config error, at start).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    Url(#[from] BrokerUrlError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: String, what: String },
    #[error("client certificate: {0}")]
    ClientAuth(rustls::Error),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// Why one connection to the broker could not be made.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    #[error("no connection to {addr} within {CONNECT_TIMEOUT:?}")]
    Timeout { addr: String },
}

impl UpstreamError {
    /// A low-cardinality label for `sensorcast_mqtt_connection_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect { source, .. }
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                "refused"
            }
            UpstreamError::Connect { .. } => "unreachable",
            UpstreamError::Tls { .. } => "tls",
            UpstreamError::Timeout { .. } => "timeout",
        }
    }
}

/// A connected broker stream.
pub enum BrokerStream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Where the broker is and how to reach it.
pub struct Upstream {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Upstream {
    pub fn from_config(cfg: &MqttConfig) -> Result<Upstream, TlsSetupError> {
        let (tls, host, port) = parse_broker_url(&cfg.url)?;
        let tls = if tls {
            let name = ServerName::try_from(host.clone())
                .map_err(|_| TlsSetupError::ServerName(host.clone()))?;
            Some((TlsConnector::from(Arc::new(client_config(cfg)?)), name))
        } else {
            None
        };
        Ok(Upstream { host, port, tls })
    }

    /// `host:port` as the broker URL names it.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// TCP, then TLS when configured, within [`CONNECT_TIMEOUT`].
    pub async fn connect(&self) -> Result<BrokerStream, UpstreamError> {
        let addr = self.addr();
        let connect = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|source| UpstreamError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
            // Nagle would hold small acks back by tens of milliseconds.
            let _ = tcp.set_nodelay(true);
            let Some((connector, name)) = &self.tls else {
                return Ok(BrokerStream::Tcp(tcp));
            };
            let tls = connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|source| UpstreamError::Tls {
                    addr: addr.clone(),
                    source,
                })?;
            Ok(BrokerStream::Tls(Box::new(tls)))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout { addr }),
        }
    }
}

/// The rustls client config of `[mqtt]`: roots from `ca_file` (default: the system bundle),
/// a client certificate when `cert_file` and `key_file` are set.
fn client_config(cfg: &MqttConfig) -> Result<rustls::ClientConfig, TlsSetupError> {
    let ca_path = cfg
        .ca_file
        .clone()
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs(&ca_path)?);
    if added == 0 {
        return Err(pem_error(&ca_path, "no CA certificate in it"));
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert)?;
            if chain.is_empty() {
                return Err(pem_error(cert, "no certificate in it"));
            }
            let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| pem_error(key, &format!("no private key in it ({e})")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(TlsSetupError::ClientAuth)
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e.to_string()))
}

fn pem_error(path: &Path, what: &str) -> TlsSetupError {
    TlsSetupError::Pem {
        path: path.display().to_string(),
        what: what.to_string(),
    }
}
