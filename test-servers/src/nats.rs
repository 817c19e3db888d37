//! A throwaway NATS server.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use crate::daemon::{self, Daemon};
use crate::skip::{self, Backend};
use crate::{binaries, Error};

/// A NATS server of one test's own (it starts in a fraction of a second),
/// on a free loopback port. Stopped and removed on drop.
pub struct Nats {
    port: u16,
    // Dropped first: the server dies before its directory goes.
    _daemon: Daemon,
    dir: tempfile::TempDir,
}

impl Nats {
    /// Starts a server from the `nats-server` found on `PATH` or in
    /// `/usr/sbin`.
    pub fn start() -> Result<Nats, Error> {
        let binary = binaries::nats()
            .ok_or_else(|| Error::Missing("no `nats-server` on PATH or in /usr/sbin".into()))?;
        let dir = daemon::scratch("nats")?;
        let (port, daemon) = daemon::on_free_port(|port| {
            let mut server = Command::new(&binary);
            server.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
            Daemon::start(
                "nats-server",
                server,
                &dir.path().join("nats.log"),
                dir.path(),
                "Server is ready",
            )
            .map(|d| (port, d))
        })?;
        Ok(Nats {
            port,
            _daemon: daemon,
            dir,
        })
    }

    /// A server for the calling test; `None` (after printing a skip
    /// notice) when NATS is not installed. Panics when it is installed but
    /// does not start, or is missing with `CI` set.
    pub fn start_or_skip() -> Option<Nats> {
        skip::own(Backend::Nats, Nats::start)
    }

    /// Its client address.
    pub fn addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.port).into()
    }

    /// Its client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr())
    }

    /// Its temporary directory (data, socket, logs), removed on drop.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
