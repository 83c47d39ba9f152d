//! The edges of the core contract that need real certificates and keys: MQTT over TLS with a
//! client certificate (mosquitto requiring it), JWTs signed with ES256/RS256 public keys, and
//! CORS for browser dashboards. Keys and certificates are made with the openssl CLI per test.
//! The TLS tests also cover the MQTT framing guard, which makes the TLS connection itself.

mod common;

use common::broker::Broker;
use common::config::TestConfig;
use common::jsclient::JsDriver;
use common::service::{auth, now, subscribed, Mode, Service};
use common::wait::{check, eventually, WAIT};
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn make_pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ],
    );
    // Extensions make them X.509 v3, which webpki requires.
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &*format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &*format!("{name}.pem"),
            "-days",
            "2",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(["-extfile".into(), format!("{name}.ext")]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(dir, &refs);
    }
}

/// mqtts:// with a CA file and a client certificate: readings flow from a broker that requires
/// the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let p = |f: &str| pki.path().join(f).display().to_string();
    let tls = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        p("ca.pem"),
        p("server.pem"),
        p("server.key")
    );
    let broker = Broker::start_with(&tls).await;
    let url = format!("mqtts://127.0.0.1:{}", broker.port());
    let key = |f: &str| pki.path().join(f);
    let config =
        TestConfig::for_url(&url).mqtt_tls(&key("ca.pem"), &key("client.pem"), &key("client.key"));
    let service = Service::launch(&config, Mode::InProcess, false).await;
    // Two TLS handshakes (the service's and mosquitto_pub's) with fresh RSA keys: slower than a
    // plain start on a busy machine, hence the longer wait.
    eventually(2 * WAIT, "ready over mqtts", || async {
        let (code, health) = service.get("/health", None).await;
        let ready = service.get("/health/ready", None).await.0 == 200;
        check(
            ready && code == 200,
            format!("{code} {health}\nbroker log:\n{}", broker.log()),
        )
    })
    .await;
    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;
    // Publish over TLS with the CLI too: first a 1 MiB message, over the framing limit, which
    // the framing guard skips inside the TLS stream; the reading after it arrives all the same.
    std::fs::write(pki.path().join("big.bin"), vec![b'x'; 1 << 20]).unwrap();
    for message in [["-f", &p("big.bin")], ["-m", r#"{"temperature": 2.25}"#]] {
        let out = tokio::process::Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &broker.port().to_string(),
                "--cafile",
                &p("ca.pem"),
                "--cert",
                &p("client.pem"),
                "--key",
                &p("client.key"),
                "-t",
                "sensors/probe-1",
                "-q",
                "1",
            ])
            .args(message)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(c.next_event("sensor:reading").await[0]["temperature"], 2.25);
    let (_, health) = service.get("/health", None).await;
    assert_eq!(
        health["pipeline"]["rejected"]["json"]["too_large"], 1,
        "{health}"
    );
    assert_eq!(health["checks"]["mqtt"]["reconnects"], 0, "{health}");
    service.stop().await;
}

/// mqtts:// against a broker whose certificate another CA signed: `/health` says the TLS
/// handshake failed and why (the framing guard makes the TLS connection, not rumqttc).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_an_unknown_ca_says_why_in_health() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    openssl(
        pki.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other-ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=other-ca",
        ],
    );
    let p = |f: &str| pki.path().join(f).display().to_string();
    let tls = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\n",
        p("ca.pem"),
        p("server.pem"),
        p("server.key")
    );
    let broker = Broker::start_with(&tls).await;
    let url = format!("mqtts://127.0.0.1:{}", broker.port());
    let config = TestConfig::for_url(&url).mqtt("ca_file", p("other-ca.pem"));
    let service = Service::launch(&config, Mode::InProcess, false).await;
    let error = eventually(WAIT, "a TLS error in /health", || async {
        let (_, health) = service.get("/health", None).await;
        let error = health["checks"]["mqtt"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        check(error.contains("TLS"), &error).map(|()| error)
    })
    .await;
    let want = format!("TLS handshake with 127.0.0.1:{} failed", broker.port());
    assert!(error.contains(&want), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");
    service.stop().await;
}

/// A token signed by jsonwebtoken's RustCrypto provider. Not `jsonwebtoken::encode`: that uses
/// the process's provider, which is the service's own (ring, verification only) once an
/// in-process service has started.
fn sign_with_rust_crypto(
    alg: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
    claims: &serde_json::Value,
) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::to_vec(&jsonwebtoken::Header::new(alg)).unwrap();
    let message = format!(
        "{}.{}",
        b64(&header),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    let signer = (provider.signer_factory)(&alg, key).unwrap();
    let signature = signer.try_sign(message.as_bytes()).unwrap();
    format!("{message}.{}", b64(&signature))
}

/// Tokens signed with an EC (ES256) or RSA (RS256) private key verify against the configured
/// public key; a token signed with another key is refused with the signature message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_tokens_es256_and_rs256() {
    let broker = Broker::start().await;
    let driver = JsDriver::spawn().await;
    for (alg, genargs) in [
        (
            jsonwebtoken::Algorithm::ES256,
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ],
        ),
        (
            jsonwebtoken::Algorithm::RS256,
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ],
        ),
    ] {
        let keys = tempfile::tempdir().unwrap();
        for name in ["key.pem", "other.pem"] {
            let mut a = genargs.clone();
            a.push(name);
            openssl(keys.path(), &a);
        }
        openssl(
            keys.path(),
            &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"],
        );
        let config = TestConfig::new(&broker).auth_public_key(&keys.path().join("pub.pem"));
        let service = Service::start(&config).await;
        let sign = |file: &str| {
            let pem = std::fs::read(keys.path().join(file)).unwrap();
            let key = match alg {
                jsonwebtoken::Algorithm::ES256 => {
                    jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap()
                }
                _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
            };
            let claims = json!({ "sub": "u", "org_id": "o1", "exp": now() + 60 });
            sign_with_rust_crypto(alg, &key, &claims)
        };
        let ok = driver
            .connect(&service.url(), Some(json!({ "token": sign("key.pem") })))
            .await;
        assert!(ok.wait_connect().await.is_ok(), "{alg:?} token verifies");
        let bad = driver
            .connect(&service.url(), Some(json!({ "token": sign("other.pem") })))
            .await;
        assert_eq!(
            bad.wait_connect().await,
            Err("Invalid token signature".to_string()),
            "{alg:?}"
        );
        let hs = driver
            .connect(&service.url(), Some(auth("o1", "viewer")))
            .await;
        assert_eq!(
            hs.wait_connect().await,
            Err("Invalid token signature".to_string()),
            "HS256 refused with a public key"
        );
        service.stop().await;
    }
}

/// CORS: the configured origin gets credentials-allowed headers on Socket.io polling and API
/// requests; another origin gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_configured_origins() {
    let broker = Broker::start().await;
    let config = TestConfig::new(&broker).http("cors_origins", vec!["https://dash.example.com"]);
    let service = Service::start(&config).await;
    let request = |origin: &str, method: &str| {
        format!(
            "{method} /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: GET\r\nConnection: close\r\n\r\n"
        )
    };
    for (origin, allowed) in [
        ("https://dash.example.com", true),
        ("https://evil.example.com", false),
    ] {
        for method in ["OPTIONS", "GET"] {
            let head = raw_http(service.addr, &request(origin, method))
                .await
                .to_ascii_lowercase();
            let has = head.contains(&format!("access-control-allow-origin: {origin}"));
            assert_eq!(has, allowed, "{method} from {origin}: {head}");
            if allowed {
                assert!(
                    head.contains("access-control-allow-credentials: true"),
                    "{head}"
                );
            }
        }
    }
    service.stop().await;
}

async fn raw_http(addr: std::net::SocketAddr, req: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split("\r\n\r\n").next().unwrap_or("").to_string()
}
