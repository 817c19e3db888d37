//! The embedding example works as its comments say: over its byte pipe and
//! in virtual time, the handshake agrees on flow control, a slow client
//! holds a streamed response to one credit window, an unanswered request
//! times out, a client that leaves cancels its request at the receiver,
//! and a receiver that falls silent is closed with its request failed.

#[path = "../examples/embedded.rs"]
#[allow(dead_code)]
mod embedded;

use anpx_core::INITIAL_WINDOW;
use anpx_core::{Feature, Features};

#[test]
fn the_embedding_example_runs_every_part_of_the_protocol() {
    let o = embedded::run();
    // The receiver asked for everything; the gateway agreed to all of it.
    assert_eq!(o.agreed, Features::all(), "{o:?}");
    assert!(o.agreed.contains(Feature::FlowControl));
    // The whole streamed body came through...
    assert_eq!(o.big, (200, 2 << 20), "{o:?}");
    // ...but no more than one credit window of it while the client read
    // nothing: the receiver's service was held back, not the gateway's
    // memory filled.
    assert!(o.big_before_reading > 0, "{o:?}");
    assert!(o.big_before_reading as u64 <= INITIAL_WINDOW, "{o:?}");
    assert_eq!(o.slow, 504, "{o:?}");
    assert!(o.cancel_aborted, "{o:?}");
    // Silent past its liveness deadline: closed going-away, its request 502.
    assert_eq!(o.close, Some(1001), "{o:?}");
    assert_eq!(o.last, 502, "{o:?}");
    assert!(o.last_aborted, "{o:?}");
}
