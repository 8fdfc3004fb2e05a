//! The one place that reads YAML.
//!
//! Values come from `serde_yaml` (the YAML organisation's maintained
//! `yaml_serde`), converted to `serde_json::Value` so the rest of ringback
//! works on one tree type. Source positions come from a second, event-level
//! pass with `saphyr-parser`: serde gives the position of the *first* error
//! only, and we want every validation error of a file at once, each with
//! `file:line:col`. Both passes read the same text, so the positions line up
//! with the values; when the event pass cannot place a path (it never fails
//! where serde_yaml succeeds, but to be safe) the nearest placed ancestor is
//! used.
//!
//! Paths are written `a.b[2].c`: mapping keys joined with `.`, sequence
//! items as `[i]`.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser};
use serde_json::Value;

/// A 1-based line and column in a YAML file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One problem found in a file, with where it is and, when we can tell,
/// how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.pos.line, self.pos.col, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// A parsed YAML document: its value and where each path sits in the text.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: String,
    pub value: Value,
    value_pos: HashMap<String, Pos>,
    key_pos: HashMap<String, Pos>,
}

impl Document {
    /// Parse `text` (from `file`, used in messages). A syntax error is
    /// returned as a diagnostic with its position.
    pub fn parse(file: &str, text: &str) -> Result<Document, Diagnostic> {
        let parsed: serde_yaml::Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let message = e.to_string();
                let pos = e
                    .location()
                    .map(|l| Pos {
                        line: l.line(),
                        col: l.column(),
                    })
                    .unwrap_or(Pos { line: 1, col: 1 });
                // Point at the repeated key itself, not its mapping.
                let pos = match message.contains("duplicate entry with key") {
                    true => index_positions(text).2.unwrap_or(pos),
                    false => pos,
                };
                // serde_yaml appends " at line L column C"; we print our own.
                let message = match message.find(" at line ") {
                    Some(i) => message[..i].to_string(),
                    None => message,
                };
                return Err(Diagnostic {
                    file: file.to_string(),
                    pos,
                    message: format!("invalid YAML: {message}"),
                    hint: Some("check indentation and quoting around this point".into()),
                });
            }
        };
        let mut parsed = parsed;
        // `<<: *anchor` merge keys, as users of YAML anchors expect.
        let _ = parsed.apply_merge();
        let value = to_json(parsed);
        let (value_pos, key_pos, _) = index_positions(text);
        Ok(Document {
            file: file.to_string(),
            value,
            value_pos,
            key_pos,
        })
    }

    /// Where the value at `path` starts (or its nearest placed ancestor).
    pub fn pos(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.value_pos.get(p) {
                return *pos;
            }
            match parent(p) {
                Some(up) => p = up,
                None => return Pos { line: 1, col: 1 },
            }
        }
    }

    /// Where the mapping key ending `path` is written (falls back to
    /// [`Document::pos`]). Unknown-key errors point here.
    pub fn key_pos(&self, path: &str) -> Pos {
        self.key_pos
            .get(path)
            .copied()
            .unwrap_or_else(|| self.pos(path))
    }

    /// A diagnostic pointing at the value at `path`.
    pub fn error(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            pos: self.pos(path),
            message: message.into(),
            hint: None,
        }
    }

    /// The duration at `path` (`250ms`, `90s`, `2m`, `1h`, `7d`), or why not.
    pub fn duration(&self, path: &str, v: &Value) -> Result<std::time::Duration, Diagnostic> {
        match v {
            Value::String(s) => crate::duration::parse_duration(s).map_err(|e| self.error(path, e)),
            other => Err(self
                .error(
                    path,
                    format!("expected a duration, got {}", type_name(other)),
                )
                .with_hint("write a number with a unit: 250ms, 90s, 2m, 1h, 7d")),
        }
    }

    /// A diagnostic pointing at the key of `path`.
    pub fn key_error(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            pos: self.key_pos(path),
            message: message.into(),
            hint: None,
        }
    }
}

impl Diagnostic {
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → none.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

/// Join a mapping key onto a path.
pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Join a sequence index onto a path.
pub fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

fn to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    // .nan / .inf have no JSON form; keep them readable.
                    .unwrap_or_else(|| Value::String(n.to_string()))
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    other => scalar_text(&other),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => to_json(tagged.value),
    }
}

fn scalar_text(v: &serde_yaml::Value) -> String {
    match to_json(v.clone()) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        expecting_key: bool,
        /// This mapping's keys so far: a repeat is a duplicate here, and
        /// only here (a key with a dot must not meet a nested path).
        seen: std::collections::HashSet<String>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

type PosIndex = HashMap<String, Pos>;

/// Walk the YAML events once and record where every path's value (and every
/// mapping key) starts, and where the first key that repeats a key of its
/// own mapping is (serde_yaml refuses such a document but places the error
/// at the start of the mapping: line 1 for a top-level key).
fn index_positions(text: &str) -> (PosIndex, PosIndex, Option<Pos>) {
    let mut values = HashMap::new();
    let mut keys = HashMap::new();
    let mut duplicate = None;
    let mut stack: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(text);

    // The path a new node takes, or None when the node is a mapping key.
    fn child_path(stack: &[Frame]) -> Option<String> {
        match stack.last() {
            None => Some(String::new()),
            Some(Frame::Map {
                path,
                key,
                expecting_key,
                ..
            }) => {
                if *expecting_key {
                    None
                } else {
                    Some(join_key(path, key.as_deref().unwrap_or("?")))
                }
            }
            Some(Frame::Seq { path, index }) => Some(join_index(path, *index)),
        }
    }
    fn complete(stack: &mut [Frame]) {
        match stack.last_mut() {
            Some(Frame::Map { expecting_key, .. }) => *expecting_key = true,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    while let Some(Ok((event, span))) = parser.next_event() {
        let pos = Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        };
        match event {
            Event::Scalar(text, ..) => match child_path(&stack) {
                None => {
                    if let Some(Frame::Map {
                        path,
                        key,
                        expecting_key,
                        seen,
                    }) = stack.last_mut()
                    {
                        keys.insert(join_key(path, &text), pos);
                        if !seen.insert(text.to_string()) && duplicate.is_none() {
                            duplicate = Some(pos);
                        }
                        *key = Some(text.into_owned());
                        *expecting_key = false;
                    }
                }
                Some(path) => {
                    values.insert(path, pos);
                    complete(&mut stack);
                }
            },
            Event::Alias(_) => {
                if let Some(path) = child_path(&stack) {
                    values.insert(path, pos);
                }
                complete(&mut stack);
                if let Some(Frame::Map {
                    expecting_key, key, ..
                }) = stack.last_mut()
                {
                    if key.is_none() {
                        *expecting_key = false;
                    }
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A complex (non-scalar) mapping key is not addressable by a
                // path; give it a placeholder so its value still gets one.
                let path = child_path(&stack).unwrap_or_else(|| "?".to_string());
                values.insert(path.clone(), pos);
                if matches!(event, Event::MappingStart(..)) {
                    stack.push(Frame::Map {
                        path,
                        key: None,
                        expecting_key: true,
                        seen: Default::default(),
                    });
                } else {
                    stack.push(Frame::Seq { path, index: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                complete(&mut stack);
            }
            Event::StreamEnd => break,
            _ => {}
        }
    }
    (values, keys, duplicate)
}

/// Reads one mapping of a [`Document`] field by field, collecting every
/// problem instead of stopping at the first. Keys that no reader asked for
/// are reported by [`Fields::finish`] as unknown, with the closest known key
/// as a hint.
pub struct Fields<'d> {
    doc: &'d Document,
    path: String,
    map: &'d serde_json::Map<String, Value>,
    known: Vec<&'static str>,
    /// Keys were declared up front: reading any other is a bug.
    declared: bool,
}

impl<'d> Fields<'d> {
    /// `None` (with an error recorded) when the value is not a mapping.
    pub fn new(
        doc: &'d Document,
        path: &str,
        value: &'d Value,
        what: &str,
        errs: &mut Vec<Diagnostic>,
    ) -> Option<Fields<'d>> {
        match value {
            Value::Object(map) => Some(Fields {
                doc,
                path: path.to_string(),
                map,
                known: Vec::new(),
                declared: false,
            }),
            other => {
                errs.push(doc.error(
                    path,
                    format!("{what} must be a mapping, got {}", type_name(other)),
                ));
                None
            }
        }
    }

    pub fn doc(&self) -> &'d Document {
        self.doc
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full path of `key` in this mapping.
    pub fn path_of(&self, key: &str) -> String {
        join_key(&self.path, key)
    }

    /// Accept exactly these keys (from the workflow language table),
    /// whether or not they are read.
    pub fn declare(&mut self, keys: impl IntoIterator<Item = &'static str>) {
        self.known = keys.into_iter().collect();
        self.declared = true;
    }

    /// The raw value of `key`; `None` when absent or null. Marks the key known.
    pub fn get(&mut self, key: &'static str) -> Option<&'d Value> {
        if self.declared {
            // Reading a key the table does not declare is a bug: tests
            // catch it; a release build reports the key as unknown.
            debug_assert!(
                self.known.contains(&key),
                "`{key}` is read at {} but not declared in workflow::language",
                self.path
            );
        } else {
            self.known.push(key);
        }
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Whether `key` is present (even as null).
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// A string value. Numbers and booleans are refused with a hint to quote
    /// them (YAML reads `+5215500000000` as a number and drops the `+`).
    pub fn string(&mut self, key: &'static str, errs: &mut Vec<Diagnostic>) -> Option<String> {
        self.read_string(key, errs, false)
    }

    /// A secret string value: like [`Fields::string`], but no message or hint
    /// ever repeats what was written, since a wrongly typed secret is still
    /// the secret and these errors reach the log during a reload.
    pub fn secret_string(
        &mut self,
        key: &'static str,
        errs: &mut Vec<Diagnostic>,
    ) -> Option<String> {
        self.read_string(key, errs, true)
    }

    fn read_string(
        &mut self,
        key: &'static str,
        errs: &mut Vec<Diagnostic>,
        secret: bool,
    ) -> Option<String> {
        let v = self.get(key)?;
        if let Value::String(s) = v {
            return Some(s.clone());
        }
        let mut d = self.doc.error(
            &self.path_of(key),
            format!("`{key}` must be a string, got {}", type_name(v)),
        );
        if matches!(v, Value::Number(_) | Value::Bool(_)) {
            d = d.with_hint(if secret {
                format!(
                    "quote the value: {key}: \"...\" (YAML reads an unquoted number or boolean as that type, not as text)"
                )
            } else {
                format!(
                    "quote it: {key}: \"{v}\" (YAML reads an unquoted +number as a number and drops the +)"
                )
            });
        }
        errs.push(d);
        None
    }

    /// Report keys nobody asked for.
    pub fn finish(self, errs: &mut Vec<Diagnostic>) {
        for key in self.map.keys() {
            if self.known.iter().any(|k| k == key) {
                continue;
            }
            let path = join_key(&self.path, key);
            let mut d = self.doc.key_error(&path, format!("unknown key `{key}`"));
            if let Some(best) = closest(key, &self.known) {
                d = d.with_hint(format!("did you mean `{best}`?"));
            } else {
                let mut list: Vec<&str> = self.known.clone();
                list.sort_unstable();
                list.dedup();
                d = d.with_hint(format!("known keys here: {}", list.join(", ")));
            }
            errs.push(d);
        }
    }
}

/// A hint for an unknown `word`: the known one it is probably a typo of,
/// else the whole list after `listing` (e.g. "sources in the config").
pub fn suggest(word: &str, known: &[&str], listing: &str) -> String {
    match closest(word, known) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("{listing}: {}", known.join(", ")),
    }
}

/// The known word closest to `word`, when it is close enough to be a typo.
pub fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// "a string", "a number", ... for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEXT: &str = "\
listen: 127.0.0.1:8080
sources:
  wawp:
    provider: waha
    hmac_key: abc
  meta: { provider: meta, app_secret: x }
steps:
  - tag: { add: [a, b] }
  - send_message:
      text: \"hi\"
business: +5215500000000
";

    /// serde_yaml places a repeated key's error at its mapping's start
    /// (line 1 for a top-level key); the message points at the repeat.
    #[test]
    fn a_repeated_key_is_reported_where_it_is_repeated() {
        let err = Document::parse("f.yaml", "on: {}\nname: a\non: {}\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 1 }, "{err}");
        assert!(
            err.message.contains("duplicate entry with key \"on\""),
            "{err}"
        );
        let nested = "steps:\n  - tag:\n      phone: x\n      add: [a]\n      add: [b]\n";
        let err = Document::parse("f.yaml", nested).unwrap_err();
        assert_eq!(err.pos, Pos { line: 5, col: 7 }, "{err}");
        let flow = "steps:\n  - tag: { add: [a], phone: x, add: [b] }\n";
        let err = Document::parse("f.yaml", flow).unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, col: 32 }, "{err}");
        // A dotted key does not meet a nested path of the same spelling.
        let dotted = "steps:\n  - set: { \"a.b\": x, a: { b: y } }\n  - log: hi\n    log: again\n";
        let err = Document::parse("f.yaml", dotted).unwrap_err();
        assert_eq!(err.pos, Pos { line: 4, col: 5 }, "{err}");
        // The same key in two mappings is no repeat.
        assert!(Document::parse("f.yaml", "a: { x: 1 }\nb: { x: 2 }\n").is_ok());
    }

    #[test]
    fn values_become_json() {
        let doc = Document::parse("f.yaml", TEXT).unwrap();
        assert_eq!(doc.value["sources"]["wawp"]["provider"], json!("waha"));
        assert_eq!(doc.value["steps"][0]["tag"]["add"], json!(["a", "b"]));
        // An unquoted phone reads as a number: validators hint to quote it.
        assert_eq!(doc.value["business"], json!(5215500000000i64));
    }

    #[test]
    fn every_path_has_its_line_and_column() {
        let doc = Document::parse("f.yaml", TEXT).unwrap();
        assert_eq!(doc.pos("listen"), Pos { line: 1, col: 9 });
        assert_eq!(
            doc.key_pos("sources.wawp.hmac_key"),
            Pos { line: 5, col: 5 }
        );
        assert_eq!(doc.pos("sources.wawp.hmac_key"), Pos { line: 5, col: 15 });
        assert_eq!(
            doc.key_pos("sources.meta.app_secret"),
            Pos { line: 6, col: 27 }
        );
        assert_eq!(doc.pos("steps[0].tag.add[1]"), Pos { line: 8, col: 21 });
        assert_eq!(
            doc.pos("steps[1].send_message.text"),
            Pos { line: 10, col: 13 }
        );
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(
            doc.pos("steps[1].send_message.nope"),
            Pos { line: 10, col: 7 }
        );
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = Document::parse("bad.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.file, "bad.yaml");
        assert!(err.pos.line >= 1);
        assert!(err.to_string().starts_with("bad.yaml:"), "{err}");
        assert!(err.message.contains("invalid YAML"), "{err}");
    }

    #[test]
    fn fields_report_unknown_keys_with_a_suggestion_and_quote_hints() {
        let doc = Document::parse(
            "c.yaml",
            "provider: waha\nhmac_kye: x\nbusiness: +5215500000000\n",
        )
        .unwrap();
        let mut errs = Vec::new();
        let mut f = Fields::new(&doc, "", &doc.value, "a source", &mut errs).unwrap();
        assert_eq!(f.string("provider", &mut errs).as_deref(), Some("waha"));
        f.string("hmac_key", &mut errs);
        assert_eq!(f.string("business", &mut errs), None);
        f.finish(&mut errs);
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 2, "{text:?}");
        assert!(
            text[0].starts_with("c.yaml:3:11: `business` must be a string"),
            "{}",
            text[0]
        );
        assert!(text[0].contains("quote it"), "{}", text[0]);
        assert!(
            text[1].starts_with("c.yaml:2:1: unknown key `hmac_kye`"),
            "{}",
            text[1]
        );
        assert!(text[1].contains("did you mean `hmac_key`?"), "{}", text[1]);
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_refused_without_repeating_it() {
        let doc = Document::parse(
            "c.yaml",
            "admin_token: 98237498237498\ntoken: 4.2573e9\nkey: true\n",
        )
        .unwrap();
        let mut errs = Vec::new();
        let mut f = Fields::new(&doc, "", &doc.value, "the config", &mut errs).unwrap();
        assert_eq!(f.secret_string("admin_token", &mut errs), None);
        assert_eq!(f.secret_string("token", &mut errs), None);
        assert_eq!(f.secret_string("key", &mut errs), None);
        f.finish(&mut errs);
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("c.yaml:1:14: `admin_token` must be a string, got a number"),
            "{}",
            text[0]
        );
        assert!(text[0].contains("hint: quote the value"), "{}", text[0]);
        let all = text.join("\n");
        for leaked in ["98237498237498", "9823749", "4257", "true"] {
            assert!(!all.contains(leaked), "`{leaked}` leaked: {all}");
        }
    }

    #[test]
    fn merge_keys_are_applied() {
        let doc = Document::parse(
            "m.yaml",
            "base: &b { kind: log }\nc:\n  <<: *b\n  timeout: 5s\n",
        )
        .unwrap();
        assert_eq!(doc.value["c"], json!({"kind": "log", "timeout": "5s"}));
    }
}
