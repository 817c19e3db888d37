//! What the binaries print on start so an operator knows where things are
//! reachable: a gateway's public, receiver and admin URLs, and a
//! receiver's "Forwarding" line per granted service, with the Host a
//! client must send. Written once so both shells say the same.

use std::net::SocketAddr;

use anpx_core::config::Config;
use anpx_core::ServiceUrl;

/// Prints a receiver's `Forwarding` lines on stdout when it connects, and
/// again whenever what the gateway granted changes.
pub struct Forwarding {
    gateway: String,
    upstream: String,
    printed: Option<Vec<String>>,
}

impl Forwarding {
    /// For the receiver `config` describes; `demo` serves the built-in
    /// echo agent instead of `receiver.upstream`.
    pub fn new(config: &Config, demo: bool) -> Self {
        let upstream = match (&config.receiver.upstream, demo) {
            (Some(url), false) => url.clone(),
            _ => "the built-in echo agent".to_owned(),
        };
        Forwarding {
            gateway: config.receiver.gateway.clone(),
            upstream,
            printed: None,
        }
    }

    /// Prints the lines for `granted` unless they were the last printed.
    pub fn print(&mut self, granted: &[String]) {
        if self.printed.as_deref() == Some(granted) {
            return;
        }
        if granted.is_empty() {
            println!("Forwarding nothing: the gateway granted no service");
        }
        for line in forwarding_lines(&self.gateway, granted, &self.upstream) {
            println!("{line}");
        }
        self.printed = Some(granted.to_vec());
    }
}

/// The line a receiver prints for its admin plane; `program` names the
/// binary (`anpx`, `anpx-smol`).
pub fn receiver_admin_line(program: &str, admin: SocketAddr) -> String {
    format!(
        "{program} receiver: admin plane on http://{admin}/status (also /metrics, /api/requests)"
    )
}

/// What a failed bind of the receiver's admin listener is reported with.
pub fn receiver_admin_bind_context(admin: Option<SocketAddr>) -> String {
    format!(
        "cannot listen on {} (receiver.admin_listen)",
        admin.map(|a| a.to_string()).unwrap_or_default()
    )
}

/// A gateway's addresses, one line each: the public URL, where receivers
/// connect, and the admin plane. `tls` is whether the public and receiver
/// listeners speak TLS (the admin plane is always plain HTTP).
pub fn gateway_lines(
    public: SocketAddr,
    ws: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    tls: bool,
) -> Vec<String> {
    let (http, wss) = if tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let receivers = ws.unwrap_or(public);
    let mut lines = vec![
        format!("public URL:       {http}://{public}{}", everywhere(public)),
        format!("receivers dial:   {wss}://{receivers}/ws"),
    ];
    lines.push(match admin {
        Some(a) => format!("admin URL:        http://{a}/ (dashboard, /metrics, /stats)"),
        None => "admin URL:        off (gateway.admin_listen)".to_owned(),
    });
    lines
}

/// A note for an address bound on every interface, which no client dials
/// as such.
fn everywhere(addr: SocketAddr) -> &'static str {
    if addr.ip().is_unspecified() {
        " (every interface: use this machine's address)"
    } else {
        ""
    }
}

/// One `Forwarding PUBLIC -> UPSTREAM` line per service the gateway at
/// `gateway_url` (the receiver's `ws://`/`wss://` URL) granted. A service
/// whose host is not the gateway's own name is reached by sending that
/// Host; the line then also shows the `curl` that does so against the
/// gateway's address.
pub fn forwarding_lines(gateway_url: &str, granted: &[String], upstream: &str) -> Vec<String> {
    let Some((scheme, authority)) = public_base(gateway_url) else {
        return granted
            .iter()
            .map(|g| format!("Forwarding {g} -> {upstream}"))
            .collect();
    };
    let gateway_host = host_of(authority);
    granted
        .iter()
        .map(|g| {
            let Ok(service) = g.parse::<ServiceUrl>() else {
                return format!("Forwarding {g} -> {upstream}");
            };
            let path = format!("/{}", service.segments().join("/"));
            let via = format!("{scheme}://{authority}{path}");
            match service.host() {
                None => format!("Forwarding {via} -> {upstream} (any Host)"),
                Some(host) if host.eq_ignore_ascii_case(gateway_host) => {
                    format!("Forwarding {via} -> {upstream}")
                }
                Some(host) => format!(
                    "Forwarding {scheme}://{host}{path} -> {upstream} \
                     (through this gateway: curl -H 'Host: {host}' {via})"
                ),
            }
        })
        .collect()
}

/// `http`/`https` and `host:port` of the gateway a `ws://`/`wss://` URL
/// points at.
fn public_base(gateway_url: &str) -> Option<(&'static str, &str)> {
    let (scheme, rest) = gateway_url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" => "http",
        "wss" => "https",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    // Credentials in the URL are not part of what a client dials.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    (!authority.is_empty()).then_some((scheme, authority))
}

/// The host of `host[:port]`, IPv6 brackets kept off.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_service_on_another_host_shows_the_host_to_send() {
        let lines = forwarding_lines(
            "ws://127.0.0.1:8080/ws",
            &granted(&["api.example.com/agents"]),
            "http://127.0.0.1:8000",
        );
        assert_eq!(
            lines,
            [
                "Forwarding http://api.example.com/agents -> http://127.0.0.1:8000 \
              (through this gateway: curl -H 'Host: api.example.com' http://127.0.0.1:8080/agents)"
            ]
        );
    }

    #[test]
    fn a_service_on_the_gateways_own_name_is_its_url() {
        let lines = forwarding_lines(
            "wss://gw.example.com:8443/ws",
            &granted(&["gw.example.com/a", "*/tools", "other.example"]),
            "http://127.0.0.1:8000",
        );
        assert_eq!(
            lines,
            [
                "Forwarding https://gw.example.com:8443/a -> http://127.0.0.1:8000",
                "Forwarding https://gw.example.com:8443/tools -> http://127.0.0.1:8000 (any Host)",
                "Forwarding https://other.example/ -> http://127.0.0.1:8000 \
                 (through this gateway: curl -H 'Host: other.example' https://gw.example.com:8443/)",
            ]
        );
        let v6 = forwarding_lines("ws://[::1]:9000/ws", &granted(&["::1/x"]), "u");
        assert_eq!(v6.len(), 1);
    }

    #[test]
    fn gateway_lines_follow_tls_and_the_admin_setting() {
        let public: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let admin: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let lines = gateway_lines(public, None, Some(admin), true).join("\n");
        assert!(lines.contains("https://127.0.0.1:8443"), "{lines}");
        assert!(lines.contains("wss://127.0.0.1:8443/ws"), "{lines}");
        assert!(lines.contains("http://127.0.0.1:8081/"), "{lines}");
        let any: SocketAddr = "0.0.0.0:80".parse().unwrap();
        let ws: SocketAddr = "0.0.0.0:81".parse().unwrap();
        let lines = gateway_lines(any, Some(ws), None, false).join("\n");
        assert!(
            lines.contains("http://0.0.0.0:80 (every interface"),
            "{lines}"
        );
        assert!(lines.contains("ws://0.0.0.0:81/ws"), "{lines}");
        assert!(lines.contains("admin URL:        off"), "{lines}");
    }
}
