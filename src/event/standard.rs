//! Standard Webhooks senders (seed 004): a typed envelope around the
//! event-specific object.
//!
//! ```json
//! {"id": "evt_85e5…", "type": "message.report", "api_version": "2026-02-04",
//!  "created_at": 1747147674, "liveMode": true,
//!  "data": {"object": {"recipient": {"customer_id": "…", "phone_number": "+918189222313"},
//!                      "status": "READ", …}}}
//! ```
//!
//! The kind is `type` as given (`message.incoming`, `message.report`,
//! `form.submitted`, …) and `data.object` (or `data` itself when it has no
//! `object`) becomes `event.data`. `created_at` is the event time.
//!
//! The caller is read "where present": the first phone found among the usual
//! places, in this order — `from`, `sender`, `customer`, `contact` (each a
//! phone string or an object with `phone_number` / `phone` / `wa_id`), then
//! the flat `phone_number`, `phone`, `wa_id`, then `recipient` and `to` (our
//! own message's counterpart: direction `outgoing`). A non-call event with
//! no readable phone has no caller. When `type` is a canonical call kind
//! (`call.incoming`, `call.missed`, …) the caller is required and must be
//! valid, and only the side named by the object's `direction` is looked at
//! (`from`… for an incoming call, the default; `recipient` / `to` for an
//! outgoing one), so our own number is never taken for the caller. The call
//! fields (`call_id` / `callId`, `video` / `is_video` / `isVideo`,
//! `duration`, `outcome`) are read from the object when present.
//!
//! Identity: the envelope `id`, else the `webhook-id` header (both are the
//! same on every retry of a delivery), else the whole body.

use serde_json::Value;

use super::access::{as_sent, join, opt_id, opt_str, opt_u64, req_str};
use super::{
    json_type_name, kind, normalise_phone, parse_time, Caller, Direction, Draft, Identity, Outcome,
    ParseError,
};

/// Where a counterpart's phone may be, most specific first, and whether a
/// phone found there is the other end of *our* message.
const PARTIES: [(&str, bool); 7] = [
    ("from", false),
    ("sender", false),
    ("customer", false),
    ("contact", false),
    ("", false),
    ("recipient", true),
    ("to", true),
];
const PHONE_KEYS: [&str; 3] = ["phone_number", "phone", "wa_id"];
const NAME_KEYS: [&str; 4] = ["name", "full_name", "display_name", "profile_name"];

pub(crate) fn parse(v: &Value, delivery_id: Option<&str>) -> Result<Vec<Draft>, ParseError> {
    let kind = req_str(v, "type", "")?;
    if kind.trim().is_empty() {
        return Err(ParseError::field("type", "is empty"));
    }
    let data = match v.get("data") {
        None | Some(Value::Null) => return Err(ParseError::missing("data")),
        Some(d @ Value::Object(_)) => d,
        Some(other) => {
            return Err(ParseError::field(
                "data",
                format!("expected an object, got {}", json_type_name(other)),
            ))
        }
    };
    let (object, object_path) = match data.get("object") {
        Some(o) if !o.is_null() => (o, "data.object"),
        _ => (data, "data"),
    };

    let created = match v.get("created_at") {
        None | Some(Value::Null) => None,
        Some(t) => {
            let at = parse_time(t).map_err(|e| ParseError::field("created_at", e))?;
            Some((at, as_sent(t)))
        }
    };
    let envelope_id = opt_id(v, "id", "")?;
    let identity = match (
        envelope_id,
        delivery_id.map(str::trim).filter(|d| !d.is_empty()),
    ) {
        (Some(id), _) => Identity::ProviderId(id),
        (None, Some(delivery)) => Identity::ProviderId(delivery.to_string()),
        // Neither (not a Standard Webhooks delivery): the whole body, which a
        // retry repeats and two events sharing a `created_at` second do not.
        (None, None) => Identity::Content(v.to_string()),
    };

    let mut d = Draft::new(kind, identity);
    d.at = created.map(|(t, _)| t);
    d.data = Some(object.clone());

    if kind::is_call(kind) {
        // On a call, `to` / `recipient` is our own number unless the call is
        // ours: only the side the direction names can be the caller.
        let direction = call_direction(object, object_path)?.unwrap_or(Direction::Incoming);
        let side = [direction == Direction::Outgoing];
        let party = counterpart(object, object_path, &side, true)?.ok_or_else(|| {
            ParseError::field(
                object_path,
                match direction {
                    Direction::Incoming => "names no caller (looked for from, sender, customer, contact, phone_number, phone, wa_id)",
                    Direction::Outgoing => "names no callee of our outgoing call (looked for recipient, to)",
                },
            )
        })?;
        d.caller = Some(party.caller);
        d.name = party.name;
        d.direction = direction;
        d.call_id = match opt_id(object, "call_id", object_path)? {
            Some(id) => Some(id),
            None => opt_id(object, "callId", object_path)?,
        };
        d.video = call_video(object, object_path)?;
        d.duration = opt_u64(object, "duration", object_path)?;
        d.outcome = call_outcome(object, object_path, kind)?;
    } else if let Some(party) = counterpart(object, object_path, non_call_sides(kind), false)? {
        d.caller = Some(party.caller);
        d.name = party.name;
        d.direction = party.direction;
    }
    Ok(vec![d])
}

struct Party {
    caller: Caller,
    name: Option<String>,
    direction: Direction,
}

/// Which sides of a non-call event to read, in order: `false` is the
/// customer writing to us (`from`, `sender`…), `true` the other end of our
/// own message (`recipient`, `to`). A report on a message we sent
/// (`message.report`, `message.status`, …) may also carry our own number in
/// `from`, so its recipient is read first.
fn non_call_sides(kind: &str) -> &'static [bool] {
    const ABOUT_OURS: [&str; 8] = [
        "report",
        "status",
        "sent",
        "outgoing",
        "outbound",
        "delivered",
        "read",
        "failed",
    ];
    let about_ours = kind
        .split(['.', '_', ':', '-'])
        .any(|part| ABOUT_OURS.contains(&part.to_ascii_lowercase().as_str()));
    if about_ours {
        &[true, false]
    } else {
        &[false, true]
    }
}

/// The first counterpart phone in `object`, reading the `sides` in order
/// (see [`non_call_sides`]). With `strict` (a call, which must name its
/// caller) a phone that is present but unreadable is an error naming its
/// path; otherwise it is skipped.
fn counterpart(
    object: &Value,
    path: &str,
    sides: &[bool],
    strict: bool,
) -> Result<Option<Party>, ParseError> {
    let places = sides
        .iter()
        .flat_map(|side| PARTIES.iter().filter(move |(_, ours)| ours == side));
    for &(key, ours) in places {
        let holder = if key.is_empty() {
            Some(object)
        } else {
            object.get(key)
        };
        let Some(holder) = holder else { continue };
        let holder_path = if key.is_empty() {
            path.to_string()
        } else {
            join(path, key)
        };
        let found: Vec<(String, &str)> = match holder {
            Value::String(s) if !key.is_empty() => vec![(holder_path.clone(), s.as_str())],
            Value::Object(_) => PHONE_KEYS
                .iter()
                .filter_map(|k| {
                    holder
                        .get(*k)
                        .and_then(Value::as_str)
                        .map(|s| (join(&holder_path, k), s))
                })
                .collect(),
            _ => Vec::new(),
        };
        for (field, raw) in found {
            if raw.trim().is_empty() {
                continue;
            }
            match normalise_phone(raw) {
                Ok(caller) => {
                    let name = if key.is_empty() {
                        None
                    } else {
                        name_of(holder)
                    };
                    return Ok(Some(Party {
                        caller,
                        name,
                        direction: if ours {
                            Direction::Outgoing
                        } else {
                            Direction::Incoming
                        },
                    }));
                }
                Err(e) if strict => return Err(ParseError::field(field, e.to_string())),
                Err(_) => {}
            }
        }
    }
    Ok(None)
}

fn name_of(holder: &Value) -> Option<String> {
    NAME_KEYS
        .iter()
        .filter_map(|k| holder.get(*k))
        .chain(holder.get("profile").and_then(|p| p.get("name")))
        .filter_map(Value::as_str)
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

fn call_direction(object: &Value, path: &str) -> Result<Option<Direction>, ParseError> {
    Ok(
        match opt_str(object, "direction", path)?.map(str::to_ascii_lowercase) {
            Some(d) if d == "incoming" || d == "inbound" => Some(Direction::Incoming),
            Some(d) if d == "outgoing" || d == "outbound" => Some(Direction::Outgoing),
            _ => None,
        },
    )
}

fn call_video(object: &Value, path: &str) -> Result<bool, ParseError> {
    for key in ["video", "is_video", "isVideo"] {
        match object.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => return Ok(*b),
            Some(other) => {
                return Err(ParseError::field(
                    join(path, key),
                    format!("expected a boolean, got {}", json_type_name(other)),
                ))
            }
        }
    }
    Ok(false)
}

fn call_outcome(object: &Value, path: &str, kind: &str) -> Result<Option<Outcome>, ParseError> {
    let given = opt_str(object, "outcome", path)?.map(|o| {
        match o.to_ascii_lowercase().replace([' ', '-'], "_").as_str() {
            "answered" | "completed" => Outcome::Answered,
            "rejected" | "declined" => Outcome::Rejected,
            "no_answer" | "missed" | "unanswered" => Outcome::NoAnswer,
            "failed" => Outcome::Failed,
            _ => Outcome::Unknown,
        }
    });
    Ok(match kind {
        kind::CALL_ENDED => Some(given.unwrap_or(Outcome::Unknown)),
        _ => given,
    })
}

#[cfg(test)]
mod tests {
    use crate::event::testing;
    use crate::event::{parse, Direction, Event, Outcome, ParseContext, Provider};

    const REPORT: &str = include_str!("../../tests/fixtures/standard/message_report.json");
    const INCOMING: &str = include_str!("../../tests/fixtures/standard/message_incoming.json");
    const FORM: &str = include_str!("../../tests/fixtures/standard/form_submitted.json");
    const CALL_MISSED: &str = include_str!("../../tests/fixtures/standard/call_missed.json");

    fn ctx(provider: Provider, delivery_id: Option<&'static str>) -> ParseContext<'static> {
        ParseContext {
            delivery_id,
            ..testing::ctx("relay", provider)
        }
    }

    fn one_with(body: &str, delivery_id: Option<&'static str>) -> Event {
        testing::only(body, &ctx(Provider::Standard, delivery_id))
    }

    fn one(body: &str) -> Event {
        one_with(body, Some("msg_2x1PcJ3b4Zs7tK0aEoEe2nH0sN1"))
    }

    fn field_err(body: &str) -> (String, String) {
        let e = testing::error(body, &ctx(Provider::Standard, None));
        let (field, problem) = testing::field(&e);
        (field.to_string(), problem.to_string())
    }

    #[test]
    fn the_seed_report_keeps_its_type_and_names_the_recipient() {
        let e = one(REPORT);
        assert_eq!(e.kind, "message.report");
        assert_eq!(e.caller.as_deref(), Some("+918189222313"));
        assert!(e.caller_is_phone);
        assert_eq!(e.country.as_deref(), Some("IN"));
        // A report is about our message: the recipient is the other end.
        assert_eq!(e.direction, Direction::Outgoing);
        assert_eq!(e.at.to_string(), "2025-05-13T14:47:54Z");
        let data = e.data.expect("data.object is event.data");
        assert_eq!(data["status"], "READ");
        assert_eq!(data["recipient"]["customer_id"], "wamid.HBgN...");
        assert_eq!(e.provider, Provider::Standard);
        assert_eq!(e.call_id, None);
        assert_eq!(e.outcome, None);
    }

    #[test]
    fn an_incoming_message_names_its_sender() {
        let e = one(INCOMING);
        assert_eq!(e.kind, "message.incoming");
        assert_eq!(e.caller.as_deref(), Some("+5215512345678"));
        assert_eq!(e.name.as_deref(), Some("Juan Pérez"));
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(e.country.as_deref(), Some("MX"));
        assert_eq!(e.at.to_string(), "2026-05-24T15:20:05Z");
        assert_eq!(
            e.data.as_ref().unwrap()["text"]["body"],
            "¿Me pueden llamar?"
        );
    }

    #[test]
    fn a_form_names_its_customer() {
        let e = one(FORM);
        assert_eq!(e.kind, "form.submitted");
        assert_eq!(e.caller.as_deref(), Some("+5215512345678"));
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(e.data.as_ref().unwrap()["fields"]["city"], "Guadalajara");
    }

    #[test]
    fn an_event_naming_nobody_has_no_caller() {
        let e = one(
            r#"{"id":"evt_2","type":"form.submitted","created_at":1779635000,"data":{"object":{"form_id":"frm_1","fields":{"city":"Guadalajara"}}}}"#,
        );
        assert_eq!(e.kind, "form.submitted");
        assert_eq!(e.caller, None);
        assert!(!e.caller_is_phone);
        assert_eq!(e.at.to_string(), "2026-05-24T15:03:20Z");
        // An unreadable phone on a non-call event is not an error either.
        let odd = REPORT.replace("+918189222313", "unknown");
        assert_eq!(one(&odd).caller, None);
    }

    #[test]
    fn a_report_names_the_recipient_even_when_it_carries_our_number() {
        let with_sender = REPORT.replace(
            r#""recipient": {"#,
            r#""from": {"phone_number": "+5215500000000"},
        "recipient": {"#,
        );
        assert_ne!(with_sender, REPORT);
        let e = one(&with_sender);
        assert_eq!(e.caller.as_deref(), Some("+918189222313"));
        assert_eq!(e.direction, Direction::Outgoing);
        // An incoming message with both reads the sender.
        let incoming = INCOMING.replace(
            r#""type": "text","#,
            r#""to": "+5215500000000", "type": "text","#,
        );
        assert_ne!(incoming, INCOMING);
        assert_eq!(one(&incoming).caller.as_deref(), Some("+5215512345678"));
    }

    #[test]
    fn a_call_type_requires_and_reads_a_caller() {
        let e = one(CALL_MISSED);
        assert_eq!(e.kind, "call.missed");
        assert_eq!(e.caller.as_deref(), Some("+34612345678"));
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(
            e.call_id.as_deref(),
            Some("wacid.HBgLMzQ2MTIzNDU2NzgVAgASGBQzQTdE")
        );
        assert!(!e.video);
        assert_eq!(e.outcome, None);

        let ended = CALL_MISSED.replace(r#""type": "call.missed""#, r#""type": "call.ended""#);
        let ended = one(&ended);
        assert_eq!(ended.kind, "call.ended");
        assert_eq!(ended.outcome, Some(Outcome::Unknown));

        // Our outgoing call: the other party is `to`.
        let ours = CALL_MISSED
            .replace(r#""type": "call.missed""#, r#""type": "call.ended""#)
            .replace(r#""direction": "incoming""#, r#""direction": "outbound""#);
        let ours = one(&ours);
        assert_eq!(ours.direction, Direction::Outgoing);
        assert_eq!(ours.caller.as_deref(), Some("+34910000000"));

        // An incoming call never takes our own `to` number for the caller.
        let nobody = CALL_MISSED.replace(r#""from": "+34612345678","#, "");
        assert_ne!(nobody, CALL_MISSED);
        let (field, problem) = field_err(&nobody);
        assert_eq!(field, "data.object");
        assert!(problem.contains("no caller"), "{problem}");

        let bad = CALL_MISSED.replace("+34612345678", "Lucía");
        let (field, problem) = field_err(&bad);
        assert_eq!(field, "data.object.from");
        assert!(problem.contains("not a phone number"), "{problem}");

        let video = CALL_MISSED.replace(r#""video": false"#, r#""video": "no""#);
        assert_eq!(field_err(&video).0, "data.object.video");
    }

    #[test]
    fn identity_prefers_the_envelope_id_then_the_delivery_header() {
        let with_header = one_with(REPORT, Some("msg_A"));
        let other_header = one_with(REPORT, Some("msg_B"));
        assert_eq!(with_header.id, other_header.id, "the envelope id wins");

        let no_id = REPORT.replace(r#""id": "evt_85e59919-3147-454b-bade-75...","#, "");
        assert_ne!(no_id, REPORT);
        assert_eq!(
            one_with(&no_id, Some("msg_A")).id,
            one_with(&no_id, Some("msg_A")).id
        );
        assert_ne!(
            one_with(&no_id, Some("msg_A")).id,
            one_with(&no_id, Some("msg_B")).id
        );
        // Neither: the content, so another report in the same second is
        // another event.
        assert_eq!(one_with(&no_id, None).id, one_with(&no_id, None).id);
        let later = no_id.replace("1747147674", "1747147999");
        assert_ne!(one_with(&no_id, None).id, one_with(&later, None).id);
        let delivered = no_id.replace(r#""status": "READ""#, r#""status": "DELIVERED""#);
        assert_ne!(delivered, no_id);
        assert_ne!(one_with(&no_id, None).id, one_with(&delivered, None).id);
        assert_ne!(one(REPORT).id, one(INCOMING).id);
    }

    #[test]
    fn auto_detection_reads_every_fixture_as_standard() {
        for body in [REPORT, INCOMING, FORM, CALL_MISSED] {
            let e = parse(
                body.as_bytes(),
                &ctx(Provider::Auto, Some("msg_2x1PcJ3b4Zs7tK0aEoEe2nH0sN1")),
            )
            .unwrap();
            assert_eq!(e[0].provider, Provider::Standard);
            assert_eq!(e[0].id, one(body).id);
        }
    }

    #[test]
    fn envelope_problems_name_the_field() {
        assert_eq!(field_err(r#"{"data":{"object":{}}}"#).0, "type");
        assert_eq!(field_err(r#"{"type":"","data":{"object":{}}}"#).0, "type");
        assert_eq!(field_err(r#"{"type":"message.report"}"#).0, "data");
        assert_eq!(
            field_err(r#"{"type":"message.report","data":"x"}"#).0,
            "data"
        );
        assert_eq!(
            field_err(r#"{"type":"message.report","data":{},"created_at":"someday"}"#).0,
            "created_at"
        );
        assert_eq!(
            field_err(r#"{"type":"message.report","data":{},"id":["x"]}"#).0,
            "id"
        );
        // `data` without `object` is the object.
        let flat = one(
            r#"{"id":"evt_1","type":"message.incoming","created_at":"2026-05-24T15:20:05Z","data":{"from":"+5215512345678"}}"#,
        );
        assert_eq!(flat.caller.as_deref(), Some("+5215512345678"));
    }

    #[test]
    fn hostile_input_is_an_error_or_a_plain_event_never_a_panic() {
        for body in [
            r#"{"type":"call.missed","data":{"object":[]}}"#,
            r#"{"type":"call.missed","data":{"object":{"from":{"phone_number":["+1"]}}}}"#,
            r#"{"type":"call.missed","data":{"object":{"from":"+34612345678","duration":-1}}}"#,
            r#"{"type":"message.report","data":{},"created_at":1e300}"#,
        ] {
            assert!(
                parse(body.as_bytes(), &ctx(Provider::Standard, None)).is_err(),
                "{body}"
            );
        }
        for body in [
            r#"{"type":"message.incoming","data":{"object":"text"}}"#,
            r#"{"type":"message.incoming","data":{"object":{"from":7,"sender":[],"to":{"wa_id":"🙂"}}}}"#,
            r#"{"type":"ünïcödé.event","data":{"object":{"phone":"+١٢٣٤٥٦٧"}}}"#,
        ] {
            assert_eq!(one(body).caller, None, "{body}");
        }
    }
}
