//! ringback: a self-hosted automation engine for WhatsApp call events.
pub mod event;
