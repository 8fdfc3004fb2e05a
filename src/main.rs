use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ringback::cli::Cli::parse();
    ringback::cli::init_logging(cli.log_format, &cli.command);
    ringback::cli::run(cli)
}
