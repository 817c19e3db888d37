//! The one log line every public request ends with, shared by both
//! shells; the same call hands the request's end to the gateway machine,
//! which counts it (`anpx_requests_ended_total{ending="…"}`, and by route
//! the duration histogram, responses by status class, body bytes;
//! refusals by reason: [`anpx_core::RequestEndings`]).

use std::net::IpAddr;

use anpx_core::{Ending, RequestEnd, UNROUTED};

use crate::driver::Driver;

/// One request's end, as logged.
pub struct EndLine<'a> {
    /// The request's id.
    pub request: &'a str,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// The granted service URL that routed it, as the machine named it;
    /// empty when none did. Owned: it goes on to the machine.
    pub route: String,
    /// Its method.
    pub method: &'a str,
    /// Its path.
    pub path: &'a str,
    /// The status the client got (0 when none was sent).
    pub status: u16,
    /// How long it took.
    pub duration: std::time::Duration,
    /// The receiver that served it, if one did.
    pub receiver: &'a str,
    /// Why it failed, when it did.
    pub error: Option<&'a str>,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes relayed to the client from a receiver.
    pub bytes_out: u64,
}

/// Logs `line` with its `ending` and hands it to the gateway machine
/// through `driver` to count: the single place a public request's end is
/// reported. `refusal` names why the gateway refused it itself, counted in
/// `anpx_requests_refused_total{reason}` and logged as `reason`.
pub fn report(driver: &Driver, ending: Ending, line: EndLine<'_>, refusal: Option<&'static str>) {
    let client = line.client.map(|c| c.to_string());
    tracing::info!(
        request = line.request,
        client = client.as_deref().unwrap_or(""),
        route = if line.route.is_empty() {
            UNROUTED
        } else {
            line.route.as_str()
        },
        method = line.method,
        path = line.path,
        status = line.status,
        duration_ms = line.duration.as_secs_f64() * 1e3,
        receiver = line.receiver,
        bytes_in = line.bytes_in,
        bytes_out = line.bytes_out,
        outcome = ending.label(),
        reason = refusal.unwrap_or(""),
        error = line.error.unwrap_or(""),
        "request"
    );
    driver.request_ended(RequestEnd {
        ending,
        route: line.route,
        status: line.status,
        duration: line.duration,
        bytes_in: line.bytes_in,
        bytes_out: line.bytes_out,
        refusal,
    });
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
            request: "r",
            client: Some(IpAddr::from([192, 0, 2, 1])),
            route: String::new(),
            method: "GET",
            path: "/",
            status,
            duration: std::time::Duration::from_millis(3),
            receiver: "",
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
}
