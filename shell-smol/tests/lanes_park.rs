//! `anpx-smol`'s lanes tell their `parked` hook each time they wait, so
//! what a lane gathers meanwhile (the request log lines) goes out then.
//! Its own test binary: lanes start once a process.

use std::cell::Cell;
use std::time::Duration;

use shell_common::lanes::Lane;
use shell_common::receiver::Runtime;
use shell_smol::rt::{block_on_lanes, Smol};

thread_local! {
    static PARKS: Cell<u32> = const { Cell::new(0) };
}

fn parked() {
    PARKS.with(|p| p.set(p.get() + 1));
}

fn parks() -> u32 {
    PARKS.with(Cell::get)
}

/// The parks seen on the current thread across a wait for a timer.
async fn parks_across_a_wait() -> (u32, u32) {
    let before = parks();
    smol::Timer::after(Duration::from_millis(20)).await;
    (before, parks())
}

#[test]
fn each_lane_calls_parked_while_it_waits() {
    let (main, other) = block_on_lanes(2, parked, || {}, async {
        let main = parks_across_a_wait().await;
        let (tx, rx) = smol::channel::bounded(1);
        let _task = Smol.spawn_owned_on(
            Lane(1),
            Box::pin(async move {
                let _ = tx.send(parks_across_a_wait().await).await;
            }),
        );
        (main, rx.recv().await.expect("lane 1 reports"))
    })
    .unwrap();
    assert!(main.1 > main.0, "lane 0 parked while it waited: {main:?}");
    assert!(
        other.1 > other.0,
        "lane 1 parked while it waited: {other:?}"
    );
}
