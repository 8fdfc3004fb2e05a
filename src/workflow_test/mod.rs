//! Workflow tests (`*.test.yaml`, SPEC §7): a workflow run against given
//! events, starting contacts and canned connector answers, in simulated
//! time, with expectations on what came of it.
//!
//! A test file sits next to the workflow it tests and is named after it
//! (`missed-call-followup.test.yaml` tests `missed-call-followup.yaml`, or
//! the file its `workflow:` names). Each case gets a throwaway store, a
//! [`Rehearsal`](crate::delivery::rehearsal::Rehearsal) instead of the
//! network, and a clock that only moves when the case says so: between
//! events (`after:`) and, after the last one, through every timer still set
//! (waits, retry pauses, ring timeouts), so a ten-minute wait takes
//! milliseconds. The engine is driven to completion after each step of
//! time ([`Engine::settle`](crate::engine::Engine::settle)), which makes a
//! case's outcome deterministic.
//!
//! This module reads the files ([`load`]), [`run`] runs them and
//! [`expect`] compares and explains.

pub mod expect;
mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use crate::config::Config;
use crate::delivery::rehearsal::{Answer, HTTP_STEP};
use crate::event::{self, Event, ParseContext, Provider};
use crate::store::RunStatus;
use crate::yaml::{join_index, suggest, type_name, Diagnostic, Document, Fields};

pub use run::{run_file, CaseReport, FileReport};

/// One `*.test.yaml` file.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// As given, for messages.
    pub file: String,
    /// The workflow file under test.
    pub workflow: PathBuf,
    pub cases: Vec<TestCase>,
}

/// One entry of `tests:`.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub name: String,
    /// Where the case starts in its file (`file:line`), for reports.
    pub at: String,
    /// The simulated time the case starts at (default: the first event's
    /// own time, else [`DEFAULT_START`]).
    pub start: Option<Timestamp>,
    pub contacts: Vec<SeedContact>,
    /// Canned answers by connector name (`http` for `http` steps).
    pub answers: BTreeMap<String, Vec<Answer>>,
    pub events: Vec<TestEvent>,
    /// How much simulated time passes after the last event; `None`: until
    /// no timer is left (at most [`MAX_SETTLE`]).
    pub then: Option<Duration>,
    pub expect: Expect,
}

/// A contact that exists when the case starts.
#[derive(Debug, Clone)]
pub struct SeedContact {
    pub phone: String,
    pub name: Option<String>,
    pub country: Option<String>,
    pub tags: Vec<String>,
    pub fields: BTreeMap<String, String>,
}

/// One delivery of a payload, as if a provider had posted it.
#[derive(Debug, Clone)]
pub struct TestEvent {
    /// The webhook body.
    pub body: Vec<u8>,
    /// Where the body came from, for messages.
    pub origin: String,
    pub provider: Option<Provider>,
    pub source: Option<String>,
    /// Simulated time between the previous event (or the start) and this
    /// one.
    pub after: Duration,
}

/// What a case expects. Mappings are matched as subsets (keys not written
/// are not checked); lists must match item for item.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The status of the one run the case must cause.
    pub status: Option<RunStatus>,
    /// The steps that ran (not skipped) in the one run: labels (a step's
    /// `id`, else its kind) or mappings.
    pub steps: Option<Value>,
    /// Every run, in start order: a count or a list of mappings.
    pub runs: Option<Value>,
    /// Every request that would have been sent, in order.
    pub requests: Option<Value>,
    /// Contacts after the case, by phone (`null`: must not exist).
    pub contacts: BTreeMap<String, Value>,
}

/// Where simulated time starts when neither the case nor its first event
/// says.
pub const DEFAULT_START: &str = "2026-01-01T09:00:00Z";
/// After the last event, timers are followed at most this far ahead.
pub const MAX_SETTLE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The `*.test.yaml` files in `path` (a folder, or one file), sorted.
pub fn find_test_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Read and check one test file. Payload files are read here, relative to
/// the test file, so a missing one is reported with its position.
pub fn load(path: &Path, config: &Config) -> Result<TestFile, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: file.clone(),
            pos: crate::yaml::Pos { line: 1, col: 1 },
            message: format!("cannot read the file: {e}"),
            hint: None,
        }]
    })?;
    let doc = Document::parse(&file, &text).map_err(|d| vec![d])?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut reader = Reader {
        doc: &doc,
        dir,
        config,
        errs: Vec::new(),
    };
    let parsed = reader.file(path);
    if reader.errs.is_empty() {
        Ok(parsed.expect("a test file when there are no errors"))
    } else {
        let mut errs = reader.errs;
        errs.sort_by_key(|d| (d.pos.line, d.pos.col));
        Err(errs)
    }
}

struct Reader<'a> {
    doc: &'a Document,
    dir: &'a Path,
    config: &'a Config,
    errs: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errs.push(self.doc.error(path, message));
    }

    fn fields<'v>(&mut self, path: &str, v: &'v Value, what: &str) -> Option<Fields<'v>>
    where
        Self: 'v,
    {
        let mut errs = Vec::new();
        let f = Fields::new(self.doc, path, v, what, &mut errs);
        self.errs.extend(errs);
        f
    }

    fn finish(&mut self, f: Fields) {
        let mut errs = Vec::new();
        f.finish(&mut errs);
        self.errs.extend(errs);
    }

    fn string(&mut self, f: &mut Fields, key: &'static str) -> Option<String> {
        let mut errs = Vec::new();
        let s = f.string(key, &mut errs);
        self.errs.extend(errs);
        s
    }

    fn duration(&mut self, f: &mut Fields, key: &'static str) -> Option<Duration> {
        let path = f.path_of(key);
        let v = f.get(key)?;
        self.doc
            .duration(&path, v)
            .map_err(|d| self.errs.push(d))
            .ok()
    }

    fn file(&mut self, path: &Path) -> Option<TestFile> {
        let doc = self.doc;
        let mut f = self.fields("", &doc.value, "a test file")?;
        let workflow = self.string(&mut f, "workflow");
        let tests = f.get("tests");
        self.finish(f);
        let workflow = match workflow {
            Some(w) => self.dir.join(w),
            None => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let stem = name
                    .strip_suffix(".test.yaml")
                    .or_else(|| name.strip_suffix(".test.yml"))
                    .unwrap_or(name);
                let yml = self.dir.join(format!("{stem}.yml"));
                if yml.is_file() {
                    yml
                } else {
                    self.dir.join(format!("{stem}.yaml"))
                }
            }
        };
        let cases = match tests {
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    self.err("tests", "the list is empty: no test would run");
                }
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| self.case(&join_index("tests", i), item))
                    .collect()
            }
            Some(other) => {
                self.err(
                    "tests",
                    format!("`tests` must be a list, got {}", type_name(other)),
                );
                Vec::new()
            }
            None => {
                let d = self.doc.error("", "a test file needs `tests`").with_hint(
                    "a list of cases, each with `name`, `event` (or `events`) and `expect`",
                );
                self.errs.push(d);
                Vec::new()
            }
        };
        Some(TestFile {
            file: doc.file.clone(),
            workflow,
            cases,
        })
    }

    fn case(&mut self, path: &str, v: &Value) -> Option<TestCase> {
        let mut f = self.fields(path, v, "a test case")?;
        let name = self.string(&mut f, "name");
        let start = match f.get("start") {
            None => None,
            Some(v) => match v.as_str().map(str::parse::<Timestamp>) {
                Some(Ok(t)) => Some(t),
                _ => {
                    let d = self
                        .doc
                        .error(&f.path_of("start"), "`start` must be a time with a zone")
                        .with_hint("e.g. start: 2026-05-14T14:30:00Z");
                    self.errs.push(d);
                    None
                }
            },
        };
        let contacts = match f.get("contacts") {
            None => Vec::new(),
            Some(v) => self.contacts(&f.path_of("contacts"), v),
        };
        let answers = match f.get("answers") {
            None => BTreeMap::new(),
            Some(v) => self.answers(&f.path_of("answers"), v),
        };
        let event = f.get("event").map(|v| (f.path_of("event"), v));
        let events = f.get("events").map(|v| (f.path_of("events"), v));
        let then = self.duration(&mut f, "then");
        let expect = f.get("expect").map(|v| (f.path_of("expect"), v));
        let here = f.path().to_string();
        self.finish(f);

        let events = match (event, events) {
            (Some((p, v)), None) => self.event(&p, v).into_iter().collect(),
            (None, Some((p, Value::Array(items)))) => {
                if items.is_empty() {
                    self.err(&p, "the list is empty");
                }
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| self.event(&join_index(&p, i), item))
                    .collect()
            }
            (None, Some((p, other))) => {
                self.err(
                    &p,
                    format!("`events` must be a list, got {}", type_name(other)),
                );
                Vec::new()
            }
            (Some(_), Some(_)) => {
                self.err(&here, "give `event` or `events`, not both");
                Vec::new()
            }
            (None, None) => {
                let d = self
                    .doc
                    .error(&here, "a test case needs `event` (or `events`)")
                    .with_hint("e.g. event: { file: ../tests/fixtures/wazzap/call_missed.json }");
                self.errs.push(d);
                Vec::new()
            }
        };
        let expect = match expect {
            Some((p, v)) => self.expect(&p, v),
            None => {
                let d = self
                    .doc
                    .error(&here, "a test case needs `expect`")
                    .with_hint("e.g. expect: { status: succeeded }");
                self.errs.push(d);
                None
            }
        };
        let name = name.unwrap_or_else(|| format!("case {}", path.trim_start_matches("tests")));
        Some(TestCase {
            at: format!("{}:{}", self.doc.file, self.doc.pos(path).line),
            name,
            start,
            contacts,
            answers,
            events,
            then,
            expect: expect?,
        })
    }

    fn contacts(&mut self, path: &str, v: &Value) -> Vec<SeedContact> {
        let Value::Array(items) = v else {
            self.err(
                path,
                format!("`contacts` must be a list, got {}", type_name(v)),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = join_index(path, i);
            let Some(mut f) = self.fields(&p, item, "a contact") else {
                continue;
            };
            let phone_path = f.path_of("phone");
            let has_phone = f.has("phone");
            let phone = self.string(&mut f, "phone");
            let name = self.string(&mut f, "name");
            let country = self.string(&mut f, "country");
            let tags = f.get("tags").map(|v| (f.path_of("tags"), v));
            let fields = f.get("fields").map(|v| (f.path_of("fields"), v));
            self.finish(f);
            let tags = match tags {
                None => Vec::new(),
                Some((tp, Value::Array(list))) => list
                    .iter()
                    .filter_map(|t| match t {
                        Value::String(s) => Some(s.clone()),
                        other => {
                            self.err(&tp, format!("tags are text, got {}", type_name(other)));
                            None
                        }
                    })
                    .collect(),
                Some((tp, other)) => {
                    self.err(
                        &tp,
                        format!("`tags` must be a list, got {}", type_name(other)),
                    );
                    Vec::new()
                }
            };
            let fields = match fields {
                None => BTreeMap::new(),
                Some((_, Value::Object(map))) => map
                    .iter()
                    .map(|(k, v)| {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), text)
                    })
                    .collect(),
                Some((fp, other)) => {
                    self.err(
                        &fp,
                        format!("`fields` must be a mapping, got {}", type_name(other)),
                    );
                    BTreeMap::new()
                }
            };
            let Some(phone) = phone else {
                if !has_phone {
                    self.err(&p, "a contact needs `phone`");
                }
                continue;
            };
            match event::normalise_phone(&phone) {
                Ok(c) if c.is_phone => out.push(SeedContact {
                    phone: c.id,
                    name,
                    country,
                    tags,
                    fields,
                }),
                Ok(_) => self.err(&phone_path, "contacts are keyed by phone number"),
                Err(e) => self.err(&phone_path, format!("phone `{phone}`: {e}")),
            }
        }
        out
    }

    fn answers(&mut self, path: &str, v: &Value) -> BTreeMap<String, Vec<Answer>> {
        let Value::Object(map) = v else {
            let d = self
                .doc
                .error(path, format!("`answers` must be a mapping, got {}", type_name(v)))
                .with_hint("connector name to a list of answers, e.g. whatsapp: [{status: 503}, {status: 200}]");
            self.errs.push(d);
            return BTreeMap::new();
        };
        let mut names: Vec<&str> = self.config.connectors.keys().map(String::as_str).collect();
        names.push(HTTP_STEP);
        let mut out = BTreeMap::new();
        for (name, list) in map {
            let p = format!("{path}.{name}");
            if !names.contains(&name.as_str()) {
                let hint = suggest(
                    name,
                    &names,
                    "connectors in the config, and `http` for http steps",
                );
                let d = self
                    .doc
                    .key_error(&p, format!("unknown connector `{name}`"))
                    .with_hint(hint);
                self.errs.push(d);
                continue;
            }
            let Value::Array(items) = list else {
                self.err(
                    &p,
                    format!("expected a list of answers, got {}", type_name(list)),
                );
                continue;
            };
            let answers = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.answer(&join_index(&p, i), item))
                .collect();
            out.insert(name.clone(), answers);
        }
        out
    }

    fn answer(&mut self, path: &str, v: &Value) -> Option<Answer> {
        let mut f = self.fields(path, v, "an answer")?;
        let status_path = f.path_of("status");
        let status = f.get("status");
        let body = f.get("body").cloned();
        let retry_after = self.duration(&mut f, "retry_after");
        let error = self.string(&mut f, "error");
        self.finish(f);
        match (status, error) {
            (Some(s), None) => match s.as_u64().filter(|n| (100..600).contains(n)) {
                Some(n) => Some(Answer::Status {
                    status: n as u16,
                    body,
                    retry_after,
                }),
                None => {
                    self.err(
                        &status_path,
                        format!("`status` must be an HTTP status (100–599), got {s}"),
                    );
                    None
                }
            },
            (None, Some(e)) => Some(Answer::NetworkError(e)),
            (Some(_), Some(_)) => {
                self.err(
                    path,
                    "an answer has a `status` or an `error` (no answer at all), not both",
                );
                None
            }
            (None, None) => {
                let d = self
                    .doc
                    .error(
                        path,
                        "an answer needs `status` (or `error` for a request that got no answer)",
                    )
                    .with_hint("e.g. {status: 503} or {error: timed out}");
                self.errs.push(d);
                None
            }
        }
    }

    fn event(&mut self, path: &str, v: &Value) -> Option<TestEvent> {
        let mut f = self.fields(path, v, "an event")?;
        let file = self.string(&mut f, "file");
        let file_path = f.path_of("file");
        let payload = f.get("payload").cloned();
        let provider_path = f.path_of("provider");
        let provider = self.string(&mut f, "provider");
        let source_path = f.path_of("source");
        let source = self.string(&mut f, "source");
        let after = self.duration(&mut f, "after").unwrap_or_default();
        self.finish(f);
        let provider = match provider {
            None => None,
            Some(name) => match Provider::parse_name(&name) {
                Some(p) => Some(p),
                None => {
                    let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
                    let d = self
                        .doc
                        .error(&provider_path, format!("unknown provider `{name}`"))
                        .with_hint(format!("one of: {}", names.join(", ")));
                    self.errs.push(d);
                    return None;
                }
            },
        };
        if let Some(s) = &source {
            if self.config.source(s).is_none() {
                let names: Vec<&str> = self.config.sources.keys().map(String::as_str).collect();
                let hint = suggest(s, &names, "sources in the config");
                let d = self
                    .doc
                    .error(&source_path, format!("unknown source `{s}`"))
                    .with_hint(hint);
                self.errs.push(d);
                return None;
            }
        }
        let (body, origin) = match (file, payload) {
            (Some(name), None) => {
                let full = self.dir.join(&name);
                match std::fs::read(&full) {
                    Ok(b) => (b, full.display().to_string()),
                    Err(e) => {
                        self.err(&file_path, format!("cannot read {}: {e}", full.display()));
                        return None;
                    }
                }
            }
            (None, Some(p)) => (
                serde_json::to_vec(&p).expect("JSON serialises"),
                format!("{}:{}", self.doc.file, self.doc.pos(path).line),
            ),
            (Some(_), Some(_)) => {
                self.err(path, "give `file` or `payload`, not both");
                return None;
            }
            (None, None) => {
                let d = self
                    .doc
                    .error(path, "an event needs `payload` (the webhook body, inline) or `file` (a JSON file)")
                    .with_hint("e.g. payload: { event: call.missed, phone: \"+5215512345678\" }");
                self.errs.push(d);
                return None;
            }
        };
        Some(TestEvent {
            body,
            origin,
            provider,
            source,
            after,
        })
    }

    fn expect(&mut self, path: &str, v: &Value) -> Option<Expect> {
        let mut f = self.fields(path, v, "`expect`")?;
        let status_path = f.path_of("status");
        let status = self.string(&mut f, "status");
        let steps = f.get("steps").cloned();
        let runs = f.get("runs").cloned();
        let requests = f.get("requests").cloned();
        let contacts = f.get("contacts").map(|v| (f.path_of("contacts"), v));
        let here = f.path().to_string();
        let present = ["status", "steps", "runs", "requests", "contacts"]
            .iter()
            .any(|k| f.has(k));
        self.finish(f);
        if !present {
            let d = self
                .doc
                .error(&here, "`expect` checks nothing")
                .with_hint("expect any of: status, steps, runs, requests, contacts");
            self.errs.push(d);
        }
        let status = match status {
            None => None,
            Some(s) => match RunStatus::parse(&s) {
                Some(st) => Some(st),
                None => {
                    let names: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                    let hint = suggest(&s, &names, "one of");
                    let d = self
                        .doc
                        .error(&status_path, format!("unknown run status `{s}`"))
                        .with_hint(hint);
                    self.errs.push(d);
                    None
                }
            },
        };
        if (status.is_some() || steps.is_some()) && runs.is_some() {
            self.err(
                &here,
                "`status` and `steps` describe the one run; with `runs`, put them in its entries",
            );
        }
        let mut expected_contacts = BTreeMap::new();
        match contacts {
            None => {}
            Some((cp, Value::Object(map))) => {
                for (phone, want) in map {
                    let key = match event::normalise_phone(phone) {
                        Ok(c) if c.is_phone => c.id,
                        _ => {
                            let d = self
                                .doc
                                .key_error(
                                    &format!("{cp}.{phone}"),
                                    format!("`{phone}` is not a phone number"),
                                )
                                .with_hint(
                                    "contacts are keyed by phone, e.g. \"+5215512345678\" (quoted)",
                                );
                            self.errs.push(d);
                            continue;
                        }
                    };
                    expected_contacts.insert(key, want.clone());
                }
            }
            Some((cp, other)) => {
                let d = self
                    .doc
                    .error(
                        &cp,
                        format!(
                            "`contacts` must be a mapping of phone to contact, got {}",
                            type_name(other)
                        ),
                    )
                    .with_hint("e.g. contacts: { \"+5215512345678\": { tags: [lead] } }");
                self.errs.push(d);
            }
        }
        Some(Expect {
            status,
            steps,
            runs,
            requests,
            contacts: expected_contacts,
        })
    }
}

/// Parse a webhook body as the source it would come in on would: the named
/// source (its provider and business number), else the first configured
/// source of the payload's provider, else `fallback_source` with no
/// configuration. Shared by `ringback run` and `ringback test`.
pub fn parse_as_received(
    body: &[u8],
    provider: Option<Provider>,
    source: Option<&str>,
    config: &Config,
    received_at: Timestamp,
    fallback_source: &str,
) -> Result<Vec<Event>, String> {
    let parse = |source: &str, provider: Provider, business: Option<&str>| {
        event::parse(
            body,
            &ParseContext {
                source,
                provider,
                business,
                received_at,
                delivery_id: None,
            },
        )
        .map_err(|e| e.to_string())
    };
    let (source, provider) = match source {
        Some(id) => match config.source(id) {
            Some(s) => (id.to_string(), provider.unwrap_or(s.provider)),
            None => (id.to_string(), provider.unwrap_or(Provider::Auto)),
        },
        None => {
            // Which provider's shape is it? Then the source that takes it.
            let detected =
                parse(fallback_source, provider.unwrap_or(Provider::Auto), None)?[0].provider;
            let source = config
                .sources
                .values()
                .find(|s| s.provider == detected)
                .or_else(|| {
                    config
                        .sources
                        .values()
                        .find(|s| s.provider == Provider::Auto)
                })
                .map(|s| s.id.clone())
                .unwrap_or_else(|| fallback_source.to_string());
            (source, detected)
        }
    };
    let business = config.source(&source).and_then(|s| s.business.clone());
    parse(&source, provider, business.as_deref())
}
