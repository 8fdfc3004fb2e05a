//! Handlebars templates, compiled once when a workflow loads.
//!
//! Every string in a workflow that may contain `{{...}}` becomes a
//! [`Template`]. A string without `{{` is kept as a literal and never goes
//! through Handlebars. Templates render over the run's context (`event`,
//! `contact`, `steps`, `vars`, `workflow`, `now`) and are never
//! HTML-escaped: a follow-up message is text, not HTML.
//!
//! JSON bodies are built structurally ([`JsonTemplate`]): the YAML tree is
//! kept as a tree and each string leaf is rendered on its own, so a caller
//! name full of quotes or braces can never change a request's shape.

use std::sync::Arc;

use handlebars::{handlebars_helper, Context, Handlebars};
use serde_json::Value;

/// A compiled template, or a literal string.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The text as written in the workflow.
    pub source: String,
    /// Registry name when the text has `{{`; `None` for a literal.
    key: Option<String>,
    /// The field of a template that is one plain reference and nothing
    /// else (`{{event.caller}}`), looked up without Handlebars (see
    /// [`plain_field`]).
    field: Option<Vec<String>>,
}

impl Template {
    pub fn literal(text: impl Into<String>) -> Template {
        Template {
            source: text.into(),
            key: None,
            field: None,
        }
    }

    pub fn is_literal(&self) -> bool {
        self.key.is_none()
    }
}

/// A JSON value whose string leaves are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    Literal(Value),
    Text(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

/// The compiled templates of one workflow version, with ringback's helpers.
#[derive(Clone)]
pub struct Templates {
    registry: Arc<Handlebars<'static>>,
    /// Some template may read `event.raw` (see [`may_read_event_raw`]).
    reads_event_raw: bool,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

/// Collects templates while a workflow is validated.
pub struct TemplateBuilder {
    registry: Handlebars<'static>,
    next: usize,
    reads_event_raw: bool,
}

impl Default for TemplateBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TemplateBuilder {
    pub fn new() -> Self {
        let mut registry = Handlebars::new();
        registry.register_escape_fn(handlebars::no_escape);
        registry.set_strict_mode(false);
        register_helpers(&mut registry);
        TemplateBuilder {
            registry,
            next: 0,
            reads_event_raw: false,
        }
    }

    /// Compile `source`; the error is Handlebars' own description.
    pub fn compile(&mut self, source: &str) -> Result<Template, String> {
        if !source.contains("{{") {
            return Ok(Template::literal(source));
        }
        let key = format!("t{}", self.next);
        self.next += 1;
        self.registry
            .register_template_string(&key, source)
            .map_err(|e| describe_template_error(&e))?;
        let compiled = self.registry.get_template(&key).expect("just registered");
        check_names(&compiled.elements, true)?;
        self.reads_event_raw |= may_read_event_raw(source);
        Ok(Template {
            source: source.to_string(),
            key: Some(key),
            field: plain_field(source),
        })
    }

    pub fn finish(self) -> Templates {
        Templates {
            registry: Arc::new(self.registry),
            reads_event_raw: self.reads_event_raw,
        }
    }
}

/// The path of a template that is exactly one reference to a field,
/// `{{event.caller}}` (spaces inside the braces allowed; two or more
/// segments, each a plain identifier other than `this`, so no helper, no
/// `@`, `../` or index). Most templates of the shipped workflows are such
/// a reference, and rendering one through Handlebars cost ≈5 k
/// instructions, most of a contact step's rendering.
fn plain_field(source: &str) -> Option<Vec<String>> {
    // Only the spaces Handlebars' grammar skips: it reads any other
    // (a pasted non-breaking space) as part of the name.
    let inner = source
        .strip_prefix("{{")?
        .strip_suffix("}}")?
        .trim_matches([' ', '\t', '\n', '\r']);
    let identifier = |s: &&str| {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && *s != "this"
    };
    let segments: Vec<&str> = inner.split('.').collect();
    (segments.len() >= 2 && segments.iter().all(identifier))
        .then(|| segments.into_iter().map(str::to_string).collect())
}

/// A plain field's text as Handlebars renders it (no escaping, not strict):
/// a string as it is, a number or a boolean as JSON writes it, null or a
/// missing key as nothing. `None` leaves it to Handlebars: an array or an
/// object, or a path through something that is not an object.
fn render_field(root: &Value, path: &[String]) -> Option<String> {
    let mut value = root;
    for segment in path {
        match value {
            Value::Object(map) => match map.get(segment) {
                Some(next) => value = next,
                None => return Some(String::new()),
            },
            _ => return None,
        }
    }
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Whether a template might read the event's `raw` payload, erring towards
/// yes: it names `raw` (or the `raw` helper), looks values up by a name
/// given at run time (`lookup`), reaches the whole data (`this`, `@root`,
/// `../`), or uses `event` itself rather than one of its fields
/// (`{{#with event}}`, `{{json event}}`, `default x=event`). (A bare `.`
/// does not compile.) A workflow none of whose templates might gets its
/// render data without the payload: copying it into every run's data was
/// most of the cost of building that data.
fn may_read_event_raw(source: &str) -> bool {
    const WHOLE_OR_DYNAMIC: [&str; 5] = ["raw", "lookup", "this", "@root", "../"];
    if WHOLE_OR_DYNAMIC.iter().any(|hint| source.contains(hint)) {
        return true;
    }
    let bytes = source.as_bytes();
    source
        .match_indices("event")
        .any(|(i, _)| bytes.get(i + "event".len()) != Some(&b'.'))
}

/// Helpers Handlebars itself provides (without its optional features).
const BUILTIN_HELPERS: [&str; 17] = [
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len",
];
/// Helpers ringback adds ([`register_helpers`] registers each).
const RINGBACK_HELPERS: [&str; 6] = ["lower", "upper", "digits", "json", "contains", "default"];
/// The canonical event's fields (SPEC section 4, `Event`'s serialised form).
const EVENT_FIELDS: [&str; 19] = [
    "id",
    "kind",
    "direction",
    "caller",
    "caller_is_phone",
    "business",
    "country",
    "name",
    "video",
    "at",
    "call_id",
    "duration",
    "outcome",
    "source",
    "provider",
    "synthetic",
    "test",
    "data",
    "raw",
];

/// Names a template uses that can only be typing mistakes, found when the
/// workflow loads rather than by every run: a helper call (an expression
/// with arguments, or a block) whose helper does not exist, which would
/// fail each render; and an `event.<field>` the canonical event does not
/// have, which would render empty (a misspelled debounce key then puts
/// every caller under one key). Inside `each` and `with` blocks the
/// context is another value, so paths there are not checked.
fn check_names(
    elements: &[handlebars::template::TemplateElement],
    top_context: bool,
) -> Result<(), String> {
    use handlebars::template::TemplateElement as E;
    for element in elements {
        match element {
            E::Expression(h) | E::HtmlExpression(h) => check_call(h, false, top_context)?,
            E::HelperBlock(h) => check_call(h, true, top_context)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_call(
    h: &handlebars::template::HelperTemplate,
    block: bool,
    top_context: bool,
) -> Result<(), String> {
    let name = h.name.as_name();
    if block || !h.params.is_empty() || !h.hash.is_empty() {
        if let Some(name) = name {
            if !BUILTIN_HELPERS.contains(&name) && !RINGBACK_HELPERS.contains(&name) {
                return Err(format!(
                    "unknown helper `{name}` (helpers: {}, {})",
                    RINGBACK_HELPERS.join(", "),
                    BUILTIN_HELPERS.join(", ")
                ));
            }
        }
    } else if let (Some(path), true) = (name, top_context) {
        check_event_path(path)?;
    }
    for param in h.params.iter().chain(h.hash.values()) {
        check_param(param, top_context)?;
    }
    let inner_context = top_context && !matches!(name, Some("each" | "with"));
    if let Some(t) = &h.template {
        check_names(&t.elements, inner_context)?;
    }
    if let Some(t) = &h.inverse {
        check_names(&t.elements, top_context)?;
    }
    Ok(())
}

fn check_param(p: &handlebars::template::Parameter, top_context: bool) -> Result<(), String> {
    use handlebars::template::Parameter as P;
    match p {
        P::Path(_) | P::Name(_) if top_context => check_event_path(p.as_name().unwrap_or("")),
        P::Subexpression(sub) => check_names(std::slice::from_ref(sub.as_element()), top_context),
        _ => Ok(()),
    }
}

fn check_event_path(path: &str) -> Result<(), String> {
    let Some(rest) = path.strip_prefix("event.") else {
        return Ok(());
    };
    let field: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if field.is_empty() || EVENT_FIELDS.contains(&field.as_str()) {
        return Ok(());
    }
    Err(format!(
        "unknown event field `{field}` in `{path}` (fields: {})",
        EVENT_FIELDS.join(", ")
    ))
}

fn describe_template_error(e: &handlebars::TemplateError) -> String {
    let reason = e.reason().to_string();
    // Handlebars' Display includes the whole template and a caret; keep the
    // reason and the column, which is what a user needs.
    match e.pos() {
        Some((line, col)) => {
            format!("template error at template line {line}, column {col}: {reason}")
        }
        None => format!("template error: {reason}"),
    }
}

/// The data a template renders over. A run keeps one and changes it in
/// place as its steps produce output: building it copies the event
/// (payload included), which was most of a run's cost when done per step.
pub struct RenderData(Context);

impl RenderData {
    pub fn new(value: &Value) -> RenderData {
        RenderData::from_value(value.clone())
    }

    /// Without copying `value`.
    pub fn from_value(value: Value) -> RenderData {
        RenderData(Context::from(value))
    }

    pub fn value(&self) -> &Value {
        self.0.data()
    }

    pub fn value_mut(&mut self) -> &mut Value {
        self.0.data_mut()
    }
}

impl Templates {
    /// An empty set, for code paths with nothing to render.
    pub fn empty() -> Templates {
        TemplateBuilder::new().finish()
    }

    /// Whether some template of the set might read `event.raw`; when none
    /// can, the run's render data leaves the payload out.
    pub fn reads_event_raw(&self) -> bool {
        self.reads_event_raw
    }

    pub fn render(&self, t: &Template, data: &RenderData) -> Result<String, String> {
        if let Some(text) = t
            .field
            .as_deref()
            .and_then(|f| render_field(data.value(), f))
        {
            return Ok(text);
        }
        match &t.key {
            None => Ok(t.source.clone()),
            Some(key) => self
                .registry
                .render_with_context(key, &data.0)
                .map_err(|e| format!("cannot render `{}`: {}", t.source, e.reason())),
        }
    }

    /// Render a condition: false when it renders to empty, `false`, `0` or
    /// `null` (after trimming), true otherwise.
    pub fn truthy(&self, t: &Template, data: &RenderData) -> Result<bool, String> {
        let text = self.render(t, data)?;
        Ok(is_truthy_text(&text))
    }

    /// Build a JSON value, rendering each string leaf on its own.
    pub fn render_json(&self, t: &JsonTemplate, data: &RenderData) -> Result<Value, String> {
        Ok(match t {
            JsonTemplate::Literal(v) => v.clone(),
            JsonTemplate::Text(tpl) => Value::String(self.render(tpl, data)?),
            JsonTemplate::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.render_json(i, data))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(fields) => {
                let mut map = serde_json::Map::new();
                for (k, v) in fields {
                    map.insert(k.clone(), self.render_json(v, data)?);
                }
                Value::Object(map)
            }
        })
    }
}

pub fn is_truthy_text(text: &str) -> bool {
    !matches!(text.trim(), "" | "false" | "0" | "null")
}

/// Handlebars-style truthiness of a JSON value, for helpers.
fn is_truthy_value(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

handlebars_helper!(lower: |v: Json| text_of(v).to_lowercase());
handlebars_helper!(upper: |v: Json| text_of(v).to_uppercase());
handlebars_helper!(digits: |v: Json| text_of(v).chars().filter(char::is_ascii_digit).collect::<String>());
handlebars_helper!(json: |v: Json| v.to_string());

handlebars_helper!(contains: |haystack: Json, needle: Json| {
    // A list holds the item, a string holds the substring, or a mapping has
    // the key. Returns a boolean, so it works inside `(...)` subexpressions.
    match haystack {
        Value::Array(items) => items.iter().any(|i| i == needle || text_of(i) == text_of(needle)),
        Value::String(s) => s.contains(&text_of(needle)),
        Value::Object(map) => map.contains_key(&text_of(needle)),
        _ => false,
    }
});

handlebars_helper!(default: |value: Json, fallback: Json| {
    // The value unless it is null, empty or false.
    if is_truthy_value(value) { value.clone() } else { fallback.clone() }
});

/// The helpers of [`RINGBACK_HELPERS`].
fn register_helpers(r: &mut Handlebars<'static>) {
    r.register_helper("lower", Box::new(lower));
    r.register_helper("upper", Box::new(upper));
    r.register_helper("digits", Box::new(digits));
    r.register_helper("json", Box::new(json));
    r.register_helper("contains", Box::new(contains));
    r.register_helper("default", Box::new(default));
}

/// Names after `steps.` in a template, for reference checks.
pub fn step_references(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("steps.") {
        let before = rest[..i].chars().last();
        let tail = &rest[i + "steps.".len()..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        let boundary = before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'));
        if boundary && !name.is_empty() && !out.contains(&name) {
            out.push(name.clone());
        }
        rest = &tail[name.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, data: Value) -> String {
        let mut b = TemplateBuilder::new();
        let t = b.compile(src).unwrap();
        b.finish().render(&t, &RenderData::new(&data)).unwrap()
    }

    /// A template that is one plain field reference renders without
    /// Handlebars, to exactly what Handlebars renders; other shapes are not
    /// taken for one.
    #[test]
    fn a_plain_field_renders_as_handlebars_renders_it() {
        let data = json!({
            "event": {"caller": "+5215512345678", "name": null, "data": {"x": [1]}},
            "v": {"n": 5, "f": 1.5, "neg": -0.25, "big": 1e20, "t": true, "nul": null, "empty": "",
                  "s": "a<b> & \"q\" {{x}}", "arr": [1, "a", null], "obj": {"x": 1},
                  "nested": {"deep": {"er": "yes"}}},
            "contact": null,
            "steps": {"found": {"found": false}}
        });
        let plain = [
            "{{event.caller}}",
            "{{ event.name }}",
            "{{\tevent.data.x\n}}",
            "{{event.caller.x}}",
            "{{v.n}}",
            "{{v.f}}",
            "{{v.neg}}",
            "{{v.big}}",
            "{{v.t}}",
            "{{v.nul}}",
            "{{v.empty}}",
            "{{v.s}}",
            "{{v.arr}}",
            "{{v.obj}}",
            "{{v.nested.deep.er}}",
            "{{v.missing}}",
            "{{contact.name}}",
            "{{nothing.at_all}}",
            "{{steps.found.found}}",
        ];
        let mut b = TemplateBuilder::new();
        let compiled: Vec<Template> = plain.iter().map(|src| b.compile(src).unwrap()).collect();
        let templates = b.finish();
        let rd = RenderData::new(&data);
        for t in &compiled {
            assert!(t.field.is_some(), "{} is a plain field", t.source);
            let by_handlebars = templates
                .registry
                .render_with_context(t.key.as_ref().unwrap(), &rd.0)
                .unwrap();
            assert_eq!(
                templates.render(t, &rd).unwrap(),
                by_handlebars,
                "{}",
                t.source
            );
        }
        assert_eq!(render("{{v.s}}", data.clone()), "a<b> & \"q\" {{x}}");
        assert!(render_field(&data, &["v".into(), "f".into()]).is_some());
        assert!(render_field(&data, &["v".into(), "arr".into()]).is_none());

        for other in [
            "{{caller}}",
            "{{{event.caller}}}",
            "{{~event.caller~}}",
            "{{event.caller}} ",
            "{{event.caller}}{{event.n}}",
            "{{this.event}}",
            "{{@root.event}}",
            "{{../event.caller}}",
            "{{\u{a0}event.caller}}",
            "{{event.caller\u{a0}}}",
            "{{event.[0]}}",
            "{{default event.name 'x'}}",
            "{{event.0}}",
        ] {
            assert_eq!(plain_field(other), None, "{other}");
        }
    }

    /// The helper list the load-time check accepts is the registry's:
    /// every listed helper renders (a missing one would fail here), and a
    /// name outside the lists is refused.
    #[test]
    fn every_listed_helper_is_registered_and_others_are_refused() {
        let data = json!({"a": "x", "l": ["x"]});
        for name in RINGBACK_HELPERS.iter().chain(BUILTIN_HELPERS.iter()) {
            let src = match *name {
                "if" | "unless" | "each" | "with" => format!("{{{{#{name} l}}}}.{{{{/{name}}}}}"),
                "lookup" | "contains" | "default" | "eq" | "ne" | "gt" | "gte" | "lt" | "lte"
                | "and" | "or" => format!("{{{{{name} l a}}}}"),
                _ => format!("{{{{{name} a}}}}"),
            };
            let mut b = TemplateBuilder::new();
            let t = b.compile(&src).unwrap_or_else(|e| panic!("{src}: {e}"));
            b.finish()
                .render(&t, &RenderData::new(&data))
                .unwrap_or_else(|e| panic!("{src}: {e}"));
        }
        let mut b = TemplateBuilder::new();
        let err = b.compile("{{#iff a}}x{{/iff}}").unwrap_err();
        assert!(err.starts_with("unknown helper `iff`"), "{err}");
        let err = b.compile("{{default (lowr a) 'x'}}").unwrap_err();
        assert!(err.starts_with("unknown helper `lowr`"), "{err}");
    }

    #[test]
    fn event_fields_are_checked_outside_each_and_with_only() {
        let mut b = TemplateBuilder::new();
        for ok in [
            "{{event.caller}} {{event.raw.entry.0.id}} {{event.data.x}}",
            "{{#if event.name}}{{event.name}}{{else}}{{event.country}}{{/if}}",
            "{{#with event.raw}}{{event.anything}}{{/with}}",
            "{{#each steps.list}}{{event.whatever}}{{/each}}",
            "{{default event.name 'there'}}",
        ] {
            b.compile(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, field) in [
            ("{{event.calller}}", "calller"),
            ("{{#if event.nmae}}x{{/if}}", "nmae"),
            ("{{default event.nmae 'x'}}", "nmae"),
            ("{{#each l}}.{{else}}{{event.colr}}{{/each}}", "colr"),
        ] {
            let err = b.compile(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("unknown event field `{field}`")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn output_is_never_html_escaped() {
        assert_eq!(
            render("Hi {{name}}", json!({"name": "<Ana & \"Bo\">"})),
            "Hi <Ana & \"Bo\">"
        );
    }

    #[test]
    fn the_helpers_work() {
        let d =
            json!({"tags": ["vip", "lead"], "phone": "+52 155-1234", "name": "Ana", "none": null});
        assert_eq!(render("{{contains tags 'vip'}}", d.clone()), "true");
        assert_eq!(render("{{contains tags 'x'}}", d.clone()), "false");
        assert_eq!(render("{{contains name 'n'}}", d.clone()), "true");
        assert_eq!(render("{{default none 'friend'}}", d.clone()), "friend");
        assert_eq!(render("{{default name 'friend'}}", d.clone()), "Ana");
        assert_eq!(
            render("{{lower name}} {{upper name}}", d.clone()),
            "ana ANA"
        );
        assert_eq!(render("{{digits phone}}", d.clone()), "521551234");
        assert_eq!(
            render("{{eq name 'Ana'}} {{len tags}}", d.clone()),
            "true 2"
        );
        assert_eq!(render("{{#if none}}x{{else}}y{{/if}}", d), "y");
    }

    #[test]
    fn conditions_follow_the_spec_truthiness() {
        for (text, want) in [
            ("", false),
            (" false ", false),
            ("0", false),
            ("null", false),
            ("no", true),
            ("1", true),
        ] {
            assert_eq!(is_truthy_text(text), want, "{text:?}");
        }
    }

    #[test]
    fn json_bodies_keep_their_shape_whatever_the_data() {
        let mut b = TemplateBuilder::new();
        let body = JsonTemplate::Object(vec![
            (
                "text".into(),
                JsonTemplate::Text(b.compile("Hi {{name}}").unwrap()),
            ),
            ("n".into(), JsonTemplate::Literal(json!(3))),
        ]);
        let t = b.finish();
        let evil = json!({"name": "\", \"admin\": true, \"x\": \"{{oops}}"});
        let out = t.render_json(&body, &RenderData::new(&evil)).unwrap();
        assert_eq!(out.as_object().unwrap().len(), 2);
        assert_eq!(
            out["text"],
            json!("Hi \", \"admin\": true, \"x\": \"{{oops}}")
        );
        assert_eq!(out["n"], json!(3));
    }

    #[test]
    fn bad_templates_are_refused_at_compile_time() {
        let mut b = TemplateBuilder::new();
        assert!(b.compile("{{#if x}}unclosed").is_err());
        assert!(b.compile("{{").is_err());
        assert!(b.compile("no braces at all").unwrap().is_literal());
    }

    #[test]
    fn step_references_are_found() {
        assert_eq!(
            step_references("{{steps.who.contact.name}} {{#if steps.n.count}}"),
            vec!["who", "n"]
        );
        assert!(step_references("{{mysteps.x}}").is_empty());
    }

    /// A workflow's render data leaves the payload out only when none of
    /// its templates can reach `event.raw`, directly or not.
    #[test]
    fn templates_that_might_read_the_payload_are_recognised() {
        for reads in [
            "{{event.raw.entry.0.id}}",
            "{{json event}}",
            "{{#with event}}{{caller}}{{/with}}",
            "{{lookup event vars.field}}",
            "{{#each this}}{{@key}}{{/each}}",
            "{{default contact.name x=event}}",
            "{{@root.steps.x}}",
            "{{#each steps.list}}{{../event.kind}}{{/each}}",
        ] {
            assert!(may_read_event_raw(reads), "{reads}");
        }
        for not in [
            "{{event.caller}} {{event.kind}}",
            "{{#if event.name}}{{event.name}}{{else}}{{event.country}}{{/if}}",
            "{{eq event.direction 'incoming'}}",
            "{{contains contact.tags 'vip'}}",
            "{{default contact.name 'there'}}, {{steps.found.found}} {{vars.x}}.",
        ] {
            assert!(!may_read_event_raw(not), "{not}");
        }
        let mut b = TemplateBuilder::new();
        b.compile("{{event.caller}}").unwrap();
        b.compile("a literal that says raw and event").unwrap();
        assert!(!b.finish().reads_event_raw());
        let mut b = TemplateBuilder::new();
        b.compile("{{event.caller}}").unwrap();
        b.compile("{{event.raw.x}}").unwrap();
        assert!(b.finish().reads_event_raw());
    }
}
