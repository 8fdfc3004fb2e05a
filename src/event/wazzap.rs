//! Placeholder while the parser is written.
use serde_json::Value;
use super::{Draft, ParseError};
pub(crate) fn parse(_v: &Value) -> Result<Vec<Draft>, ParseError> {
    Err(ParseError::Unrecognised("wazzap parser not written yet".into()))
}
