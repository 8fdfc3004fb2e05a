//! Integration tests: the real server on 127.0.0.1:0 (or the built binary,
//! for kill -9 and signal tests), real HTTP, real files, real sled.

mod binary;
mod calls;
mod cli;
mod crash;
mod delivery;
mod ingest;
mod operator;
mod ring_timeout;
mod support;
mod workflows;
