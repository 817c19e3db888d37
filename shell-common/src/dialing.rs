//! A running receiver's state as both shells hold it: the stop order, the
//! status it reports, and its admin listener's binding. A shell adds only
//! its task handles.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::accept::Listen;
use crate::options::{ReceiverOptions, Status};
use crate::receiver::{Connector, Dispatch, Runtime};
use crate::repoll::Repoll;
use crate::signal::{Stop, Watch};

/// The stop order and status of a receiver started with
/// [`Dialing::start`].
pub struct Dialing {
    stop: Stop,
    status: Watch<Status>,
}

impl Dialing {
    /// The receiver's loops ([`crate::receiver::run`]), for the shell to
    /// spawn, and the handle that follows and stops them. Should the loops
    /// end without reporting `Stopped` (a panic, the task aborted), the
    /// status says so rather than staying `Connecting`.
    pub fn start<U>(
        options: ReceiverOptions<U>,
        runtime: Arc<dyn Runtime>,
        connector: Arc<dyn Connector>,
    ) -> (Dialing, impl Future<Output = ()> + Send + 'static)
    where
        U: Dispatch + ?Sized,
    {
        let stop = Stop::new(false);
        let status = Watch::new(Status::Connecting);
        let guard = Ended(status.clone());
        let run = crate::receiver::run(options, runtime, connector, stop.clone(), status.clone());
        // The connection loop polls its calls and reads what they reply in
        // the same poll, which wakes it: polled again at once rather than
        // handed to another worker as a yield (see `repoll`).
        let task = Repoll::new(async move {
            let _guard = guard;
            run.await;
        });
        (Dialing { stop, status }, task)
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.get()
    }

    /// Waits until the receiver is connected (or stopped) and returns that
    /// status.
    pub async fn wait_ready(&self) -> Status {
        loop {
            let (s, seen) = self.status.get_versioned();
            if !matches!(s, Status::Connecting) {
                return s;
            }
            self.status.changed(seen).await;
        }
    }

    /// The status, to follow reconnects with.
    pub fn watch(&self) -> Watch<Status> {
        self.status.clone()
    }

    /// Orders the loops to close the connection and stop reconnecting.
    pub fn stop(&self) {
        self.stop.set(true);
    }
}

/// Marks the status stopped when the loops' task ends or is dropped
/// without having said so.
struct Ended(Watch<Status>);

impl Drop for Ended {
    fn drop(&mut self) {
        if matches!(self.0.get(), Status::Connecting | Status::Connected { .. }) {
            self.0.set(Status::Stopped("receiver task ended".into()));
        }
    }
}

/// Binds the receiver's admin listener when `addr` is set, and logs where.
pub async fn bind_admin<L: Listen>(
    addr: Option<SocketAddr>,
) -> io::Result<Option<(SocketAddr, L)>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = L::bind(addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(admin_addr = %addr, "receiver admin plane listening");
    Ok(Some((addr, listener)))
}
