//! What a test does when its backend cannot be tested: a visible, named
//! skip on a developer's machine, a failure in CI.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;

use crate::Error;

/// The one command that installs every server these tests use (Debian,
/// Ubuntu).
pub const INSTALL: &str = "apt-get install postgresql mariadb-server nats-server";

/// The optional backends whose tests need a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL, for the service registry.
    Postgres,
    /// MariaDB (or MySQL), for the service registry.
    MariaDb,
    /// NATS, for cluster mode.
    Nats,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "PostgreSQL",
            Backend::MariaDb => "MariaDB",
            Backend::Nats => "NATS",
        })
    }
}

/// Whether `CI` is set to something other than empty, `0` or `false`:
/// a missing backend then fails instead of skipping.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// `ANPX_TEST_BACKENDS=none` skips every backend on purpose; unset or
/// `installed` runs those whose binaries are found.
fn opted_out() -> bool {
    match std::env::var("ANPX_TEST_BACKENDS").as_deref() {
        Err(_) | Ok("" | "installed") => false,
        Ok("none") => true,
        Ok(other) => panic!("ANPX_TEST_BACKENDS={other:?}: expected `none` or `installed`"),
    }
}

/// Prints the skip notice past libtest's output capture (which takes only
/// `print!`/`eprint!`), so it shows in a plain `cargo test` run.
fn skip(backend: Backend, why: &str) {
    let current = std::thread::current();
    let test = current.name().unwrap_or("a test");
    let line = format!("SKIPPED {test}: {backend} not tested: {why}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The outcome of starting a server for a test: the server, `None` after
/// printing a skip, or a panic (a server that is installed but does not
/// start, or a missing one in CI).
fn gate<T>(backend: Backend, started: Result<T, &Error>) -> Option<T> {
    match started {
        Ok(server) => Some(server),
        Err(Error::Missing(why)) if !in_ci() => {
            skip(
                backend,
                &format!("{why}; install the servers with `{INSTALL}` (with CI set, this fails)"),
            );
            None
        }
        Err(Error::Missing(why)) => {
            panic!("{backend} not tested: {why}; CI installs it with `{INSTALL}`")
        }
        Err(e) => panic!("{backend} test server: {e}"),
    }
}

/// A server of this test's own.
pub(crate) fn own<T>(backend: Backend, start: fn() -> Result<T, Error>) -> Option<T> {
    if opted_out() {
        skip(backend, "ANPX_TEST_BACKENDS=none (unset it to test)");
        return None;
    }
    match start() {
        Ok(server) => Some(server),
        Err(e) => gate(backend, Err(&e)),
    }
}

/// The server all of this test binary's tests share, started by the first
/// that asks.
pub(crate) fn shared<T: Send + Sync>(
    backend: Backend,
    cell: &'static OnceLock<Result<T, Error>>,
    start: fn() -> Result<T, Error>,
) -> Option<&'static T> {
    if opted_out() {
        skip(backend, "ANPX_TEST_BACKENDS=none (unset it to test)");
        return None;
    }
    gate(backend, cell.get_or_init(start).as_ref())
}
