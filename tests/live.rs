//! `/live` from the HTTP side (the page in a real browser is tested by `clients/live`, run by
//! `.ci/test`): the shared sign-in (`web::signin`) for every role, the embedded assets with a
//! script policy, and `/live/session` giving each viewer only their organization's (and
//! allowed sites') units with their limits, the token to open the socket with, and whether the
//! role may acknowledge.

mod common;

use common::broker::Broker;
use common::config::{TestConfig, TestRegistry};
use common::http::{http_get, http_get_raw, http_post_form};
use common::service::{token, Service};
use serde_json::{json, Value};

fn unit_ids(session: &Value) -> Vec<&str> {
    session["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| u["unitId"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn live_signs_in_every_role_and_tells_each_viewer_only_its_units() {
    let broker = Broker::start().await;
    let registry = TestRegistry::standard()
        .set("unit", "u1", "temp_min", 0.0)
        .set("unit", "u1", "temp_max", 8.0)
        .set("site", "s2", "humidity_max", 70.0);
    let service = Service::start(&TestConfig::new(&broker).registry(&registry)).await;
    let addr = service.addr;

    // No token: the sign-in page, whose form comes back to /live. A viewer signs in with it.
    let bare = http_get_raw(addr, "/live", &[]).await;
    assert_eq!(bare.status, 401);
    assert!(
        bare.body.contains("action=\"/signin\"") && bare.body.contains("value=\"/live\""),
        "{}",
        bare.body
    );
    let viewer = token(json!({ "org_id": "o1", "role": "viewer" }));
    let origin = format!("http://{addr}");
    let signed = http_post_form(
        addr,
        "/signin",
        &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        &[("token", &viewer), ("next", "/live")],
    )
    .await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.header("location"), Some("/live"));
    let cookie = signed.header("set-cookie").expect("cookie");
    assert!(
        cookie.starts_with(&format!("sensorcast_token={viewer};")) && cookie.contains("HttpOnly")
    );
    let linked = http_get_raw(addr, &format!("/live?token={viewer}"), &[]).await;
    assert_eq!(linked.status, 401, "a token in a link is not a sign-in");

    // The page and its assets, by cookie.
    let cookie_header = format!("sensorcast_token={viewer}");
    let page = http_get_raw(addr, "/live", &[("Cookie", &cookie_header)]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/live/live.js"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let js = http_get_raw(addr, "/live/live.js", &[]).await;
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js.body.len() > 10_000, "the bundle with socket.io-client");
    let css = http_get_raw(addr, "/live/live.css", &[]).await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));

    // The session: own organization only, the token back for the socket, limits, roles.
    let (status, s) = http_get(addr, "/live/session", Some(&viewer)).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(unit_ids(&s), ["u1", "u2"]);
    assert_eq!(s["token"], viewer);
    assert_eq!(s["organizationId"], "o1");
    assert_eq!(s["canAcknowledge"], false);
    let u1 = &s["units"][0];
    assert_eq!(
        (u1["tempMin"].as_f64(), u1["tempMax"].as_f64()),
        (Some(0.0), Some(8.0))
    );
    assert_eq!(u1["state"], "no data");
    assert_eq!(s["units"][1]["humidityMax"].as_f64(), Some(70.0));
    assert_eq!(s["units"][1]["tempMin"], Value::Null);

    let staff_one_site = token(json!({ "org_id": "o1", "role": "staff", "site_ids": ["s2"] }));
    let (_, s) = http_get(addr, "/live/session", Some(&staff_one_site)).await;
    assert_eq!(unit_ids(&s), ["u2"]);
    assert_eq!(s["canAcknowledge"], true);
    let other = token(json!({ "org_id": "o2", "role": "owner" }));
    let (_, s) = http_get(addr, "/live/session", Some(&other)).await;
    assert_eq!(unit_ids(&s), ["u3"]);
    let (status, _) = http_get(addr, "/live/session", None).await;
    assert_eq!(status, 401);
    service.stop().await;
}

/// With authentication off (`.ci/dev`), `/live` is open and its session carries no token.
#[tokio::test]
async fn live_is_open_without_authentication() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker).auth_none("o1")).await;
    let page = http_get_raw(service.addr, "/live", &[]).await;
    assert_eq!(page.status, 200);
    let (status, s) = http_get(service.addr, "/live/session", None).await;
    assert_eq!(status, 200);
    assert_eq!(s["token"], Value::Null);
    assert_eq!(unit_ids(&s), ["u1", "u2"]);
    assert_eq!(s["canAcknowledge"], true, "dev_role is owner");
    service.stop().await;
}
