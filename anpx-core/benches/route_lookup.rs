//! Route lookup cost against table size: it should stay flat, because a
//! lookup walks one trie path and never scans the routes.
//!
//! Each table mixes a shared host with one route per agent
//! (`api.agent.com/agents/<i>[/tools]`), many small hosts with nested
//! prefixes, and wildcard routes. Every size answers the same queries, which
//! cover hits at several depths, upper-case hosts with ports, misses that
//! fall back to the wildcard host, and query strings.

use anpx_core::{RouteTable, ServiceUrl};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SIZES: [usize; 3] = [10, 1_000, 100_000];

const NESTED: [&str; 6] = [
    "",
    "/anp",
    "/anp/v1",
    "/anp/v1/chat",
    "/mcp",
    "/mcp/tools/search",
];

const QUERIES: [(&str, &str); 8] = [
    ("api.agent.com", "/agents/3/tools/search?q=flights"),
    ("API.Agent.com:443", "/agents/1"),
    ("api.agent.com", "/agents/123456789/x"),
    ("a0.agents.example", "/anp/v1/chat/completions"),
    ("a0.agents.example:8443", "/mcp/tools/search/run/now"),
    ("a0.agents.example", "/unknown/deep/path/x/y/z"),
    ("nobody.example", "/.well-known/did.json"),
    ("nobody.example", "/"),
];

fn table(size: usize) -> RouteTable<u32> {
    let mut table = RouteTable::new();
    let add = |table: &mut RouteTable<u32>, url: String, link: u32| {
        if table.len() < size {
            table.insert(&url.parse::<ServiceUrl>().expect("bench URL"), link);
        }
    };
    add(&mut table, "*".to_owned(), 0);
    add(&mut table, "*/.well-known".to_owned(), 1);
    let mut i = 0u32;
    while table.len() < size {
        // Half go to the shared host, half to small hosts of six nested routes.
        add(&mut table, format!("api.agent.com/agents/{i}"), i);
        if i % 3 == 0 {
            add(&mut table, format!("api.agent.com/agents/{i}/tools"), i);
        }
        let host = i / NESTED.len() as u32;
        let prefix = NESTED[i as usize % NESTED.len()];
        add(&mut table, format!("a{host}.agents.example{prefix}"), i);
        i += 1;
    }
    table
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        let table = table(size);
        assert_eq!(table.len(), size);
        for (host, path) in QUERIES {
            assert!(table.lookup(host, path).is_some(), "{size}: {host}{path}");
        }
        group.bench_with_input(BenchmarkId::new("per_lookup", size), &table, |b, table| {
            let mut next = 0;
            b.iter(|| {
                let (host, path) = QUERIES[next % QUERIES.len()];
                next += 1;
                table
                    .lookup(black_box(host), black_box(path))
                    .map(|m| m.links.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
