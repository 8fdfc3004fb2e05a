//! A client for a running server's admin API, used by the `contacts` and
//! `executions` subcommands (sled allows one process per data directory, so
//! these talk to the server instead of opening the store).
