//! A tokio stream as a futures-io one, for the code in shell-common that
//! reads and writes WebSocket frames on futures-io streams. Unlike
//! `async_tungstenite::tokio::TokioAdapter` (and tokio-util's `Compat`),
//! it passes vectored writes through: a large frame's header and payload
//! then leave in one write instead of two.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::ReadBuf;

/// `T`, a tokio stream, as a futures-io stream.
#[derive(Debug)]
pub struct FuturesIo<T>(pub T);

impl<T: tokio::io::AsyncRead + Unpin> futures_util::io::AsyncRead for FuturesIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        ready!(Pin::new(&mut self.0).poll_read(cx, &mut read))?;
        Poll::Ready(Ok(read.filled().len()))
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> futures_util::io::AsyncWrite for FuturesIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    #[tokio::test]
    async fn vectored_writes_reach_the_socket_as_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (mut a, mut b) = (FuturesIo(a.unwrap()), FuturesIo(b.unwrap().0));
        let parts = [
            IoSlice::new(b"head"),
            IoSlice::new(b"-and-"),
            IoSlice::new(b"body"),
        ];
        let n =
            futures_util::future::poll_fn(|cx| Pin::new(&mut a).poll_write_vectored(cx, &parts))
                .await
                .unwrap();
        // All three in one call: the default would write only the first.
        assert_eq!(n, 13);
        a.close().await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"head-and-body");
    }
}
