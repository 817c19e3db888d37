//! Soak: a long run of mixed requests through the tunnel, checking every
//! answer and watching the process's memory.
//!
//! ```text
//! cargo bench -p shell-tokio --bench soak -- [--requests N] [--connections C] [--json]
//! ```
//!
//! Everything runs in this process on loopback: a hyper backend, a gateway
//! and a receiver in upstream mode, and a load client on its own runtime
//! with `C` keep-alive connections (16 by default) sending `N` requests in
//! all (1 000 000 by default). The mix cycles through GET, POST, PUT,
//! PATCH, DELETE and HEAD with request and response bodies from empty to
//! 256 KiB (see [`Shape::of`]); the backend echoes what it got, so each
//! answer's status, length and contents are checked.
//!
//! VmRSS of the whole process is read after a warm-up (the first 10 % of
//! the requests, and at least 60 s, twice the request timeout, so that
//! anything kept for a timeout has reached its steady state) and at the
//! end. The run fails (exit status 1) on any error, or when RSS grew
//! by 10 % or more after the warm-up; a run shorter than the warm-up gives
//! no memory verdict.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shell_tokio::gateway::{Gateway, GatewayOptions};
use shell_tokio::receiver::{Receiver, ReceiverOptions, Status};
use shell_tokio::upstream::HttpUpstream;
use tokio::net::{TcpListener, TcpStream};

/// The `anpx` binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOST: &str = "soak.bench";
/// Largest body in the mix.
const MAX_BODY: usize = 256 * 1024;
/// The warm-up lasts at least this long: twice the default request timeout
/// (30 s), so state that lives up to a timeout (it once included every
/// finished request's deadline) is in its steady state when RSS is first
/// read.
const WARM_UP_TIME: Duration = Duration::from_secs(60);
/// Allowed growth of RSS from after the warm-up to the end.
const MAX_GROWTH: f64 = 0.10;

struct Opts {
    requests: u64,
    connections: usize,
    json: bool,
    /// Only requests of this method (to tell where a growth comes from).
    only: Option<String>,
}

impl Opts {
    fn parse() -> Opts {
        let mut opts = Opts {
            requests: 1_000_000,
            connections: 16,
            json: false,
            only: None,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--requests" => {
                    opts.requests = it.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
                        eprintln!("--requests takes a number");
                        std::process::exit(2)
                    })
                }
                "--connections" => {
                    opts.connections = it
                        .next()
                        .and_then(|s| s.parse().ok())
                        .filter(|&c| c > 0)
                        .unwrap_or_else(|| {
                            eprintln!("--connections takes a positive number");
                            std::process::exit(2)
                        })
                }
                "--json" => opts.json = true,
                "--only" => opts.only = it.next().map(|m| m.to_ascii_uppercase()),
                // cargo bench passes `--bench`; filters mean nothing here.
                _ => {}
            }
        }
        opts
    }
}

/// `--only`: every request with this method.
static ONLY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Request number `n`'s method, upload size and download size.
#[derive(Debug, Clone, Copy)]
struct Shape {
    method: &'static str,
    upload: usize,
    download: usize,
}

impl Shape {
    /// Mostly small requests, some medium, a few large: sizes cycle with a
    /// period prime to the six methods', so every method meets every size.
    fn of(n: u64) -> Shape {
        const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
        const SIZES: [usize; 10] = [0, 0, 17, 100, 1000, 1000, 4096, 4096, 65_536, 0];
        let method = ONLY
            .get()
            .and_then(|m| METHODS.into_iter().find(|k| k == m))
            .unwrap_or(METHODS[(n % 6) as usize]);
        let mut size = SIZES[(n % 10) as usize];
        // One request in 101 carries the largest body.
        if n % 101 == 50 {
            size = MAX_BODY;
        }
        let (upload, download) = match method {
            // Bodies go up with POST, PUT and PATCH and come back echoed;
            // GET, DELETE and HEAD ask for a body of that size.
            "POST" | "PUT" | "PATCH" => (size, size),
            _ => (0, size),
        };
        Shape {
            method,
            upload,
            download,
        }
    }
}

/// Byte `i` of every body: the checks catch a shifted or mixed-up body.
fn byte_at(i: usize) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 9)) as u8
}

fn body_of(len: usize, all: &Bytes) -> Bytes {
    all.slice(..len)
}

async fn backend(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let size: usize = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("size="))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    let out = if body.is_empty() {
        Bytes::from((0..size).map(byte_at).collect::<Vec<u8>>())
    } else {
        body
    };
    let mut r = Response::new(Full::new(if method == Method::HEAD {
        Bytes::new()
    } else {
        out.clone()
    }));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, out.len().into());
    Ok(r)
}

fn status(s: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = s;
    r
}

async fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(backend))
                    .await;
            });
        }
    });
    addr
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

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

/// Sends request `n` and checks its answer.
async fn one(sender: &mut Sender, n: u64, all: &Bytes) -> Result<(), String> {
    let shape = Shape::of(n);
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let req = Request::builder()
        .method(shape.method)
        .uri(format!("/soak/{n}?size={}", shape.download))
        .header(header::HOST, HOST)
        .body(Full::new(body_of(shape.upload, all)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request {n} ({shape:?}): {e}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!(
            "request {n} ({shape:?}): status {}",
            response.status()
        ));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("request {n} ({shape:?}): body: {e}"))?
        .to_bytes();
    let want = if shape.method == "HEAD" {
        0
    } else {
        shape.download
    };
    if body.len() != want {
        return Err(format!(
            "request {n} ({shape:?}): {} bytes, expected {want}",
            body.len()
        ));
    }
    if body[..] != all[..want] {
        return Err(format!("request {n} ({shape:?}): body differs"));
    }
    Ok(())
}

struct Progress {
    next: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
}

async fn client_connection(
    addr: SocketAddr,
    total: u64,
    progress: Arc<Progress>,
    all: Bytes,
) -> Option<String> {
    let mut first_error = None;
    let mut sender = None;
    loop {
        let n = progress.next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return first_error;
        }
        if sender.is_none() {
            match connect(addr).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        if let Err(e) = one(s, n, &all).await {
            progress.errors.fetch_add(1, Ordering::Relaxed);
            first_error.get_or_insert(e);
            // The connection may be unusable after a failure.
            sender = None;
        }
        progress.done.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() {
    let opts = Opts::parse();
    if let Some(m) = &opts.only {
        let _ = ONLY.set(m.clone());
    }
    let servers = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("soak-server")
        .build()
        .expect("server runtime");
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("soak-client")
        .build()
        .expect("client runtime");

    let (gateway, _receiver) = servers.block_on(async {
        let backend = start_backend().await;
        let mut options = GatewayOptions::open("127.0.0.1:0".parse().expect("address"));
        options.drain_grace = Duration::from_secs(1);
        let gateway = Gateway::bind(options).await.expect("gateway binds");
        let upstream = Arc::new(HttpUpstream::new(&format!("http://{backend}")).expect("upstream"));
        let mut ro = ReceiverOptions::new(format!("ws://{}/ws", gateway.public_addr()), upstream);
        ro.services = vec![format!("{HOST}/soak").parse().expect("service")];
        let receiver = Receiver::spawn(ro);
        match tokio::time::timeout(Duration::from_secs(10), receiver.wait_ready()).await {
            Ok(Status::Connected { .. }) => {}
            other => panic!("the receiver did not connect: {other:?}"),
        }
        (gateway, receiver)
    });
    let addr = gateway.public_addr();
    let all = Bytes::from((0..MAX_BODY).map(byte_at).collect::<Vec<u8>>());
    let progress = Arc::new(Progress {
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let warm_up = (opts.requests / 10).max(1);
    let started = Instant::now();
    let tasks: Vec<_> = (0..opts.connections)
        .map(|_| {
            client.spawn(client_connection(
                addr,
                opts.requests,
                progress.clone(),
                all.clone(),
            ))
        })
        .collect();

    // Watch from this thread: RSS after the warm-up, then every tenth.
    let mut rss_warm = None;
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut next_sample = warm_up;
    let step = (opts.requests / 10).max(1);
    while progress.done.load(Ordering::Relaxed) < opts.requests
        && !tasks.iter().all(|t| t.is_finished())
    {
        std::thread::sleep(Duration::from_millis(20));
        let done = progress.done.load(Ordering::Relaxed);
        // The gateway keeps each request's deadline in its timer queue
        // until it comes due, one request timeout later: memory reaches
        // its steady state only then.
        let warm = started.elapsed() >= WARM_UP_TIME;
        if warm && done >= next_sample {
            let rss = vm_rss_kib();
            rss_warm.get_or_insert(rss);
            samples.push((done, rss));
            if !opts.json {
                println!(
                    "{done:>9} requests  {:>7.1} s  VmRSS {:>7.1} MiB  errors {}",
                    started.elapsed().as_secs_f64(),
                    rss as f64 / 1024.0,
                    progress.errors.load(Ordering::Relaxed)
                );
            }
            next_sample = (done / step + 1) * step;
        }
    }
    let first_error = client.block_on(async {
        let mut first = None;
        for t in tasks {
            if let Ok(Some(e)) = t.await {
                first.get_or_insert(e);
            }
        }
        first
    });
    let elapsed = started.elapsed();
    let rss_end = vm_rss_kib();
    let errors = progress.errors.load(Ordering::Relaxed);
    let done = progress.done.load(Ordering::Relaxed);
    let stats = servers.block_on(gateway.stats());
    // `None` when the run ended before the warm-up did: no memory verdict.
    let growth = rss_warm.map(|w| rss_end as f64 / w.max(1) as f64 - 1.0);
    let ok = errors == 0 && done == opts.requests && growth.is_none_or(|g| g < MAX_GROWTH);
    if opts.json {
        println!(
            "{}",
            serde_json::json!({
                "requests": done,
                "connections": opts.connections,
                "errors": errors,
                "first_error": first_error,
                "seconds": elapsed.as_secs_f64(),
                "requests_per_sec": done as f64 / elapsed.as_secs_f64(),
                "rss_after_warm_up_kib": rss_warm,
                "rss_end_kib": rss_end,
                "rss_growth": growth,
                "samples": samples,
                "gateway_in_flight_at_end": stats.as_ref().map(|s| s.in_flight),
                "ok": ok,
            })
        );
    } else {
        println!(
            "\n{done} requests over {} connections in {:.1} s ({:.0} requests/s), {errors} errors",
            opts.connections,
            elapsed.as_secs_f64(),
            done as f64 / elapsed.as_secs_f64()
        );
        if let Some(e) = &first_error {
            println!("first error: {e}");
        }
        match (rss_warm, growth) {
            (Some(warm), Some(growth)) => println!(
                "VmRSS after warm-up {:.1} MiB, at the end {:.1} MiB: {:+.1} % (limit {:+.0} %)",
                warm as f64 / 1024.0,
                rss_end as f64 / 1024.0,
                growth * 100.0,
                MAX_GROWTH * 100.0
            ),
            _ => println!(
                "VmRSS at the end {:.1} MiB; the run ended within the warm-up ({} s and {warm_up} requests): no memory verdict",
                rss_end as f64 / 1024.0,
                WARM_UP_TIME.as_secs()
            ),
        }
        if let Some(s) = stats {
            println!("gateway: {} in flight at the end", s.in_flight);
        }
        println!("{}", if ok { "PASS" } else { "FAIL" });
    }
    std::process::exit(if ok { 0 } else { 1 });
}
