//! Bodies of any size through the `anpx` and `anpx-smol` binaries, with
//! the memory each process needed.
//!
//! ```text
//! cargo bench -p shell-tokio --bench bodies                       # 2 GiB each way, both shells
//! cargo bench -p shell-tokio --bench bodies -- --bytes 268435456  # a shorter run
//! cargo bench -p shell-tokio --bench bodies -- --max-rss-mib 32   # a tighter bound
//! ```
//!
//! For each shell, a gateway process and a receiver process of that
//! binary sit between this process's client and backend (the test support
//! in `tests/support/transfer.rs`): a download, an upload with a
//! Content-Length and a chunked upload of `--bytes` each, generated and
//! sha256-hashed piece by piece at both ends, so neither end holds a body.
//! The gateway runs with `--max-body-bytes` just above the size, since its
//! default (1 GiB) would refuse a 2 GiB upload.
//!
//! It prints each transfer's rate and each process's peak RSS (VmHWM), and
//! exits with status 1 when a body arrives different, cut or refused, or
//! when a process's peak RSS passes `--max-rss-mib` (64 by default).

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;
#[path = "../tests/support/transfer.rs"]
mod transfer;

use std::time::Instant;

use support::Binary;
use transfer::{expected_sha256, Tunnel};

const SEED: u64 = 11;

struct Opts {
    bytes: u64,
    max_rss_mib: u64,
}

impl Opts {
    fn parse() -> Opts {
        let mut opts = Opts {
            bytes: 2 << 30,
            max_rss_mib: 64,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> u64 {
                args.next()
                    .and_then(|s| s.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| {
                        eprintln!("{name} takes a positive number");
                        std::process::exit(2)
                    })
            };
            match arg.as_str() {
                "--bytes" => opts.bytes = number("--bytes"),
                "--max-rss-mib" => opts.max_rss_mib = number("--max-rss-mib"),
                // cargo bench passes `--bench`; filters mean nothing here.
                _ => {}
            }
        }
        opts
    }
}

/// One transfer's line; `Err` names what went wrong.
fn report(what: &str, bytes: u64, started: Instant, verdict: Result<(), String>) -> bool {
    let secs = started.elapsed().as_secs_f64();
    let rate = bytes as f64 / secs / (1 << 20) as f64;
    match verdict {
        Ok(()) => {
            println!("  {what:<22} {bytes} bytes in {secs:.1} s ({rate:.0} MiB/s), sha256 matches");
            true
        }
        Err(why) => {
            println!("  {what:<22} FAILED: {why}");
            false
        }
    }
}

async fn shell(binary: Binary, opts: &Opts, want: &str) -> bool {
    let limit = (opts.bytes + 1).to_string();
    let t = Tunnel::start(binary, binary, &["--max-body-bytes", &limit]).await;
    println!("{binary:?} gateway and receiver:");
    let mut ok = true;

    let started = Instant::now();
    let down = t.download(opts.bytes, SEED).await;
    let verdict = if down.status != 200 {
        Err(format!("status {}", down.status))
    } else if !down.complete || down.bytes != opts.bytes {
        Err(format!("cut after {} bytes", down.bytes))
    } else if down.sha256 != want {
        Err("the body differs".into())
    } else {
        Ok(())
    };
    ok &= report("download", opts.bytes, started, verdict);

    for (what, announce) in [("upload, Content-Length", true), ("upload, chunked", false)] {
        let started = Instant::now();
        let up = t.upload(opts.bytes, SEED, announce).await;
        let expected = format!("{} {want}", opts.bytes);
        let verdict = if up.status != 200 || !up.complete {
            Err(format!("status {}: {}", up.status, up.text))
        } else if up.text != expected {
            Err(format!("the backend got `{}`, not `{expected}`", up.text))
        } else {
            Ok(())
        };
        ok &= report(what, opts.bytes, started, verdict);
    }

    let (gateway, receiver) = t.peak_rss_kib();
    for (role, kib) in [("gateway", gateway), ("receiver", receiver)] {
        let within = kib <= opts.max_rss_mib * 1024;
        println!(
            "  {role:<8} peak RSS {:.1} MiB ({})",
            kib as f64 / 1024.0,
            if within {
                format!("within {} MiB", opts.max_rss_mib)
            } else {
                format!("OVER {} MiB", opts.max_rss_mib)
            }
        );
        ok &= within;
    }
    ok
}

fn main() {
    let opts = Opts::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ok = rt.block_on(async {
        let want = expected_sha256(opts.bytes, SEED).await;
        let mut ok = true;
        for binary in [Binary::Anpx, Binary::AnpxSmol] {
            ok &= shell(binary, &opts, &want).await;
        }
        ok
    });
    if !ok {
        eprintln!("bodies: a transfer failed or a process passed its memory bound");
        std::process::exit(1);
    }
}
