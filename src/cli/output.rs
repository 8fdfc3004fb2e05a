//! What the subcommands print: aligned tables and step-by-step run traces.
//!
//! Everything writes to a `dyn Write` and returns its I/O error, so a closed
//! pipe (`ringback contacts list | head`) ends the command quietly instead
//! of panicking the way `println!` does.

use std::io::{self, Write};

use jiff::Timestamp;
use serde_json::Value;

use crate::store::{Execution, StepStatus};

/// Columns padded to their widest cell, two spaces apart.
pub fn write_table(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            s.extend(std::iter::repeat_n(' ', pad));
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&mut headers.iter().copied()))?;
    for row in rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str)))?;
    }
    Ok(())
}

/// `2026-05-14 14:32:11` (UTC), for tables.
pub fn short_time(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// [`short_time`] of an RFC 3339 string; the string itself if it is not one.
pub fn short_time_str(s: &str) -> String {
    s.parse::<Timestamp>()
        .map(short_time)
        .unwrap_or_else(|_| s.to_string())
}

/// A cell: the text, or `-` when there is none.
pub fn cell(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    }
}

fn status_name(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
    }
}

fn duration(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// How much of each step [`write_trace`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Path, kind, status, duration, error.
    Steps,
    /// And each step's rendered input and its output.
    InputOutput,
}

/// The run as a reader follows it: what ran, in order, and how it ended.
pub fn write_trace(out: &mut dyn Write, e: &Execution, detail: Detail) -> io::Result<()> {
    let ev = &e.event;
    writeln!(
        out,
        "workflow  {} ({}, version {})",
        e.workflow, e.file, e.workflow_version
    )?;
    writeln!(
        out,
        "event     {} from {} (source {}, provider {}, {})",
        ev.kind,
        ev.caller.as_deref().unwrap_or("nobody"),
        ev.source,
        ev.provider,
        ev.id
    )?;
    writeln!(out)?;
    let path_width = e
        .steps
        .iter()
        .map(|s| s.path.chars().count())
        .max()
        .unwrap_or(0);
    let name = |step: &crate::store::StepRecord| match &step.id {
        Some(id) => format!("{} ({id})", step.kind),
        None => step.kind.clone(),
    };
    let kind_width = e
        .steps
        .iter()
        .map(|s| name(s).chars().count())
        .max()
        .unwrap_or(0);
    let indent = " ".repeat(2 + path_width + 2);
    for step in &e.steps {
        let name = name(step);
        let mut line = format!(
            "  {:<pw$}  {:<kw$}  {:<9}  {}",
            step.path,
            name,
            status_name(step.status),
            duration(step.duration_ms),
            pw = path_width,
            kw = kind_width,
        );
        if step.kind == "if" {
            if let Some(branch) = step.output.get("branch").and_then(Value::as_str) {
                line.push_str(&format!("  -> {branch}"));
            }
        }
        if step.attempts.len() > 1 {
            line.push_str(&format!("  ({} attempts)", step.attempts.len()));
        }
        writeln!(out, "{}", line.trim_end())?;
        if detail == Detail::InputOutput && step.kind != "if" {
            if !step.input.is_null() {
                writeln!(out, "{indent}input:  {}", compact(&step.input))?;
            }
            if !step.output.is_null() {
                writeln!(out, "{indent}output: {}", compact(&step.output))?;
            }
        }
        if let Some(error) = &step.error {
            writeln!(out, "{indent}error:  {error}")?;
        }
    }
    if e.steps.is_empty() && e.status.is_finished() {
        writeln!(out, "  (no steps ran)")?;
    }
    writeln!(out)?;
    let took = e
        .finished_at
        .map(|f| {
            let ms = f.as_millisecond() - e.started_at.as_millisecond();
            format!(" in {}", duration(ms as f64))
        })
        .unwrap_or_default();
    write!(out, "status: {}{took}", e.status.as_str())?;
    match &e.error {
        Some(error) => writeln!(out, ": {error}"),
        None => writeln!(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_line_up_and_lines_have_no_trailing_space() {
        let mut out = Vec::new();
        write_table(
            &mut out,
            &["PHONE", "NAME"],
            &[
                vec!["+5215512345678".into(), "Ana".into()],
                vec!["+1".into(), "-".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PHONE           NAME\n+5215512345678  Ana\n+1              -\n"
        );
    }
}
