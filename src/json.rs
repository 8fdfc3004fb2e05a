//! Typed JSON readers as strict as a [`serde_json::Value`].
//!
//! Reading a payload into borrowed structs instead of a `Value` tree is
//! much cheaper (the Meta calls fast path, a send's answer), but serde's
//! readers are laxer than a `Value` parse in two ways, each closed here:
//! a derived struct also accepts an array (its fields by position), which
//! [`ObjectOnly`] refuses; and a value serde skips (any key a struct does
//! not name) is scanned, not checked, which [`accepted_as_value`] makes
//! up for: one pass over the text when that can tell, else [`Checked`],
//! which visits every value (numbers in range, no lone surrogates, the
//! nesting limit, no raw value marker).

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A JSON object read into `T`; anything else, an array included, is an
/// error.
pub struct ObjectOnly<T>(pub T);

impl<T> std::ops::Deref for ObjectOnly<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Visit<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ObjectOnly<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        deserializer.deserialize_map(Visit(PhantomData))
    }
}

/// Whether `text`, which a serde read has already accepted, is also
/// accepted by a `Value` parse and read by it as the JSON it looks like:
/// the same answer as reading it whole with [`Checked`], which is what it
/// does for the rare body a single pass over the bytes cannot clear.
///
/// A read that skips values (serde_json's `ignore_value`, behind every
/// field a typed reader does not name) still checks the syntax, the
/// strings' control characters and escapes and the `\u` escapes' hex
/// digits. What it lets through and a `Value` parse refuses or reads
/// otherwise is only: a `\u` escape of a lone surrogate, a number beyond
/// `f64`'s range, nesting past serde_json's limit of 128, and an object
/// whose key is serde_json's marker for a raw value ([`RAW_VALUE_KEY`],
/// which a `Value` parse reads as the JSON text in its value, or
/// refuses). A text with no `\u` escape and no `$` in its strings (an
/// escape could spell the marker, which starts with a `$`), no number
/// with an exponent or longer than 300 characters (without an exponent,
/// less than 10^300) and no nesting deeper than 64 has none of these.
/// Meta's webhooks are such texts; [`Checked`] cost about 8.5 k
/// instructions per event (callgrind), a fifteenth of the request
/// handler.
pub fn accepted_as_value(text: &str) -> bool {
    plainly_accepted(text.as_bytes()) || serde_json::from_str::<Checked>(text).is_ok()
}

/// The key by which serde_json (with its `raw_value` feature, which
/// ringback uses) marks a raw value: an object whose first key it is
/// reads, as a `Value`, as the JSON text its value holds.
const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

/// See [`accepted_as_value`]: `true` only for a text that holds none of
/// what a skipping read lets through; `false` says "read it whole".
fn plainly_accepted(bytes: &[u8]) -> bool {
    const MAX_DEPTH: usize = 64;
    const MAX_NUMBER_LEN: usize = 300;
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        at += 1;
        match byte {
            b'"' => loop {
                // Inside a string only its end and escapes matter.
                match bytes.get(at) {
                    None => return false,
                    Some(b'"') => {
                        at += 1;
                        break;
                    }
                    Some(b'\\') => {
                        // A `\u` escape may be a lone surrogate, or spell
                        // the raw value marker.
                        if bytes.get(at + 1) == Some(&b'u') {
                            return false;
                        }
                        at += 2;
                    }
                    // Perhaps the raw value marker.
                    Some(b'$') => return false,
                    Some(_) => at += 1,
                }
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let start = at - 1;
                while let Some(&c) = bytes.get(at) {
                    match c {
                        b'0'..=b'9' | b'.' | b'+' | b'-' => at += 1,
                        b'e' | b'E' => return false,
                        _ => break,
                    }
                }
                if at - start > MAX_NUMBER_LEN {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Any JSON value, read as strictly as into a `Value` (serde_json checks
/// a number's range, a string's escapes and the nesting depth when a value
/// is visited, not when it is skipped) and kept nowhere. A string that is
/// the [`RAW_VALUE_KEY`] is refused wherever it stands: as a key, a
/// `Value` parse would read its object as something else than it looks
/// like, or refuse it (as a value it would not, but refusing only sends
/// such a body the general way).
pub struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Checked, E> {
        if s == RAW_VALUE_KEY {
            return Err(E::custom("serde_json's raw value marker"));
        }
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use serde::de::IgnoredAny;
    use serde_json::Value;

    use super::{accepted_as_value, plainly_accepted, RAW_VALUE_KEY};

    /// Pieces of JSON at the edges of what a `Value` parse takes.
    const NUMBERS: &[&str] = &[
        "0",
        "-0",
        "12",
        "-7.25",
        "1e5",
        "2E-3",
        "1e308",
        "1e309",
        "-1e400",
        "1E-400",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "18446744073709551616",
    ];
    const STRINGS: &[&str] = &[
        r#""plain""#,
        r#""caf\u00e9 \n \" \\ \/""#,
        "\"Jos\u{e9} raw UTF-8\"",
        r#""\ud83d\ude00""#,
        r#""\uD83D\uDE00""#,
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        r#""x\udbff""#,
        r#""\u0000""#,
        r#""\uffff""#,
    ];

    fn long_number(digits: usize) -> String {
        format!("1{}", "0".repeat(digits - 1))
    }

    /// serde_json's raw value marker as a key, plainly and spelled with
    /// escapes.
    const MARKER_KEYS: &[&str] = &[
        r#""$serde_json::private::RawValue""#,
        r#""\u0024serde_json::private::RawValue""#,
        r#""$serde_json::private::RawVal\u0075e""#,
    ];

    /// A random JSON text: nested arrays and objects of the pieces above,
    /// deeper than serde_json's limit now and then, and now and then an
    /// object keyed by the raw value marker (`marked` is then set).
    fn text(rng: &mut fastrand::Rng, depth: usize, marked: &mut bool) -> String {
        let deep = rng.u8(..) < 4;
        match rng.u8(..6) {
            _ if depth > 150 => "null".into(),
            0 => NUMBERS[rng.usize(..NUMBERS.len())].to_string(),
            1 => STRINGS[rng.usize(..STRINGS.len())].to_string(),
            2 => [long_number(299), long_number(300), long_number(310)][rng.usize(..3)].clone(),
            3 if deep => {
                let n = rng.usize(60..140);
                let inner = text(rng, depth + n, marked);
                format!("{}{inner}{}", "[".repeat(n), "]".repeat(n))
            }
            3 | 4 => {
                let items: Vec<String> = (0..rng.usize(..4))
                    .map(|_| text(rng, depth + 1, marked))
                    .collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let fields: Vec<String> = (0..rng.usize(..4))
                    .map(|_| {
                        let key = if rng.u8(..) < 8 {
                            *marked = true;
                            MARKER_KEYS[rng.usize(..MARKER_KEYS.len())]
                        } else {
                            STRINGS[rng.usize(..STRINGS.len())]
                        };
                        let value = if rng.bool() {
                            r#""[1, {\"a\": 2}]""#.to_string()
                        } else {
                            text(rng, depth + 1, marked)
                        };
                        format!("{key}: {value}")
                    })
                    .collect();
                format!("{{{}}}", fields.join(", "))
            }
        }
    }

    /// The one-pass check never clears a text a `Value` parse refuses or
    /// reads as something else, and with the fallback the answer is always
    /// the `Value` parse's, but for a text with the raw value marker as a
    /// key, which is always refused (the general parser reads it).
    #[test]
    fn the_answer_is_always_a_value_parse_s() {
        let mut rng = fastrand::Rng::with_seed(7);
        let (mut cleared, mut refused, mut marked_texts) = (0, 0, 0);
        for _ in 0..20_000 {
            let mut marked = false;
            let t = text(&mut rng, 0, &mut marked);
            if serde_json::from_str::<IgnoredAny>(&t).is_err() {
                continue; // not a text a serde read accepted
            }
            let as_value = serde_json::from_str::<Value>(&t).is_ok() && !marked;
            if plainly_accepted(t.as_bytes()) {
                assert!(as_value, "cleared in one pass, not read as it is: {t}");
                cleared += 1;
            }
            assert_eq!(accepted_as_value(&t), as_value, "{t}");
            refused += usize::from(!as_value);
            marked_texts += usize::from(marked);
        }
        // Every kind was met often enough to mean something.
        assert!(
            cleared > 2_000 && refused > 2_000 && marked_texts > 200,
            "{cleared} {refused} {marked_texts}"
        );
    }

    /// The marker is live: with it as the first key, a `Value` parse reads
    /// the object as the JSON text in its value, or refuses it.
    #[test]
    fn the_raw_value_marker_is_what_serde_json_reads_as_one() {
        let inner = format!(r#"{{"{RAW_VALUE_KEY}": "[1, 2]"}}"#);
        assert_eq!(
            serde_json::from_str::<Value>(&inner).unwrap(),
            serde_json::json!([1, 2])
        );
        let refused = format!(r#"{{"a": {{"{RAW_VALUE_KEY}": 0}}}}"#);
        assert!(serde_json::from_str::<Value>(&refused).is_err());
        assert!(serde_json::from_str::<IgnoredAny>(&refused).is_ok());
        assert!(!accepted_as_value(&inner) && !accepted_as_value(&refused));
    }

    #[test]
    fn each_thing_a_skipping_read_lets_through_is_refused() {
        for (what, t) in [
            ("a lone surrogate", r#"{"a": "\ud800"}"#.to_string()),
            (
                "the raw value marker, escaped",
                r#"{"x": {"\u0024serde_json::private::RawValue": 0}}"#.to_string(),
            ),
            ("a trailing surrogate alone", r#"["\uDC00"]"#.to_string()),
            ("a number out of range", r#"{"a": 1e400}"#.to_string()),
            (
                "a long number out of range",
                format!("[{}]", long_number(310)),
            ),
            (
                "nesting past the limit",
                format!("{}{}", "[".repeat(200), "]".repeat(200)),
            ),
        ] {
            assert!(serde_json::from_str::<IgnoredAny>(&t).is_ok(), "{what}");
            assert!(!accepted_as_value(&t), "{what}");
        }
    }

    /// Meta's own webhooks are cleared without the second read.
    #[test]
    fn meta_webhooks_are_cleared_in_one_pass() {
        for body in [
            include_str!("../tests/fixtures/meta/terminate_unanswered.json"),
            include_str!("../tests/fixtures/meta/batch_two_entries.json"),
            include_str!("../tests/fixtures/meta/user_initiated_connect.json"),
        ] {
            assert!(plainly_accepted(body.as_bytes()));
        }
        // What is cleared and what needs the read whole can sit side by side.
        assert!(plainly_accepted(
            br#"{"a": [1.5, -2, "e\\u00e9"], "b": true}"#
        ));
        assert!(!plainly_accepted(br#"{"a": "e\u00e9"}"#));
        assert!(!plainly_accepted(br#"{"a": [1.5e3]}"#));
        assert!(accepted_as_value(r#"{"a": [1.5e3], "b": "\ud83d\ude00"}"#));
    }
}
