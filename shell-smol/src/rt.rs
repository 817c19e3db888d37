//! smol's half of the shared loops: spawning, timers, accepting, and
//! the lanes (an executor per core).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::tcp::{TcpListener, TcpStream};

use shell_common::lanes::{self, Lane, LaneSet, LaneThreads};
use shell_common::receiver::{BoxFuture, Owned, OwnedTask, Runtime};
use shell_common::shell_io::ShellIo;
use shell_common::spin;

/// smol's I/O: tasks on smol's global executor, timers from async-io,
/// and what the shared gateway and receiver are run with
/// ([`crate::gateway::Gateway`], [`crate::receiver::Receiver`]).
#[derive(Default)]
pub struct Smol;

impl ShellIo for Smol {
    const NAME: &'static str = "anpx-smol";
    type Listener = TcpAccept;
    type Task = smol::Task<()>;

    fn start<F: Future<Output = ()> + Send + 'static>(task: F) -> smol::Task<()> {
        spawn(task)
    }

    fn join(task: smol::Task<()>) -> impl Future<Output = ()> + Send {
        task
    }

    async fn cancel(task: smol::Task<()>) {
        task.cancel().await;
    }
}

impl Runtime for Smol {
    fn spawn(&self, task: BoxFuture<()>) {
        spawn(task).detach();
    }

    fn spawn_owned(&self, task: BoxFuture<()>) -> Owned {
        Owned::new(OwnedSmol(spawn(task)))
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(async move {
            smol::Timer::at(at).await;
        })
    }

    fn lanes(&self) -> u16 {
        LANES.count()
    }

    fn spawn_owned_on(&self, lane: Lane, task: BoxFuture<()>) -> Owned {
        match LANES.get(lane) {
            Some(executor) => Owned::new(OwnedSmol(executor.spawn(task))),
            None => self.spawn_owned(task),
        }
    }
}

/// The executors of the lanes ([`block_on_lanes`]), by lane.
static LANES: LaneSet<Arc<smol::Executor<'static>>> = LaneSet::new();

/// Runs `future` in a task of the calling lane's executor, or of smol's
/// global executor on a thread that runs no lane.
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> smol::Task<T> {
    match LANES.here() {
        Some(executor) => executor.spawn(future),
        None => smol::spawn(future),
    }
}

/// How often each lane calls [`block_on_lanes`]'s `tidy`.
pub const TIDY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Calls `tidy` every [`TIDY_EVERY`], forever.
async fn tidying(tidy: fn()) {
    loop {
        smol::Timer::after(TIDY_EVERY).await;
        tidy();
    }
}

/// How many lanes [`block_on_lanes`] runs when not told: one per core,
/// or `SMOL_THREADS` (smol's own setting for its executor threads).
pub fn lane_count() -> u16 {
    lanes::count("SMOL_THREADS")
}

/// Runs `future` to its end on `count` lanes ([`shell_common::lanes`]):
/// lane 0 is the calling thread, and each other lane a thread of its own.
/// Each lane runs an executor of its own, so a task and whatever it
/// spawns ([`spawn`]) stay on their lane's thread; async-io's one reactor
/// serves them all. Each lane calls `tidy` every [`TIDY_EVERY`], and
/// `parked` each time it has no task ready to run (it is about to wait
/// for I/O or a timer, as tokio's `on_thread_park`). When `future` ends
/// the other lanes stop running their tasks, and each lane's thread, the
/// calling one last, calls `parked` once more. Once a process: a second
/// call is refused. A lane that had work polls again instead of waiting
/// for the window `ANPX_LANE_SPIN_US` sets ([`shell_common::spin`]), and
/// calls `parked` only when it really waits; an invalid window is an
/// error.
pub fn block_on_lanes<F: Future>(
    count: u16,
    parked: fn(),
    tidy: fn(),
    future: F,
) -> std::io::Result<F::Output> {
    let window = spin::window_from_env()?;
    let executors: Vec<_> = (0..count.max(1))
        .map(|_| Arc::new(smol::Executor::new()))
        .collect();
    LANES.set(executors.clone())?;
    for executor in &executors {
        executor.spawn(tidying(tidy)).detach();
    }
    let make = |lane: Lane| Ok(executors[usize::from(lane.0)].clone());
    let run = move |executor: Arc<smol::Executor<'static>>, stopped| {
        spin::enter(window);
        let run = std::pin::pin!(executor.run(stopped));
        let _ = smol::block_on(Parking::new(run, parked));
        parked();
    };
    let threads = LaneThreads::start(count, make, run)?;
    lanes::enter(Lane(0));
    spin::enter(window);
    let run = std::pin::pin!(executors[0].run(future));
    let out = smol::block_on(Parking::new(run, parked));
    threads.stop();
    parked();
    Ok(out)
}

/// An executor's run future (pinned where it lives) that, each time it is
/// pending, either wakes itself to poll again (the lane spins,
/// [`shell_common::spin`]) or calls `parked`. Under `block_on` that is when
/// the thread is about to park: `Executor::run` is pending only once no
/// task is ready (or, every 200 tasks, when it yields to let the reactor
/// in).
struct Parking<'a, F> {
    run: std::pin::Pin<&'a mut F>,
    parked: fn(),
}

impl<'a, F> Parking<'a, F> {
    fn new(run: std::pin::Pin<&'a mut F>, parked: fn()) -> Self {
        Parking { run, parked }
    }
}

impl<F: Future> Future for Parking<'_, F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let poll = self.run.as_mut().poll(cx);
        if poll.is_pending() {
            if spin::should_spin(Instant::now()) {
                // Woken at once, `block_on` polls the reactor without
                // blocking and polls this again (shell_common::spin).
                cx.waker().wake_by_ref();
            } else {
                (self.parked)();
            }
        }
        poll
    }
}

/// A smol task, which cancels itself when dropped.
pub(crate) struct OwnedSmol(pub(crate) smol::Task<()>);

impl OwnedTask for OwnedSmol {
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

// async-io's one reactor serves every thread: a socket moves between
// lanes as it is.
shell_common::tcp_listen!(
    TcpAccept,
    TcpListener,
    TcpStream,
    TcpStream,
    Ok::<TcpStream, std::io::Error>,
    Ok::<TcpStream, std::io::Error>
);

/// The most a piece of a body read by [`body_stream`] holds.
const PIECE: usize = 64 * 1024;
/// A read buffer with less room than this left is replaced before a read.
const MIN_ROOM: usize = 4 * 1024;

/// Reads an async-h1 body as a stream of pieces.
///
/// The pieces are cut from one zeroed buffer, read into until little room
/// is left, and a body of known length gets a buffer of that size, rather
/// than a new 64 KiB zeroed buffer for every read, even of a 40-byte body.
pub(crate) fn body_stream(
    body: http_types::Body,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin {
    use futures_util::AsyncReadExt;
    // One byte more than a known length, so its end is read in the same
    // buffer.
    let sized = body
        .len()
        .and_then(|n| n.checked_add(1))
        .filter(|&n| n <= PIECE);
    let reader = body.into_reader();
    let buf = bytes::BytesMut::zeroed(sized.unwrap_or(PIECE));
    Box::pin(futures_util::stream::unfold(
        (reader, buf, sized.is_some(), false),
        |(mut reader, mut buf, mut sized, done)| async move {
            if done {
                return None;
            }
            // A buffer sized to the body keeps its last byte for reading
            // the end; any other is replaced when little room is left.
            if buf.is_empty() || (!sized && buf.len() < MIN_ROOM) {
                buf = bytes::BytesMut::zeroed(PIECE);
                sized = false;
            }
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    let piece = buf.split_to(n).freeze();
                    Some((Ok(piece), (reader, buf, sized, false)))
                }
                Err(e) => Some((Err(e), (reader, buf, sized, true))),
            }
        },
    ))
}
