//! Placeholder while the parser is written.
use serde_json::Value;
use super::{Draft, ParseError};
pub(crate) fn parse(_v: &Value, _delivery_id: Option<&str>) -> Result<Vec<Draft>, ParseError> {
    Err(ParseError::Unrecognised("standard parser not written yet".into()))
}
