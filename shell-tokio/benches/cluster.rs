//! A request forwarded to another gateway over NATS next to the same
//! request served by the gateway its receiver is connected to, in one run,
//! so the figures are ratios that hold on a shared machine.
//!
//! ```text
//! cargo bench -p shell-tokio --bench cluster -- [--seconds N]
//! ```
//!
//! Starts a throwaway NATS server of its own from the machine's
//! `nats-server` (`apt-get install nats-server`). Everything else runs in
//! this process on loopback: two gateways in one cluster, and one
//! receiver on the first, serving `/small` (40 bytes) and `/big` (1 MiB)
//! from an in-process handler. "local" cells send to the first gateway,
//! "forwarded" cells to the second, which carries each request over NATS to
//! the first. Servers and the load client have runtimes of their own, as in
//! `e2e_load`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anpx_core::cluster::Subjects;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use shell_tokio::cluster::ClusterOptions;
use shell_tokio::gateway::{Gateway, GatewayOptions};
use shell_tokio::receiver::{Receiver, ReceiverOptions, Status};
use shell_tokio::upstream::{ServiceUpstream, Upstream, UpstreamRequest};
use tokio::net::TcpStream;

/// The `anpx` binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SMALL_BODY: &[u8] = b"{\"ok\":true,\"from\":\"anpx-cluster-bench\"}\n";
const BIG_LEN: usize = 1 << 20;
const HOST: &str = "svc.bench";

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

fn main() {
    let seconds: f64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .expect("server runtime");
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("client runtime");
    let nats = anpx_test_servers::Nats::start().unwrap_or_else(|e| {
        panic!(
            "the cluster bench needs a NATS server: {e} (`{}`)",
            anpx_test_servers::INSTALL
        )
    });
    let (local, forwarded, _keep) = servers.block_on(start(nats.url()));
    println!(
        "anpx cluster bench: {seconds} s per cell, {} cores; p50/p99 latency per request, throughput over the cell",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<8} {:>5} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | {:>8} {:>8}",
        "body", "conns", "local p50", "p99", "req/s", "fwd p50", "p99", "req/s", "+p50", "tput"
    );
    let cells = [
        ("40 B", "/small", 1),
        ("40 B", "/small", 16),
        ("1 MiB", "/big", 1),
        ("1 MiB", "/big", 4),
    ];
    for (label, path, conns) in cells {
        // Alternated so drift of the machine's speed hits both alike.
        let l = client.block_on(run_cell(local, path, conns, seconds));
        let f = client.block_on(run_cell(forwarded, path, conns, seconds));
        let (lp50, fp50) = (l.hist.value_at_quantile(0.5), f.hist.value_at_quantile(0.5));
        println!(
            "{label:<8} {conns:>5} | {:>10} {:>10} {:>10.0} | {:>10} {:>10} {:>10.0} | {:>8} {:>7.2}x",
            us(lp50),
            us(l.hist.value_at_quantile(0.99)),
            l.rps(),
            us(fp50),
            us(f.hist.value_at_quantile(0.99)),
            f.rps(),
            us(fp50.saturating_sub(lp50)),
            f.rps() / l.rps().max(f64::MIN_POSITIVE),
        );
        if l.errors + f.errors > 0 {
            println!(
                "  errors: local {} forwarded {} (first: {:?})",
                l.errors,
                f.errors,
                l.first_error.or(f.first_error)
            );
        }
    }
}

fn us(ns: u64) -> String {
    format!("{:.0} µs", ns as f64 / 1e3)
}

/// What `/small` and `/big` answer.
async fn answer(path: String, big: Bytes) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match path.as_str() {
        "/big" => big,
        _ => Bytes::from_static(SMALL_BODY),
    };
    Ok(Response::new(Full::new(body)))
}

async fn start(nats_url: String) -> (SocketAddr, SocketAddr, (Gateway, Gateway, Receiver)) {
    let prefix = "anpxbench";
    let mut gateways = Vec::new();
    for node in ["bench-local", "bench-forwarding"] {
        let mut options = GatewayOptions::open("127.0.0.1:0".parse().expect("address"));
        options.core.max_inflight_per_link = 1000;
        options.drain_grace = Duration::ZERO;
        let mut gw = Gateway::bind(options).await.expect("gateway binds");
        let cluster = ClusterOptions {
            nats_url: nats_url.clone(),
            node_name: node.into(),
            subjects: Subjects::new(prefix).expect("prefix"),
            announce_interval: Duration::from_millis(200),
            route_ttl: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            websocket_idle_timeout: Duration::from_secs(300),
        };
        gw.join_cluster(cluster)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        gateways.push(gw);
    }
    let forwarding = gateways.pop().expect("two gateways");
    let local = gateways.pop().expect("two gateways");
    let big: Bytes = (0..BIG_LEN)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let upstream: Arc<dyn Upstream> = Arc::new(ServiceUpstream::new(tower::service_fn(
        move |req: UpstreamRequest| answer(req.uri().path().to_owned(), big.clone()),
    )));
    let mut options = ReceiverOptions::new(format!("ws://{}/ws", local.public_addr()), upstream);
    options.services = vec![HOST.parse().expect("service url")];
    let receiver = Receiver::spawn(options);
    match tokio::time::timeout(Duration::from_secs(10), receiver.wait_ready()).await {
        Ok(Status::Connected { .. }) => {}
        other => panic!("the receiver did not connect: {other:?}"),
    }
    // Wait until the forwarding gateway has heard the route.
    let (l, f) = (local.public_addr(), forwarding.public_addr());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = match connect(f).await {
            Ok(mut s) => one_request(&mut s, "/small").await.is_ok(),
            Err(_) => false,
        };
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the forwarding gateway never learned the route"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (l, f, (local, forwarding, receiver))
}

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn one_request(sender: &mut Sender, path: &str) -> Result<usize, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = Request::get(path)
        .header(header::HOST, HOST)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let mut body = response.into_body();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.map_err(|e| e.to_string())?.data_ref() {
            len += data.len();
        }
    }
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    Ok(len)
}

struct Cell {
    hist: Histogram<u64>,
    done: u64,
    elapsed: Duration,
    errors: u64,
    first_error: Option<String>,
}

impl Cell {
    fn rps(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }
}

/// `conns` connections sending back to back for `seconds`, after a
/// quarter-second warm-up.
async fn run_cell(addr: SocketAddr, path: &'static str, conns: usize, seconds: f64) -> Cell {
    let want = if path == "/big" {
        BIG_LEN
    } else {
        SMALL_BODY.len()
    };
    let measure_from = Instant::now() + Duration::from_millis(250);
    let until = measure_from + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            tokio::spawn(async move {
                let mut hist =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
                let (mut done, mut errors, mut first_error) = (0u64, 0u64, None);
                let mut sender = connect(addr).await.ok();
                while Instant::now() < until {
                    let Some(s) = sender.as_mut() else {
                        sender = connect(addr).await.ok();
                        errors += 1;
                        continue;
                    };
                    let started = Instant::now();
                    match one_request(s, path).await {
                        Ok(len) if len == want => {
                            if started >= measure_from {
                                hist.saturating_record(started.elapsed().as_nanos() as u64);
                                done += 1;
                            }
                        }
                        other => {
                            errors += 1;
                            first_error.get_or_insert(format!("{other:?}"));
                            sender = connect(addr).await.ok();
                        }
                    }
                }
                (hist, done, errors, first_error)
            })
        })
        .collect();
    let mut cell = Cell {
        hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram"),
        done: 0,
        elapsed: Duration::from_secs_f64(seconds),
        errors: 0,
        first_error: None,
    };
    for t in tasks {
        let (h, d, e, f) = t.await.expect("load task");
        cell.hist.add(h).expect("same histogram bounds");
        cell.done += d;
        cell.errors += e;
        if cell.first_error.is_none() {
            cell.first_error = f;
        }
    }
    cell
}
