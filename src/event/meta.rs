//! Meta's WhatsApp Cloud API webhooks (`provider: meta`).
//!
//! Every POST is an envelope that may batch several entries, changes, calls
//! and statuses; each of them becomes one event:
//!
//! ```text
//! {object: "whatsapp_business_account",
//!  entry: [{id: <WABA id>,
//!           changes: [{field: "calls" | "messages" | ...,
//!                      value: {messaging_product, metadata: {display_phone_number, phone_number_id},
//!                              contacts: [{profile: {name}, wa_id, user_id?, country_code?}],
//!                              calls: [{id: "wacid...", from, to, event, timestamp, direction?,
//!                                       session?: {sdp_type, sdp}, status?, start_time?,
//!                                       end_time?, duration?, errors?, ...}],
//!                              statuses: [{id, type: "call", status, timestamp, recipient_id}],
//!                              messages: [...]}}]}]}
//! ```
//!
//! Shapes: Meta's Calling API guides ("User-initiated calls",
//! "Business-initiated calls", developers.facebook.com/documentation/
//! business-messaging/whatsapp/calling/...), a real webhook log of a
//! user-initiated call (connect, then terminate FAILED with `errors`), and
//! Gupshup's and YCloud's write-ups of the same webhooks.
//!
//! # Mapping
//!
//! | payload | kind | caller |
//! |---|---|---|
//! | `calls[]` `event: connect`, user-initiated | `call.incoming`, incoming | `from` |
//! | `calls[]` `event: connect`, business-initiated | `call.incoming`, outgoing | `to` |
//! | `calls[]` `event: terminate` | `call.ended` with an outcome, or `call.missed` (below) | as for connect |
//! | `calls[]` `call_recording_available` / `call_transcription_available` | `call.recording_available` / `call.transcription_available` (not call kinds) | where present |
//! | `statuses[]` `type: call`, `RINGING` / `ACCEPTED` / `REJECTED` | `call.incoming` / `call.accepted` / `call.rejected`, outgoing | `recipient_id` |
//! | `messages[]` (field `messages`) | `message.received`; `message.reaction`; a `call_permission_reply` is `call.permission_updated` | `from` where it is a phone |
//! | `statuses[]` of messages | `message.<status>` (`message.sent`, `message.delivered`, ...), outgoing | `recipient_id` where it is a phone |
//! | any other field (`account_update`, ...) | `meta.<field>`, `data` = the change's `value` | none |
//! | a `calls[]` event or call status not listed above | `meta.calls.<event>` / `meta.calls.status` (not call kinds) | where present |
//!
//! Direction of a call: its `direction` (`USER_INITIATED` / `BUSINESS_INITIATED`);
//! without one, a `connect` carrying an SDP *answer* is business-initiated
//! (the business sent the offer), and so is a call whose `from` is the
//! business's own number. The caller is never our own number: when the side
//! picked by the direction is the business number (Meta's own sample
//! payloads do this) and the other side is a different phone, the other side
//! is the caller.
//!
//! A terminated call: `REJECTED` → `call.ended`/`rejected`; `FAILED` after
//! media flowed (a `duration`) or with `errors` → `call.ended`/`failed`;
//! otherwise a call with a positive `duration` was answered; one without
//! (no `duration`, or 0, whatever its `status`) was never picked up: a
//! user-initiated one is `call.missed` (outcome `no_answer`), a
//! business-initiated one `call.ended`/`no_answer`.
//!
//! Identity: the call id (`wacid...`) with the kind, so a retried POST gives
//! the same event ids and the connect and terminate of one call stay
//! distinct. The `connect` of a business-initiated call and its `RINGING`
//! status are both `call.incoming` of the same call, so whichever arrives
//! second is a duplicate: one "ringing" event per call.
//!
//! The common case, a `calls` change of plain calls, is first read by
//! `meta_calls.rs` without a `Value` tree; whatever it declines comes here.
//! The helpers both use (`call_kind`, `call_direction`, `choose_caller`,
//! ...) live here so the two cannot drift apart.

use serde_json::{Map, Value};

use super::access::{self, expect_object, join, opt_array, opt_time, raw_text, FieldPath};
use super::{
    json_type_name, kind, normalise_phone, Caller, Direction, Draft, Identity, Outcome, ParseError,
};

pub(crate) fn parse(v: &Value, skipped: &mut Vec<ParseError>) -> Result<Vec<Draft>, ParseError> {
    parse_envelope(v, "", skipped)
}

/// Parse a Meta envelope found at `path` (empty for the top level; `data`
/// when another provider wraps it), naming fields by their full path.
///
/// One envelope can batch many calls, statuses and messages, across
/// entries and changes. An item that cannot be read (a call without
/// `from`, a change whose `value` is not an object) is left out and its
/// error added to `skipped`, so the rest of the batch still gets in: Meta
/// retries a refused delivery whole, and a bad item would refuse its good
/// neighbours on every retry until Meta gives up. Only an envelope that is
/// itself unreadable is an error.
pub(crate) fn parse_envelope(
    v: &Value,
    path: &str,
    skipped: &mut Vec<ParseError>,
) -> Result<Vec<Draft>, ParseError> {
    expect_object(v, path)?;
    match v.get("object") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "whatsapp_business_account" => {}
        Some(Value::String(s)) => {
            return Err(ParseError::field(
                join(path, "object"),
                format!("`{s}` is not a WhatsApp Business Account webhook (expected `whatsapp_business_account`)"),
            ))
        }
        Some(other) => {
            return Err(ParseError::field(
                join(path, "object"),
                format!("expected a string, got {}", json_type_name(other)),
            ))
        }
    }
    let entries = match v.get("entry") {
        None | Some(Value::Null) => return Err(ParseError::missing(join(path, "entry"))),
        Some(_) => opt_array(v, "entry", path)?,
    };
    let mut drafts = Vec::new();
    let path = FieldPath::Text(path);
    for (i, entry) in entries.iter().enumerate() {
        let epath = FieldPath::Item(&path, "entry", i);
        let (waba, changes) = match read_entry(entry, &epath) {
            Ok(read) => read,
            Err(e) => {
                skipped.push(e);
                continue;
            }
        };
        for (j, change) in changes.iter().enumerate() {
            let cpath = FieldPath::Item(&epath, "changes", j);
            let read = expect_object(change, &cpath)
                .and_then(|()| parse_change(change, &cpath, waba.as_deref(), &mut drafts, skipped));
            if let Err(e) = read {
                skipped.push(e);
            }
        }
    }
    Ok(drafts)
}

/// An entry's WABA id and its changes.
fn read_entry<'v>(
    entry: &'v Value,
    epath: &FieldPath<'_>,
) -> Result<(Option<String>, &'v [Value]), ParseError> {
    expect_object(entry, epath)?;
    let waba = access::opt_id(entry, "id", epath)?;
    Ok((waba, opt_array(entry, "changes", epath)?))
}

/// Each item of the list `name` in `value` (calls, messages, statuses),
/// read by `parse` into `out`; an item that is not an object or cannot be
/// read goes to `skipped`, named by its path. An error means the list
/// itself is not a list.
fn read_items(
    value: &Value,
    vpath: &FieldPath<'_>,
    name: &str,
    out: &mut Vec<Draft>,
    skipped: &mut Vec<ParseError>,
    parse: impl Fn(&Value, &FieldPath<'_>) -> Result<Draft, ParseError>,
) -> Result<(), ParseError> {
    for (k, item) in opt_array(value, name, vpath)?.iter().enumerate() {
        let path = FieldPath::Item(vpath, name, k);
        match expect_object(item, &path).and_then(|()| parse(item, &path)) {
            Ok(draft) => out.push(draft),
            Err(e) => skipped.push(e),
        }
    }
    Ok(())
}

/// What one change tells about every event in it.
struct Change<'a> {
    /// `+<display_phone_number>`, else the phone-number id, else the WABA id.
    business: Option<String>,
    /// The business number's digits, to recognise our own side of a call.
    business_digits: Option<String>,
    phone_number_id: Option<String>,
    waba: Option<&'a str>,
    contacts: &'a [Value],
    /// Where `contacts` is: its items are `value.contacts[k]`.
    value_path: FieldPath<'a>,
    /// `value.errors`: Meta repeats a call's errors there.
    errors: Option<&'a Value>,
}

/// One change's events into `out`; an item of it that cannot be read into
/// `skipped`. An error returned means the rest of the change could not be
/// read (its `value`, `metadata` or `contacts`, or its list of calls,
/// messages or statuses, is not of the expected type); the items read
/// before it are kept.
fn parse_change(
    change: &Value,
    cpath: &FieldPath<'_>,
    waba: Option<&str>,
    out: &mut Vec<Draft>,
    skipped: &mut Vec<ParseError>,
) -> Result<(), ParseError> {
    let field = access::opt_str(change, "field", cpath)?;
    let value = access::opt_obj(change, "value", cpath)?;
    let vpath = FieldPath::Key(cpath, "value");
    let Some(value) = value else {
        return match field {
            Some("calls") | Some("messages") | None => Err(ParseError::missing(vpath.to_string())),
            Some(other) => {
                out.push(unknown_field(other, &Value::Null, None, waba));
                Ok(())
            }
        };
    };

    let metadata = access::opt_obj(value, "metadata", &vpath)?;
    let mpath = FieldPath::Key(&vpath, "metadata");
    let (display, phone_number_id) = match metadata {
        Some(m) => (
            access::opt_id(m, "display_phone_number", &mpath)?,
            access::opt_id(m, "phone_number_id", &mpath)?,
        ),
        None => (None, None),
    };
    let (business, business_digits) =
        business_of(display.as_deref(), phone_number_id.as_deref(), waba);
    let contacts = opt_array(value, "contacts", &vpath)?;
    for (k, c) in contacts.iter().enumerate() {
        expect_object(c, &FieldPath::Item(&vpath, "contacts", k))?;
    }
    let errors = value.get("errors").filter(|e| !e.is_null());
    let ctx = Change {
        business,
        business_digits,
        phone_number_id,
        waba,
        contacts,
        value_path: vpath,
        errors,
    };

    let has = |k: &str| value.get(k).is_some_and(|x| !x.is_null());
    let field = match field {
        Some(f) => f,
        // A change without `field` (seen in hand-written samples): go by content.
        None if has("calls") => "calls",
        None if has("messages") || has("statuses") => "messages",
        None => {
            out.push(unknown_field("unknown", value, ctx.business.clone(), waba));
            return Ok(());
        }
    };
    let before = (out.len(), skipped.len());
    match field {
        "calls" | "messages" => {
            let calls = field == "calls";
            read_items(value, &vpath, field, out, skipped, |item, path| {
                if calls {
                    parse_call(item, path, &ctx)
                } else {
                    parse_message(item, path, &ctx)
                }
            })?;
            read_items(value, &vpath, "statuses", out, skipped, |status, path| {
                parse_status(status, path, &ctx, calls)
            })?;
        }
        other => out.push(unknown_field(other, value, ctx.business.clone(), waba)),
    }
    if (out.len(), skipped.len()) == before && field == "calls" {
        // A `calls` change with neither calls nor statuses (only `errors`,
        // say) is still stored, under its own kind.
        out.push(unknown_field(field, value, ctx.business.clone(), waba));
    }
    Ok(())
}

fn unknown_field(
    field: &str,
    value: &Value,
    business: Option<String>,
    waba: Option<&str>,
) -> Draft {
    let content = format!("{}\0{field}\0{value}", waba.unwrap_or(""));
    let mut d = Draft::new(format!("meta.{field}"), Identity::Content(content));
    d.business = business;
    d.data = Some(value.clone());
    d
}

// ---------------------------------------------------------------- calls --

fn parse_call(call: &Value, path: &FieldPath<'_>, ctx: &Change<'_>) -> Result<Draft, ParseError> {
    let event = access::req_str(call, "event", path)?
        .trim()
        .to_ascii_lowercase();
    let call_id = access::opt_id(call, "id", path)?;
    let session = access::opt_obj(call, "session", path)?;
    let spath = FieldPath::Key(path, "session");
    let (sdp_type, sdp) = match session {
        Some(s) => (
            access::opt_str(s, "sdp_type", &spath)?,
            access::opt_str(s, "sdp", &spath)?,
        ),
        None => (None, None),
    };
    let from = access::opt_id(call, "from", path)?;
    let direction = call_direction(
        access::opt_str(call, "direction", path)?,
        sdp_type,
        from.as_deref(),
        ctx.business_digits.as_deref(),
    );
    let (side, side_user, other) = match direction {
        Direction::Incoming => ("from", "from_user_id", "to"),
        Direction::Outgoing => ("to", "to_user_id", "from"),
    };
    let caller = find_caller(
        call,
        path,
        side,
        Some(side_user),
        Some(other),
        ctx.business_digits.as_deref(),
    )?;

    let status = status_of(call, path)?;
    let duration = access::opt_u64(call, "duration", path)?;
    let mut at = opt_time(call, "timestamp", path)?;
    let errors = match call.get("errors").filter(|e| !e.is_null()) {
        Some(e) => Some(e),
        None => ctx.errors,
    };
    let has_errors = match errors {
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
        None => false,
    };

    if event == "terminate" && at.is_none() {
        at = opt_time(call, "end_time", path)?;
    }
    let (kind, outcome) = call_kind(&event, status.as_deref(), duration, has_errors, direction);

    let identity = match &call_id {
        Some(id) => Identity::Call(id.clone()),
        None => Identity::Content(raw_text(call.get("timestamp"))),
    };
    let mut d = Draft::new(kind, identity);
    d.direction = direction;
    d.caller = settle_caller(caller, &d.kind)?;
    d.business = ctx.business.clone();
    apply_contact(&mut d, ctx)?;
    d.video = sdp.is_some_and(has_video);
    d.at = at;
    d.call_id = call_id;
    d.duration = duration;
    d.outcome = outcome;

    let mut data = Map::new();
    for key in [
        "status",
        "start_time",
        "end_time",
        "biz_opaque_callback_data",
        "terminate_reason",
        "cta_payload",
        "deeplink_payload",
        "call_recording",
        "call_transcript",
    ] {
        if let Some(x) = call.get(key).filter(|x| !x.is_null()) {
            data.insert(key.to_string(), x.clone());
        }
    }
    if let Some(e) = errors {
        data.insert("errors".into(), e.clone());
    }
    add_ids(&mut data, ctx.phone_number_id.as_deref(), ctx.waba);
    d.data = Some(Value::Object(data));
    Ok(d)
}

/// The business a change is for: `+<display_phone_number>` when that is a
/// phone, else the phone-number id, else the WABA id; and the display
/// number's digits, to recognise our own side of a call.
pub(super) fn business_of(
    display: Option<&str>,
    phone_number_id: Option<&str>,
    waba: Option<&str>,
) -> (Option<String>, Option<String>) {
    let phone = display
        .and_then(|d| normalise_phone(d).ok())
        .filter(|c| c.is_phone);
    let business_digits = phone.as_ref().map(|c| digits(&c.id));
    let business = phone
        .map(|c| c.id)
        .or_else(|| phone_number_id.map(str::to_string))
        .or_else(|| waba.map(str::to_string));
    (business, business_digits)
}

/// The kind (and, for a `terminate`, the outcome) of a call webhook whose
/// `event` is `event` (trimmed, lower case); see the module's mapping.
pub(super) fn call_kind(
    event: &str,
    status: Option<&str>,
    duration: Option<u64>,
    has_errors: bool,
    direction: Direction,
) -> (String, Option<Outcome>) {
    match event {
        "connect" => (kind::CALL_INCOMING.into(), None),
        "terminate" => {
            let connected = duration.is_some_and(|d| d > 0);
            let user_initiated = direction == Direction::Incoming;
            let unanswered = if user_initiated {
                (kind::CALL_MISSED, Outcome::NoAnswer)
            } else {
                (kind::CALL_ENDED, Outcome::NoAnswer)
            };
            let (k, o) = match status {
                Some("REJECTED" | "REJECT" | "DECLINED" | "BUSY") => {
                    (kind::CALL_ENDED, Outcome::Rejected)
                }
                Some("FAILED" | "FAILURE" | "ERROR") if connected || has_errors => {
                    (kind::CALL_ENDED, Outcome::Failed)
                }
                _ if connected => (kind::CALL_ENDED, Outcome::Answered),
                _ => unanswered,
            };
            (k.into(), Some(o))
        }
        "call_recording_available" => ("call.recording_available".into(), None),
        "call_transcription_available" | "call_transcript_available" => {
            ("call.transcription_available".into(), None)
        }
        other => (format!("meta.calls.{other}"), None),
    }
}

/// A call's direction from its `direction` field (any case and spacing),
/// else from its SDP type (an answer: the business made the offer) and
/// whether `from` is the business's number (its digits are
/// `business_digits`).
pub(super) fn call_direction(
    direction: Option<&str>,
    sdp_type: Option<&str>,
    from: Option<&str>,
    business_digits: Option<&str>,
) -> Direction {
    let direction = direction.map(|d| d.trim().to_ascii_uppercase());
    match direction.as_deref() {
        Some("USER_INITIATED" | "INCOMING" | "INBOUND") => Direction::Incoming,
        Some("BUSINESS_INITIATED" | "OUTGOING" | "OUTBOUND") => Direction::Outgoing,
        _ if sdp_type.is_some_and(|t| t.eq_ignore_ascii_case("answer")) => Direction::Outgoing,
        _ if matches!((from, business_digits), (Some(f), Some(b)) if digits(f) == b) => {
            Direction::Outgoing
        }
        _ => Direction::Incoming,
    }
}

/// One entry of `statuses`: a call's (its `type`, else the change's field,
/// says so) or a message's.
fn parse_status(
    status: &Value,
    path: &FieldPath<'_>,
    ctx: &Change<'_>,
    in_calls_field: bool,
) -> Result<Draft, ParseError> {
    let is_call = match access::opt_str(status, "type", path)? {
        Some(t) => t.eq_ignore_ascii_case("call"),
        None => in_calls_field,
    };
    if is_call {
        parse_call_status(status, path, ctx)
    } else {
        parse_message_status(status, path, ctx)
    }
}

/// A business-initiated call's progress: `RINGING`, `ACCEPTED`, `REJECTED`.
fn parse_call_status(
    status: &Value,
    path: &FieldPath<'_>,
    ctx: &Change<'_>,
) -> Result<Draft, ParseError> {
    let call_id = access::opt_id(status, "id", path)?;
    let state = status_of(status, path)?;
    let known = match state.as_deref() {
        Some("RINGING") => Some(kind::CALL_INCOMING),
        Some("ACCEPTED") => Some(kind::CALL_ACCEPTED),
        Some("REJECTED") => Some(kind::CALL_REJECTED),
        _ => None,
    };
    let caller = find_caller(
        status,
        path,
        "recipient_id",
        Some("recipient_user_id"),
        None,
        ctx.business_digits.as_deref(),
    )?;
    let identity = match (&call_id, known) {
        (Some(id), Some(_)) => Identity::Call(id.clone()),
        (Some(id), None) => {
            Identity::ProviderId(format!("{id}\0{}", state.as_deref().unwrap_or("")))
        }
        (None, _) => Identity::Content(raw_text(status.get("timestamp"))),
    };
    let kind = match known {
        Some(k) => k.to_string(),
        None => "meta.calls.status".to_string(),
    };
    let mut d = Draft::new(kind, identity);
    d.direction = Direction::Outgoing;
    d.caller = settle_caller(caller, &d.kind)?;
    d.business = ctx.business.clone();
    apply_contact(&mut d, ctx)?;
    d.at = opt_time(status, "timestamp", path)?;
    d.call_id = call_id;
    let mut data = Map::new();
    if let Some(s) = status.get("status").filter(|x| !x.is_null()) {
        data.insert("status".into(), s.clone());
    }
    add_ids(&mut data, ctx.phone_number_id.as_deref(), ctx.waba);
    d.data = Some(Value::Object(data));
    Ok(d)
}

// ------------------------------------------------------------- messages --

/// A message status (`sent`, `delivered`, `read`, `failed`): our message to
/// the recipient. Stored as `message.<status>`.
fn parse_message_status(
    status: &Value,
    path: &FieldPath<'_>,
    ctx: &Change<'_>,
) -> Result<Draft, ParseError> {
    let id = access::opt_id(status, "id", path)?;
    let state = access::opt_str(status, "status", path)?
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty());
    let kind = format!("message.{}", state.as_deref().unwrap_or("status"));
    let id = id.map(|id| format!("{id}\0{kind}"));
    let party = ("recipient_id", "recipient_user_id");
    let data = status.clone();
    message_draft(
        status,
        path,
        ctx,
        kind,
        id,
        Direction::Outgoing,
        party,
        data,
    )
}

/// The draft of a message or a message status: `party` names the other
/// side's phone and user-id fields; `id` (else the timestamp) identifies it.
#[allow(clippy::too_many_arguments)]
fn message_draft(
    v: &Value,
    path: &FieldPath<'_>,
    ctx: &Change<'_>,
    kind: String,
    id: Option<String>,
    direction: Direction,
    party: (&str, &str),
    data: Value,
) -> Result<Draft, ParseError> {
    let identity = match id {
        Some(id) => Identity::ProviderId(id),
        None => Identity::Content(raw_text(v.get("timestamp"))),
    };
    let caller = find_caller(
        v,
        path,
        party.0,
        Some(party.1),
        None,
        ctx.business_digits.as_deref(),
    )?;
    let mut d = Draft::new(kind, identity);
    d.direction = direction;
    d.caller = settle_caller(caller, &d.kind)?;
    d.business = ctx.business.clone();
    apply_contact(&mut d, ctx)?;
    d.at = opt_time(v, "timestamp", path)?;
    d.data = Some(data);
    Ok(d)
}

/// An inbound message. A reply to a call-permission request is the one
/// message that concerns calls: it becomes `call.permission_updated`, with
/// `data.status` `PERMANENT`, `TEMPORARY` or `NO_PERMISSION`.
fn parse_message(
    message: &Value,
    path: &FieldPath<'_>,
    ctx: &Change<'_>,
) -> Result<Draft, ParseError> {
    let id = access::opt_id(message, "id", path)?;
    let mtype = access::opt_str(message, "type", path)?.unwrap_or("");
    let interactive = access::opt_obj(message, "interactive", path)?;
    let ipath = FieldPath::Key(path, "interactive");
    let itype = match interactive {
        Some(i) => access::opt_str(i, "type", &ipath)?,
        None => None,
    };
    let mut data = message.clone();
    let kind = if itype == Some("call_permission_reply") {
        let reply = interactive.and_then(|i| i.get("call_permission_reply"));
        let rpath = FieldPath::Key(&ipath, "call_permission_reply");
        let (response, permanent) = match reply {
            Some(r @ Value::Object(_)) => (
                access::opt_str(r, "response", &rpath)?,
                access::flag(r, "is_permanent", &rpath)?,
            ),
            _ => (None, false),
        };
        let permission = match response.map(str::to_ascii_lowercase).as_deref() {
            Some("accept" | "accepted") if permanent => Some("PERMANENT"),
            Some("accept" | "accepted") => Some("TEMPORARY"),
            Some("reject" | "rejected") => Some("NO_PERMISSION"),
            _ => None,
        };
        if let (Some(p), Value::Object(o)) = (permission, &mut data) {
            o.entry("status")
                .or_insert_with(|| Value::String(p.to_string()));
        }
        kind::CALL_PERMISSION_UPDATED.to_string()
    } else if mtype == "reaction" {
        kind::MESSAGE_REACTION.to_string()
    } else {
        "message.received".to_string()
    };
    let party = ("from", "from_user_id");
    message_draft(
        message,
        path,
        ctx,
        kind,
        id,
        Direction::Incoming,
        party,
        data,
    )
}

// -------------------------------------------------------------- callers --

/// The outcome of looking for the other party in a payload.
pub(super) enum Lookup {
    Found(Caller),
    /// Named field (full path) absent.
    Missing(String),
    /// Named field (full path) present but not a phone or WhatsApp id.
    Invalid(String, String),
}

/// The caller from `key` (digits, `+E.164`), else the privacy id in
/// `user_key` (a business-scoped user id, `US.1349...`: kept as given, not a
/// phone). When the phone found is our own number and `other` holds a
/// different phone, that one is the caller. Only a wrong JSON type is an
/// error here; what is missing or invalid is for the caller to judge.
fn find_caller(
    v: &Value,
    path: &FieldPath<'_>,
    key: &str,
    user_key: Option<&str>,
    other: Option<&str>,
    business_digits: Option<&str>,
) -> Result<Lookup, ParseError> {
    let raw = access::opt_id(v, key, path)?;
    let user_id = match user_key {
        Some(k) => access::opt_id(v, k, path)?,
        None => None,
    };
    let other_raw = match other {
        Some(k) => access::opt_id(v, k, path)?,
        None => None,
    };
    Ok(choose_caller(
        raw,
        user_id,
        other_raw.as_deref(),
        business_digits,
        || join(path, key),
    ))
}

/// [`find_caller`] once its fields are read: `raw` the side's number,
/// `user_id` its privacy id, `other` the other side's number; `field`
/// names the side's field for what is missing or invalid.
pub(super) fn choose_caller(
    raw: Option<String>,
    user_id: Option<String>,
    other: Option<&str>,
    business_digits: Option<&str>,
    field: impl FnOnce() -> String,
) -> Lookup {
    let Some(raw) = raw else {
        return match user_id {
            Some(id) => Lookup::Found(Caller {
                id,
                is_phone: false,
            }),
            None => Lookup::Missing(field()),
        };
    };
    match normalise_phone(&raw) {
        Ok(c) => {
            let ours = c.is_phone && business_digits.is_some_and(|b| digits(&c.id) == b);
            if ours {
                if let Some(alt) = other.and_then(|o| normalise_phone(o).ok()) {
                    if alt.is_phone && alt.id != c.id {
                        return Lookup::Found(alt);
                    }
                }
            }
            Lookup::Found(c)
        }
        Err(e) => match user_id {
            Some(id) => Lookup::Found(Caller {
                id,
                is_phone: false,
            }),
            None => Lookup::Invalid(field(), e.0),
        },
    }
}

/// Call kinds must name a caller; other kinds keep one only when it is valid.
pub(super) fn settle_caller(
    lookup: Lookup,
    event_kind: &str,
) -> Result<Option<Caller>, ParseError> {
    match lookup {
        Lookup::Found(c) => Ok(Some(c)),
        Lookup::Missing(_) | Lookup::Invalid(..) if !kind::is_call(event_kind) => Ok(None),
        Lookup::Missing(field) => Err(ParseError::field(
            field,
            format!("is missing (a `{event_kind}` event must name the caller)"),
        )),
        Lookup::Invalid(field, why) => Err(ParseError::field(field, why)),
    }
}

/// Name and country of the caller from `contacts[]`: the contact whose
/// `wa_id` (or `user_id`) is the caller, else a lone contact with no usable
/// `wa_id`. A "name" that is only digits is the number again, not a name.
fn apply_contact(d: &mut Draft, ctx: &Change<'_>) -> Result<(), ParseError> {
    let Some(caller) = &d.caller else {
        return Ok(());
    };
    let mut chosen = None;
    for (k, c) in ctx.contacts.iter().enumerate() {
        let cpath = FieldPath::Item(&ctx.value_path, "contacts", k);
        let wa_id = access::opt_id(c, "wa_id", &cpath)?;
        let user_id = access::opt_id(c, "user_id", &cpath)?;
        let matches_user = user_id.as_deref() == Some(caller.id.as_str());
        if is_callers_number(caller, wa_id.as_deref()) || matches_user {
            chosen = Some((c, cpath));
            break;
        }
    }
    if chosen.is_none() && ctx.contacts.len() == 1 {
        let c = &ctx.contacts[0];
        let cpath = FieldPath::Item(&ctx.value_path, "contacts", 0);
        if !names_a_phone(access::opt_id(c, "wa_id", &cpath)?.as_deref()) {
            chosen = Some((c, cpath));
        }
    }
    let Some((contact, cpath)) = chosen else {
        return Ok(());
    };
    if let Some(profile) = access::opt_obj(contact, "profile", &cpath)? {
        let name =
            access::opt_str(profile, "name", &FieldPath::Key(&cpath, "profile"))?.map(str::trim);
        d.name = display_name(name);
    }
    if let Some(cc) = access::opt_str(contact, "country_code", &cpath)? {
        let cc = cc.trim();
        if cc.len() == 2 && cc.chars().all(|ch| ch.is_ascii_alphabetic()) {
            d.country = Some(cc.to_ascii_uppercase());
        }
    }
    Ok(())
}

/// Whether a contact's `wa_id` is the caller's number.
pub(super) fn is_callers_number(caller: &Caller, wa_id: Option<&str>) -> bool {
    caller.is_phone && wa_id.is_some_and(|w| digits(w) == digits(&caller.id))
}

/// Whether a contact's `wa_id` is a phone at all: a lone contact without
/// one is taken for the caller's.
pub(super) fn names_a_phone(wa_id: Option<&str>) -> bool {
    wa_id.is_some_and(|w| normalise_phone(w).is_ok())
}

/// A contact's profile name (trimmed) as the event's name, unless it is
/// empty or only a phone number.
pub(super) fn display_name(name: Option<&str>) -> Option<String> {
    name.filter(|n| {
        !n.is_empty()
            && !n
                .chars()
                .all(|ch| ch.is_ascii_digit() || " +-().".contains(ch))
    })
    .map(str::to_string)
}

/// The change's phone-number and WABA ids, last in an event's `data`.
pub(super) fn add_ids(
    data: &mut Map<String, Value>,
    phone_number_id: Option<&str>,
    waba: Option<&str>,
) {
    if let Some(id) = phone_number_id {
        data.insert("phone_number_id".into(), Value::String(id.to_string()));
    }
    if let Some(id) = waba {
        data.insert("waba_id".into(), Value::String(id.to_string()));
    }
}

// -------------------------------------------------------------- helpers --

/// A call `status` as an upper-case word. Meta's own samples show
/// `["Failed", "Completed"]` (the possible values); one element is taken as
/// the value, several as no status at all.
fn status_of(v: &Value, path: &FieldPath<'_>) -> Result<Option<String>, ParseError> {
    let field = || join(path, "status");
    match v.get("status") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(status_word(s)),
        Some(Value::Array(items)) => {
            let mut words = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => words.push(s.trim().to_ascii_uppercase()),
                    other => {
                        return Err(ParseError::field(
                            field(),
                            format!(
                                "expected a string, got an array holding {}",
                                json_type_name(other)
                            ),
                        ))
                    }
                }
            }
            Ok(if words.len() == 1 { words.pop() } else { None })
        }
        Some(other) => Err(ParseError::field(
            field(),
            format!("expected a string, got {}", json_type_name(other)),
        )),
    }
}

/// A status as an upper-case word; blank is none.
pub(super) fn status_word(s: &str) -> Option<String> {
    Some(s.trim().to_ascii_uppercase()).filter(|s| !s.is_empty())
}

pub(super) fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// An SDP with a video media section.
pub(super) fn has_video(sdp: &str) -> bool {
    sdp.lines().any(|l| l.trim_start().starts_with("m=video"))
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Direction, Event, Outcome, ParseContext, ParseError, Provider};
    use crate::event::testing;

    fn ctx() -> ParseContext<'static> {
        testing::ctx("meta", Provider::Meta)
    }

    fn events(body: &str) -> Vec<Event> {
        testing::all(body, &ctx())
    }

    fn one(body: &str) -> Event {
        testing::only(body, &ctx())
    }

    fn error(body: &str) -> ParseError {
        testing::error(body, &ctx())
    }

    fn field_of(e: &ParseError) -> &str {
        testing::field(e).0
    }

    const CONNECT: &str = include_str!("../../tests/fixtures/meta/user_initiated_connect.json");
    const COMPLETED: &str = include_str!("../../tests/fixtures/meta/terminate_completed.json");
    const UNANSWERED: &str = include_str!("../../tests/fixtures/meta/terminate_unanswered.json");
    const FAILED: &str = include_str!("../../tests/fixtures/meta/terminate_failed.json");
    const BIC_CONNECT: &str =
        include_str!("../../tests/fixtures/meta/business_initiated_connect.json");
    const RINGING: &str = include_str!("../../tests/fixtures/meta/bic_status_ringing.json");
    const ACCEPTED: &str = include_str!("../../tests/fixtures/meta/bic_status_accepted.json");
    const REJECTED: &str = include_str!("../../tests/fixtures/meta/bic_status_rejected.json");
    const BIC_TERMINATE: &str =
        include_str!("../../tests/fixtures/meta/business_initiated_terminate.json");
    const BATCH: &str = include_str!("../../tests/fixtures/meta/batch_two_entries.json");
    const MESSAGE: &str = include_str!("../../tests/fixtures/meta/messages_text.json");
    const PERMISSION: &str =
        include_str!("../../tests/fixtures/meta/messages_call_permission_reply.json");
    const DELIVERED: &str =
        include_str!("../../tests/fixtures/meta/messages_status_delivered.json");

    #[test]
    fn a_user_calling_the_business_is_an_incoming_call_from_them() {
        let e = one(CONNECT);
        assert_eq!(e.kind, "call.incoming");
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(e.caller.as_deref(), Some("+917358580180"));
        assert!(e.caller_is_phone);
        assert_eq!(e.country.as_deref(), Some("IN"));
        assert_eq!(e.business.as_deref(), Some("+15551441906"));
        assert_eq!(e.name.as_deref(), Some("Priya Sharma"));
        assert!(!e.video);
        assert_eq!(e.at.to_string(), "2025-10-17T06:11:46Z");
        assert_eq!(
            e.call_id.as_deref(),
            Some("wacid.HBgMOTE3MzU4NTgwMTgwFQIAEhggQUNEODk3OUQ3NzI4MjZBRTZFNEE2MzU3NDEzNDg4RUUcGAsxNTU1MTQ0MTkwNhUCABUKAA==")
        );
        assert_eq!(e.duration, None);
        assert_eq!(e.outcome, None);
        assert_eq!(e.provider, Provider::Meta);
        assert_eq!(e.source, "meta");
        assert!(e.id.starts_with("evt_"));
    }

    #[test]
    fn an_answered_call_ends_with_its_duration() {
        let e = one(COMPLETED);
        assert_eq!(e.kind, "call.ended");
        assert_eq!(e.outcome, Some(Outcome::Answered));
        assert_eq!(e.duration, Some(33));
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(e.caller.as_deref(), Some("+6281361905133"));
        assert_eq!(e.business.as_deref(), Some("+6283138205150"));
        assert_eq!(e.at.to_string(), "2024-12-09T08:59:31Z");
        assert_eq!(e.data.as_ref().unwrap()["status"], "COMPLETED");
    }

    #[test]
    fn a_user_initiated_call_nobody_picked_up_is_missed() {
        let e = one(UNANSWERED);
        assert_eq!(e.kind, "call.missed");
        assert_eq!(e.outcome, Some(Outcome::NoAnswer));
        assert_eq!(e.direction, Direction::Incoming);
        assert_eq!(e.caller.as_deref(), Some("+5215512345678"));
        assert_eq!(e.country.as_deref(), Some("MX"));
        assert_eq!(e.duration, None);

        // COMPLETED with a zero duration: still nobody talked.
        let zero = UNANSWERED.replace(
            "\"status\": \"FAILED\"",
            "\"status\": \"COMPLETED\", \"duration\": 0",
        );
        assert_ne!(zero, UNANSWERED);
        let e = one(&zero);
        assert_eq!(e.kind, "call.missed");
        assert_eq!(e.duration, Some(0));
    }

    #[test]
    fn a_call_that_failed_after_connecting_is_an_ended_failed_call() {
        let e = one(FAILED);
        assert_eq!(e.kind, "call.ended");
        assert_eq!(e.outcome, Some(Outcome::Failed));
        assert_eq!(e.duration, Some(20));
        // The profile "name" is only the number again: not a name.
        assert_eq!(e.name, None);
        let data = e.data.unwrap();
        assert_eq!(data["errors"][0]["code"], 138021);
    }

    #[test]
    fn connect_and_terminate_of_one_call_are_distinct_events_of_the_same_call() {
        let a = one(CONNECT);
        let b = one(FAILED);
        assert_eq!(a.call_id, b.call_id);
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn a_business_initiated_call_is_outgoing_to_the_callee() {
        let e = one(BIC_CONNECT);
        assert_eq!(e.kind, "call.incoming");
        assert_eq!(e.direction, Direction::Outgoing);
        assert_eq!(e.caller.as_deref(), Some("+12185552828"));
        assert_eq!(e.business.as_deref(), Some("+13175551399"));
        assert_eq!(e.name.as_deref(), Some("Dana Whitfield"));
        assert_eq!(
            e.data.as_ref().unwrap()["biz_opaque_callback_data"],
            "TRx334DUDFTI4Mj"
        );

        // Without `direction`, the SDP answer still says the business called.
        let v: serde_json::Value = serde_json::from_str(BIC_CONNECT).unwrap();
        let mut v = v;
        v["entry"][0]["changes"][0]["value"]["calls"][0]
            .as_object_mut()
            .unwrap()
            .remove("direction");
        let e = one(&v.to_string());
        assert_eq!(e.direction, Direction::Outgoing);
        assert_eq!(e.caller.as_deref(), Some("+12185552828"));
    }

    #[test]
    fn business_initiated_statuses_map_to_ringing_accepted_rejected() {
        let r = one(RINGING);
        assert_eq!(r.kind, "call.incoming");
        assert_eq!(r.direction, Direction::Outgoing);
        assert_eq!(r.caller.as_deref(), Some("+12185552828"));
        assert_eq!(r.business.as_deref(), Some("+13175551399"));
        assert_eq!(r.at.to_string(), "2025-06-06T08:03:20Z");

        let a = one(ACCEPTED);
        assert_eq!(a.kind, "call.accepted");
        assert_eq!(a.direction, Direction::Outgoing);
        assert_eq!(a.caller.as_deref(), Some("+12185552828"));

        let j = one(REJECTED);
        assert_eq!(j.kind, "call.rejected");
        assert_eq!(j.caller.as_deref(), Some("+12185552828"));

        assert_eq!(r.call_id, a.call_id);
        assert_eq!(a.call_id, j.call_id);
        assert_ne!(r.id, a.id);
        assert_ne!(a.id, j.id);
        // The connect and the RINGING status of one outgoing call are the same
        // "ringing" event: the second one is a duplicate.
        assert_eq!(r.id, one(BIC_CONNECT).id);
    }

    #[test]
    fn a_business_initiated_call_nobody_answered_ends_with_no_answer() {
        let e = one(BIC_TERMINATE);
        assert_eq!(e.kind, "call.ended");
        assert_eq!(e.direction, Direction::Outgoing);
        assert_eq!(e.outcome, Some(Outcome::NoAnswer));
        assert_eq!(e.caller.as_deref(), Some("+12185552828"));
    }

    /// A batch with unreadable items (a call without `from`, a change whose
    /// `value` is a string) keeps its readable ones, and says which items
    /// were left out and why; taken whole, it is refused with the first.
    #[test]
    fn a_batch_keeps_its_readable_calls_and_names_the_ones_left_out() {
        let mut v: serde_json::Value = serde_json::from_str(BATCH).unwrap();
        let calls = &mut v["entry"][0]["changes"][0]["value"]["calls"];
        calls[1].as_object_mut().unwrap().remove("from");
        v["entry"][1]["changes"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"field": "calls", "value": "oops"}));
        let body = v.to_string();
        let parsed = super::super::parse_batch(body.as_bytes(), &ctx()).unwrap();
        let callers: Vec<&str> = parsed
            .events
            .iter()
            .map(|e| e.caller.as_deref().unwrap())
            .collect();
        assert_eq!(callers, ["+5215512345678", "+34612345678", "+447700900123"]);
        let skipped: Vec<String> = parsed.skipped.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            skipped,
            [
                "field `entry[0].changes[0].value.calls[1].from`: is missing (a `call.incoming` event must name the caller)",
                "field `entry[1].changes[1].value`: expected an object, got a string",
            ]
        );
        assert_eq!(
            field_of(&error(&body)),
            "entry[0].changes[0].value.calls[1].from"
        );

        // With nothing readable left, the batch is refused with its first error.
        let mut lone: serde_json::Value = serde_json::from_str(CONNECT).unwrap();
        lone["entry"][0]["changes"][0]["value"]["calls"][0]
            .as_object_mut()
            .unwrap()
            .remove("from");
        let err = super::super::parse_batch(lone.to_string().as_bytes(), &ctx()).unwrap_err();
        assert_eq!(field_of(&err), "entry[0].changes[0].value.calls[0].from");
    }

    #[test]
    fn a_batch_gives_one_event_per_call_with_distinct_ids() {
        let all = events(BATCH);
        assert_eq!(all.len(), 4, "{all:#?}");
        let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "call.incoming",
                "call.incoming",
                "call.ended",
                "call.incoming"
            ]
        );
        let callers: Vec<&str> = all.iter().map(|e| e.caller.as_deref().unwrap()).collect();
        assert_eq!(
            callers,
            [
                "+5215512345678",
                "+5215587654321",
                "+34612345678",
                "+447700900123"
            ]
        );
        assert_eq!(all[0].name.as_deref(), Some("Lupita"));
        assert_eq!(all[1].name.as_deref(), Some("Beto"));
        assert_eq!(all[3].business.as_deref(), Some("+442079460000"));
        let mut ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 4, "ids must be distinct");
        // The same delivery again: the same ids, in the same order.
        let again: Vec<String> = events(BATCH).into_iter().map(|e| e.id).collect();
        assert_eq!(again, all.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn messages_are_stored_under_their_own_kinds() {
        let m = one(MESSAGE);
        assert_eq!(m.kind, "message.received");
        assert_eq!(m.direction, Direction::Incoming);
        assert_eq!(m.caller.as_deref(), Some("+919810218674"));
        assert_eq!(m.name.as_deref(), Some("Krish Thakur"));
        assert_eq!(m.country.as_deref(), Some("IN"));
        assert_eq!(m.data.as_ref().unwrap()["text"]["body"], "Hey");

        let p = one(PERMISSION);
        assert_eq!(p.kind, "call.permission_updated");
        assert_eq!(p.caller.as_deref(), Some("+15551234567"));
        assert_eq!(p.data.as_ref().unwrap()["status"], "TEMPORARY");

        let s = one(DELIVERED);
        assert_eq!(s.kind, "message.delivered");
        assert_eq!(s.direction, Direction::Outgoing);
        assert_eq!(s.caller.as_deref(), Some("+5516992318222"));
    }

    #[test]
    fn unknown_fields_are_kept_under_meta_kinds() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
            {"field":"account_update","value":{"event":"VERIFIED_ACCOUNT","phone_number":"15551234567"}}]}]}"#;
        let e = one(body);
        assert_eq!(e.kind, "meta.account_update");
        assert_eq!(e.caller, None);
        assert_eq!(e.data.unwrap()["event"], "VERIFIED_ACCOUNT");
        assert_eq!(one(body).id, one(body).id);
    }

    #[test]
    fn a_call_without_a_caller_names_the_missing_field() {
        let v: serde_json::Value = serde_json::from_str(BATCH).unwrap();
        let mut v = v;
        v["entry"][0]["changes"][0]["value"]["calls"][1]
            .as_object_mut()
            .unwrap()
            .remove("from");
        let e = error(&v.to_string());
        assert_eq!(field_of(&e), "entry[0].changes[0].value.calls[1].from");
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn a_caller_that_is_not_a_phone_is_refused() {
        let body = CONNECT.replace("\"from\": \"917358580180\"", "\"from\": \"not-a-number\"");
        assert_ne!(body, CONNECT);
        let e = error(&body);
        assert_eq!(field_of(&e), "entry[0].changes[0].value.calls[0].from");
    }

    #[test]
    fn a_business_scoped_user_id_stands_in_for_a_missing_phone() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"calls","value":{
            "metadata":{"display_phone_number":"15551441906","phone_number_id":"5"},
            "calls":[{"id":"wacid.X","from_user_id":"US.13491208655302741918","to":"15551441906",
                      "event":"connect","timestamp":"1760681506","direction":"USER_INITIATED"}]}}]}]}"#;
        let e = one(body);
        assert_eq!(e.caller.as_deref(), Some("US.13491208655302741918"));
        assert!(!e.caller_is_phone);
        assert_eq!(e.country, None);
    }

    #[test]
    fn wrong_types_are_refused_with_the_full_path() {
        let cases = [
            (
                CONNECT.replace("\"timestamp\": \"1760681506\"", "\"timestamp\": true"),
                "entry[0].changes[0].value.calls[0].timestamp",
            ),
            (
                COMPLETED.replace("\"duration\": 33", "\"duration\": \"long\""),
                "entry[0].changes[0].value.calls[0].duration",
            ),
            (
                CONNECT.replace("\"direction\": \"USER_INITIATED\"", "\"direction\": 7"),
                "entry[0].changes[0].value.calls[0].direction",
            ),
            (
                CONNECT
                    .replace("\"contacts\": [", "\"contacts\": {\"x\": [")
                    .replace(
                        "\n            ],\n            \"calls\"",
                        "\n            ]},\n            \"calls\"",
                    ),
                "entry[0].changes[0].value.contacts",
            ),
        ];
        for (body, want) in cases {
            let e = error(&body);
            assert_eq!(field_of(&e), want, "{e}");
        }
        assert_eq!(
            field_of(&error(
                r#"{"object":"whatsapp_business_account","entry":{}}"#
            )),
            "entry"
        );
        assert_eq!(
            field_of(&error(r#"{"object":"whatsapp_business_account"}"#)),
            "entry"
        );
        assert_eq!(
            field_of(&error(
                r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"calls","value":{"calls":[{"id":"x","from":"5215512345678"}]}}]}]}"#
            )),
            "entry[0].changes[0].value.calls[0].event"
        );
        assert_eq!(
            field_of(&error(r#"{"object":"page","entry":[]}"#)),
            "object"
        );
        // Paths below lists and objects, as built lazily (`FieldPath`).
        let call = |value: &str| {
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[]}},{{"changes":[{{"field":"calls","value":{value}}}]}}]}}"#
            )
        };
        let calls = r#""calls":[{"id":"x","from":"5215512345678","event":"connect""#;
        for (value, want) in [
            (
                r#"{"contacts":[{"wa_id":"5215512345678"},5]}"#.to_string(),
                "entry[1].changes[0].value.contacts[1]",
            ),
            (
                format!(
                    r#"{{"contacts":[{{"wa_id":"5215512345678","profile":{{"name":7}}}}],{calls}}}]}}"#
                ),
                "entry[1].changes[0].value.contacts[0].profile.name",
            ),
            (
                format!(r#"{{{calls},"session":{{"sdp":[]}}}}]}}"#),
                "entry[1].changes[0].value.calls[0].session.sdp",
            ),
            (
                format!(r#"{{"metadata":{{"display_phone_number":true}},{calls}}}]}}"#),
                "entry[1].changes[0].value.metadata.display_phone_number",
            ),
            (
                format!(r#"{{{calls},"status":[3]}}]}}"#),
                "entry[1].changes[0].value.calls[0].status",
            ),
        ] {
            let e = error(&call(&value));
            assert_eq!(field_of(&e), want, "{e}");
        }
    }

    #[test]
    fn metas_own_sample_with_the_business_as_from_still_names_the_user() {
        // Meta's user-initiated terminate sample says `from` is the business
        // number and `status` is the list of possible values.
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"366634483210360","changes":[{"value":{
            "messaging_product":"whatsapp",
            "metadata":{"phone_number_id":"436666719526789","display_phone_number":"13175551399"},
            "calls":[{"id":"wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh","to":"16315553601","from":"13175551399",
                      "event":"terminate","direction":"USER_INITIATED","timestamp":"1749197480",
                      "status":["Failed","Completed"],"start_time":"1671644824","end_time":"1671644944","duration":480}]},
            "field":"calls"}]}]}"#;
        let e = one(body);
        assert_eq!(e.caller.as_deref(), Some("+16315553601"));
        assert_eq!(e.kind, "call.ended");
        assert_eq!(e.outcome, Some(Outcome::Answered));
        assert_eq!(e.duration, Some(480));
    }

    #[test]
    fn nonsense_never_panics() {
        for body in [
            "{}",
            "[]",
            "null",
            r#"{"entry":[null]}"#,
            r#"{"entry":[{"changes":[null]}]}"#,
            r#"{"entry":[{"changes":[{"value":null}]}]}"#,
            r#"{"entry":[{"changes":[{"field":"calls","value":{"calls":[1,2]}}]}]}"#,
            r#"{"entry":[{"changes":[{"field":"calls","value":{"calls":[{"event":"connect","from":"+52 1 55 1234 5678","session":5}]}}]}]}"#,
            r#"{"entry":[{"changes":[{"field":"calls","value":{"statuses":[{"type":"call"}]}}]}]}"#,
            r#"{"entry":[{"changes":[{"field":"messages","value":{"messages":[{}],"statuses":[{}]}}]}]}"#,
            r#"{"entry":[{"changes":[{"field":"calls","value":{"calls":[{"event":"terminate","from":"5215512345678","status":[1]}]}}]}]}"#,
            r#"{"entry":[{"changes":[{"field":"calls","value":{"calls":[{"event":"connect","from":"5215512345678","timestamp":"99999999999999999999"}]}}]}]}"#,
        ] {
            let _ = parse(body.as_bytes(), &ctx());
        }
    }
}
