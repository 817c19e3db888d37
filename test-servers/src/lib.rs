//! Throwaway database and messaging servers for the tests of anpx's
//! optional backends (PostgreSQL and MariaDB registries, NATS cluster mode).
//!
//! Each server runs from the binaries installed on the machine, in a
//! temporary directory, on a free loopback port, as its own process group;
//! it is killed and its directory removed when it is dropped, when the test
//! binary exits, and (through the parent-death signal) when the test binary
//! is killed. Nothing depends on a service the machine runs, a standard
//! port, a preset account or an existing database.
//!
//! When a server's binaries are missing, the `*_or_skip` constructors print
//! a skip notice naming the test, the backend and the install command, and
//! return `None`; with `CI` set, a missing backend fails the test instead.
//! `ANPX_TEST_BACKENDS=none` skips every backend on purpose (with the same
//! notice), for a quick run on a machine that has them.

mod binaries;
mod daemon;
mod error;
mod mariadb;
mod nats;
mod postgres;
mod skip;

pub use error::Error;
pub use mariadb::MariaDb;
pub use nats::Nats;
pub use postgres::Postgres;
pub use skip::{Backend, INSTALL};
