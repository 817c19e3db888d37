//! Where log lines go: stderr, a write per line, except on the runtime's
//! worker threads, which gather their info and debug lines and write them
//! together when the thread parks.
//!
//! Every public request ends with an info line; written alone, its `write`
//! was 2.8% of `anpx both`'s CPU under load (docs/BENCHMARKS.md). A worker
//! parks as soon as it has nothing to run, so a line waits at most until
//! the work in hand is done, or until [`HELD_BYTES`] are gathered; warnings
//! and errors are written at once, after what the thread gathered before
//! them, so a thread's lines keep their order. A thread gathers only after
//! its first [`parked`] call, so a thread that never parks (the main
//! thread, blocking-pool threads) writes each line at once. A worker calls
//! [`parked`] again when it stops, so nothing is left unwritten when the
//! runtime shuts down (not from the thread-local's destructor: the
//! standard library's stderr may be unusable by then).

use std::cell::RefCell;
use std::io::{self, Write};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Bytes a worker gathers before it writes them without waiting to park.
pub const HELD_BYTES: usize = 16 * 1024;

/// One thread's gathered lines.
struct Held {
    /// The thread parks through [`parked`]: it may gather.
    gathering: bool,
    bytes: Vec<u8>,
}

impl Held {
    fn write_out(&mut self) {
        if !self.bytes.is_empty() {
            // Nowhere to report a failed write to stderr.
            let _ = out(&self.bytes);
            self.bytes.clear();
        }
    }
}

#[cfg(not(test))]
fn out(bytes: &[u8]) -> io::Result<()> {
    io::stderr().write_all(bytes)
}

// Tests read what the thread wrote instead of filling the test's stderr.
#[cfg(test)]
thread_local! {
    static WRITTEN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
fn out(bytes: &[u8]) -> io::Result<()> {
    let _ = WRITTEN.try_with(|w| w.borrow_mut().extend_from_slice(bytes));
    Ok(())
}

thread_local! {
    static HELD: RefCell<Held> = const {
        RefCell::new(Held {
            gathering: false,
            bytes: Vec::new(),
        })
    };
}

/// Called by a runtime worker each time it parks and when it stops: writes
/// the request lines it held ([`shell_common::endings::write_held`]) and
/// what it gathered, and lets it hold and gather from now on.
pub fn parked() {
    shell_common::endings::write_held();
    let _ = HELD.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            held.gathering = true;
            held.write_out();
        }
    });
}

/// The log output: stderr, gathered on parking workers as described above.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

/// One line's writer.
pub struct Line {
    /// Written at once (a warning or an error).
    urgent: bool,
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let urgent = self.urgent;
        let gathered = HELD.try_with(|held| {
            let Ok(mut held) = held.try_borrow_mut() else {
                return false;
            };
            if !held.gathering {
                return false;
            }
            held.bytes.extend_from_slice(buf);
            if urgent || held.bytes.len() >= HELD_BYTES {
                held.write_out();
            }
            true
        });
        if gathered != Ok(true) {
            out(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> Vec<u8> {
        HELD.with(|h| h.borrow().bytes.clone())
    }

    fn written() -> Vec<u8> {
        WRITTEN.with(|w| w.borrow().clone())
    }

    fn line(urgent: bool, text: &str) {
        Line { urgent }.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_thread_that_never_parked_writes_each_line_at_once() {
        std::thread::spawn(|| {
            line(false, "one\n");
            assert!(held().is_empty());
            assert_eq!(written(), b"one\n");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_parked_thread_gathers_until_it_parks_again() {
        std::thread::spawn(|| {
            parked();
            line(false, "one\n");
            line(false, "two\n");
            assert_eq!(held(), b"one\ntwo\n");
            assert!(written().is_empty());
            parked();
            assert!(held().is_empty());
            assert_eq!(written(), b"one\ntwo\n");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_warning_is_written_at_once_after_what_was_gathered() {
        std::thread::spawn(|| {
            parked();
            line(false, "info\n");
            line(true, "warn\n");
            assert!(held().is_empty());
            assert_eq!(written(), b"info\nwarn\n");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn gathering_is_bounded() {
        std::thread::spawn(|| {
            parked();
            let long = "x".repeat(HELD_BYTES / 4);
            for _ in 0..4 {
                line(false, &long);
            }
            assert!(held().is_empty(), "the fourth line reached the bound");
            assert_eq!(written().len(), HELD_BYTES);
            line(false, &long);
            assert_eq!(held().len(), long.len());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_writer_for_an_event_is_urgent_from_warn_up() {
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        use tracing::metadata::Kind;
        struct Site;
        impl tracing::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static SITE: Site = Site;
        let meta = |level| {
            Metadata::new(
                "e",
                "t",
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&SITE)),
                Kind::EVENT,
            )
        };
        assert!(!LogWriter.make_writer_for(&meta(Level::INFO)).urgent);
        assert!(!LogWriter.make_writer_for(&meta(Level::DEBUG)).urgent);
        assert!(LogWriter.make_writer_for(&meta(Level::WARN)).urgent);
        assert!(LogWriter.make_writer_for(&meta(Level::ERROR)).urgent);
    }
}
