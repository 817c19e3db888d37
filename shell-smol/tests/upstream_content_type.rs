//! A request whose body's length is not declared reaches the service with
//! the `content-type` the client sent, as sent, and with none when the
//! client sent none (async-h1 would label it `application/octet-stream`).

use std::time::Duration;

use futures_util::{AsyncReadExt, AsyncWriteExt};
use http_types::{Body, Method, Request, Url};
use shell_smol::upstream::{HttpUpstream, Upstream};
use smol::net::TcpListener;

/// Sends `request` to a service that answers `204` and returns the head
/// the service read, lowercased.
async fn head_seen(request: Request) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let service = smol::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "head cut short");
            head.push(byte[0]);
        }
        tcp.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8(head).unwrap().to_ascii_lowercase()
    });
    let upstream = HttpUpstream::new(&url).unwrap();
    let call = async {
        upstream.call(request).await.unwrap();
        service.await
    };
    let deadline = async {
        smol::Timer::after(Duration::from_secs(5)).await;
        panic!("the request did not complete");
    };
    smol::future::or(call, deadline).await
}

/// A request as the receiver makes it from the gateway's head: a body of
/// undeclared length (the upstream looks at it before it frames it), and
/// the client's `content-type` only.
fn request(content_type: Option<&str>) -> Request {
    let mut request = Request::new(Method::Post, Url::parse("http://upstream/x").unwrap());
    request.set_body(Body::from_reader(futures_util::io::empty(), None));
    request.remove_header("content-type");
    if let Some(value) = content_type {
        request.insert_header("content-type", value);
    }
    request
}

#[test]
fn a_content_type_is_forwarded_as_sent_even_when_it_does_not_parse() {
    smol::block_on(async {
        for value in ["text/plain; charset=utf-8", "not a media type"] {
            let head = head_seen(request(Some(value))).await;
            assert!(
                head.contains(&format!("content-type: {value}\r\n")),
                "{value:?} reached the service: {head}"
            );
        }
    })
}

#[test]
fn no_content_type_is_added() {
    smol::block_on(async {
        let head = head_seen(request(None)).await;
        assert!(!head.contains("content-type"), "{head}");
    })
}
