use super::*;

use std::time::Duration;

use serde_json::json;

/// The configuration every test compiles against: connectors `whatsapp` and
/// `slack`, source `wazzap-mx`.
fn known() -> Known {
    Known {
        connectors: ["whatsapp".to_string(), "slack".to_string()].into(),
        sources: ["wazzap-mx".to_string()].into(),
    }
}

/// Compile `text` as `wf.yaml`, expecting success.
fn ok(text: &str) -> Workflow {
    match compile("wf.yaml", "stem", text, &known()) {
        Ok(w) => w,
        Err(errs) => panic!(
            "expected the workflow to compile, got:\n{}",
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// Compile `text` as `wf.yaml`, expecting errors; each as the user sees it.
fn errors(text: &str) -> Vec<String> {
    errors_with(text, &known())
}

fn errors_with(text: &str, known: &Known) -> Vec<String> {
    match compile("wf.yaml", "stem", text, known) {
        Ok(w) => panic!(
            "expected errors, but it compiled with {} steps",
            w.steps.len()
        ),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

/// A workflow on `call.missed` whose `steps:` list is `steps` (the first step
/// is on line 3).
fn with_steps(steps: &str) -> String {
    format!("on: {{ events: [call.missed] }}\nsteps:\n{steps}")
}

/// The step at `path` (`3`, `3.then.0`, ...), searching nested branches.
fn step_at<'a>(steps: &'a [Step], path: &str) -> &'a Step {
    crate::workflow::step_at(steps, path).unwrap_or_else(|| panic!("no step at path {path}"))
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn srcs(ts: &[Template]) -> Vec<&str> {
    ts.iter().map(|t| t.source.as_str()).collect()
}

// ---------------------------------------------------------------------------
// A valid workflow using everything
// ---------------------------------------------------------------------------

const EVERYTHING: &str = r#"name: everything
description: Every step kind at least once.
on:
  events: "*"
  sources: [wazzap-mx]
  business: ["+52 1 55 0000 0000", "5215500000001", default]
  when: "{{eq event.direction 'incoming'}}"
steps:
  - id: found
    find_contact: { phone: "{{event.caller}}" }
  - create_contact:
      phone: "{{event.caller}}"
      name: "{{default event.name 'friend'}}"
      country: MX
      fields: { source: "{{event.source}}", plan: free }
      tags: [lead, "{{event.kind}}"]
  - update_contact:
      phone: "{{event.caller}}"
      set: { last_call: "{{event.at}}" }
      unset: [old_field]
  - if: "{{steps.found.found}}"
    then:
      - upsert_contact: { phone: "{{event.caller}}", name: Ana, set: { seen: "yes" } }
      - if: "{{contains contact.tags 'vip'}}"
        then:
          - alert: { via: slack, text: "VIP {{contact.name}}" }
        else:
          - stop: not a vip
    else:
      - tag: { phone: "{{event.caller}}", add: [new], remove: [old] }
  - id: msg
    when: "{{not contact.opted_out}}"
    retry: { schedule: [1s, 250ms] }
    on_error: continue
    send_message: { via: whatsapp, to: "{{event.caller}}", text: "Hi {{contact.name}}" }
  - send_message:
      via: whatsapp
      to: "+5215500000000"
      template: { name: missed_call, language: es_MX, params: ["{{contact.name}}", fixed] }
  - forward: { via: slack }
  - id: hook
    on_error: fail
    http:
      method: put
      url: "https://crm.example/contacts/{{digits event.caller}}"
      headers: { Authorization: "Bearer abc", X-Caller: "{{event.caller}}" }
      json:
        phone: "{{event.caller}}"
        n: 3
        ok: true
        tags: [a, "{{event.kind}}"]
        nested: { status: "{{steps.msg.status}}" }
  - debounce: { key: "{{event.caller}}", for: 2m }
  - id: calls
    count: { key: "{{event.caller}}", within: 10m }
  - wait: { for: 1h, until: [call.accepted, message.reaction] }
  - set: { greeting: "Hi {{contact.name}}", n: 5, calls: "{{steps.calls.count}}" }
  - log: "{{steps.hook.status}} {{vars.greeting}}"
  - stop:
"#;

#[test]
fn a_workflow_with_every_step_kind_compiles() {
    let w = ok(EVERYTHING);
    assert_eq!(w.name, "everything");
    assert_eq!(
        w.description.as_deref(),
        Some("Every step kind at least once.")
    );
    assert_eq!(w.file, "wf.yaml");
    let kinds: Vec<&str> = w.steps.iter().map(|s| s.action.kind()).collect();
    assert_eq!(
        kinds,
        [
            "find_contact",
            "create_contact",
            "update_contact",
            "if",
            "send_message",
            "send_message",
            "forward",
            "http",
            "debounce",
            "count",
            "wait",
            "set",
            "log",
            "stop"
        ]
    );
    let paths: Vec<&str> = w.steps.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13"]
    );
}

#[test]
fn the_trigger_is_compiled_with_star_as_every_event_and_business_in_e164() {
    let w = ok(EVERYTHING);
    let t = &w.trigger;
    assert_eq!(t.events, None, "\"*\" means every event kind");
    assert_eq!(t.event_names(), ["*"]);
    assert_eq!(t.sources, Some(set(&["wazzap-mx"])));
    assert_eq!(
        t.business,
        Some(set(&["+5215500000000", "+5215500000001", "default"])),
        "numbers are normalised to E.164, ids kept as written"
    );
    let when = t.when.as_ref().expect("on.when");
    assert_eq!(when.source, "{{eq event.direction 'incoming'}}");
    assert!(!when.is_literal());

    assert!(t.matches("call.missed", "wazzap-mx", Some("+5215500000000")));
    assert!(t.matches("message.reaction", "wazzap-mx", Some("default")));
    assert!(!t.matches("call.missed", "wawp", Some("+5215500000000")));
    assert!(!t.matches("call.missed", "wazzap-mx", Some("+5215599999999")));
    assert!(!t.matches("call.missed", "wazzap-mx", None));
}

#[test]
fn events_list_and_star_inside_a_list() {
    let w = ok(
        "on: { events: [call.missed, call.rejected, message.reaction] }\nsteps: [ { log: x } ]\n",
    );
    assert_eq!(
        w.trigger.events,
        Some(set(&["call.missed", "call.rejected", "message.reaction"]))
    );
    assert_eq!(w.trigger.sources, None);
    assert_eq!(w.trigger.business, None);
    assert!(w.trigger.when.is_none());
    assert!(w.trigger.matches("call.rejected", "any", None));
    assert!(!w.trigger.matches("call.incoming", "any", None));

    let w = ok("on: { events: [\"*\", call.missed] }\nsteps: [ { log: x } ]\n");
    assert_eq!(w.trigger.events, None);

    // A single kind may be written without a list.
    let w = ok("on: { events: call.ended }\nsteps: [ { log: x } ]\n");
    assert_eq!(w.trigger.events, Some(set(&["call.ended"])));
}

#[test]
fn the_name_defaults_to_the_file_stem() {
    let w = ok(&with_steps("  - log: hi\n"));
    assert_eq!(w.name, "stem");
    assert_eq!(w.description, None);
}

#[test]
fn contact_steps_keep_literals_and_templates_apart() {
    let w = ok(EVERYTHING);

    let Action::FindContact { phone } = &step_at(&w.steps, "0").action else {
        panic!("step 0 is find_contact");
    };
    assert_eq!(phone.source, "{{event.caller}}");
    assert!(!phone.is_literal());
    assert_eq!(step_at(&w.steps, "0").id.as_deref(), Some("found"));

    let Action::CreateContact {
        phone,
        name,
        country,
        fields,
        tags,
    } = &step_at(&w.steps, "1").action
    else {
        panic!("step 1 is create_contact");
    };
    assert_eq!(phone.source, "{{event.caller}}");
    assert_eq!(
        name.as_ref().unwrap().source,
        "{{default event.name 'friend'}}"
    );
    let country = country.as_ref().unwrap();
    assert_eq!(country.source, "MX");
    assert!(country.is_literal(), "text without {{{{ is a literal");
    let fields: Vec<(&str, &str, bool)> = fields
        .iter()
        .map(|(k, t)| (k.as_str(), t.source.as_str(), t.is_literal()))
        .collect();
    assert_eq!(
        fields,
        [
            ("source", "{{event.source}}", false),
            ("plan", "free", true)
        ]
    );
    assert_eq!(srcs(tags), ["lead", "{{event.kind}}"]);
    assert!(tags[0].is_literal());
    assert!(!tags[1].is_literal());

    let Action::UpdateContact {
        set, unset, name, ..
    } = &step_at(&w.steps, "2").action
    else {
        panic!("step 2 is update_contact");
    };
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].0, "last_call");
    assert_eq!(set[0].1.source, "{{event.at}}");
    assert_eq!(unset, &["old_field".to_string()]);
    assert!(name.is_none());

    let Action::UpsertContact { name, set, .. } = &step_at(&w.steps, "3.then.0").action else {
        panic!("3.then.0 is upsert_contact");
    };
    assert_eq!(name.as_ref().unwrap().source, "Ana");
    assert_eq!(set[0].0, "seen");
    assert_eq!(set[0].1.source, "yes");

    let Action::Tag { add, remove, .. } = &step_at(&w.steps, "3.else.0").action else {
        panic!("3.else.0 is tag");
    };
    assert_eq!(srcs(add), ["new"]);
    assert_eq!(srcs(remove), ["old"]);
}

#[test]
fn nested_if_steps_get_stable_paths() {
    let w = ok(EVERYTHING);
    let Action::If {
        condition,
        then,
        otherwise,
    } = &step_at(&w.steps, "3").action
    else {
        panic!("step 3 is if");
    };
    assert_eq!(condition.source, "{{steps.found.found}}");
    let then_paths: Vec<&str> = then.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(then_paths, ["3.then.0", "3.then.1"]);
    let else_paths: Vec<&str> = otherwise.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(else_paths, ["3.else.0"]);

    let Action::Alert { via, text } = &step_at(&w.steps, "3.then.1.then.0").action else {
        panic!("3.then.1.then.0 is alert");
    };
    assert_eq!(via, "slack");
    assert_eq!(text.source, "VIP {{contact.name}}");
    let Action::Stop { reason } = &step_at(&w.steps, "3.then.1.else.0").action else {
        panic!("3.then.1.else.0 is stop");
    };
    assert_eq!(reason.source, "not a vip");
}

#[test]
fn outbound_steps_carry_connector_retry_and_on_error() {
    let w = ok(EVERYTHING);

    let msg = step_at(&w.steps, "4");
    assert_eq!(msg.id.as_deref(), Some("msg"));
    assert_eq!(
        msg.when.as_ref().unwrap().source,
        "{{not contact.opted_out}}"
    );
    assert_eq!(
        msg.retry,
        Some(vec![Duration::from_secs(1), Duration::from_millis(250)])
    );
    assert_eq!(msg.on_error, OnError::Continue);
    let Action::SendMessage { via, to, body } = &msg.action else {
        panic!("step 4 is send_message");
    };
    assert_eq!(via, "whatsapp");
    assert_eq!(to.source, "{{event.caller}}");
    let MessageBody::Text(text) = body else {
        panic!("text form");
    };
    assert_eq!(text.source, "Hi {{contact.name}}");

    let tpl = step_at(&w.steps, "5");
    assert_eq!(tpl.retry, None);
    assert_eq!(tpl.on_error, OnError::Fail, "the default is fail");
    let Action::SendMessage { to, body, .. } = &tpl.action else {
        panic!("step 5 is send_message");
    };
    assert_eq!(to.source, "+5215500000000");
    assert!(to.is_literal());
    let MessageBody::Template {
        name,
        language,
        params,
    } = body
    else {
        panic!("template form");
    };
    assert_eq!(name.source, "missed_call");
    assert_eq!(language.source, "es_MX");
    assert_eq!(srcs(params), ["{{contact.name}}", "fixed"]);

    let Action::Forward { via } = &step_at(&w.steps, "6").action else {
        panic!("step 6 is forward");
    };
    assert_eq!(via, "slack");

    let hook = step_at(&w.steps, "7");
    assert_eq!(hook.on_error, OnError::Fail);
    let Action::Http {
        method,
        url,
        headers,
        json,
    } = &hook.action
    else {
        panic!("step 7 is http");
    };
    assert_eq!(*method, HttpMethod::Put, "methods are case-insensitive");
    assert_eq!(
        url.source,
        "https://crm.example/contacts/{{digits event.caller}}"
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, t)| (k.as_str(), t.source.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("Authorization", "Bearer abc"),
            ("X-Caller", "{{event.caller}}")
        ]
    );
    let json = json.as_ref().expect("a json body");
    let JsonTemplate::Object(fields) = json else {
        panic!("the body is an object: {json:?}");
    };
    let n = fields.iter().find(|(k, _)| k == "n").unwrap();
    assert_eq!(n.1, JsonTemplate::Literal(json!(3)), "numbers stay numbers");
    let okf = fields.iter().find(|(k, _)| k == "ok").unwrap();
    assert_eq!(okf.1, JsonTemplate::Literal(json!(true)));
}

#[test]
fn the_json_body_renders_with_its_shape() {
    let w = ok(EVERYTHING);
    let Action::Http {
        json: Some(body),
        headers,
        url,
        ..
    } = &step_at(&w.steps, "7").action
    else {
        panic!("step 7 is http with a body");
    };
    let data = json!({
        "event": {"caller": "+5215512345678", "kind": "call.missed"},
        "steps": {"msg": {"status": "sent"}},
    });
    let data = RenderData::new(&data);
    assert_eq!(
        w.templates.render_json(body, &data).unwrap(),
        json!({
            "phone": "+5215512345678",
            "n": 3,
            "ok": true,
            "tags": ["a", "call.missed"],
            "nested": {"status": "sent"},
        })
    );
    assert_eq!(
        w.templates.render(url, &data).unwrap(),
        "https://crm.example/contacts/5215512345678"
    );
    assert_eq!(
        w.templates.render(&headers[1].1, &data).unwrap(),
        "+5215512345678"
    );
}

#[test]
fn durations_and_the_remaining_steps_are_compiled() {
    let w = ok(EVERYTHING);

    let Action::Debounce { key, window } = &step_at(&w.steps, "8").action else {
        panic!("step 8 is debounce");
    };
    assert_eq!(key.source, "{{event.caller}}");
    assert_eq!(*window, Duration::from_secs(120));

    let count = step_at(&w.steps, "9");
    assert_eq!(count.id.as_deref(), Some("calls"));
    let Action::Count { within, .. } = &count.action else {
        panic!("step 9 is count");
    };
    assert_eq!(*within, Duration::from_secs(600));

    let Action::Wait { duration, until } = &step_at(&w.steps, "10").action else {
        panic!("step 10 is wait");
    };
    assert_eq!(*duration, Duration::from_secs(3600));
    assert_eq!(until, &["call.accepted", "message.reaction"]);

    let Action::Set { vars } = &step_at(&w.steps, "11").action else {
        panic!("step 11 is set");
    };
    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    // Keys keep the order they are written in.
    assert_eq!(names, ["greeting", "n", "calls"]);
    let n = &vars.iter().find(|(k, _)| k == "n").unwrap().1;
    assert_eq!(*n, JsonTemplate::Literal(json!(5)));

    let Action::Log { text } = &step_at(&w.steps, "12").action else {
        panic!("step 12 is log");
    };
    assert_eq!(text.source, "{{steps.hook.status}} {{vars.greeting}}");

    let Action::Stop { reason } = &step_at(&w.steps, "13").action else {
        panic!("step 13 is stop");
    };
    assert_eq!(
        reason.source, "stopped",
        "a bare `stop:` has a default reason"
    );
    assert!(reason.is_literal());
}

#[test]
fn a_template_message_defaults_its_language() {
    let w = ok(&with_steps(
        "  - send_message: { via: whatsapp, to: \"{{event.caller}}\", template: { name: hello } }\n",
    ));
    let Action::SendMessage {
        body: MessageBody::Template {
            language, params, ..
        },
        ..
    } = &w.steps[0].action
    else {
        panic!("a template message");
    };
    assert_eq!(language.source, "en_US");
    assert!(params.is_empty());
}

#[test]
fn the_http_method_defaults_to_post_and_template_urls_are_allowed() {
    let w = ok(&with_steps("  - http: { url: \"{{vars.url}}\" }\n"));
    let Action::Http {
        method, json, url, ..
    } = &w.steps[0].action
    else {
        panic!("http");
    };
    assert_eq!(*method, HttpMethod::Post);
    assert!(json.is_none());
    assert_eq!(url.source, "{{vars.url}}");
}

// ---------------------------------------------------------------------------
// The SPEC §5 example
// ---------------------------------------------------------------------------

const SPEC_EXAMPLE: &str = r#"name: missed-call-followup            # unique; default: file stem
description: Turn a missed call into a contact and a WhatsApp follow-up.
on:
  events: [call.missed]               # kinds, or "*"; required
  sources: [wazzap-mx]                # optional filter
  business: ["+5215500000000"]        # optional filter
  when: "{{eq event.direction 'incoming'}}"   # optional condition
steps:
  - debounce: { key: "{{event.caller}}", for: 2m }      # repeats within 2 min end the run here
  - id: who
    upsert_contact:
      phone: "{{event.caller}}"
      country: "{{event.country}}"
      set: { first_source: "{{event.source}}" }       # `set` writes contact fields
  - tag: { phone: "{{event.caller}}", add: [missed-call-followup] }
  - if: "{{contains contact.tags 'vip'}}"
    then:
      - alert: { via: slack, text: "VIP {{contact.name}} is calling {{event.business}} right now" }
    else:
      - send_message:
          via: whatsapp
          to: "{{event.caller}}"
          text: "Hi{{#if contact.name}} {{contact.name}}{{/if}}, sorry we missed your call. Book a time: https://cal.example/book"
"#;

#[test]
fn the_spec_example_compiles() {
    let w = ok(SPEC_EXAMPLE);
    assert_eq!(w.name, "missed-call-followup");
    assert_eq!(
        w.description.as_deref(),
        Some("Turn a missed call into a contact and a WhatsApp follow-up.")
    );
    assert_eq!(w.trigger.events, Some(set(&["call.missed"])));
    assert_eq!(w.trigger.sources, Some(set(&["wazzap-mx"])));
    assert_eq!(w.trigger.business, Some(set(&["+5215500000000"])));
    let kinds: Vec<(&str, &str)> = w
        .steps
        .iter()
        .map(|s| (s.path.as_str(), s.action.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("0", "debounce"),
            ("1", "upsert_contact"),
            ("2", "tag"),
            ("3", "if")
        ]
    );
    assert_eq!(w.steps[1].id.as_deref(), Some("who"));
    assert_eq!(step_at(&w.steps, "3.then.0").action.kind(), "alert");
    assert_eq!(step_at(&w.steps, "3.else.0").action.kind(), "send_message");
}

#[test]
fn the_spec_example_renders() {
    let w = ok(SPEC_EXAMPLE);
    let Action::SendMessage {
        body: MessageBody::Text(text),
        ..
    } = &step_at(&w.steps, "3.else.0").action
    else {
        panic!("3.else.0 sends a text");
    };
    let Action::Alert { text: alert, .. } = &step_at(&w.steps, "3.then.0").action else {
        panic!("3.then.0 is alert");
    };
    let Action::If { condition, .. } = &w.steps[3].action else {
        panic!("step 3 is if");
    };
    let when = w.trigger.when.as_ref().unwrap();

    let known_vip = json!({
        "event": {"caller": "+5215512345678", "business": "+5215500000000", "direction": "incoming"},
        "contact": {"name": "O'Brien & <Co>", "tags": ["vip", "lead"]},
    });
    let d = RenderData::new(&known_vip);
    assert_eq!(
        w.templates.render(text, &d).unwrap(),
        "Hi O'Brien & <Co>, sorry we missed your call. Book a time: https://cal.example/book",
        "never HTML-escaped"
    );
    assert_eq!(
        w.templates.render(alert, &d).unwrap(),
        "VIP O'Brien & <Co> is calling +5215500000000 right now"
    );
    assert!(w.templates.truthy(condition, &d).unwrap());
    assert!(w.templates.truthy(when, &d).unwrap());

    let stranger = json!({
        "event": {"caller": "+5215512345678", "direction": "outgoing"},
        "contact": null,
    });
    let d = RenderData::new(&stranger);
    assert_eq!(
        w.templates.render(text, &d).unwrap(),
        "Hi, sorry we missed your call. Book a time: https://cal.example/book"
    );
    assert!(!w.templates.truthy(condition, &d).unwrap());
    assert!(!w.templates.truthy(when, &d).unwrap());
}

#[test]
fn step_text_renders_with_the_helpers() {
    let w = ok(&with_steps(
        r#"  - send_message:
      via: whatsapp
      to: "+{{digits event.caller}}"
      text: "Hola {{default contact.name 'amigo'}} ({{upper event.country}}/{{lower contact.city}}), vip={{contains contact.tags 'vip'}} {{digits event.caller}}"
"#,
    ));
    let Action::SendMessage {
        to,
        body: MessageBody::Text(text),
        ..
    } = &w.steps[0].action
    else {
        panic!("a text message");
    };
    let with_contact = json!({
        "event": {"caller": "+52 1 55-1234-5678", "country": "mx"},
        "contact": {"name": "Ana", "city": "CDMX", "tags": ["vip"]},
    });
    let d = RenderData::new(&with_contact);
    assert_eq!(
        w.templates.render(text, &d).unwrap(),
        "Hola Ana (MX/cdmx), vip=true 5215512345678"
    );
    assert_eq!(w.templates.render(to, &d).unwrap(), "+5215512345678");

    let no_contact =
        json!({"event": {"caller": "+5215512345678", "country": "MX"}, "contact": null});
    assert_eq!(
        w.templates
            .render(text, &RenderData::new(&no_contact))
            .unwrap(),
        "Hola amigo (MX/), vip=false 5215512345678"
    );
}

// ---------------------------------------------------------------------------
// The version hash
// ---------------------------------------------------------------------------

#[test]
fn the_version_is_stable_for_the_same_text_and_changes_with_it() {
    let a = with_steps("  - log: hi\n");
    let v1 = ok(&a).version;
    assert_eq!(v1, ok(&a).version);
    assert_eq!(v1.len(), 12);
    assert!(v1.chars().all(|c| c.is_ascii_hexdigit()), "{v1}");
    // Any change counts, even one that means the same thing.
    assert_ne!(v1, ok(&with_steps("  - log: hi  # a comment\n")).version);
    assert_ne!(v1, ok(&with_steps("  - log: ho\n")).version);
    // The file name is not part of it.
    let other = compile("other.yaml", "other", &a, &known()).unwrap();
    assert_eq!(other.version, v1);
}

// ---------------------------------------------------------------------------
// Validation messages, one per test
// ---------------------------------------------------------------------------

#[test]
fn unknown_top_level_key_suggests_the_closest() {
    assert_eq!(
        errors(&with_steps("  - log: hi\nstep: []\n")),
        ["wf.yaml:4:1: unknown key `step`\n  hint: did you mean `steps`?"]
    );
}

#[test]
fn unknown_top_level_key_lists_the_known_keys_when_nothing_is_close() {
    assert_eq!(
        errors(&with_steps("  - log: hi\ntriggers: []\n")),
        ["wf.yaml:4:1: unknown key `triggers`\n  hint: known keys here: description, name, on, steps"]
    );
}

#[test]
fn missing_on() {
    assert_eq!(
        errors("name: x\nsteps:\n  - log: hi\n"),
        ["wf.yaml:1:1: a workflow needs `on`\n  hint: e.g. on: { events: [call.missed] }"]
    );
}

#[test]
fn missing_steps() {
    assert_eq!(
        errors("on: { events: [call.missed] }\n"),
        ["wf.yaml:1:1: a workflow needs `steps`\n  hint: a list of steps, e.g. steps: [ { log: \"hello\" } ]"]
    );
}

#[test]
fn steps_that_are_not_a_list() {
    assert_eq!(
        errors("on: { events: [call.missed] }\nsteps:\n  log: x\n"),
        ["wf.yaml:3:3: `steps` must be a list, got a mapping"]
    );
}

#[test]
fn empty_steps() {
    assert_eq!(
        errors("on: { events: [call.missed] }\nsteps: []\n"),
        ["wf.yaml:2:8: a workflow needs at least one step"]
    );
}

#[test]
fn empty_name() {
    assert_eq!(
        errors(&format!("name: ''\n{}", with_steps("  - log: hi\n"))),
        ["wf.yaml:1:7: name is empty"]
    );
}

#[test]
fn a_name_that_is_a_number() {
    assert_eq!(
        errors(&format!("name: 123\n{}", with_steps("  - log: hi\n"))),
        ["wf.yaml:1:7: `name` must be a string, got a number\n  hint: quote it: name: \"123\" (YAML reads an unquoted +number as a number and drops the +)"]
    );
}

#[test]
fn missing_on_events() {
    assert_eq!(
        errors("on:\n  sources: [wazzap-mx]\nsteps:\n  - log: hi\n"),
        ["wf.yaml:2:3: `on` needs `events`\n  hint: list the event kinds, e.g. events: [call.missed], or \"*\" for all"]
    );
}

#[test]
fn unknown_key_in_on() {
    assert_eq!(
        errors("on:\n  events: [call.missed]\n  source: [wazzap-mx]\nsteps:\n  - log: hi\n"),
        ["wf.yaml:3:3: unknown key `source`\n  hint: did you mean `sources`?"]
    );
}

#[test]
fn empty_events_list() {
    assert_eq!(
        errors("on: { events: [] }\nsteps:\n  - log: hi\n"),
        ["wf.yaml:1:15: the list is empty: the workflow would never run"]
    );
}

#[test]
fn unknown_call_kind_suggests_the_closest() {
    assert_eq!(
        errors("on:\n  events: [call.mised]\nsteps:\n  - log: hi\n"),
        ["wf.yaml:2:12: unknown call event kind `call.mised`\n  hint: did you mean `call.missed`?"]
    );
}

#[test]
fn unknown_call_kind_lists_the_kinds_when_nothing_is_close() {
    assert_eq!(
        errors("on:\n  events: [call.hangup]\nsteps:\n  - log: hi\n"),
        ["wf.yaml:2:12: unknown call event kind `call.hangup`\n  hint: call kinds: call.incoming, call.accepted, call.rejected, call.missed, call.ended, call.permission_updated"]
    );
}

#[test]
fn non_call_kinds_are_not_checked() {
    let w = ok("on:\n  events: [message.reaction, message.incoming]\nsteps:\n  - log: hi\n");
    assert_eq!(
        w.trigger.events,
        Some(set(&["message.incoming", "message.reaction"]))
    );
}

#[test]
fn unknown_call_kind_in_wait_until() {
    assert_eq!(
        errors(&with_steps("  - wait: { for: 1m, until: [call.acepted] }\n")),
        ["wf.yaml:3:30: unknown call event kind `call.acepted`\n  hint: did you mean `call.accepted`?"]
    );
}

#[test]
fn unknown_source_suggests_the_closest() {
    assert_eq!(
        errors("on:\n  events: [call.missed]\n  sources: [wazap-mx]\nsteps:\n  - log: hi\n"),
        ["wf.yaml:3:13: unknown source `wazap-mx`\n  hint: did you mean `wazzap-mx`?"]
    );
}

#[test]
fn unknown_source_lists_the_configured_ones() {
    assert_eq!(
        errors("on:\n  events: [call.missed]\n  sources: [meta]\nsteps:\n  - log: hi\n"),
        ["wf.yaml:3:13: unknown source `meta`\n  hint: sources in the config: wazzap-mx"]
    );
}

#[test]
fn sources_are_not_checked_when_none_are_known() {
    let w = compile(
        "wf.yaml",
        "stem",
        "on:\n  events: [call.missed]\n  sources: [anything]\nsteps:\n  - log: hi\n",
        &Known::default(),
    )
    .unwrap();
    assert_eq!(w.trigger.sources, Some(set(&["anything"])));
}

#[test]
fn unknown_step_suggests_the_closest() {
    assert_eq!(
        errors(&with_steps(
            "  - send_mesage: { via: whatsapp, to: x, text: hi }\n"
        )),
        ["wf.yaml:3:5: unknown step `send_mesage`\n  hint: did you mean `send_message`?"]
    );
}

#[test]
fn unknown_step_lists_the_steps_when_nothing_is_close() {
    assert_eq!(
        errors(&with_steps("  - shout: hi\n")),
        ["wf.yaml:3:5: unknown step `shout`\n  hint: steps are: find_contact, create_contact, update_contact, upsert_contact, tag, send_message, alert, forward, http, debounce, count, wait, set, if, log, stop"]
    );
}

#[test]
fn a_step_with_two_actions() {
    assert_eq!(
        errors(&with_steps(
            "  - log: hi\n    tag: { phone: x, add: [a] }\n"
        )),
        ["wf.yaml:4:10: a step does one thing: found both `log` and `tag`\n  hint: split them into two steps"]
    );
}

#[test]
fn a_step_with_one_action_and_an_unknown_key() {
    assert_eq!(
        errors(&with_steps("  - log: hi\n    colour: red\n")),
        ["wf.yaml:4:5: unknown step `colour`\n  hint: steps are: find_contact, create_contact, update_contact, upsert_contact, tag, send_message, alert, forward, http, debounce, count, wait, set, if, log, stop"]
    );
}

#[test]
fn a_step_with_no_action() {
    assert_eq!(
        errors(&with_steps("  - id: x\n    when: \"{{event.video}}\"\n")),
        ["wf.yaml:3:5: this step does nothing\n  hint: add one of: find_contact, create_contact, update_contact, upsert_contact, tag, send_message, alert, forward, http, debounce, count, wait, set, if, log, stop"]
    );
}

#[test]
fn a_step_that_is_not_a_mapping() {
    assert_eq!(
        errors(&with_steps("  - hello\n")),
        ["wf.yaml:3:5: a step must be a mapping, got a string\n  hint: e.g. - tag: { phone: \"{{event.caller}}\", add: [lead] }"]
    );
}

#[test]
fn an_unknown_argument_of_a_step() {
    assert_eq!(
        errors(&with_steps("  - alert: { via: slack, txt: hi }\n")),
        [
            "wf.yaml:3:12: `alert` needs `text`",
            "wf.yaml:3:26: unknown key `txt`\n  hint: did you mean `text`?",
        ]
    );
}

#[test]
fn missing_phone() {
    assert_eq!(
        errors(&with_steps(
            "  - find_contact: {}\n  - create_contact: { name: x }\n  - update_contact: { name: x }\n  - upsert_contact: { name: x }\n  - tag: { add: [a] }\n"
        )),
        [
            "wf.yaml:3:19: `find_contact` needs `phone`",
            "wf.yaml:4:21: `create_contact` needs `phone`",
            "wf.yaml:5:21: `update_contact` needs `phone`",
            "wf.yaml:6:21: `upsert_contact` needs `phone`",
            "wf.yaml:7:10: `tag` needs `phone`",
        ]
    );
}

#[test]
fn missing_via() {
    assert_eq!(
        errors(&with_steps("  - alert: { text: hi }\n  - forward: {}\n")),
        [
            "wf.yaml:3:12: `via` is required: which connector to use\n  hint: name a connector from `connectors:` in ringback.yaml",
            "wf.yaml:4:14: `via` is required: which connector to use\n  hint: name a connector from `connectors:` in ringback.yaml",
        ]
    );
}

#[test]
fn missing_to() {
    assert_eq!(
        errors(&with_steps(
            "  - send_message: { via: whatsapp, text: hi }\n"
        )),
        ["wf.yaml:3:19: `send_message` needs `to`"]
    );
}

#[test]
fn missing_text() {
    assert_eq!(
        errors(&with_steps(
            "  - send_message: { via: whatsapp, to: x }\n  - alert: { via: slack }\n"
        )),
        [
            "wf.yaml:3:19: `send_message` needs `text` (or a `template`)\n  hint: e.g. text: \"Sorry we missed your call\"",
            "wf.yaml:4:12: `alert` needs `text`",
        ]
    );
}

#[test]
fn missing_template_name() {
    assert_eq!(
        errors(&with_steps(
            "  - send_message: { via: whatsapp, to: x, template: { language: es } }\n"
        )),
        ["wf.yaml:3:53: `template` needs `name`"]
    );
}

#[test]
fn missing_key() {
    assert_eq!(
        errors(&with_steps(
            "  - debounce: { for: 2m }\n  - count: { within: 10m }\n"
        )),
        [
            "wf.yaml:3:15: `debounce` needs `key`",
            "wf.yaml:4:12: `count` needs `key`",
        ]
    );
}

#[test]
fn missing_for() {
    assert_eq!(
        errors(&with_steps(
            "  - debounce: { key: k }\n  - wait: { until: [call.accepted] }\n"
        )),
        [
            "wf.yaml:3:15: `debounce` needs `for`",
            "wf.yaml:4:11: `wait` needs `for`",
        ]
    );
}

#[test]
fn missing_within() {
    assert_eq!(
        errors(&with_steps("  - count: { key: k }\n")),
        ["wf.yaml:3:12: `count` needs `within`"]
    );
}

#[test]
fn missing_url() {
    assert_eq!(
        errors(&with_steps("  - http: { method: GET }\n")),
        ["wf.yaml:3:11: `http` needs `url`"]
    );
}

#[test]
fn tag_needs_add_or_remove() {
    assert_eq!(
        errors(&with_steps("  - tag: { phone: x }\n")),
        ["wf.yaml:3:10: `tag` needs `add` or `remove`\n  hint: e.g. tag: { phone: \"{{event.caller}}\", add: [lead] }"]
    );
}

#[test]
fn both_text_and_template() {
    assert_eq!(
        errors(&with_steps(
            "  - send_message: { via: whatsapp, to: x, text: hi, template: { name: t } }\n"
        )),
        ["wf.yaml:3:19: `send_message` takes `text` or `template`, not both"]
    );
}

#[test]
fn unknown_connector_suggests_the_closest() {
    assert_eq!(
        errors(&with_steps("  - alert: { via: slak, text: hi }\n")),
        ["wf.yaml:3:19: unknown connector `slak`\n  hint: did you mean `slack`?"]
    );
}

#[test]
fn unknown_connector_lists_the_configured_ones() {
    assert_eq!(
        errors(&with_steps("  - forward: { via: teams }\n")),
        ["wf.yaml:3:21: unknown connector `teams`\n  hint: connectors in the config: slack, whatsapp"]
    );
}

#[test]
fn unknown_connector_when_none_are_configured() {
    assert_eq!(
        errors_with(
            &with_steps("  - forward: { via: slack }\n"),
            &Known::default()
        ),
        ["wf.yaml:3:21: unknown connector `slack`\n  hint: no connectors are configured in ringback.yaml"]
    );
}

#[test]
fn via_that_is_not_a_name() {
    assert_eq!(
        errors(&with_steps("  - forward: { via: [slack] }\n")),
        ["wf.yaml:3:21: `via` must be a connector name, got a list"]
    );
}

#[test]
fn bad_duration_text() {
    assert_eq!(
        errors(&with_steps("  - debounce: { key: k, for: 2 minutes }\n")),
        ["wf.yaml:3:30: `2 minutes` is not a duration (write a whole number and a unit: 250ms, 90s, 2m, 1h, 7d)"]
    );
}

#[test]
fn a_duration_that_is_not_a_string() {
    assert_eq!(
        errors(&with_steps("  - wait: { for: 120 }\n")),
        ["wf.yaml:3:18: expected a duration, got a number\n  hint: write a number with a unit: 250ms, 90s, 2m, 1h, 7d"]
    );
}

#[test]
fn bad_retry_schedule() {
    assert_eq!(
        errors(&with_steps(
            "  - alert: { via: slack, text: hi }\n    retry: { schedule: [5s, soon] }\n"
        )),
        ["wf.yaml:4:29: `soon` is not a duration (write a whole number and a unit: 250ms, 90s, 2m, 1h, 7d)"]
    );
}

#[test]
fn a_template_that_does_not_compile() {
    let errs = errors(&with_steps("  - log: \"{{#if x}}\"\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "wf.yaml:3:10: template error at template line 1, column 10: invalid handlebars syntax"
        ),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].ends_with(
            "\n  hint: templates are Handlebars: {{event.caller}}, {{#if contact.name}}…{{/if}}"
        ),
        "{}",
        errs[0]
    );
}

/// A misspelled helper would fail every run (in `on.when`: silently never
/// run); a misspelled event field would render empty (a debounce key then
/// groups every caller). Both are found when the file loads, where written.
#[test]
fn unknown_helpers_and_event_fields_are_errors_where_written() {
    let errs = errors(
        "on:\n  events: [call.missed]\n  when: \"{{eqq event.direction 'incoming'}}\"\nsteps:\n  \
         - debounce: { key: \"{{event.calller}}\", for: 2m }\n  - log: \"{{lowr event.name}}\"\n",
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with("wf.yaml:3:9: unknown helper `eqq` (helpers: lower, upper,"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with(
            "wf.yaml:5:22: unknown event field `calller` in `event.calller` (fields: id, kind,"
        ),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].starts_with("wf.yaml:6:10: unknown helper `lowr`"),
        "{}",
        errs[2]
    );
}

#[test]
fn a_trigger_condition_that_does_not_compile() {
    let errs = errors("on:\n  events: [call.missed]\n  when: \"{{#if}}\"\nsteps:\n  - log: hi\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("wf.yaml:3:9: template error at template line 1, column 8: "),
        "{}",
        errs[0]
    );
}

#[test]
fn a_reference_to_a_step_that_runs_later() {
    assert_eq!(
        errors(&with_steps(
            "  - log: \"{{steps.who.contact.name}}\"\n  - id: who\n    find_contact: { phone: x }\n"
        )),
        ["wf.yaml:3:10: `steps.who` refers to a step that runs later\n  hint: a step can only use the output of steps before it"]
    );
}

#[test]
fn a_reference_to_no_step_suggests_a_close_id() {
    assert_eq!(
        errors(&with_steps(
            "  - id: who\n    find_contact: { phone: x }\n  - log: \"{{steps.woh.found}}\"\n"
        )),
        ["wf.yaml:5:10: `steps.woh`: no step has id `woh`\n  hint: did you mean `steps.who`?"]
    );
}

#[test]
fn a_reference_to_no_step_lists_the_ids_before_it() {
    assert_eq!(
        errors(&with_steps(
            "  - id: who\n    find_contact: { phone: x }\n  - log: \"{{steps.nope.found}}\"\n"
        )),
        ["wf.yaml:5:10: `steps.nope`: no step has id `nope`\n  hint: step ids defined before this point: who"]
    );
}

#[test]
fn a_reference_when_no_step_has_an_id() {
    assert_eq!(
        errors(&with_steps("  - log: \"{{steps.nope.x}}\"\n")),
        ["wf.yaml:3:10: `steps.nope`: no step has id `nope`\n  hint: give the step an `id:` to use its output"]
    );
}

#[test]
fn references_are_checked_in_every_template_place() {
    // http headers, json leaves, set values, conditions.
    assert_eq!(
        errors(&with_steps(
            r#"  - http: { url: "https://x", headers: { A: "{{steps.a.x}}" }, json: { b: "{{steps.b.x}}" } }
  - set: { v: "{{steps.c.x}}" }
  - log: hi
    when: "{{steps.d.x}}"
"#
        )),
        [
            "wf.yaml:3:45: `steps.a`: no step has id `a`\n  hint: give the step an `id:` to use its output",
            "wf.yaml:3:75: `steps.b`: no step has id `b`\n  hint: give the step an `id:` to use its output",
            "wf.yaml:4:15: `steps.c`: no step has id `c`\n  hint: give the step an `id:` to use its output",
            "wf.yaml:6:11: `steps.d`: no step has id `d`\n  hint: give the step an `id:` to use its output",
        ]
    );
}

#[test]
fn a_step_cannot_use_its_own_output() {
    assert_eq!(
        errors(&with_steps("  - id: me\n    log: \"{{steps.me.x}}\"\n")),
        ["wf.yaml:4:10: `steps.me` refers to a step that runs later\n  hint: a step can only use the output of steps before it"]
    );
}

#[test]
fn an_if_branch_may_use_earlier_steps_and_its_own_earlier_siblings() {
    let w = ok(&with_steps(
        r#"  - id: who
    find_contact: { phone: x }
  - if: "{{steps.who.found}}"
    then:
      - id: n
        count: { key: k, within: 1m }
      - log: "{{steps.n.count}} {{steps.who.found}}"
  - log: "{{steps.who.found}}"
"#,
    ));
    assert_eq!(step_at(&w.steps, "1.then.1").action.kind(), "log");
}

#[test]
fn duplicate_step_ids() {
    assert_eq!(
        errors(&with_steps(
            "  - id: a\n    log: x\n  - id: a\n    log: y\n"
        )),
        ["wf.yaml:5:9: step id `a` is used twice"]
    );
}

#[test]
fn a_step_id_with_bad_characters() {
    assert_eq!(
        errors(&with_steps(
            "  - id: \"b c\"\n    log: x\n  - id: a.b\n    log: y\n"
        )),
        [
            "wf.yaml:3:9: step id `b c` is not a plain name\n  hint: use letters, digits, `_` and `-`",
            "wf.yaml:5:9: step id `a.b` is not a plain name\n  hint: use letters, digits, `_` and `-`",
        ]
    );
}

#[test]
fn a_step_id_that_is_not_a_string() {
    assert_eq!(
        errors(&with_steps("  - id: [a]\n    log: x\n")),
        ["wf.yaml:3:9: `id` must be a name, got a list"]
    );
}

#[test]
fn retry_on_a_step_that_does_not_reach_outside() {
    assert_eq!(
        errors(&with_steps(
            "  - log: x\n    retry: { schedule: [5s] }\n"
        )),
        ["wf.yaml:4:5: `retry` applies to steps that reach outside (send_message, alert, forward, http), not `log`\n  hint: remove it"]
    );
}

#[test]
fn retry_that_is_not_a_mapping() {
    assert_eq!(
        errors(&with_steps(
            "  - alert: { via: slack, text: hi }\n    retry: [5s]\n"
        )),
        ["wf.yaml:4:12: retry must be a mapping, got a list"]
    );
}

#[test]
fn bad_on_error() {
    assert_eq!(
        errors(&with_steps("  - log: x\n    on_error: ignore\n")),
        ["wf.yaml:4:15: on_error must be `fail` or `continue`, got \"ignore\"\n  hint: continue: record the error and go on with the next step"]
    );
}

#[test]
fn then_without_if() {
    assert_eq!(
        errors(&with_steps(
            "  - log: x\n    then: [ { log: y } ]\n    else: [ { log: z } ]\n"
        )),
        [
            "wf.yaml:4:11: `then` belongs to an `if` step\n  hint: write - if: \"{{…}}\" with then: and else: beside it",
            "wf.yaml:5:11: `else` belongs to an `if` step\n  hint: write - if: \"{{…}}\" with then: and else: beside it",
        ]
    );
}

#[test]
fn if_without_then() {
    assert_eq!(
        errors(&with_steps("  - if: \"{{event.video}}\"\n")),
        ["wf.yaml:3:5: `if` needs `then`\n  hint: the steps to run when the condition holds"]
    );
}

#[test]
fn errors_inside_branches_point_into_the_branch() {
    assert_eq!(
        errors(&with_steps(
            "  - if: \"{{event.video}}\"\n    then:\n      - log: x\n    else:\n      - alert: { via: slak, text: hi }\n"
        )),
        ["wf.yaml:7:23: unknown connector `slak`\n  hint: did you mean `slack`?"]
    );
}

#[test]
fn an_unquoted_phone_in_to() {
    assert_eq!(
        errors(&with_steps(
            "  - send_message: { via: whatsapp, to: +5215500000000, text: hi }\n"
        )),
        ["wf.yaml:3:40: expected text, got the number 5215500000000\n  hint: quote it; a phone written unquoted (+5215500000000) reads as a number and loses its +"]
    );
}

#[test]
fn an_unquoted_phone_in_on_business() {
    assert_eq!(
        errors("on:\n  events: [call.missed]\n  business: [+5215500000000]\nsteps:\n  - log: hi\n"),
        ["wf.yaml:3:14: expected a string, got the number 5215500000000\n  hint: quote it: \"+5215500000000\" (YAML reads an unquoted +number as a number and drops the +)"]
    );
}

#[test]
fn invalid_yaml_says_where() {
    assert_eq!(
        errors("on: { events: [call.missed]\nsteps:\n  - log: hi\n"),
        ["wf.yaml:2:1: invalid YAML: did not find expected ',' or '}'\n  hint: check indentation and quoting around this point"]
    );
}

#[test]
fn bad_indentation_says_where() {
    assert_eq!(
        errors(&with_steps("  - log: hi\n   bad: x\n")),
        ["wf.yaml:4:4: invalid YAML: did not find expected '-' indicator\n  hint: check indentation and quoting around this point"]
    );
}

#[test]
fn a_duplicate_key_is_a_yaml_error() {
    assert_eq!(
        errors(&with_steps("  - log: a\n    log: b\n")),
        ["wf.yaml:4:5: invalid YAML: steps[0]: duplicate entry with key \"log\"\n  hint: check indentation and quoting around this point"]
    );
}

#[test]
fn a_file_that_is_a_list() {
    assert_eq!(
        errors("- log: hi\n"),
        ["wf.yaml:1:1: a workflow file must be a mapping, got a list"]
    );
}

#[test]
fn an_empty_file() {
    assert_eq!(
        errors(""),
        ["wf.yaml:1:1: a workflow file must be a mapping, got null"]
    );
}

#[test]
fn set_that_is_not_a_mapping() {
    assert_eq!(
        errors(&with_steps("  - set: [a, b]\n")),
        ["wf.yaml:3:10: `set` must be a mapping of names to values, got a list\n  hint: e.g. set: { greeting: \"Hi {{contact.name}}\" }"]
    );
}

#[test]
fn empty_set() {
    assert_eq!(
        errors(&with_steps("  - set: {}\n")),
        ["wf.yaml:3:10: `set` is empty"]
    );
}

#[test]
fn unknown_http_method() {
    assert_eq!(
        errors(&with_steps(
            "  - http: { method: FETCH, url: \"https://x\" }\n"
        )),
        ["wf.yaml:3:21: unknown HTTP method `FETCH` (GET, POST, PUT, PATCH or DELETE)"]
    );
}

#[test]
fn url_that_is_not_http() {
    assert_eq!(
        errors(&with_steps("  - http: { url: \"ftp://x\" }\n")),
        ["wf.yaml:3:18: url `ftp://x` must start with http:// or https://"]
    );
}

#[test]
fn a_json_leaf_that_does_not_compile() {
    let errs = errors(&with_steps(
        "  - http: { url: \"https://x\", json: { a: \"{{#if}}\" } }\n",
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("wf.yaml:3:42: template error at template line 1, column 8: "),
        "{}",
        errs[0]
    );
}

// ---------------------------------------------------------------------------
// Every error at once
// ---------------------------------------------------------------------------

#[test]
fn several_errors_are_reported_together_sorted_by_position() {
    // `bogus` is found first (top-level keys are read before `on` and
    // `steps`) but is last in the file, so it is reported last.
    let text = r#"name: x
on:
  events: [call.mised]
steps:
  - send_mesage: {}
  - alert: { via: slak, text: "{{steps.nope.x}}" }
  - debounce: { key: k, for: soon }
bogus: 1
"#;
    assert_eq!(
        errors(text),
        [
            "wf.yaml:3:12: unknown call event kind `call.mised`\n  hint: did you mean `call.missed`?",
            "wf.yaml:5:5: unknown step `send_mesage`\n  hint: did you mean `send_message`?",
            "wf.yaml:6:19: unknown connector `slak`\n  hint: did you mean `slack`?",
            "wf.yaml:6:31: `steps.nope`: no step has id `nope`\n  hint: give the step an `id:` to use its output",
            "wf.yaml:7:30: `soon` is not a duration (write a whole number and a unit: 250ms, 90s, 2m, 1h, 7d)",
            "wf.yaml:8:1: unknown key `bogus`\n  hint: known keys here: description, name, on, steps",
        ]
    );
}

#[test]
fn diagnostics_carry_the_file_name_given() {
    let errs = compile(
        "workflows/follow-up.yaml",
        "follow-up",
        "steps: [ { log: x } ]\n",
        &known(),
    )
    .unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].file, "workflows/follow-up.yaml");
    assert_eq!(errs[0].pos, crate::yaml::Pos { line: 1, col: 1 });
    assert_eq!(errs[0].message, "a workflow needs `on`");
    assert_eq!(
        errs[0].hint.as_deref(),
        Some("e.g. on: { events: [call.missed] }")
    );
}

// ---------------------------------------------------------------------------
// Bugs found while writing these tests (ignored until parse.rs is fixed)
// ---------------------------------------------------------------------------

#[test]

fn on_that_is_not_a_mapping_is_reported_not_a_panic() {
    assert_eq!(
        errors("on: call.missed\nsteps:\n  - log: hi\n"),
        ["wf.yaml:1:5: `on` must be a mapping, got a string"]
    );
}

#[test]

fn step_arguments_that_are_not_a_mapping_are_reported() {
    assert_eq!(
        errors(&with_steps("  - forward: slack\n  - log: after\n")),
        ["wf.yaml:3:14: `forward` must be a mapping, got a string"]
    );
    assert_eq!(
        errors(&with_steps(
            "  - send_message: { via: whatsapp, to: x, template: hello }\n"
        )),
        ["wf.yaml:3:53: `template` must be a mapping, got a string"]
    );
}

#[test]

fn null_text_in_send_message_is_reported() {
    assert_eq!(
        errors(&with_steps(
            "  - send_message: { via: whatsapp, to: x, text: }\n"
        )),
        ["wf.yaml:3:19: `send_message` needs `text` (or a `template`)\n  hint: e.g. text: \"Sorry we missed your call\""]
    );
}

#[test]

fn tag_with_null_add_is_reported() {
    assert_eq!(
        errors(&with_steps("  - tag: { phone: x, add: }\n")),
        ["wf.yaml:3:10: `tag` needs `add` or `remove`\n  hint: e.g. tag: { phone: \"{{event.caller}}\", add: [lead] }"]
    );
}

#[test]

fn unknown_event_kind_error_points_at_its_own_item() {
    assert_eq!(
        errors("on:\n  events: [call.missed, call.mised]\nsteps:\n  - log: hi\n"),
        ["wf.yaml:2:25: unknown call event kind `call.mised`\n  hint: did you mean `call.missed`?"]
    );
}

#[test]

fn unknown_source_errors_point_at_their_own_items() {
    assert_eq!(
        errors("on:\n  events: [call.missed]\n  sources: [wazap-mx, other]\nsteps:\n  - log: hi\n"),
        [
            "wf.yaml:3:13: unknown source `wazap-mx`\n  hint: did you mean `wazzap-mx`?",
            "wf.yaml:3:23: unknown source `other`\n  hint: sources in the config: wazzap-mx",
        ]
    );
}

#[test]

fn two_step_kinds_next_to_an_unknown_key_are_named_correctly() {
    let errs = errors(&with_steps(
        "  - foo: 1\n    log: hi\n    tag: { phone: x, add: [a] }\n",
    ));
    assert!(
        errs.contains(&"wf.yaml:5:10: a step does one thing: found both `log` and `tag`\n  hint: split them into two steps".to_string()),
        "{errs:?}"
    );
}

#[test]

fn an_if_step_and_its_nested_step_cannot_share_an_id() {
    let errs = errors(&with_steps(
        "  - id: x\n    if: \"{{event.video}}\"\n    then:\n      - id: x\n        log: y\n",
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].ends_with("step id `x` is used twice"), "{errs:?}");
}

#[test]

fn an_unquoted_single_business_number_hints_to_quote_it() {
    let errs =
        errors("on:\n  events: [call.missed]\n  business: +5215500000000\nsteps:\n  - log: hi\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("wf.yaml:3:13: "), "{errs:?}");
    assert!(errs[0].contains("quote it: \"+5215500000000\""), "{errs:?}");
}

#[test]

fn a_misspelt_step_setting_suggests_it() {
    let errs = errors(&with_steps("  - log: x\n    on_eror: continue\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("wf.yaml:4:5: "), "{errs:?}");
    assert!(errs[0].contains("did you mean `on_error`?"), "{errs:?}");
}

#[test]
fn an_empty_wait_until_does_not_say_the_workflow_never_runs() {
    match compile(
        "wf.yaml",
        "stem",
        &with_steps("  - wait: { for: 1m, until: [] }\n"),
        &known(),
    ) {
        Ok(w) => {
            let Action::Wait { until, .. } = &w.steps[0].action else {
                panic!("a wait step");
            };
            assert!(until.is_empty());
        }
        Err(errs) => {
            for e in errs {
                assert!(!e.message.contains("would never run"), "{e}");
            }
        }
    }
}

#[test]

fn else_cannot_use_the_output_of_then() {
    let errs = errors(&with_steps(
        r#"  - if: "{{event.video}}"
    then:
      - id: t
        log: y
    else:
      - log: "{{steps.t.x}}"
"#,
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("wf.yaml:8:14: `steps.t`"), "{errs:?}");
}

#[test]

fn contains_in_a_subexpression_is_false_when_absent() {
    let w = ok(&with_steps(
        r#"  - log: "{{#if (contains contact.tags 'vip')}}VIP{{else}}regular{{/if}}"
    when: "{{and (contains contact.tags 'vip') (eq event.kind 'call.missed')}}"
"#,
    ));
    let Action::Log { text } = &w.steps[0].action else {
        panic!("a log step");
    };
    let when = w.steps[0].when.as_ref().unwrap();
    let regular = json!({"event": {"kind": "call.missed"}, "contact": {"tags": ["lead"]}});
    let d = RenderData::new(&regular);
    assert_eq!(w.templates.render(text, &d).unwrap(), "regular");
    assert!(!w.templates.truthy(when, &d).unwrap());

    let vip = json!({"event": {"kind": "call.missed"}, "contact": {"tags": ["vip"]}});
    let d = RenderData::new(&vip);
    assert_eq!(w.templates.render(text, &d).unwrap(), "VIP");
    assert!(w.templates.truthy(when, &d).unwrap());
}
