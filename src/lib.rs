//! ringback: a self-hosted automation engine for WhatsApp call events.
//!
//! Providers POST call events to `/hooks/<source>`; ringback verifies each
//! one over its raw bytes, writes it durably before answering, normalises it
//! into one canonical [`event::Event`], and runs every YAML workflow that
//! listens for it, with a journal so a crash never loses or repeats work.
//!
//! # Layout
//!
//! Dependencies point down the list: a module only uses those below it.
//!
//! | module | job |
//! |---|---|
//! | [`cli`] | subcommands: argument parsing, exit codes; `cli/` holds the admin API clients (`contacts`, `executions`), `run`, file formats and output |
//! | [`app`] | the wiring point: store, server, engine, timers, reloader, shutdown |
//! | [`server`] | HTTP (the only axum user): ingestion, admin API, errors → status codes |
//! | [`workflow_test`] | `*.test.yaml`: cases run on the engine with a throwaway store, canned answers and simulated time |
//! | [`reload`] | loading the workflows folder; hot reload of it and of the config |
//! | [`engine`] | the interpreter: runs, journal and replay, durable waits, timers, call state |
//! | [`delivery`] | outbound HTTP (the only reqwest user): connectors, retries, rate limits, SSRF guard; the admin API client |
//! | [`store`] | disk (the only sled user): inbox and its log, dedupe, contacts, executions, timers, calls, group commit |
//! | [`workflow`] | pure: the workflow language, validation with positions, templates |
//! | [`config`] | `ringback.yaml` → validated [`config::Config`], all errors at once |
//! | [`event`] | pure: canonical event, one parser per provider, signatures, phones |
//! | [`json`] | typed JSON readers as strict as a `Value` (objects only, every value checked) |
//! | [`yaml`] | the one YAML reader: values plus `file:line:col` for every path |
//! | [`metrics`] | the counters and histograms of `GET /metrics` (prometheus-client), one registry per server |
//! | [`duration`] | `250ms` / `90s` / `2m` / `1h` / `7d` |
//! | [`clock`] | time through a trait, so tests can fake it |
//! | [`alloc`] | the server's global allocator (mimalloc), installed by `main.rs` |

pub mod alloc;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod duration;
pub mod engine;
pub mod event;
pub mod json;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod store;
pub mod workflow;
pub mod workflow_test;
pub mod yaml;
