//! Retained messages (MQTT 5 §3.3.1.3): the last retained message of each
//! topic, handed to new subscriptions whose filter matches it.
//!
//! Bounded by count and by bytes: a retained PUBLISH that would pass either
//! bound for a topic that has none yet is refused (MQTT 5: 0x97 "quota
//! exceeded"; MQTT 3.1.1 has no negative ack), so a fleet of short-lived
//! device ids cannot grow the gateway. Replacing an existing one with one
//! no larger, and deleting one (an empty payload), are always allowed;
//! growing one past the byte bound is refused. Topics have at most
//! [`MAX_LEVELS`](super::topic::MAX_LEVELS) levels (checked before they
//! get here), so a message's nodes are bounded too. A message with an MQTT 5
//! expiry is not handed out once expired, and [`Retained::purge`] frees it.

use std::time::Instant;

use super::tree::TopicTree;

/// One retained message as stored: the caller's message `M`, what it counts
/// against the byte bound, and when it expires.
#[derive(Debug)]
struct Held<M> {
    message: M,
    bytes: usize,
    expires: Option<Instant>,
}

/// Why a retained message is not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetainError {
    #[error(
        "{held} retained messages of {bytes} bytes are held; the limit is {max_messages} messages, {max_bytes} bytes (mqtt.max_retained_messages, mqtt.max_retained_bytes)"
    )]
    Full {
        held: usize,
        bytes: usize,
        max_messages: usize,
        max_bytes: usize,
    },
}

/// The retained store; see the module docs.
#[derive(Debug)]
pub struct Retained<M> {
    tree: TopicTree<Held<M>>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
}

impl<M> Retained<M> {
    /// An empty store holding at most `max_messages` messages and
    /// `max_bytes` bytes.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Retained {
            tree: TopicTree::default(),
            bytes: 0,
            max_messages,
            max_bytes,
        }
    }

    /// Keeps `message` as `topic`'s retained message, replacing the one
    /// before. `bytes` is what it counts against the byte bound (topic and
    /// payload); `expires` is its MQTT 5 expiry.
    pub fn set(
        &mut self,
        topic: &str,
        message: M,
        bytes: usize,
        expires: Option<Instant>,
    ) -> Result<(), RetainError> {
        let old = self.tree.get(topic).map(|h| h.bytes);
        let bytes_after = self.bytes - old.unwrap_or(0) + bytes;
        let refused = match old {
            None => self.tree.len() >= self.max_messages || bytes_after > self.max_bytes,
            Some(before) => bytes > before && bytes_after > self.max_bytes,
        };
        if refused {
            return Err(RetainError::Full {
                held: self.tree.len(),
                bytes: self.bytes,
                max_messages: self.max_messages,
                max_bytes: self.max_bytes,
            });
        }
        self.tree.update(topic, |slot| {
            *slot = Some(Held {
                message,
                bytes,
                expires,
            });
        });
        self.bytes = bytes_after;
        Ok(())
    }

    /// Deletes `topic`'s retained message (a retained PUBLISH with an empty
    /// payload); whether there was one.
    pub fn clear(&mut self, topic: &str) -> bool {
        match self.tree.remove(topic) {
            Some(held) => {
                self.bytes -= held.bytes;
                true
            }
            None => false,
        }
    }

    /// The unexpired retained messages whose topic `filter` matches.
    pub fn matching(&self, filter: &str, now: Instant) -> Vec<&M> {
        let mut out = Vec::new();
        self.tree.matching_topics(filter, |h: &Held<M>| {
            if h.expires.is_none_or(|at| at > now) {
                out.push(&h.message);
            }
        });
        out
    }

    /// The retained message of exactly `topic`, expired or not.
    pub fn get(&self, topic: &str) -> Option<&M> {
        self.tree.get(topic).map(|h| &h.message)
    }

    /// Frees the messages expired at `now`, given each one's topic by
    /// `topic_of`; how many.
    pub fn purge(&mut self, now: Instant, topic_of: impl Fn(&M) -> String) -> usize {
        let mut expired = Vec::new();
        self.tree.for_each(|h: &Held<M>| {
            if h.expires.is_some_and(|at| at <= now) {
                expired.push(topic_of(&h.message));
            }
        });
        expired.iter().filter(|t| self.clear(t)).count()
    }

    /// Retained messages held.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Nodes of the topic tree, the root included.
    pub fn nodes(&self) -> usize {
        self.tree.nodes()
    }

    /// Bytes held, as counted by [`Retained::set`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
