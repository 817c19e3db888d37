//! What a gateway knows of the cluster's routes: its own, and those the
//! other gateways announced and have not let lapse.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::message::RequestHead;
use crate::route::{RouteTable, ServiceUrl};

use super::Announcement;

/// Where a public request should be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// By this gateway's receivers (or refused by this gateway's core when
    /// nobody serves it).
    Local,
    /// By another gateway: the most specific route is served elsewhere only.
    Remote(ServiceUrl),
}

/// Where a public request goes first, from [`RouteBook::choose`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Another gateway serves it more specifically than any local
    /// receiver: forward it to this route's subject (and serve it here
    /// only if that fails to start).
    Remote(ServiceUrl),
    /// Serve it here. With `fallback`, a request no local receiver serves
    /// after all goes to another gateway that does.
    Local {
        /// Whether it may still go to another gateway.
        fallback: bool,
    },
}

/// How many gateways that withdrew the book remembers, the oldest going
/// first: a name is a few bytes, and a cluster has far fewer gateways.
const LEFT_REMEMBERED: usize = 1024;

#[derive(Debug)]
struct Node {
    name: String,
    last_heard: Instant,
}

/// The cluster's route knowledge as seen by one gateway.
///
/// Local receivers are preferred: a request goes to another gateway only
/// when that gateway holds a strictly more specific route than any local
/// receiver, or (after the local core found no route) when it holds any.
///
/// ```
/// use std::time::{Duration, Instant};
/// use anpx_core::cluster::{Announcement, Plan, RouteBook};
///
/// let t0 = Instant::now();
/// let mut book = RouteBook::new("gw-a", Duration::from_secs(3));
/// book.set_local(vec!["api.example.com".parse().unwrap()]);
/// book.handle_announcement(t0, Announcement::new("gw-b", vec!["api.example.com/travel".parse().unwrap()]));
///
/// // The longer prefix lives on gw-b only.
/// assert!(matches!(book.plan("api.example.com", "/travel/x"), Plan::Remote(_)));
/// assert_eq!(book.plan("api.example.com", "/other"), Plan::Local);
///
/// // gw-b falls silent: after the time to live it is forgotten.
/// book.handle_timeout(t0 + Duration::from_secs(3));
/// assert_eq!(book.plan("api.example.com", "/travel/x"), Plan::Local);
/// assert!(!book.is_alive("gw-b"));
/// ```
#[derive(Debug)]
pub struct RouteBook {
    me: String,
    ttl: Duration,
    local: RouteTable<u8>,
    remote: RouteTable<u32>,
    nodes: HashMap<u32, Node>,
    ids: HashMap<String, u32>,
    next_id: u32,
    /// Gateways that withdrew (left the cluster), newest last, until they
    /// announce routes again: they finish the requests they hold.
    left: VecDeque<String>,
}

impl RouteBook {
    /// The book of node `me`; other nodes are forgotten `ttl` after their
    /// last announcement.
    pub fn new(me: impl Into<String>, ttl: Duration) -> Self {
        RouteBook {
            me: me.into(),
            ttl,
            local: RouteTable::new(),
            remote: RouteTable::new(),
            nodes: HashMap::new(),
            ids: HashMap::new(),
            next_id: 0,
            left: VecDeque::new(),
        }
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Replaces the routes this node's own receivers serve.
    pub fn set_local(&mut self, services: Vec<ServiceUrl>) {
        self.local = RouteTable::new();
        for url in &services {
            self.local.insert(url, 0);
        }
    }

    /// Takes an announcement heard at `now`. Our own is ignored (NATS
    /// echoes it back); an empty one withdraws its node at once.
    pub fn handle_announcement(&mut self, now: Instant, a: Announcement) {
        if a.node == self.me {
            return;
        }
        self.left.retain(|n| *n != a.node);
        if a.services.is_empty() {
            self.forget(&a.node);
            if self.left.len() == LEFT_REMEMBERED {
                self.left.pop_front();
            }
            self.left.push_back(a.node);
            return;
        }
        let id = match self.ids.get(&a.node) {
            Some(id) => *id,
            None => {
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1);
                self.ids.insert(a.node.clone(), id);
                id
            }
        };
        self.nodes.insert(
            id,
            Node {
                name: a.node,
                last_heard: now,
            },
        );
        self.remote.remove_link(id);
        for url in &a.services {
            self.remote.insert(url, id);
        }
    }

    /// Forgets every node not heard from for the time to live. Returns the
    /// names forgotten.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .nodes
            .values()
            .filter(|n| now.saturating_duration_since(n.last_heard) >= self.ttl)
            .map(|n| n.name.clone())
            .collect();
        for name in &expired {
            self.forget(name);
        }
        expired
    }

    /// When the next node could expire.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.nodes.values().map(|n| n.last_heard + self.ttl).min()
    }

    /// Whether `node` is currently known (announced and not expired).
    pub fn is_alive(&self, node: &str) -> bool {
        self.ids.contains_key(node)
    }

    /// Whether `node` withdrew (it left the cluster, which ends no request
    /// it holds) and has not announced routes since. A node forgotten
    /// because it fell silent did not.
    pub fn has_left(&self, node: &str) -> bool {
        self.left.iter().any(|n| n == node)
    }

    /// The other nodes currently known, sorted.
    pub fn nodes(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.nodes.values().map(|n| n.name.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// Where to serve a request for `host` and (normalized) `path`.
    pub fn plan(&self, host: &str, path: &str) -> Plan {
        let Some(remote) = self.remote.lookup(host, path) else {
            return Plan::Local;
        };
        match self.local.lookup(host, path) {
            Some(local) if !more_specific(remote.url, local.url) => Plan::Local,
            _ => Plan::Remote(remote.url.clone()),
        }
    }

    /// Where a public request for `host` goes first. A WebSocket upgrade
    /// is routed like any request (the cluster carries it as a streamed
    /// request, see [`Forwarding`](super::Forwarding)); a request whose
    /// path does not normalize is left to the local machine, which
    /// refuses it.
    pub fn choose(&self, host: &str, head: &RequestHead) -> Choice {
        let Ok(path) = crate::forward::normalize_path(&head.path) else {
            return Choice::Local { fallback: false };
        };
        match self.plan(host, &path) {
            Plan::Remote(url) => Choice::Remote(url),
            Plan::Local => Choice::Local { fallback: true },
        }
    }

    /// The most specific route another node serves for the request, if
    /// any: where to send it when this gateway has no receiver for it.
    pub fn remote_route(&self, host: &str, path: &str) -> Option<&ServiceUrl> {
        self.remote.lookup(host, path).map(|m| m.url)
    }

    /// The routes other nodes serve, with how many nodes serve each.
    pub fn remote_routes(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = self
            .remote
            .routes()
            .map(|(url, nodes)| (url.to_string(), nodes.len()))
            .collect();
        v.sort();
        v
    }

    fn forget(&mut self, name: &str) {
        if let Some(id) = self.ids.remove(name) {
            self.nodes.remove(&id);
            self.remote.remove_link(id);
        }
    }
}

/// Whether route `a` beats route `b` for a request both match: a named host
/// beats the wildcard host, then more path segments win.
fn more_specific(a: &ServiceUrl, b: &ServiceUrl) -> bool {
    match (a.is_wildcard(), b.is_wildcard()) {
        (false, true) => true,
        (true, false) => false,
        _ => a.segments().len() > b.segments().len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ServiceUrl {
        s.parse().unwrap()
    }

    fn ann(node: &str, services: &[&str]) -> Announcement {
        Announcement::new(node, services.iter().map(|s| url(s)).collect())
    }

    #[test]
    fn websocket_upgrades_are_routed_like_any_request() {
        let t = Instant::now();
        let mut b = RouteBook::new("me", Duration::from_secs(3));
        b.handle_announcement(t, ann("other", &["ws.com"]));
        let mut head = RequestHead::new("GET", "/chat")
            .with_header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        crate::passthrough::mark_upgrade(&mut head.headers);
        assert!(crate::passthrough::is_upgrade(&head));
        assert_eq!(b.choose("ws.com", &head), Choice::Remote(url("ws.com")));
        b.set_local(vec![url("ws.com")]);
        assert_eq!(b.choose("ws.com", &head), Choice::Local { fallback: true });
    }

    #[test]
    fn local_wins_ties_and_shorter_remote_routes() {
        let t = Instant::now();
        let mut b = RouteBook::new("me", Duration::from_secs(3));
        b.set_local(vec![url("a.com/x")]);
        b.handle_announcement(t, ann("other", &["a.com/x", "a.com", "*/deep/er"]));
        assert_eq!(b.plan("a.com", "/x/1"), Plan::Local);
        assert_eq!(b.plan("a.com", "/y"), Plan::Remote(url("a.com")));
        // A named host beats a longer wildcard route, either side.
        assert_eq!(b.plan("a.com", "/deep/er"), Plan::Remote(url("a.com")));
        assert_eq!(
            b.plan("b.com", "/deep/er/z"),
            Plan::Remote(url("*/deep/er"))
        );
        assert_eq!(b.plan("b.com", "/"), Plan::Local);
        assert_eq!(b.remote_route("a.com", "/x"), Some(&url("a.com/x")));
    }

    #[test]
    fn own_echo_is_ignored() {
        let t = Instant::now();
        let mut b = RouteBook::new("me", Duration::from_secs(3));
        b.handle_announcement(t, ann("me", &["a.com"]));
        assert_eq!(b.plan("a.com", "/"), Plan::Local);
        assert!(b.nodes().is_empty());
    }

    #[test]
    fn announcements_replace_and_refresh() {
        let t = Instant::now();
        let s = Duration::from_secs(1);
        let mut b = RouteBook::new("me", 3 * s);
        b.handle_announcement(t, ann("n1", &["a.com/old"]));
        b.handle_announcement(t + s, ann("n1", &["a.com/new"]));
        assert_eq!(b.remote_route("a.com", "/old"), None);
        assert_eq!(b.remote_route("a.com", "/new"), Some(&url("a.com/new")));
        // Refreshed at t+1s, so still alive at t+3.5s and gone at t+4s.
        assert_eq!(b.poll_timeout(), Some(t + 4 * s));
        assert!(b.handle_timeout(t + 3 * s + s / 2).is_empty());
        assert_eq!(b.handle_timeout(t + 4 * s), vec!["n1".to_owned()]);
        assert_eq!(b.remote_route("a.com", "/new"), None);
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn empty_announcement_withdraws_and_nodes_share_routes() {
        let t = Instant::now();
        let mut b = RouteBook::new("me", Duration::from_secs(3));
        b.handle_announcement(t, ann("n1", &["a.com"]));
        b.handle_announcement(t, ann("n2", &["a.com"]));
        assert_eq!(b.remote_routes(), vec![("a.com".to_owned(), 2)]);
        assert_eq!(b.nodes(), ["n1", "n2"]);
        b.handle_announcement(t, ann("n1", &[]));
        assert!(!b.is_alive("n1") && b.is_alive("n2"));
        assert!(b.has_left("n1") && !b.has_left("n2"));
        assert_eq!(b.remote_routes(), vec![("a.com".to_owned(), 1)]);
        b.handle_announcement(t, ann("n2", &[]));
        assert!(b.remote_routes().is_empty());
        assert_eq!(b.plan("a.com", "/"), Plan::Local);
    }
}
