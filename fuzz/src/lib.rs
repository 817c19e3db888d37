//! Helpers shared by the fuzz targets.

use anpx_core::frame::HEADER_LEN;

/// Returns `data` with `total_len` and both CRCs recomputed, or `None` when
/// it is too short to have a header or already consistent.
///
/// A mutated frame almost never keeps its CRCs right, so without this the
/// fuzzer would spend nearly all its time on the header checks and rarely
/// reach the TLVs and meta JSON behind them.
pub fn with_fixed_checksums(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < HEADER_LEN {
        return None;
    }
    let mut fixed = data.to_vec();
    let total_len = u32::try_from(fixed.len()).ok()?;
    fixed[8..12].copy_from_slice(&total_len.to_be_bytes());
    let header_crc = crc32fast::hash(&fixed[0..12]);
    fixed[12..16].copy_from_slice(&header_crc.to_be_bytes());
    let body_crc = crc32fast::hash(&fixed[HEADER_LEN..]);
    fixed[16..20].copy_from_slice(&body_crc.to_be_bytes());
    (fixed != data).then_some(fixed)
}
