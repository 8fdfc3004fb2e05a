//! `ringback test [DIR]`: run the `*.test.yaml` files next to the workflows
//! (see [`crate::workflow_test`] for the format) and report each case, with
//! a diff for every expectation that failed. Exit 1 on any failure.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Overrides;
use crate::workflow_test::{self, find_test_files, FileReport};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// A folder of `*.test.yaml` files, or one such file (default: the
    /// workflows folder).
    pub dir: Option<PathBuf>,
    /// Config file, for connectors and sources (default ./ringback.yaml
    /// when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(args: TestArgs) -> ExitCode {
    let overrides = Overrides {
        config: args.config.clone(),
        ..Default::default()
    };
    let config = match super::load_config(&overrides) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    let dir = args.dir.unwrap_or_else(|| config.workflows_dir.clone());
    let files = match find_test_files(&dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    if files.is_empty() {
        eprintln!(
            "no *.test.yaml files in {} (a test file sits next to the workflow it tests)",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let runtime = match super::runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut out = io::stdout().lock();
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, 0usize);
    for path in &files {
        let report = match workflow_test::load(path, &config) {
            Ok(file) => runtime.block_on(workflow_test::run_file(&file, &config)),
            Err(errs) => FileReport {
                file: path.display().to_string(),
                problems: errs.iter().map(|d| d.to_string()).collect(),
                cases: Vec::new(),
            },
        };
        if write_report(&mut out, &report).is_err() {
            return ExitCode::FAILURE;
        }
        if !report.problems.is_empty() {
            broken += 1;
        }
        for case in &report.cases {
            if case.passed() {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    let mut summary = format!(
        "\n{passed} passed, {failed} failed in {} file{}",
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
    if broken > 0 {
        summary.push_str(&format!(
            "; {broken} file{} could not run",
            if broken == 1 { "" } else { "s" }
        ));
    }
    let _ = writeln!(out, "{summary}");
    if failed == 0 && broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn write_report(out: &mut impl Write, report: &FileReport) -> io::Result<()> {
    writeln!(out, "{}", report.file)?;
    for problem in &report.problems {
        let mut lines = problem.lines();
        if let Some(first) = lines.next() {
            writeln!(out, "  error: {first}")?;
        }
        for line in lines {
            writeln!(out, "       {line}")?;
        }
    }
    for case in &report.cases {
        if case.passed() {
            writeln!(out, "  ok    {}", case.name)?;
        } else {
            writeln!(out, "  FAIL  {}  ({})", case.name, case.at)?;
            for failure in &case.failures {
                for line in failure.lines() {
                    writeln!(out, "        {line}")?;
                }
            }
        }
        for note in &case.notes {
            writeln!(out, "        note: {note}")?;
        }
    }
    Ok(())
}
