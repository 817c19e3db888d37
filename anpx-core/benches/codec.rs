//! Frame codec throughput against its floor: every byte of a frame has to be
//! CRC-32'd once on the way in and once on the way out, so bare
//! `crc32fast::hash` over a buffer of the same size is the yardstick.
//!
//! `cargo bench -p anpx-core --bench codec`

use std::hint::black_box;

use anpx_core::frame::{Frame, FrameLimits, MessageKind, Meta};
use anpx_core::{RequestId, ResponseHead};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SIZES: [(&str, usize); 3] = [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)];

/// An unchunked response, the frame the reference's receiver sends for
/// every answer whatever its size.
fn response(body_len: usize) -> Frame {
    // Deterministic, incompressible-looking bytes (an LCG): no all-zero
    // buffer that some layer could special-case.
    let mut state = 0x2545_f491_u32;
    let body: Vec<u8> = (0..body_len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    Frame {
        kind: MessageKind::Response,
        request_id: RequestId::from("550e8400-e29b-41d4-a716-446655440000"),
        chunk: None,
        meta: Some(Meta::Response(
            ResponseHead::new(200)
                .with_header("content-type", "application/octet-stream")
                .with_header("content-length", body_len.to_string()),
        )),
        body: Some(Bytes::from(body)),
    }
}

fn codec(c: &mut Criterion) {
    let cases: Vec<(&str, Frame, Bytes)> = SIZES
        .iter()
        .map(|&(name, len)| {
            let frame = response(len);
            let wire = frame.encode().expect("encode");
            (name, frame, wire)
        })
        .collect();
    let limits = FrameLimits::default();

    let mut group = c.benchmark_group("crc32");
    for (name, _, wire) in &cases {
        let buf = wire.to_vec();
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &buf, |b, buf| {
            b.iter(|| crc32fast::hash(black_box(buf)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("encode");
    for (name, frame, wire) in &cases {
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), frame, |b, frame| {
            b.iter(|| black_box(frame).encode().expect("encode"))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode");
    for (name, frame, wire) in &cases {
        assert_eq!(
            &Frame::decode(wire.clone(), &limits).expect("decode"),
            frame
        );
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), wire, |b, wire| {
            // Cloning `Bytes` is a reference-count bump, not a copy.
            b.iter(|| Frame::decode(black_box(wire.clone()), &limits).expect("decode"))
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
