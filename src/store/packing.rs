//! How the store's large JSON records are kept: LZ4-compressed against a
//! fixed dictionary, behind a one-byte mark, so that records written by
//! earlier versions (plain JSON, which starts with `{`, or LZ4 without the
//! dictionary) are still read as they are.
//!
//! Why compress at all: sled 0.34 copies a whole leaf (up to 16 values) in
//! memory on every write to it and writes leaves out whole, so the size of
//! the largest values sets most of the store's copying and disk writes.
//! Execution records are those (see `executions.rs`); JSON with repeated
//! field names and a provider payload inside compresses about twofold with
//! LZ4 at a few microseconds per record. Accepted events are not packed:
//! tried on the ingestion path, it cut disk writes per event by 13% but
//! ingestion throughput by ≈5% (the compression runs before the 2xx).
//! An event is packed later, off that path, inside the records of the
//! runs it starts (`executions.rs`, `JournalEvent`).
//!
//! Why a dictionary: a record is a few kilobytes, too short for LZ4 to find
//! much inside it, while every record shares most of its shape with every
//! other (the record's and the event's field names, step kinds, a contact's
//! fields, a provider's payload envelope). LZ4 can match against bytes given
//! to both ends up front; `packing_dictionary.txt` is three finished records
//! of the shipped workflows on the test fixtures' payloads (Wazzap, WAHA,
//! Meta; the SDP offer cut short). Records of other workflows and providers
//! still shrink: measured on five records not in it (with python-lz4, the
//! reference library), 1.5–1.7 KB with plain LZ4 became 0.5–1.1 KB, 38–72%
//! less. The dictionary is part of the stored format: records
//! packed with it cannot be read without the same bytes, so it never
//! changes (a test pins its digest); a better one would get a mark of its
//! own, with this one kept for reading.

use std::borrow::Cow;
use std::sync::LazyLock;

use super::dict_lz4::DictCompressor;

/// The first byte of a record compressed with plain LZ4 (earlier versions).
pub(super) const LZ4_RECORD: u8 = 1;
/// The first byte of a record compressed with LZ4 against [`DICTIONARY`].
pub(super) const LZ4_DICT_RECORD: u8 = 2;

/// What [`LZ4_DICT_RECORD`] records are compressed against. Never edit.
const DICTIONARY: &[u8] = include_bytes!("packing_dictionary.txt");

/// The dictionary's compressor, its hash table built at first use.
static COMPRESSOR: LazyLock<DictCompressor> = LazyLock::new(|| DictCompressor::new(DICTIONARY));

/// `json` as stored: [`LZ4_DICT_RECORD`], then LZ4 block format against
/// [`DICTIONARY`] with the uncompressed size first (u32 LE, as
/// `lz4_flex::block::decompress_size_prepended_with_dict` reads it),
/// compressed by `dict_lz4.rs` straight into the one buffer returned.
pub(super) fn pack(json: &[u8]) -> Vec<u8> {
    pack_around(json, 0..0)
}

/// [`pack`] a record with a range of it packed already (a run record's
/// event): the same stored form, without looking for matches in bytes that
/// will not compress again.
pub(super) fn pack_around(record: &[u8], packed: std::ops::Range<usize>) -> Vec<u8> {
    let size = u32::try_from(record.len()).expect("a record is far smaller than 4 GiB");
    let mut out = Vec::with_capacity(1 + 4 + record.len() / 2);
    out.push(LZ4_DICT_RECORD);
    out.extend_from_slice(&size.to_le_bytes());
    COMPRESSOR.compress_into_around(record, packed, &mut out);
    out
}

/// The JSON of a stored record, compressed (with or without the
/// dictionary) or, from an earlier version, not.
pub(super) fn unpack(stored: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    let (compressed, dictionary) = match stored.split_first() {
        Some((&LZ4_DICT_RECORD, compressed)) => (compressed, Some(DICTIONARY)),
        Some((&LZ4_RECORD, compressed)) => (compressed, None),
        _ => return Ok(Cow::Borrowed(stored)),
    };
    check_size(compressed)?;
    match dictionary {
        Some(dictionary) => {
            lz4_flex::block::decompress_size_prepended_with_dict(compressed, dictionary)
        }
        None => lz4_flex::decompress_size_prepended(compressed),
    }
    .map(Cow::Owned)
    .map_err(|e| format!("cannot decompress: {e}"))
}

/// The decoder allocates the size a record's head states before it reads a
/// byte of the rest: a damaged head (or a plain record whose first byte
/// was damaged into a mark) must not make it allocate gigabytes. LZ4
/// expands a byte to at most 255, so a larger size cannot be right.
fn check_size(compressed: &[u8]) -> Result<(), String> {
    let Some((head, body)) = compressed.split_first_chunk::<4>() else {
        return Err("cannot decompress: the record ends inside its size".into());
    };
    let size = u32::from_le_bytes(*head) as usize;
    if size > body.len().saturating_mul(255).saturating_add(16) {
        return Err(format!(
            "cannot decompress: a size of {size} bytes stated for {} compressed bytes",
            body.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn packed_and_plain_records_unpack_to_their_json() {
        let json = br#"{"id":"evt_1","raw":{"entry":[{"changes":[{"value":"x"}]}]}}"#;
        let packed = pack(json);
        assert_eq!(packed[0], LZ4_DICT_RECORD);
        assert_eq!(unpack(&packed).unwrap().as_ref(), json.as_slice());
        // The layout `lz4_flex`'s own size-prepending functions read.
        assert_eq!(
            lz4_flex::block::decompress_size_prepended_with_dict(&packed[1..], DICTIONARY).unwrap(),
            json
        );
        assert_eq!(unpack(json).unwrap().as_ref(), json.as_slice());
        assert!(unpack(&packed[..packed.len() - 3]).is_err());
    }

    /// Records packed by earlier versions, without the dictionary, read
    /// back as they were written.
    #[test]
    fn records_packed_without_the_dictionary_still_unpack() {
        let json =
            br#"{"id":"run_1","status":"succeeded","steps":[{"kind":"tag"},{"kind":"tag"}]}"#;
        let mut earlier = vec![LZ4_RECORD];
        earlier.extend_from_slice(&lz4_flex::compress_prepend_size(json));
        assert_eq!(unpack(&earlier).unwrap().as_ref(), json.as_slice());
        // The dictionary is what tells the two marks apart: read as the
        // other kind, the bytes are not the record.
        let mut swapped = pack(json);
        swapped[0] = LZ4_RECORD;
        assert_ne!(unpack(&swapped).ok().as_deref(), Some(json.as_slice()));
    }

    /// A damaged size in a record's head is an error, not an allocation of
    /// what it states (here 4 GiB for a few bytes).
    #[test]
    fn a_record_stating_an_impossible_size_is_refused_before_decoding() {
        for mark in [LZ4_DICT_RECORD, LZ4_RECORD] {
            let mut stored = pack(br#"{"id":"run_1"}"#);
            stored[0] = mark;
            stored[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
            let err = unpack(&stored).unwrap_err();
            assert!(err.contains("a size of 4294967295 bytes"), "{err}");
            assert!(unpack(&[mark, 1, 0]).is_err());
        }
    }

    /// A record as this version packed it, kept as bytes: the format
    /// itself (mark, size, dictionary) cannot change unnoticed, even with
    /// the dictionary's digest changed alongside it. (Only the reading is
    /// pinned: another LZ4 encoder may pick other matches.)
    #[test]
    fn a_record_written_with_the_dictionary_reads_back_in_every_later_version() {
        let json = br#"{"id":"run_0a1b2c3d4e5f60718293","workflow":"missed-call-followup","status":"succeeded","steps":[{"path":"0","id":"found","kind":"find_contact","status":"succeeded","input":{"phone":"+5215512345678"},"output":{"found":false,"contact":null}}]}"#;
        let stored = hex::decode(concat!(
            "02f2000000033d1500bc0cf00430613162326333643465356636303731383239631004920c00f3",
            "160104010b9604018b000e04020f450a6e039a0b053307806e756c6c7d7d5d7d",
        ))
        .unwrap();
        assert_eq!(unpack(&stored).unwrap().as_ref(), json.as_slice());
    }

    /// Stored records depend on these exact bytes: a change makes every
    /// record packed with them unreadable. Add a new mark instead.
    #[test]
    fn the_dictionary_never_changes() {
        let digest = hex::encode(sha2::Sha256::digest(DICTIONARY));
        assert_eq!(
            digest, "526cd3a16548ed2d280f26fae8e92bf11a2f634e7c81dfd9e5b58ee4dd158984",
            "packing_dictionary.txt changed: records packed with it can no longer be read"
        );
    }

    /// What the dictionary is for: a record of a workflow and provider
    /// pairing it does not hold (the shipped missed-call follow-up on a
    /// Meta payload; it holds that workflow on Wazzap's) packs well under
    /// what plain LZ4 makes of it.
    #[test]
    fn a_record_not_in_the_dictionary_packs_smaller_than_with_plain_lz4() {
        let record = br#"{"id":"run_0b6e1f2d3c4a5b697887","seq":48213,"workflow":"missed-call-followup","workflow_version":"84ed3f68d0c7","file":"./workflows/missed-call-followup.yaml","status":"succeeded","event":{"id":"evt_5e2a9c0d7b3f41e8a6c2d9f0","kind":"call.missed","direction":"incoming","caller":"+5215512345678","caller_is_phone":true,"business":"+525500000000","country":"MX","name":"Ana","video":false,"at":"2026-12-04T17:40:12Z","call_id":"wacid.HBgNNTIxNTUxMjM0NTY3OBUCABIYIDQ4","duration":null,"outcome":"failed","source":"meta","provider":"meta","synthetic":false,"data":{"phone_number_id":"436666719526789","waba_id":"366634483210360"},"raw":{"object":"whatsapp_business_account","entry":[{"id":"366634483210360","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"525500000000","phone_number_id":"436666719526789"},"contacts":[{"profile":{"name":"Ana"},"wa_id":"5215512345678"}],"calls":[{"id":"wacid.HBgNNTIxNTUxMjM0NTY3OBUCABIYIDQ4","from":"5215512345678","to":"525500000000","event":"terminate","timestamp":"1796406012","direction":"USER_INITIATED","status":"FAILED","end_time":"1796406012"}]},"field":"calls"}]}]}},"started_at":"2026-12-04T17:40:12.318275641Z","finished_at":"2026-12-04T17:40:12.321004877Z","test":false,"steps":[{"path":"0","id":"found","kind":"find_contact","status":"succeeded","input":{"phone":"+5215512345678"},"output":{"found":false,"contact":null},"started_at":"2026-12-04T17:40:12.318279012Z","duration_ms":0.011873},{"path":"1","kind":"if","status":"succeeded","input":{"condition":"{{steps.found.found}}"},"output":{"branch":"else"},"started_at":"2026-12-04T17:40:12.318298420Z","duration_ms":0.003122},{"path":"1.else.0","kind":"create_contact","status":"succeeded","input":{"phone":"+5215512345678","name":"Ana","country":"MX","fields":{"first_source":"meta","last_missed_call":"2026-12-04T17:40:12Z"},"tags":[]},"output":{"created":true,"contact":{"phone":"+5215512345678","name":"Ana","country":"MX","tags":[],"fields":{"first_source":"meta","last_missed_call":"2026-12-04T17:40:12Z"},"created_at":"2026-12-04T17:40:12.318331904Z","updated_at":"2026-12-04T17:40:12.318350177Z","last_call_at":"2026-12-04T17:40:12Z","calls":{"call.missed":1}}},"started_at":"2026-12-04T17:40:12.318309550Z","duration_ms":0.081337}]}"#;
        let plain = lz4_flex::compress_prepend_size(record).len();
        let packed = pack(record).len();
        assert!(
            packed * 10 < plain * 7,
            "{packed} bytes packed against {plain} with plain LZ4"
        );
        // And as small as `lz4_flex` makes it against the same dictionary
        // (643 bytes against 645; its encoder builds the dictionary's
        // table on every call, see `dict_lz4.rs`).
        let theirs = lz4_flex::block::compress_prepend_size_with_dict(record, DICTIONARY).len();
        assert!(
            packed * 100 <= (1 + theirs) * 103,
            "{packed} bytes packed against {theirs} with lz4_flex"
        );
        assert_eq!(unpack(&pack(record)).unwrap().as_ref(), record.as_slice());
    }
}
