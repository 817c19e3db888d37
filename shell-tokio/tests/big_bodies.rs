//! Bodies larger than any frame or buffer limit (100 MB, past the 64 MiB
//! a whole message may take) through the `anpx` and `anpx-smol` binaries
//! with their default configuration: a download, an upload with a
//! Content-Length and a chunked upload each arrive whole, sha256 checked at
//! the far end. The 2 GiB run with memory bounds is `benches/bodies.rs`.

mod support;
#[path = "support/transfer.rs"]
mod transfer;

use support::Binary;
use transfer::{expected_sha256, Tunnel};

const SIZE: u64 = 100_000_000;

async fn each_way(gateway: Binary, receiver: Binary) {
    let t = Tunnel::start(gateway, receiver, &[]).await;
    let want = expected_sha256(SIZE, 7).await;

    let down = t.download(SIZE, 7).await;
    assert_eq!(down.status, 200);
    assert!(down.complete, "download cut after {} bytes", down.bytes);
    assert_eq!((down.bytes, down.sha256.as_str()), (SIZE, want.as_str()));

    for announce in [true, false] {
        let up = t.upload(SIZE, 7, announce).await;
        assert_eq!(up.status, 200, "content-length {announce}: {}", up.text);
        assert!(up.complete);
        assert_eq!(
            up.text,
            format!("{SIZE} {want}"),
            "the upstream got the whole body (content-length {announce})"
        );
    }
    let (g, r) = t.peak_rss_kib();
    eprintln!(
        "{gateway:?} gateway, {receiver:?} receiver: 100 MB each way; peak RSS {g} KiB / {r} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_each_way_through_anpx() {
    each_way(Binary::Anpx, Binary::Anpx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_each_way_through_anpx_smol() {
    each_way(Binary::AnpxSmol, Binary::AnpxSmol).await;
}
