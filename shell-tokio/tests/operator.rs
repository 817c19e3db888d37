//! What an operator sees of the `anpx` and `anpx-smol` binaries: when a
//! receiver stops instead of retrying, and what it says when it does.

#[path = "support/exit.rs"]
mod exit;
mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use exit::exits_within;
use support::{Binary, Proc};

/// Every scenario runs on both shells: `per_shell!(scenario)` makes the
/// tests `scenario::anpx` and `scenario::anpx_smol`, calling
/// `scenario(Binary::Anpx)` and `scenario(Binary::AnpxSmol)`.
macro_rules! per_shell {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn anpx() {
                super::$scenario(super::Binary::Anpx);
            }

            #[test]
            fn anpx_smol() {
                super::$scenario(super::Binary::AnpxSmol);
            }
        }
    )*};
}

per_shell!(
    refused_receiver_exits,
    gives_up_naming_the_cause,
    back_after_going_away,
    says_where_things_are_reachable,
    clean_logs,
    sighup_is_logged_not_fatal,
    sighup_reloads_in_place,
    sighup_reloads_the_certificate,
    sighup_relinks_for_new_services,
    refused_relink_keeps_the_running_connection,
    trusts_a_self_signed_gateway_when_pinned,
    receiver_drains_on_sigterm,
    drain_moves_new_requests_to_another_receiver,
    listens_on_localhost,
    command_line_conventions,
    check_config_online_reaches_nats_and_the_gateway,
    both_serves_in_one_process,
);

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("anpx-operator-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts `binary` with `args`, its stderr written to `log` (a file, as
/// when an operator redirects it) and stdout to `log` + `.out`.
fn start(binary: Binary, args: &[&str], log: &Path) -> Proc {
    start_with_env(binary, args, &[], log)
}

fn start_with_env(binary: Binary, args: &[&str], env: &[(&str, &str)], log: &Path) -> Proc {
    let mut c = binary.command();
    c.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(log).unwrap());
    Proc(
        c.spawn()
            .unwrap_or_else(|e| panic!("{binary:?} starts: {e}")),
    )
}

/// `binary gateway` on `listen` without an admin plane, with `extra` flags.
fn start_gateway(binary: Binary, listen: SocketAddr, extra: &[&str], log: &Path) -> Proc {
    let listen = listen.to_string();
    let mut args = vec!["gateway", "--listen", &listen, "--admin-listen", "off"];
    args.extend_from_slice(extra);
    start(binary, &args, log)
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A DID identity made with `anpx did new`: its folder, and a documents
/// folder a gateway can resolve it from.
fn identity(dir: &TempDir) -> (PathBuf, PathBuf) {
    let id = dir.path("id");
    let out = Binary::Anpx
        .command()
        .args([
            "did",
            "new",
            "--host",
            "agents.example",
            "--path",
            "a1",
            "--out",
        ])
        .arg(&id)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = dir.path("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::copy(id.join("did.json"), docs.join("a1.json")).unwrap();
    (id, docs)
}

/// A gateway in did-wba mode that resolves DIDs from `docs` and grants
/// `did` only `api.agent.com/other`, so a receiver signed as `did` that
/// asks for `api.agent.com/a1` is refused with 403, and an unsigned one
/// with 401.
fn refusing_gateway(
    binary: Binary,
    listen: SocketAddr,
    docs: &Path,
    did: &str,
    extra: &[&str],
    log: &Path,
) -> Proc {
    let docs = docs.to_str().unwrap();
    let grant = format!("{did}=api.agent.com/other");
    let listen = listen.to_string();
    let mut args = vec![
        "gateway",
        "--listen",
        &listen,
        "--admin-listen",
        "off",
        "--auth-mode",
        "did-wba",
        "--auth-did-documents-dir",
        docs,
    ];
    args.extend_from_slice(extra);
    start_with_env(binary, &args, &[("ANPX_GATEWAY_ROUTES_GRANT", &grant)], log)
}

fn receiver_args(gateway: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "receiver",
        "--demo",
        "--gateway",
        &format!("ws://{gateway}/ws"),
        "--service",
        "api.agent.com/a1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn start_receiver(binary: Binary, args: &[String], log: &Path) -> Proc {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start(binary, &args, log)
}

/// 403 (the DID is granted nothing) and 401 (no signature) stop the
/// receiver at once, saying why and how to retry anyway; with
/// `--keep-retrying` it keeps dialing.
fn refused_receiver_exits(binary: Binary) {
    let dir = TempDir::new(&format!("refused-{binary:?}"));
    let (id, docs) = identity(&dir);
    let listen = free_addr();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(id.join("did.json")).unwrap()).unwrap();
    let did = doc["id"].as_str().unwrap();
    let _gateway = refusing_gateway(binary, listen, &docs, did, &[], &dir.path("gateway.log"));
    wait_listening(listen);

    let did_document = id.join("did.json");
    let private_key = id.join("key-1_private.pem");
    let signed = [
        "--did-document",
        did_document.to_str().unwrap(),
        "--private-key",
        private_key.to_str().unwrap(),
    ];
    // Long delays: a receiver that retried would still be waiting.
    let slow = ["--reconnect-first-delay-ms", "10000"];
    for (what, extra, status) in [
        ("signed", [&signed[..], &slow[..]].concat(), "403"),
        ("unsigned", slow.to_vec(), "401"),
    ] {
        let log = dir.path(&format!("{what}.log"));
        let started = Instant::now();
        let mut rx = start_receiver(binary, &receiver_args(listen, &extra), &log);
        let exit = exits_within(&mut rx.0, Duration::from_secs(10));
        let took = started.elapsed();
        let err = read(&log);
        let exit = exit.unwrap_or_else(|| panic!("{what} {binary:?} receiver still runs: {err}"));
        assert!(!exit.success(), "{what}: exits non-zero: {err}");
        assert!(
            took < Duration::from_secs(5),
            "{what}: exited after {took:?}"
        );
        assert!(
            err.contains(&format!("refused the connection with {status}")),
            "{what}: {err}"
        );
        assert!(
            err.contains("--keep-retrying"),
            "{what}: says how to retry anyway: {err}"
        );
    }

    let log = dir.path("keep.log");
    let extra = [
        &signed[..],
        &[
            "--keep-retrying",
            "--reconnect-first-delay-ms",
            "50",
            "--reconnect-max-delay-secs",
            "1",
        ][..],
    ]
    .concat();
    let mut rx = start_receiver(binary, &receiver_args(listen, &extra), &log);
    assert!(
        exits_within(&mut rx.0, Duration::from_secs(2)).is_none(),
        "--keep-retrying keeps the receiver running: {}",
        read(&log)
    );
    let tries = read(&log).matches("could not connect to gateway").count();
    assert!(
        tries >= 2,
        "and it retried ({tries} attempts): {}",
        read(&log)
    );
}

fn gives_up_naming_the_cause(binary: Binary) {
    let dir = TempDir::new(&format!("gives-up-{binary:?}"));
    // Nothing listens there: every attempt fails, and may be retried.
    let nobody = free_addr();
    let log = dir.path("receiver.log");
    let args = receiver_args(
        nobody,
        &[
            "--reconnect-max-attempts",
            "2",
            "--reconnect-first-delay-ms",
            "50",
        ],
    );
    let mut rx = start_receiver(binary, &args, &log);
    let exit = exits_within(&mut rx.0, Duration::from_secs(10));
    let err = read(&log);
    assert!(exit.is_some_and(|s| !s.success()), "{err}");
    assert!(
        err.contains("gave up after 2 reconnect attempts; last error: cannot reach"),
        "{err}"
    );
    assert!(err.contains(&nobody.port().to_string()), "{err}");
}

fn signal(p: &Proc, sig: i32) {
    let pid = i32::try_from(p.0.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal {sig} to {pid}");
}

fn receiver_connected_lines(log: &Path) -> usize {
    read(log).matches("connected to gateway").count()
}

fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// A receiver whose back-off grew (the gateway was not there yet) is back
/// within its first delay after the gateway closed with 1001 on SIGTERM and
/// came back: the close starts the schedule over.
fn back_after_going_away(binary: Binary) {
    let dir = TempDir::new(&format!("going-away-{binary:?}"));
    let listen = free_addr();
    let rx_log = dir.path("receiver.log");
    let args = receiver_args(
        listen,
        &[
            "--reconnect-first-delay-ms",
            "200",
            "--reconnect-max-delay-secs",
            "60",
        ],
    );
    let _rx = start_receiver(binary, &args, &rx_log);
    // Failures grow the delay ceiling: 0.2, 0.4, 0.8, 1.6, 3.2 s ...
    std::thread::sleep(Duration::from_millis(2500));
    let gateway_args = [
        "gateway",
        "--listen",
        &listen.to_string(),
        "--admin-listen",
        "off",
    ];
    let gateway = start(binary, &gateway_args, &dir.path("gateway1.log"));
    wait_for(Duration::from_secs(15), "the receiver connects", || {
        receiver_connected_lines(&rx_log) == 1
    });

    signal(&gateway, libc::SIGTERM);
    let mut gateway = gateway;
    assert!(
        exits_within(&mut gateway.0, Duration::from_secs(10)).is_some(),
        "the gateway drains and exits on SIGTERM"
    );
    assert!(
        read(&rx_log).contains("closed the connection with 1001"),
        "{}",
        read(&rx_log)
    );
    let _gateway = start(binary, &gateway_args, &dir.path("gateway2.log"));
    let took = wait_for(Duration::from_secs(10), "the receiver reconnects", || {
        receiver_connected_lines(&rx_log) == 2
    });
    // Without the reset the next delay would be drawn from a ceiling of
    // 3.2 s or more, at least 1.6 s.
    assert!(
        took < Duration::from_millis(1500),
        "back after {took:?}: {}",
        read(&rx_log)
    );
}

/// A plain HTTP/1.0 GET with `host`; the status code.
fn get_status(addr: SocketAddr, host: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// The gateway prints its public, receiver and admin URLs; a receiver
/// prints a Forwarding line per service, and the curl it prints for a
/// service on another host name works from this machine as written.
fn says_where_things_are_reachable(binary: Binary) {
    let dir = TempDir::new(&format!("reachable-{binary:?}"));
    let (listen, admin) = (free_addr(), free_addr());
    let gateway_log = dir.path("gateway.log");
    let _gateway = start(
        binary,
        &[
            "gateway",
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ],
        &gateway_log,
    );
    let out = gateway_log.with_extension("out");
    wait_for(Duration::from_secs(15), "the gateway's banner", || {
        read(&out).contains("admin URL")
    });
    let banner = read(&out);
    assert!(
        banner.contains(&format!("public URL:       http://{listen}\n")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("receivers dial:   ws://{listen}/ws\n")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("admin URL:        http://{admin}/ ")),
        "{banner}"
    );

    let log = dir.path("other-host.log");
    let args = [
        "receiver",
        "--demo",
        "--gateway",
        &format!("ws://{listen}/ws"),
        "--service",
        "api.example.com/agents",
    ];
    let _rx = start(binary, &args, &log);
    let out = log.with_extension("out");
    wait_for(
        Duration::from_secs(15),
        "the receiver's Forwarding line",
        || read(&out).contains("Forwarding"),
    );
    let line = read(&out);
    let curl = format!("curl -H 'Host: api.example.com' http://{listen}/agents");
    assert!(
        line.contains(&format!(
            "Forwarding http://api.example.com/agents -> the built-in echo agent (through this gateway: {curl})"
        )),
        "{line}"
    );
    assert_eq!(
        get_status(listen, "api.example.com", "/agents/hello"),
        Some(200),
        "what the line says works"
    );

    // A service on the gateway's own address is its URL, nothing to add.
    let log = dir.path("own-host.log");
    let upstream = format!("http://{}", free_addr());
    let args = [
        "receiver",
        "--upstream",
        &upstream,
        "--gateway",
        &format!("ws://{listen}/ws"),
        "--service",
        "127.0.0.1/direct",
    ];
    let _rx2 = start(binary, &args, &log);
    let out = log.with_extension("out");
    wait_for(
        Duration::from_secs(15),
        "the receiver's Forwarding line",
        || read(&out).contains("Forwarding"),
    );
    let line = read(&out);
    assert_eq!(
        line,
        format!("Forwarding http://{listen}/direct -> {upstream}\n"),
        "{line}"
    );
}

/// What a log written to a file must not carry: terminal escape codes and
/// Rust's Debug formatting.
fn assert_clean_log(what: &str, log: &str) {
    assert!(!log.contains('\u{1b}'), "{what}: an ESC byte in {log}");
    for debug in ["Some(", "None,", "Did(\"", "Anonymous", "secs:", "nanos"] {
        assert!(!log.contains(debug), "{what}: {debug} in {log}");
    }
}

/// A plain HTTP/1.0 GET with `host`; the response body.
fn get_body(addr: SocketAddr, host: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_owned())
}

/// Every line of `log` is a JSON object with a level.
fn assert_json_lines(what: &str, log: &str) {
    for line in log.lines() {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what}: not a JSON line ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{what}: {line}");
    }
}

/// Stderr redirected to a file, as a service manager does, in text and in
/// JSON: a request run (gateway and receiver serving one request, the
/// admin plane's /stats read while the receiver is connected), refused
/// logins (unsigned: 401; signed but granted nothing asked for: 403) and a
/// failing run (a receiver that gives up) leave no colour codes or Debug
/// formatting, the fatal error is one line, and with `--log-format json`
/// every line is JSON.
fn clean_logs(binary: Binary) {
    let program = match binary {
        Binary::Anpx => "anpx",
        Binary::AnpxSmol => "anpx-smol",
    };
    let dir = TempDir::new(&format!("logs-{binary:?}"));
    let (id, docs) = identity(&dir);
    let did_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(id.join("did.json")).unwrap()).unwrap();
    let did = did_json["id"].as_str().unwrap();
    for format in ["text", "json"] {
        let logs = |what: &str, log: &Path| {
            let text = read(log);
            assert_clean_log(&format!("{what} ({format})"), &text);
            if format == "json" {
                assert_json_lines(&format!("{what} ({format})"), &text);
            }
            text
        };
        let (listen, admin) = (free_addr(), free_addr());
        let gateway_log = dir.path(&format!("gateway-{format}.log"));
        let _gateway = start(
            binary,
            &[
                "gateway",
                "--listen",
                &listen.to_string(),
                "--admin-listen",
                &admin.to_string(),
                "--log-format",
                format,
            ],
            &gateway_log,
        );
        wait_listening(listen);
        let rx_log = dir.path(&format!("receiver-{format}.log"));
        let args = receiver_args(listen, &["--log-format", format]);
        let _rx = start_receiver(binary, &args, &rx_log);
        wait_for(Duration::from_secs(15), "the receiver connects", || {
            read(&rx_log).contains("connected to gateway")
        });
        assert_eq!(get_status(listen, "api.agent.com", "/a1/x"), Some(200));
        wait_for(Duration::from_secs(5), "the request's log line", || {
            read(&gateway_log).contains("/a1/x")
        });
        // Refused before routing: its line names the client and why.
        assert_eq!(get_status(listen, "api.agent.com", "/nowhere"), Some(404));
        wait_for(Duration::from_secs(5), "the refusal's log line", || {
            read(&gateway_log).contains("/nowhere")
        });
        let text = logs("gateway", &gateway_log);
        let line = |path: &str| {
            text.lines()
                .find(|l| l.contains(path) && l.contains("outcome"))
                .unwrap_or_else(|| panic!("no line for {path}: {text}"))
                .to_owned()
        };
        let (served, refused) = (line("/a1/x"), line("/nowhere"));
        let field = |key: &str, value: &str| match format {
            "json" => format!("\"{key}\":\"{value}\""),
            _ => format!("{key}=\"{value}\""),
        };
        for l in [&served, &refused] {
            assert!(l.contains(&field("client", "127.0.0.1")), "{l}");
        }
        assert!(
            served.contains(&field("route", "api.agent.com/a1")),
            "{served}"
        );
        assert!(refused.contains(&field("route", "(unrouted)")), "{refused}");
        assert!(refused.contains(&field("reason", "no_route")), "{refused}");
        logs("receiver", &rx_log);
        let metrics = get_body(admin, "admin", "/metrics").expect("/metrics answers");
        for series in [
            format!(
                "anpx_build_info{{version=\"{}\",shell=\"{program}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "anpx_responses_total{route=\"api.agent.com/a1\",class=\"2xx\"} 1".into(),
            "anpx_responses_total{route=\"(unrouted)\",class=\"4xx\"} 1".into(),
            "anpx_request_duration_seconds_count{route=\"api.agent.com/a1\"} 1".into(),
            "anpx_requests_refused_total{reason=\"no_route\"} 1".into(),
            "anpx_route_in_flight{route=\"api.agent.com/a1\"} 0".into(),
            "anpx_receiver_in_flight{receiver=\"anonymous\"} 0".into(),
        ] {
            assert!(
                metrics.contains(&format!("{series}\n")),
                "{series} in {metrics}"
            );
        }
        assert!(!metrics.contains("{link="), "{metrics}");
        let stats = get_body(admin, "admin", "/stats").expect("/stats answers");
        assert!(stats.contains("\"age_secs\""), "{stats}");
        assert_clean_log(&format!("/stats ({format})"), &stats);

        // Refused logins, logged on both sides.
        let strict = free_addr();
        let strict_log = dir.path(&format!("strict-gateway-{format}.log"));
        let strict_gateway = refusing_gateway(
            binary,
            strict,
            &docs,
            did,
            &["--log-format", format],
            &strict_log,
        );
        wait_listening(strict);
        let did_document = id.join("did.json");
        let private_key = id.join("key-1_private.pem");
        let signed = [
            "--did-document",
            did_document.to_str().unwrap(),
            "--private-key",
            private_key.to_str().unwrap(),
        ];
        for (what, extra) in [("unsigned", &[][..]), ("signed", &signed[..])] {
            let log = dir.path(&format!("refused-{what}-{format}.log"));
            let args = receiver_args(strict, &[extra, &["--log-format", format]].concat());
            let mut rx = start_receiver(binary, &args, &log);
            let exit = exits_within(&mut rx.0, Duration::from_secs(10));
            assert!(exit.is_some_and(|s| !s.success()), "{}", read(&log));
            let text = logs(&format!("{what} refused receiver"), &log);
            assert_eq!(
                text.matches("receiver stopped").count(),
                1,
                "the fatal error once: {text}"
            );
        }
        wait_for(
            Duration::from_secs(5),
            "the gateway logs the refusal",
            || read(&strict_log).contains("refused"),
        );
        logs("refusing gateway", &strict_log);
        drop(strict_gateway);

        // A receiver that gives up.
        let nobody = free_addr();
        let log = dir.path(&format!("failing-{format}.log"));
        let args = receiver_args(
            nobody,
            &[
                "--reconnect-max-attempts",
                "1",
                "--reconnect-first-delay-ms",
                "10",
                "--log-format",
                format,
            ],
        );
        let mut rx = start_receiver(binary, &args, &log);
        let exit = exits_within(&mut rx.0, Duration::from_secs(10));
        assert!(exit.is_some_and(|s| !s.success()), "{}", read(&log));
        let text = logs("failing receiver", &log);
        let fatal: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("receiver stopped"))
            .collect();
        assert_eq!(fatal.len(), 1, "the fatal error once: {text}");
        if format == "text" {
            assert!(
                fatal[0].starts_with(&format!("{program}: receiver stopped: gave up")),
                "{text}"
            );
        }
    }
}

/// SIGHUP, which by default ends a process, leaves the gateway and the
/// receiver running and serving, and each logs what it did.
fn sighup_is_logged_not_fatal(binary: Binary) {
    let dir = TempDir::new(&format!("sighup-{binary:?}"));
    let listen = free_addr();
    let gateway_log = dir.path("gateway.log");
    let mut gateway = start_gateway(binary, listen, &[], &gateway_log);
    wait_listening(listen);
    let rx_log = dir.path("receiver.log");
    let mut rx = start_receiver(binary, &receiver_args(listen, &[]), &rx_log);
    wait_for(Duration::from_secs(15), "the receiver connects", || {
        read(&rx_log).contains("connected to gateway")
    });
    signal(&gateway, libc::SIGHUP);
    signal(&rx, libc::SIGHUP);
    wait_for(Duration::from_secs(5), "both log the SIGHUP", || {
        read(&gateway_log).contains("SIGHUP: configuration read again, nothing changed")
            && read(&rx_log).contains("SIGHUP: configuration read again, nothing changed")
    });
    assert!(
        exits_within(&mut gateway.0, Duration::from_millis(300)).is_none(),
        "gateway lives"
    );
    assert!(
        exits_within(&mut rx.0, Duration::from_millis(300)).is_none(),
        "receiver lives"
    );
    assert_eq!(
        get_status(listen, "api.agent.com", "/a1/x"),
        Some(200),
        "and serves"
    );
}

/// SIGHUP reads the configuration files again. The gateway's log level
/// and its static grant table change in place: a service added to the
/// DID's grants starts routing to the receiver already connected (no
/// reconnect, no disconnect). The receiver's log level changes too. A
/// changed listen address is logged as needing a restart and not applied;
/// an invalid file is refused with an error naming the key, and both keep
/// serving.
fn sighup_reloads_in_place(binary: Binary) {
    let dir = TempDir::new(&format!("reload-{binary:?}"));
    let (id, docs) = identity(&dir);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(id.join("did.json")).unwrap()).unwrap();
    let did = doc["id"].as_str().unwrap().to_owned();
    let listen = free_addr();
    let gateway_toml = dir.path("gateway.toml");
    let write_gateway = |extra: &str, level: &str, services: &str| {
        let text = format!(
            "[gateway]\nlisten = \"{listen}\"\nadmin_listen = \"off\"\nlog_level = \"{level}\"\n{extra}\n\
             [gateway.auth]\nmode = \"did-wba\"\ndid_documents_dir = \"{}\"\n\
             [gateway.registry]\nrefresh_secs = 1\n\
             [[gateway.routes.grant]]\ndid = \"{did}\"\nservices = [{services}]\n",
            docs.display()
        );
        std::fs::write(&gateway_toml, text).unwrap();
    };
    write_gateway("", "info", "\"api.agent.com/a1\"");
    let gateway_log = dir.path("gateway.log");
    let mut gateway = start(
        binary,
        &["gateway", "--config", gateway_toml.to_str().unwrap()],
        &gateway_log,
    );
    wait_listening(listen);

    let receiver_toml = dir.path("receiver.toml");
    let write_receiver = |level: &str| {
        std::fs::write(
            &receiver_toml,
            format!("[receiver]\nlog_level = \"{level}\"\n"),
        )
        .unwrap();
    };
    write_receiver("info");
    let rx_log = dir.path("receiver.log");
    let did_document = id.join("did.json");
    let private_key = id.join("key-1_private.pem");
    let mut rx = start(
        binary,
        &[
            "receiver",
            "--config",
            receiver_toml.to_str().unwrap(),
            "--demo",
            "--gateway",
            &format!("ws://{listen}/ws"),
            "--did-document",
            did_document.to_str().unwrap(),
            "--private-key",
            private_key.to_str().unwrap(),
        ],
        &rx_log,
    );
    wait_for(Duration::from_secs(15), "the receiver connects", || {
        read(&rx_log).contains("connected to gateway")
    });
    assert_eq!(get_status(listen, "api.agent.com", "/a1/x"), Some(200));
    assert_eq!(get_status(listen, "api.agent.com", "/a2/x"), Some(404));

    write_gateway("", "debug", "\"api.agent.com/a1\", \"api.agent.com/a2\"");
    write_receiver("debug");
    signal(&gateway, libc::SIGHUP);
    signal(&rx, libc::SIGHUP);
    wait_for(Duration::from_secs(5), "both reload", || {
        read(&gateway_log).contains("reloaded: log level info -> debug")
            && read(&rx_log).contains("reloaded: log level info -> debug")
    });
    assert!(
        read(&gateway_log).contains(&format!("routes: +api.agent.com/a2 ({did})")),
        "{}",
        read(&gateway_log)
    );
    wait_for(Duration::from_secs(10), "the added route serves", || {
        get_status(listen, "api.agent.com", "/a2/x") == Some(200)
    });
    assert_eq!(get_status(listen, "api.agent.com", "/a1/x"), Some(200));
    assert_eq!(
        receiver_connected_lines(&rx_log),
        1,
        "the receiver never reconnected: {}",
        read(&rx_log)
    );
    assert!(
        !read(&gateway_log).contains("receiver disconnected"),
        "{}",
        read(&gateway_log)
    );

    // What only a restart applies is said, not done.
    let other = free_addr();
    let moved = format!("[gateway]\nlisten = \"{other}\"\n");
    std::fs::write(
        &gateway_toml,
        read(&gateway_toml).replacen(&format!("[gateway]\nlisten = \"{listen}\"\n"), &moved, 1),
    )
    .unwrap();
    signal(&gateway, libc::SIGHUP);
    wait_for(
        Duration::from_secs(5),
        "the gateway says what needs a restart",
        || {
            read(&gateway_log).contains(&format!(
                "needs restart: gateway.listen {listen} -> {other} (not applied)"
            ))
        },
    );
    assert_eq!(get_status(listen, "api.agent.com", "/a2/x"), Some(200));

    // An invalid file is refused; the running configuration stays.
    write_gateway("", "debug=loud", "\"api.agent.com/a1\"");
    std::fs::write(&receiver_toml, "[receiver\n").unwrap();
    signal(&gateway, libc::SIGHUP);
    signal(&rx, libc::SIGHUP);
    wait_for(Duration::from_secs(5), "both refuse the reload", || {
        read(&gateway_log).contains("reload refused") && read(&rx_log).contains("reload refused")
    });
    assert!(
        read(&gateway_log).contains("gateway.log_level"),
        "the refusal names the key: {}",
        read(&gateway_log)
    );
    assert!(exits_within(&mut gateway.0, Duration::from_millis(300)).is_none());
    assert!(exits_within(&mut rx.0, Duration::from_millis(300)).is_none());
    assert_eq!(
        get_status(listen, "api.agent.com", "/a2/x"),
        Some(200),
        "still serving the routes it had"
    );
    assert_eq!(receiver_connected_lines(&rx_log), 1);
}

/// SIGHUP on a receiver whose `receiver.services` changed: it opens a new
/// connection declaring the new set while the old one serves, then drains
/// the old one. A request in flight on the old connection finishes with
/// 200, the added service serves at once and the kept one never fails;
/// the process stays. A changed `receiver.upstream` then applies in place:
/// new requests reach the new upstream, without a new connection.
fn sighup_relinks_for_new_services(binary: Binary) {
    let dir = TempDir::new(&format!("relink-{binary:?}"));
    let listen = free_addr();
    let gateway_log = dir.path("gateway.log");
    let _gateway = start_gateway(binary, listen, &[], &gateway_log);
    wait_listening(listen);
    let (upstream, arrived, release) = held_upstream_saying("first");
    let receiver_toml = dir.path("receiver.toml");
    let write_receiver = |upstream: SocketAddr, services: &str| {
        let text = format!(
            "[receiver]\ngateway = \"ws://{listen}/ws\"\nupstream = \"http://{upstream}\"\n\
             services = [{services}]\ndrain_grace_secs = 60\n"
        );
        std::fs::write(&receiver_toml, text).unwrap();
    };
    write_receiver(upstream, "\"api.agent.com/a1\"");
    let rx_log = dir.path("receiver.log");
    let mut rx = start(
        binary,
        &["receiver", "--config", receiver_toml.to_str().unwrap()],
        &rx_log,
    );
    wait_for(Duration::from_secs(15), "the receiver connects", || {
        read(&rx_log).contains("connected to gateway")
    });
    assert_eq!(get_status(listen, "api.agent.com", "/a2/x"), Some(404));
    let slow = std::thread::spawn(move || get_text(listen, "api.agent.com", "/a1/slow"));
    arrived
        .recv_timeout(Duration::from_secs(10))
        .expect("the slow request reaches the upstream");

    write_receiver(upstream, "\"api.agent.com/a1\", \"api.agent.com/a2\"");
    signal(&rx, libc::SIGHUP);
    wait_for(Duration::from_secs(10), "the receiver relinks", || {
        read(&rx_log).contains("relinked")
    });
    assert!(
        read(&rx_log).contains("services: +api.agent.com/a2"),
        "the change is logged: {}",
        read(&rx_log)
    );
    // The old connection drains: the gateway hears of it and sends new
    // requests of the kept service to the new one.
    wait_for(
        Duration::from_secs(10),
        "the gateway hears of the drain",
        || read(&gateway_log).contains("receiver draining"),
    );
    for path in ["/a1/new", "/a2/new"] {
        assert_eq!(
            get_text(listen, "api.agent.com", path),
            Some((200, "first".to_owned())),
            "{path} is served by the new connection: {}\n{}",
            read(&rx_log),
            read(&gateway_log)
        );
    }
    assert!(
        exits_within(&mut rx.0, Duration::from_millis(300)).is_none(),
        "SIGHUP never ends the receiver"
    );
    release.send(()).unwrap();
    assert_eq!(
        slow.join().unwrap(),
        Some((200, "first".to_owned())),
        "the request in flight on the old connection finishes: {}",
        read(&rx_log)
    );
    wait_for(Duration::from_secs(10), "the old connection closes", || {
        read(&rx_log).contains("previous connection to gateway closed")
    });
    assert!(read(&rx_log).contains("drained"), "{}", read(&rx_log));
    assert_eq!(get_status(listen, "api.agent.com", "/a2/x"), Some(200));

    // Only the upstream changes: applied in place, no new connection.
    let (other, _other_arrived, other_release) = held_upstream_saying("second");
    other_release.send(()).unwrap();
    write_receiver(other, "\"api.agent.com/a1\", \"api.agent.com/a2\"");
    signal(&rx, libc::SIGHUP);
    wait_for(Duration::from_secs(10), "the upstream is reloaded", || {
        read(&rx_log).contains(&format!(
            "reloaded: receiver.upstream http://{upstream} -> http://{other}"
        ))
    });
    assert_eq!(
        get_text(listen, "api.agent.com", "/a1/after"),
        Some((200, "second".to_owned())),
        "{}",
        read(&rx_log)
    );
    assert_eq!(
        read(&rx_log).matches("relinked").count(),
        1,
        "{}",
        read(&rx_log)
    );
    assert_eq!(receiver_connected_lines(&rx_log), 1, "{}", read(&rx_log));
    assert!(exits_within(&mut rx.0, Duration::from_millis(100)).is_none());
}

/// SIGHUP asks a signed receiver to declare a service its DID is not
/// granted: the new connection is refused with 403, which is logged, and
/// the running connection keeps serving what it had; the receiver, which
/// would stop on a 403 at start, keeps running.
fn refused_relink_keeps_the_running_connection(binary: Binary) {
    let dir = TempDir::new(&format!("relink-refused-{binary:?}"));
    let (id, docs) = identity(&dir);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(id.join("did.json")).unwrap()).unwrap();
    let did = doc["id"].as_str().unwrap();
    let listen = free_addr();
    let gateway_log = dir.path("gateway.log");
    let _gateway = refusing_gateway(binary, listen, &docs, did, &[], &gateway_log);
    wait_listening(listen);
    let receiver_toml = dir.path("receiver.toml");
    let write_receiver = |service: &str| {
        let text = format!(
            "[receiver]\ngateway = \"ws://{listen}/ws\"\nservices = [\"{service}\"]\n\
             did_document = \"{}\"\nprivate_key = \"{}\"\n",
            id.join("did.json").display(),
            id.join("key-1_private.pem").display()
        );
        std::fs::write(&receiver_toml, text).unwrap();
    };
    write_receiver("api.agent.com/other");
    let rx_log = dir.path("receiver.log");
    let mut rx = start(
        binary,
        &[
            "receiver",
            "--demo",
            "--config",
            receiver_toml.to_str().unwrap(),
        ],
        &rx_log,
    );
    wait_for(Duration::from_secs(15), "the receiver connects", || {
        read(&rx_log).contains("connected to gateway")
    });
    assert_eq!(get_status(listen, "api.agent.com", "/other/x"), Some(200));

    write_receiver("api.agent.com/a1");
    signal(&rx, libc::SIGHUP);
    wait_for(Duration::from_secs(10), "the relink is refused", || {
        read(&rx_log).contains("services not changed")
    });
    assert!(
        read(&rx_log).contains("refused the connection with 403"),
        "{}",
        read(&rx_log)
    );
    assert!(
        exits_within(&mut rx.0, Duration::from_millis(300)).is_none(),
        "the receiver keeps running: {}",
        read(&rx_log)
    );
    assert_eq!(
        get_status(listen, "api.agent.com", "/other/x"),
        Some(200),
        "the running connection still serves: {}",
        read(&rx_log)
    );
    assert!(!read(&rx_log).contains("relinked"), "{}", read(&rx_log));
    assert!(
        !read(&gateway_log).contains("receiver draining"),
        "{}",
        read(&gateway_log)
    );
}

/// `get_status` over TLS, trusting `cert` as the receivers do.
fn get_tls_status(addr: SocketAddr, host: &str, path: &str, cert: &Path) -> Option<u16> {
    use std::io::{Read, Write};
    let config = shell_common::tls::receiver_client_config(Some(cert), &[]).ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
    let conn = rustls::ClientConnection::new(config, name).ok()?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = Vec::new();
    // A peer that closes without close_notify ends the read with an error
    // after the bytes it sent.
    let _ = s.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A certificate as `openssl req -x509 -subj /CN=localhost` makes it:
/// self-signed, marked as a CA, no subjectAltName. Its PEM files, and the
/// SHA-256 of its public key (SPKI) in hex.
fn self_signed_certificate(dir: &TempDir) -> (PathBuf, PathBuf, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PublicKeyData};
    use sha2::Digest;
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path("cert.pem"), dir.path("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let pin = sha2::Sha256::digest(key.subject_public_key_info())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (cert_path, key_path, pin)
}

/// A renewed certificate written over the gateway's files is presented to
/// new connections after SIGHUP; the receiver connected over wss:// before
/// stays connected, and a client trusting only the old certificate is
/// refused. The receiver, told by SIGHUP to trust the new certificate
/// (`receiver.ca_file` in its file), dials the restarted gateway with it.
/// A key that does not match is refused and the running certificate
/// stays.
fn sighup_reloads_the_certificate(binary: Binary) {
    let dir = TempDir::new(&format!("reload-tls-{binary:?}"));
    let (cert, key, _) = self_signed_certificate(&dir);
    let old = dir.path("old.pem");
    std::fs::copy(&cert, &old).unwrap();
    let listen = free_addr();
    let gateway_log = dir.path("gateway.log");
    let mut gateway = start_gateway(
        binary,
        listen,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &gateway_log,
    );
    wait_listening(listen);
    let rx_log = dir.path("receiver.log");
    let gateway_url = format!("wss://{listen}/ws");
    let receiver_toml = dir.path("receiver.toml");
    let trust = |pem: &Path| {
        let text = format!("[receiver]\nca_file = \"{}\"\n", pem.display());
        std::fs::write(&receiver_toml, text).unwrap();
    };
    trust(&old);
    let rx = start(
        binary,
        &[
            "receiver",
            "--config",
            receiver_toml.to_str().unwrap(),
            "--demo",
            "--gateway",
            &gateway_url,
            "--service",
            "api.agent.com/a1",
            "--reconnect-first-delay-ms",
            "100",
            "--reconnect-max-delay-secs",
            "1",
        ],
        &rx_log,
    );
    wait_for(Duration::from_secs(15), "the receiver connects", || {
        read(&rx_log).contains("connected to gateway")
    });
    assert_eq!(
        get_tls_status(listen, "api.agent.com", "/a1/x", &old),
        Some(200)
    );

    // Renewed in place (same paths, as certbot does), then SIGHUP.
    let renewed = TempDir::new(&format!("reload-tls-new-{binary:?}"));
    let (new_cert, new_key, _) = self_signed_certificate(&renewed);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    signal(&gateway, libc::SIGHUP);
    wait_for(
        Duration::from_secs(5),
        "the gateway reloads its certificate",
        || read(&gateway_log).contains("reloaded: TLS certificate"),
    );
    assert_eq!(
        get_tls_status(listen, "api.agent.com", "/a1/x", &new_cert),
        Some(200),
        "new connections get the new certificate: {}",
        read(&gateway_log)
    );
    assert_eq!(
        get_tls_status(listen, "api.agent.com", "/a1/x", &old),
        None,
        "and not the old one"
    );
    assert_eq!(
        receiver_connected_lines(&rx_log),
        1,
        "the receiver's connection stays: {}",
        read(&rx_log)
    );

    // The receiver trusts the new certificate for its next dials; its
    // connection stays until the gateway restarts, then it is back.
    let trusted = dir.path("new.pem");
    std::fs::copy(&new_cert, &trusted).unwrap();
    trust(&trusted);
    signal(&rx, libc::SIGHUP);
    wait_for(
        Duration::from_secs(5),
        "the receiver reloads its trust",
        || read(&rx_log).contains("reloaded: receiver.ca_file"),
    );
    assert_eq!(receiver_connected_lines(&rx_log), 1, "{}", read(&rx_log));
    signal(&gateway, libc::SIGTERM);
    assert!(exits_within(&mut gateway.0, Duration::from_secs(10)).is_some());
    let mut gateway = start_gateway(
        binary,
        listen,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &dir.path("gateway2.log"),
    );
    let gateway_log = dir.path("gateway2.log");
    wait_for(
        Duration::from_secs(15),
        "the receiver dials with the new trust",
        || receiver_connected_lines(&rx_log) == 2,
    );

    // A key that does not match the certificate: refused, nothing changes.
    let other = TempDir::new(&format!("reload-tls-other-{binary:?}"));
    let (_, other_key, _) = self_signed_certificate(&other);
    std::fs::copy(&other_key, &key).unwrap();
    signal(&gateway, libc::SIGHUP);
    wait_for(Duration::from_secs(5), "the mismatch is refused", || {
        read(&gateway_log).contains("TLS certificate not reloaded")
    });
    assert!(exits_within(&mut gateway.0, Duration::from_millis(300)).is_none());
    assert_eq!(
        get_tls_status(listen, "api.agent.com", "/a1/x", &new_cert),
        Some(200)
    );
}

/// A gateway serving a self-signed certificate says https:// and wss://; a
/// receiver that trusts only the system's roots cannot connect, one given
/// the certificate as `--ca-file` or its key's SHA-256 as `--pin-sha256`
/// connects and serves, and one with another pin is refused, saying so.
fn trusts_a_self_signed_gateway_when_pinned(binary: Binary) {
    let dir = TempDir::new(&format!("pinned-{binary:?}"));
    let (cert, key, pin) = self_signed_certificate(&dir);
    let listen = free_addr();
    let gateway_log = dir.path("gateway.log");
    let _gateway = start_gateway(
        binary,
        listen,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &gateway_log,
    );
    let out = gateway_log.with_extension("out");
    wait_for(Duration::from_secs(15), "the gateway's banner", || {
        read(&out).contains("receivers dial")
    });
    let banner = read(&out);
    assert!(
        banner.contains(&format!("public URL:       https://{listen}\n"))
            && banner.contains(&format!("receivers dial:   wss://{listen}/ws\n")),
        "{banner}"
    );

    let gateway = format!("wss://{listen}/ws");
    let receiver = |name: &str, trust: &[&str]| {
        let log = dir.path(name);
        let mut args = vec![
            "receiver",
            "--demo",
            "--gateway",
            &gateway,
            "--service",
            "api.agent.com/a1",
            "--reconnect-max-attempts",
            "1",
            "--reconnect-first-delay-ms",
            "10",
        ];
        args.extend_from_slice(trust);
        (start(binary, &args, &log), log)
    };
    let refused = |name: &str, trust: &[&str], why: &str| {
        let (mut rx, log) = receiver(name, trust);
        let exit = exits_within(&mut rx.0, Duration::from_secs(15));
        let text = read(&log);
        assert!(exit.is_some_and(|s| !s.success()), "{name}: {text}");
        assert!(text.contains(why), "{name}: {why} in {text}");
    };
    let trusted = |name: &str, trust: &[&str]| {
        let (_rx, log) = receiver(name, trust);
        wait_for(Duration::from_secs(15), name, || {
            read(&log).contains("connected to gateway")
        });
        assert_eq!(
            get_tls_status(listen, "api.agent.com", "/a1/x", &cert),
            Some(200),
            "{name}: serves through the gateway"
        );
    };

    refused("system-roots.log", &[], "certificate");
    trusted("ca-file.log", &["--ca-file", cert.to_str().unwrap()]);
    trusted("pin.log", &["--pin-sha256", &pin]);
    let other = "00".repeat(32);
    refused(
        "other-pin.log",
        &["--pin-sha256", &other],
        "matches no receiver.pin_sha256",
    );
}

/// An upstream whose first request waits for `release` before it is
/// answered; `arrived` says when it came. Later requests are answered at
/// once. Every answer is 200 with the body `done`.
fn held_upstream() -> (
    SocketAddr,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    held_upstream_saying("done")
}

/// [`held_upstream`] answering with `body`.
fn held_upstream_saying(
    body: &'static str,
) -> (
    SocketAddr,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived_tx, arrived) = std::sync::mpsc::channel();
    let (release, mut release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
                line.clear();
            }
            let answer = move |mut conn: TcpStream| {
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            };
            if n == 0 {
                let _ = arrived_tx.send(());
                // Held on its own thread: later requests are answered meanwhile.
                let release_rx = std::mem::replace(&mut release_rx, std::sync::mpsc::channel().1);
                std::thread::spawn(move || {
                    let _ = release_rx.recv();
                    answer(conn);
                });
            } else {
                answer(conn);
            }
        }
    });
    (addr, arrived, release)
}

/// SIGTERM during a slow request: the receiver logs that it drains,
/// refuses a new request with 503, lets the slow one finish with 200, then
/// closes and exits cleanly.
fn receiver_drains_on_sigterm(binary: Binary) {
    let dir = TempDir::new(&format!("drain-{binary:?}"));
    let listen = free_addr();
    let gateway_log = dir.path("gateway.log");
    let _gateway = start_gateway(binary, listen, &[], &gateway_log);
    wait_listening(listen);
    let (upstream, arrived, release) = held_upstream();
    let rx_log = dir.path("receiver.log");
    let upstream = format!("http://{upstream}");
    let args = [
        "receiver",
        "--gateway",
        &format!("ws://{listen}/ws"),
        "--service",
        "api.agent.com/a1",
        "--upstream",
        &upstream,
        "--drain-grace-secs",
        "60",
    ];
    let mut rx = start(binary, &args, &rx_log);
    wait_for(Duration::from_secs(15), "the receiver connects", || {
        read(&rx_log).contains("connected to gateway")
    });
    let slow = std::thread::spawn(move || get_status(listen, "api.agent.com", "/a1/slow"));
    arrived
        .recv_timeout(Duration::from_secs(10))
        .expect("the slow request reaches the upstream");

    signal(&rx, libc::SIGTERM);
    wait_for(Duration::from_secs(10), "the receiver drains", || {
        read(&rx_log).contains("draining")
    });
    // Told by the receiver, the gateway has no other to send it to.
    wait_for(Duration::from_secs(10), "the gateway hears of it", || {
        read(&gateway_log).contains("receiver draining")
    });
    assert_eq!(
        get_status(listen, "api.agent.com", "/a1/new"),
        Some(503),
        "a new request is refused while draining: {}",
        read(&rx_log)
    );
    assert!(
        exits_within(&mut rx.0, Duration::from_millis(500)).is_none(),
        "the receiver waits for the request in flight"
    );
    release.send(()).unwrap();
    assert_eq!(
        slow.join().unwrap(),
        Some(200),
        "the request in flight finishes: {}",
        read(&rx_log)
    );
    let exit = exits_within(&mut rx.0, Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "{}", read(&rx_log));
    assert!(read(&rx_log).contains("drained"), "{}", read(&rx_log));
}

/// A plain HTTP/1.0 GET with `host`: the status code and the body.
fn get_text(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Two receivers serve one route, each holding one slow request. The first
/// gets SIGTERM: it tells the gateway, whose new requests then all go to
/// the second (a tie in load would have picked the first, which would
/// have answered 503); the slow request on the draining one still ends
/// with 200, and it exits cleanly.
fn drain_moves_new_requests_to_another_receiver(binary: Binary) {
    let dir = TempDir::new(&format!("drain-two-{binary:?}"));
    let listen = free_addr();
    let gateway_log = dir.path("gateway.log");
    let _gateway = start_gateway(binary, listen, &[], &gateway_log);
    wait_listening(listen);
    let receiver = |name: &'static str| {
        let (upstream, arrived, release) = held_upstream_saying(name);
        let log = dir.path(&format!("receiver-{name}.log"));
        let upstream = format!("http://{upstream}");
        let args = [
            "receiver",
            "--gateway",
            &format!("ws://{listen}/ws"),
            "--service",
            "api.agent.com/a1",
            "--upstream",
            &upstream,
            "--drain-grace-secs",
            "60",
        ];
        let rx = start(binary, &args, &log);
        // One after the other: the first admitted wins ties.
        wait_for(Duration::from_secs(15), "the receiver connects", || {
            read(&log).contains("connected to gateway")
        });
        (rx, log, arrived, release)
    };
    let (mut first, first_log, first_arrived, first_release) = receiver("first");
    let (_second, second_log, second_arrived, second_release) = receiver("second");
    let slow_first = std::thread::spawn(move || get_text(listen, "api.agent.com", "/a1/slow"));
    first_arrived
        .recv_timeout(Duration::from_secs(10))
        .expect("the first slow request reaches the first receiver");
    let slow_second = std::thread::spawn(move || get_text(listen, "api.agent.com", "/a1/slow"));
    second_arrived
        .recv_timeout(Duration::from_secs(10))
        .expect("the second slow request reaches the second receiver");

    signal(&first, libc::SIGTERM);
    wait_for(
        Duration::from_secs(10),
        "the gateway hears of the drain",
        || read(&gateway_log).contains("receiver draining"),
    );
    for n in 0..3 {
        assert_eq!(
            get_text(listen, "api.agent.com", &format!("/a1/new{n}")),
            Some((200, "second".to_owned())),
            "new request {n} goes to the other receiver: {}\n{}",
            read(&gateway_log),
            read(&first_log)
        );
    }
    assert!(
        exits_within(&mut first.0, Duration::from_millis(300)).is_none(),
        "the draining receiver waits for its request in flight"
    );
    first_release.send(()).unwrap();
    assert_eq!(
        slow_first.join().unwrap(),
        Some((200, "first".to_owned())),
        "the request in flight on the draining receiver finishes: {}",
        read(&first_log)
    );
    let exit = exits_within(&mut first.0, Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "{}", read(&first_log));
    assert!(read(&first_log).contains("drained"), "{}", read(&first_log));
    second_release.send(()).unwrap();
    assert_eq!(
        slow_second.join().unwrap(),
        Some((200, "second".to_owned())),
        "{}",
        read(&second_log)
    );
}

/// `--listen localhost:PORT` is 127.0.0.1:PORT, and a gateway started so
/// serves there.
fn listens_on_localhost(binary: Binary) {
    let dir = TempDir::new(&format!("localhost-{binary:?}"));
    let addr = free_addr();
    let log = dir.path("gateway.log");
    let listen = format!("localhost:{}", addr.port());
    let _gateway = start(
        binary,
        &["gateway", "--listen", &listen, "--admin-listen", "off"],
        &log,
    );
    wait_for(Duration::from_secs(15), "the gateway's banner", || {
        read(&log.with_extension("out")).contains("public URL")
    });
    assert!(
        read(&log.with_extension("out")).contains(&format!("http://{addr}")),
        "{}{}",
        read(&log),
        read(&log.with_extension("out"))
    );
    assert_eq!(
        get_status(addr, "nothing.example", "/"),
        Some(404),
        "it serves on {addr}"
    );
}

/// `binary args...` run to its end with the `env` pairs: exit code, stdout,
/// stderr.
fn run_to_end(binary: Binary, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = binary
        .command()
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The command line's rough edges, the same on both binaries: help that
/// describes the product with no empty `[default: ]`, `--log-format` on
/// every subcommand, exit code 2 for what the user asked wrongly (a
/// malformed DID for `registry add`, `registry list` with no registry, a
/// file the configuration names that cannot be read, a receiver with
/// nothing to serve), 1 for what failed while running.
fn command_line_conventions(binary: Binary) {
    let dir = TempDir::new(&format!("conventions-{binary:?}"));
    let (code, top, _) = run_to_end(binary, &["--help"], &[]);
    assert_eq!(code, 0);
    assert!(top.contains("reverse HTTP tunnel"), "{top}");
    assert!(
        top.contains("Exit codes: 0 success; 1 runtime failure"),
        "{top}"
    );
    for sub in [
        "gateway",
        "receiver",
        "both",
        "demo",
        "check-config",
        "decode",
        "registry",
        "did",
    ] {
        let (code, help, _) = run_to_end(binary, &[sub, "--help"], &[]);
        assert_eq!(code, 0, "{sub}");
        assert!(!help.contains("[default: ]"), "{sub}: {help}");
        assert!(!help.contains("=]"), "{sub}: {help}");
        assert!(help.contains("--log-format"), "{sub}: {help}");
    }
    let (_, both, _) = run_to_end(binary, &["both", "--help"], &[]);
    let (_, receiver, _) = run_to_end(binary, &["receiver", "--help"], &[]);
    for flag in ["--service <SERVICE_URL>", "--upstream <URL>", "--demo"] {
        assert!(both.contains(flag) && receiver.contains(flag), "{flag}");
    }

    let db = format!("sqlite://{}?mode=rwc", dir.path("r.db").display());
    let (code, _, err) = run_to_end(
        binary,
        &[
            "registry",
            "add",
            "--did",
            "did:wba:",
            "--service",
            "a.com/x",
            "--registry-url",
            &db,
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("malformed DID \"did:wba:\""), "{err}");
    let (code, _, err) = run_to_end(
        binary,
        &[
            "registry",
            "add",
            "--did",
            "did:wba:a.example:x",
            "--service",
            "a.com/x",
            "--registry-url",
            &db,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = run_to_end(binary, &["registry", "list"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("no registry configured"), "{err}");
    let (code, _, err) = run_to_end(binary, &["registry", "list", "--log-format", "json"], &[]);
    assert_eq!(code, 2, "{err}");
    assert_json_lines("registry list", &err);
    assert!(err.contains("no registry configured"), "{err}");

    let (code, out, err) = run_to_end(
        binary,
        &["check-config"],
        &[
            ("ANPX_GATEWAY_TLS_CERT", "/nonexistent/cert.pem"),
            ("ANPX_GATEWAY_TLS_KEY", "/nonexistent/key.pem"),
            ("ANPX_RECEIVER_DID_DOCUMENT", "/nonexistent/did.json"),
            ("ANPX_RECEIVER_PRIVATE_KEY", "/nonexistent/key.pem"),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        out.contains("[gateway]"),
        "still prints the configuration: {out}{err}"
    );
    for key in [
        "gateway.tls.cert",
        "gateway.tls.key",
        "receiver.private_key",
    ] {
        assert!(
            err.contains(&format!("{key}: /nonexistent/")),
            "{key}: {err}"
        );
    }
    let (cert, key, _) = self_signed_certificate(&dir);
    let (code, _, err) = run_to_end(
        binary,
        &["check-config", "--log-format", "json"],
        &[
            ("ANPX_GATEWAY_TLS_CERT", cert.to_str().unwrap()),
            ("ANPX_GATEWAY_TLS_KEY", key.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_json_lines("check-config", &err);

    // --online: the upstream and the registry answer, or exit 1.
    let (upstream, _arrived, release) = held_upstream();
    release.send(()).unwrap();
    let upstream = format!("http://{upstream}");
    let (code, _, err) = run_to_end(
        binary,
        &["check-config", "--online"],
        &[
            ("ANPX_RECEIVER_UPSTREAM", &upstream),
            ("ANPX_GATEWAY_REGISTRY_URL", &db),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("receiver.upstream") && err.contains("answers: HTTP/1.1 200"),
        "{err}"
    );
    assert!(
        err.contains("gateway.registry.url answers: 1 entries"),
        "{err}"
    );
    let nobody = format!("http://{}", free_addr());
    let (code, _, err) = run_to_end(
        binary,
        &["check-config", "--online"],
        &[("ANPX_RECEIVER_UPSTREAM", &nobody)],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("not answering:\n  receiver.upstream {nobody}")),
        "{err}"
    );

    let (code, _, err) = run_to_end(
        binary,
        &["receiver", "--gateway", "ws://127.0.0.1:9/ws"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--upstream"), "{err}");
    let (code, _, _) = run_to_end(binary, &["gateway", "--listne", "x"], &[]);
    assert_eq!(code, 2);
    let (code, _, err) = run_to_end(
        binary,
        &receiver_args(
            free_addr(),
            &[
                "--reconnect-max-attempts",
                "1",
                "--reconnect-first-delay-ms",
                "10",
            ],
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        &[],
    );
    assert_eq!(code, 1, "a receiver that gives up: {err}");
}

/// A fake NATS server: greets every connection with `INFO {}`, as NATS
/// does before anything else.
fn fake_nats() -> SocketAddr {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.write_all(b"INFO {}\r\n");
        }
    });
    addr
}

/// `check-config --online` connects to the NATS server of
/// `gateway.cluster.nats_url` (its INFO greeting) and sends a WebSocket
/// upgrade to `receiver.gateway`: an open gateway's 101 and a DID-WBA
/// gateway's 401 (said to need authentication) pass with 0; nothing
/// listening at either fails with 1, naming both.
fn check_config_online_reaches_nats_and_the_gateway(binary: Binary) {
    let dir = TempDir::new(&format!("online-{binary:?}"));
    let (open, signed) = (free_addr(), free_addr());
    let _open = start_gateway(binary, open, &[], &dir.path("open.log"));
    let docs = dir.path("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let _signed = start_gateway(
        binary,
        signed,
        &[
            "--auth-mode",
            "did-wba",
            "--auth-did-documents-dir",
            docs.to_str().unwrap(),
        ],
        &dir.path("signed.log"),
    );
    wait_listening(open);
    wait_listening(signed);
    let nats = format!("nats://{}", fake_nats());
    let (open_url, signed_url) = (format!("ws://{open}/ws"), format!("ws://{signed}/ws"));
    let (code, _, err) = run_to_end(
        binary,
        &["check-config", "--online"],
        &[
            ("ANPX_GATEWAY_CLUSTER_NATS_URL", &nats),
            ("ANPX_RECEIVER_GATEWAY", &open_url),
            ("ANPX_RECEIVER_EXTRA_GATEWAYS", &signed_url),
        ],
    );
    assert_eq!(code, 0, "{err}");
    for said in [
        format!("gateway.cluster.nats_url {nats} answers: NATS INFO"),
        format!("receiver.gateway {open_url} answers: WebSocket upgrade accepted (101)"),
        format!("receiver.extra_gateways {signed_url} answers: reachable; it answered 401: authentication needed"),
    ] {
        assert!(err.contains(&said), "{said}: {err}");
    }

    let (nobody_nats, nobody_gateway) = (
        format!("nats://{}", free_addr()),
        format!("ws://{}/ws", free_addr()),
    );
    let (code, _, err) = run_to_end(
        binary,
        &["check-config", "--online"],
        &[
            ("ANPX_GATEWAY_CLUSTER_NATS_URL", &nobody_nats),
            ("ANPX_RECEIVER_GATEWAY", &nobody_gateway),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not answering:"), "{err}");
    for key in [
        format!("gateway.cluster.nats_url {nobody_nats}: "),
        format!("receiver.gateway {nobody_gateway}: "),
    ] {
        assert!(err.contains(&key), "{key}: {err}");
    }
}

/// `both`, with its receiver flags spelled as on `receiver` (`--service`,
/// `--demo`, and the old `--services`), serves in one process: it prints
/// the gateway's addresses and the Forwarding line once its receiver is
/// connected, serves the declared service, not another, and stops cleanly
/// on SIGTERM.
fn both_serves_in_one_process(binary: Binary) {
    let dir = TempDir::new(&format!("both-{binary:?}"));
    let listen = free_addr();
    let log = dir.path("both.log");
    let listen_text = listen.to_string();
    let mut both = start(
        binary,
        &[
            "both",
            "--demo",
            "--listen",
            &listen_text,
            "--admin-listen",
            "off",
            "--services",
            "api.agent.com/a1",
        ],
        &log,
    );
    wait_for(
        Duration::from_secs(15),
        "both says what it forwards",
        || read(&log.with_extension("out")).contains("Forwarding"),
    );
    let out = read(&log.with_extension("out"));
    assert!(
        out.contains(&format!("gateway: public URL:       http://{listen}")),
        "{out}"
    );
    assert!(out.contains("Forwarding http://api.agent.com/a1"), "{out}");
    assert_eq!(get_status(listen, "api.agent.com", "/a1/x"), Some(200));
    assert_eq!(get_status(listen, "api.agent.com", "/a2/x"), Some(404));
    signal(&both, libc::SIGTERM);
    let exit = exits_within(&mut both.0, Duration::from_secs(15));
    assert!(exit.is_some_and(|s| s.success()), "{}", read(&log));
}
