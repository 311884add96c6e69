//! The engine shared by every connection (`mqtt.engine = "ferry"`): one
//! [`Engine`] behind one mutex, the connections registered by client id
//! (whom to wake, whom to close on a takeover), the one-second tick, and the
//! engine's gauges and counters.
//!
//! Every call holds the lock briefly and never across an `.await`; what a
//! call woke is notified before the lock is released, so a write never
//! waits on another connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::MqttConfig;
use super::engine::broker::{Ack, Engine, EngineLimits, Woken};
use super::engine::retained::RetainError;
use super::engine::session::{Limits, Message, Send};
use super::engine::sessions::{Connect, ConnectError, Connected, ConnectionId, Ended, Expiry};
use super::engine::subscriptions::{SubOptions, SubscribeError};
use super::engine::topic::Filter;
use super::metrics as m;

/// A connection as the registry knows it.
#[derive(Debug)]
struct Registered {
    connection: ConnectionId,
    /// Something was queued for it: call [`EngineState::ready`].
    notify: Arc<Notify>,
    /// Its client id was taken over by a newer connection: close (0x8E).
    kick: CancellationToken,
}

#[derive(Debug)]
struct Inner {
    engine: Engine,
    conns: HashMap<Arc<str>, Registered>,
}

impl Inner {
    fn wake(&self, woken: &Woken) {
        for client in woken {
            if let Some(r) = self.conns.get(client) {
                r.notify.notify_one();
            }
        }
    }
}

/// What a registered connection waits on.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) connected: Connected,
    pub(crate) notify: Arc<Notify>,
    pub(crate) kick: CancellationToken,
}

/// The shared engine; see the module docs.
#[derive(Debug)]
pub(crate) struct EngineState {
    inner: Mutex<Inner>,
    /// The budget's drop and expiry totals already counted in metrics.
    counted_dropped: AtomicU64,
    counted_expired: AtomicU64,
}

/// The engine's bounds from `[mqtt]`.
pub(crate) fn limits(config: &MqttConfig) -> EngineLimits {
    let bytes = |b: bytesize::ByteSize| usize::try_from(b.as_u64()).unwrap_or(usize::MAX);
    EngineLimits {
        queue: Limits {
            max_queued: config.max_queued_messages,
            max_queued_bytes: bytes(config.max_queued_bytes),
            max_inflight: u16::try_from(config.max_inflight).unwrap_or(u16::MAX),
        },
        max_queued_total_bytes: bytes(config.max_queued_total_bytes),
        max_sessions: config.max_sessions,
        max_subscriptions_per_client: config.max_subscriptions_per_client,
        max_retained_messages: config.max_retained_messages,
        max_retained_bytes: bytes(config.max_retained_bytes),
    }
}

impl EngineState {
    pub(crate) fn new(limits: EngineLimits) -> Self {
        EngineState {
            inner: Mutex::new(Inner {
                engine: Engine::new(limits),
                conns: HashMap::new(),
            }),
            counted_dropped: AtomicU64::new(0),
            counted_expired: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A CONNECT: the session, and the connection registered under its
    /// client id (an older connection of that id is told to close).
    pub(crate) fn connect(&self, c: Connect, now: Instant) -> Result<Registration, ConnectError> {
        let client = c.client.clone();
        let mut inner = self.lock();
        let (connected, woken) = inner.engine.connect(c, now)?;
        if let Some(evicted) = &connected.evicted {
            counter!(m::SESSIONS_EVICTED).increment(1);
            tracing::info!(client_id = %evicted, "kept session ended to make room (mqtt.max_sessions)");
        }
        let notify = Arc::new(Notify::new());
        let kick = CancellationToken::new();
        let old = inner.conns.insert(
            client,
            Registered {
                connection: connected.connection,
                notify: notify.clone(),
                kick: kick.clone(),
            },
        );
        if let Some(old) = old {
            old.kick.cancel();
        }
        inner.wake(&woken);
        Ok(Registration {
            connected,
            notify,
            kick,
        })
    }

    /// The connection ended (`how`, with a DISCONNECT's new session expiry);
    /// whether that DISCONNECT was a protocol error (MQTT 5 §3.14.2.2.2).
    pub(crate) fn disconnect(
        &self,
        client: &Arc<str>,
        connection: ConnectionId,
        how: Ended,
        expiry: Option<Expiry>,
    ) -> bool {
        let mut inner = self.lock();
        if inner
            .conns
            .get(client)
            .is_some_and(|r| r.connection == connection)
        {
            inner.conns.remove(client);
        }
        let (out, woken) = inner
            .engine
            .disconnect(client, connection, how, expiry, Instant::now());
        inner.wake(&woken);
        out.protocol_error
    }

    /// A PUBLISH whose commit resolved (or a QoS 0 one).
    pub(crate) fn publish(&self, message: Arc<Message>) -> Result<(), RetainError> {
        let mut inner = self.lock();
        let woken = inner.engine.publish(message)?;
        inner.wake(&woken);
        Ok(())
    }

    pub(crate) fn subscribe(
        &self,
        client: &Arc<str>,
        connection: ConnectionId,
        filter: &Filter,
        opts: SubOptions,
    ) -> Result<(), SubscribeError> {
        let mut inner = self.lock();
        let woken = inner
            .engine
            .subscribe(client, connection, filter, opts, Instant::now())?;
        inner.wake(&woken);
        Ok(())
    }

    pub(crate) fn unsubscribe(
        &self,
        client: &str,
        connection: ConnectionId,
        filter: &Filter,
    ) -> bool {
        self.lock().engine.unsubscribe(client, connection, filter)
    }

    /// What the connection may write now.
    pub(crate) fn ready(&self, client: &str, connection: ConnectionId) -> Vec<Send> {
        self.lock().engine.ready(client, connection, Instant::now())
    }

    /// Acknowledgements of deliveries to the client (or completions of ones
    /// it cannot take); for each, whether it matched.
    pub(crate) fn ack(
        &self,
        client: &str,
        connection: ConnectionId,
        acks: &[(Ack, u16)],
    ) -> Vec<bool> {
        let mut inner = self.lock();
        acks.iter()
            .map(|(ack, id)| inner.engine.ack(client, connection, *ack, *id))
            .collect()
    }

    /// Runs `f` on the session's QoS 2 packet ids awaiting PUBREL (`None`:
    /// the connection no longer has the session).
    pub(crate) fn incoming_qos2<T>(
        &self,
        client: &str,
        connection: ConnectionId,
        f: impl FnOnce(&mut std::collections::HashSet<u16>) -> T,
    ) -> Option<T> {
        self.lock()
            .engine
            .sessions
            .incoming_qos2(client, connection)
            .map(f)
    }

    /// Expired sessions and wills; updates the gauges and counters.
    pub(crate) fn tick(&self, now: Instant) {
        let mut inner = self.lock();
        let woken = inner.engine.tick(now);
        inner.wake(&woken);
        let e = &inner.engine;
        gauge!(m::SESSIONS).set(e.sessions.len() as f64);
        gauge!(m::SUBSCRIPTIONS).set(e.subscriptions.len() as f64);
        gauge!(m::RETAINED_MESSAGES).set(e.retained.len() as f64);
        gauge!(m::RETAINED_BYTES).set(e.retained.bytes() as f64);
        gauge!(m::QUEUED_BYTES).set(e.queued_bytes() as f64);
        let budget = e.sessions.budget();
        let (dropped, expired) = (budget.dropped(), budget.expired());
        drop(inner);
        let before = self.counted_dropped.swap(dropped, Ordering::Relaxed);
        counter!(m::DELIVERIES_DROPPED).increment(dropped.saturating_sub(before));
        let before = self.counted_expired.swap(expired, Ordering::Relaxed);
        counter!(m::DELIVERIES_EXPIRED).increment(expired.saturating_sub(before));
    }

    /// Ticks every second until `shutdown`.
    pub(crate) async fn run_ticks(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => self.tick(Instant::now()),
            }
        }
    }
}
