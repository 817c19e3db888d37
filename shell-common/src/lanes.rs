//! Lanes: the threads a shell runs its connections on, each with tasks of
//! its own (`anpx_core::lane`).
//!
//! A shell with more than one lane starts a thread per lane and marks it
//! with [`enter`]; the shared accept loop hands each accepted connection
//! to the next lane in turn ([`Runtime::spawn_owned_on`]), and whatever
//! that connection's task starts stays on its lane. The gateway machine
//! reads [`current`] to know which lane a request came in on and which
//! lane a receiver connection is served on, and keeps a request on its
//! lane where it can: a request that stays on one thread from the
//! client's socket to the receiver connection's needs no hand-off between
//! threads, each of which is a wake-up of a sleeping thread.
//!
//! [`Runtime::spawn_owned_on`]: crate::receiver::Runtime::spawn_owned_on

use std::cell::Cell;
use std::io;
use std::sync::OnceLock;
use std::thread::JoinHandle;

pub use anpx_core::lane::Lane;

/// What a lane's thread waits on besides its tasks: it resolves (with an
/// error, as the sender is dropped) when [`LaneThreads::stop`] is called.
pub type Stopped = futures_channel::oneshot::Receiver<()>;

thread_local! {
    static CURRENT: Cell<Option<Lane>> = const { Cell::new(None) };
}

/// The lane the calling thread runs, if it runs one.
pub fn current() -> Option<Lane> {
    CURRENT.get()
}

/// Marks the calling thread as the one that runs `lane`.
pub fn enter(lane: Lane) {
    CURRENT.set(Some(lane));
}

/// The lane after `lane`, of `count`, in turn.
pub fn next(lane: Lane, count: u16) -> Lane {
    Lane((lane.0 + 1) % count.max(1))
}

/// How many lanes to run: the number in the environment variable `var`
/// (the runtime's own setting, such as `TOKIO_WORKER_THREADS`) when it
/// holds a positive one, else one per core.
pub fn count(var: &str) -> u16 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(cores)
        .min(usize::from(u16::MAX)) as u16
}

/// What a shell runs each lane with (a runtime's handle, an executor), by
/// lane: set once a process, when the lanes start.
pub struct LaneSet<T>(OnceLock<Vec<T>>);

impl<T> LaneSet<T> {
    /// No lanes yet.
    pub const fn new() -> Self {
        LaneSet(OnceLock::new())
    }

    /// Sets the lanes; a second call is refused ([`started_twice`]).
    pub fn set(&self, lanes: Vec<T>) -> io::Result<()> {
        self.0.set(lanes).map_err(|_| started_twice())
    }

    /// Whether the lanes were set.
    pub fn is_set(&self) -> bool {
        self.0.get().is_some()
    }

    /// How many lanes there are: 1 before they are set.
    pub fn count(&self) -> u16 {
        self.0.get().map_or(1, |l| l.len() as u16)
    }

    /// What `lane` runs with, once the lanes are set.
    pub fn get(&self, lane: Lane) -> Option<&T> {
        self.0.get()?.get(usize::from(lane.0))
    }

    /// What the calling thread's lane runs with, when it runs one.
    pub fn here(&self) -> Option<&T> {
        self.get(current()?)
    }
}

impl<T> Default for LaneSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The threads of lanes 1 and up (lane 0 is the caller's), named
/// `anpx-lane-N`.
pub struct LaneThreads {
    stops: Vec<futures_channel::oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl LaneThreads {
    /// Starts lanes 1 to `count - 1`: `make(lane)`, on the calling thread
    /// (where an error can still stop the start), makes what the lane
    /// runs with, and `run(it, stopped)` runs on the lane's own thread,
    /// marked with [`enter`], until `stopped` resolves.
    pub fn start<R: Send + 'static>(
        count: u16,
        mut make: impl FnMut(Lane) -> io::Result<R>,
        run: impl Fn(R, Stopped) + Clone + Send + 'static,
    ) -> io::Result<LaneThreads> {
        let mut lanes = LaneThreads {
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for k in 1..count.max(1) {
            let with = make(Lane(k))?;
            let (stop, stopped) = futures_channel::oneshot::channel();
            lanes.stops.push(stop);
            let run = run.clone();
            let thread = std::thread::Builder::new()
                .name(format!("anpx-lane-{k}"))
                .spawn(move || {
                    enter(Lane(k));
                    run(with, stopped);
                })?;
            lanes.threads.push(thread);
        }
        Ok(lanes)
    }

    /// Tells every lane to stop and waits until its thread has ended.
    pub fn stop(self) {
        drop(self.stops);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// The error of a second start of the lanes in one process: the tasks
/// handed to lanes go to the first start's.
pub fn started_twice() -> io::Error {
    io::Error::other("the lanes were started already in this process")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_on_no_lane_until_it_enters_one() {
        std::thread::spawn(|| {
            assert_eq!(current(), None);
            enter(Lane(3));
            assert_eq!(current(), Some(Lane(3)));
        })
        .join()
        .unwrap();
        std::thread::spawn(|| assert_eq!(current(), None))
            .join()
            .unwrap();
    }

    #[test]
    fn lane_threads_run_marked_until_stopped() {
        let (tx, rx) = std::sync::mpsc::channel();
        let lanes = LaneThreads::start(
            3,
            |lane| Ok(lane.0 * 10),
            move |with, stopped| {
                tx.send((current(), with)).unwrap();
                let _ = wait_until_stopped(stopped);
                tx.send((current(), u16::MAX)).unwrap();
            },
        )
        .unwrap();
        let mut started: Vec<_> = rx.iter().take(2).collect();
        started.sort();
        assert_eq!(started, [(Some(Lane(1)), 10), (Some(Lane(2)), 20)]);
        lanes.stop();
        let stopped: Vec<_> = rx.iter().collect();
        assert_eq!(stopped.len(), 2, "both lanes ended: {stopped:?}");
    }

    /// Polls `stopped` on this thread until it resolves.
    fn wait_until_stopped(mut stopped: Stopped) -> Result<(), futures_channel::oneshot::Canceled> {
        loop {
            match stopped.try_recv() {
                Ok(Some(())) => return Ok(()),
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(1)),
                Err(e) => return Err(e),
            }
        }
    }

    #[test]
    fn a_lane_set_is_set_once() {
        let set = LaneSet::new();
        assert_eq!((set.count(), set.get(Lane(0))), (1, None));
        set.set(vec!["zero", "one"]).unwrap();
        assert!(set.set(vec!["again"]).is_err());
        assert_eq!(set.count(), 2);
        assert_eq!(set.get(Lane(1)), Some(&"one"));
        assert_eq!(set.get(Lane(2)), None);
        std::thread::spawn(move || {
            assert_eq!(set.here(), None);
            enter(Lane(1));
            assert_eq!(set.here(), Some(&"one"));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn lanes_are_taken_in_turn() {
        assert_eq!(next(Lane(0), 2), Lane(1));
        assert_eq!(next(Lane(1), 2), Lane(0));
        assert_eq!(next(Lane(0), 1), Lane(0));
        assert_eq!(next(Lane(0), 0), Lane(0));
    }
}
