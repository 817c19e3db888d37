//! A throwaway MariaDB server.

use std::process::Command;
use std::sync::OnceLock;

use crate::daemon::{self, Daemon};
use crate::skip::{self, Backend};
use crate::{binaries, Error};

/// The database the server is created with.
const DATABASE: &str = "anpx";

/// Small InnoDB files and buffers: the tests write a few rows, and the
/// default 96 MiB redo log costs seconds to create.
const SMALL: [&str; 2] = ["--innodb-log-file-size=4M", "--innodb-buffer-pool-size=16M"];

/// A MariaDB server of the tests' own: fresh system tables in a temporary
/// directory, on a free loopback port, `root` without a password, one
/// empty database. Stopped and removed on drop.
pub struct MariaDb {
    port: u16,
    // Dropped first: the server dies before its directory goes.
    _daemon: Daemon,
    dir: tempfile::TempDir,
}

impl MariaDb {
    /// Starts a server from the `mariadb-install-db` and `mariadbd` found
    /// on `PATH`, in `/usr/bin` or in `/usr/sbin`.
    pub fn start() -> Result<MariaDb, Error> {
        let (install_db, mariadbd) = binaries::mariadb().ok_or_else(|| {
            Error::Missing("no `mariadb-install-db` and `mariadbd` on PATH or in /usr/sbin".into())
        })?;
        // SAFETY: no arguments, no memory.
        let root = unsafe { libc::geteuid() } == 0;
        let dir = daemon::scratch("mariadb")?;
        let data = dir.path().join("data");
        let mut install = Command::new(&install_db);
        // --no-defaults first: the machine's my.cnf names its own port,
        // socket and data directory.
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(SMALL);
        if root {
            install.arg("--user=root");
        }
        daemon::run(
            "mariadb-install-db",
            install,
            &dir.path().join("install.log"),
        )?;
        // The installed root account is root@localhost, which a TCP client
        // from 127.0.0.1 is not without name resolution.
        let init = dir.path().join("init.sql");
        std::fs::write(
            &init,
            format!(
                "CREATE DATABASE IF NOT EXISTS {DATABASE};\n\
                 CREATE USER IF NOT EXISTS root@'127.0.0.1';\n\
                 GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;\n"
            ),
        )
        .map_err(|source| Error::Dir {
            what: "writing",
            path: init.clone(),
            source,
        })?;
        let (port, daemon) = daemon::on_free_port(|port| {
            let mut server = Command::new(&mariadbd);
            server
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg(format!(
                    "--socket={}",
                    dir.path().join("mysqld.sock").display()
                ))
                .arg(format!(
                    "--pid-file={}",
                    dir.path().join("mysqld.pid").display()
                ))
                .arg("--skip-name-resolve")
                .arg(format!("--init-file={}", init.display()))
                .args(SMALL);
            if root {
                server.arg("--user=root");
            }
            Daemon::start(
                "mariadbd",
                server,
                &dir.path().join("mariadbd.log"),
                dir.path(),
                "ready for connections",
            )
            .map(|d| (port, d))
        })?;
        Ok(MariaDb {
            port,
            _daemon: daemon,
            dir,
        })
    }

    /// A server for the calling test alone; `None` (after printing a skip
    /// notice) when MariaDB is not installed. Panics when it is installed but
    /// does not start, or is missing with `CI` set.
    pub fn start_or_skip() -> Option<MariaDb> {
        skip::own(Backend::MariaDb, MariaDb::start)
    }

    /// This test binary's shared server, started by the first test asking;
    /// `None` (after printing a skip notice) when MariaDB is not installed.
    /// Panics when it is installed but does not start, or is missing with
    /// `CI` set.
    pub fn shared_or_skip() -> Option<&'static MariaDb> {
        static SHARED: OnceLock<Result<MariaDb, Error>> = OnceLock::new();
        skip::shared(Backend::MariaDb, &SHARED, MariaDb::start)
    }

    /// The URL of its database, as root.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// Its loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its temporary directory (data, socket, logs), removed on drop.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
