//! How the store's large JSON records are kept: LZ4-compressed, behind a
//! one-byte mark, so that records written by earlier versions (plain JSON,
//! which starts with `{`) are still read as they are.
//!
//! Why compress at all: sled 0.34 copies a whole leaf (up to 16 values) in
//! memory on every write to it and writes leaves out whole, so the size of
//! the largest values sets most of the store's copying and disk writes.
//! Execution records are those (see `executions.rs`); JSON with repeated
//! field names and a provider payload inside compresses about twofold with
//! LZ4 at a few microseconds per record. Accepted events are not packed:
//! tried on the ingestion path, it cut disk writes per event by 13% but
//! ingestion throughput by ≈5% (the compression runs before the 2xx).

use std::borrow::Cow;

/// The first byte of a compressed record.
pub(super) const LZ4_RECORD: u8 = 1;

/// `json` as stored: [`LZ4_RECORD`], then LZ4 block format with the
/// uncompressed size first (u32 LE, as `lz4_flex::compress_prepend_size`
/// lays it out), compressed straight into the one buffer returned.
pub(super) fn pack(json: &[u8]) -> Vec<u8> {
    const HEAD: usize = 1 + 4;
    let size = u32::try_from(json.len()).expect("a record is far smaller than 4 GiB");
    let mut out = vec![0; HEAD + lz4_flex::block::get_maximum_output_size(json.len())];
    out[0] = LZ4_RECORD;
    out[1..HEAD].copy_from_slice(&size.to_le_bytes());
    let written = lz4_flex::block::compress_into(json, &mut out[HEAD..])
        .expect("the buffer has room for the worst case");
    out.truncate(HEAD + written);
    out
}

/// The JSON of a stored record, compressed or (from an earlier version) not.
pub(super) fn unpack(stored: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    match stored.split_first() {
        Some((&LZ4_RECORD, compressed)) => lz4_flex::decompress_size_prepended(compressed)
            .map(Cow::Owned)
            .map_err(|e| format!("cannot decompress: {e}")),
        _ => Ok(Cow::Borrowed(stored)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_and_plain_records_unpack_to_their_json() {
        let json = br#"{"id":"evt_1","raw":{"entry":[{"changes":[{"value":"x"}]}]}}"#;
        let packed = pack(json);
        assert_eq!(unpack(&packed).unwrap().as_ref(), json.as_slice());
        // The layout `lz4_flex`'s own size-prepending functions read.
        assert_eq!(
            &packed[1..],
            lz4_flex::compress_prepend_size(json).as_slice()
        );
        assert_eq!(unpack(json).unwrap().as_ref(), json.as_slice());
        assert!(unpack(&packed[..packed.len() - 3]).is_err());
    }
}
