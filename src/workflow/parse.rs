//! YAML text → [`Workflow`], collecting every error with its position.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::language;
use super::template::{step_references, TemplateBuilder};
use super::*;
use crate::yaml::{closest, join_index, suggest, type_name, Diagnostic, Document, Fields};

/// Names a workflow may refer to, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub connectors: BTreeSet<String>,
    pub sources: BTreeSet<String>,
}

/// Canonical call kinds a trigger or `wait.until` may name; other `call.*`
/// names are likely typos.
const CALL_KINDS: [&str; 6] = [
    "call.incoming",
    "call.accepted",
    "call.rejected",
    "call.missed",
    "call.ended",
    "call.permission_updated",
];

/// The path of `value` inside the list at `path` (its position as written),
/// falling back to `fallback` (its position in a sorted set).
fn item_path(list: &Value, path: &str, value: &str, fallback: usize) -> String {
    match list {
        Value::Array(items) => {
            let i = items
                .iter()
                .position(|x| x.as_str() == Some(value))
                .unwrap_or(fallback);
            join_index(path, i)
        }
        _ => path.to_string(),
    }
}

/// Compile one workflow file. `file` is used in messages; `stem` is the
/// default name.
pub fn compile(
    file: &str,
    stem: &str,
    text: &str,
    known: &Known,
) -> Result<Workflow, Vec<Diagnostic>> {
    let doc = Document::parse(file, text).map_err(|d| vec![d])?;
    let mut c = Compiler {
        doc: &doc,
        known,
        errs: Vec::new(),
        templates: TemplateBuilder::new(),
        ids: Vec::new(),
        declared: Vec::new(),
    };
    let workflow = c.workflow(stem, text);
    if c.errs.is_empty() {
        Ok(workflow.expect("a workflow when there are no errors"))
    } else {
        let mut errs = c.errs;
        errs.sort_by_key(|d| (d.pos.line, d.pos.col));
        errs.dedup();
        Err(errs)
    }
}

struct Compiler<'a> {
    doc: &'a Document,
    known: &'a Known,
    errs: Vec<Diagnostic>,
    templates: TemplateBuilder,
    /// Step ids whose output later steps may use (in scope here).
    ids: Vec<String>,
    /// Every step id declared so far, anywhere: ids must be unique.
    declared: Vec<String>,
}

impl<'a> Compiler<'a> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errs.push(self.doc.error(path, message));
    }

    fn err_hint(&mut self, path: &str, message: impl Into<String>, hint: impl Into<String>) {
        self.errs
            .push(self.doc.error(path, message).with_hint(hint));
    }

    fn workflow(&mut self, stem: &str, text: &str) -> Option<Workflow> {
        let doc = self.doc;
        let mut errs = Vec::new();
        let Some(mut f) = Fields::new(doc, "", &doc.value, "a workflow file", &mut errs) else {
            self.errs.extend(errs);
            return None;
        };
        f.declare(language::names(language::WORKFLOW));
        let name = f
            .string("name", &mut errs)
            .unwrap_or_else(|| stem.to_string());
        let description = f.string("description", &mut errs);
        let on = f.get("on");
        let steps = f.get("steps");
        f.finish(&mut errs);
        self.errs.extend(errs);

        let trigger = match on {
            Some(v) => self.trigger(v),
            None => {
                self.err_hint(
                    "",
                    "a workflow needs `on`",
                    "e.g. on: { events: [call.missed] }",
                );
                None
            }
        };
        let steps = match steps {
            Some(v) => self.steps(v, "steps", ""),
            None => {
                self.err_hint(
                    "",
                    "a workflow needs `steps`",
                    "a list of steps, e.g. steps: [ { log: \"hello\" } ]",
                );
                Vec::new()
            }
        };
        if name.trim().is_empty() {
            self.err("name", "name is empty");
        }
        let hash = Sha256::digest(text.as_bytes());
        let templates = std::mem::take(&mut self.templates).finish();
        Some(Workflow {
            name,
            description,
            file: doc.file.clone(),
            version: hex::encode(&hash[..6]),
            trigger: trigger?,
            steps,
            templates,
            source: text.into(),
        })
    }

    fn trigger(&mut self, v: &Value) -> Option<Trigger> {
        let doc = self.doc;
        let mut errs = Vec::new();
        let Some(mut f) = Fields::new(doc, "on", v, "`on`", &mut errs) else {
            self.errs.extend(errs);
            return None;
        };
        f.declare(language::names(language::TRIGGER));
        let events = f.get("events");
        let sources = f.get("sources");
        let business = f.get("business");
        let when = f.get("when");
        f.finish(&mut errs);
        self.errs.extend(errs);

        let events = match events {
            None => {
                self.err_hint(
                    "on",
                    "`on` needs `events`",
                    "list the event kinds, e.g. events: [call.missed], or \"*\" for all",
                );
                None
            }
            Some(v) => self.event_kinds(v, "on.events").map(|set| {
                if set.contains("*") {
                    None
                } else {
                    Some(set)
                }
            }),
        };
        let sources_value = sources.unwrap_or(&Value::Null);
        let sources = sources.and_then(|v| self.string_set(v, "on.sources"));
        if let Some(set) = &sources {
            for (i, s) in set.iter().enumerate() {
                if !self.known.sources.is_empty() && !self.known.sources.contains(s) {
                    let names: Vec<&str> = self.known.sources.iter().map(String::as_str).collect();
                    let hint = suggest(s, &names, "sources in the config");
                    self.err_hint(
                        &item_path(sources_value, "on.sources", s, i),
                        format!("unknown source `{s}`"),
                        hint,
                    );
                }
            }
        }
        let business = business
            .and_then(|v| self.string_set(v, "on.business"))
            .map(|set| {
                set.into_iter()
                    .map(|b| match crate::event::normalise_phone(&b) {
                        Ok(c) if c.is_phone => c.id,
                        _ => b,
                    })
                    .collect()
            });
        let when = when.and_then(|v| self.template(v, "on.when"));
        Some(Trigger {
            events: events?,
            sources,
            business,
            when,
        })
    }

    fn event_kinds(&mut self, v: &Value, path: &str) -> Option<BTreeSet<String>> {
        let set = self.string_set(v, path)?;
        for (i, kind) in set.iter().enumerate() {
            if kind.starts_with("call.") && !CALL_KINDS.contains(&kind.as_str()) {
                let hint = suggest(kind, &CALL_KINDS, "call kinds");
                self.err_hint(
                    &item_path(v, path, kind, i),
                    format!("unknown call event kind `{kind}`"),
                    hint,
                );
            }
        }
        if set.is_empty() {
            if path == "on.events" {
                self.err(path, "the list is empty: the workflow would never run");
            } else {
                self.err(path, "the list is empty");
            }
        }
        Some(set)
    }

    /// A string or a list of strings.
    fn string_set(&mut self, v: &Value, path: &str) -> Option<BTreeSet<String>> {
        match v {
            Value::String(s) => Some(BTreeSet::from([s.clone()])),
            Value::Array(items) => {
                let mut set = BTreeSet::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => {
                            set.insert(s.clone());
                        }
                        Value::Number(n) => self.err_hint(
                            &join_index(path, i),
                            format!("expected a string, got the number {n}"),
                            format!("quote it: \"+{n}\" (YAML reads an unquoted +number as a number and drops the +)"),
                        ),
                        other => self.err(&join_index(path, i), format!("expected a string, got {}", type_name(other))),
                    }
                }
                Some(set)
            }
            Value::Number(n) => {
                self.err_hint(
                    path,
                    format!("expected a string, got the number {n}"),
                    format!("quote it: \"+{n}\" (YAML reads an unquoted +number as a number and drops the +)"),
                );
                None
            }
            other => {
                self.err(
                    path,
                    format!("expected a list of strings, got {}", type_name(other)),
                );
                None
            }
        }
    }

    fn template(&mut self, v: &Value, path: &str) -> Option<Template> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => {
                self.err_hint(
                    path,
                    format!("expected text, got the number {n}"),
                    "quote it; a phone written unquoted (+5215500000000) reads as a number and loses its +",
                );
                return None;
            }
            Value::Bool(b) => b.to_string(),
            other => {
                self.err(path, format!("expected text, got {}", type_name(other)));
                return None;
            }
        };
        match self.templates.compile(&text) {
            Ok(t) => {
                self.check_references(&text, path);
                Some(t)
            }
            Err(e) => {
                self.err_hint(
                    path,
                    e,
                    "templates are Handlebars: {{event.caller}}, {{#if contact.name}}…{{/if}}",
                );
                None
            }
        }
    }

    fn check_references(&mut self, source: &str, path: &str) {
        for name in step_references(source) {
            if self.ids.contains(&name) {
                continue;
            }
            let ids: Vec<&str> = self.ids.iter().map(String::as_str).collect();
            let later = self.doc.value_has_id_later(&name);
            if later {
                self.err_hint(
                    path,
                    format!("`steps.{name}` refers to a step that runs later"),
                    "a step can only use the output of steps before it",
                );
            } else {
                let hint = match closest(&name, &ids) {
                    Some(best) => format!("did you mean `steps.{best}`?"),
                    None if ids.is_empty() => {
                        "give the step an `id:` to use its output".to_string()
                    }
                    None => format!("step ids defined before this point: {}", ids.join(", ")),
                };
                self.err_hint(
                    path,
                    format!("`steps.{name}`: no step has id `{name}`"),
                    hint,
                );
            }
        }
    }

    fn json_template(&mut self, v: &Value, path: &str) -> JsonTemplate {
        match v {
            Value::String(s) => match self.templates.compile(s) {
                Ok(t) => {
                    self.check_references(s, path);
                    JsonTemplate::Text(t)
                }
                Err(e) => {
                    self.err(path, e);
                    JsonTemplate::Literal(Value::Null)
                }
            },
            Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.json_template(item, &join_index(path, i)))
                    .collect(),
            ),
            Value::Object(map) => JsonTemplate::Object(
                map.iter()
                    .map(|(k, item)| (k.clone(), self.json_template(item, &format!("{path}.{k}"))))
                    .collect(),
            ),
            other => JsonTemplate::Literal(other.clone()),
        }
    }

    fn template_map(&mut self, v: &Value, path: &str) -> Vec<(String, Template)> {
        match v {
            Value::Object(map) => map
                .iter()
                .filter_map(|(k, item)| {
                    let t = self.template(item, &format!("{path}.{k}"))?;
                    Some((k.clone(), t))
                })
                .collect(),
            other => {
                self.err(
                    path,
                    format!(
                        "expected a mapping of names to values, got {}",
                        type_name(other)
                    ),
                );
                Vec::new()
            }
        }
    }

    fn template_list(&mut self, v: &Value, path: &str) -> Vec<Template> {
        match v {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.template(item, &join_index(path, i)))
                .collect(),
            Value::String(_) => self.template(v, path).into_iter().collect(),
            other => {
                self.err(path, format!("expected a list, got {}", type_name(other)));
                Vec::new()
            }
        }
    }

    fn duration(&mut self, v: &Value, path: &str) -> Option<Duration> {
        self.doc
            .duration(path, v)
            .map_err(|d| self.errs.push(d))
            .ok()
    }

    fn connector(&mut self, v: Option<&Value>, path: &str, step_path: &str) -> Option<String> {
        let Some(v) = v else {
            self.err_hint(
                step_path,
                "`via` is required: which connector to use",
                "name a connector from `connectors:` in ringback.yaml",
            );
            return None;
        };
        let Value::String(name) = v else {
            self.err(
                path,
                format!("`via` must be a connector name, got {}", type_name(v)),
            );
            return None;
        };
        if !self.known.connectors.contains(name) {
            let names: Vec<&str> = self.known.connectors.iter().map(String::as_str).collect();
            let hint = match closest(name, &names) {
                Some(best) => format!("did you mean `{best}`?"),
                None if names.is_empty() => {
                    "no connectors are configured in ringback.yaml".to_string()
                }
                None => format!("connectors in the config: {}", names.join(", ")),
            };
            self.err_hint(path, format!("unknown connector `{name}`"), hint);
            return None;
        }
        Some(name.clone())
    }

    fn steps(&mut self, v: &Value, yaml_path: &str, step_prefix: &str) -> Vec<Step> {
        let Value::Array(items) = v else {
            self.err(
                yaml_path,
                format!("`steps` must be a list, got {}", type_name(v)),
            );
            return Vec::new();
        };
        if items.is_empty() && step_prefix.is_empty() {
            self.err(yaml_path, "a workflow needs at least one step");
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = join_index(yaml_path, i);
            let step_path = if step_prefix.is_empty() {
                i.to_string()
            } else {
                format!("{step_prefix}.{i}")
            };
            if let Some(step) = self.step(item, &path, step_path) {
                out.push(step);
            }
        }
        out
    }

    fn step(&mut self, v: &Value, path: &str, step_path: String) -> Option<Step> {
        let doc = self.doc;
        let Value::Object(map) = v else {
            self.err_hint(
                path,
                format!("a step must be a mapping, got {}", type_name(v)),
                "e.g. - tag: { phone: \"{{event.caller}}\", add: [lead] }",
            );
            return None;
        };
        let settings = language::names(language::STEP_SETTINGS);
        let step_kinds = step_kind_names();
        let actions: Vec<&String> = map
            .keys()
            .filter(|k| !settings.contains(&k.as_str()))
            .collect();
        let kind = match actions.as_slice() {
            [] => {
                self.err_hint(
                    path,
                    "this step does nothing",
                    format!("add one of: {}", step_kinds.join(", ")),
                );
                return None;
            }
            [one] => one.as_str(),
            [_, _, ..] => {
                let known: Vec<&&String> = actions
                    .iter()
                    .filter(|k| step_kinds.contains(&k.as_str()))
                    .collect();
                if known.len() > 1 {
                    let (first, second) = (known[0], known[1]);
                    self.err_hint(
                        &format!("{path}.{second}"),
                        format!("a step does one thing: found both `{first}` and `{second}`"),
                        "split them into two steps",
                    );
                    return None;
                }
                // One known step plus unknown keys: report the unknown ones.
                for k in &actions {
                    if !step_kinds.contains(&k.as_str()) {
                        self.unknown_step_key(&format!("{path}.{k}"), k);
                    }
                }
                match known.first() {
                    Some(k) => k.as_str(),
                    None => return None,
                }
            }
        };
        if !step_kinds.contains(&kind) {
            self.unknown_step_key(&format!("{path}.{kind}"), kind);
            return None;
        }

        let id = match map.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let valid = !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    self.err_hint(
                        &format!("{path}.id"),
                        format!("step id `{s}` is not a plain name"),
                        "use letters, digits, `_` and `-`",
                    );
                } else if self.declared.contains(s) {
                    self.err(
                        &format!("{path}.id"),
                        format!("step id `{s}` is used twice"),
                    );
                } else {
                    self.declared.push(s.clone());
                }
                Some(s.clone())
            }
            Some(other) => {
                self.err(
                    &format!("{path}.id"),
                    format!("`id` must be a name, got {}", type_name(other)),
                );
                None
            }
        };
        let when = map
            .get("when")
            .and_then(|w| self.template(w, &format!("{path}.when")));
        let on_error = match map.get("on_error") {
            None => OnError::Fail,
            Some(Value::String(s)) if s == "fail" => OnError::Fail,
            Some(Value::String(s)) if s == "continue" => OnError::Continue,
            Some(other) => {
                self.err_hint(
                    &format!("{path}.on_error"),
                    format!("on_error must be `fail` or `continue`, got {other}"),
                    "continue: record the error and go on with the next step",
                );
                OnError::Fail
            }
        };
        let action_value = &map[kind];
        let action_path = format!("{path}.{kind}");
        let retry = match map.get("retry") {
            None => None,
            Some(v) => {
                let mut errs = Vec::new();
                let r = crate::config::read_retry(doc, &format!("{path}.retry"), v, &mut errs);
                self.errs.extend(errs);
                r
            }
        };
        let is_if = kind == "if";
        for key in ["then", "else"] {
            if map.contains_key(key) && !is_if {
                self.err_hint(
                    &format!("{path}.{key}"),
                    format!("`{key}` belongs to an `if` step"),
                    "write - if: \"{{…}}\" with then: and else: beside it",
                );
            }
        }
        let action = self.action(kind, action_value, &action_path, path, &step_path, map);
        // Register the id after the step's own templates: a step cannot use
        // its own output.
        if let Some(id) = &id {
            if !self.ids.contains(id) {
                self.ids.push(id.clone());
            }
        }
        let action = action?;
        if retry.is_some() && !action.is_outbound() {
            let d = self
                .doc
                .key_error(
                    &format!("{path}.retry"),
                    format!("`retry` applies to steps that reach outside (send_message, alert, forward, http), not `{kind}`"),
                )
                .with_hint("remove it");
            self.errs.push(d);
        }
        Some(Step {
            path: step_path,
            id,
            when,
            retry,
            on_error,
            action,
        })
    }

    fn unknown_step_key(&mut self, path: &str, key: &str) {
        if let Some(best) = closest(key, &language::names(language::STEP_SETTINGS)) {
            let d = self
                .doc
                .key_error(path, format!("unknown key `{key}`"))
                .with_hint(format!("did you mean `{best}`?"));
            self.errs.push(d);
            return;
        }
        let step_kinds = step_kind_names();
        let hint = suggest(key, &step_kinds, "steps are");
        let d = self
            .doc
            .key_error(path, format!("unknown step `{key}`"))
            .with_hint(hint);
        self.errs.push(d);
    }

    /// Read a step's arguments as a mapping and hand them to `read`.
    fn args<T>(
        &mut self,
        v: &Value,
        path: &str,
        kind: &str,
        read: impl for<'f> FnOnce(&mut Self, &mut Fields<'f>, &mut Vec<Diagnostic>) -> Option<T>,
    ) -> Option<T> {
        let doc = self.doc;
        let mut errs = Vec::new();
        let Some(mut f) = Fields::new(doc, path, v, &format!("`{kind}`"), &mut errs) else {
            self.errs.extend(errs);
            return None;
        };
        let declared = match language::step_kind(kind) {
            Some(k) => k.fields(),
            None if kind == "template" => language::MESSAGE_TEMPLATE,
            None => unreachable!("`{kind}` has no entry in the language table"),
        };
        f.declare(language::names(declared));
        let out = read(self, &mut f, &mut errs);
        f.finish(&mut errs);
        self.errs.extend(errs);
        out
    }

    fn required<'v>(
        &mut self,
        f: &mut Fields<'v>,
        key: &'static str,
        kind: &str,
    ) -> Option<&'v Value> {
        let v = f.get(key);
        if v.is_none() {
            let path = f.path().to_string();
            self.err(&path, format!("`{kind}` needs `{key}`"));
        }
        v
    }

    fn req_template(&mut self, f: &mut Fields, key: &'static str, kind: &str) -> Option<Template> {
        let path = f.path_of(key);
        let v = self.required(f, key, kind)?;
        self.template(v, &path)
    }

    fn opt_template(&mut self, f: &mut Fields, key: &'static str) -> Option<Template> {
        let path = f.path_of(key);
        let v = f.get(key)?;
        self.template(v, &path)
    }

    #[allow(clippy::too_many_arguments)]
    fn action(
        &mut self,
        kind: &str,
        v: &Value,
        path: &str,
        step_yaml_path: &str,
        step_path: &str,
        step_map: &serde_json::Map<String, Value>,
    ) -> Option<Action> {
        match kind {
            "find_contact" => self.args(v, path, kind, |c, f, _| {
                Some(Action::FindContact {
                    phone: c.req_template(f, "phone", "find_contact")?,
                })
            }),
            "create_contact" => self.args(v, path, kind, |c, f, _| {
                let phone = c.req_template(f, "phone", "create_contact");
                let name = c.opt_template(f, "name");
                let country = c.opt_template(f, "country");
                let fields = f.get("fields").map(|v| c.template_map(v, &format!("{path}.fields"))).unwrap_or_default();
                let tags = f.get("tags").map(|v| c.template_list(v, &format!("{path}.tags"))).unwrap_or_default();
                Some(Action::CreateContact {
                    phone: phone?,
                    name,
                    country,
                    fields,
                    tags,
                })
            }),
            "update_contact" => self.args(v, path, kind, |c, f, _| {
                let phone = c.req_template(f, "phone", "update_contact");
                let name = c.opt_template(f, "name");
                let country = c.opt_template(f, "country");
                let set = f.get("set").map(|v| c.template_map(v, &format!("{path}.set"))).unwrap_or_default();
                let unset = match f.get("unset") {
                    None => Vec::new(),
                    Some(v) => c.string_set(v, &format!("{path}.unset")).map(|s| s.into_iter().collect()).unwrap_or_default(),
                };
                Some(Action::UpdateContact {
                    phone: phone?,
                    name,
                    country,
                    set,
                    unset,
                })
            }),
            "upsert_contact" => self.args(v, path, kind, |c, f, _| {
                let phone = c.req_template(f, "phone", "upsert_contact");
                let name = c.opt_template(f, "name");
                let country = c.opt_template(f, "country");
                let set = f.get("set").map(|v| c.template_map(v, &format!("{path}.set"))).unwrap_or_default();
                Some(Action::UpsertContact {
                    phone: phone?,
                    name,
                    country,
                    set,
                })
            }),
            "tag" => self.args(v, path, kind, |c, f, _| {
                let phone = c.req_template(f, "phone", "tag");
                let add = f.get("add").map(|v| c.template_list(v, &format!("{path}.add"))).unwrap_or_default();
                let remove = f.get("remove").map(|v| c.template_list(v, &format!("{path}.remove"))).unwrap_or_default();
                if add.is_empty() && remove.is_empty() && f.get("add").is_none() && f.get("remove").is_none() {
                    c.err_hint(path, "`tag` needs `add` or `remove`", "e.g. tag: { phone: \"{{event.caller}}\", add: [lead] }");
                }
                Some(Action::Tag { phone: phone?, add, remove })
            }),
            "send_message" => self.args(v, path, kind, |c, f, _| {
                let via_path = f.path_of("via");
                let via = c.connector(f.get("via"), &via_path, path);
                let to = c.req_template(f, "to", "send_message");
                let text = c.opt_template(f, "text");
                let template = f.get("template");
                let body = match (text, template) {
                    (Some(t), None) => Some(MessageBody::Text(t)),
                    (None, Some(tv)) => c.args(tv, &format!("{path}.template"), "template", |c, tf, _| {
                        let name = c.req_template(tf, "name", "template");
                        let language = match tf.get("language") {
                            None => Some(Template::literal("en_US")),
                            Some(v) => c.template(v, &tf.path_of("language")),
                        };
                        let params = tf.get("params").map(|v| c.template_list(v, &tf.path_of("params"))).unwrap_or_default();
                        Some(MessageBody::Template {
                            name: name?,
                            language: language?,
                            params,
                        })
                    }),
                    (Some(_), Some(_)) => {
                        c.err(path, "`send_message` takes `text` or `template`, not both");
                        None
                    }
                    (None, None) => {
                        if f.get("text").is_none() {
                            c.err_hint(path, "`send_message` needs `text` (or a `template`)", "e.g. text: \"Sorry we missed your call\"");
                        }
                        None
                    }
                };
                Some(Action::SendMessage {
                    via: via?,
                    to: to?,
                    body: body?,
                })
            }),
            "alert" => self.args(v, path, kind, |c, f, _| {
                let via_path = f.path_of("via");
                let via = c.connector(f.get("via"), &via_path, path);
                let text = c.req_template(f, "text", "alert");
                Some(Action::Alert { via: via?, text: text? })
            }),
            "forward" => self.args(v, path, kind, |c, f, _| {
                let via_path = f.path_of("via");
                let via = c.connector(f.get("via"), &via_path, path);
                Some(Action::Forward { via: via? })
            }),
            "http" => self.args(v, path, kind, |c, f, errs| {
                let method = match f.string("method", errs) {
                    None => Some(HttpMethod::Post),
                    Some(m) => match m.to_ascii_uppercase().as_str() {
                        "GET" => Some(HttpMethod::Get),
                        "POST" => Some(HttpMethod::Post),
                        "PUT" => Some(HttpMethod::Put),
                        "PATCH" => Some(HttpMethod::Patch),
                        "DELETE" => Some(HttpMethod::Delete),
                        _ => {
                            c.err(&f.path_of("method"), format!("unknown HTTP method `{m}` (GET, POST, PUT, PATCH or DELETE)"));
                            None
                        }
                    },
                };
                let url = c.req_template(f, "url", "http");
                if let Some(u) = &url {
                    let lower = u.source.to_ascii_lowercase();
                    if !(lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("{{")) {
                        c.err(&f.path_of("url"), format!("url `{}` must start with http:// or https://", u.source));
                    }
                }
                let headers = f.get("headers").map(|v| c.template_map(v, &format!("{path}.headers"))).unwrap_or_default();
                let json = f.get("json").map(|v| c.json_template(v, &format!("{path}.json")));
                Some(Action::Http {
                    method: method?,
                    url: url?,
                    headers,
                    json,
                })
            }),
            "debounce" => self.args(v, path, kind, |c, f, _| {
                let key = c.req_template(f, "key", "debounce");
                let fp = f.path_of("for");
                let window = c.required(f, "for", "debounce").and_then(|v| c.duration(v, &fp));
                Some(Action::Debounce { key: key?, window: window? })
            }),
            "count" => self.args(v, path, kind, |c, f, _| {
                let key = c.req_template(f, "key", "count");
                let wp = f.path_of("within");
                let within = c.required(f, "within", "count").and_then(|v| c.duration(v, &wp));
                Some(Action::Count { key: key?, within: within? })
            }),
            "wait" => self.args(v, path, kind, |c, f, _| {
                let fp = f.path_of("for");
                let duration = c.required(f, "for", "wait").and_then(|v| c.duration(v, &fp));
                let until = match f.get("until") {
                    None => Vec::new(),
                    Some(v) => {
                        let up = f.path_of("until");
                        c.event_kinds(v, &up).map(|s| s.into_iter().collect()).unwrap_or_default()
                    }
                };
                Some(Action::Wait { duration: duration?, until })
            }),
            "set" => {
                let Value::Object(map) = v else {
                    self.err_hint(path, format!("`set` must be a mapping of names to values, got {}", type_name(v)), "e.g. set: { greeting: \"Hi {{contact.name}}\" }");
                    return None;
                };
                if map.is_empty() {
                    self.err(path, "`set` is empty");
                }
                let vars = map
                    .iter()
                    .map(|(k, item)| (k.clone(), self.json_template(item, &format!("{path}.{k}"))))
                    .collect();
                Some(Action::Set { vars })
            }
            "if" => {
                let condition = self.template(v, path);
                let before = self.ids.clone();
                let then = match step_map.get("then") {
                    Some(t) => self.steps(t, &format!("{step_yaml_path}.then"), &format!("{step_path}.then")),
                    None => {
                        self.err_hint(step_yaml_path, "`if` needs `then`", "the steps to run when the condition holds");
                        Vec::new()
                    }
                };
                // `else` cannot see what `then` produced: only one of them runs.
                let after_then = std::mem::replace(&mut self.ids, before);
                let otherwise = match step_map.get("else") {
                    Some(e) => self.steps(e, &format!("{step_yaml_path}.else"), &format!("{step_path}.else")),
                    None => Vec::new(),
                };
                // After the `if`, ids from either branch may be used (null
                // when that branch did not run).
                for id in after_then {
                    if !self.ids.contains(&id) {
                        self.ids.push(id);
                    }
                }
                Some(Action::If {
                    condition: condition?,
                    then,
                    otherwise,
                })
            }
            "log" => Some(Action::Log {
                text: self.template(v, path)?,
            }),
            "stop" => Some(Action::Stop {
                reason: match v {
                    Value::Null => Template::literal("stopped"),
                    other => self.template(other, path)?,
                },
            }),
            _ => None,
        }
    }
}

impl Document {
    /// Whether some step anywhere in the document has this `id` (used to
    /// tell "runs later" from "does not exist").
    fn value_has_id_later(&self, id: &str) -> bool {
        fn walk(v: &Value, id: &str) -> bool {
            match v {
                Value::Object(map) => {
                    map.get("id").and_then(Value::as_str) == Some(id)
                        || map.values().any(|x| walk(x, id))
                }
                Value::Array(items) => items.iter().any(|x| walk(x, id)),
                _ => false,
            }
        }
        self.value.get("steps").is_some_and(|s| walk(s, id))
    }
}

#[cfg(test)]
mod tests;
