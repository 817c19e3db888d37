//! End-to-end load: requests through the tunnel next to the same requests
//! sent straight to the backend, in one run, so the figures are ratios that
//! hold on a shared machine whose absolute speed drifts.
//!
//! ```text
//! cargo bench -p shell-tokio --bench e2e_load -- [--json] [--quick]
//! cargo bench -p shell-tokio --bench e2e_load -- --scale [--json]
//! cargo bench -p shell-tokio --bench e2e_load -- --profile-seconds N [--cell small-upstream-32]
//! ```
//!
//! Everything runs in this process on loopback: a hyper backend (`/small`:
//! 40 bytes, `/big`: 1 MiB, `/hold`: 40 bytes after 200 ms), a gateway, a
//! receiver that reaches the backend over HTTP (`up.bench`, upstream mode)
//! and a receiver that calls the same handler in-process (`svc.bench`,
//! service mode). Both receivers stay connected for the whole run; each
//! serves its own host, so a cell only exercises the one it names.
//!
//! Runtimes: the servers (backend, gateway, receivers) share one
//! multi-thread runtime with a worker per core; the load client has its own
//! runtime with one worker. A client spawned on the servers' workers would
//! take its share from whichever server task sits on the same worker, and
//! that share would differ between direct and tunnel cells; on a runtime of
//! its own it competes as one thread, the same way in every cell. Threads
//! are named so CPU time can be split between the two sides.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use shell_tokio::gateway::{Gateway, GatewayOptions};
use shell_tokio::receiver::{Receiver, ReceiverOptions, Status};
use shell_tokio::upstream::{HttpUpstream, ServiceUpstream, Upstream, UpstreamRequest};
use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::Runtime;

/// The `anpx` binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A small JSON answer, 40 bytes.
const SMALL_BODY: &[u8; 40] = b"{\"ok\":true,\"from\":\"anpx-bench-backend\"}\n";
const BIG_LEN: usize = 1 << 20;
/// How long `/hold` keeps a request before answering.
const HOLD: Duration = Duration::from_millis(200);
const SERVER_THREADS: &str = "bench-server";
const CLIENT_THREADS: &str = "bench-client";

/// Targets from the issue; the Python reference's figure is for comparison.
const TARGET_SMALL_RPS: f64 = 50_000.0;
const TARGET_BIG_BYTES_PER_SEC: f64 = (1u64 << 30) as f64;
const TARGET_ADDED_P50_US: f64 = 100.0;
const PYTHON_REFERENCE_RPS: f64 = 1_300.0;

// ---------------------------------------------------------------------------
// Command line

struct Opts {
    json: bool,
    quick: bool,
    scale: bool,
    profile_seconds: Option<f64>,
    cell: String,
    idle_connections: usize,
    in_flight: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut opts = Opts {
            json: false,
            quick: false,
            scale: false,
            profile_seconds: None,
            cell: "small-upstream-32".into(),
            idle_connections: 10_000,
            in_flight: 10_000,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--json" => opts.json = true,
                "--quick" => opts.quick = true,
                "--scale" => opts.scale = true,
                "--profile-seconds" => {
                    opts.profile_seconds = it.next().and_then(|s| s.parse().ok());
                }
                "--cell" => opts.cell = it.next().cloned().unwrap_or_default(),
                "--idle" => {
                    opts.idle_connections = it.next().and_then(|s| s.parse().ok()).unwrap_or(0)
                }
                "--in-flight" => {
                    opts.in_flight = it.next().and_then(|s| s.parse().ok()).unwrap_or(0)
                }
                // cargo bench passes `--bench`; filters mean nothing here.
                _ => {}
            }
        }
        opts
    }

    /// Warm-up and measured time of one cell.
    fn cell_times(&self) -> (Duration, Duration) {
        if self.quick {
            (Duration::from_millis(200), Duration::from_secs(1))
        } else {
            (Duration::from_millis(500), Duration::from_secs(5))
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--idle-clients") => idle_clients_child(&args[1..]),
        Some("--backend-child") => backend_child(),
        _ => {}
    }
    let opts = Opts::parse(&args);
    if opts.scale {
        run_scale(&opts);
    } else if let Some(secs) = opts.profile_seconds {
        run_profile(&opts, secs);
    } else {
        run_matrix(&opts);
    }
}

// ---------------------------------------------------------------------------
// The machine

struct Machine {
    nproc: usize,
    cpu_model: String,
    loadavg: String,
}

impl Machine {
    fn read() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            loadavg,
        }
    }

    fn print(&self) {
        println!(
            "machine: nproc {}, {}, load average {} at start",
            self.nproc, self.cpu_model, self.loadavg
        );
    }

    fn json(&self) -> Value {
        json!({ "nproc": self.nproc, "cpu_model": self.cpu_model, "loadavg": self.loadavg })
    }
}

fn runtimes(server_workers: usize) -> (Runtime, Runtime) {
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_workers)
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()
        .expect("server runtime");
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()
        .expect("client runtime");
    (servers, client)
}

/// CPU seconds used so far by the server threads and the client threads.
fn thread_cpu() -> (f64, f64) {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let (mut servers, mut client) = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        // schedstat is in nanoseconds; stat's ticks (10 ms) are the fallback.
        let secs = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map(|ns| ns / 1e9)
            .or_else(|| {
                let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                let rest = stat.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let user: f64 = f.get(11)?.parse().ok()?;
                let sys: f64 = f.get(12)?.parse().ok()?;
                Some((user + sys) / ticks)
            })
            .unwrap_or(0.0);
        match comm.trim() {
            SERVER_THREADS => servers += secs,
            CLIENT_THREADS => client += secs,
            _ => {}
        }
    }
    (servers, client)
}

fn vm_rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Raises the open-file limit towards `want`; returns (soft, hard) before
/// and after.
fn raise_nofile(want: u64) -> ((u64, u64), (u64, u64)) {
    let get = || {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
        (r.rlim_cur, r.rlim_max)
    };
    let before = get();
    let wanted = libc::rlimit {
        rlim_cur: want.max(before.0) as libc::rlim_t,
        rlim_max: want.max(before.1) as libc::rlim_t,
    };
    // SAFETY: setrlimit only reads the struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } != 0 {
        // Raising the hard limit needs privilege; the soft one may always
        // go up to the hard one.
        let capped = libc::rlimit {
            rlim_cur: before.1 as libc::rlim_t,
            rlim_max: before.1 as libc::rlim_t,
        };
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) };
    }
    (before, get())
}

// ---------------------------------------------------------------------------
// The servers

#[derive(Clone, Copy)]
enum Answer {
    Small,
    Big,
    Hold,
    NotFound,
}

fn answer_for(path: &str) -> Answer {
    match path {
        "/small" => Answer::Small,
        "/big" => Answer::Big,
        "/hold" => Answer::Hold,
        _ => Answer::NotFound,
    }
}

/// The one handler behind both the backend and the in-process service, so
/// the two modes differ only in how requests reach it.
async fn answer(which: Answer, big: Bytes) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match which {
        Answer::Small => (
            StatusCode::OK,
            "application/json",
            Bytes::from_static(SMALL_BODY),
        ),
        Answer::Big => (StatusCode::OK, "application/octet-stream", big),
        Answer::Hold => {
            tokio::time::sleep(HOLD).await;
            (
                StatusCode::OK,
                "application/json",
                Bytes::from_static(SMALL_BODY),
            )
        }
        Answer::NotFound => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

fn big_body() -> Bytes {
    (0..BIG_LEN)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect::<Vec<u8>>()
        .into()
}

async fn start_backend(big: Bytes) -> SocketAddr {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    // The scale run opens thousands of upstream connections at once; a deep
    // backlog keeps their SYNs from being dropped and retried a second later.
    let listener = socket.listen(8192).expect("listen");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let big = big.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    answer(answer_for(req.uri().path()), big.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

fn service_upstream(big: Bytes) -> Arc<dyn Upstream> {
    Arc::new(ServiceUpstream::new(tower::service_fn(
        move |req: UpstreamRequest| answer(answer_for(req.uri().path()), big.clone()),
    )))
}

async fn start_gateway(max_inflight: usize, receivers: usize) -> Gateway {
    let mut options = GatewayOptions::open("127.0.0.1:0".parse().expect("address"));
    options.core.max_inflight_per_link = max_inflight;
    // Every receiver here dials from 127.0.0.1, which the per-address cap
    // would otherwise treat as one crowded client; the scale run holds more
    // than the default cap in all.
    options.edge.max_receivers_per_ip = options.edge.max_receivers_per_ip.max(receivers + 16);
    options.edge.max_receivers = options.edge.max_receivers.max(receivers + 16);
    options.edge.max_pending_handshakes = options.edge.max_pending_handshakes.max(1024);
    options.drain_grace = Duration::from_secs(1);
    Gateway::bind(options).await.expect("gateway binds")
}

/// A receiver for `service`; it serves up to `max_in_flight` requests at
/// once (its own cap answers 503 past it, whatever the gateway sends).
async fn start_receiver(
    gateway: SocketAddr,
    service: &str,
    upstream: Arc<dyn Upstream>,
    max_in_flight: usize,
) -> Receiver {
    let mut options = ReceiverOptions::new(format!("ws://{gateway}/ws"), upstream);
    options.services = vec![service.parse().expect("service url")];
    options.core.max_in_flight = options.core.max_in_flight.max(max_in_flight);
    let receiver = Receiver::spawn(options);
    match tokio::time::timeout(Duration::from_secs(10), receiver.wait_ready()).await {
        Ok(Status::Connected { .. }) => receiver,
        other => panic!("the receiver for {service} did not connect: {other:?}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Direct,
    Upstream,
    Service,
}

impl Via {
    const ALL: [Via; 3] = [Via::Direct, Via::Upstream, Via::Service];

    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Upstream => "upstream",
            Via::Service => "service",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Size {
    Small,
    Big,
}

impl Size {
    fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Big => "big",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Size::Small => "40 B",
            Size::Big => "1 MiB",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Size::Small => "/small",
            Size::Big => "/big",
        }
    }

    fn len(self) -> usize {
        match self {
            Size::Small => SMALL_BODY.len(),
            Size::Big => BIG_LEN,
        }
    }
}

struct Servers {
    backend: SocketAddr,
    gateway: Gateway,
    receivers: Vec<Receiver>,
}

impl Servers {
    async fn start(big: Bytes, max_inflight: usize) -> Servers {
        let backend = start_backend(big.clone()).await;
        let gateway = start_gateway(max_inflight, 2).await;
        let http = HttpUpstream::new(&format!("http://{backend}")).expect("upstream url");
        let up = start_receiver(
            gateway.public_addr(),
            "up.bench",
            Arc::new(http),
            max_inflight,
        )
        .await;
        let svc = start_receiver(
            gateway.public_addr(),
            "svc.bench",
            service_upstream(big),
            max_inflight,
        )
        .await;
        Servers {
            backend,
            gateway,
            receivers: vec![up, svc],
        }
    }

    fn target(&self, size: Size, via: Via) -> Target {
        let (addr, host) = match via {
            Via::Direct => (self.backend, self.backend.to_string()),
            Via::Upstream => (self.gateway.public_addr(), "up.bench".into()),
            Via::Service => (self.gateway.public_addr(), "svc.bench".into()),
        };
        Target {
            addr,
            host: HeaderValue::from_str(&host).expect("host header"),
            path: size.path(),
            expect_len: size.len(),
        }
    }

    async fn stop(self) {
        for r in self.receivers {
            r.shutdown().await;
        }
        self.gateway.shutdown().await;
    }
}

// ---------------------------------------------------------------------------
// The load client

struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    path: &'static str,
    expect_len: usize,
}

fn histogram() -> Histogram<u64> {
    // Nanoseconds, 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("histogram bounds")
}

struct Outcome {
    hist: Histogram<u64>,
    measured: u64,
    warm: u64,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            hist: histogram(),
            measured: 0,
            warm: 0,
            bytes: 0,
            errors: 0,
            first_error: None,
            last_done: None,
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    fn merge(&mut self, other: Outcome) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        self.measured += other.measured;
        self.warm += other.warm;
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.last_done = self.last_done.max(other.last_done);
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request and its whole body; the body's length.
async fn one_request(sender: &mut Sender, target: &Target) -> Result<usize, String> {
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let req = Request::get(target.path)
        .header(header::HOST, target.host.clone())
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut len = 0;
    // Counted, not collected: the client should cost the same per byte in
    // every cell and as little as possible.
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            len += data.len();
        }
    }
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    Ok(len)
}

/// One connection sending requests back to back until `until`; requests
/// started before `measure_from` are warm-up and not recorded.
async fn load_connection(target: Arc<Target>, measure_from: Instant, until: Instant) -> Outcome {
    let mut out = Outcome::new();
    let mut sender = match connect(target.addr).await {
        Ok(s) => s,
        Err(e) => {
            out.error(e);
            return out;
        }
    };
    while Instant::now() < until {
        let started = Instant::now();
        match one_request(&mut sender, &target).await {
            Ok(len) if len == target.expect_len => {
                let done = Instant::now();
                if started >= measure_from {
                    out.hist
                        .saturating_record((done - started).as_nanos() as u64);
                    out.measured += 1;
                    out.bytes += len as u64;
                    out.last_done = Some(done);
                } else {
                    out.warm += 1;
                }
            }
            Ok(len) => out.error(format!("{len} body bytes, {} expected", target.expect_len)),
            Err(e) => {
                out.error(e);
                // A fresh connection, so one failure does not end the cell.
                match connect(target.addr).await {
                    Ok(s) => sender = s,
                    Err(e) => {
                        out.error(e);
                        return out;
                    }
                }
            }
        }
    }
    out
}

struct Cell {
    size: Size,
    conns: usize,
    via: Via,
    requests: u64,
    /// Warm-up included, for dividing profiler totals.
    all_requests: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    rps: f64,
    bytes_per_sec: f64,
    p50_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    max_ns: u64,
    /// CPU time of the server threads per request (warm-up included).
    server_cpu_us: f64,
    client_cpu_us: f64,
}

impl Cell {
    fn json(&self) -> Value {
        json!({
            "size": self.size.name(),
            "body_bytes": self.size.len(),
            "connections": self.conns,
            "via": self.via.name(),
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "seconds": self.seconds,
            "requests_per_sec": self.rps,
            "bytes_per_sec": self.bytes_per_sec,
            "p50_us": self.p50_ns as f64 / 1e3,
            "p99_us": self.p99_ns as f64 / 1e3,
            "p999_us": self.p999_ns as f64 / 1e3,
            "max_us": self.max_ns as f64 / 1e3,
            "server_cpu_us_per_request": self.server_cpu_us,
            "client_cpu_us_per_request": self.client_cpu_us,
        })
    }
}

async fn run_cell(
    target: Target,
    size: Size,
    via: Via,
    conns: usize,
    (warmup, measure): (Duration, Duration),
) -> Cell {
    let target = Arc::new(target);
    let cpu_before = thread_cpu();
    let measure_from = Instant::now() + warmup;
    let until = measure_from + measure;
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(load_connection(target.clone(), measure_from, until)))
        .collect();
    let mut total = Outcome::new();
    for task in tasks {
        total.merge(task.await.expect("load task"));
    }
    let cpu_after = thread_cpu();
    let seconds = total
        .last_done
        .map_or(0.0, |t| (t - measure_from).as_secs_f64())
        .max(1e-9);
    let all = (total.measured + total.warm).max(1) as f64;
    Cell {
        size,
        conns,
        via,
        requests: total.measured,
        all_requests: total.measured + total.warm,
        errors: total.errors,
        first_error: total.first_error,
        seconds,
        rps: total.measured as f64 / seconds,
        bytes_per_sec: total.bytes as f64 / seconds,
        p50_ns: total.hist.value_at_quantile(0.5),
        p99_ns: total.hist.value_at_quantile(0.99),
        p999_ns: total.hist.value_at_quantile(0.999),
        max_ns: total.hist.max(),
        server_cpu_us: (cpu_after.0 - cpu_before.0) / all * 1e6,
        client_cpu_us: (cpu_after.1 - cpu_before.1) / all * 1e6,
    }
}

// ---------------------------------------------------------------------------
// The matrix: every size, connection count and path, side by side

fn us(ns: u64) -> String {
    let us = ns as f64 / 1e3;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1e3)
    }
}

fn rate(bytes_per_sec: f64) -> String {
    if bytes_per_sec >= (1u64 << 30) as f64 {
        format!("{:.2} GiB/s", bytes_per_sec / (1u64 << 30) as f64)
    } else if bytes_per_sec >= (10u64 << 20) as f64 {
        format!("{:.0} MiB/s", bytes_per_sec / (1u64 << 20) as f64)
    } else {
        format!("{:.1} MiB/s", bytes_per_sec / (1u64 << 20) as f64)
    }
}

fn run_matrix(opts: &Opts) {
    let machine = Machine::read();
    let (servers_rt, client_rt) = runtimes(machine.nproc);
    let times = opts.cell_times();
    if !opts.json {
        machine.print();
        println!(
            "runtimes: servers (backend, gateway, receivers) on {} tokio workers, the load client on its own 1-worker runtime",
            machine.nproc
        );
        println!(
            "cells: {:.1} s warm-up + {:.0} s measured; HTTP/1.1 keep-alive, one request at a time per connection",
            times.0.as_secs_f64(),
            times.1.as_secs_f64()
        );
        println!("figures are ratios measured side by side in one run on a shared machine\n");
    }
    let big = big_body();
    let servers = servers_rt.block_on(Servers::start(big, 10_000));

    let mut cells = Vec::new();
    for conns in [32, 1] {
        for size in [Size::Small, Size::Big] {
            for via in Via::ALL {
                let target = servers.target(size, via);
                let cell = client_rt.block_on(run_cell(target, size, via, conns, times));
                if !opts.json {
                    if cells.is_empty() {
                        header_row();
                    }
                    let direct = cells.iter().rev().find(|c: &&Cell| {
                        c.via == Via::Direct && c.size == size && c.conns == conns
                    });
                    print_row(&cell, direct);
                }
                cells.push(cell);
            }
        }
    }
    servers_rt.block_on(servers.stop());

    let verdicts = verdicts(&cells);
    if opts.json {
        let out = json!({
            "machine": machine.json(),
            "runtimes": {
                "servers": format!("multi-thread, {} workers", machine.nproc),
                "client": "multi-thread, 1 worker",
            },
            "warmup_seconds": times.0.as_secs_f64(),
            "measured_seconds": times.1.as_secs_f64(),
            "cells": cells.iter().map(Cell::json).collect::<Vec<_>>(),
            "targets": verdicts.iter().map(|v| json!({
                "target": v.what, "goal": v.goal, "measured": v.measured, "met": v.met,
            })).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        println!("\ntargets");
        for v in &verdicts {
            let met = match v.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            println!("  {:<58} {:>14}  {met}", v.what, v.shown);
        }
    }
}

fn header_row() {
    println!(
        "{:>5}  {:>5}  {:<8}  {:>9}  {:>10}  {:>9}  {:>9}  {:>9}  {:>12}  {:>7}  {:>9}",
        "conns",
        "body",
        "via",
        "req/s",
        "throughput",
        "p50",
        "p99",
        "p999",
        "srv CPU/req",
        "×direct",
        "+p50"
    );
}

fn print_row(cell: &Cell, direct: Option<&Cell>) {
    let (ratio, added) = match direct {
        Some(d) if cell.via != Via::Direct => (
            format!("{:.2}×", cell.rps / d.rps),
            format!("+{:.0} µs", (cell.p50_ns as f64 - d.p50_ns as f64) / 1e3),
        ),
        _ => (String::new(), String::new()),
    };
    println!(
        "{:>5}  {:>5}  {:<8}  {:>9.0}  {:>10}  {:>9}  {:>9}  {:>9}  {:>9.1} µs  {:>7}  {:>9}{}",
        cell.conns,
        cell.size.label(),
        cell.via.name(),
        cell.rps,
        rate(cell.bytes_per_sec),
        us(cell.p50_ns),
        us(cell.p99_ns),
        us(cell.p999_ns),
        cell.server_cpu_us,
        ratio,
        added,
        match &cell.first_error {
            Some(e) => format!("  {} errors, first: {e}", cell.errors),
            None => String::new(),
        }
    );
}

struct Verdict {
    what: &'static str,
    goal: f64,
    measured: f64,
    shown: String,
    met: Option<bool>,
}

fn verdicts(cells: &[Cell]) -> Vec<Verdict> {
    let find = |size, via, conns| {
        cells
            .iter()
            .find(|c| c.size == size && c.via == via && c.conns == conns)
    };
    let mut out = Vec::new();
    if let Some(c) = find(Size::Small, Via::Upstream, 32) {
        out.push(Verdict {
            what: "small req/s, upstream mode, 32 conns (>= 50 000)",
            goal: TARGET_SMALL_RPS,
            measured: c.rps,
            shown: format!("{:.0}", c.rps),
            met: Some(c.rps >= TARGET_SMALL_RPS),
        });
        out.push(Verdict {
            what: "the same against the Python reference (~1 300 req/s)",
            goal: PYTHON_REFERENCE_RPS,
            measured: c.rps / PYTHON_REFERENCE_RPS,
            shown: format!("{:.1}×", c.rps / PYTHON_REFERENCE_RPS),
            met: None,
        });
    }
    for conns in [32, 1] {
        if let Some(c) = find(Size::Big, Via::Upstream, conns) {
            out.push(Verdict {
                what: if conns == 32 {
                    "1 MiB throughput, upstream mode, 32 conns (>= 1 GiB/s)"
                } else {
                    "1 MiB throughput, upstream mode, 1 conn (>= 1 GiB/s)"
                },
                goal: TARGET_BIG_BYTES_PER_SEC,
                measured: c.bytes_per_sec,
                shown: rate(c.bytes_per_sec),
                met: Some(c.bytes_per_sec >= TARGET_BIG_BYTES_PER_SEC),
            });
        }
    }
    for via in [Via::Upstream, Via::Service] {
        if let (Some(d), Some(t)) = (find(Size::Small, Via::Direct, 1), find(Size::Small, via, 1)) {
            let added = (t.p50_ns as f64 - d.p50_ns as f64) / 1e3;
            out.push(Verdict {
                what: if via == Via::Upstream {
                    "added p50 latency, small, 1 conn, upstream (<= 100 µs)"
                } else {
                    "added p50 latency, small, 1 conn, service (<= 100 µs)"
                },
                goal: TARGET_ADDED_P50_US,
                measured: added,
                shown: format!("{added:.0} µs"),
                met: Some(added <= TARGET_ADDED_P50_US),
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------
// One cell for a profiler

fn run_profile(opts: &Opts, seconds: f64) {
    let parts: Vec<&str> = opts.cell.split('-').collect();
    let size = match parts.first().copied() {
        Some("big") => Size::Big,
        _ => Size::Small,
    };
    let via = match parts.get(1).copied() {
        Some("direct") => Via::Direct,
        Some("service") => Via::Service,
        _ => Via::Upstream,
    };
    let conns = parts.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let machine = Machine::read();
    machine.print();
    let (servers_rt, client_rt) = runtimes(machine.nproc);
    let servers = servers_rt.block_on(Servers::start(big_body(), 10_000));
    let target = servers.target(size, via);
    let times = (Duration::from_millis(500), Duration::from_secs_f64(seconds));
    let cell = client_rt.block_on(run_cell(target, size, via, conns, times));
    header_row();
    print_row(&cell, None);
    println!(
        "{} requests in all (warm-up included), server threads {:.1} µs CPU each, client {:.1} µs",
        cell.all_requests, cell.server_cpu_us, cell.client_cpu_us
    );
    servers_rt.block_on(servers.stop());
}

// ---------------------------------------------------------------------------
// Scale: many idle receivers, many requests in flight

fn run_scale(opts: &Opts) {
    let machine = Machine::read();
    let (before, after) = raise_nofile(65_536);
    let (servers_rt, client_rt) = runtimes(machine.nproc);
    if !opts.json {
        machine.print();
        println!(
            "open files: soft {} / hard {} at start, {} / {} after raising",
            before.0, before.1, after.0, after.1
        );
    }

    let idle = idle_receivers(opts, &servers_rt);
    let in_flight = requests_in_flight(opts, after.0, &servers_rt, &client_rt);

    if opts.json {
        let out = json!({
            "machine": machine.json(),
            "nofile": { "before": [before.0, before.1], "after": [after.0, after.1] },
            "idle_receivers": idle,
            "in_flight": in_flight,
        });
        println!("{out}");
    }
}

/// Idle receiver connections held by a child process, so this process's
/// RSS is the gateway's alone.
fn idle_receivers(opts: &Opts, servers_rt: &Runtime) -> Value {
    let n = opts.idle_connections;
    let gateway = servers_rt.block_on(start_gateway(100, n));
    let addr = gateway.public_addr();
    // Let the runtime's threads and the allocator settle before the baseline.
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = vm_rss_kib("self");

    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--idle-clients", &addr.to_string(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the idle clients");
    let mut ready = String::new();
    let _ = BufReader::new(child.stdout.take().expect("child stdout")).read_line(&mut ready);
    let connected: usize = field(&ready, "connected").unwrap_or(0);
    let connect_secs: f64 = field(&ready, "seconds").unwrap_or(0.0);

    // The 101 answer goes out before the link is admitted; wait for the
    // gateway to list them all (bounded), then measure.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut links = 0;
    while Instant::now() < deadline {
        links = servers_rt
            .block_on(gateway.stats())
            .map_or(0, |s| s.links.len());
        if links >= connected {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = vm_rss_kib("self");
    let child_rss = vm_rss_kib(&child.id().to_string());
    let per_conn = (rss_after.saturating_sub(rss_before) * 1024) as f64 / links.max(1) as f64;

    drop(child.stdin.take());
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = links;
    while Instant::now() < deadline && left > 0 {
        std::thread::sleep(Duration::from_millis(200));
        left = servers_rt
            .block_on(gateway.stats())
            .map_or(0, |s| s.links.len());
    }
    let rss_closed = vm_rss_kib("self");
    servers_rt.block_on(gateway.shutdown());

    if !opts.json {
        println!("\nidle receivers: {n} raw WebSocket clients (handshake with x-anpx-services, one service each) from a child process");
        println!(
            "  connected {connected} in {connect_secs:.1} s, gateway lists {links}; {} failed{}",
            n.saturating_sub(connected),
            field::<String>(&ready, "error")
                .filter(|e| !e.is_empty())
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
        println!(
            "  gateway process VmRSS {:.1} MiB before, {:.1} MiB with them: {:.1} KiB per connection",
            rss_before as f64 / 1024.0,
            rss_after as f64 / 1024.0,
            per_conn / 1024.0
        );
        println!(
            "  after they closed: {:.1} MiB ({left} still listed); client process {:.1} MiB",
            rss_closed as f64 / 1024.0,
            child_rss as f64 / 1024.0
        );
    }
    json!({
        "requested": n,
        "connected": connected,
        "listed_by_gateway": links,
        "connect_seconds": connect_secs,
        "rss_before_kib": rss_before,
        "rss_with_connections_kib": rss_after,
        "rss_after_close_kib": rss_closed,
        "bytes_per_connection": per_conn,
        "client_process_rss_kib": child_rss,
    })
}

/// `name=value` from the child's report line.
fn field<T: std::str::FromStr>(line: &str, name: &str) -> Option<T> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// The child side of [`idle_receivers`]: connects, reports, and holds the
/// connections until its stdin closes.
fn idle_clients_child(args: &[String]) -> ! {
    let addr: SocketAddr = args
        .first()
        .and_then(|a| a.parse().ok())
        .expect("gateway address");
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    raise_nofile(65_536);
    // Bounded even if the parent dies without closing our stdin.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let results: Vec<Result<_, String>> = rt.block_on(
        futures_util::stream::iter(0..n)
            .map(|i| connect_idle(addr, i))
            // Few enough at once that the gateway's accept backlog never
            // overflows (a dropped SYN costs a second).
            .buffer_unordered(256)
            .collect(),
    );
    let secs = started.elapsed().as_secs_f64();
    let connected = results.iter().filter(|r| r.is_ok()).count();
    let error = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .map(|e| e.replace(char::is_whitespace, "_"))
        .unwrap_or_default();
    println!("ready connected={connected} seconds={secs:.2} error={error}");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(results);
    std::process::exit(0);
}

/// The backend for upstream mode under [`requests_in_flight`]: reports its
/// address and serves until its stdin closes.
fn backend_child() -> ! {
    raise_nofile(65_536);
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = rt.block_on(start_backend(big_body()));
    println!("ready addr={addr}");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    std::process::exit(0);
}

async fn connect_idle(
    addr: SocketAddr,
    i: usize,
) -> Result<
    async_tungstenite::WebSocketStream<async_tungstenite::tokio::TokioAdapter<TcpStream>>,
    String,
> {
    use async_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "x-anpx-services",
        format!("idle-{i}.bench").parse().map_err(|_| "header")?,
    );
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (ws, _) = async_tungstenite::tokio::client_async(request, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

/// `n` requests at once through the tunnel, each held 200 ms by the
/// handler, over HTTP/2 from the client (hyper's server allows 200 streams
/// per connection, so `n / 200` connections).
fn requests_in_flight(
    opts: &Opts,
    nofile: u64,
    servers_rt: &Runtime,
    client_rt: &Runtime,
) -> Value {
    let n = opts.in_flight;
    let big = big_body();
    let gateway = servers_rt.block_on(start_gateway(n * 2, 2));
    let gw = gateway.public_addr();
    let svc = servers_rt.block_on(start_receiver(
        gw,
        "hold-svc.bench",
        service_upstream(big),
        n,
    ));
    // The backend lives in a child process: upstream mode opens one backend
    // connection per request in flight, and with both ends here they would
    // need twice the descriptors.
    let mut backend = Command::new(std::env::current_exe().expect("own path"))
        .arg("--backend-child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the backend");
    let mut ready = String::new();
    let _ = BufReader::new(backend.stdout.take().expect("child stdout")).read_line(&mut ready);
    let backend_addr: SocketAddr = field(&ready, "addr").expect("backend address");
    let http = HttpUpstream::new(&format!("http://{backend_addr}")).expect("upstream url");
    let up = servers_rt.block_on(start_receiver(gw, "hold-up.bench", Arc::new(http), n));

    let mut results = Vec::new();
    let upstream_fds = n as u64 + 1_000;
    for (via, host) in [
        (Via::Service, "hold-svc.bench"),
        (Via::Upstream, "hold-up.bench"),
    ] {
        if via == Via::Upstream && nofile < upstream_fds {
            if !opts.json {
                println!(
                    "\n{n} in flight, upstream mode: skipped, needs ~{upstream_fds} open files, limit is {nofile}"
                );
            }
            results.push(json!({ "via": via.name(), "skipped": format!("open-file limit {nofile} < {upstream_fds}") }));
            continue;
        }
        let r = client_rt.block_on(burst(&gateway, gw, host, n));
        if !opts.json {
            println!(
                "\n{n} in flight at once, {} mode, held {} ms each, over {} HTTP/2 connections",
                via.name(),
                HOLD.as_millis(),
                r.connections
            );
            println!(
                "  {} ok, {} errors{}; all done in {:.2} s; peak in flight at the gateway {}",
                r.ok,
                r.errors,
                r.first_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default(),
                r.wall.as_secs_f64(),
                r.peak
            );
            println!(
                "  latency p50 {}, p99 {}, max {} (200 ms of it is the hold)",
                us(r.p50_ns),
                us(r.p99_ns),
                us(r.max_ns)
            );
        }
        results.push(json!({
            "via": via.name(),
            "requests": n,
            "connections": r.connections,
            "ok": r.ok,
            "errors": r.errors,
            "first_error": r.first_error,
            "seconds": r.wall.as_secs_f64(),
            "peak_in_flight": r.peak,
            "p50_us": r.p50_ns as f64 / 1e3,
            "p99_us": r.p99_ns as f64 / 1e3,
            "max_us": r.max_ns as f64 / 1e3,
        }));
    }
    servers_rt.block_on(async {
        svc.shutdown().await;
        up.shutdown().await;
        gateway.shutdown().await;
    });
    drop(backend.stdin.take());
    let _ = backend.wait();
    Value::Array(results)
}

struct Burst {
    connections: usize,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    wall: Duration,
    peak: usize,
    p50_ns: u64,
    p99_ns: u64,
    max_ns: u64,
}

async fn burst(gateway: &Gateway, addr: SocketAddr, host: &str, n: usize) -> Burst {
    const STREAMS_PER_CONNECTION: usize = 200;
    let connections = n.div_ceil(STREAMS_PER_CONNECTION).max(1);
    let mut senders = Vec::new();
    for _ in 0..connections {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        senders.push(sender);
    }
    let uri: http::Uri = format!("http://{host}/hold").parse().expect("uri");
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut sender = senders[i % connections].clone();
            let uri = uri.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                let result = tokio::time::timeout(Duration::from_secs(60), async {
                    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
                    let req = Request::get(uri)
                        .body(Empty::<Bytes>::new())
                        .map_err(|e| e.to_string())?;
                    let response = sender
                        .send_request(req)
                        .await
                        .map_err(|e| format!("request: {e}"))?;
                    let status = response.status();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| format!("body: {e}"))?
                        .to_bytes();
                    if status != StatusCode::OK || body.len() != SMALL_BODY.len() {
                        return Err(format!("status {status}, {} body bytes", body.len()));
                    }
                    Ok(())
                })
                .await
                .unwrap_or_else(|_| Err("no answer in 60 s".into()));
                (t0.elapsed(), Instant::now(), result)
            })
        })
        .collect();
    // Sample how many the gateway holds at once while they run.
    let mut peak = 0;
    let mut done = 0;
    let mut hist = histogram();
    let (mut ok, mut errors, mut first_error) = (0, 0, None);
    let mut pending = tasks.into_iter();
    let sampler_until = Instant::now() + HOLD * 3;
    while Instant::now() < sampler_until {
        if let Some(s) = gateway.stats().await {
            peak = peak.max(s.in_flight);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut last_done = started;
    for task in pending.by_ref() {
        let (took, finished, result) = task.await.expect("request task");
        done += 1;
        last_done = last_done.max(finished);
        match result {
            Ok(()) => {
                ok += 1;
                hist.saturating_record(took.as_nanos() as u64);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    debug_assert_eq!(done, n);
    Burst {
        connections,
        ok,
        errors,
        first_error,
        wall: last_done - started,
        peak,
        p50_ns: hist.value_at_quantile(0.5),
        p99_ns: hist.value_at_quantile(0.99),
        max_ns: hist.max(),
    }
}
