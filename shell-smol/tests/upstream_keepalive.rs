//! The receiver's upstream reuses a connection whose response was read to
//! its end, and only such a connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{AsyncReadExt, AsyncWriteExt};
use http_types::{Method, Request, Url};
use shell_smol::upstream::{HttpUpstream, Upstream};
use smol::net::{TcpListener, TcpStream};

/// How a test service answers each request on a connection.
#[derive(Clone, Copy)]
enum Answer {
    /// `ok` with a content-length, connection kept open.
    Length,
    /// `ok` chunked, connection kept open.
    Chunked,
    /// `ok` with a content-length, then the connection is closed (no
    /// `connection: close`: the service just closes idle connections).
    ThenClose,
    /// `ok` with `connection: close`, the connection left open.
    SaysClose,
}

/// Reads one request head; false at the end of the connection.
async fn read_head(tcp: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// A service answering every request with `answer`; the counter says how
/// many connections it accepted.
async fn service(answer: Answer) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    smol::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            smol::spawn(async move {
                while read_head(&mut tcp).await {
                    let wire: &[u8] = match answer {
                        Answer::Length | Answer::ThenClose => {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        }
                        Answer::Chunked => {
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                        }
                        Answer::SaysClose => {
                            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
                        }
                    };
                    if tcp.write_all(wire).await.is_err() {
                        return;
                    }
                    if matches!(answer, Answer::ThenClose) {
                        return;
                    }
                }
            })
            .detach();
        }
    })
    .detach();
    (format!("http://{addr}"), accepted)
}

/// Sends `n` requests one after the other, each body read to its end, and
/// returns the bodies; fails after five seconds.
async fn sequential(upstream: &str, n: usize) -> Vec<Vec<u8>> {
    let upstream = HttpUpstream::new(upstream).unwrap();
    let work = smol::spawn(async move {
        let mut bodies = Vec::new();
        for _ in 0..n {
            let request = Request::new(Method::Get, Url::parse("http://upstream/x").unwrap());
            let mut response = upstream.call(request).await.unwrap();
            bodies.push(response.body_bytes().await.unwrap());
            // Let a service's close arrive before the next request.
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        bodies
    });
    let deadline = async {
        smol::Timer::after(Duration::from_secs(5)).await;
        panic!("the requests did not complete");
    };
    smol::future::or(work, deadline).await
}

#[test]
fn requests_one_after_another_share_a_connection() {
    for answer in [Answer::Length, Answer::Chunked] {
        smol::block_on(async {
            let (url, accepted) = service(answer).await;
            assert_eq!(sequential(&url, 3).await, vec![b"ok".to_vec(); 3]);
            assert_eq!(accepted.load(Ordering::SeqCst), 1);
        })
    }
}

#[test]
fn a_connection_the_service_closed_is_replaced() {
    smol::block_on(async {
        let (url, accepted) = service(Answer::ThenClose).await;
        assert_eq!(sequential(&url, 3).await, vec![b"ok".to_vec(); 3]);
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    })
}

#[test]
fn connection_close_is_honoured() {
    smol::block_on(async {
        let (url, accepted) = service(Answer::SaysClose).await;
        assert_eq!(sequential(&url, 2).await, vec![b"ok".to_vec(); 2]);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
}
