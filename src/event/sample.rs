//! Sample webhook bodies in each provider's own shape, for
//! `POST /api/sources/{source}/test` ("Send test event"): the body goes
//! through the same parser as a real delivery, so a test event shows what
//! that source's real events will look like to workflows.
//!
//! The shapes follow the seed payloads (see `tests/fixtures/`). Each sample
//! gets fresh ids from `nonce`, so two test events are never duplicates.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::{kind, Provider};

/// The caller of a test event when the request names none: a number in a
/// range reserved for fiction (Mexico City, 55 5010 xxxx is not assigned).
pub const DEFAULT_TEST_CALLER: &str = "+5215550101234";

/// What a provider can send as a test: the kinds its webhooks carry.
pub fn sample_kinds(provider: Provider) -> &'static [&'static str] {
    match provider {
        // WAHA reports rings, not missed calls (those come from the ring
        // timeout).
        Provider::Waha => &[kind::CALL_INCOMING],
        // TimelinesAI reports calls once they are over.
        Provider::Timelinesai => &[kind::CALL_MISSED],
        _ => &[kind::CALL_MISSED, kind::CALL_INCOMING],
    }
}

/// A webhook body of `provider` for a call of `kind` from `caller` (E.164)
/// to `business` at `at`. `None` when the provider has no such event (see
/// [`sample_kinds`]).
pub fn sample_body(
    provider: Provider,
    kind: &str,
    caller: &str,
    business: Option<&str>,
    at: Timestamp,
    nonce: u64,
) -> Option<Vec<u8>> {
    if !sample_kinds(provider).contains(&kind) {
        return None;
    }
    let missed = kind == kind::CALL_MISSED;
    let digits: String = caller.chars().filter(char::is_ascii_digit).collect();
    let business = business.unwrap_or("+5215500000000");
    let business_digits: String = business.chars().filter(char::is_ascii_digit).collect();
    let call_id = format!("wacid.TEST{nonce:016X}");
    let secs = at.as_second();
    let body: Value = match provider {
        Provider::Wazzap | Provider::Auto => json!({
            "event": if missed { "call.missed" } else { "call.incoming" },
            "phone": caller,
            "ts": at.to_string(),
        }),
        Provider::Waha => json!({
            "id": format!("evt_test_{nonce:016x}"),
            "timestamp": at.as_millisecond(),
            "event": "call.received",
            "session": "default",
            "me": {"id": format!("{business_digits}@c.us"), "pushName": "ringback test"},
            "payload": {
                "id": call_id,
                "from": format!("{digits}@c.us"),
                "timestamp": secs,
                "isVideo": false,
                "isGroup": false,
            },
            "engine": "NOWEB",
        }),
        Provider::V3 => json!({
            "event": kind,
            "id": format!("test{nonce:016x}"),
            "callId": call_id,
            "from": caller,
            "to": business,
            "direction": "INBOUND",
            "participantName": "Test Caller",
            "createdAt": at.to_string(),
        }),
        Provider::Meta => {
            let mut call = json!({
                "id": call_id, "from": digits, "to": business_digits,
                "event": "connect", "timestamp": secs.to_string(),
                "direction": "USER_INITIATED",
            });
            if missed {
                // A user's call that ended without connecting.
                call["event"] = json!("terminate");
                call["status"] = json!("FAILED");
                call["end_time"] = json!(secs.to_string());
            }
            json!({
                "object": "whatsapp_business_account",
                "entry": [{
                    "id": "0",
                    "changes": [{
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": business_digits, "phone_number_id": "0"},
                            "contacts": [{"profile": {"name": "Test Caller"}, "wa_id": digits}],
                            "calls": [call],
                        },
                        "field": "calls",
                    }],
                }],
            })
        }
        Provider::Timelinesai => json!({
            "event_type": "call:incoming:missed",
            "chat": {"full_name": "Test Caller", "chat_id": nonce, "chat_type": "direct", "platform": "whatsapp", "phone": caller},
            "whatsapp_account": {"phone": business},
            "call_details": {
                "duration": null,
                "direction": "incoming",
                "is_video": false,
                "status": "Missed",
                "timestamp": at.strftime("%Y-%m-%d %H:%M:%S +0000").to_string(),
                "message_uid": format!("test-{nonce:016x}"),
                "caller": {"full_name": "Test Caller", "phone": caller},
                "recipient": {"full_name": "ringback", "phone": business},
            },
        }),
        Provider::Standard => json!({
            "id": format!("evt_test_{nonce:016x}"),
            "type": kind,
            "created_at": at.to_string(),
            "data": {"object": {
                "call_id": call_id,
                "from": caller,
                "to": business,
                "direction": "incoming",
                "video": false,
                "duration": null,
            }},
        }),
    };
    Some(serde_json::to_vec(&body).expect("JSON serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{parse, ParseContext};

    /// Every sample parses, as its own provider and as `auto`, into the
    /// kind asked for, from the caller asked for.
    #[test]
    fn every_sample_parses_into_the_event_it_stands_for() {
        let at: Timestamp = "2026-05-14T14:32:11Z".parse().unwrap();
        for provider in Provider::ALL {
            for &kind in sample_kinds(provider) {
                let body = sample_body(provider, kind, "+34612345678", None, at, 7)
                    .unwrap_or_else(|| panic!("{provider:?} {kind}"));
                for as_provider in [provider, Provider::Auto] {
                    let ctx = ParseContext {
                        source: "s",
                        provider: as_provider,
                        business: None,
                        received_at: at,
                        delivery_id: None,
                    };
                    let events = parse(&body, &ctx)
                        .unwrap_or_else(|e| panic!("{provider:?} {kind} as {as_provider:?}: {e}"));
                    assert_eq!(events.len(), 1, "{provider:?} {kind}");
                    assert_eq!(events[0].kind, kind, "{provider:?}");
                    assert_eq!(
                        events[0].caller.as_deref(),
                        Some("+34612345678"),
                        "{provider:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn two_samples_are_different_events() {
        let at: Timestamp = "2026-05-14T14:32:11Z".parse().unwrap();
        let ctx = ParseContext {
            source: "s",
            provider: Provider::Meta,
            business: None,
            received_at: at,
            delivery_id: None,
        };
        let one = sample_body(
            Provider::Meta,
            kind::CALL_MISSED,
            "+34612345678",
            None,
            at,
            1,
        )
        .unwrap();
        let two = sample_body(
            Provider::Meta,
            kind::CALL_MISSED,
            "+34612345678",
            None,
            at,
            2,
        )
        .unwrap();
        assert_ne!(
            parse(&one, &ctx).unwrap()[0].id,
            parse(&two, &ctx).unwrap()[0].id
        );
    }
}
