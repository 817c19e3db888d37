use std::path::PathBuf;

/// Why a throwaway server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server's binaries are not installed.
    #[error("{0}")]
    Missing(String),
    /// A command could not be run at all.
    #[error("could not run {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A setup command or the server itself stopped with an error.
    #[error("{what} failed ({status}); its output:\n{output}")]
    Failed {
        what: String,
        status: String,
        output: String,
    },
    /// The server did not report itself ready in time.
    #[error("{what} was not ready after {secs} s; its output:\n{output}")]
    NotReady {
        what: String,
        secs: u64,
        output: String,
    },
    /// Preparing the server's directory failed.
    #[error("{what} {}: {source}", path.display())]
    Dir {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
