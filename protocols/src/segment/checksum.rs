//! The content checksum: CRC32C over the canonical encoding documented in
//! the [module docs](super).

use arrow_array::Array;
use arrow_schema::Schema;

use crate::batch::{BatchView, FieldArray};

const TYPE_TIME: u8 = 0x01;
const TYPE_TAG: u8 = 0x02;
const TYPE_F64: u8 = 0x10;
const TYPE_I64: u8 = 0x11;
const TYPE_U64: u8 = 0x12;
const TYPE_BOOL: u8 = 0x13;
const TYPE_STR: u8 = 0x14;

/// Buffers small writes so CRC32C runs over large slices.
struct Crc {
    crc: u32,
    buf: Vec<u8>,
}

const FLUSH_AT: usize = 64 * 1024;

impl Crc {
    fn new() -> Self {
        Crc {
            crc: 0,
            buf: Vec::with_capacity(FLUSH_AT + 1024),
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > FLUSH_AT {
            self.flush();
        }
        if bytes.len() > FLUSH_AT {
            self.crc = crc32c::crc32c_append(self.crc, bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    fn flush(&mut self) {
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        self.buf.clear();
    }

    fn len_prefixed(&mut self, s: &str) {
        // Column names and values are far below 4 GiB (names ≤ 255 bytes,
        // Arrow Utf8 offsets are i32), so the length fits.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.put(&len.to_le_bytes());
        self.put(s.as_bytes());
    }

    fn value(&mut self, v: Option<[u8; 8]>) {
        match v {
            None => self.put(&[0]),
            Some(b) => {
                let mut out = [1u8; 9];
                out[1..].copy_from_slice(&b);
                self.put(&out);
            }
        }
    }

    fn finish(mut self) -> u32 {
        self.flush();
        self.crc
    }
}

/// The checksum of `views` (the batches of one segment, in order) whose
/// common schema is `schema`.
pub(crate) fn checksum(schema: &Schema, views: &[BatchView<'_>]) -> u32 {
    let mut crc = Crc::new();
    let Some(first) = views.first() else {
        return 0;
    };
    let columns = 1 + first.tags.len() + first.fields.len();
    crc.put(&u32::try_from(columns).unwrap_or(u32::MAX).to_le_bytes());
    // Names from the schema, types from the layout; both in schema order.
    let mut types = vec![TYPE_TIME];
    types.extend(first.tags.iter().map(|_| TYPE_TAG));
    types.extend(first.fields.iter().map(|(_, a)| match a {
        FieldArray::F64(_) => TYPE_F64,
        FieldArray::I64(_) => TYPE_I64,
        FieldArray::U64(_) => TYPE_U64,
        FieldArray::Bool(_) => TYPE_BOOL,
        FieldArray::Str(_) => TYPE_STR,
    }));
    for (field, t) in schema.fields().iter().zip(types) {
        crc.len_prefixed(field.name());
        crc.put(&[t]);
    }
    let rows: usize = views.iter().map(|v| v.rows).sum();
    crc.put(&(rows as u64).to_le_bytes());

    for v in views {
        for &t in v.time.values() {
            crc.value(Some(t.to_le_bytes()));
        }
    }
    for i in 0..first.tags.len() {
        for v in views {
            let Some(tag) = v.tags.get(i) else { continue };
            // Encode each distinct dictionary value once, then copy per row.
            let encoded: Vec<Vec<u8>> = (0..tag.dictionary_len())
                .map(|k| {
                    let s = tag.dictionary_value(k).unwrap_or_default();
                    let mut e = Vec::with_capacity(5 + s.len());
                    e.push(1);
                    e.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
                    e.extend_from_slice(s.as_bytes());
                    e
                })
                .collect();
            for row in 0..v.rows {
                // Out-of-range keys were rejected by the sort check; a null
                // dictionary value hashes as a null tag, as `TagView::get` reads it.
                match tag.key(row).and_then(|k| {
                    tag.dictionary_value(k)?;
                    encoded.get(k)
                }) {
                    None => crc.put(&[0]),
                    Some(e) => crc.put(e),
                }
            }
        }
    }
    for i in 0..first.fields.len() {
        for v in views {
            let Some((_, array)) = v.fields.get(i) else {
                continue;
            };
            match array {
                FieldArray::F64(a) => {
                    for row in 0..a.len() {
                        crc.value(
                            a.is_valid(row)
                                .then(|| a.value(row).to_bits().to_le_bytes()),
                        );
                    }
                }
                FieldArray::I64(a) => {
                    for row in 0..a.len() {
                        crc.value(a.is_valid(row).then(|| a.value(row).to_le_bytes()));
                    }
                }
                FieldArray::U64(a) => {
                    for row in 0..a.len() {
                        crc.value(a.is_valid(row).then(|| a.value(row).to_le_bytes()));
                    }
                }
                FieldArray::Bool(a) => {
                    for row in 0..a.len() {
                        match a.is_valid(row).then(|| a.value(row)) {
                            None => crc.put(&[0]),
                            Some(b) => crc.put(&[1, u8::from(b)]),
                        }
                    }
                }
                FieldArray::Str(a) => {
                    for row in 0..a.len() {
                        if a.is_valid(row) {
                            crc.put(&[1]);
                            crc.len_prefixed(a.value(row));
                        } else {
                            crc.put(&[0]);
                        }
                    }
                }
            }
        }
    }
    crc.finish()
}
