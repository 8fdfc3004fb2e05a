//! Phone and WhatsApp id normalisation.
//!
//! Providers name the caller in many ways: `+5215512345678`,
//! `5215512345678`, `5215512345678@c.us`, `5215512345678@s.whatsapp.net`,
//! `5215512345678:12@s.whatsapp.net` (a device suffix), or a privacy id
//! `123456789@lid` that is *not* a phone number. Everything that is a phone
//! becomes E.164 with a leading `+`; a `@lid` id is kept exactly as given
//! and flagged, so workflows can tell it cannot receive an SMS-style lookup.

use std::fmt;

/// The other party of a call, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// E.164 with `+`, or the privacy id as given.
    pub id: String,
    pub is_phone: bool,
}

/// Why a string is not a usable caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneError(pub String);

impl fmt::Display for PhoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const JID_SUFFIXES: [&str; 2] = ["@c.us", "@s.whatsapp.net"];

/// Normalise a caller as providers send it. See the module docs for shapes.
pub fn normalise_phone(raw: &str) -> Result<Caller, PhoneError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(PhoneError("is empty".into()));
    }
    if let Some(user) = s.strip_suffix("@lid") {
        // `<id>:<device>@lid`: the device does not belong to the id.
        let user = user.split(':').next().unwrap_or(user);
        if user.is_empty() {
            return Err(PhoneError(format!(
                "`{s}` is a privacy id with no user part"
            )));
        }
        return Ok(Caller {
            id: format!("{user}@lid"),
            is_phone: false,
        });
    }
    let mut number = s;
    for suffix in JID_SUFFIXES {
        if let Some(user) = s.strip_suffix(suffix) {
            // `<digits>:<device>@s.whatsapp.net`: the device does not belong
            // to the number.
            number = user.split(':').next().unwrap_or(user);
            break;
        }
    }
    if number.contains('@') {
        return Err(PhoneError(format!(
            "`{}` is not a phone number or a WhatsApp user id (groups and broadcasts cannot call)",
            truncate(s)
        )));
    }
    let body = number.strip_prefix('+').unwrap_or(number);
    let body = body
        .strip_prefix("00")
        .filter(|_| !number.starts_with('+'))
        .unwrap_or(body);
    let mut digits = String::with_capacity(body.len() + 1);
    digits.push('+');
    for ch in body.chars() {
        match ch {
            '0'..='9' => digits.push(ch),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => {
                return Err(PhoneError(format!(
                    "`{}` is not a phone number (unexpected character {ch:?})",
                    truncate(s)
                )))
            }
        }
    }
    let count = digits.len() - 1;
    if !(6..=15).contains(&count) {
        return Err(PhoneError(format!(
            "`{}` is not a phone number ({count} digits; E.164 has at most 15)",
            truncate(s)
        )));
    }
    if digits.as_bytes()[1] == b'0' {
        return Err(PhoneError(format!(
            "`{}` has no country code (an international number cannot start with 0)",
            truncate(s)
        )));
    }
    Ok(Caller {
        id: digits,
        is_phone: true,
    })
}

/// ISO 3166-1 alpha-2 country of an E.164 number (`+52...` → `MX`), when the
/// numbering plan says.
///
/// A calling code that belongs to one country (`52` is Mexico's alone)
/// answers from the metadata's index; only shared codes (`1`, `7`, `44`,
/// ...) need the full parse, which is several microseconds of regular
/// expressions and was a tenth of ingestion's parsing. Calling codes are
/// prefix-free, so the first prefix of 1 to 3 digits that is one is it.
pub fn country_of(e164: &str) -> Option<String> {
    let digits = e164.strip_prefix('+')?;
    let database = &*phonenumber::metadata::DATABASE;
    for len in 1..=3.min(digits.len()) {
        let Some(Ok(code)) = digits.get(..len).map(str::parse::<u16>) else {
            break;
        };
        let Some(regions) = database.region(&code) else {
            continue;
        };
        match regions.as_slice() {
            [only] if *only != "001" => return Some((*only).to_string()),
            _ => break,
        }
    }
    let number = phonenumber::parse(None, e164).ok()?;
    let country = number.country().id()?;
    Some(country.as_ref().to_string())
}

/// Load the numbering-plan metadata behind [`country_of`] now. The first
/// lookup parses it (≈90 ms on the development VM); done inside the first
/// webhook it stalled every request arriving meanwhile, which was the
/// `ack_max` of every load-bench case and most of the p99 at a fixed rate.
/// The server calls this while it starts, before it listens.
pub fn warm_up() {
    let _ = country_of("+14155550100");
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        let head: String = s.chars().take(40).collect();
        format!("{head}…")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(raw: &str) -> String {
        let c = normalise_phone(raw).unwrap();
        assert!(c.is_phone, "{raw} should be a phone");
        c.id
    }

    #[test]
    fn every_whatsapp_spelling_of_a_number_becomes_e164() {
        assert_eq!(phone("+5215512345678"), "+5215512345678");
        assert_eq!(phone("5215512345678"), "+5215512345678");
        assert_eq!(phone("5215512345678@c.us"), "+5215512345678");
        assert_eq!(phone("5215512345678@s.whatsapp.net"), "+5215512345678");
        assert_eq!(phone("5215512345678:12@s.whatsapp.net"), "+5215512345678");
        assert_eq!(phone(" +1 (415) 555-2671 "), "+14155552671");
        assert_eq!(phone("004915123456789"), "+4915123456789");
    }

    #[test]
    fn a_privacy_id_is_kept_as_given_and_is_not_a_phone() {
        let c = normalise_phone("123456789012345@lid").unwrap();
        assert_eq!(c.id, "123456789012345@lid");
        assert!(!c.is_phone);
        assert_eq!(
            normalise_phone("123456789012345:31@lid").unwrap().id,
            "123456789012345@lid"
        );
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for bad in [
            "",
            "abc",
            "12",
            "1234567890123456789",
            "120363025@g.us",
            "+0123456789",
            "@lid",
        ] {
            assert!(normalise_phone(bad).is_err(), "{bad:?} should be refused");
        }
        let err = normalise_phone("55x5512345678").unwrap_err();
        assert!(err.0.contains("unexpected character"), "{err}");
    }

    #[test]
    fn country_comes_from_the_numbering_plan() {
        assert_eq!(country_of("+5215512345678").as_deref(), Some("MX"));
        assert_eq!(country_of("+14155552671").as_deref(), Some("US"));
        assert_eq!(country_of("+442079460958").as_deref(), Some("GB"));
        assert_eq!(country_of("+34612345678").as_deref(), Some("ES"));
        // Shared calling codes go through the full parse.
        assert_eq!(country_of("+16135550123").as_deref(), Some("CA"));
        assert_eq!(country_of("+77012345678").as_deref(), Some("KZ"));
        assert_eq!(country_of("+79123456789").as_deref(), Some("RU"));
        // Non-geographic numbers (`001`) have no country.
        assert_eq!(country_of("+80012345678"), None);
        assert_eq!(country_of("+é"), None);
    }
}
