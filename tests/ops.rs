//! Edge operations end to end, through real peers (a private mosquitto, sensorcast in-process or
//! as the real binary, the official `socket.io-client`): `/metrics` in the Prometheus text
//! format on its own listener, the status page and its token cookie, and `sensorcast simulate`
//! feeding every registered sensor to the dashboards of its organization.
//!
//! Over 400 lines: Operations end to end (health, metrics, status page, signals) share one service
//! harness.

mod common;

use common::broker::{Broker, Publisher};
use common::config::TestConfig;
use common::http::{http_get_raw, http_post_form, RawResponse};
use common::jsclient::JsDriver;
use common::service::{auth, connected, subscribed, token, ttn_uplink, Service};
use common::wait::{eventually, WAIT};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// `GET /metrics` after a good reading and a bad payload: the counters, gauges and the
/// receipt-to-emit histogram moved, and the text is valid exposition format. It is served on
/// the metrics listener only, not on the public one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_readings_rejections_and_emit_latency() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &service, auth("o1", "viewer"), &["u1"]).await;

    let before = scrape(&service).await;
    assert_eq!(
        before.value("sensorcast_emit_latency_seconds_count", &[]),
        0.0
    );

    let publisher = Publisher::connect(&broker).await;
    publisher
        .publish("sensors/probe-1", "definitely not json", 1)
        .await;
    publisher
        .publish("sensors/unknown-probe", r#"{"temperature": 4}"#, 1)
        .await;
    publisher
        .publish(
            "v3/app@ttn/devices/dev/up",
            ttn_uplink("AC1F09FFFE01454E", -18.25),
            1,
        )
        .await;
    let r = c.next_event("sensor:reading").await.remove(0);
    assert_eq!(r["temperature"], -18.25);

    let m = scrape(&service).await;
    assert_eq!(m.value("sensorcast_mqtt_messages_total", &[]), 3.0);
    assert_eq!(m.value("sensorcast_readings_decoded_total", &[]), 2.0);
    assert_eq!(m.value("sensorcast_readings_emitted_total", &[]), 1.0);
    assert_eq!(m.value("sensorcast_readings_unmapped_total", &[]), 1.0);
    assert_eq!(m.value("sensorcast_unmapped_sensors", &[]), 1.0);
    assert_eq!(
        m.value(
            "sensorcast_mqtt_messages_rejected_total",
            &[("format", "json"), ("reason", "not_json")]
        ),
        1.0
    );
    assert_eq!(m.value("sensorcast_mqtt_connected", &[]), 1.0);
    assert_eq!(m.value("sensorcast_mqtt_subscribed", &[]), 1.0);
    assert_eq!(m.value("sensorcast_mqtt_reconnects_total", &[]), 0.0);
    assert_eq!(m.value("sensorcast_sockets_connected", &[]), 1.0);
    assert_eq!(m.value("sensorcast_sockets_slow", &[]), 0.0);
    assert_eq!(m.value("sensorcast_subscriptions", &[]), 1.0);
    assert_eq!(
        m.value("sensorcast_registry_entries", &[("kind", "sensor")]),
        4.0
    );
    assert_eq!(m.kind("sensorcast_alerts_open"), "gauge");
    assert_eq!(m.kind("sensorcast_deliveries_dropped_total"), "counter");
    assert_eq!(m.kind("sensorcast_client_errors_total"), "counter");
    // The HTTP listener's connections (issue 12 item 6): the socket's connection is open.
    assert!(m.value("sensorcast_http_connections", &[]) >= 1.0);
    assert!(m.value("sensorcast_http_connections_max", &[]) >= 1.0);
    assert!(m.value("sensorcast_fd_limit", &[]) >= 1024.0);
    for reason in ["limit", "accept_error"] {
        let refused = &[("reason", reason)];
        assert_eq!(
            m.value("sensorcast_http_connections_refused_total", refused),
            0.0
        );
    }
    for reason in ["header_timeout", "idle_timeout"] {
        let closed = &[("reason", reason)];
        assert_eq!(
            m.value("sensorcast_http_connections_closed_total", closed),
            0.0
        );
    }

    // The histogram: one observation, cumulative buckets ending in +Inf.
    assert_eq!(m.kind("sensorcast_emit_latency_seconds"), "histogram");
    assert_eq!(m.value("sensorcast_emit_latency_seconds_count", &[]), 1.0);
    let sum = m.value("sensorcast_emit_latency_seconds_sum", &[]);
    assert!(sum > 0.0 && sum < 1.0, "sum {sum}");
    let buckets = m.buckets("sensorcast_emit_latency_seconds");
    assert_eq!(buckets.first().map(|b| b.0), Some(0.0001));
    assert_eq!(*buckets.last().unwrap(), (f64::INFINITY, 1.0));
    assert!(buckets
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));

    // A handshake refused shows up among client errors.
    let bad = driver
        .connect(&service.url(), Some(json!({ "token": "nope" })))
        .await;
    assert!(bad.wait_connect().await.is_err());
    let m = scrape(&service).await;
    assert_eq!(
        m.value(
            "sensorcast_client_errors_total",
            &[("reason", "token_malformed")]
        ),
        1.0
    );

    let public = http_get_raw(service.addr, "/metrics", &[]).await;
    assert_eq!(public.status, 404, "metrics are not on the public listener");
    service.stop().await;
}

/// The status page and its sign-in (issue 12 item 13): 401 with a sign-in form without a
/// token; a token in a link (`/?token=`) signs nobody in; the form's POST from this origin sets
/// an HttpOnly SameSite cookie that expires with the token (`__Host-` and `Secure` when the
/// origin is https) and goes back to the page; the same POST from another origin is refused and
/// counted; the cookie then shows the organization's units with their latest reading (and not
/// another tenant's); `Authorization: BEARER` works in any case; a viewer gets 403; a bad
/// cookie 401 and is cleared; a hostile sensor id and topic in the unmapped list come out
/// escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_signs_in_by_a_same_origin_form_and_escapes_what_sensors_send() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let origin = service.url();

    let anonymous = page(&service, "/", &[]).await;
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .body
            .contains("<form method=\"post\" action=\"/signin\">"),
        "{}",
        anonymous.body
    );
    assert!(anonymous.body.contains("Authentication token required"));
    assert!(anonymous
        .header("content-security-policy")
        .is_some_and(|c| c.contains("form-action 'self'")));

    let exp = common::service::now() + 120;
    let admin = token(json!({ "org_id": "o1", "role": "admin", "exp": exp }));
    // A link with the token signs nobody in (login CSRF).
    let linked = page(&service, &format!("/?token={admin}"), &[]).await;
    assert_eq!(linked.status, 401);
    assert!(linked.header("set-cookie").is_none());
    assert!(linked.body.contains("from a link"), "{}", linked.body);
    // Another site's form posting a token here is refused.
    for headers in [
        vec![("Origin", "http://evil.example")],
        vec![
            ("Origin", origin.as_str()),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        vec![],
    ] {
        let forged = http_post_form(
            service.addr,
            "/signin",
            &headers,
            &[("token", &admin), ("next", "/")],
        )
        .await;
        assert_eq!(forged.status, 403, "{headers:?}: {}", forged.body);
        assert!(forged.header("set-cookie").is_none());
    }
    // The page's own form, as a browser sends it.
    let signed_in = http_post_form(
        service.addr,
        "/signin",
        &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        &[("token", &admin), ("next", "/")],
    )
    .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.header("location"), Some("/"));
    let cookie = signed_in
        .header("set-cookie")
        .expect("a cookie")
        .to_string();
    assert!(
        cookie.starts_with(&format!("sensorcast_token={admin};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.split("; ").any(|a| a == attr), "{attr} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain http: a Secure cookie never comes back"
    );
    let max_age: u64 = cookie
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .unwrap();
    assert!(
        (100..=120).contains(&max_age),
        "expires with the token: {max_age}"
    );
    // Behind a TLS proxy (the browser's origin is https): a __Host- cookie, Secure.
    let tls = http_post_form(
        service.addr,
        "/signin",
        &[
            ("Origin", "https://box.example"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        &[("token", &admin), ("next", "/")],
    )
    .await;
    let tls_cookie = tls.header("set-cookie").expect("a cookie");
    assert!(
        tls_cookie.starts_with("__Host-sensorcast_token=")
            && tls_cookie.split("; ").any(|a| a == "Secure")
            && !tls_cookie.contains("Domain"),
        "{tls_cookie}"
    );
    let jar = format!("sensorcast_token={admin}");
    let stats = service.get("/api/stats", Some(&admin)).await.1;
    assert_eq!(stats["clientErrors"]["signin_cross_origin"], 3, "{stats}");
    assert_eq!(stats["clientErrors"]["signin_from_link"], 1, "{stats}");

    let empty = page(&service, "/", &[("Cookie", &jar)]).await;
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("<td>u1</td>") && empty.body.contains("no data"));
    assert!(!empty.body.contains("<td>u3</td>"), "another tenant's unit");

    broker
        .publish(
            "v3/app@ttn/devices/dev/up",
            ttn_uplink("AC1F09FFFE01454E", -18.25),
            1,
        )
        .await;
    let hostile_id = "<script>alert('id')</script>";
    let uplink = json!({
        "end_device_ids": { "dev_eui": hostile_id },
        "uplink_message": { "decoded_payload": { "temperature": 3 } }
    });
    broker
        .publish(
            "v3/<img src=x onerror=alert(1)>/devices/evil/up",
            uplink.to_string(),
            1,
        )
        .await;
    let body = eventually(WAIT, "the status page to show both readings", || async {
        let body = page(&service, "/", &[("Cookie", &jar)]).await.body;
        if body.contains("-18.25 °C") && body.contains("alert(") {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await;
    assert!(body.contains("AC1F09FFFE01454E"));
    assert!(body.contains("connected, subscribed"));
    assert!(
        body.contains("&lt;script&gt;alert('id')&lt;/script&gt;"),
        "{body}"
    );
    assert!(
        body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{body}"
    );
    assert!(
        !body.contains("<script") && !body.contains("<img"),
        "{body}"
    );
    assert!(body.contains("http-equiv=\"refresh\""));

    // The same page with a bearer header (curl), the scheme in any case; /api/ alike.
    for scheme in ["Bearer", "BEARER", "bearer"] {
        let bearer = format!("{scheme} {admin}");
        assert_eq!(
            page(&service, "/", &[("Authorization", &bearer)])
                .await
                .status,
            200,
            "{scheme}"
        );
        let api = http_get_raw(service.addr, "/api/stats", &[("Authorization", &bearer)]).await;
        assert_eq!(api.status, 200, "{scheme}");
    }
    // Viewers may not, neither through the form's cookie nor a cookie.
    let viewer = token(json!({ "org_id": "o1", "role": "viewer" }));
    let viewer_jar = format!("sensorcast_token={viewer}");
    assert_eq!(
        page(&service, "/", &[("Cookie", &viewer_jar)]).await.status,
        403
    );
    // A cookie that no longer verifies: 401, and the browser is told to drop it.
    let stale = page(&service, "/", &[("Cookie", "sensorcast_token=garbage")]).await;
    assert_eq!(stale.status, 401);
    assert!(stale.body.contains("Invalid or malformed token"));
    assert!(stale
        .all("set-cookie")
        .iter()
        .any(|c| c.starts_with("sensorcast_token=;") && c.contains("Max-Age=0")));
    let bad = http_post_form(
        service.addr,
        "/signin",
        &[("Origin", &origin)],
        &[("token", "garbage"), ("next", "/")],
    )
    .await;
    assert_eq!(bad.status, 401, "a bad token sets nothing");
    assert!(bad.header("set-cookie").is_none());
    service.stop().await;
}

/// With `auth.mode = "none"` the status page is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_is_open_without_auth() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker).auth_none("o2")).await;
    let open = page(&service, "/", &[]).await;
    assert_eq!(open.status, 200);
    assert!(open.body.contains("<td>u3</td>") && !open.body.contains("<td>u1</td>"));
    service.stop().await;
}

/// `sensorcast simulate --once` publishes one reading for every registered sensor, in the
/// format of the subscription that carries it: each organization's socket receives exactly its
/// own sensors' readings. Without `--once` it keeps publishing and exits 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_feeds_every_registered_sensor() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    let o1 = connected(&driver, &service, auth("o1", "admin")).await;
    let o2 = connected(&driver, &service, auth("o2", "owner")).await;
    for c in [&o1, &o2] {
        let ack = c.emit_ack("subscribe:organization", vec![]).await.remove(0);
        assert_eq!(ack["ok"], true);
    }
    let config = service.config_path();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        simulator(&config, &["--once"]).output(),
    )
    .await
    .expect("simulate --once exits")
    .expect("run simulate");
    assert!(
        out.status.success(),
        "simulate --once: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let mut seen = BTreeMap::new();
    for _ in 0..3 {
        let r = o1.next_event("sensor:reading").await.remove(0);
        seen.insert(
            r["deviceId"].as_str().unwrap().to_string(),
            (
                r["unitId"].clone(),
                r["source"].clone(),
                r["temperature"].clone(),
            ),
        );
    }
    let ids: BTreeSet<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        BTreeSet::from(["AC1F09FFFE01454E", "probe-1", "probe-2"])
    );
    assert_eq!(seen["AC1F09FFFE01454E"].1, "ttn-v3");
    assert_eq!(seen["probe-1"].1, "json");
    assert_eq!(seen["probe-2"].0, "u2");
    for (id, (_, _, t)) in &seen {
        let t = t.as_f64().unwrap();
        assert!((-25.0..30.0).contains(&t), "{id}: {t}");
    }
    let r = o2.next_event("sensor:reading").await.remove(0);
    assert_eq!(r["deviceId"], "probe-3");
    o1.assert_no_event("sensor:reading", Duration::from_millis(500))
        .await;
    o2.assert_no_event("sensor:reading", Duration::ZERO).await;

    // Continuous mode: readings keep coming; SIGTERM ends it cleanly.
    let mut child = simulator(&config, &["--interval", "300ms"])
        .spawn()
        .expect("spawn simulate");
    for _ in 0..4 {
        o1.next_event("sensor:reading").await;
    }
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("simulate exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    service.stop().await;
}

fn simulator(config: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(common::service::binary());
    cmd.arg("simulate")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("SENSORCAST_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn page(service: &Service, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let r = http_get_raw(service.addr, path, headers).await;
    if r.status == 200 || r.status == 401 || r.status == 403 {
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert!(r.header("content-security-policy").is_some());
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    r
}

async fn scrape(service: &Service) -> Metrics {
    let r = http_get_raw(service.metrics_addr(), "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    Metrics::parse(&r.body)
}

/// A small parser for the Prometheus text format that rejects what Prometheus would: samples
/// of an undeclared family, a TYPE after its samples, bad names, labels or values, counters
/// whose name does not end in `_total`.
struct Metrics {
    kinds: HashMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut m = Metrics {
            kinds: HashMap::new(),
            samples: Vec::new(),
        };
        let mut helped = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').expect(line);
                assert!(valid_name(name), "{line}");
                assert!(helped.insert(name.to_string()), "HELP twice: {line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect(line);
                assert!(helped.contains(name), "TYPE before HELP: {line}");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter name: {line}");
                }
                let fresh = m.kinds.insert(name.to_string(), kind.to_string());
                assert!(fresh.is_none(), "TYPE twice: {line}");
                assert!(
                    m.samples
                        .iter()
                        .all(|(n, _, _)| family(n, &m.kinds) != name),
                    "TYPE after samples: {line}"
                );
            } else {
                assert!(!line.is_empty() && !line.starts_with('#'), "{line:?}");
                let (name, labels, value) = sample(line);
                let fam = family(&name, &m.kinds);
                assert!(m.kinds.contains_key(fam), "sample before its TYPE: {line}");
                m.samples.push((name, labels, value));
            }
        }
        m
    }

    fn kind(&self, family: &str) -> &str {
        self.kinds
            .get(family)
            .unwrap_or_else(|| panic!("no family {family}"))
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .unwrap_or_else(|| panic!("no sample {name}{want:?}"))
            .2
    }

    fn buckets(&self, family: &str) -> Vec<(f64, f64)> {
        let name = format!("{family}_bucket");
        self.samples
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, l, v)| (parse_value(&l["le"]), *v))
            .collect()
    }
}

/// The family a sample belongs to (histograms have `_bucket`, `_sum`, `_count` samples).
fn family<'a>(name: &'a str, kinds: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if kinds.get(base).is_some_and(|k| k == "histogram") {
                return base;
            }
        }
    }
    name
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name{k="v",...} value` or `name value`.
fn sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let name_end = line.find(['{', ' ']).expect(line);
    let name = &line[..name_end];
    assert!(valid_name(name), "{line}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let end;
        loop {
            let (i, c) = chars.next().expect(line);
            match c {
                '}' if key.is_empty() => {
                    end = i;
                    break;
                }
                ',' if key.is_empty() => {}
                '=' => {
                    assert!(valid_name(&key), "label name in {line}");
                    assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().expect(line).1 {
                            '"' => break,
                            '\\' => match chars.next().expect(line).1 {
                                'n' => value.push('\n'),
                                c @ ('\\' | '"') => value.push(c),
                                other => panic!("bad escape \\{other} in {line}"),
                            },
                            c => value.push(c),
                        }
                    }
                    assert!(labels.insert(std::mem::take(&mut key), value).is_none());
                }
                c => key.push(c),
            }
        }
        rest = &inner[end + 1..];
    }
    let value = rest.strip_prefix(' ').expect(line);
    assert!(!value.contains(' '), "no timestamps expected: {line}");
    (name.to_string(), labels, parse_value(value))
}

fn parse_value(v: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => v.parse().unwrap_or_else(|_| panic!("not a number: {v:?}")),
    }
}

/// The sign-in in a real browser (chromium through playwright-core, tests/js/signin.js): the
/// page's own form signs in under the page's Content-Security-Policy and the browser keeps an
/// HttpOnly, SameSite=Strict cookie and shows the units; a link with `?token=` sets nothing; a
/// page of another site, or of another port of the same host, whose form posts a token to
/// `/signin` (what a login-CSRF attack does) is refused, and the browser keeps no cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_signs_in_by_the_form_and_never_from_another_site() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let owner = token(json!({ "org_id": "o1", "role": "owner" }));
    let attacker = token(json!({ "org_id": "o2", "role": "owner", "sub": "mallory" }));
    let script = common::service::repo_path("tests/js/signin.js");
    let run = tokio::process::Command::new("node")
        .arg(script)
        .args([service.url(), owner, attacker])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser run ends")
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "signin.js failed: {stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let session = json!([{
        "name": "sensorcast_token", "httpOnly": true, "sameSite": "Strict", "secure": false
    }]);
    assert_eq!(r["signedIn"]["firstStatus"], 401, "{r}");
    assert_eq!(r["signedIn"]["units"], true, "{r}");
    assert_eq!(r["signedIn"]["cookies"], session, "{r}");
    assert_eq!(r["linked"]["status"], 401, "{r}");
    assert_eq!(r["linked"]["cookies"], json!([]), "{r}");
    for attack in ["crossSite", "sameSite"] {
        assert_eq!(r[attack]["refused"], true, "{attack}: {r}");
        assert_eq!(r[attack]["cookies"], json!([]), "{attack}: {r}");
    }
    let (_, stats) = service
        .get(
            "/api/stats",
            Some(&token(json!({ "org_id": "o1", "role": "owner" }))),
        )
        .await;
    assert_eq!(stats["clientErrors"]["signin_cross_origin"], 2, "{stats}");
    service.stop().await;
}
