//! A bounds-checked, non-recursive reader over a MessagePack byte slice.
//!
//! [`Cursor::header`] reads one value's marker and fixed-size payload; for a
//! string, binary or extension it also borrows the bytes (after checking they
//! are there), for an array or map it returns only the declared length.
//! Nothing here allocates, and nothing recurses: [`Cursor::skip`] walks nested
//! containers with a counter of pending values, so hostile nesting cannot
//! exhaust the stack and a declared length costs nothing until the bytes
//! behind it are actually read.

use rmp::Marker;

/// The body is not well-formed MessagePack at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed {
    pub(super) offset: usize,
    pub(super) reason: &'static str,
}

/// One value's header. Containers carry their declared length only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Header<'a> {
    Nil,
    Bool(bool),
    /// Any integer that fits in i64, whatever its wire width or signedness.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    F32(f32),
    F64(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Ext(i8, &'a [u8]),
    Array(u32),
    Map(u32),
}

impl Header<'_> {
    /// The MessagePack type name, for error messages.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Header::Nil => "nil",
            Header::Bool(_) => "bool",
            Header::Int(_) | Header::UInt(_) => "integer",
            Header::F32(_) | Header::F64(_) => "float",
            Header::Str(_) => "string",
            Header::Bin(_) => "binary",
            Header::Ext(..) => "extension",
            Header::Array(_) => "array",
            Header::Map(_) => "map",
        }
    }
}

/// A position in a MessagePack body.
#[derive(Debug, Clone)]
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// A cursor at `pos` (an offset this module handed out earlier).
    pub(super) fn at(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left after the cursor: an upper bound on how many values can
    /// still follow, since every value takes at least one byte.
    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(Malformed {
                offset: self.pos,
                reason: "unexpected end of input",
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn len(&mut self, n: u32) -> Result<&'a [u8], Malformed> {
        self.take(n as usize)
    }

    fn ext(&mut self, n: u32) -> Result<Header<'a>, Malformed> {
        let ty = self.u8()? as i8;
        Ok(Header::Ext(ty, self.len(n)?))
    }

    /// Reads one value's header (see the module docs).
    pub(super) fn header(&mut self) -> Result<Header<'a>, Malformed> {
        let start = self.pos;
        let mut rest = self.buf.get(start..).unwrap_or_default();
        let marker = rmp::decode::read_marker(&mut rest).map_err(|_| Malformed {
            offset: start,
            reason: "unexpected end of input",
        })?;
        self.pos = start + 1;
        let header = match marker {
            Marker::FixPos(v) => Header::Int(i64::from(v)),
            Marker::FixNeg(v) => Header::Int(i64::from(v)),
            Marker::Null => Header::Nil,
            Marker::True => Header::Bool(true),
            Marker::False => Header::Bool(false),
            Marker::U8 => Header::Int(i64::from(self.u8()?)),
            Marker::U16 => Header::Int(i64::from(self.u16()?)),
            Marker::U32 => Header::Int(i64::from(self.u32()?)),
            Marker::U64 => {
                let v = u64::from_be_bytes(self.array()?);
                match i64::try_from(v) {
                    Ok(i) => Header::Int(i),
                    Err(_) => Header::UInt(v),
                }
            }
            Marker::I8 => Header::Int(i64::from(i8::from_be_bytes(self.array()?))),
            Marker::I16 => Header::Int(i64::from(i16::from_be_bytes(self.array()?))),
            Marker::I32 => Header::Int(i64::from(i32::from_be_bytes(self.array()?))),
            Marker::I64 => Header::Int(i64::from_be_bytes(self.array()?)),
            Marker::F32 => Header::F32(f32::from_be_bytes(self.array()?)),
            Marker::F64 => Header::F64(f64::from_be_bytes(self.array()?)),
            Marker::FixStr(n) => Header::Str(self.len(u32::from(n))?),
            Marker::Str8 => {
                let n = self.u8()?;
                Header::Str(self.len(u32::from(n))?)
            }
            Marker::Str16 => {
                let n = self.u16()?;
                Header::Str(self.len(u32::from(n))?)
            }
            Marker::Str32 => {
                let n = self.u32()?;
                Header::Str(self.len(n)?)
            }
            Marker::Bin8 => {
                let n = self.u8()?;
                Header::Bin(self.len(u32::from(n))?)
            }
            Marker::Bin16 => {
                let n = self.u16()?;
                Header::Bin(self.len(u32::from(n))?)
            }
            Marker::Bin32 => {
                let n = self.u32()?;
                Header::Bin(self.len(n)?)
            }
            Marker::FixArray(n) => Header::Array(u32::from(n)),
            Marker::Array16 => Header::Array(u32::from(self.u16()?)),
            Marker::Array32 => Header::Array(self.u32()?),
            Marker::FixMap(n) => Header::Map(u32::from(n)),
            Marker::Map16 => Header::Map(u32::from(self.u16()?)),
            Marker::Map32 => Header::Map(self.u32()?),
            Marker::FixExt1 => self.ext(1)?,
            Marker::FixExt2 => self.ext(2)?,
            Marker::FixExt4 => self.ext(4)?,
            Marker::FixExt8 => self.ext(8)?,
            Marker::FixExt16 => self.ext(16)?,
            Marker::Ext8 => {
                let n = self.u8()?;
                self.ext(u32::from(n))?
            }
            Marker::Ext16 => {
                let n = self.u16()?;
                self.ext(u32::from(n))?
            }
            Marker::Ext32 => {
                let n = self.u32()?;
                self.ext(n)?
            }
            Marker::Reserved => {
                return Err(Malformed {
                    offset: start,
                    reason: "reserved marker byte 0xc1",
                });
            }
        };
        Ok(header)
    }

    /// Reads one value in a scalar position: a container's contents are
    /// skipped and only its header is returned, for the caller to reject.
    pub(super) fn value(&mut self) -> Result<Header<'a>, Malformed> {
        let header = self.header()?;
        match header {
            Header::Array(n) => self.skip_values(u64::from(n))?,
            Header::Map(n) => self.skip_values(2 * u64::from(n))?,
            _ => {}
        }
        Ok(header)
    }

    /// Skips one complete value, however deeply nested.
    pub(super) fn skip(&mut self) -> Result<(), Malformed> {
        self.skip_values(1)
    }

    fn skip_values(&mut self, mut pending: u64) -> Result<(), Malformed> {
        while pending > 0 {
            pending -= 1;
            match self.header()? {
                Header::Array(n) => pending = pending.saturating_add(u64::from(n)),
                Header::Map(n) => pending = pending.saturating_add(2 * u64::from(n)),
                _ => {}
            }
        }
        Ok(())
    }
}
