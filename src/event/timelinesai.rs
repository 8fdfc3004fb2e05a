//! TimelinesAI (seed 003): one webhook per *finished* call, plus reactions.
//!
//! ```json
//! {"event_type": "call:incoming:missed",
//!  "chat": {"chat_id": 123456, "chat_type": "direct", "phone": "+123456789", …},
//!  "whatsapp_account": {"whatsapp_account_wid": "…", "phone": "+123456789", …},
//!  "call_details": {"duration": null, "direction": "incoming", "is_video": false,
//!                   "status": "Missed", "timestamp": "2026-05-24 10:35:18 +0200",
//!                   "message_uid": "c7ec509d-…",
//!                   "caller": {"full_name": "John Smith", "phone": "+123456789"},
//!                   "recipient": {"full_name": "Agent Brown", "phone": "+987654321"}}}
//! ```
//!
//! | `event_type` | `status` | kind | outcome |
//! |---|---|---|---|
//! | `call:incoming:missed` | Missed | `call.missed` | — |
//! | `call:incoming:ended` | Answered | `call.ended` | `answered` |
//! | `call:incoming:ended` | Rejected | `call.rejected` | `rejected` |
//! | `call:outgoing:ended` | Ended | `call.ended` | `answered` |
//! | `call:outgoing:ended` | No Answer | `call.ended` | `no_answer` |
//! | `call:outgoing:ended` | Rejected | `call.ended` | `rejected` |
//! | `message:reaction` | | `message.reaction` | |
//!
//! An incoming call we declined is `call.rejected`, like a WAHA or Wazzap
//! rejection, so one workflow serves every provider. An outgoing call the
//! other party declined stays `call.ended` with outcome `rejected`: it is the
//! end of *our* call, and `call.rejected` workflows (meant for a customer
//! whose call we turned down) must not fire for it. Status words are matched
//! without regard to case or spacing (`No Answer`, `no_answer`); `Declined`
//! (the CRM wording) counts as `Rejected`; an unknown status on an ended call
//! gives outcome `unknown` rather than an error.
//!
//! The caller is the other party: `call_details.caller` for incoming calls,
//! `call_details.recipient` for outgoing ones. The business is
//! `whatsapp_account.phone`, else the account's WhatsApp id.
//!
//! Other event types (`message:received:new`, …) are kept under their own
//! name with `:` turned into `.` (`message.received.new`), like
//! `message:reaction` → `message.reaction`, so every kind ringback offers
//! reads the same way. An unknown `call:*` type is refused.
//!
//! Identity: each call fires one webhook, after it ends, so the event type
//! plus `message_uid` identifies it.

use jiff::Timestamp;
use serde_json::Value;

use super::access::{as_sent, flag, join, opt_id, opt_obj, opt_str, opt_u64, req_str};
use super::{
    json_type_name, kind, normalise_phone, parse_time, Caller, Direction, Draft, Identity, Outcome,
    ParseError,
};

const INCOMING_MISSED: &str = "call:incoming:missed";
const INCOMING_ENDED: &str = "call:incoming:ended";
const OUTGOING_ENDED: &str = "call:outgoing:ended";
const REACTION: &str = "message:reaction";

pub(crate) fn parse(v: &Value) -> Result<Vec<Draft>, ParseError> {
    let event_type = req_str(v, "event_type", "")?;
    let account = Account::read(v)?;
    let mut d = match event_type {
        INCOMING_MISSED | INCOMING_ENDED | OUTGOING_ENDED => call(v, event_type)?,
        REACTION => reaction(v, &account)?,
        t if t.trim().is_empty() => return Err(ParseError::field("event_type", "is empty")),
        t if t.starts_with("call:") => {
            return Err(ParseError::field(
                "event_type",
                format!(
                    "unknown TimelinesAI call event `{}` (expected {INCOMING_MISSED}, {INCOMING_ENDED} or {OUTGOING_ENDED})",
                    t.chars().take(60).collect::<String>()
                ),
            ))
        }
        other => other_event(v, other),
    };
    d.business = account.business();
    Ok(vec![d])
}

/// Our side of the conversation, from `whatsapp_account`.
struct Account {
    phone: Option<Caller>,
    wid: Option<String>,
}

impl Account {
    fn read(v: &Value) -> Result<Account, ParseError> {
        let Some(acc) = opt_obj(v, "whatsapp_account", "")? else {
            return Ok(Account {
                phone: None,
                wid: None,
            });
        };
        let phone = opt_str(acc, "phone", "whatsapp_account")?
            .and_then(|p| normalise_phone(p).ok())
            .filter(|c| c.is_phone);
        let wid = opt_str(acc, "whatsapp_account_wid", "whatsapp_account")?
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_string);
        Ok(Account { phone, wid })
    }

    /// E.164 when the account says; else the WhatsApp id, as a number when
    /// it is a phone JID.
    fn business(&self) -> Option<String> {
        if let Some(p) = &self.phone {
            return Some(p.id.clone());
        }
        let wid = self.wid.as_ref()?;
        Some(match normalise_phone(wid) {
            Ok(c) if c.is_phone => c.id,
            _ => wid.clone(),
        })
    }
}

fn call(v: &Value, event_type: &str) -> Result<Draft, ParseError> {
    let details = match v.get("call_details") {
        None | Some(Value::Null) => return Err(ParseError::missing("call_details")),
        Some(d @ Value::Object(_)) => d,
        Some(other) => {
            return Err(ParseError::field(
                "call_details",
                format!("expected an object, got {}", json_type_name(other)),
            ))
        }
    };
    let outgoing = event_type == OUTGOING_ENDED;
    let status = opt_str(details, "status", "call_details")?;
    let (kind, outcome) = classify(event_type, status);

    let party_path = if outgoing {
        "call_details.recipient"
    } else {
        "call_details.caller"
    };
    let party_key = if outgoing { "recipient" } else { "caller" };
    let phone_path = join(party_path, "phone");
    let party = opt_obj(details, party_key, "call_details")?
        .ok_or_else(|| ParseError::missing(phone_path.clone()))?;
    let phone = opt_str(party, "phone", party_path)?
        .ok_or_else(|| ParseError::missing(phone_path.clone()))?;
    let caller =
        normalise_phone(phone).map_err(|e| ParseError::field(phone_path, e.to_string()))?;
    let name = non_empty(opt_str(party, "full_name", party_path)?);

    let video = flag(details, "is_video", "call_details")?;
    let duration = opt_u64(details, "duration", "call_details")?;
    let time = time_field(details, "timestamp", "call_details")?;
    let uid = opt_id(details, "message_uid", "call_details")?;

    let identity = match &uid {
        Some(uid) => Identity::ProviderId(format!("{event_type}:{uid}")),
        None => Identity::Content(time.as_ref().map(|(_, s)| s.clone()).unwrap_or_default()),
    };
    let mut d = Draft::new(kind, identity);
    d.direction = if outgoing {
        Direction::Outgoing
    } else {
        Direction::Incoming
    };
    d.caller = Some(caller);
    d.name = name;
    d.video = video;
    d.at = time.map(|(t, _)| t);
    d.call_id = uid;
    d.duration = duration;
    d.outcome = outcome;
    Ok(d)
}

/// (kind, outcome) of a finished call from its event type and status.
fn classify(event_type: &str, status: Option<&str>) -> (&'static str, Option<Outcome>) {
    let s: String = status
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match event_type {
        INCOMING_MISSED => (kind::CALL_MISSED, None),
        INCOMING_ENDED => match s.as_str() {
            "answered" | "ended" => (kind::CALL_ENDED, Some(Outcome::Answered)),
            "rejected" | "declined" => (kind::CALL_REJECTED, Some(Outcome::Rejected)),
            "missed" | "noanswer" => (kind::CALL_MISSED, None),
            _ => (kind::CALL_ENDED, Some(Outcome::Unknown)),
        },
        _ => match s.as_str() {
            "ended" | "answered" => (kind::CALL_ENDED, Some(Outcome::Answered)),
            "noanswer" | "missed" => (kind::CALL_ENDED, Some(Outcome::NoAnswer)),
            "rejected" | "declined" => (kind::CALL_ENDED, Some(Outcome::Rejected)),
            "failed" => (kind::CALL_ENDED, Some(Outcome::Failed)),
            _ => (kind::CALL_ENDED, Some(Outcome::Unknown)),
        },
    }
}

/// `message:reaction`: the reactor is the other party, unless it is us (an
/// agent reacting in WhatsApp or the Shared Inbox), or unknown (`reactor`
/// null): then, in a direct chat, the chat's contact is.
fn reaction(v: &Value, account: &Account) -> Result<Draft, ParseError> {
    let r = match v.get("reaction") {
        None | Some(Value::Null) => return Err(ParseError::missing("reaction")),
        Some(r @ Value::Object(_)) => r,
        Some(other) => {
            return Err(ParseError::field(
                "reaction",
                format!("expected an object, got {}", json_type_name(other)),
            ))
        }
    };
    let uid = opt_id(r, "message_uid", "reaction")?;
    let action = opt_str(r, "action", "reaction")?;
    let emoji = opt_str(r, "emoji", "reaction")?;
    let reactor = opt_obj(r, "reactor", "reaction")?;
    let (reactor_phone, reactor_name) = match reactor {
        Some(x) => (
            opt_str(x, "phone", "reaction.reactor")?,
            non_empty(opt_str(x, "full_name", "reaction.reactor")?),
        ),
        None => (None, None),
    };
    let time = time_field(r, "timestamp", "reaction")?;

    let reactor_caller = reactor_phone.and_then(|p| normalise_phone(p).ok());
    let ours = match (&reactor_caller, &account.phone) {
        (Some(a), Some(b)) => a.is_phone && a.id == b.id,
        _ => false,
    };
    let (caller, name, direction) = match reactor_caller {
        Some(c) if !ours => (Some(c), reactor_name, Direction::Incoming),
        other => {
            let (chat_caller, chat_name) = chat_contact(v);
            let direction = if other.is_some() {
                Direction::Outgoing
            } else {
                Direction::Incoming
            };
            (chat_caller, chat_name, direction)
        }
    };

    // One event per reaction, and TimelinesAI sends no event id: a reaction
    // is what it reacts to, what it did, who did it and when.
    let identity = Identity::ProviderId(format!(
        "{REACTION}:{}:{}:{}:{}:{}",
        uid.as_deref().unwrap_or(""),
        action.unwrap_or(""),
        emoji.unwrap_or(""),
        reactor_phone.unwrap_or(""),
        time.as_ref().map(|(_, s)| s.as_str()).unwrap_or(""),
    ));
    let mut d = Draft::new(kind::MESSAGE_REACTION, identity);
    d.direction = direction;
    d.caller = caller;
    d.name = name;
    d.at = time.map(|(t, _)| t);
    d.data = Some(r.clone());
    Ok(d)
}

/// Any other event type: kept, never refused for its content.
fn other_event(v: &Value, event_type: &str) -> Draft {
    let message = v.get("message").filter(|m| m.is_object());
    let sent = message
        .and_then(|m| m.get("direction"))
        .and_then(Value::as_str)
        == Some("sent");
    let party = message
        .and_then(|m| m.get(if sent { "recipient" } else { "sender" }))
        .filter(|p| p.is_object());
    let party_caller = party
        .and_then(|p| p.get("phone"))
        .and_then(Value::as_str)
        .and_then(|p| normalise_phone(p).ok());
    let (caller, name) = match party_caller {
        Some(c) => (
            Some(c),
            party
                .and_then(|p| p.get("full_name"))
                .and_then(Value::as_str)
                .and_then(|n| non_empty(Some(n))),
        ),
        None => chat_contact(v),
    };
    let uid = message
        .and_then(|m| m.get("message_uid"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty());
    let identity = match uid {
        Some(uid) => Identity::ProviderId(format!("{event_type}:{uid}")),
        None => Identity::Content(v.to_string()),
    };
    let mut d = Draft::new(event_type.replace(':', "."), identity);
    d.direction = if sent {
        Direction::Outgoing
    } else {
        Direction::Incoming
    };
    d.caller = caller;
    d.name = name;
    d.at = message
        .and_then(|m| m.get("timestamp"))
        .filter(|t| !t.is_null())
        .and_then(|t| parse_time(t).ok());
    d.data = message.cloned();
    d
}

/// The contact of a direct chat (`chat.phone`, `chat.full_name`); nobody
/// for a group chat.
fn chat_contact(v: &Value) -> (Option<Caller>, Option<String>) {
    let Some(chat) = v.get("chat").filter(|c| c.is_object()) else {
        return (None, None);
    };
    let direct = match chat.get("chat_type").and_then(Value::as_str) {
        Some(t) => t == "direct",
        // Older payloads: `is_group` instead of `chat_type`.
        None => chat.get("is_group").and_then(Value::as_bool) == Some(false),
    };
    if !direct {
        return (None, None);
    }
    let caller = chat
        .get("phone")
        .and_then(Value::as_str)
        .and_then(|p| normalise_phone(p).ok());
    let name = caller.as_ref().and_then(|_| {
        chat.get("full_name")
            .and_then(Value::as_str)
            .and_then(|n| non_empty(Some(n)))
    });
    (caller, name)
}

/// An optional time and its text as sent.
fn time_field(
    obj: &Value,
    key: &str,
    path: &str,
) -> Result<Option<(Timestamp, String)>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(t) => {
            let at = parse_time(t).map_err(|e| ParseError::field(join(path, key), e))?;
            Ok(Some((at, as_sent(t))))
        }
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use crate::event::testing;
    use crate::event::{parse, Direction, Event, Outcome, ParseContext, Provider};

    const MISSED: &str = include_str!("../../tests/fixtures/timelinesai/call_incoming_missed.json");
    const ANSWERED: &str =
        include_str!("../../tests/fixtures/timelinesai/call_incoming_ended_answered.json");
    const DECLINED: &str =
        include_str!("../../tests/fixtures/timelinesai/call_incoming_ended_rejected.json");
    const OUT_ENDED: &str =
        include_str!("../../tests/fixtures/timelinesai/call_outgoing_ended_ended.json");
    const OUT_NO_ANSWER: &str =
        include_str!("../../tests/fixtures/timelinesai/call_outgoing_ended_no_answer.json");
    const OUT_REJECTED: &str =
        include_str!("../../tests/fixtures/timelinesai/call_outgoing_ended_rejected.json");
    const REACTION: &str = include_str!("../../tests/fixtures/timelinesai/message_reaction.json");
    const REACTION_NULL: &str =
        include_str!("../../tests/fixtures/timelinesai/message_reaction_reactor_null.json");
    const MESSAGE: &str =
        include_str!("../../tests/fixtures/timelinesai/message_received_new.json");

    fn ctx(provider: Provider) -> ParseContext<'static> {
        testing::ctx("timelines", provider)
    }

    fn one(body: &str) -> Event {
        testing::only(body, &ctx(Provider::Timelinesai))
    }

    fn field_err(body: &str) -> (String, String) {
        let e = testing::error(body, &ctx(Provider::Timelinesai));
        let (field, problem) = testing::field(&e);
        (field.to_string(), problem.to_string())
    }

    #[test]
    fn the_seed_missed_call_becomes_a_canonical_missed_call() {
        let e = one(MISSED);
        assert_eq!(e.kind, "call.missed");
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(e.caller.as_deref(), Some("+123456789"));
        assert!(e.caller_is_phone);
        assert_eq!(e.name.as_deref(), Some("John Smith"));
        assert_eq!(e.business.as_deref(), Some("+123456789"));
        assert_eq!(e.at.to_string(), "2026-05-24T08:35:18Z");
        assert_eq!(
            e.call_id.as_deref(),
            Some("c7ec509d-0171-1ead-a84b-c6943a644768")
        );
        assert_eq!(e.duration, None);
        assert_eq!(e.outcome, None);
        assert!(!e.video);
        assert_eq!(e.provider, Provider::Timelinesai);
    }

    #[test]
    fn every_status_maps_to_kind_outcome_and_direction() {
        for (body, kind, outcome, direction, caller, name, duration) in [
            (
                ANSWERED,
                "call.ended",
                Some(Outcome::Answered),
                Direction::Incoming,
                "+5215512345678",
                "Juan Pérez",
                Some(184),
            ),
            (
                DECLINED,
                "call.rejected",
                Some(Outcome::Rejected),
                Direction::Incoming,
                "+5215512345678",
                "Juan Pérez",
                None,
            ),
            (
                OUT_ENDED,
                "call.ended",
                Some(Outcome::Answered),
                Direction::Outgoing,
                "+34612345678",
                "Lucía García",
                Some(62),
            ),
            (
                OUT_NO_ANSWER,
                "call.ended",
                Some(Outcome::NoAnswer),
                Direction::Outgoing,
                "+34612345678",
                "Lucía García",
                None,
            ),
            (
                OUT_REJECTED,
                "call.ended",
                Some(Outcome::Rejected),
                Direction::Outgoing,
                "+34612345678",
                "Lucía García",
                Some(0),
            ),
        ] {
            let e = one(body);
            assert_eq!(e.kind, kind, "{body}");
            assert_eq!(e.outcome, outcome, "{body}");
            assert_eq!(e.direction, direction, "{body}");
            assert_eq!(e.caller.as_deref(), Some(caller), "{body}");
            assert_eq!(e.name.as_deref(), Some(name), "{body}");
            assert_eq!(e.duration, duration, "{body}");
            assert_eq!(e.business.as_deref(), Some("+5215500000000"), "{body}");
        }
        assert_eq!(one(ANSWERED).country.as_deref(), Some("MX"));
        assert_eq!(one(OUT_ENDED).country.as_deref(), Some("ES"));
        assert!(one(OUT_ENDED).video);
        assert_eq!(one(ANSWERED).at.to_string(), "2026-05-24T15:12:40Z");
    }

    #[test]
    fn status_words_are_matched_loosely_and_unknown_ones_are_unknown() {
        let spelled = OUT_NO_ANSWER.replace(r#""status": "No Answer""#, r#""status": "no_answer""#);
        assert_ne!(spelled, OUT_NO_ANSWER);
        assert_eq!(one(&spelled).outcome, Some(Outcome::NoAnswer));
        let declined = DECLINED.replace(r#""status": "Rejected""#, r#""status": "Declined""#);
        assert_eq!(one(&declined).kind, "call.rejected");
        let odd = ANSWERED.replace(r#""status": "Answered""#, r#""status": "Transferred""#);
        assert_eq!(one(&odd).kind, "call.ended");
        assert_eq!(one(&odd).outcome, Some(Outcome::Unknown));
    }

    #[test]
    fn ids_are_stable_and_distinct_per_call_and_event_type() {
        for body in [
            MISSED,
            ANSWERED,
            DECLINED,
            OUT_ENDED,
            OUT_NO_ANSWER,
            OUT_REJECTED,
            REACTION,
            REACTION_NULL,
            MESSAGE,
        ] {
            assert_eq!(one(body).id, one(body).id);
            let auto = parse(body.as_bytes(), &ctx(Provider::Auto)).unwrap();
            assert_eq!(auto[0].provider, Provider::Timelinesai);
            assert_eq!(auto[0].id, one(body).id);
        }
        let ids: std::collections::HashSet<String> = [
            MISSED,
            ANSWERED,
            DECLINED,
            OUT_ENDED,
            OUT_NO_ANSWER,
            OUT_REJECTED,
            REACTION,
            REACTION_NULL,
            MESSAGE,
        ]
        .iter()
        .map(|b| one(b).id)
        .collect();
        assert_eq!(ids.len(), 9);
        // Without a message uid, the time identifies the call.
        let no_uid = MISSED.replace(
            r#""message_uid": "c7ec509d-0171-1ead-a84b-c6943a644768","#,
            "",
        );
        assert_ne!(no_uid, MISSED);
        let later = no_uid.replace("10:35:18", "10:41:02");
        assert_eq!(one(&no_uid).id, one(&no_uid).id);
        assert_ne!(one(&no_uid).id, one(&later).id);
        assert_eq!(one(&no_uid).call_id, None);
    }

    #[test]
    fn business_falls_back_to_the_account_wid() {
        let no_phone = ANSWERED.replace(r#""phone": "+5215500000000""#, r#""phone": null"#);
        assert_ne!(no_phone, ANSWERED);
        assert_eq!(
            one(&no_phone).business.as_deref(),
            Some("+5215500000000"),
            "wid is a phone JID"
        );
        let opaque = no_phone.replace("5215500000000@s.whatsapp.net", "acct-7781");
        assert_eq!(one(&opaque).business.as_deref(), Some("acct-7781"));
        // The seed's scraped wid is kept as given when there is no phone.
        let seed = MISSED.replace(
            r#""phone": "+123456789"
  },
  "call_details""#,
            r#""phone": null
  },
  "call_details""#,
        );
        assert_ne!(seed, MISSED);
        assert_eq!(one(&seed).business.as_deref(), Some("[email protected]"));
    }

    #[test]
    fn a_reaction_names_the_reactor() {
        let e = one(REACTION);
        assert_eq!(e.kind, "message.reaction");
        assert_eq!(e.caller.as_deref(), Some("+15551234567"));
        assert_eq!(e.name.as_deref(), Some("John Doe"));
        assert_eq!(e.business.as_deref(), Some("+15559876543"));
        assert_eq!(e.at.to_string(), "2026-05-24T10:00:00Z");
        assert_eq!(e.call_id, None);
        let data = e.data.expect("the reaction is event.data");
        assert_eq!(data["emoji"], "👍");
        assert_eq!(data["action"], "set");
        assert_eq!(data["reactions"]["❤️"], "1");
    }

    #[test]
    fn a_reaction_without_a_reactor_falls_back_to_the_direct_chat_contact() {
        let e = one(REACTION_NULL);
        assert_eq!(e.kind, "message.reaction");
        assert_eq!(e.caller.as_deref(), Some("+14155552671"));
        assert_eq!(e.name.as_deref(), Some("Mary Jones"));
        assert_eq!(e.country.as_deref(), Some("US"));
        // In a group chat nobody can be named.
        let group = REACTION_NULL.replace(r#""chat_type": "direct""#, r#""chat_type": "group""#);
        assert_ne!(group, REACTION_NULL);
        let g = one(&group);
        assert_eq!(g.caller, None);
        assert!(!g.caller_is_phone);
        assert_eq!(g.name, None);
        // Clearing a reaction is another event than setting it.
        let cleared = REACTION.replace(r#""action": "set""#, r#""action": "clear""#);
        assert_ne!(one(&cleared).id, one(REACTION).id);
    }

    #[test]
    fn our_own_reaction_names_the_contact_not_us() {
        let ours = REACTION.replace(r#""phone": "+15551234567""#, r#""phone": "+15559876543""#);
        assert_ne!(ours, REACTION);
        let e = one(&ours);
        assert_eq!(
            e.caller.as_deref(),
            Some("+123456789"),
            "the direct chat's contact"
        );
        assert_eq!(e.direction, Direction::Outgoing);
    }

    #[test]
    fn other_event_types_are_kept_under_a_dotted_name() {
        let e = one(MESSAGE);
        assert_eq!(e.kind, "message.received.new");
        assert_eq!(e.caller.as_deref(), Some("+5215512345678"));
        assert_eq!(e.name.as_deref(), Some("Juan Pérez"));
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(e.at.to_string(), "2026-05-24T15:20:05Z");
        assert_eq!(e.data.as_ref().unwrap()["text"], "¿Me pueden llamar?");
    }

    #[test]
    fn a_call_without_a_usable_caller_is_refused_naming_the_path() {
        let no_caller = MISSED.replace(
            r#""caller": {
      "full_name": "John Smith",
      "phone": "+123456789"
    },"#,
            "",
        );
        assert_ne!(no_caller, MISSED);
        assert_eq!(field_err(&no_caller).0, "call_details.caller.phone");
        let null_phone = ANSWERED.replace(r#""phone": "+5215512345678""#, r#""phone": null"#);
        assert_eq!(field_err(&null_phone).0, "call_details.caller.phone");
        let bad = OUT_ENDED.replace(r#""phone": "+34612345678""#, r#""phone": "Lucía""#);
        let (field, problem) = field_err(&bad);
        assert_eq!(field, "call_details.recipient.phone");
        assert!(problem.contains("not a phone number"), "{problem}");
        let no_details = r#"{"event_type":"call:incoming:missed","chat":{}}"#;
        assert_eq!(field_err(no_details).0, "call_details");
    }

    #[test]
    fn wrong_types_name_the_full_path() {
        let video = MISSED.replace(r#""is_video": false"#, r#""is_video": "false""#);
        assert_eq!(field_err(&video).0, "call_details.is_video");
        let duration = ANSWERED.replace(r#""duration": 184"#, r#""duration": "three minutes""#);
        assert_eq!(field_err(&duration).0, "call_details.duration");
        let negative = ANSWERED.replace(r#""duration": 184"#, r#""duration": -5"#);
        assert_eq!(field_err(&negative).0, "call_details.duration");
        let time = MISSED.replace("2026-05-24 10:35:18 +0200", "last tuesday");
        assert_eq!(field_err(&time).0, "call_details.timestamp");
        let status = MISSED.replace(r#""status": "Missed""#, r#""status": 3"#);
        assert_eq!(field_err(&status).0, "call_details.status");
        let caller = MISSED.replace(
            r#""caller": {
      "full_name": "John Smith",
      "phone": "+123456789"
    },"#,
            r#""caller": "+123456789","#,
        );
        assert_eq!(field_err(&caller).0, "call_details.caller");
        let account = MISSED.replace(
            r#""whatsapp_account": {"#,
            r#""whatsapp_account": [], "x": {"#,
        );
        assert_eq!(field_err(&account).0, "whatsapp_account");
        let reaction_time = REACTION.replace("2026-05-24 12:00:00 +0200", "noon");
        assert_eq!(field_err(&reaction_time).0, "reaction.timestamp");
        assert_eq!(
            field_err(r#"{"event_type":"message:reaction"}"#).0,
            "reaction"
        );
        let unknown = field_err(r#"{"event_type":"call:incoming:ringing","call_details":{}}"#);
        assert_eq!(unknown.0, "event_type");
        assert!(unknown.1.contains("call:incoming:ringing"));
    }

    #[test]
    fn hostile_input_is_an_error_or_a_plain_event_never_a_panic() {
        for body in [
            r#"{"event_type":"call:incoming:missed","call_details":[]}"#,
            r#"{"event_type":"call:incoming:missed","call_details":{"caller":{"phone":"+1234567890123456789012"}}}"#,
            r#"{"event_type":"call:incoming:missed","call_details":{"caller":{"phone":"+123456789"},"duration":1e300}}"#,
            r#"{"event_type":"message:reaction","reaction":"👍"}"#,
            r#"{"event_type":""}"#,
        ] {
            assert!(
                parse(body.as_bytes(), &ctx(Provider::Timelinesai)).is_err(),
                "{body}"
            );
        }
        for body in [
            r#"{"event_type":"chat:new","chat":[],"message":"hi"}"#,
            r#"{"event_type":"message:new","message":{"sender":{"phone":["x"]},"timestamp":{}}}"#,
            r#"{"event_type":"message:reaction","reaction":{"reactor":null},"chat":{"chat_type":"direct","phone":7}}"#,
        ] {
            assert_eq!(one(body).caller, None, "{body}");
        }
    }
}
