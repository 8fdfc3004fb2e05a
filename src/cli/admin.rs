//! `ringback contacts ...` and `ringback executions ...`: clients of a
//! running server's admin API (sled allows one process per data directory,
//! so they cannot open the store while the server runs).
//!
//! The server is `--server URL`, else `http://<listen>` from the config (a
//! wildcard listen address is reached on loopback). The token is
//! `RINGBACK_ADMIN_TOKEN`, else the config's `admin_token`.

use std::future::Future;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::contacts_file::{self, FileFormat};
use super::output::{self, cell, short_time, short_time_str, write_table, Detail};
use crate::config::Overrides;
use crate::delivery::admin_client::{
    AdminClient, AdminError, ContactFilter, ExecutionFilter, TOKEN_ENV,
};
use crate::event::Secret;
use crate::store::{Contact, Execution};

/// Which server to talk to.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The server's URL (default: http://<listen> from the config).
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Config file to take `listen` and `admin_token` from (default
    /// ./ringback.yaml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// List contacts (all of them, unless --limit).
    List {
        /// Only contacts with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only contacts whose phone, name or a field contains this text.
        #[arg(long, value_name = "TEXT")]
        q: Option<String>,
        /// At most this many.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one contact as JSON.
    Get {
        /// E.164 phone, e.g. +5215512345678.
        phone: String,
    },
    /// Create or replace contacts from a CSV or JSON file (`-` for stdin).
    Import {
        /// A .csv file with a header row (phone,name,country,tags, then
        /// fields), or a .json file (an array of contacts, or JSON lines).
        file: PathBuf,
        /// The file's format (default: from its extension).
        #[arg(long)]
        format: Option<FileFormat>,
    },
    /// Write every contact to stdout as CSV or JSON.
    Export {
        #[arg(long, default_value = "csv")]
        format: FileFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// List workflow runs, newest first.
    List {
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs with this status: running, waiting, succeeded, failed,
        /// debounced or stopped.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: usize,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one run: its full record as JSON, then a step-by-step trace.
    Show {
        /// The run id (run_...).
        id: String,
        /// Print only the JSON record.
        #[arg(long)]
        json: bool,
    },
}

/// What a command failed with: an admin API error, or anything else
/// already worded for the user.
enum Failure {
    Api(AdminError),
    Io(io::Error),
    Message(String),
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        Failure::Api(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

fn finish(result: Result<ExitCode, Failure>) -> ExitCode {
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): not an error worth a message.
        Err(Failure::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Io(e)) => {
            eprintln!("cannot write the output: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Api(e)) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(Failure::Message(m)) => {
            eprintln!("{m}");
            ExitCode::FAILURE
        }
    }
}

/// The admin API client for these arguments.
fn connect(args: &ServerArgs) -> Result<AdminClient, ExitCode> {
    let env_token = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Secret::new(t.trim()));
    let config = if args.server.is_none() || env_token.is_none() {
        let overrides = Overrides {
            config: args.config.clone(),
            ..Default::default()
        };
        Some(super::load_config(&overrides)?)
    } else {
        None
    };
    let server = match &args.server {
        Some(s) => s.clone(),
        None => {
            let listen = config.as_ref().expect("loaded without --server").listen;
            format!("http://{}", reachable(listen))
        }
    };
    let token = env_token.or_else(|| config.and_then(|c| c.admin_token));
    AdminClient::new(&server, token).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

/// Where a client reaches a server listening on `listen`: a wildcard
/// address is answered on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

fn block_on<F: Future>(future: F) -> Result<F::Output, ExitCode> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Ok(rt.block_on(future)),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

pub fn contacts(server: ServerArgs, command: ContactsCommand) -> ExitCode {
    let client = match connect(&server) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = block_on(async {
        match command {
            ContactsCommand::List {
                tag,
                q,
                limit,
                json,
            } => list_contacts(&client, ContactFilter { tag, q }, limit, json).await,
            ContactsCommand::Get { phone } => get_contact(&client, &phone).await,
            ContactsCommand::Import { file, format } => import(&client, &file, format).await,
            ContactsCommand::Export { format } => export(&client, format).await,
        }
    });
    match result {
        Ok(r) => finish(r),
        Err(code) => code,
    }
}

pub fn executions(server: ServerArgs, command: ExecutionsCommand) -> ExitCode {
    let client = match connect(&server) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = block_on(async {
        match command {
            ExecutionsCommand::List {
                workflow,
                status,
                limit,
                json,
            } => list_executions(&client, ExecutionFilter { workflow, status }, limit, json).await,
            ExecutionsCommand::Show { id, json } => show_execution(&client, &id, json).await,
        }
    });
    match result {
        Ok(r) => finish(r),
        Err(code) => code,
    }
}

async fn list_contacts(
    client: &AdminClient,
    filter: ContactFilter,
    limit: Option<usize>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let listing = client.list_contacts(&filter, limit).await?;
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", pretty(&listing.items))?;
    } else if listing.items.is_empty() {
        eprintln!("no contacts");
    } else {
        let rows: Vec<Vec<String>> = listing.items.iter().map(contact_row).collect();
        write_table(
            &mut out,
            &["PHONE", "NAME", "COUNTRY", "TAGS", "LAST CALL"],
            &rows,
        )?;
    }
    out.flush()?;
    if listing.more {
        eprintln!(
            "showing the first {}; there are more (raise --limit, or leave it out for all)",
            listing.items.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn contact_row(c: &Contact) -> Vec<String> {
    let tags: Vec<&str> = c.tags.iter().map(String::as_str).collect();
    vec![
        c.phone.clone(),
        cell(c.name.as_deref()),
        cell(c.country.as_deref()),
        cell(Some(&tags.join(","))),
        c.last_call_at.map(short_time).unwrap_or_else(|| "-".into()),
    ]
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("API values serialise")
}

async fn get_contact(client: &AdminClient, phone: &str) -> Result<ExitCode, Failure> {
    let contact = client.contact(phone).await?;
    let mut out = io::stdout().lock();
    writeln!(out, "{}", pretty(&contact))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// How often import reports progress.
const PROGRESS_EVERY: usize = 100;

async fn import(
    client: &AdminClient,
    file: &Path,
    format: Option<FileFormat>,
) -> Result<ExitCode, Failure> {
    let stdin = file.as_os_str() == "-";
    let Some(format) = format.or_else(|| FileFormat::from_path(file)) else {
        return Err(Failure::Message(format!(
            "cannot tell the format of {}: name it .csv or .json, or pass --format csv|json",
            file.display()
        )));
    };
    let text = if stdin {
        io::read_to_string(io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| Failure::Message(format!("cannot read {}: {e}", file.display())))?;
    let name = if stdin {
        "<stdin>".to_string()
    } else {
        file.display().to_string()
    };
    let rows = contacts_file::read(format, &text)
        .map_err(|e| Failure::Message(format!("{name}:{e}\nnothing was imported")))?;
    let total = rows.len();
    let (mut imported, mut failed) = (0usize, 0usize);
    for (done, row) in rows.into_iter().enumerate() {
        match row {
            Err(e) => {
                eprintln!("{name}:{e}");
                failed += 1;
            }
            Ok(row) => match client.put_contact(&row.phone, &row.body).await {
                Ok(_) => imported += 1,
                Err(e) if e.is_request_error() => {
                    eprintln!("{name}:{}: {}: {e}", row.line, row.phone);
                    failed += 1;
                }
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!(
                        "stopped at {name}:{}: imported {imported}, failed {failed}, {} row(s) left",
                        row.line,
                        total - done
                    );
                    return Ok(ExitCode::FAILURE);
                }
            },
        }
        let done = done + 1;
        if done % PROGRESS_EVERY == 0 && done < total {
            eprintln!("{done}/{total} rows...");
        }
    }
    eprintln!("imported {imported}, failed {failed}");
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn export(client: &AdminClient, format: FileFormat) -> Result<ExitCode, Failure> {
    let contacts = client
        .list_contacts(&ContactFilter::default(), None)
        .await?
        .items;
    let mut out = io::BufWriter::new(io::stdout().lock());
    match format {
        FileFormat::Csv => {
            contacts_file::write_csv(&contacts, &mut out).map_err(|e| match e.into_kind() {
                csv::ErrorKind::Io(io) => Failure::Io(io),
                other => Failure::Message(format!("cannot write CSV: {other:?}")),
            })?
        }
        FileFormat::Json => contacts_file::write_json(&contacts, &mut out)?,
    }
    out.flush()?;
    eprintln!("exported {} contact(s)", contacts.len());
    Ok(ExitCode::SUCCESS)
}

async fn list_executions(
    client: &AdminClient,
    filter: ExecutionFilter,
    limit: usize,
    json: bool,
) -> Result<ExitCode, Failure> {
    let listing = client.list_executions(&filter, Some(limit.max(1))).await?;
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", pretty(&listing.items))?;
    } else if listing.items.is_empty() {
        eprintln!("no executions");
    } else {
        let text =
            |v: &Value, path: &str| -> String { cell(v.pointer(path).and_then(Value::as_str)) };
        let rows: Vec<Vec<String>> = listing
            .items
            .iter()
            .map(|e| {
                vec![
                    text(e, "/id"),
                    text(e, "/workflow"),
                    // Runs of injected test events say so.
                    if e["test"] == true {
                        format!("{} (test)", text(e, "/status"))
                    } else {
                        text(e, "/status")
                    },
                    text(e, "/event/kind"),
                    text(e, "/event/caller"),
                    short_time_str(&text(e, "/started_at")),
                ]
            })
            .collect();
        write_table(
            &mut out,
            &["ID", "WORKFLOW", "STATUS", "EVENT", "CALLER", "STARTED"],
            &rows,
        )?;
    }
    out.flush()?;
    if listing.more {
        eprintln!(
            "showing the newest {}; there are more (raise --limit)",
            listing.items.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show_execution(client: &AdminClient, id: &str, json: bool) -> Result<ExitCode, Failure> {
    let record = client.execution(id).await?;
    let execution = serde_json::from_value::<Execution>(record.clone());
    let mut out = io::stdout().lock();
    // The typed record prints its keys in a reading order (id, workflow,
    // status, event, ..., steps); the raw one only if it holds more.
    match &execution {
        Ok(e) if serde_json::to_value(e).ok().as_ref() == Some(&record) => {
            writeln!(out, "{}", pretty(e))?
        }
        _ => writeln!(out, "{}", pretty(&record))?,
    }
    if !json {
        writeln!(out)?;
        match &execution {
            Ok(execution) => output::write_trace(&mut out, execution, Detail::Steps)?,
            Err(e) => eprintln!("(no trace: the record has an unexpected shape: {e})"),
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        let at = |s: &str| reachable(s.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(at("[::]:9000"), "[::1]:9000");
        assert_eq!(at("10.1.2.3:80"), "10.1.2.3:80");
    }
}
