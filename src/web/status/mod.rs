//! The status page (`GET /`): one server-rendered HTML page for the person with an SSH session
//! or a browser on the edge box. It shows the broker connection, every unit of the viewer's
//! organization with its state, last reading and its age, open alerts, unregistered sensors
//! and connected sockets. No script and no external asset: it works offline, refreshes itself
//! every 10 s (`<meta http-equiv="refresh">`), and every piece of text in it is escaped, since
//! ids come from config files and from sensors.
//!
//! Access is the same as `/api/` (an owner or admin JWT, unless `auth.mode = "none"`), through
//! [`crate::web::signin`]: `Authorization: Bearer` (curl), or the cookie its sign-in form sets.
//!
//! This file is the HTTP side; `page` gathers what the page shows, `chart` adds each unit's
//! last 24 h from the history store, `view` renders it (pure).

mod chart;
mod page;
mod view;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;

use crate::web::signin::{self, Need};
use crate::web::WebState;

pub use page::{age_state, gather, PageData};
pub use view::render;

pub fn router(app: WebState) -> Router {
    Router::new().route("/", get(page)).with_state(app)
}

async fn page(State(app): State<WebState>, uri: Uri, headers: HeaderMap) -> Response {
    match signin::authenticate(&app, &headers, &uri, Need::Admin) {
        Ok(p) => {
            let now = Utc::now();
            let mut data = gather(&app, &p, app.stale_after, now);
            chart::add(&app, &mut data.units, now).await;
            signin::html_response(StatusCode::OK, render(&data))
        }
        Err(denied) => denied.into_response(),
    }
}
