//! What the process-level test files share: the two shells' binaries and a
//! child process that cannot outlive a failed test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// A child process killed when dropped, so a failed test leaves none behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shells' binaries, which take the same subcommands and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// The tokio shell.
    Anpx,
    /// The smol shell.
    AnpxSmol,
}

impl Binary {
    /// A command running this binary, without the caller's `ANPX_*`
    /// variables (they would override the flags a test passes).
    pub fn command(self) -> Command {
        let path = match self {
            Binary::Anpx => PathBuf::from(env!("CARGO_BIN_EXE_anpx")),
            Binary::AnpxSmol => anpx_smol_path().clone(),
        };
        let mut c = Command::new(path);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANPX_")) {
            c.env_remove(k);
        }
        c
    }
}

/// `anpx-smol`, built by cargo on first use. Cargo hands a test only its
/// own package's binaries, so the other shell's is built here, with the
/// profile and target directory of this test's `anpx`.
fn anpx_smol_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let anpx = Path::new(env!("CARGO_BIN_EXE_anpx"));
        let profile_dir = anpx.parent().expect("anpx is in a profile directory");
        let mut c = Command::new(env!("CARGO"));
        // What cargo set for this test's own run; left in, it would mark
        // build scripts that watch it (ring's) dirty, and every build after
        // this one would redo them.
        for (k, _) in std::env::vars().filter(|(k, _)| {
            k == "OUT_DIR"
                || k.starts_with("CARGO_PKG_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&k.as_str())
        }) {
            c.env_remove(k);
        }
        c.args(["build", "-p", "shell-smol", "--bin", "anpx-smol"])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit());
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                c.arg("--release");
            }
            Some(other) => {
                c.args(["--profile", other]);
            }
            None => panic!("no profile directory in {}", anpx.display()),
        }
        if let Some(target_dir) = profile_dir.parent() {
            c.arg("--target-dir").arg(target_dir);
        }
        let out = c.output().expect("run cargo to build anpx-smol");
        assert!(out.status.success(), "cargo could not build anpx-smol");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "anpx-smol")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo named the anpx-smol executable")
    })
}
