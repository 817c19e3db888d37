//! `anpx`: the ANPX v1 tunnel on tokio.
//!
//! The command line and what each command does are written once
//! (`anpx_core::cli`, `anpx_cli`); this binary only supplies what runs
//! them: tokio, and this shell's gateway, receiver and signals.

use std::cell::Cell;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anpx_cli::reload::Reloader;
use anpx_cli::setup::Upstreams;
use anpx_cli::Shell;
use anpx_core::config::GatewaySection;
use anpx_core::registry::Registry;
use anyhow::{Context, Result};
use shell_common::did_wba::DocumentIo;
use shell_common::integrations::Integrations;
use shell_tokio::upstream::Upstream;
use shell_tokio::Tokio;

/// mimalloc instead of glibc's malloc: the request path allocates many
/// small, short-lived objects, often freed on another worker than the one
/// that allocated them, which mimalloc handles without a lock. It is
/// maintained by Microsoft Research, and its Rust binding builds from C
/// sources with `cc` alone (jemalloc's needs autotools and builds far
/// longer).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    anpx_cli::main(Anpx)
}

/// How often at most a worker gives back what it freed (below).
const COLLECT_EVERY: Duration = Duration::from_millis(100);

thread_local! {
    static LAST_COLLECT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// A worker about to park: unless it spins instead (`shell_tokio::spin`),
/// its log lines go out, and mimalloc gives the
/// system back the pages this worker's heap no longer uses. mimalloc does
/// that on its own only while the thread keeps allocating, so after a
/// load the pages freed last stayed with a parked worker: after 1 MiB
/// responses an idle `anpx both` held 1.7–2.6× its startup RSS
/// (`benches/vs-rathole.sh`, docs/BENCHMARKS.md). At most every 100 ms
/// per worker, so parking after every request at low load does not
/// collect every time; the next park after a quiet spell collects.
fn parked() {
    if shell_tokio::spin::spins() {
        return;
    }
    anpx_cli::log_writer::parked();
    let now = Instant::now();
    let due = LAST_COLLECT
        .get()
        .is_none_or(|last| now - last >= COLLECT_EVERY);
    if due {
        LAST_COLLECT.set(Some(now));
        // SAFETY: mi_collect takes no pointers; it walks the calling
        // thread's own heap, which mimalloc allows at any time.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

/// This shell's I/O for the shared commands.
struct Anpx;

impl Shell for Anpx {
    const PROGRAM: &'static str = "anpx";
    // The SQL registry and cluster mode are always built in.
    const INTEGRATIONS: Integrations = Integrations {
        sql_registry: true,
        cluster: true,
    };
    const HTTP2: bool = true;
    type Gateway = Tokio;
    type Receiver = Tokio;
    const UPSTREAMS: Upstreams<dyn Upstream> = shell_tokio::upstream::UPSTREAMS;

    fn documents(&self) -> Arc<dyn DocumentIo> {
        Arc::new(shell_tokio::fetch::TokioDocuments)
    }

    fn registry(&self, section: &GatewaySection) -> Result<Arc<dyn Registry>, String> {
        shell_tokio::registry::try_registry_from_config(section).map_err(|e| e.to_string())
    }

    fn block_on(&self, future: impl Future<Output = Result<()>>) -> Result<()> {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // Lanes hold their request lines and gather their log
                // lines until they park (anpx_cli::log_writer): a
                // request's line is formatted after its response is
                // written, and one write carries many lines under load.
                .on_thread_park(parked)
                .on_thread_stop(anpx_cli::log_writer::parked)
                .build()
        };
        let lanes = shell_tokio::rt::lane_count();
        shell_tokio::rt::block_on_lanes(lanes, runtime, anpx_cli::log_writer::parked, future)
            .context("cannot start the async runtime")?
    }

    // sqlx runs on tokio, where everything here already runs.
    fn in_tokio<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        future
    }

    fn watch_hangups(&self, reloader: Option<Arc<Reloader>>) -> Result<()> {
        #[cfg(unix)]
        if let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    anpx_cli::reload::on_hangup(reloader.as_deref());
                }
            });
        }
        Ok(())
    }

    async fn shutdown_signal(&self) -> Result<()> {
        shutdown_signal().await;
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
