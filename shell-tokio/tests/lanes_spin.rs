//! `anpx`'s lanes poll instead of sleeping for a window after they had
//! work (`shell_common::spin`), and sleep when the window passes or when
//! they had none. Its own test binary: lanes start once a process, and the
//! window is read from the environment when they do.

use std::cell::Cell;
use std::time::Duration;

use shell_tokio::rt::block_on_lanes;

thread_local! {
    static SLEEPS: Cell<u32> = const { Cell::new(0) };
}

/// The park hook as `anpx` installs it: a lane that spins does not sleep.
fn parked() {
    if !shell_tokio::spin::spins() {
        SLEEPS.with(|s| s.set(s.get() + 1));
    }
}

fn sleeps() -> u32 {
    SLEEPS.with(Cell::get)
}

/// What the shared code does when it moves a request along.
fn work() {
    shell_common::spin::worked();
}

#[test]
fn a_lane_that_worked_polls_through_a_short_wait_and_sleeps_through_a_long_one() {
    // SAFETY: set before any thread of this test binary reads the
    // environment; the lanes read it once, when they start.
    unsafe { std::env::set_var(shell_common::spin::LANE_SPIN_ENV, "300000") };
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(parked)
            .build()
    };
    let (short, long) = block_on_lanes(1, runtime, || {}, async {
        work();
        let before = sleeps();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let short = sleeps() - before;
        // The window (300 ms) passes during this wait.
        let before = sleeps();
        tokio::time::sleep(Duration::from_millis(900)).await;
        (short, sleeps() - before)
    })
    .unwrap();
    assert_eq!(
        short, 0,
        "the lane slept during a 20 ms wait right after work"
    );
    assert!(long > 0, "the lane never slept through 900 ms without work");
}
