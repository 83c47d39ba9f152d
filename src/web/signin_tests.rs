//! Unit tests of the sign-in rules (the cookie, the token's sources, the origin check).

use super::*;

#[test]
fn cookie_expires_with_the_token_and_is_host_bound_over_https() {
    let c = Cookie::parse(session_cookie("a.b.c", Some(1_000_600), 1_000_000, false)).unwrap();
    assert_eq!(c.name_value(), (COOKIE, "a.b.c"));
    assert_eq!(
        (c.path(), c.http_only(), c.same_site(), c.secure()),
        (Some("/"), Some(true), Some(SameSite::Strict), None)
    );
    assert_eq!(c.max_age(), Some(cookie::time::Duration::seconds(600)));
    assert!(session_cookie("a.b.c", Some(5), 10, false).ends_with("Max-Age=0"));
    assert!(!session_cookie("a.b.c", None, 10, false).contains("Max-Age"));
    let s = Cookie::parse(session_cookie("t", None, 0, true)).unwrap();
    assert_eq!(
        (s.name(), s.secure(), s.path(), s.domain()),
        (SECURE_COOKIE, Some(true), Some("/"), None)
    );
}

#[test]
fn the_host_cookie_wins_over_the_plain_one() {
    let mut h = HeaderMap::new();
    h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
    assert_eq!(cookie_token(&h), None);
    h.append(
        header::COOKIE,
        HeaderValue::from_static("x=1; sensorcast_token=plain"),
    );
    assert_eq!(cookie_token(&h).as_deref(), Some("plain"));
    h.append(
        header::COOKIE,
        HeaderValue::from_static("__Host-sensorcast_token=tls"),
    );
    assert_eq!(cookie_token(&h).as_deref(), Some("tls"));
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    for (value, want) in [
        ("Bearer a.b.c", Some("a.b.c")),
        ("BEARER a.b.c", Some("a.b.c")),
        ("bearer   a.b.c ", Some("a.b.c")),
        ("Basic a.b.c", None),
        ("Bearer", None),
        ("Bearera.b.c", None),
    ] {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        assert_eq!(bearer(&h), want, "{value}");
    }
}

#[test]
fn only_a_form_of_this_origin_may_sign_in() {
    let h = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    };
    let box_ = ("host", "box:3000");
    assert_eq!(
        same_origin(&h(&[box_, ("origin", "http://box:3000")])),
        Ok(false)
    );
    assert_eq!(
        same_origin(&h(&[("host", "box"), ("origin", "https://box")])),
        Ok(true)
    );
    assert_eq!(
        same_origin(&h(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "https://box"),
            ("sec-fetch-site", "same-origin")
        ])),
        Ok(true),
        "behind a proxy that rewrites Host, the browser's word counts"
    );
    for bad in [
        h(&[box_]),
        h(&[box_, ("origin", "null")]),
        h(&[box_, ("origin", "http://evil.example")]),
        h(&[box_, ("origin", "http://box:3001")]),
        h(&[
            box_,
            ("origin", "http://box:3000"),
            ("sec-fetch-site", "cross-site"),
        ]),
        h(&[box_, ("sec-fetch-site", "same-site")]),
    ] {
        assert!(same_origin(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn next_is_a_local_path() {
    assert_eq!(local_path("/live"), Some("/live"));
    assert_eq!(local_path("/"), Some("/"));
    for bad in [
        "//evil.example",
        "https://evil",
        "live",
        "/a?b",
        "/\\evil",
        "",
    ] {
        assert_eq!(local_path(bad), None, "{bad}");
    }
}
