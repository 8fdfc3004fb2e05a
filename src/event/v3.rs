//! A provider's "v3" webhooks (`provider: v3`; seed 002, Pilot Status).
//!
//! Three shapes share the `event` key:
//!
//! * normalised call events, flat (no `data` wrapper):
//!   `{event: "call.ringing", id, callId, from, to, direction, createdAt, ...}`,
//!   phones E.164 with `+`, times ISO 8601;
//! * `event: "calls"`: Meta's raw `calls` webhook envelope, handed to the
//!   Meta parser. Where the envelope sits is not documented: it is looked
//!   for in `data`, `payload`, `envelope`, `body` or `raw` (as an object or
//!   as a JSON string), else at the top level (a body with `entry`);
//! * `message.*` / `number.*`: `{event, data: {...}}`, camelCase.
//!
//! | event | kind | caller |
//! |---|---|---|
//! | `call.ringing` | `call.incoming` | `from` when incoming, `to` when outgoing |
//! | `call.connected` | `call.accepted` | same |
//! | `call.ended` | `call.ended`, outcome from `status`/`outcome`/`reason`/`endReason`, else `duration`/`durationSeconds`, else `unknown` | same |
//! | `call.missed` | `call.missed` (outcome `no_answer`) | same |
//! | `call.permission_updated` (and any other `call.*`) | its own name, not a call kind; `data` = the payload | where present |
//! | `calls` | as for `provider: meta` | as for meta |
//! | `message.received` / `.reply` / `.group` / `.newsletter` | the event name, incoming; `data` = `data` | `data.from` where it is a phone |
//! | `message.sent` / `.delivered` / `.read` / `.failed` (or `fromMe`) | the event name, outgoing | `data.to` where it is a phone |
//! | `number.*` and anything else | the event name; `business` = `data.phone` | none |
//!
//! `direction`: `inbound`/`incoming`/`USER_INITIATED` → incoming,
//! `outbound`/`outgoing`/`BUSINESS_INITIATED` → outgoing (any case); absent,
//! a call is incoming. `business` is the other party's number, else
//! `numberId`.
//!
//! Identity: the provider's `id` *with the event name*, since the provider
//! repeats one `id` on `message.sent`, `.delivered` and `.read` (and may use
//! a call's id on each of its events); else the call id with the kind.

use serde_json::Value;

use super::access::{self, expect_object, join, opt_time};
use super::meta::{self, settle_caller, Lookup};
use super::{kind, normalise_phone, Caller, Direction, Draft, Identity, Outcome, ParseError};

/// Where a `calls` event may carry the Meta envelope, besides the top level.
const ENVELOPE_KEYS: [&str; 5] = ["data", "payload", "envelope", "body", "raw"];

/// Items of a wrapped Meta batch that cannot be read go to `skipped`
/// (see `meta::parse_envelope`).
pub(crate) fn parse(v: &Value, skipped: &mut Vec<ParseError>) -> Result<Vec<Draft>, ParseError> {
    expect_object(v, "")?;
    let event = access::req_str(v, "event", "")?.trim();
    if event.is_empty() {
        return Err(ParseError::field("event", "is empty"));
    }
    if event == "calls" {
        return calls_envelope(v, skipped);
    }
    if event.starts_with("call.") {
        return Ok(vec![flat_call(v, event)?]);
    }
    Ok(vec![wrapped(v, event)?])
}

/// `event: "calls"`: the raw Meta envelope, wherever it sits.
fn calls_envelope(v: &Value, skipped: &mut Vec<ParseError>) -> Result<Vec<Draft>, ParseError> {
    for key in ENVELOPE_KEYS {
        match v.get(key) {
            Some(inner @ Value::Object(o))
                if o.contains_key("entry") || o.contains_key("object") =>
            {
                return meta::parse_envelope(inner, key, skipped);
            }
            Some(Value::String(text)) if text.trim_start().starts_with('{') => {
                let inner: Value = serde_json::from_str(text).map_err(|e| {
                    ParseError::field(
                        key,
                        format!("holds a string that is not a JSON Meta envelope ({e})"),
                    )
                })?;
                return meta::parse_envelope(&inner, key, skipped);
            }
            _ => {}
        }
    }
    if v.get("entry").is_some_and(|e| !e.is_null()) {
        return meta::parse_envelope(v, "", skipped);
    }
    Err(ParseError::field(
        "data",
        "is missing: a `calls` event carries Meta's raw envelope ({object, entry: [...]}) in `data`, `payload` or at the top level",
    ))
}

/// A normalised, flat `call.*` event.
fn flat_call(v: &Value, event: &str) -> Result<Draft, ParseError> {
    let event_kind = match event {
        "call.ringing" | "call.incoming" => kind::CALL_INCOMING,
        "call.connected" | "call.accepted" => kind::CALL_ACCEPTED,
        "call.rejected" => kind::CALL_REJECTED,
        "call.ended" => kind::CALL_ENDED,
        "call.missed" => kind::CALL_MISSED,
        other => other,
    };
    let stated = direction_of(v, "")?;
    let direction = stated.unwrap_or(Direction::Incoming);

    let lookup = if event_kind == kind::CALL_PERMISSION_UPDATED && stated.is_none() {
        // Whose permission: the user's. The provider's permission probe is
        // keyed by `to`; take whichever names a phone, `phone` first.
        first_phone(v, "", &["phone", "to", "peerNumber", "from"])?
    } else {
        let (side, fallback) = match direction {
            Direction::Incoming => ("from", "peerNumber"),
            Direction::Outgoing => ("to", "peerNumber"),
        };
        match phone_at(v, "", side)? {
            Lookup::Missing(field) => match phone_at(v, "", fallback)? {
                found @ Lookup::Found(_) => found,
                _ => Lookup::Missing(field),
            },
            other => other,
        }
    };
    let caller = settle_caller(lookup, event_kind)?;
    let other_side = match direction {
        Direction::Incoming => "to",
        Direction::Outgoing => "from",
    };
    let business = business_of(v, "", other_side, caller.as_ref())?;

    let call_id = first_id(v, "", &["callId", "externalCallId", "wacid"])?;
    let duration = match access::opt_u64(v, "duration", "")? {
        Some(d) => Some(d),
        None => access::opt_u64(v, "durationSeconds", "")?,
    };
    let outcome = match event_kind {
        kind::CALL_ENDED => Some(outcome_of(v, duration)?),
        kind::CALL_MISSED => Some(Outcome::NoAnswer),
        _ => None,
    };

    let mut d = Draft::new(event_kind, identity(v, "", event, call_id.as_deref())?);
    d.direction = direction;
    d.caller = caller;
    d.business = business;
    d.name = first_str(
        v,
        "",
        &[
            "name",
            "participantName",
            "profileName",
            "contactName",
            "callerName",
        ],
    )?;
    d.country = country_of_payload(v, "")?;
    d.video = access::flag(v, "video", "")? || access::flag(v, "isVideo", "")?;
    d.at = created_at(v, "")?;
    d.call_id = call_id;
    d.duration = duration;
    d.outcome = outcome;
    if !kind::is_call(event_kind) {
        d.data = Some(v.clone());
    }
    Ok(d)
}

/// `{event, data: {...}}`: `message.*`, `number.*` and whatever else.
fn wrapped(v: &Value, event: &str) -> Result<Draft, ParseError> {
    let data = access::opt_obj(v, "data", "")?;
    // Fields live in `data`; tolerate them flat as well.
    let (body, path) = match data {
        Some(d) => (d, "data"),
        None => (v, ""),
    };
    let mut d;
    if event.starts_with("message.") {
        let outgoing = matches!(
            event,
            "message.sent" | "message.delivered" | "message.read" | "message.failed"
        ) || access::flag(body, "fromMe", path)?;
        let (direction, side, other) = if outgoing {
            (Direction::Outgoing, "to", "from")
        } else {
            (Direction::Incoming, "from", "to")
        };
        let caller = match phone_at(body, path, side)? {
            Lookup::Missing(_) => settle_caller(phone_at(body, path, "phone")?, event)?,
            found => settle_caller(found, event)?,
        };
        d = Draft::new(event, identity(body, path, event, None)?);
        d.direction = direction;
        d.business = business_of(body, path, other, caller.as_ref())?;
        d.caller = caller;
        if !outgoing {
            d.name = first_str(
                body,
                path,
                &["participantName", "pushName", "name", "profileName"],
            )?;
        }
    } else {
        // `number.*`: the phone is ours, not a caller.
        d = Draft::new(event, identity(body, path, event, None)?);
        let ours = first_phone(body, path, &["phone", "number", "phoneNumber"])?;
        d.business = match ours {
            Lookup::Found(c) => Some(c.id),
            _ => access::opt_id(body, "numberId", path)?,
        };
    }
    d.at = match created_at(body, path)? {
        Some(t) => Some(t),
        None if data.is_some() => created_at(v, "")?,
        None => None,
    };
    d.data = Some(body.clone());
    Ok(d)
}

// -------------------------------------------------------------- helpers --

fn direction_of(v: &Value, path: &str) -> Result<Option<Direction>, ParseError> {
    let Some(raw) = access::opt_str(v, "direction", path)? else {
        return Ok(None);
    };
    let word = raw.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    Ok(match word.as_str() {
        "inbound" | "incoming" | "in" | "user_initiated" => Some(Direction::Incoming),
        "outbound" | "outgoing" | "out" | "business_initiated" => Some(Direction::Outgoing),
        _ => None,
    })
}

/// How a `call.ended` ended: the first of `status`, `outcome`, `reason`,
/// `endReason` that says, else a positive duration means it was answered.
fn outcome_of(v: &Value, duration: Option<u64>) -> Result<Outcome, ParseError> {
    for key in ["outcome", "status", "reason", "endReason"] {
        let Some(raw) = access::opt_str(v, key, "")? else {
            continue;
        };
        let word = raw.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        let said = match word.as_str() {
            "answered" | "completed" | "complete" | "ended" | "success" | "connected"
            | "accepted" => Some(Outcome::Answered),
            "rejected" | "reject" | "declined" | "busy" => Some(Outcome::Rejected),
            "no_answer" | "noanswer" | "not_answered" | "unanswered" | "missed" | "timeout"
            | "expired" | "canceled" | "cancelled" => Some(Outcome::NoAnswer),
            "failed" | "failure" | "error" => Some(Outcome::Failed),
            _ => None,
        };
        if let Some(o) = said {
            return Ok(o);
        }
    }
    Ok(match duration {
        Some(d) if d > 0 => Outcome::Answered,
        _ => Outcome::Unknown,
    })
}

/// The provider's `id` with the event name, else the call id with the kind,
/// else a hash of the event's time.
fn identity(
    v: &Value,
    path: &str,
    event: &str,
    call_id: Option<&str>,
) -> Result<Identity, ParseError> {
    if let Some(id) = access::opt_id(v, "id", path)? {
        return Ok(Identity::ProviderId(format!("{id}\0{event}")));
    }
    if let Some(call) = call_id {
        return Ok(Identity::Call(call.to_string()));
    }
    let at = match v.get("createdAt") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    Ok(Identity::Content(at))
}

fn created_at(v: &Value, path: &str) -> Result<Option<jiff::Timestamp>, ParseError> {
    match opt_time(v, "createdAt", path)? {
        Some(t) => Ok(Some(t)),
        None => opt_time(v, "timestamp", path),
    }
}

/// The phone in `key`, normalised (E.164, or a `@lid` id as given).
fn phone_at(v: &Value, path: &str, key: &str) -> Result<Lookup, ParseError> {
    Ok(match access::opt_id(v, key, path)? {
        None => Lookup::Missing(join(path, key)),
        Some(raw) => match normalise_phone(&raw) {
            Ok(c) => Lookup::Found(c),
            Err(e) => Lookup::Invalid(join(path, key), e.0),
        },
    })
}

/// The first of `keys` holding a usable phone; else what was wrong with the
/// first one present; else the first key as missing.
fn first_phone(v: &Value, path: &str, keys: &[&str]) -> Result<Lookup, ParseError> {
    let mut first_problem = None;
    for key in keys {
        match phone_at(v, path, key)? {
            found @ Lookup::Found(_) => return Ok(found),
            invalid @ Lookup::Invalid(..) => {
                first_problem.get_or_insert(invalid);
            }
            Lookup::Missing(_) => {}
        }
    }
    Ok(first_problem
        .unwrap_or_else(|| Lookup::Missing(join(path, keys.first().copied().unwrap_or("from")))))
}

/// Our side: the other party's number when it is a phone and not the
/// caller, else `numberId`.
fn business_of(
    v: &Value,
    path: &str,
    other: &str,
    caller: Option<&Caller>,
) -> Result<Option<String>, ParseError> {
    if let Lookup::Found(c) = phone_at(v, path, other)? {
        if c.is_phone && caller.is_none_or(|k| k.id != c.id) {
            return Ok(Some(c.id));
        }
    }
    access::opt_id(v, "numberId", path)
}

fn first_str(v: &Value, path: &str, keys: &[&str]) -> Result<Option<String>, ParseError> {
    for key in keys {
        if let Some(s) = access::opt_str(v, key, path)? {
            let s = s.trim();
            if !s.is_empty() {
                return Ok(Some(s.to_string()));
            }
        }
    }
    Ok(None)
}

fn first_id(v: &Value, path: &str, keys: &[&str]) -> Result<Option<String>, ParseError> {
    for key in keys {
        if let Some(s) = access::opt_id(v, key, path)? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// A two-letter `country` / `countryCode`, if the payload gives one.
fn country_of_payload(v: &Value, path: &str) -> Result<Option<String>, ParseError> {
    Ok(first_str(v, path, &["country", "countryCode"])?
        .filter(|c| c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()))
        .map(|c| c.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Direction, Event, Outcome, ParseContext, ParseError, Provider};
    use crate::event::testing;
    use serde_json::{json, Value};

    fn ctx(provider: Provider) -> ParseContext<'static> {
        testing::ctx("pilot", provider)
    }

    fn events(body: &str) -> Vec<Event> {
        testing::all(body, &ctx(Provider::V3))
    }

    fn one(body: &str) -> Event {
        testing::only(body, &ctx(Provider::V3))
    }

    fn error(body: &str) -> ParseError {
        testing::error(body, &ctx(Provider::V3))
    }

    fn field_of(e: &ParseError) -> &str {
        testing::field(e).0
    }

    fn edit(body: &str, f: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(body).unwrap();
        f(&mut v);
        v.to_string()
    }

    const RINGING: &str = include_str!("../../tests/fixtures/v3/call_ringing.json");
    const CONNECTED: &str = include_str!("../../tests/fixtures/v3/call_connected.json");
    const ENDED: &str = include_str!("../../tests/fixtures/v3/call_ended.json");
    const MISSED: &str = include_str!("../../tests/fixtures/v3/call_missed.json");
    const PERMISSION: &str = include_str!("../../tests/fixtures/v3/call_permission_updated.json");
    const CALLS: &str = include_str!("../../tests/fixtures/v3/calls_meta_envelope.json");
    const MESSAGE: &str = include_str!("../../tests/fixtures/v3/message_received.json");

    #[test]
    fn call_events_map_to_canonical_kinds() {
        let r = one(RINGING);
        assert_eq!(r.kind, "call.incoming");
        assert_eq!(r.direction, Direction::Incoming);
        assert_eq!(r.caller.as_deref(), Some("+5511999999999"));
        assert_eq!(r.country.as_deref(), Some("BR"));
        assert_eq!(r.business.as_deref(), Some("+5511888888888"));
        assert_eq!(
            r.call_id.as_deref(),
            Some("wacid.HBgNNTUxMTk5OTk5OTk5ORUCABEYIDk3")
        );
        assert_eq!(r.at.to_string(), "2026-07-03T15:00:00Z");
        assert_eq!(r.provider, Provider::V3);

        let c = one(CONNECTED);
        assert_eq!(c.kind, "call.accepted");
        assert_eq!(c.caller, r.caller);
        assert_eq!(c.call_id, r.call_id);
        assert_ne!(c.id, r.id);

        let e = one(ENDED);
        assert_eq!(e.kind, "call.ended");
        assert_eq!(e.outcome, Some(Outcome::Answered));
        assert_eq!(e.duration, Some(120));
        assert_eq!(e.at.to_string(), "2026-07-03T15:02:05Z");

        let m = one(MISSED);
        assert_eq!(m.kind, "call.missed");
        assert_eq!(m.outcome, Some(Outcome::NoAnswer));
        assert_eq!(m.caller.as_deref(), Some("+5215512345678"));
        assert_eq!(m.name.as_deref(), Some("Lupita"));
    }

    #[test]
    fn the_outcome_of_an_ended_call_comes_from_whatever_says_it() {
        let with = |f: &dyn Fn(&mut Value)| {
            one(&edit(ENDED, |v| {
                let o = v.as_object_mut().unwrap();
                o.remove("status");
                o.remove("durationSeconds");
                f(v)
            }))
            .outcome
        };
        assert_eq!(
            with(&|v| v["status"] = json!("NO_ANSWER")),
            Some(Outcome::NoAnswer)
        );
        assert_eq!(
            with(&|v| v["outcome"] = json!("rejected")),
            Some(Outcome::Rejected)
        );
        assert_eq!(
            with(&|v| v["status"] = json!("FAILED")),
            Some(Outcome::Failed)
        );
        assert_eq!(
            with(&|v| v["duration"] = json!(12)),
            Some(Outcome::Answered)
        );
        assert_eq!(with(&|_| {}), Some(Outcome::Unknown));
        assert_eq!(
            with(&|v| v["status"] = json!("WEIRD")),
            Some(Outcome::Unknown)
        );
    }

    #[test]
    fn an_outgoing_call_names_the_callee() {
        let body = edit(RINGING, |v| {
            v["direction"] = json!("OUTBOUND");
            v["from"] = json!("+5511888888888");
            v["to"] = json!("+5511999999999");
        });
        let e = one(&body);
        assert_eq!(e.direction, Direction::Outgoing);
        assert_eq!(e.caller.as_deref(), Some("+5511999999999"));
        assert_eq!(e.business.as_deref(), Some("+5511888888888"));
        for word in ["outgoing", "BUSINESS_INITIATED", "outbound"] {
            let e = one(&edit(&body, |v| v["direction"] = json!(word)));
            assert_eq!(e.direction, Direction::Outgoing, "{word}");
        }
        for word in ["inbound", "incoming", "USER_INITIATED"] {
            let e = one(&edit(RINGING, |v| v["direction"] = json!(word)));
            assert_eq!(e.direction, Direction::Incoming, "{word}");
            assert_eq!(e.caller.as_deref(), Some("+5511999999999"));
        }
    }

    #[test]
    fn a_permission_update_is_stored_under_its_own_kind() {
        let e = one(PERMISSION);
        assert_eq!(e.kind, "call.permission_updated");
        assert_eq!(e.caller.as_deref(), Some("+5511999999999"));
        assert_eq!(e.data.as_ref().unwrap()["status"], "PERMANENT");
        // No phone at all is fine for a non-call kind.
        let e = one(&edit(PERMISSION, |v| {
            v.as_object_mut().unwrap().remove("to");
        }));
        assert_eq!(e.caller, None);
    }

    #[test]
    fn a_calls_event_is_read_as_the_meta_envelope_it_carries() {
        let all = events(CALLS);
        assert_eq!(all.len(), 2, "{all:#?}");
        assert_eq!(all[0].kind, "call.incoming");
        assert_eq!(all[0].caller.as_deref(), Some("+5511999999999"));
        assert_eq!(all[0].business.as_deref(), Some("+5511888888888"));
        assert_eq!(all[0].name.as_deref(), Some("Maria Souza"));
        assert_eq!(all[1].kind, "call.missed");
        assert_ne!(all[0].id, all[1].id);
        assert!(all.iter().all(|e| e.provider == Provider::V3));

        // The same envelope at the top level, in `payload`, or as a string.
        let env = serde_json::from_str::<Value>(CALLS).unwrap()["data"].clone();
        let top = edit(&env.to_string(), |v| v["event"] = json!("calls"));
        let payload = json!({"event": "calls", "payload": env}).to_string();
        let text = json!({"event": "calls", "data": env.to_string()}).to_string();
        for body in [top, payload, text] {
            let ids: Vec<String> = events(&body).into_iter().map(|e| e.kind).collect();
            assert_eq!(ids, ["call.incoming", "call.missed"], "{body}");
        }
    }

    #[test]
    fn errors_inside_a_wrapped_envelope_name_the_full_path() {
        let body = edit(CALLS, |v| {
            v["data"]["entry"][0]["changes"][0]["value"]["calls"][0]
                .as_object_mut()
                .unwrap()
                .remove("from");
        });
        assert_eq!(
            field_of(&error(&body)),
            "data.entry[0].changes[0].value.calls[0].from"
        );
        let e = error(r#"{"event":"calls","id":"x"}"#);
        assert_eq!(field_of(&e), "data");
    }

    #[test]
    fn a_received_message_is_stored_with_its_sender() {
        let e = one(MESSAGE);
        assert_eq!(e.kind, "message.received");
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(e.caller.as_deref(), Some("+5511999999999"));
        assert_eq!(e.business.as_deref(), Some("+5511888888888"));
        assert_eq!(e.name.as_deref(), Some("WhatsApp name"));
        assert_eq!(e.at.to_string(), "2026-02-24T10:30:00Z");
        assert_eq!(e.data.as_ref().unwrap()["content"], "Hi");

        let sent = one(&edit(MESSAGE, |v| {
            v["event"] = json!("message.sent");
            v["data"]["from"] = json!("+5511888888888");
            v["data"]["to"] = json!("+5511999999999");
        }));
        assert_eq!(sent.direction, Direction::Outgoing);
        assert_eq!(sent.caller.as_deref(), Some("+5511999999999"));
        // One provider id on sent/delivered/read: distinct events.
        let delivered = one(&edit(MESSAGE, |v| v["event"] = json!("message.delivered")));
        assert_ne!(sent.id, delivered.id);

        let number = one(
            r#"{"event":"number.connected","data":{"numberId":"cmm0abc123","phone":"+5511888888888","createdAt":"2026-02-24T10:30:00.000Z"}}"#,
        );
        assert_eq!(number.kind, "number.connected");
        assert_eq!(number.caller, None);
        assert_eq!(number.business.as_deref(), Some("+5511888888888"));
    }

    #[test]
    fn same_payload_same_ids() {
        for body in [
            RINGING, CONNECTED, ENDED, MISSED, PERMISSION, CALLS, MESSAGE,
        ] {
            let a: Vec<String> = events(body).into_iter().map(|e| e.id).collect();
            let b: Vec<String> = events(body).into_iter().map(|e| e.id).collect();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn auto_detection_routes_every_fixture_here() {
        for body in [
            RINGING, CONNECTED, ENDED, MISSED, PERMISSION, CALLS, MESSAGE,
        ] {
            let evs = parse(body.as_bytes(), &ctx(Provider::Auto)).unwrap();
            assert!(evs.iter().all(|e| e.provider == Provider::V3), "{body}");
        }
    }

    #[test]
    fn a_call_without_its_caller_is_refused() {
        let e = error(&edit(MISSED, |v| {
            v.as_object_mut().unwrap().remove("from");
        }));
        assert_eq!(field_of(&e), "from");
        let e = error(&edit(RINGING, |v| v["from"] = json!("hello")));
        assert_eq!(field_of(&e), "from");
        let e = error(&edit(RINGING, |v| {
            v["direction"] = json!("outbound");
            v.as_object_mut().unwrap().remove("to");
        }));
        assert_eq!(field_of(&e), "to");
    }

    #[test]
    fn wrong_types_are_refused_with_their_path() {
        let cases = [
            (
                edit(ENDED, |v| v["durationSeconds"] = json!("long")),
                "durationSeconds",
            ),
            (
                edit(RINGING, |v| v["createdAt"] = json!(["x"])),
                "createdAt",
            ),
            (edit(RINGING, |v| v["direction"] = json!(1)), "direction"),
            (edit(RINGING, |v| v["isVideo"] = json!("yes")), "isVideo"),
            (
                edit(MESSAGE, |v| v["data"]["fromMe"] = json!("no")),
                "data.fromMe",
            ),
            (edit(MESSAGE, |v| v["data"] = json!([1])), "data"),
            (edit(RINGING, |v| v["event"] = json!(3)), "event"),
        ];
        for (body, want) in cases {
            let e = error(&body);
            assert_eq!(field_of(&e), want, "{e}");
        }
    }

    #[test]
    fn nonsense_never_panics() {
        for body in [
            r#"{"event":""}"#,
            r#"{"event":"call."}"#,
            r#"{"event":"calls","data":"{not json"}"#,
            r#"{"event":"calls","data":{"entry":5}}"#,
            r#"{"event":"message.x","data":null}"#,
            r#"{"event":"call.ended","from":"+5215512345678","duration":-3}"#,
            r#"{"event":"call.ringing","from":12345678901}"#,
        ] {
            let _ = parse(body.as_bytes(), &ctx(Provider::V3));
        }
    }
}
