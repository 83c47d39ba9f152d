//! The ingest loop's per-connection bookkeeping: what to subscribe and when (again after the
//! broker lost the session, incrementally after a reload), which SUBSCRIBEs await their SUBACK,
//! and the manual acks, sent in the order the publishes arrived. Everything goes through the
//! client's `try_*` calls: the loop that polls must never wait on its own request channel.

use rumqttc::{AsyncClient, QoS, SubscribeReasonCode};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tracing::{error, info, warn};

use crate::core::health::MqttHealth;
use crate::decode::Subscription;

/// Per-connection bookkeeping: what to subscribe, which SUBSCRIBEs await their SUBACK, and acks
/// that did not fit in the request channel yet.
pub(super) struct Session<'a> {
    client: &'a AsyncClient,
    subscriptions: Arc<[Subscription]>,
    /// Topics of each SUBSCRIBE sent and not yet acknowledged, oldest first.
    awaiting: VecDeque<Vec<String>>,
    first_connect: bool,
    pub(super) pending_acks: VecDeque<rumqttc::Publish>,
}

fn filter(s: &Subscription) -> rumqttc::SubscribeFilter {
    let qos = if s.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    rumqttc::SubscribeFilter::new(s.topic.clone(), qos)
}

impl<'a> Session<'a> {
    pub(super) fn new(subscriptions: Arc<[Subscription]>, client: &'a AsyncClient) -> Self {
        Session {
            client,
            subscriptions,
            awaiting: VecDeque::new(),
            first_connect: true,
            pending_acks: VecDeque::new(),
        }
    }

    /// Subscribes when the broker did not keep our session, and always on the first connect of
    /// this process (the configured list may have changed since the session was made).
    pub(super) fn connected(&mut self, session_present: bool, health: &MqttHealth) {
        let must_subscribe = self.first_connect || !session_present;
        self.first_connect = false;
        self.awaiting.clear();
        if !must_subscribe {
            info!("mqtt reconnected, broker kept the session and its subscriptions");
            health.subscribed.store(true, Relaxed);
            return;
        }
        let all: Vec<Subscription> = self.subscriptions.to_vec();
        if self.subscribe(&all) {
            info!(
                session_present,
                count = all.len(),
                "mqtt connected, subscribing"
            );
        }
    }

    fn subscribe(&mut self, subs: &[Subscription]) -> bool {
        if subs.is_empty() {
            return true;
        }
        match self.client.try_subscribe_many(subs.iter().map(filter)) {
            Ok(()) => {
                self.awaiting
                    .push_back(subs.iter().map(|s| s.topic.clone()).collect());
                true
            }
            Err(e) => {
                error!(error = %e, "could not queue the MQTT SUBSCRIBE");
                false
            }
        }
    }

    /// A reloaded subscription list: unsubscribe what went, subscribe what is new or changed.
    pub(super) fn update(&mut self, new: Arc<[Subscription]>, connected: bool) {
        let gone: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|o| !new.iter().any(|n| n.topic == o.topic))
            .map(|o| o.topic.clone())
            .collect();
        let added: Vec<Subscription> = new
            .iter()
            .filter(|n| {
                !self
                    .subscriptions
                    .iter()
                    .any(|o| o.topic == n.topic && o.qos == n.qos)
            })
            .cloned()
            .collect();
        self.subscriptions = new;
        info!(
            removed = gone.len(),
            added = added.len(),
            "mqtt subscriptions reloaded"
        );
        if !connected {
            return; // the next ConnAck subscribes to the new list
        }
        for topic in gone {
            if let Err(e) = self.client.try_unsubscribe(topic.clone()) {
                warn!(%topic, error = %e, "could not queue the MQTT UNSUBSCRIBE");
            }
        }
        self.subscribe(&added);
    }

    pub(super) fn suback(&mut self, codes: &[SubscribeReasonCode], health: &MqttHealth) {
        let topics = self.awaiting.pop_front().unwrap_or_default();
        let refused: Vec<&str> = codes
            .iter()
            .zip(&topics)
            .filter(|(c, _)| matches!(c, SubscribeReasonCode::Failure))
            .map(|(_, t)| t.as_str())
            .collect();
        if refused.is_empty() {
            info!("mqtt subscriptions acknowledged");
            health.subscribed.store(true, Relaxed);
        } else {
            error!(?refused, "broker refused subscriptions");
            health.set_error(Some(format!(
                "broker refused subscriptions: {}",
                refused.join(", ")
            )));
        }
    }

    pub(super) fn ack(&mut self, p: rumqttc::Publish) {
        if p.qos == QoS::AtMostOnce {
            return;
        }
        self.pending_acks.push_back(p);
        self.flush_acks();
    }

    pub(super) fn flush_acks(&mut self) {
        while let Some(p) = self.pending_acks.front() {
            if self.client.try_ack(p).is_err() {
                return; // channel full: retried after the next poll drains it
            }
            self.pending_acks.pop_front();
        }
    }
}
