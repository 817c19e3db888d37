//! The tasks a running gateway or receiver keeps (its loops, its
//! listeners, its admin plane): spawned on the shell's runtime, then
//! waited for or cancelled when it shuts down. Start-up and shutdown only;
//! the request path spawns through [`crate::receiver::Runtime`].

use std::future::Future;

/// A shell's spawn, with a handle to wait for or cancel the task.
pub trait Tasks: Send + Sync + 'static {
    /// A spawned task. Dropping it does what the runtime does with a
    /// dropped handle (tokio detaches the task, smol cancels it).
    type Task: Send + 'static;
    /// Runs `task` in the background.
    fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> Self::Task;
    /// Waits for `task` to end.
    fn join(task: Self::Task) -> impl Future<Output = ()> + Send;
    /// Cancels `task` and waits until it is gone.
    fn cancel(task: Self::Task) -> impl Future<Output = ()> + Send;
}
