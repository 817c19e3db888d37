//! The human-readable log line, written without `fmt::write` for each
//! field.
//!
//! Every public request ends with a log line of fourteen fields. Through
//! `tracing-subscriber`'s full format each field went through its visitor,
//! `Debug` with an escaping writer and its (disabled) colour styles: that
//! line was 11% of the instructions of a small request through `anpx
//! both` (docs/BENCHMARKS.md, "Instructions per request"). [`Lines`]
//! writes the same bytes directly for what a line usually holds (strings
//! of printable ASCII, integers, no span around the event, no colour),
//! and hands every other event to the full format as it is, so the output
//! is the full format's to the byte either way (the tests below compare
//! the two on a range of events).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `tracing-subscriber`'s full format, with a direct path for plain
/// events.
pub struct Lines<T> {
    full: Format<Full, T>,
    timer: T,
}

impl<T: FormatTime + Clone> Lines<T> {
    /// Lines stamped by `timer`, as `fmt::format().with_timer(timer)`
    /// writes them; `colour`: with its escape codes (always by the full
    /// format).
    pub fn new(timer: T, colour: bool) -> Self {
        Lines {
            full: tracing_subscriber::fmt::format()
                .with_timer(timer.clone())
                .with_ansi(colour),
            timer,
        }
    }
}

impl<S, N, T> FormatEvent<S, N> for Lines<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Spans print their own fields first; colour wraps every part.
        let in_span = ctx.event_scope().is_some_and(|mut s| s.next().is_some());
        if in_span || writer.has_ansi_escapes() {
            return self.full.format_event(ctx, writer, event);
        }
        let mut fields = Plain {
            line: String::with_capacity(256),
            empty: true,
            plain: true,
        };
        event.record(&mut fields);
        if !fields.plain {
            return self.full.format_event(ctx, writer, event);
        }
        if self.timer.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        let meta = event.metadata();
        let level = match *meta.level() {
            Level::TRACE => "TRACE",
            Level::DEBUG => "DEBUG",
            Level::INFO => " INFO",
            Level::WARN => " WARN",
            Level::ERROR => "ERROR",
        };
        writer.write_char(' ')?;
        writer.write_str(level)?;
        writer.write_char(' ')?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        writer.write_str(&fields.line)?;
        writer.write_char('\n')
    }
}

/// Writes an event's fields as the full format's visitor does, and notes
/// when one is not plain enough to write here.
struct Plain {
    line: String,
    /// No field written yet: the next one needs no space before it.
    empty: bool,
    /// Every field so far was written here; false hands the event back.
    plain: bool,
}

impl Plain {
    /// The `name=` part, after a space unless it is the first field; the
    /// message has no name. `None` for a field the full format leaves out.
    fn start(&mut self, field: &Field) -> Option<()> {
        let name = field.name();
        // Metadata of a record from the `log` crate: the full format
        // normalizes such events, which only it does.
        if name.starts_with("log.") {
            self.plain = false;
            return None;
        }
        if !std::mem::take(&mut self.empty) {
            self.line.push(' ');
        }
        if name != "message" {
            self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
            self.line.push('=');
        }
        Some(())
    }
}

/// Text that `Debug` for `str` writes between its quotes unchanged, and
/// that the full format's escaping of a message leaves alone: printable
/// ASCII without quotes or backslashes.
fn is_plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

impl Visit for Plain {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.plain || self.start(field).is_none() {
            return;
        }
        if field.name() == "message" {
            // Written as `Display` through an escaping writer.
            if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                self.line.push_str(value);
            } else {
                self.plain = false;
            }
        } else if is_plain(value) {
            self.line.push('"');
            self.line.push_str(value);
            self.line.push('"');
        } else {
            let _ = write!(self.line, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.plain && self.start(field).is_some() {
            let _ = write!(self.line, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.plain && self.start(field).is_some() {
            let _ = write!(self.line, "{value}");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.plain && self.start(field).is_some() {
            self.line.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_error(&mut self, _: &Field, _: &(dyn std::error::Error + 'static)) {
        // Its sources are listed in a form of the full format's own.
        self.plain = false;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.plain || self.start(field).is_none() {
            return;
        }
        let at = self.line.len();
        let _ = write!(self.line, "{value:?}");
        // A message (`info!("…{}", x)`) goes through the escaping writer.
        if field.name() == "message" && !self.line[at..].bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            self.plain = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    /// A fixed time, so that two formats' lines can be compared.
    #[derive(Clone)]
    struct Fixed;

    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-12-06T04:00:00.000000Z")
        }
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Every event of `emit` as the full format writes it and as [`Lines`]
    /// does.
    fn both(emit: impl Fn()) -> (String, String) {
        let full = Buffer::default();
        let lines = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(
                tracing_subscriber::fmt::format()
                    .with_timer(Fixed)
                    .with_ansi(false),
            )
            .with_ansi(false)
            .with_max_level(Level::TRACE)
            .with_writer(full.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &emit);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(Lines::new(Fixed, false))
            .with_max_level(Level::TRACE)
            .with_writer(lines.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &emit);
        (full.text(), lines.text())
    }

    #[test]
    fn a_request_line_is_the_full_formats_to_the_byte() {
        let (full, lines) = both(|| {
            tracing::info!(
                request = "294a601f-0c4e-4f4e-9d7e-5b1c1f1b2c3d",
                client = "203.0.113.7",
                route = "api.example.com/agents",
                method = "POST",
                path = "/agents/hello?x=1",
                status = 200u16,
                duration_ms = 1.2945f64,
                receiver = "link-1",
                bytes_in = 11u64,
                bytes_out = 42usize,
                outcome = "completed",
                reason = "",
                error = "",
                "request"
            );
        });
        assert!(full.contains("status=200 duration_ms=1.2945"), "{full}");
        assert_eq!(lines, full);
    }

    #[test]
    fn every_kind_of_field_and_message_matches() {
        #[derive(Debug)]
        struct Thing {
            #[allow(dead_code)]
            a: u8,
        }
        let error = io::Error::other("the cause");
        let (full, lines) = both(|| {
            tracing::warn!("plain message");
            tracing::error!(code = -3i64, ok = true, "with {} args", 2);
            tracing::debug!(r#type = "kind", thing = ?Thing { a: 1 }, shown = %"display");
            tracing::trace!(path = "/a \"quoted\" \\ path", "m");
            tracing::info!(path = "/caf\u{e9}/\u{7}", "unicode and a bell in a field");
            tracing::info!("a message with an escape \u{1b}[31m and a bell \u{7}");
            tracing::info!("a message with a C1 control \u{85} and caf\u{e9}");
            tracing::info!(
                error = &error as &(dyn std::error::Error + 'static),
                "an error"
            );
            tracing::info!(empty = "", big = u64::MAX, small = i64::MIN, f = 0.1f64);
            tracing::info!(target: "custom::target", n = 1u8, "targeted");
            let span = tracing::info_span!("outer", id = 7);
            let _in = span.enter();
            tracing::info!(inside = "span", "in a span");
        });
        assert_eq!(full.lines().count(), 11, "{full}");
        assert_eq!(lines, full);
    }
}
