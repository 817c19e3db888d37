//! Server processes that cannot outlive the test binary that started them.
//!
//! A server runs in its own process group (PostgreSQL forks a process per
//! connection), so stopping it is one `killpg`. It is stopped on drop, by
//! an `atexit` handler for the servers a test binary shares in statics
//! (which are never dropped), and by `PR_SET_PDEATHSIG` when the test
//! binary is killed outright. The death signal fires when the *thread*
//! that spawned the child ends, and libtest runs each test on a thread of
//! its own, so every server is spawned from one thread that lives as long
//! as the process.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use crate::Error;

/// Longest wait for a setup command (`initdb`, `mariadb-install-db`); the
/// machines running the tests may be busy compiling.
const SETUP_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for a started server to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A temporary directory for one server's data, socket and logs.
pub fn scratch(kind: &str) -> Result<tempfile::TempDir, Error> {
    tempfile::Builder::new()
        .prefix(&format!("anpx-test-{kind}-"))
        .tempdir()
        .map_err(|source| Error::Dir {
            what: "creating a temporary directory in",
            path: std::env::temp_dir(),
            source,
        })
}

/// Runs a setup command to its end, its output in `log`.
pub fn run(what: &str, mut cmd: Command, log: &Path) -> Result<(), Error> {
    let mut child = with_log(&mut cmd, log)?
        .spawn()
        .map_err(|source| Error::Spawn {
            what: what.to_owned(),
            source,
        })?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(Error::Failed {
                    what: what.to_owned(),
                    status: status.to_string(),
                    output: read(log),
                })
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::NotReady {
                    what: what.to_owned(),
                    secs: SETUP_TIMEOUT.as_secs(),
                    output: read(log),
                });
            }
        }
    }
}

/// Calls `start` with a free loopback port until the server it starts
/// does not find the port taken (another process may grab a port between
/// our probe and the server's bind).
pub fn on_free_port<T>(mut start: impl FnMut(u16) -> Result<T, Error>) -> Result<T, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|source| Error::Spawn {
                what: "a loopback socket to find a free port".into(),
                source,
            })?
            .port();
        match start(port) {
            Err(Error::Failed { output, .. }) | Err(Error::NotReady { output, .. })
                if attempt < 3 && output.to_lowercase().contains("address already in use") => {}
            other => return other,
        }
    }
}

/// A running server, stopped (with its whole process group) on drop.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts `cmd`, its output in `log`, and waits until the log shows
    /// `ready`. `dir` is removed at exit should the daemon never be dropped.
    pub fn start(
        what: &str,
        mut cmd: Command,
        log: &Path,
        dir: &Path,
        ready: &str,
    ) -> Result<Daemon, Error> {
        with_log(&mut cmd, log)?;
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = on_spawner_thread(move || cmd.spawn()).map_err(|source| Error::Spawn {
            what: what.to_owned(),
            source,
        })?;
        register(child.id(), dir);
        let mut daemon = Daemon { child };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let output = read(log);
            if output.contains(ready) {
                return Ok(daemon);
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(Error::Failed {
                    what: what.to_owned(),
                    status: status.to_string(),
                    output,
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    what: what.to_owned(),
                    secs: READY_TIMEOUT.as_secs(),
                    output,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|(pid, _)| *pid != self.child.id());
    }
}

/// Sends the command's output to `log`, and nothing to its input.
fn with_log<'c>(cmd: &'c mut Command, log: &Path) -> Result<&'c mut Command, Error> {
    let dir_error = |source| Error::Dir {
        what: "creating the log file",
        path: log.to_owned(),
        source,
    };
    let out = File::create(log).map_err(dir_error)?;
    let err = out.try_clone().map_err(dir_error)?;
    Ok(cmd.stdin(Stdio::null()).stdout(out).stderr(err))
}

fn read(log: &Path) -> String {
    std::fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn kill_group(pid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pid) {
        // SAFETY: plain system call; the group is the daemon's own (it was
        // started with process_group(0), so its id is the daemon's pid).
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// Servers still running, with the directory to remove once they are dead.
static LIVE: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

fn register(pid: u32, dir: &Path) {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a function that takes no arguments; a failure
        // (no slot left) only loses the cleanup at exit.
        unsafe {
            libc::atexit(stop_all_at_exit);
        }
    });
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((pid, dir.to_owned()));
}

extern "C" fn stop_all_at_exit() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|p| p.into_inner()));
    for (pid, dir) in live {
        kill_group(pid);
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: reaps our own child; no memory is passed.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `f` on the thread that spawns every server (see the module's notes).
fn on_spawner_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    static JOBS: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("anpx-test-servers".into())
            .spawn(move || rx.into_iter().for_each(|job| job()))
            .expect("starting the thread that spawns the test servers");
        tx
    });
    let (tx, rx) = mpsc::sync_channel(1);
    jobs.send(Box::new(move || {
        let _ = tx.send(f());
    }))
    .expect("the spawner thread runs as long as the process");
    rx.recv().expect("the spawner thread answers every job")
}
