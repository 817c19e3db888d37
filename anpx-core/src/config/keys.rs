//! The table of keys: the one place that says which options exist, how
//! they are spelled as file keys, flags and environment variables, and
//! which field each sets.

use std::fmt;

use toml::Value;

use super::error::{ConfigError, ValueError};
use super::value::{
    self as v, Input, HTTP_URL, MAX_BODY_BYTES, MAX_FRAME, MAX_HEADER_BYTES, MAX_MILLIS, MAX_SECS,
    MIN_CHUNK, MIN_HEADER_BYTES, NATS_URL, WS_URL,
};
use super::Config;
use crate::frame::DEFAULT_MAX_FRAME_LEN;

/// The ceiling of `gateway.max_response_headers`: an HTTP library's header
/// map holds at most 32 768 entries, and the gateway adds its own.
const MAX_RESPONSE_HEADERS: u64 = 16_384;
/// The ceiling of `gateway.max_response_header_bytes` (16 MiB).
const MAX_RESPONSE_HEADER_BYTES: u64 = 16 * 1024 * 1024;

/// Largest `gateway.auth.max_nonces` (and per-DID quota): 10 million
/// nonces, about a gigabyte.
const MAX_NONCES: u64 = 10_000_000;

/// Prefix of every environment variable of the table.
pub const ENV_PREFIX: &str = "ANPX_";

/// Environment variable naming the configuration file. The shells read it;
/// [`Config::apply_env`] skips it rather than refusing it as unknown.
pub const CONFIG_FILE_ENV: &str = "ANPX_CONFIG";

/// Environment variable setting how long, in microseconds, a lane keeps
/// polling its sockets after it last had work before its thread sleeps
/// (`shell_common::spin`). A setting of the process's threads, as the lane
/// count is, not of a section: the shells read it when their lanes start;
/// [`Config::apply_env`] skips it rather than refusing it as unknown.
pub const LANE_SPIN_ENV: &str = "ANPX_LANE_SPIN_US";

type ApplyFn = fn(&mut Config, Input<'_>) -> Result<(), ConfigError>;
type RenderFn = fn(&Config) -> Option<Value>;

/// One option: its file key, environment variable, flag, default and help.
///
/// The shells build their flags, help text and `check-config` output from
/// [`keys`], so an option added here reaches every shell and every source
/// at once.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The dotted file key, e.g. `gateway.tls.cert`; also what
    /// [`Config::set`] takes.
    pub key: &'static str,
    /// The environment variable, e.g. `ANPX_GATEWAY_TLS_CERT`: `ANPX_`, then
    /// the key upper-cased with `.` turned into `_`.
    pub env: &'static str,
    /// The long flag of the section's subcommand, without `--`, e.g.
    /// `tls-cert` for `anpx gateway --tls-cert`: the key less its section,
    /// with `.` and `_` turned into `-`.
    pub flag: &'static str,
    /// Placeholder for the value in help text, e.g. `SECS`.
    pub value_name: &'static str,
    /// The default as text [`Config::set`] would take; empty when the
    /// option is unset by default.
    pub default: &'static str,
    /// One line of help.
    pub help: &'static str,
    apply: ApplyFn,
    render: RenderFn,
}

impl KeyInfo {
    /// The section the key belongs to: `gateway` or `receiver`.
    pub fn section(&self) -> &'static str {
        self.key.split('.').next().unwrap_or(self.key)
    }

    /// Sets the key from a value.
    pub(crate) fn apply(&self, config: &mut Config, input: Input<'_>) -> Result<(), ConfigError> {
        (self.apply)(config, input)
    }

    /// The key's value in `config`; `None` when unset.
    pub(crate) fn render(&self, config: &Config) -> Option<Value> {
        (self.render)(config)
    }

    /// The key's value in `config` as text, as [`Config::set`] takes it;
    /// `None` when unset. Two configurations differ in this key exactly
    /// when the texts differ.
    pub fn value_text(&self, config: &Config) -> Option<String> {
        self.render(config).map(|v| super::value::to_text(&v))
    }
}

impl fmt::Debug for KeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyInfo")
            .field("key", &self.key)
            .field("env", &self.env)
            .field("flag", &self.flag)
            .field("value_name", &self.value_name)
            .field("default", &self.default)
            .field("help", &self.help)
            .finish_non_exhaustive()
    }
}

/// Every option, grouped by section in the order `to_toml_string` prints
/// them.
///
/// ```
/// let listen = anpx_core::config::keys().iter().find(|k| k.key == "gateway.listen").unwrap();
/// assert_eq!(listen.env, "ANPX_GATEWAY_LISTEN");
/// assert_eq!(listen.flag, "listen");
/// assert_eq!(listen.default, "127.0.0.1:8080");
/// ```
pub fn keys() -> &'static [KeyInfo] {
    &KEYS
}

/// The entry of a dotted key.
pub fn find_key(key: &str) -> Option<&'static KeyInfo> {
    KEYS.iter().find(|k| k.key == key)
}

/// The entry of an environment variable.
pub fn find_env(var: &str) -> Option<&'static KeyInfo> {
    KEYS.iter().find(|k| k.env == var)
}

/// The entry of a section's flag (`find_flag("gateway", "tls-cert")`).
pub fn find_flag(section: &str, flag: &str) -> Option<&'static KeyInfo> {
    KEYS.iter()
        .find(|k| k.section() == section && k.flag == flag)
}

/// Whether `path` is a table holding keys (`gateway`, `gateway.tls`) rather
/// than a key.
pub(crate) fn is_section(path: &str) -> bool {
    KEYS.iter().any(|k| {
        k.key
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The candidate closest to `word`, when close enough to be a likely typo.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 4).clamp(1, 3);
    candidates
        .into_iter()
        .filter(|&c| c != word)
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// One entry whose field takes the value the parser returns.
macro_rules! key {
    (
        $key:literal, $env:literal, $flag:literal, $value_name:literal, $default:literal,
        $help:literal, $($field:ident).+, parse: $parse:expr, render: $render:expr $(,)?
    ) => {
        KeyInfo {
            key: $key,
            env: $env,
            flag: $flag,
            value_name: $value_name,
            default: $default,
            help: $help,
            apply: |config, input| {
                config.$($field).+ = ($parse)(input).map_err(|e: ValueError| e.at($key))?;
                Ok(())
            },
            render: |config| ($render)(&config.$($field).+),
        }
    };
}

static KEYS: [KeyInfo; 92] = [
    // [gateway]
    key!(
        "gateway.listen", "ANPX_GATEWAY_LISTEN", "listen", "ADDR", "127.0.0.1:8080",
        "Address the public HTTP front end listens on",
        gateway.listen, parse: v::addr, render: v::render_addr,
    ),
    key!(
        "gateway.ws_listen", "ANPX_GATEWAY_WS_LISTEN", "ws-listen", "ADDR", "",
        "Separate address for receivers' WebSocket connections (unset: /ws on listen)",
        gateway.ws_listen, parse: v::opt_addr, render: v::render_opt_addr,
    ),
    key!(
        "gateway.admin_listen", "ANPX_GATEWAY_ADMIN_LISTEN", "admin-listen", "ADDR|off",
        "127.0.0.1:8081",
        "Address of the admin plane: /metrics, /stats, the dashboard and its API (off: none); keep it private",
        gateway.admin_listen, parse: v::addr_or_off, render: v::render_addr_or_off,
    ),
    key!(
        "gateway.health_path", "ANPX_GATEWAY_HEALTH_PATH", "health-path", "PATH|off", "/health",
        "Path the public listener answers itself for load balancers' health checks (off: every path goes through the tunnel)",
        gateway.health_path, parse: v::path_or_off, render: v::render_path_or_off,
    ),
    key!(
        "gateway.request_timeout_secs", "ANPX_GATEWAY_REQUEST_TIMEOUT_SECS",
        "request-timeout-secs", "SECS", "30",
        "Seconds a request may wait for its response head before a 504 (the body then has body_idle_timeout_secs between parts)",
        gateway.request_timeout_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    key!(
        "gateway.body_idle_timeout_secs", "ANPX_GATEWAY_BODY_IDLE_TIMEOUT_SECS",
        "body-idle-timeout-secs", "SECS", "300",
        "Seconds a response may go without a body part once its head is sent before it is cut (a quiet SSE stream lives while its gaps are shorter)",
        gateway.body_idle_timeout_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    key!(
        "gateway.upload_timeout_secs", "ANPX_GATEWAY_UPLOAD_TIMEOUT_SECS",
        "upload-timeout-secs", "SECS", "600",
        "Seconds after a request began that its upload stops extending the wait for the response head: a body trickled in slowly cannot hold a request (and a place under the route's cap) longer; a body still arriving then gets 408 (a small body read whole before the request starts has the same time)",
        gateway.upload_timeout_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    key!(
        "gateway.websocket_idle_timeout_secs", "ANPX_GATEWAY_WEBSOCKET_IDLE_TIMEOUT_SECS",
        "websocket-idle-timeout-secs", "SECS", "300",
        "Seconds a proxied WebSocket (one carried between clustered gateways too) may carry no byte either way before it is closed",
        gateway.websocket_idle_timeout_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    key!(
        "gateway.max_inflight_per_receiver", "ANPX_GATEWAY_MAX_INFLIGHT_PER_RECEIVER",
        "max-inflight-per-receiver", "N", "100",
        "Requests one receiver connection may have in flight (the receiver caps them too: receiver.max_inflight, 1000 by default, answers 503 past it)",
        gateway.max_inflight_per_receiver,
        parse: |i| v::int(i, 1, u64::from(u32::MAX)), render: v::render_int,
    ),
    key!(
        "gateway.max_inflight_percent_per_client", "ANPX_GATEWAY_MAX_INFLIGHT_PERCENT_PER_CLIENT",
        "max-inflight-percent-per-client", "PERCENT", "50",
        "Share of a route's in-flight cap (its receiver connections times max_inflight_per_receiver) one client address (IPv6: one /64) may hold, in percent, at least one request; more get 429, counted in anpx_client_share_refused_total (100: no limit below the cap)",
        gateway.max_inflight_percent_per_client,
        parse: |i| v::int(i, 1, 100), render: v::render_int,
    ),
    key!(
        "gateway.ping_interval_secs", "ANPX_GATEWAY_PING_INTERVAL_SECS",
        "ping-interval-secs", "SECS", "30",
        "Seconds between pings to each receiver; twice this without traffic drops it",
        gateway.ping_interval_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    key!(
        "gateway.chunk_size", "ANPX_GATEWAY_CHUNK_SIZE", "chunk-size", "BYTES", "65536",
        "Largest frame sent to receivers; larger requests are chunked",
        gateway.chunk_size,
        parse: |i| v::int(i, MIN_CHUNK, MAX_FRAME), render: v::render_int,
    ),
    key!(
        "gateway.max_frame_bytes", "ANPX_GATEWAY_MAX_FRAME_BYTES", "max-frame-bytes", "BYTES",
        "67108864",
        "Largest WebSocket message and frame accepted from receivers (anpx receivers stream responses in frames of up to 256 KiB); at most gateway.max_buffered_per_receiver_bytes, whichever is smaller applies",
        gateway.max_frame_bytes,
        parse: |i| v::int(i, MIN_CHUNK, MAX_FRAME), render: v::render_int,
    ),
    key!(
        "gateway.drain_grace_secs", "ANPX_GATEWAY_DRAIN_GRACE_SECS", "drain-grace-secs", "SECS",
        "10",
        "Seconds requests in flight get to finish on shutdown (0: stop at once)",
        gateway.drain_grace_secs,
        parse: |i| v::int(i, 0, MAX_SECS), render: v::render_int,
    ),
    key!(
        "gateway.log_format", "ANPX_GATEWAY_LOG_FORMAT", "log-format", "text|json", "text",
        "Log lines as human-readable text or one JSON object each",
        gateway.log_format, parse: v::log_format, render: v::render_word,
    ),
    key!(
        "gateway.log_level", "ANPX_GATEWAY_LOG_LEVEL", "log-level", "DIRECTIVES", "info",
        "What is logged: a level (error, warn, info, debug, trace, off) or RUST_LOG directives such as warn,shell_common=debug; RUST_LOG wins when set; SIGHUP applies a change",
        gateway.log_level, parse: v::log_level, render: |s: &String| v::render_str(s),
    ),
    key!(
        "gateway.header_read_timeout_secs", "ANPX_GATEWAY_HEADER_READ_TIMEOUT_SECS",
        "header-read-timeout-secs", "SECS", "10",
        "Seconds a client may take to send a request head (and, on HTTP/1, to sit idle between requests)",
        gateway.header_read_timeout_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    key!(
        "gateway.max_header_bytes", "ANPX_GATEWAY_MAX_HEADER_BYTES", "max-header-bytes", "BYTES",
        "65536",
        "Largest request head accepted (HTTP/1 request line and headers, HTTP/2 header list); larger gets 431",
        gateway.max_header_bytes,
        parse: |i| v::int(i, MIN_HEADER_BYTES, MAX_HEADER_BYTES), render: v::render_int,
    ),
    key!(
        "gateway.max_body_bytes", "ANPX_GATEWAY_MAX_BODY_BYTES", "max-body-bytes", "BYTES",
        "1073741824",
        "Largest request body accepted; larger gets 413 (or a cut connection once the response has begun)",
        gateway.max_body_bytes,
        parse: |i| v::int(i, 1, MAX_BODY_BYTES), render: v::render_int,
    ),
    key!(
        "gateway.max_response_bytes", "ANPX_GATEWAY_MAX_RESPONSE_BYTES", "max-response-bytes",
        "BYTES", "",
        "Largest response body passed on; a longer one is cut with a logged reason (unset: no limit, streamed responses cost no memory)",
        gateway.max_response_bytes,
        parse: |i| v::opt_int(i, 1, MAX_BODY_BYTES), render: v::render_opt_int,
    ),
    key!(
        "gateway.max_buffered_response_bytes", "ANPX_GATEWAY_MAX_BUFFERED_RESPONSE_BYTES",
        "max-buffered-response-bytes", "BYTES", "67108864",
        "Largest response body held whole for a receiver that sends its head last (a reference receiver); larger gets 502",
        gateway.max_buffered_response_bytes,
        parse: |i| v::int(i, 1, MAX_BODY_BYTES), render: v::render_int,
    ),
    key!(
        "gateway.max_response_headers", "ANPX_GATEWAY_MAX_RESPONSE_HEADERS",
        "max-response-headers", "N", "256",
        "Most header fields a receiver's response head may carry; more gets 502 (at most 16384, well inside what the HTTP libraries can write)",
        gateway.max_response_headers,
        parse: |i| v::int(i, 1, MAX_RESPONSE_HEADERS), render: v::render_int,
    ),
    key!(
        "gateway.max_response_header_bytes", "ANPX_GATEWAY_MAX_RESPONSE_HEADER_BYTES",
        "max-response-header-bytes", "BYTES", "65536",
        "Largest total size of a receiver's response header fields (name, value and 4 bytes each); larger gets 502 (at most 16777216)",
        gateway.max_response_header_bytes,
        parse: |i| v::int(i, 1, MAX_RESPONSE_HEADER_BYTES), render: v::render_int,
    ),
    key!(
        "gateway.max_buffered_per_receiver_bytes",
        "ANPX_GATEWAY_MAX_BUFFERED_PER_RECEIVER_BYTES", "max-buffered-per-receiver-bytes", "BYTES",
        "33554432",
        "Response bytes one receiver connection may make the gateway hold (bodies awaiting a late head, bodies its clients have not read yet); past it the connection is closed (1008, over_budget). A flow-controlled receiver is never closed for bytes within its windows: its limit is the larger of this and 1 MiB per request it may have in flight. Also caps gateway.max_frame_bytes and gateway.max_buffered_response_bytes",
        gateway.max_buffered_per_receiver_bytes,
        parse: |i| v::int(i, 1, MAX_BODY_BYTES), render: v::render_int,
    ),
    key!(
        "gateway.max_buffered_bytes", "ANPX_GATEWAY_MAX_BUFFERED_BYTES", "max-buffered-bytes",
        "BYTES", "268435456",
        "Response bytes all receivers together may make the gateway hold, bodies of closed connections not yet read included, and WebSocket messages still arriving; past it the connection without flow-control holding the most is closed (1008, over_budget), a flow-controlled response that does not fit is cut alone (503 before its head), and no request starts on a flow-controlled receiver while a 1 MiB window would not fit (503, buffers_full)",
        gateway.max_buffered_bytes,
        parse: |i| v::int(i, 1, MAX_BODY_BYTES), render: v::render_int,
    ),
    key!(
        "gateway.max_pending_handshakes", "ANPX_GATEWAY_MAX_PENDING_HANDSHAKES",
        "max-pending-handshakes", "N", "256",
        "Receiver WebSocket handshakes in progress at once; more get 503",
        gateway.max_pending_handshakes,
        parse: |i| v::int(i, 1, u64::from(u32::MAX)), render: v::render_int,
    ),
    key!(
        "gateway.max_receivers_per_ip", "ANPX_GATEWAY_MAX_RECEIVERS_PER_IP",
        "max-receivers-per-ip", "N", "64",
        "Receiver connections one client address (IPv6: one /64) may hold; more get 429",
        gateway.max_receivers_per_ip,
        parse: |i| v::int(i, 1, u64::from(u32::MAX)), render: v::render_int,
    ),
    key!(
        "gateway.max_receivers", "ANPX_GATEWAY_MAX_RECEIVERS", "max-receivers", "N", "4096",
        "Receiver connections the gateway holds in all, handshakes included; more get 503. Each costs up to ~40 KiB beyond gateway.max_buffered_bytes (SECURITY.md has the arithmetic)",
        gateway.max_receivers,
        parse: |i| v::int(i, 1, u64::from(u32::MAX)), render: v::render_int,
    ),
    key!(
        "gateway.keep_underscore_headers", "ANPX_GATEWAY_KEEP_UNDERSCORE_HEADERS",
        "keep-underscore-headers", "BOOL", "false",
        "Forward request headers whose names contain an underscore (dropped by default: CGI/WSGI origins read Content_Length as Content-Length)",
        gateway.keep_underscore_headers, parse: v::boolean, render: v::render_bool,
    ),
    key!(
        "gateway.security_headers", "ANPX_GATEWAY_SECURITY_HEADERS", "security-headers",
        "BOOL", "false",
        "Add X-Content-Type-Options, X-Frame-Options, Referrer-Policy (and HSTS over TLS) to responses that lack them",
        gateway.security_headers, parse: v::boolean, render: v::render_bool,
    ),
    key!(
        "gateway.block_probes", "ANPX_GATEWAY_BLOCK_PROBES", "block-probes", "BOOL", "false",
        "Answer common scanner probes (/wp-admin, /phpmyadmin, /.env, php:// wrappers, ...) with 403",
        gateway.block_probes, parse: v::boolean, render: v::render_bool,
    ),
    key!(
        "gateway.blocked_paths", "ANPX_GATEWAY_BLOCKED_PATHS", "blocked-paths", "PATTERN,..", "",
        "More case-insensitive patterns of the decoded path or query answered with 403",
        gateway.blocked_paths,
        parse: v::path_patterns, render: |p: &Vec<String>| v::render_strings(p),
    ),
    // [gateway.inspector]
    key!(
        "gateway.inspector.requests", "ANPX_GATEWAY_INSPECTOR_REQUESTS", "inspector-requests",
        "N", "100",
        "Recent requests the admin dashboard's inspector keeps (0: capture nothing)",
        gateway.inspector.requests,
        parse: |i| v::int(i, 0, 100_000), render: v::render_int,
    ),
    key!(
        "gateway.inspector.max_bytes", "ANPX_GATEWAY_INSPECTOR_MAX_BYTES", "inspector-max-bytes",
        "BYTES", "4194304",
        "Bytes the inspector's captured requests may hold together; the oldest are dropped beyond",
        gateway.inspector.max_bytes,
        parse: |i| v::int(i, 4096, 1 << 32), render: v::render_int,
    ),
    key!(
        "gateway.inspector.bodies", "ANPX_GATEWAY_INSPECTOR_BODIES", "inspector-bodies", "BOOL",
        "false",
        "Capture the first KiB of each request and response body for the inspector",
        gateway.inspector.bodies, parse: v::boolean, render: v::render_bool,
    ),
    key!(
        "gateway.inspector.show_secrets", "ANPX_GATEWAY_INSPECTOR_SHOW_SECRETS",
        "inspector-show-secrets", "BOOL", "false",
        "Show Authorization, Cookie and Set-Cookie values in the inspector instead of redacting them",
        gateway.inspector.show_secrets, parse: v::boolean, render: v::render_bool,
    ),
    // [gateway.tls]
    key!(
        "gateway.tls.cert", "ANPX_GATEWAY_TLS_CERT", "tls-cert", "PATH", "",
        "PEM certificate chain; with tls.key, serves HTTPS and WSS",
        gateway.tls.cert, parse: v::opt_path, render: v::render_opt_path,
    ),
    key!(
        "gateway.tls.key", "ANPX_GATEWAY_TLS_KEY", "tls-key", "PATH", "",
        "PEM private key of tls.cert",
        gateway.tls.key, parse: v::opt_path, render: v::render_opt_path,
    ),
    // [gateway.auth]
    key!(
        "gateway.auth.mode", "ANPX_GATEWAY_AUTH_MODE", "auth-mode", "none|did-wba", "none",
        "How receivers authenticate: not at all, or with DID-WBA signatures",
        gateway.auth.mode, parse: v::auth_mode, render: v::render_word,
    ),
    key!(
        "gateway.auth.resolver_base_url", "ANPX_GATEWAY_AUTH_RESOLVER_BASE_URL",
        "auth-resolver-base-url", "URL", "",
        "DID document resolver used instead of each did:wba host",
        gateway.auth.resolver_base_url,
        parse: |i| v::opt_url(i, HTTP_URL), render: v::render_opt_str,
    ),
    key!(
        "gateway.auth.did_documents_dir", "ANPX_GATEWAY_AUTH_DID_DOCUMENTS_DIR",
        "auth-did-documents-dir", "PATH", "",
        "Directory of DID documents consulted before resolving",
        gateway.auth.did_documents_dir, parse: v::opt_path, render: v::render_opt_path,
    ),
    key!(
        "gateway.auth.timestamp_window_secs", "ANPX_GATEWAY_AUTH_TIMESTAMP_WINDOW_SECS",
        "auth-timestamp-window-secs", "SECS", "300",
        "Largest clock difference tolerated in a signed authentication header",
        gateway.auth.timestamp_window_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    key!(
        "gateway.auth.service_names", "ANPX_GATEWAY_AUTH_SERVICE_NAMES",
        "auth-service-names", "HOST,..", "",
        "Host names a receiver may sign as the service; a login signed for any other name is refused (unset: whatever Host the receiver dialled)",
        gateway.auth.service_names,
        parse: v::host_names, render: |n: &Vec<String>| v::render_strings(n),
    ),
    key!(
        "gateway.auth.max_nonces_per_did", "ANPX_GATEWAY_AUTH_MAX_NONCES_PER_DID",
        "auth-max-nonces-per-did", "N", "1000",
        "Most logins one DID may make within the 7-minute nonce memory; more are refused for that DID only (at most gateway.auth.max_nonces)",
        gateway.auth.max_nonces_per_did,
        parse: |i| v::int(i, 1, MAX_NONCES), render: v::render_int,
    ),
    key!(
        "gateway.auth.max_nonces", "ANPX_GATEWAY_AUTH_MAX_NONCES",
        "auth-max-nonces", "N", "100000",
        "Logins all DIDs together may make within the 7-minute nonce memory (its size: about 100 bytes each); more are refused until old ones expire",
        gateway.auth.max_nonces,
        parse: |i| v::int(i, 1, MAX_NONCES), render: v::render_int,
    ),
    key!(
        "gateway.auth.max_document_fetches", "ANPX_GATEWAY_AUTH_MAX_DOCUMENT_FETCHES",
        "auth-max-document-fetches", "N", "64",
        "DID document fetches in flight at once, all hosts together; a login needing one more is refused at once (document_fetch_refused), logins whose document is cached or local are not",
        gateway.auth.max_document_fetches,
        parse: |i| v::int(i, 1, u64::from(u32::MAX)), render: v::render_int,
    ),
    key!(
        "gateway.auth.max_document_fetches_per_host", "ANPX_GATEWAY_AUTH_MAX_DOCUMENT_FETCHES_PER_HOST",
        "auth-max-document-fetches-per-host", "N", "4",
        "DID document fetches in flight at once to one host (at most gateway.auth.max_document_fetches)",
        gateway.auth.max_document_fetches_per_host,
        parse: |i| v::int(i, 1, u64::from(u32::MAX)), render: v::render_int,
    ),
    key!(
        "gateway.auth.failed_host_memory_secs", "ANPX_GATEWAY_AUTH_FAILED_HOST_MEMORY_SECS",
        "auth-failed-host-memory-secs", "SECS", "10",
        "Seconds a host whose DID document fetch failed is not asked again (its logins are refused meanwhile; 0: always ask)",
        gateway.auth.failed_host_memory_secs,
        parse: |i| v::int(i, 0, MAX_SECS), render: v::render_int,
    ),
    // [gateway.caller_auth]
    key!(
        "gateway.caller_auth.services", "ANPX_GATEWAY_CALLER_AUTH_SERVICES",
        "caller-auth-services", "SVC,..", "",
        "Service URLs (host/prefix) whose callers must authenticate with DID-WBA or a bearer token the gateway issued (empty: off)",
        gateway.caller_auth.services,
        parse: v::services, render: |s: &Vec<_>| Some(v::render_services(s)),
    ),
    key!(
        "gateway.caller_auth.token_key", "ANPX_GATEWAY_CALLER_AUTH_TOKEN_KEY",
        "caller-auth-token-key", "PATH", "",
        "PEM PKCS#8 Ed25519 private key the callers' access tokens are signed with (required with caller_auth.services)",
        gateway.caller_auth.token_key, parse: v::opt_path, render: v::render_opt_path,
    ),
    key!(
        "gateway.caller_auth.token_lifetime_secs", "ANPX_GATEWAY_CALLER_AUTH_TOKEN_LIFETIME_SECS",
        "caller-auth-token-lifetime-secs", "SECS", "3600",
        "Seconds an access token issued to a verified caller is accepted",
        gateway.caller_auth.token_lifetime_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    key!(
        "gateway.caller_auth.did_header", "ANPX_GATEWAY_CALLER_AUTH_DID_HEADER",
        "caller-auth-did-header", "NAME", "x-anpx-caller-did",
        "Request header the verified caller DID reaches the agent in; any the caller sends is removed on every route",
        gateway.caller_auth.did_header, parse: v::header_name, render: |n: &String| v::render_str(n),
    ),
    // [gateway.registry]
    key!(
        "gateway.registry.url", "ANPX_GATEWAY_REGISTRY_URL", "registry-url", "URL", "",
        "Service registry database (sqlite:, mysql://, postgres://) used instead of the static table",
        gateway.registry.url,
        parse: v::opt_registry_url, render: v::render_opt_str,
    ),
    key!(
        "gateway.registry.refresh_secs", "ANPX_GATEWAY_REGISTRY_REFRESH_SECS",
        "registry-refresh-secs", "SECS", "60",
        "Seconds between reads of a connected DID's grants from the registry (a change reaches live connections within this time); also how long grants read at a connect are reused",
        gateway.registry.refresh_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    // [gateway.rate_limit]
    key!(
        "gateway.rate_limit.ip_per_sec", "ANPX_GATEWAY_RATE_LIMIT_IP_PER_SEC",
        "rate-limit-ip-per-sec", "N", "",
        "Public requests a second per client address (IPv6: per /64); more get 429 (unset: no limit)",
        gateway.rate_limit.ip_per_sec,
        parse: |i| v::opt_int(i, 1, 1_000_000), render: v::render_opt_int,
    ),
    key!(
        "gateway.rate_limit.ip_burst", "ANPX_GATEWAY_RATE_LIMIT_IP_BURST",
        "rate-limit-ip-burst", "N", "",
        "Requests a client address may send at once after a quiet period (unset: ip_per_sec)",
        gateway.rate_limit.ip_burst,
        parse: |i| v::opt_int(i, 1, 1_000_000), render: v::render_opt_int,
    ),
    key!(
        "gateway.rate_limit.route_per_sec", "ANPX_GATEWAY_RATE_LIMIT_ROUTE_PER_SEC",
        "rate-limit-route-per-sec", "N", "",
        "Public requests a second per route (host and first path segment), all clients together (unset: no limit)",
        gateway.rate_limit.route_per_sec,
        parse: |i| v::opt_int(i, 1, 1_000_000), render: v::render_opt_int,
    ),
    key!(
        "gateway.rate_limit.route_burst", "ANPX_GATEWAY_RATE_LIMIT_ROUTE_BURST",
        "rate-limit-route-burst", "N", "",
        "Requests a route may take at once after a quiet period (unset: route_per_sec)",
        gateway.rate_limit.route_burst,
        parse: |i| v::opt_int(i, 1, 1_000_000), render: v::render_opt_int,
    ),
    key!(
        "gateway.rate_limit.max_tracked", "ANPX_GATEWAY_RATE_LIMIT_MAX_TRACKED",
        "rate-limit-max-tracked", "N", "100000",
        "Client addresses (and routes) whose rate is remembered; beyond, the longest-idle are forgotten",
        gateway.rate_limit.max_tracked,
        parse: |i| v::int(i, 1, 100_000_000), render: v::render_int,
    ),
    // [gateway.cors]
    key!(
        "gateway.cors.origins", "ANPX_GATEWAY_CORS_ORIGINS", "cors-origins", "ORIGIN,..", "",
        "Origins whose cross-origin requests the gateway answers (preflight and Access-Control-* headers); * for any (empty: off)",
        gateway.cors.origins,
        parse: v::origins, render: |o: &Vec<String>| v::render_strings(o),
    ),
    key!(
        "gateway.cors.max_age_secs", "ANPX_GATEWAY_CORS_MAX_AGE_SECS", "cors-max-age-secs",
        "SECS", "600",
        "Seconds browsers may cache a preflight answer",
        gateway.cors.max_age_secs,
        parse: |i| v::int(i, 0, MAX_SECS), render: v::render_int,
    ),
    // [gateway.cluster]
    key!(
        "gateway.cluster.nats_url", "ANPX_GATEWAY_CLUSTER_NATS_URL", "cluster-nats-url", "URL", "",
        "NATS server shared by the gateways of a cluster (unset: a single gateway)",
        gateway.cluster.nats_url,
        parse: |i| v::opt_url(i, NATS_URL), render: v::render_opt_str,
    ),
    key!(
        "gateway.cluster.node_name", "ANPX_GATEWAY_CLUSTER_NODE_NAME", "cluster-node-name", "NAME",
        "",
        "This gateway's name in the cluster, unique per gateway (unset: host name and process id)",
        gateway.cluster.node_name,
        parse: v::opt_node_name, render: v::render_opt_str,
    ),
    key!(
        "gateway.cluster.subject_prefix", "ANPX_GATEWAY_CLUSTER_SUBJECT_PREFIX",
        "cluster-subject-prefix", "PREFIX", "anpx",
        "Prefix of the cluster's NATS subjects; clusters sharing a NATS server need different ones",
        gateway.cluster.subject_prefix,
        parse: v::subject_prefix, render: v::render_str,
    ),
    key!(
        "gateway.cluster.announce_interval_ms", "ANPX_GATEWAY_CLUSTER_ANNOUNCE_INTERVAL_MS",
        "cluster-announce-interval-ms", "MS", "1000",
        "Milliseconds between announcements of the routes this gateway's receivers serve",
        gateway.cluster.announce_interval_ms,
        parse: |i| v::int(i, 10, MAX_MILLIS), render: v::render_int,
    ),
    key!(
        "gateway.cluster.route_ttl_ms", "ANPX_GATEWAY_CLUSTER_ROUTE_TTL_MS",
        "cluster-route-ttl-ms", "MS", "3000",
        "Milliseconds of silence after which another gateway and its routes are forgotten",
        gateway.cluster.route_ttl_ms,
        parse: |i| v::int(i, 20, MAX_MILLIS), render: v::render_int,
    ),
    // [[gateway.routes.grant]]; its parser names the entry at fault itself.
    KeyInfo {
        key: "gateway.routes.grant",
        env: "ANPX_GATEWAY_ROUTES_GRANT",
        flag: "routes-grant",
        value_name: "DID=SVC,..;..",
        default: "",
        help: "Static grants: which DID may serve which services",
        apply: |config, input| {
            config.gateway.routes.grant = v::grants(input)?;
            Ok(())
        },
        render: |config| v::render_grants(&config.gateway.routes.grant),
    },
    // [receiver]
    key!(
        "receiver.gateway", "ANPX_RECEIVER_GATEWAY", "gateway", "URL", "ws://127.0.0.1:8080/ws",
        "WebSocket URL of the gateway",
        receiver.gateway, parse: |i| v::url(i, WS_URL), render: v::render_str,
    ),
    key!(
        "receiver.extra_gateways", "ANPX_RECEIVER_EXTRA_GATEWAYS", "extra-gateways", "URL,..", "",
        "More gateway WebSocket URLs to hold a connection to at the same time (multi-homing)",
        receiver.extra_gateways,
        parse: |i| v::urls(i, WS_URL), render: |u: &Vec<String>| v::render_strings(u),
    ),
    key!(
        "receiver.upstream", "ANPX_RECEIVER_UPSTREAM", "upstream", "URL", "",
        "Base URL requests are forwarded to (unset: an in-process service); SIGHUP sends new requests to a changed one",
        receiver.upstream,
        parse: |i| v::opt_url(i, HTTP_URL), render: v::render_opt_str,
    ),
    key!(
        "receiver.services", "ANPX_RECEIVER_SERVICES", "services", "SVC,..", "",
        "Services to register, as host/prefix (empty: all the gateway grants); SIGHUP declares a changed set over a new connection and drains the old one",
        receiver.services,
        parse: v::services, render: |s: &Vec<_>| Some(v::render_services(s)),
    ),
    key!(
        "receiver.ca_file", "ANPX_RECEIVER_CA_FILE", "ca-file", "PATH", "",
        "PEM CA certificates trusted for a wss:// gateway, besides the system's; a self-signed gateway certificate listed here is trusted as it is",
        receiver.ca_file, parse: v::opt_path, render: v::render_opt_path,
    ),
    key!(
        "receiver.pin_sha256", "ANPX_RECEIVER_PIN_SHA256", "pin-sha256", "PIN,..", "",
        "SHA-256 of the gateway's public key (SPKI), sha256//BASE64 as curl's --pinnedpubkey or hex; when set, only a matching key is trusted",
        receiver.pin_sha256, parse: v::pins, render: |p: &Vec<String>| v::render_strings(p),
    ),
    key!(
        "receiver.drain_grace_secs", "ANPX_RECEIVER_DRAIN_GRACE_SECS", "drain-grace-secs", "SECS",
        "10",
        "On SIGTERM/Ctrl-C: seconds requests in flight may take to finish while an anpx gateway sends new ones to other receivers (a reference gateway's get 503); 0 closes at once",
        receiver.drain_grace_secs,
        parse: |i| v::int(i, 0, MAX_SECS), render: v::render_int,
    ),
    key!(
        "receiver.log_level", "ANPX_RECEIVER_LOG_LEVEL", "log-level", "DIRECTIVES", "info",
        "What is logged: a level (error, warn, info, debug, trace, off) or RUST_LOG directives such as warn,shell_common=debug; RUST_LOG wins when set; SIGHUP applies a change",
        receiver.log_level, parse: v::log_level, render: |s: &String| v::render_str(s),
    ),
    key!(
        "receiver.ping_interval_secs", "ANPX_RECEIVER_PING_INTERVAL_SECS",
        "ping-interval-secs", "SECS", "30",
        "Seconds between pings to the gateway; twice this without traffic reconnects",
        receiver.ping_interval_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    key!(
        "receiver.reconnect_first_delay_ms", "ANPX_RECEIVER_RECONNECT_FIRST_DELAY_MS",
        "reconnect-first-delay-ms", "MS", "1000",
        "Longest wait before the first reconnect attempt",
        receiver.reconnect_first_delay_ms,
        parse: |i| v::int(i, 1, MAX_MILLIS), render: v::render_int,
    ),
    key!(
        "receiver.reconnect_max_delay_secs", "ANPX_RECEIVER_RECONNECT_MAX_DELAY_SECS",
        "reconnect-max-delay-secs", "SECS", "300",
        "Longest wait between reconnect attempts",
        receiver.reconnect_max_delay_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    key!(
        "receiver.reconnect_max_attempts", "ANPX_RECEIVER_RECONNECT_MAX_ATTEMPTS",
        "reconnect-max-attempts", "N", "",
        "Failed reconnect attempts in a row before giving up (unset or 0: never give up)",
        receiver.reconnect_max_attempts,
        // 0 reads as "no limit", the way operators of other tunnels spell it.
        parse: |i| v::opt_int(i, 0, u64::from(u32::MAX)).map(|n: Option<u32>| n.filter(|&n| n != 0)),
        render: v::render_opt_int,
    ),
    key!(
        "receiver.reconnect_reset_after_secs", "ANPX_RECEIVER_RECONNECT_RESET_AFTER_SECS",
        "reconnect-reset-after-secs", "SECS", "60",
        "Seconds a connection must stay up for the reconnect delays to start over from the first",
        receiver.reconnect_reset_after_secs,
        parse: |i| v::int(i, 1, MAX_SECS), render: v::render_int,
    ),
    key!(
        "receiver.keep_retrying", "ANPX_RECEIVER_KEEP_RETRYING", "keep-retrying", "BOOL", "false",
        "Keep retrying when the gateway refuses this receiver (401, 403, 404) instead of exiting",
        receiver.keep_retrying, parse: v::boolean, render: v::render_bool,
    ),
    key!(
        "receiver.did_document", "ANPX_RECEIVER_DID_DOCUMENT", "did-document", "PATH", "",
        "This receiver's DID document, for DID-WBA authentication",
        receiver.did_document, parse: v::opt_path, render: v::render_opt_path,
    ),
    key!(
        "receiver.private_key", "ANPX_RECEIVER_PRIVATE_KEY", "private-key", "PATH", "",
        "Private key matching did_document",
        receiver.private_key, parse: v::opt_path, render: v::render_opt_path,
    ),
    key!(
        "receiver.chunk_size", "ANPX_RECEIVER_CHUNK_SIZE", "chunk-size", "BYTES", "65536",
        "Largest frame sent to the gateway; larger responses are chunked (streamed to an anpx gateway in frames of up to 256 KiB)",
        receiver.chunk_size,
        // Gateways refuse frames above their limit, 64 MiB by default.
        parse: |i| v::int(i, MIN_CHUNK, DEFAULT_MAX_FRAME_LEN as u64), render: v::render_int,
    ),
    key!(
        "receiver.max_buffered_response_bytes", "ANPX_RECEIVER_MAX_BUFFERED_RESPONSE_BYTES",
        "max-buffered-response-bytes", "BYTES", "67108864",
        "Largest response body held whole for a gateway that cannot take it streamed (a reference gateway); larger gets 502",
        receiver.max_buffered_response_bytes,
        parse: |i| v::int(i, 1, MAX_BODY_BYTES), render: v::render_int,
    ),
    key!(
        "receiver.max_buffered_bytes", "ANPX_RECEIVER_MAX_BUFFERED_BYTES",
        "max-buffered-bytes", "BYTES", "268435456",
        "Response bytes held whole for a gateway that cannot take them streamed, every request of a connection together; the response that would go past gets 502",
        receiver.max_buffered_bytes,
        parse: |i| v::int(i, 1, MAX_BODY_BYTES), render: v::render_int,
    ),
    key!(
        "receiver.max_inflight", "ANPX_RECEIVER_MAX_INFLIGHT", "max-inflight", "N", "1000",
        "Requests served at once on one gateway connection; more are answered 503 with Retry-After: 1, without reaching the service",
        receiver.max_inflight,
        parse: |i| v::int(i, 1, u64::from(u32::MAX)), render: v::render_int,
    ),
    key!(
        "receiver.admin_listen", "ANPX_RECEIVER_ADMIN_LISTEN", "admin-listen", "ADDR|off", "off",
        "Address of the receiver's admin plane: /status, /metrics and its request inspector (off: none; 127.0.0.1:8082 keeps it beside a gateway's 8081); keep it private",
        receiver.admin_listen, parse: v::addr_or_off, render: v::render_addr_or_off,
    ),
    // [receiver.inspector]
    key!(
        "receiver.inspector.requests", "ANPX_RECEIVER_INSPECTOR_REQUESTS", "inspector-requests",
        "N", "100",
        "Recent requests the receiver's inspector keeps (0: capture nothing)",
        receiver.inspector.requests,
        parse: |i| v::int(i, 0, 100_000), render: v::render_int,
    ),
    key!(
        "receiver.inspector.max_bytes", "ANPX_RECEIVER_INSPECTOR_MAX_BYTES", "inspector-max-bytes",
        "BYTES", "4194304",
        "Bytes the receiver inspector's captured requests may hold together; the oldest are dropped beyond",
        receiver.inspector.max_bytes,
        parse: |i| v::int(i, 4096, 1 << 32), render: v::render_int,
    ),
    key!(
        "receiver.inspector.bodies", "ANPX_RECEIVER_INSPECTOR_BODIES", "inspector-bodies", "BOOL",
        "false",
        "Capture the first KiB of each request and response body for the receiver's inspector",
        receiver.inspector.bodies, parse: v::boolean, render: v::render_bool,
    ),
    key!(
        "receiver.inspector.show_secrets", "ANPX_RECEIVER_INSPECTOR_SHOW_SECRETS",
        "inspector-show-secrets", "BOOL", "false",
        "Show Authorization, Cookie and Set-Cookie values in the receiver's inspector instead of redacting them",
        receiver.inspector.show_secrets, parse: v::boolean, render: v::render_bool,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_key() {
        for k in keys() {
            let env = format!("{ENV_PREFIX}{}", k.key.replace('.', "_").to_uppercase());
            assert_eq!(k.env, env, "{}", k.key);
            let flag = k
                .key
                .split_once('.')
                .map(|(_, rest)| rest.replace(['.', '_'], "-"))
                .unwrap_or_default();
            assert_eq!(k.flag, flag, "{}", k.key);
            assert!(["gateway", "receiver"].contains(&k.section()), "{}", k.key);
            assert!(!k.help.is_empty() && !k.help.contains('\n'), "{}", k.key);
            assert!(!k.help.ends_with('.'), "{}", k.key);
        }
    }

    #[test]
    fn names_are_unique() {
        let all = keys();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.key, b.key);
                assert_ne!(a.env, b.env);
                assert!(a.section() != b.section() || a.flag != b.flag, "{}", a.flag);
            }
            assert_ne!(a.env, CONFIG_FILE_ENV);
            assert_ne!(a.env, LANE_SPIN_ENV);
        }
    }

    #[test]
    fn sections_are_contiguous() {
        // to_toml_string writes a table header when the section changes; a
        // section split in two would be written twice, which TOML refuses.
        let sections: Vec<&str> = keys()
            .iter()
            .map(|k| k.key.rsplit_once('.').map_or("", |(s, _)| s))
            .collect();
        for (i, s) in sections.iter().enumerate() {
            if i > 0 && sections[i - 1] != *s {
                assert!(!sections[..i].contains(s), "{s} is split");
            }
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(
            find_key("gateway.tls.cert").map(|k| k.env),
            Some("ANPX_GATEWAY_TLS_CERT")
        );
        assert_eq!(
            find_env("ANPX_RECEIVER_SERVICES").map(|k| k.key),
            Some("receiver.services")
        );
        assert_eq!(
            find_flag("receiver", "chunk-size").map(|k| k.key),
            Some("receiver.chunk_size")
        );
        assert_eq!(
            find_flag("gateway", "chunk-size").map(|k| k.key),
            Some("gateway.chunk_size")
        );
        assert!(find_key("gateway").is_none());
        assert!(is_section("gateway") && is_section("gateway.tls") && is_section("gateway.routes"));
        assert!(!is_section("gateway.listen") && !is_section("gate") && !is_section(""));
    }

    #[test]
    fn suggestions() {
        let all = || keys().iter().map(|k| k.key);
        assert_eq!(nearest("gateway.listne", all()), Some("gateway.listen"));
        assert_eq!(
            nearest("receiver.service", all()),
            Some("receiver.services")
        );
        assert_eq!(nearest("completely.different", all()), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
