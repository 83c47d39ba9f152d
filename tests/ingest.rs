//! Issue 12, items 2-5: the MQTT edge against what a broker and its publishers can do to it. A
//! SUBSCRIBE lost with its connection must not leave the service believing it is subscribed;
//! a broker's retained copy must not pass for a live reading; topics of any length must not
//! grow memory or logs; and a shared subscription, which would split one unit's readings
//! between instances, is refused.

mod common;

use common::broker::{Broker, Publisher};
use common::config::TestConfig;
use common::jsclient::{JsClient, JsDriver};
use common::notify::NotifySocket;
use common::proxy::{OnSubscribe, Proxy};
use common::service::{auth, subscribed, Mode, Service};
use common::wait::{check, eventually, WAIT};
use std::time::Duration;

/// Publishes ten readings on `topic` and asserts that `c` receives all ten, in order.
async fn ten_of_ten(publisher: &Publisher, c: &JsClient, topic: &str) {
    let sent: Vec<f64> = (0..10).map(|i| 4.0 + f64::from(i) / 10.0).collect();
    for t in &sent {
        publisher
            .publish(topic, format!(r#"{{"temperature": {t}}}"#), 1)
            .await;
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match c
            .next_event_timeout("sensor:reading", Duration::from_secs(3))
            .await
        {
            Some(r) => got.push(r[0]["temperature"].as_f64().unwrap()),
            None => break,
        }
    }
    assert_eq!(got, sent, "{} of 10 readings on {topic} arrived", got.len());
}

/// A SUBSCRIBE lost with its connection (the broker never saw it, kept the session, and says
/// `session_present` on the reconnect): the service subscribes again instead of trusting
/// subscriptions the broker never acknowledged; while the new SUBSCRIBE waits for its SUBACK,
/// neither `/health/ready` nor systemd's READY says ready; then 10 of 10 readings arrive.
/// The same for a subscription a SIGHUP adds: only that one is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_lost_with_its_connection_is_sent_again_and_ready_waits_for_its_suback() {
    let broker = Broker::start().await;
    let proxy = Proxy::start(&broker).await;
    proxy.plan(&[OnSubscribe::Cut, OnSubscribe::Hold]);
    let notify = NotifySocket::bind();
    let env = [("NOTIFY_SOCKET", notify.path())];
    let config = TestConfig::for_url(&proxy.url());
    let mut bin = Service::launch(&config, Mode::Binary(&env), false).await;

    // The first SUBSCRIBE went down with its connection. Either the service asks again (and
    // the proxy holds that), or it wrongly calls itself ready.
    let code = eventually(WAIT, "a SUBSCRIBE held, or readiness", || async {
        let (code, _) = bin.get("/health/ready", None).await;
        check(proxy.holding() || code == 200, code).map(|()| code)
    })
    .await;
    assert!(
        proxy.holding(),
        "/health/ready said {code} with no SUBSCRIBE acknowledged; SUBSCRIBEs seen: {:?}",
        proxy.subscribes()
    );
    assert_eq!(proxy.connections(), 2, "one cut, one reconnect");
    let (code, h) = bin.get("/health", None).await;
    assert_eq!(bin.get("/health/ready", None).await.0, 503, "{h}");
    assert_eq!(h["checks"]["mqtt"]["connected"], true, "{h}");
    assert_eq!(h["checks"]["mqtt"]["subscribed"], false, "{h} ({code})");
    let told = notify.drain();
    assert!(
        !told.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "READY before any SUBACK: {told:?}"
    );

    proxy.release();
    let seen = tokio::task::block_in_place(|| notify.read_until("READY=1", WAIT));
    assert!(
        seen.last().unwrap().contains("STATUS=broker: connected"),
        "{seen:?}"
    );
    assert_eq!(bin.get("/health/ready", None).await.0, 200);
    let publisher = Publisher::connect(&broker).await;
    let driver = JsDriver::spawn().await;
    let c = subscribed(&driver, &bin, auth("o1", "viewer"), &["u1"]).await;
    ten_of_ten(&publisher, &c, "sensors/probe-1").await;

    // A subscription added by a reload, lost the same way.
    proxy.plan(&[OnSubscribe::Cut]);
    bin.rewrite(&bin.config.clone().subscription("more/+", "json"));
    bin.signal("HUP");
    let subscribes = eventually(WAIT, "the added subscription sent again", || async {
        let seen = proxy.subscribes();
        let (code, _) = bin.get("/health/ready", None).await;
        check(seen.len() >= 4 && code == 200, format!("{code}: {seen:?}")).map(|()| seen)
    })
    .await;
    assert_eq!(subscribes[2], ["more/+"], "{subscribes:?}");
    assert_eq!(
        subscribes[3],
        ["more/+"],
        "only what was never acknowledged is sent again: {subscribes:?}"
    );
    ten_of_ten(&publisher, &c, "more/probe-1").await;
    bin.stop().await;
}
