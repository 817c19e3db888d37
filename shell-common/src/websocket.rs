//! WebSocket passthrough on any runtime (the `websocket` extension, see
//! docs/PROTOCOL.md): after the service's `101`, the gateway carries the
//! public client's connection and the receiver carries its upstream
//! connection, each as two byte pumps. The bytes are relayed as they are;
//! nothing here parses WebSocket frames.
//!
//! A shell brings the upgraded connection (hyper's or async-h1's upgrade on
//! the gateway, its upstream socket on the receiver) as a
//! [`futures_util::io`] stream and calls [`serve_public`] or
//! [`serve_upstream`].

use anpx_core::RequestHead;
use bytes::Bytes;
use futures_util::future::{select, Either};
use futures_util::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_util::StreamExt;

use crate::body::BodyStream;
use crate::driver::Driver;
use crate::gateway::ResponseStream;
use crate::receiver::Reply;
use anpx_core::RequestId;
use anpx_core::{Failure, FailureKind};

/// The most bytes read from a socket at once: one piece of body, which the
/// credit windows then pace.
pub const PIECE: usize = 64 * 1024;

/// Carries a public client's WebSocket after its `101`: what the client
/// sends goes to the receiver as request body (each piece awaiting the
/// receiver's credit, so a service that does not read slows the client),
/// what the service sends (`service`) goes to the client.
///
/// Ends when the service's direction ends (then the client's connection is
/// closed after the last byte), when the client's connection fails (then
/// the request is cancelled), or when the request fails. A client that
/// only closes its sending side (TCP half-close) ends the request body and
/// still gets what the service sends.
pub async fn serve_public<I>(io: I, driver: Driver, id: RequestId, mut service: ResponseStream)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let (mut from_client, mut to_client) = io.split();
    let up = async {
        let mut buf = vec![0u8; PIECE];
        loop {
            match from_client.read(&mut buf).await {
                Ok(0) => {
                    // Half-close: the service's direction goes on.
                    return driver.send_body(id.clone(), Bytes::new(), true).await;
                }
                Ok(n) => {
                    let piece = Bytes::copy_from_slice(&buf[..n]);
                    if !driver.send_body(id.clone(), piece, false).await {
                        return false;
                    }
                }
                Err(e) => {
                    tracing::debug!(request = %id, error = %e, "websocket client failed");
                    driver.cancel(id.clone());
                    return false;
                }
            }
        }
    };
    let down = async {
        while let Some(piece) = service.next().await {
            let Ok(piece) = piece else {
                // Cut short (the receiver failed, the idle timeout): the
                // connection is dropped without a clean close.
                return;
            };
            if to_client.write_all(&piece).await.is_err() || to_client.flush().await.is_err() {
                service.fail(&Failure::new(
                    FailureKind::ClientLeft,
                    499,
                    "websocket client went away",
                ));
                return;
            }
        }
        let _ = to_client.close().await;
    };
    let (up, down) = (std::pin::pin!(up), std::pin::pin!(down));
    match select(up, down).await {
        // The client only stopped sending: the service may still talk.
        Either::Left((true, down)) => down.await,
        Either::Left((false, _)) | Either::Right(((), _)) => {}
    }
}

/// Carries the service's side of a WebSocket the service accepted with
/// `101` (status and headers as it sent them): the `101` goes to the
/// gateway, then what the service sends (`from_service`) as response body
/// and what the client sends (`body`) to the service (`to_service`).
///
/// When the client's direction ends, the writing side of the upstream
/// connection is shut down and the service's direction goes on until the
/// service closes; when the service's direction ends the response ends,
/// which ends the request at the gateway.
pub async fn serve_upstream<R, W>(
    reply: Reply,
    headers: Vec<(String, String)>,
    mut body: BodyStream,
    from_service: R,
    mut to_service: W,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin,
{
    let down = reply.tunnel(headers, read_pieces(from_service));
    let up = async {
        while let Some(piece) = body.next().await {
            let Ok(piece) = piece else {
                // Cancelled, or the gateway connection is gone: the task
                // ends and the upstream connection with it.
                return false;
            };
            if to_service.write_all(&piece).await.is_err() || to_service.flush().await.is_err() {
                return false;
            }
        }
        let _ = to_service.close().await;
        true
    };
    let (up, down) = (std::pin::pin!(up), std::pin::pin!(down));
    match select(up, down).await {
        Either::Left((true, down)) => down.await,
        // The client's side failed: nothing more goes either way.
        Either::Left((false, _)) => {}
        // The service closed: the gateway ends the request (and cancels
        // the rest of the client's bytes).
        Either::Right(((), _)) => {}
    }
}

/// A reader as a stream of pieces of at most [`PIECE`] bytes.
pub fn read_pieces<R>(
    reader: R,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin + Send
where
    R: AsyncRead + Unpin + Send,
{
    Box::pin(futures_util::stream::unfold(
        (reader, vec![0u8; PIECE]),
        |(mut reader, mut buf)| async move {
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    let piece = Bytes::copy_from_slice(&buf[..n]);
                    Some((Ok(piece), (reader, buf)))
                }
                Err(e) => Some((Err(e), (reader, buf))),
            }
        },
    ))
}

/// The upgrade request as it goes to the service, HTTP/1.1 on the wire:
/// request line, the end-to-end headers of `head`, then `connection:
/// upgrade` and `upgrade: websocket`. `prefix` is the upstream URL's path,
/// put in front of the request path.
pub fn upgrade_request_bytes(head: &RequestHead, prefix: &str) -> Vec<u8> {
    let (target, mut fields) = crate::receiver::upstream_request_parts(head);
    fields.extend([("connection", "upgrade"), ("upgrade", "websocket")]);
    crate::request_bytes::request_head("GET", prefix, &target, &fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn upgrade_request_keeps_end_to_end_headers_and_adds_the_upgrade() {
        let mut head = RequestHead::new("GET", "/chat")
            .with_query("room=1")
            .with_header("host", "chat.example")
            .with_header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        anpx_core::passthrough::mark_upgrade(&mut head.headers);
        let text = String::from_utf8(upgrade_request_bytes(&head, "/base")).unwrap();
        assert!(
            text.starts_with("GET /base/chat?room=1 HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("host: chat.example\r\n"));
        assert!(text.contains("sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        assert_eq!(text.matches("connection:").count(), 1, "{text}");
        assert!(text.ends_with("connection: upgrade\r\nupgrade: websocket\r\n\r\n"));
    }

    #[test]
    fn pieces_are_bounded_and_end_at_eof() {
        let data = vec![5u8; PIECE * 2 + 10];
        // A cursor is always ready, so the stream completes at once.
        let pieces: Vec<Bytes> = read_pieces(futures_util::io::Cursor::new(data.clone()))
            .map(Result::unwrap)
            .collect::<Vec<_>>()
            .now_or_never()
            .unwrap();
        assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= PIECE));
        assert_eq!(pieces.concat(), data);
    }
}
