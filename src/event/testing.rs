//! What the provider parsers' tests share: a delivery context and the
//! unwrapping of results, so each test says only what it checks.

use super::{parse, Event, ParseContext, ParseError, Provider};

/// A delivery on `source` read as `provider`, received 2030-01-01.
pub fn ctx(source: &'static str, provider: Provider) -> ParseContext<'static> {
    ParseContext {
        source,
        provider,
        business: None,
        received_at: "2030-01-01T00:00:00Z".parse().unwrap(),
        delivery_id: None,
    }
}

/// Every event of `body`; panics when it does not parse.
pub fn all(body: &str, ctx: &ParseContext) -> Vec<Event> {
    parse(body.as_bytes(), ctx).unwrap_or_else(|e| panic!("parse failed: {e}"))
}

/// The one event of `body`.
pub fn only(body: &str, ctx: &ParseContext) -> Event {
    let mut events = all(body, ctx);
    assert_eq!(events.len(), 1, "{events:#?}");
    events.remove(0)
}

/// Why `body` does not parse; panics when it does.
pub fn error(body: &str, ctx: &ParseContext) -> ParseError {
    match parse(body.as_bytes(), ctx) {
        Ok(events) => panic!("expected an error, got {events:#?}"),
        Err(e) => e,
    }
}

/// The field and problem of a field error; panics on any other error.
pub fn field(e: &ParseError) -> (&str, &str) {
    match e {
        ParseError::Field { field, problem } => (field, problem),
        other => panic!("expected a field error, got {other:?}"),
    }
}
