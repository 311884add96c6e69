//! The connections Flight SQL serves: plain TCP or TLS streams, each
//! holding one of `flight.max_connections` slots until it closes, and
//! carrying the client's address for the calls on it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics as m;
use crate::server::PeerAddr;
use crate::server::tls::TlsListener;

/// `flight.max_connections`.
#[derive(Debug, Clone)]
pub(super) struct Slots(Arc<Semaphore>);

impl Slots {
    pub(super) fn new(n: usize) -> Self {
        Slots(Arc::new(Semaphore::new(n)))
    }

    async fn take(&self) -> Option<Slot> {
        let permit = self.0.clone().acquire_owned().await.ok()?;
        metrics::gauge!(m::FLIGHT_CONNECTIONS).increment(1.0);
        Some(Slot(permit))
    }
}

/// A connection's slot, given back when the connection is dropped.
#[derive(Debug)]
struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(m::FLIGHT_CONNECTIONS).decrement(1.0);
    }
}

/// One accepted connection.
#[derive(Debug)]
pub(super) struct Conn<S> {
    io: S,
    peer: SocketAddr,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<S: Send + 'static> tonic::transport::server::Connected for Conn<S> {
    type ConnectInfo = PeerAddr;

    fn connect_info(&self) -> PeerAddr {
        PeerAddr(self.peer)
    }
}

/// Plain TCP connections, each once a slot is free.
pub(super) fn plain(
    tcp: TcpListener,
    slots: Slots,
) -> impl Stream<Item = io::Result<Conn<TcpStream>>> + Send + 'static {
    futures_util::stream::unfold((tcp, slots), |(tcp, slots)| async move {
        let slot = slots.take().await?;
        loop {
            match tcp.accept().await {
                Ok((io, peer)) => {
                    let _ = io.set_nodelay(true);
                    let conn = Conn {
                        io,
                        peer,
                        _slot: slot,
                    };
                    return Some((Ok(conn), (tcp, slots)));
                }
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "flight sql accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// TLS connections whose handshake completed ([`crate::server::tls`]),
/// each once a slot is free.
pub(super) fn tls(
    listener: TlsListener,
    slots: Slots,
) -> impl Stream<Item = io::Result<Conn<tokio_rustls::server::TlsStream<TcpStream>>>> + Send + 'static
{
    futures_util::stream::unfold((listener, slots), |(mut listener, slots)| async move {
        let slot = slots.take().await?;
        let (io, peer) = listener.next().await?;
        let conn = Conn {
            io,
            peer,
            _slot: slot,
        };
        Some((Ok(conn), (listener, slots)))
    })
}
