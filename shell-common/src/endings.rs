//! The one log line every public request ends with, shared by both
//! shells; the same call hands the request's end to the gateway machine,
//! which counts it (`anpx_requests_ended_total{ending="…"}`, and by route
//! the duration histogram, responses by status class, body bytes;
//! refusals by reason: [`anpx_core::RequestEndings`]).

use std::borrow::Cow;
use std::net::IpAddr;

use anpx_core::{Ending, RequestEnd, UNROUTED};

use crate::driver::Driver;

/// One request's end, as logged. Its text fields borrow what the caller
/// can lend and own what it can give up, so that a line held for later
/// ([`write_held`]) copies only what was borrowed.
pub struct EndLine<'a> {
    /// The request's id.
    pub request: Cow<'a, str>,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// The granted service URL that routed it, as the machine named it;
    /// empty when none did. Owned: it goes on to the machine.
    pub route: String,
    /// Its method.
    pub method: Cow<'a, str>,
    /// Its path.
    pub path: Cow<'a, str>,
    /// The status the client got (0 when none was sent).
    pub status: u16,
    /// How long it took.
    pub duration: std::time::Duration,
    /// The receiver that served it, if one did.
    pub receiver: Cow<'a, str>,
    /// Why it failed, when it did.
    pub error: Option<Cow<'a, str>>,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes relayed to the client from a receiver.
    pub bytes_out: u64,
}

impl EndLine<'_> {
    /// The same line, owning every field.
    fn into_owned(self) -> EndLine<'static> {
        EndLine {
            request: Cow::Owned(self.request.into_owned()),
            client: self.client,
            route: self.route,
            method: Cow::Owned(self.method.into_owned()),
            path: Cow::Owned(self.path.into_owned()),
            status: self.status,
            duration: self.duration,
            receiver: Cow::Owned(self.receiver.into_owned()),
            error: self.error.map(|e| Cow::Owned(e.into_owned())),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        }
    }
}

/// Logs `line` with its `ending` and hands it to the gateway machine
/// through `driver` to count: the single place a public request's end is
/// reported. `refusal` names why the gateway refused it itself, counted in
/// `anpx_requests_refused_total{reason}` and logged as `reason`.
///
/// The count is handed over at once; the log line is written at once, or,
/// on a thread that holds request lines ([`write_held`]), when that thread
/// next has nothing to run.
pub fn report(driver: &Driver, ending: Ending, line: EndLine<'_>, refusal: Option<&'static str>) {
    let (status, duration, bytes_in, bytes_out) =
        (line.status, line.duration, line.bytes_in, line.bytes_out);
    // Whether this thread holds its lines, read apart from the push so
    // that logging never runs inside the borrow.
    let holding = HELD
        .try_with(|h| h.try_borrow().is_ok_and(|h| h.holding))
        .unwrap_or(false);
    let route = if holding {
        let route = line.route.clone();
        let full = HELD
            .try_with(|h| {
                let mut h = h.try_borrow_mut().ok()?;
                h.lines.push(HeldLine {
                    line: line.into_owned(),
                    ending,
                    refusal,
                });
                (h.lines.len() >= HELD_LINES).then(|| std::mem::take(&mut h.lines))
            })
            .ok()
            .flatten();
        full.into_iter().flatten().for_each(HeldLine::log);
        route
    } else {
        log(&line, ending, refusal);
        line.route
    };
    driver.request_ended(RequestEnd {
        ending,
        route,
        status,
        duration,
        bytes_in,
        bytes_out,
        refusal,
    });
}

fn log(line: &EndLine<'_>, ending: Ending, refusal: Option<&'static str>) {
    let client = line.client.map(|c| {
        let mut text = String::with_capacity(15);
        anpx_core::push_ip(&mut text, c);
        text
    });
    tracing::info!(
        request = &*line.request,
        client = client.as_deref().unwrap_or(""),
        route = if line.route.is_empty() {
            UNROUTED
        } else {
            line.route.as_str()
        },
        method = &*line.method,
        path = &*line.path,
        status = line.status,
        duration_ms = line.duration.as_secs_f64() * 1e3,
        receiver = &*line.receiver,
        bytes_in = line.bytes_in,
        bytes_out = line.bytes_out,
        outcome = ending.label(),
        reason = refusal.unwrap_or(""),
        error = line.error.as_deref().unwrap_or(""),
        "request"
    );
}

/// Request lines a thread holds before it writes them without waiting to
/// be idle: bounds what one busy thread keeps.
pub const HELD_LINES: usize = 64;

/// A request line held until its thread is idle.
struct HeldLine {
    line: EndLine<'static>,
    ending: Ending,
    refusal: Option<&'static str>,
}

impl HeldLine {
    fn log(self) {
        log(&self.line, self.ending, self.refusal);
    }
}

/// One thread's held request lines.
struct Held {
    /// The thread calls [`write_held`] when it is idle: it may hold.
    holding: bool,
    lines: Vec<HeldLine>,
}

thread_local! {
    static HELD: std::cell::RefCell<Held> = const {
        std::cell::RefCell::new(Held {
            holding: false,
            lines: Vec::new(),
        })
    };
}

/// Writes the request lines this thread held, and lets it hold them from
/// now on. A runtime calls it from a worker each time the worker has
/// nothing left to run (tokio's `on_thread_park`; anpx-smol's lanes when
/// their executor is pending) and when it stops.
///
/// Formatting a request's line costs several microseconds, and an HTTP
/// server ends a response's body (where the line is reported) before it
/// writes the response out: held, the line is formatted once the response
/// is on its way. A held line's timestamp is when it is written, which is
/// at most [`HELD_LINES`] requests or one idle moment after the request
/// ended (its `duration_ms` is exact), and a warning the thread logs in
/// between comes before it. A thread that never calls this (the tests'
/// runtimes, anpx-smol's executor) writes every line at once.
pub fn write_held() {
    let lines = HELD.try_with(|h| {
        let Ok(mut h) = h.try_borrow_mut() else {
            return Vec::new();
        };
        h.holding = true;
        std::mem::take(&mut h.lines)
    });
    // Logged outside the borrow: a subscriber that reports a request of
    // its own must not find the list borrowed.
    for line in lines.unwrap_or_default() {
        line.log();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anpx_core::{Gateway, GatewayConfig};
    use futures_util::FutureExt;

    #[test]
    fn a_reported_end_is_counted_by_the_machine() {
        let core = Gateway::new(GatewayConfig::default(), 7);
        let (driver, _timer) = Driver::new(core, |_| std::future::pending());
        let line = |status| EndLine {
            request: "r".into(),
            client: Some(IpAddr::from([192, 0, 2, 1])),
            route: String::new(),
            method: "GET".into(),
            path: "/".into(),
            status,
            duration: std::time::Duration::from_millis(3),
            receiver: "".into(),
            error: None,
            bytes_in: 4,
            bytes_out: 0,
        };
        report(&driver, Ending::Refused, line(404), Some("no_route"));
        report(&driver, Ending::ClientLeft, line(0), None);
        let stats = driver.stats().now_or_never().unwrap().unwrap();
        let e = &stats.endings;
        assert_eq!(e.ended(Ending::Refused), 1);
        assert_eq!(e.ended(Ending::ClientLeft), 1);
        assert_eq!(e.refused("no_route"), 1);
        let unrouted = e.route(UNROUTED).expect("counted as unrouted");
        assert_eq!(
            (unrouted.responses("4xx"), unrouted.responses("none")),
            (1, 1)
        );
        assert_eq!(unrouted.bytes_in(), 8);
    }

    /// Counts the `request` lines logged on this thread.
    struct Lines(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl tracing::Subscriber for Lines {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if event.metadata().target() == "shell_common::endings" {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    fn end(status: u16) -> EndLine<'static> {
        EndLine {
            request: "r".into(),
            client: None,
            route: String::new(),
            method: "GET".into(),
            path: "/".into(),
            status,
            duration: std::time::Duration::from_millis(1),
            receiver: "".into(),
            error: None,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Runs `f` with a driver and a count of the request lines logged.
    fn counting(f: impl FnOnce(&Driver, &dyn Fn() -> usize)) {
        let core = Gateway::new(GatewayConfig::default(), 7);
        let (driver, _timer) = Driver::new(core, |_| std::future::pending());
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let logged = {
            let n = n.clone();
            move || n.load(std::sync::atomic::Ordering::Relaxed)
        };
        tracing::subscriber::with_default(Lines(n), || f(&driver, &logged));
    }

    #[test]
    fn a_thread_that_never_idles_through_write_held_logs_at_once() {
        counting(|driver, logged| {
            report(driver, Ending::Completed, end(200), None);
            assert_eq!(logged(), 1);
        });
    }

    #[test]
    fn a_holding_thread_logs_when_idle_and_the_count_is_not_held() {
        counting(|driver, logged| {
            write_held();
            report(driver, Ending::Completed, end(200), None);
            report(driver, Ending::Completed, end(204), None);
            assert_eq!(logged(), 0, "held until the thread is idle");
            let stats = driver.stats().now_or_never().unwrap().unwrap();
            assert_eq!(stats.endings.ended(Ending::Completed), 2);
            write_held();
            assert_eq!(logged(), 2);
            write_held();
            assert_eq!(logged(), 2, "each line once");
        });
    }

    #[test]
    fn a_busy_thread_holds_at_most_held_lines() {
        counting(|driver, logged| {
            write_held();
            for _ in 0..HELD_LINES - 1 {
                report(driver, Ending::Completed, end(200), None);
            }
            assert_eq!(logged(), 0);
            report(driver, Ending::Completed, end(200), None);
            assert_eq!(logged(), HELD_LINES);
            report(driver, Ending::Completed, end(200), None);
            write_held();
            assert_eq!(logged(), HELD_LINES + 1);
        });
    }
}
