//! placeholder, being written
pub const FORMAT_VERSION: u32 = 1;
