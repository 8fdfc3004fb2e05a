//! WAHA and the APIs built on it (Wawp, seed 001): one envelope per event.
//!
//! ```json
//! {"id": "evt_01…", "timestamp": 1752745555123, "session": "default",
//!  "metadata": {}, "engine": "NOWEB", "event": "call.received",
//!  "payload": {"id": "<call id>", "from": "5215512345678@c.us",
//!              "timestamp": 1752745555, "isVideo": false, "isGroup": false,
//!              "_data": {…engine-specific…}},
//!  "me": {"id": "5215500000000@c.us", "lid": "…@lid", "pushName": "Acme"}}
//! ```
//!
//! Older WAHA builds send the envelope without `id` and `timestamp`.
//!
//! | WAHA `event` | canonical kind |
//! |---|---|
//! | `call.received` | `call.incoming` |
//! | `call.accepted` | `call.accepted` |
//! | `call.rejected` | `call.rejected` |
//! | `call.missed` (some WAHA-compatible builds) | `call.missed` |
//!
//! WAHA itself never says a call was missed: ringback synthesises that after
//! the source's `ring_timeout`. Every other event (`message`, `message.any`,
//! `message.reaction`, `session.status`, …) is kept under its own name with
//! its `payload` as `event.data`; its caller is read when the payload names
//! a person, and is otherwise absent.
//!
//! # The call payload, engine by engine
//!
//! All engines build the same `CallData` (`id`, `from`, `timestamp` in Unix
//! *seconds*, `isVideo`, `isGroup`); they differ in `from` and `_data`:
//!
//! - WEBJS: `from` as whatsapp-web.js gives it (`<digits>@c.us`), no `_data`.
//! - NOWEB (Baileys): `from` is `<digits>@c.us` or a privacy id `<n>@lid`;
//!   `_data` is Baileys' call event (`chatId`, `from`, `date`, `status`,
//!   and `callerPn`, the phone form of a `@lid` caller, when WhatsApp sent it).
//! - GOWS (whatsmeow): `from` is `<digits>@c.us` or `<n>@lid`; `_data` is the
//!   whatsmeow event (`From`, `CallCreator`, `CallCreatorAlt` — the phone
//!   JID when the creator is a `@lid` —, `CallID`, `Timestamp`, `Data`). A
//!   missing stanza time reaches us as a negative timestamp (Go's zero time):
//!   it is ignored rather than refused.
//!
//! Older builds and WAHA-compatible APIs also send raw JIDs:
//! `<digits>@s.whatsapp.net`, `<digits>:<device>@s.whatsapp.net`, and
//! `<n>:<device>@lid`; all are read (the device part never belongs to the
//! caller). When the caller is a `@lid` and the payload also carries the
//! phone form, the phone wins.
//!
//! # Identity
//!
//! The envelope `id` (the same on WAHA's retries); else, for a call event,
//! the call id plus the kind, else the time as sent; for any other event,
//! the whole body.

use jiff::Timestamp;
use serde_json::Value;

use super::access::{as_sent, flag, join, opt_id, opt_obj, opt_str, req_str};
use super::{
    json_type_name, kind, normalise_phone, parse_time, Caller, Direction, Draft, Identity, Outcome,
    ParseError, PhoneError,
};

pub(crate) fn parse(v: &Value) -> Result<Vec<Draft>, ParseError> {
    let event = req_str(v, "event", "")?;
    if event.trim().is_empty() {
        return Err(ParseError::field("event", "is empty"));
    }
    let envelope = Envelope {
        id: opt_id(v, "id", "")?,
        time: provider_time(v, "timestamp", "")?,
    };
    let business = business(v)?;

    let canonical = match event {
        "call.received" => Some(kind::CALL_INCOMING),
        "call.accepted" => Some(kind::CALL_ACCEPTED),
        "call.rejected" => Some(kind::CALL_REJECTED),
        "call.missed" => Some(kind::CALL_MISSED),
        // A canonical call name sent as is (WAHA-compatible relays).
        other if kind::is_call(other) => Some(other),
        _ => None,
    };
    let mut d = match canonical {
        Some(k) => call_event(v, k, &envelope)?,
        None => other_event(v, event, &envelope),
    };
    d.business = business;
    Ok(vec![d])
}

struct Envelope {
    id: Option<String>,
    /// The envelope time (Unix ms) and its text as sent.
    time: Option<(Timestamp, String)>,
}

fn call_event(v: &Value, kind: &str, envelope: &Envelope) -> Result<Draft, ParseError> {
    let payload = match v.get("payload") {
        None | Some(Value::Null) => return Err(ParseError::missing("payload")),
        Some(p @ Value::Object(_)) => p,
        Some(other) => {
            return Err(ParseError::field(
                "payload",
                format!("expected an object, got {}", json_type_name(other)),
            ))
        }
    };
    let from = req_str(payload, "from", "payload")?;
    let mut caller =
        read_jid(from).map_err(|e| ParseError::field("payload.from", e.to_string()))?;
    if !caller.is_phone {
        if let Some(phone) = phone_form_of_lid_caller(payload) {
            caller = phone;
        }
    }
    let call_id = opt_id(payload, "id", "payload")?;
    let video = flag(payload, "isVideo", "payload")?;
    let payload_time = provider_time(payload, "timestamp", "payload")?;

    let identity = match (&envelope.id, &call_id) {
        (Some(id), _) => Identity::ProviderId(id.clone()),
        (None, Some(call)) => Identity::Call(call.clone()),
        (None, None) => Identity::Content(
            payload_time
                .as_ref()
                .or(envelope.time.as_ref())
                .map(|(_, sent)| sent.clone())
                .unwrap_or_default(),
        ),
    };
    let mut d = Draft::new(kind, identity);
    d.caller = Some(caller);
    d.name = push_name(payload);
    d.video = video;
    d.at = payload_time
        .or_else(|| envelope.time.clone())
        .map(|(t, _)| t);
    d.call_id = call_id;
    if kind == kind::CALL_ENDED {
        d.outcome = Some(Outcome::Unknown);
    }
    Ok(d)
}

/// A non-call event: stored and offered to workflows under its own name.
/// Its payload is not ours to validate, so nothing in it is an error.
fn other_event(v: &Value, event: &str, envelope: &Envelope) -> Draft {
    let payload = v.get("payload").filter(|p| p.is_object());
    // Without an envelope id the whole body is the identity: a payload's own
    // `id` is not enough (`message.ack` repeats the message id for each ack
    // level, `presence.update` the chat id for each change), and a retry
    // sends the same body.
    let identity = match &envelope.id {
        Some(id) => Identity::ProviderId(id.clone()),
        None => Identity::Content(v.to_string()),
    };
    let mut d = Draft::new(event, identity);
    if let Some(p) = payload {
        let from_me = p.get("fromMe").and_then(Value::as_bool).unwrap_or(false);
        if from_me {
            d.direction = Direction::Outgoing;
            d.caller = first_person(p, &["to"]);
        } else {
            // In a group `from` is the group and `participant` the person.
            d.caller = first_person(p, &["from", "participant"]);
            if d.caller.is_some() {
                d.name = push_name(p);
            }
        }
        let time = p
            .get("timestamp")
            .filter(|t| !is_zero_time(t))
            .and_then(|t| parse_time(t).ok());
        d.at = time;
    }
    if d.at.is_none() {
        d.at = envelope.time.as_ref().map(|(t, _)| *t);
    }
    d.data = v.get("payload").filter(|p| !p.is_null()).cloned();
    d
}

/// Our side: `me.id` when it is a phone, else the session name.
fn business(v: &Value) -> Result<Option<String>, ParseError> {
    if let Some(me) = opt_obj(v, "me", "")? {
        if let Some(id) = opt_str(me, "id", "me")? {
            if let Ok(c) = read_jid(id) {
                if c.is_phone {
                    return Ok(Some(c.id));
                }
            }
        }
    }
    Ok(opt_str(v, "session", "")?
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string))
}

/// A WhatsApp id as WAHA engines send it. `<n>:<device>@lid` loses its
/// device like a phone JID does: the device is not the person.
fn read_jid(raw: &str) -> Result<Caller, PhoneError> {
    let t = raw.trim();
    if let Some((user, _device)) = t.strip_suffix("@lid").and_then(|u| u.split_once(':')) {
        return normalise_phone(&format!("{user}@lid"));
    }
    normalise_phone(t)
}

/// The phone form of a `@lid` caller, where the engine passed it on:
/// Baileys' `callerPn` (NOWEB), whatsmeow's `CallCreatorAlt` (GOWS), or a
/// raw JID that happens to be a phone.
fn phone_form_of_lid_caller(payload: &Value) -> Option<Caller> {
    const TOP: [&str; 2] = ["callerPn", "caller_pn"];
    const ENGINE: [&str; 7] = [
        "callerPn",
        "caller_pn",
        "CallCreatorAlt",
        "CallCreator",
        "chatId",
        "from",
        "From",
    ];
    let engine = payload.get("_data");
    TOP.iter()
        .filter_map(|k| payload.get(*k))
        .chain(ENGINE.iter().filter_map(|k| engine.and_then(|d| d.get(*k))))
        .filter_map(Value::as_str)
        .filter_map(|s| read_jid(s).ok())
        .find(|c| c.is_phone)
}

/// The first of `keys` that names a person (a phone or a privacy id).
fn first_person(payload: &Value, keys: &[&str]) -> Option<Caller> {
    keys.iter()
        .filter_map(|k| payload.get(*k))
        .filter_map(Value::as_str)
        .find_map(|s| read_jid(s).ok())
}

/// The caller's push name, wherever the engine put it.
fn push_name(payload: &Value) -> Option<String> {
    const TOP: [&str; 3] = ["pushName", "notifyName", "pushname"];
    const ENGINE: [&str; 4] = ["pushName", "notifyName", "PushName", "notify"];
    let engine = payload.get("_data");
    let gows_info = engine.and_then(|d| d.get("Info"));
    TOP.iter()
        .filter_map(|k| payload.get(*k))
        .chain(ENGINE.iter().filter_map(|k| engine.and_then(|d| d.get(*k))))
        .chain(gows_info.and_then(|i| i.get("PushName")))
        .filter_map(Value::as_str)
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

/// An optional provider time and its text as sent. A zero or negative number
/// is Go's or JavaScript's "no time" and counts as absent.
fn provider_time(
    obj: &Value,
    key: &str,
    path: &str,
) -> Result<Option<(Timestamp, String)>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(t) if is_zero_time(t) => Ok(None),
        Some(t) => parse_time(t)
            .map(|at| Some((at, as_sent(t))))
            .map_err(|e| ParseError::field(join(path, key), e)),
    }
}

fn is_zero_time(t: &Value) -> bool {
    t.as_f64().is_some_and(|f| f <= 0.0)
}

#[cfg(test)]
mod tests {
    use crate::event::testing;
    use crate::event::{parse, Direction, Event, ParseContext, Provider};

    const SEED: &str = include_str!("../../tests/fixtures/waha/call_received_wawp_seed.json");
    const WEBJS: &str = include_str!("../../tests/fixtures/waha/call_received_webjs.json");
    const NOWEB: &str = include_str!("../../tests/fixtures/waha/call_received_noweb.json");
    const NOWEB_ACCEPTED: &str = include_str!("../../tests/fixtures/waha/call_accepted_noweb.json");
    const GOWS: &str = include_str!("../../tests/fixtures/waha/call_received_gows.json");
    const GOWS_REJECTED: &str = include_str!("../../tests/fixtures/waha/call_rejected_gows.json");
    const OLD: &str = include_str!("../../tests/fixtures/waha/call_received_old_envelope.json");
    const LID_WITH_PN: &str =
        include_str!("../../tests/fixtures/waha/call_received_lid_noweb.json");
    const LID_ONLY: &str = include_str!("../../tests/fixtures/waha/call_received_lid_gows.json");
    const DEVICE_JID: &str =
        include_str!("../../tests/fixtures/waha/call_received_device_jid.json");
    const MESSAGE: &str = include_str!("../../tests/fixtures/waha/message_webjs.json");
    const MESSAGE_GROUP: &str = include_str!("../../tests/fixtures/waha/message_group_noweb.json");
    const SESSION_STATUS: &str = include_str!("../../tests/fixtures/waha/session_status.json");

    fn ctx(provider: Provider, business: Option<&'static str>) -> ParseContext<'static> {
        ParseContext {
            business,
            ..testing::ctx("wawp", provider)
        }
    }

    fn one(body: &str) -> Event {
        testing::only(body, &ctx(Provider::Waha, None))
    }

    fn field_err(body: &str) -> (String, String) {
        let e = testing::error(body, &ctx(Provider::Waha, None));
        let (field, problem) = testing::field(&e);
        (field.to_string(), problem.to_string())
    }

    #[test]
    fn the_wawp_seed_call_becomes_an_incoming_call() {
        let e = one(SEED);
        assert_eq!(e.kind, "call.incoming");
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(e.caller.as_deref(), Some("+11111111111"));
        assert!(e.caller_is_phone);
        assert_eq!(e.business.as_deref(), Some("+11111111111"));
        assert_eq!(e.call_id.as_deref(), Some("call_12345"));
        assert!(!e.video);
        // No payload time: the envelope's milliseconds.
        assert_eq!(e.at.to_string(), "2021-10-18T14:38:10.123Z");
        assert_eq!(e.provider, Provider::Waha);
    }

    #[test]
    fn webjs_noweb_and_gows_calls_read_the_same() {
        for (body, video, at) in [
            (WEBJS, false, "2025-07-17T09:45:55Z"),
            (NOWEB, false, "2025-07-17T09:45:55Z"),
            (GOWS, true, "2025-07-17T10:02:31Z"),
        ] {
            let e = one(body);
            assert_eq!(e.kind, "call.incoming", "{body}");
            assert_eq!(e.caller.as_deref(), Some("+5215512345678"), "{body}");
            assert!(e.caller_is_phone);
            assert_eq!(e.country.as_deref(), Some("MX"));
            assert_eq!(e.business.as_deref(), Some("+5215500000000"));
            assert_eq!(e.video, video, "{body}");
            assert_eq!(e.at.to_string(), at, "{body}");
            assert!(e.call_id.is_some());
            assert_eq!(e.data, None);
        }
        assert_eq!(
            one(NOWEB).call_id.as_deref(),
            Some("9A1B4C7E2D8F0A3B5C6D7E8F9A0B1C2D")
        );
        assert_eq!(
            one(GOWS).call_id.as_deref(),
            Some("3EB0C1D2E3F4A5B6C7D8E9F0A1B2C3D4")
        );
    }

    #[test]
    fn accepted_and_rejected_map_to_canonical_kinds_and_keep_the_call_id() {
        let ring = one(NOWEB);
        let accepted = one(NOWEB_ACCEPTED);
        assert_eq!(accepted.kind, "call.accepted");
        assert_eq!(accepted.call_id, ring.call_id);
        assert_eq!(accepted.at.to_string(), "2025-07-17T09:46:04Z");
        assert_ne!(accepted.id, ring.id);

        let rejected = one(GOWS_REJECTED);
        assert_eq!(rejected.kind, "call.rejected");
        assert_eq!(rejected.call_id, one(GOWS).call_id);
        assert_eq!(rejected.caller.as_deref(), Some("+5215512345678"));
    }

    #[test]
    fn the_old_envelope_without_id_or_time_still_parses() {
        let e = one(OLD);
        assert_eq!(e.kind, "call.incoming");
        assert_eq!(e.caller.as_deref(), Some("+22222222222"));
        // No `me`: the session names our side.
        assert_eq!(e.business.as_deref(), Some("default"));
        assert_eq!(e.at.to_string(), "2024-07-19T07:26:40Z");
        // Identity falls back to call id + kind: stable, and distinct per kind.
        assert_eq!(e.id, one(OLD).id);
        let accepted = OLD.replace("call.received", "call.accepted");
        assert_ne!(one(&accepted).id, e.id);
        assert_eq!(one(&accepted).kind, "call.accepted");
    }

    #[test]
    fn a_configured_business_number_wins_over_the_session_name() {
        let e = parse(OLD.as_bytes(), &ctx(Provider::Waha, Some("+5215500000000"))).unwrap();
        assert_eq!(e[0].business.as_deref(), Some("+5215500000000"));
    }

    #[test]
    fn a_lid_caller_with_a_phone_form_is_the_phone() {
        let e = one(LID_WITH_PN);
        assert_eq!(e.caller.as_deref(), Some("+5215512345678"));
        assert!(e.caller_is_phone);
        assert_eq!(e.country.as_deref(), Some("MX"));
    }

    #[test]
    fn a_lid_caller_alone_is_kept_as_a_privacy_id() {
        let e = one(LID_ONLY);
        assert_eq!(e.caller.as_deref(), Some("203945781234567@lid"));
        assert!(!e.caller_is_phone);
        assert_eq!(e.country, None);
        assert_eq!(e.kind, "call.incoming");
        // A device suffix on a privacy id is not part of the person.
        let with_device = LID_ONLY.replace(
            r#""from": "203945781234567@lid""#,
            r#""from": "203945781234567:31@lid""#,
        );
        assert_ne!(with_device, LID_ONLY);
        assert_eq!(
            one(&with_device).caller.as_deref(),
            Some("203945781234567@lid")
        );
    }

    #[test]
    fn a_device_jid_caller_loses_its_device() {
        let e = one(DEVICE_JID);
        assert_eq!(e.caller.as_deref(), Some("+34612345678"));
        assert!(e.caller_is_phone);
        assert_eq!(e.country.as_deref(), Some("ES"));
        // Our own number in `me` can be a device JID too.
        assert_eq!(e.business.as_deref(), Some("+34910000000"));
    }

    #[test]
    fn ids_are_stable_per_delivery_and_distinct_per_event() {
        for body in [
            SEED,
            WEBJS,
            NOWEB,
            GOWS,
            GOWS_REJECTED,
            OLD,
            LID_ONLY,
            MESSAGE,
        ] {
            assert_eq!(one(body).id, one(body).id, "{body}");
        }
        let ids: std::collections::HashSet<String> = [
            SEED,
            WEBJS,
            NOWEB,
            NOWEB_ACCEPTED,
            GOWS,
            GOWS_REJECTED,
            OLD,
            LID_WITH_PN,
            LID_ONLY,
            DEVICE_JID,
        ]
        .iter()
        .map(|b| one(b).id)
        .collect();
        assert_eq!(ids.len(), 10);
    }

    #[test]
    fn auto_detection_reads_every_fixture_as_waha() {
        for body in [
            SEED,
            WEBJS,
            NOWEB,
            NOWEB_ACCEPTED,
            GOWS,
            GOWS_REJECTED,
            OLD,
            LID_WITH_PN,
            LID_ONLY,
            DEVICE_JID,
            MESSAGE,
            MESSAGE_GROUP,
            SESSION_STATUS,
        ] {
            let e = parse(body.as_bytes(), &ctx(Provider::Auto, None)).unwrap();
            assert_eq!(e[0].provider, Provider::Waha, "{body}");
            assert_eq!(e[0].id, one(body).id);
        }
    }

    #[test]
    fn a_message_is_kept_under_its_own_kind_with_the_sender_as_caller() {
        let e = one(MESSAGE);
        assert_eq!(e.kind, "message");
        assert_eq!(e.caller.as_deref(), Some("+5215512345678"));
        assert_eq!(e.name.as_deref(), Some("Juan Pérez"));
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(e.at.to_string(), "2025-07-17T11:15:02Z");
        assert_eq!(e.business.as_deref(), Some("+5215500000000"));
        let data = e.data.expect("the payload is offered as event.data");
        assert_eq!(data["body"], "Hola, ¿tienen cita mañana?");

        let group = one(MESSAGE_GROUP);
        assert_eq!(group.kind, "message");
        assert_eq!(
            group.caller.as_deref(),
            Some("+34612345678"),
            "the participant, not the group"
        );

        // Our own message (`message.any`, fromMe): the other party is `to`.
        let mine = MESSAGE
            .replace(r#""event": "message""#, r#""event": "message.any""#)
            .replace(r#""fromMe": false"#, r#""fromMe": true"#)
            .replace(
                r#""from": "5215512345678@c.us""#,
                r#""from": "5215500000000@c.us""#,
            )
            .replace(
                r#""to": "5215500000000@c.us""#,
                r#""to": "5215512345678@c.us""#,
            );
        let mine = one(&mine);
        assert_eq!(mine.kind, "message.any");
        assert_eq!(mine.direction, Direction::Outgoing);
        assert_eq!(mine.caller.as_deref(), Some("+5215512345678"));
        assert_eq!(mine.name, None);
    }

    #[test]
    fn a_session_event_names_nobody() {
        let e = one(SESSION_STATUS);
        assert_eq!(e.kind, "session.status");
        assert_eq!(e.caller, None);
        assert!(!e.caller_is_phone);
        assert_eq!(e.data.as_ref().unwrap()["status"], "WORKING");
        // Same body, same id; another status, another id.
        assert_eq!(one(SESSION_STATUS).id, e.id);
        let failed = SESSION_STATUS.replace(r#""status": "WORKING","#, r#""status": "FAILED","#);
        assert_ne!(one(&failed).id, e.id);
    }

    #[test]
    fn acks_of_one_message_without_envelope_ids_are_distinct_events() {
        let delivered = r#"{"event":"message.ack","session":"default","engine":"WEBJS","payload":{"id":"true_5215512345678@c.us_3EB0A1","from":"5215512345678@c.us","participant":null,"fromMe":true,"ack":2,"ackName":"DEVICE"}}"#;
        let read = delivered.replace(
            r#""ack":2,"ackName":"DEVICE""#,
            r#""ack":3,"ackName":"READ""#,
        );
        assert_ne!(one(delivered).id, one(&read).id);
        assert_eq!(one(delivered).id, one(delivered).id);
        // Our own message: the other party is `to`, absent here.
        assert_eq!(one(delivered).caller, None);
        assert_eq!(one(delivered).direction, Direction::Outgoing);
    }

    #[test]
    fn a_call_without_a_usable_caller_is_refused_naming_payload_from() {
        let no_from = NOWEB.replace(r#""from": "5215512345678@c.us","#, "");
        assert_ne!(no_from, NOWEB);
        assert_eq!(field_err(&no_from).0, "payload.from");

        let group = WEBJS.replace("5215512345678@c.us", "120363025555555555@g.us");
        let (field, problem) = field_err(&group);
        assert_eq!(field, "payload.from");
        assert!(problem.contains("groups"), "{problem}");

        let garbage = WEBJS.replace("5215512345678@c.us", "not-a-number@c.us");
        assert_eq!(field_err(&garbage).0, "payload.from");

        let number = WEBJS.replace(r#""5215512345678@c.us""#, "5215512345678");
        let (field, problem) = field_err(&number);
        assert_eq!(field, "payload.from");
        assert!(problem.contains("expected a string"), "{problem}");

        let no_payload = r#"{"event":"call.received","session":"default"}"#;
        assert_eq!(field_err(no_payload).0, "payload");
        let list_payload = r#"{"event":"call.received","session":"default","payload":[]}"#;
        assert_eq!(field_err(list_payload).0, "payload");
    }

    #[test]
    fn wrong_types_name_the_full_path() {
        let video = WEBJS.replace(r#""isVideo": false"#, r#""isVideo": "no""#);
        assert_eq!(field_err(&video).0, "payload.isVideo");
        let time = WEBJS.replace(r#""timestamp": 1752745555,"#, r#""timestamp": "soon","#);
        assert_eq!(field_err(&time).0, "payload.timestamp");
        let envelope_time =
            WEBJS.replace(r#""timestamp": 1752745555123,"#, r#""timestamp": true,"#);
        assert_eq!(field_err(&envelope_time).0, "timestamp");
        let call_id = WEBJS.replace(
            r#""id": "ABCDEF0123456789ABCDEF0123456789","#,
            r#""id": {"x": 1},"#,
        );
        assert_eq!(field_err(&call_id).0, "payload.id");
        let me = WEBJS.replace(r#""id": "5215500000000@c.us""#, r#""id": 5215500000000"#);
        assert_eq!(field_err(&me).0, "me.id");
        assert_eq!(field_err(r#"{"event": 3, "payload": {}}"#).0, "event");
    }

    #[test]
    fn gows_zero_time_is_ignored_not_refused() {
        let zero = GOWS.replace(
            r#""timestamp": 1752746551,"#,
            r#""timestamp": -62135596800,"#,
        );
        assert_ne!(zero, GOWS);
        let e = one(&zero);
        // The envelope time takes over.
        assert_eq!(e.at.to_string(), "2025-07-17T10:02:31.412Z");
    }

    #[test]
    fn hostile_input_is_an_error_or_a_plain_event_never_a_panic() {
        for body in [
            r#"{"event":"call.received","payload":{"from":"+5215512345678","timestamp":1e300}}"#,
            r#"{"event":"call.received","payload":{"from":"@lid"}}"#,
            r#"{"event":"call.received","payload":{"from":":1@lid"}}"#,
            r#"{"event":"call.received","payload":{"from":"📞@c.us"}}"#,
            r#"{"event":"call.received","payload":{"from":""}}"#,
            r#"{"event":"call.received","me":[],"payload":{"from":"+5215512345678"}}"#,
        ] {
            assert!(
                parse(body.as_bytes(), &ctx(Provider::Waha, None)).is_err(),
                "{body}"
            );
        }
        for body in [
            r#"{"event":"message","payload":[1,2,3]}"#,
            r#"{"event":"message","payload":"text"}"#,
            r#"{"event":"message","payload":{"from":{"x":1},"timestamp":"never","_data":[]}}"#,
            r#"{"event":"message","payload":{"from":"👋","fromMe":"yes","to":7}}"#,
            r#"{"event":"presence.update","payload":{"id":18446744073709551615}}"#,
        ] {
            let e = one(body);
            assert_eq!(e.caller, None, "{body}");
        }
    }
}
