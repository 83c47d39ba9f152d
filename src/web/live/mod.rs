//! The live wallboard (`GET /live`): every unit of the viewer's organization with its state,
//! live value and age, a 24 h chart with its limits, and the open alerts with an acknowledge
//! button, updated through Socket.io by the page itself. Its HTML, CSS and script are embedded
//! in the binary (`assets/`; the script is the committed build of `clients/live`, which bundles
//! `clients/js`), so the page needs nothing but the box: it works offline on a site's LAN, and
//! `cargo build` needs neither node nor npm.
//!
//! Sign-in is every page's ([`crate::web::signin`]: the sign-in form, then the `HttpOnly`
//! cookie; or `Authorization: Bearer`), but any role of an organization may look:
//! acknowledging is left to the socket's own rules. `GET /live/session` gives the page what the
//! server knows and the socket does not send: the token from the cookie (for the socket's
//! handshake; a script cannot read an `HttpOnly` cookie), the units with their names, limits
//! and state now.

mod session;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::Principal;
use crate::web::signin::{self, Need};
use crate::web::WebState;

const PAGE: &str = include_str!("assets/live.html");
const STYLE: &str = include_str!("assets/live.css");
const SCRIPT: &str = include_str!("assets/live.js");

pub fn router(app: WebState) -> Router {
    Router::new()
        .route("/live", get(page))
        .route("/live/session", get(session::session))
        .route(
            "/live/live.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
        .route(
            "/live/live.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .with_state(app)
}

async fn page(State(app): State<WebState>, uri: Uri, headers: HeaderMap) -> Response {
    match viewer(&app, &headers, &uri) {
        Ok(_) => live_page(),
        Err(denied) => denied.into_response(),
    }
}

/// Who is looking (any role), and the token they signed in with (none with `auth.mode =
/// "none"`); else the response to send instead (the sign-in page, 401).
pub(crate) fn viewer(
    app: &WebState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(Principal, Option<String>), signin::Denied> {
    let p = signin::authenticate(app, headers, uri, Need::AnyRole)?;
    let token = signin::bearer(headers)
        .map(str::to_string)
        .or_else(|| signin::cookie_token(headers));
    Ok((p, token))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    // Small and embedded: revalidating costs little, and a new binary's assets show at once.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The pages' headers (no caching, no framing, no referrer: `signin::html_response`), with a
/// policy that lets only the page's own script and style run and connect only back to this
/// origin (the Socket.io connection).
fn live_page() -> Response {
    let mut r = signin::html_response(StatusCode::OK, PAGE.to_string());
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    r
}
