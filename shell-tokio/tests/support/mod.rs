//! What the process-level test files share: the two shells' binaries and a
//! child process that cannot outlive a failed test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

mod clean_command;

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
        clean_command::clean_command(path)
    }
}

/// `anpx-smol`. Cargo hands a test only its own package's binaries, so
/// the other shell's is taken from this test's profile directory, where
/// `cargo test --workspace` builds it (shell-smol's integration tests need
/// it). Run as `cargo test -p shell-tokio`, it may be missing there or
/// older than its sources; then it is built here with cargo, saying so.
fn anpx_smol_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let anpx = Path::new(env!("CARGO_BIN_EXE_anpx"));
        let profile_dir = anpx.parent().expect("anpx is in a profile directory");
        let built = profile_dir.join("anpx-smol");
        match out_of_date(&built) {
            None => built,
            Some(why) => {
                let note = format!("building anpx-smol with cargo: {why}\n");
                // Past libtest's capture, so the wait is explained.
                let _ = std::io::stderr().lock().write_all(note.as_bytes());
                build_anpx_smol(anpx, profile_dir)
            }
        }
    })
}

/// Why `binary` cannot be used as it is: missing, or older than a source
/// file its dep-info (`<binary>.d`, written by cargo) lists, or built from
/// another checkout. `None` when it is up to date.
fn out_of_date(binary: &Path) -> Option<String> {
    let built = match binary.metadata().and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(_) => return Some(format!("{} does not exist", binary.display())),
    };
    let dep_info = binary.with_extension("d");
    let Ok(deps) = std::fs::read_to_string(&dep_info) else {
        return Some(format!("{} is missing", dep_info.display()));
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shell-tokio is in the workspace");
    // `target: dep dep ...`, spaces within a path escaped as `\ `.
    let Some((_, sources)) = deps.split_once(": ") else {
        return Some(format!("{} is not dep-info", dep_info.display()));
    };
    let sources = sources.replace("\\ ", "\0");
    let mut local = 0;
    for source in sources
        .split_whitespace()
        .map(|s| s.trim_end_matches(':').replace('\0', " "))
    {
        let source = Path::new(&source);
        // Only this checkout's files change under a test; crates from the
        // registry do not.
        if !source.starts_with(workspace) {
            continue;
        }
        local += 1;
        match source.metadata().and_then(|m| m.modified()) {
            Ok(changed) if changed <= built => {}
            _ => return Some(format!("{} changed since it was built", source.display())),
        }
    }
    (local == 0).then(|| format!("{} was built from another checkout", binary.display()))
}

/// Builds `anpx-smol` with the profile and target directory of this
/// test's `anpx`, and returns its path. The profile must be the one cargo
/// built this target with, not just one writing to the same directory:
/// `cargo bench` builds with `bench` (debug info on) into `release`, and
/// `--release` there would compile every dependency a second time.
fn build_anpx_smol(anpx: &Path, profile_dir: &Path) -> PathBuf {
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
        // Test targets are compiled with `--test` (`cfg(test)`); this
        // module is also part of benches without a harness, which are not.
        Some("release") if cfg!(test) => {
            c.arg("--release");
        }
        Some("release") => {
            c.args(["--profile", "bench"]);
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
}
