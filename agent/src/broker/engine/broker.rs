//! The engine as one state: sessions, subscriptions and retained messages,
//! and the broker's rules that span them (MQTT 5 §3.3.1.3, §3.8.3.1,
//! §4.5; MQTT 3.1.1 §3.3.1.3, §3.8.4):
//!
//! - a PUBLISH goes to every matching session's outbox at the lower of its
//!   QoS and the granted one; its RETAIN flag is kept only for
//!   subscriptions with Retain As Published;
//! - a retained PUBLISH replaces the topic's retained message (an empty
//!   payload deletes it); one the retained bounds refuse is not delivered
//!   either, so the publisher's 0x97 means "nothing happened";
//! - a SUBSCRIBE gets the matching retained messages, with RETAIN set,
//!   unless its Retain Handling says not to (2), or says "only for a new
//!   subscription" (1) and it replaced one;
//! - sessions that end take their subscriptions with them;
//! - wills are published like any message, a retained will kept as the
//!   topic's retained message (MQTT 5 §3.1.2.15); one the retained bounds
//!   refuse is still delivered (nobody waits for an ack to be told).
//!
//! Every call returns the client ids whose outbox got something to write:
//! the connection tasks serving them call [`Engine::ready`]. A
//! connection's own calls (subscribe, acks, ready) name its
//! [`ConnectionId`]: after a takeover the older connection's calls find no
//! session and change nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use super::retained::{RetainError, Retained};
use super::session::{Limits, Message, QueueBudget, Send};
use super::sessions::{
    Connect, ConnectError, Connected, ConnectionId, Disconnected, Ended, Expiry, Sessions,
};
use super::subscriptions::{SubOptions, SubscribeError, Subscriptions};
use super::topic::Filter;

/// The engine's bounds, each a config key once wired (`[mqtt]`).
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    pub queue: Limits,
    /// Bytes queued across all sessions (`mqtt.max_queued_total_bytes`).
    pub max_queued_total_bytes: usize,
    pub max_sessions: usize,
    pub max_subscriptions_per_client: usize,
    pub max_retained_messages: usize,
    pub max_retained_bytes: usize,
}

/// A client's acknowledgement of a delivery to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    Puback,
    Pubrec,
    /// A PUBREC with a failure reason code (MQTT 5 §4.3.3): the QoS 2
    /// exchange ends there, without PUBREL.
    PubrecFailed,
    Pubcomp,
}

/// Client ids with something new to write.
pub type Woken = BTreeSet<Arc<str>>;

/// The whole broker state; see the module docs.
#[derive(Debug)]
pub struct Engine {
    pub sessions: Sessions,
    pub subscriptions: Subscriptions,
    pub retained: Retained<Arc<Message>>,
}

impl Engine {
    pub fn new(limits: EngineLimits) -> Self {
        Engine {
            sessions: Sessions::with_budget(
                limits.queue,
                limits.max_sessions,
                QueueBudget::new(limits.max_queued_total_bytes),
            ),
            subscriptions: Subscriptions::new(limits.max_subscriptions_per_client),
            retained: Retained::new(limits.max_retained_messages, limits.max_retained_bytes),
        }
    }

    /// A CONNECT; wills of a taken-over connection are published.
    pub fn connect(
        &mut self,
        c: Connect,
        now: Instant,
    ) -> Result<(Connected, Woken), ConnectError> {
        let client = c.client.clone();
        let connected = self.sessions.connect(c, now)?;
        if connected.discarded {
            self.subscriptions.remove_client(&client);
        }
        if let Some(evicted) = &connected.evicted {
            self.subscriptions.remove_client(evicted);
        }
        let woken = self.publish_wills(&connected.wills);
        Ok((connected, woken))
    }

    /// A connection ended; see [`Sessions::disconnect`].
    pub fn disconnect(
        &mut self,
        client: &str,
        connection: ConnectionId,
        how: Ended,
        expiry: Option<Expiry>,
        now: Instant,
    ) -> (Disconnected, Woken) {
        let out = self
            .sessions
            .disconnect(client, connection, how, expiry, now);
        if out.ended {
            self.subscriptions.remove_client(client);
        }
        let woken = self.publish_wills(&out.wills);
        (out, woken)
    }

    /// Expired sessions and delayed wills; call it every second or so.
    pub fn tick(&mut self, now: Instant) -> Woken {
        let due = self.sessions.tick(now);
        for client in &due.ended {
            self.subscriptions.remove_client(client);
        }
        self.retained.purge(now, |m| m.topic.to_string());
        self.publish_wills(&due.wills)
    }

    /// A SUBSCRIBE's filter; queues the retained messages it gets.
    pub fn subscribe(
        &mut self,
        client: &Arc<str>,
        connection: ConnectionId,
        filter: &Filter,
        opts: SubOptions,
        now: Instant,
    ) -> Result<Woken, SubscribeError> {
        if self.sessions.outbox_of(client, connection).is_none() {
            return Err(SubscribeError::NoSession);
        }
        let existed = self.subscriptions.subscribe(client, filter, opts)?;
        let mut woken = Woken::new();
        let send_retained = match opts.retain_handling {
            0 => true,
            1 => !existed,
            _ => false,
        };
        // Shared subscriptions get no retained messages (MQTT 5 §4.8.2).
        if send_retained && filter.group.is_none() {
            let retained: Vec<Arc<Message>> = self
                .retained
                .matching(&filter.filter, now)
                .into_iter()
                .cloned()
                .collect();
            if let Some(outbox) = self.sessions.outbox(client) {
                for m in retained {
                    outbox.push(m, opts.qos, true, opts.id.into_iter().collect());
                    woken.insert(client.clone());
                }
            }
        }
        Ok(woken)
    }

    /// An UNSUBSCRIBE's filter; whether the client had it.
    pub fn unsubscribe(&mut self, client: &str, connection: ConnectionId, filter: &Filter) -> bool {
        self.sessions.outbox_of(client, connection).is_some()
            && self.subscriptions.unsubscribe(client, filter)
    }

    /// A PUBLISH (after its commit, for the gate's ack-after-commit).
    pub fn publish(&mut self, message: Arc<Message>) -> Result<Woken, RetainError> {
        if message.retain {
            if message.payload.is_empty() {
                self.retained.clear(&message.topic);
            } else {
                let bytes = message.bytes();
                self.retained
                    .set(&message.topic, message.clone(), bytes, message.expires)?;
            }
        }
        Ok(self.deliver(&message))
    }

    /// What `client`'s `connection` may write now.
    pub fn ready(&mut self, client: &str, connection: ConnectionId, now: Instant) -> Vec<Send> {
        self.sessions
            .outbox_of(client, connection)
            .map(|o| o.ready(now))
            .unwrap_or_default()
    }

    /// The client's acknowledgement of a delivery; whether it matched one
    /// (a PUBREC's answer is then a PUBREL).
    pub fn ack(&mut self, client: &str, connection: ConnectionId, ack: Ack, id: u16) -> bool {
        let Some(outbox) = self.sessions.outbox_of(client, connection) else {
            return false;
        };
        match ack {
            Ack::Puback => outbox.puback(id),
            Ack::Pubrec => outbox.pubrec(id),
            Ack::PubrecFailed => outbox.pubrec_failed(id),
            Ack::Pubcomp => outbox.pubcomp(id),
        }
    }

    /// Bytes queued in all sessions' outboxes (`mqtt.max_queued_total_bytes`).
    pub fn queued_bytes(&self) -> usize {
        self.sessions.budget().used()
    }

    fn publish_wills(&mut self, wills: &[Arc<Message>]) -> Woken {
        let mut woken = Woken::new();
        for will in wills {
            if will.retain {
                let stored = if will.payload.is_empty() {
                    self.retained.clear(&will.topic);
                    Ok(())
                } else {
                    self.retained
                        .set(&will.topic, will.clone(), will.bytes(), will.expires)
                };
                if let Err(e) = stored {
                    tracing::warn!(topic = %will.topic, error = %e, "retained will not kept; delivered");
                }
            }
            woken.extend(self.deliver(will));
        }
        woken
    }

    fn deliver(&mut self, message: &Arc<Message>) -> Woken {
        let mut woken = Woken::new();
        let deliveries = self
            .subscriptions
            .deliveries(&message.topic, message.publisher.as_deref());
        for d in deliveries {
            if let Some(outbox) = self.sessions.outbox(&d.client) {
                let retain = message.retain && d.retain_as_published;
                outbox.push(message.clone(), d.qos, retain, d.ids);
                woken.insert(d.client);
            }
        }
        woken
    }
}
