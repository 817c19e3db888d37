//! The configuration module from the outside: defaults, the example file,
//! refusals that name their key, the environment and flag overlays, and
//! printing the effective configuration back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anpx_core::backoff::Backoff;
use anpx_core::config::{
    keys, AuthMode, Config, ConfigError, Grant, LogFormat, ValueError, CONFIG_FILE_ENV,
    LANE_SPIN_ENV,
};
use anpx_core::ServiceUrl;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../docs/anpx.example.toml");

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn no_flags() -> [(&'static str, &'static str); 0] {
    []
}

fn svc(s: &str) -> ServiceUrl {
    s.parse().unwrap()
}

fn err(toml: &str) -> String {
    match Config::from_toml_str(toml) {
        Ok(_) => panic!("accepted: {toml}"),
        Err(e) => e.to_string(),
    }
}

/// A configuration in which every key differs from its default.
fn all_changed() -> Config {
    let mut c = Config::default();
    let g = &mut c.gateway;
    g.listen = "0.0.0.0:80".parse().unwrap();
    g.ws_listen = Some("[::1]:81".parse().unwrap());
    g.admin_listen = None;
    g.health_path = Some("/lb/ready".to_owned());
    g.inspector.requests = 0;
    g.inspector.max_bytes = 8192;
    g.inspector.bodies = true;
    g.inspector.show_secrets = true;
    g.request_timeout_secs = 31;
    g.body_idle_timeout_secs = 302;
    g.upload_timeout_secs = 601;
    g.websocket_idle_timeout_secs = 301;
    g.max_inflight_per_receiver = 7;
    g.max_inflight_percent_per_client = 30;
    g.ping_interval_secs = 11;
    g.chunk_size = 4096;
    g.max_frame_bytes = 8192;
    g.drain_grace_secs = 0;
    g.log_level = "warn,shell_common=debug".into();
    g.log_format = LogFormat::Json;
    g.header_read_timeout_secs = 3;
    g.max_header_bytes = 16384;
    g.max_body_bytes = 1 << 20;
    g.max_response_bytes = Some(1 << 21);
    g.max_buffered_response_bytes = 1 << 19;
    g.max_response_headers = 17;
    g.max_response_header_bytes = 2048;
    g.max_buffered_per_receiver_bytes = 1 << 22;
    g.max_buffered_bytes = 1 << 23;
    g.max_pending_handshakes = 9;
    g.max_receivers_per_ip = 2;
    g.max_receivers = 3;
    g.keep_underscore_headers = true;
    g.security_headers = true;
    g.block_probes = true;
    g.blocked_paths = vec!["/a b/".to_owned(), "x=\"y\"".to_owned()];
    g.rate_limit.ip_per_sec = Some(5);
    g.rate_limit.ip_burst = Some(6);
    g.rate_limit.route_per_sec = Some(7);
    g.rate_limit.route_burst = Some(8);
    g.rate_limit.max_tracked = 9;
    g.cors.origins = vec![
        "https://app.test".to_owned(),
        "http://[::1]:3000".to_owned(),
    ];
    g.cors.max_age_secs = 0;
    g.tls.cert = Some(PathBuf::from("c \"quoted\" é.pem"));
    g.tls.key = Some(PathBuf::from("k.pem"));
    g.auth.mode = AuthMode::DidWba;
    g.auth.resolver_base_url = Some("http://resolver.test:8000/r".to_owned());
    g.auth.did_documents_dir = Some(PathBuf::from("dids"));
    g.auth.timestamp_window_secs = 5;
    g.auth.service_names = vec!["gw.example.com".to_owned(), "[::1]".to_owned()];
    g.auth.max_nonces_per_did = 20;
    g.auth.max_nonces = 5_000;
    g.auth.max_document_fetches = 32;
    g.auth.max_document_fetches_per_host = 2;
    g.auth.failed_host_memory_secs = 30;
    g.caller_auth.services = vec![svc("a.test/secure"), svc("*/private")];
    g.caller_auth.token_key = Some(PathBuf::from("token-key.pem"));
    g.caller_auth.token_lifetime_secs = 120;
    g.caller_auth.did_header = "x-verified-did".to_owned();
    g.registry.url = Some("postgres://anpx@registry.test/g?sslmode=disable".to_owned());
    g.registry.refresh_secs = 600;
    g.cluster.nats_url = Some("nats://nats.test:4222".to_owned());
    g.cluster.node_name = Some("gw-7".to_owned());
    g.cluster.subject_prefix = "test.anpx".to_owned();
    g.cluster.announce_interval_ms = 200;
    g.cluster.route_ttl_ms = 900;
    g.routes.grant = vec![
        Grant {
            did: "did:wba:a.test:alice".to_owned(),
            services: vec![svc("a.test/x"), svc("*/tools")],
        },
        Grant {
            did: "did:wba:b.test%3A99".to_owned(),
            services: vec![svc("b.test")],
        },
    ];
    let r = &mut c.receiver;
    r.gateway = "wss://gw.test/ws".to_owned();
    r.extra_gateways = vec![
        "ws://gw2.test/ws".to_owned(),
        "wss://gw3.test/ws".to_owned(),
    ];
    r.upstream = Some("https://127.0.0.1:9443".to_owned());
    r.services = vec![svc("a.test/x"), svc("a.test/y")];
    r.ca_file = Some(PathBuf::from("ca.pem"));
    r.pin_sha256 = vec!["sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".to_owned()];
    r.drain_grace_secs = 20;
    r.log_level = "debug".into();
    r.ping_interval_secs = 12;
    r.reconnect_first_delay_ms = 250;
    r.reconnect_max_delay_secs = 20;
    r.reconnect_max_attempts = Some(3);
    r.reconnect_reset_after_secs = 90;
    r.keep_retrying = true;
    r.did_document = Some(PathBuf::from("did.json"));
    r.private_key = Some(PathBuf::from("key.pem"));
    r.chunk_size = 2048;
    r.max_buffered_response_bytes = 1 << 18;
    r.max_inflight = 7;
    r.max_buffered_bytes = 1 << 20;
    r.admin_listen = Some("127.0.0.1:9082".parse().unwrap());
    r.inspector.requests = 3;
    r.inspector.max_bytes = 16384;
    r.inspector.bodies = true;
    r.inspector.show_secrets = true;
    c
}

#[test]
fn defaults_load_from_an_empty_file() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(
        Config::from_toml_str("# nothing\n\n[gateway]\n[receiver]\n").unwrap(),
        c
    );

    let g = &c.gateway;
    assert_eq!(g.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(g.ws_listen, None);
    assert_eq!(g.request_timeout(), Duration::from_secs(30));
    assert_eq!(g.max_inflight_per_receiver, 100);
    assert_eq!(g.ping_interval(), Duration::from_secs(30));
    assert_eq!(g.chunk_size, 65536);
    assert_eq!(g.max_frame_bytes, 67108864);
    assert_eq!(g.drain_grace(), Duration::from_secs(10));
    assert_eq!(g.log_format, LogFormat::Text);
    assert_eq!(g.header_read_timeout_secs, 10);
    assert_eq!(g.max_header_bytes, 64 * 1024);
    assert_eq!(g.max_body_bytes, 1 << 30);
    assert_eq!(g.max_pending_handshakes, 256);
    assert_eq!(g.max_receivers_per_ip, 64);
    assert_eq!(g.max_receivers, 4096);
    let edge = g.edge_limits();
    assert_eq!(edge.header_read_timeout, Duration::from_secs(10));
    assert_eq!(edge, anpx_core::edge::EdgeLimits::default());
    assert!(!g.tls.enabled());
    assert_eq!(g.auth.mode, AuthMode::None);
    assert_eq!(g.auth.timestamp_window(), Duration::from_secs(300));
    assert_eq!(g.registry.url, None);
    assert!(g.routes.grant.is_empty());

    let r = &c.receiver;
    assert_eq!(r.gateway, "ws://127.0.0.1:8080/ws");
    assert_eq!(r.upstream, None);
    assert!(r.services.is_empty());
    assert_eq!(r.ping_interval(), Duration::from_secs(30));
    assert_eq!(r.reconnect_first_delay(), Duration::from_millis(1000));
    assert_eq!(r.reconnect_max_delay(), Duration::from_secs(300));
    assert_eq!(r.reconnect_max_attempts, None);

    // The receiver's default gateway URL is where the default gateway is.
    assert!(r.gateway.contains(&g.listen.to_string()));
}

#[test]
fn key_table_defaults_match_the_default_config() {
    let c = Config::default();
    for k in keys() {
        let value = c.get(k.key).unwrap().unwrap_or_default();
        assert_eq!(value, k.default, "{}", k.key);
        // The default text is accepted as is.
        let mut d = Config::default();
        d.set(k.key, k.default).unwrap();
        assert_eq!(d, c, "{}", k.key);
    }
}

#[test]
fn example_file_parses_and_sets_every_key() {
    let c = Config::from_toml_str(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.gateway.listen,
        "0.0.0.0:443".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.gateway.auth.mode, AuthMode::DidWba);
    assert!(c.gateway.tls.enabled());
    assert_eq!(c.gateway.routes.grant.len(), 2);
    assert_eq!(c.gateway.routes.grant[1].services, [svc("*/tools")]);
    assert_eq!(c.receiver.gateway, "wss://gateway.example.com:8443/ws");
    assert_eq!(c.receiver.services, [svc("api.example.com/travel")]);
    assert_eq!(c.receiver.reconnect_max_attempts, Some(20));
    for k in keys() {
        let name = k.key.rsplit('.').next().unwrap();
        let written = EXAMPLE.contains(&format!("\n{name} = "))
            || EXAMPLE.contains(&format!("[[{}]]", k.key));
        assert!(written, "the example does not show {}", k.key);
    }
}

#[test]
fn unknown_keys_are_named() {
    let e = Config::from_toml_str("[gateway]\nlistne = \"127.0.0.1:1\"").unwrap_err();
    assert_eq!(
        e,
        ConfigError::UnknownKey {
            key: "gateway.listne".to_owned(),
            suggestion: Some("gateway.listen".to_owned()),
        }
    );
    assert_eq!(
        e.to_string(),
        "unknown key gateway.listne (did you mean gateway.listen?)"
    );

    let cases = [
        ("[gatway]\nlisten = \"127.0.0.1:1\"", "unknown key gatway (did you mean gateway?)"),
        ("[gateway.tls]\ncrt = \"x\"", "unknown key gateway.tls.crt"),
        ("[receiver]\nservice = []", "unknown key receiver.service (did you mean receiver.services?)"),
        ("gateway.auth.modes = \"none\"", "unknown key gateway.auth.modes (did you mean gateway.auth.mode?)"),
        ("log_format = \"json\"", "unknown key log_format"),
        ("[gateway.routes]\ngrants = []", "unknown key gateway.routes.grants (did you mean gateway.routes.grant?)"),
        (
            "[[gateway.routes.grant]]\ndid = \"did:wba:a\"\nservics = [\"a.com\"]",
            "unknown key gateway.routes.grant[0].servics (did you mean gateway.routes.grant[0].services?)",
        ),
        ("[something]\n", "unknown key something"),
    ];
    for (toml, want) in cases {
        let got = err(toml);
        assert!(got.starts_with(want), "{toml:?}: {got}");
    }
}

#[test]
fn one_process_keeps_the_receiver_admin_plane_off_the_gateway_listeners() {
    // Alone, a receiver may take any address, 127.0.0.1:8081 included.
    let alone = Config::from_toml_str("[receiver]\nadmin_listen = \"127.0.0.1:8081\"").unwrap();
    assert_eq!(
        alone.receiver.admin_listen,
        Some("127.0.0.1:8081".parse().unwrap())
    );
    // Beside a gateway in one process, not one of its addresses.
    assert_eq!(
        alone.check_both().unwrap_err().to_string(),
        "receiver.admin_listen: must differ from gateway.admin_listen"
    );
    let public = Config::from_toml_str("[receiver]\nadmin_listen = \"127.0.0.1:8080\"").unwrap();
    assert_eq!(
        public.check_both().unwrap_err().to_string(),
        "receiver.admin_listen: must differ from gateway.listen"
    );
    let apart = Config::from_toml_str("[receiver]\nadmin_listen = \"127.0.0.1:8082\"").unwrap();
    assert!(apart.check_both().is_ok());
    // Off by default.
    assert_eq!(Config::default().receiver.admin_listen, None);
    assert!(Config::default().check_both().is_ok());
}

#[test]
fn bad_values_are_named() {
    let cases = [
        (
            "[gateway]\nlisten = \"example.com:8080\"",
            "gateway.listen: expected an IP address and port such as 127.0.0.1:8080 (or localhost:8080), got \"example.com:8080\"",
        ),
        (
            "[gateway]\nws_listen = 8081",
            "gateway.ws_listen: expected an IP address and port such as 127.0.0.1:8080 (or localhost:8080), got 8081",
        ),
        (
            "[gateway]\nws_listen = \"127.0.0.1:8080\"",
            "gateway.ws_listen: must differ from gateway.listen",
        ),
        (
            "[gateway.caller_auth]\nservices = [\"a.test/secure\"]",
            "gateway.caller_auth.token_key: required when gateway.caller_auth.services is set",
        ),
        (
            "[gateway.caller_auth]\nservices = [\"a.test/x y\"]",
            "gateway.caller_auth.services: invalid service URL \"a.test/x y\": service URL contains whitespace or a control character (' ')",
        ),
        (
            "[gateway.caller_auth]\ntoken_key = 3",
            "gateway.caller_auth.token_key: expected a file path, got 3",
        ),
        (
            "[gateway.caller_auth]\ntoken_lifetime_secs = 0",
            "gateway.caller_auth.token_lifetime_secs: expected a positive integer, got 0",
        ),
        (
            "[gateway.caller_auth]\ndid_header = \"Authorization\"",
            "gateway.caller_auth.did_header: expected a header name of letters, digits and '-' (not host, authorization, cookie, a hop-by-hop or forwarding header), got \"Authorization\"",
        ),
        (
            "[gateway.caller_auth]\ndid_header = \"x_did\"",
            "gateway.caller_auth.did_header: expected a header name of letters, digits and '-' (not host, authorization, cookie, a hop-by-hop or forwarding header), got \"x_did\"",
        ),
        (
            "[gateway]\nadmin_listen = \"localhost\"",
            "gateway.admin_listen: expected an IP address and port such as 127.0.0.1:8081, or off, got \"localhost\"",
        ),
        (
            "[gateway]\nadmin_listen = \"127.0.0.1:8080\"",
            "gateway.admin_listen: must differ from gateway.listen",
        ),
        (
            "[gateway]\nhealth_path = \"health\"",
            "gateway.health_path: expected a path starting with / (no query, no spaces), or off, got \"health\"",
        ),
        (
            "[gateway.inspector]\nrequests = 1000000",
            "gateway.inspector.requests: expected at most 100000, got 1000000",
        ),
        (
            "[gateway.inspector]\nmax_bytes = 100",
            "gateway.inspector.max_bytes: expected at least 4096, got 100",
        ),
        (
            "[gateway.inspector]\nbodies = 1",
            "gateway.inspector.bodies: expected true or false, got 1",
        ),
        (
            "[gateway.inspector]\nshow_secrets = \"yes\"",
            "gateway.inspector.show_secrets: expected true or false, got \"yes\"",
        ),
        (
            "[gateway]\nrequest_timeout_secs = 0",
            "gateway.request_timeout_secs: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nrequest_timeout_secs = \"30\"",
            "gateway.request_timeout_secs: expected a positive integer, got \"30\"",
        ),
        (
            "[gateway]\nrequest_timeout_secs = 1.5",
            "gateway.request_timeout_secs: expected a positive integer, got 1.5",
        ),
        (
            "[gateway]\nrequest_timeout_secs = 99999999999",
            "gateway.request_timeout_secs: expected at most 31536000, got 99999999999",
        ),
        (
            "[gateway]\nwebsocket_idle_timeout_secs = 0",
            "gateway.websocket_idle_timeout_secs: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nmax_inflight_per_receiver = 0",
            "gateway.max_inflight_per_receiver: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nmax_inflight_percent_per_client = 101",
            "gateway.max_inflight_percent_per_client: expected at most 100, got 101",
        ),
        (
            "[gateway]\nping_interval_secs = -30",
            "gateway.ping_interval_secs: expected a positive integer, got -30",
        ),
        (
            "[gateway]\nheader_read_timeout_secs = 0",
            "gateway.header_read_timeout_secs: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nmax_pending_handshakes = -1",
            "gateway.max_pending_handshakes: expected a positive integer, got -1",
        ),
        (
            "[gateway]\nmax_header_bytes = 8191",
            "gateway.max_header_bytes: expected at least 8192, got 8191",
        ),
        (
            "[gateway]\nmax_body_bytes = 0",
            "gateway.max_body_bytes: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nupload_timeout_secs = 0",
            "gateway.upload_timeout_secs: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nbody_idle_timeout_secs = 0",
            "gateway.body_idle_timeout_secs: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nmax_response_bytes = 0",
            "gateway.max_response_bytes: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nmax_buffered_response_bytes = -1",
            "gateway.max_buffered_response_bytes: expected a positive integer, got -1",
        ),
        (
            "[gateway]\nmax_response_headers = 40000",
            "gateway.max_response_headers: expected at most 16384, got 40000",
        ),
        (
            "[gateway]\nmax_response_header_bytes = 0",
            "gateway.max_response_header_bytes: expected a positive integer, got 0",
        ),
        (
            "[receiver]\nadmin_listen = \"8082\"",
            "receiver.admin_listen: expected an IP address and port such as 127.0.0.1:8081, or off, got \"8082\"",
        ),
        (
            "[receiver.inspector]\nrequests = 1000000",
            "receiver.inspector.requests: expected at most 100000, got 1000000",
        ),
        (
            "[receiver.inspector]\nmax_bytes = 100",
            "receiver.inspector.max_bytes: expected at least 4096, got 100",
        ),
        (
            "[receiver.inspector]\nbodies = \"yes\"",
            "receiver.inspector.bodies: expected true or false, got \"yes\"",
        ),
        (
            "[receiver.inspector]\nshow_secrets = 1",
            "receiver.inspector.show_secrets: expected true or false, got 1",
        ),
        (
            "[receiver]\nmax_buffered_response_bytes = 0",
            "receiver.max_buffered_response_bytes: expected a positive integer, got 0",
        ),
        (
            "[receiver]\nmax_buffered_bytes = 0",
            "receiver.max_buffered_bytes: expected a positive integer, got 0",
        ),
        (
            "[receiver]\nmax_inflight = 0",
            "receiver.max_inflight: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nmax_receivers_per_ip = 0",
            "gateway.max_receivers_per_ip: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nchunk_size = 1023",
            "gateway.chunk_size: expected at least 1024, got 1023",
        ),
        (
            "[gateway]\nchunk_size = 2048\nmax_frame_bytes = 1024",
            "gateway.chunk_size: 2048 is more than gateway.max_frame_bytes (1024)",
        ),
        (
            "[gateway]\nmax_buffered_per_receiver_bytes = 2048\nmax_buffered_bytes = 1024",
            "gateway.max_buffered_per_receiver_bytes: 2048 is more than gateway.max_buffered_bytes (1024)",
        ),
        (
            "[gateway]\nmax_buffered_bytes = 0",
            "gateway.max_buffered_bytes: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nmax_frame_bytes = 0",
            "gateway.max_frame_bytes: expected a positive integer, got 0",
        ),
        (
            "[gateway]\nmax_frame_bytes = 4294967296",
            "gateway.max_frame_bytes: expected at most 4294967295, got 4294967296",
        ),
        (
            "[gateway]\ndrain_grace_secs = -1",
            "gateway.drain_grace_secs: expected a non-negative integer, got -1",
        ),
        (
            "[gateway]\nlog_format = \"yaml\"",
            "gateway.log_format: expected \"text\" or \"json\", got \"yaml\"",
        ),
        (
            "[gateway.tls]\ncert = \"c.pem\"",
            "gateway.tls.key: required when gateway.tls.cert is set",
        ),
        (
            "[gateway.tls]\nkey = \"k.pem\"",
            "gateway.tls.cert: required when gateway.tls.key is set",
        ),
        (
            "[gateway.tls]\ncert = [\"c.pem\"]",
            "gateway.tls.cert: expected a file path, got an array",
        ),
        (
            "[gateway.auth]\nmode = \"did:wba\"",
            "gateway.auth.mode: expected \"none\" or \"did-wba\", got \"did:wba\"",
        ),
        (
            "[gateway.auth]\nresolver_base_url = \"ftp://resolver.test\"",
            "gateway.auth.resolver_base_url: expected an http:// or https:// URL, got \"ftp://resolver.test\"",
        ),
        (
            "[gateway.auth]\ndid_documents_dir = 3",
            "gateway.auth.did_documents_dir: expected a file path, got 3",
        ),
        (
            "[gateway.auth]\nservice_names = [\"https://gw.example\"]",
            "gateway.auth.service_names: expected a list of host names such as [\"gateway.example.com\"], got \"https://gw.example\"",
        ),
        (
            "[gateway.auth]\nmax_nonces_per_did = 100001",
            "gateway.auth.max_nonces_per_did: 100001 is more than gateway.auth.max_nonces (100000)",
        ),
        (
            "[gateway.auth]\nmax_nonces = 0",
            "gateway.auth.max_nonces: expected a positive integer, got 0",
        ),
        (
            "[gateway.auth]\nfailed_host_memory_secs = -1",
            "gateway.auth.failed_host_memory_secs: expected a non-negative integer, got -1",
        ),
        (
            "[gateway.auth]\nmax_document_fetches = 2\nmax_document_fetches_per_host = 3",
            "gateway.auth.max_document_fetches_per_host: 3 is more than gateway.auth.max_document_fetches (2)",
        ),
        (
            "[gateway.auth]\ntimestamp_window_secs = 0",
            "gateway.auth.timestamp_window_secs: expected a positive integer, got 0",
        ),
        (
            "[gateway.registry]\nurl = \"registry.test/grants\"",
            "gateway.registry.url: expected a sqlite:, mysql:// or postgres:// URL, got \"registry.test/grants\"",
        ),
        (
            "[gateway.registry]\nurl = \"https://registry.test/grants\"",
            "gateway.registry.url: expected a sqlite:, mysql:// or postgres:// URL, got \"https://registry.test/grants\"",
        ),
        (
            "[gateway]\nkeep_underscore_headers = \"yes\"",
            "gateway.keep_underscore_headers: expected true or false, got \"yes\"",
        ),
        (
            "[gateway]\nsecurity_headers = \"maybe\"",
            "gateway.security_headers: expected true or false, got \"maybe\"",
        ),
        (
            "[gateway]\nblock_probes = 1",
            "gateway.block_probes: expected true or false, got 1",
        ),
        (
            "[gateway]\nblocked_paths = \"/wp-admin\"",
            "gateway.blocked_paths: expected a list of path patterns such as [\"/wp-admin\", \"/.env\"], got \"/wp-admin\"",
        ),
        (
            "[gateway.rate_limit]\nip_per_sec = 0",
            "gateway.rate_limit.ip_per_sec: expected a positive integer, got 0",
        ),
        (
            "[gateway.rate_limit]\nip_burst = 2000000",
            "gateway.rate_limit.ip_burst: expected at most 1000000, got 2000000",
        ),
        (
            "[gateway.rate_limit]\nroute_per_sec = -1",
            "gateway.rate_limit.route_per_sec: expected a positive integer, got -1",
        ),
        (
            "[gateway.rate_limit]\nroute_burst = \"many\"",
            "gateway.rate_limit.route_burst: expected a positive integer, got \"many\"",
        ),
        (
            "[gateway.rate_limit]\nmax_tracked = 0",
            "gateway.rate_limit.max_tracked: expected a positive integer, got 0",
        ),
        (
            "[gateway.cors]\norigins = [\"app.test/x\"]",
            "gateway.cors.origins: expected a list of origins such as [\"https://app.example.com\"] or [\"*\"], got \"app.test/x\"",
        ),
        (
            "[gateway.cors]\nmax_age_secs = -5",
            "gateway.cors.max_age_secs: expected a non-negative integer, got -5",
        ),
        (
            "[gateway.registry]\nrefresh_secs = 0",
            "gateway.registry.refresh_secs: expected a positive integer, got 0",
        ),
        (
            "[gateway.cluster]\nnats_url = \"http://127.0.0.1:4222\"",
            "gateway.cluster.nats_url: expected a nats:// or tls:// URL, got \"http://127.0.0.1:4222\"",
        ),
        (
            "[gateway.cluster]\nnode_name = \"a\\u0007b\"",
            "gateway.cluster.node_name: expected a node name of 1 to 128 bytes without control characters, got \"a\\u{7}b\"",
        ),
        (
            "[gateway.cluster]\nsubject_prefix = \"anpx.>\"",
            "gateway.cluster.subject_prefix: expected dot-separated tokens of letters, digits, '-' and '_' (a NATS subject prefix), got \"anpx.>\"",
        ),
        (
            "[gateway.cluster]\nannounce_interval_ms = 5",
            "gateway.cluster.announce_interval_ms: expected at least 10, got 5",
        ),
        (
            "[gateway.cluster]\nroute_ttl_ms = 1000",
            "gateway.cluster.route_ttl_ms: 1000 must be more than gateway.cluster.announce_interval_ms (1000)",
        ),
        (
            "[receiver]\nextra_gateways = [\"http://x/ws\"]",
            "receiver.extra_gateways: expected a ws:// or wss:// URL, got \"http://x/ws\"",
        ),
        (
            "[[gateway.routes.grant]]\ndid = \"alice\"\nservices = [\"a.test\"]",
            "gateway.routes.grant[0].did: expected a DID such as \"did:wba:example.com:alice\", got \"alice\"",
        ),
        (
            "[[gateway.routes.grant]]\nservices = [\"a.test\"]",
            "gateway.routes.grant[0].did: expected a DID such as \"did:wba:example.com:alice\", got nothing",
        ),
        (
            "[[gateway.routes.grant]]\ndid = \"did:wba:a\"\nservices = [\"a.test\"]\n\
             [[gateway.routes.grant]]\ndid = \"did:wba:b\"\nservices = [\"a.test/a?b\"]",
            "gateway.routes.grant[1].services: invalid service URL \"a.test/a?b\": service URL path contains '?'; a route is a plain path prefix",
        ),
        (
            "[[gateway.routes.grant]]\ndid = \"did:wba:a\"\nservices = []",
            "gateway.routes.grant[0].services: expected at least one service URL, got an array",
        ),
        (
            "[[gateway.routes.grant]]\ndid = \"did:wba:a\"\nservices = [\"a.test\"]\n\
             [[gateway.routes.grant]]\ndid = \"did:wba:a\"\nservices = [\"b.test\"]",
            "gateway.routes.grant[1].did: did:wba:a is already granted by gateway.routes.grant[0]",
        ),
        (
            "[receiver]\ngateway = \"http://127.0.0.1:8080/ws\"",
            "receiver.gateway: expected a ws:// or wss:// URL, got \"http://127.0.0.1:8080/ws\"",
        ),
        (
            "[receiver]\nupstream = \"ws://127.0.0.1:9000\"",
            "receiver.upstream: expected an http:// or https:// URL, got \"ws://127.0.0.1:9000\"",
        ),
        (
            "[receiver]\nservices = \"a.test\"",
            "receiver.services: expected a list of service URLs such as [\"api.example.com/agents\"], got \"a.test\"",
        ),
        (
            "[receiver]\nservices = [\"a.test\", 3]",
            "receiver.services: expected a list of service URLs such as [\"api.example.com/agents\"], got an array",
        ),
        (
            "[receiver]\nservices = [\"ftp://a.test\"]",
            "receiver.services: invalid service URL \"ftp://a.test\": service URL has unsupported scheme \"ftp\" (only http, https, ws and wss are tolerated)",
        ),
        (
            "[receiver]\nca_file = true",
            "receiver.ca_file: expected a file path, got true",
        ),
        (
            "[receiver]\nping_interval_secs = 0",
            "receiver.ping_interval_secs: expected a positive integer, got 0",
        ),
        (
            "[receiver]\nreconnect_first_delay_ms = 0",
            "receiver.reconnect_first_delay_ms: expected a positive integer, got 0",
        ),
        (
            "[receiver]\nreconnect_max_delay_secs = 0",
            "receiver.reconnect_max_delay_secs: expected a positive integer, got 0",
        ),
        (
            "[receiver]\nreconnect_first_delay_ms = 5000\nreconnect_max_delay_secs = 1",
            "receiver.reconnect_max_delay_secs: 1s is shorter than receiver.reconnect_first_delay_ms (5s)",
        ),
        (
            "[receiver]\nreconnect_max_attempts = -1",
            "receiver.reconnect_max_attempts: expected a non-negative integer, got -1",
        ),
        (
            "[receiver]\nreconnect_reset_after_secs = 0",
            "receiver.reconnect_reset_after_secs: expected a positive integer, got 0",
        ),
        (
            "[receiver]\nkeep_retrying = \"maybe\"",
            "receiver.keep_retrying: expected true or false, got \"maybe\"",
        ),
        (
            "[receiver]\ndid_document = \"did.json\"",
            "receiver.private_key: required when receiver.did_document is set",
        ),
        (
            "[receiver]\nprivate_key = \"key.pem\"",
            "receiver.did_document: required when receiver.private_key is set",
        ),
        (
            "[receiver]\nchunk_size = 100000000",
            "receiver.chunk_size: expected at most 67108864, got 100000000",
        ),
        (
            "[receiver]\ndrain_grace_secs = -1",
            "receiver.drain_grace_secs: expected a non-negative integer, got -1",
        ),
        (
            "[receiver]\nlog_level = \"debug=loud\"",
            "receiver.log_level: expected log directives: a level (off, error, warn, info, debug, trace) or target=level, comma-separated, got \"debug=loud\"",
        ),
        (
            "[gateway]\nlog_level = 3",
            "gateway.log_level: expected log directives: a level (off, error, warn, info, debug, trace) or target=level, comma-separated, got 3",
        ),
        (
            "[receiver]\npin_sha256 = [\"sha1//abc\"]",
            "receiver.pin_sha256: expected a list of SHA-256 pins such as [\"sha256//<44 base64 characters>\"] or 64 hex digits, got \"sha1//abc\"",
        ),
        (
            "[receiver]\nchunk_size = 0",
            "receiver.chunk_size: expected a positive integer, got 0",
        ),
        ("gateway = 1", "gateway: expected a table, got 1"),
    ];
    for (toml, want) in cases {
        assert_eq!(err(toml), want, "{toml:?}");
    }
    // Every key has at least one refusal above.
    for k in keys() {
        assert!(
            cases.iter().any(|(_, want)| want.starts_with(k.key)),
            "no bad-value case for {}",
            k.key
        );
    }
}

#[test]
fn errors_are_typed() {
    let e = Config::from_toml_str("[gateway]\nchunk_size = 1023").unwrap_err();
    assert_eq!(
        e,
        ConfigError::Invalid {
            key: "gateway.chunk_size".to_owned(),
            error: ValueError::TooSmall {
                min: 1024,
                got: 1023
            },
        }
    );
    let e = Config::from_toml_str("[gateway\nlisten = 1").unwrap_err();
    assert!(
        matches!(&e, ConfigError::Syntax(m) if m.contains("line 1")),
        "{e}"
    );
    assert!(std::error::Error::source(&e).is_none());
    let e = Config::from_toml_str("[receiver]\nservices = [\"a?\"]").unwrap_err();
    let source = std::error::Error::source(&e).unwrap();
    assert!(
        std::error::Error::source(source).is_some(),
        "the ServiceUrlError is chained"
    );
}

#[test]
fn later_set_overrides_earlier() {
    let mut c = Config::from_toml_str("[gateway]\nlisten = \"127.0.0.1:1000\"").unwrap();
    c.set("gateway.listen", "127.0.0.1:2000").unwrap();
    c.set("gateway.listen", "127.0.0.1:3000").unwrap();
    assert_eq!(c.gateway.listen.port(), 3000);

    c.set("receiver.services", "a.test/x, b.test/y ,").unwrap();
    assert_eq!(c.receiver.services, [svc("a.test/x"), svc("b.test/y")]);
    c.set("receiver.services", "").unwrap();
    assert!(c.receiver.services.is_empty());

    c.set("gateway.tls.cert", "c.pem").unwrap();
    assert_eq!(c.gateway.tls.cert, Some(PathBuf::from("c.pem")));
    c.set("gateway.tls.cert", "").unwrap();
    assert_eq!(c.gateway.tls.cert, None, "empty unsets an optional key");

    c.set(
        "gateway.routes.grant",
        "did:wba:a=a.test/x,*/t;did:wba:b=b.test",
    )
    .unwrap();
    assert_eq!(c.gateway.routes.grant.len(), 2);
    assert_eq!(
        c.gateway.routes.grant[0].services,
        [svc("a.test/x"), svc("*/t")]
    );
    c.set("gateway.routes.grant", "did:wba:c=c.test").unwrap();
    assert_eq!(
        c.gateway.routes.grant.len(),
        1,
        "a set replaces, never appends"
    );

    c.set("receiver.reconnect_max_attempts", "5").unwrap();
    assert_eq!(c.receiver.reconnect_max_attempts, Some(5));
    c.set("receiver.reconnect_max_attempts", "").unwrap();
    assert_eq!(c.receiver.reconnect_max_attempts, None);
    c.set("receiver.reconnect_max_attempts", "5").unwrap();
    // 0 is "never give up", as unset.
    c.set("receiver.reconnect_max_attempts", "0").unwrap();
    assert_eq!(c.receiver.reconnect_max_attempts, None);
}

#[test]
fn set_refuses_like_the_file() {
    let mut c = Config::default();
    let before = c.clone();
    let cases = [
        ("gateway.request_timeout_secs", "0", "gateway.request_timeout_secs: expected a positive integer, got 0"),
        ("gateway.request_timeout_secs", "soon", "gateway.request_timeout_secs: expected a positive integer, got \"soon\""),
        ("gateway.listen", "", "gateway.listen: expected an IP address and port such as 127.0.0.1:8080 (or localhost:8080), got \"\""),
        ("receiver.gateway", "", "receiver.gateway: expected a ws:// or wss:// URL, got \"\""),
        ("gateway.log_format", "JSON", "gateway.log_format: expected \"text\" or \"json\", got \"JSON\""),
        ("receiver.services", "a.test,b test", "receiver.services: invalid service URL \"b test\": service URL contains whitespace or a control character (' ')"),
        ("gateway.routes.grant", "did:wba:a", "gateway.routes.grant: expected grants written as DID=service,service;DID=service, got \"did:wba:a\""),
        ("gateway.listne", "127.0.0.1:1", "unknown key gateway.listne (did you mean gateway.listen?)"),
        ("gateway", "x", "unknown key gateway"),
    ];
    for (key, value, want) in cases {
        assert_eq!(
            c.set(key, value).unwrap_err().to_string(),
            want,
            "{key}={value:?}"
        );
    }
    assert_eq!(c, before, "a refused set changes nothing");
    assert!(c.get("gateway.nope").is_err());
}

#[test]
fn file_then_env_then_flags() {
    let file = "[gateway]\nlisten = \"127.0.0.1:1000\"\nrequest_timeout_secs = 10\nping_interval_secs = 5\n\
                [receiver]\nservices = [\"file.test\"]";
    let vars = env(&[
        ("ANPX_GATEWAY_LISTEN", "127.0.0.1:2000"),
        ("ANPX_GATEWAY_REQUEST_TIMEOUT_SECS", "20"),
        ("ANPX_RECEIVER_SERVICES", "env.test/a,env.test/b"),
        ("ANPX_GATEWAY_TLS_CERT", "env-cert.pem"),
        ("ANPX_GATEWAY_TLS_KEY", "env-key.pem"),
        ("PATH", "/usr/bin"),
        ("anpx_gateway_listen", "ignored: not the prefix"),
        (CONFIG_FILE_ENV, "/etc/anpx.toml"),
        (LANE_SPIN_ENV, "0"),
    ]);
    let flags = [("gateway.listen", "127.0.0.1:3000")];
    let c = Config::load(file, vars, flags).unwrap();
    assert_eq!(c.gateway.listen.port(), 3000, "flag beats env and file");
    assert_eq!(c.gateway.request_timeout_secs, 20, "env beats file");
    assert_eq!(c.gateway.ping_interval_secs, 5, "file beats default");
    assert_eq!(c.gateway.max_inflight_per_receiver, 100, "default stays");
    assert_eq!(c.receiver.services, [svc("env.test/a"), svc("env.test/b")]);
    assert_eq!(c.gateway.tls.cert, Some(PathBuf::from("env-cert.pem")));
}

#[test]
fn checks_across_keys_wait_for_every_source() {
    // Valid only with the flag that raises the frame limit.
    let file = "[gateway]\nchunk_size = 134217728";
    assert!(Config::from_toml_str(file).is_err());
    let c = Config::load(file, env(&[]), [("gateway.max_frame_bytes", "268435456")]).unwrap();
    assert_eq!(c.gateway.chunk_size, 134217728);
    // ...and still refused when nothing settles them.
    let e = Config::load(file, env(&[]), no_flags()).unwrap_err();
    assert!(e.to_string().starts_with("gateway.chunk_size: "), "{e}");
    let e = Config::load("", env(&[("ANPX_GATEWAY_TLS_CERT", "c.pem")]), no_flags()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "gateway.tls.key: required when gateway.tls.cert is set"
    );
}

#[test]
fn env_typos_and_bad_values_are_refused() {
    let mut c = Config::default();
    let e = c
        .apply_env(env(&[("ANPX_GATEWAY_LISTNE", "127.0.0.1:1")]))
        .unwrap_err();
    assert_eq!(
        e,
        ConfigError::UnknownEnvVar {
            var: "ANPX_GATEWAY_LISTNE".to_owned(),
            suggestion: Some("ANPX_GATEWAY_LISTEN".to_owned()),
        }
    );
    assert!(e.to_string().contains("ANPX_GATEWAY_LISTNE"), "{e}");

    let e = c.apply_env(env(&[("ANPX_LOG", "debug")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown environment variable ANPX_LOG: no configuration key matches it"
    );

    let e = c
        .apply_env(env(&[("ANPX_GATEWAY_REQUEST_TIMEOUT_SECS", "0")]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ANPX_GATEWAY_REQUEST_TIMEOUT_SECS: gateway.request_timeout_secs: expected a positive integer, got 0"
    );
    assert!(
        matches!(e, ConfigError::Env { ref var, .. } if var == "ANPX_GATEWAY_REQUEST_TIMEOUT_SECS")
    );

    // Every key's variable reaches its key.
    for k in keys() {
        let mut c = Config::default();
        c.apply_env(env(&[(k.env, k.default)])).unwrap();
        assert_eq!(c, Config::default(), "{}", k.env);
    }
    let mut c = Config::default();
    c.apply_env(env(&[
        ("ANPX_GATEWAY_TLS_CERT", "/x/cert.pem"),
        ("ANPX_RECEIVER_UPSTREAM", "http://u.test"),
    ]))
    .unwrap();
    assert_eq!(c.gateway.tls.cert, Some(PathBuf::from("/x/cert.pem")));
    assert_eq!(c.receiver.upstream.as_deref(), Some("http://u.test"));
}

#[test]
fn every_key_reaches_its_own_field() {
    let changed = all_changed();
    changed.validate().unwrap();
    let default = Config::default();
    let mut rebuilt = Config::default();
    for k in keys() {
        let value = changed.get(k.key).unwrap().unwrap_or_default();
        assert_ne!(
            Some(value.clone()),
            default.get(k.key).unwrap(),
            "all_changed() leaves {} at its default",
            k.key
        );
        let mut one = Config::default();
        one.set(k.key, &value).unwrap();
        assert_ne!(one, default, "{} sets nothing", k.key);
        rebuilt.set(k.key, &value).unwrap();
    }
    assert_eq!(rebuilt, changed, "the keys cover every field");
}

#[test]
fn printed_configuration_reads_back_the_same() {
    for c in [
        Config::default(),
        Config::from_toml_str(EXAMPLE).unwrap(),
        all_changed(),
    ] {
        let printed = c.to_toml_string();
        let back = Config::from_toml_str(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(back, c, "{printed}");
        assert_eq!(back.to_toml_string(), printed);
    }
    let printed = Config::default().to_toml_string();
    assert!(printed.contains("# ws_listen is unset"), "{printed}");
    assert!(printed
        .contains("# Address the public HTTP front end listens on\nlisten = \"127.0.0.1:8080\""));
    let printed = all_changed().to_toml_string();
    assert_eq!(
        printed.matches("[[gateway.routes.grant]]").count(),
        2,
        "{printed}"
    );
}

#[test]
fn validate_checks_fields_set_directly() {
    let mut c = Config::default();
    c.gateway.request_timeout_secs = 0;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "gateway.request_timeout_secs: expected a positive integer, got 0"
    );
    let mut c = Config::default();
    c.receiver.services = Vec::new();
    c.receiver.gateway = "tcp://x".to_owned();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("receiver.gateway: "));
    let mut c = Config::default();
    c.gateway.chunk_size = usize::MAX;
    assert!(c.validate().is_err());
}

#[test]
fn conversions_to_the_state_machines() {
    let c = all_changed();
    let g = c.gateway.core_config();
    assert_eq!(g.request_timeout, Duration::from_secs(31));
    assert_eq!(g.max_inflight_per_link, 7);
    assert_eq!(g.ping_interval, Duration::from_secs(11));
    assert_eq!(g.chunk_size, 4096);
    assert_eq!(g.frame_limits.max_frame_len, 8192);
    assert_eq!(
        (g.response.max_headers, g.response.max_header_bytes),
        (17, 2048)
    );

    let r = c.receiver.core_config();
    assert_eq!(r.ping_interval, Duration::from_secs(12));
    assert_eq!(r.chunk_size, 2048);

    let b = c.receiver.backoff_config();
    assert_eq!(b.first_delay, Duration::from_millis(250));
    assert_eq!(b.max_delay, Duration::from_secs(20));
    assert_eq!(b.max_attempts, Some(3));
    assert!(Backoff::new(b, 1).is_ok());

    // Defaults convert to the state machines' own defaults.
    let d = Config::default();
    assert_eq!(d.gateway.core_config(), anpx_core::GatewayConfig::default());
    assert_eq!(
        d.receiver.core_config(),
        anpx_core::ReceiverConfig::default()
    );
    assert_eq!(
        d.receiver.backoff_config(),
        anpx_core::backoff::BackoffConfig::default()
    );
}

#[test]
fn any_accepted_config_has_a_valid_backoff() {
    let c = Config::from_toml_str(
        "[receiver]\nreconnect_first_delay_ms = 1000\nreconnect_max_delay_secs = 1",
    )
    .unwrap();
    assert!(c.receiver.backoff_config().validate().is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_files_never_panic(text in ".{0,200}") {
        let _ = Config::from_toml_str(&text);
    }

    #[test]
    fn arbitrary_toml_shaped_files_never_panic(
        key in prop::sample::select(keys().iter().map(|k| k.key).collect::<Vec<_>>()),
        value in prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            "[a-z0-9:/._*\\-]{0,30}".prop_map(|s| format!("{s:?}")),
            Just("[]".to_owned()),
            Just("[1, \"a\", {}]".to_owned()),
            Just("{ did = 1 }".to_owned()),
            Just("[{ did = \"did:wba:a\", services = [\"a\"] }, { x = 1 }]".to_owned()),
            Just("1979-05-27T07:32:00Z".to_owned()),
            Just("nan".to_owned()),
        ],
    ) {
        let text = format!("{key} = {value}");
        if let Err(e) = Config::from_toml_str(&text) {
            let message = e.to_string();
            prop_assert!(
                message.contains(key) || message.starts_with("invalid TOML"),
                "{}: {}", text, message
            );
        }
    }

    #[test]
    fn arbitrary_flags_never_panic(
        key in prop::sample::select(keys().iter().map(|k| k.key).collect::<Vec<_>>()),
        value in ".{0,60}",
    ) {
        let mut c = Config::default();
        match c.set(key, &value) {
            Ok(()) => {
                // Whatever set() took, get() gives back in a form set() takes.
                let text = c.get(key).unwrap().unwrap_or_default();
                let mut again = Config::default();
                again.set(key, &text).unwrap();
                prop_assert_eq!(&again, &c);
                let _ = c.validate();
                let _ = c.to_toml_string();
            }
            Err(e) => prop_assert!(e.to_string().starts_with(key), "{}", e),
        }
    }
}

#[test]
fn the_receiver_budget_caps_the_message_and_late_head_limits() {
    let mut c = Config::default();
    let core = c.gateway.core_config();
    assert_eq!(core.buffers.per_link, 32 << 20);
    assert_eq!(core.buffers.total, 256 << 20);
    // 64 MiB frames and late-head bodies by their own keys, 32 MiB in force.
    assert_eq!(core.frame_limits.max_frame_len, 32 << 20);
    assert_eq!(core.reassembly.max_headless_bytes, 32 << 20);
    c.gateway.max_buffered_per_receiver_bytes = 100 << 20;
    let core = c.gateway.core_config();
    assert_eq!(core.frame_limits.max_frame_len, 64 << 20);
    assert_eq!(core.reassembly.max_headless_bytes, 64 << 20);
    assert_eq!(core.buffers.per_link, 100 << 20);
}

#[test]
fn localhost_listens_on_the_loopback_address() {
    let c = Config::load(
        "[gateway]\nlisten = \"localhost:9000\"",
        [],
        Vec::<(String, String)>::new(),
    )
    .unwrap();
    assert_eq!(c.gateway.listen.to_string(), "127.0.0.1:9000");
}
