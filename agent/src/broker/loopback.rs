//! The gate's connection to the embedded rumqttd for one client, opened so
//! that rumqttd is never left in a state that crashes it or drops the next
//! client (see [`client_ids`](super::client_ids) for the faults avoided):
//!
//! * the CONNECT carries the client's id mapped for rumqttd;
//! * the loopback connection is not closed before rumqttd's CONNACK has
//!   arrived, even if the client has gone;
//! * if rumqttd closes it without a CONNACK, the client id is retired and
//!   the connection tried once more under the id's next generation, so the
//!   client still gets in. (rumqttd 0.20 reuses a connection's slot number
//!   at once, and a late "disconnected" event for the slot's previous owner
//!   can end the new connection before its CONNACK: that is how a paho MQTT
//!   5 client lost its connection mid-burst in the field report.)

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::client_ids::UpstreamIds;
use super::codec::{self, CodecError, ConnectInfo, Frame, FrameReader};

/// An open loopback connection whose CONNACK has arrived.
pub(crate) struct Loopback {
    pub(crate) reader: FrameReader<OwnedReadHalf>,
    pub(crate) writer: OwnedWriteHalf,
    pub(crate) connack: Frame,
}

/// Why no loopback connection could be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("embedded broker unreachable: {0}")]
    Unreachable(std::io::Error),
    #[error("client id cannot be mapped: {0}")]
    ClientId(CodecError),
    #[error("embedded broker did not accept the connection: {0}")]
    NoConnack(String),
}

/// Opens the loopback connection for a client whose CONNECT is `connect`.
pub(crate) async fn open(
    upstream: SocketAddr,
    connect: &Frame,
    info: &ConnectInfo,
    ids: &UpstreamIds,
    connack_timeout: Duration,
) -> Result<Loopback, OpenError> {
    let mut last = String::new();
    for attempt in 0..2 {
        let stream = TcpStream::connect(upstream)
            .await
            .map_err(OpenError::Unreachable)?;
        let _ = stream.set_nodelay(true);
        let (reader, mut writer) = stream.into_split();
        let mut reader = FrameReader::new(reader, usize::MAX);
        let upstream_id = ids.upstream(&info.client_id);
        let bytes = if upstream_id == info.client_id {
            connect.bytes.clone()
        } else {
            codec::with_client_id(connect, &info.client_id_at, &upstream_id)
                .map_err(OpenError::ClientId)?
        };
        if let Err(e) = writer.write_all(&bytes).await {
            last = e.to_string();
        } else {
            match tokio::time::timeout(connack_timeout, reader.next()).await {
                Ok(Ok(Some(frame))) if frame.packet_type() == codec::CONNACK => {
                    return Ok(Loopback {
                        reader,
                        writer,
                        connack: frame,
                    });
                }
                Ok(Ok(Some(frame))) => {
                    last = format!("packet type {} instead of CONNACK", frame.packet_type());
                }
                Ok(Ok(None)) => last = "closed without CONNACK".to_owned(),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no CONNACK within {connack_timeout:?}"),
            }
        }
        ids.retire(&info.client_id);
        tracing::debug!(client_id = %info.client_id, attempt, why = %last, "embedded broker refused a connection; client id retired");
        metrics::counter!(super::metrics::CLIENT_IDS_RETIRED).increment(1);
    }
    Err(OpenError::NoConnack(last))
}
