//! The live wallboard (`GET /live`): every unit of the viewer's organization with its state,
//! live value and age, a 24 h chart with its limits, and the open alerts with an acknowledge
//! button, updated through Socket.io by the page itself. Its HTML, CSS and script are embedded
//! in the binary (`assets/`; the script is the committed build of `clients/live`, which bundles
//! `clients/js`), so the page needs nothing but the box: it works offline on a site's LAN, and
//! `cargo build` needs neither node nor npm.
//!
//! Sign-in is the status page's (`?token=` once, then the `HttpOnly` cookie), through one
//! function, [`viewer`], but any role of an organization may look: acknowledging is left to
//! the socket's own rules. `GET /live/session` gives the page what the server knows and the
//! socket does not send: the token from the cookie (for the socket's handshake; a script
//! cannot read an `HttpOnly` cookie), the units with their names, limits and state now.

mod session;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::{AuthMode, Principal};
use crate::web::status::{cookie, session_cookie, set_cookie, TokenQuery, COOKIE};
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

async fn page(
    State(app): State<WebState>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    match viewer(&app, q.token.as_deref(), &headers) {
        Ok(_) => with_headers(
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response(),
        ),
        Err(r) => *r,
    }
}

/// Who is looking, by the status page's rules: `?token=` is verified, kept in the cookie and
/// answered with a redirect to `/live` (so it leaves the address bar); otherwise the
/// `Authorization: Bearer` header or the cookie. `Err` is the response to send instead (the
/// redirect, or 401 saying how to sign in). The one place to switch to a shared sign-in module.
pub(crate) fn viewer(
    app: &WebState,
    query_token: Option<&str>,
    headers: &HeaderMap,
) -> Result<(Principal, Option<String>), Box<Response>> {
    if let Some(token) = query_token {
        if app.rt.auth.mode() == AuthMode::None {
            return Err(Box::new(redirect()));
        }
        return Err(Box::new(match app.rt.auth.verify(Some(token)) {
            Ok(p) => {
                let mut r = redirect();
                let now = jsonwebtoken::get_current_timestamp();
                set_cookie(&mut r, &session_cookie(token, p.expires_at, now));
                r
            }
            Err(e) => {
                app.rt.hub.stats().client_error(e.reason());
                unauthorized(&e.to_string(), false)
            }
        }));
    }
    let from_cookie = cookie(headers, COOKIE);
    let token = crate::web::health::bearer(headers)
        .map(str::to_string)
        .or(from_cookie.clone());
    match app.rt.auth.verify(token.as_deref()) {
        Ok(p) => Ok((p, token)),
        Err(e) => {
            app.rt.hub.stats().client_error(e.reason());
            Err(Box::new(unauthorized(
                &e.to_string(),
                from_cookie.is_some(),
            )))
        }
    }
}

fn redirect() -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/live"));
    with_headers(r)
}

fn unauthorized(why: &str, clear_cookie: bool) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>Sign-in needed</title><body style=\"font:16px system-ui;max-width:40em;margin:2em auto\">\
         <h1>Sign-in needed</h1><p>The wallboard needs a token of your organization ({}).</p>\
         <p>Open it once as <code>/live?token=&lt;JWT&gt;</code>: the token is checked, kept in an \
         HttpOnly cookie until it expires, and removed from the address.</p>",
        maud::html! { (why) }.into_string()
    );
    let mut r = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    if clear_cookie {
        set_cookie(&mut r, &session_cookie("", Some(0), 0));
    }
    with_headers(r)
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

/// No caching of what carries live data or a token, no framing, no referrer (the first request
/// had a token in its URL), and a policy that lets only the page's own script and style run
/// and connect only back to this origin (the Socket.io connection).
fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}
