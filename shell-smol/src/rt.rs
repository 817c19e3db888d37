//! smol's half of the shared loops: spawning and timers.

use std::time::Instant;

use shell_common::receiver::{BoxFuture, Runtime};

/// Tasks on smol's global executor, timers from async-io.
pub(crate) struct Smol;

impl Runtime for Smol {
    fn spawn(&self, task: BoxFuture<()>) {
        smol::spawn(task).detach();
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(async move {
            smol::Timer::at(at).await;
        })
    }
}

/// Reads an async-h1 body as a stream of pieces.
pub(crate) fn body_stream(
    body: http_types::Body,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin {
    use futures_util::AsyncReadExt;
    let reader = body.into_reader();
    Box::pin(futures_util::stream::unfold(
        (reader, false),
        |(mut reader, done)| async move {
            if done {
                return None;
            }
            let mut buf = vec![0u8; 64 * 1024];
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), (reader, false)))
                }
                Err(e) => Some((Err(e), (reader, true))),
            }
        },
    ))
}
