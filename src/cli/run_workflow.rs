//! `ringback run WORKFLOW.yaml --event PAYLOAD.json`: one workflow, one
//! payload, here and now, with a step-by-step trace.
//!
//! Without `--dry-run` the run is real: it opens the data directory (so it
//! refuses one a server holds: sled allows one process per directory),
//! changes contacts, sends through the configured connectors and records the
//! execution. With `--dry-run` it uses a throwaway store that starts empty
//! and a [`Delivery`] that sends nothing and answers with what it would
//! have sent.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::Value;

use super::output::{self, Detail};
use crate::config::{Config, ConnectorConfig, Overrides};
use crate::delivery::{Connectors, Delivered, Delivery, DeliveryFuture, Request};
use crate::engine::{Engine, RunOptions};
use crate::event::{Event, Provider};
use crate::store::{RunStatus, Store, StoreError};
use crate::workflow::{compile, Workflow};

/// The page cache for the CLI's store: one run needs little.
const CACHE_BYTES: u64 = 16 << 20;
/// The source id stamped on events when no configured source fits.
const CLI_SOURCE: &str = "cli";

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The workflow file to run.
    pub workflow: PathBuf,
    /// A JSON file with the provider's webhook body (`-` for stdin).
    #[arg(long, value_name = "PAYLOAD.json")]
    pub event: PathBuf,
    /// wazzap, waha, v3, meta, timelinesai, standard or auto (default).
    #[arg(long)]
    pub provider: Option<String>,
    /// The source the event comes in on (default: the first configured
    /// source of the payload's provider, else `cli`).
    #[arg(long)]
    pub source: Option<String>,
    /// Config file, for connectors and sources (default ./ringback.yaml
    /// when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data folder (default: the config's data_dir).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Send nothing and save nothing: a throwaway store, and connectors that
    /// only say what they would send.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: RunArgs) -> ExitCode {
    let overrides = Overrides {
        config: args.config.clone(),
        data_dir: args.data.clone(),
        ..Default::default()
    };
    let config = match super::load_config(&overrides) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let workflow = match load_workflow(&args.workflow, &config) {
        Ok(w) => Arc::new(w),
        Err(code) => return code,
    };
    let events = match read_events(&args, &config) {
        Ok(e) => e,
        Err(code) => return code,
    };

    // A throwaway store lives in a temporary folder removed on drop; it must
    // outlive the store (declared first, dropped last).
    let scratch;
    let store = if args.dry_run {
        scratch = match tempfile::Builder::new()
            .prefix("ringback-dry-run-")
            .tempdir()
        {
            Ok(dir) => dir,
            Err(e) => {
                eprintln!("cannot create a temporary folder for the dry run: {e}");
                return ExitCode::FAILURE;
            }
        };
        Store::open(scratch.path(), CACHE_BYTES)
    } else {
        Store::open(&config.data_dir, CACHE_BYTES)
    };
    let store = match store {
        Ok(s) => s,
        Err(e @ StoreError::Locked(_)) => {
            eprintln!("{e}");
            eprintln!(
                "hint: stop `ringback serve` first, or add --dry-run to run against a throwaway store"
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let delivery: Arc<dyn Delivery> = if args.dry_run {
        Arc::new(DryRun {
            connectors: config.connectors.clone(),
        })
    } else {
        Connectors::new(config.connectors.clone(), &config.outbound)
    };
    let engine = Engine::for_workflow(
        store.clone(),
        workflow.clone(),
        delivery,
        crate::clock::system(),
    );
    let runtime = match super::runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let options = RunOptions {
        record: !args.dry_run,
        ..RunOptions::default()
    };
    let result = runtime.block_on(run_all(&engine, &workflow, &events, options, args.dry_run));
    drop(engine);
    if !args.dry_run {
        if let Err(e) = store.flush_now() {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    match result {
        Ok(code) => code,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cannot write the output: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_all(
    engine: &Engine,
    workflow: &Arc<Workflow>,
    events: &[Event],
    options: RunOptions,
    dry_run: bool,
) -> io::Result<ExitCode> {
    let mut out = io::stdout().lock();
    let mut ran = 0;
    let mut failed = false;
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            writeln!(out, "\n---\n")?;
        }
        if let Some(why) = not_listening(workflow, event) {
            eprintln!(
                "{} does not run for event {} ({} from {}): {why}",
                workflow.name,
                event.id,
                event.kind,
                event.caller.as_deref().unwrap_or("nobody")
            );
            continue;
        }
        let shared = Arc::new(event.clone());
        let Some(execution) = engine
            .run_workflow(workflow.clone(), &shared, options.clone())
            .await
        else {
            eprintln!(
                "{} does not run for event {} ({} from {}): its `on.when` condition is false",
                workflow.name,
                event.id,
                event.kind,
                event.caller.as_deref().unwrap_or("nobody")
            );
            continue;
        };
        ran += 1;
        output::write_trace(&mut out, &execution, Detail::InputOutput)?;
        if dry_run {
            writeln!(out, "dry run: nothing was sent or saved")?;
        } else {
            writeln!(out, "recorded as {}", execution.id)?;
        }
        if execution.status == RunStatus::Waiting {
            // A durable wait: its timer is in the data folder.
            writeln!(
                out,
                "the run is paused at a `wait` step; `ringback serve` on this data folder resumes it"
            )?;
        }
        failed |= !matches!(
            execution.status,
            RunStatus::Succeeded | RunStatus::Stopped | RunStatus::Debounced | RunStatus::Waiting
        );
    }
    out.flush()?;
    if ran == 0 {
        eprintln!("nothing ran: the workflow does not run for any event in the payload");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Why the trigger does not take this event, if it does not.
fn not_listening(workflow: &Workflow, event: &Event) -> Option<String> {
    let t = &workflow.trigger;
    if t.matches(&event.kind, &event.source, event.business.as_deref()) {
        return None;
    }
    let list =
        |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
    if let Some(events) = &t.events {
        if !events.contains("*") && !events.contains(&event.kind) {
            return Some(format!(
                "it listens for {}, this event is {}",
                list(events),
                event.kind
            ));
        }
    }
    if let Some(sources) = &t.sources {
        if !sources.contains(&event.source) {
            return Some(format!(
                "it listens to sources {}, this event came in on `{}` (pick one with --source)",
                list(sources),
                event.source
            ));
        }
    }
    if let Some(business) = &t.business {
        return Some(format!(
            "it listens for business numbers {}, this event is for {}",
            list(business),
            event.business.as_deref().unwrap_or("no business number")
        ));
    }
    Some("its `on` filter does not match".to_string())
}

fn load_workflow(path: &Path, config: &Config) -> Result<Workflow, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("cannot read {}: {e}", path.display());
        ExitCode::FAILURE
    })?;
    let file = path.display().to_string();
    let stem = crate::reload::workflow_stem(path);
    compile(&file, &stem, &text, &crate::reload::known_names(config)).map_err(|errors| {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!("{} error(s) in {file}", errors.len());
        ExitCode::FAILURE
    })
}

/// The payload's events, as the source they would come in on makes them.
fn read_events(args: &RunArgs, config: &Config) -> Result<Vec<Event>, ExitCode> {
    let provider = match args.provider.as_deref() {
        None => None,
        Some(name) => match Provider::parse_name(name) {
            Some(p) => Some(p),
            None => {
                let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
                eprintln!("unknown provider `{name}` (one of: {})", names.join(", "));
                return Err(ExitCode::from(2));
            }
        },
    };
    let body = if args.event.as_os_str() == "-" {
        io::read_to_string(io::stdin()).map(String::into_bytes)
    } else {
        std::fs::read(&args.event)
    }
    .map_err(|e| {
        eprintln!("cannot read {}: {e}", args.event.display());
        ExitCode::FAILURE
    })?;
    if let Some(id) = &args.source {
        if config.source(id).is_none() {
            eprintln!("note: source `{id}` is not in the configuration; using it as a label only");
        }
    }
    crate::workflow_test::parse_as_received(
        &body,
        provider,
        args.source.as_deref(),
        config,
        jiff::Timestamp::now(),
        CLI_SOURCE,
    )
    .map_err(|e| {
        eprintln!("{}: {e}", args.event.display());
        ExitCode::FAILURE
    })
}

/// Sends nothing: each request answers with what would have gone out.
struct DryRun {
    connectors: BTreeMap<String, ConnectorConfig>,
}

impl Delivery for DryRun {
    fn deliver(&self, request: Request) -> DeliveryFuture<'_> {
        Box::pin(async move {
            let mut would = crate::delivery::describe_outbound(&request.outbound);
            would["status"] = Value::from("dry-run");
            if let Some(name) = &request.connector {
                let Some(connector) = self.connectors.get(name) else {
                    return Delivered {
                        result: Err(format!("connector `{name}` is not configured")),
                        attempts: Vec::new(),
                    };
                };
                would["connector"] = Value::from(name.as_str());
                would["kind"] = Value::from(connector.kind.as_str());
            }
            Delivered {
                result: Ok(would),
                attempts: Vec::new(),
            }
        })
    }
}
