//! What a holder of a valid token can and cannot do across tenants (issue 12, items 9, 11 and
//! 12), through the official socket.io-client, `/api/` and real registry files: a token that
//! is not valid yet, an organization claim written to name another room, ids that look alike,
//! and the per-user connection limit.

mod common;

use common::broker::Broker;
use common::config::{TestConfig, TestRegistry};
use common::jsclient::JsDriver;
use common::service::{check_config, connected, now, subscribed, token, Service};
use serde_json::{json, Value};
use std::time::Duration;

/// `auth` for a token with these claims (over `sub`/`exp` defaults).
fn claims(c: Value) -> Value {
    json!({ "token": token(c) })
}

async fn refused(driver: &JsDriver, service: &Service, auth: Value) -> String {
    let c = driver.connect(&service.url(), Some(auth.clone())).await;
    match c.wait_connect().await {
        Err(message) => message,
        Ok(_) => panic!("connected with {auth}"),
    }
}

/// Item 9: a token whose `nbf` is ten days ahead, or not a number, is refused at the handshake
/// and by `/api/`; one whose `nbf` is a few seconds ahead (within `auth.leeway`) is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_valid_yet_is_refused() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let driver = JsDriver::spawn().await;
    let ten_days = now() + 10 * 86_400;
    for nbf in [json!(ten_days), json!("x")] {
        let c = json!({ "org_id": "o1", "role": "owner", "nbf": nbf });
        assert_eq!(
            refused(&driver, &service, claims(c.clone())).await,
            "Invalid token claims",
            "nbf {nbf}"
        );
        let (code, body) = service.get("/api/stats", Some(&token(c))).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (401, Some("Invalid token claims"))
        );
    }
    let soon = json!({ "org_id": "o1", "role": "owner", "nbf": now() + 10 });
    connected(&driver, &service, claims(soon.clone())).await;
    assert_eq!(service.get("/api/stats", Some(&token(soon))).await.0, 200);
    service.stop().await;
}

/// Item 11: an organization claim written as another room's name (`o1:readings`,
/// `o1:site:s1:events`), or naming an organization the registry does not know, is refused with
/// "User has no organization access" (handshake and `/api/`), and a site claim that is no id is
/// refused; the readings and alerts of o1 reach o1's socket and nobody else. Ids compare in
/// NFC: a registry id written decomposed matches a claim written precomposed. A registry id
/// with a zero-width character or a look-alike of `:` is refused with file and key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_ids_cannot_name_another_tenants_room() {
    let broker = Broker::start().await;
    let registry = TestRegistry::standard()
        .org("cafe\u{301}")
        .site("s9", "cafe\u{301}")
        .unit("u9", "s9")
        .sensor("probe-9", "u9");
    let config = TestConfig::new(&broker)
        .registry(&registry)
        .alerts("temp_min", 0)
        .alerts("temp_max", 8);
    let service = Service::start(&config).await;
    let driver = JsDriver::spawn().await;
    for org in [
        "o1:readings",
        "o1:site:s1:events",
        "o1:unit:u1",
        "o9",
        "o1\u{200B}",
    ] {
        let c = json!({ "org_id": org, "role": "owner" });
        assert_eq!(
            refused(&driver, &service, claims(c.clone())).await,
            "User has no organization access",
            "org {org:?}"
        );
        assert_eq!(
            service.get("/api/stats", Some(&token(c))).await.0,
            401,
            "{org:?}"
        );
    }
    let bad_site = json!({ "org_id": "o1", "site_ids": ["s1:events"] });
    assert_eq!(
        refused(&driver, &service, claims(bad_site)).await,
        "Invalid token claims"
    );

    let own = connected(&driver, &service, claims(json!({ "org_id": "o1" }))).await;
    let other = connected(&driver, &service, claims(json!({ "org_id": "o2" }))).await;
    let nfc = subscribed(
        &driver,
        &service,
        claims(json!({ "org_id": "caf\u{e9}" })),
        &["u9"],
    )
    .await;
    let ack = own.emit_ack("subscribe:organization", vec![]).await;
    assert_eq!(ack[0]["ok"], true, "{ack:?}");
    broker
        .publish("sensors/probe-1", r#"{"temperature": 9.5}"#, 1)
        .await;
    broker
        .publish("sensors/probe-9", r#"{"temperature": 3.5}"#, 1)
        .await;
    assert_eq!(own.next_event("sensor:reading").await[0]["unitId"], "u1");
    own.next_event("alert:triggered").await;
    let r9 = nfc.next_event("sensor:reading").await;
    assert_eq!(
        (&r9[0]["unitId"], &r9[0]["organizationId"]),
        (&json!("u9"), &json!("caf\u{e9}"))
    );
    for event in ["sensor:reading", "alert:triggered"] {
        other
            .assert_no_event(event, Duration::from_millis(300))
            .await;
    }

    for (id, what) in [
        ("o\u{200B}x", "zero-width"),
        ("o\u{FF1A}x", "fullwidth colon"),
    ] {
        let dir = TestConfig::new(&broker)
            .registry(&TestRegistry::standard().org(id))
            .write_dir();
        let (code, out) = check_config(&dir.path().join("sensorcast.toml"), &[]);
        assert_eq!(code, Some(1), "{what}: {out}");
        assert!(
            out.contains("registry.toml") && out.contains("org[2].id"),
            "{what}: {out}"
        );
    }
    service.stop().await;
}

/// Item 12: the per-user connection limit counts a `sub` within its organization: org o2's
/// `alice` using all her sockets does not lock out org o1's `alice`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_is_kept_per_organization() {
    let broker = Broker::start().await;
    let config = TestConfig::new(&broker).limit("max_connections_per_subject", 2);
    let service = Service::start(&config).await;
    let driver = JsDriver::spawn().await;
    let alice = |org: &str| claims(json!({ "org_id": org, "sub": "alice" }));
    for _ in 0..2 {
        connected(&driver, &service, alice("o2")).await;
    }
    assert_eq!(
        refused(&driver, &service, alice("o2")).await,
        "Too many connections for this user"
    );
    connected(&driver, &service, alice("o1")).await;
    connected(&driver, &service, alice("o1")).await;
    service.stop().await;
}

/// Item 10: a reload that moves unit u1 from o1 (site s1) to o2 (site s3) starts a new feed.
/// The old owner's dashboards hear the open alert resolved and lose the unit ("Access denied"
/// from then on); the new owner's viewer gets `latest: null`, no old reading from `get:latest`
/// or from a resume at seq 0 (`recovered: false`), does not see the old alert, and the next
/// reading continues the unit's `seq` under o2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_moved_to_another_organization_by_a_reload_starts_a_new_feed() {
    let broker = Broker::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = TestConfig::new(&broker)
        .state_dir(state.path())
        .set("storage", "commit_interval", "200ms")
        .alerts("temp_min", 0)
        .alerts("temp_max", 8)
        .alerts("confirm_after", "10m");
    let mut bin = Service::start_binary(&config, &[]).await;
    let driver = JsDriver::spawn().await;
    let old = subscribed(&driver, &bin, auth_of("o1", "owner"), &["u1"]).await;
    broker
        .publish("sensors/probe-1", r#"{"temperature": 12.5}"#, 1)
        .await;
    let before = old.next_event("sensor:reading").await.remove(0);
    let alert = old.next_event("alert:triggered").await.remove(0);
    assert_eq!(before["organizationId"], "o1");
    bin.get_until(
        "/health",
        None,
        "the reading in the history store",
        |_, h| h["checks"]["storage"]["readingsStored"].as_u64() >= Some(1),
    )
    .await;

    let moved = TestRegistry::standard().set("unit", "u1", "site", "s3");
    bin.rewrite(&bin.config.clone().registry(&moved));
    bin.signal("HUP");
    let err = old.next_event("subscription:error").await.remove(0);
    assert_eq!(err["entityId"], "u1", "{err}");
    let resolved = old.next_event("alert:resolved").await.remove(0);
    assert_eq!(resolved["alertId"], alert["alertId"]);

    let new = connected(&driver, &bin, auth_of("o2", "owner")).await;
    new.assert_no_event("alert:resolved", Duration::ZERO).await;
    let ack = new
        .emit_ack("subscribe:unit", vec![json!("u1")])
        .await
        .remove(0);
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["latest"], Value::Null, "{ack}");
    let latest = new.emit_ack("get:latest", vec![json!("u1")]).await;
    assert_eq!(latest[0], Value::Null, "{latest:?}");
    let epoch = ack["epoch"].clone();
    new.emit_ack("unsubscribe:unit", vec![json!("u1")]).await;
    let resume = json!({ "unitId": "u1", "since": { "epoch": epoch, "seq": 0 } });
    let ack = new.emit_ack("subscribe:unit", vec![resume]).await.remove(0);
    assert_eq!(
        (&ack["ok"], &ack["latest"]),
        (&json!(true), &Value::Null),
        "{ack}"
    );
    assert_eq!(ack["recovered"], false, "{ack}");
    new.assert_no_event("sensor:reading", Duration::from_millis(300))
        .await;
    let open = new.emit_ack("get:alerts", vec![]).await.remove(0);
    assert_eq!(open, json!({ "ok": true, "alerts": [] }));
    // The history store still has the reading, under o1: not served to o2.
    let history = new
        .emit_ack(
            "get:history",
            vec![json!({ "unitId": "u1", "resolution": "raw" })],
        )
        .await
        .remove(0);
    assert_eq!(
        (&history["ok"], &history["points"]),
        (&json!(true), &json!([])),
        "{history}"
    );

    let denied = old
        .emit_ack("subscribe:unit", vec![json!("u1")])
        .await
        .remove(0);
    assert_eq!(denied, json!({ "ok": false, "error": "Access denied" }));
    let latest = old.emit_ack("get:latest", vec![json!("u1")]).await;
    assert_eq!(latest[0]["ok"], false, "{latest:?}");

    broker
        .publish("sensors/probe-1", r#"{"temperature": 4.5}"#, 1)
        .await;
    let after = new.next_event("sensor:reading").await.remove(0);
    assert_eq!(after["organizationId"], "o2");
    assert_eq!(after["siteId"], "s3");
    assert!(
        after["seq"].as_u64() > before["seq"].as_u64(),
        "seq goes on: {before} then {after}"
    );
    old.assert_no_event("sensor:reading", Duration::ZERO).await;
    bin.stop().await;
}

fn auth_of(org: &str, role: &str) -> Value {
    claims(json!({ "org_id": org, "role": role }))
}

/// Issue 12 item 5 (second round): every token-authenticated HTTP route (`/api/stats`,
/// `/api/sensors/unmapped`, the status page, `/live`, `/live/session`) refuses a correctly
/// signed owner token of an organization the registry does not know, whether it comes as a
/// bearer header or as the sign-in cookie, and serves the same token of a known organization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_route_refuses_an_organization_the_registry_does_not_know() {
    let broker = Broker::start().await;
    let service = Service::start(&TestConfig::new(&broker)).await;
    let routes = [
        "/api/stats",
        "/api/sensors/unmapped",
        "/",
        "/live",
        "/live/session",
    ];
    let unknown = token(json!({ "org_id": "o9", "role": "owner" }));
    let known = token(json!({ "org_id": "o1", "role": "owner" }));
    for path in routes {
        let bearer = format!("Bearer {unknown}");
        let cookie = format!("sensorcast_token={unknown}");
        for header in [
            ("authorization", bearer.as_str()),
            ("cookie", cookie.as_str()),
        ] {
            let r = common::http::http_get_raw(service.addr, path, &[header]).await;
            assert_eq!(r.status, 401, "{path} with {}: {}", header.0, r.body);
            assert!(!r.body.contains("\"units\""), "{path}: {}", r.body);
        }
        let bearer = format!("Bearer {known}");
        let ok =
            common::http::http_get_raw(service.addr, path, &[("authorization", &bearer)]).await;
        assert_eq!(
            ok.status, 200,
            "{path} with a known organization: {}",
            ok.body
        );
    }
    service.stop().await;
}
