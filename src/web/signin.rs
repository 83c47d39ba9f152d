//! Signing in to the pages a browser opens (the status page `/`, and any other page that takes
//! the same token, such as a wallboard): one place for where the token comes from, the cookie
//! that keeps it, and the checks, so every page follows the same rules.
//!
//! A page handler calls [`authenticate`] with the request's headers and URI: it gets the
//! [`Principal`], or the response to send instead (the sign-in page, 401; or 403 for a role the
//! page does not admit). [`router`] serves `POST /signin`, where the sign-in page's form goes.
//!
//! - The token comes from `Authorization: Bearer <JWT>` (the scheme in any case, for curl and
//!   scripts) or from the sign-in cookie. Nothing else: a token in the URL (`/?token=`) is
//!   refused, since anyone could send a victim such a link and sign them in as someone else
//!   (login CSRF).
//! - `POST /signin` takes the token from a form, and only from a page of the same origin: the
//!   browser's `Sec-Fetch-Site` must say `same-origin`, or, from a browser that does not send
//!   it, `Origin` must name the `Host` the request was sent to. A form on another site that
//!   posts here is refused (403, counted `signin_cross_origin`).
//! - The cookie is `HttpOnly; SameSite=Strict; Path=/` and expires with the token. When the
//!   form was posted from an `https://` origin (the service behind a TLS proxy), it is
//!   `__Host-sensorcast_token` with `Secure`: no other origin can set or overwrite it, and
//!   the browser never sends it over plain HTTP. Over plain HTTP it is `sensorcast_token`, and
//!   a browser sends it to every service on the box's host name, whatever the port (cookies do
//!   not isolate ports): docs/security.md says what follows.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use cookie::{Cookie, SameSite};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;

use crate::auth::{AuthError, AuthMode, Principal};
use crate::web::WebState;

/// The cookie that carries the token over plain HTTP.
pub const COOKIE: &str = "sensorcast_token";
/// The cookie that carries the token when signed in over HTTPS.
pub const SECURE_COOKIE: &str = "__Host-sensorcast_token";
/// Where the sign-in form posts.
pub const SIGNIN_PATH: &str = "/signin";
/// The largest sign-in form accepted (a token is at most 16 KiB, like the handshake's).
const MAX_FORM: usize = 20 * 1024;

/// Who may see a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The `owner` or `admin` role (the status page, like `/api/`).
    Admin,
    /// Any valid token of the organization.
    AnyRole,
}

impl Need {
    fn admits(self, p: &Principal) -> bool {
        match self {
            Need::Admin => p.is_admin(),
            Need::AnyRole => true,
        }
    }
}

/// The principal of a request for the page at `uri`, or the response to send instead: the
/// sign-in page (401, with a form that comes back to `uri`'s path), or 403 when the token's
/// role is not what `need` asks. With `auth.mode = "none"` everyone is the dev principal.
pub fn authenticate(
    app: &WebState,
    headers: &HeaderMap,
    uri: &Uri,
    need: Need,
) -> Result<Principal, Denied> {
    let from_cookie = cookie_token(headers);
    let token = bearer(headers).or(from_cookie.as_deref());
    let linked = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
    match app.rt.verify(token) {
        Ok(p) if need.admits(&p) => Ok(p),
        Ok(_) => Err(Denied(Box::new(forbidden(need)))),
        Err(e) => {
            app.rt.hub.stats().client_error(e.reason());
            let why = if linked && token.is_none() {
                app.rt.hub.stats().client_error("signin_from_link");
                Why::FromLink
            } else {
                Why::Token(e)
            };
            let mut r = signin_page(StatusCode::UNAUTHORIZED, why, uri.path(), need);
            if from_cookie.is_some() {
                // A stale cookie would keep failing: let the browser forget it.
                forget_cookies(&mut r);
            }
            Err(Denied(Box::new(r)))
        }
    }
}

/// What [`authenticate`] answers instead of a principal: the sign-in page or 403, ready to
/// send (`denied.into_response()`).
pub struct Denied(Box<Response>);

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// `POST /signin`.
pub fn router(app: WebState) -> Router {
    Router::new()
        .route(SIGNIN_PATH, post(sign_in))
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .with_state(app)
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// Verifies the posted token and, for a same-origin form, keeps it in the cookie and sends the
/// browser back to the page it came from.
async fn sign_in(
    State(app): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = local_path(&form.next).unwrap_or("/");
    let https = match same_origin(&headers) {
        Ok(https) => https,
        Err(why) => {
            app.rt.hub.stats().client_error("signin_cross_origin");
            tracing::info!(why, "sign-in form from another origin refused");
            let body = html! {
                p { "Sign-in refused: " (why) "." }
                p { "Open the page itself and use its form." }
            };
            return html_response(StatusCode::FORBIDDEN, small_page("Sign-in refused", body));
        }
    };
    if app.rt.auth.mode() == AuthMode::None {
        return redirect(next);
    }
    match app.rt.verify(Some(&form.token)) {
        Ok(p) => {
            let mut r = redirect(next);
            let value = session_cookie(&form.token, p.expires_at, now_secs(), https);
            set_cookie(&mut r, &value);
            r
        }
        Err(e) => {
            app.rt.hub.stats().client_error(e.reason());
            signin_page(StatusCode::UNAUTHORIZED, Why::Token(e), next, Need::AnyRole)
        }
    }
}

/// `Ok(the origin is https)` when the request comes from a page of this origin, else why not.
pub fn same_origin(headers: &HeaderMap) -> Result<bool, &'static str> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = text("origin").filter(|o| *o != "null");
    let https = origin.is_some_and(|o| o.starts_with("https://"));
    match text("sec-fetch-site") {
        Some("same-origin") => return Ok(https),
        Some(_) => return Err("the form was sent from another site"),
        None => {}
    }
    let origin = origin.ok_or("the browser sent no Origin")?;
    let authority = origin
        .split_once("://")
        .map(|(_, a)| a)
        .ok_or("the Origin is not an origin")?;
    let host = text("host").ok_or("the request has no Host")?;
    if authority.eq_ignore_ascii_case(host) {
        Ok(https)
    } else {
        Err("the form's Origin is not this host (behind a proxy: pass the Host header through)")
    }
}

/// A path on this service to go back to: `/x/y`, never `//host` or a URL.
fn local_path(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 200
        && next
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    ok.then_some(next)
}

/// The token of an `Authorization: Bearer <token>` header; the scheme in any case (RFC 9110).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(char::is_whitespace)?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The token in the sign-in cookie: the `__Host-` one when there is one.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    let jar: Vec<Cookie<'_>> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .collect();
    [SECURE_COOKIE, COOKIE].iter().find_map(|name| {
        jar.iter()
            .find(|c| c.name() == *name && !c.value().is_empty())
            .map(|c| c.value().to_string())
    })
}

/// The `Set-Cookie` value for `token`: gone no later than the token's `exp` (a token without
/// `exp` gets a cookie that lasts as long as the browser session); `__Host-` and `Secure` when
/// signed in over HTTPS.
pub fn session_cookie(token: &str, expires_at: Option<u64>, now: u64, https: bool) -> String {
    let name = if https { SECURE_COOKIE } else { COOKIE };
    let mut c = Cookie::build((name, token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(https);
    if let Some(exp) = expires_at {
        let left = i64::try_from(exp.saturating_sub(now)).unwrap_or(i64::MAX);
        c = c.max_age(cookie::time::Duration::seconds(left));
    }
    c.build().to_string()
}

fn forget_cookies(r: &mut Response) {
    set_cookie(r, &session_cookie("", Some(0), 0, false));
    set_cookie(r, &session_cookie("", Some(0), 0, true));
}

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn set_cookie(r: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut r, false);
    r
}

enum Why {
    Token(AuthError),
    FromLink,
}

/// The sign-in page: why, and a form that posts the token to `/signin` and comes back to `next`.
fn signin_page(code: StatusCode, why: Why, next: &str, need: Need) -> Response {
    let role = match need {
        Need::Admin => html! { "the JWT of an " b { "owner" } " or " b { "admin" } },
        Need::AnyRole => html! { "a JWT of your organization" },
    };
    let body = html! {
        @match why {
            Why::Token(e) => p { "This page needs " (role) " (" (e) ")." },
            Why::FromLink => p {
                "Signing in from a link (" code { "?token=" } ") is not accepted: anyone could \
                 send you such a link. Paste the token below."
            },
        }
        form method="post" action=(SIGNIN_PATH) {
            input type="hidden" name="next" value=(next);
            p { label { "Token " input type="password" name="token" autocomplete="off" required; } }
            p { button type="submit" { "Sign in" } }
        }
        p.meta {
            "The token is checked, then kept in an HttpOnly cookie until it expires. From a \
             shell: " code { "curl -H 'Authorization: Bearer <JWT>' …" } "."
        }
    };
    let mut r = html_response_with(code, small_page("Sign-in needed", body), true);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn forbidden(need: Need) -> Response {
    let body = match need {
        Need::Admin => {
            html! { p { "This page needs the " b { "owner" } " or " b { "admin" } " role." } }
        }
        Need::AnyRole => html! { p { "This token may not see this page." } },
    };
    html_response(StatusCode::FORBIDDEN, small_page("Forbidden", body))
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:50em;\
padding:1em;color:#222;background:#fafafa}h1{font-size:1.4em}.meta{color:#666;font-size:.9em}\
input[type=password]{width:28em;max-width:100%}";

/// A small page in the pages' style: a title and a few paragraphs.
pub fn small_page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { "sensorcast: " (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "sensorcast: " (title) }
                (body)
            }
        }
    }
    .into_string()
}

/// An HTML answer with the pages' security headers (no form may be posted from it).
pub fn html_response(code: StatusCode, body: String) -> Response {
    html_response_with(code, body, false)
}

fn html_response_with(code: StatusCode, body: String, form: bool) -> Response {
    let mut r = (
        code,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    secure_headers(&mut r, form);
    r
}

/// No caching (pages carry live data), no framing, no referrer, and a policy that would stop
/// any script even if escaping ever failed; forms may post only to this origin, and only from
/// the sign-in page.
fn secure_headers(r: &mut Response, form: bool) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let csp = if form {
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    } else {
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    };
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
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
#[path = "signin_tests.rs"]
mod tests;
