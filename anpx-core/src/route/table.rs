//! The route table: service URL prefixes to the links that serve them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

use super::ServiceUrl;

/// The outcome of [`RouteTable::lookup`]: the route that matched and the
/// links registered for it (never empty), in the order they were inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch<'a, L> {
    /// The service URL of the matching route.
    pub url: &'a ServiceUrl,
    /// The links serving it; choosing among them is the caller's policy.
    pub links: &'a [L],
}

/// Maps service URLs to the links (connections, receivers) that serve them,
/// and finds the route for a request by host and longest path-segment prefix.
///
/// `L` is a small copyable link id. Each host has a trie of path segments,
/// and the wildcard host `*` has one more, so a lookup costs one hash probe
/// per path segment whatever the number of routes, and allocates nothing
/// unless the request host has upper-case letters.
///
/// Matching rules:
/// - the host is compared case-insensitively, ignoring a `:port` suffix and
///   a trailing `.`;
/// - the path is split on `/`, empty segments are ignored and so is
///   anything from the first `?` or `#`;
/// - segments match whole and byte for byte (`/api` does not match `/apix`;
///   no percent-decoding, no dot-segment resolution);
/// - the longest matching prefix wins;
/// - if the request host has any matching route, it wins over every
///   wildcard route; otherwise the wildcard routes are searched.
///
/// ```
/// use anpx_core::{RouteTable, ServiceUrl};
///
/// let mut table = RouteTable::new();
/// let api: ServiceUrl = "api.agent.com/anpproxy1".parse().unwrap();
/// let any: ServiceUrl = "*".parse().unwrap();
/// table.insert(&api, 1u64);
/// table.insert(&api, 2u64);
/// table.insert(&any, 3u64);
///
/// let hit = table.lookup("API.agent.com:443", "/anpproxy1/chat?stream=1").unwrap();
/// assert_eq!(hit.url, &api);
/// assert_eq!(hit.links, [1, 2]);
///
/// // No route of this host matches, so the wildcard host does.
/// assert_eq!(table.lookup("api.agent.com", "/other").unwrap().links, [3]);
///
/// assert_eq!(table.remove_link(3), 1);
/// assert!(table.lookup("api.agent.com", "/other").is_none());
/// ```
#[derive(Debug, Clone)]
pub struct RouteTable<L> {
    hosts: HashMap<Box<str>, Node>,
    wildcard: Option<Node>,
    /// Every route with at least one link. Trie nodes refer to it by index,
    /// so that `routes()` and `len()` need no walk of the tries.
    routes: Vec<Route<L>>,
    /// Reverse index so that dropping a link costs only its own routes.
    by_link: HashMap<L, Vec<ServiceUrl>>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    /// Index into `RouteTable::routes`; `Some` only while that route has a link.
    route: Option<usize>,
}

#[derive(Debug, Clone)]
struct Route<L> {
    url: ServiceUrl,
    links: Vec<L>,
}

impl<L> Default for RouteTable<L> {
    fn default() -> Self {
        RouteTable {
            hosts: HashMap::new(),
            wildcard: None,
            routes: Vec::new(),
            by_link: HashMap::new(),
        }
    }
}

impl<L: Copy + Eq + Hash + Debug> RouteTable<L> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `link` as serving `url`. Returns `false` (and changes
    /// nothing) if it already was.
    pub fn insert(&mut self, url: &ServiceUrl, link: L) -> bool {
        let mut node = match url.host() {
            Some(host) => self.hosts.entry(Box::from(host)).or_default(),
            None => self.wildcard.get_or_insert_with(Node::default),
        };
        for seg in url.segments() {
            node = node.children.entry(Box::from(seg.as_str())).or_default();
        }
        let idx = match node.route {
            Some(idx) => idx,
            None => {
                self.routes.push(Route {
                    url: url.clone(),
                    links: Vec::new(),
                });
                let idx = self.routes.len() - 1;
                node.route = Some(idx);
                idx
            }
        };
        let links = &mut self.routes[idx].links;
        if links.contains(&link) {
            return false;
        }
        links.push(link);
        self.by_link.entry(link).or_default().push(url.clone());
        true
    }

    /// Unregisters `link` from `url`. Returns whether it was registered.
    pub fn remove(&mut self, url: &ServiceUrl, link: L) -> bool {
        if !self.detach(url, link) {
            return false;
        }
        if let Some(urls) = self.by_link.get_mut(&link) {
            if let Some(pos) = urls.iter().position(|u| u == url) {
                urls.remove(pos);
            }
            if urls.is_empty() {
                self.by_link.remove(&link);
            }
        }
        true
    }

    /// Unregisters `link` from every route, as when its connection closes.
    /// Returns the number of routes it was removed from.
    pub fn remove_link(&mut self, link: L) -> usize {
        let Some(urls) = self.by_link.remove(&link) else {
            return 0;
        };
        for url in &urls {
            self.detach(url, link);
        }
        urls.len()
    }

    /// Finds the route for a request to `host` (a `Host` header value or
    /// URL authority) and `path` (a request target path, query allowed).
    pub fn lookup(&self, host: &str, path: &str) -> Option<RouteMatch<'_, L>> {
        let host = lookup_host(host);
        let idx = self
            .hosts
            .get(host.as_ref())
            .and_then(|root| deepest_route(root, path))
            .or_else(|| {
                self.wildcard
                    .as_ref()
                    .and_then(|root| deepest_route(root, path))
            })?;
        let route = self.routes.get(idx)?;
        Some(RouteMatch {
            url: &route.url,
            links: &route.links,
        })
    }

    /// Every route with its links, for statistics. The order is unspecified.
    pub fn routes(&self) -> impl Iterator<Item = (&ServiceUrl, &[L])> {
        self.routes.iter().map(|r| (&r.url, r.links.as_slice()))
    }

    /// The service URLs `link` is registered for, in the order they were
    /// inserted.
    pub fn links_of(&self, link: L) -> impl Iterator<Item = &ServiceUrl> {
        self.by_link.get(&link).into_iter().flatten()
    }

    /// Number of distinct service URLs that have at least one link.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether no service URL has a link.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Number of trie nodes held, host roots included; zero when empty, which
    /// is how tests check that removal leaks nothing.
    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        fn count(node: &Node) -> usize {
            1 + node.children.values().map(count).sum::<usize>()
        }
        self.hosts
            .values()
            .chain(self.wildcard.as_ref())
            .map(count)
            .sum()
    }

    fn root(&self, url: &ServiceUrl) -> Option<&Node> {
        match url.host() {
            Some(host) => self.hosts.get(host),
            None => self.wildcard.as_ref(),
        }
    }

    fn route_index(&self, url: &ServiceUrl) -> Option<usize> {
        let mut node = self.root(url)?;
        for seg in url.segments() {
            node = node.children.get(seg.as_str())?;
        }
        node.route
    }

    /// Removes `link` from the route of `url` in the trie side only (not
    /// `by_link`), dropping the route once it has no link left.
    fn detach(&mut self, url: &ServiceUrl, link: L) -> bool {
        let Some(idx) = self.route_index(url) else {
            return false;
        };
        let links = &mut self.routes[idx].links;
        let Some(pos) = links.iter().position(|l| *l == link) else {
            return false;
        };
        // `remove`, not `swap_remove`: callers may rely on insertion order
        // (for example to prefer the longest-connected link).
        links.remove(pos);
        if links.is_empty() {
            self.drop_route(idx);
        }
        true
    }

    fn drop_route(&mut self, idx: usize) {
        let route = self.routes.swap_remove(idx);
        if let Some(moved) = self.routes.get(idx) {
            let moved_url = moved.url.clone();
            if let Some(node) = self.node_mut(&moved_url) {
                node.route = Some(idx);
            }
        }
        let segs = route.url.segments();
        match route.url.host() {
            Some(host) => {
                if let Some(root) = self.hosts.get_mut(host) {
                    if clear_and_prune(root, segs) {
                        self.hosts.remove(host);
                    }
                }
            }
            None => {
                if let Some(root) = self.wildcard.as_mut() {
                    if clear_and_prune(root, segs) {
                        self.wildcard = None;
                    }
                }
            }
        }
    }

    fn node_mut(&mut self, url: &ServiceUrl) -> Option<&mut Node> {
        let mut node = match url.host() {
            Some(host) => self.hosts.get_mut(host)?,
            None => self.wildcard.as_mut()?,
        };
        for seg in url.segments() {
            node = node.children.get_mut(seg.as_str())?;
        }
        Some(node)
    }
}

/// Clears the route at the end of `segs` below `node` and removes the nodes
/// left with neither a route nor children. Returns whether `node` itself is
/// now empty. Recursion depth is bounded by the segment count, which
/// `ServiceUrl` parsing bounds.
fn clear_and_prune(node: &mut Node, segs: &[String]) -> bool {
    match segs.split_first() {
        None => node.route = None,
        Some((first, rest)) => {
            if let Some(child) = node.children.get_mut(first.as_str()) {
                if clear_and_prune(child, rest) {
                    node.children.remove(first.as_str());
                }
            }
        }
    }
    node.route.is_none() && node.children.is_empty()
}

/// The route of the longest prefix of `path` under `root`.
fn deepest_route(root: &Node, path: &str) -> Option<usize> {
    let path = match path.find(['?', '#']) {
        Some(end) => &path[..end],
        None => path,
    };
    let mut node = root;
    let mut best = root.route;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        match node.children.get(seg) {
            Some(child) => {
                node = child;
                best = child.route.or(best);
            }
            None => break,
        }
    }
    best
}

/// The table key for a request host: without `:port` or a trailing `.`, and
/// lower-cased, allocating only when there is an upper-case letter.
fn lookup_host(host: &str) -> Cow<'_, str> {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn url(s: &str) -> ServiceUrl {
        s.parse().unwrap()
    }

    fn hit(t: &RouteTable<u32>, host: &str, path: &str) -> Option<(String, Vec<u32>)> {
        t.lookup(host, path)
            .map(|m| (m.url.to_string(), m.links.to_vec()))
    }

    fn some(u: &str, links: &[u32]) -> Option<(String, Vec<u32>)> {
        Some((u.to_owned(), links.to_vec()))
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::new();
        t.insert(&url("h"), 1);
        t.insert(&url("h/a"), 2);
        t.insert(&url("h/a/b/c"), 3);
        assert_eq!(hit(&t, "h", "/"), some("h", &[1]));
        assert_eq!(hit(&t, "h", ""), some("h", &[1]));
        assert_eq!(hit(&t, "h", "/x"), some("h", &[1]));
        assert_eq!(hit(&t, "h", "/a"), some("h/a", &[2]));
        assert_eq!(
            hit(&t, "h", "/a/b"),
            some("h/a", &[2]),
            "h/a/b has no route of its own"
        );
        assert_eq!(hit(&t, "h", "/a/b/c"), some("h/a/b/c", &[3]));
        assert_eq!(hit(&t, "h", "/a/b/c/d/e"), some("h/a/b/c", &[3]));
        assert_eq!(hit(&t, "h", "/a/b/x/c"), some("h/a", &[2]));
    }

    #[test]
    fn whole_segments_only() {
        let mut t = RouteTable::new();
        t.insert(&url("h/api"), 1);
        assert_eq!(hit(&t, "h", "/api"), some("h/api", &[1]));
        assert_eq!(hit(&t, "h", "/api/v1"), some("h/api", &[1]));
        assert_eq!(hit(&t, "h", "/apix"), None);
        assert_eq!(hit(&t, "h", "/ap"), None);
        assert_eq!(hit(&t, "h", "/API"), None, "paths are case-sensitive");
        assert_eq!(hit(&t, "h", "/x/api"), None);
    }

    #[test]
    fn slashes_query_and_fragment() {
        let mut t = RouteTable::new();
        t.insert(&url("h/a/b/"), 1);
        for path in [
            "/a/b",
            "/a/b/",
            "a/b",
            "//a//b//",
            "/a/b?x=/c",
            "/a/b/?",
            "/a/b#f",
            "/a/b/c?q",
        ] {
            assert_eq!(hit(&t, "h", path), some("h/a/b", &[1]), "{path}");
        }
        assert_eq!(hit(&t, "h", "/a?/b"), None);
        assert_eq!(hit(&t, "h", "/a#/b"), None);
    }

    #[test]
    fn host_specific_beats_wildcard() {
        let mut t = RouteTable::new();
        t.insert(&url("*/tools/deep/er"), 9);
        t.insert(&url("*"), 8);
        t.insert(&url("h/tools"), 1);
        // Exact-host match wins even though the wildcard one is longer.
        assert_eq!(hit(&t, "h", "/tools/deep/er/x"), some("h/tools", &[1]));
        // No exact-host route matches this path: the wildcard trie decides.
        assert_eq!(hit(&t, "h", "/other"), some("*", &[8]));
        assert_eq!(
            hit(&t, "other.com", "/tools/deep/er"),
            some("*/tools/deep/er", &[9])
        );
        assert_eq!(hit(&t, "other.com", "/tools/deep"), some("*", &[8]));
        t.remove(&url("*"), 8);
        assert_eq!(hit(&t, "h", "/other"), None);
        assert_eq!(hit(&t, "", "/tools/deep/er"), some("*/tools/deep/er", &[9]));
    }

    #[test]
    fn lookup_host_ignores_case_port_and_trailing_dot() {
        let mut t = RouteTable::new();
        t.insert(&url("API.agent.com:9000/x"), 1);
        for host in [
            "api.agent.com",
            "API.AGENT.COM",
            "api.agent.com:8080",
            "Api.Agent.Com:443",
            "api.agent.com.",
            "api.agent.com.:80",
        ] {
            assert_eq!(hit(&t, host, "/x"), some("api.agent.com/x", &[1]), "{host}");
        }
        for host in [
            "api.agent.co",
            "x.api.agent.com",
            "api.agent.com:80x",
            "",
            ":80",
            "[::1]:80",
        ] {
            assert_eq!(hit(&t, host, "/x"), None, "{host}");
        }
    }

    #[test]
    fn several_links_per_route_in_insertion_order() {
        let mut t = RouteTable::new();
        let u = url("h/a");
        assert!(t.insert(&u, 3));
        assert!(t.insert(&u, 1));
        assert!(!t.insert(&u, 3), "idempotent");
        assert!(t.insert(&u, 2));
        assert_eq!(hit(&t, "h", "/a"), some("h/a", &[3, 1, 2]));
        assert_eq!(t.len(), 1);
        assert!(t.remove(&u, 1));
        assert!(!t.remove(&u, 1));
        assert_eq!(hit(&t, "h", "/a"), some("h/a", &[3, 2]));
        assert_eq!(t.links_of(3).collect::<Vec<_>>(), [&u]);
        assert_eq!(t.links_of(1).count(), 0);
    }

    #[test]
    fn remove_link_drops_all_its_routes_and_prunes() {
        let mut t = RouteTable::new();
        let mine = ["a.com/x/y", "a.com/x/y/z", "b.com", "*/w", "*"];
        for u in mine {
            t.insert(&url(u), 7);
        }
        t.insert(&url("a.com/x"), 8);
        t.insert(&url("b.com"), 8);
        assert_eq!(t.len(), 6);
        assert_eq!(
            t.links_of(7).map(|u| u.to_string()).collect::<Vec<_>>(),
            mine
        );
        let nodes_before = t.node_count();

        assert_eq!(t.remove_link(7), 5);
        assert_eq!(t.remove_link(7), 0);
        assert_eq!(t.len(), 2);
        assert!(t.node_count() < nodes_before);
        // a.com root + x; b.com root; the wildcard trie is gone.
        assert_eq!(t.node_count(), 3);
        assert_eq!(hit(&t, "a.com", "/x/y/z"), some("a.com/x", &[8]));
        assert_eq!(hit(&t, "b.com", "/"), some("b.com", &[8]));
        assert_eq!(hit(&t, "c.com", "/w"), None);

        assert_eq!(t.remove_link(8), 2);
        assert!(t.is_empty());
        assert_eq!(t.node_count(), 0);
        assert_eq!(t.routes().count(), 0);
    }

    #[test]
    fn removing_a_parent_keeps_the_child_and_vice_versa() {
        let mut t = RouteTable::new();
        t.insert(&url("h/a"), 1);
        t.insert(&url("h/a/b/c"), 2);
        assert_eq!(t.node_count(), 4);
        assert!(t.remove(&url("h/a"), 1));
        assert_eq!(t.node_count(), 4, "h/a is still on the way to h/a/b/c");
        assert_eq!(hit(&t, "h", "/a/b/c/d"), some("h/a/b/c", &[2]));
        assert_eq!(hit(&t, "h", "/a/b"), None);
        t.insert(&url("h/a"), 1);
        assert!(t.remove(&url("h/a/b/c"), 2));
        assert_eq!(t.node_count(), 2, "b and c pruned");
        assert!(!t.remove(&url("h/a/b"), 1), "no such route");
        assert!(!t.remove(&url("h/a"), 2), "not a link of that route");
        assert!(t.remove(&url("h/a"), 1));
        assert_eq!(t.node_count(), 0);
    }

    #[test]
    fn routes_lists_each_route_once() {
        let mut t = RouteTable::new();
        t.insert(&url("h/a"), 1);
        t.insert(&url("h/a"), 2);
        t.insert(&url("*"), 1);
        let mut all: Vec<_> = t
            .routes()
            .map(|(u, l)| (u.to_string(), l.to_vec()))
            .collect();
        all.sort();
        assert_eq!(
            all,
            [("*".to_owned(), vec![1]), ("h/a".to_owned(), vec![1, 2])]
        );
    }

    /// The same table as a flat list, matched by scanning every route.
    #[derive(Default)]
    struct Naive {
        routes: Vec<(ServiceUrl, Vec<u32>)>,
    }

    impl Naive {
        fn insert(&mut self, u: &ServiceUrl, l: u32) {
            match self.routes.iter_mut().find(|(r, _)| r == u) {
                Some((_, links)) if links.contains(&l) => {}
                Some((_, links)) => links.push(l),
                None => self.routes.push((u.clone(), vec![l])),
            }
        }

        fn remove(&mut self, u: &ServiceUrl, l: u32) {
            for (r, links) in &mut self.routes {
                if r == u {
                    links.retain(|x| *x != l);
                }
            }
            self.routes.retain(|(_, links)| !links.is_empty());
        }

        fn remove_link(&mut self, l: u32) {
            for (_, links) in &mut self.routes {
                links.retain(|x| *x != l);
            }
            self.routes.retain(|(_, links)| !links.is_empty());
        }

        fn lookup(&self, host: &str, path: &str) -> Option<(String, Vec<u32>)> {
            let host = host
                .split(':')
                .next()
                .unwrap()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let path = path.split(['?', '#']).next().unwrap();
            let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let best = |want: Option<&str>| {
                self.routes
                    .iter()
                    .filter(|(r, _)| r.host() == want)
                    .filter(|(r, _)| {
                        r.segments().len() <= segs.len()
                            && r.segments().iter().zip(&segs).all(|(a, b)| a == b)
                    })
                    .max_by_key(|(r, _)| r.segments().len())
                    .map(|(r, links)| (r.to_string(), links.clone()))
            };
            best(Some(&host)).or_else(|| best(None))
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(ServiceUrl, u32),
        Remove(ServiceUrl, u32),
        RemoveLink(u32),
    }

    const SEGS: [&str; 4] = ["x", "y", "xy", "Z"];

    fn arb_url() -> impl Strategy<Value = ServiceUrl> {
        let host = prop::sample::select(vec!["a.com", "B.com", "c.org", "*"]);
        let segs = prop::collection::vec(prop::sample::select(SEGS.to_vec()), 0..4);
        (host, segs).prop_map(|(h, s)| format!("{h}/{}", s.join("/")).parse().unwrap())
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (arb_url(), 0u32..5).prop_map(|(u, l)| Op::Insert(u, l)),
            2 => (arb_url(), 0u32..5).prop_map(|(u, l)| Op::Remove(u, l)),
            1 => (0u32..5).prop_map(Op::RemoveLink),
        ]
    }

    fn arb_request() -> impl Strategy<Value = (String, String)> {
        let host = prop::sample::select(vec![
            "a.com",
            "A.COM:8080",
            "b.com",
            "c.org.",
            "C.org:1",
            "d.net",
            "",
        ]);
        let seg = prop::sample::select(vec!["x", "y", "xy", "Z", "z", ""]);
        let segs = prop::collection::vec(seg, 0..6);
        let tail = prop::sample::select(vec!["", "/", "?q=x/y", "/?", "#x/y"]);
        (host, segs, tail).prop_map(|(h, s, t)| (h.to_owned(), format!("/{}{t}", s.join("/"))))
    }

    proptest! {
        #[test]
        fn lookup_matches_naive_reference(
            ops in prop::collection::vec(arb_op(), 0..40),
            requests in prop::collection::vec(arb_request(), 1..20),
        ) {
            let mut table = RouteTable::new();
            let mut naive = Naive::default();
            for op in &ops {
                match op {
                    Op::Insert(u, l) => { table.insert(u, *l); naive.insert(u, *l); }
                    Op::Remove(u, l) => { table.remove(u, *l); naive.remove(u, *l); }
                    Op::RemoveLink(l) => { table.remove_link(*l); naive.remove_link(*l); }
                }
            }
            prop_assert_eq!(table.len(), naive.routes.len());
            for (host, path) in &requests {
                prop_assert_eq!(hit(&table, host, path), naive.lookup(host, path), "{} {}", host, path);
            }
            for l in 0..5 {
                let mut got: Vec<_> = table.links_of(l).cloned().collect();
                let mut want: Vec<_> = naive.routes.iter().filter(|(_, ls)| ls.contains(&l)).map(|(u, _)| u.clone()).collect();
                got.sort_by_key(|u| u.to_string());
                want.sort_by_key(|u| u.to_string());
                prop_assert_eq!(got, want);
            }
            for l in 0..5 {
                table.remove_link(l);
            }
            prop_assert!(table.is_empty());
            prop_assert_eq!(table.node_count(), 0);
        }
    }
}
