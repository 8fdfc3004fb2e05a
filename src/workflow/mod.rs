//! Workflows: what a YAML file says ([`parse`]) compiled into a checked
//! [`Workflow`] the engine can run without further validation.
//!
//! This module is pure: it reads text and returns values or diagnostics
//! (each with `file:line:col` and a hint). It never touches the disk, the
//! network or the store; loading a folder is `reload`'s job.
//!
//! Compilation checks everything that can be checked before a run: unknown
//! keys and steps, missing fields, durations, connector and source names,
//! templates (compiled once, here), and `steps.<id>` references, which must
//! name a step that runs earlier.

pub mod language;
mod parse;
pub mod template;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

pub use parse::{compile, Known};
pub use template::{JsonTemplate, RenderData, Template, Templates};

/// A compiled workflow, one version of one file.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    pub file: String,
    /// Hash of the file's text: runs record which version they ran.
    pub version: String,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
    pub templates: Templates,
    /// The file's text: runs keep the version they started with, across
    /// restarts and reloads, by storing it.
    pub source: std::sync::Arc<str>,
}

/// When a workflow runs.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Event kinds; `None` means every kind (`"*"`).
    pub events: Option<BTreeSet<String>>,
    pub sources: Option<BTreeSet<String>>,
    /// Business numbers (E.164) or ids.
    pub business: Option<BTreeSet<String>>,
    pub when: Option<Template>,
}

impl Trigger {
    /// The filters that need no rendering.
    pub fn matches(&self, kind: &str, source: &str, business: Option<&str>) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(kind))
            && self.sources.as_ref().is_none_or(|s| s.contains(source))
            && self
                .business
                .as_ref()
                .is_none_or(|b| business.is_some_and(|biz| b.contains(biz)))
    }

    pub fn event_names(&self) -> Vec<String> {
        match &self.events {
            None => vec!["*".to_string()],
            Some(set) => set.iter().cloned().collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    Fail,
    Continue,
}

/// One step, with the settings every step may have.
#[derive(Debug, Clone)]
pub struct Step {
    /// Position in the workflow, e.g. `2` or `3.then.0`; part of the
    /// idempotency key of outbound requests, so it must be stable.
    pub path: String,
    pub id: Option<String>,
    pub when: Option<Template>,
    pub retry: Option<Vec<Duration>>,
    pub on_error: OnError,
    pub action: Action,
}

impl Step {
    /// How people name the step: its `id`, else its kind.
    pub fn label(&self) -> &str {
        self.id.as_deref().unwrap_or_else(|| self.action.kind())
    }
}

/// The step at `path` (`3`, `3.then.0`, ...) among `steps` and their
/// branches.
pub fn step_at<'a>(steps: &'a [Step], path: &str) -> Option<&'a Step> {
    for step in steps {
        if step.path == path {
            return Some(step);
        }
        if let Action::If {
            then, otherwise, ..
        } = &step.action
        {
            if let Some(found) = step_at(then, path).or_else(|| step_at(otherwise, path)) {
                return Some(found);
            }
        }
    }
    None
}

/// The body of a `send_message`.
#[derive(Debug, Clone)]
pub enum MessageBody {
    Text(Template),
    Template {
        name: Template,
        language: Template,
        params: Vec<Template>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// What a step does (SPEC §5).
#[derive(Debug, Clone)]
pub enum Action {
    FindContact {
        phone: Template,
    },
    CreateContact {
        phone: Template,
        name: Option<Template>,
        country: Option<Template>,
        fields: Vec<(String, Template)>,
        tags: Vec<Template>,
    },
    UpdateContact {
        phone: Template,
        name: Option<Template>,
        country: Option<Template>,
        set: Vec<(String, Template)>,
        unset: Vec<String>,
    },
    UpsertContact {
        phone: Template,
        name: Option<Template>,
        country: Option<Template>,
        set: Vec<(String, Template)>,
    },
    Tag {
        phone: Template,
        add: Vec<Template>,
        remove: Vec<Template>,
    },
    SendMessage {
        via: String,
        to: Template,
        body: MessageBody,
    },
    Alert {
        via: String,
        text: Template,
    },
    Forward {
        via: String,
    },
    Http {
        method: HttpMethod,
        url: Template,
        headers: Vec<(String, Template)>,
        json: Option<JsonTemplate>,
    },
    Debounce {
        key: Template,
        window: Duration,
    },
    Count {
        key: Template,
        within: Duration,
    },
    Wait {
        duration: Duration,
        until: Vec<String>,
    },
    Set {
        vars: Vec<(String, JsonTemplate)>,
    },
    If {
        condition: Template,
        then: Vec<Step>,
        otherwise: Vec<Step>,
    },
    Log {
        text: Template,
    },
    Stop {
        reason: Template,
    },
}

impl Action {
    /// The step's keyword in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::FindContact { .. } => "find_contact",
            Action::CreateContact { .. } => "create_contact",
            Action::UpdateContact { .. } => "update_contact",
            Action::UpsertContact { .. } => "upsert_contact",
            Action::Tag { .. } => "tag",
            Action::SendMessage { .. } => "send_message",
            Action::Alert { .. } => "alert",
            Action::Forward { .. } => "forward",
            Action::Http { .. } => "http",
            Action::Debounce { .. } => "debounce",
            Action::Count { .. } => "count",
            Action::Wait { .. } => "wait",
            Action::Set { .. } => "set",
            Action::If { .. } => "if",
            Action::Log { .. } => "log",
            Action::Stop { .. } => "stop",
        }
    }

    /// Steps that change a contact in the store.
    pub fn writes_contact(&self) -> bool {
        matches!(
            self,
            Action::CreateContact { .. }
                | Action::UpdateContact { .. }
                | Action::UpsertContact { .. }
                | Action::Tag { .. }
        )
    }

    /// Steps that reach outside ringback (may take `retry`).
    pub fn is_outbound(&self) -> bool {
        matches!(
            self,
            Action::SendMessage { .. }
                | Action::Alert { .. }
                | Action::Forward { .. }
                | Action::Http { .. }
        )
    }
}

/// Every step keyword, for suggestions.
pub fn step_kind_names() -> Vec<&'static str> {
    language::STEPS.iter().map(|k| k.name).collect()
}

/// A problem with one workflow file, as `ringback check`, the log and
/// `GET /api/workflows` show it.
#[derive(Debug, Clone, Serialize)]
pub struct FileProblem {
    pub file: String,
    /// `file:line:col: message` lines, with hints.
    pub errors: Vec<String>,
    /// Whether an older, valid version of this file is still running.
    pub kept_previous: bool,
}

/// The loaded workflows: what the engine runs, and what could not load.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub workflows: Vec<std::sync::Arc<Workflow>>,
    pub problems: Vec<FileProblem>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&std::sync::Arc<Workflow>> {
        self.workflows.iter().find(|w| w.name == name)
    }
}

/// The catalog shared between the reloader (writer) and the engine and API
/// (readers). Readers take a snapshot per event.
pub type SharedCatalog = std::sync::Arc<std::sync::RwLock<std::sync::Arc<Catalog>>>;
