//! What the shell reports to the gateway machine without needing an
//! answer: a public request's end ([`Driver::request_ended`]), a
//! refusal at the public edge ([`Driver::edge_refused`]) and caller
//! authentication's verdicts ([`Driver::caller_accepted`],
//! [`Driver::caller_refused`]). Ending a request
//! must not wait for the machine's lock, so a report goes into a bounded
//! lock-free queue; whoever next takes the lock to start a request or to
//! read a snapshot hands the queue to the machine first, so a snapshot
//! counts every report made before it was asked for. When the queue is
//! full, the reporter takes the lock and hands it over itself: the queue
//! never holds more than [`CAPACITY`] reports.

use anpx_core::edge::EdgeRefusal;
use anpx_core::{CallerProof, Gateway as Core, RequestEnd};
use crossbeam_queue::ArrayQueue;

use super::Driver;

/// Reports held at most before a reporter delivers them itself.
const CAPACITY: usize = 1024;

/// One report for the machine.
#[derive(Debug)]
pub(super) enum Report {
    Ended(RequestEnd),
    EdgeRefused(EdgeRefusal),
    CallerAccepted(CallerProof),
    CallerRefused(&'static str),
}

impl Report {
    fn apply(self, core: &mut Core) {
        match self {
            Report::Ended(end) => core.request_ended(end),
            Report::EdgeRefused(refusal) => core.edge_refused(refusal),
            Report::CallerAccepted(proof) => core.caller_accepted(proof),
            Report::CallerRefused(reason) => core.caller_refused(reason),
        }
    }
}

/// The queue of reports waiting for the machine.
pub(super) struct Reports {
    queue: ArrayQueue<Report>,
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            queue: ArrayQueue::new(CAPACITY),
        }
    }
}

impl Reports {
    /// Hands what is queued to `core`; called with the machine's lock
    /// held. At most [`CAPACITY`] go per call, so reporters that keep
    /// pushing meanwhile cannot hold the lock here: what they add comes
    /// at the next call.
    pub(super) fn deliver(&self, core: &mut Core) {
        for _ in 0..CAPACITY {
            let Some(report) = self.queue.pop() else {
                return;
            };
            report.apply(core);
        }
    }

    /// Reports waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue.len()
    }
}

impl Driver {
    /// A public request ended as `end` says: counted by the machine at its
    /// next lock (a request start, a snapshot), without waiting for it.
    /// Never call it with the machine's lock held: a full queue takes it.
    pub fn request_ended(&self, end: RequestEnd) {
        self.report(Report::Ended(end));
    }

    /// The public edge refused something by its limits; counted like
    /// [`request_ended`](Self::request_ended).
    pub fn edge_refused(&self, refusal: EdgeRefusal) {
        self.report(Report::EdgeRefused(refusal));
    }

    pub(super) fn report(&self, report: Report) {
        let Err(report) = self.reports.queue.push(report) else {
            return;
        };
        // Full: this reporter pays for the delivery. A gateway that shut
        // down has no snapshot left to count it in, so the report goes.
        let reports = &self.reports;
        let _ = self.with(|st, _| {
            reports.deliver(&mut st.core);
            report.apply(&mut st.core);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anpx_core::{Ending, GatewayConfig, GatewayStats};
    use futures_util::FutureExt;
    use std::time::Duration;

    fn driver() -> Driver {
        let core = Core::new(GatewayConfig::default(), 7);
        Driver::new(core, |_| std::future::pending()).0
    }

    fn stats(driver: &Driver) -> GatewayStats {
        driver
            .stats()
            .now_or_never()
            .expect("at once")
            .expect("running")
    }

    fn ended(ending: Ending) -> RequestEnd {
        RequestEnd {
            ending,
            route: String::new(),
            status: 200,
            duration: Duration::from_millis(1),
            bytes_in: 1,
            bytes_out: 2,
            refusal: None,
        }
    }

    #[test]
    fn a_snapshot_counts_every_report_made_before_it() {
        let driver = driver();
        driver.request_ended(ended(Ending::Completed));
        driver.request_ended(ended(Ending::ClientLeft));
        driver.edge_refused(EdgeRefusal::HeadTimeout);
        assert_eq!(driver.reports.len(), 3, "queued, not yet the machine's");
        driver.caller_refused("replayed_nonce");
        driver.caller_accepted(anpx_core::CallerProof::Token);
        let s = stats(&driver);
        let callers = s.caller_auth.as_ref().expect("counted");
        assert_eq!(callers.refused("replayed_nonce"), 1);
        assert_eq!(callers.accepted(anpx_core::CallerProof::Token), 1);
        assert_eq!(s.endings.ended(Ending::Completed), 1);
        assert_eq!(s.endings.ended(Ending::ClientLeft), 1);
        assert_eq!(s.edge_refused.get(EdgeRefusal::HeadTimeout), 1);
        assert_eq!(driver.reports.len(), 0);
    }

    #[test]
    fn a_request_start_delivers_the_queue_too() {
        let driver = driver();
        driver.edge_refused(EdgeRefusal::Malformed);
        let (tx, _rx) = super::super::events();
        let head = anpx_core::RequestHead::new("GET", "/");
        let start = driver.start(
            "192.0.2.1".parse().unwrap(),
            "api.agent.com".into(),
            head,
            anpx_core::RequestBody::Empty,
            tx,
        );
        // No receiver: refused, but the machine took the queue first.
        assert!(start.now_or_never().expect("at once").unwrap().is_err());
        assert_eq!(driver.reports.len(), 0);
    }

    #[test]
    fn a_full_queue_is_delivered_by_the_reporter() {
        let driver = driver();
        for _ in 0..CAPACITY {
            driver.edge_refused(EdgeRefusal::Malformed);
        }
        assert_eq!(driver.reports.len(), CAPACITY);
        driver.edge_refused(EdgeRefusal::Malformed);
        assert_eq!(driver.reports.len(), 0, "the reporter delivered it all");
        for _ in 0..3 * CAPACITY {
            driver.edge_refused(EdgeRefusal::Malformed);
            assert!(driver.reports.len() <= CAPACITY);
        }
        let s = stats(&driver);
        assert_eq!(
            s.edge_refused.get(EdgeRefusal::Malformed),
            4 * CAPACITY as u64 + 1
        );
    }

    #[test]
    fn reports_from_many_threads_are_each_counted_once() {
        const THREADS: usize = 4;
        const EACH: usize = 3 * CAPACITY;
        let driver = driver();
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                let driver = driver.clone();
                scope.spawn(move || {
                    for _ in 0..EACH {
                        driver.request_ended(ended(Ending::Completed));
                    }
                });
            }
            // Snapshots taken meanwhile deliver what they find.
            let driver = driver.clone();
            scope.spawn(move || {
                for _ in 0..200 {
                    let _ = stats(&driver);
                }
            });
        });
        let s = stats(&driver);
        let n = (THREADS * EACH) as u64;
        assert_eq!(s.endings.ended(Ending::Completed), n);
        let unrouted = s.endings.route(anpx_core::UNROUTED).expect("counted");
        assert_eq!((unrouted.bytes_in(), unrouted.bytes_out()), (n, 2 * n));
    }

    #[test]
    fn reports_after_shutdown_are_dropped() {
        let driver = driver();
        driver.shutdown();
        for _ in 0..CAPACITY + 1 {
            driver.edge_refused(EdgeRefusal::Malformed);
        }
        assert!(driver.reports.len() <= CAPACITY);
    }
}
