//! The per-request response-event queue (`shell_common::driver::events`)
//! beside `futures_channel::mpsc::unbounded`, the channel it replaces, on
//! the two patterns the gateway has: one short response (head, a body
//! piece, end) made, filled and drained on one thread, and a long stream
//! pushed by another thread while the public connection's task awaits it.
//!
//! Run: `cargo bench -p shell-common --bench event_queue`. Criterion prints
//! both times side by side; docs/BENCHMARKS.md keeps the ratio.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use anpx_core::{ResponseEvent, ResponseHead};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use futures_channel::mpsc;
use futures_util::{Stream, StreamExt};
use shell_common::driver::events;

const STREAM_EVENTS: usize = 10_000;

fn piece() -> Bytes {
    Bytes::from_static(&[b'x'; 1024])
}

/// Takes everything `rx` holds now, without waiting.
fn drain<S: Stream<Item = ResponseEvent>>(rx: S) -> usize {
    let mut rx = pin!(rx);
    let mut cx = Context::from_waker(Waker::noop());
    let mut n = 0;
    while let Poll::Ready(Some(_)) = rx.as_mut().poll_next(&mut cx) {
        n += 1;
    }
    n
}

fn one_response(c: &mut Criterion) {
    let mut g = c.benchmark_group("one response, one thread");
    g.bench_function("events", |b| {
        b.iter(|| {
            let (tx, rx) = events();
            let _ = tx.send(ResponseEvent::Head(ResponseHead::new(200)));
            let _ = tx.send(ResponseEvent::Body(piece()));
            let _ = tx.send(ResponseEvent::End);
            drop(tx);
            drain(rx)
        })
    });
    g.bench_function("futures_channel unbounded", |b| {
        b.iter(|| {
            let (tx, rx) = mpsc::unbounded();
            let _ = tx.unbounded_send(ResponseEvent::Head(ResponseHead::new(200)));
            let _ = tx.unbounded_send(ResponseEvent::Body(piece()));
            let _ = tx.unbounded_send(ResponseEvent::End);
            drop(tx);
            drain(rx)
        })
    });
    g.finish();
}

fn stream_across_threads(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut g = c.benchmark_group("10 000 body pieces from another thread");
    g.bench_function("events", |b| {
        b.iter(|| {
            let (tx, rx) = events();
            let producer = std::thread::spawn(move || {
                for _ in 0..STREAM_EVENTS {
                    let _ = tx.send(ResponseEvent::Body(piece()));
                }
            });
            let n = rt.block_on(rx.count());
            producer.join().expect("the producer");
            assert_eq!(n, STREAM_EVENTS);
        })
    });
    g.bench_function("futures_channel unbounded", |b| {
        b.iter(|| {
            let (tx, rx) = mpsc::unbounded();
            let producer = std::thread::spawn(move || {
                for _ in 0..STREAM_EVENTS {
                    let _ = tx.unbounded_send(ResponseEvent::Body(piece()));
                }
            });
            let n = rt.block_on(rx.count());
            producer.join().expect("the producer");
            assert_eq!(n, STREAM_EVENTS);
        })
    });
    g.finish();
}

criterion_group!(benches, one_response, stream_across_threads);
criterion_main!(benches);
