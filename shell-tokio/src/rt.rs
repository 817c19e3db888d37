//! tokio's half of the shared loops: spawning, timers, accepting, and
//! the lanes (a current-thread runtime per core).

use std::future::Future;
use std::io;
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

use shell_common::lanes::{self, Lane, LaneSet, LaneThreads};
use shell_common::receiver::{BoxFuture, Owned, OwnedTask, Runtime};
use shell_common::shell_io::ShellIo;

/// tokio's I/O: tasks and timers on the current tokio runtime, and what
/// the shared gateway and receiver are run with
/// ([`crate::gateway::Gateway`], [`crate::receiver::Receiver`]).
#[derive(Default)]
pub struct Tokio;

impl ShellIo for Tokio {
    const NAME: &'static str = "anpx";
    type Listener = TcpAccept;
    type Task = tokio::task::JoinHandle<()>;

    fn start<F: Future<Output = ()> + Send + 'static>(task: F) -> Self::Task {
        tokio::spawn(task)
    }

    async fn join(task: Self::Task) {
        let _ = task.await;
    }

    fn cancel(task: Self::Task) -> impl Future<Output = ()> + Send {
        task.abort();
        async move {
            let _ = task.await;
        }
    }
}

impl Runtime for Tokio {
    fn spawn(&self, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn spawn_owned(&self, task: BoxFuture<()>) -> Owned {
        Owned::new(AbortOnDrop(tokio::spawn(task)))
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep_until(at.into()))
    }

    fn lanes(&self) -> u16 {
        LANES.count()
    }

    fn spawn_owned_on(&self, lane: Lane, task: BoxFuture<()>) -> Owned {
        match LANES.get(lane) {
            Some(handle) => Owned::new(AbortOnDrop(handle.spawn(task))),
            None => self.spawn_owned(task),
        }
    }
}

/// The runtimes of the lanes ([`block_on_lanes`]), by lane.
static LANES: LaneSet<Handle> = LaneSet::new();

/// How many lanes [`block_on_lanes`] runs when not told: one per core,
/// or `TOKIO_WORKER_THREADS` (tokio's own setting for its worker count).
pub fn lane_count() -> u16 {
    lanes::count("TOKIO_WORKER_THREADS")
}

/// Runs `future` to its end on `count` lanes ([`shell_common::lanes`]):
/// lane 0 is the calling thread, and each other lane a thread of its own.
/// Each lane is a current-thread runtime made by `runtime`, so a task and
/// whatever it spawns stay on their lane's thread. When `future` ends the
/// other lanes stop (their tasks are dropped), and each lane's thread,
/// the calling one last, calls `lane_ends`. Once a process: a second call
/// is refused. Each lane spins before it sleeps for the window
/// `ANPX_LANE_SPIN_US` sets ([`shell_common::spin`]) when `runtime`'s park
/// hook asks [`crate::spin::spins`]; an invalid window is an error.
pub fn block_on_lanes<F: Future>(
    count: u16,
    runtime: impl Fn() -> io::Result<tokio::runtime::Runtime>,
    lane_ends: fn(),
    future: F,
) -> io::Result<F::Output> {
    if LANES.is_set() {
        return Err(lanes::started_twice());
    }
    let window = shell_common::spin::window_from_env()?;
    let runtime = || {
        let rt = runtime()?;
        rt.spawn(crate::spin::Spinner);
        Ok::<_, io::Error>(rt)
    };
    let first = runtime()?;
    let mut handles = vec![first.handle().clone()];
    let make = |_| {
        let rt = runtime()?;
        handles.push(rt.handle().clone());
        Ok(rt)
    };
    let run = move |rt: tokio::runtime::Runtime, stopped| {
        shell_common::spin::enter(window);
        let _ = rt.block_on(stopped);
        drop(rt);
        lane_ends();
    };
    let threads = LaneThreads::start(count, make, run)?;
    LANES.set(handles)?;
    lanes::enter(Lane(0));
    shell_common::spin::enter(window);
    let out = first.block_on(future);
    threads.stop();
    lane_ends();
    Ok(out)
}

/// A tokio task aborted when its handle is dropped (a `JoinHandle` alone
/// would detach it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl OwnedTask for AbortOnDrop {
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// A tokio socket is registered with the event loop of the runtime that
// made it: one moving to another lane's runtime leaves as a std socket
// and registers again there.
shell_common::tcp_listen!(
    TcpAccept,
    TcpListener,
    TcpStream,
    std::net::TcpStream,
    TcpStream::into_std,
    TcpStream::from_std
);
