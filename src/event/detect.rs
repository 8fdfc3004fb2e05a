//! `provider: auto`: recognise a payload's shape from its keys.
//!
//! The shapes are distinct enough that a few key checks decide, most
//! specific first:
//!
//! | shape | tell-tale |
//! |---|---|
//! | meta | `object: "whatsapp_business_account"` and `entry[]` |
//! | timelinesai | `event_type` string (`call:incoming:missed`, `message:reaction`) |
//! | waha | `event` plus a `payload` object (and `session`/`engine`/`me`) |
//! | standard | `type` string plus a `data` object |
//! | v3 | `event` plus flat call fields (`callId`, `from`, `to`, `direction`), a `data` object, or `event: "calls"` |
//! | wazzap | `event` plus `phone` |

use serde_json::Value;

use super::Provider;

pub(crate) fn detect(v: &Value) -> Option<Provider> {
    let has = |k: &str| v.get(k).is_some_and(|x| !x.is_null());
    let is_str = |k: &str| v.get(k).is_some_and(Value::is_string);
    let is_obj = |k: &str| v.get(k).is_some_and(Value::is_object);

    if v.get("object").and_then(Value::as_str) == Some("whatsapp_business_account") && has("entry")
    {
        return Some(Provider::Meta);
    }
    if is_str("event_type") {
        return Some(Provider::Timelinesai);
    }
    if is_str("event") && is_obj("payload") && (has("session") || has("engine") || has("me")) {
        return Some(Provider::Waha);
    }
    if is_str("type") && is_obj("data") {
        return Some(Provider::Standard);
    }
    if is_str("event") {
        if has("phone") && !has("from") && !has("callId") {
            return Some(Provider::Wazzap);
        }
        if v.get("event").and_then(Value::as_str) == Some("calls")
            || has("callId")
            || has("from")
            || has("to")
            || has("direction")
            || is_obj("data")
        {
            return Some(Provider::V3);
        }
        if is_obj("payload") {
            return Some(Provider::Waha);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_documented_shape_is_recognised() {
        let cases = [
            (
                json!({"event": "call.missed", "phone": "+5215512345678", "country": "MX", "ts": "2026-05-14T14:32:11Z"}),
                Provider::Wazzap,
            ),
            (
                json!({"id": "evt_1", "timestamp": 1634567890123u64, "session": "default", "engine": "WEBJS", "event": "call.received", "payload": {"id": "c", "from": "1@c.us", "isVideo": false}}),
                Provider::Waha,
            ),
            (
                json!({"event": "call.received", "session": "default", "payload": {"id": "c", "from": "1@c.us"}}),
                Provider::Waha,
            ),
            (
                json!({"event": "call.ringing", "id": "e", "callId": "c", "from": "+1", "to": "+2", "direction": "inbound", "createdAt": "2026-01-01T00:00:00Z"}),
                Provider::V3,
            ),
            (
                json!({"event": "calls", "data": {"object": "whatsapp_business_account", "entry": []}}),
                Provider::V3,
            ),
            (
                json!({"object": "whatsapp_business_account", "entry": []}),
                Provider::Meta,
            ),
            (
                json!({"event_type": "call:incoming:missed", "call_details": {}}),
                Provider::Timelinesai,
            ),
            (
                json!({"id": "evt_1", "type": "message.report", "data": {"object": {}}}),
                Provider::Standard,
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(detect(&payload), Some(want), "{payload}");
        }
    }

    #[test]
    fn unknown_shapes_are_not_guessed() {
        for payload in [
            json!({}),
            json!({"hello": "world"}),
            json!({"event": 5}),
            json!({"type": "x"}),
        ] {
            assert_eq!(detect(&payload), None, "{payload}");
        }
    }
}
