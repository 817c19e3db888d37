//! Spinning before a lane sleeps: when a lane runs out of ready tasks
//! shortly after it last had work, it polls its sockets again without
//! blocking instead of putting its thread to sleep.
//!
//! A request at low concurrency makes a lane wait twice: for the service's
//! answer and for the client's next request. Each wait was a sleep in
//! `epoll_wait` and a wake-up, and on the virtual machines tunnels run on a
//! wake-up is costly: the thread comes back with cold caches, and the
//! sleeping virtual CPU must be woken by the host first. Polling for a
//! short window after the last work (as Seastar's reactor polls before it
//! sleeps, and Go's scheduler spins before it parks a thread) answers the
//! next event while the lane is still running. Measured
//! (docs/BENCHMARKS.md, run 20): at one connection a request's two sleeps
//! are gone (0.01 context switches a request against 2,
//! `benches/request-costs.sh`) and anpx's p50 fell by 26–53 µs
//! (`benches/vs-rathole.sh`); at 32 connections on two cores anpx carried
//! 5–9% fewer small requests, anpx-smol as many.
//!
//! The cost is CPU: a lane that had work polls for up to the window before
//! it sleeps, so a tunnel carrying a request every few hundred
//! microseconds keeps a core busy. An idle lane does not spin: work is
//! what the shared code marks with [`worked`] (bytes from a link, a reply
//! from the service, a public request starting), not a timer firing or a
//! poll that found nothing. `ANPX_LANE_SPIN_US=0` turns spinning off.
//!
//! [`Spin`] decides, with the time passed in; each shell calls it from
//! where its lanes park (tokio's park hook, anpx-smol's run loop).

use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

pub use anpx_core::config::LANE_SPIN_ENV;

/// How long a lane polls after its last work when `ANPX_LANE_SPIN_US` is not
/// set: longer than a service on the same machine takes to answer a small
/// request, so that wait is spent polling.
pub const DEFAULT_WINDOW: Duration = Duration::from_micros(150);

/// Largest window `ANPX_LANE_SPIN_US` may set (one second): spinning
/// longer is a busy loop, not a wait for the next event.
pub const MAX_WINDOW: Duration = Duration::from_secs(1);

/// One lane's decision whether to sleep or to poll again.
///
/// ```
/// use std::time::{Duration, Instant};
/// use shell_common::spin::Spin;
///
/// let mut spin = Spin::new(Duration::from_micros(100));
/// let t0 = Instant::now();
/// // The lane served a request and has nothing more to do: it polls.
/// assert!(spin.should_spin(t0, true));
/// // It polled without finding work until the window passed: it sleeps.
/// assert!(spin.should_spin(t0 + Duration::from_micros(99), false));
/// assert!(!spin.should_spin(t0 + Duration::from_micros(100), false));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Spin {
    window: Duration,
    /// Polling ends at this instant unless more work comes.
    until: Option<Instant>,
}

impl Spin {
    /// Polls for `window` after the last work; a zero window never spins.
    pub const fn new(window: Duration) -> Self {
        Spin {
            window,
            until: None,
        }
    }

    /// The lane has no ready task left, and `worked` says whether it moved
    /// a request along since it last ran out: true when it should poll its
    /// sockets again without blocking, false when it should sleep.
    pub fn should_spin(&mut self, now: Instant, worked: bool) -> bool {
        if worked {
            self.until = Some(now + self.window);
        }
        self.until.is_some_and(|until| now < until)
    }
}

/// Why `ANPX_LANE_SPIN_US` was refused.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// Not a whole number of microseconds.
    #[error("{LANE_SPIN_ENV}={value:?} is not a whole number of microseconds")]
    NotANumber {
        /// The variable's value.
        value: String,
    },
    /// More than [`MAX_WINDOW`].
    #[error("{LANE_SPIN_ENV}={value} is more than the largest window, {max} µs", max = MAX_WINDOW.as_micros())]
    TooLong {
        /// The variable's value.
        value: u64,
    },
}

impl From<WindowError> for io::Error {
    fn from(e: WindowError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// The window `ANPX_LANE_SPIN_US` sets (`value`, when the variable is set),
/// else [`DEFAULT_WINDOW`].
///
/// ```
/// use std::time::Duration;
/// use shell_common::spin::{window, DEFAULT_WINDOW};
/// assert_eq!(window(None).unwrap(), DEFAULT_WINDOW);
/// assert_eq!(window(Some("0")).unwrap(), Duration::ZERO);
/// assert!(window(Some("fast")).is_err());
/// ```
pub fn window(value: Option<&str>) -> Result<Duration, WindowError> {
    let Some(value) = value else {
        return Ok(DEFAULT_WINDOW);
    };
    let micros: u64 = value.trim().parse().map_err(|_| WindowError::NotANumber {
        value: value.to_owned(),
    })?;
    let window = Duration::from_micros(micros);
    if window > MAX_WINDOW {
        return Err(WindowError::TooLong { value: micros });
    }
    Ok(window)
}

/// The window of this process, from its environment.
pub fn window_from_env() -> Result<Duration, WindowError> {
    match std::env::var(LANE_SPIN_ENV) {
        Ok(value) => window(Some(&value)),
        Err(std::env::VarError::NotPresent) => window(None),
        Err(std::env::VarError::NotUnicode(value)) => Err(WindowError::NotANumber {
            value: value.to_string_lossy().into_owned(),
        }),
    }
}

thread_local! {
    static LANE: Cell<Spin> = const { Cell::new(Spin::new(Duration::ZERO)) };
    /// What [`worked`] marked since the lane last ran out of work.
    static WORKED: Cell<bool> = const { Cell::new(false) };
}

/// Sets the calling lane thread's window; lanes start with spinning off.
pub fn enter(window: Duration) {
    LANE.set(Spin::new(window));
}

/// Marks that the calling thread moved a request along: bytes came from a
/// link, the service replied, a public request started. Called by the
/// shared code; cheap on a thread that is not a lane.
pub fn worked() {
    WORKED.set(true);
}

/// [`Spin::should_spin`] for the calling lane thread, counting what
/// [`worked`] marked since it last ran out of work. Before it says to
/// spin it offers the core to any other thread ready to run on it
/// (`sched_yield`): on a machine whose cores are all busy, the service or
/// the client a lane waits for may be that thread, and a spin that kept it
/// off the core would delay what the lane waits for.
pub fn should_spin(now: Instant) -> bool {
    let mut lane = LANE.get();
    let spin = lane.should_spin(now, WORKED.take());
    LANE.set(lane);
    if spin {
        std::thread::yield_now();
    }
    spin
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn a_lane_that_worked_polls_until_the_window_passes_without_work() {
        let mut spin = Spin::new(100 * US);
        let t0 = Instant::now();
        assert!(spin.should_spin(t0 + 10 * US, true), "worked");
        // Empty polls keep it spinning inside the window...
        for at in [11, 50, 109] {
            assert!(
                spin.should_spin(t0 + at * US, false),
                "empty poll at {at} µs"
            );
        }
        // ...and not after it.
        assert!(!spin.should_spin(t0 + 110 * US, false));
    }

    #[test]
    fn work_found_while_polling_extends_the_window() {
        let mut spin = Spin::new(100 * US);
        let t0 = Instant::now();
        assert!(spin.should_spin(t0, true));
        // The service answered at 90 µs.
        assert!(spin.should_spin(t0 + 90 * US, true));
        assert!(
            spin.should_spin(t0 + 150 * US, false),
            "past the first window"
        );
        assert!(!spin.should_spin(t0 + 190 * US, false));
    }

    #[test]
    fn a_lane_without_work_does_not_spin() {
        let mut spin = Spin::new(100 * US);
        let t0 = Instant::now();
        assert!(!spin.should_spin(t0, false), "no work yet");
        assert!(spin.should_spin(t0 + 5 * US, true));
        assert!(
            !spin.should_spin(t0 + 200 * US, false),
            "window over: sleep"
        );
        // A timer woke the lane and it had nothing to do.
        assert!(!spin.should_spin(t0 + 10_000 * US, false));
    }

    #[test]
    fn a_zero_window_never_spins() {
        let mut spin = Spin::new(Duration::ZERO);
        assert!(!spin.should_spin(Instant::now(), true));
    }

    #[test]
    fn the_window_is_read_as_microseconds_and_bounded() {
        assert_eq!(window(Some(" 250 ")).unwrap(), 250 * US);
        assert_eq!(window(Some("1000000")).unwrap(), MAX_WINDOW);
        let e = window(Some("1000001")).unwrap_err();
        assert!(e.to_string().contains("largest window"), "{e}");
        for bad in ["", "-1", "1.5", "10us"] {
            let e = window(Some(bad)).unwrap_err();
            assert!(e.to_string().contains("ANPX_LANE_SPIN_US"), "{bad}: {e}");
        }
    }

    #[test]
    fn each_lane_thread_decides_on_its_own() {
        enter(100 * US);
        let t0 = Instant::now();
        assert!(!should_spin(t0), "nothing marked yet");
        worked();
        assert!(should_spin(t0));
        let other = std::thread::spawn(move || {
            worked();
            should_spin(t0)
        });
        assert!(
            !other.join().unwrap(),
            "a thread that did not enter never spins"
        );
    }
}
