//! Every session's subscriptions, and who gets one published message.
//!
//! The rules (MQTT 5 §3.3.4, §3.8.3.1, §4.8.2; MQTT 3.1.1 §3.3.5):
//!
//! - a session subscribed by several matching filters gets **one** copy, at
//!   the highest QoS those subscriptions granted, carrying every matching
//!   subscription identifier (the specification allows one copy per
//!   subscription too; one copy keeps fan-out bounded by sessions);
//! - a subscription with **No Local** does not get what its own client
//!   published;
//! - **Retain As Published** is kept per subscription and reported if any
//!   matching one asked for it;
//! - a **shared** subscription (`$share/<group>/<filter>`) delivers each
//!   message to one member of the group, in turn, independently of the
//!   members' own non-shared subscriptions; No Local on it is a protocol
//!   error (refused at subscribe);
//! - the QoS actually delivered is the lower of this and the published
//!   QoS, which the caller applies (it has the message).
//!
//! Memory follows the subscriptions held, bounded per client by
//! `max_per_client` (a SUBSCRIBE past it gets 0x97 "quota exceeded").

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::topic::Filter;
use super::tree::TopicTree;

/// A subscription's options (MQTT 5 §3.8.3.1; MQTT 3.1.1 has only `qos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubOptions {
    /// Maximum QoS granted, 0–2.
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained messages at subscribe; 1: only if the subscription
    /// is new; 2: never.
    pub retain_handling: u8,
    /// The MQTT 5 subscription identifier, if the SUBSCRIBE carried one.
    pub id: Option<u32>,
}

/// Why a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error(
        "client {client} already holds {max} subscriptions (mqtt.max_subscriptions_per_client)"
    )]
    Quota { client: Arc<str>, max: usize },
    #[error("No Local on a shared subscription is a protocol error (MQTT 5 §3.8.3.1)")]
    SharedNoLocal,
    #[error("QoS {0} is not 0, 1 or 2")]
    Qos(u8),
    #[error("Retain Handling {0} is not 0, 1 or 2 (MQTT 5 §3.8.3.1)")]
    RetainHandling(u8),
    #[error("the connection has no session (taken over)")]
    NoSession,
}

/// One session's copy of a published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub client: Arc<str>,
    /// The highest QoS the matching subscriptions granted.
    pub qos: u8,
    pub retain_as_published: bool,
    /// Subscription identifiers of the matching subscriptions, ascending.
    pub ids: Vec<u32>,
}

/// What one filter node holds: plain subscriptions by client, and shared
/// groups by name.
#[derive(Debug, Default)]
struct Entry {
    plain: HashMap<Arc<str>, SubOptions>,
    shared: HashMap<Arc<str>, Group>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.shared.is_empty()
    }
}

/// A shared subscription group: members in subscription order, and whose
/// turn is next.
#[derive(Debug, Default)]
struct Group {
    members: Vec<(Arc<str>, SubOptions)>,
    next: Cell<usize>,
}

/// All subscriptions; see the module docs.
#[derive(Debug)]
pub struct Subscriptions {
    tree: TopicTree<Entry>,
    by_client: HashMap<Arc<str>, HashSet<Filter>>,
    max_per_client: usize,
}

impl Subscriptions {
    /// An empty set; a client may hold at most `max_per_client`
    /// subscriptions.
    pub fn new(max_per_client: usize) -> Self {
        Subscriptions {
            tree: TopicTree::default(),
            by_client: HashMap::new(),
            max_per_client,
        }
    }

    /// Adds or replaces `client`'s subscription to `filter`. Returns
    /// whether it already existed (retain handling 1 sends retained
    /// messages only for a new one).
    pub fn subscribe(
        &mut self,
        client: &Arc<str>,
        filter: &Filter,
        opts: SubOptions,
    ) -> Result<bool, SubscribeError> {
        if opts.qos > 2 {
            return Err(SubscribeError::Qos(opts.qos));
        }
        if opts.retain_handling > 2 {
            return Err(SubscribeError::RetainHandling(opts.retain_handling));
        }
        if filter.group.is_some() && opts.no_local {
            return Err(SubscribeError::SharedNoLocal);
        }
        let held = self.by_client.get(client);
        let existed = held.is_some_and(|h| h.contains(filter));
        if !existed && held.map_or(0, HashSet::len) >= self.max_per_client {
            return Err(SubscribeError::Quota {
                client: client.clone(),
                max: self.max_per_client,
            });
        }
        self.tree.update(&filter.filter, |slot| {
            let entry = slot.get_or_insert_with(Entry::default);
            match &filter.group {
                None => {
                    entry.plain.insert(client.clone(), opts);
                }
                Some(group) => {
                    let members = &mut entry.shared.entry(group.clone()).or_default().members;
                    match members.iter_mut().find(|(c, _)| c == client) {
                        Some(member) => member.1 = opts,
                        None => members.push((client.clone(), opts)),
                    }
                }
            }
        });
        self.by_client
            .entry(client.clone())
            .or_default()
            .insert(filter.clone());
        Ok(existed)
    }

    /// Removes `client`'s subscription to `filter`; whether it had one.
    pub fn unsubscribe(&mut self, client: &str, filter: &Filter) -> bool {
        let Some(held) = self.by_client.get_mut(client) else {
            return false;
        };
        if !held.remove(filter) {
            return false;
        }
        if held.is_empty() {
            self.by_client.remove(client);
        }
        self.tree.update(&filter.filter, |slot| {
            if let Some(entry) = slot {
                match &filter.group {
                    None => {
                        entry.plain.remove(client);
                    }
                    Some(group) => {
                        if let Some(g) = entry.shared.get_mut(group) {
                            g.members.retain(|(c, _)| &**c != client);
                            if g.members.is_empty() {
                                entry.shared.remove(group);
                            }
                        }
                    }
                }
                if entry.is_empty() {
                    *slot = None;
                }
            }
        });
        true
    }

    /// Removes every subscription of `client` (its session ended); how many.
    pub fn remove_client(&mut self, client: &str) -> usize {
        let filters: Vec<Filter> = self
            .by_client
            .get(client)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default();
        for filter in &filters {
            self.unsubscribe(client, filter);
        }
        filters.len()
    }

    /// The filters `client` holds.
    pub fn of_client(&self, client: &str) -> impl Iterator<Item = &Filter> {
        self.by_client.get(client).into_iter().flatten()
    }

    /// Subscriptions held, shared ones counted per member.
    pub fn len(&self) -> usize {
        self.by_client.values().map(HashSet::len).sum()
    }

    /// Whether no client holds a subscription.
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Nodes of the filter tree (what the index's memory follows).
    pub fn nodes(&self) -> usize {
        self.tree.nodes()
    }

    /// Who gets a message published to `topic` by `publisher` (`None` for
    /// the broker's own messages, such as a will): one [`Delivery`] per
    /// session for its plain subscriptions, then one per shared group.
    pub fn deliveries(&self, topic: &str, publisher: Option<&str>) -> Vec<Delivery> {
        let mut plain: HashMap<&Arc<str>, Delivery> = HashMap::new();
        let mut shared: Vec<Delivery> = Vec::new();
        self.tree.matching_filters(topic, |entry: &Entry| {
            for (client, opts) in &entry.plain {
                if opts.no_local && publisher == Some(&**client) {
                    continue;
                }
                let d = plain.entry(client).or_insert_with(|| Delivery {
                    client: client.clone(),
                    qos: 0,
                    retain_as_published: false,
                    ids: Vec::new(),
                });
                d.qos = d.qos.max(opts.qos);
                d.retain_as_published |= opts.retain_as_published;
                d.ids.extend(opts.id);
            }
            for group in entry.shared.values() {
                let n = group.members.len();
                if n == 0 {
                    continue;
                }
                let turn = group.next.get() % n;
                group.next.set((turn + 1) % n);
                let (client, opts) = &group.members[turn];
                shared.push(Delivery {
                    client: client.clone(),
                    qos: opts.qos,
                    retain_as_published: opts.retain_as_published,
                    ids: opts.id.into_iter().collect(),
                });
            }
        });
        let mut out: Vec<Delivery> = plain.into_values().collect();
        for d in &mut out {
            d.ids.sort_unstable();
            d.ids.dedup();
        }
        out.sort_by(|a, b| a.client.cmp(&b.client));
        out.extend(shared);
        out
    }
}
