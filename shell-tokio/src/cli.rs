//! The command line: one variant of [`Command`] per subcommand.

use anpx_core::frame::DEFAULT_MAX_FRAME_LEN;
use clap::{Args, Parser, Subcommand};

/// `anpx`, a reverse HTTP tunnel speaking ANPX v1 over WebSocket.
#[derive(Debug, Parser)]
#[command(name = "anpx", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode ANPX frames from stdin and print one JSON object per frame.
    ///
    /// Input is hex, one frame per line (blank lines and lines starting
    /// with `#` are skipped), or raw concatenated frames with `--binary`.
    /// Exits 0 when every frame decoded, 1 when any did not, 2 on an I/O
    /// error.
    Decode(DecodeArgs),
}

/// Options of `anpx decode`.
#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// Read raw binary frames back to back, split by each header's
    /// total_len, instead of hex lines.
    #[arg(long)]
    pub binary: bool,

    /// Also reassemble chunked messages and print a `message` line when one
    /// completes (or a `reassembly_error` line when the chunks are wrong).
    #[arg(long)]
    pub reassemble: bool,

    /// Largest frame accepted, header included, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FRAME_LEN)]
    pub max_frame_len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn decode_flags_parse() {
        let cli = Cli::try_parse_from(["anpx", "decode", "--binary", "--reassemble"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Decode(DecodeArgs {
                binary: true,
                reassemble: true,
                max_frame_len: DEFAULT_MAX_FRAME_LEN,
            })
        ));
    }
}
