//! The web edge: everything served over plain HTTP beside Socket.io.
//!
//! - [`health`]: `/health/*` probes and the token-protected `/api/`.
//! - [`history`]: the history store over HTTP: a unit's readings, the HACCP report (CSV).
//! - [`status`]: the status page (`GET /`), server-rendered.
//! - [`live`]: the live wallboard (`GET /live`), a page with its embedded script.
//! - [`signin`]: how a browser page gets its token (`POST /signin`, the cookie), for every page.
//! - [`metrics`]: `GET /metrics` (Prometheus text) on a listener of its own.
//! - [`serve`]: the HTTP serve loop (hyper with a timer: header timeouts), for both listeners.
//! - [`state`]: the handle the routes share; [`config`]: `[metrics]` and `[status]`.

pub mod config;
pub mod health;
pub mod history;
pub mod live;
pub mod metrics;
pub mod serve;
pub mod signin;
pub mod state;
pub mod status;

pub use config::{MetricsConfig, StatusConfig};
pub use state::WebState;

/// The routes served on the main listener (Socket.io is layered on by the service).
pub fn router(state: WebState) -> axum::Router {
    health::router(state.clone())
        .merge(history::router(state.clone()))
        .merge(signin::router(state.clone()))
        .merge(status::router(state.clone()))
        .merge(live::router(state))
}
