//! A deliberately naive route oracle, written from the documented matching
//! rules rather than from the route table's code, so that the two can
//! disagree when one of them is wrong.

/// A service URL as the oracle understands it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// `None` for the wildcard host.
    pub host: Option<String>,
    pub segments: Vec<String>,
}

impl Grant {
    /// Parses the simple service URLs the scenarios write: an optional
    /// `http(s)://`, a host (or `*`) with an optional port, a path.
    pub fn parse(text: &str) -> Grant {
        let rest = ["https://", "http://"]
            .iter()
            .find_map(|scheme| text.strip_prefix(scheme))
            .unwrap_or(text);
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let host = normalize_host(authority);
        Grant {
            host: (host != "*").then_some(host),
            segments: segments(path).map(str::to_owned).collect(),
        }
    }

    /// The canonical text the gateway reports a route by.
    pub fn canonical(&self) -> String {
        let mut s = self.host.clone().unwrap_or_else(|| "*".to_owned());
        for seg in &self.segments {
            s.push('/');
            s.push_str(seg);
        }
        s
    }

    fn covers(&self, path: &[&str]) -> bool {
        self.segments.len() <= path.len() && self.segments.iter().zip(path).all(|(a, b)| a == b)
    }
}

/// Lower-cased, without a numeric `:port` or a trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.split('/').filter(|s| !s.is_empty())
}

/// The grant that serves `host` and `path`: the longest matching prefix
/// among the host's own grants, and only when it has none, among the
/// wildcard ones.
pub fn best<'a>(grants: &[&'a Grant], host: &str, path: &str) -> Option<&'a Grant> {
    let host = normalize_host(host);
    let path: Vec<&str> = segments(path).collect();
    let longest = |wildcard: bool| {
        grants
            .iter()
            .copied()
            .filter(|g| {
                if wildcard {
                    g.host.is_none()
                } else {
                    g.host.as_deref() == Some(host.as_str())
                }
            })
            .filter(|g| g.covers(&path))
            .max_by_key(|g| g.segments.len())
    };
    longest(false).or_else(|| longest(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_follows_the_documented_rules() {
        let api = Grant::parse("API.agent.com:8443/svc/");
        let nested = Grant::parse("api.agent.com/svc/a");
        let any = Grant::parse("*");
        let tools = Grant::parse("*/tools");
        assert_eq!(api.canonical(), "api.agent.com/svc");
        assert_eq!(any.canonical(), "*");
        let all = [&api, &nested, &any, &tools];
        assert_eq!(best(&all, "api.agent.com", "/svc/a/b"), Some(&nested));
        assert_eq!(best(&all, "Api.Agent.com.:80", "//svc//ab"), Some(&api));
        assert_eq!(best(&all, "api.agent.com", "/tools/x"), Some(&tools));
        assert_eq!(best(&all, "x.example", "/"), Some(&any));
        assert_eq!(best(&[&api], "api.agent.com", "/svcx"), None);
    }
}
