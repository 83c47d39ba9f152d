//! A webhook receiver for tests: a real HTTP/1.1 server (hyper) on an ephemeral loopback port.
#![allow(dead_code)]

use serde_json::Value;
use tokio::sync::mpsc;

/// A real HTTP/1.1 server (hyper) on 127.0.0.1 that answers 204 and hands each JSON body
/// POSTed to `/hooks/sensorcast` over.
pub async fn webhook_receiver() -> (String, mpsc::UnboundedReceiver<Value>) {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::{Bytes, Incoming};
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/sensorcast", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    assert_eq!(
                        (req.method().as_str(), req.uri().path()),
                        ("POST", "/hooks/sensorcast")
                    );
                    let body = req.into_body().collect().await?.to_bytes();
                    let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    let response = hyper::Response::builder().status(204);
                    Ok::<_, hyper::Error>(response.body(Empty::<Bytes>::new()).unwrap())
                }
            });
            tokio::spawn(async move {
                let http = hyper::server::conn::http1::Builder::new();
                let _ = http.serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    (url, rx)
}
