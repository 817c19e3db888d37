//! Shared helpers of the cross-crate end-to-end suite.

/// Path of the repository's `testdata/` folder.
pub fn testdata_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

pub mod sim;
