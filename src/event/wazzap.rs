//! Wazzap (seed 000): one small flat payload per call event.
//!
//! ```json
//! {"event": "call.missed", "phone": "+5215512345678", "country": "MX", "ts": "2026-05-14T14:32:11Z"}
//! ```
//!
//! | Wazzap `event` | canonical kind |
//! |---|---|
//! | `call.incoming` | `call.incoming` |
//! | `call.accept` | `call.accepted` |
//! | `call.reject` | `call.rejected` |
//! | `call.missed` | `call.missed` |
//!
//! The canonical spellings `call.accepted` / `call.rejected` are accepted too.
//! Any other `call.*` name is refused (naming `event`): Wazzap documents
//! exactly four call events, so an unknown one is a misconfigured sender, and
//! guessing its meaning would run the wrong workflows. A non-call event name
//! is kept under its own name, with the caller optional.
//!
//! Wazzap sends no event id and no business number (each webhook URL belongs
//! to one number: the source's `business`). Retries do not exist ("no retries
//! on 5xx"), so the identity is the content: kind, caller and `ts` as sent.

use serde_json::Value;

use super::access::{as_sent, opt_str, req_str};
use super::{kind, normalise_phone, parse_time, Draft, Identity, ParseError};

pub(crate) fn parse(v: &Value) -> Result<Vec<Draft>, ParseError> {
    let event = req_str(v, "event", "")?;
    if event.trim().is_empty() {
        return Err(ParseError::field("event", "is empty"));
    }
    let canonical = match event {
        "call.incoming" => Some(kind::CALL_INCOMING),
        "call.accept" | "call.accepted" => Some(kind::CALL_ACCEPTED),
        "call.reject" | "call.rejected" => Some(kind::CALL_REJECTED),
        "call.missed" => Some(kind::CALL_MISSED),
        _ => None,
    };
    if canonical.is_none() && (event.starts_with("call.") || event == "call") {
        return Err(ParseError::field(
            "event",
            format!(
                "unknown Wazzap call event `{}` (expected call.incoming, call.accept, call.reject or call.missed)",
                clip(event)
            ),
        ));
    }

    let (at, sent_ts) = match v.get("ts") {
        None | Some(Value::Null) => (None, String::new()),
        Some(ts) => {
            let at = parse_time(ts).map_err(|e| ParseError::field("ts", e))?;
            (Some(at), as_sent(ts))
        }
    };

    let phone = opt_str(v, "phone", "")?;
    let caller = match (canonical, phone) {
        // A call event is about a caller: without one there is nothing to do.
        (Some(_), None) => return Err(ParseError::missing("phone")),
        (Some(_), Some(raw)) => {
            Some(normalise_phone(raw).map_err(|e| ParseError::field("phone", e.to_string()))?)
        }
        // A non-call event may name nobody, or somebody we cannot read.
        (None, raw) => raw.and_then(|r| normalise_phone(r).ok()),
    };

    let mut d = Draft::new(canonical.unwrap_or(event), Identity::Content(sent_ts));
    d.caller = caller;
    d.country = opt_str(v, "country", "")?.and_then(country_code);
    d.at = at;
    Ok(vec![d])
}

/// An ISO 3166-1 alpha-2 code, upper-cased; anything else is ignored so the
/// country is derived from the number instead.
fn country_code(raw: &str) -> Option<String> {
    let t = raw.trim();
    (t.len() == 2 && t.bytes().all(|b| b.is_ascii_alphabetic())).then(|| t.to_ascii_uppercase())
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use crate::event::testing;
    use crate::event::{parse, Direction, Event, ParseContext, ParseError, Provider};

    const MISSED: &str = include_str!("../../tests/fixtures/wazzap/call_missed.json");
    const MISSED_SEED_2: &str =
        include_str!("../../tests/fixtures/wazzap/call_missed_seed_example.json");
    const INCOMING: &str = include_str!("../../tests/fixtures/wazzap/call_incoming.json");
    const ACCEPT: &str = include_str!("../../tests/fixtures/wazzap/call_accept.json");
    const REJECT: &str = include_str!("../../tests/fixtures/wazzap/call_reject.json");

    fn ctx(provider: Provider, business: Option<&'static str>) -> ParseContext<'static> {
        ParseContext {
            business,
            ..testing::ctx("wazzap-mx", provider)
        }
    }

    fn one(body: &str) -> Event {
        testing::only(body, &ctx(Provider::Wazzap, Some("+5215500000000")))
    }

    fn err(body: &str) -> ParseError {
        testing::error(body, &ctx(Provider::Wazzap, None))
    }

    fn field_of(e: ParseError) -> String {
        testing::field(&e).0.to_string()
    }

    #[test]
    fn the_seed_missed_call_becomes_a_canonical_missed_call() {
        let e = one(MISSED);
        assert_eq!(e.kind, "call.missed");
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(e.caller.as_deref(), Some("+5215512345678"));
        assert!(e.caller_is_phone);
        assert_eq!(e.country.as_deref(), Some("MX"));
        assert_eq!(e.at.to_string(), "2026-05-14T14:32:11Z");
        assert_eq!(e.provider, Provider::Wazzap);
        assert_eq!(e.source, "wazzap-mx");
        // Wazzap never names the business: the source's number is used.
        assert_eq!(e.business.as_deref(), Some("+5215500000000"));
        assert_eq!(e.call_id, None);
        assert!(!e.video);
        assert_eq!(e.raw.to_value()["phone"], "+5215512345678");
    }

    #[test]
    fn every_wazzap_event_name_maps_to_its_canonical_kind() {
        for (body, want) in [
            (INCOMING, "call.incoming"),
            (ACCEPT, "call.accepted"),
            (REJECT, "call.rejected"),
            (MISSED, "call.missed"),
        ] {
            let e = one(body);
            assert_eq!(e.kind, want, "{body}");
            assert!(e.caller.is_some());
        }
        let aliased = one(
            r#"{"event":"call.accepted","phone":"+5215512345678","ts":"2026-05-14T14:32:11Z"}"#,
        );
        assert_eq!(aliased.kind, "call.accepted");
    }

    #[test]
    fn auto_detection_reads_the_same_events() {
        for body in [INCOMING, ACCEPT, REJECT, MISSED] {
            let auto = parse(
                body.as_bytes(),
                &ctx(Provider::Auto, Some("+5215500000000")),
            )
            .unwrap();
            assert_eq!(auto[0].provider, Provider::Wazzap);
            assert_eq!(auto[0].id, one(body).id);
        }
    }

    #[test]
    fn the_same_payload_gets_the_same_id_and_other_calls_do_not() {
        assert_eq!(one(MISSED).id, one(MISSED).id);
        assert!(one(MISSED).id.starts_with("evt_"));
        // Another caller at the same second, or the same caller later, is
        // another event.
        assert_ne!(one(MISSED).id, one(MISSED_SEED_2).id);
        let later = MISSED.replace("14:32:11Z", "14:40:00Z");
        assert_ne!(one(MISSED).id, one(&later).id);
        // The same ring accepted and then missed are two events.
        let ring = one(INCOMING);
        let accepted = one(ACCEPT);
        assert_ne!(ring.id, accepted.id);
        // Another source never shares ids.
        let other = parse(
            MISSED.as_bytes(),
            &ParseContext {
                source: "wazzap-es",
                ..ctx(Provider::Wazzap, None)
            },
        )
        .unwrap();
        assert_ne!(other[0].id, one(MISSED).id);
    }

    #[test]
    fn country_is_taken_as_given_else_derived_from_the_number() {
        let lower = one(
            r#"{"event":"call.missed","phone":"+5215512345678","country":"mx","ts":"2026-05-14T14:32:11Z"}"#,
        );
        assert_eq!(lower.country.as_deref(), Some("MX"));
        let spanish =
            one(r#"{"event":"call.missed","phone":"+34612345678","ts":"2026-05-14T14:32:11Z"}"#);
        assert_eq!(spanish.country.as_deref(), Some("ES"));
        let nonsense = one(
            r#"{"event":"call.missed","phone":"+34612345678","country":"Spain","ts":"2026-05-14T14:32:11Z"}"#,
        );
        assert_eq!(nonsense.country.as_deref(), Some("ES"));
    }

    #[test]
    fn numbers_in_other_spellings_are_normalised() {
        let e = one(r#"{"event":"call.incoming","phone":"5215512345678","ts":1715697131}"#);
        assert_eq!(e.caller.as_deref(), Some("+5215512345678"));
        assert_eq!(e.at.to_string(), "2024-05-14T14:32:11Z");
    }

    #[test]
    fn a_missing_time_falls_back_to_the_receive_time() {
        let e = one(r#"{"event":"call.missed","phone":"+5215512345678"}"#);
        assert_eq!(e.at.to_string(), "2030-01-01T00:00:00Z");
    }

    #[test]
    fn a_call_without_a_usable_caller_is_refused_naming_phone() {
        let missing = err(r#"{"event":"call.missed","country":"MX","ts":"2026-05-14T14:32:11Z"}"#);
        assert_eq!(field_of(missing), "phone");
        let null = err(r#"{"event":"call.missed","phone":null}"#);
        assert_eq!(field_of(null), "phone");
        let bad = err(r#"{"event":"call.missed","phone":"call me maybe"}"#);
        assert!(bad.to_string().contains("`phone`"), "{bad}");
        assert!(bad.to_string().contains("not a phone number"), "{bad}");
        let number = err(r#"{"event":"call.missed","phone":5215512345678}"#);
        assert!(number.to_string().contains("expected a string"), "{number}");
        assert_eq!(field_of(number), "phone");
    }

    #[test]
    fn wrong_types_and_bad_times_name_the_field() {
        assert_eq!(field_of(err(r#"{"phone":"+5215512345678"}"#)), "event");
        assert_eq!(
            field_of(err(r#"{"event":7,"phone":"+5215512345678"}"#)),
            "event"
        );
        assert_eq!(
            field_of(err(r#"{"event":"","phone":"+5215512345678"}"#)),
            "event"
        );
        assert_eq!(
            field_of(err(
                r#"{"event":"call.missed","phone":"+5215512345678","ts":"yesterday"}"#
            )),
            "ts"
        );
        assert_eq!(
            field_of(err(
                r#"{"event":"call.missed","phone":"+5215512345678","ts":[1]}"#
            )),
            "ts"
        );
        assert_eq!(
            field_of(err(
                r#"{"event":"call.missed","phone":"+5215512345678","country":52}"#
            )),
            "country"
        );
    }

    #[test]
    fn an_unknown_call_event_is_refused_but_other_events_are_kept() {
        let e = err(r#"{"event":"call.ended","phone":"+5215512345678"}"#);
        assert_eq!(field_of(e.clone()), "event");
        assert!(e.to_string().contains("call.ended"), "{e}");

        let kept = one(
            r#"{"event":"message.received","phone":"+5215512345678","ts":"2026-05-14T14:32:11Z"}"#,
        );
        assert_eq!(kept.kind, "message.received");
        assert_eq!(kept.caller.as_deref(), Some("+5215512345678"));
        let nobody = one(r#"{"event":"number.disconnected","ts":"2026-05-14T14:32:11Z"}"#);
        assert_eq!(nobody.kind, "number.disconnected");
        assert_eq!(nobody.caller, None);
        assert!(!nobody.caller_is_phone);
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        for body in [
            r#"[]"#,
            r#"{"event":["call.missed"],"phone":"+1"}"#,
            r#"{"event":"call.missed","phone":"+52155123456789012345678901234567890"}"#,
            r#"{"event":"call.missed","phone":"+５２１５５１２３４５６７８"}"#,
            r#"{"event":"call.missed","phone":"+5215512345678","ts":1e300}"#,
            r#"{"event":"call.missed","phone":"+5215512345678","ts":-1}"#,
            r#"{"event":"call.missed","phone":"+5215512345678","ts":18446744073709551615}"#,
            r#"{"event":"call.missed","phone":{"n":"+5215512345678"}}"#,
        ] {
            assert!(
                parse(body.as_bytes(), &ctx(Provider::Wazzap, None)).is_err(),
                "{body}"
            );
        }
        // Unicode in a free-form event name is fine.
        let e = one(r#"{"event":"número.añadido 📞","ts":"2026-05-14T14:32:11Z"}"#);
        assert_eq!(e.kind, "número.añadido 📞");
    }
}
