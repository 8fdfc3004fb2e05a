//! Provider timestamps → UTC instants.
//!
//! Seen in the wild: Unix seconds (`1715697131`), Unix milliseconds
//! (`1634567890123`, WAHA), either as a string, RFC 3339 (`2026-05-14T14:32:11Z`),
//! and TimelinesAI's `2026-05-24 10:35:18 +0200`.

use jiff::Timestamp;
use serde_json::Value;

/// Numbers at or above this are milliseconds: 1e11 seconds is the year 5138,
/// 1e11 milliseconds is 1973.
const MILLIS_THRESHOLD: f64 = 1e11;

/// Parse a provider time. Returns a human-readable reason on failure.
pub fn parse_time(value: &Value) -> Result<Timestamp, String> {
    match value {
        Value::Number(n) => {
            let f = n.as_f64().ok_or("is not a finite number")?;
            from_unix(f)
        }
        Value::String(s) => parse_time_str(s),
        other => Err(format!(
            "expected a time (Unix seconds or milliseconds, or RFC 3339), got {}",
            super::json_type_name(other)
        )),
    }
}

fn from_unix(f: f64) -> Result<Timestamp, String> {
    if !f.is_finite() || f < 0.0 {
        return Err(format!("{f} is not a valid Unix time"));
    }
    let millis = if f >= MILLIS_THRESHOLD { f } else { f * 1000.0 };
    if millis > 253_402_300_799_000.0 {
        return Err(format!("{f} is too far in the future to be a Unix time"));
    }
    Timestamp::from_millisecond(millis as i64).map_err(|e| e.to_string())
}

pub(super) fn parse_time_str(s: &str) -> Result<Timestamp, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let f: f64 = t.parse().map_err(|_| format!("`{t}` is not a number"))?;
        return from_unix(f);
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    // TimelinesAI: "2026-05-24 10:35:18 +0200"
    if let Ok(zoned) =
        jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S %z", t).and_then(|p| p.to_timestamp())
    {
        return Ok(zoned);
    }
    // A date-time with no offset at all is taken as UTC.
    if let Ok(dt) = t.replace(' ', "T").parse::<jiff::civil::DateTime>() {
        if let Ok(z) = dt.to_zoned(jiff::tz::TimeZone::UTC) {
            return Ok(z.timestamp());
        }
    }
    Err(format!(
        "`{}` is not a time (expected Unix seconds or milliseconds, RFC 3339, or `YYYY-MM-DD HH:MM:SS +HHMM`)",
        s.chars().take(40).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(v: Value) -> String {
        parse_time(&v).unwrap().to_string()
    }

    #[test]
    fn every_provider_time_format_becomes_utc() {
        assert_eq!(utc(json!(1715697131)), "2024-05-14T14:32:11Z");
        assert_eq!(utc(json!(1634567890123u64)), "2021-10-18T14:38:10.123Z");
        assert_eq!(utc(json!("1715697131")), "2024-05-14T14:32:11Z");
        assert_eq!(utc(json!("1634567890123")), "2021-10-18T14:38:10.123Z");
        assert_eq!(utc(json!("2026-05-14T14:32:11Z")), "2026-05-14T14:32:11Z");
        assert_eq!(
            utc(json!("2026-05-14T16:32:11+02:00")),
            "2026-05-14T14:32:11Z"
        );
        assert_eq!(
            utc(json!("2026-05-24 10:35:18 +0200")),
            "2026-05-24T08:35:18Z"
        );
        assert_eq!(utc(json!("2026-05-24 10:35:18")), "2026-05-24T10:35:18Z");
    }

    #[test]
    fn nonsense_times_are_refused() {
        for bad in [
            json!("yesterday"),
            json!(true),
            json!(-5),
            json!(1e300),
            json!(""),
        ] {
            assert!(parse_time(&bad).is_err(), "{bad} should be refused");
        }
    }
}
