//! `anpx-smol`'s lanes poll instead of sleeping for a window after they
//! had work (`shell_common::spin`): `parked`, called only when a lane
//! really waits, is not called during a short wait right after work, and
//! is once the window passes. Its own test binary: lanes start once a
//! process, and the window is read from the environment when they do.

use std::cell::Cell;
use std::time::Duration;

use shell_smol::rt::block_on_lanes;

thread_local! {
    static PARKS: Cell<u32> = const { Cell::new(0) };
}

fn parked() {
    PARKS.with(|p| p.set(p.get() + 1));
}

fn parks() -> u32 {
    PARKS.with(Cell::get)
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
    let (short, long) = block_on_lanes(1, parked, || {}, async {
        work();
        let before = parks();
        smol::Timer::after(Duration::from_millis(20)).await;
        let short = parks() - before;
        // The window (300 ms) passes during this wait.
        let before = parks();
        smol::Timer::after(Duration::from_millis(900)).await;
        (short, parks() - before)
    })
    .unwrap();
    assert_eq!(
        short, 0,
        "the lane parked during a 20 ms wait right after work"
    );
    assert!(
        long > 0,
        "the lane never parked through 900 ms without work"
    );
}
