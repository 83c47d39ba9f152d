use super::*;
use crate::decode::Format;

fn subs(topics: &[(&str, u8)]) -> Vec<Subscription> {
    topics
        .iter()
        .map(|(t, q)| {
            let mut s = Subscription::new(*t, Format::Json);
            s.qos = *q;
            s
        })
        .collect()
}

/// Queues what the ledger asks for as one SUBSCRIBE, sends it as `pkid` and acks it.
fn subscribe_all(l: &mut Ledger, pkid: u16) -> Settled {
    let ask = l.to_subscribe();
    let n = ask.len();
    l.subscribe_queued(ask);
    l.subscribe_sent(pkid);
    l.suback(pkid, &vec![true; n])
}

fn topics(fs: &[Filter]) -> Vec<&str> {
    fs.iter().map(|(t, _)| t.as_str()).collect()
}

#[test]
fn a_subscribe_lost_with_its_connection_is_asked_again_although_the_session_is_present() {
    let mut l = Ledger::new(&subs(&[("a/+", 1), ("b/#", 1)]));
    l.connected(false);
    let ask = l.to_subscribe();
    assert_eq!(topics(&ask), ["a/+", "b/#"]);
    l.subscribe_queued(ask);
    l.subscribe_sent(1);
    assert!(l.to_subscribe().is_empty(), "asked once per connection");
    assert!(!l.complete(), "not before the SUBACK");
    l.lost();
    l.connected(true);
    assert_eq!(topics(&l.to_subscribe()), ["a/+", "b/#"]);
    assert_eq!(subscribe_all(&mut l, 1).acked, ["a/+", "b/#"]);
    assert!(l.complete());
    // Acknowledged and the session kept: nothing to ask again.
    l.lost();
    l.connected(true);
    assert!(l.to_subscribe().is_empty());
    assert!(l.complete());
    // The broker lost the session: everything again.
    l.lost();
    l.connected(false);
    assert!(!l.complete());
    assert_eq!(topics(&l.to_subscribe()), ["a/+", "b/#"]);
}

#[test]
fn shared_filters_are_asked_again_on_every_connect() {
    let mut l = Ledger::new(&subs(&[("$share/g/a/+", 1), ("b/#", 1)]));
    l.connected(false);
    subscribe_all(&mut l, 7);
    assert!(l.complete());
    l.connected(true);
    assert_eq!(topics(&l.to_subscribe()), ["$share/g/a/+"]);
    assert!(!l.complete());
}

#[test]
fn acks_match_their_subscribe_by_packet_id_and_unknown_ones_change_nothing() {
    let mut l = Ledger::new(&subs(&[("a", 1)]));
    l.connected(false);
    l.subscribe_queued(l.to_subscribe());
    l.subscribe_sent(3);
    assert!(l.suback(4, &[true]).unknown);
    assert!(!l.complete());
    // An ack from a lost connection never counts.
    l.lost();
    l.connected(true);
    assert!(l.suback(3, &[true]).unknown);
    assert!(!l.complete());
}

#[test]
fn a_reload_subscribes_what_is_new_and_unsubscribes_what_went_until_acknowledged() {
    let mut l = Ledger::new(&subs(&[("a", 1), ("b", 1)]));
    l.connected(false);
    subscribe_all(&mut l, 1);
    l.set(&subs(&[("a", 1), ("c", 1)]));
    assert!(!l.complete());
    assert_eq!(topics(&l.to_subscribe()), ["c"]);
    assert_eq!(l.to_unsubscribe(), ["b"]);
    l.unsubscribe_queued("b".into());
    l.unsubscribe_sent(2);
    assert!(l.to_unsubscribe().is_empty());
    // Both lost with the connection; the session is kept, so both are asked again.
    l.lost();
    l.connected(true);
    assert_eq!(topics(&l.to_subscribe()), ["c"]);
    assert_eq!(l.to_unsubscribe(), ["b"]);
    l.unsubscribe_queued("b".into());
    l.unsubscribe_sent(5);
    assert_eq!(l.unsuback(5).as_deref(), Some("b"));
    assert!(l.to_unsubscribe().is_empty());
    subscribe_all(&mut l, 6);
    assert!(l.complete());
}

#[test]
fn a_new_qos_is_a_new_subscription_and_a_late_ack_of_the_old_one_does_not_count() {
    let mut l = Ledger::new(&subs(&[("a", 0)]));
    l.connected(false);
    l.subscribe_queued(l.to_subscribe());
    l.subscribe_sent(1);
    l.set(&subs(&[("a", 1)]));
    assert_eq!(l.to_subscribe(), [("a".to_string(), 1)]);
    assert!(l.suback(1, &[true]).acked.is_empty());
    assert!(!l.complete());
    subscribe_all(&mut l, 2);
    assert!(l.complete());
}

#[test]
fn a_refused_filter_is_not_asked_again_until_the_next_connect_or_reload() {
    let mut l = Ledger::new(&subs(&[("a", 1), ("b", 1)]));
    l.connected(false);
    l.subscribe_queued(l.to_subscribe());
    l.subscribe_sent(1);
    let s = l.suback(1, &[true, false]);
    assert_eq!((s.acked, s.refused), (vec!["a".into()], vec!["b".into()]));
    assert!(l.to_subscribe().is_empty());
    assert!(!l.complete());
    assert_eq!(l.refused(), ["b"]);
    l.set(&subs(&[("a", 1), ("b", 1)]));
    assert_eq!(topics(&l.to_subscribe()), ["b"]);
    l.connected(true);
    assert_eq!(topics(&l.to_subscribe()), ["b"]);
}
