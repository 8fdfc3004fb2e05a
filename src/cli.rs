//! Subcommands. Each one validates its arguments into the types the library
//! uses and maps failures to an exit code and a message on stderr.
//!
//! `serve`, `check` and `parse` live here; the rest have a file each under
//! `cli/`: `admin` (`contacts`, `executions`: clients of a running server's
//! admin API), `run_workflow` (`run`), `test_workflows` (`test`),
//! `contacts_file` (CSV and JSON contact files) and `output` (tables and
//! run traces).

mod admin;
mod contacts_file;
pub mod log_clock;
pub mod log_writer;
mod output;
mod run_workflow;
mod test_workflows;

pub use admin::{ContactsCommand, ExecutionsCommand, ServerArgs};
pub use contacts_file::FileFormat;
pub use run_workflow::RunArgs;
pub use test_workflows::TestArgs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides, ProcessEnv};
use crate::event::{self, ParseContext, Provider};

#[derive(Debug, Parser)]
#[command(
    name = "ringback",
    version,
    about = "Self-hosted automation engine for WhatsApp call events"
)]
pub struct Cli {
    /// Log format: `text` (default) or `json`. Also RINGBACK_LOG_FORMAT.
    #[arg(
        long,
        global = true,
        env = "RINGBACK_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive webhooks and run workflows.
    Serve {
        #[command(flatten)]
        paths: PathArgs,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Validate the configuration; exit 1 on any error.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        workflows: Option<PathBuf>,
    },
    /// Print the canonical events ringback makes of a payload, one JSON
    /// object a line.
    Parse {
        /// A JSON file with the provider's webhook body (`-` for stdin).
        payload: PathBuf,
        /// wazzap, waha, v3, meta, timelinesai, standard or auto (default).
        #[arg(long, default_value = "auto")]
        provider: String,
        /// Source id to stamp on the events (affects their ids).
        #[arg(long, default_value = "cli")]
        source: String,
        /// Our business number, for payloads that do not carry it.
        #[arg(long)]
        business: Option<String>,
    },
    /// Run one workflow file on one payload and print what each step did.
    Run(run_workflow::RunArgs),
    /// Run the workflow tests (`*.test.yaml`) with no network, a throwaway
    /// store and simulated time; exit 1 on any failure.
    Test(test_workflows::TestArgs),
    /// Print the JSON Schema of workflow files (for editors: see the
    /// README's "Editor support").
    Schema,
    /// List, show, import and export contacts (talks to a running server).
    Contacts {
        #[command(flatten)]
        server: admin::ServerArgs,
        #[command(subcommand)]
        command: admin::ContactsCommand,
    },
    /// List and inspect workflow runs (talks to a running server).
    Executions {
        #[command(flatten)]
        server: admin::ServerArgs,
        #[command(subcommand)]
        command: admin::ExecutionsCommand,
    },
}

#[derive(Debug, clap::Args)]
pub struct PathArgs {
    /// Config file (default ./ringback.yaml when it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Workflows folder (default ./workflows).
    #[arg(long)]
    pub workflows: Option<PathBuf>,
    /// Data folder (default ./data).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Set up the log. `serve` logs through a buffer written out by a thread
/// of its own (`cli/log_writer.rs`); hold the returned guard until the
/// process is done, so the last lines are written.
pub fn init_logging(format: LogFormat, command: &Command) -> Option<log_writer::FlushOnDrop> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::EnvFilter;
    // `ringback test` prints its own report; the engine's lines would bury
    // it unless asked for.
    let default = match command {
        Command::Test(_) => "warn",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only for a person at a terminal, not for log files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = match command {
        Command::Serve { .. } => {
            let (writer, guard) = log_writer::start();
            (BoxMakeWriter::new(writer), Some(guard))
        }
        _ => (BoxMakeWriter::new(std::io::stderr), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_timer(log_clock::LogClock)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    guard
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { paths, listen } => serve(paths, listen),
        Command::Check { config, workflows } => check(config, workflows),
        Command::Parse {
            payload,
            provider,
            source,
            business,
        } => parse(payload, &provider, &source, business.as_deref()),
        Command::Run(args) => run_workflow::run(args),
        Command::Test(args) => test_workflows::run(args),
        Command::Schema => {
            let schema = crate::workflow::language::json_schema();
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("JSON serialises")
            );
            ExitCode::SUCCESS
        }
        Command::Contacts { server, command } => admin::contacts(server, command),
        Command::Executions { server, command } => admin::executions(server, command),
    }
}

/// A tokio runtime from `builder`, or the message and exit code.
fn runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

fn load_config(overrides: &Overrides) -> Result<Config, ExitCode> {
    Config::load(overrides, &ProcessEnv).map_err(|errs| {
        eprintln!("{errs}");
        eprintln!("{} error(s) in the configuration", errs.0.len());
        ExitCode::FAILURE
    })
}

fn serve(paths: PathArgs, listen: Option<String>) -> ExitCode {
    let overrides = Overrides {
        config: paths.config,
        listen,
        data_dir: paths.data,
        workflows_dir: paths.workflows,
    };
    let config = match load_config(&overrides) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        // Before the port answers: a SIGTERM that comes as soon as
        // `/healthz` does (a supervisor, a test) must stop the server
        // cleanly, not kill it by the signal's default action.
        let shutdown = shutdown_signal();
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                log_writer::flush();
                eprintln!("cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        match crate::app::run(config, listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log_writer::flush();
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this
/// is called, not when the future is first polled (axum polls its
/// shutdown future from a task of its own, which may run only after the
/// first requests are answered): a signal that comes in between would
/// otherwise end the process by its default action. Call it inside the
/// runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        tokio::select! {
            _ = received(&mut term) => {},
            _ = received(&mut int) => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
    }
}

/// The next delivery of `signal`; never, when its handler could not be
/// installed.
#[cfg(unix)]
async fn received(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => drop(s.recv().await),
        None => std::future::pending().await,
    }
}

fn check(config: Option<PathBuf>, workflows: Option<PathBuf>) -> ExitCode {
    let overrides = Overrides {
        config,
        workflows_dir: workflows,
        ..Default::default()
    };
    let config = match load_config(&overrides) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    let file = config
        .file
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "defaults".into());
    let catalog = crate::reload::load_catalog(
        &config.workflows_dir,
        &crate::reload::known_names(&config),
        None,
    );
    let errors: usize = catalog.problems.iter().map(|p| p.errors.len()).sum();
    for problem in &catalog.problems {
        for e in &problem.errors {
            eprintln!("{e}");
        }
    }
    if errors > 0 {
        eprintln!(
            "{errors} error(s) in {} workflow file(s)",
            catalog.problems.len()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "ok: {file}: {} source(s), {} connector(s); {}: {} workflow(s)",
        config.sources.len(),
        config.connectors.len(),
        config.workflows_dir.display(),
        catalog.workflows.len()
    );
    ExitCode::SUCCESS
}

fn parse(payload: PathBuf, provider: &str, source: &str, business: Option<&str>) -> ExitCode {
    let Some(provider) = Provider::parse_name(provider) else {
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        eprintln!(
            "unknown provider `{provider}` (one of: {})",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    let body = if payload.as_os_str() == "-" {
        let mut buf = Vec::new();
        if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf) {
            eprintln!("cannot read stdin: {e}");
            return ExitCode::FAILURE;
        }
        buf
    } else {
        match std::fs::read(&payload) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("cannot read {}: {e}", payload.display());
                return ExitCode::FAILURE;
            }
        }
    };
    let ctx = ParseContext {
        source,
        provider,
        business,
        received_at: jiff::Timestamp::now(),
        delivery_id: None,
    };
    match event::parse_batch(&body, &ctx) {
        Ok(event::Parsed { events, skipped }) => {
            // As the server does: a batch's unreadable items are left out
            // and named; the rest is printed.
            for e in &skipped {
                eprintln!("{}: left out: {e}", payload.display());
            }
            for e in events {
                match serde_json::to_string(&e) {
                    Ok(line) => println!("{line}"),
                    Err(err) => {
                        eprintln!("cannot print event: {err}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", payload.display());
            ExitCode::FAILURE
        }
    }
}
