//! The HTTP serve loop, written out instead of `axum::serve` because that one gives hyper no
//! timer: hyper's `header_read_timeout` then never fires, and a client that opens a connection
//! and sends nothing, half a header, or a header line every few seconds holds it (and a file
//! descriptor) for ever. Here every connection is served by hyper's HTTP/1.1 connection with
//! a tokio timer and `header_timeout`, which bounds both the first request's header and the
//! wait for the next one on a kept-alive connection. Upgrades (websockets) are handed on as
//! axum expects. The listener ([`GuardedListener`]) caps the open connections and closes idle
//! ones; each request carries its connection's flow as `ConnectInfo<ConnFlow>`.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use tracing::debug;

use crate::core::connections::{ConnEnd, HttpConnections};
use crate::realtime::transport::{ConnFlow, GuardedListener};

/// The HTTP timeouts of a listener (`http.header_timeout`, `http.idle_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// Serves `router` on `listener` until `stop`, then lets every connection finish its request
/// in hand (hyper's graceful shutdown) and returns once all have closed. Upgraded connections
/// are not waited for: their owner (Socket.io) closes them.
pub async fn serve(
    mut listener: GuardedListener,
    router: Router,
    header_timeout: Duration,
    conns: Arc<HttpConnections>,
    stop: CancellationToken,
) {
    let tasks = TaskTracker::new();
    loop {
        let (io, _addr) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let flow = ConnFlow(io.flow());
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(flow.clone()));
            router.clone().call(req)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let stop = stop.clone();
        let conns = conns.clone();
        tasks.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                if e.is_timeout() {
                    conns.count(ConnEnd::HeaderTimeout);
                }
                debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}
