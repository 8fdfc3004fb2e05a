//! `ringback.yaml`: the raw file → a validated [`Config`], every error at
//! once, each with `file:line:col`.
//!
//! Order of precedence for the four settings that have one: command-line
//! flag, then `RINGBACK_LISTEN` / `RINGBACK_DATA` / `RINGBACK_WORKFLOWS`,
//! then the file, then the default.
//!
//! `${VAR}` is replaced from the environment in every string value (after
//! parsing, so a variable's value can never change the YAML's structure;
//! `$${` writes a literal `${`). An unset variable is an error naming it,
//! except when it is the whole value of an optional field: then the field
//! counts as omitted and a warning says so (the shipped demo config relies on
//! this, so it runs with no secrets and is secured by setting them).
//!
//! A `Config` holds no live resources; the app builds those from it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::duration::parse_duration;
use crate::event::{Provider, Secret, SourceAuth};
use crate::yaml::{join_index, type_name, Diagnostic, Document, Fields, Pos};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_WORKFLOWS_DIR: &str = "./workflows";
pub const DEFAULT_CONFIG_FILE: &str = "ringback.yaml";
pub const DEFAULT_MAX_BODY_BYTES: usize = 262_144;
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(7 * 86_400);
pub const DEFAULT_EXECUTIONS_KEEP_FOR: Duration = Duration::from_secs(30 * 86_400);
pub const DEFAULT_EXECUTIONS_KEEP_MAX: usize = 100_000;
pub const DEFAULT_OUTBOUND_TIMEOUT: Duration = Duration::from_secs(10);
/// WAHA never reports a missed call; after this long without an answer the
/// call counts as missed (SPEC §4).
pub const DEFAULT_WAHA_RING_TIMEOUT: Duration = Duration::from_secs(60);

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, if any.
    pub file: Option<PathBuf>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub workflows_dir: PathBuf,
    pub admin_token: Option<Secret>,
    pub max_body_bytes: usize,
    pub dedupe_window: Duration,
    pub sources: BTreeMap<String, SourceConfig>,
    pub connectors: BTreeMap<String, ConnectorConfig>,
    pub outbound: OutboundConfig,
    /// How long and how many execution records are kept.
    pub executions_keep_for: Duration,
    pub executions_keep_max: usize,
    /// The command-line settings this config was loaded with, so a reload
    /// reads the file the same way.
    pub overrides: Overrides,
    /// Things worth a log line at start-up (open sources, unset optional
    /// variables). Never contains a secret.
    pub warnings: Vec<String>,
}

/// One webhook URL: `POST /hooks/<id>`.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub id: String,
    pub provider: Provider,
    /// Our number for this URL, when the payloads do not carry it.
    pub business: Option<String>,
    pub auth: SourceAuth,
    /// Meta's GET subscription handshake.
    pub verify_token: Option<Secret>,
    /// No accept/reject within this: ringback emits `call.missed`.
    pub ring_timeout: Option<Duration>,
}

impl SourceConfig {
    /// How a delivery to this source is parsed.
    pub fn parse_context<'a>(
        &'a self,
        received_at: jiff::Timestamp,
        delivery_id: Option<&'a str>,
    ) -> crate::event::ParseContext<'a> {
        crate::event::ParseContext {
            source: &self.id,
            provider: self.provider,
            business: self.business.as_deref(),
            received_at,
            delivery_id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind {
    Meta,
    Waha,
    Slack,
    Http,
    Log,
}

impl ConnectorKind {
    const NAMES: [(&'static str, ConnectorKind); 5] = [
        ("meta", ConnectorKind::Meta),
        ("waha", ConnectorKind::Waha),
        ("slack", ConnectorKind::Slack),
        ("http", ConnectorKind::Http),
        ("log", ConnectorKind::Log),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// Where actions go (SPEC §5). Keys that do not apply to the kind are
/// refused at load, so a typo cannot silently drop a setting.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub name: String,
    pub kind: ConnectorKind,
    pub phone_number_id: Option<String>,
    pub token: Option<Secret>,
    pub base_url: Option<String>,
    pub session: Option<String>,
    pub api_key: Option<Secret>,
    pub url: Option<String>,
    pub headers: BTreeMap<String, Secret>,
    pub secret: Option<Secret>,
    pub timeout: Option<Duration>,
    /// Requests per second.
    pub rate_limit: Option<f64>,
    /// Delays before each further attempt; `Some(vec![])` means one attempt.
    pub retry: Option<Vec<Duration>>,
}

#[derive(Debug, Clone)]
pub struct OutboundConfig {
    pub allow_cidrs: Vec<Cidr>,
    pub timeout: Duration,
}

/// An address range such as `127.0.0.1/32` or `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| {
            format!("`{text}` is not an address range (write e.g. 10.0.0.0/8 or ::1/128)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Settings given on the command line; they win over everything.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub workflows_dir: Option<PathBuf>,
}

/// Every problem found while loading, printed one per line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.0))]
pub struct ConfigErrors(pub Vec<Diagnostic>);

fn render(errs: &[Diagnostic]) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Read the environment. Tests pass their own map.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Config {
    /// Find and load the configuration: `--config`, else `RINGBACK_CONFIG`,
    /// else `./ringback.yaml` when it exists, else all defaults.
    pub fn load(overrides: &Overrides, env: &dyn Env) -> Result<Config, ConfigErrors> {
        let explicit = overrides
            .config
            .clone()
            .or_else(|| env.var("RINGBACK_CONFIG").map(PathBuf::from));
        let file = match explicit {
            Some(path) => Some(path),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                default.exists().then_some(default)
            }
        };
        let text = match &file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                ConfigErrors(vec![Diagnostic {
                    file: path.display().to_string(),
                    pos: Pos { line: 0, col: 0 },
                    message: format!("cannot read the config file: {e}"),
                    hint: None,
                }])
            })?,
            None => String::new(),
        };
        let name = file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<defaults>".to_string());
        let mut config = Config::from_text(&name, &text, overrides, env)?;
        config.file = file;
        Ok(config)
    }

    /// Validate a config file's text.
    pub fn from_text(
        file: &str,
        text: &str,
        overrides: &Overrides,
        env: &dyn Env,
    ) -> Result<Config, ConfigErrors> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        let mut doc = Document::parse(file, text).map_err(|d| ConfigErrors(vec![d]))?;
        let mut errs = Vec::new();
        let mut warnings = Vec::new();
        let mut unset = HashMap::new();
        let mut value = std::mem::take(&mut doc.value);
        interpolate(&doc, &mut value, "", env, &mut unset, &mut errs);
        doc.value = value;
        let mut ctx = Ctx {
            unset: &unset,
            errs: &mut errs,
            warnings: &mut warnings,
        };
        let config = read_config(&doc, overrides, env, &mut ctx);
        if !errs.is_empty() {
            errs.sort_by_key(|d| (d.pos.line, d.pos.col));
            return Err(ConfigErrors(errs));
        }
        let mut config = config.expect("no errors means a config was built");
        config.warnings = warnings;
        Ok(config)
    }

    pub fn source(&self, id: &str) -> Option<&SourceConfig> {
        self.sources.get(id)
    }
}

struct Ctx<'a> {
    /// Paths whose whole value was an unset `${VAR}`, with the variable.
    unset: &'a HashMap<String, String>,
    errs: &'a mut Vec<Diagnostic>,
    warnings: &'a mut Vec<String>,
}

impl Ctx<'_> {
    /// An optional field that came out empty because its variable is unset.
    fn note_optional(&mut self, path: &str) {
        if let Some(var) = self.unset.get(path) {
            self.warnings.push(format!(
                "`{path}` is not set: environment variable {var} is unset"
            ));
        }
    }

    /// A required field is missing: say so, naming the variable if that is why.
    fn missing(&mut self, doc: &Document, path: &str, what: &str) {
        let d = match self.unset.get(path) {
            Some(var) => doc.error(
                path,
                format!("environment variable {var} is not set (needed for {what})"),
            ),
            None => doc.error(path, format!("{what} is required")),
        };
        self.errs.push(d);
    }
}

/// Replace `${VAR}` in every string leaf.
fn interpolate(
    doc: &Document,
    value: &mut Value,
    path: &str,
    env: &dyn Env,
    unset: &mut HashMap<String, String>,
    errs: &mut Vec<Diagnostic>,
) {
    match value {
        Value::String(s) if s.contains('$') => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            let mut missing: Vec<String> = Vec::new();
            while let Some(i) = rest.find('$') {
                out.push_str(&rest[..i]);
                let after = &rest[i..];
                if let Some(tail) = after.strip_prefix("$${") {
                    out.push_str("${");
                    rest = tail;
                } else if let Some(tail) = after.strip_prefix("${") {
                    match tail.find('}') {
                        Some(end) => {
                            let name = &tail[..end];
                            let valid = !name.is_empty()
                                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                            if !valid {
                                errs.push(doc.error(
                                    path,
                                    format!("`${{{name}}}` is not a valid variable name"),
                                ));
                            } else {
                                match env.var(name) {
                                    Some(v) => out.push_str(&v),
                                    None => missing.push(name.to_string()),
                                }
                            }
                            rest = &tail[end + 1..];
                        }
                        None => {
                            errs.push(
                                doc.error(
                                    path,
                                    "unterminated `${` (write `$${` for a literal `${`)",
                                ),
                            );
                            rest = "";
                        }
                    }
                } else {
                    out.push('$');
                    rest = &after[1..];
                }
            }
            out.push_str(rest);
            let whole = s.trim().starts_with("${")
                && s.trim().ends_with('}')
                && s.trim().matches("${").count() == 1;
            match missing.as_slice() {
                [] => *s = out,
                [var] if whole => {
                    unset.insert(path.to_string(), var.clone());
                    *value = Value::Null;
                }
                vars => errs.push(doc.error(
                    path,
                    format!("environment variable {} is not set", vars.join(", ")),
                )),
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(doc, item, &join_index(path, i), env, unset, errs);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let p = crate::yaml::join_key(path, k);
                interpolate(doc, v, &p, env, unset, errs);
            }
        }
        _ => {}
    }
}

fn read_config(
    doc: &Document,
    overrides: &Overrides,
    env: &dyn Env,
    ctx: &mut Ctx,
) -> Option<Config> {
    let mut f = Fields::new(doc, "", &doc.value, "the config file", ctx.errs)?;

    let listen_text = overrides
        .listen
        .clone()
        .or_else(|| env.var("RINGBACK_LISTEN"))
        .or_else(|| f.string("listen", ctx.errs))
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let _ = f.get("listen");
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            ctx.errs.push(
                doc.error(
                    "listen",
                    format!("listen: `{listen_text}` is not an address"),
                )
                .with_hint("write IP:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080"),
            );
            None
        }
    };
    let data_dir = overrides
        .data_dir
        .clone()
        .or_else(|| env.var("RINGBACK_DATA").map(PathBuf::from))
        .or_else(|| f.string("data_dir", ctx.errs).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let _ = f.get("data_dir");
    let workflows_dir = overrides
        .workflows_dir
        .clone()
        .or_else(|| env.var("RINGBACK_WORKFLOWS").map(PathBuf::from))
        .or_else(|| f.string("workflows_dir", ctx.errs).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_WORKFLOWS_DIR));
    let _ = f.get("workflows_dir");

    let errs_before = ctx.errs.len();
    let admin_token = secret_field(&mut f, "admin_token", ctx);
    // A token that was written but is unusable (empty, a number) already has
    // its own error; "needs an admin_token" on top would only confuse.
    let admin_token_refused = ctx.errs.len() > errs_before;
    if let (Some(addr), None, false) = (listen, &admin_token, admin_token_refused) {
        if !addr.ip().is_loopback() {
            ctx.errs.push(
                doc.error(
                    "listen",
                    format!("listening on {addr}, which is not a loopback address, needs an admin_token"),
                )
                .with_hint("set admin_token: ${RINGBACK_ADMIN_TOKEN} and export RINGBACK_ADMIN_TOKEN, or listen on 127.0.0.1"),
            );
        }
    }

    let max_body_bytes = match f.get("max_body_bytes") {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(v) => match v.as_u64().filter(|n| *n >= 1024 && *n <= 64 * 1024 * 1024) {
            Some(n) => n as usize,
            None => {
                ctx.errs.push(doc.error(
                    "max_body_bytes",
                    format!("max_body_bytes must be a whole number of bytes from 1024 to 67108864, got {v}"),
                ));
                DEFAULT_MAX_BODY_BYTES
            }
        },
    };
    let dedupe_window =
        duration_field(&mut f, "dedupe_window", ctx).unwrap_or(DEFAULT_DEDUPE_WINDOW);

    let mut sources = BTreeMap::new();
    if let Some(v) = f.get("sources") {
        if let Some(map) = mapping(doc, "sources", v, "sources", ctx.errs) {
            for (id, spec) in map {
                let path = format!("sources.{id}");
                if !valid_id(id) {
                    ctx.errs.push(
                        doc.key_error(&path, format!("source id `{id}` cannot be used in a URL"))
                            .with_hint("use letters, digits, `-` and `_`"),
                    );
                }
                if let Some(src) = read_source(doc, &path, id, spec, ctx) {
                    sources.insert(id.clone(), src);
                }
            }
        }
    }

    let mut connectors = BTreeMap::new();
    if let Some(v) = f.get("connectors") {
        if let Some(map) = mapping(doc, "connectors", v, "connectors", ctx.errs) {
            for (name, spec) in map {
                let path = format!("connectors.{name}");
                if let Some(c) = read_connector(doc, &path, name, spec, ctx) {
                    connectors.insert(name.clone(), c);
                }
            }
        }
    }

    let outbound = match f.get("outbound") {
        None => OutboundConfig {
            allow_cidrs: Vec::new(),
            timeout: DEFAULT_OUTBOUND_TIMEOUT,
        },
        Some(v) => read_outbound(doc, v, ctx),
    };
    let mut executions_keep_for = DEFAULT_EXECUTIONS_KEEP_FOR;
    let mut executions_keep_max = DEFAULT_EXECUTIONS_KEEP_MAX;
    if let Some(v) = f.get("executions") {
        let mut errs = Vec::new();
        if let Some(mut ef) = Fields::new(doc, "executions", v, "executions", &mut errs) {
            if let Some(d) = duration_field(&mut ef, "keep_for", ctx) {
                executions_keep_for = d;
            }
            if let Some(n) = ef.get("keep_max") {
                match n.as_u64().filter(|n| *n >= 1) {
                    Some(n) => executions_keep_max = n as usize,
                    None => errs.push(doc.error(
                        "executions.keep_max",
                        format!("keep_max must be a positive whole number, got {n}"),
                    )),
                }
            }
            ef.finish(&mut errs);
        }
        ctx.errs.extend(errs);
    }
    f.finish(ctx.errs);

    for src in sources.values() {
        if src.auth.is_open() {
            ctx.warnings.push(format!(
                "source `{}` has no token or signing secret: it accepts unsigned requests",
                src.id
            ));
        }
    }

    Some(Config {
        file: None,
        listen: listen?,
        data_dir,
        workflows_dir,
        admin_token,
        max_body_bytes,
        dedupe_window,
        sources,
        connectors,
        outbound,
        executions_keep_for,
        executions_keep_max,
        overrides: overrides.clone(),
        warnings: Vec::new(),
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn mapping<'d>(
    doc: &Document,
    path: &str,
    v: &'d Value,
    what: &str,
    errs: &mut Vec<Diagnostic>,
) -> Option<&'d serde_json::Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        other => {
            errs.push(doc.error(
                path,
                format!("{what} must be a mapping, got {}", type_name(other)),
            ));
            None
        }
    }
}

fn duration_field(f: &mut Fields, key: &'static str, ctx: &mut Ctx) -> Option<Duration> {
    let path = f.path_of(key);
    let doc = f.doc();
    match f.get(key)? {
        Value::String(s) => match parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                ctx.errs.push(doc.error(&path, format!("{key}: {e}")));
                None
            }
        },
        other => {
            ctx.errs.push(
                doc.error(
                    &path,
                    format!("{key} must be a duration, got {}", type_name(other)),
                )
                .with_hint("write a number with a unit: 250ms, 90s, 2m, 1h, 7d"),
            );
            None
        }
    }
}

/// A secret: a non-empty string. No error about it ever repeats its value.
fn secret_field(f: &mut Fields, key: &'static str, ctx: &mut Ctx) -> Option<Secret> {
    let s = f.secret_string(key, ctx.errs);
    if s.is_none() {
        ctx.note_optional(&f.path_of(key));
    }
    match s {
        Some(s) if s.is_empty() => {
            let path = f.path_of(key);
            ctx.errs
                .push(f.doc().error(&path, format!("{key} is empty")));
            None
        }
        other => other.map(Secret::new),
    }
}

/// One entry of a source's `secrets`. It serves two schemes: Standard
/// Webhooks (`webhook-signature`), keyed with the base64 after `whsec_`,
/// and `X-Webhook-Signature`, keyed with the secret as written (seed 004:
/// its `whsec_` secrets need not be base64). A secret that does not decode
/// can only ever verify the second, so it is kept with a warning naming
/// the entry (`what`, e.g. `secrets[1]`), never its value: silently, every
/// Standard Webhooks delivery would fail with "signature does not match".
fn standard_secret(doc: &Document, path: &str, what: &str, text: &str, ctx: &mut Ctx) -> Secret {
    let secret = Secret::new(text);
    if !crate::event::is_standard_secret(&secret) {
        let pos = doc.pos(path);
        ctx.warnings.push(format!(
            "{}:{}:{}: {what} is not a Standard Webhooks secret (whsec_ then base64): it verifies only \
             X-Webhook-Signature (hex HMAC-SHA256 keyed with the secret as written), never webhook-signature",
            doc.file, pos.line, pos.col
        ));
    }
    secret
}

/// Which secrets apply to which provider.
fn provider_keys(p: Provider) -> &'static [&'static str] {
    match p {
        Provider::Waha => &["hmac_key", "token"],
        Provider::Meta => &["app_secret", "verify_token", "token"],
        Provider::Standard => &["secrets", "token"],
        Provider::Auto => &["hmac_key", "app_secret", "verify_token", "secrets", "token"],
        Provider::Wazzap | Provider::Timelinesai | Provider::V3 => &["token"],
    }
}

fn read_source(
    doc: &Document,
    path: &str,
    id: &str,
    spec: &Value,
    ctx: &mut Ctx,
) -> Option<SourceConfig> {
    let mut f = Fields::new(doc, path, spec, &format!("source `{id}`"), ctx.errs)?;
    let provider = match f.string("provider", ctx.errs) {
        None => Provider::Auto,
        Some(name) => match Provider::parse_name(&name) {
            Some(p) => p,
            None => {
                let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
                let mut d = doc.error(&f.path_of("provider"), format!("unknown provider `{name}`"));
                d = match crate::yaml::closest(&name, &names) {
                    Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                    None => d.with_hint(format!("one of: {}", names.join(", "))),
                };
                ctx.errs.push(d);
                Provider::Auto
            }
        },
    };
    let business = f.string("business", ctx.errs);
    if let Some(b) = &business {
        if b.starts_with('+') || b.chars().all(|c| c.is_ascii_digit()) {
            if let Err(e) = crate::event::normalise_phone(b) {
                ctx.errs
                    .push(doc.error(&f.path_of("business"), format!("business: {e}")));
            }
        }
    }
    let token = secret_field(&mut f, "token", ctx);
    let hmac_key = secret_field(&mut f, "hmac_key", ctx);
    let app_secret = secret_field(&mut f, "app_secret", ctx);
    let verify_token = secret_field(&mut f, "verify_token", ctx);
    let mut secrets = Vec::new();
    if let Some(v) = f.get("secrets") {
        let secrets_path = f.path_of("secrets");
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = join_index(&secrets_path, i);
                    match item {
                        Value::String(s) if !s.is_empty() => {
                            let what = format!("source `{id}`: secrets[{i}]");
                            secrets.push(standard_secret(doc, &p, &what, s, ctx));
                        }
                        Value::Null => ctx.note_optional(&p),
                        _ => ctx
                            .errs
                            .push(doc.error(&p, "each secret must be a non-empty string")),
                    }
                }
            }
            Value::String(s) if !s.is_empty() => {
                let what = format!("source `{id}`: secrets");
                secrets.push(standard_secret(doc, &secrets_path, &what, s, ctx));
            }
            Value::String(_) => ctx.errs.push(doc.error(&secrets_path, "secrets is empty")),
            other => ctx.errs.push(doc.error(
                &f.path_of("secrets"),
                format!(
                    "secrets must be a list of strings, got {}",
                    type_name(other)
                ),
            )),
        }
    }
    let ring_timeout = duration_field(&mut f, "ring_timeout", ctx);
    let allowed = provider_keys(provider);
    for (key, present) in [
        ("hmac_key", hmac_key.is_some()),
        ("app_secret", app_secret.is_some()),
        ("verify_token", verify_token.is_some()),
        ("secrets", !secrets.is_empty()),
    ] {
        if present && !allowed.contains(&key) {
            ctx.errs.push(
                doc.key_error(
                    &f.path_of(key),
                    format!("`{key}` is not used by provider {provider}"),
                )
                .with_hint(format!("provider {provider} takes: {}", allowed.join(", "))),
            );
        }
    }
    f.finish(ctx.errs);
    let ring_timeout =
        ring_timeout.or((provider == Provider::Waha).then_some(DEFAULT_WAHA_RING_TIMEOUT));
    Some(SourceConfig {
        id: id.to_string(),
        provider,
        business,
        auth: SourceAuth {
            token,
            waha_hmac_key: hmac_key,
            meta_app_secret: app_secret,
            standard_secrets: secrets,
        },
        verify_token,
        ring_timeout,
    })
}

fn read_connector(
    doc: &Document,
    path: &str,
    name: &str,
    spec: &Value,
    ctx: &mut Ctx,
) -> Option<ConnectorConfig> {
    let mut f = Fields::new(doc, path, spec, &format!("connector `{name}`"), ctx.errs)?;
    let kind = match f.string("kind", ctx.errs) {
        None => {
            ctx.missing(
                doc,
                &f.path_of("kind"),
                &format!("connector `{name}`: kind"),
            );
            None
        }
        Some(k) => match ConnectorKind::NAMES.iter().find(|(n, _)| *n == k) {
            Some((_, kind)) => Some(*kind),
            None => {
                let names: Vec<&str> = ConnectorKind::NAMES.iter().map(|(n, _)| *n).collect();
                ctx.errs.push(
                    doc.error(&f.path_of("kind"), format!("unknown connector kind `{k}`"))
                        .with_hint(format!("one of: {}", names.join(", "))),
                );
                None
            }
        },
    };
    let phone_number_id = f.string("phone_number_id", ctx.errs);
    let token = secret_field(&mut f, "token", ctx);
    let base_url = f.string("base_url", ctx.errs);
    let session = f.string("session", ctx.errs);
    let api_key = secret_field(&mut f, "api_key", ctx);
    let url = f.string("url", ctx.errs);
    let secret = secret_field(&mut f, "secret", ctx);
    let mut headers = BTreeMap::new();
    if let Some(v) = f.get("headers") {
        if let Some(map) = mapping(doc, &f.path_of("headers"), v, "headers", ctx.errs) {
            for (k, v) in map {
                match v {
                    Value::String(s) => {
                        headers.insert(k.clone(), Secret::new(s.clone()));
                    }
                    other => ctx.errs.push(doc.error(
                        &format!("{}.{k}", f.path_of("headers")),
                        format!("header `{k}` must be a string, got {}", type_name(other)),
                    )),
                }
            }
        }
    }
    let timeout = duration_field(&mut f, "timeout", ctx);
    let rate_limit = match f.get("rate_limit") {
        None => None,
        Some(v) => match v.as_f64().filter(|r| *r > 0.0 && r.is_finite()) {
            Some(r) => Some(r),
            None => {
                ctx.errs.push(doc.error(
                    &f.path_of("rate_limit"),
                    format!("rate_limit must be a positive number of requests per second, got {v}"),
                ));
                None
            }
        },
    };
    let retry = match f.get("retry") {
        None => None,
        Some(v) => read_retry(doc, &f.path_of("retry"), v, ctx.errs),
    };

    if let Some(kind) = kind {
        let (required, allowed): (&[(&str, bool)], &[&str]) = match kind {
            ConnectorKind::Meta => (
                &[
                    ("phone_number_id", phone_number_id.is_some()),
                    ("token", token.is_some()),
                ],
                &["phone_number_id", "token", "base_url"],
            ),
            ConnectorKind::Waha => (
                &[("base_url", base_url.is_some())],
                &["base_url", "session", "api_key"],
            ),
            ConnectorKind::Slack => (&[("url", url.is_some())], &["url"]),
            ConnectorKind::Http => (&[("url", url.is_some())], &["url", "headers", "secret"]),
            ConnectorKind::Log => (&[], &[]),
        };
        for (key, present) in required {
            if !present {
                let p = f.path_of(key);
                if ctx.unset.contains_key(&p) {
                    ctx.missing(doc, &p, &format!("connector `{name}` ({})", kind.as_str()));
                } else {
                    ctx.errs.push(doc.error(
                        path,
                        format!("connector `{name}` of kind {} needs `{key}`", kind.as_str()),
                    ));
                }
            }
        }
        for (key, present) in [
            ("phone_number_id", phone_number_id.is_some()),
            ("token", token.is_some()),
            ("base_url", base_url.is_some()),
            ("session", session.is_some()),
            ("api_key", api_key.is_some()),
            ("url", url.is_some()),
            ("headers", !headers.is_empty()),
            ("secret", secret.is_some()),
        ] {
            if present && !allowed.contains(&key) {
                ctx.errs.push(
                    doc.key_error(
                        &f.path_of(key),
                        format!(
                            "`{key}` is not used by connectors of kind {}",
                            kind.as_str()
                        ),
                    )
                    .with_hint(if allowed.is_empty() {
                        format!(
                            "kind {} takes only timeout, rate_limit and retry",
                            kind.as_str()
                        )
                    } else {
                        format!("kind {} takes: {}", kind.as_str(), allowed.join(", "))
                    }),
                );
            }
        }
        for (key, value) in [("base_url", &base_url), ("url", &url)] {
            if let Some(u) = value {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    // The value is not echoed: a Slack webhook URL is a
                    // credential, and this error reaches the server log on
                    // a reload. The position points at it.
                    let found = match u.split_once("://") {
                        Some((scheme, _)) if scheme.len() <= 10 => {
                            format!("it starts with {scheme}://")
                        }
                        _ => "it has no scheme".to_string(),
                    };
                    ctx.errs.push(doc.error(
                        &f.path_of(key),
                        format!("{key} must start with http:// or https:// ({found})"),
                    ));
                }
            }
        }
        if let (Some(s), ConnectorKind::Http) = (&secret, kind) {
            if !crate::event::is_standard_secret(s) {
                ctx.errs.push(doc.error(
                    &f.path_of("secret"),
                    "secret must be a Standard Webhooks secret: whsec_ followed by base64",
                ));
            }
        }
    }
    f.finish(ctx.errs);
    Some(ConnectorConfig {
        name: name.to_string(),
        kind: kind?,
        phone_number_id,
        token,
        base_url,
        session,
        api_key,
        url,
        headers,
        secret,
        timeout,
        rate_limit,
        retry,
    })
}

/// `retry: {schedule: [5s, 30s, ...]}`; shared with workflow steps.
pub fn read_retry(
    doc: &Document,
    path: &str,
    v: &Value,
    errs: &mut Vec<Diagnostic>,
) -> Option<Vec<Duration>> {
    let mut f = Fields::new(doc, path, v, "retry", errs)?;
    let schedule_path = f.path_of("schedule");
    let out = match f.get("schedule") {
        None => {
            errs.push(doc.error(
                path,
                "retry needs a `schedule` list, e.g. {schedule: [5s, 30s, 2m]}",
            ));
            None
        }
        Some(Value::Array(items)) => {
            let mut delays = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let p = join_index(&schedule_path, i);
                match item.as_str().map(parse_duration) {
                    Some(Ok(d)) => delays.push(d),
                    Some(Err(e)) => errs.push(doc.error(&p, e)),
                    None => errs.push(doc.error(
                        &p,
                        format!("a retry delay must be a duration, got {}", type_name(item)),
                    )),
                }
            }
            Some(delays)
        }
        Some(other) => {
            errs.push(doc.error(
                &schedule_path,
                format!(
                    "schedule must be a list of durations, got {}",
                    type_name(other)
                ),
            ));
            None
        }
    };
    f.finish(errs);
    out
}

fn read_outbound(doc: &Document, v: &Value, ctx: &mut Ctx) -> OutboundConfig {
    let mut out = OutboundConfig {
        allow_cidrs: Vec::new(),
        timeout: DEFAULT_OUTBOUND_TIMEOUT,
    };
    let Some(mut f) = Fields::new(doc, "outbound", v, "outbound", ctx.errs) else {
        return out;
    };
    if let Some(v) = f.get("allow_cidrs") {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = join_index("outbound.allow_cidrs", i);
                    match item.as_str().map(Cidr::parse) {
                        Some(Ok(c)) => out.allow_cidrs.push(c),
                        Some(Err(e)) => ctx.errs.push(doc.error(&p, e)),
                        None => ctx.errs.push(
                            doc.error(&p, "an address range must be a string like 10.0.0.0/8"),
                        ),
                    }
                }
            }
            other => ctx.errs.push(doc.error(
                "outbound.allow_cidrs",
                format!("allow_cidrs must be a list, got {}", type_name(other)),
            )),
        }
    }
    if let Some(t) = duration_field(&mut f, "timeout", ctx) {
        out.timeout = t;
    }
    f.finish(ctx.errs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(text: &str, e: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        Config::from_text("ringback.yaml", text, &Overrides::default(), &env(e))
    }

    fn errors(text: &str, e: &[(&str, &str)]) -> Vec<String> {
        load(text, e)
            .unwrap_err()
            .0
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    const SPEC_EXAMPLE: &str = r#"
listen: 127.0.0.1:8080
data_dir: ./data
workflows_dir: ./workflows
admin_token: ${RINGBACK_ADMIN_TOKEN}
max_body_bytes: 262144
dedupe_window: 7d
sources:
  wazzap-mx:
    provider: wazzap
    business: "+5215500000000"
    token: ${WAZZAP_TOKEN}
  wawp:
    provider: waha
    hmac_key: ${WAHA_HMAC_KEY}
    ring_timeout: 60s
  meta:
    provider: meta
    app_secret: ${META_APP_SECRET}
    verify_token: ${META_VERIFY_TOKEN}
  timelines:
    provider: timelinesai
    token: ${TIMELINES_TOKEN}
  relay:
    provider: standard
    secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_b2xkc2VjcmV0]
  anything:
    provider: auto
connectors:
  whatsapp: { kind: log }
  slack:    { kind: log }
outbound:
  allow_cidrs: [127.0.0.1/32]
  timeout: 10s
"#;

    #[test]
    fn the_spec_example_loads_with_every_variable_set() {
        let c = load(
            SPEC_EXAMPLE,
            &[
                ("RINGBACK_ADMIN_TOKEN", "adm"),
                ("WAZZAP_TOKEN", "wz"),
                ("WAHA_HMAC_KEY", "hk"),
                ("META_APP_SECRET", "ms"),
                ("META_VERIFY_TOKEN", "mv"),
                ("TIMELINES_TOKEN", "tl"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.dedupe_window, Duration::from_secs(7 * 86400));
        assert_eq!(c.sources.len(), 6);
        let wz = &c.sources["wazzap-mx"];
        assert_eq!(wz.provider, Provider::Wazzap);
        assert_eq!(wz.business.as_deref(), Some("+5215500000000"));
        assert_eq!(wz.auth.token.as_ref().map(Secret::expose), Some("wz"));
        assert_eq!(
            c.sources["wawp"].ring_timeout,
            Some(Duration::from_secs(60))
        );
        assert_eq!(c.sources["relay"].auth.standard_secrets.len(), 2);
        assert_eq!(c.sources["anything"].provider, Provider::Auto);
        assert_eq!(c.connectors["whatsapp"].kind, ConnectorKind::Log);
        assert!(c.outbound.allow_cidrs[0].contains("127.0.0.1".parse().unwrap()));
        // Only the deliberately open source is warned about.
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    }

    #[test]
    fn an_unset_variable_in_an_optional_secret_leaves_it_out_with_a_warning() {
        let c = load(SPEC_EXAMPLE, &[]).unwrap();
        assert!(c.admin_token.is_none());
        assert!(c.sources["wazzap-mx"].auth.is_open());
        assert!(
            c.warnings.iter().any(|w| w.contains("WAZZAP_TOKEN")),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("`wazzap-mx` has no token")),
            "{:?}",
            c.warnings
        );
        // The warnings name variables, never values.
        let c = load(SPEC_EXAMPLE, &[("WAZZAP_TOKEN", "sekrit-value")]).unwrap();
        assert!(!c.warnings.join(" ").contains("sekrit"));
        assert!(!format!("{c:?}").contains("sekrit"));
    }

    #[test]
    fn an_unset_variable_inside_a_value_or_in_a_required_field_is_an_error_naming_it() {
        let errs = errors(
            "connectors:\n  a: { kind: slack, url: \"https://hooks/${SLACK_PATH}\" }\n",
            &[],
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("SLACK_PATH"), "{errs:?}");
        assert!(errs[0].starts_with("ringback.yaml:2:"), "{errs:?}");
        let errs = errors(
            "connectors:\n  wa: { kind: meta, phone_number_id: \"1\", token: \"${META_TOKEN}\" }\n",
            &[],
        );
        assert!(
            errs.iter().any(|e| e.contains("META_TOKEN is not set")),
            "{errs:?}"
        );
    }

    #[test]
    fn every_error_is_reported_at_once_with_its_position() {
        let text = "\
listen: nowhere
dedupe_window: 7 days
sources:
  a:
    provider: wahha
    hmac_kye: x
  b:
    provider: wazzap
    hmac_key: y
connectors:
  c: { kind: smtp }
  d: { kind: meta }
bogus: 1
";
        let errs = errors(text, &[]);
        let joined = errs.join("\n");
        assert!(
            joined.contains("ringback.yaml:1:9: listen: `nowhere` is not an address"),
            "{joined}"
        );
        assert!(
            joined.contains("ringback.yaml:2:16: dedupe_window:"),
            "{joined}"
        );
        assert!(
            joined.contains("unknown provider `wahha`") && joined.contains("did you mean `waha`?"),
            "{joined}"
        );
        assert!(
            joined.contains("ringback.yaml:6:5: unknown key `hmac_kye`"),
            "{joined}"
        );
        assert!(
            joined.contains("`hmac_key` is not used by provider wazzap"),
            "{joined}"
        );
        assert!(joined.contains("unknown connector kind `smtp`"), "{joined}");
        assert!(
            joined.contains("connector `d` of kind meta needs `phone_number_id`"),
            "{joined}"
        );
        assert!(
            joined.contains("ringback.yaml:13:1: unknown key `bogus`"),
            "{joined}"
        );
        assert!(errs.len() >= 9, "{joined}");
    }

    #[test]
    fn a_public_listen_address_needs_an_admin_token() {
        let errs = errors("listen: 0.0.0.0:8080\n", &[]);
        assert!(errs[0].contains("needs an admin_token"), "{errs:?}");
        assert!(load("listen: 0.0.0.0:8080\nadmin_token: t0k\n", &[]).is_ok());
        assert!(load("listen: \"[::1]:8080\"\n", &[]).is_ok());
    }

    #[test]
    fn environment_overrides_the_file_and_flags_override_everything() {
        let e = env(&[
            ("RINGBACK_LISTEN", "127.0.0.1:9000"),
            ("RINGBACK_DATA", "/tmp/env-data"),
        ]);
        let c = Config::from_text(
            "r.yaml",
            "listen: 127.0.0.1:8000\ndata_dir: /tmp/file\n",
            &Overrides::default(),
            &e,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/env-data"));
        let flags = Overrides {
            listen: Some("127.0.0.1:9100".into()),
            ..Default::default()
        };
        let c = Config::from_text("r.yaml", "listen: 127.0.0.1:8000\n", &flags, &e).unwrap();
        assert_eq!(c.listen.port(), 9100);
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.sources.is_empty());
    }

    #[test]
    fn an_unquoted_business_number_gets_a_quoting_hint() {
        let errs = errors(
            "sources:\n  s: { provider: wazzap, business: +5215500000000 }\n",
            &[],
        );
        assert!(errs[0].contains("quote it"), "{errs:?}");
    }

    #[test]
    fn a_secret_written_as_a_number_is_never_repeated_in_an_error() {
        // Each secret field gets its own number, so a leak names the field.
        let text = "\
admin_token: 9823749823740001
sources:
  a: { provider: wazzap, token: 9823749823740002 }
  b: { provider: waha, hmac_key: 9823749823740003 }
  c: { provider: meta, app_secret: 9823749823740004, verify_token: 9823749823740005 }
  d: { provider: standard, secrets: [9823749823740006] }
  e: { provider: standard, secrets: 9823749823740007 }
connectors:
  m: { kind: meta, phone_number_id: \"1\", token: 9823749823740008 }
  w: { kind: waha, base_url: \"http://w\", api_key: 9823749823740009 }
  h: { kind: http, url: \"http://h\", secret: 9823749823740010, headers: { X-Key: 9823749823740011 } }
";
        let errs = errors(text, &[]);
        let joined = errs.join("\n");
        for n in 1..=11 {
            let value = format!("98237498237400{n:02}");
            assert!(!joined.contains(&value), "{value} leaked:\n{joined}");
        }
        // The tell-tale prefix of every value, in case one is reformatted.
        assert!(!joined.contains("982374982"), "{joined}");
        for expected in [
            "ringback.yaml:1:14: `admin_token` must be a string, got a number",
            "ringback.yaml:3:33: `token` must be a string, got a number",
            "ringback.yaml:4:34: `hmac_key` must be a string, got a number",
            "ringback.yaml:5:36: `app_secret` must be a string, got a number",
            "`verify_token` must be a string, got a number",
            "ringback.yaml:6:38: each secret must be a non-empty string",
            "ringback.yaml:7:37: secrets must be a list of strings, got a number",
            "`api_key` must be a string, got a number",
            "`secret` must be a string, got a number",
            "header `X-Key` must be a string, got a number",
        ] {
            assert!(joined.contains(expected), "missing {expected:?}:\n{joined}");
        }
        assert!(joined.contains("hint: quote the value"), "{joined}");
        // The same through ${VAR}: a variable always expands to a string, so
        // the value is accepted, not echoed.
        assert!(load("admin_token: ${A}\n", &[("A", "9823749823740001")]).is_ok());
    }

    /// A connector URL without `http(s)://` is refused without repeating
    /// it: a Slack webhook URL is a credential, and a reload's errors go to
    /// the server log.
    #[test]
    fn a_connector_url_without_a_scheme_is_refused_without_repeating_it() {
        let errs = errors(
            "connectors:\n  s: { kind: slack, url: \"hooks.slack.com/services/T1/B2/XyZsecret123\" }\n  \
             h: { kind: http, url: \"ftp://XyZsecret456\" }\n",
            &[],
        );
        let joined = errs.join("\n");
        assert!(!joined.contains("XyZsecret"), "{joined}");
        assert!(
            joined.contains(
                "ringback.yaml:2:26: url must start with http:// or https:// (it has no scheme)"
            ),
            "{joined}"
        );
        assert!(
            joined.contains("url must start with http:// or https:// (it starts with ftp://)"),
            "{joined}"
        );
    }

    /// A `secrets` entry that is not `whsec_<base64>` cannot verify a
    /// Standard Webhooks signature: it loads (the `X-Webhook-Signature`
    /// scheme uses it as written) with a warning that names the entry and
    /// says so, never its value.
    #[test]
    fn a_standard_webhooks_secret_that_does_not_decode_is_warned_about() {
        let text = "\
sources:
  relay:
    provider: standard
    secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, \"whsec_not*base64!!\", \"${NEXT}\"]
  one:
    provider: auto
    secrets: whsec_abc
";
        let c = load(text, &[("NEXT", "whsec_also~not~base64")]).unwrap();
        assert_eq!(c.sources["relay"].auth.standard_secrets.len(), 3);
        let joined = c.warnings.join("\n");
        for expected in [
            "ringback.yaml:4:55: source `relay`: secrets[1] is not a Standard Webhooks secret",
            "ringback.yaml:4:77: source `relay`: secrets[2] is not a Standard Webhooks secret",
            "ringback.yaml:7:14: source `one`: secrets is not a Standard Webhooks secret",
        ] {
            assert!(joined.contains(expected), "missing {expected:?}:\n{joined}");
        }
        assert!(!joined.contains("secrets[0]"), "{joined}");
        for value in ["not*base64", "also~not", "abc"] {
            assert!(!joined.contains(value), "{value} leaked:\n{joined}");
        }
        // The prefix is optional, as in the verifier: no warning.
        let c = load(
            "sources:\n  s: { provider: standard, secrets: [MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw] }\n",
            &[],
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn an_admin_token_that_expands_to_nothing_is_refused() {
        let text = "listen: 0.0.0.0:8080\nadmin_token: ${EMPTYTOK}\n";
        let errs = errors(text, &[("EMPTYTOK", "")]);
        assert_eq!(
            errs,
            ["ringback.yaml:2:14: admin_token is empty"],
            "one error, not also `needs an admin_token`"
        );
        // On loopback too: an empty token would lock every /api call out.
        let errs = errors("admin_token: \"\"\n", &[]);
        assert_eq!(errs, ["ringback.yaml:1:14: admin_token is empty"]);
        // Unset still means "no token", which only loopback allows.
        assert!(load("admin_token: ${EMPTYTOK}\n", &[]).is_ok());
        let errs = errors(text, &[]);
        assert!(errs[0].contains("needs an admin_token"), "{errs:?}");
        let c = load(text, &[("EMPTYTOK", "t0k")]).unwrap();
        assert_eq!(c.admin_token.as_ref().map(Secret::expose), Some("t0k"));
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }
}
