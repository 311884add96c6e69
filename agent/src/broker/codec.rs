//! Just enough MQTT 3.1.1 / 5 to run the gate: framing (fixed header and
//! variable-length remaining length), CONNECT and PUBLISH decoding, and the
//! few packets the gate writes itself (CONNACK refusals, negative
//! PUBACK/PUBREC, DISCONNECT).
//!
//! Every function here takes untrusted bytes and returns an error instead of
//! panicking; the gate closes the connection on any [`CodecError`].

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const PINGREQ: u8 = 12;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;

/// Why bytes could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CodecError {
    #[error("malformed remaining length")]
    BadLength,
    #[error("packet of {size} bytes exceeds the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("truncated packet")]
    Truncated,
    #[error("invalid utf-8 in {0}")]
    Utf8(&'static str),
    #[error("expected CONNECT, got packet type {0}")]
    NotConnect(u8),
    #[error("unknown protocol name {0:?}")]
    ProtocolName(String),
    #[error("invalid QoS 3")]
    BadQos,
    #[error("unknown property id {0:#x}")]
    Property(u8),
    #[error("property {0:#x} is 0")]
    ZeroProperty(u8),
    #[error("topic alias {0} used before it was set")]
    UnknownAlias(u16),
    #[error("topic alias {0} is 0 or above the maximum of {max}", max = TopicAliases::MAX)]
    InvalidAlias(u16),
}

/// One complete MQTT control packet, as it was on the wire.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) bytes: Bytes,
    header_len: usize,
}

impl Frame {
    pub(crate) fn packet_type(&self) -> u8 {
        self.bytes.first().map_or(0, |b| b >> 4)
    }
    pub(crate) fn flags(&self) -> u8 {
        self.bytes.first().map_or(0, |b| b & 0x0F)
    }
    /// Variable header and payload.
    pub(crate) fn body(&self) -> Bytes {
        self.bytes.slice(self.header_len..)
    }
    /// The packet identifier of PUBACK/PUBREC/PUBREL/PUBCOMP.
    pub(crate) fn ack_pkid(&self) -> Result<u16, CodecError> {
        read_u16(&mut self.body())
    }
}

/// Outcome of looking for a frame in a buffer.
fn parse_header(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, CodecError> {
    let mut remaining: usize = 0;
    for i in 0..4 {
        let Some(byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let header_len = 2 + i;
            let size = header_len + remaining;
            if size > max {
                return Err(CodecError::TooLarge { size, max });
            }
            return Ok(Some((header_len, size)));
        }
    }
    Err(CodecError::BadLength)
}

/// Reads whole frames from a byte stream. `next` is cancel-safe: bytes read
/// so far stay in the buffer.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
}

/// A frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("connection closed mid-packet")]
    UnexpectedEof,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(4096),
            max,
        }
    }

    /// Reads and discards until end of stream (or an error). Used before
    /// closing a socket: closing with unread data makes the kernel send RST,
    /// and an RST can destroy the last packets the peer has not read yet.
    pub(crate) async fn discard_until_eof(&mut self) {
        loop {
            self.buf.clear();
            match self.inner.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// The next frame, or `None` on a clean end of stream.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some((header_len, size)) = parse_header(&self.buf, self.max)? {
                if self.buf.len() >= size {
                    let bytes = self.buf.split_to(size).freeze();
                    return Ok(Some(Frame { bytes, header_len }));
                }
                self.buf.reserve(size - self.buf.len());
            } else {
                self.buf.reserve(1024);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::UnexpectedEof)
                };
            }
        }
    }
}

fn read_u8(b: &mut Bytes) -> Result<u8, CodecError> {
    if b.remaining() < 1 {
        return Err(CodecError::Truncated);
    }
    Ok(b.get_u8())
}

fn read_u16(b: &mut Bytes) -> Result<u16, CodecError> {
    if b.remaining() < 2 {
        return Err(CodecError::Truncated);
    }
    Ok(b.get_u16())
}

fn take(b: &mut Bytes, n: usize) -> Result<Bytes, CodecError> {
    if b.remaining() < n {
        return Err(CodecError::Truncated);
    }
    Ok(b.split_to(n))
}

fn read_binary(b: &mut Bytes) -> Result<Bytes, CodecError> {
    let len = read_u16(b)?;
    take(b, usize::from(len))
}

fn read_string(b: &mut Bytes, what: &'static str) -> Result<String, CodecError> {
    let raw = read_binary(b)?;
    String::from_utf8(raw.to_vec()).map_err(|_| CodecError::Utf8(what))
}

fn read_varint(b: &mut Bytes) -> Result<usize, CodecError> {
    let mut value: usize = 0;
    for i in 0..4 {
        let byte = read_u8(b)?;
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(CodecError::BadLength)
}

/// Skips one MQTT 5 property, returning its id and, for the topic alias, its
/// value.
/// A property the gate acts on; the others are skipped.
enum Prop {
    TopicAlias(u16),
    MaxPacket(u32),
    ReceiveMax(u16),
    Other,
}

/// The properties of a block the gate acts on.
#[derive(Debug, Default)]
struct Props {
    topic_alias: Option<u16>,
    max_packet: Option<u32>,
    receive_max: Option<u16>,
}

fn skip_property(b: &mut Bytes) -> Result<Prop, CodecError> {
    let id = read_u8(b)?;
    match id {
        // byte
        0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
            read_u8(b)?;
        }
        0x21 => return Ok(Prop::ReceiveMax(read_u16(b)?)),
        // two-byte integer
        0x13 | 0x22 => {
            read_u16(b)?;
        }
        0x23 => return Ok(Prop::TopicAlias(read_u16(b)?)),
        0x27 => {
            let high = u32::from(read_u16(b)?);
            let low = u32::from(read_u16(b)?);
            return Ok(Prop::MaxPacket(high << 16 | low));
        }
        // four-byte integer
        0x02 | 0x11 | 0x18 => {
            take(b, 4)?;
        }
        // variable byte integer
        0x0B => {
            read_varint(b)?;
        }
        // string or binary data
        0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
            read_binary(b)?;
        }
        // string pair
        0x26 => {
            read_binary(b)?;
            read_binary(b)?;
        }
        other => return Err(CodecError::Property(other)),
    }
    Ok(Prop::Other)
}

/// Reads a property block.
fn read_properties(b: &mut Bytes) -> Result<Props, CodecError> {
    let len = read_varint(b)?;
    let mut block = take(b, len)?;
    let mut props = Props::default();
    while block.has_remaining() {
        match skip_property(&mut block)? {
            Prop::TopicAlias(a) => props.topic_alias = Some(a),
            Prop::MaxPacket(0) => return Err(CodecError::ZeroProperty(0x27)),
            Prop::MaxPacket(m) => props.max_packet = Some(m),
            Prop::ReceiveMax(0) => return Err(CodecError::ZeroProperty(0x21)),
            Prop::ReceiveMax(r) => props.receive_max = Some(r),
            Prop::Other => {}
        }
    }
    Ok(props)
}

/// The MQTT protocol a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolLevel {
    /// MQTT 3.1 (`MQIsdp`, level 3): rumqttd cannot speak it, so the gate
    /// hands it on as 3.1.1 ([`v31_as_v311`]).
    V3,
    V4,
    V5,
    Other(u8),
}

/// What the gate needs from a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectInfo {
    pub(crate) level: ProtocolLevel,
    pub(crate) client_id: String,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Bytes>,
    /// Where the client id (with its length prefix) is in the frame's bytes.
    pub(crate) client_id_at: std::ops::Range<usize>,
    /// The keep alive the client asked for, in seconds (0: none).
    pub(crate) keep_alive: u16,
    /// Where those two bytes are in the frame's bytes.
    pub(crate) keep_alive_at: usize,
    /// Where the login (user name, then password) starts in the frame's
    /// bytes; the frame's end when there is none. Nothing follows it.
    pub(crate) login_at: usize,
    /// MQTT 5: the largest packet the client takes (Maximum Packet Size).
    pub(crate) max_packet: Option<u32>,
    /// MQTT 5: how many QoS 1/2 deliveries the client takes unanswered
    /// (Receive Maximum).
    pub(crate) receive_max: Option<u16>,
}

/// Decodes a CONNECT far enough to learn the level, client id and login.
pub(crate) fn parse_connect(frame: &Frame) -> Result<ConnectInfo, CodecError> {
    if frame.packet_type() != CONNECT {
        return Err(CodecError::NotConnect(frame.packet_type()));
    }
    let mut b = frame.body();
    let name = read_string(&mut b, "protocol name")?;
    let level = read_u8(&mut b)?;
    let level = match (name.as_str(), level) {
        ("MQIsdp", 3) => ProtocolLevel::V3,
        ("MQIsdp", other) => ProtocolLevel::Other(other),
        ("MQTT", 4) => ProtocolLevel::V4,
        ("MQTT", 5) => ProtocolLevel::V5,
        ("MQTT", other) => ProtocolLevel::Other(other),
        (other, _) => return Err(CodecError::ProtocolName(other.to_owned())),
    };
    if let ProtocolLevel::Other(_) = level {
        return Ok(ConnectInfo {
            level,
            client_id: String::new(),
            username: None,
            password: None,
            client_id_at: 0..0,
            keep_alive: 0,
            keep_alive_at: 0,
            login_at: 0,
            max_packet: None,
            receive_max: None,
        });
    }
    let flags = read_u8(&mut b)?;
    let keep_alive_at = frame.bytes.len() - b.len();
    let keep_alive = read_u16(&mut b)?;
    let props = if level == ProtocolLevel::V5 {
        read_properties(&mut b)?
    } else {
        Props::default()
    };
    let total = frame.bytes.len();
    let id_start = total - b.len();
    let client_id = read_string(&mut b, "client id")?;
    let client_id_at = id_start..total - b.len();
    if flags & 0x04 != 0 {
        if level == ProtocolLevel::V5 {
            read_properties(&mut b)?;
        }
        read_binary(&mut b)?; // will topic
        read_binary(&mut b)?; // will payload
    }
    let login_at = total - b.len();
    let username = if flags & 0x80 != 0 {
        Some(read_string(&mut b, "user name")?)
    } else {
        None
    };
    let password = if flags & 0x40 != 0 {
        Some(read_binary(&mut b)?)
    } else {
        None
    };
    Ok(ConnectInfo {
        level,
        client_id,
        username,
        password,
        client_id_at,
        keep_alive,
        keep_alive_at,
        login_at,
        max_packet: props.max_packet,
        receive_max: props.receive_max,
    })
}

/// The CONNECT `frame` (parsed into `info`) logging in as `user` with
/// `password` instead of whatever login it carried.
pub(crate) fn with_login(
    frame: &Frame,
    info: &ConnectInfo,
    user: &str,
    password: &str,
) -> Result<Frame, CodecError> {
    let too_long = |s: &str| CodecError::TooLarge {
        size: s.len(),
        max: usize::from(u16::MAX),
    };
    let user_len = u16::try_from(user.len()).map_err(|_| too_long(user))?;
    let password_len = u16::try_from(password.len()).map_err(|_| too_long(password))?;
    let flags_at = info
        .keep_alive_at
        .checked_sub(1)
        .filter(|at| *at >= frame.header_len)
        .ok_or(CodecError::Truncated)?;
    let mut body = frame
        .bytes
        .get(frame.header_len..info.login_at)
        .ok_or(CodecError::Truncated)?
        .to_vec();
    let flags = body
        .get_mut(flags_at - frame.header_len)
        .ok_or(CodecError::Truncated)?;
    *flags |= 0xC0;
    body.extend_from_slice(&user_len.to_be_bytes());
    body.extend_from_slice(user.as_bytes());
    body.extend_from_slice(&password_len.to_be_bytes());
    body.extend_from_slice(password.as_bytes());
    let bytes = encode_frame(CONNECT << 4, &body);
    let header_len = bytes.len() - body.len();
    Ok(Frame { bytes, header_len })
}

/// The CONNECT `frame` with the keep alive at `at` (from [`parse_connect`])
/// set to `seconds`; the frame's length does not change.
pub(crate) fn with_keep_alive(frame: &Frame, at: usize, seconds: u16) -> Result<Frame, CodecError> {
    let mut out = frame.bytes.to_vec();
    let field = out
        .get_mut(at..at.saturating_add(2))
        .filter(|_| at >= frame.header_len)
        .ok_or(CodecError::Truncated)?;
    field.copy_from_slice(&seconds.to_be_bytes());
    Ok(Frame {
        bytes: Bytes::from(out),
        header_len: frame.header_len,
    })
}

/// An MQTT 3.1 CONNECT (`MQIsdp`, level 3, from [`parse_connect`]) as the
/// same CONNECT in MQTT 3.1.1 (`MQTT`, level 4). Everything after the
/// protocol level (flags, keep alive, client id, will, login) has the same
/// layout in both versions.
pub(crate) fn v31_as_v311(frame: &Frame) -> Result<Frame, CodecError> {
    // Protocol name (2 + 6 bytes) and level (1 byte).
    let rest = frame
        .bytes
        .get(frame.header_len + 9..)
        .ok_or(CodecError::Truncated)?;
    let mut body = Vec::with_capacity(7 + rest.len());
    body.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4]);
    body.extend_from_slice(rest);
    let bytes = encode_frame(CONNECT << 4, &body);
    let header_len = bytes.len() - body.len();
    Ok(Frame { bytes, header_len })
}

/// A 3.1.1 CONNACK as MQTT 3.1 has it: the first byte of its variable
/// header (3.1.1's "session present") is reserved in 3.1 and sent as 0.
pub(crate) fn connack_as_v31(frame: &Frame) -> Bytes {
    let mut out = frame.bytes.to_vec();
    if let Some(flags) = out.get_mut(frame.header_len) {
        *flags = 0;
    }
    Bytes::from(out)
}

/// A PINGREQ.
pub(crate) fn pingreq() -> Bytes {
    Bytes::from_static(&[PINGREQ << 4, 0x00])
}

/// The CONNECT `frame` with its client id (at `at`, from [`parse_connect`])
/// replaced by `client_id`.
pub(crate) fn with_client_id(
    frame: &Frame,
    at: &std::ops::Range<usize>,
    client_id: &str,
) -> Result<Bytes, CodecError> {
    let id_len = u16::try_from(client_id.len()).map_err(|_| CodecError::TooLarge {
        size: client_id.len(),
        max: usize::from(u16::MAX),
    })?;
    let bytes = &frame.bytes;
    let (Some(before), Some(after)) = (bytes.get(frame.header_len..at.start), bytes.get(at.end..))
    else {
        return Err(CodecError::Truncated);
    };
    let mut body = Vec::with_capacity(before.len() + 2 + client_id.len() + after.len());
    body.extend_from_slice(before);
    body.extend_from_slice(&id_len.to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    body.extend_from_slice(after);
    Ok(encode_frame(bytes.first().copied().unwrap_or(0x10), &body))
}

/// A control packet: `first` (type and flags), the remaining length, `body`.
pub(crate) fn encode_frame(first: u8, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// A frame from complete packet bytes (tests).
#[cfg(test)]
pub(crate) fn test_frame(bytes: &[u8]) -> Frame {
    let (header_len, size) = parse_header(bytes, 1 << 20)
        .expect("header")
        .expect("complete");
    assert_eq!(size, bytes.len());
    Frame {
        bytes: Bytes::copy_from_slice(bytes),
        header_len,
    }
}

/// A decoded PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishInfo {
    pub(crate) dup: bool,
    pub(crate) qos: u8,
    pub(crate) topic: String,
    pub(crate) pkid: u16,
    pub(crate) payload: Bytes,
}

/// Per-connection MQTT 5 topic aliases (client → server direction).
#[derive(Debug, Default)]
pub(crate) struct TopicAliases {
    map: std::collections::HashMap<u16, String>,
}

impl TopicAliases {
    /// The Topic Alias Maximum clients are given (rumqttd's CONNACK says
    /// 4096): aliases go from 1 to this.
    const MAX: u16 = 4096;
}

/// Decodes a PUBLISH; for MQTT 5 resolves and records topic aliases.
pub(crate) fn parse_publish(
    frame: &Frame,
    v5: bool,
    aliases: &mut TopicAliases,
) -> Result<PublishInfo, CodecError> {
    let flags = frame.flags();
    let qos = (flags >> 1) & 0b11;
    if qos == 3 {
        return Err(CodecError::BadQos);
    }
    let mut b = frame.body();
    let mut topic = read_string(&mut b, "topic")?;
    let pkid = if qos > 0 { read_u16(&mut b)? } else { 0 };
    if v5 && let Some(alias) = read_properties(&mut b)?.topic_alias {
        if alias == 0 || alias > TopicAliases::MAX {
            return Err(CodecError::InvalidAlias(alias));
        }
        if topic.is_empty() {
            topic = aliases
                .map
                .get(&alias)
                .cloned()
                .ok_or(CodecError::UnknownAlias(alias))?;
        } else {
            aliases.map.insert(alias, topic.clone());
        }
    }
    Ok(PublishInfo {
        dup: flags & 0x08 != 0,
        qos,
        topic,
        pkid,
        payload: b,
    })
}

/// The QoS and packet id of a PUBLISH (packet id 0 for QoS 0), without
/// decoding the rest.
pub(crate) fn publish_qos_pkid(frame: &Frame) -> Result<(u8, u16), CodecError> {
    let qos = (frame.flags() >> 1) & 0b11;
    if qos == 0 {
        return Ok((0, 0));
    }
    let mut b = frame.body();
    read_binary(&mut b)?;
    Ok((qos, read_u16(&mut b)?))
}

/// A two-byte acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) of `pkid`,
/// the same on the wire in MQTT 3.1.1 and 5 (success, no properties).
pub(crate) fn ack(packet_type: u8, pkid: u16) -> Bytes {
    let [hi, lo] = pkid.to_be_bytes();
    let flags = if packet_type == PUBREL { 0x02 } else { 0 };
    Bytes::from(vec![packet_type << 4 | flags, 0x02, hi, lo])
}

/// CONNACK refusing a connection. `code` is the v3.1.1 return code or the
/// MQTT 5 reason code, matching `v5`.
pub(crate) fn connack_refusal(v5: bool, code: u8) -> Bytes {
    if v5 {
        // flags, reason code, empty property block
        Bytes::from(vec![0x20, 0x03, 0x00, code, 0x00])
    } else {
        Bytes::from(vec![0x20, 0x02, 0x00, code])
    }
}

/// An MQTT 5 PUBACK (`packet_type` 4) or PUBREC (5) with a reason code.
pub(crate) fn ack_with_reason(packet_type: u8, pkid: u16, reason: u8) -> Bytes {
    let [hi, lo] = pkid.to_be_bytes();
    Bytes::from(vec![packet_type << 4, 0x03, hi, lo, reason])
}

/// An MQTT 5 DISCONNECT with a reason code.
pub(crate) fn disconnect_v5(reason: u8) -> Bytes {
    Bytes::from(vec![0xE0, 0x01, reason])
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
