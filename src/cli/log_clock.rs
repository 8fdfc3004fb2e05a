//! The log's timestamps, written as tracing-subscriber's `SystemTime`
//! writes them (`2026-12-05T19:45:39.017638Z`, UTC, microseconds), with the
//! part up to the second formatted once per second and thread instead of
//! on every line.
//!
//! Why: `serve` logs two lines per event at the default level, and the
//! date and time, each field through `fmt::write`, were a quarter of a
//! line's cost (≈2.3 k of ≈9.5 k instructions per line, callgrind of the
//! follow-up case). Lines within one second share their prefix; only the
//! microseconds are new.

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogClock;

impl FormatTime for LogClock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).ok();
        match since.and_then(|since| write_time(w, since)) {
            Some(written) => written,
            // A clock before 1970 or past 9999: as tracing-subscriber
            // writes it (a sign, more digits).
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

thread_local! {
    /// The second last written on this thread, and its text up to the dot.
    static SECOND: RefCell<Option<(u64, String)>> = const { RefCell::new(None) };
}

/// `since` the Unix epoch, as `YYYY-MM-DDTHH:MM:SS.ffffffZ`; `None` (and
/// nothing written) past the last second this layout holds.
fn write_time(w: &mut impl fmt::Write, since: Duration) -> Option<fmt::Result> {
    let secs = since.as_secs();
    // `try_with`: a line logged while this thread's locals are being torn
    // down goes to tracing-subscriber's clock.
    SECOND
        .try_with(|cell| {
            let mut cached = cell.borrow_mut();
            let prefix = match &*cached {
                Some((second, prefix)) if *second == secs => prefix,
                _ => &cached.insert((secs, second_prefix(secs)?)).1,
            };
            let mut micros = since.subsec_micros();
            let mut digits = *b"000000Z";
            for d in digits[..6].iter_mut().rev() {
                *d = b'0' + (micros % 10) as u8;
                micros /= 10;
            }
            let digits = std::str::from_utf8(&digits).expect("ASCII digits");
            Some(w.write_str(prefix).and_then(|()| w.write_str(digits)))
        })
        .ok()
        .flatten()
}

/// `YYYY-MM-DDTHH:MM:SS.` of a second since the epoch, for years up to 9999.
fn second_prefix(secs: u64) -> Option<String> {
    let t = jiff::Timestamp::from_second(i64::try_from(secs).ok()?).ok()?;
    let text = t.strftime("%Y-%m-%dT%H:%M:%S.").to_string();
    (text.len() == 20).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(since: Duration) -> String {
        let mut out = String::new();
        write_time(&mut out, since)
            .expect("a year up to 9999")
            .unwrap();
        out
    }

    /// Every instant reads back as itself to the microsecond, in the
    /// layout of the log's earlier timestamps, whether its second was just
    /// formatted for an earlier line or not.
    #[test]
    fn each_line_gets_its_own_instant() {
        let cases = [
            (1_764_962_739, 17_638_000),
            (1_764_962_739, 999_999_999),
            (1_764_962_740, 0),
            (1_764_962_739, 5_000),
            (0, 1_000),
            (jiff::Timestamp::MAX.as_second() as u64, 999_999_000),
        ];
        for (secs, nanos) in cases {
            let since = Duration::new(secs, nanos);
            let text = formatted(since);
            assert_eq!(text.len(), 27, "{text}");
            assert_eq!(&text[4..5], "-");
            assert_eq!(&text[10..11], "T");
            assert!(text.ends_with('Z'), "{text}");
            let back: jiff::Timestamp = text.parse().unwrap();
            let expected =
                jiff::Timestamp::new(secs as i64, (nanos / 1_000 * 1_000) as i32).unwrap();
            assert_eq!(back, expected, "{text}");
        }
        assert_eq!(
            formatted(Duration::new(1_764_962_739, 17_638_000)),
            "2025-12-05T19:25:39.017638Z"
        );
    }

    /// The same text as tracing-subscriber's own clock, read at (nearly)
    /// the same moment.
    #[test]
    fn it_writes_what_tracing_subscriber_s_clock_writes() {
        for _ in 0..50 {
            let (mut ours, mut theirs) = (String::new(), String::new());
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            LogClock.format_time(&mut Writer::new(&mut ours)).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
            // Digits where theirs has digits, the same separators.
            for (a, b) in ours.bytes().zip(theirs.bytes()) {
                assert_eq!(a.is_ascii_digit(), b.is_ascii_digit(), "{ours} {theirs}");
                if !a.is_ascii_digit() {
                    assert_eq!(a, b, "{ours} {theirs}");
                }
            }
            let ours: jiff::Timestamp = ours.parse().unwrap();
            let theirs: jiff::Timestamp = theirs.parse().unwrap();
            let apart = ours.duration_since(theirs);
            assert!(apart >= jiff::SignedDuration::ZERO, "{apart:?}");
            assert!(apart < jiff::SignedDuration::from_millis(100), "{apart:?}");
        }
    }

    /// Past the last second this layout (and jiff) can hold, nothing is
    /// written, so the clock can hand the line to tracing-subscriber's.
    #[test]
    fn past_year_9999_the_line_goes_to_tracing_subscriber_s_clock() {
        let last = jiff::Timestamp::MAX.as_second() as u64;
        assert!(second_prefix(last).is_some_and(|p| p.starts_with("9999-12-")));
        let mut out = String::new();
        assert!(write_time(&mut out, Duration::new(253_402_300_800, 0)).is_none());
        assert_eq!(out, "", "nothing written before the fallback");
        let mut line = String::new();
        LogClock.format_time(&mut Writer::new(&mut line)).unwrap();
        assert_eq!(line.len(), 27, "{line}");
    }
}
