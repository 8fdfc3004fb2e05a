//! Contact files for `contacts import` and `contacts export`.
//!
//! CSV has a header row. `phone`, `name`, `country` and `tags` are the
//! contact's own columns (any case); every other column is a field, and a
//! `fields.<name>` column is the field `<name>` (export writes that form only
//! for a field whose name would clash with one of the four). Tags are
//! separated by `;` or `|`. An empty cell leaves that part unset.
//!
//! JSON is an array of contact objects, or one object per line (JSON lines),
//! in the shape the admin API returns; the read-only keys it adds
//! (`created_at`, `updated_at`, `last_call_at`, `calls`) are ignored, so an
//! export imports back as it was.
//!
//! Reading is pure and checks every row before anything is sent: each row
//! becomes the contact to PUT or an error naming its line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::delivery::admin_client::ContactBody;
use crate::event::normalise_phone;
use crate::store::Contact;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    Csv,
    Json,
}

impl FileFormat {
    /// The format a file name says it is in.
    pub fn from_path(path: &Path) -> Option<FileFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(FileFormat::Csv),
            "json" | "jsonl" | "ndjson" => Some(FileFormat::Json),
            _ => None,
        }
    }
}

/// One contact to import, with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    pub line: u64,
    /// E.164, normalised from what the file says.
    pub phone: String,
    pub body: ContactBody,
}

/// A row that cannot be imported, or (from [`read`]) a file that cannot be
/// read at all.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.message)
    }
}

fn row_error(line: u64, message: impl Into<String>) -> RowError {
    RowError {
        line,
        message: message.into(),
    }
}

pub type Rows = Vec<Result<ImportRow, RowError>>;

/// Every row of a file, good or bad, in file order. `Err` when the file as a
/// whole is unusable (no `phone` column, a JSON array that does not parse).
pub fn read(format: FileFormat, text: &str) -> Result<Rows, RowError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        FileFormat::Csv => read_csv(text),
        FileFormat::Json => read_json(text),
    }
}

const PHONE: &str = "phone";
const NAME: &str = "name";
const COUNTRY: &str = "country";
const TAGS: &str = "tags";
const FIELD_PREFIX: &str = "fields.";
/// Keys the admin API adds to a contact; an import ignores them.
const READ_ONLY: [&str; 4] = ["created_at", "updated_at", "last_call_at", "calls"];

enum Column {
    Phone,
    Name,
    Country,
    Tags,
    Field(String),
}

fn read_csv(text: &str) -> Result<Rows, RowError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| row_error(1, format!("cannot read the header row: {e}")))?
        .clone();
    let mut columns = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, name) in headers.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        let column = match lower.as_str() {
            "" => {
                return Err(row_error(
                    1,
                    format!("column {} of the header row has no name", i + 1),
                ))
            }
            PHONE => Column::Phone,
            NAME => Column::Name,
            COUNTRY => Column::Country,
            TAGS => Column::Tags,
            _ => match name.strip_prefix(FIELD_PREFIX) {
                Some(field) if !field.is_empty() => Column::Field(field.to_string()),
                _ => Column::Field(name.to_string()),
            },
        };
        let key = match &column {
            Column::Field(f) => format!("{FIELD_PREFIX}{f}"),
            _ => lower.clone(),
        };
        if !seen.insert(key) {
            return Err(row_error(1, format!("column `{name}` appears twice")));
        }
        columns.push(column);
    }
    if !columns.iter().any(|c| matches!(c, Column::Phone)) {
        return Err(row_error(
            1,
            "the header row has no `phone` column (columns: phone, name, country, tags, then any fields)",
        ));
    }
    // Lines are counted from byte offsets: the csv crate's own line count
    // leaves out the blank lines it skips, and a record's offset is where
    // that skipping began.
    let mut lines = Lines {
        text,
        offset: 0,
        line: 1,
    };
    let mut line_of = |byte: u64| {
        let mut at = (byte as usize).min(text.len());
        while matches!(text.as_bytes().get(at), Some(b'\r' | b'\n')) {
            at += 1;
        }
        lines.at(at)
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| line_of(p.byte())).unwrap_or(0);
                rows.push(Err(row_error(line, e.to_string())));
                continue;
            }
        };
        let line = record.position().map(|p| line_of(p.byte())).unwrap_or(0);
        if record.len() != headers.len() {
            rows.push(Err(row_error(
                line,
                format!(
                    "has {} column(s), the header row has {}",
                    record.len(),
                    headers.len()
                ),
            )));
            continue;
        }
        let mut phone = "";
        let mut body = ContactBody::default();
        for (column, cell) in columns.iter().zip(record.iter()) {
            let cell = cell.trim();
            if cell.is_empty() {
                continue;
            }
            match column {
                Column::Phone => phone = cell,
                Column::Name => body.name = Some(cell.to_string()),
                Column::Country => body.country = Some(cell.to_string()),
                Column::Tags => body.tags = split_tags(cell),
                Column::Field(f) => {
                    body.fields.insert(f.clone(), cell.to_string());
                }
            }
        }
        rows.push(
            phone_key(phone)
                .map_err(|m| row_error(line, m))
                .map(|phone| ImportRow { line, phone, body }),
        );
    }
    Ok(rows)
}

fn split_tags(cell: &str) -> BTreeSet<String> {
    cell.split([';', '|'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The E.164 key for a phone as a file gives it.
fn phone_key(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() {
        return Err("phone is missing".to_string());
    }
    match normalise_phone(raw) {
        Ok(c) if c.is_phone => Ok(c.id),
        Ok(c) => Err(format!(
            "phone `{}` is a WhatsApp privacy id, not a phone number",
            c.id
        )),
        // The message quotes the phone itself.
        Err(e) => Err(format!("phone: {e}")),
    }
}

/// Line numbers of byte offsets, counted forward from the last one asked.
struct Lines<'a> {
    text: &'a str,
    offset: usize,
    line: u64,
}

impl Lines<'_> {
    fn at(&mut self, offset: usize) -> u64 {
        let offset = offset.min(self.text.len());
        if offset < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.text.as_bytes()[self.offset..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        self.offset = offset;
        self.line
    }
}

fn skip_ws(text: &str, mut pos: usize) -> usize {
    let bytes = text.as_bytes();
    while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

fn read_json(text: &str) -> Result<Rows, RowError> {
    let mut lines = Lines {
        text,
        offset: 0,
        line: 1,
    };
    let start = skip_ws(text, 0);
    if text[start..].starts_with('[') {
        return read_json_array(text, start + 1, &mut lines);
    }
    let first_line = text[start..].lines().next().unwrap_or("");
    if serde_json::from_str::<Value>(first_line).is_ok() {
        Ok(read_json_lines(text))
    } else {
        Ok(read_json_values(text, start, &mut lines))
    }
}

/// One JSON value a line: a line that does not parse is that line's error.
fn read_json_lines(text: &str) -> Rows {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        rows.push(match serde_json::from_str::<Value>(line) {
            Ok(value) => json_row(&value, n),
            Err(e) => Err(row_error(n, format!("not valid JSON: {}", json_error(&e)))),
        });
    }
    rows
}

/// `[ {...}, {...} ]`, each element with the line it starts on. A syntax
/// error leaves no way to find the next element, so it fails the file.
fn read_json_array(text: &str, mut pos: usize, lines: &mut Lines) -> Result<Rows, RowError> {
    let mut rows = Vec::new();
    pos = skip_ws(text, pos);
    if text[pos..].starts_with(']') {
        pos += 1;
    } else {
        loop {
            pos = skip_ws(text, pos);
            let line = lines.at(pos);
            let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Value>();
            match stream.next() {
                Some(Ok(value)) => {
                    rows.push(json_row(&value, line));
                    pos += stream.byte_offset();
                }
                Some(Err(e)) => {
                    return Err(row_error(
                        line + e.line().saturating_sub(1) as u64,
                        format!("not valid JSON: {}", json_error(&e)),
                    ))
                }
                None => return Err(row_error(line, "the array is not closed with `]`")),
            }
            pos = skip_ws(text, pos);
            match text.as_bytes().get(pos) {
                Some(b',') => pos += 1,
                Some(b']') => {
                    pos += 1;
                    break;
                }
                Some(_) => {
                    return Err(row_error(
                        lines.at(pos),
                        "expected `,` or `]` after a contact",
                    ))
                }
                None => return Err(row_error(lines.at(pos), "the array is not closed with `]`")),
            }
        }
    }
    let end = skip_ws(text, pos);
    if end < text.len() {
        return Err(row_error(
            lines.at(end),
            "unexpected text after the closing `]`",
        ));
    }
    Ok(rows)
}

/// One JSON object after another, pretty-printed. A syntax error is
/// reported at its line; reading resumes on the line after it.
fn read_json_values(text: &str, mut pos: usize, lines: &mut Lines) -> Rows {
    let mut rows = Vec::new();
    loop {
        pos = skip_ws(text, pos);
        if pos >= text.len() {
            return rows;
        }
        let line = lines.at(pos);
        let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                rows.push(json_row(&value, line));
                pos += stream.byte_offset();
            }
            Some(Err(e)) => {
                let bad_line = line + e.line().saturating_sub(1) as u64;
                rows.push(Err(row_error(
                    bad_line,
                    format!("not valid JSON: {}", json_error(&e)),
                )));
                // Resume after the line the error is on.
                let mut next = pos;
                for _ in 0..e.line().max(1) {
                    next = match text[next..].find('\n') {
                        Some(i) => next + i + 1,
                        None => text.len(),
                    };
                }
                pos = next;
            }
            None => return rows,
        }
    }
}

fn json_row(value: &Value, line: u64) -> Result<ImportRow, RowError> {
    contact_from_json(value)
        .map(|(phone, body)| ImportRow { line, phone, body })
        .map_err(|m| row_error(line, m))
}

/// serde_json's message without its own "at line X column Y".
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A contact object: the phone's E.164 key and what to PUT.
fn contact_from_json(value: &Value) -> Result<(String, ContactBody), String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "expected a contact object, got {}",
            crate::yaml::type_name(value)
        ));
    };
    let mut body = ContactBody::default();
    let mut phone = None;
    for (key, v) in map {
        match key.as_str() {
            PHONE => {
                phone = Some(match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(format!("`phone` must be a string, not {}", kind(v))),
                })
            }
            NAME => body.name = optional_string(key, v)?,
            COUNTRY => body.country = optional_string(key, v)?,
            TAGS => {
                body.tags = match v {
                    Value::Null => BTreeSet::new(),
                    Value::String(s) => split_tags(s),
                    Value::Array(items) => {
                        let mut tags = BTreeSet::new();
                        for item in items {
                            match item {
                                Value::String(s) if !s.trim().is_empty() => {
                                    tags.insert(s.trim().to_string());
                                }
                                Value::String(_) => {}
                                other => {
                                    return Err(format!(
                                        "`tags` must hold strings, not {}",
                                        kind(other)
                                    ))
                                }
                            }
                        }
                        tags
                    }
                    other => {
                        return Err(format!(
                            "`tags` must be a list of strings, not {}",
                            kind(other)
                        ))
                    }
                }
            }
            "fields" => body.fields = fields(v)?,
            k if READ_ONLY.contains(&k) => {}
            other => {
                return Err(format!(
                    "unknown key `{other}` (a contact has phone, name, country, tags and fields)"
                ))
            }
        }
    }
    let phone = phone_key(phone.as_deref().unwrap_or(""))?;
    Ok((phone, body))
}

fn kind(v: &Value) -> &'static str {
    crate::yaml::type_name(v)
}

fn optional_string(key: &str, v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_string())),
        other => Err(format!("`{key}` must be a string, not {}", kind(other))),
    }
}

fn fields(v: &Value) -> Result<BTreeMap<String, String>, String> {
    let map = match v {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Object(map) => map,
        other => {
            return Err(format!(
                "`fields` must be an object of strings, not {}",
                kind(other)
            ))
        }
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let value = match v {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => return Err(format!("field `{k}` must be a string, not {}", kind(other))),
        };
        out.insert(k.clone(), value);
    }
    Ok(out)
}

/// Contacts as CSV: phone, name, country, tags (joined with `;`), then one
/// column per field name any contact has, in name order.
pub fn write_csv(contacts: &[Contact], out: impl Write) -> Result<(), csv::Error> {
    let names: BTreeSet<&str> = contacts
        .iter()
        .flat_map(|c| c.fields.keys().map(String::as_str))
        .collect();
    let mut writer = csv::Writer::from_writer(out);
    let mut header: Vec<String> = [PHONE, NAME, COUNTRY, TAGS]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for name in &names {
        let lower = name.to_ascii_lowercase();
        let clashes = [PHONE, NAME, COUNTRY, TAGS].contains(&lower.as_str())
            || lower.starts_with(FIELD_PREFIX);
        header.push(if clashes {
            format!("{FIELD_PREFIX}{name}")
        } else {
            name.to_string()
        });
    }
    writer.write_record(&header)?;
    for c in contacts {
        let mut record = vec![
            c.phone.clone(),
            c.name.clone().unwrap_or_default(),
            c.country.clone().unwrap_or_default(),
            c.tags.iter().cloned().collect::<Vec<_>>().join(";"),
        ];
        for name in &names {
            record.push(c.fields.get(*name).cloned().unwrap_or_default());
        }
        writer.write_record(&record)?;
    }
    writer.flush()?;
    Ok(())
}

/// Contacts as a JSON array, one contact a line.
pub fn write_json(contacts: &[Contact], mut out: impl Write) -> std::io::Result<()> {
    if contacts.is_empty() {
        return writeln!(out, "[]");
    }
    writeln!(out, "[")?;
    for (i, c) in contacts.iter().enumerate() {
        let line = serde_json::to_string(c).map_err(std::io::Error::other)?;
        let comma = if i + 1 < contacts.len() { "," } else { "" };
        writeln!(out, "  {line}{comma}")?;
    }
    writeln!(out, "]")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(rows: &Rows) -> Vec<&ImportRow> {
        rows.iter().filter_map(|r| r.as_ref().ok()).collect()
    }

    fn errors(rows: &Rows) -> Vec<(u64, String)> {
        rows.iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| (e.line, e.message.clone()))
            .collect()
    }

    #[test]
    fn csv_columns_become_contact_parts_and_the_rest_fields() {
        let text = "Phone,Name,country,tags,email,fields.tags\n\
                    +52 1 55 1234 5678,Ana,MX,vip; lead|,ana@example.com,x\n\
                    5215500000001,,,,,\n";
        let rows = read(FileFormat::Csv, text).unwrap();
        let good = ok(&rows);
        assert_eq!(good.len(), 2, "{rows:?}");
        assert_eq!(good[0].line, 2);
        assert_eq!(good[0].phone, "+5215512345678");
        assert_eq!(good[0].body.name.as_deref(), Some("Ana"));
        assert_eq!(good[0].body.country.as_deref(), Some("MX"));
        assert_eq!(
            good[0].body.tags,
            ["lead", "vip"].iter().map(|s| s.to_string()).collect()
        );
        assert_eq!(good[0].body.fields["email"], "ana@example.com");
        assert_eq!(good[0].body.fields["tags"], "x");
        assert_eq!(good[1].phone, "+5215500000001");
        assert_eq!(good[1].body, ContactBody::default());
    }

    #[test]
    fn a_bad_csv_row_is_reported_by_its_line_and_the_others_still_read() {
        let text = "phone,name\n+5215512345678,Ana\nnot-a-phone,Bob\n\n+5215512345679,Cy,extra\n,Dee\n+5215512345670,Eve\n";
        let rows = read(FileFormat::Csv, text).unwrap();
        assert_eq!(ok(&rows).len(), 2);
        let errs = errors(&rows);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(errs[0].0, 3);
        assert!(errs[0].1.contains("not-a-phone"), "{}", errs[0].1);
        assert_eq!(errs[1].0, 5);
        assert!(errs[1].1.contains("3 column(s)"), "{}", errs[1].1);
        assert_eq!(errs[2], (6, "phone is missing".to_string()));
    }

    #[test]
    fn a_csv_without_a_phone_column_is_refused_whole() {
        let err = read(FileFormat::Csv, "name,tags\nAna,vip\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("no `phone` column"));
        let err = read(FileFormat::Csv, "phone,name,Name\n").unwrap_err();
        assert!(err.message.contains("appears twice"), "{}", err.message);
    }

    #[test]
    fn json_array_elements_carry_the_line_they_start_on() {
        let text = "[\n  {\"phone\": \"+5215512345678\", \"tags\": [\"vip\"], \"fields\": {\"n\": 3},\n   \"created_at\": \"2026-01-01T00:00:00Z\"},\n  {\"phone\": \"12\"},\n  {\"phone\": \"+5215512345679\", \"tag\": \"x\"}\n]\n";
        let rows = read(FileFormat::Json, text).unwrap();
        let good = ok(&rows);
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].body.fields["n"], "3");
        let errs = errors(&rows);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].0, 4);
        assert_eq!(errs[1].0, 5);
        assert!(errs[1].1.contains("unknown key `tag`"), "{}", errs[1].1);
    }

    #[test]
    fn a_broken_json_array_fails_the_file_at_its_line() {
        let err = read(
            FileFormat::Json,
            "[\n{\"phone\": \"+5215512345678\"},\n{\"phone\": }\n]",
        )
        .unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(read(FileFormat::Json, "[]").unwrap().is_empty());
    }

    #[test]
    fn json_lines_resume_after_a_broken_line() {
        let text = "{\"phone\": \"+5215512345678\"}\n{\"phone\": \n{\"phone\": \"+5215512345679\", \"name\": \"Bo\"}\n";
        let rows = read(FileFormat::Json, text).unwrap();
        let good = ok(&rows);
        assert_eq!(good.len(), 2, "{rows:?}");
        assert_eq!(good[1].body.name.as_deref(), Some("Bo"));
        let errs = errors(&rows);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, 2, "{errs:?}");
    }

    #[test]
    fn pretty_printed_objects_one_after_another_are_read_too() {
        let text = "{\n  \"phone\": \"+5215512345678\"\n}\n{\n  \"phone\": \"x\"\n}\n";
        let rows = read(FileFormat::Json, text).unwrap();
        assert_eq!(ok(&rows).len(), 1);
        assert_eq!(ok(&rows)[0].line, 1);
        assert_eq!(errors(&rows)[0].0, 4);
    }

    fn contact(phone: &str, name: Option<&str>, tags: &[&str], fields: &[(&str, &str)]) -> Contact {
        let mut c = Contact::new(phone, jiff::Timestamp::UNIX_EPOCH);
        c.name = name.map(str::to_string);
        c.tags = tags.iter().map(|s| s.to_string()).collect();
        c.fields = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c
    }

    #[test]
    fn csv_export_reads_back_as_the_same_contacts() {
        let contacts = vec![
            contact(
                "+5215512345678",
                Some("Ana, \"the\" boss"),
                &["vip", "lead"],
                &[("email", "a@x")],
            ),
            contact(
                "+5215512345679",
                None,
                &[],
                &[("name", "clash"), ("city", "CDMX")],
            ),
        ];
        let mut out = Vec::new();
        write_csv(&contacts, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("phone,name,country,tags,city,email,fields.name\n"),
            "{text}"
        );
        let rows = read(FileFormat::Csv, &text).unwrap();
        let good = ok(&rows);
        assert_eq!(good.len(), 2);
        for (row, c) in good.iter().zip(&contacts) {
            assert_eq!(row.phone, c.phone);
            assert_eq!(row.body.name, c.name);
            assert_eq!(row.body.tags, c.tags);
            assert_eq!(row.body.fields, c.fields);
        }
    }

    #[test]
    fn json_export_reads_back_as_the_same_contacts() {
        let contacts = vec![
            contact("+5215512345678", Some("Ana"), &["vip"], &[("email", "a@x")]),
            contact("+5215512345679", None, &[], &[]),
        ];
        let mut out = Vec::new();
        write_json(&contacts, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let parsed: Vec<Contact> = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, contacts);
        let rows = read(FileFormat::Json, &text).unwrap();
        let good = ok(&rows);
        assert_eq!(good.len(), 2);
        assert_eq!(good[0].line, 2);
        assert_eq!(good[0].body.tags, contacts[0].tags);
        assert_eq!(good[1].line, 3);
    }
}
