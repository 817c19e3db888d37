//! Responses from the local HTTP service reach the receiver whole, however
//! the service's bytes are split on the wire.

use std::time::Duration;

use futures_util::{AsyncReadExt, AsyncWriteExt};
use http_types::{Method, Request, Url};
use shell_smol::upstream::{HttpUpstream, Upstream};
use smol::net::TcpListener;

/// A one-shot service that reads a request head and writes `pieces`,
/// pausing between them so each arrives in its own read.
async fn serve_pieces(pieces: Vec<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    smol::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut byte).await.unwrap() == 0 {
                return;
            }
            head.push(byte[0]);
        }
        for piece in pieces {
            tcp.write_all(&piece).await.unwrap();
            tcp.flush().await.unwrap();
            smol::Timer::after(Duration::from_millis(50)).await;
        }
    })
    .detach();
    format!("http://{addr}")
}

/// Calls the service and reads the whole body, failing after five seconds.
/// The call runs in a task of its own, so that nothing but its own I/O can
/// wake it: a read that stalls stays stalled.
async fn fetch(upstream: &str, method: Method) -> (u16, Vec<u8>) {
    let upstream = HttpUpstream::new(upstream).unwrap();
    let request = Request::new(method, Url::parse("http://upstream/x").unwrap());
    let work = smol::spawn(async move {
        let mut response = upstream.call(request).await.unwrap();
        let body = response.body_bytes().await.unwrap();
        (u16::from(response.status()), body)
    });
    let deadline = async {
        smol::Timer::after(Duration::from_secs(5)).await;
        panic!("the response body never ended");
    };
    smol::future::or(work, deadline).await
}

const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";

#[test]
fn chunked_body_whose_last_line_is_split_after_its_cr() {
    smol::block_on(async {
        let mut first = CHUNKED_HEAD.to_vec();
        first.extend_from_slice(b"5\r\nhello\r\n0\r\n\r");
        let url = serve_pieces(vec![first, b"\n".to_vec()]).await;
        assert_eq!(fetch(&url, Method::Get).await, (200, b"hello".to_vec()));
    })
}

#[test]
fn chunked_body_split_inside_sizes_and_data() {
    smol::block_on(async {
        let mut wire = CHUNKED_HEAD.to_vec();
        wire.extend_from_slice(b"a\r\n0123456789\r\n3;x=y\r\nabc\r\n0\r\ntrailer: 1\r\n\r\n");
        let pieces = wire.chunks(7).map(<[u8]>::to_vec).collect();
        let url = serve_pieces(pieces).await;
        assert_eq!(
            fetch(&url, Method::Get).await,
            (200, b"0123456789abc".to_vec())
        );
    })
}

#[test]
fn head_response_has_no_body_whatever_its_length() {
    smol::block_on(async {
        let url = serve_pieces(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n".to_vec()
        ])
        .await;
        assert_eq!(fetch(&url, Method::Head).await, (200, Vec::new()));
    })
}

#[test]
fn body_up_to_the_close_without_length_or_chunking() {
    smol::block_on(async {
        let url = serve_pieces(vec![
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nab".to_vec(),
            b"cd".to_vec(),
        ])
        .await;
        assert_eq!(fetch(&url, Method::Get).await, (200, b"abcd".to_vec()));
    })
}

#[test]
fn a_declared_length_cut_short_fails_instead_of_passing_for_whole() {
    smol::block_on(async {
        let url = serve_pieces(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec()
        ])
        .await;
        let upstream = HttpUpstream::new(&url).unwrap();
        let request = Request::new(Method::Get, Url::parse("http://upstream/x").unwrap());
        let mut response = upstream.call(request).await.unwrap();
        assert!(response.body_bytes().await.is_err());
    })
}

/// A service that reads only the request head, then answers with `size`
/// bytes and closes. Bytes the client sent after the head are still unread
/// when it closes, and the kernel then answers with a reset that can
/// destroy the end of the response before the client reads it.
async fn serve_head_only_then_close(size: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A thread of its own: the big write must not hold up the shared
    // executor the other tests run on.
    std::thread::spawn(move || {
        smol::block_on(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if tcp.read(&mut byte).await.unwrap() == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            // Whatever follows the head has arrived by now.
            smol::Timer::after(Duration::from_millis(100)).await;
            let mut response =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n").into_bytes();
            response.resize(response.len() + size, b'x');
            let _ = tcp.write_all(&response).await;
        })
    });
    format!("http://{addr}")
}

/// A request without a declared length whose body turns out empty (a GET
/// relayed by the gateway) goes out without a body: no chunked framing the
/// service would leave unread.
#[test]
fn a_bodiless_request_of_unknown_length_sends_no_body() {
    smol::block_on(async {
        let size = 16 << 20;
        let url = serve_head_only_then_close(size).await;
        let upstream = HttpUpstream::new(&url).unwrap();
        let mut request = Request::new(Method::Get, Url::parse("http://upstream/x").unwrap());
        request.set_body(http_types::Body::from_reader(
            futures_util::io::BufReader::new(futures_util::io::empty()),
            None,
        ));
        // Read slower than the service writes, on this test's own thread:
        // the service closes while bytes are still queued for us, so a
        // reset would lose them.
        let work = async move {
            let mut body = upstream.call(request).await.unwrap().take_body();
            let (mut total, mut buf) = (0, vec![0u8; 64 * 1024]);
            loop {
                let n = body.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(total);
                }
                total += n;
                smol::Timer::after(Duration::from_millis(1)).await;
            }
        };
        let got = smol::future::or(work, async {
            smol::Timer::after(Duration::from_secs(60)).await;
            panic!("no answer");
        })
        .await;
        assert_eq!(got.unwrap(), size);
    })
}
