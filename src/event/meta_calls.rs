//! A fast path for the webhook Meta sends most: a `calls` change whose calls
//! are plain strings (a ring, a hang-up), read straight from the body's
//! text into borrowed structs instead of through a [`serde_json::Value`]
//! tree.
//!
//! Building the tree and walking it was a third of the instructions spent
//! on an ingested Meta event (a `Value` for every key and string, each
//! dropped a moment later). This reader builds only the draft.
//!
//! It is an optimisation, not a second parser: it gives the same drafts as
//! `meta.rs` for what it reads and declines (`None`) everything else — a
//! field of another type, a status or message, `errors`, a privacy user id,
//! a call carrying detail it does not copy — and the general parser then
//! reads the body as it always did, errors and skipped items included. The
//! tests check both paths give identical events.
//!
//! serde's readers are laxer than a `Value` parse (see `crate::json`):
//! every object is read through `ObjectOnly`, and once it has been read
//! the body is checked by `accepted_as_value` (one pass over its bytes,
//! or a read whole with `Checked` when that pass cannot clear it). Without
//! them a body the
//! general parser refuses would be accepted, and a payload a `Value`
//! cannot hold stored.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::json::{accepted_as_value, ObjectOnly as Obj};

use super::meta::{
    add_ids, business_of, call_direction, call_kind, choose_caller, display_name, has_video,
    is_callers_number, names_a_phone, settle_caller, status_word,
};
use super::time::parse_time_str;
use super::{Direction, Draft, Identity};

/// The drafts of a Meta envelope whose every change is a plain `calls`
/// change, or `None` for anything the general parser must read.
///
/// `detecting`: the source is `auto`, whose detection takes a body for
/// Meta's only when its `object` says `whatsapp_business_account`. A body
/// that cannot be one read here (no `"calls"`: Meta's message and status
/// webhooks, as frequent as calls for a business that sends messages) is
/// left alone before any parsing, so it is not read twice.
pub(super) fn parse(body: &str, detecting: bool) -> Option<Vec<Draft>> {
    if !body.contains("\"calls\"") || detecting && !body.contains("\"whatsapp_business_account\"") {
        return None;
    }
    let Obj(envelope): Obj<Envelope<'_>> = serde_json::from_str(body).ok()?;
    match envelope.object.as_deref() {
        Some("whatsapp_business_account") => {}
        None if !detecting => {}
        _ => return None,
    }
    let mut drafts = Vec::new();
    for Obj(entry) in envelope.entry? {
        let waba = non_empty(entry.id);
        for Obj(change) in entry.changes.unwrap_or_default() {
            read_change(change, waba.as_deref(), &mut drafts)?;
        }
    }
    if drafts.is_empty() {
        return None;
    }
    if !accepted_as_value(body) {
        return None;
    }
    Some(drafts)
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    object: Option<Cow<'a, str>>,
    #[serde(borrow)]
    entry: Option<Vec<Obj<Entry<'a>>>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    changes: Option<Vec<Obj<Change<'a>>>>,
}

#[derive(Deserialize)]
struct Change<'a> {
    #[serde(borrow)]
    field: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: Option<Obj<ChangeValue<'a>>>,
}

#[derive(Deserialize)]
struct ChangeValue<'a> {
    #[serde(borrow)]
    metadata: Option<Obj<Metadata<'a>>>,
    #[serde(borrow)]
    contacts: Option<Vec<Obj<Contact<'a>>>>,
    #[serde(borrow)]
    calls: Option<Vec<Obj<Call<'a>>>>,
    /// Present: declined (call statuses, repeated errors).
    statuses: Option<IgnoredAny>,
    errors: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    display_phone_number: Option<Cow<'a, str>>,
    #[serde(borrow)]
    phone_number_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Contact<'a> {
    #[serde(borrow)]
    profile: Option<Obj<Profile<'a>>>,
    #[serde(borrow)]
    wa_id: Option<Cow<'a, str>>,
    /// Present: declined.
    user_id: Option<IgnoredAny>,
    country_code: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Profile<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Call<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    direction: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    start_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    end_time: Option<Cow<'a, str>>,
    duration: Option<u64>,
    #[serde(borrow)]
    session: Option<Obj<Session<'a>>>,
    /// Present: declined (privacy ids, errors, detail copied into `data`).
    from_user_id: Option<IgnoredAny>,
    to_user_id: Option<IgnoredAny>,
    errors: Option<IgnoredAny>,
    biz_opaque_callback_data: Option<IgnoredAny>,
    terminate_reason: Option<IgnoredAny>,
    cta_payload: Option<IgnoredAny>,
    deeplink_payload: Option<IgnoredAny>,
    call_recording: Option<IgnoredAny>,
    call_transcript: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Session<'a> {
    #[serde(borrow)]
    sdp_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sdp: Option<Cow<'a, str>>,
}

/// What one change tells about each of its calls.
struct Business<'c> {
    /// `+<display_phone_number>`, else the phone-number id, else the WABA id.
    id: Option<String>,
    digits: Option<String>,
    phone_number_id: Option<String>,
    waba: Option<&'c str>,
    contacts: &'c [Obj<Contact<'c>>],
}

fn read_change(change: Change<'_>, waba: Option<&str>, out: &mut Vec<Draft>) -> Option<()> {
    if change.field.as_deref() != Some("calls") {
        return None;
    }
    let Obj(value) = change.value?;
    if value.statuses.is_some() || value.errors.is_some() {
        return None;
    }
    let calls = value.calls.filter(|c| !c.is_empty())?;
    let contacts = value.contacts.unwrap_or_default();
    if contacts
        .iter()
        .any(|c| c.user_id.is_some() || c.country_code.is_some())
    {
        return None;
    }
    let (display, phone_number_id) = match value.metadata {
        Some(Obj(m)) => (
            non_empty(m.display_phone_number),
            non_empty(m.phone_number_id),
        ),
        None => (None, None),
    };
    let (id, business_digits) = business_of(display.as_deref(), phone_number_id.as_deref(), waba);
    let business = Business {
        id,
        digits: business_digits,
        phone_number_id,
        waba,
        contacts: &contacts,
    };
    for Obj(call) in calls {
        out.push(read_call(call, &business)?);
    }
    Some(())
}

fn read_call(call: Call<'_>, business: &Business<'_>) -> Option<Draft> {
    let declined = [
        &call.from_user_id,
        &call.to_user_id,
        &call.errors,
        &call.biz_opaque_callback_data,
        &call.terminate_reason,
        &call.cta_payload,
        &call.deeplink_payload,
        &call.call_recording,
        &call.call_transcript,
    ];
    if declined.iter().any(|x| x.is_some()) {
        return None;
    }
    let event = call.event.trim().to_ascii_lowercase();
    let call_id = non_empty(call.id);
    let from = non_empty(call.from);
    let to = non_empty(call.to);
    let (sdp_type, sdp) = match &call.session {
        Some(Obj(s)) => (s.sdp_type.as_deref(), s.sdp.as_deref()),
        None => (None, None),
    };
    let direction = call_direction(
        call.direction.as_deref(),
        sdp_type,
        from.as_deref(),
        business.digits.as_deref(),
    );
    let (side, other) = match direction {
        Direction::Incoming => (from, to),
        Direction::Outgoing => (to, from),
    };
    let lookup = choose_caller(
        side,
        None,
        other.as_deref(),
        business.digits.as_deref(),
        String::new,
    );

    let status = call.status.as_deref().and_then(status_word);
    let mut at = time_of(call.timestamp.as_deref())?;
    if event == "terminate" && at.is_none() {
        at = time_of(call.end_time.as_deref())?;
    }
    let (kind, outcome) = call_kind(&event, status.as_deref(), call.duration, false, direction);
    let identity = match &call_id {
        Some(id) => Identity::Call(id.clone()),
        None => Identity::Content(call.timestamp.as_deref().unwrap_or("").to_string()),
    };
    let mut d = Draft::new(kind, identity);
    d.direction = direction;
    d.caller = settle_caller(lookup, &d.kind).ok()?;
    d.business = business.id.clone();
    apply_contact(&mut d, business.contacts);
    d.video = sdp.is_some_and(has_video);
    d.at = at;
    d.call_id = call_id;
    d.duration = call.duration;
    d.outcome = outcome;

    let mut data = Map::new();
    for (key, text) in [
        ("status", call.status),
        ("start_time", call.start_time),
        ("end_time", call.end_time),
    ] {
        if let Some(text) = text {
            data.insert(key.to_string(), Value::String(text.into_owned()));
        }
    }
    add_ids(
        &mut data,
        business.phone_number_id.as_deref(),
        business.waba,
    );
    d.data = Some(Value::Object(data));
    Some(d)
}

/// A call time: `Some(None)` when absent or blank; `None` declines a
/// time that does not parse (the general parser names it).
fn time_of(text: Option<&str>) -> Option<Option<jiff::Timestamp>> {
    match text {
        None => Some(None),
        Some(t) if t.trim().is_empty() => Some(None),
        Some(t) => parse_time_str(t).ok().map(Some),
    }
}

/// Name of the caller from the contact whose `wa_id` is the caller's
/// number, else from a lone contact with no usable `wa_id` (as `meta.rs`).
fn apply_contact(d: &mut Draft, contacts: &[Obj<Contact<'_>>]) {
    let Some(caller) = &d.caller else {
        return;
    };
    let chosen = contacts
        .iter()
        .find(|c| is_callers_number(caller, c.wa_id.as_deref()))
        .or_else(|| match contacts {
            [only] if !names_a_phone(only.wa_id.as_deref()) => Some(only),
            _ => None,
        });
    if let Some(Obj(profile)) = chosen.and_then(|c| c.profile.as_ref()) {
        d.name = display_name(profile.name.as_deref().map(str::trim));
    }
}

/// An id as `meta.rs` reads it: an empty string is no id.
fn non_empty(text: Option<Cow<'_, str>>) -> Option<String> {
    text.filter(|t| !t.is_empty()).map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::{finish_all, parse_value_batch, testing, Provider, RawJson};

    const FIXTURES: [(&str, &str); 13] = [
        (
            "batch_two_entries",
            include_str!("../../tests/fixtures/meta/batch_two_entries.json"),
        ),
        (
            "bic_status_accepted",
            include_str!("../../tests/fixtures/meta/bic_status_accepted.json"),
        ),
        (
            "bic_status_rejected",
            include_str!("../../tests/fixtures/meta/bic_status_rejected.json"),
        ),
        (
            "bic_status_ringing",
            include_str!("../../tests/fixtures/meta/bic_status_ringing.json"),
        ),
        (
            "business_initiated_connect",
            include_str!("../../tests/fixtures/meta/business_initiated_connect.json"),
        ),
        (
            "business_initiated_terminate",
            include_str!("../../tests/fixtures/meta/business_initiated_terminate.json"),
        ),
        (
            "messages_call_permission_reply",
            include_str!("../../tests/fixtures/meta/messages_call_permission_reply.json"),
        ),
        (
            "messages_status_delivered",
            include_str!("../../tests/fixtures/meta/messages_status_delivered.json"),
        ),
        (
            "messages_text",
            include_str!("../../tests/fixtures/meta/messages_text.json"),
        ),
        (
            "terminate_completed",
            include_str!("../../tests/fixtures/meta/terminate_completed.json"),
        ),
        (
            "terminate_failed",
            include_str!("../../tests/fixtures/meta/terminate_failed.json"),
        ),
        (
            "terminate_unanswered",
            include_str!("../../tests/fixtures/meta/terminate_unanswered.json"),
        ),
        (
            "user_initiated_connect",
            include_str!("../../tests/fixtures/meta/user_initiated_connect.json"),
        ),
    ];

    /// The events of `body` by the fast path (`None` when it declines)
    /// and by the general parser (with what it skipped), as JSON text: the
    /// order of `data`'s keys counts too.
    fn both_paths(body: &str) -> (Option<String>, Result<(String, usize), String>) {
        both_paths_as(body, Provider::Meta)
    }

    /// [`both_paths`] for a source configured as `provider` (`Meta`, or
    /// `Auto` to detect it).
    fn both_paths_as(
        body: &str,
        provider: Provider,
    ) -> (Option<String>, Result<(String, usize), String>) {
        let ctx = testing::ctx("meta", provider);
        let fast = super::parse(body, provider == Provider::Auto).map(|drafts| {
            let raw = RawJson::from_body(body.as_bytes()).unwrap();
            let parsed = finish_all(drafts, Provider::Meta, raw, Vec::new(), &ctx);
            serde_json::to_string(&parsed.events).unwrap()
        });
        let general = serde_json::from_str::<Value>(body)
            .map_err(|e| format!("not a Value: {e}"))
            .and_then(|value| {
                let raw = RawJson::from_body(body.as_bytes()).unwrap();
                parse_value_batch(value, raw, &ctx).map_err(|e| e.to_string())
            })
            .map(|p| (serde_json::to_string(&p.events).unwrap(), p.skipped.len()));
        (fast, general)
    }

    /// Assert the fast path, where it reads `body`, gives exactly the
    /// general parser's events, for a source of `provider`; true when it
    /// read it.
    fn agree_as(name: &str, body: &str, provider: Provider) -> bool {
        let (fast, general) = both_paths_as(body, provider);
        let Some(fast) = fast else {
            return false;
        };
        match general {
            Ok((events, 0)) => assert_eq!(fast, events, "{name} ({provider}): the two paths differ\n{body}"),
            other => panic!(
                "{name} ({provider}): the fast path read what the general parser refuses: {other:?}\n{body}"
            ),
        }
        true
    }

    fn agree(name: &str, body: &str) -> bool {
        agree_as(name, body, Provider::Meta)
    }

    /// A JSON object of a test payload.
    type Fields = serde_json::Map<String, Value>;

    /// Every change of `v`.
    fn each_change(v: &mut Value, f: &dyn Fn(&mut Fields)) {
        for entry in v["entry"].as_array_mut().unwrap() {
            for change in entry["changes"].as_array_mut().unwrap() {
                f(change.as_object_mut().unwrap());
            }
        }
    }

    /// Every change's `value` of `v`.
    fn each_value(v: &mut Value, f: &dyn Fn(&mut Fields)) {
        each_change(v, &|change| {
            f(change
                .get_mut("value")
                .and_then(Value::as_object_mut)
                .unwrap())
        });
    }

    /// Every item of the array `field` of every change's `value` that has one.
    fn each_item(v: &mut Value, field: &str, f: &dyn Fn(&mut Fields)) {
        each_value(v, &|value| {
            for item in value
                .get_mut(field)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                f(item.as_object_mut().unwrap());
            }
        });
    }

    /// Every call of every `calls` change of `v`.
    fn each_call(v: &mut Value, f: &dyn Fn(&mut Fields)) {
        each_item(v, "calls", f);
    }

    type Edit = (&'static str, Box<dyn Fn(&mut Value)>);

    fn call_edit(
        name: &'static str,
        f: impl Fn(&mut serde_json::Map<String, Value>) + 'static,
    ) -> Edit {
        (name, Box::new(move |v: &mut Value| each_call(v, &f)))
    }

    fn value_edit(
        name: &'static str,
        f: impl Fn(&mut serde_json::Map<String, Value>) + 'static,
    ) -> Edit {
        (name, Box::new(move |v: &mut Value| each_value(v, &f)))
    }

    /// Variations of real payloads, each a shape a sender could post.
    fn edits() -> Vec<Edit> {
        vec![
            ("as sent", Box::new(|_: &mut Value| {})),
            (
                "no privacy ids or callback data",
                Box::new(|v: &mut Value| {
                    each_call(v, &|c| {
                        for k in [
                            "to_user_id",
                            "from_user_id",
                            "to_parent_user_id",
                            "biz_opaque_callback_data",
                        ] {
                            c.remove(k);
                        }
                    });
                    each_item(v, "contacts", &|c| {
                        c.remove("user_id");
                    });
                }),
            ),
            call_edit("no direction", |c| {
                c.remove("direction");
                c.remove("to_user_id");
                c.remove("biz_opaque_callback_data");
            }),
            call_edit("odd direction", |c| {
                c.insert("direction".into(), json!(" business_initiated "));
            }),
            call_edit("sdp answer", |c| {
                c.remove("direction");
                c.insert(
                    "session".into(),
                    json!({"sdp_type": "answer", "sdp": "v=0\r\nm=video 9 UDP\r\n"}),
                );
            }),
            call_edit("no timestamp", |c| {
                c.remove("timestamp");
            }),
            call_edit("blank timestamp", |c| {
                c.insert("timestamp".into(), json!("  "));
            }),
            call_edit("rfc 3339 time", |c| {
                c.insert("timestamp".into(), json!("2026-05-14T14:32:11Z"));
            }),
            call_edit("bad time", |c| {
                c.insert("timestamp".into(), json!("yesterday"));
            }),
            call_edit("number timestamp", |c| {
                c.insert("timestamp".into(), json!(1749197480));
            }),
            call_edit("no id", |c| {
                c.remove("id");
            }),
            call_edit("empty id", |c| {
                c.insert("id".into(), json!(""));
            }),
            call_edit("caller is the business", |c| {
                let to = c.get("to").cloned().unwrap_or(Value::Null);
                let from = c.get("from").cloned().unwrap_or(Value::Null);
                c.insert("from".into(), to);
                c.insert("to".into(), from);
            }),
            call_edit("no from", |c| {
                c.remove("from");
            }),
            call_edit("from not a phone", |c| {
                c.insert("from".into(), json!("nobody"));
            }),
            call_edit("from a number", |c| {
                c.insert("from".into(), json!(5215512345678u64));
            }),
            call_edit("answered", |c| {
                c.insert("event".into(), json!("terminate"));
                c.insert("duration".into(), json!(35));
                c.insert("status".into(), json!(" completed "));
            }),
            call_edit("zero duration", |c| {
                c.insert("event".into(), json!("Terminate"));
                c.insert("duration".into(), json!(0));
            }),
            call_edit("rejected", |c| {
                c.insert("event".into(), json!("terminate"));
                c.insert("status".into(), json!("REJECTED"));
            }),
            call_edit("failed with duration", |c| {
                c.insert("event".into(), json!("terminate"));
                c.insert("status".into(), json!("failed"));
                c.insert("duration".into(), json!(7));
            }),
            call_edit("empty status", |c| {
                c.insert("status".into(), json!(""));
            }),
            call_edit("status list", |c| {
                c.insert("status".into(), json!(["Failed", "Completed"]));
            }),
            call_edit("float duration", |c| {
                c.insert("duration".into(), json!(12.4));
            }),
            call_edit("another event", |c| {
                c.insert("event".into(), json!("call_recording_available"));
                c.remove("from");
            }),
            call_edit("errors", |c| {
                c.insert("errors".into(), json!([{"code": 131000}]));
            }),
            call_edit("null fields", |c| {
                c.insert("status".into(), Value::Null);
                c.insert("session".into(), Value::Null);
                c.insert("errors".into(), Value::Null);
            }),
            value_edit("no contacts", |v| {
                v.remove("contacts");
            }),
            value_edit("contact of someone else", |v| {
                v.insert(
                    "contacts".into(),
                    json!([{"profile": {"name": "Other"}, "wa_id": "447700900123"}]),
                );
            }),
            value_edit("lone contact without wa_id", |v| {
                v.insert(
                    "contacts".into(),
                    json!([{"profile": {"name": "  José \u{e9} "}}]),
                );
            }),
            value_edit("two contacts", |v| {
                v.insert(
                    "contacts".into(),
                    json!([
                        {"profile": {"name": "+52 55 1234"}, "wa_id": "447700900123"},
                        {"profile": {"name": "Lupita"}, "wa_id": "5215512345678"},
                        {"profile": {"name": "Priya"}, "wa_id": "917358580180"}
                    ]),
                );
            }),
            value_edit("contact with a country", |v| {
                v.insert("contacts".into(), json!([{"profile": {"name": "Lupita"}, "wa_id": "5215512345678", "country_code": "mx"}]));
            }),
            value_edit("no metadata", |v| {
                v.remove("metadata");
            }),
            value_edit("no display number", |v| {
                v["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .remove("display_phone_number");
            }),
            value_edit("value errors", |v| {
                v.insert("errors".into(), json!([{"code": 1}]));
            }),
            value_edit("no calls", |v| {
                v.remove("calls");
            }),
            (
                "no field",
                Box::new(|v: &mut Value| {
                    each_change(v, &|change| {
                        change.remove("field");
                    })
                }),
            ),
            (
                "another object",
                Box::new(|v: &mut Value| {
                    v["object"] = json!("page");
                }),
            ),
            (
                "no object",
                Box::new(|v: &mut Value| {
                    v.as_object_mut().unwrap().remove("object");
                }),
            ),
            (
                "no object, the words in a name",
                Box::new(|v: &mut Value| {
                    v.as_object_mut().unwrap().remove("object");
                    each_value(v, &|value| {
                        value.insert(
                            "contacts".into(),
                            json!([{"profile": {"name": "whatsapp_business_account"}}]),
                        );
                    });
                }),
            ),
            (
                "no object, numeric waba",
                Box::new(|v: &mut Value| {
                    v.as_object_mut().unwrap().remove("object");
                    v["entry"][0]["id"] = json!(366634483210360u64);
                }),
            ),
        ]
    }

    #[test]
    fn the_fast_path_gives_the_general_parsers_events_or_declines() {
        let mut read = Vec::new();
        let mut read_detected = 0;
        for (fixture, body) in FIXTURES {
            let sent: Value = serde_json::from_str(body).unwrap();
            // Each variation of the payload as sent, and of it without the
            // privacy ids and callback data the fast path declines.
            let mut plain = sent.clone();
            (edits()[1].1)(&mut plain);
            for (base, (edit, apply)) in [("sent", &sent), ("plain", &plain)]
                .into_iter()
                .flat_map(|base| edits().into_iter().map(move |e| (base, e)))
            {
                let mut v = base.1.clone();
                apply(&mut v);
                let name = format!("{fixture} ({}) / {edit}", base.0);
                // Compact and pretty: the paths must not care about layout.
                let compact = v.to_string();
                let pretty = serde_json::to_string_pretty(&v).unwrap();
                let fast_compact = agree(&name, &compact);
                assert_eq!(fast_compact, agree(&name, &pretty), "{name}");
                // Detected (`auto`): only an envelope that says it is Meta's.
                let detected = agree_as(&name, &compact, Provider::Auto);
                assert_eq!(detected, agree_as(&name, &pretty, Provider::Auto), "{name}");
                assert!(
                    !detected || fast_compact,
                    "{name}: read fast only when detected"
                );
                if detected {
                    read_detected += 1;
                }
                if fast_compact {
                    read.push(name);
                }
            }
        }
        // Not vacuous: most variations of the plain calls are read fast.
        assert!(
            read.len() > 200,
            "only {} variations read fast: {read:?}",
            read.len()
        );
        assert!(
            read_detected > 150,
            "only {read_detected} read fast when detected"
        );
    }

    #[test]
    fn plain_calls_take_the_fast_path_and_the_rest_the_general_parser() {
        let fast = |name: &str| {
            let body = FIXTURES.iter().find(|(n, _)| *n == name).unwrap().1;
            super::parse(body, false).is_some() && super::parse(body, true).is_some()
        };
        for name in [
            "terminate_unanswered",
            "terminate_completed",
            "user_initiated_connect",
            "batch_two_entries",
        ] {
            assert!(fast(name), "{name} should be read fast");
        }
        for name in [
            "bic_status_ringing",
            "business_initiated_connect",
            "terminate_failed",
            "messages_text",
            "messages_status_delivered",
        ] {
            assert!(!fast(name), "{name} needs the general parser");
        }
    }

    /// Bodies a `Value` parse or the general parser refuses, or reads only
    /// in part, that serde's typed readers would take as they are.
    #[test]
    fn what_the_general_parser_refuses_the_fast_path_declines() {
        let missed = FIXTURES[11].1;
        let with = |from: &str, to: &str| {
            assert!(missed.contains(from), "{from}");
            missed.replacen(from, to, 1)
        };
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let cases = [
            ("a number out of range", with(r#""status": "FAILED","#, r#""status": "FAILED", "x": 1e400,"#)),
            ("a lone surrogate", with(r#""messaging_product": "whatsapp""#, r#""messaging_product": "\ud800""#)),
            ("nesting past the limit", with(r#""status": "FAILED","#, &format!(r#""status": "FAILED", "x": {deep},"#))),
            ("serde_json's raw value marker as a key", with(r#""status": "FAILED","#, r#""status": "FAILED", "x": {"$serde_json::private::RawValue": 0},"#)),
            ("metadata as an array", with(
                r#"{
              "display_phone_number": "525500000000",
              "phone_number_id": "436666719526789"
            }"#,
                r#"["525500000000", "436666719526789"]"#,
            )),
            ("a profile as an array", with(r#"{
                  "name": "Lupita"
                }"#, r#"["Lupita"]"#)),
            ("an extra entry that is an array", with(r#"
  ]
}"#, r#",
    [null, null]
  ]
}"#)),
            ("an extra entry that is null", with(r#"
  ]
}"#, r#",
    null
  ]
}"#)),
                        ("the whole envelope as an array", r#"["whatsapp_business_account",[["366634483210360",[["calls",[null,null,[{"id":"wacid.X","from":"5215512345678","to":"525500000000","event":"connect"}],null,null]]]]]]"#.to_string()),
        ];
        for (name, body) in &cases {
            let (fast, general) = both_paths(body);
            assert!(
                fast.is_none(),
                "{name}: read fast, the general parser gives {general:?}"
            );
            assert!(
                super::parse(body, true).is_none(),
                "{name}: read fast when detected"
            );
            assert!(
                !matches!(general, Ok((_, 0))),
                "{name}: the general parser reads it whole, so the case shows nothing"
            );
        }
        // Through the public entry: the old answers.
        let ctx = testing::ctx("meta", Provider::Meta);
        for (name, body) in &cases[..4] {
            let e = super::super::parse(body.as_bytes(), &ctx).unwrap_err();
            assert!(
                matches!(e, super::super::ParseError::NotJson(_)),
                "{name}: {e}"
            );
        }
        // A duplicate key the fast path reads: a `Value` keeps the last,
        // a typed reader refuses it, so it is left to the general parser.
        let twice = with(
            r#""event": "terminate","#,
            r#""event": "terminate", "event": "connect","#,
        );
        assert!(super::parse(&twice, false).is_none());
        assert!(matches!(both_paths(&twice).1, Ok((_, 0))));
        // A duplicate key the fast path does not read: both keep the call.
        let dup = with(
            r#""messaging_product": "whatsapp","#,
            r#""messaging_product": "whatsapp", "messaging_product": "x","#,
        );
        assert!(agree("an unread duplicate key", &dup));
    }

    /// A `Value`'s error names the line and column in the body as sent,
    /// leading whitespace included.
    #[test]
    fn a_refused_body_is_placed_by_its_own_lines() {
        let ctx = testing::ctx("meta", Provider::Meta);
        let e = super::super::parse(b"\n\n   {\"a\": 1e400}", &ctx).unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
    }

    /// What the load bench and a real missed call send, read in full.
    #[test]
    fn a_missed_call_read_fast_is_a_missed_call_from_the_caller() {
        let body = FIXTURES[11].1;
        let drafts = super::parse(body, false).expect("read fast");
        let events = finish_all(
            drafts,
            Provider::Meta,
            RawJson::from_body(body.as_bytes()).unwrap(),
            Vec::new(),
            &testing::ctx("meta", Provider::Meta),
        )
        .events;
        let [e] = &events[..] else {
            panic!("one event")
        };
        assert_eq!(e.kind, "call.missed");
        assert_eq!(e.caller.as_deref(), Some("+5215512345678"));
        assert_eq!(e.name.as_deref(), Some("Lupita"));
        assert_eq!(e.business.as_deref(), Some("+525500000000"));
        assert_eq!(
            e.raw.to_value(),
            serde_json::from_str::<Value>(body).unwrap(),
            "the payload as it arrived"
        );
    }
}
