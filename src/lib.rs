//! ringback: a self-hosted automation engine for WhatsApp call events.
//!
//! Providers POST call events to `/hooks/<source>`; ringback verifies each
//! one over its raw bytes, writes it durably before answering, and
//! normalises it into one canonical [`event::Event`].
//!
//! # Layout
//!
//! Dependencies point down the list: a module only uses those below it.
//!
//! | module | job |
//! |---|---|
//! | [`cli`] | subcommands: argument parsing, exit codes |
//! | [`app`] | the wiring point: store, server, background tasks, shutdown |
//! | [`server`] | HTTP (the only axum user): ingestion, errors → status codes |
//! | [`store`] | disk (the only sled user): inbox, dedupe, group commit |
//! | [`config`] | `ringback.yaml` → validated [`config::Config`], all errors at once |
//! | [`event`] | pure: canonical event, one parser per provider, signatures, phones |
//! | [`yaml`] | the one YAML reader: values plus `file:line:col` for every path |
//! | [`duration`] | `250ms` / `90s` / `2m` / `1h` / `7d` |
//! | [`clock`] | time through a trait, so tests can fake it |

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod duration;
pub mod engine;
pub mod event;
pub mod reload;
pub mod server;
pub mod store;
pub mod workflow;
pub mod yaml;
