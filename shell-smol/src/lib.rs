//! anpx on smol + async-h1: the second runtime shell around `anpx-core`.
//!
//! Not yet implemented; the tokio shell (`shell-tokio`) is the working one.
