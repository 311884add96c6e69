//! A transport wrapper that counts the bytes a Modbus client receives.
//!
//! tokio-modbus resynchronises on a corrupt RTU frame by dropping bytes and
//! waiting for more, so a garbled response looks like a timeout from the
//! outside. Counting what arrived during the exchange tells the two apart:
//! silence is a timeout; bytes that never made a valid frame are a CRC or
//! framing error.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes received so far; cheap to clone and read.
#[derive(Debug, Clone, Default)]
pub struct RxCounter(Arc<AtomicU64>);

impl RxCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// `T` with its received bytes counted.
#[derive(Debug)]
pub struct Tap<T> {
    inner: T,
    rx: RxCounter,
}

impl<T> Tap<T> {
    pub fn new(inner: T) -> (Self, RxCounter) {
        let rx = RxCounter::default();
        (
            Tap {
                inner,
                rx: rx.clone(),
            },
            rx,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tap<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.rx.0.fetch_add(n as u64, Ordering::Relaxed);
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tap<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
