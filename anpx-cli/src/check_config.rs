//! `anpx check-config`: the effective configuration on stdout, and a check
//! that every file it names can be read, for both binaries.

use std::path::{Path, PathBuf};

use anpx_core::config::Config;
use anyhow::Result;

use crate::process::{note, UsageError};

/// Prints `config` as TOML, then checks the files it names; each problem is
/// one line of the error, which exits 2.
pub fn run(program: &str, config: &Config) -> Result<()> {
    println!("{}", config.to_toml_string().trim_end());
    let problems = unreadable(config);
    if problems.is_empty() {
        crate::process::note(
            program,
            config.gateway.log_format,
            "configuration valid; every file it names can be read",
        );
        return Ok(());
    }
    Err(UsageError(format!(
        "{} file(s) the configuration names cannot be used:\n  {}",
        problems.len(),
        problems.join("\n  ")
    ))
    .into())
}

/// `check-config --online`: [`run`], then whether `receiver.upstream`
/// answers HTTP, the registry database answers, the NATS server of
/// `gateway.cluster.nats_url` greets, and the gateway of
/// `receiver.gateway` (when not its default) and each of
/// `receiver.extra_gateways` answers a WebSocket upgrade, each one that is
/// set; one that does not fails the command (exit 1). Its futures must be
/// polled inside a tokio runtime (see [`shell_common::registry`]).
pub async fn online(program: &str, config: &Config) -> Result<()> {
    run(program, config)?;
    let format = config.gateway.log_format;
    let mut failed = Vec::new();
    if let Some(urls) = &config.gateway.cluster.nats_url {
        // Several servers may be listed, comma-separated, as NATS clients take them.
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            match nats_greets(url) {
                Ok(()) => note(
                    program,
                    format,
                    format_args!("gateway.cluster.nats_url {url} answers: NATS INFO"),
                ),
                Err(e) => failed.push(format!("gateway.cluster.nats_url {url}: {e}")),
            }
        }
    }
    let receiver = &config.receiver;
    let default_gateway = anpx_core::config::ReceiverSection::default().gateway;
    let gateways = std::iter::once(("receiver.gateway", &receiver.gateway))
        .filter(|(_, url)| **url != default_gateway)
        .chain(
            receiver
                .extra_gateways
                .iter()
                .map(|url| ("receiver.extra_gateways", url)),
        );
    for (key, url) in gateways {
        match gateway_answers(url, receiver) {
            Ok(what) => note(program, format, format_args!("{key} {url} answers: {what}")),
            Err(e) => failed.push(format!("{key} {url}: {e}")),
        }
    }
    if let Some(upstream) = &config.receiver.upstream {
        match upstream_answers(upstream) {
            Ok(status) => note(
                program,
                format,
                format_args!("receiver.upstream {upstream} answers: {status}"),
            ),
            Err(e) => failed.push(format!("receiver.upstream {upstream}: {e}")),
        }
    }
    if let Some(url) = &config.gateway.registry.url {
        let listed = async {
            let registry = crate::registry_cmd::database(url).await?;
            anyhow::Ok(anpx_core::registry::Registry::list(&registry).await?.len())
        };
        match listed.await {
            Ok(n) => note(
                program,
                format,
                format_args!("gateway.registry.url answers: {n} entries"),
            ),
            Err(e) => failed.push(format!("gateway.registry.url: {e:#}")),
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    anyhow::bail!("not answering:\n  {}", failed.join("\n  "))
}

/// How long `--online` waits for each service.
const ONLINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends `GET /` (the base URL's path) to an `http://` upstream and returns
/// its status line; an `https://` one is only connected to.
fn upstream_answers(url: &str) -> std::io::Result<String> {
    use std::io::Write;
    let (tls, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => return Err(std::io::Error::other("not an http:// or https:// URL")),
    };
    let (with_port, host_port, path) = authority(rest, if tls { 443 } else { 80 });
    let mut stream = connect(&with_port)?;
    if tls {
        let addr = stream.peer_addr()?;
        return Ok(format!("TCP connection to {addr} accepted"));
    }
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n"
    )?;
    let line = read_line_bounded(stream, 8 * 1024).map_err(timed_out)?;
    match line {
        l if l.starts_with("HTTP/") => Ok(l),
        _ => Err(std::io::Error::other("no HTTP response")),
    }
}

/// The host and port of `rest` (what follows `scheme://`, up to the first
/// `/`), the port `default` when none is written, and the path.
fn authority(rest: &str, default: u16) -> (String, &str, &str) {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // Credentials (`nats://user:pass@host`) are not part of the address.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let with_port = if host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default}")
    };
    (with_port, host_port, path)
}

/// A TCP connection to `host:port` within [`ONLINE_TIMEOUT`], reads and
/// writes bounded by it too.
fn connect(with_port: &str) -> std::io::Result<std::net::TcpStream> {
    use std::net::ToSocketAddrs;
    let addr = with_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the host has no address"))?;
    let stream = std::net::TcpStream::connect_timeout(&addr, ONLINE_TIMEOUT)?;
    stream.set_read_timeout(Some(ONLINE_TIMEOUT))?;
    stream.set_write_timeout(Some(ONLINE_TIMEOUT))?;
    Ok(stream)
}

/// Reads one line of at most `limit` bytes (a peer that sends no newline
/// cannot make it read more).
fn read_line_bounded(reader: impl std::io::Read, limit: u64) -> std::io::Result<String> {
    use std::io::{BufRead, BufReader};
    let mut line = Vec::new();
    BufReader::new(reader.take(limit)).read_until(b'\n', &mut line)?;
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

/// Whether a NATS server at `url` (`nats://` or `tls://`, port 4222 by
/// default) greets a new connection with its `INFO` line, as every NATS
/// server does before anything else (before TLS too).
fn nats_greets(url: &str) -> std::io::Result<()> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (with_port, _, _) = authority(rest, 4222);
    let stream = connect(&with_port)?;
    let line = read_line_bounded(stream, 64 * 1024).map_err(timed_out)?;
    if line.starts_with("INFO ") {
        Ok(())
    } else if line.is_empty() {
        Err(std::io::Error::other("closed without a NATS INFO greeting"))
    } else {
        let shown: String = line.chars().take(60).collect();
        Err(std::io::Error::other(format!(
            "not a NATS server: it greeted with {shown:?}, not INFO"
        )))
    }
}

/// A read that waited [`ONLINE_TIMEOUT`] says so in words.
fn timed_out(e: std::io::Error) -> std::io::Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            std::io::Error::other(format!("no answer within {} s", ONLINE_TIMEOUT.as_secs()))
        }
        _ => e,
    }
}

/// Sends a WebSocket upgrade to the gateway at `url` (`ws://`, or `wss://`
/// with the receiver's trust) and reads the status: 101, or a 4xx (it
/// answered; 401 and 403 mean it wants the receiver's DID-WBA identity or
/// grants) is reachable; any other answer or none is not.
fn gateway_answers(
    url: &str,
    receiver: &anpx_core::config::ReceiverSection,
) -> std::io::Result<String> {
    use std::io::Write;
    let (secure, rest) = match url.split_once("://") {
        Some(("ws", rest)) => (false, rest),
        Some(("wss", rest)) => (true, rest),
        _ => return Err(std::io::Error::other("not a ws:// or wss:// URL")),
    };
    let (with_port, host_port, path) = authority(rest, if secure { 443 } else { 80 });
    let tcp = connect(&with_port)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    let line = if secure {
        let host = host_port
            .rsplit_once(':')
            .filter(|(_, p)| p.parse::<u16>().is_ok())
            .map_or(host_port, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let trust = if receiver.ca_file.is_some() || !receiver.pin_sha256.is_empty() {
            Some(
                shell_common::tls::receiver_client_config(
                    receiver.ca_file.as_deref(),
                    &receiver.pin_sha256,
                )
                .map_err(|e| std::io::Error::other(format!("tls: {e}")))?,
            )
        } else {
            None
        };
        let (config, name) = shell_common::tls::dial(host, trust)
            .map_err(|e| std::io::Error::other(format!("tls: {e}")))?;
        let conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| std::io::Error::other(format!("tls: {e}")))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(request.as_bytes()).map_err(timed_out)?;
        read_line_bounded(tls, 8 * 1024).map_err(timed_out)?
    } else {
        let mut tcp = tcp;
        tcp.write_all(request.as_bytes()).map_err(timed_out)?;
        read_line_bounded(tcp, 8 * 1024).map_err(timed_out)?
    };
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(101) => Ok("WebSocket upgrade accepted (101)".to_owned()),
        Some(s @ (401 | 403)) => Ok(format!(
            "reachable; it answered {s}: authentication needed (receiver.did_document and \
             receiver.private_key, and a grant for the services)"
        )),
        Some(s @ 400..=499) => Ok(format!("reachable; it answered {s}")),
        Some(s) => Err(std::io::Error::other(format!(
            "answered {s}, not a WebSocket upgrade"
        ))),
        None if line.is_empty() => Err(std::io::Error::other("closed without an answer")),
        None => Err(std::io::Error::other("no HTTP response")),
    }
}

/// What a path names.
#[derive(Clone, Copy)]
enum Kind {
    File,
    Dir,
}

/// The files and folders `config` names that cannot be read, one line each
/// with its key.
pub fn unreadable(config: &Config) -> Vec<String> {
    let g = &config.gateway;
    let r = &config.receiver;
    let named: [(&str, Option<&Path>, Kind); 7] = [
        ("gateway.tls.cert", g.tls.cert.as_deref(), Kind::File),
        ("gateway.tls.key", g.tls.key.as_deref(), Kind::File),
        (
            "gateway.auth.did_documents_dir",
            g.auth.did_documents_dir.as_deref(),
            Kind::Dir,
        ),
        (
            "gateway.caller_auth.token_key",
            g.caller_auth.token_key.as_deref(),
            Kind::File,
        ),
        ("receiver.ca_file", r.ca_file.as_deref(), Kind::File),
        (
            "receiver.did_document",
            r.did_document.as_deref(),
            Kind::File,
        ),
        ("receiver.private_key", r.private_key.as_deref(), Kind::File),
    ];
    let sqlite_dir = g.registry.url.as_deref().and_then(sqlite_dir);
    named
        .into_iter()
        .filter_map(|(key, path, kind)| Some((key, path?.to_owned(), kind)))
        .chain(sqlite_dir.map(|d| {
            (
                "gateway.registry.url (the SQLite file's folder)",
                d,
                Kind::Dir,
            )
        }))
        .filter_map(|(key, path, kind)| {
            check(&path, kind)
                .err()
                .map(|why| format!("{key}: {}: {why}", path.display()))
        })
        .collect()
}

fn check(path: &Path, kind: Kind) -> std::io::Result<()> {
    match kind {
        Kind::File => {
            if std::fs::File::open(path)?.metadata()?.is_dir() {
                return Err(std::io::Error::other("a folder, not a file"));
            }
            Ok(())
        }
        Kind::Dir => std::fs::read_dir(path).map(drop),
    }
}

/// The folder of a `sqlite:` URL's file (`sqlite:PATH`, `sqlite://PATH`,
/// query string dropped); `None` for other databases and in-memory ones.
fn sqlite_dir(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    let parent = Path::new(path).parent()?;
    Some(if parent.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        parent.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlite_folder_is_found_in_each_url_form() {
        assert_eq!(
            sqlite_dir("sqlite:///var/lib/a.db?mode=rwc"),
            Some("/var/lib".into())
        );
        assert_eq!(sqlite_dir("sqlite:a.db"), Some(".".into()));
        assert_eq!(sqlite_dir("sqlite:data/a.db"), Some("data".into()));
        assert_eq!(sqlite_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_dir("postgres://h/db"), None);
    }

    #[test]
    fn addresses_take_the_default_port_and_drop_credentials() {
        assert_eq!(
            authority("h.example:4223/x", 4222),
            ("h.example:4223".into(), "h.example:4223", "/x")
        );
        assert_eq!(
            authority("u:p@h.example", 4222),
            ("h.example:4222".into(), "h.example", "/")
        );
        assert_eq!(authority("[::1]", 80).0, "[::1]:80");
        assert_eq!(authority("[::1]:81/ws", 80).0, "[::1]:81");
    }

    /// A server on loopback that writes `greeting` to each connection, at
    /// once when it starts with `INFO` or `!`, else after reading a request
    /// head.
    fn saying(greeting: &'static str) -> std::net::SocketAddr {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let (at_once, greeting) = match greeting.strip_prefix('!') {
                    Some(g) => (true, g),
                    None => (greeting.starts_with("INFO"), greeting),
                };
                if !at_once {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                }
                let _ = conn.write_all(greeting.as_bytes());
            }
        });
        addr
    }

    fn nobody() -> std::net::SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[test]
    fn a_nats_server_is_known_by_its_info_line() {
        let nats = saying("INFO {\"server_id\":\"x\"}\r\n");
        assert!(nats_greets(&format!("nats://{nats}")).is_ok());
        let http = saying("!HTTP/1.1 200 OK\r\n\r\n");
        let e = nats_greets(&format!("nats://{http}")).unwrap_err();
        assert!(e.to_string().contains("not a NATS server"), "{e}");
        assert!(nats_greets(&format!("nats://{}", nobody())).is_err());
    }

    #[test]
    fn a_gateway_answers_the_upgrade_with_101_or_a_4xx() {
        let r = anpx_core::config::ReceiverSection::default();
        let ws = |addr| format!("ws://{addr}/ws");
        let upgraded = saying("HTTP/1.1 101 Switching Protocols\r\n\r\n");
        assert!(gateway_answers(&ws(upgraded), &r).unwrap().contains("101"));
        let auth = saying("HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n");
        let said = gateway_answers(&ws(auth), &r).unwrap();
        assert!(said.contains("authentication needed"), "{said}");
        let failing = saying("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        let e = gateway_answers(&ws(failing), &r).unwrap_err();
        assert!(e.to_string().contains("answered 502"), "{e}");
        assert!(gateway_answers(&ws(nobody()), &r).is_err());
        assert!(gateway_answers("http://127.0.0.1:1/", &r).is_err());
    }

    #[test]
    fn missing_files_are_named_with_their_keys() {
        let mut config = Config::default();
        assert!(unreadable(&config).is_empty());
        config.gateway.tls.cert = Some("/nonexistent/cert.pem".into());
        config.receiver.did_document = Some(std::env::temp_dir());
        config.gateway.registry.url = Some("sqlite:///nonexistent/dir/r.db".into());
        let problems = unreadable(&config);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("gateway.tls.cert: /nonexistent/cert.pem: "));
        // A folder where a file is expected cannot be read as one.
        assert!(
            problems[1].starts_with("receiver.did_document: "),
            "{problems:?}"
        );
        assert!(
            problems[2].starts_with("gateway.registry.url"),
            "{problems:?}"
        );
    }
}
