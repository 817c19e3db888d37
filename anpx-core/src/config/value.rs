//! Parsing one value, from a file or from text, and rendering it back.
//!
//! A value comes either typed, from the TOML file, or as text, from a flag or
//! an environment variable. Each kind of value has one parser taking both,
//! so a key accepts the same values whichever way it is set.

use std::net::SocketAddr;
use std::path::PathBuf;

use toml::Value;

use super::error::{ConfigError, ValueError};
use super::gateway::{AuthMode, Grant, LogFormat};
use crate::route::{ServiceUrl, ServiceUrlError, MAX_LEN};

/// Longest duration any key takes: long enough for any real setting, short
/// enough that adding it to a clock reading cannot overflow.
pub(crate) const MAX_SECS: u64 = 365 * 24 * 60 * 60;
/// [`MAX_SECS`] in milliseconds.
pub(crate) const MAX_MILLIS: u64 = MAX_SECS * 1000;
/// Smallest chunk size: below this, headers would dominate every frame.
pub(crate) const MIN_CHUNK: u64 = 1024;
/// Frame lengths are 32-bit on the wire.
pub(crate) const MAX_FRAME: u64 = u32::MAX as u64;
/// hyper's smallest HTTP/1 read buffer, which bounds the request head.
pub(crate) const MIN_HEADER_BYTES: u64 = 8192;
/// HTTP/2 header list sizes are 32-bit.
pub(crate) const MAX_HEADER_BYTES: u64 = u32::MAX as u64;
/// Request bodies: anything a 63-bit length can say.
pub(crate) const MAX_BODY_BYTES: u64 = i64::MAX as u64;

/// Longest piece of a refused value quoted back in an error.
const QUOTE_MAX_CHARS: usize = 64;

/// A value to parse.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    /// From a flag or an environment variable.
    Text(&'a str),
    /// From the file.
    Toml(&'a Value),
}

impl<'a> Input<'a> {
    /// The refused value as an error shows it.
    fn describe(self) -> String {
        match self {
            Input::Text(s) => quote(s),
            Input::Toml(v) => describe(v),
        }
    }

    /// The text of a string value; `None` for other TOML types.
    fn as_str(self) -> Option<&'a str> {
        match self {
            Input::Text(s) => Some(s),
            Input::Toml(Value::String(s)) => Some(s),
            Input::Toml(_) => None,
        }
    }

    fn expected(self, expected: &'static str) -> ValueError {
        ValueError::Expected {
            expected,
            got: self.describe(),
        }
    }
}

/// A TOML value as an error shows it: scalars as written, containers by
/// kind only, since they may be large.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((end, _)) => format!("{:?}…", &s[..end]),
        None => format!("{s:?}"),
    }
}

/// Integer fields of the configuration.
pub(crate) trait IntField: Copy {
    /// The largest value the type holds.
    const MAX: u64;
    fn to_u64(self) -> u64;
    fn from_u64(v: u64) -> Option<Self>;
}

impl IntField for u64 {
    const MAX: u64 = u64::MAX;
    fn to_u64(self) -> u64 {
        self
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v)
    }
}

impl IntField for u32 {
    const MAX: u64 = u32::MAX as u64;
    fn to_u64(self) -> u64 {
        u64::from(self)
    }
    fn from_u64(v: u64) -> Option<Self> {
        u32::try_from(v).ok()
    }
}

impl IntField for usize {
    // Lossless: no supported target has a usize wider than 64 bits.
    const MAX: u64 = usize::MAX as u64;
    fn to_u64(self) -> u64 {
        u64::try_from(self).unwrap_or(u64::MAX)
    }
    fn from_u64(v: u64) -> Option<Self> {
        usize::try_from(v).ok()
    }
}

/// An integer in `min..=max`.
pub(crate) fn int<T: IntField>(input: Input<'_>, min: u64, max: u64) -> Result<T, ValueError> {
    let expected = if min == 0 {
        "a non-negative integer"
    } else {
        "a positive integer"
    };
    let n = match input {
        Input::Text(s) => s.parse::<i64>().ok(),
        Input::Toml(Value::Integer(i)) => Some(*i),
        Input::Toml(_) => None,
    };
    let n = match n {
        Some(n) if n > 0 || (n == 0 && min == 0) => n.unsigned_abs(),
        // A refused number is shown as a number, even when it came as text.
        Some(n) => {
            return Err(ValueError::Expected {
                expected,
                got: n.to_string(),
            })
        }
        None => return Err(input.expected(expected)),
    };
    if n < min {
        return Err(ValueError::TooSmall { min, got: n });
    }
    let max = max.min(T::MAX);
    if n > max {
        return Err(ValueError::TooLarge { max, got: n });
    }
    T::from_u64(n).ok_or(ValueError::TooLarge { max, got: n })
}

/// An optional integer in `min..=max`; empty text or an empty string unsets.
pub(crate) fn opt_int<T: IntField>(
    input: Input<'_>,
    min: u64,
    max: u64,
) -> Result<Option<T>, ValueError> {
    if is_empty(input) {
        return Ok(None);
    }
    int(input, min, max).map(Some)
}

pub(crate) fn render_int<T: IntField>(v: &T) -> Option<Value> {
    Some(Value::Integer(
        i64::try_from(v.to_u64()).unwrap_or(i64::MAX),
    ))
}

pub(crate) fn render_opt_int<T: IntField>(v: &Option<T>) -> Option<Value> {
    v.as_ref().and_then(render_int)
}

fn is_empty(input: Input<'_>) -> bool {
    input.as_str() == Some("")
}

const ADDR: &str = "an IP address and port such as 127.0.0.1:8080 (or localhost:8080)";

/// An IP address and port, or `localhost:PORT` for 127.0.0.1: the one
/// name taken without a lookup, which this sans-IO crate cannot make.
pub(crate) fn addr(input: Input<'_>) -> Result<SocketAddr, ValueError> {
    input
        .as_str()
        .and_then(|s| {
            let s = s.trim();
            match s.strip_prefix("localhost:") {
                Some(port) => port
                    .parse::<u16>()
                    .ok()
                    .map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
                None => s.parse().ok(),
            }
        })
        .ok_or_else(|| input.expected(ADDR))
}

pub(crate) fn opt_addr(input: Input<'_>) -> Result<Option<SocketAddr>, ValueError> {
    if is_empty(input) {
        return Ok(None);
    }
    addr(input).map(Some)
}

/// An address, or `off` for none.
pub(crate) fn addr_or_off(input: Input<'_>) -> Result<Option<SocketAddr>, ValueError> {
    if input.as_str() == Some("off") {
        return Ok(None);
    }
    addr(input)
        .map(Some)
        .map_err(|_| input.expected("an IP address and port such as 127.0.0.1:8081, or off"))
}

pub(crate) fn render_addr_or_off(v: &Option<SocketAddr>) -> Option<Value> {
    Some(Value::String(
        v.map_or_else(|| "off".to_owned(), |a| a.to_string()),
    ))
}

/// An absolute URL path without query or fragment (`/health`), or `off`.
pub(crate) fn path_or_off(input: Input<'_>) -> Result<Option<String>, ValueError> {
    const EXPECTED: &str = "a path starting with / (no query, no spaces), or off";
    match input.as_str() {
        Some("off") => Ok(None),
        Some(p)
            if p.starts_with('/')
                && p.len() <= 256
                && p.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#') =>
        {
            Ok(Some(p.to_owned()))
        }
        _ => Err(input.expected(EXPECTED)),
    }
}

pub(crate) fn render_path_or_off(v: &Option<String>) -> Option<Value> {
    Some(Value::String(v.clone().unwrap_or_else(|| "off".to_owned())))
}

pub(crate) fn render_addr(v: &SocketAddr) -> Option<Value> {
    Some(Value::String(v.to_string()))
}

pub(crate) fn render_opt_addr(v: &Option<SocketAddr>) -> Option<Value> {
    v.as_ref().and_then(render_addr)
}

/// Which URLs a key takes.
#[derive(Clone, Copy)]
pub(crate) struct Schemes {
    schemes: &'static [&'static str],
    expected: &'static str,
}

pub(crate) const WS_URL: Schemes = Schemes {
    schemes: &["ws", "wss"],
    expected: "a ws:// or wss:// URL",
};

pub(crate) const HTTP_URL: Schemes = Schemes {
    schemes: &["http", "https"],
    expected: "an http:// or https:// URL",
};

pub(crate) const NATS_URL: Schemes = Schemes {
    schemes: &["nats", "tls"],
    expected: "a nats:// or tls:// URL",
};

/// A URL with one of `schemes.schemes` and a host; kept as written.
pub(crate) fn url(input: Input<'_>, schemes: Schemes) -> Result<String, ValueError> {
    let ok = input.as_str().filter(|s| {
        s.parse::<http::Uri>().is_ok_and(|uri| {
            let scheme_ok = uri.scheme_str().is_some_and(|scheme| {
                schemes
                    .schemes
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(scheme))
            });
            scheme_ok && uri.host().is_some_and(|h| !h.is_empty())
        })
    });
    ok.map(str::to_owned)
        .ok_or_else(|| input.expected(schemes.expected))
}

pub(crate) fn opt_url(input: Input<'_>, schemes: Schemes) -> Result<Option<String>, ValueError> {
    if is_empty(input) {
        return Ok(None);
    }
    url(input, schemes).map(Some)
}

/// A service registry database URL (`sqlite:`, `mysql://`, `postgres://`),
/// kept as written; empty for none.
pub(crate) fn opt_registry_url(input: Input<'_>) -> Result<Option<String>, ValueError> {
    if is_empty(input) {
        return Ok(None);
    }
    input
        .as_str()
        .filter(|s| crate::registry::BackendKind::from_url(s).is_ok())
        .map(|s| Some(s.to_owned()))
        .ok_or_else(|| input.expected("a sqlite:, mysql:// or postgres:// URL"))
}

/// A list of URLs of one kind: a TOML array, or comma-separated text.
pub(crate) fn urls(input: Input<'_>, schemes: Schemes) -> Result<Vec<String>, ValueError> {
    match input {
        Input::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| url(Input::Text(item), schemes))
            .collect(),
        Input::Toml(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(_) => url(Input::Toml(item), schemes),
                _ => Err(input.expected(schemes.expected)),
            })
            .collect(),
        Input::Toml(_) => Err(input.expected(schemes.expected)),
    }
}

/// A cluster node name; empty for "derive one".
pub(crate) fn opt_node_name(input: Input<'_>) -> Result<Option<String>, ValueError> {
    if is_empty(input) {
        return Ok(None);
    }
    input
        .as_str()
        .filter(|s| crate::cluster::check_node_name(s).is_ok())
        .map(|s| Some(s.to_owned()))
        .ok_or_else(|| input.expected("a node name of 1 to 128 bytes without control characters"))
}

/// A NATS subject prefix.
pub(crate) fn subject_prefix(input: Input<'_>) -> Result<String, ValueError> {
    input
        .as_str()
        .filter(|s| crate::cluster::Subjects::new(s).is_ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            input.expected(
                "dot-separated tokens of letters, digits, '-' and '_' (a NATS subject prefix)",
            )
        })
}

/// Headers the gateway or HTTP itself gives a meaning: the DID header may
/// not be one of them.
const RESERVED_HEADERS: [&str; 16] = [
    "host",
    "authorization",
    "cookie",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// A request header name of letters, digits and `-`, lower-cased, not one
/// HTTP or the gateway already gives a meaning.
pub(crate) fn header_name(input: Input<'_>) -> Result<String, ValueError> {
    input
        .as_str()
        .map(str::to_ascii_lowercase)
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !RESERVED_HEADERS.contains(&s.as_str())
        })
        .ok_or_else(|| {
            input.expected(
                "a header name of letters, digits and '-' (not host, authorization, cookie, a hop-by-hop or forwarding header)",
            )
        })
}

pub(crate) fn render_str(v: &str) -> Option<Value> {
    Some(Value::String(v.to_owned()))
}

pub(crate) fn render_opt_str(v: &Option<String>) -> Option<Value> {
    v.as_deref().and_then(render_str)
}

/// A file or directory path; empty unsets.
pub(crate) fn opt_path(input: Input<'_>) -> Result<Option<PathBuf>, ValueError> {
    match input.as_str() {
        Some("") => Ok(None),
        // No file system takes NUL in a name; refusing it here keeps the
        // shells' open calls from failing with a vaguer error.
        Some(s) if !s.contains('\0') => Ok(Some(PathBuf::from(s))),
        _ => Err(input.expected("a file path")),
    }
}

pub(crate) fn render_opt_path(v: &Option<PathBuf>) -> Option<Value> {
    v.as_ref()
        .map(|p| Value::String(p.to_string_lossy().into_owned()))
}

const SERVICES: &str = "a list of service URLs such as [\"api.example.com/agents\"]";

/// Service URLs: an array of strings in the file, comma-separated as text.
pub(crate) fn services(input: Input<'_>) -> Result<Vec<ServiceUrl>, ValueError> {
    match input {
        Input::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(service)
            .collect(),
        Input::Toml(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => service(s),
                _ => Err(input.expected(SERVICES)),
            })
            .collect(),
        Input::Toml(_) => Err(input.expected(SERVICES)),
    }
}

fn service(s: &str) -> Result<ServiceUrl, ValueError> {
    parse_service_url(s).map_err(|error| ValueError::ServiceUrl {
        value: s.to_owned(),
        error,
    })
}

/// Schemes `ServiceUrl` tolerates, in the order it tries them.
const SERVICE_SCHEMES: [&str; 4] = ["https://", "http://", "wss://", "ws://"];

/// `ServiceUrl::from_str`, minus a panic: that parser slices its input at
/// each tolerated scheme's length (5 to 8 bytes) and panics when the cut
/// falls inside a multi-byte character. Such input is handed to it behind
/// an `https://` it strips at once, after doing here the checks it would
/// have done on the unprefixed text, so the outcome is the same.
fn parse_service_url(s: &str) -> Result<ServiceUrl, ServiceUrlError> {
    let would_panic = SERVICE_SCHEMES
        .iter()
        .any(|scheme| scheme.len() < s.len() && !s.is_char_boundary(scheme.len()));
    if !would_panic {
        return s.parse();
    }
    if s.len() > MAX_LEN {
        return Err(ServiceUrlError::TooLong {
            len: s.len(),
            max: MAX_LEN,
        });
    }
    let stripped = SERVICE_SCHEMES.iter().find_map(|scheme| {
        s.get(..scheme.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(scheme))
            .map(|_| &s[scheme.len()..])
    });
    let rest = match stripped {
        Some(rest) => rest,
        None => {
            let authority_end = s.find('/').unwrap_or(s.len());
            if let Some(i) = s.find("://").filter(|&i| i < authority_end) {
                return Err(ServiceUrlError::UnsupportedScheme(s[..i].to_owned()));
            }
            s
        }
    };
    format!("https://{rest}").parse()
}

pub(crate) fn render_services(v: &[ServiceUrl]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect())
}

/// One of a fixed set of words.
fn word<T: Copy>(
    input: Input<'_>,
    all: &[T],
    name: fn(T) -> &'static str,
    expected: &'static str,
) -> Result<T, ValueError> {
    input
        .as_str()
        .and_then(|s| all.iter().copied().find(|&v| name(v) == s))
        .ok_or_else(|| input.expected(expected))
}

pub(crate) fn log_format(input: Input<'_>) -> Result<LogFormat, ValueError> {
    word(
        input,
        &LogFormat::ALL,
        LogFormat::as_str,
        "\"text\" or \"json\"",
    )
}

/// Log directives as `RUST_LOG` takes them: comma-separated items, each a
/// level or `target=level`, the target made of letters, digits, `_` and
/// `::`.
pub(crate) fn log_level(input: Input<'_>) -> Result<String, ValueError> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    const EXPECTED: &str =
        "log directives: a level (off, error, warn, info, debug, trace) or target=level, comma-separated";
    let text = input.as_str().ok_or_else(|| input.expected(EXPECTED))?;
    let level = |l: &str| LEVELS.iter().any(|w| w.eq_ignore_ascii_case(l));
    let target = |t: &str| {
        !t.is_empty()
            && t.split("::")
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    };
    let item_ok = |item: &str| match item.split_once('=') {
        Some((t, l)) => target(t.trim()) && level(l.trim()),
        None => level(item.trim()) || target(item.trim()),
    };
    if text.trim().is_empty() || !text.split(',').all(item_ok) {
        return Err(input.expected(EXPECTED));
    }
    Ok(text.trim().to_owned())
}

pub(crate) fn auth_mode(input: Input<'_>) -> Result<AuthMode, ValueError> {
    word(
        input,
        &AuthMode::ALL,
        AuthMode::as_str,
        "\"none\" or \"did-wba\"",
    )
}

pub(crate) fn render_word<T: std::fmt::Display>(v: &T) -> Option<Value> {
    Some(Value::String(v.to_string()))
}

const GRANTS: &str = "an array of tables ([[gateway.routes.grant]] with did and services)";
const GRANTS_TEXT: &str = "grants written as DID=service,service;DID=service";
const DID: &str = "a DID such as \"did:wba:example.com:alice\"";
const GRANT_KEY: &str = "gateway.routes.grant";

/// `[[gateway.routes.grant]]` tables, or as text `DID=svc,svc;DID=svc`
/// (DIDs hold neither `=` nor `;`, so the text form is unambiguous).
pub(crate) fn grants(input: Input<'_>) -> Result<Vec<Grant>, ConfigError> {
    let grants = match input {
        Input::Text(s) => grants_from_text(s)?,
        Input::Toml(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| grant_from_toml(i, item))
            .collect::<Result<_, _>>()?,
        Input::Toml(_) => return Err(input.expected(GRANTS).at(GRANT_KEY)),
    };
    for (i, grant) in grants.iter().enumerate() {
        if let Some(first) = grants[..i].iter().position(|g| g.did == grant.did) {
            return Err(ValueError::DuplicateDid {
                did: grant.did.clone(),
                first,
            }
            .at(format!("{GRANT_KEY}[{i}].did")));
        }
    }
    Ok(grants)
}

fn grants_from_text(s: &str) -> Result<Vec<Grant>, ConfigError> {
    s.split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(i, entry)| {
            let (did_text, services_text) = entry
                .split_once('=')
                .ok_or_else(|| Input::Text(entry).expected(GRANTS_TEXT).at(GRANT_KEY))?;
            let at = |field: &str| format!("{GRANT_KEY}[{i}].{field}");
            let did = did(Input::Text(did_text.trim())).map_err(|e| e.at(at("did")))?;
            let services =
                grant_services(Input::Text(services_text)).map_err(|e| e.at(at("services")))?;
            Ok(Grant { did, services })
        })
        .collect()
}

fn grant_from_toml(i: usize, item: &Value) -> Result<Grant, ConfigError> {
    let at = |field: &str| format!("{GRANT_KEY}[{i}].{field}");
    let Value::Table(table) = item else {
        return Err(Input::Toml(item).expected(GRANTS).at(GRANT_KEY));
    };
    if let Some(unknown) = table.keys().find(|k| *k != "did" && *k != "services") {
        let suggestion = super::keys::nearest(unknown, ["did", "services"]).map(at);
        return Err(ConfigError::UnknownKey {
            key: at(unknown),
            suggestion,
        });
    }
    let missing = || ValueError::Expected {
        expected: DID,
        got: "nothing".to_owned(),
    };
    let did = match table.get("did") {
        Some(v) => did(Input::Toml(v)),
        None => Err(missing()),
    }
    .map_err(|e| e.at(at("did")))?;
    let services = match table.get("services") {
        Some(v) => grant_services(Input::Toml(v)),
        None => Err(ValueError::Expected {
            expected: SERVICES,
            got: "nothing".to_owned(),
        }),
    }
    .map_err(|e| e.at(at("services")))?;
    Ok(Grant { did, services })
}

/// A grant listing no service grants nothing, so it is a mistake.
fn grant_services(input: Input<'_>) -> Result<Vec<ServiceUrl>, ValueError> {
    let services = services(input)?;
    if services.is_empty() {
        return Err(input.expected("at least one service URL"));
    }
    Ok(services)
}

/// `did:method:id` as the DID Core syntax has it, less percent-escape
/// checks: the method is lower-case letters and digits, the id is
/// `[A-Za-z0-9._%:-]` and does not end with `:`.
fn did(input: Input<'_>) -> Result<String, ValueError> {
    let valid = |s: &str| {
        let Some(rest) = s.strip_prefix("did:") else {
            return false;
        };
        let Some((method, id)) = rest.split_once(':') else {
            return false;
        };
        !method.is_empty()
            && method
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && !id.is_empty()
            && !id.ends_with(':')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._%:-".contains(&b))
    };
    match input.as_str() {
        Some(s) if valid(s) => Ok(s.to_owned()),
        _ => Err(input.expected(DID)),
    }
}

pub(crate) fn render_grants(v: &[Grant]) -> Option<Value> {
    let tables = v
        .iter()
        .map(|g| {
            let mut t = toml::Table::new();
            t.insert("did".to_owned(), Value::String(g.did.clone()));
            t.insert("services".to_owned(), render_services(&g.services));
            Value::Table(t)
        })
        .collect();
    Some(Value::Array(tables))
}

/// A rendered value in the text form [`Input::Text`] takes back.
pub(crate) fn to_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let is_grants = items.iter().all(Value::is_table) && !items.is_empty();
            let sep = if is_grants { ";" } else { "," };
            items.iter().map(to_text).collect::<Vec<_>>().join(sep)
        }
        Value::Table(t) => {
            let did = t.get("did").map(to_text).unwrap_or_default();
            let services = t.get("services").map(to_text).unwrap_or_default();
            format!("{did}={services}")
        }
        other => other.to_string(),
    }
}

/// `true` or `false`; as text also `1`/`0`, `yes`/`no`, `on`/`off`.
pub(crate) fn boolean(input: Input<'_>) -> Result<bool, ValueError> {
    const EXPECTED: &str = "true or false";
    match input {
        Input::Toml(Value::Boolean(b)) => Ok(*b),
        Input::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(input.expected(EXPECTED)),
        },
        Input::Toml(_) => Err(input.expected(EXPECTED)),
    }
}

pub(crate) fn render_bool(v: &bool) -> Option<Value> {
    Some(Value::Boolean(*v))
}

/// A list of non-empty strings: an array in the file, comma-separated as
/// text; each is checked by `check`, which names what it expects.
fn strings(
    input: Input<'_>,
    expected: &'static str,
    check: fn(&str) -> bool,
) -> Result<Vec<String>, ValueError> {
    let items: Vec<String> = match input {
        Input::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Input::Toml(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                _ => Err(input.expected(expected)),
            })
            .collect::<Result<_, _>>()?,
        Input::Toml(_) => return Err(input.expected(expected)),
    };
    match items.iter().find(|s| !check(s)) {
        Some(bad) => Err(Input::Text(bad).expected(expected)),
        None => Ok(items),
    }
}

/// Path patterns to block: any text without control characters or commas
/// (which separate them as text).
pub(crate) fn path_patterns(input: Input<'_>) -> Result<Vec<String>, ValueError> {
    strings(
        input,
        "a list of path patterns such as [\"/wp-admin\", \"/.env\"]",
        |s| !s.chars().any(|c| c.is_control() || c == ','),
    )
}

/// Browser origins: `*`, or `http://` / `https://` and a host, with an
/// optional port and nothing after it.
pub(crate) fn origins(input: Input<'_>) -> Result<Vec<String>, ValueError> {
    strings(
        input,
        "a list of origins such as [\"https://app.example.com\"] or [\"*\"]",
        |s| {
            if s == "*" {
                return true;
            }
            let rest = s
                .strip_prefix("https://")
                .or_else(|| s.strip_prefix("http://"));
            rest.is_some_and(|host| {
                !host.is_empty()
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            })
        },
    )
}

/// Host names (no scheme, port or path), lowercased: the names a receiver
/// may sign as the service.
pub(crate) fn host_names(input: Input<'_>) -> Result<Vec<String>, ValueError> {
    let names = strings(
        input,
        "a list of host names such as [\"gateway.example.com\"]",
        |s| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
                && !s.contains("://")
        },
    )?;
    Ok(names.into_iter().map(|n| n.to_ascii_lowercase()).collect())
}

/// SHA-256 pins: `sha256//` and 44 characters of base64 (curl's
/// `--pinnedpubkey` form), or 64 hex digits. The shell decodes them; this
/// checks their shape so a typo is named at start-up.
pub(crate) fn pins(input: Input<'_>) -> Result<Vec<String>, ValueError> {
    strings(
        input,
        "a list of SHA-256 pins such as [\"sha256//<44 base64 characters>\"] or 64 hex digits",
        |s| match s.strip_prefix("sha256//") {
            Some(b64) => {
                b64.len() == 44
                    && b64.ends_with('=')
                    && b64[..43]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
            }
            None => s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()),
        },
    )
}

pub(crate) fn render_strings(v: &[String]) -> Option<Value> {
    Some(Value::Array(
        v.iter().map(|s| Value::String(s.clone())).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_err<T: std::fmt::Debug>(r: Result<T, ValueError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn log_levels_take_rust_log_directives() {
        for ok in [
            "info",
            "WARN",
            "warn,shell_common=debug",
            "anpx_core::gateway=trace",
            "off",
        ] {
            assert_eq!(log_level(Input::Text(ok)).unwrap(), ok, "{ok}");
        }
        for bad in ["", " , ", "debug=loud", "a b", "=info", "x::=info"] {
            assert!(
                text_err(log_level(Input::Text(bad))).starts_with("expected log directives"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn integers_from_text_and_toml() {
        assert_eq!(int::<u64>(Input::Text("30"), 1, 100), Ok(30));
        assert_eq!(int::<u64>(Input::Toml(&Value::Integer(30)), 1, 100), Ok(30));
        assert_eq!(
            text_err(int::<u64>(Input::Text("0"), 1, 100)),
            "expected a positive integer, got 0"
        );
        assert_eq!(
            text_err(int::<u64>(Input::Toml(&Value::Integer(-3)), 0, 100)),
            "expected a non-negative integer, got -3"
        );
        assert_eq!(int::<u64>(Input::Text("0"), 0, 100), Ok(0));
        assert_eq!(
            text_err(int::<u64>(Input::Text("3O"), 1, 100)),
            "expected a positive integer, got \"3O\""
        );
        assert_eq!(
            text_err(int::<u64>(Input::Toml(&Value::String("30".into())), 1, 100)),
            "expected a positive integer, got \"30\""
        );
        assert_eq!(
            text_err(int::<u64>(Input::Text("101"), 1, 100)),
            "expected at most 100, got 101"
        );
        assert_eq!(
            text_err(int::<u64>(Input::Text("512"), 1024, 4096)),
            "expected at least 1024, got 512"
        );
        assert_eq!(
            text_err(int::<u32>(Input::Text("4294967296"), 1, u64::MAX)),
            "expected at most 4294967295, got 4294967296"
        );
        assert_eq!(
            text_err(int::<u64>(Input::Text(" 5"), 1, 100)),
            "expected a positive integer, got \" 5\""
        );
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let long = "x".repeat(1000);
        let e = text_err(addr(Input::Text(&long)));
        assert!(e.len() < 200, "{e}");
        assert!(e.ends_with("…"), "{e}");
        let multibyte = "é".repeat(100);
        assert!(text_err(addr(Input::Text(&multibyte))).ends_with("…"));
    }

    #[test]
    fn urls_need_scheme_and_host() {
        for ok in ["ws://h/ws", "WSS://h:443/x", "ws://127.0.0.1:8080/ws"] {
            assert_eq!(url(Input::Text(ok), WS_URL).as_deref(), Ok(ok));
        }
        for bad in [
            "http://h", "ws://", "ws:///x", "h/ws", "", "ws://h h", "wss",
        ] {
            assert!(url(Input::Text(bad), WS_URL).is_err(), "{bad:?}");
        }
        assert!(url(Input::Text("https://r.example"), HTTP_URL).is_ok());
        assert_eq!(opt_url(Input::Text(""), HTTP_URL), Ok(None));
    }

    #[test]
    fn service_urls_with_multibyte_text_near_the_start() {
        // Cuts at bytes 5 to 8 fall inside these characters.
        let cases = [
            ("h/¡𐀀", Ok("h/¡𐀀")),
            ("ws://h/é", Ok("h/é")),
            ("HTTPS://h/€x", Ok("h/€x")),
            ("h/€€€", Ok("h/€€€")),
            ("¡𐀀", Err(ServiceUrlError::InvalidHost("¡𐀀".to_owned()))),
            (
                "é://h/x",
                Err(ServiceUrlError::UnsupportedScheme("é".to_owned())),
            ),
            ("ws://é", Err(ServiceUrlError::InvalidHost("é".to_owned()))),
        ];
        for (input, want) in cases {
            let got = parse_service_url(input).map(|u| u.to_string());
            assert_eq!(got, want.map(str::to_owned), "{input:?}");
        }
        let long = format!("h/é{}", "a".repeat(MAX_LEN));
        assert!(matches!(
            parse_service_url(&long),
            Err(ServiceUrlError::TooLong { .. })
        ));
        // Elsewhere it is the plain parser.
        for input in ["a.test/x", "https://a.test", "ftp://a", "", "a.test/x/é"] {
            assert_eq!(parse_service_url(input), input.parse::<ServiceUrl>());
        }
    }

    #[test]
    fn dids() {
        for ok in [
            "did:wba:example.com:alice",
            "did:wba:example.com%3A8800:user:bob",
            "did:web:x",
        ] {
            assert_eq!(did(Input::Text(ok)).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "did:",
            "did:wba",
            "did:wba:",
            "did:WBA:x",
            "did:wba:x:",
            "did:wba:a b",
            "wba:x",
            "did:wba:x=y",
            "did:wba:x;y",
        ] {
            assert!(did(Input::Text(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grants_text_form_round_trips() {
        let text = "did:wba:a.com:alice=a.com/x,*/tools;did:wba:b.com=b.com";
        let parsed = grants(Input::Text(text)).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].services.len(), 2);
        let rendered = render_grants(&parsed).unwrap();
        assert_eq!(to_text(&rendered), text);
        assert_eq!(grants(Input::Text("")), Ok(Vec::new()));
        assert_eq!(grants(Input::Text(" ; ")), Ok(Vec::new()));
    }

    #[test]
    fn grant_errors_name_the_entry() {
        let e = grants(Input::Text("did:wba:a=a.com;did:wba:b=")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("gateway.routes.grant[1].services: expected at least one"),
            "{e}"
        );
        let e = grants(Input::Text("did:wba:a=x;did:wba:a=y")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "gateway.routes.grant[1].did: did:wba:a is already granted by gateway.routes.grant[0]"
        );
        let e = grants(Input::Text("a.com/x")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("gateway.routes.grant: expected grants"),
            "{e}"
        );
        let e = grants(Input::Toml(&Value::String("x".into()))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("gateway.routes.grant: expected an array"),
            "{e}"
        );
    }
}
