//! tokio's half of the shared loops: spawning, timers, accepting.

use std::future::Future;
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};

use shell_common::receiver::{BoxFuture, Owned, OwnedTask, Runtime};
use shell_common::shell_io::ShellIo;

/// tokio's I/O: tasks and timers on the current tokio runtime, and what
/// the shared gateway and receiver are run with
/// ([`crate::gateway::Gateway`], [`crate::receiver::Receiver`]).
#[derive(Default)]
pub struct Tokio;

impl ShellIo for Tokio {
    const NAME: &'static str = "anpx";
    type Listener = TcpAccept;
    type Task = tokio::task::JoinHandle<()>;

    fn start<F: Future<Output = ()> + Send + 'static>(task: F) -> Self::Task {
        tokio::spawn(task)
    }

    async fn join(task: Self::Task) {
        let _ = task.await;
    }

    fn cancel(task: Self::Task) -> impl Future<Output = ()> + Send {
        task.abort();
        async move {
            let _ = task.await;
        }
    }
}

impl Runtime for Tokio {
    fn spawn(&self, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn spawn_owned(&self, task: BoxFuture<()>) -> Owned {
        Owned::new(AbortOnDrop(tokio::spawn(task)))
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep_until(at.into()))
    }
}

/// A tokio task aborted when its handle is dropped (a `JoinHandle` alone
/// would detach it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl OwnedTask for AbortOnDrop {
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

shell_common::tcp_listen!(TcpAccept, TcpListener, TcpStream);
