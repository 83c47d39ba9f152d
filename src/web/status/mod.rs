//! The status page (`GET /`): one server-rendered HTML page for the person with an SSH session
//! or a browser on the edge box. It shows the broker connection, every unit of the viewer's
//! organization with its state, last reading and its age, open alerts, unregistered sensors
//! and connected sockets. No script and no external asset: it works offline, refreshes itself
//! every 10 s (`<meta http-equiv="refresh">`), and every piece of text in it is escaped, since
//! ids come from config files and from sensors.
//!
//! Access is the same as `/api/` (an owner or admin JWT, unless `auth.mode = "none"`). A browser
//! cannot send an `Authorization` header by itself, so it presents the token once as
//! `/?token=<JWT>`: the token is verified, kept in an `HttpOnly; SameSite=Strict; Path=/` cookie
//! that expires with the token (`Max-Age`), and the browser is redirected to `/` so the token
//! leaves the address bar. `Secure` is not set: the service speaks plain HTTP, and a browser
//! would not send a `Secure` cookie back over it. `Authorization: Bearer` works too (curl).
//!
//! This file is the HTTP side (routes, token, cookie, headers); `page` gathers what the page
//! shows, `view` renders it (pure).

mod page;
mod view;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use cookie::{Cookie, SameSite};
use maud::html;
use serde::Deserialize;

use crate::auth::AuthError;
use crate::auth::AuthMode;
use crate::web::WebState;

pub use page::{age_state, gather, PageData};
pub use view::render;
use view::small_page;

/// The cookie that carries the token after `/?token=`.
pub const COOKIE: &str = "sensorcast_token";

pub fn router(app: WebState) -> Router {
    Router::new().route("/", get(page)).with_state(app)
}

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    pub(crate) token: Option<String>,
}

async fn page(
    State(app): State<WebState>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = q.token {
        return sign_in(&app, &token);
    }
    let from_cookie = cookie(&headers, COOKIE);
    let token = super::health::bearer(&headers).or(from_cookie.as_deref());
    match app.rt.auth.verify(token) {
        Ok(p) if p.is_admin() => {
            let data = gather(&app, &p, app.stale_after, Utc::now());
            html(StatusCode::OK, render(&data))
        }
        Ok(_) => forbidden(),
        Err(e) => {
            app.rt.hub.stats().client_error(e.reason());
            let mut r = unauthorized(e);
            if from_cookie.is_some() {
                // A stale cookie would keep failing: let the browser forget it.
                set_cookie(&mut r, &session_cookie("", Some(0), 0));
            }
            r
        }
    }
}

/// `/?token=`: verify, keep the token in a cookie that expires with it, redirect to `/`.
fn sign_in(app: &WebState, token: &str) -> Response {
    if app.rt.auth.mode() == AuthMode::None {
        return redirect_home();
    }
    match app.rt.auth.verify(Some(token)) {
        Ok(p) if p.is_admin() => {
            let mut r = redirect_home();
            set_cookie(&mut r, &session_cookie(token, p.expires_at, now_secs()));
            r
        }
        Ok(_) => forbidden(),
        Err(e) => {
            app.rt.hub.stats().client_error(e.reason());
            unauthorized(e)
        }
    }
}

/// The `Set-Cookie` value for `token`: gone no later than the token's `exp` (a token without
/// `exp` gets a cookie that lasts as long as the browser session).
pub fn session_cookie(token: &str, expires_at: Option<u64>, now: u64) -> String {
    let mut c = Cookie::build((COOKIE, token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict);
    if let Some(exp) = expires_at {
        let left = i64::try_from(exp.saturating_sub(now)).unwrap_or(i64::MAX);
        c = c.max_age(cookie::time::Duration::seconds(left));
    }
    c.build().to_string()
}

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A cookie's value from the request's `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

pub(crate) fn set_cookie(r: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn redirect_home() -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    secure_headers(&mut r);
    r
}

fn unauthorized(e: AuthError) -> Response {
    let body = small_page(
        "Sign-in needed",
        html! {
            p {
                "This page needs the JWT of an " b { "owner" } " or " b { "admin" } " (" (e) ")."
            }
            p {
                "Open it once as " code { "/?token=<JWT>" } ": the token is checked, kept in \
                 an HttpOnly cookie until it expires, and removed from the address."
            }
            p { "From a shell: " code { "curl -H 'Authorization: Bearer <JWT>' …/" } "." }
        },
    );
    let mut r = html(StatusCode::UNAUTHORIZED, body);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn forbidden() -> Response {
    let body =
        html! { p { "The status page needs the " b { "owner" } " or " b { "admin" } " role." } };
    html(StatusCode::FORBIDDEN, small_page("Forbidden", body))
}

fn html(code: StatusCode, body: String) -> Response {
    let mut r = (
        code,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    secure_headers(&mut r);
    r
}

/// No caching (the page carries live data), no framing, no referrer (the first request had a
/// token in its URL), and a policy that would stop any script even if escaping ever failed.
fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_expires_with_the_token() {
        let c = Cookie::parse(session_cookie("a.b.c", Some(1_000_600), 1_000_000)).unwrap();
        assert_eq!(c.name_value(), (COOKIE, "a.b.c"));
        assert_eq!(
            (c.path(), c.http_only(), c.same_site(), c.secure()),
            (Some("/"), Some(true), Some(SameSite::Strict), None)
        );
        assert_eq!(c.max_age(), Some(cookie::time::Duration::seconds(600)));
        assert!(session_cookie("a.b.c", Some(5), 10).ends_with("Max-Age=0"));
        assert!(!session_cookie("a.b.c", None, 10).contains("Max-Age"));
    }

    #[test]
    fn our_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("x=1; sensorcast_token=tok"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "sensorcast"), None);
    }
}
