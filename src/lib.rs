//! ringback: a self-hosted automation engine for WhatsApp call events.
pub mod config;
pub mod duration;
pub mod event;
pub mod yaml;
