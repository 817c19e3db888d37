//! What a seed sets up: gateway and receiver settings, who serves what,
//! link latencies, and how often clients and faults act.

use std::net::IpAddr;
use std::time::Duration;

use anpx_core::chunk::ReassemblyLimits;
use anpx_core::handshake::FetchLimits;
use anpx_core::ReceiverConfig;
use anpx_core::{Feature, Features};
use anpx_core::{GatewayConfig, Identity};

use super::network::Latency;

/// Service URLs receivers may be granted. Some overlap, some are spelled
/// differently but name the same route, two are wildcards.
const GRANTS: &[&str] = &[
    "api.agent.com/svc",
    "API.Agent.com:8443/svc/",
    "api.agent.com/svc/a",
    "api.agent.com",
    "https://other.example/agents",
    "other.example/agents/travel",
    "*/tools",
    "*",
    "*/svc",
];

/// Hosts clients ask for, in the spellings clients use.
pub const HOSTS: &[&str] = &[
    "api.agent.com",
    "API.Agent.COM:443",
    "api.agent.com.",
    "other.example",
    "tools.example",
    "nowhere.example",
];

/// Paths clients ask for, each with the one spelling the gateway must
/// route and forward it as (`None`: refused with 400). Written out by hand
/// from the documented rules rather than computed by the same code.
pub const PATHS: &[(&str, Option<&str>)] = &[
    ("/", Some("/")),
    ("/svc", Some("/svc")),
    ("/svc/a", Some("/svc/a")),
    ("/svc/a/b", Some("/svc/a/b")),
    ("/svc/ab", Some("/svc/ab")),
    ("/svcx", Some("/svcx")),
    ("//svc//a/", Some("/svc/a/")),
    ("/tools/run", Some("/tools/run")),
    ("/agents/travel/42", Some("/agents/travel/42")),
    ("/agents", Some("/agents")),
    ("/other", Some("/other")),
    ("/svc/./a/x/../b", Some("/svc/a/b")),
    ("/%73vc/%61", Some("/svc/a")),
    ("/svc/a%2fb", None),
    ("/svc/../../etc", None),
];

/// Hosts DID documents are fetched from.
const DOCUMENT_HOSTS: &[&str] = &["docs-a.example", "docs-b.example"];

/// Addresses receivers connect from.
const PEERS: &[&str] = &["192.0.2.1", "192.0.2.2", "198.51.100.7"];

const CHUNK_SIZES: &[usize] = &[1500, 4096, 16 * 1024, 64 * 1024];

/// One receiver process: what it serves and how it is set up. It keeps
/// these across reconnections.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub grants: Vec<String>,
    pub features: Features,
    pub identity: Identity,
    pub config: ReceiverConfig,
    pub latency: Latency,
    /// The address it connects from; nodes may share one, so the
    /// per-address handshake cap can bite.
    pub peer: IpAddr,
    /// Where its DID document is fetched from (DID identities only); nodes
    /// may share a host, so the per-host fetch cap can bite.
    pub document_host: &'static str,
}

/// How the gateway's receiver admissions are set up and how the scripted
/// verifier behind them behaves; chances per thousand handshakes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Handshakes {
    /// Handshakes in progress at once (`max_pending_handshakes`).
    pub max_pending: usize,
    /// Connections per address (`max_receivers_per_ip`).
    pub per_ip: usize,
    /// Connections in all, handshakes included (`max_receivers`).
    pub total: usize,
    /// The verifier refuses the login (401).
    pub auth_refused: u32,
    /// The verifier grants something else than what was declared (403).
    pub granted_elsewhere: u32,
    /// The handshake offers a bad header value (bad services: 400; bad
    /// features: plain v1; no WebSocket key: 400).
    pub bad_offer: u32,
    /// The handshake goes away while the verifier works.
    pub abandoned: u32,
    /// The verifier takes seconds rather than milliseconds, holding its
    /// slot meanwhile.
    pub slow: u32,
    /// The gateway's DID document fetch limits.
    pub fetch_limits: FetchLimits,
    /// A document fetch fails (a bad status).
    pub fetch_failed: u32,
    /// A document fetch never answers: the shell gives up at its deadline.
    pub fetch_silent: u32,
}

/// Chances per thousand, per step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    /// A connection is closed (both sides learn at once).
    pub disconnect: u32,
    /// A receiver process stalls for a while.
    pub freeze: u32,
    /// A connection silently stops carrying messages.
    pub cut: u32,
    /// A client gives up on one of its requests.
    pub cancel: u32,
    /// Time jumps past the request timeout.
    pub jump: u32,
    /// A shell calls the gateway for a connection it already closed, as a
    /// racing socket task would.
    pub stale_call: u32,
}

/// Everything a seed decides before the first step.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub steps: usize,
    pub gateway: GatewayConfig,
    pub nodes: Vec<NodeSpec>,
    pub rates: Rates,
    /// Most requests a step starts.
    pub max_new_per_step: usize,
    pub handshakes: Handshakes,
}

impl Scenario {
    pub fn generate(rng: &mut fastrand::Rng) -> Scenario {
        let ms = Duration::from_millis;
        let gateway = GatewayConfig {
            request_timeout: ms(rng.u64(500..=8_000)),
            max_inflight_per_link: pick(rng, &[1, 2, 3, 4, 6, 16, 100]),
            max_inflight_percent_per_client: pick(rng, &[100, 50, 34, 10]),
            ping_interval: ms(rng.u64(2_000..=15_000)),
            chunk_size: pick(rng, CHUNK_SIZES),
            reassembly: ReassemblyLimits {
                max_message_size: message_limit(rng),
                ..ReassemblyLimits::default()
            },
            ..GatewayConfig::default()
        };
        let nodes = (0..rng.usize(1..=4)).map(|i| node(rng, i)).collect();
        let rates = if rng.u32(..100) < 20 {
            // Calm seeds: nothing breaks, so long exchanges run to the end.
            Rates {
                cancel: rng.u32(..=50),
                ..Rates::default()
            }
        } else {
            Rates {
                disconnect: rng.u32(..=30),
                freeze: rng.u32(..=30),
                cut: rng.u32(..=15),
                cancel: rng.u32(..=150),
                jump: rng.u32(..=60),
                stale_call: rng.u32(..=40),
            }
        };
        let steps = rng.usize(5..=20);
        let max_new_per_step = rng.usize(1..=2);
        let mut nodes: Vec<NodeSpec> = nodes;
        for node in &mut nodes {
            node.peer = pick(rng, PEERS).parse().expect("a peer address");
            node.document_host = pick(rng, DOCUMENT_HOSTS);
        }
        let handshakes = if rng.u32(..100) < 30 {
            // Roomy: every handshake gets a slot and a yes.
            Handshakes {
                max_pending: 256,
                per_ip: 64,
                total: 4096,
                fetch_limits: FetchLimits::default(),
                ..Handshakes::default()
            }
        } else {
            Handshakes {
                max_pending: pick(rng, &[1, 2, 3, 256]),
                per_ip: pick(rng, &[1, 2, 4, 64]),
                auth_refused: rng.u32(..=150),
                granted_elsewhere: rng.u32(..=60),
                bad_offer: rng.u32(..=100),
                abandoned: rng.u32(..=60),
                slow: rng.u32(..=300),
                fetch_limits: {
                    let max_in_flight = pick(rng, &[1, 2, 64]);
                    FetchLimits {
                        max_in_flight,
                        per_host: pick(rng, &[1, 2, 4]).min(max_in_flight),
                        failed_host_memory: ms(rng.u64(500..=10_000)),
                    }
                },
                fetch_failed: rng.u32(..=150),
                fetch_silent: rng.u32(..=80),
                total: pick(rng, &[2, 3, 5, 4096]),
            }
        };
        Scenario {
            steps,
            gateway,
            nodes,
            rates,
            max_new_per_step,
            handshakes,
        }
    }
}

fn node(rng: &mut fastrand::Rng, index: usize) -> NodeSpec {
    let ms = Duration::from_millis;
    let mut grants: Vec<String> = (0..rng.usize(1..=3))
        .map(|_| pick(rng, GRANTS).to_owned())
        .collect();
    grants.sort();
    grants.dedup();
    let mut features = if rng.bool() {
        Features::from(Feature::Streaming)
    } else {
        Features::empty()
    };
    if rng.bool() {
        // Credit windows: every body crosses under the peer's credit.
        features.insert(Feature::FlowControl);
    }
    let identity = if rng.bool() {
        Identity::Anonymous
    } else {
        Identity::Did(format!("did:wba:sim.example:agents:n{index}"))
    };
    let config = ReceiverConfig {
        ping_interval: ms(rng.u64(2_000..=15_000)),
        chunk_size: pick(rng, CHUNK_SIZES),
        // Streamed responses in frames of `chunk_size` too, so the small
        // sizes above keep exercising many-chunk streams.
        streaming_chunk_size: 0,
        max_buffered_response: pick(rng, &[64 << 20, 64 << 20, 150_000, 30_000]),
        reassembly: ReassemblyLimits {
            stale_after: ms(rng.u64(1_000..=15_000)),
            max_message_size: message_limit(rng),
            ..ReassemblyLimits::default()
        },
        ..ReceiverConfig::default()
    };
    let latency = Latency {
        base: ms(rng.u64(..=40)),
        jitter: ms(rng.u64(..=30)),
        stall_per_mille: rng.u32(..=10),
        stall_max: ms(rng.u64(..=3_000)),
    };
    NodeSpec {
        grants,
        features,
        identity,
        config,
        latency,
        peer: IpAddr::from([192, 0, 2, 1]),
        document_host: DOCUMENT_HOSTS[0],
    }
}

/// Mostly the default; sometimes small enough for the largest bodies to
/// hit it.
fn message_limit(rng: &mut fastrand::Rng) -> u64 {
    if rng.u32(..100) < 15 {
        rng.u64(20_000..=150_000)
    } else {
        ReassemblyLimits::default().max_message_size
    }
}

pub fn pick<T: Copy>(rng: &mut fastrand::Rng, from: &[T]) -> T {
    from[rng.usize(..from.len())]
}
