//! The workflow language as data: every key of a workflow file, of `on`,
//! and of each step kind, with its shape and whether it is required.
//!
//! Two things are made from this one table, so they cannot drift apart:
//! the parser (`parse.rs`) accepts exactly the keys declared here (its
//! field readers are seeded from the table, and reading an undeclared key
//! is a bug caught by every test run), and `ringback schema` prints the
//! JSON Schema editors use for completion and validation ([`json_schema`]).
//! A unit test checks that the parser requires what the table marks
//! required.

use serde_json::{json, Map, Value};

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A template (text; `true`/`false` are read as text too).
    Text,
    /// One template or a list of them.
    TextList,
    /// A mapping of names to templates.
    TextMap,
    /// Any YAML value; strings in it are templates.
    Json,
    /// `250ms`, `90s`, `2m`, `1h`, `7d`.
    Duration,
    /// A connector name from `ringback.yaml`.
    Connector,
    /// One event kind or a list of them (`"*"`: every kind).
    EventKinds,
    /// One string or a list of them.
    Strings,
    /// GET, POST, PUT, PATCH or DELETE.
    HttpMethod,
    /// `fail` or `continue`.
    OnError,
    /// `{schedule: [5s, 30s, 2m]}`.
    Retry,
    /// A list of steps.
    Steps,
    /// A mapping with these keys.
    Object(&'static [Field]),
    /// A mapping of names to any values (strings are templates).
    JsonMap,
    /// A template, or nothing (`stop:` with no reason).
    TextOrNull,
    /// Plain text, not a template.
    String,
    /// A plain name: letters, digits, `_` and `-`.
    Name,
}

/// One key of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub shape: Shape,
    pub required: bool,
    pub doc: &'static str,
}

const fn req(name: &'static str, shape: Shape, doc: &'static str) -> Field {
    Field {
        name,
        shape,
        required: true,
        doc,
    }
}

const fn opt(name: &'static str, shape: Shape, doc: &'static str) -> Field {
    Field {
        name,
        shape,
        required: false,
        doc,
    }
}

/// One step kind: its key and what it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepKind {
    pub name: &'static str,
    pub doc: &'static str,
    pub args: Shape,
    /// Reaches outside (may take `retry`).
    pub outbound: bool,
}

impl StepKind {
    /// The keys of its argument mapping (empty when it takes a value).
    pub fn fields(&self) -> &'static [Field] {
        match self.args {
            Shape::Object(fields) => fields,
            _ => &[],
        }
    }
}

pub const WORKFLOW: &[Field] = &[
    opt(
        "name",
        Shape::String,
        "The workflow's name (default: the file name without .yaml).",
    ),
    opt("description", Shape::String, "What it is for, for people."),
    req("on", Shape::Object(TRIGGER), "Which events start a run."),
    req("steps", Shape::Steps, "What a run does, in order."),
];

pub const TRIGGER: &[Field] = &[
    req(
        "events",
        Shape::EventKinds,
        "Event kinds, e.g. [call.missed]; \"*\" for all.",
    ),
    opt(
        "sources",
        Shape::Strings,
        "Only events from these sources (ids in ringback.yaml).",
    ),
    opt(
        "business",
        Shape::Strings,
        "Only events for these business numbers.",
    ),
    opt(
        "when",
        Shape::Text,
        "A template; the run starts only when it renders truthy.",
    ),
];

/// Keys every step may have besides its kind.
pub const STEP_SETTINGS: &[Field] = &[
    opt(
        "id",
        Shape::Name,
        "A name for the step; later steps read its output as steps.<id>.",
    ),
    opt(
        "when",
        Shape::Text,
        "A template; the step is skipped unless it renders truthy.",
    ),
    opt(
        "retry",
        Shape::Retry,
        "The retry schedule of an outbound step.",
    ),
    opt(
        "on_error",
        Shape::OnError,
        "fail (default): the run fails; continue: record and go on.",
    ),
    opt(
        "then",
        Shape::Steps,
        "Steps of an `if` when its condition holds.",
    ),
    opt("else", Shape::Steps, "Steps of an `if` when it does not."),
];

pub const RETRY: &[Field] = &[req(
    "schedule",
    Shape::Strings,
    "Delays between attempts, e.g. [5s, 30s, 2m].",
)];

const PHONE: Field = req(
    "phone",
    Shape::Text,
    "The contact's phone, e.g. \"{{event.caller}}\".",
);
const NAME: Field = opt("name", Shape::Text, "The contact's name.");
const COUNTRY: Field = opt("country", Shape::Text, "ISO country code, e.g. MX.");
const VIA: Field = req("via", Shape::Connector, "A connector from ringback.yaml.");

pub const MESSAGE_TEMPLATE: &[Field] = &[
    req("name", Shape::Text, "The approved template's name."),
    opt(
        "language",
        Shape::Text,
        "Its language code (default en_US).",
    ),
    opt("params", Shape::TextList, "Body parameters, in order."),
];

pub const STEPS: &[StepKind] = &[
    StepKind {
        name: "find_contact",
        doc: "Look up a contact by phone: output {found, contact}.",
        args: Shape::Object(&[PHONE]),
        outbound: false,
    },
    StepKind {
        name: "create_contact",
        doc: "Create a contact (an existing one is left as it is).",
        args: Shape::Object(&[
            PHONE,
            NAME,
            COUNTRY,
            opt("fields", Shape::TextMap, "Custom fields."),
            opt("tags", Shape::TextList, "Tags to start with."),
        ]),
        outbound: false,
    },
    StepKind {
        name: "update_contact",
        doc: "Change an existing contact (fails when there is none).",
        args: Shape::Object(&[
            PHONE,
            NAME,
            COUNTRY,
            opt("set", Shape::TextMap, "Fields to set."),
            opt("unset", Shape::Strings, "Fields to remove."),
        ]),
        outbound: false,
    },
    StepKind {
        name: "upsert_contact",
        doc: "Create the contact or change it.",
        args: Shape::Object(&[
            PHONE,
            NAME,
            COUNTRY,
            opt("set", Shape::TextMap, "Fields to set."),
        ]),
        outbound: false,
    },
    StepKind {
        name: "tag",
        doc: "Add and remove tags (needs add or remove).",
        args: Shape::Object(&[
            PHONE,
            opt("add", Shape::TextList, "Tags to add."),
            opt("remove", Shape::TextList, "Tags to remove."),
        ]),
        outbound: false,
    },
    StepKind {
        name: "send_message",
        doc: "Send a WhatsApp message: text, or an approved template.",
        args: Shape::Object(&[
            VIA,
            req("to", Shape::Text, "The recipient's phone."),
            opt("text", Shape::Text, "The message (or give `template`)."),
            opt(
                "template",
                Shape::Object(MESSAGE_TEMPLATE),
                "An approved template (or give `text`).",
            ),
        ]),
        outbound: true,
    },
    StepKind {
        name: "alert",
        doc: "Notify humans (Slack, a webhook).",
        args: Shape::Object(&[VIA, req("text", Shape::Text, "The notification.")]),
        outbound: true,
    },
    StepKind {
        name: "forward",
        doc: "Send the canonical event to a connector.",
        args: Shape::Object(&[VIA]),
        outbound: true,
    },
    StepKind {
        name: "http",
        doc: "Any HTTP call: output {status, body}.",
        args: Shape::Object(&[
            opt("method", Shape::HttpMethod, "Default POST."),
            req("url", Shape::Text, "http:// or https://"),
            opt("headers", Shape::TextMap, "Request headers."),
            opt(
                "json",
                Shape::Json,
                "A JSON body; strings in it are templates.",
            ),
        ]),
        outbound: true,
    },
    StepKind {
        name: "debounce",
        doc: "Let one run per key through in a window; later ones end as `debounced`.",
        args: Shape::Object(&[
            req(
                "key",
                Shape::Text,
                "What to debounce on, e.g. \"{{event.caller}}\".",
            ),
            req("for", Shape::Duration, "The window."),
        ]),
        outbound: false,
    },
    StepKind {
        name: "count",
        doc: "Count events per key in a sliding window: output {count}.",
        args: Shape::Object(&[
            req("key", Shape::Text, "What to count by."),
            req("within", Shape::Duration, "The window."),
        ]),
        outbound: false,
    },
    StepKind {
        name: "wait",
        doc: "Pause durably; with `until`, end early on the caller's next event of those kinds.",
        args: Shape::Object(&[
            req("for", Shape::Duration, "How long at most."),
            opt(
                "until",
                Shape::EventKinds,
                "Event kinds from the same caller that end the wait.",
            ),
        ]),
        outbound: false,
    },
    StepKind {
        name: "set",
        doc: "Set variables: vars.<name>.",
        args: Shape::JsonMap,
        outbound: false,
    },
    StepKind {
        name: "if",
        doc: "A condition (template): runs `then` when truthy, else `else`.",
        args: Shape::Text,
        outbound: false,
    },
    StepKind {
        name: "log",
        doc: "Write a line to the log.",
        args: Shape::Text,
        outbound: false,
    },
    StepKind {
        name: "stop",
        doc: "End the run as `stopped`, with a reason.",
        args: Shape::TextOrNull,
        outbound: false,
    },
];

/// The step kind called `name`.
pub fn step_kind(name: &str) -> Option<&'static StepKind> {
    STEPS.iter().find(|s| s.name == name)
}

/// The names of the keys in `fields`.
pub fn names(fields: &[Field]) -> Vec<&'static str> {
    fields.iter().map(|f| f.name).collect()
}

fn shape_schema(shape: Shape) -> Value {
    match shape {
        Shape::Text => json!({"$ref": "#/definitions/text"}),
        Shape::TextList => json!({"$ref": "#/definitions/text_list"}),
        Shape::TextMap => {
            json!({"type": "object", "additionalProperties": {"$ref": "#/definitions/text"}})
        }
        Shape::Json => json!({}),
        Shape::JsonMap => json!({"type": "object", "minProperties": 1}),
        Shape::Duration => json!({"$ref": "#/definitions/duration"}),
        Shape::Connector => {
            json!({"type": "string", "description": "A connector name from ringback.yaml."})
        }
        Shape::EventKinds => json!({"$ref": "#/definitions/event_kinds"}),
        Shape::Strings => json!({"$ref": "#/definitions/strings"}),
        Shape::HttpMethod => {
            json!({"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "get", "post", "put", "patch", "delete"]})
        }
        Shape::OnError => json!({"type": "string", "enum": ["fail", "continue"]}),
        Shape::Retry => object_schema(RETRY),
        Shape::Steps => json!({"$ref": "#/definitions/steps"}),
        Shape::Object(fields) => object_schema(fields),
        Shape::TextOrNull => json!({"anyOf": [{"$ref": "#/definitions/text"}, {"type": "null"}]}),
        Shape::String => json!({"type": "string"}),
        Shape::Name => json!({"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}),
    }
}

fn field_schema(f: &Field) -> Value {
    let mut s = shape_schema(f.shape);
    if let Value::Object(map) = &mut s {
        if !map.contains_key("$ref") {
            map.insert("description".into(), Value::from(f.doc));
        }
    }
    // `$ref` siblings are ignored by draft-07 validators; wrap to keep the
    // description for editors.
    if s.get("$ref").is_some() {
        s = json!({"allOf": [s], "description": f.doc});
    }
    s
}

fn object_schema(fields: &'static [Field]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|f| (f.name.to_string(), field_schema(f)))
        .collect();
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut s = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    });
    if !required.is_empty() {
        s["required"] = json!(required);
    }
    s
}

fn step_schema(kind: &StepKind) -> Value {
    let mut properties = Map::new();
    properties.insert(
        kind.name.to_string(),
        json!({"allOf": [shape_schema(kind.args)], "description": kind.doc}),
    );
    for f in STEP_SETTINGS {
        let applies = match f.name {
            "retry" => kind.outbound,
            "then" | "else" => kind.name == "if",
            _ => true,
        };
        if applies {
            properties.insert(f.name.to_string(), field_schema(f));
        }
    }
    let mut required = vec![kind.name];
    if kind.name == "if" {
        required.push("then");
    }
    json!({
        "type": "object",
        "title": kind.name,
        "description": kind.doc,
        "required": required,
        "additionalProperties": false,
        "properties": properties,
    })
}

/// The JSON Schema (draft-07) of a workflow file.
pub fn json_schema() -> Value {
    let steps: Vec<Value> = STEPS.iter().map(step_schema).collect();
    let mut root = object_schema(WORKFLOW);
    let root_map = root.as_object_mut().expect("an object schema");
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        Value::from("http://json-schema.org/draft-07/schema#"),
    );
    out.insert("title".into(), Value::from("ringback workflow"));
    out.insert(
        "description".into(),
        Value::from("A ringback workflow file (workflows/*.yaml). Generated by `ringback schema`."),
    );
    out.append(root_map);
    out.insert(
        "definitions".into(),
        json!({
            "text": {"type": ["string", "boolean"], "description": "Text; {{…}} are Handlebars templates."},
            "text_list": {"anyOf": [
                {"$ref": "#/definitions/text"},
                {"type": "array", "items": {"$ref": "#/definitions/text"}},
            ]},
            "strings": {"anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
            ]},
            "event_kinds": {"anyOf": [
                {"$ref": "#/definitions/event_kind"},
                {"type": "array", "items": {"$ref": "#/definitions/event_kind"}, "minItems": 1},
            ]},
            "event_kind": {
                "type": "string",
                "description": "call.incoming, call.accepted, call.rejected, call.missed, call.ended, call.permission_updated, message.*, or \"*\"",
                "examples": ["call.missed", "call.incoming", "call.accepted", "call.rejected", "call.ended", "call.permission_updated", "*"],
            },
            "duration": {"type": "string", "pattern": "^\\s*[0-9]+\\s*(ms|s|m|h|d)\\s*$", "examples": ["250ms", "90s", "2m", "1h", "7d"]},
            "steps": {"type": "array", "items": {"$ref": "#/definitions/step"}},
            "step": {"oneOf": steps},
        }),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::{compile, Known};

    fn known() -> Known {
        Known {
            connectors: ["whatsapp".to_string()].into(),
            sources: Default::default(),
        }
    }

    /// A value of the right shape for `field`.
    fn sample(field: &Field) -> Value {
        match field.shape {
            Shape::Text | Shape::TextOrNull => match field.name {
                "phone" | "to" => json!("{{event.caller}}"),
                "url" => json!("https://crm.example/hook"),
                _ => json!("x"),
            },
            Shape::String | Shape::Name => json!("x"),
            Shape::TextList | Shape::Strings => json!(["a"]),
            Shape::TextMap => json!({"k": "v"}),
            Shape::Json | Shape::JsonMap => json!({"k": 1}),
            Shape::Duration => json!("1m"),
            Shape::Connector => json!("whatsapp"),
            Shape::EventKinds => json!(["call.missed"]),
            Shape::HttpMethod => json!("POST"),
            Shape::OnError => json!("continue"),
            Shape::Retry => json!({"schedule": ["1s"]}),
            Shape::Steps => json!([{"log": "x"}]),
            Shape::Object(fields) => Value::Object(
                fields
                    .iter()
                    .filter(|f| f.required)
                    .map(|f| (f.name.to_string(), sample(f)))
                    .collect(),
            ),
        }
    }

    /// `text` and `template` exclude each other: a sample has `text`.
    fn sample_args(kind: &StepKind, leave_out: Option<&str>) -> Value {
        Value::Object(
            kind.fields()
                .iter()
                .filter(|f| Some(f.name) != leave_out && f.name != "template")
                .map(|f| (f.name.to_string(), sample(f)))
                .collect(),
        )
    }

    fn compile_step(kind: &str, args: Value) -> Result<(), String> {
        let step = json!({ kind: args });
        let doc = json!({"on": {"events": ["call.missed"]}, "steps": [step]});
        let text = serde_json::to_string(&doc).unwrap();
        compile("t.yaml", "t", &text, &known())
            .map(|_| ())
            .map_err(|errs| {
                errs.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    }

    /// Every key the table declares is accepted, every key it requires is
    /// required by the parser, and every optional key may be left out.
    #[test]
    fn the_parser_accepts_exactly_what_the_table_declares() {
        for kind in STEPS {
            let Shape::Object(fields) = kind.args else {
                continue;
            };
            compile_step(kind.name, sample_args(kind, None))
                .unwrap_or_else(|e| panic!("{}: every declared key filled in:\n{e}", kind.name));
            for f in fields.iter().filter(|f| f.name != "template") {
                let result = compile_step(kind.name, sample_args(kind, Some(f.name)));
                let text_needed = kind.name == "send_message" && f.name == "text";
                match (f.required || text_needed, result) {
                    (true, Ok(())) => panic!(
                        "{}: `{}` is declared required but the parser does not require it",
                        kind.name, f.name
                    ),
                    (false, Err(e)) => panic!(
                        "{}: `{}` is declared optional but leaving it out fails:\n{e}",
                        kind.name, f.name
                    ),
                    _ => {}
                }
            }
            let mut extra = sample_args(kind, None);
            extra["not_a_key"] = json!("x");
            let err = compile_step(kind.name, extra).unwrap_err();
            assert!(
                err.contains("unknown key `not_a_key`"),
                "{}: {err}",
                kind.name
            );
        }
        compile_step(
            "send_message",
            json!({"via": "whatsapp", "to": "+1", "template": {"name": "t"}}),
        )
        .expect("a template message");
    }

    #[test]
    fn every_step_kind_is_in_the_schema() {
        let schema = json_schema();
        let steps = schema["definitions"]["step"]["oneOf"].as_array().unwrap();
        let titles: Vec<&str> = steps.iter().map(|s| s["title"].as_str().unwrap()).collect();
        assert_eq!(titles, STEPS.iter().map(|k| k.name).collect::<Vec<_>>());
    }
}
