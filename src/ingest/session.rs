//! The ingest loop's per-connection work: asking the broker for the subscriptions the
//! [`Ledger`] says are owed (after every connect, after a reload), matching SUBACKs and
//! UNSUBACKs, keeping `subscribed` (readiness) true only while every configured subscription
//! is acknowledged, and the manual acks, sent in the order the publishes arrived. Everything
//! goes through the client's `try_*` calls: the loop that polls must never wait on its own
//! request channel; what does not fit is asked again after the next event.

use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, QoS, Request, SubscribeReasonCode};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tracing::{debug, error, info, warn};

use super::ledger::{Filter, Ledger};
use crate::core::health::MqttHealth;
use crate::decode::Subscription;

/// Per-connection bookkeeping: the subscription ledger and acks that did not fit in the
/// request channel yet.
pub(super) struct Session<'a> {
    client: &'a AsyncClient,
    ledger: Ledger,
    /// Connected, so requests may be queued (between connections they would be void).
    live: bool,
    /// A request did not fit in the channel: ask the ledger again after the next event.
    retry: bool,
    pub(super) pending_acks: VecDeque<rumqttc::Publish>,
}

fn filter((topic, qos): &Filter) -> rumqttc::SubscribeFilter {
    let qos = if *qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    rumqttc::SubscribeFilter::new(topic.clone(), qos)
}

impl<'a> Session<'a> {
    pub(super) fn new(subscriptions: Arc<[Subscription]>, client: &'a AsyncClient) -> Self {
        Session {
            client,
            ledger: Ledger::new(&subscriptions),
            live: false,
            retry: false,
            pending_acks: VecDeque::new(),
        }
    }

    /// A CONNACK: asks for every subscription this process has no acknowledgement for in the
    /// session the broker reports (all of them when it did not keep one).
    pub(super) fn connected(&mut self, session_present: bool, health: &MqttHealth) {
        self.live = true;
        self.ledger.connected(session_present);
        let owed = self.ledger.to_subscribe().len();
        if owed == 0 {
            info!("mqtt reconnected; the broker kept the session and every subscription it acknowledged");
        } else {
            info!(session_present, count = owed, "mqtt connected, subscribing");
        }
        self.reconcile(health);
    }

    /// The connection is gone: its SUBSCRIBEs and acks are void. rumqttc would replay the
    /// (UN)SUBSCRIBEs it still holds on a session-present reconnect, next to the ones the
    /// ledger asks for then, and report stale packet ids: both are dropped here, so the ledger
    /// alone decides what is asked on the next connection.
    pub(super) fn lost(&mut self, eventloop: &mut EventLoop) {
        self.live = false;
        self.ledger.lost();
        // Acks of the lost connection are void; the broker redelivers those publishes.
        self.pending_acks.clear();
        eventloop
            .pending
            .retain(|r| !matches!(r, Request::Subscribe(_) | Request::Unsubscribe(_)));
        eventloop.state.events.retain(|e| {
            !matches!(
                e,
                Event::Outgoing(Outgoing::Subscribe(_) | Outgoing::Unsubscribe(_))
            )
        });
    }

    /// A reloaded subscription list: the ledger works out what to (un)subscribe; asked at once
    /// when connected, else at the next CONNACK.
    pub(super) fn update(&mut self, new: Arc<[Subscription]>, health: &MqttHealth) {
        self.ledger.set(&new);
        info!(
            subscribe = self.ledger.to_subscribe().len(),
            unsubscribe = self.ledger.to_unsubscribe().len(),
            "mqtt subscriptions reloaded"
        );
        self.reconcile(health);
    }

    /// rumqttc wrote a SUBSCRIBE or an UNSUBSCRIBE: its packet id, for matching the ack.
    pub(super) fn sent(&mut self, outgoing: &Outgoing) {
        match outgoing {
            Outgoing::Subscribe(pkid) => self.ledger.subscribe_sent(*pkid),
            Outgoing::Unsubscribe(pkid) => self.ledger.unsubscribe_sent(*pkid),
            _ => {}
        }
    }

    pub(super) fn suback(&mut self, ack: &rumqttc::SubAck, health: &MqttHealth) {
        let granted: Vec<bool> = ack
            .return_codes
            .iter()
            .map(|c| !matches!(c, SubscribeReasonCode::Failure))
            .collect();
        let settled = self.ledger.suback(ack.pkid, &granted);
        if settled.unknown {
            warn!(
                pkid = ack.pkid,
                "SUBACK for no SUBSCRIBE of this connection; ignored"
            );
        }
        if !settled.refused.is_empty() {
            error!(refused = ?settled.refused, "broker refused subscriptions");
            let all = self.ledger.refused().join(", ");
            health.set_error(Some(format!("broker refused subscriptions: {all}")));
        }
        if !settled.acked.is_empty() {
            debug!(acked = ?settled.acked, "mqtt subscriptions acknowledged");
        }
        self.set_subscribed(health);
    }

    pub(super) fn unsuback(&mut self, ack: &rumqttc::UnsubAck) {
        match self.ledger.unsuback(ack.pkid) {
            Some(topic) => debug!(%topic, "mqtt unsubscribe acknowledged"),
            None => warn!(
                pkid = ack.pkid,
                "UNSUBACK for no UNSUBSCRIBE of this connection; ignored"
            ),
        }
    }

    /// Queues what the ledger says is owed, as far as the request channel takes it.
    fn reconcile(&mut self, health: &MqttHealth) {
        // A full channel is said once at warn; the retries after each event only at debug.
        let again = std::mem::take(&mut self.retry);
        if self.live {
            let subscribe = self.ledger.to_subscribe();
            if !subscribe.is_empty() {
                match self.client.try_subscribe_many(subscribe.iter().map(filter)) {
                    Ok(()) => self.ledger.subscribe_queued(subscribe),
                    Err(e) => self.full(again, "SUBSCRIBE", &e),
                }
            }
            for topic in self.ledger.to_unsubscribe() {
                match self.client.try_unsubscribe(topic.clone()) {
                    Ok(()) => self.ledger.unsubscribe_queued(topic),
                    Err(e) => self.full(again, "UNSUBSCRIBE", &e),
                }
            }
        }
        self.set_subscribed(health);
    }

    fn full(&mut self, again: bool, what: &str, e: &rumqttc::ClientError) {
        self.retry = true;
        if again {
            debug!(request = what, error = %e, "MQTT request still not queued");
        } else {
            warn!(request = what, error = %e, "could not queue an MQTT request yet; retrying after the next event");
        }
    }

    fn set_subscribed(&self, health: &MqttHealth) {
        let complete = self.live && self.ledger.complete();
        if complete && !health.subscribed.swap(true, Relaxed) {
            info!("mqtt subscriptions acknowledged");
        } else if !complete {
            health.subscribed.store(false, Relaxed);
        }
    }

    /// After any event: acks that waited for room, and requests that did.
    pub(super) fn tick(&mut self, health: &MqttHealth) {
        self.flush_acks();
        if self.retry {
            self.reconcile(health);
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
