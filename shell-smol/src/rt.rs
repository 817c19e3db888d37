//! smol's half of the shared loops: spawning, timers, accepting.

use std::future::Future;
use std::time::Instant;

use crate::tcp::{TcpListener, TcpStream};

use shell_common::receiver::{BoxFuture, Owned, OwnedTask, Runtime};
use shell_common::shell_io::ShellIo;

/// smol's I/O: tasks on smol's global executor, timers from async-io,
/// and what the shared gateway and receiver are run with
/// ([`crate::gateway::Gateway`], [`crate::receiver::Receiver`]).
#[derive(Default)]
pub struct Smol;

impl ShellIo for Smol {
    const NAME: &'static str = "anpx-smol";
    type Listener = TcpAccept;
    type Task = smol::Task<()>;

    fn start<F: Future<Output = ()> + Send + 'static>(task: F) -> smol::Task<()> {
        smol::spawn(task)
    }

    fn join(task: smol::Task<()>) -> impl Future<Output = ()> + Send {
        task
    }

    async fn cancel(task: smol::Task<()>) {
        task.cancel().await;
    }
}

impl Runtime for Smol {
    fn spawn(&self, task: BoxFuture<()>) {
        smol::spawn(task).detach();
    }

    fn spawn_owned(&self, task: BoxFuture<()>) -> Owned {
        Owned::new(OwnedSmol(smol::spawn(task)))
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(async move {
            smol::Timer::at(at).await;
        })
    }
}

/// A smol task, which cancels itself when dropped.
pub(crate) struct OwnedSmol(pub(crate) smol::Task<()>);

impl OwnedTask for OwnedSmol {
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

shell_common::tcp_listen!(TcpAccept, TcpListener, TcpStream);

/// The most a piece of a body read by [`body_stream`] holds.
const PIECE: usize = 64 * 1024;
/// A read buffer with less room than this left is replaced before a read.
const MIN_ROOM: usize = 4 * 1024;

/// Reads an async-h1 body as a stream of pieces.
///
/// The pieces are cut from one zeroed buffer, read into until little room
/// is left, and a body of known length gets a buffer of that size, rather
/// than a new 64 KiB zeroed buffer for every read, even of a 40-byte body.
pub(crate) fn body_stream(
    body: http_types::Body,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin {
    use futures_util::AsyncReadExt;
    // One byte more than a known length, so its end is read in the same
    // buffer.
    let sized = body
        .len()
        .and_then(|n| n.checked_add(1))
        .filter(|&n| n <= PIECE);
    let reader = body.into_reader();
    let buf = bytes::BytesMut::zeroed(sized.unwrap_or(PIECE));
    Box::pin(futures_util::stream::unfold(
        (reader, buf, sized.is_some(), false),
        |(mut reader, mut buf, mut sized, done)| async move {
            if done {
                return None;
            }
            // A buffer sized to the body keeps its last byte for reading
            // the end; any other is replaced when little room is left.
            if buf.is_empty() || (!sized && buf.len() < MIN_ROOM) {
                buf = bytes::BytesMut::zeroed(PIECE);
                sized = false;
            }
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    let piece = buf.split_to(n).freeze();
                    Some((Ok(piece), (reader, buf, sized, false)))
                }
                Err(e) => Some((Err(e), (reader, buf, sized, true))),
            }
        },
    ))
}
