//! One query's share of the hub's memory pool, measured.
//!
//! Every query session gets a [`QueryMemory`] in front of the shared
//! `FairSpillPool` (see [`super::executor`]): each reservation is passed
//! through unchanged (so the fair sharing and spilling are the shared
//! pool's) and counted, so that the query's peak reservation is known
//! (`peak_memory_bytes` in the query history).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deltalake::datafusion::error::Result as DfResult;
use deltalake::datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// A counting front of the shared pool, for one query.
#[derive(Debug)]
pub struct QueryMemory {
    inner: Arc<dyn MemoryPool>,
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl QueryMemory {
    pub fn new(inner: Arc<dyn MemoryPool>) -> Self {
        QueryMemory {
            inner,
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// The most this query held at once, in bytes.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn add(&self, bytes: usize) {
        let now = self.now.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
}

impl fmt::Display for QueryMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "one query's share of {}", self.inner)
    }
}

impl MemoryPool for QueryMemory {
    fn name(&self) -> &str {
        "ferry-query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.add(additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        let _ = self
            .now
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(shrink))
            });
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        self.inner.try_grow(reservation, additional)?;
        self.add(additional);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::datafusion::execution::memory_pool::FairSpillPool;

    #[test]
    fn counts_the_peak_and_keeps_the_shared_limit() {
        let shared: Arc<dyn MemoryPool> = Arc::new(FairSpillPool::new(1000));
        let q = Arc::new(QueryMemory::new(shared.clone()));
        let mine: Arc<dyn MemoryPool> = q.clone();
        let a = MemoryConsumer::new("a").register(&mine);
        a.try_grow(600).unwrap();
        a.shrink(500);
        a.try_grow(300).unwrap();
        assert_eq!(shared.reserved(), 400);
        // The shared pool's limit still holds.
        assert!(a.try_grow(700).is_err());
        drop(a);
        assert_eq!(shared.reserved(), 0);
        assert_eq!(q.peak(), 600);
    }
}
