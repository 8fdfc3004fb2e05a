use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc. Under load the server allocates on
/// tokio's workers and frees on sled's IO threads; glibc's allocator (its
/// arena locks, `malloc_consolidate`) was about a fifth of the server's CPU
/// in the load bench's profile, and switching took ingestion from ≈3,900 to
/// ≈5,500–6,400 events/s (benches/README.md). `no_thp` keeps mimalloc off
/// transparent huge pages: peak RSS under load was 160–210 MiB with them,
/// 130–160 MiB without. `ringback::alloc` says why it is called directly
/// rather than through the `mimalloc` crate.
#[global_allocator]
static GLOBAL: ringback::alloc::Mimalloc = ringback::alloc::Mimalloc;

fn main() -> ExitCode {
    let cli = ringback::cli::Cli::parse();
    let _logs = ringback::cli::init_logging(cli.log_format, &cli.command);
    ringback::cli::run(cli)
}
