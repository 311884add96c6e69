//! The router: the [`IngestSink`] that sources hand messages to.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::ingest::{Accepted, Durability, Incoming, IngestSink, Message, RejectReason, Source};
use crate::metrics as m;
pub use crate::store::DeadLetter;

use super::config::RouteConfig;
use super::decode::{Decoded, decode};
use super::ratelimit::RateLimitedLog;

/// Where the router puts readings: the SQLite buffer in the agent, an
/// in-memory recorder in tests.
///
/// Each write is queued first (the future waits while the buffer's queue
/// is full) and resolves with a [`Buffer::Committing`] that settles once
/// the write is stored as promised: for [`Durability::Durable`], committed.
pub trait Buffer: Clone + Send + Sync + 'static {
    /// A queued write, until it is stored (`Ok`) or refused.
    type Committing: Future<Output = Result<(), RejectReason>> + Send + Unpin + 'static;

    /// Queues readings.
    fn append(
        &self,
        readings: Vec<Incoming>,
        durability: Durability,
    ) -> impl Future<Output = Result<Self::Committing, RejectReason>> + Send;

    /// Queues an undecodable message for the capped dead-letter table.
    fn dead_letter(
        &self,
        letter: DeadLetter,
    ) -> impl Future<Output = Result<Self::Committing, RejectReason>> + Send;
}

struct RouteState {
    config: RouteConfig,
    label: String,
    /// `ferry_agent_route_readings_total` for this route.
    readings: metrics::Counter,
    log: RateLimitedLog,
}

/// A routed message until its write settles: what
/// [`IngestSink::submit`] hands back for the [`Router`].
#[derive(Debug)]
pub enum Routed<C> {
    /// Settled already (unrouted, refused, or nothing left to wait for).
    Done(Option<Accepted>),
    /// Waiting for the buffer; on success, `readings` is counted.
    Committing {
        commit: C,
        readings: Option<(metrics::Counter, u64)>,
    },
}

impl<C: Future<Output = Result<(), RejectReason>> + Unpin> Future for Routed<C> {
    type Output = Accepted;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Accepted> {
        match &mut *self {
            // Polled again after it settled: nothing more is known.
            Routed::Done(done) => Poll::Ready(
                done.take()
                    .unwrap_or(Accepted::Rejected(RejectReason::ShuttingDown)),
            ),
            Routed::Committing { commit, readings } => {
                let result = std::task::ready!(Pin::new(commit).poll(cx));
                let accepted = match result {
                    Ok(()) => {
                        if let Some((counter, n)) = readings.take() {
                            counter.increment(n);
                        }
                        Accepted::Stored
                    }
                    Err(reason) => Accepted::Rejected(reason),
                };
                *self = Routed::Done(None);
                Poll::Ready(accepted)
            }
        }
    }
}

/// Matches topics to routes, decodes payloads and appends the readings.
pub struct Router<B> {
    routes: Arc<[RouteState]>,
    buffer: B,
    clock: fn() -> i64,
}

impl<B> std::fmt::Debug for Router<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<&str> = self.routes.iter().map(|r| r.label.as_str()).collect();
        f.debug_struct("Router").field("routes", &labels).finish()
    }
}

impl<B: Clone> Clone for Router<B> {
    fn clone(&self) -> Self {
        Router {
            routes: self.routes.clone(),
            buffer: self.buffer.clone(),
            clock: self.clock,
        }
    }
}

/// Nanoseconds since the Unix epoch on the system clock.
pub fn system_now_ns() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_nanos()).unwrap_or(i64::MAX)
}

impl<B: Buffer> Router<B> {
    pub fn new(routes: Vec<RouteConfig>, buffer: B) -> Self {
        Self::with_clock(routes, buffer, system_now_ns)
    }

    /// A router with an injected clock (for readings without a timestamp).
    pub fn with_clock(routes: Vec<RouteConfig>, buffer: B, clock: fn() -> i64) -> Self {
        let routes = routes
            .into_iter()
            .enumerate()
            .map(|(i, config)| {
                let label = format!("{i}:{}", config.topic);
                RouteState {
                    readings: metrics::counter!(m::ROUTE_READINGS_TOTAL, "route" => label.clone()),
                    label,
                    config,
                    log: RateLimitedLog::new(Duration::from_secs(60)),
                }
            })
            .collect();
        Router {
            routes,
            buffer,
            clock,
        }
    }

    /// The MQTT filters the routes need, for upstream subscriptions.
    pub fn filters(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|r| r.config.topic.filter())
            .collect()
    }

    async fn route(&self, message: Message) -> Routed<B::Committing> {
        let now = (self.clock)();
        let durability = message.qos.durability();
        for route in self.routes.iter() {
            let captured = match route.config.topic.matches(&message.topic) {
                Ok(None) => continue,
                Ok(Some(captured)) => captured,
                Err(e) => {
                    let decoded = Decoded {
                        readings: Vec::new(),
                        failure: Some(super::DecodeFailure {
                            rejected: 0,
                            message: e.to_string(),
                        }),
                    };
                    return self.store(route, &message, decoded, durability).await;
                }
            };
            let decoded = decode(&route.config, &captured, &message.payload, now);
            return self.store(route, &message, decoded, durability).await;
        }
        metrics::counter!(m::ROUTE_UNROUTED_TOTAL).increment(1);
        Routed::Done(Some(Accepted::Unrouted))
    }

    async fn store(
        &self,
        route: &RouteState,
        message: &Message,
        decoded: Decoded,
        durability: Durability,
    ) -> Routed<B::Committing> {
        let database = &route.config.database;
        let count = decoded.readings.len() as u64;
        let mut readings = None;
        if count > 0 {
            let incoming = decoded
                .readings
                .into_iter()
                .map(|reading| Incoming {
                    database: database.clone(),
                    reading,
                })
                .collect();
            match self.buffer.append(incoming, durability).await {
                Ok(commit) => readings = Some(commit),
                Err(reason) => return Routed::Done(Some(Accepted::Rejected(reason))),
            }
        }
        let Some(failure) = decoded.failure else {
            return match readings {
                Some(commit) => Routed::Committing {
                    commit,
                    readings: Some((route.readings.clone(), count)),
                },
                None => Routed::Done(Some(Accepted::Stored)),
            };
        };
        // Some lines decoded, some did not (rare): the readings are stored
        // before the dead letter is queued, as one outcome.
        if let Some(commit) = readings {
            if let Err(reason) = commit.await {
                return Routed::Done(Some(Accepted::Rejected(reason)));
            }
            route.readings.increment(count);
        }
        metrics::counter!(m::ROUTE_DECODE_ERRORS_TOTAL, "route" => route.label.clone())
            .increment(1);
        if let Some(suppressed) = route.log.check(Instant::now()) {
            tracing::warn!(
                route = %route.label,
                topic = %message.topic,
                error = %failure.message,
                suppressed,
                "payload rejected; kept as a dead letter"
            );
        }
        let source = match &message.source {
            Source::Broker { client_id } => format!("broker:{client_id}"),
            Source::Upstream { name } => format!("upstream:{name}"),
        };
        let letter = DeadLetter {
            topic: message.topic.clone(),
            source,
            error: failure.message,
            payload: message.payload.clone(),
        };
        match self.buffer.dead_letter(letter).await {
            Ok(commit) => Routed::Committing {
                commit,
                readings: None,
            },
            Err(reason) => Routed::Done(Some(Accepted::Rejected(reason))),
        }
    }
}

impl<B: Buffer> IngestSink for Router<B> {
    type Outcome = Routed<B::Committing>;

    fn submit(&self, message: Message) -> impl Future<Output = Self::Outcome> + Send {
        self.route(message)
    }
}
