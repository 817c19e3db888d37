//! A throwaway PostgreSQL server.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;

use crate::daemon::{self, Daemon};
use crate::skip::{self, Backend};
use crate::{binaries, Error};

/// A PostgreSQL server of the tests' own: a fresh cluster in a temporary
/// directory, on a free loopback port, superuser `postgres` without a
/// password. Stopped and removed on drop.
pub struct Postgres {
    port: u16,
    // Dropped first: the server dies before its directory goes.
    _daemon: Daemon,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Starts a server from the `initdb` and `postgres` found on `PATH` or
    /// in `/usr/lib/postgresql/*/bin`.
    pub fn start() -> Result<Postgres, Error> {
        let (initdb, postgres) = binaries::postgres().ok_or_else(|| {
            Error::Missing(
                "no `initdb` and `postgres` on PATH or in /usr/lib/postgresql/*/bin".into(),
            )
        })?;
        let account = unprivileged_account()?;
        let dir = daemon::scratch("postgres")?;
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|source| {
                Error::Dir {
                    what: "handing to the PostgreSQL account",
                    path: dir.path().to_owned(),
                    source,
                }
            })?;
        }
        let data = dir.path().join("data");
        let mut init = Command::new(&initdb);
        init.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-N", "-E", "UTF8"])
            .arg("--locale=C");
        as_account(&mut init, account);
        daemon::run("initdb", init, &dir.path().join("initdb.log"))?;
        let (port, daemon) = daemon::on_free_port(|port| {
            let mut server = Command::new(&postgres);
            server
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string()])
                // Its socket in the scratch directory, not the machine's.
                .arg("-k")
                .arg(dir.path())
                .args(["-c", "listen_addresses=127.0.0.1"])
                // Throwaway data: durability only costs time.
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"])
                // Tests run in parallel, each with pools of its own.
                .args(["-c", "max_connections=300"]);
            as_account(&mut server, account);
            Daemon::start(
                "postgres",
                server,
                &dir.path().join("postgres.log"),
                dir.path(),
                "database system is ready to accept connections",
            )
            .map(|d| (port, d))
        })?;
        Ok(Postgres {
            port,
            _daemon: daemon,
            dir,
        })
    }

    /// A server for the calling test alone; `None` (after printing a skip
    /// notice) when PostgreSQL is not installed. Panics when it is installed but
    /// does not start, or is missing with `CI` set.
    pub fn start_or_skip() -> Option<Postgres> {
        skip::own(Backend::Postgres, Postgres::start)
    }

    /// This test binary's shared server, started by the first test asking;
    /// `None` (after printing a skip notice) when PostgreSQL is not
    /// installed. Panics when it is installed but does not start, or is
    /// missing with `CI` set.
    pub fn shared_or_skip() -> Option<&'static Postgres> {
        static SHARED: OnceLock<Result<Postgres, Error>> = OnceLock::new();
        skip::shared(Backend::Postgres, &SHARED, Postgres::start)
    }

    /// The URL of its `postgres` database, as the superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
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

/// PostgreSQL refuses to run as root: when the tests are root, the server
/// runs as the `postgres` account (or `nobody` where there is none).
fn unprivileged_account() -> Result<Option<(u32, u32)>, Error> {
    // SAFETY: no arguments, no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    ["postgres", "nobody"]
        .into_iter()
        .find_map(account)
        .map(Some)
        .ok_or_else(|| {
            Error::Missing(
                "running as root, and there is no `postgres` or `nobody` account to run PostgreSQL as"
                    .into(),
            )
        })
}

fn as_account(cmd: &mut Command, account: Option<(u32, u32)>) {
    if let Some((uid, gid)) = account {
        cmd.uid(uid).gid(gid);
    }
}

/// The uid and gid of the account `name`.
fn account(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    // SAFETY: an all-zero passwd is a valid out-parameter; getpwnam_r
    // writes its strings into `buf`, which outlives the call, and we read
    // only the two integers.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        (rc == 0 && !found.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
    }
}
