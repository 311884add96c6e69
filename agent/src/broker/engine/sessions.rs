//! The session table: which client ids have a session, which connection
//! serves each, when a session ends, and the wills (MQTT 5 §3.1.2.4,
//! §3.1.2.5, §3.1.3.2, §3.1.4, §3.14.2.2.2, §4.1; MQTT 3.1.1 §3.1.2.4).
//! Where the specification leaves room, Mosquitto 2's choice is taken.
//!
//! - **Clean start** discards the session the client id had; otherwise the
//!   session is resumed and CONNACK says so (`session_present`). A session
//!   whose expiry is 0 is never resumed, not even by a takeover: it ends
//!   with its connection.
//! - **Session expiry**: MQTT 5's interval from CONNECT, or from
//!   DISCONNECT (raising it from 0 there is a protocol error: the new value
//!   is ignored and the will goes out, as Mosquitto does); a 3.1.1 client
//!   with clean session 0 keeps its session until it connects clean
//!   (Mosquitto's `persistent_client_expiration` unset).
//! - **Takeover**: a CONNECT for a client id that is connected closes the
//!   older connection (MQTT 5: DISCONNECT 0x8E). Its will is published if
//!   its session ends there (expiry 0, or the new CONNECT has clean start),
//!   and dropped if the session carries on (a new connection came within
//!   the will delay).
//! - **Wills** go out when a connection ends without DISCONNECT 0x00, or
//!   with 0x04 "disconnect with will message", after the will delay or
//!   when the session ends, whichever is first. A reconnect to the session
//!   before then cancels it, also with clean start (Mosquitto's choice). A
//!   will's own Message Expiry Interval counts from its publication.
//! - At most `max_sessions` sessions, connected or not: a CONNECT that
//!   would make one more is refused (MQTT 5 0x97 "quota exceeded", 3.1.1
//!   0x03 "server unavailable").
//!
//! Calls a connection makes for its session name the [`ConnectionId`] it
//! got: after a takeover, the older connection's calls find no session.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{Limits, Message, Outbox, QueueBudget, Send};

/// A connection's identity, given by [`Sessions::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// How long a session outlives its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// MQTT 5 Session Expiry Interval (0: ends with the connection).
    After(Duration),
    /// MQTT 3.1.1 clean session 0, or MQTT 5's 0xFFFFFFFF.
    Never,
}

impl Expiry {
    fn is_zero(self) -> bool {
        self == Expiry::After(Duration::ZERO)
    }

    /// When a session disconnected at `now` ends (`None`: never).
    fn end(self, now: Instant) -> Option<Instant> {
        match self {
            Expiry::Never => None,
            Expiry::After(d) => now.checked_add(d),
        }
    }
}

/// A will: the message (without an expiry instant), its MQTT 5 delay, and
/// its own Message Expiry Interval, counted from publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub message: Arc<Message>,
    pub delay: Duration,
    pub expiry: Option<Duration>,
}

impl Will {
    /// The message as published at `now`.
    fn published(&self, now: Instant) -> Arc<Message> {
        match self.expiry {
            None => self.message.clone(),
            Some(d) => Arc::new(Message {
                expires: now.checked_add(d),
                ..(*self.message).clone()
            }),
        }
    }
}

/// A CONNECT, as far as the session table cares.
#[derive(Debug, Clone)]
pub struct Connect {
    pub client: Arc<str>,
    pub clean_start: bool,
    pub expiry: Expiry,
    pub receive_maximum: u16,
    pub will: Option<Will>,
}

/// What a CONNECT resulted in.
#[derive(Debug)]
pub struct Connected {
    pub connection: ConnectionId,
    pub session_present: bool,
    /// The older connection of the same client id, to close (0x8E).
    pub taken_over: Option<ConnectionId>,
    /// Wills to publish now.
    pub wills: Vec<Arc<Message>>,
    /// What to write first: the resumed session's in-flight and queue.
    pub resend: Vec<Send>,
    /// Whether the client id's old session ended here: its subscriptions
    /// are to be removed.
    pub discarded: bool,
    /// Another client's kept session, ended to make room under
    /// `max_sessions`: its subscriptions are to be removed.
    pub evicted: Option<Arc<str>>,
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("{0} sessions are held (mqtt.max_sessions)")]
    Quota(usize),
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// DISCONNECT 0x00: no will.
    Normal,
    /// DISCONNECT 0x04, a protocol error, keep alive, or the network: the
    /// will goes out.
    WithWill,
}

/// What a disconnect resulted in.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Disconnected {
    /// Wills to publish now.
    pub wills: Vec<Arc<Message>>,
    /// The session ended: its subscriptions are to be removed.
    pub ended: bool,
    /// The DISCONNECT raised a session expiry of 0 (MQTT 5 §3.14.2.2.2): a
    /// protocol error, answered with DISCONNECT 0x82.
    pub protocol_error: bool,
}

#[derive(Debug)]
struct Session {
    outbox: Outbox,
    expiry: Expiry,
    connection: Option<ConnectionId>,
    will: Option<Will>,
    /// Set while disconnected: when the session ends.
    ends_at: Option<Instant>,
    /// A will waiting for its delay (or for the session's end).
    pending_will: Option<(Instant, Arc<Message>)>,
    /// QoS 2 packet ids from the client whose PUBREC went out, until their
    /// PUBREL: session state (MQTT 5 §4.3.3), so that a PUBLISH sent again
    /// after a reconnect is not stored a second time.
    incoming_qos2: HashSet<u16>,
}

/// The session table; see the module docs.
#[derive(Debug)]
pub struct Sessions {
    sessions: HashMap<Arc<str>, Session>,
    limits: Limits,
    budget: QueueBudget,
    max_sessions: usize,
    next_connection: u64,
}

/// What [`Sessions::tick`] found due.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Sessions that ended: their subscriptions are to be removed.
    pub ended: Vec<Arc<str>>,
    /// Wills whose delay ran out (or whose session ended).
    pub wills: Vec<Arc<Message>>,
}

impl Sessions {
    pub fn new(limits: Limits, max_sessions: usize) -> Self {
        Self::with_budget(limits, max_sessions, QueueBudget::new(usize::MAX))
    }

    /// A session table whose outboxes' queues share `budget`.
    pub fn with_budget(limits: Limits, max_sessions: usize, budget: QueueBudget) -> Self {
        Sessions {
            sessions: HashMap::new(),
            limits,
            budget,
            max_sessions,
            next_connection: 1,
        }
    }

    /// A CONNECT for `c.client`.
    pub fn connect(&mut self, c: Connect, now: Instant) -> Result<Connected, ConnectError> {
        let mut wills = Vec::new();
        let mut taken_over = None;
        // Whether the old session, if any, ends here.
        let mut discarded = false;
        if let Some(old) = self.sessions.get_mut(&c.client) {
            taken_over = old.connection.take();
            let expired = old.ends_at.is_some_and(|end| end <= now);
            let ends = c.clean_start || old.expiry.is_zero() || expired;
            if let Some((at, will)) = old.pending_will.take()
                && at <= now
            {
                // Due already (the tick has not run yet): it went out.
                wills.push(will);
            }
            if let Some(w) = old.will.take()
                && taken_over.is_some()
                && ends
            {
                wills.push(w.published(now));
            }
            discarded = ends;
        }
        if discarded {
            self.sessions.remove(&c.client);
        }
        let mut evicted = None;
        if !self.sessions.contains_key(&c.client) && self.sessions.len() >= self.max_sessions {
            // A kept session of a client that is away makes room: the one
            // that would end first (sessions that never end last). Only
            // when every session is connected is the CONNECT refused, so
            // clients cycling through ids cannot lock others out.
            let victim = self
                .sessions
                .iter()
                .filter(|(_, s)| s.connection.is_none())
                .min_by_key(|(_, s)| (s.ends_at.is_none(), s.ends_at))
                .map(|(client, _)| client.clone());
            let Some(victim) = victim else {
                return Err(ConnectError::Quota(self.sessions.len()));
            };
            if let Some(old) = self.sessions.remove(&victim)
                && let Some((_, will)) = old.pending_will
            {
                // Its session ends here: a will waiting for its delay goes.
                wills.push(will);
            }
            evicted = Some(victim);
        }
        let connection = ConnectionId(self.next_connection);
        self.next_connection += 1;
        let mut resend = Vec::new();
        let session_present = match self.sessions.get_mut(&c.client) {
            Some(s) => {
                s.connection = Some(connection);
                s.expiry = c.expiry;
                s.will = c.will.clone();
                s.ends_at = None;
                resend = s.outbox.resume(c.receive_maximum, now);
                true
            }
            None => {
                self.sessions.insert(
                    c.client.clone(),
                    Session {
                        outbox: Outbox::with_budget(
                            self.limits,
                            c.receive_maximum,
                            self.budget.clone(),
                        ),
                        expiry: c.expiry,
                        connection: Some(connection),
                        will: c.will,
                        ends_at: None,
                        pending_will: None,
                        incoming_qos2: HashSet::new(),
                    },
                );
                false
            }
        };
        Ok(Connected {
            connection,
            session_present,
            taken_over,
            wills,
            resend,
            discarded,
            evicted,
        })
    }

    /// `connection` of `client` ended. `expiry` is the MQTT 5 DISCONNECT's
    /// Session Expiry Interval, if it carried one.
    pub fn disconnect(
        &mut self,
        client: &str,
        connection: ConnectionId,
        how: Ended,
        expiry: Option<Expiry>,
        now: Instant,
    ) -> Disconnected {
        let mut out = Disconnected::default();
        let Some(s) = self.sessions.get_mut(client) else {
            return out;
        };
        if s.connection != Some(connection) {
            // Taken over already: the newer connection owns the session.
            return out;
        }
        s.connection = None;
        s.outbox.offline();
        let mut how = how;
        match expiry {
            Some(e) if s.expiry.is_zero() && !e.is_zero() => {
                out.protocol_error = true;
                how = Ended::WithWill;
            }
            Some(e) => s.expiry = e,
            None => {}
        }
        let ends_at = s.expiry.end(now);
        if let Some(w) = s.will.take().filter(|_| how == Ended::WithWill) {
            let at = now.checked_add(w.delay);
            let due = match (at, ends_at) {
                (Some(a), Some(e)) => Some(a.min(e)),
                (a, e) => a.or(e),
            };
            match due {
                Some(t) if t > now => s.pending_will = Some((t, w.published(t))),
                // No delay, the session ends now, or an instant past
                // `Instant`'s range (never): published now.
                _ => out.wills.push(w.published(now)),
            }
        }
        if ends_at.is_some_and(|end| end <= now) {
            if let Some((_, w)) = s.pending_will.take() {
                out.wills.push(w);
            }
            self.sessions.remove(client);
            out.ended = true;
            return out;
        }
        s.ends_at = ends_at;
        out
    }

    /// Ends the sessions whose expiry passed and releases wills whose delay
    /// ran out. Call it every second or so.
    pub fn tick(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        self.sessions.retain(|client, s| {
            let ending = s.ends_at.is_some_and(|end| end <= now);
            if let Some((at, _)) = &s.pending_will
                && (*at <= now || ending)
                && let Some((_, w)) = s.pending_will.take()
            {
                due.wills.push(w);
            }
            if ending {
                due.ended.push(client.clone());
            }
            !ending
        });
        due
    }

    /// The outbox of `client`'s session, for deliveries to it, connected
    /// or not.
    pub fn outbox(&mut self, client: &str) -> Option<&mut Outbox> {
        self.sessions.get_mut(client).map(|s| &mut s.outbox)
    }

    /// The outbox of `client`'s session if `connection` serves it (acks and
    /// writes of that connection).
    pub fn outbox_of(&mut self, client: &str, connection: ConnectionId) -> Option<&mut Outbox> {
        self.sessions
            .get_mut(client)
            .filter(|s| s.connection == Some(connection))
            .map(|s| &mut s.outbox)
    }

    /// The QoS 2 packet ids `client` sent whose PUBREL is awaited, if
    /// `connection` serves it.
    pub fn incoming_qos2(
        &mut self,
        client: &str,
        connection: ConnectionId,
    ) -> Option<&mut HashSet<u16>> {
        self.sessions
            .get_mut(client)
            .filter(|s| s.connection == Some(connection))
            .map(|s| &mut s.incoming_qos2)
    }

    /// The connection serving `client`, if it is connected.
    pub fn connection(&self, client: &str) -> Option<ConnectionId> {
        self.sessions.get(client).and_then(|s| s.connection)
    }

    /// Sessions held, connected or not.
    /// The queues' shared budget.
    pub fn budget(&self) -> &QueueBudget {
        &self.budget
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}
