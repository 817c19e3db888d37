//! Cluster mode on smol: the shared [`shell_common::cluster`] (several
//! gateways as one over NATS), with every future it polls run through
//! `async-compat`.
//!
//! async-nats does its I/O on tokio: its connection task is spawned with
//! `tokio::spawn`, and so is the unsubscribe when a subscription is dropped.
//! async-compat keeps one small tokio runtime on its own thread for such
//! futures, so the cluster is written once and this shell stays on smol:
//! the cluster's tasks are smol tasks that enter async-compat's tokio
//! context whenever they are polled or dropped.

use std::time::Instant;

use async_compat::Compat;
use shell_common::receiver::{BoxFuture, Owned, Runtime};

use crate::rt::OwnedSmol;

pub use shell_common::cluster::{Cluster, ClusterError, ClusterOptions};

/// The cluster's tasks on smol's global executor, each inside a tokio
/// context; timers from async-io.
pub(crate) struct SmolWithTokio;

impl Runtime for SmolWithTokio {
    fn spawn(&self, task: BoxFuture<()>) {
        crate::rt::spawn(Compat::new(task)).detach();
    }

    fn spawn_owned(&self, task: BoxFuture<()>) -> Owned {
        Owned::new(OwnedSmol(crate::rt::spawn(Compat::new(task))))
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(async move {
            smol::Timer::at(at).await;
        })
    }
}
