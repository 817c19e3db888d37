//! What a shell's gateway and receiver both run on ([`ShellIo`]): its
//! name, its TCP listener, its timers, and the tasks a running gateway or
//! receiver keeps (its loops, its listeners, its admin plane), spawned on
//! the shell's runtime and then waited for or cancelled when it shuts
//! down. Start-up and shutdown only; the request path spawns through
//! [`Runtime`].

use std::future::Future;

use crate::accept::Listen;
use crate::receiver::Runtime;

/// A shell's runtime as [`crate::serving::Serving`] and
/// [`crate::dialing::Running`] use it.
pub trait ShellIo: Runtime + Default {
    /// The shell's name, as its answers, stats and admin plane report it
    /// (`anpx`, `anpx-smol`).
    const NAME: &'static str;
    /// Its TCP listener.
    type Listener: Listen;
    /// A spawned task. Dropping it does what the runtime does with a
    /// dropped handle (tokio detaches the task, smol cancels it).
    type Task: Send + 'static;
    /// Runs `task` in the background.
    fn start<F: Future<Output = ()> + Send + 'static>(task: F) -> Self::Task;
    /// Waits for `task` to end.
    fn join(task: Self::Task) -> impl Future<Output = ()> + Send;
    /// Cancels `task` and waits until it is gone.
    fn cancel(task: Self::Task) -> impl Future<Output = ()> + Send;
}
