//! `anpx-smol`: the ANPX v1 tunnel on smol, with the same command line as
//! `anpx` (defined once in `anpx_core::cli`, run by `anpx_cli`); this
//! binary only supplies what runs it.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use anpx_cli::reload::Reloader;
use anpx_cli::setup::Upstreams;
use anpx_cli::Shell;
use anpx_core::config::GatewaySection;
use anpx_core::registry::Registry;
use anyhow::{Context, Result};
use shell_common::did_wba::DocumentIo;
use shell_common::integrations::Integrations;
use shell_smol::fetch::SmolDocuments;
use shell_smol::upstream::Upstream;
use shell_smol::Smol;

/// mimalloc instead of glibc's malloc, as in `anpx`: the request path
/// allocates many small, short-lived objects, and glibc's malloc and free
/// were about a sixth of anpx-smol's time per small request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    anpx_cli::main(AnpxSmol)
}

/// Each lane, every second: mimalloc gives the system back the pages this
/// lane's heap no longer uses. mimalloc does that on its own only while
/// the thread keeps allocating, so after a load the pages freed last
/// stayed with an idle lane: with two lanes, an idle `anpx-smol both`
/// held 1.9× its startup RSS after 1 MiB responses (docs/BENCHMARKS.md,
/// run 15). `anpx` collects when a lane parks; an executor of smol's
/// says nothing when it goes idle, so here it is a timer.
fn collect() {
    // SAFETY: mi_collect takes no pointers; it walks the calling thread's
    // own heap, which mimalloc allows at any time.
    unsafe { libmimalloc_sys::mi_collect(false) };
}

/// This shell's I/O for the shared commands.
struct AnpxSmol;

impl Shell for AnpxSmol {
    const PROGRAM: &'static str = "anpx-smol";
    const INTEGRATIONS: Integrations = shell_smol::INTEGRATIONS;
    // async-h1 speaks HTTP/1.1 only, so ALPN offers nothing else.
    const HTTP2: bool = false;
    type Gateway = Smol;
    type Receiver = Smol;
    const UPSTREAMS: Upstreams<dyn Upstream> = shell_smol::upstream::UPSTREAMS;

    fn documents(&self) -> Arc<dyn DocumentIo> {
        Arc::new(SmolDocuments)
    }

    fn registry(&self, section: &GatewaySection) -> Result<Arc<dyn Registry>, String> {
        shell_smol::registry::try_registry_from_config(section).map_err(|e| e.to_string())
    }

    fn block_on(&self, future: impl Future<Output = Result<()>>) -> Result<()> {
        let lanes = shell_smol::rt::lane_count();
        shell_smol::rt::block_on_lanes(lanes, anpx_cli::log_writer::parked, collect, future)
            .context("cannot start the lanes")?
    }

    // sqlx's futures need tokio's context, which async-compat provides.
    #[cfg(feature = "sql-registry")]
    fn in_tokio<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        async_compat::Compat::new(future)
    }

    #[cfg(not(feature = "sql-registry"))]
    fn in_tokio<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        future
    }

    // SIGHUP's default action ends the process; caught, it reloads.
    fn watch_hangups(&self, reloader: Option<Arc<Reloader>>) -> Result<()> {
        let hangups = async_signal::Signals::new([async_signal::Signal::Hup])
            .context("cannot listen for SIGHUP")?;
        shell_smol::rt::spawn(async move {
            let mut hangups = std::pin::pin!(hangups);
            while futures_util::StreamExt::next(&mut hangups).await.is_some() {
                anpx_cli::reload::on_hangup(reloader.as_deref());
            }
        })
        .detach();
        Ok(())
    }

    /// Resolves on Ctrl-C or SIGTERM.
    async fn shutdown_signal(&self) -> Result<()> {
        let signals =
            async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
                .context("cannot listen for signals")?;
        let mut signals = std::pin::pin!(signals);
        futures_util::StreamExt::next(&mut signals).await;
        Ok(())
    }
}
