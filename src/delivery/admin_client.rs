//! A client for a running server's admin API, used by the `contacts` and
//! `executions` subcommands (sled allows one process per data directory, so
//! these talk to the server instead of opening the store).
//!
//! Errors say what to do about them: an unreachable server asks whether
//! `ringback serve` is running there, a 401 asks for the admin token, and any
//! other refusal carries the server's own `{"error": ...}` message. The token
//! is sent as `Authorization: Bearer` and never appears in an error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Secret;
use crate::store::Contact;

/// The environment variable the CLI reads the admin token from.
pub const TOKEN_ENV: &str = "RINGBACK_ADMIN_TOKEN";
/// The most the server returns in one page (its `MAX_LIMIT`).
pub const MAX_PAGE: usize = 1000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("`{0}` is not a server URL (write e.g. http://127.0.0.1:8080)")]
    BadUrl(String),
    #[error("cannot reach the ringback server at {server}: {detail}\nhint: is `ringback serve` running at {server}? (--server URL picks another address)")]
    Unreachable { server: String, detail: String },
    #[error("{server}: the server needs an admin token: set {TOKEN_ENV}")]
    TokenNeeded { server: String },
    #[error("{server}: the admin token was refused ({message}): check {TOKEN_ENV}")]
    TokenRefused { server: String, message: String },
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("unexpected answer from {server}: {detail}")]
    Protocol { server: String, detail: String },
}

impl AdminError {
    /// The request itself was refused (bad phone, unknown contact, bad
    /// body): other requests may still succeed. Everything else (server
    /// gone, token wrong, storage down) will fail the next request too.
    pub fn is_request_error(&self) -> bool {
        matches!(self, AdminError::Api { status, .. } if (400..500).contains(status))
    }
}

/// `PUT /api/contacts/{phone}`: the contact's replaceable parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContactBody {
    pub name: Option<String>,
    pub country: Option<String>,
    pub tags: BTreeSet<String>,
    pub fields: BTreeMap<String, String>,
}

/// Filters for [`AdminClient::list_contacts`].
#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    pub tag: Option<String>,
    pub q: Option<String>,
}

/// Filters for [`AdminClient::list_executions`].
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub workflow: Option<String>,
    pub status: Option<String>,
}

/// A list, and whether the server has more than was asked for.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub more: bool,
}

/// One page of a listing: the items under `contacts` or `executions`.
#[derive(Deserialize)]
struct Page<T> {
    #[serde(alias = "contacts", alias = "executions")]
    items: Vec<T>,
    next_cursor: Option<String>,
}

pub struct AdminClient {
    /// The server URL without a trailing `/`.
    base: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the server at `server` (`http://` is assumed when no
    /// scheme is given).
    pub fn new(server: &str, token: Option<Secret>) -> Result<AdminClient, AdminError> {
        let trimmed = server.trim();
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("http://{trimmed}")
        };
        let url = reqwest::Url::parse(&with_scheme)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| AdminError::BadUrl(server.to_string()))?;
        let host = url.host_str().unwrap_or("");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if loopback {
            // A proxy cannot reach this machine's loopback address.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| AdminError::Protocol {
            server: server.to_string(),
            detail: innermost(&e),
        })?;
        Ok(AdminClient {
            base: url.as_str().trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.expose().is_empty()),
            http,
        })
    }

    /// The server URL, for messages.
    pub fn server(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, AdminError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        };
        let response = request.send().await.map_err(|e| AdminError::Unreachable {
            server: self.base.clone(),
            detail: innermost(&e),
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| AdminError::Unreachable {
                server: self.base.clone(),
                detail: innermost(&e),
            })?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| AdminError::Protocol {
                server: self.base.clone(),
                detail: format!("the answer is not what ringback sends ({e})"),
            });
        }
        let message = error_message(&body)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
        Err(match status.as_u16() {
            401 if self.token.is_none() => AdminError::TokenNeeded {
                server: self.base.clone(),
            },
            401 => AdminError::TokenRefused {
                server: self.base.clone(),
                message,
            },
            status => AdminError::Api { status, message },
        })
    }

    /// Contacts in phone order, following the server's cursors until
    /// `limit` (or every contact, with `None`).
    pub async fn list_contacts(
        &self,
        filter: &ContactFilter,
        limit: Option<usize>,
    ) -> Result<Listing<Contact>, AdminError> {
        let filters = [("tag", &filter.tag), ("q", &filter.q)];
        self.list("/api/contacts", &filters, limit).await
    }

    /// Follow a listing's cursors until `limit` items (or all of them).
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        filters: &[(&str, &Option<String>)],
        limit: Option<usize>,
    ) -> Result<Listing<T>, AdminError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let want = page_size(limit, items.len());
            let mut query: Vec<(&str, String)> = vec![("limit", want.to_string())];
            for (key, value) in filters {
                push_some(&mut query, key, value);
            }
            push_some(&mut query, "cursor", &cursor);
            let page: Page<T> = self
                .send(self.http.get(self.url(path)).query(&query))
                .await?;
            items.extend(page.items);
            match (page.next_cursor, limit) {
                (Some(_), Some(l)) if items.len() >= l => {
                    items.truncate(l);
                    return Ok(Listing { items, more: true });
                }
                (Some(next), _) => cursor = Some(next),
                (None, _) => return Ok(Listing { items, more: false }),
            }
        }
    }

    pub async fn contact(&self, phone: &str) -> Result<Contact, AdminError> {
        let url = self.url(&format!("/api/contacts/{}", encode_segment(phone)));
        self.send(self.http.get(url)).await
    }

    /// Create or replace a contact.
    pub async fn put_contact(
        &self,
        phone: &str,
        body: &ContactBody,
    ) -> Result<Contact, AdminError> {
        let url = self.url(&format!("/api/contacts/{}", encode_segment(phone)));
        self.send(self.http.put(url).json(body)).await
    }

    /// Execution summaries, newest first, as the server gives them.
    pub async fn list_executions(
        &self,
        filter: &ExecutionFilter,
        limit: Option<usize>,
    ) -> Result<Listing<Value>, AdminError> {
        let filters = [("workflow", &filter.workflow), ("status", &filter.status)];
        self.list("/api/executions", &filters, limit).await
    }

    /// One execution record, whole, as the server gives it.
    pub async fn execution(&self, id: &str) -> Result<Value, AdminError> {
        let url = self.url(&format!("/api/executions/{}", encode_segment(id)));
        self.send(self.http.get(url)).await
    }
}

fn page_size(limit: Option<usize>, have: usize) -> usize {
    match limit {
        Some(l) => l.saturating_sub(have).clamp(1, MAX_PAGE),
        None => MAX_PAGE,
    }
}

fn push_some<'a>(query: &mut Vec<(&'a str, String)>, key: &'a str, value: &Option<String>) {
    if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
        query.push((key, v.to_string()));
    }
}

/// The `error` of a `{"error": "..."}` body, else a short plain-text body.
fn error_message(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(m) = v.get("error").and_then(Value::as_str) {
            return Some(m.to_string());
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(200).collect())
}

/// The most specific cause of a transport error ("Connection refused"),
/// rather than reqwest's "error sending request for url (...)".
fn innermost(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "the request timed out".to_string();
    }
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// Percent-encode one path segment (`+52...` → `%2B52...`): everything but
/// RFC 3986's unreserved characters.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plus_in_a_phone_is_percent_encoded() {
        assert_eq!(encode_segment("+5215512345678"), "%2B5215512345678");
        assert_eq!(encode_segment("run_00ab"), "run_00ab");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn a_server_without_a_scheme_is_taken_as_http() {
        let c = AdminClient::new("127.0.0.1:8080", None).unwrap();
        assert_eq!(c.server(), "http://127.0.0.1:8080");
        let c = AdminClient::new("https://ops.example/ringback/", None).unwrap();
        assert_eq!(c.server(), "https://ops.example/ringback");
        assert!(matches!(
            AdminClient::new("ftp://x", None),
            Err(AdminError::BadUrl(_))
        ));
    }

    #[test]
    fn the_error_message_is_the_servers_own() {
        assert_eq!(
            error_message(br#"{"error": "no contact with phone +52"}"#).as_deref(),
            Some("no contact with phone +52")
        );
        assert_eq!(error_message(b"  ").as_deref(), None);
        assert_eq!(
            error_message(b"Bad Gateway").as_deref(),
            Some("Bad Gateway")
        );
    }

    #[test]
    fn only_client_errors_leave_the_next_request_a_chance() {
        let api = |status| AdminError::Api {
            status,
            message: String::new(),
        };
        assert!(api(422).is_request_error());
        assert!(api(404).is_request_error());
        assert!(!api(503).is_request_error());
        assert!(!AdminError::TokenNeeded {
            server: String::new()
        }
        .is_request_error());
    }
}
