//! Finding the servers' programs: on `PATH` first, then where Debian and
//! most distributions put them outside an ordinary user's `PATH`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// `name` in one of `dirs`, if there and executable.
fn in_dirs(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// `name` on `PATH` or in one of `extra`.
fn find(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let mut dirs = path_dirs();
    dirs.extend(extra.iter().map(PathBuf::from));
    in_dirs(name, &dirs)
}

/// PostgreSQL's `initdb` and `postgres`, from one installation: the first
/// directory on `PATH` holding both, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn postgres() -> Option<(PathBuf, PathBuf)> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    path_dirs()
        .into_iter()
        .chain(versions.into_iter().map(|(_, dir)| dir))
        .find_map(|dir| {
            let dir = [dir];
            Some((in_dirs("initdb", &dir)?, in_dirs("postgres", &dir)?))
        })
}

/// MariaDB's `mariadb-install-db` and `mariadbd`.
pub fn mariadb() -> Option<(PathBuf, PathBuf)> {
    let install = find(
        "mariadb-install-db",
        &["/usr/bin", "/usr/local/mysql/scripts"],
    )?;
    let server = find(
        "mariadbd",
        &["/usr/sbin", "/usr/libexec", "/usr/local/mysql/bin"],
    )?;
    Some((install, server))
}

/// `nats-server`.
pub fn nats() -> Option<PathBuf> {
    find("nats-server", &["/usr/sbin", "/usr/local/bin", "/usr/bin"])
}
