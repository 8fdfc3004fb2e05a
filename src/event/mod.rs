//! The canonical call event and everything that turns a provider's webhook
//! into it: authenticity checks over the raw bytes, one parser per provider,
//! phone and time normalisation.
//!
//! This module is pure: no I/O, no tokio, no sled. Everything here is tested
//! from strings and byte slices, against real payload shapes kept in
//! `tests/fixtures/`.
//!
//! # Flow
//!
//! 1. [`verify`] checks the request against the source's secrets, over the
//!    raw body, before anything parses it (constant-time comparisons).
//! 2. [`parse`] reads the JSON, picks the provider (or detects it for
//!    `auto`), and returns one [`Event`] per call event in the payload: a
//!    Meta POST may batch many calls and entries.
//!
//! # Event ids and dedupe
//!
//! Each parser states what identifies its event ([`Identity`]): the
//! provider's own event id, else the call id plus the event kind, else a
//! hash of (kind, caller, provider time). [`Event::id`] is derived from that
//! identity *and the source id*, so the same delivery retried by the provider
//! gets the same id, and two sources never collide.

mod detect;
mod meta;
mod meta_calls;
mod phone;
mod sample;
mod signature;
mod standard;
#[cfg(test)]
pub(crate) mod testing;
mod time;
mod timelinesai;
mod v3;
mod waha;
mod wazzap;

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use phone::{country_of, normalise_phone, warm_up, Caller, PhoneError};
pub use sample::{sample_body, sample_kinds, DEFAULT_TEST_CALLER};
pub use signature::{
    is_standard_secret, sign_standard_webhooks, verify, AuthError, HeaderLookup, SourceAuth,
    HEADER_HUB_SIGNATURE, HEADER_WAHA_HMAC, HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE,
    HEADER_WEBHOOK_TIMESTAMP, HEADER_WEBHOOK_TOKEN, HEADER_X_WEBHOOK_SIGNATURE,
};
pub use time::parse_time;

/// A secret from the configuration (token, HMAC key, signing secret).
///
/// `Debug` and `Display` print `***` so a secret cannot end up in a log line
/// or an error message by accident; [`Secret::expose`] is the one way out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret's value, for computing a MAC or comparing a token.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which provider's payload shape a source speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Wazzap,
    Waha,
    V3,
    Meta,
    Timelinesai,
    Standard,
    /// Detect the shape from the body (the default).
    Auto,
}

impl Provider {
    pub const ALL: [Provider; 7] = [
        Provider::Wazzap,
        Provider::Waha,
        Provider::V3,
        Provider::Meta,
        Provider::Timelinesai,
        Provider::Standard,
        Provider::Auto,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Wazzap => "wazzap",
            Provider::Waha => "waha",
            Provider::V3 => "v3",
            Provider::Meta => "meta",
            Provider::Timelinesai => "timelinesai",
            Provider::Standard => "standard",
            Provider::Auto => "auto",
        }
    }

    pub fn parse_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Canonical event kinds for calls. Non-call events keep the provider's own
/// kind name (e.g. `message.reaction`, `message.incoming`).
pub mod kind {
    pub const CALL_INCOMING: &str = "call.incoming";
    pub const CALL_ACCEPTED: &str = "call.accepted";
    pub const CALL_REJECTED: &str = "call.rejected";
    pub const CALL_MISSED: &str = "call.missed";
    pub const CALL_ENDED: &str = "call.ended";
    pub const CALL_PERMISSION_UPDATED: &str = "call.permission_updated";
    pub const MESSAGE_REACTION: &str = "message.reaction";

    /// True for the kinds that describe a call (and so must name a caller).
    pub fn is_call(kind: &str) -> bool {
        matches!(
            kind,
            CALL_INCOMING | CALL_ACCEPTED | CALL_REJECTED | CALL_MISSED | CALL_ENDED
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// How an ended call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    Rejected,
    NoAnswer,
    Failed,
    Unknown,
}

/// The one shape every provider payload becomes (SPEC §4). Workflows see it
/// as `event` in templates.
///
/// Serialised through [`EventFields`], which can also leave `raw` out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub direction: Direction,
    /// The other party, E.164 with `+`; a `@lid` privacy id as given. `None`
    /// only for non-call events whose payload names nobody.
    pub caller: Option<String>,
    pub caller_is_phone: bool,
    pub business: Option<String>,
    pub country: Option<String>,
    pub name: Option<String>,
    pub video: bool,
    pub at: Timestamp,
    pub call_id: Option<String>,
    pub duration: Option<u64>,
    pub outcome: Option<Outcome>,
    pub source: String,
    pub provider: Provider,
    #[serde(default)]
    pub synthetic: bool,
    /// Injected through `POST /api/sources/{source}/test`, not sent by the
    /// provider; its runs are marked as tests.
    #[serde(default)]
    pub test: bool,
    /// Provider-specific detail worth a template's reach, e.g. a Standard
    /// Webhooks envelope's `data.object` or a reaction's emoji.
    #[serde(default)]
    pub data: Option<Value>,
    pub raw: RawJson,
}

/// The provider's payload as it arrived: the body's JSON text, kept
/// verbatim rather than as a [`Value`]. Writing a stored event copies the
/// text instead of serialising a tree, and a parser that reads the body
/// without building a `Value` (Meta's calls, see `meta_calls.rs`) has nothing to
/// build for it either. A workflow that reads `event.raw` gets it parsed
/// into its render data (`serde_json::to_value` of an event parses it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(std::sync::Arc<serde_json::value::RawValue>);

impl RawJson {
    /// The JSON text of a body holding one JSON value, or the JSON error
    /// that says why not. A body laid out over several lines is kept on
    /// one, without the whitespace between its tokens: an event written
    /// as a line of JSON (`ringback parse`, logs) must stay one line.
    ///
    /// Not checked as strictly as a `Value` parse: [`parse_batch`] checks
    /// every body it keeps (by that parse, or the fast path's check).
    fn from_body(body: &[u8]) -> Result<RawJson, serde_json::Error> {
        let raw: &serde_json::value::RawValue = serde_json::from_slice(body)?;
        let text = raw.get();
        // Providers send one line; `contains` on bytes is a memchr.
        if !text.as_bytes().contains(&b'\n') && !text.as_bytes().contains(&b'\r') {
            return Ok(RawJson(raw.to_owned().into()));
        }
        let one_line = serde_json::value::RawValue::from_string(without_layout(text))
            .expect("valid JSON less the whitespace between its tokens");
        Ok(RawJson(one_line.into()))
    }

    /// The text of `value` (for events made here rather than received).
    pub fn of(value: &Value) -> RawJson {
        RawJson(
            serde_json::value::to_raw_value(value)
                .expect("a Value always serialises")
                .into(),
        )
    }

    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// Parsed (for tests and tools; templates get it through the render
    /// data).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.text())
            .expect("parse_batch and RawJson::of keep only JSON a Value holds")
    }
}

/// `text` (valid JSON) without the whitespace between its tokens. JSON
/// strings hold no raw whitespace but spaces, and keep all of theirs.
fn without_layout(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in text.as_bytes() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(b);
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were left out")
}

impl PartialEq for RawJson {
    /// The same JSON, however it is laid out: a stored event read back
    /// through a `Value` (an execution record) has its payload compacted.
    fn eq(&self, other: &RawJson) -> bool {
        self.text() == other.text() || self.to_value() == other.to_value()
    }
}

/// How an [`Event`] is written: every field, and `raw` unless left out.
/// Its one serialised layout lives here, for the stored event and for the
/// render data of a workflow that never reads `event.raw` (copying the
/// provider's payload into every run's data was most of building it).
#[derive(Serialize)]
pub struct EventFields<'a> {
    id: &'a str,
    kind: &'a str,
    direction: Direction,
    caller: &'a Option<String>,
    caller_is_phone: bool,
    business: &'a Option<String>,
    country: &'a Option<String>,
    name: &'a Option<String>,
    video: bool,
    at: Timestamp,
    call_id: &'a Option<String>,
    duration: Option<u64>,
    outcome: Option<Outcome>,
    source: &'a str,
    provider: Provider,
    synthetic: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    test: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: &'a Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a RawJson>,
}

impl Event {
    /// The event's fields for serialising, with `raw` or without it.
    pub fn fields(&self, with_raw: bool) -> EventFields<'_> {
        EventFields {
            id: &self.id,
            kind: &self.kind,
            direction: self.direction,
            caller: &self.caller,
            caller_is_phone: self.caller_is_phone,
            business: &self.business,
            country: &self.country,
            name: &self.name,
            video: self.video,
            at: self.at,
            call_id: &self.call_id,
            duration: self.duration,
            outcome: self.outcome,
            source: &self.source,
            provider: self.provider,
            synthetic: self.synthetic,
            test: self.test,
            data: &self.data,
            raw: with_raw.then_some(&self.raw),
        }
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields(true).serialize(serializer)
    }
}

/// What a parser knows about the delivery it is reading.
#[derive(Debug, Clone)]
pub struct ParseContext<'a> {
    pub source: &'a str,
    /// The provider configured for the source (`Auto` to detect).
    pub provider: Provider,
    /// The business number configured for the source, used when the payload
    /// does not say (Wazzap) and preferred over session names.
    pub business: Option<&'a str>,
    /// When the request arrived; the event time when the payload has none.
    pub received_at: Timestamp,
    /// The `webhook-id` header of a Standard Webhooks delivery, if any.
    pub delivery_id: Option<&'a str>,
}

/// Why a payload could not be turned into events. `NotJson` maps to HTTP 400,
/// everything else to 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Unrecognised(String),
    #[error("field `{field}`: {problem}")]
    Field { field: String, problem: String },
}

impl ParseError {
    pub(crate) fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ParseError::Field {
            field: field.into(),
            problem: problem.into(),
        }
    }
    pub(crate) fn missing(field: impl Into<String>) -> Self {
        ParseError::field(field, "is missing")
    }
}

/// What identifies one event for dedupe (SPEC §3), most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The provider's own event/delivery id.
    ProviderId(String),
    /// The call id; combined with the event kind.
    Call(String),
    /// Neither: hash of (kind, caller, provider timestamp as sent).
    Content(String),
}

/// One event as a provider parser sees it, before the id is derived and the
/// source-level fields are filled in by [`parse`].
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub kind: String,
    pub direction: Direction,
    pub caller: Option<Caller>,
    pub business: Option<String>,
    pub country: Option<String>,
    pub name: Option<String>,
    pub video: bool,
    pub at: Option<Timestamp>,
    pub call_id: Option<String>,
    pub duration: Option<u64>,
    pub outcome: Option<Outcome>,
    pub data: Option<Value>,
    pub identity: Identity,
}

impl Draft {
    pub(crate) fn new(kind: impl Into<String>, identity: Identity) -> Self {
        Draft {
            kind: kind.into(),
            direction: Direction::Incoming,
            caller: None,
            business: None,
            country: None,
            name: None,
            video: false,
            at: None,
            call_id: None,
            duration: None,
            outcome: None,
            data: None,
            identity,
        }
    }
}

/// A delivery's events, and the items of a batch that could not be read.
#[derive(Debug)]
pub struct Parsed {
    /// At least one.
    pub events: Vec<Event>,
    /// Why each left-out item of a batch (a Meta envelope's calls,
    /// statuses, messages, changes) could not be read, naming its field.
    pub skipped: Vec<ParseError>,
}

impl Parsed {
    /// The events, or the first skipped item's error: for callers that
    /// take a delivery whole or not at all.
    fn whole(self) -> Result<Vec<Event>, ParseError> {
        match self.skipped.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(self.events),
        }
    }
}

/// Parse a webhook body into canonical events, all or nothing: any item
/// that cannot be read is an error (see [`parse_batch`]).
///
/// Returns at least one event on success. A payload of a known shape that is
/// not a call event is still returned, under its own kind.
pub fn parse(body: &[u8], ctx: &ParseContext<'_>) -> Result<Vec<Event>, ParseError> {
    parse_batch(body, ctx)?.whole()
}

/// Parse a webhook body into canonical events, leaving out the items of a
/// batch that cannot be read (their errors are in [`Parsed::skipped`]).
/// A body none of whose items can be read is an error, the first item's.
pub fn parse_batch(body: &[u8], ctx: &ParseContext<'_>) -> Result<Parsed, ParseError> {
    // The error a `Value` parse of the body gives, as it always was: it is
    // stricter than `RawJson` (numbers in range, no lone surrogates,
    // nesting depth) and places the error in the body as sent, which may
    // start with whitespace `raw` leaves out.
    let not_json = |e: serde_json::Error| {
        let e = serde_json::from_slice::<Value>(body).err().unwrap_or(e);
        ParseError::NotJson(format!(
            "{} (line {}, column {})",
            describe_json_error(&e),
            e.line(),
            e.column()
        ))
    };
    let raw = RawJson::from_body(body).map_err(not_json)?;
    let fast = match ctx.provider {
        Provider::Meta => meta_calls::parse(raw.text(), false),
        Provider::Auto => meta_calls::parse(raw.text(), true),
        _ => None,
    };
    if let Some(drafts) = fast {
        return Ok(finish_all(drafts, Provider::Meta, raw, Vec::new(), ctx));
    }
    let value: Value = serde_json::from_str(raw.text()).map_err(not_json)?;
    parse_value_batch(value, raw, ctx)
}

fn describe_json_error(e: &serde_json::Error) -> String {
    // serde_json appends " at line X column Y" to its message; we print our own.
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// [`parse`] for an already-decoded JSON value.
pub fn parse_value(value: Value, ctx: &ParseContext<'_>) -> Result<Vec<Event>, ParseError> {
    let raw = RawJson::of(&value);
    parse_value_batch(value, raw, ctx)?.whole()
}

/// Parse `value`, whose text is `raw`.
fn parse_value_batch(
    value: Value,
    raw: RawJson,
    ctx: &ParseContext<'_>,
) -> Result<Parsed, ParseError> {
    if !value.is_object() {
        return Err(ParseError::Unrecognised(format!(
            "expected a JSON object, got {}",
            json_type_name(&value)
        )));
    }
    let provider = match ctx.provider {
        Provider::Auto => detect::detect(&value).ok_or_else(|| {
            ParseError::Unrecognised(
                "payload matches no known provider shape (wazzap, waha, v3, meta, timelinesai, standard)"
                    .to_string(),
            )
        })?,
        p => p,
    };
    let mut skipped = Vec::new();
    let drafts = match provider {
        Provider::Wazzap => wazzap::parse(&value)?,
        Provider::Waha => waha::parse(&value)?,
        Provider::V3 => v3::parse(&value, &mut skipped)?,
        Provider::Meta => meta::parse(&value, &mut skipped)?,
        Provider::Timelinesai => timelinesai::parse(&value)?,
        Provider::Standard => standard::parse(&value, ctx.delivery_id)?,
        Provider::Auto => unreachable!("auto was resolved above"),
    };
    if drafts.is_empty() {
        if !skipped.is_empty() {
            return Err(skipped.remove(0));
        }
        return Err(ParseError::Unrecognised(format!(
            "the {provider} payload carries no event"
        )));
    }
    Ok(finish_all(drafts, provider, raw, skipped, ctx))
}

/// Every draft as an event carrying the whole payload as `raw` (shared,
/// not copied, by the events of a batch).
fn finish_all(
    drafts: Vec<Draft>,
    provider: Provider,
    raw: RawJson,
    skipped: Vec<ParseError>,
    ctx: &ParseContext<'_>,
) -> Parsed {
    let events = drafts
        .into_iter()
        .map(|d| finish(d, provider, raw.clone(), ctx))
        .collect();
    Parsed { events, skipped }
}

fn finish(d: Draft, provider: Provider, raw: RawJson, ctx: &ParseContext<'_>) -> Event {
    let (caller, caller_is_phone) = match &d.caller {
        Some(c) => (Some(c.id.clone()), c.is_phone),
        None => (None, false),
    };
    let country = d.country.clone().or_else(|| {
        d.caller
            .as_ref()
            .filter(|c| c.is_phone)
            .and_then(|c| country_of(&c.id))
    });
    let basis = match &d.identity {
        Identity::ProviderId(id) => format!("id\0{id}"),
        Identity::Call(call) => format!("call\0{call}\0{}", d.kind),
        // With nothing else to tell two deliveries apart (no id, no call id,
        // no provider time), the arrival time does: a provider that does not
        // retry (Wazzap) must not have a second call folded into the first.
        Identity::Content(content) if content.is_empty() => format!(
            "content\0{}\0{}\0received:{}",
            d.kind,
            caller.as_deref().unwrap_or(""),
            ctx.received_at.as_millisecond()
        ),
        Identity::Content(content) => format!(
            "content\0{}\0{}\0{content}",
            d.kind,
            caller.as_deref().unwrap_or("")
        ),
    };
    // A configured business number wins over session names and account ids.
    let business = ctx.business.map(str::to_string).or(d.business);
    Event {
        id: event_id(ctx.source, &basis),
        kind: d.kind,
        direction: d.direction,
        caller,
        caller_is_phone,
        business,
        country,
        name: d.name,
        video: d.video,
        at: d.at.unwrap_or(ctx.received_at),
        call_id: d.call_id,
        duration: d.duration,
        outcome: d.outcome,
        source: ctx.source.to_string(),
        provider,
        synthetic: false,
        test: false,
        data: d.data,
        raw,
    }
}

/// `evt_` + 24 hex digits of SHA-256 over (source, identity basis).
pub fn event_id(source: &str, basis: &str) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0u8]);
    h.update(basis.as_bytes());
    let digest = h.finalize();
    format!("evt_{}", hex::encode(&digest[..12]))
}

pub(crate) fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Small accessors shared by the provider parsers: they turn "wrong type"
/// into a [`ParseError`] naming the field's full path.
pub(crate) mod access {
    use std::fmt::{self, Display};

    use super::{json_type_name, ParseError};
    use serde_json::Value;

    /// Where a value sits in a payload, for the errors that name it. The
    /// parsers make one for every entry, change and item they visit, but
    /// only an error formats it: building each path as a `String` up front
    /// was a dozen allocations and formats per event (≈4% of an ingested
    /// Meta event's instructions), almost always thrown away.
    #[derive(Clone, Copy, Debug)]
    pub enum FieldPath<'a> {
        /// A path already written out (`""`: the body itself).
        Text(&'a str),
        /// `parent.key`
        Key(&'a FieldPath<'a>, &'a str),
        /// `parent.list[index]`
        Item(&'a FieldPath<'a>, &'a str, usize),
    }

    impl FieldPath<'_> {
        fn is_empty(&self) -> bool {
            matches!(self, FieldPath::Text(""))
        }
    }

    impl Display for FieldPath<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let (parent, key) = match self {
                FieldPath::Text(text) => return f.write_str(text),
                FieldPath::Key(parent, key) | FieldPath::Item(parent, key, _) => (parent, key),
            };
            if parent.is_empty() {
                f.write_str(key)?;
            } else {
                write!(f, "{parent}.{key}")?;
            }
            match self {
                FieldPath::Item(_, _, index) => write!(f, "[{index}]"),
                _ => Ok(()),
            }
        }
    }

    /// A string field; `None` when absent or null; error when another type.
    pub fn opt_str<'a>(
        v: &'a Value,
        key: &str,
        path: &(impl Display + ?Sized),
    ) -> Result<Option<&'a str>, ParseError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(ParseError::field(
                join(path, key),
                format!("expected a string, got {}", json_type_name(other)),
            )),
        }
    }

    /// A required string field.
    pub fn req_str<'a>(
        v: &'a Value,
        key: &str,
        path: &(impl Display + ?Sized),
    ) -> Result<&'a str, ParseError> {
        opt_str(v, key, path)?.ok_or_else(|| ParseError::missing(join(path, key)))
    }

    /// A string or a number rendered as a string (ids are sent both ways).
    pub fn opt_id(
        v: &Value,
        key: &str,
        path: &(impl Display + ?Sized),
    ) -> Result<Option<String>, ParseError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(ParseError::field(
                join(path, key),
                format!("expected a string or number, got {}", json_type_name(other)),
            )),
        }
    }

    /// A boolean; absent or null is `false`.
    pub fn flag(v: &Value, key: &str, path: &(impl Display + ?Sized)) -> Result<bool, ParseError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(ParseError::field(
                join(path, key),
                format!("expected a boolean, got {}", json_type_name(other)),
            )),
        }
    }

    /// An object field; `None` when absent or null.
    pub fn opt_obj<'a>(
        v: &'a Value,
        key: &str,
        path: &(impl Display + ?Sized),
    ) -> Result<Option<&'a Value>, ParseError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(o @ Value::Object(_)) => Ok(Some(o)),
            Some(other) => Err(ParseError::field(
                join(path, key),
                format!("expected an object, got {}", json_type_name(other)),
            )),
        }
    }

    /// A non-negative whole number (seconds, counts), accepting numeric strings.
    pub fn opt_u64(
        v: &Value,
        key: &str,
        path: &(impl Display + ?Sized),
    ) -> Result<Option<u64>, ParseError> {
        let bad = |other: &Value| {
            ParseError::field(
                join(path, key),
                format!(
                    "expected a non-negative whole number, got {}",
                    json_type_name(other)
                ),
            )
        };
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(n @ Value::Number(_)) => match (n.as_u64(), n.as_f64()) {
                (Some(u), _) => Ok(Some(u)),
                (None, Some(f)) if (0.0..1e15).contains(&f) => Ok(Some(f.round() as u64)),
                _ => Err(bad(n)),
            },
            Some(s @ Value::String(text)) => {
                if text.trim().is_empty() {
                    Ok(None)
                } else {
                    text.trim().parse::<u64>().map(Some).map_err(|_| bad(s))
                }
            }
            Some(other) => Err(bad(other)),
        }
    }

    /// A time field in any provider format; `None` when absent, null or
    /// blank.
    pub fn opt_time(
        v: &Value,
        key: &str,
        path: &(impl Display + ?Sized),
    ) -> Result<Option<jiff::Timestamp>, ParseError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(t) => super::parse_time(t)
                .map(Some)
                .map_err(|e| ParseError::field(join(path, key), e)),
        }
    }

    /// An array field; empty when absent or null.
    pub fn opt_array<'a>(
        v: &'a Value,
        key: &str,
        path: &(impl Display + ?Sized),
    ) -> Result<&'a [Value], ParseError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(a)) => Ok(a.as_slice()),
            Some(other) => Err(ParseError::field(
                join(path, key),
                format!("expected an array, got {}", json_type_name(other)),
            )),
        }
    }

    /// Refuse anything but an object at `path`.
    pub fn expect_object(v: &Value, path: &(impl Display + ?Sized)) -> Result<(), ParseError> {
        if v.is_object() {
            Ok(())
        } else {
            let path = path.to_string();
            let field = if path.is_empty() {
                "(body)".into()
            } else {
                path
            };
            Err(ParseError::field(
                field,
                format!("expected an object, got {}", json_type_name(v)),
            ))
        }
    }

    /// A JSON scalar as the provider sent it (strings without quotes), for
    /// content hashes.
    pub fn as_sent(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// [`as_sent`] of an optional field; empty when absent or null.
    pub fn raw_text(v: Option<&Value>) -> String {
        match v {
            None | Some(Value::Null) => String::new(),
            Some(other) => as_sent(other),
        }
    }

    pub fn join(path: &(impl Display + ?Sized), key: &str) -> String {
        let mut joined = path.to_string();
        if !joined.is_empty() {
            joined.push('.');
        }
        joined.push_str(key);
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{all, ctx};
    use super::*;

    /// A body laid out over lines is kept on one line, every string as
    /// sent (spaces, escapes, quotes and brackets inside it included); a
    /// body on one line is kept byte for byte.
    #[test]
    fn a_payload_is_kept_on_one_line_with_its_strings_untouched() {
        let pretty = "{\r\n  \"a\" : [ 1,\n\t2 ],\n  \"s\": \"x  y \\\" { ] \\\\\",\n  \"u\": \"\\u00e9\\n\"\n}\n";
        let raw = RawJson::from_body(pretty.as_bytes()).unwrap();
        assert_eq!(
            raw.text(),
            "{\"a\":[1,2],\"s\":\"x  y \\\" { ] \\\\\",\"u\":\"\\u00e9\\n\"}"
        );
        assert_eq!(
            raw.to_value(),
            serde_json::from_str::<Value>(pretty).unwrap()
        );
        let flat = r#"{"a": [1, 2], "s": "x  y"}"#;
        assert_eq!(RawJson::from_body(flat.as_bytes()).unwrap().text(), flat);
    }

    /// An event reads back as it was written (stored events, execution
    /// records), `test` and `data` included; without `raw` it is the same
    /// object less that key.
    #[test]
    fn an_event_round_trips_and_leaves_out_only_raw_on_request() {
        let body = include_str!("../../tests/fixtures/meta/terminate_unanswered.json");
        let mut event = all(body, &ctx("meta", Provider::Meta)).remove(0);
        event.test = true;
        event.data = Some(serde_json::json!({"emoji": "👍"}));
        let whole = serde_json::to_value(&event).unwrap();
        assert_eq!(
            serde_json::from_value::<Event>(whole.clone()).unwrap(),
            event
        );
        assert!(whole["raw"].is_object());
        assert_eq!(whole["test"], true);
        let mut less = whole.clone();
        less.as_object_mut().unwrap().remove("raw");
        assert_eq!(serde_json::to_value(event.fields(false)).unwrap(), less);
        // `test` is written only when set, as before.
        event.test = false;
        event.data = None;
        let plain = serde_json::to_value(&event).unwrap();
        assert!(plain.get("test").is_none() && plain.get("data").is_none());
    }

    /// Every event of a batch carries the whole payload as `raw`, as it
    /// arrived but on one line.
    #[test]
    fn each_event_of_a_batch_carries_the_whole_payload() {
        let body = include_str!("../../tests/fixtures/meta/batch_two_entries.json");
        let payload: Value = serde_json::from_str(body).unwrap();
        let events = all(body, &ctx("src", Provider::Meta));
        assert!(events.len() > 1, "a batch");
        for e in &events {
            assert_eq!(e.raw.to_value(), payload, "{}", e.id);
            assert!(!e.raw.text().contains('\n'), "{}", e.id);
        }
    }
}
