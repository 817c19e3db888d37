//! A command for one of the binaries under test, in an environment the
//! test controls.

use std::ffi::OsStr;
use std::process::Command;

/// A command running `program` without the caller's `ANPX_*` variables:
/// they would override the flags and settings a test gives.
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANPX_")) {
        c.env_remove(k);
    }
    c
}
