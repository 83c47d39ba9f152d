//! Which subscriptions the broker has acknowledged to this process, and so what to ask for
//! next: the ingest loop's subscription bookkeeping, pure (no client, no clock) so that every
//! case is a unit test.
//!
//! A subscription counts only once its SUBACK arrived in this process. A broker that reports
//! `session_present` has kept the subscriptions it acknowledged, but not a SUBSCRIBE that went
//! down with the connection before reaching it: trusting `session_present` alone left the
//! service "subscribed" to nothing. So after every connect, whatever is configured and not yet
//! acknowledged is asked for again (subscribing is idempotent), and a broker that lost the
//! session owes everything again. `$share/...` filters are never trusted across a reconnect:
//! Mosquitto 2.0.11 drops them over its own restart while still reporting `session_present`.
//! Filters a reload removed are unsubscribed until their UNSUBACK arrives.
//!
//! Requests are matched to their acks by packet id: rumqttc reports the id of each
//! SUBSCRIBE and UNSUBSCRIBE as it goes out (in the order they were queued), and the acks
//! carry it back. Requests of a lost connection are void: the ingest loop forgets them (and
//! removes them from rumqttc's own queues) and the next connect asks again.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::decode::Subscription;

/// A topic filter and the QoS asked for it.
pub type Filter = (String, u8);

/// A filter the broker deals out per message to a group of sessions.
pub fn is_shared(topic: &str) -> bool {
    topic.starts_with("$share/")
}

#[derive(Debug, Default)]
pub struct Ledger {
    /// The configured subscriptions.
    wanted: Vec<Filter>,
    /// Filters acknowledged in this process (and kept by the broker since), with their QoS.
    acked: HashMap<String, u8>,
    /// Filters the broker refused on this connection: not asked again until the next connect
    /// or reload (asking again at once would only be refused again, in a loop).
    refused: BTreeSet<String>,
    /// Topics a reload removed, to unsubscribe until the broker acknowledges it.
    unwanted: BTreeSet<String>,
    /// SUBSCRIBEs queued with the client and not yet on the wire, oldest first.
    queued_subs: VecDeque<Vec<Filter>>,
    /// UNSUBSCRIBEs queued with the client and not yet on the wire, oldest first.
    queued_unsubs: VecDeque<String>,
    /// On the wire, by packet id, awaiting their ack.
    inflight_subs: HashMap<u16, Vec<Filter>>,
    inflight_unsubs: HashMap<u16, String>,
}

/// What one SUBACK settled.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub acked: Vec<String>,
    pub refused: Vec<String>,
    /// No SUBSCRIBE of this connection had that packet id.
    pub unknown: bool,
}

impl Ledger {
    pub fn new(subscriptions: &[Subscription]) -> Ledger {
        Ledger {
            wanted: filters(subscriptions),
            ..Ledger::default()
        }
    }

    /// A new connection: the requests of the last one are void; what the broker holds is
    /// what it acknowledged, as long as it kept the session (and never a shared filter).
    pub fn connected(&mut self, session_present: bool) {
        self.lost();
        self.refused.clear();
        if session_present {
            self.acked.retain(|topic, _| !is_shared(topic));
        } else {
            self.acked.clear();
            self.unwanted.clear();
        }
    }

    /// The connection was lost: what was queued or on the wire will never be acknowledged.
    pub fn lost(&mut self) {
        self.queued_subs.clear();
        self.queued_unsubs.clear();
        self.inflight_subs.clear();
        self.inflight_unsubs.clear();
    }

    /// A reloaded subscription list: what went is to be unsubscribed, what is new or has a new
    /// QoS is to be subscribed, and a refused filter may be tried again.
    pub fn set(&mut self, subscriptions: &[Subscription]) {
        let wanted = filters(subscriptions);
        for (topic, _) in &self.wanted {
            if !wanted.iter().any(|(t, _)| t == topic) {
                self.acked.remove(topic);
                self.unwanted.insert(topic.clone());
            }
        }
        for (topic, _) in &wanted {
            self.unwanted.remove(topic);
        }
        self.refused.clear();
        self.wanted = wanted;
    }

    /// Filters to subscribe now: configured, neither acknowledged, refused nor already asked.
    pub fn to_subscribe(&self) -> Vec<Filter> {
        self.wanted
            .iter()
            .filter(|(topic, qos)| {
                self.acked.get(topic) != Some(qos)
                    && !self.refused.contains(topic)
                    && !self.asked(topic, *qos)
            })
            .cloned()
            .collect()
    }

    /// Topics to unsubscribe now (removed by a reload, not already asked).
    pub fn to_unsubscribe(&self) -> Vec<String> {
        self.unwanted
            .iter()
            .filter(|t| {
                !self.queued_unsubs.contains(t) && !self.inflight_unsubs.values().any(|u| u == *t)
            })
            .cloned()
            .collect()
    }

    fn asked(&self, topic: &str, qos: u8) -> bool {
        let has = |fs: &Vec<Filter>| fs.iter().any(|(t, q)| t == topic && *q == qos);
        self.queued_subs.iter().any(has) || self.inflight_subs.values().any(has)
    }

    /// A SUBSCRIBE for `filters` was queued with the client.
    pub fn subscribe_queued(&mut self, filters: Vec<Filter>) {
        self.queued_subs.push_back(filters);
    }

    /// An UNSUBSCRIBE for `topic` was queued with the client.
    pub fn unsubscribe_queued(&mut self, topic: String) {
        self.queued_unsubs.push_back(topic);
    }

    /// rumqttc wrote the oldest queued SUBSCRIBE with packet id `pkid`.
    pub fn subscribe_sent(&mut self, pkid: u16) {
        if let Some(filters) = self.queued_subs.pop_front() {
            self.inflight_subs.insert(pkid, filters);
        }
    }

    /// rumqttc wrote the oldest queued UNSUBSCRIBE with packet id `pkid`.
    pub fn unsubscribe_sent(&mut self, pkid: u16) {
        if let Some(topic) = self.queued_unsubs.pop_front() {
            self.inflight_unsubs.insert(pkid, topic);
        }
    }

    /// The SUBACK for packet `pkid`: `granted[i]` says whether the i-th filter was accepted.
    pub fn suback(&mut self, pkid: u16, granted: &[bool]) -> Settled {
        let Some(filters) = self.inflight_subs.remove(&pkid) else {
            return Settled {
                unknown: true,
                ..Settled::default()
            };
        };
        let mut settled = Settled::default();
        for ((topic, qos), ok) in filters.into_iter().zip(granted) {
            // A reload may have removed or changed it meanwhile: then this ack is history.
            let still = self.wanted.iter().any(|(t, q)| *t == topic && *q == qos);
            if *ok && still {
                self.acked.insert(topic.clone(), qos);
                settled.acked.push(topic);
            } else if !*ok {
                self.refused.insert(topic.clone());
                settled.refused.push(topic);
            }
        }
        settled
    }

    /// The UNSUBACK for packet `pkid`; returns the topic it settled.
    pub fn unsuback(&mut self, pkid: u16) -> Option<String> {
        let topic = self.inflight_unsubs.remove(&pkid)?;
        self.unwanted.remove(&topic);
        Some(topic)
    }

    /// Every configured subscription is acknowledged: the only state in which ingest is ready.
    pub fn complete(&self) -> bool {
        self.wanted
            .iter()
            .all(|(topic, qos)| self.acked.get(topic) == Some(qos))
    }

    /// Filters the broker refused on this connection.
    pub fn refused(&self) -> Vec<String> {
        self.refused.iter().cloned().collect()
    }
}

fn filters(subscriptions: &[Subscription]) -> Vec<Filter> {
    subscriptions
        .iter()
        .map(|s| (s.topic.clone(), s.qos))
        .collect()
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
