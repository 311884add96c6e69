//! The encryption counters (names in [`crate::metrics`]).

use crate::metrics as m;

pub(crate) fn sealed(bytes: usize) {
    metrics::counter!(m::ENCRYPTION_SEALED_BYTES).increment(bytes as u64);
}

pub(crate) fn opened(bytes: usize) {
    metrics::counter!(m::ENCRYPTION_OPENED_BYTES).increment(bytes as u64);
}

pub(crate) fn failed() {
    metrics::counter!(m::ENCRYPTION_FAILURES).increment(1);
}

pub(crate) fn resealed() {
    metrics::counter!(m::ENCRYPTION_RESEALED).increment(1);
}
