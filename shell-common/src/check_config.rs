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
/// answers HTTP and the registry database answers, each one that is set;
/// one that does not fails the command (exit 1). Its futures must be
/// polled inside a tokio runtime (see [`crate::registry`]).
pub async fn online(program: &str, config: &Config) -> Result<()> {
    run(program, config)?;
    let format = config.gateway.log_format;
    let mut failed = Vec::new();
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
    use std::io::{BufRead, BufReader, Write};
    use std::net::ToSocketAddrs;
    let (tls, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => return Err(std::io::Error::other("not an http:// or https:// URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    let addr = with_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the host has no address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, ONLINE_TIMEOUT)?;
    if tls {
        return Ok(format!("TCP connection to {addr} accepted"));
    }
    stream.set_read_timeout(Some(ONLINE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    match line.trim_end() {
        l if l.starts_with("HTTP/") => Ok(l.to_owned()),
        _ => Err(std::io::Error::other("no HTTP response")),
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
