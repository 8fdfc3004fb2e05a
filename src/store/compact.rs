//! A small binary layout for the store's small, often written records
//! (call state, call statistics, dedupe markers, contacts), written
//! instead of JSON.
//!
//! Why: ingestion writes the first three on every call event, and a
//! follow-up reads and writes its contact twice; sled 0.34 copies a whole
//! leaf (up to 16 values) on every write to it, so their size is copied
//! again and again; their JSON also printed and parsed two or three
//! RFC 3339 timestamps each time (jiff: ≈740 instructions per print) and
//! repeated every field name. The binary form is about half the size or less
//! and costs a few hundred instructions to write or read.
//!
//! Layout: a first byte [`MARK`] (JSON, which every earlier version
//! wrote, starts with `{`, so readers tell the two apart and keep reading
//! old values), then fields in a fixed order per record type:
//! integers little-endian, strings as a u32 length and UTF-8 bytes,
//! optional values behind a 0/1 byte, timestamps as i64 seconds and i32
//! nanoseconds (jiff's own split: exact, what is written is read back).
//! The layouts are part of the stored format: a record type whose fields
//! change needs a mark of its own, with this one kept for reading (a
//! reader refuses bytes left after the last field, so a record of a
//! longer layout is never taken for a shorter one).
//!
//! Execution records (`run_record.rs`) are written with the same writer
//! behind a mark of their own, and use its variable-length pieces too:
//! LEB128 integers ([`Writer::varint`]) and strings behind such a length
//! ([`Writer::text`]), since they hold many short strings (a step's
//! field names and values) where a 4-byte length would be most of each.

use jiff::Timestamp;

/// The first byte of a compact record.
pub(super) const MARK: u8 = 1;

/// Builds a compact record. `Writer::default()` has no mark: a part of a
/// record kept to be copied into records later ([`Writer::raw`]).
#[derive(Default)]
pub(super) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub(super) fn new(capacity: usize) -> Writer {
        Writer::marked(MARK, capacity)
    }

    /// A record of another layout, behind its own first byte.
    pub(super) fn marked(mark: u8, capacity: usize) -> Writer {
        let mut bytes = Vec::with_capacity(capacity + 1);
        bytes.push(mark);
        Writer { bytes }
    }

    /// What is written so far.
    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
    }

    /// `v` in LEB128: seven bits a byte, low bits first, the high bit set
    /// on every byte but the last (one byte up to 127).
    pub(super) fn varint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.bytes.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.bytes.push(v as u8);
        self
    }

    /// A length or count, as [`Writer::varint`].
    pub(super) fn len(&mut self, n: usize) -> &mut Self {
        self.varint(n as u64)
    }

    /// Bytes behind their length as a [`Writer::varint`].
    pub(super) fn blob(&mut self, b: &[u8]) -> &mut Self {
        self.len(b.len()).raw(b)
    }

    /// A string behind its length as a [`Writer::varint`].
    pub(super) fn text(&mut self, s: &str) -> &mut Self {
        self.blob(s.as_bytes())
    }

    pub(super) fn opt_text(&mut self, s: Option<&str>) -> &mut Self {
        self.opt(s, |w, s| w.text(s))
    }

    /// An optional field: a 0/1 byte ([`Reader::flag`]), then the value
    /// if there is one, written by `write`.
    pub(super) fn opt<T>(
        &mut self,
        v: Option<T>,
        write: impl FnOnce(&mut Self, T) -> &mut Self,
    ) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => write(self.u8(1), v),
        }
    }

    /// Bytes as they are, with nothing to tell where they end.
    pub(super) fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(b);
        self
    }

    pub(super) fn f64(&mut self, v: f64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(super) fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }

    pub(super) fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(super) fn str(&mut self, s: &str) -> &mut Self {
        let len = u32::try_from(s.len()).expect("a stored string is far below 4 GiB");
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(s.as_bytes());
        self
    }

    pub(super) fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        self.opt(s, |w, s| w.str(s))
    }

    pub(super) fn time(&mut self, t: Timestamp) -> &mut Self {
        self.bytes.extend_from_slice(&t.as_second().to_le_bytes());
        self.bytes
            .extend_from_slice(&t.subsec_nanosecond().to_le_bytes());
        self
    }

    pub(super) fn opt_time(&mut self, t: Option<Timestamp>) -> &mut Self {
        self.opt(t, |w, t| w.time(t))
    }

    pub(super) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// A stored record: compact, its fields read by `read` in the order they
/// were written and then to its end, or JSON as an earlier version wrote
/// it.
pub(super) fn read_record<T: serde::de::DeserializeOwned>(
    stored: &[u8],
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, String>,
) -> Result<T, String> {
    let Some(mut reader) = Reader::new(stored) else {
        return serde_json::from_slice(stored).map_err(|e| e.to_string());
    };
    let record = read(&mut reader)?;
    reader.finish()?;
    Ok(record)
}

/// Reads a compact record's fields in the order they were written. Every
/// read fails with what was being read when the bytes are cut short or
/// not what the layout says.
pub(super) struct Reader<'b> {
    rest: &'b [u8],
}

impl<'b> Reader<'b> {
    /// A reader after the mark; `None` if `stored` is not compact.
    fn new(stored: &'b [u8]) -> Option<Reader<'b>> {
        Reader::marked(stored, MARK)
    }

    /// A reader after `mark`; `None` if `stored` starts with another byte.
    pub(super) fn marked(stored: &'b [u8], mark: u8) -> Option<Reader<'b>> {
        match stored.split_first() {
            Some((&first, rest)) if first == mark => Some(Reader { rest }),
            _ => None,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'b [u8], String> {
        if self.rest.len() < n {
            return Err(format!("compact record cut short in {what}"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }

    /// The end of the record: every byte must have been read (bytes
    /// left over mean a layout this version does not know).
    pub(super) fn finish(self) -> Result<(), String> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(format!("compact record: {n} bytes after its last field")),
        }
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    pub(super) fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub(super) fn str(&mut self, what: &str) -> Result<&'b str, String> {
        let len = u32::from_le_bytes(self.array(what)?) as usize;
        std::str::from_utf8(self.take(len, what)?)
            .map_err(|e| format!("compact record: {what} is not UTF-8: {e}"))
    }

    /// A 0/1 byte: a boolean, or whether an optional field is there.
    pub(super) fn flag(&mut self, what: &str) -> Result<bool, String> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("compact record: {what} is {other}, not 0 or 1")),
        }
    }

    /// A [`Writer::opt`]: its value read by `read` if the flag says so.
    pub(super) fn opt<T>(
        &mut self,
        what: &str,
        read: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.flag(what)? {
            false => Ok(None),
            true => read(self).map(Some),
        }
    }

    pub(super) fn opt_str(&mut self, what: &str) -> Result<Option<&'b str>, String> {
        self.opt(what, |r| r.str(what))
    }

    pub(super) fn time(&mut self, what: &str) -> Result<Timestamp, String> {
        let seconds = i64::from_le_bytes(self.array(what)?);
        let nanos = i32::from_le_bytes(self.array(what)?);
        Timestamp::new(seconds, nanos).map_err(|e| format!("compact record: {what}: {e}"))
    }

    pub(super) fn opt_time(&mut self, what: &str) -> Result<Option<Timestamp>, String> {
        self.opt(what, |r| r.time(what))
    }

    /// A [`Writer::varint`]; more than ten bytes, or bits past 64, are
    /// damage.
    pub(super) fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8(what)?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                break;
            }
            v |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("compact record: {what} has a length past 64 bits"))
    }

    /// A [`Writer::len`]: also a count of what follows, so it cannot be
    /// more than the bytes left (each item takes at least one), which keeps
    /// a damaged count from reserving memory it states.
    pub(super) fn len(&mut self, what: &str) -> Result<usize, String> {
        let n = self.varint(what)?;
        match usize::try_from(n) {
            Ok(n) if n <= self.rest.len() => Ok(n),
            _ => Err(format!("compact record cut short in {what}")),
        }
    }

    pub(super) fn blob(&mut self, what: &str) -> Result<&'b [u8], String> {
        let n = self.len(what)?;
        self.take(n, what)
    }

    pub(super) fn text(&mut self, what: &str) -> Result<&'b str, String> {
        std::str::from_utf8(self.blob(what)?)
            .map_err(|e| format!("compact record: {what} is not UTF-8: {e}"))
    }

    pub(super) fn opt_text(&mut self, what: &str) -> Result<Option<&'b str>, String> {
        self.opt(what, |r| r.text(what))
    }

    pub(super) fn f64(&mut self, what: &str) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_as_written_and_a_cut_record_names_the_field() {
        let at = Timestamp::new(1_800_000_000, 123_456_789).unwrap();
        let bytes = Writer::new(64)
            .u8(7)
            .u64(u64::MAX - 1)
            .str("call.missed")
            .opt_str(None)
            .opt_str(Some("+5215512345678"))
            .time(at)
            .opt_time(None)
            .opt_time(Some(Timestamp::new(-5, -250_000_000).unwrap()))
            .finish();
        assert!(
            Reader::new(br#"{"seq":1}"#).is_none(),
            "JSON is not compact"
        );
        let mut r = Reader::new(&bytes).unwrap();
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u64("b").unwrap(), u64::MAX - 1);
        assert_eq!(r.str("c").unwrap(), "call.missed");
        assert_eq!(r.opt_str("d").unwrap(), None);
        assert_eq!(r.opt_str("e").unwrap(), Some("+5215512345678"));
        assert_eq!(r.time("f").unwrap(), at);
        assert_eq!(r.opt_time("g").unwrap(), None);
        assert_eq!(
            r.opt_time("h").unwrap(),
            Some(Timestamp::new(-5, -250_000_000).unwrap())
        );
        assert!(r.u8("past the end").is_err());
        assert!(Reader::new(&bytes[..1]).unwrap().finish().is_ok());
        assert_eq!(
            Reader::new(&bytes[..3]).unwrap().finish().unwrap_err(),
            "compact record: 2 bytes after its last field"
        );

        let cut = &bytes[..bytes.len() - 3];
        let mut r = Reader::new(cut).unwrap();
        r.u8("a").unwrap();
        r.u64("b").unwrap();
        r.str("c").unwrap();
        r.opt_str("d").unwrap();
        r.opt_str("e").unwrap();
        r.time("f").unwrap();
        r.opt_time("g").unwrap();
        assert_eq!(
            r.opt_time("last call").unwrap_err(),
            "compact record cut short in last call"
        );
    }
}
