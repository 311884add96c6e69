//! The session table: which client ids have a session, which connection
//! serves each, when a session ends, and the wills (MQTT 5 §3.1.2.4,
//! §3.1.2.5, §3.1.3.2, §3.1.4, §4.1; MQTT 3.1.1 §3.1.2.4).
//!
//! - **Clean start** discards the session the client id had; otherwise the
//!   session is resumed and CONNACK says so (`session_present`).
//! - **Session expiry**: MQTT 5's interval from CONNECT (or DISCONNECT); a
//!   3.1.1 client with clean session 0 keeps its session until it connects
//!   clean (Mosquitto's `persistent_client_expiration` unset). A session
//!   with expiry 0 ends with its connection.
//! - **Takeover**: a CONNECT for a client id that is connected closes the
//!   older connection (MQTT 5: DISCONNECT 0x8E); the older connection's
//!   will is published, as for any connection that ends without a normal
//!   DISCONNECT.
//! - **Wills** go out when a connection ends without DISCONNECT 0x00, or
//!   with 0x04 "disconnect with will message", after the will delay
//!   (MQTT 5) or when the session ends, whichever is first; a client that
//!   reconnects to its session within the delay cancels it.
//! - At most `max_sessions` sessions, connected or not: a CONNECT that
//!   would make one more is refused (MQTT 5 0x97 "quota exceeded", 3.1.1
//!   0x03 "server unavailable").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{Limits, Message, Outbox, Send};

/// A connection's identity, given by [`Sessions::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// How long a session outlives its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// MQTT 5 Session Expiry Interval, seconds (0: ends with the connection).
    After(Duration),
    /// MQTT 3.1.1 clean session 0, or MQTT 5's 0xFFFFFFFF.
    Never,
}

/// A will: the message and its MQTT 5 delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub message: Arc<Message>,
    pub delay: Duration,
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
    /// Wills to publish now (the older connection's).
    pub wills: Vec<Arc<Message>>,
    /// What to write first: the resumed session's in-flight and queue.
    pub resend: Vec<Send>,
    /// Whether the client id's old session was discarded (clean start):
    /// its subscriptions are to be removed.
    pub discarded: bool,
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

#[derive(Debug)]
struct Session {
    outbox: Outbox,
    expiry: Expiry,
    connection: Option<ConnectionId>,
    will: Option<Will>,
    /// Set while disconnected: when the session ends.
    ends_at: Option<Instant>,
    /// A will waiting for its delay.
    pending_will: Option<(Instant, Arc<Message>)>,
}

/// The session table; see the module docs.
#[derive(Debug)]
pub struct Sessions {
    sessions: HashMap<Arc<str>, Session>,
    limits: Limits,
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
        Sessions {
            sessions: HashMap::new(),
            limits,
            max_sessions,
            next_connection: 1,
        }
    }

    /// A CONNECT for `c.client`.
    pub fn connect(&mut self, c: Connect, now: Instant) -> Result<Connected, ConnectError> {
        let existing = self.sessions.contains_key(&c.client);
        if !existing && self.sessions.len() >= self.max_sessions {
            return Err(ConnectError::Quota(self.sessions.len()));
        }
        let connection = ConnectionId(self.next_connection);
        self.next_connection += 1;
        let mut wills = Vec::new();
        let mut taken_over = None;
        if let Some(old) = self.sessions.get_mut(&c.client) {
            taken_over = old.connection.take();
            if taken_over.is_some()
                && let Some(w) = old.will.take()
            {
                wills.push(w.message);
            }
            // A reconnect within the will delay cancels the will (§3.1.3.2.2).
            old.pending_will = None;
        }
        let discarded = existing && c.clean_start;
        if discarded {
            self.sessions.remove(&c.client);
        }
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
                        outbox: Outbox::new(self.limits, c.receive_maximum),
                        expiry: c.expiry,
                        connection: Some(connection),
                        will: c.will,
                        ends_at: None,
                        pending_will: None,
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
        })
    }

    /// `connection` of `client` ended. `expiry` is the MQTT 5 DISCONNECT's
    /// new Session Expiry Interval, if it carried one. Returns wills to
    /// publish now and whether the session ended (its subscriptions are to
    /// be removed).
    pub fn disconnect(
        &mut self,
        client: &str,
        connection: ConnectionId,
        how: Ended,
        expiry: Option<Expiry>,
        now: Instant,
    ) -> (Vec<Arc<Message>>, bool) {
        let Some(s) = self.sessions.get_mut(client) else {
            return (Vec::new(), false);
        };
        if s.connection != Some(connection) {
            // Taken over already: the newer connection owns the session.
            return (Vec::new(), false);
        }
        s.connection = None;
        s.outbox.offline();
        if let Some(e) = expiry {
            s.expiry = e;
        }
        let will = s.will.take().filter(|_| how == Ended::WithWill);
        let ends_at = match s.expiry {
            Expiry::Never => None,
            Expiry::After(d) => Some(now + d),
        };
        let mut wills = Vec::new();
        if let Some(w) = will {
            let at = now + w.delay;
            if w.delay.is_zero() || ends_at.is_some_and(|end| end <= at) {
                wills.push(w.message);
            } else {
                s.pending_will = Some((at, w.message));
            }
        }
        if ends_at.is_some_and(|end| end <= now) {
            self.sessions.remove(client);
            return (wills, true);
        }
        s.ends_at = ends_at;
        (wills, false)
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

    /// The outbox of `client`'s session.
    pub fn outbox(&mut self, client: &str) -> Option<&mut Outbox> {
        self.sessions.get_mut(client).map(|s| &mut s.outbox)
    }

    /// The connection serving `client`, if it is connected.
    pub fn connection(&self, client: &str) -> Option<ConnectionId> {
        self.sessions.get(client).and_then(|s| s.connection)
    }

    /// Sessions held, connected or not.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}
