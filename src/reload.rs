//! Loading the workflows folder, and hot reload of it and of the config.
//!
//! Reload is a poll of file fingerprints (path, size, modification time)
//! every [`POLL_EVERY`]: it sees every way an editor saves (in place, or
//! write-a-temp-file-and-rename), needs no platform watcher and is live
//! well within the promised second. A change reloads everything; each file
//! that fails validation keeps its last good version running, with its
//! errors listed in the catalog (`GET /api/workflows`, the log). A deleted
//! file's workflow stops taking events. The config reloads the same way:
//! sources and connectors swap in, `listen` and `data_dir` need a restart.
//!
//! Swapping is one pointer write behind a lock: an event that already
//! picked its workflows keeps the versions it picked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::{Config, Overrides, ProcessEnv};
use crate::delivery::Connectors;
use crate::workflow::{compile, Catalog, FileProblem, Known, SharedCatalog, Workflow};

/// How often files are checked for changes.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// Workflow files are `*.yaml` / `*.yml`; `*.test.yaml` are workflow tests.
pub fn is_workflow_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.ends_with(".yaml") || name.ends_with(".yml"))
        && !name.ends_with(".test.yaml")
        && !name.ends_with(".test.yml")
        && !name.starts_with('.')
}

/// A workflow file's default name: its file name without `.yaml`/`.yml`.
pub fn workflow_stem(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(|n| {
            n.trim_end_matches(".yaml")
                .trim_end_matches(".yml")
                .to_string()
        })
        .unwrap_or_default()
}

/// What the config says workflows may refer to.
pub fn known_names(config: &Config) -> Known {
    Known {
        connectors: config.connectors.keys().cloned().collect(),
        sources: config.sources.keys().cloned().collect(),
    }
}

/// Load every workflow file in `dir`. A file that fails keeps the version
/// `previous` had for it, if any.
pub fn load_catalog(dir: &Path, known: &Known, previous: Option<&Catalog>) -> Catalog {
    let mut catalog = Catalog::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_workflow_file(p))
            .collect(),
        Err(e) => {
            catalog.problems.push(FileProblem {
                file: dir.display().to_string(),
                errors: vec![format!(
                    "{}: cannot read the workflows folder: {e}",
                    dir.display()
                )],
                kept_previous: false,
            });
            return catalog;
        }
    };
    // Files that were already loaded go first, so a new file reusing a
    // running workflow's name is the one reported as the duplicate, whatever
    // the file names' order.
    files.sort_by_key(|p| {
        let known = previous.is_some_and(|prev| {
            prev.workflows
                .iter()
                .any(|w| Path::new(&w.file) == p.as_path())
        });
        (!known, p.clone())
    });
    let mut names = BTreeSet::new();
    for path in files {
        let file = path.display().to_string();
        let stem = workflow_stem(&path);
        let result = match std::fs::read_to_string(&path) {
            Ok(text) => compile(&file, &stem, &text, known).and_then(|wf| {
                if names.contains(&wf.name) {
                    let line = text
                        .lines()
                        .position(|l| l.trim_start().starts_with("name:"))
                        .map(|i| i + 1)
                        .unwrap_or(1);
                    Err(vec![crate::yaml::Diagnostic {
                        file: file.clone(),
                        pos: crate::yaml::Pos { line, col: 1 },
                        message: format!("another workflow is already named `{}`", wf.name),
                        hint: Some("workflow names must be unique; set a different `name:`".into()),
                    }])
                } else {
                    Ok(wf)
                }
            }),
            Err(e) => Err(vec![crate::yaml::Diagnostic {
                file: file.clone(),
                pos: crate::yaml::Pos { line: 1, col: 1 },
                message: format!("cannot read the file: {e}"),
                hint: None,
            }]),
        };
        match result {
            Ok(wf) => {
                names.insert(wf.name.clone());
                catalog.workflows.push(Arc::new(wf));
            }
            Err(errors) => {
                let old: Option<Arc<Workflow>> = previous
                    .and_then(|p| p.workflows.iter().find(|w| w.file == file).cloned())
                    .filter(|w| !names.contains(&w.name));
                if let Some(old) = &old {
                    names.insert(old.name.clone());
                    catalog.workflows.push(old.clone());
                }
                catalog.problems.push(FileProblem {
                    file,
                    errors: errors.iter().map(|d| d.to_string()).collect(),
                    kept_previous: old.is_some(),
                });
            }
        }
    }
    catalog
}

pub fn log_problems(catalog: &Catalog) {
    for p in &catalog.problems {
        let kept = if p.kept_previous {
            " (the last good version keeps running)"
        } else {
            ""
        };
        tracing::error!(
            "workflow file {} has errors{kept}:\n{}",
            p.file,
            p.errors.join("\n")
        );
    }
}

/// What is watched, and what a change updates.
pub struct Reloader {
    pub overrides: Overrides,
    pub config: Arc<RwLock<Arc<Config>>>,
    pub catalog: SharedCatalog,
    pub connectors: Arc<Connectors>,
}

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn fingerprint(config_file: Option<&Path>, dir: &Path) -> Fingerprint {
    let mut fp = Vec::new();
    let mut add = |p: PathBuf| {
        if let Ok(meta) = std::fs::metadata(&p) {
            fp.push((p, meta.len(), meta.modified().ok()));
        }
    };
    if let Some(f) = config_file {
        add(f.to_path_buf());
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_workflow_file(p))
            .collect();
        paths.sort();
        for p in paths {
            add(p);
        }
    }
    fp
}

impl Reloader {
    /// Poll for changes until the task is aborted.
    pub async fn watch(self) {
        let initial = self.config.read().expect("config lock").clone();
        let config_file = initial.file.clone();
        let dir = initial.workflows_dir.clone();
        let mut last = fingerprint(config_file.as_deref(), &dir);
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = fingerprint(config_file.as_deref(), &dir);
            if now == last {
                continue;
            }
            let config_changed = config_file.as_ref().is_some_and(|f| {
                now.iter().find(|(p, ..)| p == f) != last.iter().find(|(p, ..)| p == f)
            });
            last = now;
            if config_changed {
                self.reload_config();
            }
            self.reload_workflows();
        }
    }

    fn reload_config(&self) {
        let current = self.config.read().expect("config lock").clone();
        match Config::load(&self.overrides, &ProcessEnv) {
            Ok(new) => {
                if new.listen != current.listen || new.data_dir != current.data_dir {
                    tracing::warn!("config reloaded; `listen` and `data_dir` changes take effect after a restart");
                }
                let mut new = new;
                new.listen = current.listen;
                new.data_dir = current.data_dir.clone();
                new.workflows_dir = current.workflows_dir.clone();
                self.connectors
                    .replace(new.connectors.clone(), &new.outbound);
                tracing::info!(
                    sources = new.sources.len(),
                    connectors = new.connectors.len(),
                    "config reloaded"
                );
                *self.config.write().expect("config lock") = Arc::new(new);
            }
            Err(errs) => {
                tracing::error!("config file has errors; keeping the running config:\n{errs}");
            }
        }
    }

    fn reload_workflows(&self) {
        let config = self.config.read().expect("config lock").clone();
        let previous = self.catalog.read().expect("catalog lock").clone();
        let catalog = load_catalog(
            &config.workflows_dir,
            &known_names(&config),
            Some(&previous),
        );
        log_problems(&catalog);
        let names: Vec<String> = catalog
            .workflows
            .iter()
            .map(|w| format!("{}@{}", w.name, w.version))
            .collect();
        tracing::info!(workflows = %names.join(", "), "workflows reloaded");
        *self.catalog.write().expect("catalog lock") = Arc::new(catalog);
    }
}
