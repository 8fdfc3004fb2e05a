//! LZ4 block compression against one fixed dictionary whose hash table is
//! built once, for `packing.rs`.
//!
//! Why not `lz4_flex`'s `compress_into_with_dict`: it builds the
//! dictionary's hash table anew on every call, a pass over all 8 KiB of
//! the packing dictionary for a record of 2–5 KiB. Here the table is
//! built once per process and copied (8 KiB) for each record. Packing a
//! finished record took ≈37 k instructions with `lz4_flex` and takes
//! ≈24 k with this (callgrind, the load bench's follow-up case; ≈19 k
//! for the shorter records of a run still under way), with the same
//! compressed size (a test compares the two).
//!
//! The output is a plain LZ4 block (the format `lz4_flex` and the
//! reference library decode, the dictionary given to the decoder as what
//! came before): reading stays on `lz4_flex`'s checked decoder, and the
//! tests decode everything this writes with it. The encoder is the
//! reference library's greedy one without its acceleration: a 4-byte
//! hash of every position (but those of a range the caller says is
//! compressed already), one candidate per hash, a match taken when
//! its first 4 bytes agree, extended backwards over pending literals and
//! forwards as far as the bytes agree.
//!
//! Positions are kept as `u16` in the one stream the dictionary and the
//! input make together, so an input that makes that stream longer than
//! 64 KiB is handed to `lz4_flex` instead (no record of the shipped
//! workflows comes near that).

/// A match covers at least this many bytes.
const MIN_MATCH: usize = 4;
/// The block's last 5 bytes are literals (LZ4 block format).
const LAST_LITERALS: usize = 5;
/// No match starts within the block's last 12 bytes (LZ4 block format).
const MATCH_START_LIMIT: usize = 12;
/// Longest distance a match may reach back.
const MAX_OFFSET: usize = u16::MAX as usize;
const HASH_BITS: u32 = 12;

type Table = [u16; 1 << HASH_BITS];

fn hash(four_bytes: u32) -> usize {
    (four_bytes.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

thread_local! {
    /// This thread's [`Scratch`], between two records.
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// A thread's working copies, kept from one record to the next: the
/// stream with a dictionary already at its start, and a table to reset to
/// the dictionary's. Allocating both and copying the dictionary in for
/// every record was a fifth of packing a run record (≈4 k of ≈20 k
/// instructions, callgrind).
#[derive(Default)]
struct Scratch {
    /// Which dictionary `stream` starts with (its address and length),
    /// none at first.
    dictionary: (usize, usize),
    stream: Vec<u8>,
    table: Option<Box<Table>>,
}

impl Scratch {
    /// The stream (`compressor`'s dictionary, then `input`) and the
    /// dictionary's table, to search and update.
    fn ready_for(&mut self, compressor: &DictCompressor, input: &[u8]) -> (&[u8], &mut Table) {
        let dictionary = compressor.dictionary;
        let which = (dictionary.as_ptr() as usize, dictionary.len());
        if self.dictionary != which {
            self.stream.clear();
            self.stream.extend_from_slice(dictionary);
            self.dictionary = which;
        }
        self.stream.truncate(dictionary.len());
        self.stream.extend_from_slice(input);
        let table = self.table.get_or_insert_with(|| compressor.table.clone());
        table.copy_from_slice(&compressor.table[..]);
        (&self.stream, table)
    }
}

/// A dictionary with its hash table, ready to compress against.
pub(super) struct DictCompressor {
    dictionary: &'static [u8],
    /// For each hash, the last dictionary position with it (0 when none:
    /// a candidate is always checked, so a wrong one costs a comparison).
    table: Box<Table>,
}

impl DictCompressor {
    /// The table for `dictionary`: build it once.
    pub(super) fn new(dictionary: &'static [u8]) -> DictCompressor {
        assert!(
            dictionary.len() < MAX_OFFSET,
            "the dictionary fits in a match's reach"
        );
        let mut table: Box<Table> = Box::new([0; 1 << HASH_BITS]);
        for at in 0..dictionary.len().saturating_sub(MIN_MATCH - 1) {
            table[hash(read_u32(dictionary, at))] = at as u16;
        }
        DictCompressor { dictionary, table }
    }

    /// `input` compressed as one LZ4 block against the dictionary,
    /// appended to `out`.
    #[cfg(test)]
    pub(super) fn compress_into(&self, input: &[u8], out: &mut Vec<u8>) {
        self.compress_into_around(input, 0..0, out)
    }

    /// [`DictCompressor::compress_into`], with no match looked for from
    /// within `compressed` (a range of `input` that is compressed
    /// already, `packing.rs`'s packed event inside a run record): those
    /// bytes go out as literals unless a match from before them runs on
    /// into them. The block is as any other; only the search skips them,
    /// where it would hash every byte and find nothing (≈6 k instructions
    /// for a packed Meta event).
    pub(super) fn compress_into_around(
        &self,
        input: &[u8],
        compressed: std::ops::Range<usize>,
        out: &mut Vec<u8>,
    ) {
        debug_assert!(
            compressed.is_empty() || compressed.end <= input.len(),
            "{compressed:?} is not a range of {} input bytes",
            input.len()
        );
        let start = self.dictionary.len();
        if start + input.len() > MAX_OFFSET {
            let from = out.len();
            out.resize(
                from + lz4_flex::block::get_maximum_output_size(input.len()),
                0,
            );
            let written =
                lz4_flex::block::compress_into_with_dict(input, &mut out[from..], self.dictionary)
                    .expect("the buffer has room for the worst case");
            out.truncate(from + written);
            return;
        }
        // The dictionary and the input as one stream: a match may start in
        // the one and run on into the other, as the decoder allows.
        // A thread whose locals are being torn down packs with new ones.
        let mut scratch = SCRATCH.try_with(std::cell::Cell::take).unwrap_or_default();
        let (stream, table) = scratch.ready_for(self, input);
        self.compress_stream(stream, table, compressed, out);
        let _ = SCRATCH.try_with(|kept| kept.set(scratch));
    }

    /// The search and the block, over `stream` (the dictionary, then the
    /// input) with `table` the dictionary's.
    fn compress_stream(
        &self,
        stream: &[u8],
        table: &mut Table,
        compressed: std::ops::Range<usize>,
        out: &mut Vec<u8>,
    ) {
        let start = self.dictionary.len();
        let end = stream.len();
        let input_len = end - start;
        let mut literals_from = start;
        // `compressed` in the stream's positions.
        let (skip_from, skip_to) = (start + compressed.start, start + compressed.end);
        if input_len > MATCH_START_LIMIT {
            let last_match_start = end - MATCH_START_LIMIT;
            let match_end_limit = end - LAST_LITERALS;
            let mut at = start;
            while at <= last_match_start {
                if at >= skip_from && at < skip_to {
                    at = skip_to;
                    continue;
                }
                let four = read_u32(stream, at);
                let slot = &mut table[hash(four)];
                let mut candidate = usize::from(*slot);
                *slot = at as u16;
                if candidate >= at || read_u32(stream, candidate) != four {
                    at += 1;
                    continue;
                }
                let mut match_start = at;
                while match_start > literals_from
                    && candidate > 0
                    && stream[match_start - 1] == stream[candidate - 1]
                {
                    match_start -= 1;
                    candidate -= 1;
                }
                let source = candidate + (at + MIN_MATCH - match_start);
                let match_end = at
                    + MIN_MATCH
                    + same_bytes(&stream[source..], &stream[at + MIN_MATCH..match_end_limit]);
                write_sequence(
                    out,
                    &stream[literals_from..match_start],
                    match_start - candidate,
                    match_end - match_start,
                );
                literals_from = match_end;
                at = match_end;
                // The position just before the next search, so that the
                // bytes the match ended on can be found again (a match
                // ends 4 or more bytes into the input and 5 or more
                // before its end, so `at - 2` is in the input with four
                // bytes after it).
                table[hash(read_u32(stream, at - 2))] = (at - 2) as u16;
            }
        }
        write_literals_only(out, &stream[literals_from..end]);
    }
}

/// How many bytes `ahead` and `behind` agree on from their starts, up to
/// `ahead`'s end, compared eight at a time (matches against the
/// dictionary run long: byte by byte, this was half the encoder's time).
fn same_bytes(behind: &[u8], ahead: &[u8]) -> usize {
    let mut same = 0;
    while same + 8 <= ahead.len() {
        let a = u64::from_le_bytes(ahead[same..same + 8].try_into().expect("eight bytes"));
        let b = u64::from_le_bytes(behind[same..same + 8].try_into().expect("eight bytes"));
        let differ = a ^ b;
        if differ != 0 {
            return same + (differ.trailing_zeros() / 8) as usize;
        }
        same += 8;
    }
    while same < ahead.len() && ahead[same] == behind[same] {
        same += 1;
    }
    same
}

/// One sequence: its literals, then a match of `length` bytes `offset`
/// back.
fn write_sequence(out: &mut Vec<u8>, literals: &[u8], offset: usize, length: usize) {
    debug_assert!((1..=MAX_OFFSET).contains(&offset) && length >= MIN_MATCH);
    let extra = length - MIN_MATCH;
    out.push(((literals.len().min(15) as u8) << 4) | extra.min(15) as u8);
    if literals.len() >= 15 {
        write_length(out, literals.len() - 15);
    }
    out.extend_from_slice(literals);
    out.extend_from_slice(&(offset as u16).to_le_bytes());
    if extra >= 15 {
        write_length(out, extra - 15);
    }
}

/// The block's last sequence: literals and no match.
fn write_literals_only(out: &mut Vec<u8>, literals: &[u8]) {
    out.push((literals.len().min(15) as u8) << 4);
    if literals.len() >= 15 {
        write_length(out, literals.len() - 15);
    }
    out.extend_from_slice(literals);
}

/// The rest of a length that did not fit its token's 4 bits.
fn write_length(out: &mut Vec<u8>, mut rest: usize) {
    while rest >= 255 {
        out.push(255);
        rest -= 255;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    const DICTIONARY: &[u8] = include_bytes!("packing_dictionary.txt");

    fn round_trip(input: &[u8]) -> Vec<u8> {
        round_trip_around(input, 0..0)
    }

    /// [`round_trip`] with `compressed` left unsearched.
    fn round_trip_around(input: &[u8], compressed: std::ops::Range<usize>) -> Vec<u8> {
        let mut block = Vec::new();
        let what = format!("{} input bytes, {compressed:?} unsearched", input.len());
        DictCompressor::new(DICTIONARY).compress_into_around(input, compressed, &mut block);
        let back = lz4_flex::block::decompress_with_dict(&block, input.len(), DICTIONARY)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(back, input, "{what}");
        block
    }

    /// A range left unsearched (a run record's packed event) goes out as
    /// literals; around it the search finds what it finds without the
    /// range, and a match may run on into it.
    #[test]
    fn a_range_left_unsearched_decodes_and_costs_no_more_than_its_bytes() {
        let mut rng = fastrand::Rng::with_seed(3);
        let noise: Vec<u8> = (0..360).map(|_| rng.u8(..)).collect();
        let record = [&DICTIONARY[100..700], &noise[..], &DICTIONARY[2000..2600]].concat();
        let searched = round_trip(&record).len();
        let around = round_trip_around(&record, 600..960).len();
        assert!(
            around <= searched + 4,
            "{around} bytes around the range, {searched} searching it"
        );
        // The part after the range still compresses: far fewer bytes than
        // the range and the part after it.
        assert!(around < 600, "{around} bytes");
        // Ranges at the edges, empty, and over everything.
        for range in [0..0, 0..360, 1100..1560, 1559..1560, 0..1560, 700..700] {
            round_trip_around(&record, range);
        }
        // A match that starts before the range and runs on into it.
        let repeat = [&DICTIONARY[..300], &DICTIONARY[..300]].concat();
        round_trip_around(&repeat, 310..600);
    }

    #[test]
    fn what_it_writes_decodes_to_the_input() {
        round_trip(b"");
        round_trip(b"x");
        round_trip(b"twelve bytes");
        round_trip(b"thirteen byte");
        round_trip(&[b'a'; 5000]);
        round_trip(DICTIONARY);
        round_trip(&DICTIONARY[DICTIONARY.len() - 300..]);
        round_trip(&DICTIONARY[..300]);
        let mut tail_then_more = DICTIONARY[DICTIONARY.len() - 40..].to_vec();
        tail_then_more
            .extend_from_slice(b"and then something else entirely, twice: something else");
        round_trip(&tail_then_more);
    }

    /// Inputs made of dictionary slices, repeats of themselves and noise,
    /// of every size up to past where the encoder hands over to
    /// `lz4_flex`: each decodes to itself.
    #[test]
    fn mixed_inputs_of_many_sizes_decode_to_themselves() {
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..600 {
            let target = match round {
                0..=399 => rng.usize(0..3000),
                400..=579 => rng.usize(3000..30_000),
                _ => rng.usize(55_000..70_000),
            };
            let mut input = Vec::with_capacity(target);
            while input.len() < target {
                let piece = rng.usize(1..400);
                match rng.u8(0..4) {
                    0 => {
                        let from = rng.usize(0..DICTIONARY.len() - 1);
                        let to = (from + piece).min(DICTIONARY.len());
                        input.extend_from_slice(&DICTIONARY[from..to]);
                    }
                    1 if !input.is_empty() => {
                        let from = rng.usize(0..input.len());
                        let to = (from + piece).min(input.len());
                        input.extend_from_within(from..to);
                    }
                    2 => input.extend(std::iter::repeat_n(rng.u8(..), piece)),
                    _ => input.extend((0..piece).map(|_| rng.u8(..))),
                }
            }
            input.truncate(target);
            if round % 2 == 0 {
                round_trip(&input);
            } else {
                let from = rng.usize(0..=input.len());
                round_trip_around(&input, from..rng.usize(from..=input.len()));
            }
        }
    }

    /// A thread keeps its stream and table from one record to the next:
    /// compressors of other dictionaries (a shorter one at the same
    /// address among them) taking turns on one thread each get their own.
    #[test]
    fn compressors_of_other_dictionaries_taking_turns_get_their_own() {
        const OTHER: &[u8] = b"a dictionary of another kind entirely, call.missed caller";
        let shorter = &DICTIONARY[..4000];
        let input = [&DICTIONARY[3900..4300], OTHER, &DICTIONARY[100..400]].concat();
        for _ in 0..3 {
            for dictionary in [shorter, DICTIONARY, OTHER] {
                let mut block = Vec::new();
                DictCompressor::new(dictionary).compress_into(&input, &mut block);
                let back =
                    lz4_flex::block::decompress_with_dict(&block, input.len(), dictionary).unwrap();
                assert_eq!(back, input, "against {} bytes", dictionary.len());
            }
        }
    }

    /// Input that does not compress grows by no more than LZ4's worst
    /// case.
    #[test]
    fn noise_grows_no_more_than_the_worst_case() {
        let mut rng = fastrand::Rng::with_seed(11);
        let noise: Vec<u8> = (0..4000).map(|_| rng.u8(..)).collect();
        let ours = round_trip(&noise).len();
        assert!(
            ours <= lz4_flex::block::get_maximum_output_size(noise.len()),
            "{ours} bytes for 4000 of noise"
        );
    }
}
