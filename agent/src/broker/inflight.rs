//! A PUBLISH in flight between a connection and the store: the room it
//! holds under `mqtt.max_inflight` and `mqtt.max_inflight_bytes`
//! ([`Held`], from `Shared::reserve` in `gate.rs`) and its commit's outcome
//! ([`InFlight`], from `Shared::submit`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::OwnedSemaphorePermit;

use crate::ingest::Accepted;

/// A message the sink has taken, until its commit settles: it holds the
/// connection's permit and the message's bytes under
/// `mqtt.max_inflight_bytes`, and gives both back as soon as the outcome
/// is known (or when dropped).
pub(super) struct InFlight<O> {
    pub(super) outcome: O,
    pub(super) held: Option<Held>,
    /// The outcome, once known (it may be polled again).
    pub(super) result: Option<Accepted>,
}

/// Room for one PUBLISH in flight; see `Shared::reserve` in `gate.rs`.
pub(super) struct Held {
    pub(super) _permit: OwnedSemaphorePermit,
    pub(super) _budget: OwnedSemaphorePermit,
    pub(super) bytes: u32,
    /// `ferry_broker_inflight_bytes`, given `bytes` back on drop.
    pub(super) gauge: metrics::Gauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.decrement(f64::from(self.bytes));
    }
}

impl<O: Future<Output = Accepted> + Unpin> Future for InFlight<O> {
    type Output = Accepted;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Accepted> {
        if let Some(result) = &self.result {
            return Poll::Ready(result.clone());
        }
        let accepted = std::task::ready!(Pin::new(&mut self.outcome).poll(cx));
        self.held = None;
        self.result = Some(accepted.clone());
        Poll::Ready(accepted)
    }
}
